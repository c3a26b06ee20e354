//! The D-Bus service (`io.github.healthchecker.HealthChecker1`) on a private
//! `dbus-daemon`: its methods, properties and introspection through a zbus
//! client, the client side (`fetch_status`), the `Promoted` signal of the
//! checker, the `dbus-service` subcommand of the binary, and our bus policy
//! file applied by a real daemon to a client running as another user. A
//! missing `dbus-daemon`, `dbus-send` or `setpriv` fails the tests, naming
//! the package.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::dbus::PrivateBus;
use common::process::Killed;
use common::require;
use health_checker::actions::{ActionSettings, Actions, Bus, SystemActions};
use health_checker::dbus_service::Activation::{Allow, RunningOnly};
use health_checker::dbus_service::{
    fetch_status, start, start_with, Handlers, Manager, Provider, Request, HC_NAME, HC_PATH,
};
use health_checker::exit::{with_code, Code};
use health_checker::paths::Root;
use serde_json::{json, Value};
use zbus::blocking::Connection;

const IFACE: &str = "io.github.healthchecker.HealthChecker1";

fn fixed(v: Value) -> Provider {
    Box::new(move || Ok(v.clone()))
}

/// A status document in the form of `health-checker status --json`.
fn status() -> Value {
    json!({
        "state": "degraded",
        "booted": {"id": 257, "path": "@/.snapshots/2/snapshot", "number": 2},
        "default": {"error": "finding the default subvolume: input/output error"},
        "boot_environment": {
            "known_good": {"id": 256, "path": "@/.snapshots/1/snapshot", "number": 1},
            "trial": null,
        },
        "degraded": {"since": 5, "reason": "known-good failed twice"},
    })
}

fn client(bus: &PrivateBus) -> Connection {
    zbus::blocking::connection::Builder::address(bus.address.as_str())
        .and_then(|b| b.method_timeout(Duration::from_secs(10)).build())
        .expect("connecting to the private bus")
}

fn proxy(conn: &Connection) -> zbus::blocking::Proxy<'static> {
    // No property cache: the properties never signal changes, every read
    // must reach the service.
    zbus::blocking::proxy::Builder::new(conn)
        .destination(HC_NAME)
        .and_then(|b| b.path(HC_PATH))
        .and_then(|b| b.interface(IFACE))
        .map(|b| b.cache_properties(zbus::proxy::CacheProperties::No))
        .and_then(|b| b.build())
        .expect("a proxy")
}

#[test]
fn methods_and_properties_answer_from_the_providers() {
    let bus = PrivateBus::start();
    let _service = start(
        Some(&bus.address),
        fixed(status()),
        fixed(json!({"late": "pass"})),
    )
    .expect("serving");
    let conn = client(&bus);
    let p = proxy(&conn);

    let text: String = p.call("GetStatus", &()).expect("GetStatus");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), status());
    let text: String = p.call("GetLastVerdict", &()).expect("GetLastVerdict");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"late": "pass"})
    );

    assert!(p.get_property::<bool>("Degraded").unwrap());
    assert_eq!(
        p.get_property::<String>("KnownGood").unwrap(),
        "@/.snapshots/1/snapshot"
    );
    assert_eq!(p.get_property::<String>("Trial").unwrap(), "");
    assert_eq!(
        p.get_property::<String>("Booted").unwrap(),
        "@/.snapshots/2/snapshot"
    );

    // Read-only: the service itself refuses a write.
    let props = zbus::blocking::fdo::PropertiesProxy::builder(&conn)
        .destination(HC_NAME)
        .unwrap()
        .path(HC_PATH)
        .unwrap()
        .build()
        .unwrap();
    let iface = zbus::names::InterfaceName::try_from(IFACE).unwrap();
    let err = props
        .set(iface, "Trial", zbus::zvariant::Value::from("x"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            zbus::fdo::Error::PropertyReadOnly(_) | zbus::fdo::Error::UnknownProperty(_)
        ),
        "{err:?}"
    );
    assert_eq!(p.get_property::<String>("Trial").unwrap(), "");
}

