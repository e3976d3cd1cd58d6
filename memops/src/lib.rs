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
pub mod frames;
pub mod physmap;
pub mod sim;
pub mod stage2;
pub mod xen;

pub use error::Error;
pub use frames::{Frame, FrameTable};
pub use physmap::{P2mEntry, P2mKind, Physmap, Removed, Teardown};
pub use pv_tlb::{InvalidationSet, Ipa, IpaRange, PhysAddr, Vmid, PAGE_SIZE};
pub use stage2::{is_bbm_required, level_size, Leaf, MemType, S2Attrs, Stage2, TableMem};
pub use xen::{GuestCopy, MemCtx, MemEnv, MemOpOutcome, MemOpRet};

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod xen_tests;
