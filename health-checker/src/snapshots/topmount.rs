//! A private, temporary, writable mount of a btrfs filesystem's top level
//! (subvolume ID 5), for the one job that needs a writable mount when every
//! existing mount of the filesystem is read-only: setting the default
//! subvolume (the kernel checks write access on the mount of the descriptor
//! the ioctl is made on).
//!
//! It lives under `/run/health-checker/` (a tmpfs, gone at reboot), is made
//! private right away so it does not propagate to other mount namespaces,
//! does not allow devices, set-uid or execution, and is detached and removed
//! when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Where the temporary mount points are made.
pub const RUN_DIR: &str = "/run/health-checker";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A mounted top level; unmounted on drop.
#[derive(Debug)]
pub struct TopLevelMount {
    dir: PathBuf,
}

impl TopLevelMount {
    /// Mount the top level of the btrfs filesystem on `device`.
    pub fn new(device: &str) -> anyhow::Result<Self> {
        let run = Path::new(RUN_DIR);
        std::fs::create_dir_all(run).with_context(|| format!("creating {}", run.display()))?;
        let dir = run.join(format!(
            "top-level.{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if let Err(e) = mount(Some(device), &dir, Some("btrfs"), flags, Some("subvolid=5")) {
            let _ = std::fs::remove_dir(&dir);
            return Err(e).with_context(|| {
                format!(
                    "mounting the top level of {device} (subvolid=5) on {}",
                    dir.display()
                )
            });
        }
        let this = TopLevelMount { dir };
        mount(
            None::<&str>,
            &this.dir,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .with_context(|| format!("making {} a private mount", this.dir.display()))?;
        Ok(this)
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TopLevelMount {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.dir, MntFlags::MNT_DETACH) {
            tracing::warn!("unmounting {}: {e}", self.dir.display());
            return;
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::warn!("removing {}: {e}", self.dir.display());
        }
    }
}
