//! `grant_table_op` (20): map_grant_ref, unmap_grant_ref, copy
//! ([`copy`]), query_size, setup_table, set_version (1),
//! get_version, cache_flush ([`crate::xen::grant`] holds each domain's
//! table, active entries and maptrack).
//!
//! Map and unmap follow Xen 4.20's xen/common/grant_table.c
//! (`map_grant_ref`, `unmap_common`, `unmap_common_complete`) with Arm's
//! hooks (xen/arch/arm/mm.c `create_grant_host_mapping`,
//! `replace_grant_host_mapping`): `host_addr` is a guest-physical address
//! of the caller, the granted frame is mapped at its gfn as a foreign
//! mapping holding a page reference (memops' `MemCtx::grant_map`, the
//! mechanism of gmfn_foreign and acquire_resource mappings), so the page
//! outlives a destroyed granter until it is unmapped. An unmap batch's
//! invalidations are planned together (one plan per invocation, through
//! `pv_tlb::DeferredFlush` as every p2m removal), executed before the
//! hypercall returns; only then are the page references dropped and the
//! granter's `GTF_reading`/`GTF_writing` cleared (Xen flushes before
//! `unmap_common_complete` too).

mod copy;

use alloc::vec::Vec;

use memops::{FrameTable, P2mKind, TableMem};
use pv_tlb::{Flush, PhysAddr};

use super::memory_op::{grant_p2m, run_flush, GrantP2m};
use super::{Action, Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::domain::Domain;
use crate::world::World;
use crate::xen::abi::{
    GnttabCacheFlush, GnttabCopy, GnttabGetStatusFrames, GnttabGetVersion, GnttabMapGrantRef,
    GnttabQuerySize, GnttabSetVersion, GnttabSetupTable, GnttabUnmapGrantRef,
};
use crate::xen::evtchn::DOMID_SELF;
use crate::xen::grant::{self, gntmap, gtf, Mapping};
use crate::xen::Errno;

/// Map/unmap/cache_flush ops handled per invocation before a continuation
/// (Xen checks `hypercall_preempt_check()` per op; hv uses a fixed budget).
pub const GRANT_BUDGET: u32 = 512;

/// `grant_table_op(cmd, uop, count)` from the caller's registers. A
/// preempted map/unmap/copy/cache_flush batch continues as Xen's
/// `hypercall_create_continuation(.., "ihi", cmd, uop advanced, count left)`.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    let raw = super::low32(a[0]);
    let count = super::low32(a[2]);
    let cmd = raw & grant::CMD_MASK;
    // do_grant_table_op: a negative count, or continuation bits on a
    // command that takes none.
    if (count as i32) < 0 || (cmd != grant::op::CACHE_FLUSH && raw != cmd) {
        return Reply::ret(Err(Errno::EINVAL));
    }
    apply_pending_clears(ctx);
    let (size, r) = match cmd {
        grant::op::MAP_GRANT_REF => (GnttabMapGrantRef::SIZE, map_batch(a[1], count, ctx)),
        grant::op::UNMAP_GRANT_REF => (GnttabUnmapGrantRef::SIZE, unmap_batch(a[1], count, ctx)),
        grant::op::COPY => (GnttabCopy::SIZE, copy::copy_batch(a[1], count, ctx)),
        grant::op::CACHE_FLUSH => {
            let cur_ref = raw >> grant::CONTINUATION_ARG_SHIFT;
            (
                GnttabCacheFlush::SIZE,
                cache_flush(a[1], count, cur_ref, ctx),
            )
        }
        _ => return Reply::ret(grant_table_op(cmd, a[1], count, ctx)),
    };
    match r {
        Ok(done) if done < count => Reply::then(Action::Continuation {
            args: [
                u64::from(cmd),
                a[1].wrapping_add(u64::from(done) * size as u64),
                u64::from(count - done),
            ],
            block: false,
        }),
        r => Reply::ret(r.map(|_| 0)),
    }
}

/// Entries whose mapper was destroyed without unmapping get their
/// `GTF_*` bits back now, if the destroy path could not
/// ([`crate::world::grant_clears`]).
fn apply_pending_clears<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>) {
    let w = &mut *ctx.world;
    crate::world::grant_clears(&mut w.domains, &mut w.mem);
}

