//! The few EFI variables of the Boot Loader Interface the checker reads
//! (never writes), from efivarfs.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The vendor GUID of the Boot Loader Interface variables.
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// Where efivarfs is mounted, under `--root`.
pub const EFIVARS_DIR: &str = "/sys/firmware/efi/efivars";

/// efivarfs, or a directory laid out like it (tests).
#[derive(Debug, Clone)]
pub struct EfiVars {
    dir: PathBuf,
}

impl EfiVars {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EfiVars { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the Boot Loader Interface variable `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-{LOADER_GUID}"))
    }

    /// A string variable (UTF-16LE after efivarfs's 4 attribute bytes, up to
    /// the first NUL). `None` when it does not exist.
    pub fn string(&self, name: &str) -> anyhow::Result<Option<String>> {
        let path = self.path(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        decode(&bytes)
            .map(Some)
            .with_context(|| format!("{}: not a UTF-16 string variable", path.display()))
    }

    /// Write a string variable as efivarfs holds it (tests and the VM's
    /// fixtures; the checker itself never writes EFI variables).
    pub fn encode(value: &str) -> Vec<u8> {
        let mut out = vec![0x06, 0, 0, 0]; // BOOTSERVICE_ACCESS | RUNTIME_ACCESS
        for u in value.encode_utf16().chain([0]) {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out
    }
}

fn decode(bytes: &[u8]) -> anyhow::Result<String> {
    anyhow::ensure!(
        bytes.len() >= 4 && bytes.len() % 2 == 0,
        "{} bytes",
        bytes.len()
    );
    let units: Vec<u16> = bytes[4..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16(&units).map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_absence_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let vars = EfiVars::new(dir.path());
        assert_eq!(vars.string("LoaderInfo").unwrap(), None);
        std::fs::write(
            vars.path("LoaderInfo"),
            EfiVars::encode("systemd-boot 252.22-1~deb12u1"),
        )
        .unwrap();
        assert_eq!(
            vars.string("LoaderInfo").unwrap().as_deref(),
            Some("systemd-boot 252.22-1~deb12u1")
        );
        std::fs::write(vars.path("LoaderEntrySelected"), [6, 0, 0]).unwrap();
        let e = vars.string("LoaderEntrySelected").unwrap_err();
        assert!(format!("{e:#}").contains("LoaderEntrySelected"), "{e:#}");
    }
}
