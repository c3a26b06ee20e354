//! `run_check` against in-memory fakes of the boot environment, the snapshot
//! store and the system actions, with the history and state files in a
//! temporary directory. The fakes share one log, so the tests can check the
//! order in which things were done.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use anyhow::{anyhow, bail, Result};
use health_checker::actions::{Actions, Alert, AlertKind};
use health_checker::engine::{run_check, Action, BootEnv, BootState, CheckOptions, EngineConfig};
use health_checker::exit::{code_for, Code};
use health_checker::history::{EventKind, History};
use health_checker::paths::Root;
use health_checker::snapshots::{SnapshotInfo, SnapshotRef, Snapshots};
use health_checker::state::StateFile;
use health_checker::verdict::{Outcome, Phase, PhaseReport, ProbeResult, Severity};

type Log = Rc<RefCell<Vec<String>>>;

fn snap(n: u64) -> SnapshotRef {
    SnapshotRef {
        id: 255 + n,
        path: format!("@/.snapshots/{n}/snapshot"),
    }
}

struct FakeEnv {
    keys: RefCell<BTreeMap<String, String>>,
    fail_load: bool,
    fail_store: bool,
    log: Log,
}

impl BootEnv for FakeEnv {
    fn load(&self) -> Result<BootState> {
        if self.fail_load {
            bail!("/boot/efi/EFI/health-checker/grubenv: both copies are damaged");
        }
        let keys = self.keys.borrow();
        Ok(BootState::from_keys(|k| keys.get(k).cloned())?)
    }
    fn store(&self, changes: &[(&'static str, Option<String>)]) -> Result<()> {
        if self.fail_store {
            bail!("no space left on device");
        }
        let mut keys = self.keys.borrow_mut();
        for (k, v) in changes {
            match v {
                Some(v) => keys.insert(k.to_string(), v.clone()),
                None => keys.remove(*k),
            };
        }
        self.log.borrow_mut().push("env-store".into());
        Ok(())
    }
}

struct FakeSnapshots {
    booted: SnapshotRef,
    default: RefCell<SnapshotRef>,
    existing: Vec<SnapshotRef>,
    fail_booted: bool,
    fail_set_default: bool,
    log: Log,
}

impl Snapshots for FakeSnapshots {
    fn booted(&self) -> Result<SnapshotRef> {
        if self.fail_booted {
            bail!("statfs /: input/output error");
        }
        Ok(self.booted.clone())
    }
    fn default_subvolume(&self) -> Result<SnapshotRef> {
        Ok(self.default.borrow().clone())
    }
    fn set_default(&self, id: u64) -> Result<()> {
        if self.fail_set_default {
            bail!("/.snapshots is read-only");
        }
        let s = self
            .existing
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| anyhow!("no subvolume {id}"))?;
        *self.default.borrow_mut() = s.clone();
        self.log.borrow_mut().push(format!("set-default {id}"));
        Ok(())
    }
    fn lookup(&self, path: &str) -> Result<Option<SnapshotRef>> {
        Ok(self.existing.iter().find(|s| s.path == path).cloned())
    }
    fn list(&self) -> Result<Vec<SnapshotInfo>> {
        Ok(Vec::new())
    }
}

struct FakeActions {
    log: Log,
    history: History,
    /// Event kinds in the history file at the moment the reboot was asked.
    history_at_reboot: RefCell<Option<Vec<EventKind>>>,
    alerts: RefCell<Vec<Alert>>,
    /// `(summary, details)` of every promotion notice.
    promotions: RefCell<Vec<(String, serde_json::Value)>>,
    fail_promoted: bool,
}

impl Actions for FakeActions {
    fn reboot(&self, why: &str) -> Result<()> {
        assert!(!why.is_empty(), "a reboot always says why");
        let kinds = self
            .history
            .read()
            .map(|r| r.known().map(|e| e.event.kind).collect())
            .unwrap_or_default();
        *self.history_at_reboot.borrow_mut() = Some(kinds);
        self.log.borrow_mut().push("reboot".into());
        Ok(())
    }
    fn stop_units(&self, units: &[String]) -> Result<()> {
        self.log
            .borrow_mut()
            .push(format!("stop {}", units.join(" ")));
        Ok(())
    }
    fn alert(&self, alert: &Alert) -> Result<()> {
        self.log
            .borrow_mut()
            .push(format!("alert {:?}", alert.kind));
        self.alerts.borrow_mut().push(alert.clone());
        Ok(())
    }
    fn notify_promoted(&self, summary: &str, details: &serde_json::Value) -> Result<()> {
        self.log.borrow_mut().push("promoted".into());
        self.promotions
            .borrow_mut()
            .push((summary.to_owned(), details.clone()));
        if self.fail_promoted {
            bail!("the system bus went away");
        }
        Ok(())
    }
}

struct World {
    _dir: tempfile::TempDir,
    log: Log,
    env: FakeEnv,
    snaps: FakeSnapshots,
    actions: FakeActions,
    history: History,
    state: StateFile,
    config: EngineConfig,
    stop: Vec<String>,
}

impl World {
    /// `keys`: the environment; `booted`, `default`: snapshot numbers.
    fn new(keys: &[(&str, &str)], booted: u64, default: u64) -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let log: Log = Rc::default();
        let history = History::new(&root);
        World {
            env: FakeEnv {
                keys: RefCell::new(
                    keys.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                fail_load: false,
                fail_store: false,
                log: log.clone(),
            },
            snaps: FakeSnapshots {
                booted: snap(booted),
                default: RefCell::new(snap(default)),
                existing: (1..=4).map(snap).collect(),
                fail_booted: false,
                fail_set_default: false,
                log: log.clone(),
            },
            actions: FakeActions {
                log: log.clone(),
                history: history.clone(),
                history_at_reboot: RefCell::new(None),
                alerts: RefCell::default(),
                promotions: RefCell::default(),
                fail_promoted: false,
            },
            state: StateFile::new(&root),
            history,
            log,
            config: EngineConfig::default(),
            stop: vec!["app.service".into()],
            _dir: dir,
        }
    }

