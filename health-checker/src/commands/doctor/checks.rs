//! The checks of `doctor`: each a pure function from the gathered
//! [`Facts`] to one [`Finding`] (`ok`, `warn` or `fail`, with the fix).

use serde::Serialize;

use super::facts::{EnvFact, EnvPlace, Facts, UnitFact};
use super::grubcfg::{self, EnvSource};
use crate::bootloader::sdboot::LoaderView;
use crate::snapshots::snapper;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check's stable name.
    pub check: &'static str,
    pub level: Level,
    /// What was found.
    pub message: String,
    /// What to do about it; `None` when nothing is to be done.
    pub fix: Option<String>,
}

fn ok(check: &'static str, message: impl Into<String>) -> Finding {
    Finding {
        check,
        level: Level::Ok,
        message: message.into(),
        fix: None,
    }
}

fn warn(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check,
        level: Level::Warn,
        message: message.into(),
        fix: Some(fix.into()),
    }
}

fn fail(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check,
        level: Level::Fail,
        message: message.into(),
        fix: Some(fix.into()),
    }
}

/// Every check, in display order.
pub fn all(f: &Facts) -> Vec<Finding> {
    let loader = match &f.systemd_boot {
        None => vec![grub_snippet(f), grub_loads_environment(f)],
        Some(view) => vec![systemd_boot_default(view), systemd_boot_trial(f, view)],
    };
    let mut v = vec![
        config(f),
        root_filesystem(f),
        default_subvolume(f),
        boot_environment(f),
    ];
    v.extend(loader);
    v.extend(vec![
        known_good(f),
        units(f),
        panic_on_cmdline(f),
        watchdog_device(f),
        runtime_watchdog(f),
        plugins(f),
    ]);
    v
}

/// systemd-boot boots our known-good entry by default: `loader.conf`
/// names our entries and no EFI variable overrides it.
pub fn systemd_boot_default(view: &Result<LoaderView, String>) -> Finding {
    const C: &str = "systemd-boot-default";
    let fix = "`health-checker boot-entries sync` (with the EFI system partition mounted)";
    let v = match view {
        Ok(v) => v,
        Err(e) => {
            return fail(
                C,
                format!("systemd-boot's entries cannot be read: {e}"),
                fix,
            )
        }
    };
    if let Some(o) = v.overrides.first() {
        return fail(
            C,
            format!("the EFI variable {o} overrides loader.conf: systemd-boot does not boot the entries health-checker chooses"),
            "`bootctl set-default \"\"` and `bootctl set-oneshot \"\"` (or clear the default in the boot menu)",
        );
    }
    if v.loader_default.as_deref() != Some(crate::bootloader::names::DEFAULT_GLOB) {
        return fail(
            C,
            format!(
                "{}/loader/loader.conf has `default {}`, not `default {}`",
                v.esp,
                v.loader_default.as_deref().unwrap_or("(none)"),
                crate::bootloader::names::DEFAULT_GLOB
            ),
            fix,
        );
    }
    match &v.default_entry {
        Some(e) => ok(
            C,
            format!("systemd-boot boots {e} by default (ESP {})", v.esp),
        ),
        None => fail(C, format!("no known-good entry on the ESP {}", v.esp), fix),
    }
}

/// An armed trial has attempts left in its entry's boot counter.
pub fn systemd_boot_trial(f: &Facts, view: &Result<LoaderView, String>) -> Finding {
    const C: &str = "systemd-boot-counting";
    let Ok(v) = view else {
        return warn(
            C,
            "systemd-boot's entries cannot be read",
            "see systemd-boot-default",
        );
    };
    let trial = match &f.env {
        EnvFact::Present(s) => s.trial.clone(),
        _ => None,
    };
    match (trial, &v.counting_entry, v.tries_left) {
        (None, _, _) => ok(C, "no trial armed; the next trial gets a new counted entry"),
        (Some(t), Some(e), Some(n)) => ok(
            C,
            format!("trial {} is counted by {e}: {n} attempt(s) left", t.path),
        ),
        (Some(t), _, _) => warn(
            C,
            format!(
                "trial {} has no attempts left: the next boot falls back to the known-good",
                t.path
            ),
            "the next check records the fall-back; arm the snapshot again to retry it",
        ),
    }
}

