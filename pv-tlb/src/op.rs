//! The TLB maintenance operations a plan is made of.
//!
//! The arch layer executes these one by one, in order, and counts them by
//! [`TlbOpKind`]. Nothing in this crate executes anything.

use crate::addr::{Ipa, Vmid};

/// One instruction (or barrier) of a TLB maintenance sequence.
///
/// VMID-scoped operations name the VMID they apply to: the arch layer must
/// have that VMID current in `VTTBR_EL2` (switching temporarily if needed)
/// when it issues them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum TlbOp {
    /// `DSB ISHST`: make page-table stores visible to the table walkers of the
    /// inner-shareable domain before invalidating.
    DsbIshst,
    /// `DSB ISH`: wait for earlier TLB maintenance to complete in the inner-shareable domain.
    DsbIsh,
    /// `DSB NSH`: wait for local TLB maintenance to complete.
    DsbNsh,
    /// `ISB`: resynchronise this PE's context after TLB maintenance.
    Isb,
    /// `TLBI IPAS2E1IS`: stage-2 entries for one IPA page, inner shareable.
    /// `ttl` is the FEAT_TTL level hint (the level of the leaf entry), if known.
    Ipas2e1is {
        /// VMID the IPA belongs to.
        vmid: Vmid,
        /// Page-aligned IPA.
        ipa: Ipa,
        /// Level (1..=3) of the removed leaf entry, or `None` for "any level".
        ttl: Option<u8>,
    },
    /// `TLBI RIPAS2E1IS`: stage-2 entries for an IPA range (FEAT_TLBIRANGE), inner shareable.
    Ripas2e1is {
        /// VMID the range belongs to.
        vmid: Vmid,
        /// Page-aligned start of the range.
        base: Ipa,
        /// Number of 4 KiB pages; the arch layer encodes it as SCALE/NUM
        /// (a plan only emits counts the encoding can express exactly).
        pages: u64,
        /// Level hint of the leaf entries, if uniform.
        ttl: Option<u8>,
    },
    /// `TLBI VMALLE1IS`: all stage-1 entries of the current VMID, inner shareable.
    Vmalle1is {
        /// VMID whose stage-1 entries go.
        vmid: Vmid,
    },
    /// `TLBI VMALLE1`: all stage-1 entries of the current VMID, this PE only.
    Vmalle1 {
        /// VMID whose stage-1 entries go.
        vmid: Vmid,
    },
    /// `TLBI VMALLS12E1IS`: all stage-1 and stage-2 entries of a VMID, inner
    /// shareable. Under KVM nested virtualization this costs a walk of the whole IPA space.
    Vmalls12e1is {
        /// VMID whose entries go.
        vmid: Vmid,
    },
    /// `TLBI VMALLS12E1`: all stage-1 and stage-2 entries of a VMID, this PE only.
    Vmalls12e1 {
        /// VMID whose entries go.
        vmid: Vmid,
    },
    /// `TLBI ALLE1IS`: every EL1&0 entry of every VMID, inner shareable.
    Alle1is,
    /// `IC IALLU`: invalidate this PE's instruction cache to the point of unification.
    IcIallu,
}

/// Counter bucket for a [`TlbOp`]: barriers are not TLBIs and are not counted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum TlbOpKind {
    /// `TLBI IPAS2E1IS`
    Ipas2e1is,
    /// `TLBI RIPAS2E1IS`
    Ripas2e1is,
    /// `TLBI VMALLE1IS`
    Vmalle1is,
    /// `TLBI VMALLE1`
    Vmalle1,
    /// `TLBI VMALLS12E1IS`
    Vmalls12e1is,
    /// `TLBI VMALLS12E1`
    Vmalls12e1,
    /// `TLBI ALLE1IS`
    Alle1is,
    /// `IC IALLU`
    IcIallu,
}

impl TlbOpKind {
    /// Every kind, in counter display order.
    pub const ALL: [TlbOpKind; 8] = [
        TlbOpKind::Ipas2e1is,
        TlbOpKind::Ripas2e1is,
        TlbOpKind::Vmalle1is,
        TlbOpKind::Vmalle1,
        TlbOpKind::Vmalls12e1is,
        TlbOpKind::Vmalls12e1,
        TlbOpKind::Alle1is,
        TlbOpKind::IcIallu,
    ];

    /// The assembler mnemonic, for counters and logs.
    #[must_use]
    pub const fn mnemonic(self) -> &'static str {
        match self {
            TlbOpKind::Ipas2e1is => "IPAS2E1IS",
            TlbOpKind::Ripas2e1is => "RIPAS2E1IS",
            TlbOpKind::Vmalle1is => "VMALLE1IS",
            TlbOpKind::Vmalle1 => "VMALLE1",
            TlbOpKind::Vmalls12e1is => "VMALLS12E1IS",
            TlbOpKind::Vmalls12e1 => "VMALLS12E1",
            TlbOpKind::Alle1is => "ALLE1IS",
            TlbOpKind::IcIallu => "IC_IALLU",
        }
    }

    /// True for operations that drop stage-2 entries of a whole VMID (or all VMIDs):
    /// the ones that are expensive under nested virtualization.
    #[must_use]
    pub const fn is_full_stage2(self) -> bool {
        matches!(
            self,
            TlbOpKind::Vmalls12e1is | TlbOpKind::Vmalls12e1 | TlbOpKind::Alle1is
        )
    }
}

impl TlbOp {
    /// The counter bucket, or `None` for barriers.
    #[must_use]
    pub const fn kind(&self) -> Option<TlbOpKind> {
        Some(match self {
            TlbOp::DsbIshst | TlbOp::DsbIsh | TlbOp::DsbNsh | TlbOp::Isb => return None,
            TlbOp::Ipas2e1is { .. } => TlbOpKind::Ipas2e1is,
            TlbOp::Ripas2e1is { .. } => TlbOpKind::Ripas2e1is,
            TlbOp::Vmalle1is { .. } => TlbOpKind::Vmalle1is,
            TlbOp::Vmalle1 { .. } => TlbOpKind::Vmalle1,
            TlbOp::Vmalls12e1is { .. } => TlbOpKind::Vmalls12e1is,
            TlbOp::Vmalls12e1 { .. } => TlbOpKind::Vmalls12e1,
            TlbOp::Alle1is => TlbOpKind::Alle1is,
            TlbOp::IcIallu => TlbOpKind::IcIallu,
        })
    }
}

/// Counts of executed TLB operations by kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TlbCounters {
    counts: [u64; TlbOpKind::ALL.len()],
}

impl TlbCounters {
    /// Count one executed operation (barriers are ignored).
    pub fn record(&mut self, op: &TlbOp) {
        if let Some(k) = op.kind() {
            self.counts[k as usize] += 1;
        }
    }
    /// How many operations of `kind` were recorded.
    #[must_use]
    pub fn get(&self, kind: TlbOpKind) -> u64 {
        self.counts[kind as usize]
    }
    /// Total TLBI instructions (every kind but `IC IALLU`).
    #[must_use]
    pub fn total_tlbi(&self) -> u64 {
        TlbOpKind::ALL
            .iter()
            .filter(|k| **k != TlbOpKind::IcIallu)
            .map(|k| self.get(*k))
            .sum()
    }
    /// Full stage-2 flushes (`VMALLS12E1*`, `ALLE1IS`).
    #[must_use]
    pub fn full_stage2(&self) -> u64 {
        TlbOpKind::ALL
            .iter()
            .filter(|k| k.is_full_stage2())
            .map(|k| self.get(*k))
            .sum()
    }
}
