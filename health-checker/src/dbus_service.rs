//! The D-Bus service `io.github.healthchecker.HealthChecker1` on the system
//! bus: the status and the last verdict as JSON, a few properties derived
//! from the status, and the declarations of the signals the checker emits
//! (`actions::dbus`), so that introspection documents them. Everyone may
//! read. The management methods (`Arm`, `MarkGood`, `MarkBad`, `Rollback`)
//! run the code of the commands of the same names and are for root only:
//! the bus policy lets only root send them, and the service itself asks the
//! bus for the caller's uid and refuses anyone else with
//! `org.freedesktop.DBus.Error.AccessDenied`.
//!
//! [`fetch_status`] is the client side: `health-checker status` asks the
//! service when it runs and reads the files itself otherwise.
//!
//! The interface is documented for users in `docs/dbus.md`.

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use zbus::blocking::connection::Builder;
use zbus::blocking::Connection;
use zbus::fdo::{self, RequestNameFlags};
use zbus::message::Header;
use zbus::names::BusName;
use zbus::object_server::SignalEmitter;

use crate::actions::dbus::HC_INTERFACE;
pub use crate::actions::dbus::{HC_NAME, HC_PATH};
use crate::systemd::{connect_address, connect_system};

/// Something that produces a JSON document on demand (the status, the last
/// verdict). Called on every request: the answer is always current.
pub type Provider = Box<dyn Fn() -> anyhow::Result<Value> + Send + Sync>;

/// A change asked for over the bus; empty snapshot arguments on the bus
/// are `None` here: the command's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `Arm(snapshot, tries)`; `tries` `None`: the configured number.
    Arm {
        snapshot: Option<String>,
        tries: Option<u8>,
    },
    /// `MarkGood(snapshot)`.
    MarkGood { snapshot: Option<String> },
    /// `MarkBad(snapshot)`.
    MarkBad { snapshot: Option<String> },
    /// `Rollback(no_reboot)`.
    Rollback { no_reboot: bool },
}

/// Something that carries out a [`Request`] and returns what the command
/// says (its output lines). Its errors keep their exit codes
/// ([`crate::exit::code_for`]): a usage error is `InvalidArgs` on the bus.
pub type Manager = Box<dyn Fn(Request) -> anyhow::Result<String> + Send + Sync>;

/// What the service answers with.
pub struct Handlers {
    pub status: Provider,
    pub last_verdict: Provider,
    /// `None`: the management methods fail with `NotSupported`.
    pub manage: Option<Manager>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("manage", &self.manage.is_some())
            .finish_non_exhaustive()
    }
}

/// The object served at [`HC_PATH`].
struct Service {
    status: Provider,
    last_verdict: Provider,
    manage: Option<Manager>,
}

/// The uid of a call's sender, as the bus daemon knows it
/// (`org.freedesktop.DBus.GetConnectionUnixUser`).
async fn caller_uid(conn: &zbus::Connection, header: &Header<'_>) -> fdo::Result<u32> {
    let sender = header
        .sender()
        .ok_or_else(|| fdo::Error::AccessDenied("the call names no sender".into()))?;
    let dbus = fdo::DBusProxy::new(conn).await?;
    dbus.get_connection_unix_user(BusName::Unique(sender.to_owned()))
        .await
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

    /// Carry out `request` for a caller that must be root.
    async fn manage(
        &self,
        conn: &zbus::Connection,
        header: &Header<'_>,
        request: Request,
    ) -> fdo::Result<String> {
        let method = header.member().map_or("?", |m| m.as_str()).to_owned();
        let uid = caller_uid(conn, header).await.map_err(|e| {
            tracing::warn!("refusing {method}: the caller's uid is unknown: {e}");
            fdo::Error::AccessDenied(format!("{method}: the caller's uid is unknown: {e}"))
        })?;
        if uid != 0 {
            tracing::warn!("refusing {method} from uid {uid}: only root may change the boot state");
            return Err(fdo::Error::AccessDenied(format!(
                "{method}: only root may change the boot state (the caller is uid {uid})"
            )));
        }
        let Some(manage) = &self.manage else {
            return Err(fdo::Error::NotSupported(format!(
                "{method}: this service only reads"
            )));
        };
        tracing::info!("{method} asked by root over D-Bus: {request:?}");
        manage(request).map_err(|e| {
            let text = format!("{method}: {}", crate::exit::chain(&e));
            tracing::warn!("{text}");
            match crate::exit::code_for(&e) {
                crate::exit::Code::Usage => fdo::Error::InvalidArgs(text),
                _ => fdo::Error::Failed(text),
            }
        })
    }
}

