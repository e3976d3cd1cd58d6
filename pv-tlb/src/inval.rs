//! Invalidation sets: *what* changed in one stage-2 table.
//!
//! A set belongs to one stage-2 translation regime (one domain, one VMID).
//! It does not carry the VMID itself: VMIDs are assigned by hv and can be
//! recycled on rollover independently of the tables, so the VMID is supplied
//! when a set is planned ([`crate::plan::plan`]) or gathered
//! ([`crate::deferred::DeferredFlush`]).
//!
//! Each entry is a run of IPA pages whose stage-2 leaf entries were removed
//! or weakened, with the level of those leaf entries (1 = 1 GiB block,
//! 2 = 2 MiB block, 3 = 4 KiB page). The level is the FEAT_TTL hint and also
//! tells the planner how many IPA-based TLBIs a run needs: one per leaf entry.
//! Level 0 means "level not known": a table entry was removed, so leaves of
//! any level below it and the walk-cache copies of the table entry itself
//! must go; its TLBIs carry no TTL hint (as Linux's `tlb_get_level` returns 0
//! when tables are freed: the hint is only valid for leaf entries).

use alloc::vec::Vec;

use crate::addr::{Ipa, PAGE_SHIFT};

/// Number of 4 KiB pages covered by one leaf entry at `level` (1..=3) with a 4 KiB granule.
///
/// Returns 0 for any other level.
#[must_use]
pub const fn pages_per_entry(level: u8) -> u64 {
    match level {
        1 => 1 << 18,
        2 => 1 << 9,
        3 => 1,
        _ => 0,
    }
}

/// A run of IPA pages whose leaf entries, all at one level, changed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct IpaRange {
    /// Page-aligned first IPA (aligned to the leaf size of `level`).
    pub base: Ipa,
    /// Number of 4 KiB pages (a multiple of [`pages_per_entry`]`(level)`).
    pub pages: u64,
    /// Level (1..=3) of the leaf entries that were removed or weakened, or 0
    /// when a table entry was removed (no TTL hint; one TLBI per page).
    pub level: u8,
}

impl IpaRange {
    /// One past the last IPA of the run (saturating).
    #[must_use]
    pub fn end(&self) -> Ipa {
        Ipa(self
            .base
            .0
            .saturating_add(self.pages.saturating_mul(1 << PAGE_SHIFT)))
    }

    /// True if `ipa` lies in the run.
    #[must_use]
    pub fn contains(&self, ipa: Ipa) -> bool {
        ipa >= self.base && ipa < self.end()
    }

    /// Number of leaf entries (one IPA-based TLBI each).
    #[must_use]
    pub fn entries(&self) -> u64 {
        match pages_per_entry(self.level) {
            0 => self.pages,
            n => self.pages.div_ceil(n),
        }
    }
}

/// What changed in one stage-2 table and must be invalidated before the
/// change can be relied on.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct InvalidationSet {
    ranges: Vec<IpaRange>,
    stage1: bool,
}

