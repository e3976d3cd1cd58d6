//! Xen's toolstack ABI as the control domain uses it: numbers, and encoders /
//! decoders of the structures, as little-endian byte images with the arm64
//! layout (every offset below is checked by a unit test).
//!
//! Sources (xen-project/xen, tag RELEASE-4.21.2; the 4.20 layouts of the same
//! structures are binary compatible, both use `XEN_DOMCTL_INTERFACE_VERSION`
//! 0x17):
//! - `xen/include/public/xen.h`: hypercall numbers, `DOMID_SELF`, `domid_t`.
//! - `xen/include/public/domctl.h`: `struct xen_domctl` and the sub-ops
//!   `createdomain` (1), `destroydomain` (2), `unpausedomain` (4),
//!   `getdomaininfo` (5), `max_mem` (11), `setvcpucontext` (12),
//!   `max_vcpus` (15).
//! - `xen/include/public/arch-arm.h`: `struct xen_arch_domainconfig`,
//!   `struct vcpu_guest_context` / `vcpu_guest_core_regs`, `PSR_*`,
//!   `SCTLR_GUEST_INIT`, the guest address map; guest handles are 8 bytes,
//!   8-byte aligned, `xen_pfn_t` / `xen_ulong_t` are `uint64_t`.
//! - `xen/include/public/memory.h`: `XENMEM_populate_physmap` (6) with
//!   `struct xen_memory_reservation`, `XENMEM_remove_from_physmap` (15),
//!   `XENMEM_add_to_physmap_batch` (23) with `XENMAPSPACE_gmfn_foreign` (4).
//! - `xen/include/public/sysctl.h`: `struct xen_sysctl`, `XEN_SYSCTL_physinfo` (3).
//! - `xen/include/public/sched.h`: `SCHEDOP_yield` (0).
//! - `xen/include/public/errno.h`: errno values.
//! - hv (`DESIGN.md`, `memops/src/xen.rs`): `XENMEM_remove_from_physmap_batch`
//!   (63) and `hv_op` (49) with `HVOP_get_counters` / `HVOP_reset_counters`.
//!
//! The structures themselves are hv's: [`xen_abi`] is `memops/src/xen_abi.rs`
//! included as is (typed, size and offsets asserted at compile time, Xen
//! 4.20's headers), so the payload and hv cannot disagree on a layout. The
//! payload cannot depend on the `memops` crate (it links `alloc`, and a
//! payload has no allocator: "no global memory allocator found"), but that
//! file needs nothing else. The encoders below fill those structs; the unit
//! tests check the bytes at Xen's offsets written out as numbers.

#[path = "../../../../memops/src/xen_abi.rs"]
pub mod xen_abi;

use xen_abi::{
    VcpuGuestContext, XenAddToPhysmapBatch, XenArchDomainconfig, XenDomctl, XenDomctlCreatedomain,
    XenDomctlGetdomaininfo, XenDomctlMaxMem, XenDomctlMaxVcpus, XenDomctlVcpucontext,
    XenMemoryReservation, XenRemoveFromPhysmap, XenRemoveFromPhysmapBatch, XenSysctl,
    XenSysctlPhysinfo,
};

/// `__HYPERVISOR_memory_op`.
pub const HYPERVISOR_MEMORY_OP: u64 = 12;
/// `__HYPERVISOR_sched_op`.
pub const HYPERVISOR_SCHED_OP: u64 = 29;
/// `__HYPERVISOR_sysctl`.
pub const HYPERVISOR_SYSCTL: u64 = 35;
/// `__HYPERVISOR_domctl`.
pub const HYPERVISOR_DOMCTL: u64 = 36;
/// hv's `hv_op` (`__HYPERVISOR_arch_1`).
pub const HYPERVISOR_HV_OP: u64 = 49;

/// `SCHEDOP_yield`.
pub const SCHEDOP_YIELD: u64 = 0;

/// `XENMEM_populate_physmap`.
pub const XENMEM_POPULATE_PHYSMAP: u64 = 6;
/// `XENMEM_remove_from_physmap`.
pub const XENMEM_REMOVE_FROM_PHYSMAP: u64 = 15;
/// `XENMEM_add_to_physmap_batch`.
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u64 = 23;
/// hv's `XENMEM_remove_from_physmap_batch`.
pub const XENMEM_REMOVE_FROM_PHYSMAP_BATCH: u64 = 63;
/// `XENMAPSPACE_gmfn_foreign`.
pub const XENMAPSPACE_GMFN_FOREIGN: u16 = 4;

/// `DOMID_SELF`.
pub const DOMID_SELF: u16 = 0x7FF0;

/// `XEN_DOMCTL_INTERFACE_VERSION` of Xen 4.20 and 4.21.
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = xen_abi::XEN_DOMCTL_INTERFACE_VERSION;
/// `XEN_SYSCTL_INTERFACE_VERSION` of Xen 4.17 to 4.20 (what hv implements).
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = xen_abi::XEN_SYSCTL_INTERFACE_VERSION;

