//! Physical frame allocator.
//!
//! Manages 4 KiB frames of the DTB's RAM minus everything hv must not hand
//! out (its own image, the DTB, reserved regions, boot modules, the
//! allocator's own bitmaps). Two bitmaps per RAM region: `managed` (the frame
//! belongs to the pool at all) and `free`. A free of a frame that is not
//! managed or already free is logged and rejected as a whole, so a buggy
//! caller can never corrupt the pool.
//!
//! The bitmaps live in storage handed to [`FrameAllocator::new`]: on the
//! target the boot code carves it out of RAM (see [`FrameAllocator::storage_words`]
//! and [`FrameAllocator::find_storage`]); host tests pass a leaked `Vec`.

use super::MemRange;
use pv_tlb::{PhysAddr, PAGE_SIZE};
use spin::{Mutex, Once};

/// Maximum RAM regions managed.
pub const MAX_REGIONS: usize = 8;

#[derive(Clone, Copy, Default, Debug)]
struct Region {
    /// First frame number.
    base_pfn: u64,
    /// Number of frames.
    frames: u64,
    /// Index of this region's first word in the bitmaps.
    word: usize,
    /// No frame below this one (absolute frame number) is free: where
    /// searches start, so first-fit does not rescan the allocated prefix.
    hint: u64,
}

/// Why a [`FrameAllocator`] could not be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrameError {
    /// More than [`MAX_REGIONS`] RAM ranges.
    TooManyRegions,
    /// The storage slice is smaller than [`FrameAllocator::storage_words`].
    StorageTooSmall {
        /// Words needed.
        needed: usize,
    },
}

/// A free that was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FreeError {
    /// The address is not 4 KiB aligned.
    Unaligned(PhysAddr),
    /// This frame was never part of the pool (reserved, hv's image, not RAM).
    NotManaged(PhysAddr),
    /// This frame is already free (double free).
    AlreadyFree(PhysAddr),
}

/// The physical frame allocator.
#[derive(Debug)]
pub struct FrameAllocator {
    regions: [Region; MAX_REGIONS],
    nregions: usize,
    managed: &'static mut [u64],
    free: &'static mut [u64],
    free_count: usize,
    rejected_frees: u64,
}

fn bit(words: &[u64], i: usize) -> bool {
    words[i / 64] & (1 << (i % 64)) != 0
}
fn set(words: &mut [u64], i: usize, v: bool) {
    if v {
        words[i / 64] |= 1 << (i % 64);
    } else {
        words[i / 64] &= !(1 << (i % 64));
    }
}

impl FrameAllocator {
    /// 64-bit words of storage needed to manage `ram` (both bitmaps).
    #[must_use]
    pub fn storage_words(ram: &[MemRange]) -> usize {
        2 * ram
            .iter()
            .map(|r| {
                let (a, b) = r.inner_pages();
                ((b - a) as usize).div_ceil(64)
            })
            .sum::<usize>()
    }

    /// A page-aligned place for `bytes` of allocator storage: the lowest
    /// address in `ram` that overlaps nothing in `exclude`.
    #[must_use]
    pub fn find_storage(ram: &[MemRange], exclude: &[MemRange], bytes: u64) -> Option<PhysAddr> {
        let len = bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        for r in ram {
            let (first, last) = r.inner_pages();
            let mut pfn = first;
            while pfn * PAGE_SIZE + len <= last * PAGE_SIZE {
                let cand = MemRange::new(pfn * PAGE_SIZE, len);
                match exclude.iter().find(|e| e.size != 0 && e.overlaps(&cand)) {
                    None => return Some(cand.base),
                    Some(e) => pfn = e.outer_pages().1.max(pfn + 1),
                }
            }
        }
        None
    }

