//! Power cut at every step of the write path.
//!
//! `SimFs` is an in-memory file system that remembers, for every name and
//! every file's data, what is durable (synced) and what is only in the page
//! cache. The writer is stopped after each of its steps; for each stop, every
//! combination of "this unsynced change reached the disk / was lost / (for a
//! rename on FAT) left no name at all" is a possible disk after the power
//! cut. On every one of them, our reader and a model of GRUB's reader must
//! see the old or the new environment, and the same one.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use grub_env::{Env, Fs, Location, LockGuard, Source, Store};

#[derive(Debug, Clone, PartialEq)]
struct Inode {
    cur: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct Disk {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
}

#[derive(Debug)]
struct SimFs {
    disk: RefCell<Disk>,
    ops: Cell<usize>,
    stop_after: Option<usize>,
}

impl SimFs {
    fn new(disk: Disk, stop_after: Option<usize>) -> Self {
        SimFs {
            disk: RefCell::new(disk),
            ops: Cell::new(0),
            stop_after,
        }
    }

    /// Count a step; fail it (the power is gone) once the budget is spent.
    fn step(&self) -> io::Result<()> {
        let n = self.ops.get();
        if self.stop_after.is_some_and(|s| n >= s) {
            return Err(io::Error::other("power cut"));
        }
        self.ops.set(n + 1);
        Ok(())
    }
}

impl Fs for SimFs {
    fn read(&self, loc: &Location) -> io::Result<Option<Vec<u8>>> {
        let d = self.disk.borrow();
        Ok(d.names.get(loc.path()).map(|&i| d.inodes[i].cur.clone()))
    }

