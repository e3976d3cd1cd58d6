//! Xen `memory_op` (hypercall 12) semantics over memops' physmaps.
//!
//! Numbers follow Xen's `xen/include/public/memory.h` (as of
//! xen-project/xen c447b73, 2026-08); the arm64 struct layouts are the shared
//! ones of [`crate::xen_abi`] (Xen 4.20's headers, sizes and offsets asserted
//! at compile time). The continuation encoding
//! is Xen's (`xen/include/xen/hypercall.h`): `cmd[5:0]` is the operation,
//! `cmd[63:6]` the extent to resume at.
//!
//! Supported: `XENMEM_decrease_reservation` (1), `XENMEM_populate_physmap`
//! (6), `XENMEM_add_to_physmap` (7; spaces `shared_info` and `grant_table`, like Xen on
//! Arm every other space of the single call is `-ENOSYS`, `gmfn_foreign`
//! included), `XENMEM_remove_from_physmap` (15), `XENMEM_add_to_physmap_batch`
//! (23; `gmfn_foreign` and `shared_info`), and hv's
//! [`XENMEM_REMOVE_FROM_PHYSMAP_BATCH`] (63).
//!
//! Handlers never issue TLB maintenance: each returns a [`MemOpOutcome`]
//! whose [`Flush`] hv executes (plan first, then [`crate::FrameTable::release`]
//! of the released frames). Guest memory is reached only through
//! [`GuestCopy`], the domains through [`MemEnv`]. Guest-controlled values are
//! checked and answered with Xen errnos; nothing here panics on them.

use pv_tlb::{DeferredFlush, Flush, Vmid};

use crate::error::errno;
use crate::frames::FrameTable;
use crate::physmap::{P2mKind, Physmap, Removed};
use crate::stage2::{MemType, S2Attrs, TableMem};
use crate::{Error, Ipa, PhysAddr, PAGE_SIZE};

/// `XENMEM_decrease_reservation`.
pub const XENMEM_DECREASE_RESERVATION: u64 = 1;
/// `XENMEM_populate_physmap`.
pub const XENMEM_POPULATE_PHYSMAP: u64 = 6;
/// `XENMEM_add_to_physmap`.
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
/// `XENMEM_remove_from_physmap`.
pub const XENMEM_REMOVE_FROM_PHYSMAP: u64 = 15;
/// `XENMEM_add_to_physmap_batch`.
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u64 = 23;
/// `XENMEM_acquire_resource`.
pub const XENMEM_ACQUIRE_RESOURCE: u64 = 28;
/// `XENMEM_resource_ioreq_server`, `_grant_table`, `_vmtrace_buf` (memory.h).
pub const XENMEM_RESOURCE_GRANT_TABLE: u16 = 1;
/// `XENMEM_resource_grant_table_id_shared` / `_status`.
pub const XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED: u32 = 0;

/// hv's `XENMEM_remove_from_physmap_batch`: **63**.
///
/// Xen's memory_op numbers in use today are 0..=28 (`XENMEM_acquire_resource`
/// = 28 is the highest); new ones are allocated upwards. The command field is
/// only 6 bits wide (`MEMOP_CMD_MASK`), so 63, the largest encodable command,
/// is the number least likely ever to collide.
///
/// In the style of `public/memory.h`:
///
/// ```c
/// /*
///  * Unmaps the pages appearing at a list of GPFNs from the specified guest's
///  * physical address space (translated guests only): a batched
///  * XENMEM_remove_from_physmap. Entries are independent: an entry that fails
///  * stores its error in errs[] and the rest of the batch is still done.
///  * The TLB invalidation of the whole batch is done once, before the call
///  * returns (or before any removed page is reused).
///  * Preemptible: Xen-style continuation with the next index in cmd[63:6].
///  * arg == addr of xen_remove_from_physmap_batch_t.
///  * Returns 0, or -EFAULT / -ESRCH / -EPERM / -EINVAL for the whole call.
///  */
/// #define XENMEM_remove_from_physmap_batch 63
/// struct xen_remove_from_physmap_batch {
///     /* IN */
///     domid_t domid;      /* offset 0: which domain (DOMID_SELF ok)      */
///     uint16_t res0;      /* offset 2: must be zero                      */
///     uint32_t size;      /* offset 4: number of entries                 */
///     /* GPFNs of the current mappings to remove. */
///     XEN_GUEST_HANDLE(xen_pfn_t) gpfns;  /* offset 8                    */
///     /* OUT */
///     /* Per entry error code: 0, -ENOENT (not mapped), -EINVAL (gpfn out
///      * of the domain's physical address space), -ENOMEM (hv could not
///      * record the change: its heap is at its reserve). */
///     XEN_GUEST_HANDLE(int) errs;         /* offset 16                   */
/// };                                      /* sizeof: 24                  */
/// typedef struct xen_remove_from_physmap_batch xen_remove_from_physmap_batch_t;
/// DEFINE_XEN_GUEST_HANDLE(xen_remove_from_physmap_batch_t);
/// ```
pub const XENMEM_REMOVE_FROM_PHYSMAP_BATCH: u64 = 63;

/// `MEMOP_EXTENT_SHIFT`: the resume index lives in `cmd[63:6]`.
pub const MEMOP_EXTENT_SHIFT: u32 = 6;
/// `MEMOP_CMD_MASK`.
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;

/// `XENMAPSPACE_shared_info`.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table`.
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// `XENMAPSPACE_gmfn`.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// `XENMAPSPACE_gmfn_range`.
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// `XENMAPSPACE_gmfn_foreign`.
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// `XENMAPSPACE_dev_mmio`.
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;

/// `DOMID_SELF` (`public/xen.h`).
pub const DOMID_SELF: u16 = 0x7FF0;

/// Largest extent order a domain may ask for (Xen's default `domu_max_order`
/// is 9 on Arm: 2 MiB).
pub const MAX_EXTENT_ORDER: u32 = 9;

/// Stage-2 attributes of a read-only grant mapping (Xen's
/// `p2m_grant_map_ro`: read-only, never executable).
pub const FOREIGN_RO_ATTRS: S2Attrs = S2Attrs {
    write: false,
    ..FOREIGN_ATTRS
};

