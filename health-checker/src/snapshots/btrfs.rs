//! The real snapshot store: the btrfs filesystem of the root acted on, read
//! and changed through libbtrfsutil.
//!
//! How each question is answered:
//! - **booted**: the kernel's subvolume ID of the root directory
//!   (`BTRFS_IOC_INO_LOOKUP`) and its path from the top level (a tree
//!   search); nothing is guessed from `/proc/cmdline` or `fstab`.
//! - **default**: the default-subvolume item of the filesystem, read by ID.
//! - **lookup / list**: libbtrfsutil's subvolume iterator from the top level
//!   (ID 5), which sees every subvolume through any descriptor on the
//!   filesystem, whether the top level is mounted or not. Nothing is
//!   mounted to answer them. snapper's `info.xml` files are read through
//!   whichever current mount of the filesystem shows them (usually
//!   `/.snapshots`); a description that no mount shows is left empty.
//! - **set-default**: an ioctl on a descriptor of the filesystem, which the
//!   kernel allows only through a *writable* mount. It is made on the root
//!   itself; when that mount is read-only (a read-only root snapshot, or
//!   any layout where the mounts at hand are read-only: openSUSE's checker
//!   once gave up silently on a read-only `/.snapshots`), the top level is
//!   mounted privately and writable under `/run/health-checker/` for the
//!   call and unmounted after. The change is then committed to disk (a
//!   filesystem sync) and read back.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use libbtrfsutil::{IterateSubvolume, FS_TREE_OBJECTID};

use super::ffi;
use super::mountinfo::{self, Mount};
use super::snapper;
use super::topmount::TopLevelMount;
use super::{SnapshotInfo, SnapshotRef, Snapshots};
use crate::exit::{Code, CodeExt};
use crate::paths::Root;

/// `BTRFS_ROOT_SUBVOL_RDONLY`: the read-only flag of a subvolume's root item.
const SUBVOL_RDONLY: u64 = 1;

/// The snapshot store of the btrfs filesystem holding a [`Root`].
#[derive(Debug, Clone)]
pub struct BtrfsSnapshots {
    root: Root,
}

impl BtrfsSnapshots {
    /// The store for the filesystem mounted at `root`'s directory.
    pub fn new(root: Root) -> Self {
        BtrfsSnapshots { root }
    }

    fn dir(&self) -> &Path {
        self.root.dir()
    }

    fn open_root(&self) -> anyhow::Result<File> {
        File::open(self.dir()).with_context(|| format!("opening {}", self.dir().display()))
    }

    /// The path from the top level of subvolume `id` (`""` for the top level).
    fn path_of(&self, id: u64) -> anyhow::Result<String> {
        if id == FS_TREE_OBJECTID {
            return Ok(String::new());
        }
        let path = libbtrfsutil::subvolume_path_with_id(self.dir(), id).with_context(|| {
            format!(
                "finding the path of subvolume {id} on the filesystem of {}",
                self.dir().display()
            )
        })?;
        path_string(&path)
    }

    fn booted_ref(&self) -> anyhow::Result<SnapshotRef> {
        let id = libbtrfsutil::subvolume_id(self.dir()).with_context(|| {
            format!(
                "reading the btrfs subvolume mounted at {}",
                self.dir().display()
            )
        })?;
        Ok(SnapshotRef {
            id,
            path: self.path_of(id)?,
        })
    }

    fn default_ref(&self) -> anyhow::Result<SnapshotRef> {
        let file = self.open_root()?;
        let id = ffi::default_subvolume(&file).with_context(|| {
            format!(
                "reading the default subvolume of the filesystem at {}",
                self.dir().display()
            )
        })?;
        Ok(SnapshotRef {
            id,
            path: self.path_of(id)?,
        })
    }

