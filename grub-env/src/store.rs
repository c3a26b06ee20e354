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

    /// Check one parsed copy: its sequence number if it is valid.
    fn verify(&self, env: &Env) -> Result<u64, CopyProblem> {
        let seq = match env.get(&self.seq_key) {
            None => 0,
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| CopyProblem::BadSeq(s.to_string()))?,
        };
        if let Some(sum) = env.get(&self.sum_key) {
            let want = self.checksum(env);
            if sum != want {
                return Err(CopyProblem::BadSum {
                    found: sum.to_string(),
                    computed: want,
                });
            }
        } else if env.get(&self.seq_key).is_some() {
            return Err(CopyProblem::MissingSum);
        }
        Ok(seq)
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
    /// The sequence number of the copy used (0 for a file never written by
    /// this crate).
    pub seq: u64,
    /// Copies that were skipped and why (a torn primary, a stale checksum),
    /// for the caller to report. The next write repairs them.
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
    #[error("no valid copy of the boot environment: {primary}: {primary_problem}; {backup}: {backup_problem}")]
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

    /// Read the environment: the valid copy with the highest sequence
    /// number, the primary on a tie. A missing pair is an empty environment;
    /// a pair with no valid copy is an error, never an empty environment.
    pub fn load(&self) -> Result<Loaded, Error> {
        let p = self.read_copy(&self.primary);
        let b = self.read_copy(&self.backup);
        let backup_env = match &b {
            CopyState::Valid(env, _) => Some(env.clone()),
            _ => None,
        };
        let mut problems = Vec::new();
        let pick = match (p, b) {
            (CopyState::Missing, CopyState::Missing) => {
                return Ok(Loaded {
                    env: Env::new(),
                    source: Source::Neither,
                    seq: 0,
                    problems,
                    backup_current: true,
                })
            }
            (CopyState::Valid(pe, ps), CopyState::Valid(be, bs)) => {
                if bs > ps {
                    problems.push(format!(
                        "{}: older than the backup (sequence {ps} < {bs})",
                        self.primary
                    ));
                    (be, bs, Source::Backup)
                } else {
                    (pe, ps, Source::Primary)
                }
            }
            (CopyState::Valid(pe, ps), other) => {
                if let Some(why) = other.problem() {
                    problems.push(format!("{}: {why}", self.backup));
                }
                (pe, ps, Source::Primary)
            }
            (other, CopyState::Valid(be, bs)) => {
                problems.push(format!(
                    "{}: {}",
                    self.primary,
                    other.problem().unwrap_or_else(|| "missing".into())
                ));
                (be, bs, Source::Backup)
            }
            (p, b) => {
                return Err(Error::NoValidCopy {
                    primary: self.primary.to_string(),
                    primary_problem: p.problem().unwrap_or_else(|| "missing".into()),
                    backup: self.backup.to_string(),
                    backup_problem: b.problem().unwrap_or_else(|| "missing".into()),
                })
            }
        };
        let backup_current = backup_env.as_ref() == Some(&pick.0);
        Ok(Loaded {
            env: pick.0,
            seq: pick.1,
            source: pick.2,
            problems,
            backup_current,
        })
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
        let bytes = match self.fs.read(loc) {
            Ok(None) => return CopyState::Missing,
            Ok(Some(b)) => b,
            Err(e) => return CopyState::Invalid(CopyProblem::Io(e.to_string())),
        };
        let env = match Env::parse(&bytes) {
            Ok(env) => env,
            Err(e) => return CopyState::Invalid(e.into()),
        };
        match self.integrity.verify(&env) {
            Ok(seq) => CopyState::Valid(env, seq),
            Err(p) => CopyState::Invalid(p),
        }
    }
}

enum CopyState {
    Missing,
    Invalid(CopyProblem),
    Valid(Env, u64),
}

impl CopyState {
    fn problem(&self) -> Option<String> {
        match self {
            CopyState::Missing => None,
            CopyState::Invalid(p) => Some(p.to_string()),
            CopyState::Valid(..) => None,
        }
    }
}

impl fmt::Debug for CopyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyState::Missing => f.write_str("Missing"),
            CopyState::Invalid(p) => write!(f, "Invalid({p})"),
            CopyState::Valid(_, s) => write!(f, "Valid(seq {s})"),
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
