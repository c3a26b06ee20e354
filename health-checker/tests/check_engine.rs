//! `health-checker check` end to end on a real btrfs: probes run, the engine
//! judges the boot, and the default subvolume, the boot environment and the
//! history change as the verdict table says. `no_reboot` keeps the host up.

mod common;

use std::path::PathBuf;

use common::cli::{hc, text};

use common::btrfs::BtrfsImage;

const GOOD: &str = "@/.snapshots/1/snapshot";
const TRIAL: &str = "@/.snapshots/2/snapshot";

struct Machine {
    img: BtrfsImage,
    root: PathBuf,
    good_id: u64,
    trial_id: u64,
}

/// Snapshots 1 (known-good) and 2 (armed trial, the default), booted into
/// 2, with a late plugin that exits `late_exit`.
fn machine(late_exit: i32) -> Machine {
    let mut img = BtrfsImage::new();
    let layout = img.snapper_layout(&[(1, Some("before update"), false)]);
    let good_id = layout.id(1);
    // The update: a plugin only the new snapshot has.
    img.write(
        "@/etc/health-checker/config.toml",
        "[boot]\nno_reboot = true\n[degraded]\nwall = false\nmotd = false\n",
    );
    img.write(
        "@/etc/health-checker/plugins.d/app.toml",
        &format!(
            "description = \"the appliance answers\"\nphase = \"late\"\nseverity = \"required\"\n\
             exec = [\"/bin/sh\", \"-c\", \"echo checking; exit {late_exit}\"]\n"
        ),
    );
    std::fs::create_dir_all(img.at_top("@/boot/efi/EFI/health-checker")).unwrap();
    let trial_id = img.snapper_snapshot(2, Some("update"), false);
    img.set_default_cli(trial_id);
    let root = img.boot(TRIAL, false, Some(false));
    let m = Machine {
        img,
        root,
        good_id,
        trial_id,
    };
    let out = hc(
        &m.root,
        &[
            "bootenv",
            "set",
            &format!("hc_good={GOOD}"),
            &format!("hc_good_id={good_id}"),
            &format!("hc_trial={TRIAL}"),
            &format!("hc_trial_id={trial_id}"),
            "hc_tries=2",
            "hc_booted=trial",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    m
}

fn env(m: &Machine, key: &str) -> Option<String> {
    let out = hc(&m.root, &["bootenv", "get", key]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

fn history(m: &Machine) -> serde_json::Value {
    let path = m.root.join("var/lib/health-checker/history.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

fn kinds(history: &serde_json::Value) -> Vec<String> {
    let events = history
        .get("events")
        .and_then(|e| e.as_array())
        .or_else(|| history.as_array())
        .expect("history holds a list of events");
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_failing_trial_is_rolled_back_to_the_known_good() {
    let m = machine(1);
    let early = hc(&m.root, &["check", "--phase", "early"]);
    assert_eq!(early.status.code(), Some(0), "{}", text(&early));
    let late = hc(&m.root, &["check", "--phase", "late"]);
    assert_eq!(late.status.code(), Some(1), "{}", text(&late));
    let out = text(&late);
    assert!(out.contains("app"), "{out}");

    assert_eq!(
        m.img.default_cli(&m.root),
        m.good_id,
        "default back to G\n{out}"
    );
    assert_eq!(env(&m, "hc_trial"), None, "trial cleared\n{out}");
    assert_eq!(env(&m, "hc_good").as_deref(), Some(GOOD));
    let h = history(&m);
    assert!(kinds(&h).iter().any(|k| k == "rollback"), "{h:#}");
    assert!(
        h.to_string().contains("app"),
        "history names the probe: {h:#}"
    );
}

#[test]
fn a_passing_trial_becomes_known_good() {
    let m = machine(0);
    for phase in ["early", "late"] {
        let out = hc(&m.root, &["check", "--phase", phase]);
        assert_eq!(out.status.code(), Some(0), "{phase}: {}", text(&out));
    }
    assert_eq!(env(&m, "hc_good").as_deref(), Some(TRIAL));
    assert_eq!(env(&m, "hc_good_id"), Some(m.trial_id.to_string()));
    assert_eq!(env(&m, "hc_trial"), None);
    assert_eq!(m.img.default_cli(&m.root), m.trial_id);
    assert!(
        kinds(&history(&m)).iter().any(|k| k == "promotion"),
        "{:#}",
        history(&m)
    );
}

#[test]
fn dry_run_explains_and_changes_nothing() {
    let m = machine(1);
    let before = std::fs::read(m.root.join("boot/efi/EFI/health-checker/grubenv")).unwrap();
    let out = hc(
        &m.root,
        &["check", "--phase", "late", "--dry-run", "--json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["verdict"], "fail");
    assert_eq!(v["dry_run"], true);
    assert!(
        v["decision"]["action"].to_string().contains("roll"),
        "{v:#}"
    );
    let after = std::fs::read(m.root.join("boot/efi/EFI/health-checker/grubenv")).unwrap();
    assert_eq!(before, after, "the environment changed in a dry run");
    assert_eq!(m.img.default_cli(&m.root), m.trial_id);
    assert!(!m.root.join("var/lib/health-checker/history.json").exists());
}

#[test]
fn an_unreadable_configuration_fails_the_phase() {
    let m = machine(0);
    std::fs::write(
        m.root.join("etc/health-checker/config.toml"),
        "[boot]\nno_reboot = true\ntypo_key = 1\n",
    )
    .unwrap();
    hc(&m.root, &["check", "--phase", "early"]);
    let late = hc(&m.root, &["check", "--phase", "late", "--no-reboot"]);
    assert_eq!(late.status.code(), Some(1), "{}", text(&late));
    let out = text(&late);
    assert!(
        out.contains("configuration") && out.contains("typo_key"),
        "{out}"
    );
    assert_ne!(
        env(&m, "hc_good").as_deref(),
        Some(TRIAL),
        "never promoted\n{out}"
    );
}

const ENV_FILE: &str = "boot/efi/EFI/health-checker/grubenv";

/// GRUB's boot: it counted an attempt into the primary (`save_env`), and a
/// byte of the primary's padding was then damaged. Stock GRUB and
/// `grub-editenv list` still read this primary.
fn grub_counted_then_padding_damaged(m: &Machine) -> Vec<u8> {
    let path = m.root.join(ENV_FILE);
    let mut env = grub_env::Env::parse(&std::fs::read(&path).unwrap()).unwrap();
    env.set("hc_tries", "1").unwrap();
    env.set("hc_booted", "trial").unwrap();
    let mut bytes = env.to_bytes().unwrap();
    let last = bytes.len() - 3;
    bytes[last] = b'x';
    std::fs::write(&path, &bytes).unwrap();
    bytes
}

#[test]
fn a_damaged_primary_grub_reads_is_read_shown_and_repaired_by_the_next_check() {
    let m = machine(0);
    let damaged = grub_counted_then_padding_damaged(&m);

    // status (JSON and text) shows what GRUB read, and the damage.
    let st = hc(&m.root, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("JSON on stdout");
    assert_eq!(
        v["boot_environment"]["attempts_left"],
        1,
        "GRUB's count\n{}",
        text(&st)
    );
    let damage = v["boot_environment"]["damage"].to_string();
    assert!(damage.contains("padding"), "{v:#}");
    let st = text(&hc(&m.root, &["status"]));
    assert!(st.contains("padding") && st.contains("repair"), "{st}");

    // The early phase changes nothing in the state, but repairs the copy.
    let early = hc(&m.root, &["check", "--phase", "early"]);
    assert_eq!(early.status.code(), Some(0), "{}", text(&early));
    assert!(
        text(&early).contains("repaired the boot environment"),
        "{}",
        text(&early)
    );
    let primary = std::fs::read(m.root.join(ENV_FILE)).unwrap();
    assert!(grub_env::Env::parse(&primary).is_ok(), "repaired");
    assert_eq!(
        env(&m, "hc_tries").as_deref(),
        Some("1"),
        "GRUB's count kept"
    );
    let kept: Vec<_> = std::fs::read_dir(m.root.join("boot/efi/EFI/health-checker"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("grubenv.broken-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let kept = m.root.join("boot/efi/EFI/health-checker").join(&kept[0]);
    assert_eq!(std::fs::read(kept).unwrap(), damaged);
    let v: serde_json::Value =
        serde_json::from_slice(&hc(&m.root, &["status", "--json"]).stdout).unwrap();
    assert_eq!(
        v["boot_environment"]["damage"],
        serde_json::json!([]),
        "{v:#}"
    );
}

#[test]
fn with_both_copies_unreadable_check_json_is_no_pass_and_recover_is_the_way_out() {
    let m = machine(0);
    for f in [ENV_FILE.to_string(), format!("{ENV_FILE}.bak")] {
        std::fs::write(m.root.join(f), b"torn").unwrap();
    }
    let out = hc(&m.root, &["check", "--phase", "early", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_ne!(v["verdict"], "pass", "{v:#}");
    assert!(text(&out).contains("bootenv recover"), "{}", text(&out));
    // set and create refuse, naming the way out.
    for args in [&["bootenv", "set", "a=1"][..], &["bootenv", "create"]] {
        let o = hc(&m.root, args);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert!(text(&o).contains("bootenv recover"), "{}", text(&o));
    }
    let rec = hc(&m.root, &["bootenv", "recover"]);
    assert_eq!(rec.status.code(), Some(0), "{}", text(&rec));
    assert!(text(&rec).contains("grubenv.broken-"), "{}", text(&rec));
    assert_eq!(env(&m, "hc_trial"), None);
    let set = hc(&m.root, &["bootenv", "set", "a=1"]);
    assert_eq!(set.status.code(), Some(0), "{}", text(&set));
}

#[test]
fn the_env_block_device_defaults_to_the_root_file_systems() {
    let m = machine(0);
    std::fs::write(
        m.root.join("etc/health-checker/config.toml"),
        "[bootenv]\nlocation = \"env-block\"\n",
    )
    .unwrap();
    let out = hc(&m.root, &["bootenv", "path"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = std::fs::canonicalize(&m.root).unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(root.to_str().unwrap()))
        .expect("the image's root is mounted");
    let source = line.split(" - ").nth(1).unwrap().split(' ').nth(1).unwrap();
    assert_eq!(printed, format!("env-block {source}"));
}

#[test]
fn a_top_level_default_is_never_armed_and_the_system_is_said_unprotected() {
    let mut img = BtrfsImage::new();
    let layout = img.snapper_layout(&[(1, Some("installed"), false)]);
    let good_id = layout.id(1);
    img.write(
        "@/.snapshots/1/snapshot/etc/health-checker/config.toml",
        "[boot]\nno_reboot = true\n[degraded]\nwall = false\nmotd = false\n",
    );
    std::fs::create_dir_all(img.at_top("@/.snapshots/1/snapshot/boot/efi/EFI/health-checker"))
        .unwrap();
    // The default subvolume is the top level (ID 5).
    img.set_default_cli(5);
    let root = img.boot(GOOD, false, Some(false));
    let set = hc(
        &root,
        &[
            "bootenv",
            "set",
            &format!("hc_good={GOOD}"),
            &format!("hc_good_id={good_id}"),
        ],
    );
    assert!(set.status.success(), "{}", text(&set));
    let out = hc(&root, &["check", "--phase", "early", "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let said = v.to_string();
    assert!(
        said.contains("not protected") && said.contains("ID 5"),
        "{v:#}"
    );
    assert!(!said.contains("armed as a trial with"), "{v:#}");
    let out = hc(&root, &["check", "--phase", "early"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let trial = hc(&root, &["bootenv", "get", "hc_trial"]);
    assert_eq!(trial.status.code(), Some(1), "no trial: {}", text(&trial));
}

#[test]
fn each_probes_cost_is_in_status_and_history_and_status_shows_the_slowest() {
    let m = machine(0);
    for phase in ["early", "late"] {
        let out = hc(&m.root, &["check", "--phase", phase]);
        assert_eq!(out.status.code(), Some(0), "{phase}: {}", text(&out));
    }
    let st = hc(&m.root, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("JSON on stdout");
    let app = &v["probes"]["app"];
    assert!(app["duration_ms"].is_u64(), "{app:#}");
    assert!(app["cpu_us"].as_u64().is_some_and(|c| c > 0), "{app:#}");
    assert!(
        app["peak_memory_bytes"].as_u64().is_some_and(|b| b > 0),
        "{app:#}"
    );
    assert!(
        app["containment"]
            .as_str()
            .is_some_and(|c| c.starts_with("cgroup")),
        "{app:#}"
    );
    let h = hc(&m.root, &["history", "--json"]);
    let h: serde_json::Value = serde_json::from_slice(&h.stdout).expect("JSON on stdout");
    let late = h
        .as_array()
        .or_else(|| h["events"].as_array())
        .expect("a list of events")
        .iter()
        .rev()
        .flat_map(|e| e["probes"].as_array().cloned().unwrap_or_default())
        .find(|p| p["name"] == "app")
        .unwrap_or_else(|| panic!("no record of the probe app: {h:#}"));
    assert!(late["cpu_us"].is_u64(), "{late:#}");
    assert!(late["peak_memory_bytes"].is_u64(), "{late:#}");
    let st = text(&hc(&m.root, &["status"]));
    let slow = st
        .lines()
        .find(|l| l.trim_start().starts_with("Slowest:"))
        .unwrap_or_else(|| panic!("no Slowest line: {st}"));
    assert!(slow.contains("app") && slow.contains("cpu"), "{st}");
}
