//! The `wall` channel: a broadcast to every logged-in terminal, through the
//! `wall` program (util-linux), with a time limit.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{motd, run, Alert};

/// Broadcast the alert's message with `program`.
pub fn broadcast(program: &Path, alert: &Alert, timeout: Duration) -> anyhow::Result<()> {
    let what = format!("wall ({})", program.display());
    let text = motd::render(alert);
    let mut cmd = Command::new(program);
    run::run(&mut cmd, text.trim().as_bytes(), timeout, &what)?.check(&what)?;
    Ok(())
}
