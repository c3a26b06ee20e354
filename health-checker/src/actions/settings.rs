//! What the system actions need from the configuration, as plain values.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::systemd::Bus;

/// Settings of [`super::SystemActions`]; the configuration's `[boot]` and
/// `[degraded]` keys map onto them one to one.
#[derive(Debug, Clone)]
pub struct ActionSettings {
    /// `boot.no_reboot`: log the reboot instead of doing it.
    pub no_reboot: bool,
    /// `degraded.motd`: write a login message.
    pub motd: bool,
    /// `degraded.wall`: broadcast to logged-in terminals.
    pub wall: bool,
    /// `degraded.alert_dir`: the alert hooks' directory, as seen inside the
    /// system (it is looked up under the root acted on).
    pub alert_dir: PathBuf,
    /// `degraded.alert_timeout`: how long `wall` and each hook may run.
    pub alert_timeout: Duration,
    /// `degraded.stop_timeout`: how long to wait for stopped units to be
    /// inactive.
    pub stop_timeout: Duration,
    /// The D-Bus to use.
    pub bus: Bus,
    /// The `wall` program (found on `PATH` unless absolute).
    pub wall_program: PathBuf,
}

impl Default for ActionSettings {
    fn default() -> Self {
        ActionSettings {
            no_reboot: false,
            motd: true,
            wall: true,
            alert_dir: PathBuf::from("/etc/health-checker/alert.d"),
            alert_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(90),
            bus: Bus::System,
            wall_program: PathBuf::from("wall"),
        }
    }
}