/// The configuration can be read.
pub fn config(f: &Facts) -> Finding {
    match &f.config_error {
        None => ok("config", "the configuration is valid"),
        Some(e) => fail(
            "config",
            format!("the configuration cannot be read ({e}); every check fails the boot"),
            "correct the file and key named above (`health-checker config show` reads it again)",
        ),
    }
}

/// `/` is a btrfs snapshot, in snapper's layout.
pub fn root_filesystem(f: &Facts) -> Finding {
    const C: &str = "root-filesystem";
    let booted = match &f.booted {
        Ok(b) => b,
        Err(e) => return fail(
            C,
            format!("the root is not a btrfs snapshot: {e}"),
            "health-checker protects systems whose root is a btrfs snapshot (see docs/adopting.md)",
        ),
    };
    if booted.id == libbtrfsutil::FS_TREE_OBJECTID {
        return fail(
            C,
            "the root is the top-level subvolume of its btrfs, not a snapshot",
            "install into a subvolume and boot snapshots of it (snapper's layout, see docs/adopting.md)",
        );
    }
    match snapper::parse_path(&booted.path) {
        Some(p) => ok(
            C,
            format!(
                "the root is btrfs snapshot {} (snapper number {})",
                booted.path, p.number
            ),
        ),
        None => warn(
            C,
            format!(
                "the root is btrfs subvolume {}, not in snapper's layout (<root>/.snapshots/N/snapshot)",
                booted.path
            ),
            "use snapper (`snapper -c root create-config /`) so updates make numbered snapshots",
        ),
    }
}

/// The default subvolume is the booted snapshot, or the armed trial.
pub fn default_subvolume(f: &Facts) -> Finding {
    const C: &str = "default-subvolume";
    let (booted, default) = match (&f.booted, &f.default) {
        (Ok(b), Ok(d)) => (b, d),
        (Err(e), _) | (_, Err(e)) => {
            return fail(
                C,
                format!("cannot compare the default subvolume with the booted snapshot: {e}"),
                "see root-filesystem",
            )
        }
    };
    if default.id == libbtrfsutil::FS_TREE_OBJECTID {
        return fail(
            C,
            "the default subvolume is the top level (ID 5): a plain boot mounts no snapshot",
            format!(
                "btrfs subvolume set-default {} / (the booted snapshot {})",
                booted.id, booted.path
            ),
        );
    }
    if default.id == booted.id {
        return ok(
            C,
            format!(
                "the default subvolume is the booted snapshot {}",
                booted.path
            ),
        );
    }
    let trial = match &f.env {
        EnvFact::Present(s) => s.trial.as_ref(),
        _ => None,
    };
    if trial.is_some_and(|t| t.id == default.id) {
        return ok(
            C,
            format!(
                "the default subvolume {} is the armed trial (booted: {})",
                default.path, booted.path
            ),
        );
    }
    warn(
        C,
        format!(
            "the default subvolume {} is neither the booted snapshot {} nor an armed trial",
            default.path, booted.path
        ),
        format!(
            "`health-checker arm {}` protects its first boot (health-checker-arm-on-shutdown.service does it at shutdown), or `btrfs subvolume set-default {} /` to stay",
            default.path, booted.id
        ),
    )
}

/// The boot environment exists and can be read.
pub fn boot_environment(f: &Facts) -> Finding {
    const C: &str = "boot-environment";
    match &f.env {
        EnvFact::Present(_) => ok(C, format!("boot environment {} is readable", f.env_path)),
        EnvFact::Missing => fail(
            C,
            format!("boot environment {} does not exist (nor its backup)", f.env_path),
            match f.systemd_boot {
                None => "mount the EFI system partition and run `health-checker bootenv create`, then `update-grub`",
                Some(_) => "mount the EFI system partition and run `health-checker boot-entries sync`",
            },
        ),
        EnvFact::Unreadable(e) => fail(
            C,
            format!("boot environment {} cannot be read: {e}", f.env_path),
            "see `health-checker bootenv list`; rewrite it with `health-checker bootenv create`",
        ),
    }
}

