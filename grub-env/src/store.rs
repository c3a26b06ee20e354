//! The crash-safe pair of environment copies (the scheme is described in the
//! crate documentation).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::format::{Env, FormatError};
use crate::fs::{Fs, Location, RealFs};

/// Which keys carry the sequence number and the checksum, and which keys the
/// checksum covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity {
    /// Keys with this prefix are ours; the checksum covers them.
    pub prefix: String,
    /// Key holding the write sequence number.
    pub seq_key: String,
    /// Key holding the checksum.
    pub sum_key: String,
    /// Keys with the prefix that GRUB writes in place with `save_env`: left
    /// out of the checksum, since GRUB cannot update it.
    pub grub_written: Vec<String>,
}

impl Default for Integrity {
    /// health-checker's keys (see `docs/design.md`).
    fn default() -> Self {
        Integrity {
            prefix: "hc_".into(),
            seq_key: "hc_seq".into(),
            sum_key: "hc_sum".into(),
            grub_written: vec!["hc_tries".into(), "hc_fallback".into(), "hc_booted".into()],
        }
    }
}

impl Integrity {
    /// The checksum of `env`: CRC-32 over the covered `key=value\n` lines in
    /// key order, as 8 lower-case hex digits.
    pub fn checksum(&self, env: &Env) -> String {
        let mut covered: Vec<(&str, &str)> = env
            .iter()
            .filter(|(k, _)| {
                k.starts_with(&self.prefix)
                    && *k != self.sum_key
                    && !self.grub_written.iter().any(|g| g == k)
            })
            .collect();
        covered.sort_unstable();
        let mut h = crc32fast::Hasher::new();
        for (k, v) in covered {
            h.update(k.as_bytes());
            h.update(b"=");
            h.update(v.as_bytes());
            h.update(b"\n");
        }
        format!("{:08x}", h.finalize())
    }
}

/// Why one copy was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyProblem {
    #[error("{0}")]
    Format(#[from] FormatError),
    #[error("sequence number {0:?} is not a number")]
    BadSeq(String),
    #[error("checksum {found} does not match the content ({computed})")]
    BadSum { found: String, computed: String },
    #[error("has a sequence number but no checksum")]
    MissingSum,
    #[error("cannot be read: {0}")]
    Io(String),
}

/// Which copy a read came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Primary,
    Backup,
    /// Neither copy exists: a new, empty environment.
    Neither,
}

/// An environment read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub env: Env,
    pub source: Source,
    /// The highest sequence number of either copy (0 for files never
    /// written by this crate); the next write uses one more.
    pub seq: u64,
    /// What is wrong with either copy (one GRUB cannot read, stray bytes
    /// GRUB skips, a checksum that does not match, a primary older than
    /// the backup), one line each naming the file. Empty when both copies
    /// are sound. The next write, or [`Store::repair`], rewrites both.
    pub problems: Vec<String>,
    /// Whether the backup holds exactly this environment. When it does not,
    /// the next write first brings it up to date, so that the backup is a
    /// complete copy of the current state while the primary is replaced.
    pub backup_current: bool,
}

