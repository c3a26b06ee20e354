//! Files of a system tree under a test root, named by their absolute paths
//! on that system.

use std::path::{Path, PathBuf};

/// `abs` (an absolute path on the system) under `root`.
pub fn path(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// Write `text` to `abs` under `root`, making its directories.
pub fn write(root: &Path, abs: &str, text: &str) {
    let p = path(root, abs);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
}
