//! The file-system steps the store is built from. Each step is one call, so
//! tests can stop the writer after any of them (fault injection) and model
//! what a power cut at that instant would leave on disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// Where one copy of the environment lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// A file: replaced as a whole by rename, or, on FAT, overwritten in
    /// place (see the crate documentation).
    File(std::path::PathBuf),
    /// A raw block inside a device or file (the btrfs reserved-area block
    /// that patched GRUBs read as `env_block`), overwritten in place.
    Block {
        path: std::path::PathBuf,
        offset: u64,
        size: usize,
    },
}

impl Location {
    pub fn path(&self) -> &Path {
        match self {
            Location::File(p) => p,
            Location::Block { path, .. } => path,
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Block { path, offset, size } => {
                write!(
                    f,
                    "{} (block of {size} bytes at byte {offset})",
                    path.display()
                )
            }
        }
    }
}

/// An exclusive lock held until dropped.
#[derive(Debug)]
pub struct LockGuard {
    _lock: Option<Flock<File>>,
}

impl LockGuard {
    /// A guard that locks nothing (for in-memory file systems in tests).
    pub fn none() -> Self {
        LockGuard { _lock: None }
    }
}

/// The operations the store needs, one durable step each.
pub trait Fs {
    /// Read a copy; `Ok(None)` if the file does not exist.
    fn read(&self, loc: &Location) -> io::Result<Option<Vec<u8>>>;
    /// Create or truncate `path` and write `data` to it (no sync).
    fn write_new(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// fsync `path`.
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// rename `from` over `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsync the directory `dir` (makes a rename durable).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Overwrite `data.len()` bytes at `offset` of `path` in place (no sync).
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Take an exclusive lock on `path` (a directory or device), waiting for
    /// other holders.
    fn lock(&self, path: &Path) -> io::Result<LockGuard>;
    /// Whether a file in `dir` is better overwritten in place than replaced
    /// through a new file and a rename: true on FAT (see the crate
    /// documentation). Not a step: it changes nothing.
    fn prefers_in_place(&self, dir: &Path) -> io::Result<bool>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl Fs for RealFs {
    fn read(&self, loc: &Location) -> io::Result<Option<Vec<u8>>> {
        let mut file = match File::open(loc.path()) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = Vec::new();
        match loc {
            Location::File(_) => {
                file.read_to_end(&mut buf)?;
            }
            Location::Block { offset, size, .. } => {
                file.seek(SeekFrom::Start(*offset))?;
                buf.resize(*size, 0);
                file.read_exact(&mut buf)?;
            }
        }
        Ok(Some(buf))
    }

    fn write_new(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        f.write_all(data)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all_at(data, offset)
    }

    fn prefers_in_place(&self, dir: &Path) -> io::Result<bool> {
        let st = nix::sys::statfs::statfs(dir).map_err(io::Error::from)?;
        Ok(st.filesystem_type() == nix::sys::statfs::MSDOS_SUPER_MAGIC)
    }

    fn lock(&self, path: &Path) -> io::Result<LockGuard> {
        let file = File::open(path)?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io::Error::from(errno))?;
        Ok(LockGuard { _lock: Some(lock) })
    }
}
