//! The one process supervisor: probes, stop actions, alert hooks and `wall`
//! all run through [`run`]. Each command runs from a descriptor opened and
//! checked by [`super::safety`] (so what was checked is what runs), in its
//! own process group, with optional input on standard input, a timeout that
//! kills the whole group and the process itself (SIGTERM, then SIGKILL after
//! a grace period), a sweep of what it left behind (`HC_RUN_ID`), and capped
//! output read in a thread. A command that ignores SIGTERM, prints without
//! end, does not read its input, leaves children holding its output pipe or
//! moves itself to another process group cannot stall the checker: no wait
//! here is without a bound.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::capture::Capture;
use super::safety::{self, Trust};

/// How to run a command.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    pub argv: &'a [String],
    /// Added to the inherited environment.
    pub env: &'a [(String, String)],
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub output_limit: usize,
    /// Written to standard input (then closed); `None`: `/dev/null`.
    pub input: Option<&'a [u8]>,
    /// Who may own the program and the files its arguments name.
    pub trust: Trust<'a>,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    /// Killed by this signal (not by us).
    Signaled(i32),
    /// Still running at the timeout; its group was killed.
    TimedOut,
    /// Still running at the timeout and not gone after SIGKILL and the
    /// grace period (it left its process group, or hangs in the kernel):
    /// reported and no longer waited for.
    Abandoned,
    /// It could not be started, or was refused.
    SpawnFailed(String),
}

/// The end of a run and what it printed.
#[derive(Debug, Clone)]
pub struct Run {
    pub ended: Ended,
    pub output: String,
    pub duration: Duration,
    /// The time limit it had.
    pub timeout: Duration,
}

impl Run {
    /// `Ok` when the command exited 0; otherwise an error naming `what`, how
    /// it ended and the last lines of its output.
    pub fn success(&self, what: &str) -> anyhow::Result<()> {
        let tail = last_lines(&self.output, 5);
        let tail = if tail.is_empty() {
            tail
        } else {
            format!(": {tail}")
        };
        match &self.ended {
            Ended::Exited(0) => Ok(()),
            Ended::Exited(c) => anyhow::bail!("{what} failed: exit status: {c}{tail}"),
            Ended::Signaled(s) => {
                anyhow::bail!("{what} failed: killed by {}{tail}", signal_name(*s))
            }
            Ended::TimedOut => anyhow::bail!(
                "{what} did not finish within {} and was killed",
                crate::config::format_duration(self.timeout)
            ),
            Ended::Abandoned => anyhow::bail!(
                "{what} did not finish within {}, did not end when killed and was abandoned",
                crate::config::format_duration(self.timeout)
            ),
            Ended::SpawnFailed(why) => anyhow::bail!("starting {what}: {why}"),
        }
    }
}

/// The last `n` non-empty lines of `text`, joined with ` / `.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// The variable that marks every process of one probe run, so that those
/// that leave the process group (`setsid`, a double fork) are found and
/// killed with it.
pub const RUN_ID_VAR: &str = "HC_RUN_ID";

static RUNS: AtomicU64 = AtomicU64::new(0);

/// A token no other run of this machine carries while we live: our PID, a
/// counter and the start time.
fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}.{}.{nanos:x}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    )
}

/// After the group is killed, how long to wait for the output pipe to close.
/// A process that left the group (`setsid`) and keeps the pipe open is not
/// waited for longer than this.
const DRAIN: Duration = Duration::from_millis(300);

/// Default time between SIGTERM and SIGKILL for programs that have no
/// configured grace (alert hooks, `wall`).
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// Spawns that hand a program's descriptor to the child hold this, so the
/// descriptor (inheritable for that moment) reaches no other child.
static SPAWN: Mutex<()> = Mutex::new(());

