//! Where things go: the domU's RAM extents and boot modules (the policy of
//! Xen's toolstack, `tools/libs/guest/xg_dom_arm.c`), the list of domU pages
//! the builder writes, and the control domain's own free RAM for scratch
//! arrays.

use crate::fdt::Region;
use crate::image::ImageHeader;

/// 4 KiB.
pub const PAGE: u64 = 4096;
/// 2 MiB: one order-9 extent.
pub const SUPERPAGE: u64 = 2 << 20;

/// Why the images do not fit the domU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LayoutError {
    /// Kernel, initrd and DTB need more RAM than the domU has.
    TooBig {
        /// Bytes needed (kernel rounded to 2 MiB, modules to pages).
        needed: u64,
        /// RAM size.
        ram: u64,
    },
    /// The RAM base is not 2 MiB aligned or the size not a page multiple.
    BadRam,
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LayoutError::TooBig { needed, ram } => {
                write!(f, "images need {needed:#x} bytes, domU RAM is {ram:#x}")
            }
            LayoutError::BadRam => write!(f, "domU RAM not 2 MiB aligned / page sized"),
        }
    }
}

fn round_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// The domU's RAM as populate_physmap extents: `(first gfn, count)` of
/// order-9 extents, then `(first gfn, count)` of order-0 pages after them.
#[must_use]
pub fn ram_extents(ram_base: u64, ram_size: u64) -> ((u64, u64), (u64, u64)) {
    let base_gfn = ram_base / PAGE;
    let n2m = if ram_base.is_multiple_of(SUPERPAGE) {
        ram_size / SUPERPAGE
    } else {
        0
    };
    let tail_gfn = base_gfn + n2m * (SUPERPAGE / PAGE);
    let tail = ram_size / PAGE - n2m * (SUPERPAGE / PAGE);
    ((base_gfn, n2m), (tail_gfn, tail))
}

/// Where the kernel, initrd and DTB go in the domU (IPAs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Placement {
    /// Kernel load address = entry point (RAM base + text_offset).
    pub kernel: u64,
    /// Initrd start (page aligned) when there is one.
    pub initrd: Option<u64>,
    /// DTB address (page aligned).
    pub dtb: u64,
}

/// Place the images like `xg_dom_arm.c:meminit`: kernel at base +
/// text_offset; the modules (initrd, then DTB, each rounded to pages) at
/// 128 MiB if RAM reaches beyond it and the kernel ends below it, else at the
/// top of RAM, else just below the kernel.
///
/// # Errors
/// [`LayoutError`] when they do not fit or the RAM is misaligned.
pub fn place(
    ram: Region,
    hdr: &ImageHeader,
    initrd_len: u64,
    dtb_len: u64,
) -> Result<Placement, LayoutError> {
    if !ram.base.is_multiple_of(SUPERPAGE) || !ram.size.is_multiple_of(PAGE) {
        return Err(LayoutError::BadRam);
    }
    let kernbase = ram.base + hdr.text_offset;
    let kernend = round_up(kernbase + hdr.effective_size, SUPERPAGE);
    let dtb_size = round_up(dtb_len, PAGE);
    let ramdisk_size = round_up(initrd_len, PAGE);
    let modsize = dtb_size + ramdisk_size;
    let bank0end = ram.end();
    let ram128mb = ram.base + (128 << 20);
    let too_big = LayoutError::TooBig {
        needed: (kernend - ram.base) + modsize,
        ram: ram.size,
    };
    if kernend > bank0end || modsize + (kernend - kernbase) > ram.size {
        return Err(too_big);
    }
    let modbase = if bank0end >= ram128mb + modsize && kernend < ram128mb {
        ram128mb
    } else if bank0end - modsize > kernend {
        bank0end - modsize
    } else if kernbase - ram.base > modsize {
        kernbase - modsize
    } else {
        return Err(too_big);
    };
    let initrd = (initrd_len > 0).then_some(modbase);
    Ok(Placement {
        kernel: kernbase,
        initrd,
        dtb: modbase + ramdisk_size,
    })
}

/// Where a written page's bytes come from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Src {
    /// The kernel Image.
    Kernel,
    /// The initrd.
    Initrd,
    /// The DTB the builder wrote.
    Dtb,
    /// Zeros (extra pages asked for with `pages=`).
    Zero,
}

/// A run of domU pages filled from one source.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Segment {
    /// First domU IPA (page aligned).
    pub ipa: u64,
    /// Pages.
    pub pages: u64,
    /// Source.
    pub src: Src,
}

