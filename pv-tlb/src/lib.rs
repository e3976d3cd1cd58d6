//! pv-tlb: decides which TLB maintenance a stage-2 change or a vCPU switch needs.
//!
//! This crate never executes an instruction. The pieces:
//! - [`InvalidationSet`] ([`inval`]): *what* changed in one stage-2 table
//!   (IPA runs with the level of their leaf entries, plus "stage-1 of this
//!   VMID needed"). memops returns one from every operation.
//! - [`plan()`] ([`mod@plan`] module): *how* to invalidate it under a [`Policy`]
//!   (`xen-compat`: one full VMID flush per p2m operation, as upstream Xen;
//!   `targeted`: IPA/range TLBIs in the Arm ARM order of KVM's
//!   `__kvm_tlb_flush_vmid_ipa`, with a full-flush fall-back above a
//!   threshold tuned for bare metal or nested), giving a [`Plan`]: an ordered
//!   list of [`TlbOp`] that the arch layer executes and counts.
//! - [`DeferredFlush`] ([`deferred`]): gathers invalidations across a batch
//!   and across back-to-back single removes, holding the pages involved until
//!   their flush has run, and forcing the flush before a pending IPA is
//!   re-mapped.
//! - [`LastRan`] ([`switch`]): per-pCPU record that plans the local flush
//!   needed when another vCPU of the same VMID runs.
//! - [`model`]: a model TLB that executes plans by each op's architectural
//!   definition, for property tests here, in memops and in hv.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod addr;
pub mod deferred;
pub mod inval;
pub mod model;
pub mod op;
pub mod plan;
pub mod switch;

pub use addr::{Ipa, PhysAddr, VirtAddr, Vmid, PAGE_SHIFT, PAGE_SIZE};
pub use deferred::{
    irq_exit_closes_window, DeferredFlush, DeferredStats, Flush, MAX_IRQ_EXITS_KEPT,
};
pub use inval::{pages_per_entry, InvalidationSet, IpaRange};
pub use op::{TlbCounters, TlbOp, TlbOpKind};
pub use plan::{plan, resolve, retire_plan, Plan, Policy, PolicyChoice};
pub use switch::LastRan;
