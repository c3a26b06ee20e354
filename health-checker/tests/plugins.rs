//! Plugin discovery, override and mask, legacy directories, severities,
//! the skip code, safety refusals and malformed files, on temporary roots.

mod common;
mod probe_root;

use std::os::unix::fs::PermissionsExt;

use health_checker::probes::{discover, Kind};
use health_checker::verdict::{Outcome, Phase, Severity, Verdict};
use probe_root::{find, is_root, manifest, TestRoot};

#[test]
fn admin_file_replaces_vendor_file_and_dev_null_masks() {
    let t = TestRoot::new();
    t.vendor("a", &manifest("late", "required", ""), Some("exit 1"));
    let admin = t.admin(
        "a",
        &manifest("late", "required", "exec = [\"/bin/true\"]\n"),
        None,
    );
    t.vendor("b", &manifest("late", "required", ""), Some("exit 1"));
    std::os::unix::fs::symlink(
        "/dev/null",
        t.path().join("etc/health-checker/plugins.d/b.toml"),
    )
    .unwrap();

    let found = discover(&t.root(), &t.load().probes);
    let a = found.probes.iter().find(|p| p.name == "a").unwrap();
    assert_eq!(a.origin, admin);
    assert_eq!(
        a.overrides,
        Some(t.path().join("usr/lib/health-checker/plugins.d/a.toml"))
    );
    assert_eq!(found.masked.len(), 1);
    assert_eq!(found.masked[0].name, "b");

    let r = t.run(Phase::Late);
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    assert_eq!(find(&r, "a").result, Outcome::Pass);
    assert!(r.probes.iter().all(|p| p.name != "b"));
}

#[test]
fn required_fails_the_phase_wanted_does_not_and_77_skips() {
    let t = TestRoot::new();
    t.vendor("ok", &manifest("early", "required", ""), Some("echo fine"));
    t.vendor(
        "skip",
        &manifest("early", "required", ""),
        Some("echo n/a; exit 77"),
    );
    t.vendor(
        "meh",
        &manifest("early", "wanted", ""),
        Some("echo broken; exit 2"),
    );
    t.vendor("late", &manifest("late", "required", ""), Some("exit 1"));
    let r = t.run(Phase::Early);
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    assert_eq!(find(&r, "ok").result, Outcome::Pass);
    assert_eq!(find(&r, "ok").output, "fine\n");
    assert_eq!(find(&r, "skip").result, Outcome::Skip);
    assert_eq!(
        find(&r, "skip").reason.as_deref(),
        Some("not applicable: n/a")
    );
    let meh = find(&r, "meh");
    assert_eq!(
        (meh.result, meh.severity),
        (Outcome::Fail, Severity::Wanted)
    );
    assert_eq!(meh.reason.as_deref(), Some("exited with status 2: broken"));
    assert!(r.probes.iter().all(|p| p.name != "late"));

    t.vendor("bad", &manifest("early", "required", ""), Some("exit 1"));
    let r = t.run(Phase::Early);
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(
        r.failed_required()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["bad"]
    );
}

#[test]
fn probes_get_the_documented_environment_and_argument() {
    let t = TestRoot::new();
    t.vendor(
        "env",
        &manifest("early", "required", ""),
        Some("echo \"$1 $HC_PHASE $HC_PROBE $HC_ROOT $HC_SNAPSHOT $HC_SNAPSHOT_ID $HC_TRIAL\""),
    );
    let ctx = health_checker::probes::ProbeContext {
        snapshot: Some("@/.snapshots/4/snapshot".into()),
        snapshot_id: Some(262),
        trial: true,
        ..Default::default()
    };
    let r = health_checker::probes::run_phase(&t.root(), &t.load(), Phase::Early, &ctx);
    assert_eq!(
        find(&r, "env").output,
        format!(
            "check early env {} @/.snapshots/4/snapshot 262 1\n",
            t.path().display()
        )
    );
}

