//! `health-checker check --phase early|late`: run the probes of a phase and
//! print the verdict.

use clap::Args;

use crate::exit::Code;
use crate::paths::Root;
use crate::probes::check_phase;
use crate::verdict::{Outcome, Phase, PhaseReport, ProbeResult, Verdict};

use super::ContextArgs;

/// Options of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The phase to run.
    #[arg(long, value_parser = parse_phase)]
    pub phase: Phase,
    /// Decide and explain, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub context: ContextArgs,
}

fn parse_phase(s: &str) -> Result<Phase, String> {
    s.parse()
}

/// Run `check`: exit 0 when the phase passed, 1 when it failed.
pub fn run(root: &Root, args: &CheckArgs) -> anyhow::Result<Code> {
    let report = check_phase(root, args.phase, &args.context.context());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report_json(&report)?)?);
    } else {
        print_report(&report);
    }
    Ok(match report.verdict {
        Verdict::Pass => Code::Ok,
        Verdict::Fail => Code::BootFailed,
    })
}

/// The report as JSON, with `reason` present (null on a pass) for every
/// probe so consumers need not guess.
pub fn report_json(report: &PhaseReport) -> serde_json::Result<serde_json::Value> {
    let mut v = serde_json::to_value(report)?;
    if let Some(probes) = v.get_mut("probes").and_then(|p| p.as_array_mut()) {
        for p in probes {
            if let Some(o) = p.as_object_mut() {
                o.entry("reason").or_insert(serde_json::Value::Null);
            }
        }
    }
    Ok(v)
}

/// The report for people.
pub fn print_report(report: &PhaseReport) {
    let verdict = match report.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
    };
    println!("{} phase: {verdict}", report.phase);
    for p in &report.probes {
        print!("  ");
        print_result(p);
    }
}

/// One probe's result on one line.
pub fn print_result(p: &ProbeResult) {
    let word = match p.result {
        Outcome::Pass => "pass",
        Outcome::Skip => "skip",
        Outcome::Fail => "FAIL",
        Outcome::Timeout => "TIMEOUT",
        Outcome::Error => "ERROR",
    };
    let severity = match p.severity {
        crate::verdict::Severity::Required => "required",
        crate::verdict::Severity::Wanted => "wanted",
    };
    match &p.reason {
        Some(r) => println!(
            "{word:<7} {} ({severity}, {} ms): {r}",
            p.name, p.duration_ms
        ),
        None => println!("{word:<7} {} ({severity}, {} ms)", p.name, p.duration_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Severity;

    #[test]
    fn json_has_verdict_and_every_probe_field() {
        let r = PhaseReport::new(
            Phase::Late,
            vec![ProbeResult {
                name: "p".into(),
                severity: Severity::Required,
                result: Outcome::Pass,
                duration_ms: 3,
                reason: None,
                output: "hi\n".into(),
            }],
        );
        let v = report_json(&r).unwrap();
        assert_eq!(v["verdict"], "pass");
        assert_eq!(
            v["probes"][0],
            serde_json::json!({
                "name": "p", "severity": "required", "result": "pass",
                "duration_ms": 3, "reason": null, "output": "hi\n"
            })
        );
    }
}
