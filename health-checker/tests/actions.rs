//! The real system actions against a temporary root and a private D-Bus
//! bus: the login message, `wall`, alert hooks (input, time limit, security),
//! the D-Bus signal, and reboot / stop through a fake systemd. Needs
//! `dbus-daemon`; fails (does not skip) without it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::dbus::PrivateBus;
use common::process::{ended_within, read_pid};
use health_checker::actions::dbus::{HC_INTERFACE, HC_PATH};
use health_checker::actions::{
    ActionSettings, Actions, Alert, AlertFailures, AlertKind, Bus, StopFailures, SystemActions,
};
use health_checker::paths::Root;
use zbus::blocking::connection::Builder;
use zbus::zvariant::OwnedObjectPath;

/// A system root in a temporary directory, with an alert hook directory.
struct TestRoot {
    dir: tempfile::TempDir,
}

impl TestRoot {
    fn new() -> Self {
        common::require::root("alert hook ownership checks");
        let dir = tempfile::tempdir().unwrap();
        let t = TestRoot { dir };
        std::fs::create_dir_all(t.hooks()).unwrap();
        set_mode(&t.hooks(), 0o755);
        t
    }

    fn root(&self) -> Root {
        Root::new(self.dir.path())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn hooks(&self) -> PathBuf {
        self.path("etc/health-checker/alert.d")
    }

    /// A hook script `name` with `body` (after the shebang) and `mode`.
    fn hook(&self, name: &str, body: &str, mode: u32) -> PathBuf {
        let p = self.hooks().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        set_mode(&p, mode);
        p
    }

    fn actions(&self, settings: ActionSettings) -> SystemActions {
        SystemActions::new(self.root(), settings)
    }
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Settings for tests: everything on the private bus, `wall` replaced by
/// `wall` (a script when given), a short time limit.
fn settings(bus: &PrivateBus, wall: Option<&Path>) -> ActionSettings {
    ActionSettings {
        no_reboot: false,
        motd: true,
        wall: wall.is_some(),
        alert_dir: PathBuf::from("/etc/health-checker/alert.d"),
        alert_timeout: Duration::from_secs(10),
        stop_timeout: Duration::from_secs(10),
        bus: Bus::Address(bus.address.clone()),
        wall_program: wall.map(Path::to_path_buf).unwrap_or_default(),
    }
}

fn degraded() -> Alert {
    Alert {
        kind: AlertKind::Degraded,
        summary: "required probe db failed on known-good snapshot 1".into(),
        details: serde_json::json!({
            "snapshot": {"id": 258, "path": "@/.snapshots/1/snapshot"},
            "verdict": "fail",
            "probes": [{"name": "db", "result": "fail"}],
        }),
    }
}

fn failures(err: anyhow::Error) -> AlertFailures {
    err.downcast::<AlertFailures>()
        .unwrap_or_else(|e| panic!("not an AlertFailures: {e:#}"))
}

/// Listen for our alert signals on `bus`; the first arrives on the channel
/// as `(member, summary, json)`.
fn listen(bus: &PrivateBus) -> mpsc::Receiver<(String, String, String)> {
    let conn = Builder::address(bus.address.as_str())
        .unwrap()
        .build()
        .unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(HC_INTERFACE)
        .unwrap()
        .build();
    let iter = zbus::blocking::MessageIterator::for_match_rule(rule, &conn, Some(16)).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _keep = conn;
        for msg in iter {
            let Ok(msg) = msg else { continue };
            let header = msg.header();
            assert_eq!(header.path().map(|p| p.as_str()), Some(HC_PATH));
            let member = header.member().map(|m| m.to_string()).unwrap_or_default();
            let (summary, json): (String, String) = msg.body().deserialize().unwrap();
            let _ = tx.send((member, summary, json));
        }
    });
    rx
}

