//! The checker's view of the GRUB environment: the `hc_*` keys of
//! `docs/design.md`, typed. Reading and writing the block itself is the
//! `grub-env` crate's job; this module only turns key values into a
//! [`BootState`] and back, so it does not depend on how they are stored.

use crate::snapshots::SnapshotRef;

/// Key: path of the known-good snapshot.
pub const GOOD: &str = "hc_good";
/// Key: subvolume ID of the known-good snapshot.
pub const GOOD_ID: &str = "hc_good_id";
/// Key: path of the trial snapshot.
pub const TRIAL: &str = "hc_trial";
/// Key: subvolume ID of the trial snapshot.
pub const TRIAL_ID: &str = "hc_trial_id";
/// Key: boot attempts the trial has left (`0`..`9`; GRUB decrements it).
pub const TRIES: &str = "hc_tries";
/// Key: set by GRUB to the trial's path when it fell back to the known-good.
pub const FALLBACK: &str = "hc_fallback";
/// Key: `trial` or `good`, which entry GRUB chose for this boot.
pub const BOOTED: &str = "hc_booted";
/// Key: how many times in a row the known-good snapshot failed and was
/// rebooted.
pub const GOOD_FAILS: &str = "hc_good_fails";

/// Every key this module owns, in the order [`BootState::changes`] lists them.
pub const KEYS: [&str; 8] = [
    GOOD, GOOD_ID, TRIAL, TRIAL_ID, TRIES, FALLBACK, BOOTED, GOOD_FAILS,
];

/// The largest attempt count GRUB can count down (a single digit).
pub const MAX_TRIES: u8 = 9;

/// Which entry GRUB says it chose for this boot (`hc_booted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrubEntry {
    /// The trial snapshot (it had attempts left).
    Trial,
    /// The known-good snapshot (no trial, or no attempts left).
    Good,
}

impl GrubEntry {
    /// The value GRUB writes.
    pub fn as_str(self) -> &'static str {
        match self {
            GrubEntry::Trial => "trial",
            GrubEntry::Good => "good",
        }
    }
}

/// The boot state held in the GRUB environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootState {
    /// The known-good snapshot (`hc_good`, `hc_good_id`); `None`: none yet.
    pub good: Option<SnapshotRef>,
    /// The trial snapshot (`hc_trial`, `hc_trial_id`); `None`: no trial.
    pub trial: Option<SnapshotRef>,
    /// Attempts the trial has left (`hc_tries`); 0 when unset.
    pub tries: u8,
    /// The trial path GRUB gave up on (`hc_fallback`).
    pub fallback: Option<String>,
    /// The entry GRUB chose for this boot (`hc_booted`).
    pub booted: Option<GrubEntry>,
    /// Consecutive failed-and-rebooted boots of the known-good
    /// (`hc_good_fails`); 0 when unset.
    pub good_fails: u32,
}

/// A key held a value the checker cannot use. The environment is left as it
/// is; the caller reports this as a boot-environment error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("boot environment key {key}={value:?}: {problem}")]
pub struct BadKey {
    /// The key with the bad value.
    pub key: &'static str,
    /// The value found (empty when the key is missing).
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(key: &'static str, value: &str, problem: impl Into<String>) -> BadKey {
    BadKey {
        key,
        value: value.to_owned(),
        problem: problem.into(),
    }
}

/// A snapshot named by a path key and an ID key. Both absent (or the path
/// empty): none. One without the other is an error.
fn snapshot(
    get: &impl Fn(&str) -> Option<String>,
    path_key: &'static str,
    id_key: &'static str,
) -> Result<Option<SnapshotRef>, BadKey> {
    let path = get(path_key).filter(|p| !p.is_empty());
    let id = get(id_key).filter(|i| !i.is_empty());
    match (path, id) {
        (None, None) => Ok(None),
        (Some(path), None) => Err(bad(
            id_key,
            "",
            format!("missing, but {path_key} is set to {path:?}"),
        )),
        (None, Some(id)) => Err(bad(id_key, &id, format!("set, but {path_key} is not"))),
        (Some(path), Some(id)) => {
            let id: u64 = id
                .parse()
                .map_err(|_| bad(id_key, &id, "not a subvolume ID (a decimal number)"))?;
            if id == 0 {
                return Err(bad(id_key, "0", "0 is not a subvolume ID"));
            }
            if path.starts_with('/') {
                return Err(bad(
                    path_key,
                    &path,
                    "must be a path from the top-level subvolume without a leading '/'",
                ));
            }
            Ok(Some(SnapshotRef { id, path }))
        }
    }
}

impl BootState {
    /// Read the state from the environment's keys. `get` returns a key's
    /// value, `None` when it is unset. Keys other than ours are never asked
    /// for.
    pub fn from_keys(get: impl Fn(&str) -> Option<String>) -> Result<BootState, BadKey> {
        let good = snapshot(&get, GOOD, GOOD_ID)?;
        let trial = snapshot(&get, TRIAL, TRIAL_ID)?;
        let tries = match get(TRIES).filter(|v| !v.is_empty()) {
            None => 0,
            Some(v) => match v.parse::<u8>() {
                Ok(n) if n <= MAX_TRIES => n,
                _ => return Err(bad(TRIES, &v, "not a single digit 0..9")),
            },
        };
        let fallback = get(FALLBACK).filter(|v| !v.is_empty());
        let booted = match get(BOOTED).filter(|v| !v.is_empty()).as_deref() {
            None => None,
            Some("trial") => Some(GrubEntry::Trial),
            Some("good") => Some(GrubEntry::Good),
            Some(other) => return Err(bad(BOOTED, other, "expected \"trial\" or \"good\"")),
        };
        let good_fails = match get(GOOD_FAILS).filter(|v| !v.is_empty()) {
            None => 0,
            Some(v) => v
                .parse()
                .map_err(|_| bad(GOOD_FAILS, &v, "not a non-negative number"))?,
        };
        Ok(BootState {
            good,
            trial,
            tries,
            fallback,
            booted,
            good_fails,
        })
    }

