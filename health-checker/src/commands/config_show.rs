//! `health-checker config show`: the effective configuration and where each
//! value came from.

use clap::{Args, Subcommand};

use crate::config;
use crate::exit::{Code, CodeExt};
use crate::paths::Root;

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every effective value and the file it came from.
    Show(ShowArgs),
}

/// Options of `config show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Print JSON: a list of {key, value, origin}.
    #[arg(long)]
    pub json: bool,
}

/// Run a `config` subcommand.
pub fn run(root: &Root, cmd: &ConfigCommand) -> anyhow::Result<Code> {
    let ConfigCommand::Show(args) = cmd;
    let loaded = config::load(root).code(Code::Config)?;
    let entries = loaded.entries();
    if args.json {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|(k, v, o)| {
                serde_json::json!({
                    "key": k,
                    "value": v,
                    "origin": match o {
                        config::Origin::Default => serde_json::Value::Null,
                        config::Origin::File(p) => p.to_string_lossy().into(),
                    },
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        if loaded.files.is_empty() {
            println!("# no configuration files: built-in defaults");
        }
        for f in &loaded.files {
            println!("# read {}", f.display());
        }
        let width = entries
            .iter()
            .map(|(k, v, _)| k.len() + v.to_string().len() + 3)
            .max();
        for (k, v, o) in &entries {
            let text = format!("{k} = {v}");
            println!("{text:<w$}  # {o}", w = width.unwrap_or(0));
        }
    }
    Ok(Code::Ok)
}
