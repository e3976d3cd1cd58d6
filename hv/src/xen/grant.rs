//! The grant table of a domain (`grant_table_op`, hypercall 20), version 1.
//!
//! Sources: Xen `xen/include/public/grant_table.h` (`GNTTABOP_*`, the
//! argument structs, `GNTST_*`), `xen/include/public/arch-arm.h`
//! (`GUEST_GNTTAB_BASE` 0x38000000, `GUEST_GNTTAB_SIZE` 0x01000000), Xen
//! 4.20's `xen/common/grant_table.c` (`grant_table_init`,
//! `gnttab_grow_table`, query_size / setup_table / set_version semantics);
//! Linux `drivers/xen/grant-table.c` (`gnttab_max_grant_frames` uses
//! query_size, `gnttab_expand` -> `gnttab_map` maps frames `start..=end`,
//! the largest index first, with `XENMEM_add_to_physmap` space
//! `XENMAPSPACE_grant_table` idx `i` at gfn `i` of the DT's grant region)
//! and `arch/arm/xen/enlighten.c` (the region is `/hypervisor`'s `reg`).
//!
//! hv keeps the shared frames (zeroed, hv-owned pool frames: the table
//! starts with [`INITIAL_NR_GRANT_FRAMES`] and grows to its maximum, see
//! `DomainXen::grow_grant`) and where the guest mapped them. Their content
//! is the guest's, except the `GTF_reading`/`GTF_writing` bits hv sets
//! while another domain maps (or copies through) an entry
//! (`GNTTABOP_map_grant_ref` / `GNTTABOP_copy`, Xen's `_set_status_v1`)
//! and clears when the last such pin goes (`reduce_status_for_pin`). Per domain,
//! hv also keeps what Xen keeps: the *active* entries (granted refs that
//! are mapped: by whom, which frame, how many read-only and writable
//! mappings) and the *maptrack* (the domain's own mappings of other
//! domains' grants, by handle). The cross-domain steps (and the p2m
//! changes, through memops) are in `hypercall/grant_table_op.rs`.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use pv_tlb::PhysAddr;

use super::Errno;
use crate::arch::PhysMem;

/// `GUEST_GNTTAB_BASE` (public/arch-arm.h).
pub const GUEST_GNTTAB_BASE: u64 = 0x3800_0000;
/// `GUEST_GNTTAB_SIZE` (public/arch-arm.h).
pub const GUEST_GNTTAB_SIZE: u64 = 0x0100_0000;
/// Grant frames a domain may grow its table to unless its creator says
/// otherwise: Xen's `opt_max_grant_frames` (64 frames, 32768 v1 entries;
/// `xl`'s default `max_grant_frames` -1 means this). Linux grows its table
/// (`gnttab_expand`) as its frontends take references: a domU with a
/// multi-queue netfront and blkfront needs more than a few frames.
pub const DEFAULT_MAX_GRANT_FRAMES: u32 = 64;
/// Frames a table has from its creation (Xen's `INITIAL_NR_GRANT_FRAMES`:
/// `grant_table_init` grows it to 1).
pub const INITIAL_NR_GRANT_FRAMES: u32 = 1;

/// `GNTTABOP_*` (public/grant_table.h).
pub mod op {
    #![allow(missing_docs)]
    pub const MAP_GRANT_REF: u32 = 0;
    pub const UNMAP_GRANT_REF: u32 = 1;
    pub const SETUP_TABLE: u32 = 2;
    pub const DUMP_TABLE: u32 = 3;
    pub const TRANSFER: u32 = 4;
    pub const COPY: u32 = 5;
    pub const QUERY_SIZE: u32 = 6;
    pub const UNMAP_AND_REPLACE: u32 = 7;
    pub const SET_VERSION: u32 = 8;
    pub const GET_STATUS_FRAMES: u32 = 9;
    pub const GET_VERSION: u32 = 10;
    pub const SWAP_GRANT_REF: u32 = 11;
    pub const CACHE_FLUSH: u32 = 12;
}

