//! `guest-hostile`: hv's in-guest negative tests (built for
//! aarch64-unknown-none), in the style of Hafnium's test/vmapi: named tests,
//! each printing `PASS <name>` or `FAIL <name> (got .., expect ..)` through
//! `console_io`, then a seeded random phase that prints every call
//! (`R <i> nr=.. a=[..]`) *before* making it, so a crash is reproducible from
//! the serial log (boot it again with the same `hostile-seed=`).
//!
//! What it attacks (expected answers are Xen's, from xen/common and
//! xen/arch/arm at 4.20): every hypercall number 0..=64 with bad pointers
//! (outside RAM, MMIO, hv's addresses, unaligned), huge counts and unknown
//! sub-ops; event channels and the grant table; `vcpu_op`, `multicall`,
//! `memory_op`; PSCI with bad arguments (HVC and SMC); trapped system
//! registers (ID, debug, PMU, ACTLR); the vGIC at odd offsets and widths
//! through its own stage-1 tables that map the GIC as Normal memory (so
//! unaligned accesses reach hv) and as Device memory. With `vcpus=2` it
//! also starts vCPU 1 and polls for it without trapping (issue 9 finding 9).
//!
//! The module bootargs `hostile-seed=<n>` and `hostile-calls=<n>` set the
//! random phase (defaults 1 and 2000). The guest ends with
//! `guest-hostile: done: <p> passed, <f> failed` and powers off.
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!("guest-hostile is a guest payload: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod guest;
