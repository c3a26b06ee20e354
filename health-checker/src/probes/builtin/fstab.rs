//! Every mount in `<root>/etc/fstab` must be mounted, btrfs subvolumes
//! included: compared with the kernel's mount table (`mountinfo` format,
//! read by `snapshots::mountinfo`, the one parser of it).

use std::path::Path;

use crate::paths::Root;
use crate::snapshots::mountinfo::{self, unescape};

use super::Part;

/// One line of fstab that should be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FstabEntry {
    pub line: usize,
    pub spec: String,
    pub mount_point: String,
    pub fstype: String,
    pub options: Vec<String>,
}

impl FstabEntry {
    fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find_map(|o| o.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

/// The fstab entries that should be mounted at boot: not `noauto`, not
/// `nofail` (the admin said the boot does not depend on them), not swap,
/// not mounted on `none`.
pub fn parse_fstab(text: &str) -> Result<Vec<FstabEntry>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            return Err(format!(
                "line {}: expected at least 3 fields: {raw:?}",
                i + 1
            ));
        }
        let entry = FstabEntry {
            line: i + 1,
            spec: unescape(f[0]),
            mount_point: unescape(f[1]),
            fstype: f[2].to_string(),
            options: f
                .get(3)
                .map(|o| o.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
        };
        let skip = entry.fstype == "swap"
            || entry.mount_point == "none"
            || entry.mount_point == "swap"
            || entry.options.iter().any(|o| o == "noauto" || o == "nofail");
        if !skip {
            out.push(entry);
        }
    }
    Ok(out)
}

fn norm(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.to_string()
    }
}

