//! `health-checker arm [SNAPSHOT] [--tries N] [--if-default-changed]`: make
//! a snapshot the trial, so GRUB boots it at most N times before falling
//! back to the known-good snapshot. Update tools run it before their reboot.
//!
//! The armed snapshot also becomes the default subvolume (first, before the
//! environment is written), so that a plain boot, GRUBs that follow the
//! default and the shutdown unit all agree with the environment.
//!
//! `--if-default-changed` is the shutdown unit's form, for update tools that
//! only change the default subvolume: the default is armed when it differs
//! from both the known-good and the current trial; otherwise nothing is done
//! and nothing is printed.

use anyhow::anyhow;
use clap::Args;

use super::change::{apply, Change};
use super::snapshot_arg::{refuse_top_level, resolve};
use super::system::{LoadedConfig, System};
use crate::actions::Bus;
use crate::engine::{arm, ArmError};
use crate::exit::{with_code, Code, CodeExt};
use crate::history::{EventKind, NewEvent};
use crate::paths::Root;
use crate::snapshots::{SnapshotRef, Snapshots};

/// Options of `arm`.
#[derive(Debug, Args)]
pub struct ArmArgs {
    /// The snapshot: a path from the top-level subvolume
    /// (`@/.snapshots/3/snapshot`) or a snapper number (`3`); default: the
    /// default subvolume.
    #[arg(value_name = "SNAPSHOT", conflicts_with = "if_default_changed")]
    pub snapshot: Option<String>,
    /// Boot attempts before GRUB falls back (1-9; default: `[boot] tries`).
    #[arg(long, value_name = "N")]
    pub tries: Option<u8>,
    /// Arm the default subvolume only if it is neither the known-good nor
    /// the current trial; otherwise do nothing (the shutdown unit's form).
    #[arg(long)]
    pub if_default_changed: bool,
}

/// Run `arm`.
pub fn run(root: &Root, args: &ArmArgs) -> anyhow::Result<Code> {
    let config = LoadedConfig::load(root).required()?;
    let tries = args.tries.unwrap_or(config.boot.tries);
    let sys = System::open(root, config, Bus::System, false)?;
    // Read, decide and write under the lock a check holds for the same.
    let _lock = sys.state.lock().code(Code::Runtime)?;
    let state = sys.boot_state()?;
    let default = sys
        .snapshots
        .default_subvolume()
        .map_err(|e| with_code(Code::Snapshot, e.context("finding the default subvolume")))?;

    let target = if args.if_default_changed {
        if state.good.as_ref() == Some(&default) || state.trial.as_ref() == Some(&default) {
            tracing::debug!(
                "default subvolume {} is already the known-good or the trial; nothing to arm",
                default.path
            );
            return Ok(Code::Ok);
        }
        refuse_top_level(&default)?;
        default.clone()
    } else {
        match &args.snapshot {
            Some(arg) => resolve(&sys.snapshots, arg)?,
            None => {
                refuse_top_level(&default)?;
                default.clone()
            }
        }
    };

    let after = arm(&state, target.clone(), tries).map_err(|e| match e {
        ArmError::IsKnownGood(_) => with_code(
            Code::Usage,
            anyhow!(
                "{} (ID {}) is the known-good snapshot: there is nothing to try; \
                 arm the new snapshot instead",
                target.path,
                target.id
            ),
        ),
        ArmError::Tries(_) => with_code(Code::Usage, anyhow!("{e}")),
    })?;

    let replaced = state
        .trial
        .as_ref()
        .filter(|t| *t != &target)
        .map(|t| format!(", replacing the trial {}", t.path))
        .unwrap_or_default();
    let how = if args.if_default_changed {
        format!(
            "the default subvolume changed to {} and was never armed; armed at shutdown",
            target.path
        )
    } else {
        "armed by hand".to_owned()
    };
    let reason = format!("{how} with {tries} attempt(s){replaced}");
    let change = Change {
        set_default: (default != target).then(|| target.clone()),
        ..Change::env(
            state.clone(),
            after,
            vec![NewEvent::new(EventKind::Arm, Some(target.clone()), reason)],
        )
    };
    let notes = apply(&sys, &change)?;
    let loader = match sys.env.kind() {
        crate::bootloader::Kind::Grub => "GRUB",
        crate::bootloader::Kind::SystemdBoot => "systemd-boot",
    };
    print_armed(
        loader,
        &target,
        tries,
        state.good.as_ref(),
        &default,
        &replaced,
    );
    for n in notes {
        eprintln!("{n}");
    }
    Ok(Code::Ok)
}

fn print_armed(
    loader: &str,
    target: &SnapshotRef,
    tries: u8,
    good: Option<&SnapshotRef>,
    default: &SnapshotRef,
    replaced: &str,
) {
    let fallback = match good {
        Some(g) => format!("falling back to the known-good {}", g.path),
        None => "there is no known-good snapshot to fall back to yet".to_owned(),
    };
    println!(
        "armed {} (ID {}) as the trial{replaced}: {loader} boots it at most {tries} time(s), then {fallback}",
        target.path, target.id
    );
    if default != target {
        println!("the default subvolume is now {}", target.path);
    }
}
