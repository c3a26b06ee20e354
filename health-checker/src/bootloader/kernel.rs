//! What an entry boots: the kernel and initrd inside a snapshot, and the
//! kernel options.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::paths::Root;
use crate::snapshots::SnapshotRef;

/// Access to the files of any snapshot of the root's btrfs file system.
pub trait SnapshotFiles: std::fmt::Debug {
    /// Call `f` with the directory holding snapshot `snap`'s root tree.
    fn with_tree(
        &self,
        snap: &SnapshotRef,
        f: &mut dyn FnMut(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()>;
}

/// Snapshots under an already mounted top level (subvolume ID 5): a test's
/// loop mount, an image build.
#[derive(Debug, Clone)]
pub struct TopLevelDir(pub PathBuf);

impl SnapshotFiles for TopLevelDir {
    fn with_tree(
        &self,
        snap: &SnapshotRef,
        f: &mut dyn FnMut(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        f(&self.0.join(&snap.path))
    }
}

/// Snapshots of the btrfs file system mounted at `/` under `root`, through a
/// private temporary mount of its top level.
#[derive(Debug, Clone)]
pub struct MountedTopLevel(pub Root);

impl SnapshotFiles for MountedTopLevel {
    fn with_tree(
        &self,
        snap: &SnapshotRef,
        f: &mut dyn FnMut(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let device = crate::commands::system::root_device(&self.0)?;
        let top = crate::snapshots::TopLevelMount::new(&device.to_string_lossy())?;
        f(&top.path().join(&snap.path))
    }
}

/// The kernel and initrd of the tree at `tree` (a snapshot's `/`):
/// Debian's `vmlinuz`/`initrd.img` symlinks (at `/` or in `/boot`), else
/// the highest-versioned `boot/vmlinuz-V` with its `boot/initrd.img-V`.
pub fn find_kernel(tree: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    for dir in ["", "boot"] {
        let k = resolve(tree, &Path::new(dir).join("vmlinuz"));
        let i = resolve(tree, &Path::new(dir).join("initrd.img"));
        if let (Some(k), Some(i)) = (k, i) {
            return Ok((k, i));
        }
    }
    let boot = tree.join("boot");
    let mut versions: Vec<String> = std::fs::read_dir(&boot)
        .with_context(|| format!("reading {}", boot.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_owned)
        })
        .filter(|v| boot.join(format!("initrd.img-{v}")).is_file())
        .collect();
    versions.sort_by(|a, b| version_cmp(a, b));
    match versions.pop() {
        Some(v) => Ok((
            boot.join(format!("vmlinuz-{v}")),
            boot.join(format!("initrd.img-{v}")),
        )),
        None => bail!(
            "no kernel in {}: neither vmlinuz and initrd.img nor a boot/vmlinuz-VERSION with its boot/initrd.img-VERSION",
            tree.display()
        ),
    }
}

/// `rel` under `tree`, following symlinks inside the tree (an absolute
/// link target is taken from the tree's root, not the host's). `None` when
/// it is not a regular file.
fn resolve(tree: &Path, rel: &Path) -> Option<PathBuf> {
    let mut path = tree.join(rel);
    for _ in 0..16 {
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).ok()?;
            path = match target.strip_prefix("/") {
                Ok(abs) => tree.join(abs),
                Err(_) => path.parent()?.join(target),
            };
            continue;
        }
        return meta.is_file().then_some(path);
    }
    None
}

/// Compare kernel versions: runs of digits numerically, the rest bytewise.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (trim_zeros(&a[..na]), trim_zeros(&b[..nb]));
                let o = da.len().cmp(&db.len()).then(da.cmp(db));
                if o != Ordering::Equal {
                    return o;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    &d[n.min(d.len().saturating_sub(1))..]
}

/// The kernel options of every entry besides `rootflags=`: the configured
/// ones, or the running kernel's command line without the options that name
/// what one boot loaded (`BOOT_IMAGE=`, `initrd=`, `rootflags=`). A
/// `root=` is added from the root file system's UUID when missing.
pub fn base_options(root: &Root, configured: &str) -> anyhow::Result<String> {
    let from = if configured.trim().is_empty() {
        let file = root.join("/proc/cmdline");
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
    } else {
        configured.to_owned()
    };
    let mut out: Vec<&str> = from
        .split_whitespace()
        .filter(|o| {
            !["BOOT_IMAGE=", "initrd=", "rootflags="]
                .iter()
                .any(|p| o.starts_with(p))
        })
        .collect();
    let uuid;
    if !out.iter().any(|o| o.starts_with("root=")) {
        uuid = format!("root=UUID={}", root_uuid(root)?);
        out.insert(0, &uuid);
    }
    Ok(out.join(" "))
}

/// The UUID of the btrfs file system at `/` under `root`, from sysfs
/// (`/sys/fs/btrfs/UUID/devices/DEVICE`).
fn root_uuid(root: &Root) -> anyhow::Result<String> {
    let device = crate::commands::system::root_device(root)?;
    let name = device
        .canonicalize()
        .unwrap_or(device.clone())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sys = root.join("/sys/fs/btrfs");
    for e in std::fs::read_dir(&sys)
        .with_context(|| format!("reading {}", sys.display()))?
        .flatten()
    {
        if e.path().join("devices").join(&name).exists() {
            return Ok(e.file_name().to_string_lossy().into_owned());
        }
    }
    bail!(
        "no root= in the kernel options and {} lists no file system with device {name}: set [bootloader] options",
        sys.display()
    )
}

/// The options of one snapshot's entry.
pub fn entry_options(base: &str, snap: &SnapshotRef) -> String {
    format!("{base} rootflags=subvol={}", snap.path)
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn debian_symlinks_are_followed_inside_the_tree() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("boot")).unwrap();
        std::fs::write(t.path().join("boot/vmlinuz-6.1.0-18-amd64"), "k").unwrap();
        std::fs::write(t.path().join("boot/initrd.img-6.1.0-18-amd64"), "i").unwrap();
        symlink("boot/vmlinuz-6.1.0-18-amd64", t.path().join("vmlinuz")).unwrap();
        // An absolute target names the tree's own /boot, not the host's.
        symlink(
            "/boot/initrd.img-6.1.0-18-amd64",
            t.path().join("initrd.img"),
        )
        .unwrap();
        let (k, i) = find_kernel(t.path()).unwrap();
        assert_eq!(std::fs::read_to_string(k).unwrap(), "k");
        assert_eq!(std::fs::read_to_string(i).unwrap(), "i");
    }

    #[test]
    fn without_symlinks_the_highest_version_with_an_initrd_wins() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path().join("boot");
        std::fs::create_dir(&b).unwrap();
        for v in ["6.1.0-9-amd64", "6.1.0-18-amd64", "6.5.0-1-amd64"] {
            std::fs::write(b.join(format!("vmlinuz-{v}")), v).unwrap();
        }
        for v in ["6.1.0-9-amd64", "6.1.0-18-amd64"] {
            std::fs::write(b.join(format!("initrd.img-{v}")), v).unwrap();
        }
        let (k, _) = find_kernel(t.path()).unwrap();
        assert_eq!(std::fs::read_to_string(k).unwrap(), "6.1.0-18-amd64");
        std::fs::remove_file(b.join("initrd.img-6.1.0-9-amd64")).unwrap();
        std::fs::remove_file(b.join("initrd.img-6.1.0-18-amd64")).unwrap();
        let e = find_kernel(t.path()).unwrap_err();
        assert!(format!("{e:#}").contains("no kernel in"), "{e:#}");
    }

    #[test]
    fn options_drop_what_names_one_boot() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let base = base_options(
            &root,
            "BOOT_IMAGE=/vmlinuz root=UUID=abc ro rootflags=subvol=@/x,compress=zstd console=ttyS0 initrd=/i",
        )
        .unwrap();
        assert_eq!(base, "root=UUID=abc ro console=ttyS0");
        let s = SnapshotRef {
            id: 263,
            path: "@/.snapshots/7/snapshot".into(),
        };
        assert_eq!(
            entry_options(&base, &s),
            "root=UUID=abc ro console=ttyS0 rootflags=subvol=@/.snapshots/7/snapshot"
        );
        std::fs::create_dir_all(t.path().join("proc")).unwrap();
        std::fs::write(t.path().join("proc/cmdline"), "root=/dev/vda2 quiet\n").unwrap();
        assert_eq!(base_options(&root, "").unwrap(), "root=/dev/vda2 quiet");
    }
}
