//! EL2 probe payload for the nested rig: prints the evidence nested-detect decides from.
//!
//! Runs as the first thing at (v)EL2 with the MMU off, either under the rig's VMM (a KVM
//! guest hypervisor) or directly on QEMU's virt machine. It prints through the PL011 at
//! 0x0900_0000 (QEMU virt's address; the VMM emulates one at the same address), then asks
//! PSCI SYSTEM_OFF through SMC. Every line starts with `PROBE:` so runners can grep them.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::fmt::{self, Write};
use core::panic::PanicInfo;

// The arm64 Image header (Linux Documentation/arch/arm64/booting.rst): a loader puts the
// image at a 2 MiB aligned base + text_offset (0x80000) and enters at its first byte with
// x0 = the DTB address. Then: stack, FP/SIMD untrapped, exception vectors, main.
global_asm!(
    ".section .text.head, \"ax\"",
    ".global _start",
    "_start:",
    "    b 1f",
    "    .long 0",
    "    .quad 0x80000",       // text_offset
    "    .quad _end - _start", // image_size
    "    .quad 0xa",           // flags: LE, 4K pages, anywhere
    "    .quad 0, 0, 0",
    "    .ascii \"ARM\\x64\"",
    "    .long 0",
    "1:  mov x19, x0",
    "    ldr x1, =__stack_top",
    "    mov sp, x1",
    // CPTR_EL2: with HCR_EL2.E2H = 1 it has CPACR's layout (FPEN = bits 21:20 = 0b11),
    // with E2H = 0 TFP (bit 10) must be clear. Rust code may use FP/SIMD registers.
    "    mrs x1, hcr_el2",
    "    tbz x1, #34, 2f",
    "    mrs x2, cptr_el2",
    "    orr x2, x2, #(3 << 20)",
    "    msr cptr_el2, x2",
    "    b 3f",
    "2:  mrs x2, cptr_el2",
    "    bic x2, x2, #(1 << 10)",
    "    msr cptr_el2, x2",
    "3:  adr x1, vectors",
    "    msr vbar_el2, x1",
    "    isb", // the new CPTR/VBAR apply to what follows
    "    mov x0, x19",
    "    bl probe_main",
    "4:  wfi",
    "    b 4b",
    "",
    // Secondary CPUs (PSCI CPU_ON entry, x0 = context): own stack, same setup, then Rust.
    ".global secondary_entry",
    "secondary_entry:",
    "    mov x19, x0",
    "    ldr x1, =__stack2_top",
    "    mov sp, x1",
    "    mrs x1, hcr_el2",
    "    tbz x1, #34, 6f",
    "    mrs x2, cptr_el2",
    "    orr x2, x2, #(3 << 20)",
    "    msr cptr_el2, x2",
    "    b 7f",
    "6:  mrs x2, cptr_el2",
    "    bic x2, x2, #(1 << 10)",
    "    msr cptr_el2, x2",
    "7:  adr x1, vectors",
    "    msr vbar_el2, x1",
    "    isb", // the new CPTR/VBAR apply to what follows
    "    mov x0, x19",
    "    bl secondary_main",
    "8:  wfi",
    "    b 8b",
    "",
    // Vectors: any synchronous exception taken to our own EL2 (an HVC on bare metal, an
    // SMC trapped by HCR_EL2.TSC, an UNDEF) records its ESR and returns with
    // x0 = 0xffff_ffff_ffff_ffff ("not handled by anyone above us").
    ".balign 2048",
    "vectors:",
    ".rept 16",
    "    b own_exception",
    "    .balign 128",
    ".endr",
    "own_exception:",
    "    stp x9, x10, [sp, #-16]!",
    "    mrs x9, esr_el2",
    "    adr x10, OWN_ESR",
    "    str x9, [x10]",
    "    lsr x9, x9, #26",
    "    cmp x9, #0x16", // HVC64: ELR_EL2 already points past the HVC
    "    b.eq 5f",
    "    mrs x10, elr_el2", // anything else (SMC trap, UNDEF): skip the instruction
    "    add x10, x10, #4",
    "    msr elr_el2, x10",
    "5:  ldp x9, x10, [sp], #16",
    "    mov x0, #-1",
    "    eret",
    ".balign 8",
    ".global OWN_ESR",
    "OWN_ESR: .quad 0",
);

