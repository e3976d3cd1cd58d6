//! EL1 test guest with two vCPUs (built for aarch64-unknown-none; boot it
//! with the module bootargs `vcpus=2`).
//!
//! vCPU 0 starts vCPU 1 with PSCI `CPU_ON` (checking `ALREADY_ON`,
//! `AFFINITY_INFO` and `INVALID_PARAMETERS` on the way), then the two take
//! [`ROUNDS`] turns printing `ping <i>` / `pong <i>`, handing over with a
//! shared word and `SCHEDOP_yield` (on one pCPU every hand-over is a switch
//! between two vCPUs of the same domain). Then the vGIC: vCPU 1 enables
//! SGI 1 and PPI 27 in its redistributor and waits in WFI (interrupts masked)
//! until vCPU 0 sends SGI 1 through `ICC_SGI1R_EL1`, and again until its own
//! virtual timer fires (checking that hv masked it on its behalf); each time
//! it acknowledges through `ICC_IAR1_EL1` and ends it through `ICC_EOIR1_EL1`.
//! vCPU 1 then calls `CPU_OFF`; vCPU 0 waits for `AFFINITY_INFO` to say OFF,
//! starts vCPU 1 again and polls for it *without trapping* (a plain load in
//! a loop, up to 2 s of counter time: hv must kick an idle pCPU, or preempt
//! the poller, for vCPU 1 to run; issue 9, finding 9), then
//! takes a virtual-timer interrupt of its own (blocked in WFI while it is the
//! only vCPU: hv's pCPU idles with it loaded), prints
//! `guest-smp: all checks passed` (or the failures) and powers off.
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!("guest-smp is a guest payload: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}

/// Hand-overs each way.
pub const ROUNDS: u64 = 8;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod guest {
    use super::ROUNDS;
    use core::fmt::Write;
    use core::sync::atomic::{AtomicU64, Ordering};
    use guest_rt::{hypercall, xen};

    // PSCI function ids (Arm DEN0022).
    const CPU_OFF: u64 = 0x8400_0002;
    const CPU_ON_64: u64 = 0xc400_0003;
    const AFFINITY_INFO_64: u64 = 0xc400_0004;
    const SUCCESS: i64 = 0;
    const INVALID_PARAMETERS: i64 = -2;
    const ALREADY_ON: i64 = -4;
    const ON_PENDING: i64 = -5;
    const SCHEDOP_YIELD: u64 = 0;

    // Xen's guest GICv3 layout (public/arch-arm.h).
    const GICD: usize = 0x0300_1000;
    const GICR1: usize = 0x0302_0000 + 0x2_0000;
    const SGI_INTID: u32 = 1;
    const VTIMER_INTID: u32 = 27;

    /// Whose turn it is: 0 = vCPU 0, 1 = vCPU 1, 2 = vCPU 1 finished the
    /// ping-pong, 3 = vCPU 1 waits for the SGI, 4 = vCPU 1 is done.
    static TURN: AtomicU64 = AtomicU64::new(0);
    /// Checks that failed on vCPU 1 (bit per check).
    static FAILED1: AtomicU64 = AtomicU64::new(0);
    /// Set by vCPU 1's second start (to its context_id).
    static POKED: AtomicU64 = AtomicU64::new(0);

    #[repr(C, align(16))]
    struct Stack([u8; 0x4000]);
    static mut STACK1: Stack = Stack([0; 0x4000]);

    core::arch::global_asm!(
        r#"
        .text
        .global guest_smp_secondary
    guest_smp_secondary:
        msr     daifset, #0xf
        mov     x1, #(3 << 20)          // CPACR_EL1.FPEN: FP/SIMD untrapped
        msr     cpacr_el1, x1
        isb                             // before any FP/SIMD instruction
        adrp    x1, {stack}
        add     x1, x1, :lo12:{stack}
        add     x1, x1, #0x4000         // top of vCPU 1's own stack
        mov     sp, x1
        bl      {main1}
        b       .

        .global guest_smp_poked
    guest_smp_poked:
        msr     daifset, #0xf
        adrp    x1, {stack}
        add     x1, x1, :lo12:{stack}
        add     x1, x1, #0x4000         // vCPU 1's stack again (it was off)
        mov     sp, x1
        bl      {poked}
        b       .
    "#,
        stack = sym STACK1,
        main1 = sym secondary_main,
        poked = sym poked_main,
    );

    extern "C" {
        fn guest_smp_secondary();
        fn guest_smp_poked();
    }

    /// vCPU 1's second start: say it ran, and go off again.
    extern "C" fn poked_main(context: u64) -> ! {
        POKED.store(context, Ordering::Release);
        psci(CPU_OFF, 0, 0, 0);
        loop {
            wfi();
        }
    }

    /// A line on the console (one `console_io` call, so the two vCPUs'
    /// lines never mix).
    struct Line {
        buf: [u8; 120],
        len: usize,
    }

    impl Write for Line {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for &b in s.as_bytes() {
                if self.len < self.buf.len() - 1 {
                    self.buf[self.len] = b;
                    self.len += 1;
                }
            }
            Ok(())
        }
    }

    fn say(args: core::fmt::Arguments<'_>) {
        let mut l = Line {
            buf: [0; 120],
            len: 0,
        };
        let _ = l.write_fmt(args);
        l.buf[l.len] = b'\n';
        let _ = hypercall::console_write(&l.buf[..=l.len]);
    }

    fn psci(fid: u64, a1: u64, a2: u64, a3: u64) -> i64 {
        let mut x0 = fid;
        // SAFETY: SMCCC call through HVC #0 (hv's PSCI conduit for guests):
        // the callee may clobber x0..x17, declared here; PSCI takes values only.
        unsafe {
            core::arch::asm!("hvc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                out("x15") _, out("x16") _, out("x17") _, options(nostack));
        }
        x0 as i64
    }

    fn sched_yield() {
        // SAFETY: SCHEDOP_yield takes no guest memory.
        let _ =
            unsafe { hypercall::hypercall(xen::HYPERVISOR_SCHED_OP, [SCHEDOP_YIELD, 0, 0, 0, 0]) };
    }

    fn wait_turn(want: u64) {
        while TURN.load(Ordering::Acquire) != want {
            sched_yield();
        }
    }

    fn mmio_write(addr: usize, v: u32) {
        // SAFETY: a 32-bit store to a vGIC register at Xen's guest GIC
        // address; hv emulates it (it is no Rust object).
        unsafe { (addr as *mut u32).write_volatile(v) };
    }

    fn mmio_read(addr: usize) -> u32 {
        // SAFETY: as in mmio_write (a load).
        unsafe { (addr as *const u32).read_volatile() }
    }

    macro_rules! mrs {
        ($r:literal) => {{
            let v: u64;
            // SAFETY: reading a system register EL1 may access has no side
            // effect except for ICC_IAR1_EL1, whose acknowledge is intended.
            unsafe { core::arch::asm!(concat!("mrs {0}, ", $r), out(reg) v, options(nostack)) };
            v
        }};
    }

    macro_rules! msr {
        ($r:literal, $v:expr) => {{
            let v: u64 = $v;
            // SAFETY: EL1 GIC CPU-interface / virtual-timer registers of this
            // vCPU; interrupts stay masked (PSTATE.I), nothing is taken.
            unsafe { core::arch::asm!(concat!("msr ", $r, ", {0}"), "isb", in(reg) v, options(nostack)) };
        }};
    }

    fn wfi() {
        // SAFETY: WFI only waits (a masked virtual interrupt still ends it).
        unsafe { core::arch::asm!("dsb sy", "wfi", options(nostack, preserves_flags)) };
    }

    /// This vCPU's GIC CPU interface on: priority mask open, Group 1 enabled.
    fn cpu_interface_on() {
        msr!("S3_0_C4_C6_0", 0xf0); // ICC_PMR_EL1
        msr!("S3_0_C12_C12_7", 1); // ICC_IGRPEN1_EL1
    }

    /// Wait (WFI, interrupts masked) for `intid`, acknowledge and end it.
    /// Returns how many WFIs it took, or `None` if another INTID came.
    fn take(intid: u32) -> Option<u32> {
        for n in 1..=10_000 {
            let iar = mrs!("S3_0_C12_C12_0") as u32 & 0xff_ffff; // ICC_IAR1_EL1
            if iar < 1020 {
                msr!("S3_0_C12_C12_1", u64::from(iar)); // ICC_EOIR1_EL1
                return (iar == intid).then_some(n);
            }
            wfi();
        }
        None
    }

    fn arm_vtimer(ticks: u64) {
        let now = mrs!("cntvct_el0");
        msr!("cntv_cval_el0", now + ticks);
        msr!("cntv_ctl_el0", 1); // ENABLE, not masked
    }

    extern "C" fn secondary_main(context: u64) -> ! {
        let mut failed = 0u64;
        if context != 0x5a5a {
            failed |= 1;
        }
        say(format_args!("guest-smp: vCPU1 up, context {context:#x}"));
        for i in 0..ROUNDS {
            wait_turn(1);
            say(format_args!("pong {i}"));
            TURN.store(if i + 1 == ROUNDS { 2 } else { 0 }, Ordering::Release);
            sched_yield();
        }
        // vGIC: wake this redistributor, SGI 1 and PPI 27 in Group 1, enabled.
        mmio_write(GICR1 + 0x14, 0); // GICR_WAKER.ProcessorSleep = 0
        if mmio_read(GICR1 + 0x14) & 0b110 != 0 {
            failed |= 2;
        }
        let sgi = GICR1 + 0x1_0000;
        mmio_write(sgi + 0x80, u32::MAX); // IGROUPR0
        mmio_write(sgi + 0x100, (1 << SGI_INTID) | (1 << VTIMER_INTID)); // ISENABLER0
        if mmio_read(sgi + 0x100) & (1 << SGI_INTID) == 0 {
            failed |= 4;
        }
        cpu_interface_on();
        TURN.store(3, Ordering::Release);
        match take(SGI_INTID) {
            Some(n) => say(format_args!(
                "guest-smp: vCPU1 took SGI {SGI_INTID} after {n} WFI"
            )),
            None => failed |= 8,
        }
        let freq = mrs!("cntfrq_el0");
        arm_vtimer(freq / 100);
        match take(VTIMER_INTID) {
            Some(n) => say(format_args!(
                "guest-smp: vCPU1 took vtimer PPI 27 after {n} WFI"
            )),
            None => failed |= 16,
        }
        if mrs!("cntv_ctl_el0") & 0b110 != 0b110 {
            failed |= 32; // hv masks a fired timer on the guest's behalf (ISTATUS + IMASK)
        }
        msr!("cntv_ctl_el0", 0);
        FAILED1.store(failed, Ordering::Release);
        TURN.store(4, Ordering::Release);
        psci(CPU_OFF, 0, 0, 0);
        say(format_args!("guest-smp: FAIL CPU_OFF returned"));
        loop {
            wfi();
        }
    }

    struct Checks {
        failed: u32,
    }

    impl Checks {
        fn check(&mut self, name: &str, ok: bool) {
            if ok {
                say(format_args!("PASS {name}"));
            } else {
                say(format_args!("FAIL {name}"));
                self.failed += 1;
            }
        }
    }

    #[no_mangle]
    extern "C" fn guest_main() {
        let mut c = Checks { failed: 0 };
        say(format_args!("guest-smp: vCPU0 up"));
        // The distributor: affinity routing, Group 1 on; 2 redistributors.
        mmio_write(GICD, 0x12);
        let typer1 = mmio_read(GICR1 + 0x8);
        c.check(
            "GICR_TYPER of vCPU 1: Last, processor 1",
            typer1 & (1 << 4) != 0 && (typer1 >> 8) & 0xffff == 1,
        );
        let entry = guest_smp_secondary as *const () as u64;
        c.check(
            "CPU_ON vCPU 1",
            psci(CPU_ON_64, 1, entry, 0x5a5a) == SUCCESS,
        );
        let again = psci(CPU_ON_64, 1, entry, 0);
        c.check(
            "CPU_ON again: ALREADY_ON",
            again == ALREADY_ON || again == ON_PENDING,
        );
        c.check(
            "CPU_ON vCPU 2 of 2: INVALID_PARAMETERS",
            psci(CPU_ON_64, 2, entry, 0) == INVALID_PARAMETERS,
        );
        c.check(
            "AFFINITY_INFO vCPU 1: ON",
            psci(AFFINITY_INFO_64, 1, 0, 0) == 0,
        );
        for i in 0..ROUNDS {
            wait_turn(0);
            say(format_args!("ping {i}"));
            TURN.store(1, Ordering::Release);
            sched_yield();
        }
        wait_turn(3);
        // SGI 1 to vCPU 1: TargetList bit 1, Aff1..3 = 0, INTID 1.
        msr!("S3_0_C12_C11_5", (u64::from(SGI_INTID) << 24) | 0b10); // ICC_SGI1R_EL1
        wait_turn(4);
        let f1 = FAILED1.load(Ordering::Acquire);
        c.check("vCPU 1 got its context_id", f1 & 1 == 0);
        c.check("GICR_WAKER wakes", f1 & 2 == 0);
        c.check("GICR_ISENABLER0 reads back", f1 & 4 == 0);
        c.check("SGI through ICC_SGI1R_EL1 wakes WFI", f1 & 8 == 0);
        c.check(
            "vtimer PPI 27 wakes a blocked, switched-out vCPU",
            f1 & 16 == 0,
        );
        c.check("a fired vtimer is masked for the guest", f1 & 32 == 0);
        let mut off = false;
        for _ in 0..1000 {
            if psci(AFFINITY_INFO_64, 1, 0, 0) == 1 {
                off = true;
                break;
            }
            sched_yield();
        }
        c.check("AFFINITY_INFO vCPU 1: OFF after CPU_OFF", off);
        // CPU_ON, then poll without trapping: no hypercall, no WFI, only
        // loads (of the flag and the virtual counter).
        let freq = mrs!("cntfrq_el0");
        let poked = guest_smp_poked as *const () as u64;
        c.check(
            "CPU_ON vCPU 1 again",
            psci(CPU_ON_64, 1, poked, 0x77) == SUCCESS,
        );
        let t0 = mrs!("cntvct_el0");
        let mut waited = None;
        while mrs!("cntvct_el0") - t0 < 2 * freq {
            if POKED.load(Ordering::Acquire) == 0x77 {
                waited = Some((mrs!("cntvct_el0") - t0) * 1000 / freq);
                break;
            }
            core::hint::spin_loop();
        }
        match waited {
            Some(ms) => say(format_args!(
                "guest-smp: vCPU1 ran {ms} ms after CPU_ON (polled without trapping)"
            )),
            None => say(format_args!(
                "guest-smp: vCPU1 never ran in 2000 ms after CPU_ON"
            )),
        }
        c.check(
            "CPU_ON'd vCPU runs while the caller polls without trapping",
            waited.is_some(),
        );
        let mut off = false;
        for _ in 0..1000 {
            if psci(AFFINITY_INFO_64, 1, 0, 0) == 1 {
                off = true;
                break;
            }
            sched_yield();
        }
        c.check("AFFINITY_INFO vCPU 1: OFF again", off);
        // vCPU 0 alone: its own timer wakes it from WFI (the pCPU idles with it loaded).
        let sgi0 = 0x0302_0000 + 0x1_0000;
        mmio_write(0x0302_0000 + 0x14, 0);
        mmio_write(sgi0 + 0x80, u32::MAX);
        mmio_write(sgi0 + 0x100, 1 << VTIMER_INTID);
        cpu_interface_on();
        arm_vtimer(freq / 100);
        let took = take(VTIMER_INTID);
        c.check("vtimer PPI 27 wakes the only vCPU from WFI", took.is_some());
        msr!("cntv_ctl_el0", 0);
        if c.failed == 0 {
            say(format_args!("guest-smp: all checks passed"));
        } else {
            say(format_args!("guest-smp: {} checks FAILED", c.failed));
        }
    }
}
