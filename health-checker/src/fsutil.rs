//! File writes that survive a power cut, locks no other user can hold, and
//! versioned JSON files that are never replaced or moved aside when this
//! version cannot interpret them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;

/// Replace `path` with `bytes` atomically: a power cut at any point leaves
/// either the old or the new content, and a reader sees the old file or the
/// new one, never part of one. Writes a temporary file in the same
/// directory, fsyncs it, renames it over `path`, fsyncs the directory so the
/// rename itself is durable, then fsyncs the file again under its new name.
/// That last fsync is for FAT (the ESP; see [`sync_renamed`]): without it, a
/// power cut in the seconds after the rename leaves an empty file under the
/// new name there. (FAT has no journal: a cut in the instant between the
/// two fsyncs still does, with the file's clusters in no file: lost space,
/// and an entry the systemd-boot backend writes again; `docs/systemd-boot.md`,
/// "Renames on FAT".) Creates
/// the directory if it is missing. The file is readable by everyone and
/// writable by its owner (0644), whatever the umask: the login message and
/// the state files are read by users.
/// This is the one atomic-write helper of the program (the boot environment
/// has its own store in the `grub-env` crate, for FAT and fault injection).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent(path)?;
    fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    // Unique per process and per write, so that two writers never share a
    // temporary file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_synced(&tmp, bytes).and_then(|f| {
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(f)
    });
    let f = match result {
        Ok(f) => f,
        Err(e) => {
            // Leave no stray temporary file behind; the original is untouched.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    sync_dir(dir)?;
    f.sync_all()
        .with_context(|| format!("syncing {} after its rename", path.display()))
}

/// Make a renamed file's new directory entry whole on disk: fsync the file
/// itself (not only its directory), after the directory. On most file
/// systems a rename is a directory operation and the directory's fsync
/// makes it durable. Linux's vfat (the ESP) writes the new name's entry with
/// no first cluster and size 0 and marks the inode dirty; only writing the
/// inode back (its fsync, or writeback some 30 s later) puts the file's
/// first cluster and size into that entry. A power cut in between leaves
/// the new name on an empty file and the file's clusters allocated to
/// nothing (what `fsck.fat` reclaims). The directory goes first: then every
/// state a cut can leave is the old name, or the new one empty or whole;
/// the other order can leave both names on the same clusters for an
/// instant.
pub fn sync_renamed(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {} after its rename", path.display()))
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

fn write_synced(path: &Path, bytes: &[u8]) -> Result<File> {
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
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(f)
}

/// Give a file another name in its directory (`from` and `to` in `dir`),
/// replacing nothing, and make the new name durable (fsync of `dir`, then,
/// for FAT, of the file: [`sync_renamed`]). For names that carry state, as
/// systemd-boot's boot counters do.
pub fn move_in_dir(dir: &Path, from: &str, to: &str) -> Result<()> {
    let (a, b) = (dir.join(from), dir.join(to));
    if b.exists() {
        anyhow::bail!(
            "renaming {} to {}: the target exists",
            a.display(),
            b.display()
        );
    }
    fs::rename(&a, &b).with_context(|| format!("renaming {} to {}", a.display(), b.display()))?;
    sync_dir(dir)?;
    sync_renamed(&b)
}

/// fsync a directory, making renames and creations in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// How long a lock is waited for before giving up with an error naming the
/// lock and its holder.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The lock of the state of a system (under `--root`): in `/run`, which is
/// writable even when `/var` is full or read-only, in a directory of mode
/// 0700 owned by the user running the checker (root), so that no other user
/// can open the lock file, let alone hold a lock on it.
pub const LOCK_PATH: &str = "/run/health-checker/locks/state.lock";

/// The lock was held by another process for the whole wait.
#[derive(Debug, thiserror::Error)]
#[error("lock {path} is held{holder}; gave up after waiting {waited} s (another health-checker is deciding; try again when it is done)")]
pub struct LockHeld {
    /// The lock file.
    pub path: PathBuf,
    /// ` by process PID (NAME)`, when known.
    pub holder: String,
    /// Seconds waited.
    pub waited: u64,
}

thread_local! {
    /// The locks this thread holds, by path: taking one again while holding
    /// it (a record written inside a decision) shares it instead of waiting
    /// for ourselves.
    static HELD: RefCell<HashMap<PathBuf, Weak<Flock<File>>>> = RefCell::new(HashMap::new());
}

/// An exclusive `flock` on a lock file, held until dropped. Serialises the
/// read-decide-write cycles of a system's state (the boot environment,
/// `state.json`, `history.json`) between processes: the early and late
/// units, the deadline, `mark-good`, `mark-bad`. The lock file lives in a
/// directory only its owner (root) can enter; a wait is bounded.
#[derive(Debug)]
pub struct Lock {
    _file: Rc<Flock<File>>,
}

impl Lock {
    /// The lock guarding files kept in directory `dir` outside any root
    /// (tests, tools): `DIR/locks/state.lock`.
    pub fn path_for(dir: &Path) -> PathBuf {
        dir.join("locks").join("state.lock")
    }

    /// Take the lock on `path` (created if missing, with its directory,
    /// which must be private to this user), waiting at most `wait` for
    /// another holder to let go. A thread that already holds it shares it.
    pub fn acquire(path: &Path, wait: Duration) -> Result<Lock> {
        if let Some(held) = HELD.with(|h| h.borrow().get(path).and_then(Weak::upgrade)) {
            return Ok(Lock { _file: held });
        }
        let dir = parent(path)?;
        private_dir(dir)?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc_flags::O_NOFOLLOW | libc_flags::O_CLOEXEC)
            .open(path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        private_file(&file, path)?;
        let deadline = Instant::now() + wait;
        let mut file = file;
        let locked = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => break l,
                Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) if Instant::now() < deadline => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((f, Errno::EWOULDBLOCK)) => {
                    return Err(LockHeld {
                        path: path.to_owned(),
                        holder: holder(&f)
                            .map(|pid| format!(" by process {pid}{}", comm(pid)))
                            .unwrap_or_default(),
                        waited: wait.as_secs(),
                    }
                    .into());
                }
                Err((_, errno)) => {
                    return Err(errno).with_context(|| format!("locking {}", path.display()))
                }
            }
        };
        let file = Rc::new(locked);
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            h.retain(|_, w| w.strong_count() > 0);
            h.insert(path.to_owned(), Rc::downgrade(&file));
        });
        Ok(Lock { _file: file })
    }
}

