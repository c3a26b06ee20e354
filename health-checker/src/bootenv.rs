//! `health-checker bootenv`: grub-editenv's jobs on the crash-safe store.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use grub_env::Store;

use crate::exit::{Code, CodeExt};
use crate::paths::{self, Root};

#[derive(Debug, Args)]
pub struct BootenvArgs {
    /// The primary environment file (its backup is FILE.bak). Default: the
    /// configured location under --root.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(subcommand)]
    pub action: BootenvAction,
}

#[derive(Debug, Subcommand)]
pub enum BootenvAction {
    /// Print every key=value, as `grub-editenv list` does.
    List,
    /// Print the value of KEY; exit 1 if it is not set.
    Get { key: String },
    /// Set one or more KEY=VALUE pairs in one crash-safe write.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
    /// Remove one or more keys in one crash-safe write.
    Unset {
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// Create the environment (both copies) if it does not exist.
    Create,
}

/// The store for `--file`, or the configured default under the root.
pub fn store_for(root: &Root, file: Option<PathBuf>, configured: Option<&str>) -> Store {
    let path = file.unwrap_or_else(|| root.join(configured.unwrap_or(paths::DEFAULT_GRUBENV)));
    Store::for_file(path)
}

pub fn run(root: &Root, args: BootenvArgs) -> anyhow::Result<Code> {
    let store = store_for(root, args.file, None);
    let primary = store.primary().to_string();
    match args.action {
        BootenvAction::List => {
            let loaded = load(&store)?;
            print!("{}", loaded.env);
        }
        BootenvAction::Get { key } => {
            let loaded = load(&store)?;
            match loaded.env.get(&key) {
                Some(v) => println!("{v}"),
                None => {
                    eprintln!("health-checker: {key} is not set in {primary}");
                    return Ok(Code::BootFailed);
                }
            }
        }
        BootenvAction::Set { pairs } => {
            let mut parsed = Vec::new();
            for p in &pairs {
                match p.split_once('=') {
                    Some((k, v)) => parsed.push((k.to_string(), v.to_string())),
                    None => {
                        return Err(crate::exit::with_code(
                            Code::Usage,
                            anyhow::anyhow!("{p:?} is not KEY=VALUE"),
                        ))
                    }
                }
            }
            store
                .update(|env| {
                    for (k, v) in &parsed {
                        env.set(k, v).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
                .with_context(|| format!("writing boot environment {primary}"))
                .code(Code::BootEnv)?;
        }
        BootenvAction::Unset { keys } => {
            store
                .update(|env| {
                    for k in &keys {
                        env.unset(k);
                    }
                    Ok(())
                })
                .with_context(|| format!("writing boot environment {primary}"))
                .code(Code::BootEnv)?;
        }
        BootenvAction::Create => {
            let loaded = load(&store)?;
            if loaded.source == grub_env::Source::Neither {
                store
                    .update(|_| Ok(()))
                    .with_context(|| format!("creating boot environment {primary}"))
                    .code(Code::BootEnv)?;
            }
        }
    }
    Ok(Code::Ok)
}

/// Load, reporting skipped copies on standard error.
fn load(store: &Store) -> anyhow::Result<grub_env::Loaded> {
    let loaded = store
        .load()
        .with_context(|| format!("reading boot environment {}", store.primary()))
        .code(Code::BootEnv)?;
    for p in &loaded.problems {
        tracing::warn!("boot environment: skipped {p}");
    }
    Ok(loaded)
}
