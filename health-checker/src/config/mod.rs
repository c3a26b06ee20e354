//! The configuration: schema, defaults and the layered, strict loading
//! described in `docs/design.md`.
//!
//! Files, each optional, later ones overriding single keys:
//! `/usr/lib/health-checker/config.toml`, `/etc/health-checker/config.toml`,
//! `/etc/health-checker/config.d/*.toml` (lexical order). Unknown keys and
//! wrong types are errors naming the file, the line and the key.

mod duration;
mod load;

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

pub use duration::{format_duration, parse_duration, Seconds};
pub use load::{config_files, load, load_files, Loaded, Origin};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub boot: Boot,
    pub bootenv: BootEnv,
    pub bootloader: Bootloader,
    pub probes: Probes,
    pub degraded: Degraded,
    pub metrics: Metrics,
}

/// `[boot]`: trials, retries, the deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Boot {
    /// Attempts GRUB gives a trial (1 to 9: GRUB counts with one digit).
    #[serde(deserialize_with = "tries")]
    pub tries: u8,
    /// Reboots of a failing known-good snapshot before degraded mode.
    pub good_failure_reboots: u32,
    /// No verdict this long after boot: the boot fails.
    pub deadline: Seconds,
    /// Do everything except the reboot itself.
    pub no_reboot: bool,
    /// Act when an admin picked a snapshot in the GRUB menu.
    pub act_on_manual_boot: bool,
}

impl Default for Boot {
    fn default() -> Self {
        Boot {
            tries: 3,
            good_failure_reboots: 1,
            deadline: Seconds::secs(600),
            no_reboot: false,
            act_on_manual_boot: false,
        }
    }
}

/// Where the boot environment lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Location {
    /// Detect: the file if its directory exists, else the btrfs env block.
    #[default]
    Auto,
    /// A `grubenv` file GRUB can write (ESP, ext2/3/4 or FAT `/boot`).
    File,
    /// The raw block in the btrfs reserved area (patched GRUBs).
    EnvBlock,
}

/// `[bootenv]`: where the GRUB environment is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootEnv {
    pub location: Location,
    /// The `grubenv` file (for `file`, and `auto`).
    pub path: PathBuf,
    /// The btrfs device for `env-block`; empty: the root's.
    pub device: String,
}

impl Default for BootEnv {
    fn default() -> Self {
        BootEnv {
            location: Location::Auto,
            path: PathBuf::from(crate::paths::DEFAULT_GRUBENV),
            device: String::new(),
        }
    }
}

/// Which boot loader protects the trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// systemd-boot when the loader says so (EFI variable `LoaderInfo`),
    /// GRUB otherwise.
    #[default]
    Auto,
    Grub,
    SystemdBoot,
}

/// `[bootloader]`: the boot loader backend (docs/systemd-boot.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bootloader {
    pub backend: Backend,
    /// systemd-boot: where the ESP is mounted; empty: the first of
    /// /boot/efi, /efi, /boot holding `loader/`.
    pub esp: PathBuf,
    /// systemd-boot: snapshots that keep an entry (at least 2: the
    /// known-good and the trial).
    #[serde(deserialize_with = "at_least_two")]
    pub max_entries: usize,
    /// systemd-boot: kernel options besides `root=` and `rootflags=`;
    /// empty: the running kernel's.
    pub options: String,
}

impl Default for Bootloader {
    fn default() -> Self {
        Bootloader {
            backend: Backend::Auto,
            esp: PathBuf::new(),
            max_entries: 5,
            options: String::new(),
        }
    }
}

/// `[probes]`: how probes run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Probes {
    /// Probes of one phase running at once (at least 1).
    #[serde(deserialize_with = "at_least_one")]
    pub parallel: usize,
    /// Timeout of a probe whose manifest gives none.
    pub default_timeout: Seconds,
    /// After SIGTERM on timeout, how long before SIGKILL.
    pub kill_grace: Seconds,
    /// Bytes of output kept per probe.
    pub output_limit: usize,
    /// openSUSE health-checker plugin directories.
    pub legacy_dirs: Vec<PathBuf>,
    /// greenboot roots (with `check/required.d`, `check/wanted.d`).
    pub greenboot_dirs: Vec<PathBuf>,
    /// Tests only: accept plugins not owned by root or writable by others.
    pub insecure_ok: bool,
}

