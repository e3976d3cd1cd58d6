//! Deferred flush gathering.
//!
//! # Why deferring is safe
//! After a stage-2 leaf is removed, a stale TLB entry lets the domain that
//! had the mapping keep reaching the *old page* through the *old IPA* until
//! the flush runs. That is harmless as long as:
//! 1. the old page is not reused: not freed to the allocator, not scrubbed,
//!    not given to another domain. [`DeferredFlush`] therefore *holds* the
//!    reference of every page whose mapping is pending and hands it back
//!    ([`Flush::released`]) only in the same [`Flush`] as the plan that
//!    invalidates it; the caller executes the plan first, then drops the
//!    references (memops refcounts). An allocator that runs dry calls
//!    [`DeferredFlush::flush_all`] to get held pages back.
//! 2. the old IPA is not mapped again: a new entry for an IPA with a stale
//!    cached translation could be ignored by the TLB (or conflict with it).
//!    Every map must first call [`DeferredFlush::before_map`], which flushes
//!    the VMID if the range overlaps its pending set.
//! 3. the VMID is not handed to another domain before it is flushed
//!    ([`DeferredFlush::retire_vmid`] on destroy, before the VMID is freed).
//!
//! Nothing else is observable: the page still belongs to the same owners
//! and still holds what the domain last wrote, exactly as if its access had
//! happened before the unmap. This is the same reasoning as Xen's p2m, which
//! defers its flush to `p2m_write_unlock` and keeps freed pages on a list
//! until then, and Linux's `mmu_gather` (`tlb_gather_mmu` .. `tlb_finish_mmu`:
//! pages are freed only after the flush). So the *latest* point a pending
//! invalidation must run is the first of: a map overlapping it, the release
//! of one of its pages, the VMID's reuse.
//!
//! # The coalescing window (hv's rule)
//! hv closes pending invalidations earlier than the three rules above
//! require, at points where a guest can notice:
//! - a hypercall that is not coalescable ends: every batch (the whole
//!   batch, continuations included, is one plan) and every other memory_op;
//! - a single `XENMEM_remove_from_physmap` is coalescable: its invalidation
//!   stays pending and the caller's *coalescing window* opens
//!   ([`DeferredFlush::end_hypercall`] with `coalescable`). Back-to-back
//!   single removes (unmodified dom0 kernels unmap one page per call) thus
//!   collapse into one plan;
//! - the window of a caller closes ([`DeferredFlush::close_window`]) at the
//!   caller's next exit (hv: the exit of the vCPU that made the removes; a
//!   sibling vCPU learns of them only through memory, which no exit of its
//!   own orders, and reaches through a stale entry only a held page) that
//!   is not another remove (or the
//!   continuation of a preempted call): any other hypercall (a console line,
//!   a domctl), WFI (a WFE, which hv traps only to yield, keeps it), an abort, a trapped system register (not an SGI write), PSCI, and a
//!   physical-interrupt exit after which the vCPU takes an interrupt other
//!   than its own virtual timer ([`irq_exit_closes_window`]); and before any
//!   vCPU of the caller is put (descheduled). So by the time the caller can
//!   observe anything else (print, learn of another agent's action through
//!   an interrupt, block, fault), the flush has run, and the stale-TLB test
//!   (remove, print a line, read: the read must fault) holds on both paths;
//! - a physical-interrupt exit that gives the caller nothing new keeps the
//!   window: one hv handles itself (its own timer, a kick meant for another
//!   vCPU, a vGIC maintenance interrupt), or the caller's own virtual timer
//!   firing (its tick: it learns only that its counter, which it reads
//!   without an exit anyway, passed the deadline it set). An unmodified
//!   dom0 unmapping a loaded kernel page by page takes dozens of ticks on
//!   the way (measured: 121 of 124 IRQ closes in 4 `xl create`s were dom0's
//!   own tick), each of which used to cost one plan. At most
//!   [`MAX_IRQ_EXITS_KEPT`] IRQ exits in a row keep it;
//! - a cap on held pages ([`DeferredFlush::set_max_pending_pages`]) and on
//!   gathered runs ([`MAX_PENDING_RANGES`]), and any failure to grow the
//!   gathered lists (allocation is fallible here: a guest cannot make hv
//!   panic by making it gather).
//!
//! Operations whose caller relies on the effect at once (a permission
//! reduction for dirty tracking, a grant unmap the granter waits for) call
//! [`DeferredFlush::flush_vmid`] themselves.
//!
//! # Sharing
//! hv keeps one gatherer for the whole machine (behind its lock): pending
//! invalidations are per VMID, and every plan it returns uses broadcast
//! (inner-shareable) operations, so it may run on any pCPU.
//!
//! # xen-compat
//! Under [`Policy::XenCompat`] nothing is deferred: every
//! [`record`](DeferredFlush::record) (one p2m operation) returns its full
//! flush at once, as upstream Xen flushes at the end of every p2m operation.

use alloc::vec::Vec;

