//! Prometheus metrics for node_exporter's textfile collector: after every
//! verdict and every change of the boot state, `health_checker.prom` is
//! rewritten atomically in `[metrics] textfile_dir` (off when that directory
//! does not exist). The text is built by a pure function of the history, the
//! state file and the boot environment; see docs/metrics.md for every
//! metric. A failure to write the metrics never changes a verdict: it is a
//! warning.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;

use crate::config::Config;
use crate::engine::{BootEnv, BootState};
use crate::fsutil;
use crate::history::{Event, EventKind, History};
use crate::paths::Root;
use crate::state::{State, StateFile};
use crate::verdict::{Outcome, Phase, Verdict};

/// The file written in the textfile collector's directory.
pub const FILE_NAME: &str = "health_checker.prom";

/// Every probe outcome, in the order the `result` label lists them.
const OUTCOMES: [(Outcome, &str); 5] = [
    (Outcome::Pass, "pass"),
    (Outcome::Fail, "fail"),
    (Outcome::Skip, "skip"),
    (Outcome::Timeout, "timeout"),
    (Outcome::Error, "error"),
];

/// The metrics text (Prometheus text exposition format 0.0.4) of a system,
/// from its records, each `None` when it could not be read (the metrics
/// taken from it are then left out, and `health_checker_record_readable`
/// says so): `history` the events this version understands (oldest first),
/// `state` the state file, `env` the boot environment.
pub fn render(
    history: Option<&[&Event]>,
    state: Option<&State>,
    env: Option<&BootState>,
) -> String {
    let mut out = String::new();
    header(
        &mut out,
        "health_checker_record_readable",
        "gauge",
        "1 when the record could be read; the metrics taken from one that could not are left out.",
    );
    for (record, readable) in [
        ("history", history.is_some()),
        ("state", state.is_some()),
        ("boot_environment", env.is_some()),
    ] {
        let _ = writeln!(
            out,
            "health_checker_record_readable{{record=\"{record}\"}} {}",
            u8::from(readable)
        );
    }
    if let Some(events) = history {
        history_metrics(&mut out, events);
    }
    if let Some(state) = state {
        gauge(
            &mut out,
            "health_checker_degraded",
            "1 while the system is in degraded mode.",
            u8::from(state.degraded.is_some()),
        );
    }
    if let Some(env) = env {
        gauge(
            &mut out,
            "health_checker_trial_pending",
            "1 while a snapshot is armed as a trial.",
            u8::from(env.trial.is_some()),
        );
        gauge(
            &mut out,
            "health_checker_trial_attempts_left",
            "Boot attempts GRUB still gives the armed trial (0 without a trial).",
            if env.trial.is_some() { env.tries } else { 0 },
        );
    }
    out
}

/// The counters, the last verdicts and their probes.
fn history_metrics(out: &mut String, events: &[&Event]) {
    let count = |kind: EventKind| events.iter().filter(|e| e.event.kind == kind).count();
    counter(
        out,
        "health_checker_promotions_total",
        "Snapshots that became known-good by passing their checks (not marked good by hand), as kept in the history.",
        count(EventKind::Promotion),
    );
    counter(
        out,
        "health_checker_rollbacks_total",
        "Rollbacks to the known-good snapshot, of a failed trial or by hand, as kept in the history.",
        count(EventKind::Rollback),
    );
    counter(
        out,
        "health_checker_fallbacks_total",
        "Trials the boot loader gave up on and booted the known-good snapshot instead, as kept in the history.",
        count(EventKind::GrubFallback),
    );

    // The newest verdict event of each phase.
    let mut last: BTreeMap<Phase, &Event> = BTreeMap::new();
    for e in events.iter().filter(|e| e.event.kind == EventKind::Verdict) {
        if let (Some(phase), Some(_)) = (e.event.phase, e.event.verdict) {
            last.insert(phase, e);
        }
    }
    header(
        out,
        "health_checker_last_verdict_pass",
        "gauge",
        "1 when the last verdict of the phase was a pass, 0 when it was a failure.",
    );
    for (phase, e) in &last {
        let pass = u8::from(e.event.verdict == Some(Verdict::Pass));
        let _ = writeln!(
            out,
            "health_checker_last_verdict_pass{{phase=\"{phase}\"}} {pass}"
        );
    }
    header(
        out,
        "health_checker_last_verdict_timestamp_seconds",
        "gauge",
        "When the phase last reached a verdict, in seconds since the Unix epoch.",
    );
    for (phase, e) in &last {
        let _ = writeln!(
            out,
            "health_checker_last_verdict_timestamp_seconds{{phase=\"{phase}\"}} {}",
            e.time
        );
    }
    header(
        out,
        "health_checker_probe_result",
        "gauge",
        "The result of each probe in the last verdict of its phase: 1 for the result it had, 0 for the others.",
    );
    for (phase, e) in &last {
        for p in &e.event.probes {
            for (outcome, name) in OUTCOMES {
                let _ = writeln!(
                    out,
                    "health_checker_probe_result{{phase=\"{phase}\",probe=\"{}\",result=\"{name}\"}} {}",
                    label(&p.name),
                    u8::from(p.result == outcome)
                );
            }
        }
    }
    header(
        out,
        "health_checker_probe_duration_seconds",
        "gauge",
        "How long each probe ran in the last verdict of its phase.",
    );
    for (phase, e) in &last {
        for p in &e.event.probes {
            let _ = writeln!(
                out,
                "health_checker_probe_duration_seconds{{phase=\"{phase}\",probe=\"{}\"}} {}",
                label(&p.name),
                seconds(p.duration_ms)
            );
        }
    }
}

