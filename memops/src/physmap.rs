//! A domain's physmap: its stage-2 table plus what each mapped gfn is.
//!
//! The physmap keeps, next to the [`Stage2`] table, one record per mapped
//! guest frame (gfn) saying what is there: the domain's own RAM, a page of
//! another domain (foreign mapping, holding a reference), hv's shared-info
//! page for the domain. Every change returns the [`InvalidationSet`] it
//! needs plus the references that may only be dropped once it has run.
//!
//! # Limits (what a guest can make hv allocate for its physmap)
//! Checked before anything changes; exceeding one fails with
//! [`Error::OutOfTableMemory`] / [`Error::OutOfMemory`] (Xen's `-ENOMEM`):
//! - **stage-2 table frames**: at most [`Limits::table_frames`] (the root
//!   included), Xen's per-domain P2M pool on Arm (`domain_p2m_pages`: 1 MiB
//!   per vCPU, one page per MiB of RAM, 128 pages for extended regions);
//!   a mapping goes ahead only if its worst case fits ([`worst_new_tables`]).
//! - **records** (one per mapped gfn, in hv's heap): own RAM is bounded by
//!   the reservation (`max_pages`, orphans included); each hv special frame
//!   (shared info, grant frames, console ring) is mapped at most once, a new
//!   mapping of it removes the old one (Xen on Arm: `xenmem_add_to_physmap_one`
//!   unmaps a xenheap page from its old gfn); foreign mappings at most
//!   [`Limits::foreign`].

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use pv_tlb::InvalidationSet;

use crate::stage2::{level_size, S2Attrs, Stage2, TableMem};
use crate::{Error, Ipa, PhysAddr, PAGE_SIZE};

/// What a gfn maps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum P2mKind {
    /// The domain's own RAM (its allocation reference covers the mapping).
    Ram,
    /// A page owned by domain `owner`, mapped here with its own reference.
    Foreign {
        /// Owner of the page.
        owner: u16,
    },
    /// hv's shared-info page of this domain (not from the frame pool).
    SharedInfo,
}

/// One mapped gfn.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct P2mEntry {
    /// Host frame.
    pub pa: PhysAddr,
    /// What it is.
    pub kind: P2mKind,
}

/// What became of the page behind a removed gfn.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Removed {
    /// Own RAM: still owned and counted, now unmapped (freed at teardown),
    /// as Xen's `XENMEM_remove_from_physmap` on a RAM gfn.
    Orphaned(PhysAddr),
    /// A reference to drop once the invalidation ran (foreign page, or own
    /// RAM given back by `decrease_reservation`).
    Release(PhysAddr),
    /// Nothing to release (shared info).
    Nothing,
}

/// Per-domain bounds (see the module doc).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Limits {
    /// Stage-2 table frames the domain's physmap may hold (root included).
    pub table_frames: u64,
    /// Foreign mappings the domain may hold at once.
    pub foreign: u64,
}

/// Default [`Limits::foreign`]: 65536 records (256 MiB of foreign pages
/// mapped at once, about 6 MiB of hv's heap).
pub const FOREIGN_MAX: u64 = 1 << 16;

impl Limits {
    /// Xen's default P2M pool for a domain of `max_pages` and `vcpus`
    /// (`domain_p2m_pages` in xen/arch/arm/dom0less-build.c, kept in sync
    /// with libxl: 4 KiB * (256 per vCPU + 1 per MiB of RAM + 128), rounded
    /// up to whole MiB), and [`FOREIGN_MAX`].
    #[must_use]
    pub fn for_domain(max_pages: u64, vcpus: u32) -> Self {
        let mib = max_pages.div_ceil(256);
        let kib = 4 * (256 * u64::from(vcpus.max(1)) + mib + 128);
        Self {
            table_frames: kib.div_ceil(1024).saturating_mul(256),
            foreign: FOREIGN_MAX,
        }
    }
}

/// Worst case of new table frames mapping `pages` pages can allocate: a
/// table at each level below the root for the first page, and at most two
/// more (a level-3 and a level-2 boundary) per further 512 pages.
#[must_use]
pub const fn worst_new_tables(pages: u64) -> u64 {
    3 + 2 * pages.div_ceil(512)
}

/// A [`TableMem`] that counts the table frames allocated through it.
struct Counted<'a, T: TableMem> {
    inner: &'a mut T,
    used: &'a mut u64,
}

