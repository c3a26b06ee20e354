//! Our alert signals on D-Bus. Connections, and everything asked of
//! systemd, are in `crate::systemd`.

use anyhow::Context;
use zbus::blocking::Connection;

/// Our interface and object for alert signals. The signal names are the
/// alert kinds (`Rollback`, `GrubFallback`, `Degraded`) and `Promoted`, with
/// two string arguments: the one-line summary and the alert as JSON.
pub const HC_INTERFACE: &str = "io.github.healthchecker.HealthChecker1";
pub const HC_PATH: &str = "/io/github/healthchecker/HealthChecker1";
/// The well-known bus name of our D-Bus service.
pub const HC_NAME: &str = "io.github.healthchecker.HealthChecker1";
/// The signal sent when a snapshot is promoted to known-good.
pub const PROMOTED_SIGNAL: &str = "Promoted";

/// Broadcast our alert signal `name` with its two string arguments.
pub fn emit_alert(conn: &Connection, name: &str, summary: &str, json: &str) -> anyhow::Result<()> {
    conn.emit_signal(None::<&str>, HC_PATH, HC_INTERFACE, name, &(summary, json))
        .with_context(|| format!("emitting D-Bus signal {HC_INTERFACE}.{name}"))
}
