//! EL1 test guest (built for aarch64-unknown-none) for hv's stage-2 fault path.
//!
//! Prints one line, then loads from an IPA outside its RAM. hv must log the
//! stage-2 fault and end this domain only: nothing after the load may print.
//! If hv instead returns or injects an abort, the guest says so loudly.
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!("guest-fault is a guest payload: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod guest {
    use guest_rt::{hypercall, println, vectors, xen};

    /// An IPA below guest RAM (0x4000_0000) and away from Xen's guest MMIO map.
    const OUTSIDE_RAM: u64 = 0x1000_0000;

    /// Entry point called by guest-rt's `_start`.
    #[no_mangle]
    extern "C" fn guest_main() {
        // Any abort hv injects instead of ending the domain gets reported.
        vectors::install();
        println!(
            "guest-fault: reading IPA {:#x} outside guest RAM",
            OUTSIDE_RAM
        );
        // SAFETY: the address is outside guest RAM, so it aliases no Rust
        // object; the load is expected to fault at stage 2 and never complete.
        let v = unsafe { core::ptr::read_volatile(OUTSIDE_RAM as *const u64) };
        println!(
            "guest-fault: ERROR still running after the load (read {:#x})",
            v
        );
        hypercall::shutdown_forever(xen::SHUTDOWN_CRASH);
    }
}
