//! Alert hooks: every executable in the alert directory
//! (`/etc/health-checker/alert.d/` by default) runs, in name order, with
//! the alert as JSON on standard input and `HC_ALERT` (the kind) and
//! `HC_ROOT` in its environment. Each has the alert time limit.
//!
//! The rules are those of plugins: a hook, or the directory, that is not
//! owned by root or is writable by group or others is refused (it would let
//! another user run code as root), with a message naming the file. Files
//! whose names start with `.` or end in `~`, package managers' leftovers
//! (`.dpkg-old`, `.rpmnew`, ...), non-executable files and symlinks to
//! `/dev/null` (the way to mask a vendor hook) are not run.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use super::run;
use crate::paths::Root;

/// The result of running the hooks: one entry per hook that ran or was
/// refused, and an error for the directory itself when it could not be used.
#[derive(Debug, Default)]
pub struct HookReport {
    /// `(hook path, outcome)` in the order they ran.
    pub hooks: Vec<(PathBuf, anyhow::Result<()>)>,
}

/// Run every hook of `dir` (as seen inside the system, looked up under
/// `root`). A missing directory means no hooks. An error means the directory
/// could not be used at all (then no hook ran).
pub fn run_all(
    root: &Root,
    dir: &Path,
    kind: &str,
    json: &[u8],
    timeout: Duration,
) -> anyhow::Result<HookReport> {
    let dir = root.join(dir);
    let meta = match std::fs::metadata(&dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!("no alert hooks: {} does not exist", dir.display());
            return Ok(HookReport::default());
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    check_secure(&dir, &meta, "alert hook directory")?;

    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort();

    let mut report = HookReport::default();
    for path in entries {
        if ignored_name(&path) {
            continue;
        }
        match prepare(&path) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!(HOOK = %path.display(), "{e:#}");
                report.hooks.push((path, Err(e)));
                continue;
            }
        }
        let outcome = run_one(root, &path, kind, json, timeout);
        match &outcome {
            Ok(()) => tracing::info!(HOOK = %path.display(), "alert hook ran"),
            Err(e) => tracing::error!(HOOK = %path.display(), "{e:#}"),
        }
        report.hooks.push((path, outcome));
    }
    Ok(report)
}

/// Names that are never hooks: hidden files, backups, package leftovers.
fn ignored_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.starts_with('.')
        || name.ends_with('~')
        || [".dpkg-", ".rpmnew", ".rpmsave", ".rpmorig", ".ucf-"]
            .iter()
            .any(|s| name.contains(s))
}

/// Whether `path` is a hook to run: `Ok(false)` for what is skipped (masked,
/// not a file, not executable), an error for a hook refused as insecure.
fn prepare(path: &Path) -> anyhow::Result<bool> {
    let link =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if link.file_type().is_symlink() {
        let target =
            std::fs::read_link(path).with_context(|| format!("reading {}", path.display()))?;
        if target == Path::new("/dev/null") {
            tracing::info!("alert hook {} is masked", path.display());
            return Ok(false);
        }
    }
    let meta = std::fs::metadata(path)
        .with_context(|| format!("alert hook {}: cannot read it", path.display()))?;
    if !meta.is_file() {
        tracing::debug!("{} is not a file; not an alert hook", path.display());
        return Ok(false);
    }
    if meta.permissions().mode() & 0o111 == 0 {
        tracing::info!("{} is not executable; not an alert hook", path.display());
        return Ok(false);
    }
    check_secure(path, &meta, "alert hook")?;
    Ok(true)
}

/// Refuse what root does not own or others may write.
fn check_secure(path: &Path, meta: &std::fs::Metadata, what: &str) -> anyhow::Result<()> {
    if meta.uid() != 0 {
        bail!(
            "refusing {what} {}: owned by uid {}, not root",
            path.display(),
            meta.uid()
        );
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        bail!(
            "refusing {what} {}: writable by group or others (mode {:04o})",
            path.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

fn run_one(
    root: &Root,
    path: &Path,
    kind: &str,
    json: &[u8],
    timeout: Duration,
) -> anyhow::Result<()> {
    let what = format!("alert hook {}", path.display());
    let mut cmd = Command::new(path);
    cmd.env("HC_ALERT", kind).env("HC_ROOT", root.dir());
    let done = run::run(&mut cmd, json, timeout, &what)?.check(&what)?;
    for line in done.stdout.lines().chain(done.stderr.lines()) {
        tracing::info!(HOOK = %path.display(), "{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_and_hidden_files_are_not_hooks() {
        for name in [
            ".hidden",
            "mail~",
            "mail.dpkg-old",
            "mail.rpmnew",
            "x.ucf-dist",
        ] {
            assert!(ignored_name(Path::new(name)), "{name}");
        }
        for name in ["mail", "10-page-oncall", "notify.sh"] {
            assert!(!ignored_name(Path::new(name)), "{name}");
        }
    }
}
