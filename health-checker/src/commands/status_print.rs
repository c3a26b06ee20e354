//! `status` for people: a headline, then one aligned `Label: value` line per
//! piece (an error in the place of a piece that could not be read), then the
//! probes' last results and the last events.

use std::fmt::Write as _;

use super::history_show;
use super::status::{Item, Snapshot, Status};
use crate::history::rfc3339;
use crate::verdict::{Outcome, Severity, Verdict};

const LABEL: usize = 12;

/// The status as text, ending in a newline.
pub fn text(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "health-checker: {}", s.summary);
    out.push('\n');
    let mut line = |label: &str, value: String| {
        let mut rows = value.lines();
        let _ = writeln!(out, "{label:>LABEL$}: {}", rows.next().unwrap_or(""));
        for r in rows {
            let _ = writeln!(out, "{:>LABEL$}  {r}", "");
        }
    };

    let env = s.boot_environment.ok();
    let good = env.and_then(|e| e.known_good.as_ref());
    let trial = env.and_then(|e| e.trial.as_ref());
    line(
        "Booted",
        show(&s.booted, |b| {
            let role = if Some(b) == good {
                "  [known-good]"
            } else if Some(b) == trial {
                "  [trial]"
            } else {
                ""
            };
            format!("{}{role}", snap(b))
        }),
    );
    line("Default", show(&s.default, snap));
    match &s.boot_environment {
        Item::Err(f) => line("Boot env", format!("error: {}", f.message)),
        Item::Ok(e) => {
            line(
                "Known-good",
                match &e.known_good {
                    None => "none yet".into(),
                    Some(g) if e.known_good_exists == Some(false) => {
                        format!("{}  MISSING from the snapshot store", snap(g))
                    }
                    Some(g) => snap(g),
                },
            );
            line(
                "Trial",
                match &e.trial {
                    None => "none".into(),
                    Some(t) => format!(
                        "{}, {} attempt(s) left",
                        snap(t),
                        e.attempts_left.unwrap_or(0)
                    ),
                },
            );
            match &e.systemd_boot {
                None => line(
                    "GRUB",
                    format!(
                        "entry booted: {}; fall-back mark: {}",
                        e.grub_booted.as_deref().unwrap_or("not recorded"),
                        e.fallback.as_deref().unwrap_or("none")
                    ),
                ),
                Some(v) => {
                    let counting = match (&v.counting_entry, v.tries_left) {
                        (Some(c), Some(n)) => format!("{c}, {n} attempt(s) left"),
                        _ => "none".into(),
                    };
                    let mut text = format!(
                        "default entry: {}\ncounting entry: {counting}\nentry booted: {}; fall-back: {}",
                        v.default_entry.as_deref().unwrap_or("none of ours"),
                        v.booted_entry.as_deref().unwrap_or("unknown"),
                        e.fallback.as_deref().unwrap_or("none")
                    );
                    for o in &v.overrides {
                        text.push_str(&format!("\nEFI variable {o} overrides loader.conf"));
                    }
                    line("systemd-boot", text);
                }
            }
            line(
                "G failures",
                format!(
                    "{} in a row (reboots of the failing known-good)",
                    e.good_failures
                ),
            );
            if !e.damage.is_empty() {
                line(
                    "Env damage",
                    format!("{} (the next check repairs it)", e.damage.join("\n")),
                );
            }
        }
    }
    line(
        "Degraded",
        show(&s.degraded, |d| match d {
            None => "no".into(),
            Some(d) => format!(
                "YES since {} ({}): {}",
                rfc3339(d.since),
                d.snapshot.path,
                crate::probes::display::one_line(&d.reason)
            ),
        }),
    );
    if let Some(f) = &s.boot_env_write_failed {
        line(
            "Env write",
            format!(
                "FAILED at {}: {}\nwhile: {}",
                rfc3339(f.time),
                f.error,
                f.during
            ),
        );
    }
    line(
        "This boot",
        show(&s.this_boot, |b| {
            format!("early {}, late {}", verdict(b.early), verdict(b.late))
        }),
    );
    line(
        "Config",
        show(&s.config, |c| {
            format!(
                "{}, {} tries, deadline {}, environment {}",
                c.bootloader, c.tries, c.deadline, c.boot_environment
            )
        }),
    );
    line(
        "Probes",
        show(&s.probes, |p| {
            if p.is_empty() {
                return "none recorded yet".into();
            }
            let w = p.keys().map(|k| k.chars().count()).max().unwrap_or(0);
            p.iter()
                .map(|(name, r)| {
                    let mut l = format!(
                        "{:<7} {name:<w$}  {:<5}  {:<8}  {}",
                        outcome(r.result),
                        r.phase.as_str(),
                        severity(r.severity),
                        rfc3339(r.time)
                    );
                    if let Some(reason) = &r.reason {
                        let _ = write!(l, "  {}", crate::probes::display::one_line(reason));
                    }
                    l
                })
                .collect::<Vec<_>>()
                .join("\n")
        }),
    );
    line(
        "History",
        show(&s.history, |h| {
            if h.is_empty() {
                "no events recorded yet".into()
            } else {
                history_show::lines(h, false).join("\n")
            }
        }),
    );
    out
}

fn show<T>(item: &Item<T>, f: impl FnOnce(&T) -> String) -> String {
    match item {
        Item::Ok(v) => f(v),
        Item::Err(e) => format!("error: {}", e.message),
    }
}

fn snap(s: &Snapshot) -> String {
    match s.number {
        Some(n) => format!("{} (ID {}, snapper #{n})", s.path, s.id),
        None => format!("{} (ID {})", s.path, s.id),
    }
}

fn verdict(v: Option<Verdict>) -> &'static str {
    match v {
        None => "not run",
        Some(Verdict::Pass) => "pass",
        Some(Verdict::Fail) => "FAIL",
    }
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Skip => "skip",
        Outcome::Fail => "FAIL",
        Outcome::Timeout => "TIMEOUT",
        Outcome::Error => "ERROR",
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Required => "required",
        Severity::Wanted => "wanted",
    }
}