/// `GNTTABOP_CONTINUATION_ARG_SHIFT`: bits of `cmd` above it carry a
/// continuation's state (only `GNTTABOP_cache_flush` takes any).
pub const CONTINUATION_ARG_SHIFT: u32 = 12;
/// `GNTTABOP_CMD_MASK`.
pub const CMD_MASK: u32 = (1 << CONTINUATION_ARG_SHIFT) - 1;

/// `GNTMAP_*` (public/grant_table.h).
pub mod gntmap {
    #![allow(missing_docs)]
    pub const DEVICE_MAP: u32 = 1 << 0;
    pub const HOST_MAP: u32 = 1 << 1;
    pub const READONLY: u32 = 1 << 2;
    pub const APPLICATION_MAP: u32 = 1 << 3;
    pub const CONTAINS_PTE: u32 = 1 << 4;
}

/// `GTF_*`: `grant_entry_v1.flags` (public/grant_table.h).
pub mod gtf {
    #![allow(missing_docs)]
    pub const PERMIT_ACCESS: u16 = 1;
    pub const TYPE_MASK: u16 = 3;
    pub const READONLY: u16 = 1 << 2;
    pub const READING: u16 = 1 << 3;
    pub const WRITING: u16 = 1 << 4;
    pub const PWT: u16 = 1 << 5;
    pub const PCD: u16 = 1 << 6;
    pub const PAT: u16 = 1 << 7;
    pub const SUB_PAGE: u16 = 1 << 8;
}

/// `GNTCOPY_*` (`gnttab_copy.flags`).
pub mod gntcopy {
    #![allow(missing_docs)]
    pub const SOURCE_GREF: u16 = 1 << 0;
    pub const DEST_GREF: u16 = 1 << 1;
}

/// `GNTTAB_CACHE_*` (`gnttab_cache_flush.op`).
pub mod cache {
    #![allow(missing_docs)]
    pub const CLEAN: u32 = 1 << 0;
    pub const INVAL: u32 = 1 << 1;
    pub const SOURCE_GREF: u32 = 1 << 31;
}

/// `sizeof(grant_entry_v1_t)`; entries per 4 KiB frame.
pub const ENTRY_SIZE: u64 = 8;
/// v1 entries per grant frame.
pub const ENTRIES_PER_FRAME: u32 = 512;
/// Mappings (maptrack handles) a domain may hold at once: Xen's default
/// `max_maptrack_frames` (1024 frames of 256) would be 262144; hv bounds
/// them as its foreign mappings (`memops::physmap::FOREIGN_MAX`).
pub const MAX_MAPTRACK: usize = 1 << 16;
/// Mappings of one active entry per kind (Xen's 8-bit `GNTPIN_*` fields:
/// one more would overflow, `GNTPIN_incr2oflow_mask`).
pub const MAX_PINS: u32 = 0xff;

/// `GNTST_okay`.
pub const GNTST_OKAY: i16 = 0;
/// `GNTST_general_error`.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// `GNTST_bad_domain`.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// `GNTST_bad_gntref`.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// `GNTST_bad_handle`.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// `GNTST_bad_virt_addr`.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// `GNTST_permission_denied`.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// `GNTST_bad_page`.
pub const GNTST_BAD_PAGE: i16 = -9;
/// `GNTST_bad_copy_arg`.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// `GNTST_no_space`.
pub const GNTST_NO_SPACE: i16 = -13;

/// `INVALID_GFN` as written into a setup_table frame list.
pub const INVALID_GFN: u64 = !0;

/// A granted entry that is mapped (Xen's `struct active_grant_entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Active {
    /// The one domain mapping it (Xen's `act->domid`).
    pub mapper: u16,
    /// The granted frame (host address), fixed while mapped (`act->mfn`).
    pub pa: PhysAddr,
    /// Read-only host mappings (`GNTPIN_hstr`).
    pub read_pins: u32,
    /// Writable host mappings (`GNTPIN_hstw`).
    pub write_pins: u32,
}

/// One mapping a domain holds of another's grant (Xen's `struct
/// grant_mapping`, one maptrack entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The granting domain.
    pub dom: u16,
    /// Which grant table of that domid ([`GrantTable::serial`]): a granter
    /// destroyed and a new domain with its id are told apart.
    pub table: u64,
    /// The grant reference.
    pub gref: u32,
    /// `GNTMAP_*` it was mapped with.
    pub flags: u32,
    /// The frame (host address) it maps.
    pub pa: PhysAddr,
}

