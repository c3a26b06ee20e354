//! The boot environment seam on the real GRUB environment: [`BootEnv`] over
//! the `grub-env` crate's crash-safe [`Store`].

use anyhow::{bail, Context, Result};
use grub_env::{Fs, RealFs, Source, Store};

use super::bootstate::BootState;
use super::run::BootEnv;

/// The `hc_*` keys in a GRUB environment kept by a [`Store`].
#[derive(Debug)]
pub struct GrubBootEnv<F: Fs = RealFs> {
    store: Store<F>,
}

impl<F: Fs> GrubBootEnv<F> {
    /// Use this store.
    pub fn new(store: Store<F>) -> Self {
        GrubBootEnv { store }
    }

    /// The store underneath.
    pub fn inner(&self) -> &Store<F> {
        &self.store
    }
}

impl<F: Fs> GrubBootEnv<F> {
    /// What is wrong with either copy (empty when both are sound), one
    /// line each naming the file: what `status` shows and
    /// [`GrubBootEnv::repair`] repairs.
    pub fn problems(&self) -> Result<Vec<String>> {
        Ok(self.store.load().map_err(with_advice)?.problems)
    }

    /// Rewrite both copies with the values GRUB reads when either is
    /// damaged, keeping a copy whose bytes the rewrite would not reproduce
    /// as `<file>.broken-<time>`. Returns the problems repaired (empty:
    /// nothing was wrong, nothing written).
    pub fn repair(&self) -> Result<Vec<String>> {
        let primary = self.store.primary();
        self.store
            .repair(&broken_stamp(crate::state::unix_now()))
            .map_err(with_advice)
            .with_context(|| format!("repairing boot environment {primary}"))
    }
}

/// The time in the name of a damaged copy kept aside:
/// `20260102T030405Z` (no `:`, which FAT refuses in names).
pub fn broken_stamp(unix_secs: u64) -> String {
    crate::history::rfc3339(unix_secs).replace(['-', ':'], "")
}

/// A store error, with the way out when GRUB reads neither copy.
pub fn with_advice(e: grub_env::Error) -> anyhow::Error {
    match e {
        grub_env::Error::NoValidCopy { .. } => anyhow::anyhow!(
            "{e}; `health-checker bootenv recover` keeps both copies as \
             .broken-<time> and writes a new, empty environment"
        ),
        e => e.into(),
    }
}

impl<F: Fs> BootEnv for GrubBootEnv<F> {
    /// Read the state. An environment that does not exist at all is an
    /// error, not a first boot: with the EFI partition not mounted, or the
    /// location misconfigured, "no known-good yet" would promote whatever is
    /// booted into an environment GRUB never reads.
    fn load(&self) -> Result<BootState> {
        let primary = self.store.primary();
        // The store's errors name the file(s) already.
        let loaded = self.store.load().map_err(with_advice)?;
        if loaded.source == Source::Neither {
            bail!(
                "boot environment {primary} does not exist (nor its backup); \
                 is the EFI system partition mounted? `health-checker bootenv create` makes it"
            );
        }
        for p in &loaded.problems {
            tracing::warn!("boot environment: {p} (the next check repairs it)");
        }
        BootState::from_keys(|k| loaded.env.get(k).map(str::to_owned))
            .with_context(|| format!("{primary}"))
    }

    fn store(&self, changes: &[(&'static str, Option<String>)]) -> Result<()> {
        let primary = self.store.primary();
        self.store
            .update(|env| {
                for (key, value) in changes {
                    match value {
                        Some(v) => env.set(key, v).map_err(|e| format!("{key}={v:?}: {e}"))?,
                        None => {
                            env.unset(key);
                        }
                    }
                }
                Ok(())
            })
            .with_context(|| format!("writing boot environment {primary}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshots::SnapshotRef;

    fn env_at(dir: &std::path::Path) -> GrubBootEnv {
        GrubBootEnv::new(Store::for_file(dir.join("grubenv")))
    }

    #[test]
    fn a_missing_environment_is_an_error_not_a_first_boot() {
        let dir = tempfile::tempdir().unwrap();
        let err = env_at(dir.path()).load().unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("grubenv") && msg.contains("does not exist"),
            "{msg}"
        );
    }

    #[test]
    fn state_round_trips_and_foreign_keys_stay() {
        let dir = tempfile::tempdir().unwrap();
        let e = env_at(dir.path());
        e.inner()
            .update(|env| {
                env.set("saved_entry", "gnulinux")
                    .map_err(|e| e.to_string())
            })
            .unwrap();
        assert_eq!(e.load().unwrap(), BootState::default());
        let s = BootState {
            good: Some(SnapshotRef {
                id: 256,
                path: "@/.snapshots/1/snapshot".into(),
            }),
            trial: Some(SnapshotRef {
                id: 300,
                path: "@/.snapshots/7/snapshot".into(),
            }),
            tries: 3,
            ..BootState::default()
        };
        e.store(&s.diff(&BootState::default())).unwrap();
        assert_eq!(e.load().unwrap(), s);
        let cleared = BootState {
            trial: None,
            tries: 0,
            ..s.clone()
        };
        e.store(&cleared.diff(&s)).unwrap();
        assert_eq!(e.load().unwrap(), cleared);
        let env = e.inner().load().unwrap().env;
        assert_eq!(env.get("saved_entry"), Some("gnulinux"));
        assert_eq!(env.get("hc_trial"), None);
    }

    #[test]
    fn a_bad_value_names_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = env_at(dir.path());
        e.store(&[("hc_tries", Some("x".into()))]).unwrap();
        let msg = format!("{:#}", e.load().unwrap_err());
        assert!(msg.contains("hc_tries") && msg.contains("grubenv"), "{msg}");
    }
}
