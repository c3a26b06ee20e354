//! `/var/lib/health-checker/state.json`: whether the system is in degraded
//! mode and why, the last result of every probe, and what the phases of the
//! current boot decided (so the late phase knows whether the early phase of
//! the same boot failed). Rewritten atomically. Versioned: fields this
//! version does not know are kept when it rewrites the file, and a file it
//! cannot interpret is left as it is (docs/design.md, "State outside the
//! snapshots").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fsutil::{self, FormatVersion, Loaded};
use crate::paths::{Root, STATE_DIR};
use crate::snapshots::SnapshotRef;
use crate::verdict::{Outcome, Phase, PhaseReport, ProbeCost, Severity, Verdict};

/// Degraded mode: a known-good system (or one with nothing to roll back to)
/// is broken; services were stopped and the admin alerted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Degraded {
    /// When it was entered (seconds since the epoch, UTC).
    pub since: u64,
    /// Why, in words.
    pub reason: String,
    /// The snapshot that was booted.
    pub snapshot: SnapshotRef,
    /// Fields written by a newer version, kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The last result of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastProbe {
    pub time: u64,
    pub phase: Phase,
    pub severity: Severity,
    pub result: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub snapshot: SnapshotRef,
    /// How long it ran (absent in files written before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// What it cost (absent in files written before these fields).
    #[serde(flatten)]
    pub cost: ProbeCost,
    /// Fields written by a newer version, kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The verdicts of the phases of one boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootRecord {
    /// The kernel's boot ID (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<Verdict>,
    /// Fields written by a newer version, kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The last write of the boot environment failed (a full or read-only
/// ESP); cleared by the next write that succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvFailure {
    /// When (seconds since the epoch, UTC).
    pub time: u64,
    /// The error, with the file.
    pub error: String,
    /// What the write was for: the decision, in words.
    pub during: String,
    /// Fields written by a newer version, kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The content of `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    /// The format the file was written in (absent before the field
    /// existed: 1.0). Saved as the newer of this and the program's own.
    #[serde(default)]
    pub format_version: FormatVersion,
    /// Set while the system is in degraded mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<Degraded>,
    /// Last result per probe name.
    #[serde(default)]
    pub probes: BTreeMap<String, LastProbe>,
    /// The phases of the most recent boot that ran a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootRecord>,
    /// Set while the last write of the boot environment by a check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_env_failure: Option<EnvFailure>,
    /// Fields written by a newer version, kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl State {
    /// Record a phase's verdict (the boot's verdict so far) and its probe
    /// results for the boot `boot_id`.
    pub fn record_phase(
        &mut self,
        boot_id: &str,
        report: &PhaseReport,
        verdict: Verdict,
        snapshot: &SnapshotRef,
        now: u64,
    ) {
        let rec = match &mut self.boot {
            Some(b) if b.boot_id == boot_id => b,
            _ => self.boot.insert(BootRecord {
                boot_id: boot_id.to_owned(),
                early: None,
                late: None,
                extra: BTreeMap::new(),
            }),
        };
        match report.phase {
            Phase::Early => rec.early = Some(verdict),
            Phase::Late => rec.late = Some(verdict),
        }
        for p in &report.probes {
            self.probes.insert(
                p.name.clone(),
                LastProbe {
                    time: now,
                    phase: report.phase,
                    severity: p.severity,
                    result: p.result,
                    reason: p.reason.clone(),
                    snapshot: snapshot.clone(),
                    duration_ms: Some(p.duration_ms),
                    cost: p.cost.clone(),
                    extra: BTreeMap::new(),
                },
            );
        }
    }

    /// The early phase's verdict if it ran in boot `boot_id`.
    pub fn early_verdict(&self, boot_id: &str) -> Option<Verdict> {
        self.boot
            .as_ref()
            .filter(|b| b.boot_id == boot_id)
            .and_then(|b| b.early)
    }
}

/// What the `state_json` fuzz target checks of any bytes: reading never
/// panics, and what is read is written so that it reads back the same,
/// every unknown field included. Its seed corpus runs in `cargo test`.
pub fn fuzz_read_write(data: &[u8]) {
    if let Ok(state) = fsutil::parse_json::<State>(data) {
        let bytes = serde_json::to_vec(&state).expect("a state serialises");
        let again: State = fsutil::parse_json(&bytes).expect("a written state reads back");
        assert_eq!(again, state);
    }
}

/// The kernel's ID of the running boot, which ties the phases of one boot
/// together. Read from the running kernel even with `--root` (the phases of
/// a boot run in that boot).
pub fn current_boot_id() -> Result<String> {
    const PATH: &str = "/proc/sys/kernel/random/boot_id";
    let id = std::fs::read_to_string(PATH).with_context(|| format!("reading {PATH}"))?;
    let id = id.trim();
    anyhow::ensure!(!id.is_empty(), "{PATH} is empty");
    Ok(id.to_owned())
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `state.json` under a root.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    lock: PathBuf,
}

impl StateFile {
    /// The state file of the system at `root`.
    pub fn new(root: &Root) -> Self {
        StateFile {
            path: root.join(STATE_DIR).join("state.json"),
            lock: root.join(fsutil::LOCK_PATH),
        }
    }

