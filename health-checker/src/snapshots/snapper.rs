//! snapper's layout: snapshot `N` of a configuration lives in the subvolume
//! `<config>/.snapshots/N/snapshot`, with its metadata in
//! `<config>/.snapshots/N/info.xml` beside it:
//!
//! ```xml
//! <?xml version="1.0"?>
//! <snapshot>
//!   <type>single</type>
//!   <num>3</num>
//!   <date>2024-05-01 10:00:00</date>
//!   <description>after installing foo &amp; bar</description>
//! </snapshot>
//! ```
//!
//! Only the description is read, by a small hand-written scanner: the file
//! is untrusted input (anyone who can write to `/.snapshots` as root could
//! also do worse), so the scanner never panics and reads a bounded amount.

use std::io::Read;
use std::path::Path;

/// info.xml files larger than this are not read (snapper's are ~300 bytes).
pub const INFO_XML_LIMIT: u64 = 64 * 1024;

/// A subvolume path in snapper's layout, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapperPath {
    /// snapper's number `N`.
    pub number: u64,
    /// Path (from the top level, no leading `/`) of `N/info.xml`.
    pub info_xml: String,
}

/// Recognise `…/.snapshots/N/snapshot` (from the top level). `None` for
/// any other path.
pub fn parse_path(path: &str) -> Option<SnapperPath> {
    let trimmed = path.trim_matches('/');
    let mut parts = trimmed.rsplitn(4, '/');
    let leaf = parts.next()?;
    let number = parts.next()?;
    let dot_snapshots = parts.next()?;
    let prefix = parts.next();
    if leaf != "snapshot" || dot_snapshots != ".snapshots" {
        return None;
    }
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let info_xml = match prefix {
        Some(p) => format!("{p}/.snapshots/{number}/info.xml"),
        None => format!(".snapshots/{number}/info.xml"),
    };
    Some(SnapperPath {
        number: n,
        info_xml,
    })
}

/// Read the description from an `info.xml` file. `Ok(None)` when the file
/// has no (or an empty) description; an error when it cannot be read or is
/// too large.
pub fn read_description(file: &Path) -> anyhow::Result<Option<String>> {
    use anyhow::Context;
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut buf = Vec::new();
    f.take(INFO_XML_LIMIT + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {}", file.display()))?;
    if buf.len() as u64 > INFO_XML_LIMIT {
        anyhow::bail!(
            "{}: larger than {INFO_XML_LIMIT} bytes, not a snapper info.xml",
            file.display()
        );
    }
    Ok(description(&String::from_utf8_lossy(&buf)))
}

/// The text of the first `<description>` element, entities decoded,
/// surrounding white space trimmed. `None` when absent or empty.
pub fn description(xml: &str) -> Option<String> {
    const OPEN: &str = "<description";
    const CLOSE: &str = "</description>";
    let mut from = 0;
    while let Some(at) = xml[from..].find(OPEN) {
        let start = from + at + OPEN.len();
        let rest = &xml[start..];
        let end_of_tag = rest.find('>')?;
        let attrs = &rest[..end_of_tag];
        // `<descriptionX>` is another element; keep looking.
        if attrs
            .chars()
            .next()
            .is_some_and(|c| !c.is_whitespace() && c != '/')
        {
            from = start;
            continue;
        }
        if attrs.trim_end().ends_with('/') {
            return None;
        }
        let body = &rest[end_of_tag + 1..];
        let text = &body[..body.find(CLOSE)?];
        let decoded = decode(text);
        let trimmed = decoded.trim();
        return (!trimmed.is_empty()).then(|| trimmed.to_string());
    }
    None
}

/// Decode XML character data: the five named entities, numeric character
/// references and CDATA sections. Anything malformed is kept as written.
fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['&', '<']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("<![CDATA[") {
            match after.find("]]>") {
                Some(end) => {
                    out.push_str(&after[..end]);
                    rest = &after[end + 3..];
                }
                None => {
                    out.push_str(after);
                    rest = "";
                }
            }
            continue;
        }
        if rest.starts_with('<') {
            out.push('<');
            rest = &rest[1..];
            continue;
        }
        let Some(semi) = rest.find(';').filter(|&s| s <= 12) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(|d| d.parse::<u32>()))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn snapper_paths_are_recognised() {
        assert_eq!(
            parse_path("@/.snapshots/42/snapshot"),
            Some(SnapperPath {
                number: 42,
                info_xml: "@/.snapshots/42/info.xml".into()
            })
        );
        assert_eq!(
            parse_path(".snapshots/1/snapshot").map(|p| p.info_xml),
            Some(".snapshots/1/info.xml".into())
        );
        assert_eq!(
            parse_path("/a/b/.snapshots/7/snapshot/").map(|p| p.number),
            Some(7)
        );
        for other in [
            "@",
            "@/.snapshots",
            "@/.snapshots/x/snapshot",
            "@/.snapshots/-1/snapshot",
            "@/.snapshots/1/other",
            "@/snapshots/1/snapshot",
            "@/.snapshots//snapshot",
            "@/.snapshots/99999999999999999999999/snapshot",
            "",
        ] {
            assert_eq!(parse_path(other), None, "{other}");
        }
    }

    #[test]
    fn description_is_read_and_decoded() {
        let xml = r#"<?xml version="1.0"?>
<snapshot>
  <type>single</type>
  <num>3</num>
  <description>  after foo &amp; bar &lt;3&gt; &#x263A; &#65; &bogus; <![CDATA[<raw>]]> </description>
</snapshot>"#;
        assert_eq!(
            description(xml).as_deref(),
            Some("after foo & bar <3> \u{263A} A &bogus; <raw>")
        );
    }

    #[test]
    fn missing_or_empty_description_is_none() {
        assert_eq!(description("<snapshot><num>1</num></snapshot>"), None);
        assert_eq!(description("<description/>"), None);
        assert_eq!(description("<description>   </description>"), None);
        assert_eq!(description("<description>unterminated"), None);
        assert_eq!(
            description("<descriptionx>no</descriptionx><description>yes</description>").as_deref(),
            Some("yes")
        );
        assert_eq!(
            description(r#"<description lang="en">hi</description>"#).as_deref(),
            Some("hi")
        );
    }

    #[test]
    fn oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("info.xml");
        std::fs::write(&f, vec![b'x'; INFO_XML_LIMIT as usize + 1]).unwrap();
        let err = read_description(&f).unwrap_err();
        assert!(format!("{err:#}").contains("info.xml"), "{err:#}");
        std::fs::write(&f, "<description>ok</description>").unwrap();
        assert_eq!(read_description(&f).unwrap().as_deref(), Some("ok"));
    }

    proptest! {
        #[test]
        fn the_scanners_never_panic(s in ".{0,200}") {
            let _ = description(&s);
            let _ = description(&format!("<description>{s}</description>"));
            let _ = parse_path(&s);
        }
    }
}
