//! Finding the probes of a system: plugin manifests in the vendor and admin
//! `plugins.d` directories (an admin file replaces the vendor file of the
//! same name; a symlink to `/dev/null` masks it), and the scripts of the
//! configured openSUSE-style and greenboot-style directories.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::Probes as ProbesConfig;
use crate::paths::{Root, ADMIN_DIR, VENDOR_DIR};
use crate::verdict::{Phase, Severity};

use super::cgroup::Limits;
use super::manifest::{self, Stop};
use super::probe::{Check, Kind, Probe};
use super::safety::{self, Trust};

/// A plugin masked by a symlink to `/dev/null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    pub name: String,
    /// The symlink.
    pub file: PathBuf,
    /// The vendor manifest it masks, if there is one.
    pub masks: Option<PathBuf>,
}

/// A plugin that cannot run: bad manifest, refused as insecure, duplicate
/// name, unreadable directory. It fails every phase, since nobody can tell
/// which phase it was meant for or whether it mattered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub name: String,
    pub file: PathBuf,
    /// Why, naming the file.
    pub reason: String,
}

/// Everything found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    pub probes: Vec<Probe>,
    pub masked: Vec<Masked>,
    pub broken: Vec<Broken>,
}

/// Whether `name` can name a plugin: letters, digits and `-_.@:`, not
/// starting with a dot.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c))
}

