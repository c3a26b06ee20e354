//! Capped capture of a probe's output: the head and the tail are kept, the
//! middle is dropped and marked, so a probe that prints without end cannot
//! exhaust memory.

use std::collections::VecDeque;

/// Output kept within a byte limit.
#[derive(Debug)]
pub struct Capture {
    limit: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl Capture {
    /// Keep at most `limit` bytes: the first half and the last half.
    pub fn new(limit: usize) -> Self {
        Capture {
            limit,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    /// Take more output.
    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let head_cap = self.limit / 2;
        if self.head.len() < head_cap {
            let n = (head_cap - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        let tail_cap = self.limit - head_cap;
        if bytes.len() >= tail_cap {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - tail_cap..]);
        } else {
            let over = (self.tail.len() + bytes.len()).saturating_sub(tail_cap);
            self.tail.drain(..over);
            self.tail.extend(bytes);
        }
    }

    /// Bytes dropped from the middle.
    pub fn dropped(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    /// The kept output as text (invalid UTF-8 replaced), with a marker where
    /// bytes were dropped.
    pub fn text(&self) -> String {
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        let dropped = self.dropped();
        if dropped > 0 {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!(
                "[... {dropped} bytes of output dropped (output_limit {}) ...]\n",
                self.limit
            ));
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut c = Capture::new(100);
        c.push(b"hello ");
        c.push(b"world\n");
        assert_eq!(c.text(), "hello world\n");
        assert_eq!(c.dropped(), 0);
    }

    #[test]
    fn a_flood_keeps_head_and_tail_and_says_so() {
        let mut c = Capture::new(10);
        c.push(b"abcdefgh");
        for _ in 0..1000 {
            c.push(b"xxxxxxxxx");
        }
        c.push(b"12345");
        assert_eq!(c.tail.len(), 5);
        assert_eq!(c.dropped(), 8 + 9000 + 5 - 10);
        assert_eq!(
            c.text(),
            "abcde\n[... 9003 bytes of output dropped (output_limit 10) ...]\n12345"
        );
    }

    #[test]
    fn limit_zero_keeps_nothing() {
        let mut c = Capture::new(0);
        c.push(b"abc");
        assert_eq!(c.dropped(), 3);
    }
}