#[test]
fn a_failing_provider_is_a_dbus_error_and_the_service_lives_on() {
    let bus = PrivateBus::start();
    let status: Provider = Box::new(|| {
        Err(anyhow::anyhow!(
            "reading /var/lib/health-checker/state.json: permission denied"
        ))
    });
    let _service = start(Some(&bus.address), status, fixed(json!({}))).expect("serving");
    let conn = client(&bus);
    let p = proxy(&conn);

    let err = p.call::<_, _, String>("GetStatus", &()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("state.json: permission denied"), "{msg}");
    let err = p.get_property::<bool>("Degraded").unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    // Still serving.
    let text: String = p.call("GetLastVerdict", &()).expect("GetLastVerdict");
    assert_eq!(text, "{}");
}

/// The service's introspection XML, asked of the bus.
fn introspect(conn: &zbus::blocking::Connection) -> String {
    zbus::blocking::fdo::IntrospectableProxy::builder(conn)
        .destination(HC_NAME)
        .unwrap()
        .path(HC_PATH)
        .unwrap()
        .build()
        .unwrap()
        .introspect()
        .expect("Introspect")
}

#[test]
fn introspection_documents_methods_properties_and_signals() {
    let bus = PrivateBus::start();
    let _service = start(Some(&bus.address), fixed(status()), fixed(json!({}))).unwrap();
    let conn = client(&bus);
    let xml = introspect(&conn);
    // Our interface's element, whitespace between tags removed.
    let start = xml
        .find(&format!("<interface name=\"{IFACE}\">"))
        .unwrap_or_else(|| panic!("{IFACE} missing from {xml}"));
    let len = xml[start..].find("</interface>").expect("closed interface");
    let iface: String = xml[start..start + len]
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .concat();
    let count = |tag: &str| iface.matches(&format!("<{tag} ")).count();
    for method in ["GetStatus", "GetLastVerdict"] {
        let m = format!("<method name=\"{method}\"><arg type=\"s\" direction=\"out\"/></method>");
        assert!(iface.contains(&m), "{m} in {iface}");
    }
    for (method, args) in [
        ("Arm", vec![("snapshot", "s"), ("tries", "y")]),
        ("MarkGood", vec![("snapshot", "s")]),
        ("MarkBad", vec![("snapshot", "s")]),
        ("Rollback", vec![("no_reboot", "b")]),
    ] {
        let ins: String = args
            .iter()
            .map(|(n, t)| format!("<arg name=\"{n}\" type=\"{t}\" direction=\"in\"/>"))
            .collect();
        let m =
            format!("<method name=\"{method}\">{ins}<arg type=\"s\" direction=\"out\"/></method>");
        assert!(iface.contains(&m), "{m} in {iface}");
    }
    assert_eq!(count("method"), 6, "{iface}");
    for signal in ["Rollback", "GrubFallback", "Degraded", "Promoted"] {
        let s = format!(
            "<signal name=\"{signal}\"><arg name=\"summary\" type=\"s\"/><arg name=\"json\" type=\"s\"/></signal>"
        );
        assert!(iface.contains(&s), "{s} in {iface}");
    }
    assert_eq!(count("signal"), 4, "{iface}");
    for (prop, ty) in [
        ("Degraded", "b"),
        ("KnownGood", "s"),
        ("Trial", "s"),
        ("Booted", "s"),
    ] {
        let p = format!("<property name=\"{prop}\" type=\"{ty}\" access=\"read\">");
        assert!(iface.contains(&p), "{p} in {iface}");
    }
    assert_eq!(count("property"), 4, "{iface}");
}

/// The `<interface>` element of our interface in an introspection
/// document, comments and the blanks between tags removed.
fn interface_element(xml: &str) -> String {
    let mut text = xml.to_owned();
    while let Some(start) = text.find("<!--") {
        let end = text[start..]
            .find("-->")
            .map(|e| start + e + 3)
            .expect("a closed comment");
        text.replace_range(start..end, "");
    }
    let start = text
        .find(&format!("<interface name=\"{IFACE}\">"))
        .unwrap_or_else(|| panic!("{IFACE} missing from {xml}"));
    let len = text[start..]
        .find("</interface>")
        .expect("closed interface");
    text[start..start + len + "</interface>".len()]
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .concat()
}