/// `XEN_DOMCTL_createdomain`.
pub const XEN_DOMCTL_CREATEDOMAIN: u32 = xen_abi::domctl_cmd::CREATEDOMAIN;
/// `XEN_DOMCTL_destroydomain`.
pub const XEN_DOMCTL_DESTROYDOMAIN: u32 = xen_abi::domctl_cmd::DESTROYDOMAIN;
/// `XEN_DOMCTL_unpausedomain`.
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = xen_abi::domctl_cmd::UNPAUSEDOMAIN;
/// `XEN_DOMCTL_getdomaininfo`.
pub const XEN_DOMCTL_GETDOMAININFO: u32 = xen_abi::domctl_cmd::GETDOMAININFO;
/// `XEN_DOMCTL_max_mem`.
pub const XEN_DOMCTL_MAX_MEM: u32 = xen_abi::domctl_cmd::MAX_MEM;
/// `XEN_DOMCTL_setvcpucontext`.
pub const XEN_DOMCTL_SETVCPUCONTEXT: u32 = xen_abi::domctl_cmd::SETVCPUCONTEXT;
/// `XEN_DOMCTL_max_vcpus`.
pub const XEN_DOMCTL_MAX_VCPUS: u32 = xen_abi::domctl_cmd::MAX_VCPUS;

/// `XEN_SYSCTL_physinfo`.
pub const XEN_SYSCTL_PHYSINFO: u32 = xen_abi::XEN_SYSCTL_PHYSINFO;

/// `XEN_DOMCTL_CDF_hvm` (required on Arm).
pub const XEN_DOMCTL_CDF_HVM: u32 = 1 << 0;
/// `XEN_DOMCTL_CDF_hap` (required on Arm).
pub const XEN_DOMCTL_CDF_HAP: u32 = 1 << 1;
/// `XEN_DOMCTL_CONFIG_GIC_V3`.
pub const XEN_DOMCTL_CONFIG_GIC_V3: u8 = 2;
/// `XEN_DOMCTL_CONFIG_TEE_NONE`.
pub const XEN_DOMCTL_CONFIG_TEE_NONE: u16 = 0;

/// `XEN_DOMINF_dying`.
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
/// `XEN_DOMINF_shutdown`.
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
/// `XEN_DOMINF_shutdownshift`: the guest's `SHUTDOWN_*` code, 8 bits.
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;

/// `VGCF_online`.
pub const VGCF_ONLINE: u32 = 1;
/// `PSR_DBG_MASK | PSR_ABT_MASK | PSR_FIQ_MASK | PSR_IRQ_MASK | PSR_MODE_EL1h`:
/// EL1h with D, A, I and F masked (Xen 4.22's `PSR_GUEST64_INIT`; 4.21 leaves D
/// unmasked).
pub const PSR_GUEST64_INIT: u64 = (1 << 9) | (1 << 8) | (1 << 6) | (1 << 7) | 0x5;
/// `SCTLR_GUEST_INIT`: MMU and caches off, the reset value Xen gives a vCPU.
pub const SCTLR_GUEST_INIT: u64 = 0x00c5_0078;

/// hv_op sub-op: copy `struct hv_counters` to the handle in x1.
pub const HVOP_GET_COUNTERS: u64 = 1;
/// hv_op sub-op: zero hv's counters.
pub const HVOP_RESET_COUNTERS: u64 = 2;
/// hv_op sub-op: copy `struct hv_resources` (8 u64) to the handle in x1.
pub const HVOP_GET_RESOURCES: u64 = 3;
/// `sizeof(struct hv_resources)`.
pub const HV_RESOURCES_SIZE: usize = xen_abi::HvResources::SIZE;

/// `__HYPERVISOR_event_channel_op`.
pub const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;
/// `EVTCHNOP_bind_interdomain`: `{ u16 remote_dom; u32 remote_port; OUT u32 local_port }`.
pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
/// `EVTCHNOP_close`: `{ u32 port }`.
pub const EVTCHNOP_CLOSE: u64 = 3;
/// `EVTCHNOP_status`: `{ u16 dom; u32 port; OUT u32 status; u32 vcpu; union }`.
pub const EVTCHNOP_STATUS: u64 = 5;
/// `EVTCHNOP_alloc_unbound`: `{ u16 dom; u16 remote_dom; OUT u32 port }`.
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
/// `EVTCHNSTAT_unbound`: a port waiting for its remote domain to bind.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// `EVTCHNSTAT_interdomain`.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;

/// `struct hv_resources` (hv's `HVOP_get_resources`, DESIGN.md "hv_op").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct HvResources {
    /// Free frames of the guest page pool.
    pub pool_free: u64,
    /// Frames of the guest page pool.
    pub pool_total: u64,
    /// Free frames of hv's own frame allocator (stage-2 tables).
    pub hv_frames_free: u64,
    /// VMIDs in use.
    pub vmids_in_use: u64,
    /// Domains hv holds.
    pub domains: u64,
    /// Event channel ports in use over all domains.
    pub evtchns_in_use: u64,
    /// Free bytes of hv's heap.
    pub heap_free: u64,
    /// Pool frames owned by some domain.
    pub pool_used: u64,
}

impl HvResources {
    /// Decode the 64 bytes `HVOP_get_resources` wrote.
    #[must_use]
    pub fn decode(b: &Buf<HV_RESOURCES_SIZE>) -> Self {
        let r = xen_abi::HvResources::from_bytes(&b.0);
        Self {
            pool_free: r.pool_free,
            pool_total: r.pool_total,
            hv_frames_free: r.hv_frames_free,
            vmids_in_use: r.vmids_in_use,
            domains: r.domains,
            evtchns_in_use: r.evtchns_in_use,
            heap_free: r.heap_free,
            pool_used: r.pool_used,
        }
    }