#[test]
fn every_channel_gets_the_alert() {
    let bus = PrivateBus::start();
    let t = TestRoot::new();
    let signals = listen(&bus);
    let got = t.path("hook-input.json");
    let env = t.path("hook-env");
    t.hook(
        "10-record",
        &format!(
            "cat > {}\necho \"$HC_ALERT $HC_ROOT\" > {}",
            got.display(),
            env.display()
        ),
        0o755,
    );
    let wall_out = t.path("wall-input");
    let wall = t.path("fake-wall");
    std::fs::write(&wall, format!("#!/bin/sh\ncat > {}\n", wall_out.display())).unwrap();
    set_mode(&wall, 0o755);

    let alert = degraded();
    t.actions(settings(&bus, Some(&wall)))
        .alert(&alert)
        .unwrap();

    // motd
    let motd = std::fs::read_to_string(t.path("run/motd.d/health-checker")).unwrap();
    assert!(motd.contains("DEGRADED MODE"), "{motd}");
    assert!(motd.contains(&alert.summary), "{motd}");
    assert!(motd.contains("health-checker status"), "{motd}");
    // wall
    let walled = std::fs::read_to_string(&wall_out).unwrap();
    assert!(walled.contains(&alert.summary), "{walled}");
    // hook: the alert as JSON on stdin, kind and root in the environment
    let json: Alert = serde_json::from_str(&std::fs::read_to_string(&got).unwrap()).unwrap();
    assert_eq!(json, alert);
    assert_eq!(
        std::fs::read_to_string(&env).unwrap().trim(),
        format!("degraded {}", t.dir.path().display())
    );
    // D-Bus signal
    let (member, summary, json) = signals.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(member, "Degraded");
    assert_eq!(summary, alert.summary);
    assert_eq!(serde_json::from_str::<Alert>(&json).unwrap(), alert);
    let raw: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(raw["schema"], 1, "{raw}");
}

#[test]
fn disabled_channels_are_not_used() {
    let bus = PrivateBus::start();
    let t = TestRoot::new();
    let mut s = settings(&bus, None);
    s.motd = false;
    s.wall = false;
    t.actions(s).alert(&degraded()).unwrap();
    assert!(!t.path("run/motd.d").exists());
}

#[test]
fn a_hook_that_hangs_is_killed_at_the_timeout_and_the_next_still_runs() {
    let bus = PrivateBus::start();
    let t = TestRoot::new();
    let (hook_pid, child_pid, after) = (t.path("hook.pid"), t.path("child.pid"), t.path("after"));
    t.hook(
        "10-hang",
        &format!(
            "sleep 1000 &\necho $! > {}\necho $$ > {}\nwait",
            child_pid.display(),
            hook_pid.display()
        ),
        0o755,
    );
    t.hook("20-after", &format!("touch {}", after.display()), 0o755);
    let mut s = settings(&bus, None);
    s.alert_timeout = Duration::from_secs(1);

    let started = Instant::now();
    let err = failures(t.actions(s).alert(&degraded()).unwrap_err());
    let elapsed = started.elapsed();

    assert_eq!(err.failures.len(), 1, "{err}");
    let (channel, e) = &err.failures[0];
    assert!(channel.ends_with("alert.d/10-hang"), "{channel}");
    assert!(
        format!("{e:#}").contains("did not finish within 1s"),
        "{e:#}"
    );
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    assert!(after.exists(), "the hook after the hanging one did not run");
    for pidfile in [&hook_pid, &child_pid] {
        let pid = read_pid(pidfile);
        assert!(
            ended_within(pid, Duration::from_secs(5)),
            "process {pid} from {} still runs",
            pidfile.display()
        );
    }
}

