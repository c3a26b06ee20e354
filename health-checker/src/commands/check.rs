//! `health-checker check --phase early|late`: run the probes of a phase,
//! judge the boot and act on the verdict (promote, roll back, retry,
//! degrade), or with `--dry-run` explain what would be done.

use anyhow::Context;
use clap::Args;

use crate::engine::{run_check, CheckOptions, CheckReport, EngineConfig};
use crate::exit::Code;
use crate::paths::Root;
use crate::probes::{self, check_phase, error_result, ProbeContext};
use crate::state::{current_boot_id, unix_now};
use crate::verdict::{Outcome, Phase, PhaseReport, ProbeResult, Verdict};

use super::system::{engine_config, LoadedConfig, System};
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
    /// Only run the probes and print their verdict; do not judge the boot
    /// (for plugin authors and image builders).
    #[arg(long, conflicts_with = "dry_run")]
    pub probes_only: bool,
    /// Do everything except the reboot itself.
    #[arg(long)]
    pub no_reboot: bool,
    #[command(flatten)]
    pub context: ContextArgs,
}

fn parse_phase(s: &str) -> Result<Phase, String> {
    s.parse()
}

/// Run `check`: exit 0 when the phase passed, 1 when it failed.
pub fn run(root: &Root, args: &CheckArgs) -> anyhow::Result<Code> {
    // Judging the boot runs every probe as root and acts on the boot: as
    // anyone else the probes would run with the wrong rights and the
    // verdict could not be recorded. `--probes-only` judges nothing.
    if !args.probes_only && !nix::unistd::geteuid().is_root() {
        return Err(crate::exit::with_code(
            Code::NotRoot,
            anyhow::anyhow!(
                "check must be run as root (uid {} is not); \
                 `check --probes-only` runs the probes without judging the boot",
                nix::unistd::geteuid()
            ),
        ));
    }
    if args.probes_only {
        let report = check_phase(root, args.phase, &args.context.context());
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report_json(&report)?)?);
        } else {
            print_report(&report);
        }
        return Ok(verdict_code(&report));
    }

    let loaded = LoadedConfig::load(root);
    let base = args.context.context();
    let sys = System::open(root, loaded.config, base.bus.clone(), args.no_reboot)?;
    let ctx = sys.probe_context(base);
    // A configuration that cannot be read fails the phase, with the
    // defaults for everything else: never "all is well", never a crash loop
    // (the engine's retry budget applies).
    let report = match &loaded.error {
        Some(e) => PhaseReport::new(
            args.phase,
            vec![error_result(
                "configuration",
                format!("cannot read the configuration: {e}"),
            )],
        ),
        None => probes::run_phase(root, &sys.config, args.phase, &ctx),
    };
    if !args.json {
        print_report(&report);
    }
    let judged = judge(&sys, &report, &ctx, args.dry_run, loaded.error.as_deref());
    match &judged {
        _ if args.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&check_json(&report, &judged)?)?
            );
        }
        Ok(done) => print!("{}", done.text()),
        Err(_) => {}
    }
    judged?;
    Ok(verdict_code(&report))
}

/// `check --json`: the probes' report and what was decided. When the boot
/// could not be judged (an unreadable boot environment, ...), the command
/// fails, so the verdict is `"error"` with the reason in `"error"`, never
/// the probes' `"pass"` beside a failing exit code.
pub fn check_json(
    report: &PhaseReport,
    judged: &anyhow::Result<CheckReport>,
) -> anyhow::Result<serde_json::Value> {
    let mut v = report_json(report)?;
    match judged {
        Ok(done) => {
            v["booted"] = serde_json::to_value(&done.booted)?;
            v["default"] = serde_json::to_value(&done.default)?;
            v["decision"] = serde_json::to_value(&done.decision)?;
            v["dry_run"] = done.dry_run.into();
            v["notes"] = serde_json::to_value(&done.notes)?;
        }
        Err(e) => {
            v["probes_verdict"] = v["verdict"].take();
            v["verdict"] = "error".into();
            v["error"] = crate::exit::chain(e).into();
        }
    }
    Ok(v)
}

/// Judge this boot with a phase's report and act on it (or only explain,
/// with `dry_run`). The deadline uses it too, with a report of its own.
/// `config_error`: why the configuration could not be read, if it could not
/// (`sys` then holds the defaults).
pub fn judge(
    sys: &System,
    report: &PhaseReport,
    ctx: &ProbeContext,
    dry_run: bool,
    config_error: Option<&str>,
) -> anyhow::Result<CheckReport> {
    let boot_id = current_boot_id().context("identifying this boot")?;
    let config = EngineConfig {
        unreadable: config_error.map(str::to_owned),
        ..engine_config(&sys.config)
    };
    let stop_actions = probes::stop_actions(&sys.root, &sys.config, ctx);
    let opts = CheckOptions {
        report,
        config: &config,
        stop_actions: &stop_actions,
        stop_units: &sys.config.degraded.stop_services,
        dry_run,
        now: unix_now(),
        boot_id: &boot_id,
    };
    let judged = run_check(
        &sys.env,
        &sys.snapshots,
        &sys.actions,
        &sys.history,
        &sys.state,
        &opts,
    );
    // Metrics follow every verdict, also one whose records partly failed.
    let metrics = (!dry_run).then(|| sys.refresh_metrics()).flatten();
    let mut done = judged?;
    done.notes.extend(metrics);
    if !dry_run {
        // A damaged copy of the environment (one GRUB still reads, or the
        // other one) is rewritten even when the decision changed nothing:
        // GRUB cannot count attempts in a block with damaged padding.
        match sys.env.repair() {
            Ok(repaired) if !repaired.is_empty() => done.notes.push(format!(
                "repaired the boot environment: {}",
                repaired.join("; ")
            )),
            Ok(_) => {}
            Err(e) => done.notes.push(format!("warning: {e:#}")),
        }
    }
    Ok(done)
}

fn verdict_code(report: &PhaseReport) -> Code {
    match report.verdict {
        Verdict::Pass => Code::Ok,
        Verdict::Fail => Code::BootFailed,
    }
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
            "{word:<7} {} ({severity}, {} ms): {}",
            p.name,
            p.duration_ms,
            crate::probes::display::one_line(r)
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
                cost: Default::default(),
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
        // A boot that could not be judged is no pass, whatever the probes.
        let failed: anyhow::Result<CheckReport> = Err(anyhow::anyhow!(
            "no copy of the boot environment can be read"
        ));
        let j = check_json(&r, &failed).unwrap();
        assert_eq!(j["verdict"], "error");
        assert_eq!(j["probes_verdict"], "pass");
        assert!(
            j["error"].as_str().unwrap().contains("boot environment"),
            "{j}"
        );
        assert_eq!(
            v["probes"][0],
            serde_json::json!({
                "name": "p", "severity": "required", "result": "pass",
                "duration_ms": 3, "reason": null, "output": "hi\n"
            })
        );
    }
}