/// `docs/io.github.healthchecker.HealthChecker1.xml` (installed under
/// `/usr/share/dbus-1/interfaces/`) is what the service really answers.
#[test]
fn the_documented_introspection_xml_is_the_services() {
    let bus = PrivateBus::start();
    let _service = start(Some(&bus.address), fixed(status()), fixed(json!({}))).unwrap();
    let conn = client(&bus);
    let real = introspect(&conn);
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/io.github.healthchecker.HealthChecker1.xml");
    let documented = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    assert_eq!(
        interface_element(&documented),
        interface_element(&real),
        "{} differs from the service's introspection; the service says:\n{real}",
        file.display()
    );
}

type Asked = std::sync::Arc<std::sync::Mutex<Vec<Request>>>;

/// A manager that records what it is asked and answers with it; a snapshot
/// named "bad" is a usage error, "broken" another error.
fn recording_manager() -> (Manager, Asked) {
    let asked = Asked::default();
    let log = asked.clone();
    let manager: Manager = Box::new(move |r: Request| {
        log.lock().unwrap().push(r.clone());
        match &r {
            Request::MarkGood { snapshot: Some(s) } if s == "bad" => Err(with_code(
                Code::Usage,
                anyhow::anyhow!("no snapshot \"bad\" in the store"),
            )),
            Request::MarkGood { snapshot: Some(s) } if s == "broken" => {
                Err(anyhow::anyhow!("grubenv: input/output error"))
            }
            _ => Ok(format!("done: {r:?}")),
        }
    });
    (manager, asked)
}

/// The service checks the caller's uid itself: on a bus that lets everyone
/// call everything, a user who is not root is refused with `AccessDenied`
/// and nothing is asked of the manager; root's calls reach it with their
/// arguments, and its errors come back as D-Bus errors.
#[test]
fn the_service_lets_only_root_manage() {
    let bus = PrivateBus::start();
    let (manage, asked) = recording_manager();
    let _service = start_with(
        Some(&bus.address),
        Handlers {
            status: fixed(status()),
            last_verdict: fixed(json!({})),
            manage: Some(manage),
        },
    )
    .expect("serving");
    let dest = format!("--dest={HC_NAME}");
    let to_us = |member: &str| format!("{IFACE}.{member}");
    for call in [
        vec![
            dest.clone(),
            HC_PATH.into(),
            to_us("Arm"),
            "string:2".into(),
            "byte:2".into(),
        ],
        vec![
            dest.clone(),
            HC_PATH.into(),
            to_us("MarkGood"),
            "string:".into(),
        ],
        vec![
            dest.clone(),
            HC_PATH.into(),
            to_us("MarkBad"),
            "string:".into(),
        ],
        vec![
            dest.clone(),
            HC_PATH.into(),
            to_us("Rollback"),
            "boolean:true".into(),
        ],
    ] {
        let args: Vec<&str> = call.iter().map(String::as_str).collect();
        let (ok, out) = send_as_nobody(&bus.address, &args);
        assert!(!ok, "nobody must not call {call:?}: {out}");
        assert!(
            out.contains("org.freedesktop.DBus.Error.AccessDenied")
                && out.contains("only root may change the boot state (the caller is uid 65534)"),
            "{call:?} refused by the service: {out}"
        );
    }
    assert_eq!(*asked.lock().unwrap(), [], "nothing reached the manager");
    // Reading is still everyone's.
    let (ok, out) = send_as_nobody(&bus.address, &[&dest, HC_PATH, &to_us("GetStatus")]);
    assert!(ok, "{out}");

    let conn = client(&bus);
    let p = proxy(&conn);
    let said: String = p.call("Arm", &("3", 2u8)).expect("Arm as root");
    assert!(said.starts_with("done: Arm"), "{said}");
    let _: String = p.call("Arm", &("", 0u8)).expect("Arm as root");
    let _: String = p.call("MarkGood", &("",)).expect("MarkGood as root");
    let _: String = p.call("MarkBad", &("4",)).expect("MarkBad as root");
    let _: String = p.call("Rollback", &(false,)).expect("Rollback as root");
    let err = p.call::<_, _, String>("MarkGood", &("bad",)).unwrap_err();
    assert!(
        matches!(&err, zbus::Error::MethodError(name, Some(msg), _)
            if name.as_str() == "org.freedesktop.DBus.Error.InvalidArgs"
                && msg.contains("MarkGood: no snapshot \"bad\"")),
        "{err:?}"
    );
    let err = p
        .call::<_, _, String>("MarkGood", &("broken",))
        .unwrap_err();
    assert!(
        matches!(&err, zbus::Error::MethodError(name, Some(msg), _)
            if name.as_str() == "org.freedesktop.DBus.Error.Failed"
                && msg.contains("grubenv: input/output error")),
        "{err:?}"
    );
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        *asked.lock().unwrap(),
        [
            Request::Arm {
                snapshot: some("3"),
                tries: Some(2)
            },
            Request::Arm {
                snapshot: None,
                tries: None
            },
            Request::MarkGood { snapshot: None },
            Request::MarkBad {
                snapshot: some("4")
            },
            Request::Rollback { no_reboot: false },
            Request::MarkGood {
                snapshot: some("bad")
            },
            Request::MarkGood {
                snapshot: some("broken")
            },
        ]
    );
}

