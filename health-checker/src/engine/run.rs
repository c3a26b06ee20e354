//! Carrying out a phase's decision: read the boot environment and the
//! snapshot store, decide, then act in an order that is safe against a crash
//! at any step.
//!
//! The order, and why:
//! 1. **Default subvolume** first. A crash right after leaves the
//!    environment as it was: a trial still armed is booted by GRUB again
//!    (counting down), and a GRUB that follows the default boots the
//!    known-good. The reverse order could leave the trial cleared while the
//!    default still names it, which would look like an unarmed update.
//! 2. **Boot environment** (trial cleared, failure streak counted, promotion
//!    recorded) second. A failure of 1 stops everything: nothing else is
//!    done, no reboot is asked for, and the error is returned. A failure of
//!    2 (a full ESP) does not silence the records and alerts: a rollback
//!    still reboots (GRUB's count of the trial's attempts bounds it), a
//!    retry reboot of the known-good becomes degraded mode (its count could
//!    not be saved, so a reboot could loop); see `env_write_failed`.
//! 3. Entering degraded mode is one step: **every plugin's stop action**,
//!    then **the configured units** (`[degraded] stop_services`, empty by
//!    default), so that the history's degraded event records what the stop
//!    actions did. Then **history and state** (`/var/lib/health-checker`),
//!    before the reboot, so the record of a rollback exists when it happens.
//!    (The phase's verdict for this boot is saved in `state.json` even
//!    before step 1, so that the late phase of the same boot knows the
//!    early phase failed even when acting on that failure did not succeed.)
//! 4. **Alerts**: degraded mode, rollback, GRUB fall-back.
//! 5. **Reboot** last.
//!
//! All of it, from reading the boot environment to the reboot, runs under
//! one lock ([`StateFile::lock`]), so that two checks at once (the late
//! phase and the deadline, an admin) decide one after the other.
//!
//! Steps 3 and 4 are records and notices: their failure does not keep the
//! reboot of step 5 from being asked for (a failing trial must not stay
//! booted because `/var` is full), but every such failure is returned as an
//! error after the remaining steps ran; none is ignored.

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use super::bootstate::BootState;
use super::decide::{decide, Action, BootVerdict, Decision, EarlyPhase, EngineConfig, Inputs};
use crate::actions::{Actions, Alert, AlertKind};
use crate::exit::{Code, CodeExt};
use crate::fsutil::LockHeld;
use crate::history::{EventKind, History, NewEvent};
use crate::logging::message_id;
use crate::probes::StopAction;
use crate::snapshots::{SnapshotRef, Snapshots};
use crate::state::{Degraded, EnvFailure, StateFile};
use crate::verdict::{Phase, PhaseReport, Verdict};

