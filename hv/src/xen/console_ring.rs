//! The PV console ring a Linux domU writes through `hvc0`.
//!
//! Layout: Xen `xen/include/public/io/console.h`, `struct xencons_interface`:
//! `char in[1024]` @0, `char out[2048]` @1024, then `XENCONS_RING_IDX` (u32)
//! `in_cons` @3072, `in_prod` @3076, `out_cons` @3080, `out_prod` @3084.
//! Indexes are free-running; `MASK_XENCONS_IDX(idx, ring)` is
//! `idx & (sizeof(ring) - 1)`. The guest side is Linux's
//! `drivers/tty/hvc/hvc_xen.c` (`__write_console`: copy into `out`, then
//! `out_prod`, then notify the console event channel; `domU_read_console`
//! for `in`).
//!
//! hv is the backend: on a notification it drains `out` from `out_cons` to
//! `out_prod` into the domain's console line (printed with the `(d<N>) `
//! prefix) and publishes the new `out_cons`. Indexes come from the guest: a
//! producer more than a ring ahead is clamped (the oldest bytes are skipped).

use pv_tlb::PhysAddr;

use super::console::{ConsoleLine, ConsoleSink};
use crate::arch::PhysMem;

/// Offset of `in[]`.
pub const IN: u64 = 0;
/// Size of `in[]`.
pub const IN_SIZE: u32 = 1024;
/// Offset of `out[]`.
pub const OUT: u64 = 1024;
/// Size of `out[]`.
pub const OUT_SIZE: u32 = 2048;
/// Offset of `in_cons`.
pub const IN_CONS: u64 = 3072;
/// Offset of `in_prod`.
pub const IN_PROD: u64 = 3076;
/// Offset of `out_cons`.
pub const OUT_CONS: u64 = 3080;
/// Offset of `out_prod`.
pub const OUT_PROD: u64 = 3084;

fn rd32<M: PhysMem + ?Sized>(mem: &M, pa: u64) -> u32 {
    let mut b = [0u8; 4];
    mem.read(PhysAddr(pa), &mut b);
    u32::from_le_bytes(b)
}

/// Drain the `out` ring of the console page at `ring` (a host frame) into
/// `line` for domain `domid`; returns the number of bytes consumed.
pub fn drain<M: PhysMem + ?Sized>(
    ring: PhysAddr,
    mem: &mut M,
    domid: u16,
    line: &mut ConsoleLine,
    sink: &mut dyn ConsoleSink,
) -> u32 {
    let mut cons = rd32(mem, ring.0 + OUT_CONS);
    let prod = rd32(mem, ring.0 + OUT_PROD);
    // Read the producer index before the data it covers (the guest wrote the
    // data, then `out_prod`, with a write barrier in between).
    core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
    let mut avail = prod.wrapping_sub(cons);
    if avail > OUT_SIZE {
        crate::glog!(
            domid,
            Debug,
            "d{domid}: console ring: producer {prod} is {avail} bytes ahead of {cons}"
        );
        cons = prod.wrapping_sub(OUT_SIZE);
        avail = OUT_SIZE;
    }
    let mut buf = [0u8; OUT_SIZE as usize];
    let mut done = 0u32;
    while done < avail {
        let at = cons.wrapping_add(done) & (OUT_SIZE - 1);
        // Up to the end of the ring, then wrap.
        let n = (avail - done).min(OUT_SIZE - at);
        let dst = &mut buf[done as usize..(done + n) as usize];
        mem.read(PhysAddr(ring.0 + OUT + u64::from(at)), dst);
        done += n;
    }
    line.push(domid, &buf[..avail as usize], sink);
    // Data consumed before the guest may reuse the space.
    core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
    mem.write(PhysAddr(ring.0 + OUT_CONS), &prod.to_le_bytes());
    avail
}

