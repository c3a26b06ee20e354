//! A probe ready to run, whatever it was declared by: a plugin manifest, an
//! openSUSE-style script or a greenboot script.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::verdict::{Phase, Severity};

use super::cgroup::Limits;
use super::manifest::MinFree;

/// What declared a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A manifest in a `plugins.d` directory.
    Plugin,
    /// An executable in an openSUSE health-checker plugin directory.
    Legacy,
    /// A greenboot `check/required.d` or `check/wanted.d` script.
    Greenboot,
}

/// One part of a probe. A probe passes when every part passes or skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Run this command (`argv[0]` absolute).
    Exec(Vec<String>),
    /// These systemd units must be active.
    Units(Vec<String>),
    /// No systemd unit may be failed, except these patterns.
    FailedUnits { ignore: Vec<String> },
    /// Every fstab mount must be mounted.
    Fstab,
    /// Minimum free space.
    MinFree(MinFree),
}

/// A probe ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub name: String,
    pub description: String,
    pub phase: Phase,
    pub severity: Severity,
    pub timeout: Duration,
    /// Built-ins first, then the command, in this order.
    pub checks: Vec<Check>,
    /// The degraded-mode stop command, if any.
    pub stop: Option<Vec<String>>,
    /// Probes of the same phase that must finish first.
    pub after: Vec<String>,
    pub kind: Kind,
    /// The file that declared it (manifest or script).
    pub origin: PathBuf,
    /// The vendor manifest this admin manifest replaces.
    pub overrides: Option<PathBuf>,
    /// Its cgroup's limits (its stop action's too).
    pub limits: Limits,
}
