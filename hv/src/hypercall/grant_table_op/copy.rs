//! `GNTTABOP_copy` (grant_table_op 5): copies between pages named by a grant
//! reference of any domain or by a frame of the caller, without mapping
//! anything (netback's path: rx copies into the frontend's granted pages,
//! tx copies out of them; Linux `drivers/xen/grant-table.c`
//! `gnttab_batch_copy` issues a batch and retries only `GNTST_eagain`).
//!
//! Semantics of Xen 4.20's xen/common/grant_table.c: `gnttab_copy` (the
//! batch, one status per op, -EFAULT only for the array),
//! `gnttab_copy_one` (an op of length 0 is done at once, then
//! `gnttab_copy_lock_domains`, claim source, claim dest, `gnttab_copy_buf`),
//! `gnttab_copy_lock_domain` (a frame, not a grant, may only be named with
//! `DOMID_SELF`: `GNTST_permission_denied`, whatever the caller's
//! privilege; an unknown domain is `GNTST_bad_domain`),
//! `gnttab_copy_claim_buf` (the source read-only, the dest writable;
//! `acquire_grant_for_copy` for a grant, `get_paged_frame` for a frame),
//! `gnttab_copy_buf` (offset + len past the page: `GNTST_bad_copy_arg`,
//! checked after both claims), `release_grant_for_copy` (the pin goes,
//! `reduce_status_for_pin` clears what no other pin needs).
//!
//! hv holds the world's lock for the whole op, so the pins Xen takes for
//! the duration of a copy (and the page references of `get_paged_frame`)
//! are taken and dropped within one op: the granter sees `GTF_reading` (and
//! `GTF_writing` for a dest) exactly while hv copies, as with Xen's
//! acquire/release. Xen keeps a claimed buffer across consecutive ops that
//! name the same one (`gnttab_copy_buf_valid`); that only saves work, the
//! answers are the same. A copy changes no mapping, so it needs no TLB
//! maintenance and makes none. Only v1 tables exist here (Xen on Arm's
//! `GNTTAB_MAX_VERSION` is 1), so there are no sub-page or transitive
//! grants and a granted buffer is always the whole page.

use memops::{P2mKind, TableMem};
use pv_tlb::PhysAddr;

use super::GRANT_BUDGET;
use crate::arch::PhysMem;
use crate::domain::{Domain, EndReason};
use crate::hypercall::{Ctx, GuestVa};
use crate::world::World;
use crate::xen::abi::{GnttabCopy, GnttabCopyPtr};
use crate::xen::evtchn::DOMID_SELF;
use crate::xen::grant::{self, gntcopy};
use crate::xen::Errno;

/// Page size of a grant (`PAGE_SIZE` in Xen's `gnttab_copy_buf`).
const PAGE: u32 = 4096;

/// `GNTTABOP_copy` on `count` structs at `arg` (a VA of the caller): the
/// number of ops done (all of them unless preempted after
/// [`GRANT_BUDGET`]), each with its `status` written back (only that
/// field, as Xen's `__copy_field_to_guest`).
///
/// # Errors
/// `-EFAULT` when a struct cannot be read or its status written (the ops
/// before it stay done, as Xen's).
pub fn copy_batch<M: PhysMem + TableMem>(
    arg: u64,
    count: u32,
    ctx: &mut Ctx<'_, M>,
) -> Result<u32, Errno> {
    let n = count.min(GRANT_BUDGET);
    for i in 0..n {
        let at = GuestVa(arg.wrapping_add(u64::from(i) * GnttabCopy::SIZE as u64));
        let op = GnttabCopy::from_bytes(&ctx.read::<{ GnttabCopy::SIZE }>(at)?);
        let status = copy_one(&op, ctx.caller, ctx.world);
        if status != grant::GNTST_OKAY {
            let c = ctx.caller;
            crate::glog!(
                c,
                Debug,
                "d{c}: GNTTABOP_copy {:#x}@d{}+{:#x} -> {:#x}@d{}+{:#x} len {:#x} flags {:#x}: status {status}",
                op.source.u,
                op.source.domid,
                op.source.offset,
                op.dest.u,
                op.dest.domid,
                op.dest.offset,
                op.len,
                op.flags
            );
        }
        let status_at =
            GuestVa(at.0.wrapping_add(core::mem::offset_of!(GnttabCopy, status) as u64));
        ctx.write(status_at, &status.to_le_bytes())?;
    }
    Ok(n)
}

