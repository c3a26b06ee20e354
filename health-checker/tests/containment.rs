//! cgroup v2 containment of probes on the real kernel: a probe's daemon
//! that double-forks, calls `setsid`, clears its environment and ignores
//! SIGTERM is gone after the check; task and memory limits stop a fork
//! bomb and a memory hog with the limit as the reason; each probe's CPU
//! time and peak memory are recorded; and with no writable cgroup2 the
//! checker says so and falls back to process groups.
//!
//! These need root (cgroups are created under the checker's own). On a
//! machine whose cgroup2 hierarchy lacks the `pids` or `memory` controller
//! (cgroup v1 holds them), the limit tests say loudly that they are
//! skipped; the VM suite runs them under systemd (`hostile_probe`).

mod common;
mod probe_root;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{ended_within, read_pid};
use health_checker::probes::cgroup;
use health_checker::verdict::{Outcome, Phase};
use probe_root::{find, manifest, TestRoot};

/// The checker's cgroup subtree, or `None` (said loudly) when the test
/// cannot run here.
fn tree(test: &str) -> &'static cgroup::Tree {
    common::require::root(test);
    cgroup::tree().unwrap_or_else(|| {
        panic!("{test}: running as root but no writable cgroup2 hierarchy was found")
    })
}

/// Say on the terminal, whatever the test harness captures, that a test
/// did not run and why.
fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Kill `pid` and fail, so a failing test leaves nothing running.
fn assert_gone(pid: i32, what: &str) {
    if !ended_within(pid, Duration::from_secs(1)) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        panic!("{what} ({pid}) outlived its probe");
    }
}

/// The leaves of probe `name` under the checker's subtree (none once its
/// run ends).
fn leaves(t: &cgroup::Tree, name: &str) -> Vec<String> {
    std::fs::read_dir(t.base())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("probe-") && n.ends_with(&format!("-{name}")))
                .collect()
        })
        .unwrap_or_default()
}

/// A probe whose child double-forks, calls `setsid`, clears its
/// environment (so no mark of the run is left on it) and ignores SIGTERM.
fn escape_script(pidfile: &std::path::Path) -> String {
    format!(
        "(setsid /usr/bin/env -i /bin/sh -c 'trap \"\" TERM; echo $$ > {p}.tmp && mv {p}.tmp {p}; \
         exec /bin/sleep 1000' </dev/null >/dev/null 2>&1 &)\n\
         while [ ! -s {p} ]; do sleep 0.01; done\nexit 0",
        p = pidfile.display()
    )
}

#[test]
fn a_daemon_that_leaves_the_group_and_clears_its_environment_is_killed() {
    common::require::root("the escape test (cgroups)");
    let root = TestRoot::new();
    let pidfile = root.path().join("escaped");
    root.vendor(
        "escape",
        &manifest("early", "required", ""),
        Some(&escape_script(&pidfile)),
    );
    // The checker itself, as a boot runs it.
    let start = Instant::now();
    let out = common::cli::hc(root.path(), &["probes", "run", "escape"]);
    let text = common::cli::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // The daemon loops forever: a checker that waited for it would never
    // return. The bound only keeps a busy CI machine from failing the test.
    assert!(start.elapsed() < Duration::from_secs(30), "{text}");
    let pid = read_pid(&pidfile);
    assert_gone(
        pid,
        "the daemon that left the group with a cleared environment",
    );
}

