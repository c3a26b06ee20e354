//! A model of the GRUB snippet's choice (`grub/`), as a pure function: the
//! reference the snippet, the VM tests and the property tests agree on.
//!
//! - A trial with attempts left: decrement `hc_tries`, boot the trial,
//!   `hc_booted=trial`.
//! - A trial with no attempts left: boot the known-good, set `hc_fallback`
//!   to the trial's path, `hc_booted=good`. The trial stays in the
//!   environment until the checker clears it, so every later boot falls back
//!   the same way.
//! - No trial: boot the known-good, `hc_booted=good`.
//! - No known-good where one is needed: GRUB's ordinary entry (the default
//!   subvolume), still `hc_booted=good`.

use super::bootstate::{BootState, GrubEntry};
use crate::snapshots::SnapshotRef;

/// What GRUB boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrubChoice {
    /// The trial snapshot, named by the environment.
    Trial(SnapshotRef),
    /// The known-good snapshot, named by the environment.
    Good(SnapshotRef),
    /// The ordinary menu entry: whatever the distribution's entry boots
    /// (the default subvolume).
    Ordinary,
}

/// What GRUB boots with this environment, and the environment it saves
/// before starting the kernel.
pub fn grub_choose(state: &BootState) -> (GrubChoice, BootState) {
    let mut s = state.clone();
    let fallback = |s: &mut BootState| {
        s.booted = Some(GrubEntry::Good);
        match &s.good {
            Some(g) => GrubChoice::Good(g.clone()),
            None => GrubChoice::Ordinary,
        }
    };
    let choice = match state.trial.clone() {
        Some(t) if state.tries > 0 => {
            s.tries = state.tries - 1;
            s.booted = Some(GrubEntry::Trial);
            GrubChoice::Trial(t)
        }
        Some(t) => {
            s.fallback = Some(t.path);
            fallback(&mut s)
        }
        None => fallback(&mut s),
    };
    (choice, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: u64) -> SnapshotRef {
        SnapshotRef {
            id,
            path: format!("@/.snapshots/{id}/snapshot"),
        }
    }

    #[test]
    fn a_trial_is_booted_while_it_has_attempts() {
        let s = BootState {
            good: Some(snap(1)),
            trial: Some(snap(2)),
            tries: 2,
            ..BootState::default()
        };
        let (c, s) = grub_choose(&s);
        assert_eq!(c, GrubChoice::Trial(snap(2)));
        assert_eq!((s.tries, s.booted), (1, Some(GrubEntry::Trial)));
        let (c, s) = grub_choose(&s);
        assert_eq!(c, GrubChoice::Trial(snap(2)));
        assert_eq!(s.tries, 0);
        assert_eq!(s.fallback, None);
        let (c, s) = grub_choose(&s);
        assert_eq!(c, GrubChoice::Good(snap(1)));
        assert_eq!(s.fallback, Some(snap(2).path));
        assert_eq!(s.booted, Some(GrubEntry::Good));
        assert_eq!(s.trial, Some(snap(2)), "GRUB does not clear the trial");
    }

    #[test]
    fn no_trial_boots_the_known_good_or_the_ordinary_entry() {
        let s = BootState {
            good: Some(snap(1)),
            ..BootState::default()
        };
        assert_eq!(grub_choose(&s).0, GrubChoice::Good(snap(1)));
        let (c, s) = grub_choose(&BootState::default());
        assert_eq!(c, GrubChoice::Ordinary);
        assert_eq!(s.fallback, None);
    }
}
