//! memops: stage-2 translation tables, page ownership and Xen memory operations.
//!
//! # Layers
//! - [`stage2`]: one domain's stage-2 table ([`Stage2`]: map / unmap /
//!   protect / lookup / walk, 1 GiB and 2 MiB blocks where alignment allows,
//!   block splitting, break-before-make). Table memory is reached only
//!   through the [`TableMem`] trait, so this crate needs no `unsafe`: hv
//!   implements it over its identity map of RAM, host tests over
//!   [`sim::SimTableMem`].
//! - [`frames`]: the pool of frames given to domains, with an owner and a
//!   reference count per frame ([`FrameTable`]). A foreign mapping holds a
//!   reference; a reference is dropped only after the TLB invalidation of
//!   the mapping it stood for has run.
//! - [`physmap`]: a domain's [`Physmap`]: its [`Stage2`] plus what each gfn
//!   maps (own RAM, a foreign page, the shared-info page).
//! - [`xen`]: Xen's `memory_op` commands over physmaps ([`MemCtx::memory_op`]),
//!   with Xen's numbers and arm64 struct layouts, plus hv's
//!   `XENMEM_remove_from_physmap_batch` (63). Guest memory goes through
//!   [`GuestCopy`], the domains through [`MemEnv`].
//! - [`xen_abi`]: Xen's public ABI structures that hv and memops read from
//!   or write to guest memory, written once (typed, `#[repr(C)]`, size and
//!   offsets asserted at compile time, little-endian `from_bytes` /
//!   `to_bytes`); hv re-exports them from `hv::xen::abi`.
//!
//! # TLB maintenance
//! Nothing here executes TLB maintenance. Every table change returns the
//! [`InvalidationSet`] it needs; the `memory_op` handlers feed those sets,
//! with the frame references they must keep alive, to `pv_tlb`'s
//! [`pv_tlb::DeferredFlush`] and return the resulting [`pv_tlb::Flush`]
//! (a plan to execute, then frames to release). The one synchronous case is
//! break-before-make inside a table update, which goes through
//! [`TableMem::invalidate_now_for`].
//!
//! # Errors
//! One [`Error`] enum with context in each variant; [`Error::xen_errno`]
//! maps it to Xen's errno at the hypercall boundary.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod error;
pub mod frames;
pub mod physmap;
pub mod sim;
pub mod stage2;
pub mod xen;
pub mod xen_abi;

pub use error::Error;
pub use frames::{Frame, FrameTable};
pub use physmap::{P2mEntry, P2mKind, Physmap, Removed, Teardown};
pub use pv_tlb::{InvalidationSet, Ipa, IpaRange, PhysAddr, Vmid, PAGE_SIZE};
pub use stage2::{
    is_bbm_required, level_size, Leaf, MemType, S2Attrs, Stage2, Stage2View, TableMem,
};
pub use xen::{GuestCopy, MemCtx, MemEnv, MemOpOutcome, MemOpRet};

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod xen_tests;
