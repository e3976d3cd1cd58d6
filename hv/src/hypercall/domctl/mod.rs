//! `domctl` (36) for the control domain: what Xen's toolstack uses to build a
//! domU (`xl create`), after Xen's `xen/include/public/domctl.h`
//! (xen-project/xen c447b73; `XEN_DOMCTL_INTERFACE_VERSION` 0x17, arm64
//! layouts: guest handles are 8 bytes, 8-byte aligned) and `do_domctl`
//! (xen/common/domctl.c). Every guest handle is a VA of the caller.
//!
//! By subject: [`domain`] (`createdomain` 1, `destroydomain` 2,
//! `unpausedomain` 4, `getdomaininfo` 5), [`vcpu`] (`setvcpucontext` 12,
//! `max_vcpus` 15), [`memory`] (`max_mem` 11). Everything else answers
//! `-ENOSYS`; unprivileged callers get `-EPERM`. A new domctl: a
//! `cmd::` constant, one arm in [`call`], its handler in the subject's file.

pub mod domain;
pub mod memory;
pub mod vcpu;

use memops::TableMem;

use super::{Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::domain::{DomId, Domain};
use crate::world::World;
use crate::xen::Errno;

pub use domain::sanitise_createdomain;

/// `XEN_DOMCTL_INTERFACE_VERSION`.
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x17;
/// `sizeof(struct xen_domctl)`: header (16 bytes) and the 128-byte union.
pub const DOMCTL_SIZE: usize = 144;
/// Offset of `xen_domctl.u`.
pub(crate) const U: usize = 16;
/// `sizeof(struct vcpu_guest_context)` on arm64.
pub const VCPU_GUEST_CONTEXT_SIZE: usize = 352;

/// `XEN_DOMCTL_*` commands.
pub mod cmd {
    #![allow(missing_docs)]
    pub const CREATEDOMAIN: u32 = 1;
    pub const DESTROYDOMAIN: u32 = 2;
    pub const UNPAUSEDOMAIN: u32 = 4;
    pub const GETDOMAININFO: u32 = 5;
    pub const MAX_MEM: u32 = 11;
    pub const SETVCPUCONTEXT: u32 = 12;
    pub const MAX_VCPUS: u32 = 15;
    /// `XEN_SYSCTL_physinfo`.
    pub const SYSCTL_PHYSINFO: u32 = 3;
}

/// `XEN_DOMINF_*` flags of `getdomaininfo`.
pub mod dominf {
    #![allow(missing_docs)]
    pub const DYING: u32 = 1 << 0;
    pub const HVM_GUEST: u32 = 1 << 1;
    pub const SHUTDOWN: u32 = 1 << 2;
    pub const PAUSED: u32 = 1 << 3;
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

/// Offsets in `struct xen_domctl_createdomain` (interface 0x17, arm64).
pub(crate) mod cd {
    pub const FLAGS: usize = 20;
    pub const IOMMU_OPTS: usize = 24;
    pub const MAX_VCPUS: usize = 28;
    pub const GRANT_OPTS: usize = 44;
    pub const ALTP2M_OPTS: usize = 48;
    pub const VMTRACE_SIZE: usize = 52;
    /// `struct xen_arch_domainconfig`: gic_version u8, sve_vl u8,
    /// tee_type u16, nr_spis u32.
    pub const GIC_VERSION: usize = 60;
    pub const SVE_VL: usize = 61;
    pub const TEE_TYPE: usize = 62;
    pub const NR_SPIS: usize = 64;
}

/// `VGCF_online` (public/arch-arm.h): the vCPU is up once the domain runs.
pub(crate) const VGCF_ONLINE: u64 = 1;

/// `XEN_DOMCTL_GRANT_version_mask`.
pub(crate) const GRANT_VERSION_MASK: u32 = 0xf;
/// `XEN_DOMCTL_CONFIG_GIC_NATIVE` / `_V3`.
pub(crate) const GIC_NATIVE: u8 = 0;
#[allow(missing_docs)]
pub(crate) const GIC_V3: u8 = 2;

/// First reserved domid (`DOMID_FIRST_RESERVED`).
pub(crate) const DOMID_FIRST_RESERVED: u16 = 0x7ff0;

pub(crate) fn get<const N: usize>(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(o..o + N) {
        a[..N].copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

pub(crate) fn put(b: &mut [u8], o: usize, v: &[u8]) {
    if let Some(s) = b.get_mut(o..o + v.len()) {
        s.copy_from_slice(v);
    }
}

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
    let mut buf = [0u8; DOMCTL_SIZE];
    if let Err(e) = ctx.copy_in(arg, &mut buf) {
        log::debug!("d{caller}: domctl: {arg}: {e:?}");
        return Reply::ret(Err(e));
    }
    let c = get::<4>(&buf, 0) as u32;
    let version = get::<4>(&buf, 4) as u32;
    let domain = get::<2>(&buf, 8) as u16;
    let answer = if version != XEN_DOMCTL_INTERFACE_VERSION {
        log::debug!("d{caller}: domctl {c}: interface version {version:#x}");
        Answer::err(Errno::EACCES)
    } else if !ctx.privileged() {
        log::debug!("d{caller}: domctl: not privileged");
        Answer::err(Errno::EPERM)
    } else {
        match c {
            cmd::CREATEDOMAIN => domain::createdomain(ctx.world, &mut buf, domain),
            cmd::DESTROYDOMAIN => domain::destroydomain(ctx.world, ctx.arch, domain),
            cmd::UNPAUSEDOMAIN => domain::unpause(ctx, domain),
            cmd::GETDOMAININFO => domain::getdomaininfo(ctx.world, &mut buf, domain),
            cmd::MAX_MEM => memory::max_mem(ctx.world, &buf, domain),
            cmd::MAX_VCPUS => vcpu::max_vcpus(ctx.world, &buf, domain),
            cmd::SETVCPUCONTEXT => vcpu::setvcpucontext(ctx, &buf, domain),
            other => {
                log::debug!("d{caller}: domctl {other} not implemented");
                Answer::err(Errno::ENOSYS)
            }
        }
    };
    if answer.copy_back {
        if let Err(e) = ctx.write(arg, &buf) {
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
