//! The files kept outside the snapshots (`state.json`, `history.json`) as
//! released versions wrote them (`tests/fixtures/state/`): today's format
//! and a future one are read, rewritten without losing anything, and shown
//! by `history` and `status`; a file of a newer major format is reported and
//! left exactly where and as it is. A downgrade after a rollback makes all
//! of this happen for real.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::cli::{hc, text};

use health_checker::fsutil::FormatVersion;
use health_checker::history::{EventKind, History, NewEvent};
use health_checker::state::StateFile;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/state")
        .join(name)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A root whose state directory holds these fixtures as `state.json` and
/// `history.json`.
fn root_with(state: Option<&str>, history: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let var = dir.path().join("var/lib/health-checker");
    std::fs::create_dir_all(&var).unwrap();
    if let Some(s) = state {
        std::fs::copy(fixture(s), var.join("state.json")).unwrap();
    }
    if let Some(h) = history {
        std::fs::copy(fixture(h), var.join("history.json")).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("etc/health-checker")).unwrap();
    std::fs::write(
        dir.path().join("etc/health-checker/config.toml"),
        "[bootenv]\nlocation = \"file\"\npath = \"/boot/efi/EFI/health-checker/grubenv\"\n",
    )
    .unwrap();
    (dir, var)
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn new_event() -> NewEvent {
    NewEvent::new(EventKind::MarkGood, None, "appended by this version")
}

/// Every entry of `before` is in `after`, in order and unchanged, followed
/// by the appended one.
fn history_kept(before: &Value, after: &Value) {
    let (b, a) = (before.as_array().unwrap(), after.as_array().unwrap());
    assert_eq!(a.len(), b.len() + 1, "{after:#}");
    assert_eq!(&a[..b.len()], b.as_slice(), "every entry kept as it was");
    assert_eq!(a[b.len()]["reason"], "appended by this version");
}

#[test]
fn todays_state_is_read_and_rewritten_without_loss() {
    let (_d, var) = root_with(Some("state-v1.json"), None);
    let f = StateFile::at(var.join("state.json"));
    let l = f.load().unwrap();
    assert!(l.unusable.is_none(), "{:?}", l.unusable);
    let s = l.value;
    assert_eq!(s.format_version, FormatVersion::UNVERSIONED);
    assert!(s.degraded.is_some());
    assert_eq!(s.probes.len(), 5);
    assert!(s
        .early_verdict("0b9b4a44-6fd4-4b5c-9d0e-3f0c1e6b2a11")
        .is_some());
    f.save(&s).unwrap();
    let mut expected = json(&fixture("state-v1.json"));
    expected["format_version"] = FormatVersion::CURRENT.to_string().into();
    assert_eq!(json(f.path()), expected);
}

#[test]
fn todays_state_and_history_with_probe_costs_are_read_and_kept() {
    let (_d, var) = root_with(Some("state-v1-cost.json"), Some("history-v1-cost.json"));
    let f = StateFile::at(var.join("state.json"));
    let l = f.load().unwrap();
    assert!(l.unusable.is_none(), "{:?}", l.unusable);
    let s = l.value;
    let app = &s.probes["app"];
    assert_eq!(app.duration_ms, Some(45));
    assert_eq!(app.cost.cpu_us, Some(1686));
    assert_eq!(app.cost.peak_memory_bytes, Some(2_011_136));
    assert_eq!(
        app.cost.containment.as_deref(),
        Some("cgroup without limits")
    );
    assert!(app.extra.is_empty(), "{:?}", app.extra);
    f.save(&s).unwrap();
    assert_eq!(json(f.path()), json(&fixture("state-v1-cost.json")));

    let h = History::at(var.join("history.json"));
    let read = h.read().unwrap();
    let probe = read
        .known()
        .flat_map(|e| e.event.probes.clone())
        .find(|p| p.name == "app")
        .expect("the late verdict's probe");
    assert_eq!(probe.cost.cpu_us, Some(1686));
    assert_eq!(probe.cost.peak_memory_bytes, Some(2_011_136));
    h.append(&[new_event()], 1_796_300_000, None).unwrap();
    history_kept(&json(&fixture("history-v1-cost.json")), &json(h.path()));
}

#[test]
fn a_future_state_is_read_and_rewritten_without_loss() {
    let (_d, var) = root_with(Some("state-future.json"), None);
    let f = StateFile::at(var.join("state.json"));
    let l = f.load().unwrap();
    assert!(l.unusable.is_none(), "{:?}", l.unusable);
    let s = l.value;
    assert!(
        s.degraded.is_some(),
        "degraded mode survives unknown fields"
    );
    f.save(&s).unwrap();
    assert_eq!(
        json(f.path()),
        json(&fixture("state-future.json")),
        "nothing lost, and the file stays in the newer minor format"
    );
}

#[test]
fn todays_and_a_future_history_are_kept_when_appended_to() {
    for name in ["history-v1.json", "history-future.json"] {
        let (_d, var) = root_with(None, Some(name));
        let h = History::at(var.join("history.json"));
        let read = h.read().unwrap();
        assert!(read.unusable.is_none(), "{name}: {:?}", read.unusable);
        let unknown: Vec<String> = read
            .events
            .iter()
            .filter(|r| r.event.is_none())
            .map(|r| r.kind_name())
            .collect();
        if name == "history-v1.json" {
            assert_eq!(read.events.len(), 10);
            assert!(unknown.is_empty(), "{unknown:?}");
        } else {
            // A new kind, a newer major, a verdict value not known here.
            assert_eq!(unknown, ["snapshot-pruned", "rollback", "verdict"]);
            assert_eq!(read.known().count(), 7);
        }
        h.append(&[new_event()], 1_795_400_000, None).unwrap();
        history_kept(&json(&fixture(name)), &json(h.path()));
    }
}

#[test]
fn history_and_status_show_unknown_kinds_and_keep_degraded_mode() {
    let (d, var) = root_with(Some("state-future.json"), Some("history-future.json"));
    let out = hc(d.path(), &["history"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("unknown:snapshot-pruned"), "{shown}");
    assert!(shown.contains("pruned by the cleanup policy"), "{shown}");
    assert_eq!(
        shown.lines().count(),
        11,
        "a header and every entry\n{shown}"
    );

    let out = hc(d.path(), &["history", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed,
        json(&fixture("history-future.json")),
        "shown as stored"
    );

    // `status` on a root that is no btrfs system: the pieces from the
    // state directory are read all the same.
    let out = hc(d.path(), &["status", "--json"]);
    let status: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", text(&out)));
    assert_eq!(status["state"], "degraded", "{status:#}");
    assert_eq!(status["degraded"]["acknowledged_by"], "admin", "{status:#}");
    let history = status["history"]
        .as_array()
        .unwrap_or_else(|| panic!("{status:#}"));
    assert!(
        history.iter().any(|e| e["kind"] == "snapshot-pruned"),
        "{status:#}"
    );
    let out = hc(d.path(), &["status"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("Degraded: YES"), "{}", text(&out));
    assert!(shown.contains("unknown:snapshot-pruned"), "{}", text(&out));

    // Nothing was changed by looking.
    assert_eq!(
        json(&var.join("state.json")),
        json(&fixture("state-future.json"))
    );
    assert_eq!(
        names(&var),
        BTreeSet::from(["history.json".into(), "state.json".into()])
    );
}

#[test]
fn files_of_a_newer_major_format_are_reported_and_left_where_they_are() {
    let (d, var) = root_with(None, None);
    let state = b"{\"format_version\": \"2.0\", \"degraded\": {\"since\": \"yesterday\"}}\n";
    let history = b"{\"format_version\": \"2.0\", \"events\": [{\"kind\": \"rollback\"}]}\n";
    std::fs::write(var.join("state.json"), state).unwrap();
    std::fs::write(var.join("history.json"), history).unwrap();

    let out = hc(d.path(), &["history"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("history.json") && err.contains("format 2.0"),
        "{}",
        text(&out)
    );

    let out = hc(d.path(), &["status", "--json"]);
    let status: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", text(&out)));
    let e = status["degraded"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{status:#}"));
    assert!(e.contains("state.json") && e.contains("format 2.0"), "{e}");

    // A writer refuses to touch them.
    let h = History::at(var.join("history.json"));
    let err = h.append(&[new_event()], 1, None).unwrap_err();
    assert!(format!("{err:#}").contains("not recorded"), "{err:#}");
    let f = StateFile::at(var.join("state.json"));
    assert!(f.load().unwrap().unusable.is_some());

    assert_eq!(std::fs::read(var.join("state.json")).unwrap(), state);
    assert_eq!(std::fs::read(var.join("history.json")).unwrap(), history);
    let left: BTreeSet<String> = names(&var).into_iter().filter(|n| n != "locks").collect();
    assert_eq!(
        left,
        BTreeSet::from(["history.json".into(), "state.json".into()]),
        "nothing moved aside"
    );
}

#[test]
fn status_says_when_the_last_write_of_the_boot_environment_failed() {
    let (d, var) = root_with(Some("state-v1.json"), None);
    let mut state = json(&var.join("state.json"));
    state["boot_env_failure"] = serde_json::json!({
        "time": 1_795_319_100,
        "error": "writing the boot environment: /boot/efi/EFI/health-checker/grubenv: No space left on device (os error 28)",
        "during": "@/.snapshots/2/snapshot failed; rolling back",
    });
    std::fs::write(var.join("state.json"), serde_json::to_vec(&state).unwrap()).unwrap();
    let out = hc(d.path(), &["status"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("Env write: FAILED at 2026-11-22T03:45:00Z"),
        "{}",
        text(&out)
    );
    assert!(shown.contains("No space left on device"), "{}", text(&out));
    let out = hc(d.path(), &["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["boot_env_write_failed"]["time"], 1_795_319_100,
        "{status:#}"
    );
}
