//! `sysctl` (35) for the control domain, after Xen 4.20's
//! `xen/include/public/sysctl.h` (`XEN_SYSCTL_INTERFACE_VERSION` 0x15) and
//! `do_sysctl` (xen/common/sysctl.c; Arm's `arch_do_physinfo` in
//! xen/arch/arm/sysctl.c, cpupools in xen/common/sched/cpupool.c): what
//! `xl info`, `xl list`, `xl dmesg`, `xen-init-dom0` and `xenconsoled` ask.
//! Every guest handle is a VA of the caller.
//!
//! Answered: `readconsole` (1, hv's [`crate::conring`]), `physinfo` (3),
//! `sched_id` (4), `getdomaininfolist` (6), `cputopoinfo` (16), `numainfo`
//! (17), `cpupool_op` (18: INFO, FREEINFO). Everything else is `-ENOSYS` with
//! a log line (Xen's `arch_do_sysctl` on Arm answers -ENOSYS for what it
//! does not know; `perfc_op` is -ENOSYS in Xen without CONFIG_PERF_COUNTERS).
//!
//! The machine as Xen/Arm describes it: one socket, one node, one thread
//! and core per socket as Xen/Arm's sibling and core masks hold only the CPU
//! itself (`cpu_to_core`/`cpu_to_socket` are 0), one cpupool 0 with every
//! CPU and every domain.

use alloc::vec::Vec;
use memops::TableMem;

use super::domctl::domain::domaininfo;
use super::{Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::domain::DomId;
pub use crate::xen::abi::XEN_SYSCTL_INTERFACE_VERSION;
use crate::xen::abi::{
    cpupool_op, physcap, sysctl_cmd as cmd, XenDomctlGetdomaininfo, XenSysctl, XenSysctlCpupoolOp,
    XenSysctlCputopo, XenSysctlCputopoinfo, XenSysctlGetdomaininfolist, XenSysctlMeminfo,
    XenSysctlNumainfo, XenSysctlPhysinfo, XenSysctlReadconsole, XenSysctlSchedId,
};
use crate::xen::Errno;
use pv_tlb::PAGE_SIZE;

/// `XEN_SCHEDULER_CREDIT2` (public/domctl.h), Xen 4.20's default and what
/// the trace's toolstack saw (`sched_id=6`). hv's own run queue is not
/// credit2, but it is what the toolstack asks about: per-domain
/// time-sliced sharing of the pCPUs; the cpupool reports the same id.
pub const SCHED_ID: u32 = 6;
/// `__node_distance` of Xen without NUMA (xen/include/xen/numa.h).
pub const NODE_DISTANCE: u32 = 20;

/// What a sysctl command did: x0, and whether the struct goes back (Xen
/// copies the whole `xen_sysctl` back on success unless the command says
/// otherwise).
struct Out {
    ret: Result<u64, Errno>,
    copy_back: bool,
}

impl Out {
    fn ok() -> Self {
        Out {
            ret: Ok(0),
            copy_back: true,
        }
    }
    fn err(e: Errno) -> Self {
        Out {
            ret: Err(e),
            copy_back: false,
        }
    }
}

/// `sysctl(struct xen_sysctl *)`: in Xen's `do_sysctl` order, copy in
/// (-EFAULT), the interface version (-EACCES), the right (-EPERM), then the
/// command; on success the struct is copied back (-EFAULT if that fails).
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    let arg = GuestVa(a[0]);
    let caller = ctx.caller;
    let mut op = match ctx.read::<{ XenSysctl::SIZE }>(arg) {
        Ok(b) => XenSysctl::from_bytes(&b),
        Err(e) => {
            crate::glog!(caller, Debug, "d{caller}: sysctl at {arg}: -EFAULT");
            return Reply::ret(Err(e));
        }
    };
    let version = op.interface_version;
    if version != XEN_SYSCTL_INTERFACE_VERSION {
        crate::glog!(
            caller,
            Debug,
            "d{caller}: sysctl interface version {version:#x}, expected {XEN_SYSCTL_INTERFACE_VERSION:#x}"
        );
        return Reply::ret(Err(Errno::EACCES));
    }
    if !ctx.privileged() {
        crate::glog!(
            caller,
            Debug,
            "d{caller}: sysctl {}: not privileged",
            op.cmd
        );
        return Reply::ret(Err(Errno::EPERM));
    }
    let out = match op.cmd {
        cmd::READCONSOLE => readconsole(ctx, &mut op),
        cmd::PHYSINFO => {
            op.set_member(&physinfo(ctx));
            Out::ok()
        }
        cmd::SCHED_ID => {
            op.set_member(&XenSysctlSchedId { sched_id: SCHED_ID });
            Out::ok()
        }
        cmd::GETDOMAININFOLIST => getdomaininfolist(ctx, &mut op),
        cmd::CPUTOPOINFO => cputopoinfo(ctx, &mut op),
        cmd::NUMAINFO => numainfo(ctx, &mut op),
        cmd::CPUPOOL_OP => cpupool(ctx, &mut op),
        other => {
            crate::glog!(
                caller,
                Debug,
                "d{caller}: sysctl {other} not implemented: -ENOSYS"
            );
            Out::err(Errno::ENOSYS)
        }
    };
    if out.copy_back && out.ret.is_ok() {
        if let Err(e) = ctx.write(arg, &op.to_bytes()) {
            return Reply::ret(Err(e));
        }
    }
    Reply::ret(out.ret)
}