#[test]
fn fetch_status_uses_the_service_only_when_it_runs() {
    // No bus at all.
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("unix:path={}", dir.path().join("no-bus").display());
    assert_eq!(fetch_status(Some(&nowhere), RunningOnly).unwrap(), None);

    // A bus, but nobody owns the name (and none can be activated: a user's
    // `status` asking with activation gets "not there", not an error).
    let bus = PrivateBus::start();
    assert_eq!(fetch_status(Some(&bus.address), RunningOnly).unwrap(), None);
    assert_eq!(fetch_status(Some(&bus.address), Allow).unwrap(), None);

    // The service runs.
    let service = start(Some(&bus.address), fixed(status()), fixed(json!({}))).unwrap();
    assert_eq!(
        fetch_status(Some(&bus.address), RunningOnly).unwrap(),
        Some(status())
    );
    assert_eq!(
        fetch_status(Some(&bus.address), Allow).unwrap(),
        Some(status())
    );

    // A second instance cannot take the name.
    let err = start(Some(&bus.address), fixed(status()), fixed(json!({}))).unwrap_err();
    assert!(format!("{err:#}").contains(HC_NAME), "{err:#}");

    // A service that cannot answer is an error, not "not running".
    drop(service);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fetch_status(Some(&bus.address), RunningOnly)
        .unwrap()
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the name was not released in 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let failing: Provider = Box::new(|| Err(anyhow::anyhow!("boot environment: torn")));
    let _service = start(Some(&bus.address), failing, fixed(json!({}))).unwrap();
    let err = fetch_status(Some(&bus.address), RunningOnly).unwrap_err();
    assert!(format!("{err:#}").contains("torn"), "{err:#}");
}

