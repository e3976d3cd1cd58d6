//! vCPU domctls: setvcpucontext, max_vcpus.

use alloc::boxed::Box;

use memops::TableMem;

use super::{get, with_domu, Answer, DOMCTL_SIZE, U, VCPU_GUEST_CONTEXT_SIZE, VGCF_ONLINE};
use crate::arch::{El1Reg, PhysMem};
use crate::domain::DomId;
use crate::hypercall::{Ctx, GuestVa};
use crate::vcpu::Vcpu;
use crate::world::World;
use crate::xen::Errno;

/// `XEN_DOMCTL_max_vcpus`: up to the count createdomain sized the domain for
/// (its event channels and runstate areas), before it runs.
pub fn max_vcpus<M>(sh: &mut World<M>, buf: &[u8; DOMCTL_SIZE], domain: DomId) -> Answer {
    with_domu(sh, domain, |d| match get::<4>(buf, U) as u32 {
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
pub fn setvcpucontext<M: PhysMem + TableMem>(
    ctx: &mut Ctx<'_, M>,
    buf: &[u8; DOMCTL_SIZE],
    domain: DomId,
) -> Answer {
    let vcpu = get::<4>(buf, U) as u32;
    let ctxt = get::<8>(buf, U + 8);
    let mut c = [0u8; VCPU_GUEST_CONTEXT_SIZE];
    if let Err(e) = ctx.copy_in(GuestVa(ctxt), &mut c) {
        log::debug!("setvcpucontext: {e:?}");
        return Answer::err(e);
    }
    with_domu(ctx.world, domain, |d| {
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
