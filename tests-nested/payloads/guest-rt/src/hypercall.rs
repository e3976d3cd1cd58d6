//! Xen hypercalls from EL1: `HVC #0xEA1`, x16 = number, arguments in x0..x4,
//! result in x0. Xen may clobber x0..x4 and x16 (public/arch-arm.h), so they
//! are all declared as clobbered.

use crate::xen;

/// Issues hypercall `nr` with arguments `a` and returns x0 as Xen's signed result.
///
/// # Safety
/// Any argument the hypercall interprets as a guest address must name memory
/// that is valid for the access that hypercall makes (a read for
/// `CONSOLEIO_write`, a read for `SCHEDOP_shutdown`, writes for calls that
/// return data), or memory that is not a Rust object at all (an address
/// outside the guest's RAM, which hv must refuse with `-EFAULT`).
pub unsafe fn hypercall(nr: u64, a: [u64; 5]) -> i64 {
    let ret: u64;
    // SAFETY: HVC with Xen's tag is the documented Arm hypercall entry; hv
    // returns to the next instruction with the result in x0 and preserves all
    // registers other than x0..x4 and x16, which are declared clobbered here.
    // The memory it touches is what the caller vouched for above.
    unsafe {
        core::arch::asm!(
            "hvc #{tag}",
            tag = const xen::HYPERCALL_TAG,
            inlateout("x0") a[0] => ret,
            inlateout("x1") a[1] => _,
            inlateout("x2") a[2] => _,
            inlateout("x3") a[3] => _,
            inlateout("x4") a[4] => _,
            inlateout("x16") nr => _,
            options(nostack),
        );
    }
    // Xen's results are C longs: reinterpret the register as signed.
    ret as i64
}

/// `console_io(CONSOLEIO_write, bytes.len(), bytes)`.
pub fn console_write(bytes: &[u8]) -> i64 {
    // SAFETY: the buffer is a live slice of `bytes.len()` readable bytes, and
    // CONSOLEIO_write only reads it. With the MMU off the guest's VA is its IPA.
    unsafe {
        hypercall(
            xen::HYPERVISOR_CONSOLE_IO,
            [
                xen::CONSOLEIO_WRITE,
                bytes.len() as u64,
                bytes.as_ptr() as u64,
                0,
                0,
            ],
        )
    }
}

/// `xen_version(XENVER_version, NULL)`.
pub fn xen_version() -> i64 {
    // SAFETY: XENVER_version takes no buffer (the NULL argument is not used).
    unsafe {
        hypercall(
            xen::HYPERVISOR_XEN_VERSION,
            [xen::XENVER_VERSION, 0, 0, 0, 0],
        )
    }
}

/// `sched_op(SCHEDOP_shutdown, &sched_shutdown { reason })`. Returns only if
/// hv refuses the request, with its error.
pub fn shutdown(reason: u32) -> i64 {
    let arg = xen::SchedShutdown { reason };
    // SAFETY: `arg` is a live `struct sched_shutdown` on the stack that the
    // hypercall only reads.
    unsafe {
        hypercall(
            xen::HYPERVISOR_SCHED_OP,
            [
                xen::SCHEDOP_SHUTDOWN,
                core::ptr::addr_of!(arg) as u64,
                0,
                0,
                0,
            ],
        )
    }
}

/// Shuts down with `reason` and, should hv return, spins with interrupts masked.
pub fn shutdown_forever(reason: u32) -> ! {
    let _ = shutdown(reason);
    loop {
        // SAFETY: WFI only waits for an event; it touches no memory or registers.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}