    fn check(
        &self,
        report: &PhaseReport,
        dry_run: bool,
    ) -> Result<health_checker::engine::CheckReport> {
        self.check_with(&self.env, report, dry_run)
    }

    fn check_with(
        &self,
        env: &dyn BootEnv,
        report: &PhaseReport,
        dry_run: bool,
    ) -> Result<health_checker::engine::CheckReport> {
        run_check(
            env,
            &self.snaps,
            &self.actions,
            &self.history,
            &self.state,
            &CheckOptions {
                report,
                config: &self.config,
                stop_units: &self.stop,
                dry_run,
                now: 1_800_000_000,
                boot_id: "boot-1",
            },
        )
    }

    fn key(&self, k: &str) -> Option<String> {
        self.env.keys.borrow().get(k).cloned()
    }

    fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }

    fn history_kinds(&self) -> Vec<EventKind> {
        self.history
            .read()
            .unwrap()
            .known()
            .map(|e| e.event.kind)
            .collect()
    }
}

fn report(phase: Phase, pass: bool) -> PhaseReport {
    PhaseReport::new(
        phase,
        vec![ProbeResult {
            name: "app-answers".into(),
            severity: Severity::Required,
            result: if pass {
                Outcome::Pass
            } else {
                Outcome::Timeout
            },
            duration_ms: 60_000,
            reason: (!pass).then(|| "timed out after 60s".into()),
            output: String::new(),
        }],
    )
}

const G: [(&str, &str); 2] = [
    ("hc_good", "@/.snapshots/1/snapshot"),
    ("hc_good_id", "256"),
];

fn armed_t() -> Vec<(&'static str, &'static str)> {
    let mut k = G.to_vec();
    k.extend([
        ("hc_trial", "@/.snapshots/2/snapshot"),
        ("hc_trial_id", "257"),
        ("hc_tries", "2"),
        ("hc_booted", "trial"),
        ("saved_entry", "gnulinux"),
    ]);
    k
}