fn index(domains: &[Domain], id: u16) -> Option<usize> {
    domains.iter().position(|d| d.id == id)
}

/// `GNTTABOP_map_grant_ref` on `count` structs at `arg`: the number of ops
/// done (all of them unless preempted), each with its own status.
///
/// # Errors
/// `-EFAULT` when a struct cannot be read or written back (the ops before
/// it stay done, as Xen's).
fn map_batch<M: PhysMem + TableMem>(
    arg: u64,
    count: u32,
    ctx: &mut Ctx<'_, M>,
) -> Result<u32, Errno> {
    each_op(
        arg,
        count,
        ctx,
        GnttabMapGrantRef::from_bytes,
        |ctx, at, mut op, out| {
            map_one(&mut op, ctx, out);
            if op.status != grant::GNTST_OKAY {
                let c = ctx.caller;
                crate::glog!(
                    c,
                    Debug,
                    "d{c}: GNTTABOP_map_grant_ref d{} ref {:#x} flags {:#x} at {:#x}: status {}",
                    op.dom,
                    op.r#ref,
                    op.flags,
                    op.host_addr,
                    op.status
                );
            }
            ctx.write(at, &op.to_bytes())
        },
    )
}

/// The first `count` (at most [`GRANT_BUDGET`]) structs of the array at
/// `arg`, each decoded by `decode` and handed to `each` with its address
/// and the call's [`Flush`], which is [`finish`]ed after the last one. The
/// number of structs done, or the first error reading one or from `each`
/// (the ones before it stay done).
fn each_op<'c, M: PhysMem + TableMem, const N: usize, S>(
    arg: u64,
    count: u32,
    ctx: &mut Ctx<'c, M>,
    decode: fn(&[u8; N]) -> S,
    mut each: impl FnMut(&mut Ctx<'c, M>, GuestVa, S, &mut Flush) -> Result<(), Errno>,
) -> Result<u32, Errno> {
    let n = count.min(GRANT_BUDGET);
    let mut out = Flush::default();
    let mut r = Ok(n);
    for i in 0..n {
        let at = GuestVa(arg.wrapping_add(u64::from(i) * N as u64));
        let done = ctx
            .read::<N>(at)
            .and_then(|b| each(ctx, at, decode(&b), &mut out));
        if let Err(e) = done {
            r = Err(e);
            break;
        }
    }
    finish(ctx, out);
    r
}

/// End the call's p2m changes: plan them (one plan), run it, then drop the
/// page references it covered.
fn finish<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, mut out: Flush) {
    let c = ctx.caller;
    let end = GrantP2m::End {
        caller: c,
        mapper: c,
    };
    let _ = grant_p2m(ctx.world, ctx.arch, end, &mut out);
    run_flush(ctx.world, ctx.arch, out, c);
}

/// One `map_grant_ref` op (Xen's `map_grant_ref` with Arm's
/// `create_grant_host_mapping`), in Xen's order of checks:
/// - neither `GNTMAP_host_map` nor `GNTMAP_device_map`: `GNTST_bad_gntref`;
/// - `GNTMAP_device_map`, `_application_map` or `_contains_pte` (a
///   translated caller): `GNTST_general_error`;
/// - no domain `dom` (`DOMID_SELF` is not resolved): `GNTST_bad_domain`;
/// - no maptrack handle left: `GNTST_no_space`;
/// - `ref` past the granter's entries in use: `GNTST_bad_gntref`;
/// - mapped already by another domain, or a pin counter full:
///   `GNTST_general_error`;
/// - entry not `GTF_permit_access` for the caller, or `GTF_readonly` for
///   a writable mapping (`_set_status_v1`): `GNTST_general_error`. Xen
///   answers these with general_error, not `GNTST_permission_denied`
///   (which only its XSM hook gives);
/// - the entry's frame not RAM of the granter (`get_paged_frame`):
///   `GNTST_bad_page`;
/// - flags other than `host_map` (+ `readonly`), or the entry's cache
///   attributes set (`GTF_PWT|PCD|PAT`), or the gfn cannot be mapped
///   (outside the caller's IPA range, its p2m budget): `GNTST_general_error`.
///
/// `host_addr` is used as Xen's `gaddr_to_gfn`: its page offset is ignored.
/// On success `handle` and `dev_bus_addr` (the frame's machine address,
/// Xen's `mfn_to_maddr`; dom0 without IOMMU programs devices with it) are
/// set.
fn map_one<M: PhysMem + TableMem>(
    op: &mut GnttabMapGrantRef,
    ctx: &mut Ctx<'_, M>,
    out: &mut Flush,
) {
    op.status = map_status(op, ctx, out).err().unwrap_or(grant::GNTST_OKAY);
}