/// Names that are never plugins, scripts or hooks, as systemd skips them in
/// its `.d` directories: hidden files (editor locks such as `.#name.toml`),
/// backups (`name~`, `#name#`, `.bak`, `.old`, `.swp`) and package
/// managers' leftovers (`.dpkg-old`, `.dpkg-new`, `.dpkg-dist`, `.rpmnew`,
/// `.rpmsave`, `.ucf-dist`, ...). See `docs/plugins.md`.
pub fn ignored_name(path: &Path) -> bool {
    let Some(name) = path.file_name() else {
        return true;
    };
    let name = name.to_string_lossy();
    const SUFFIXES: [&str; 19] = [
        "~",
        ".rpmnew",
        ".rpmsave",
        ".rpmorig",
        ".dpkg-old",
        ".dpkg-new",
        ".dpkg-tmp",
        ".dpkg-dist",
        ".dpkg-bak",
        ".dpkg-backup",
        ".dpkg-remove",
        ".ucf-new",
        ".ucf-old",
        ".ucf-dist",
        ".swp",
        ".bak",
        ".old",
        ".new",
        "#",
    ];
    name.starts_with('.') || name.starts_with('#') || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The vendor and admin plugin directories under `root`.
pub fn plugin_dirs(root: &Root) -> [PathBuf; 2] {
    [
        root.join(format!("{VENDOR_DIR}/plugins.d")),
        root.join(format!("{ADMIN_DIR}/plugins.d")),
    ]
}

/// Find every probe of the system at `root`.
pub fn discover(root: &Root, cfg: &ProbesConfig) -> Discovered {
    let mut found = Discovered::default();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    plugins(root, cfg, &mut found, &mut seen);
    for dir in &cfg.legacy_dirs {
        let dir = root.join(dir);
        for script in executables(&dir, &mut found) {
            let probe = script_probe(&script, cfg, Kind::Legacy, Severity::Required);
            add(probe, root, cfg, &mut found, &mut seen);
        }
    }
    for dir in &cfg.greenboot_dirs {
        let dir = root.join(dir);
        for (sub, severity) in [
            ("check/required.d", Severity::Required),
            ("check/wanted.d", Severity::Wanted),
        ] {
            for script in executables(&dir.join(sub), &mut found) {
                let probe = script_probe(&script, cfg, Kind::Greenboot, severity);
                add(probe, root, cfg, &mut found, &mut seen);
            }
        }
    }
    found
}

/// A probe made from a bare script (openSUSE or greenboot style).
fn script_probe(script: &Path, cfg: &ProbesConfig, kind: Kind, severity: Severity) -> Probe {
    let path = script.to_string_lossy().into_owned();
    let (check, stop, description) = match kind {
        Kind::Legacy => (
            vec![path.clone(), "check".into()],
            Some(vec![path.clone(), "stop".into()]),
            "openSUSE health-checker plugin",
        ),
        _ => (vec![path.clone()], None, "greenboot check"),
    };
    Probe {
        name: file_name(script),
        description: description.into(),
        phase: Phase::Late,
        severity,
        timeout: cfg.default_timeout.get(),
        checks: vec![Check::Exec(check)],
        stop,
        after: Vec::new(),
        kind,
        origin: script.to_path_buf(),
        overrides: None,
        limits: default_limits(cfg),
    }
}

/// The limits of a probe whose manifest sets none.
pub fn default_limits(cfg: &ProbesConfig) -> Limits {
    Limits {
        tasks_max: cfg.tasks_max.0,
        memory_max: cfg.memory_max.0,
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Add a probe after the safety checks of every file it runs.
fn add(
    probe: Probe,
    root: &Root,
    cfg: &ProbesConfig,
    found: &mut Discovered,
    seen: &mut HashMap<String, PathBuf>,
) {
    if let Some(first) = seen.get(&probe.name) {
        found.broken.push(Broken {
            reason: format!(
                "{}: probe name {:?} is already used by {}",
                probe.origin.display(),
                probe.name,
                first.display()
            ),
            name: probe.name,
            file: probe.origin,
        });
        return;
    }
    seen.insert(probe.name.clone(), probe.origin.clone());
    if !cfg.insecure_ok {
        let trust = Trust::RootOnly {
            below: root.dir(),
            names: safety::PLUGIN,
        };
        let mut refused = safety::check_path(&probe.origin, root.dir(), safety::PLUGIN).err();
        let commands = probe.checks.iter().filter_map(|c| match c {
            Check::Exec(argv) => Some(argv),
            _ => None,
        });
        for argv in commands.chain(probe.stop.as_ref()) {
            if refused.is_some() {
                break;
            }
            // A program that does not exist yet fails when run, in its
            // phase; it is checked again then, by descriptor.
            refused = safety::check_command(argv, trust).err();
        }
        if let Some(reason) = refused {
            found.broken.push(Broken {
                name: probe.name,
                file: probe.origin,
                reason,
            });
            return;
        }
    }
    found.probes.push(probe);
}

/// The executable regular files of `dir`, sorted; a missing directory has
/// none, an unreadable one is reported.
fn executables(dir: &Path, found: &mut Discovered) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            found.broken.push(Broken {
                name: file_name(dir),
                file: dir.to_path_buf(),
                reason: format!("reading plugin directory {}: {e}", dir.display()),
            });
            return out;
        }
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if ignored_name(&p) {
            continue;
        }
        if std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Plugin manifests, after override and masking.
fn plugins(
    root: &Root,
    cfg: &ProbesConfig,
    found: &mut Discovered,
    seen: &mut HashMap<String, PathBuf>,
) {
    // name -> (vendor file, admin file)
    let mut by_name: BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
    for (i, dir) in plugin_dirs(root).iter().enumerate() {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                found.broken.push(Broken {
                    name: "plugins.d".into(),
                    file: dir.clone(),
                    reason: format!("reading plugin directory {}: {e}", dir.display()),
                });
                continue;
            }
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if ignored_name(&p) || p.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let Some(name) = p.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            let slot = by_name.entry(name).or_default();
            if i == 0 {
                slot.0 = Some(p);
            } else {
                slot.1 = Some(p);
            }
        }
    }
    for (name, (vendor, admin)) in by_name {
        let (file, overrides) = match (vendor, admin) {
            (v, Some(a)) => (a, v),
            (Some(v), None) => (v, None),
            (None, None) => continue,
        };
        if is_mask(&file) {
            // A mask turns a probe off: it must be root's like a manifest.
            let refused = if cfg.insecure_ok {
                None
            } else {
                safety::check_link(&file, root.dir(), safety::PLUGIN).err()
            };
            if let Some(reason) = refused {
                found.broken.push(Broken { name, file, reason });
                continue;
            }
            found.masked.push(Masked {
                name,
                file,
                masks: overrides,
            });
            continue;
        }
        if !valid_name(&name) {
            found.broken.push(Broken {
                reason: format!(
                    "{}: {name:?} is not a valid probe name (letters, digits and -_.@: only)",
                    file.display()
                ),
                name,
                file,
            });
            continue;
        }
        match plugin_probe(&name, &file, overrides, cfg) {
            Ok(probe) => add(probe, root, cfg, found, seen),
            Err(reason) => {
                // Refuse an insecure file before reporting what is in it.
                let reason = if cfg.insecure_ok {
                    reason
                } else {
                    safety::check_path(&file, root.dir(), safety::PLUGIN)
                        .err()
                        .unwrap_or(reason)
                };
                found.broken.push(Broken { name, file, reason });
            }
        }
    }
}