    /// A state file at an explicit path (locked beside it).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        StateFile {
            lock: crate::history::lock_beside(&path),
            path,
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take the lock that serialises read-decide-write cycles of this file,
    /// the history beside it and the boot environment between processes;
    /// hold it from before the boot environment is read to the last write.
    pub fn lock(&self) -> Result<fsutil::Lock> {
        fsutil::Lock::acquire(&self.lock, fsutil::LOCK_WAIT)
    }

    /// Read the state, changing nothing. A file this version cannot
    /// interpret is reported in [`Loaded::unusable`] (with the default
    /// state as the value) and must not be saved over.
    pub fn load(&self) -> Result<Loaded<State>> {
        fsutil::read_json(&self.path)
    }

    /// Replace the state atomically, in the newer of the format it was read
    /// in and this program's.
    pub fn save(&self, state: &State) -> Result<()> {
        let mut state = state.clone();
        state.format_version = state.format_version.max(FormatVersion::CURRENT);
        if cfg!(feature = "future-state-fixture") {
            // What a future release writes (tests of downgrades).
            state.extra.insert(
                "future_field".into(),
                Value::from("written by a future release"),
            );
        }
        let mut json = serde_json::to_vec_pretty(&state)?;
        json.push(b'\n');
        fsutil::atomic_write(&self.path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::ProbeResult;

    fn snap() -> SnapshotRef {
        SnapshotRef {
            id: 256,
            path: "@/.snapshots/1/snapshot".into(),
        }
    }

    fn report(phase: Phase, result: Outcome) -> PhaseReport {
        PhaseReport::new(
            phase,
            vec![ProbeResult {
                cost: Default::default(),
                name: "root-mounted".into(),
                severity: Severity::Required,
                result,
                duration_ms: 3,
                reason: None,
                output: String::new(),
            }],
        )
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(&Root::new(dir.path()));
        assert_eq!(f.load().unwrap().value, State::default());
        let mut s = State {
            degraded: Some(Degraded {
                since: 5,
                reason: "known-good failed twice".into(),
                snapshot: snap(),
                extra: BTreeMap::new(),
            }),
            ..State::default()
        };
        s.record_phase(
            "b1",
            &report(Phase::Early, Outcome::Fail),
            Verdict::Fail,
            &snap(),
            9,
        );
        f.save(&s).unwrap();
        assert!(f.path().ends_with("var/lib/health-checker/state.json"));
        let back = f.load().unwrap().value;
        assert_eq!(back.format_version, FormatVersion::CURRENT);
        assert_eq!(
            State {
                format_version: s.format_version,
                ..back
            },
            s
        );
    }

    #[test]
    fn phases_of_one_boot_are_kept_together() {
        let mut s = State::default();
        s.record_phase(
            "b1",
            &report(Phase::Early, Outcome::Fail),
            Verdict::Fail,
            &snap(),
            1,
        );
        assert_eq!(s.early_verdict("b1"), Some(Verdict::Fail));
        s.record_phase(
            "b1",
            &report(Phase::Late, Outcome::Pass),
            Verdict::Fail,
            &snap(),
            2,
        );
        assert_eq!(s.early_verdict("b1"), Some(Verdict::Fail));
        assert_eq!(s.probes["root-mounted"].result, Outcome::Pass);
        assert_eq!(s.probes["root-mounted"].phase, Phase::Late);
        // A new boot starts a new record.
        assert_eq!(s.early_verdict("b2"), None);
        s.record_phase(
            "b2",
            &report(Phase::Late, Outcome::Pass),
            Verdict::Pass,
            &snap(),
            3,
        );
        assert_eq!(s.early_verdict("b2"), None);
        assert_eq!(s.boot.as_ref().unwrap().late, Some(Verdict::Pass));
    }

    #[test]
    fn the_boot_id_is_read_from_the_kernel() {
        let id = current_boot_id().expect("/proc/sys/kernel/random/boot_id readable");
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(current_boot_id().unwrap(), id, "stable within a boot");
        assert!(unix_now() > 1_700_000_000);
    }

    #[test]
    fn a_state_that_cannot_be_interpreted_is_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::at(dir.path().join("state.json"));
        std::fs::write(f.path(), b"{\"degraded\": 3}").unwrap();
        let u = f.load().unwrap().unusable.expect("reported");
        assert!(u.to_string().contains("state.json"), "{u}");
        assert_eq!(std::fs::read(f.path()).unwrap(), b"{\"degraded\": 3}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unknown_fields_are_kept_at_every_level() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::at(dir.path().join("state.json"));
        let stored = serde_json::json!({
            "format_version": "1.3",
            "degraded": {"since": 5, "reason": "r", "snapshot": {"id": 256, "path": "@/.snapshots/1/snapshot"},
                         "ticket": 42},
            "probes": {},
            "boot": {"boot_id": "b1", "early": "pass", "kernel": "6.1"},
            "maintenance_window": {"from": "02:00"},
        });
        std::fs::write(f.path(), serde_json::to_vec(&stored).unwrap()).unwrap();
        let l = f.load().unwrap();
        assert!(l.unusable.is_none());
        let s = l.value;
        assert_eq!(
            s.degraded.as_ref().unwrap().reason,
            "r",
            "degraded mode survives"
        );
        assert_eq!(s.early_verdict("b1"), Some(Verdict::Pass));
        f.save(&s).unwrap();
        let back: Value = serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
        assert_eq!(back, stored, "nothing lost, the newer format kept");
    }
}
