//! The systemd-boot backend on a real btrfs file system (a loop image in
//! snapper's layout) through the command line: `boot-entries sync` makes the
//! entries of the known-good and the newest snapshots with their own
//! kernels, `arm` writes the counted trial entry, a deleted snapshot's entry
//! goes, `status` and `bootenv` speak of systemd-boot.

mod common;

use std::path::{Path, PathBuf};

use common::btrfs::BtrfsImage;
use common::cli::{hc, text};

fn entries(esp: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(esp.join("loader/entries"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Snapshots 1..=5, each with its own kernel; 1 booted and the default;
/// the ESP at /boot/efi of the booted root, systemd-boot installed there.
fn machine() -> (BtrfsImage, PathBuf, Vec<u64>) {
    let mut img = BtrfsImage::new();
    let layout = img.snapper_layout(&[
        (1, Some("installed"), false),
        (2, None, false),
        (3, None, false),
        (4, None, false),
        (5, None, false),
    ]);
    let ids: Vec<u64> = (1..=5).map(|n| layout.id(n)).collect();
    for n in 1..=5 {
        let snap = format!("@/.snapshots/{n}/snapshot");
        img.write(
            &format!("{snap}/boot/vmlinuz-6.1.0-{n}"),
            &format!("kernel {n}"),
        );
        img.write(
            &format!("{snap}/boot/initrd.img-6.1.0-{n}"),
            &format!("initrd {n}"),
        );
        img.write(
            &format!("{snap}/etc/health-checker/config.toml"),
            "[boot]\nno_reboot = true\n[bootloader]\nbackend = \"systemd-boot\"\n\
             options = \"root=UUID=0000 ro panic=10\"\nmax_entries = 3\n",
        );
        img.write(
            &format!("{snap}/boot/efi/loader/loader.conf"),
            "timeout 3\n",
        );
        std::fs::create_dir_all(img.at_top(&format!("{snap}/boot/efi/loader/entries"))).unwrap();
    }
    img.set_default_cli(ids[0]);
    let root = img.boot("@/.snapshots/1/snapshot", false, Some(false));
    (img, root, ids)
}

#[test]
fn sync_arm_and_cleanup_on_real_snapshots() {
    common::require::root("loop-mounted btrfs");
    let (img, root, ids) = machine();
    let esp = root.join("boot/efi");

    let out = hc(&root, &["boot-entries", "sync"]);
    assert!(out.status.success(), "{}", text(&out));
    // No known-good yet: the default subvolume gets the default entry; the
    // newest two others a menu entry each (max_entries = 3).
    assert_eq!(
        entries(&esp),
        [
            format!("health-checker-{}.conf", ids[3]),
            format!("health-checker-{}.conf", ids[4]),
            format!("health-checker-boot-good-{}.conf", ids[0]),
        ]
    );
    let good = std::fs::read_to_string(esp.join(format!(
        "loader/entries/health-checker-boot-good-{}.conf",
        ids[0]
    )))
    .unwrap();
    assert!(
        good.contains(
            "options root=UUID=0000 ro panic=10 rootflags=subvol=@/.snapshots/1/snapshot"
        ),
        "{good}"
    );
    let linux = good.lines().find_map(|l| l.strip_prefix("linux ")).unwrap();
    assert_eq!(
        std::fs::read_to_string(esp.join(linux.trim_start_matches('/'))).unwrap(),
        "kernel 1",
        "the entry loads snapshot 1's own kernel"
    );
    assert_eq!(
        std::fs::read_to_string(esp.join("loader/loader.conf")).unwrap(),
        "timeout 3\ndefault health-checker-boot-*\n"
    );
    // A second sync changes nothing.
    let out = hc(&root, &["boot-entries", "sync"]);
    assert!(text(&out).contains("up to date"), "{}", text(&out));

    // Known-good 1, then arm 3: its counted entry replaces its menu place.
    let out = hc(
        &root,
        &[
            "bootenv",
            "set",
            "hc_good=@/.snapshots/1/snapshot",
            &format!("hc_good_id={}", ids[0]),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = hc(&root, &["arm", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("systemd-boot boots it at most 3 time(s)"),
        "{}",
        text(&out)
    );
    let trial = format!("health-checker-boot-trial-{}+3.conf", ids[2]);
    assert!(entries(&esp).contains(&trial), "{:?}", entries(&esp));
    let t = std::fs::read_to_string(esp.join("loader/entries").join(&trial)).unwrap();
    let linux = t.lines().find_map(|l| l.strip_prefix("linux ")).unwrap();
    assert_eq!(
        std::fs::read_to_string(esp.join(linux.trim_start_matches('/'))).unwrap(),
        "kernel 3"
    );

    // Snapshot 5 is deleted: its entry goes, 4 keeps the one menu place.
    common::btrfs::run(
        "btrfs",
        &[
            "subvolume",
            "delete",
            img.at_top("@/.snapshots/5/snapshot").to_str().unwrap(),
        ],
    );
    let out = hc(&root, &["boot-entries", "sync"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        entries(&esp),
        [
            format!("health-checker-{}.conf", ids[3]),
            format!("health-checker-boot-good-{}.conf", ids[0]),
            trial.clone(),
        ]
    );
    // Only the kernels the three entries load are left.
    assert_eq!(
        std::fs::read_dir(esp.join("health-checker/files"))
            .unwrap()
            .count(),
        6
    );

    // status and bootenv speak of systemd-boot.
    let out = hc(&root, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(v["config"]["bootloader"], "systemd-boot", "{}", text(&out));
    assert_eq!(
        v["boot_environment"]["systemd_boot"]["counting_entry"],
        trial,
        "{}",
        text(&out)
    );
    assert_eq!(v["boot_environment"]["systemd_boot"]["tries_left"], 3);
    let out = hc(&root, &["status"]);
    assert!(
        text(&out).contains(&format!("systemd-boot: default entry: {trial}"))
            && text(&out).contains(&format!("counting entry: {trial}, 3 attempt(s) left")),
        "{}",
        text(&out)
    );
    let out = hc(&root, &["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let check = |name: &str| {
        v["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["check"] == name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        check("systemd-boot-default")["level"],
        "ok",
        "{}",
        text(&out)
    );
    assert_eq!(
        check("systemd-boot-counting")["level"],
        "ok",
        "{}",
        text(&out)
    );
    assert_eq!(
        check("grub-snippet"),
        serde_json::Value::Null,
        "{}",
        text(&out)
    );
    // The unit that keeps the entries in step is one doctor wants enabled
    // (this root has no units installed: it is named among the missing).
    assert!(
        check("units")["message"]
            .as_str()
            .is_some_and(|m| m.contains("health-checker-boot-entries.service is not installed")),
        "{}",
        text(&out)
    );
    let out = hc(&root, &["bootenv", "path"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("file {}", esp.join("health-checker/state.env").display())
    );
    let out = hc(&root, &["boot-entries", "list"]);
    assert!(
        text(&out).contains(&format!("trial  ID {:<6} 3 left", ids[2])),
        "{}",
        text(&out)
    );
}

#[test]
fn a_deleted_known_good_gives_its_default_entry_to_the_default_subvolume() {
    common::require::root("loop-mounted btrfs");
    let (img, root, ids) = machine();
    let esp = root.join("boot/efi");
    let out = hc(&root, &["boot-entries", "sync"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = hc(
        &root,
        &[
            "bootenv",
            "set",
            "hc_good=@/.snapshots/2/snapshot",
            &format!("hc_good_id={}", ids[1]),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = hc(&root, &["boot-entries", "sync"]);
    assert!(out.status.success(), "{}", text(&out));
    let good2 = format!("health-checker-boot-good-{}.conf", ids[1]);
    assert!(entries(&esp).contains(&good2), "{:?}", entries(&esp));
    common::btrfs::run(
        "btrfs",
        &[
            "subvolume",
            "delete",
            img.at_top("@/.snapshots/2/snapshot").to_str().unwrap(),
        ],
    );
    let out = hc(&root, &["boot-entries", "sync"]);
    assert!(
        out.status.success() && text(&out).contains("is not in the snapshot store"),
        "{}",
        text(&out)
    );
    let e = entries(&esp);
    assert!(
        e.contains(&format!("health-checker-boot-good-{}.conf", ids[0])),
        "{e:?}"
    );
    assert!(
        !e.iter().any(|n| n.contains(&format!("-{}", ids[1]))),
        "{e:?}"
    );
}
