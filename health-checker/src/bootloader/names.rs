//! The names of our Boot Loader Specification entries (`docs/systemd-boot.md`,
//! "What lives on the ESP"): which snapshot an entry boots, its role, and
//! systemd-boot's boot counter in the name (`+LEFT[-DONE]`).

use std::fmt;

/// Every entry we write starts with this.
pub const PREFIX: &str = "health-checker-";
/// The glob `loader.conf`'s `default` line names: the known-good and the
/// trial entries, nothing else.
pub const DEFAULT_GLOB: &str = "health-checker-boot-*";
const GOOD: &str = "health-checker-boot-good-";
const TRIAL: &str = "health-checker-boot-trial-";
const SUFFIX: &str = ".conf";

/// What an entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The known-good snapshot's entry (matched by the default glob).
    Good,
    /// The trial's entry (matched by the default glob, sorts after Good).
    Trial,
    /// Another snapshot, for the menu only.
    Menu,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Good => "good",
            Role::Trial => "trial",
            Role::Menu => "menu",
        }
    }
}

/// systemd-boot's boot counter: attempts left, attempts done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Counter {
    pub left: u32,
    pub done: Option<u32>,
}

impl Counter {
    /// A fresh counter of `left` attempts.
    pub fn fresh(left: u32) -> Self {
        Counter { left, done: None }
    }

    /// The same attempts done, none left: "bad".
    pub fn bad(self) -> Self {
        Counter {
            left: 0,
            done: self.done,
        }
    }
}

/// One of our entry file names, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryName {
    pub role: Role,
    /// The btrfs subvolume ID of the snapshot it boots.
    pub id: u64,
    pub counter: Option<Counter>,
}

impl EntryName {
    pub fn new(role: Role, id: u64, counter: Option<Counter>) -> Self {
        EntryName { role, id, counter }
    }

    /// Parse a file name of `loader/entries/`; `None` when it is not one of
    /// ours (or not a name we would write).
    pub fn parse(file: &str) -> Option<EntryName> {
        let stem = file.strip_suffix(SUFFIX)?;
        let (role, rest) = if let Some(r) = stem.strip_prefix(GOOD) {
            (Role::Good, r)
        } else if let Some(r) = stem.strip_prefix(TRIAL) {
            (Role::Trial, r)
        } else {
            (Role::Menu, stem.strip_prefix(PREFIX)?)
        };
        let (id, counter) = match rest.split_once('+') {
            None => (rest, None),
            Some((id, c)) => (id, Some(parse_counter(c)?)),
        };
        let id = digits(id)?;
        (id != 0).then_some(EntryName { role, id, counter })
    }

    /// The name without the counter: what systemd #33504 is about (an
    /// unsuffixed file of the same stem defeats counting).
    pub fn stem(&self) -> String {
        let prefix = match self.role {
            Role::Good => GOOD,
            Role::Trial => TRIAL,
            Role::Menu => PREFIX,
        };
        format!("{prefix}{}", self.id)
    }

    /// Whether systemd-boot considers it bad (no attempts left).
    pub fn is_bad(&self) -> bool {
        self.counter.is_some_and(|c| c.left == 0)
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.stem())?;
        match self.counter {
            None => {}
            Some(Counter { left, done: None }) => write!(f, "+{left}")?,
            Some(Counter {
                left,
                done: Some(d),
            }) => write!(f, "+{left}-{d}")?,
        }
        f.write_str(SUFFIX)
    }
}

fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn parse_counter(s: &str) -> Option<Counter> {
    let (left, done) = match s.split_once('-') {
        None => (s, None),
        Some((l, d)) => (l, Some(d)),
    };
    // systemd-boot accepts leading zeros in counters; so do we.
    let num = |x: &str| -> Option<u32> {
        (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    Some(Counter {
        left: num(left)?,
        done: match done {
            None => None,
            Some(d) => Some(num(d)?),
        },
    })
}

/// The entry name systemd-boot reports in `LoaderEntrySelected`: the file
/// name, lower-cased by systemd-boot (ours are lower case already).
pub fn parse_selected(id: &str) -> Option<EntryName> {
    EntryName::parse(&id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (name, role, id, counter) in [
            ("health-checker-boot-good-256.conf", Role::Good, 256, None),
            (
                "health-checker-boot-trial-300+3.conf",
                Role::Trial,
                300,
                Some(Counter::fresh(3)),
            ),
            (
                "health-checker-boot-trial-300+0-3.conf",
                Role::Trial,
                300,
                Some(Counter {
                    left: 0,
                    done: Some(3),
                }),
            ),
            ("health-checker-257.conf", Role::Menu, 257, None),
            (
                "health-checker-257+0.conf",
                Role::Menu,
                257,
                Some(Counter::fresh(0)),
            ),
        ] {
            let n = EntryName::parse(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(n, EntryName::new(role, id, counter), "{name}");
            assert_eq!(n.to_string(), name);
        }
    }

    #[test]
    fn foreign_and_malformed_names_are_not_ours() {
        for name in [
            "debian-6.1.0-18-amd64.conf",
            "health-checker-boot-good-256",
            "health-checker-boot-good-.conf",
            "health-checker-boot-good-0.conf",
            "health-checker-boot-good-012.conf",
            "health-checker-abc.conf",
            "health-checker-boot-trial-300+.conf",
            "health-checker-boot-trial-300+x.conf",
            "health-checker-boot-trial-300+1-.conf",
            "health-checker-boot-other-300.conf",
            ".health-checker-1.conf.tmp-1-1",
        ] {
            assert_eq!(EntryName::parse(name), None, "{name}");
        }
    }

    #[test]
    fn the_stem_drops_the_counter() {
        let n = EntryName::parse("health-checker-boot-trial-300+2-1.conf").unwrap();
        assert_eq!(n.stem(), "health-checker-boot-trial-300");
        assert!(!n.is_bad());
        assert!(EntryName::parse("health-checker-300+0-3.conf")
            .unwrap()
            .is_bad());
        assert_eq!(
            parse_selected("Health-Checker-Boot-Good-256.conf").map(|n| n.role),
            Some(Role::Good)
        );
    }

    #[test]
    fn the_default_glob_matches_good_and_trial_only() {
        let glob = DEFAULT_GLOB.trim_end_matches('*');
        assert!("health-checker-boot-good-1.conf".starts_with(glob));
        assert!("health-checker-boot-trial-1+3.conf".starts_with(glob));
        assert!(!"health-checker-1.conf".starts_with(glob));
    }
}