/// Stage-2 attributes of a foreign mapping (Xen's `p2m_map_foreign_rw`,
/// `p2m_grant_map_rw`: read/write, never executable).
pub const FOREIGN_ATTRS: S2Attrs = S2Attrs {
    read: true,
    write: true,
    exec: false,
    mem: MemType::NormalWb,
};

/// Read/write access to the calling vCPU's guest memory (hv plugs in its
/// checked, stage-2-translating accessors).
pub trait GuestCopy {
    /// Copy `buf.len()` bytes from guest address `ipa`.
    ///
    /// # Errors
    /// [`Error::Fault`] if any byte is not guest RAM of the caller.
    fn copy_from(&mut self, ipa: Ipa, buf: &mut [u8]) -> Result<(), Error>;
    /// Copy `buf` to guest address `ipa`.
    ///
    /// # Errors
    /// [`Error::Fault`] if any byte is not writable guest RAM of the caller.
    fn copy_to(&mut self, ipa: Ipa, buf: &[u8]) -> Result<(), Error>;
}

/// The domains, as memops needs them.
pub trait MemEnv {
    /// A domain's physmap.
    fn physmap(&self, domid: u16) -> Option<&Physmap>;
    /// A domain's physmap, mutable.
    fn physmap_mut(&mut self, domid: u16) -> Option<&mut Physmap>;
    /// True for the control domain (may act on others, map foreign pages).
    fn is_privileged(&self, domid: u16) -> bool;
    /// The domain's current VMID, or `None` if it never had one (then no
    /// TLB can hold its translations and nothing needs invalidating).
    fn vmid(&self, domid: u16) -> Option<Vmid>;
    /// hv's shared-info frame of the domain.
    fn shared_info(&self, domid: u16) -> Option<PhysAddr>;
    /// hv's grant-table frame `idx` of the domain, about to be mapped at
    /// `gpfn` (`XENMAPSPACE_grant_table`): the table grows to cover it
    /// (Xen's `gnttab_map_frame` -> `gnttab_grow_table`), its new frames
    /// taken from `frames`; `None` (the default) is `-EINVAL`.
    fn grant_frame(
        &mut self,
        _frames: &mut FrameTable,
        _domid: u16,
        _idx: u64,
        _gpfn: u64,
    ) -> Option<PhysAddr> {
        None
    }
    /// How many frames the domain's grant table may grow to
    /// (`max_grant_frames`); `None` (the default): no such table.
    fn grant_max_frames(&self, _domid: u16) -> Option<u32> {
        None
    }
    /// Grant-table frame `idx` of the domain for `XENMEM_acquire_resource`
    /// (the table grows to cover it, Xen's `gnttab_grow_table`, its new
    /// frames taken from `frames`); `None` (the default) past the maximum.
    fn acquire_grant_frame(
        &mut self,
        _frames: &mut FrameTable,
        _domid: u16,
        _idx: u64,
    ) -> Option<PhysAddr> {
        None
    }
    /// Zero `pa` (4 KiB) before a domain can see it.
    fn scrub(&mut self, pa: PhysAddr);
    /// Execute `plan` now, before returning (hv's arch executor, which
    /// counts every op). Handlers call this only where the order matters:
    /// before a gfn whose invalidation is pending is mapped again, and to
    /// get held frames back when the pool is empty. Everything else is
    /// returned in [`MemOpOutcome::flush`].
    fn execute(&mut self, plan: &pv_tlb::Plan);
    /// True if the host has room for `records` more per-gfn physmap records
    /// (they live in hv's heap). A guest must not exhaust that heap: when
    /// this says no, the mapping fails with `-ENOMEM` before anything
    /// changed. The default (host tests, unbounded hosts) always says yes.
    fn heap_room(&self, records: u64) -> bool {
        let _ = records;
        true
    }
}

/// What a handler needs, borrowed separately so they can be used together.
pub struct MemCtx<'a, E: MemEnv, T: TableMem> {
    /// The domains.
    pub env: &'a mut E,
    /// Table memory.
    pub tables: &'a mut T,
    /// The frame pool.
    pub frames: &'a mut FrameTable,
    /// The flush gatherer (holds the policy).
    pub flush: &'a mut DeferredFlush,
    /// Entries (for populate/decrease_reservation: pages) processed per
    /// invocation before a batch is preempted with a continuation (Xen checks
    /// `hypercall_preempt_check()` per entry; hv uses a fixed, deterministic
    /// budget).
    pub budget: u64,
}

/// What the hypercall returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemOpRet {
    /// Finished: this goes to x0.
    Done(i64),
    /// Preempted: re-issue `memory_op(cmd, arg)` (Xen's
    /// `hypercall_create_continuation`: x0 = `cmd`, PC back on the `HVC`).
    Continue {
        /// The command with the resume index in `cmd[63:6]`.
        cmd: u64,
    },
}

/// A handler's result: the return value and the TLB work (plan, then releases).
#[derive(Clone, PartialEq, Eq, Debug)]
#[must_use = "the flush must be executed and its pages released"]
pub struct MemOpOutcome {
    /// For the guest.
    pub ret: MemOpRet,
    /// Execute `flush.plan`, then release `flush.released`.
    pub flush: Flush,
}

const fn err(e: i64) -> MemOpRet {
    MemOpRet::Done(-e)
}

/// `struct xen_memory_reservation` (the shared definition, [`crate::xen_abi`]).
pub type MemoryReservation = crate::xen_abi::XenMemoryReservation;
/// `struct xen_add_to_physmap` ([`crate::xen_abi`]).
pub type AddToPhysmap = crate::xen_abi::XenAddToPhysmap;
/// `struct xen_add_to_physmap_batch` ([`crate::xen_abi`]).
pub type AddToPhysmapBatch = crate::xen_abi::XenAddToPhysmapBatch;
/// `struct xen_mem_acquire_resource` ([`crate::xen_abi`]).
pub type MemAcquireResource = crate::xen_abi::XenMemAcquireResource;
/// `struct xen_remove_from_physmap` ([`crate::xen_abi`]).
pub type RemoveFromPhysmap = crate::xen_abi::XenRemoveFromPhysmap;
/// hv's `struct xen_remove_from_physmap_batch` ([`crate::xen_abi`]; see
/// [`XENMEM_REMOVE_FROM_PHYSMAP_BATCH`]).
pub type RemoveFromPhysmapBatch = crate::xen_abi::XenRemoveFromPhysmapBatch;

