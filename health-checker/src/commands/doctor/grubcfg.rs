//! What GRUB's generated `grub.cfg` says about health-checker: whether the
//! snippet's section (`/etc/grub.d/09_health-checker`) is in it, where that
//! section loads the boot environment from, and the kernel command line of
//! its entries.

/// The first line of the snippet's section.
pub const BEGIN_MARKER: &str = "### BEGIN health-checker";
/// Its last line.
pub const END_MARKER: &str = "### END health-checker";

/// Where the section loads the boot environment from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    /// A file: the file system's UUID (as `search --fs-uuid` takes it) and
    /// the path inside that file system.
    File { fs_uuid: String, path: String },
    /// The btrfs reserved block that patched GRUBs announce in `env_block`.
    EnvBlock,
}

/// The snippet's section of a `grub.cfg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Where it loads the environment from; `None` when no load is found.
    pub env: Option<EnvSource>,
    /// The kernel command line after `rootflags=subvol=$hc_boot ro`, from
    /// its first `linux` line.
    pub cmdline: Option<String>,
}

/// The snippet's section, if `grub_cfg` has one.
pub fn section(grub_cfg: &str) -> Option<Section> {
    let start = grub_cfg.find(BEGIN_MARKER)?;
    let rest = &grub_cfg[start..];
    let body = match rest.find(END_MARKER) {
        Some(end) => &rest[..end],
        None => rest,
    };
    let mut uuid = None;
    let mut path = None;
    let mut block = false;
    let mut cmdline = None;
    for line in body.lines().map(str::trim) {
        if let Some(r) = line.strip_prefix("if search --no-floppy --fs-uuid --set=hc_envdev ") {
            uuid = r.strip_suffix("; then").map(|u| u.trim().to_owned());
        } else if let Some(r) = line.strip_prefix("set hc_primary=\"($hc_envdev)") {
            path = r.strip_suffix('"').map(str::to_owned);
        } else if line.starts_with("if load_env --skip-sig -f \"$env_block\"") {
            block = true;
        } else if cmdline.is_none() && line.starts_with("linux ") {
            cmdline = line
                .split_once(" ro ")
                .map(|(_, c)| c.trim().to_owned())
                .or_else(|| Some(String::new()));
        }
    }
    let env = match (uuid, path) {
        (Some(fs_uuid), Some(path)) => Some(EnvSource::File { fs_uuid, path }),
        _ if block => Some(EnvSource::EnvBlock),
        _ => None,
    };
    Some(Section { env, cmdline })
}

/// The value of `panic=` in a kernel command line, if set.
pub fn panic_seconds(cmdline: &str) -> Option<i64> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("panic="))
        .next_back()
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNIPPET: &str = "\
### BEGIN /etc/grub.d/09_health-checker ###
### BEGIN health-checker (09_health-checker) ###
set hc_env=\"\"
set hc_envdev=\"\"
if search --no-floppy --fs-uuid --set=hc_envdev 1234-ABCD; then
  set hc_primary=\"($hc_envdev)/EFI/health-checker/grubenv\"
  set hc_backup=\"($hc_envdev)/EFI/health-checker/grubenv.bak\"
fi
  menuentry \"Snapshot $hc_boot (health-checker: $hc_booted)\" --id hc-boot {
    linux /$hc_boot/vmlinuz root=UUID=0f0f rootflags=subvol=$hc_boot ro panic=10 console=ttyS0
  }
### END health-checker ###
### END /etc/grub.d/09_health-checker ###
";

    #[test]
    fn the_file_location_and_command_line_are_read() {
        let s = section(&format!(
            "set default=0\n{SNIPPET}### BEGIN /etc/grub.d/10_linux ###\n"
        ))
        .expect("section");
        assert_eq!(
            s.env,
            Some(EnvSource::File {
                fs_uuid: "1234-ABCD".into(),
                path: "/EFI/health-checker/grubenv".into()
            })
        );
        assert_eq!(s.cmdline.as_deref(), Some("panic=10 console=ttyS0"));
        assert_eq!(panic_seconds(s.cmdline.as_deref().unwrap()), Some(10));
    }

    #[test]
    fn the_env_block_location_is_read() {
        let cfg = "### BEGIN health-checker (09_health-checker) ###\n\
                   if [ -n \"$env_block\" ]; then\n  hc_clear\n  \
                   if load_env --skip-sig -f \"$env_block\" $hc_keys; then\n\
                   ### END health-checker ###\n";
        assert_eq!(section(cfg).unwrap().env, Some(EnvSource::EnvBlock));
    }

    #[test]
    fn no_section_without_the_marker() {
        assert_eq!(
            section("### BEGIN /etc/grub.d/10_linux ###\nmenuentry x {}\n"),
            None
        );
    }

    #[test]
    fn panic_takes_the_last_value() {
        assert_eq!(panic_seconds("quiet panic=5 panic=0"), Some(0));
        assert_eq!(panic_seconds("quiet"), None);
        assert_eq!(panic_seconds("panic=x"), None);
    }
}
