//! The files health-checker keeps on the EFI system partition for
//! systemd-boot: entries, the kernels and initrds they load, the `default`
//! line of `loader.conf` (`docs/systemd-boot.md`).
//!
//! New files are written under a temporary name systemd-boot ignores (it
//! starts with `.`), fsynced, renamed and the directory fsynced
//! ([`crate::fsutil::atomic_write`]); renames and removals fsync the
//! directory too.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::names::{EntryName, DEFAULT_GLOB};
use crate::fsutil::{atomic_write, sync_dir};

/// Room left free on the ESP beyond what a change needs (FAT's own
/// structures, systemd-boot's random seed, the next kernel update).
pub const ESP_RESERVE: u64 = 1024 * 1024;

/// Our directory on the ESP (kernels, initrds, state).
pub const OWN_DIR: &str = "health-checker";

/// The ESP, by its mount point.
#[derive(Debug, Clone)]
pub struct Esp {
    dir: PathBuf,
}

/// The content of one of our entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub title: String,
    /// The kernel, as a path on the ESP (`/health-checker/files/...`).
    pub linux: String,
    pub initrd: String,
    pub options: String,
}

impl Entry {
    pub fn to_text(&self) -> String {
        format!(
            "# Written by health-checker (docs/systemd-boot.md); `health-checker boot-entries sync` keeps it.\n\
             title {}\nlinux {}\ninitrd {}\noptions {}\n",
            self.title, self.linux, self.initrd, self.options
        )
    }

    /// Parse an entry's text: BLS `key value` lines, `#` comments.
    pub fn parse(text: &str) -> Option<Entry> {
        let mut e = Entry {
            title: String::new(),
            linux: String::new(),
            initrd: String::new(),
            options: String::new(),
        };
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let v = v.trim().to_owned();
            match k {
                "title" => e.title = v,
                "linux" => e.linux = v,
                "initrd" => e.initrd = v,
                "options" => e.options = v,
                _ => {}
            }
        }
        (!e.linux.is_empty()).then_some(e)
    }
}

impl Esp {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Esp { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn entries_dir(&self) -> PathBuf {
        self.dir.join("loader/entries")
    }

    pub fn loader_conf(&self) -> PathBuf {
        self.dir.join("loader/loader.conf")
    }

    pub fn files_dir(&self) -> PathBuf {
        self.dir.join(OWN_DIR).join("files")
    }

    /// The checker's state (the `hc_*` keys, GRUB environment format).
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(OWN_DIR).join("state.env")
    }

    pub fn entry_path(&self, name: &EntryName) -> PathBuf {
        self.entries_dir().join(name.to_string())
    }

