//! The boot attempt as a pure state machine: from the boot environment, the
//! booted and default snapshots and a phase's probe results to a decision.
//! No I/O happens here; [`super::run`] carries the decision out.
//!
//! Rules beyond the verdict table of `docs/design.md`, decided here:
//! - **Phases.** Only the late phase's pass promotes a trial (or a first
//!   snapshot): the boot has not fully passed before it. A failure in either
//!   phase acts at once. The late phase only counts as a pass when the early
//!   phase of the same boot passed or did not run; when the early phase
//!   failed, its decision stands and the late phase does not act again
//!   (except to repeat a rollback that evidently did not happen); when the
//!   early result is unknown, nothing is promoted.
//! - **Unarmed default.** With a usable known-good G and no trial, a booted
//!   snapshot that is the default but not G is a trial that was never armed:
//!   it is armed now (with one attempt spent on this boot) and judged as a
//!   trial. When G is booted and the default differs and was never armed, the
//!   default is armed so GRUB protects its first boot. The top-level
//!   subvolume (ID 5) is never armed: a system whose default is the top
//!   level is reported as not protected.
//! - **Manual boot.** A booted snapshot that is neither G nor the trial (nor
//!   an unarmed default) was picked in the GRUB menu: checked and reported
//!   only, unless `act_on_manual_boot`, in which case it is treated like a
//!   trial (promoted on a late pass, rolled back to G on a failure).
//! - **G deleted.** When `hc_good` names a snapshot the store no longer has
//!   (or has under another ID), G is not used: never rolled back to, and the
//!   boot is judged as if there were no G (a failure degrades). `hc_good` is
//!   not cleared, so a store that misreports for a moment loses nothing.
//! - **Unreadable configuration.** A known-good system whose configuration
//!   cannot be read (a typo) enters degraded mode at once: a reboot cannot
//!   fix a typo. A trial with an unreadable configuration is still rolled
//!   back (the typo may have come with the update).
//! - **GRUB fall-back.** The mark is handled in the same run as the judgement
//!   of the booted snapshot: recorded, the trial cleared, the default put
//!   back to G when it still names the abandoned trial. A trial left with no
//!   attempts while G is booted is treated the same way (a GRUB that could
//!   not save its mark).

use serde::Serialize;

use super::bootstate::{BootState, MAX_TRIES};
use super::work::{failures, show, Work};
use crate::history::{EventKind, NewEvent};
use crate::snapshots::SnapshotRef;
use crate::verdict::{Phase, PhaseReport, Verdict};

/// The configuration values the engine needs (`[boot]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Attempts GRUB gives a trial (1..=9).
    pub tries: u8,
    /// Reboots of a failing known-good before degraded mode.
    pub good_failure_reboots: u32,
    /// Act when an admin picked a snapshot by hand in the GRUB menu.
    pub act_on_manual_boot: bool,
    /// Why the configuration could not be read, when it could not (the
    /// phase then fails with the defaults in use).
    pub unreadable: Option<String>,
}

impl EngineConfig {
    /// The attempts to give a trial, held to what GRUB can count (1..=9).
    pub fn tries(&self) -> u8 {
        self.tries.clamp(1, MAX_TRIES)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            tries: 3,
            good_failure_reboots: 1,
            act_on_manual_boot: false,
            unreadable: None,
        }
    }
}

/// What the early phase of this boot concluded, as seen by the late phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EarlyPhase {
    /// No early verdict was recorded for this boot (the unit is not used).
    NotRun,
    /// The early phase passed.
    Passed,
    /// The early phase failed and was acted on.
    Failed,
    /// The record could not be read: a late pass is not trusted.
    Unknown,
}

/// Everything the decision depends on.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The boot environment as read.
    pub state: &'a BootState,
    /// The snapshot mounted at `/`.
    pub booted: &'a SnapshotRef,
    /// The btrfs default subvolume.
    pub default: &'a SnapshotRef,
    /// Whether `state.good` names a snapshot the store still has, with the
    /// same ID. Ignored when there is no known-good.
    pub good_exists: bool,
    /// The phase that ran and its probe results.
    pub report: &'a PhaseReport,
    /// The early phase of this boot; only read in the late phase.
    pub early: EarlyPhase,
    pub config: &'a EngineConfig,
}

