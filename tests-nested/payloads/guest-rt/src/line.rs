//! A fixed-size line buffer for `core::fmt` output: text accumulates until a
//! newline or a full buffer, then the bytes go to a sink in one piece (one
//! `console_io` call per line on the guest).

use core::fmt;

/// Collects formatted text and hands it to `sink` a line (or `N` bytes) at a time.
pub struct LineBuf<F: FnMut(&[u8]), const N: usize> {
    buf: [u8; N],
    len: usize,
    sink: F,
}

impl<F: FnMut(&[u8]), const N: usize> LineBuf<F, N> {
    /// An empty buffer that writes to `sink`.
    pub fn new(sink: F) -> Self {
        Self {
            buf: [0; N],
            len: 0,
            sink,
        }
    }

    /// Hands any buffered bytes to the sink.
    pub fn flush(&mut self) {
        if let Some(pending) = self.buf.get(..self.len) {
            if !pending.is_empty() {
                (self.sink)(pending);
            }
        }
        self.len = 0;
    }

    /// Appends bytes, flushing after each newline and whenever the buffer fills.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len >= N {
                self.flush();
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
            if b == b'\n' {
                self.flush();
            }
        }
    }
}

impl<F: FnMut(&[u8]), const N: usize> fmt::Write for LineBuf<F, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

impl<F: FnMut(&[u8]), const N: usize> Drop for LineBuf<F, N> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    fn collect<const N: usize>(f: impl FnOnce(&mut dyn Write)) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut lb = LineBuf::<_, N>::new(|b: &[u8]| out.push(b.to_vec()));
            f(&mut lb);
        }
        out
    }

    #[test]
    fn one_chunk_per_line() {
        let out = collect::<64>(|w| {
            write!(w, "a{}\nb", 1).unwrap();
            writeln!(w, "c").unwrap();
        });
        assert_eq!(out, vec![b"a1\n".to_vec(), b"bc\n".to_vec()]);
    }

    #[test]
    fn long_lines_split_at_capacity_and_rest_flushes_on_drop() {
        let out = collect::<4>(|w| w.write_str("abcdefghij").unwrap());
        assert_eq!(
            out,
            vec![b"abcd".to_vec(), b"efgh".to_vec(), b"ij".to_vec()]
        );
    }

    #[test]
    fn nothing_written_means_no_call() {
        assert!(collect::<8>(|_| {}).is_empty());
    }
}
