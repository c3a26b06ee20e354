//! The one client for systemd's manager over D-Bus (zbus, blocking), below
//! both the probes (unit states, failed units, jobs) and the actions
//! (stopping units, a clean reboot), with the connections it needs: the
//! system bus, systemd's private socket before the bus is up (through
//! [`private_socket`]), or an address given for tests, which use a private
//! bus with a fake manager.
//!
//! **Why `StartUnit("reboot.target", "replace-irreversibly")` on systemd
//! rather than logind's `Reboot`**: it is what `systemctl reboot` falls back
//! to and what logind itself does in the end, so every service is stopped in
//! order just the same; but it works at any point of the boot (through
//! systemd's private socket, before the system bus and logind are up, which
//! matters for a rollback decided in the early phase), and it cannot be
//! vetoed by a block inhibitor or a polkit rule (an unattended device must
//! not stay on a failed snapshot because some program holds an inhibitor
//! lock). `replace-irreversibly` keeps a later job from cancelling it.

pub mod private_socket;

use std::time::Duration;

use anyhow::Context;
use zbus::blocking::connection::Builder;
use zbus::blocking::Connection;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, Value};

/// Which D-Bus to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    /// The machine's own: systemd through the system bus once it is up, and
    /// before that through its private socket (`/run/systemd/private`,
    /// there from the first instant of the boot); signals on the system
    /// bus.
    System,
    /// A bus at this D-Bus address (`unix:path=...`), for everything. Tests
    /// use a private `dbus-daemon`.
    Address(String),
}

/// systemd's private socket: a direct connection to PID 1, no bus daemon.
pub const SYSTEMD_PRIVATE: &str = "/run/systemd/private";

/// How long a D-Bus call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(25);

/// The system bus's socket (D-Bus's default system bus address).
pub const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";

/// A connection on which systemd's manager answers: the system bus once it
/// is up, systemd's private socket before that (the early phase, and late
/// in a shutdown). The private socket is reached through a relay
/// ([`private_socket`]) because zbus cannot read the sender systemd
/// puts on its messages there.
pub fn connect_systemd(bus: &Bus) -> anyhow::Result<Connection> {
    match bus {
        Bus::Address(addr) => connect_address(addr),
        Bus::System => {
            if std::path::Path::new(SYSTEM_BUS_SOCKET).exists() {
                match connect_system() {
                    Ok(conn) => return Ok(conn),
                    Err(e) => tracing::debug!("{e:#}; trying systemd's private socket"),
                }
            }
            let private = std::path::Path::new(SYSTEMD_PRIVATE);
            if private.exists() {
                return connect_direct(private);
            }
            connect_system()
        }
    }
}

/// A direct (peer-to-peer, no bus daemon) connection to the process
/// listening on the socket `path`, as to systemd's private socket.
pub fn connect_direct(path: &std::path::Path) -> anyhow::Result<Connection> {
    private_socket::connect(path)
}

/// A connection to the bus at `addr`.
pub fn connect_address(addr: &str) -> anyhow::Result<Connection> {
    Builder::address(addr)
        .and_then(|b| b.method_timeout(CALL_TIMEOUT).build())
        .with_context(|| format!("connecting to the D-Bus bus at {addr}"))
}

/// A connection to the system bus.
pub fn connect_system() -> anyhow::Result<Connection> {
    Builder::system()
        .and_then(|b| b.method_timeout(CALL_TIMEOUT).build())
        .context("connecting to the D-Bus system bus")
}

/// Whether a connection error means "no bus here" (socket missing or
/// nobody listening), as opposed to a bus that misbehaves.
pub fn is_absent(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        let io = e
            .downcast_ref::<zbus::Error>()
            .and_then(|z| match z {
                zbus::Error::InputOutput(io) | zbus::Error::Connection(io, _) => Some(io.kind()),
                _ => None,
            })
            .or_else(|| e.downcast_ref::<std::io::Error>().map(|io| io.kind()));
        matches!(
            io,
            Some(std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused)
        )
    })
}

/// One row of `ListUnitsFiltered`: name, description, load state, active
/// state, sub state, followed unit, object, job ID, job type, job object.
pub type UnitRow = (
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
);

/// One row of `ListJobs`: ID, unit, job type, state, job object, unit
/// object.
pub type JobRow = (
    u32,
    String,
    String,
    String,
    OwnedObjectPath,
    OwnedObjectPath,
);