mod libc_flags {
    pub const O_NOFOLLOW: i32 = nix::fcntl::OFlag::O_NOFOLLOW.bits();
    pub const O_CLOEXEC: i32 = nix::fcntl::OFlag::O_CLOEXEC.bits();
}

/// Create `dir` (and its parents) if missing and make sure it is a real
/// directory owned by this user that no one else may enter (mode 0700). A
/// directory owned by someone else is refused, never used.
fn private_dir(dir: &Path) -> Result<()> {
    if let Some(up) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(up).with_context(|| format!("creating directory {}", up.display()))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating directory {}", dir.display())),
    }
    let meta =
        fs::symlink_metadata(dir).with_context(|| format!("inspecting {}", dir.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() {
        bail!(
            "{} is not a directory; locks are not taken through it",
            dir.display()
        );
    }
    if meta.uid() != me {
        bail!(
            "lock directory {} is owned by uid {}, not uid {me}; refusing to use it",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (mode 0700)", dir.display()))?;
    }
    Ok(())
}

/// The lock file must be this user's and private to it.
fn private_file(file: &File, path: &Path) -> Result<()> {
    let meta = file
        .metadata()
        .with_context(|| format!("inspecting lock file {}", path.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "lock file {} is owned by uid {}, not uid {me}; refusing to use it",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making lock file {} private (mode 0600)", path.display()))?;
    }
    Ok(())
}

/// The process holding a `flock` on `file`, from `/proc/locks`.
fn holder(file: &File) -> Option<u32> {
    let meta = file.metadata().ok()?;
    let locks = fs::read_to_string("/proc/locks").ok()?;
    holder_in(&locks, meta.dev(), meta.ino())
}

/// Find the FLOCK entry for device `dev`, inode `ino` in `/proc/locks` text
/// (`1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`).
fn holder_in(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // A waiting entry is marked `->` and shifts the fields by one.
        let f = if f.get(1) == Some(&"->") {
            &f[1..]
        } else {
            &f[..]
        };
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

/// ` (NAME)` of a process, when it can be read.
fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| format!(" ({})", c.trim()))
        .unwrap_or_default()
}

/// The format version of a file kept outside the snapshots:
/// `"MAJOR.MINOR"` in its `format_version` field (absent: 1.0, the format
/// written before the field existed). A reader handles every minor of its
/// major and keeps what it does not know; a higher major is not interpreted.
/// See docs/design.md, "State outside the snapshots".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FormatVersion {
    pub major: u32,
    pub minor: u32,
}

impl FormatVersion {
    /// The format this version of the program reads and writes.
    pub const CURRENT: FormatVersion = if cfg!(feature = "future-state-fixture") {
        FormatVersion { major: 1, minor: 1 }
    } else {
        FormatVersion { major: 1, minor: 0 }
    };
    /// Files written before the version field existed.
    pub const UNVERSIONED: FormatVersion = FormatVersion { major: 1, minor: 0 };
    /// The name of the field.
    pub const FIELD: &'static str = "format_version";

    /// The version a JSON object declares (absent: [`Self::UNVERSIONED`]).
    pub fn of(value: &serde_json::Value) -> std::result::Result<FormatVersion, String> {
        match value.get(Self::FIELD) {
            None => Ok(Self::UNVERSIONED),
            Some(serde_json::Value::String(s)) => s.parse(),
            Some(other) => Err(format!(
                "{} is {other}, not a \"MAJOR.MINOR\" string",
                Self::FIELD
            )),
        }
    }

    /// Whether this program can interpret content of this version.
    pub fn readable(self) -> bool {
        self.major == Self::CURRENT.major
    }
}

impl std::fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for FormatVersion {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("format version {s:?} is not MAJOR.MINOR");
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        Ok(FormatVersion {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

impl Default for FormatVersion {
    fn default() -> Self {
        Self::UNVERSIONED
    }
}

impl serde::Serialize for FormatVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for FormatVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A file read by [`read_json`].
#[derive(Debug)]
pub struct Loaded<T> {
    /// The content; the type's default when the file was missing or could
    /// not be interpreted.
    pub value: T,
    /// Set when the file exists but this version cannot interpret it.
    pub unusable: Option<Unusable>,
}

/// A JSON file this version cannot interpret: not JSON, not the expected
/// shape, or a newer major format. It is left exactly as it is (never moved
/// aside, never rewritten) and reported.
#[derive(Debug, Clone)]
pub struct Unusable {
    /// The file.
    pub path: PathBuf,
    /// Why it cannot be interpreted.
    pub error: String,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cannot be interpreted by this version ({}); it is left as it is and not written",
            self.path.display(),
            self.error
        )
    }
}

/// Read a JSON file kept outside the snapshots. A missing file is the
/// default value. A file that is not JSON, declares a major format version
/// this program does not read, or does not have the expected shape is
/// reported in [`Loaded::unusable`] and left untouched; a file that cannot
/// be read at all is an error.
pub fn read_json<T: DeserializeOwned + Default>(path: &Path) -> Result<Loaded<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(Loaded {
                value: T::default(),
                unusable: None,
            })
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    match parse_json(&bytes) {
        Ok(value) => Ok(Loaded {
            value,
            unusable: None,
        }),
        Err(error) => {
            let unusable = Unusable {
                path: path.to_owned(),
                error,
            };
            tracing::warn!("{unusable}");
            Ok(Loaded {
                value: T::default(),
                unusable: Some(unusable),
            })
        }
    }
}

/// The interpretation [`read_json`] makes of a file's bytes.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let version = FormatVersion::of(&value)?;
    if !version.readable() {
        return Err(format!(
            "written in format {version}, and this version reads format {}.x only",
            FormatVersion::CURRENT.major
        ));
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
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
        let p = Lock::path_for(&dir.path().join("sub"));
        let held = Lock::acquire(&p, LOCK_WAIT).unwrap();
        // A second open file description cannot take it meanwhile.
        let f = File::options().write(true).open(&p).unwrap();
        let f = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(_) => panic!("the lock was not exclusive"),
            Err((f, errno)) => {
                assert_eq!(errno, Errno::EWOULDBLOCK);
                f
            }
        };
        // The same thread taking it again shares it instead of waiting.
        let again = Lock::acquire(&p, Duration::ZERO).unwrap();
        drop(held);
        assert!(Flock::lock(f.try_clone().unwrap(), FlockArg::LockExclusiveNonblock).is_err());
        drop(again);
        assert!(Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok());
    }

    #[test]
    fn lock_files_are_private_to_their_owner() {
        let dir = tempfile::tempdir().unwrap();
        let p = Lock::path_for(dir.path());
        let _l = Lock::acquire(&p, LOCK_WAIT).unwrap();
        let d = fs::metadata(p.parent().unwrap()).unwrap();
        assert_eq!(d.mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn an_open_lock_directory_is_made_private_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = Lock::path_for(dir.path());
        fs::create_dir(p.parent().unwrap()).unwrap();
        fs::set_permissions(p.parent().unwrap(), fs::Permissions::from_mode(0o777)).unwrap();
        fs::write(&p, b"").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        drop(Lock::acquire(&p, LOCK_WAIT).unwrap());
        assert_eq!(
            fs::metadata(p.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_lock_directory_owned_by_another_user_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root (it gives a directory to another user)");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = Lock::path_for(dir.path());
        fs::create_dir(p.parent().unwrap()).unwrap();
        std::os::unix::fs::chown(p.parent().unwrap(), Some(65534), Some(65534)).unwrap();
        let err = Lock::acquire(&p, LOCK_WAIT).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("owned by uid 65534") && msg.contains("locks"),
            "{msg}"
        );
        assert!(!p.exists(), "nothing made in it");
    }

    #[test]
    fn concurrent_atomic_writes_of_one_file_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..50 {
                        atomic_write(p, &[t; 64]).unwrap();
                    }
                });
            }
        });
        let last = fs::read(&p).unwrap();
        assert_eq!(last.len(), 64);
        assert!(
            last.iter().all(|b| *b == last[0]),
            "one writer's content, whole"
        );
    }

    #[test]
    fn a_symlinked_lock_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = Lock::path_for(dir.path());
        fs::create_dir(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &p).unwrap();
        let err = Lock::acquire(&p, LOCK_WAIT).unwrap_err();
        assert!(format!("{err:#}").contains("state.lock"), "{err:#}");
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn a_held_lock_is_waited_for_a_bounded_time_and_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = Lock::path_for(dir.path());
        drop(Lock::acquire(&p, LOCK_WAIT).unwrap());
        // Another process holds it (flock(1) from util-linux).
        let mut child = std::process::Command::new("flock")
            .arg(&p)
            .args(["sleep", "120"])
            .spawn()
            .expect("flock(1) from util-linux is needed for this test");
        // Generous bounds for a busy machine: the holder sleeps 120 s, so an
        // unbounded wait would still show as more than 60 s.
        let until = Instant::now() + Duration::from_secs(30);
        while Flock::lock(File::open(&p).unwrap(), FlockArg::LockExclusiveNonblock).is_ok() {
            assert!(Instant::now() < until, "flock(1) never took the lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        let start = Instant::now();
        let err = Lock::acquire(&p, Duration::from_secs(1)).unwrap_err();
        let waited = start.elapsed();
        child.kill().unwrap();
        child.wait().unwrap();
        let msg = format!("{err:#}");
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(60),
            "{waited:?}"
        );
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains("held by process"), "{msg}");
        assert!(msg.contains("(flock)") || msg.contains("(sleep)"), "{msg}");
    }

    #[test]
    fn proc_locks_lines_name_the_holder() {
        let dev = nix::sys::stat::makedev(8, 1);
        let text = "1: POSIX  ADVISORY  WRITE 99 08:01:77 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 4321 08:01:5678 0 EOF\n";
        assert_eq!(holder_in(text, dev, 5678), Some(1234));
        assert_eq!(holder_in(text, dev, 77), None, "POSIX locks are not ours");
        assert_eq!(holder_in(text, dev, 1), None);
    }

    #[test]
    fn missing_file_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let l: Loaded<Vec<u32>> = read_json(&dir.path().join("none.json")).unwrap();
        assert!(l.value.is_empty());
        assert!(l.unusable.is_none());
    }

    #[test]
    fn a_file_that_cannot_be_interpreted_is_left_in_place_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        for (bytes, why) in [
            (&b"[1, 2,"[..], "not JSON"),
            (b"{\"format_version\": \"2.0\"}", "format 2.0"),
            (b"{\"format_version\": 2}", "MAJOR.MINOR"),
            (b"{\"a\": 1}", "invalid type"),
        ] {
            let p = dir.path().join("h.json");
            fs::write(&p, bytes).unwrap();
            let l: Loaded<Vec<u32>> = read_json(&p).unwrap();
            let u = l.unusable.expect("reported");
            assert!(u.error.contains(why), "{u}");
            assert!(u.to_string().contains("h.json"), "{u}");
            assert_eq!(fs::read(&p).unwrap(), bytes, "left exactly as it was");
            assert_eq!(
                fs::read_dir(dir.path()).unwrap().count(),
                1,
                "nothing moved aside"
            );
        }
    }

    #[test]
    fn format_versions_parse_and_compare() {
        let v: FormatVersion = "1.7".parse().unwrap();
        assert_eq!(v, FormatVersion { major: 1, minor: 7 });
        assert!(v.readable());
        assert!(!"2.0".parse::<FormatVersion>().unwrap().readable());
        assert!("1".parse::<FormatVersion>().is_err());
        assert!("1.x".parse::<FormatVersion>().is_err());
        assert_eq!(v.to_string(), "1.7");
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"1.7\"");
        let none = serde_json::json!({});
        assert_eq!(FormatVersion::of(&none), Ok(FormatVersion::UNVERSIONED));
    }

    #[test]
    fn unreadable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("isdir.json");
        fs::create_dir(&p).unwrap();
        let err = read_json::<Vec<u32>>(&p).unwrap_err();
        assert!(format!("{err:#}").contains("isdir.json"), "{err:#}");
    }
}
