//! `guest-responder`: the domain that must stay alive and responsive while
//! `guest-hostile` attacks hv (built for aarch64-unknown-none). Every
//! ~200 ms (guest CNTVCT) it prints a heartbeat, timing one `xen_version`
//! call and the gap since the last beat, maps and unmaps its shared-info
//! page at a fresh 2 MiB-stride gfn (which needs a new stage-2 table frame:
//! d1's floods must not use them all up), and asks whether d1 still exists
//! (`EVTCHNOP_bind_interdomain` to d1's port 0: -EINVAL while d1 exists,
//! -ESRCH once it is gone, as Xen looks the domain up first). When d1 is
//! gone it prints `responder: d1 gone after <n> beats, max gap <g> ms, max
//! xen_version <x> us, map failures <m>` and powers off; after `responder-max-s=<n>` seconds
//! (default 900) it prints `responder: FAIL d1 still there` instead.
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!("guest-responder is a guest payload: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod guest {
    use guest_rt::{hypercall, println, xen};

    fn cntvct() -> u64 {
        let v: u64;
        // SAFETY: reading the virtual counter has no side effect.
        unsafe { core::arch::asm!("isb", "mrs {0}, cntvct_el0", out(reg) v, options(nostack)) };
        v
    }

    fn cntfrq() -> u64 {
        let v: u64;
        // SAFETY: reading the counter frequency has no side effect.
        unsafe { core::arch::asm!("mrs {0}, cntfrq_el0", out(reg) v, options(nostack)) };
        v
    }

    /// `EVTCHNOP_bind_interdomain { remote_dom = 1, remote_port = 0 }`.
    fn probe_d1() -> i64 {
        let mut b = [0u32; 3];
        b[0] = 1; // remote_dom (u16) + padding
        b[1] = 0; // remote_port
                  // SAFETY: `b` is a live 12-byte struct on the stack that hv reads
                  // and (on success, which port 0 never gives) writes.
        unsafe { hypercall::hypercall(32, [0, b.as_mut_ptr() as u64, 0, 0, 0]) }
    }

    /// `XENMEM_add_to_physmap(XENMAPSPACE_shared_info, 0, gfn)` then
    /// `XENMEM_remove_from_physmap(gfn)`: a fresh 2 MiB-stride gfn needs a
    /// new stage-2 table frame, which another domain must not be able to
    /// take away (issue 9 finding 6). Returns (add, remove) answers.
    fn map_unmap(gfn: u64) -> (i64, i64) {
        // struct xen_add_to_physmap { domid_t domid; u16 size; u32 space; u64 idx; u64 gpfn }
        let mut a = [0u64; 3];
        a[0] = 0x7ff0; // DOMID_SELF, size 0, space 0 (shared_info)
        a[2] = gfn;
        // SAFETY: `a` is a live 24-byte struct on the stack that hv only reads.
        let add = unsafe { hypercall::hypercall(12, [7, a.as_mut_ptr() as u64, 0, 0, 0]) };
        // struct xen_remove_from_physmap { domid_t domid; u64 gpfn }
        let mut r = [0x7ff0u64, gfn];
        // SAFETY: as above (16 bytes, read only).
        let rm = unsafe { hypercall::hypercall(12, [15, r.as_mut_ptr() as u64, 0, 0, 0]) };
        (add, rm)
    }

    macro_rules! msr {
        ($r:literal, $v:expr) => {{
            let v: u64 = $v;
            // SAFETY: this vCPU's GIC CPU-interface or virtual-timer
            // register; interrupts stay masked (PSTATE.I), nothing is taken.
            unsafe { core::arch::asm!(concat!("msr ", $r, ", {0}"), "isb", in(reg) v, options(nostack)) };
        }};
    }

    fn mmio_write(addr: u64, v: u32) {
        // SAFETY: a 32-bit store to a vGIC register at Xen's guest GIC
        // address (MMU off: Device memory); hv emulates it, no Rust object.
        unsafe { (addr as *mut u32).write_volatile(v) };
    }

    /// Virtual timer PPI 27 enabled in this vCPU's redistributor, CPU
    /// interface on; interrupts stay masked, so an expired timer only ends WFI.
    fn vtimer_on() {
        const GICR: u64 = 0x0302_0000;
        mmio_write(0x0300_1000, 0x12); // GICD_CTLR: ARE, EnableGrp1A
        mmio_write(GICR + 0x14, 0); // GICR_WAKER
        mmio_write(GICR + 0x1_0080, u32::MAX); // IGROUPR0
        mmio_write(GICR + 0x1_0100, 1 << 27); // ISENABLER0
        msr!("S3_0_C4_C6_0", 0xf0); // ICC_PMR_EL1
        msr!("S3_0_C12_C12_7", 1); // ICC_IGRPEN1_EL1
    }

    /// Sleep in WFI (the pCPU is free for others) until CNTVCT reaches `t`.
    fn sleep_until(t: u64) {
        while cntvct() < t {
            msr!("cntv_cval_el0", t);
            msr!("cntv_ctl_el0", 1);
            // SAFETY: WFI only waits; the masked timer interrupt ends it.
            unsafe { core::arch::asm!("dsb sy", "wfi", options(nostack, preserves_flags)) };
            let iar: u64;
            // SAFETY: acknowledging the pending interrupt (if any) is intended.
            unsafe { core::arch::asm!("mrs {0}, S3_0_C12_C12_0", out(reg) iar, options(nostack)) };
            let iar = iar & 0xff_ffff;
            if iar < 1020 {
                msr!("S3_0_C12_C12_1", iar); // ICC_EOIR1_EL1
            }
            msr!("cntv_ctl_el0", 0);
        }
    }

    #[no_mangle]
    extern "C" fn guest_main() {
        let dtb = guest_rt::boot_x0();
        let max_s = if (0x4000_0000..0x4100_0000).contains(&dtb) {
            // SAFETY: hv's DTB inside our RAM; 4 KiB of it is enough for /chosen.
            let bytes = unsafe { core::slice::from_raw_parts(dtb as *const u8, 0x1000) };
            guest_hostile::find_arg(bytes, "responder-max-s").unwrap_or(900)
        } else {
            900
        };
        let freq = cntfrq().max(1);
        let beat = freq / 5;
        let start = cntvct();
        let mut last = start;
        let (mut max_gap, mut max_call, mut n) = (0u64, 0u64, 0u64);
        let mut seen_alive = false;
        let mut map_failures = 0u64;
        vtimer_on();
        println!("responder: up, watching d1");
        loop {
            let t0 = cntvct();
            let v = hypercall::xen_version();
            let t1 = cntvct();
            let call_us = (t1 - t0) * 1_000_000 / freq;
            let gap_ms = (t0 - last) * 1000 / freq;
            last = t0;
            if call_us > max_call.max(100_000) || gap_ms > max_gap.max(1_000) {
                println!(
                    "responder: beat {}: slow: xen_version {} us, gap {} ms",
                    n + 1,
                    call_us,
                    gap_ms
                );
            }
            max_gap = max_gap.max(gap_ms);
            max_call = max_call.max(call_us);
            n += 1;
            let d1 = probe_d1();
            let (add, rm) = map_unmap(0x20_0000 + (n % 4096) * 512);
            if (add, rm) != (0, 0) {
                if map_failures == 0 {
                    println!(
                        "responder: beat {}: mapping a page of its own answered add {} remove {}",
                        n, add, rm
                    );
                }
                map_failures += 1;
            }
            if n % 10 == 1 {
                println!(
                    "responder: beat {} gap {} ms xen_version {:#x} in {} us, d1 probe {}",
                    n, gap_ms, v, call_us, d1
                );
            }
            if d1 == -22 {
                seen_alive = true;
            } else if d1 == -3 {
                println!(
                    "responder: d1 gone after {} beats, max gap {} ms, max xen_version {} us, map failures {}{}",
                    n,
                    max_gap,
                    max_call,
                    map_failures,
                    if seen_alive {
                        ""
                    } else {
                        " (d1 was never seen)"
                    }
                );
                break;
            } else {
                println!(
                    "responder: FAIL d1 probe answered {} (expect -22 or -3)",
                    d1
                );
                break;
            }
            if (t1 - start) / freq > max_s {
                println!("responder: FAIL d1 still there after {} s", max_s);
                break;
            }
            sleep_until(t0 + beat);
        }
        let _ = hypercall::shutdown(xen::SHUTDOWN_POWEROFF);
    }
}
