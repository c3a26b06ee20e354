//! The steps a decision is built from: the working copy of the boot state,
//! and the transitions (promote, roll back, degrade, arm) that change it and
//! record why.

use super::bootstate::BootState;
use super::decide::{Action, Inputs};
use crate::history::{EventKind, NewEvent};
use crate::snapshots::SnapshotRef;
use crate::verdict::PhaseReport;

/// The failed required probes of a report, in words.
pub(super) fn failures(report: &PhaseReport) -> String {
    let list: Vec<String> = report
        .failed_required()
        .map(|p| {
            let result = format!("{:?}", p.result).to_lowercase();
            match &p.reason {
                Some(r) => format!("{} ({result}: {r})", p.name),
                None => format!("{} ({result})", p.name),
            }
        })
        .collect();
    if list.is_empty() {
        "the report says the phase failed".to_owned()
    } else {
        format!("required probes failed: {}", list.join(", "))
    }
}

/// A snapshot for messages: path and ID.
pub(super) fn show(s: &SnapshotRef) -> String {
    format!("{} (ID {})", s.path, s.id)
}

/// The working state of one decision.
pub(super) struct Work<'a> {
    pub(super) i: &'a Inputs<'a>,
    pub(super) st: BootState,
    pub(super) good: Option<SnapshotRef>,
    pub(super) default: SnapshotRef,
    pub(super) set_default: Option<SnapshotRef>,
    pub(super) events: Vec<NewEvent>,
    pub(super) expl: Vec<String>,
    pub(super) clears_degraded: bool,
}

impl Work<'_> {
    pub(super) fn say(&mut self, s: impl Into<String>) {
        self.expl.push(s.into());
    }

    pub(super) fn event(
        &mut self,
        kind: EventKind,
        snap: Option<&SnapshotRef>,
        reason: impl Into<String>,
    ) {
        let mut e = NewEvent::new(kind, snap.cloned(), reason);
        e.phase = Some(self.i.report.phase);
        self.events.push(e);
    }

    pub(super) fn point_default_at(&mut self, to: &SnapshotRef) {
        if &self.default != to {
            self.set_default = Some(to.clone());
            self.default = to.clone();
        }
    }

    pub(super) fn arm_booted(&mut self) {
        let b = self.i.booted.clone();
        self.st.trial = Some(b.clone());
        self.st.tries = self.i.config.tries().saturating_sub(1);
        let why = format!(
            "{} is the default subvolume but was never armed; armed as a trial with {} attempt(s) left after this boot",
            show(&b),
            self.st.tries
        );
        self.say(why.clone());
        self.event(EventKind::Arm, Some(&b), why);
    }

    pub(super) fn promote(&mut self) -> Action {
        let x = self.i.booted.clone();
        let old = self.i.state.good.clone();
        self.st.good = Some(x.clone());
        if self.st.trial.as_ref() == Some(&x) {
            self.st.trial = None;
            self.st.tries = 0;
        }
        self.st.good_fails = 0;
        // Keep the default in step, unless it names a newer staged update.
        if self.default != x && old.as_ref() == Some(&self.default) {
            self.point_default_at(&x);
        }
        self.clears_degraded = true;
        let why = match &old {
            Some(o) if o != &x => format!(
                "{} passed every required probe; it replaces {} as known-good",
                show(&x),
                show(o)
            ),
            _ => format!(
                "{} passed every required probe and is now known-good",
                show(&x)
            ),
        };
        self.say(why.clone());
        self.event(EventKind::Promotion, Some(&x), why);
        Action::Promote { snapshot: x }
    }

    pub(super) fn roll_back(&mut self, to: SnapshotRef, why_failed: &str) -> Action {
        let from = self.i.booted.clone();
        if self.st.trial.as_ref() == Some(&from) {
            self.st.trial = None;
            self.st.tries = 0;
        }
        self.point_default_at(&to);
        let why = format!(
            "{} failed ({why_failed}); rolling back to known-good {} and rebooting",
            show(&from),
            show(&to)
        );
        self.say(why.clone());
        self.event(EventKind::Rollback, Some(&from), why);
        Action::RollBack { from, to }
    }

    pub(super) fn degrade(&mut self, reason: String) -> Action {
        self.say(format!("entering degraded mode: {reason}"));
        self.event(EventKind::Degraded, Some(self.i.booted), reason.clone());
        Action::EnterDegraded { reason }
    }

    /// A failed trial (or a manual boot treated as one): back to G, or
    /// degraded mode when there is no usable G.
    pub(super) fn fail_trial(&mut self, why_failed: &str) -> Action {
        if let Some(g) = self.good.clone() {
            return self.roll_back(g, why_failed);
        }
        let b = self.i.booted.clone();
        if self.st.trial.as_ref() == Some(&b) {
            self.st.trial = None;
            self.st.tries = 0;
        }
        let reason = format!(
            "{} failed ({why_failed}) and there is no known-good snapshot to roll back to{}",
            show(&b),
            self.gone_note()
        );
        self.degrade(reason)
    }

    pub(super) fn gone_note(&self) -> String {
        match (&self.i.state.good, &self.good) {
            (Some(g), None) => format!(" ({} no longer exists)", show(g)),
            _ => String::new(),
        }
    }
}