/// GRUB's generated configuration has the snippet's section.
pub fn grub_snippet(f: &Facts) -> Finding {
    const C: &str = "grub-snippet";
    match &f.grub_cfg {
        Ok(Some(text)) if grubcfg::section(text).is_some() => ok(
            C,
            format!("{} has health-checker's boot counting", f.grub_cfg_path),
        ),
        Ok(Some(_)) => fail(
            C,
            format!(
                "{} has no health-checker section: GRUB does not count boot attempts",
                f.grub_cfg_path
            ),
            "check that /etc/grub.d/09_health-checker is installed and executable and HC_ENABLE is not false in /etc/default/health-checker-grub, then run `update-grub`",
        ),
        Ok(None) => fail(
            C,
            format!("{} does not exist", f.grub_cfg_path),
            "health-checker needs GRUB: install it (grub-efi-amd64) and run `update-grub`",
        ),
        Err(e) => fail(
            C,
            format!("{} cannot be read: {e}", f.grub_cfg_path),
            "run doctor as root",
        ),
    }
}

/// GRUB loads the environment from where the checker writes it.
pub fn grub_loads_environment(f: &Facts) -> Finding {
    const C: &str = "grub-loads-environment";
    let section = match &f.grub_cfg {
        Ok(Some(text)) => grubcfg::section(text),
        _ => None,
    };
    let Some(section) = section else {
        return fail(
            C,
            "GRUB loads no health-checker environment (no section in grub.cfg)",
            "see grub-snippet",
        );
    };
    match (&section.env, &f.env_place) {
        (None, _) => fail(
            C,
            format!(
                "the health-checker section of {} loads no environment",
                f.grub_cfg_path
            ),
            "run `update-grub`; if it stays so, reinstall /etc/grub.d/09_health-checker",
        ),
        (Some(EnvSource::EnvBlock), EnvPlace::EnvBlock) => ok(
            C,
            "GRUB loads the environment from the btrfs reserved block (env_block), as configured",
        ),
        (Some(EnvSource::File { fs_uuid, path }), EnvPlace::File { rel_path, fs_uuids }) => {
            let path_ok = rel_path.as_deref() == Some(path.as_str());
            let uuid_ok = fs_uuids.is_empty() || fs_uuids.iter().any(|u| u == fs_uuid);
            if path_ok && uuid_ok {
                let how = if fs_uuids.is_empty() {
                    " (its file system UUID not verified: no /dev/disk/by-uuid entry for it)"
                } else {
                    ""
                };
                ok(
                    C,
                    format!(
                        "GRUB loads {path} on file system {fs_uuid}, which is {}{how}",
                        f.env_path
                    ),
                )
            } else {
                fail(
                    C,
                    format!(
                        "GRUB loads {path} on file system {fs_uuid}, but the checker uses {} ({}{})",
                        f.env_path,
                        rel_path.as_deref().unwrap_or("path inside its file system unknown"),
                        if fs_uuids.is_empty() {
                            String::new()
                        } else {
                            format!(" on {}", fs_uuids.join(" or "))
                        }
                    ),
                    "mount the EFI system partition and run `update-grub` (the snippet asks `health-checker bootenv path`); HC_GRUBENV or HC_ENV_* set in /etc/default/health-checker-grub override it",
                )
            }
        }
        (Some(found), _) => fail(
            C,
            format!(
                "GRUB loads the environment from {}, but the checker is configured for {}",
                match found {
                    EnvSource::EnvBlock => "the btrfs reserved block".to_owned(),
                    EnvSource::File { path, .. } => path.clone(),
                },
                f.env_path
            ),
            "run `update-grub`; HC_ENV_LOCATION set in /etc/default/health-checker-grub overrides [bootenv] location",
        ),
    }
}

