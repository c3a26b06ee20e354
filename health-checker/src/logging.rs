//! Logging: to the journal when it is there (structured fields, message IDs),
//! and to standard error for people at a terminal.

use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// Fixed journal message IDs for the events an operator searches for. They
/// never change; the journald catalog (`systemd-units/health-checker.catalog`)
/// explains each.
pub mod message_id {
    pub const PROMOTED: &str = "1f3c5ab0e4d54c6b9a7c2d0e8b6f4a11";
    pub const ROLLBACK: &str = "2a4d6bc1f5e6475cab8d3e1f9c705b22";
    pub const DEGRADED: &str = "3b5e7cd206f7586dbc9e4f20ad816c33";
    pub const GRUB_FALLBACK: &str = "4c6f8de317084a7ecdaf5031be927d44";
    pub const VERDICT: &str = "5d7091f428195b8fdeb06142cfa38e55";
}

/// Library messages that are expected and say nothing to an admin: zbus
/// warns on every connection to systemd's private socket that file
/// descriptor passing was declined (our relay declines it on purpose; see
/// `systemd::private_socket`).
const QUIET: &str = "zbus::connection::handshake=error";

/// Set up logging. `verbose` counts `-v` flags.
pub fn init(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("HEALTH_CHECKER_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},{QUIET}")));
    // Colour only for a person at a terminal, never with NO_COLOR set: the
    // serial console and the journal get plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .without_time()
        .with_filter(filter);
    // Field names reach the journal as they are (no `F_` prefix), so
    // `MESSAGE_ID` is the real journal field. The journal gets `info` and
    // above whatever `-v` says: probe output and results belong there.
    let journal_filter = EnvFilter::try_from_env("HEALTH_CHECKER_JOURNAL_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET}")));
    let journald = tracing_journald::layer().ok().map(|l| {
        l.with_field_prefix(None)
            .with_syslog_identifier("health-checker".into())
            .with_filter(journal_filter)
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(journald)
        .try_init();
}
