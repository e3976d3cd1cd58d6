//! hv: a Type-1 hypervisor for arm64 that runs Xen guests.
//!
//! The crate is a library of portable logic (unit-tested on the host against
//! `arch::fake`) plus, on `aarch64-unknown-none`, the arch layer in
//! `arch::aarch64` and the binary in `main.rs`.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod arch;
pub mod bootinfo;
pub mod conring;
pub mod console;
pub mod counters;
pub mod demo;
pub mod domain;
pub mod guest;
pub mod hostdt;
pub mod hypercall;
pub mod idregs;
pub mod irq;
pub mod logger;
pub mod mm;
pub mod options;
pub mod psci;
pub mod ratelimit;
pub mod sched;
pub mod start;
#[cfg(test)]
mod testutil;
pub mod tlb;
pub mod trap;
pub mod vcpu;
pub mod vgic;
pub mod world;
pub mod xen;
