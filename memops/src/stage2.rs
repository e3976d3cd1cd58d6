//! Stage-2 translation tables (VMSAv8-64, 4 KiB granule, 48-bit output).
//!
//! # Layout
//! A [`Stage2`] is a single root table (no concatenated roots): IPA sizes of
//! 40..=48 bits start the walk at level 0, 32..=39 bits at level 1. Leaf
//! entries are 1 GiB blocks (level 1), 2 MiB blocks (level 2) or 4 KiB pages
//! (level 3); [`Stage2::map`] uses the largest leaf that the alignment of both
//! IPA and PA and the remaining size allow.
//!
//! # Invalidation
//! Nothing here executes TLB maintenance. Every change that leaves possibly
//! cached translations behind is *returned* as a [`InvalidationSet`], which
//! the caller plans with `pv_tlb` (possibly deferred and coalesced). The one
//! exception is break-before-make: when a live entry must be replaced by one
//! that the architecture does not allow to coexist with it in a TLB
//! (different output address, block size or memory type, see
//! [`is_bbm_required`]), the Arm ARM requires the old entry to be invalid
//! *and its TLB entries invalidated* before the new one is written. For that
//! case [`TableMem::invalidate_now`] is called synchronously between the
//! "break" and the "make", as Xen's `p2m_set_entry` (`p2m_force_tlb_flush_sync`)
//! and KVM's `stage2_try_break_pte` do.
//!
//! # Table lifetime
//! An unmap leaves empty tables in place: freeing a table frame would need the
//! same TLB/walk-cache flush as freeing a data page, and tables are at most
//! 1/512 of the mapped memory. The one table freed while the [`Stage2`] lives
//! is a level-3 table that a 2 MiB block replaces ([`Stage2::promote`] of a
//! full one, [`Stage2::map`] of a block over an empty one), after the
//! synchronous invalidation of its break. [`Stage2::destroy`] frees them
//! all; the caller must have flushed the VMID (the domain is dead) before the
//! frames are reused.

use pv_tlb::{pages_per_entry, InvalidationSet};

use crate::{Error, Ipa, PhysAddr, PAGE_SIZE};

/// Entries per 4 KiB table.
pub const ENTRIES: usize = 512;
/// Largest supported output address size (bits).
pub const PA_BITS: u8 = 48;
/// Smallest supported IPA size (bits).
pub const MIN_IPA_BITS: u8 = 32;
/// Largest supported IPA size (bits).
pub const MAX_IPA_BITS: u8 = 48;

const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 0b11 << 8;
const S2AP_R: u64 = 1 << 6;
const S2AP_W: u64 = 1 << 7;
const MEMATTR_SHIFT: u32 = 2;
const MEMATTR_MASK: u64 = 0b1111 << MEMATTR_SHIFT;
/// XN[1] (bit 54): with or without FEAT_XNX, 0b10 in XN[1:0] means "not executable at EL1 or EL0".
const XN: u64 = 1 << 54;
const OA_MASK: u64 = ((1u64 << PA_BITS) - 1) & !(PAGE_SIZE - 1);

/// How hv reaches the memory of stage-2 tables.
///
/// hv implements this over its identity map of RAM (publishing each store
/// with the barriers its arch layer requires); host tests over [`crate::sim::SimTableMem`].
pub trait TableMem {
    /// A zeroed, 4 KiB aligned table frame, or `None` when out of memory.
    fn alloc_table(&mut self) -> Option<PhysAddr>;
    /// Give back a frame from [`alloc_table`](Self::alloc_table). Called from
    /// [`Stage2::destroy`] (after the caller flushed the VMID) and when a
    /// 2 MiB block replaces a level-3 table ([`Stage2::promote`],
    /// [`Stage2::map`]), after the synchronous invalidation of the entry
    /// that pointed to it.
    fn free_table(&mut self, pa: PhysAddr);
    /// Entry `index` (0..512) of the table at `table`.
    fn read_entry(&self, table: PhysAddr, index: usize) -> u64;
    /// Store `value` into entry `index` (0..512) of the table at `table`
    /// (a single 64-bit single-copy-atomic store).
    fn write_entry(&mut self, table: PhysAddr, index: usize, value: u64);
    /// Break-before-make: make the table stores so far visible to the walkers
    /// and complete the invalidation of `set` for this stage-2's VMID *before
    /// returning* (e.g. execute `pv_tlb::plan` of it). Called with the broken
    /// entry already invalid and before the replacing entry is written.
    fn invalidate_now(&mut self, set: &InvalidationSet);
    /// As [`invalidate_now`](Self::invalidate_now), naming the stage-2 the set
    /// belongs to by its root table (what [`Stage2`] calls), so an
    /// implementation can find the VMID and issue a targeted plan instead of
    /// a flush of every VMID. Defaults to `invalidate_now(set)`.
    fn invalidate_now_for(&mut self, root: PhysAddr, set: &InvalidationSet) {
        let _ = root;
        self.invalidate_now(set);
    }
}

