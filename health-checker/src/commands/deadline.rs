//! `health-checker deadline`: the watchdog of one boot, run by
//! `health-checker-deadline.service` early in the boot. It waits until
//! `[boot] deadline` has passed since the boot (CLOCK_BOOTTIME, which counts
//! suspended time too), looking every few seconds for the late phase's
//! verdict on this boot in `state.json`, and exits 0 as soon as there is
//! one. When the deadline passes without it (a unit that never finishes
//! starting, a probe that hangs), the boot fails: a late-phase report with
//! one required probe, `deadline`, timed out, saying how long it waited and
//! which systemd jobs were still running, is judged exactly as `check
//! --phase late` judges its probes' results.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use nix::time::{clock_gettime, ClockId};

use super::check::judge;
use super::system::{LoadedConfig, System};
use super::ContextArgs;
use crate::config::{format_duration, parse_duration};
use crate::exit::{Code, CodeExt};
use crate::paths::Root;
use crate::state::{current_boot_id, StateFile};
use crate::systemd::{Job, Systemd};
use crate::verdict::{Outcome, Phase, PhaseReport, ProbeResult, Severity, Verdict};

/// Name of the probe the deadline's failure is reported as.
pub const PROBE: &str = "deadline";
/// At most this many unfinished jobs are named in the reason.
const JOBS_SHOWN: usize = 8;

/// Options of `deadline`.
#[derive(Debug, Args)]
pub struct DeadlineArgs {
    /// Pretend the boot started this many seconds before the command did
    /// (tests).
    #[arg(long, hide = true, value_name = "SECS")]
    pub now_boottime: Option<u64>,
    /// How often to look for the verdict.
    #[arg(long, hide = true, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub poll: Duration,
    #[command(flatten)]
    pub context: ContextArgs,
}

/// Time since the boot: the kernel's CLOCK_BOOTTIME, or a fake start for
/// tests.
#[derive(Debug)]
struct Clock {
    fake: Option<(Duration, Instant)>,
}

impl Clock {
    fn now(&self) -> anyhow::Result<Duration> {
        match self.fake {
            Some((base, start)) => Ok(base + start.elapsed()),
            None => boottime(),
        }
    }
}

/// Time since the boot, suspended time included.
pub fn boottime() -> anyhow::Result<Duration> {
    let ts = clock_gettime(ClockId::CLOCK_BOOTTIME).context("reading CLOCK_BOOTTIME")?;
    Ok(Duration::new(
        u64::try_from(ts.tv_sec()).unwrap_or(0),
        u32::try_from(ts.tv_nsec()).unwrap_or(0),
    ))
}

/// Run `deadline`: exit 0 when the late phase reached a verdict in time,
/// 1 when the deadline failed the boot.
pub fn run(root: &Root, args: &DeadlineArgs) -> anyhow::Result<Code> {
    let loaded = LoadedConfig::load(root);
    if let Some(e) = &loaded.error {
        tracing::warn!("configuration unreadable ({e}); the default deadline applies");
    }
    let deadline: Duration = loaded.config.boot.deadline.into();
    let boot_id = current_boot_id()
        .context("reading the kernel's boot ID")
        .code(Code::Runtime)?;
    let bus = args.context.context().bus;
    let sys = System::open(root, loaded.config, bus, false)?;
    let clock = Clock {
        fake: args
            .now_boottime
            .map(|s| (Duration::from_secs(s), Instant::now())),
    };
    let poll = args.poll.max(Duration::from_millis(10));

    tracing::info!(
        "waiting for the late phase's verdict on boot {boot_id}, at most {} after boot",
        format_duration(deadline)
    );
    let mut warned = false;
    let elapsed = loop {
        match late_verdict(&sys.state, &boot_id) {
            Ok(Some(v)) => {
                tracing::info!(
                    "the late phase's verdict on this boot is in ({v:?}); deadline disarmed"
                );
                return Ok(Code::Ok);
            }
            Ok(None) => {}
            Err(e) if !warned => {
                tracing::warn!("{e:#}; still waiting");
                warned = true;
            }
            Err(_) => {}
        }
        let now = clock.now()?;
        if now >= deadline {
            break now;
        }
        std::thread::sleep(poll.min(deadline - now));
    };

    let reason = format!(
        "no verdict on this boot {} after boot (deadline {}){}",
        format_duration(Duration::from_secs(elapsed.as_secs())),
        format_duration(deadline),
        unfinished_jobs(&sys)
    );
    tracing::error!(PROBE = PROBE, "{reason}");
    let report = PhaseReport::new(
        Phase::Late,
        vec![ProbeResult {
            cost: Default::default(),
            name: PROBE.to_owned(),
            severity: Severity::Required,
            result: Outcome::Timeout,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            reason: Some(reason),
            output: String::new(),
        }],
    );
    // The late phase may have decided since the last look: look again
    // under the lock the decision is made under, so that the boot is not
    // judged twice.
    let _lock = sys.state.lock().code(Code::Runtime)?;
    if let Ok(Some(v)) = late_verdict(&sys.state, &boot_id) {
        tracing::info!("the late phase's verdict on this boot came in at the deadline ({v:?}); deadline disarmed");
        return Ok(Code::Ok);
    }
    let ctx = sys.probe_context(args.context.context());
    let decided = judge(&sys, &report, &ctx, false, loaded.error.as_deref())?;
    print!("{}", decided.text());
    Ok(Code::BootFailed)
}