    /// Build an allocator over the whole pages of `ram`, minus every page
    /// touched by a range of `exclude`. `storage` holds the bitmaps.
    ///
    /// # Errors
    /// [`FrameError::TooManyRegions`] for more than [`MAX_REGIONS`] ranges;
    /// [`FrameError::StorageTooSmall`] if `storage` is shorter than
    /// [`FrameAllocator::storage_words`]`(ram)`.
    pub fn new(
        ram: &[MemRange],
        exclude: &[MemRange],
        storage: &'static mut [u64],
    ) -> Result<Self, FrameError> {
        if ram.len() > MAX_REGIONS {
            return Err(FrameError::TooManyRegions);
        }
        let needed = Self::storage_words(ram);
        if storage.len() < needed {
            return Err(FrameError::StorageTooSmall { needed });
        }
        let (managed, free) = storage[..needed].split_at_mut(needed / 2);
        managed.fill(0);
        free.fill(0);
        let mut fa = Self {
            regions: [Region::default(); MAX_REGIONS],
            nregions: 0,
            managed,
            free,
            free_count: 0,
            rejected_frees: 0,
        };
        let mut word = 0;
        for r in ram {
            let (a, b) = r.inner_pages();
            let frames = b - a;
            fa.regions[fa.nregions] = Region {
                base_pfn: a,
                frames,
                word,
                hint: a,
            };
            fa.nregions += 1;
            for i in 0..frames as usize {
                set(fa.managed, word * 64 + i, true);
                set(fa.free, word * 64 + i, true);
            }
            word += (frames as usize).div_ceil(64);
        }
        for e in exclude.iter().filter(|e| e.size != 0) {
            let (a, b) = e.outer_pages();
            for ri in 0..fa.nregions {
                let r = fa.regions[ri];
                let lo = a.max(r.base_pfn);
                let hi = b.min(r.base_pfn + r.frames);
                for pfn in lo..hi {
                    let i = r.word * 64 + (pfn - r.base_pfn) as usize;
                    set(fa.managed, i, false);
                    set(fa.free, i, false);
                }
            }
        }
        fa.free_count = fa.free.iter().map(|w| w.count_ones() as usize).sum();
        Ok(fa)
    }

    /// First frame `>= from` in region `r` whose free bit equals `want`
    /// (skipping whole words), or the region's end.
    fn scan(&self, r: &Region, from: u64, want: bool) -> u64 {
        let end = r.base_pfn + r.frames;
        let mut pfn = from;
        while pfn < end {
            let i = r.word * 64 + (pfn - r.base_pfn) as usize;
            let w = self.free[i / 64];
            let w = if want { w } else { !w } >> (i % 64);
            if w == 0 {
                pfn += 64 - (i % 64) as u64;
                continue;
            }
            pfn += u64::from(w.trailing_zeros());
            break;
        }
        pfn.min(end)
    }

    /// Allocate `count` contiguous frames whose first frame number is a
    /// multiple of `align_pages` (0 counts as 1). The frames are not zeroed.
    /// First fit, by region, from each region's hint.
    pub fn alloc(&mut self, count: usize, align_pages: usize) -> Option<PhysAddr> {
        if count == 0 || count > self.free_count {
            return None;
        }
        let (count, align) = (count as u64, align_pages.max(1) as u64);
        for ri in 0..self.nregions {
            let r = self.regions[ri];
            let end = r.base_pfn + r.frames;
            let first_free = self.scan(&r, r.hint.max(r.base_pfn), true);
            let mut from = first_free;
            loop {
                let cand = self.scan(&r, from, true).next_multiple_of(align);
                if cand.checked_add(count).is_none_or(|e| e > end) {
                    break;
                }
                let run_end = self.scan(&r, cand, false);
                if run_end < cand + count {
                    from = run_end + 1; // the run is too short: look past its end
                    continue;
                }
                let start = r.word * 64 + (cand - r.base_pfn) as usize;
                for i in start..start + count as usize {
                    set(self.free, i, false);
                }
                self.free_count -= count as usize;
                if cand == first_free {
                    self.regions[ri].hint = cand + count;
                } else {
                    self.regions[ri].hint = first_free;
                }
                return Some(PhysAddr::from_page_number(cand));
            }
            self.regions[ri].hint = first_free;
        }
        None
    }

