//! The subcommands, one module each. Each takes its parsed arguments and the
//! root acted on, prints for people (or JSON), and returns the exit code.

pub mod arm;
pub mod boot_entries;
pub mod change;
pub mod check;
pub mod config_show;
pub mod dbus_service;
pub mod deadline;
pub mod doctor;
pub mod history_show;
pub mod mark;
pub mod probes_list;
pub mod probes_run;
pub mod rollback;
pub mod snapshot_arg;
pub mod status;
pub mod status_print;
pub mod system;

use std::path::PathBuf;

use clap::Args;

use crate::probes::ProbeContext;
use crate::systemd::Bus;

/// Where the built-in probes look; hidden, for tests and image inspection.
#[derive(Debug, Clone, Args, Default)]
pub struct ContextArgs {
    /// D-Bus address of systemd's manager (default: the system bus).
    #[arg(long, hide = true, value_name = "ADDRESS")]
    pub systemd_bus: Option<String>,
    /// Mount table read by the fstab check.
    #[arg(long, hide = true, value_name = "FILE")]
    pub mountinfo: Option<PathBuf>,
}

impl ContextArgs {
    /// The probe context these options describe.
    pub fn context(&self) -> ProbeContext {
        let mut ctx = ProbeContext::default();
        if let Some(a) = &self.systemd_bus {
            ctx.bus = Bus::Address(a.clone());
        }
        if let Some(m) = &self.mountinfo {
            ctx.mountinfo = m.clone();
        }
        ctx
    }
}