#[test]
fn the_checker_announces_a_promotion_on_the_bus() {
    let bus = PrivateBus::start();
    let conn = client(&bus);
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(IFACE)
        .unwrap()
        .member("Promoted")
        .unwrap()
        .build();
    let mut signals =
        zbus::blocking::MessageIterator::for_match_rule(rule, &conn, None).expect("subscribing");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Some(m) = signals.next() {
            let _ = tx.send(m);
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let actions = SystemActions::new(
        Root::new(dir.path()),
        ActionSettings {
            bus: Bus::Address(bus.address.clone()),
            ..ActionSettings::default()
        },
    );
    actions
        .notify_promoted(
            "@/.snapshots/2/snapshot passed its health checks and is now known-good",
            &json!({"verdict": "pass"}),
        )
        .expect("emitting Promoted");

    let msg = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the Promoted signal within 10 s")
        .expect("a message");
    let header = msg.header();
    assert_eq!(header.path().unwrap().as_str(), HC_PATH);
    let (summary, text): (String, String) = msg.body().deserialize().unwrap();
    assert!(summary.contains("@/.snapshots/2/snapshot"), "{summary}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["kind"], "promoted");
    assert_eq!(v["summary"], summary);
    assert_eq!(v["details"]["verdict"], "pass");
    // A notice, not an alarm: no login message was written.
    assert!(!dir.path().join("run/motd.d/health-checker").exists());
}

/// A root with a degraded state file, no boot environment, no btrfs.
fn degraded_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("var/lib/health-checker");
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::write(
        state_dir.join("state.json"),
        json!({
            "degraded": {
                "since": 5,
                "reason": "known-good failed twice",
                "snapshot": {"id": 256, "path": "@/.snapshots/1/snapshot"},
            },
            "boot": {"boot_id": "b1", "early": "pass", "late": "fail"},
        })
        .to_string(),
    )
    .unwrap();
    dir
}

/// Wait until the service answers on `address`.
fn wait_for_service(address: &str, child: &mut std::process::Child) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = fetch_status(Some(address), RunningOnly).expect("fetching the status") {
            return v;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("health-checker dbus-service exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the service did not start in 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn_service(root: &Path, address: &str) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_health-checker"))
            .arg("--root")
            .arg(root)
            .args(["dbus-service", "--bus-address", address])
            .stdin(Stdio::null())
            .spawn()
            .expect("starting health-checker dbus-service"),
    )
}

#[test]
fn the_subcommand_serves_the_state_of_its_root() {
    let bus = PrivateBus::start();
    let root = degraded_root();
    let mut child = spawn_service(root.path(), &bus.address);
    let status = wait_for_service(&bus.address, &mut child.0);

    // `health-checker status --json`'s document, pieces that cannot be read
    // (no btrfs, no boot environment here) in place as errors.
    assert_eq!(status["state"], "degraded");
    assert_eq!(status["degraded"]["reason"], "known-good failed twice");
    let env_error = status["boot_environment"]["error"].as_str().unwrap_or("");
    assert!(env_error.contains("grubenv"), "{status}");

    let conn = client(&bus);
    let p = proxy(&conn);
    assert!(p.get_property::<bool>("Degraded").unwrap());
    // A property whose piece could not be read fails with the cause.
    let err = p.get_property::<String>("KnownGood").unwrap_err();
    assert!(err.to_string().contains("grubenv"), "{err}");
    let text: String = p.call("GetLastVerdict", &()).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["boot_id"], "b1");
    assert_eq!(v["early"], "pass");
    assert_eq!(v["late"], "fail");

    // A state file that turns corrupt: GetLastVerdict fails naming it, the
    // status still answers and says why the state is missing.
    std::fs::write(
        root.path().join("var/lib/health-checker/state.json"),
        b"{\"degraded\": 3",
    )
    .unwrap();
    let err = p.call::<_, _, String>("GetLastVerdict", &()).unwrap_err();
    assert!(err.to_string().contains("state.json"), "{err}");
    let status = fetch_status(Some(&bus.address), RunningOnly)
        .unwrap()
        .unwrap();
    let degraded_error = status["degraded"]["error"].as_str().unwrap_or("");
    assert!(degraded_error.contains("cannot be interpreted"), "{status}");
    let err = p.get_property::<bool>("Degraded").unwrap_err();
    assert!(err.to_string().contains("state.json"), "{err}");
    assert!(child.0.try_wait().unwrap().is_none(), "still serving");
}

/// The bus policy file shipped in `systemd-units/`.
fn policy_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../systemd-units/io.github.healthchecker.HealthChecker1.conf")
}

/// A bus configured like the system bus (deny by default, like Debian's
/// `system.conf`) with our policy file included.
fn system_like_bus() -> PrivateBus {
    PrivateBus::start_with_policy(&format!(
        r#"  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include ignore_missing="no">{}</include>"#,
        policy_file().display()
    ))
}

