//! Everything `doctor` looks at, read from the system at a root: gathered
//! once, then judged by the pure checks.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use grub_env::Source;

use crate::commands::system::{LoadedConfig, System};
use crate::config::{self, Config};
use crate::engine::BootState;
use crate::paths::Root;
use crate::probes::{discovery, safety};
use crate::snapshots::{mountinfo, SnapshotRef, Snapshots};
use crate::systemd::Bus;

/// The checker's units that must be enabled (those with an `[Install]`
/// section; the D-Bus service is started by the bus).
pub const UNITS: [&str; 4] = [
    "health-checker-early.service",
    "health-checker-late.service",
    "health-checker-deadline.service",
    "health-checker-arm-on-shutdown.service",
];

/// Enabled besides [`UNITS`] with the systemd-boot backend: the unit that
/// keeps the entries in step after each boot.
pub const SDBOOT_UNITS: [&str; 1] = ["health-checker-boot-entries.service"];

/// Where generated GRUB configuration is.
pub const GRUB_CFG: &str = "/boot/grub/grub.cfg";

/// The boot environment as read.
#[derive(Debug, Clone)]
pub enum EnvFact {
    /// Neither copy exists.
    Missing,
    /// It exists but cannot be read or used.
    Unreadable(String),
    Present(BootState),
}

/// Where the checker's environment is, as GRUB would have to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvPlace {
    /// A file: its path inside its file system (`None` when no mount holds
    /// it), and the UUIDs `/dev/disk/by-uuid` gives that file system (empty:
    /// none known).
    File {
        rel_path: Option<String>,
        fs_uuids: Vec<String>,
    },
    /// The btrfs reserved block.
    EnvBlock,
}

/// One unit and how it is enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFact {
    pub name: String,
    /// Its unit file exists.
    pub found: bool,
    /// `/etc/systemd/system/NAME` is a link to `/dev/null`.
    pub masked: bool,
    /// The links its `[Install]` section asks for that do not exist
    /// (`multi-user.target.wants/NAME`, ...).
    pub missing_links: Vec<String>,
}

/// Everything the checks judge.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Why the configuration cannot be read (the defaults are used then).
    pub config_error: Option<String>,
    pub booted: Result<SnapshotRef, String>,
    pub default: Result<SnapshotRef, String>,
    /// The configured environment, as the running system names it.
    pub env_path: String,
    pub env: EnvFact,
    /// Whether the known-good snapshot still exists; `None`: unknown.
    pub known_good_exists: Option<bool>,
    pub env_place: EnvPlace,
    pub grub_cfg_path: String,
    /// `grub.cfg`'s text; `Ok(None)` when it does not exist.
    pub grub_cfg: Result<Option<String>, String>,
    pub units: Vec<UnitFact>,
    /// This boot's kernel command line (`/proc/cmdline`).
    pub cmdline: Option<String>,
    /// `/etc/default/grub`'s text.
    pub default_grub: Option<String>,
    /// Hardware watchdogs found.
    pub watchdogs: Vec<String>,
    /// `RuntimeWatchdogSec` and the file that sets it last.
    pub runtime_watchdog: Option<(String, String)>,
    /// Unsafe plugin directories and plugins that cannot run.
    pub plugin_problems: Vec<String>,
    /// With the systemd-boot backend: its entries as read (or why not).
    pub systemd_boot: Option<Result<crate::bootloader::sdboot::LoaderView, String>>,
}

/// Read everything from the system at `root`.
pub fn gather(root: &Root) -> Facts {
    let loaded = LoadedConfig::load(root);
    let config_error = loaded.error.clone();
    let config = loaded.config;
    let mut systemd_boot = None;
    let (env_path, env, known_good_exists, booted, default, env_place) =
        match System::open(root, config.clone(), Bus::System, true) {
            Ok(sys) => {
                systemd_boot = sys
                    .env
                    .sdboot()
                    .map(|sd| sd.view().map_err(|e| format!("{e:#}")));
                let env = read_env(&sys);
                let good_exists = match &env {
                    EnvFact::Present(BootState { good: Some(g), .. }) => {
                        match sys.snapshots.lookup(&g.path) {
                            Ok(found) => Some(found.is_some_and(|f| f.id == g.id)),
                            Err(_) => None,
                        }
                    }
                    _ => None,
                };
                (
                    sys.env.inner().primary().to_string(),
                    env,
                    good_exists,
                    sys.booted().map_err(|e| crate::exit::chain(&e)),
                    sys.snapshots
                        .default_subvolume()
                        .map_err(|e| format!("{e:#}")),
                    env_place(root, &config),
                )
            }
            Err(e) => {
                let msg = crate::exit::chain(&e);
                (
                    root.join(&config.bootenv.path).display().to_string(),
                    EnvFact::Unreadable(msg.clone()),
                    None,
                    Err(msg.clone()),
                    Err(msg),
                    env_place(root, &config),
                )
            }
        };
    let grub_cfg = match std::fs::read_to_string(root.join(GRUB_CFG)) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    Facts {
        config_error,
        booted,
        default,
        env_path,
        env,
        known_good_exists,
        env_place,
        grub_cfg_path: root.join(GRUB_CFG).display().to_string(),
        grub_cfg,
        units: UNITS
            .iter()
            .chain(
                systemd_boot
                    .is_some()
                    .then_some(&SDBOOT_UNITS)
                    .into_iter()
                    .flatten(),
            )
            .map(|u| unit_fact(root, u))
            .collect(),
        cmdline: std::fs::read_to_string(root.join("/proc/cmdline")).ok(),
        default_grub: std::fs::read_to_string(root.join("/etc/default/grub")).ok(),
        watchdogs: watchdogs(root),
        runtime_watchdog: runtime_watchdog(root),
        plugin_problems: plugin_problems(root, &config),
        systemd_boot,
    }
}

