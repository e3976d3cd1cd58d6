//! hv's console ring: every byte hv writes to its console (its own log lines
//! and the guests' console lines), kept for `XEN_SYSCTL_readconsole` (`xl
//! dmesg`), as Xen's `conring` (xen/drivers/char/console.c:
//! `conring_puts`, `read_console_ring`).
//!
//! Indices are free-running `u32` counters (Xen's `conringp` producer,
//! `conringc` oldest byte still held): the ring keeps the last
//! [`CONRING_SIZE`] bytes; a reader names where it stopped with the end index
//! it got back (`incremental`), and `clear` moves the oldest byte up to where
//! the read ended.
//!
//! The logger feeds [`puts`] under its console lock (one writer at a time);
//! readers ([`read`], [`clear_to`]) take the ring's own lock only to copy, and
//! [`puts`] never waits long for them: after a bounded spin the bytes are
//! dropped and counted ([`dropped`]), so a panic report can never deadlock here.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

/// Bytes the ring holds (a power of two, as Xen's `conring_size`; Xen's
/// default is 16 KiB and grows with `loglvl=all`, hv keeps 64 KiB).
pub const CONRING_SIZE: usize = 64 * 1024;

/// A console ring of `N` bytes (`N` a power of two).
pub struct Conring<const N: usize> {
    buf: [u8; N],
    /// Producer: total bytes ever written (`conringp`).
    p: u32,
    /// Oldest byte still readable (`conringc`).
    c: u32,
}

/// What one `readconsole` gets: the bytes and the index after them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOut {
    /// The bytes, oldest first.
    pub bytes: Vec<u8>,
    /// The index after the last byte (`op->index` OUT).
    pub end: u32,
    /// The producer index when the read was taken (for `clear`).
    pub producer: u32,
}

impl<const N: usize> Default for Conring<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Conring<N> {
    const SIZE: u32 = {
        assert!(N.is_power_of_two() && N <= 1 << 30);
        N as u32
    };

    /// An empty ring.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            p: 0,
            c: 0,
        }
    }

    fn idx(i: u32) -> usize {
        (i & (Self::SIZE - 1)) as usize
    }

    /// Append `s`; the oldest bytes go if the ring is full (`conring_puts`).
    pub fn puts(&mut self, s: &[u8]) {
        for &b in s {
            self.buf[Self::idx(self.p)] = b;
            self.p = self.p.wrapping_add(1);
        }
        if self.p.wrapping_sub(self.c) > Self::SIZE {
            self.c = self.p.wrapping_sub(Self::SIZE);
        }
    }

    /// Read up to `max` bytes as `read_console_ring`: from the oldest byte
    /// held, or from `index` if `incremental` and `index` lies in
    /// (oldest, producer\] (an index outside that is ignored, as in Xen).
    /// `None` if hv's heap has no room for the copy (at most `N` bytes).
    #[must_use]
    pub fn read(&self, incremental: bool, index: u32, max: u32) -> Option<ReadOut> {
        let (mut c, p) = (self.c, self.p);
        let inside = if c <= p {
            c < index && index <= p
        } else {
            c < index || index <= p
        };
        if incremental && inside {
            c = index;
        }
        let n = p.wrapping_sub(c).min(max);
        let mut bytes = Vec::new();
        // At most N bytes are held, so this reservation is bounded by the ring.
        bytes.try_reserve_exact(n as usize).ok()?;
        for i in 0..n {
            bytes.push(self.buf[Self::idx(c.wrapping_add(i))]);
        }
        Some(ReadOut {
            bytes,
            end: c.wrapping_add(n),
            producer: p,
        })
    }

    /// `clear` after a read that ended at `end` when the producer was at
    /// `producer`: the oldest byte becomes `end` (or the oldest byte still
    /// held if more than the ring's size was written since).
    pub fn clear_to(&mut self, end: u32, producer: u32) {
        self.c = if producer.wrapping_sub(end) > Self::SIZE {
            producer.wrapping_sub(Self::SIZE)
        } else {
            end
        };
    }

    /// The producer and oldest indices.
    #[must_use]
    pub fn indices(&self) -> (u32, u32) {
        (self.p, self.c)
    }
}

