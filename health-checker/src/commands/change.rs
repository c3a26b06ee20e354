//! A change of the boot state made by hand (`arm`, `mark-good`, `mark-bad`,
//! `rollback`), carried out in the engine's crash-safe order: the default
//! subvolume, then the boot environment, then the records (history, the
//! degraded flag). A failure of the default or the environment stops
//! everything and changes nothing after it; a failure of a record is
//! reported after the change it records was made.

use anyhow::{anyhow, Context};

use super::system::System;
use crate::engine::{BootEnv, BootState};
use crate::exit::{Code, CodeExt};
use crate::history::NewEvent;
use crate::snapshots::{SnapshotRef, Snapshots};
use crate::state::{current_boot_id, unix_now};

/// What to change.
#[derive(Debug, Clone)]
pub struct Change {
    /// The boot environment as it was read.
    pub before: BootState,
    /// The boot environment to write.
    pub after: BootState,
    /// Make this snapshot the default subvolume (first).
    pub set_default: Option<SnapshotRef>,
    /// Events for the history.
    pub events: Vec<NewEvent>,
    /// Leave degraded mode (`state.json`).
    pub clear_degraded: bool,
}

impl Change {
    /// A change of the environment only, recorded by `events`.
    pub fn env(before: BootState, after: BootState, events: Vec<NewEvent>) -> Self {
        Change {
            before,
            after,
            set_default: None,
            events,
            clear_degraded: false,
        }
    }
}

/// Carry the change out. Returns warnings worth showing. The error of a
/// failed record (a history or state file this version cannot interpret is
/// left as it is) says what was already done.
pub fn apply(sys: &System, change: &Change) -> anyhow::Result<Vec<String>> {
    if let Some(to) = &change.set_default {
        sys.snapshots
            .set_default(to.id)
            .with_context(|| format!("making {} (ID {}) the default subvolume", to.path, to.id))
            .code(Code::Snapshot)?;
    }
    let diff = change.after.diff(&change.before);
    if !diff.is_empty() {
        let done = match &change.set_default {
            Some(to) => format!(" (the default subvolume is already {})", to.path),
            None => String::new(),
        };
        sys.env
            .store(&diff)
            .with_context(|| format!("writing the boot environment{done}"))
            .code(Code::BootEnv)?;
    }

    let now = unix_now();
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    if !change.events.is_empty() {
        let boot_id = current_boot_id().ok();
        if let Err(e) = sys.history.append(&change.events, now, boot_id.as_deref()) {
            problems.push(format!(
                "recording the history in {}: {e:#}",
                sys.history.path().display()
            ));
        }
    }
    if change.clear_degraded {
        if let Err(e) = clear_degraded(sys) {
            problems.push(format!("leaving degraded mode: {e:#}"));
        }
    }
    notes.extend(sys.refresh_metrics());
    if problems.is_empty() {
        Ok(notes)
    } else {
        Err(anyhow!(
            "the boot state was changed, but {}",
            problems.join("; ")
        ))
        .code(Code::Runtime)
    }
}

/// Drop the degraded flag from `state.json`, under its lock.
fn clear_degraded(sys: &System) -> anyhow::Result<()> {
    let _lock = sys.state.lock()?;
    let loaded = sys.state.load()?;
    if let Some(u) = loaded.unusable {
        anyhow::bail!("{u}");
    }
    let mut state = loaded.value;
    if state.degraded.take().is_some() {
        sys.state
            .save(&state)
            .with_context(|| format!("saving {}", sys.state.path().display()))?;
    }
    Ok(())
}
