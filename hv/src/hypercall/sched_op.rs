//! `sched_op` (hypercall 29): yield, block and shutdown.

use memops::TableMem;

use super::{low32, unknown_command, Action, CallerView, Ctx, Reply};
use crate::arch::PhysMem;
use crate::guest::GuestHandle;
use crate::xen::abi::{nr, schedop};
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
