//! The history of verdicts, promotions, rollbacks and the like:
//! `/var/lib/health-checker/history.json`, outside the snapshots so it
//! survives rollbacks. A bounded JSON list, newest last, rewritten
//! atomically. Every entry carries the format version it was written in;
//! entries this version does not understand are kept as they are and shown
//! as unknown (docs/design.md, "State outside the snapshots").

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, FormatVersion, Unusable};
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
    /// The format of the history this event was written in (absent in
    /// events written before the field existed: 1.0).
    #[serde(default)]
    pub format_version: FormatVersion,
    /// When, in seconds since the Unix epoch (UTC).
    pub time: u64,
    /// The kernel's boot ID of the boot the event happened in, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(flatten)]
    pub event: NewEvent,
}

/// One entry of the history as stored: the event when this version
/// understands it, and always the JSON it was read as, which is what is
/// written back. An entry of an unknown kind, of a newer major format or
/// with values this version cannot read is kept and shown as unknown;
/// fields this version does not know are kept too.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The event, when this version can interpret it.
    pub event: Option<Event>,
    raw: serde_json::Value,
}

impl Record {
    /// The record of a new event.
    pub fn new(event: Event) -> Self {
        let raw = serde_json::to_value(&event).unwrap_or_default();
        Record {
            event: Some(event),
            raw,
        }
    }

    /// A stored entry, interpreted when this version can.
    pub fn from_json(raw: serde_json::Value) -> Self {
        let event = FormatVersion::of(&raw)
            .ok()
            .filter(|v| v.readable())
            .and_then(|_| serde_json::from_value(raw.clone()).ok());
        Record { event, raw }
    }

    /// The entry as stored.
    pub fn json(&self) -> &serde_json::Value {
        &self.raw
    }

    /// When, if the entry says.
    pub fn time(&self) -> Option<u64> {
        match &self.event {
            Some(e) => Some(e.time),
            None => self.raw.get("time").and_then(serde_json::Value::as_u64),
        }
    }

    /// The kind as recorded (`rollback`, or whatever a newer version wrote).
    pub fn kind_name(&self) -> String {
        match &self.event {
            Some(e) => kind_str(e.event.kind).to_owned(),
            None => match self.raw.get("kind") {
                Some(serde_json::Value::String(k)) => k.clone(),
                _ => "?".to_owned(),
            },
        }
    }

    /// The path of the snapshot the entry is about, if it says.
    pub fn snapshot_path(&self) -> Option<String> {
        match &self.event {
            Some(e) => e.event.snapshot.as_ref().map(|s| s.path.clone()),
            None => self.raw["snapshot"]["path"].as_str().map(str::to_owned),
        }
    }

    /// Why, in words (empty when the entry does not say).
    pub fn reason(&self) -> String {
        match &self.event {
            Some(e) => e.event.reason.clone(),
            None => self.raw["reason"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// Drop the probe results (for summaries).
    pub fn without_probes(mut self) -> Self {
        if let Some(e) = &mut self.event {
            e.event.probes.clear();
        }
        if let Some(o) = self.raw.as_object_mut() {
            o.remove("probes");
        }
        self
    }
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Record::from_json)
    }
}

/// The name of an event kind as recorded (`grub-fallback`, `mark-good`).
pub fn kind_str(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Verdict => "verdict",
        EventKind::Promotion => "promotion",
        EventKind::Rollback => "rollback",
        EventKind::GrubFallback => "grub-fallback",
        EventKind::RetryReboot => "retry-reboot",
        EventKind::Degraded => "degraded",
        EventKind::Arm => "arm",
        EventKind::MarkGood => "mark-good",
        EventKind::MarkBad => "mark-bad",
    }
}

/// What the `history_json` fuzz target checks of any bytes: reading never
/// panics, and what is read is written so that it reads back the same,
/// every entry this version does not understand included. Its seed corpus
/// runs in `cargo test`.
pub fn fuzz_read_write(data: &[u8]) {
    if let Ok(records) = fsutil::parse_json::<Vec<Record>>(data) {
        let bytes = serde_json::to_vec(&records).expect("a history serialises");
        let again: Vec<Record> = fsutil::parse_json(&bytes).expect("a written history reads back");
        assert_eq!(again, records);
    }
}

