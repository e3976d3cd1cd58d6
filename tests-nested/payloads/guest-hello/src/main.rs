//! EL1 test guest (built for aarch64-unknown-none).
//!
//! Prints a greeting through `console_io`, prints hv's `xen_version` answer,
//! and checks error paths of Xen's Arm ABI: an unassigned hypercall
//! number returns -ENOSYS, `HVC` with an immediate other than 0xEA1 arrives in
//! the guest's own vector table as an undefined instruction (ESR_EL1.EC = 0),
//! and `console_io` with a buffer outside guest RAM, like `SCHEDOP_shutdown`
//! with a pointer outside it, returns -EFAULT. It then
//! prints `guest-hello: all checks passed` (or which checks failed) and powers
//! the domain off with `SCHEDOP_shutdown(SHUTDOWN_poweroff)`.
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!("guest-hello is a guest payload: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod guest {
    use guest_rt::{hypercall, println, vectors, xen};

    /// An IPA below guest RAM (0x4000_0000) and away from Xen's guest MMIO map.
    const OUTSIDE_RAM: u64 = 0x1000_0000;

    /// Vector entry for a synchronous exception from the current EL with SP_EL1.
    const VEC_CURRENT_SPX_SYNC: u64 = 4;

    struct Checks {
        failed: [&'static str; 8],
        nfailed: usize,
    }

    impl Checks {
        fn record(&mut self, name: &'static str, ok: bool) {
            if ok {
                println!("PASS {}", name);
            } else {
                println!("FAIL {}", name);
                if let Some(slot) = self.failed.get_mut(self.nfailed) {
                    *slot = name;
                }
                self.nfailed += 1;
            }
        }
    }

    fn check_xen_version(c: &mut Checks) {
        let raw = hypercall::xen_version();
        match xen::XenVersion::from_raw(raw) {
            Some(v) => {
                println!("xen_version = {}.{}", v.major, v.minor);
                c.record("xen_version answers major.minor", v.major != 0);
            }
            None => {
                println!("xen_version returned {}", raw);
                c.record("xen_version answers major.minor", false);
            }
        }
    }

    fn check_unknown_hypercall(c: &mut Checks) {
        // SAFETY: no argument is used as an address; hv must refuse the
        // unassigned number without touching guest memory.
        let r = unsafe { hypercall::hypercall(xen::HYPERVISOR_UNASSIGNED, [0; 5]) };
        println!(
            "hypercall {} returned {} (expect {})",
            xen::HYPERVISOR_UNASSIGNED,
            r,
            xen::ENOSYS
        );
        c.record("unknown hypercall -> -ENOSYS", r == xen::ENOSYS);
    }

    fn check_wrong_immediate(c: &mut Checks) {
        vectors::install();
        let before = vectors::count();
        let hvc_pc: u64;
        // SAFETY: `hvc #1` is not a Xen hypercall: hv must inject an undefined
        // instruction exception, taken at EL1 through the vector table just
        // installed. The resume slot is armed with label 2 first, so the
        // handler (which saves and restores the registers it uses) returns
        // right after the HVC whatever ELR_EL1 hv reports. Registers a
        // misbehaving hv might change are declared clobbered.
        unsafe {
            core::arch::asm!(
                "adr {t}, 2f",
                "str {t}, [{slot}]",
                "adr {h}, 3f",
                "3:",
                "hvc #1",
                "2:",
                t = out(reg) _,
                h = out(reg) hvc_pc,
                slot = in(reg) vectors::resume_slot(),
                out("x0") _,
                out("x1") _,
                out("x2") _,
                out("x3") _,
                out("x4") _,
                out("x16") _,
                options(nostack),
            );
        }
        vectors::disarm();
        let taken = vectors::count().wrapping_sub(before);
        match vectors::last() {
            Some(e) if taken == 1 => {
                let at = if e.elr == hvc_pc {
                    "the HVC"
                } else if e.elr == hvc_pc.wrapping_add(4) {
                    "the instruction after the HVC"
                } else {
                    "an unrelated address"
                };
                println!(
                    "hvc #1 -> exception in vector {} ESR_EL1={:#x} (EC {:#04x}), ELR_EL1 at {}",
                    e.index,
                    e.esr,
                    xen::esr_ec(e.esr),
                    at
                );
                c.record(
                    "hvc #1 -> undefined instruction in own vector",
                    e.index == VEC_CURRENT_SPX_SYNC && xen::esr_ec(e.esr) == xen::EC_UNKNOWN,
                );
            }
            _ => {
                println!("hvc #1 -> {} exceptions taken (expect 1)", taken);
                c.record("hvc #1 -> undefined instruction in own vector", false);
            }
        }
    }

    fn check_bad_console_buffer(c: &mut Checks) {
        // SAFETY: the buffer address is outside guest RAM, so it is no Rust
        // object; CONSOLEIO_write would only read it, and hv must refuse it.
        let r = unsafe {
            hypercall::hypercall(
                xen::HYPERVISOR_CONSOLE_IO,
                [xen::CONSOLEIO_WRITE, 16, OUTSIDE_RAM, 0, 0],
            )
        };
        println!(
            "console_io with buffer {:#x} returned {} (expect {})",
            OUTSIDE_RAM,
            r,
            xen::EFAULT
        );
        c.record("console_io bad buffer -> -EFAULT", r == xen::EFAULT);
    }

    fn check_bad_shutdown_pointer(c: &mut Checks) {
        // SAFETY: the struct pointer is outside guest RAM, so it is no Rust
        // object; SCHEDOP_shutdown would only read it, and hv must refuse it
        // (and keep this domain running).
        let r = unsafe {
            hypercall::hypercall(
                xen::HYPERVISOR_SCHED_OP,
                [xen::SCHEDOP_SHUTDOWN, OUTSIDE_RAM, 0, 0, 0],
            )
        };
        println!(
            "sched_op(SCHEDOP_shutdown, {:#x}) returned {} (expect {})",
            OUTSIDE_RAM,
            r,
            xen::EFAULT
        );
        c.record("SCHEDOP_shutdown bad pointer -> -EFAULT", r == xen::EFAULT);
    }

    /// Entry point called by guest-rt's `_start`.
    #[no_mangle]
    extern "C" fn guest_main() {
        println!("hello from guest-hello");
        let mut c = Checks {
            failed: [""; 8],
            nfailed: 0,
        };
        check_xen_version(&mut c);
        check_unknown_hypercall(&mut c);
        check_wrong_immediate(&mut c);
        check_bad_console_buffer(&mut c);
        check_bad_shutdown_pointer(&mut c);
        if c.nfailed == 0 {
            println!("guest-hello: all checks passed");
        } else {
            println!("guest-hello: {} check(s) FAILED:", c.nfailed);
            for name in c.failed.iter().take(c.nfailed) {
                println!("guest-hello:   {}", name);
            }
        }
        let r = hypercall::shutdown(xen::SHUTDOWN_POWEROFF);
        println!("FAIL SCHEDOP_shutdown returned {}", r);
        hypercall::shutdown_forever(xen::SHUTDOWN_CRASH);
    }
}