/// Put `bytes` of console input into the `in` ring (as much as fits);
/// returns how many were queued. The caller notifies the guest.
pub fn feed<M: PhysMem + ?Sized>(ring: PhysAddr, mem: &mut M, bytes: &[u8]) -> usize {
    let cons = rd32(mem, ring.0 + IN_CONS);
    let mut prod = rd32(mem, ring.0 + IN_PROD);
    let used = prod.wrapping_sub(cons);
    if used > IN_SIZE {
        return 0;
    }
    let room = (IN_SIZE - used) as usize;
    let n = bytes.len().min(room);
    for &b in &bytes[..n] {
        let at = prod & (IN_SIZE - 1);
        mem.write(PhysAddr(ring.0 + IN + u64::from(at)), &[b]);
        prod = prod.wrapping_add(1);
    }
    core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
    mem.write(PhysAddr(ring.0 + IN_PROD), &prod.to_le_bytes());
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::fake::FakeMem;
    use alloc::string::String;
    use alloc::vec::Vec;

    #[derive(Default)]
    struct Lines(Vec<String>);
    impl ConsoleSink for Lines {
        fn guest_line(&mut self, domid: u16, line: &str) {
            self.0.push(std::format!("(d{domid}) {line}"));
        }
    }

    const RING: PhysAddr = PhysAddr(0x8000_0000);

    /// The guest's side: copy into `out` at `out_prod`, then bump it.
    fn guest_write(mem: &mut FakeMem, s: &[u8]) {
        let mut prod = rd32(mem, RING.0 + OUT_PROD);
        for &b in s {
            let at = prod & (OUT_SIZE - 1);
            mem.write(PhysAddr(RING.0 + OUT + u64::from(at)), &[b]);
            prod = prod.wrapping_add(1);
        }
        mem.write(PhysAddr(RING.0 + OUT_PROD), &prod.to_le_bytes());
    }

    #[test]
    fn drains_lines_with_prefix_and_wraps() {
        let mut mem = FakeMem::new(0x8000_0000, 0x10_0000);
        mem.zero_frame(RING);
        let mut line = ConsoleLine::default();
        let mut sink = Lines::default();
        guest_write(&mut mem, b"HV-LINUX-MARKER\nnproc=");
        assert_eq!(drain(RING, &mut mem, 4, &mut line, &mut sink), 22);
        assert_eq!(sink.0, ["(d4) HV-LINUX-MARKER"]);
        assert_eq!(rd32(&mem, RING.0 + OUT_CONS), 22);
        // Nothing new: nothing consumed.
        assert_eq!(drain(RING, &mut mem, 4, &mut line, &mut sink), 0);
        // Indexes near u32::MAX and a write across the end of the ring.
        let start = u32::MAX - 3;
        mem.write(PhysAddr(RING.0 + OUT_CONS), &start.to_le_bytes());
        mem.write(PhysAddr(RING.0 + OUT_PROD), &start.to_le_bytes());
        guest_write(&mut mem, b"2\nwrapped\n");
        assert_eq!(drain(RING, &mut mem, 4, &mut line, &mut sink), 10);
        assert_eq!(sink.0[1..], ["(d4) nproc=2", "(d4) wrapped"]);
        assert_eq!(rd32(&mem, RING.0 + OUT_CONS), start.wrapping_add(10));
        // A producer far ahead (guest bug): only the last ring's worth is read.
        let cons = rd32(&mem, RING.0 + OUT_CONS);
        mem.write(
            PhysAddr(RING.0 + OUT_PROD),
            &cons.wrapping_add(5000).to_le_bytes(),
        );
        assert_eq!(drain(RING, &mut mem, 4, &mut line, &mut sink), OUT_SIZE);
        assert_eq!(
            rd32(&mem, RING.0 + OUT_CONS),
            cons.wrapping_add(5000),
            "caught up"
        );
    }

    #[test]
    fn feeds_input_up_to_the_free_space() {
        let mut mem = FakeMem::new(0x8000_0000, 0x10_0000);
        mem.zero_frame(RING);
        assert_eq!(feed(RING, &mut mem, b"ls\n"), 3);
        assert_eq!(rd32(&mem, RING.0 + IN_PROD), 3);
        let mut b = [0u8; 3];
        mem.read(RING, &mut b);
        assert_eq!(&b, b"ls\n");
        let big = [b'x'; 2000];
        assert_eq!(feed(RING, &mut mem, &big), 1021, "the ring holds 1024");
        assert_eq!(feed(RING, &mut mem, b"y"), 0);
        mem.write(PhysAddr(RING.0 + IN_CONS), &1024u32.to_le_bytes());
        assert_eq!(feed(RING, &mut mem, b"yz"), 2);
        mem.read(RING, &mut b[..2]);
        assert_eq!(&b[..2], b"yz", "wrapped to the start");
    }
}
