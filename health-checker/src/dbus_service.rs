//! The D-Bus service `io.github.healthchecker.HealthChecker1` on the system
//! bus: the status and the last verdict as JSON, a few properties derived
//! from the status, and the declarations of the signals the checker emits
//! (`actions::dbus`), so that introspection documents them. The service
//! reads; it changes nothing, so the bus policy lets everyone call it.
//!
//! [`fetch_status`] is the client side: `health-checker status` asks the
//! service when it runs and reads the files itself otherwise.
//!
//! The interface is documented for users in `docs/dbus.md`.

use anyhow::{anyhow, Context};
use serde_json::Value;
use zbus::blocking::connection::Builder;
use zbus::blocking::Connection;
use zbus::fdo::{self, RequestNameFlags};
use zbus::object_server::SignalEmitter;

use crate::actions::dbus::{connect_address, connect_system, HC_INTERFACE};
pub use crate::actions::dbus::{HC_NAME, HC_PATH};

/// Something that produces a JSON document on demand (the status, the last
/// verdict). Called on every request: the answer is always current.
pub type Provider = Box<dyn Fn() -> anyhow::Result<Value> + Send + Sync>;

/// The object served at [`HC_PATH`].
struct Service {
    status: Provider,
    last_verdict: Provider,
}

/// A provider's error as a D-Bus error whose message is the whole chain.
fn failed(what: &str, e: anyhow::Error) -> fdo::Error {
    tracing::warn!("answering a D-Bus request for the {what}: {e:#}");
    fdo::Error::Failed(format!("{what}: {e:#}"))
}

impl Service {
    fn status_value(&self) -> fdo::Result<Value> {
        (self.status)().map_err(|e| failed("status", e))
    }
}

/// The property values the service derives from a status document.
///
/// The status keys it reads: `degraded` (`null`/absent or `false`: not
/// degraded; `true` or an object: degraded), `known_good`, `trial` and
/// `booted` (each `null`/absent, a snapshot path, or an object with a
/// `path`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusProperties {
    /// Whether the system is in degraded mode.
    pub degraded: bool,
    /// The known-good snapshot's path; empty: none.
    pub known_good: String,
    /// The trial snapshot's path; empty: none.
    pub trial: String,
    /// The booted snapshot's path; empty: unknown.
    pub booted: String,
}

impl StatusProperties {
    /// The properties of a status document; missing keys give the empty
    /// value.
    pub fn from_status(status: &Value) -> Self {
        let degraded = match status.get("degraded") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => true,
        };
        StatusProperties {
            degraded,
            known_good: snapshot_path(status.get("known_good")),
            trial: snapshot_path(status.get("trial")),
            booted: snapshot_path(status.get("booted")),
        }
    }
}