#[test]
fn opensuse_legacy_dir_scripts_are_required_late_probes_called_with_check() {
    let t = TestRoot::new();
    t.script(
        "usr/lib/health-checker/legacy/good.sh",
        "[ \"$1\" = check ] || exit 9",
    );
    t.script(
        "usr/lib/health-checker/legacy/bad.sh",
        "echo \"bad $1\"; exit 1",
    );
    t.write("usr/lib/health-checker/legacy/README", "not executable");
    t.config("[probes]\nlegacy_dirs = [\"/usr/lib/health-checker/legacy\"]\n");
    let found = discover(&t.root(), &t.load().probes);
    assert_eq!(found.probes.len(), 2);
    for p in &found.probes {
        assert_eq!(
            (p.kind, p.phase, p.severity),
            (Kind::Legacy, Phase::Late, Severity::Required)
        );
        assert_eq!(p.stop.as_ref().unwrap()[1], "stop");
    }
    let r = t.run(Phase::Late);
    assert_eq!(find(&r, "good.sh").result, Outcome::Pass);
    assert_eq!(find(&r, "bad.sh").output, "bad check\n");
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(t.run(Phase::Early).probes.is_empty());
}

#[test]
fn greenboot_required_and_wanted_scripts_run_without_arguments() {
    let t = TestRoot::new();
    t.script(
        "etc/greenboot/check/required.d/10-ok.sh",
        "[ $# -eq 0 ] || exit 9",
    );
    t.script("etc/greenboot/check/wanted.d/20-flaky.sh", "exit 1");
    t.config("[probes]\ngreenboot_dirs = [\"/etc/greenboot\"]\n");
    let r = t.run(Phase::Late);
    let ok = find(&r, "10-ok.sh");
    assert_eq!(
        (ok.result, ok.severity),
        (Outcome::Pass, Severity::Required)
    );
    let flaky = find(&r, "20-flaky.sh");
    assert_eq!(
        (flaky.result, flaky.severity),
        (Outcome::Fail, Severity::Wanted)
    );
    assert_eq!(r.verdict, Verdict::Pass);

    t.script("etc/greenboot/check/required.d/30-bad.sh", "exit 3");
    assert_eq!(t.run(Phase::Late).verdict, Verdict::Fail);
}

#[test]
fn stop_actions_run_for_every_plugin_that_has_one() {
    let t = TestRoot::new();
    let log = t.path().join("stopped");
    t.vendor(
        "svc",
        &manifest("late", "wanted", "stop = true\n"),
        Some(&format!(
            "[ \"$1\" = stop ] && echo svc >> {}",
            log.display()
        )),
    );
    t.vendor(
        "other",
        &manifest(
            "late",
            "required",
            &format!(
                "exec = [\"/bin/true\"]\nstop = [\"/bin/sh\", \"-c\", \"echo other >> {}\"]\n",
                log.display()
            ),
        ),
        None,
    );
    t.vendor("nostop", &manifest("late", "required", ""), Some("exit 0"));
    let results = health_checker::probes::run_stop_actions(
        &t.root(),
        &t.load(),
        &health_checker::probes::ProbeContext::default(),
    );
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["other", "svc"]);
    assert!(
        results.iter().all(|r| r.result == Outcome::Pass),
        "{results:#?}"
    );
    let mut lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(lines, ["other", "svc"]);
}

#[test]
fn a_malformed_manifest_fails_every_phase_with_file_line_and_key() {
    let t = TestRoot::new();
    let file = t.vendor(
        "typo",
        &manifest("late", "wanted", "exec = [\"/bin/true\"]\nafter = \"x\"\n"),
        None,
    );
    for phase in [Phase::Early, Phase::Late] {
        let r = t.run(phase);
        let p = find(&r, "typo");
        assert_eq!((p.result, p.severity), (Outcome::Error, Severity::Required));
        assert_eq!(
            p.reason.as_deref(),
            Some(
                format!(
                    "{}:5: key `after`: invalid type: string \"x\", expected a sequence",
                    file.display()
                )
                .as_str()
            )
        );
        assert_eq!(r.verdict, Verdict::Fail);
    }
}

#[test]
fn a_missing_program_is_an_error_not_a_pass() {
    let t = TestRoot::new();
    t.vendor(
        "gone",
        &manifest("late", "required", "exec = [\"/nonexistent/check\"]\n"),
        None,
    );
    let r = t.run(Phase::Late);
    let p = find(&r, "gone");
    assert_eq!(p.result, Outcome::Error);
    assert!(
        p.reason
            .as_deref()
            .unwrap()
            .starts_with("cannot run /nonexistent/check: "),
        "{p:?}"
    );
    assert_eq!(r.verdict, Verdict::Fail);
}