/// Rewrite the metrics file of the system at `root` from its history, state
/// and boot environment. `Ok(None)` when metrics are off (the directory does
/// not exist); `Ok(Some(path))` when written. The error names the file.
pub fn write(
    root: &Root,
    config: &Config,
    history: &History,
    state: &StateFile,
    env: &dyn BootEnv,
) -> Result<Option<PathBuf>> {
    let dir = root.join(&config.metrics.textfile_dir);
    if config.metrics.textfile_dir.as_os_str().is_empty() || !dir.is_dir() {
        tracing::debug!("metrics are off: no directory {}", dir.display());
        return Ok(None);
    }
    let path = dir.join(FILE_NAME);
    // A record that cannot be read leaves its metrics out; the others are
    // still written.
    let read = history.read().ok().filter(|r| r.unusable.is_none());
    let events: Option<Vec<&Event>> = read.as_ref().map(|r| r.known().collect());
    let loaded = state.load().ok().filter(|l| l.unusable.is_none());
    let boot_state = env.load().ok();
    let text = render(
        events.as_deref(),
        loaded.as_ref().map(|l| &l.value),
        boot_state.as_ref(),
    );
    fsutil::atomic_write(&path, text.as_bytes())?;
    Ok(Some(path))
}

/// [`write`], with a failure turned into a warning for the command's notes,
/// which it shows (a failure to write metrics never changes a verdict).
pub fn refresh(
    root: &Root,
    config: &Config,
    history: &History,
    state: &StateFile,
    env: &dyn BootEnv,
) -> Option<String> {
    match write(root, config, history, state, env) {
        Ok(_) => None,
        Err(e) => Some(format!("warning: writing the metrics: {e:#}")),
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: usize) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u8) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// Milliseconds as seconds, exactly (`1.5`, `0.002`, `3`).
fn seconds(ms: u64) -> String {
    match ms % 1000 {
        0 => format!("{}", ms / 1000),
        frac => format!("{}.{:03}", ms / 1000, frac)
            .trim_end_matches('0')
            .to_owned(),
    }
}

