//! `health-checker mark-good [SNAPSHOT]` and `mark-bad [SNAPSHOT]`: the
//! admin's judgement of a snapshot, overriding the probes'.
//!
//! - **mark-good** (default: the booted snapshot) makes it the known-good,
//!   disarms it if it was the trial, clears the known-good failure streak
//!   and leaves degraded mode. When the default subvolume named the old
//!   known-good, it follows the new one (as a promotion does); a default
//!   naming a newer staged update is left alone.
//! - **mark-bad** (default: the trial) disarms it, drops it as known-good if
//!   it was, and, when the default subvolume names it, puts the default back
//!   to the known-good, since otherwise the next boot would arm it again as
//!   an unarmed update.

use anyhow::anyhow;
use clap::Args;

use super::change::{apply, Change};
use super::say::Say;
use super::snapshot_arg::{refuse_top_level, resolve};
use super::system::{LoadedConfig, System};
use crate::actions::Bus;
use crate::engine::{mark_bad, mark_good};
use crate::exit::{with_code, Code, CodeExt};
use crate::history::{EventKind, NewEvent};
use crate::paths::Root;
use crate::snapshots::Snapshots;

/// Options of `mark-good`.
#[derive(Debug, Args)]
pub struct MarkGoodArgs {
    /// The snapshot: a path from the top-level subvolume or a snapper
    /// number; default: the booted snapshot.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: Option<String>,
}

/// Options of `mark-bad`.
#[derive(Debug, Args)]
pub struct MarkBadArgs {
    /// The snapshot: a path from the top-level subvolume or a snapper
    /// number; default: the trial.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: Option<String>,
}

fn open(root: &Root, bus: Bus) -> anyhow::Result<System> {
    let config = LoadedConfig::load(root).required()?;
    System::open(root, config, bus, false)
}

/// Run `mark-good`.
pub fn run_good(root: &Root, args: &MarkGoodArgs) -> anyhow::Result<Code> {
    run_good_with(root, args, Bus::System, &mut Say::print())
}

/// Run `mark-good` with signals and systemd on `bus`, its messages to `say`
/// (the D-Bus method `MarkGood` runs this too).
pub fn run_good_with(
    root: &Root,
    args: &MarkGoodArgs,
    bus: Bus,
    say: &mut Say,
) -> anyhow::Result<Code> {
    let sys = open(root, bus)?;
    // Read, decide and write under the lock a check holds for the same.
    let _lock = sys.state.lock().code(Code::Runtime)?;
    let state = sys.boot_state()?;
    let target = match &args.snapshot {
        Some(a) => resolve(&sys.snapshots, a)?,
        None => {
            let b = sys.booted()?;
            refuse_top_level(&b)?;
            b
        }
    };
    let default = sys
        .snapshots
        .default_subvolume()
        .map_err(|e| e.context("finding the default subvolume"))
        .code(Code::Snapshot)?;
    let after = mark_good(&state, target.clone());
    let follow = state.good.as_ref() == Some(&default) && default != target;
    let mut reason = "marked known-good by hand".to_owned();
    if let Some(old) = state.good.as_ref().filter(|g| *g != &target) {
        reason.push_str(&format!("; it replaces {}", old.path));
    }
    let change = Change {
        set_default: follow.then(|| target.clone()),
        clear_degraded: true,
        ..Change::env(
            state,
            after,
            vec![NewEvent::new(
                EventKind::MarkGood,
                Some(target.clone()),
                reason,
            )],
        )
    };
    let notes = apply(&sys, &change)?;
    say.out(format!(
        "{} (ID {}) is now the known-good snapshot",
        target.path, target.id
    ));
    if follow {
        say.out(format!("the default subvolume is now {}", target.path));
    }
    for n in notes {
        say.note(n);
    }
    Ok(Code::Ok)
}

/// Run `mark-bad`.
pub fn run_bad(root: &Root, args: &MarkBadArgs) -> anyhow::Result<Code> {
    run_bad_with(root, args, Bus::System, &mut Say::print())
}

/// Run `mark-bad` with signals and systemd on `bus`, its messages to `say`
/// (the D-Bus method `MarkBad` runs this too).
pub fn run_bad_with(
    root: &Root,
    args: &MarkBadArgs,
    bus: Bus,
    say: &mut Say,
) -> anyhow::Result<Code> {
    let sys = open(root, bus)?;
    // Read, decide and write under the lock a check holds for the same.
    let _lock = sys.state.lock().code(Code::Runtime)?;
    let state = sys.boot_state()?;
    let target = match &args.snapshot {
        Some(a) => resolve(&sys.snapshots, a)?,
        None => state.trial.clone().ok_or_else(|| {
            with_code(
                Code::Usage,
                anyhow!("there is no trial to mark bad; name the snapshot"),
            )
        })?,
    };
    let default = sys
        .snapshots
        .default_subvolume()
        .map_err(|e| e.context("finding the default subvolume"))
        .code(Code::Snapshot)?;
    let after = mark_bad(&state, &target);
    // The known-good to put the default back to: only one that still
    // exists in the store (a rollback only ever goes to a known-good).
    let good = match after.good.clone() {
        Some(g) => sys
            .snapshots
            .lookup(&g.path)
            .map_err(|e| e.context(format!("looking up the known-good snapshot {}", g.path)))
            .code(Code::Snapshot)?
            .filter(|found| found.id == g.id),
        None => None,
    };
    let mut warning = None;
    let set_default = if default == target {
        match &good {
            Some(g) => Some(g.clone()),
            None => {
                warning = Some(format!(
                    "warning: the default subvolume is still {} (there is no known-good \
                     snapshot to make the default); make another snapshot the default",
                    target.path
                ));
                None
            }
        }
    } else {
        None
    };
    let mut reason = "marked bad by hand".to_owned();
    if let Some(g) = &set_default {
        reason.push_str(&format!("; the default subvolume is {} again", g.path));
    }
    let change = Change {
        set_default: set_default.clone(),
        ..Change::env(
            state.clone(),
            after,
            vec![NewEvent::new(
                EventKind::MarkBad,
                Some(target.clone()),
                reason,
            )],
        )
    };
    let notes = apply(&sys, &change)?;
    let what = if state.trial.as_ref() == Some(&target) {
        "disarmed: it is no longer the trial"
    } else if state.good.as_ref() == Some(&target) {
        "dropped: there is no known-good snapshot now"
    } else {
        "recorded as bad"
    };
    say.out(format!(
        "{} (ID {}) marked bad, {what}",
        target.path, target.id
    ));
    if let Some(g) = &set_default {
        say.out(format!("the default subvolume is {} again", g.path));
    }
    if sys.booted().is_ok_and(|b| b == target) {
        say.out(
            "it is still the running system: reboot (or run `health-checker rollback`) to leave it",
        );
    }
    for n in notes.into_iter().chain(warning) {
        say.note(n);
    }
    Ok(Code::Ok)
}
