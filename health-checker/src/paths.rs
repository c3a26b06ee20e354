//! Where things live, relative to the root acted on (`--root`).

use std::path::{Path, PathBuf};

/// The root directory acted on: `/` normally, a mounted image with `--root`,
/// a temporary directory in tests.
#[derive(Debug, Clone)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root(dir.into())
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// `abs` (an absolute path as seen from inside the system) under this root.
    pub fn join(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        let rel = abs.strip_prefix("/").unwrap_or(abs);
        self.0.join(rel)
    }

    pub fn is_host(&self) -> bool {
        self.0 == Path::new("/")
    }
}

impl Default for Root {
    fn default() -> Self {
        Root::new("/")
    }
}

pub const VENDOR_DIR: &str = "/usr/lib/health-checker";
pub const ADMIN_DIR: &str = "/etc/health-checker";
pub const STATE_DIR: &str = "/var/lib/health-checker";
pub const DEFAULT_GRUBENV: &str = "/boot/efi/EFI/health-checker/grubenv";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_strips_the_leading_slash() {
        let r = Root::new("/mnt/image");
        assert_eq!(
            r.join("/etc/health-checker"),
            PathBuf::from("/mnt/image/etc/health-checker")
        );
        assert_eq!(Root::default().join("/etc"), PathBuf::from("/etc"));
    }
}
