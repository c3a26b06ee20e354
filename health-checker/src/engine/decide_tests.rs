//! Every row of the verdict table in `docs/design.md`, and the cases around it, as unit
//! tests of the pure state machine.

use super::bootstate::BootState;
use super::decide::*;
use crate::history::EventKind;
use crate::snapshots::SnapshotRef;
use crate::verdict::{Outcome, Phase, PhaseReport, ProbeResult, Severity, Verdict};

fn snap(n: u64) -> SnapshotRef {
    SnapshotRef {
        id: 255 + n,
        path: format!("@/.snapshots/{n}/snapshot"),
    }
}

fn g() -> SnapshotRef {
    snap(1)
}
fn t() -> SnapshotRef {
    snap(2)
}
fn other() -> SnapshotRef {
    snap(3)
}

fn probe(name: &str, severity: Severity, result: Outcome) -> ProbeResult {
    ProbeResult {
        cost: Default::default(),
        name: name.into(),
        severity,
        result,
        duration_ms: 5,
        reason: (result != Outcome::Pass).then(|| format!("{name} said no")),
        output: String::new(),
    }
}

fn report(phase: Phase, pass: bool) -> PhaseReport {
    let result = if pass { Outcome::Pass } else { Outcome::Fail };
    PhaseReport::new(
        phase,
        vec![
            probe("sshd-active", Severity::Required, result),
            probe("disk-free", Severity::Wanted, Outcome::Pass),
        ],
    )
}

/// G known-good, T armed with `tries` left.
fn armed(tries: u8) -> BootState {
    BootState {
        good: Some(g()),
        trial: Some(t()),
        tries,
        ..BootState::default()
    }
}

fn good_only() -> BootState {
    BootState {
        good: Some(g()),
        ..BootState::default()
    }
}

struct Case {
    state: BootState,
    booted: SnapshotRef,
    default: SnapshotRef,
    good_exists: bool,
    report: PhaseReport,
    early: EarlyPhase,
    config: EngineConfig,
}

impl Case {
    fn new(state: BootState, booted: SnapshotRef, default: SnapshotRef) -> Self {
        Case {
            state,
            booted,
            default,
            good_exists: true,
            report: report(Phase::Late, true),
            early: EarlyPhase::Passed,
            config: EngineConfig::default(),
        }
    }
    fn late(mut self, pass: bool) -> Self {
        self.report = report(Phase::Late, pass);
        self
    }
    fn early(mut self, pass: bool) -> Self {
        self.report = report(Phase::Early, pass);
        self.early = EarlyPhase::NotRun;
        self
    }
    fn decide(&self) -> Decision {
        decide(&Inputs {
            state: &self.state,
            booted: &self.booted,
            default: &self.default,
            good_exists: self.good_exists,
            report: &self.report,
            early: self.early,
            config: &self.config,
        })
    }
}

fn kinds(d: &Decision) -> Vec<EventKind> {
    d.events.iter().map(|e| e.kind).collect()
}

fn verdict_event(d: &Decision) -> Verdict {
    let e = &d.events[0];
    assert_eq!(e.kind, EventKind::Verdict, "the verdict is recorded first");
    e.verdict.unwrap()
}

// ---- Row: the trial T, pass ----

#[test]
fn row_trial_pass_promotes() {
    let d = Case::new(armed(2), t(), t()).late(true).decide();
    assert_eq!(d.role, Role::Trial { armed: true });
    assert_eq!(d.action, Action::Promote { snapshot: t() });
    assert_eq!(d.state.good, Some(t()));
    assert_eq!((d.state.trial.clone(), d.state.tries), (None, 0));
    assert_eq!(d.set_default, None, "the default already is T");
    assert_eq!(kinds(&d), [EventKind::Verdict, EventKind::Promotion]);
    assert_eq!(verdict_event(&d), Verdict::Pass);
    assert!(d.clears_degraded);
    assert!(!d.wants_reboot());
}

#[test]
fn promotion_points_the_default_at_the_trial_when_it_still_names_g() {
    // Armed with `health-checker arm` without touching the default.
    let d = Case::new(armed(2), t(), g()).late(true).decide();
    assert_eq!(d.action, Action::Promote { snapshot: t() });
    assert_eq!(d.set_default, Some(t()));
}