fn map_status<M: PhysMem + TableMem>(
    op: &mut GnttabMapGrantRef,
    ctx: &mut Ctx<'_, M>,
    out: &mut Flush,
) -> Result<(), i16> {
    let ld = ctx.caller;
    if op.flags & (gntmap::DEVICE_MAP | gntmap::HOST_MAP) == 0 {
        return Err(grant::GNTST_BAD_GNTREF);
    }
    if op.flags & (gntmap::DEVICE_MAP | gntmap::APPLICATION_MAP | gntmap::CONTAINS_PTE) != 0 {
        return Err(grant::GNTST_GENERAL_ERROR);
    }
    let readonly = op.flags & gntmap::READONLY != 0;
    let gref = op.r#ref;
    let w = &mut *ctx.world;
    let ri = index(&w.domains, op.dom).ok_or(grant::GNTST_BAD_DOMAIN)?;
    let li = index(&w.domains, ld).ok_or(grant::GNTST_GENERAL_ERROR)?;
    if !w.domains[li].xen.grant.maptrack_room() {
        return Err(grant::GNTST_NO_SPACE);
    }
    let rgt = &w.domains[ri].xen.grant;
    let entry = rgt.entry_pa(gref).ok_or(grant::GNTST_BAD_GNTREF)?;
    let act = rgt.active(gref);
    if act.is_some_and(|a| a.mapper != ld || a.full(readonly)) {
        return Err(grant::GNTST_GENERAL_ERROR);
    }
    let mut pa = act.map(|a| a.pa);
    if act.is_none_or(|a| !readonly && a.write_pins == 0) {
        let frame = grant::set_status(&mut w.mem, entry, act.is_some(), ld, readonly, true)?;
        if act.is_none() {
            // get_paged_frame: the granter's own RAM (a foreign page or an
            // hv special frame is not grantable here).
            match w.domains[ri].physmap().lookup(u64::from(frame)) {
                Some(e) if e.kind == P2mKind::Ram => pa = Some(e.pa),
                _ => {
                    grant::clear_status(&mut w.mem, entry, grant::reduce_status(None, readonly));
                    return Err(grant::GNTST_BAD_PAGE);
                }
            }
        }
    }
    let Some(pa) = pa else {
        return Err(grant::GNTST_GENERAL_ERROR);
    };
    w.domains[ri].xen.grant.pin(gref, ld, pa, readonly);
    let table = w.domains[ri].xen.grant.serial();
    let mut flags = [0u8; 2];
    w.mem.read(entry, &mut flags);
    let cache_flags = u16::from_le_bytes(flags) & (gtf::PWT | gtf::PCD | gtf::PAT);
    let mapped = if cache_flags != 0 || op.flags & !gntmap::READONLY != gntmap::HOST_MAP {
        Err(None)
    } else {
        let m = GrantP2m::Map {
            mapper: ld,
            gfn: op.host_addr >> 12,
            owner: op.dom,
            pa,
            readonly,
        };
        grant_p2m(w, ctx.arch, m, out).map_err(Some)
    };
    let tracked = mapped.and_then(|()| {
        let m = Mapping {
            dom: op.dom,
            table,
            gref,
            flags: op.flags,
            pa,
        };
        w.domains[li].xen.grant.track(m).map_err(|_| None)
    });
    match tracked {
        Ok(handle) => {
            op.handle = handle;
            op.dev_bus_addr = pa.0;
            Ok(())
        }
        Err(e) => {
            if let Some(e) = e {
                crate::glog!(ld, Debug, "d{ld}: grant map at {:#x}: {e}", op.host_addr);
            }
            // undo_out: the mapping (if made) stays only if tracking failed,
            // which maptrack_room excluded; the pin and status go back.
            let rgt = &mut w.domains[ri].xen.grant;
            let clear = rgt.unpin(gref, readonly);
            grant::clear_status(&mut w.mem, entry, clear);
            Err(grant::GNTST_GENERAL_ERROR)
        }
    }
}

