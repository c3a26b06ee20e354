//! [`SystemActions`]: the real [`Actions`], on the machine (or the bus)
//! its settings name.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::settings::{ActionSettings, Bus};
use super::{dbus, hooks, journal, motd, wall, Actions, Alert, DegradedReport};
use crate::paths::Root;
use crate::probes::StopAction;
use crate::systemd::{self, Systemd};
use crate::verdict::{Outcome, ProbeResult};

/// The mode of the reboot job: nothing queued later may cancel it.
pub const REBOOT_MODE: &str = "replace-irreversibly";
/// The mode of stop jobs.
pub const STOP_MODE: &str = "replace";
/// The unit a clean reboot starts.
pub const REBOOT_TARGET: &str = "reboot.target";

/// Reboot, stop units and alert through systemd, files and programs.
#[derive(Debug, Clone)]
pub struct SystemActions {
    root: Root,
    settings: ActionSettings,
}

/// The alert channels that failed, each with its error; the others worked.
#[derive(Debug, thiserror::Error)]
#[error("{} of {tried} alert channels failed: {}", failures.len(), describe(failures))]
pub struct AlertFailures {
    /// How many channels were tried.
    pub tried: usize,
    /// `(channel, error)`; a channel is `motd`, `wall`, `dbus` or
    /// `hook PATH`.
    pub failures: Vec<(String, anyhow::Error)>,
}