/// A snapshot as a path: a string, or an object's `path`; else empty.
fn snapshot_path(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

#[zbus::interface(name = "io.github.healthchecker.HealthChecker1")]
impl Service {
    /// The status (booted, default, known-good, trial, degraded mode, last
    /// result per probe) as a JSON object.
    fn get_status(&self) -> fdo::Result<String> {
        Ok(self.status_value()?.to_string())
    }

    /// The verdicts of the most recent checked boot, as a JSON object.
    fn get_last_verdict(&self) -> fdo::Result<String> {
        (self.last_verdict)()
            .map(|v| v.to_string())
            .map_err(|e| failed("last verdict", e))
    }

    /// Whether the system is in degraded mode.
    #[zbus(property(emits_changed_signal = "false"), name = "Degraded")]
    fn degraded_property(&self) -> fdo::Result<bool> {
        Ok(StatusProperties::from_status(&self.status_value()?).degraded)
    }

    /// The known-good snapshot's path; empty when there is none.
    #[zbus(property(emits_changed_signal = "false"))]
    fn known_good(&self) -> fdo::Result<String> {
        Ok(StatusProperties::from_status(&self.status_value()?).known_good)
    }

    /// The trial snapshot's path; empty when there is none.
    #[zbus(property(emits_changed_signal = "false"))]
    fn trial(&self) -> fdo::Result<String> {
        Ok(StatusProperties::from_status(&self.status_value()?).trial)
    }

    /// The booted snapshot's path.
    #[zbus(property(emits_changed_signal = "false"))]
    fn booted(&self) -> fdo::Result<String> {
        Ok(StatusProperties::from_status(&self.status_value()?).booted)
    }

    /// A trial failed; the system rolls back to the known-good snapshot and
    /// reboots. Arguments: a one-line summary, the alert as JSON.
    #[zbus(signal)]
    async fn rollback(emitter: &SignalEmitter<'_>, summary: &str, json: &str) -> zbus::Result<()>;

    /// GRUB ran out of attempts for a trial and booted the known-good
    /// snapshot. Arguments: a one-line summary, the alert as JSON.
    #[zbus(signal)]
    async fn grub_fallback(
        emitter: &SignalEmitter<'_>,
        summary: &str,
        json: &str,
    ) -> zbus::Result<()>;

    /// The system entered degraded mode. Arguments: a one-line summary, the
    /// alert as JSON.
    #[zbus(signal, name = "Degraded")]
    async fn degraded_signal(
        emitter: &SignalEmitter<'_>,
        summary: &str,
        json: &str,
    ) -> zbus::Result<()>;

    /// A snapshot passed its checks and became known-good. Arguments: a
    /// one-line summary, the notice as JSON.
    #[zbus(signal)]
    async fn promoted(emitter: &SignalEmitter<'_>, summary: &str, json: &str) -> zbus::Result<()>;
}

/// Connect to the bus (`None`: the system bus), serve the object and take
/// the name. The service runs as long as the returned connection lives.
/// Fails when the name is already owned.
pub fn start(
    address: Option<&str>,
    status: Provider,
    last_verdict: Provider,
) -> anyhow::Result<Connection> {
    let (builder, bus) = match address {
        Some(a) => (Builder::address(a), a),
        None => (Builder::system(), "the system bus"),
    };
    let service = Service {
        status,
        last_verdict,
    };
    let conn = builder
        .and_then(|b| b.serve_at(HC_PATH, service))
        .and_then(|b| b.build())
        .with_context(|| format!("serving {HC_PATH} on {bus}"))?;
    // The name is taken once the object is served, and never queued for:
    // a second instance fails instead of waiting silently. (zbus's builder
    // would queue.)
    conn.request_name_with_flags(HC_NAME, RequestNameFlags::DoNotQueue.into())
        .map_err(|e| match e {
            zbus::Error::NameTaken => anyhow!("another process already owns {HC_NAME} on {bus}"),
            e => anyhow::Error::new(e).context(format!("taking the name {HC_NAME} on {bus}")),
        })?;
    Ok(conn)
}

/// Serve until the process is stopped (`health-checker dbus-service`).
pub fn serve(
    address: Option<&str>,
    status: Provider,
    last_verdict: Provider,
) -> anyhow::Result<()> {
    let conn = start(address, status, last_verdict)?;
    tracing::info!(
        "serving {HC_NAME} as {}",
        conn.unique_name().map_or("?", |n| n.as_str())
    );
    // Requests are answered on zbus's own thread; this one only keeps the
    // connection alive.
    loop {
        std::thread::park();
    }
}

/// The status from the running service, or `Ok(None)` when no bus is there
/// or nobody owns the name. An error means the service is there but failed
/// to answer.
pub fn fetch_status(address: Option<&str>) -> anyhow::Result<Option<Value>> {
    let conn = match address {
        Some(a) => connect_address(a),
        None => connect_system(),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) if crate::actions::dbus::is_absent(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let dbus =
        zbus::blocking::fdo::DBusProxy::new(&conn).context("talking to the D-Bus bus daemon")?;
    let name = zbus::names::BusName::try_from(HC_NAME).context("our bus name")?;
    if !dbus
        .name_has_owner(name)
        .with_context(|| format!("asking the bus whether {HC_NAME} runs"))?
    {
        return Ok(None);
    }
    let reply = conn
        .call_method(Some(HC_NAME), HC_PATH, Some(HC_INTERFACE), "GetStatus", &())
        .with_context(|| format!("calling {HC_INTERFACE}.GetStatus"))?;
    let text: String = reply
        .body()
        .deserialize()
        .with_context(|| format!("reading the reply of {HC_INTERFACE}.GetStatus"))?;
    let value = serde_json::from_str(&text)
        .with_context(|| format!("{HC_INTERFACE}.GetStatus returned invalid JSON"))?;
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn properties_come_from_the_status() {
        let p = StatusProperties::from_status(&json!({
            "degraded": {"since": 1, "reason": "x"},
            "known_good": {"id": 256, "path": "@/.snapshots/1/snapshot"},
            "trial": "@/.snapshots/2/snapshot",
            "booted": null,
        }));
        assert_eq!(
            p,
            StatusProperties {
                degraded: true,
                known_good: "@/.snapshots/1/snapshot".into(),
                trial: "@/.snapshots/2/snapshot".into(),
                booted: String::new(),
            }
        );
        assert_eq!(
            StatusProperties::from_status(&json!({"degraded": false})),
            StatusProperties::default()
        );
        assert_eq!(
            StatusProperties::from_status(&json!([1, 2])),
            StatusProperties::default()
        );
    }
}
