//! Executes TLB maintenance plans through [`Arch::tlb_op`] and counts what ran.
//!
//! pv-tlb decides *which* operations a change needs; this module is the one
//! place in hv that hands them to the CPU, in order, and counts every executed
//! operation by [`TlbOpKind`] in global counters (all pCPUs together), so the
//! console, tests and benchmarks can report them.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use pv_tlb::inval::InvalidationSet;
use pv_tlb::plan::plan;
use pv_tlb::{Ipa, PhysAddr, Policy, TlbCounters, TlbOp, TlbOpKind, Vmid};
use spin::{Mutex, Once};

use crate::arch::Arch;

const KINDS: usize = TlbOpKind::ALL.len();

/// Counters of executed operations: by kind, plus barriers.
pub struct TlbStats {
    counts: [AtomicU64; KINDS],
    barriers: AtomicU64,
    plans: AtomicU64,
}

impl Default for TlbStats {
    fn default() -> Self {
        Self::new()
    }
}

impl TlbStats {
    /// All counters at zero.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            counts: [const { AtomicU64::new(0) }; KINDS],
            barriers: AtomicU64::new(0),
            plans: AtomicU64::new(0),
        }
    }

    /// How many non-empty plans (calls of the `execute*` functions with at
    /// least one op) ran.
    #[must_use]
    pub fn plans(&self) -> u64 {
        self.plans.load(Ordering::Relaxed)
    }

    /// Zero every counter.
    pub fn reset(&self) {
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
        self.barriers.store(0, Ordering::Relaxed);
        self.plans.store(0, Ordering::Relaxed);
    }

    fn record(&self, op: &TlbOp) {
        match op.kind() {
            Some(kind) => self.counts[kind as usize].fetch_add(1, Ordering::Relaxed),
            None => self.barriers.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// How many operations of `kind` were executed.
    #[must_use]
    pub fn count(&self, kind: TlbOpKind) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// How many barriers (`DSB`/`ISB`) were executed.
    #[must_use]
    pub fn barriers(&self) -> u64 {
        self.barriers.load(Ordering::Relaxed)
    }

    /// A snapshot as a [`TlbCounters`].
    #[must_use]
    pub fn snapshot(&self) -> TlbCounters {
        let mut c = TlbCounters::default();
        for kind in TlbOpKind::ALL {
            let op = representative(kind);
            // TlbCounters only offers `record`; counts stay modest (one per
            // executed TLBI), so replaying them is cheap.
            for _ in 0..self.count(kind) {
                c.record(&op);
            }
        }
        c
    }
}

/// hv's counters: every operation executed on any pCPU since boot.
pub static STATS: TlbStats = TlbStats::new();

/// Execute `ops` one by one, in order, on this CPU, counting each in `stats`.
pub fn execute_ops_counted(ops: &[TlbOp], arch: &mut (impl Arch + ?Sized), stats: &TlbStats) {
    if ops.is_empty() {
        return;
    }
    stats.plans.fetch_add(1, Ordering::Relaxed);
    for op in ops {
        arch.tlb_op(*op);
        stats.record(op);
    }
}

/// Execute `ops` one by one, in order, on this CPU, counting each in [`STATS`].
pub fn execute_ops(ops: &[TlbOp], arch: &mut (impl Arch + ?Sized)) {
    execute_ops_counted(ops, arch, &STATS);
}

/// Execute every operation of a plan (anything that yields [`TlbOp`]s in
/// order), counting each in [`STATS`].
pub fn execute<I>(plan: I, arch: &mut (impl Arch + ?Sized))
where
    I: IntoIterator<Item = TlbOp>,
{
    let mut counted = false;
    for op in plan {
        if !counted {
            STATS.plans.fetch_add(1, Ordering::Relaxed);
            counted = true;
        }
        arch.tlb_op(op);
        STATS.record(&op);
    }
}

/// A snapshot of hv's global counters.
#[must_use]
pub fn snapshot() -> TlbCounters {
    STATS.snapshot()
}

/// Which VMID each loaded stage-2 runs under, so that a break-before-make
/// invalidation memops asks for by root (`TableMem::invalidate_now_for`) is
/// planned for that VMID alone.
///
/// - The vCPU-load path ([`Stage2Vmids::loaded`]) takes no lock: one
///   relaxed load of the VMID's slot, which already names the root on every
///   load but a stage-2's first (then a short locked insert).
/// - An entry lives exactly as long as its stage-2: it goes when its root
///   table frame is freed ([`Stage2Vmids::table_freed`], domain destroy) or
///   when its VMID is loaded with another root (VMID reuse). The registry
///   holds at most one entry per VMID.
/// - A root that was never loaded has never been walked: no TLB holds its
///   translations and [`Stage2Vmids::vmid_of`] answers `None`.
pub struct Stage2Vmids {
    /// Per VMID: the root loaded with it, `| 1` (roots are 4 KiB aligned);
    /// 0 = none. The lock-free fast path of [`Self::loaded`].
    slots: Vec<AtomicU64>,
    /// root -> VMID, for lookups by root (the break-before-make path).
    roots: Mutex<BTreeMap<u64, Vmid>>,
}

impl Stage2Vmids {
    /// An empty registry for `vmid_bits`-bit VMIDs.
    #[must_use]
    pub fn new(vmid_bits: u8) -> Self {
        let n = 1usize << vmid_bits.min(16);
        Self {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            roots: Mutex::new(BTreeMap::new()),
        }
    }

    /// A vCPU with `vmid` and stage-2 root `root` is being loaded.
    pub fn loaded(&self, vmid: Vmid, root: PhysAddr) {
        let Some(slot) = self.slots.get(usize::from(vmid.0)) else {
            return;
        };
        let tagged = root.raw() | 1;
        // Relaxed: the slot only filters; the map below (under its lock) is
        // what lookups read.
        if slot.load(Ordering::Relaxed) == tagged {
            return;
        }
        let mut roots = self.roots.lock();
        let old = slot.swap(tagged, Ordering::Relaxed);
        if old != 0 && old != tagged {
            // The VMID was reused with another root: that entry is stale.
            if roots.get(&(old & !1)) == Some(&vmid) {
                roots.remove(&(old & !1));
            }
        }
        if let Some(prev) = roots.insert(root.raw(), vmid) {
            // The root ran under another VMID before: that slot is stale.
            if prev != vmid {
                if let Some(s) = self.slots.get(usize::from(prev.0)) {
                    let _ = s.compare_exchange(tagged, 0, Ordering::Relaxed, Ordering::Relaxed);
                }
            }
        }
    }

    /// The VMID `root` was last loaded with, if it was and is still live.
    #[must_use]
    pub fn vmid_of(&self, root: PhysAddr) -> Option<Vmid> {
        self.roots.lock().get(&root.raw()).copied()
    }

    /// A table frame was freed: if it was a registered root, forget it.
    pub fn table_freed(&self, pa: PhysAddr) {
        let mut roots = self.roots.lock();
        if let Some(vmid) = roots.remove(&pa.raw()) {
            if let Some(s) = self.slots.get(usize::from(vmid.0)) {
                let _ = s.compare_exchange(pa.raw() | 1, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }

    /// Registered stage-2s.
    #[must_use]
    pub fn len(&self) -> usize {
        self.roots.lock().len()
    }

    /// No stage-2 registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Break-before-make invalidations requested by root: the VMID registry and
/// the boot's TLB policy. The portable layer makes the plan
/// ([`Self::plan_for`]); the arch layer only executes it.
pub struct Stage2Tlb {
    /// The loaded stage-2s.
    pub vmids: Stage2Vmids,
    policy: Policy,
}

impl Stage2Tlb {
    /// A registry for `vmid_bits`-bit VMIDs, planning under `policy`.
    #[must_use]
    pub fn new(policy: Policy, vmid_bits: u8) -> Self {
        Self {
            vmids: Stage2Vmids::new(vmid_bits),
            policy,
        }
    }

    /// The operations that complete the invalidation of `set` in the
    /// stage-2 rooted at `root` (Xen's `p2m_force_tlb_flush_sync` for one
    /// VMID). A root that was never loaded only needs its broken entry
    /// published before the caller writes the new one.
    #[must_use]
    pub fn plan_for(&self, root: PhysAddr, set: &InvalidationSet) -> Vec<TlbOp> {
        if set.is_empty() {
            return Vec::new();
        }
        match self.vmids.vmid_of(root) {
            Some(vmid) => plan(vmid, set, &self.policy).ops().to_vec(),
            None => alloc::vec![TlbOp::DsbIshst],
        }
    }

    /// Plan (as [`Self::plan_for`]) and execute on `arch`, counted in [`STATS`].
    pub fn invalidate_for(
        &self,
        root: PhysAddr,
        set: &InvalidationSet,
        arch: &mut (impl Arch + ?Sized),
    ) {
        execute_ops(&self.plan_for(root, set), arch);
    }
}

static STAGE2: Once<Stage2Tlb> = Once::new();

/// Set up hv's [`Stage2Tlb`] (the boot flow, once, with the policy it also
/// gives the run loop's `DeferredFlush`; later calls are ignored).
pub fn init_stage2(policy: Policy, vmid_bits: u8) -> &'static Stage2Tlb {
    STAGE2.call_once(|| Stage2Tlb::new(policy, vmid_bits))
}

/// hv's [`Stage2Tlb`], once [`init_stage2`] ran.
#[must_use]
pub fn stage2() -> Option<&'static Stage2Tlb> {
    STAGE2.get()
}

/// An operation of `kind` (used to rebuild a [`TlbCounters`]).
fn representative(kind: TlbOpKind) -> TlbOp {
    let vmid = Vmid(0);
    match kind {
        TlbOpKind::Ipas2e1is => TlbOp::Ipas2e1is {
            vmid,
            ipa: Ipa(0),
            ttl: None,
        },
        TlbOpKind::Ripas2e1is => TlbOp::Ripas2e1is {
            vmid,
            base: Ipa(0),
            pages: 1,
            ttl: None,
        },
        TlbOpKind::Vmalle1is => TlbOp::Vmalle1is { vmid },
        TlbOpKind::Vmalle1 => TlbOp::Vmalle1 { vmid },
        TlbOpKind::Vmalls12e1is => TlbOp::Vmalls12e1is { vmid },
        TlbOpKind::Vmalls12e1 => TlbOp::Vmalls12e1 { vmid },
        TlbOpKind::Alle1is => TlbOp::Alle1is,
        TlbOpKind::IcIallu => TlbOp::IcIallu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::fake::{FakeArch, FakeMachine};

    #[test]
    fn executes_in_order_and_counts_by_kind() {
        let machine = FakeMachine::new_shared();
        let mut arch = FakeArch::new(1, machine.clone());
        let stats = TlbStats::new();
        let vmid = Vmid(2);
        let ops = [
            TlbOp::DsbIshst,
            TlbOp::Ipas2e1is {
                vmid,
                ipa: Ipa(0x4000_0000),
                ttl: Some(3),
            },
            TlbOp::Ipas2e1is {
                vmid,
                ipa: Ipa(0x4000_1000),
                ttl: Some(3),
            },
            TlbOp::DsbIsh,
            TlbOp::Vmalle1is { vmid },
            TlbOp::DsbIsh,
            TlbOp::Isb,
        ];
        execute_ops_counted(&ops, &mut arch, &stats);
        assert_eq!(machine.lock().tlb_ops(), ops.to_vec());
        assert_eq!(stats.count(TlbOpKind::Ipas2e1is), 2);
        assert_eq!(stats.count(TlbOpKind::Vmalle1is), 1);
        assert_eq!(stats.count(TlbOpKind::Vmalls12e1is), 0);
        assert_eq!(stats.barriers(), 4);
        let snap = stats.snapshot();
        assert_eq!(snap.total_tlbi(), 3);
        assert_eq!(snap.full_stage2(), 0);
        assert_eq!(snap.get(TlbOpKind::Ipas2e1is), 2);
        // The global counters see plans run through `execute`.
        let before = STATS.count(TlbOpKind::Alle1is);
        execute([TlbOp::Alle1is, TlbOp::DsbIsh], &mut arch);
        assert!(STATS.count(TlbOpKind::Alle1is) > before);
        assert!(snapshot().get(TlbOpKind::Alle1is) > before);
    }

    /// Issue 10: the VMID registry was never pruned (and every vCPU load
    /// locked it). Create, load and destroy domains many times: it never
    /// holds more than the live stage-2s, and is empty once all are gone.
    #[test]
    fn stage2_registry_is_pruned_when_domains_go() {
        use crate::arch::fake::FakeMem;
        use crate::arch::El1Sysregs;
        use crate::domain::{Domain, VmidAllocator};
        use alloc::sync::Arc;
        use memops::FrameTable;
        use pv_tlb::DeferredFlush;

        let s2 = Arc::new(Stage2Tlb::new(Policy::XenCompat, 8));
        let machine = FakeMachine::new_shared();
        let mut arch = FakeArch::new(0, machine.clone());
        arch.stage2_tlb = Some(s2.clone());
        let mut mem = FakeMem::new(0x8000_0000, 16 << 20);
        mem.stage2_tlb = Some(s2.clone());
        let mut pool = FrameTable::new(PhysAddr(0x8000_0000), 256);
        let mut vmids = VmidAllocator::new(2);
        let mut flush = DeferredFlush::new(Policy::XenCompat);
        let sysregs = El1Sysregs::default();
        for i in 0..40u16 {
            let d = Domain::create(i + 1, 1 << 20, 40, &mut vmids, &mut mem, &mut pool)
                .expect("domain");
            let regs = d.stage2_regs();
            let root = PhysAddr(regs.vttbr & 0x0000_ffff_ffff_f000);
            assert_eq!(s2.vmids.vmid_of(root), None, "never loaded yet");
            arch.vcpu_load(&sysregs, regs, 0);
            assert_eq!(s2.vmids.vmid_of(root), Some(d.vmid()));
            // Loading again (the common case) changes nothing.
            let mut put = El1Sysregs::default();
            arch.vcpu_put(&mut put);
            arch.vcpu_load(&sysregs, regs, 0);
            arch.vcpu_put(&mut put);
            assert_eq!(s2.vmids.len(), 1);
            // A break-before-make in a loaded stage-2 is planned for its VMID.
            let mut set = InvalidationSet::new();
            set.add(Ipa(0x4000_0000), 1, 3);
            let ops = s2.plan_for(root, &set);
            assert!(
                ops.contains(&TlbOp::Vmalls12e1is { vmid: d.vmid() }),
                "{ops:?}"
            );
            d.destroy(&mut arch, &mut mem, &mut pool, &mut flush, &mut vmids);
            assert!(
                s2.vmids.is_empty(),
                "round {i}: a destroyed stage-2 stays registered"
            );
            // Its root is forgotten: a new stage-2 there starts unloaded.
            assert_eq!(s2.plan_for(root, &set), alloc::vec![TlbOp::DsbIshst]);
        }
    }

    /// A VMID reused with another root drops the old root's entry, and a
    /// root loaded under another VMID drops the old VMID's.
    #[test]
    fn stage2_registry_keeps_one_entry_per_vmid_and_root() {
        let r = Stage2Vmids::new(2);
        let (a, b) = (PhysAddr(0x1000), PhysAddr(0x2000));
        r.loaded(Vmid(1), a);
        r.loaded(Vmid(1), b);
        assert_eq!(
            (r.vmid_of(a), r.vmid_of(b), r.len()),
            (None, Some(Vmid(1)), 1)
        );
        r.loaded(Vmid(2), b);
        assert_eq!((r.vmid_of(b), r.len()), (Some(Vmid(2)), 1));
        // VMID 1's slot no longer claims b: loading b under 1 again registers it.
        r.loaded(Vmid(1), b);
        assert_eq!(r.vmid_of(b), Some(Vmid(1)));
        r.table_freed(PhysAddr(0x3000));
        assert_eq!(r.len(), 1);
        r.table_freed(b);
        assert!(r.is_empty());
        // Out-of-range VMIDs are ignored, not a panic.
        Stage2Vmids::new(2).loaded(Vmid(9), a);
    }
}
