//! cgroup v2 containment (docs/plugins.md, "Containment and limits"). Every command the
//! supervisor ([`super::process`]) runs gets its own cgroup, a leaf of the
//! checker's subtree, with task and memory limits when those controllers
//! can be enabled. Its end kills the whole cgroup (`cgroup.kill`), so a
//! process that double-forks, calls `setsid` and clears its environment is
//! gone with it, and its cost (CPU time, peak memory) is read from the
//! cgroup before it is removed.
//!
//! The subtree, chosen once per process ([`tree`]):
//! 1. the checker's own cgroup when systemd delegated it (`Delegate=yes`:
//!    the `trusted.delegate` attribute): the checker moves itself into a
//!    `supervisor` leaf (cgroups with controllers enabled hold no
//!    processes of their own) and each run gets a sibling leaf;
//! 2. otherwise, on a machine that systemd runs (`/run/systemd/system`),
//!    a transient scope of its own, `health-checker-check-PID.scope`,
//!    asked of systemd on the system bus (`StartTransientUnit` with
//!    `Delegate=yes`): systemd moves the checker, every thread of it,
//!    into the scope, which is then used as in 1. Not for the process
//!    systemd started for a unit (`SYSTEMD_EXEC_PID`, such as the D-Bus
//!    service running an alert hook): that stays in its unit. The scope stops by
//!    itself once the checker and what it ran are gone (its leaves are
//!    removed at exit), and is then collected;
//! 3. otherwise, any writable cgroup2 mount (found in
//!    `/proc/self/mountinfo`): a `health-checker-PID` child of the
//!    checker's own cgroup, removed at exit. On a systemd machine (no
//!    system bus, the scope refused or not started in time) this is a
//!    cgroup systemd did not delegate, said in one warning with the reason
//!    the scope could not be had;
//! 4. none (no cgroup2, read-only, a container): one warning, and commands
//!    run in process groups with the `HC_RUN_ID` sweep as before.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use zbus::zvariant::{OwnedObjectPath, Value};

use crate::snapshots::mountinfo;
use crate::systemd::{Bus, Systemd};

/// Per-run limits; `None` is no limit (`max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// `pids.max`: processes and threads at once.
    pub tasks_max: Option<u64>,
    /// `memory.max` in bytes (swap is not allowed past it).
    pub memory_max: Option<u64>,
}

/// The limits of alert hooks and `wall`: the probes' defaults.
pub const HELPER_LIMITS: Limits = Limits {
    tasks_max: Some(crate::config::DEFAULT_TASKS_MAX),
    memory_max: Some(crate::config::DEFAULT_MEMORY_MAX),
};

/// How the checker got its subtree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Its own cgroup, delegated by systemd.
    Delegated,
    /// A transient scope systemd made for it, delegated.
    Scope,
    /// A writable cgroup2 mount, used directly.
    Mount,
}

/// The checker's cgroup subtree.
#[derive(Debug)]
pub struct Tree {
    /// Where each run's leaf is made; holds no process.
    base: PathBuf,
    source: Source,
    pids: bool,
    memory: bool,
    /// Why limits are not applied, when they are not.
    limits_note: Option<String>,
}

static TREE: OnceLock<Option<Tree>> = OnceLock::new();
static LEAVES: AtomicU64 = AtomicU64::new(0);
/// Leaves alive, for a base the checker made: it exists only while this
/// is above zero (so a library user that never calls [`cleanup`] leaves
/// nothing behind either).
static ALIVE: Mutex<usize> = Mutex::new(0);

/// `HC_CGROUP=off` turns containment off (for a system where cgroups
/// misbehave; the fallback is then used, with its warning).
/// `HC_CGROUP=delegated`, set by the units beside `Delegate=yes`, says the
/// checker's own cgroup is delegated to it, for a systemd that does not
/// mark delegated cgroups with `trusted.delegate` (before version 251).
pub const OFF_VAR: &str = "HC_CGROUP";

