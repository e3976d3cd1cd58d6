//! hv's counters (`struct hv_counters` of `HVOP_get_counters`, DESIGN.md
//! "Counters"): the TLB ops by kind and flush plans ([`crate::tlb::STATS`]),
//! stage-2 operations, guest exits and hypercalls. The run loop and the
//! hypercall layer count; `hv_op` and the power-off line read them.

use core::sync::atomic::{AtomicU64, Ordering};

use pv_tlb::TlbOpKind;

/// Stage-2 operations recorded (memory_op glue adds to it).
pub static P2M_OPS: AtomicU64 = AtomicU64::new(0);
/// Guest exits handled (all pCPUs).
pub static GUEST_EXITS: AtomicU64 = AtomicU64::new(0);
/// Xen hypercalls handled (all pCPUs).
pub static HYPERCALLS: AtomicU64 = AtomicU64::new(0);

/// `struct hv_counters` as of now.
#[must_use]
pub fn counters() -> [u64; 12] {
    let mut c = [0u64; 12];
    for (i, k) in TlbOpKind::ALL.iter().enumerate() {
        c[i] = crate::tlb::STATS.count(*k);
    }
    c[8] = P2M_OPS.load(Ordering::Relaxed);
    c[9] = crate::tlb::STATS.plans();
    c[10] = GUEST_EXITS.load(Ordering::Relaxed);
    c[11] = HYPERCALLS.load(Ordering::Relaxed);
    c
}

/// Zero every counter.
pub fn reset_counters() {
    crate::tlb::STATS.reset();
    P2M_OPS.store(0, Ordering::Relaxed);
    GUEST_EXITS.store(0, Ordering::Relaxed);
    HYPERCALLS.store(0, Ordering::Relaxed);
}
