//! Degraded mode: every plugin's stop action, each with its timeout, so a
//! broken system does not keep writing bad data.

use crate::config::Config;
use crate::paths::Root;
use crate::verdict::{Outcome, ProbeResult};

use super::discovery::discover;
use super::process::{self, Ended, RunSpec};
use super::runner::{probe_env, trust};
use super::ProbeContext;

/// Run the stop action of every probe that has one, one after the other, in
/// name order. Each gets the probe's timeout; the results say what happened
/// (`Pass` when the action exited 0).
pub fn run_stop_actions(root: &Root, config: &Config, ctx: &ProbeContext) -> Vec<ProbeResult> {
    let found = discover(root, &config.probes);
    let mut out = Vec::new();
    for probe in found.probes.iter().filter(|p| p.stop.is_some()) {
        let argv = probe.stop.as_deref().unwrap_or_default();
        let env = probe_env(root, probe, ctx);
        let run = process::run(&RunSpec {
            argv,
            env: &env,
            timeout: probe.timeout,
            kill_grace: config.probes.kill_grace.get(),
            output_limit: config.probes.output_limit,
            input: None,
            trust: trust(root, config),
        });
        let (result, reason) = match run.ended {
            Ended::Exited(0) => (Outcome::Pass, None),
            Ended::Exited(c) => (
                Outcome::Fail,
                Some(format!("stop action exited with status {c}")),
            ),
            Ended::Signaled(s) => (
                Outcome::Fail,
                Some(format!("stop action killed by {}", process::signal_name(s))),
            ),
            Ended::TimedOut => (Outcome::Timeout, Some("stop action timed out".into())),
            Ended::Abandoned => (
                Outcome::Timeout,
                Some("stop action timed out and did not end when killed; abandoned".into()),
            ),
            Ended::SpawnFailed(why) => (Outcome::Error, Some(why)),
        };
        if result == Outcome::Pass {
            tracing::info!(PROBE = %probe.name, "stop action done");
        } else {
            tracing::warn!(PROBE = %probe.name, "stop action: {}", reason.as_deref().unwrap_or(""));
        }
        out.push(ProbeResult {
            name: probe.name.clone(),
            severity: probe.severity,
            result,
            duration_ms: run.duration.as_millis() as u64,
            reason,
            output: run.output,
        });
    }
    out
}
