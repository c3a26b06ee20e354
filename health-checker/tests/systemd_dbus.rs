//! The systemd client and the built-in unit probes against a fake
//! `org.freedesktop.systemd1` served on a private `dbus-daemon` (a missing
//! `dbus-daemon` fails the tests, naming the package).

mod common;
mod probe_root;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::dbus::PrivateBus;
use health_checker::probes::builtin::{check_failed_units, check_units};
use health_checker::probes::ProbeContext;
use health_checker::systemd::{Bus, JobRow, Systemd, UnitRow};
use health_checker::verdict::{Outcome, Phase, Verdict};
use probe_root::{find, manifest, TestRoot};
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

type States = Arc<Mutex<BTreeMap<String, (String, String, String)>>>;

struct Manager {
    states: States,
}

fn unit_path(name: &str) -> OwnedObjectPath {
    let mut p = String::from("/org/freedesktop/systemd1/unit/");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() {
            p.push(b as char);
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    ObjectPath::try_from(p).unwrap().into()
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    fn load_unit(&self, name: &str) -> zbus::fdo::Result<OwnedObjectPath> {
        if name == "hang.service" {
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
        if self.states.lock().unwrap().contains_key(name) {
            Ok(unit_path(name))
        } else {
            Err(zbus::fdo::Error::Failed(format!(
                "fake: no object for {name}"
            )))
        }
    }

    fn list_units_filtered(&self, states: Vec<String>) -> Vec<UnitRow> {
        let root: OwnedObjectPath = ObjectPath::try_from("/").unwrap().into();
        self.states
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| states.contains(&s.1))
            .map(|(n, s)| {
                (
                    n.clone(),
                    "fake".into(),
                    s.0.clone(),
                    s.1.clone(),
                    s.2.clone(),
                    String::new(),
                    unit_path(n),
                    0,
                    String::new(),
                    root.clone(),
                )
            })
            .collect()
    }

    /// A start job, running, for every unit that is activating.
    fn list_jobs(&self) -> Vec<JobRow> {
        self.states
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.1 == "activating")
            .enumerate()
            .map(|(i, (n, _))| {
                (
                    i as u32 + 1,
                    n.clone(),
                    "start".into(),
                    "running".into(),
                    ObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{}", i + 1))
                        .unwrap()
                        .into(),
                    unit_path(n),
                )
            })
            .collect()
    }
}

struct Unit {
    name: String,
    states: States,
}

impl Unit {
    fn get(&self, i: usize) -> String {
        let s = self.states.lock().unwrap();
        let t = &s[&self.name];
        [&t.0, &t.1, &t.2][i].clone()
    }
}

#[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
impl Unit {
    #[zbus(property)]
    fn load_state(&self) -> String {
        self.get(0)
    }
    #[zbus(property)]
    fn active_state(&self) -> String {
        self.get(1)
    }
    #[zbus(property)]
    fn sub_state(&self) -> String {
        self.get(2)
    }
}

/// A fake systemd on a private bus, with these units.
struct FakeSystemd {
    bus: PrivateBus,
    _conn: zbus::blocking::Connection,
    states: States,
}

impl FakeSystemd {
    fn start(units: &[(&str, &str, &str, &str)]) -> Self {
        let bus = PrivateBus::start();
        let states: States = Arc::new(Mutex::new(
            units
                .iter()
                .map(|(n, l, a, s)| (n.to_string(), (l.to_string(), a.to_string(), s.to_string())))
                .collect(),
        ));
        let mut b = zbus::blocking::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .name("org.freedesktop.systemd1")
            .unwrap()
            .serve_at(
                "/org/freedesktop/systemd1",
                Manager {
                    states: Arc::clone(&states),
                },
            )
            .unwrap();
        for (n, ..) in units {
            b = b
                .serve_at(
                    unit_path(n),
                    Unit {
                        name: n.to_string(),
                        states: Arc::clone(&states),
                    },
                )
                .unwrap();
        }
        let conn = b.build().expect("serving the fake systemd");
        FakeSystemd {
            bus,
            _conn: conn,
            states,
        }
    }

    fn addr(&self) -> Bus {
        Bus::Address(self.bus.address.clone())
    }
}

fn units() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    vec![
        ("sshd.service", "loaded", "active", "running"),
        ("db.service", "loaded", "inactive", "dead"),
        ("gone.service", "not-found", "inactive", "dead"),
        ("flaky-x.service", "loaded", "failed", "failed"),
    ]
}