    /// The mount holding the root, and every mount of the same filesystem.
    fn mounts(&self) -> anyhow::Result<(Mount, Vec<Mount>)> {
        let canonical = self
            .dir()
            .canonicalize()
            .with_context(|| format!("resolving {}", self.dir().display()))?;
        let all = mountinfo::read()?;
        let own = mountinfo::mount_of(&all, &canonical)
            .cloned()
            .ok_or_else(|| anyhow!("no mount holds {}", canonical.display()))?;
        if own.fs_type != "btrfs" {
            bail!(
                "{} is on a {} filesystem ({}), not btrfs",
                canonical.display(),
                own.fs_type,
                own.source
            );
        }
        let same: Vec<Mount> = all.into_iter().filter(|m| m.dev == own.dev).collect();
        Ok((own, same))
    }

    /// Every subvolume beneath the top level, with its path and details.
    fn iterate(&self) -> anyhow::Result<Vec<(String, libbtrfsutil::SubvolumeInfo)>> {
        let context = || {
            format!(
                "listing the subvolumes of the filesystem at {}",
                self.dir().display()
            )
        };
        let iter = IterateSubvolume::new(self.dir())
            .all()
            .iter_with_info()
            .with_context(context)?;
        let mut out = Vec::new();
        for item in iter {
            let (path, info) = item.with_context(context)?;
            out.push((path_string(&path)?, info));
        }
        Ok(out)
    }

    fn lookup_path(&self, path: &str) -> anyhow::Result<Option<SnapshotRef>> {
        let wanted = normalize(path);
        if wanted.is_empty() {
            return Ok(Some(SnapshotRef {
                id: FS_TREE_OBJECTID,
                path: String::new(),
            }));
        }
        let context = || {
            format!(
                "looking up subvolume {path:?} on the filesystem at {}",
                self.dir().display()
            )
        };
        let iter = IterateSubvolume::new(self.dir())
            .all()
            .iter_with_id()
            .with_context(context)?;
        for item in iter {
            let (p, id) = item.with_context(context)?;
            if p.as_os_str() == wanted.as_str() {
                return Ok(Some(SnapshotRef {
                    id: id.get(),
                    path: wanted,
                }));
            }
        }
        Ok(None)
    }

    fn set_default_id(&self, id: u64) -> anyhow::Result<()> {
        if id == 0 {
            bail!("0 is not a subvolume ID");
        }
        let target = self
            .path_of(id)
            .with_context(|| format!("subvolume {id} cannot be made the default"))?;
        let describe = format!("subvolume {id} ({})", display_path(&target));

        let root_file = self.open_root()?;
        match ffi::set_default_subvolume(&root_file, id) {
            Ok(()) => return self.commit(self.dir(), id, &describe),
            Err(e) if e.errno() == Some(nix::libc::EROFS) => {
                tracing::info!(
                    "{} is mounted read-only; setting the default through a private mount of the top level",
                    self.dir().display()
                );
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "making {describe} the default through {}",
                        self.dir().display()
                    )
                })
            }
        }

        let (own, _) = self.mounts()?;
        let top = TopLevelMount::new(&own.source)?;
        self.check_same_filesystem(top.path(), &own)?;
        let file =
            File::open(top.path()).with_context(|| format!("opening {}", top.path().display()))?;
        ffi::set_default_subvolume(&file, id).with_context(|| {
            format!(
                "making {describe} the default through {} (top level of {})",
                top.path().display(),
                own.source
            )
        })?;
        self.commit(top.path(), id, &describe)
    }

    /// Make sure a fresh mount shows the same filesystem as the root.
    fn check_same_filesystem(&self, mount_point: &Path, own: &Mount) -> anyhow::Result<()> {
        let all = mountinfo::read()?;
        let fresh = all
            .iter()
            .rev()
            .find(|m| m.mount_point == mount_point)
            .ok_or_else(|| anyhow!("{} is not in the mount table", mount_point.display()))?;
        if fresh.dev != own.dev {
            bail!(
                "mounting {} on {} gave filesystem {} but {} is on {}",
                own.source,
                mount_point.display(),
                fresh.dev,
                self.dir().display(),
                own.dev
            );
        }
        Ok(())
    }

    /// Commit the change to disk and read it back.
    fn commit(&self, through: &Path, id: u64, describe: &str) -> anyhow::Result<()> {
        libbtrfsutil::sync(through).with_context(|| {
            format!(
                "committing the new default {describe} to disk (sync of {})",
                through.display()
            )
        })?;
        let now = self.default_ref()?;
        if now.id != id {
            bail!(
                "the default subvolume is {} ({}) after setting it to {describe}",
                now.id,
                display_path(&now.path)
            );
        }
        tracing::info!(
            SNAPSHOT = now.path.as_str(),
            SNAPSHOT_ID = id,
            "default subvolume set to {describe}"
        );
        Ok(())
    }

    fn list_all(&self) -> anyhow::Result<Vec<SnapshotInfo>> {
        let booted = self.booted_ref()?;
        let default = self.default_ref()?;
        let mounts = match self.mounts() {
            Ok((_, m)) => m,
            Err(e) => {
                tracing::warn!("snapshot descriptions unavailable: {e:#}");
                Vec::new()
            }
        };
        let mounts: Vec<&Mount> = mounts.iter().collect();

        let mut out = Vec::new();
        for (path, info) in self.iterate()? {
            let snapper = snapper::parse_path(&path);
            let id = info.id();
            let wanted = snapper.is_some()
                || id == booted.id
                || id == default.id
                || holds_root(&mounts, &path);
            if !wanted {
                continue;
            }
            let description = snapper
                .as_ref()
                .and_then(|s| description(&mounts, &s.info_xml));
            out.push(SnapshotInfo {
                snapshot: SnapshotRef { id, path },
                number: snapper.map(|s| s.number),
                description,
                read_only: info.flags() & SUBVOL_RDONLY != 0,
            });
        }
        // The top level is not beneath itself: add it when it is booted or
        // the default.
        for r in [&booted, &default] {
            if r.id == FS_TREE_OBJECTID && !out.iter().any(|s| s.snapshot.id == r.id) {
                out.push(SnapshotInfo {
                    snapshot: r.clone(),
                    number: None,
                    description: None,
                    read_only: false,
                });
            }
        }
        out.sort_by_key(|s| s.snapshot.id);
        Ok(out)
    }
}

