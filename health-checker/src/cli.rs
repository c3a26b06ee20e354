//! The command-line definition (also the source of the manual pages and shell
//! completions) and the dispatch to the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit::Code;
use crate::paths::Root;

/// Boot health checks and automatic rollback for btrfs snapshot roots.
#[derive(Debug, Parser)]
#[command(name = "health-checker", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Act on the system mounted at DIR instead of `/`.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// More output; repeat for more detail.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Global {
    pub fn root(&self) -> Root {
        Root::new(&self.root)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read and edit the boot environment (grub-editenv's jobs, crash-safe).
    Bootenv(crate::bootenv::BootenvArgs),
    /// Write manual pages and shell completions (used by `make install`).
    #[command(hide = true)]
    Generate(crate::generate::GenerateArgs),
    /// Run the probes of a phase, judge the boot and act on the verdict.
    Check(crate::commands::check::CheckArgs),
    /// List the probes or run one by hand.
    #[command(subcommand)]
    Probes(ProbesCommand),
    /// Show the effective configuration.
    #[command(subcommand)]
    Config(crate::commands::config_show::ConfigCommand),
    /// Show the booted, default, known-good and trial snapshots, degraded
    /// mode, the last result of every probe and the last events.
    Status(crate::commands::status::StatusArgs),
    /// Show the recorded events (verdicts, promotions, rollbacks, ...).
    History(crate::commands::history_show::HistoryArgs),
    /// Arm a snapshot as the trial (it also becomes the default subvolume),
    /// so GRUB protects its next boots.
    Arm(crate::commands::arm::ArmArgs),
    /// Make a snapshot the known-good one by hand.
    MarkGood(crate::commands::mark::MarkGoodArgs),
    /// Mark a snapshot bad by hand: disarm it, and restore the default.
    MarkBad(crate::commands::mark::MarkBadArgs),
    /// Go back to the known-good snapshot by hand, and reboot into it.
    Rollback(crate::commands::rollback::RollbackArgs),
    /// Fail the boot if no verdict is reached in time (run by
    /// health-checker-deadline.service).
    Deadline(crate::commands::deadline::DeadlineArgs),
    /// Say whether this system's boot is protected: one line per check
    /// (ok, warn or fail, with the fix); exit 1 when it is not.
    Doctor(crate::commands::doctor::DoctorArgs),
    /// The systemd-boot backend's boot entries on the ESP: sync them with
    /// the boot state, or list them.
    BootEntries(crate::commands::boot_entries::BootEntriesArgs),
    /// Serve the status on the D-Bus system bus (run by
    /// health-checker-dbus.service).
    #[command(hide = true)]
    DbusService(crate::commands::dbus_service::DbusServiceArgs),
}

/// `probes` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProbesCommand {
    /// List every probe with its phase, severity and origin.
    List(crate::commands::probes_list::ListArgs),
    /// Run one probe, print its output and result.
    Run(crate::commands::probes_run::RunArgs),
}

/// Run a parsed command line; the returned code is the process's exit code.
pub fn run(cli: Cli) -> anyhow::Result<Code> {
    let root = cli.global.root();
    match cli.command {
        Command::Bootenv(args) => crate::bootenv::run(&root, args),
        Command::Generate(args) => crate::generate::run(args),
        Command::Check(args) => crate::commands::check::run(&root, &args),
        Command::Probes(ProbesCommand::List(args)) => {
            crate::commands::probes_list::run(&root, &args)
        }
        Command::Probes(ProbesCommand::Run(args)) => crate::commands::probes_run::run(&root, &args),
        Command::Config(cmd) => crate::commands::config_show::run(&root, &cmd),
        Command::Status(args) => crate::commands::status::run(&root, &args),
        Command::History(args) => crate::commands::history_show::run(&root, &args),
        Command::Arm(args) => crate::commands::arm::run(&root, &args),
        Command::MarkGood(args) => crate::commands::mark::run_good(&root, &args),
        Command::MarkBad(args) => crate::commands::mark::run_bad(&root, &args),
        Command::Rollback(args) => crate::commands::rollback::run(&root, &args),
        Command::Deadline(args) => crate::commands::deadline::run(&root, &args),
        Command::Doctor(args) => crate::commands::doctor::run(&root, &args),
        Command::BootEntries(args) => crate::commands::boot_entries::run(&root, &args),
        Command::DbusService(args) => crate::commands::dbus_service::run(&root, &args),
    }
}