/// Memory type of a stage-2 leaf (stage-2 `MemAttr[3:0]`, FEAT_S2FWB off).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum MemType {
    /// Normal, inner and outer write-back cacheable (`MemAttr = 0b1111`).
    NormalWb,
    /// Device-nGnRE (`MemAttr = 0b0001`).
    DeviceNgnre,
}

impl MemType {
    const fn bits(self) -> u64 {
        match self {
            MemType::NormalWb => 0b1111,
            MemType::DeviceNgnre => 0b0001,
        }
    }
}

/// Stage-2 leaf attributes. The access flag is always set (hv does not use
/// access-flag faults).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct S2Attrs {
    /// S2AP\[0\]: reads allowed.
    pub read: bool,
    /// S2AP\[1\]: writes allowed.
    pub write: bool,
    /// Instruction fetches allowed (XN clear).
    pub exec: bool,
    /// Memory type.
    pub mem: MemType,
}

impl S2Attrs {
    /// Guest RAM: normal write-back, read/write/execute.
    pub const RAM: S2Attrs = S2Attrs {
        read: true,
        write: true,
        exec: true,
        mem: MemType::NormalWb,
    };
    /// Guest RAM mapped read-only (and executable).
    pub const RAM_RO: S2Attrs = S2Attrs {
        read: true,
        write: false,
        exec: true,
        mem: MemType::NormalWb,
    };
    /// A device: Device-nGnRE, read/write, never executable.
    pub const DEVICE: S2Attrs = S2Attrs {
        read: true,
        write: true,
        exec: false,
        mem: MemType::DeviceNgnre,
    };

    /// The attribute bits of a stage-2 leaf descriptor (AF and inner-shareable included).
    #[must_use]
    pub const fn descriptor_bits(self) -> u64 {
        let mut d = AF | SH_INNER | (self.mem.bits() << MEMATTR_SHIFT);
        if self.read {
            d |= S2AP_R;
        }
        if self.write {
            d |= S2AP_W;
        }
        if !self.exec {
            d |= XN;
        }
        d
    }

    /// Decode the attributes of a leaf descriptor. Unknown memory types decode
    /// as [`MemType::DeviceNgnre`] (the more restrictive reading).
    #[must_use]
    pub const fn from_descriptor(d: u64) -> S2Attrs {
        S2Attrs {
            read: d & S2AP_R != 0,
            write: d & S2AP_W != 0,
            exec: d & XN == 0,
            mem: if (d & MEMATTR_MASK) >> MEMATTR_SHIFT == 0b1111 {
                MemType::NormalWb
            } else {
                MemType::DeviceNgnre
            },
        }
    }
}

/// Shift of the IPA bits that index a table at `level` (4 KiB granule).
const fn level_shift(level: u8) -> u32 {
    12 + 9 * (3 - level as u32)
}

/// Bytes covered by one entry at `level`.
#[must_use]
pub const fn level_size(level: u8) -> u64 {
    1 << level_shift(level)
}

/// True if `d` (read from a table at `level`) is valid.
const fn is_valid(d: u64) -> bool {
    d & VALID != 0
}

/// True if `d`, read from a table at `level`, points to a next-level table.
const fn is_table(d: u64, level: u8) -> bool {
    level < 3 && d & (VALID | TABLE_OR_PAGE) == (VALID | TABLE_OR_PAGE)
}

/// True if `d`, read from a table at `level`, is a block or page descriptor.
const fn is_leaf(d: u64, level: u8) -> bool {
    if level == 3 {
        d & (VALID | TABLE_OR_PAGE) == (VALID | TABLE_OR_PAGE)
    } else {
        d & (VALID | TABLE_OR_PAGE) == VALID && (level == 1 || level == 2)
    }
}

