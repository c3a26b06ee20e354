//! What a test needs from the machine. A missing requirement fails the test
//! with a message saying what is missing and how to get it: these tests never
//! pass silently on a machine that cannot run them.

use std::path::PathBuf;

/// Fail unless running as root (mounts, loop devices and set-default need
/// it).
pub fn root(what: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{what} needs root (mounts, loop devices, btrfs ioctls); run the tests as root"
    );
}

/// The full path of `program` on `PATH` (and the sbin directories), or a
/// failure naming the Debian package to install.
pub fn program(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{program}` not found: install the Debian package {package} (scripts/install-deps)")
}
