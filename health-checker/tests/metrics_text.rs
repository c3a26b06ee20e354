//! The metrics text, whatever the records hold (probe names with quotes,
//! backslashes and newlines, every outcome, both phases, degraded mode, an
//! armed trial, an unreadable environment), passes `promtool check metrics`
//! (Debian package `prometheus`; the test fails without it).

mod common;

use common::prometheus::promtool_problems;
use health_checker::engine::BootState;
use health_checker::history::{Event, EventKind, NewEvent};
use health_checker::metrics::render;
use health_checker::snapshots::SnapshotRef;
use health_checker::state::{Degraded, State};
use health_checker::verdict::{Outcome, Phase, ProbeResult, Severity, Verdict};

fn snap() -> SnapshotRef {
    SnapshotRef {
        id: 258,
        path: "@/.snapshots/2/snapshot".into(),
    }
}

fn event(time: u64, kind: EventKind, phase: Option<Phase>, probes: Vec<ProbeResult>) -> Event {
    let mut e = NewEvent::new(kind, Some(snap()), "why");
    if let Some(p) = phase {
        e.phase = Some(p);
        e.verdict = Some(if probes.iter().any(|p| p.result.is_failure()) {
            Verdict::Fail
        } else {
            Verdict::Pass
        });
    }
    e.probes = probes;
    Event {
        format_version: Default::default(),
        time,
        boot_id: Some("b".into()),
        event: e,
    }
}

#[test]
fn promtool_accepts_every_shape_of_the_records() {
    let probe = |name: &str, result, ms| ProbeResult {
        name: name.into(),
        severity: Severity::Wanted,
        result,
        duration_ms: ms,
        reason: None,
        output: String::new(),
    };
    let events = [
        event(
            100,
            EventKind::Verdict,
            Some(Phase::Early),
            vec![probe("root-mounted", Outcome::Pass, 3)],
        ),
        event(
            200,
            EventKind::Verdict,
            Some(Phase::Late),
            vec![
                probe("we\"ird\\name\nline", Outcome::Fail, 1234),
                probe("skipped", Outcome::Skip, 0),
                probe("slow", Outcome::Timeout, 60_000),
                probe("broken", Outcome::Error, 1),
            ],
        ),
        event(201, EventKind::Rollback, None, vec![]),
        event(300, EventKind::GrubFallback, None, vec![]),
        event(400, EventKind::Promotion, None, vec![]),
        event(500, EventKind::Degraded, None, vec![]),
    ];
    let refs: Vec<&Event> = events.iter().collect();
    let degraded = State {
        degraded: Some(Degraded {
            since: 500,
            reason: "db failed".into(),
            snapshot: snap(),
            extra: Default::default(),
        }),
        ..State::default()
    };
    let trial = BootState {
        trial: Some(snap()),
        tries: 3,
        ..BootState::default()
    };
    for (what, text) in [
        ("full", render(&refs, &degraded, Some(&trial))),
        ("no environment", render(&refs, &State::default(), None)),
        (
            "empty",
            render(&[], &State::default(), Some(&BootState::default())),
        ),
    ] {
        assert_eq!(promtool_problems(&text), "", "{what}:\n{text}");
    }
}
