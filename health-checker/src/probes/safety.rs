//! Refuse plugin files that someone other than root could change: such a
//! file would let any user decide rollbacks.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a plugin file is refused, naming the file.
pub type Refusal = String;

/// Check `file` (followed if a symlink) and every directory above it, up to
/// but not including `stop_at` (the root acted on) or `/`. A file or
/// directory must be owned by root and not writable by group or others; a
/// root-owned directory with the sticky bit (such as `/tmp`) is accepted,
/// since others cannot replace what they do not own there.
pub fn check_path(file: &Path, stop_at: &Path) -> Result<(), Refusal> {
    check_one(file, false)?;
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == stop_at || d.as_os_str().is_empty() || d == Path::new("/") {
            break;
        }
        check_one(d, true)?;
        dir = d.parent();
    }
    Ok(())
}

fn check_one(path: &Path, is_dir: bool) -> Result<(), Refusal> {
    let what = if is_dir {
        "plugin directory"
    } else {
        "plugin file"
    };
    let md = std::fs::metadata(path)
        .map_err(|e| format!("refusing {what} {}: cannot inspect it: {e}", path.display()))?;
    if md.uid() != 0 {
        return Err(format!(
            "refusing {what} {}: owned by uid {}, not root",
            path.display(),
            md.uid()
        ));
    }
    let mode = md.mode() & 0o7777;
    let sticky = md.is_dir() && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(format!(
            "refusing {what} {}: writable by group or others (mode {:04o})",
            path.display(),
            mode
        ));
    }
    Ok(())
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
        let e = check_path(&f, dir.path()).unwrap_err();
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
        assert_eq!(check_path(&f, dir.path()), Ok(()));
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_path(&f, dir.path())
            .unwrap_err()
            .contains("refusing plugin directory"));
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(check_path(&f, dir.path()), Ok(()));
    }
}
