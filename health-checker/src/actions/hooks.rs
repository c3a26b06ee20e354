//! Alert hooks: every executable in the alert directory
//! (`/etc/health-checker/alert.d/` by default) runs, in name order, with
//! the alert as JSON on standard input (the versioned document of
//! docs/alerts.md) and `HC_ALERT` (the kind) and `HC_ROOT` in its
//! environment. Each has the alert time limit. `examples/alert.d/` holds
//! hooks that post the alert to a webhook and to a syslog server.
//!
//! The rules are those of plugins, checked by the same code
//! (`probes::safety`): a hook, the directory, or anything on the way to
//! them (symlinks included) that is not owned by root or is writable by
//! group or others is refused (it would let another user run code as root),
//! with a message naming the file; the hook runs from the descriptor that
//! was checked, under the probes' supervisor. The names plugin directories
//! skip (hidden files, backups, package managers' leftovers), non-executable
//! files and symlinks to `/dev/null` (the way to mask a vendor hook) are not
//! run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::wall::OUTPUT_LIMIT;
use crate::paths::Root;
use crate::probes::discovery::ignored_name;
use crate::probes::process::{self, RunSpec};
use crate::probes::safety::{self, Trust};

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
    match std::fs::metadata(&dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!("no alert hooks: {} does not exist", dir.display());
            return Ok(HookReport::default());
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    safety::check_path(&dir, root.dir(), safety::HOOK).map_err(anyhow::Error::msg)?;

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
        match prepare(root, &path) {
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

/// Whether `path` is a hook to run: `Ok(false)` for what is skipped (masked,
/// not a file, not executable), an error for a hook refused as insecure.
fn prepare(root: &Root, path: &Path) -> anyhow::Result<bool> {
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
    safety::check_path(path, root.dir(), safety::HOOK).map_err(anyhow::Error::msg)?;
    Ok(true)
}

fn run_one(
    root: &Root,
    path: &Path,
    kind: &str,
    json: &[u8],
    timeout: Duration,
) -> anyhow::Result<()> {
    let what = format!("alert hook {}", path.display());
    let argv = [path.to_string_lossy().into_owned()];
    let env = [
        ("HC_ALERT".to_string(), kind.to_string()),
        (
            "HC_ROOT".to_string(),
            root.dir().to_string_lossy().into_owned(),
        ),
    ];
    let done = process::run(&RunSpec {
        argv: &argv,
        env: &env,
        timeout,
        kill_grace: process::KILL_GRACE,
        output_limit: OUTPUT_LIMIT,
        input: Some(json),
        trust: Trust::RootOnly {
            below: root.dir(),
            names: safety::HOOK,
        },
        what: &format!(
            "hook-{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        ),
        limits: crate::probes::cgroup::HELPER_LIMITS,
    });
    for line in done.output.lines() {
        tracing::info!(HOOK = %path.display(), "{line}");
    }
    done.success(&what)
}
