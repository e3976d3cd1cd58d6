//! `sysctl` (35) for the control domain: `physinfo` (3), after Xen's
//! `xen/include/public/sysctl.h` and `do_sysctl` (xen/common/sysctl.c).
//! The guest handle is a VA of the caller.

use memops::TableMem;

use super::domctl::{cmd, get, put};
use super::{Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::xen::Errno;

/// `XEN_SYSCTL_INTERFACE_VERSION` of Xen 4.17 to 4.20 (public/sysctl.h: "Last
/// version bump: Xen 4.17"; 4.21 moves to 0x16).
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x15;
/// `sizeof(struct xen_sysctl)`: header (8 bytes) and the 128-byte union.
pub const SYSCTL_SIZE: usize = 136;

/// `sysctl(struct xen_sysctl *)`: in Xen's `do_sysctl` order, copy in
/// (-EFAULT), the interface version (-EACCES), the right (-EPERM), then the
/// command (`physinfo` only, else -ENOSYS).
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    let arg = GuestVa(a[0]);
    let caller = ctx.caller;
    let mut buf = [0u8; SYSCTL_SIZE];
    if let Err(e) = ctx.copy_in(arg, &mut buf) {
        return Reply::ret(Err(e));
    }
    let version = get::<4>(&buf, 4) as u32;
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
    if get::<4>(&buf, 0) as u32 != cmd::SYSCTL_PHYSINFO {
        return Reply::ret(Err(Errno::ENOSYS));
    }
    let (total, free) = (ctx.world.pool.total_frames(), ctx.world.pool.free_frames());
    // struct xen_sysctl_physinfo (union at 8): total_pages @40, free_pages @48, scrub_pages @56.
    let u = &mut buf[8..];
    u.fill(0);
    put(u, 0, &1u32.to_le_bytes());
    put(u, 40, &total.to_le_bytes());
    put(u, 48, &free.to_le_bytes());
    Reply::ret(ctx.write(arg, &buf).map(|()| 0))
}
