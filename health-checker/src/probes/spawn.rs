//! Starting a command the way [`super::process`] needs it, without copying
//! the checker: the child shares the checker's memory until it executes
//! (`clone` with `CLONE_VM | CLONE_VFORK`, what `posix_spawn` does), and in
//! that moment it joins its cgroup, its own process group and its standard
//! descriptors, so nothing it runs is ever outside them.
//!
//! `std::process::Command` can join a cgroup only through `pre_exec`, which
//! makes it `fork`: with many probe and reader threads, a fork copies the
//! page tables of the whole checker and makes the other threads fault on
//! every page they write until the child executes. `make bench`
//! (`runner_ratios`) showed that as most of a trivial probe's cost.
//! (`posix_spawnattr_setcgroup_np`, which would do the same, needs glibc
//! 2.39; Debian 12 has 2.36.)
//!
//! The child runs on a stack of its own and calls only async-signal-safe
//! functions on data prepared before the clone; the calling thread is
//! suspended until the child executes or exits, so that data stays alive,
//! and every signal is blocked in it meanwhile so that no handler of the
//! checker runs on the shared memory in the child.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc::{self, c_char, c_int, c_void};
use nix::unistd::Pid;

/// What to start.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// The program, executed as `/proc/self/fd/N` (kept open across the
    /// exec, so a script's interpreter can open it by that name).
    pub program: BorrowedFd<'a>,
    /// `argv`, `argv[0]` included.
    pub argv: &'a [String],
    /// The whole environment, `KEY=VALUE`.
    pub env: Vec<(OsString, OsString)>,
    /// Standard input, output and error.
    pub stdio: [BorrowedFd<'a>; 3],
    /// `cgroup.procs` of the cgroup to join, open for writing.
    pub cgroup_procs: Option<BorrowedFd<'a>>,
}

/// The step of the child that failed, for the error message.
const STEPS: [&str; 6] = [
    "",
    "setting up its standard descriptors",
    "making its process group",
    "joining its cgroup",
    "keeping its program open",
    "executing it",
];

/// What the child reads; all of it prepared before the clone.
struct ChildData {
    path: CString,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    stdio: [c_int; 3],
    program: c_int,
    procs: c_int,
    /// Set by the child when a step fails: the step and the errno.
    step: AtomicI32,
    errno: AtomicI32,
}

/// The child's stack: enough for the few libc calls it makes. Mapped
/// fresh for each child, so only the pages it touches are ever memory (a
/// heap allocation would be zeroed, page by page, for every probe at once).
const STACK: usize = 64 * 1024;

/// An anonymous mapping for the child's stack, unmapped when dropped.
struct Stack(*mut c_void);

impl Stack {
    #[allow(unsafe_code)]
    fn new() -> io::Result<Stack> {
        // SAFETY: a new private anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Stack(p))
    }

    /// Its top, 16-byte aligned (the stack grows down).
    #[allow(unsafe_code)]
    fn top(&self) -> *mut c_void {
        // SAFETY: one past the end of the mapping, which is page-aligned.
        unsafe { self.0.cast::<u8>().add(STACK).cast() }
    }
}

impl Drop for Stack {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used by any child.
        unsafe {
            libc::munmap(self.0, STACK);
        }
    }
}

