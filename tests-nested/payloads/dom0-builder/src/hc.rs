//! Everything the payload does with raw addresses: hypercalls whose
//! arguments name guest memory, the counter registers, the scratch arrays,
//! and accesses to the foreign-mapping window. The control domain runs with
//! its MMU off, so an address is its IPA and every data access is
//! Device-nGnRnE: every access below is naturally aligned.

use dom0_builder::abi::{self, Buf, Domctl, HvCounters, HvResources};
use guest_rt::hypercall::hypercall;

/// Issues hypercall `nr` with `a0`, `a1`.
///
/// # Safety
/// Any argument the hypercall reads or writes as a guest address must name
/// live memory of this domain that no Rust reference is using for the
/// duration of the call (or lie outside its RAM, for the negative tests).
pub unsafe fn raw(nr: u64, a0: u64, a1: u64) -> i64 {
    // SAFETY: forwarded to the caller's guarantee above.
    unsafe { hypercall(nr, [a0, a1, 0, 0, 0]) }
}

/// `domctl(&d)`: hv reads and (for OUT fields) writes the 144 bytes of `d`.
pub fn domctl(d: &mut Domctl) -> i64 {
    let p = core::ptr::addr_of_mut!(d.0) as u64;
    // SAFETY: `d` is a live, exclusively borrowed xen_domctl image; none of
    // the sub-ops the builder uses through this function carries a handle
    // (setvcpucontext goes through `domctl_with_ctx`).
    unsafe { raw(abi::HYPERVISOR_DOMCTL, p, 0) }
}

/// `domctl(setvcpucontext)` of `vcpu` of `domid` with the context `ctx`.
pub fn setvcpucontext(domid: u16, vcpu: u32, ctx: &Buf<{ abi::VCPU_GUEST_CONTEXT_SIZE }>) -> i64 {
    let mut d = abi::domctl_setvcpucontext(domid, vcpu, core::ptr::addr_of!(ctx.0) as u64);
    let p = core::ptr::addr_of_mut!(d.0) as u64;
    // SAFETY: `d` is live and exclusively borrowed; its ctxt handle names
    // `ctx`, which is live and only read by hv during the call.
    unsafe { raw(abi::HYPERVISOR_DOMCTL, p, 0) }
}

/// `sysctl(&s)`.
pub fn sysctl(s: &mut Buf<{ abi::SYSCTL_SIZE }>) -> i64 {
    let p = core::ptr::addr_of_mut!(s.0) as u64;
    // SAFETY: `s` is a live, exclusively borrowed xen_sysctl image (physinfo
    // carries no handle).
    unsafe { raw(abi::HYPERVISOR_SYSCTL, p, 0) }
}

/// `memory_op(cmd, &arg)`.
///
/// # Safety
/// Every guest handle inside `arg` must name live scratch memory of the
/// sizes the operation implies (`nr_extents` / `size` elements), not in use
/// by any Rust reference during the call, or lie outside guest RAM.
pub unsafe fn memory_op<const N: usize>(cmd: u64, arg: &mut Buf<N>) -> i64 {
    let p = core::ptr::addr_of_mut!(arg.0) as u64;
    // SAFETY: `arg` is live and exclusively borrowed; its handles are the
    // caller's responsibility (above).
    unsafe { raw(abi::HYPERVISOR_MEMORY_OP, cmd, p) }
}

/// `sched_op(SCHEDOP_yield)`.
pub fn yield_now() -> i64 {
    // SAFETY: SCHEDOP_yield takes no argument.
    unsafe { raw(abi::HYPERVISOR_SCHED_OP, abi::SCHEDOP_YIELD, 0) }
}

/// `hv_op(HVOP_reset_counters)`.
pub fn reset_counters() -> i64 {
    // SAFETY: the reset sub-op uses no buffer.
    unsafe { raw(abi::HYPERVISOR_HV_OP, abi::HVOP_RESET_COUNTERS, 0) }
}

/// `hv_op(HVOP_get_counters)`, or the errno hv answered.
pub fn counters() -> Result<HvCounters, i64> {
    let mut b = Buf::<{ abi::HV_COUNTERS_SIZE }>::zeroed();
    let p = core::ptr::addr_of_mut!(b.0) as u64;
    // SAFETY: `b` is a live 96-byte buffer that hv fills.
    let rc = unsafe { raw(abi::HYPERVISOR_HV_OP, abi::HVOP_GET_COUNTERS, p) };
    if rc == 0 {
        Ok(HvCounters::decode(&b))
    } else {
        Err(rc)
    }
}

/// `hv_op(HVOP_get_resources)`, or the errno hv answered.
pub fn resources() -> Result<HvResources, i64> {
    let mut b = Buf::<{ abi::HV_RESOURCES_SIZE }>::zeroed();
    let p = core::ptr::addr_of_mut!(b.0) as u64;
    // SAFETY: `b` is a live 64-byte buffer that hv fills.
    let rc = unsafe { raw(abi::HYPERVISOR_HV_OP, abi::HVOP_GET_RESOURCES, p) };
    if rc == 0 {
        Ok(HvResources::decode(&b))
    } else {
        Err(rc)
    }
}

/// `event_channel_op(cmd, &buf)` on a 24-byte struct image; hv reads and
/// writes within it.
pub fn evtchn_op(cmd: u64, b: &mut Buf<24>) -> i64 {
    let p = core::ptr::addr_of_mut!(b.0) as u64;
    // SAFETY: `b` is a live, exclusively borrowed 24-byte buffer, the size
    // of the largest EVTCHNOP struct the builder uses (status).
    unsafe { raw(abi::HYPERVISOR_EVENT_CHANNEL_OP, cmd, p) }
}