impl<T: TableMem> TableMem for Counted<'_, T> {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        let t = self.inner.alloc_table();
        if t.is_some() {
            *self.used += 1;
        }
        t
    }
    fn free_table(&mut self, pa: PhysAddr) {
        *self.used = self.used.saturating_sub(1);
        self.inner.free_table(pa);
    }
    fn read_entry(&self, table: PhysAddr, index: usize) -> u64 {
        self.inner.read_entry(table, index)
    }
    fn write_entry(&mut self, table: PhysAddr, index: usize, value: u64) {
        self.inner.write_entry(table, index, value);
    }
    fn invalidate_now(&mut self, set: &InvalidationSet) {
        self.inner.invalidate_now(set);
    }
    fn invalidate_now_for(&mut self, root: PhysAddr, set: &InvalidationSet) {
        self.inner.invalidate_now_for(root, set);
    }
}

/// A domain's physmap.
#[derive(Debug)]
pub struct Physmap {
    domid: u16,
    stage2: Stage2,
    gfns: BTreeMap<u64, P2mEntry>,
    max_pages: u64,
    tot_pages: u64,
    orphans: Vec<PhysAddr>,
    limits: Limits,
    /// Table frames allocated (root included).
    tables: u64,
    /// Foreign mappings held.
    foreign: u64,
    /// Where each mapped hv special frame is: `(frame, gfn)`.
    special: Vec<(PhysAddr, u64)>,
}

/// A torn-down physmap: run `flush` (and release its pages) first, then
/// [`Teardown::finish`] frees the tables.
#[derive(Debug)]
#[must_use = "finish() frees the tables"]
pub struct Teardown {
    /// Every leaf that was mapped, and one page (level 0) of every table
    /// left without a valid entry: what retiring the VMID must cover.
    pub inval: InvalidationSet,
    /// References to drop after the invalidation ran (own RAM allocation
    /// references and foreign-mapping references).
    pub held: Vec<PhysAddr>,
    stage2: Stage2,
}

impl Teardown {
    /// Free the stage-2 tables (after the invalidation ran).
    pub fn finish(self, tables: &mut impl TableMem) {
        self.stage2.destroy(tables);
    }
}

impl Physmap {
    /// An empty physmap for `domid` with an `ipa_bits` stage-2 and a
    /// reservation limit of `max_pages`.
    ///
    /// # Errors
    /// As [`Stage2::new`].
    pub fn new(
        tables: &mut impl TableMem,
        domid: u16,
        ipa_bits: u8,
        max_pages: u64,
    ) -> Result<Self, Error> {
        let mut used = 0;
        let stage2 = Stage2::new(
            &mut Counted {
                inner: tables,
                used: &mut used,
            },
            ipa_bits,
        )?;
        Ok(Self {
            domid,
            stage2,
            gfns: BTreeMap::new(),
            max_pages,
            tot_pages: 0,
            orphans: Vec::new(),
            limits: Limits::for_domain(max_pages, 1),
            tables: used,
            foreign: 0,
            special: Vec::new(),
        })
    }

    /// The domain's bounds.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Set the domain's bounds (e.g. [`Limits::for_domain`] with its vCPU
    /// count). Lowering them below what is in use only stops growth.
    pub fn set_limits(&mut self, l: Limits) {
        self.limits = l;
    }

    /// Stage-2 table frames held (root included).
    #[must_use]
    pub fn table_frames(&self) -> u64 {
        self.tables
    }

    /// Foreign mappings held.
    #[must_use]
    pub fn foreign_mapped(&self) -> u64 {
        self.foreign
    }

    /// The gfn hv special frame `pa` is mapped at, if it is.
    #[must_use]
    pub fn special_gfn(&self, pa: PhysAddr) -> Option<u64> {
        self.special.iter().find(|s| s.0 == pa).map(|s| s.1)
    }

    /// True if `worst` more table frames fit the domain's budget.
    #[must_use]
    pub fn has_table_room(&self, worst: u64) -> bool {
        self.tables.saturating_add(worst) <= self.limits.table_frames
    }

    fn tables_room(&self, worst: u64, ipa: Ipa) -> Result<(), Error> {
        if self.tables.saturating_add(worst) > self.limits.table_frames {
            return Err(Error::OutOfTableMemory { ipa });
        }
        Ok(())
    }

    /// The domain.
    #[must_use]
    pub fn domid(&self) -> u16 {
        self.domid
    }

    /// The stage-2 table (for `VTTBR_EL2`/`VTCR_EL2` and translation).
    #[must_use]
    pub fn stage2(&self) -> &Stage2 {
        &self.stage2
    }

