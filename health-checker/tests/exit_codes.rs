//! The exit codes of the binary: the table of `docs/design.md` walked code
//! by code, each produced by a real invocation; `status` as a user who is
//! not root and cannot get the whole status exits non-zero and says why; the
//! command-line definition passes clap's own checks.

mod common;
mod probe_root;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use clap::CommandFactory;
use common::dbus::PrivateBus;
use common::require;
use health_checker::dbus_service::{start, Provider};
use probe_root::{manifest, TestRoot};

fn hc(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_health-checker"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("running health-checker")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The codes of the table "Exit codes of the binary" in `docs/design.md`.
fn documented_codes() -> BTreeSet<i32> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/design.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let section = doc
        .split("## Exit codes of the binary")
        .nth(1)
        .expect("docs/design.md has the exit-code table");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix('|')?.split('|').next()?.trim().parse().ok())
        .collect()
}

#[test]
fn the_command_line_definition_is_consistent() {
    health_checker::cli::Cli::command().debug_assert();
}

#[test]
fn every_documented_exit_code_comes_from_a_real_invocation() {
    let t = TestRoot::new();
    t.vendor(
        "app",
        &manifest("late", "required", "exec = [\"/bin/false\"]\n"),
        None,
    );
    let root = t.path();
    let mut produced = BTreeSet::new();
    let mut expect = |code: i32, what: &str, out: Output| {
        assert_eq!(out.status.code(), Some(code), "{what}\n{}", text(&out));
        produced.insert(code);
    };

    expect(0, "probes list", hc(root, &["probes", "list"]));
    expect(
        1,
        "a required probe fails",
        hc(root, &["check", "--phase", "late", "--probes-only"]),
    );
    expect(2, "an unknown option", hc(root, &["--no-such-option"]));
    expect(
        2,
        "an unknown phase",
        hc(root, &["check", "--phase", "noon", "--probes-only"]),
    );
    // 5 before 3 and 4: `status` of a root that is not btrfs, everything
    // else readable.
    std::fs::create_dir_all(root.join("boot/efi/EFI/health-checker")).unwrap();
    let created = hc(root, &["bootenv", "create"]);
    assert!(created.status.success(), "{}", text(&created));
    expect(5, "no btrfs under the root", hc(root, &["status"]));
    t.write("boot/efi/EFI/health-checker/grubenv", "torn");
    std::fs::remove_file(root.join("boot/efi/EFI/health-checker/grubenv.bak")).ok();
    expect(
        4,
        "a torn boot environment",
        hc(root, &["bootenv", "get", "hc_good"]),
    );
    t.write("var/lib/health-checker/history.json", "{ torn");
    expect(6, "a corrupt history", hc(root, &["history"]));
    t.config("typo_key = 1\n");
    expect(
        3,
        "an unknown configuration key",
        hc(root, &["config", "show"]),
    );

    let documented = documented_codes();
    assert_eq!(
        documented,
        (0..=6).collect::<BTreeSet<i32>>(),
        "the table changed: walk the new codes here too"
    );
    assert_eq!(produced, documented);
}

/// `health-checker status` on this host as `nobody`, with the system bus at
/// `bus` (the machine's own bus is never touched).
fn status_as_nobody(bus: &str, json: bool) -> Output {
    let setpriv = require::program("setpriv", "util-linux");
    require::root("running status as another user");
    let mut cmd = Command::new(setpriv);
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(env!("CARGO_BIN_EXE_health-checker"))
    .arg("status")
    .env("DBUS_SYSTEM_BUS_ADDRESS", bus);
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("running status through setpriv")
}

#[test]
fn status_as_a_user_who_cannot_get_it_exits_non_zero_and_says_why() {
    // No service on the bus: the user reads what it can, and that is not
    // everything (the boot environment and the btrfs default need root, or
    // this host is not btrfs at all).
    let bus = PrivateBus::start();
    for json in [true, false] {
        let out = status_as_nobody(&bus.address, json);
        let all = text(&out);
        assert_ne!(out.status.code(), Some(0), "{all}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot get the whole status")
                && stderr.contains("not root")
                && stderr.contains("D-Bus service is not there"),
            "{all}"
        );
        if json {
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .unwrap_or_else(|e| panic!("standard output is JSON ({e}): {all}"));
        }
    }

    // A service that fails: its error is told, not dropped.
    let failing: Provider = Box::new(|| Err(anyhow::anyhow!("boot environment: torn")));
    let service = start(
        Some(&bus.address),
        failing,
        Box::new(|| Ok(serde_json::json!({}))),
    )
    .expect("serving on the private bus");
    let out = status_as_nobody(&bus.address, true);
    let all = text(&out);
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("D-Bus service failed")
            && all.contains("torn"),
        "{all}"
    );
    drop(service);
}

#[test]
fn status_json_from_the_service_exits_non_zero_when_a_part_is_missing() {
    // The service's answer: a real status of a root where the btrfs parts
    // cannot be read.
    let t = TestRoot::new();
    let out = hc(t.path(), &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(status["booted"]["error"].is_string(), "{status:#}");

    let bus = PrivateBus::start();
    let answer = status.clone();
    let _service = start(
        Some(&bus.address),
        Box::new(move || Ok(answer.clone())),
        Box::new(|| Ok(serde_json::json!({}))),
    )
    .expect("serving on the private bus");
    for json in [true, false] {
        let out = status_as_nobody(&bus.address, json);
        let all = text(&out);
        assert_ne!(out.status.code(), Some(0), "json={json}: {all}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("could not read the whole status"),
            "{all}"
        );
        if json {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v, status);
        }
    }
}