/// `dbus-send` as the unprivileged user `nobody` (65534): its exit status
/// and output.
fn send_as_nobody(address: &str, args: &[&str]) -> (bool, String) {
    let setpriv = require::program("setpriv", "util-linux");
    let dbus_send = require::program("dbus-send", "dbus-bin");
    require::root("sending as another user");
    let out = Command::new(setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(dbus_send)
        .arg(format!("--bus={address}"))
        .args(["--print-reply", "--reply-timeout=10000"])
        .args(args)
        .output()
        .expect("running dbus-send through setpriv");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_bus_policy_lets_everyone_read_and_only_root_change_anything() {
    let bus = system_like_bus();
    // Root may own the name.
    let _service = start(Some(&bus.address), fixed(status()), fixed(json!({}))).unwrap();
    let to_us = |member: &str| format!("{IFACE}.{member}");
    let dest = format!("--dest={HC_NAME}");

    // Everyone may read.
    for call in [
        vec![dest.as_str(), HC_PATH, &to_us("GetStatus")],
        vec![dest.as_str(), HC_PATH, &to_us("GetLastVerdict")],
        vec![
            dest.as_str(),
            HC_PATH,
            "org.freedesktop.DBus.Introspectable.Introspect",
        ],
        vec![
            dest.as_str(),
            HC_PATH,
            "org.freedesktop.DBus.Properties.Get",
            &format!("string:{IFACE}"),
            "string:KnownGood",
        ],
        vec![
            dest.as_str(),
            HC_PATH,
            "org.freedesktop.DBus.Properties.GetAll",
            &format!("string:{IFACE}"),
        ],
        vec![dest.as_str(), HC_PATH, "org.freedesktop.DBus.Peer.Ping"],
    ] {
        let (ok, out) = send_as_nobody(&bus.address, &call);
        assert!(ok, "nobody may call {call:?}: {out}");
    }
    let (_, out) = send_as_nobody(&bus.address, &[&dest, HC_PATH, &to_us("GetStatus")]);
    assert!(out.contains("@/.snapshots/1/snapshot"), "{out}");

    // Nobody else may write a property, call anything else, or own the name:
    // the bus refuses (AccessDenied) before the service sees the call.
    for call in [
        vec![
            dest.as_str(),
            HC_PATH,
            "org.freedesktop.DBus.Properties.Set",
            &format!("string:{IFACE}"),
            "string:Trial",
            "variant:string:@/.snapshots/9/snapshot",
        ],
        vec![dest.as_str(), HC_PATH, &to_us("MarkGood"), "string:"],
        vec![dest.as_str(), HC_PATH, &to_us("Arm"), "string:2", "byte:2"],
        vec![dest.as_str(), HC_PATH, &to_us("Rollback"), "boolean:true"],
        vec![
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.RequestName",
            &format!("string:{HC_NAME}"),
            "uint32:0",
        ],
    ] {
        let (ok, out) = send_as_nobody(&bus.address, &call);
        assert!(!ok, "nobody must not call {call:?}: {out}");
        assert!(
            out.contains("org.freedesktop.DBus.Error.AccessDenied"),
            "{call:?} refused by the bus policy: {out}"
        );
    }

    // Root gets through to the service (which then answers for itself:
    // this one was started without the management methods).
    let conn = client(&bus);
    let err = proxy(&conn)
        .call::<_, _, String>("MarkGood", &("",))
        .unwrap_err()
        .to_string();
    assert!(err.contains("NotSupported"), "{err}");
}

#[test]
fn the_service_exits_with_an_error_when_the_bus_goes_away() {
    let bus = PrivateBus::start();
    let root = degraded_root();
    let mut child = Command::new(env!("CARGO_BIN_EXE_health-checker"))
        .arg("--root")
        .arg(root.path())
        .args(["dbus-service", "--bus-address", &bus.address])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting health-checker dbus-service");
    wait_for_service(&bus.address, &mut child);
    drop(bus);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the service still runs 20 s after its bus went away");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("the connection to unix:path="), "{stderr}");
}
