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
        cost: Default::default(),
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
        ("full", render(Some(&refs), Some(&degraded), Some(&trial))),
        ("nothing readable", render(None, None, None)),
        (
            "empty",
            render(
                Some(&[]),
                Some(&State::default()),
                Some(&BootState::default()),
            ),
        ),
    ] {
        assert_eq!(promtool_problems(&text), "", "{what}:\n{text}");
    }
}

/// The rule file docs/metrics.md offers is one `promtool check rules`
/// accepts.
#[test]
fn the_documented_alerting_rules_pass_promtool() {
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let yaml = text
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("no yaml block in {}", doc.display()));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("health-checker.rules.yml");
    std::fs::write(&rules, yaml).unwrap();
    let promtool = common::require::program("promtool", "prometheus");
    let out = std::process::Command::new(promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("running promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("SUCCESS: 4 rules found"), "{said}");
}