/// Every page the builder maps and writes, as up to 8 segments.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PageList {
    segs: [Option<Segment>; 8],
}

impl PageList {
    /// The pages of the kernel, initrd and DTB, plus zero-filled RAM pages
    /// (lowest free first) until at least `min_pages` are listed.
    #[must_use]
    pub fn new(
        ram: Region,
        p: &Placement,
        kernel_len: u64,
        initrd_len: u64,
        dtb_len: u64,
        min_pages: u64,
    ) -> Self {
        let mut segs = [None; 8];
        let pages = |len: u64| len.div_ceil(PAGE);
        segs[0] = Some(Segment {
            ipa: p.kernel,
            pages: pages(kernel_len),
            src: Src::Kernel,
        });
        if let Some(i) = p.initrd {
            segs[1] = Some(Segment {
                ipa: i,
                pages: pages(initrd_len),
                src: Src::Initrd,
            });
        }
        segs[2] = Some(Segment {
            ipa: p.dtb,
            pages: pages(dtb_len),
            src: Src::Dtb,
        });
        let mut l = Self { segs };
        let mut want = min_pages.saturating_sub(l.total_pages());
        let mut slot = 3;
        let mut at = ram.base;
        while want > 0 && slot < l.segs.len() && at < ram.end() {
            // The next image segment at or above `at`.
            let next = l
                .segs
                .iter()
                .flatten()
                .filter(|s| s.src != Src::Zero && s.ipa + s.pages * PAGE > at)
                .min_by_key(|s| s.ipa);
            let (gap_end, resume) = match next {
                Some(s) if s.ipa <= at => (at, s.ipa + s.pages * PAGE),
                Some(s) => (s.ipa, s.ipa + s.pages * PAGE),
                None => (ram.end(), ram.end()),
            };
            let n = ((gap_end - at) / PAGE).min(want);
            if n > 0 {
                l.segs[slot] = Some(Segment {
                    ipa: at,
                    pages: n,
                    src: Src::Zero,
                });
                slot += 1;
                want -= n;
            }
            at = resume;
        }
        l
    }

    /// The segments.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        self.segs.iter().flatten().copied()
    }

    /// Pages listed.
    #[must_use]
    pub fn total_pages(&self) -> u64 {
        self.segments().map(|s| s.pages).sum()
    }

    /// Page `k` of the list: (domU gfn, source, byte offset in the source).
    #[must_use]
    pub fn page(&self, k: u64) -> Option<(u64, Src, u64)> {
        let mut k = k;
        for s in self.segments() {
            if k < s.pages {
                return Some((s.ipa / PAGE + k, s.src, k * PAGE));
            }
            k -= s.pages;
        }
        None
    }
}

/// The domU gfns the builder maps: the written pages of a [`PageList`],
/// and all of each 2 MiB extent of which at least half is written (inside
/// the domU's RAM), in gfn order. A 2 MiB extent of the domU is one
/// populate_physmap order-9 extent (contiguous, aligned frames), so a whole
/// extent maps as one 2 MiB stage-2 block in the control domain: one nested
/// shadow fault instead of one per page. Its unwritten pages are the domU's
/// own scrubbed RAM, mapped and unmapped unwritten; below half written,
/// mapping the rest would cost more page operations than it saves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MapList {
    ranges: [(u64, u64); 32],
    n: usize,
}

impl MapList {
    /// The mapped ranges of `pl` in `ram`.
    #[must_use]
    pub fn new(ram: Region, pl: &PageList) -> Self {
        let mut segs = [(0u64, 0u64); 8];
        let mut ns = 0;
        for s in pl.segments().filter(|s| s.pages > 0) {
            if ns < segs.len() {
                segs[ns] = (s.ipa, s.ipa + s.pages * PAGE);
                ns += 1;
            }
        }
        let segs = &mut segs[..ns];
        segs.sort_unstable();
        let written = |lo: u64, hi: u64| -> u64 {
            segs.iter()
                .map(|&(a, b)| b.min(hi).saturating_sub(a.max(lo)))
                .sum()
        };
        let mut m = Self {
            ranges: [(0, 0); 32],
            n: 0,
        };
        for &(a0, e) in segs.iter() {
            let mut a = a0;
            while a < e {
                let xlo = a - a % SUPERPAGE;
                let xhi = xlo + SUPERPAGE;
                let b = e.min(xhi);
                let (lo, hi) = if written(xlo, xhi) >= SUPERPAGE / 2 {
                    (xlo.max(ram.base), xhi.min(ram.end()))
                } else {
                    (a, b)
                };
                m.push(lo / PAGE, hi / PAGE);
                a = b;
            }
        }
        m
    }

