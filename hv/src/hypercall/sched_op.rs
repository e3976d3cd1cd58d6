//! `sched_op` (hypercall 29): yield, block and shutdown.

use memops::TableMem;

use super::{low32, unknown_command, Action, CallerView, Ctx, GuestVa, Reply};
use crate::arch::PhysMem;
use crate::domain::EndReason;
use crate::guest::GuestHandle;
use crate::xen::abi::{nr, schedop, virq};
use crate::xen::{Errno, ShutdownReason};

/// A `sched_op` sub-command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SchedOp {
    /// `SCHEDOP_yield`.
    Yield,
    /// `SCHEDOP_block` (until an event is pending for the vCPU).
    Block,
    /// `SCHEDOP_shutdown`: `struct sched_shutdown { unsigned int reason; }` at the handle.
    Shutdown(GuestHandle<u32>),
}

impl SchedOp {
    /// `do_sched_op(int cmd, void *arg)`; `None` for an unknown command.
    #[must_use]
    pub fn decode(a: [u64; 5]) -> Option<Self> {
        match low32(a[0]) {
            schedop::YIELD => Some(SchedOp::Yield),
            schedop::BLOCK => Some(SchedOp::Block),
            schedop::SHUTDOWN => Some(SchedOp::Shutdown(GuestHandle::new(a[1]))),
            _ => None,
        }
    }
}

/// `sched_op(cmd, arg)`.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    if low32(a[0]) == schedop::REMOTE_SHUTDOWN {
        return remote_shutdown(GuestVa(a[1]), ctx);
    }
    let Some(op) = SchedOp::decode(a) else {
        return unknown_command(ctx.caller, nr::SCHED_OP, a[0]);
    };
    match ctx.caller_view() {
        Ok(mut v) => sched_op(op, &mut v),
        Err(e) => Reply::ret(Err(e)),
    }
}

/// Handle `sched_op`. A bad `SCHEDOP_shutdown` argument answers `-EFAULT`
/// (unreadable) or `-EINVAL` (reason above `SHUTDOWN_MAX`) and the guest runs on.
pub fn sched_op<M: PhysMem + TableMem>(op: SchedOp, ctx: &mut CallerView<'_, M>) -> Reply {
    match op {
        SchedOp::Yield => Reply {
            ret: 0,
            action: Action::Yield,
        },
        SchedOp::Block => Reply {
            ret: 0,
            action: Action::Block,
        },
        SchedOp::Shutdown(h) => {
            let reason = match ctx.mem.read(h) {
                Ok(r) => r,
                Err(e) => {
                    crate::glog!(ctx.domid, Debug, "d{}: sched_op shutdown: {e}", ctx.domid);
                    return Reply {
                        ret: e.errno().to_x0(),
                        action: Action::Continue,
                    };
                }
            };
            match ShutdownReason::from_raw(reason) {
                Some(r) => Reply {
                    ret: 0,
                    action: Action::Shutdown(r),
                },
                None => {
                    crate::glog!(
                        ctx.domid,
                        Warn,
                        "d{}: sched_op shutdown: unknown reason {reason}",
                        ctx.domid
                    );
                    Reply {
                        ret: Errno::EINVAL.to_x0(),
                        action: Action::Continue,
                    }
                }
            }
        }
    }
}

/// `SCHEDOP_remote_shutdown` (`struct sched_remote_shutdown { domid_t
/// domain_id; unsigned int reason; }`, 8 bytes), as Xen's `do_sched_op`:
/// -EFAULT for an unreadable argument, -ESRCH for no such domain, -EPERM
/// unless the caller is privileged (XSM dummy `XSM_DM_PRIV`; hv has no
/// device-model domains), then `domain_shutdown(d, reason)`: the target's
/// vCPUs stop as for its own `SCHEDOP_shutdown` (the caller's pCPU goes back
/// to its loop top first, [`super::Effects::deschedule`]); the caller itself
/// shuts down at once; a domain already shutting down is left as it is
/// (0); one without running vCPUs (created, never unpaused) is marked shut
/// down and `VIRQ_DOM_EXC` raised now (Xen's `__domain_finalise_shutdown`).
/// Deviation: a reason Xen does not know (above `SHUTDOWN_soft_reset`)
/// is -EINVAL here (Xen records any code).
fn remote_shutdown<M: PhysMem + TableMem>(arg: GuestVa, ctx: &mut Ctx<'_, M>) -> Reply {
    let caller = ctx.caller;
    let raw = match ctx.read::<8>(arg) {
        Ok(b) => b,
        Err(e) => {
            crate::glog!(
                caller,
                Debug,
                "d{caller}: sched_op remote_shutdown: {arg}: {e:?}"
            );
            return Reply::ret(Err(e));
        }
    };
    let target = u16::from_le_bytes([raw[0], raw[1]]);
    let reason = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    if ctx.world.domain(target).is_none() {
        crate::glog!(
            caller,
            Debug,
            "d{caller}: remote_shutdown of d{target}: no such domain: -ESRCH"
        );
        return Reply::ret(Err(Errno::ESRCH));
    }
    if !ctx.privileged() {
        crate::glog!(
            caller,
            Debug,
            "d{caller}: remote_shutdown of d{target}: not privileged: -EPERM"
        );
        return Reply::ret(Err(Errno::EPERM));
    }
    let Some(r) = ShutdownReason::from_raw(reason) else {
        crate::glog!(
            caller,
            Warn,
            "d{caller}: remote_shutdown of d{target}: unknown reason {reason}: -EINVAL"
        );
        return Reply::ret(Err(Errno::EINVAL));
    };
    if target == caller {
        return Reply::then(Action::Shutdown(r));
    }
    let Some(d) = ctx.world.entry(target) else {
        return Reply::ret(Err(Errno::ESRCH));
    };
    if d.ending.is_some() {
        return Reply::ret(Ok(0));
    }
    d.ending = Some(EndReason::Shutdown(r));
    log::info!("d{caller}: remote_shutdown of d{target} ({r:?})");
    if d.live_vcpus == 0 {
        // Nothing to stop: shut down now, xenstored told now.
        let w = &mut *ctx.world;
        super::virq::send_global_virq(
            &mut w.domains,
            &mut w.mem,
            virq::DOM_EXC,
            &mut ctx.fx.upcalls,
        );
    } else {
        ctx.fx.deschedule = true;
    }
    Reply::ret(Ok(0))
}
