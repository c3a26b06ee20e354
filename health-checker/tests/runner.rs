//! The runner under hostile probes: timeouts with SIGTERM ignored and
//! children left behind, output floods, processes escaping the group,
//! `after` ordering and cycles, the parallelism bound.

mod common;
mod probe_root;

use std::time::{Duration, Instant};

use common::process::{ended_within, read_pid};

use health_checker::verdict::{Outcome, Phase, Severity, Verdict};
use probe_root::{find, manifest, TestRoot};

/// Live (non-zombie) processes whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...; comm may hold spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2].parse() == Ok(pgid) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_timeout_kills_the_whole_group_even_when_sigterm_is_ignored() {
    let t = TestRoot::new();
    let pidfile = t.path().join("pgid");
    t.config("[probes]\nkill_grace = \"300ms\"\n");
    t.vendor(
        "stubborn",
        &manifest("early", "required", "timeout = \"500ms\"\n"),
        Some(&format!(
            "echo $$ > {}\ntrap '' TERM\n(sleep 1000) &\n(sleep 1000 &) \necho started\nwhile :; do sleep 1; done",
            pidfile.display()
        )),
    );
    let start = Instant::now();
    let r = t.run(Phase::Early);
    let took = start.elapsed();
    let p = find(&r, "stubborn");
    assert_eq!(p.result, Outcome::Timeout, "{p:?}");
    assert_eq!(p.reason.as_deref(), Some("timed out after 500ms"));
    assert_eq!(p.output, "started\n");
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(took < Duration::from_secs(3), "took {took:?}");

    let pgid = read_pid(&pidfile);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut left = group_members(pgid);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = group_members(pgid);
    }
    assert!(
        left.is_empty(),
        "processes of group {pgid} still alive: {left:?}"
    );
}

#[test]
fn processes_left_behind_by_a_passing_probe_are_killed() {
    let t = TestRoot::new();
    let pidfile = t.path().join("pgid");
    t.vendor(
        "leaky",
        &manifest("early", "required", ""),
        Some(&format!(
            "echo $$ > {}\nsleep 1000 >/dev/null 2>&1 &\nexit 0",
            pidfile.display()
        )),
    );
    let r = t.run(Phase::Early);
    assert_eq!(find(&r, "leaky").result, Outcome::Pass);
    let pgid = read_pid(&pidfile);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !group_members(pgid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(group_members(pgid).is_empty());
}

#[test]
fn a_process_that_escapes_the_group_and_holds_the_pipe_cannot_stall_the_runner() {
    if std::process::Command::new("setsid")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("setsid (util-linux) is needed for this test");
    }
    let t = TestRoot::new();
    let pidfile = t.path().join("escaped");
    t.vendor(
        "escape",
        &manifest("early", "required", ""),
        // The probe waits for the PID file (written whole, then renamed)
        // before it exits: the runner ends what it left behind as soon as
        // it exits, maybe before the escaped process wrote its PID.
        Some(&format!(
            "setsid -f sh -c 'echo $$ > {p}.tmp && mv {p}.tmp {p}; exec sleep 30'\n\
             while [ ! -s {p} ]; do sleep 0.01; done\necho bye\nexit 0",
            p = pidfile.display()
        )),
    );
    let start = Instant::now();
    let r = t.run(Phase::Early);
    let took = start.elapsed();
    let p = find(&r, "escape");
    assert_eq!(p.result, Outcome::Pass);
    assert!(p.output.contains("bye"), "{p:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The escaped process carried the run's mark: it is gone too.
    assert_gone(read_pid(&pidfile), "the process that left the group");
}

/// Fail unless `pid` stops running within two seconds (and kill it then,
/// so a failing test leaves nothing behind).
fn assert_gone(pid: i32, what: &str) {
    if !ended_within(pid, Duration::from_secs(2)) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        panic!("{what} ({pid}) outlived its probe");
    }
}

