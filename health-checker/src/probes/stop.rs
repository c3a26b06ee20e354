//! Degraded mode: every plugin's stop action, each with its timeout, so a
//! broken system does not keep writing bad data. [`stop_actions`] finds
//! them; the engine runs them as the first part of entering degraded mode
//! (`Actions::enter_degraded`), through [`StopAction::run`].

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::paths::Root;
use crate::verdict::{Outcome, ProbeCost, ProbeResult, Severity};

use super::cgroup::Limits;
use super::discovery::discover;
use super::process::{self, Ended, RunSpec};
use super::runner::probe_env;
use super::safety::{self, Trust};
use super::ProbeContext;

/// One plugin's stop action, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopAction {
    /// The probe's name.
    pub name: String,
    pub severity: Severity,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
    kill_grace: Duration,
    output_limit: usize,
    /// The root acted on, below which the program must be root's.
    root_dir: PathBuf,
    /// `probes.insecure_ok`: run what is not root's (tests only).
    insecure_ok: bool,
    /// The probe's cgroup limits.
    limits: Limits,
}

/// The stop action of every probe that has one, in name order. Each gets
/// the probe's timeout and environment.
pub fn stop_actions(root: &Root, config: &Config, ctx: &ProbeContext) -> Vec<StopAction> {
    let found = discover(root, &config.probes);
    found
        .probes
        .iter()
        .filter_map(|probe| {
            Some(StopAction {
                name: probe.name.clone(),
                severity: probe.severity,
                argv: probe.stop.clone()?,
                env: probe_env(root, probe, ctx),
                timeout: probe.timeout,
                kill_grace: config.probes.kill_grace.get(),
                output_limit: config.probes.output_limit,
                root_dir: root.dir().to_path_buf(),
                insecure_ok: config.probes.insecure_ok,
                limits: probe.limits,
            })
        })
        .collect()
}

impl StopAction {
    /// Run it; the result says what happened (`Pass` when the action
    /// exited 0), with its output.
    pub fn run(&self) -> ProbeResult {
        let run = process::run(&RunSpec {
            argv: &self.argv,
            env: &self.env,
            timeout: self.timeout,
            kill_grace: self.kill_grace,
            output_limit: self.output_limit,
            input: None,
            trust: if self.insecure_ok {
                Trust::Any
            } else {
                Trust::RootOnly {
                    below: &self.root_dir,
                    names: safety::PLUGIN,
                }
            },
            what: &format!("stop-{}", self.name),
            limits: self.limits,
        });
        let (result, reason) = match run.ended.clone() {
            _ if run.limit_hit.is_some() => (Outcome::Fail, run.limit_hit.clone()),
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
        let mut cost = ProbeCost::default();
        super::runner::add_cost(&mut cost, &run);
        ProbeResult {
            cost,
            name: self.name.clone(),
            severity: self.severity,
            result,
            duration_ms: run.duration.as_millis() as u64,
            reason,
            output: run.output,
        }
    }
}

/// Find and run every stop action, one after the other, in name order.
pub fn run_stop_actions(root: &Root, config: &Config, ctx: &ProbeContext) -> Vec<ProbeResult> {
    stop_actions(root, config, ctx)
        .iter()
        .map(StopAction::run)
        .collect()
}