impl Active {
    /// One more mapping of this kind would overflow Xen's pin counter.
    #[must_use]
    pub fn full(&self, readonly: bool) -> bool {
        if readonly {
            self.read_pins >= MAX_PINS
        } else {
            self.write_pins >= MAX_PINS
        }
    }
}

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

/// One domain's grant table.
#[derive(Debug)]
pub struct GrantTable {
    /// The frames in use (Xen's `shared_raw[0..nr_grant_frames]`).
    frames: Vec<PhysAddr>,
    mapped_at: Vec<Option<u64>>,
    /// `max_grant_frames`.
    max: u32,
    serial: u64,
    active: BTreeMap<u32, Active>,
    maptrack: Vec<Option<Mapping>>,
    free_handles: Vec<u32>,
    /// Entries whose `GTF_*` bits are to be cleared once hv can reach the
    /// table's frames (the mapper was destroyed without unmapping).
    pending_clear: Vec<(u32, u16)>,
}

impl Default for GrantTable {
    fn default() -> Self {
        Self::new(Vec::new(), 0)
    }
}

impl GrantTable {
    /// A v1 table of `frames` (zeroed host frames) that may grow to `max`
    /// frames ([`GrantTable::add_frames`]).
    #[must_use]
    pub fn new(frames: Vec<PhysAddr>, max: u32) -> Self {
        let n = frames.len();
        Self {
            frames,
            mapped_at: alloc::vec![None; n],
            max,
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            active: BTreeMap::new(),
            maptrack: Vec::new(),
            free_handles: Vec::new(),
            pending_clear: Vec::new(),
        }
    }

    /// This table's identity (unique for hv's lifetime, never reused).
    #[must_use]
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// Entries in use (`nr_grant_entries`: 512 per frame in use, v1).
    #[must_use]
    pub fn nr_entries(&self) -> u32 {
        self.nr_frames() * ENTRIES_PER_FRAME
    }

    /// Host address of entry `gref` (`None` past [`GrantTable::nr_entries`]).
    #[must_use]
    pub fn entry_pa(&self, gref: u32) -> Option<PhysAddr> {
        if gref >= self.nr_entries() {
            return None;
        }
        let f = self.frames.get((gref / ENTRIES_PER_FRAME) as usize)?;
        Some(PhysAddr(
            f.0 + u64::from(gref % ENTRIES_PER_FRAME) * ENTRY_SIZE,
        ))
    }

    /// The active entry of `gref`, if it is mapped.
    #[must_use]
    pub fn active(&self, gref: u32) -> Option<Active> {
        self.active.get(&gref).copied()
    }

    /// One more host mapping of `gref` by `mapper` of frame `pa`
    /// (`act->pin += GNTPIN_hst{r,w}_inc`; the caller checked
    /// [`Active::full`] and the mapper).
    pub fn pin(&mut self, gref: u32, mapper: u16, pa: PhysAddr, readonly: bool) {
        let a = match self.active.entry(gref) {
            alloc::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            alloc::collections::btree_map::Entry::Vacant(v) => v.insert(Active {
                mapper,
                pa,
                read_pins: 0,
                write_pins: 0,
            }),
        };
        if readonly {
            a.read_pins += 1;
        } else {
            a.write_pins += 1;
        }
    }

    /// One host mapping of `gref` fewer; returns the `GTF_*` bits to clear
    /// in its entry ([`reduce_status`]).
    pub fn unpin(&mut self, gref: u32, readonly: bool) -> u16 {
        let Some(a) = self.active.get_mut(&gref) else {
            return reduce_status(None, readonly);
        };
        if readonly {
            a.read_pins = a.read_pins.saturating_sub(1);
        } else {
            a.write_pins = a.write_pins.saturating_sub(1);
        }
        let a = *a;
        if a.read_pins == 0 && a.write_pins == 0 {
            self.active.remove(&gref);
            return reduce_status(None, readonly);
        }
        reduce_status(Some(&a), readonly)
    }