    /// Every key this state consists of, with its value; `None` means the
    /// key is to be unset. Applying all of them to an environment makes it
    /// hold exactly this state.
    pub fn changes(&self) -> Vec<(&'static str, Option<String>)> {
        let path = |s: &Option<SnapshotRef>| s.as_ref().map(|s| s.path.clone());
        let id = |s: &Option<SnapshotRef>| s.as_ref().map(|s| s.id.to_string());
        vec![
            (GOOD, path(&self.good)),
            (GOOD_ID, id(&self.good)),
            (TRIAL, path(&self.trial)),
            (TRIAL_ID, id(&self.trial)),
            (TRIES, self.trial.as_ref().map(|_| self.tries.to_string())),
            (FALLBACK, self.fallback.clone()),
            (BOOTED, self.booted.map(|b| b.as_str().to_owned())),
            (
                GOOD_FAILS,
                (self.good_fails > 0).then(|| self.good_fails.to_string()),
            ),
        ]
    }

    /// Only the keys whose value differs from `old`: what to write to turn
    /// an environment holding `old` into one holding `self`.
    pub fn diff(&self, old: &BootState) -> Vec<(&'static str, Option<String>)> {
        let before = old.changes();
        self.changes()
            .into_iter()
            .zip(before)
            .filter(|(new, old)| new.1 != old.1)
            .map(|(new, _)| new)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn read(pairs: &[(&str, &str)]) -> Result<BootState, BadKey> {
        let e = env(pairs);
        BootState::from_keys(|k| e.get(k).cloned())
    }

    fn snap(id: u64, path: &str) -> SnapshotRef {
        SnapshotRef {
            id,
            path: path.into(),
        }
    }

    #[test]
    fn an_empty_environment_is_a_first_boot() {
        assert_eq!(read(&[]).unwrap(), BootState::default());
        // An empty hc_good means "no known-good yet" too.
        assert_eq!(
            read(&[("hc_good", ""), ("hc_good_id", "")]).unwrap(),
            BootState::default()
        );
    }

    #[test]
    fn every_key_is_read() {
        let s = read(&[
            ("hc_good", "@/.snapshots/1/snapshot"),
            ("hc_good_id", "256"),
            ("hc_trial", "@/.snapshots/2/snapshot"),
            ("hc_trial_id", "257"),
            ("hc_tries", "2"),
            ("hc_fallback", "@/.snapshots/2/snapshot"),
            ("hc_booted", "good"),
            ("hc_good_fails", "1"),
            ("saved_entry", "whatever"),
        ])
        .unwrap();
        assert_eq!(
            s,
            BootState {
                good: Some(snap(256, "@/.snapshots/1/snapshot")),
                trial: Some(snap(257, "@/.snapshots/2/snapshot")),
                tries: 2,
                fallback: Some("@/.snapshots/2/snapshot".into()),
                booted: Some(GrubEntry::Good),
                good_fails: 1,
            }
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("hc_tries", "x")], "hc_tries"),
            (&[("hc_tries", "10")], "hc_tries"),
            (&[("hc_tries", "-1")], "hc_tries"),
            (&[("hc_good", "@/a"), ("hc_good_id", "abc")], "hc_good_id"),
            (&[("hc_good", "@/a")], "hc_good_id"),
            (&[("hc_trial_id", "300")], "hc_trial_id"),
            (&[("hc_trial", "/@/a"), ("hc_trial_id", "300")], "hc_trial"),
            (&[("hc_good", "@/a"), ("hc_good_id", "0")], "hc_good_id"),
            (&[("hc_booted", "maybe")], "hc_booted"),
            (&[("hc_good_fails", "many")], "hc_good_fails"),
        ];
        for (pairs, key) in cases {
            let err = read(pairs).unwrap_err();
            assert_eq!(err.key, *key, "{pairs:?}");
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn changes_round_trip() {
        let s = BootState {
            good: Some(snap(256, "@/.snapshots/1/snapshot")),
            trial: Some(snap(300, "@/.snapshots/9/snapshot")),
            tries: 3,
            fallback: None,
            booted: Some(GrubEntry::Trial),
            good_fails: 2,
        };
        let mut e: HashMap<String, String> = env(&[("hc_fallback", "stale"), ("other", "x")]);
        for (k, v) in s.changes() {
            match v {
                Some(v) => e.insert(k.to_string(), v),
                None => e.remove(k),
            };
        }
        assert_eq!(BootState::from_keys(|k| e.get(k).cloned()).unwrap(), s);
        assert_eq!(e.get("other").map(String::as_str), Some("x"));
        assert!(!e.contains_key("hc_fallback"));
    }

    #[test]
    fn changes_unset_what_is_absent() {
        let c = BootState::default().changes();
        assert_eq!(c.len(), KEYS.len());
        assert!(c.iter().all(|(_, v)| v.is_none()), "{c:?}");
        let keys: Vec<_> = c.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, KEYS);
    }

    #[test]
    fn diff_lists_only_what_changed() {
        let old = BootState {
            good: Some(snap(256, "@/a")),
            trial: Some(snap(257, "@/b")),
            tries: 2,
            ..BootState::default()
        };
        let new = BootState {
            trial: None,
            ..old.clone()
        };
        assert_eq!(
            new.diff(&old),
            vec![(TRIAL, None), (TRIAL_ID, None), (TRIES, None)]
        );
        assert!(old.diff(&old).is_empty());
    }
}