#[test]
fn insecure_hooks_are_refused_with_a_message_naming_them() {
    let bus = PrivateBus::start();
    let t = TestRoot::new();
    let (ran_bad, ran_foreign, ran_good) = (t.path("bad"), t.path("foreign"), t.path("good"));
    let writable = t.hook(
        "10-writable",
        &format!("touch {}", ran_bad.display()),
        0o777,
    );
    let foreign = t.hook(
        "20-foreign",
        &format!("touch {}", ran_foreign.display()),
        0o755,
    );
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    t.hook("30-good", &format!("touch {}", ran_good.display()), 0o750);
    t.hook("40-not-executable", "exit 1", 0o644);
    t.hook("50-backup~", "exit 1", 0o755);
    std::os::unix::fs::symlink("/dev/null", t.hooks().join("60-masked")).unwrap();

    let err = failures(
        t.actions(settings(&bus, None))
            .alert(&degraded())
            .unwrap_err(),
    );
    let text = err.to_string();
    assert_eq!(err.failures.len(), 2, "{text}");
    assert!(
        text.contains(&format!(
            "refusing alert hook {}: writable by group or others (mode 0777)",
            writable.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "refusing alert hook {}: owned by uid 65534, not root",
            foreign.display()
        )),
        "{text}"
    );
    assert!(!ran_bad.exists() && !ran_foreign.exists());
    assert!(ran_good.exists(), "the secure hook did not run");
}

#[test]
fn what_a_hook_leaves_running_is_killed_like_what_a_probe_leaves() {
    let bus = PrivateBus::start();
    let t = TestRoot::new();
    let (left, escaped) = (t.path("left.pid"), t.path("escaped.pid"));
    t.hook(
        "10-leaves",
        &format!(
            "sleep 1000 >/dev/null 2>&1 &\necho $! > {}\n\
             setsid -f sh -c 'echo $$ > {e}.tmp && mv {e}.tmp {e}; exec sleep 1000' \
             >/dev/null 2>&1\nwhile [ ! -s {e} ]; do sleep 0.01; done\nexit 0",
            left.display(),
            e = escaped.display()
        ),
        0o755,
    );
    t.actions(settings(&bus, None)).alert(&degraded()).unwrap();
    for pidfile in [&left, &escaped] {
        let pid = read_pid(pidfile);
        if !ended_within(pid, Duration::from_secs(3)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("process {pid} from {} outlived its hook", pidfile.display());
        }
    }
}

#[test]
fn a_hook_reached_through_a_users_symlink_is_refused() {
    let bus = PrivateBus::start();
    let t = TestRoot::new();
    let (uid, _) = common::user::ordinary_user();
    let shared = common::user::sticky_dir(t.dir.path(), "shared");
    let ran = t.path("ran");
    let real = t.path("real-hook");
    std::fs::write(&real, format!("#!/bin/sh\ntouch {}\n", ran.display())).unwrap();
    set_mode(&real, 0o755);
    let link = shared.join("hook");
    common::user::sh_as_user(&format!("ln -s {} {}", real.display(), link.display()));
    std::os::unix::fs::symlink(&link, t.hooks().join("10-page")).unwrap();

    let err = failures(
        t.actions(settings(&bus, None))
            .alert(&degraded())
            .unwrap_err(),
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("refusing symlink {}", link.display()))
            && text.contains(&format!("owned by uid {uid}, not root")),
        "{text}"
    );
    assert!(!ran.exists(), "the hook ran through the user's link");
}

#[test]
fn an_insecure_hook_directory_runs_nothing() {
    let bus = PrivateBus::start();
    let t = TestRoot::new();
    let ran = t.path("ran");
    t.hook("10-hook", &format!("touch {}", ran.display()), 0o755);
    set_mode(&t.hooks(), 0o777);

    let err = failures(
        t.actions(settings(&bus, None))
            .alert(&degraded())
            .unwrap_err(),
    );
    assert_eq!(err.failures.len(), 1, "{err}");
    assert!(
        err.to_string().contains(&format!(
            "refusing alert hook directory {}: writable by group or others",
            t.hooks().display()
        )),
        "{err}"
    );
    assert!(!ran.exists());
    // The other channels still worked.
    assert!(t.path("run/motd.d/health-checker").exists());
}

