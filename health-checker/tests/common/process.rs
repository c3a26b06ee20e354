//! Processes as `/proc` shows them, for tests of what the checker kills.

use std::path::Path;
use std::time::{Duration, Instant};

/// The PID a test script wrote to `path` (`echo $$ > path`).
pub fn read_pid(path: &Path) -> i32 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} holds no PID: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{} holds {text:?}, not a PID: {e}", path.display()))
}

/// Whether `pid` runs: neither gone nor a zombie waiting to be reaped.
pub fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // pid (comm) state ...; comm may hold spaces and parentheses.
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

/// Wait up to `limit` for `pid` to stop running; whether it did.
pub fn ended_within(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while running(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A child process killed (and reaped) when dropped: a failed assertion
/// must not leave it running.
#[derive(Debug)]
pub struct Killed(pub std::process::Child);

impl Killed {
    pub fn new(child: std::process::Child) -> Self {
        Killed(child)
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
