//! Errors from strict TOML files that name the file, the line and the key.
//!
//! `toml`'s deserializer knows the byte span of the offending key or value but
//! not its dotted name; the name is found by walking the parsed document for
//! the innermost key whose span holds the error.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Item, Table, Value};

/// A TOML file that is not what its schema says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TomlError {
    /// The file, as found on disk.
    pub file: PathBuf,
    /// 1-based line of the problem, when known.
    pub line: Option<usize>,
    /// The dotted key at fault (`boot.tries`), when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TomlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl TomlError {
    /// An error about the file as a whole (e.g. it cannot be read).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        TomlError {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: message.into(),
        }
    }
}

/// Parse `text` (read from `file`) strictly into `T`: syntax errors, unknown
/// keys, wrong types and missing keys all become a [`TomlError`].
pub fn parse<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, TomlError> {
    let doc = match text.parse::<ImDocument<String>>() {
        Ok(doc) => doc,
        Err(e) => {
            return Err(TomlError {
                file: file.to_path_buf(),
                line: e.span().map(|s| line_of(text, s.start)),
                key: None,
                message: first_line(e.message()),
            })
        }
    };
    toml::from_str::<T>(text).map_err(|e| {
        let span = e.span();
        TomlError {
            file: file.to_path_buf(),
            line: span.clone().map(|s| line_of(text, s.start)),
            key: span.and_then(|s| key_at(doc.as_table(), &s)),
            message: first_line(e.message()),
        }
    })
}

fn first_line(msg: &str) -> String {
    msg.trim().lines().next().unwrap_or("").to_string()
}

/// 1-based line number of byte offset `at`.
pub fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn contains(outer: &Option<Range<usize>>, inner: &Range<usize>) -> bool {
    outer
        .as_ref()
        .is_some_and(|o| o.start <= inner.start && inner.end <= o.end.max(o.start + 1))
}

/// The dotted key whose key or value span holds `span`, innermost first.
fn key_at(table: &Table, span: &Range<usize>) -> Option<String> {
    let mut best: Option<String> = None;
    for (key, item) in table.iter() {
        let k = table.key(key)?;
        let item_span = item_span(item);
        if contains(&k.span(), span) || contains(&item_span, span) {
            return Some(match inner_key(item, span) {
                Some(inner) => format!("{key}.{inner}"),
                None => key.to_string(),
            });
        }
        // A `[section]` whose own span (its header) holds the error, e.g. a
        // missing key in that section.
        if let Item::Table(t) = item {
            if let Some(inner) = key_at(t, span) {
                return Some(format!("{key}.{inner}"));
            }
            if contains(&t.span(), span) {
                best = Some(key.to_string());
            }
        }
    }
    best
}

fn inner_key(item: &Item, span: &Range<usize>) -> Option<String> {
    match item {
        Item::Table(t) => key_at(t, span),
        Item::Value(Value::InlineTable(t)) => {
            for (key, value) in t.iter() {
                let k = t.key(key)?;
                if contains(&k.span(), span) || contains(&value.span(), span) {
                    return Some(match inner_key(&Item::Value(value.clone()), span) {
                        Some(inner) => format!("{key}.{inner}"),
                        None => key.to_string(),
                    });
                }
            }
            None
        }
        _ => None,
    }
}

fn item_span(item: &Item) -> Option<Range<usize>> {
    match item {
        Item::Value(v) => v.span(),
        Item::Table(t) => t.span(),
        Item::ArrayOfTables(a) => a.span(),
        Item::None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        a: Option<Section>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        n: Option<u32>,
        t: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        x: Option<u32>,
    }

    fn err(text: &str) -> String {
        parse::<Doc>(Path::new("/f.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        assert_eq!(
            err("# c\n[a]\nn = \"x\"\n"),
            "/f.toml:3: key `a.n`: invalid type: string \"x\", expected u32"
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = err("[a]\nn = 1\nm = 2\n");
        assert!(
            e.starts_with("/f.toml:3: key `a.m`: unknown field `m`"),
            "{e}"
        );
    }

    #[test]
    fn inline_table_keys_are_dotted() {
        let e = err("[a]\nt = { x = true }\n");
        assert_eq!(
            e,
            "/f.toml:2: key `a.t.x`: invalid type: boolean `true`, expected u32"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = err("[a]\nn = = 1\n");
        assert!(e.starts_with("/f.toml:2: "), "{e}");
    }
}
