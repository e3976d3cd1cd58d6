//! Policies and plans: *how* to invalidate an [`InvalidationSet`].
//!
//! # Policies
//! - [`Policy::XenCompat`] reproduces upstream Xen on Arm: every p2m
//!   operation that removed or changed a live entry ends with
//!   `DSB ISHST; TLBI VMALLS12E1IS; DSB ISH; ISB` (Xen's
//!   `p2m_force_tlb_flush_sync` / `flush_guest_tlb`), whatever its size.
//!   Kept for good so that every figure can be measured side by side.
//! - [`Policy::Targeted`] invalidates only what changed, in the Arm ARM order
//!   for removing stage-2 entries, as Linux KVM's `__kvm_tlb_flush_vmid_ipa`
//!   (`arch/arm64/kvm/hyp/vhe/tlb.c`) and `__kvm_tlb_flush_vmid_range` do:
//!   `DSB ISHST` (table stores visible to the walkers), `TLBI IPAS2E1IS` per
//!   leaf entry with its level as the FEAT_TTL hint or `TLBI RIPAS2E1IS`
//!   ranges (FEAT_TLBIRANGE), `DSB ISH` (stage-2 invalidation complete),
//!   `TLBI VMALLE1IS` (IPA-based TLBIs do not remove combined stage-1+2
//!   entries), `DSB ISH`, `ISB`. Above a per-environment threshold of TLBI
//!   instructions one `VMALLS12E1IS` replaces them (see [`Policy::threshold`]).
//!
//! # Covering scattered runs (FEAT_TLBIRANGE)
//! A gathered set is usually many short runs (an unmodified dom0 unmaps its
//! foreign mappings one page per call, from gfns its balloon or
//! unpopulated-alloc handed out in no particular order). The runs are
//! sorted and merged first ([`InvalidationSet::normalize`]); then, with
//! FEAT_TLBIRANGE, runs whose span from the first run's start to the last
//! one's end stays within [`MAX_COVER_PAGES`] share ONE `RIPAS2E1IS` that
//! spans them, gaps included. Invalidating IPAs of the same VMID that did
//! not change is harmless (their entries are refilled from the unchanged
//! tables on the next access); the bound keeps the cost of the
//! over-invalidation (refills, and nested: L0's walk of that much of its
//! shadow stage-2) to one 1 GiB step per instruction. A run alone in its
//! span is planned exactly as before (with its level hint), except that a
//! run of 4 KiB pages within the bound is one range rounded up to the next
//! expressible size instead of several exact ones; a span of several runs
//! carries a level hint only if all its runs share one leaf level, else
//! none (entries of any level in the span go).

use alloc::vec::Vec;

use crate::addr::{Ipa, Vmid, PAGE_SIZE};
use crate::inval::{pages_per_entry, InvalidationSet, IpaRange};
use crate::op::{TlbOp, TlbOpKind};

/// What the command line asked for (`tlb=xen-compat|targeted|auto`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum PolicyChoice {
    /// `tlb=xen-compat`.
    XenCompat,
    /// `tlb=targeted`.
    Targeted,
    /// `tlb=auto` (the default).
    #[default]
    Auto,
}

impl PolicyChoice {
    /// Parse the value of `tlb=`; `None` for anything else.
    #[must_use]
    pub fn parse(s: &str) -> Option<PolicyChoice> {
        match s {
            "xen-compat" => Some(PolicyChoice::XenCompat),
            "targeted" => Some(PolicyChoice::Targeted),
            "auto" => Some(PolicyChoice::Auto),
            _ => None,
        }
    }
}

/// How invalidation sets are turned into plans.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Policy {
    /// Upstream Xen: one full VMID flush per p2m operation, no gathering.
    XenCompat,
    /// Per-page / per-range invalidation with gathering across hypercalls.
    Targeted {
        /// FEAT_TLBIRANGE is implemented (`ID_AA64ISAR0_EL1.TLB == 0b0010`).
        has_range: bool,
        /// hv runs as a guest hypervisor (nested verdict): full flushes are
        /// emulated by L0 with a walk of the whole IPA space.
        nested: bool,
    },
}

