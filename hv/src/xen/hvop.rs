//! `hv_op` (hypercall 49, `__HYPERVISOR_arch_1`, unused by Xen on Arm): hv's
//! own privileged operations (DESIGN.md, "hv_op").
//!
//! `HVOP_get_counters` (1) copies `struct hv_counters` (12 little-endian u64,
//! 96 bytes): `tlbi[8]` in `pv_tlb::TlbOpKind::ALL` order, `p2m_ops`,
//! `plans`, `guest_exits`, `hypercalls`. `HVOP_reset_counters` (2) zeroes
//! them. Unprivileged callers get `-EPERM`; other sub-ops `-ENOSYS`.

use core::sync::atomic::{AtomicU64, Ordering};

use memops::TableMem;

use super::{Errno, HypercallCtx};
use crate::arch::PhysMem;
use crate::guest::GuestHandle;
use pv_tlb::TlbOpKind;

/// The hypercall number.
pub const HYPERVISOR_HV_OP: u64 = 49;
/// Copy out `struct hv_counters`.
pub const HVOP_GET_COUNTERS: u32 = 1;
/// Zero the counters.
pub const HVOP_RESET_COUNTERS: u32 = 2;
/// `sizeof(struct hv_counters)`.
pub const HV_COUNTERS_LEN: usize = 12 * 8;

/// Stage-2 operations recorded (memory_op glue adds to it).
pub static P2M_OPS: AtomicU64 = AtomicU64::new(0);
/// Guest exits handled (all pCPUs).
pub static GUEST_EXITS: AtomicU64 = AtomicU64::new(0);
/// Xen hypercalls handled (all pCPUs).
pub static HYPERCALLS: AtomicU64 = AtomicU64::new(0);

/// `struct hv_counters` as of now.
#[must_use]
pub fn counters() -> [u64; 12] {
    let mut c = [0u64; 12];
    for (i, k) in TlbOpKind::ALL.iter().enumerate() {
        c[i] = crate::tlb::STATS.count(*k);
    }
    c[8] = P2M_OPS.load(Ordering::Relaxed);
    c[9] = crate::tlb::STATS.plans();
    c[10] = GUEST_EXITS.load(Ordering::Relaxed);
    c[11] = HYPERCALLS.load(Ordering::Relaxed);
    c
}

/// Zero every counter.
pub fn reset_counters() {
    crate::tlb::STATS.reset();
    P2M_OPS.store(0, Ordering::Relaxed);
    GUEST_EXITS.store(0, Ordering::Relaxed);
    HYPERCALLS.store(0, Ordering::Relaxed);
}

/// Handle `hv_op(op, arg)`.
///
/// # Errors
/// `-EPERM` for an unprivileged caller, `-EFAULT` for a bad handle.
pub fn hv_op<M: PhysMem + TableMem>(
    op: u32,
    arg: GuestHandle<[u8; HV_COUNTERS_LEN]>,
    ctx: &mut HypercallCtx<'_, M>,
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
