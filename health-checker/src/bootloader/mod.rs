//! The boot loader behind the engine's [`BootEnv`] seam: GRUB (our snippet
//! and the GRUB environment, `docs/design.md`) or systemd-boot (Boot Loader
//! Specification entries with boot counting, `docs/systemd-boot.md`),
//! chosen by `[bootloader] backend`.

pub mod efivars;
pub mod esp;
pub mod kernel;
pub mod names;
pub mod sdboot;

use std::path::PathBuf;

use anyhow::{bail, Result};
use grub_env::Store;

use crate::config::{Backend, Config};
use crate::engine::{BootEnv, BootState, GrubBootEnv};
use crate::paths::Root;
pub use efivars::EfiVars;
pub use esp::Esp;
pub use sdboot::SdBootEnv;

/// The backend in use, after `auto` was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Grub,
    SystemdBoot,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Grub => "grub",
            Kind::SystemdBoot => "systemd-boot",
        }
    }
}

/// Where the ESP may be mounted, in the order `bootctl` looks.
pub const ESP_CANDIDATES: [&str; 3] = ["/boot/efi", "/efi", "/boot"];

/// The backend the configuration names; `auto`: systemd-boot when the
/// loader says so in `LoaderInfo`, GRUB otherwise.
pub fn resolve(root: &Root, config: &Config) -> Kind {
    match config.bootloader.backend {
        Backend::Grub => Kind::Grub,
        Backend::SystemdBoot => Kind::SystemdBoot,
        Backend::Auto => match efivars(root).string("LoaderInfo") {
            Ok(Some(info)) if info.starts_with("systemd-boot") => Kind::SystemdBoot,
            _ => Kind::Grub,
        },
    }
}

/// efivarfs under `root`.
pub fn efivars(root: &Root) -> EfiVars {
    EfiVars::new(root.join(efivars::EFIVARS_DIR))
}

/// The ESP: `[bootloader] esp`, or the first candidate holding `loader/`.
pub fn find_esp(root: &Root, config: &Config) -> Result<Esp> {
    if !config.bootloader.esp.as_os_str().is_empty() {
        return Ok(Esp::new(root.join(&config.bootloader.esp)));
    }
    for c in ESP_CANDIDATES {
        let dir = root.join(c);
        if dir.join("loader/loader.conf").is_file() || dir.join("loader/entries").is_dir() {
            return Ok(Esp::new(dir));
        }
    }
    bail!(
        "no EFI system partition with systemd-boot's loader/ directory under {} (looked in {}): is it mounted, and `bootctl install` run? Or set [bootloader] esp",
        root.dir().display(),
        ESP_CANDIDATES.join(", ")
    )
}

/// The boot environment of either backend.
#[derive(Debug)]
pub enum LoaderEnv {
    Grub(GrubBootEnv),
    SystemdBoot(SdBootEnv),
}

impl LoaderEnv {
    /// The backend the configuration chooses, opened on `root`.
    pub fn open(root: &Root, config: &Config) -> Result<LoaderEnv> {
        match resolve(root, config) {
            Kind::Grub => Ok(LoaderEnv::Grub(GrubBootEnv::new(
                crate::commands::system::env_store(root, config)?,
            ))),
            Kind::SystemdBoot => {
                let esp = find_esp(root, config)?;
                let options = kernel::base_options(root, &config.bootloader.options)
                    .map_err(|e| format!("{e:#}"));
                Ok(LoaderEnv::SystemdBoot(SdBootEnv::new(
                    esp,
                    efivars(root),
                    Box::new(kernel::MountedTopLevel(root.clone())),
                    options,
                    config.bootloader.max_entries,
                )))
            }
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            LoaderEnv::Grub(_) => Kind::Grub,
            LoaderEnv::SystemdBoot(_) => Kind::SystemdBoot,
        }
    }

    /// The crash-safe key store underneath: the GRUB environment, or the
    /// systemd-boot backend's state file on the ESP.
    pub fn keys(&self) -> &GrubBootEnv {
        match self {
            LoaderEnv::Grub(g) => g,
            LoaderEnv::SystemdBoot(s) => s.state_env(),
        }
    }

    /// The store of [`LoaderEnv::keys`].
    pub fn inner(&self) -> &Store {
        self.keys().inner()
    }

    /// See [`GrubBootEnv::problems`].
    pub fn problems(&self) -> Result<Vec<String>> {
        self.keys().problems()
    }

    /// See [`GrubBootEnv::repair`].
    pub fn repair(&self) -> Result<Vec<String>> {
        self.keys().repair()
    }

    pub fn sdboot(&self) -> Option<&SdBootEnv> {
        match self {
            LoaderEnv::SystemdBoot(s) => Some(s),
            LoaderEnv::Grub(_) => None,
        }
    }

    /// Where the state is, for people.
    pub fn location(&self) -> String {
        self.inner().primary().to_string()
    }

    /// The ESP's mount point (systemd-boot only).
    pub fn esp_dir(&self) -> Option<PathBuf> {
        self.sdboot().map(|s| s.esp().dir().to_path_buf())
    }
}

impl BootEnv for LoaderEnv {
    fn load(&self) -> Result<BootState> {
        match self {
            LoaderEnv::Grub(g) => g.load(),
            LoaderEnv::SystemdBoot(s) => s.load(),
        }
    }

    fn store(&self, changes: &[(&'static str, Option<String>)]) -> Result<()> {
        match self {
            LoaderEnv::Grub(g) => g.store(changes),
            LoaderEnv::SystemdBoot(s) => s.store(changes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backend;

    #[test]
    fn auto_is_systemd_boot_only_when_the_loader_says_so() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let mut config = Config::default();
        assert_eq!(resolve(&root, &config), Kind::Grub, "no efivarfs");
        let vars = efivars(&root);
        std::fs::create_dir_all(vars.dir()).unwrap();
        std::fs::write(vars.path("LoaderInfo"), EfiVars::encode("GRUB 2.12")).unwrap();
        assert_eq!(resolve(&root, &config), Kind::Grub);
        std::fs::write(
            vars.path("LoaderInfo"),
            EfiVars::encode("systemd-boot 252.22-1~deb12u1"),
        )
        .unwrap();
        assert_eq!(resolve(&root, &config), Kind::SystemdBoot);
        config.bootloader.backend = Backend::Grub;
        assert_eq!(resolve(&root, &config), Kind::Grub, "configured wins");
    }

    #[test]
    fn the_esp_is_found_where_loader_is_or_named_in_the_error() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let mut config = Config::default();
        let e = format!("{:#}", find_esp(&root, &config).unwrap_err());
        assert!(
            e.contains("/boot/efi, /efi, /boot") && e.contains("[bootloader] esp"),
            "{e}"
        );
        std::fs::create_dir_all(t.path().join("efi/loader/entries")).unwrap();
        assert_eq!(
            find_esp(&root, &config).unwrap().dir(),
            t.path().join("efi")
        );
        config.bootloader.esp = "/boot/efi".into();
        assert_eq!(
            find_esp(&root, &config).unwrap().dir(),
            t.path().join("boot/efi")
        );
    }
}