use crate::addr::{Ipa, PhysAddr, Vmid, PAGE_SIZE};
use crate::inval::InvalidationSet;
use crate::plan::{full_flush, plan, retire_plan, Plan, Policy};

/// A plan to execute, then the pages whose references may be dropped.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[must_use = "the plan must be executed and the pages released"]
pub struct Flush {
    /// Execute first.
    pub plan: Plan,
    /// Then drop one reference on each of these frames.
    pub released: Vec<PhysAddr>,
}

impl Flush {
    /// True if there is nothing to execute and nothing to release.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty() && self.released.is_empty()
    }

    /// Append `other` (its plan runs after `self`'s).
    pub fn append(&mut self, other: Flush) {
        self.plan.append(other.plan);
        self.released.extend(other.released);
    }
}

/// Why pending invalidations were flushed (for counters).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DeferredStats {
    /// Non-empty sets recorded (p2m operations that needed an invalidation).
    pub recorded: u64,
    /// Plans produced (each one invalidation sequence).
    pub plans: u64,
    /// Flushes forced by a map overlapping a pending IPA.
    pub forced_by_map: u64,
    /// Flushes forced by the held-page cap.
    pub forced_by_cap: u64,
    /// Flushes at the end of a hypercall.
    pub at_hypercall_end: u64,
    /// Explicit flushes ([`DeferredFlush::flush_vmid`] / [`DeferredFlush::flush_all`]).
    pub explicit: u64,
    /// Flushes at the close of a caller's coalescing window.
    pub at_window_close: u64,
    /// Pages covered by the gathered sets planned (scatter evidence, with
    /// the three counters below).
    pub planned_pages: u64,
    /// Runs of those sets as recorded (contiguous only with the run before).
    pub planned_runs: u64,
    /// Runs of those sets once sorted by IPA and merged.
    pub planned_sorted_runs: u64,
    /// Sum over the gathered sets of their span, in pages: lowest to highest
    /// IPA covered.
    pub planned_span_pages: u64,
}

#[derive(Clone, Debug)]
struct Pending {
    vmid: Vmid,
    set: InvalidationSet,
    held: Vec<PhysAddr>,
    /// Callers whose coalescing window keeps this pending.
    windows: Vec<Vmid>,
    /// `set.pages()`, kept up to date (saturating).
    pages: u64,
}

/// Consecutive physical-interrupt exits of a caller that may keep its
/// window open ([`irq_exit_closes_window`]): a caller that stopped removing
/// but runs on without any other exit has its invalidations run at the 16th
/// (64 ms at Linux's HZ=250 tick).
pub const MAX_IRQ_EXITS_KEPT: u32 = 16;

/// Does a physical-interrupt exit of the caller's vCPU close its coalescing
/// window? `new` = interrupts that became pending for that vCPU since it
/// last entered the guest (what it will take when it resumes), `own_timer`
/// = how many of them are its own virtual timer firing, `kept` = IRQ exits
/// in a row that kept the window already.
///
/// Closes if the vCPU will take any interrupt other than its own timer (a
/// device's SPI, an event-channel upcall, an SGI: another agent's action it
/// learns of), or at the [`MAX_IRQ_EXITS_KEPT`]-th IRQ exit in a row. An
/// exit for an interrupt hv handles itself (its own timer, a kick for
/// another vCPU, a maintenance interrupt) gives the guest nothing, and its
/// own timer tells it only that its counter passed the deadline it set,
/// which it can read at any time without an exit (`CNTVCT_EL0`).
#[must_use]
pub fn irq_exit_closes_window(new: u64, own_timer: u64, kept: u32) -> bool {
    new > own_timer || kept + 1 >= MAX_IRQ_EXITS_KEPT
}

/// Gathers invalidations across p2m operations and hypercalls.
#[derive(Clone, Debug)]
pub struct DeferredFlush {
    policy: Policy,
    pending: Vec<Pending>,
    max_pending_pages: u64,
    stats: DeferredStats,
}

/// Default cap on pages held by pending invalidations (256 MiB).
pub const DEFAULT_MAX_PENDING_PAGES: u64 = 65536;

/// Cap on separate IPA runs gathered for one VMID (a guest removing every
/// other page): above it the gathered plan would be a full flush anyway
/// (the nested threshold is 16384 TLBIs), and the list stays below 400 KiB.
pub const MAX_PENDING_RANGES: usize = 16384;

impl DeferredFlush {
    /// An empty gatherer planning under `policy`.
    #[must_use]
    pub const fn new(policy: Policy) -> Self {
        Self {
            policy,
            pending: Vec::new(),
            max_pending_pages: DEFAULT_MAX_PENDING_PAGES,
            stats: DeferredStats {
                recorded: 0,
                plans: 0,
                forced_by_map: 0,
                forced_by_cap: 0,
                at_hypercall_end: 0,
                explicit: 0,
                at_window_close: 0,
                planned_pages: 0,
                planned_runs: 0,
                planned_sorted_runs: 0,
                planned_span_pages: 0,
            },
        }
    }

