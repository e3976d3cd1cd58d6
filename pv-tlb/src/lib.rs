//! pv-tlb: decides which TLB maintenance a stage-2 change or a vCPU switch needs.
//!
//! This crate never executes an instruction: it turns *invalidation sets*
//! (what changed in a stage-2 table) into *plans* (ordered lists of
//! [`TlbOp`]) under a [`policy`](crate) chosen at boot. The arch layer of hv
//! executes plans and counts what it executed.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod addr;
pub mod inval;
pub mod op;

pub use addr::{Ipa, PhysAddr, VirtAddr, Vmid, PAGE_SHIFT, PAGE_SIZE};
pub use inval::{pages_per_entry, InvalidationSet, IpaRange};
pub use op::{TlbCounters, TlbOp, TlbOpKind};
