//! `health-checker rollback [--no-reboot]`: go back to the known-good
//! snapshot by hand. The default subvolume becomes the known-good again, the
//! trial is cleared, the history records it, and, when another snapshot is
//! running, the system reboots through systemd (not with `--no-reboot` or
//! `[boot] no_reboot`). Refused when there is no known-good snapshot, or
//! when it no longer exists: a rollback only ever goes to a known-good.

use anyhow::anyhow;
use clap::Args;

use super::change::{apply, Change};
use super::say::Say;
use super::system::{LoadedConfig, System};
use crate::actions::{Actions, Bus};
use crate::engine::BootState;
use crate::exit::{with_code, Code, CodeExt};
use crate::history::{EventKind, NewEvent};
use crate::paths::Root;
use crate::snapshots::Snapshots;

/// Options of `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Do everything except the reboot.
    #[arg(long)]
    pub no_reboot: bool,
}

/// Run `rollback`.
pub fn run(root: &Root, args: &RollbackArgs) -> anyhow::Result<Code> {
    run_with(root, args, Bus::System, &mut Say::print())
}

/// Run `rollback` with signals and systemd (the reboot) on `bus`, its
/// messages to `say` (the D-Bus method `Rollback` runs this too).
pub fn run_with(root: &Root, args: &RollbackArgs, bus: Bus, say: &mut Say) -> anyhow::Result<Code> {
    let config = LoadedConfig::load(root).required()?;
    let no_reboot = args.no_reboot || config.boot.no_reboot;
    let sys = System::open(root, config, bus, args.no_reboot)?;
    // Read, decide and write under the lock a check holds for the same.
    let _lock = sys.state.lock().code(Code::Runtime)?;
    let state = sys.boot_state()?;
    let good = state.good.clone().ok_or_else(|| {
        with_code(
            Code::Usage,
            anyhow!("there is no known-good snapshot to roll back to"),
        )
    })?;
    let exists = sys
        .snapshots
        .lookup(&good.path)
        .map_err(|e| e.context(format!("looking up the known-good snapshot {}", good.path)))
        .code(Code::Snapshot)?
        .is_some_and(|found| found.id == good.id);
    if !exists {
        return Err(with_code(
            Code::Snapshot,
            anyhow!(
                "the known-good snapshot {} (ID {}) no longer exists; not rolling back",
                good.path,
                good.id
            ),
        ));
    }
    let booted = sys.booted()?;
    let default = sys
        .snapshots
        .default_subvolume()
        .map_err(|e| e.context("finding the default subvolume"))
        .code(Code::Snapshot)?;

    let after = BootState {
        trial: None,
        tries: 0,
        ..state.clone()
    };
    let set_default = (default != good).then(|| good.clone());
    let needs_reboot = booted != good;
    if set_default.is_none() && after == state && !needs_reboot {
        say.out(format!(
            "already on the known-good snapshot {} (ID {}); nothing to roll back",
            good.path, good.id
        ));
        return Ok(Code::Ok);
    }

    let mut reason = format!(
        "rolled back by hand from {} to known-good {}",
        booted.path, good.path
    );
    if let Some(t) = state.trial.as_ref().filter(|t| **t != booted) {
        reason.push_str(&format!("; trial {} disarmed", t.path));
    }
    let change = Change {
        set_default,
        ..Change::env(
            state,
            after,
            vec![NewEvent::new(
                EventKind::Rollback,
                Some(booted.clone()),
                reason,
            )],
        )
    };
    let notes = apply(&sys, &change)?;
    say.out(format!(
        "the default subvolume is the known-good {} (ID {}); the trial is cleared",
        good.path, good.id
    ));
    for n in notes {
        say.note(n);
    }
    if !needs_reboot {
        say.out("the known-good snapshot is already running: no reboot needed");
    } else if no_reboot {
        say.out(format!(
            "not rebooting (no-reboot): the next boot starts {}",
            good.path
        ));
    } else {
        say.out(format!("rebooting into {}", good.path));
        sys.actions
            .reboot(&format!("rollback by hand to {}", good.path))
            .code(Code::Runtime)?;
    }
    Ok(Code::Ok)
}
