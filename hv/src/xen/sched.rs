//! `sched_op` (hypercall 29): yield, block and shutdown.

use core::fmt;

use memops::TableMem;

use super::abi::shutdown;
use super::{Action, Errno, HypercallCtx, Outcome, SchedOp};
use crate::arch::PhysMem;

/// Why a domain shut down (`SHUTDOWN_*`, xen/include/public/sched.h).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`.
    Poweroff,
    /// `SHUTDOWN_reboot`.
    Reboot,
    /// `SHUTDOWN_suspend`.
    Suspend,
    /// `SHUTDOWN_crash`.
    Crash,
    /// `SHUTDOWN_watchdog`.
    Watchdog,
    /// `SHUTDOWN_soft_reset`.
    SoftReset,
}

impl ShutdownReason {
    /// Decode a guest's `reason`.
    #[must_use]
    pub const fn from_raw(r: u32) -> Option<Self> {
        Some(match r {
            shutdown::POWEROFF => ShutdownReason::Poweroff,
            shutdown::REBOOT => ShutdownReason::Reboot,
            shutdown::SUSPEND => ShutdownReason::Suspend,
            shutdown::CRASH => ShutdownReason::Crash,
            shutdown::WATCHDOG => ShutdownReason::Watchdog,
            shutdown::SOFT_RESET => ShutdownReason::SoftReset,
            _ => return None,
        })
    }
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShutdownReason::Poweroff => "poweroff",
            ShutdownReason::Reboot => "reboot",
            ShutdownReason::Suspend => "suspend",
            ShutdownReason::Crash => "crash",
            ShutdownReason::Watchdog => "watchdog",
            ShutdownReason::SoftReset => "soft_reset",
        })
    }
}

/// Handle `sched_op`. A bad `SCHEDOP_shutdown` argument answers `-EFAULT`
/// (unreadable) or `-EINVAL` (reason above `SHUTDOWN_MAX`) and the guest runs on.
pub fn sched_op<M: PhysMem + TableMem>(op: SchedOp, ctx: &mut HypercallCtx<'_, M>) -> Outcome {
    match op {
        SchedOp::Yield => Outcome {
            ret: 0,
            action: Action::Yield,
        },
        SchedOp::Block => Outcome {
            ret: 0,
            action: Action::Block,
        },
        SchedOp::Shutdown(h) => {
            let reason = match ctx.mem.read(h) {
                Ok(r) => r,
                Err(e) => {
                    crate::glog!(ctx.domid, Debug, "d{}: sched_op shutdown: {e}", ctx.domid);
                    return Outcome {
                        ret: e.errno().to_x0(),
                        action: Action::Continue,
                    };
                }
            };
            match ShutdownReason::from_raw(reason) {
                Some(r) => Outcome {
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
                    Outcome {
                        ret: Errno::EINVAL.to_x0(),
                        action: Action::Continue,
                    }
                }
            }
        }
    }
}