/// `history.json` under a root.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
    lock: PathBuf,
}

/// The history as read.
#[derive(Debug)]
pub struct Read {
    /// The entries, oldest first.
    pub events: Vec<Record>,
    /// Set when this version cannot interpret the file (it is left as it
    /// is).
    pub unusable: Option<Unusable>,
}

impl Read {
    /// The events this version understands, oldest first.
    pub fn known(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().filter_map(|r| r.event.as_ref())
    }
}

impl History {
    /// The history of the system at `root`.
    pub fn new(root: &Root) -> Self {
        History {
            path: root.join(STATE_DIR).join("history.json"),
            lock: root.join(fsutil::LOCK_PATH),
        }
    }

    /// A history file at an explicit path (locked beside it).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        History {
            lock: lock_beside(&path),
            path,
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock serialising changes of this file and of the state beside
    /// it (the same lock as [`crate::state::StateFile::lock`]).
    pub fn lock(&self) -> Result<fsutil::Lock> {
        fsutil::Lock::acquire(&self.lock, fsutil::LOCK_WAIT)
    }

    /// Read the events without changing anything.
    pub fn read(&self) -> Result<Read> {
        let l = fsutil::read_json(&self.path)?;
        Ok(Read {
            events: l.value,
            unusable: l.unusable,
        })
    }

    /// Append events (stamped with `now` and `boot_id`), keep the newest
    /// [`MAX_EVENTS`], and rewrite the file atomically, keeping every entry
    /// as it was read. A file this version cannot interpret is left as it
    /// is and nothing is appended: the error says so.
    pub fn append(&self, events: &[NewEvent], now: u64, boot_id: Option<&str>) -> Result<()> {
        let _lock = self.lock()?;
        let loaded = fsutil::read_json::<Vec<Record>>(&self.path)?;
        if let Some(u) = loaded.unusable {
            anyhow::bail!("{u}; {} event(s) not recorded", events.len());
        }
        let mut all = loaded.value;
        let first_new = all.len();
        all.extend(events.iter().map(|e| {
            Record::new(Event {
                format_version: FormatVersion::CURRENT,
                time: now,
                boot_id: boot_id.map(str::to_owned),
                event: capped(e.clone()),
            })
        }));
        future::append(&mut all, first_new, now, boot_id);
        if all.len() > MAX_EVENTS {
            all.drain(..all.len() - MAX_EVENTS);
        }
        let mut json = serde_json::to_vec_pretty(&all)?;
        json.push(b'\n');
        fsutil::atomic_write(&self.path, &json)
    }
}

/// The lock of a file at an explicit path: in its directory.
pub(crate) fn lock_beside(path: &Path) -> PathBuf {
    fsutil::Lock::path_for(path.parent().unwrap_or(Path::new(".")))
}

/// What a future release writes, for the tests of downgrades (the
/// `future-state-fixture` feature): one more field in every new entry, and
/// an entry of a kind this release does not have.
#[cfg(feature = "future-state-fixture")]
mod future {
    use super::{FormatVersion, Record};
    use serde_json::json;

    pub(super) fn append(all: &mut Vec<Record>, first_new: usize, now: u64, boot_id: Option<&str>) {
        for r in &mut all[first_new..] {
            if let Some(o) = r.raw.as_object_mut() {
                o.insert("future_field".into(), json!("written by a future release"));
            }
        }
        all.push(Record::from_json(json!({
            "format_version": FormatVersion::CURRENT,
            "time": now,
            "boot_id": boot_id,
            "kind": "future-kind",
            "reason": "an event of a kind a future release records",
            "future_field": "written by a future release",
        })));
    }
}

