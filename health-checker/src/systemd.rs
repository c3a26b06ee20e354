//! A small client for systemd's manager over D-Bus (zbus, blocking): unit
//! states, failed units, stopping units and a clean reboot. The bus address
//! is injectable so tests can use a private bus with a fake manager.

use anyhow::Context;
use zbus::blocking::{proxy, Connection, Proxy};
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;

const DEST: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";

/// Which bus systemd is reached on (shared with the system actions):
/// `System` uses the system bus once it is up and systemd's private socket
/// before that (the early phase).
pub use crate::actions::Bus;

/// The state of one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// `loaded`, `not-found`, `masked`, ...
    pub load_state: String,
    /// `active`, `inactive`, `failed`, `activating`, ...
    pub active_state: String,
    /// `running`, `exited`, `dead`, ...
    pub sub_state: String,
}

/// A job of systemd's manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The unit the job is for.
    pub unit: String,
    /// `start`, `stop`, `restart`, ...
    pub job_type: String,
    /// `waiting` or `running`.
    pub state: String,
}

/// A connection to systemd's manager.
#[derive(Debug)]
pub struct Systemd {
    conn: Connection,
}

impl Systemd {
    /// Connect to systemd on `bus`.
    pub fn connect(bus: &Bus) -> anyhow::Result<Self> {
        let conn = crate::actions::dbus::connect_systemd(bus)
            .with_context(|| format!("connecting to systemd on {}", describe(bus)))?;
        Ok(Systemd { conn })
    }

    /// Use an existing connection on which systemd's manager answers.
    pub fn from_connection(conn: Connection) -> Self {
        Systemd { conn }
    }

    fn proxy<'a>(&'a self, path: &'a str, iface: &'a str) -> anyhow::Result<Proxy<'a>> {
        proxy::Builder::new(&self.conn)
            .destination(DEST)?
            .path(path)?
            .interface(iface)?
            .cache_properties(CacheProperties::No)
            .build()
            .with_context(|| format!("creating D-Bus proxy for {path}"))
    }

    fn manager(&self) -> anyhow::Result<Proxy<'_>> {
        self.proxy(MANAGER_PATH, MANAGER)
    }

    /// The load and activity state of unit `name` (loading it if needed, so
    /// a unit that does not exist reads as `not-found`/`inactive`).
    pub fn unit_state(&self, name: &str) -> anyhow::Result<UnitState> {
        let path: OwnedObjectPath = self
            .manager()?
            .call("LoadUnit", &(name,))
            .with_context(|| format!("asking systemd for unit {name}"))?;
        let unit = self.proxy(path.as_str(), UNIT)?;
        let get = |prop: &str| -> anyhow::Result<String> {
            unit.get_property::<String>(prop)
                .with_context(|| format!("reading {prop} of unit {name}"))
        };
        Ok(UnitState {
            load_state: get("LoadState")?,
            active_state: get("ActiveState")?,
            sub_state: get("SubState")?,
        })
    }

    /// The names of the units in the `failed` state.
    pub fn failed_units(&self) -> anyhow::Result<Vec<String>> {
        #[allow(clippy::type_complexity)]
        let units: Vec<(
            String,
            String,
            String,
            String,
            String,
            String,
            OwnedObjectPath,
            u32,
            String,
            OwnedObjectPath,
        )> = self
            .manager()?
            .call("ListUnitsFiltered", &(vec!["failed"],))
            .context("asking systemd for failed units")?;
        Ok(units.into_iter().map(|u| u.0).collect())
    }

    /// The jobs systemd has queued or running, as (unit, job type, state):
    /// `("app.service", "start", "running")`. What a boot is still waiting
    /// for.
    pub fn jobs(&self) -> anyhow::Result<Vec<Job>> {
        let jobs: Vec<(
            u32,
            String,
            String,
            String,
            OwnedObjectPath,
            OwnedObjectPath,
        )> = self
            .manager()?
            .call("ListJobs", &())
            .context("asking systemd for its jobs")?;
        Ok(jobs
            .into_iter()
            .map(|(_, unit, job_type, state, _, _)| Job {
                unit,
                job_type,
                state,
            })
            .collect())
    }
}

fn describe(bus: &Bus) -> String {
    match bus {
        Bus::System => "the system bus or its private socket".into(),
        Bus::Address(a) => format!("D-Bus address {a}"),
    }
}
