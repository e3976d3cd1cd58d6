//! `domctl` (36) and `sysctl` (35) for the control domain: what Xen's
//! toolstack uses to build a domU (`xl create`), after Xen's
//! `xen/include/public/domctl.h` and `sysctl.h` (xen-project/xen c447b73;
//! `XEN_DOMCTL_INTERFACE_VERSION` 0x17, arm64 layouts: guest handles are 8
//! bytes, 8-byte aligned).
//!
//! Supported domctls: `createdomain` (1), `destroydomain` (2),
//! `unpausedomain` (4), `getdomaininfo` (5), `max_mem` (11),
//! `setvcpucontext` (12, vCPU 0), `max_vcpus` (15). Sysctl: `physinfo` (3).
//! Everything else answers `-ENOSYS`; unprivileged callers get `-EPERM`.

use alloc::boxed::Box;

use memops::TableMem;

use super::{Next, System};
use crate::arch::{Arch, El1Reg, PhysMem};
use crate::domain::{DomId, Domain, EndReason};
use crate::vcpu::Vcpu;
use crate::world::World;
use crate::xen::Errno;
use pv_tlb::{Ipa, PAGE_SIZE};

/// `XEN_DOMCTL_INTERFACE_VERSION`.
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x17;
/// `sizeof(struct xen_domctl)`: header (16 bytes) and the 128-byte union.
pub const DOMCTL_SIZE: usize = 144;
/// Offset of `xen_domctl.u`.
const U: usize = 16;
/// `XEN_SYSCTL_INTERFACE_VERSION` of Xen 4.17 to 4.20 (public/sysctl.h: "Last
/// version bump: Xen 4.17"; 4.21 moves to 0x16).
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x15;

/// `sizeof(struct xen_sysctl)`: header (8 bytes) and the 128-byte union.
pub const SYSCTL_SIZE: usize = 136;
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
mod cd {
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
const VGCF_ONLINE: u64 = 1;

/// `XEN_DOMCTL_GRANT_version_mask`.
const GRANT_VERSION_MASK: u32 = 0xf;
/// `XEN_DOMCTL_CONFIG_GIC_NATIVE` / `_V3`.
const GIC_NATIVE: u8 = 0;
const GIC_V3: u8 = 2;

/// Check a `createdomain` configuration (`u`, the domctl's union) as Xen's
/// `sanitise_domain_config` (xen/common/domain.c) and Arm's
/// `arch_sanitise_domain_config` (xen/arch/arm/domain.c) do, for what hv
/// offers: hvm|hap exactly (xs_domain allowed), no IOMMU, no vPMU, grant
/// table v1, no altp2m, no vmtrace, vGICv3, no SVE, no TEE, at most
/// [`crate::vgic::SPI_COUNT`] SPIs, 1 to [`crate::vgic::MAX_VCPUS`] vCPUs. `Err` names what is refused
/// (the caller answers -EINVAL).
pub fn sanitise_createdomain(u: &[u8]) -> Result<(), &'static str> {
    let r32 = |o: usize| get::<4>(u, o) as u32;
    let flags = r32(cd::FLAGS);
    if flags & !cdf::KNOWN != 0 {
        return Err("unknown CDF flags");
    }
    if flags & !cdf::OPTIONAL != cdf::REQUIRED {
        return Err("unsupported configuration (Arm needs hvm|hap and nothing else)");
    }
    if flags & cdf::IOMMU != 0 {
        return Err("IOMMU requested but not available");
    }
    if r32(cd::IOMMU_OPTS) != 0 {
        return Err("IOMMU options specified but IOMMU not requested");
    }
    if flags & cdf::VPMU != 0 {
        return Err("vPMU requested but not available");
    }
    let grant = r32(cd::GRANT_OPTS);
    if grant & !GRANT_VERSION_MASK != 0 || grant & GRANT_VERSION_MASK > 1 {
        return Err("grant options (hv has grant table v1 only)");
    }
    if r32(cd::ALTP2M_OPTS) != 0 {
        return Err("altp2m is not supported on Arm");
    }
    if r32(cd::VMTRACE_SIZE) != 0 {
        return Err("vmtrace is not supported");
    }
    if !matches!(get::<1>(u, cd::GIC_VERSION) as u8, GIC_NATIVE | GIC_V3) {
        return Err("unsupported GIC version (hv emulates GICv3)");
    }
    if get::<1>(u, cd::SVE_VL) != 0 {
        return Err("SVE is not offered to guests");
    }
    if get::<2>(u, cd::TEE_TYPE) != 0 {
        return Err("unsupported TEE type");
    }
    if r32(cd::NR_SPIS) > crate::vgic::SPI_COUNT {
        return Err("too many SPIs");
    }
    match r32(cd::MAX_VCPUS) {
        0 => Err("no vCPUs"),
        n if n > crate::vgic::MAX_VCPUS => Err("max_vcpus above hv's vGIC limit"),
        _ => Ok(()),
    }
}
/// First reserved domid (`DOMID_FIRST_RESERVED`).
const DOMID_FIRST_RESERVED: u16 = 0x7ff0;

