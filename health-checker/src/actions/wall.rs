//! The `wall` channel: a broadcast to every logged-in terminal, through the
//! `wall` program (util-linux), run by the probes' supervisor with a time
//! limit.

use std::path::Path;
use std::time::Duration;

use super::{motd, Alert};
use crate::probes::process::{self, RunSpec};
use crate::probes::safety::{self, Trust};

/// Broadcast the alert's message with `program`.
pub fn broadcast(program: &Path, alert: &Alert, timeout: Duration) -> anyhow::Result<()> {
    let what = format!("wall ({})", program.display());
    let text = motd::render(alert);
    let argv = [program.to_string_lossy().into_owned()];
    process::run(&RunSpec {
        argv: &argv,
        env: &[],
        timeout,
        kill_grace: process::KILL_GRACE,
        output_limit: OUTPUT_LIMIT,
        input: Some(text.trim().as_bytes()),
        trust: Trust::RootOnly {
            below: Path::new("/"),
            names: safety::PROGRAM,
        },
        what: "wall",
        limits: crate::probes::cgroup::HELPER_LIMITS,
    })
    .success(&what)
}

/// Output kept from `wall` and alert hooks for the log and error messages.
pub const OUTPUT_LIMIT: usize = 8 * 1024;
