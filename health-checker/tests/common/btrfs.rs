//! A real btrfs filesystem for tests: a sparse image file, formatted with
//! `mkfs.btrfs`, attached to its own loop device and mounted under a
//! temporary directory. Everything it mounts and the loop device are undone
//! when it is dropped, also when the test fails. Each instance has its own
//! directory, image and loop device, so tests using it run in parallel.
//!
//! The fixture drives the filesystem with btrfs-progs' command-line tools,
//! independent of the code under test, so it can also check that code's
//! effects.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::require;

/// Size of the image: above mkfs.btrfs's minimum (~114 MiB), sparse.
pub const IMAGE_SIZE: u64 = 256 * 1024 * 1024;

/// A loop-mounted btrfs image with its top level mounted at [`Self::top`].
#[derive(Debug)]
pub struct BtrfsImage {
    dir: tempfile::TempDir,
    /// The loop device (`/dev/loopN`).
    pub device: String,
    /// Mount point of the top level (subvolume ID 5) while mounted.
    pub top: PathBuf,
    top_mounted: bool,
    /// Other mounts made through the fixture, in the order made.
    mounts: Vec<PathBuf>,
}

/// IDs of a snapper-style layout made by [`BtrfsImage::snapper_layout`].
#[derive(Debug, Clone)]
pub struct Layout {
    /// `@`, the root a distribution installs into.
    pub at: u64,
    /// `@/.snapshots`.
    pub snapshots: u64,
    /// `(N, subvolume ID of @/.snapshots/N/snapshot)`, in the order given.
    pub numbered: Vec<(u64, u64)>,
}

impl Layout {
    /// The subvolume ID of snapshot number `n`.
    pub fn id(&self, n: u64) -> u64 {
        self.numbered
            .iter()
            .find(|(num, _)| *num == n)
            .map(|(_, id)| *id)
            .unwrap_or_else(|| panic!("snapshot {n} is not in the layout"))
    }
}

/// Run a command; panic with its output when it fails. Returns stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

impl BtrfsImage {
    /// Make, format, attach and mount a fresh image. Fails the test loudly
    /// when not root or when btrfs-progs or loop devices are missing.
    pub fn new() -> Self {
        require::root("a loop-mounted btrfs image");
        require::program("mkfs.btrfs", "btrfs-progs");
        require::program("btrfs", "btrfs-progs");
        require::program("losetup", "mount (util-linux)");
        require::program("mount", "mount (util-linux)");
        assert!(
            Path::new("/dev/loop-control").exists(),
            "no /dev/loop-control: this machine has no loop devices, which the btrfs tests need"
        );

        let dir = tempfile::Builder::new()
            .prefix("hc-btrfs-")
            .tempdir()
            .expect("creating a temporary directory");
        let image = dir.path().join("btrfs.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(IMAGE_SIZE))
            .unwrap_or_else(|e| panic!("creating {}: {e}", image.display()));
        run("mkfs.btrfs", &["-q", "-f", s(&image)]);
        let device = run("losetup", &["--find", "--show", s(&image)])
            .trim()
            .to_string();
        assert!(
            device.starts_with("/dev/loop"),
            "losetup printed {device:?}"
        );
        let top = dir.path().join("top");
        std::fs::create_dir(&top).unwrap();
        let mut this = BtrfsImage {
            dir,
            device,
            top,
            top_mounted: false,
            mounts: Vec::new(),
        };
        this.mount_top();
        this
    }

    /// A fresh directory inside the fixture's temporary directory, for a
    /// mount point or a test root.
    pub fn new_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        d
    }

    /// The path of `rel` (from the top level) under the top-level mount.
    pub fn at_top(&self, rel: &str) -> PathBuf {
        assert!(self.top_mounted, "the top level is not mounted");
        self.top.join(rel)
    }

    /// Mount the top level at [`Self::top`] (read-write).
    pub fn mount_top(&mut self) {
        if !self.top_mounted {
            run(
                "mount",
                &[
                    "-t",
                    "btrfs",
                    "-o",
                    "subvolid=5",
                    &self.device,
                    s(&self.top),
                ],
            );
            self.top_mounted = true;
        }
    }

