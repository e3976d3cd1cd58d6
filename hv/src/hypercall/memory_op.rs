//! `memory_op` (hypercall 12): the single entry point for `XENMEM_*` commands.
//!
//! Memory operations touch other domains (foreign mappings), the guest page
//! pool and the CPU (to execute the TLB plan of what changed): this module
//! forwards to `memops::MemCtx::memory_op` (Xen's semantics and layouts live
//! there) over the [`Ctx`]'s world, then executes the returned flush: the
//! plan through [`crate::tlb`], then the page releases into the pool.
//!
//! Host memory is shared by three users during one call (memops' table
//! accesses, the caller's guest-handle copies and page scrubbing); they take
//! turns through a `RefCell`, one short borrow per access.

use core::cell::RefCell;
use core::sync::atomic::Ordering;

use memops::{
    FrameTable, GuestCopy, InvalidationSet, MemCtx, MemEnv, MemOpRet, Physmap, Stage2View, TableMem,
};
use pv_tlb::{Flush, Ipa, PhysAddr, Plan, Vmid};

use super::{Action, Ctx, Reply};
use crate::arch::{Arch, PhysMem};
use crate::domain::Domain;
use crate::guest::GuestMemory;
use crate::world::World;
use crate::xen::Errno;

/// Entries of a batch processed per invocation before a continuation (the
/// pCPU is never held for a whole large batch).
pub const BATCH_BUDGET: u64 = 512;

/// What `memory_op` answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemoryOpResult {
    /// Finished: this value goes to x0.
    Done(u64),
    /// Preempted (Xen's hypercall continuation): x0 = `cmd` and the pc goes
    /// back onto the `HVC`, so the guest re-issues the call where it stopped.
    Continue {
        /// The command with the resume index.
        cmd: u64,
    },
}

/// memops' table accesses through the shared host memory.
struct Tables<'c, 'm, M>(&'c RefCell<&'m mut M>);

impl<M: TableMem> TableMem for Tables<'_, '_, M> {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        self.0.borrow_mut().alloc_table()
    }
    fn free_table(&mut self, pa: PhysAddr) {
        self.0.borrow_mut().free_table(pa);
    }
    fn read_entry(&self, table: PhysAddr, index: usize) -> u64 {
        self.0.borrow().read_entry(table, index)
    }
    fn write_entry(&mut self, table: PhysAddr, index: usize, value: u64) {
        self.0.borrow_mut().write_entry(table, index, value);
    }
    fn invalidate_now(&mut self, set: &InvalidationSet) {
        self.0.borrow_mut().invalidate_now(set);
    }
    fn invalidate_now_for(&mut self, root: PhysAddr, set: &InvalidationSet) {
        self.0.borrow_mut().invalidate_now_for(root, set);
    }
}

/// The caller's guest handles, translated through its stage-2.
struct Caller<'c, 'm, M> {
    view: Stage2View,
    s1: Option<crate::xen::s1walk::Stage1>,
    mem: &'c RefCell<&'m mut M>,
}

impl<M: PhysMem + TableMem> GuestCopy for Caller<'_, '_, M> {
    fn copy_from(&mut self, ipa: Ipa, buf: &mut [u8]) -> Result<(), memops::Error> {
        let mut m = self.mem.borrow_mut();
        GuestMemory::from_view(self.view, &mut **m)
            .with_stage1(self.s1)
            .copy_from_guest(ipa, buf)
            .map_err(|_| memops::Error::Fault { ipa })
    }
    fn copy_to(&mut self, ipa: Ipa, buf: &[u8]) -> Result<(), memops::Error> {
        let mut m = self.mem.borrow_mut();
        GuestMemory::from_view(self.view, &mut **m)
            .with_stage1(self.s1)
            .copy_to_guest(ipa, buf)
            .map_err(|_| memops::Error::Fault { ipa })
    }
}

/// The domains as memops sees them.
struct Env<'d, 'c, 'm, M> {
    domains: &'d mut [Domain],
    mem: &'c RefCell<&'m mut M>,
    arch: &'d mut dyn Arch,
    heap_free: fn() -> usize,
}