#[test]
fn promotion_leaves_a_newer_staged_default_alone() {
    let d = Case::new(armed(2), t(), other()).late(true).decide();
    assert_eq!(d.action, Action::Promote { snapshot: t() });
    assert_eq!(d.set_default, None);
}

// ---- Row: the trial T, fail ----

#[test]
fn row_trial_fail_rolls_back_to_g() {
    let d = Case::new(armed(2), t(), t()).late(false).decide();
    assert_eq!(d.action, Action::RollBack { from: t(), to: g() });
    assert_eq!(d.set_default, Some(g()));
    assert_eq!(d.state.trial, None);
    assert_eq!(d.state.good, Some(g()));
    assert!(d.wants_reboot());
    assert_eq!(kinds(&d), [EventKind::Verdict, EventKind::Rollback]);
    assert_eq!(verdict_event(&d), Verdict::Fail);
    assert!(
        d.events[1].reason.contains("sshd-active"),
        "the reasons are recorded: {}",
        d.events[1].reason
    );
    assert_eq!(d.events[0].probes.len(), 2, "probe results are recorded");
}

#[test]
fn a_trial_failing_early_is_rolled_back_at_once() {
    let d = Case::new(armed(2), t(), t()).early(false).decide();
    assert!(matches!(d.action, Action::RollBack { .. }));
    assert_eq!(d.set_default, Some(g()));
}

#[test]
fn an_early_pass_does_not_promote() {
    let c = Case::new(armed(2), t(), t()).early(true);
    let d = c.decide();
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.state, c.state);
    assert_eq!(d.set_default, None);
    assert_eq!(verdict_event(&d), Verdict::Pass);
}

// ---- Row: G, and GRUB left its fall-back mark ----

fn fell_back() -> BootState {
    BootState {
        fallback: Some(t().path),
        ..armed(0)
    }
}

#[test]
fn row_fallback_then_g_passes() {
    let d = Case::new(fell_back(), g(), t()).late(true).decide();
    assert_eq!(d.fallback, Some(Fallback { trial: t().path }));
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.set_default, Some(g()), "G is the default again");
    assert_eq!(d.state, good_only(), "trial, counter and mark cleared");
    assert_eq!(kinds(&d), [EventKind::Verdict, EventKind::GrubFallback]);
    assert_eq!(d.events[1].snapshot, Some(t()));
}

#[test]
fn row_fallback_and_g_fails_both_happen() {
    let d = Case::new(fell_back(), g(), t()).late(false).decide();
    assert!(d.fallback.is_some());
    assert_eq!(
        d.action,
        Action::RetryReboot {
            attempt: 1,
            budget: 1
        }
    );
    assert_eq!(d.set_default, Some(g()));
    assert_eq!(d.state.trial, None);
    assert_eq!(d.state.good_fails, 1);
    assert_eq!(
        kinds(&d),
        [
            EventKind::Verdict,
            EventKind::GrubFallback,
            EventKind::RetryReboot
        ]
    );
}

#[test]
fn row_fallback_and_g_fails_with_budget_spent_degrades() {
    let s = BootState {
        good_fails: 1,
        ..fell_back()
    };
    let d = Case::new(s, g(), t()).early(false).decide();
    assert!(d.fallback.is_some());
    assert!(matches!(d.action, Action::EnterDegraded { .. }));
    assert!(!d.wants_reboot());
}

#[test]
fn a_trial_with_no_attempts_left_while_g_boots_counts_as_a_fallback() {
    // A GRUB that could not save its mark.
    let d = Case::new(armed(0), g(), t()).late(true).decide();
    assert_eq!(d.fallback, Some(Fallback { trial: t().path }));
    assert_eq!(d.state.trial, None);
    assert_eq!(d.set_default, Some(g()));
}

#[test]
fn a_stale_mark_for_another_trial_is_recorded_and_the_current_trial_judged() {
    let s = BootState {
        fallback: Some(other().path),
        ..armed(1)
    };
    let d = Case::new(s, t(), t()).late(true).decide();
    assert_eq!(
        d.fallback,
        Some(Fallback {
            trial: other().path
        })
    );
    assert_eq!(d.action, Action::Promote { snapshot: t() });
    assert_eq!(d.state.fallback, None);
}

// ---- Row: G, pass ----