/// A claimed buffer (Xen's `struct gnttab_copy_buf`): the host frame, and
/// the grant pinned for it, if it was named by one.
#[derive(Clone, Copy)]
struct Buf {
    pa: PhysAddr,
    /// `(index of the granter in the world's domains, ref, read-only)`.
    grant: Option<(usize, u32, bool)>,
}

/// One op (Xen's `gnttab_copy_one`); its `GNTST_*`.
fn copy_one<M: PhysMem + TableMem>(op: &GnttabCopy, caller: u16, w: &mut World<M>) -> i16 {
    if op.len == 0 {
        return grant::GNTST_OKAY;
    }
    let src_gref = op.flags & gntcopy::SOURCE_GREF != 0;
    let dst_gref = op.flags & gntcopy::DEST_GREF != 0;
    // gnttab_copy_lock_domains: the source first, then the dest.
    let si = match lock_domain(&w.domains, caller, op.source.domid, src_gref) {
        Ok(i) => i,
        Err(s) => return s,
    };
    let di = match lock_domain(&w.domains, caller, op.dest.domid, dst_gref) {
        Ok(i) => i,
        Err(s) => return s,
    };
    let src = match claim(w, caller, si, &op.source, src_gref, true) {
        Ok(b) => b,
        Err(s) => return s,
    };
    let dst = match claim(w, caller, di, &op.dest, dst_gref, false) {
        Ok(b) => b,
        Err(s) => {
            release(w, src);
            return s;
        }
    };
    let status = copy_buf(&mut w.mem, op, src.pa, dst.pa);
    release(w, src);
    release(w, dst);
    status
}

/// Xen's `gnttab_copy_lock_domain`: the index of the domain `domid` names
/// (`DOMID_SELF` is the caller, as `rcu_lock_domain_by_any_id`).
fn lock_domain(domains: &[Domain], caller: u16, domid: u16, is_gref: bool) -> Result<usize, i16> {
    if domid != DOMID_SELF && !is_gref {
        // "Only DOMID_SELF may reference via frame", even the caller's own id.
        return Err(grant::GNTST_PERMISSION_DENIED);
    }
    let id = if domid == DOMID_SELF { caller } else { domid };
    domains
        .iter()
        .position(|d| d.id == id)
        .ok_or(grant::GNTST_BAD_DOMAIN)
}

/// Xen's `gnttab_copy_claim_buf` for `ptr` of domain `i` (a source is
/// claimed read-only, a dest writable).
fn claim<M: PhysMem + TableMem>(
    w: &mut World<M>,
    caller: u16,
    i: usize,
    ptr: &GnttabCopyPtr,
    is_gref: bool,
    readonly: bool,
) -> Result<Buf, i16> {
    if is_gref {
        let gref = ptr.gref();
        let pa = acquire(w, i, gref, caller, readonly)?;
        return Ok(Buf {
            pa,
            grant: Some((i, gref, readonly)),
        });
    }
    // get_paged_frame on the caller's own frame (lock_domain let nothing
    // else through): its RAM; a foreign mapping or hv's shared-info page is
    // GNTST_bad_page (Xen: p2m_is_foreign, or no page of the domain).
    match w.domains[i].physmap().lookup(ptr.u) {
        Some(e) if e.kind == P2mKind::Ram => Ok(Buf {
            pa: e.pa,
            grant: None,
        }),
        _ => Err(grant::GNTST_BAD_PAGE),
    }
}