#[test]
fn failing_trial_goes_back_to_g_records_and_then_reboots() {
    let w = World::new(&armed_t(), 2, 2);
    let r = w.check(&report(Phase::Late, false), false).unwrap();
    assert!(matches!(r.decision.action, Action::RollBack { .. }));
    assert_eq!(
        w.log(),
        ["set-default 256", "env-store", "alert Rollback", "reboot"],
        "default, environment, alert, then reboot"
    );
    assert_eq!(*w.snaps.default.borrow(), snap(1));
    assert_eq!(w.key("hc_trial"), None);
    assert_eq!(w.key("hc_tries"), None);
    assert_eq!(w.key("hc_good_id").as_deref(), Some("256"));
    assert_eq!(
        w.key("saved_entry").as_deref(),
        Some("gnulinux"),
        "foreign keys untouched"
    );
    assert_eq!(
        w.actions.history_at_reboot.borrow().clone(),
        Some(vec![EventKind::Verdict, EventKind::Rollback]),
        "the history is written before the reboot"
    );
    let alert = &w.actions.alerts.borrow()[0];
    assert_eq!(alert.kind, AlertKind::Rollback);
    assert_eq!(alert.details["probes"][0]["name"], "app-answers");
    assert_eq!(
        health_checker::actions::journal::snapshot_of(alert),
        alert.details["booted"]["path"].as_str().unwrap(),
        "the journal's SNAPSHOT field names the trial rolled back"
    );
    assert!(r.text().contains("rolling back"), "{}", r.text());
    let state = w.state.load().unwrap().value;
    assert_eq!(state.probes["app-answers"].result, Outcome::Timeout);
}

#[test]
fn passing_trial_is_promoted_without_reboot() {
    let w = World::new(&armed_t(), 2, 2);
    let r = w.check(&report(Phase::Late, true), false).unwrap();
    assert!(matches!(r.decision.action, Action::Promote { .. }));
    assert_eq!(w.log(), ["env-store", "promoted"]);
    assert_eq!(w.key("hc_good").as_deref(), Some("@/.snapshots/2/snapshot"));
    assert_eq!(w.key("hc_good_id").as_deref(), Some("257"));
    assert_eq!(w.key("hc_trial"), None);
    assert_eq!(
        w.history_kinds(),
        [EventKind::Verdict, EventKind::Promotion]
    );
    // A notice, not an alarm: no alert channel is used.
    assert!(w.actions.alerts.borrow().is_empty());
    let promotions = w.actions.promotions.borrow();
    let (summary, details) = &promotions[0];
    assert!(summary.contains("@/.snapshots/2/snapshot"), "{summary}");
    assert_eq!(details["booted"]["path"], "@/.snapshots/2/snapshot");
    assert_eq!(details["verdict"], "pass");
}

#[test]
fn a_failed_promotion_notice_is_reported_but_the_promotion_stands() {
    let mut w = World::new(&armed_t(), 2, 2);
    w.actions.fail_promoted = true;
    let err = w.check(&report(Phase::Late, true), false).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("announcing the promotion"), "{msg}");
    assert!(msg.contains("the system bus went away"), "{msg}");
    assert_eq!(w.key("hc_good").as_deref(), Some("@/.snapshots/2/snapshot"));
    assert_eq!(
        w.history_kinds(),
        [EventKind::Verdict, EventKind::Promotion]
    );
}

#[test]
fn a_failing_trial_announces_no_promotion() {
    let w = World::new(&armed_t(), 2, 2);
    w.check(&report(Phase::Late, false), false).unwrap();
    assert!(w.actions.promotions.borrow().is_empty());
}

#[test]
fn failing_g_with_the_budget_spent_degrades_without_reboot() {
    let mut keys = G.to_vec();
    keys.push(("hc_good_fails", "1"));
    let w = World::new(&keys, 1, 1);
    let r = w.check(&report(Phase::Late, false), false).unwrap();
    assert!(matches!(r.decision.action, Action::EnterDegraded { .. }));
    assert_eq!(w.log(), ["stop app.service", "alert Degraded"]);
    assert_eq!(*w.snaps.default.borrow(), snap(1), "default untouched");
    let state = w.state.load().unwrap().value;
    let degraded = state.degraded.expect("degraded recorded");
    assert_eq!(degraded.snapshot, snap(1));
    assert_eq!(w.history_kinds(), [EventKind::Verdict, EventKind::Degraded]);

    // The next passing boot of G leaves degraded mode.
    let r = w.check(&report(Phase::Late, true), false).unwrap();
    assert!(r.decision.clears_degraded);
    assert_eq!(w.key("hc_good_fails"), None);
    assert!(w.state.load().unwrap().value.degraded.is_none());
}

