//! `health-checker dbus-service`: serve `io.github.healthchecker.HealthChecker1`
//! on the system bus (started by `health-checker-dbus.service`, on demand
//! through bus activation). Each request reads the files afresh; nothing is
//! cached and nothing is written (the unit runs with a read-only file
//! system).

use anyhow::{anyhow, Context};
use clap::Args;
use serde_json::{json, Value};

use crate::dbus_service::{self, Provider};
use crate::exit::Code;
use crate::paths::Root;
use crate::state::StateFile;

/// Options of `dbus-service`.
#[derive(Debug, Clone, Args, Default)]
pub struct DbusServiceArgs {
    /// Serve on the bus at this D-Bus address instead of the system bus.
    #[arg(long, hide = true, value_name = "ADDRESS")]
    pub bus_address: Option<String>,
}

/// Serve until stopped.
pub fn run(root: &Root, args: &DbusServiceArgs) -> anyhow::Result<Code> {
    dbus_service::serve(
        args.bus_address.as_deref(),
        status_provider(root),
        last_verdict_provider(root),
    )?;
    Ok(Code::Ok)
}

/// The provider of `GetStatus` and the properties.
pub fn status_provider(root: &Root) -> Provider {
    let root = root.clone();
    Box::new(move || status_json(&root))
}

/// The provider of `GetLastVerdict`.
pub fn last_verdict_provider(root: &Root) -> Provider {
    let root = root.clone();
    Box::new(move || last_verdict_json(&root))
}

/// The status of the system at `root` as JSON: `health-checker status
/// --json`'s document ([`crate::commands::status::Status`]).
pub fn status_json(root: &Root) -> anyhow::Result<Value> {
    let status = crate::commands::status::read(root)?;
    serde_json::to_value(&status).context("encoding the status as JSON")
}

/// The verdicts of the most recent checked boot (`boot_id`, `early`,
/// `late`, each `pass`/`fail` or `null`) with the last result of every
/// probe (`probes`). An unreadable or corrupt state file is an error.
pub fn last_verdict_json(root: &Root) -> anyhow::Result<Value> {
    let state = read_state(&StateFile::new(root))?;
    Ok(json!({
        "boot_id": state.boot.as_ref().map(|b| b.boot_id.clone()),
        "early": state.boot.as_ref().and_then(|b| b.early),
        "late": state.boot.as_ref().and_then(|b| b.late),
        "probes": state.probes,
    }))
}

/// `state.json`, read without repairing anything; corrupt is an error.
fn read_state(file: &StateFile) -> anyhow::Result<crate::state::State> {
    let loaded = file
        .load()
        .with_context(|| format!("reading {}", file.path().display()))?;
    match loaded.unusable {
        Some(c) => Err(anyhow!("{c}")),
        None => Ok(loaded.value),
    }
}