const fn leaf_descriptor(pa: PhysAddr, attrs: S2Attrs, level: u8) -> u64 {
    let ty = if level == 3 {
        VALID | TABLE_OR_PAGE
    } else {
        VALID
    };
    (pa.0 & OA_MASK) | attrs.descriptor_bits() | ty
}

/// Break-before-make legality, as a pure predicate over two descriptors at
/// the same level (after google/aarch64-paging's `is_bbm_safe`).
///
/// Returns true when `new` may not simply overwrite `old` in a live table:
/// both are valid and they differ in output address, in kind (block vs
/// table, i.e. translation size) or in memory type / shareability. Changing
/// only permissions or the access flag does not require break-before-make
/// (the old entry must still be invalidated afterwards for a permission
/// *reduction* to take effect). Writing to or from an invalid entry never does.
#[must_use]
pub const fn is_bbm_required(old: u64, new: u64) -> bool {
    if !is_valid(old) || !is_valid(new) {
        return false;
    }
    // Descriptor type (block/table/page) decides the translation size.
    if old & TABLE_OR_PAGE != new & TABLE_OR_PAGE {
        return true;
    }
    if old & OA_MASK != new & OA_MASK {
        return true;
    }
    const TYPE_BITS: u64 = MEMATTR_MASK | SH_INNER;
    old & TYPE_BITS != new & TYPE_BITS
}

/// True if no entry of the table at `t` is valid.
fn is_empty_table(mem: &impl TableMem, t: PhysAddr) -> bool {
    (0..ENTRIES).all(|i| !is_valid(mem.read_entry(t, i)))
}

/// The level-2 block descriptor equivalent to the level-3 table at `l3`, if
/// its 512 entries are valid pages mapping one 2 MiB aligned, contiguous
/// physical run with identical attributes.
fn contiguous_block(mem: &impl TableMem, l3: PhysAddr) -> Option<u64> {
    let first = mem.read_entry(l3, 0);
    if !is_leaf(first, 3) || !(first & OA_MASK).is_multiple_of(level_size(2)) {
        return None;
    }
    // Entry i must be entry 0 with its output address advanced by i pages
    // (the base is 2 MiB aligned: the sum stays inside the OA field). The
    // last entry first: a table filled in IPA order fails here at once.
    let want = |i: usize| first + i as u64 * PAGE_SIZE;
    if mem.read_entry(l3, ENTRIES - 1) != want(ENTRIES - 1) {
        return None;
    }
    if (1..ENTRIES - 1).any(|i| mem.read_entry(l3, i) != want(i)) {
        return None;
    }
    // Same attributes and output address, block type (bit 1 clear).
    Some(first & !TABLE_OR_PAGE)
}

/// A leaf entry found by [`Stage2::walk`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Leaf {
    /// First IPA the leaf translates.
    pub base: Ipa,
    /// Level (1 = 1 GiB block, 2 = 2 MiB block, 3 = page).
    pub level: u8,
    /// Output address of `base`.
    pub pa: PhysAddr,
    /// Attributes.
    pub attrs: S2Attrs,
}

/// One domain's stage-2 translation table.
#[derive(Debug, PartialEq, Eq)]
pub struct Stage2 {
    root: PhysAddr,
    ipa_bits: u8,
    start_level: u8,
}

impl Stage2 {
    /// A new, empty table for an input (IPA) size of `ipa_bits`.
    ///
    /// # Errors
    /// [`Error::UnsupportedIpaBits`] unless `32 <= ipa_bits <= 48`;
    /// [`Error::OutOfTableMemory`] if the root table cannot be allocated.
    pub fn new(mem: &mut impl TableMem, ipa_bits: u8) -> Result<Stage2, Error> {
        if !(MIN_IPA_BITS..=MAX_IPA_BITS).contains(&ipa_bits) {
            return Err(Error::UnsupportedIpaBits { ipa_bits });
        }
        let root = mem
            .alloc_table()
            .ok_or(Error::OutOfTableMemory { ipa: Ipa(0) })?;
        let start_level = if ipa_bits > 39 { 0 } else { 1 };
        Ok(Stage2 {
            root,
            ipa_bits,
            start_level,
        })
    }

    /// Physical address of the root table (for `VTTBR_EL2.BADDR`).
    #[must_use]
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The IPA size this table translates.
    #[must_use]
    pub fn ipa_bits(&self) -> u8 {
        self.ipa_bits
    }

