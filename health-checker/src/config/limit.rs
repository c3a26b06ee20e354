//! Resource limits in configuration files and manifests: an integer, a
//! string with a binary unit for sizes (`"256M"`, `"1G"`, `"512K"`), or
//! `"max"` for no limit (docs/plugins.md, "Limits").

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A limit; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Limit(pub Option<u64>);

/// Parse `"max"`, `"300"`, `"256M"`, `"1G"`, `"64K"` (binary units).
pub fn parse_limit(text: &str) -> Result<Option<u64>, String> {
    let s = text.trim();
    if s == "max" || s == "infinity" {
        return Ok(None);
    }
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(format!(
            "invalid limit {text:?}: expected a number, a number with K, M or G, or \"max\""
        ));
    }
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("invalid limit {text:?}: number too large"))?;
    let shift = match s[digits..].trim() {
        "" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        other => {
            return Err(format!(
                "invalid limit {text:?}: unknown unit {other:?} (K, M or G)"
            ))
        }
    };
    let v = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("invalid limit {text:?}: too large"))?;
    if v == 0 {
        return Err(format!(
            "invalid limit {text:?}: 0 would stop the command from running; use \"max\" for no limit"
        ));
    }
    Ok(Some(v))
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(v) => s.serialize_u64(v),
            None => s.serialize_str("max"),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Limit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive integer, a size such as \"256M\", or \"max\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Limit, E> {
                if v <= 0 {
                    return Err(E::custom(format!(
                        "invalid limit {v}: must be positive (\"max\" for no limit)"
                    )));
                }
                Ok(Limit(Some(v as u64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Limit, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Limit, E> {
                parse_limit(v).map(Limit).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!(parse_limit("max"), Ok(None));
        assert_eq!(parse_limit("300"), Ok(Some(300)));
        assert_eq!(parse_limit("256M"), Ok(Some(256 << 20)));
        assert_eq!(parse_limit("1G"), Ok(Some(1 << 30)));
        assert!(parse_limit("0").unwrap_err().contains("\"max\""));
        assert!(parse_limit("12X").unwrap_err().contains("unknown unit"));
        assert!(parse_limit("lots").is_err());
        assert!(parse_limit("99999999999999999999G").is_err());
    }
}