/// The checker's subtree, set up on first use; `None` (after one warning)
/// when cgroup v2 cannot be used.
pub fn tree() -> Option<&'static Tree> {
    TREE.get_or_init(|| {
        let found = if std::env::var(OFF_VAR).is_ok_and(|v| v == "off") {
            Err(format!("{OFF_VAR}=off"))
        } else {
            setup()
        };
        match found {
            Ok(t) => {
                tracing::info!(
                    "probes run in cgroups under {} ({})",
                    t.base.display(),
                    match t.source {
                        Source::Delegated => "delegated by systemd",
                        Source::Scope => "a transient scope of systemd's, delegated",
                        Source::Mount => "cgroup2 mount used directly",
                    }
                );
                if let Some(note) = &t.limits_note {
                    tracing::warn!("{note}");
                }
                Some(t)
            }
            Err(why) => {
                tracing::warn!(
                    "no cgroup v2 containment ({why}): probes, stop actions and hooks run in \
                     process groups; a process that leaves its group and clears its \
                     environment can outlive them, and no task or memory limit applies"
                );
                None
            }
        }
    })
    .as_ref()
}

/// Remove what [`tree`] made, when the checker made it (the
/// `health-checker-PID` directory of a cgroup2 mount used directly; the
/// leaves in its own scope, which stops once nothing is left in it). Runs
/// still in progress are killed first.
pub fn cleanup() {
    if let Some(Some(t)) = TREE.get() {
        match t.source {
            Source::Mount => remove_tree(&t.base),
            Source::Scope => remove_leaves(&t.base),
            Source::Delegated => {}
        }
    }
}

/// Kill and remove every cgroup under `base` but the checker's own
/// (`supervisor`).
fn remove_leaves(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != SUPERVISOR {
            remove_tree(&e.path());
        }
    }
}

/// The leaf the checker itself moves into in a delegated cgroup.
const SUPERVISOR: &str = "supervisor";

/// The transient scope the checker asks systemd for when it runs outside
/// its units.
pub fn scope_name(pid: u32) -> String {
    format!("health-checker-check-{pid}.scope")
}

/// The properties of that scope (`StartTransientUnit`): process `pid` in
/// it, delegated, collected once it stops, even failed.
pub fn scope_properties(pid: u32) -> Vec<(&'static str, Value<'static>)> {
    vec![
        (
            "Description",
            Value::from("health-checker run by hand: the cgroups of its probes"),
        ),
        ("PIDs", Value::from(vec![pid])),
        ("Delegate", Value::from(true)),
        ("CollectMode", Value::from("inactive-or-failed")),
    ]
}

/// How long systemd may take to start the scope (connecting to the bus
/// included).
pub const SCOPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Ask systemd (its manager on `bus`) for [`scope_name`]`(pid)` holding
/// process `pid`, every thread of it, and wait until the start job has
/// ended, `timeout` at most, whatever the bus does. `Ok` with the scope's
/// name when systemd says the job is done; an error says why not.
pub fn start_scope(bus: &Bus, pid: u32, timeout: Duration) -> Result<String, String> {
    let name = scope_name(pid);
    let (tx, rx) = mpsc::channel();
    let gave_up = Arc::new(AtomicBool::new(false));
    {
        let (bus, name, gave_up) = (bus.clone(), name.clone(), Arc::clone(&gave_up));
        std::thread::Builder::new()
            .name("systemd-scope".into())
            .spawn(move || {
                let _ = tx.send(ask_for_scope(&bus, &name, pid, &gave_up));
            })
            .map_err(|e| format!("starting a thread: {e}"))?;
    }
    match rx.recv_timeout(timeout) {
        Ok(done) => done.map(|()| name),
        Err(_) => {
            // A call already sent may still be served; none is sent after.
            gave_up.store(true, Ordering::SeqCst);
            Err(format!(
                "systemd did not start {name} within {} s",
                timeout.as_secs_f64()
            ))
        }
    }
}

