//! Running the binary under test on a root, and showing what it did.

use std::path::Path;
use std::process::{Command, Output};

/// `health-checker --root ROOT ARGS...`.
pub fn hc(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_health-checker"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("running health-checker")
}

/// Exit code, standard output and standard error, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