/// What the booted snapshot is, for this decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The trial; `armed: false` for a default that was never armed.
    Trial { armed: bool },
    /// The known-good snapshot.
    Good,
    /// There is no usable known-good snapshot (first boot, or G deleted).
    NoGood,
    /// Picked by hand in the GRUB menu.
    Manual,
}

/// The boot's verdict so far (this phase and, in the late phase, the early
/// phase of the same boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootVerdict {
    Pass,
    Fail,
    /// This phase passed but the early phase's result is unknown.
    Unconfirmed,
}

/// GRUB gave up on a trial: it never reached a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fallback {
    /// The trial's path as GRUB recorded it.
    pub trial: String,
}

/// What to do about the booted snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Action {
    /// The snapshot becomes known-good.
    Promote { snapshot: SnapshotRef },
    /// Make `to` (the known-good) the default and reboot.
    RollBack { from: SnapshotRef, to: SnapshotRef },
    /// Reboot the failing known-good in case the fault is transient.
    RetryReboot { attempt: u32, budget: u32 },
    /// Stop the configured services, alert, and do not reboot.
    EnterDegraded { reason: String },
    /// No action (a pass of a known-good, an early pass, a manual boot...).
    Nothing,
}

/// The decision of one phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub role: Role,
    pub verdict: BootVerdict,
    /// Set when GRUB's fall-back mark was handled in this run.
    pub fallback: Option<Fallback>,
    pub action: Action,
    /// The boot environment to write (unchanged when nothing changes).
    #[serde(skip)]
    pub state: BootState,
    /// Make this snapshot the btrfs default subvolume.
    pub set_default: Option<SnapshotRef>,
    /// Events for the history, in order.
    pub events: Vec<NewEvent>,
    /// The system is healthy again: leave degraded mode.
    pub clears_degraded: bool,
    /// What was decided and why, one sentence per line.
    pub explanation: Vec<String>,
}

impl Decision {
    /// Whether the action asks for a reboot.
    pub fn wants_reboot(&self) -> bool {
        matches!(
            self.action,
            Action::RollBack { .. } | Action::RetryReboot { .. }
        )
    }
}

/// Whether a phase report passed: its verdict says so *and* no required
/// probe failed, timed out or errored (the two cannot disagree in a report
/// made by [`PhaseReport::new`], but the engine does not rely on it).
pub fn report_passed(report: &PhaseReport) -> bool {
    report.verdict == Verdict::Pass && report.failed_required().next().is_none()
}

fn classify(i: &Inputs, good: Option<&SnapshotRef>) -> Role {
    role(i.state, i.booted, i.default, good)
}

/// The role of the booted snapshot, given the boot environment, the
/// default subvolume and the usable known-good (`None` when there is none
/// or the store lacks it). The one rule: [`decide`] and what probes are
/// told (`HC_TRIAL`) both use it.
pub fn role(
    state: &BootState,
    booted: &SnapshotRef,
    default: &SnapshotRef,
    good: Option<&SnapshotRef>,
) -> Role {
    if state.trial.as_ref() == Some(booted) {
        Role::Trial { armed: true }
    } else if good == Some(booted) {
        Role::Good
    } else if good.is_none() {
        Role::NoGood
    } else if state.trial.is_none() && booted == default && !is_top_level(booted) {
        Role::Trial { armed: false }
    } else {
        Role::Manual
    }
}

/// The top-level subvolume (ID 5, path `""`): it holds the snapshots and is
/// never a snapshot to boot. GRUB's entries boot `rootflags=subvol=<path>`,
/// and an empty `hc_trial` means "no trial", so it can never be armed.
fn is_top_level(s: &SnapshotRef) -> bool {
    s.path.is_empty()
}

/// Why a system whose default (or booted) subvolume is the top level is not
/// protected.
fn top_level_unprotected(what: &str, s: &SnapshotRef) -> String {
    format!(
        "the {what} subvolume is the top level of the file system (ID {}), not a snapshot: \
         it is never armed as a trial, so GRUB cannot fall back from it and boots of it are \
         not protected; make a snapshot the default subvolume (as snapper's layout does) to be protected",
        s.id
    )
}

