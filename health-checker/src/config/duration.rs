//! Durations in configuration files: integer seconds (`90`) or a string with
//! units (`"90s"`, `"5min"`, `"1h 30min"`, `"500ms"`).
//!
//! Every duration the program reads is a time limit (a deadline, a probe's
//! timeout, a kill grace, an alert time limit), so every one is at most
//! [`MAX_DURATION`], one day: a longer one is a mistake, and one near the
//! clock's range would overflow when added to the time now.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seconds(pub Duration);

impl Seconds {
    /// Whole seconds.
    pub const fn secs(n: u64) -> Self {
        Seconds(Duration::from_secs(n))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<Seconds> for Duration {
    fn from(s: Seconds) -> Duration {
        s.0
    }
}

/// The longest duration accepted anywhere: one day.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// `d`, unless it is longer than [`MAX_DURATION`].
fn bounded(d: Duration, text: &str) -> Result<Duration, String> {
    if d > MAX_DURATION {
        return Err(format!(
            "invalid duration {text}: at most 1 day (24h) is accepted"
        ));
    }
    Ok(d)
}

/// Parse `"90s"`, `"5min"`, `"1h 30min"`, `"250ms"` or a bare number of
/// seconds (`"90"`), at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number at {rest:?}"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let part = match unit {
            "ms" | "msec" => Duration::from_millis(n),
            "" | "s" | "sec" | "secs" | "second" | "seconds" => Duration::from_secs(n),
            "m" | "min" | "mins" | "minute" | "minutes" => {
                Duration::from_secs(n.checked_mul(60).ok_or("duration too large")?)
            }
            "h" | "hr" | "hour" | "hours" => {
                Duration::from_secs(n.checked_mul(3600).ok_or("duration too large")?)
            }
            other => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {other:?} (use ms, s, min or h)"
                ))
            }
        };
        if unit.is_empty() && !rest.is_empty() {
            return Err(format!("invalid duration {text:?}: a unit is missing"));
        }
        total = total.checked_add(part).ok_or("duration too large")?;
    }
    bounded(total, &format!("{text:?}"))
}

/// The shortest exact text for `d`: `"5min"`, `"90s"`, `"1h"`, `"250ms"`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s != 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s != 0 && s % 60 == 0 {
        format!("{}min", s / 60)
    } else {
        format!("{s}s")
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration: seconds as an integer or a string such as \"90s\" or \"5min\"",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::custom(format!("invalid duration {v}: negative")))?;
                self.visit_u64(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                bounded(Duration::from_secs(v), &v.to_string())
                    .map(Seconds)
                    .map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                parse_duration(v).map(Seconds).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_combinations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h 30min"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
    }

    #[test]
    fn bad_durations_say_why() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("min")
            .unwrap_err()
            .contains("expected a number"));
        assert!(parse_duration("5 6s")
            .unwrap_err()
            .contains("unit is missing"));
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn durations_are_at_most_a_day() {
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("86400"), Ok(MAX_DURATION));
        for text in ["18446744073709551615s", "86401", "24h 1ms", "1441min"] {
            assert_eq!(
                parse_duration(text),
                Err(format!(
                    "invalid duration {text:?}: at most 1 day (24h) is accepted"
                ))
            );
        }
        #[derive(Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            t: Seconds,
        }
        let e = toml::from_str::<T>("t = 9223372036854775807").unwrap_err();
        assert!(e.to_string().contains("at most 1 day"), "{e}");
        let e = toml::from_str::<T>("t = 86401").unwrap_err();
        assert!(e.to_string().contains("at most 1 day"), "{e}");
        assert!(toml::from_str::<T>("t = 86400").is_ok());
    }

    #[test]
    fn format_round_trips() {
        for s in ["5min", "90s", "1h", "250ms", "0s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
