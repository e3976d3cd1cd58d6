//! Scheduling domctls: `setvcpuaffinity` (9), `setnodeaffinity` (68),
//! `scheduler_op` (16), after Xen 4.20's `vcpu_affinity_domctl` and
//! `sched_adjust` (xen/common/sched/core.c), `domain_set_node_affinity`
//! (xen/common/domain.c) and credit2's `csched2_dom_cntl`
//! (xen/common/sched/credit2.c). hv answers as Xen with credit2 (the
//! `sched_id` its sysctls report) and records what is set; its run queue
//! does not act on affinities, weights or caps.

use memops::TableMem;

use super::{with_domu, Answer};
use crate::arch::PhysMem;
use crate::hypercall::{Ctx, GuestVa};
use crate::xen::abi::{
    XenDomctl, XenDomctlNodeaffinity, XenDomctlSchedulerOp, XenDomctlVcpuaffinity, XenctlBitmap,
};
use crate::xen::Errno;

/// `XEN_VCPUAFFINITY_HARD` / `_SOFT` (domctl.h).
pub const AFFINITY_HARD: u32 = 1;
/// See [`AFFINITY_HARD`].
pub const AFFINITY_SOFT: u32 = 2;
/// `XEN_DOMCTL_SCHEDOP_putinfo` / `_getinfo` (domctl.h).
pub const SCHEDOP_PUTINFO: u32 = 0;
/// See [`SCHEDOP_PUTINFO`].
pub const SCHEDOP_GETINFO: u32 = 1;

/// Bytes of a bitmap of hv's pCPUs (Xen's `nr_cpu_ids`), at most 64 CPUs.
fn cpu_mask() -> u64 {
    let n = crate::hypercall::host::host_facts().nr_cpus.clamp(1, 64);
    if n == 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Xen's `xenctl_bitmap_to_bitmap` for up to 64 bits: the guest's
/// `nr_bits` bits (bits past 64 ignored, as Xen ignores those past
/// `nr_cpu_ids`), -EFAULT if the buffer is not readable.
fn read_bitmap<M: PhysMem + TableMem>(
    ctx: &mut Ctx<'_, M>,
    b: &XenctlBitmap,
) -> Result<u64, Errno> {
    let bytes = (b.nr_bits.div_ceil(8) as usize).min(8);
    let mut raw = [0u8; 8];
    ctx.copy_in(GuestVa(b.bitmap), &mut raw[..bytes])?;
    let mut v = u64::from_le_bytes(raw);
    if b.nr_bits < 64 {
        v &= (1u64 << b.nr_bits) - 1;
    }
    Ok(v)
}

/// Xen's `cpumask_to_xenctl_bitmap`: `mask` into the guest's buffer, as many
/// bytes as it holds (`nr_bits`), zero past the mask.
fn write_bitmap<M: PhysMem + TableMem>(
    ctx: &mut Ctx<'_, M>,
    b: &XenctlBitmap,
    mask: u64,
) -> Result<(), Errno> {
    let mut left = b.nr_bits.div_ceil(8) as u64;
    let mut at = b.bitmap;
    let src = mask.to_le_bytes();
    let mut chunk = [0u8; 64];
    let mut first = true;
    while left > 0 {
        let n = left.min(64) as usize;
        chunk.fill(0);
        if first {
            chunk[..8].copy_from_slice(&src);
            first = false;
        }
        ctx.write(GuestVa(at), &chunk[..n])?;
        at = at.wrapping_add(n as u64);
        left -= n as u64;
    }
    Ok(())
}

/// `XEN_DOMCTL_setvcpuaffinity`: vCPU below `max_vcpus` (-EINVAL), flags
/// HARD and/or SOFT only and not none (-EINVAL); a hard mask without an hv
/// pCPU is -EINVAL (Xen's `vcpu_set_hard_affinity`); the effective masks
/// go back (hard: the requested pCPUs; soft: soft ∩ hard, Xen's
/// write-back), the struct unchanged.
pub fn setvcpuaffinity<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, op: &XenDomctl) -> Answer {
    let a: XenDomctlVcpuaffinity = op.member();
    let mut max = None;
    let probe = with_domu(ctx.world, op.domain, |d| {
        max = Some(d.max_vcpus);
        Answer::ok(false)
    });
    let Some(max) = max else { return probe };
    if a.vcpu >= max {
        log::debug!("d{}: setvcpuaffinity: vcpu {} >= {max}", op.domain, a.vcpu);
        return Answer::err(Errno::EINVAL);
    }
    if a.flags == 0 || a.flags & !(AFFINITY_HARD | AFFINITY_SOFT) != 0 {
        log::debug!("d{}: setvcpuaffinity: flags {:#x}", op.domain, a.flags);
        return Answer::err(Errno::EINVAL);
    }
    let all = cpu_mask();
    let mut hard = all;
    let r = (|| {
        if a.flags & AFFINITY_HARD != 0 {
            hard = read_bitmap(ctx, &a.cpumap_hard)? & all;
            if hard == 0 {
                log::debug!(
                    "d{}: setvcpuaffinity: no hv pCPU in the hard mask",
                    op.domain
                );
                return Err(Errno::EINVAL);
            }
        }
        let soft = if a.flags & AFFINITY_SOFT != 0 {
            read_bitmap(ctx, &a.cpumap_soft)? & all
        } else {
            all
        };
        if a.flags & AFFINITY_HARD != 0 {
            write_bitmap(ctx, &a.cpumap_hard, hard)?;
        }
        if a.flags & AFFINITY_SOFT != 0 {
            write_bitmap(ctx, &a.cpumap_soft, soft & hard)?;
        }
        log::debug!(
            "d{}v{}: affinity hard {hard:#x} soft {soft:#x} (recorded by the toolstack, not enforced by hv's run queue)",
            op.domain,
            a.vcpu
        );
        Ok(())
    })();
    match r {
        Ok(()) => Answer::ok(false),
        Err(e) => Answer::err(e),
    }
}

