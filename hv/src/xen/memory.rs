//! `memory_op` (hypercall 12): the single entry point for `XENMEM_*` commands.
//!
//! Memory operations need more than the caller's view ([`super::HypercallCtx`]):
//! other domains (foreign mappings), the frame allocator and the CPU (to
//! execute the TLB plan of what changed). The run loop therefore calls
//! [`memory_op`] with a [`MemoryOpCtx`] over the whole system.
//!
//! The handlers (populate_physmap, add_to_physmap(_batch),
//! remove_from_physmap(_batch), ...) come from `memops`; until they are wired
//! in here every command answers `-ENOSYS`, as Xen does for unknown commands.

use memops::TableMem;

use super::Errno;
use crate::arch::{Arch, PhysMem};
use crate::domain::{DomId, Domain, FrameSource};

/// Everything a memory operation may touch.
pub struct MemoryOpCtx<'a, M: PhysMem + TableMem> {
    /// The calling domain.
    pub caller: DomId,
    /// Host RAM and stage-2 table memory.
    pub mem: &'a mut M,
    /// Every live domain (the caller included).
    pub domains: &'a mut [Domain],
    /// hv's frame allocator.
    pub frames: &'a mut dyn FrameSource,
    /// This CPU, to execute TLB plans (`crate::tlb::execute`).
    pub arch: &'a mut dyn Arch,
}

impl<M: PhysMem + TableMem> MemoryOpCtx<'_, M> {
    /// The calling domain.
    pub fn caller(&mut self) -> Option<&mut Domain> {
        let id = self.caller;
        self.domains.iter_mut().find(|d| d.id == id)
    }
}

/// Handle `memory_op(cmd, arg)` for the calling domain.
///
/// # Errors
/// `-ENOSYS` for every command (memops handlers are not wired in yet).
pub fn memory_op<M: PhysMem + TableMem>(
    cmd: u64,
    arg: u64,
    ctx: &mut MemoryOpCtx<'_, M>,
) -> Result<u64, Errno> {
    log::debug!(
        "d{}: memory_op cmd {cmd} arg {arg:#x}: not implemented",
        ctx.caller
    );
    Err(Errno::ENOSYS)
}