/// Run `spec` to its end, or to its timeout plus twice the grace at most.
pub fn run(spec: &RunSpec<'_>) -> Run {
    let start = Instant::now();
    let failed = |why: String| Run {
        ended: Ended::SpawnFailed(why),
        output: String::new(),
        duration: start.elapsed(),
        timeout: spec.timeout,
    };
    let program = match safety::open_command(spec.argv, spec.trust) {
        Ok(fd) => fd,
        Err(why) => return failed(why),
    };
    let (reader, writer) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return failed(format!("creating output pipe: {e}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return failed(format!("duplicating output pipe: {e}")),
    };
    let input = match spec.input {
        None => None,
        Some(bytes) => match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
            Ok((r, w)) => Some((r, w, bytes.to_vec())),
            Err(e) => return failed(format!("creating input pipe: {e}")),
        },
    };
    // The program runs from its descriptor: `/proc/self/fd/N` in the child
    // is the file checked above, whatever its path names by now. A script's
    // interpreter opens that same name, so the descriptor stays open across
    // the exec (`$0` of a script is `/proc/self/fd/N`).
    let mut cmd = Command::new(format!("/proc/self/fd/{}", program.as_raw_fd()));
    cmd.arg0(&spec.argv[0])
        .args(&spec.argv[1..])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0);
    if std::env::var_os("PATH").is_none() {
        cmd.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    }
    for (k, v) in spec.env {
        cmd.env(k, v);
    }
    let run_id = new_run_id();
    cmd.env(RUN_ID_VAR, &run_id);
    let mut feed = None;
    match input {
        None => {
            cmd.stdin(Stdio::null());
        }
        Some((r, w, bytes)) => {
            cmd.stdin(Stdio::from(r));
            feed = Some((w, bytes));
        }
    }
    let spawned = {
        let _one_at_a_time = SPAWN.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = fcntl(program.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())) {
            return failed(format!("cannot run {}: {e}", spec.argv[0]));
        }
        let spawned = cmd.spawn();
        drop(program);
        spawned
    };
    // Our copies of the pipe ends go with the command, so EOF is seen once
    // the probe's processes are gone.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot run {}: {e}", spec.argv[0])),
    };
    let pid = Pid::from_raw(child.id() as i32);
    if let Some((w, bytes)) = feed {
        // Detached: a program that does not read its input only blocks this
        // thread, until it is killed (then the write fails with EPIPE).
        let mut w = std::fs::File::from(w);
        std::thread::Builder::new()
            .name(format!("input-{pid}"))
            .spawn(move || {
                let _ = w.write_all(&bytes);
            })
            .ok();
    }

    let capture = Arc::new(Mutex::new(Capture::new(spec.output_limit)));
    let eof = Arc::new(AtomicBool::new(false));
    {
        let capture = Arc::clone(&capture);
        let eof = Arc::clone(&eof);
        let mut file = std::fs::File::from(reader);
        // Detached on purpose: if a process that escaped the group keeps the
        // pipe open, this thread waits for it, not the runner.
        std::thread::Builder::new()
            .name(format!("probe-output-{pid}"))
            .spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => lock(&capture).push(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                eof.store(true, Ordering::SeqCst);
            })
            .ok();
    }

    let mut timed_out = false;
    let mut abandoned = false;
    if !wait_exit(pid, later(spec.timeout)) {
        timed_out = true;
        // The process itself too: it may have left its group.
        let _ = killpg(pid, Signal::SIGTERM);
        let _ = kill(pid, Signal::SIGTERM);
        if !wait_exit(pid, later(spec.kill_grace)) {
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = kill(pid, Signal::SIGKILL);
            abandoned = !wait_exit(pid, later(spec.kill_grace.max(DRAIN)));
        }
    }
    // The leader has exited but is not reaped yet, so the group's ID cannot
    // be reused: kill whatever it left behind.
    let _ = killpg(pid, Signal::SIGKILL);
    let status = if abandoned {
        tracing::warn!(
            "{} (pid {pid}) did not end after SIGKILL; abandoned",
            spec.argv[0]
        );
        None
    } else {
        Some(child.wait())
    };
    // And whatever left the group but still carries the run's mark.
    let swept = sweep(&run_id);
    if swept > 0 {
        tracing::info!(
            "killed {swept} process(es) that {} left running outside its process group",
            spec.argv[0]
        );
    }

    let drain_until = Instant::now() + DRAIN;
    while !eof.load(Ordering::SeqCst) && Instant::now() < drain_until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = lock(&capture).text();
    let ended = match status {
        None => Ended::Abandoned,
        Some(_) if timed_out => Ended::TimedOut,
        Some(Ok(s)) => match (s.code(), s.signal()) {
            (Some(c), _) => Ended::Exited(c),
            (None, Some(sig)) => Ended::Signaled(sig),
            (None, None) => Ended::SpawnFailed(format!("unknown status {s:?}")),
        },
        Some(Err(e)) => Ended::SpawnFailed(format!("waiting for {}: {e}", spec.argv[0])),
    };
    Run {
        ended,
        output,
        duration: start.elapsed(),
        timeout: spec.timeout,
    }
}