#[test]
fn failing_channels_do_not_stop_the_others() {
    let bus = PrivateBus::start();
    let t = TestRoot::new();
    let signals = listen(&bus);
    // motd cannot be written: `run` is a file.
    std::fs::write(t.path("run"), "").unwrap();
    // wall is missing.
    let missing_wall = Path::new("/nonexistent/wall");
    // One hook fails, the next works.
    t.hook("10-fails", "echo 'mailer down' >&2\nexit 4", 0o755);
    let ran = t.path("ran");
    t.hook("20-works", &format!("touch {}", ran.display()), 0o755);

    let err = failures(
        t.actions(settings(&bus, Some(missing_wall)))
            .alert(&degraded())
            .unwrap_err(),
    );
    let channels: Vec<&str> = err.failures.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(channels.len(), 3, "{err}");
    assert_eq!(channels[0], "motd");
    assert_eq!(channels[1], "wall");
    assert!(channels[2].ends_with("alert.d/10-fails"), "{err}");
    let text = err.to_string();
    assert!(text.contains("run/motd.d"), "{text}");
    assert!(text.contains("starting wall (/nonexistent/wall)"), "{text}");
    assert!(text.contains("exit status: 4: mailer down"), "{text}");
    assert!(text.starts_with("3 of 6 alert channels failed"), "{text}");

    assert!(ran.exists(), "the working hook did not run");
    let (member, _, _) = signals.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(member, "Degraded");
}

#[test]
fn the_signal_failing_does_not_stop_the_others() {
    let bus = PrivateBus::start();
    let t = TestRoot::new();
    let ran = t.path("ran");
    t.hook("10-works", &format!("touch {}", ran.display()), 0o755);
    let mut s = settings(&bus, None);
    s.bus = Bus::Address(format!("unix:path={}", t.path("no-bus").display()));

    let err = failures(t.actions(s).alert(&degraded()).unwrap_err());
    assert_eq!(err.failures.len(), 1, "{err}");
    assert_eq!(err.failures[0].0, "dbus");
    assert!(err.to_string().contains("no-bus"), "{err}");
    assert!(ran.exists());
    assert!(t.path("run/motd.d/health-checker").exists());
}

// --- reboot and stop through a fake systemd --------------------------------

type Calls = Arc<Mutex<Vec<(String, String, String)>>>;

/// The units the fake knows, by name: how many more reads of `ActiveState`
/// show `deactivating` once a stop was queued (`u32::MAX`: it never stops),
/// or `None` while no stop was asked for (`active`).
type Stops = Arc<Mutex<std::collections::BTreeMap<String, Option<u32>>>>;

/// Units of the fake: each stops after two reads of its state, except
/// `stuck.service`, which never does.
const FAKE_UNITS: [&str; 4] = ["db.service", "web.service", "x.service", "stuck.service"];

struct FakeManager {
    calls: Calls,
    stops: Stops,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl FakeManager {
    fn start_unit(&self, name: String, mode: String) -> zbus::fdo::Result<OwnedObjectPath> {
        self.record("StartUnit", name, mode)
    }

    fn stop_unit(&self, name: String, mode: String) -> zbus::fdo::Result<OwnedObjectPath> {
        if let Some(s) = self.stops.lock().unwrap().get_mut(&name) {
            *s = Some(if name == "stuck.service" { u32::MAX } else { 2 });
        }
        self.record("StopUnit", name, mode)
    }

    fn load_unit(&self, name: String) -> zbus::fdo::Result<OwnedObjectPath> {
        if self.stops.lock().unwrap().contains_key(&name) {
            Ok(fake_unit_path(&name))
        } else {
            Err(zbus::fdo::Error::Failed(format!("Unit {name} not loaded.")))
        }
    }
}

fn fake_unit_path(name: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!(
        "/org/freedesktop/systemd1/unit/{}",
        name.replace(['.', '-'], "_")
    ))
    .unwrap()
}