fn boot_verdict(i: &Inputs) -> BootVerdict {
    if !report_passed(i.report) {
        return BootVerdict::Fail;
    }
    match (i.report.phase, i.early) {
        (Phase::Early, _) | (Phase::Late, EarlyPhase::NotRun | EarlyPhase::Passed) => {
            BootVerdict::Pass
        }
        (Phase::Late, EarlyPhase::Failed) => BootVerdict::Fail,
        (Phase::Late, EarlyPhase::Unknown) => BootVerdict::Unconfirmed,
    }
}

/// Decide what one phase's results mean. Pure: the result says what to write
/// and do; nothing is written or done here.
pub fn decide(i: &Inputs) -> Decision {
    let good = i.state.good.clone().filter(|_| i.good_exists);
    let mut w = Work {
        i,
        st: i.state.clone(),
        good: good.clone(),
        default: i.default.clone(),
        set_default: None,
        events: Vec::new(),
        expl: Vec::new(),
        clears_degraded: false,
    };
    let phase = i.report.phase;
    let role = classify(i, good.as_ref());
    let verdict = boot_verdict(i);
    // The early phase failed this boot and that failure was acted on then.
    let already_acted = phase == Phase::Late && i.early == EarlyPhase::Failed;

    if let (Some(g), None) = (&i.state.good, &good) {
        w.say(format!(
            "known-good {} is not in the snapshot store: it is not used",
            show(g)
        ));
    }

    // The verdict itself, always recorded.
    let why = match verdict {
        BootVerdict::Pass => format!("{phase} phase passed"),
        BootVerdict::Fail if !report_passed(i.report) => {
            format!("{phase} phase failed: {}", failures(i.report))
        }
        BootVerdict::Fail => "late phase passed, but the early phase of this boot failed".into(),
        BootVerdict::Unconfirmed => {
            "late phase passed, but the early phase's result for this boot is unknown".into()
        }
    };
    w.say(format!("{}: {why}", show(i.booted)));
    let mut ev = NewEvent::new(EventKind::Verdict, Some(i.booted.clone()), why);
    ev.phase = Some(phase);
    ev.verdict = Some(if verdict == BootVerdict::Pass {
        Verdict::Pass
    } else {
        Verdict::Fail
    });
    ev.probes = i.report.probes.clone();
    w.events.push(ev);

    let acting = role != Role::Manual || i.config.act_on_manual_boot;

    // GRUB's fall-back mark (or a trial with no attempts left while something
    // else was booted): the trial never reached a verdict.
    let mut fallback = None;
    let gave_up = w.st.fallback.clone().or_else(|| match &w.st.trial {
        Some(t) if w.st.tries == 0 && role != (Role::Trial { armed: true }) => Some(t.path.clone()),
        _ => None,
    });
    if let (Some(path), true) = (gave_up, acting) {
        if role == (Role::Trial { armed: true }) && path == i.booted.path {
            // A stale mark for the trial being judged right now.
            w.st.fallback = None;
        } else {
            let trial = w.st.trial.clone().filter(|t| t.path == path);
            let why = format!(
                "trial {path} never reached a verdict (it died before userspace or hung); the boot loader booted the known-good snapshot instead"
            );
            w.say(why.clone());
            w.event(EventKind::GrubFallback, trial.as_ref(), why);
            w.st.fallback = None;
            if role != (Role::Trial { armed: true }) {
                w.st.trial = None;
                w.st.tries = 0;
            }
            if let Some(g) = good.clone() {
                if w.default.path == path {
                    w.point_default_at(&g);
                }
            }
            fallback = Some(Fallback { trial: path });
        }
    }

    // G booted while the default names something else that was never armed:
    // arm it, so GRUB protects its first boot.
    if is_top_level(i.booted) {
        w.say(top_level_unprotected("booted", i.booted));
    } else if is_top_level(&w.default) && Some(&w.default) != good.as_ref() {
        w.say(top_level_unprotected("default", &w.default));
    }
    if role == Role::Good
        && w.st.trial.is_none()
        && Some(&w.default) != good.as_ref()
        && !is_top_level(&w.default)
    {
        let d = w.default.clone();
        if fallback.as_ref().map(|f| &f.trial) != Some(&d.path) {
            w.st.trial = Some(d.clone());
            w.st.tries = i.config.tries();
            let why = format!(
                "the default subvolume {} differs from the known-good and was never armed; armed as a trial with {} attempt(s) for the next boot",
                show(&d),
                w.st.tries
            );
            w.say(why.clone());
            w.event(EventKind::Arm, Some(&d), why);
        }
    }

    let failed = failures(i.report);
    let action = match role {
        Role::Trial { armed } => match verdict {
            BootVerdict::Fail if already_acted && good.is_none() => {
                w.say("the early phase of this boot already failed and was acted on");
                Action::Nothing
            }
            // Still the trial after the early phase failed: its rollback did
            // not happen, so it is repeated.
            BootVerdict::Fail if already_acted => w.fail_trial("the early phase failed"),
            BootVerdict::Fail => w.fail_trial(&failed),
            BootVerdict::Pass if phase == Phase::Late => w.promote(),
            BootVerdict::Pass | BootVerdict::Unconfirmed => {
                if !armed {
                    w.arm_booted();
                }
                w.say(if verdict == BootVerdict::Pass {
                    "the trial is promoted only when the late phase passes".to_owned()
                } else {
                    "not promoted; GRUB's remaining attempts protect the trial".to_owned()
                });
                Action::Nothing
            }
        },
        Role::Good => match verdict {
            BootVerdict::Fail if already_acted => {
                w.say("the early phase of this boot already failed and was acted on");
                Action::Nothing
            }
            BootVerdict::Fail if i.config.unreadable.is_some() => {
                let why = i.config.unreadable.as_deref().unwrap_or_default();
                w.degrade(format!(
                    "the configuration of known-good {} cannot be read ({why}); a reboot cannot fix it: correct the file, then run `health-checker check --phase late`",
                    show(i.booted)
                ))
            }
            BootVerdict::Fail => {
                let budget = i.config.good_failure_reboots;
                if w.st.good_fails < budget {
                    w.st.good_fails += 1;
                    let why = format!(
                        "known-good {} failed ({failed}); rebooting in case the fault is transient (attempt {} of {budget})",
                        show(i.booted),
                        w.st.good_fails
                    );
                    w.say(why.clone());
                    w.event(EventKind::RetryReboot, Some(i.booted), why);
                    Action::RetryReboot {
                        attempt: w.st.good_fails,
                        budget,
                    }
                } else {
                    w.degrade(format!(
                        "known-good {} failed ({failed}) after {} reboot(s); a rollback cannot fix this (state in /var, hardware, network?)",
                        show(i.booted),
                        w.st.good_fails
                    ))
                }
            }
            BootVerdict::Pass if phase == Phase::Late => {
                if w.st.good_fails > 0 {
                    w.say("the known-good snapshot passed: failure streak cleared");
                    w.st.good_fails = 0;
                }
                w.clears_degraded = true;
                Action::Nothing
            }
            BootVerdict::Pass | BootVerdict::Unconfirmed => Action::Nothing,
        },
        Role::NoGood => match verdict {
            BootVerdict::Fail if already_acted => {
                w.say("the early phase of this boot already failed and was acted on");
                Action::Nothing
            }
            BootVerdict::Fail => {
                let reason = format!(
                    "{} failed ({failed}) and there is no known-good snapshot to roll back to{}",
                    show(i.booted),
                    w.gone_note()
                );
                w.degrade(reason)
            }
            BootVerdict::Pass if phase == Phase::Late => w.promote(),
            BootVerdict::Pass | BootVerdict::Unconfirmed => Action::Nothing,
        },
        Role::Manual if !i.config.act_on_manual_boot => {
            w.say(format!(
                "{} was chosen by hand (neither the known-good nor the trial): checked and reported only",
                show(i.booted)
            ));
            Action::Nothing
        }
        Role::Manual => match verdict {
            BootVerdict::Fail if already_acted => Action::Nothing,
            BootVerdict::Fail => w.fail_trial(&failed),
            BootVerdict::Pass if phase == Phase::Late => w.promote(),
            BootVerdict::Pass | BootVerdict::Unconfirmed => Action::Nothing,
        },
    };

    Decision {
        role,
        verdict,
        fallback,
        action,
        state: w.st,
        set_default: w.set_default,
        events: w.events,
        clears_degraded: w.clears_degraded,
        explanation: w.expl,
    }
}