#[test]
fn row_g_pass_changes_nothing_and_clears_the_streak() {
    let s = BootState {
        good_fails: 1,
        ..good_only()
    };
    let d = Case::new(s, g(), g()).late(true).decide();
    assert_eq!(d.role, Role::Good);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.state, good_only());
    assert_eq!(d.set_default, None);
    assert!(d.clears_degraded);
    assert_eq!(kinds(&d), [EventKind::Verdict]);
}

#[test]
fn g_passing_early_changes_nothing_yet() {
    let s = BootState {
        good_fails: 1,
        ..good_only()
    };
    let d = Case::new(s.clone(), g(), g()).early(true).decide();
    assert_eq!(d.state, s, "the streak is cleared only by a full pass");
    assert!(!d.clears_degraded);
}

// ---- Row: G, fail ----

#[test]
fn row_g_fail_reboots_within_the_budget_then_degrades() {
    let mut c = Case::new(good_only(), g(), g()).late(false);
    c.config.good_failure_reboots = 2;
    for attempt in 1..=2 {
        let d = c.decide();
        assert_eq!(d.action, Action::RetryReboot { attempt, budget: 2 });
        assert_eq!(d.set_default, None, "a known-good is never rolled back");
        c.state = d.state;
    }
    let d = c.decide();
    assert!(
        matches!(d.action, Action::EnterDegraded { .. }),
        "{:?}",
        d.action
    );
    assert!(!d.wants_reboot());
    assert_eq!(d.set_default, None);
    assert_eq!(d.state, c.state);
    assert_eq!(kinds(&d), [EventKind::Verdict, EventKind::Degraded]);
}

#[test]
fn a_zero_budget_degrades_at_the_first_failure() {
    let mut c = Case::new(good_only(), g(), g()).early(false);
    c.config.good_failure_reboots = 0;
    assert!(matches!(c.decide().action, Action::EnterDegraded { .. }));
}

// ---- Rows: no G yet ----

#[test]
fn row_first_boot_pass_becomes_known_good() {
    let d = Case::new(BootState::default(), g(), g())
        .late(true)
        .decide();
    assert_eq!(d.role, Role::NoGood);
    assert_eq!(d.action, Action::Promote { snapshot: g() });
    assert_eq!(d.state, good_only());
    // ... but only in the late phase.
    let d = Case::new(BootState::default(), g(), g())
        .early(true)
        .decide();
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.state, BootState::default());
}

#[test]
fn row_first_boot_fail_degrades() {
    for c in [
        Case::new(BootState::default(), g(), g()).late(false),
        Case::new(BootState::default(), g(), g()).early(false),
    ] {
        let d = c.decide();
        assert!(matches!(d.action, Action::EnterDegraded { .. }));
        assert_eq!(d.set_default, None);
        assert!(!d.wants_reboot());
    }
}

#[test]
fn a_trial_without_any_g_that_fails_degrades() {
    let s = BootState {
        trial: Some(t()),
        tries: 2,
        ..BootState::default()
    };
    let d = Case::new(s, t(), t()).late(false).decide();
    assert!(matches!(d.action, Action::EnterDegraded { .. }));
    assert_eq!(d.set_default, None);
}

// ---- Row: a snapshot chosen by hand in the GRUB menu ----

#[test]
fn row_manual_boot_is_only_reported() {
    for pass in [true, false] {
        for c in [
            Case::new(armed(2), other(), t()).late(pass),
            Case::new(armed(2), other(), t()).early(pass),
            Case::new(good_only(), other(), g()).late(pass),
        ] {
            let d = c.decide();
            assert_eq!(d.role, Role::Manual);
            assert_eq!(d.action, Action::Nothing);
            assert_eq!(d.state, c.state);
            assert_eq!(d.set_default, None);
            assert_eq!(kinds(&d), [EventKind::Verdict]);
        }
    }
}

#[test]
fn a_manual_boot_leaves_even_a_fallback_mark_alone() {
    let c = Case::new(fell_back(), other(), t()).late(false);
    let d = c.decide();
    assert_eq!(d.fallback, None);
    assert_eq!(d.state, c.state);
}

#[test]
fn manual_boot_is_acted_on_when_configured() {
    let mut c = Case::new(good_only(), other(), g()).late(false);
    c.config.act_on_manual_boot = true;
    assert_eq!(
        c.decide().action,
        Action::RollBack {
            from: other(),
            to: g()
        }
    );
    let c = c.late(true);
    assert_eq!(c.decide().action, Action::Promote { snapshot: other() });
}