/// Check `<root>/etc/fstab` against the mount table at `mountinfo`.
pub fn check_fstab(root: &Root, mountinfo: &Path) -> Part {
    let fstab_path = root.join("/etc/fstab");
    let fstab = match std::fs::read_to_string(&fstab_path) {
        Ok(t) => t,
        Err(e) => return Part::error(format!("reading {}: {e}", fstab_path.display())),
    };
    let entries = match parse_fstab(&fstab) {
        Ok(e) => e,
        Err(e) => return Part::error(format!("{}: {e}", fstab_path.display())),
    };
    let mounts = match std::fs::read_to_string(mountinfo)
        .map_err(|e| e.to_string())
        .and_then(|t| mountinfo::parse(&t).map_err(|e| format!("{e:#}")))
    {
        Ok(m) => m,
        Err(e) => return Part::error(format!("reading {}: {e}", mountinfo.display())),
    };
    let mut output = String::new();
    let mut bad = Vec::new();
    for e in &entries {
        let target = norm(&root.join(&e.mount_point).to_string_lossy());
        // The last mount on a path is the one visible.
        let Some(m) = mounts
            .iter()
            .rev()
            .find(|m| norm(&m.mount_point.to_string_lossy()) == target)
        else {
            output.push_str(&format!("{}: not mounted\n", e.mount_point));
            bad.push(format!("{} is not mounted", e.mount_point));
            continue;
        };
        if let Some(want) = e.option("subvol") {
            let want = want.trim_matches('/');
            let have = m
                .super_option("subvol")
                .unwrap_or(&m.root)
                .trim_matches('/')
                .to_string();
            if want != have {
                output.push_str(&format!(
                    "{}: subvolume {have} mounted, fstab wants {want}\n",
                    e.mount_point
                ));
                bad.push(format!(
                    "{} has subvolume {have} mounted, not {want}",
                    e.mount_point
                ));
                continue;
            }
        }
        if let Some(want) = e.option("subvolid") {
            let have = m.super_option("subvolid").unwrap_or("?");
            if want != have {
                output.push_str(&format!(
                    "{}: subvolume id {have} mounted, fstab wants {want}\n",
                    e.mount_point
                ));
                bad.push(format!(
                    "{} has subvolume id {have} mounted, not {want}",
                    e.mount_point
                ));
                continue;
            }
        }
        output.push_str(&format!(
            "{}: mounted ({} {}{})\n",
            e.mount_point,
            m.fs_type,
            m.source,
            if m.fs_type == "btrfs" {
                format!(" {}", m.root)
            } else {
                String::new()
            }
        ));
    }
    if bad.is_empty() {
        Part::pass(output)
    } else {
        Part::fail(bad.join("; "), output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Outcome;

    const FSTAB: &str = "\
# /etc/fstab
UUID=abcd / btrfs defaults 0 0
UUID=abcd /var btrfs subvol=/@/var 0 0
UUID=abcd /home btrfs subvol=@/home,noatime 0 0
UUID=ef01 /boot/efi vfat umask=0077 0 2
/dev/sdb1 /mnt/my\\040disk ext4 defaults 0 2
UUID=1111 none swap sw 0 0
/dev/sdc1 /backup ext4 noauto 0 0
/dev/sdd1 /usb ext4 nofail 0 0
";

    fn mountinfo(var_subvol: &str, with_home: bool) -> String {
        let mut s = format!(
            "\
22 1 0:31 /@/.snapshots/3/snapshot / rw,relatime shared:1 - btrfs /dev/vda2 rw,subvol=/@/.snapshots/3/snapshot,subvolid=260
40 22 0:31 {var_subvol} /var rw,relatime shared:2 - btrfs /dev/vda2 rw,subvol={var_subvol},subvolid=257
41 22 254:1 / /boot/efi rw,relatime shared:3 - vfat /dev/vda1 rw,fmask=0077
42 22 8:17 / /mnt/my\\040disk rw - ext4 /dev/sdb1 rw
"
        );
        if with_home {
            s.push_str("43 22 0:31 /@/home /home rw shared:4 - btrfs /dev/vda2 rw,subvol=/@/home,subvolid=258\n");
        }
        s
    }

    fn check(mi: &str) -> Part {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/fstab"), FSTAB).unwrap();
        let mi_path = dir.path().join("mountinfo");
        // Mount points as the kernel sees them: under the root.
        let root = dir.path().to_string_lossy().into_owned();
        let mi = mi
            .lines()
            .map(|l| {
                let mut f: Vec<String> = l.split(' ').map(str::to_string).collect();
                f[4] = format!("{root}{}", if f[4] == "/" { "" } else { &f[4] });
                f.join(" ") + "\n"
            })
            .collect::<String>();
        std::fs::write(&mi_path, mi).unwrap();
        check_fstab(&Root::new(dir.path()), &mi_path)
    }

    #[test]
    fn parse_skips_what_need_not_be_mounted() {
        let e = parse_fstab(FSTAB).unwrap();
        let points: Vec<&str> = e.iter().map(|e| e.mount_point.as_str()).collect();
        assert_eq!(points, ["/", "/var", "/home", "/boot/efi", "/mnt/my disk"]);
        assert_eq!(e[1].option("subvol"), Some("/@/var"));
    }

    #[test]
    fn all_mounted_passes() {
        let p = check(&mountinfo("/@/var", true));
        assert_eq!(p.outcome, Outcome::Pass, "{p:?}");
        assert!(
            p.output.contains("/var: mounted (btrfs /dev/vda2 /@/var)"),
            "{}",
            p.output
        );
    }

    #[test]
    fn a_missing_mount_fails() {
        let p = check(&mountinfo("/@/var", false));
        assert_eq!(p.outcome, Outcome::Fail);
        assert_eq!(p.reason.as_deref(), Some("/home is not mounted"));
    }

    #[test]
    fn the_wrong_subvolume_fails() {
        let p = check(&mountinfo("/@/.snapshots/3/snapshot/var", true));
        assert_eq!(p.outcome, Outcome::Fail);
        assert_eq!(
            p.reason.as_deref(),
            Some("/var has subvolume @/.snapshots/3/snapshot/var mounted, not @/var")
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(mountinfo::parse("garbage\n").is_err());
        assert!(parse_fstab("onlyone\n").is_err());
        assert_eq!(unescape("a\\040b\\"), "a b\\");
        assert_eq!(unescape("\\777"), "\\777");
    }
}
