//! `platform_op` (7) for the control domain, after Xen/Arm's
//! `do_platform_op` (xen/arch/arm/platform_hypercall.c): only
//! `XENPF_settime64` (dom0's kernel pushes the wall clock it read from the
//! RTC: three calls in the trace's dom0 boot). Xen's `do_settime`
//! (xen/common/time.c) keeps the wall-clock time at system time 0 and writes
//! it into every domain's shared info (`update_domain_wallclock_time`:
//! `wc_version` odd, `wc_sec`, `wc_nsec`, `wc_sec_hi`, `wc_version` even).

use core::sync::atomic::{fence, AtomicU64, Ordering};

use memops::TableMem;

use super::{Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::xen::Errno;
use pv_tlb::PhysAddr;

/// `XENPF_INTERFACE_VERSION` (public/platform.h).
pub const XENPF_INTERFACE_VERSION: u32 = 0x0300_0001;
/// `XENPF_settime64`.
pub const XENPF_SETTIME64: u32 = 62;
/// `sizeof(struct xen_platform_op)`: cmd, interface_version, a 128-byte union at 8.
const OP_SIZE: usize = 136;
/// Byte offsets of `wc_version`, `wc_sec`, `wc_nsec`, `wc_sec_hi` in
/// `struct shared_info` on arm64 (public/xen.h; [`crate::xen::abi::SharedInfo`]).
const WC_VERSION: u64 = 1072;

/// Xen's `wc_sec` and `wc_nsec`: wall-clock time at system time 0 (packed
/// as seconds << 30 | ns, both fit: ns < 2^30).
static WALLCLOCK: AtomicU64 = AtomicU64::new(0);

/// The wall-clock time at hv's system time 0 that dom0 set: (seconds, ns).
#[must_use]
pub fn wallclock() -> (u64, u32) {
    let v = WALLCLOCK.load(Ordering::Relaxed);
    (v >> 30, (v & ((1 << 30) - 1)) as u32)
}

/// `platform_op(struct xen_platform_op *)`: copy in (-EFAULT), the interface
/// version (-EACCES), the right (XSM_PRIV: -EPERM), then the command
/// (`settime64` only: -EINVAL for a non-zero `mbz`; others -ENOSYS).
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    Reply::ret(platform_op(GuestVa(a[0]), ctx))
}

fn platform_op<M: PhysMem + TableMem>(arg: GuestVa, ctx: &mut Ctx<'_, M>) -> Result<u64, Errno> {
    let c = ctx.caller;
    let b = ctx.read::<OP_SIZE>(arg)?;
    let le32 = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let le64 = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let (cmd, version) = (le32(0), le32(4));
    if version != XENPF_INTERFACE_VERSION {
        crate::glog!(
            c,
            Debug,
            "d{c}: platform_op {cmd}: interface version {version:#x}: -EACCES"
        );
        return Err(Errno::EACCES);
    }
    if !ctx.privileged() {
        crate::glog!(c, Debug, "d{c}: platform_op {cmd}: not privileged: -EPERM");
        return Err(Errno::EPERM);
    }
    if cmd != XENPF_SETTIME64 {
        crate::glog!(c, Debug, "d{c}: platform_op {cmd} not implemented: -ENOSYS");
        return Err(Errno::ENOSYS);
    }
    // struct xenpf_settime64 { uint64_t secs; uint32_t nsecs; uint32_t mbz; uint64_t system_time; }
    let (secs, nsecs, mbz, system_time) = (le64(8), le32(16), le32(20), le64(24));
    if mbz != 0 {
        crate::glog!(c, Debug, "d{c}: settime64: mbz {mbz:#x}: -EINVAL");
        return Err(Errno::EINVAL);
    }
    // do_settime: x = SECONDS(secs) + nsecs - system_time_base, split into
    // seconds and nanoseconds (C's unsigned arithmetic: wrapping).
    let x = secs
        .wrapping_mul(1_000_000_000)
        .wrapping_add(u64::from(nsecs))
        .wrapping_sub(system_time);
    let (wc_sec, wc_nsec) = (x / 1_000_000_000, (x % 1_000_000_000) as u32);
    WALLCLOCK.store((wc_sec << 30) | u64::from(wc_nsec), Ordering::Relaxed);
    let w = &mut *ctx.world;
    for d in &w.domains {
        if let Some(si) = d.xen.evtchn.shared_info() {
            write_wallclock(&mut w.mem, si, wc_sec, wc_nsec);
        }
    }
    Ok(0)
}

/// Xen's `update_domain_wallclock_time` on the shared-info page at `si`.
fn write_wallclock<M: PhysMem + ?Sized>(mem: &mut M, si: PhysAddr, sec: u64, nsec: u32) {
    let at = |off: u64| PhysAddr(si.0 + WC_VERSION + off);
    let mut v = [0u8; 4];
    mem.read(at(0), &mut v);
    let ver = u32::from_le_bytes(v);
    mem.write(at(0), &ver.wrapping_add(1).to_le_bytes());
    // The guest reads version, fields, version (a seqlock): the odd version
    // must be visible before the fields change (Xen's smp_wmb).
    fence(Ordering::Release);
    mem.write(at(4), &(sec as u32).to_le_bytes());
    mem.write(at(8), &nsec.to_le_bytes());
    mem.write(at(12), &((sec >> 32) as u32).to_le_bytes());
    // And the fields before the even version (Xen's second smp_wmb).
    fence(Ordering::Release);
    mem.write(at(0), &ver.wrapping_add(2).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::fake::FakeMem;

    #[test]
    fn wallclock_is_written_as_a_seqlock() {
        let mut mem = FakeMem::new(0x8000_0000, 0x10_0000);
        let si = PhysAddr(0x8000_1000);
        mem.zero_frame(si);
        write_wallclock(&mut mem, si, 0x1_2345_6789, 42);
        let mut b = [0u8; 16];
        mem.read(PhysAddr(si.0 + WC_VERSION), &mut b);
        let w = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        assert_eq!(w(0), 2, "even: updated once");
        assert_eq!(w(4), 0x2345_6789);
        assert_eq!(w(8), 42);
        assert_eq!(w(12), 1, "wc_sec_hi");
        assert_eq!(WC_VERSION, crate::xen::abi::layout::SI_WC_VERSION);
    }
}