#[test]
fn an_unreadable_configuration_fails_the_phase() {
    let t = TestRoot::new();
    t.vendor("ok", &manifest("late", "required", ""), Some("exit 0"));
    let file = t.write(
        "etc/health-checker/config.d/50-local.toml",
        "[probes]\nparallel = \"many\"\n",
    );
    let r = t.run(Phase::Late);
    assert_eq!(r.verdict, Verdict::Fail);
    let p = find(&r, "configuration");
    assert_eq!(p.result, Outcome::Error);
    assert_eq!(
        p.reason.as_deref(),
        Some(
            format!(
                "cannot read the configuration: {}:2: key `probes.parallel`: invalid type: string \"many\", expected u64",
                file.display()
            )
            .as_str()
        )
    );
}

#[test]
fn an_insecure_plugin_is_refused() {
    if !is_root() {
        eprintln!("SKIPPED an_insecure_plugin_is_refused: needs root to own and chown files");
        return;
    }
    let t = TestRoot::new();
    let m = t.vendor("mine", &manifest("early", "wanted", ""), Some("exit 0"));
    assert_eq!(t.run(Phase::Early).verdict, Verdict::Pass);

    // Owned by someone else.
    nix::unistd::chown(&m, Some(nix::unistd::Uid::from_raw(1000)), None).unwrap();
    let r = t.run(Phase::Early);
    let p = find(&r, "mine");
    assert_eq!(p.result, Outcome::Error);
    assert_eq!(
        p.reason.as_deref(),
        Some(
            format!(
                "refusing plugin file {}: owned by uid 1000, not root",
                m.display()
            )
            .as_str()
        )
    );
    assert_eq!(
        r.verdict,
        Verdict::Fail,
        "a refused wanted plugin still fails"
    );
    nix::unistd::chown(&m, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();

    // The executable beside it is writable by others.
    let exe = t.path().join("usr/lib/health-checker/plugins.d/mine");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = t.run(Phase::Early);
    assert_eq!(
        find(&r, "mine").reason.as_deref(),
        Some(
            format!(
                "refusing plugin file {}: writable by group or others (mode 0777)",
                exe.display()
            )
            .as_str()
        )
    );
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();

    // The plugin directory is writable by group.
    let dir = t.path().join("usr/lib/health-checker/plugins.d");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o775)).unwrap();
    let r = t.run(Phase::Early);
    assert_eq!(
        find(&r, "mine").reason.as_deref(),
        Some(
            format!(
                "refusing plugin directory {}: writable by group or others (mode 0775)",
                dir.display()
            )
            .as_str()
        )
    );

    // Switched off for unprivileged tests.
    t.config("[probes]\ninsecure_ok = true\n");
    assert_eq!(find(&t.run(Phase::Early), "mine").result, Outcome::Pass);
}

#[test]
fn duplicate_names_across_directories_are_errors() {
    let t = TestRoot::new();
    t.vendor(
        "same.sh",
        &manifest("late", "required", "exec = [\"/bin/true\"]\n"),
        None,
    );
    t.script("etc/greenboot/check/required.d/same.sh", "exit 0");
    t.config("[probes]\ngreenboot_dirs = [\"/etc/greenboot\"]\n");
    let r = t.run(Phase::Late);
    let dup = r
        .probes
        .iter()
        .find(|p| p.result == Outcome::Error)
        .expect("an error for the duplicate");
    assert!(
        dup.reason
            .as_deref()
            .unwrap()
            .contains("is already used by"),
        "{dup:?}"
    );
}

#[test]
fn the_shipped_default_plugins_are_valid() {
    let t = TestRoot::new();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&shipped).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            t.vendor(name.trim_end_matches(".toml"), &text, None);
            names.push(name.trim_end_matches(".toml").to_string());
        }
    }
    names.sort();
    assert_eq!(names, ["failed-units", "free-space", "root-mounts"]);
    let found = discover(&t.root(), &t.load().probes);
    assert!(found.broken.is_empty(), "{:#?}", found.broken);
    let mut got: Vec<(String, Severity)> = found
        .probes
        .iter()
        .map(|p| (p.name.clone(), p.severity))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("failed-units".to_string(), Severity::Wanted),
            ("free-space".to_string(), Severity::Wanted),
            ("root-mounts".to_string(), Severity::Required),
        ]
    );
}