    /// The policy plans are made under.
    #[must_use]
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> DeferredStats {
        self.stats
    }

    /// Flush a VMID once the pages it holds exceed `n`.
    pub fn set_max_pending_pages(&mut self, n: u64) {
        self.max_pending_pages = n;
    }

    fn take(&mut self, vmid: Vmid) -> Flush {
        let Some(i) = self.pending.iter().position(|p| p.vmid == vmid) else {
            return Flush::default();
        };
        let mut p = self.pending.swap_remove(i);
        let runs = p.set.ranges().len() as u64;
        // Sorted and merged in place: the plan covers runs, not the order
        // the removes came in.
        p.set.normalize();
        let pl = plan(vmid, &p.set, &self.policy);
        if !pl.is_empty() {
            self.stats.plans += 1;
        }
        let s = &mut self.stats;
        s.planned_pages = s.planned_pages.saturating_add(p.pages);
        s.planned_runs = s.planned_runs.saturating_add(runs);
        s.planned_sorted_runs = s
            .planned_sorted_runs
            .saturating_add(p.set.ranges().len() as u64);
        s.planned_span_pages = s.planned_span_pages.saturating_add(p.set.span_pages());
        Flush {
            plan: pl,
            released: p.held,
        }
    }

    /// Record the invalidation one p2m operation of `vmid` needs, handing
    /// over one reference on each frame of `held` (pages that must not be
    /// reused before the invalidation ran).
    ///
    /// Xen-compat: returns the full flush at once (with `held` released).
    /// Targeted: gathers; returns a flush only when the held-page cap is hit.
    pub fn record(&mut self, vmid: Vmid, set: &InvalidationSet, held: &[PhysAddr]) -> Flush {
        if !set.is_empty() {
            self.stats.recorded += 1;
        }
        if self.policy.is_xen_compat() {
            let pl = plan(vmid, set, &self.policy);
            if !pl.is_empty() {
                self.stats.plans += 1;
            }
            return Flush {
                plan: pl,
                released: held.to_vec(),
            };
        }
        if set.is_empty() && held.is_empty() {
            return Flush::default();
        }
        let p = match self.pending.iter_mut().position(|p| p.vmid == vmid) {
            Some(i) => &mut self.pending[i],
            None => {
                self.pending.push(Pending {
                    vmid,
                    set: InvalidationSet::new(),
                    held: Vec::new(),
                    windows: Vec::new(),
                    pages: 0,
                });
                let n = self.pending.len() - 1;
                &mut self.pending[n]
            }
        };
        let full = p.set.ranges().len() >= MAX_PENDING_RANGES;
        if full
            || p.held.try_reserve(held.len()).is_err()
            || p.set.try_reserve(set.ranges().len()).is_err()
        {
            // Too many runs, or no memory to keep gathering: flush now
            // (always correct).
            self.stats.forced_by_cap += 1;
            let mut f = self.take(vmid);
            let pl = plan(vmid, set, &self.policy);
            if !pl.is_empty() {
                self.stats.plans += 1;
            }
            f.append(Flush {
                plan: pl,
                released: held.to_vec(),
            });
            return f;
        }
        p.set.merge(set);
        p.pages = p.pages.saturating_add(set.pages());
        p.held.extend_from_slice(held);
        if p.held.len() as u64 > self.max_pending_pages || p.pages > self.max_pending_pages {
            self.stats.forced_by_cap += 1;
            return self.take(vmid);
        }
        Flush::default()
    }

    /// A hypercall of `caller` that recorded invalidations of `target`
    /// (often the same VMID) ends. `coalescable` is true only for a single
    /// `XENMEM_remove_from_physmap` and for a preempted call that will be
    /// continued: `target`'s pending invalidation stays and `caller`'s
    /// coalescing window opens (closed by [`DeferredFlush::close_window`]).
    /// Otherwise `target`'s pending invalidations are flushed now.
    pub fn end_hypercall(&mut self, caller: Vmid, target: Vmid, coalescable: bool) -> Flush {
        if coalescable && !self.policy.is_xen_compat() {
            if let Some(p) = self.pending.iter_mut().find(|p| p.vmid == target) {
                if !p.windows.contains(&caller) {
                    p.windows.push(caller);
                }
            }
            return Flush::default();
        }
        let f = self.take(target);
        if !f.is_empty() {
            self.stats.at_hypercall_end += 1;
        }
        f
    }

    /// `caller`'s coalescing window closes (its next exit that is not a
    /// coalescable remove, or before one of its vCPUs is put): flush every
    /// pending invalidation its window kept.
    pub fn close_window(&mut self, caller: Vmid) -> Flush {
        let mut out = Flush::default();
        while let Some(v) = self
            .pending
            .iter()
            .find(|p| p.windows.contains(&caller))
            .map(|p| p.vmid)
        {
            out.append(self.take(v));
            self.stats.at_window_close += 1;
        }
        out
    }