/// What an unmap leaves to do once its invalidation ran
/// (`unmap_common_complete`).
#[derive(Clone, Copy)]
struct Unpin {
    dom: u16,
    table: u64,
    gref: u32,
    readonly: bool,
}

/// `GNTTABOP_unmap_grant_ref` on `count` structs at `arg` (see
/// [`map_batch`] for the answer).
///
/// # Errors
/// `-EFAULT` as [`map_batch`]; `-ENOMEM` if hv's heap cannot hold the
/// batch's bookkeeping (nothing done).
fn unmap_batch<M: PhysMem + TableMem>(
    arg: u64,
    count: u32,
    ctx: &mut Ctx<'_, M>,
) -> Result<u32, Errno> {
    let mut done: Vec<Unpin> = Vec::new();
    done.try_reserve(count.min(GRANT_BUDGET) as usize)
        .map_err(|_| Errno::ENOMEM)?;
    let r = each_op(
        arg,
        count,
        ctx,
        GnttabUnmapGrantRef::from_bytes,
        |ctx, at, mut op, out| {
            op.status = match unmap_one(&op, ctx, out) {
                Ok(Some(u)) => {
                    done.push(u);
                    grant::GNTST_OKAY
                }
                Ok(None) => grant::GNTST_OKAY,
                Err(s) => {
                    let c = ctx.caller;
                    crate::glog!(
                        c,
                        Debug,
                        "d{c}: GNTTABOP_unmap_grant_ref handle {:#x} at {:#x}: status {s}",
                        op.handle,
                        op.host_addr
                    );
                    s
                }
            };
            let status_at =
                GuestVa(at.0 + core::mem::offset_of!(GnttabUnmapGrantRef, status) as u64);
            ctx.write(status_at, &op.status.to_le_bytes())
        },
    );
    // unmap_common_complete, after the flush: the granter may reuse the page.
    let w = &mut *ctx.world;
    for u in done {
        let Some(rd) = w
            .domains
            .iter_mut()
            .find(|d| d.id == u.dom && d.xen.grant.serial() == u.table)
        else {
            continue; // The granter is gone: its table went with it.
        };
        let clear = rd.xen.grant.unpin(u.gref, u.readonly);
        if let Some(pa) = rd.xen.grant.entry_pa(u.gref) {
            grant::clear_status(&mut w.mem, pa, clear);
        }
    }
    r
}

/// One `unmap_grant_ref` op (Xen's `unmap_common`): an unknown or freed
/// handle is `GNTST_bad_handle`; with `host_addr` 0 nothing is unmapped
/// and the answer is `GNTST_okay` (Xen: the host mapping is only removed
/// for a non-zero `host_addr`); a gfn that does not map the granted frame
/// is `GNTST_general_error` (`replace_grant_host_mapping`: -EILSEQ). The
/// granter may be gone (destroyed while mapped): its page was kept by the
/// mapping's reference and is freed once the invalidation ran.
fn unmap_one<M: PhysMem + TableMem>(
    op: &GnttabUnmapGrantRef,
    ctx: &mut Ctx<'_, M>,
    out: &mut Flush,
) -> Result<Option<Unpin>, i16> {
    let ld = ctx.caller;
    let w = &mut *ctx.world;
    let li = index(&w.domains, ld).ok_or(grant::GNTST_GENERAL_ERROR)?;
    let m = w.domains[li]
        .xen
        .grant
        .mapping(op.handle)
        .ok_or(grant::GNTST_BAD_HANDLE)?;
    if op.host_addr == 0 || m.flags & gntmap::HOST_MAP == 0 {
        return Ok(None);
    }
    let u = GrantP2m::Unmap {
        mapper: ld,
        gfn: op.host_addr >> 12,
        pa: m.pa,
    };
    if let Err(e) = grant_p2m(w, ctx.arch, u, out) {
        crate::glog!(ld, Debug, "d{ld}: grant unmap at {:#x}: {e}", op.host_addr);
        return Err(grant::GNTST_GENERAL_ERROR);
    }
    w.domains[li].xen.grant.untrack(op.handle);
    Ok(Some(Unpin {
        dom: m.dom,
        table: m.table,
        gref: m.gref,
        readonly: m.flags & gntmap::READONLY != 0,
    }))
}

