//! `health-checker boot-entries sync|list`: the systemd-boot backend's Boot
//! Loader Specification entries on the ESP (`docs/systemd-boot.md`).

use clap::{Args, Subcommand};

use super::system::{LoadedConfig, System};
use crate::bootloader::LoaderEnv;
use crate::exit::{Code, CodeExt};
use crate::paths::Root;
use crate::systemd::Bus;

#[derive(Debug, Args)]
pub struct BootEntriesArgs {
    #[command(subcommand)]
    pub action: BootEntriesAction,
}

#[derive(Debug, Subcommand)]
pub enum BootEntriesAction {
    /// Make the ESP match the boot state: entries for the known-good (with
    /// none yet: the default subvolume), the trial and the newest snapshots
    /// up to `[bootloader] max_entries`; remove the entries of deleted
    /// snapshots and unused kernels; set loader.conf's `default` line.
    /// Creates the state file on a first install. Nothing to do on GRUB.
    Sync,
    /// List our entries: file, snapshot ID, role and attempts left.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(root: &Root, args: &BootEntriesArgs) -> anyhow::Result<Code> {
    let config = LoadedConfig::load(root).required()?;
    let sys = System::open(root, config, Bus::System, true)?;
    let LoaderEnv::SystemdBoot(sd) = &sys.env else {
        println!(
            "the boot loader backend is GRUB ([bootloader] backend); boot entries are systemd-boot's: nothing to do"
        );
        return Ok(Code::Ok);
    };
    match &args.action {
        BootEntriesAction::Sync => {
            let _lock = sys.state.lock().code(Code::Runtime)?;
            let done = sd.sync(&sys.snapshots).code(Code::BootEnv)?;
            if done.lines.is_empty() {
                println!("{}: the entries are up to date", sd.esp().dir().display());
            }
            for l in done.lines {
                println!("{l}");
            }
        }
        BootEntriesAction::List { json } => {
            let view = sd.view().code(Code::BootEnv)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                for e in &view.entries {
                    let tries = match (e.tries_left, e.tries_done) {
                        (Some(l), Some(d)) => format!("{l} left, {d} done"),
                        (Some(l), None) => format!("{l} left"),
                        _ => "-".into(),
                    };
                    println!(
                        "{:<6} ID {:<6} {:<14} {}",
                        e.role, e.snapshot_id, tries, e.file
                    );
                }
                println!(
                    "default entry: {}",
                    view.default_entry.as_deref().unwrap_or("none of ours")
                );
            }
        }
    }
    Ok(Code::Ok)
}
