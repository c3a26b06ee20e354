//! A temporary root with plugins and configuration, for the probe tests.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use health_checker::config::{self, Config};
use health_checker::paths::Root;
use health_checker::probes::{self, ProbeContext};
use health_checker::verdict::{Phase, PhaseReport, ProbeResult};

pub struct TestRoot {
    pub dir: tempfile::TempDir,
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

impl TestRoot {
    /// An empty root. Unprivileged runs accept plugins not owned by root
    /// (`insecure_ok`); the safety tests themselves need root.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = TestRoot { dir };
        if !is_root() {
            t.write(
                "usr/lib/health-checker/config.toml",
                "[probes]\ninsecure_ok = true\n",
            );
        }
        t
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> Root {
        Root::new(self.dir.path())
    }

    /// Write a file (0644, directories 0755).
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        let parent = p.parent().unwrap();
        std::fs::create_dir_all(parent).unwrap();
        let mut d = parent;
        while d != self.dir.path() {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
            d = d.parent().unwrap();
        }
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    /// Write an executable shell script.
    pub fn script(&self, rel: &str, body: &str) -> PathBuf {
        let p = self.write(rel, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// A vendor plugin: manifest and, if given, an executable beside it.
    pub fn vendor(&self, name: &str, manifest: &str, script: Option<&str>) -> PathBuf {
        self.plugin("usr/lib/health-checker/plugins.d", name, manifest, script)
    }

    /// An admin plugin.
    pub fn admin(&self, name: &str, manifest: &str, script: Option<&str>) -> PathBuf {
        self.plugin("etc/health-checker/plugins.d", name, manifest, script)
    }

    fn plugin(&self, dir: &str, name: &str, manifest: &str, script: Option<&str>) -> PathBuf {
        if let Some(body) = script {
            self.script(&format!("{dir}/{name}"), body);
        }
        self.write(&format!("{dir}/{name}.toml"), manifest)
    }

    /// The admin configuration file.
    pub fn config(&self, text: &str) -> PathBuf {
        self.write("etc/health-checker/config.toml", text)
    }

    pub fn load(&self) -> Config {
        config::load(&self.root()).unwrap().config
    }

    pub fn run(&self, phase: Phase) -> PhaseReport {
        probes::check_phase(&self.root(), phase, &ProbeContext::default())
    }
}

/// A manifest with the usual keys.
pub fn manifest(phase: &str, severity: &str, extra: &str) -> String {
    format!("description = \"test probe\"\nphase = \"{phase}\"\nseverity = \"{severity}\"\n{extra}")
}

pub fn find<'a>(r: &'a PhaseReport, name: &str) -> &'a ProbeResult {
    r.probes
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no result for {name} in {r:#?}"))
}
