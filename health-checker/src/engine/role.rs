//! The role of the booted snapshot for this boot, read from the seams and
//! judged by the engine's rule ([`super::decide::role`]), before any probe
//! runs: what probes are told in `HC_TRIAL` is what the verdict assumes.

use anyhow::{Context, Result};

use super::decide::{role, Role};
use super::run::BootEnv;
use crate::snapshots::{SnapshotRef, Snapshots};

impl Role {
    /// Whether the boot is judged as a trial: the armed trial, or a new
    /// default that was never armed.
    pub fn is_trial(self) -> bool {
        matches!(self, Role::Trial { .. })
    }
}

/// The booted snapshot and its role, from the boot environment and the
/// snapshot store.
pub fn booted_role(env: &dyn BootEnv, snapshots: &dyn Snapshots) -> Result<(SnapshotRef, Role)> {
    let state = env.load().context("reading the boot environment")?;
    let booted = snapshots.booted().context("finding the booted snapshot")?;
    let default = snapshots
        .default_subvolume()
        .context("finding the default subvolume")?;
    let good = match &state.good {
        Some(g) => snapshots
            .lookup(&g.path)
            .with_context(|| format!("looking up the known-good snapshot {}", g.path))?
            .filter(|found| found.id == g.id)
            .map(|_| g.clone()),
        None => None,
    };
    let r = role(&state, &booted, &default, good.as_ref());
    Ok((booted, r))
}