/// Physical CPUs (`num_online_cpus()`), at least 1.
fn nr_cpus() -> u32 {
    super::host::host_facts().nr_cpus.max(1)
}

/// `XEN_SYSCTL_physinfo` as Xen/Arm fills it. `cpu_khz` is the generic
/// timer's frequency in kHz (xen/arch/arm/time.c: `cpu_khz` from CNTFRQ),
/// total/free pages are hv's guest page pool (every page a domain can own,
/// dom0's included), capabilities hvm|hap|gnttab_v1 (no IOMMU, no vPMU, no
/// vmtrace, grant table v1 only), `arch_capabilities` the SVE vector length
/// guests may use, 0 (hv offers SVE to no guest, as `createdomain` refuses
/// `sve_vl`).
fn physinfo<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>) -> XenSysctlPhysinfo {
    let facts = super::host::host_facts();
    let n = nr_cpus();
    let khz = ctx.arch.counter_frequency().saturating_add(500) / 1000;
    let pool = &ctx.world.pool;
    XenSysctlPhysinfo {
        threads_per_core: 1,
        cores_per_socket: 1,
        nr_cpus: n,
        max_cpu_id: n - 1,
        nr_nodes: 1,
        max_node_id: 0,
        cpu_khz: u32::try_from(khz).unwrap_or(u32::MAX),
        capabilities: physcap::HVM | physcap::HAP | physcap::GNTTAB_V1,
        arch_capabilities: 0,
        total_pages: pool.total_frames(),
        free_pages: pool.free_frames(),
        max_mfn: facts.ram_end_pfn.saturating_sub(1),
        ..XenSysctlPhysinfo::default()
    }
}

/// `XEN_SYSCTL_readconsole` from hv's console ring (Xen's
/// `read_console_ring`): up to `count` bytes from the oldest held (or from
/// `index` if `incremental`), `count`/`index` updated; `clear` drops what
/// was read. A bad buffer is -EFAULT and clears nothing.
fn readconsole<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, op: &mut XenSysctl) -> Out {
    let mut rc: XenSysctlReadconsole = op.member();
    let Some(got) = crate::conring::read(rc.incremental != 0, rc.index, rc.count) else {
        let c = ctx.caller;
        crate::glog!(c, Warn, "d{c}: readconsole: no heap for the copy: -ENOMEM");
        return Out::err(Errno::ENOMEM);
    };
    if !got.bytes.is_empty() {
        if let Err(e) = ctx.write(GuestVa(rc.buffer), &got.bytes) {
            let c = ctx.caller;
            crate::glog!(c, Debug, "d{c}: readconsole into {:#x}: -EFAULT", rc.buffer);
            return Out::err(e);
        }
    }
    if rc.clear != 0 {
        crate::conring::clear_to(got.end, got.producer);
    }
    rc.count = got.bytes.len() as u32;
    rc.index = got.end;
    op.set_member(&rc);
    Out::ok()
}

/// The domains in domid order (Xen's domain list is sorted by domid).
fn domids<M>(w: &crate::world::World<M>) -> Vec<DomId> {
    let mut ids: Vec<DomId> = w.domains.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    ids
}

/// `XEN_SYSCTL_getdomaininfolist`: the `getdomaininfo` of each domain with
/// domid >= `first_domain`, at most `max_domains`, into `buffer`
/// (`num_domains` written). A bad buffer is -EFAULT (nothing copied back).
fn getdomaininfolist<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, op: &mut XenSysctl) -> Out {
    let mut l: XenSysctlGetdomaininfolist = op.member();
    let mut n: u32 = 0;
    let now = super::now_ns(ctx);
    for id in domids(ctx.world) {
        if id < l.first_domain {
            continue;
        }
        if n == l.max_domains {
            break;
        }
        let Some(info) = ctx.world.domain(id).map(|d| domaininfo(d, now)) else {
            continue;
        };
        let at = l
            .buffer
            .wrapping_add(u64::from(n) * XenDomctlGetdomaininfo::SIZE as u64);
        if let Err(e) = ctx.write(GuestVa(at), &info.to_bytes()) {
            let c = ctx.caller;
            crate::glog!(
                c,
                Debug,
                "d{c}: getdomaininfolist entry {n} at {at:#x}: -EFAULT"
            );
            return Out::err(e);
        }
        n += 1;
    }
    l.num_domains = n;
    op.set_member(&l);
    Out::ok()
}