    fn write_new(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.step()?;
        let mut d = self.disk.borrow_mut();
        match d.names.get(path).copied() {
            // Truncate and rewrite in place: the durable data is what it was.
            Some(i) => d.inodes[i].cur = data.to_vec(),
            None => {
                d.inodes.push(Inode {
                    cur: data.to_vec(),
                    durable: Vec::new(),
                });
                let i = d.inodes.len() - 1;
                d.names.insert(path.to_path_buf(), i);
            }
        }
        Ok(())
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        let mut d = self.disk.borrow_mut();
        let i = *d.names.get(path).ok_or(io::ErrorKind::NotFound)?;
        d.inodes[i].durable = d.inodes[i].cur.clone();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step()?;
        let mut d = self.disk.borrow_mut();
        let i = d.names.remove(from).ok_or(io::ErrorKind::NotFound)?;
        d.names.insert(to.to_path_buf(), i);
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        self.step()?;
        let mut d = self.disk.borrow_mut();
        d.durable_names = d.names.clone();
        Ok(())
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.step()?;
        let mut d = self.disk.borrow_mut();
        let i = *d.names.get(path).ok_or(io::ErrorKind::NotFound)?;
        let off = offset as usize;
        d.inodes[i].cur[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn lock(&self, _path: &Path) -> io::Result<LockGuard> {
        Ok(LockGuard::none())
    }
}

/// Every disk a power cut could leave behind `d`: each name as durable, as
/// in the page cache, or gone (a FAT rename torn between its two directory
/// entries); each file's data as synced or as cached.
fn crash_outcomes(d: &Disk) -> Vec<Disk> {
    let paths: Vec<PathBuf> = d
        .names
        .keys()
        .chain(d.durable_names.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut name_choices: Vec<BTreeMap<PathBuf, usize>> = vec![BTreeMap::new()];
    for p in &paths {
        let durable = d.durable_names.get(p).copied();
        let cur = d.names.get(p).copied();
        let mut options = vec![durable];
        if cur != durable {
            options.push(cur);
            if durable.is_some() && cur.is_some() {
                options.push(None);
            }
        }
        let mut next = Vec::new();
        for base in &name_choices {
            for o in &options {
                let mut m = base.clone();
                if let Some(i) = o {
                    m.insert(p.clone(), *i);
                }
                next.push(m);
            }
        }
        name_choices = next;
    }
    let dirty: Vec<usize> = (0..d.inodes.len())
        .filter(|&i| d.inodes[i].cur != d.inodes[i].durable)
        .collect();
    let mut out = Vec::new();
    for names in name_choices {
        for mask in 0..(1u32 << dirty.len()) {
            let mut inodes = d.inodes.clone();
            for (bit, &i) in dirty.iter().enumerate() {
                let data = if mask & (1 << bit) != 0 {
                    inodes[i].cur.clone()
                } else {
                    inodes[i].durable.clone()
                };
                inodes[i] = Inode {
                    cur: data.clone(),
                    durable: data,
                };
            }
            out.push(Disk {
                inodes,
                names: names.clone(),
                durable_names: names.clone(),
            });
        }
    }
    out
}

/// What GRUB's snippet loads: the primary, or the backup when the primary
/// does not load or has no `hc_seq`.
fn grub_view(disk: &Disk, primary: &Path, backup: &Path) -> Option<Env> {
    let load = |p: &Path| {
        disk.names
            .get(p)
            .and_then(|&i| Env::parse(&disk.inodes[i].cur).ok())
    };
    match load(primary) {
        Some(env) if env.get("hc_seq").is_some() => Some(env),
        other => load(backup).or(other),
    }
}

fn paths() -> (PathBuf, PathBuf) {
    (
        PathBuf::from("/esp/grubenv"),
        PathBuf::from("/esp/grubenv.bak"),
    )
}

/// A settled disk holding `env` written by a complete update (or nothing).
fn settled(initial: Option<&[(&str, &str)]>) -> Disk {
    let (primary, _) = paths();
    let store = Store::with_fs(SimFs::new(Disk::default(), None), &primary);
    if let Some(kv) = initial {
        store
            .update(|env| {
                for (k, v) in kv {
                    env.set(k, v).map_err(|e| e.to_string())?;
                }
                Ok(())
            })
            .unwrap();
    }
    let disk = store.fs().disk.borrow().clone();
    crash_outcomes(&disk)
        .into_iter()
        .find(|d| {
            d.names == disk.names
                && d.inodes
                    .iter()
                    .zip(&disk.inodes)
                    .all(|(a, b)| a.cur == b.cur)
        })
        .unwrap()
}

/// Equal up to the bookkeeping keys, which differ between old and new.
fn same(a: &Env, b: &Env) -> bool {
    let strip = |e: &Env| {
        e.iter()
            .filter(|(k, _)| *k != "hc_sum")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    strip(a) == strip(b)
}

fn check_every_stop_point(initial: Disk, change: &[(&str, Option<&str>)]) -> usize {
    let (primary, backup) = paths();
    let old = Store::with_fs(SimFs::new(initial.clone(), None), &primary)
        .load()
        .unwrap()
        .env;
    // The full write, to learn the new state and how many steps it takes.
    let full = Store::with_fs(SimFs::new(initial.clone(), None), &primary);
    let apply = |env: &mut Env| -> Result<(), String> {
        for (k, v) in change {
            match v {
                Some(v) => env.set(k, v).map_err(|e| e.to_string())?,
                None => {
                    env.unset(k);
                }
            }
        }
        Ok(())
    };
    let (new, ()) = full.update(apply).unwrap();
    let steps = full.fs().ops.get();
    let repair = if Store::with_fs(SimFs::new(initial.clone(), None), &primary)
        .load()
        .unwrap()
        .backup_current
    {
        0
    } else {
        4
    };
    assert_eq!(
        steps,
        8 + repair,
        "two copies (and a repaired backup), four steps each"
    );

    let mut checked = 0;
    for stop in 0..=steps {
        let store = Store::with_fs(SimFs::new(initial.clone(), Some(stop)), &primary);
        let result = store.update(apply);
        assert_eq!(result.is_ok(), stop == steps, "stop after {stop} steps");
        let disk = store.fs().disk.borrow().clone();
        for after in crash_outcomes(&disk) {
            let ours = Store::with_fs(SimFs::new(after.clone(), None), &primary)
                .load()
                .unwrap_or_else(|e| panic!("stop {stop}: reader failed: {e}\n{after:?}"));
            assert!(
                same(&ours.env, &old) || same(&ours.env, &new),
                "stop {stop}: our reader saw neither old nor new:\n{}",
                ours.env
            );
            let grub = grub_view(&after, &primary, &backup);
            match grub {
                Some(g) => assert!(
                    same(&g, &ours.env),
                    "stop {stop}: GRUB sees\n{g}\nbut we see\n{}",
                    ours.env
                ),
                None => assert_eq!(
                    ours.source,
                    Source::Neither,
                    "stop {stop}: GRUB sees nothing"
                ),
            }
            checked += 1;
        }
    }
    checked
}

#[test]
fn power_cut_at_every_step_of_a_first_write() {
    let n = check_every_stop_point(
        settled(None),
        &[("hc_trial", Some("@/.snapshots/2/snapshot"))],
    );
    assert!(n > 15, "only {n} disks examined");
}

#[test]
fn power_cut_at_every_step_of_an_update() {
    let initial = settled(Some(&[
        ("saved_entry", "gnulinux"),
        ("hc_good", "@/.snapshots/1/snapshot"),
        ("hc_tries", "3"),
    ]));
    let n = check_every_stop_point(
        initial,
        &[
            ("hc_trial", Some("@/.snapshots/2/snapshot")),
            ("hc_tries", Some("2")),
            ("hc_good", None),
        ],
    );
    assert!(n > 20, "only {n} disks examined");
}

#[test]
fn power_cut_over_a_plain_grub_editenv_file() {
    // A file grub-editenv made, no backup yet.
    let (primary, _) = paths();
    let fs = SimFs::new(Disk::default(), None);
    let mut env = Env::new();
    env.set("saved_entry", "1").unwrap();
    fs.write_new(&primary, &env.to_bytes().unwrap()).unwrap();
    fs.sync_file(&primary).unwrap();
    fs.sync_dir(Path::new("/esp")).unwrap();
    let disk = fs.disk.borrow().clone();
    check_every_stop_point(disk, &[("hc_good", Some("@/.snapshots/1/snapshot"))]);
}

#[test]
fn power_cut_after_grub_counted_in_the_primary() {
    // GRUB decremented hc_tries in the primary only; the backup is stale and
    // is brought up to date before the primary is replaced.
    let (primary, _) = paths();
    let fs = SimFs::new(
        settled(Some(&[("hc_trial", "@/t"), ("hc_tries", "3")])),
        None,
    );
    let mut env = Env::parse(&fs.read(&Location::File(primary.clone())).unwrap().unwrap()).unwrap();
    env.set("hc_tries", "2").unwrap();
    fs.write_at(&primary, 0, &env.to_bytes().unwrap()).unwrap();
    fs.sync_file(&primary).unwrap();
    let disk = fs.disk.borrow().clone();
    let n = check_every_stop_point(disk, &[("hc_good", Some("@/t")), ("hc_trial", None)]);
    assert!(n > 20, "only {n} disks examined");
}

#[test]
fn grub_counting_in_the_primary_wins_over_the_backup() {
    let (primary, _) = paths();
    let disk = settled(Some(&[("hc_trial", "@/t"), ("hc_tries", "3")]));
    let fs = SimFs::new(disk, None);
    // GRUB's save_env: the whole block rewritten in place in the primary.
    let mut env = Env::parse(&fs.read(&Location::File(primary.clone())).unwrap().unwrap()).unwrap();
    env.set("hc_tries", "2").unwrap();
    env.set("hc_booted", "trial").unwrap();
    fs.write_at(&primary, 0, &env.to_bytes().unwrap()).unwrap();
    let loaded = Store::with_fs(fs, &primary).load().unwrap();
    assert_eq!(loaded.source, Source::Primary);
    assert_eq!(loaded.env.get("hc_tries"), Some("2"));
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
}

#[test]
fn a_stale_checksum_sends_the_reader_to_the_backup() {
    let (primary, _) = paths();
    let disk = settled(Some(&[("hc_good", "@/g")]));
    let fs = SimFs::new(disk, None);
    let mut env = Env::parse(&fs.read(&Location::File(primary.clone())).unwrap().unwrap()).unwrap();
    env.set("hc_good", "@/evil").unwrap();
    fs.write_at(&primary, 0, &env.to_bytes().unwrap()).unwrap();
    let loaded = Store::with_fs(fs, &primary).load().unwrap();
    assert_eq!(loaded.source, Source::Backup);
    assert_eq!(loaded.env.get("hc_good"), Some("@/g"));
    assert!(
        loaded.problems[0].contains("checksum"),
        "{:?}",
        loaded.problems
    );
}

#[test]
fn no_valid_copy_is_an_error_naming_both_files() {
    let (primary, backup) = paths();
    let fs = SimFs::new(Disk::default(), None);
    fs.write_new(&primary, b"").unwrap();
    fs.write_new(&backup, b"garbage").unwrap();
    let err = Store::with_fs(fs, &primary).load().unwrap_err().to_string();
    assert!(err.contains("/esp/grubenv: block is empty"), "{err}");
    assert!(err.contains("/esp/grubenv.bak: block is 7 bytes"), "{err}");
}
