//! Running the probes of one phase: in parallel up to a bound, each after
//! the probes it names in `after`. An ordering that cannot be honoured (an
//! unknown name, a cycle) fails the probes concerned with an error, whatever
//! their severity: a broken configuration must never look like a good boot.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::paths::Root;
use crate::verdict::{Outcome, ProbeCost, ProbeResult, Severity};

use super::builtin::{self, Part};
use super::probe::{Check, Probe};
use super::process::{self, Ended, RunSpec};
use super::safety::{self, Trust};
use super::ProbeContext;

/// Exit code meaning "not applicable here".
pub const EXIT_SKIP: i32 = 77;

/// Run `probes` (all of one phase). `known` holds every other probe name that
/// `after` may mention without effect (other phases, masked plugins).
/// Results come in the order of `probes`.
pub fn run_probes(
    root: &Root,
    config: &Config,
    probes: &[Probe],
    known: &HashSet<String>,
    ctx: &ProbeContext,
) -> Vec<ProbeResult> {
    // The cgroup subtree is set up before the workers start: it may move
    // the checker into a scope of its own.
    if probes
        .iter()
        .any(|p| p.checks.iter().any(|c| matches!(c, Check::Exec(_))))
    {
        let _ = super::cgroup::tree();
    }
    schedule(config.probes.parallel, probes, known, |p| {
        run_one(root, config, p, ctx)
    })
}

/// Run `probes` with `run_probe`, at most `parallel` at a time, in the
/// order `after` asks. A probe whose run panics is an error result; the
/// others still run and nothing waits for it.
fn schedule(
    parallel: usize,
    probes: &[Probe],
    known: &HashSet<String>,
    run_probe: impl Fn(&Probe) -> ProbeResult + Sync,
) -> Vec<ProbeResult> {
    let n = probes.len();
    let (deps, mut errors) = plan(probes, known);
    let mut results: Vec<Option<ProbeResult>> = vec![None; n];
    for (i, reason) in errors.drain() {
        results[i] = Some(ProbeResult {
            cost: Default::default(),
            name: probes[i].name.clone(),
            severity: Severity::Required,
            result: Outcome::Error,
            duration_ms: 0,
            reason: Some(reason),
            output: String::new(),
        });
    }
    let runnable: Vec<usize> = (0..n).filter(|&i| results[i].is_none()).collect();
    let waiting: HashMap<usize, usize> = runnable.iter().map(|&i| (i, deps[i].len())).collect();
    let mut dependents: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in &runnable {
        for &d in &deps[i] {
            dependents.entry(d).or_default().push(i);
        }
    }
    let ready: Vec<usize> = runnable
        .iter()
        .copied()
        .rev()
        .filter(|i| waiting[i] == 0)
        .collect();
    let state = Mutex::new(Sched {
        ready,
        left: runnable.len(),
        results,
        waiting,
    });
    let wake = Condvar::new();
    let workers = parallel.max(1).min(runnable.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = {
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    loop {
                        if let Some(i) = st.ready.pop() {
                            break i;
                        }
                        if st.left == 0 {
                            return;
                        }
                        st = wake.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_probe(&probes[i])
                }))
                .unwrap_or_else(|panic| panicked(&probes[i], panic.as_ref()));
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                st.results[i] = Some(r);
                st.left -= 1;
                for &d in dependents.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
                    let now_ready = st.waiting.get_mut(&d).is_some_and(|w| {
                        *w -= 1;
                        *w == 0
                    });
                    if now_ready {
                        st.ready.push(d);
                    }
                }
                wake.notify_all();
            });
        }
    });
    let st = state.into_inner().unwrap_or_else(|p| p.into_inner());
    st.results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| ProbeResult {
                cost: Default::default(),
                name: probes[i].name.clone(),
                severity: Severity::Required,
                result: Outcome::Error,
                duration_ms: 0,
                reason: Some("internal error: the probe was never scheduled".into()),
                output: String::new(),
            })
        })
        .collect()
}