/// Threshold (TLBI instructions per plan) on bare metal.
///
/// On bare metal a full flush is cheap to issue: measured 1.6 us for
/// `TLBI VMALLS12E1IS; DSB ISH` against 2.2 us for one targeted
/// `IPAS2E1IS; DSB; VMALLE1IS; DSB` (`shared/nested-rig.md`), so its cost is
/// the refill of the whole VMID's TLB entries rather than the instruction.
/// 512 is Linux's `MAX_DVM_OPS` (`PTRS_PER_PTE`, `arch/arm64/include/asm/tlbflush.h`):
/// beyond one last-level table worth of per-page TLBIs the broadcast DVM
/// traffic costs more than refilling after a full flush.
pub const BARE_THRESHOLD: u64 = 512;

/// Threshold (TLBI instructions per plan) when nested under KVM.
///
/// Nested, L0 emulates `VMALLS12E1IS` by unmapping the whole shadow stage-2
/// in 1 GiB steps: measured about 2 s per full flush at an L1 IPA limit of
/// 48 bits (33 s at 52 bits) against about 120 us for a whole targeted
/// sequence (`IPAS2E1IS; DSB; VMALLE1IS; DSB`), i.e. well under 60 us per extra
/// IPA TLBI since the `VMALLE1IS` is paid once per plan. Break-even is thus at
/// least 2 s / 60 us = 33 000 TLBIs; 16384 keeps a factor-2 margin (and with
/// FEAT_TLBIRANGE a plan rarely has more than a few dozen instructions).
pub const NESTED_THRESHOLD: u64 = 16384;

impl Policy {
    /// Every policy: xen-compat and the four targeted combinations (tests
    /// and models run their properties under each).
    pub const ALL: [Policy; 5] = [
        Policy::XenCompat,
        Policy::Targeted {
            has_range: false,
            nested: false,
        },
        Policy::Targeted {
            has_range: false,
            nested: true,
        },
        Policy::Targeted {
            has_range: true,
            nested: false,
        },
        Policy::Targeted {
            has_range: true,
            nested: true,
        },
    ];

    /// Number of range/page TLBI instructions above which a targeted plan
    /// is replaced by one full VMID flush. `u64::MAX` for xen-compat (not used).
    #[must_use]
    pub const fn threshold(&self) -> u64 {
        match self {
            Policy::XenCompat => u64::MAX,
            Policy::Targeted { nested: true, .. } => NESTED_THRESHOLD,
            Policy::Targeted { nested: false, .. } => BARE_THRESHOLD,
        }
    }

    /// True for [`Policy::XenCompat`].
    #[must_use]
    pub const fn is_xen_compat(&self) -> bool {
        matches!(self, Policy::XenCompat)
    }
}

/// Turn the command-line choice and the boot-time evidence into a policy.
///
/// `tlb=xen-compat` is always honoured. `tlb=targeted` and `tlb=auto` both
/// give [`Policy::Targeted`] tuned to the environment (threshold from the
/// nested verdict, ranges if the CPU has them): the targeted policy with its
/// full-flush fall-back is never worse than xen-compat in TLBI count, and the
/// threshold already encodes the bare-metal/nested difference. `auto` exists
/// so the default can follow future evidence without changing the meaning of
/// an explicit `targeted`.
#[must_use]
pub fn resolve(choice: PolicyChoice, nested_verdict_is_nested: bool, has_range: bool) -> Policy {
    match choice {
        PolicyChoice::XenCompat => Policy::XenCompat,
        PolicyChoice::Targeted | PolicyChoice::Auto => Policy::Targeted {
            has_range,
            nested: nested_verdict_is_nested,
        },
    }
}

/// Largest `NUM` field a range TLBI plan emits (the architecture allows 0..=31;
/// Linux uses at most 30 so that `NUM + 1` fits its scale arithmetic; we do the same).
pub const RANGE_MAX_NUM: u64 = 30;
/// Largest `SCALE` field.
pub const RANGE_MAX_SCALE: u32 = 3;

/// Pages covered by a range TLBI with `num` and `scale`:
/// `(NUM + 1) << (5 * SCALE + 1)`.
#[must_use]
pub const fn range_pages(num: u64, scale: u32) -> u64 {
    (num + 1) << (5 * scale + 1)
}