impl<M: PhysMem + TableMem> MemEnv for Env<'_, '_, '_, M> {
    fn physmap(&self, domid: u16) -> Option<&Physmap> {
        self.domains
            .iter()
            .find(|d| d.id == domid)
            .map(Domain::physmap)
    }
    fn physmap_mut(&mut self, domid: u16) -> Option<&mut Physmap> {
        self.domains
            .iter_mut()
            .find(|d| d.id == domid)
            .map(Domain::physmap_mut)
    }
    fn is_privileged(&self, domid: u16) -> bool {
        self.domains.iter().any(|d| d.id == domid && d.privileged)
    }
    fn vmid(&self, domid: u16) -> Option<Vmid> {
        self.domains
            .iter()
            .find(|d| d.id == domid)
            .map(Domain::vmid)
    }
    fn shared_info(&self, domid: u16) -> Option<PhysAddr> {
        // The page of the domain's event channels (xen::domu), if it has one.
        self.domains
            .iter()
            .find(|d| d.id == domid)
            .and_then(|d| d.xen.shared_info())
    }
    fn grant_frame(
        &mut self,
        frames: &mut FrameTable,
        domid: u16,
        idx: u64,
        gpfn: u64,
    ) -> Option<PhysAddr> {
        // Status frames (bit 31, v2) and indices past the maximum: -EINVAL.
        let n = u32::try_from(idx).ok()?.checked_add(1)?;
        let d = self.domains.iter_mut().find(|d| d.id == domid)?;
        let mut mem = self.mem.borrow_mut();
        if let Err(e) = d.xen.grow_grant(domid, n, frames, &mut **mem) {
            crate::glog!(domid, Debug, "d{domid}: grant frame {idx}: {e:?}");
            return None;
        }
        d.xen.grant.map_frame(idx, gpfn).ok()
    }
    fn grant_max_frames(&self, domid: u16) -> Option<u32> {
        self.domains
            .iter()
            .find(|d| d.id == domid)
            .map(|d| d.xen.grant.max_frames())
    }
    fn acquire_grant_frame(
        &mut self,
        frames: &mut FrameTable,
        domid: u16,
        idx: u64,
    ) -> Option<PhysAddr> {
        let n = u32::try_from(idx).ok()?.checked_add(1)?;
        let d = self.domains.iter_mut().find(|d| d.id == domid)?;
        let mut mem = self.mem.borrow_mut();
        d.xen.grow_grant(domid, n, frames, &mut **mem).ok()?;
        d.xen.grant.frame(idx)
    }
    fn scrub(&mut self, pa: PhysAddr) {
        self.mem.borrow_mut().zero_frame(pa);
    }
    fn execute(&mut self, plan: &Plan) {
        crate::tlb::execute_ops(plan.ops(), self.arch);
    }
    fn heap_room(&self, records: u64) -> bool {
        crate::mm::heap::room_for_records((self.heap_free)(), records)
    }
}

/// `memory_op(cmd, arg)`: a preempted batch continues with x0 = the command
/// and its resume index (x1, x2 unchanged), as Xen's continuation on Arm.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    if let Some(r) = stat_op(a[0], a[1], ctx) {
        return Reply::ret(r);
    }
    match memory_op(a[0], a[1], ctx) {
        MemoryOpResult::Done(x0) => Reply {
            ret: x0,
            action: Action::Continue,
        },
        MemoryOpResult::Continue { cmd } => Reply::then(Action::Continuation {
            args: [cmd, a[1], a[2]],
            block: false,
        }),
    }
}

/// `XENMEM_current_reservation` (3), `XENMEM_maximum_reservation` (4).
pub const XENMEM_CURRENT_RESERVATION: u64 = 3;
/// See [`XENMEM_CURRENT_RESERVATION`].
pub const XENMEM_MAXIMUM_RESERVATION: u64 = 4;
/// `XENMEM_get_sharing_freed_pages` (18), `XENMEM_get_sharing_shared_pages` (19).
pub const XENMEM_GET_SHARING_FREED_PAGES: u64 = 18;
/// See [`XENMEM_GET_SHARING_FREED_PAGES`].
pub const XENMEM_GET_SHARING_SHARED_PAGES: u64 = 19;

/// The memory_op commands that only read a number (xen/common/memory.c
/// `do_memory_op`, xen/arch/arm/mm.c `arch_memory_op`), or `None` for
/// memops' commands:
/// - `current_reservation` / `maximum_reservation`: `struct
///   xen_memory_domain { domid_t domid; }` in; the domain's `tot_pages` /
///   `max_pages`; -EINVAL for a continuation index, -EFAULT, -ESRCH for no
///   such domain, -EPERM for another domain from an unprivileged caller
///   (XSM_TARGET);
/// - `get_sharing_freed_pages` / `get_sharing_shared_pages`: 0 on Arm
///   ("memsharing not working yet"), what `xl info`'s multicalls read.
fn stat_op<M: PhysMem + TableMem>(
    cmd: u64,
    arg: u64,
    ctx: &mut Ctx<'_, M>,
) -> Option<Result<u64, Errno>> {
    let op = cmd & 0x3f; // MEMOP_CMD_MASK
    let start = cmd >> 6; // MEMOP_EXTENT_SHIFT
    match op {
        XENMEM_GET_SHARING_FREED_PAGES | XENMEM_GET_SHARING_SHARED_PAGES => Some(Ok(0)),
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION => Some((|| {
            if start != 0 {
                return Err(Errno::EINVAL);
            }
            let b = ctx.read::<2>(super::GuestVa(arg))?;
            let dom = ctx.self_or(u16::from_le_bytes(b))?;
            let d = ctx.world.domain(dom).ok_or(Errno::ESRCH)?;
            let p = d.physmap();
            Ok(if op == XENMEM_CURRENT_RESERVATION {
                p.tot_pages()
            } else {
                p.max_pages()
            })
        })()),
        _ => None,
    }
}

