//! An ordinary local user for tests of what a user who is not root can do
//! to a root-run check: the user is created once (idempotently) and
//! commands run as that user through `setpriv`.

use std::path::Path;
use std::process::Command;

/// The name of the test user.
pub const NAME: &str = "hc-test-user";

/// The test user's uid and gid, creating the user if needed. Fails unless
/// the tests run as root.
pub fn ordinary_user() -> (u32, u32) {
    super::require::root("tests acting as an ordinary user");
    if let Some(ids) = lookup() {
        return ids;
    }
    let useradd = super::require::program("useradd", "passwd");
    let out = Command::new(useradd)
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ])
        .arg(NAME)
        .output()
        .expect("running useradd");
    // Another test may have created it meanwhile.
    lookup().unwrap_or_else(|| {
        panic!(
            "creating user {NAME}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn lookup() -> Option<(u32, u32)> {
    nix::unistd::User::from_name(NAME)
        .ok()
        .flatten()
        .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
}

/// Run `sh -c script` as the test user; fail unless it succeeds.
pub fn sh_as_user(script: &str) {
    let out = as_user(&["/bin/sh", "-c", script]);
    assert!(
        out.status.success(),
        "as {NAME}: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `argv` as the test user and return what it did.
pub fn as_user(argv: &[&str]) -> std::process::Output {
    let (uid, gid) = ordinary_user();
    Command::new(super::require::program("setpriv", "util-linux"))
        .args([
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".into(),
            "--".into(),
        ])
        .args(argv)
        .env_remove("HC_RUN_ID")
        .current_dir("/")
        .output()
        .expect("running setpriv")
}

/// A root-owned directory with the sticky bit (like `/tmp`) under `parent`:
/// the user may create files and links there, and nobody may replace them
/// but their owner.
pub fn sticky_dir(parent: &Path, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let d = parent.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}
