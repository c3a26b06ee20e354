//! `health-checker doctor [--json]`: whether this system's boot is really
//! protected, one check per line (`ok`, `warn` or `fail`, with the fix).
//! Exit code 0 when no check fails, 1 when the boot is not protected.
//!
//! The facts are read once ([`facts::gather`]); each check is a pure
//! function over them ([`checks`]).

pub mod checks;
pub mod facts;
pub mod grubcfg;

use clap::Args;
use serde::Serialize;

use crate::exit::Code;
use crate::paths::Root;
use checks::{Finding, Level};

/// Options of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No check failed.
    pub protected: bool,
    pub checks: Vec<Finding>,
}

impl Report {
    pub fn new(checks: Vec<Finding>) -> Self {
        Report {
            protected: checks.iter().all(|c| c.level != Level::Fail),
            checks,
        }
    }

    /// One line per check, then a summary line.
    pub fn text(&self) -> String {
        let width = self.checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{:<4}  {:<width$}  {}",
                c.level.as_str(),
                c.check,
                c.message
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!(" -- fix: {fix}"));
            }
            out.push('\n');
        }
        let count = |l: Level| self.checks.iter().filter(|c| c.level == l).count();
        if self.protected {
            out.push_str(&format!(
                "the boot is protected ({} warning(s))\n",
                count(Level::Warn)
            ));
        } else {
            out.push_str(&format!(
                "the boot is NOT protected: {} check(s) failed, {} warning(s)\n",
                count(Level::Fail),
                count(Level::Warn)
            ));
        }
        out
    }

    pub fn code(&self) -> Code {
        if self.protected {
            Code::Ok
        } else {
            Code::BootFailed
        }
    }
}

/// Run `doctor` on the system at `root`.
pub fn run(root: &Root, args: &DoctorArgs) -> anyhow::Result<Code> {
    let report = Report::new(checks::all(&facts::gather(root)));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.code())
}