/// [`start_scope`]'s exchange with systemd: the `JobRemoved` signals are
/// watched before the call, so the end of the job cannot be missed.
fn ask_for_scope(bus: &Bus, name: &str, pid: u32, gave_up: &AtomicBool) -> Result<(), String> {
    // Not systemd's private socket (what `connect_systemd` falls back to):
    // signals need the bus. Every wait here is bounded by `start_scope`.
    let conn = match bus {
        Bus::System => {
            if !Path::new(crate::systemd::SYSTEM_BUS_SOCKET).exists() {
                return Err(format!(
                    "no system bus ({} is missing)",
                    crate::systemd::SYSTEM_BUS_SOCKET
                ));
            }
            crate::systemd::connect_system()
        }
        Bus::Address(a) => crate::systemd::connect_address(a),
    }
    .map_err(|e| format!("{e:#}"))?;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.systemd1")
        .and_then(|b| b.path("/org/freedesktop/systemd1"))
        .and_then(|b| b.interface("org.freedesktop.systemd1.Manager"))
        .and_then(|b| b.member("JobRemoved"))
        .map(|b| b.build())
        .map_err(|e| format!("building the JobRemoved match rule: {e}"))?;
    let removed = zbus::blocking::MessageIterator::for_match_rule(rule, &conn, Some(256))
        .map_err(|e| format!("watching systemd's JobRemoved signals: {e}"))?;
    if gave_up.load(Ordering::SeqCst) {
        return Err("given up".into());
    }
    let sd = Systemd::from_connection(conn);
    let job = sd
        .start_transient_unit(name, "fail", &scope_properties(pid))
        .map_err(|e| format!("{e:#}"))?;
    for msg in removed {
        let msg = msg.map_err(|e| format!("waiting for systemd's job: {e}"))?;
        let Ok((_, path, _, result)) = msg
            .body()
            .deserialize::<(u32, OwnedObjectPath, String, String)>()
        else {
            continue;
        };
        if path == job {
            return if result == "done" {
                Ok(())
            } else {
                Err(format!("systemd's job starting {name} ended {result:?}"))
            };
        }
    }
    Err("the connection to systemd ended before its job did".into())
}

/// Whether process `pid` is the one systemd started for a unit (its main
/// or control process), from the `SYSTEMD_EXEC_PID` its environment holds:
/// a scope would take it out of its unit, which must keep it. A process
/// that process started (a command run by a service's script) is not.
pub fn started_for_a_unit(pid: u32, exec_pid: Option<&str>) -> bool {
    exec_pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(pid)
}

/// Move the checker into a scope of its own ([`start_scope`] on the system
/// bus) and check that the kernel says it is there; its directory.
fn join_scope() -> Result<PathBuf, String> {
    let exec_pid = std::env::var("SYSTEMD_EXEC_PID").ok();
    if started_for_a_unit(std::process::id(), exec_pid.as_deref()) {
        return Err(
            "the checker is the process of a unit without Delegate=yes, \
                    which a scope would take it out of"
                .into(),
        );
    }
    let name = start_scope(&Bus::System, std::process::id(), SCOPE_TIMEOUT)?;
    let (dir, _) = own_cgroup()?;
    if dir.file_name().is_some_and(|n| *n == *name) {
        Ok(dir)
    } else {
        Err(format!(
            "systemd started {name}, but the checker's cgroup is {}",
            dir.display()
        ))
    }
}

impl Tree {
    /// Where the leaves are.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Why task and memory limits are not applied, if they are not.
    pub fn limits_note(&self) -> Option<&str> {
        self.limits_note.as_deref()
    }

    /// A new, empty leaf for one run (`probe-3-NAME`), with `limits`.
    pub fn leaf(&self, what: &str, limits: Limits) -> Result<Leaf, String> {
        let n = LEAVES.fetch_add(1, Ordering::Relaxed);
        let (kind, name) = what.split_once('-').unwrap_or((what, ""));
        let dir = self.base.join(format!("{kind}-{n}-{}", sanitize(name)));
        {
            let mut alive = ALIVE.lock().unwrap_or_else(|p| p.into_inner());
            if self.source == Source::Mount && *alive == 0 {
                make_base(&self.base)?;
                enable_controllers(&self.base);
            }
            fs::create_dir(&dir).map_err(|e| format!("creating cgroup {}: {e}", dir.display()))?;
            *alive += 1;
        }
        let mut leaf = Leaf {
            procs: None,
            dir,
            limits: Limits::default(),
            base: (self.source == Source::Mount).then(|| self.base.clone()),
        };
        if self.pids {
            if let Some(max) = limits.tasks_max {
                write(&leaf.dir.join("pids.max"), &max.to_string())?;
                leaf.limits.tasks_max = Some(max);
            }
        }
        if self.memory {
            if let Some(max) = limits.memory_max {
                write(&leaf.dir.join("memory.max"), &max.to_string())?;
                // Absent without swap accounting: nothing to limit then.
                let _ = write(&leaf.dir.join("memory.swap.max"), "0");
                leaf.limits.memory_max = Some(max);
            }
        }
        let procs = leaf.dir.join("cgroup.procs");
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(&procs)
            .map_err(|e| format!("opening {}: {e}", procs.display()))?;
        leaf.procs = Some(OwnedFd::from(file));
        Ok(leaf)
    }
}