    /// True if `mapper` holds a mapping of an entry of this table whose
    /// frame is `pa` (Xen's `grant_map_exists`, for `GNTTABOP_cache_flush`).
    #[must_use]
    pub fn active_mapping_of(&self, mapper: u16, pa: PhysAddr) -> bool {
        self.active
            .values()
            .any(|a| a.mapper == mapper && a.pa == pa)
    }

    /// True if one more mapping can be tracked (a handle is free or the
    /// maptrack can grow: [`MAX_MAPTRACK`], and hv's heap has room).
    pub fn maptrack_room(&mut self) -> bool {
        !self.free_handles.is_empty()
            || (self.maptrack.len() < MAX_MAPTRACK && self.maptrack.try_reserve(1).is_ok())
    }

    /// Record mapping `m`; returns its handle (a freed one first).
    ///
    /// # Errors
    /// `GNTST_no_space` without [`GrantTable::maptrack_room`].
    pub fn track(&mut self, m: Mapping) -> Result<u32, i16> {
        if let Some(h) = self.free_handles.pop() {
            self.maptrack[h as usize] = Some(m);
            return Ok(h);
        }
        if self.maptrack.len() >= MAX_MAPTRACK || self.maptrack.try_reserve(1).is_err() {
            return Err(GNTST_NO_SPACE);
        }
        self.maptrack.push(Some(m));
        Ok((self.maptrack.len() - 1) as u32)
    }

    /// The mapping behind `handle`, if it is in use.
    #[must_use]
    pub fn mapping(&self, handle: u32) -> Option<Mapping> {
        self.maptrack.get(handle as usize).copied().flatten()
    }

    /// Free `handle` (its mapping is gone).
    pub fn untrack(&mut self, handle: u32) {
        if let Some(slot @ Some(_)) = self.maptrack.get_mut(handle as usize) {
            *slot = None;
            // Reserved with the slot: the free list never outgrows the maptrack.
            if self.free_handles.try_reserve(1).is_ok() {
                self.free_handles.push(handle);
            }
        }
    }

    /// Every mapping this domain holds (for its teardown).
    pub fn mappings(&self) -> impl Iterator<Item = Mapping> + '_ {
        self.maptrack.iter().filter_map(|m| *m)
    }

    /// Clear `clear` in entry `gref` later ([`GrantTable::apply_pending`]).
    pub fn queue_clear(&mut self, gref: u32, clear: u16) {
        if clear != 0 && self.pending_clear.try_reserve(1).is_ok() {
            self.pending_clear.push((gref, clear));
        }
    }

    /// Clear the `GTF_*` bits queued by [`GrantTable::queue_clear`] (unless
    /// the entry is mapped again meanwhile).
    pub fn apply_pending<M: PhysMem + ?Sized>(&mut self, mem: &mut M) {
        for (gref, clear) in core::mem::take(&mut self.pending_clear) {
            let clear = match self.active(gref) {
                Some(a) => clear & reduce_status(Some(&a), false),
                None => clear,
            };
            if let Some(pa) = self.entry_pa(gref) {
                clear_status(mem, pa, clear);
            }
        }
    }

    /// True if entries wait for [`GrantTable::apply_pending`].
    #[must_use]
    pub fn has_pending(&self) -> bool {
        !self.pending_clear.is_empty()
    }

    /// Frames in use (`nr_grant_frames`).
    #[must_use]
    pub fn nr_frames(&self) -> u32 {
        self.frames.len() as u32
    }

    /// Frames the table may grow to (`max_grant_frames`).
    #[must_use]
    pub fn max_frames(&self) -> u32 {
        self.max
    }

    /// The host frames (for teardown).
    #[must_use]
    pub fn frames(&self) -> &[PhysAddr] {
        &self.frames
    }

    /// Room in hv's heap for `n` more frames' records.
    pub fn reserve(&mut self, n: usize) -> bool {
        self.frames.try_reserve(n).is_ok() && self.mapped_at.try_reserve(n).is_ok()
    }

    /// The table grows by `new` (zeroed frames; the caller checked
    /// [`GrantTable::max_frames`] and [`GrantTable::reserve`]d room: frames
    /// past either are not taken).
    pub fn add_frames(&mut self, new: &[PhysAddr]) {
        for &pa in new {
            if self.frames.len() >= self.max as usize
                || self.frames.len() == self.frames.capacity()
                || self.mapped_at.len() == self.mapped_at.capacity()
            {
                return;
            }
            self.frames.push(pa);
            self.mapped_at.push(None);
        }
    }

    /// Frame `idx` (grown to already) for `XENMAPSPACE_grant_table`, to be
    /// mapped at `gfn` (Xen's `gnttab_map_frame`; Arm's
    /// `gnttab_set_frame_gfn` records where).
    ///
    /// # Errors
    /// `-EINVAL` for a frame not in use (or a status frame, v2 only).
    pub fn map_frame(&mut self, idx: u64, gfn: u64) -> Result<PhysAddr, Errno> {
        // XENMAPSPACE_grant_table: bit 31 selects status frames (v2 only).
        if idx & (1 << 31) != 0 {
            return Err(Errno::EINVAL);
        }
        let i = usize::try_from(idx).map_err(|_| Errno::EINVAL)?;
        let pa = *self.frames.get(i).ok_or(Errno::EINVAL)?;
        if let Some(at) = self.mapped_at.get_mut(i) {
            *at = Some(gfn);
        }
        Ok(pa)
    }

    /// Frame `idx`'s host address, if it is in use.
    #[must_use]
    pub fn frame(&self, idx: u64) -> Option<PhysAddr> {
        usize::try_from(idx)
            .ok()
            .and_then(|i| self.frames.get(i).copied())
    }

    /// `GNTTABOP_query_size`: `(nr_frames, max_nr_frames)`.
    #[must_use]
    pub fn query_size(&self) -> (u32, u32) {
        (self.nr_frames(), self.max_frames())
    }

    /// The gfn of frame `i` for `GNTTABOP_setup_table` (Arm's
    /// `gnttab_shared_gfn`): where the guest mapped it, else `INVALID_GFN`
    /// (a translated guest maps frames itself).
    #[must_use]
    pub fn shared_gfn(&self, i: u32) -> u64 {
        self.mapped_at
            .get(i as usize)
            .copied()
            .flatten()
            .unwrap_or(INVALID_GFN)
    }
}

