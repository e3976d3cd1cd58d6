//! `guest-responder`: the domain that must stay alive and responsive while
//! `guest-hostile` attacks hv (built for aarch64-unknown-none). Every
//! ~200 ms (guest CNTVCT) it prints a heartbeat, timing one `xen_version`
//! call and the gap since the last beat, and asks whether d1 still exists
//! (`EVTCHNOP_bind_interdomain` to d1's port 0: -EINVAL while d1 exists,
//! -ESRCH once it is gone, as Xen looks the domain up first). When d1 is
//! gone it prints `responder: d1 gone after <n> beats, max gap <g> ms, max
//! xen_version <x> us` and powers off; after `responder-max-s=<n>` seconds
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
        println!("responder: up, watching d1");
        loop {
            let t0 = cntvct();
            let v = hypercall::xen_version();
            let t1 = cntvct();
            let call_us = (t1 - t0) * 1_000_000 / freq;
            let gap_ms = (t0 - last) * 1000 / freq;
            last = t0;
            max_gap = max_gap.max(gap_ms);
            max_call = max_call.max(call_us);
            n += 1;
            let d1 = probe_d1();
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
                    "responder: d1 gone after {} beats, max gap {} ms, max xen_version {} us{}",
                    n,
                    max_gap,
                    max_call,
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
            while cntvct() < t0 + beat {
                // SCHEDOP_yield: let others run while we wait for the next beat.
                // SAFETY: SCHEDOP_yield takes no guest memory.
                let _ = unsafe { hypercall::hypercall(xen::HYPERVISOR_SCHED_OP, [0, 0, 0, 0, 0]) };
            }
        }
        let _ = hypercall::shutdown(xen::SHUTDOWN_POWEROFF);
    }
}