#[test]
fn failing_g_within_budget_counts_the_failure_before_rebooting() {
    let w = World::new(&G, 1, 1);
    w.check(&report(Phase::Early, false), false).unwrap();
    assert_eq!(w.log(), ["env-store", "reboot"]);
    assert_eq!(w.key("hc_good_fails").as_deref(), Some("1"));
}

#[test]
fn an_unreadable_environment_changes_nothing_and_never_passes() {
    let mut w = World::new(&armed_t(), 2, 2);
    w.env.fail_load = true;
    let err = w.check(&report(Phase::Late, true), false).unwrap_err();
    assert_eq!(code_for(&err), Code::BootEnv);
    assert!(
        format!("{err:#}").contains("reading the boot environment"),
        "{err:#}"
    );
    assert!(w.log().is_empty());
    assert!(!w.history.path().exists(), "no pass recorded");
}

#[test]
fn a_bad_environment_value_is_an_error_naming_the_key() {
    let mut keys = armed_t();
    keys.push(("hc_tries", "x"));
    let w = World::new(&keys, 2, 2);
    let err = w.check(&report(Phase::Late, true), false).unwrap_err();
    assert_eq!(code_for(&err), Code::BootEnv);
    assert!(format!("{err:#}").contains("hc_tries"), "{err:#}");
    assert!(w.log().is_empty());
}

#[test]
fn a_snapshot_store_error_changes_nothing() {
    let mut w = World::new(&armed_t(), 2, 2);
    w.snaps.fail_booted = true;
    let err = w.check(&report(Phase::Late, false), false).unwrap_err();
    assert_eq!(code_for(&err), Code::Snapshot);
    assert!(format!("{err:#}").contains("booted snapshot"), "{err:#}");
    assert!(w.log().is_empty());
}

#[test]
fn a_failed_set_default_stops_the_rollback_before_env_and_reboot() {
    let mut w = World::new(&armed_t(), 2, 2);
    w.snaps.fail_set_default = true;
    let err = w.check(&report(Phase::Late, false), false).unwrap_err();
    assert_eq!(code_for(&err), Code::Snapshot);
    assert!(format!("{err:#}").contains("read-only"), "{err:#}");
    assert!(w.log().is_empty(), "{:?}", w.log());
    assert_eq!(
        w.key("hc_trial").as_deref(),
        Some("@/.snapshots/2/snapshot")
    );
}

#[test]
fn a_failed_environment_write_means_no_reboot() {
    let mut w = World::new(&G, 1, 1);
    w.env.fail_store = true;
    let err = w.check(&report(Phase::Late, false), false).unwrap_err();
    assert_eq!(code_for(&err), Code::BootEnv);
    assert!(!w.log().contains(&"reboot".to_string()));
}

#[test]
fn a_history_failure_does_not_keep_a_failed_trial_booted_but_is_an_error() {
    let w = World::new(&armed_t(), 2, 2);
    // Make /var/lib/health-checker a file: nothing can be written there.
    let dir = w.history.path().parent().unwrap();
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::fs::write(dir, b"").unwrap();
    let err = w.check(&report(Phase::Late, false), false).unwrap_err();
    assert_eq!(
        w.log(),
        ["set-default 256", "env-store", "alert Rollback", "reboot"]
    );
    let msg = format!("{err:#}");
    assert!(msg.contains("history.json"), "{msg}");
    assert!(msg.contains("rolling back"), "{msg}");
}

#[test]
fn dry_run_decides_but_changes_nothing() {
    let w = World::new(&armed_t(), 2, 2);
    let r = w.check(&report(Phase::Late, false), true).unwrap();
    assert!(matches!(r.decision.action, Action::RollBack { .. }));
    assert!(r.text().starts_with("dry run"), "{}", r.text());
    assert!(w.log().is_empty());
    assert_eq!(*w.snaps.default.borrow(), snap(2));
    assert!(!w.history.path().exists());
    assert!(!w.state.path().exists());
}

