//! `/var/lib/health-checker/state.json`: whether the system is in degraded
//! mode and why, the last result of every probe, and what the phases of the
//! current boot decided (so the late phase knows whether the early phase of
//! the same boot failed). Rewritten atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, Loaded};
use crate::paths::{Root, STATE_DIR};
use crate::snapshots::SnapshotRef;
use crate::verdict::{Outcome, Phase, PhaseReport, Severity, Verdict};

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
}

/// The content of `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Set while the system is in degraded mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<Degraded>,
    /// Last result per probe name.
    #[serde(default)]
    pub probes: BTreeMap<String, LastProbe>,
    /// The phases of the most recent boot that ran a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootRecord>,
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
}

impl StateFile {
    /// The state file of the system at `root`.
    pub fn new(root: &Root) -> Self {
        StateFile {
            path: root.join(STATE_DIR).join("state.json"),
        }
    }

    /// A state file at an explicit path.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        StateFile { path: path.into() }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take the lock that serialises read-modify-write cycles of this file
    /// between processes; hold it from [`StateFile::load`] to the last
    /// [`StateFile::save`].
    pub fn lock(&self) -> Result<fsutil::Lock> {
        fsutil::Lock::acquire(&crate::history::lock_path(&self.path))
    }

    /// Read the state. With `repair`, a corrupt file is moved aside to
    /// `state.json.corrupt-<now>`; without, it is left in place. Either way
    /// it is reported in [`Loaded::corrupt`] and the default state returned.
    pub fn load(&self, repair: bool, now: u64) -> Result<Loaded<State>> {
        fsutil::read_json(&self.path, repair, now)
    }

    /// Replace the state atomically.
    pub fn save(&self, state: &State) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(state)?;
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
        assert_eq!(f.load(true, 1).unwrap().value, State::default());
        let mut s = State {
            degraded: Some(Degraded {
                since: 5,
                reason: "known-good failed twice".into(),
                snapshot: snap(),
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
        assert_eq!(f.load(true, 1).unwrap().value, s);
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
    fn corrupt_state_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::at(dir.path().join("state.json"));
        std::fs::write(f.path(), b"{\"degraded\": 3}").unwrap();
        let l = f.load(false, 42).unwrap();
        assert!(l.corrupt.is_some());
        assert!(f.path().exists(), "a read-only look changes nothing");
        let l = f.load(true, 42).unwrap();
        let c = l.corrupt.unwrap();
        assert!(c.to_string().contains("state.json"));
        assert!(dir.path().join("state.json.corrupt-42").exists());
        assert!(!f.path().exists());
    }

    #[test]
    fn unknown_fields_are_corruption_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::at(dir.path().join("state.json"));
        std::fs::write(f.path(), b"{\"degarded\": null}").unwrap();
        assert!(f.load(false, 1).unwrap().corrupt.is_some());
    }
}
