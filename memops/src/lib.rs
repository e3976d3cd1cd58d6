//! memops: stage-2 translation tables and Xen memory operations.
//!
//! Table memory is reached only through the [`TableMem`] trait, so this crate
//! needs no `unsafe`: hv implements it over identity-mapped RAM, host tests
//! over a simulated memory.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub use pv_tlb::{Ipa, PhysAddr, Vmid, PAGE_SIZE};
