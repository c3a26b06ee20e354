//! What the checker does to the system once it has decided: reboot, stop
//! services, alert. The trait is the seam the engine uses; the real
//! implementation (systemd over D-Bus, motd, wall, hooks, journal, D-Bus
//! signal) is [`SystemActions`], in the modules beside it.

pub mod dbus;
pub mod hooks;
pub mod journal;
pub mod motd;
pub mod settings;
pub mod system;
pub mod wall;

pub use settings::{ActionSettings, Bus};
pub use system::{AlertFailures, StopFailures, SystemActions};

use serde::{Deserialize, Serialize};

use crate::probes::stop::StopAction;
use crate::verdict::ProbeResult;

/// Which event an alert reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// A trial failed and the system rolls back to the known-good snapshot.
    Rollback,
    /// GRUB ran out of attempts for a trial and booted the known-good one.
    GrubFallback,
    /// A known-good system is broken; services stopped, no more reboots.
    Degraded,
}

/// The version of the alert document hooks and D-Bus listeners get
/// (`"schema"`, docs/alerts.md). A field added keeps it; a field removed,
/// renamed or changed in meaning increases it.
pub const ALERT_SCHEMA: u32 = 1;

/// An alert for the admin: sent to every configured channel. As JSON (what
/// hooks read) it is `{"schema", "kind", "summary", "details"}`, documented
/// field by field in docs/alerts.md; reading ignores `schema`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    /// One line for people: what happened and what to do.
    pub summary: String,
    /// The full record (verdict, probes, snapshots) as JSON; alert hooks get
    /// the whole alert on standard input. The journal entry takes its
    /// `SNAPSHOT` field from `snapshot` (a path, or an object with a `path`)
    /// and its `VERDICT` field from `verdict` (a string, or an object with a
    /// `verdict`), when present.
    pub details: serde_json::Value,
}

impl Serialize for Alert {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Alert", 4)?;
        st.serialize_field("schema", &ALERT_SCHEMA)?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("summary", &self.summary)?;
        st.serialize_field("details", &self.details)?;
        st.end()
    }
}

/// What entering degraded mode did.
#[derive(Debug)]
pub struct DegradedReport {
    /// Each plugin stop action's result, in the order they ran.
    pub stop_actions: Vec<ProbeResult>,
    /// Stopping the configured units: `Ok` when each stopped (or there
    /// were none).
    pub units: anyhow::Result<()>,
}

impl DegradedReport {
    /// What went wrong, one error per failed part.
    pub fn problems(&self) -> Vec<anyhow::Error> {
        let mut out: Vec<anyhow::Error> = self
            .stop_actions
            .iter()
            .filter(|r| r.result.is_failure())
            .map(|r| {
                anyhow::anyhow!(
                    "stop action of {}: {}",
                    r.name,
                    r.reason.as_deref().unwrap_or("failed")
                )
            })
            .collect();
        if let Err(e) = &self.units {
            out.push(anyhow::anyhow!("{e:#}"));
        }
        out
    }
}

/// What the engine needs to act on the system.
pub trait Actions {
    /// Reboot cleanly through systemd (services stop first). Returns once the
    /// reboot is queued; honours the no-reboot switch by logging instead.
    fn reboot(&self, why: &str) -> anyhow::Result<()>;
    /// Enter degraded mode, as one step: run every plugin's stop action
    /// (each one, whatever the others did), then stop `units` (`[degraded]
    /// stop_services`, often empty). The report says what each part did.
    fn enter_degraded(&self, stop_actions: &[StopAction], units: &[String]) -> DegradedReport;
    /// Send an alert to every configured channel. A channel that fails is
    /// reported in the error but does not keep the others from being tried.
    fn alert(&self, alert: &Alert) -> anyhow::Result<()>;
    /// Tell listeners that `snapshot` was promoted to known-good: a notice,
    /// not an alarm (no login message, no `wall`, no alert hooks). The real
    /// implementation emits the D-Bus signal `Promoted(summary, json)`,
    /// where the JSON is `{"kind": "promoted", "summary", "details"}` like
    /// an alert's. The default does nothing.
    fn notify_promoted(&self, summary: &str, details: &serde_json::Value) -> anyhow::Result<()> {
        let _ = (summary, details);
        Ok(())
    }
}
