//! Plugin manifests: `NAME.toml` in a `plugins.d` directory. The reference
//! for vendors is `docs/plugins.md`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::config::{Limit, Seconds};
use crate::toml_error::{self, TomlError};
use crate::verdict::{Phase, Severity};

/// A plugin manifest as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// One line for people: what this probe checks.
    pub description: String,
    /// `early` or `late`.
    pub phase: Phase,
    /// `required` (a failure fails the boot) or `wanted` (reported only).
    pub severity: Severity,
    /// How long the probe may run; default: `probes.default_timeout`.
    #[serde(default)]
    pub timeout: Option<Seconds>,
    /// The command to run, as an argument list. A relative program is
    /// resolved against the manifest's directory. Without `exec`, an
    /// executable `NAME` beside the manifest is run as `NAME check`.
    #[serde(default)]
    pub exec: Option<Vec<String>>,
    /// The degraded-mode stop action: an argument list, or `true` to run the
    /// executable beside the manifest as `NAME stop`.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Probes of the same phase this one runs after (ordering only).
    #[serde(default)]
    pub after: Vec<String>,
    /// systemd units that must be active.
    #[serde(default)]
    pub units: Vec<String>,
    /// Fail if any systemd unit is in the failed state.
    #[serde(default)]
    pub failed_units: bool,
    /// Units (glob patterns with `*` and `?`) that `failed_units` ignores.
    #[serde(default)]
    pub ignore_units: Vec<String>,
    /// Every mount in `/etc/fstab` (except `noauto`, `nofail`, swap) must be
    /// mounted, btrfs subvolumes included.
    #[serde(default)]
    pub fstab: bool,
    /// Minimum free space on a filesystem.
    #[serde(default)]
    pub min_free: Option<MinFree>,
    /// Tasks the probe may have at once (`pids.max`); default:
    /// `probes.tasks_max`.
    #[serde(default)]
    pub tasks_max: Option<Limit>,
    /// Memory the probe may use (`memory.max`); default:
    /// `probes.memory_max`.
    #[serde(default)]
    pub memory_max: Option<Limit>,
}

/// `stop = true` or `stop = ["/usr/libexec/foo", "--stop"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Run the executable beside the manifest as `NAME stop`.
    Beside,
    /// Run this command.
    Exec(Vec<String>),
}

/// `min_free = { path = "/var", bytes = 104857600 }` or
/// `min_free = { path = "/var", percent = 5 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinFree {
    /// A path on the filesystem to check (inside the root acted on).
    pub path: PathBuf,
    /// Bytes that must be available to unprivileged users.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Percentage of the filesystem's size that must be available.
    #[serde(default)]
    pub percent: Option<u8>,
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Stop;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or an argument list")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Stop, E> {
                if v {
                    Ok(Stop::Beside)
                } else {
                    Err(E::custom("stop = false means nothing: leave it out"))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Stop, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(Stop::Exec(argv))
            }
        }
        d.deserialize_any(V)
    }
}

impl Manifest {
    /// Whether any built-in check is asked for.
    pub fn has_builtins(&self) -> bool {
        !self.units.is_empty() || self.failed_units || self.fstab || self.min_free.is_some()
    }
}

/// Read and check the manifest at `file`. `beside` is the executable beside
/// it, if there is one. The checks that span several keys are reported
/// against the file with the key concerned.
pub fn parse(file: &Path, text: &str, beside: Option<&Path>) -> Result<Manifest, TomlError> {
    let m: Manifest = toml_error::parse(file, text)?;
    let bad = |key: &str, message: &str| {
        let line = find_key_line(text, key);
        TomlError {
            file: file.to_path_buf(),
            line,
            key: Some(key.to_string()),
            message: message.to_string(),
        }
    };
    if m.description.trim().is_empty() {
        return Err(bad("description", "must not be empty"));
    }
    if let Some(exec) = &m.exec {
        if exec.is_empty() || exec[0].is_empty() {
            return Err(bad("exec", "must name a program"));
        }
    }
    match &m.stop {
        Some(Stop::Exec(argv)) if argv.is_empty() || argv[0].is_empty() => {
            return Err(bad("stop", "must name a program"));
        }
        Some(Stop::Beside) if m.exec.is_some() || beside.is_none() => {
            return Err(bad(
                "stop",
                "stop = true needs an executable beside the manifest and no exec; give stop as an argument list",
            ));
        }
        _ => {}
    }
    if !m.ignore_units.is_empty() && !m.failed_units {
        return Err(bad(
            "ignore_units",
            "only means something with failed_units = true",
        ));
    }
    if let Some(mf) = &m.min_free {
        match (mf.bytes, mf.percent) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(bad("min_free", "give exactly one of bytes or percent"))
            }
            (None, Some(p)) if p > 100 => return Err(bad("min_free", "percent must be 0 to 100")),
            _ => {}
        }
        if !mf.path.is_absolute() {
            return Err(bad("min_free", "path must be absolute"));
        }
    }
    if m.exec.is_none() && beside.is_none() && !m.has_builtins() {
        return Err(TomlError::whole_file(
            file,
            "nothing to check: give exec, an executable beside the manifest, units, failed_units, fstab or min_free",
        ));
    }
    for name in &m.after {
        if !super::discovery::valid_name(name) {
            return Err(bad("after", &format!("{name:?} is not a probe name")));
        }
    }
    Ok(m)
}

