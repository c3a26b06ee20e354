//! Our reader against the real `grub-editenv list` (Debian's grub-common,
//! GRUB 2.06) over damaged environment files: a stray byte in the padding,
//! bytes appended, a file cut short, a damaged header, flipped bytes, a
//! missing checksum line, random bytes spliced in. Whenever `grub-editenv`
//! reads a file, our reader must read exactly the same entries (and refuse
//! exactly the files it refuses); and the store must take, from a damaged
//! primary and a sound backup, the copy GRUB's snippet takes, with GRUB's
//! values.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use grub_env::{grub_entries, Env, Source, Store};
use proptest::prelude::*;

/// `grub-editenv FILE list`: its standard output, or `None` when it
/// refuses the file. Panics (loudly) when `grub-editenv` is missing.
fn editenv_list(file: &Path) -> Option<Vec<u8>> {
    let out = Command::new("grub-editenv")
        .arg(file)
        .arg("list")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run grub-editenv ({e}): install Debian's grub-common \
                 (scripts/install-deps) to run the differential tests"
            )
        });
    out.status.success().then_some(out.stdout)
}

/// What `grub-editenv list` prints for these entries: `name=value\n` each.
fn listing(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in entries {
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// A sound copy as the store writes it: our keys, a foreign key, a value
/// with escapes.
fn sound_block(dir: &Path, trial: &str) -> Vec<u8> {
    let path = dir.join("sound");
    let store = Store::for_file(&path);
    store
        .update(|env| {
            for (k, v) in [
                ("saved_entry", "gnulinux-advanced"),
                ("hc_good", "@/.snapshots/1/snapshot"),
                ("hc_good_id", "256"),
                ("hc_trial", trial),
                ("hc_tries", "3"),
                ("note", "a\\b\nc"),
            ] {
                env.set(k, v).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .unwrap();
    std::fs::read(&path).unwrap()
}

#[derive(Debug, Clone)]
enum Damage {
    /// A byte anywhere in the trailing `#` padding.
    PaddingByte(usize, u8),
    /// Bytes appended to the file.
    Append(Vec<u8>),
    /// The file cut to this many bytes.
    Truncate(usize),
    /// One byte of the header replaced.
    Header(usize, u8),
    /// One byte anywhere replaced.
    Flip(usize, u8),
    /// The `hc_sum=` line removed (the padding keeps the size).
    DropSum,
    /// Random bytes written over part of the text.
    Splice(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    let byte = prop_oneof![
        Just(b'\n'),
        Just(b'='),
        Just(b'\\'),
        Just(b'#'),
        Just(0u8),
        any::<u8>()
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Damage::PaddingByte(i, b)),
        proptest::collection::vec(byte.clone(), 1..40).prop_map(Damage::Append),
        (0usize..1100).prop_map(Damage::Truncate),
        (0usize..25, byte.clone()).prop_map(|(i, b)| Damage::Header(i, b)),
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Damage::Flip(i, b)),
        Just(Damage::DropSum),
        (any::<usize>(), proptest::collection::vec(byte, 1..12))
            .prop_map(|(i, v)| Damage::Splice(i, v)),
    ]
}

fn apply(block: &[u8], d: &Damage) -> Vec<u8> {
    let mut b = block.to_vec();
    let text_end = b.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
    match d {
        Damage::PaddingByte(i, v) => {
            let at = text_end + i % (b.len() - text_end);
            b[at] = *v;
        }
        Damage::Append(bytes) => b.extend_from_slice(bytes),
        Damage::Truncate(n) => b.truncate(*n),
        Damage::Header(i, v) => b[*i] = *v,
        Damage::Flip(i, v) => {
            let at = i % b.len();
            b[at] = *v;
        }
        Damage::DropSum => {
            let text = b.clone();
            let start = text
                .windows(8)
                .position(|w| w == b"\nhc_sum=")
                .expect("a sound block has hc_sum")
                + 1;
            let end = start + text[start..].iter().position(|&c| c == b'\n').unwrap() + 1;
            b.drain(start..end);
            b.resize(text.len(), b'#');
        }
        Damage::Splice(i, bytes) => {
            let at = i % text_end.max(1);
            for (j, v) in bytes.iter().enumerate() {
                if at + j < b.len() {
                    b[at + j] = *v;
                }
            }
        }
    }
    b
}

/// GRUB's view of our keys: what `load_env` leaves set (the last value of a
/// key wins), as text.
fn grub_keys(entries: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<String, String> {
    entries
        .iter()
        // `load_env` of our keys sets only names that are exactly one of
        // them (all valid keys).
        .filter(|(k, _)| {
            k.starts_with(b"hc_") && std::str::from_utf8(k).is_ok_and(grub_env::format::valid_key)
        })
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

fn our_keys(env: &Env) -> BTreeMap<String, String> {
    env.iter()
        .filter(|(k, _)| k.starts_with("hc_") && grub_env::format::valid_key(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn our_reader_reads_what_grub_editenv_reads(d in damage()) {
        let dir = tempfile::tempdir().unwrap();
        let sound = sound_block(dir.path(), "@/.snapshots/7/snapshot");
        let damaged = apply(&sound, &d);
        let file = dir.path().join("grubenv");
        std::fs::write(&file, &damaged).unwrap();

        let theirs = editenv_list(&file);
        let ours = grub_entries(&damaged);
        prop_assert_eq!(theirs.is_some(), ours.is_some(), "accepted by grub-editenv vs us: {:?}", d);
        prop_assert_eq!(
            theirs.is_some(),
            Env::parse_as_grub(&damaged).is_ok(),
            "parse_as_grub accepts what grub-editenv accepts: {:?}", d
        );
        let (Some(theirs), Some(ours)) = (theirs, ours) else { return Ok(()) };
        let our_listing = listing(&ours);
        prop_assert_eq!(
            String::from_utf8_lossy(&our_listing),
            String::from_utf8_lossy(&theirs),
            "{:?}", d
        );
        prop_assert_eq!(&our_listing, &theirs, "byte for byte: {:?}", d);

        // The store, with a sound, older backup beside the damaged primary,
        // takes the copy GRUB's snippet takes and reads GRUB's values.
        let backup = sound_block(dir.path(), "@/.snapshots/6/snapshot");
        std::fs::write(dir.path().join("grubenv.bak"), &backup).unwrap();
        let loaded = Store::for_file(&file).load().unwrap();
        let primary_has_seq = ours.iter().any(|(k, v)| k == b"hc_seq" && !v.is_empty());
        let grub_reads = if primary_has_seq {
            ours.clone()
        } else {
            grub_entries(&backup).unwrap()
        };
        prop_assert_eq!(
            loaded.source,
            if primary_has_seq { Source::Primary } else { Source::Backup },
            "{:?}", d
        );
        prop_assert_eq!(our_keys(&loaded.env), grub_keys(&grub_reads), "{:?}", d);
        // A damaged primary is always reported (so that it is repaired),
        // unless the damage changed nothing GRUB or we read.
        if damaged != sound {
            let strictly_same = Env::parse(&damaged).ok() == Env::parse(&sound).ok()
                && Env::parse(&damaged).is_ok();
            prop_assert!(strictly_same || !loaded.problems.is_empty(), "{:?}", d);
        }
    }
}

#[test]
fn a_stray_byte_in_the_padding_is_read_as_grub_reads_it_and_repaired() {
    // The case seen in the field: stock GRUB reads this primary; our old
    // reader refused it, read the older backup and then undid the attempt
    // GRUB had just counted.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grubenv");
    let store = Store::for_file(&file);
    store
        .update(|env| {
            env.set("hc_trial", "@/t").map_err(|e| e.to_string())?;
            env.set("hc_tries", "3").map_err(|e| e.to_string())
        })
        .unwrap();
    // GRUB counts an attempt into the primary...
    let mut env = Env::parse(&std::fs::read(&file).unwrap()).unwrap();
    env.set("hc_tries", "2").unwrap();
    env.set("hc_booted", "trial").unwrap();
    let mut bytes = env.to_bytes().unwrap();
    // ... and a byte of its padding is damaged.
    bytes[1000] = b'x';
    std::fs::write(&file, &bytes).unwrap();
    let listed = editenv_list(&file).expect("grub-editenv reads it");
    assert!(String::from_utf8_lossy(&listed).contains("hc_tries=2\n"));

    let loaded = store.load().unwrap();
    assert_eq!(loaded.source, Source::Primary);
    assert_eq!(loaded.env.get("hc_tries"), Some("2"));
    assert_eq!(loaded.env.get("hc_booted"), Some("trial"));
    assert!(
        loaded.problems.len() == 1 && loaded.problems[0].contains("padding"),
        "{:?}",
        loaded.problems
    );

    // The repair keeps the damaged bytes beside it and rewrites both copies
    // with GRUB's values.
    let repaired = store.repair("20260101T000000Z").unwrap();
    assert_eq!(repaired, loaded.problems);
    let kept = dir.path().join("grubenv.broken-20260101T000000Z");
    assert_eq!(std::fs::read(&kept).unwrap(), bytes);
    let again = store.load().unwrap();
    assert!(again.problems.is_empty(), "{:?}", again.problems);
    assert!(again.backup_current);
    assert_eq!(again.env.get("hc_tries"), Some("2"));
    assert!(Env::parse(&std::fs::read(&file).unwrap()).is_ok());
    // Nothing more to repair.
    assert!(store.repair("20260101T000001Z").unwrap().is_empty());
}

#[test]
fn with_both_copies_unreadable_recover_keeps_them_and_starts_anew() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grubenv");
    let backup = dir.path().join("grubenv.bak");
    std::fs::write(&file, b"torn").unwrap();
    std::fs::write(&backup, b"").unwrap();
    let store = Store::for_file(&file);
    assert!(store.load().is_err());
    assert!(store.update(|_| Ok(())).is_err());
    let done = store.recover("20260101T000000Z").unwrap();
    assert!(
        done.iter()
            .any(|l| l.contains("grubenv.broken-20260101T000000Z")),
        "{done:?}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("grubenv.broken-20260101T000000Z")).unwrap(),
        b"torn"
    );
    assert_eq!(
        std::fs::read(dir.path().join("grubenv.bak.broken-20260101T000000Z")).unwrap(),
        b""
    );
    let loaded = store.load().unwrap();
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    assert_eq!(loaded.env.get("hc_seq"), Some("1"));
    assert!(editenv_list(&file).is_some());
}

#[test]
fn a_damaged_copy_without_our_sequence_number_is_no_empty_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grubenv");
    let backup = dir.path().join("grubenv.bak");
    // Torn in the middle of our first key: GRUB reads it, with no keys.
    let torn = b"# GRUB Environment Block\nhc_good=@/.snap";
    std::fs::write(&file, torn).unwrap();
    std::fs::write(&backup, torn).unwrap();
    assert_eq!(editenv_list(&file), Some(Vec::new()));
    let err = Store::for_file(&file).load().unwrap_err().to_string();
    assert!(err.contains("GRUB reads no hc_seq from it"), "{err}");

    // A primary GRUB refuses and a sound backup without our keys (as
    // grub-editenv leaves it): GRUB's snippet loads the backup, so do we.
    std::fs::write(&file, b"garbage").unwrap();
    let mut env = Env::new();
    env.set("saved_entry", "1").unwrap();
    std::fs::write(&backup, env.to_bytes().unwrap()).unwrap();
    let loaded = Store::for_file(&file).load().unwrap();
    assert_eq!(loaded.source, Source::Backup);
    assert_eq!(loaded.env.get("saved_entry"), Some("1"));
}
