//! The runner against the tools it replaces, each goal a ratio measured in
//! this one run (issue goals, figures in BENCHMARKS.md):
//!
//! - 8 probes of `sleep 1`, default configuration, against `xargs -P 8`;
//! - 50 trivial probes against `xargs -P 50` (and `run-parts`);
//! - 50 trivial probes with 400 other processes running, against the same
//!   without them;
//! - a check with no probes against `/bin/true`;
//! - the peak RSS of a check and the size of the binary;
//! - why the default parallelism is 64: 16 waiting probes at 4 to 64, and
//!   50 trivial probes at 16 to 64 (their start-ups overlap too).
//!
//! Every figure is `health-checker check --phase late --probes-only` run as
//! a process on a root of its own (start-up, configuration, discovery,
//! safety checks, one cgroup per probe, output capture), the median of
//! several rounds.
//!
//! `cargo bench -p health-checker --bench runner_ratios` (or `make bench`)

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHECKER: &str = env!("CARGO_BIN_EXE_health-checker");

/// A root with `n` late probes running `body`, and `parallel` if given.
fn root(n: usize, body: &str, parallel: Option<usize>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("usr/lib/health-checker/plugins.d");
    std::fs::create_dir_all(&plugins).unwrap();
    let etc = dir.path().join("etc/health-checker");
    std::fs::create_dir_all(&etc).unwrap();
    let mut config = String::new();
    if let Some(p) = parallel {
        config.push_str(&format!("[probes]\nparallel = {p}\n"));
    }
    if !nix::unistd::geteuid().is_root() {
        if config.is_empty() {
            config.push_str("[probes]\n");
        }
        config.push_str("insecure_ok = true\n");
    }
    std::fs::write(etc.join("config.toml"), config).unwrap();
    for d in [
        dir.path().to_path_buf(),
        dir.path().join("usr"),
        dir.path().join("usr/lib"),
        dir.path().join("usr/lib/health-checker"),
        plugins.clone(),
        dir.path().join("etc"),
        etc.clone(),
    ] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for i in 0..n {
        let m = plugins.join(format!("p{i}.toml"));
        std::fs::write(
            &m,
            "description = \"bench\"\nphase = \"late\"\nseverity = \"required\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = plugins.join(format!("p{i}"));
        std::fs::write(&s, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn scripts(dir: &Path) -> Vec<PathBuf> {
    let plugins = dir.join("usr/lib/health-checker/plugins.d");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&plugins)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_none())
        .collect();
    v.sort();
    v
}

/// Run `cmd` to its end; its wall time and peak RSS (KiB, of it and the
/// children it waited for).
#[allow(clippy::zombie_processes)] // reaped by `wait4`, for its rusage
fn timed(cmd: &mut Command) -> (Duration, u64) {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (status, maxrss) = wait4(pid);
    let took = start.elapsed();
    assert_eq!(status, 0, "{cmd:?} failed");
    (took, maxrss)
}

#[allow(unsafe_code)]
fn wait4(pid: nix::unistd::Pid) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; both pointers are to live locals.
    let mut ru: nix::libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { nix::libc::wait4(pid.as_raw(), &mut status, 0, &mut ru) };
    assert_eq!(r, pid.as_raw());
    (status, ru.ru_maxrss as u64)
}

fn check(dir: &Path) -> Command {
    let mut c = Command::new(CHECKER);
    c.arg("--root")
        .arg(dir)
        .args(["check", "--phase", "late", "--probes-only"]);
    c
}

/// `xargs -P p` running each script with `check` (through `env`, which
/// executes it in place: xargs replaces `{}` in arguments only).
fn xargs(dir: &Path, p: usize) -> Command {
    let list: Vec<String> = scripts(dir)
        .iter()
        .map(|s| s.display().to_string())
        .collect();
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(format!(
        "printf '%s\\n' {} | xargs -P {p} -I{{}} env {{}} check",
        list.join(" ")
    ));
    c
}

/// The median wall time of `rounds` runs (and the largest peak RSS).
fn median(rounds: usize, mut make: impl FnMut() -> Command) -> (Duration, u64) {
    let mut times = Vec::new();
    let mut rss = 0;
    for _ in 0..rounds {
        let (t, r) = timed(&mut make());
        times.push(t);
        rss = rss.max(r);
    }
    times.sort();
    (times[times.len() / 2], rss)
}

/// Medians of `a` and `b` run in turn, `rounds` times each, so a change
/// in the machine's load touches both alike.
fn pair(
    rounds: usize,
    mut a: impl FnMut() -> Command,
    mut b: impl FnMut() -> Command,
) -> (Duration, Duration, u64) {
    let (mut ta, mut tb, mut rss) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds {
        let (t, r) = timed(&mut a());
        ta.push(t);
        rss = rss.max(r);
        tb.push(timed(&mut b()).0);
    }
    ta.sort();
    tb.sort();
    (ta[rounds / 2], tb[rounds / 2], rss)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(what: &str, ours: Duration, reference: Duration, against: &str, goal: f64) {
    let r = ours.as_secs_f64() / reference.as_secs_f64();
    println!(
        "{what:<48} {:9.1} ms  {against:<28} {:9.1} ms  ratio {r:5.2} (goal <= {goal}) {}",
        ms(ours),
        ms(reference),
        if r <= goal { "met" } else { "MISSED" }
    );
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "health-checker runner against the reference tools, medians; {cores} cores, {}",
        CHECKER
    );

    // 8 probes of `sleep 1`, default configuration.
    let sleepers = root(8, "sleep 1", None);
    let (ours, reference, _) = pair(3, || check(sleepers.path()), || xargs(sleepers.path(), 8));
    ratio(
        "8 probes of sleep 1, default configuration",
        ours,
        reference,
        "xargs -P 8",
        1.1,
    );

    // 50 trivial probes.
    let trivial = root(50, "exit 0", None);
    let (ours50, xargs50, rss) = pair(15, || check(trivial.path()), || xargs(trivial.path(), 50));
    ratio("50 trivial probes", ours50, xargs50, "xargs -P 50", 1.3);
    let plugins = trivial.path().join("usr/lib/health-checker/plugins.d");
    let (ours50, parts, _) = pair(
        15,
        || check(trivial.path()),
        || {
            let mut c = Command::new("run-parts");
            c.arg("--arg=check").arg(&plugins);
            c
        },
    );
    ratio(
        "50 trivial probes",
        ours50,
        parts,
        "run-parts (one at a time)",
        1.3,
    );

    // The same with 400 other processes running, in turns with none.
    let mut busy = Vec::new();
    let mut quiet = Vec::new();
    for _ in 0..7 {
        let mut others: Vec<_> = (0..400)
            .map(|_| Command::new("sleep").arg("600").spawn().unwrap())
            .collect();
        for _ in 0..3 {
            busy.push(timed(&mut check(trivial.path())).0);
        }
        for c in &mut others {
            let _ = c.kill();
            let _ = c.wait();
        }
        for _ in 0..3 {
            quiet.push(timed(&mut check(trivial.path())).0);
        }
    }
    busy.sort();
    quiet.sort();
    ratio(
        "50 trivial probes, 400 other processes",
        busy[busy.len() / 2],
        quiet[quiet.len() / 2],
        "the same without them",
        1.1,
    );

    // No probes at all: the checker's own cost.
    let empty = root(0, "", None);
    let (none, truth, _) = pair(31, || check(empty.path()), || Command::new("/bin/true"));
    ratio("a check with no probes", none, truth, "/bin/true", 2.0);

    println!(
        "peak RSS of a check of 50 probes: {:.1} MiB (goal < 10 MiB)",
        rss as f64 / 1024.0
    );
    let size = std::fs::metadata(CHECKER).map(|m| m.len()).unwrap_or(0);
    println!(
        "binary size: {:.2} MiB ({CHECKER})",
        size as f64 / f64::from(1u32 << 20)
    );

    // Why 16: waiting probes overlap up to the bound, whatever the cores.
    let sixteen = root(16, "sleep 0.5", None);
    for p in [4, 8, 16, 64] {
        let cfg = sixteen.path().join("etc/health-checker/config.toml");
        let mut text = format!("[probes]\nparallel = {p}\n");
        if !nix::unistd::geteuid().is_root() {
            text.push_str("insecure_ok = true\n");
        }
        std::fs::write(&cfg, text).unwrap();
        let (t, _) = median(1, || check(sixteen.path()));
        println!(
            "16 probes of sleep 0.5, parallel = {p:<2}               {:9.1} ms",
            ms(t)
        );
    }
    for p in [16, 32, 64] {
        let cfg = trivial.path().join("etc/health-checker/config.toml");
        let mut text = format!("[probes]\nparallel = {p}\n");
        if !nix::unistd::geteuid().is_root() {
            text.push_str("insecure_ok = true\n");
        }
        std::fs::write(&cfg, text).unwrap();
        let (t, _) = median(11, || check(trivial.path()));
        println!(
            "50 trivial probes, parallel = {p:<2}                 {:9.1} ms",
            ms(t)
        );
    }
}