/// The line where a top-level `key =` is written, for errors about it.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &str = "/etc/health-checker/plugins.d/db.toml";

    fn ok(text: &str) -> Manifest {
        parse(Path::new(F), text, None).unwrap()
    }

    fn err(text: &str) -> String {
        parse(Path::new(F), text, None).unwrap_err().to_string()
    }

    #[test]
    fn a_full_manifest() {
        let m = ok(r#"
description = "database answers"
phase = "late"
severity = "wanted"
timeout = "30s"
exec = ["/usr/libexec/db-check", "--quick"]
stop = ["/usr/libexec/db-check", "--stop"]
after = ["network"]
units = ["postgresql.service"]
failed_units = true
ignore_units = ["foo-*.service"]
fstab = true
min_free = { path = "/var", percent = 5 }
"#);
        assert_eq!(m.phase, Phase::Late);
        assert_eq!(m.severity, Severity::Wanted);
        assert_eq!(m.timeout, Some(Seconds::secs(30)));
        assert_eq!(
            m.stop,
            Some(Stop::Exec(vec![
                "/usr/libexec/db-check".into(),
                "--stop".into()
            ]))
        );
        assert_eq!(m.min_free.unwrap().percent, Some(5));
    }

    #[test]
    fn limits_are_read_and_bad_ones_name_file_line_and_key() {
        let base = "description = \"x\"\nphase = \"late\"\nseverity = \"required\"\n";
        let good = "description = \"x\"\nphase = \"late\"\nseverity = \"required\"\nfstab = true\n";
        let m = ok(&format!("{good}tasks_max = 32\nmemory_max = \"64M\"\n"));
        assert_eq!(m.tasks_max, Some(crate::config::Limit(Some(32))));
        assert_eq!(m.memory_max, Some(crate::config::Limit(Some(64 << 20))));
        let m = ok(&format!("{good}memory_max = \"max\"\n"));
        assert_eq!(m.memory_max, Some(crate::config::Limit(None)));
        for (line, want) in [
            ("tasks_max = 0", "invalid limit 0: must be positive"),
            ("tasks_max = -3", "invalid limit -3: must be positive"),
            ("memory_max = \"12X\"", "unknown unit"),
            ("memory_max = \"99999999999G\"", "too large"),
        ] {
            let e = err(&format!("{base}{line}\n"));
            let key = line.split(' ').next().unwrap();
            assert!(e.starts_with(&format!("{F}:4: key `{key}`: ")), "{e}");
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let base = "description = \"x\"\nphase = \"late\"\nseverity = \"required\"\n";
        assert_eq!(
            err(&format!("{base}unit = [\"a.service\"]\n")),
            format!("{F}:4: key `unit`: unknown field `unit`, expected one of `description`, `phase`, `severity`, `timeout`, `exec`, `stop`, `after`, `units`, `failed_units`, `ignore_units`, `fstab`, `min_free`, `tasks_max`, `memory_max`")
        );
        assert_eq!(
            err("description = \"x\"\nphase = \"middle\"\nseverity = \"required\"\nfstab = true\n"),
            format!("{F}:2: key `phase`: unknown variant `middle`, expected `early` or `late`")
        );
        assert_eq!(
            err(&format!("{base}timeout = \"soon\"\nfstab = true\n")),
            format!(
                "{F}:4: key `timeout`: invalid duration \"soon\": expected a number at \"soon\""
            )
        );
        assert_eq!(
            err(&format!(
                "{base}min_free = {{ path = \"/var\", bytes = \"lots\" }}\n"
            )),
            format!("{F}:4: key `min_free.bytes`: invalid type: string \"lots\", expected u64")
        );
        assert_eq!(
            err(&format!(
                "{base}min_free = {{ path = \"/var\", bytes = 1, percent = 2 }}\n"
            )),
            format!("{F}:4: key `min_free`: give exactly one of bytes or percent")
        );
        assert_eq!(
            err(&format!("{base}exec = []\n")),
            format!("{F}:4: key `exec`: must name a program")
        );
        assert_eq!(
            err(&format!("{base}ignore_units = [\"a\"]\nfstab = true\n")),
            format!("{F}:4: key `ignore_units`: only means something with failed_units = true")
        );
        assert_eq!(
            err(&format!("{base}stop = true\nfstab = true\n")),
            format!("{F}:4: key `stop`: stop = true needs an executable beside the manifest and no exec; give stop as an argument list")
        );
    }

    #[test]
    fn missing_keys_and_empty_checks() {
        let e = err("phase = \"late\"\nseverity = \"required\"\nfstab = true\n");
        assert!(e.contains("missing field `description`"), "{e}");
        assert_eq!(
            err("description = \"x\"\nphase = \"late\"\nseverity = \"required\"\n"),
            format!("{F}: nothing to check: give exec, an executable beside the manifest, units, failed_units, fstab or min_free")
        );
    }

    #[test]
    fn stop_true_with_an_executable_beside() {
        let m = parse(
            Path::new(F),
            "description = \"x\"\nphase = \"late\"\nseverity = \"required\"\nstop = true\n",
            Some(Path::new("/etc/health-checker/plugins.d/db")),
        )
        .unwrap();
        assert_eq!(m.stop, Some(Stop::Beside));
    }
}