/// Start `s`; returns the child's PID once it has executed the program.
/// An error names the step that failed.
#[allow(unsafe_code)]
pub fn spawn(s: &Spawn<'_>) -> io::Result<Pid> {
    let cstr = |b: Vec<u8>| {
        CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte"))
    };
    let argv: Vec<CString> = s
        .argv
        .iter()
        .map(|a| cstr(a.clone().into_bytes()))
        .collect::<io::Result<_>>()?;
    let env: Vec<CString> = s
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone().into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_encoded_bytes());
            cstr(kv)
        })
        .collect::<io::Result<_>>()?;
    let ptrs = |v: &[CString]| {
        let mut p: Vec<*const c_char> = v.iter().map(|c| c.as_ptr()).collect();
        p.push(std::ptr::null());
        p
    };
    let data = ChildData {
        path: cstr(format!("/proc/self/fd/{}", s.program.as_raw_fd()).into_bytes())?,
        argv: ptrs(&argv),
        envp: ptrs(&env),
        stdio: s.stdio.map(|f| f.as_raw_fd()),
        program: s.program.as_raw_fd(),
        procs: s.cgroup_procs.map_or(-1, |f| f.as_raw_fd()),
        step: AtomicI32::new(0),
        errno: AtomicI32::new(0),
    };
    let stack = Stack::new()?;

    // SAFETY: `all` and `old` are valid sigset_t values; blocking every
    // signal in this thread is undone right after the clone.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: the stack is ours and outlives the child's use of it (the
    // vfork flag suspends this thread until the child executes or exits);
    // `data` outlives it likewise; `child_main` calls only async-signal-
    // safe functions and never returns into Rust code of the parent.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::addr_of!(data).cast_mut().cast::<c_void>(),
        )
    };
    let clone_err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    drop(stack);
    if pid < 0 {
        return Err(clone_err);
    }
    let pid = Pid::from_raw(pid);
    let step = data.step.load(Ordering::SeqCst);
    if step != 0 {
        let errno = data.errno.load(Ordering::SeqCst);
        // It has exited: reap it so it leaves no zombie.
        let _ = nix::sys::wait::waitpid(pid, None);
        let e = io::Error::from_raw_os_error(errno);
        let what = STEPS.get(step as usize).copied().unwrap_or("starting it");
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(pid)
}