#[test]
fn a_timed_out_probe_that_ignores_sigterm_is_killed_with_its_cgroup() {
    let t = tree("timeout");
    let root = TestRoot::new();
    let pidfile = root.path().join("escaped");
    root.config("[probes]\nkill_grace = \"200ms\"\n");
    root.vendor(
        "hang",
        &manifest("early", "required", "timeout = \"1s\"\n"),
        Some(&format!(
            "{}\ntrap '' TERM\nwhile :; do sleep 1; done",
            escape_script(&pidfile).trim_end_matches("exit 0")
        )),
    );
    let start = Instant::now();
    let r = root.run(Phase::Early);
    let p = find(&r, "hang");
    assert_eq!(p.result, Outcome::Timeout, "{p:?}");
    assert!(
        // The daemon loops forever; a wait for it would never end.
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert_gone(read_pid(&pidfile), "the daemon of a timed-out probe");
    assert_eq!(leaves(t, "hang"), Vec::<String>::new());
}

#[test]
fn a_fork_bomb_is_stopped_by_its_task_limit() {
    let t = tree("fork bomb");
    if let Some(note) = t.limits_note().filter(|n| n.contains("pids")) {
        skipped("a_fork_bomb_is_stopped_by_its_task_limit", note);
        return;
    }
    let root = TestRoot::new();
    root.vendor(
        "bomb",
        &manifest("early", "wanted", "timeout = \"10s\"\ntasks_max = 20\n"),
        // Long enough for the bomb to reach its limit on a slow machine.
        Some("b() { b | b & }\nb\nsleep 5\n"),
    );
    let start = Instant::now();
    let r = root.run(Phase::Early);
    let p = find(&r, "bomb");
    assert_eq!(p.result, Outcome::Fail, "{p:?}");
    let reason = p.reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("stopped by its task limit (tasks_max = 20)"),
        "{reason}"
    );
    assert!(start.elapsed() < Duration::from_secs(9));
    assert_eq!(leaves(t, "bomb"), Vec::<String>::new());
}

#[test]
fn a_memory_hog_is_stopped_by_its_memory_limit() {
    let t = tree("memory hog");
    if let Some(note) = t.limits_note().filter(|n| n.contains("memory")) {
        skipped("a_memory_hog_is_stopped_by_its_memory_limit", note);
        return;
    }
    let root = TestRoot::new();
    root.vendor(
        "hog",
        &manifest("early", "wanted", "memory_max = \"32M\"\n"),
        // dd reads into one buffer of 256 MiB, touching every page.
        Some("dd if=/dev/zero of=/dev/null bs=256M count=1\n"),
    );
    let r = root.run(Phase::Early);
    let p = find(&r, "hog");
    assert_eq!(p.result, Outcome::Fail, "{p:?}");
    let reason = p.reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("stopped by its memory limit (memory_max = 32 MiB)"),
        "{reason}"
    );
    let peak = p.cost.peak_memory_bytes.expect("peak memory");
    assert!(peak <= 33 << 20, "peak {peak} above the limit");
    assert_eq!(leaves(t, "hog"), Vec::<String>::new());
}

#[test]
fn cpu_time_and_peak_memory_are_recorded() {
    let root = TestRoot::new();
    root.vendor(
        "busy",
        &manifest("early", "required", ""),
        Some("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done\n"),
    );
    let r = root.run(Phase::Early);
    let p = find(&r, "busy");
    assert_eq!(p.result, Outcome::Pass, "{p:?}");
    let cpu = p.cost.cpu_us.expect("CPU time");
    // 200000 rounds of shell arithmetic take tens of milliseconds at least.
    assert!(cpu >= 10_000, "cpu {cpu} us");
    assert!(
        cpu <= (p.duration_ms + 50) * 1000 * 2,
        "cpu {cpu} us, wall {} ms",
        p.duration_ms
    );
    let peak = p.cost.peak_memory_bytes.expect("peak memory");
    assert!((100 << 10..1 << 30).contains(&peak), "peak {peak}");
    let json = serde_json::to_value(p).unwrap();
    assert!(
        json["cpu_us"].is_u64() && json["peak_memory_bytes"].is_u64(),
        "{json}"
    );
}

