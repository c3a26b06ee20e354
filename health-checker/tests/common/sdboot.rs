//! A model of what systemd-boot 252 does with the ESP before the kernel
//! starts, written from its documented behaviour, independently of the
//! checker's code: read `loader.conf`'s `default` glob, match it against
//! the entry file names, order them (entries with no attempts left first,
//! then by version comparison of the name), take the last match, decrement
//! its boot counter by renaming the file, and report the entry booted in
//! `LoaderEntrySelected`. Plus the test fixtures around it: a temporary ESP,
//! efivarfs and snapshot trees with a kernel each.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use health_checker::bootloader::efivars::EfiVars;
use health_checker::bootloader::kernel::SnapshotFiles;
use health_checker::bootloader::{Esp, SdBootEnv};
use health_checker::snapshots::SnapshotRef;

/// A temporary world for the systemd-boot backend: ESP, efivarfs and the
/// snapshots' trees (each with `boot/vmlinuz-1` and `boot/initrd.img-1`).
pub struct World {
    pub dir: tempfile::TempDir,
}

#[derive(Debug, Clone)]
pub struct Trees(pub PathBuf);

impl SnapshotFiles for Trees {
    fn with_tree(
        &self,
        snap: &SnapshotRef,
        f: &mut dyn FnMut(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let tree = self.0.join(snap.id.to_string());
        if !tree.exists() {
            std::fs::create_dir_all(tree.join("boot"))?;
            // Three kernels between all snapshots: some are shared.
            std::fs::write(
                tree.join("boot/vmlinuz-1"),
                format!("kernel {}", snap.id % 3),
            )?;
            std::fs::write(
                tree.join("boot/initrd.img-1"),
                format!("initrd {}", snap.id % 3),
            )?;
        }
        f(&tree)
    }
}

impl World {
    /// In memory where possible (`/dev/shm`): the tests fsync a lot.
    pub fn new() -> World {
        let dir = match Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm").unwrap(),
            false => tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(dir.path().join("esp/loader/entries")).unwrap();
        std::fs::write(dir.path().join("esp/loader/loader.conf"), "timeout 3\n").unwrap();
        std::fs::create_dir_all(dir.path().join("efivars")).unwrap();
        World { dir }
    }

    pub fn esp(&self) -> PathBuf {
        self.dir.path().join("esp")
    }

    pub fn vars(&self) -> EfiVars {
        EfiVars::new(self.dir.path().join("efivars"))
    }

    pub fn env(&self, max_entries: usize) -> SdBootEnv {
        let env = SdBootEnv::new(
            Esp::new(self.esp()),
            self.vars(),
            Box::new(Trees(self.dir.path().join("trees"))),
            Ok("root=UUID=test ro".into()),
            max_entries,
        );
        env.create_state().unwrap();
        env
    }

    pub fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.esp().join("loader/entries"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".conf"))
            .collect();
        v.sort();
        v
    }

    /// One start of systemd-boot; returns the entry file booted (its name
    /// before the counter was decremented), or `None` when no entry matched.
    pub fn boot(&self) -> Option<String> {
        let conf = std::fs::read_to_string(self.esp().join("loader/loader.conf")).unwrap();
        let glob = conf.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(char::is_whitespace)?;
            (k == "default").then(|| v.trim().to_owned())
        });
        // An entry with neither a `linux` nor an `efi` line (empty, or cut
        // short) is no entry to systemd-boot: it is skipped.
        let d = self.esp().join("loader/entries");
        let mut entries: Vec<(String, Option<(u32, u32)>)> = self
            .entries()
            .into_iter()
            .filter(|n| {
                std::fs::read_to_string(d.join(n)).is_ok_and(|t| {
                    t.lines().any(|l| {
                        let k = l.split_whitespace().next();
                        k == Some("linux") || k == Some("efi")
                    })
                })
            })
            .map(|n| {
                let c = counter(&n);
                (n, c)
            })
            .collect();
        entries.sort_by(|a, b| {
            let bad = |e: &(String, Option<(u32, u32)>)| e.1.is_some_and(|c| c.0 == 0);
            bad(b).cmp(&bad(a)).then_with(|| strverscmp(&a.0, &b.0))
        });
        let chosen = match &glob {
            Some(g) => entries.iter().rev().find(|e| glob_match(g, &e.0)),
            None => entries.last(),
        }?
        .clone();
        let vars = self.vars();
        std::fs::write(vars.path("LoaderEntrySelected"), EfiVars::encode(&chosen.0)).unwrap();
        if let Some((left, done)) = chosen.1 {
            if left > 0 {
                let stem = chosen.0.split_once('+').unwrap().0;
                let to = format!("{stem}+{}-{}.conf", left - 1, done + 1);
                let d = self.esp().join("loader/entries");
                std::fs::rename(d.join(&chosen.0), d.join(to)).unwrap();
            }
        }
        Some(chosen.0)
    }

    /// A boot picked by hand in the menu: `LoaderEntrySelected` names it.
    pub fn select(&self, name: &str) {
        std::fs::write(
            self.vars().path("LoaderEntrySelected"),
            EfiVars::encode(name),
        )
        .unwrap();
    }

    /// What `systemd-bless-boot good` does: drop the counter of the entry
    /// this boot came from.
    pub fn bless(&self) -> Option<String> {
        let sel = self.vars().string("LoaderEntrySelected").unwrap()?;
        let (stem, _) = sel.split_once('+')?;
        let d = self.esp().join("loader/entries");
        let now = self
            .entries()
            .into_iter()
            .find(|n| n.starts_with(&format!("{stem}+")))?;
        let to = format!("{stem}.conf");
        std::fs::rename(d.join(&now), d.join(&to)).unwrap();
        Some(to)
    }
}

/// `(left, done)` of a `NAME+LEFT[-DONE].conf`.
pub fn counter(name: &str) -> Option<(u32, u32)> {
    let stem = name.strip_suffix(".conf")?;
    let (_, c) = stem.rsplit_once('+')?;
    let (l, d) = c.split_once('-').unwrap_or((c, "0"));
    Some((l.parse().ok()?, d.parse().ok()?))
}

/// A glob with `*` and `?` only (what our `default` line uses).
pub fn glob_match(glob: &str, s: &str) -> bool {
    fn m(g: &[u8], s: &[u8]) -> bool {
        match (g.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&g[1..], s) || (!s.is_empty() && m(g, &s[1..])),
            (Some(b'?'), Some(_)) => m(&g[1..], &s[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => m(&g[1..], &s[1..]),
            _ => false,
        }
    }
    m(glob.as_bytes(), s.as_bytes())
}

/// Version comparison as systemd's for our names (runs of digits
/// numerically, the rest bytewise): the library's kernel version order.
pub fn strverscmp(a: &str, b: &str) -> Ordering {
    health_checker::bootloader::kernel::version_cmp(a, b)
}