#[test]
fn a_probe_that_moves_into_the_checkers_process_group_is_killed_at_its_timeout() {
    let perl = common::require::program("perl", "perl-base");
    let t = TestRoot::new();
    let pidfile = t.path().join("mover");
    t.config("[probes]\nkill_grace = \"300ms\"\n");
    // The probe joins the checker's process group (its parent's), ignores
    // SIGTERM and drops its environment, so neither the kill of its own
    // group nor the HC_RUN_ID sweep can reach it.
    t.vendor(
        "mover",
        &manifest("early", "required", "timeout = \"1s\"\n"),
        Some(&format!(
            "echo $$ > {p}.tmp && mv {p}.tmp {p}\n\
             exec {perl} -e 'setpgrp(0, getpgrp(getppid())) or die \"setpgrp: $!\"; \
             $SIG{{TERM}} = \"IGNORE\"; %ENV = (); exec \"sleep\", \"1000\"'",
            p = pidfile.display(),
            perl = perl.display()
        )),
    );
    let root = t.root();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = health_checker::probes::check_phase(&root, Phase::Early, &Default::default());
        let _ = tx.send(r);
    });
    let got = rx.recv_timeout(Duration::from_secs(15));
    let pid = read_pid(&pidfile);
    let r = match got {
        Ok(r) => r,
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("the runner still waited for the probe 15 s after its 1 s timeout");
        }
    };
    let p = find(&r, "mover");
    assert_eq!(p.result, Outcome::Timeout, "{p:?}");
    assert_gone(pid, "the probe that moved to the checker's group");
}

#[test]
fn a_double_forked_daemon_of_a_timed_out_probe_is_killed() {
    let t = TestRoot::new();
    let pidfile = t.path().join("daemon");
    t.vendor(
        "daemonizer",
        &manifest("early", "required", "timeout = \"2s\"\n"),
        // The probe waits for the daemon's PID file (written whole, then
        // renamed) before it hangs, so the timeout cannot end the daemon
        // before it is known.
        Some(&format!(
            "(setsid sh -c 'trap \"\" TERM; echo $$ > {p}.tmp && mv {p}.tmp {p}; \
             while :; do sleep 1; done' &) \n\
             while [ ! -s {p} ]; do sleep 0.01; done\n\
             trap '' TERM\nwhile :; do sleep 1; done",
            p = pidfile.display()
        )),
    );
    let r = t.run(Phase::Early);
    assert_eq!(find(&r, "daemonizer").result, Outcome::Timeout);
    assert_gone(read_pid(&pidfile), "the daemon");
}

#[test]
fn an_output_flood_is_capped_with_head_tail_and_a_mark() {
    let t = TestRoot::new();
    t.config("[probes]\noutput_limit = 1000\n");
    t.vendor(
        "flood",
        &manifest("early", "wanted", ""),
        Some("echo FIRST\nyes 'spam spam spam' | head -c 50000000\necho\necho LAST"),
    );
    let r = t.run(Phase::Early);
    let p = find(&r, "flood");
    assert_eq!(
        p.result,
        Outcome::Pass,
        "{}",
        p.reason.as_deref().unwrap_or("")
    );
    assert!(p.output.starts_with("FIRST\nspam"), "{}", &p.output[..40]);
    assert!(p.output.ends_with("\nLAST\n"));
    assert!(p
        .output
        .contains("bytes of output dropped (output_limit 1000)"));
    assert!(p.output.len() < 1100, "{} bytes kept", p.output.len());
}