/// Decompose `pages` into counts that a `RIPAS2E1IS` can express exactly,
/// largest first; a final odd page is returned separately (needs a single
/// `IPAS2E1IS`). Returns (range page counts, trailing single page?).
fn split_range(mut pages: u64, out: &mut Vec<u64>) -> bool {
    while pages >= 2 {
        let mut done = false;
        for scale in (0..=RANGE_MAX_SCALE).rev() {
            let unit = 1u64 << (5 * scale + 1);
            if pages >= unit {
                let n = (pages / unit).min(RANGE_MAX_NUM + 1);
                out.push(n * unit);
                pages -= n * unit;
                done = true;
                break;
            }
        }
        if !done {
            break;
        }
    }
    pages == 1
}

/// An ordered list of operations for the arch layer to execute.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Plan {
    ops: Vec<TlbOp>,
}

impl Plan {
    /// An empty plan.
    #[must_use]
    pub const fn new() -> Self {
        Self { ops: Vec::new() }
    }

    /// A plan of exactly these operations (for tests and for callers that
    /// need a fixed sequence).
    #[must_use]
    pub fn from_ops(ops: Vec<TlbOp>) -> Self {
        Self { ops }
    }

    /// The operations, in execution order.
    #[must_use]
    pub fn ops(&self) -> &[TlbOp] {
        &self.ops
    }

    /// True if there is nothing to execute.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of operations of `kind`.
    #[must_use]
    pub fn count(&self, kind: TlbOpKind) -> u64 {
        self.ops.iter().filter(|o| o.kind() == Some(kind)).count() as u64
    }

    /// Number of TLBI instructions (barriers and `IC IALLU` excluded).
    #[must_use]
    pub fn tlbis(&self) -> u64 {
        self.ops
            .iter()
            .filter(|o| matches!(o.kind(), Some(k) if k != TlbOpKind::IcIallu))
            .count() as u64
    }

    /// Append `other` after `self`.
    pub fn append(&mut self, other: Plan) {
        self.ops.extend(other.ops);
    }

    fn push(&mut self, op: TlbOp) {
        self.ops.push(op);
    }
}

pub(crate) fn full_flush(vmid: Vmid) -> Plan {
    Plan::from_ops(alloc::vec![
        // Table stores visible to all walkers before the invalidation.
        TlbOp::DsbIshst,
        TlbOp::Vmalls12e1is { vmid },
        // Invalidation complete everywhere before anyone relies on it.
        TlbOp::DsbIsh,
        TlbOp::Isb,
    ])
}

/// Most pages one covering `RIPAS2E1IS` spans over several runs (1 GiB):
/// the over-invalidation of one instruction is bounded by what one step of
/// KVM's stage-2 range walk (`stage2_apply_range`, 1 GiB per step) covers
/// nested, and stays far below a full flush on bare metal. One instruction
/// can express it exactly or by rounding up (`SCALE` 3 covers up to
/// 31 x 64 Ki pages).
pub const MAX_COVER_PAGES: u64 = 1 << 18;

/// One `RIPAS2E1IS` operand covering at least `pages` pages (`2..=` the
/// largest expressible count), rounded up to the smallest expressible count.
fn cover_pages(pages: u64) -> u64 {
    for scale in 0..=RANGE_MAX_SCALE {
        let unit = 1u64 << (5 * scale + 1);
        let n = pages.div_ceil(unit).max(1);
        if n <= RANGE_MAX_NUM + 1 {
            return n * unit;
        }
    }
    range_pages(RANGE_MAX_NUM, RANGE_MAX_SCALE)
}

/// Spans of a [normalized](InvalidationSet::normalize) set's runs: each is
/// `(first run, runs)`, consecutive runs grouped while the span from the
/// group's first base to its furthest end stays within [`MAX_COVER_PAGES`].
/// Without FEAT_TLBIRANGE every run is its own span.
fn spans(runs: &[IpaRange], has_range: bool) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut end = 0u64;
    for (i, r) in runs.iter().enumerate() {
        if let Some(last) = out.last_mut() {
            let base = runs[last.0].base.0;
            let new_end = end.max(r.end().0);
            if has_range && (new_end - base) >> crate::addr::PAGE_SHIFT <= MAX_COVER_PAGES {
                last.1 += 1;
                end = new_end;
                continue;
            }
        }
        out.push((i, 1));
        end = r.end().0;
    }
    out
}