#[test]
fn an_early_failure_keeps_the_late_phase_of_the_same_boot_from_passing() {
    let mut keys = G.to_vec();
    keys.push(("hc_good_fails", "1"));
    let w = World::new(&keys, 1, 1);
    let r = w.check(&report(Phase::Early, false), false).unwrap();
    assert!(matches!(r.decision.action, Action::EnterDegraded { .. }));
    let r = w.check(&report(Phase::Late, true), false).unwrap();
    assert_eq!(r.decision.action, Action::Nothing);
    assert!(!r.decision.clears_degraded);
    assert!(w.state.load().unwrap().value.degraded.is_some());
    assert_eq!(w.key("hc_good_fails").as_deref(), Some("1"));
}

#[test]
fn a_state_file_that_cannot_be_interpreted_is_left_alone_and_the_late_pass_not_trusted() {
    let w = World::new(&armed_t(), 2, 2);
    let dir = w.state.path().parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(w.state.path(), b"{ torn").unwrap();
    let r = w.check(&report(Phase::Late, true), false).unwrap();
    assert_eq!(r.decision.action, Action::Nothing, "not promoted");
    assert!(
        r.notes.iter().any(|n| n.contains("cannot be interpreted")),
        "{:?}",
        r.notes
    );
    assert_eq!(std::fs::read(w.state.path()).unwrap(), b"{ torn");
    let names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.contains("corrupt")), "{names:?}");
}

#[test]
fn an_early_failure_whose_rollback_failed_still_blocks_the_late_promotion() {
    let mut w = World::new(&armed_t(), 2, 2);
    w.snaps.fail_set_default = true;
    assert!(w.check(&report(Phase::Early, false), false).is_err());
    w.snaps.fail_set_default = false;
    let r = w.check(&report(Phase::Late, true), false).unwrap();
    assert!(
        matches!(r.decision.action, Action::RollBack { .. }),
        "the rollback is repeated, not a promotion: {:?}",
        r.decision.action
    );
    assert_eq!(w.key("hc_good").as_deref(), Some("@/.snapshots/1/snapshot"));
}

#[test]
fn a_known_good_missing_from_the_store_is_never_rolled_back_to() {
    let mut w = World::new(&armed_t(), 2, 2);
    w.snaps.existing.retain(|s| s.id != 256);
    let r = w.check(&report(Phase::Late, false), false).unwrap();
    assert!(matches!(r.decision.action, Action::EnterDegraded { .. }));
    assert_eq!(w.log(), ["env-store", "stop app.service", "alert Degraded"]);
    assert_eq!(*w.snaps.default.borrow(), snap(2));
    assert_eq!(w.key("hc_good").as_deref(), Some("@/.snapshots/1/snapshot"));

    // Same path, different subvolume (deleted and re-created): not G either.
    let mut w = World::new(&armed_t(), 2, 2);
    w.snaps.existing[0].id = 999;
    let r = w.check(&report(Phase::Late, false), false).unwrap();
    assert!(matches!(r.decision.action, Action::EnterDegraded { .. }));
}

#[test]
fn a_rollback_through_the_real_grub_environment_store() {
    use health_checker::engine::GrubBootEnv;
    let w = World::new(&[], 2, 2);
    let file = w._dir.path().join("grubenv");
    let env = GrubBootEnv::new(grub_env::Store::for_file(&file));
    let armed: Vec<_> = armed_t()
        .into_iter()
        .map(|(k, v)| (k, Some(v.to_string())))
        .collect();
    env.store(&armed).unwrap();
    let r = w
        .check_with(&env, &report(Phase::Late, false), false)
        .unwrap();
    assert!(matches!(r.decision.action, Action::RollBack { .. }));
    let after = env.inner().load().unwrap().env;
    assert_eq!(after.get("hc_trial"), None);
    assert_eq!(after.get("hc_good"), Some("@/.snapshots/1/snapshot"));
    assert_eq!(after.get("saved_entry"), Some("gnulinux"));
    assert_eq!(w.log(), ["set-default 256", "alert Rollback", "reboot"]);
}