/// `XEN_DOMCTL_setnodeaffinity`: hv's host is one NUMA node (node 0, what
/// `XEN_SYSCTL_numainfo` reports); a node mask without it is -EINVAL
/// (Xen: "being disjoint with the system is just wrong").
pub fn setnodeaffinity<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, op: &XenDomctl) -> Answer {
    let n: XenDomctlNodeaffinity = op.member();
    let exists = with_domu(ctx.world, op.domain, |_| Answer::ok(false));
    if exists.ret.is_err() {
        return exists;
    }
    match read_bitmap(ctx, &n.nodemap) {
        Ok(m) if m & 1 != 0 => Answer::ok(false),
        Ok(m) => {
            log::debug!("d{}: setnodeaffinity {m:#x}: no online node", op.domain);
            Answer::err(Errno::EINVAL)
        }
        Err(e) => Answer::err(e),
    }
}

/// `XEN_DOMCTL_scheduler_op` with credit2's parameters: `sched_id` must be
/// hv's ([`crate::hypercall::sysctl::SCHED_ID`], else -EINVAL), `cmd`
/// putinfo or getinfo (else -EINVAL); getinfo reads weight and cap back,
/// putinfo sets a non-zero weight and a non-zero cap (at most 100 per vCPU,
/// else -EINVAL). The struct is copied back (Xen's `copyback`).
pub fn scheduler_op<M>(sh: &mut crate::world::World<M>, op: &mut XenDomctl) -> Answer {
    let mut s: XenDomctlSchedulerOp = op.member();
    if s.sched_id != crate::hypercall::sysctl::SCHED_ID {
        log::debug!("d{}: scheduler_op: sched_id {}", op.domain, s.sched_id);
        return Answer::err(Errno::EINVAL);
    }
    let a = with_domu(sh, op.domain, |d| match s.cmd {
        SCHEDOP_GETINFO => {
            s.credit2_weight = d.ctl.weight;
            s.credit2_cap = d.ctl.cap;
            Answer::ok(true)
        }
        SCHEDOP_PUTINFO => {
            if s.credit2_cap != 0 && u64::from(s.credit2_cap) > 100 * u64::from(d.max_vcpus) {
                log::debug!("d{}: scheduler_op: cap {}", d.id, s.credit2_cap);
                return Answer::err(Errno::EINVAL);
            }
            if s.credit2_weight != 0 {
                d.ctl.weight = s.credit2_weight;
            }
            if s.credit2_cap != 0 {
                d.ctl.cap = s.credit2_cap;
            }
            Answer::ok(true)
        }
        c => {
            log::debug!("d{}: scheduler_op: cmd {c}", d.id);
            Answer::err(Errno::EINVAL)
        }
    });
    if a.copy_back {
        // Only the credit2 member changes: the rest goes back as it came.
        crate::xen::abi::Le::put(&s, &mut op.u, 0);
    }
    a
}