/// The IPA TLBIs of one span of `runs` (see [`spans`]).
fn span_ops(vmid: Vmid, runs: &[IpaRange], has_range: bool, out: &mut Plan) {
    if let [r] = runs {
        // A run of pages that needs several exact ranges (11 922 pages are
        // 10 240 + 1 664 + 18) takes one rounded-up range instead.
        if !(has_range && r.level == 3 && (2..=MAX_COVER_PAGES).contains(&r.pages)) {
            run_ops(vmid, r, has_range, out);
            return;
        }
    }
    let base = runs[0].base;
    let end = runs.iter().map(|r| r.end().0).max().unwrap_or(base.0);
    let level = runs[0].level;
    let ttl = if (1..=3).contains(&level) && runs.iter().all(|r| r.level == level) {
        Some(level)
    } else {
        None
    };
    out.push(TlbOp::Ripas2e1is {
        vmid,
        base,
        pages: cover_pages((end - base.0) / PAGE_SIZE),
        ttl,
    });
}

/// The per-run IPA TLBIs of a targeted plan.
fn run_ops(vmid: Vmid, r: &IpaRange, has_range: bool, out: &mut Plan) {
    let per = pages_per_entry(r.level);
    let ttl = if per == 0 { None } else { Some(r.level) };
    let entries = r.entries();
    // Blocks: one IPAS2E1IS per block entry (any address inside a block
    // invalidates it) is usually fewer than ranges; choose the smaller.
    let mut ranges = Vec::new();
    let single_tail = has_range && split_range(r.pages, &mut ranges);
    let range_ops = ranges.len() as u64 + u64::from(single_tail);
    if has_range && range_ops < entries {
        let mut base = r.base.0;
        for pages in ranges {
            out.push(TlbOp::Ripas2e1is {
                vmid,
                base: Ipa(base),
                pages,
                ttl,
            });
            base += pages * PAGE_SIZE;
        }
        if single_tail {
            out.push(TlbOp::Ipas2e1is {
                vmid,
                ipa: Ipa(base),
                ttl,
            });
        }
    } else {
        let step = if per == 0 { 1 } else { per } * PAGE_SIZE;
        for i in 0..entries {
            out.push(TlbOp::Ipas2e1is {
                vmid,
                ipa: Ipa(r.base.0 + i * step),
                ttl,
            });
        }
    }
}

/// Number of IPA TLBI instructions a targeted plan of `set` would issue.
#[must_use]
pub fn targeted_tlbis(set: &InvalidationSet, has_range: bool) -> u64 {
    let mut p = Plan::new();
    ipa_ops(Vmid(0), set, has_range, &mut p);
    p.ops.len() as u64
}

/// The IPA TLBIs for `set` (normalized here if it is not already).
fn ipa_ops(vmid: Vmid, set: &InvalidationSet, has_range: bool, out: &mut Plan) {
    let sorted;
    let set = if set.is_normalized() {
        set
    } else {
        sorted = set.normalized();
        &sorted
    };
    let runs = set.ranges();
    for (first, n) in spans(runs, has_range) {
        span_ops(vmid, &runs[first..first + n], has_range, out);
    }
}

/// The IPA TLBIs covering `set` (ranges when `has_range`), or `None` when
/// they would exceed [`Policy::threshold`] and one full flush is cheaper
/// ([`plan()`] and [`retire_plan`] fall back to it alike).
fn ipa_within_threshold(
    vmid: Vmid,
    set: &InvalidationSet,
    has_range: bool,
    policy: &Policy,
) -> Option<Plan> {
    let mut ipa = Plan::new();
    ipa_ops(vmid, set, has_range, &mut ipa);
    (ipa.ops.len() as u64 <= policy.threshold()).then_some(ipa)
}

/// The plan that invalidates `set` for `vmid` under `policy`.
///
/// An empty set gives an empty plan. Xen-compat: one full flush.
/// Targeted: IPA TLBIs then the stage-1 flush, or one full flush when the IPA
/// TLBIs would exceed [`Policy::threshold`].
#[must_use]
pub fn plan(vmid: Vmid, set: &InvalidationSet, policy: &Policy) -> Plan {
    if set.is_empty() {
        return Plan::new();
    }
    match *policy {
        Policy::XenCompat => full_flush(vmid),
        Policy::Targeted { has_range, .. } => {
            match ipa_within_threshold(vmid, set, has_range, policy) {
                Some(ipa) => targeted(vmid, ipa, set.needs_stage1()),
                None => full_flush(vmid),
            }
        }
    }
}