/// `GNTTABOP_cache_flush` (Xen 4.20's `gnttab_cache_flush` / `_cache_flush`)
/// on `count` structs at `arg`; `cur_ref` is the continuation state
/// carried in `cmd` (hv never preempts one, so only 0 is expected):
/// - `offset`/`length` beyond the page, or `op` bits other than
///   `GNTTAB_CACHE_CLEAN|INVAL` (so `GNTTAB_CACHE_SOURCE_GREF` too):
///   -EINVAL, the call stops there;
/// - `length` or `op` 0: nothing to do (-EILSEQ with a `cur_ref`);
/// - `dev_bus_addr` not a frame of the guest pool (`mfn_valid`): -EINVAL;
///   a free frame (no owner): -EPERM; a frame of another domain that the
///   caller has no grant mapping of (`grant_map_exists`): -EINVAL;
/// - otherwise the data cache lines of the range are cleaned and/or
///   invalidated to the point of coherency ([`PhysMem::dcache_maint`]).
///
/// The probe Linux makes (one zeroed struct) answers 0. Returns the ops
/// done (all of them unless preempted after [`GRANT_BUDGET`]).
///
/// # Errors
/// As listed; the ops before the failing one stay done.
fn cache_flush<M: PhysMem + TableMem>(
    arg: u64,
    count: u32,
    cur_ref: u32,
    ctx: &mut Ctx<'_, M>,
) -> Result<u32, Errno> {
    let ld = ctx.caller;
    let n = count.min(GRANT_BUDGET);
    for i in 0..u64::from(n) {
        let at = GuestVa(arg.wrapping_add(i * GnttabCacheFlush::SIZE as u64));
        let c = GnttabCacheFlush::from_bytes(&ctx.read::<{ GnttabCacheFlush::SIZE }>(at)?);
        let (off, len) = (u64::from(c.offset), u64::from(c.length));
        if off >= 4096
            || len > 4096
            || off + len > 4096
            || c.op & !(grant::cache::INVAL | grant::cache::CLEAN) != 0
        {
            crate::glog!(ld, Debug, "d{ld}: GNTTABOP_cache_flush {c:?}: -EINVAL");
            return Err(Errno::EINVAL);
        }
        if len == 0 || c.op == 0 {
            if cur_ref != 0 {
                return Err(Errno::EILSEQ);
            }
            continue;
        }
        let pa = PhysAddr(c.a & !0xfff);
        let w = &mut *ctx.world;
        let owner = flush_owner(&w.pool, pa)?;
        if owner != ld {
            let granted = w
                .domains
                .iter()
                .find(|d| d.id == owner)
                .is_some_and(|d| d.xen.grant.active_mapping_of(ld, pa));
            if !granted {
                crate::glog!(
                    ld,
                    Debug,
                    "d{ld}: GNTTABOP_cache_flush of {pa} not granted to it: -EINVAL"
                );
                return Err(Errno::EINVAL);
            }
        }
        w.mem.dcache_maint(
            PhysAddr(pa.0 + off),
            len as usize,
            c.op & grant::cache::CLEAN != 0,
            c.op & grant::cache::INVAL != 0,
        );
    }
    Ok(n)
}

/// The owner of pool frame `pa` for a cache flush (-EINVAL outside the
/// pool, -EPERM for a free frame).
fn flush_owner(pool: &FrameTable, pa: PhysAddr) -> Result<u16, Errno> {
    match pool.frame(pa) {
        None => Err(Errno::EINVAL),
        Some(f) => f.owner.ok_or(Errno::EPERM),
    }
}

