//! The snapshot store on a real btrfs filesystem in a loop-mounted image,
//! with snapper's layout. Needs root, btrfs-progs and loop devices; fails
//! (does not skip) without them.

mod common;

use common::btrfs::{BtrfsImage, Layout};
use health_checker::exit::{chain, code_for, Code};
use health_checker::paths::Root;
use health_checker::snapshots::{BtrfsSnapshots, SnapshotRef, Snapshots};

const SNAP1: &str = "@/.snapshots/1/snapshot";
const SNAP2: &str = "@/.snapshots/2/snapshot";

/// An image with `@` and snapshots 1 (read-only, described) and 2
/// (writable, described with characters XML must escape).
fn snapper_image() -> (BtrfsImage, Layout) {
    let img = BtrfsImage::new();
    let layout = img.snapper_layout(&[
        (1, Some("first root filesystem"), true),
        (2, Some("after update &amp; reboot"), false),
    ]);
    (img, layout)
}

fn r(id: u64, path: &str) -> SnapshotRef {
    SnapshotRef {
        id,
        path: path.to_string(),
    }
}

#[test]
fn booted_is_the_subvolume_mounted_at_the_root_not_the_default() {
    let (mut img, layout) = snapper_image();
    img.set_default_cli(layout.id(2));
    let root = img.boot(SNAP1, true, Some(true));
    let store = BtrfsSnapshots::new(Root::new(&root));

    assert_eq!(store.booted().unwrap(), r(layout.id(1), SNAP1));
    assert_eq!(store.default_subvolume().unwrap(), r(layout.id(2), SNAP2));

    // The top level itself, booted: ID 5 and the empty path.
    let top = BtrfsSnapshots::new(Root::new(&img.top));
    assert_eq!(top.booted().unwrap(), r(5, ""));
}

#[test]
fn lookup_sees_every_subvolume_from_the_top_level() {
    let (mut img, layout) = snapper_image();
    // Booted snapshot 1 cannot see snapshot 2 through its own tree, and the
    // top level is not mounted: lookup must still find it.
    let root = img.boot(SNAP1, true, None);
    img.unmount_top();
    let store = BtrfsSnapshots::new(Root::new(&root));

    assert_eq!(store.lookup(SNAP2).unwrap(), Some(r(layout.id(2), SNAP2)));
    assert_eq!(
        store.lookup("/@/.snapshots/1/snapshot/").unwrap(),
        Some(r(layout.id(1), SNAP1))
    );
    assert_eq!(store.lookup("@").unwrap(), Some(r(layout.at, "@")));
    assert_eq!(
        store.lookup("@/.snapshots").unwrap(),
        Some(r(layout.snapshots, "@/.snapshots"))
    );
    assert_eq!(store.lookup("").unwrap(), Some(r(5, "")));
    assert_eq!(store.lookup("@/.snapshots/9/snapshot").unwrap(), None);
    // A directory that is not a subvolume is not found either.
    assert_eq!(store.lookup("@/.snapshots/1").unwrap(), None);
}

#[test]
fn list_understands_snappers_layout() {
    let (mut img, layout) = snapper_image();
    // A subvolume that holds no root and is not in snapper's layout.
    img.subvolume("@/var");
    img.set_default_cli(layout.id(2));
    let root = img.boot(SNAP1, true, Some(true));
    let store = BtrfsSnapshots::new(Root::new(&root));

    let list = store.list().unwrap();
    let paths: Vec<&str> = list.iter().map(|s| s.snapshot.path.as_str()).collect();
    assert_eq!(paths, ["@", SNAP1, SNAP2], "{list:#?}");

    let at = &list[0];
    assert_eq!(at.snapshot.id, layout.at);
    assert_eq!(at.number, None);
    assert!(!at.read_only);

    let one = &list[1];
    assert_eq!(one.snapshot, r(layout.id(1), SNAP1));
    assert_eq!(one.number, Some(1));
    assert_eq!(one.description.as_deref(), Some("first root filesystem"));
    assert!(one.read_only);

    let two = &list[2];
    assert_eq!(two.number, Some(2));
    assert_eq!(two.description.as_deref(), Some("after update & reboot"));
    assert!(!two.read_only);
}

