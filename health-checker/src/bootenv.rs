//! `health-checker bootenv`: grub-editenv's jobs on the crash-safe store
//! (the GRUB environment, or the systemd-boot backend's state file),
//! at the location the configuration names (`[bootenv]`), the one the
//! checker and, through `bootenv path`, GRUB's snippet use.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use grub_env::{Location, Store};

use crate::commands::system::{env_store, LoadedConfig};
use crate::engine::grubenv::{broken_stamp, with_advice};
use crate::exit::{Code, CodeExt};
use crate::paths::Root;

#[derive(Debug, Args)]
pub struct BootenvArgs {
    /// The primary environment file (its backup is FILE.bak). Default: the
    /// location `[bootenv]` of the configuration names, under --root.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(subcommand)]
    pub action: BootenvAction,
}

#[derive(Debug, Subcommand)]
pub enum BootenvAction {
    /// Print every key=value, as `grub-editenv list` does.
    List,
    /// Print the value of KEY; exit 1 if it is not set.
    Get { key: String },
    /// Set one or more KEY=VALUE pairs in one crash-safe write.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
    /// Remove one or more keys in one crash-safe write.
    Unset {
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// Create the environment (both copies, and the directory) if it does
    /// not exist.
    Create,
    /// Repair a damaged environment: rewrite both copies with the values
    /// GRUB reads. When GRUB reads neither copy, keep both as
    /// FILE.broken-TIME and write a new, empty environment (the next check
    /// then starts again from the booted snapshot).
    Recover,
    /// Print where the environment is: `file PATH` or `env-block DEVICE`
    /// (GRUB's snippet asks this when grub-mkconfig runs).
    Path,
}

/// The store for `--file`, or the one the configuration names: the GRUB
/// environment, or with the systemd-boot backend its state file on the ESP
/// (`docs/systemd-boot.md`).
fn store_for(root: &Root, file: Option<PathBuf>) -> anyhow::Result<Store> {
    if let Some(f) = file {
        return Ok(Store::for_file(f));
    }
    let config = LoadedConfig::load(root).required()?;
    match crate::bootloader::resolve(root, &config) {
        crate::bootloader::Kind::Grub => env_store(root, &config),
        crate::bootloader::Kind::SystemdBoot => {
            let esp = crate::bootloader::find_esp(root, &config).code(Code::Config)?;
            Ok(Store::for_file(esp.state_path()))
        }
    }
}

pub fn run(root: &Root, args: BootenvArgs) -> anyhow::Result<Code> {
    let store = store_for(root, args.file)?;
    let primary = store.primary().to_string();
    match args.action {
        BootenvAction::List => {
            let loaded = load(&store)?;
            print!("{}", loaded.env);
        }
        BootenvAction::Get { key } => {
            let loaded = load(&store)?;
            match loaded.env.get(&key) {
                Some(v) => println!("{v}"),
                None => {
                    eprintln!("health-checker: {key} is not set in {primary}");
                    return Ok(Code::BootFailed);
                }
            }
        }
        BootenvAction::Set { pairs } => {
            let mut parsed = Vec::new();
            for p in &pairs {
                match p.split_once('=') {
                    Some((k, v)) => parsed.push((k.to_string(), v.to_string())),
                    None => {
                        return Err(crate::exit::with_code(
                            Code::Usage,
                            anyhow::anyhow!("{p:?} is not KEY=VALUE"),
                        ))
                    }
                }
            }
            store
                .update(|env| {
                    for (k, v) in &parsed {
                        env.set(k, v).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
                .map_err(with_advice)
                .with_context(|| format!("writing boot environment {primary}"))
                .code(Code::BootEnv)?;
        }
        BootenvAction::Unset { keys } => {
            store
                .update(|env| {
                    for k in &keys {
                        env.unset(k);
                    }
                    Ok(())
                })
                .map_err(with_advice)
                .with_context(|| format!("writing boot environment {primary}"))
                .code(Code::BootEnv)?;
        }
        BootenvAction::Create => {
            let loaded = load(&store)?;
            if loaded.source == grub_env::Source::Neither {
                if let Location::File(path) = store.primary() {
                    create_parent(path)
                        .with_context(|| format!("creating boot environment {primary}"))
                        .code(Code::BootEnv)?;
                }
                store
                    .update(|_| Ok(()))
                    .with_context(|| format!("creating boot environment {primary}"))
                    .code(Code::BootEnv)?;
            }
        }
        BootenvAction::Recover => {
            let done = store
                .recover(&broken_stamp(crate::state::unix_now()))
                .with_context(|| format!("recovering boot environment {primary}"))
                .code(Code::BootEnv)?;
            if done.is_empty() {
                println!("{primary}: both copies are sound, nothing to do");
            }
            for line in done {
                println!("{line}");
            }
        }
        BootenvAction::Path => match store.primary() {
            Location::File(p) => println!("file {}", p.display()),
            Location::Block { path, .. } => println!("env-block {}", path.display()),
        },
    }
    Ok(Code::Ok)
}

/// Load, reporting damaged copies on standard error.
fn load(store: &Store) -> anyhow::Result<grub_env::Loaded> {
    let loaded = store
        .load()
        .map_err(with_advice)
        .with_context(|| format!("reading boot environment {}", store.primary()))
        .code(Code::BootEnv)?;
    for p in &loaded.problems {
        tracing::warn!("boot environment: {p} (`health-checker bootenv recover` repairs it)");
    }
    Ok(loaded)
}

/// Create the directories missing above `file` (mode 0755), each made
/// durable by an fsync of its parent. Refused on btrfs, where GRUB cannot
/// write: there a missing directory means the EFI system partition (or
/// `/boot`) is not mounted, and the environment would land on the root.
fn create_parent(file: &Path) -> anyhow::Result<()> {
    let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let mut missing = Vec::new();
    let mut existing = dir;
    while !existing.exists() {
        missing.push(existing);
        existing = match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
    }
    if missing.is_empty() {
        return Ok(());
    }
    let fs = nix::sys::statfs::statfs(existing)
        .with_context(|| format!("checking the file system of {}", existing.display()))?;
    if fs.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC {
        anyhow::bail!(
            "{} does not exist and {} is on btrfs, where GRUB cannot write: \
             is the EFI system partition mounted? (or set [bootenv] path)",
            dir.display(),
            existing.display()
        );
    }
    for d in missing.into_iter().rev() {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(d)
            .with_context(|| format!("creating directory {}", d.display()))?;
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::fsutil::sync_dir(parent)?;
        }
    }
    Ok(())
}