#[test]
fn after_orders_probes() {
    let t = TestRoot::new();
    let log = t.path().join("order");
    let step = |name: &str, nap: &str| format!("sleep {nap}; echo {name} >> {}", log.display());
    t.config("[probes]\nparallel = 4\n");
    t.vendor(
        "a",
        &manifest("late", "required", ""),
        Some(&step("a", "0.3")),
    );
    t.vendor(
        "b",
        &manifest("late", "required", "after = [\"a\"]\n"),
        Some(&step("b", "0")),
    );
    t.vendor(
        "c",
        &manifest("late", "required", "after = [\"b\", \"a\"]\n"),
        Some(&step("c", "0")),
    );
    // After a probe of another phase, or a masked one: ordering only, no error.
    t.vendor("e", &manifest("early", "required", ""), Some("exit 0"));
    t.vendor("m", &manifest("late", "required", ""), Some("exit 0"));
    std::fs::create_dir_all(t.path().join("etc/health-checker/plugins.d")).unwrap();
    std::os::unix::fs::symlink(
        "/dev/null",
        t.path().join("etc/health-checker/plugins.d/m.toml"),
    )
    .unwrap();
    t.vendor(
        "d",
        &manifest("late", "required", "after = [\"e\", \"m\"]\n"),
        // d is ordered after nothing of its phase and runs beside a, b and
        // c; it waits (at most 10 s) until c has written, so the log's order
        // does not depend on how fast a loaded machine starts b and c.
        Some(&format!(
            "i=0; while ! grep -qx c {log} && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done\n\
             echo d >> {log}",
            log = log.display()
        )),
    );
    let r = t.run(Phase::Late);
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    let order = std::fs::read_to_string(&log).unwrap();
    assert_eq!(order, "a\nb\nc\nd\n");
}

#[test]
fn a_cycle_or_unknown_name_is_an_error_that_fails_the_phase() {
    let t = TestRoot::new();
    t.vendor(
        "x",
        &manifest("late", "wanted", "after = [\"y\"]\n"),
        Some("exit 0"),
    );
    t.vendor(
        "y",
        &manifest("late", "wanted", "after = [\"x\"]\n"),
        Some("exit 0"),
    );
    t.vendor(
        "z",
        &manifest("late", "wanted", "after = [\"x\"]\n"),
        Some("exit 0"),
    );
    let typo = t.vendor(
        "u",
        &manifest("late", "wanted", "after = [\"nosuch\"]\n"),
        Some("exit 0"),
    );
    t.vendor("free", &manifest("late", "required", ""), Some("exit 0"));
    let r = t.run(Phase::Late);
    assert_eq!(r.verdict, Verdict::Fail);
    for name in ["x", "y"] {
        let p = find(&r, name);
        assert_eq!((p.result, p.severity), (Outcome::Error, Severity::Required));
        assert_eq!(
            p.reason.as_deref(),
            Some("`after` ordering cycle among probes: x, y")
        );
    }
    assert_eq!(
        find(&r, "z").reason.as_deref(),
        Some("runs after x, which cannot run")
    );
    assert_eq!(
        find(&r, "u").reason.as_deref(),
        Some(format!("{}: after = \"nosuch\" names no probe", typo.display()).as_str())
    );
    assert_eq!(find(&r, "free").result, Outcome::Pass);
}

#[test]
fn parallelism_is_bounded() {
    let t = TestRoot::new();
    let dir = t.path().join("running");
    std::fs::create_dir(&dir).unwrap();
    t.config("[probes]\nparallel = 2\n");
    // Each probe records how many were running when it started.
    for i in 0..6 {
        t.vendor(
            &format!("p{i}"),
            &manifest("late", "required", ""),
            Some(&format!(
                "touch {d}/$HC_PROBE; ls {d} | wc -l > {d}/../seen-$HC_PROBE; sleep 0.2; rm {d}/$HC_PROBE",
                d = dir.display()
            )),
        );
    }
    let start = Instant::now();
    let r = t.run(Phase::Late);
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    assert!(start.elapsed() >= Duration::from_millis(600));
    for i in 0..6 {
        let seen: u32 = std::fs::read_to_string(t.path().join(format!("seen-p{i}")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(seen <= 2, "p{i} saw {seen} running");
    }
}