/// `hv_op(sub)` with no buffer (negative test of an unknown sub-op).
pub fn hv_op_plain(sub: u64) -> i64 {
    // SAFETY: a null handle; hv must refuse the sub-op before using it.
    unsafe { raw(abi::HYPERVISOR_HV_OP, sub, 0) }
}

/// `CNTVCT_EL0`.
pub fn ticks() -> u64 {
    let v: u64;
    // SAFETY: reading the virtual counter is permitted at EL1 and has no side
    // effect; the ISB keeps the read from being hoisted above earlier work.
    unsafe {
        core::arch::asm!("isb", "mrs {v}, cntvct_el0", v = out(reg) v, options(nomem, nostack, preserves_flags));
    }
    v
}

/// `CNTFRQ_EL0`.
pub fn freq() -> u64 {
    let v: u64;
    // SAFETY: reading CNTFRQ_EL0 at EL1 has no side effect.
    unsafe {
        core::arch::asm!("mrs {v}, cntfrq_el0", v = out(reg) v, options(nomem, nostack, preserves_flags));
    }
    v
}

extern "C" {
    /// End of the payload image incl. .bss and stack (guest-rt's guest.ld).
    static __image_end: u8;
}

/// First byte after the payload's image, .bss and stack.
pub fn image_end() -> u64 {
    // Only the address of the linker-defined symbol is taken (no read).
    core::ptr::addr_of!(__image_end) as u64
}

/// A read-only view of `len` bytes at `addr` that hv placed in this
/// domain's RAM (its DTB, its initrd).
///
/// # Safety
/// `addr..addr + len` must be RAM of this domain that nothing writes for
/// the rest of the program.
pub unsafe fn boot_bytes(addr: u64, len: u64) -> &'static [u8] {
    // SAFETY: the caller guarantees the range is readable, immutable RAM;
    // with the MMU off the address is the IPA.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) }
}

/// `n` elements of `T` of scratch RAM at `addr`, zeroed.
///
/// # Safety
/// `addr` must be aligned for `T` and `addr..addr + n * size_of::<T>()` RAM
/// of this domain handed out once by the scratch allocator (no other
/// reference to it exists), never freed.
pub unsafe fn scratch<T: Copy + Default>(addr: u64, n: usize) -> &'static mut [T] {
    let p = addr as *mut T;
    for i in 0..n {
        // SAFETY: in the caller's range, aligned: initialise before the
        // slice is formed.
        unsafe { p.wrapping_add(i).write_volatile(T::default()) };
    }
    // SAFETY: initialised above; exclusive by the caller's guarantee.
    unsafe { core::slice::from_raw_parts_mut(p, n) }
}

/// Writes one 4 KiB page at `gfn` of this domain (a foreign mapping in the
/// window) from `data[off..]`, zero-filling past its end.
///
/// # Safety
/// `gfn` must be mapped read/write in this domain's stage 2 and be no Rust
/// object (a page of the foreign window).
pub unsafe fn write_page(gfn: u64, data: &[u8], off: u64) {
    let dst = (gfn << 12) as *mut u64;
    let src = data.get(off as usize..).unwrap_or(&[]);
    let aligned = (src.as_ptr() as usize).is_multiple_of(8);
    for w in 0..512usize {
        let v = match src.get(8 * w..8 * w + 8) {
            Some(s) if aligned => {
                // SAFETY: `s` is 8 bytes inside `data`, 8-byte aligned
                // (the slice start is, and 8 * w keeps it).
                unsafe { (s.as_ptr() as *const u64).read() }
            }
            Some(s) => u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
            None => {
                let mut b = [0u8; 8];
                if let Some(s) = src.get(8 * w..) {
                    b[..s.len().min(8)].copy_from_slice(&s[..s.len().min(8)]);
                }
                u64::from_le_bytes(b)
            }
        };
        // SAFETY: the caller guarantees the page is mapped and no Rust
        // object; the access is 8-byte aligned (Device memory with MMU off).
        unsafe { dst.wrapping_add(w).write_volatile(v) };
    }
}

/// True if page `gfn` of this domain holds what [`write_page`] wrote from
/// `data[off..]`.
///
/// # Safety
/// As [`write_page`] (the page is only read).
pub unsafe fn page_matches(gfn: u64, data: &[u8], off: u64) -> bool {
    let p = (gfn << 12) as *const u64;
    let src = data.get(off as usize..).unwrap_or(&[]);
    (0..512usize).all(|w| {
        let mut b = [0u8; 8];
        if let Some(s) = src.get(8 * w..) {
            let n = s.len().min(8);
            b[..n].copy_from_slice(&s[..n]);
        }
        // SAFETY: aligned read of a mapped page that is no Rust object (caller).
        let v = unsafe { p.wrapping_add(w).read_volatile() };
        v == u64::from_le_bytes(b)
    })
}

/// Reads the first u64 of page `gfn` of this domain.
///
/// # Safety
/// `gfn` must be no Rust object. If it is not mapped, the read is a
/// stage-2 fault that hv answers by ending this domain (the stale-TLB test
/// relies on exactly that).
pub unsafe fn read_page_word(gfn: u64) -> u64 {
    // SAFETY: aligned read of a page that is no Rust object (caller).
    unsafe { ((gfn << 12) as *const u64).read_volatile() }
}