static RING: Mutex<Conring<CONRING_SIZE>> = Mutex::new(Conring::new());
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Keep console bytes `s` (the logger calls this for every byte it writes).
/// Never blocks for long: bytes that cannot get the lock in a bounded spin
/// are dropped and counted.
pub fn puts(s: &[u8]) {
    for _ in 0..10_000 {
        if let Some(mut r) = RING.try_lock() {
            r.puts(s);
            return;
        }
        core::hint::spin_loop();
    }
    DROPPED.fetch_add(s.len() as u64, Ordering::Relaxed);
}

/// Bytes [`puts`] dropped because a reader held the ring.
#[must_use]
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A copy of what hv's ring holds (see [`Conring::read`]).
#[must_use]
pub fn read(incremental: bool, index: u32, max: u32) -> Option<ReadOut> {
    RING.lock().read(incremental, index, max)
}

/// `clear` on hv's ring (see [`Conring::clear_to`]).
pub fn clear_to(end: u32, producer: u32) {
    RING.lock().clear_to(end, producer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_n_bytes_and_reads_from_the_oldest() {
        let mut r = Conring::<8>::new();
        r.puts(b"abc");
        assert_eq!(r.read(false, 0, 100).unwrap().bytes, b"abc");
        assert_eq!(r.read(false, 0, 100).unwrap().end, 3);
        assert_eq!(
            r.read(false, 0, 2).unwrap().bytes,
            b"ab",
            "count bounds the read"
        );
        r.puts(b"defghij");
        // 10 bytes written into 8: the oldest two are gone.
        assert_eq!(r.indices(), (10, 2));
        let out = r.read(false, 0, 100).unwrap();
        assert_eq!(out.bytes, b"cdefghij");
        assert_eq!(out.end, 10);
    }

    #[test]
    fn incremental_reads_continue_where_the_last_ended() {
        let mut r = Conring::<16>::new();
        r.puts(b"hello ");
        let first = r.read(true, 0, 100).unwrap();
        assert_eq!(first.bytes, b"hello ");
        r.puts(b"world");
        let next = r.read(true, first.end, 100).unwrap();
        assert_eq!(next.bytes, b"world");
        assert_eq!(next.end, 11);
        // Nothing new: an empty read at the same index.
        let none = r.read(true, next.end, 100).unwrap();
        assert!(none.bytes.is_empty());
        assert_eq!(none.end, 11);
        // An index outside (oldest, producer] is ignored: read from the oldest.
        assert_eq!(r.read(true, 999, 100).unwrap().bytes, b"hello world");
        assert_eq!(
            r.read(true, 0, 100).unwrap().bytes,
            b"hello world",
            "index == oldest"
        );
        // Non-incremental ignores index.
        assert_eq!(r.read(false, 6, 100).unwrap().bytes, b"hello world");
    }

    #[test]
    fn clear_drops_what_was_read() {
        let mut r = Conring::<16>::new();
        r.puts(b"0123456789");
        let out = r.read(false, 0, 4).unwrap();
        r.clear_to(out.end, out.producer);
        assert_eq!(r.read(false, 0, 100).unwrap().bytes, b"456789");
        let all = r.read(false, 0, 100).unwrap();
        r.clear_to(all.end, all.producer);
        assert!(r.read(false, 0, 100).unwrap().bytes.is_empty());
        // A clear whose read is older than a whole ring keeps the last N.
        r.clear_to(0, 100);
        assert_eq!(r.indices().1, 100 - 16);
    }

    #[test]
    fn indices_wrap_at_u32() {
        let mut r = Conring::<8> {
            buf: [0; 8],
            p: u32::MAX - 2,
            c: u32::MAX - 2,
        };
        r.puts(b"wxyz12");
        let out = r.read(false, 0, 100).unwrap();
        assert_eq!(out.bytes, b"wxyz12");
        assert_eq!(out.end, 3);
        // Incremental from before the wrap.
        let part = r.read(true, u32::MAX, 100).unwrap();
        assert_eq!(part.bytes, b"yz12");
    }

    #[test]
    fn the_global_ring_takes_bytes() {
        puts(b"conring-test-marker\n");
        let out = read(false, 0, u32::MAX).unwrap();
        assert!(out.bytes.windows(19).any(|w| w == b"conring-test-marker"));
    }
}