struct FakeUnit {
    name: String,
    stops: Stops,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
impl FakeUnit {
    #[zbus(property)]
    fn load_state(&self) -> String {
        "loaded".into()
    }
    #[zbus(property)]
    fn active_state(&self) -> String {
        let mut stops = self.stops.lock().unwrap();
        match stops.get_mut(&self.name) {
            Some(Some(0)) => "inactive".into(),
            Some(Some(n)) => {
                *n = n.saturating_sub(u32::from(*n != u32::MAX));
                "deactivating".into()
            }
            _ => "active".into(),
        }
    }
    #[zbus(property)]
    fn sub_state(&self) -> String {
        "running".into()
    }
}

impl FakeManager {
    fn record(
        &self,
        method: &str,
        name: String,
        mode: String,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((method.into(), name.clone(), mode));
            calls.len()
        };
        if name == "missing.service" {
            return Err(zbus::fdo::Error::Failed(format!("Unit {name} not loaded.")));
        }
        Ok(OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{n}")).unwrap())
    }
}

/// A fake `org.freedesktop.systemd1` on `bus`; keep the connection alive.
fn fake_systemd(bus: &PrivateBus) -> (zbus::blocking::Connection, Calls) {
    let calls = Calls::default();
    let stops: Stops = Arc::new(Mutex::new(
        FAKE_UNITS.iter().map(|u| (u.to_string(), None)).collect(),
    ));
    let mut b = Builder::address(bus.address.as_str())
        .unwrap()
        .name("org.freedesktop.systemd1")
        .unwrap()
        .serve_at(
            "/org/freedesktop/systemd1",
            FakeManager {
                calls: calls.clone(),
                stops: Arc::clone(&stops),
            },
        )
        .unwrap();
    for u in FAKE_UNITS {
        b = b
            .serve_at(
                fake_unit_path(u),
                FakeUnit {
                    name: u.to_string(),
                    stops: Arc::clone(&stops),
                },
            )
            .unwrap();
    }
    (b.build().unwrap(), calls)
}

fn calls(c: &Calls) -> Vec<(String, String, String)> {
    c.lock().unwrap().clone()
}

fn triple(m: &str, u: &str, mode: &str) -> (String, String, String) {
    (m.into(), u.into(), mode.into())
}

#[test]
fn reboot_starts_reboot_target_irreversibly() {
    let bus = PrivateBus::start();
    let (_systemd, c) = fake_systemd(&bus);
    let t = TestRoot::new();
    t.actions(settings(&bus, None))
        .reboot("trial failed")
        .unwrap();
    assert_eq!(
        calls(&c),
        [triple("StartUnit", "reboot.target", "replace-irreversibly")]
    );
}

#[test]
fn no_reboot_does_not_call_systemd() {
    let bus = PrivateBus::start();
    let (_systemd, c) = fake_systemd(&bus);
    let t = TestRoot::new();
    let mut s = settings(&bus, None);
    s.no_reboot = true;
    t.actions(s).reboot("trial failed").unwrap();
    assert_eq!(calls(&c), []);
}

#[test]
fn reboot_without_systemd_is_an_error_and_nothing_else() {
    let t = TestRoot::new();
    let bus = PrivateBus::start();
    let mut s = settings(&bus, None);
    let gone = t.path("no-such-bus");
    s.bus = Bus::Address(format!("unix:path={}", gone.display()));
    let err = t.actions(s).reboot("trial failed").unwrap_err();
    let text = health_checker::exit::chain(&err);
    assert!(text.contains("not rebooting any other way"), "{text}");
    assert!(text.contains(gone.to_str().unwrap()), "{text}");

    // A bus without systemd on it: an error too.
    let err = t
        .actions(settings(&bus, None))
        .reboot("trial failed")
        .unwrap_err();
    let text = health_checker::exit::chain(&err);
    assert!(text.contains("StartUnit(reboot.target"), "{text}");
}

#[test]
fn stop_units_tries_every_unit_and_reports_each_failure() {
    let bus = PrivateBus::start();
    let (_systemd, c) = fake_systemd(&bus);
    let t = TestRoot::new();
    let units = ["db.service", "missing.service", "web.service"].map(String::from);

    let err = t
        .actions(settings(&bus, None))
        .stop_units(&units)
        .unwrap_err();

    assert_eq!(
        calls(&c),
        [
            triple("StopUnit", "db.service", "replace"),
            triple("StopUnit", "missing.service", "replace"),
            triple("StopUnit", "web.service", "replace"),
        ]
    );
    let err = err.downcast::<StopFailures>().unwrap();
    assert_eq!(err.failures.len(), 1);
    assert_eq!(err.failures[0].0, "missing.service");
    let text = err.to_string();
    assert!(text.contains("could not stop 1 of 3 units"), "{text}");
    assert!(text.contains("Unit missing.service not loaded."), "{text}");

    t.actions(settings(&bus, None))
        .stop_units(&["db.service".into()])
        .unwrap();
}

#[test]
fn stop_units_waits_for_each_unit_and_reports_one_that_does_not_stop() {
    let bus = PrivateBus::start();
    let (_systemd, _) = fake_systemd(&bus);
    let t = TestRoot::new();
    let mut s = settings(&bus, None);
    s.stop_timeout = Duration::from_millis(1500);
    let units = ["web.service", "stuck.service"].map(String::from);

    let start = Instant::now();
    let err = t.actions(s).stop_units(&units).unwrap_err();
    let took = start.elapsed();

    let err = err.downcast::<StopFailures>().unwrap();
    assert_eq!(err.failures.len(), 1, "{err}");
    assert_eq!(err.failures[0].0, "stuck.service");
    let text = err.to_string();
    assert!(text.contains("could not stop 1 of 2 units"), "{text}");
    assert!(text.contains("still deactivating"), "{text}");
    assert!(text.contains("degraded.stop_timeout"), "{text}");
    assert!(
        took >= Duration::from_millis(1500),
        "gave up after {took:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_system_image_never_reboots_or_stops_the_host() {
    let t = TestRoot::new();
    let s = ActionSettings::default();
    assert_eq!(s.bus, Bus::System);
    let actions = t.actions(s);
    for err in [
        actions.reboot("image failed").unwrap_err(),
        actions.stop_units(&["x.service".into()]).unwrap_err(),
    ] {
        let text = health_checker::exit::chain(&err);
        assert!(text.contains("refusing to"), "{text}");
        assert!(text.contains(t.dir.path().to_str().unwrap()), "{text}");
    }
}

#[test]
fn systemd_is_reached_directly_on_its_private_socket() {
    // systemd's private socket has no bus daemon: a peer-to-peer connection
    // to PID 1, as early in the boot as the early phase runs.
    let t = TestRoot::new();
    let socket = t.path("private");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let c = Calls::default();
    let server_calls = c.clone();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let conn = Builder::async_io_unix_stream(stream)
            .server(zbus::Guid::generate())
            .unwrap()
            .p2p()
            .serve_at(
                "/org/freedesktop/systemd1",
                FakeManager {
                    calls: server_calls,
                    stops: Stops::default(),
                },
            )
            .unwrap()
            .build()
            .unwrap();
        // Serve until the test ends.
        std::thread::sleep(Duration::from_secs(60));
        drop(conn);
    });

