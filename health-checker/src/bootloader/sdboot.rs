//! The boot environment seam on systemd-boot (`docs/systemd-boot.md`): the
//! engine's [`BootState`] kept in a crash-safe state file on the ESP, with
//! the loader's side (which entry is booted by default, the trial's boot
//! counter) in Boot Loader Specification entries whose names systemd-boot
//! acts on before the kernel starts.
//!
//! - [`BootEnv::load`] reads the state file and overlays what systemd-boot
//!   did: the trial's attempts left (its entry's `+LEFT`), the entry booted
//!   (`LoaderEntrySelected`), and the fall-back that follows from both.
//! - [`BootEnv::store`] writes the state and makes the entries follow it,
//!   new files first, then the state, then renames and removals.
//! - [`SdBootEnv::sync`] also makes entries for the newest snapshots (up to
//!   `max_entries`) and removes those of deleted snapshots.

use std::collections::{BTreeSet, HashMap, HashSet};

use anyhow::{bail, Context, Result};
use grub_env::Store;

use super::efivars::EfiVars;
use super::esp::{read_all, Entry, Esp, ESP_RESERVE};
use super::kernel::{entry_options, find_kernel, SnapshotFiles};
use super::names::{parse_selected, Counter, EntryName, Role};
use crate::engine::bootstate::{self, BootState, GrubEntry, MAX_TRIES};
use crate::engine::{BootEnv, GrubBootEnv};
use crate::snapshots::{SnapshotRef, Snapshots};

/// The systemd-boot backend.
#[derive(Debug)]
pub struct SdBootEnv {
    state: GrubBootEnv,
    esp: Esp,
    vars: EfiVars,
    files: Box<dyn SnapshotFiles + Send + Sync>,
    /// The kernel options besides `rootflags=`, or why they are unknown.
    options: std::result::Result<String, String>,
    max_entries: usize,
}

/// What the entries should be.
#[derive(Debug, Clone, Default)]
struct Want {
    good: Option<SnapshotRef>,
    trial: Option<SnapshotRef>,
    /// Arm the trial afresh with this many attempts.
    fresh: Option<u8>,
    /// The exact set of snapshots with a menu entry; `None`: keep the menu
    /// entries there are.
    menu: Option<Vec<SnapshotRef>>,
}

/// What a reconciliation did, one line per file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Done {
    pub lines: Vec<String>,
}

/// One of our entries as `status` and `boot-entries list` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryView {
    pub file: String,
    pub role: String,
    pub snapshot_id: u64,
    /// systemd-boot's attempts left, for a counted entry.
    pub tries_left: Option<u32>,
    pub tries_done: Option<u32>,
    pub bad: bool,
}

/// The loader's side, for `status` and `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoaderView {
    pub esp: String,
    pub loader_default: Option<String>,
    /// The entry systemd-boot boots by default (ours), as we predict it.
    pub default_entry: Option<String>,
    /// Its kernel options.
    #[serde(default)]
    pub default_options: Option<String>,
    /// The trial's counting entry and its attempts left.
    pub counting_entry: Option<String>,
    pub tries_left: Option<u32>,
    /// `LoaderEntrySelected`: the entry this boot came from.
    pub booted_entry: Option<String>,
    /// EFI variables that override `loader.conf` (`LoaderEntryDefault`,
    /// `LoaderEntryOneShot`), with their values.
    pub overrides: Vec<String>,
    pub entries: Vec<EntryView>,
}

impl SdBootEnv {
    pub fn new(
        esp: Esp,
        vars: EfiVars,
        files: Box<dyn SnapshotFiles + Send + Sync>,
        options: std::result::Result<String, String>,
        max_entries: usize,
    ) -> Self {
        let state = GrubBootEnv::new(Store::for_file(esp.state_path()));
        SdBootEnv {
            state,
            esp,
            vars,
            files,
            options,
            max_entries: max_entries.max(2),
        }
    }

    pub fn esp(&self) -> &Esp {
        &self.esp
    }