    /// Our entries, sorted by snapshot ID and name. No directory: none.
    pub fn list(&self) -> anyhow::Result<Vec<EntryName>> {
        let dir = self.entries_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.with_context(|| format!("reading {}", dir.display()))?;
            if let Some(n) = e.file_name().to_str().and_then(EntryName::parse) {
                out.push(n);
            }
        }
        out.sort_by_key(|n| (n.id, n.to_string()));
        Ok(out)
    }

    pub fn read(&self, name: &EntryName) -> anyhow::Result<Entry> {
        let path = self.entry_path(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Entry::parse(&text)
            .with_context(|| format!("{}: no `linux` line; not an entry", path.display()))
    }

    pub fn write(&self, name: &EntryName, entry: &Entry) -> anyhow::Result<()> {
        let path = self.entry_path(name);
        atomic_write(&path, entry.to_text().as_bytes())
            .with_context(|| format!("writing boot entry {}", path.display()))
    }

    /// Rename an entry (never over another one).
    pub fn move_entry(&self, from: &EntryName, to: &EntryName) -> anyhow::Result<()> {
        crate::fsutil::move_in_dir(&self.entries_dir(), &from.to_string(), &to.to_string())
    }

    pub fn remove(&self, name: &EntryName) -> anyhow::Result<()> {
        let path = self.entry_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.entries_dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    /// Bytes free on the ESP (for root: FAT reserves nothing for others).
    pub fn free_bytes(&self) -> anyhow::Result<u64> {
        let s = nix::sys::statvfs::statvfs(&self.dir)
            .with_context(|| format!("checking the free space of {}", self.dir.display()))?;
        #[allow(clippy::unnecessary_cast)]
        Ok(s.blocks_free() as u64 * s.fragment_size() as u64)
    }

    /// The name `src` gets (or has) in the files directory, and whether it
    /// is there already: `<crc32>-<size>`, shared between snapshots whose
    /// files are equal byte for byte; a different file with the same CRC and
    /// size gets `-2`, `-3`, ...
    pub fn file_slot(&self, bytes: &[u8]) -> anyhow::Result<(String, bool)> {
        let base = format!("{:08x}-{}", crc32fast::hash(bytes), bytes.len());
        for n in 1.. {
            let name = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let path = self.files_dir().join(&name);
            match std::fs::read(&path) {
                Ok(have) if have == bytes => return Ok((name, true)),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((name, false)),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
        unreachable!("an endless range ends")
    }

    /// Put `bytes` in the files directory (unless an equal file is there);
    /// returns its path as an entry names it.
    pub fn add_file(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let (name, present) = self.file_slot(bytes)?;
        if !present {
            let path = self.files_dir().join(&name);
            atomic_write(&path, bytes).with_context(|| format!("copying to {}", path.display()))?;
        }
        Ok(format!("/{OWN_DIR}/files/{name}"))
    }

    /// Remove the files no entry in `used` (paths as entries name them)
    /// loads. Returns what was removed.
    pub fn gc_files(&self, used: &HashSet<String>) -> anyhow::Result<Vec<String>> {
        let dir = self.files_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        let mut removed = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let as_named = format!("/{OWN_DIR}/files/{name}");
            if !used.contains(&as_named) {
                std::fs::remove_file(e.path())
                    .with_context(|| format!("removing {}", e.path().display()))?;
                removed.push(as_named);
            }
        }
        if !removed.is_empty() {
            sync_dir(&dir)?;
        }
        Ok(removed)
    }

    /// The glob of `loader.conf`'s `default` line, if any.
    pub fn loader_default(&self) -> anyhow::Result<Option<String>> {
        let path = self.loader_conf();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(text.lines().find_map(|l| {
            let l = l.trim();
            let (k, v) = l.split_once(char::is_whitespace)?;
            (k == "default").then(|| v.trim().to_owned())
        }))
    }

    /// Make `loader.conf`'s `default` line name our entries, keeping every
    /// other line. Returns whether the file was changed.
    pub fn ensure_default(&self) -> anyhow::Result<bool> {
        let path = self.loader_conf();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let want = format!("default {DEFAULT_GLOB}");
        let mut out = Vec::new();
        let mut done = false;
        for line in text.lines() {
            let is_default = line
                .trim()
                .split_once(char::is_whitespace)
                .is_some_and(|(k, _)| k == "default");
            if is_default {
                if !done {
                    out.push(want.clone());
                    done = true;
                }
            } else {
                out.push(line.to_owned());
            }
        }
        if !done {
            out.push(want);
        }
        let mut new = out.join("\n");
        new.push('\n');
        if new == text {
            return Ok(false);
        }
        if !path.parent().is_some_and(|d| d.is_dir()) {
            bail!(
                "{} does not exist: is the EFI system partition mounted there, and systemd-boot installed (`bootctl install`)?",
                path.parent().unwrap_or(&path).display()
            );
        }
        atomic_write(&path, new.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(true)
    }
}

/// Read a whole file (a kernel, an initrd).
pub fn read_all(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_shared_by_content_and_collisions_kept_apart() {
        let t = tempfile::tempdir().unwrap();
        let esp = Esp::new(t.path());
        let a = esp.add_file(b"kernel").unwrap();
        assert_eq!(esp.add_file(b"kernel").unwrap(), a);
        let b = esp.add_file(b"initrd").unwrap();
        assert_ne!(a, b);
        // A different file that claims the same slot (forged CRC and size).
        let (slot, _) = esp.file_slot(b"other!").unwrap();
        std::fs::write(esp.files_dir().join(&slot), b"xxxxxx").unwrap();
        let c = esp.add_file(b"other!").unwrap();
        assert!(c.ends_with("-2"), "{c}");
        let gone = esp.gc_files(&[a.clone()].into_iter().collect()).unwrap();
        assert_eq!(gone.len(), 3, "{gone:?}");
        assert!(t.path().join(a.trim_start_matches('/')).is_file());
    }

    #[test]
    fn the_default_line_is_set_and_other_lines_kept() {
        let t = tempfile::tempdir().unwrap();
        let esp = Esp::new(t.path());
        let e = esp.ensure_default().unwrap_err();
        assert!(format!("{e:#}").contains("bootctl install"), "{e:#}");
        std::fs::create_dir_all(t.path().join("loader")).unwrap();
        std::fs::write(
            esp.loader_conf(),
            "timeout 3\ndefault debian-*\n#console-mode keep\ndefault x\n",
        )
        .unwrap();
        assert!(esp.ensure_default().unwrap());
        assert_eq!(
            std::fs::read_to_string(esp.loader_conf()).unwrap(),
            "timeout 3\ndefault health-checker-boot-*\n#console-mode keep\n"
        );
        assert!(!esp.ensure_default().unwrap());
        assert_eq!(
            esp.loader_default().unwrap().as_deref(),
            Some("health-checker-boot-*")
        );
    }

    #[test]
    fn entries_round_trip() {
        let e = Entry {
            title: "health-checker: @/a (ID 256)".into(),
            linux: "/health-checker/files/1-2".into(),
            initrd: "/health-checker/files/3-4".into(),
            options: "root=UUID=x rootflags=subvol=@/a".into(),
        };
        assert_eq!(Entry::parse(&e.to_text()), Some(e));
        assert_eq!(Entry::parse("title x\n"), None);
    }
}
