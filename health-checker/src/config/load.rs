//! Reading the layered configuration files and remembering where each
//! effective value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::paths::{Root, ADMIN_DIR, VENDOR_DIR};
use crate::toml_error::{self, TomlError};

use super::Config;

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nobody set it: the built-in default.
    Default,
    /// The last file that set it.
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("(default)"),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The effective configuration and the origin of each value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub config: Config,
    /// Origin by dotted key (`probes.parallel`); keys absent are defaults.
    pub origins: BTreeMap<String, Origin>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

impl Loaded {
    /// The origin of a dotted key.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// Every effective value as `(dotted key, value as TOML, origin)`, in
    /// schema order.
    pub fn entries(&self) -> Vec<(String, toml::Value, Origin)> {
        let mut out = Vec::new();
        let Ok(toml::Value::Table(all)) = toml::Value::try_from(&self.config) else {
            return out;
        };
        for (section, table) in all {
            if let toml::Value::Table(t) = table {
                for (k, v) in t {
                    let key = format!("{section}.{k}");
                    let origin = self.origin(&key);
                    out.push((key, v, origin));
                }
            }
        }
        out
    }
}

/// The configuration files under `root` that exist, in the order they apply.
pub fn config_files(root: &Root) -> Result<Vec<PathBuf>, TomlError> {
    let mut files = Vec::new();
    for f in [
        root.join(format!("{VENDOR_DIR}/config.toml")),
        root.join(format!("{ADMIN_DIR}/config.toml")),
    ] {
        if exists(&f)? {
            files.push(f);
        }
    }
    let dropins = root.join(format!("{ADMIN_DIR}/config.d"));
    match std::fs::read_dir(&dropins) {
        Ok(entries) => {
            let mut names = Vec::new();
            for e in entries {
                let e = e.map_err(|e| {
                    TomlError::whole_file(&dropins, format!("reading directory: {e}"))
                })?;
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml") {
                    names.push(p);
                }
            }
            names.sort();
            files.extend(names);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(TomlError::whole_file(
                &dropins,
                format!("reading directory: {e}"),
            ))
        }
    }
    Ok(files)
}

fn exists(p: &Path) -> Result<bool, TomlError> {
    match std::fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(TomlError::whole_file(p, format!("cannot access: {e}"))),
    }
}

/// Load the configuration of the system at `root`.
pub fn load(root: &Root) -> Result<Loaded, TomlError> {
    load_files(&config_files(root)?)
}

/// Load these files in order, later ones overriding single keys.
pub fn load_files(files: &[PathBuf]) -> Result<Loaded, TomlError> {
    let mut merged = toml::Table::new();
    let mut origins = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| TomlError::whole_file(file, format!("cannot read: {e}")))?;
        // Strict check of this file alone: types, unknown keys, ranges.
        let _: Config = toml_error::parse(file, &text)?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| TomlError::whole_file(file, format!("{e}")))?;
        for (section, value) in table {
            let toml::Value::Table(keys) = value else {
                continue; // rejected by the strict check above
            };
            let into = merged
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(into) = into {
                for (k, v) in keys {
                    origins.insert(format!("{section}.{k}"), Origin::File(file.clone()));
                    into.insert(k, v);
                }
            }
        }
    }
    let config: Config = toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| {
            TomlError::whole_file(
                files.last().map(PathBuf::as_path).unwrap_or(Path::new("-")),
                format!("merging configuration: {}", e.message()),
            )
        })?;
    Ok(Loaded {
        config,
        origins,
        files: files.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn no_files_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let l = load(&Root::new(dir.path())).unwrap();
        assert_eq!(l.config, Config::default());
        assert_eq!(l.origin("boot.tries"), Origin::Default);
    }

    #[test]
    fn later_files_override_single_keys_and_origins_follow() {
        let dir = tempfile::tempdir().unwrap();
        let v = write(
            dir.path(),
            "usr/lib/health-checker/config.toml",
            "[boot]\ntries = 5\ndeadline = \"5min\"\n[probes]\nparallel = 2\n",
        );
        let a = write(
            dir.path(),
            "etc/health-checker/config.toml",
            "[boot]\ntries = 4\n",
        );
        let d = write(
            dir.path(),
            "etc/health-checker/config.d/50-b.toml",
            "[probes]\nparallel = 8\n",
        );
        write(
            dir.path(),
            "etc/health-checker/config.d/10-a.toml",
            "[probes]\nparallel = 6\nkill_grace = 2\n",
        );
        write(dir.path(), "etc/health-checker/config.d/README", "not toml");
        let l = load(&Root::new(dir.path())).unwrap();
        assert_eq!(l.config.boot.tries, 4);
        assert_eq!(l.config.boot.deadline, super::super::Seconds::secs(300));
        assert_eq!(l.config.probes.parallel, 8);
        assert_eq!(l.config.probes.kill_grace, super::super::Seconds::secs(2));
        assert_eq!(l.origin("boot.tries"), Origin::File(a));
        assert_eq!(l.origin("boot.deadline"), Origin::File(v));
        assert_eq!(l.origin("probes.parallel"), Origin::File(d));
        assert_eq!(l.origin("degraded.motd"), Origin::Default);
        assert_eq!(l.files.len(), 4);
    }

    #[test]
    fn an_error_in_a_dropin_names_that_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "etc/health-checker/config.toml",
            "[boot]\ntries = 4\n",
        );
        let bad = write(
            dir.path(),
            "etc/health-checker/config.d/20-x.toml",
            "# local\n[probes]\nparalel = 8\n",
        );
        let e = load(&Root::new(dir.path())).unwrap_err();
        assert_eq!(e.file, bad);
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("probes.paralel"));
        assert!(
            e.to_string().starts_with(&format!(
                "{}:3: key `probes.paralel`: unknown field `paralel`, expected one of",
                bad.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn entries_list_every_key_with_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "etc/health-checker/config.toml",
            "[degraded]\nstop_services = [\"db.service\"]\n",
        );
        let l = load(&Root::new(dir.path())).unwrap();
        let e = l.entries();
        assert_eq!(e.len(), 26);
        let (_, v, o) = e
            .iter()
            .find(|(k, ..)| k == "degraded.stop_services")
            .unwrap();
        assert_eq!(v.to_string(), "[\"db.service\"]");
        assert_eq!(*o, Origin::File(a));
        let (_, v, o) = e.iter().find(|(k, ..)| k == "boot.deadline").unwrap();
        assert_eq!((v.to_string().as_str(), o), ("\"10min\"", &Origin::Default));
    }

    #[test]
    fn an_unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/health-checker/config.toml")).unwrap();
        let e = load(&Root::new(dir.path())).unwrap_err();
        assert!(e.message.starts_with("cannot read:"), "{e}");
    }
}