    /// The fields that must come back after create/destroy rounds, by name
    /// (the pool's total never changes and `pool_used` mirrors `pool_free`).
    #[must_use]
    pub fn balance(&self) -> [(&'static str, u64); 6] {
        [
            ("pool_free", self.pool_free),
            ("hv_frames_free", self.hv_frames_free),
            ("vmids_in_use", self.vmids_in_use),
            ("domains", self.domains),
            ("evtchns_in_use", self.evtchns_in_use),
            ("heap_free", self.heap_free),
        ]
    }
}

/// Xen's errno values (`public/errno.h`); hypercalls return their negation.
pub mod errno {
    #![allow(missing_docs)]
    pub const EPERM: i64 = 1;
    pub const ENOENT: i64 = 2;
    pub const ESRCH: i64 = 3;
    pub const EAGAIN: i64 = 11;
    pub const ENOMEM: i64 = 12;
    pub const EFAULT: i64 = 14;
    pub const EBUSY: i64 = 16;
    pub const EINVAL: i64 = 22;
    pub const ENOSYS: i64 = 38;
}

/// Guest address map (`public/arch-arm.h`).
pub mod guest {
    #![allow(missing_docs)]
    pub const RAM0_BASE: u64 = 0x4000_0000;
    pub const RAM0_SIZE: u64 = 0xc000_0000;
    pub const GICV3_GICD_BASE: u64 = 0x0300_1000;
    pub const GICV3_GICD_SIZE: u64 = 0x0001_0000;
    pub const GICV3_GICR0_BASE: u64 = 0x0302_0000;
    pub const GICV3_RDIST_STRIDE: u64 = 0x0002_0000;
    pub const GNTTAB_BASE: u64 = 0x3800_0000;
    pub const GNTTAB_SIZE: u64 = 0x0100_0000;
    pub const TIMER_VIRT_PPI: u32 = 27;
    pub const TIMER_PHYS_S_PPI: u32 = 29;
    pub const TIMER_PHYS_NS_PPI: u32 = 30;
    pub const EVTCHN_PPI: u32 = 31;
}

#[cfg(test)]
fn put16(b: &mut [u8], o: usize, v: u16) {
    if let Some(s) = b.get_mut(o..o + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
#[cfg(test)]
fn put32(b: &mut [u8], o: usize, v: u32) {
    if let Some(s) = b.get_mut(o..o + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
#[cfg(test)]
fn put64(b: &mut [u8], o: usize, v: u64) {
    if let Some(s) = b.get_mut(o..o + 8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
#[cfg(test)]
fn get16(b: &[u8], o: usize) -> u16 {
    let mut a = [0; 2];
    if let Some(s) = b.get(o..o + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}
#[cfg(test)]
fn get32(b: &[u8], o: usize) -> u32 {
    let mut a = [0; 4];
    if let Some(s) = b.get(o..o + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}
#[cfg(test)]
fn get64(b: &[u8], o: usize) -> u64 {
    let mut a = [0; 8];
    if let Some(s) = b.get(o..o + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// An 8-byte aligned byte image of a structure handed to hv by address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C, align(8))]
pub struct Buf<const N: usize>(pub [u8; N]);

impl<const N: usize> Buf<N> {
    /// All zero.
    #[must_use]
    pub const fn zeroed() -> Self {
        Self([0; N])
    }
}

/// `sizeof(struct xen_domctl)`: cmd, interface_version, domain, `_pad[3]`,
/// then the 128-byte union at offset 16.
pub const DOMCTL_SIZE: usize = XenDomctl::SIZE;
/// Offset of `xen_domctl.u`.
pub const DOMCTL_U: usize = core::mem::offset_of!(XenDomctl, u);

/// A `struct xen_domctl` image.
pub type Domctl = Buf<DOMCTL_SIZE>;

/// Domain creation parameters (`struct xen_domctl_createdomain`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CreateDomain {
    /// `flags` (`XEN_DOMCTL_CDF_*`).
    pub flags: u32,
    /// `max_vcpus`.
    pub max_vcpus: u32,
    /// `max_evtchn_port`.
    pub max_evtchn_port: u32,
    /// `max_grant_frames` (< 0: hypervisor default).
    pub max_grant_frames: i32,
    /// `max_maptrack_frames` (< 0: hypervisor default).
    pub max_maptrack_frames: i32,
    /// `grant_opts` (`XEN_DOMCTL_GRANT_version(v)` in bits 3:0).
    pub grant_opts: u32,
    /// `arch.gic_version`.
    pub gic_version: u8,
    /// `arch.tee_type`.
    pub tee_type: u16,
    /// `arch.nr_spis`.
    pub nr_spis: u32,
}

impl CreateDomain {
    /// What `xl create` asks for a 1-vCPU Arm domU without devices.
    #[must_use]
    pub const fn xl_default(max_vcpus: u32) -> Self {
        Self {
            flags: XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP,
            max_vcpus,
            max_evtchn_port: 1023,
            max_grant_frames: -1,
            max_maptrack_frames: -1,
            grant_opts: 1,
            gic_version: XEN_DOMCTL_CONFIG_GIC_V3,
            tee_type: XEN_DOMCTL_CONFIG_TEE_NONE,
            nr_spis: 0,
        }
    }
}

/// Offsets inside `xen_domctl.u.createdomain` (from the shared struct).
pub mod createdomain_off {
    #![allow(missing_docs)]
    use super::xen_abi::XenDomctlCreatedomain as C;
    use core::mem::offset_of;
    pub const SSIDREF: usize = offset_of!(C, ssidref);
    pub const HANDLE: usize = offset_of!(C, handle);
    pub const FLAGS: usize = offset_of!(C, flags);
    pub const IOMMU_OPTS: usize = offset_of!(C, iommu_opts);
    pub const MAX_VCPUS: usize = offset_of!(C, max_vcpus);
    pub const MAX_EVTCHN_PORT: usize = offset_of!(C, max_evtchn_port);
    pub const MAX_GRANT_FRAMES: usize = offset_of!(C, max_grant_frames);
    pub const MAX_MAPTRACK_FRAMES: usize = offset_of!(C, max_maptrack_frames);
    pub const GRANT_OPTS: usize = offset_of!(C, grant_opts);
    pub const ALTP2M_OPTS: usize = offset_of!(C, altp2m_opts);
    pub const VMTRACE_SIZE: usize = offset_of!(C, vmtrace_size);
    pub const CPUPOOL_ID: usize = offset_of!(C, cpupool_id);
    /// `struct xen_arch_domainconfig`: gic_version u8 +0, sve_vl u8 +1,
    /// tee_type u16 +2, nr_spis u32 +4, clock_frequency u32 +8 (OUT); Xen
    /// 4.21 adds arm_sci_type u8 +12 (left zero).
    pub const ARCH: usize = offset_of!(C, arch);
    pub const SIZE: usize = C::SIZE;
}

/// A domctl header for `cmd` on `domain`.
#[must_use]
pub fn domctl(cmd: u32, domain: u16) -> Domctl {
    Buf(XenDomctl::new(cmd, domain).to_bytes())
}

/// A domctl carrying union member `m`.
fn domctl_with<T: xen_abi::Le>(cmd: u32, domain: u16, m: &T) -> Domctl {
    let mut d = XenDomctl::new(cmd, domain);
    d.set_member(m);
    Buf(d.to_bytes())
}

/// `XEN_DOMCTL_createdomain` (domain 0 asks hv to pick the domid).
#[must_use]
pub fn domctl_createdomain(c: &CreateDomain) -> Domctl {
    let m = XenDomctlCreatedomain {
        flags: c.flags,
        max_vcpus: c.max_vcpus,
        max_evtchn_port: c.max_evtchn_port,
        max_grant_frames: c.max_grant_frames,
        max_maptrack_frames: c.max_maptrack_frames,
        grant_opts: c.grant_opts,
        arch: XenArchDomainconfig {
            gic_version: c.gic_version,
            tee_type: c.tee_type,
            nr_spis: c.nr_spis,
            ..XenArchDomainconfig::default()
        },
        ..XenDomctlCreatedomain::default()
    };
    domctl_with(XEN_DOMCTL_CREATEDOMAIN, 0, &m)
}

/// `xen_domctl.domain` (IN/OUT: createdomain returns the new domid here).
#[must_use]
pub fn domctl_domain(d: &Domctl) -> u16 {
    XenDomctl::from_bytes(&d.0).domain
}

/// `XEN_DOMCTL_max_vcpus`: `u.max_vcpus.max` (u32 at 0).
#[must_use]
pub fn domctl_max_vcpus(domain: u16, max: u32) -> Domctl {
    domctl_with(XEN_DOMCTL_MAX_VCPUS, domain, &XenDomctlMaxVcpus { max })
}

/// `XEN_DOMCTL_max_mem`: `u.max_mem.max_memkb` (u64 at 0).
#[must_use]
pub fn domctl_max_mem(domain: u16, max_memkb: u64) -> Domctl {
    domctl_with(XEN_DOMCTL_MAX_MEM, domain, &XenDomctlMaxMem { max_memkb })
}

/// `XEN_DOMCTL_setvcpucontext`: `u.vcpucontext` = { u32 vcpu at 0,
/// `XEN_GUEST_HANDLE_64(vcpu_guest_context_t) ctxt` at 8 }.
#[must_use]
pub fn domctl_setvcpucontext(domain: u16, vcpu: u32, ctxt: u64) -> Domctl {
    domctl_with(
        XEN_DOMCTL_SETVCPUCONTEXT,
        domain,
        &XenDomctlVcpucontext { vcpu, ctxt },
    )
}

/// Offsets inside `xen_domctl.u.getdomaininfo` (from the shared struct).
pub mod getdomaininfo_off {
    #![allow(missing_docs)]
    use super::xen_abi::XenDomctlGetdomaininfo as G;
    use core::mem::offset_of;
    pub const DOMAIN: usize = offset_of!(G, domain);
    pub const FLAGS: usize = offset_of!(G, flags);
    pub const TOT_PAGES: usize = offset_of!(G, tot_pages);
    pub const MAX_PAGES: usize = offset_of!(G, max_pages);
    pub const NR_ONLINE_VCPUS: usize = offset_of!(G, nr_online_vcpus);
    pub const SIZE: usize = G::SIZE;
}

/// The fields of `struct xen_domctl_getdomaininfo` the builder uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DomainInfo {
    /// `domain`.
    pub domain: u16,
    /// `flags` (`XEN_DOMINF_*`).
    pub flags: u32,
    /// `tot_pages`.
    pub tot_pages: u64,
    /// `max_pages`.
    pub max_pages: u64,
    /// `nr_online_vcpus`.
    pub nr_online_vcpus: u32,
}

impl DomainInfo {
    /// Decode `xen_domctl.u.getdomaininfo` from an answered domctl.
    #[must_use]
    pub fn decode(d: &Domctl) -> Self {
        let i: XenDomctlGetdomaininfo = XenDomctl::from_bytes(&d.0).member();
        Self {
            domain: i.domain,
            flags: i.flags,
            tot_pages: i.tot_pages,
            max_pages: i.max_pages,
            nr_online_vcpus: i.nr_online_vcpus,
        }
    }

    /// The guest's `SHUTDOWN_*` code, once it has shut down.
    #[must_use]
    pub fn shutdown_code(&self) -> Option<u8> {
        if self.flags & XEN_DOMINF_SHUTDOWN != 0 {
            Some((self.flags >> XEN_DOMINF_SHUTDOWNSHIFT) as u8)
        } else {
            None
        }
    }
}

/// `sizeof(struct vcpu_guest_context)` on arm64.
pub const VCPU_GUEST_CONTEXT_SIZE: usize = VcpuGuestContext::SIZE;

/// Offsets inside `struct vcpu_guest_context` (arm64; from the shared struct):
/// `flags` u32 at 0, `user_regs` (`struct vcpu_guest_core_regs`, 312 bytes)
/// at 8, then `sctlr`, `ttbcr`, `ttbr0`, `ttbr1`.
pub mod vcpu_ctx_off {
    #![allow(missing_docs)]
    use super::xen_abi::{VcpuGuestContext as C, VcpuGuestCoreRegs as R};
    use core::mem::offset_of;
    pub const FLAGS: usize = offset_of!(C, flags);
    pub const USER_REGS: usize = offset_of!(C, user_regs);
    /// x0..x30: `USER_REGS + 8 * n`.
    pub const X0: usize = USER_REGS + offset_of!(R, x);
    pub const PC64: usize = USER_REGS + offset_of!(R, pc64);
    pub const CPSR: usize = USER_REGS + offset_of!(R, cpsr);
    pub const SPSR_EL1: usize = USER_REGS + offset_of!(R, spsr_el1);
    pub const SP_EL0: usize = USER_REGS + offset_of!(R, sp_el0);
    pub const SP_EL1: usize = USER_REGS + offset_of!(R, sp_el1);
    pub const ELR_EL1: usize = USER_REGS + offset_of!(R, elr_el1);
    pub const SCTLR: usize = offset_of!(C, sctlr);
    pub const TTBCR: usize = offset_of!(C, ttbcr);
    pub const TTBR0: usize = offset_of!(C, ttbr0);
    pub const TTBR1: usize = offset_of!(C, ttbr1);
}

/// The boot vCPU context the toolstack gives an arm64 kernel (Xen's
/// `tools/libs/guest/xg_dom_arm.c`): PC at the entry, x0 = DTB address,
/// EL1h with DAIF masked, MMU off, online.
#[must_use]
pub fn vcpu_boot_context(pc: u64, dtb: u64) -> Buf<VCPU_GUEST_CONTEXT_SIZE> {
    let mut c = VcpuGuestContext {
        flags: VGCF_ONLINE,
        sctlr: SCTLR_GUEST_INIT,
        ..VcpuGuestContext::default()
    };
    c.user_regs.x[0] = dtb;
    c.user_regs.pc64 = pc;
    c.user_regs.cpsr = PSR_GUEST64_INIT;
    Buf(c.to_bytes())
}

/// `sizeof(struct xen_memory_reservation)` on arm64.
pub const MEMORY_RESERVATION_SIZE: usize = XenMemoryReservation::SIZE;

/// `struct xen_memory_reservation`: extent_start handle at 0, nr_extents
/// at 8, extent_order at 16, mem_flags at 20, domid at 24.
#[must_use]
pub fn memory_reservation(
    extent_start: u64,
    nr_extents: u64,
    extent_order: u32,
    domid: u16,
) -> Buf<MEMORY_RESERVATION_SIZE> {
    Buf(XenMemoryReservation {
        extent_start,
        nr_extents,
        extent_order,
        domid,
        ..XenMemoryReservation::default()
    }
    .to_bytes())
}

/// `sizeof(struct xen_add_to_physmap_batch)` on arm64.
pub const ADD_TO_PHYSMAP_BATCH_SIZE: usize = XenAddToPhysmapBatch::SIZE;

/// `struct xen_add_to_physmap_batch`: domid at 0, space at 2, size at 4,
/// `u.foreign_domid` at 6, idxs at 8, gpfns at 16, errs at 24.
#[must_use]
pub fn add_to_physmap_batch(
    domid: u16,
    space: u16,
    size: u16,
    foreign_domid: u16,
    idxs: u64,
    gpfns: u64,
    errs: u64,
) -> Buf<ADD_TO_PHYSMAP_BATCH_SIZE> {
    Buf(XenAddToPhysmapBatch {
        domid,
        space,
        size,
        foreign_domid,
        idxs,
        gpfns,
        errs,
    }
    .to_bytes())
}

/// `sizeof(struct xen_remove_from_physmap)` on arm64.
pub const REMOVE_FROM_PHYSMAP_SIZE: usize = XenRemoveFromPhysmap::SIZE;

/// `struct xen_remove_from_physmap`: domid at 0, gpfn at 8.
#[must_use]
pub fn remove_from_physmap(domid: u16, gpfn: u64) -> Buf<REMOVE_FROM_PHYSMAP_SIZE> {
    Buf(XenRemoveFromPhysmap { domid, gpfn }.to_bytes())
}

/// `sizeof(struct xen_remove_from_physmap_batch)` (hv).
pub const REMOVE_FROM_PHYSMAP_BATCH_SIZE: usize = XenRemoveFromPhysmapBatch::SIZE;

/// hv's `struct xen_remove_from_physmap_batch`: domid at 0, res0 at 2
/// (zero), size (u32) at 4, gpfns at 8, errs at 16.
#[must_use]
pub fn remove_from_physmap_batch(
    domid: u16,
    size: u32,
    gpfns: u64,
    errs: u64,
) -> Buf<REMOVE_FROM_PHYSMAP_BATCH_SIZE> {
    Buf(XenRemoveFromPhysmapBatch {
        domid,
        res0: 0,
        size,
        gpfns,
        errs,
    }
    .to_bytes())
}

/// `sizeof(struct xen_sysctl)`: cmd, interface_version, then the 128-byte
/// union at offset 8.
pub const SYSCTL_SIZE: usize = XenSysctl::SIZE;
/// Offset of `xen_sysctl.u`.
pub const SYSCTL_U: usize = core::mem::offset_of!(XenSysctl, u);

/// `XEN_SYSCTL_physinfo` request.
#[must_use]
pub fn sysctl_physinfo() -> Buf<SYSCTL_SIZE> {
    Buf(XenSysctl {
        cmd: XEN_SYSCTL_PHYSINFO,
        interface_version: XEN_SYSCTL_INTERFACE_VERSION,
        ..XenSysctl::default()
    }
    .to_bytes())
}

/// The page counts of `struct xen_sysctl_physinfo` (ten u32, then
/// total_pages at 40, free_pages at 48, scrub_pages at 56, outstanding at 64).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PhysInfo {
    /// `total_pages`.
    pub total_pages: u64,
    /// `free_pages`.
    pub free_pages: u64,
    /// `scrub_pages`.
    pub scrub_pages: u64,
}

impl PhysInfo {
    /// Decode an answered `XEN_SYSCTL_physinfo`.
    #[must_use]
    pub fn decode(b: &Buf<SYSCTL_SIZE>) -> Self {
        let p: XenSysctlPhysinfo = XenSysctl::from_bytes(&b.0).member();
        Self {
            total_pages: p.total_pages,
            free_pages: p.free_pages,
            scrub_pages: p.scrub_pages,
        }
    }
}

/// The TLB operation kinds of `struct hv_counters.tlbi[8]`, in
/// `pv_tlb::TlbOpKind::ALL` order (DESIGN.md).
pub const TLBI_KINDS: [&str; 8] = [
    "IPAS2E1IS",
    "RIPAS2E1IS",
    "VMALLE1IS",
    "VMALLE1",
    "VMALLS12E1IS",
    "VMALLS12E1",
    "ALLE1IS",
    "IC_IALLU",
];

/// `sizeof(struct hv_counters)`: 12 u64.
pub const HV_COUNTERS_SIZE: usize = xen_abi::HvCounters::SIZE;

/// hv's `struct hv_counters` (DESIGN.md, "hv_op").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct HvCounters {
    /// TLB operations executed, by [`TLBI_KINDS`].
    pub tlbi: [u64; 8],
    /// Stage-2 operations recorded.
    pub p2m_ops: u64,
    /// Flush plans executed.
    pub plans: u64,
    /// Guest exits.
    pub guest_exits: u64,
    /// Hypercalls.
    pub hypercalls: u64,
}

impl HvCounters {
    /// Decode the 96 bytes `HVOP_get_counters` wrote.
    #[must_use]
    pub fn decode(b: &Buf<HV_COUNTERS_SIZE>) -> Self {
        let c = xen_abi::HvCounters::from_bytes(&b.0);
        Self {
            tlbi: c.tlbi,
            p2m_ops: c.p2m_ops,
            plans: c.plans,
            guest_exits: c.guest_exits,
            hypercalls: c.hypercalls,
        }
    }

    /// TLB invalidations executed (every kind but `IC_IALLU`).
    #[must_use]
    pub fn tlbi_total(&self) -> u64 {
        self.tlbi[..7].iter().sum()
    }

    /// Full stage-2 (VMID-wide) and whole-TLB flushes: VMALLS12E1*, ALLE1IS.
    #[must_use]
    pub fn full_flushes(&self) -> u64 {
        self.tlbi[4] + self.tlbi[5] + self.tlbi[6]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domctl_header_and_createdomain_layout() {
        let d = domctl_createdomain(&CreateDomain::xl_default(1));
        assert_eq!(get32(&d.0, 0), 1);
        assert_eq!(get32(&d.0, 4), 0x17);
        assert_eq!(get16(&d.0, 8), 0);
        let u = &d.0[16..];
        assert_eq!(get32(u, 20), XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP);
        assert_eq!(get32(u, 28), 1);
        assert_eq!(get32(u, 32), 1023);
        assert_eq!(get32(u, 36), u32::MAX);
        assert_eq!(get32(u, 44), 1);
        assert_eq!(u[60], 2, "gic_version = GIC_V3");
        assert_eq!(get16(u, 62), 0, "tee_type");
        assert_eq!(get32(u, 64), 0, "nr_spis");
        // The createdomain struct and the union fit the 144-byte domctl.
        const { assert!(DOMCTL_U + createdomain_off::SIZE <= DOMCTL_SIZE) };
        const { assert!(DOMCTL_U + getdomaininfo_off::SIZE <= DOMCTL_SIZE) };
        assert_eq!(core::mem::align_of::<Domctl>(), 8);
    }

    #[test]
    fn hv_resources_decode() {
        let mut b = Buf::<HV_RESOURCES_SIZE>::zeroed();
        for i in 0..8 {
            b.0[8 * i..8 * i + 8].copy_from_slice(&(100 + i as u64).to_le_bytes());
        }
        let r = HvResources::decode(&b);
        assert_eq!(
            (r.pool_free, r.pool_total, r.hv_frames_free, r.vmids_in_use),
            (100, 101, 102, 103)
        );
        assert_eq!(
            (r.domains, r.evtchns_in_use, r.heap_free, r.pool_used),
            (104, 105, 106, 107)
        );
        assert_eq!(r.balance()[5], ("heap_free", 106));
    }

    #[test]
    fn small_domctls() {
        let d = domctl_max_mem(7, 16384);
        assert_eq!((get32(&d.0, 0), get16(&d.0, 8)), (11, 7));
        assert_eq!(get64(&d.0, 16), 16384);
        let d = domctl_max_vcpus(7, 1);
        assert_eq!((get32(&d.0, 0), get32(&d.0, 16)), (15, 1));
        let d = domctl_setvcpucontext(7, 0, 0x4012_3000);
        assert_eq!(get32(&d.0, 0), 12);
        assert_eq!(get32(&d.0, 16), 0);
        assert_eq!(get64(&d.0, 24), 0x4012_3000);
        assert_eq!(get32(&domctl(XEN_DOMCTL_UNPAUSEDOMAIN, 3).0, 0), 4);
        assert_eq!(get32(&domctl(XEN_DOMCTL_DESTROYDOMAIN, 3).0, 0), 2);
    }

    #[test]
    fn getdomaininfo_decodes_shutdown_code() {
        let mut d = domctl(XEN_DOMCTL_GETDOMAININFO, 5);
        put16(&mut d.0, 16, 5);
        put32(&mut d.0, 16 + 4, XEN_DOMINF_SHUTDOWN | (3 << 16));
        put64(&mut d.0, 16 + 8, 4096);
        put64(&mut d.0, 16 + 16, 4352);
        put32(&mut d.0, 16 + 64, 1);
        let i = DomainInfo::decode(&d);
        assert_eq!(i.domain, 5);
        assert_eq!(i.tot_pages, 4096);
        assert_eq!(i.max_pages, 4352);
        assert_eq!(i.nr_online_vcpus, 1);
        assert_eq!(i.shutdown_code(), Some(3));
        put32(&mut d.0, 16 + 4, 0);
        assert_eq!(DomainInfo::decode(&d).shutdown_code(), None);
    }

    #[test]
    fn vcpu_context_layout() {
        let c = vcpu_boot_context(0x4008_0000, 0x47e0_0000);
        assert_eq!(get32(&c.0, 0), VGCF_ONLINE);
        assert_eq!(get64(&c.0, 8), 0x47e0_0000, "x0 first in user_regs");
        assert_eq!(get64(&c.0, 8 + 31 * 8), 0x4008_0000, "pc64 after x30");
        assert_eq!(get64(&c.0, 264), 0x3c5, "cpsr: EL1h, DAIF masked");
        assert_eq!(get64(&c.0, 320), 0x00c5_0078, "sctlr: MMU off");
        assert_eq!(vcpu_ctx_off::TTBR1 + 8, VCPU_GUEST_CONTEXT_SIZE);
        // Everything else is zero (SP, ELR, TTBRs).
        let nonzero = c.0.iter().filter(|b| **b != 0).count();
        assert!(nonzero <= 4 + 4 + 4 + 2 + 4, "{nonzero}");
    }

    #[test]
    fn memory_structs_match_memops_layout() {
        let r = memory_reservation(0x4100_0000, 8, 9, 3);
        assert_eq!(get64(&r.0, 0), 0x4100_0000);
        assert_eq!(get64(&r.0, 8), 8);
        assert_eq!(get32(&r.0, 16), 9);
        assert_eq!(get16(&r.0, 24), 3);
        let a = add_to_physmap_batch(DOMID_SELF, 4, 100, 3, 1, 2, 3);
        assert_eq!(
            (
                get16(&a.0, 0),
                get16(&a.0, 2),
                get16(&a.0, 4),
                get16(&a.0, 6)
            ),
            (0x7ff0, 4, 100, 3)
        );
        assert_eq!(
            (get64(&a.0, 8), get64(&a.0, 16), get64(&a.0, 24)),
            (1, 2, 3)
        );
        let x = remove_from_physmap(DOMID_SELF, 0x10_0000);
        assert_eq!((get16(&x.0, 0), get64(&x.0, 8)), (0x7ff0, 0x10_0000));
        let b = remove_from_physmap_batch(DOMID_SELF, 1_000_000, 0x10, 0x20);
        assert_eq!(get16(&b.0, 2), 0, "res0");
        assert_eq!(get32(&b.0, 4), 1_000_000);
        assert_eq!((get64(&b.0, 8), get64(&b.0, 16)), (0x10, 0x20));
    }

    #[test]
    fn physinfo_and_counters_decode() {
        let mut s = sysctl_physinfo();
        assert_eq!((get32(&s.0, 0), get32(&s.0, 4)), (3, 0x15));
        put64(&mut s.0, 8 + 40, 100);
        put64(&mut s.0, 8 + 48, 60);
        let p = PhysInfo::decode(&s);
        assert_eq!((p.total_pages, p.free_pages), (100, 60));

        let mut b = Buf::<HV_COUNTERS_SIZE>::zeroed();
        for i in 0..12 {
            put64(&mut b.0, 8 * i, i as u64 + 1);
        }
        let c = HvCounters::decode(&b);
        assert_eq!(c.tlbi, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            (c.p2m_ops, c.plans, c.guest_exits, c.hypercalls),
            (9, 10, 11, 12)
        );
        assert_eq!(c.tlbi_total(), 28, "IC_IALLU is not a TLBI");
        assert_eq!(c.full_flushes(), 5 + 6 + 7);
    }

    /// The encoders as they were before they used the shared structs (raw
    /// offsets from the headers, written out): every image is the same,
    /// byte for byte, and every decoder reads the same fields.
    mod before {
        use super::super::*;
        pub fn domctl(cmd: u32, domain: u16) -> Domctl {
            let mut d = Domctl::zeroed();
            put32(&mut d.0, 0, cmd);
            put32(&mut d.0, 4, 0x17);
            put16(&mut d.0, 8, domain);
            d
        }
        pub fn createdomain(c: &CreateDomain) -> Domctl {
            let mut d = domctl(1, 0);
            let u = &mut d.0[16..];
            put32(u, 20, c.flags);
            put32(u, 28, c.max_vcpus);
            put32(u, 32, c.max_evtchn_port);
            put32(u, 36, c.max_grant_frames as u32);
            put32(u, 40, c.max_maptrack_frames as u32);
            put32(u, 44, c.grant_opts);
            u[60] = c.gic_version;
            put16(u, 62, c.tee_type);
            put32(u, 64, c.nr_spis);
            d
        }
        pub fn boot_context(pc: u64, dtb: u64) -> [u8; 352] {
            let mut c = [0u8; 352];
            put32(&mut c, 0, VGCF_ONLINE);
            put64(&mut c, 8, dtb);
            put64(&mut c, 8 + 248, pc);
            put64(&mut c, 8 + 256, PSR_GUEST64_INIT);
            put64(&mut c, 320, SCTLR_GUEST_INIT);
            c
        }
    }

    #[test]
    fn shared_struct_encoders_match_the_raw_offsets_byte_for_byte() {
        for (i, v) in [0u64, 1, 0x7ff0, 0x1234_5678_9abc_def0, u64::MAX]
            .into_iter()
            .enumerate()
        {
            let (w, h) = (v as u32, v as u16);
            let c = CreateDomain {
                flags: w,
                max_vcpus: w.rotate_left(3),
                max_evtchn_port: !w,
                max_grant_frames: w as i32,
                max_maptrack_frames: -(i as i32),
                grant_opts: w >> 1,
                gic_version: v as u8,
                tee_type: h,
                nr_spis: w ^ 0x55,
            };
            assert_eq!(domctl_createdomain(&c), before::createdomain(&c), "{c:?}");
            assert_eq!(domctl(w, h), before::domctl(w, h));
            let mut d = before::domctl(15, h);
            put32(&mut d.0, 16, w);
            assert_eq!(domctl_max_vcpus(h, w), d);
            let mut d = before::domctl(11, h);
            put64(&mut d.0, 16, v);
            assert_eq!(domctl_max_mem(h, v), d);
            let mut d = before::domctl(12, h);
            put32(&mut d.0, 16, w);
            put64(&mut d.0, 24, !v);
            assert_eq!(domctl_setvcpucontext(h, w, !v), d);
            assert_eq!(vcpu_boot_context(v, !v).0, before::boot_context(v, !v));
            let mut r = [0u8; 32];
            put64(&mut r, 0, v);
            put64(&mut r, 8, !v);
            put32(&mut r, 16, w);
            put16(&mut r, 24, h);
            assert_eq!(memory_reservation(v, !v, w, h).0, r);
            let mut a = [0u8; 32];
            for (k, x) in [h, !h, h ^ 1, h.rotate_left(4)].iter().enumerate() {
                put16(&mut a, 2 * k, *x);
            }
            put64(&mut a, 8, v);
            put64(&mut a, 16, !v);
            put64(&mut a, 24, v ^ 7);
            assert_eq!(
                add_to_physmap_batch(h, !h, h ^ 1, h.rotate_left(4), v, !v, v ^ 7).0,
                a
            );
            let mut x = [0u8; 16];
            put16(&mut x, 0, h);
            put64(&mut x, 8, v);
            assert_eq!(remove_from_physmap(h, v).0, x);
            let mut b = [0u8; 24];
            put16(&mut b, 0, h);
            put32(&mut b, 4, w);
            put64(&mut b, 8, v);
            put64(&mut b, 16, !v);
            assert_eq!(remove_from_physmap_batch(h, w, v, !v).0, b);
            // Decoders: fields at the raw offsets.
            let mut g = before::domctl(5, h);
            put16(&mut g.0, 16, h);
            put32(&mut g.0, 20, w);
            put64(&mut g.0, 24, v);
            put64(&mut g.0, 32, !v);
            put32(&mut g.0, 16 + 64, w ^ 9);
            let info = DomainInfo::decode(&g);
            assert_eq!(
                (
                    info.domain,
                    info.flags,
                    info.tot_pages,
                    info.max_pages,
                    info.nr_online_vcpus
                ),
                (h, w, v, !v, w ^ 9)
            );
            assert_eq!(domctl_domain(&g), h);
            let mut s = Buf::<SYSCTL_SIZE>::zeroed();
            put64(&mut s.0, 8 + 40, v);
            put64(&mut s.0, 8 + 48, !v);
            put64(&mut s.0, 8 + 56, v ^ 3);
            let p = PhysInfo::decode(&s);
            assert_eq!((p.total_pages, p.free_pages, p.scrub_pages), (v, !v, v ^ 3));
        }
        let mut s = [0u8; 136];
        put32(&mut s, 0, 3);
        put32(&mut s, 4, 0x15);
        assert_eq!(sysctl_physinfo().0, s);
    }
}
