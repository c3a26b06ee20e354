//! `health-checker dbus-service`: serve `io.github.healthchecker.HealthChecker1`
//! on the system bus (started by `health-checker-dbus.service`, on demand
//! through bus activation). Each request reads the files afresh; nothing is
//! cached. Only the management methods (root's) write, through the code of
//! the commands `arm`, `mark-good`, `mark-bad` and `rollback`, under the
//! same lock.

use anyhow::{anyhow, Context};
use clap::Args;
use serde_json::{json, Value};

use super::arm::ArmArgs;
use super::mark::{MarkBadArgs, MarkGoodArgs};
use super::rollback::RollbackArgs;
use super::say::Say;
use crate::dbus_service::{self, Handlers, Manager, Provider, Request};
use crate::exit::Code;
use crate::paths::Root;
use crate::state::StateFile;
use crate::systemd::Bus;

/// Options of `dbus-service`.
#[derive(Debug, Clone, Args, Default)]
pub struct DbusServiceArgs {
    /// Serve on the bus at this D-Bus address instead of the system bus.
    #[arg(long, hide = true, value_name = "ADDRESS")]
    pub bus_address: Option<String>,
}

/// Serve until stopped.
pub fn run(root: &Root, args: &DbusServiceArgs) -> anyhow::Result<Code> {
    let bus = match &args.bus_address {
        Some(a) => Bus::Address(a.clone()),
        None => Bus::System,
    };
    dbus_service::serve(
        args.bus_address.as_deref(),
        Handlers {
            status: status_provider(root),
            last_verdict: last_verdict_provider(root),
            manage: Some(manager(root, bus)),
        },
    )?;
    Ok(Code::Ok)
}

/// The management methods: the commands of the same names, their messages
/// collected as the answer; signals and systemd (a rollback's reboot) on
/// `bus`.
pub fn manager(root: &Root, bus: Bus) -> Manager {
    let root = root.clone();
    Box::new(move |request| {
        let mut say = Say::collect();
        let bus = bus.clone();
        match request {
            Request::Arm { snapshot, tries } => {
                let args = ArmArgs {
                    snapshot,
                    tries,
                    if_default_changed: false,
                };
                super::arm::run_with(&root, &args, bus, &mut say)
            }
            Request::MarkGood { snapshot } => {
                super::mark::run_good_with(&root, &MarkGoodArgs { snapshot }, bus, &mut say)
            }
            Request::MarkBad { snapshot } => {
                super::mark::run_bad_with(&root, &MarkBadArgs { snapshot }, bus, &mut say)
            }
            Request::Rollback { no_reboot } => {
                super::rollback::run_with(&root, &RollbackArgs { no_reboot }, bus, &mut say)
            }
        }?;
        Ok(say.text())
    })
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
/// probe (`probes`). A state file that cannot be read or interpreted is an error.
pub fn last_verdict_json(root: &Root) -> anyhow::Result<Value> {
    let state = read_state(&StateFile::new(root))?;
    Ok(json!({
        "boot_id": state.boot.as_ref().map(|b| b.boot_id.clone()),
        "early": state.boot.as_ref().and_then(|b| b.early),
        "late": state.boot.as_ref().and_then(|b| b.late),
        "probes": state.probes,
    }))
}

/// `state.json`, read without changing anything; one that cannot be interpreted is
/// an error.
fn read_state(file: &StateFile) -> anyhow::Result<crate::state::State> {
    let loaded = file
        .load()
        .with_context(|| format!("reading {}", file.path().display()))?;
    match loaded.unusable {
        Some(c) => Err(anyhow!("{c}")),
        None => Ok(loaded.value),
    }
}