/// One run's cgroup. Dropping it kills what is left in it and removes it.
#[derive(Debug)]
pub struct Leaf {
    dir: PathBuf,
    /// `cgroup.procs`, open for writing: the child writes `0` to it
    /// before it executes (`super::spawn`), so it runs nothing outside its
    /// cgroup.
    procs: Option<OwnedFd>,
    /// The limits actually set.
    limits: Limits,
    /// The base the checker made, removed with its last leaf.
    base: Option<PathBuf>,
}

/// What a run cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// CPU time of all its processes, microseconds.
    pub cpu_us: Option<u64>,
    /// Peak memory, bytes.
    pub peak_memory_bytes: Option<u64>,
}

impl Leaf {
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The descriptor of `cgroup.procs` for the child to join.
    pub fn procs_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.procs.as_ref().map(|f| f.as_fd())
    }

    /// Kill every process in the cgroup and wait (until `until` at most)
    /// until it is empty; `false` if it is not by then.
    pub fn kill_all(&self, until: Instant) -> bool {
        if populated(&self.dir) == Some(false) {
            return true;
        }
        if write(&self.dir.join("cgroup.kill"), "1").is_err() {
            // Before Linux 5.14: freeze, kill each, thaw.
            let frozen = write(&self.dir.join("cgroup.freeze"), "1").is_ok();
            for pid in procs(&self.dir) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if frozen {
                let _ = write(&self.dir.join("cgroup.freeze"), "0");
            }
        }
        wait_empty(&self.dir, until)
    }

    /// CPU time (`cpu.stat`) and peak memory (`memory.peak`, Linux 5.19
    /// and the memory controller) so far.
    pub fn cost(&self) -> Cost {
        Cost {
            cpu_us: read_key(&self.dir.join("cpu.stat"), "usage_usec"),
            peak_memory_bytes: fs::read_to_string(self.dir.join("memory.peak"))
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        }
    }

    /// The limit the run hit, in words: the memory limit when the kernel
    /// killed one of its processes for it, the task limit when a fork
    /// failed for it.
    pub fn limit_hit(&self) -> Option<String> {
        if let Some(max) = self.limits.memory_max {
            let kills = read_key(&self.dir.join("memory.events"), "oom_kill").unwrap_or(0);
            if kills > 0 {
                return Some(format!(
                    "stopped by its memory limit (memory_max = {}): {kills} process(es) killed",
                    format_bytes(max)
                ));
            }
        }
        if let Some(max) = self.limits.tasks_max {
            let refused = read_key(&self.dir.join("pids.events"), "max").unwrap_or(0);
            if refused > 0 {
                return Some(format!(
                    "stopped by its task limit (tasks_max = {max}): {refused} fork(s) refused"
                ));
            }
        }
        None
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        self.procs = None;
        if self.kill_all(Instant::now() + Duration::from_secs(5)) {
            remove_tree(&self.dir);
        } else {
            tracing::warn!(
                "cgroup {} still has processes after SIGKILL; left in place",
                self.dir.display()
            );
        }
        let mut alive = ALIVE.lock().unwrap_or_else(|p| p.into_inner());
        *alive = alive.saturating_sub(1);
        if *alive == 0 {
            if let Some(base) = &self.base {
                let _ = fs::remove_dir(base);
            }
        }
    }
}

fn make_base(base: &Path) -> Result<(), String> {
    match fs::create_dir(base) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("creating cgroup {}: {e}", base.display())),
    }
}

/// `256 MiB` for a round number of MiB, else bytes.
pub fn format_bytes(b: u64) -> String {
    const MIB: u64 = 1 << 20;
    if b >= MIB && b % MIB == 0 {
        format!("{} MiB", b / MIB)
    } else {
        format!("{b} bytes")
    }
}