    /// Check a free without doing it.
    ///
    /// # Errors
    /// The first frame of the range that may not be freed, and why.
    pub fn check_free(&self, pa: PhysAddr, count: usize) -> Result<(), FreeError> {
        if !pa.is_aligned(PAGE_SIZE) {
            return Err(FreeError::Unaligned(pa));
        }
        for k in 0..count as u64 {
            let pfn = pa.page_number() + k;
            let frame = PhysAddr::from_page_number(pfn);
            let Some(i) = self.index(pfn) else {
                return Err(FreeError::NotManaged(frame));
            };
            if !bit(self.managed, i) {
                return Err(FreeError::NotManaged(frame));
            }
            if bit(self.free, i) {
                return Err(FreeError::AlreadyFree(frame));
            }
        }
        Ok(())
    }

    /// Return `count` frames starting at `pa` to the pool. A double free or a
    /// free of a frame that was never allocated is logged and the whole call
    /// is ignored (see [`FrameAllocator::rejected_frees`]).
    pub fn free(&mut self, pa: PhysAddr, count: usize) {
        if let Err(e) = self.check_free(pa, count) {
            self.rejected_frees += 1;
            log::error!("frame allocator: refusing free({pa}, {count}): {e:?}");
            return;
        }
        for k in 0..count as u64 {
            let pfn = pa.page_number() + k;
            if let Some(i) = self.index(pfn) {
                set(self.free, i, true);
            }
            for r in &mut self.regions[..self.nregions] {
                if pfn >= r.base_pfn && pfn < r.base_pfn + r.frames && pfn < r.hint {
                    r.hint = pfn;
                }
            }
        }
        self.free_count += count;
    }

    /// Number of free frames.
    #[must_use]
    pub fn free_count(&self) -> usize {
        self.free_count
    }

    /// Number of refused [`FrameAllocator::free`] calls so far.
    #[must_use]
    pub fn rejected_frees(&self) -> u64 {
        self.rejected_frees
    }

    /// True if `pa`'s frame is managed by this allocator and currently allocated.
    #[must_use]
    pub fn is_allocated(&self, pa: PhysAddr) -> bool {
        self.index(pa.page_number())
            .is_some_and(|i| bit(self.managed, i) && !bit(self.free, i))
    }

    fn index(&self, pfn: u64) -> Option<usize> {
        self.regions[..self.nregions]
            .iter()
            .find(|r| pfn >= r.base_pfn && pfn < r.base_pfn + r.frames)
            .map(|r| r.word * 64 + (pfn - r.base_pfn) as usize)
    }
}

static FRAMES: Once<Mutex<FrameAllocator>> = Once::new();

/// Install the global frame allocator (boot CPU, once). Later calls are ignored.
pub fn init(fa: FrameAllocator) {
    FRAMES.call_once(|| Mutex::new(fa));
}

/// The global frame allocator, if [`init`] has run (hv_op's resource report).
pub fn try_frames() -> Option<&'static Mutex<FrameAllocator>> {
    FRAMES.get()
}

