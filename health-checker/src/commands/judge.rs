//! Judging a phase: a phase's probe results through the engine, with the
//! real seams of one system. What `check` does after running the probes, and
//! what `deadline` does when no verdict came in time.

use anyhow::Context;

use super::system::{engine_config, System};
use crate::engine::{run_check, CheckOptions, CheckReport};
use crate::exit::{Code, CodeExt};
use crate::probes::ProbeContext;
use crate::state::{current_boot_id, unix_now};
use crate::verdict::PhaseReport;

/// Decide on `report` for the running boot and, unless `dry_run`, carry the
/// decision out (default subvolume, environment, records, degraded mode,
/// alerts, reboot) in the engine's crash-safe order.
pub fn judge(sys: &System, report: PhaseReport, dry_run: bool) -> anyhow::Result<CheckReport> {
    let boot_id = current_boot_id()
        .context("reading the kernel's boot ID")
        .code(Code::Runtime)?;
    let ctx = sys.probe_context(ProbeContext::default());
    let config = engine_config(&sys.config);
    let opts = CheckOptions {
        report: &report,
        config: &config,
        stop_units: &sys.config.degraded.stop_services,
        dry_run,
        now: unix_now(),
        boot_id: &boot_id,
    };
    run_check(
        &sys.env,
        &sys.snapshots,
        &sys.check_actions(&ctx),
        &sys.history,
        &sys.state,
        &opts,
    )
}
