//! `hv_op` (hypercall 49, `__HYPERVISOR_arch_1`, unused by Xen on Arm): hv's
//! own privileged operations (DESIGN.md, "hv_op"); the counters and the
//! resource gathering live in [`crate::xen::hvop`].

use memops::TableMem;

use super::{low32, CallerView, Ctx, Reply};
use crate::arch::PhysMem;
use crate::counters::{counters, reset_counters};
use crate::guest::GuestHandle;
use crate::world::gather;
use crate::xen::hvop::Resources;
pub use crate::xen::hvop::{
    HVOP_GET_COUNTERS, HVOP_GET_RESOURCES, HVOP_RESET_COUNTERS, HV_COUNTERS_LEN, HYPERVISOR_HV_OP,
};
use crate::xen::Errno;

/// `hv_op(op, arg)`.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    let op = low32(a[0]);
    // HVOP_get_resources reports world-wide state.
    let resources = (op == HVOP_GET_RESOURCES).then(|| {
        let w = &*ctx.world;
        gather(&w.domains, &w.pool, w.vmids.in_use(), (w.heap_free)())
    });
    Reply::ret(ctx.caller_view().and_then(|mut v| match resources {
        Some(r) => get_resources(a[1], &r, &mut v),
        None => hv_op(op, GuestHandle::new(a[1]), &mut v),
    }))
}

/// `HVOP_get_resources`: copy `r` (gathered from the world) to `arg`.
///
/// # Errors
/// `-EPERM` for an unprivileged caller, `-EFAULT` for a bad handle.
pub fn get_resources<M: PhysMem + TableMem>(
    arg: u64,
    r: &Resources,
    ctx: &mut CallerView<'_, M>,
) -> Result<u64, Errno> {
    if !ctx.privileged {
        log::debug!("d{}: hv_op get_resources: not privileged", ctx.domid);
        return Err(Errno::EPERM);
    }
    ctx.mem
        .copy_to_guest(pv_tlb::Ipa(arg), &r.to_bytes())
        .map_err(|e| {
            log::debug!("d{}: hv_op get_resources: {e}", ctx.domid);
            e.errno()
        })?;
    Ok(0)
}

/// Handle `hv_op(op, arg)`.
///
/// # Errors
/// `-EPERM` for an unprivileged caller, `-EFAULT` for a bad handle.
pub fn hv_op<M: PhysMem + TableMem>(
    op: u32,
    arg: GuestHandle<[u8; HV_COUNTERS_LEN]>,
    ctx: &mut CallerView<'_, M>,
) -> Result<u64, Errno> {
    if !ctx.privileged {
        crate::glog!(
            ctx.domid,
            Debug,
            "d{}: hv_op {op}: not privileged",
            ctx.domid
        );
        return Err(Errno::EPERM);
    }
    match op {
        HVOP_GET_COUNTERS => {
            let mut out = [0u8; HV_COUNTERS_LEN];
            for (i, v) in counters().iter().enumerate() {
                out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
            }
            ctx.mem.write(arg, &out).map_err(|e| {
                crate::glog!(ctx.domid, Debug, "d{}: hv_op get_counters: {e}", ctx.domid);
                e.errno()
            })?;
            Ok(0)
        }
        HVOP_RESET_COUNTERS => {
            reset_counters();
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
