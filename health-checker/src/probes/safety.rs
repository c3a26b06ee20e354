//! Refuse files that someone other than root could change: such a file
//! would let any user decide rollbacks, or run code as root. This is the one
//! permission check of the program, for plugin manifests, probe programs,
//! stop actions, alert hooks and `wall`.
//!
//! A path is walked one component at a time from `/` without following
//! links implicitly: each directory, each symlink on the way (a link's own
//! owner, then its target, walked the same way) and the final object are
//! opened with `O_PATH | O_NOFOLLOW` and checked by descriptor. What runs is
//! the descriptor the walk ends with (see [`super::process`]), so nothing can
//! be swapped between the check and the exec.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Why a file is refused, naming the file.
pub type Refusal = String;

/// How refusals name what was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    /// The final object: "plugin file".
    pub file: &'static str,
    /// A directory on the way: "plugin directory".
    pub dir: &'static str,
}

/// Plugin manifests, probe programs and stop actions.
pub const PLUGIN: Names = Names {
    file: "plugin file",
    dir: "plugin directory",
};

/// Alert hooks.
pub const HOOK: Names = Names {
    file: "alert hook",
    dir: "alert hook directory",
};

/// Other programs run as root (`wall`).
pub const PROGRAM: Names = Names {
    file: "program",
    dir: "program directory",
};

/// Whether and how to check what is run.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// Everything below `below` (the root acted on, or `/`) must be owned by
    /// root and not writable by group or others.
    RootOnly { below: &'a Path, names: Names },
    /// Anything goes (`probes.insecure_ok`, for unprivileged tests); the
    /// program is still opened once and run by descriptor.
    Any,
}

/// More symlinks than this on one path is a loop.
const MAX_LINKS: usize = 40;

/// Check `path` (symlinks followed, each checked) and everything on the way
/// to it. Components at or above `stop_at` (the root acted on, or `/`) are
/// followed but not checked. A file or directory must be owned by root and
/// not writable by group or others; a root-owned directory with the sticky
/// bit (such as `/tmp`) is accepted, since others cannot replace what they
/// do not own there. A symlink must be owned by root.
pub fn check_path(path: &Path, stop_at: &Path, names: Names) -> Result<(), Refusal> {
    open_checked(
        path,
        Trust::RootOnly {
            below: stop_at,
            names,
        },
    )
    .map(drop)
}

/// Check a symlink itself, not what it points to (a mask to `/dev/null`):
/// the directories on the way to it, and its owner.
pub fn check_link(link: &Path, stop_at: &Path, names: Names) -> Result<(), Refusal> {
    if let Some(parent) = link.parent() {
        check_path(parent, stop_at, names)?;
    }
    let md = std::fs::symlink_metadata(link).map_err(|e| {
        format!(
            "refusing symlink {}: cannot inspect it: {e}",
            link.display()
        )
    })?;
    if md.uid() != 0 {
        return Err(format!(
            "refusing symlink {}: owned by uid {}, not root",
            link.display(),
            md.uid()
        ));
    }
    Ok(())
}

