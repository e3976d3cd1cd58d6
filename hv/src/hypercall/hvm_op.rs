//! `hvm_op` (34): `HVMOP_get_param` / `set_param` (public/hvm/hvm_op.h).

use memops::TableMem;

use super::{Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::xen::abi::XenHvmParam;
use crate::xen::domu::{hvm_param, hvmop};
use crate::xen::Errno;

/// `hvm_op(...)` from the caller's registers.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    Reply::ret(hvm_op(super::low32(a[0]), a[1], ctx))
}

/// Handle `HVMOP_<cmd>` with `struct xen_hvm_param` at `arg` (a VA of the caller).
///
/// # Errors
/// Xen's errno.
pub fn hvm_op<M: PhysMem + TableMem>(
    cmd: u32,
    arg: u64,
    ctx: &mut Ctx<'_, M>,
) -> Result<u64, Errno> {
    match cmd {
        hvmop::GET_PARAM | hvmop::SET_PARAM => {
            let p = XenHvmParam::from_bytes(&ctx.read::<{ XenHvmParam::SIZE }>(GuestVa(arg))?);
            let d = ctx.self_or(p.domid)?;
            let index = p.index;
            if index >= hvm_param::NR {
                return Err(Errno::EINVAL);
            }
            if cmd == hvmop::SET_PARAM {
                // Only a control domain sets parameters (of any domain).
                if !ctx.privileged() {
                    return Err(Errno::EPERM);
                }
                let dom = ctx
                    .world
                    .domains
                    .iter_mut()
                    .find(|x| x.id == d)
                    .ok_or(Errno::ESRCH)?;
                dom.xen.params[index as usize] = p.value;
                return Ok(0);
            }
            let v = ctx
                .world
                .domains
                .iter()
                .find(|x| x.id == d)
                .ok_or(Errno::ESRCH)?
                .xen
                .params[index as usize];
            let value = core::mem::offset_of!(XenHvmParam, value) as u64;
            ctx.write(GuestVa(arg).add(value), &v.to_le_bytes())?;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
