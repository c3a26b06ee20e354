//! The history of verdicts, promotions, rollbacks and the like:
//! `/var/lib/health-checker/history.json`, outside the snapshots so it
//! survives rollbacks. A bounded JSON list, newest last, rewritten
//! atomically.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, Corrupt};
use crate::paths::{Root, STATE_DIR};
use crate::snapshots::SnapshotRef;
use crate::verdict::{Phase, ProbeResult, Verdict};

/// How many events the history keeps; older ones are dropped.
pub const MAX_EVENTS: usize = 200;

/// Bytes of a probe's output kept per probe in the history (the full capped
/// output went to the journal).
pub const OUTPUT_LIMIT: usize = 4096;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A phase reached a verdict (with the probe results).
    Verdict,
    /// A snapshot became known-good.
    Promotion,
    /// A failed trial was rolled back to the known-good snapshot.
    Rollback,
    /// GRUB ran out of attempts for a trial and booted the known-good one.
    GrubFallback,
    /// A failing known-good system is rebooted in case the fault is transient.
    RetryReboot,
    /// Degraded mode was entered.
    Degraded,
    /// A snapshot was armed as a trial.
    Arm,
    /// A snapshot was marked known-good by hand.
    MarkGood,
    /// A snapshot was marked bad by hand.
    MarkBad,
}

/// An event before it is stamped with time and boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub kind: EventKind,
    /// The snapshot the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotRef>,
    /// The phase, for verdicts and what they caused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The verdict, for verdict events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Probe results, for verdict events; for a degraded event, what each
    /// plugin's stop action did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeResult>,
    /// Why, in words.
    pub reason: String,
}

impl NewEvent {
    /// An event about `snapshot` with a reason and nothing else.
    pub fn new(kind: EventKind, snapshot: Option<SnapshotRef>, reason: impl Into<String>) -> Self {
        NewEvent {
            kind,
            snapshot,
            phase: None,
            verdict: None,
            probes: Vec::new(),
            reason: reason.into(),
        }
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When, in seconds since the Unix epoch (UTC).
    pub time: u64,
    /// The kernel's boot ID of the boot the event happened in, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(flatten)]
    pub event: NewEvent,
}

/// `history.json` under a root.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
}

/// The history as read.
#[derive(Debug)]
pub struct Read {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// Set when the file was corrupt (and moved aside, unless read-only).
    pub corrupt: Option<Corrupt>,
}

impl History {
    /// The history of the system at `root`.
    pub fn new(root: &Root) -> Self {
        History {
            path: root.join(STATE_DIR).join("history.json"),
        }
    }

    /// A history file at an explicit path.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        History { path: path.into() }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the events without changing anything (a corrupt file stays
    /// where it is and is reported).
    pub fn read(&self) -> Result<Read> {
        let l = fsutil::read_json(&self.path, false, 0)?;
        Ok(Read {
            events: l.value,
            corrupt: l.corrupt,
        })
    }

    /// Append events (stamped with `now` and `boot_id`), keep the newest
    /// [`MAX_EVENTS`], and rewrite the file atomically. A corrupt file is
    /// moved aside first and reported in the result; the new file starts
    /// from the appended events.
    pub fn append(
        &self,
        events: &[NewEvent],
        now: u64,
        boot_id: Option<&str>,
    ) -> Result<Option<Corrupt>> {
        let _lock = fsutil::Lock::acquire(&lock_path(&self.path))?;
        let loaded = fsutil::read_json::<Vec<Event>>(&self.path, true, now)?;
        let mut all = loaded.value;
        all.extend(events.iter().map(|e| Event {
            time: now,
            boot_id: boot_id.map(str::to_owned),
            event: capped(e.clone()),
        }));
        if all.len() > MAX_EVENTS {
            all.drain(..all.len() - MAX_EVENTS);
        }
        let mut json = serde_json::to_vec_pretty(&all)?;
        json.push(b'\n');
        fsutil::atomic_write(&self.path, &json)?;
        Ok(loaded.corrupt)
    }
}

