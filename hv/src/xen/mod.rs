//! Xen's ABI (numbers, layouts, errno) and the per-domain Xen state hv keeps:
//! event channels, grant table, console line and ring, runstate, shared
//! info. The hypercalls that act on it are in [`crate::hypercall`].

pub mod abi;
pub mod console;
pub mod console_ring;
pub mod domu;
pub mod errno;
pub mod evtchn;
pub mod evtchn_fifo;
pub mod grant;
pub mod hvop;
pub mod s1walk;
pub mod sched;

pub use console::{ConsoleLine, ConsoleSink};
pub use errno::Errno;
pub use sched::ShutdownReason;
