//! The arm64 Image header, `_start`, and the panic handler.
//!
//! Header layout from Linux's Documentation/arch/arm64/booting.rst: code0,
//! code1, text_offset, image_size, flags, three reserved words, the magic
//! "ARM\x64" at offset 0x38 and a reserved word. flags = 0b0010: little
//! endian, 4 KiB pages, placed at exactly RAM base + text_offset.

use crate::{hypercall, println, xen};
use core::sync::atomic::{AtomicU64, Ordering};

core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       1f                  // code0: branch over the header
    .long   0                   // code1
    .quad   0x80000             // text_offset
    .quad   __image_size        // image_size (incl. .bss and stack)
    .quad   0x2                 // flags
    .quad   0                   // res2
    .quad   0                   // res3
    .quad   0                   // res4
    .long   0x644d5241          // magic "ARM\x64"
    .long   0                   // res5
1:
    msr     daifset, #0xf
    // CPACR_EL1.FPEN = 0b11: the compiler may use FP/SIMD registers.
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    // Make the CPACR_EL1 write visible before any FP/SIMD instruction.
    isb
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
2:
    cmp     x1, x2
    b.hs    3f
    str     xzr, [x1], #8
    b       2b
3:
    // x0 is still the value the guest was entered with: keep it for boot_x0().
    adrp    x1, {boot_x0}
    add     x1, x1, :lo12:{boot_x0}
    str     x0, [x1]
    bl      {main}
    b       .
"#,
    main = sym rt_main,
    boot_x0 = sym BOOT_X0,
);

extern "C" {
    /// Defined by the payload binary.
    fn guest_main();
}

/// Runs the payload's `guest_main` and powers the domain off when it returns.
extern "C" fn rt_main() -> ! {
    // SAFETY: `guest_main` is the payload's entry point, a plain Rust
    // `extern "C" fn()` with no preconditions; the stack and .bss are ready.
    unsafe { guest_main() };
    hypercall::shutdown_forever(xen::SHUTDOWN_POWEROFF)
}

/// x0 as the guest was entered with it (Xen/hv put the DTB's IPA there),
/// saved by `_start` before anything else runs.
static BOOT_X0: AtomicU64 = AtomicU64::new(0);

/// The value of x0 at `_start` (the DTB address hv passes, for payloads that
/// read it). Zero if the entry code has not run.
pub fn boot_x0() -> u64 {
    BOOT_X0.load(Ordering::Relaxed)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("guest panic: {}", info);
    hypercall::shutdown_forever(xen::SHUTDOWN_CRASH)
}