    /// True if `caller`'s coalescing window keeps an invalidation pending.
    #[must_use]
    pub fn window_open(&self, caller: Vmid) -> bool {
        self.pending.iter().any(|p| p.windows.contains(&caller))
    }

    /// Must be called before mapping `size` bytes at `ipa` in `vmid`'s
    /// stage-2: flushes the VMID's pending invalidations if they overlap.
    pub fn before_map(&mut self, vmid: Vmid, ipa: Ipa, size: u64) -> Flush {
        let end = ipa.0.saturating_add(size.max(PAGE_SIZE));
        let overlaps = self.pending.iter().any(|p| {
            p.vmid == vmid
                && p.set
                    .ranges()
                    .iter()
                    .any(|r| r.base.0 < end && r.end().0 > ipa.0)
        });
        if !overlaps {
            return Flush::default();
        }
        self.stats.forced_by_map += 1;
        self.take(vmid)
    }

    /// Flush everything pending for `vmid` now.
    pub fn flush_vmid(&mut self, vmid: Vmid) -> Flush {
        let f = self.take(vmid);
        if !f.is_empty() {
            self.stats.explicit += 1;
        }
        f
    }

    /// `vmid`'s stage 2 is being torn down (its domain is destroyed; every
    /// leaf is going, then its tables, and the VMID is freed after this):
    /// one plan for the VMID covering `mapped` (every leaf the stage-2 still
    /// maps and one IPA of every table left empty: memops'
    /// `Physmap::teardown`) and whatever was pending for it, releasing its
    /// held pages and `held` after it ([`crate::plan::retire_plan`]).
    ///
    /// Xen-compat: ONE full flush, as Xen's `p2m_teardown`. Targeted: range
    /// (or per-page) IPA TLBIs over those runs plus `VMALLE1IS` for the VMID,
    /// or one full flush when that would exceed the policy's threshold; so a
    /// retire is never more than one full flush. A 128 MiB domU is one or
    /// two `RIPAS2E1IS` + `VMALLE1IS` with FEAT_TLBIRANGE. If the gathered
    /// list cannot grow (allocation is fallible here), one full flush.
    ///
    /// Why not KVM's way (no flush at free; a VMID generation, the whole
    /// TLB flushed once at rollover before VMIDs are reused): hv's
    /// `VmidAllocator` hands VMIDs out round-robin with no generation (8-bit
    /// VMIDs on some CPUs), so a lazy scheme still needs a whole-VMID flush
    /// before each reuse, or `ALLE1IS` at a rollover, both emulated by L0
    /// KVM with a walk of the whole IPA range: the stall only moves to a
    /// later create. And a freed VMID would no longer be clean for
    /// `Stage2Vmids` and the page-release rule (pages go back to the pool
    /// only after their invalidation ran). Invalidating what the domain
    /// mapped costs a few TLBIs, bounded by the same threshold, and keeps
    /// every invariant local to the destroy.
    pub fn retire_vmid(
        &mut self,
        vmid: Vmid,
        mapped: &InvalidationSet,
        held: &[PhysAddr],
    ) -> Flush {
        let (mut set, mut released) = match self.pending.iter().position(|p| p.vmid == vmid) {
            Some(i) => {
                let p = self.pending.swap_remove(i);
                (p.set, p.held)
            }
            None => (InvalidationSet::new(), Vec::new()),
        };
        let plan = if self.policy.is_xen_compat() || set.try_reserve(mapped.ranges().len()).is_err()
        {
            full_flush(vmid)
        } else {
            set.merge(mapped);
            set.normalize();
            retire_plan(vmid, &set, &self.policy)
        };
        released.extend_from_slice(held);
        self.stats.explicit += 1;
        self.stats.plans += 1;
        Flush { plan, released }
    }

    /// Flush everything pending for every VMID now (allocator pressure, idle).
    pub fn flush_all(&mut self) -> Flush {
        let mut out = Flush::default();
        while let Some(v) = self.pending.first().map(|p| p.vmid) {
            out.append(self.take(v));
            self.stats.explicit += 1;
        }
        out
    }

    /// True if an invalidation of the page containing `ipa` in `vmid` is pending.
    #[must_use]
    pub fn is_pending(&self, vmid: Vmid, ipa: Ipa) -> bool {
        self.pending
            .iter()
            .any(|p| p.vmid == vmid && p.set.contains(ipa))
    }

    /// True if `pa` is held by a pending invalidation.
    #[must_use]
    pub fn holds(&self, pa: PhysAddr) -> bool {
        self.pending.iter().any(|p| p.held.contains(&pa))
    }

    /// Pages held by pending invalidations (all VMIDs).
    #[must_use]
    pub fn held_pages(&self) -> u64 {
        self.pending.iter().map(|p| p.held.len() as u64).sum()
    }

    /// True if nothing is pending.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::TlbOpKind;