/// A known-good snapshot to fall back to.
pub fn known_good(f: &Facts) -> Finding {
    const C: &str = "known-good";
    let EnvFact::Present(state) = &f.env else {
        return fail(
            C,
            "no known-good snapshot can be read (no boot environment)",
            "see boot-environment",
        );
    };
    match (&state.good, f.known_good_exists) {
        (None, _) => fail(
            C,
            "no known-good snapshot yet: a bad update has nothing to fall back to",
            "reboot: the first boot that passes its checks becomes known-good (or `health-checker mark-good` this snapshot)",
        ),
        (Some(g), Some(false)) => fail(
            C,
            format!("the known-good snapshot {} (ID {}) no longer exists", g.path, g.id),
            "`health-checker mark-good` a snapshot that boots (the booted one, if it is good)",
        ),
        (Some(g), _) => ok(C, format!("known-good snapshot {} (ID {})", g.path, g.id)),
    }
}

/// The boot units are enabled.
pub fn units(f: &Facts) -> Finding {
    const C: &str = "units";
    let problems: Vec<String> = f.units.iter().flat_map(unit_problems).collect();
    if problems.is_empty() {
        let names: Vec<&str> = f.units.iter().map(|u| u.name.as_str()).collect();
        return ok(C, format!("enabled: {}", names.join(", ")));
    }
    let names = |pick: fn(&UnitFact) -> bool| -> String {
        let v: Vec<&str> = f
            .units
            .iter()
            .filter(|u| pick(u))
            .map(|u| u.name.as_str())
            .collect();
        v.join(" ")
    };
    let mut fix = Vec::new();
    let missing = names(|u| !u.found);
    if !missing.is_empty() {
        fix.push(format!(
            "install them (the package, or `make install` and `systemctl enable`): {missing}"
        ));
    }
    let masked = names(|u| u.found && u.masked);
    if !masked.is_empty() {
        fix.push(format!("systemctl unmask {masked}"));
    }
    let disabled = names(|u| u.found && !u.missing_links.is_empty());
    if !disabled.is_empty() || !masked.is_empty() {
        fix.push(format!(
            "systemctl enable {}",
            names(|u| u.found && (u.masked || !u.missing_links.is_empty()))
        ));
    }
    fail(C, problems.join("; "), fix.join("; "))
}

fn unit_problems(u: &UnitFact) -> Vec<String> {
    if !u.found {
        return vec![format!("{} is not installed", u.name)];
    }
    if u.masked {
        return vec![format!("{} is masked", u.name)];
    }
    u.missing_links
        .iter()
        .map(|l| format!("{} is not enabled ({l} missing)", u.name))
        .collect()
}

/// `panic=` makes a panicking kernel reset, so GRUB counts the next attempt.
pub fn panic_on_cmdline(f: &Facts) -> Finding {
    const C: &str = "kernel-panic-reboot";
    let now = f.cmdline.as_deref().and_then(grubcfg::panic_seconds);
    let next_snippet = match &f.grub_cfg {
        Ok(Some(text)) => grubcfg::section(text)
            .and_then(|s| s.cmdline)
            .and_then(|c| grubcfg::panic_seconds(&c)),
        _ => None,
    };
    let next_default = f
        .default_grub
        .as_deref()
        .and_then(|t| grubcfg::panic_seconds(&default_grub_cmdline(t)));
    let next_sdboot = match &f.systemd_boot {
        Some(Ok(v)) => v
            .default_options
            .as_deref()
            .and_then(grubcfg::panic_seconds),
        _ => None,
    };
    let next = match &f.systemd_boot {
        Some(_) => next_sdboot,
        None => next_snippet.or(next_default),
    };
    let fix = match &f.systemd_boot {
        None => "keep panic=10 in HC_CMDLINE (/etc/default/health-checker-grub) or add it to GRUB_CMDLINE_LINUX in /etc/default/grub, then `update-grub`",
        Some(_) => "add panic=10 to [bootloader] options (or this kernel's command line), then `health-checker boot-entries sync` and arm the next update",
    };
    match (now, next) {
        (Some(n), Some(m)) if n > 0 && m > 0 => ok(
            C,
            format!("panic={n} on this boot's command line, panic={m} for the next boot"),
        ),
        (_, Some(m)) if m > 0 => warn(
            C,
            format!(
                "this boot's kernel has no panic= (a panic would hang it); the next boot gets panic={m}"
            ),
            "reboot for it to take effect",
        ),
        (Some(n), _) if n > 0 => fail(
            C,
            format!("panic={n} on this boot's command line, but none for the next boot"),
            fix,
        ),
        _ => fail(
            C,
            "no panic= on the kernel command line: a kernel that panics hangs instead of resetting, and GRUB never counts the attempt",
            fix,
        ),
    }
}

