//! Runtime shared by hv's EL1 test guests.
//!
//! On `aarch64-unknown-none` it provides the arm64 Image header and entry code
//! (`_start`, placed first by `guest.ld`), Xen hypercalls (`HVC #0xEA1`,
//! x16 = number, arguments in x0..x4, result in x0), a line-buffered console
//! over `console_io`, an EL1 exception vector table that records what it
//! catches, and a panic handler that reports and shuts the domain down.
//!
//! The ABI constants, decoders and the line buffer are portable and
//! unit-tested on the host. A payload binary defines
//! `#[no_mangle] extern "C" fn guest_main()`, which `_start` calls after
//! setting up the stack, FP/SIMD access and `.bss`; when it returns the domain
//! shuts down with `SHUTDOWN_poweroff`.
#![cfg_attr(not(test), no_std)]

pub mod line;
pub mod xen;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod console;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod entry;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use entry::boot_x0;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod hypercall;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod vectors;