fn get<const N: usize>(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(o..o + N) {
        a[..N].copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn put(b: &mut [u8], o: usize, v: &[u8]) {
    if let Some(s) = b.get_mut(o..o + v.len()) {
        s.copy_from_slice(v);
    }
}

/// The result of a domctl: x0, and whether to write the struct back.
struct Answer {
    ret: Result<u64, Errno>,
    copy_back: bool,
}

impl Answer {
    fn err(e: Errno) -> Self {
        Self {
            ret: Err(e),
            copy_back: false,
        }
    }
    fn ok(copy_back: bool) -> Self {
        Self {
            ret: Ok(0),
            copy_back,
        }
    }
}

impl<M: PhysMem + TableMem + Send> System<M> {
    /// Handle `domctl(arg)` from vCPU `v`'s domain.
    pub(super) fn domctl(&self, arch: &mut dyn Arch, v: &mut Vcpu, arg: u64) -> Next {
        // Guest handles are virtual addresses of the calling vCPU (Xen on Arm).
        let s1 = Some(crate::xen::s1walk::Stage1::of(&*arch));
        let mut sh = self.shared.lock();
        let Some(caller) = sh.domains.iter().find(|d| d.id == v.domid) else {
            return Next::Resume;
        };
        // Xen's do_domctl order: copy the struct in (-EFAULT), check the
        // interface version (-EACCES), then the caller's right (-EPERM).
        let privileged = caller.privileged;
        let view = caller.stage2().view();
        let mut buf = [0u8; DOMCTL_SIZE];
        {
            let World { mem, .. } = &mut *sh;
            if let Err(e) = crate::guest::GuestMemory::from_view(view, mem)
                .with_stage1(s1)
                .copy_from_guest(Ipa(arg), &mut buf)
            {
                log::debug!("d{}: domctl: {e}", v.domid);
                v.gprs.x[0] = e.errno().to_x0();
                return Next::Resume;
            }
        }
        let c = get::<4>(&buf, 0) as u32;
        let version = get::<4>(&buf, 4) as u32;
        let domain = get::<2>(&buf, 8) as u16;
        let mut queue: alloc::vec::Vec<Box<Vcpu>> = alloc::vec::Vec::new();
        let answer = if version != XEN_DOMCTL_INTERFACE_VERSION {
            log::debug!("d{}: domctl {c}: interface version {version:#x}", v.domid);
            Answer::err(Errno::EACCES)
        } else if !privileged {
            log::debug!("d{}: domctl: not privileged", v.domid);
            Answer::err(Errno::EPERM)
        } else {
            match c {
                cmd::CREATEDOMAIN => self.createdomain(&mut sh, &mut buf, domain),
                cmd::DESTROYDOMAIN => self.destroydomain(&mut sh, arch, domain),
                cmd::UNPAUSEDOMAIN => unpause(&mut sh, domain, &mut queue),
                cmd::GETDOMAININFO => getdomaininfo(&sh, &mut buf, domain),
                cmd::MAX_MEM => with_domu(&mut sh, domain, |d| {
                    let kb = get::<8>(&buf, U);
                    d.physmap_mut().set_max_pages(kb / (PAGE_SIZE / 1024));
                    Answer::ok(false)
                }),
                cmd::MAX_VCPUS => with_domu(&mut sh, domain, |d| {
                    // Up to the count createdomain sized the domain for
                    // (its event channels and runstate areas).
                    match get::<4>(&buf, U) as u32 {
                        n if (1..=d.xen.evtchn.vcpus()).contains(&n) && !d.unpaused => {
                            d.max_vcpus = n;
                            Answer::ok(false)
                        }
                        n => {
                            log::debug!(
                                "d{}: max_vcpus {n}: created with {}",
                                d.id,
                                d.xen.evtchn.vcpus()
                            );
                            Answer::err(Errno::EINVAL)
                        }
                    }
                }),
                cmd::SETVCPUCONTEXT => self.setvcpucontext(&mut sh, &buf, domain, view, s1),
                other => {
                    log::debug!("d{}: domctl {other} not implemented", v.domid);
                    Answer::err(Errno::ENOSYS)
                }
            }
        };
        if answer.copy_back {
            let World { mem, .. } = &mut *sh;
            if let Err(e) = crate::guest::GuestMemory::from_view(view, mem)
                .with_stage1(s1)
                .copy_to_guest(Ipa(arg), &buf)
            {
                v.gprs.x[0] = e.errno().to_x0();
                return Next::Resume;
            }
        }
        drop(sh);
        if !queue.is_empty() {
            self.live_domains
                .fetch_add(1, core::sync::atomic::Ordering::SeqCst);
            let mut rq = self.runq.lock();
            for v in queue {
                rq.push_back(v);
            }
        }
        v.gprs.x[0] = answer.ret.unwrap_or_else(Errno::to_x0);
        Next::Resume
    }

    fn createdomain(&self, sh: &mut World<M>, buf: &mut [u8; DOMCTL_SIZE], want: DomId) -> Answer {
        if let Err(why) = sanitise_createdomain(&buf[U..]) {
            log::debug!("createdomain: {why}: -EINVAL");
            return Answer::err(Errno::EINVAL);
        }
        // The slot in the domain list (bounded, heap-checked, reserved) first.
        if let Err(e) = sh.reserve_domain_slot() {
            log::debug!("createdomain: {e}: -ENOMEM");
            return Answer::err(Errno::ENOMEM);
        }
        let id = if want == 0 || want >= DOMID_FIRST_RESERVED {
            // Xen's rover over 1..DOMID_FIRST_RESERVED: one pass at most
            // (-ENOMEM when every domid is taken; MAX_DOMAINS keeps that far).
            let free = (0..DOMID_FIRST_RESERVED).find_map(|_| {
                sh.next_domid = sh.next_domid.wrapping_add(1);
                let id =
                    (sh.next_domid.wrapping_sub(1) % usize::from(DOMID_FIRST_RESERVED)) as DomId;
                (id != 0 && !sh.domains.iter().any(|d| d.id == id)).then_some(id)
            });
            let Some(id) = free else {
                return Answer::err(Errno::ENOMEM);
            };
            id
        } else if sh.domains.iter().any(|d| d.id == want) {
            return Answer::err(Errno::EEXIST);
        } else {
            want
        };
        let World {
            mem,
            vmids,
            pool,
            sink,
            domains,
            ipa_bits,
            ..
        } = sh;
        let vcpus = get::<4>(buf, U + cd::MAX_VCPUS) as u32;
        let built = Domain::create_empty(id, *ipa_bits, vmids, mem, pool).and_then(|mut d| {
            d.max_vcpus = vcpus;
            d.vgic.set_nr_vcpus(vcpus);
            // The same Xen-interface state as a domain hv boots (shared
            // info, grant frames, console ring, HVM params), sized for its vCPUs.
            match crate::xen::domu::DomainXen::setup(id, vcpus, d.physmap_mut(), mem, pool) {
                Ok(x) => {
                    d.xen = x;
                    Ok(d)
                }
                Err(e) => {
                    d.discard(mem, pool, vmids);
                    Err(crate::domain::DomainError::Stage2(e))
                }
            }
        });
        match built {
            Ok(mut d) => {
                if let Some(h) = buf.get(U + 4..U + 20) {
                    d.handle.copy_from_slice(h);
                }
                sink.hv_line(format_args!(
                    "d{id}: created by domctl, VMID {}",
                    d.vmid().0
                ));
                domains.push(d);
                put(buf, 8, &id.to_le_bytes());
                // Xen fills in the native GIC version for the toolstack.
                put(buf, U + cd::GIC_VERSION, &[GIC_V3]);
                Answer::ok(true)
            }
            Err(e) => {
                log::warn!("createdomain: {e}");
                Answer::err(match e {
                    crate::domain::DomainError::NoVmid => Errno::EBUSY,
                    _ => Errno::ENOMEM,
                })
            }
        }
    }

    fn setvcpucontext(
        &self,
        sh: &mut World<M>,
        buf: &[u8; DOMCTL_SIZE],
        domain: DomId,
        view: memops::Stage2View,
        s1: Option<crate::xen::s1walk::Stage1>,
    ) -> Answer {
        let vcpu = get::<4>(buf, U) as u32;
        let ctxt = get::<8>(buf, U + 8);
        let mut c = [0u8; VCPU_GUEST_CONTEXT_SIZE];
        {
            let World { mem, .. } = &mut *sh;
            if let Err(e) = crate::guest::GuestMemory::from_view(view, mem)
                .with_stage1(s1)
                .copy_from_guest(Ipa(ctxt), &mut c)
            {
                log::debug!("setvcpucontext: {e}");
                return Answer::err(e.errno());
            }
        }
        with_domu(sh, domain, |d| {
            if vcpu >= d.max_vcpus || d.unpaused {
                log::debug!(
                    "d{}: setvcpucontext vcpu {vcpu}: only the vCPUs of a paused domain",
                    d.id
                );
                return Answer::err(Errno::EINVAL);
            }
            // struct vcpu_guest_context: flags u32 @0; user_regs @8: x0..x30,
            // pc64 @+248, cpsr @+256, spsr_el1 @+264, sp_el0 @+288, sp_el1 @+296,
            // elr_el1 @+304; sctlr @320, ttbcr @328, ttbr0 @336, ttbr1 @344.
            let r = 8;
            let cpsr = get::<8>(&c, r + 256);
            // AArch64 EL1h/EL1t/EL0t only.
            if cpsr & (1 << 4) != 0 || !matches!(cpsr & 0xf, 0b0101 | 0b0100 | 0b0000) {
                log::debug!(
                    "d{}: setvcpucontext: cpsr {cpsr:#x} is no AArch64 EL1/EL0 mode",
                    d.id
                );
                return Answer::err(Errno::EINVAL);
            }
            let mut v = Vcpu::new(d.id, vcpu, get::<8>(&c, r + 248), 0);
            for n in 0..31 {
                v.gprs.x[n] = get::<8>(&c, r + 8 * n);
            }
            v.gprs.pstate = cpsr;
            v.gprs.sp_el0 = get::<8>(&c, r + 288);
            v.sysregs.set(El1Reg::SpEl1, get::<8>(&c, r + 296));
            v.sysregs.set(El1Reg::ElrEl1, get::<8>(&c, r + 304));
            v.sysregs.set(El1Reg::SpsrEl1, get::<8>(&c, r + 264));
            let sctlr = get::<8>(&c, 320);
            if sctlr != 0 {
                v.sysregs.set(El1Reg::SctlrEl1, sctlr);
            }
            v.sysregs.set(El1Reg::TcrEl1, get::<8>(&c, 328));
            v.sysregs.set(El1Reg::Ttbr0El1, get::<8>(&c, 336));
            v.sysregs.set(El1Reg::Ttbr1El1, get::<8>(&c, 344));
            // VGCF_online (public/arch-arm.h): the vCPU runs when the
            // domain is unpaused (Xen's arch_set_info_guest clears
            // _VPF_down); vCPU 0 always does.
            let online = vcpu == 0 || get::<4>(&c, 0) & VGCF_ONLINE != 0;
            d.vcpu_contexts.retain(|(x, _)| x.id != vcpu);
            if d.vcpu_contexts.try_reserve(1).is_err() {
                return Answer::err(Errno::ENOMEM);
            }
            d.vcpu_contexts.push((Box::new(v), online));
            Answer::ok(false)
        })
    }

    fn destroydomain(&self, sh: &mut World<M>, arch: &mut dyn Arch, domain: DomId) -> Answer {
        let Some(idx) = sh
            .domains
            .iter()
            .position(|d| d.id == domain && d.from_domctl)
        else {
            return Answer::err(Errno::ESRCH);
        };
        if sh.domains[idx].live_vcpus > 0 {
            // Running: its vCPUs stop at their next scheduling point; the
            // last one tears it down.
            sh.domains[idx].ending.get_or_insert(EndReason::Destroyed);
            sh.domains[idx].from_domctl = false;
            return Answer::ok(false);
        }
        let d = sh.domains.swap_remove(idx);
        crate::xen::domu::domain_destroyed(&mut sh.domains, &d);
        let World {
            mem,
            vmids,
            pool,
            flush,
            sink,
            ..
        } = sh;
        let id = d.id;
        if d.unpaused {
            d.destroy(arch, mem, pool, flush, vmids);
        } else {
            // Never ran: no TLB entry can exist for its VMID.
            d.discard(mem, pool, vmids);
        }
        sink.hv_line(format_args!(
            "d{id} destroyed ({} VMIDs in use)",
            vmids.in_use()
        ));
        Answer::ok(false)
    }
}

/// Run `f` on domain `id` if it is a domain the control domain built.
fn with_domu<M>(sh: &mut World<M>, id: DomId, f: impl FnOnce(&mut Domain) -> Answer) -> Answer {
    match sh.domains.iter_mut().find(|d| d.id == id && d.from_domctl) {
        Some(d) => f(d),
        None => Answer::err(Errno::ESRCH),
    }
}

// The run queue takes the boxes as they are (no move out of and back into the heap).
#[allow(clippy::vec_box)]
fn unpause<M>(sh: &mut World<M>, id: DomId, queue: &mut alloc::vec::Vec<Box<Vcpu>>) -> Answer {
    with_domu(sh, id, |d| {
        if d.unpaused {
            return Answer::ok(false);
        }
        if !d.vcpu_contexts.iter().any(|(v, _)| v.id == 0) {
            log::debug!("d{}: unpause without a vCPU 0 context", d.id);
            return Answer::err(Errno::EINVAL);
        }
        if queue.try_reserve(d.vcpu_contexts.len()).is_err() {
            return Answer::err(Errno::ENOMEM);
        }
        d.unpaused = true;
        // vCPU 0 and the online ones run; the rest wait for PSCI CPU_ON.
        for (v, online) in core::mem::take(&mut d.vcpu_contexts) {
            if online {
                queue.push(v);
            }
        }
        d.live_vcpus = queue.len() as u32;
        Answer::ok(false)
    })
}

fn getdomaininfo<M>(sh: &World<M>, buf: &mut [u8; DOMCTL_SIZE], id: DomId) -> Answer {
    let Some(d) = sh.domains.iter().find(|d| d.id == id) else {
        return Answer::err(Errno::ESRCH);
    };
    let mut flags = dominf::HVM_GUEST | dominf::HAP;
    if d.live_vcpus > 0 {
        flags |= dominf::RUNNING;
    } else if !d.unpaused {
        flags |= dominf::PAUSED;
    }
    if let Some(r) = d.ending {
        flags |= dominf::SHUTDOWN | ((r.shutdown_code() & 0xff) << dominf::SHUTDOWNSHIFT);
        if d.live_vcpus == 0 {
            flags |= dominf::DYING;
        }
    }
    // struct xen_domctl_getdomaininfo (offsets in the union).
    let u = &mut buf[U..];
    u.fill(0);
    put(u, 0, &id.to_le_bytes());
    put(u, 4, &flags.to_le_bytes());
    put(u, 8, &d.physmap().tot_pages().to_le_bytes());
    put(u, 16, &d.physmap().max_pages().to_le_bytes());
    put(u, 64, &d.live_vcpus.to_le_bytes());
    put(u, 68, &d.max_vcpus.saturating_sub(1).to_le_bytes());
    put(u, 76, &d.handle);
    put(u, 96, &u32::from(d.stage2().ipa_bits()).to_le_bytes());
    Answer::ok(true)
}

impl<M: PhysMem + TableMem + Send> System<M> {
    /// Handle `sysctl(arg)` (`physinfo` only) from vCPU `v`'s domain.
    pub(super) fn sysctl(&self, arch: &mut dyn Arch, v: &mut Vcpu, arg: u64) -> Next {
        // Guest handles are virtual addresses of the calling vCPU (Xen on Arm).
        let s1 = Some(crate::xen::s1walk::Stage1::of(&*arch));
        let mut sh = self.shared.lock();
        let Some(caller) = sh.domains.iter().find(|d| d.id == v.domid) else {
            return Next::Resume;
        };
        let privileged = caller.privileged;
        let view = caller.stage2().view();
        let (total, free) = (sh.pool.total_frames(), sh.pool.free_frames());
        let World { mem, .. } = &mut *sh;
        let mut gm = crate::guest::GuestMemory::from_view(view, mem).with_stage1(s1);
        let mut buf = [0u8; SYSCTL_SIZE];
        // Xen's do_sysctl order: copy in (-EFAULT), the interface version
        // (-EACCES), then the right (-EPERM).
        if let Err(e) = gm.copy_from_guest(Ipa(arg), &mut buf) {
            v.gprs.x[0] = e.errno().to_x0();
            return Next::Resume;
        }
        let version = get::<4>(&buf, 4) as u32;
        if version != XEN_SYSCTL_INTERFACE_VERSION {
            crate::glog!(
                v.domid,
                Debug,
                "d{}: sysctl interface version {version:#x}, expected {XEN_SYSCTL_INTERFACE_VERSION:#x}",
                v.domid
            );
            v.gprs.x[0] = Errno::EACCES.to_x0();
            return Next::Resume;
        }
        if !privileged {
            v.gprs.x[0] = Errno::EPERM.to_x0();
            return Next::Resume;
        }
        if get::<4>(&buf, 0) as u32 != cmd::SYSCTL_PHYSINFO {
            v.gprs.x[0] = Errno::ENOSYS.to_x0();
            return Next::Resume;
        }
        // struct xen_sysctl_physinfo (union at 8): total_pages @40, free_pages @48, scrub_pages @56.
        let u = &mut buf[8..];
        u.fill(0);
        put(u, 0, &1u32.to_le_bytes());
        put(u, 40, &total.to_le_bytes());
        put(u, 48, &free.to_le_bytes());
        v.gprs.x[0] = match gm.copy_to_guest(Ipa(arg), &buf) {
            Ok(()) => 0,
            Err(e) => e.errno().to_x0(),
        };
        Next::Resume
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(flags: u32) -> [u8; 128] {
        let mut u = [0u8; 128];
        u[cd::FLAGS..cd::FLAGS + 4].copy_from_slice(&flags.to_le_bytes());
        u[cd::MAX_VCPUS..cd::MAX_VCPUS + 4].copy_from_slice(&1u32.to_le_bytes());
        u[cd::GRANT_OPTS] = 1;
        u
    }

    /// Issue 9 finding 10: createdomain flags are checked as Xen's
    /// sanitise_domain_config / arch_sanitise_domain_config (Arm) do.
    #[test]
    fn createdomain_configurations_are_sanitised_as_xen_does() {
        assert_eq!(sanitise_createdomain(&config(cdf::REQUIRED)), Ok(()));
        assert_eq!(
            sanitise_createdomain(&config(cdf::REQUIRED | cdf::XS_DOMAIN)),
            Ok(())
        );
        for bad in [
            0xffff_ffff,
            0,
            cdf::HVM,
            cdf::HAP,
            cdf::REQUIRED | 1 << 8,
            cdf::REQUIRED | 1 << 31,
            cdf::REQUIRED | cdf::S3_INTEGRITY,
            cdf::REQUIRED | cdf::OOS_OFF,
            cdf::REQUIRED | cdf::NESTED_VIRT,
            cdf::REQUIRED | cdf::IOMMU,
            cdf::REQUIRED | cdf::VPMU,
        ] {
            assert!(sanitise_createdomain(&config(bad)).is_err(), "{bad:#x}");
        }
        let with = |o: usize, v: &[u8]| {
            let mut u = config(cdf::REQUIRED);
            u[o..o + v.len()].copy_from_slice(v);
            sanitise_createdomain(&u)
        };
        assert!(with(cd::IOMMU_OPTS, &[1]).is_err());
        assert!(with(cd::GRANT_OPTS, &[2]).is_err(), "grant v2");
        assert!(
            with(cd::GRANT_OPTS + 1, &[1]).is_err(),
            "grant_opts above the mask"
        );
        assert_eq!(with(cd::GRANT_OPTS, &[0]), Ok(()));
        assert!(with(cd::ALTP2M_OPTS, &[1]).is_err());
        assert!(with(cd::VMTRACE_SIZE, &[0, 0x10]).is_err());
        assert!(with(cd::GIC_VERSION, &[1]).is_err(), "GICv2");
        assert_eq!(with(cd::GIC_VERSION, &[2]), Ok(()));
        assert!(with(cd::SVE_VL, &[1]).is_err());
        assert!(with(cd::TEE_TYPE, &[1]).is_err());
        assert!(with(cd::NR_SPIS, &[65]).is_err());
        assert_eq!(with(cd::NR_SPIS, &[64]), Ok(()));
        assert!(with(cd::MAX_VCPUS, &[0]).is_err());
        assert_eq!(with(cd::MAX_VCPUS, &[2]), Ok(()));
        assert!(with(cd::MAX_VCPUS, &[0, 1]).is_err(), "256 vCPUs");
        assert!(sanitise_createdomain(&[]).is_err(), "short input");
    }
}