/// The history file's entries as JSON.
fn history_json(w: &World) -> Vec<serde_json::Value> {
    let bytes = std::fs::read(w.history.path()).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn a_full_esp_still_rolls_back_records_and_alerts_a_failed_trial() {
    let mut w = World::new(&armed_t(), 2, 2);
    w.env.fail_store = true;
    let err = w.check(&report(Phase::Late, false), false).unwrap_err();
    assert_eq!(code_for(&err), Code::BootEnv);
    let msg = format!("{err:#}");
    assert!(msg.contains("no space left"), "{msg}");
    // The default already names G, and GRUB's count of the trial's
    // attempts bounds how often it comes back: the reboot is safe.
    assert_eq!(
        w.log(),
        ["set-default 256", "alert Rollback", "reboot"],
        "{msg}"
    );
    assert_eq!(
        w.key("hc_trial").as_deref(),
        Some("@/.snapshots/2/snapshot")
    );
    assert_eq!(w.history_kinds(), [EventKind::Verdict, EventKind::Rollback]);
    let rollback = &history_json(&w)[1];
    assert!(
        rollback["reason"]
            .as_str()
            .unwrap()
            .contains("the boot environment could not be written"),
        "{rollback:#}"
    );
    let failure = w
        .state
        .load()
        .unwrap()
        .value
        .boot_env_failure
        .expect("recorded for status");
    assert!(failure.error.contains("no space left"), "{failure:?}");
    assert!(
        failure.during.contains("GRUB's remaining 2 attempt(s)"),
        "{failure:?}"
    );

    // The next write that succeeds clears the mark.
    w.env.fail_store = false;
    w.check(&report(Phase::Late, false), false).unwrap();
    assert!(w.state.load().unwrap().value.boot_env_failure.is_none());
}

#[test]
fn a_full_esp_turns_a_retry_reboot_of_the_known_good_into_degraded_mode() {
    let mut w = World::new(&G, 1, 1);
    w.env.fail_store = true;
    let err = w.check(&report(Phase::Late, false), false).unwrap_err();
    assert_eq!(code_for(&err), Code::BootEnv);
    // The failure streak cannot be counted, so a reboot could loop.
    assert_eq!(w.log(), ["stop app.service", "alert Degraded"]);
    assert_eq!(w.history_kinds(), [EventKind::Verdict, EventKind::Degraded]);
    let state = w.state.load().unwrap().value;
    let degraded = state.degraded.expect("degraded mode recorded");
    assert!(
        degraded.reason.contains("cannot be written"),
        "{degraded:?}"
    );
    assert!(state.boot_env_failure.is_some());
}

#[test]
fn a_check_keeps_unknown_fields_and_degraded_mode_of_a_newer_state_file() {
    let w = World::new(&G, 1, 1);
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/state/state-future.json");
    std::fs::create_dir_all(w.state.path().parent().unwrap()).unwrap();
    std::fs::copy(&fixture, w.state.path()).unwrap();
    w.check(&report(Phase::Early, true), false).unwrap();
    let after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.state.path()).unwrap()).unwrap();
    assert_eq!(after["format_version"], "1.1");
    assert_eq!(after["maintenance"]["window"], "02:00-04:00");
    assert_eq!(after["degraded"]["acknowledged_by"], "admin");
    assert_eq!(after["boot"]["boot_id"], "boot-1");
    assert_eq!(after["probes"]["sshd-active"]["attempts"], 3);
    assert_eq!(after["probes"]["app-answers"]["result"], "pass");
}

#[test]
fn a_check_leaves_a_state_file_of_a_newer_major_format_alone() {
    let mut keys = G.to_vec();
    keys.push(("hc_good_fails", "1"));
    let w = World::new(&keys, 1, 1);
    let dir = w.state.path().parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let newer = b"{\"format_version\": \"2.0\", \"degraded\": [\"a newer shape\"]}";
    std::fs::write(w.state.path(), newer).unwrap();
    let r = w.check(&report(Phase::Late, false), false).unwrap();
    assert!(matches!(r.decision.action, Action::EnterDegraded { .. }));
    assert!(
        r.notes.iter().any(|n| n.contains("format 2.0")),
        "{:?}",
        r.notes
    );
    assert_eq!(std::fs::read(w.state.path()).unwrap(), newer);
    // The history and the alert do not depend on it.
    assert_eq!(w.history_kinds(), [EventKind::Verdict, EventKind::Degraded]);
    assert!(w.log().contains(&"alert Degraded".to_string()));
    let names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.contains("corrupt")), "{names:?}");
}
