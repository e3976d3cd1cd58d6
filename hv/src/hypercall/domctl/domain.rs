//! Domain domctls: create, destroy, unpause, getdomaininfo.

use memops::TableMem;

use super::{cdf, dominf, Answer, DOMID_FIRST_RESERVED};
use super::{GIC_NATIVE, GIC_V3, GRANT_VERSION_MASK};
use crate::arch::{Arch, PhysMem};
use crate::domain::{DomId, EndReason};
use crate::hypercall::Ctx;
use crate::world::World;
use crate::xen::abi::{XenDomctl, XenDomctlCreatedomain, XenDomctlGetdomaininfo};

use crate::xen::Errno;

/// Check a `createdomain` configuration as Xen's `sanitise_domain_config`
/// (xen/common/domain.c) and Arm's `arch_sanitise_domain_config`
/// (xen/arch/arm/domain.c) do, for what hv offers: hvm|hap exactly
/// (xs_domain allowed), no IOMMU, no vPMU, grant table v1, no altp2m, no
/// vmtrace, vGICv3, no SVE, no TEE, at most [`crate::vgic::SPI_COUNT`] SPIs,
/// 1 to [`crate::vgic::MAX_VCPUS`] vCPUs. `Err` names what is refused (the
/// caller answers -EINVAL).
///
/// # Errors
/// What is refused.
pub fn sanitise_createdomain(c: &XenDomctlCreatedomain) -> Result<(), &'static str> {
    let flags = c.flags;
    if flags & !cdf::KNOWN != 0 {
        return Err("unknown CDF flags");
    }
    if flags & !cdf::OPTIONAL != cdf::REQUIRED {
        return Err("unsupported configuration (Arm needs hvm|hap and nothing else)");
    }
    if flags & cdf::IOMMU != 0 {
        return Err("IOMMU requested but not available");
    }
    if c.iommu_opts != 0 {
        return Err("IOMMU options specified but IOMMU not requested");
    }
    if flags & cdf::VPMU != 0 {
        return Err("vPMU requested but not available");
    }
    let grant = c.grant_opts;
    if grant & !GRANT_VERSION_MASK != 0 || grant & GRANT_VERSION_MASK > 1 {
        return Err("grant options (hv has grant table v1 only)");
    }
    // grant_table_init: a negative max_grant_frames is Xen's default, fewer
    // than INITIAL_NR_GRANT_FRAMES is "Bad grant table size".
    if c.max_grant_frames >= 0
        && (c.max_grant_frames as u32) < crate::xen::grant::INITIAL_NR_GRANT_FRAMES
    {
        return Err("bad grant table size (max_grant_frames)");
    }
    if c.altp2m_opts != 0 {
        return Err("altp2m is not supported on Arm");
    }
    if c.vmtrace_size != 0 {
        return Err("vmtrace is not supported");
    }
    if !matches!(c.arch.gic_version, GIC_NATIVE | GIC_V3) {
        return Err("unsupported GIC version (hv emulates GICv3)");
    }
    if c.arch.sve_vl != 0 {
        return Err("SVE is not offered to guests");
    }
    if c.arch.tee_type != 0 {
        return Err("unsupported TEE type");
    }
    if c.arch.nr_spis > crate::vgic::SPI_COUNT {
        return Err("too many SPIs");
    }
    match c.max_vcpus {
        0 => Err("no vCPUs"),
        n if n > crate::vgic::MAX_VCPUS => Err("max_vcpus above hv's vGIC limit"),
        _ => Ok(()),
    }
}