/// `XEN_SYSCTL_cputopoinfo`: a NULL handle asks for the CPU count; else
/// up to `num_cpus` entries {core 0, socket 0, node 0} (Xen/Arm's
/// `cpu_to_core`/`cpu_to_socket`, one node), `num_cpus` updated to the number
/// written (Xen 4.20's code, not the header's comment: a shorter array gets
/// its own length back, not the intended number).
fn cputopoinfo<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, op: &mut XenSysctl) -> Out {
    let mut ti: XenSysctlCputopoinfo = op.member();
    let have = nr_cpus();
    let written = if ti.cputopo == 0 {
        have
    } else {
        let n = have.min(ti.num_cpus);
        let one = XenSysctlCputopo {
            core: 0,
            socket: 0,
            node: 0,
        }
        .to_bytes();
        let mut all = Vec::new();
        for _ in 0..n {
            all.extend_from_slice(&one);
        }
        if let Err(e) = ctx.write(GuestVa(ti.cputopo), &all) {
            return Out::err(e);
        }
        n
    };
    ti.num_cpus = written;
    op.set_member(&ti);
    Out::ok()
}

/// `XEN_SYSCTL_numainfo`: one node holding hv's page pool, distance 20 to
/// itself. Both handles NULL asks for the node count.
fn numainfo<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, op: &mut XenSysctl) -> Out {
    let mut ni: XenSysctlNumainfo = op.member();
    let have: u32 = 1;
    let mut i = have;
    if ni.meminfo != 0 || ni.distance != 0 {
        let n = have.min(ni.num_nodes);
        if n >= 1 {
            if ni.meminfo != 0 {
                let pool = &ctx.world.pool;
                let m = XenSysctlMeminfo {
                    memsize: pool.total_frames() * PAGE_SIZE,
                    memfree: pool.free_frames() * PAGE_SIZE,
                };
                if let Err(e) = ctx.write(GuestVa(ni.meminfo), &m.to_bytes()) {
                    return Out::err(e);
                }
            }
            if ni.distance != 0 {
                if let Err(e) = ctx.write(GuestVa(ni.distance), &NODE_DISTANCE.to_le_bytes()) {
                    return Out::err(e);
                }
            }
        }
        i = n;
    }
    ni.num_nodes = i;
    op.set_member(&ni);
    Out::ok()
}

/// `XEN_SYSCTL_cpupool_op`: hv has one pool, 0, with every CPU and domain.
/// INFO returns the first pool with an id >= `cpupool_id` (Xen's
/// `cpupool_get_next_by_id`; -ENOENT past the last, which ends
/// `xen-init-dom0`'s enumeration); FREEINFO the CPUs in no pool (none).
/// Creating, destroying or changing pools is -ENOSYS with a log line.
fn cpupool<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, op: &mut XenSysctl) -> Out {
    let mut p: XenSysctlCpupoolOp = op.member();
    let c = ctx.caller;
    let cpus = nr_cpus();
    let mask_all = |n: u32| -> Vec<u8> {
        let mut m = alloc::vec![0u8; n.div_ceil(8) as usize];
        for cpu in 0..n {
            m[(cpu / 8) as usize] |= 1 << (cpu % 8);
        }
        m
    };
    let bitmap = match p.op {
        cpupool_op::INFO => {
            if p.cpupool_id > 0 {
                crate::glog!(
                    c,
                    Debug,
                    "d{c}: cpupool {}: -ENOENT (hv has pool 0 only)",
                    p.cpupool_id
                );
                return Out::err(Errno::ENOENT);
            }
            p.cpupool_id = 0;
            p.sched_id = SCHED_ID;
            p.n_dom = ctx.world.domains.len() as u32;
            mask_all(cpus)
        }
        cpupool_op::FREEINFO => alloc::vec![0u8; cpus.div_ceil(8) as usize],
        other => {
            crate::glog!(
                c,
                Debug,
                "d{c}: cpupool op {other} not implemented: -ENOSYS"
            );
            return Out::err(Errno::ENOSYS);
        }
    };
    // Xen's bitmap_to_xenctl_bitmap: min(guest, Xen) bytes of the mask,
    // then zeros up to the guest's nr_bits (guest-sized: written in
    // page-sized pieces, never allocated whole).
    let guest_bytes = u64::from(p.cpumap.nr_bits.div_ceil(8));
    let n = guest_bytes.min(bitmap.len() as u64);
    let base = p.cpumap.bitmap;
    if n > 0 {
        if let Err(e) = ctx.write(GuestVa(base), &bitmap[..n as usize]) {
            return Out::err(e);
        }
    }
    let zero = [0u8; 4096];
    let mut at = n;
    while at < guest_bytes {
        let len = (guest_bytes - at).min(zero.len() as u64);
        if let Err(e) = ctx.write(GuestVa(base.wrapping_add(at)), &zero[..len as usize]) {
            return Out::err(e);
        }
        at += len;
    }
    op.set_member(&p);
    Out::ok()
}
