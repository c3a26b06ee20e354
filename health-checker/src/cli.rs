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
}

/// Run a parsed command line; the returned code is the process's exit code.
pub fn run(cli: Cli) -> anyhow::Result<Code> {
    let root = cli.global.root();
    match cli.command {
        Command::Bootenv(args) => crate::bootenv::run(&root, args),
        Command::Generate(args) => crate::generate::run(args),
    }
}