    /// Own pages allocated (mapped or orphaned).
    #[must_use]
    pub fn tot_pages(&self) -> u64 {
        self.tot_pages
    }

    /// Reservation limit.
    #[must_use]
    pub fn max_pages(&self) -> u64 {
        self.max_pages
    }

    /// Change the reservation limit (`XEN_DOMCTL_max_mem`); the table
    /// budget grows with it (never shrinks).
    pub fn set_max_pages(&mut self, n: u64) {
        self.max_pages = n;
        let t = Limits::for_domain(n, 1).table_frames;
        self.limits.table_frames = self.limits.table_frames.max(t);
    }

    /// Number of mapped gfns.
    #[must_use]
    pub fn mapped(&self) -> usize {
        self.gfns.len()
    }

    /// What `gfn` maps, if anything.
    #[must_use]
    pub fn lookup(&self, gfn: u64) -> Option<P2mEntry> {
        self.gfns.get(&gfn).copied()
    }

    /// Every mapped gfn in `start..end` with what it maps, in gfn order
    /// (holes skipped: one walk of the records, not one lookup per gfn).
    pub fn entries_in(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, P2mEntry)> + '_ {
        self.gfns
            .range(start..end.max(start))
            .map(|(&g, &e)| (g, e))
    }

    /// True if `gfn` lies inside the stage-2 input range.
    #[must_use]
    pub fn gfn_in_range(&self, gfn: u64) -> bool {
        gfn < (1u64 << (self.stage2.ipa_bits() - 12))
    }

    fn check_range(&self, gfn: u64, pages: u64) -> Result<Ipa, Error> {
        let end = gfn.checked_add(pages).ok_or(Error::Overflow {
            ipa: Ipa(gfn.wrapping_shl(12)),
            size: pages.wrapping_mul(PAGE_SIZE),
        })?;
        if pages == 0 || end > (1u64 << (self.stage2.ipa_bits() - 12)) {
            return Err(Error::IpaOutOfRange {
                ipa: Ipa(gfn.wrapping_shl(12)),
                size: pages.wrapping_mul(PAGE_SIZE),
                ipa_bits: self.stage2.ipa_bits(),
            });
        }
        Ok(Ipa::from_page_number(gfn))
    }

    /// [`Physmap::check_range`], and no gfn of the range recorded ([`Error::Busy`]).
    fn check_unrecorded(&self, gfn: u64, pages: u64) -> Result<Ipa, Error> {
        let ipa = self.check_range(gfn, pages)?;
        if let Some((_, e)) = self.gfns.range(gfn..gfn + pages).next() {
            return Err(Error::Busy { pa: e.pa });
        }
        Ok(ipa)
    }

    /// Map `pages` frames from `pa` at `ipa` in stage 2, within the table budget.
    fn map_pages(
        &mut self,
        tables: &mut impl TableMem,
        ipa: Ipa,
        pa: PhysAddr,
        pages: u64,
        attrs: S2Attrs,
    ) -> Result<InvalidationSet, Error> {
        self.tables_room(worst_new_tables(pages), ipa)?;
        self.stage2.map(
            &mut Counted {
                inner: tables,
                used: &mut self.tables,
            },
            ipa,
            pa,
            pages * PAGE_SIZE,
            attrs,
        )
    }

    /// Map `pages` frames from `pa` at `gfn` (every gfn must be unmapped:
    /// callers remove old entries first) and record them as `kind`.
    /// Own RAM is counted against the reservation.
    ///
    /// # Errors
    /// [`Error::IpaOutOfRange`]/[`Error::Overflow`] for a bad range, [`Error::Busy`] if a gfn
    /// is mapped, [`Error::Invalid`] over the reservation, [`Error::OutOfTableMemory`]
    /// (host table memory, or the domain's table budget), [`Error::OutOfMemory`]
    /// over the foreign-mapping bound or when a record cannot be allocated.
    pub fn insert(
        &mut self,
        tables: &mut impl TableMem,
        gfn: u64,
        pa: PhysAddr,
        pages: u64,
        kind: P2mKind,
        attrs: S2Attrs,
    ) -> Result<InvalidationSet, Error> {
        let ipa = self.check_unrecorded(gfn, pages)?;
        if kind == P2mKind::Ram && self.tot_pages.saturating_add(pages) > self.max_pages {
            return Err(Error::Invalid {
                what: "over reservation",
            });
        }
        if matches!(kind, P2mKind::Foreign { .. })
            && self.foreign.saturating_add(pages) > self.limits.foreign
        {
            return Err(Error::OutOfMemory);
        }
        if kind == P2mKind::SharedInfo {
            self.special
                .try_reserve(pages as usize)
                .map_err(|_| Error::OutOfMemory)?;
        }
        let inv = self.map_pages(tables, ipa, pa, pages, attrs)?;
        for i in 0..pages {
            self.gfns.insert(
                gfn + i,
                P2mEntry {
                    pa: PhysAddr(pa.0 + i * PAGE_SIZE),
                    kind,
                },
            );
        }
        match kind {
            P2mKind::Ram => self.tot_pages += pages,
            P2mKind::Foreign { .. } => self.foreign += pages,
            P2mKind::SharedInfo => {
                for i in 0..pages {
                    self.special.push((PhysAddr(pa.0 + i * PAGE_SIZE), gfn + i));
                }
            }
        }
        Ok(inv)
    }

    /// Map host MMIO `[pa, pa + pages)` at the same IPA range starting at
    /// `gfn` (a direct-mapped hardware domain's passed-through device, Xen's
    /// `map_regions_p2mt(.., p2m_mmio_direct_c)`) with `attrs`. Nothing is
    /// recorded per gfn: these are not pool frames (no reference, no
    /// reservation; [`Physmap::teardown`] only invalidates and frees the
    /// tables). Every gfn must be unrecorded.
    ///
    /// # Errors
    /// As [`Physmap::insert`] (range, [`Error::Busy`], table budget).
    pub fn map_mmio(
        &mut self,
        tables: &mut impl TableMem,
        gfn: u64,
        pa: PhysAddr,
        pages: u64,
        attrs: S2Attrs,
    ) -> Result<InvalidationSet, Error> {
        let ipa = self.check_unrecorded(gfn, pages)?;
        self.map_pages(tables, ipa, pa, pages, attrs)
    }

    /// Promote the 2 MiB region containing `gfn` to one stage-2 block if all
    /// its 512 gfns are foreign mappings of one 2 MiB aligned, contiguous
    /// physical run ([`Stage2::promote`]: break-before-make, synchronous
    /// invalidation, the level-3 table freed). The records, reference counts
    /// and budgets stay per page; a later remove of one page splits the
    /// block again. Returns true if it promoted.
    pub fn promote_foreign(&mut self, tables: &mut impl TableMem, gfn: u64) -> bool {
        let first = gfn & !511;
        if !self.gfn_in_range(first + 511) {
            return false;
        }
        let foreign =
            |e: Option<&P2mEntry>| e.is_some_and(|e| matches!(e.kind, P2mKind::Foreign { .. }));
        // Cheap tests first (this runs after every foreign page mapped).
        if !foreign(self.gfns.get(&first))
            || !foreign(self.gfns.get(&(first + 511)))
            || !self.stage2.promotable(tables, Ipa::from_page_number(first))
        {
            return false;
        }
        let all_foreign = self.gfns.range(first..first + 512).count() == 512
            && self
                .gfns
                .range(first..first + 512)
                .all(|(_, e)| foreign(Some(e)));
        if !all_foreign {
            return false;
        }
        self.stage2.promote(
            &mut Counted {
                inner: tables,
                used: &mut self.tables,
            },
            Ipa::from_page_number(first),
        )
    }

    /// True if the 512 gfns from `gfn` (2 MiB aligned) are foreign mappings
    /// held by one 2 MiB stage-2 block (what [`Physmap::remove_foreign_block`] removes).
    #[must_use]
    pub fn is_foreign_block(&self, tables: &impl TableMem, gfn: u64) -> bool {
        if !gfn.is_multiple_of(512) || !self.gfn_in_range(gfn.saturating_add(511)) {
            return false;
        }
        let block = self
            .stage2
            .walk(tables, Ipa::from_page_number(gfn))
            .is_some_and(|l| l.level == 2);
        block
            && self.gfns.range(gfn..gfn + 512).count() == 512
            && self
                .gfns
                .range(gfn..gfn + 512)
                .all(|(_, e)| matches!(e.kind, P2mKind::Foreign { .. }))
    }

    /// Remove the 512 foreign mappings at `gfn` that one 2 MiB block holds
    /// ([`Physmap::is_foreign_block`]) with one leaf change: the block's
    /// invalidation (one level-2 entry) and the 512 references to drop after
    /// it ran (into `held`). The same records and counts go as with 512
    /// [`Physmap::remove`] calls, without splitting the block first.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the gfns are not such a block (nothing changed);
    /// [`Error::OutOfMemory`] if `held` cannot grow (nothing changed).
    pub fn remove_foreign_block(
        &mut self,
        tables: &mut impl TableMem,
        gfn: u64,
        held: &mut Vec<PhysAddr>,
    ) -> Result<InvalidationSet, Error> {
        if !self.is_foreign_block(tables, gfn) {
            return Err(Error::Invalid {
                what: "not a block of foreign mappings",
            });
        }
        held.try_reserve(512).map_err(|_| Error::OutOfMemory)?;
        let inv = self.stage2.unmap(
            &mut Counted {
                inner: tables,
                used: &mut self.tables,
            },
            Ipa::from_page_number(gfn),
            512 * PAGE_SIZE,
        )?;
        for g in gfn..gfn + 512 {
            if let Some(e) = self.gfns.remove(&g) {
                held.push(e.pa);
            }
        }
        self.foreign = self.foreign.saturating_sub(512);
        Ok(inv)
    }

    /// Unmap `gfn`. `give_back` says whether own RAM leaves the domain
    /// (`decrease_reservation`: its allocation reference is to be released)
    /// or stays owned (`remove_from_physmap`).
    ///
    /// An hv special frame (`P2mKind::SharedInfo`: shared info, grant frames,
    /// the console ring) is not the domain's RAM: `give_back` of it is
    /// refused (it stays mapped), a plain remove only unmaps it.
    ///
    /// # Errors
    /// [`Error::IpaOutOfRange`] outside the IPA range, [`Error::NotMapped`] if nothing is
    /// mapped there, [`Error::Invalid`] giving back a special frame,
    /// [`Error::OutOfTableMemory`] if splitting a block failed or would exceed
    /// the table budget, [`Error::OutOfMemory`] if the orphan record cannot be allocated.
    pub fn remove(
        &mut self,
        tables: &mut impl TableMem,
        gfn: u64,
        give_back: bool,
    ) -> Result<(InvalidationSet, Removed), Error> {
        let ipa = self.check_range(gfn, 1)?;
        let e = self
            .gfns
            .get(&gfn)
            .copied()
            .ok_or(Error::NotMapped { ipa })?;
        if e.kind == P2mKind::SharedInfo && give_back {
            return Err(Error::Invalid {
                what: "an hv special page is not the domain's RAM",
            });
        }
        if e.kind == P2mKind::Ram && !give_back {
            // The orphan record is reserved before anything changes: a
            // guest-driven allocation fails, it never panics hv.
            self.orphans
                .try_reserve(1)
                .map_err(|_| Error::OutOfMemory)?;
        }
        // Splitting a block: at most a level-2 and a level-3 table.
        self.tables_room(2, ipa)?;
        let inv = self.stage2.unmap(
            &mut Counted {
                inner: tables,
                used: &mut self.tables,
            },
            ipa,
            PAGE_SIZE,
        )?;
        self.gfns.remove(&gfn);
        let r = match e.kind {
            P2mKind::Ram if give_back => {
                self.tot_pages -= 1;
                Removed::Release(e.pa)
            }
            P2mKind::Ram => {
                self.orphans.push(e.pa);
                Removed::Orphaned(e.pa)
            }
            P2mKind::Foreign { .. } => {
                self.foreign = self.foreign.saturating_sub(1);
                Removed::Release(e.pa)
            }
            P2mKind::SharedInfo => {
                self.special.retain(|s| s.1 != gfn);
                Removed::Nothing
            }
        };
        Ok((inv, r))
    }

    /// Unmap everything: returns the invalidation of every leaf and every
    /// reference to drop after it ran, with the tables to free afterwards.
    pub fn teardown(self, tables: &impl TableMem) -> Teardown {
        let mut held = self.orphans;
        for e in self.gfns.values() {
            match e.kind {
                P2mKind::Ram | P2mKind::Foreign { .. } => held.push(e.pa),
                P2mKind::SharedInfo => {}
            }
        }
        let mut inval = InvalidationSet::new();
        self.stage2.for_each_leaf(tables, &mut |ipa, _pa, size, _| {
            let level = if size == level_size(1) {
                1
            } else if size == level_size(2) {
                2
            } else {
                3
            };
            inval.add(ipa, size / PAGE_SIZE, level);
        });
        // Tables left empty: no leaf above covers their table entries.
        self.stage2
            .for_each_empty_table(tables, &mut |ipa| inval.add_walk(ipa));
        Teardown {
            inval,
            held,
            stage2: self.stage2,
        }
    }
}
