//! The lock around a check's read, decision and action: no ordinary user
//! can open it, let alone hold it (tested as a user the test creates), a
//! wait for it is bounded, and two checks at once are serialised so that
//! neither decides from what the other is about to change.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use health_checker::actions::{Actions, Alert, DegradedReport};
use health_checker::engine::{run_check, BootEnv, BootState, CheckOptions, EngineConfig};
use health_checker::fsutil::{Lock, LOCK_PATH};
use health_checker::history::History;
use health_checker::paths::Root;
use health_checker::probes::StopAction;
use health_checker::snapshots::{SnapshotInfo, SnapshotRef, Snapshots};
use health_checker::state::StateFile;
use health_checker::verdict::{Outcome, Phase, PhaseReport, ProbeResult, Severity};

const USER: &str = common::user::NAME;

/// An ordinary user for the test (created if missing).
fn ordinary_user() -> &'static str {
    common::user::ordinary_user();
    USER
}

/// `flock(1)` as `user`, trying to take a shared lock on `path` and hold it
/// for 30 s. Returns the child once it has either failed or holds the lock.
fn hold_as(user: &str, path: &Path, ready: &Path) -> std::process::Child {
    let setpriv = common::require::program("setpriv", "util-linux");
    common::require::program("flock", "util-linux");
    Command::new(setpriv)
        .args(["--reuid", user, "--regid", user, "--clear-groups", "--"])
        .args(["flock", "--shared", "--nonblock"])
        .arg(path)
        .args(["sh", "-c", "touch \"$0\"; sleep 30"])
        .arg(ready)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until the child exited or wrote `ready`; true when it holds the
/// lock.
fn holds(child: &mut std::process::Child, ready: &Path) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if ready.exists() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(
            Instant::now() < until,
            "flock as the user neither held nor failed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_ordinary_user_cannot_hold_the_lock_of_a_check() {
    let user = ordinary_user();
    let dir = tempfile::tempdir().unwrap();
    // Everything up to the lock's own directory is open to the user, as
    // /run is on a real system.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = Root::new(dir.path());
    let state = StateFile::new(&root);
    drop(state.lock().unwrap());
    let lock = root.join(LOCK_PATH);
    assert!(lock.exists());

    // Where the user's `flock` says it holds a lock.
    let flags = dir.path().join("flags");
    std::fs::create_dir(&flags).unwrap();
    std::fs::set_permissions(&flags, std::fs::Permissions::from_mode(0o777)).unwrap();

    // Control: a file beside the lock's directory, made as the lock files
    // of earlier versions were (mode 0644), can be held by the user: the
    // setup does not keep the user out by itself.
    let open = lock.parent().unwrap().parent().unwrap().join("open.lock");
    std::fs::write(&open, b"").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ready = flags.join("control");
    let mut control = hold_as(user, &open, &ready);
    assert!(
        holds(&mut control, &ready),
        "the control lock was not taken"
    );
    control.kill().unwrap();
    control.wait().unwrap();

    // The check's lock: the user cannot even open it.
    let ready = flags.join("check");
    let mut child = hold_as(user, &lock, &ready);
    let held = holds(&mut child, &ready);
    if held {
        child.kill().unwrap();
    }
    let status = child.wait_with_output().unwrap();
    assert!(!held, "user {user} holds {}", lock.display());
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(err.contains("Permission denied"), "{err}");
    // And root takes it at once.
    let start = Instant::now();
    drop(Lock::acquire(&lock, Duration::from_secs(3)).unwrap());
    assert!(start.elapsed() < Duration::from_secs(1));
    let mode = std::fs::metadata(lock.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

// ---- Two checks at once ----

/// A boot environment shared by two threads; reading it takes a while, so
/// that two checks that do not exclude each other both read before either
/// writes.
struct SlowEnv {
    keys: Arc<Mutex<BTreeMap<String, String>>>,
}

impl BootEnv for SlowEnv {
    fn load(&self) -> Result<BootState> {
        let keys = self.keys.lock().unwrap().clone();
        std::thread::sleep(Duration::from_millis(300));
        Ok(BootState::from_keys(|k| keys.get(k).cloned())?)
    }
    fn store(&self, changes: &[(&'static str, Option<String>)]) -> Result<()> {
        let mut keys = self.keys.lock().unwrap();
        for (k, v) in changes {
            match v {
                Some(v) => keys.insert(k.to_string(), v.clone()),
                None => keys.remove(*k),
            };
        }
        Ok(())
    }
}

struct OneSnapshot(SnapshotRef);

impl Snapshots for OneSnapshot {
    fn booted(&self) -> Result<SnapshotRef> {
        Ok(self.0.clone())
    }
    fn default_subvolume(&self) -> Result<SnapshotRef> {
        Ok(self.0.clone())
    }
    fn set_default(&self, _: u64) -> Result<()> {
        Ok(())
    }
    fn lookup(&self, path: &str) -> Result<Option<SnapshotRef>> {
        Ok((path == self.0.path).then(|| self.0.clone()))
    }
    fn list(&self) -> Result<Vec<SnapshotInfo>> {
        Ok(Vec::new())
    }
}

struct NoActions;

impl Actions for NoActions {
    fn reboot(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn enter_degraded(&self, _: &[StopAction], _: &[String]) -> DegradedReport {
        DegradedReport {
            stop_actions: Vec::new(),
            units: Ok(()),
        }
    }
    fn alert(&self, _: &Alert) -> Result<()> {
        Ok(())
    }
    fn notify_promoted(&self, _: &str, _: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

#[test]
fn two_checks_at_once_count_the_failure_streak_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let good = SnapshotRef {
        id: 256,
        path: "@/.snapshots/1/snapshot".into(),
    };
    let keys: BTreeMap<String, String> = [
        ("hc_good".to_owned(), good.path.clone()),
        ("hc_good_id".to_owned(), "256".to_owned()),
    ]
    .into();
    let keys = Arc::new(Mutex::new(keys));
    let report = PhaseReport::new(
        Phase::Late,
        vec![ProbeResult {
            cost: Default::default(),
            name: "app-answers".into(),
            severity: Severity::Required,
            result: Outcome::Fail,
            duration_ms: 1,
            reason: Some("connection refused".into()),
            output: String::new(),
        }],
    );
    let config = EngineConfig {
        good_failure_reboots: 2,
        ..EngineConfig::default()
    };
    // The late check and the deadline of the same boot, at once.
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (keys, root, good, report, config) = (
                keys.clone(),
                Root::new(dir.path()),
                good.clone(),
                report.clone(),
                config.clone(),
            );
            std::thread::spawn(move || {
                run_check(
                    &SlowEnv { keys },
                    &OneSnapshot(good),
                    &NoActions,
                    &History::new(&root),
                    &StateFile::new(&root),
                    &CheckOptions {
                        report: &report,
                        config: &config,
                        stop_actions: &[],
                        stop_units: &[],
                        dry_run: false,
                        now: 1_800_000_000,
                        boot_id: "boot-1",
                    },
                )
                .map(|r| r.decision.explanation.join("; "))
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let fails = keys.lock().unwrap().get("hc_good_fails").cloned();
    assert_eq!(fails.as_deref(), Some("2"), "each failure counted once");
    let history = dir.path().join("var/lib/health-checker/history.json");
    let events: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(history).unwrap()).unwrap();
    let retries: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "retry-reboot")
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(retries.len(), 2, "{events:#?}");
    assert_ne!(retries[0], retries[1], "no duplicate event");
    assert!(retries[1].contains("attempt 2 of 2"), "{retries:?}");
}