    const T: Policy = Policy::Targeted {
        has_range: true,
        nested: true,
    };

    fn page(ipa: u64) -> InvalidationSet {
        let mut s = InvalidationSet::new();
        s.add(Ipa(ipa), 1, 3);
        s
    }

    #[test]
    fn xen_compat_flushes_every_record() {
        let mut d = DeferredFlush::new(Policy::XenCompat);
        let mut n = 0;
        for i in 0..10u64 {
            let f = d.record(
                Vmid(1),
                &page(0x4000_0000 + i * PAGE_SIZE),
                &[PhysAddr(i << 12)],
            );
            n += f.plan.count(TlbOpKind::Vmalls12e1is);
            assert_eq!(f.released, [PhysAddr(i << 12)]);
            assert!(d.end_hypercall(Vmid(1), Vmid(1), true).is_empty());
        }
        assert_eq!(n, 10);
        assert!(d.is_idle());
    }

    /// What a 128 MiB domU has mapped when it is destroyed (Xen's guest
    /// layout): 32 grant frames, the magic pages, its RAM as 2 MiB blocks
    /// and a few 4 KiB pages, and one table left empty by earlier removes.
    fn domu_mapped() -> InvalidationSet {
        let mut s = InvalidationSet::new();
        s.add(Ipa(0x3800_0000), 32, 3);
        s.add(Ipa(0x3900_0000), 5, 3);
        s.add(Ipa(0x4000_0000), 63 * 512, 2);
        s.add(Ipa(0x47e0_0000), 500, 3);
        s.add_walk(Ipa(0x4840_0000));
        s
    }

    const POLICIES: [Policy; 5] = Policy::ALL;

    fn full(vmid: Vmid) -> [crate::TlbOp; 4] {
        use crate::TlbOp;
        [
            TlbOp::DsbIshst,
            TlbOp::Vmalls12e1is { vmid },
            TlbOp::DsbIsh,
            TlbOp::Isb,
        ]
    }

    /// Every entry the VMID can have cached, from the mapped leaves, the
    /// pending (already removed) pages and combined entries; VMID 9 alike.
    fn filled(mapped: &InvalidationSet, pending: &[u64]) -> crate::model::ModelTlb {
        use crate::model::{ModelTlb, S2Entry};
        let mut m = ModelTlb::new(2);
        for vmid in [Vmid(3), Vmid(9)] {
            for r in mapped.ranges() {
                let level = if r.level == 0 { 3 } else { r.level };
                let step = crate::inval::pages_per_entry(level) * PAGE_SIZE;
                let mut ipa = r.base.0;
                while ipa < r.end().0 {
                    let leaf = S2Entry {
                        vmid,
                        base: Ipa(ipa),
                        level,
                        pa: PhysAddr(ipa + 0x1_0000_0000),
                    };
                    m.fill((ipa >> 12) as usize % 2, 0, Ipa(ipa), leaf);
                    ipa += step;
                }
            }
            for &ipa in pending {
                let leaf = S2Entry {
                    vmid,
                    base: Ipa(ipa),
                    level: 3,
                    pa: PhysAddr(ipa + 0x2_0000_0000),
                };
                m.fill(1, 1, Ipa(ipa), leaf);
            }
        }
        m
    }

    #[test]
    fn retiring_a_domu_is_a_few_range_tlbis_under_targeted_with_ranges() {
        use crate::TlbOp;
        for nested in [false, true] {
            let policy = Policy::Targeted {
                has_range: true,
                nested,
            };
            let mut d = DeferredFlush::new(policy);
            let mapped = domu_mapped();
            let f = d.retire_vmid(Vmid(3), &mapped, &[PhysAddr(0x2000)]);
            let ops = f.plan.ops();
            assert_eq!(f.plan.count(TlbOpKind::Vmalls12e1is), 0, "{ops:?}");
            assert_eq!(f.plan.count(TlbOpKind::Alle1is), 0);
            // 0x3800_0000..0x4840_1000 is within one covering range.
            assert_eq!(f.plan.count(TlbOpKind::Ripas2e1is), 1, "{ops:?}");
            assert_eq!(f.plan.count(TlbOpKind::Ipas2e1is), 0, "{ops:?}");
            assert_eq!(f.plan.count(TlbOpKind::Vmalle1is), 1);
            assert!(ops.contains(&TlbOp::Vmalle1is { vmid: Vmid(3) }));
            assert!(crate::model::check_barriers(ops), "{ops:?}");
            // No level hint: the tables go too.
            assert!(ops.iter().all(|o| !matches!(
                o,
                TlbOp::Ipas2e1is { ttl: Some(_), .. } | TlbOp::Ripas2e1is { ttl: Some(_), .. }
            )));
            assert!(ops.iter().all(|o| match o {
                TlbOp::Ipas2e1is { vmid, .. }
                | TlbOp::Ripas2e1is { vmid, .. }
                | TlbOp::Vmalle1is { vmid } => *vmid == Vmid(3),
                _ => o.kind().is_none(),
            }));
            assert_eq!(f.released, [PhysAddr(0x2000)]);
            let mut m = filled(&mapped, &[]);
            m.execute_all(0, ops);
            assert!(
                m.entries().iter().all(|e| e.1 == Vmid(9)),
                "left of VMID 3: {:?}",
                m.entries().iter().filter(|e| e.1 == Vmid(3)).count()
            );
            assert!(!m.entries().is_empty(), "VMID 9 untouched");
            assert!(d.is_idle());
        }
    }

