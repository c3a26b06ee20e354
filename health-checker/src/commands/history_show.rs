//! `health-checker history [--json] [-n N]`: the recorded events, newest
//! last; for people one line each, `TIME  KIND  SNAPSHOT  REASON`, in
//! aligned columns.

use anyhow::{anyhow, Context};
use clap::Args;

use crate::exit::{Code, CodeExt};
use crate::history::{kind_str, rfc3339, EventKind, History, Record};
use crate::paths::Root;

/// Options of `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Print the events as JSON (a list, newest last, with probe results).
    #[arg(long)]
    pub json: bool,
    /// Show only the newest N events.
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub count: Option<usize>,
}

/// Run `history`. A history that cannot be read or that this version
/// cannot interpret is an error (exit code 6) naming the file; it is never
/// changed here. Entries of kinds this version does not know are shown as
/// `unknown:KIND`.
pub fn run(root: &Root, args: &HistoryArgs) -> anyhow::Result<Code> {
    let history = History::new(root);
    let read = history
        .read()
        .with_context(|| format!("reading {}", history.path().display()))
        .code(Code::Runtime)?;
    if let Some(u) = read.unusable {
        return Err(anyhow!("{u}")).code(Code::Runtime);
    }
    let mut events = read.events;
    if let Some(n) = args.count {
        events = events.split_off(events.len().saturating_sub(n));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else if events.is_empty() {
        println!("no events recorded in {}", history.path().display());
    } else {
        for line in lines(&events, true) {
            println!("{line}");
        }
    }
    Ok(Code::Ok)
}

/// The kind of an entry for people: `verdict:late:FAIL`, `rollback`, or
/// `unknown:KIND` for a kind (or a format) this version does not know.
fn kind_label(r: &Record) -> String {
    match &r.event {
        Some(e) => match (e.event.kind, e.event.phase, e.event.verdict) {
            (EventKind::Verdict, Some(p), Some(v)) => format!(
                "verdict:{p}:{}",
                if v == crate::verdict::Verdict::Pass {
                    "pass"
                } else {
                    "FAIL"
                }
            ),
            (k, _, _) => kind_str(k).to_owned(),
        },
        None => format!("unknown:{}", one_line(&r.kind_name())),
    }
}

/// The events as aligned lines `TIME  KIND  SNAPSHOT  REASON`, with a
/// header line when asked.
pub fn lines(events: &[Record], header: bool) -> Vec<String> {
    let rows: Vec<[String; 4]> = events
        .iter()
        .map(|r| {
            [
                r.time().map_or_else(|| "-".to_owned(), rfc3339),
                kind_label(r),
                r.snapshot_path()
                    .map_or_else(|| "-".to_owned(), |p| one_line(&p)),
                one_line(&r.reason()),
            ]
        })
        .collect();
    let titles = ["TIME", "KIND", "SNAPSHOT", "REASON"].map(str::to_owned);
    let all: Vec<&[String; 4]> = header
        .then_some(&titles)
        .into_iter()
        .chain(rows.iter())
        .collect();
    let width = |i: usize| all.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    all.iter()
        .map(|r| {
            format!("{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3])
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// Newlines and other control characters as spaces, so one event stays on
/// one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Event, NewEvent};
    use crate::snapshots::SnapshotRef;
    use crate::verdict::{Phase, Verdict};

    #[test]
    fn lines_are_aligned_and_one_per_event() {
        let mut verdict = NewEvent::new(
            EventKind::Verdict,
            Some(SnapshotRef {
                id: 259,
                path: "@/.snapshots/3/snapshot".into(),
            }),
            "late phase failed:\napp",
        );
        verdict.phase = Some(Phase::Late);
        verdict.verdict = Some(Verdict::Fail);
        let event = |time, boot_id: Option<&str>, event| {
            Record::new(Event {
                format_version: crate::fsutil::FormatVersion::CURRENT,
                time,
                boot_id: boot_id.map(str::to_owned),
                event,
            })
        };
        let events = vec![
            event(0, None, NewEvent::new(EventKind::MarkGood, None, "by hand")),
            event(60, Some("b"), verdict),
            Record::from_json(serde_json::json!({
                "time": 120, "kind": "snapshot-pruned\u{1b}[2J", "reason": "from a newer\nversion",
                "snapshot": {"path": "@/.snapshots/4/snapshot"}
            })),
            Record::from_json(serde_json::json!(["no", "object"])),
        ];
        let l = lines(&events, true);
        assert_eq!(l.len(), 5);
        assert!(l[0].starts_with("TIME "), "{l:?}");
        assert_eq!(
            l[1],
            "1970-01-01T00:00:00Z  mark-good                    -                        by hand"
        );
        assert_eq!(
            l[2],
            "1970-01-01T00:01:00Z  verdict:late:FAIL            @/.snapshots/3/snapshot  late phase failed: app"
        );
        assert_eq!(
            l[3],
            "1970-01-01T00:02:00Z  unknown:snapshot-pruned [2J  @/.snapshots/4/snapshot  from a newer version"
        );
        assert_eq!(l[4], "-                     unknown:?                    -");
        assert_eq!(lines(&events, false).len(), 4);
    }

    #[test]
    fn kind_names_match_the_recorded_ones() {
        for k in [
            EventKind::Verdict,
            EventKind::Promotion,
            EventKind::Rollback,
            EventKind::GrubFallback,
            EventKind::RetryReboot,
            EventKind::Degraded,
            EventKind::Arm,
            EventKind::MarkGood,
            EventKind::MarkBad,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), kind_str(k));
        }
    }
}