/// The plan that retires `vmid` (its domain is destroyed: every stage-2
/// table goes after it, and the VMID is handed out again): `set` must cover
/// every leaf the stage-2 still maps, one IPA of every table left without
/// any valid entry, and whatever was pending for the VMID
/// ([`crate::DeferredFlush::retire_vmid`] gathers them).
///
/// Xen-compat: one full flush, as Xen's `p2m_teardown` (its single
/// `p2m_force_tlb_flush_sync` for the VMID). Targeted: the same IPA TLBIs as
/// [`plan()`] (same covering, same [`Policy::threshold`] fall-back to one
/// full flush, so a retire never costs more than one full flush), with
/// two differences: no TLBI carries a level hint, because the tables go too
/// and the hint is only valid for a leaf (as Linux's `tlb_get_level` when
/// tables are freed), so walk-cache copies of the table entries on the way
/// to each IPA are dropped as well; and the stage-1 flush (`VMALLE1IS`
/// with the VMID loaded) is always there, even for an empty set.
///
/// Nested under KVM this matters: L0 emulates `VMALLS12E1IS` by unmapping
/// its whole shadow stage-2 IPA range in 1 GiB steps (about 120 s at a
/// 52-bit IPA limit), an IPA or range TLBI by unmapping only that range.
#[must_use]
pub fn retire_plan(vmid: Vmid, set: &InvalidationSet, policy: &Policy) -> Plan {
    match *policy {
        Policy::XenCompat => full_flush(vmid),
        Policy::Targeted { has_range, .. } => {
            let Some(mut ipa) = ipa_within_threshold(vmid, set, has_range, policy) else {
                return full_flush(vmid);
            };
            for op in &mut ipa.ops {
                match op {
                    TlbOp::Ipas2e1is { ttl, .. } | TlbOp::Ripas2e1is { ttl, .. } => *ttl = None,
                    _ => {}
                }
            }
            targeted(vmid, ipa, true)
        }
    }
}