/// An empty snapshot argument: the command's default.
fn snapshot_arg(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The properties, read from a status document (the JSON form of
/// [`crate::commands::status::Status`]): `degraded`, `booted` and
/// `boot_environment.known_good` / `.trial`. A piece that could not be read
/// (`{"error": "..."}` in its place) makes the property fail with that
/// message; a missing or `null` piece is the empty value.
pub mod properties {
    use serde_json::Value;

    /// The value at `path` (object keys), `None` when missing or `null`,
    /// or the error recorded in its place or in a parent's.
    fn piece<'a>(status: &'a Value, path: &[&str]) -> Result<Option<&'a Value>, String> {
        let mut v = status;
        for key in path {
            check(v)?;
            match v.get(key) {
                None | Some(Value::Null) => return Ok(None),
                Some(next) => v = next,
            }
        }
        check(v)?;
        Ok(Some(v))
    }

    /// `{"error": "..."}`: a piece that could not be read.
    fn check(v: &Value) -> Result<(), String> {
        match v.as_object() {
            Some(o) if o.len() == 1 => match o.get("error").and_then(Value::as_str) {
                Some(e) => Err(e.to_owned()),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// A snapshot piece as a path: a string, or an object's `path`.
    fn path_of(status: &Value, path: &[&str]) -> Result<String, String> {
        Ok(match piece(status, path)? {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            None => String::new(),
        })
    }

    /// `Degraded`: whether the system is in degraded mode.
    pub fn degraded(status: &Value) -> Result<bool, String> {
        Ok(match piece(status, &["degraded"])? {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => true,
        })
    }

    /// `KnownGood`: the known-good snapshot's path; empty: none.
    pub fn known_good(status: &Value) -> Result<String, String> {
        path_of(status, &["boot_environment", "known_good"])
    }

    /// `Trial`: the trial snapshot's path; empty: none.
    pub fn trial(status: &Value) -> Result<String, String> {
        path_of(status, &["boot_environment", "trial"])
    }

    /// `Booted`: the booted snapshot's path.
    pub fn booted(status: &Value) -> Result<String, String> {
        path_of(status, &["booted"])
    }
}

/// A property's value, or the error in its place as a D-Bus error.
fn property<T>(
    service: &Service,
    name: &str,
    get: fn(&Value) -> Result<T, String>,
) -> fdo::Result<T> {
    get(&service.status_value()?).map_err(|e| fdo::Error::Failed(format!("{name}: {e}")))
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

    /// Arm a snapshot as the trial (`health-checker arm`): `snapshot` a
    /// path from the top-level subvolume or a snapper number, empty: the
    /// default subvolume; `tries` 1-9, 0: the configured number. Returns
    /// what the command says. Root only.
    async fn arm(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
        snapshot: String,
        tries: u8,
    ) -> fdo::Result<String> {
        let request = Request::Arm {
            snapshot: snapshot_arg(snapshot),
            tries: (tries != 0).then_some(tries),
        };
        self.manage(conn, &header, request).await
    }

    /// Make a snapshot the known-good (`health-checker mark-good`); empty:
    /// the booted snapshot. Returns what the command says. Root only.
    async fn mark_good(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
        snapshot: String,
    ) -> fdo::Result<String> {
        let request = Request::MarkGood {
            snapshot: snapshot_arg(snapshot),
        };
        self.manage(conn, &header, request).await
    }

    /// Mark a snapshot bad (`health-checker mark-bad`); empty: the trial.
    /// Returns what the command says. Root only.
    async fn mark_bad(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
        snapshot: String,
    ) -> fdo::Result<String> {
        let request = Request::MarkBad {
            snapshot: snapshot_arg(snapshot),
        };
        self.manage(conn, &header, request).await
    }

    /// Go back to the known-good snapshot (`health-checker rollback`) and,
    /// unless `no_reboot`, reboot into it. Returns what the command says
    /// (before the reboot). Root only.
    async fn rollback(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
        no_reboot: bool,
    ) -> fdo::Result<String> {
        self.manage(conn, &header, Request::Rollback { no_reboot })
            .await
    }

    /// Whether the system is in degraded mode.
    #[zbus(property(emits_changed_signal = "false"), name = "Degraded")]
    fn degraded_property(&self) -> fdo::Result<bool> {
        property(self, "Degraded", properties::degraded)
    }

    /// The known-good snapshot's path; empty when there is none.
    #[zbus(property(emits_changed_signal = "false"))]
    fn known_good(&self) -> fdo::Result<String> {
        property(self, "KnownGood", properties::known_good)
    }

    /// The trial snapshot's path; empty when there is none.
    #[zbus(property(emits_changed_signal = "false"))]
    fn trial(&self) -> fdo::Result<String> {
        property(self, "Trial", properties::trial)
    }

    /// The booted snapshot's path.
    #[zbus(property(emits_changed_signal = "false"))]
    fn booted(&self) -> fdo::Result<String> {
        property(self, "Booted", properties::booted)
    }

    /// A trial failed; the system rolls back to the known-good snapshot and
    /// reboots. Arguments: a one-line summary, the alert as JSON.
    #[zbus(signal, name = "Rollback")]
    async fn rollback_signal(
        emitter: &SignalEmitter<'_>,
        summary: &str,
        json: &str,
    ) -> zbus::Result<()>;

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
    start_with(
        address,
        Handlers {
            status,
            last_verdict,
            manage: None,
        },
    )
}

/// [`start`] with the management methods answered by `handlers.manage`.
pub fn start_with(address: Option<&str>, handlers: Handlers) -> anyhow::Result<Connection> {
    let (builder, bus) = match address {
        Some(a) => (Builder::address(a), a),
        None => (Builder::system(), "the system bus"),
    };
    let service = Service {
        status: handlers.status,
        last_verdict: handlers.last_verdict,
        manage: handlers.manage,
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

/// Serve until the process is stopped (`health-checker dbus-service`), the
/// name is lost or the bus goes away (both errors: systemd restarts the
/// unit or bus activation starts it again).
pub fn serve(address: Option<&str>, handlers: Handlers) -> anyhow::Result<()> {
    let bus = address.unwrap_or("the system bus");
    let conn = start_with(address, handlers)?;
    tracing::info!(
        "serving {HC_NAME} as {}",
        conn.unique_name().map_or("?", |n| n.as_str())
    );
    // Requests are answered on zbus's own thread; this one waits for the
    // end: `NameLost` for our name, or the end of the connection.
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.DBus")
        .and_then(|b| b.interface("org.freedesktop.DBus"))
        .and_then(|b| b.member("NameLost"))
        .and_then(|b| b.add_arg(HC_NAME))
        .map(|b| b.build())
        .context("building the NameLost match rule")?;
    let mut end = zbus::blocking::MessageIterator::for_match_rule(rule, &conn, None)
        .with_context(|| format!("watching for the loss of {HC_NAME} on {bus}"))?;
    match end.next() {
        Some(Ok(_)) => bail!("lost the name {HC_NAME} on {bus}"),
        Some(Err(e)) => Err(e).with_context(|| format!("the connection to {bus} failed")),
        None => bail!("the connection to {bus} was closed"),
    }
}

/// Whether [`fetch_status`] may have the bus start the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Ask only a service that already runs.
    RunningOnly,
    /// Let the bus start it from its activation file (a user who is not
    /// root has no other way to the status).
    Allow,
}

/// The status from the service, or `Ok(None)` when no bus is there or the
/// service is not there: not running ([`Activation::RunningOnly`]), not
/// installed, or gone while answering. An error means the service is there
/// but failed to answer.
pub fn fetch_status(
    address: Option<&str>,
    activation: Activation,
) -> anyhow::Result<Option<Value>> {
    let conn = match address {
        Some(a) => connect_address(a),
        None => connect_system(),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) if crate::systemd::is_absent(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let dbus =
        zbus::blocking::fdo::DBusProxy::new(&conn).context("talking to the D-Bus bus daemon")?;
    let name = zbus::names::BusName::try_from(HC_NAME).context("our bus name")?;
    let owned = || {
        dbus.name_has_owner(name.clone())
            .with_context(|| format!("asking the bus whether {HC_NAME} runs"))
    };
    if activation == Activation::RunningOnly && !owned()? {
        return Ok(None);
    }
    let reply = match conn.call_method(Some(HC_NAME), HC_PATH, Some(HC_INTERFACE), "GetStatus", &())
    {
        Ok(reply) => reply,
        // No such service (`ServiceUnknown`: not running, or not
        // activatable), or it stopped while answering (`NoReply`:
        // "recipient disconnected"): not there. A service that is still
        // there and failed is an error.
        Err(e) => {
            if matches!(owned(), Ok(false)) {
                return Ok(None);
            }
            return Err(e).with_context(|| format!("calling {HC_INTERFACE}.GetStatus"));
        }
    };
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
        let status = json!({
            "degraded": {"since": 1, "reason": "x"},
            "booted": {"error": "statfs /: input/output error"},
            "boot_environment": {
                "known_good": {"id": 256, "path": "@/.snapshots/1/snapshot", "number": 1},
                "trial": null,
            },
        });
        assert_eq!(properties::degraded(&status), Ok(true));
        assert_eq!(
            properties::known_good(&status).as_deref(),
            Ok("@/.snapshots/1/snapshot")
        );
        assert_eq!(properties::trial(&status).as_deref(), Ok(""));
        assert_eq!(
            properties::booted(&status),
            Err("statfs /: input/output error".to_owned())
        );

        let unreadable = json!({
            "degraded": null,
            "boot_environment": {"error": "grubenv: both copies are damaged"},
        });
        assert_eq!(properties::degraded(&unreadable), Ok(false));
        for get in [properties::known_good, properties::trial] {
            assert_eq!(
                get(&unreadable),
                Err("grubenv: both copies are damaged".to_owned())
            );
        }
        assert_eq!(
            properties::degraded(&json!({"degraded": {"error": "e"}})),
            Err("e".into())
        );
        assert_eq!(properties::booted(&json!([1, 2])).as_deref(), Ok(""));
    }
}
