//! Stable exit codes (listed in the manual page and `docs/design.md`).

use std::fmt::Write as _;

/// Exit codes of the `health-checker` binary. Their numbers never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Success; for `check`, the boot passed.
    Ok = 0,
    /// The boot failed: a required probe failed.
    BootFailed = 1,
    /// The command line was wrong.
    Usage = 2,
    /// The configuration could not be read.
    Config = 3,
    /// The boot environment could not be read or written.
    BootEnv = 4,
    /// A btrfs or snapshot operation failed.
    Snapshot = 5,
    /// Any other runtime error (I/O, D-Bus, ...).
    Runtime = 6,
    /// A command that acts on the boot (`check`) was run by a user who is
    /// not root; nothing was run.
    NotRoot = 7,
}

impl From<Code> for std::process::ExitCode {
    fn from(c: Code) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}

/// An error that carries the exit code it should end the program with.
#[derive(Debug, thiserror::Error)]
#[error("{source:#}")]
pub struct Coded {
    pub code: Code,
    #[source]
    pub source: anyhow::Error,
}

/// Tag an error with the exit code it maps to.
pub fn with_code(code: Code, source: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Coded { code, source })
}

/// Extension to tag a `Result`'s error with an exit code.
pub trait CodeExt<T> {
    fn code(self, code: Code) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> CodeExt<T> for Result<T, E> {
    fn code(self, code: Code) -> anyhow::Result<T> {
        self.map_err(|e| with_code(code, e.into()))
    }
}

/// The exit code for an error: the innermost [`Coded`] tag wins, else
/// [`Code::Runtime`].
pub fn code_for(err: &anyhow::Error) -> Code {
    err.chain()
        .filter_map(|e| e.downcast_ref::<Coded>())
        .last()
        .map(|c| c.code)
        .unwrap_or(Code::Runtime)
}

/// The error and its causes on one line: `what: why: deeper why`.
pub fn chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for (i, cause) in err.chain().enumerate() {
        if cause.downcast_ref::<Coded>().is_some() {
            continue;
        }
        let text = cause.to_string();
        // anyhow's `{:#}` of a wrapped error repeats its causes; skip repeats.
        if out.contains(&text) {
            continue;
        }
        if i > 0 && !out.is_empty() {
            out.push_str(": ");
        }
        let _ = write!(out, "{text}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn innermost_code_wins_and_chain_is_one_line() {
        let inner: anyhow::Result<()> =
            Err(std::io::Error::other("disk on fire")).code(Code::BootEnv);
        let err = inner.context("writing /boot/grubenv").unwrap_err();
        assert_eq!(code_for(&err), Code::BootEnv);
        assert_eq!(chain(&err), "writing /boot/grubenv: disk on fire");
    }

    #[test]
    fn untagged_errors_are_runtime() {
        let err = anyhow::anyhow!("plain");
        assert_eq!(code_for(&err), Code::Runtime);
    }
}
