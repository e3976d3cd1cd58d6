//! `domctl` (36) for the control domain: what Xen's toolstack uses to build a
//! domU (`xl create`), after Xen's `xen/include/public/domctl.h`
//! (xen-project/xen c447b73; `XEN_DOMCTL_INTERFACE_VERSION` 0x17, arm64
//! layouts: guest handles are 8 bytes, 8-byte aligned) and `do_domctl`
//! (xen/common/domctl.c). Every guest handle is a VA of the caller.
//!
//! By subject: [`domain`] (`createdomain` 1, `destroydomain` 2,
//! `pausedomain` 3, `unpausedomain` 4, `getdomaininfo` 5), [`vcpu`] (`setvcpucontext` 12,
//! `max_vcpus` 15), [`memory`] (`max_mem` 11, `set_address_size` 35,
//! `cacheflush` 71, `get/set_paging_mempool_size` 85/86), [`sched`]
//! (`setvcpuaffinity` 9, `scheduler_op` 16, `setnodeaffinity` 68). Everything else answers
//! `-ENOSYS`; unprivileged callers get `-EPERM`. A new domctl: a
//! `cmd::` constant, one arm in [`call`], its handler in the subject's file.

pub mod domain;
pub mod memory;
pub mod sched;
pub mod vcpu;

use memops::TableMem;

