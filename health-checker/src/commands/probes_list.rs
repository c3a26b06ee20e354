//! `health-checker probes list`: every probe, its phase, severity and origin,
//! and the plugins overridden, masked or refused.

use clap::Args;
use serde::Serialize;

use crate::config;
use crate::exit::{Code, CodeExt};
use crate::paths::Root;
use crate::probes::{discover, Kind};

/// Options of `probes list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    name: String,
    phase: Option<String>,
    severity: Option<String>,
    kind: Option<Kind>,
    origin: String,
    /// The vendor file an admin file replaces.
    overrides: Option<String>,
    masked: bool,
    /// Why the plugin cannot run.
    error: Option<String>,
    description: Option<String>,
}

/// Run `probes list`.
pub fn run(root: &Root, args: &ListArgs) -> anyhow::Result<Code> {
    let loaded = config::load(root).code(Code::Config)?;
    let found = discover(root, &loaded.config.probes);
    let mut rows: Vec<Row> = Vec::new();
    for p in &found.probes {
        rows.push(Row {
            name: p.name.clone(),
            phase: Some(p.phase.to_string()),
            severity: Some(format!("{:?}", p.severity).to_lowercase()),
            kind: Some(p.kind),
            origin: p.origin.display().to_string(),
            overrides: p.overrides.as_ref().map(|o| o.display().to_string()),
            masked: false,
            error: None,
            description: Some(p.description.clone()),
        });
    }
    for m in &found.masked {
        rows.push(Row {
            name: m.name.clone(),
            phase: None,
            severity: None,
            kind: Some(Kind::Plugin),
            origin: m.file.display().to_string(),
            overrides: m.masks.as_ref().map(|o| o.display().to_string()),
            masked: true,
            error: None,
            description: None,
        });
    }
    for b in &found.broken {
        rows.push(Row {
            name: b.name.clone(),
            phase: None,
            severity: None,
            kind: None,
            origin: b.file.display().to_string(),
            overrides: None,
            masked: false,
            error: Some(b.reason.clone()),
            description: None,
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Code::Ok);
    }
    if rows.is_empty() {
        println!("no probes");
        return Ok(Code::Ok);
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    println!("{:<w$}  {:<5}  {:<8}  ORIGIN", "NAME", "PHASE", "SEVERITY");
    for r in &rows {
        let note = if r.masked {
            match &r.overrides {
                Some(v) => format!("  (masked: {v})"),
                None => "  (masked)".into(),
            }
        } else if let Some(e) = &r.error {
            format!("  (cannot run: {e})")
        } else if let Some(v) = &r.overrides {
            format!("  (overrides {v})")
        } else {
            String::new()
        };
        println!(
            "{:<w$}  {:<5}  {:<8}  {}{note}",
            r.name,
            r.phase.as_deref().unwrap_or("-"),
            r.severity.as_deref().unwrap_or("-"),
            r.origin
        );
    }
    Ok(Code::Ok)
}
