//! The one process supervisor: probes, stop actions, alert hooks and `wall`
//! all run through [`run`]. Each command runs from a descriptor opened and
//! checked by [`super::safety`] (so what was checked is what runs), in its
//! own cgroup ([`super::cgroup`], with task and memory limits; joined by
//! the child before it executes, [`super::spawn`]) and process group, with optional input on standard
//! input, a timeout (SIGTERM to the group, then, after a grace period, the
//! whole cgroup killed), the cgroup killed at its end so nothing it started
//! outlives it, and capped output read in a thread. Exits are waited for on
//! a pidfd, the cgroup's emptiness on `cgroup.events`. Where cgroup v2
//! cannot be used, the process group is killed and what left it is found
//! by a sweep for the run's mark (`HC_RUN_ID`). A command that ignores
//! SIGTERM, prints without end, does not read its input, leaves children
//! holding its output pipe or moves itself to another process group cannot
//! stall the checker: no wait here is without a bound.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::capture::Capture;
use super::cgroup::{self, Cost, Leaf, Limits};
use super::safety::{self, Trust};
use super::spawn;

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
    /// What runs, for its cgroup's name: `probe-NAME`, `stop-NAME`,
    /// `hook-NAME`, `wall`.
    pub what: &'a str,
    /// Its cgroup's limits.
    pub limits: Limits,
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
    /// CPU time and peak memory, where known.
    pub cost: Cost,
    /// The cgroup limit it hit, in words.
    pub limit_hit: Option<String>,
    /// Whether it ran in its own cgroup (else in a process group only).
    pub cgroup: bool,
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
            _ if self.limit_hit.is_some() => anyhow::bail!(
                "{what} failed: {}{tail}",
                self.limit_hit.as_deref().unwrap_or_default()
            ),
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