/// A label value escaped for the text format (backslash, quote, newline).
fn label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::NewEvent;
    use crate::snapshots::SnapshotRef;
    use crate::state::Degraded;
    use crate::verdict::{ProbeResult, Severity};

    fn snap(path: &str, id: u64) -> SnapshotRef {
        SnapshotRef {
            id,
            path: path.into(),
        }
    }

    fn event(time: u64, kind: EventKind) -> Event {
        Event {
            format_version: Default::default(),
            time,
            boot_id: None,
            event: NewEvent::new(kind, Some(snap("@/.snapshots/2/snapshot", 258)), "why"),
        }
    }

    fn verdict(time: u64, phase: Phase, v: Verdict, probes: Vec<ProbeResult>) -> Event {
        let mut e = event(time, EventKind::Verdict);
        e.event.phase = Some(phase);
        e.event.verdict = Some(v);
        e.event.probes = probes;
        e
    }

    fn probe(name: &str, result: Outcome, ms: u64) -> ProbeResult {
        ProbeResult {
            cost: Default::default(),
            name: name.into(),
            severity: Severity::Required,
            result,
            duration_ms: ms,
            reason: None,
            output: String::new(),
        }
    }

    /// The lines of `text` that are samples (not comments).
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn counts_come_from_the_history_and_the_newest_verdict_per_phase_wins() {
        let events = [
            verdict(
                10,
                Phase::Early,
                Verdict::Fail,
                vec![probe("disk", Outcome::Fail, 5)],
            ),
            event(11, EventKind::Rollback),
            event(12, EventKind::GrubFallback),
            event(13, EventKind::Promotion),
            event(14, EventKind::Rollback),
            verdict(
                20,
                Phase::Early,
                Verdict::Pass,
                vec![probe("disk", Outcome::Pass, 1500)],
            ),
            verdict(
                30,
                Phase::Late,
                Verdict::Fail,
                vec![probe("we\"b\\", Outcome::Timeout, 60_000)],
            ),
        ];
        let refs: Vec<&Event> = events.iter().collect();
        let text = render(Some(&refs), Some(&State::default()), None);
        let s = samples(&text);
        for want in [
            "health_checker_promotions_total 1",
            "health_checker_rollbacks_total 2",
            "health_checker_fallbacks_total 1",
            "health_checker_last_verdict_pass{phase=\"early\"} 1",
            "health_checker_last_verdict_pass{phase=\"late\"} 0",
            "health_checker_last_verdict_timestamp_seconds{phase=\"early\"} 20",
            "health_checker_last_verdict_timestamp_seconds{phase=\"late\"} 30",
            "health_checker_probe_result{phase=\"early\",probe=\"disk\",result=\"pass\"} 1",
            "health_checker_probe_result{phase=\"early\",probe=\"disk\",result=\"fail\"} 0",
            "health_checker_probe_result{phase=\"late\",probe=\"we\\\"b\\\\\",result=\"timeout\"} 1",
            "health_checker_probe_duration_seconds{phase=\"early\",probe=\"disk\"} 1.5",
            "health_checker_probe_duration_seconds{phase=\"late\",probe=\"we\\\"b\\\\\"} 60",
            "health_checker_degraded 0",
            "health_checker_record_readable{record=\"history\"} 1",
            "health_checker_record_readable{record=\"boot_environment\"} 0",
        ] {
            assert!(s.contains(&want), "missing {want:?} in\n{text}");
        }
        // Only the newest early verdict's probes are shown.
        assert_eq!(
            s.iter()
                .filter(|l| l.contains("phase=\"early\",probe=\"disk\",result"))
                .count(),
            5,
            "{text}"
        );
        assert!(!text.contains("health_checker_trial_pending"), "{text}");
    }

    #[test]
    fn trial_and_degraded_come_from_the_environment_and_the_state() {
        let env = BootState {
            trial: Some(snap("@/.snapshots/3/snapshot", 259)),
            tries: 2,
            ..BootState::default()
        };
        let state = State {
            degraded: Some(Degraded {
                since: 5,
                reason: "disk".into(),
                snapshot: snap("@/.snapshots/2/snapshot", 258),
                extra: Default::default(),
            }),
            ..State::default()
        };
        let text = render(Some(&[]), Some(&state), Some(&env));
        let s = samples(&text);
        for want in [
            "health_checker_trial_pending 1",
            "health_checker_trial_attempts_left 2",
            "health_checker_degraded 1",
            "health_checker_record_readable{record=\"boot_environment\"} 1",
            "health_checker_promotions_total 0",
        ] {
            assert!(s.contains(&want), "missing {want:?} in\n{text}");
        }
        let none = render(
            Some(&[]),
            Some(&State::default()),
            Some(&BootState::default()),
        );
        assert!(samples(&none).contains(&"health_checker_trial_pending 0"));
        assert!(samples(&none).contains(&"health_checker_trial_attempts_left 0"));
    }

    #[test]
    fn every_sample_has_help_and_type_and_the_prefix() {
        let events = [verdict(
            1,
            Phase::Late,
            Verdict::Pass,
            vec![probe("a", Outcome::Skip, 2)],
        )];
        let refs: Vec<&Event> = events.iter().collect();
        let text = render(
            Some(&refs),
            Some(&State::default()),
            Some(&BootState::default()),
        );
        for l in samples(&text) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("health_checker_"), "{l}");
            assert!(text.contains(&format!("# HELP {name} ")), "{l}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{l}");
        }
    }

    #[test]
    fn an_unreadable_record_leaves_its_metrics_out() {
        let text = render(None, None, None);
        let s = samples(&text);
        for record in ["history", "state", "boot_environment"] {
            let want = format!("health_checker_record_readable{{record=\"{record}\"}} 0");
            assert!(s.contains(&want.as_str()), "missing {want:?} in\n{text}");
        }
        assert_eq!(s.len(), 3, "{text}");
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(2), "0.002");
        assert_eq!(seconds(1500), "1.5");
        assert_eq!(seconds(61_000), "61");
    }
}
