//! File writes that survive a power cut, and JSON files that are never
//! silently replaced when they turn out corrupt.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

/// Replace `path` with `bytes` atomically: a power cut at any point leaves
/// either the old or the new content, and a reader sees the old file or the
/// new one, never part of one. Writes a temporary file in the same
/// directory, fsyncs it, renames it over `path`, then fsyncs the directory so
/// the rename itself is durable. Creates the directory if it is missing. The
/// file is readable by everyone and writable by its owner (0644), whatever
/// the umask: the login message and the state files are read by users.
/// This is the one atomic-write helper of the program (the boot environment
/// has its own store in the `grub-env` crate, for FAT and fault injection).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent(path)?;
    fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_synced(&tmp, bytes).and_then(|()| {
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    });
    if result.is_err() {
        // Leave no stray temporary file behind; the original is untouched.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// The mode of files written by [`atomic_write`].
pub const FILE_MODE: u32 = 0o644;

fn parent(path: &Path) -> Result<&Path> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p),
        Some(_) => Ok(Path::new(".")),
        None => anyhow::bail!("{} has no parent directory", path.display()),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

/// fsync a directory, making renames and creations in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// An exclusive `flock` on a lock file, held until dropped. Serialises
/// read-modify-write cycles of the files beside it between processes (the
/// early and late units, `arm`, `mark-good`, ...).
#[derive(Debug)]
pub struct Lock {
    _file: nix::fcntl::Flock<File>,
}

impl Lock {
    /// Take the lock on `path` (created if missing, with its directory),
    /// waiting for another holder to let go.
    pub fn acquire(path: &Path) -> Result<Lock> {
        let dir = parent(path)?;
        fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| errno)
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(Lock { _file: file })
    }
}

/// A file read by [`read_json`].
#[derive(Debug)]
pub struct Loaded<T> {
    /// The content; the type's default when the file was missing or corrupt.
    pub value: T,
    /// Set when the file was corrupt: why, and where it was moved (if it was).
    pub corrupt: Option<Corrupt>,
}

/// A JSON file that could not be parsed.
#[derive(Debug)]
pub struct Corrupt {
    /// The file that was corrupt.
    pub path: PathBuf,
    /// Why it could not be parsed.
    pub error: String,
    /// Where the corrupt file now is; `None` when it was left in place
    /// (a read-only look, e.g. a dry run).
    pub moved_to: Option<PathBuf>,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is corrupt ({})", self.path.display(), self.error)?;
        match &self.moved_to {
            Some(to) => write!(f, "; moved aside to {}", to.display()),
            None => write!(f, "; left in place"),
        }
    }
}

/// Read a JSON file. A missing file is the default value. A file that does
/// not parse is moved aside to `NAME.corrupt-<now>` when `move_aside` is set
/// (never replaced silently) and reported in [`Loaded::corrupt`]; a file that
/// cannot be read at all is an error.
pub fn read_json<T: DeserializeOwned + Default>(
    path: &Path,
    move_aside: bool,
    now: u64,
) -> Result<Loaded<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(Loaded {
                value: T::default(),
                corrupt: None,
            })
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    match serde_json::from_slice(&bytes) {
        Ok(value) => Ok(Loaded {
            value,
            corrupt: None,
        }),
        Err(e) => {
            let moved_to = if move_aside {
                Some(move_aside_path(path, now)?)
            } else {
                None
            };
            let corrupt = Corrupt {
                path: path.to_owned(),
                error: e.to_string(),
                moved_to,
            };
            tracing::warn!("{corrupt}");
            Ok(Loaded {
                value: T::default(),
                corrupt: Some(corrupt),
            })
        }
    }
}

/// Rename `path` to `path.corrupt-<now>` (with a counter if that exists).
fn move_aside_path(path: &Path, now: u64) -> Result<PathBuf> {
    let base = format!("{}.corrupt-{now}", path.display());
    let mut target = PathBuf::from(&base);
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    fs::rename(path, &target).with_context(|| {
        format!(
            "moving corrupt {} aside to {}",
            path.display(),
            target.display()
        )
    })?;
    sync_dir(parent(path)?)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_creates_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state.json");
        atomic_write(&p, b"one").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, FILE_MODE, "{mode:o}");
    }

    #[test]
    fn atomic_write_failure_names_the_file_and_keeps_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("target");
        // A directory where the file should be: the rename fails.
        fs::create_dir(&p).unwrap();
        fs::write(p.join("keep"), b"x").unwrap();
        let err = atomic_write(&p, b"new").unwrap_err();
        assert!(format!("{err:#}").contains("target"), "{err:#}");
        assert_eq!(fs::read(p.join("keep")).unwrap(), b"x");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/.lock");
        let held = Lock::acquire(&p).unwrap();
        // A second open file description cannot take it meanwhile.
        let f = File::options().write(true).open(&p).unwrap();
        let f = match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(_) => panic!("the lock was not exclusive"),
            Err((f, errno)) => {
                assert_eq!(errno, nix::errno::Errno::EWOULDBLOCK);
                f
            }
        };
        drop(held);
        assert!(nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok());
    }

    #[test]
    fn missing_file_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let l: Loaded<Vec<u32>> = read_json(&dir.path().join("none.json"), true, 5).unwrap();
        assert!(l.value.is_empty());
        assert!(l.corrupt.is_none());
    }

    #[test]
    fn corrupt_file_is_moved_aside_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.json");
        fs::write(&p, b"[1, 2,").unwrap();
        let l: Loaded<Vec<u32>> = read_json(&p, true, 1700000000).unwrap();
        let c = l.corrupt.expect("reported as corrupt");
        let moved = c.moved_to.clone().unwrap();
        assert_eq!(moved, dir.path().join("h.json.corrupt-1700000000"));
        assert_eq!(fs::read(&moved).unwrap(), b"[1, 2,");
        assert!(!p.exists());
        assert!(c.to_string().contains("h.json"), "{c}");
        // A second corruption in the same second does not overwrite the first.
        fs::write(&p, b"{").unwrap();
        let l: Loaded<Vec<u32>> = read_json(&p, true, 1700000000).unwrap();
        let moved2 = l.corrupt.unwrap().moved_to.unwrap();
        assert_ne!(moved, moved2);
        assert_eq!(fs::read(&moved).unwrap(), b"[1, 2,");
    }

    #[test]
    fn read_only_look_leaves_a_corrupt_file_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        fs::write(&p, b"garbage").unwrap();
        let l: Loaded<Vec<u32>> = read_json(&p, false, 1).unwrap();
        assert!(l.corrupt.unwrap().moved_to.is_none());
        assert_eq!(fs::read(&p).unwrap(), b"garbage");
    }

    #[test]
    fn unreadable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("isdir.json");
        fs::create_dir(&p).unwrap();
        let err = read_json::<Vec<u32>>(&p, true, 1).unwrap_err();
        assert!(format!("{err:#}").contains("isdir.json"), "{err:#}");
    }
}