/// Keep `[A-Za-z0-9_.-]`, at most 64 of them (a probe name is the file
/// name of its manifest).
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

/// The value of `key` in a flat keyed file (`cpu.stat`, `memory.events`).
fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Whether `cgroup.events` says processes are in the cgroup (or below).
fn populated(dir: &Path) -> Option<bool> {
    read_key(&dir.join("cgroup.events"), "populated").map(|v| v != 0)
}

/// Wait until the cgroup is empty: `cgroup.events` is polled (the kernel
/// wakes pollers when it changes), at most 20 ms between reads.
fn wait_empty(dir: &Path, until: Instant) -> bool {
    let path = dir.join("cgroup.events");
    let Ok(mut file) = File::open(&path) else {
        return true;
    };
    let mut text = String::new();
    loop {
        text.clear();
        if file.rewind().is_err() || file.read_to_string(&mut text).is_err() {
            return true;
        }
        let busy = text.lines().any(|l| {
            l.split_once(' ')
                .is_some_and(|(k, v)| k == "populated" && v.trim() != "0")
        });
        if !busy {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let ms = left.min(Duration::from_millis(20)).as_millis() as u16;
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }
}

/// Kill everything in `dir` and below, then remove it, deepest first.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = write(&dir.join("cgroup.kill"), "1");
    wait_empty(dir, Instant::now() + Duration::from_secs(5));
    for _ in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!("removing cgroup {}: {e}", dir.display());
                return;
            }
        }
    }
    tracing::warn!("removing cgroup {}: still busy", dir.display());
}

/// The checker's own cgroup: its directory in a cgroup2 mount, and the
/// mount's entry.
fn own_cgroup() -> Result<(PathBuf, mountinfo::Mount), String> {
    let mounts = mountinfo::read().map_err(|e| format!("{e:#}"))?;
    let cgroup2: Vec<&mountinfo::Mount> =
        mounts.iter().filter(|m| m.fs_type == "cgroup2").collect();
    if cgroup2.is_empty() {
        return Err(format!(
            "no cgroup2 file system in {}",
            mountinfo::PROC_MOUNTINFO
        ));
    }
    let text = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
    let own = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("/proc/self/cgroup has no cgroup v2 entry (0::)")?
        .trim()
        .to_string();
    if own.ends_with(" (deleted)") {
        return Err(format!("own cgroup {own} was removed"));
    }
    let mut last_err = String::new();
    for m in cgroup2 {
        let root = m.root.trim_end_matches('/');
        let Some(rel) = own.strip_prefix(root) else {
            continue;
        };
        if !rel.is_empty() && !rel.starts_with('/') {
            continue;
        }
        let dir = m.mount_point.join(rel.trim_start_matches('/'));
        if !m.writable() {
            last_err = format!(
                "the cgroup2 file system at {} is mounted read-only",
                m.mount_point.display()
            );
            continue;
        }
        if let Err(e) = nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK) {
            last_err = format!("cgroup {} is not writable: {e}", dir.display());
            continue;
        }
        return Ok((dir, m.clone()));
    }
    Err(if last_err.is_empty() {
        format!("own cgroup {own} is in no cgroup2 mount")
    } else {
        last_err
    })
}

/// Whether systemd delegated `dir` (it marks delegated cgroups with the
/// `trusted.delegate` extended attribute).
fn delegated(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 8];
    let n = getxattr(&path, c"trusted.delegate", &mut value);
    n > 0 && value[0] == b'1'
}

#[allow(unsafe_code)]
fn getxattr(path: &std::ffi::CStr, name: &std::ffi::CStr, value: &mut [u8]) -> isize {
    // SAFETY: both strings are NUL-terminated and `value` is writable for
    // its length.
    unsafe {
        nix::libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    }
}