/// `.NAME.lock` beside a file.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.lock"))
}

fn capped(mut e: NewEvent) -> NewEvent {
    for p in &mut e.probes {
        truncate_at_char(&mut p.output, OUTPUT_LIMIT);
    }
    e
}

/// Cut `s` to at most `max` bytes on a character boundary, marking the cut.
fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str("\n[output truncated]");
}

/// Format seconds since the epoch as RFC 3339 UTC (`2026-11-22T03:23:11Z`),
/// for people reading the history.
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Outcome, Severity};

    fn ev(reason: &str) -> NewEvent {
        NewEvent::new(
            EventKind::Rollback,
            Some(SnapshotRef {
                id: 300,
                path: "@/.snapshots/9/snapshot".into(),
            }),
            reason,
        )
    }

    #[test]
    fn append_keeps_order_and_stamps() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(&Root::new(dir.path()));
        assert!(h.read().unwrap().events.is_empty());
        h.append(&[ev("a")], 10, Some("boot1")).unwrap();
        h.append(&[ev("b"), ev("c")], 20, None).unwrap();
        let events = h.read().unwrap().events;
        let reasons: Vec<_> = events.iter().map(|e| e.event.reason.as_str()).collect();
        assert_eq!(reasons, ["a", "b", "c"]);
        assert_eq!(events[0].time, 10);
        assert_eq!(events[0].boot_id.as_deref(), Some("boot1"));
        assert_eq!(events[2].time, 20);
        assert!(h.path().ends_with("var/lib/health-checker/history.json"));
        let text = std::fs::read_to_string(h.path()).unwrap();
        assert!(text.contains("\"kind\": \"rollback\""), "{text}");
    }

    #[test]
    fn history_is_bounded_newest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::at(dir.path().join("history.json"));
        for i in 0..(MAX_EVENTS + 25) {
            h.append(&[ev(&i.to_string())], i as u64, None).unwrap();
        }
        let events = h.read().unwrap().events;
        assert_eq!(events.len(), MAX_EVENTS);
        assert_eq!(events.first().unwrap().event.reason, "25");
        assert_eq!(
            events.last().unwrap().event.reason,
            (MAX_EVENTS + 24).to_string()
        );
    }

    #[test]
    fn probe_output_is_capped_in_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::at(dir.path().join("history.json"));
        let mut e = ev("verdict");
        e.kind = EventKind::Verdict;
        e.probes.push(ProbeResult {
            name: "noisy".into(),
            severity: Severity::Required,
            result: Outcome::Fail,
            duration_ms: 1,
            reason: None,
            output: "é".repeat(OUTPUT_LIMIT), // 2 bytes each
        });
        h.append(&[e], 1, None).unwrap();
        let out = &h.read().unwrap().events[0].event.probes[0].output;
        assert!(out.len() <= OUTPUT_LIMIT + 20, "{}", out.len());
        assert!(out.ends_with("[output truncated]"));
    }

    #[test]
    fn corrupt_history_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::at(dir.path().join("history.json"));
        std::fs::write(h.path(), b"not json").unwrap();
        // Reading only reports.
        assert!(h.read().unwrap().corrupt.is_some());
        assert_eq!(std::fs::read(h.path()).unwrap(), b"not json");
        // Appending moves it aside first.
        let corrupt = h.append(&[ev("new")], 77, None).unwrap().expect("reported");
        let aside = dir.path().join("history.json.corrupt-77");
        assert_eq!(corrupt.moved_to.as_deref(), Some(aside.as_path()));
        assert_eq!(std::fs::read(&aside).unwrap(), b"not json");
        assert_eq!(h.read().unwrap().events.len(), 1);
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_318_991), "2026-11-22T03:43:11Z");
    }
}
