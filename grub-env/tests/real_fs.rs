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
        loaded.problems[0].contains("grubenv: block is empty"),
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