use super::{Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::domain::{DomId, Domain};
use crate::world::World;
use crate::xen::abi::XenDomctl;
use crate::xen::Errno;

pub use domain::sanitise_createdomain;

pub use crate::xen::abi::domctl_cmd as cmd;
pub use crate::xen::abi::XEN_DOMCTL_INTERFACE_VERSION;

/// `XEN_DOMINF_*` flags of `getdomaininfo`.
pub mod dominf {
    #![allow(missing_docs)]
    pub const DYING: u32 = 1 << 0;
    pub const HVM_GUEST: u32 = 1 << 1;
    pub const SHUTDOWN: u32 = 1 << 2;
    pub const PAUSED: u32 = 1 << 3;
    pub const BLOCKED: u32 = 1 << 4;
    pub const RUNNING: u32 = 1 << 5;
    pub const HAP: u32 = 1 << 8;
    pub const SHUTDOWNSHIFT: u32 = 16;
}

/// `XEN_DOMCTL_CDF_*` (public/domctl.h).
pub mod cdf {
    #![allow(missing_docs)]
    pub const HVM: u32 = 1 << 0;
    pub const HAP: u32 = 1 << 1;
    pub const S3_INTEGRITY: u32 = 1 << 2;
    pub const OOS_OFF: u32 = 1 << 3;
    pub const XS_DOMAIN: u32 = 1 << 4;
    pub const IOMMU: u32 = 1 << 5;
    pub const NESTED_VIRT: u32 = 1 << 6;
    pub const VPMU: u32 = 1 << 7;
    /// Every flag Xen's `sanitise_domain_config` knows.
    pub const KNOWN: u32 =
        HVM | HAP | S3_INTEGRITY | OOS_OFF | XS_DOMAIN | IOMMU | NESTED_VIRT | VPMU;
    /// Required on Arm (`arch_sanitise_domain_config`'s `flags_required`).
    pub const REQUIRED: u32 = HVM | HAP;
    /// Allowed besides them on Arm (`flags_optional`): IOMMU and vPMU are
    /// then refused as unavailable (hv has neither), xs_domain is accepted.
    pub const OPTIONAL: u32 = IOMMU | VPMU | XS_DOMAIN;
}

/// `VGCF_online` (public/arch-arm.h): the vCPU is up once the domain runs.
pub(crate) const VGCF_ONLINE: u32 = 1;

/// `XEN_DOMCTL_GRANT_version_mask`.
pub(crate) const GRANT_VERSION_MASK: u32 = 0xf;
/// `XEN_DOMCTL_CONFIG_GIC_NATIVE` / `_V3`.
pub(crate) const GIC_NATIVE: u8 = 0;
#[allow(missing_docs)]
pub(crate) const GIC_V3: u8 = 2;

/// First reserved domid (`DOMID_FIRST_RESERVED`).
pub(crate) const DOMID_FIRST_RESERVED: u16 = 0x7ff0;

/// The result of a domctl: x0, and whether to write the struct back.
pub struct Answer {
    /// x0.
    pub ret: Result<u64, Errno>,
    /// Write the struct back to the caller.
    pub copy_back: bool,
}

impl Answer {
    /// Fail with `e` (nothing written back).
    #[must_use]
    pub fn err(e: Errno) -> Self {
        Self {
            ret: Err(e),
            copy_back: false,
        }
    }
    /// Success (x0 = 0), writing the struct back if `copy_back`.
    #[must_use]
    pub fn ok(copy_back: bool) -> Self {
        Self {
            ret: Ok(0),
            copy_back,
        }
    }
}

/// `domctl(struct xen_domctl *)` from the caller's registers: in Xen's
/// `do_domctl` order, copy the struct in (-EFAULT), check the interface
/// version (-EACCES), then the caller's right (-EPERM), then the command.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    let arg = GuestVa(a[0]);
    let caller = ctx.caller;
    let mut op = match ctx.read::<{ XenDomctl::SIZE }>(arg) {
        Ok(b) => XenDomctl::from_bytes(&b),
        Err(e) => {
            log::debug!("d{caller}: domctl: {arg}: {e:?}");
            return Reply::ret(Err(e));
        }
    };
    let (c, version, domain) = (op.cmd, op.interface_version, op.domain);
    let answer = if version != XEN_DOMCTL_INTERFACE_VERSION {
        log::debug!("d{caller}: domctl {c}: interface version {version:#x}");
        Answer::err(Errno::EACCES)
    } else if !ctx.privileged() {
        log::debug!("d{caller}: domctl: not privileged");
        Answer::err(Errno::EPERM)
    } else {
        match c {
            cmd::CREATEDOMAIN => domain::createdomain(ctx.world, &mut op),
            cmd::DESTROYDOMAIN => {
                let a = domain::destroydomain(ctx.world, ctx.arch, caller, domain);
                if a.ret.is_ok() {
                    // xenstored's @releaseDomain (Xen: domain_kill's send_global_virq).
                    let w = &mut *ctx.world;
                    super::virq::send_global_virq(
                        &mut w.domains,
                        &mut w.mem,
                        crate::xen::abi::virq::DOM_EXC,
                        &mut ctx.fx.upcalls,
                    );
                }
                a
            }
            cmd::PAUSEDOMAIN => domain::pause(ctx, domain),
            cmd::UNPAUSEDOMAIN => domain::unpause(ctx, domain),
            cmd::GETDOMAININFO => {
                let now = super::now_ns(ctx);
                domain::getdomaininfo(ctx.world, &mut op, now)
            }
            cmd::MAX_MEM => memory::max_mem(ctx.world, &op),
            cmd::SET_LLC_COLORS => domain::set_llc_colors(ctx.world, &op),
            cmd::MAX_VCPUS => vcpu::max_vcpus(ctx.world, &op),
            cmd::SETVCPUCONTEXT => vcpu::setvcpucontext(ctx, &op),
            cmd::SETVCPUAFFINITY => sched::setvcpuaffinity(ctx, &op),
            cmd::SETNODEAFFINITY => sched::setnodeaffinity(ctx, &op),
            cmd::SCHEDULER_OP => sched::scheduler_op(ctx.world, &mut op),
            cmd::SET_ADDRESS_SIZE => memory::set_address_size(ctx.world, &op),
            cmd::SET_PAGING_MEMPOOL_SIZE => memory::set_paging_mempool_size(ctx.world, &op),
            cmd::GET_PAGING_MEMPOOL_SIZE => memory::get_paging_mempool_size(ctx.world, &mut op),
            cmd::CACHEFLUSH => memory::cacheflush(ctx, &op),
            other => {
                log::debug!("d{caller}: domctl {other} on d{domain} not implemented: -ENOSYS");
                Answer::err(Errno::ENOSYS)
            }
        }
    };
    if answer.copy_back {
        if let Err(e) = ctx.write(arg, &op.to_bytes()) {
            return Reply::ret(Err(e));
        }
    }
    Reply::ret(answer.ret)
}

/// Run `f` on domain `id` if it is a domain the control domain built.
pub(crate) fn with_domu<M>(
    sh: &mut World<M>,
    id: DomId,
    f: impl FnOnce(&mut Domain) -> Answer,
) -> Answer {
    match sh.domains.iter_mut().find(|d| d.id == id && d.from_domctl) {
        Some(d) => f(d),
        None => Answer::err(Errno::ESRCH),
    }
}