extern "C" {
    static mut OWN_ESR: u64;
    fn secondary_entry();
}

/// Set by CPU 1 when it runs (0 = not yet).
static CPU1_UP: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

const UART: usize = 0x0900_0000;
const UART_DR: usize = 0x00;
const UART_FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;

struct Uart;

impl Uart {
    fn putc(b: u8) {
        // SAFETY: 0x0900_0000 is the PL011 on QEMU virt and the VMM's emulated UART; with
        // the MMU off it is Device memory and 32-bit accesses to FR/DR are architected.
        unsafe {
            while core::ptr::read_volatile((UART + UART_FR) as *const u32) & FR_TXFF != 0 {}
            core::ptr::write_volatile((UART + UART_DR) as *mut u32, u32::from(b));
        }
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                Uart::putc(b'\r');
            }
            Uart::putc(b);
        }
        Ok(())
    }
}

macro_rules! probe {
    ($($t:tt)*) => {{
        let _ = write!(Uart, "PROBE: ");
        let _ = writeln!(Uart, $($t)*);
    }};
}

macro_rules! mrs {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reading an ID/system register at EL2 has no side effects.
        unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

/// An SMCCC call through HVC (`smc = false`) or SMC; returns x0..x3 and the ESR our own
/// vector saw (0 when the call was answered above us).
fn smccc(func: u64, smc: bool) -> ([u64; 4], u64) {
    let (mut r0, r1, r2, r3): (u64, u64, u64, u64);
    // SAFETY: resetting our own exception record.
    unsafe { core::ptr::write_volatile(&raw mut OWN_ESR, 0) };
    r0 = func;
    // SAFETY: SMCCC calls preserve x18..x30 and sp; everything else is declared clobbered.
    // An exception taken to our own EL2 returns through `own_exception`.
    unsafe {
        if smc {
            asm!("smc #0", inout("x0") r0, out("x1") r1, out("x2") r2, out("x3") r3,
                 out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
                 out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
                 out("x14") _, out("x15") _, out("x16") _, out("x17") _);
        } else {
            asm!("hvc #0", inout("x0") r0, out("x1") r1, out("x2") r2, out("x3") r3,
                 out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
                 out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
                 out("x14") _, out("x15") _, out("x16") _, out("x17") _);
        }
    }
    // SAFETY: OWN_ESR is only written by our vector on this single CPU.
    let esr = unsafe { core::ptr::read_volatile(&raw const OWN_ESR) };
    ([r0, r1, r2, r3], esr)
}

/// An SMCCC call with arguments through SMC; returns x0.
fn smc3(func: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let mut r0 = func;
    // SAFETY: SMCCC calls preserve x18..x30 and sp; everything else is declared clobbered.
    unsafe {
        asm!("smc #0", inout("x0") r0, inout("x1") a1 => _, inout("x2") a2 => _,
             inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
             out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
             out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _);
    }
    r0
}

#[no_mangle]
extern "C" fn secondary_main(ctx: u64) -> ! {
    let el = (mrs!("currentel") >> 2) & 3;
    let mpidr = mrs!("mpidr_el1");
    probe!(
        "cpu1 up CurrentEL={} MPIDR_EL1={:#x} ctx={:#x}",
        el,
        mpidr,
        ctx
    );
    CPU1_UP.store(1, core::sync::atomic::Ordering::SeqCst);
    // PSCI CPU_OFF: does not return on success.
    let r = smc3(0x8400_0002, 0, 0, 0);
    probe!("cpu1 CPU_OFF returned {:#x}", r);
    loop {
        // SAFETY: WFI has no memory effects.
        unsafe { asm!("wfi", options(nomem, nostack)) };
    }
}

/// PSCI CPU_ON for MPIDR 1; waits up to a second for it to report.
fn start_cpu1() {
    let r = smc3(0xc400_0003, 1, secondary_entry as *const () as u64, 0x5ec0);
    let freq = mrs!("cntfrq_el0");
    let t0 = counter();
    while CPU1_UP.load(core::sync::atomic::Ordering::SeqCst) == 0 && counter() - t0 < freq {}
    probe!(
        "CPU_ON(1) -> {}, cpu1 seen={}",
        r as i64,
        CPU1_UP.load(core::sync::atomic::Ordering::SeqCst)
    );
}

fn counter() -> u64 {
    let v: u64;
    // SAFETY: ISB orders the counter read after the preceding instructions; no side effects.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

const ITERS: u64 = 256;
/// Trapped instructions of the trap benchmark.
const TRAP_BENCH: u64 = 20_000;

/// Counter ticks for ITERS reads of ID_AA64MMFR0_EL1 (trapped by HCR_EL2.TID3 when L0 is KVM).
fn time_idreg() -> u64 {
    let t0 = counter();
    for _ in 0..ITERS {
        let _ = mrs!("id_aa64mmfr0_el1");
    }
    counter() - t0
}

/// Counter ticks for ITERS reads of CurrentEL (never trapped).
fn time_local() -> u64 {
    let t0 = counter();
    for _ in 0..ITERS {
        let _ = mrs!("currentel");
    }
    counter() - t0
}

/// Counter ticks for ITERS HVC calls of SMCCC_VERSION (to L0 when nested, to ourselves on
/// bare metal).
fn time_hvc() -> u64 {
    let t0 = counter();
    for _ in 0..ITERS {
        let _ = smccc(0x8000_0000, false);
    }
    counter() - t0
}

fn be32(dtb: usize, off: usize) -> u32 {
    // SAFETY: the loader passed a DTB in RAM; offsets stay inside its header-declared size
    // (checked by the caller); MMU off makes this Device memory, so read aligned words only.
    u32::from_be(unsafe { core::ptr::read_volatile((dtb + off) as *const u32) })
}

fn byte(dtb: usize, off: usize) -> u8 {
    let w = be32(dtb, off & !3);
    (w >> (8 * (3 - (off & 3)))) as u8
}

/// The rig VMM's exit counter (DT node `exit-counter@b000000`), if the DT has one.
static mut EXIT_COUNTER: usize = 0;

/// Prints the root node's `model` and `compatible` and whether a /hypervisor node exists.
fn dt_hints(dtb: usize) {
    if dtb == 0 || be32(dtb, 0) != 0xd00d_feed {
        probe!("dt: none");
        return;
    }
    let total = be32(dtb, 4) as usize;
    let st = be32(dtb, 8) as usize;
    let strs = be32(dtb, 12) as usize;
    let mut off = st;
    let mut depth = 0i32;
    let mut hyp = false;
    let mut line = [0u8; 96];
    while off + 4 <= total {
        let tok = be32(dtb, off);
        off += 4;
        match tok {
            1 => {
                // BEGIN_NODE: NUL-terminated name, padded to 4.
                let mut n = 0;
                let mut name = [0u8; 16];
                while byte(dtb, off + n) != 0 {
                    if n < 16 {
                        name[n] = byte(dtb, off + n);
                    }
                    n += 1;
                }
                if depth == 1 && n == 10 && &name[..10] == b"hypervisor" {
                    hyp = true;
                }
                if depth == 1 && n >= 12 && &name[..12] == b"exit-counter" {
                    // SAFETY: single-threaded at this point (CPU1 is not started yet).
                    unsafe { EXIT_COUNTER = 0x0b00_0000 };
                }
                off += (n + 4) & !3;
                depth += 1;
            }
            2 => depth -= 1,
            3 => {
                let len = be32(dtb, off) as usize;
                let nameoff = be32(dtb, off + 4) as usize;
                off += 8;
                if depth == 1 {
                    let mut pname = [0u8; 16];
                    let mut n = 0;
                    while n < 16 && byte(dtb, strs + nameoff + n) != 0 {
                        pname[n] = byte(dtb, strs + nameoff + n);
                        n += 1;
                    }
                    let p = &pname[..n];
                    if p == b"model" || p == b"compatible" {
                        let k = len.min(line.len());
                        for (i, c) in line[..k].iter_mut().enumerate() {
                            let b = byte(dtb, off + i);
                            *c = if b == 0 { b',' } else { b };
                        }
                        let s = core::str::from_utf8(&line[..k]).unwrap_or("?");
                        probe!(
                            "dt: {}={}",
                            core::str::from_utf8(p).unwrap_or("?"),
                            s.trim_end_matches(',')
                        );
                    }
                }
                off += (len + 3) & !3;
            }
            4 => {}
            _ => break,
        }
        if depth == 0 && tok == 2 {
            break;
        }
    }
    probe!("dt: hypervisor-node={}", hyp as u8);
}

#[no_mangle]
extern "C" fn probe_main(dtb: usize) -> ! {
    let el = (mrs!("currentel") >> 2) & 3;
    let hcr = mrs!("hcr_el2");
    probe!(
        "start CurrentEL={} HCR_EL2.E2H={} dtb={:#x}",
        el,
        (hcr >> 34) & 1,
        dtb
    );
    probe!("MIDR_EL1={:#018x}", mrs!("midr_el1"));
    probe!("ID_AA64MMFR0_EL1={:#018x}", mrs!("id_aa64mmfr0_el1"));
    probe!("ID_AA64MMFR1_EL1={:#018x}", mrs!("id_aa64mmfr1_el1"));
    probe!("ID_AA64MMFR2_EL1={:#018x}", mrs!("id_aa64mmfr2_el1"));
    probe!("ID_AA64MMFR4_EL1={:#018x}", mrs!("s3_0_c0_c7_4"));
    probe!("ID_AA64PFR0_EL1={:#018x}", mrs!("id_aa64pfr0_el1"));
    dt_hints(dtb);
    // SMCCC_VERSION (0x8000_0000) and PSCI_FEATURES(SMCCC_VERSION): whether the SMC conduit
    // implements SMCCC >= 1.1 at all (a guard before vendor-specific queries).
    probe!(
        "SMC SMCCC_VERSION -> {:#x}; PSCI_FEATURES(SMCCC_VERSION) -> {}",
        smc3(0x8000_0000, 0, 0, 0) as u32,
        smc3(0x8400_000a, 0x8000_0000, 0, 0) as i32
    );
    for (name, smc) in [("HVC", false), ("SMC", true)] {
        let (r, esr) = smccc(0x8600_ff01, smc);
        probe!(
            "{} 0x8600ff01 x0={:#010x} x1={:#010x} x2={:#010x} x3={:#010x} own_esr={:#x}",
            name,
            r[0] as u32,
            r[1] as u32,
            r[2] as u32,
            r[3] as u32,
            esr
        );
    }
    start_cpu1();
    // SAFETY: written once by dt_hints before CPU1 started.
    let ec = unsafe { EXIT_COUNTER };
    if ec != 0 {
        // SAFETY: the VMM's exit-counter device (from the DT); 64-bit reads are its interface.
        let rd = || unsafe { core::ptr::read_volatile(ec as *const u64) };
        let before = rd();
        let _ = time_idreg();
        let after = rd();
        probe!("exits around {} ID reg reads: {}", ITERS, after - before);
    }
    let freq = mrs!("cntfrq_el0");
    let (idreg, local, hvc) = (time_idreg(), time_local(), time_hvc());
    let ns = |t: u64| t.saturating_mul(1_000_000_000) / freq.max(1) / ITERS;
    probe!(
        "timing cntfrq={} iters={} idreg_ns={} local_ns={} hvc_ns={}",
        freq,
        ITERS,
        ns(idreg),
        ns(local),
        ns(hvc)
    );
    // A longer trap loop for runners that stamp lines with L0's CPU time (rig-stamp): the
    // CPU time between these two lines / TRAP_BENCH = L0's cost of one trapped instruction.
    probe!("trap bench: {} ID reg reads start", TRAP_BENCH);
    for _ in 0..TRAP_BENCH {
        let _ = mrs!("id_aa64mmfr0_el1");
    }
    probe!("trap bench: done");
    probe!("SYSTEM_OFF");
    // SAFETY: PSCI SYSTEM_OFF (0x8400_0008) does not return on success.
    let _ = smccc(0x8400_0008, true);
    probe!("SYSTEM_OFF returned");
    loop {
        // SAFETY: WFI has no memory effects.
        unsafe { asm!("wfi", options(nomem, nostack)) };
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    probe!("panic: {}", info);
    loop {
        // SAFETY: WFI has no memory effects.
        unsafe { asm!("wfi", options(nomem, nostack)) };
    }
}