// ---- A default that differs from G and was never armed ----

#[test]
fn an_unarmed_default_that_boots_is_armed_and_judged_as_a_trial() {
    let c = Case::new(good_only(), other(), other()).early(true);
    let d = c.decide();
    assert_eq!(d.role, Role::Trial { armed: false });
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(d.state.trial, Some(other()));
    assert_eq!(d.state.tries, 2, "this boot spent one of the 3 attempts");
    assert_eq!(kinds(&d), [EventKind::Verdict, EventKind::Arm]);

    let d = Case::new(good_only(), other(), other())
        .late(false)
        .decide();
    assert_eq!(
        d.action,
        Action::RollBack {
            from: other(),
            to: g()
        }
    );
    assert_eq!(d.set_default, Some(g()));

    let d = Case::new(good_only(), other(), other()).late(true).decide();
    assert_eq!(d.action, Action::Promote { snapshot: other() });
}

#[test]
fn g_booted_with_an_unarmed_default_arms_it_for_the_next_boot() {
    let d = Case::new(good_only(), g(), other()).early(true).decide();
    assert_eq!(d.role, Role::Good);
    assert_eq!(d.state.trial, Some(other()));
    assert_eq!(d.state.tries, 3);
    assert_eq!(d.set_default, None);
    assert_eq!(d.action, Action::Nothing);
}

#[test]
fn the_top_level_subvolume_is_never_armed() {
    let top = SnapshotRef {
        id: 5,
        path: String::new(),
    };
    // G booted, the default is the top level (a layout common outside
    // snapper): nothing is armed, and the explanation says why this system
    // is not protected.
    for phase_pass in [
        Case::new(good_only(), g(), top.clone()).early(true),
        Case::new(good_only(), g(), top.clone()).late(true),
    ] {
        let d = phase_pass.decide();
        assert_eq!(d.role, Role::Good);
        assert_eq!(d.state.trial, None);
        assert!(!kinds(&d).contains(&EventKind::Arm), "{:?}", kinds(&d));
        let text = d.explanation.join("\n");
        assert!(
            text.contains("top level") && text.contains("not protected"),
            "{text}"
        );
    }
    // The top level booted as the default: not an unarmed trial either.
    let d = Case::new(good_only(), top.clone(), top.clone())
        .early(true)
        .decide();
    assert_ne!(d.role, Role::Trial { armed: false });
    assert_eq!(d.state.trial, None);
    assert!(!kinds(&d).contains(&EventKind::Arm), "{:?}", kinds(&d));
    assert!(
        d.explanation.join("\n").contains("not protected"),
        "{:?}",
        d.explanation
    );
}

// ---- G deleted ----

#[test]
fn a_deleted_g_is_never_rolled_back_to() {
    let mut c = Case::new(armed(2), t(), t()).late(false);
    c.good_exists = false;
    let d = c.decide();
    assert!(
        matches!(d.action, Action::EnterDegraded { ref reason } if reason.contains("no longer exists"))
    );
    assert_eq!(d.set_default, None);
    assert_eq!(d.state.good, Some(g()), "hc_good is kept, not erased");

    // A fall-back to a deleted G does not make it the default either.
    let mut c = Case::new(fell_back(), other(), t()).late(false);
    c.good_exists = false;
    let d = c.decide();
    assert!(d.fallback.is_some());
    assert_eq!(d.set_default, None);
    assert!(matches!(d.action, Action::EnterDegraded { .. }));
}

#[test]
fn with_g_deleted_a_passing_boot_becomes_known_good() {
    let mut c = Case::new(good_only(), other(), other()).late(true);
    c.good_exists = false;
    let d = c.decide();
    assert_eq!(d.role, Role::NoGood);
    assert_eq!(d.action, Action::Promote { snapshot: other() });
}

// ---- Phases of one boot ----

#[test]
fn late_pass_after_an_early_failure_is_not_a_pass() {
    // G failed early (a retry was asked for); the late phase still ran.
    let mut c = Case::new(
        BootState {
            good_fails: 1,
            ..good_only()
        },
        g(),
        g(),
    )
    .late(true);
    c.early = EarlyPhase::Failed;
    let d = c.decide();
    assert_eq!(d.verdict, BootVerdict::Fail);
    assert_eq!(verdict_event(&d), Verdict::Fail);
    assert_eq!(d.action, Action::Nothing, "the early decision stands");
    assert_eq!(d.state, c.state, "the failure is not counted twice");
    assert!(!d.clears_degraded);

    // A trial that is still the trial: its rollback is repeated.
    let mut c = Case::new(armed(1), t(), t()).late(true);
    c.early = EarlyPhase::Failed;
    assert!(matches!(c.decide().action, Action::RollBack { .. }));
}