#[test]
fn the_client_reads_unit_states_and_failed_units() {
    let fake = FakeSystemd::start(&units());
    let sd = Systemd::connect(&fake.addr()).unwrap();
    let s = sd.unit_state("sshd.service").unwrap();
    assert_eq!(
        (
            s.load_state.as_str(),
            s.active_state.as_str(),
            s.sub_state.as_str()
        ),
        ("loaded", "active", "running")
    );
    assert_eq!(sd.failed_units().unwrap(), ["flaky-x.service"]);
    let e = sd.unit_state("nope.service").unwrap_err();
    assert!(
        format!("{e:#}").contains("asking systemd for unit nope.service"),
        "{e:#}"
    );
}

#[test]
fn the_client_lists_unfinished_jobs() {
    let fake = FakeSystemd::start(&[
        ("sshd.service", "loaded", "active", "running"),
        ("slow.service", "loaded", "activating", "start"),
    ]);
    let sd = Systemd::connect(&fake.addr()).unwrap();
    let jobs = sd.jobs().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        (
            jobs[0].unit.as_str(),
            jobs[0].job_type.as_str(),
            jobs[0].state.as_str()
        ),
        ("slow.service", "start", "running")
    );
}

#[test]
fn units_probe_passes_only_when_every_unit_is_active() {
    let fake = FakeSystemd::start(&units());
    let p = check_units(&fake.addr(), &["sshd.service".into()]);
    assert_eq!(p.outcome, Outcome::Pass, "{p:?}");
    assert_eq!(p.output, "sshd.service: active (running), loaded\n");

    let p = check_units(
        &fake.addr(),
        &[
            "sshd.service".into(),
            "db.service".into(),
            "gone.service".into(),
        ],
    );
    assert_eq!(p.outcome, Outcome::Fail);
    assert_eq!(
        p.reason.as_deref(),
        Some("units not active: db.service is inactive (dead), gone.service is not-found")
    );

    fake.states.lock().unwrap().get_mut("db.service").unwrap().1 = "active".into();
    let p = check_units(&fake.addr(), &["db.service".into()]);
    assert_eq!(p.outcome, Outcome::Pass);
}

#[test]
fn failed_units_probe_honours_the_ignore_list() {
    let fake = FakeSystemd::start(&units());
    let p = check_failed_units(&fake.addr(), &[]);
    assert_eq!(p.outcome, Outcome::Fail);
    assert_eq!(p.reason.as_deref(), Some("failed units: flaky-x.service"));
    let p = check_failed_units(&fake.addr(), &["flaky-*.service".into()]);
    assert_eq!(p.outcome, Outcome::Pass);
    assert_eq!(p.output, "flaky-x.service: failed (ignored)\n");
}

#[test]
fn no_systemd_is_an_error_never_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::Address(format!("unix:path={}/none", dir.path().display()));
    let p = check_units(&bus, &["sshd.service".into()]);
    assert_eq!(p.outcome, Outcome::Error);
    assert!(p
        .reason
        .as_deref()
        .unwrap()
        .starts_with("connecting to systemd on D-Bus address"));
    assert_eq!(check_failed_units(&bus, &[]).outcome, Outcome::Error);
}

#[test]
fn a_units_plugin_needs_no_script() {
    let fake = FakeSystemd::start(&units());
    let t = TestRoot::new();
    t.vendor(
        "services",
        &manifest(
            "late",
            "required",
            "units = [\"sshd.service\", \"db.service\"]\n",
        ),
        None,
    );
    t.vendor(
        "no-failed",
        &manifest(
            "late",
            "wanted",
            "failed_units = true\nignore_units = [\"flaky-*\"]\n",
        ),
        None,
    );
    let ctx = ProbeContext {
        bus: fake.addr(),
        ..Default::default()
    };
    let r = health_checker::probes::run_phase(&t.root(), &t.load(), Phase::Late, &ctx);
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(
        find(&r, "services").reason.as_deref(),
        Some("units not active: db.service is inactive (dead)")
    );
    assert_eq!(find(&r, "no-failed").result, Outcome::Pass);

    fake.states.lock().unwrap().get_mut("db.service").unwrap().1 = "active".into();
    let r = health_checker::probes::run_phase(&t.root(), &t.load(), Phase::Late, &ctx);
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
}

#[test]
fn a_hung_systemd_call_is_a_timeout_within_the_probes_limit() {
    let fake = FakeSystemd::start(&units());
    let t = TestRoot::new();
    t.vendor(
        "hangs",
        &manifest(
            "late",
            "wanted",
            "timeout = \"300ms\"\nunits = [\"hang.service\"]\n",
        ),
        None,
    );
    let ctx = ProbeContext {
        bus: fake.addr(),
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let r = health_checker::probes::run_phase(&t.root(), &t.load(), Phase::Late, &ctx);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let p = find(&r, "hangs");
    assert_eq!(p.result, Outcome::Timeout);
    assert_eq!(p.reason.as_deref(), Some("timed out after 300ms"));
}