/// The kernel command line `/etc/default/grub` gives (`GRUB_CMDLINE_LINUX`
/// and `GRUB_CMDLINE_LINUX_DEFAULT`), from shell assignments.
fn default_grub_cmdline(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        for key in ["GRUB_CMDLINE_LINUX=", "GRUB_CMDLINE_LINUX_DEFAULT="] {
            if let Some(v) = line.strip_prefix(key) {
                out.push(v.trim_matches(|c| c == '"' || c == '\'').to_owned());
            }
        }
    }
    out.join(" ")
}

/// A hardware watchdog resets a hung machine (warn only).
pub fn watchdog_device(f: &Facts) -> Finding {
    const C: &str = "watchdog-device";
    if f.watchdogs.is_empty() {
        warn(
            C,
            "no hardware watchdog (/dev/watchdog0, /sys/class/watchdog): a hang without a panic needs a human",
            "enable the board's watchdog driver (e.g. iTCO_wdt, i6300esb, sp5100_tco)",
        )
    } else {
        ok(C, format!("hardware watchdog: {}", f.watchdogs.join(", ")))
    }
}

/// systemd drives the watchdog (warn only).
pub fn runtime_watchdog(f: &Facts) -> Finding {
    const C: &str = "runtime-watchdog";
    match &f.runtime_watchdog {
        Some((file, v)) if !matches!(v.as_str(), "" | "0" | "off" | "infinity") => {
            ok(C, format!("RuntimeWatchdogSec={v} ({file})"))
        }
        Some((file, v)) => warn(
            C,
            format!("RuntimeWatchdogSec={v} in {file}: systemd does not drive the watchdog"),
            "set RuntimeWatchdogSec=30s in /etc/systemd/system.conf.d/watchdog.conf",
        ),
        None => warn(
            C,
            "RuntimeWatchdogSec is not set: systemd does not drive the watchdog",
            "set RuntimeWatchdogSec=30s in /etc/systemd/system.conf.d/watchdog.conf",
        ),
    }
}

