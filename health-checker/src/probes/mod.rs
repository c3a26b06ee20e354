//! Probes and plugins: discovery (vendor and admin `plugins.d`, legacy
//! openSUSE and greenboot directories), manifests, safety checks, the
//! parallel runner, built-in checks and degraded-mode stop actions.
//!
//! The engine calls [`run_phase`] (or [`check_phase`], which also loads the
//! configuration); degraded mode runs the [`stop_actions`].

pub mod builtin;
pub mod capture;
pub mod cgroup;
pub mod discovery;
pub mod display;
pub mod manifest;
pub mod probe;
pub mod process;
pub mod runner;
pub mod safety;
pub mod spawn;
pub mod stop;

use std::collections::HashSet;
use std::path::PathBuf;

use crate::config::Config;
use crate::paths::Root;
use crate::systemd::Bus;
use crate::verdict::{Outcome, Phase, PhaseReport, ProbeResult, Severity};

pub use discovery::{discover, Discovered};
pub use probe::{Check, Kind, Probe};
pub use stop::{run_stop_actions, stop_actions, StopAction};

/// What probes are told about the boot, and where the built-ins look. The
/// caller (the engine) fills it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeContext {
    /// The booted snapshot's path (`HC_SNAPSHOT`).
    pub snapshot: Option<String>,
    /// Its subvolume ID (`HC_SNAPSHOT_ID`).
    pub snapshot_id: Option<u64>,
    /// Whether the booted snapshot is the trial (`HC_TRIAL`).
    pub trial: bool,
    /// The mount table the fstab check reads.
    pub mountinfo: PathBuf,
    /// Where systemd is reached.
    pub bus: Bus,
}

impl Default for ProbeContext {
    fn default() -> Self {
        ProbeContext {
            snapshot: None,
            snapshot_id: None,
            trial: false,
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            bus: Bus::System,
        }
    }
}

/// Run every probe of `phase` on the system at `root` and add up the
/// verdict. Plugins that cannot run (bad manifest, refused as insecure) fail
/// every phase with an error result.
pub fn run_phase(root: &Root, config: &Config, phase: Phase, ctx: &ProbeContext) -> PhaseReport {
    let found = discover(root, &config.probes);
    let mut results: Vec<ProbeResult> = found
        .broken
        .iter()
        .map(|b| error_result(&b.name, b.reason.clone()))
        .collect();
    let mut known: HashSet<String> = found.probes.iter().map(|p| p.name.clone()).collect();
    known.extend(found.masked.iter().map(|m| m.name.clone()));
    known.extend(found.broken.iter().map(|b| b.name.clone()));
    let probes: Vec<Probe> = found
        .probes
        .into_iter()
        .filter(|p| p.phase == phase)
        .collect();
    results.extend(runner::run_probes(root, config, &probes, &known, ctx));
    PhaseReport::new(phase, results)
}

/// Load the configuration of `root` and run `phase`. A configuration that
/// cannot be read gives a failed report, never a pass.
pub fn check_phase(root: &Root, phase: Phase, ctx: &ProbeContext) -> PhaseReport {
    match crate::config::load(root) {
        Ok(loaded) => run_phase(root, &loaded.config, phase, ctx),
        Err(e) => PhaseReport::new(
            phase,
            vec![error_result(
                "configuration",
                format!("cannot read the configuration: {e}"),
            )],
        ),
    }
}

/// A required error result: something that should have been checked could
/// not be.
pub fn error_result(name: &str, reason: String) -> ProbeResult {
    ProbeResult {
        cost: Default::default(),
        name: name.to_string(),
        severity: Severity::Required,
        result: Outcome::Error,
        duration_ms: 0,
        reason: Some(reason),
        output: String::new(),
    }
}
