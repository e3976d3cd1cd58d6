//! `mrs`/`msr` helpers. Names are passed to the assembler as written, so the
//! `S3_<op1>_C<n>_C<m>_<op2>` form reaches registers (the `*_EL12` aliases,
//! GIC system registers) without enabling extra target features.

/// Read a system register that has no side effects on read.
macro_rules! read_sysreg {
    ($name:tt) => {{
        let v: u64;
        // SAFETY: `mrs` of a side-effect-free system register at EL2 only
        // copies its value into a general-purpose register.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::asm!(concat!("mrs {0}, ", $name), out(reg) v,
                options(nomem, nostack, preserves_flags));
        }
        v
    }};
}

/// Write a system register. Expands to an `asm!` that the caller wraps in
/// `unsafe` with a SAFETY comment (a write can change anything at EL2).
/// Ordered with memory accesses (no `nomem`), so table stores before a
/// translation-register write are not reordered after it by the compiler.
macro_rules! write_sysreg {
    ($name:tt, $val:expr) => {
        core::arch::asm!(concat!("msr ", $name, ", {0}"), in(reg) ($val as u64),
            options(nostack, preserves_flags))
    };
}

pub(crate) use read_sysreg;
pub(crate) use write_sysreg;

/// `ISB`.
#[inline(always)]
pub fn isb() {
    // SAFETY: an instruction barrier has no effect on memory or registers.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}
