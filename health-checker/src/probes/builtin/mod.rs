//! Checks that need no script: units active, no failed units, every fstab
//! mount mounted, minimum free space.

mod fstab;
mod space;
mod units;

pub use fstab::{check_fstab, parse_fstab, FstabEntry};
pub use space::check_min_free;
pub use units::{check_failed_units, check_units, glob_match};

use crate::verdict::Outcome;

/// The result of one built-in check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub outcome: Outcome,
    /// Why it did not pass.
    pub reason: Option<String>,
    /// What it looked at, for the record.
    pub output: String,
}

impl Part {
    /// A pass with a note of what was checked.
    pub fn pass(output: String) -> Self {
        Part {
            outcome: Outcome::Pass,
            reason: None,
            output,
        }
    }

    /// A failure.
    pub fn fail(reason: String, output: String) -> Self {
        Part {
            outcome: Outcome::Fail,
            reason: Some(reason),
            output,
        }
    }

    /// The check could not be made.
    pub fn error(reason: String) -> Self {
        Part {
            outcome: Outcome::Error,
            reason: Some(reason),
            output: String::new(),
        }
    }
}
