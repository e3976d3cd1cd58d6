//! Executes TLB maintenance plans through [`Arch::tlb_op`] and counts what ran.
//!
//! pv-tlb decides *which* operations a change needs; this module is the one
//! place in hv that hands them to the CPU, in order, and counts every executed
//! operation by [`TlbOpKind`] in global counters (all pCPUs together), so the
//! console, tests and benchmarks can report them.

use core::sync::atomic::{AtomicU64, Ordering};

use pv_tlb::{Ipa, TlbCounters, TlbOp, TlbOpKind, Vmid};

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
}