fn read_env(sys: &System) -> EnvFact {
    match sys.env.inner().load() {
        Ok(l) if l.source == Source::Neither => EnvFact::Missing,
        Ok(l) => match BootState::from_keys(|k| l.env.get(k).map(str::to_owned)) {
            Ok(s) => EnvFact::Present(s),
            Err(e) => EnvFact::Unreadable(e.to_string()),
        },
        Err(e) => EnvFact::Unreadable(e.to_string()),
    }
}

/// Where the configured environment is inside its file system.
fn env_place(root: &Root, config: &Config) -> EnvPlace {
    if config.bootenv.location == config::Location::EnvBlock {
        return EnvPlace::EnvBlock;
    }
    let file = root.join(&config.bootenv.path);
    let Some(dir) = file.parent().and_then(|d| d.canonicalize().ok()) else {
        return EnvPlace::File {
            rel_path: None,
            fs_uuids: Vec::new(),
        };
    };
    let mounts = mountinfo::read().unwrap_or_default();
    let Some(m) = mountinfo::mount_of(&mounts, &dir) else {
        return EnvPlace::File {
            rel_path: None,
            fs_uuids: Vec::new(),
        };
    };
    let inside = dir.strip_prefix(&m.mount_point).unwrap_or(&dir);
    let mut rel = PathBuf::from(&m.root);
    rel.push(inside);
    if let Some(name) = file.file_name() {
        rel.push(name);
    }
    EnvPlace::File {
        rel_path: Some(rel.display().to_string()),
        fs_uuids: uuids_of(&m.dev),
    }
}

/// The file system UUIDs `/dev/disk/by-uuid` names for device `major:minor`.
fn uuids_of(dev: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/dev/disk/by-uuid") else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter(|e| {
            std::fs::metadata(e.path()).is_ok_and(|m| {
                m.file_type().is_block_device() && {
                    let rdev = m.rdev();
                    format!(
                        "{}:{}",
                        nix::sys::stat::major(rdev),
                        nix::sys::stat::minor(rdev)
                    ) == dev
                }
            })
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

fn unit_fact(root: &Root, name: &str) -> UnitFact {
    let etc = root.join("/etc/systemd/system");
    let masked = std::fs::read_link(etc.join(name)).is_ok_and(|t| t == Path::new("/dev/null"));
    let text = UNIT_DIRS
        .iter()
        .map(|d| root.join(d).join(name))
        .find_map(|p| std::fs::read_to_string(p).ok());
    let missing_links = text
        .as_deref()
        .map(install_links)
        .unwrap_or_default()
        .into_iter()
        .map(|l| format!("{l}/{name}"))
        .filter(|l| std::fs::symlink_metadata(etc.join(l)).is_err())
        .collect();
    UnitFact {
        name: name.to_owned(),
        found: text.is_some(),
        masked,
        missing_links,
    }
}

/// The `.wants`/`.requires` directories a unit's `[Install]` section asks
/// for (`WantedBy=`, `RequiredBy=`).
pub fn install_links(unit: &str) -> Vec<String> {
    let mut section = "";
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[Install]" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let suffix = match key.trim() {
            "WantedBy" => "wants",
            "RequiredBy" => "requires",
            _ => continue,
        };
        out.extend(value.split_whitespace().map(|t| format!("{t}.{suffix}")));
    }
    out
}

fn watchdogs(root: &Root) -> Vec<String> {
    let mut out = Vec::new();
    let dev = root.join("/dev/watchdog0");
    if dev.exists() {
        out.push(dev.display().to_string());
    }
    if let Ok(entries) = std::fs::read_dir(root.join("/sys/class/watchdog")) {
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.path().display().to_string())
            .collect();
        names.sort();
        out.extend(names);
    }
    out
}

/// `RuntimeWatchdogSec` as systemd would read it: system.conf, then the
/// drop-ins of every `system.conf.d` in lexical order; the last one wins.
fn runtime_watchdog(root: &Root) -> Option<(String, String)> {
    let mut files = vec![root.join("/etc/systemd/system.conf")];
    let mut dropins: Vec<(std::ffi::OsString, PathBuf)> = Vec::new();
    // Lowest precedence first: a drop-in of the same name in a later
    // directory replaces an earlier one.
    for d in [
        "/usr/lib/systemd/system.conf.d",
        "/lib/systemd/system.conf.d",
        "/run/systemd/system.conf.d",
        "/etc/systemd/system.conf.d",
    ] {
        if let Ok(entries) = std::fs::read_dir(root.join(d)) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".conf") {
                    dropins.retain(|(n, _)| n != &e.file_name());
                    dropins.push((e.file_name(), e.path()));
                }
            }
        }
    }
    dropins.sort();
    files.extend(dropins.into_iter().map(|(_, p)| p));
    let mut found = None;
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("RuntimeWatchdogSec=") {
                found = Some((f.display().to_string(), v.trim().to_owned()));
            }
        }
    }
    found
}

/// Plugin directories that anyone but root could change, and plugins that
/// cannot run (refused as unsafe, broken manifests), as the check would see
/// them.
fn plugin_problems(root: &Root, config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for dir in discovery::plugin_dirs(root) {
        if dir.exists() {
            if let Err(refusal) = safety::check_path(&dir, root.dir(), safety::PLUGIN) {
                out.push(refusal);
            }
        }
    }
    for b in discovery::discover(root, &config.probes).broken {
        if !out.contains(&b.reason) {
            out.push(b.reason);
        }
    }
    out
}