impl InvalidationSet {
    /// An empty set.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            ranges: Vec::new(),
            stage1: false,
        }
    }

    /// Record that `pages` pages from `base`, mapped by leaf entries at
    /// `level`, changed. Extends the last run when contiguous at the same level.
    /// A zero-page record is ignored. Any stage-2 removal also needs the
    /// VMID's combined stage-1+2 entries dropped, so this sets
    /// [`needs_stage1`](Self::needs_stage1).
    pub fn add(&mut self, base: Ipa, pages: u64, level: u8) {
        if pages == 0 {
            return;
        }
        self.stage1 = true;
        if let Some(last) = self.ranges.last_mut() {
            if last.level == level && last.end() == base {
                last.pages = last.pages.saturating_add(pages);
                return;
            }
        }
        self.ranges.push(IpaRange { base, pages, level });
    }

    /// Record that a table entry covering `base` was removed whose leaves
    /// were all removed and invalidated before: only walk-cache copies of
    /// the table entry can remain, and one IPA-based TLBI of any IPA it
    /// covered, without a level hint, drops them. Nothing combined
    /// (stage-1+2) can have been cached through an empty table, so this
    /// does not set [`needs_stage1`](Self::needs_stage1).
    pub fn add_walk(&mut self, base: Ipa) {
        self.ranges.push(IpaRange {
            base,
            pages: 1,
            level: 0,
        });
    }

    /// Record that only stage-1 (combined) entries of this VMID must go
    /// (e.g. after a guest-visible change that does not touch stage-2 leaves).
    pub fn add_stage1(&mut self) {
        self.stage1 = true;
    }

    /// Reserve room for `additional` more runs without panicking.
    ///
    /// # Errors
    /// When the allocator cannot provide the room (callers flush instead).
    pub fn try_reserve(
        &mut self,
        additional: usize,
    ) -> Result<(), alloc::collections::TryReserveError> {
        self.ranges.try_reserve(additional)
    }

    /// Add every run of `other` to `self`.
    pub fn merge(&mut self, other: &InvalidationSet) {
        for r in &other.ranges {
            self.add(r.base, r.pages, r.level);
        }
        self.stage1 |= other.stage1;
    }

    /// The runs, in the order they were recorded (sorted once
    /// [normalized](Self::normalize)).
    #[must_use]
    pub fn ranges(&self) -> &[IpaRange] {
        &self.ranges
    }

    /// True if the VMID's stage-1 (combined stage-1+2) entries must be dropped.
    #[must_use]
    pub fn needs_stage1(&self) -> bool {
        self.stage1
    }

    /// True if nothing needs invalidating.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && !self.stage1
    }

    /// Total 4 KiB pages covered.
    #[must_use]
    pub fn pages(&self) -> u64 {
        self.ranges
            .iter()
            .fold(0u64, |a, r| a.saturating_add(r.pages))
    }

    /// Total leaf entries covered (what a per-entry IPA-TLBI plan issues).
    #[must_use]
    pub fn entries(&self) -> u64 {
        self.ranges
            .iter()
            .fold(0u64, |a, r| a.saturating_add(r.entries()))
    }

    /// True if the page containing `ipa` is in the set.
    #[must_use]
    pub fn contains(&self, ipa: Ipa) -> bool {
        self.ranges.iter().any(|r| r.contains(ipa))
    }

    /// Sort the runs by IPA and merge runs of one level that touch or
    /// overlap (in place, no allocation): the order removes arrive in, e.g.
    /// a guest unmapping a descending list of frames, no longer splits
    /// runs. Runs of different levels stay apart (each keeps its hint).
    pub fn normalize(&mut self) {
        self.ranges.sort_unstable_by_key(|r| (r.base, r.level));
        let mut w = 0usize;
        for i in 0..self.ranges.len() {
            let r = self.ranges[i];
            if w > 0 {
                let last = &mut self.ranges[w - 1];
                if last.level == r.level && r.base <= last.end() {
                    let end = last.end().max(r.end());
                    last.pages = (end.0 - last.base.0) >> PAGE_SHIFT;
                    continue;
                }
            }
            self.ranges[w] = r;
            w += 1;
        }
        self.ranges.truncate(w);
    }

    /// True if [`normalize`](Self::normalize) would change nothing.
    #[must_use]
    pub fn is_normalized(&self) -> bool {
        self.ranges.windows(2).all(|w| {
            (w[0].base, w[0].level) < (w[1].base, w[1].level)
                && !(w[0].level == w[1].level && w[1].base <= w[0].end())
        })
    }

    /// The same set, [normalized](Self::normalize).
    #[must_use]
    pub fn normalized(&self) -> InvalidationSet {
        let mut s = self.clone();
        s.normalize();
        s
    }

    /// Pages from the lowest IPA the set covers to one past its highest
    /// (0 for a set without runs).
    #[must_use]
    pub fn span_pages(&self) -> u64 {
        let lo = self.ranges.iter().map(|r| r.base.0).min();
        let hi = self.ranges.iter().map(|r| r.end().0).max();
        match (lo, hi) {
            (Some(lo), Some(hi)) => (hi - lo) >> PAGE_SHIFT,
            _ => 0,
        }
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.stage1 = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_same_level_runs_merge() {
        let mut s = InvalidationSet::new();
        s.add(Ipa(0x4000_0000), 1, 3);
        s.add(Ipa(0x4000_1000), 2, 3);
        s.add(Ipa(0x4000_3000), 0, 3);
        assert_eq!(s.ranges().len(), 1);
        assert_eq!(s.pages(), 3);
        assert!(s.needs_stage1());
        s.add(Ipa(0x4000_4000), 512, 2);
        assert_eq!(s.ranges().len(), 2);
        assert_eq!(s.entries(), 4);
        assert!(s.contains(Ipa(0x4000_2fff)));
        assert!(!s.contains(Ipa(0x4020_4000)));
        s.clear();
        assert!(s.is_empty());
        s.add_walk(Ipa(0x4020_0000));
        assert!(!s.is_empty() && !s.needs_stage1());
        assert_eq!((s.pages(), s.entries()), (1, 1));
    }

    #[test]
    fn normalize_sorts_and_merges_descending_singles() {
        let mut s = InvalidationSet::new();
        // A descending unmap: 8 singles, then a duplicate, then a block run
        // next to them (another level: kept apart) and a far page.
        for i in (0..8u64).rev() {
            s.add(Ipa(0x9000_0000 + (i << 12)), 1, 3);
        }
        s.add(Ipa(0x9000_3000), 2, 3);
        s.add(Ipa(0x9020_0000), 512, 2);
        s.add(Ipa(0x4000_0000), 1, 3);
        assert_eq!(s.ranges().len(), 11);
        assert!(!s.is_normalized());
        assert_eq!(s.span_pages(), (0x9040_0000 - 0x4000_0000) >> 12);
        let n = s.normalized();
        assert!(n.is_normalized() && n.needs_stage1());
        assert_eq!(
            n.ranges(),
            [
                IpaRange {
                    base: Ipa(0x4000_0000),
                    pages: 1,
                    level: 3
                },
                IpaRange {
                    base: Ipa(0x9000_0000),
                    pages: 8,
                    level: 3
                },
                IpaRange {
                    base: Ipa(0x9020_0000),
                    pages: 512,
                    level: 2
                },
            ]
        );
        s.normalize();
        assert_eq!(s, n);
        assert!(InvalidationSet::new().is_normalized());
    }
}