    /// The level the walk starts at (0 or 1).
    #[must_use]
    pub fn start_level(&self) -> u8 {
        self.start_level
    }

    /// The `VTCR_EL2` fields this table dictates: T0SZ, SL0, IRGN0/ORGN0
    /// (write-back write-allocate), SH0 (inner shareable), TG0 (4 KiB).
    /// The arch layer ORs in PS, VS and RES1 bits.
    #[must_use]
    pub fn vtcr_bits(&self) -> u64 {
        let t0sz = u64::from(64 - self.ipa_bits);
        // SL0 for a 4 KiB granule: 0b10 = start at level 0, 0b01 = level 1.
        let sl0: u64 = if self.start_level == 0 { 0b10 } else { 0b01 };
        let irgn0 = 0b01 << 8;
        let orgn0 = 0b01 << 10;
        let sh0 = 0b11 << 12;
        let tg0 = 0b00 << 14;
        t0sz | (sl0 << 6) | irgn0 | orgn0 | sh0 | tg0
    }

    fn check_ipa_range(&self, ipa: Ipa, size: u64) -> Result<(), Error> {
        if size == 0 {
            return Err(Error::EmptyRange { ipa });
        }
        if !ipa.is_aligned(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Misaligned {
                ipa,
                pa: None,
                size,
            });
        }
        let end = ipa
            .0
            .checked_add(size)
            .ok_or(Error::Overflow { ipa, size })?;
        if end > 1u64 << self.ipa_bits {
            return Err(Error::IpaOutOfRange {
                ipa,
                size,
                ipa_bits: self.ipa_bits,
            });
        }
        Ok(())
    }

    /// Map `size` bytes at `ipa` to `pa` with `attrs`, using the largest
    /// leaves alignment allows. Existing mappings in the range are replaced;
    /// replacements that need break-before-make are flushed synchronously
    /// through [`TableMem::invalidate_now`]; the others (permission-only
    /// changes) are returned for the caller to plan. An empty level-3 table
    /// where a 2 MiB block fits is replaced by the block (break-before-make,
    /// one walk-cache TLBI, the table freed): the caller must have run every
    /// pending invalidation of the range before (memops' handlers do, through
    /// `DeferredFlush::before_map`).
    ///
    /// # Errors
    /// [`Error::EmptyRange`], [`Error::Misaligned`] (ipa, pa or size not 4 KiB aligned),
    /// [`Error::Overflow`], [`Error::IpaOutOfRange`], [`Error::PaOutOfRange`]: nothing changed.
    /// [`Error::OutOfTableMemory`]: the range below the reported IPA is mapped (and any
    /// invalidation it needed has been flushed through `invalidate_now`), nothing from it on.
    pub fn map(
        &mut self,
        mem: &mut impl TableMem,
        ipa: Ipa,
        pa: PhysAddr,
        size: u64,
        attrs: S2Attrs,
    ) -> Result<InvalidationSet, Error> {
        self.check_ipa_range(ipa, size)?;
        if !pa.is_aligned(PAGE_SIZE) {
            return Err(Error::Misaligned {
                ipa,
                pa: Some(pa),
                size,
            });
        }
        let pa_end =
            pa.0.checked_add(size)
                .ok_or(Error::Overflow { ipa, size })?;
        if pa_end > 1u64 << PA_BITS {
            return Err(Error::PaOutOfRange { pa, size });
        }
        let mut inv = InvalidationSet::new();
        let r = self.map_in(
            mem,
            self.root,
            self.start_level,
            ipa.0,
            ipa.0 + size,
            pa.0,
            attrs,
            &mut inv,
        );
        match r {
            Ok(()) => Ok(inv),
            Err(e) => {
                if !inv.is_empty() {
                    mem.invalidate_now_for(self.root, &inv);
                }
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn map_in(
        &mut self,
        mem: &mut impl TableMem,
        table: PhysAddr,
        level: u8,
        start: u64,
        end: u64,
        pa_start: u64,
        attrs: S2Attrs,
        inv: &mut InvalidationSet,
    ) -> Result<(), Error> {
        let size = level_size(level);
        let mut ipa = start;
        while ipa < end {
            let idx = ((ipa >> level_shift(level)) & (ENTRIES as u64 - 1)) as usize;
            let entry_base = ipa & !(size - 1);
            let chunk_end = end.min(entry_base + size);
            let pa = pa_start + (ipa - start);
            let old = mem.read_entry(table, idx);
            let whole = ipa == entry_base && chunk_end == entry_base + size;
            let leaf_fits =
                (level == 1 || level == 2 || level == 3) && whole && pa.is_multiple_of(size);
            if leaf_fits && !is_table(old, level) {
                let new = leaf_descriptor(PhysAddr(pa), attrs, level);
                self.replace_leaf(mem, table, idx, level, Ipa(entry_base), old, new, inv);
            } else if leaf_fits && level == 2 && is_empty_table(mem, PhysAddr(old & OA_MASK)) {
                // An empty level-3 table (left by earlier unmaps) gives way to
                // the block: break-before-make. Its leaves were all removed
                // and their invalidations ran (callers run pending ones
                // before mapping again), so only walk-cache copies of the
                // table entry remain: one TLBI, then the block, then the
                // table frame no walker can reach any more is freed.
                mem.write_entry(table, idx, 0);
                let mut now = InvalidationSet::new();
                now.add_walk(Ipa(entry_base));
                mem.invalidate_now_for(self.root, &now);
                mem.write_entry(table, idx, leaf_descriptor(PhysAddr(pa), attrs, level));
                mem.free_table(PhysAddr(old & OA_MASK));
            } else {
                let next = self.next_table(mem, table, idx, level, Ipa(entry_base), old, ipa)?;
                self.map_in(mem, next, level + 1, ipa, chunk_end, pa, attrs, inv)?;
            }
            ipa = chunk_end;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn replace_leaf(
        &self,
        mem: &mut impl TableMem,
        table: PhysAddr,
        idx: usize,
        level: u8,
        entry_ipa: Ipa,
        old: u64,
        new: u64,
        inv: &mut InvalidationSet,
    ) {
        if old == new {
            return;
        }
        if !is_valid(old) {
            mem.write_entry(table, idx, new);
        } else if is_bbm_required(old, new) {
            // Break: the old entry becomes invalid and its TLB entries are
            // gone before the make.
            mem.write_entry(table, idx, 0);
            let mut now = InvalidationSet::new();
            now.add(entry_ipa, pages_per_entry(level), level);
            mem.invalidate_now_for(self.root, &now);
            mem.write_entry(table, idx, new);
        } else {
            mem.write_entry(table, idx, new);
            inv.add(entry_ipa, pages_per_entry(level), level);
        }
    }

    /// The next-level table behind entry `idx` of `table`: an existing table,
    /// a block split into one (break-before-make), or a fresh table.
    #[allow(clippy::too_many_arguments)]
    fn next_table(
        &mut self,
        mem: &mut impl TableMem,
        table: PhysAddr,
        idx: usize,
        level: u8,
        entry_ipa: Ipa,
        old: u64,
        at: u64,
    ) -> Result<PhysAddr, Error> {
        if is_table(old, level) {
            return Ok(PhysAddr(old & OA_MASK));
        }
        let next = mem
            .alloc_table()
            .ok_or(Error::OutOfTableMemory { ipa: Ipa(at) })?;
        let desc = (next.0 & OA_MASK) | VALID | TABLE_OR_PAGE;
        if is_leaf(old, level) {
            // Split: fill the new table (not yet visible) with the block's
            // translation at the next level, then break, flush, make.
            // Between the break and the make, another vCPU of the domain that
            // touches the block takes a stage-2 translation fault; the caller
            // makes such a fault harmless (hv's fault path looks again under
            // the lock this runs under and retries the access once the IPA is
            // mapped: `System::fault_resolved`).
            let sub = level_size(level + 1);
            let base = old & OA_MASK & !(level_size(level) - 1);
            let attrs = S2Attrs::from_descriptor(old);
            for i in 0..ENTRIES {
                let d = leaf_descriptor(PhysAddr(base + i as u64 * sub), attrs, level + 1);
                mem.write_entry(next, i, d);
            }
            mem.write_entry(table, idx, 0);
            let mut now = InvalidationSet::new();
            now.add(entry_ipa, pages_per_entry(level), level);
            mem.invalidate_now_for(self.root, &now);
        }
        mem.write_entry(table, idx, desc);
        Ok(next)
    }

    /// Promote the 2 MiB region containing `ipa` to one 2 MiB block if its
    /// level-3 table maps all 512 pages to one 2 MiB aligned, physically
    /// contiguous run with identical attributes (e.g. once the 512th page of
    /// a contiguous foreign extent has been mapped page by page). Returns
    /// true if it did.
    ///
    /// Replacing a table entry by a block changes the translation size, so
    /// it is a break-before-make: the level-2 entry becomes invalid, its
    /// invalidation (every page of the region, *without* a level hint: the
    /// leaves were level-3 entries and the walk caches may hold the table
    /// entry itself, as KVM's `stage2_try_break_pte` and Linux's
    /// `tlb_get_level` for freed tables) runs synchronously through
    /// [`TableMem::invalidate_now_for`], then the block is written, and only
    /// then is the replaced table frame freed (no walker can reach it any
    /// more). Every translation of the region is the same before and after.
    pub fn promote(&mut self, mem: &mut impl TableMem, ipa: Ipa) -> bool {
        let Some((table, idx, l3, block)) = self.promotion(mem, ipa) else {
            return false;
        };
        // Break.
        mem.write_entry(table, idx, 0);
        let mut now = InvalidationSet::new();
        now.add(ipa.align_down(level_size(2)), pages_per_entry(2), 0);
        mem.invalidate_now_for(self.root, &now);
        // Make, then free the table no walker can reach any more.
        mem.write_entry(table, idx, block);
        mem.free_table(l3);
        true
    }

    /// True if [`promote`](Self::promote) would promote the region of `ipa`
    /// (nothing changes).
    #[must_use]
    pub fn promotable(&self, mem: &impl TableMem, ipa: Ipa) -> bool {
        self.promotion(mem, ipa).is_some()
    }

    /// For a promotable region: the level-2 table, the entry's index, the
    /// level-3 table and the block descriptor replacing it.
    fn promotion(&self, mem: &impl TableMem, ipa: Ipa) -> Option<(PhysAddr, usize, PhysAddr, u64)> {
        if ipa.0 >> self.ipa_bits != 0 || self.start_level > 2 {
            return None;
        }
        let mut table = self.root;
        let mut level = self.start_level;
        while level < 2 {
            let idx = ((ipa.0 >> level_shift(level)) & (ENTRIES as u64 - 1)) as usize;
            let d = mem.read_entry(table, idx);
            if !is_table(d, level) {
                return None;
            }
            table = PhysAddr(d & OA_MASK);
            level += 1;
        }
        let idx = ((ipa.0 >> level_shift(2)) & (ENTRIES as u64 - 1)) as usize;
        let d = mem.read_entry(table, idx);
        if !is_table(d, 2) {
            return None;
        }
        let l3 = PhysAddr(d & OA_MASK);
        let block = contiguous_block(mem, l3)?;
        Some((table, idx, l3, block))
    }

    /// Remove every mapping in `size` bytes at `ipa`. Blocks only partly
    /// inside the range are split first (break-before-make through
    /// [`TableMem::invalidate_now`]). Unmapped parts of the range are skipped.
    ///
    /// Returns the leaf entries removed, for the caller to invalidate before
    /// the pages behind them are reused.
    ///
    /// # Errors
    /// [`Error::EmptyRange`], [`Error::Misaligned`], [`Error::Overflow`],
    /// [`Error::IpaOutOfRange`]: nothing changed. [`Error::OutOfTableMemory`] (splitting a
    /// block): the part below the reported IPA is unmapped and its invalidation has been
    /// flushed through `invalidate_now`.
    pub fn unmap(
        &mut self,
        mem: &mut impl TableMem,
        ipa: Ipa,
        size: u64,
    ) -> Result<InvalidationSet, Error> {
        self.check_ipa_range(ipa, size)?;
        let mut inv = InvalidationSet::new();
        match self.unmap_in(
            mem,
            self.root,
            self.start_level,
            ipa.0,
            ipa.0 + size,
            &mut inv,
        ) {
            Ok(()) => Ok(inv),
            Err(e) => {
                if !inv.is_empty() {
                    mem.invalidate_now_for(self.root, &inv);
                }
                Err(e)
            }
        }
    }

    fn unmap_in(
        &mut self,
        mem: &mut impl TableMem,
        table: PhysAddr,
        level: u8,
        start: u64,
        end: u64,
        inv: &mut InvalidationSet,
    ) -> Result<(), Error> {
        let size = level_size(level);
        let mut ipa = start;
        while ipa < end {
            let idx = ((ipa >> level_shift(level)) & (ENTRIES as u64 - 1)) as usize;
            let entry_base = ipa & !(size - 1);
            let chunk_end = end.min(entry_base + size);
            let old = mem.read_entry(table, idx);
            if is_valid(old) {
                let whole = ipa == entry_base && chunk_end == entry_base + size;
                if is_leaf(old, level) && whole {
                    mem.write_entry(table, idx, 0);
                    inv.add(Ipa(entry_base), pages_per_entry(level), level);
                } else if is_table(old, level) || is_leaf(old, level) {
                    let next =
                        self.next_table(mem, table, idx, level, Ipa(entry_base), old, ipa)?;
                    self.unmap_in(mem, next, level + 1, ipa, chunk_end, inv)?;
                } else {
                    // A valid descriptor of a reserved type (level-0 block):
                    // never written by us; clear it conservatively.
                    mem.write_entry(table, idx, 0);
                    inv.add(Ipa(entry_base), (chunk_end - entry_base) / PAGE_SIZE, level);
                }
            }
            ipa = chunk_end;
        }
        Ok(())
    }

    /// Change the attributes of every mapped page in `size` bytes at `ipa`
    /// (unmapped parts are skipped). Blocks partly inside are split.
    /// Returns the entries whose cached translations must be invalidated
    /// (permission reductions take effect only after that).
    ///
    /// # Errors
    /// As [`Stage2::unmap`].
    pub fn protect(
        &mut self,
        mem: &mut impl TableMem,
        ipa: Ipa,
        size: u64,
        attrs: S2Attrs,
    ) -> Result<InvalidationSet, Error> {
        self.check_ipa_range(ipa, size)?;
        let mut inv = InvalidationSet::new();
        let mut cur = ipa.0;
        let end = ipa.0 + size;
        while cur < end {
            match self.leaf(mem, Ipa(cur)) {
                Some((level, d)) => {
                    let lsize = level_size(level);
                    let base = cur & !(lsize - 1);
                    let oa = PhysAddr(d & OA_MASK & !(lsize - 1));
                    let chunk_end = end.min(base + lsize);
                    // Remap the covered part (map splits the block if partial).
                    let sub = self.map(
                        mem,
                        Ipa(cur),
                        PhysAddr(oa.0 + (cur - base)),
                        chunk_end - cur,
                        attrs,
                    );
                    match sub {
                        Ok(s) => inv.merge(&s),
                        Err(e) => {
                            if !inv.is_empty() {
                                mem.invalidate_now_for(self.root, &inv);
                            }
                            return Err(e);
                        }
                    }
                    cur = chunk_end;
                }
                None => cur = (cur | (PAGE_SIZE - 1)) + 1,
            }
        }
        Ok(inv)
    }

    /// The leaf descriptor translating `ipa` and its level.
    fn leaf(&self, mem: &impl TableMem, ipa: Ipa) -> Option<(u8, u64)> {
        if ipa.0 >> self.ipa_bits != 0 {
            return None;
        }
        let mut table = self.root;
        let mut level = self.start_level;
        loop {
            let idx = ((ipa.0 >> level_shift(level)) & (ENTRIES as u64 - 1)) as usize;
            let d = mem.read_entry(table, idx);
            if is_leaf(d, level) {
                return Some((level, d));
            }
            if !is_table(d, level) {
                return None;
            }
            table = PhysAddr(d & OA_MASK);
            level += 1;
        }
    }

    /// The leaf entry translating `ipa`: its first IPA, level, output
    /// address and attributes (what a table walk would cache).
    #[must_use]
    pub fn walk(&self, mem: &impl TableMem, ipa: Ipa) -> Option<Leaf> {
        let (level, d) = self.leaf(mem, ipa)?;
        let lsize = level_size(level);
        Some(Leaf {
            base: ipa.align_down(lsize),
            level,
            pa: PhysAddr(d & OA_MASK & !(lsize - 1)),
            attrs: S2Attrs::from_descriptor(d),
        })
    }

    /// Translate `ipa` (any byte address): the output address including the
    /// offset inside the page or block, and the leaf's attributes.
    #[must_use]
    pub fn lookup(&self, mem: &impl TableMem, ipa: Ipa) -> Option<(PhysAddr, S2Attrs)> {
        let (level, d) = self.leaf(mem, ipa)?;
        let lsize = level_size(level);
        let base = d & OA_MASK & !(lsize - 1);
        Some((
            PhysAddr(base | (ipa.0 & (lsize - 1))),
            S2Attrs::from_descriptor(d),
        ))
    }

    /// Call `f(ipa, pa, size, attrs)` for every leaf, in IPA order.
    pub fn for_each_leaf(
        &self,
        mem: &impl TableMem,
        f: &mut dyn FnMut(Ipa, PhysAddr, u64, S2Attrs),
    ) {
        Self::walk_leaves(mem, self.root, self.start_level, 0, f);
    }

    fn walk_leaves(
        mem: &impl TableMem,
        table: PhysAddr,
        level: u8,
        base: u64,
        f: &mut dyn FnMut(Ipa, PhysAddr, u64, S2Attrs),
    ) {
        for i in 0..ENTRIES {
            let d = mem.read_entry(table, i);
            let ipa = base + ((i as u64) << level_shift(level));
            if is_leaf(d, level) {
                let lsize = level_size(level);
                f(
                    Ipa(ipa),
                    PhysAddr(d & OA_MASK & !(lsize - 1)),
                    lsize,
                    S2Attrs::from_descriptor(d),
                );
            } else if is_table(d, level) {
                Self::walk_leaves(mem, PhysAddr(d & OA_MASK), level + 1, ipa, f);
            }
        }
    }

    /// Call `f(ipa)` with the first IPA covered by every table below the
    /// root that holds no valid entry at all (left by removes that did not
    /// free it), in IPA order. With the leaves of [`Stage2::for_each_leaf`],
    /// one IPA under every table entry of the tree: an IPA-based TLBI of each
    /// drops every walk-cache copy of the table entries (retiring a VMID).
    pub fn for_each_empty_table(&self, mem: &impl TableMem, f: &mut dyn FnMut(Ipa)) {
        Self::walk_empty(mem, self.root, self.start_level, 0, f);
    }

    fn walk_empty(
        mem: &impl TableMem,
        table: PhysAddr,
        level: u8,
        base: u64,
        f: &mut dyn FnMut(Ipa),
    ) {
        for i in 0..ENTRIES {
            let d = mem.read_entry(table, i);
            if is_table(d, level) {
                let ipa = base + ((i as u64) << level_shift(level));
                let child = PhysAddr(d & OA_MASK);
                if (0..ENTRIES).all(|j| mem.read_entry(child, j) & 1 == 0) {
                    f(Ipa(ipa));
                } else {
                    Self::walk_empty(mem, child, level + 1, ipa, f);
                }
            }
        }
    }

    /// Free every table frame of this stage-2, root included.
    ///
    /// The caller must have made sure no TLB or walk cache can still use
    /// them (the VMID was flushed after the domain stopped running).
    pub fn destroy(self, mem: &mut impl TableMem) {
        Self::free_tree(mem, self.root, self.start_level);
    }

    fn free_tree(mem: &mut impl TableMem, table: PhysAddr, level: u8) {
        for i in 0..ENTRIES {
            let d = mem.read_entry(table, i);
            if is_table(d, level) {
                Self::free_tree(mem, PhysAddr(d & OA_MASK), level + 1);
            }
        }
        mem.free_table(table);
    }
}

/// A read-only handle on a [`Stage2`] (added for hv's guest-memory
/// accessors): it can translate while the owning `Stage2` is borrowed
/// mutably elsewhere (e.g. inside a `memory_op` that reads guest handles
/// of the caller while changing physmaps). It never frees or changes anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2View {
    root: PhysAddr,
    ipa_bits: u8,
    start_level: u8,
}

impl Stage2 {
    /// A read-only view of this table.
    #[must_use]
    pub fn view(&self) -> Stage2View {
        Stage2View {
            root: self.root,
            ipa_bits: self.ipa_bits,
            start_level: self.start_level,
        }
    }
}

impl Stage2View {
    /// As [`Stage2::lookup`].
    #[must_use]
    pub fn lookup(&self, mem: &impl TableMem, ipa: Ipa) -> Option<(PhysAddr, S2Attrs)> {
        // Stage2 has no Drop: this temporary only borrows the same tables.
        Stage2 {
            root: self.root,
            ipa_bits: self.ipa_bits,
            start_level: self.start_level,
        }
        .lookup(mem, ipa)
    }
}
