//! What probes are told about the boot (`HC_TRIAL`) is what the engine
//! judges: the booted snapshot's role is computed by the engine's rule, so a
//! new default that was never armed (an update tool that only changed the
//! default subvolume) is a trial for the probes as it is for the verdict.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::btrfs::BtrfsImage;

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

/// Snapshots 1 (known-good) and 2, both with an early plugin that prints
/// `HC_TRIAL`; `booted` mounted as the root, 2 the default, nothing armed.
fn machine(booted: u64) -> (BtrfsImage, PathBuf) {
    let mut img = BtrfsImage::new();
    let layout = img.snapper_layout(&[(1, Some("installed"), false), (2, Some("update"), false)]);
    for n in [1, 2] {
        let snap = format!("@/.snapshots/{n}/snapshot");
        img.write(
            &format!("{snap}/etc/health-checker/config.toml"),
            "[boot]\nno_reboot = true\n[degraded]\nwall = false\nmotd = false\n",
        );
        img.write(
            &format!("{snap}/etc/health-checker/plugins.d/role.toml"),
            "description = \"prints HC_TRIAL\"\nphase = \"early\"\nseverity = \"wanted\"\n\
             exec = [\"/bin/sh\", \"-c\", \"echo trial=$HC_TRIAL\"]\n",
        );
        std::fs::create_dir_all(img.at_top(&format!("{snap}/boot/efi/EFI/health-checker")))
            .unwrap();
    }
    img.set_default_cli(layout.id(2));
    let root = img.boot(
        &format!("@/.snapshots/{booted}/snapshot"),
        false,
        Some(false),
    );
    let out = hc(
        &root,
        &[
            "bootenv",
            "set",
            "hc_good=@/.snapshots/1/snapshot",
            &format!("hc_good_id={}", layout.id(1)),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    (img, root)
}

/// `check --phase early --dry-run --json`: the probe's output and the
/// engine's role of the booted snapshot.
fn judged(root: &Path) -> (String, serde_json::Value) {
    let out = hc(root, &["check", "--phase", "early", "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let output = v["probes"][0]["output"].as_str().unwrap_or("").to_string();
    (output, v["decision"]["role"].clone())
}

#[test]
fn a_default_that_was_never_armed_is_a_trial_for_the_probes_too() {
    let (_img, root) = machine(2);
    let (output, role) = judged(&root);
    assert_eq!(role, serde_json::json!({"trial": {"armed": false}}));
    assert_eq!(output, "trial=1\n", "role {role}");
}

#[test]
fn the_known_good_is_not_a_trial() {
    let (_img, root) = machine(1);
    let (output, role) = judged(&root);
    assert_eq!(role, serde_json::json!("good"));
    assert_eq!(output, "trial=0\n", "role {role}");
}
