//! Shutdown reasons (`SHUTDOWN_*`); the `sched_op` call is `hypercall::sched_op`.

use core::fmt;

use super::abi::shutdown;

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