#[test]
fn a_relative_exec_program_is_found_beside_the_manifest() {
    let t = TestRoot::new();
    t.script(
        "usr/lib/health-checker/plugins.d/helpers/probe.sh",
        "echo \"args: $*\"",
    );
    t.vendor(
        "rel",
        &manifest(
            "late",
            "required",
            "exec = [\"helpers/probe.sh\", \"--quick\"]\n",
        ),
        None,
    );
    let r = t.run(Phase::Late);
    assert_eq!(find(&r, "rel").result, Outcome::Pass, "{r:#?}");
    assert_eq!(find(&r, "rel").output, "args: --quick\n");
}

// Hostile inputs: a local user against a root-run check. The user is an
// ordinary account the tests create; what it makes lives in a root-owned
// sticky directory, as in `/tmp`.

#[test]
fn a_users_symlink_on_the_way_to_a_program_or_manifest_is_refused() {
    let (uid, _) = common::user::ordinary_user();
    let t = TestRoot::new();
    let shared = common::user::sticky_dir(t.path(), "shared");
    // The user's link decides what the probe runs: /bin/true today,
    // /bin/false tomorrow.
    let link = shared.join("link");
    common::user::sh_as_user(&format!("ln -s /bin/true {}", link.display()));
    let dir = t.path().join("usr/lib/health-checker/plugins.d");
    t.vendor("db", &manifest("early", "required", ""), None);
    std::os::unix::fs::symlink(&link, dir.join("db")).unwrap();
    // And a manifest reached through the user's link.
    let mlink = shared.join("manifest");
    let real = t.write(
        "srv/real.toml",
        &manifest("early", "required", "exec = [\"/bin/true\"]\n"),
    );
    common::user::sh_as_user(&format!("ln -s {} {}", real.display(), mlink.display()));
    std::os::unix::fs::symlink(&mlink, dir.join("web.toml")).unwrap();

    let r = t.run(Phase::Early);
    for (name, l) in [("db", &link), ("web", &mlink)] {
        let p = find(&r, name);
        assert_eq!(p.result, Outcome::Error, "{p:?}");
        let reason = p.reason.as_deref().unwrap();
        assert!(
            reason.starts_with(&format!("refusing symlink {}", l.display()))
                && reason.ends_with(&format!("owned by uid {uid}, not root")),
            "{reason}"
        );
    }
    assert_eq!(r.verdict, Verdict::Fail);
}

#[test]
fn a_mask_made_by_a_user_does_not_turn_a_required_probe_off() {
    let (uid, _) = common::user::ordinary_user();
    let t = TestRoot::new();
    t.vendor("db", &manifest("early", "required", ""), Some("exit 1"));
    // A sticky admin directory (as `/tmp` is) is accepted; what a user
    // puts there is not.
    let admin = common::user::sticky_dir(t.path(), "etc/health-checker/plugins.d");
    let mask = admin.join("db.toml");
    common::user::sh_as_user(&format!("ln -s /dev/null {}", mask.display()));
    let r = t.run(Phase::Early);
    let p = find(&r, "db");
    assert_eq!(p.result, Outcome::Error, "{r:#?}");
    assert_eq!(
        p.reason.as_deref(),
        Some(
            format!(
                "refusing symlink {}: owned by uid {uid}, not root",
                mask.display()
            )
            .as_str()
        )
    );
    assert_eq!(r.verdict, Verdict::Fail);
}

