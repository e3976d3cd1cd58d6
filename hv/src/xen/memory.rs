//! `memory_op` (hypercall 12): the single entry point for `XENMEM_*` commands.
//!
//! Memory operations need more than the caller's view ([`super::HypercallCtx`]):
//! other domains (foreign mappings), the guest page pool and the CPU (to
//! execute the TLB plan of what changed). The run loop therefore calls
//! [`memory_op`] with a [`MemoryOpCtx`] over the whole system, and this
//! module forwards to `memops::MemCtx::memory_op` (Xen's semantics and
//! layouts live there), then executes the returned flush: the plan through
//! [`crate::tlb`], then the page releases into the pool.
//!
//! Host memory is shared by three users during one call (memops' table
//! accesses, the caller's guest-handle copies and page scrubbing); they take
//! turns through a `RefCell`, one short borrow per access.

use core::cell::RefCell;
use core::sync::atomic::Ordering;

use memops::{
    FrameTable, GuestCopy, InvalidationSet, MemCtx, MemEnv, MemOpRet, Physmap, Stage2View, TableMem,
};
use pv_tlb::{DeferredFlush, Ipa, PhysAddr, Plan, Vmid};

use super::Errno;
use crate::arch::{Arch, PhysMem};
use crate::domain::{DomId, Domain};
use crate::guest::GuestMemory;

/// Entries of a batch processed per invocation before a continuation (the
/// pCPU is never held for a whole large batch).
pub const BATCH_BUDGET: u64 = 512;

/// Everything a memory operation may touch.
pub struct MemoryOpCtx<'a, M: PhysMem + TableMem> {
    /// The calling domain.
    pub caller: DomId,
    /// The calling vCPU's stage 1 (guest handles are virtual addresses).
    pub s1: Option<super::s1walk::Stage1>,
    /// Host RAM and stage-2 table memory.
    pub mem: &'a mut M,
    /// Every live domain (the caller included).
    pub domains: &'a mut [Domain],
    /// The guest page pool.
    pub pool: &'a mut FrameTable,
    /// The flush gatherer (holds the TLB policy).
    pub flush: &'a mut DeferredFlush,
    /// This CPU, to execute TLB plans.
    pub arch: &'a mut dyn Arch,
    /// Free bytes of hv's heap (`crate::mm::heap::free`): mappings that
    /// would eat into its reserve fail with `-ENOMEM`.
    pub heap_free: fn() -> usize,
}

/// What the run loop does with the vCPU after `memory_op`.
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
    s1: Option<super::s1walk::Stage1>,
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
    fn grant_frame(&mut self, domid: u16, idx: u64, gpfn: u64) -> Option<PhysAddr> {
        self.domains
            .iter_mut()
            .find(|d| d.id == domid)
            .and_then(|d| d.xen.grant.map_frame(idx, gpfn).ok())
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

/// Handle `memory_op(cmd, arg)` for the calling domain: memops decides,
/// hv executes the flush it returns (plan, then page releases).
pub fn memory_op<M: PhysMem + TableMem>(
    cmd: u64,
    arg: u64,
    ctx: &mut MemoryOpCtx<'_, M>,
) -> MemoryOpResult {
    let Some(view) = ctx
        .domains
        .iter()
        .find(|d| d.id == ctx.caller)
        .map(|d| d.stage2().view())
    else {
        return MemoryOpResult::Done(Errno::ESRCH.to_x0());
    };
    let recorded = ctx.flush.stats().recorded;
    let cell = RefCell::new(&mut *ctx.mem);
    let mut tables = Tables(&cell);
    let mut guest = Caller {
        view,
        s1: ctx.s1,
        mem: &cell,
    };
    let mut env = Env {
        domains: &mut *ctx.domains,
        mem: &cell,
        arch: &mut *ctx.arch,
        heap_free: ctx.heap_free,
    };
    let out = MemCtx {
        env: &mut env,
        tables: &mut tables,
        frames: &mut *ctx.pool,
        flush: &mut *ctx.flush,
        budget: BATCH_BUDGET,
    }
    .memory_op(ctx.caller, &mut guest, cmd, arg);
    crate::tlb::execute_ops(out.flush.plan.ops(), env.arch);
    if let Err(e) = ctx.pool.release(&out.flush.released) {
        log::error!("d{}: memory_op: releasing pages: {e}", ctx.caller);
    }
    let delta = ctx.flush.stats().recorded.saturating_sub(recorded);
    super::hvop::P2M_OPS.fetch_add(delta, Ordering::Relaxed);
    match out.ret {
        MemOpRet::Done(v) => {
            if v < 0 {
                crate::glog!(
                    ctx.caller,
                    Debug,
                    "d{}: memory_op cmd {cmd:#x} arg {arg:#x}: {v}",
                    ctx.caller
                );
            }
            MemoryOpResult::Done(v as u64)
        }
        MemOpRet::Continue { cmd } => MemoryOpResult::Continue { cmd },
    }
}