/// Xen's `acquire_grant_for_copy` (v1) of `gref` in the table of domain
/// `ri` by `ld`: the granted frame, with one more pin of the entry.
/// - `gref` past the entries in use: `GNTST_bad_gntref`;
/// - pinned by another domain, or the pin counter full:
///   `GNTST_general_error`;
/// - not pinned (or pinned read-only and a dest): `_set_status_v1`
///   (`GTF_permit_access` for `ld`, not `GTF_readonly` for a dest, else
///   `GNTST_general_error`), then the entry's frame through the granter's
///   p2m (`get_paged_frame`: its RAM, else `GNTST_bad_page`), which must be
///   the frame already pinned if any (else `GNTST_general_error`);
/// - pinned with the access needed: the pinned frame, still the granter's
///   and the granter not dying (else `GNTST_bad_domain`).
///
/// On an error the status bits this call set are cleared again
/// (`reduce_status_for_pin`).
fn acquire<M: PhysMem + TableMem>(
    w: &mut World<M>,
    ri: usize,
    gref: u32,
    ld: u16,
    readonly: bool,
) -> Result<PhysAddr, i16> {
    let rd = &w.domains[ri];
    let rgt = &rd.xen.grant;
    let entry = rgt.entry_pa(gref).ok_or(grant::GNTST_BAD_GNTREF)?;
    let act = rgt.active(gref);
    if act.is_some_and(|a| a.mapper != ld || a.full(readonly)) {
        return Err(grant::GNTST_GENERAL_ERROR);
    }
    let pa = match act {
        Some(a) if readonly || a.write_pins > 0 => {
            let owner = w.pool.frame(a.pa).and_then(|f| f.owner);
            if owner != Some(rd.id) || rd.ending == Some(EndReason::Destroyed) {
                return Err(grant::GNTST_BAD_DOMAIN);
            }
            a.pa
        }
        _ => {
            let frame = grant::set_status(&mut w.mem, entry, act.is_some(), ld, readonly, false)?;
            let rd = &w.domains[ri];
            let found = match rd.physmap().lookup(u64::from(frame)) {
                Some(e) if e.kind == P2mKind::Ram => match act {
                    Some(a) if a.pa != e.pa => Err(grant::GNTST_GENERAL_ERROR),
                    _ => Ok(e.pa),
                },
                _ => Err(grant::GNTST_BAD_PAGE),
            };
            match found {
                Ok(pa) => pa,
                Err(s) => {
                    let clear = grant::reduce_status(act.as_ref(), readonly);
                    grant::clear_status(&mut w.mem, entry, clear);
                    return Err(s);
                }
            }
        }
    };
    w.domains[ri].xen.grant.pin(gref, ld, pa, readonly);
    Ok(pa)
}

/// Xen's `gnttab_copy_release_buf`: a grant's pin goes
/// (`release_grant_for_copy`), with the `GTF_*` bits no other pin needs.
fn release<M: PhysMem + TableMem>(w: &mut World<M>, b: Buf) {
    let Some((i, gref, readonly)) = b.grant else {
        return;
    };
    let rgt = &mut w.domains[i].xen.grant;
    let clear = rgt.unpin(gref, readonly);
    if let Some(pa) = rgt.entry_pa(gref) {
        grant::clear_status(&mut w.mem, pa, clear);
    }
}

/// Xen's `gnttab_copy_buf`: `len` bytes from `source.offset` of `src` to
/// `dest.offset` of `dst`. A range past the end of its page is
/// `GNTST_bad_copy_arg`. (Xen then checks the range against the granted
/// part of the page, which for v1 grants and frames is the whole page.)
fn copy_buf<M: PhysMem>(mem: &mut M, op: &GnttabCopy, src: PhysAddr, dst: PhysAddr) -> i16 {
    let len = u32::from(op.len);
    let (so, dof) = (u32::from(op.source.offset), u32::from(op.dest.offset));
    if so + len > PAGE || dof + len > PAGE {
        return grant::GNTST_BAD_COPY_ARG;
    }
    // Through a small buffer (hv's stack is small); ranges of one page that
    // overlap are copied front to back in chunks (Xen's memcpy makes no
    // promise for them either).
    let mut buf = [0u8; 256];
    let mut done = 0u32;
    while done < len {
        let n = (len - done).min(buf.len() as u32);
        let chunk = &mut buf[..n as usize];
        mem.read(PhysAddr(src.0 + u64::from(so + done)), chunk);
        mem.write(PhysAddr(dst.0 + u64::from(dof + done)), chunk);
        done += n;
    }
    grant::GNTST_OKAY
}