/// Open `path` with the walk described in the module documentation and
/// return an `O_PATH` descriptor of what it names. With [`Trust::Any`]
/// nothing is refused, but the path is still resolved once.
pub fn open_checked(path: &Path, trust: Trust<'_>) -> Result<File, Refusal> {
    let names = match trust {
        Trust::RootOnly { names, .. } => names,
        Trust::Any => PLUGIN,
    };
    let inspect = |at: &Path, e: std::io::Error| {
        format!(
            "refusing {} {}: cannot inspect it: {e}",
            names.file,
            shown(path, at)
        )
    };
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| inspect(path, e))?
            .join(path)
    };
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, &absolute);
    let mut cur = PathBuf::from("/");
    let mut dir = open_path(Path::new("/")).map_err(|e| inspect(&cur, e))?;
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            dir = open_at(&dir, OsStr::new("..")).map_err(|e| inspect(&cur, e))?;
            cur.pop();
            continue;
        }
        cur.push(&name);
        let fd = open_at(&dir, &name).map_err(|e| inspect(&cur, e))?;
        let md = fd.metadata().map_err(|e| inspect(&cur, e))?;
        let checked = match trust {
            Trust::RootOnly { below, .. } => !below.starts_with(&cur),
            Trust::Any => false,
        };
        if md.file_type().is_symlink() {
            if checked && md.uid() != 0 {
                return Err(format!(
                    "refusing symlink {} on the way to {} {}: owned by uid {}, not root",
                    cur.display(),
                    names.file,
                    path.display(),
                    md.uid()
                ));
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(format!(
                    "refusing {} {}: more than {MAX_LINKS} symlinks (a loop?)",
                    names.file,
                    path.display()
                ));
            }
            let target = nix::fcntl::readlinkat(Some(fd.as_raw_fd()), "")
                .map_err(|e| inspect(&cur, e.into()))?;
            cur.pop();
            let target = Path::new(&target);
            if target.is_absolute() {
                cur = PathBuf::from("/");
                dir = open_path(&cur).map_err(|e| inspect(&cur, e))?;
            }
            push_components(&mut todo, target);
            continue;
        }
        let last = todo.is_empty();
        if checked {
            let what = if last && !md.is_dir() {
                names.file
            } else {
                names.dir
            };
            check_owner_and_mode(&md, what, &shown(path, &cur))?;
        }
        if last {
            return Ok(fd);
        }
        dir = fd;
    }
    Ok(dir)
}

/// `at`, and the path being checked when `at` is not on it (a symlink led
/// there).
fn shown(given: &Path, at: &Path) -> String {
    if given.starts_with(at) {
        at.display().to_string()
    } else {
        format!("{} (for {})", at.display(), given.display())
    }
}

fn check_owner_and_mode(md: &std::fs::Metadata, what: &str, shown: &str) -> Result<(), Refusal> {
    if md.uid() != 0 {
        return Err(format!(
            "refusing {what} {shown}: owned by uid {}, not root",
            md.uid()
        ));
    }
    let mode = md.mode() & 0o7777;
    let sticky = md.is_dir() && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(format!(
            "refusing {what} {shown}: writable by group or others (mode {mode:04o})"
        ));
    }
    Ok(())
}

/// Push the components of `p` so that the first is popped first.
fn push_components(todo: &mut Vec<OsString>, p: &Path) {
    let parts: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

fn open_path(p: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_PATH | nix::libc::O_NOFOLLOW)
        .open(p)
}

/// Open `name` in the directory `dir` without following a final symlink.
/// The descriptor's `/proc` link stands for the directory itself, so no
/// path is looked up twice.
fn open_at(dir: &File, name: &OsStr) -> std::io::Result<File> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    open_path(Path::new(OsStr::from_bytes(&p)))
}

/// Open the program of `argv` for running it by descriptor, refusing it
/// unless `trust` allows it; every argument that names an existing regular
/// file (a script given to an interpreter: `["/bin/sh", "script"]`) is
/// checked the same way. A program that does not exist is an error.
pub fn open_command(argv: &[String], trust: Trust<'_>) -> Result<File, Refusal> {
    let Some(program) = argv.first() else {
        return Err("empty command".into());
    };
    let program = &find_program(program);
    let fd = open_checked(Path::new(program), trust).map_err(|e| {
        if std::fs::symlink_metadata(program).is_err() {
            // Say plainly that it is missing, with the OS's words.
            match std::fs::metadata(program) {
                Err(io) => format!("cannot run {program}: {io}"),
                Ok(_) => e,
            }
        } else {
            e
        }
    })?;
    let md = fd
        .metadata()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !md.is_file() {
        return Err(format!("cannot run {program}: not a regular file"));
    }
    check_arguments(&argv[1..], trust)?;
    Ok(fd)
}