/// The late phase's verdict on boot `boot_id`, if it was recorded. A state
/// file that cannot be read or does not parse is an error (the caller keeps
/// waiting: the late phase may repair it).
fn late_verdict(state: &StateFile, boot_id: &str) -> anyhow::Result<Option<Verdict>> {
    let loaded = state
        .load()
        .with_context(|| format!("reading {}", state.path().display()))?;
    if let Some(c) = loaded.unusable {
        anyhow::bail!("{c}");
    }
    Ok(loaded
        .value
        .boot
        .filter(|b| b.boot_id == boot_id)
        .and_then(|b| b.late))
}

/// `"; still running: a.service (start, running), ..."`, from systemd over
/// D-Bus; empty when systemd cannot be asked.
fn unfinished_jobs(sys: &System) -> String {
    let jobs = match Systemd::connect(&sys.bus).and_then(|s| s.jobs()) {
        Ok(j) => j,
        Err(e) => {
            tracing::info!("unfinished jobs unknown: {e:#}");
            return String::new();
        }
    };
    describe_jobs(&jobs)
}

/// The reason's tail naming the jobs.
fn describe_jobs(jobs: &[Job]) -> String {
    if jobs.is_empty() {
        return "; systemd has no unfinished jobs".to_owned();
    }
    let mut shown: Vec<String> = jobs
        .iter()
        .take(JOBS_SHOWN)
        .map(|j| format!("{} ({}, {})", j.unit, j.job_type, j.state))
        .collect();
    if jobs.len() > JOBS_SHOWN {
        shown.push(format!("and {} more", jobs.len() - JOBS_SHOWN));
    }
    format!("; unfinished systemd jobs: {}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boottime_is_read_and_moves_forward() {
        let a = boottime().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let b = boottime().unwrap();
        assert!(a > Duration::ZERO && b > a, "{a:?} {b:?}");
    }

    #[test]
    fn unfinished_jobs_are_named_up_to_a_limit() {
        let job = |i: usize| Job {
            unit: format!("u{i}.service"),
            job_type: "start".into(),
            state: if i == 0 { "running" } else { "waiting" }.into(),
        };
        assert_eq!(
            describe_jobs(&[job(0), job(1)]),
            "; unfinished systemd jobs: u0.service (start, running), u1.service (start, waiting)"
        );
        let many: Vec<Job> = (0..JOBS_SHOWN + 3).map(job).collect();
        assert!(describe_jobs(&many).ends_with(", and 3 more"));
        assert_eq!(describe_jobs(&[]), "; systemd has no unfinished jobs");
    }

    #[test]
    fn a_fake_clock_starts_where_it_is_told() {
        let c = Clock {
            fake: Some((Duration::from_secs(100), Instant::now())),
        };
        let t = c.now().unwrap();
        assert!(t >= Duration::from_secs(100) && t < Duration::from_secs(110));
    }
}