#[test]
fn without_a_writable_cgroup2_the_checker_warns_and_contains_by_process_group() {
    common::require::root("the fallback test (a private mount namespace)");
    let root = TestRoot::new();
    let pidfile = root.path().join("left");
    root.vendor(
        "leaver",
        &manifest("early", "required", ""),
        // Leaves its process group but keeps its environment: the sweep
        // for the run's mark still finds it.
        Some(&format!(
            "(setsid /bin/sh -c 'trap \"\" TERM; echo $$ > {p}.tmp && mv {p}.tmp {p}; \
             exec /bin/sleep 1000' </dev/null >/dev/null 2>&1 &)\n\
             while [ ! -s {p} ]; do sleep 0.01; done\nexit 0",
            p = pidfile.display()
        )),
    );
    // Every cgroup2 mount read-only, in a mount namespace of its own.
    let remount = "for m in $(awk '$9 == \"cgroup2\" {print $5}' /proc/self/mountinfo); do \
                   mount -o remount,bind,ro \"$m\" || exit 99; done; exec \"$@\"";
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            remount,
            "sh",
        ])
        .arg(env!("CARGO_BIN_EXE_health-checker"))
        .arg("--root")
        .arg(root.path())
        .args(["probes", "run", "leaver"])
        .output()
        .expect("running unshare (util-linux)");
    let text = common::cli::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("no cgroup v2 containment"), "{text}");
    assert!(text.contains("read-only"), "{text}");
    assert_gone(read_pid(&pidfile), "the process that left its group");
}

/// A fake systemd manager on a private bus that answers
/// `StartTransientUnit` as told and records what it was asked.
mod fake_scope {
    use std::sync::{Arc, Mutex};

    use zbus::object_server::SignalEmitter;
    use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue};

    use crate::common::dbus::PrivateBus;

    /// How the fake answers.
    #[derive(Clone, Copy)]
    pub enum Answer {
        /// Its job ends with this result (`done`, `failed`, ...).
        Job(&'static str),
        /// Its job never ends.
        Never,
        /// The call is refused.
        Refuse,
    }

    /// One call: unit name, mode, properties (name, signature, value).
    pub type Call = (String, String, Vec<(String, String, String)>);

    struct Manager {
        answer: Answer,
        calls: Arc<Mutex<Vec<Call>>>,
    }

    #[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
    impl Manager {
        async fn start_transient_unit(
            &self,
            #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
            name: String,
            mode: String,
            properties: Vec<(String, OwnedValue)>,
            _aux: Vec<(String, Vec<(String, OwnedValue)>)>,
        ) -> zbus::fdo::Result<OwnedObjectPath> {
            self.calls.lock().unwrap().push((
                name.clone(),
                mode,
                properties
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.value_signature().to_string(),
                            format!("{}", **v),
                        )
                    })
                    .collect(),
            ));
            let job: OwnedObjectPath = ObjectPath::try_from("/org/freedesktop/systemd1/job/7")
                .unwrap()
                .into();
            let other: OwnedObjectPath = ObjectPath::try_from("/org/freedesktop/systemd1/job/6")
                .unwrap()
                .into();
            let removed = |id: u32, path: &OwnedObjectPath, unit: &str, result: &str| {
                (id, path.clone(), unit.to_string(), result.to_string())
            };
            match self.answer {
                Answer::Refuse => {
                    return Err(zbus::fdo::Error::AccessDenied("fake: not allowed".into()))
                }
                Answer::Never => {}
                // Sent before the reply: the client must already be
                // listening. Another job's end first, which it must skip.
                Answer::Job(result) => {
                    for body in [
                        removed(6, &other, "other.service", "failed"),
                        removed(7, &job, &name, result),
                    ] {
                        emitter
                            .emit("org.freedesktop.systemd1.Manager", "JobRemoved", &body)
                            .await
                            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
                    }
                }
            }
            Ok(job)
        }
    }

    /// The fake, serving on its own bus.
    pub struct Fake {
        pub bus: PrivateBus,
        _conn: zbus::blocking::Connection,
        pub calls: Arc<Mutex<Vec<Call>>>,
    }

    pub fn start(answer: Answer) -> Fake {
        let bus = PrivateBus::start();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let conn = zbus::blocking::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .name("org.freedesktop.systemd1")
            .unwrap()
            .serve_at(
                "/org/freedesktop/systemd1",
                Manager {
                    answer,
                    calls: Arc::clone(&calls),
                },
            )
            .unwrap()
            .build()
            .expect("serving the fake systemd");
        Fake {
            bus,
            _conn: conn,
            calls,
        }
    }
}

