//! The login message: `/run/motd.d/health-checker`.
//!
//! `pam_motd` (Debian, Fedora, openSUSE) shows every file of `/run/motd.d`,
//! `/etc/motd.d` and `/usr/lib/motd.d` at login, as do systemd's and most
//! distributions' motd helpers. We write the volatile `/run/motd.d`: the
//! message belongs to this boot (a repaired system does not keep showing
//! it), and `/etc` is inside the snapshot, possibly read-only and undone by
//! the next rollback. An admin who wants a lasting message can copy it to
//! `/etc/motd.d/` from an alert hook.

use std::path::PathBuf;

use anyhow::Context;

use super::{Alert, AlertKind};
use crate::paths::Root;

/// The message file, as seen inside the system.
pub const MOTD_FILE: &str = "/run/motd.d/health-checker";

/// What the message says.
pub fn render(alert: &Alert) -> String {
    let headline = match alert.kind {
        AlertKind::Rollback => "the last update failed its boot checks and was rolled back",
        AlertKind::GrubFallback => {
            "a new snapshot never finished booting; GRUB went back to the known-good one"
        }
        AlertKind::Degraded => "DEGRADED MODE: this system failed its boot checks",
    };
    format!(
        "\n*** health-checker: {headline} ***\n{}\nRun `health-checker status` for details.\n\n",
        printable(&alert.summary)
    )
}

pub use crate::probes::display::printable;

/// Write the message under `root`, atomically: a reader sees the old file or
/// the new one, never part of one.
pub fn write(root: &Root, alert: &Alert) -> anyhow::Result<PathBuf> {
    let path = root.join(MOTD_FILE);
    crate::fsutil::atomic_write(&path, render(alert).as_bytes())?;
    Ok(path)
}

/// Remove the message (the system is healthy again). No message is fine.
pub fn clear(root: &Root) -> anyhow::Result<()> {
    let path = root.join(MOTD_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(summary: &str) -> Alert {
        Alert {
            kind: AlertKind::Degraded,
            summary: summary.into(),
            details: serde_json::json!({}),
        }
    }

    #[test]
    fn the_message_is_written_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let p = write(&root, &alert("probe db failed")).unwrap();
        assert_eq!(p, dir.path().join("run/motd.d/health-checker"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("DEGRADED MODE"), "{text}");
        assert!(text.contains("probe db failed"), "{text}");

        write(&root, &alert("second")).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("second") && !text.contains("probe db"),
            "{text}"
        );
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["health-checker"], "no temporary file left");

        clear(&root).unwrap();
        assert!(!p.exists());
        clear(&root).unwrap();
    }

    #[test]
    fn control_characters_do_not_reach_terminals() {
        assert_eq!(printable("a\x1b[2Jb\nc\td\r"), "a?[2Jb\nc\td?");
    }

    #[test]
    fn an_unwritable_place_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // `run` is a file, so `run/motd.d` cannot be made.
        std::fs::write(dir.path().join("run"), "").unwrap();
        let err = write(&Root::new(dir.path()), &alert("x")).unwrap_err();
        assert!(format!("{err:#}").contains("run/motd.d"), "{err:#}");
    }
}