/// A targeted plan around the IPA TLBIs `ipa`, in KVM's order.
fn targeted(vmid: Vmid, ipa: Plan, stage1: bool) -> Plan {
    let mut p = Plan::new();
    // Table stores (the invalid entries) visible to the walkers first.
    p.push(TlbOp::DsbIshst);
    p.append(ipa);
    // Stage-2 invalidation complete before dropping combined entries
    // (which could otherwise be refilled from stale stage-2 entries).
    p.push(TlbOp::DsbIsh);
    if stage1 {
        p.push(TlbOp::Vmalle1is { vmid });
        p.push(TlbOp::DsbIsh);
    }
    p.push(TlbOp::Isb);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(runs: &[(u64, u64, u8)]) -> InvalidationSet {
        let mut s = InvalidationSet::new();
        for &(b, p, l) in runs {
            s.add(Ipa(b), p, l);
        }
        s
    }

    const T: Policy = Policy::Targeted {
        has_range: false,
        nested: true,
    };
    const TR: Policy = Policy::Targeted {
        has_range: true,
        nested: true,
    };

    #[test]
    fn xen_compat_is_one_full_flush() {
        let p = plan(Vmid(3), &set(&[(0x4000_0000, 7, 3)]), &Policy::XenCompat);
        assert_eq!(
            p.ops(),
            &[
                TlbOp::DsbIshst,
                TlbOp::Vmalls12e1is { vmid: Vmid(3) },
                TlbOp::DsbIsh,
                TlbOp::Isb
            ]
        );
        assert!(plan(Vmid(3), &InvalidationSet::new(), &Policy::XenCompat).is_empty());
    }

    #[test]
    fn targeted_single_page_is_kvm_order() {
        let p = plan(Vmid(1), &set(&[(0x4000_1000, 1, 3)]), &TR);
        assert_eq!(
            p.ops(),
            &[
                TlbOp::DsbIshst,
                TlbOp::Ipas2e1is {
                    vmid: Vmid(1),
                    ipa: Ipa(0x4000_1000),
                    ttl: Some(3)
                },
                TlbOp::DsbIsh,
                TlbOp::Vmalle1is { vmid: Vmid(1) },
                TlbOp::DsbIsh,
                TlbOp::Isb
            ]
        );
    }

    #[test]
    fn blocks_take_one_tlbi_per_entry() {
        let p = plan(Vmid(1), &set(&[(0x4000_0000, 1024, 2)]), &T);
        assert_eq!(p.count(TlbOpKind::Ipas2e1is), 2);
        assert_eq!(
            p.ops()[2],
            TlbOp::Ipas2e1is {
                vmid: Vmid(1),
                ipa: Ipa(0x4020_0000),
                ttl: Some(2)
            }
        );
    }

    #[test]
    fn ranges_are_exactly_expressible_and_cover_the_run() {
        // Runs above the cover bound are split exactly (runs below it are
        // one rounded-up range: `single_runs_are_one_rounded_up_range`).
        for pages in [
            MAX_COVER_PAGES + 1,
            MAX_COVER_PAGES + 63,
            2_031_616,
            5_000_000,
        ] {
            let p = plan(Vmid(2), &set(&[(0x8000_0000, pages, 3)]), &TR);
            let mut next = 0x8000_0000u64;
            let mut covered = 0;
            for op in p.ops() {
                match *op {
                    TlbOp::Ripas2e1is {
                        base,
                        pages: n,
                        ttl,
                        ..
                    } => {
                        assert_eq!(base.0, next);
                        assert_eq!(ttl, Some(3));
                        let ok = (0..=RANGE_MAX_SCALE)
                            .any(|s| (0..=RANGE_MAX_NUM).any(|num| range_pages(num, s) == n));
                        assert!(ok, "{n} pages not expressible");
                        next += n * PAGE_SIZE;
                        covered += n;
                    }
                    TlbOp::Ipas2e1is { ipa, .. } => {
                        assert_eq!(ipa.0, next);
                        next += PAGE_SIZE;
                        covered += 1;
                    }
                    _ => {}
                }
            }
            assert_eq!(covered, pages, "pages {pages}");
            assert!(
                p.tlbis() <= pages / range_pages(30, 3) + 5,
                "{pages}: {}",
                p.tlbis()
            );
        }
    }

    /// True if some IPA TLBI of `p` for `vmid` covers the page at `ipa`
    /// with a hint that matches `level` (or none).
    fn covered(p: &Plan, vmid: Vmid, ipa: u64, level: u8) -> bool {
        p.ops().iter().any(|o| match *o {
            TlbOp::Ipas2e1is {
                vmid: v,
                ipa: a,
                ttl,
            } => {
                v == vmid
                    && ttl.is_none_or(|t| t == level)
                    && a.0 <= ipa
                    && ipa < a.0 + pages_per_entry(level).max(1) * PAGE_SIZE
            }
            TlbOp::Ripas2e1is {
                vmid: v,
                base,
                pages,
                ttl,
            } => {
                v == vmid
                    && ttl.is_none_or(|t| t == level)
                    && base.0 <= ipa
                    && ipa < base.0 + pages * PAGE_SIZE
            }
            _ => false,
        })
    }

    fn expressible(n: u64) -> bool {
        (0..=RANGE_MAX_SCALE).any(|s| (0..=RANGE_MAX_NUM).any(|num| range_pages(num, s) == n))
    }

    /// libxl's unmap of a loaded kernel through privcmd: ~12 000 single
    /// removes of gfns handed out by dom0's unpopulated-alloc, in no order
    /// (here: descending, every third page skipped, in 4 clusters spread
    /// over 768 MiB). Before the covering this planned one IPAS2E1IS per
    /// page.
    #[test]
    fn scattered_singles_are_covered_by_a_few_ranges() {
        let mut s = InvalidationSet::new();
        let mut pages = Vec::new();
        for cluster in 0..4u64 {
            let base = 0x1_0000_0000 + cluster * (192 << 20);
            for i in (0..4500u64).rev().filter(|i| i % 3 != 1) {
                pages.push(base + i * PAGE_SIZE);
            }
        }
        for &a in &pages {
            s.add(Ipa(a), 1, 3);
        }
        assert_eq!(s.ranges().len(), pages.len(), "every single its own run");
        let p = plan(Vmid(4), &s, &TR);
        assert!(check_barriers_ok(&p));
        assert_eq!(p.count(TlbOpKind::Vmalls12e1is), 0);
        assert_eq!(p.count(TlbOpKind::Ipas2e1is), 0);
        // 768 MiB of span: one 1 GiB cover.
        assert_eq!(p.count(TlbOpKind::Ripas2e1is), 1, "{:?}", p.ops());
        assert_eq!(p.tlbis(), 2, "one RIPAS2E1IS + VMALLE1IS");
        for &a in &pages {
            assert!(covered(&p, Vmid(4), a, 3), "{a:#x} not invalidated");
        }
        for o in p.ops() {
            if let TlbOp::Ripas2e1is { pages, ttl, .. } = *o {
                assert!(expressible(pages), "{pages}");
                assert_eq!(ttl, Some(3), "all runs are pages: hint kept");
            }
        }
        assert_eq!(targeted_tlbis(&s, true), 1);
        // Without FEAT_TLBIRANGE: still one IPAS2E1IS per page (sorted).
        let p = plan(Vmid(4), &s, &T);
        assert_eq!(p.count(TlbOpKind::Ipas2e1is), pages.len() as u64);
        for &a in pages.iter().step_by(97) {
            assert!(covered(&p, Vmid(4), a, 3));
        }
    }

    fn check_barriers_ok(p: &Plan) -> bool {
        crate::model::check_barriers(p.ops())
    }

    #[test]
    fn covers_are_bounded_and_drop_the_hint_across_levels() {
        // Two pages 2 GiB apart: two exact single ops, no 2 GiB cover.
        let s = set(&[(0x8000_0000, 1, 3), (0x1_0000_0000, 1, 3)]);
        let p = plan(Vmid(1), &s, &TR);
        assert_eq!(p.count(TlbOpKind::Ipas2e1is), 2, "{:?}", p.ops());
        assert_eq!(p.count(TlbOpKind::Ripas2e1is), 0);
        // Runs whose span is exactly the bound share one op; one page more
        // does not.
        let last = 0x8000_0000 + (MAX_COVER_PAGES - 1) * PAGE_SIZE;
        let s = set(&[(last, 1, 3), (0x8000_0000, 1, 3)]);
        let p = plan(Vmid(1), &s, &TR);
        assert_eq!(
            p.ops()[1],
            TlbOp::Ripas2e1is {
                vmid: Vmid(1),
                base: Ipa(0x8000_0000),
                pages: MAX_COVER_PAGES,
                ttl: Some(3)
            }
        );
        assert_eq!(p.tlbis(), 2);
        let s = set(&[(0x8000_0000, 1, 3), (last + PAGE_SIZE, 1, 3)]);
        assert_eq!(plan(Vmid(1), &s, &TR).count(TlbOpKind::Ripas2e1is), 0);
        // A page next to a 2 MiB block: one cover without a hint, and both
        // (the whole block, the page) are invalidated.
        let s = set(&[(0x4000_0000, 512, 2), (0x4030_0000, 1, 3)]);
        let p = plan(Vmid(1), &s, &TR);
        let [_, TlbOp::Ripas2e1is {
            base, pages, ttl, ..
        }, ..] = *p.ops()
        else {
            panic!("{:?}", p.ops());
        };
        assert_eq!((base, ttl), (Ipa(0x4000_0000), None));
        assert!(expressible(pages) && pages >= 0x301);
        assert!(covered(&p, Vmid(1), 0x4000_0000, 2));
        assert!(covered(&p, Vmid(1), 0x401f_f000, 2));
        assert!(covered(&p, Vmid(1), 0x4030_0000, 3));
        // Rounding up: 63 pages of span need SCALE 1 (64 pages).
        let s = set(&[(0x4000_0000, 1, 3), (0x4000_0000 + 62 * PAGE_SIZE, 1, 3)]);
        let p = plan(Vmid(1), &s, &TR);
        assert!(matches!(p.ops()[1], TlbOp::Ripas2e1is { pages: 64, .. }));
        for n in 2..5000u64 {
            let c = cover_pages(n);
            assert!(c >= n && expressible(c), "{n} -> {c}");
        }
        assert!(expressible(cover_pages(MAX_COVER_PAGES)));
    }

    #[test]
    fn single_runs_are_one_rounded_up_range() {
        for pages in [
            2u64,
            3,
            31,
            62,
            63,
            64,
            65,
            511,
            1000,
            11_922,
            MAX_COVER_PAGES,
        ] {
            let p = plan(Vmid(2), &set(&[(0x8000_0000, pages, 3)]), &TR);
            let ipa: Vec<_> = p
                .ops()
                .iter()
                .filter(|o| matches!(o, TlbOp::Ripas2e1is { .. } | TlbOp::Ipas2e1is { .. }))
                .collect();
            let [TlbOp::Ripas2e1is {
                base,
                pages: n,
                ttl: Some(3),
                ..
            }] = ipa[..]
            else {
                panic!("{pages}: {:?}", p.ops());
            };
            assert_eq!(base.0, 0x8000_0000);
            assert!(*n >= pages && expressible(*n), "{pages} -> {n}");
            // Rounded up by less than one unit of the smallest scale that
            // can express it: at most about twice the run.
            assert!(
                *n == cover_pages(pages) && *n < 2 * pages + 2,
                "{pages} -> {n}"
            );
        }
        // One page stays one IPAS2E1IS; a run of blocks is planned exactly
        // (no rounding into the next block).
        let p = plan(Vmid(2), &set(&[(0x8000_0000, 1, 3)]), &TR);
        assert_eq!(p.count(TlbOpKind::Ipas2e1is), 1);
        let p = plan(Vmid(2), &set(&[(0x8000_0000, 1536, 2)]), &TR);
        assert!(p.ops().iter().all(|o| !matches!(
            o,
            TlbOp::Ripas2e1is { pages, .. } if *pages > 1536
        )));
        assert_eq!(p.tlbis(), 2, "{:?}", p.ops());
    }

    #[test]
    fn threshold_falls_back_to_one_full_flush() {
        let bare = Policy::Targeted {
            has_range: false,
            nested: false,
        };
        let s = set(&[(0, BARE_THRESHOLD, 3)]);
        assert_eq!(plan(Vmid(1), &s, &bare).count(TlbOpKind::Vmalls12e1is), 0);
        let s = set(&[(0, BARE_THRESHOLD + 1, 3)]);
        assert_eq!(plan(Vmid(1), &s, &bare).count(TlbOpKind::Vmalls12e1is), 1);
        assert_eq!(plan(Vmid(1), &s, &T).count(TlbOpKind::Vmalls12e1is), 0);
        assert_eq!(
            plan(Vmid(1), &s, &T).count(TlbOpKind::Ipas2e1is),
            BARE_THRESHOLD + 1
        );
        let s = set(&[(0, NESTED_THRESHOLD + 1, 3)]);
        assert_eq!(plan(Vmid(1), &s, &T).count(TlbOpKind::Vmalls12e1is), 1);
        // With ranges the same set is a handful of instructions.
        assert!(plan(Vmid(1), &s, &TR).tlbis() <= 4);
    }

    #[test]
    fn every_plan_has_its_barriers() {
        use crate::model::check_barriers;
        let sets = [
            set(&[(0x4000_1000, 1, 3)]),
            set(&[(0x4000_0000, 1024, 2), (0x9000_0000, 77, 3)]),
            set(&[(0, NESTED_THRESHOLD + 1, 3)]),
        ];
        for pol in [Policy::XenCompat, T, TR] {
            for s in &sets {
                let p = plan(Vmid(9), s, &pol);
                assert!(check_barriers(p.ops()), "{pol:?} {p:?}");
            }
            let mut l = crate::switch::LastRan::new();
            let _ = l.switch_to(Vmid(1), 0, &pol);
            let p = l.switch_to(Vmid(1), 1, &pol);
            assert!(!p.is_empty() && check_barriers(p.ops()));
        }
    }

    #[test]
    fn resolve_and_parse() {
        assert_eq!(PolicyChoice::parse("auto"), Some(PolicyChoice::Auto));
        assert_eq!(
            PolicyChoice::parse("xen-compat"),
            Some(PolicyChoice::XenCompat)
        );
        assert_eq!(
            PolicyChoice::parse("targeted"),
            Some(PolicyChoice::Targeted)
        );
        assert_eq!(PolicyChoice::parse("fast"), None);
        assert_eq!(
            resolve(PolicyChoice::XenCompat, true, true),
            Policy::XenCompat
        );
        assert_eq!(
            resolve(PolicyChoice::Auto, true, false),
            Policy::Targeted {
                has_range: false,
                nested: true
            }
        );
        assert_eq!(
            resolve(PolicyChoice::Targeted, false, true).threshold(),
            BARE_THRESHOLD
        );
    }
}
