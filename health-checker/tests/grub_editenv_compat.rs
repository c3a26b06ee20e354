//! `health-checker bootenv` against the real `grub-editenv` (Debian's
//! grub-common), in both directions.

use std::path::Path;
use std::process::Command;

const TRICKY: &[(&str, &str)] = &[
    ("plain", "value"),
    ("spaces", "a value with  spaces"),
    ("equals", "a=b=c"),
    ("backslash", "C:\\path\\to\\x"),
    ("newline", "line one\nline two"),
    ("hash", "#not a comment"),
    ("empty", ""),
];

fn grub_editenv() -> &'static str {
    let ok = Command::new("grub-editenv").arg("--version").output();
    match ok {
        Ok(o) if o.status.success() => "grub-editenv",
        _ => panic!(
            "grub-editenv is not installed: install Debian's grub-common \
             (scripts/install-deps) to run the compatibility tests"
        ),
    }
}

fn hc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_health-checker"))
        .args(args)
        .output()
        .expect("running health-checker")
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn expected_listing() -> String {
    TRICKY.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

fn editenv(file: &Path, args: &[&str]) -> String {
    let out = Command::new(grub_editenv())
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    ok(out)
}

#[test]
fn grub_editenv_lists_what_we_write() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grubenv");
    let f = file.to_str().unwrap();
    let mut args = vec!["bootenv", "--file", f, "set"];
    let pairs: Vec<String> = TRICKY.iter().map(|(k, v)| format!("{k}={v}")).collect();
    args.extend(pairs.iter().map(String::as_str));
    ok(hc(&args));
    let listing = editenv(&file, &["list"]);
    // Ours plus our bookkeeping keys, in order.
    let ours: String = listing
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("hc_seq=") && !l.starts_with("hc_sum="))
        .collect();
    assert_eq!(ours, expected_listing());
    assert!(listing.contains("hc_seq=1\n"), "{listing}");
    // The backup is a valid environment too.
    let backup = dir.path().join("grubenv.bak");
    assert_eq!(editenv(&backup, &["list"]), listing);
}

#[test]
fn we_read_what_grub_editenv_writes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grubenv");
    editenv(&file, &["create"]);
    for (k, v) in TRICKY {
        editenv(&file, &["set", &format!("{k}={v}")]);
    }
    let f = file.to_str().unwrap();
    assert_eq!(
        ok(hc(&["bootenv", "--file", f, "list"])),
        expected_listing()
    );
    assert_eq!(
        ok(hc(&["bootenv", "--file", f, "get", "newline"])),
        "line one\nline two\n"
    );
}

#[test]
fn edits_by_either_tool_keep_the_others_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grubenv");
    let f = file.to_str().unwrap();
    editenv(&file, &["create"]);
    editenv(
        &file,
        &["set", "saved_entry=gnulinux-advanced", "next_entry=1"],
    );
    ok(hc(&[
        "bootenv",
        "--file",
        f,
        "set",
        "hc_good=@/.snapshots/1/snapshot",
    ]));
    // grub-editenv edits our file; our checksum does not cover its keys.
    editenv(&file, &["unset", "next_entry"]);
    editenv(&file, &["set", "boot_success=1"]);
    ok(hc(&["bootenv", "--file", f, "set", "hc_tries=3"]));
    let listing = editenv(&file, &["list"]);
    for want in [
        "saved_entry=gnulinux-advanced\n",
        "hc_good=@/.snapshots/1/snapshot\n",
        "boot_success=1\n",
        "hc_tries=3\n",
        "hc_seq=2\n",
    ] {
        assert!(listing.contains(want), "missing {want:?} in\n{listing}");
    }
    assert!(!listing.contains("next_entry"), "{listing}");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 1024);
}

#[test]
fn unset_get_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grubenv");
    let f = file.to_str().unwrap();
    ok(hc(&["bootenv", "--file", f, "set", "a=1", "b=2"]));
    ok(hc(&["bootenv", "--file", f, "unset", "a"]));
    assert_eq!(editenv(&file, &["list"]).lines().next(), Some("b=2"));
    let missing = hc(&["bootenv", "--file", f, "get", "a"]);
    assert_eq!(missing.status.code(), Some(1));
    let bad = hc(&["bootenv", "--file", f, "set", "novalue"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"novalue\" is not KEY=VALUE"));
    let bad_key = hc(&["bootenv", "--file", f, "set", "9x=1"]);
    assert_eq!(bad_key.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&bad_key.stderr);
    assert!(
        stderr.contains(f) && stderr.contains("invalid key \"9x\""),
        "{stderr}"
    );
    // A file that is no environment: the error names it, nothing is changed.
    std::fs::write(&file, b"not an environment").unwrap();
    std::fs::remove_file(dir.path().join("grubenv.bak")).unwrap();
    let broken = hc(&["bootenv", "--file", f, "list"]);
    assert_eq!(broken.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(
        stderr.contains(&format!("{f}: GRUB cannot read it: only 18 bytes")),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"not an environment");
}

#[test]
fn root_option_resolves_the_default_location() {
    let dir = tempfile::tempdir().unwrap();
    let esp = dir.path().join("boot/efi/EFI/health-checker");
    std::fs::create_dir_all(&esp).unwrap();
    let root = dir.path().to_str().unwrap();
    ok(hc(&["--root", root, "bootenv", "set", "k=v"]));
    assert_eq!(
        editenv(&esp.join("grubenv"), &["list"]).lines().next(),
        Some("k=v")
    );
}

#[test]
fn bootenv_uses_the_configured_location_and_creates_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let etc = dir.path().join("etc/health-checker");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("config.toml"),
        "[bootenv]\nlocation = \"file\"\npath = \"/boot/grub/hc/grubenv\"\n",
    )
    .unwrap();
    let configured = dir.path().join("boot/grub/hc/grubenv");

    // What the checker reads is what the advice to run `bootenv create`
    // leads to: the configured file.
    let status = hc(&["--root", root, "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let err = v["boot_environment"]["error"].as_str().unwrap().to_string();
    assert!(
        err.contains(configured.to_str().unwrap()) && err.contains("bootenv create"),
        "{err}"
    );
    assert_eq!(
        ok(hc(&["--root", root, "bootenv", "path"])),
        format!("file {}\n", configured.display())
    );
    // The directory does not exist yet: create makes it.
    ok(hc(&["--root", root, "bootenv", "create"]));
    assert!(configured.exists() && dir.path().join("boot/grub/hc/grubenv.bak").exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(configured.parent().unwrap())
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o7777, 0o755);
    ok(hc(&["--root", root, "bootenv", "set", "k=v"]));
    let listing = editenv(&configured, &["list"]);
    assert!(listing.contains("\nk=v\n"), "{listing}");
    assert!(
        !dir.path().join("boot/efi").exists(),
        "nothing at the default path"
    );
    // The checker now finds it.
    let status = hc(&["--root", root, "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(v["boot_environment"]["error"].is_null(), "{v:#}");

    // An unreadable configuration is an error naming it, not a guess.
    std::fs::write(etc.join("config.toml"), "[bootenv]\ntypo = 1\n").unwrap();
    let bad = hc(&["--root", root, "bootenv", "list"]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("typo"));
}
