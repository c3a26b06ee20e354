//! Degraded mode end to end on a real btrfs, with the shipped defaults for
//! everything degraded mode does (`[degraded] stop_services` empty): a
//! known-good system whose required plugin fails enters degraded mode, and
//! the plugins' stop actions run, are recorded in the degraded event of the
//! history and reported in the output.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::btrfs::BtrfsImage;

const GOOD: &str = "@/.snapshots/1/snapshot";

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

/// Snapshot 1, known-good, booted and the default, with a required late
/// plugin that fails and has a stop action that leaves a mark at `mark`.
/// `good_failure_reboots = 0`: the first failure of the known-good enters
/// degraded mode. Everything under `[degraded]` but the alert channels
/// that would reach this host (motd, wall) is the default.
fn machine(stop_exit: i32) -> (BtrfsImage, PathBuf, PathBuf) {
    let mut img = BtrfsImage::new();
    let layout = img.snapper_layout(&[(1, Some("installed"), false)]);
    let good_id = layout.id(1);
    img.write(
        "@/.snapshots/1/snapshot/etc/health-checker/config.toml",
        "[boot]\nno_reboot = true\ngood_failure_reboots = 0\n[degraded]\nwall = false\nmotd = false\n",
    );
    img.write(
        "@/.snapshots/1/snapshot/etc/health-checker/plugins.d/app.toml",
        &format!(
            "description = \"the appliance answers\"\nphase = \"late\"\nseverity = \"required\"\n\
             exec = [\"/bin/sh\", \"-c\", \"echo app is down; exit 1\"]\n\
             stop = [\"/bin/sh\", \"-c\", \"echo stopping app; touch \\\"$HC_ROOT/app-stopped\\\"; exit {stop_exit}\"]\n"
        ),
    );
    std::fs::create_dir_all(img.at_top("@/.snapshots/1/snapshot/boot/efi/EFI/health-checker"))
        .unwrap();
    img.set_default_cli(good_id);
    let root = img.boot(GOOD, false, Some(false));
    let out = hc(
        &root,
        &[
            "bootenv",
            "set",
            &format!("hc_good={GOOD}"),
            &format!("hc_good_id={good_id}"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let mark = root.join("app-stopped");
    (img, root, mark)
}

fn degraded_event(root: &Path) -> serde_json::Value {
    let path = root.join("var/lib/health-checker/history.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let events = h
        .get("events")
        .and_then(|e| e.as_array())
        .or_else(|| h.as_array())
        .expect("history holds a list of events")
        .clone();
    events
        .into_iter()
        .find(|e| e["kind"] == "degraded")
        .unwrap_or_else(|| panic!("no degraded event in {h:#}"))
}

#[test]
fn degraded_mode_runs_the_plugins_stop_actions_with_no_stop_services() {
    let (_img, root, mark) = machine(0);
    let late = hc(&root, &["check", "--phase", "late"]);
    let out = text(&late);
    assert_eq!(late.status.code(), Some(1), "{out}");
    assert!(
        mark.exists(),
        "the plugin's stop action did not run in degraded mode\n{out}"
    );
    let ev = degraded_event(&root);
    let stop = &ev["probes"][0];
    assert_eq!(stop["name"], "app", "{ev:#}");
    assert_eq!(stop["result"], "pass", "{ev:#}");
    assert!(
        stop["output"]
            .as_str()
            .unwrap_or("")
            .contains("stopping app"),
        "the stop action's output is recorded: {ev:#}"
    );
    assert!(out.contains("stop action"), "{out}");
}

#[test]
fn a_failing_stop_action_is_recorded_and_fails_the_run() {
    let (_img, root, mark) = machine(3);
    let late = hc(&root, &["check", "--phase", "late"]);
    let out = text(&late);
    assert!(mark.exists(), "{out}");
    assert_ne!(late.status.code(), Some(0), "{out}");
    assert!(
        out.contains("app") && out.contains("stop action exited with status 3"),
        "{out}"
    );
    let ev = degraded_event(&root);
    assert_eq!(ev["probes"][0]["result"], "fail", "{ev:#}");
}