    /// Unmount the top level, so no writable mount of the filesystem
    /// remains unless the test made one.
    pub fn unmount_top(&mut self) {
        if self.top_mounted {
            umount(&self.top);
            self.top_mounted = false;
        }
    }

    /// Create an empty subvolume at `rel` (from the top level).
    pub fn subvolume(&self, rel: &str) -> u64 {
        run(
            "btrfs",
            &["-q", "subvolume", "create", s(&self.at_top(rel))],
        );
        self.id_of(rel)
    }

    /// Snapshot subvolume `src` as `dst` (both from the top level).
    pub fn snapshot(&self, src: &str, dst: &str, read_only: bool) -> u64 {
        let (src, dst) = (self.at_top(src), self.at_top(dst));
        let mut args = vec!["-q", "subvolume", "snapshot"];
        if read_only {
            args.push("-r");
        }
        args.extend([s(&src), s(&dst)]);
        run("btrfs", &args);
        self.id_of_path(&dst)
    }

    /// The subvolume ID of `rel` (from the top level), by btrfs-progs.
    pub fn id_of(&self, rel: &str) -> u64 {
        self.id_of_path(&self.at_top(rel))
    }

    fn id_of_path(&self, p: &Path) -> u64 {
        let out = run("btrfs", &["inspect-internal", "rootid", s(p)]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("btrfs inspect-internal rootid printed {out:?}"))
    }

    /// Write a file at `rel` (from the top level), making its directories.
    pub fn write(&self, rel: &str, contents: &str) {
        let p = self.at_top(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    }

    /// Build snapper's layout: `@` holding a small root (an `os-release`),
    /// the subvolume `@/.snapshots`, and for each `(N, description,
    /// read_only)` a snapshot `@/.snapshots/N/snapshot` of `@` with its
    /// `info.xml`. A description of `None` writes no `info.xml`.
    pub fn snapper_layout(&self, snapshots: &[(u64, Option<&str>, bool)]) -> Layout {
        let at = self.subvolume("@");
        self.write("@/usr/lib/os-release", "ID=test\nNAME=\"Test\"\n");
        self.write("@/etc/hostname", "test\n");
        let snaps = self.subvolume("@/.snapshots");
        let numbered = snapshots
            .iter()
            .map(|&(n, description, read_only)| {
                (n, self.snapper_snapshot(n, description, read_only))
            })
            .collect();
        Layout {
            at,
            snapshots: snaps,
            numbered,
        }
    }

    /// Add snapshot `n` of `@` in snapper's layout (`@/.snapshots/N/snapshot`,
    /// with an `info.xml` holding `description` when given); returns its
    /// subvolume ID. Needs [`Self::snapper_layout`] first.
    pub fn snapper_snapshot(&self, n: u64, description: Option<&str>, read_only: bool) -> u64 {
        std::fs::create_dir_all(self.at_top(&format!("@/.snapshots/{n}"))).unwrap();
        if let Some(d) = description {
            self.write(
                &format!("@/.snapshots/{n}/info.xml"),
                &format!(
                    "<?xml version=\"1.0\"?>\n<snapshot>\n  <type>single</type>\n  \
                     <num>{n}</num>\n  <date>2024-01-01 00:00:00</date>\n  \
                     <description>{d}</description>\n</snapshot>\n"
                ),
            );
        }
        self.snapshot("@", &format!("@/.snapshots/{n}/snapshot"), read_only)
    }

    /// Mount subvolume `subvol` (path from the top level) at `at`,
    /// read-only when asked. Unmounted when the fixture is dropped, or by
    /// [`Self::unmount_all`].
    pub fn mount_subvol(&mut self, subvol: &str, at: &Path, read_only: bool) {
        let mut opts = format!("subvol=/{}", subvol.trim_start_matches('/'));
        if read_only {
            opts.push_str(",ro");
        }
        run("mount", &["-t", "btrfs", "-o", &opts, &self.device, s(at)]);
        self.mounts.push(at.to_path_buf());
    }

    /// Let the fixture unmount a mount the test made itself.
    pub fn track_mount(&mut self, at: &Path) {
        self.mounts.push(at.to_path_buf());
    }

    /// Mount `subvol` as a booted system would be: the snapshot at a fresh
    /// test root (read-only when asked) and `@/.snapshots` on its
    /// `/.snapshots` (read-only when asked). Returns the root directory.
    pub fn boot(&mut self, subvol: &str, root_ro: bool, snapshots_ro: Option<bool>) -> PathBuf {
        let root = self.new_dir(&format!("root-{}", self.mounts.len()));
        self.mount_subvol(subvol, &root, root_ro);
        if let Some(ro) = snapshots_ro {
            let at = root.join(".snapshots");
            assert!(
                at.is_dir(),
                "{} has no .snapshots directory to mount on",
                root.display()
            );
            self.mount_subvol("@/.snapshots", &at, ro);
        }
        root
    }

    /// Set the default subvolume with btrfs-progs (needs a writable mount:
    /// the top level).
    pub fn set_default_cli(&self, id: u64) {
        run(
            "btrfs",
            &["subvolume", "set-default", &id.to_string(), s(&self.top)],
        );
    }

    /// The default subvolume ID as btrfs-progs reads it through `through`
    /// (any directory on the filesystem).
    pub fn default_cli(&self, through: &Path) -> u64 {
        let out = run("btrfs", &["subvolume", "get-default", s(through)]);
        // "ID 258 gen 9 top level 257 path @/.snapshots/1/snapshot" or
        // "ID 5 (FS_TREE)".
        out.split_whitespace()
            .nth(1)
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("btrfs subvolume get-default printed {out:?}"))
    }