/// Kill every process whose environment carries `HC_RUN_ID=run_id`;
/// returns how many were signalled. Rounds repeat until one finds none, so
/// a process forked while the previous round ran is caught too. A killed
/// process no longer shows its environment once it has exited, so it is
/// not counted twice. (A process that both leaves the group and clears its
/// environment is not found: long-lived work belongs in a systemd unit.)
pub fn sweep(run_id: &str) -> usize {
    let needle = format!("{RUN_ID_VAR}={run_id}").into_bytes();
    let me = std::process::id();
    let mut signalled = std::collections::HashSet::new();
    for _ in 0..50 {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            break;
        };
        let mut found = 0;
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            // Gone, or not ours to read: skip.
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ.split(|b| *b == 0).any(|kv| kv == needle.as_slice()) {
                let Ok(raw) = i32::try_from(pid) else {
                    continue;
                };
                let _ = nix::sys::signal::kill(Pid::from_raw(raw), Signal::SIGKILL);
                signalled.insert(pid);
                found += 1;
            }
        }
        if found == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    signalled.len()
}

fn lock(c: &Mutex<Capture>) -> std::sync::MutexGuard<'_, Capture> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// `d` from now; durations too large for the clock are a day (they are
/// bounded where they are read; this keeps a bad value from panicking).
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

/// Wait until `pid` has exited, without reaping it; `false` if `until`
/// passed first.
fn wait_exit(pid: Pid, until: Instant) -> bool {
    let mut nap = Duration::from_millis(1);
    loop {
        match waitid(
            Id::Pid(pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        ) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            // ECHILD: already reaped; nothing to wait for.
            Err(_) => return true,
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// A signal's name (`SIGTERM`), or its number.
pub fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_ms: u64, limit: usize) -> Run {
        let argv = vec!["/bin/sh".to_string(), "-c".into(), script.into()];
        run(&RunSpec {
            argv: &argv,
            env: &[("HC_TEST".into(), "yes".into())],
            timeout: Duration::from_millis(timeout_ms),
            kill_grace: Duration::from_millis(200),
            output_limit: limit,
            input: None,
            trust: Trust::Any,
        })
    }

    #[test]
    fn exit_code_output_and_environment() {
        let r = sh("echo out; echo err >&2; echo $HC_TEST; exit 3", 5000, 1000);
        assert_eq!(r.ended, Ended::Exited(3));
        assert_eq!(r.output, "out\nerr\nyes\n");
    }

    #[test]
    fn a_signal_is_reported() {
        let r = sh("kill -SEGV $$", 5000, 1000);
        assert_eq!(r.ended, Ended::Signaled(libc_sigsegv()));
        assert_eq!(signal_name(libc_sigsegv()), "SIGSEGV");
    }

    fn libc_sigsegv() -> i32 {
        Signal::SIGSEGV as i32
    }

    #[test]
    fn a_missing_program_is_a_spawn_failure() {
        let argv = vec!["/nonexistent/probe".to_string()];
        let r = run(&RunSpec {
            argv: &argv,
            env: &[],
            timeout: Duration::from_secs(1),
            kill_grace: Duration::from_secs(1),
            output_limit: 10,
            input: None,
            trust: Trust::Any,
        });
        match r.ended {
            Ended::SpawnFailed(why) => {
                assert!(why.starts_with("cannot run /nonexistent/probe: "), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    fn sh_with_input(script: &str, input: &[u8], timeout_ms: u64) -> Run {
        let argv = vec!["/bin/sh".to_string(), "-c".into(), script.into()];
        run(&RunSpec {
            argv: &argv,
            env: &[],
            timeout: Duration::from_millis(timeout_ms),
            kill_grace: Duration::from_millis(200),
            output_limit: 1000,
            input: Some(input),
            trust: Trust::Any,
        })
    }

    #[test]
    fn input_reaches_the_program() {
        let r = sh_with_input("cat; echo; echo oops >&2; exit 3", b"hello", 5000);
        assert_eq!(r.ended, Ended::Exited(3));
        assert_eq!(r.output, "hello\noops\n");
        let e = r.success("hook x").unwrap_err().to_string();
        assert_eq!(e, "hook x failed: exit status: 3: hello / oops");
    }

    #[test]
    fn unread_input_and_endless_output_do_not_block() {
        let big = vec![b'x'; 1 << 20];
        let started = Instant::now();
        let r = sh_with_input("head -c 3000000 /dev/zero | tr '\\0' y", &big, 20_000);
        assert_eq!(r.ended, Ended::Exited(0));
        assert!(r.output.contains("bytes of output dropped"), "{}", r.output);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn timeout_kills_the_group() {
        let r = sh("echo started; sleep 30", 200, 1000);
        assert_eq!(r.ended, Ended::TimedOut);
        assert_eq!(r.output, "started\n");
        assert!(r.duration < Duration::from_secs(5), "{:?}", r.duration);
    }
}