impl Snapshots for BtrfsSnapshots {
    fn booted(&self) -> anyhow::Result<SnapshotRef> {
        self.booted_ref().code(Code::Snapshot)
    }

    fn default_subvolume(&self) -> anyhow::Result<SnapshotRef> {
        self.default_ref().code(Code::Snapshot)
    }

    fn set_default(&self, id: u64) -> anyhow::Result<()> {
        self.set_default_id(id).code(Code::Snapshot)
    }

    fn lookup(&self, path: &str) -> anyhow::Result<Option<SnapshotRef>> {
        self.lookup_path(path).code(Code::Snapshot)
    }

    fn list(&self) -> anyhow::Result<Vec<SnapshotInfo>> {
        self.list_all().code(Code::Snapshot)
    }
}

/// A subvolume path from libbtrfsutil as the `String` the rest of the
/// program (and GRUB's environment) uses.
fn path_string(path: &Path) -> anyhow::Result<String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("subvolume path {} is not UTF-8", path.display()))
}

/// `/@//.snapshots/1/snapshot/` → `@/.snapshots/1/snapshot`.
fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "the top level"
    } else {
        path
    }
}

/// Whether the subvolume at `path` holds a root filesystem, judged by an
/// `os-release` file seen through a current mount.
fn holds_root(mounts: &[&Mount], path: &str) -> bool {
    ["usr/lib/os-release", "etc/os-release"].iter().any(|f| {
        mountinfo::reach(mounts, &format!("/{path}/{f}"))
            .is_some_and(|p| p.symlink_metadata().is_ok())
    })
}

/// snapper's description of a snapshot, when a mount shows its info.xml.
fn description(mounts: &[&Mount], info_xml: &str) -> Option<String> {
    let file: PathBuf = mountinfo::reach(mounts, &format!("/{info_xml}"))?;
    if !file.exists() {
        return None;
    }
    match snapper::read_description(&file) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("snapshot description: {e:#}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_from_the_top_level() {
        assert_eq!(
            normalize("/@//.snapshots/./1/snapshot/"),
            "@/.snapshots/1/snapshot"
        );
        assert_eq!(normalize("/"), "");
        assert_eq!(normalize(""), "");
    }
}