fn is_mask(file: &Path) -> bool {
    std::fs::read_link(file).is_ok_and(|t| t == Path::new("/dev/null"))
}

/// Read one manifest into a probe.
fn plugin_probe(
    name: &str,
    file: &Path,
    overrides: Option<PathBuf>,
    cfg: &ProbesConfig,
) -> Result<Probe, String> {
    let dir = file.parent().unwrap_or(Path::new("/"));
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("reading plugin manifest {}: {e}", file.display()))?;
    let beside_path = dir.join(name);
    let beside = std::fs::metadata(&beside_path)
        .is_ok_and(|m| m.is_file())
        .then_some(beside_path.as_path());
    let m = manifest::parse(file, &text, beside).map_err(|e| e.to_string())?;
    let resolve = |argv: &[String]| -> Vec<String> {
        let mut argv = argv.to_vec();
        if !argv[0].starts_with('/') {
            argv[0] = dir.join(&argv[0]).to_string_lossy().into_owned();
        }
        argv
    };
    let mut checks = Vec::new();
    if !m.units.is_empty() {
        checks.push(Check::Units(m.units.clone()));
    }
    if m.failed_units {
        checks.push(Check::FailedUnits {
            ignore: m.ignore_units.clone(),
        });
    }
    if m.fstab {
        checks.push(Check::Fstab);
    }
    if let Some(mf) = &m.min_free {
        checks.push(Check::MinFree(mf.clone()));
    }
    let beside_str = beside.map(|b| b.to_string_lossy().into_owned());
    if let Some(exec) = &m.exec {
        checks.push(Check::Exec(resolve(exec)));
    } else if let Some(b) = &beside_str {
        let executable = std::fs::metadata(b).is_ok_and(|md| md.permissions().mode() & 0o111 != 0);
        if !executable {
            return Err(format!(
                "{}: {b} beside the manifest is not executable",
                file.display()
            ));
        }
        checks.push(Check::Exec(vec![b.clone(), "check".into()]));
    }
    let stop = match &m.stop {
        None => None,
        Some(Stop::Exec(argv)) => Some(resolve(argv)),
        Some(Stop::Beside) => beside_str.map(|b| vec![b, "stop".into()]),
    };
    Ok(Probe {
        name: name.to_string(),
        description: m.description,
        phase: m.phase,
        severity: m.severity,
        timeout: m
            .timeout
            .map(|t| t.get())
            .unwrap_or(cfg.default_timeout.get()),
        checks,
        stop,
        after: m.after,
        kind: Kind::Plugin,
        origin: file.to_path_buf(),
        overrides,
        limits: Limits {
            tasks_max: m.tasks_max.unwrap_or(cfg.tasks_max).0,
            memory_max: m.memory_max.unwrap_or(cfg.memory_max).0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("root-mounts"));
        assert!(valid_name("db@main.v2"));
        assert!(!valid_name(""));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a/b"));
    }

    #[test]
    fn debris_is_ignored() {
        for name in [
            ".#ok.toml",
            ".hidden",
            "ok.toml~",
            "#ok.toml#",
            "ok.toml.dpkg-old",
            "ok.toml.dpkg-new",
            "ok.toml.dpkg-dist",
            "ok.toml.rpmnew",
            "ok.toml.rpmsave",
            "ok.toml.swp",
            "x.ucf-dist",
        ] {
            assert!(ignored_name(Path::new(name)), "{name}");
        }
        for name in ["ok.toml", "10-page-oncall", "notify.sh", "db@main.v2.toml"] {
            assert!(!ignored_name(Path::new(name)), "{name}");
        }
    }
}