    let conn = health_checker::systemd::connect_direct(&socket).unwrap();
    let job = health_checker::systemd::Systemd::from_connection(conn)
        .start_unit("reboot.target", "replace-irreversibly")
        .unwrap();
    assert_eq!(job.as_str(), "/org/freedesktop/systemd1/job/1");
    assert_eq!(
        calls(&c),
        [triple("StartUnit", "reboot.target", "replace-irreversibly")]
    );
}

/// Install `examples/alert.d/<name>` as a hook of `t`, with its settings
/// file `/etc/health-checker/<conf>` holding `settings`.
fn example_hook(t: &TestRoot, name: &str, conf: &str, settings: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/alert.d")
        .join(name);
    let dst = t.hooks().join(name);
    std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
    set_mode(&dst, 0o755);
    let c = t.path("etc/health-checker").join(conf);
    std::fs::write(&c, settings).unwrap();
    set_mode(&c, 0o600);
}

/// The alert document a listener received, checked to be schema 1 and the
/// alert that was sent.
fn received_alert(text: &str, sent: &Alert) {
    let (start, end) = (text.find('{'), text.rfind('}'));
    let (Some(start), Some(end)) = (start, end) else {
        panic!("no JSON in {text:?}");
    };
    let raw: serde_json::Value = serde_json::from_str(&text[start..=end])
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    assert_eq!(raw["schema"], 1, "{raw}");
    assert_eq!(&serde_json::from_value::<Alert>(raw).unwrap(), sent);
}

