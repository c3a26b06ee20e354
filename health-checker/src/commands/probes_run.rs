//! `health-checker probes run NAME`: run one probe by hand (for plugin
//! authors), ignoring its `after` ordering.

use clap::Args;

use crate::config;
use crate::exit::{Code, CodeExt};
use crate::paths::Root;
use crate::probes::{discover, runner};
use crate::verdict::Outcome;

use super::check::print_result;
use super::ContextArgs;

/// Options of `probes run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The probe to run.
    pub name: String,
    #[command(flatten)]
    pub context: ContextArgs,
}

/// Run `probes run`: exit 0 only if the probe passed or was skipped.
pub fn run(root: &Root, args: &RunArgs) -> anyhow::Result<Code> {
    let loaded = config::load(root).code(Code::Config)?;
    let found = discover(root, &loaded.config.probes);
    if let Some(b) = found.broken.iter().find(|b| b.name == args.name) {
        println!("{}: cannot run: {}", b.name, b.reason);
        return Ok(Code::BootFailed);
    }
    if let Some(m) = found.masked.iter().find(|m| m.name == args.name) {
        println!("{}: masked by {}", m.name, m.file.display());
        return Ok(Code::BootFailed);
    }
    let Some(probe) = found.probes.iter().find(|p| p.name == args.name) else {
        anyhow::bail!(crate::exit::with_code(
            Code::Usage,
            anyhow::anyhow!(
                "no probe named {:?} (see `health-checker probes list`)",
                args.name
            )
        ));
    };
    let result = runner::run_one(root, &loaded.config, probe, &args.context.context());
    let output = crate::probes::display::printable(&result.output);
    if !output.is_empty() {
        print!("{output}");
        if !output.ends_with('\n') {
            println!();
        }
    }
    print_result(&result);
    Ok(match result.result {
        Outcome::Pass | Outcome::Skip => Code::Ok,
        _ => Code::BootFailed,
    })
}
