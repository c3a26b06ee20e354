//! Minimum free space on a filesystem (statvfs).

use crate::paths::Root;
use crate::probes::manifest::MinFree;

use super::Part;

/// The filesystem holding `want.path` (under `root`) must have at least
/// `bytes` or `percent` available to unprivileged users.
pub fn check_min_free(root: &Root, want: &MinFree) -> Part {
    let path = root.join(&want.path);
    let st = match nix::sys::statvfs::statvfs(&path) {
        Ok(s) => s,
        Err(e) => return Part::error(format!("statvfs {}: {e}", path.display())),
    };
    let frsize = st.fragment_size() as u128;
    let avail = st.blocks_available() as u128 * frsize;
    let size = st.blocks() as u128 * frsize;
    let output = format!(
        "{}: {avail} of {size} bytes available\n",
        want.path.display()
    );
    let (ok, need) = match (want.bytes, want.percent) {
        (Some(b), _) => (avail >= b as u128, format!("{b} bytes")),
        (None, Some(p)) => (avail * 100 >= size * p as u128, format!("{p}%")),
        (None, None) => return Part::error("min_free gives neither bytes nor percent".into()),
    };
    if ok {
        Part::pass(output)
    } else {
        Part::fail(
            format!(
                "{} has {avail} bytes available, less than {need}",
                want.path.display()
            ),
            output,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Outcome;

    #[test]
    fn thresholds() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let want = |bytes, percent| MinFree {
            path: "/".into(),
            bytes,
            percent,
        };
        assert_eq!(
            check_min_free(&root, &want(Some(1), None)).outcome,
            Outcome::Pass
        );
        assert_eq!(
            check_min_free(&root, &want(None, Some(0))).outcome,
            Outcome::Pass
        );
        let huge = check_min_free(&root, &want(Some(u64::MAX), None));
        assert_eq!(huge.outcome, Outcome::Fail);
        assert!(huge
            .reason
            .unwrap()
            .contains("less than 18446744073709551615 bytes"));
        assert_eq!(
            check_min_free(&root, &want(None, Some(100))).outcome,
            Outcome::Fail
        );
        let missing = MinFree {
            path: "/no/such/dir".into(),
            bytes: Some(1),
            percent: None,
        };
        assert_eq!(check_min_free(&root, &missing).outcome, Outcome::Error);
    }
}