    /// The state file, as a GRUB-format store (what `bootenv` edits).
    pub fn state_env(&self) -> &GrubBootEnv {
        &self.state
    }

    pub fn vars(&self) -> &EfiVars {
        &self.vars
    }

    /// The entry this boot came from (`LoaderEntrySelected`), if it is one
    /// of ours. An unreadable variable is reported and taken as unknown.
    fn selected(&self) -> Option<EntryName> {
        match self.vars.string("LoaderEntrySelected") {
            Ok(v) => v.as_deref().and_then(parse_selected),
            Err(e) => {
                tracing::warn!("{e:#}; the booted entry is unknown");
                None
            }
        }
    }

    /// The loader's side as it is now.
    pub fn view(&self) -> Result<LoaderView> {
        let entries = self.esp.list()?;
        let mut overrides = Vec::new();
        for var in ["LoaderEntryDefault", "LoaderEntryOneShot"] {
            if let Some(v) = self.vars.string(var)? {
                overrides.push(format!("{var}={v}"));
            }
        }
        let counting = entries
            .iter()
            .filter(|n| n.role == Role::Trial && n.counter.is_some_and(|c| c.left > 0))
            .max_by_key(|n| n.counter.map(|c| c.left));
        let default = default_choice(&entries);
        Ok(LoaderView {
            esp: self.esp.dir().display().to_string(),
            loader_default: self.esp.loader_default()?,
            default_entry: default.map(|n| n.to_string()),
            default_options: default
                .and_then(|n| self.esp.read(&n).ok())
                .map(|e| e.options),
            counting_entry: counting.map(|n| n.to_string()),
            tries_left: counting.and_then(|n| n.counter).map(|c| c.left),
            booted_entry: self.vars.string("LoaderEntrySelected").ok().flatten(),
            overrides,
            entries: entries
                .iter()
                .map(|n| EntryView {
                    file: n.to_string(),
                    role: if n.is_bad() { "bad" } else { n.role.as_str() }.to_owned(),
                    snapshot_id: n.id,
                    tries_left: n.counter.map(|c| c.left),
                    tries_done: n.counter.and_then(|c| c.done),
                    bad: n.is_bad(),
                })
                .collect(),
        })
    }

    /// Make the ESP match the state: entries for the known-good (with none
    /// yet: the default subvolume), the trial and the newest other
    /// snapshots up to `max_entries`; no entries of deleted snapshots; no
    /// unused kernels; `loader.conf`'s default line. Creates the state file
    /// when there is none (a first install).
    pub fn sync(&self, snapshots: &dyn Snapshots) -> Result<Done> {
        let mut done = Done::default();
        if self.create_state()? {
            done.lines
                .push(format!("created {}", self.esp.state_path().display()));
        }
        let state = self.load()?;
        let list = snapshots.list().context("listing the snapshots")?;
        let alive: HashSet<u64> = list.iter().map(|s| s.snapshot.id).collect();
        let good = match &state.good {
            Some(g) if alive.contains(&g.id) => Some(g.clone()),
            gone => {
                // No known-good, or one the store no longer has (its entry
                // would boot a root that cannot be mounted): the default
                // subvolume's entry boots by default, as GRUB's ordinary
                // entry does. Never the trial's own snapshot while a known-
                // good is named: its counting would end where it began.
                let d = snapshots
                    .default_subvolume()
                    .context("finding the default subvolume")?;
                if let Some(g) = gone {
                    done.lines.push(format!(
                        "the known-good {} (ID {}) is not in the snapshot store",
                        g.path, g.id
                    ));
                }
                if d.id == 5 {
                    done.lines
                        .push("the default subvolume is the top level: no default entry".into());
                    None
                } else if gone.is_some() && state.trial.as_ref() == Some(&d) {
                    gone.clone()
                } else {
                    Some(d)
                }
            }
        };
        let trial = state.trial.clone();
        let mut room = self
            .max_entries
            .saturating_sub(good.is_some() as usize + trial.is_some() as usize);
        let taken: HashSet<u64> = good.iter().chain(trial.iter()).map(|s| s.id).collect();
        let mut others: Vec<SnapshotRef> = list
            .iter()
            .map(|s| s.snapshot.clone())
            .filter(|s| !taken.contains(&s.id))
            .collect();
        others.sort_by_key(|s| std::cmp::Reverse(s.id));
        let present: HashSet<u64> = self.esp.list()?.iter().map(|n| n.id).collect();
        let mut menu = Vec::new();
        for s in others {
            if room == 0 {
                break;
            }
            // A snapshot without a kernel cannot have an entry; it does not
            // take a place.
            if !present.contains(&s.id) {
                let mut ok = false;
                let found = self.files.with_tree(&s, &mut |tree| {
                    ok = find_kernel(tree).is_ok();
                    Ok(())
                });
                if found.is_err() || !ok {
                    done.lines
                        .push(format!("{} (ID {}): no kernel, no entry", s.path, s.id));
                    continue;
                }
            }
            menu.push(s);
            room -= 1;
        }
        let want = Want {
            good,
            trial,
            fresh: None,
            menu: Some(menu),
        };
        let mut more = self.reconcile(&want, &mut || Ok(()))?;
        done.lines.append(&mut more.lines);
        Ok(done)
    }

