//! memops: stage-2 translation tables and Xen memory operations.
//!
//! Table memory is reached only through the [`TableMem`] trait, so this crate
//! needs no `unsafe`: hv implements it over identity-mapped RAM, host tests
//! over a simulated memory ([`sim::SimTableMem`]).
//!
//! Nothing here executes TLB maintenance: every operation returns the
//! [`InvalidationSet`] it needs, which `pv_tlb` turns into a plan (except the
//! synchronous break-before-make flushes, which go through
//! [`TableMem::invalidate_now`]).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod error;
pub mod sim;
pub mod stage2;

pub use error::Error;
pub use pv_tlb::{InvalidationSet, Ipa, IpaRange, PhysAddr, Vmid, PAGE_SIZE};
pub use stage2::{is_bbm_required, level_size, MemType, S2Attrs, Stage2, TableMem};

#[cfg(test)]
mod tests;