/// The plugin directories and plugins are safe and usable.
pub fn plugins(f: &Facts) -> Finding {
    const C: &str = "plugins";
    if f.plugin_problems.is_empty() {
        ok(
            C,
            "plugin directories and plugins are owned by root and not writable by others",
        )
    } else {
        fail(
            C,
            f.plugin_problems.join("; "),
            "make them owned by root and not writable by group or others (chown root:root, chmod go-w); fix or remove broken manifests (`health-checker probes list`)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::BootState;
    use crate::snapshots::SnapshotRef;

    fn snap(n: u64) -> SnapshotRef {
        SnapshotRef {
            id: 256 + n,
            path: format!("@/.snapshots/{n}/snapshot"),
        }
    }

    /// Facts of a protected system booted from snapshot 1.
    fn protected() -> Facts {
        Facts {
            config_error: None,
            booted: Ok(snap(1)),
            default: Ok(snap(1)),
            env_path: "/boot/efi/EFI/health-checker/grubenv".into(),
            env: EnvFact::Present(BootState {
                good: Some(snap(1)),
                ..BootState::default()
            }),
            known_good_exists: Some(true),
            env_place: EnvPlace::File {
                rel_path: Some("/EFI/health-checker/grubenv".into()),
                fs_uuids: vec!["1234-ABCD".into()],
            },
            grub_cfg_path: "/boot/grub/grub.cfg".into(),
            grub_cfg: Ok(Some(
                "### BEGIN health-checker (09_health-checker) ###\n\
                 if search --no-floppy --fs-uuid --set=hc_envdev 1234-ABCD; then\n\
                 set hc_primary=\"($hc_envdev)/EFI/health-checker/grubenv\"\n\
                 linux /$hc_boot/vmlinuz root=UUID=x rootflags=subvol=$hc_boot ro panic=10\n\
                 ### END health-checker ###\n"
                    .into(),
            )),
            units: vec![UnitFact {
                name: "health-checker-late.service".into(),
                found: true,
                masked: false,
                missing_links: vec![],
            }],
            cmdline: Some("ro panic=10".into()),
            default_grub: None,
            watchdogs: vec!["/dev/watchdog0".into()],
            runtime_watchdog: Some(("/etc/systemd/system.conf".into(), "30s".into())),
            plugin_problems: vec![],
            systemd_boot: None,
        }
    }

    fn sd_view() -> LoaderView {
        LoaderView {
            esp: "/boot/efi".into(),
            loader_default: Some("health-checker-boot-*".into()),
            default_entry: Some("health-checker-boot-good-257.conf".into()),
            default_options: Some("root=UUID=x ro panic=10 rootflags=subvol=@/a".into()),
            counting_entry: None,
            tries_left: None,
            booted_entry: None,
            overrides: vec![],
            entries: vec![],
        }
    }

    #[test]
    fn systemd_boot_replaces_the_grub_checks() {
        let mut f = protected();
        f.grub_cfg = Ok(None);
        f.systemd_boot = Some(Ok(sd_view()));
        let all = all(&f);
        assert!(all.iter().all(|c| !c.check.starts_with("grub")), "{all:?}");
        assert!(all.iter().all(|c| c.level == Level::Ok), "{all:?}");
        // The next boot's panic= comes from the default entry.
        f.systemd_boot = Some(Ok(LoaderView {
            default_options: Some("root=UUID=x ro".into()),
            ..sd_view()
        }));
        let p = panic_on_cmdline(&f);
        assert_eq!(p.level, Level::Fail);
        assert!(p.fix.unwrap().contains("[bootloader] options"));
    }

    #[test]
    fn systemd_boot_default_fails_on_overrides_and_a_foreign_default() {
        let v = LoaderView {
            overrides: vec!["LoaderEntryDefault=debian.conf".into()],
            ..sd_view()
        };
        let f = systemd_boot_default(&Ok(v));
        assert_eq!(f.level, Level::Fail);
        assert!(f.message.contains("LoaderEntryDefault"), "{}", f.message);
        let v = LoaderView {
            loader_default: Some("debian-*".into()),
            ..sd_view()
        };
        let f = systemd_boot_default(&Ok(v));
        assert_eq!(f.level, Level::Fail);
        assert!(f.fix.unwrap().contains("boot-entries sync"));
        let v = LoaderView {
            default_entry: None,
            ..sd_view()
        };
        assert_eq!(systemd_boot_default(&Ok(v)).level, Level::Fail);
        assert_eq!(
            systemd_boot_default(&Err("no ESP".into())).level,
            Level::Fail
        );
    }

    #[test]
    fn systemd_boot_counting_reports_the_attempts_left() {
        let mut f = protected();
        f.env = EnvFact::Present(BootState {
            good: Some(snap(1)),
            trial: Some(snap(2)),
            tries: 2,
            ..BootState::default()
        });
        let v = LoaderView {
            counting_entry: Some("health-checker-boot-trial-258+2-1.conf".into()),
            tries_left: Some(2),
            ..sd_view()
        };
        let c = systemd_boot_trial(&f, &Ok(v));
        assert_eq!(c.level, Level::Ok);
        assert!(c.message.contains("2 attempt(s) left"), "{}", c.message);
        assert_eq!(systemd_boot_trial(&f, &Ok(sd_view())).level, Level::Warn);
    }

    fn level(f: Finding) -> Level {
        f.level
    }

    #[test]
    fn the_protected_facts_are_all_ok() {
        for finding in all(&protected()) {
            assert_eq!(finding.level, Level::Ok, "{finding:?}");
            assert_eq!(finding.fix, None);
        }
    }

    #[test]
    fn a_default_that_is_the_armed_trial_is_ok_any_other_warns() {
        let mut f = protected();
        f.default = Ok(snap(2));
        assert_eq!(level(default_subvolume(&f)), Level::Warn);
        f.env = EnvFact::Present(BootState {
            good: Some(snap(1)),
            trial: Some(snap(2)),
            tries: 3,
            ..BootState::default()
        });
        assert_eq!(level(default_subvolume(&f)), Level::Ok);
    }

    #[test]
    fn the_top_level_as_root_or_default_fails() {
        let top = SnapshotRef {
            id: 5,
            path: String::new(),
        };
        let mut f = protected();
        f.default = Ok(top.clone());
        assert_eq!(level(default_subvolume(&f)), Level::Fail);
        let mut f = protected();
        f.booted = Ok(top);
        assert_eq!(level(root_filesystem(&f)), Level::Fail);
    }

    #[test]
    fn a_root_outside_snappers_layout_warns() {
        let mut f = protected();
        f.booted = Ok(SnapshotRef {
            id: 256,
            path: "@".into(),
        });
        assert_eq!(level(root_filesystem(&f)), Level::Warn);
    }

    #[test]
    fn panic_for_the_next_boot_decides() {
        let mut f = protected();
        f.cmdline = Some("ro quiet".into());
        assert_eq!(level(panic_on_cmdline(&f)), Level::Warn);
        f.grub_cfg = Ok(Some("no section".into()));
        assert_eq!(level(panic_on_cmdline(&f)), Level::Fail);
        f.default_grub = Some("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet panic=30\"\n".into());
        assert_eq!(level(panic_on_cmdline(&f)), Level::Warn);
        f.cmdline = Some("panic=30".into());
        assert_eq!(level(panic_on_cmdline(&f)), Level::Ok);
        f.cmdline = Some("panic=0".into());
        assert_eq!(level(panic_on_cmdline(&f)), Level::Warn);
    }

    #[test]
    fn a_grub_env_on_another_file_system_fails() {
        let mut f = protected();
        f.env_place = EnvPlace::File {
            rel_path: Some("/EFI/health-checker/grubenv".into()),
            fs_uuids: vec!["9999-0000".into()],
        };
        let finding = grub_loads_environment(&f);
        assert_eq!(finding.level, Level::Fail, "{finding:?}");
        assert!(finding.message.contains("9999-0000"), "{finding:?}");
        f.env_place = EnvPlace::EnvBlock;
        assert_eq!(level(grub_loads_environment(&f)), Level::Fail);
    }

    #[test]
    fn watchdog_settings_only_warn() {
        let mut f = protected();
        f.watchdogs.clear();
        assert_eq!(level(watchdog_device(&f)), Level::Warn);
        for off in ["0", "off", "infinity", ""] {
            f.runtime_watchdog = Some(("x".into(), off.into()));
            assert_eq!(level(runtime_watchdog(&f)), Level::Warn, "{off}");
        }
        f.runtime_watchdog = None;
        assert_eq!(level(runtime_watchdog(&f)), Level::Warn);
    }

    #[test]
    fn masked_and_disabled_units_fail_with_the_commands_to_fix_them() {
        let mut f = protected();
        f.units = vec![
            UnitFact {
                name: "a.service".into(),
                found: true,
                masked: true,
                missing_links: vec![],
            },
            UnitFact {
                name: "b.service".into(),
                found: true,
                masked: false,
                missing_links: vec!["multi-user.target.wants/b.service".into()],
            },
        ];
        let finding = units(&f);
        assert_eq!(finding.level, Level::Fail);
        assert_eq!(
            finding.fix.as_deref(),
            Some("systemctl unmask a.service; systemctl enable a.service b.service")
        );
    }

    #[test]
    fn install_sections_give_the_links() {
        let unit = "[Unit]\nWantedBy=not-here.target\n[Install]\nWantedBy=multi-user.target\nRequiredBy=boot-complete.target a.target\n";
        assert_eq!(
            super::super::facts::install_links(unit),
            vec![
                "multi-user.target.wants",
                "boot-complete.target.requires",
                "a.target.requires"
            ]
        );
    }
}
