//! The kernel's table of mounts (`/proc/self/mountinfo`): which mounts show
//! which part of which filesystem, read-only or not.
//!
//! The snapshot store uses it to find, for the btrfs filesystem of the root
//! acted on, every place where it is mounted: to read files of a subvolume
//! that is not the booted one (snapper's `info.xml`), and to find a writable
//! mount when the root itself is read-only. The fstab check compares fstab
//! with it. This is the one parser of the format.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};

/// Where the kernel publishes the mount table of this process's namespace.
pub const PROC_MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of `mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The filesystem's device number as `major:minor`; the same for every
    /// mount of one btrfs filesystem, whatever the subvolume.
    pub dev: String,
    /// The directory of the filesystem shown at the mount point, from the
    /// filesystem's root: for btrfs, `/` for the top level, `/@/.snapshots`
    /// for a subvolume mount.
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`/`ro`, ...).
    pub mount_options: String,
    /// Filesystem type (`btrfs`).
    pub fs_type: String,
    /// What was mounted (`/dev/vda2`).
    pub source: String,
    /// Options of the filesystem itself (`rw`/`ro`, `subvolid=`, ...).
    pub super_options: String,
}

impl Mount {
    /// Whether writes through this mount are allowed (mount and filesystem
    /// both `rw`).
    pub fn writable(&self) -> bool {
        has_option(&self.mount_options, "rw") && has_option(&self.super_options, "rw")
    }

    /// The value of the filesystem option `key=value` (`subvol`,
    /// `subvolid`), if set.
    pub fn super_option(&self, key: &str) -> Option<&str> {
        self.super_options
            .split(',')
            .find_map(|o| o.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

fn has_option(options: &str, name: &str) -> bool {
    options.split(',').any(|o| o == name)
}

/// Read and parse the mount table of this process.
pub fn read() -> anyhow::Result<Vec<Mount>> {
    let text = std::fs::read_to_string(PROC_MOUNTINFO)
        .with_context(|| format!("reading the mount table {PROC_MOUNTINFO}"))?;
    parse(&text).with_context(|| format!("parsing the mount table {PROC_MOUNTINFO}"))
}

/// Parse `mountinfo` text.
pub fn parse(text: &str) -> anyhow::Result<Vec<Mount>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l).with_context(|| format!("line {}: {l:?}", i + 1)))
        .collect()
}

fn parse_line(line: &str) -> anyhow::Result<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    // id parent major:minor root mount-point options [optional...] - type source super
    let Some(sep) = fields.iter().position(|f| *f == "-") else {
        bail!("no \" - \" separator");
    };
    if sep < 6 || fields.len() < sep + 4 {
        bail!("too few fields");
    }
    Ok(Mount {
        dev: fields[2].to_string(),
        root: unescape(fields[3]),
        mount_point: PathBuf::from(unescape(fields[4])),
        mount_options: fields[5].to_string(),
        fs_type: unescape(fields[sep + 1]),
        source: unescape(fields[sep + 2]),
        super_options: fields[sep + 3].to_string(),
    })
}

/// Undo the kernel's octal escapes (`\040` for a space, `\134` for `\`),
/// as `mountinfo` and fstab write them.
pub fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path` (which must be absolute and free of symlinks,
/// e.g. canonicalized): the last-mounted of those with the longest mount
/// point that is a prefix of `path`.
pub fn mount_of<'m>(mounts: &'m [Mount], path: &Path) -> Option<&'m Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if path.starts_with(&m.mount_point) {
            let longer = best.is_none_or(|b| {
                m.mount_point.components().count() >= b.mount_point.components().count()
            });
            if longer {
                best = Some(m);
            }
        }
    }
    best
}

/// Where the file at `fs_path` (a path from the filesystem's root, e.g.
/// `/@/.snapshots/3/info.xml`) can be reached through the given mounts of
/// that filesystem: under the mount whose root is the longest prefix of it.
/// `None` when no mount shows that part of the filesystem.
pub fn reach(mounts: &[&Mount], fs_path: &str) -> Option<PathBuf> {
    let wanted = Path::new(fs_path);
    let mut best: Option<(&Mount, PathBuf)> = None;
    for m in mounts {
        let Ok(rest) = wanted.strip_prefix(&m.root) else {
            continue;
        };
        let depth = Path::new(&m.root).components().count();
        if best
            .as_ref()
            .is_none_or(|(b, _)| depth > Path::new(&b.root).components().count())
        {
            best = Some((m, rest.to_path_buf()));
        }
    }
    best.map(|(m, rest)| {
        if rest.components().any(|c| matches!(c, Component::ParentDir)) {
            m.mount_point.clone()
        } else {
            m.mount_point.join(rest)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
43 22 0:39 / /tmp/bx/top rw,relatime shared:30 - btrfs /dev/loop0 rw,discard=async,space_cache=v2,subvolid=5,subvol=/
44 22 0:39 /@/.snapshots/1/snapshot /tmp/bx/r ro,relatime - btrfs /dev/loop0 rw,subvolid=258,subvol=/@/.snapshots/1/snapshot
45 44 0:39 /@/.snapshots /tmp/bx/r/.snapshots ro,relatime - btrfs /dev/loop0 rw,subvolid=257,subvol=/@/.snapshots
46 22 0:40 / /mnt/with\\040space rw - tmpfs tmp\\134fs rw
";

    #[test]
    fn parses_fields_optional_tags_and_escapes() {
        let m = parse(SAMPLE).unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(m[2].dev, "0:39");
        assert_eq!(m[2].root, "/@/.snapshots/1/snapshot");
        assert_eq!(m[2].mount_point, PathBuf::from("/tmp/bx/r"));
        assert_eq!(m[2].fs_type, "btrfs");
        assert_eq!(m[2].source, "/dev/loop0");
        assert!(!m[2].writable());
        assert!(m[1].writable());
        assert_eq!(m[4].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[4].source, "tmp\\fs");
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        for bad in ["", "1 2 3", "1 2 0:1 / / rw - btrfs", "\\", "- - - - - - -"] {
            let _ = parse(bad);
        }
        assert!(parse("1 2 0:1 / / rw\n").is_err());
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("\\777x"), "\\777x");
    }

    #[test]
    fn the_mount_holding_a_path_is_the_deepest_and_latest() {
        let m = parse(SAMPLE).unwrap();
        let got = mount_of(&m, Path::new("/tmp/bx/r/.snapshots/1/info.xml")).unwrap();
        assert_eq!(got.root, "/@/.snapshots");
        let got = mount_of(&m, Path::new("/tmp/bx/r/etc")).unwrap();
        assert_eq!(got.root, "/@/.snapshots/1/snapshot");
        assert_eq!(mount_of(&m, Path::new("/etc")).unwrap().fs_type, "ext4");
    }

    #[test]
    fn a_filesystem_path_is_reached_through_the_deepest_mount() {
        let all = parse(SAMPLE).unwrap();
        let fs: Vec<&Mount> = all.iter().filter(|m| m.dev == "0:39").collect();
        assert_eq!(
            reach(&fs, "/@/.snapshots/2/info.xml"),
            Some(PathBuf::from("/tmp/bx/r/.snapshots/2/info.xml"))
        );
        assert_eq!(
            reach(&fs[1..], "/@/.snapshots/1/snapshot/etc"),
            Some(PathBuf::from("/tmp/bx/r/etc"))
        );
        assert_eq!(reach(&fs[1..2], "/@/other"), None);
    }
}
