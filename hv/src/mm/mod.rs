//! Physical memory management: address ranges and the frame allocator.

pub mod frame;
pub mod heap;
pub mod idmap;
pub mod tlbi;

use pv_tlb::{PhysAddr, PAGE_SIZE};

/// A range of host physical addresses `[base, base + size)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MemRange {
    /// First byte.
    pub base: PhysAddr,
    /// Length in bytes.
    pub size: u64,
}

impl MemRange {
    /// A range of `size` bytes at `base`.
    #[must_use]
    pub const fn new(base: u64, size: u64) -> Self {
        Self {
            base: PhysAddr(base),
            size,
        }
    }

    /// One past the last byte (saturating at `u64::MAX`).
    #[must_use]
    pub const fn end(&self) -> u64 {
        self.base.0.saturating_add(self.size)
    }

    /// True if `pa` lies in the range.
    #[must_use]
    pub const fn contains(&self, pa: u64) -> bool {
        pa >= self.base.0 && pa < self.end()
    }

    /// True if the two ranges share at least one byte.
    #[must_use]
    pub const fn overlaps(&self, other: &MemRange) -> bool {
        self.base.0 < other.end() && other.base.0 < self.end()
    }

    /// First and one-past-last page frame numbers of the whole pages inside the range.
    #[must_use]
    pub const fn inner_pages(&self) -> (u64, u64) {
        let first = self.base.0.div_ceil(PAGE_SIZE);
        let last = self.end() / PAGE_SIZE;
        if last < first {
            (first, first)
        } else {
            (first, last)
        }
    }

    /// First and one-past-last page frame numbers of every page the range touches.
    #[must_use]
    pub const fn outer_pages(&self) -> (u64, u64) {
        (self.base.0 / PAGE_SIZE, self.end().div_ceil(PAGE_SIZE))
    }
}