    #[test]
    fn retiring_without_ranges_is_per_entry_up_to_the_threshold() {
        use crate::TlbOp;
        // Blocks and a few pages: one IPAS2E1IS per entry, VMALLE1IS once.
        let mut small = InvalidationSet::new();
        small.add(Ipa(0x3900_0000), 5, 3);
        small.add(Ipa(0x4000_0000), 64 * 512, 2);
        small.add_walk(Ipa(0x4840_0000));
        for nested in [false, true] {
            let policy = Policy::Targeted {
                has_range: false,
                nested,
            };
            let mut d = DeferredFlush::new(policy);
            let f = d.retire_vmid(Vmid(3), &small, &[]);
            assert_eq!(f.plan.count(TlbOpKind::Vmalls12e1is), 0);
            assert_eq!(f.plan.count(TlbOpKind::Ripas2e1is), 0);
            assert_eq!(f.plan.count(TlbOpKind::Ipas2e1is), 5 + 64 + 1);
            assert_eq!(f.plan.count(TlbOpKind::Vmalle1is), 1);
            let mut m = filled(&small, &[]);
            m.execute_all(1, f.plan.ops());
            assert!(m.entries().iter().all(|e| e.1 == Vmid(9)));
        }
        // 128 MiB of 4 KiB pages: 32 768 TLBIs, over both thresholds: one
        // full flush (never more than one).
        let mut pages = InvalidationSet::new();
        pages.add(Ipa(0x4000_0000), 32768, 3);
        for nested in [false, true] {
            let mut d = DeferredFlush::new(Policy::Targeted {
                has_range: false,
                nested,
            });
            let f = d.retire_vmid(Vmid(3), &pages, &[PhysAddr(0x5000)]);
            assert_eq!(f.plan.ops(), full(Vmid(3)), "nested {nested}");
            assert_eq!(f.released, [PhysAddr(0x5000)]);
        }
        // Just at the bare threshold: targeted; one more entry: full flush.
        let mut at = InvalidationSet::new();
        at.add(Ipa(0x4000_0000), crate::plan::BARE_THRESHOLD, 3);
        let bare = Policy::Targeted {
            has_range: false,
            nested: false,
        };
        let f = DeferredFlush::new(bare).retire_vmid(Vmid(3), &at, &[]);
        assert_eq!(f.plan.count(TlbOpKind::Vmalls12e1is), 0);
        assert_eq!(
            f.plan.count(TlbOpKind::Ipas2e1is),
            crate::plan::BARE_THRESHOLD
        );
        at.add_walk(Ipa(0x8000_0000));
        let f = DeferredFlush::new(bare).retire_vmid(Vmid(3), &at, &[]);
        assert_eq!(f.plan.ops(), full(Vmid(3)));
        let _ = TlbOp::Isb;
    }

    #[test]
    fn retiring_under_xen_compat_is_one_full_flush() {
        let mut d = DeferredFlush::new(Policy::XenCompat);
        let first = d.record(Vmid(3), &page(0x4000_0000), &[PhysAddr(0x1000)]);
        assert_eq!(first.plan.ops(), full(Vmid(3)));
        let f = d.retire_vmid(Vmid(3), &domu_mapped(), &[PhysAddr(0x2000)]);
        assert_eq!(f.plan.ops(), full(Vmid(3)));
        assert_eq!(f.released, [PhysAddr(0x2000)]);
        // Even with nothing mapped: the VMID is flushed once.
        let f = d.retire_vmid(Vmid(4), &InvalidationSet::new(), &[]);
        assert_eq!(f.plan.ops(), full(Vmid(4)));
        assert!(d.is_idle());
    }