    /// Unmount every mount the fixture made, the top level included: the
    /// filesystem is then only on disk.
    pub fn unmount_all(&mut self) {
        while let Some(m) = self.mounts.pop() {
            umount(&m);
        }
        self.unmount_top();
    }

    /// The lines of the mount table that mention `needle`.
    pub fn mount_lines(needle: &str) -> Vec<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("reading /proc/self/mountinfo")
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

/// How long an unmount is retried while the mount is busy.
const BUSY_PATIENCE: Duration = Duration::from_secs(15);

/// Try to unmount `p`, retrying while the kernel says it is busy. A mount
/// can be busy for a moment without anything being wrong: libbtrfsutil opens
/// the paths it is given without `O_CLOEXEC`, so a program another test
/// thread starts at that instant (`mkfs.btrfs`, `mount`, ...) inherits the
/// descriptor and holds the mount until it exits. Returns the last failure.
fn try_umount(p: &Path) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let out = Command::new("umount")
            .arg(p)
            .output()
            .map_err(|e| format!("running umount: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if !err.contains("busy") || start.elapsed() > BUSY_PATIENCE {
            return Err(format!(
                "umount {} failed ({}): {err}",
                p.display(),
                out.status
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Unmount `p`; panic when it stays mounted.
fn umount(p: &Path) {
    if let Err(e) = try_umount(p) {
        panic!("{e}");
    }
}

/// Unmount `p` on the way out of a test; detach it lazily when it stays
/// busy, and only warn if even that fails.
fn quiet_umount(p: &Path) {
    if let Err(e) = try_umount(p) {
        eprintln!("warning: {e}");
        let lazy = Command::new("umount").arg("-l").arg(p).status();
        if !lazy.is_ok_and(|st| st.success()) {
            eprintln!("warning: could not unmount {}", p.display());
        }
    }
}

impl Drop for BtrfsImage {
    fn drop(&mut self) {
        while let Some(m) = self.mounts.pop() {
            quiet_umount(&m);
        }
        if self.top_mounted {
            quiet_umount(&self.top);
            self.top_mounted = false;
        }
        let detached = Command::new("losetup")
            .args(["-d", &self.device])
            .status()
            .is_ok_and(|st| st.success());
        if !detached {
            eprintln!("warning: could not detach {}", self.device);
        }
    }
}
