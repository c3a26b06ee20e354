//! The bounds of `docs/design.md` ("The verdict table") as properties over random sequences of boots: a
//! small simulator runs GRUB's choice (`grub_choose`), the early and late
//! phases with random probe results, panics before userspace and hangs until
//! the deadline, with random configurations and random updates, manual boots
//! and snapshot deletions between boots. After every decision it checks:
//!
//! 1. a failing system reboots a bounded number of times, then stops;
//!    (a panic before userspace is modelled for trials and for snapshots
//!    picked by hand; a snapshot GRUB boots with no trial to protect it, the
//!    known-good or the very first one, is assumed to reach userspace: if it
//!    panics on every boot no software can stop the loop);
//! 2. only a snapshot that passed on a real boot becomes known-good;
//! 3. a rollback (or any change of the default) only goes to a known-good
//!    snapshot (or to the one just promoted);
//! 4. a pass is never recorded while a required probe failed, timed out or
//!    could not run.
//!
//! The same simulation runs against both boot loader backends. With GRUB the
//! boot state is the pure model `grub_choose` acts on. With systemd-boot it
//! lives in real files (a temporary ESP, the state file, entries with boot
//! counters) written by the backend itself, and a model of systemd-boot
//! (`common::sdboot`) starts each boot from them; every boot checks that
//! systemd-boot boots what GRUB would, and leaves the state GRUB would.

mod common;

use std::collections::HashSet;

use health_checker::bootloader::names::{EntryName, Role};
use health_checker::bootloader::SdBootEnv;
use health_checker::engine::{
    arm, decide, grub_choose, Action, BootEnv, BootState, BootVerdict, Decision, EarlyPhase,
    EngineConfig, GrubChoice, GrubEntry, Inputs,
};
use health_checker::history::{EventKind, NewEvent};
use health_checker::snapshots::SnapshotRef;
use health_checker::snapshots::{SnapshotInfo, Snapshots};
use health_checker::verdict::{Outcome, Phase, PhaseReport, ProbeResult, Severity, Verdict};
use proptest::prelude::*;

/// Boots after which a chain that has not stopped rebooting is a failure of
/// bound 1 even before the arithmetic below.
const HARD_CAP: usize = 500;

#[derive(Debug, Clone)]
struct Probe(Severity, Outcome);

/// What one boot does.
#[derive(Debug, Clone)]
struct BootPlan {
    /// The kernel panics (or the initrd cannot mount root) before userspace
    /// (on a trial or a snapshot picked by hand; see the module comment).
    panic: bool,
    /// Something hangs: the deadline fails the late phase.
    hang: bool,
    early: Vec<Probe>,
    late: Vec<Probe>,
    /// The report's verdict field claims a pass whatever the probes say.
    lie: bool,
}

/// What happens between chains of boots.
#[derive(Debug, Clone)]
enum External {
    /// An update tool makes a new snapshot the default, arming it or not.
    Update { arm: bool },
    /// Someone reboots.
    Reboot,
    /// An admin picks a snapshot in the GRUB menu.
    Manual(usize),
    /// An old snapshot is deleted (never the default, the trial or `/`).
    Delete(usize),
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        8 => Just(Outcome::Pass),
        1 => Just(Outcome::Skip),
        1 => Just(Outcome::Fail),
        1 => Just(Outcome::Timeout),
        1 => Just(Outcome::Error),
    ]
}

fn probe() -> impl Strategy<Value = Probe> {
    (
        prop_oneof![3 => Just(Severity::Required), 1 => Just(Severity::Wanted)],
        outcome(),
    )
        .prop_map(|(s, o)| Probe(s, o))
}

fn boot_plan() -> impl Strategy<Value = BootPlan> {
    (
        prop::bool::weighted(0.12),
        prop::bool::weighted(0.08),
        prop::collection::vec(probe(), 1..4),
        prop::collection::vec(probe(), 1..4),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(panic, hang, early, late, lie)| BootPlan {
            panic,
            hang,
            early,
            late,
            lie,
        })
}