#[cfg(not(feature = "future-state-fixture"))]
mod future {
    pub(super) fn append(_: &mut [super::Record], _: usize, _: u64, _: Option<&str>) {}
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
        let read = h.read().unwrap();
        let events: Vec<&Event> = read.known().collect();
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
    #[cfg_attr(
        feature = "future-state-fixture",
        ignore = "the future fixture adds an entry to every append"
    )]
    fn history_is_bounded_newest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::at(dir.path().join("history.json"));
        for i in 0..(MAX_EVENTS + 25) {
            h.append(&[ev(&i.to_string())], i as u64, None).unwrap();
        }
        let read = h.read().unwrap();
        let events: Vec<&Event> = read.known().collect();
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
            cost: Default::default(),
            name: "noisy".into(),
            severity: Severity::Required,
            result: Outcome::Fail,
            duration_ms: 1,
            reason: None,
            output: "é".repeat(OUTPUT_LIMIT), // 2 bytes each
        });
        h.append(&[e], 1, None).unwrap();
        let read = h.read().unwrap();
        let out = &read.known().next().unwrap().event.probes[0].output;
        assert!(out.len() <= OUTPUT_LIMIT + 20, "{}", out.len());
        assert!(out.ends_with("[output truncated]"));
    }

    #[test]
    fn a_history_that_cannot_be_interpreted_is_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::at(dir.path().join("history.json"));
        for bytes in [
            &b"not json"[..],
            b"{\"format_version\": \"2.0\", \"events\": []}",
        ] {
            std::fs::write(h.path(), bytes).unwrap();
            assert!(h.read().unwrap().unusable.is_some());
            let err = h.append(&[ev("new")], 77, None).unwrap_err();
            let msg = format!("{err:#}");
            assert!(
                msg.contains("history.json") && msg.contains("not recorded"),
                "{msg}"
            );
            assert_eq!(std::fs::read(h.path()).unwrap(), bytes);
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n != "locks")
                .collect();
            assert_eq!(names, ["history.json"], "nothing moved aside");
        }
    }

    #[test]
    fn unknown_kinds_fields_and_newer_majors_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::at(dir.path().join("history.json"));
        let stored = serde_json::json!([
            {"time": 1, "kind": "rollback", "reason": "old", "new_field": {"x": [1, 2]},
             "snapshot": {"id": 300, "path": "@/.snapshots/9/snapshot", "uuid": "u"}},
            {"format_version": "1.4", "time": 2, "kind": "snapshot-pruned", "reason": "new kind"},
            {"format_version": "2.0", "time": 3, "kind": "rollback", "reason": "newer major"},
            {"time": 4, "kind": "verdict", "verdict": "maybe", "reason": "unknown value"},
            "not even an object",
        ]);
        std::fs::write(h.path(), serde_json::to_vec(&stored).unwrap()).unwrap();
        let read = h.read().unwrap();
        assert!(read.unusable.is_none());
        let kinds: Vec<_> = read
            .events
            .iter()
            .map(|r| (r.kind_name(), r.event.is_some()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("rollback".to_owned(), true),
                ("snapshot-pruned".to_owned(), false),
                ("rollback".to_owned(), false),
                ("verdict".to_owned(), false),
                ("?".to_owned(), false),
            ]
        );
        assert_eq!(read.events[1].time(), Some(2));
        assert_eq!(read.events[1].reason(), "new kind");
        h.append(&[ev("appended")], 5, None).unwrap();
        let after: serde_json::Value =
            serde_json::from_slice(&std::fs::read(h.path()).unwrap()).unwrap();
        let after = after.as_array().unwrap();
        assert_eq!(
            &after[..5],
            stored.as_array().unwrap().as_slice(),
            "kept as read"
        );
        assert_eq!(after[5]["reason"], "appended");
        assert_eq!(
            after[5]["format_version"],
            FormatVersion::CURRENT.to_string()
        );
    }

    /// Built only with the `future-state-fixture` feature: what a future
    /// release writes, for tests where it writes and this release reads.
    #[cfg(feature = "future-state-fixture")]
    #[test]
    fn the_future_fixture_writes_an_unknown_field_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::at(dir.path().join("history.json"));
        h.append(&[ev("a")], 1, None).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(h.path()).unwrap()).unwrap();
        assert_eq!(v[0]["format_version"], "1.1");
        assert_eq!(v[0]["future_field"], "written by a future release");
        assert_eq!(v[1]["kind"], "future-kind");
        let s = crate::state::StateFile::at(dir.path().join("state.json"));
        s.save(&crate::state::State::default()).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.path()).unwrap()).unwrap();
        assert_eq!(v["format_version"], "1.1");
        assert_eq!(v["future_field"], "written by a future release");
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_318_991), "2026-11-22T03:43:11Z");
    }
}
