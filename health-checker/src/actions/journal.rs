//! The journal channel of an alert: one entry with the fixed message ID of
//! its kind (see `crate::logging::message_id` and the journald catalog) and
//! structured fields an operator can search: `ALERT`, `SNAPSHOT`, `VERDICT`,
//! `HC_DETAILS`.

use super::{Alert, AlertKind};
use crate::logging::message_id;

/// The journal message ID of an alert kind.
pub fn message_id_of(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Rollback => message_id::ROLLBACK,
        AlertKind::GrubFallback => message_id::GRUB_FALLBACK,
        AlertKind::Degraded => message_id::DEGRADED,
    }
}

/// The name of an alert kind in the journal's `ALERT` field, the hooks'
/// `HC_ALERT` and the JSON: `rollback`, `grub-fallback`, `degraded`.
pub fn kind_str(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Rollback => "rollback",
        AlertKind::GrubFallback => "grub-fallback",
        AlertKind::Degraded => "degraded",
    }
}

/// The D-Bus signal name of an alert kind: `Rollback`, `GrubFallback`,
/// `Degraded`.
pub fn signal_name(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Rollback => "Rollback",
        AlertKind::GrubFallback => "GrubFallback",
        AlertKind::Degraded => "Degraded",
    }
}

/// The snapshot an alert is about, from its details: `snapshot` as a path,
/// or as an object with a `path`.
pub fn snapshot_of(alert: &Alert) -> String {
    detail(alert, "snapshot", "path")
}

/// The verdict an alert reports, from its details: `verdict` as a string,
/// or as an object with a `verdict`.
pub fn verdict_of(alert: &Alert) -> String {
    detail(alert, "verdict", "verdict")
}

/// `details[key]` as a string, or `details[key][inner]` when it is an
/// object; empty when absent.
fn detail(alert: &Alert, key: &str, inner: &str) -> String {
    match alert.details.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v
            .get(inner)
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_string(),
        None => String::new(),
    }
}

/// The probes that failed, from the details' `probes` (a phase's results):
/// their names, and each name with its reason.
fn failed_probes(alert: &Alert) -> Option<(String, String)> {
    let failed: Vec<(&str, &str)> = alert
        .details
        .get("probes")?
        .as_array()?
        .iter()
        .filter(|p| !matches!(p["result"].as_str(), Some("pass" | "skip")))
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("?"),
                p["reason"].as_str().unwrap_or("failed"),
            )
        })
        .collect();
    if failed.is_empty() {
        return None;
    }
    let names = failed
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ");
    let reasons = failed
        .iter()
        .map(|(n, r)| format!("{n}: {r}"))
        .collect::<Vec<_>>()
        .join("; ");
    Some((names, reasons))
}

/// Log the alert to the journal (through `tracing`; `logging::init` sends
/// the fields under their own names). The fields are those the journald
/// catalog names for its message ID: `SNAPSHOT`, `TRIAL` (the trial given
/// up on or rolled back), `PHASE`, `VERDICT`, `PROBE` (the failed probes),
/// `REASON`, plus `ALERT` and `HC_DETAILS`.
pub fn log(alert: &Alert) {
    let id = message_id_of(alert.kind);
    let kind = kind_str(alert.kind);
    let snapshot = snapshot_of(alert);
    let trial = match alert.kind {
        AlertKind::Rollback | AlertKind::GrubFallback => Some(snapshot.as_str()),
        AlertKind::Degraded => None,
    };
    let phase = detail(alert, "phase", "phase");
    let verdict = verdict_of(alert);
    let failed = failed_probes(alert);
    let probe = failed.as_ref().map(|(names, _)| names.as_str());
    let reason = match &failed {
        Some((_, reasons)) => reasons.clone(),
        None => detail(alert, "action", "reason"),
    };
    let reason = if reason.is_empty() {
        alert.summary.clone()
    } else {
        reason
    };
    let details = alert.details.to_string();
    let summary = &alert.summary;
    macro_rules! entry {
        ($level:ident) => {
            tracing::$level!(
                MESSAGE_ID = id,
                ALERT = kind,
                SNAPSHOT = snapshot.as_str(),
                TRIAL = trial,
                PHASE = phase.as_str(),
                VERDICT = verdict.as_str(),
                PROBE = probe,
                REASON = reason.as_str(),
                HC_DETAILS = details.as_str(),
                "{summary}"
            )
        };
    }
    match alert.kind {
        AlertKind::Degraded => entry!(error),
        AlertKind::Rollback | AlertKind::GrubFallback => entry!(warn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_entry_carries_the_message_id_and_fields() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let alert = Alert {
            kind: AlertKind::Degraded,
            summary: "probe db failed on a known-good system".into(),
            details: serde_json::json!({
                "snapshot": {"id": 258, "path": "@/.snapshots/1/snapshot"},
                "verdict": "fail",
            }),
        };
        tracing::subscriber::with_default(subscriber, || log(&alert));
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(out.contains("ERROR"), "{out}");
        assert!(
            out.contains(&format!("MESSAGE_ID=\"{}\"", message_id::DEGRADED)),
            "{out}"
        );
        assert!(
            out.contains("SNAPSHOT=\"@/.snapshots/1/snapshot\""),
            "{out}"
        );
        assert!(out.contains("VERDICT=\"fail\""), "{out}");
        assert!(out.contains("ALERT=\"degraded\""), "{out}");
        assert!(out.contains("probe db failed"), "{out}");
    }

    #[test]
    fn kind_names_match_the_json() {
        for kind in [
            AlertKind::Rollback,
            AlertKind::GrubFallback,
            AlertKind::Degraded,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind_str(kind).into())
            );
        }
    }

    #[test]
    fn each_kind_has_its_own_message_id() {
        let ids = [
            AlertKind::Rollback,
            AlertKind::GrubFallback,
            AlertKind::Degraded,
        ]
        .map(message_id_of);
        assert_eq!(
            ids,
            [
                message_id::ROLLBACK,
                message_id::GRUB_FALLBACK,
                message_id::DEGRADED
            ]
        );
    }
}
