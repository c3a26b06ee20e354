//! The vocabulary shared by the probes, the engine and the history: phases,
//! severities, probe results and the verdict of a phase.

use serde::{Deserialize, Serialize};

/// When in the boot a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// As soon as local filesystems are mounted.
    Early,
    /// Once the system is up, before `boot-complete.target`.
    Late,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Early => "early",
            Phase::Late => "late",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "early" => Ok(Phase::Early),
            "late" => Ok(Phase::Late),
            other => Err(format!(
                "unknown phase {other:?} (expected \"early\" or \"late\")"
            )),
        }
    }
}

/// What a probe's failure means for the boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A failure fails the boot.
    Required,
    /// A failure is reported only.
    Wanted,
}

/// How one probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not applicable here (exit code 77).
    Skip,
    Timeout,
    /// The probe could not run at all (missing executable, bad manifest,
    /// refused as insecure, configuration unreadable).
    Error,
}

impl Outcome {
    /// Whether this outcome fails a required probe. Only a pass or a skip is
    /// good; anything that did not positively pass counts against the boot.
    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Pass | Outcome::Skip)
    }
}

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub name: String,
    pub severity: Severity,
    pub result: Outcome,
    pub duration_ms: u64,
    /// Why it failed, skipped or errored; `None` on a plain pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Captured output, capped.
    #[serde(default)]
    pub output: String,
    /// What it cost and how it was contained (absent in records written
    /// before these fields existed).
    #[serde(flatten)]
    pub cost: ProbeCost,
}

/// What a probe cost (its commands together) and how they were contained.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProbeCost {
    /// CPU time of all its processes, microseconds (`cpu.stat` of its
    /// cgroup; without a cgroup, the kernel's count for the command and
    /// the children it waited for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_us: Option<u64>,
    /// Peak memory in bytes (`memory.peak` of its cgroup; without the
    /// memory controller, the largest resident set of the command and the
    /// children it waited for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// How its commands were contained: `cgroup`, `cgroup without limits`
    /// (the controllers were not available) or `process group` (no cgroup
    /// v2); absent for a probe that ran no command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containment: Option<String>,
}

/// The verdict of one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

/// The results of one phase and the verdict they add up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseReport {
    pub phase: Phase,
    pub verdict: Verdict,
    pub probes: Vec<ProbeResult>,
}

impl PhaseReport {
    /// Add up the results: the phase fails if any required probe did not
    /// pass or skip.
    pub fn new(phase: Phase, probes: Vec<ProbeResult>) -> Self {
        let failed = probes
            .iter()
            .any(|p| p.severity == Severity::Required && p.result.is_failure());
        PhaseReport {
            phase,
            verdict: if failed { Verdict::Fail } else { Verdict::Pass },
            probes,
        }
    }

    /// The required probes that failed, for messages.
    pub fn failed_required(&self) -> impl Iterator<Item = &ProbeResult> {
        self.probes
            .iter()
            .filter(|p| p.severity == Severity::Required && p.result.is_failure())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(severity: Severity, result: Outcome) -> ProbeResult {
        ProbeResult {
            cost: Default::default(),
            name: "p".into(),
            severity,
            result,
            duration_ms: 1,
            reason: None,
            output: String::new(),
        }
    }

    #[test]
    fn only_pass_and_skip_keep_a_required_probe_good() {
        for (outcome, verdict) in [
            (Outcome::Pass, Verdict::Pass),
            (Outcome::Skip, Verdict::Pass),
            (Outcome::Fail, Verdict::Fail),
            (Outcome::Timeout, Verdict::Fail),
            (Outcome::Error, Verdict::Fail),
        ] {
            let r = PhaseReport::new(Phase::Late, vec![probe(Severity::Required, outcome)]);
            assert_eq!(r.verdict, verdict, "{outcome:?}");
        }
    }

    #[test]
    fn wanted_failures_do_not_fail_the_boot() {
        let r = PhaseReport::new(
            Phase::Early,
            vec![probe(Severity::Wanted, Outcome::Timeout)],
        );
        assert_eq!(r.verdict, Verdict::Pass);
    }
}