    /// Create the state file (empty: no known-good, no trial) unless it
    /// exists. Returns whether it was created.
    pub fn create_state(&self) -> Result<bool> {
        if self.state.inner().load()?.source != grub_env::Source::Neither {
            return Ok(false);
        }
        let path = self.esp.state_path();
        let dir = path.parent().expect("the state file is in a directory");
        if !self.esp.dir().is_dir() {
            bail!(
                "{} does not exist: is the EFI system partition mounted?",
                self.esp.dir().display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        self.state
            .inner()
            .update(|_| Ok(()))
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(true)
    }

    /// Build the entry of `snap` from its own kernel and initrd, copied
    /// onto the ESP.
    fn build(&self, snap: &SnapshotRef) -> Result<Entry> {
        let options = self
            .options
            .as_ref()
            .map_err(|e| anyhow::anyhow!("the kernel options are unknown: {e}"))?;
        let mut entry = None;
        self.files
            .with_tree(snap, &mut |tree| {
                let (k, i) = find_kernel(tree)?;
                let (k, i) = (read_all(&k)?, read_all(&i)?);
                let mut need = ESP_RESERVE;
                let mut seen = HashSet::new();
                for b in [&k, &i] {
                    let (slot, present) = self.esp.file_slot(b)?;
                    if !present && seen.insert(slot) {
                        need += b.len() as u64;
                    }
                }
                let free = self.esp.free_bytes()?;
                if free < need {
                    bail!(
                        "the EFI system partition {} has {} KiB free; the kernel and initrd of {} need {} KiB (with {} KiB kept free): nothing was written; free space or lower [bootloader] max_entries",
                        self.esp.dir().display(),
                        free / 1024,
                        snap.path,
                        need / 1024,
                        ESP_RESERVE / 1024
                    );
                }
                entry = Some(Entry {
                    title: format!("health-checker: {} (ID {})", snap.path, snap.id),
                    linux: self.esp.add_file(&k)?,
                    initrd: self.esp.add_file(&i)?,
                    options: entry_options(options, snap),
                });
                Ok(())
            })
            .with_context(|| format!("making the boot entry of {} (ID {})", snap.path, snap.id))?;
        entry.context("no entry was built")
    }

    /// The content for a new entry of `snap`: another entry's of the same
    /// snapshot when there is one (no copy needed), else built.
    fn content_for(&self, snap: &SnapshotRef, entries: &[EntryName]) -> Result<Entry> {
        for n in entries.iter().filter(|n| n.id == snap.id) {
            if let Ok(e) = self.esp.read(n) {
                if self
                    .esp
                    .dir()
                    .join(e.linux.trim_start_matches('/'))
                    .is_file()
                    && self
                        .esp
                        .dir()
                        .join(e.initrd.trim_start_matches('/'))
                        .is_file()
                {
                    return Ok(Entry {
                        title: format!("health-checker: {} (ID {})", snap.path, snap.id),
                        ..e
                    });
                }
            }
        }
        self.build(snap)
    }

    /// Write our entry `n` of `snap` again, under the same name, when it
    /// does not read as an entry: empty or cut short, as a power cut on FAT
    /// can leave a file renamed into place just before it (Linux's vfat
    /// fills in a renamed file's first cluster and size only when it writes
    /// the inode back; `docs/systemd-boot.md`). systemd-boot skips such an
    /// entry, so the snapshot it stands for would never boot from it: a
    /// trial would stay armed with its attempts left, never counted. The
    /// name is kept, and with it the boot counter. A failure to rewrite is
    /// reported, not fatal: the state change in progress does not depend
    /// on it.
    fn heal(&self, n: &EntryName, snap: &SnapshotRef, before: &[EntryName], done: &mut Done) {
        let why = match self.esp.read(n) {
            Ok(_) => return,
            Err(e) => e,
        };
        let fixed = self
            .content_for(snap, before)
            .and_then(|content| self.esp.write(n, &content));
        match fixed {
            Ok(()) => done.lines.push(format!("rewrote {n}: {why:#}")),
            Err(e) => done
                .lines
                .push(format!("warning: {why:#}; rewriting it failed: {e:#}")),
        }
    }

    /// Make the entries follow `want`: new files, then `write_state`, then
    /// renames and removals, then unused kernels removed and `loader.conf`'s
    /// default line set.
    fn reconcile(&self, want: &Want, write_state: &mut dyn FnMut() -> Result<()>) -> Result<Done> {
        let mut done = Done::default();
        let before = self.esp.list()?;
        let selected = self.selected();
        let mut keep: HashSet<EntryName> = HashSet::new();

        // 1. New files. The trial first: an unsuffixed entry of the same
        //    stem would defeat its counter (systemd #33504), so that goes
        //    before the counted one is written.
        if let (Some(t), Some(n)) = (&want.trial, want.fresh) {
            let fresh = EntryName::new(Role::Trial, t.id, Some(Counter::fresh(n.into())));
            let content = self.content_for(t, &before)?;
            for old in before
                .iter()
                .filter(|o| o.role == Role::Trial && o.id == t.id)
            {
                if old.counter.is_none() {
                    self.esp.remove(old)?;
                    done.lines.push(format!("removed {old} (systemd #33504)"));
                }
            }
            self.esp.write(&fresh, &content)?;
            done.lines.push(format!("wrote {fresh}"));
            keep.insert(fresh);
        } else if let Some(t) = &want.trial {
            // The counted entry systemd-boot counts down: the one with the
            // most attempts left, if there are several.
            if let Some(n) = before
                .iter()
                .filter(|n| n.role == Role::Trial && n.id == t.id && n.counter.is_some())
                .max_by_key(|n| n.counter.map(|c| c.left))
            {
                self.heal(n, t, &before, &mut done);
                keep.insert(*n);
            } else if let Some(n) = before
                .iter()
                .find(|n| n.role == Role::Trial && n.id == t.id && n.counter.is_none())
            {
                // Blessed while still the trial (the late phase passed
                // without promoting it, or was skipped): unsuffixed, it would
                // boot on every start, unprotected. One more counted attempt
                // keeps it bounded and lets the checker judge it.
                let to = EntryName::new(Role::Trial, t.id, Some(Counter::fresh(1)));
                self.esp.move_entry(n, &to)?;
                done.lines.push(format!(
                    "renamed {n} to {to}: the trial was blessed before it was judged"
                ));
                self.heal(&to, t, &before, &mut done);
                keep.insert(to);
            }
        }
        if let Some(g) = &want.good {
            let name = EntryName::new(Role::Good, g.id, None);
            if !before.contains(&name) {
                let content = self.content_for(g, &before)?;
                self.esp.write(&name, &content)?;
                done.lines.push(format!("wrote {name}"));
            } else {
                self.heal(&name, g, &before, &mut done);
            }
            keep.insert(name);
        }
        if let Some(menu) = &want.menu {
            for s in menu {
                let has = before.iter().find(|n| n.id == s.id && n.role == Role::Menu);
                match has {
                    Some(n) => {
                        self.heal(n, s, &before, &mut done);
                        keep.insert(*n);
                    }
                    None => {
                        let name = EntryName::new(Role::Menu, s.id, demoted_counter(&before, s.id));
                        let content = self.content_for(s, &before)?;
                        self.esp.write(&name, &content)?;
                        done.lines.push(format!("wrote {name}"));
                        keep.insert(name);
                    }
                }
            }
        }

        // 2. The state.
        write_state()?;

        // 3. Renames and removals.
        let now = self.esp.list()?;
        let menu_ids: Option<BTreeSet<u64>> =
            want.menu.as_ref().map(|m| m.iter().map(|s| s.id).collect());
        let good_id = want.good.as_ref().map(|g| g.id);
        let trial_id = want.trial.as_ref().map(|t| t.id);
        let stays_in_menu = |n: &EntryName| {
            n.role == Role::Menu
                && (keep.contains(n)
                    || (want.menu.is_none() && Some(n.id) != good_id && Some(n.id) != trial_id))
        };
        let mut has_menu: HashMap<u64, EntryName> = now
            .iter()
            .filter(|n| stays_in_menu(n))
            .map(|n| (n.id, *n))
            .collect();
        for n in &now {
            if keep.contains(n) {
                continue;
            }
            let wanted_in_menu = |id: u64| menu_ids.as_ref().is_none_or(|ids| ids.contains(&id));
            match n.role {
                // The promoted trial's counted entry this boot came from:
                // systemd-bless-boot renames it after boot-complete.target.
                Role::Trial
                    if Some(n.id) == good_id
                        && n.counter.is_some_and(|c| c.left > 0)
                        && selected.is_some_and(|s| s.role == Role::Trial && s.id == n.id) =>
                {
                    continue;
                }
                Role::Good if good_id.is_none() && want.menu.is_none() => continue,
                Role::Menu
                    if want.menu.is_none() && Some(n.id) != good_id && Some(n.id) != trial_id =>
                {
                    continue
                }
                _ => {}
            }
            // Demote to a menu entry (a trial given up on is marked bad),
            // or remove.
            let demoted = match n.role {
                Role::Trial => Some(EntryName::new(
                    Role::Menu,
                    n.id,
                    Some(n.counter.unwrap_or(Counter::fresh(0)).bad()),
                )),
                Role::Good => Some(EntryName::new(Role::Menu, n.id, None)),
                Role::Menu => None,
            };
            let goes_to_menu = Some(n.id) != good_id
                && Some(n.id) != trial_id
                && !has_menu.contains_key(&n.id)
                && wanted_in_menu(n.id);
            match demoted {
                Some(to) if goes_to_menu => {
                    self.esp.move_entry(n, &to)?;
                    done.lines.push(format!("renamed {n} to {to}"));
                    has_menu.insert(n.id, to);
                }
                _ => {
                    self.esp.remove(n)?;
                    done.lines.push(format!("removed {n}"));
                }
            }
        }

        // 4. Kernels no entry loads; the default line.
        let mut used = HashSet::new();
        for n in self.esp.list()? {
            match self.esp.read(&n) {
                Ok(e) => {
                    used.insert(e.linux);
                    used.insert(e.initrd);
                }
                Err(e) => {
                    // Keep every file while an entry cannot be read.
                    done.lines
                        .push(format!("warning: {e:#}; no kernel removed"));
                    self.esp.ensure_default()?;
                    return Ok(done);
                }
            }
        }
        for f in self.esp.gc_files(&used)? {
            done.lines.push(format!("removed {f}"));
        }
        if self.esp.ensure_default()? {
            done.lines.push(format!(
                "set `default {}` in {}",
                super::names::DEFAULT_GLOB,
                self.esp.loader_conf().display()
            ));
        }
        Ok(done)
    }
}

/// A new menu entry of a snapshot given up on stays marked bad.
fn demoted_counter(entries: &[EntryName], id: u64) -> Option<Counter> {
    entries
        .iter()
        .find(|n| n.id == id && n.is_bad())
        .and_then(|n| n.counter)
}

/// The entry systemd-boot boots by default among ours: of those matching
/// `loader.conf`'s glob (good and trial), the last in its order, entries
/// with no attempts left first (`docs/systemd-boot.md`).
pub fn default_choice(entries: &[EntryName]) -> Option<EntryName> {
    entries
        .iter()
        .filter(|n| n.role != Role::Menu)
        .max_by_key(|n| (!n.is_bad(), n.role == Role::Trial, n.id))
        .copied()
}

/// What systemd-boot did, laid over the state file's keys: the trial's
/// attempts left from its entry, the entry booted, a fall-back.
pub fn overlay(state: &mut BootState, entries: &[EntryName], selected: Option<&EntryName>) {
    state.fallback = None;
    // Which kind of entry the loader chose when this boot started, as
    // GRUB's `hc_booted`: it stays what it was for the whole boot, even
    // once the trial is promoted or cleared.
    state.booted = selected.and_then(|s| match s.role {
        Role::Trial => Some(GrubEntry::Trial),
        Role::Good => Some(GrubEntry::Good),
        Role::Menu => None,
    });
    if let Some(t) = &state.trial {
        // No counted entry: nothing protects the trial any more.
        let left = entries
            .iter()
            .filter(|n| n.role == Role::Trial && n.id == t.id)
            .filter_map(|n| n.counter)
            .map(|c| c.left)
            .max()
            .unwrap_or(0);
        state.tries = left.min(MAX_TRIES.into()) as u8;
        if state.tries == 0 && state.booted != Some(GrubEntry::Trial) {
            state.fallback = Some(t.path.clone());
        }
    }
}

impl BootEnv for SdBootEnv {
    fn load(&self) -> Result<BootState> {
        let mut state = self.state.load().map_err(|e| {
            anyhow::anyhow!(
                "{e:#} (the systemd-boot backend's state; `health-checker boot-entries sync` makes it)"
            )
        })?;
        let entries = self.esp.list()?;
        overlay(&mut state, &entries, self.selected().as_ref());
        Ok(state)
    }

    fn store(&self, changes: &[(&'static str, Option<String>)]) -> Result<()> {
        let raw = self
            .state
            .inner()
            .load()
            .map_err(crate::engine::grubenv::with_advice)?;
        let mut keys: HashMap<String, String> = raw
            .env
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        // Derived from the loader, never kept.
        let kept: Vec<(&'static str, Option<String>)> = changes
            .iter()
            .filter(|(k, _)| *k != bootstate::BOOTED && *k != bootstate::FALLBACK)
            .cloned()
            .collect();
        for (k, v) in &kept {
            match v {
                Some(v) => keys.insert((*k).to_owned(), v.clone()),
                None => keys.remove(*k),
            };
        }
        let new = BootState::from_keys(|k| keys.get(k).cloned())
            .with_context(|| format!("{}", self.esp.state_path().display()))?;
        let rearmed = changes
            .iter()
            .any(|(k, _)| [bootstate::TRIAL, bootstate::TRIAL_ID, bootstate::TRIES].contains(k));
        let want = Want {
            good: new.good.clone(),
            trial: new.trial.clone(),
            fresh: (rearmed && new.trial.is_some()).then_some(new.tries),
            menu: None,
        };
        self.reconcile(&want, &mut || {
            if kept.is_empty() {
                return Ok(());
            }
            self.state.store(&kept)
        })?;
        Ok(())
    }
}