#[test]
fn the_scope_is_asked_of_systemd_with_the_process_delegated_and_its_job_awaited() {
    use health_checker::systemd::Bus;
    let fake = fake_scope::start(fake_scope::Answer::Job("done"));
    let bus = Bus::Address(fake.bus.address.clone());
    let name = cgroup::start_scope(&bus, 4242, Duration::from_secs(5)).unwrap();
    assert_eq!(name, "health-checker-check-4242.scope");
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let (unit, mode, props) = &calls[0];
    assert_eq!((unit.as_str(), mode.as_str()), (name.as_str(), "fail"));
    let prop = |n: &str| {
        props
            .iter()
            .find(|p| p.0 == n)
            .map(|p| (p.1.clone(), p.2.clone()))
            .unwrap_or_else(|| panic!("no {n} in {props:?}"))
    };
    assert_eq!(prop("PIDs"), ("au".into(), "[uint32 4242]".into()));
    assert_eq!(prop("Delegate"), ("b".into(), "true".into()));
    assert_eq!(
        prop("CollectMode"),
        ("s".into(), "\"inactive-or-failed\"".into())
    );
    assert_eq!(prop("Description").0, "s");
}

#[test]
fn a_scope_systemd_will_not_start_is_an_error_that_says_why_within_the_bound() {
    use fake_scope::Answer;
    use health_checker::systemd::Bus;
    for (answer, want) in [
        (Answer::Job("failed"), "ended \"failed\""),
        (Answer::Refuse, "fake: not allowed"),
        (
            Answer::Never,
            "did not start health-checker-check-4242.scope within 1 s",
        ),
    ] {
        let fake = fake_scope::start(answer);
        let bus = Bus::Address(fake.bus.address.clone());
        let start = Instant::now();
        let err = cgroup::start_scope(&bus, 4242, Duration::from_secs(1)).unwrap_err();
        assert!(err.contains(want), "{err}");
        // The bound holds whatever systemd does (slack for a busy machine).
        assert!(start.elapsed() < Duration::from_secs(3), "{err}");
    }
    // No bus at all.
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::Address(format!("unix:path={}", dir.path().join("none").display()));
    let err = cgroup::start_scope(&bus, 4242, Duration::from_secs(1)).unwrap_err();
    assert!(err.contains("connecting"), "{err}");
}

#[test]
fn without_systemd_no_scope_is_asked_for_and_the_mount_is_used() {
    if std::path::Path::new("/run/systemd/system").exists() {
        skipped(
            "without_systemd_no_scope_is_asked_for_and_the_mount_is_used",
            "systemd runs this machine",
        );
        return;
    }
    common::require::root("the no-systemd test (cgroups)");
    let root = TestRoot::new();
    root.vendor(
        "where",
        &manifest("early", "required", ""),
        Some("sed -n 's/^0::/cgroup /p' /proc/self/cgroup\n"),
    );
    let out = common::cli::hc(root.path(), &["-v", "probes", "run", "where"]);
    let text = common::cli::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("(cgroup2 mount used directly)"), "{text}");
    assert!(!text.contains("scope"), "{text}");
    let probe_cgroup = text
        .lines()
        .find_map(|l| l.strip_prefix("cgroup "))
        .unwrap_or_else(|| panic!("the probe printed no cgroup: {text}"));
    assert!(probe_cgroup.contains("/health-checker-"), "{probe_cgroup}");
}
