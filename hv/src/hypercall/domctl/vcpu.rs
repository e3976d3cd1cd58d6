//! vCPU domctls: setvcpucontext, max_vcpus.

use alloc::boxed::Box;

use memops::TableMem;

use super::{with_domu, Answer, VGCF_ONLINE};
use crate::arch::{El1Reg, PhysMem};
use crate::hypercall::{Ctx, GuestVa};
use crate::vcpu::Vcpu;
use crate::world::World;
use crate::xen::abi::{VcpuGuestContext, XenDomctl, XenDomctlMaxVcpus, XenDomctlVcpucontext};
use crate::xen::Errno;

/// `XEN_DOMCTL_max_vcpus`: up to the count createdomain sized the domain for
/// (its event channels and runstate areas), before it runs.
pub fn max_vcpus<M>(sh: &mut World<M>, op: &XenDomctl) -> Answer {
    let m: XenDomctlMaxVcpus = op.member();
    with_domu(sh, op.domain, |d| match m.max {
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
    })
}

/// `XEN_DOMCTL_setvcpucontext`: vCPU `vcpu`'s registers from the caller's
/// `struct vcpu_guest_context` (a VA of the caller), for a paused domain.
pub fn setvcpucontext<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, op: &XenDomctl) -> Answer {
    let XenDomctlVcpucontext { vcpu, ctxt, .. } = op.member();
    let c = match ctx.read::<{ VcpuGuestContext::SIZE }>(GuestVa(ctxt)) {
        Ok(b) => VcpuGuestContext::from_bytes(&b),
        Err(e) => {
            log::debug!("setvcpucontext: {e:?}");
            return Answer::err(e);
        }
    };
    with_domu(ctx.world, op.domain, |d| {
        if vcpu >= d.max_vcpus || d.unpaused {
            log::debug!(
                "d{}: setvcpucontext vcpu {vcpu}: only the vCPUs of a paused domain",
                d.id
            );
            return Answer::err(Errno::EINVAL);
        }
        let r = &c.user_regs;
        let cpsr = r.cpsr;
        // AArch64 EL1h/EL1t/EL0t only.
        if cpsr & (1 << 4) != 0 || !matches!(cpsr & 0xf, 0b0101 | 0b0100 | 0b0000) {
            log::debug!(
                "d{}: setvcpucontext: cpsr {cpsr:#x} is no AArch64 EL1/EL0 mode",
                d.id
            );
            return Answer::err(Errno::EINVAL);
        }
        let mut v = Vcpu::new(d.id, vcpu, r.pc64, 0);
        v.gprs.x[..31].copy_from_slice(&r.x);
        v.gprs.pstate = cpsr;
        v.gprs.sp_el0 = r.sp_el0;
        v.sysregs.set(El1Reg::SpEl1, r.sp_el1);
        v.sysregs.set(El1Reg::ElrEl1, r.elr_el1);
        v.sysregs.set(El1Reg::SpsrEl1, r.spsr_el1);
        if c.sctlr != 0 {
            v.sysregs.set(El1Reg::SctlrEl1, c.sctlr);
        }
        v.sysregs.set(El1Reg::TcrEl1, c.ttbcr);
        v.sysregs.set(El1Reg::Ttbr0El1, c.ttbr0);
        v.sysregs.set(El1Reg::Ttbr1El1, c.ttbr1);
        // VGCF_online (public/arch-arm.h): the vCPU runs when the
        // domain is unpaused (Xen's arch_set_info_guest clears
        // _VPF_down); vCPU 0 always does.
        let online = vcpu == 0 || c.flags & VGCF_ONLINE != 0;
        d.vcpu_contexts.retain(|(x, _)| x.id != vcpu);
        if d.vcpu_contexts.try_reserve(1).is_err() {
            return Answer::err(Errno::ENOMEM);
        }
        d.vcpu_contexts.push((Box::new(v), online));
        Answer::ok(false)
    })
}
