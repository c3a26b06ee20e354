//! Probe output and reasons shown to people (`check`, `probes run`,
//! `status`, the login message): a plugin prints what it likes, so control
//! characters, terminal escape sequences and invisible text-direction marks
//! are rendered harmless before they reach a terminal. The records keep what
//! the probe printed (JSON escapes it).

/// `text` with every control character except newline and tab, and every
/// invisible formatting mark (text-direction overrides, zero-width
/// characters), replaced by `?`: an escape sequence (`ESC [2J`) then shows
/// as text (`?[2J`) instead of acting on the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if (c.is_control() && c != '\n' && c != '\t') || invisible(c) {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// [`printable`] on one line: newlines and tabs become spaces.
pub fn one_line(text: &str) -> String {
    printable(text)
        .chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .collect()
}

/// Formatting characters that change how the text around them shows
/// without showing themselves (Unicode category Cf, the common ones).
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{00AD}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_are_harmless() {
        assert_eq!(printable("a\x1b[2Jb\nc\td\r"), "a?[2Jb\nc\td?");
        assert_eq!(
            printable("\x1b]0;owned\x07\u{9b}31m"),
            "?]0;owned??31m",
            "OSC, BEL and the one-byte CSI"
        );
        assert_eq!(printable("evil\u{202E}txt.exe"), "evil?txt.exe");
        assert_eq!(one_line("two\nlines\tand\x1bc"), "two lines and?c");
        assert_eq!(printable("ünïcode ✓"), "ünïcode ✓");
    }
}