impl Default for Probes {
    fn default() -> Self {
        Probes {
            parallel: 4,
            default_timeout: Seconds::secs(60),
            kill_grace: Seconds::secs(5),
            output_limit: 65536,
            legacy_dirs: Vec::new(),
            greenboot_dirs: Vec::new(),
            insecure_ok: false,
        }
    }
}

/// `[degraded]`: what degraded mode does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Degraded {
    /// systemd units to stop.
    pub stop_services: Vec<String>,
    /// Leave a login message.
    pub motd: bool,
    /// Broadcast with `wall`.
    pub wall: bool,
    /// Directory of alert hooks (executables given the verdict as JSON).
    pub alert_dir: PathBuf,
    /// How long an alert hook may run.
    pub alert_timeout: Seconds,
    /// How long to wait for `stop_services` to be stopped.
    pub stop_timeout: Seconds,
}

impl Default for Degraded {
    fn default() -> Self {
        Degraded {
            stop_services: Vec::new(),
            motd: true,
            wall: true,
            alert_dir: PathBuf::from("/etc/health-checker/alert.d"),
            alert_timeout: Seconds::secs(30),
            stop_timeout: Seconds::secs(90),
        }
    }
}

/// `[metrics]`: Prometheus metrics for node_exporter's textfile collector
/// (docs/metrics.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    /// Where `health_checker.prom` is written; off when the directory does
    /// not exist (or the value is empty).
    pub textfile_dir: PathBuf,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            textfile_dir: PathBuf::from("/var/lib/prometheus/node-exporter"),
        }
    }
}

fn tries<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let n = u64::deserialize(d)?;
    match u8::try_from(n) {
        Ok(n @ 1..=9) => Ok(n),
        _ => Err(serde::de::Error::custom(format!(
            "{n} is out of range: GRUB counts attempts with one digit, 1 to 9"
        ))),
    }
}

/// A count of at least `MIN` (`why`: what the minimum is for).
fn at_least<'de, D: Deserializer<'de>>(d: D, min: usize, why: &str) -> Result<usize, D::Error> {
    let n = u64::deserialize(d)?;
    match usize::try_from(n) {
        Ok(n) if n >= min => Ok(n),
        _ => Err(serde::de::Error::custom(format!(
            "{n} is out of range: at least {min}{why}"
        ))),
    }
}

fn at_least_two<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    at_least(d, 2, " (the known-good and the trial)")
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    at_least(d, 1, "")
}

/// What the `plugin_inputs` fuzz target checks of any text an admin, a
/// vendor or the system wrote: the configuration (one file, strictly, as
/// each file is checked when loaded), a plugin manifest, fstab, mountinfo
/// and a duration are each accepted or rejected with an error, never a
/// panic. Its seed corpus runs in `cargo test`.
pub fn fuzz_text_inputs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::toml_error::parse::<Config>(std::path::Path::new("/fuzz/config.toml"), text);
    let _ = crate::probes::manifest::parse(std::path::Path::new("/fuzz/p.toml"), text, None);
    let _ = crate::probes::builtin::parse_fstab(text);
    let _ = crate::snapshots::mountinfo::parse(text);
    let _ = parse_duration(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The shipped, fully commented configuration is exactly the defaults.
    #[test]
    fn shipped_config_equals_builtin_defaults() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/config.toml");
        let text = std::fs::read_to_string(&file).expect("reading config/config.toml");
        let parsed: Config = crate::toml_error::parse(&file, &text).expect("parsing");
        assert_eq!(parsed, Config::default());
        // Every option is present (uncommented) so the file documents all.
        let table: toml::Table = text.parse().unwrap();
        let shipped = toml::Value::Table(table);
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let keys = |v: &toml::Value| -> Vec<String> {
            let mut out = Vec::new();
            for (s, t) in v.as_table().unwrap() {
                for k in t.as_table().unwrap().keys() {
                    out.push(format!("{s}.{k}"));
                }
            }
            out.sort();
            out
        };
        assert_eq!(keys(&shipped), keys(&defaults));
    }

    #[test]
    fn range_checks_name_the_key() {
        let e = crate::toml_error::parse::<Config>(Path::new("/c.toml"), "[boot]\ntries = 10\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/c.toml:2: key `boot.tries`: 10 is out of range: GRUB counts attempts with one digit, 1 to 9"
        );
        let e =
            crate::toml_error::parse::<Config>(Path::new("/c.toml"), "[probes]\nparallel = 0\n")
                .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("probes.parallel"));
    }
}
