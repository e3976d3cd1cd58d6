//! An EL1 exception vector table that records the last exception taken.
//!
//! Every one of the 16 entries saves x0..x3, records (entry index, ESR_EL1,
//! ELR_EL1, FAR_EL1) and bumps a counter. If a resume address was armed (see
//! [`expect_exception`]), it returns there; otherwise it reports the exception
//! on the console and shuts the domain down with `SHUTDOWN_crash`.

use crate::{hypercall, println, xen};
use core::sync::atomic::{AtomicU64, Ordering};

/// Index, ESR, ELR, FAR of the last exception, then the count of exceptions taken.
static RECORD: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
/// Where the handler resumes after an expected exception (0: none expected).
static RESUME: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    r#"
    .macro GUEST_RT_VEC idx
    .balign 0x80
    sub     sp, sp, #32
    stp     x0, x1, [sp]
    stp     x2, x3, [sp, #16]
    mov     x0, #\idx
    b       guest_rt_vector_common
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global guest_rt_vectors
guest_rt_vectors:
    GUEST_RT_VEC 0
    GUEST_RT_VEC 1
    GUEST_RT_VEC 2
    GUEST_RT_VEC 3
    GUEST_RT_VEC 4
    GUEST_RT_VEC 5
    GUEST_RT_VEC 6
    GUEST_RT_VEC 7
    GUEST_RT_VEC 8
    GUEST_RT_VEC 9
    GUEST_RT_VEC 10
    GUEST_RT_VEC 11
    GUEST_RT_VEC 12
    GUEST_RT_VEC 13
    GUEST_RT_VEC 14
    GUEST_RT_VEC 15

guest_rt_vector_common:
    adrp    x1, {record}
    add     x1, x1, :lo12:{record}
    str     x0, [x1]
    mrs     x2, esr_el1
    str     x2, [x1, #8]
    mrs     x2, elr_el1
    str     x2, [x1, #16]
    mrs     x2, far_el1
    str     x2, [x1, #24]
    ldr     x2, [x1, #32]
    add     x2, x2, #1
    str     x2, [x1, #32]
    adrp    x3, {resume}
    add     x3, x3, :lo12:{resume}
    ldr     x2, [x3]
    cbz     x2, 4f
    str     xzr, [x3]
    msr     elr_el1, x2
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp]
    add     sp, sp, #32
    eret
4:
    ldr     x0, [x1]
    ldr     x1, [x1, #8]
    mrs     x2, elr_el1
    mrs     x3, far_el1
    b       {unexpected}
"#,
    record = sym RECORD,
    resume = sym RESUME,
    unexpected = sym unexpected,
);

/// An exception caught by the vector table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Caught {
    /// Vector entry 0..15 (4..7: current EL with SP_ELx; 4 = synchronous).
    pub index: u64,
    /// `ESR_EL1`.
    pub esr: u64,
    /// `ELR_EL1` at the time it was taken.
    pub elr: u64,
    /// `FAR_EL1`.
    pub far: u64,
}

/// Points VBAR_EL1 at the recording vector table.
pub fn install() {
    // SAFETY: `guest_rt_vectors` is 2 KiB aligned as VBAR_EL1 requires and
    // lives in the image for the program's lifetime; each entry saves the
    // registers it uses and either returns to an armed resume address or never
    // returns. The ISB makes the new VBAR_EL1 take effect for what follows.
    unsafe {
        core::arch::asm!(
            "adrp {t}, guest_rt_vectors",
            "add {t}, {t}, :lo12:guest_rt_vectors",
            "msr vbar_el1, {t}",
            "isb",
            t = out(reg) _,
            options(nostack, preserves_flags),
        );
    }
}

/// How many exceptions the table has taken so far.
pub fn count() -> u64 {
    RECORD[4].load(Ordering::SeqCst)
}

/// The last exception recorded, if any was taken.
pub fn last() -> Option<Caught> {
    if count() == 0 {
        return None;
    }
    Some(Caught {
        index: RECORD[0].load(Ordering::SeqCst),
        esr: RECORD[1].load(Ordering::SeqCst),
        elr: RECORD[2].load(Ordering::SeqCst),
        far: RECORD[3].load(Ordering::SeqCst),
    })
}

/// Arms the handler to resume at `pc` after the next exception.
pub fn expect_exception(pc: u64) {
    RESUME.store(pc, Ordering::SeqCst);
}

/// The address of the resume slot, for assembly that arms it with a label
/// address just before the instruction expected to trap.
pub fn resume_slot() -> *const AtomicU64 {
    &RESUME
}

/// Disarms a resume address that was not used.
pub fn disarm() {
    RESUME.store(0, Ordering::SeqCst);
}

extern "C" fn unexpected(index: u64, esr: u64, elr: u64, far: u64) -> ! {
    println!(
        "guest-rt: unexpected exception: vector {} ESR_EL1={:#x} (EC {:#04x}) ELR_EL1={:#x} FAR_EL1={:#x}",
        index,
        esr,
        xen::esr_ec(esr),
        elr,
        far
    );
    hypercall::shutdown_forever(xen::SHUTDOWN_CRASH)
}