#[test]
fn list_without_a_mount_showing_info_xml_still_numbers_snapshots() {
    let (mut img, layout) = snapper_image();
    img.set_default_cli(layout.id(1));
    let root = img.boot(SNAP1, true, None);
    img.unmount_top();
    let store = BtrfsSnapshots::new(Root::new(&root));

    let list = store.list().unwrap();
    let numbered: Vec<(Option<u64>, u64)> =
        list.iter().map(|s| (s.number, s.snapshot.id)).collect();
    // `@` is neither booted, nor the default, nor visible: only the two
    // snapshots remain, without descriptions.
    assert_eq!(
        numbered,
        [(Some(1), layout.id(1)), (Some(2), layout.id(2))],
        "{list:#?}"
    );
    assert!(list.iter().all(|s| s.description.is_none()), "{list:#?}");
}

#[test]
fn set_default_through_a_writable_root_with_snapshots_read_only() {
    let (mut img, layout) = snapper_image();
    img.set_default_cli(layout.id(2));
    let root = img.boot(SNAP2, false, Some(true));
    let store = BtrfsSnapshots::new(Root::new(&root));

    store.set_default(layout.id(1)).unwrap();

    assert_eq!(img.default_cli(&root), layout.id(1));
    assert_eq!(store.default_subvolume().unwrap(), r(layout.id(1), SNAP1));
}

#[test]
fn set_default_works_when_every_mount_is_read_only() {
    let (mut img, layout) = snapper_image();
    img.set_default_cli(layout.id(1));
    // A read-only root snapshot and a read-only /.snapshots, nothing else
    // mounted: the case that made openSUSE's checker give up silently.
    let root = img.boot(SNAP1, true, Some(true));
    img.unmount_top();
    let store = BtrfsSnapshots::new(Root::new(&root));

    store.set_default(layout.id(2)).unwrap();

    assert_eq!(img.default_cli(&root), layout.id(2));
    assert_eq!(store.default_subvolume().unwrap(), r(layout.id(2), SNAP2));
    // The private mount of the top level is gone.
    let pid = format!("top-level.{}.", std::process::id());
    assert!(
        BtrfsImage::mount_lines(&pid).is_empty(),
        "left over: {:?}",
        BtrfsImage::mount_lines(&pid)
    );
    // The change is on disk: it survives unmounting everything.
    img.unmount_all();
    img.mount_top();
    assert_eq!(img.default_cli(&img.top), layout.id(2));
}

#[test]
fn set_default_works_when_the_filesystem_was_only_ever_mounted_read_only() {
    let (mut img, layout) = snapper_image();
    img.set_default_cli(layout.id(1));
    img.unmount_all();
    // The first mount is read-only, so the filesystem itself is read-only
    // (as after an initrd that mounts the root `ro`).
    let root = img.boot(SNAP1, true, None);
    let line = BtrfsImage::mount_lines(root.to_str().unwrap()).join("\n");
    let super_options = line
        .split(" - ")
        .nth(1)
        .and_then(|rest| rest.split(' ').nth(2))
        .unwrap_or_default();
    assert!(super_options.starts_with("ro,"), "{line}");
    let store = BtrfsSnapshots::new(Root::new(&root));

    store.set_default(layout.id(2)).unwrap();

    assert_eq!(img.default_cli(&root), layout.id(2));
    img.unmount_all();
    img.mount_top();
    assert_eq!(img.default_cli(&img.top), layout.id(2));
}

#[test]
fn set_default_refuses_what_is_not_a_subvolume() {
    let (mut img, layout) = snapper_image();
    img.set_default_cli(layout.id(1));
    let root = img.boot(SNAP1, false, None);
    let store = BtrfsSnapshots::new(Root::new(&root));

    for bad in [0, 4242] {
        let err = store.set_default(bad).unwrap_err();
        assert_eq!(code_for(&err), Code::Snapshot);
        let msg = chain(&err);
        assert!(msg.contains(&bad.to_string()), "{msg}");
    }
    assert_eq!(img.default_cli(&root), layout.id(1));
}

#[test]
fn a_root_that_is_not_btrfs_is_a_clear_error() {
    let mut img = BtrfsImage::new();
    let dir = img.new_dir("tmpfs");
    common::btrfs::run("mount", &["-t", "tmpfs", "none", dir.to_str().unwrap()]);
    // Let the fixture unmount it.
    img.track_mount(&dir);
    let store = BtrfsSnapshots::new(Root::new(&dir));

    for err in [
        store.booted().unwrap_err(),
        store.default_subvolume().unwrap_err(),
        store.list().unwrap_err(),
    ] {
        assert_eq!(code_for(&err), Code::Snapshot);
        let msg = chain(&err);
        assert!(msg.contains(dir.to_str().unwrap()), "{msg}");
    }
}