#[test]
fn late_pass_with_an_unknown_early_result_does_not_promote() {
    let mut c = Case::new(armed(1), t(), t()).late(true);
    c.early = EarlyPhase::Unknown;
    let d = c.decide();
    assert_eq!(d.verdict, BootVerdict::Unconfirmed);
    assert_eq!(d.action, Action::Nothing);
    assert_eq!(verdict_event(&d), Verdict::Fail);
}

// ---- Reports ----

#[test]
fn a_report_claiming_pass_with_a_failed_required_probe_fails() {
    for bad in [Outcome::Fail, Outcome::Timeout, Outcome::Error] {
        let mut c = Case::new(armed(2), t(), t());
        c.report = PhaseReport {
            phase: Phase::Late,
            verdict: Verdict::Pass,
            probes: vec![probe("x", Severity::Required, bad)],
        };
        let d = c.decide();
        assert_eq!(d.verdict, BootVerdict::Fail, "{bad:?}");
        assert!(matches!(d.action, Action::RollBack { .. }));
    }
}

#[test]
fn failed_wanted_probes_and_skips_do_not_fail_the_boot() {
    let mut c = Case::new(armed(2), t(), t());
    c.report = PhaseReport::new(
        Phase::Late,
        vec![
            probe("a", Severity::Wanted, Outcome::Timeout),
            probe("b", Severity::Required, Outcome::Skip),
        ],
    );
    assert_eq!(c.decide().action, Action::Promote { snapshot: t() });
}

#[test]
fn config_tries_are_held_to_what_grub_can_count() {
    let mut c = Case::new(good_only(), other(), other()).early(true);
    c.config.tries = 200;
    assert_eq!(c.decide().state.tries, 8);
    c.config.tries = 0;
    assert_eq!(c.decide().state.tries, 0);
}

#[test]
fn a_decision_serialises_for_json_output() {
    let d = Case::new(armed(2), t(), t()).late(false).decide();
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["action"]["action"], "roll-back");
    assert_eq!(v["action"]["to"]["id"], 256);
    assert_eq!(v["role"]["trial"]["armed"], true);
    assert_eq!(v["verdict"], "fail");
    assert_eq!(v["events"][1]["kind"], "rollback");
}

// ---- An unreadable configuration (a typo) ----

fn unreadable(mut c: Case) -> Case {
    c.config.unreadable = Some("/etc/health-checker/config.toml:3: unknown field `trys`".into());
    c.report = PhaseReport::new(
        c.report.phase,
        vec![probe("configuration", Severity::Required, Outcome::Error)],
    );
    c
}

#[test]
fn a_known_good_with_an_unreadable_configuration_degrades_at_once() {
    for phase_early in [false, true] {
        let c = Case::new(good_only(), g(), g());
        let c = unreadable(if phase_early {
            c.early(false)
        } else {
            c.late(false)
        });
        let d = c.decide();
        assert_eq!(d.role, Role::Good);
        match &d.action {
            Action::EnterDegraded { reason } => {
                assert!(reason.contains("unknown field `trys`"), "{reason}");
                assert!(reason.contains("a reboot cannot fix it"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!d.wants_reboot());
        assert_eq!(d.state.good_fails, 0, "no retry counted");
        assert_eq!(kinds(&d), [EventKind::Verdict, EventKind::Degraded]);
    }
}

#[test]
fn a_trial_with_an_unreadable_configuration_is_still_rolled_back() {
    let d = unreadable(Case::new(armed(2), t(), t()).late(false)).decide();
    assert_eq!(d.action, Action::RollBack { from: t(), to: g() });
    assert!(d.wants_reboot());
}

#[test]
fn a_readable_configuration_keeps_the_retry_reboot_of_a_failing_known_good() {
    let d = Case::new(good_only(), g(), g()).late(false).decide();
    assert!(
        matches!(d.action, Action::RetryReboot { .. }),
        "{:?}",
        d.action
    );
}
