//! The few D-Bus calls the actions make: start and stop units through
//! systemd's manager, and our alert signal.
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

use std::time::Duration;

use anyhow::Context;
use zbus::blocking::connection::Builder;
use zbus::blocking::Connection;
use zbus::zvariant::OwnedObjectPath;

use super::settings::Bus;

/// systemd's bus name, object and manager interface.
pub const SYSTEMD_NAME: &str = "org.freedesktop.systemd1";
pub const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
pub const SYSTEMD_MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// systemd's private socket: a direct connection to PID 1, no bus daemon.
pub const SYSTEMD_PRIVATE: &str = "/run/systemd/private";

/// Our interface and object for alert signals. The signal names are the
/// alert kinds (`Rollback`, `GrubFallback`, `Degraded`) and `Promoted`, with
/// two string arguments: the one-line summary and the alert as JSON.
pub const HC_INTERFACE: &str = "io.github.healthchecker.HealthChecker1";
pub const HC_PATH: &str = "/io/github/healthchecker/HealthChecker1";
/// The well-known bus name of our D-Bus service.
pub const HC_NAME: &str = "io.github.healthchecker.HealthChecker1";
/// The signal sent when a snapshot is promoted to known-good.
pub const PROMOTED_SIGNAL: &str = "Promoted";

/// How long a D-Bus call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(25);

/// The system bus's socket (D-Bus's default system bus address).
pub const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";

/// A connection on which systemd's manager answers: the system bus once it
/// is up, systemd's private socket before that (the early phase, and late
/// in a shutdown). The private socket is reached through a relay
/// ([`super::private_socket`]) because zbus cannot read the sender systemd
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
    super::private_socket::connect(path)
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

/// Call a method of systemd's manager taking `(unit, mode)`; returns the
/// queued job.
fn unit_call(
    conn: &Connection,
    method: &str,
    unit: &str,
    mode: &str,
) -> anyhow::Result<OwnedObjectPath> {
    let reply = conn
        .call_method(
            Some(SYSTEMD_NAME),
            SYSTEMD_PATH,
            Some(SYSTEMD_MANAGER),
            method,
            &(unit, mode),
        )
        .with_context(|| format!("systemd {method}({unit}, {mode})"))?;
    reply
        .body()
        .deserialize::<OwnedObjectPath>()
        .with_context(|| format!("reading systemd's reply to {method}({unit}, {mode})"))
}

/// Queue the start of `unit`.
pub fn start_unit(conn: &Connection, unit: &str, mode: &str) -> anyhow::Result<OwnedObjectPath> {
    unit_call(conn, "StartUnit", unit, mode)
}

/// Queue the stop of `unit`.
pub fn stop_unit(conn: &Connection, unit: &str, mode: &str) -> anyhow::Result<OwnedObjectPath> {
    unit_call(conn, "StopUnit", unit, mode)
}

/// Broadcast our alert signal `name` with its two string arguments.
pub fn emit_alert(conn: &Connection, name: &str, summary: &str, json: &str) -> anyhow::Result<()> {
    conn.emit_signal(None::<&str>, HC_PATH, HC_INTERFACE, name, &(summary, json))
        .with_context(|| format!("emitting D-Bus signal {HC_INTERFACE}.{name}"))
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