/// Errors of the store. Every one names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{location}: {problem}")]
    Copy {
        location: String,
        problem: CopyProblem,
    },
    #[error("no copy of the boot environment can be read, by GRUB or by us: {primary}: {primary_problem}; {backup}: {backup_problem}")]
    NoValidCopy {
        primary: String,
        primary_problem: String,
        backup: String,
        backup_problem: String,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Format {
        path: String,
        #[source]
        source: FormatError,
    },
    #[error("{path}: block size {found} differs from the other copy's {expected}")]
    SizeMismatch {
        path: String,
        found: usize,
        expected: usize,
    },
    /// The caller's edit refused the change.
    #[error("{0}")]
    Edit(String),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A boot environment kept as two copies: the primary (what GRUB and
/// `grub-editenv` read) and a backup.
#[derive(Debug, Clone)]
pub struct Store<F: Fs = RealFs> {
    fs: F,
    primary: Location,
    backup: Location,
    lock_path: PathBuf,
    integrity: Integrity,
}

impl Store<RealFs> {
    /// The pair for a primary file: the backup is `<file>.bak` beside it,
    /// the lock is taken on their directory.
    pub fn for_file(primary: impl Into<PathBuf>) -> Self {
        Store::with_fs(RealFs, primary)
    }
}

impl<F: Fs> Store<F> {
    /// [`Store::for_file`] over another file system (tests).
    pub fn with_fs(fs: F, primary: impl Into<PathBuf>) -> Self {
        let primary: PathBuf = primary.into();
        let mut backup = primary.clone().into_os_string();
        backup.push(".bak");
        let lock_path = match primary.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Store {
            fs,
            primary: Location::File(primary),
            backup: Location::File(backup.into()),
            lock_path,
            integrity: Integrity::default(),
        }
    }

    /// Any two locations and a lock path (for the btrfs reserved-area block,
    /// whose backup is a file).
    pub fn with_locations(fs: F, primary: Location, backup: Location, lock_path: PathBuf) -> Self {
        Store {
            fs,
            primary,
            backup,
            lock_path,
            integrity: Integrity::default(),
        }
    }

    pub fn with_integrity(mut self, integrity: Integrity) -> Self {
        self.integrity = integrity;
        self
    }

    pub fn primary(&self) -> &Location {
        &self.primary
    }

    pub fn backup(&self) -> &Location {
        &self.backup
    }

    pub fn fs(&self) -> &F {
        &self.fs
    }

    /// Read the environment GRUB reads, by the snippet's rule (see the
    /// crate documentation): the primary when GRUB loads it and it carries
    /// `hc_seq`; else the backup when GRUB loads it and it carries
    /// `hc_seq`; else whichever GRUB loads at all, the primary first, if
    /// it is a well-formed block (a damaged copy without `hc_seq` is most
    /// likely a torn copy of ours, never taken for an empty state). Each copy is
    /// read as GRUB's reader reads it ([`Env::parse_as_grub`]), so a copy
    /// with stray bytes in its padding, bytes appended or a checksum that
    /// does not match is still the one used when GRUB uses it; every such
    /// defect is listed in [`Loaded::problems`] and the next write (or
    /// [`Store::repair`]) rewrites both copies. A missing pair is an empty
    /// environment; a pair GRUB reads nothing from is an error, never an
    /// empty environment.
    pub fn load(&self) -> Result<Loaded, Error> {
        self.load_copies().map(|(loaded, _)| loaded)
    }

    /// [`Store::load`], and the raw bytes of the copies that are damaged
    /// (for [`Store::repair`] to keep).
    fn load_copies(&self) -> Result<(Loaded, DamagedCopies), Error> {
        let p = self.read_copy(&self.primary);
        let b = self.read_copy(&self.backup);
        let mut problems = Vec::new();
        let mut damaged = Vec::new();
        for (loc, copy) in [(&self.primary, &p), (&self.backup, &b)] {
            for why in copy.defects() {
                problems.push(format!("{loc}: {why}"));
            }
            if let CopyState::Refused { raw, .. } | CopyState::Read { raw, .. } = copy {
                if copy.irregular() {
                    damaged.push((loc.clone(), raw.clone()));
                }
            }
        }
        let seq_key = &self.integrity.seq_key;
        let carries_seq = |c: &CopyState| {
            matches!(c, CopyState::Read { env, .. }
                if env.get(seq_key).is_some_and(|s| !s.is_empty()))
        };
        let source = if carries_seq(&p) {
            Source::Primary
        } else if carries_seq(&b) {
            if matches!(p, CopyState::Read { .. }) {
                problems.push(format!(
                    "{}: has no {seq_key}, GRUB reads the backup",
                    self.primary
                ));
            }
            Source::Backup
        } else if matches!(p, CopyState::Read { .. }) && !p.irregular() {
            Source::Primary
        } else if !matches!(p, CopyState::Read { .. })
            && matches!(b, CopyState::Read { .. })
            && !b.irregular()
        {
            Source::Backup
        } else if matches!((&p, &b), (CopyState::Missing, CopyState::Missing)) {
            return Ok((
                Loaded {
                    env: Env::new(),
                    source: Source::Neither,
                    seq: 0,
                    problems,
                    backup_current: true,
                },
                damaged,
            ));
        } else {
            let why = |c: &CopyState| match c {
                CopyState::Missing => "missing".to_string(),
                CopyState::Refused { problem, .. } => format!("GRUB cannot read it: {problem}"),
                // A damaged copy without our sequence number: GRUB reads
                // no state from it, but it is no empty environment either
                // (most likely a torn copy of ours).
                CopyState::Read { defects, .. } if c.irregular() => format!(
                    "{}; GRUB reads no {seq_key} from it",
                    defects
                        .iter()
                        .map(defect_text)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                CopyState::Read { .. } => format!("has no {seq_key}"),
            };
            return Err(Error::NoValidCopy {
                primary: self.primary.to_string(),
                primary_problem: why(&p),
                backup: self.backup.to_string(),
                backup_problem: why(&b),
            });
        };
        // A copy lost while the other carries our sequence number.
        for (loc, copy) in [(&self.primary, &p), (&self.backup, &b)] {
            if matches!(copy, CopyState::Missing) && (carries_seq(&p) || carries_seq(&b)) {
                problems.push(format!("{loc}: missing"));
            }
        }
        let (used, other) = match source {
            Source::Backup => (&b, &p),
            _ => (&p, &b),
        };
        let (CopyState::Read { env, seq, .. }, other_seq) = (used, other.seq()) else {
            unreachable!("the copy used was read");
        };
        if let (Source::Primary, Some(bs)) = (source, other_seq) {
            if bs > seq.unwrap_or(0) {
                problems.push(format!(
                    "{}: older than the backup (sequence {} < {bs}); GRUB reads the primary",
                    self.primary,
                    seq.unwrap_or(0)
                ));
            }
        }
        let backup_current = match &b {
            CopyState::Read { env: be, .. } => {
                be == env && !b.irregular() && b.defects().is_empty()
            }
            _ => false,
        };
        Ok((
            Loaded {
                env: env.clone(),
                source,
                seq: seq.unwrap_or(0).max(other_seq.unwrap_or(0)),
                problems,
                backup_current,
            },
            damaged,
        ))
    }

    /// Rewrite both copies when either is damaged (see [`Loaded::problems`]),
    /// keeping what GRUB reads: GRUB's next `save_env` then finds a
    /// well-formed block (it cannot write into one with stray bytes in its
    /// padding). A copy whose bytes the rewrite would not reproduce (one
    /// that is not a well-formed block) is first kept beside it as
    /// `<file>.broken-<stamp>`. Returns the problems repaired; empty when
    /// there were none and nothing was written.
    pub fn repair(&self, stamp: &str) -> Result<Vec<String>, Error> {
        let _guard = self
            .fs
            .lock(&self.lock_path)
            .map_err(io_err("locking", &self.lock_path))?;
        let (loaded, damaged) = self.load_copies()?;
        if loaded.problems.is_empty() {
            return Ok(Vec::new());
        }
        for (loc, raw) in &damaged {
            self.keep_aside(loc, raw, stamp)?;
        }
        let problems = loaded.problems.clone();
        self.update_loaded(loaded, |_| Ok(()))?;
        Ok(problems)
    }

    /// The way out when GRUB reads no copy at all: keep every copy that
    /// exists as `<file>.broken-<stamp>` and write a new, empty environment
    /// (both copies). When a copy is still readable, this is
    /// [`Store::repair`] and no value is dropped. Returns what was done,
    /// one line each.
    pub fn recover(&self, stamp: &str) -> Result<Vec<String>, Error> {
        let _guard = self
            .fs
            .lock(&self.lock_path)
            .map_err(io_err("locking", &self.lock_path))?;
        let mut done = Vec::new();
        let loaded = match self.load_copies() {
            Ok((loaded, damaged)) => {
                for (loc, raw) in &damaged {
                    done.push(format!(
                        "kept {}",
                        self.keep_aside(loc, raw, stamp)?.display()
                    ));
                }
                done.extend(loaded.problems.iter().map(|p| format!("repaired {p}")));
                loaded
            }
            Err(Error::NoValidCopy { .. }) => {
                let mut seq = 0;
                for loc in [&self.primary, &self.backup] {
                    if let Some(raw) = self.fs.read(loc).ok().flatten() {
                        done.push(format!(
                            "kept {}",
                            self.keep_aside(loc, &raw, stamp)?.display()
                        ));
                    }
                    if let CopyState::Read { seq: Some(s), .. } = self.read_copy(loc) {
                        seq = seq.max(s);
                    }
                }
                done.push(format!(
                    "new empty environment in {} and {}",
                    self.primary, self.backup
                ));
                Loaded {
                    env: Env::new(),
                    source: Source::Neither,
                    seq,
                    problems: Vec::new(),
                    backup_current: false,
                }
            }
            Err(e) => return Err(e),
        };
        self.update_loaded(loaded, |_| Ok(()))?;
        Ok(done)
    }

    /// Keep the bytes of a damaged copy in a new file beside it (for a
    /// block: beside the backup file), synced. Returns its path.
    fn keep_aside(&self, loc: &Location, raw: &[u8], stamp: &str) -> Result<PathBuf, Error> {
        let base = match loc {
            Location::File(p) => p.clone(),
            Location::Block { .. } => {
                let mut p = self.backup.path().as_os_str().to_owned();
                p.push(".block");
                PathBuf::from(p)
            }
        };
        let mut aside = base.into_os_string();
        aside.push(format!(".broken-{stamp}"));
        let aside = PathBuf::from(aside);
        self.fs
            .write_new(&aside, raw)
            .map_err(io_err("keeping the damaged copy as", &aside))?;
        self.fs
            .sync_file(&aside)
            .map_err(io_err("syncing", &aside))?;
        let dir = parent_dir(&aside);
        self.fs
            .sync_dir(&dir)
            .map_err(io_err("syncing directory", &dir))?;
        Ok(aside)
    }

    /// Read, change and write the environment under the lock, so that no
    /// concurrent writer's update is lost. `edit` returns `Err(text)` to
    /// abandon the change. Returns the environment as written.
    pub fn update<T>(
        &self,
        edit: impl FnOnce(&mut Env) -> Result<T, String>,
    ) -> Result<(Env, T), Error> {
        let _guard = self
            .fs
            .lock(&self.lock_path)
            .map_err(io_err("locking", &self.lock_path))?;
        let loaded = self.load()?;
        self.update_loaded(loaded, edit)
    }

    /// [`Store::update`] with the lock held and the environment read.
    fn update_loaded<T>(
        &self,
        loaded: Loaded,
        edit: impl FnOnce(&mut Env) -> Result<T, String>,
    ) -> Result<(Env, T), Error> {
        let mut env = loaded.env.clone();
        let out = edit(&mut env).map_err(Error::Edit)?;
        if !loaded.backup_current {
            // Missing, torn or stale backup: make it a copy of the current
            // state before the primary is replaced.
            let bytes = self.bytes_for(&self.backup, &loaded.env)?;
            self.write_copy(&self.backup, &bytes)?;
        }
        self.write_locked(&mut env, loaded.seq + 1)?;
        Ok((env, out))
    }

    /// Stamp `env` with `seq` and its checksum and write both copies:
    /// primary first, then backup.
    fn write_locked(&self, env: &mut Env, seq: u64) -> Result<(), Error> {
        let int = &self.integrity;
        env.set(&int.seq_key, &seq.to_string())
            .and_then(|_| env.set(&int.sum_key, "00000000"))
            .map_err(|source| Error::Format {
                path: self.primary.to_string(),
                source,
            })?;
        let sum = int.checksum(env);
        env.set(&int.sum_key, &sum)
            .map_err(|source| Error::Format {
                path: self.primary.to_string(),
                source,
            })?;
        for loc in [&self.primary, &self.backup] {
            let bytes = self.bytes_for(loc, env)?;
            self.write_copy(loc, &bytes)?;
        }
        Ok(())
    }

    /// `env` serialised for `loc`: a raw block keeps its own size.
    fn bytes_for(&self, loc: &Location, env: &Env) -> Result<Vec<u8>, Error> {
        let format_err = |source| Error::Format {
            path: loc.to_string(),
            source,
        };
        match loc {
            Location::Block { size, .. } if *size != env.block_size() => {
                let mut sized = Env::with_block_size(*size).map_err(format_err)?;
                for (k, v) in env.iter() {
                    sized.set(k, v).map_err(format_err)?;
                }
                sized.to_bytes().map_err(format_err)
            }
            _ => env.to_bytes().map_err(format_err),
        }
    }

    /// Write one copy durably: a file through a temporary file, fsync,
    /// rename and fsync of the directory, or in place where that is safer
    /// ([`Self::in_place`]); a block in place, then fsync.
    fn write_copy(&self, loc: &Location, bytes: &[u8]) -> Result<(), Error> {
        match loc {
            Location::File(path) if self.in_place(loc, bytes)? => {
                self.fs
                    .write_at(path, 0, bytes)
                    .map_err(io_err("overwriting", path))?;
                self.fs.sync_file(path).map_err(io_err("syncing", path))?;
            }
            Location::File(path) => {
                let tmp = tmp_path(path);
                let dir = parent_dir(path);
                self.fs
                    .write_new(&tmp, bytes)
                    .map_err(io_err("writing", &tmp))?;
                self.fs.sync_file(&tmp).map_err(io_err("syncing", &tmp))?;
                self.fs
                    .rename(&tmp, path)
                    .map_err(io_err("renaming into place", path))?;
                self.fs
                    .sync_dir(&dir)
                    .map_err(io_err("syncing directory", &dir))?;
            }
            Location::Block { path, offset, .. } => {
                self.fs
                    .write_at(path, *offset, bytes)
                    .map_err(io_err("writing block in", path))?;
                self.fs.sync_file(path).map_err(io_err("syncing", path))?;
            }
        }
        Ok(())
    }

    /// Whether the file copy at `loc` is overwritten in place: only on a
    /// file system that prefers it (FAT), only over a file of exactly the
    /// new length (no cluster is allocated or freed, the directory entry
    /// keeps its size), and only when the text ends within the first
    /// 512-byte sector, so that a torn write of a later sector (padding
    /// only) cannot change what either reader sees.
    fn in_place(&self, loc: &Location, bytes: &[u8]) -> Result<bool, Error> {
        let path = loc.path();
        let dir = parent_dir(path);
        if !self
            .fs
            .prefers_in_place(&dir)
            .map_err(io_err("checking the file system of", &dir))?
        {
            return Ok(false);
        }
        let text_end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if text_end > crate::format::SECTOR {
            return Ok(false);
        }
        Ok(matches!(self.fs.read(loc), Ok(Some(old)) if old.len() == bytes.len()))
    }

    fn read_copy(&self, loc: &Location) -> CopyState {
        let raw = match self.fs.read(loc) {
            Ok(None) => return CopyState::Missing,
            Ok(Some(b)) => b,
            Err(e) => {
                return CopyState::Refused {
                    problem: CopyProblem::Io(e.to_string()),
                    raw: Vec::new(),
                }
            }
        };
        let read = match Env::parse_as_grub(&raw) {
            Ok(read) => read,
            Err(e) => {
                return CopyState::Refused {
                    problem: e.into(),
                    raw,
                }
            }
        };
        let int = &self.integrity;
        let mut defects: Vec<CopyProblem> = read.irregular.into_iter().map(Into::into).collect();
        let seq = match read.env.get(&int.seq_key) {
            None => None,
            Some(s) => match s.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    defects.push(CopyProblem::BadSeq(s.to_string()));
                    None
                }
            },
        };
        // The checksum no longer decides which copy is read (GRUB does not
        // check it): a mismatch means the copy was changed by another tool
        // or damaged, and is reported and repaired.
        match read.env.get(&int.sum_key) {
            Some(sum) => {
                let want = int.checksum(&read.env);
                if sum != want {
                    defects.push(CopyProblem::BadSum {
                        found: sum.to_string(),
                        computed: want,
                    });
                }
            }
            None if read.env.get(&int.seq_key).is_some() => defects.push(CopyProblem::MissingSum),
            None => {}
        }
        CopyState::Read {
            env: read.env,
            seq,
            defects,
            raw,
        }
    }
}

/// One defect of a copy GRUB reads, for a message.
fn defect_text(d: &CopyProblem) -> String {
    match d {
        CopyProblem::Format(f) => format!("damaged ({f})"),
        other => other.to_string(),
    }
}

/// Copies whose bytes a rewrite would not reproduce, with those bytes.
type DamagedCopies = Vec<(Location, Vec<u8>)>;

enum CopyState {
    Missing,
    /// GRUB does not read it.
    Refused {
        problem: CopyProblem,
        raw: Vec<u8>,
    },
    /// What GRUB reads, and what is wrong with the copy.
    Read {
        env: Env,
        seq: Option<u64>,
        defects: Vec<CopyProblem>,
        raw: Vec<u8>,
    },
}

impl CopyState {
    /// What is wrong with a copy that exists.
    fn defects(&self) -> Vec<String> {
        match self {
            CopyState::Missing => Vec::new(),
            CopyState::Refused { problem, .. } => vec![format!("GRUB cannot read it: {problem}")],
            CopyState::Read { defects, .. } => defects
                .iter()
                .map(|d| format!("{}; GRUB still reads it", defect_text(d)))
                .collect(),
        }
    }

    /// Whether rewriting this copy would not reproduce its bytes: it is
    /// not a well-formed block (the checksum aside).
    fn irregular(&self) -> bool {
        match self {
            CopyState::Missing => false,
            CopyState::Refused { raw, .. } => !raw.is_empty(),
            CopyState::Read { defects, .. } => {
                defects.iter().any(|d| matches!(d, CopyProblem::Format(_)))
            }
        }
    }

    fn seq(&self) -> Option<u64> {
        match self {
            CopyState::Read { seq, .. } => *seq,
            _ => None,
        }
    }
}

impl fmt::Debug for CopyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyState::Missing => f.write_str("Missing"),
            CopyState::Refused { problem, .. } => write!(f, "Refused({problem})"),
            CopyState::Read { seq, defects, .. } => {
                write!(f, "Read(seq {seq:?}, {} defects)", defects.len())
            }
        }
    }
}

/// The temporary file a copy is written to before its rename.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