fn describe(failures: &[(String, anyhow::Error)]) -> String {
    failures
        .iter()
        .map(|(c, e)| format!("{c}: {}", crate::exit::chain(e)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The units that could not be stopped, each with its error; the others
/// were stopped.
#[derive(Debug, thiserror::Error)]
#[error("could not stop {} of {tried} units: {}", failures.len(), describe(failures))]
pub struct StopFailures {
    /// How many units were asked to stop.
    pub tried: usize,
    /// `(unit, error)`.
    pub failures: Vec<(String, anyhow::Error)>,
}

/// A stop action's output and result in the journal, under the probe's
/// name.
fn log_stop_action(r: &ProbeResult) {
    for line in r.output.lines() {
        tracing::info!(PROBE = %r.name, "{line}");
    }
    match (r.result, &r.reason) {
        (Outcome::Pass, _) => tracing::info!(PROBE = %r.name, "stop action of {} done", r.name),
        (_, reason) => tracing::warn!(
            PROBE = %r.name,
            REASON = reason.as_deref().unwrap_or("failed"),
            "stop action of {}: {}",
            r.name,
            reason.as_deref().unwrap_or("failed")
        ),
    }
}

/// Wait until each of `units` is `inactive` or `failed`, at most `limit`;
/// returns the units that are not, each with why.
fn wait_stopped(
    systemd: &Systemd,
    mut units: Vec<String>,
    limit: Duration,
) -> Vec<(String, anyhow::Error)> {
    let start = Instant::now();
    let mut failures = Vec::new();
    let mut nap = Duration::from_millis(50);
    loop {
        let mut running = Vec::new();
        for unit in units {
            match systemd.unit_state(&unit) {
                Ok(s) if matches!(s.active_state.as_str(), "inactive" | "failed") => {
                    tracing::info!(UNIT = unit.as_str(), "stopped ({})", s.active_state);
                }
                Ok(s) => running.push((unit, s.active_state)),
                Err(e) => failures.push((unit, e.context("reading its state after the stop"))),
            }
        }
        if running.is_empty() {
            return failures;
        }
        if start.elapsed() >= limit {
            for (unit, state) in running {
                tracing::error!(UNIT = unit.as_str(), "still {state} after {limit:?}");
                let e = anyhow!(
                    "still {state} {:.0?} after its stop was queued (degraded.stop_timeout)",
                    start.elapsed()
                );
                failures.push((unit, e));
            }
            return failures;
        }
        units = running.into_iter().map(|(u, _)| u).collect();
        std::thread::sleep(nap.min(limit.saturating_sub(start.elapsed())));
        nap = (nap * 2).min(Duration::from_millis(500));
    }
}

impl SystemActions {
    /// Actions for the system at `root` with these settings.
    pub fn new(root: Root, settings: ActionSettings) -> Self {
        SystemActions { root, settings }
    }

    /// The settings in use.
    pub fn settings(&self) -> &ActionSettings {
        &self.settings
    }

    /// Refuse to act on the host's systemd for a system that is not the
    /// host (`--root` on an image): its failure is no reason to reboot us.
    fn check_host(&self, action: &str) -> anyhow::Result<()> {
        if self.settings.bus == Bus::System && !self.root.is_host() {
            bail!(
                "refusing to {action} this machine for the system at {}, which is not the running system",
                self.root.dir().display()
            );
        }
        Ok(())
    }

    /// Stop these systemd units and wait until each is stopped, at most
    /// `stop_timeout`.
    pub fn stop_units(&self, units: &[String]) -> anyhow::Result<()> {
        if units.is_empty() {
            return Ok(());
        }
        self.check_host("stop units of")?;
        let systemd = Systemd::connect(&self.settings.bus)
            .with_context(|| format!("cannot ask systemd to stop {}", units.join(", ")))?;
        let mut failures = Vec::new();
        let mut queued = Vec::new();
        for unit in units {
            match systemd.stop_unit(unit, STOP_MODE) {
                Ok(job) => {
                    tracing::info!(UNIT = unit.as_str(), "stop queued as {}", job.as_str());
                    queued.push(unit.clone());
                }
                Err(e) => {
                    tracing::error!(UNIT = unit.as_str(), "{e:#}");
                    failures.push((unit.clone(), e));
                }
            }
        }
        failures.extend(wait_stopped(&systemd, queued, self.settings.stop_timeout));
        if failures.is_empty() {
            Ok(())
        } else {
            Err(StopFailures {
                tried: units.len(),
                failures,
            }
            .into())
        }
    }

    fn signal(&self, alert: &Alert, json: &str) -> anyhow::Result<()> {
        self.emit(
            journal::signal_name(alert.kind),
            &motd::printable(&alert.summary),
            json,
        )
    }

    /// Emit our signal `name` on the configured bus; no system bus here is
    /// not an error (there is nobody to tell).
    fn emit(&self, name: &str, summary: &str, json: &str) -> anyhow::Result<()> {
        let conn = match &self.settings.bus {
            Bus::Address(a) => systemd::connect_address(a)?,
            Bus::System => match systemd::connect_system() {
                Ok(c) => c,
                Err(e) if systemd::is_absent(&e) => {
                    tracing::info!("no D-Bus system bus here; signal {name} not sent: {e:#}");
                    return Ok(());
                }
                Err(e) => return Err(e),
            },
        };
        dbus::emit_alert(&conn, name, summary, json)
    }
}

impl Actions for SystemActions {
    fn reboot(&self, why: &str) -> anyhow::Result<()> {
        if self.settings.no_reboot {
            tracing::warn!("not rebooting (no_reboot is set); the reboot was for: {why}");
            return Ok(());
        }
        self.check_host("reboot")?;
        tracing::warn!("rebooting: {why}");
        let job = Systemd::connect(&self.settings.bus)
            .context("cannot ask systemd to reboot (not rebooting any other way)")?
            .start_unit(REBOOT_TARGET, REBOOT_MODE)
            .context("asking systemd to reboot")?;
        tracing::info!("reboot queued as {}", job.as_str());
        Ok(())
    }

    fn enter_degraded(&self, stop_actions: &[StopAction], units: &[String]) -> DegradedReport {
        let stop_actions = stop_actions
            .iter()
            .map(|a| {
                let r = a.run();
                log_stop_action(&r);
                r
            })
            .collect();
        let units = self.stop_units(units).map_err(|e| {
            e.context(format!(
                "stopping units for degraded mode: {}",
                units.join(" ")
            ))
        });
        DegradedReport {
            stop_actions,
            units,
        }
    }

    fn alert(&self, alert: &Alert) -> anyhow::Result<()> {
        let s = &self.settings;
        // The journal first: it cannot fail, and it is the record.
        journal::log(alert);
        let json = serde_json::to_string(alert).context("encoding the alert as JSON")?;

        let mut tried = 1;
        let mut failures: Vec<(String, anyhow::Error)> = Vec::new();
        if s.motd {
            tried += 1;
            if let Err(e) = motd::write(&self.root, alert) {
                failures.push(("motd".into(), e));
            }
        }
        if s.wall {
            tried += 1;
            if let Err(e) = wall::broadcast(&s.wall_program, alert, s.alert_timeout) {
                failures.push(("wall".into(), e));
            }
        }
        match hooks::run_all(
            &self.root,
            &s.alert_dir,
            journal::kind_str(alert.kind),
            json.as_bytes(),
            s.alert_timeout,
        ) {
            Ok(report) => {
                for (hook, outcome) in report.hooks {
                    tried += 1;
                    if let Err(e) = outcome {
                        failures.push((format!("hook {}", hook.display()), e));
                    }
                }
            }
            Err(e) => {
                tried += 1;
                failures.push(("hooks".into(), e));
            }
        }
        tried += 1;
        if let Err(e) = self.signal(alert, &json) {
            failures.push(("dbus".into(), e));
        }

        for (channel, e) in &failures {
            tracing::error!(CHANNEL = channel.as_str(), "alert channel failed: {e:#}");
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(AlertFailures { tried, failures }.into())
        }
    }

    fn notify_promoted(&self, summary: &str, details: &serde_json::Value) -> anyhow::Result<()> {
        let json = serde_json::json!({
            "schema": super::ALERT_SCHEMA,
            "kind": "promoted",
            "summary": summary,
            "details": details,
        })
        .to_string();
        self.emit(dbus::PROMOTED_SIGNAL, &motd::printable(summary), &json)
    }
}
