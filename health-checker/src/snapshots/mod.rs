//! The snapshot store: which btrfs subvolume is booted, which is the default,
//! and changing the default. The trait is the seam the engine uses; the
//! real implementation ([`btrfs::BtrfsSnapshots`], libbtrfsutil on a
//! mounted btrfs) lives beside it.

pub mod btrfs;
mod ffi;
pub mod mountinfo;
pub mod snapper;
mod topmount;

pub use btrfs::BtrfsSnapshots;
pub use topmount::TopLevelMount;

use serde::{Deserialize, Serialize};

/// A snapshot as the engine and the boot environment know it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// btrfs subvolume ID.
    pub id: u64,
    /// Path from the top-level subvolume (ID 5), without a leading `/`:
    /// `@/.snapshots/3/snapshot`. This is what GRUB and `rootflags=subvol=`
    /// use.
    pub path: String,
}

/// Details of a snapshot for listings and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub snapshot: SnapshotRef,
    /// snapper's number (`@/.snapshots/N/snapshot`), where the layout is
    /// snapper's.
    pub number: Option<u64>,
    /// snapper's description from `info.xml`, where present.
    pub description: Option<String>,
    pub read_only: bool,
}

/// What the engine needs from the snapshot store.
pub trait Snapshots {
    /// The subvolume mounted at `/` of the root acted on (from the kernel).
    fn booted(&self) -> anyhow::Result<SnapshotRef>;
    /// The btrfs default subvolume: what the next plain boot mounts.
    fn default_subvolume(&self) -> anyhow::Result<SnapshotRef>;
    /// Make subvolume `id` the default.
    fn set_default(&self, id: u64) -> anyhow::Result<()>;
    /// The subvolume at `path` (from the top level), if it exists.
    fn lookup(&self, path: &str) -> anyhow::Result<Option<SnapshotRef>>;
    /// All snapshots (snapper layout or any subvolume holding a root).
    fn list(&self) -> anyhow::Result<Vec<SnapshotInfo>>;
}