/// The domain `dom` names for `query_size` / `setup_table` /
/// `get_status_frames`, as Xen's `rcu_lock_domain_by_any_id` then
/// `xsm_grant_*(XSM_TARGET, ..)`: `DOMID_SELF` or the caller's id is the
/// caller; another domain only for a control domain.
///
/// # Errors
/// `GNTST_bad_domain` for no such domain, `GNTST_permission_denied` for
/// another domain of an unprivileged caller.
fn target<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, dom: u16) -> Result<u16, i16> {
    let id = if dom == DOMID_SELF { ctx.caller } else { dom };
    if ctx.world.entry(id).is_none() {
        return Err(grant::GNTST_BAD_DOMAIN);
    }
    if id != ctx.caller && !ctx.privileged() {
        return Err(grant::GNTST_PERMISSION_DENIED);
    }
    Ok(id)
}

/// Handle `GNTTABOP_<cmd>` on `count` structs at `arg` (a VA of the caller),
/// as Xen 4.20's xen/common/grant_table.c:
/// - `query_size` (`gnttab_query_size`): `count` must be 1 (-EINVAL); the
///   struct is written back whole, `nr_frames` / `max_nr_frames` only on
///   success; status `GNTST_bad_domain` / `GNTST_permission_denied`
///   ([`target`]);
/// - `setup_table` (`gnttab_setup_table`): `count` 1; more frames than the
///   maximum is `GNTST_general_error`; the table grows to `nr_frames` and
///   each frame's gfn (`INVALID_GFN` unless the guest mapped it: Arm's
///   `gnttab_shared_gfn`) goes to `frame_list`, a fault there being
///   `GNTST_bad_virt_addr`; only `status` is written back;
/// - `set_version` (`gnttab_set_version`, any `count`): 1 is accepted, 2 is
///   -ENOSYS (Xen on Arm's `GNTTAB_MAX_VERSION` is 1, so every domain's
///   `max_version` is), anything else -EINVAL; the version in use (1) is
///   written back in every case;
/// - `get_version` (`gnttab_get_version`, any `count`): -ESRCH for no such
///   domain, -EPERM for another domain of an unprivileged caller; `version`
///   = 1;
/// - `get_status_frames` (`gnttab_get_status_frames`): `count` 1; a v1
///   table has no status frames, so any `nr_frames` but 0 is
///   `GNTST_general_error` (Linux asks only for a v2 table);
/// - transfer, unmap_and_replace, swap_grant_ref, dump_table and unknown
///   commands: -ENOSYS.
///
/// # Errors
/// Xen's errno for each sub-op (-EFAULT for a struct that cannot be read or
/// written back).
pub fn grant_table_op<M: PhysMem + TableMem>(
    cmd: u32,
    arg: u64,
    count: u32,
    ctx: &mut Ctx<'_, M>,
) -> Result<u64, Errno> {
    use grant::op;
    let c = ctx.caller;
    let at = GuestVa(arg);
    match cmd {
        op::QUERY_SIZE | op::SETUP_TABLE | op::GET_STATUS_FRAMES if count != 1 => {
            crate::glog!(c, Debug, "d{c}: GNTTABOP {cmd} count {count}: -EINVAL");
            Err(Errno::EINVAL)
        }
        op::QUERY_SIZE => {
            let mut q = GnttabQuerySize::from_bytes(&ctx.read(at)?);
            match target(ctx, q.dom) {
                Ok(d) => {
                    let gt = &ctx.world.entry(d).ok_or(Errno::ESRCH)?.xen.grant;
                    (q.nr_frames, q.max_nr_frames) = gt.query_size();
                    q.status = grant::GNTST_OKAY;
                }
                Err(s) => {
                    crate::glog!(c, Debug, "d{c}: GNTTABOP_query_size d{}: status {s}", q.dom);
                    q.status = s;
                }
            }
            ctx.write(at, &q.to_bytes())?;
            Ok(0)
        }
        op::SETUP_TABLE => {
            let t = GnttabSetupTable::from_bytes(&ctx.read(at)?);
            let status = match target(ctx, t.dom) {
                Ok(d) => setup_table(ctx, d, &t),
                Err(s) => s,
            };
            if status != grant::GNTST_OKAY {
                crate::glog!(
                    c,
                    Debug,
                    "d{c}: GNTTABOP_setup_table d{} {} frames: status {status}",
                    t.dom,
                    t.nr_frames
                );
            }
            let status_at =
                arg.wrapping_add(core::mem::offset_of!(GnttabSetupTable, status) as u64);
            ctx.write(GuestVa(status_at), &status.to_le_bytes())?;
            Ok(0)
        }
        op::SET_VERSION => {
            let v = GnttabSetVersion::from_bytes(&ctx.read(at)?);
            let r = match v.version {
                1 => Ok(0),
                2 => Err(Errno::ENOSYS),
                _ => Err(Errno::EINVAL),
            };
            if let Err(e) = r {
                crate::glog!(c, Debug, "d{c}: GNTTABOP_set_version {}: {e:?}", v.version);
            }
            // The version in use goes back either way.
            let back = GnttabSetVersion { version: 1 };
            ctx.write(at, &back.to_bytes())?;
            r
        }
        op::GET_VERSION => {
            let mut v = GnttabGetVersion::from_bytes(&ctx.read(at)?);
            let id = if v.dom == DOMID_SELF { c } else { v.dom };
            if ctx.world.entry(id).is_none() {
                crate::glog!(c, Debug, "d{c}: GNTTABOP_get_version d{}: -ESRCH", v.dom);
                return Err(Errno::ESRCH);
            }
            if id != c && !ctx.privileged() {
                crate::glog!(c, Debug, "d{c}: GNTTABOP_get_version d{}: -EPERM", v.dom);
                return Err(Errno::EPERM);
            }
            v.version = 1;
            let version_at =
                arg.wrapping_add(core::mem::offset_of!(GnttabGetVersion, version) as u64);
            ctx.write(GuestVa(version_at), &v.version.to_le_bytes())?;
            Ok(0)
        }
        op::GET_STATUS_FRAMES => {
            let g = GnttabGetStatusFrames::from_bytes(&ctx.read(at)?);
            let status = match target(ctx, g.dom) {
                // nr_status_frames() of a v1 table is 0.
                Ok(_) if g.nr_frames > 0 => grant::GNTST_GENERAL_ERROR,
                Ok(_) => grant::GNTST_OKAY,
                Err(s) => s,
            };
            if status != grant::GNTST_OKAY {
                crate::glog!(
                    c,
                    Debug,
                    "d{c}: GNTTABOP_get_status_frames d{} {} frames (v1 table): status {status}",
                    g.dom,
                    g.nr_frames
                );
            }
            let status_at =
                arg.wrapping_add(core::mem::offset_of!(GnttabGetStatusFrames, status) as u64);
            ctx.write(GuestVa(status_at), &status.to_le_bytes())?;
            Ok(0)
        }
        // transfer, unmap_and_replace, swap_grant_ref, dump_table.
        other => {
            crate::glog!(c, Debug, "d{c}: GNTTABOP {other} not implemented: -ENOSYS");
            Err(Errno::ENOSYS)
        }
    }
}

/// `setup_table` of domain `d` (checked by [`target`]): its status. More
/// frames than `max_grant_frames` is `GNTST_general_error`, as a table that
/// cannot grow (`gnttab_grow_table` failing: hv's pool or heap is full).
fn setup_table<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, d: u16, t: &GnttabSetupTable) -> i16 {
    let World {
        domains, pool, mem, ..
    } = &mut *ctx.world;
    let Some(dom) = domains.iter_mut().find(|x| x.id == d) else {
        return grant::GNTST_BAD_DOMAIN;
    };
    if dom.xen.grow_grant(d, t.nr_frames, pool, mem).is_err() {
        return grant::GNTST_GENERAL_ERROR;
    }
    for j in 0..t.nr_frames {
        let g = match ctx.world.entry(d) {
            Some(dom) => dom.xen.grant.shared_gfn(j),
            None => return grant::GNTST_BAD_DOMAIN,
        };
        let to = t.frame_list.wrapping_add(u64::from(j) * 8);
        if ctx.write(GuestVa(to), &g.to_le_bytes()).is_err() {
            return grant::GNTST_BAD_VIRT_ADDR;
        }
    }
    grant::GNTST_OKAY
}
