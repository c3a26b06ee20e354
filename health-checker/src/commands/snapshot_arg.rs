//! The `SNAPSHOT` argument of `arm`, `mark-good` and `mark-bad`: a path
//! from the top-level subvolume (`@/.snapshots/3/snapshot`, a leading `/`
//! allowed) or a snapper number (`3`), resolved against the snapshot store.

use anyhow::{anyhow, Context};

use crate::exit::{with_code, Code, CodeExt};
use crate::snapshots::{SnapshotRef, Snapshots};

/// The subvolume `arg` names. A name that matches nothing, or names the
/// top-level subvolume (which is not a snapshot), is a usage error (exit
/// code 2) saying so; a store that cannot be read is a snapshot error.
pub fn resolve(snapshots: &dyn Snapshots, arg: &str) -> anyhow::Result<SnapshotRef> {
    let arg = arg.trim();
    let found = if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = arg
            .parse()
            .map_err(|_| with_code(Code::Usage, anyhow!("snapper number {arg} is too large")))?;
        let all = snapshots
            .list()
            .context("listing the snapshots")
            .code(Code::Snapshot)?;
        let mut matches = all.into_iter().filter(|s| s.number == Some(n));
        let first = matches.next().map(|s| s.snapshot);
        if let (Some(a), Some(b)) = (&first, matches.next().map(|s| s.snapshot)) {
            return Err(with_code(
                Code::Usage,
                anyhow!(
                    "snapper number {n} names more than one snapshot ({} and {}); give the path",
                    a.path,
                    b.path
                ),
            ));
        }
        first.ok_or_else(|| {
            with_code(
                Code::Usage,
                anyhow!("there is no snapshot with snapper number {n} (…/.snapshots/{n}/snapshot)"),
            )
        })?
    } else {
        let path = arg.trim_matches('/');
        snapshots
            .lookup(path)
            .with_context(|| format!("looking up subvolume {path}"))
            .code(Code::Snapshot)?
            .ok_or_else(|| {
                with_code(
                    Code::Usage,
                    anyhow!(
                        "there is no subvolume {arg:?} (give a path from the top-level subvolume, \
                         such as @/.snapshots/3/snapshot, or a snapper number)"
                    ),
                )
            })?
    };
    refuse_top_level(&found)?;
    Ok(found)
}

/// The top-level subvolume holds the snapshots; it is never one to boot,
/// and an empty path in the environment would mean "none".
pub fn refuse_top_level(s: &SnapshotRef) -> anyhow::Result<()> {
    if s.path.is_empty() {
        return Err(with_code(
            Code::Usage,
            anyhow!(
                "subvolume {} is the top level of the filesystem, not a snapshot",
                s.id
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::code_for;
    use crate::snapshots::SnapshotInfo;

    struct Store(Vec<SnapshotInfo>);

    impl Snapshots for Store {
        fn booted(&self) -> anyhow::Result<SnapshotRef> {
            unreachable!("not asked")
        }
        fn default_subvolume(&self) -> anyhow::Result<SnapshotRef> {
            unreachable!("not asked")
        }
        fn set_default(&self, _: u64) -> anyhow::Result<()> {
            unreachable!("not asked")
        }
        fn lookup(&self, path: &str) -> anyhow::Result<Option<SnapshotRef>> {
            Ok(self
                .0
                .iter()
                .map(|s| s.snapshot.clone())
                .find(|s| s.path == path))
        }
        fn list(&self) -> anyhow::Result<Vec<SnapshotInfo>> {
            Ok(self.0.clone())
        }
    }

    fn info(id: u64, path: &str, number: Option<u64>) -> SnapshotInfo {
        SnapshotInfo {
            snapshot: SnapshotRef {
                id,
                path: path.into(),
            },
            number,
            description: None,
            read_only: false,
        }
    }

    fn store() -> Store {
        Store(vec![
            info(5, "", None),
            info(256, "@", None),
            info(258, "@/.snapshots/1/snapshot", Some(1)),
            info(259, "@/.snapshots/3/snapshot", Some(3)),
        ])
    }

    #[test]
    fn numbers_and_paths_resolve() {
        let s = store();
        assert_eq!(resolve(&s, "3").unwrap().id, 259);
        assert_eq!(resolve(&s, "@/.snapshots/1/snapshot").unwrap().id, 258);
        assert_eq!(resolve(&s, "/@/.snapshots/1/snapshot/").unwrap().id, 258);
        assert_eq!(resolve(&s, "@").unwrap().id, 256);
    }

    #[test]
    fn unknown_names_and_the_top_level_are_usage_errors() {
        let s = store();
        for arg in ["2", "@/nothing", "/", "99999999999999999999999"] {
            let e = resolve(&s, arg).unwrap_err();
            assert_eq!(code_for(&e), Code::Usage, "{arg}: {e:#}");
        }
        let e = resolve(&s, "2").unwrap_err();
        assert!(format!("{e:#}").contains("snapper number 2"), "{e:#}");
        let e = resolve(&s, "/").unwrap_err();
        assert!(format!("{e:#}").contains("top level"), "{e:#}");
    }
}