    /// Append gfns `g0..g1` (ascending), merged with the last range when they touch.
    fn push(&mut self, g0: u64, g1: u64) {
        if self.n > 0 {
            let last = &mut self.ranges[self.n - 1];
            if g0 <= last.0 + last.1 {
                last.1 = (last.0 + last.1).max(g1) - last.0;
                return;
            }
        }
        if self.n < self.ranges.len() {
            self.ranges[self.n] = (g0, g1 - g0);
            self.n += 1;
        }
    }

    /// The ranges `(first gfn, pages)`.
    #[must_use]
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges[..self.n]
    }

    /// Pages mapped.
    #[must_use]
    pub fn total_pages(&self) -> u64 {
        self.ranges().iter().map(|r| r.1).sum()
    }

    /// The `j`-th mapped gfn (0 past the end).
    #[must_use]
    pub fn gfn(&self, j: u64) -> u64 {
        let mut j = j;
        for &(g, p) in self.ranges() {
            if j < p {
                return g + j;
            }
            j -= p;
        }
        0
    }
}

/// Pages in a 2 MiB block.
pub const BLOCK_PAGES: u64 = SUPERPAGE / PAGE;

/// Length of the batch of pages `k..` (of `count`, at most `chunk`) whose
/// gfns are `win(k)..`: cut at the last page before `k + chunk` whose gfn is
/// 2 MiB aligned, when there is one after `k`, so that a 2 MiB aligned run
/// of gfns is never split between two hypercalls.
pub fn chunk_len(k: u64, count: u64, chunk: u64, win: impl Fn(u64) -> u64) -> u64 {
    let n = (count - k).min(chunk.max(1));
    if k + n == count {
        return n;
    }
    (k + 1..=k + n)
        .rev()
        .find(|&e| win(e).is_multiple_of(BLOCK_PAGES))
        .map_or(n, |e| e - k)
}

/// The largest part of `ram` that overlaps none of `reserved`.
#[must_use]
pub fn largest_free(ram: Region, reserved: &[Region]) -> Option<Region> {
    let mut best: Option<Region> = None;
    let mut at = ram.base;
    loop {
        // The reserved range that starts lowest among those ending above `at`.
        let next = reserved
            .iter()
            .filter(|r| r.size > 0 && r.end() > at && r.base < ram.end())
            .min_by_key(|r| r.base);
        let gap_end = next.map_or(ram.end(), |r| r.base.max(at));
        if gap_end > at && best.is_none_or(|b| gap_end - at > b.size) {
            best = Some(Region {
                base: at,
                size: gap_end - at,
            });
        }
        match next {
            Some(r) => at = r.end().max(at),
            None => return best,
        }
        if at >= ram.end() {
            return best;
        }
    }
}

/// A bump allocator over a free region (the builder's scratch memory).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Scratch {
    next: u64,
    end: u64,
}

impl Scratch {
    /// Allocate from `r`.
    #[must_use]
    pub fn new(r: Region) -> Self {
        Self {
            next: r.base,
            end: r.end(),
        }
    }

    /// `bytes` at an `align` boundary (a power of two), or `None` when full.
    pub fn alloc(&mut self, bytes: u64, align: u64) -> Option<u64> {
        let a = self.next.checked_add(align - 1)? & !(align - 1);
        let e = a.checked_add(bytes)?;
        if e > self.end {
            return None;
        }
        self.next = e;
        Some(a)
    }

    /// The allocation point, to free everything allocated after it with [`Self::reset`].
    #[must_use]
    pub fn mark(&self) -> u64 {
        self.next
    }

    /// Free everything allocated since `mark`.
    pub fn reset(&mut self, mark: u64) {
        if mark <= self.next {
            self.next = mark;
        }
    }

