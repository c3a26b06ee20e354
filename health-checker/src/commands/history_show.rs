//! `health-checker history [--json] [-n N]`: the recorded events, newest
//! last; for people one line each, `TIME  KIND  SNAPSHOT  REASON`, in
//! aligned columns.

use anyhow::{anyhow, Context};
use clap::Args;

use crate::exit::{Code, CodeExt};
use crate::history::{rfc3339, Event, EventKind, History};
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

/// Run `history`. A history that cannot be read or does not parse is an
/// error (exit code 6) naming the file; it is never changed here.
pub fn run(root: &Root, args: &HistoryArgs) -> anyhow::Result<Code> {
    let history = History::new(root);
    let read = history
        .read()
        .with_context(|| format!("reading {}", history.path().display()))
        .code(Code::Runtime)?;
    if let Some(c) = read.corrupt {
        return Err(anyhow!("{c}")).code(Code::Runtime);
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

/// The events as aligned lines `TIME  KIND  SNAPSHOT  REASON`, with a
/// header line when asked.
pub fn lines(events: &[Event], header: bool) -> Vec<String> {
    let rows: Vec<[String; 4]> = events
        .iter()
        .map(|e| {
            let kind = match (e.event.kind, e.event.phase, e.event.verdict) {
                (EventKind::Verdict, Some(p), Some(v)) => {
                    format!(
                        "verdict:{p}:{}",
                        if v == crate::verdict::Verdict::Pass {
                            "pass"
                        } else {
                            "FAIL"
                        }
                    )
                }
                (k, _, _) => kind_str(k).to_owned(),
            };
            [
                rfc3339(e.time),
                kind,
                e.event
                    .snapshot
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |s| s.path.clone()),
                one_line(&e.event.reason),
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
    use crate::history::NewEvent;
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
        let events = vec![
            Event {
                time: 0,
                boot_id: None,
                event: NewEvent::new(EventKind::MarkGood, None, "by hand"),
            },
            Event {
                time: 60,
                boot_id: Some("b".into()),
                event: verdict,
            },
        ];
        let l = lines(&events, true);
        assert_eq!(l.len(), 3);
        assert!(l[0].starts_with("TIME "), "{l:?}");
        assert_eq!(
            l[1],
            "1970-01-01T00:00:00Z  mark-good          -                        by hand"
        );
        assert_eq!(
            l[2],
            "1970-01-01T00:01:00Z  verdict:late:FAIL  @/.snapshots/3/snapshot  late phase failed: app"
        );
        assert_eq!(lines(&events, false).len(), 2);
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