/// The global frame allocator.
///
/// # Panics
/// If called before [`init`] (a boot-order bug, not reachable from guests).
pub fn frames() -> &'static Mutex<FrameAllocator> {
    FRAMES
        .get()
        .expect("mm::frame::frames() used before mm::frame::init()")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::boxed::Box;
    use std::collections::BTreeSet;
    use std::vec;

    fn storage(ram: &[MemRange]) -> &'static mut [u64] {
        // Poison the storage: new() must clear it.
        Box::leak(vec![0xdead_beef_u64; FrameAllocator::storage_words(ram)].into_boxed_slice())
    }

    fn fa(ram: &[MemRange], exclude: &[MemRange]) -> FrameAllocator {
        FrameAllocator::new(ram, exclude, storage(ram)).unwrap()
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn excludes_image_dtb_reserved_and_modules() {
        let ram = [MemRange::new(0x4000_0000, 16 * MIB)];
        let exclude = [
            MemRange::new(0x4020_0000, 0x12_3456), // hv image, unaligned end
            MemRange::new(0x4080_0123, 0x2000),    // DTB, unaligned: touches 3 pages
            MemRange::new(0x40f0_0000, 0x10_0000), // reserved, last MiB
        ];
        let mut a = fa(&ram, &exclude);
        let image_pages = 0x12_3456_u64.div_ceil(4096);
        assert_eq!(
            a.free_count() as u64,
            4096 - image_pages - 3 - 256,
            "all excluded pages are gone"
        );
        let mut got = BTreeSet::new();
        while let Some(p) = a.alloc(1, 1) {
            for e in &exclude {
                assert!(
                    !e.overlaps(&MemRange::new(p.raw(), 4096)),
                    "{p} is excluded"
                );
            }
            assert!(got.insert(p.raw()), "{p} handed out twice");
        }
        assert_eq!(a.free_count(), 0);
        assert_eq!(got.len() as u64, 4096 - image_pages - 3 - 256);
    }

    #[test]
    fn unaligned_ram_is_shrunk_to_whole_pages() {
        let ram = [MemRange::new(0x1000_0800, 0x3000)];
        let mut a = fa(&ram, &[]);
        assert_eq!(a.free_count(), 2);
        assert_eq!(a.alloc(2, 1), Some(PhysAddr(0x1000_1000)));
    }

    #[test]
    fn contiguous_and_aligned() {
        let ram = [MemRange::new(0x4000_1000, 4 * MIB)];
        let mut a = fa(&ram, &[]);
        let p = a.alloc(16, 512).unwrap();
        assert!(p.is_aligned(2 * MIB), "{p}");
        assert_eq!(p, PhysAddr(0x4020_0000));
        let q = a.alloc(3, 1).unwrap();
        assert_eq!(q, PhysAddr(0x4000_1000));
        let r = a.alloc(1, 4).unwrap();
        assert_eq!(
            r,
            PhysAddr(0x4000_4000),
            "next 4-page aligned frame after q"
        );
        assert_eq!(a.alloc(1024, 1), None, "more than is contiguous");
    }

    #[test]
    fn double_free_and_foreign_free_are_rejected_without_damage() {
        let ram = [MemRange::new(0x4000_0000, MIB)];
        let image = MemRange::new(0x4000_0000, 0x4000);
        let mut a = fa(&ram, &[image]);
        let total = a.free_count();
        let p = a.alloc(4, 1).unwrap();
        a.free(p, 4);
        assert_eq!(a.free_count(), total);
        a.free(p, 4); // double free
        assert_eq!(a.rejected_frees(), 1);
        assert_eq!(a.free_count(), total);
        a.free(PhysAddr(0x4000_0000), 1); // hv's image: never allocated
        assert_eq!(a.rejected_frees(), 2);
        a.free(PhysAddr(0x9000_0000), 1); // not RAM
        assert_eq!(a.rejected_frees(), 3);
        a.free(PhysAddr(0x4001_0010), 1); // unaligned
        assert_eq!(a.rejected_frees(), 4);
        // A range that is partly allocated is refused as a whole.
        let q = a.alloc(2, 1).unwrap();
        assert_eq!(
            a.check_free(q, 3),
            Err(FreeError::AlreadyFree(PhysAddr(q.raw() + 0x2000)))
        );
        a.free(q, 3);
        assert!(a.is_allocated(q));
        assert_eq!(a.free_count(), total - 2);
        assert!(!a.is_allocated(PhysAddr(0x4000_0000)));
    }

    #[test]
    fn storage_placement_avoids_exclusions() {
        let ram = [MemRange::new(0x4000_0000, 4 * MIB)];
        let ex = [
            MemRange::new(0x4000_0000, 0x1800),
            MemRange::new(0x4000_3000, 0x1000),
        ];
        assert_eq!(
            FrameAllocator::find_storage(&ram, &ex, 0x1000),
            Some(PhysAddr(0x4000_2000))
        );
        assert_eq!(
            FrameAllocator::find_storage(&ram, &ex, 0x2000),
            Some(PhysAddr(0x4000_4000))
        );
        assert_eq!(FrameAllocator::find_storage(&ram, &ex, 8 * MIB), None);
        assert_eq!(
            FrameAllocator::new(&ram, &[], Box::leak(Box::new([0u64; 2]))).unwrap_err(),
            FrameError::StorageTooSmall { needed: 32 }
        );
    }

    #[test]
    fn one_gib_one_frame_at_a_time() {
        // 262144 single-frame allocations and frees: the hint keeps first fit
        // from rescanning the allocated prefix (quadratic otherwise).
        let ram = [MemRange::new(0x4000_0000, 1 << 30)];
        let mut a = fa(&ram, &[MemRange::new(0x4020_0000, 0x10_0000)]);
        let total = a.free_count();
        let mut prev = 0;
        for _ in 0..total {
            let p = a.alloc(1, 1).unwrap().raw();
            assert!(p > prev, "first fit goes upward: {p:#x} after {prev:#x}");
            prev = p;
        }
        assert_eq!(a.alloc(1, 1), None);
        a.free(PhysAddr(0x4000_3000), 1);
        assert_eq!(
            a.alloc(1, 1),
            Some(PhysAddr(0x4000_3000)),
            "a freed frame is found again"
        );
        assert_eq!(a.free_count(), 0);
    }

    #[test]
    fn two_regions() {
        let ram = [
            MemRange::new(0x4000_0000, 0x2000),
            MemRange::new(0x8_0000_0000, 0x10_0000),
        ];
        let mut a = fa(&ram, &[]);
        assert_eq!(a.free_count(), 2 + 256);
        assert_eq!(
            a.alloc(4, 1),
            Some(PhysAddr(0x8_0000_0000)),
            "first fit skips the small region"
        );
        assert_eq!(a.alloc(2, 1), Some(PhysAddr(0x4000_0000)));
    }

    proptest! {
        /// Against a model: allocations never overlap, never touch excluded
        /// pages, frees of live blocks succeed and the free count matches.
        #[test]
        fn model(ops in prop::collection::vec((1usize..40, 0usize..4, any::<bool>(), any::<prop::sample::Index>()), 1..200)) {
            let ram = [MemRange::new(0x4000_0000, 2 * MIB), MemRange::new(0x5000_0000, MIB)];
            let ex = [MemRange::new(0x4004_0000, 0x8000)];
            let mut a = fa(&ram, &ex);
            let total = a.free_count();
            let mut live: std::vec::Vec<(u64, usize)> = std::vec::Vec::new();
            let mut used = BTreeSet::new();
            for (count, align_log, do_free, idx) in ops {
                if do_free && !live.is_empty() {
                    let (p, n) = live.swap_remove(idx.index(live.len()));
                    a.free(PhysAddr(p), n);
                    for k in 0..n as u64 { used.remove(&(p + k * 4096)); }
                } else if let Some(p) = a.alloc(count, 1 << align_log) {
                    prop_assert_eq!(p.page_number() % (1 << align_log), 0);
                    for k in 0..count as u64 {
                        let f = p.raw() + k * 4096;
                        prop_assert!(used.insert(f), "overlap at {:#x}", f);
                        prop_assert!(!ex[0].contains(f));
                        prop_assert!(ram.iter().any(|r| r.contains(f)));
                    }
                    live.push((p.raw(), count));
                }
                prop_assert_eq!(a.free_count(), total - used.len());
            }
            prop_assert_eq!(a.rejected_frees(), 0);
        }
    }
}