#[test]
fn a_program_a_user_creates_after_discovery_is_not_run_as_root() {
    common::user::ordinary_user();
    let t = TestRoot::new();
    let shared = common::user::sticky_dir(t.path(), "shared");
    let prog = shared.join("prog");
    let ran = t.path().join("ran-as");
    t.vendor(
        "late-comer",
        &manifest(
            "early",
            "required",
            &format!("exec = [\"{}\"]\n", prog.display()),
        ),
        None,
    );
    let config = t.load();
    let found = discover(&t.root(), &config.probes);
    assert!(found.broken.is_empty(), "{:#?}", found.broken);
    // Between discovery and the run, the user creates the program.
    common::user::sh_as_user(&format!(
        "printf '#!/bin/sh\\nid -u > {}\\n' > {p} && chmod 755 {p}",
        ran.display(),
        p = prog.display()
    ));
    let known = found.probes.iter().map(|p| p.name.clone()).collect();
    let r = health_checker::probes::runner::run_probes(
        &t.root(),
        &config,
        &found.probes,
        &known,
        &Default::default(),
    );
    assert!(
        !ran.exists(),
        "the user's program ran as uid {}",
        std::fs::read_to_string(&ran).unwrap_or_default()
    );
    assert_eq!(r[0].result, Outcome::Error, "{:?}", r[0]);
    let reason = r[0].reason.as_deref().unwrap();
    assert!(
        reason.starts_with(&format!(
            "refusing plugin file {}: owned by uid",
            prog.display()
        )),
        "{reason}"
    );
}

#[test]
fn a_script_argument_owned_by_a_user_is_refused() {
    common::user::ordinary_user();
    let t = TestRoot::new();
    let shared = common::user::sticky_dir(t.path(), "shared");
    let script = shared.join("check.sh");
    let ran = t.path().join("ran");
    common::user::sh_as_user(&format!(
        "echo 'touch {}' > {}",
        ran.display(),
        script.display()
    ));
    t.vendor(
        "interp",
        &manifest(
            "early",
            "required",
            &format!("exec = [\"/bin/sh\", \"{}\"]\n", script.display()),
        ),
        None,
    );
    let r = t.run(Phase::Early);
    let p = find(&r, "interp");
    assert!(!ran.exists(), "the user's script ran as root");
    assert_eq!(p.result, Outcome::Error, "{p:?}");
    assert!(
        p.reason.as_deref().unwrap().starts_with(&format!(
            "refusing plugin file {}: owned by uid",
            script.display()
        )),
        "{p:?}"
    );
}

#[test]
fn editor_and_package_debris_in_plugin_directories_is_skipped() {
    let t = TestRoot::new();
    t.vendor("ok", &manifest("late", "required", ""), Some("exit 0"));
    let dir = t.path().join("usr/lib/health-checker/plugins.d");
    // An Emacs lock: a dangling symlink named .#NAME.toml.
    std::os::unix::fs::symlink("root@host.4242:1700000000", dir.join(".#ok.toml")).unwrap();
    for debris in [
        ".hidden.toml",
        "#ok.toml#",
        "ok.toml~",
        "old.toml.dpkg-old",
        "new.toml.dpkg-new",
        "dist.toml.dpkg-dist",
        "x.toml.rpmnew",
        "x.toml.rpmsave",
        ".ok.toml.swp",
    ] {
        t.write(
            &format!("usr/lib/health-checker/plugins.d/{debris}"),
            "this is not TOML [",
        );
    }
    t.config("[probes]\ngreenboot_dirs = [\"/etc/greenboot\"]\n");
    t.script("etc/greenboot/check/required.d/check.sh", "exit 0");
    t.script("etc/greenboot/check/required.d/check.sh~", "exit 1");
    t.script("etc/greenboot/check/required.d/.check.sh.swp", "exit 1");
    t.script("etc/greenboot/check/required.d/check.sh.dpkg-old", "exit 1");
    let r = t.run(Phase::Late);
    let names: Vec<&str> = r.probes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["ok", "check.sh"], "{r:#?}");
    assert_eq!(r.verdict, Verdict::Pass);
}

