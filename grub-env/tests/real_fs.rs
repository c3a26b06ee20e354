//! The store on the real file system: round trips, concurrent writers,
//! recovery from a destroyed primary.

use std::sync::Arc;
use std::thread;

use grub_env::{Env, Source, Store};
use proptest::prelude::*;

#[test]
fn update_writes_two_identical_valid_copies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let store = Store::for_file(&path);
    store
        .update(|env| {
            env.set("hc_good", "@/.snapshots/1/snapshot")
                .map_err(|e| e.to_string())
        })
        .unwrap();
    let primary = std::fs::read(&path).unwrap();
    let backup = std::fs::read(dir.path().join("grubenv.bak")).unwrap();
    assert_eq!(primary.len(), 1024);
    assert_eq!(primary, backup);
    let loaded = store.load().unwrap();
    assert_eq!(loaded.source, Source::Primary);
    assert_eq!(loaded.seq, 1);
    assert_eq!(loaded.env.get("hc_good"), Some("@/.snapshots/1/snapshot"));
    assert!(!dir.path().join("grubenv.tmp").exists());
}

#[test]
fn concurrent_writers_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("grubenv"));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let path = Arc::clone(&path);
            thread::spawn(move || {
                let store = Store::for_file(path.as_path());
                for _ in 0..25 {
                    store
                        .update(|env| {
                            let n: u32 = env.get("counter").unwrap_or("0").parse().unwrap();
                            env.set("counter", &(n + 1).to_string())
                                .map_err(|e| e.to_string())
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let loaded = Store::for_file(path.as_path()).load().unwrap();
    assert_eq!(loaded.env.get("counter"), Some("100"));
    assert_eq!(loaded.seq, 100);
}

#[test]
fn a_truncated_primary_is_recovered_from_the_backup_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let store = Store::for_file(&path);
    store
        .update(|env| env.set("hc_good", "@/g").map_err(|e| e.to_string()))
        .unwrap();
    // What grub-editenv leaves after a power cut between truncate and write.
    std::fs::write(&path, b"").unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.source, Source::Backup);
    assert_eq!(loaded.env.get("hc_good"), Some("@/g"));
    assert!(
        loaded.problems[0].contains("grubenv: GRUB cannot read it: block is empty"),
        "{:?}",
        loaded.problems
    );
    store.update(|_| Ok(())).unwrap();
    let again = store.load().unwrap();
    assert_eq!(again.source, Source::Primary);
    assert!(again.problems.is_empty());
}

#[test]
fn an_edit_that_refuses_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let store = Store::for_file(&path);
    let err = store
        .update(|env| env.set("x", &"y".repeat(5000)).map_err(|e| e.to_string()))
        .map(|_| ());
    // Setting is fine; the block overflows when written.
    let err = err.unwrap_err().to_string();
    assert!(err.contains("needs") && err.contains("holds 1024"), "{err}");
    assert!(!path.exists());
    let err = store
        .update(|_| Err::<(), _>("no thanks".into()))
        .unwrap_err();
    assert_eq!(err.to_string(), "no thanks");
    assert!(!path.exists());
}

#[test]
fn a_missing_directory_is_named_in_the_error() {
    let store = Store::for_file("/nonexistent-dir-for-test/grubenv");
    let err = store.update(|_| Ok(())).unwrap_err().to_string();
    assert!(err.contains("/nonexistent-dir-for-test"), "{err}");
}

fn key() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,15}"
}

fn value() -> impl Strategy<Value = String> {
    // Any text but NUL, weighted towards GRUB's special characters.
    proptest::collection::vec(
        prop_oneof![
            Just('\\'),
            Just('\n'),
            Just('='),
            Just('#'),
            Just(' '),
            any::<char>().prop_filter("no NUL", |c| *c != '\0'),
        ],
        0..40,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn format_round_trips(entries in proptest::collection::vec((key(), value()), 0..12)) {
        let mut env = Env::new();
        for (k, v) in &entries {
            env.set(k, v).unwrap();
        }
        prop_assume!(env.used_bytes() <= env.block_size());
        let bytes = env.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), 1024);
        let back = Env::parse(&bytes).unwrap();
        prop_assert_eq!(&back, &env);
        prop_assert_eq!(back.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
        let _ = Env::parse(&bytes);
    }
}

/// The real file system, answering "FAT" so that copies are overwritten in
/// place (this host's kernel cannot mount FAT; the VM test `power_cut`
/// exercises the real thing).
#[derive(Debug, Clone, Copy)]
struct InPlace;

impl grub_env::Fs for InPlace {
    fn read(&self, loc: &grub_env::Location) -> std::io::Result<Option<Vec<u8>>> {
        grub_env::RealFs.read(loc)
    }
    fn write_new(&self, path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
        grub_env::RealFs.write_new(path, data)
    }
    fn sync_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        grub_env::RealFs.sync_file(path)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        grub_env::RealFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        grub_env::RealFs.sync_dir(dir)
    }
    fn write_at(&self, path: &std::path::Path, offset: u64, data: &[u8]) -> std::io::Result<()> {
        grub_env::RealFs.write_at(path, offset, data)
    }
    fn lock(&self, path: &std::path::Path) -> std::io::Result<grub_env::LockGuard> {
        grub_env::RealFs.lock(path)
    }
    fn prefers_in_place(&self, _dir: &std::path::Path) -> std::io::Result<bool> {
        Ok(true)
    }
}

#[test]
fn in_place_updates_keep_each_file_and_write_what_grub_editenv_reads() {
    use grub_env::Fs;
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let backup = dir.path().join("grubenv.bak");
    assert!(
        !grub_env::RealFs.prefers_in_place(dir.path()).unwrap(),
        "a temporary directory is not on FAT"
    );
    let store = Store::with_fs(InPlace, &path);
    // The first write creates both files (by rename: nothing to overwrite).
    store
        .update(|env| env.set("hc_good", "@/g").map_err(|e| e.to_string()))
        .unwrap();
    let inodes = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
    let (p_ino, b_ino) = (inodes(&path), inodes(&backup));
    for i in 0..5 {
        store
            .update(|env| {
                env.set("hc_trial", &format!("@/t{i}"))
                    .map_err(|e| e.to_string())
            })
            .unwrap();
        assert_eq!(inodes(&path), p_ino, "the primary was replaced");
        assert_eq!(inodes(&backup), b_ino, "the backup was replaced");
    }
    let loaded = store.load().unwrap();
    assert_eq!(loaded.seq, 6);
    assert_eq!(loaded.env.get("hc_trial"), Some("@/t4"));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&backup).unwrap()
    );
    assert!(!dir.path().join("grubenv.tmp").exists());
    if let Ok(out) = std::process::Command::new("grub-editenv")
        .arg(&path)
        .arg("list")
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "grub-editenv: {out:?}");
        assert!(text.contains("hc_trial=@/t4\n"), "{text}");
    } else {
        panic!("grub-editenv (package grub-common) is needed for this test");
    }
}