    /// What was pending for the retired VMID (removed earlier, stale entries
    /// possibly cached) is merged into the retire plan, its held pages are
    /// released with it, exactly once; other VMIDs' pending stay.
    #[test]
    fn retiring_merges_the_vmids_pending_and_releases_every_held_page_once() {
        for policy in POLICIES {
            let mut d = DeferredFlush::new(policy);
            let removed = [0x4800_0000u64, 0x6000_0000, 0x7fff_f000];
            let mut released = Vec::new();
            for (i, &ipa) in removed.iter().enumerate() {
                let f = d.record(Vmid(3), &page(ipa), &[PhysAddr(0x1000 * (i as u64 + 1))]);
                released.extend(f.released);
                assert!(d.end_hypercall(Vmid(1), Vmid(3), true).is_empty());
            }
            let _ = d.record(Vmid(9), &page(0x4000_0000), &[PhysAddr(0x9000)]);
            let mapped = domu_mapped();
            let f = d.retire_vmid(Vmid(3), &mapped, &[PhysAddr(0x8000)]);
            released.extend(f.released.iter().copied());
            released.sort_unstable();
            assert_eq!(
                released,
                [
                    PhysAddr(0x1000),
                    PhysAddr(0x2000),
                    PhysAddr(0x3000),
                    PhysAddr(0x8000)
                ],
                "{policy:?}"
            );
            assert!(f.plan.count(TlbOpKind::Vmalls12e1is) <= 1, "{policy:?}");
            let mut m = filled(&mapped, &removed);
            m.execute_all(0, f.plan.ops());
            assert!(
                m.entries().iter().all(|e| e.1 == Vmid(9)),
                "{policy:?}: {:?}",
                f.plan
            );
            // Nothing of VMID 3 is pending (nor is its window kept open);
            // VMID 9's invalidation still is.
            assert!(removed.iter().all(|&i| !d.is_pending(Vmid(3), Ipa(i))));
            assert!(!d.window_open(Vmid(1)));
            if !policy.is_xen_compat() {
                assert!(d.is_pending(Vmid(9), Ipa(0x4000_0000)));
                assert!(d.holds(PhysAddr(0x9000)));
                // With ranges, pending pages 0x6000_0000 and 0x7fff_f000
                // are beyond the first 1 GiB span: a second range op.
                if matches!(
                    policy,
                    Policy::Targeted {
                        has_range: true,
                        ..
                    }
                ) {
                    assert_eq!(f.plan.count(TlbOpKind::Vmalls12e1is), 0);
                    assert!(f.plan.count(TlbOpKind::Ripas2e1is) <= 2, "{:?}", f.plan);
                }
            }
        }
    }

    #[test]
    fn targeted_coalesces_back_to_back_singles() {
        let mut d = DeferredFlush::new(T);
        for i in 0..1000u64 {
            let f = d.record(
                Vmid(1),
                &page(0x4000_0000 + i * PAGE_SIZE),
                &[PhysAddr(i << 12)],
            );
            assert!(f.is_empty());
            assert!(d.end_hypercall(Vmid(1), Vmid(1), true).is_empty());
        }
        assert!(d.holds(PhysAddr(999 << 12)));
        assert!(d.is_pending(Vmid(1), Ipa(0x4000_0000)));
        assert!(!d.is_pending(Vmid(2), Ipa(0x4000_0000)));
        assert_eq!(d.held_pages(), 1000);
        // Unrelated map: no flush. Overlapping map: flush.
        assert!(d
            .before_map(Vmid(1), Ipa(0x5000_0000), PAGE_SIZE)
            .is_empty());
        assert!(d
            .before_map(Vmid(2), Ipa(0x4000_0000), PAGE_SIZE)
            .is_empty());
        let f = d.before_map(Vmid(1), Ipa(0x4000_0000 + 10 * PAGE_SIZE), PAGE_SIZE);
        assert_eq!(f.released.len(), 1000);
        assert_eq!(f.plan.count(TlbOpKind::Vmalls12e1is), 0);
        assert!(f.plan.tlbis() <= 1 + 4, "{:?}", f.plan);
        assert!(d.is_idle());
        assert_eq!(d.stats().forced_by_map, 1);
        assert_eq!(d.stats().recorded, 1000);
        assert_eq!(d.stats().plans, 1);
    }

    #[test]
    fn non_coalescable_hypercall_end_flushes_and_cap_bounds_held_pages() {
        let mut d = DeferredFlush::new(T);
        let _ = d.record(Vmid(1), &page(0x1000), &[PhysAddr(0x1000)]);
        let _ = d.record(Vmid(2), &page(0x1000), &[PhysAddr(0x2000)]);
        let f = d.end_hypercall(Vmid(1), Vmid(1), false);
        assert_eq!(f.released, [PhysAddr(0x1000)]);
        assert!(!d.is_idle());
        let f = d.flush_all();
        assert_eq!(f.released, [PhysAddr(0x2000)]);
        d.set_max_pending_pages(4);
        let mut flushed = 0;
        for i in 0..10u64 {
            let f = d.record(Vmid(1), &page(i << 12), &[PhysAddr(i << 12)]);
            if !f.is_empty() {
                flushed += 1;
                assert_eq!(f.released.len(), 5);
            }
        }
        assert_eq!(flushed, 2);
        assert_eq!(d.stats().forced_by_cap, 2);
    }

    #[test]
    fn scattered_removes_are_capped_in_runs() {
        let mut d = DeferredFlush::new(T);
        let mut flushed = 0;
        for i in 0..(MAX_PENDING_RANGES as u64 + 10) {
            // Every other page: one run each.
            let f = d.record(Vmid(1), &page(i * 2 * PAGE_SIZE), &[PhysAddr(i << 12)]);
            if !f.is_empty() {
                flushed += 1;
                assert_eq!(f.released.len(), MAX_PENDING_RANGES + 1);
            }
        }
        assert_eq!(flushed, 1);
        assert_eq!(d.held_pages(), 9);
    }