fn setup() -> Result<Tree, String> {
    let (own, _mount) = own_cgroup()?;
    let under_systemd = Path::new("/run/systemd/system").is_dir();
    let said = std::env::var(OFF_VAR).is_ok_and(|v| v == "delegated");
    // Why a systemd machine gave no delegated cgroup, when it did not.
    let mut no_scope = None;
    let delegated_to_us = if !under_systemd {
        None
    } else if said || delegated(&own) {
        Some((own.clone(), Source::Delegated))
    } else {
        match join_scope() {
            Ok(scope) => Some((scope, Source::Scope)),
            Err(why) => {
                no_scope = Some(why);
                None
            }
        }
    };
    let (base, source) = if let Some((own, source)) = delegated_to_us {
        // The checker itself moves into a leaf: a cgroup whose children
        // have controllers holds no processes.
        let me = own.join(SUPERVISOR);
        match fs::create_dir(&me) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("creating cgroup {}: {e}", me.display())),
        }
        write(&me.join("cgroup.procs"), "0")?;
        (own, source)
    } else {
        reap_stale(&own);
        let base = own.join(format!("health-checker-{}", std::process::id()));
        make_base(&base).map_err(|e| match &no_scope {
            Some(why) => format!("no systemd scope: {why}; {e}"),
            None => e,
        })?;
        if let Some(why) = &no_scope {
            tracing::warn!(
                "no systemd scope for the checker ({why}); creating its cgroups under {}, \
                 which systemd did not delegate to it and may reorganise (the checker's \
                 units have Delegate=yes)",
                own.display()
            );
        }
        (base, Source::Mount)
    };
    let (pids, memory, limits_note) = enable_controllers(&base);
    if source == Source::Mount {
        // Made again with the first leaf.
        let _ = fs::remove_dir(&base);
    }
    Ok(Tree {
        base,
        source,
        pids,
        memory,
        limits_note,
    })
}

/// Remove the `health-checker-PID` cgroups of checkers that are gone (one
/// that was killed could not remove its own).
fn reap_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("health-checker-"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(
                "removing the cgroup of a checker that is gone: {}",
                e.path().display()
            );
            remove_tree(&e.path());
        }
    }
}

/// Enable `pids` and `memory` for the children of `base`; which are on,
/// and a message naming what is missing.
fn enable_controllers(base: &Path) -> (bool, bool, Option<String>) {
    let available = fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| available.split_whitespace().any(|a| a == c);
    let mut on = [false, false];
    let mut missing = Vec::new();
    for (i, c) in ["pids", "memory"].iter().enumerate() {
        if !has(c) {
            missing.push(format!(
                "{c} (not in {}/cgroup.controllers)",
                base.display()
            ));
            continue;
        }
        match write(&base.join("cgroup.subtree_control"), &format!("+{c}")) {
            Ok(()) => on[i] = true,
            Err(e) => missing.push(format!("{c} ({e})")),
        }
    }
    let note = (!missing.is_empty()).then(|| {
        format!(
            "cgroup controllers not available, so their limits are not applied: {}",
            missing.join(", ")
        )
    });
    (on[0], on[1], note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes() {
        assert_eq!(sanitize("a b/c.toml"), "a_b_c.toml");
        assert_eq!(format_bytes(256 << 20), "256 MiB");
        assert_eq!(format_bytes(1000), "1000 bytes");
    }

    #[test]
    fn a_unit_s_own_process_is_not_taken_out_of_it() {
        assert!(started_for_a_unit(300, Some("300")));
        // A command its script runs; no unit at all; nonsense.
        assert!(!started_for_a_unit(301, Some("300")));
        assert!(!started_for_a_unit(300, None));
        assert!(!started_for_a_unit(300, Some("x")));
    }

    #[test]
    fn the_scope_holds_the_process_delegated_and_is_collected() {
        assert_eq!(scope_name(4242), "health-checker-check-4242.scope");
        let props: Vec<(&str, String, String)> = scope_properties(4242)
            .iter()
            .map(|(k, v)| (*k, v.value_signature().to_string(), format!("{v}")))
            .collect();
        let get = |name: &str| {
            let found: Vec<_> = props.iter().filter(|p| p.0 == name).collect();
            assert_eq!(found.len(), 1, "{name} once in {props:?}");
            (found[0].1.as_str(), found[0].2.as_str())
        };
        // systemd reads PIDs as an array of uint32, Delegate as a boolean.
        assert_eq!(get("PIDs"), ("au", "[uint32 4242]"));
        assert_eq!(get("Delegate"), ("b", "true"));
        assert_eq!(get("CollectMode"), ("s", "\"inactive-or-failed\""));
        assert_eq!(get("Description").0, "s");
        assert_eq!(props.len(), 4, "{props:?}");
    }
}