/// Serve one HTTP request on `listener` with `status`; the request (head,
/// body) arrives on the channel.
fn serve_once(
    listener: std::net::TcpListener,
    status: &'static str,
) -> mpsc::Receiver<(String, String)> {
    use std::io::{Read, Write};
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed before the end of the headers");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed before the end of the body");
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
        write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let _ = tx.send((head, body));
    });
    rx
}

/// Send `alert` through the example webhook hook to a local server that
/// answers `status`; what the sending returned and the request (head, body).
fn through_webhook(
    alert: &Alert,
    status: &'static str,
    settings_extra: &str,
) -> (anyhow::Result<()>, String, String) {
    common::require::program("curl", "curl");
    let bus = PrivateBus::start();
    let t = TestRoot::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    example_hook(
        &t,
        "50-webhook",
        "webhook.conf",
        &format!("# test\nurl=http://127.0.0.1:{port}/alerts\n{settings_extra}"),
    );
    let got = serve_once(listener, status);
    let sent = t.actions(settings(&bus, None)).alert(alert);
    let (head, body) = got
        .recv_timeout(Duration::from_secs(20))
        .expect("the webhook got no request");
    (sent, head, body)
}

#[test]
fn the_example_webhook_hook_posts_the_alert_with_curl() {
    let alert = degraded();
    let (sent, head, body) = through_webhook(
        &alert,
        "204 No Content",
        "header=Authorization: Bearer t0ken\ntimeout=15\n",
    );
    sent.unwrap();
    assert!(head.starts_with("POST /alerts HTTP/1.1\r\n"), "{head}");
    let has = |h: &str| head.lines().any(|l| l.eq_ignore_ascii_case(h));
    assert!(has("Content-Type: application/json"), "{head}");
    assert!(has("X-Health-Checker-Alert: degraded"), "{head}");
    assert!(has("Authorization: Bearer t0ken"), "{head}");
    received_alert(&body, &alert);
}

#[test]
fn the_example_webhook_hook_fails_when_the_server_refuses() {
    let (sent, _, body) = through_webhook(&degraded(), "404 Not Found", "");
    received_alert(&body, &degraded());
    let text = format!("{:#}", sent.unwrap_err());
    assert!(text.contains("50-webhook"), "{text}");
}

#[test]
fn the_example_syslog_hook_sends_the_alert_over_udp_and_tcp() {
    use std::io::BufRead;
    common::require::program("logger", "bsdutils");
    let bus = PrivateBus::start();
    let alert = degraded();

    let t = TestRoot::new();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let port = udp.local_addr().unwrap().port();
    example_hook(
        &t,
        "60-syslog",
        "syslog.conf",
        &format!("server=127.0.0.1\nport={port}\nprotocol=udp\npriority=daemon.crit\n"),
    );
    t.actions(settings(&bus, None)).alert(&alert).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = udp.recv_from(&mut buf).expect("a syslog message over UDP");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    // <26>: facility daemon (3) * 8 + level crit (2); RFC 5424, tag and
    // the kind as message ID.
    assert!(msg.starts_with("<26>1 "), "{msg}");
    assert!(msg.contains(" health-checker - degraded "), "{msg}");
    received_alert(&msg, &alert);

    let t = TestRoot::new();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    example_hook(
        &t,
        "60-syslog",
        "syslog.conf",
        &format!("server=127.0.0.1\nport={port}\nprotocol=tcp\n"),
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (s, _) = tcp.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let lines: Vec<String> = std::io::BufReader::new(s)
            .lines()
            .map_while(Result::ok)
            .collect();
        let _ = tx.send(lines);
    });
    t.actions(settings(&bus, None)).alert(&alert).unwrap();
    let lines = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(lines.len(), 1, "one message: {lines:?}");
    assert!(
        lines[0].contains(" health-checker - degraded "),
        "{lines:?}"
    );
    received_alert(&lines[0], &alert);
}
