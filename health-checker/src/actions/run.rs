//! Running a helper program (`wall`, an alert hook) with input on standard
//! input, a time limit, and its output kept (capped) for the log and for
//! error messages.
//!
//! The program runs in its own process group; at the time limit the whole
//! group gets `SIGTERM`, then `SIGKILL` after a short grace, so a hook that
//! hangs or leaves children behind cannot stall the checker. Standard input
//! is fed and the output drained by helper threads, so a program that does
//! not read its input or prints without end cannot block us either.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Output kept per stream: the last this many bytes.
pub const OUTPUT_TAIL: usize = 8 * 1024;
/// Time between `SIGTERM` and `SIGKILL` at the time limit.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the output after the program exited (a background
/// child may hold the pipes open).
const DRAIN_WAIT: Duration = Duration::from_millis(500);

/// How a program that ran to its end finished.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// The end of its standard output.
    pub stdout: String,
    /// The end of its standard error.
    pub stderr: String,
}

impl Finished {
    /// An error naming `what`, its exit status and the end of its standard
    /// error, unless it exited 0.
    pub fn check(self, what: &str) -> anyhow::Result<Finished> {
        if self.status.success() {
            return Ok(self);
        }
        let tail = last_lines(&self.stderr, 5);
        if tail.is_empty() {
            bail!("{what} failed: {}", self.status);
        }
        bail!("{what} failed: {}: {tail}", self.status);
    }
}

/// Run `cmd` with `input` on its standard input; `what` names it in errors.
/// A program still running after `timeout` is killed and is an error.
pub fn run(
    cmd: &mut Command,
    input: &[u8],
    timeout: Duration,
    what: &str,
) -> anyhow::Result<Finished> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    let pgid =
        Pid::from_raw(i32::try_from(child.id()).with_context(|| format!("process ID of {what}"))?);

    if let Some(mut stdin) = child.stdin.take() {
        let input = input.to_vec();
        // A program that exits without reading makes this fail with EPIPE:
        // not our error to report.
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {what}"))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            kill_group(pgid, &mut child);
            bail!(
                "{what} did not finish within {}s and was killed",
                timeout.as_secs_f32()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Ok(Finished {
        status,
        stdout: stdout.recv_timeout(DRAIN_WAIT).unwrap_or_default(),
        stderr: stderr.recv_timeout(DRAIN_WAIT).unwrap_or_default(),
    })
}

/// `SIGTERM` to the group, `SIGKILL` after the grace, then reap the child.
fn kill_group(pgid: Pid, child: &mut std::process::Child) {
    let _ = killpg(pgid, Signal::SIGTERM);
    let until = Instant::now() + KILL_GRACE;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    // The leader may be gone while others of its group still run.
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait();
}

/// Read a stream to its end on a thread, keeping its last [`OUTPUT_TAIL`]
/// bytes; the text arrives on the returned channel.
fn drain<R: Read + Send + 'static>(stream: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        if let Some(mut s) = stream {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        kept.extend_from_slice(&buf[..n]);
                        if kept.len() > 2 * OUTPUT_TAIL {
                            kept.drain(..kept.len() - OUTPUT_TAIL);
                        }
                    }
                }
            }
        }
        if kept.len() > OUTPUT_TAIL {
            kept.drain(..kept.len() - OUTPUT_TAIL);
        }
        let _ = tx.send(String::from_utf8_lossy(&kept).into_owned());
    });
    rx
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn input_reaches_the_program_and_output_comes_back() {
        let done = run(
            &mut sh("cat; echo oops >&2"),
            b"hello",
            Duration::from_secs(10),
            "cat",
        )
        .unwrap();
        assert!(done.status.success());
        assert_eq!(done.stdout, "hello");
        assert_eq!(done.stderr, "oops\n");
    }

    #[test]
    fn a_failure_names_the_program_status_and_stderr() {
        let done = run(
            &mut sh("echo first >&2; echo last >&2; exit 3"),
            b"",
            Duration::from_secs(10),
            "hook x",
        )
        .unwrap();
        let msg = format!("{:#}", done.check("hook x").unwrap_err());
        assert!(msg.contains("hook x failed"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("first / last"), "{msg}");
    }

    #[test]
    fn a_program_that_hangs_is_killed_at_the_limit() {
        let started = Instant::now();
        let err = run(
            &mut sh("trap '' TERM; sleep 30 & sleep 30"),
            b"",
            Duration::from_millis(300),
            "sleeper",
        )
        .unwrap_err();
        assert!(format!("{err}").contains("sleeper did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn endless_output_and_unread_input_do_not_block() {
        let big = vec![b'x'; 1 << 20];
        let done = run(
            &mut sh("head -c 3000000 /dev/zero | tr '\\0' y"),
            &big,
            Duration::from_secs(20),
            "noisy",
        )
        .unwrap();
        assert!(done.status.success());
        assert_eq!(done.stdout.len(), OUTPUT_TAIL);
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let err = run(
            &mut Command::new("/nonexistent/wall"),
            b"",
            Duration::from_secs(1),
            "wall (/nonexistent/wall)",
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("starting wall (/nonexistent/wall)"),
            "{err:#}"
        );
    }
}
