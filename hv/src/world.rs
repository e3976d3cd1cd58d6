//! The world: everything global to hv's guests, owned in one place and
//! reached under one lock (`start::System`'s `shared`): host memory, the
//! domains, VMIDs, the guest page pool, the TLB flush gatherer and the
//! console. The hypercall layer ([`crate::hypercall`]) works on it through
//! its context; the run loop and the domain builder take it for their steps.
//!
//! Layers (DESIGN.md "Layers"): start -> hypercall -> world -> domain ->
//! xen / vgic -> arch. The world imports domains; nothing below imports it.

use alloc::boxed::Box;
use alloc::vec::Vec;

use memops::FrameTable;
use pv_tlb::{DeferredFlush, Policy};

use crate::domain::build::Builder;
use crate::domain::{DomId, Domain, VmidAllocator};
use crate::xen::ConsoleSink;

/// Global state behind hv's `shared` lock.
pub struct World<M> {
    /// Host RAM and stage-2 table memory.
    pub mem: M,
    /// Every domain (live, or shut down and kept for the toolstack).
    pub domains: Vec<Domain>,
    /// VMIDs.
    pub vmids: VmidAllocator,
    /// The guest page pool (hv's frames for guests, carved at boot).
    pub pool: FrameTable,
    /// Pending TLB invalidations and the TLB policy.
    pub flush: DeferredFlush,
    /// hv's console (guest lines and hv's own).
    pub sink: Box<dyn ConsoleSink + Send>,
    /// IPA size of every domain's stage 2.
    pub ipa_bits: u8,
    /// The next domid to try (`createdomain`'s rover, boot modules' d1, d2, ...).
    pub next_domid: usize,
    /// Free bytes of hv's heap (guest-driven allocations are gated on it).
    pub heap_free: fn() -> usize,
}

impl<M> World<M> {
    /// An empty world over `mem`.
    pub fn new(
        mem: M,
        pool: FrameTable,
        policy: Policy,
        sink: Box<dyn ConsoleSink + Send>,
        vmid_bits: u8,
        ipa_bits: u8,
    ) -> Self {
        Self {
            mem,
            domains: Vec::new(),
            vmids: VmidAllocator::new(vmid_bits),
            pool,
            flush: DeferredFlush::new(policy),
            sink,
            ipa_bits,
            next_domid: 1,
            heap_free: crate::mm::heap::free,
        }
    }

    /// Domain `id`.
    #[must_use]
    pub fn domain(&self, id: DomId) -> Option<&Domain> {
        self.domains.iter().find(|d| d.id == id)
    }

    /// Domain `id`, mutable.
    pub fn entry(&mut self, id: DomId) -> Option<&mut Domain> {
        self.domains.iter_mut().find(|d| d.id == id)
    }

    /// The parts a domain is built from ([`crate::domain::build`]).
    pub fn builder(&mut self) -> Builder<'_, M> {
        Builder {
            mem: &mut self.mem,
            domains: &mut self.domains,
            vmids: &mut self.vmids,
            pool: &mut self.pool,
            sink: self.sink.as_mut(),
            ipa_bits: self.ipa_bits,
            next_domid: &mut self.next_domid,
            heap_free: self.heap_free,
        }
    }
}