/// The `GTF_*` bits to clear in an entry after one of its mappings
/// (`readonly` or not) went and `left` is what stays mapped (Xen's
/// `reduce_status_for_pin`): `GTF_reading` when nothing is left,
/// `GTF_writing` when no writable mapping is left.
#[must_use]
pub fn reduce_status(left: Option<&Active>, readonly: bool) -> u16 {
    let mut clear = if left.is_some() { 0 } else { gtf::READING };
    if !readonly && left.is_none_or(|a| a.write_pins == 0) {
        clear |= gtf::WRITING;
    }
    clear
}

/// Clear `clear` in the v1 entry at `pa` (atomically: the granter may be
/// updating its flags at the same time).
pub fn clear_status<M: PhysMem + ?Sized>(mem: &mut M, pa: PhysAddr, clear: u16) {
    if clear != 0 {
        mem.fetch_and_u64(pa, !u64::from(clear));
    }
}

/// Xen's `_set_status_v1` for a mapping (`map`, Xen's `mapflag`) or a
/// copy by `mapper` of the v1 entry at `pa`: `GTF_reading` (and
/// `GTF_writing` unless `readonly`) set atomically. When the entry is not
/// pinned yet (`pinned` false) it must be `GTF_permit_access` for `mapper`
/// (and, for a mapping, without `GTF_sub_page`: a copy ignores that bit of
/// a v1 entry, as Xen); writing to a `GTF_readonly` entry is refused.
/// Returns the entry's `frame`.
///
/// Xen uses a compare-and-swap; hv sets the bits with one atomic OR and
/// judges the value it replaced, taking back the bits it added when that
/// value was not acceptable: the granter's own compare-and-swap (ending
/// its grant) fails as soon as the bits are set, exactly as against Xen's.
///
/// # Errors
/// `GNTST_general_error`, as Xen, for a refused entry (nothing changed).
pub fn set_status<M: PhysMem + ?Sized>(
    mem: &mut M,
    pa: PhysAddr,
    pinned: bool,
    mapper: u16,
    readonly: bool,
    map: bool,
) -> Result<u32, i16> {
    let want = gtf::READING | if readonly { 0 } else { gtf::WRITING };
    let mask = gtf::TYPE_MASK | if map { gtf::SUB_PAGE } else { 0 };
    let old = mem.fetch_or_u64(pa, u64::from(want));
    let flags = old as u16;
    let domid = (old >> 16) as u16;
    let frame = (old >> 32) as u32;
    let refused = (!pinned && ((flags & mask) != gtf::PERMIT_ACCESS || domid != mapper))
        || (!readonly && flags & gtf::READONLY != 0);
    if refused {
        clear_status(mem, pa, want & !flags);
        return Err(GNTST_GENERAL_ERROR);
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_used_as_the_table_grows() {
        let f = [0x8000_0000u64, 0x8000_1000, 0x8000_2000, 0x8000_3000].map(PhysAddr);
        let mut g = GrantTable::new(alloc::vec![f[0]], 4);
        assert_eq!(g.query_size(), (1, 4), "INITIAL_NR_GRANT_FRAMES");
        assert_eq!(g.nr_entries(), 512);
        // Linux maps frame 0 at the first gfn of the DT region.
        let gfn = GUEST_GNTTAB_BASE >> 12;
        assert_eq!(g.map_frame(0, gfn), Ok(f[0]));
        assert_eq!(g.map_frame(1, gfn + 1), Err(Errno::EINVAL), "not grown yet");
        assert!(g.reserve(3));
        g.add_frames(&f[1..]);
        assert_eq!(g.query_size(), (4, 4));
        assert_eq!(g.nr_entries(), 2048);
        assert_eq!(g.entry_pa(2047), Some(PhysAddr(f[3].0 + 511 * 8)));
        assert_eq!(g.entry_pa(2048), None);
        assert_eq!(g.map_frame(2, gfn + 2), Ok(f[2]));
        assert_eq!(
            g.map_frame(1 << 31, gfn),
            Err(Errno::EINVAL),
            "status frames are v2"
        );
        let gfns: Vec<u64> = (0..4).map(|i| g.shared_gfn(i)).collect();
        assert_eq!(gfns, [gfn, INVALID_GFN, gfn + 2, INVALID_GFN]);
        // Never past the maximum.
        assert!(g.reserve(1));
        g.add_frames(&[PhysAddr(0x9000_0000)]);
        assert_eq!(g.nr_frames(), 4);
        assert_eq!(g.frame(4), None);
    }

    #[test]
    fn maptrack_is_bounded_and_reuses_handles() {
        let mut g = GrantTable::new(alloc::vec![PhysAddr(0x8000_0000)], 1);
        let m = Mapping {
            dom: 1,
            table: 7,
            gref: 0,
            flags: gntmap::HOST_MAP,
            pa: PhysAddr(0x9000_0000),
        };
        for h in 0..MAX_MAPTRACK as u32 {
            assert!(g.maptrack_room());
            assert_eq!(g.track(m), Ok(h));
        }
        assert!(!g.maptrack_room());
        assert_eq!(g.track(m), Err(GNTST_NO_SPACE));
        g.untrack(77);
        assert_eq!(g.mapping(77), None);
        g.untrack(77); // twice: one free slot only
        assert!(g.maptrack_room());
        assert_eq!(g.track(m), Ok(77));
        assert_eq!(g.track(m), Err(GNTST_NO_SPACE));
        assert_eq!(g.mappings().count(), MAX_MAPTRACK);
    }

    #[test]
    fn status_bits_follow_xens_set_and_reduce() {
        let a = |r, w| Active {
            mapper: 0,
            pa: PhysAddr(0),
            read_pins: r,
            write_pins: w,
        };
        assert_eq!(reduce_status(None, true), gtf::READING);
        assert_eq!(reduce_status(None, false), gtf::READING | gtf::WRITING);
        assert_eq!(reduce_status(Some(&a(1, 0)), false), gtf::WRITING);
        assert_eq!(reduce_status(Some(&a(0, 1)), false), 0);
        assert_eq!(reduce_status(Some(&a(1, 1)), true), 0);
        assert!(a(MAX_PINS, 0).full(true) && !a(MAX_PINS, 0).full(false));
    }
}