/// The child, between the clone and the exec.
#[allow(unsafe_code)]
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `ChildData`, alive while the parent
    // waits for this child to execute or exit.
    let d = unsafe { &*(arg as *const ChildData) };
    let fail = |step: i32| -> c_int {
        // SAFETY: errno of this thread; `_exit` ends the child without
        // running anything of the parent's (no atexit handlers, no flush).
        unsafe {
            d.errno.store(*libc::__errno_location(), Ordering::SeqCst);
            d.step.store(step, Ordering::SeqCst);
            libc::_exit(127)
        }
    };
    // SAFETY: each call below is async-signal-safe and takes descriptors,
    // signal numbers and pointers prepared by the parent.
    unsafe {
        // Handlers of the checker do not exist in the program: default
        // dispositions (ignored signals stay ignored, as across any exec),
        // SIGPIPE back to default as `std::process::Command` does.
        for sig in 1..=libc::SIGRTMAX() {
            let mut sa: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut sa) == 0
                && (sa.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
                && sa.sa_sigaction != libc::SIG_DFL
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        // Standard descriptors: first above 2, so that none of them is
        // overwritten before it is copied, then into place (`dup2` clears
        // close-on-exec on the copy).
        let mut high = [0; 3];
        for (i, fd) in d.stdio.iter().enumerate() {
            high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3);
            if high[i] < 0 {
                return fail(1);
            }
        }
        for (i, fd) in high.iter().enumerate() {
            if libc::dup2(*fd, i as c_int) < 0 {
                return fail(1);
            }
        }
        if libc::setpgid(0, 0) < 0 {
            return fail(2);
        }
        if d.procs >= 0 && libc::write(d.procs, b"0".as_ptr().cast(), 1) != 1 {
            return fail(3);
        }
        if libc::fcntl(d.program, libc::F_SETFD, 0) < 0 {
            return fail(4);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(d.path.as_ptr(), d.argv.as_ptr(), d.envp.as_ptr());
    }
    fail(5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{AsFd, OwnedFd};

    fn open(path: &str) -> OwnedFd {
        OwnedFd::from(std::fs::File::open(path).unwrap())
    }

    fn wait(pid: Pid) -> i32 {
        match nix::sys::wait::waitpid(pid, None).unwrap() {
            nix::sys::wait::WaitStatus::Exited(_, c) => c,
            other => panic!("{other:?}"),
        }
    }

    /// Run `program` with `argv` and `env`, input from /dev/null; its PID,
    /// exit code and output.
    fn run(program: &str, argv: &[String], env: Vec<(OsString, OsString)>) -> (Pid, i32, String) {
        let program = open(program);
        let null = open("/dev/null");
        let (r, w) = nix::unistd::pipe().unwrap();
        let pid = spawn(&Spawn {
            program: program.as_fd(),
            argv,
            env,
            stdio: [null.as_fd(), w.as_fd(), w.as_fd()],
            cgroup_procs: None,
        })
        .unwrap();
        drop(w);
        let mut out = String::new();
        std::fs::File::from(r).read_to_string(&mut out).unwrap();
        (pid, wait(pid), out)
    }

    #[test]
    fn runs_the_program_with_its_arguments_environment_and_output() {
        let argv = [
            "sh".to_owned(),
            "-c".to_owned(),
            "echo \"$0 $1 $HCTEST_VAR $$\"".to_owned(),
            "zero".to_owned(),
            "one".to_owned(),
        ];
        let env = vec![
            ("HCTEST_VAR".into(), "two".into()),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ];
        let (pid, code, out) = run("/bin/sh", &argv, env);
        assert_eq!(code, 0);
        assert_eq!(out, format!("zero one two {pid}\n"));
    }

    #[test]
    fn its_own_process_group_and_no_inherited_handlers_or_mask() {
        // `cat` reads its own state: no shell between (a shell blocks
        // signals for moments of its own).
        let argv = [
            "cat".to_owned(),
            "/proc/self/status".to_owned(),
            "/proc/self/stat".to_owned(),
        ];
        let (pid, code, out) = run("/bin/cat", &argv, vec![]);
        assert_eq!(code, 0, "{out}");
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {name} in {out}"))
                .to_owned()
        };
        assert_eq!(field("SigBlk:"), "0000000000000000", "no signal blocked");
        // SIGPIPE (bit 12) is not ignored, as the checker ignores it.
        let ign = u64::from_str_radix(&field("SigIgn:"), 16).unwrap();
        assert_eq!(ign & (1 << 12), 0, "SIGPIPE at its default: {out}");
        // /proc/self/stat: "PID (comm) STATE PPID PGRP ..."
        let stat = out.lines().last().unwrap();
        let after = stat.rsplit_once(") ").unwrap().1;
        let pgrp = after.split(' ').nth(2).unwrap();
        assert_eq!(pgrp, pid.to_string(), "its own process group: {stat}");
    }

    #[test]
    fn a_program_that_cannot_be_executed_is_an_error_naming_the_step() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("text"), "not a program\n").unwrap();
        let text = open(dir.path().join("text").to_str().unwrap());
        let null = open("/dev/null");
        let e = spawn(&Spawn {
            program: text.as_fd(),
            argv: &["x".to_owned()],
            env: vec![],
            stdio: [null.as_fd(), null.as_fd(), null.as_fd()],
            cgroup_procs: None,
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("executing it: "), "{e}");
    }

    #[test]
    fn a_cgroup_that_cannot_be_joined_is_an_error_and_nothing_runs() {
        let sh = open("/bin/sh");
        let null = open("/dev/null");
        // Written to, a read-only descriptor fails: the child stops there.
        let procs = open("/dev/null");
        let marker = tempfile::tempdir().unwrap();
        let file = marker.path().join("ran");
        let argv = [
            "sh".to_owned(),
            "-c".to_owned(),
            format!("touch {}", file.display()),
        ];
        let e = spawn(&Spawn {
            program: sh.as_fd(),
            argv: &argv,
            env: vec![],
            stdio: [null.as_fd(), null.as_fd(), null.as_fd()],
            cgroup_procs: Some(procs.as_fd()),
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("joining its cgroup: "), "{e}");
        assert!(!file.exists());
    }
}