/// Every boot fails, one way or another.
fn failing_plan() -> impl Strategy<Value = BootPlan> {
    let bad = prop_oneof![
        Just(Outcome::Fail),
        Just(Outcome::Timeout),
        Just(Outcome::Error)
    ];
    (
        0..4u8,
        bad,
        prop::collection::vec(probe(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(mode, bad, mut others, lie)| {
            let failing = vec![Probe(Severity::Required, bad)];
            others.push(Probe(Severity::Wanted, Outcome::Pass));
            BootPlan {
                panic: mode == 0,
                hang: mode == 1,
                early: if mode == 2 {
                    failing.clone()
                } else {
                    others.clone()
                },
                // A panic plan that meets a snapshot that does not panic
                // (see the module comment) still fails, late.
                late: if mode == 3 || mode == 0 {
                    failing
                } else {
                    others
                },
                lie,
            }
        })
}

fn external() -> impl Strategy<Value = External> {
    prop_oneof![
        4 => any::<bool>().prop_map(|arm| External::Update { arm }),
        2 => Just(External::Reboot),
        1 => (0..16usize).prop_map(External::Manual),
        1 => (0..16usize).prop_map(External::Delete),
    ]
}

fn config() -> impl Strategy<Value = EngineConfig> {
    (1..=9u8, 0..=3u32, any::<bool>()).prop_map(|(tries, good_failure_reboots, act)| EngineConfig {
        tries,
        good_failure_reboots,
        act_on_manual_boot: act,
        unreadable: None,
    })
}

fn report(phase: Phase, probes: &[Probe], lie: bool) -> PhaseReport {
    let probes = probes
        .iter()
        .enumerate()
        .map(|(i, Probe(s, o))| ProbeResult {
            name: format!("{phase}-{i}"),
            severity: *s,
            result: *o,
            duration_ms: 1,
            reason: None,
            output: String::new(),
        })
        .collect();
    let mut r = PhaseReport::new(phase, probes);
    if lie {
        r.verdict = Verdict::Pass;
    }
    r
}

/// The ground truth: no required probe failed, timed out or errored.
fn truly_passed(r: &PhaseReport) -> bool {
    !r.probes
        .iter()
        .any(|p| p.severity == Severity::Required && p.result.is_failure())
}

fn snap(n: u64) -> SnapshotRef {
    SnapshotRef {
        id: 255 + n,
        path: format!("@/.snapshots/{n}/snapshot"),
    }
}

struct Sim {
    cfg: EngineConfig,
    store: Vec<SnapshotRef>,
    next: u64,
    default: SnapshotRef,
    env: BootState,
    /// Snapshots that passed both phases on a real boot (ground truth).
    passed: HashSet<SnapshotRef>,
    history: Vec<NewEvent>,
    degraded: bool,
    plans: Vec<BootPlan>,
    plan_at: usize,
    /// Decisions taken, by kind, for the coverage check.
    seen: Vec<&'static str>,
    /// The systemd-boot backend's files, when it is the one simulated.
    sd: Option<SdWorld>,
}

/// The systemd-boot side of a simulation.
struct SdWorld {
    world: common::sdboot::World,
    env: SdBootEnv,
}

/// The snapshot store as the simulation holds it, for the backend's `sync`
/// (what `health-checker-boot-entries.service` runs on every boot).
struct SimStore<'a>(&'a [SnapshotRef], &'a SnapshotRef);

impl Snapshots for SimStore<'_> {
    fn booted(&self) -> anyhow::Result<SnapshotRef> {
        Ok(self.1.clone())
    }
    fn default_subvolume(&self) -> anyhow::Result<SnapshotRef> {
        Ok(self.1.clone())
    }
    fn set_default(&self, _: u64) -> anyhow::Result<()> {
        anyhow::bail!("not in the simulation")
    }
    fn lookup(&self, path: &str) -> anyhow::Result<Option<SnapshotRef>> {
        Ok(self.0.iter().find(|s| s.path == path).cloned())
    }
    fn list(&self) -> anyhow::Result<Vec<SnapshotInfo>> {
        Ok(self
            .0
            .iter()
            .map(|s| SnapshotInfo {
                snapshot: s.clone(),
                number: None,
                description: None,
                read_only: true,
            })
            .collect())
    }
}

/// How one boot ended.
#[derive(Debug, PartialEq)]
enum End {
    /// Rebooted: by a panic/watchdog or because the checker asked.
    Rebooted,
    /// The system stays up.
    Up,
}

impl Sim {
    fn new(cfg: EngineConfig, plans: Vec<BootPlan>, sdboot: bool) -> Sim {
        let first = snap(1);
        let sd = sdboot.then(|| {
            let world = common::sdboot::World::new();
            let env = world.env(3);
            SdWorld { world, env }
        });
        Sim {
            sd,
            cfg,
            store: vec![first.clone()],
            next: 2,
            default: first,
            env: BootState::default(),
            passed: HashSet::new(),
            history: Vec::new(),
            degraded: false,
            plans,
            plan_at: 0,
            seen: Vec::new(),
        }
    }

    fn plan(&mut self) -> BootPlan {
        let p = self.plans[self.plan_at % self.plans.len()].clone();
        self.plan_at += 1;
        p
    }

    fn exists(&self, s: &SnapshotRef) -> bool {
        self.store.contains(s)
    }

    /// GRUB's choice, with its ordinary entry (the default subvolume) when
    /// the snapshot it names is gone.
    /// Returns the booted snapshot and whether it can panic (a trial).
    fn grub(&mut self) -> Result<(SnapshotRef, bool), TestCaseError> {
        let (choice, env) = grub_choose(&self.env);
        let resolve = |c: GrubChoice| match c {
            GrubChoice::Trial(t) if self.exists(&t) => (t, true),
            GrubChoice::Good(g) if self.exists(&g) => (g, false),
            _ => (self.default.clone(), false),
        };
        let grub_boots = resolve(choice.clone());
        let Some(sd) = &self.sd else {
            self.env = env;
            return Ok(grub_boots);
        };
        let before = self.env.clone();
        sd.env
            .sync(&SimStore(&self.store, &self.default))
            .map_err(|e| TestCaseError::fail(format!("sync: {e:#}")))?;
        let booted = sd.world.boot();
        let loaded = sd
            .env
            .load()
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let name = booted.as_deref().and_then(EntryName::parse);
        let sd_choice = match name {
            None => GrubChoice::Ordinary,
            Some(n)
                if n.role == Role::Trial && before.trial.as_ref().is_some_and(|t| t.id == n.id) =>
            {
                GrubChoice::Trial(before.trial.clone().unwrap())
            }
            Some(n) if before.good.as_ref().is_some_and(|g| g.id == n.id) => {
                GrubChoice::Good(before.good.clone().unwrap())
            }
            // No known-good (or one deleted): the entry of the default
            // subvolume, as GRUB's ordinary entry.
            Some(n) if n.role == Role::Good && n.id == self.default.id => GrubChoice::Ordinary,
            Some(n) => {
                return Err(TestCaseError::fail(format!(
                    "systemd-boot booted {n} from {:?}, state {before:?}",
                    sd.world.entries()
                )))
            }
        };
        // The same snapshot boots, equally protected.
        let sd_boots = resolve(sd_choice);
        prop_assert_eq!(&sd_boots, &grub_boots, "entries {:?}", sd.world.entries());
        prop_assert_eq!(
            (&loaded.good, &loaded.trial, loaded.tries),
            (&env.good, &env.trial, env.tries)
        );
        if matches!(choice, GrubChoice::Trial(_)) {
            prop_assert_eq!(loaded.booted, Some(GrubEntry::Trial));
        }
        if before.fallback.is_none() {
            prop_assert_eq!(&loaded.fallback, &env.fallback);
        }
        self.env = loaded;
        Ok(sd_boots)
    }

    fn boot(&mut self, manual: Option<SnapshotRef>) -> Result<End, TestCaseError> {
        let (booted, may_panic) = match manual {
            Some(m) => {
                if let Some(sd) = &self.sd {
                    // Picked in systemd-boot's menu: no counter changes.
                    sd.world.select(&format!("health-checker-{}.conf", m.id));
                    self.env = sd
                        .env
                        .load()
                        .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
                }
                (m, true)
            }
            None => self.grub()?,
        };
        let plan = self.plan();
        if plan.panic && may_panic {
            return Ok(End::Rebooted);
        }
        let early = report(Phase::Early, &plan.early, plan.lie);
        let d = self.phase(&booted, &early, EarlyPhase::NotRun, true)?;
        if d.wants_reboot() {
            return Ok(End::Rebooted);
        }
        let early_ok = truly_passed(&early);
        let late = if plan.hang {
            report(
                Phase::Late,
                &[Probe(Severity::Required, Outcome::Timeout)],
                false,
            )
        } else {
            report(Phase::Late, &plan.late, plan.lie)
        };
        let seen_early = if d.verdict == BootVerdict::Pass {
            EarlyPhase::Passed
        } else {
            EarlyPhase::Failed
        };
        let d = self.phase(&booted, &late, seen_early, early_ok)?;
        Ok(if d.wants_reboot() {
            End::Rebooted
        } else {
            End::Up
        })
    }

    /// Decide one phase, check the bounds on the decision, apply it.
    fn phase(
        &mut self,
        booted: &SnapshotRef,
        report: &PhaseReport,
        early: EarlyPhase,
        early_ok: bool,
    ) -> Result<Decision, TestCaseError> {
        let good_exists = self.env.good.as_ref().is_some_and(|g| self.exists(g));
        let d = decide(&Inputs {
            state: &self.env,
            booted,
            default: &self.default,
            good_exists,
            report,
            early,
            config: &self.cfg,
        });
        let boot_ok = early_ok && truly_passed(report);

        // Bound 4: a pass is never recorded over a failed required probe.
        if d.verdict == BootVerdict::Pass {
            prop_assert!(boot_ok, "pass decided over failures: {report:?} {d:?}");
        }
        for e in d.events.iter().filter(|e| e.kind == EventKind::Verdict) {
            if e.verdict == Some(Verdict::Pass) {
                prop_assert!(boot_ok, "pass recorded over failures: {e:?}");
            }
        }

        // Bound 2: only a snapshot that passed on a real boot becomes G.
        if d.state.good != self.env.good {
            let g = d.state.good.clone();
            prop_assert_eq!(g.as_ref(), Some(booted), "promoted something not booted");
            prop_assert_eq!(report.phase, Phase::Late, "promoted before the late phase");
            prop_assert!(boot_ok, "promoted a boot that did not pass: {:?}", d);
            let promoted = matches!(d.action, Action::Promote { .. });
            prop_assert!(promoted, "known-good changed without a promotion");
        }
        if let Action::Promote { snapshot } = &d.action {
            prop_assert!(boot_ok);
            self.passed.insert(snapshot.clone());
        }

        // Bound 3: rollbacks, and any change of the default, go to a
        // known-good snapshot that exists (or to the one just promoted).
        if let Action::RollBack { to, .. } = &d.action {
            prop_assert_eq!(Some(to), self.env.good.as_ref());
            prop_assert!(self.passed.contains(to), "rollback to never-passed {to:?}");
            prop_assert!(self.exists(to), "rollback to a deleted snapshot {to:?}");
        }
        if let Some(to) = &d.set_default {
            prop_assert!(self.exists(to), "default set to a deleted {to:?}");
            prop_assert!(
                self.passed.contains(to),
                "default set to {to:?}, never known-good: {d:?}"
            );
        }

        // Every state the engine reaches survives the trip through the
        // environment's keys.
        let keys: std::collections::HashMap<_, _> = d
            .state
            .changes()
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        let back = BootState::from_keys(|k| keys.get(k).cloned());
        prop_assert_eq!(back.as_ref(), Ok(&d.state));

        // Apply.
        if let Some(to) = &d.set_default {
            self.default = to.clone();
        }
        self.env = d.state.clone();
        self.through_backend()?;
        self.history.extend(d.events.iter().cloned());
        if matches!(d.action, Action::EnterDegraded { .. }) {
            self.degraded = true;
        } else if d.clears_degraded {
            self.degraded = false;
        }
        self.seen.push(match d.action {
            Action::Promote { .. } => "promote",
            Action::RollBack { .. } => "rollback",
            Action::RetryReboot { .. } => "retry",
            Action::EnterDegraded { .. } => "degraded",
            Action::Nothing if d.fallback.is_some() => "fallback",
            Action::Nothing => "nothing",
        });
        Ok(d)
    }

    fn external(&mut self, e: &External) -> Option<SnapshotRef> {
        match e {
            External::Update { arm: armed } => {
                let s = snap(self.next);
                self.next += 1;
                self.store.push(s.clone());
                self.default = s.clone();
                if *armed {
                    if let Ok(env) = arm(&self.env, s, self.cfg.tries) {
                        self.env = env;
                        self.through_backend().expect("arming through the backend");
                    }
                }
                None
            }
            External::Reboot => None,
            External::Manual(i) => Some(self.store[i % self.store.len()].clone()),
            External::Delete(i) => {
                let keep =
                    |s: &SnapshotRef| *s == self.default || Some(s) == self.env.trial.as_ref();
                let candidates: Vec<_> = self.store.iter().filter(|s| !keep(s)).cloned().collect();
                if let Some(victim) = candidates.get(i % candidates.len().max(1)) {
                    self.store.retain(|s| s != victim);
                }
                None
            }
        }
    }

    /// With systemd-boot: write `self.env` through the backend (what was
    /// loaded before is what the engine's change applies to) and read it
    /// back; it must come back the same, but for the fall-back the backend
    /// derives afresh from the entries on every read.
    fn through_backend(&mut self) -> Result<(), TestCaseError> {
        let Some(sd) = &self.sd else {
            return Ok(());
        };
        let fail = |e: anyhow::Error| TestCaseError::fail(format!("{e:#}"));
        let old = sd.env.load().map_err(fail)?;
        sd.env.store(&self.env.diff(&old)).map_err(fail)?;
        let back = sd.env.load().map_err(fail)?;
        prop_assert_eq!(
            BootState {
                fallback: None,
                ..back.clone()
            },
            BootState {
                fallback: None,
                ..self.env.clone()
            },
            "entries {:?}",
            sd.world.entries()
        );
        self.env = back;
        Ok(())
    }

    /// Boot until the system stays up; returns the number of boots.
    fn chain(&mut self, mut manual: Option<SnapshotRef>) -> Result<usize, TestCaseError> {
        for n in 1..=HARD_CAP {
            if self.boot(manual.take())? == End::Up {
                return Ok(n);
            }
        }
        Err(TestCaseError::fail(format!(
            "still rebooting after {HARD_CAP} boots: {:?}",
            self.env
        )))
    }

    /// Bound 1: boots in one chain with no outside event in between.
    fn max_chain(&self) -> usize {
        2 * self.cfg.tries as usize + self.cfg.good_failure_reboots as usize + 3
    }
}

fn run(
    cfg: EngineConfig,
    plans: Vec<BootPlan>,
    events: Vec<External>,
) -> Result<Sim, TestCaseError> {
    run_on(cfg, plans, events, false)
}

fn run_on(
    cfg: EngineConfig,
    plans: Vec<BootPlan>,
    events: Vec<External>,
    sdboot: bool,
) -> Result<Sim, TestCaseError> {
    let mut sim = Sim::new(cfg, plans, sdboot);
    let first = sim.chain(None)?;
    prop_assert!(first <= sim.max_chain());
    for e in &events {
        let manual = sim.external(e);
        let n = sim.chain(manual)?;
        prop_assert!(
            n <= sim.max_chain(),
            "{n} boots in one chain (bound {}) after {e:?}",
            sim.max_chain()
        );
    }
    Ok(sim)
}

/// A system whose every boot fails stops rebooting within the bound and
/// ends up up, in degraded mode, with nothing it can roll back to.
fn failing_system(
    cfg: EngineConfig,
    prefix: Vec<BootPlan>,
    events: Vec<External>,
    failing: Vec<BootPlan>,
    updates: Vec<bool>,
    sdboot: bool,
) -> Result<(), TestCaseError> {
    let mut sim = run_on(cfg, prefix, events, sdboot)?;
    // From now on every boot fails.
    sim.plans = failing;
    sim.plan_at = 0;
    for armed in updates {
        sim.external(&External::Update { arm: armed });
        let n = sim.chain(None)?;
        prop_assert!(
            n <= sim.max_chain(),
            "{} boots, bound {}",
            n,
            sim.max_chain()
        );
        // The chain ended with the system up: in degraded mode.
        prop_assert!(
            sim.degraded,
            "failing system up but not degraded: {:?}",
            sim.env
        );
        // A second chain after an outside reboot stops at once: the
        // failure budget is spent and nothing is armed.
        let again = sim.chain(None)?;
        prop_assert!(
            again <= sim.cfg.tries as usize + 2,
            "{} boots after a reboot",
            again
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// Random boots, random outcomes, random updates: every bound holds
    /// after every decision.
    #[test]
    fn bounds_hold_over_random_histories(
        cfg in config(),
        plans in prop::collection::vec(boot_plan(), 1..60),
        events in prop::collection::vec(external(), 0..40),
    ) {
        run(cfg, plans, events)?;
    }

    #[test]
    fn a_failing_system_stops_rebooting(
        cfg in config(),
        prefix in prop::collection::vec(boot_plan(), 1..30),
        events in prop::collection::vec(external(), 0..10),
        failing in prop::collection::vec(failing_plan(), 1..20),
        updates in prop::collection::vec(any::<bool>(), 1..4),
    ) {
        failing_system(cfg, prefix, events, failing, updates, false)?;
    }
}

proptest! {
    // Every boot and every decision goes through files on a temporary ESP:
    // fewer cases, the same properties.
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// The bounds with the systemd-boot backend, and at every boot
    /// systemd-boot boots what GRUB would.
    #[test]
    fn bounds_hold_over_random_histories_on_systemd_boot(
        cfg in config(),
        plans in prop::collection::vec(boot_plan(), 1..60),
        events in prop::collection::vec(external(), 0..40),
    ) {
        run_on(cfg, plans, events, true)?;
    }

    #[test]
    fn a_failing_system_stops_rebooting_on_systemd_boot(
        cfg in config(),
        prefix in prop::collection::vec(boot_plan(), 1..30),
        events in prop::collection::vec(external(), 0..10),
        failing in prop::collection::vec(failing_plan(), 1..20),
        updates in prop::collection::vec(any::<bool>(), 1..4),
    ) {
        failing_system(cfg, prefix, events, failing, updates, true)?;
    }
}

/// The simulator is only worth something if the random histories reach the
/// interesting decisions; check that they do, deterministically.
#[test]
fn the_simulator_reaches_every_kind_of_decision() {
    reaches_every_kind_of_decision(false, 300);
}

#[test]
fn the_simulator_reaches_every_kind_of_decision_on_systemd_boot() {
    reaches_every_kind_of_decision(true, 100);
}

fn reaches_every_kind_of_decision(sdboot: bool, runs: usize) {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = HashSet::new();
    for _ in 0..runs {
        let cfg = config().new_tree(&mut runner).unwrap().current();
        let plans = prop::collection::vec(boot_plan(), 1..60)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let events = prop::collection::vec(external(), 0..40)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let sim = run_on(cfg, plans, events, sdboot).expect("bounds hold");
        seen.extend(sim.seen);
    }
    for kind in [
        "promote", "rollback", "retry", "degraded", "fallback", "nothing",
    ] {
        assert!(seen.contains(kind), "never reached {kind}: {seen:?}");
    }
}
