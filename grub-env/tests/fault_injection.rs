//! Power cut at every step of the write path.
//!
//! `SimFs` is an in-memory file system that remembers, for every name and
//! every file's data, what is durable (synced) and what is only in the page
//! cache. The writer is stopped after each of its steps; for each stop, every
//! combination of "this unsynced change reached the disk / was lost / (for a
//! rename on FAT) left no name at all" is a possible disk after the power
//! cut. On every one of them, our reader and a model of GRUB's reader must
//! see the old or the new environment, and the same one.
//!
//! Each test runs twice: as on a journalling file system (copies replaced
//! by rename) and as on FAT (copies overwritten in place, where a power cut
//! can leave each 512-byte sector of a block old or new).

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
    /// Answer "FAT": files are overwritten in place.
    fat: bool,
}

impl SimFs {
    fn new(disk: Disk, stop_after: Option<usize>) -> Self {
        SimFs {
            disk: RefCell::new(disk),
            ops: Cell::new(0),
            stop_after,
            fat: false,
        }
    }

    fn fat(mut self, fat: bool) -> Self {
        self.fat = fat;
        self
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

    fn prefers_in_place(&self, _dir: &Path) -> io::Result<bool> {
        Ok(self.fat)
    }
}

/// What an unsynced file's data can be after a power cut: as synced, as
/// cached, and, for a block rewritten in place, any mix of old and new
/// 512-byte sectors (a sector is written whole or not at all).
fn data_outcomes(inode: &Inode) -> Vec<Vec<u8>> {
    let (old, new) = (&inode.durable, &inode.cur);
    if old.len() != new.len() || old.is_empty() || old.len() % 512 != 0 || old.len() > 4096 {
        return vec![old.clone(), new.clone()];
    }
    let sectors = old.len() / 512;
    (0..1u32 << sectors)
        .map(|mask| {
            let mut out = old.clone();
            for s in 0..sectors {
                if mask & (1 << s) != 0 {
                    out[s * 512..(s + 1) * 512].copy_from_slice(&new[s * 512..(s + 1) * 512]);
                }
            }
            out
        })
        .collect()
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
    let mut data_choices: Vec<Vec<Inode>> = vec![d.inodes.clone()];
    for &i in &dirty {
        let mut next = Vec::new();
        for base in &data_choices {
            for data in data_outcomes(&d.inodes[i]) {
                let mut inodes = base.clone();
                inodes[i] = Inode {
                    cur: data.clone(),
                    durable: data,
                };
                next.push(inodes);
            }
        }
        data_choices = next;
    }
    let mut out = Vec::new();
    for names in name_choices {
        for inodes in &data_choices {
            out.push(Disk {
                inodes: inodes.clone(),
                names: names.clone(),
                durable_names: names.clone(),
            });
        }
    }
    out
}

/// What GRUB's snippet loads, read with GRUB's own reader: the primary when
/// it loads and has `hc_seq`, else the backup when it does, else the first
/// copy that loads at all.
fn grub_view(disk: &Disk, primary: &Path, backup: &Path) -> Option<Env> {
    let load = |p: &Path| {
        disk.names
            .get(p)
            .and_then(|&i| Env::parse_as_grub(&disk.inodes[i].cur).ok())
            .map(|r| r.env)
    };
    let (p, b) = (load(primary), load(backup));
    let seq = |e: &Option<Env>| {
        e.as_ref()
            .is_some_and(|e| e.get("hc_seq").is_some_and(|s| !s.is_empty()))
    };
    if seq(&p) {
        p
    } else if seq(&b) {
        b
    } else {
        p.or(b)
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

/// Steps to write one copy: four through a new file and a rename, two in
/// place (write, fsync) on FAT over a copy of the same size, when the new
/// text ends within the first sector (`fits`).
fn copy_steps(disk: &Disk, path: &Path, fat: bool, fits: bool) -> usize {
    let same_size = disk
        .names
        .get(path)
        .is_some_and(|&i| disk.inodes[i].cur.len() == 1024);
    if fat && fits && same_size {
        2
    } else {
        4
    }
}

/// Every stop point of `change` on `initial`, as on a journalling file
/// system and as on FAT; returns how many crash disks were checked.
fn check_every_stop_point(initial: Disk, change: &[(&str, Option<&str>)]) -> usize {
    check_stop_points(initial.clone(), change, false) + check_stop_points(initial, change, true)
}

fn check_stop_points(initial: Disk, change: &[(&str, Option<&str>)], fat: bool) -> usize {
    let (primary, backup) = paths();
    let sim = |stop: Option<usize>| SimFs::new(initial.clone(), stop).fat(fat);
    let old = Store::with_fs(sim(None), &primary).load().unwrap().env;
    // The full write, to learn the new state and how many steps it takes.
    let full = Store::with_fs(sim(None), &primary);
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
    let repaired = !Store::with_fs(sim(None), &primary)
        .load()
        .unwrap()
        .backup_current;
    let fits = |env: &Env| {
        let bytes = env.to_bytes().unwrap();
        bytes.iter().rposition(|b| *b == b'\n').unwrap_or(0) < 512
    };
    let (old_fits, new_fits) = (fits(&old), fits(&new));
    let mut expected = copy_steps(&initial, &primary, fat, new_fits);
    if repaired {
        // The repair writes the backup as it is on disk; the update then
        // finds it at full size.
        expected +=
            copy_steps(&initial, &backup, fat, old_fits) + if fat && new_fits { 2 } else { 4 };
    } else {
        expected += copy_steps(&initial, &backup, fat, new_fits);
    }
    assert_eq!(steps, expected, "steps of the write (fat: {fat})");
    if fat && !repaired && copy_steps(&initial, &primary, true, new_fits) == 2 {
        // In place: the copies keep their inodes.
        assert_eq!(
            full.fs().disk.borrow().names.get(&primary),
            initial.names.get(&primary),
            "the primary was replaced, not overwritten"
        );
    }

    let mut checked = 0;
    for stop in 0..=steps {
        let store = Store::with_fs(sim(Some(stop)), &primary);
        let result = store.update(apply);
        assert_eq!(result.is_ok(), stop == steps, "stop after {stop} steps");
        let disk = store.fs().disk.borrow().clone();
        for after in crash_outcomes(&disk) {
            let ours = Store::with_fs(SimFs::new(after.clone(), None), &primary)
                .load()
                .unwrap_or_else(|e| {
                    panic!("stop {stop} (fat: {fat}): reader failed: {e}\n{after:?}")
                });
            assert!(
                same(&ours.env, &old) || same(&ours.env, &new),
                "stop {stop} (fat: {fat}): our reader saw neither old nor new:\n{}",
                ours.env
            );
            let grub = grub_view(&after, &primary, &backup);
            match grub {
                Some(g) => assert!(
                    same(&g, &ours.env),
                    "stop {stop} (fat: {fat}): GRUB sees\n{g}\nbut we see\n{}",
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
fn a_stale_checksum_is_reported_but_the_copy_grub_reads_is_read() {
    // Another tool changed a key in the primary. GRUB does not check our
    // checksum: it boots what the primary says, so that is what we read.
    let (primary, _) = paths();
    let disk = settled(Some(&[("hc_good", "@/g")]));
    let fs = SimFs::new(disk, None);
    let mut env = Env::parse(&fs.read(&Location::File(primary.clone())).unwrap().unwrap()).unwrap();
    env.set("hc_good", "@/edited").unwrap();
    fs.write_at(&primary, 0, &env.to_bytes().unwrap()).unwrap();
    let store = Store::with_fs(fs, &primary);
    let loaded = store.load().unwrap();
    assert_eq!(loaded.source, Source::Primary);
    assert_eq!(loaded.env.get("hc_good"), Some("@/edited"));
    assert!(
        loaded.problems.len() == 1 && loaded.problems[0].contains("checksum"),
        "{:?}",
        loaded.problems
    );
    // The repair keeps the value GRUB reads and makes both copies sound.
    let repaired = store.repair("20260101T000000Z").unwrap();
    assert_eq!(repaired, loaded.problems);
    let again = store.load().unwrap();
    assert!(again.problems.is_empty(), "{:?}", again.problems);
    assert_eq!(again.env.get("hc_good"), Some("@/edited"));
    assert!(again.backup_current);
}

#[test]
fn no_valid_copy_is_an_error_naming_both_files() {
    let (primary, backup) = paths();
    let fs = SimFs::new(Disk::default(), None);
    fs.write_new(&primary, b"").unwrap();
    fs.write_new(&backup, b"garbage").unwrap();
    let err = Store::with_fs(fs, &primary).load().unwrap_err().to_string();
    assert!(
        err.contains("/esp/grubenv: GRUB cannot read it: block is empty"),
        "{err}"
    );
    assert!(
        err.contains("/esp/grubenv.bak: GRUB cannot read it: only 7 bytes"),
        "{err}"
    );
}

#[test]
fn on_fat_an_update_overwrites_both_copies_in_place() {
    let (primary, backup) = paths();
    let disk = settled(Some(&[("hc_good", "@/g")]));
    let store = Store::with_fs(SimFs::new(disk.clone(), None).fat(true), &primary);
    store
        .update(|env| env.set("hc_trial", "@/t").map_err(|e| e.to_string()))
        .unwrap();
    assert_eq!(store.fs().ops.get(), 4, "write and fsync, twice");
    let after = store.fs().disk.borrow();
    assert_eq!(after.names.get(&primary), disk.names.get(&primary));
    assert_eq!(after.names.get(&backup), disk.names.get(&backup));
    assert_eq!(after.names.len(), 2, "no temporary file: {:?}", after.names);
    drop(after);
    assert_eq!(store.load().unwrap().env.get("hc_trial"), Some("@/t"));
}

#[test]
fn on_fat_a_text_beyond_the_first_sector_is_replaced_by_rename() {
    // A torn write could then mix the text of two versions: no in place.
    let (primary, _) = paths();
    let disk = settled(Some(&[("hc_good", "@/g")]));
    let store = Store::with_fs(SimFs::new(disk.clone(), None).fat(true), &primary);
    let long = "x".repeat(600);
    store
        .update(|env| env.set("vendor_note", &long).map_err(|e| e.to_string()))
        .unwrap();
    assert_eq!(store.fs().ops.get(), 8, "four steps per copy");
    assert_ne!(
        store.fs().disk.borrow().names.get(&primary),
        disk.names.get(&primary)
    );
    let n = check_every_stop_point(
        settled(Some(&[("vendor_note", &long)])),
        &[("hc_good", Some("@/g"))],
    );
    assert!(n > 20, "only {n} disks examined");
}