    #[test]
    fn irq_exits_close_only_for_other_interrupts_or_at_the_bound() {
        // Nothing new (hv's own timer, a kick for another vCPU): keeps.
        assert!(!irq_exit_closes_window(0, 0, 0));
        // Its own tick only: keeps.
        assert!(!irq_exit_closes_window(1, 1, 3));
        // Its tick and one more interrupt, or another interrupt alone: closes.
        assert!(irq_exit_closes_window(2, 1, 0));
        assert!(irq_exit_closes_window(1, 0, 0));
        // The bound: the MAX_IRQ_EXITS_KEPT-th exit in a row closes.
        assert!(!irq_exit_closes_window(0, 0, MAX_IRQ_EXITS_KEPT - 2));
        assert!(irq_exit_closes_window(0, 0, MAX_IRQ_EXITS_KEPT - 1));
    }

    /// Singles removed in pairs from the top down (Linux's privcmd unmap
    /// order): one run each as recorded, one run once sorted, and the plan
    /// is one range whatever the order.
    #[test]
    fn the_order_of_singles_does_not_split_the_plan() {
        let mut d = DeferredFlush::new(T);
        let n = 11_922u64;
        let mut hi = n;
        while hi > 0 {
            let lo = hi.saturating_sub(2);
            for i in lo..hi {
                let _ = d.record(
                    Vmid(1),
                    &page(0x9000_0000 + i * PAGE_SIZE),
                    &[PhysAddr(i << 12)],
                );
                assert!(d.end_hypercall(Vmid(1), Vmid(1), true).is_empty());
            }
            hi = lo;
        }
        let f = d.close_window(Vmid(1));
        assert_eq!(f.released.len() as u64, n);
        assert_eq!(f.plan.count(TlbOpKind::Vmalls12e1is), 0);
        assert_eq!(f.plan.count(TlbOpKind::Ipas2e1is), 0);
        assert_eq!(f.plan.count(TlbOpKind::Ripas2e1is), 1, "{:?}", f.plan);
        assert_eq!(f.plan.tlbis(), 2);
        let s = d.stats();
        assert_eq!((s.planned_pages, s.planned_runs), (n, n / 2));
        assert_eq!((s.planned_sorted_runs, s.planned_span_pages), (1, n));
    }

    #[test]
    fn window_closes_only_for_its_caller() {
        let mut d = DeferredFlush::new(T);
        // d0 (VMID 1) removes pages of d1 (VMID 2) and of itself, one per call.
        for i in 0..4u64 {
            let _ = d.record(Vmid(2), &page(i << 12), &[PhysAddr(i << 12)]);
            assert!(d.end_hypercall(Vmid(1), Vmid(2), true).is_empty());
            let _ = d.record(Vmid(1), &page(i << 12), &[PhysAddr(0x10_0000 + (i << 12))]);
            assert!(d.end_hypercall(Vmid(1), Vmid(1), true).is_empty());
        }
        // d3 (VMID 3) removes one of its own pages.
        let _ = d.record(Vmid(3), &page(0), &[PhysAddr(0x20_0000)]);
        assert!(d.end_hypercall(Vmid(3), Vmid(3), true).is_empty());
        assert!(d.window_open(Vmid(1)) && d.window_open(Vmid(3)));
        assert!(!d.window_open(Vmid(2)));
        // Another domain's exit closes nothing of d0's.
        assert!(d.close_window(Vmid(2)).is_empty());
        let f = d.close_window(Vmid(1));
        assert_eq!(f.released.len(), 8);
        assert_eq!(f.plan.count(TlbOpKind::Vmalls12e1is), 0);
        assert!(f.plan.count(TlbOpKind::Ipas2e1is) + f.plan.count(TlbOpKind::Ripas2e1is) >= 2);
        assert!(!d.window_open(Vmid(1)));
        assert!(!d.is_pending(Vmid(2), Ipa(0)) && !d.is_pending(Vmid(1), Ipa(0)));
        assert!(d.is_pending(Vmid(3), Ipa(0)));
        assert_eq!(d.stats().at_window_close, 2);
        assert_eq!(d.close_window(Vmid(3)).released, [PhysAddr(0x20_0000)]);
        assert!(d.is_idle());
        // Xen-compat never leaves a window open.
        let mut x = DeferredFlush::new(Policy::XenCompat);
        let f = x.record(Vmid(1), &page(0), &[PhysAddr(0)]);
        assert_eq!(f.plan.count(TlbOpKind::Vmalls12e1is), 1);
        assert!(x.end_hypercall(Vmid(1), Vmid(1), true).is_empty());
        assert!(!x.window_open(Vmid(1)));
    }
}