    /// Bytes left.
    #[must_use]
    pub fn left(&self) -> u64 {
        self.end - self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ranges_are_the_written_segments_rounded_to_2m_extents() {
        let ram = Region {
            base: 0x4000_0000,
            size: 128 << 20,
        };
        let hdr = ImageHeader {
            text_offset: 0,
            effective_size: 48_832_448,
        };
        let p = place(ram, &hdr, 1_976_832, 1195).unwrap();
        let pl = PageList::new(ram, &p, 48_832_448, 1_976_832, 1195, 0);
        let m = MapList::new(ram, &pl);
        // Kernel: 23 whole extents and 146 pages of the 24th (less than
        // half: those pages only); initrd + DTB: 484 pages of the last
        // extent of RAM (more than half: all of it).
        assert_eq!(
            m.ranges(),
            &[(0x4_0000, 23 * 512 + 146), (0x4_7e00, 512)],
            "{:?}",
            p
        );
        assert_eq!(m.total_pages(), 24 * 512 + 146);
        assert_eq!(m.gfn(0), 0x4_0000);
        assert_eq!(m.gfn(23 * 512 + 146), 0x4_7e00);
        assert_eq!(m.gfn(m.total_pages()), 0);
        // Every written page is mapped.
        for k in 0..pl.total_pages() {
            let g = pl.page(k).unwrap().0;
            assert!(m.ranges().iter().any(|r| g >= r.0 && g < r.0 + r.1));
        }
        // A few written pages map alone; segments sharing a mostly written
        // extent make it whole (and merge).
        let small = Region {
            base: 0x4000_0000,
            size: 3 << 20,
        };
        let hdr = ImageHeader {
            text_offset: 0,
            effective_size: 4096,
        };
        let p = place(small, &hdr, 8192, 100).unwrap();
        let pl = PageList::new(small, &p, 4096, 8192, 100, 0);
        let m = MapList::new(small, &pl);
        assert_eq!(m.ranges(), &[(0x4_0000, 1), (0x4_02fd, 3)], "{p:?}");
        let pl = PageList::new(small, &p, 4096, 8192, 100, 400);
        let m = MapList::new(small, &pl);
        assert_eq!(m.ranges(), &[(0x4_0000, 512), (0x4_02fd, 3)], "{p:?}");
    }

    #[test]
    fn chunks_end_on_2m_boundaries_of_the_window() {
        // Pages 0..100 at gfns 412.., then 100.. at 5000 + k (a segment jump).
        let win = |k: u64| if k < 100 { 412 + k } else { 5000 + k };
        // Cut at the last aligned gfn in reach: 5632 (k = 632); from there, 6144 (k = 1144).
        assert_eq!(chunk_len(0, 3000, 1024, win), 632);
        assert_eq!(chunk_len(632, 3000, 1000, win), 512);
        // A contiguous window: cut at gfn 512.
        assert_eq!(chunk_len(0, 3000, 1024, |k| 412 + k), 612);
        // No boundary in reach: the whole chunk; the last chunk is the rest.
        assert_eq!(chunk_len(121, 3000, 300, win), 300);
        assert_eq!(chunk_len(2900, 3000, 1024, win), 100);
        assert_eq!(chunk_len(0, 5, 0, win), 1);
    }

    const RAM16: Region = Region {
        base: 0x4000_0000,
        size: 16 << 20,
    };

    fn hdr(text_offset: u64, size: u64) -> ImageHeader {
        ImageHeader {
            text_offset,
            effective_size: size,
        }
    }

    #[test]
    fn extents_use_2m_where_they_fit() {
        assert_eq!(
            ram_extents(0x4000_0000, 16 << 20),
            ((0x40000, 8), (0x41000, 0))
        );
        assert_eq!(
            ram_extents(0x4000_0000, (5 << 20) + 8192),
            ((0x40000, 2), (0x40400, 256 + 2))
        );
        assert_eq!(
            ram_extents(0x4000_1000, 1 << 20),
            ((0x40001, 0), (0x40001, 256))
        );
    }

    #[test]
    fn small_domu_modules_at_top_of_ram() {
        // guest-hello: 0x80000 + 80 KiB; 16 MiB RAM < 128 MiB: modules at the top.
        let p = place(RAM16, &hdr(0x80000, 0x14000), 0, 0x1000).unwrap();
        assert_eq!(p.kernel, 0x4008_0000);
        assert_eq!(p.initrd, None);
        assert_eq!(p.dtb, 0x4100_0000 - 0x1000);
    }

    #[test]
    fn realistic_domu_like_xl() {
        // 48 MB Image (image_size 50 MB) + 1 MB initrd in 128 MiB, as the workload.
        let ram = Region {
            base: 0x4000_0000,
            size: 128 << 20,
        };
        let p = place(ram, &hdr(0, 50 << 20), 1 << 20, 0x1800).unwrap();
        assert_eq!(p.kernel, 0x4000_0000);
        let modsize = (1 << 20) + 0x2000;
        assert_eq!(p.initrd, Some(0x4800_0000 - modsize));
        assert_eq!(p.dtb, 0x4800_0000 - 0x2000);
        // 256 MiB: modules at 128 MiB.
        let ram = Region {
            base: 0x4000_0000,
            size: 256 << 20,
        };
        let p = place(ram, &hdr(0, 50 << 20), 1 << 20, 0x1800).unwrap();
        assert_eq!(p.initrd, Some(0x4800_0000));
        assert_eq!(p.dtb, 0x4810_0000);
    }

    #[test]
    fn too_big_and_misaligned() {
        assert!(matches!(
            place(RAM16, &hdr(0, 15 << 20), 2 << 20, 4096),
            Err(LayoutError::TooBig { .. })
        ));
        assert!(matches!(
            place(RAM16, &hdr(0, 17 << 20), 0, 4096),
            Err(LayoutError::TooBig { .. })
        ));
        let bad = Region {
            base: 0x4000_1000,
            size: 16 << 20,
        };
        assert_eq!(place(bad, &hdr(0, 4096), 0, 4096), Err(LayoutError::BadRam));
        // Modules must end above the 2 MiB-rounded kernel end (strictly, as
        // xg_dom_arm.c): exactly full fails, one page less fits at the top.
        assert!(place(RAM16, &hdr(0, 14 << 20), (2 << 20) - 4096, 4096).is_err());
        let p = place(RAM16, &hdr(0, 14 << 20), (2 << 20) - 8192, 4096).unwrap();
        assert_eq!(p.initrd, Some(0x40e0_1000));
        assert_eq!(p.dtb, 0x40ff_f000);
    }

    #[test]
    fn page_list_covers_images_then_zero_pages() {
        let p = place(RAM16, &hdr(0x80000, 0x14000), 0, 0x1000).unwrap();
        let l = PageList::new(RAM16, &p, 0x12345, 0, 0x800, 0);
        assert_eq!(l.total_pages(), 0x13 + 1);
        assert_eq!(l.page(0), Some((0x40080, Src::Kernel, 0)));
        assert_eq!(l.page(0x12), Some((0x40092, Src::Kernel, 0x12000)));
        assert_eq!(l.page(0x13), Some((0x40fff, Src::Dtb, 0)));
        assert_eq!(l.page(0x14), None);

        // 200 pages: the 128 below the kernel first, then after the kernel.
        let l = PageList::new(RAM16, &p, 0x12345, 0, 0x800, 200);
        assert_eq!(l.total_pages(), 200);
        let mut gfns: Vec<u64> = (0..200).map(|k| l.page(k).unwrap().0).collect();
        assert_eq!(l.page(20), Some((0x40000, Src::Zero, 0)));
        assert_eq!(l.page(20 + 128), Some((0x40093, Src::Zero, 0)));
        gfns.sort();
        gfns.dedup();
        assert_eq!(gfns.len(), 200, "no page listed twice");
        assert!(gfns.iter().all(|g| *g >= 0x40000 && *g < 0x41000));
    }

    #[test]
    fn page_list_never_exceeds_ram() {
        let p = place(RAM16, &hdr(0x80000, 0x14000), 0, 0x1000).unwrap();
        let l = PageList::new(RAM16, &p, 0x12345, 0, 0x800, 1 << 40);
        assert_eq!(l.total_pages(), 4096);
    }

    #[test]
    fn free_ram_and_scratch() {
        let ram = Region {
            base: 0x4000_0000,
            size: 64 << 20,
        };
        let r = |b: u64, s: u64| Region { base: b, size: s };
        // Image at the bottom, DTB in the middle, initrd high.
        let free = largest_free(
            ram,
            &[
                r(0x4000_0000, 0x20_0000),
                r(0x4100_0000, 0x1000),
                r(0x4300_0000, 0x80_0000),
            ],
        )
        .unwrap();
        assert_eq!(free, r(0x4100_1000, 0x4300_0000 - 0x4100_1000));
        assert_eq!(largest_free(ram, &[ram]), None);
        assert_eq!(largest_free(ram, &[]), Some(ram));
        // Overlapping reservations.
        let f = largest_free(
            ram,
            &[r(0x4000_0000, 0x300_0000), r(0x4100_0000, 0x100_0000)],
        )
        .unwrap();
        assert_eq!(f, r(0x4300_0000, 0x100_0000));

        let mut s = Scratch::new(r(0x4100_0010, 0x3000));
        assert_eq!(s.alloc(8, 4096), Some(0x4100_1000));
        let m = s.mark();
        assert_eq!(s.alloc(0x1000, 8), Some(0x4100_1008));
        assert_eq!(s.alloc(0x2000, 8), None);
        s.reset(m);
        assert_eq!(s.alloc(0x1000, 8), Some(0x4100_1008));
        assert_eq!(s.left(), 0x3010 - 0x2008);
    }
}