/// The result of a probe whose run panicked (a bug): an error, whatever the
/// probe's severity.
fn panicked(probe: &Probe, panic: &(dyn std::any::Any + Send)) -> ProbeResult {
    let why = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".into());
    tracing::error!(PROBE = %probe.name, "internal error running probe {}: {why}", probe.name);
    ProbeResult {
        cost: Default::default(),
        name: probe.name.clone(),
        severity: Severity::Required,
        result: Outcome::Error,
        duration_ms: 0,
        reason: Some(format!("internal error while running the probe: {why}")),
        output: String::new(),
    }
}

struct Sched {
    ready: Vec<usize>,
    left: usize,
    results: Vec<Option<ProbeResult>>,
    /// Per probe, how many of its `after` probes have not finished.
    waiting: HashMap<usize, usize>,
}

/// The dependencies of each probe (indexes into `probes`) and the probes
/// that cannot run because of their ordering, with the reason.
fn plan(probes: &[Probe], known: &HashSet<String>) -> (Vec<Vec<usize>>, HashMap<usize, String>) {
    let index: HashMap<&str, usize> = probes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let mut deps = vec![Vec::new(); probes.len()];
    let mut errors = HashMap::new();
    for (i, p) in probes.iter().enumerate() {
        for a in &p.after {
            if let Some(&j) = index.get(a.as_str()) {
                if !deps[i].contains(&j) {
                    deps[i].push(j);
                }
            } else if !known.contains(a) {
                errors.insert(
                    i,
                    format!("{}: after = {a:?} names no probe", p.origin.display()),
                );
            }
        }
    }
    // Kahn: what cannot be ordered is in a cycle or after one.
    let mut indeg: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut queue: Vec<usize> = (0..probes.len()).filter(|&i| indeg[i] == 0).collect();
    let mut done = vec![false; probes.len()];
    while let Some(i) = queue.pop() {
        done[i] = true;
        for (k, d) in deps.iter().enumerate() {
            if d.contains(&i) {
                indeg[k] -= 1;
                if indeg[k] == 0 {
                    queue.push(k);
                }
            }
        }
    }
    let stuck: Vec<usize> = (0..probes.len()).filter(|&i| !done[i]).collect();
    let on_cycle: Vec<usize> = stuck
        .iter()
        .copied()
        .filter(|&i| reaches(&deps, i, i))
        .collect();
    if !on_cycle.is_empty() {
        let names: Vec<&str> = on_cycle.iter().map(|&i| probes[i].name.as_str()).collect();
        for &i in &on_cycle {
            errors.insert(
                i,
                format!("`after` ordering cycle among probes: {}", names.join(", ")),
            );
        }
    }
    // Anything after a probe that cannot run cannot run either.
    loop {
        let mut changed = false;
        for (i, d) in deps.iter().enumerate() {
            if errors.contains_key(&i) {
                continue;
            }
            if let Some(&j) = d.iter().find(|j| errors.contains_key(j)) {
                errors.insert(
                    i,
                    format!("runs after {}, which cannot run", probes[j].name),
                );
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    (deps, errors)
}

/// Whether `to` is reachable from `from` through at least one edge.
fn reaches(deps: &[Vec<usize>], from: usize, to: usize) -> bool {
    let mut seen = vec![false; deps.len()];
    let mut stack = deps[from].clone();
    while let Some(i) = stack.pop() {
        if i == to {
            return true;
        }
        if !std::mem::replace(&mut seen[i], true) {
            stack.extend(&deps[i]);
        }
    }
    false
}

/// The environment of a probe (see `docs/design.md`).
pub fn probe_env(root: &Root, probe: &Probe, ctx: &ProbeContext) -> Vec<(String, String)> {
    vec![
        ("HC_PHASE".into(), probe.phase.as_str().into()),
        ("HC_PROBE".into(), probe.name.clone()),
        ("HC_ROOT".into(), root.dir().to_string_lossy().into_owned()),
        (
            "HC_SNAPSHOT".into(),
            ctx.snapshot.clone().unwrap_or_default(),
        ),
        (
            "HC_SNAPSHOT_ID".into(),
            ctx.snapshot_id.map(|i| i.to_string()).unwrap_or_default(),
        ),
        ("HC_TRIAL".into(), if ctx.trial { "1" } else { "0" }.into()),
    ]
}

/// Run one probe: each of its checks in order, stopping at the first that
/// does not pass or skip.
pub fn run_one(root: &Root, config: &Config, probe: &Probe, ctx: &ProbeContext) -> ProbeResult {
    let start = Instant::now();
    let mut output = String::new();
    let mut outcome = Outcome::Skip;
    let mut reason = None;
    let mut cost = ProbeCost::default();
    for check in &probe.checks {
        let left = probe.timeout.saturating_sub(start.elapsed());
        let part = match check {
            Check::Exec(argv) => {
                let (part, run) = exec_part(root, config, probe, ctx, argv, left);
                add_cost(&mut cost, &run);
                part
            }
            builtin => builtin_part(root, ctx, builtin.clone(), probe.timeout, left),
        };
        output.push_str(&part.output);
        match part.outcome {
            Outcome::Pass => outcome = Outcome::Pass,
            Outcome::Skip => {
                if reason.is_none() {
                    reason = part.reason;
                }
            }
            bad => {
                outcome = bad;
                reason = part.reason;
                break;
            }
        }
    }
    if outcome == Outcome::Pass {
        reason = None;
    }
    let output = cap(output, config.probes.output_limit);
    let result = ProbeResult {
        cost,
        name: probe.name.clone(),
        severity: probe.severity,
        result: outcome,
        duration_ms: start.elapsed().as_millis() as u64,
        reason,
        output,
    };
    log(&result);
    result
}

/// Add what one command of a probe cost to the probe's total.
pub fn add_cost(total: &mut ProbeCost, run: &process::Run) {
    total.cpu_us = match (total.cpu_us, run.cost.cpu_us) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    total.peak_memory_bytes = total.peak_memory_bytes.max(run.cost.peak_memory_bytes);
    total.containment = Some(containment(run));
}

/// How a run was contained, for the record.
pub fn containment(run: &process::Run) -> String {
    if !run.cgroup {
        "process group".into()
    } else if super::cgroup::tree().is_some_and(|t| t.limits_note().is_some()) {
        "cgroup without limits".into()
    } else {
        "cgroup".into()
    }
}

/// Run a built-in check in a thread, so that a hung D-Bus call or a
/// `statvfs` on a dead network filesystem cannot outlast the probe's timeout.
/// A check still running at the timeout is left to finish on its own.
fn builtin_part(
    root: &Root,
    ctx: &ProbeContext,
    check: Check,
    timeout: Duration,
    left: Duration,
) -> Part {
    let (tx, rx) = std::sync::mpsc::channel();
    let root = root.clone();
    let ctx = ctx.clone();
    let spawned = std::thread::Builder::new()
        .name("builtin-check".into())
        .spawn(move || {
            let part = match &check {
                Check::Units(names) => builtin::check_units(&ctx.bus, names),
                Check::FailedUnits { ignore } => builtin::check_failed_units(&ctx.bus, ignore),
                Check::Fstab => builtin::check_fstab(&root, &ctx.mountinfo),
                Check::MinFree(mf) => builtin::check_min_free(&root, mf),
                Check::Exec(_) => Part::error("internal error: not a built-in check".into()),
            };
            let _ = tx.send(part);
        });
    if let Err(e) = spawned {
        return Part::error(format!("starting a built-in check: {e}"));
    }
    match rx.recv_timeout(left) {
        Ok(part) => part,
        Err(_) => Part {
            outcome: Outcome::Timeout,
            reason: Some(format!(
                "timed out after {}",
                crate::config::format_duration(timeout)
            )),
            output: String::new(),
        },
    }
}

fn exec_part(
    root: &Root,
    config: &Config,
    probe: &Probe,
    ctx: &ProbeContext,
    argv: &[String],
    timeout: Duration,
) -> (Part, process::Run) {
    let env = probe_env(root, probe, ctx);
    let run = process::run(&RunSpec {
        argv,
        env: &env,
        timeout,
        kill_grace: config.probes.kill_grace.get(),
        output_limit: config.probes.output_limit,
        input: None,
        trust: trust(root, config),
        what: &format!("probe-{}", probe.name),
        limits: probe.limits,
    });
    let last = run
        .output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default();
    let (outcome, reason) = match run.ended.clone() {
        _ if run.limit_hit.is_some() => (Outcome::Fail, run.limit_hit.clone()),
        Ended::Exited(0) => (Outcome::Pass, None),
        Ended::Exited(EXIT_SKIP) => (Outcome::Skip, Some(format!("not applicable{last}"))),
        Ended::Exited(c) => (Outcome::Fail, Some(format!("exited with status {c}{last}"))),
        Ended::Signaled(s) => (
            Outcome::Fail,
            Some(format!("killed by {}{last}", process::signal_name(s))),
        ),
        Ended::TimedOut => (
            Outcome::Timeout,
            Some(format!(
                "timed out after {}",
                crate::config::format_duration(probe.timeout)
            )),
        ),
        Ended::Abandoned => (
            Outcome::Timeout,
            Some(format!(
                "timed out after {} and did not end when killed; abandoned",
                crate::config::format_duration(probe.timeout)
            )),
        ),
        Ended::SpawnFailed(why) => (Outcome::Error, Some(why)),
    };
    let part = Part {
        outcome,
        reason,
        output: run.output.clone(),
    };
    (part, run)
}

/// Who may own what probes and stop actions run: root only, unless
/// `probes.insecure_ok`.
pub fn trust<'a>(root: &'a Root, config: &Config) -> Trust<'a> {
    if config.probes.insecure_ok {
        Trust::Any
    } else {
        Trust::RootOnly {
            below: root.dir(),
            names: safety::PLUGIN,
        }
    }
}

/// Keep at most about `limit` bytes of built-in and command output together.
fn cap(text: String, limit: usize) -> String {
    if text.len() <= limit.saturating_add(200) {
        return text;
    }
    let mut c = super::capture::Capture::new(limit);
    c.push(text.as_bytes());
    c.text()
}

fn log(r: &ProbeResult) {
    for line in r.output.lines() {
        tracing::info!(PROBE = %r.name, "{}", super::display::printable(line));
    }
    let reason = super::display::one_line(r.reason.as_deref().unwrap_or(""));
    match r.result {
        Outcome::Pass | Outcome::Skip => tracing::info!(
            PROBE = %r.name, RESULT = ?r.result, DURATION_MS = r.duration_ms,
            "probe {}: {:?} {reason}", r.name, r.result
        ),
        _ => tracing::warn!(
            PROBE = %r.name, RESULT = ?r.result, DURATION_MS = r.duration_ms,
            "probe {}: {:?}: {reason}", r.name, r.result
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Phase;

    fn probe(name: &str, after: &[&str]) -> Probe {
        Probe {
            name: name.into(),
            description: String::new(),
            phase: Phase::Early,
            severity: Severity::Wanted,
            timeout: Duration::from_secs(1),
            checks: Vec::new(),
            stop: None,
            after: after.iter().map(|a| a.to_string()).collect(),
            kind: super::super::Kind::Plugin,
            origin: format!("/{name}.toml").into(),
            overrides: None,
            limits: Default::default(),
        }
    }

    #[test]
    fn a_probe_whose_run_panics_is_an_error_and_the_others_still_run() {
        let probes = [
            probe("boom", &[]),
            probe("ok", &[]),
            probe("later", &["ok"]),
        ];
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = schedule(2, &probes, &HashSet::new(), |p| {
                if p.name == "boom" {
                    panic!("deliberate failure");
                }
                ProbeResult {
                    cost: Default::default(),
                    name: p.name.clone(),
                    severity: p.severity,
                    result: Outcome::Pass,
                    duration_ms: 0,
                    reason: None,
                    output: String::new(),
                }
            });
            let _ = tx.send(r);
        });
        let r = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the runner hung after a probe's thread panicked");
        assert_eq!(r[0].result, Outcome::Error);
        assert_eq!(r[0].severity, Severity::Required);
        assert_eq!(
            r[0].reason.as_deref(),
            Some("internal error while running the probe: deliberate failure")
        );
        assert_eq!((r[1].result, r[2].result), (Outcome::Pass, Outcome::Pass));
    }
}