/// The structure at `arg`, decoded by `decode` (its `from_bytes`).
fn read_struct<const N: usize, S>(
    g: &mut impl GuestCopy,
    arg: u64,
    decode: fn(&[u8; N]) -> S,
) -> Result<S, Error> {
    let mut b = [0u8; N];
    g.copy_from(Ipa(arg), &mut b)?;
    Ok(decode(&b))
}

/// Element `i` of a guest array of `size`-byte elements at `handle`.
fn elem(handle: u64, i: u64, size: u64) -> Result<Ipa, Error> {
    i.checked_mul(size)
        .and_then(|o| handle.checked_add(o))
        .map(Ipa)
        .ok_or(Error::Fault { ipa: Ipa(handle) })
}

fn read_u64_at(g: &mut impl GuestCopy, handle: u64, i: u64) -> Result<u64, Error> {
    let mut b = [0u8; 8];
    g.copy_from(elem(handle, i, 8)?, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn write_i32_at(g: &mut impl GuestCopy, handle: u64, i: u64, v: i32) -> Result<(), Error> {
    g.copy_to(elem(handle, i, 4)?, &v.to_le_bytes())
}

/// Elements `i..i + out.len()` of a guest array of u64 at `handle`, read 64 at a time.
fn read_u64s(g: &mut impl GuestCopy, handle: u64, i: u64, out: &mut [u64]) -> Result<(), Error> {
    let mut buf = [0u8; 512];
    for (c, chunk) in out.chunks_mut(64).enumerate() {
        let b = &mut buf[..chunk.len() * 8];
        g.copy_from(elem(handle, i + c as u64 * 64, 8)?, b)?;
        for (v, x) in chunk.iter_mut().zip(b.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(x);
            *v = u64::from_le_bytes(a);
        }
    }
    Ok(())
}

/// Store 0 into elements `i..i + n` of a guest array of i32 at `handle`.
fn write_zero_i32s(g: &mut impl GuestCopy, handle: u64, i: u64, n: u64) -> Result<(), Error> {
    let zeros = [0u8; 256];
    let mut k = 0;
    while k < n {
        let m = (n - k).min(64);
        g.copy_to(elem(handle, i + k, 4)?, &zeros[..m as usize * 4])?;
        k += m;
    }
    Ok(())
}

/// Pages of a 2 MiB stage-2 block.
const BLOCK_PAGES: u64 = 512;

impl<E: MemEnv, T: TableMem> MemCtx<'_, E, T> {
    /// Resolve `DOMID_SELF` and check that `caller` may act on `domid`.
    fn target(&self, caller: u16, domid: u16) -> Result<u16, i64> {
        let d = if domid == DOMID_SELF { caller } else { domid };
        if self.env.physmap(d).is_none() {
            return Err(errno::ESRCH);
        }
        if d != caller && !self.env.is_privileged(caller) {
            return Err(errno::EPERM);
        }
        Ok(d)
    }

    /// Hand an invalidation of `domid` and the references it covers to the gatherer.
    fn record(
        &mut self,
        domid: u16,
        inv: &pv_tlb::InvalidationSet,
        held: &[PhysAddr],
        out: &mut Flush,
    ) {
        match self.env.vmid(domid) {
            Some(v) => out.append(self.flush.record(v, inv, held)),
            // Never ran with a VMID: no TLB holds its translations.
            None => out.released.extend_from_slice(held),
        }
    }

    /// Run everything gathered in `out` so far (plan, then releases).
    fn sync(&mut self, out: &mut Flush) {
        let f = core::mem::take(out);
        if !f.plan.is_empty() {
            self.env.execute(&f.plan);
        }
        let r = self.frames.release(&f.released);
        debug_assert!(r.is_ok(), "release of held frames: {r:?}");
    }

    /// Before mapping at `gfn`: a pending invalidation of it (deferred, or a
    /// xen-compat flush of a mapping removed earlier in this hypercall) must
    /// have *run*, not merely been planned (break-before-make).
    fn before_map(&mut self, domid: u16, gfn: u64, pages: u64, out: &mut Flush) {
        if let Some(v) = self.env.vmid(domid) {
            out.append(self.flush.before_map(
                v,
                Ipa::from_page_number(gfn),
                pages.saturating_mul(PAGE_SIZE),
            ));
        }
        if !out.plan.is_empty() {
            self.sync(out);
        }
    }

    /// The hypercall of `caller` that changed `domid`'s physmap ends (or is
    /// preempted): `coalescable` leaves `domid`'s invalidations pending in
    /// `caller`'s coalescing window (see `pv_tlb::deferred`).
    fn end(&mut self, caller: u16, domid: u16, coalescable: bool, out: &mut Flush) {
        if let Some(v) = self.env.vmid(domid) {
            // A caller without a VMID never ran: its window is keyed by the
            // target's VMID (closed when the target's next exit comes).
            let c = self.env.vmid(caller).unwrap_or(v);
            out.append(self.flush.end_hypercall(c, v, coalescable));
        }
    }

    /// Remove whatever `gfn` of `d` maps (give_back: own RAM leaves the domain).
    fn remove_one(
        &mut self,
        d: u16,
        gfn: u64,
        give_back: bool,
        out: &mut Flush,
    ) -> Result<(), Error> {
        let pm = self
            .env
            .physmap_mut(d)
            .ok_or(Error::NoSuchDomain { domid: d })?;
        if !pm.gfn_in_range(gfn) {
            return Err(Error::Invalid {
                what: "gpfn outside the domain",
            });
        }
        let (inv, r) = pm.remove(self.tables, gfn, give_back)?;
        let held: &[PhysAddr] = match &r {
            Removed::Release(pa) => core::slice::from_ref(pa),
            Removed::Orphaned(_) | Removed::Nothing => &[],
        };
        self.record(d, &inv, held, out);
        Ok(())
    }

    /// Map `pages` frames at `gfn` of `d`, removing what was there first.
    #[allow(clippy::too_many_arguments)]
    fn map_at(
        &mut self,
        d: u16,
        gfn: u64,
        pa: PhysAddr,
        pages: u64,
        kind: P2mKind,
        attrs: S2Attrs,
        out: &mut Flush,
    ) -> Result<(), Error> {
        if !self.env.heap_room(pages) {
            return Err(Error::OutOfMemory);
        }
        {
            let pm = self
                .env
                .physmap(d)
                .ok_or(Error::NoSuchDomain { domid: d })?;
            if gfn
                .checked_add(pages)
                .is_none_or(|e| e == 0 || !pm.gfn_in_range(e - 1))
            {
                return Err(Error::Invalid {
                    what: "gpfn outside the domain",
                });
            }
            // The domain's table budget, for the removal of what is there
            // (a block split) and the new mapping, before anything changes.
            if !pm.has_table_room(crate::physmap::worst_new_tables(pages) + 2) {
                return Err(Error::OutOfTableMemory {
                    ipa: Ipa::from_page_number(gfn),
                });
            }
        }
        for g in gfn..gfn + pages {
            let mapped = self.env.physmap(d).and_then(|pm| pm.lookup(g)).is_some();
            if mapped {
                self.remove_one(d, g, false, out)?;
            }
        }
        self.before_map(d, gfn, pages, out);
        let pm = self
            .env
            .physmap_mut(d)
            .ok_or(Error::NoSuchDomain { domid: d })?;
        let inv = pm.insert(self.tables, gfn, pa, pages, kind, attrs)?;
        self.record(d, &inv, &[], out);
        Ok(())
    }

    /// Map frame `pa`, on which the caller took a page reference, at `gfn`
    /// of `d` as a foreign page of `owner`; if that fails the reference is
    /// dropped again.
    fn map_foreign_page(
        &mut self,
        d: u16,
        gfn: u64,
        owner: u16,
        pa: PhysAddr,
        attrs: S2Attrs,
        out: &mut Flush,
    ) -> Result<(), Error> {
        let kind = P2mKind::Foreign { owner };
        self.map_at(d, gfn, pa, 1, kind, attrs, out)
            .inspect_err(|_| {
                let _ = self.frames.put(pa);
            })
    }

    /// After a foreign page was mapped at `gfn` of `d`: if it completed a
    /// 2 MiB aligned region of foreign pages contiguous in IPA and PA, use one
    /// stage-2 block for it (`Physmap::promote_foreign`). Not under
    /// xen-compat, which keeps upstream Xen's p2m (page entries for foreign
    /// mappings, and one full flush per p2m operation).
    fn promote_foreign(&mut self, d: u16, gfn: u64) {
        if self.flush.policy().is_xen_compat() {
            return;
        }
        if let Some(pm) = self.env.physmap_mut(d) {
            pm.promote_foreign(self.tables, gfn);
        }
    }

    /// add_to_physmap_batch (gmfn_foreign) fast path: if entries `i..i + 512`
    /// map a 2 MiB aligned run of gfns of `d`, all unmapped, to 512 pages of
    /// the foreign domain that are contiguous from a 2 MiB aligned frame, map
    /// them as one stage-2 block (no page entries, hence nothing to
    /// invalidate when the block entry was invalid; an empty table left
    /// there is promoted away with break-before-make). Each page still holds
    /// its own reference and record, as through the per-entry path, and each
    /// errs[] entry gets 0. `Ok(false)`: not such a run, or a step failed and
    /// was undone (the per-entry path then gives each entry its own answer).
    /// `Err`: errs[] could not be written (the mapping is kept, as when the
    /// per-entry path fails to write an errs[] entry).
    fn map_foreign_block(
        &mut self,
        d: u16,
        x: &AddToPhysmapBatch,
        guest: &mut impl GuestCopy,
        i: u64,
        out: &mut Flush,
    ) -> Result<bool, Error> {
        let fd = x.foreign_domid;
        if self.flush.policy().is_xen_compat()
            || i + BLOCK_PAGES > u64::from(x.size)
            || fd == d
            || fd == DOMID_SELF
        {
            return Ok(false);
        }
        let (Ok(g0), Ok(idx0)) = (
            read_u64_at(guest, x.gpfns, i),
            read_u64_at(guest, x.idxs, i),
        ) else {
            return Ok(false);
        };
        let (Some(src), Some(dst)) = (self.env.physmap(fd), self.env.physmap(d)) else {
            return Ok(false);
        };
        let pa0 = match src.lookup(idx0) {
            Some(e) if e.kind == P2mKind::Ram && e.pa.is_aligned(BLOCK_PAGES * PAGE_SIZE) => e.pa,
            _ => return Ok(false),
        };
        if !g0.is_multiple_of(BLOCK_PAGES) || !dst.gfn_in_range(g0.saturating_add(BLOCK_PAGES - 1))
        {
            return Ok(false);
        }
        // Every entry: the next gfn, unmapped, and the next foreign frame.
        let (mut gpfns, mut idxs) = ([0u64; 64], [0u64; 64]);
        for c in (0..BLOCK_PAGES).step_by(64) {
            if read_u64s(guest, x.gpfns, i + c, &mut gpfns).is_err()
                || read_u64s(guest, x.idxs, i + c, &mut idxs).is_err()
            {
                return Ok(false);
            }
            for (k, (g, idx)) in gpfns.iter().zip(idxs.iter()).enumerate() {
                let j = c + k as u64;
                let next_frame = src
                    .lookup(*idx)
                    .is_some_and(|e| e.kind == P2mKind::Ram && e.pa.0 == pa0.0 + j * PAGE_SIZE);
                if *g != g0 + j || !next_frame || dst.lookup(*g).is_some() {
                    return Ok(false);
                }
            }
        }
        // One reference per page, as the per-entry path takes.
        for j in 0..BLOCK_PAGES {
            if self.frames.get(PhysAddr(pa0.0 + j * PAGE_SIZE)).is_err() {
                for k in 0..j {
                    let _ = self.frames.put(PhysAddr(pa0.0 + k * PAGE_SIZE));
                }
                return Ok(false);
            }
        }
        let kind = P2mKind::Foreign { owner: fd };
        if self
            .map_at(d, g0, pa0, BLOCK_PAGES, kind, FOREIGN_ATTRS, out)
            .is_err()
        {
            for k in 0..BLOCK_PAGES {
                let _ = self.frames.put(PhysAddr(pa0.0 + k * PAGE_SIZE));
            }
            return Ok(false);
        }
        // Mapped into an existing (empty) level-3 table: replace it by the block.
        self.promote_foreign(d, g0);
        write_zero_i32s(guest, x.errs, i, BLOCK_PAGES)?;
        Ok(true)
    }

    /// remove_from_physmap_batch fast path: if entries `i..i + 512` name the
    /// 2 MiB aligned run of gfns of one stage-2 block of foreign mappings,
    /// remove it whole (one level-2 entry to invalidate, the 512 references
    /// released after it ran) instead of splitting it on the first entry.
    /// `Ok(false)`: not such a run (nothing changed). `Err`: errs[] could not
    /// be written (the removal is kept, as in the per-entry path).
    fn remove_foreign_block(
        &mut self,
        d: u16,
        x: &RemoveFromPhysmapBatch,
        guest: &mut impl GuestCopy,
        i: u64,
        out: &mut Flush,
    ) -> Result<bool, Error> {
        if self.flush.policy().is_xen_compat() || i + BLOCK_PAGES > u64::from(x.size) {
            return Ok(false);
        }
        let Ok(g0) = read_u64_at(guest, x.gpfns, i) else {
            return Ok(false);
        };
        let is_block = self
            .env
            .physmap(d)
            .is_some_and(|pm| pm.is_foreign_block(self.tables, g0));
        if !is_block {
            return Ok(false);
        }
        let mut gpfns = [0u64; 64];
        for c in (0..BLOCK_PAGES).step_by(64) {
            if read_u64s(guest, x.gpfns, i + c, &mut gpfns).is_err()
                || gpfns
                    .iter()
                    .enumerate()
                    .any(|(k, g)| *g != g0 + c + k as u64)
            {
                return Ok(false);
            }
        }
        let Some(pm) = self.env.physmap_mut(d) else {
            return Ok(false);
        };
        let mut held = alloc::vec::Vec::new();
        let Ok(inv) = pm.remove_foreign_block(self.tables, g0, &mut held) else {
            return Ok(false);
        };
        self.record(d, &inv, &held, out);
        write_zero_i32s(guest, x.errs, i, BLOCK_PAGES)?;
        Ok(true)
    }

    /// Map hv special frame `pa` (shared info, a grant frame) at `gpfn` of
    /// `d`. Each special frame has at most one gfn: a mapping elsewhere is
    /// removed first, as Xen on Arm does for xenheap pages
    /// (`xenmem_add_to_physmap_one`: "Unmap from old location, if any"), so a
    /// guest cannot multiply its records or stage-2 tables by mapping the
    /// same page at many gfns (issue 9 finding 6).
    fn map_special(
        &mut self,
        d: u16,
        gpfn: u64,
        pa: PhysAddr,
        out: &mut Flush,
    ) -> Result<(), Error> {
        let pm = self
            .env
            .physmap(d)
            .ok_or(Error::NoSuchDomain { domid: d })?;
        // Checked before the old location is given up: a refused move
        // leaves the page where it was.
        if !pm.has_table_room(crate::physmap::worst_new_tables(1) + 4) {
            return Err(Error::OutOfTableMemory {
                ipa: Ipa::from_page_number(gpfn),
            });
        }
        if let Some(g) = pm.special_gfn(pa).filter(|&g| g != gpfn) {
            self.remove_one(d, g, false, out)?;
        }
        self.map_at(d, gpfn, pa, 1, P2mKind::SharedInfo, S2Attrs::RAM, out)
    }

    /// `memory_op(cmd, arg)` issued by `caller`.
    pub fn memory_op(
        &mut self,
        caller: u16,
        guest: &mut impl GuestCopy,
        cmd: u64,
        arg: u64,
    ) -> MemOpOutcome {
        let op = cmd & MEMOP_CMD_MASK;
        let start = cmd >> MEMOP_EXTENT_SHIFT;
        let mut out = Flush::default();
        let ret = match op {
            XENMEM_POPULATE_PHYSMAP | XENMEM_DECREASE_RESERVATION => {
                self.reservation(caller, guest, op, start, arg, &mut out)
            }
            XENMEM_ADD_TO_PHYSMAP => self.add_to_physmap(caller, guest, start, arg, &mut out),
            XENMEM_ADD_TO_PHYSMAP_BATCH => {
                self.add_to_physmap_batch(caller, guest, start, arg, &mut out)
            }
            XENMEM_REMOVE_FROM_PHYSMAP => {
                self.remove_from_physmap(caller, guest, start, arg, &mut out)
            }
            XENMEM_REMOVE_FROM_PHYSMAP_BATCH => {
                self.remove_from_physmap_batch(caller, guest, start, arg, &mut out)
            }
            XENMEM_ACQUIRE_RESOURCE => self.acquire_resource(caller, guest, start, arg, &mut out),
            _ => err(errno::ENOSYS),
        };
        MemOpOutcome { ret, flush: out }
    }

    fn reservation(
        &mut self,
        caller: u16,
        guest: &mut impl GuestCopy,
        op: u64,
        start: u64,
        arg: u64,
        out: &mut Flush,
    ) -> MemOpRet {
        let Ok(r) = read_struct(guest, arg, MemoryReservation::from_bytes) else {
            return err(errno::EFAULT);
        };
        let d = match self.target(caller, r.domid) {
            Ok(d) => d,
            Err(e) => return err(e),
        };
        if start > r.nr_extents {
            return err(errno::EINVAL);
        }
        if r.extent_order > MAX_EXTENT_ORDER {
            return MemOpRet::Done(start as i64);
        }
        let pages = 1u64 << r.extent_order;
        let mut i = start;
        // The budget counts pages, not extents: each populated page is
        // scrubbed (4 KiB zeroed) and mapped, so 512 extents of 2 MiB would
        // hold the pCPU for 1 GiB of zeroing. Xen checks
        // `hypercall_preempt_check()` after every extent; hv continues once
        // the next extent would take it past the budget (at least one per
        // invocation).
        let mut work = 0u64;
        while i < r.nr_extents {
            if i > start && work.saturating_add(pages) > self.budget {
                self.end(caller, d, true, out);
                return MemOpRet::Continue {
                    cmd: op | (i << MEMOP_EXTENT_SHIFT),
                };
            }
            let gfn = match read_u64_at(guest, r.extent_start, i) {
                Ok(g) => g,
                Err(_) if i == 0 => return err(errno::EFAULT),
                Err(_) => break,
            };
            let ok = if op == XENMEM_POPULATE_PHYSMAP {
                self.populate_one(d, gfn, r.extent_order, out).is_ok()
            } else {
                (0..pages).all(|j| {
                    gfn.checked_add(j)
                        .is_some_and(|g| self.remove_one(d, g, true, out).is_ok())
                })
            };
            if !ok {
                break;
            }
            work = work.saturating_add(pages);
            i += 1;
        }
        self.end(caller, d, false, out);
        MemOpRet::Done(i as i64)
    }

    fn populate_one(&mut self, d: u16, gfn: u64, order: u32, out: &mut Flush) -> Result<(), Error> {
        let pages = 1u64 << order;
        let pm = self
            .env
            .physmap(d)
            .ok_or(Error::NoSuchDomain { domid: d })?;
        if !gfn.is_multiple_of(pages) {
            return Err(Error::Invalid {
                what: "unaligned extent",
            });
        }
        if pm.tot_pages().saturating_add(pages) > pm.max_pages() {
            return Err(Error::Invalid {
                what: "over reservation",
            });
        }
        if (gfn..gfn.saturating_add(pages)).any(|g| pm.lookup(g).is_some()) {
            return Err(Error::Busy {
                pa: PhysAddr::from_page_number(gfn),
            });
        }
        if gfn
            .checked_add(pages)
            .is_none_or(|e| !pm.gfn_in_range(e - 1))
        {
            return Err(Error::Invalid {
                what: "gpfn outside the domain",
            });
        }
        let pa = self.alloc_frames(d, order, out)?;
        for k in 0..pages {
            self.env.scrub(PhysAddr(pa.0 + k * PAGE_SIZE));
        }
        match self.map_at(d, gfn, pa, pages, P2mKind::Ram, S2Attrs::RAM, out) {
            Ok(()) => Ok(()),
            Err(e) => {
                for k in 0..pages {
                    let _ = self.frames.put(PhysAddr(pa.0 + k * PAGE_SIZE));
                }
                Err(e)
            }
        }
    }

    /// Allocate, flushing pending invalidations to get held frames back if needed.
    fn alloc_frames(&mut self, d: u16, order: u32, out: &mut Flush) -> Result<PhysAddr, Error> {
        match self.frames.alloc(d, order) {
            Err(Error::OutOfMemory) if !self.flush.is_idle() || !out.released.is_empty() => {
                // Held frames come back only after their flush ran: run
                // every pending plan now, release, and try again.
                out.append(self.flush.flush_all());
                self.sync(out);
                self.frames.alloc(d, order)
            }
            r => r,
        }
    }

    fn add_to_physmap(
        &mut self,
        caller: u16,
        guest: &mut impl GuestCopy,
        start: u64,
        arg: u64,
        out: &mut Flush,
    ) -> MemOpRet {
        let Ok(x) = read_struct(guest, arg, AddToPhysmap::from_bytes) else {
            return err(errno::EFAULT);
        };
        if start != 0 {
            return err(errno::EINVAL);
        }
        if x.space == XENMAPSPACE_GMFN_FOREIGN {
            // Foreign mapping is only possible via add_to_physmap_batch.
            return err(errno::ENOSYS);
        }
        let d = match self.target(caller, x.domid) {
            Ok(d) => d,
            Err(e) => return err(e),
        };
        let r = self.add_one(caller, d, x.space, 0, x.idx, x.gpfn, out);
        self.end(caller, d, false, out);
        MemOpRet::Done(r)
    }

    /// One add_to_physmap entry; returns 0 or a negative errno.
    #[allow(clippy::too_many_arguments)]
    fn add_one(
        &mut self,
        caller: u16,
        d: u16,
        space: u32,
        fd: u16,
        idx: u64,
        gpfn: u64,
        out: &mut Flush,
    ) -> i64 {
        match space {
            XENMAPSPACE_SHARED_INFO => {
                if idx != 0 {
                    return -errno::EINVAL;
                }
                let Some(pa) = self.env.shared_info(d) else {
                    return -errno::EINVAL;
                };
                match self.map_special(d, gpfn, pa, out) {
                    Ok(()) => 0,
                    Err(e) => e.xen_errno(),
                }
            }
            XENMAPSPACE_GRANT_TABLE => {
                // A frame of hv's grant table, like shared info: hv-owned, never freed by the p2m.
                let Some(pa) = self.env.grant_frame(self.frames, d, idx, gpfn) else {
                    return -errno::EINVAL;
                };
                match self.map_special(d, gpfn, pa, out) {
                    Ok(()) => 0,
                    Err(e) => e.xen_errno(),
                }
            }
            XENMAPSPACE_GMFN_FOREIGN => {
                if !self.env.is_privileged(caller) {
                    return -errno::EPERM;
                }
                if fd == d || fd == DOMID_SELF {
                    return -errno::EINVAL;
                }
                let Some(src) = self.env.physmap(fd) else {
                    return -errno::ESRCH;
                };
                let pa = match src.lookup(idx) {
                    Some(e) if e.kind == P2mKind::Ram => e.pa,
                    _ => return -errno::EINVAL,
                };
                if self.frames.get(pa).is_err() {
                    return -errno::EINVAL;
                }
                match self.map_foreign_page(d, gpfn, fd, pa, FOREIGN_ATTRS, out) {
                    Ok(()) => {
                        self.promote_foreign(d, gpfn);
                        0
                    }
                    Err(e) => e.xen_errno(),
                }
            }
            _ => -errno::ENOSYS,
        }
    }

    /// `XENMEM_acquire_resource` (xen/common/memory.c `acquire_resource`,
    /// Xen 4.20) for a translated caller (Arm): `pad` must be 0 (-EINVAL),
    /// `frame` must fit 32 bits (-EINVAL); the target is another domain
    /// (-EPERM for the caller itself: `rcu_lock_remote_domain_by_id`;
    /// -ESRCH for none, DOMID_SELF included) and the caller its control
    /// domain (-EPERM, XSM_DM_PRIV); the type is the grant table (anything
    /// else -EOPNOTSUPP: no ioreq servers or vmtrace on hv) with id
    /// `shared` (-EINVAL: v1 has no status frames). A null `frame_list`
    /// asks the size (`nr_frames` must be 0, `max_grant_frames` written
    /// back). Otherwise frames `frame..frame + nr_frames` (-EINVAL past
    /// the maximum; the table grows) are mapped at the caller's gfns from
    /// `frame_list`, each a foreign mapping holding a reference on the
    /// page (Xen's `set_foreign_p2m_entry`); a failure after the first
    /// frame is -EIO, as Xen. `start` resumes a continued call
    /// (-EINVAL past `nr_frames`); hv maps at most 64 frames per call, never
    /// preempted.
    fn acquire_resource(
        &mut self,
        caller: u16,
        guest: &mut impl GuestCopy,
        start: u64,
        arg: u64,
        out: &mut Flush,
    ) -> MemOpRet {
        let Ok(x) = read_struct(guest, arg, MemAcquireResource::from_bytes) else {
            return err(errno::EFAULT);
        };
        if x.pad != 0 || x.frame > u64::from(u32::MAX) {
            return err(errno::EINVAL);
        }
        if x.domid == caller {
            return err(errno::EPERM);
        }
        if x.domid == DOMID_SELF || self.env.physmap(x.domid).is_none() {
            return err(errno::ESRCH);
        }
        if !self.env.is_privileged(caller) {
            return err(errno::EPERM);
        }
        if x.r#type != XENMEM_RESOURCE_GRANT_TABLE {
            return err(errno::EOPNOTSUPP);
        }
        if x.id != XENMEM_RESOURCE_GRANT_TABLE_ID_SHARED {
            return err(errno::EINVAL);
        }
        let Some(max) = self.env.grant_max_frames(x.domid) else {
            return err(errno::EOPNOTSUPP);
        };
        if x.frame_list == 0 {
            if x.nr_frames != 0 || start != 0 {
                return err(errno::EINVAL);
            }
            let at = arg.wrapping_add(8);
            return match guest.copy_to(Ipa(at), &max.to_le_bytes()) {
                Ok(()) => MemOpRet::Done(0),
                Err(_) => err(errno::EFAULT),
            };
        }
        let nr = u64::from(x.nr_frames);
        if start >= nr || nr > (u64::from(u32::MAX) >> MEMOP_EXTENT_SHIFT) {
            return err(errno::EINVAL);
        }
        // gnttab_acquire_resource: the whole range within the maximum.
        if x.frame + nr > u64::from(max) {
            return err(errno::EINVAL);
        }
        let d = caller;
        let mut rc = 0;
        for i in start..nr {
            let gfn = match read_u64_at(guest, x.frame_list, i) {
                Ok(g) => g,
                Err(_) => {
                    rc = -errno::EFAULT;
                    break;
                }
            };
            let Some(pa) = self
                .env
                .acquire_grant_frame(self.frames, x.domid, x.frame + i)
            else {
                rc = -errno::EINVAL;
                break;
            };
            if self.frames.get(pa).is_err() {
                rc = -errno::EINVAL;
                break;
            }
            if let Err(e) = self.map_foreign_page(d, gfn, x.domid, pa, FOREIGN_ATTRS, out) {
                rc = if i == start {
                    e.xen_errno()
                } else {
                    -errno::EIO
                };
                break;
            }
        }
        self.end(caller, d, false, out);
        MemOpRet::Done(rc)
    }

    fn add_to_physmap_batch(
        &mut self,
        caller: u16,
        guest: &mut impl GuestCopy,
        start: u64,
        arg: u64,
        out: &mut Flush,
    ) -> MemOpRet {
        let Ok(x) = read_struct(guest, arg, AddToPhysmapBatch::from_bytes) else {
            return err(errno::EFAULT);
        };
        if start > u64::from(x.size) {
            return err(errno::EDOM);
        }
        let space = u32::from(x.space);
        if space == XENMAPSPACE_GMFN_RANGE {
            return err(errno::EOPNOTSUPP);
        }
        let d = match self.target(caller, x.domid) {
            Ok(d) => d,
            Err(e) => return err(e),
        };
        if space == XENMAPSPACE_GMFN_FOREIGN && !self.env.is_privileged(caller) {
            // Every entry would fail the same way: answer for the whole call.
            return err(errno::EPERM);
        }
        let mut i = start;
        while i < u64::from(x.size) {
            if i - start >= self.budget {
                self.end(caller, d, true, out);
                return MemOpRet::Continue {
                    cmd: XENMEM_ADD_TO_PHYSMAP_BATCH | (i << MEMOP_EXTENT_SHIFT),
                };
            }
            if space == XENMAPSPACE_GMFN_FOREIGN {
                match self.map_foreign_block(d, &x, guest, i, out) {
                    Ok(true) => {
                        i += BLOCK_PAGES;
                        continue;
                    }
                    Ok(false) => {}
                    Err(_) => {
                        self.end(caller, d, false, out);
                        return err(errno::EFAULT);
                    }
                }
            }
            let (idx, gpfn) = match (
                read_u64_at(guest, x.idxs, i),
                read_u64_at(guest, x.gpfns, i),
            ) {
                (Ok(a), Ok(b)) => (a, b),
                _ => {
                    self.end(caller, d, false, out);
                    return err(errno::EFAULT);
                }
            };
            let rc = self.add_one(caller, d, space, x.foreign_domid, idx, gpfn, out);
            if write_i32_at(guest, x.errs, i, rc as i32).is_err() {
                self.end(caller, d, false, out);
                return err(errno::EFAULT);
            }
            i += 1;
        }
        self.end(caller, d, false, out);
        MemOpRet::Done(0)
    }

    fn remove_from_physmap(
        &mut self,
        caller: u16,
        guest: &mut impl GuestCopy,
        start: u64,
        arg: u64,
        out: &mut Flush,
    ) -> MemOpRet {
        if start != 0 {
            return err(errno::EINVAL);
        }
        let Ok(x) = read_struct(guest, arg, RemoveFromPhysmap::from_bytes) else {
            return err(errno::EFAULT);
        };
        let d = match self.target(caller, x.domid) {
            Ok(d) => d,
            Err(e) => return err(e),
        };
        let rc = match self.remove_one(d, x.gpfn, false, out) {
            Ok(()) => 0,
            Err(e) => e.xen_errno(),
        };
        // Back-to-back single removes (unmodified dom0 kernels unmap one
        // page per call) stay pending and collapse into one plan.
        self.end(caller, d, true, out);
        MemOpRet::Done(rc)
    }

    fn remove_from_physmap_batch(
        &mut self,
        caller: u16,
        guest: &mut impl GuestCopy,
        start: u64,
        arg: u64,
        out: &mut Flush,
    ) -> MemOpRet {
        let Ok(x) = read_struct(guest, arg, RemoveFromPhysmapBatch::from_bytes) else {
            return err(errno::EFAULT);
        };
        if x.res0 != 0 || start > u64::from(x.size) {
            return err(errno::EINVAL);
        }
        let d = match self.target(caller, x.domid) {
            Ok(d) => d,
            Err(e) => return err(e),
        };
        let mut i = start;
        while i < u64::from(x.size) {
            if i - start >= self.budget {
                // Pending invalidations (and the pages they hold) carry over
                // to the continuation: the batch stays one plan.
                self.end(caller, d, true, out);
                return MemOpRet::Continue {
                    cmd: XENMEM_REMOVE_FROM_PHYSMAP_BATCH | (i << MEMOP_EXTENT_SHIFT),
                };
            }
            match self.remove_foreign_block(d, &x, guest, i, out) {
                Ok(true) => {
                    i += BLOCK_PAGES;
                    continue;
                }
                Ok(false) => {}
                Err(_) => {
                    self.end(caller, d, false, out);
                    return err(errno::EFAULT);
                }
            }
            let gfn = match read_u64_at(guest, x.gpfns, i) {
                Ok(g) => g,
                Err(_) => {
                    self.end(caller, d, false, out);
                    return err(errno::EFAULT);
                }
            };
            let rc = match self.remove_one(d, gfn, false, out) {
                Ok(()) => 0,
                Err(e) => e.xen_errno(),
            };
            if write_i32_at(guest, x.errs, i, rc as i32).is_err() {
                self.end(caller, d, false, out);
                return err(errno::EFAULT);
            }
            i += 1;
        }
        self.end(caller, d, false, out);
        MemOpRet::Done(0)
    }

    /// Map granted frame `pa`, a RAM page of domain `owner`, at `gfn` of
    /// `mapper` (`GNTTABOP_map_grant_ref` with `GNTMAP_host_map`; Xen on
    /// Arm: `create_grant_host_mapping` -> `guest_physmap_add_entry` with
    /// `p2m_grant_map_rw`/`_ro`, which replaces what the gfn mapped). The
    /// mapping is a foreign one holding its own page reference, as a
    /// gmfn_foreign mapping, so the page outlives its owner until
    /// [`MemCtx::grant_unmap`]; read-only when `readonly`. Page entries
    /// only (no 2 MiB promotion: grant mappings are single pages).
    ///
    /// # Errors
    /// As [`Physmap::insert`] (range, budgets, heap), [`Error::NotOwner`]
    /// if `pa` is not an allocated frame of the pool.
    pub fn grant_map(
        &mut self,
        mapper: u16,
        gfn: u64,
        owner: u16,
        pa: PhysAddr,
        readonly: bool,
        out: &mut Flush,
    ) -> Result<(), Error> {
        self.frames.get(pa)?;
        let attrs = if readonly {
            FOREIGN_RO_ATTRS
        } else {
            FOREIGN_ATTRS
        };
        self.map_foreign_page(mapper, gfn, owner, pa, attrs, out)
    }

    /// Remove the grant mapping of `pa` at `gfn` of `mapper`
    /// (`GNTTABOP_unmap_grant_ref`; Xen on Arm: `replace_grant_host_mapping`
    /// -> `guest_physmap_remove_page`, which refuses a gfn that maps another
    /// frame). The invalidation and the page reference (dropped after it
    /// ran) go into `out`.
    ///
    /// # Errors
    /// [`Error::Invalid`] if `gfn` does not map `pa` as a foreign page
    /// (nothing changed), else as [`Physmap::remove`].
    pub fn grant_unmap(
        &mut self,
        mapper: u16,
        gfn: u64,
        pa: PhysAddr,
        out: &mut Flush,
    ) -> Result<(), Error> {
        let pm = self
            .env
            .physmap(mapper)
            .ok_or(Error::NoSuchDomain { domid: mapper })?;
        match pm.lookup(gfn) {
            Some(e) if e.pa == pa && matches!(e.kind, P2mKind::Foreign { .. }) => {}
            _ => {
                return Err(Error::Invalid {
                    what: "gfn does not map the granted frame",
                })
            }
        }
        self.remove_one(mapper, gfn, false, out)
    }

    /// A `grant_table_op` of `caller` that changed `mapper`'s physmap ends:
    /// its invalidations are planned together (one plan per hypercall under
    /// the targeted policies; not coalescable past the call).
    pub fn grant_end(&mut self, caller: u16, mapper: u16, out: &mut Flush) {
        self.end(caller, mapper, false, out);
    }

    /// Tear a dying domain's physmap down: its VMID retired at once
    /// ([`pv_tlb::DeferredFlush::retire_vmid`]: at most one full flush, none
    /// under targeted with ranges), every reference it held released after it. The caller
    /// executes `flush`, releases its frames, then calls
    /// [`crate::Teardown::finish`] on the returned value to free the tables,
    /// and must not reuse the VMID before a plan for it ran.
    pub fn teardown(
        &mut self,
        pm: Physmap,
        vmid: Option<Vmid>,
    ) -> (Flush, crate::physmap::Teardown) {
        let t = pm.teardown(self.tables);
        let mut out = Flush::default();
        match vmid {
            Some(v) => out.append(self.flush.retire_vmid(v, &t.inval, &t.held)),
            None => out.released.extend_from_slice(&t.held),
        }
        (out, t)
    }
}
