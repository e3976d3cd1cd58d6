//! `vcpu_op` (24): register_vcpu_info, register_runstate_memory_area /
//! _phys_area; others -EINVAL as Arm Xen's `do_arm_vcpu_op`.

use memops::TableMem;

use super::{Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::xen::abi::{VcpuRegisterRunstateMemoryArea, VcpuRegisterVcpuInfo};
use crate::xen::domu::vcpuop;
use crate::xen::evtchn;
use crate::xen::Errno;
use pv_tlb::PAGE_SIZE;

/// `vcpu_op(...)` from the caller's registers.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    Reply::ret(vcpu_op(super::low32(a[0]), super::low32(a[1]), a[2], ctx))
}

/// Handle `VCPUOP_<cmd>` on vCPU `vcpu` with its struct at `arg` (a VA of the caller).
///
/// # Errors
/// Xen's errno.
pub fn vcpu_op<M: PhysMem + TableMem>(
    cmd: u32,
    vcpu: u32,
    arg: u64,
    ctx: &mut Ctx<'_, M>,
) -> Result<u64, Errno> {
    let caller = ctx.caller;
    if vcpu >= ctx.me()?.xen.evtchn.vcpus() {
        return Err(Errno::ENOENT);
    }
    match cmd {
        vcpuop::REGISTER_VCPU_INFO => {
            // Xen 4.20's order (common/domain.c, common_vcpu_op and
            // map_guest_area): copy in (-EFAULT); an offset that leaves the
            // gfn (-EINVAL); already registered (-EBUSY); an area that crosses
            // its page or is not xen_ulong_t aligned (-ENXIO); a gfn that is
            // not the caller's RAM (-EINVAL, get_page_from_gfn failing).
            let r = VcpuRegisterVcpuInfo::from_bytes(
                &ctx.read::<{ VcpuRegisterVcpuInfo::SIZE }>(GuestVa(arg))?,
            );
            let (gfn, off) = (r.mfn, u64::from(r.offset));
            if off >= PAGE_SIZE {
                return Err(Errno::EINVAL);
            }
            let ipa = gfn
                .checked_mul(PAGE_SIZE)
                .and_then(|a| a.checked_add(off))
                .ok_or(Errno::EINVAL)?;
            if ctx.me()?.xen.evtchn.vcpu_info_registered(vcpu) {
                return Err(Errno::EBUSY);
            }
            if off + evtchn::layout::VCPU_INFO_SIZE > PAGE_SIZE || off % 8 != 0 {
                return Err(Errno::ENXIO);
            }
            // hv keeps writing to `pa` for the domain's lifetime: the page
            // is pinned first (Xen's map_guest_area), given back on failure.
            ctx.with_pinned_page(ipa, |d, pa, mem, fx| {
                d.xen
                    .evtchn
                    .register_vcpu_info(caller, vcpu, pa, mem, &mut fx.upcalls)
            })?;
            Ok(0)
        }
        vcpuop::REGISTER_RUNSTATE_MEMORY_AREA | vcpuop::REGISTER_RUNSTATE_PHYS_AREA => {
            let addr =
                VcpuRegisterRunstateMemoryArea::from_bytes(
                    &ctx.read::<{ VcpuRegisterRunstateMemoryArea::SIZE }>(GuestVa(arg))?,
                )
                .addr;
            let phys = cmd == vcpuop::REGISTER_RUNSTATE_PHYS_AREA;
            crate::glog!(
                caller,
                Debug,
                "d{caller}v{vcpu}: runstate area at {addr:#x} (physical: {phys})"
            );
            let rs = ctx
                .me()?
                .xen
                .runstate
                .get_mut(vcpu as usize)
                .ok_or(Errno::ENOENT)?;
            rs.area = (addr != 0).then_some(addr);
            rs.phys = phys;
            let (enc, area) = (rs.encode(0), rs.area);
            // A physical area is written at once; a virtual one (Linux's
            // per-CPU variable) at the vCPU's next switch, through its stage 1.
            if let (true, Some(a)) = (phys, area) {
                ctx.write(GuestVa(a), &enc)?;
            }
            Ok(0)
        }
        // Arm Xen's do_arm_vcpu_op allows only the registrations.
        _ => Err(Errno::EINVAL),
    }
}