/// systemd's manager: the calls we make, typed.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_async = false,
    blocking_name = "ManagerProxy"
)]
trait Manager {
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;
    fn list_units_filtered(&self, states: &[&str]) -> zbus::Result<Vec<UnitRow>>;
    fn list_jobs(&self) -> zbus::Result<Vec<JobRow>>;
}

/// One unit of systemd's: the properties we read, typed.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_async = false,
    blocking_name = "UnitProxy"
)]
trait Unit {
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
}

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
        let conn = connect_systemd(bus)
            .with_context(|| format!("connecting to systemd on {}", describe(bus)))?;
        Ok(Systemd { conn })
    }

    /// Use an existing connection on which systemd's manager answers.
    pub fn from_connection(conn: Connection) -> Self {
        Systemd { conn }
    }

    /// systemd's manager, no property cache (every read reaches systemd).
    fn manager(&self) -> anyhow::Result<ManagerProxy<'_>> {
        ManagerProxy::builder(&self.conn)
            .cache_properties(CacheProperties::No)
            .build()
            .context("creating the D-Bus proxy for systemd's manager")
    }

    /// Queue the start of `unit` in `mode`; returns the job.
    pub fn start_unit(&self, unit: &str, mode: &str) -> anyhow::Result<OwnedObjectPath> {
        self.manager()?
            .start_unit(unit, mode)
            .with_context(|| format!("systemd StartUnit({unit}, {mode})"))
    }

    /// Create the transient unit `unit` with `properties` and queue its
    /// start in `mode`; returns the job.
    pub fn start_transient_unit(
        &self,
        unit: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
    ) -> anyhow::Result<OwnedObjectPath> {
        self.manager()?
            .start_transient_unit(unit, mode, properties, &[])
            .with_context(|| format!("systemd StartTransientUnit({unit}, {mode})"))
    }

    /// The connection, to watch systemd's signals on it.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Queue the stop of `unit` in `mode`; returns the job.
    pub fn stop_unit(&self, unit: &str, mode: &str) -> anyhow::Result<OwnedObjectPath> {
        self.manager()?
            .stop_unit(unit, mode)
            .with_context(|| format!("systemd StopUnit({unit}, {mode})"))
    }

    /// The load and activity state of unit `name` (loading it if needed, so
    /// a unit that does not exist reads as `not-found`/`inactive`).
    pub fn unit_state(&self, name: &str) -> anyhow::Result<UnitState> {
        let path = self
            .manager()?
            .load_unit(name)
            .with_context(|| format!("asking systemd for unit {name}"))?;
        let unit = UnitProxy::builder(&self.conn)
            .path(path.clone())
            .and_then(|b| b.cache_properties(CacheProperties::No).build())
            .with_context(|| format!("creating the D-Bus proxy for {}", path.as_str()))?;
        let read = |prop: &str, v: zbus::Result<String>| {
            v.with_context(|| format!("reading {prop} of unit {name}"))
        };
        Ok(UnitState {
            load_state: read("LoadState", unit.load_state())?,
            active_state: read("ActiveState", unit.active_state())?,
            sub_state: read("SubState", unit.sub_state())?,
        })
    }

    /// The names of the units in the `failed` state.
    pub fn failed_units(&self) -> anyhow::Result<Vec<String>> {
        let units = self
            .manager()?
            .list_units_filtered(&["failed"])
            .context("asking systemd for failed units")?;
        Ok(units.into_iter().map(|u| u.0).collect())
    }

    /// The jobs systemd has queued or running, as (unit, job type, state):
    /// `("app.service", "start", "running")`. What a boot is still waiting
    /// for.
    pub fn jobs(&self) -> anyhow::Result<Vec<Job>> {
        let jobs = self
            .manager()?
            .list_jobs()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_bus_is_told_apart_from_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-bus");
        let err = connect_address(&format!("unix:path={}", missing.display())).unwrap_err();
        assert!(is_absent(&err), "{err:#}");
        assert!(format!("{err:#}").contains("no-bus"), "{err:#}");

        // Something that is not a bus answers: not "absent".
        let not_a_bus = dir.path().join("not-a-bus");
        let listener = std::os::unix::net::UnixListener::bind(&not_a_bus).unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                use std::io::Write;
                let _ = s.write_all(b"garbage\r\n");
            }
        });
        let err = connect_address(&format!("unix:path={}", not_a_bus.display())).unwrap_err();
        assert!(!is_absent(&err), "{err:#}");
    }
}
