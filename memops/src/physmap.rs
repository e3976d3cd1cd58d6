//! A domain's physmap: its stage-2 table plus what each mapped gfn is.
//!
//! The physmap keeps, next to the [`Stage2`] table, one record per mapped
//! guest frame (gfn) saying what is there: the domain's own RAM, a page of
//! another domain (foreign mapping, holding a reference), hv's shared-info
//! page for the domain. Every change returns the [`InvalidationSet`] it
//! needs plus the references that may only be dropped once it has run.

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

/// A domain's physmap.
#[derive(Debug)]
pub struct Physmap {
    domid: u16,
    stage2: Stage2,
    gfns: BTreeMap<u64, P2mEntry>,
    max_pages: u64,
    tot_pages: u64,
    orphans: Vec<PhysAddr>,
}

/// A torn-down physmap: run `flush` (and release its pages) first, then
/// [`Teardown::finish`] frees the tables.
#[derive(Debug)]
#[must_use = "finish() frees the tables"]
pub struct Teardown {
    /// Every leaf that was mapped.
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
        Ok(Self {
            domid,
            stage2: Stage2::new(tables, ipa_bits)?,
            gfns: BTreeMap::new(),
            max_pages,
            tot_pages: 0,
            orphans: Vec::new(),
        })
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

    /// Change the reservation limit (`XEN_DOMCTL_max_mem`).
    pub fn set_max_pages(&mut self, n: u64) {
        self.max_pages = n;
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

    /// Map `pages` frames from `pa` at `gfn` (every gfn must be unmapped:
    /// callers remove old entries first) and record them as `kind`.
    /// Own RAM is counted against the reservation.
    ///
    /// # Errors
    /// [`Error::IpaOutOfRange`]/[`Error::Overflow`] for a bad range, [`Error::Busy`] if a gfn
    /// is mapped, [`Error::Invalid`] over the reservation, [`Error::OutOfTableMemory`].
    pub fn insert(
        &mut self,
        tables: &mut impl TableMem,
        gfn: u64,
        pa: PhysAddr,
        pages: u64,
        kind: P2mKind,
        attrs: S2Attrs,
    ) -> Result<InvalidationSet, Error> {
        let ipa = self.check_range(gfn, pages)?;
        if let Some((_, e)) = self.gfns.range(gfn..gfn + pages).next() {
            return Err(Error::Busy { pa: e.pa });
        }
        if kind == P2mKind::Ram && self.tot_pages.saturating_add(pages) > self.max_pages {
            return Err(Error::Invalid {
                what: "over reservation",
            });
        }
        let inv = self.stage2.map(tables, ipa, pa, pages * PAGE_SIZE, attrs)?;
        for i in 0..pages {
            self.gfns.insert(
                gfn + i,
                P2mEntry {
                    pa: PhysAddr(pa.0 + i * PAGE_SIZE),
                    kind,
                },
            );
        }
        if kind == P2mKind::Ram {
            self.tot_pages += pages;
        }
        Ok(inv)
    }

    /// Unmap `gfn`. `give_back` says whether own RAM leaves the domain
    /// (`decrease_reservation`: its allocation reference is to be released)
    /// or stays owned (`remove_from_physmap`).
    ///
    /// # Errors
    /// [`Error::IpaOutOfRange`] outside the IPA range, [`Error::NotMapped`] if nothing is
    /// mapped there, [`Error::OutOfTableMemory`] if splitting a block failed,
    /// [`Error::OutOfMemory`] if the orphan record cannot be allocated.
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
        if e.kind == P2mKind::Ram && !give_back {
            // The orphan record is reserved before anything changes: a
            // guest-driven allocation fails, it never panics hv.
            self.orphans
                .try_reserve(1)
                .map_err(|_| Error::OutOfMemory)?;
        }
        let inv = self.stage2.unmap(tables, ipa, PAGE_SIZE)?;
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
            P2mKind::Foreign { .. } => Removed::Release(e.pa),
            P2mKind::SharedInfo => Removed::Nothing,
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
        Teardown {
            inval,
            held,
            stage2: self.stage2,
        }
    }
}