/// Handle `memory_op(cmd, arg)` for the calling domain: memops decides,
/// hv executes the flush it returns (plan, then page releases).
pub fn memory_op<M: PhysMem + TableMem>(
    cmd: u64,
    arg: u64,
    ctx: &mut Ctx<'_, M>,
) -> MemoryOpResult {
    let caller = ctx.caller;
    let s1 = Some(ctx.s1);
    let w = &mut *ctx.world;
    let Some(view) = w.domain(caller).map(|d| d.stage2().view()) else {
        return MemoryOpResult::Done(Errno::ESRCH.to_x0());
    };
    let recorded = w.flush.stats().recorded;
    let cell = RefCell::new(&mut w.mem);
    let mut tables = Tables(&cell);
    let mut guest = Caller {
        view,
        s1,
        mem: &cell,
    };
    let mut env = Env {
        domains: &mut w.domains,
        mem: &cell,
        arch: &mut *ctx.arch,
        heap_free: w.heap_free,
    };
    let out = MemCtx {
        env: &mut env,
        tables: &mut tables,
        frames: &mut w.pool,
        flush: &mut w.flush,
        budget: BATCH_BUDGET,
    }
    .memory_op(caller, &mut guest, cmd, arg);
    crate::tlb::execute_ops(out.flush.plan.ops(), env.arch);
    if let Err(e) = w.pool.release(&out.flush.released) {
        log::error!("d{caller}: memory_op: releasing pages: {e}");
    }
    let delta = w.flush.stats().recorded.saturating_sub(recorded);
    crate::counters::P2M_OPS.fetch_add(delta, Ordering::Relaxed);
    match out.ret {
        MemOpRet::Done(v) => {
            if v < 0 {
                crate::glog!(
                    caller,
                    Debug,
                    "d{caller}: memory_op cmd {cmd:#x} arg {arg:#x}: {v}"
                );
            }
            MemoryOpResult::Done(v as u64)
        }
        MemOpRet::Continue { cmd } => MemoryOpResult::Continue { cmd },
    }
}

/// A change of a domain's p2m that `grant_table_op` makes, through memops
/// as memory_op's own (the same records, references and TLB planning).
#[derive(Clone, Copy, Debug)]
pub(super) enum GrantP2m {
    /// [`MemCtx::grant_map`].
    Map {
        mapper: u16,
        gfn: u64,
        owner: u16,
        pa: PhysAddr,
        readonly: bool,
    },
    /// [`MemCtx::grant_unmap`].
    Unmap { mapper: u16, gfn: u64, pa: PhysAddr },
    /// [`MemCtx::grant_end`]: the call of `caller` ends.
    End { caller: u16, mapper: u16 },
}

/// Make `op` on the world's p2ms; the invalidation and the page references
/// it needs are gathered into `out` (run by [`run_flush`]), except what
/// memops must run at once (break-before-make over a pending invalidation).
pub(super) fn grant_p2m<M: PhysMem + TableMem>(
    w: &mut World<M>,
    arch: &mut dyn Arch,
    op: GrantP2m,
    out: &mut Flush,
) -> Result<(), memops::Error> {
    let recorded = w.flush.stats().recorded;
    let cell = RefCell::new(&mut w.mem);
    let mut tables = Tables(&cell);
    let mut env = Env {
        domains: &mut w.domains,
        mem: &cell,
        arch,
        heap_free: w.heap_free,
    };
    let mut mc = MemCtx {
        env: &mut env,
        tables: &mut tables,
        frames: &mut w.pool,
        flush: &mut w.flush,
        budget: BATCH_BUDGET,
    };
    let r = match op {
        GrantP2m::Map {
            mapper,
            gfn,
            owner,
            pa,
            readonly,
        } => mc.grant_map(mapper, gfn, owner, pa, readonly, out),
        GrantP2m::Unmap { mapper, gfn, pa } => mc.grant_unmap(mapper, gfn, pa, out),
        GrantP2m::End { caller, mapper } => {
            mc.grant_end(caller, mapper, out);
            Ok(())
        }
    };
    let delta = w.flush.stats().recorded.saturating_sub(recorded);
    crate::counters::P2M_OPS.fetch_add(delta, Ordering::Relaxed);
    r
}

/// Run what [`grant_p2m`] gathered: the plan, then the page releases.
pub(super) fn run_flush<M: PhysMem + TableMem>(
    w: &mut World<M>,
    arch: &mut dyn Arch,
    out: Flush,
    caller: u16,
) {
    crate::tlb::execute_ops(out.plan.ops(), arch);
    if let Err(e) = w.pool.release(&out.released) {
        log::error!("d{caller}: grant_table_op: releasing pages: {e}");
    }
}