/// `XEN_DOMCTL_createdomain`: a paused, empty domain (the toolstack gives it
/// memory, vCPU contexts and unpauses it), with the Xen-interface state of a
/// domain hv boots ([`crate::xen::domu::DomainXen::setup`]).
pub fn createdomain<M: PhysMem + TableMem>(sh: &mut World<M>, op: &mut XenDomctl) -> Answer {
    let want = op.domain;
    let mut config: XenDomctlCreatedomain = op.member();
    if let Err(why) = sanitise_createdomain(&config) {
        log::debug!("createdomain: {why}: -EINVAL");
        return Answer::err(Errno::EINVAL);
    }
    let mut b = sh.builder();
    // The slot in the domain list (bounded, heap-checked, reserved) first.
    if let Err(e) = b.reserve_domain_slot() {
        log::debug!("createdomain: {e}: -ENOMEM");
        return Answer::err(Errno::ENOMEM);
    }
    let id = if want == 0 || want >= DOMID_FIRST_RESERVED {
        // Xen's rover over 1..DOMID_FIRST_RESERVED: one pass at most
        // (-ENOMEM when every domid is taken; MAX_DOMAINS keeps that far).
        let free = (0..DOMID_FIRST_RESERVED).find_map(|_| {
            *b.next_domid = b.next_domid.wrapping_add(1);
            let id = (b.next_domid.wrapping_sub(1) % usize::from(DOMID_FIRST_RESERVED)) as DomId;
            (id != 0 && !b.domains.iter().any(|d| d.id == id)).then_some(id)
        });
        let Some(id) = free else {
            return Answer::err(Errno::ENOMEM);
        };
        id
    } else if b.domains.iter().any(|d| d.id == want) {
        return Answer::err(Errno::EEXIST);
    } else {
        want
    };
    let max_grant = u32::try_from(config.max_grant_frames)
        .unwrap_or(crate::xen::grant::DEFAULT_MAX_GRANT_FRAMES);
    match b.create_paused(id, config.max_vcpus, config.handle, max_grant) {
        Ok(()) => {
            op.domain = id;
            // Xen fills in the native GIC version for the toolstack (the
            // rest of the union goes back as it came).
            config.arch.gic_version = GIC_V3;
            crate::xen::abi::Le::put(&config, &mut op.u, 0);
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

/// `XEN_DOMCTL_destroydomain`, as Xen's `domain_kill`: the caller itself is
/// -EINVAL; any other domain (built by the toolstack or by hv, running,
/// paused, shut down or already dying) goes. One whose vCPUs still exist
/// is marked dying (`getdomaininfo`: `dying`) and its vCPUs stop at their
/// pCPUs' next look (paused ones are dropped there), the last one tearing
/// it down; one without vCPUs is torn down now. Xen's `domain_kill` is
/// preemptible (-ERESTART continuations, 19-53 in the trace); hv's teardown
/// is one pass under the world lock with a single VMID flush (no
/// continuation: the domctl returns 0 at once).
pub fn destroydomain<M: PhysMem + TableMem>(
    sh: &mut World<M>,
    arch: &mut dyn Arch,
    caller: DomId,
    domain: DomId,
) -> Answer {
    if domain == caller {
        log::debug!("d{caller}: destroydomain of itself: -EINVAL");
        return Answer::err(Errno::EINVAL);
    }
    let Some(idx) = sh.domains.iter().position(|d| d.id == domain) else {
        log::debug!("d{caller}: destroydomain d{domain}: no such domain: -ESRCH");
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
    crate::world::domain_destroyed(&mut sh.domains, &d);
    let World {
        mem,
        vmids,
        pool,
        flush,
        ..
    } = sh;
    let id = d.id;
    if d.unpaused {
        d.destroy(arch, mem, pool, flush, vmids);
    } else {
        // Never ran: no TLB entry can exist for its VMID.
        d.discard(mem, pool, vmids);
    }
    // The granters of pages it still mapped get their GTF_reading/writing
    // bits back now (as the run loop's destroy path does).
    crate::world::grant_clears(&mut sh.domains, &mut sh.mem);
    let World { vmids, sink, .. } = sh;
    sink.hv_line(format_args!(
        "d{id} destroyed ({} VMIDs in use)",
        vmids.in_use()
    ));
    Answer::ok(false)
}

/// Xen's limit on `controller_pause_count` (`_domain_pause_by_systemcontroller`).
pub const MAX_CONTROLLER_PAUSES: u32 = 255;

/// `XEN_DOMCTL_pausedomain`, as Xen's `domain_pause_by_systemcontroller`
/// (xen/common/domain.c; domctl.c refuses the caller itself with -EINVAL):
/// one more controller pause (-EOVERFLOW past 255); while the count is
/// non-zero no vCPU of the domain is scheduled. The run loop takes the
/// domain's vCPUs off the scheduler before the caller resumes
/// ([`crate::hypercall::Effects::deschedule`]); a vCPU running on another pCPU
/// at that moment stops at its pCPU's next look (it is kicked), where Xen's
/// `domain_pause` waits for it (`vcpu_sleep_sync`).
pub fn pause<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, id: DomId) -> Answer {
    let caller = ctx.caller;
    let Some(d) = ctx.world.entry(id) else {
        log::debug!("d{caller}: pausedomain d{id}: no such domain: -ESRCH");
        return Answer::err(Errno::ESRCH);
    };
    if id == caller {
        log::debug!("d{caller}: pausedomain of itself: -EINVAL");
        return Answer::err(Errno::EINVAL);
    }
    if d.pause_count >= MAX_CONTROLLER_PAUSES {
        log::debug!("d{caller}: pausedomain d{id}: {MAX_CONTROLLER_PAUSES} pauses: -EOVERFLOW");
        return Answer::err(Errno::EOVERFLOW);
    }
    d.pause_count += 1;
    ctx.fx.deschedule = true;
    Answer::ok(false)
}

/// `XEN_DOMCTL_unpausedomain`, as Xen's `domain_unpause_by_systemcontroller`:
/// one controller pause less (-EINVAL when there is none). The first time
/// the count reaches 0 (Xen's `creation_finished`) vCPU 0 and the online
/// vCPUs of a toolstack-built domain start; later, the vCPUs the run loop
/// took off while it was paused are queued again.
///
/// A domain whose toolstack gave it no console (`HVM_PARAM_CONSOLE_PFN`
/// unset: hv's builder payload, not `xl`) gets hv's console ring at its
/// first start ([`crate::xen::domu::DomainXen::attach_hv_console`]).
pub fn unpause<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, id: DomId) -> Answer {
    let caller = ctx.caller;
    let queue = &mut ctx.fx.start;
    let before = queue.len();
    let World { domains, mem, .. } = &mut *ctx.world;
    let mut started = false;
    let a = match domains.iter_mut().find(|d| d.id == id) {
        None => {
            log::debug!("d{caller}: unpausedomain d{id}: no such domain: -ESRCH");
            Answer::err(Errno::ESRCH)
        }
        Some(d) => (|| {
            if d.pause_count == 0 {
                log::debug!("d{caller}: unpausedomain d{id}: not paused: -EINVAL");
                return Answer::err(Errno::EINVAL);
            }
            if d.pause_count > 1 || d.unpaused || !d.from_domctl {
                d.pause_count -= 1;
                if d.pause_count == 0 && !d.paused_vcpus.is_empty() {
                    if queue.try_reserve(d.paused_vcpus.len()).is_err() {
                        d.pause_count = 1;
                        return Answer::err(Errno::ENOMEM);
                    }
                    queue.append(&mut d.paused_vcpus);
                }
                return Answer::ok(false);
            }
            // The first unpause of a toolstack-built domain: it starts.
            if !d.vcpu_contexts.iter().any(|(v, _)| v.id == 0) {
                log::debug!("d{}: unpause without a vCPU 0 context: -EINVAL", d.id);
                return Answer::err(Errno::EINVAL);
            }
            if queue.try_reserve(d.vcpu_contexts.len()).is_err() {
                return Answer::err(Errno::ENOMEM);
            }
            if d.xen.params[crate::xen::domu::hvm_param::CONSOLE_PFN as usize] == 0 {
                let (x, pm) = d.xen_and_physmap();
                if let Err(e) = x.attach_hv_console(pm, mem) {
                    log::warn!("d{}: no console (hv's ring not mapped: {e})", d.id);
                }
            }
            d.pause_count = 0;
            d.unpaused = true;
            // vCPU 0 and the online ones run; the rest wait for PSCI CPU_ON.
            for (v, online) in core::mem::take(&mut d.vcpu_contexts) {
                if online {
                    queue.push(v);
                }
            }
            d.live_vcpus = (queue.len() - before) as u32;
            started = d.live_vcpus > 0;
            Answer::ok(false)
        })(),
    };
    if started {
        ctx.fx.domains_started += 1;
    }
    a
}

/// `XEN_DOMCTL_getdomaininfo` of any domain (the control domain's own
/// included: `xen-init-dom0` asks for d0), at system time `now_ns`.
pub fn getdomaininfo<M>(sh: &World<M>, op: &mut XenDomctl, now_ns: u64) -> Answer {
    let id = op.domain;
    let Some(d) = sh.domain(id) else {
        log::debug!("getdomaininfo: no domain {id}: -ESRCH");
        return Answer::err(Errno::ESRCH);
    };
    op.set_member(&domaininfo(d, now_ns));
    Answer::ok(true)
}

/// `XEN_DOMCTL_set_llc_colors` (89), which `xl create` issues for every
/// domain (0 colours when none are configured): Xen built without LLC
/// colouring (xen/common/domctl.c) answers -EINVAL for a non-zero `pad`, else
/// -EOPNOTSUPP, which libxl accepts for 0 colours (libxl_create.c); hv has no
/// colouring. A missing domain is -ESRCH first (`do_domctl`'s lookup).
pub fn set_llc_colors<M>(sh: &World<M>, op: &XenDomctl) -> Answer {
    if sh.domain(op.domain).is_none() {
        return Answer::err(Errno::ESRCH);
    }
    // struct xen_domctl_set_llc_colors { uint32_t num_llc_colors; uint32_t pad; handle llc_colors; }
    let pad = u32::from_le_bytes([op.u[4], op.u[5], op.u[6], op.u[7]]);
    if pad != 0 {
        return Answer::err(Errno::EINVAL);
    }
    log::debug!(
        "d{}: set_llc_colors: hv has no LLC colouring: -EOPNOTSUPP",
        op.domain
    );
    Answer::err(Errno::EOPNOTSUPP)
}

/// `SHUTDOWN_CODE_INVALID` (xen/include/xen/sched.h): a domain's shutdown
/// code until it shuts down; Xen ORs it in unmasked, so a live domain's
/// flags carry 0xffff in bits 31:16 (toolstacks read the code only with
/// `XEN_DOMINF_shutdown`).
const SHUTDOWN_CODE_INVALID: u32 = !0;
/// `XEN_INVALID_MAX_VCPU_ID` (public/domctl.h): a domain without vCPUs.
const INVALID_MAX_VCPU_ID: u32 = !0;

/// Xen's `getdomaininfo` (xen/common/domctl.c) and Arm's
/// `arch_get_domain_info`, from hv's domain: the vCPUs' runstates give
/// `nr_online_vcpus` (not offline), `running` (one is running), `blocked`
/// (every online one blocked) and `cpu_time` (ns running, the current
/// stretch up to `now_ns` included, as Xen's `vcpu_runstate_get`); `paused`
/// is a controller pause count above 0 (created and not unpaused yet, or
/// `pausedomain`); a domain ended by
/// `destroydomain` is `dying`, one that shut down (or that hv ended) is
/// `shutdown` with its code; `hvm_guest` and `hap` always (Arm);
/// `shared_info_frame` is the frame of its shared-info page (Arm's
/// `mfn_to_gfn` is the identity); ssidref 0 (no XSM); cpupool 0.
#[must_use]
pub fn domaininfo(d: &crate::domain::Domain, now_ns: u64) -> XenDomctlGetdomaininfo {
    use crate::xen::domu::runstate;
    let mut online = 0u32;
    let mut all_blocked = true;
    let mut running = false;
    let mut cpu_time = 0u64;
    for r in &d.xen.runstate {
        cpu_time = cpu_time.saturating_add(r.time[runstate::RUNNING as usize]);
        if r.state == runstate::RUNNING {
            cpu_time = cpu_time.saturating_add(now_ns.saturating_sub(r.entry));
        }
        if r.state == runstate::OFFLINE {
            continue;
        }
        online += 1;
        all_blocked &= r.state == runstate::BLOCKED;
        running |= r.state == runstate::RUNNING;
    }
    let mut flags = 0;
    if online > 0 {
        if all_blocked {
            flags |= dominf::BLOCKED;
        }
        if running {
            flags |= dominf::RUNNING;
        }
    }
    let code = match d.ending {
        Some(EndReason::Destroyed) => {
            flags |= dominf::DYING;
            SHUTDOWN_CODE_INVALID
        }
        Some(r) => {
            flags |= dominf::SHUTDOWN;
            r.shutdown_code()
        }
        None => SHUTDOWN_CODE_INVALID,
    };
    if d.pause_count > 0 {
        flags |= dominf::PAUSED;
    }
    flags |= dominf::HVM_GUEST | dominf::HAP | (code << dominf::SHUTDOWNSHIFT);
    XenDomctlGetdomaininfo {
        domain: d.id,
        flags,
        tot_pages: d.physmap().tot_pages(),
        max_pages: d.physmap().max_pages(),
        shared_info_frame: d.xen.evtchn.shared_info().map_or(0, |pa| pa.0 >> 12),
        cpu_time,
        nr_online_vcpus: online,
        max_vcpu_id: (d.xen.runstate.len() as u32)
            .max(d.max_vcpus)
            .checked_sub(1)
            .unwrap_or(INVALID_MAX_VCPU_ID),
        ssidref: 0,
        handle: d.handle,
        cpupool: 0,
        gpaddr_bits: d.stage2().ipa_bits(),
        ..XenDomctlGetdomaininfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(flags: u32) -> XenDomctlCreatedomain {
        XenDomctlCreatedomain {
            flags,
            max_vcpus: 1,
            grant_opts: 1,
            max_grant_frames: -1,
            ..XenDomctlCreatedomain::default()
        }
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
        let with = |f: &dyn Fn(&mut XenDomctlCreatedomain)| {
            let mut c = config(cdf::REQUIRED);
            f(&mut c);
            sanitise_createdomain(&c)
        };
        assert!(with(&|c| c.iommu_opts = 1).is_err());
        assert!(with(&|c| c.grant_opts = 2).is_err(), "grant v2");
        assert!(
            with(&|c| c.grant_opts = 0x101).is_err(),
            "grant_opts above the mask"
        );
        assert_eq!(with(&|c| c.grant_opts = 0), Ok(()));
        assert!(
            with(&|c| c.max_grant_frames = 0).is_err(),
            "grant_table_init"
        );
        assert_eq!(with(&|c| c.max_grant_frames = 1), Ok(()));
        assert_eq!(with(&|c| c.max_grant_frames = 128), Ok(()));
        assert!(with(&|c| c.altp2m_opts = 1).is_err());
        assert!(with(&|c| c.vmtrace_size = 0x1000).is_err());
        assert!(with(&|c| c.arch.gic_version = 1).is_err(), "GICv2");
        assert_eq!(with(&|c| c.arch.gic_version = 2), Ok(()));
        assert!(with(&|c| c.arch.sve_vl = 1).is_err());
        assert!(with(&|c| c.arch.tee_type = 1).is_err());
        assert!(with(&|c| c.arch.nr_spis = 65).is_err());
        assert_eq!(with(&|c| c.arch.nr_spis = 64), Ok(()));
        assert!(with(&|c| c.max_vcpus = 0).is_err());
        assert_eq!(with(&|c| c.max_vcpus = 2), Ok(()));
        assert!(with(&|c| c.max_vcpus = 256).is_err(), "256 vCPUs");
    }
}
