//! The boot-state changes made by hand or by update tools: arming a trial,
//! marking a snapshot good or bad. Pure functions; the caller writes the
//! result and records it in the history.

use super::bootstate::{BootState, MAX_TRIES};
use crate::snapshots::SnapshotRef;

/// Why a trial cannot be armed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArmError {
    /// GRUB counts a single digit.
    #[error("a trial needs 1 to {MAX_TRIES} attempts, not {0}")]
    Tries(u8),
    /// Arming the known-good would make it its own fall-back.
    #[error("{0} is the known-good snapshot; there is nothing to try")]
    IsKnownGood(String),
}

/// Arm `trial` so GRUB boots it at most `tries` times before falling back to
/// the known-good snapshot. Replaces any earlier trial; a pending fall-back
/// mark is kept so that the next check still records it.
pub fn arm(state: &BootState, trial: SnapshotRef, tries: u8) -> Result<BootState, ArmError> {
    if !(1..=MAX_TRIES).contains(&tries) {
        return Err(ArmError::Tries(tries));
    }
    if state.good.as_ref() == Some(&trial) {
        return Err(ArmError::IsKnownGood(trial.path));
    }
    Ok(BootState {
        trial: Some(trial),
        tries,
        ..state.clone()
    })
}

/// Make `snapshot` the known-good snapshot by hand. Clears it as a trial and
/// clears the known-good failure streak.
pub fn mark_good(state: &BootState, snapshot: SnapshotRef) -> BootState {
    let mut s = state.clone();
    if s.trial.as_ref() == Some(&snapshot) {
        s.trial = None;
        s.tries = 0;
    }
    if s.fallback.as_deref() == Some(snapshot.path.as_str()) {
        s.fallback = None;
    }
    s.good = Some(snapshot);
    s.good_fails = 0;
    s
}

/// Mark `snapshot` bad by hand: it is no longer the trial, and no longer
/// the known-good (leaving none) if it was. A pending fall-back mark for it
/// is dropped, since the admin has already judged it.
pub fn mark_bad(state: &BootState, snapshot: &SnapshotRef) -> BootState {
    let mut s = state.clone();
    if s.trial.as_ref() == Some(snapshot) {
        s.trial = None;
        s.tries = 0;
    }
    if s.good.as_ref() == Some(snapshot) {
        s.good = None;
        s.good_fails = 0;
    }
    if s.fallback.as_deref() == Some(snapshot.path.as_str()) {
        s.fallback = None;
    }
    s
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

    fn with_good() -> BootState {
        BootState {
            good: Some(snap(1)),
            good_fails: 1,
            ..BootState::default()
        }
    }

    #[test]
    fn arm_sets_trial_and_tries_and_keeps_the_rest() {
        let s = BootState {
            fallback: Some(snap(2).path),
            ..with_good()
        };
        let a = arm(&s, snap(3), 3).unwrap();
        assert_eq!(a.trial, Some(snap(3)));
        assert_eq!(a.tries, 3);
        assert_eq!(a.good, s.good);
        assert_eq!(a.fallback, s.fallback);
        assert_eq!(a.good_fails, 1);
    }

    #[test]
    fn arm_refuses_bad_tries_and_the_known_good() {
        assert_eq!(arm(&with_good(), snap(3), 0), Err(ArmError::Tries(0)));
        assert_eq!(arm(&with_good(), snap(3), 10), Err(ArmError::Tries(10)));
        assert!(matches!(
            arm(&with_good(), snap(1), 3),
            Err(ArmError::IsKnownGood(_))
        ));
        // The first trial on a system without a known-good is fine.
        assert!(arm(&BootState::default(), snap(1), 9).is_ok());
    }

    #[test]
    fn mark_good_promotes_and_clears_the_trial() {
        let s = arm(&with_good(), snap(3), 2).unwrap();
        let g = mark_good(&s, snap(3));
        assert_eq!(g.good, Some(snap(3)));
        assert_eq!(g.trial, None);
        assert_eq!(g.tries, 0);
        assert_eq!(g.good_fails, 0);
        // Marking another snapshot good leaves the trial armed.
        let g = mark_good(&s, snap(4));
        assert_eq!(g.trial, Some(snap(3)));
    }

    #[test]
    fn mark_bad_disarms_and_can_drop_the_known_good() {
        let s = BootState {
            fallback: Some(snap(3).path),
            ..arm(&with_good(), snap(3), 2).unwrap()
        };
        let b = mark_bad(&s, &snap(3));
        assert_eq!(b.trial, None);
        assert_eq!(b.fallback, None);
        assert_eq!(b.good, Some(snap(1)));
        let b = mark_bad(&s, &snap(1));
        assert_eq!(b.good, None);
        assert_eq!(b.trial, Some(snap(3)));
    }
}