#[test]
fn a_huge_duration_is_refused_with_file_and_line_and_nothing_hangs() {
    let t = TestRoot::new();
    let big = t.vendor(
        "big",
        &manifest("early", "required", "timeout = \"18446744073709551615s\"\n"),
        Some("sleep 1000"),
    );
    t.vendor("other", &manifest("early", "required", ""), Some("exit 0"));
    let root = t.root();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = health_checker::probes::check_phase(&root, Phase::Early, &Default::default());
        let _ = tx.send(r);
    });
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the phase did not end");
    let p = find(&r, "big");
    assert_eq!(p.result, Outcome::Error, "{p:?}");
    let reason = p.reason.as_deref().unwrap();
    assert!(
        reason.starts_with(&format!("{}:4: ", big.display())) && reason.contains("at most 1 day"),
        "{reason}"
    );
    assert_eq!(find(&r, "other").result, Outcome::Pass);

    // The same value for a setting of the configuration.
    let file = t.config("[probes]\nkill_grace = \"18446744073709551615s\"\n");
    let r = t.run(Phase::Early);
    let reason = find(&r, "configuration").reason.clone().unwrap();
    assert!(
        reason.starts_with(&format!(
            "cannot read the configuration: {}:2: key `probes.kill_grace`: ",
            file.display()
        )) && reason.contains("at most 1 day"),
        "{reason}"
    );
}

/// The binary, as a user runs it.
fn binary() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_health-checker"));
    c.env_remove("NO_COLOR").env_remove("HEALTH_CHECKER_LOG");
    c
}

#[test]
fn check_as_a_user_who_is_not_root_is_refused_before_any_probe_runs() {
    let (uid, _) = common::user::ordinary_user();
    let t = TestRoot::new();
    let shared = common::user::sticky_dir(t.path(), "shared");
    let ran = shared.join("ran");
    t.vendor(
        "marker",
        &manifest("early", "required", ""),
        Some(&format!("touch {}", ran.display())),
    );
    let root = t.path().to_string_lossy().into_owned();
    let out = common::user::as_user(&[
        env!("CARGO_BIN_EXE_health-checker"),
        "--root",
        &root,
        "check",
        "--phase",
        "early",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!ran.exists(), "a probe ran as uid {uid}");
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("must be run as root"), "{stderr}");
}

#[test]
fn probe_output_reaches_the_terminal_harmless_and_without_colour_when_piped() {
    let t = TestRoot::new();
    t.vendor(
        "evil",
        &manifest("early", "required", ""),
        Some("printf '\\033]0;pwned\\007\\033[2Jgotcha\\n'; exit 1"),
    );
    let root = t.path().to_string_lossy().into_owned();
    for args in [
        vec!["check", "--probes-only", "--phase", "early"],
        vec!["probes", "run", "evil"],
    ] {
        let out = binary()
            .args(["-v", "--root", &root])
            .args(&args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}{stderr}");
        assert!(
            !stdout.contains(['\x1b', '\x07']),
            "{args:?} printed raw escapes: {stdout:?}"
        );
        assert!(stdout.contains("?]0;pwned??[2Jgotcha"), "{stdout:?}");
        // Standard error is a pipe here, as on the serial console.
        assert!(
            !stderr.contains('\x1b'),
            "{args:?} coloured a pipe: {stderr:?}"
        );
    }
}

#[test]
fn status_shows_recorded_probe_reasons_harmless() {
    let err = serde_json::json!({"error": "not read in this test"});
    let status: health_checker::commands::status::Status =
        serde_json::from_value(serde_json::json!({
            "state": "good",
            "summary": "all is well",
            "booted": err, "default": err, "boot_environment": err,
            "this_boot": err, "history": err, "config": err,
            "degraded": {
                "since": 1_700_000_000u64,
                "snapshot": {"id": 258, "path": "@/.snapshots/1/snapshot"},
                "reason": "probe db failed: \u{1b}[2Jwiped"
            },
            "probes": {"db": {
                "time": 1_700_000_000u64, "phase": "late", "severity": "required",
                "result": "fail",
                "reason": "exited with status 1: \u{1b}]0;pwned\u{7}\u{202e}gotcha",
                "snapshot": {"id": 258, "path": "@/.snapshots/1/snapshot"}
            }}
        }))
        .expect("a status as `status --json` prints it");
    let text = health_checker::commands::status_print::text(&status);
    assert!(
        !text.contains(['\x1b', '\x07', '\u{202e}']),
        "raw escapes in status: {text:?}"
    );
    assert!(text.contains("?]0;pwned??gotcha"), "{text}");
    assert!(text.contains("probe db failed: ?[2Jwiped"), "{text}");
}