/// Run `spec` to its end, or to its timeout plus twice the grace at most.
pub fn run(spec: &RunSpec<'_>) -> Run {
    let start = Instant::now();
    let failed = |why: String| Run {
        ended: Ended::SpawnFailed(why),
        output: String::new(),
        duration: start.elapsed(),
        timeout: spec.timeout,
        cost: Cost::default(),
        limit_hit: None,
        cgroup: false,
    };
    let program = match safety::open_command(spec.argv, spec.trust) {
        Ok(fd) => fd,
        Err(why) => return failed(why),
    };
    let (reader, writer) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return failed(format!("creating output pipe: {e}")),
    };
    let input = match spec.input {
        None => None,
        Some(bytes) => match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
            Ok((r, w)) => Some((r, w, bytes.to_vec())),
            Err(e) => return failed(format!("creating input pipe: {e}")),
        },
    };
    let null = match std::fs::File::open("/dev/null") {
        Ok(f) => OwnedFd::from(f),
        Err(e) => return failed(format!("opening /dev/null: {e}")),
    };
    let leaf = cgroup::tree().and_then(|t| match t.leaf(spec.what, spec.limits) {
        Ok(l) => Some(l),
        Err(why) => {
            tracing::warn!("{why}; {} runs in a process group only", spec.argv[0]);
            None
        }
    });
    // Without a cgroup, the mark that finds what left the process group.
    let run_id = leaf.is_none().then(new_run_id);
    let env = environment(spec.env, run_id.as_deref());
    // The program runs from its descriptor: `/proc/self/fd/N` in the child
    // is the file checked above, whatever its path names by now. A script's
    // interpreter opens that same name, so the descriptor stays open across
    // the exec (`$0` of a script is `/proc/self/fd/N`).
    let spawned = spawn::spawn(&spawn::Spawn {
        program: program.as_fd(),
        argv: spec.argv,
        env,
        stdio: [
            input.as_ref().map_or(null.as_fd(), |(r, _, _)| r.as_fd()),
            writer.as_fd(),
            writer.as_fd(),
        ],
        cgroup_procs: leaf.as_ref().and_then(Leaf::procs_fd),
    });
    // Our copies of the pipe ends go, so EOF is seen once the command's
    // processes are gone.
    drop((program, writer, null));
    let feed = input.map(|(r, w, bytes)| {
        drop(r);
        (w, bytes)
    });
    let pid = match spawned {
        Ok(pid) => pid,
        Err(e) => return failed(format!("cannot run {}: {e}", spec.argv[0])),
    };
    let pidfd = pidfd_open(pid);
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
    let (eof_tx, eof) = std::sync::mpsc::channel::<()>();
    {
        let capture = Arc::clone(&capture);
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
                let _ = eof_tx.send(());
            })
            .ok();
    }

    let mut timed_out = false;
    let mut abandoned = false;
    if !wait_exit(pid, pidfd.as_ref(), later(spec.timeout)) {
        timed_out = true;
        // The process itself too: it may have left its group.
        let _ = killpg(pid, Signal::SIGTERM);
        let _ = kill(pid, Signal::SIGTERM);
        if !wait_exit(pid, pidfd.as_ref(), later(spec.kill_grace)) {
            match &leaf {
                Some(l) => {
                    l.kill_all(later(spec.kill_grace.max(DRAIN)));
                }
                None => {
                    let _ = killpg(pid, Signal::SIGKILL);
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
            abandoned = !wait_exit(pid, pidfd.as_ref(), later(spec.kill_grace.max(DRAIN)));
        }
    }
    // The leader has exited but is not reaped yet, so the group's ID cannot
    // be reused: kill whatever it left behind, in its cgroup or its group.
    let mut left_running = false;
    match &leaf {
        Some(l) => left_running = !l.kill_all(later(spec.kill_grace.max(DRAIN))),
        None => {
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }
    let status = if abandoned {
        tracing::warn!(
            "{} (pid {pid}) did not end after SIGKILL; abandoned",
            spec.argv[0]
        );
        None
    } else {
        Some(reap(pid))
    };
    if let Some(id) = &run_id {
        // What left the group but still carries the run's mark.
        let swept = sweep(id);
        if swept > 0 {
            tracing::info!(
                "killed {swept} process(es) that {} left running outside its process group",
                spec.argv[0]
            );
        }
    }
    if left_running {
        tracing::warn!(
            "processes of {} are still in their cgroup after SIGKILL",
            spec.argv[0]
        );
    }

    // Once the cgroup is empty nothing holds the pipe: EOF is immediate.
    let _ = eof.recv_timeout(DRAIN);
    let output = lock(&capture).text();
    let mut cost = Cost::default();
    let mut limit_hit = None;
    if let Some(l) = &leaf {
        cost = l.cost();
        limit_hit = l.limit_hit();
    }
    if let Some(Ok((_, usage))) = &status {
        // Without a cgroup (or its memory controller), what the kernel
        // counted for the process and the children it waited for.
        cost.cpu_us = cost.cpu_us.or(Some(usage.cpu_us));
        cost.peak_memory_bytes = cost.peak_memory_bytes.or(Some(usage.max_rss_bytes));
    }
    let cgroup = leaf.is_some();
    drop(leaf);
    let ended = match status {
        None => Ended::Abandoned,
        Some(_) if timed_out => Ended::TimedOut,
        Some(Ok((s, _))) => match (s.code(), s.signal()) {
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
        cost,
        limit_hit,
        cgroup,
    }
}

/// The command's environment: the checker's, a `PATH` when it has none,
/// then `extra`; the run's mark when there is one, else none inherited.
fn environment(extra: &[(String, String)], run_id: Option<&str>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != RUN_ID_VAR)
        .collect();
    let mut set = |k: OsString, v: OsString| match env.iter_mut().find(|(have, _)| *have == k) {
        Some(slot) => slot.1 = v,
        None => env.push((k, v)),
    };
    if std::env::var_os("PATH").is_none() {
        set(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    for (k, v) in extra {
        set(k.into(), v.into());
    }
    if let Some(id) = run_id {
        set(RUN_ID_VAR.into(), id.into());
    }
    env
}

/// A descriptor that becomes readable when `pid` exits (Linux 5.3);
/// `None` before that, and exits are then polled.
#[allow(unsafe_code)]
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor
    // or -1; the descriptor is owned by nothing else.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just returned open by the kernel.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What the kernel counted for a process and the children it waited for.
#[derive(Debug, Clone, Copy)]
struct Usage {
    cpu_us: u64,
    max_rss_bytes: u64,
}

/// Reap `pid` (it has exited) with its resource usage.
#[allow(unsafe_code)]
fn reap(pid: Pid) -> std::io::Result<(std::process::ExitStatus, Usage)> {
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
    let mut ru: nix::libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live, writable locals.
        let r = unsafe { nix::libc::wait4(pid.as_raw(), &mut status, 0, &mut ru) };
        if r == pid.as_raw() {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let tv = |t: nix::libc::timeval| (t.tv_sec as u64) * 1_000_000 + t.tv_usec as u64;
    Ok((
        std::process::ExitStatus::from_raw(status),
        Usage {
            cpu_us: tv(ru.ru_utime) + tv(ru.ru_stime),
            max_rss_bytes: (ru.ru_maxrss as u64) * 1024,
        },
    ))
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
/// passed first. With a pidfd, a `poll` that wakes at the exit; without
/// one (Linux before 5.3), short naps.
fn wait_exit(pid: Pid, pidfd: Option<&OwnedFd>, until: Instant) -> bool {
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
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match pidfd {
            Some(fd) => {
                let ms = left.min(Duration::from_secs(60)).as_millis() as u16;
                let ms = ms.max(1);
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(ms));
            }
            None => {
                std::thread::sleep(nap.min(left));
                nap = (nap * 2).min(Duration::from_millis(20));
            }
        }
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
            what: "test",
            limits: Limits::default(),
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
            what: "test",
            limits: Limits::default(),
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
            what: "test",
            limits: Limits::default(),
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
