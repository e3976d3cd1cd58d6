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
use crate::xen::evtchn::{EventDomains, Evtchns};
use crate::xen::hvop::Resources;
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

    /// Domain `id`'s coalescing window closes (DESIGN "When TLB
    /// invalidations run"): run the flushes its single removes kept pending
    /// on `arch`, then give their pages back to the pool. Nothing to do when
    /// the window is closed already (or `id` is gone). True if it flushed
    /// or released anything.
    pub fn close_window(&mut self, arch: &mut dyn crate::arch::Arch, id: DomId) -> bool {
        let Some(vmid) = self.domain(id).map(Domain::vmid) else {
            return false;
        };
        let f = self.flush.close_window(vmid);
        if f.is_empty() {
            return false;
        }
        crate::tlb::execute_ops(f.plan.ops(), arch);
        if let Err(e) = self.pool.release(&f.released) {
            log::error!("d{id}: releasing pages after a window flush: {e}");
        }
        true
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

/// The domains as event channels see them.
pub struct Doms<'a>(pub &'a mut [Domain]);

impl EventDomains for Doms<'_> {
    fn events(&mut self, d: u16) -> Option<&mut Evtchns> {
        self.0
            .iter_mut()
            .find(|x| x.id == d)
            .map(|x| &mut x.xen.evtchn)
    }
}

/// A domain has left `domains` for good (it is being torn down): its event
/// channels' peers go back to unbound (Xen's `evtchn_destroy`), and the
/// grants it still had mapped are unpinned in their granters (Xen's
/// `gnttab_release_mappings`; the page references go with its physmap).
/// The granters' `GTF_reading`/`GTF_writing` bits are cleared by
/// [`grant_clears`] (no host memory is at hand here).
pub fn domain_destroyed(domains: &mut [Domain], gone: &Domain) {
    crate::xen::evtchn::domain_destroyed(&mut Doms(domains), gone.id, &gone.xen.evtchn);
    for m in gone.xen.grant.mappings() {
        let granter = domains
            .iter_mut()
            .find(|d| d.id == m.dom && d.xen.grant.serial() == m.table);
        if let Some(rd) = granter {
            let readonly = m.flags & crate::xen::grant::gntmap::READONLY != 0;
            let clear = rd.xen.grant.unpin(m.gref, readonly);
            rd.xen.grant.queue_clear(m.gref, clear);
        }
    }
}

/// Clear the `GTF_*` bits [`domain_destroyed`] queued in the granters of a
/// destroyed mapper (called where host memory is at hand: the run loop
/// right after a destroy, and every `grant_table_op`).
pub fn grant_clears<M: crate::arch::PhysMem + ?Sized>(domains: &mut [Domain], mem: &mut M) {
    for d in domains.iter_mut().filter(|d| d.xen.grant.has_pending()) {
        d.xen.grant.apply_pending(mem);
    }
}

/// Inject the event-channel upcall PPI ([`crate::xen::evtchn::GUEST_EVTCHN_PPI`]) for
/// each `(domid, vcpu)` recorded during a call, through the domain's vGIC.
pub fn deliver_upcalls(domains: &[Domain], upcalls: &[(u16, u32)]) {
    for &(d, v) in upcalls {
        if let Some(dom) = domains.iter().find(|x| x.id == d) {
            if let Err(e) = dom.vgic.inject(v, dom.xen.upcall_ppi) {
                crate::glog!(d, Debug, "d{d}v{v}: event upcall not injected: {e:?}");
            }
        }
    }
}

/// What hv holds right now: `domains` with their event channels, the guest
/// page `pool`, the VMIDs in use, hv's heap (`heap_free` bytes) and its own
/// frame allocator (when it is set up).
#[must_use]
pub fn gather(
    domains: &[Domain],
    pool: &memops::FrameTable,
    vmids_in_use: usize,
    heap_free: usize,
) -> Resources {
    let evtchns: usize = domains
        .iter()
        .map(|d| {
            (1..crate::xen::evtchn::MAX_PORTS)
                .filter(|&p| d.xen.evtchn.port(p).is_some())
                .count()
        })
        .sum();
    let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Resources {
        pool_free: pool.free_frames(),
        pool_total: pool.total_frames(),
        hv_frames_free: crate::mm::frame::try_frames()
            .map_or(u64::MAX, |f| wide(f.lock().free_count())),
        vmids_in_use: wide(vmids_in_use),
        domains: wide(domains.len()),
        evtchns_in_use: wide(evtchns),
        heap_free: wide(heap_free),
        pool_used: pool.total_frames().saturating_sub(pool.free_frames()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_counts_domains_vmids_pool_and_event_channels() {
        use crate::arch::fake::FakeMem;
        use crate::domain::{Domain, VmidAllocator};
        use crate::xen::domu::DomainXen;
        use crate::xen::evtchn::PortState;
        use memops::FrameTable;
        use pv_tlb::PhysAddr;

        let mut mem = FakeMem::new(0x8000_0000, 0x400_0000);
        let mut pool = FrameTable::new(PhysAddr(0x8000_0000), 0x3000);
        let mut vmids = VmidAllocator::new(4);
        let empty = gather(&[], &pool, vmids.in_use(), 12345);
        assert_eq!(
            (empty.pool_free, empty.pool_total, empty.pool_used),
            (0x3000, 0x3000, 0)
        );
        assert_eq!(
            (empty.vmids_in_use, empty.domains, empty.evtchns_in_use),
            (0, 0, 0)
        );
        assert_eq!(empty.heap_free, 12345);
        let mut domains = alloc::vec::Vec::new();
        for id in [1, 2] {
            let mut d = Domain::create(id, 4 << 20, 40, &mut vmids, &mut mem, &mut pool).unwrap();
            d.xen = DomainXen::setup(id, 2, d.physmap_mut(), &mut mem, &mut pool).unwrap();
            domains.push(d);
        }
        let two = gather(&domains, &pool, vmids.in_use(), 1);
        assert_eq!((two.vmids_in_use, two.domains), (2, 2));
        assert_eq!(two.pool_used, 0x3000 - two.pool_free);
        assert!(two.pool_used >= 2 * (4 << 20) / 4096, "{two:?}");
        // Each domain has hv's console port.
        assert_eq!(two.evtchns_in_use, 2);
        let p = domains[0]
            .xen
            .evtchn
            .alloc(PortState::Unbound { remote: 2 }, 0)
            .unwrap();
        assert_eq!(gather(&domains, &pool, vmids.in_use(), 1).evtchns_in_use, 3);
        domains[0].xen.evtchn.free(p).unwrap();
        assert_eq!(gather(&domains, &pool, vmids.in_use(), 1).evtchns_in_use, 2);
    }
}