/// The boot environment seam: the `hc_*` keys of the GRUB environment.
pub trait BootEnv {
    /// Read the keys and parse them. A missing, torn or unparsable
    /// environment is an error (never an empty state).
    fn load(&self) -> Result<BootState>;
    /// Set (`Some`) or unset (`None`) these keys in one crash-safe write,
    /// leaving every other key as it is.
    fn store(&self, changes: &[(&'static str, Option<String>)]) -> Result<()>;
}

/// What a check run is given besides the seams.
#[derive(Debug, Clone)]
pub struct CheckOptions<'a> {
    /// The phase's probe results (the caller ran the probes).
    pub report: &'a PhaseReport,
    pub config: &'a EngineConfig,
    /// The plugins' stop actions, run first in degraded mode.
    pub stop_actions: &'a [StopAction],
    /// Units to stop in degraded mode, after the stop actions (`[degraded]
    /// stop_services`).
    pub stop_units: &'a [String],
    /// Decide and explain, change nothing.
    pub dry_run: bool,
    /// The time, seconds since the epoch (UTC).
    pub now: u64,
    /// The kernel's boot ID, tying the phases of one boot together.
    pub boot_id: &'a str,
}

/// What a check run decided and did.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub booted: SnapshotRef,
    pub default: SnapshotRef,
    pub decision: Decision,
    /// Nothing was changed.
    pub dry_run: bool,
    /// Things worth telling that did not stop the run (a state file this
    /// version cannot interpret, left as it is; no lock).
    pub notes: Vec<String>,
}

impl CheckReport {
    /// The explanation for people, one statement per line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.dry_run {
            out.push_str("dry run: nothing was changed\n");
        }
        out.push_str(&format!(
            "booted {} (ID {}), default {} (ID {})\n",
            self.booted.path, self.booted.id, self.default.path, self.default.id
        ));
        for line in self.decision.explanation.iter().chain(&self.notes) {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Run the engine for one phase: read, decide, act (unless `dry_run`).
pub fn run_check(
    env: &dyn BootEnv,
    snapshots: &dyn Snapshots,
    actions: &dyn Actions,
    history: &History,
    state_file: &StateFile,
    opts: &CheckOptions,
) -> Result<CheckReport> {
    // One lock around reading, deciding and acting: a second check (the
    // deadline, an admin) waits, then decides from what this one wrote.
    // A lock that cannot be made at all (a broken /run) does not keep a
    // failed trial booted: the check goes on without it and says so.
    let mut notes = Vec::new();
    let _lock = match opts.dry_run {
        true => None,
        false => match state_file.lock() {
            Ok(l) => Some(l),
            Err(e) if e.is::<LockHeld>() => return Err(e).code(Code::Runtime),
            Err(e) => {
                notes.push(format!("warning: {e:#}; deciding without the lock"));
                None
            }
        },
    };
    let state = match env.load() {
        Ok(state) => state,
        Err(e) => {
            let e = e.context("reading the boot environment");
            if !opts.dry_run {
                if let Err(h) = record_unjudged(history, snapshots, opts, &e) {
                    return Err(with_problems(e, &[h])).code(Code::BootEnv);
                }
            }
            return Err(e).code(Code::BootEnv);
        }
    };
    let booted = snapshots
        .booted()
        .context("finding the booted snapshot")
        .code(Code::Snapshot)?;
    let default = snapshots
        .default_subvolume()
        .context("finding the default subvolume")
        .code(Code::Snapshot)?;
    let good_exists = match &state.good {
        Some(g) => snapshots
            .lookup(&g.path)
            .with_context(|| format!("looking up the known-good snapshot {}", g.path))
            .code(Code::Snapshot)?
            .is_some_and(|found| found.id == g.id),
        None => false,
    };

    // The state file: what the early phase of this boot decided. When it
    // cannot be trusted (not interpretable by this version, unreadable),
    // the early result is unknown, a late pass promotes nothing, and the
    // file is left as it is.
    let mut saved = match state_file.load() {
        Ok(l) => match l.unusable {
            None => Some(l.value),
            Some(u) => {
                notes.push(format!("warning: {u}; the early phase's result is unknown"));
                None
            }
        },
        Err(e) => {
            notes.push(format!(
                "warning: {e:#}; the early phase's result is unknown and the state file is left alone"
            ));
            None
        }
    };
    let early = match (&saved, opts.report.phase) {
        (_, Phase::Early) => EarlyPhase::NotRun,
        (None, Phase::Late) => EarlyPhase::Unknown,
        (Some(s), Phase::Late) => match s.early_verdict(opts.boot_id) {
            None => EarlyPhase::NotRun,
            Some(Verdict::Pass) => EarlyPhase::Passed,
            Some(Verdict::Fail) => EarlyPhase::Failed,
        },
    };

    let decision = decide(&Inputs {
        state: &state,
        booted: &booted,
        default: &default,
        good_exists,
        report: opts.report,
        early,
        config: opts.config,
    });
    let mut report = CheckReport {
        booted,
        default,
        decision,
        dry_run: opts.dry_run,
        notes,
    };
    if opts.dry_run {
        return Ok(report);
    }

    let mut problems: Vec<anyhow::Error> = Vec::new();
    // 0. This phase's verdict for this boot, so that a later phase of the
    //    same boot knows it even if a step below fails.
    if let Some(s) = saved.as_mut() {
        let verdict = if report.decision.verdict == BootVerdict::Pass {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        s.record_phase(opts.boot_id, opts.report, verdict, &report.booted, opts.now);
        if let Err(e) = state_file.save(s) {
            problems.push(e.context(format!(
                "saving the state in {}",
                state_file.path().display()
            )));
        }
    }
    let recorded = saved.clone();
    // 1. Default subvolume.
    if let Some(to) = &report.decision.set_default {
        if let Err(e) = snapshots.set_default(to.id) {
            let e = e.context(format!(
                "making {} (ID {}) the default subvolume",
                to.path, to.id
            ));
            return Err(with_problems(e, &problems)).code(Code::Snapshot);
        }
    }
    // 2. Boot environment. A failed write (a full ESP) does not silence
    //    the records and alerts below; see `env_write_failed`.
    let changes = report.decision.state.diff(&state);
    let mut env_failed = None;
    if !changes.is_empty() {
        match env.store(&changes) {
            Ok(()) => {
                if let Some(s) = saved.as_mut() {
                    s.boot_env_failure = None;
                }
            }
            Err(e) => {
                let e = e.context("writing the boot environment");
                let text = format!("{e:#}");
                env_write_failed(&mut report, &state, &text);
                if let Some(s) = saved.as_mut() {
                    s.boot_env_failure = Some(EnvFailure {
                        time: opts.now,
                        error: text,
                        during: report.decision.explanation.join("; "),
                        extra: Default::default(),
                    });
                }
                env_failed = Some(e);
            }
        }
    }
    log_decision(&report, opts.report.phase);
    let d = &report.decision;

    // 3. Degraded mode: the plugins' stop actions, then the configured
    //    units, recorded in the degraded event of the history.
    let mut events = d.events.clone();
    if let Action::EnterDegraded { .. } = &d.action {
        let done = actions.enter_degraded(opts.stop_actions, opts.stop_units);
        problems.extend(done.problems());
        for r in &done.stop_actions {
            report.notes.push(match (r.result.is_failure(), &r.reason) {
                (false, _) => format!("degraded mode: stop action of {} done", r.name),
                (true, why) => format!(
                    "degraded mode: stop action of {} failed: {}",
                    r.name,
                    why.as_deref().unwrap_or("failed")
                ),
            });
        }
        if let Some(ev) = events.iter_mut().find(|e| e.kind == EventKind::Degraded) {
            ev.probes = done.stop_actions;
        }
    }
    //    History and state.
    if let Err(e) = history.append(&events, opts.now, Some(opts.boot_id)) {
        problems.push(e.context(format!(
            "recording the history in {}",
            history.path().display()
        )));
    }
    if let Some(s) = saved.as_mut() {
        if let Action::EnterDegraded { reason } = &d.action {
            let since = s.degraded.as_ref().map_or(opts.now, |g| g.since);
            s.degraded = Some(Degraded {
                since,
                reason: reason.clone(),
                snapshot: report.booted.clone(),
                extra: Default::default(),
            });
        } else if d.clears_degraded {
            s.degraded = None;
        }
        if Some(&*s) != recorded.as_ref() {
            if let Err(e) = state_file.save(s) {
                problems.push(e.context(format!(
                    "saving the degraded flag and the boot environment's state in {}",
                    state_file.path().display()
                )));
            }
        }
    }
    // 4. Alerts.
    for alert in alerts(&report, opts.report) {
        if let Err(e) = actions.alert(&alert) {
            problems.push(e.context(format!("sending the {:?} alert", alert.kind)));
        }
    }
    // A promotion is news, not an alarm: a signal for listeners only.
    if let Action::Promote { snapshot } = &d.action {
        let summary = format!(
            "{} passed its health checks and is now known-good",
            snapshot.path
        );
        if let Err(e) = actions.notify_promoted(&summary, &details(&report, opts.report)) {
            problems.push(e.context(format!("announcing the promotion of {}", snapshot.path)));
        }
    }
    // 5. Reboot.
    if d.wants_reboot() {
        let why = d.explanation.last().cloned().unwrap_or_default();
        if let Err(e) = actions.reboot(&why) {
            problems.push(e.context("asking systemd to reboot"));
        }
    }

    if let Some(e) = env_failed {
        return Err(with_problems(e, &problems)).code(Code::BootEnv);
    }
    if problems.is_empty() {
        return Ok(report);
    }
    let list: Vec<String> = problems.iter().map(|e| format!("{e:#}")).collect();
    Err(anyhow!(
        "the decision was carried out ({}), but {} step(s) failed: {}",
        report.decision.explanation.join("; "),
        list.len(),
        list.join("; ")
    ))
}

/// The boot environment could not be written (a full or read-only ESP):
/// the decision stands where it does not depend on that write, and says
/// so. A rollback still reboots: the default already names the known-good,
/// and GRUB's own count of the trial's attempts (kept in place, needing no
/// free space) bounds how often the trial is booted again. A retry reboot
/// of a failing known-good is not made, since its count could not be
/// saved: the system enters degraded mode instead. Every event but the
/// verdict is marked as not in the boot environment.
fn env_write_failed(report: &mut CheckReport, before: &BootState, error: &str) {
    let booted = report.booted.clone();
    let d = &mut report.decision;
    if let Action::RetryReboot { .. } = d.action {
        let reason = format!(
            "known-good {} (ID {}) failed and the boot environment cannot be written ({error}), so a retry reboot could not be counted; not rebooting",
            booted.path, booted.id
        );
        d.events.retain(|e| e.kind != EventKind::RetryReboot);
        let mut e = NewEvent::new(EventKind::Degraded, Some(booted), reason.clone());
        e.phase = d.events.first().and_then(|v| v.phase);
        d.events.push(e);
        d.explanation
            .push(format!("entering degraded mode instead: {reason}"));
        d.action = Action::EnterDegraded { reason };
        return;
    }
    for e in d.events.iter_mut().filter(|e| e.kind != EventKind::Verdict) {
        e.reason.push_str(&format!(
            " (the boot environment could not be written: {error})"
        ));
    }
    let mut say = format!("the boot environment could not be written: {error}");
    if let (Action::RollBack { .. }, Some(t)) = (&d.action, &before.trial) {
        say.push_str(&format!(
            "; {} stays armed there, and GRUB's remaining {} attempt(s) bound how often it is booted again",
            t.path, before.tries
        ));
    }
    d.explanation.push(say);
}

/// A critical step's error, with the earlier failures that did not stop the
/// run.
fn with_problems(e: anyhow::Error, problems: &[anyhow::Error]) -> anyhow::Error {
    if problems.is_empty() {
        return e;
    }
    let list: Vec<String> = problems.iter().map(|p| format!("{p:#}")).collect();
    anyhow!("{e:#} (and before that: {})", list.join("; "))
}

/// The full record of a decision, as alerts and notices carry it.
fn details(report: &CheckReport, phase: &PhaseReport) -> serde_json::Value {
    let d = &report.decision;
    json!({
        "booted": report.booted,
        "default": report.default,
        "phase": phase.phase,
        "verdict": d.verdict,
        "action": d.action,
        "fallback": d.fallback,
        "probes": phase.probes,
        "explanation": d.explanation,
    })
}

fn alerts(report: &CheckReport, phase: &PhaseReport) -> Vec<Alert> {
    let d = &report.decision;
    let details = details(report, phase);
    // `snapshot`: the snapshot the alert is about (the journal's SNAPSHOT
    // field): the trial GRUB gave up on, the trial rolled back, the
    // snapshot that entered degraded mode.
    let about = |path: &str| {
        let mut d = details.clone();
        d["snapshot"] = json!(path);
        d
    };
    let mut out = Vec::new();
    if let Some(f) = &d.fallback {
        out.push(Alert {
            kind: AlertKind::GrubFallback,
            summary: format!(
                "trial {} never reached a verdict; the boot loader booted the known-good snapshot",
                f.trial
            ),
            details: about(&f.trial),
        });
    }
    match &d.action {
        Action::RollBack { from, to } => out.push(Alert {
            kind: AlertKind::Rollback,
            summary: format!(
                "{} failed its health checks; rolled back to {} and rebooting",
                from.path, to.path
            ),
            details: about(&from.path),
        }),
        Action::EnterDegraded { reason } => out.push(Alert {
            kind: AlertKind::Degraded,
            summary: format!("degraded mode: {reason}; run `health-checker status` for details"),
            details: about(&report.booted.path),
        }),
        _ => {}
    }
    out
}

/// The journal entries of a decision: the verdict of every phase, and the
/// promotion. Rollbacks, GRUB fall-backs and degraded mode are alerts: the
/// alert's journal channel logs them, once.
fn log_decision(report: &CheckReport, phase: Phase) {
    let d = &report.decision;
    let snapshot = report.booted.path.as_str();
    let verdict = match d.verdict {
        BootVerdict::Pass => "pass",
        BootVerdict::Fail => "fail",
        BootVerdict::Unconfirmed => "unconfirmed",
    };
    let text = d.explanation.join("; ");
    macro_rules! verdict_entry {
        ($level:ident) => {
            tracing::$level!(
                MESSAGE_ID = message_id::VERDICT,
                SNAPSHOT = snapshot,
                PHASE = phase.as_str(),
                VERDICT = verdict,
                "{text}"
            )
        };
    }
    if d.verdict == BootVerdict::Pass {
        verdict_entry!(info);
    } else {
        verdict_entry!(warn);
    }
    if let Action::Promote { snapshot } = &d.action {
        tracing::info!(
            MESSAGE_ID = message_id::PROMOTED,
            SNAPSHOT = snapshot.path.as_str(),
            PHASE = phase.as_str(),
            VERDICT = verdict,
            "{} passed its health checks and is now known-good",
            snapshot.path
        );
    }
}

/// A verdict whose boot could not be judged, because the boot environment
/// (what the decision needs) could not be read: the probes' results still
/// go into the history, with the cause, and nothing else is changed. The
/// event carries no verdict, so a pass is never recorded for it.
fn record_unjudged(
    history: &History,
    snapshots: &dyn Snapshots,
    opts: &CheckOptions,
    why: &anyhow::Error,
) -> Result<()> {
    let phase = opts.report.phase;
    let mut ev = NewEvent::new(
        EventKind::Verdict,
        snapshots.booted().ok(),
        format!(
            "{phase} phase: probes {}; nothing was decided or changed: {why:#}",
            match opts.report.verdict {
                Verdict::Pass => "passed",
                Verdict::Fail => "failed",
            }
        ),
    );
    // No verdict: the boot was not judged, whatever the probes said.
    ev.phase = Some(phase);
    ev.probes = opts.report.probes.clone();
    history
        .append(&[ev], opts.now, Some(opts.boot_id))
        .map(|_| ())
        .with_context(|| format!("recording the history in {}", history.path().display()))
}
