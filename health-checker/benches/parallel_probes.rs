//! Eight probes that each sleep one second: run by our runner (in parallel,
//! bounded by `probes.parallel`) and one after another, as `run-parts` would.
//!
//! `cargo bench -p health-checker --bench parallel_probes`

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use health_checker::config::Config;
use health_checker::paths::Root;
use health_checker::probes::{run_phase, ProbeContext};
use health_checker::verdict::{Phase, Verdict};

const PROBES: usize = 8;
const ROUNDS: usize = 3;

fn setup(dir: &Path) {
    let plugins = dir.join("usr/lib/health-checker/plugins.d");
    std::fs::create_dir_all(&plugins).unwrap();
    for d in [
        dir.to_path_buf(),
        dir.join("usr"),
        dir.join("usr/lib"),
        dir.join("usr/lib/health-checker"),
        plugins.clone(),
    ] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for i in 0..PROBES {
        let m = plugins.join(format!("sleep{i}.toml"));
        std::fs::write(
            &m,
            "description = \"sleeps one second\"\nphase = \"late\"\nseverity = \"required\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = plugins.join(format!("sleep{i}"));
        std::fs::write(&s, "#!/bin/sh\nsleep 1\n").unwrap();
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn ours(root: &Root, parallel: usize) -> Duration {
    let mut config = Config::default();
    config.probes.parallel = parallel;
    config.probes.insecure_ok = !nix::unistd::geteuid().is_root();
    let start = Instant::now();
    let report = run_phase(root, &config, Phase::Late, &ProbeContext::default());
    let took = start.elapsed();
    assert_eq!(report.verdict, Verdict::Pass, "{report:#?}");
    assert_eq!(report.probes.len(), PROBES);
    took
}

fn sequential(dir: &Path) -> Duration {
    let plugins = dir.join("usr/lib/health-checker/plugins.d");
    let start = Instant::now();
    for i in 0..PROBES {
        let st = Command::new(plugins.join(format!("sleep{i}")))
            .arg("check")
            .status()
            .unwrap();
        assert!(st.success());
    }
    start.elapsed()
}

fn report(what: &str, runs: &[Duration]) {
    let secs: Vec<f64> = runs.iter().map(Duration::as_secs_f64).collect();
    let min = secs.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = secs.iter().cloned().fold(0.0, f64::max);
    let mean = secs.iter().sum::<f64>() / secs.len() as f64;
    println!(
        "{what:<44} mean {mean:6.3} s  min {min:6.3} s  max {max:6.3} s  ({} runs)",
        secs.len()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let root = Root::new(dir.path());
    println!("{PROBES} probes, each `sleep 1`, {ROUNDS} rounds each");
    for parallel in [8, 4] {
        let runs: Vec<Duration> = (0..ROUNDS).map(|_| ours(&root, parallel)).collect();
        report(
            &format!("health-checker runner, parallel = {parallel}"),
            &runs,
        );
    }
    let runs: Vec<Duration> = (0..ROUNDS).map(|_| sequential(dir.path())).collect();
    report("one after another (as run-parts)", &runs);
    sweep_cost();
}

/// What each probe's end pays to find processes that left its group: one
/// scan of every process's environment, here with 1000 extra processes
/// running.
fn sweep_cost() {
    const EXTRA: usize = 1000;
    const SWEEPS: usize = 20;
    let mut extra: Vec<_> = (0..EXTRA)
        .map(|_| Command::new("sleep").arg("600").spawn().unwrap())
        .collect();
    let processes = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();
    let runs: Vec<Duration> = (0..SWEEPS)
        .map(|_| {
            let start = Instant::now();
            let killed = health_checker::probes::process::sweep("no-such-run");
            assert_eq!(killed, 0);
            start.elapsed()
        })
        .collect();
    for c in &mut extra {
        let _ = c.kill();
        let _ = c.wait();
    }
    let ms: Vec<f64> = runs.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    let min = ms.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = ms.iter().cloned().fold(0.0, f64::max);
    println!(
        "sweep for escaped processes ({processes} processes)  mean {mean:.2} ms  min {min:.2} ms  max {max:.2} ms  ({} runs)",
        ms.len()
    );
}
