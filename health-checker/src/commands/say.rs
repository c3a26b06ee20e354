//! Where the messages of a state command (`arm`, `mark-good`, `mark-bad`,
//! `rollback`) go: printed as they come when the command runs from the
//! command line, or collected as the answer of the D-Bus method that runs
//! the same code (`docs/dbus.md`).

/// The messages of one command.
#[derive(Debug, Default)]
pub struct Say {
    /// `None`: print; `Some`: collect (results and notes in their order).
    collected: Option<Vec<String>>,
}

impl Say {
    /// Print each message at once: results on standard output, notes and
    /// warnings on standard error.
    pub fn print() -> Self {
        Say { collected: None }
    }

    /// Keep the messages for [`Say::text`].
    pub fn collect() -> Self {
        Say {
            collected: Some(Vec::new()),
        }
    }

    /// A line of the result.
    pub fn out(&mut self, line: impl Into<String>) {
        match &mut self.collected {
            Some(lines) => lines.push(line.into()),
            None => println!("{}", line.into()),
        }
    }

    /// A note or a warning.
    pub fn note(&mut self, line: impl Into<String>) {
        match &mut self.collected {
            Some(lines) => lines.push(line.into()),
            None => eprintln!("{}", line.into()),
        }
    }

    /// The collected messages, one per line (empty when printing).
    pub fn text(&self) -> String {
        self.collected.as_deref().unwrap_or_default().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_results_and_notes_in_order() {
        let mut say = Say::collect();
        say.out("armed @/.snapshots/2/snapshot");
        say.note("warning: x");
        say.out("the default subvolume is now @/.snapshots/2/snapshot");
        assert_eq!(
            say.text(),
            "armed @/.snapshots/2/snapshot\nwarning: x\nthe default subvolume is now @/.snapshots/2/snapshot"
        );
        assert_eq!(Say::print().text(), "");
    }
}
