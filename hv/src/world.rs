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

use crate::domain::{DomId, Domain, DomainError, VmidAllocator};
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

    /// Make room for one more domain before anything is built: at most
    /// [`crate::domain::MAX_DOMAINS`], and the list's growth (it doubles)
    /// plus [`crate::mm::heap::DOMAIN_BYTES`] must fit above the heap's
    /// reserve; the slot is then reserved fallibly. ~2048 `createdomain`
    /// calls once grew the list to 7 MB past a 64 KiB check and hv's heap ran
    /// out (issue 9 finding 5).
    ///
    /// # Errors
    /// [`DomainError::TooManyDomains`] or [`DomainError::HeapFull`].
    pub fn reserve_domain_slot(&mut self) -> Result<(), DomainError> {
        let domains = &mut self.domains;
        if domains.len() >= crate::domain::MAX_DOMAINS {
            return Err(DomainError::TooManyDomains);
        }
        let grow = if domains.len() == domains.capacity() {
            // RawVec's amortized growth: twice the capacity, at least 4.
            (domains.capacity() * 2).max(4) * core::mem::size_of::<Domain>()
        } else {
            0
        };
        let need = grow.saturating_add(crate::mm::heap::DOMAIN_BYTES);
        if !crate::mm::heap::room((self.heap_free)(), need) {
            return Err(DomainError::HeapFull { bytes: 0, need });
        }
        domains
            .try_reserve(1)
            .map_err(|_| DomainError::HeapFull { bytes: 0, need })
    }
}
