//! `vm_assist` (21): Arm Xen's `VM_ASSIST_VALID` is the runstate update flag only.

use memops::TableMem;

use super::{Ctx, Reply};
use crate::arch::PhysMem;
use crate::xen::domu::vmasst;
use crate::xen::Errno;

/// `vm_assist(...)` from the caller's registers.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    Reply::ret(vm_assist(super::low32(a[0]), super::low32(a[1]), ctx))
}

/// Handle `vm_assist(cmd, type)`.
///
/// # Errors
/// `-EINVAL` for another type, `-ENOSYS` for another command.
pub fn vm_assist<M: PhysMem + TableMem>(
    cmd: u32,
    ty: u32,
    ctx: &mut Ctx<'_, M>,
) -> Result<u64, Errno> {
    // Arm Xen's VM_ASSIST_VALID: only the runstate update flag.
    if ty != vmasst::TYPE_RUNSTATE_UPDATE_FLAG {
        return Err(Errno::EINVAL);
    }
    let on = match cmd {
        vmasst::CMD_ENABLE => true,
        vmasst::CMD_DISABLE => false,
        _ => return Err(Errno::ENOSYS),
    };
    ctx.me()?.xen.runstate_update_flag = on;
    Ok(0)
}
