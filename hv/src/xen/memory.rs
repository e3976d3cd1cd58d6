//! `memory_op` (hypercall 12): the single entry point for `XENMEM_*` commands.
//!
//! The handlers (populate_physmap, add_to_physmap(_batch), remove_from_physmap(_batch),
//! ...) live in `memops` and are wired in here; until then every command
//! answers `-ENOSYS`, as Xen does for commands it does not know.

use memops::TableMem;

use super::{Errno, HypercallCtx};
use crate::arch::PhysMem;

/// Handle `memory_op(cmd, arg)` for the calling domain.
///
/// # Errors
/// `-ENOSYS` for every command (memops handlers are not wired in yet).
pub fn memory_op<M: PhysMem + TableMem>(
    cmd: u64,
    arg: u64,
    ctx: &mut HypercallCtx<'_, M>,
) -> Result<u64, Errno> {
    log::debug!(
        "d{}: memory_op cmd {cmd} arg {arg:#x}: not implemented",
        ctx.domid
    );
    Err(Errno::ENOSYS)
}
