//! systemd unit checks, over D-Bus.

use crate::exit::chain;
use crate::systemd::{Bus, Systemd};

use super::Part;

/// Every unit in `names` must be active (or reloading).
pub fn check_units(bus: &Bus, names: &[String]) -> Part {
    let sd = match Systemd::connect(bus) {
        Ok(s) => s,
        Err(e) => return Part::error(chain(&e)),
    };
    let mut output = String::new();
    let mut bad = Vec::new();
    for name in names {
        match sd.unit_state(name) {
            Ok(s) => {
                output.push_str(&format!(
                    "{name}: {} ({}), {}\n",
                    s.active_state, s.sub_state, s.load_state
                ));
                if !matches!(s.active_state.as_str(), "active" | "reloading") {
                    bad.push(if s.load_state == "loaded" {
                        format!("{name} is {} ({})", s.active_state, s.sub_state)
                    } else {
                        format!("{name} is {}", s.load_state)
                    });
                }
            }
            Err(e) => return Part::error(chain(&e)),
        }
    }
    if bad.is_empty() {
        Part::pass(output)
    } else {
        Part::fail(format!("units not active: {}", bad.join(", ")), output)
    }
}

/// No unit may be failed, except those matching a pattern in `ignore`.
pub fn check_failed_units(bus: &Bus, ignore: &[String]) -> Part {
    let failed = match Systemd::connect(bus).and_then(|sd| sd.failed_units()) {
        Ok(f) => f,
        Err(e) => return Part::error(chain(&e)),
    };
    let (ignored, bad): (Vec<String>, Vec<String>) = failed
        .into_iter()
        .partition(|u| ignore.iter().any(|p| glob_match(p, u)));
    let mut output = String::new();
    for u in &ignored {
        output.push_str(&format!("{u}: failed (ignored)\n"));
    }
    for u in &bad {
        output.push_str(&format!("{u}: failed\n"));
    }
    if bad.is_empty() {
        Part::pass(output)
    } else {
        Part::fail(format!("failed units: {}", bad.join(", ")), output)
    }
}

/// Shell-style match with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("foo.service", "foo.service"));
        assert!(glob_match("foo-*.service", "foo-bar.service"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("foo-*.service", "foo-bar.socket"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*b*", "aabaa"));
    }
}
