//! `sysctl` (35) for the control domain: `physinfo` (3), after Xen's
//! `xen/include/public/sysctl.h` and `do_sysctl` (xen/common/sysctl.c).
//! The guest handle is a VA of the caller.

use memops::TableMem;

use super::{Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
pub use crate::xen::abi::XEN_SYSCTL_INTERFACE_VERSION;
use crate::xen::abi::{XenSysctl, XenSysctlPhysinfo, XEN_SYSCTL_PHYSINFO};
use crate::xen::Errno;

/// `sysctl(struct xen_sysctl *)`: in Xen's `do_sysctl` order, copy in
/// (-EFAULT), the interface version (-EACCES), the right (-EPERM), then the
/// command (`physinfo` only, else -ENOSYS).
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    let arg = GuestVa(a[0]);
    let caller = ctx.caller;
    let mut op = match ctx.read::<{ XenSysctl::SIZE }>(arg) {
        Ok(b) => XenSysctl::from_bytes(&b),
        Err(e) => return Reply::ret(Err(e)),
    };
    let version = op.interface_version;
    if version != XEN_SYSCTL_INTERFACE_VERSION {
        crate::glog!(
            caller,
            Debug,
            "d{caller}: sysctl interface version {version:#x}, expected {XEN_SYSCTL_INTERFACE_VERSION:#x}"
        );
        return Reply::ret(Err(Errno::EACCES));
    }
    if !ctx.privileged() {
        return Reply::ret(Err(Errno::EPERM));
    }
    if op.cmd != XEN_SYSCTL_PHYSINFO {
        return Reply::ret(Err(Errno::ENOSYS));
    }
    op.set_member(&XenSysctlPhysinfo {
        threads_per_core: 1,
        total_pages: ctx.world.pool.total_frames(),
        free_pages: ctx.world.pool.free_frames(),
        ..XenSysctlPhysinfo::default()
    });
    Reply::ret(ctx.write(arg, &op.to_bytes()).map(|()| 0))
}