/// Where a bare program name (`wall`) is looked up; never the caller's
/// `PATH`, which a user may have set.
pub const PROGRAM_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// `program` itself when it holds a `/`, else the first file of that name
/// in [`PROGRAM_DIRS`] (or the name unchanged, which then fails to open).
fn find_program(program: &str) -> String {
    if program.contains('/') {
        return program.to_string();
    }
    PROGRAM_DIRS
        .iter()
        .map(|d| format!("{d}/{program}"))
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| program.to_string())
}

/// Check the arguments of a command that name existing regular files.
pub fn check_arguments(args: &[String], trust: Trust<'_>) -> Result<(), Refusal> {
    if let Trust::RootOnly { .. } = trust {
        for a in args {
            let names_a_file = std::fs::metadata(a).is_ok_and(|m| {
                m.is_file() && !m.file_type().is_char_device() && !m.file_type().is_fifo()
            });
            if names_a_file {
                open_checked(Path::new(a), trust)?;
            }
        }
    }
    Ok(())
}

/// Check a command found at discovery: like [`open_command`], except that
/// a program that does not exist yet is not refused here (it is when run).
pub fn check_command(argv: &[String], trust: Trust<'_>) -> Result<(), Refusal> {
    match argv.first() {
        Some(p) if std::fs::symlink_metadata(p).is_err() => check_arguments(&argv[1..], trust),
        _ => open_command(argv, trust).map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn as_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn writable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = check_path(&f, dir.path(), PLUGIN).unwrap_err();
        if as_root() {
            assert_eq!(
                e,
                format!(
                    "refusing plugin file {}: writable by group or others (mode 0664)",
                    f.display()
                )
            );
        } else {
            assert!(e.contains("not root"), "{e}");
        }
    }

    #[test]
    fn a_writable_directory_above_is_refused() {
        if !as_root() {
            eprintln!("SKIPPED a_writable_directory_above_is_refused: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("plugins.d");
        std::fs::create_dir(&sub).unwrap();
        let f = sub.join("p.toml");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(check_path(&f, dir.path(), PLUGIN), Ok(()));
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_path(&f, dir.path(), PLUGIN)
            .unwrap_err()
            .contains("refusing plugin directory"));
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(check_path(&f, dir.path(), PLUGIN), Ok(()));
    }

    #[test]
    fn links_relative_absolute_and_dot_dot_are_followed_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("a")).unwrap();
        std::fs::write(d.join("a/real"), "x").unwrap();
        std::os::unix::fs::symlink("../a/real", d.join("a/rel")).unwrap();
        std::os::unix::fs::symlink(d.join("a/rel"), d.join("abs")).unwrap();
        let fd = open_checked(&d.join("abs"), Trust::Any).unwrap();
        let real = std::fs::metadata(d.join("a/real")).unwrap();
        let got = fd.metadata().unwrap();
        assert_eq!((got.dev(), got.ino()), (real.dev(), real.ino()));
    }

    #[test]
    fn a_symlink_loop_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let l = dir.path().join("loop");
        std::os::unix::fs::symlink(&l, &l).unwrap();
        let e = open_checked(&l, Trust::Any).unwrap_err();
        assert!(e.contains("more than 40 symlinks"), "{e}");
    }

    #[test]
    fn a_bare_name_is_found_in_the_system_directories() {
        let fd = open_command(&["sh".into()], Trust::Any).unwrap();
        let sh = std::fs::metadata("/bin/sh").unwrap();
        let got = fd.metadata().unwrap();
        assert_eq!((got.dev(), got.ino()), (sh.dev(), sh.ino()));
        let e = open_command(&["no-such-program-here".into()], Trust::Any).unwrap_err();
        assert!(e.starts_with("cannot run no-such-program-here: "), "{e}");
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let e = open_command(&["/nonexistent/probe".into()], Trust::Any).unwrap_err();
        assert!(e.starts_with("cannot run /nonexistent/probe: "), "{e}");
        assert_eq!(
            check_command(&["/nonexistent/probe".into()], Trust::Any),
            Ok(())
        );
    }
}
