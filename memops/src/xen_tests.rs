//! Host tests of the memory_op handlers: ABI, ownership, errors, counts.

extern crate std;

use std::vec;
use std::vec::Vec;

use pv_tlb::{plan, DeferredFlush, Flush, Policy, TlbCounters, TlbOpKind, Vmid};

use crate::error::errno;
use crate::sim::SimTableMem;
use crate::xen::*;
use crate::*;

/// The caller's scratch RAM in the fake guest: [BASE, BASE + LEN).
const BASE: u64 = 0x4000_0000;

struct FakeGuest {
    mem: Vec<u8>,
}

impl FakeGuest {
    fn new(len: usize) -> Self {
        Self { mem: vec![0; len] }
    }
    fn range(&self, ipa: Ipa, len: usize) -> Result<core::ops::Range<usize>, Error> {
        let off = ipa.0.checked_sub(BASE).ok_or(Error::Fault { ipa })? as usize;
        let end = off.checked_add(len).ok_or(Error::Fault { ipa })?;
        if end > self.mem.len() {
            return Err(Error::Fault { ipa });
        }
        Ok(off..end)
    }
    fn put_u64s(&mut self, at: u64, v: &[u64]) {
        for (i, x) in v.iter().enumerate() {
            let o = (at - BASE) as usize + 8 * i;
            self.mem[o..o + 8].copy_from_slice(&x.to_le_bytes());
        }
    }
    fn put(&mut self, at: u64, b: &[u8]) {
        let o = (at - BASE) as usize;
        self.mem[o..o + b.len()].copy_from_slice(b);
    }
    fn i32s(&self, at: u64, n: usize) -> Vec<i32> {
        (0..n)
            .map(|i| {
                let o = (at - BASE) as usize + 4 * i;
                i32::from_le_bytes(self.mem[o..o + 4].try_into().unwrap())
            })
            .collect()
    }
}

impl GuestCopy for FakeGuest {
    fn copy_from(&mut self, ipa: Ipa, buf: &mut [u8]) -> Result<(), Error> {
        let r = self.range(ipa, buf.len())?;
        buf.copy_from_slice(&self.mem[r]);
        Ok(())
    }
    fn copy_to(&mut self, ipa: Ipa, buf: &[u8]) -> Result<(), Error> {
        let r = self.range(ipa, buf.len())?;
        self.mem[r].copy_from_slice(buf);
        Ok(())
    }
}

struct Dom {
    pm: Physmap,
    privileged: bool,
    vmid: Option<Vmid>,
}

#[derive(Default)]
struct Env {
    doms: Vec<(u16, Dom)>,
    scrubbed: u64,
    /// Every op executed (synchronously through `execute`, or by `World::exec`).
    counters: TlbCounters,
    /// Plans executed synchronously.
    sync_plans: u64,
    /// What dom0's gfn `FMAP` mapped each time a plan ran synchronously.
    fmap_at_sync: Vec<Option<P2mEntry>>,
    /// A host heap that holds at most this many physmap records (all domains).
    heap_records: Option<u64>,
}

impl Env {
    fn add(&mut self, m: &mut SimTableMem, domid: u16, privileged: bool, max: u64) {
        let pm = Physmap::new(m, domid, 40, max).unwrap();
        self.doms.push((
            domid,
            Dom {
                pm,
                privileged,
                vmid: Some(Vmid(domid + 1)),
            },
        ));
    }
    fn take(&mut self, domid: u16) -> Dom {
        let i = self.doms.iter().position(|d| d.0 == domid).unwrap();
        self.doms.remove(i).1
    }
}

impl MemEnv for Env {
    fn physmap(&self, domid: u16) -> Option<&Physmap> {
        self.doms.iter().find(|d| d.0 == domid).map(|d| &d.1.pm)
    }
    fn physmap_mut(&mut self, domid: u16) -> Option<&mut Physmap> {
        self.doms
            .iter_mut()
            .find(|d| d.0 == domid)
            .map(|d| &mut d.1.pm)
    }
    fn is_privileged(&self, domid: u16) -> bool {
        self.doms.iter().any(|d| d.0 == domid && d.1.privileged)
    }
    fn vmid(&self, domid: u16) -> Option<Vmid> {
        self.doms
            .iter()
            .find(|d| d.0 == domid)
            .and_then(|d| d.1.vmid)
    }
    fn shared_info(&self, domid: u16) -> Option<PhysAddr> {
        Some(PhysAddr(0x7000_0000 + u64::from(domid) * PAGE_SIZE))
    }
    fn scrub(&mut self, _pa: PhysAddr) {
        self.scrubbed += 1;
    }
    fn heap_room(&self, records: u64) -> bool {
        let used: u64 = self.doms.iter().map(|d| d.1.pm.mapped() as u64).sum();
        self.heap_records.is_none_or(|max| used + records <= max)
    }
    fn execute(&mut self, plan: &pv_tlb::Plan) {
        self.sync_plans += 1;
        let seen = self.physmap(DOM0).and_then(|p| p.lookup(FMAP));
        self.fmap_at_sync.push(seen);
        for op in plan.ops() {
            self.counters.record(op);
        }
    }
}

struct World {
    env: Env,
    tables: SimTableMem,
    frames: FrameTable,
    flush: DeferredFlush,
    guest: FakeGuest,
    budget: u64,
}

const DOM0: u16 = 0;
const DOMU: u16 = 1;
const POOL: PhysAddr = PhysAddr(0x1_0000_0000);

impl World {
    fn new(policy: Policy, pool_frames: u64) -> Self {
        let mut tables = SimTableMem::new();
        let mut env = Env::default();
        env.add(&mut tables, DOM0, true, 1 << 20);
        env.add(&mut tables, DOMU, false, 1 << 20);
        Self {
            env,
            tables,
            frames: FrameTable::new(POOL, pool_frames),
            flush: DeferredFlush::new(policy),
            guest: FakeGuest::new(16 << 20),
            budget: 4096,
        }
    }

    /// A memory-op context on the world (its `budget`), outside a guest call.
    fn ctx(&mut self) -> MemCtx<'_, Env, SimTableMem> {
        MemCtx {
            env: &mut self.env,
            tables: &mut self.tables,
            frames: &mut self.frames,
            flush: &mut self.flush,
            budget: self.budget,
        }
    }

    /// Execute a flush as hv does: BBM flushes that happened synchronously,
    /// then the plan, then the releases.
    fn exec(&mut self, f: Flush) {
        for s in core::mem::take(&mut self.tables.sync_invalidations) {
            for op in plan(Vmid(0), &s, &self.flush.policy()).ops() {
                self.env.counters.record(op);
            }
        }
        for op in f.plan.ops() {
            self.env.counters.record(op);
        }
        self.frames.release(&f.released).unwrap();
    }

    /// memory_op, re-issuing continuations until done; returns (ret, invocations).
    fn op(&mut self, caller: u16, cmd: u64, arg: u64) -> (i64, u32) {
        let mut cmd = cmd;
        let mut n = 0;
        loop {
            n += 1;
            let out = MemCtx {
                env: &mut self.env,
                tables: &mut self.tables,
                frames: &mut self.frames,
                flush: &mut self.flush,
                budget: self.budget,
            }
            .memory_op(caller, &mut self.guest, cmd, arg);
            self.exec(out.flush);
            match out.ret {
                MemOpRet::Done(r) => return (r, n),
                MemOpRet::Continue { cmd: c } => {
                    assert_eq!(c & MEMOP_CMD_MASK, cmd & MEMOP_CMD_MASK);
                    assert!(c >> MEMOP_EXTENT_SHIFT > cmd >> MEMOP_EXTENT_SHIFT);
                    cmd = c;
                }
            }
        }
    }

    fn populate(&mut self, caller: u16, domid: u16, gfns: &[u64], order: u32) -> i64 {
        let list = BASE + 0x10_0000;
        self.guest.put_u64s(list, gfns);
        let mut s = [0u8; MemoryReservation::SIZE];
        s[0..8].copy_from_slice(&list.to_le_bytes());
        s[8..16].copy_from_slice(&(gfns.len() as u64).to_le_bytes());
        s[16..20].copy_from_slice(&order.to_le_bytes());
        s[24..26].copy_from_slice(&domid.to_le_bytes());
        self.guest.put(BASE, &s);
        self.op(caller, XENMEM_POPULATE_PHYSMAP, BASE).0
    }

    fn decrease(&mut self, caller: u16, domid: u16, gfns: &[u64]) -> i64 {
        let list = BASE + 0x10_0000;
        self.guest.put_u64s(list, gfns);
        let mut s = [0u8; MemoryReservation::SIZE];
        s[0..8].copy_from_slice(&list.to_le_bytes());
        s[8..16].copy_from_slice(&(gfns.len() as u64).to_le_bytes());
        s[24..26].copy_from_slice(&domid.to_le_bytes());
        self.guest.put(BASE, &s);
        self.op(caller, XENMEM_DECREASE_RESERVATION, BASE).0
    }

    /// add_to_physmap_batch gmfn_foreign: map `idxs` of `fd` at `gpfns` of the caller.
    fn map_foreign(
        &mut self,
        caller: u16,
        fd: u16,
        idxs: &[u64],
        gpfns: &[u64],
    ) -> (i64, Vec<i32>) {
        let (ia, ga, ea) = (BASE + 0x10_0000, BASE + 0x50_0000, BASE + 0x90_0000);
        self.guest.put_u64s(ia, idxs);
        self.guest.put_u64s(ga, gpfns);
        let mut s = [0u8; AddToPhysmapBatch::SIZE];
        s[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
        s[2..4].copy_from_slice(&(XENMAPSPACE_GMFN_FOREIGN as u16).to_le_bytes());
        s[4..6].copy_from_slice(&(idxs.len() as u16).to_le_bytes());
        s[6..8].copy_from_slice(&fd.to_le_bytes());
        s[8..16].copy_from_slice(&ia.to_le_bytes());
        s[16..24].copy_from_slice(&ga.to_le_bytes());
        s[24..32].copy_from_slice(&ea.to_le_bytes());
        self.guest.put(BASE, &s);
        let r = self.op(caller, XENMEM_ADD_TO_PHYSMAP_BATCH, BASE).0;
        (r, self.guest.i32s(ea, idxs.len()))
    }

    fn remove_single(&mut self, caller: u16, gpfn: u64) -> i64 {
        let mut s = [0u8; RemoveFromPhysmap::SIZE];
        s[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
        s[8..16].copy_from_slice(&gpfn.to_le_bytes());
        self.guest.put(BASE, &s);
        self.op(caller, XENMEM_REMOVE_FROM_PHYSMAP, BASE).0
    }

    fn remove_batch(&mut self, caller: u16, gpfns: &[u64]) -> (i64, Vec<i32>, u32) {
        let (ga, ea) = (BASE + 0x10_0000, BASE + 0xa0_0000);
        self.guest.put_u64s(ga, gpfns);
        let mut s = [0u8; RemoveFromPhysmapBatch::SIZE];
        s[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
        s[4..8].copy_from_slice(&(gpfns.len() as u32).to_le_bytes());
        s[8..16].copy_from_slice(&ga.to_le_bytes());
        s[16..24].copy_from_slice(&ea.to_le_bytes());
        self.guest.put(BASE, &s);
        let (r, n) = self.op(caller, XENMEM_REMOVE_FROM_PHYSMAP_BATCH, BASE);
        (r, self.guest.i32s(ea, gpfns.len()), n)
    }

    fn refs(&self, domid: u16, gfn: u64) -> u32 {
        let pa = self.env.physmap(domid).unwrap().lookup(gfn).unwrap().pa;
        self.frames.frame(pa).unwrap().refs
    }
}

const TARGETED: Policy = Policy::Targeted {
    has_range: true,
    nested: true,
};
/// domU RAM starts at GUEST_RAM0_BASE.
const RAM0: u64 = 0x4_0000;
/// Where dom0 maps foreign pages (an unpopulated region of its physmap).
const FMAP: u64 = 0x10_0000;

#[test]
fn struct_layouts_match_xen_arm64() {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = i as u8;
    }
    let r = MemoryReservation::from_bytes(&b);
    assert_eq!(r.extent_start, u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]));
    assert_eq!(r.extent_order, u32::from_le_bytes([16, 17, 18, 19]));
    assert_eq!(r.domid, u16::from_le_bytes([24, 25]));
    let a = AddToPhysmapBatch::from_bytes(&b);
    assert_eq!(a.size, u16::from_le_bytes([4, 5]));
    assert_eq!(a.foreign_domid, u16::from_le_bytes([6, 7]));
    assert_eq!(a.errs, u64::from_le_bytes([24, 25, 26, 27, 28, 29, 30, 31]));
    let x = AddToPhysmap::from_bytes(&b[..24].try_into().unwrap());
    assert_eq!(x.space, u32::from_le_bytes([4, 5, 6, 7]));
    assert_eq!(x.gpfn, u64::from_le_bytes([16, 17, 18, 19, 20, 21, 22, 23]));
    let rm = RemoveFromPhysmap::from_bytes(&b[..16].try_into().unwrap());
    assert_eq!(rm.gpfn, u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]));
    let rb = RemoveFromPhysmapBatch::from_bytes(&b[..24].try_into().unwrap());
    assert_eq!(rb.size, u32::from_le_bytes([4, 5, 6, 7]));
    assert_eq!(rb.gpfns, u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]));
    assert_eq!(XENMEM_REMOVE_FROM_PHYSMAP_BATCH & MEMOP_CMD_MASK, 63);
}

#[test]
fn populate_and_decrease_reservation() {
    let mut w = World::new(TARGETED, 4096);
    // Two 2 MiB extents and three 4 KiB ones.
    assert_eq!(w.populate(DOMU, DOMID_SELF, &[RAM0, RAM0 + 512], 9), 2);
    assert_eq!(
        w.populate(
            DOMU,
            DOMID_SELF,
            &[RAM0 + 1024, RAM0 + 1025, RAM0 + 2000],
            0
        ),
        3
    );
    let pm = w.env.physmap(DOMU).unwrap();
    assert_eq!(pm.tot_pages(), 1027);
    assert_eq!(w.env.scrubbed, 1027);
    assert_eq!(w.frames.free_frames(), 4096 - 1027);
    // The 2 MiB extents became block mappings.
    let (pa, _) = pm
        .stage2()
        .lookup(&w.tables, Ipa::from_page_number(RAM0 + 3))
        .unwrap();
    assert_eq!(pa, PhysAddr(pm.lookup(RAM0).unwrap().pa.0 + 3 * PAGE_SIZE));
    // Unaligned 2 MiB extent and an already populated gfn stop the list.
    assert_eq!(w.populate(DOMU, DOMID_SELF, &[RAM0 + 4096 + 1], 9), 0);
    assert_eq!(
        w.populate(DOMU, DOMID_SELF, &[RAM0 + 3000, RAM0 + 1024], 0),
        1
    );
    // An unprivileged domain cannot populate another domain.
    assert_eq!(w.populate(DOMU, DOM0, &[RAM0], 0), -errno::EPERM);
    assert_eq!(w.populate(DOMU, 77, &[RAM0], 0), -errno::ESRCH);
    // Give back 3 pages: freed only after their flush ran (end of hypercall).
    assert_eq!(
        w.decrease(DOMU, DOMID_SELF, &[RAM0 + 1024, RAM0 + 5, RAM0 + 3000]),
        3
    );
    assert_eq!(w.frames.free_frames(), 4096 - 1028 + 3);
    assert!(w.flush.is_idle());
    assert_eq!(w.env.counters.full_stage2(), 0);
    // Splitting the 2 MiB block needed one break-before-make flush, then
    // the three scattered pages one covering range (pv_tlb::plan).
    assert!(w.env.counters.get(TlbOpKind::Ipas2e1is) >= 1);
    assert!(
        w.env.counters.get(TlbOpKind::Ipas2e1is) + w.env.counters.get(TlbOpKind::Ripas2e1is) >= 2
    );
    // Not mapped: stops.
    assert_eq!(w.decrease(DOMU, DOMID_SELF, &[RAM0 + 5]), 0);
}

#[test]
fn reservation_limit_and_out_of_memory_stop_populate() {
    let mut w = World::new(TARGETED, 16);
    w.env.physmap_mut(DOMU).unwrap().set_max_pages(8);
    let gfns: Vec<u64> = (0..10).map(|i| RAM0 + i).collect();
    assert_eq!(w.populate(DOMU, DOMID_SELF, &gfns, 0), 8);
    w.env.physmap_mut(DOMU).unwrap().set_max_pages(100);
    assert_eq!(w.populate(DOMU, DOMID_SELF, &gfns[8..], 0), 2);
    let more: Vec<u64> = (100..110).map(|i| RAM0 + i).collect();
    assert_eq!(w.populate(DOMU, DOMID_SELF, &more, 0), 6, "pool of 16");
    assert_eq!(w.frames.free_frames(), 0);
}

#[test]
fn foreign_map_holds_a_reference_until_the_flush_ran() {
    let mut w = World::new(TARGETED, 4096);
    let gfns: Vec<u64> = (0..64).map(|i| RAM0 + i).collect();
    assert_eq!(w.populate(DOMU, DOMID_SELF, &gfns, 0), 64);
    let dst: Vec<u64> = (0..64).map(|i| FMAP + i).collect();
    let (r, errs) = w.map_foreign(DOM0, DOMU, &gfns, &dst);
    assert_eq!(r, 0);
    assert!(errs.iter().all(|e| *e == 0), "{errs:?}");
    assert_eq!(w.refs(DOMU, RAM0), 2);
    let e = w.env.physmap(DOM0).unwrap().lookup(FMAP).unwrap();
    assert_eq!(e.kind, P2mKind::Foreign { owner: DOMU });
    assert_eq!(e.pa, w.env.physmap(DOMU).unwrap().lookup(RAM0).unwrap().pa);
    // Single removes coalesce: the reference stays until the flush.
    for g in &dst[..10] {
        assert_eq!(w.remove_single(DOM0, *g), 0);
    }
    assert_eq!(w.refs(DOMU, RAM0), 2, "held by the pending flush");
    assert!(w.flush.holds(e.pa));
    assert_eq!(w.env.counters.total_tlbi(), 0);
    // Re-mapping a pending gfn forces the flush first.
    let (r, errs) = w.map_foreign(DOM0, DOMU, &gfns[..1], &dst[..1]);
    assert_eq!((r, errs[0]), (0, 0));
    assert_eq!(w.refs(DOMU, RAM0), 2, "old ref released, new one taken");
    assert_eq!(w.refs(DOMU, RAM0 + 1), 1);
    assert!(w.flush.is_idle());
    assert_eq!(w.env.counters.full_stage2(), 0);
    assert_eq!(w.env.counters.get(TlbOpKind::Vmalle1is), 1);
    // Removing an unmapped gpfn: -ENOENT.
    assert_eq!(w.remove_single(DOM0, FMAP + 5), -errno::ENOENT);
}

#[test]
fn negative_cases() {
    let mut w = World::new(TARGETED, 4096);
    let gfns: Vec<u64> = (0..4).map(|i| RAM0 + i).collect();
    assert_eq!(w.populate(DOMU, DOMID_SELF, &gfns, 0), 4);
    // Foreign map from an unprivileged domain.
    let (r, _) = w.map_foreign(DOMU, DOM0, &[0], &[FMAP]);
    assert_eq!(r, -errno::EPERM);
    // gpfn outside the (40-bit) domain, and a foreign gfn that is not RAM.
    let (r, errs) = w.map_foreign(
        DOM0,
        DOMU,
        &[RAM0, RAM0 + 99, RAM0 + 1],
        &[1 << 30, FMAP, FMAP + 1],
    );
    assert_eq!(r, 0);
    assert_eq!(errs, [-22, -22, 0]);
    // Handle outside guest RAM.
    assert_eq!(
        w.op(DOM0, XENMEM_REMOVE_FROM_PHYSMAP_BATCH, 0x10).0,
        -errno::EFAULT
    );
    let mut s = [0u8; RemoveFromPhysmapBatch::SIZE];
    s[4..8].copy_from_slice(&3u32.to_le_bytes());
    s[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    s[8..16].copy_from_slice(&0x1234u64.to_le_bytes());
    w.guest.put(BASE, &s);
    assert_eq!(
        w.op(DOM0, XENMEM_REMOVE_FROM_PHYSMAP_BATCH, BASE).0,
        -errno::EFAULT
    );
    // Foreign via the single call: -ENOSYS, as Xen.
    let mut a = [0u8; AddToPhysmap::SIZE];
    a[4..8].copy_from_slice(&XENMAPSPACE_GMFN_FOREIGN.to_le_bytes());
    w.guest.put(BASE, &a);
    assert_eq!(w.op(DOM0, XENMEM_ADD_TO_PHYSMAP, BASE).0, -errno::ENOSYS);
    // Shared info through add_to_physmap.
    a[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    a[4..8].copy_from_slice(&XENMAPSPACE_SHARED_INFO.to_le_bytes());
    a[16..24].copy_from_slice(&0x3_9000u64.to_le_bytes());
    w.guest.put(BASE, &a);
    assert_eq!(w.op(DOMU, XENMEM_ADD_TO_PHYSMAP, BASE).0, 0);
    assert_eq!(
        w.env.physmap(DOMU).unwrap().lookup(0x3_9000).unwrap().kind,
        P2mKind::SharedInfo
    );
    // Unknown memory_op.
    assert_eq!(w.op(DOM0, 40, BASE).0, -errno::ENOSYS);
    // Batch: unmapped entries get -ENOENT, the others are removed.
    let (r, errs) = w.map_foreign(DOM0, DOMU, &[RAM0 + 2], &[FMAP + 2]);
    assert_eq!((r, errs[0]), (0, 0));
    let (r, errs, _) = w.remove_batch(DOM0, &[FMAP + 7, FMAP + 1, FMAP + 2, 1 << 40]);
    assert_eq!(r, 0);
    assert_eq!(errs, [-2, 0, 0, -22]);
    assert_eq!(w.env.physmap(DOM0).unwrap().mapped(), 0);
    assert_eq!(w.refs(DOMU, RAM0 + 1), 1);
}

#[test]
fn million_entry_batch_is_preempted() {
    let mut w = World::new(TARGETED, 4096);
    w.budget = 1000;
    let gpfns: Vec<u64> = (0..1_000_000u64).map(|i| FMAP + i).collect();
    // 8 MB of gpfns at +1 MiB, 4 MB of errs at +10 MiB: fits in 16 MiB.
    let (r, errs, invocations) = w.remove_batch(DOM0, &gpfns);
    assert_eq!(r, 0);
    assert_eq!(invocations, 1000, "one continuation per 1000 entries");
    assert!(errs.iter().all(|e| *e == -errno::ENOENT as i32));
}

/// Build a domU of `pages` pages, map them all into dom0 in batches of 512
/// (add_to_physmap_batch + gmfn_foreign), then unmap them all, as the
/// toolstack does. Returns the counters of the unmap phase.
fn build(policy: Policy, pages: u64, batched: bool) -> TlbCounters {
    let mut w = World::new(policy, pages + 1024);
    let gfns: Vec<u64> = (0..pages).map(|i| RAM0 + i).collect();
    for c in gfns.chunks(512) {
        assert_eq!(w.populate(DOMU, DOMID_SELF, c, 0), c.len() as i64);
    }
    let dst: Vec<u64> = (0..pages).map(|i| FMAP + i).collect();
    for (s, d) in gfns.chunks(512).zip(dst.chunks(512)) {
        let (r, errs) = w.map_foreign(DOM0, DOMU, s, d);
        assert_eq!(r, 0);
        assert!(errs.iter().all(|e| *e == 0));
    }
    assert_eq!(
        w.env.counters.total_tlbi(),
        0,
        "mapping into holes needs no flush"
    );
    if batched {
        for c in dst.chunks(4096) {
            let (r, errs, _) = w.remove_batch(DOM0, c);
            assert_eq!(r, 0);
            assert!(errs.iter().all(|e| *e == 0));
        }
    } else {
        for g in &dst {
            assert_eq!(w.remove_single(DOM0, *g), 0);
        }
        // The next toolstack step (here: unpause, modelled by a flush of
        // everything pending) runs the coalesced plan.
        let f = w.flush.flush_all();
        w.exec(f);
    }
    std::eprintln!(
        "{policy:?} pages={pages} batched={batched}: tlbi={} full={} ipas2={} ripas2={} vmalle1is={}",
        w.env.counters.total_tlbi(),
        w.env.counters.full_stage2(),
        w.env.counters.get(TlbOpKind::Ipas2e1is),
        w.env.counters.get(TlbOpKind::Ripas2e1is),
        w.env.counters.get(TlbOpKind::Vmalle1is)
    );
    // Every foreign reference is back.
    for g in gfns.iter().step_by(97) {
        assert_eq!(w.refs(DOMU, *g), 1);
    }
    w.env.counters
}

/// The realistic workload's page count (48 MB kernel Image + initrd).
const REALISTIC: u64 = 11_900;

#[test]
fn count_xen_compat_unbatched_is_one_full_flush_per_page() {
    let c = build(Policy::XenCompat, REALISTIC, false);
    assert_eq!(c.get(TlbOpKind::Vmalls12e1is), REALISTIC);
    assert_eq!(c.total_tlbi(), REALISTIC);
}

#[test]
fn count_targeted_batched_no_full_flush_few_tlbis() {
    for has_range in [true, false] {
        let pol = Policy::Targeted {
            has_range,
            nested: true,
        };
        let c = build(pol, REALISTIC, true);
        assert_eq!(c.full_stage2(), 0);
        if has_range {
            assert!(c.total_tlbi() <= REALISTIC / 512 + 16, "{c:?}");
        } else {
            // One IPAS2E1IS per 2 MiB block (the foreign pages are contiguous
            // and aligned: one block each) and per page of the tail, one
            // VMALLE1IS per batch hypercall.
            assert_eq!(
                c.get(TlbOpKind::Ipas2e1is),
                REALISTIC / 512 + REALISTIC % 512
            );
            assert_eq!(c.get(TlbOpKind::Vmalle1is), REALISTIC.div_ceil(4096));
        }
    }
}

#[test]
fn count_targeted_coalesced_singles() {
    let c = build(TARGETED, REALISTIC, false);
    assert_eq!(c.full_stage2(), 0);
    assert!(c.total_tlbi() <= 64, "{c:?}");
    // xen-compat with the batch call still flushes per p2m operation.
    let c = build(Policy::XenCompat, 1024, true);
    assert_eq!(c.get(TlbOpKind::Vmalls12e1is), 1024);
}

#[test]
fn create_destroy_100_domains_returns_every_frame_and_table() {
    let mut w = World::new(TARGETED, 8192);
    let free0 = w.frames.free_frames();
    // dom0's tables for FMAP stay once created: create them first.
    assert_eq!(w.populate(DOM0, DOMID_SELF, &[FMAP], 0), 1);
    assert_eq!(w.decrease(DOM0, DOMID_SELF, &[FMAP]), 1);
    let tables0 = w.tables.live_tables();
    let mut full = 0;
    for round in 0..100u16 {
        let d = 10 + round;
        w.env.add(&mut w.tables, d, false, 1 << 20);
        let gfns: Vec<u64> = (0..8).map(|i| RAM0 + i * 512).collect();
        assert_eq!(w.populate(DOM0, d, &gfns, 9), 8);
        // dom0 keeps one foreign mapping across the destroy.
        let (r, _) = w.map_foreign(DOM0, d, &[RAM0 + 3], &[FMAP]);
        assert_eq!(r, 0);
        let dom = w.env.take(d);
        let before = w.env.counters.full_stage2();
        let (f, t) = w.ctx().teardown(dom.pm, dom.vmid);
        w.exec(f);
        t.finish(&mut w.tables);
        full += w.env.counters.full_stage2() - before;
        // The page dom0 still maps is not free yet.
        assert_eq!(w.frames.free_frames(), free0 - 1);
        assert_eq!(w.remove_single(DOM0, FMAP), 0);
        let f = w.flush.flush_all();
        w.exec(f);
        assert_eq!(w.frames.free_frames(), free0);
        assert_eq!(w.tables.live_tables(), tables0, "round {round}");
    }
    assert_eq!(full, 0, "targeted with ranges: destroy needs no full flush");
}

#[test]
fn remapping_runs_the_old_mappings_flush_before_the_new_mapping_exists() {
    for policy in [TARGETED, Policy::XenCompat] {
        let mut w = World::new(policy, 4096);
        assert_eq!(w.populate(DOMU, DOMID_SELF, &[RAM0, RAM0 + 1], 0), 2);
        let (r, _) = w.map_foreign(DOM0, DOMU, &[RAM0], &[FMAP]);
        assert_eq!(r, 0);
        if policy == TARGETED {
            // Pending after a single remove; the remap must run it first.
            assert_eq!(w.remove_single(DOM0, FMAP), 0);
            assert!(w
                .flush
                .is_pending(Vmid(DOM0 + 1), Ipa::from_page_number(FMAP)));
        }
        // Map another page over FMAP (xen-compat: replaces the live mapping).
        let (r, errs) = w.map_foreign(DOM0, DOMU, &[RAM0 + 1], &[FMAP]);
        assert_eq!((r, errs[0]), (0, 0));
        assert_eq!(w.env.sync_plans, 1, "{policy:?}");
        assert_eq!(
            w.env.fmap_at_sync,
            [None],
            "{policy:?}: flush ran between break and make"
        );
        let now = w.env.physmap(DOM0).unwrap().lookup(FMAP).unwrap();
        assert_eq!(
            now.pa,
            w.env.physmap(DOMU).unwrap().lookup(RAM0 + 1).unwrap().pa
        );
        assert_eq!(
            w.refs(DOMU, RAM0),
            1,
            "{policy:?}: old foreign reference released"
        );
        assert!(w.env.counters.total_tlbi() > 0);
    }
}

#[test]
fn an_empty_pool_gets_held_frames_back_by_flushing() {
    let mut w = World::new(TARGETED, 8);
    let gfns: Vec<u64> = (0..8).map(|i| RAM0 + i).collect();
    assert_eq!(w.populate(DOMU, DOMID_SELF, &gfns, 0), 8);
    // dom0 maps all of them (each frame now has 2 references).
    let dst: Vec<u64> = (0..8).map(|i| FMAP + i).collect();
    let (r, _) = w.map_foreign(DOM0, DOMU, &gfns, &dst);
    assert_eq!(r, 0);
    // domU gives its pages back: they stay referenced by dom0's mappings.
    assert_eq!(w.decrease(DOMU, DOMID_SELF, &gfns), 8);
    assert_eq!(w.frames.free_frames(), 0);
    // dom0 unmaps with single removes: the references are now held by the
    // pending (coalesced) flush, the pool is still empty.
    for g in &dst {
        assert_eq!(w.remove_single(DOM0, *g), 0);
    }
    assert_eq!(w.frames.free_frames(), 0);
    assert_eq!(w.flush.held_pages(), 8);
    // A populate now runs the pending flush synchronously and succeeds.
    assert_eq!(w.populate(DOMU, DOMID_SELF, &[RAM0 + 100], 0), 1);
    assert_eq!(w.env.sync_plans, 1);
    assert!(w.flush.is_idle());
    assert_eq!(w.frames.free_frames(), 7);
}

/// A control domain that keeps mapping foreign pages until hv's heap has no
/// room for more records gets -ENOMEM per entry (never a panic), the rest
/// of the batch is done, and everything works again once it unmaps.
#[test]
fn heap_exhaustion_by_foreign_maps_gives_enomem() {
    let mut w = World::new(TARGETED, 4096);
    assert_eq!(w.populate(DOM0, DOMU, &[RAM0], 9), 1);
    // 512 domU records (one 2 MiB extent); room for 100 more.
    w.env.heap_records = Some(512 + 100);
    let idxs = vec![RAM0; 150];
    let gpfns: Vec<u64> = (0..150).map(|i| FMAP + i).collect();
    let (rc, errs) = w.map_foreign(DOM0, DOMU, &idxs, &gpfns);
    assert_eq!(rc, 0);
    assert!(errs[..100].iter().all(|e| *e == 0), "{errs:?}");
    assert!(
        errs[100..].iter().all(|e| i64::from(*e) == -errno::ENOMEM),
        "{errs:?}"
    );
    assert_eq!(w.env.physmap(DOM0).unwrap().mapped(), 100);
    // Populating (the domU's own RAM) is refused the same way.
    assert_eq!(w.populate(DOM0, DOMU, &[RAM0 + 512], 0), 0);
    // The failed entries took no reference; unmapping gives the room back.
    let pa = w.env.physmap(DOMU).unwrap().lookup(RAM0).unwrap().pa;
    assert_eq!(w.frames.frame(pa).unwrap().refs, 1 + 100);
    let (rc, errs, _) = w.remove_batch(DOM0, &gpfns[..100]);
    assert_eq!(rc, 0);
    assert!(errs.iter().all(|e| *e == 0));
    assert_eq!(w.frames.frame(pa).unwrap().refs, 1);
    assert_eq!(w.populate(DOM0, DOMU, &[RAM0 + 512], 0), 1);
}

impl World {
    /// add_to_physmap of `space`/`idx` at `gpfn` by `caller` (DOMID_SELF).
    fn add_space(&mut self, caller: u16, space: u32, idx: u64, gpfn: u64) -> i64 {
        let mut a = [0u8; AddToPhysmap::SIZE];
        a[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
        a[4..8].copy_from_slice(&space.to_le_bytes());
        a[8..16].copy_from_slice(&idx.to_le_bytes());
        a[16..24].copy_from_slice(&gpfn.to_le_bytes());
        self.guest.put(BASE, &a);
        self.op(caller, XENMEM_ADD_TO_PHYSMAP, BASE).0
    }
}

/// Issue 9 finding 6: a domU mapped its shared-info page at 33,583 gfns
/// (one stage-2 table chain and one record each) until hv ran out. As Xen on
/// Arm, a special page has one gfn: a new mapping moves it, and the records
/// and tables stay bounded however often the guest asks.
#[test]
fn shared_info_has_one_gfn_and_moving_it_is_bounded() {
    let mut w = World::new(TARGETED, 64);
    for i in 0..2000u64 {
        // Scattered gfns: each would need new level-2/3 tables.
        let gpfn = 0x10_0000 + i * 0x2_0000;
        assert_eq!(w.add_space(DOMU, XENMAPSPACE_SHARED_INFO, 0, gpfn), 0);
        let pm = w.env.physmap(DOMU).unwrap();
        assert_eq!(pm.mapped(), 1, "one record");
        assert_eq!(pm.lookup(gpfn).unwrap().kind, P2mKind::SharedInfo);
    }
    let pm = w.env.physmap(DOMU).unwrap();
    assert!(
        pm.table_frames() <= pm.limits().table_frames,
        "{} tables",
        pm.table_frames()
    );
    // The old locations are unmapped in stage 2 as well.
    assert!(pm
        .stage2()
        .lookup(&w.tables, Ipa::from_page_number(0x10_0000))
        .is_none());
}

/// Issue 9 finding 6 (delivery 2): a domain that reaches its stage-2 table
/// budget gets -ENOMEM (populate stops, add_to_physmap answers -ENOMEM)
/// before anything changes; another domain populates and maps as before.
#[test]
fn one_domain_at_its_table_budget_leaves_others_working() {
    let mut w = World::new(TARGETED, 4096);
    let pm = w.env.physmap_mut(DOMU).unwrap();
    let base_tables = pm.table_frames();
    pm.set_limits(physmap::Limits {
        table_frames: base_tables + 40,
        foreign: 16,
    });
    // Single pages 1 GiB apart: each needs a level-2 and a level-3 table.
    let gfns: Vec<u64> = (0..100u64).map(|i| RAM0 + i * 0x4_0000).collect();
    let done = w.populate(DOMU, DOMID_SELF, &gfns, 0);
    assert!(done > 0 && done < 100, "{done}");
    let pm = w.env.physmap(DOMU).unwrap();
    assert!(pm.table_frames() <= base_tables + 40);
    assert_eq!(pm.tot_pages(), done as u64, "nothing half-done");
    let mapped = pm.mapped();
    // A special mapping in a fresh region: -ENOMEM, nothing changed.
    assert_eq!(
        w.add_space(DOMU, XENMAPSPACE_SHARED_INFO, 0, 0xff_0000),
        -errno::ENOMEM
    );
    assert_eq!(w.env.physmap(DOMU).unwrap().mapped(), mapped);
    // Another domain is not affected: it populates and maps shared info.
    assert_eq!(w.populate(DOM0, DOMID_SELF, &gfns[..50], 0), 50);
    assert_eq!(w.add_space(DOM0, XENMAPSPACE_SHARED_INFO, 0, 0xff_0000), 0);
}

/// The foreign-mapping bound: entries beyond it get -ENOMEM, the domain
/// stays usable, and unmapping gives the room back.
#[test]
fn foreign_mapping_bound() {
    let mut w = World::new(TARGETED, 4096);
    assert_eq!(w.populate(DOM0, DOMU, &[RAM0], 0), 1);
    let pm = w.env.physmap_mut(DOM0).unwrap();
    let l = pm.limits();
    pm.set_limits(physmap::Limits { foreign: 10, ..l });
    let gpfns: Vec<u64> = (0..12).map(|i| FMAP + i).collect();
    let (rc, errs) = w.map_foreign(DOM0, DOMU, &[RAM0; 12], &gpfns);
    assert_eq!(rc, 0);
    assert!(errs[..10].iter().all(|e| *e == 0), "{errs:?}");
    assert!(
        errs[10..].iter().all(|e| i64::from(*e) == -errno::ENOMEM),
        "{errs:?}"
    );
    assert_eq!(w.refs(DOMU, RAM0), 11, "failed entries took no reference");
    assert_eq!(w.env.physmap(DOM0).unwrap().foreign_mapped(), 10);
    let (rc, _, _) = w.remove_batch(DOM0, &gpfns[..5]);
    assert_eq!(rc, 0);
    let (rc, errs) = w.map_foreign(DOM0, DOMU, &[RAM0; 2], &gpfns[10..]);
    assert_eq!((rc, errs), (0, vec![0, 0]));
}

/// Issue 9 finding 10: decrease_reservation of an hv special page (the
/// console ring, shared info, a grant frame) unmapped it as if it were RAM.
/// It is not the domain's RAM: the extent fails and the mapping stays;
/// remove_from_physmap (Linux does it for shared info) still unmaps it.
#[test]
fn decrease_reservation_of_a_special_page_is_refused() {
    let mut w = World::new(TARGETED, 64);
    assert_eq!(w.add_space(DOMU, XENMAPSPACE_SHARED_INFO, 0, 0x3_9000), 0);
    assert_eq!(
        w.decrease(DOMU, DOMID_SELF, &[0x3_9000]),
        0,
        "no extent released"
    );
    let pm = w.env.physmap(DOMU).unwrap();
    assert_eq!(pm.lookup(0x3_9000).unwrap().kind, P2mKind::SharedInfo);
    assert_eq!(w.remove_single(DOMU, 0x3_9000), 0);
    assert!(w.env.physmap(DOMU).unwrap().lookup(0x3_9000).is_none());
}

/// Issue 9 (no long hypercalls): populate_physmap's budget counts pages, so
/// 2 MiB extents (512 pages scrubbed each) continue after each extent under a
/// 512-page budget instead of zeroing 1 GiB in one invocation; 4 KiB extents
/// still go 512 at a time.
#[test]
fn populate_budget_counts_pages() {
    let mut w = World::new(TARGETED, 8 * 512 + 4096);
    w.budget = 512;
    let gfns: Vec<u64> = (0..8).map(|i| RAM0 + i * 512).collect();
    let list = BASE + 0x10_0000;
    w.guest.put_u64s(list, &gfns);
    let mut s = [0u8; MemoryReservation::SIZE];
    s[0..8].copy_from_slice(&list.to_le_bytes());
    s[8..16].copy_from_slice(&8u64.to_le_bytes());
    s[16..20].copy_from_slice(&9u32.to_le_bytes());
    s[24..26].copy_from_slice(&DOMID_SELF.to_le_bytes());
    w.guest.put(BASE, &s);
    assert_eq!(
        w.op(DOMU, XENMEM_POPULATE_PHYSMAP, BASE),
        (8, 8),
        "one extent per invocation"
    );
    let small: Vec<u64> = (0..1024).map(|i| RAM0 + 8 * 512 + i).collect();
    w.guest.put_u64s(list, &small);
    s[8..16].copy_from_slice(&1024u64.to_le_bytes());
    s[16..20].copy_from_slice(&0u32.to_le_bytes());
    w.guest.put(BASE, &s);
    assert_eq!(w.op(DOMU, XENMEM_POPULATE_PHYSMAP, BASE), (1024, 2));
}

/// The leaf level translating dom0's `gfn`.
fn d0_level(w: &World, gfn: u64) -> Option<u8> {
    w.env
        .physmap(DOM0)
        .unwrap()
        .stage2()
        .walk(&w.tables, Ipa::from_page_number(gfn))
        .map(|l| l.level)
}

#[test]
fn foreign_batch_of_a_2m_extent_is_one_block_split_on_partial_remove() {
    let mut w = World::new(TARGETED, 4096);
    // Two 2 MiB extents of the domU (contiguous, aligned frames).
    assert_eq!(w.populate(DOMU, DOMID_SELF, &[RAM0, RAM0 + 512], 9), 2);
    let src: Vec<u64> = (0..1024).map(|i| RAM0 + i).collect();
    let dst: Vec<u64> = (0..1024).map(|i| FMAP + i).collect();
    let tables = w.env.physmap(DOM0).unwrap().table_frames();
    let (r, errs) = w.map_foreign(DOM0, DOMU, &src, &dst);
    assert_eq!(r, 0);
    assert!(errs.iter().all(|e| *e == 0));
    // One block per extent, nothing to invalidate, no level-3 table.
    assert_eq!(d0_level(&w, FMAP), Some(2));
    assert_eq!(d0_level(&w, FMAP + 1023), Some(2));
    assert_eq!(w.env.counters.total_tlbi(), 0);
    assert!(w.tables.sync_invalidations.is_empty());
    assert_eq!(w.env.physmap(DOM0).unwrap().table_frames(), tables + 2);
    // References and records per page.
    for g in [RAM0, RAM0 + 300, RAM0 + 1023] {
        assert_eq!(w.refs(DOMU, g), 2);
    }
    assert_eq!(w.env.physmap(DOM0).unwrap().foreign_mapped(), 1024);
    // A single remove splits the first block (511 pages left), BBM flushed.
    assert_eq!(w.remove_single(DOM0, FMAP + 7), 0);
    let f = w.flush.flush_all();
    w.exec(f);
    assert_eq!(d0_level(&w, FMAP), Some(3));
    assert_eq!(d0_level(&w, FMAP + 7), None);
    assert_eq!(w.refs(DOMU, RAM0 + 7), 1, "released after its flush");
    assert_eq!(w.refs(DOMU, RAM0 + 8), 2);
    assert_eq!(w.env.counters.full_stage2(), 0);
    // The batch remove takes the second block whole and the first page by page.
    let before = w.env.counters.total_tlbi();
    let rest: Vec<u64> = dst.iter().copied().filter(|g| *g != FMAP + 7).collect();
    let (r, errs, _) = w.remove_batch(DOM0, &rest);
    assert_eq!(r, 0);
    assert!(errs.iter().all(|e| *e == 0));
    assert!(
        w.env.counters.total_tlbi() - before <= 8,
        "{:?}",
        w.env.counters
    );
    assert_eq!(w.env.counters.full_stage2(), 0);
    for g in &src {
        assert_eq!(w.refs(DOMU, *g), 1);
    }
    assert_eq!(w.env.physmap(DOM0).unwrap().foreign_mapped(), 0);
    assert_eq!(d0_level(&w, FMAP + 512), None);
    // Mapped again page by page (one call per page): the 512th promotes the
    // table the split left behind, with a synchronous invalidation.
    for i in 0..512 {
        let (r, e) = w.map_foreign(DOM0, DOMU, &src[i..=i], &dst[i..=i]);
        assert_eq!((r, e[0]), (0, 0));
        assert_eq!(d0_level(&w, FMAP), Some(if i == 511 { 2 } else { 3 }));
    }
    assert_eq!(w.tables.sync_invalidations.len(), 0, "exec'd");
    assert_eq!(w.env.counters.full_stage2(), 0);
}

#[test]
fn xen_compat_keeps_foreign_mappings_in_pages() {
    let mut w = World::new(Policy::XenCompat, 4096);
    assert_eq!(w.populate(DOMU, DOMID_SELF, &[RAM0], 9), 1);
    let src: Vec<u64> = (0..512).map(|i| RAM0 + i).collect();
    let dst: Vec<u64> = (0..512).map(|i| FMAP + i).collect();
    let (r, errs) = w.map_foreign(DOM0, DOMU, &src, &dst);
    assert_eq!(r, 0);
    assert!(errs.iter().all(|e| *e == 0));
    assert_eq!(d0_level(&w, FMAP), Some(3));
    assert_eq!(w.env.counters.total_tlbi(), 0);
}

#[test]
fn a_batch_that_is_not_one_extent_falls_back_to_pages() {
    let mut w = World::new(TARGETED, 4096);
    assert_eq!(w.populate(DOMU, DOMID_SELF, &[RAM0, RAM0 + 512], 9), 2);
    // Window not 2 MiB aligned; then aligned but the frames shifted by one page.
    let src: Vec<u64> = (0..512).map(|i| RAM0 + i).collect();
    let dst: Vec<u64> = (0..512).map(|i| FMAP + 1 + i).collect();
    let (r, errs) = w.map_foreign(DOM0, DOMU, &src, &dst);
    assert!(r == 0 && errs.iter().all(|e| *e == 0));
    assert_eq!(d0_level(&w, FMAP + 1), Some(3));
    let src: Vec<u64> = (0..512).map(|i| RAM0 + 1 + i).collect();
    let dst: Vec<u64> = (0..512).map(|i| FMAP + 1024 + i).collect();
    let (r, errs) = w.map_foreign(DOM0, DOMU, &src, &dst);
    assert!(r == 0 && errs.iter().all(|e| *e == 0));
    assert_eq!(d0_level(&w, FMAP + 1024), Some(3));
    // One bad entry in an otherwise perfect run: every other entry mapped, its own errno.
    let mut src: Vec<u64> = (0..512).map(|i| RAM0 + i).collect();
    src[100] = RAM0 + 5000; // not populated
    let dst: Vec<u64> = (0..512).map(|i| FMAP + 2048 + i).collect();
    let (r, errs) = w.map_foreign(DOM0, DOMU, &src, &dst);
    assert_eq!(r, 0);
    assert_eq!(errs[100], -(errno::EINVAL as i32));
    assert_eq!(errs.iter().filter(|e| **e == 0).count(), 511);
    assert_eq!(d0_level(&w, FMAP + 2048), Some(3));
    assert_eq!(w.env.counters.full_stage2(), 0);
}

#[test]
fn grant_map_holds_a_reference_and_unmap_checks_the_frame() {
    let mut w = World::new(TARGETED, 4096);
    assert_eq!(w.populate(DOMU, DOMID_SELF, &[RAM0, RAM0 + 1], 0), 2);
    let pa = w.env.physmap(DOMU).unwrap().lookup(RAM0).unwrap().pa;
    let other = w.env.physmap(DOMU).unwrap().lookup(RAM0 + 1).unwrap().pa;
    let mut out = Flush::default();
    let mut ctx = w.ctx();
    ctx.grant_map(DOM0, FMAP, DOMU, pa, true, &mut out).unwrap();
    // Not a pool frame: refused, nothing mapped.
    assert!(matches!(
        ctx.grant_map(DOM0, FMAP + 1, DOMU, PhysAddr(0x1000), false, &mut out),
        Err(Error::NotOwner { .. })
    ));
    // The gfn maps another frame / nothing: refused, nothing changed.
    assert!(ctx.grant_unmap(DOM0, FMAP, other, &mut out).is_err());
    assert!(ctx.grant_unmap(DOM0, FMAP + 1, pa, &mut out).is_err());
    ctx.grant_end(DOM0, DOM0, &mut out);
    w.exec(core::mem::take(&mut out));
    assert!(w.env.physmap(DOM0).unwrap().lookup(FMAP + 1).is_none());
    let e = w.env.physmap(DOM0).unwrap().lookup(FMAP).unwrap();
    assert_eq!((e.pa, e.kind), (pa, P2mKind::Foreign { owner: DOMU }));
    let attrs = w
        .env
        .physmap(DOM0)
        .unwrap()
        .stage2()
        .lookup(&w.tables, Ipa::from_page_number(FMAP))
        .unwrap()
        .1;
    assert!(
        attrs.read && !attrs.write && !attrs.exec,
        "read-only grant map"
    );
    assert_eq!(w.refs(DOMU, RAM0), 2);
    // The owner gives the page back: the mapping's reference keeps it.
    assert_eq!(w.decrease(DOMU, DOMID_SELF, &[RAM0]), 1);
    assert_eq!(w.frames.frame(pa).unwrap().refs, 1);
    let mut ctx = w.ctx();
    ctx.grant_unmap(DOM0, FMAP, pa, &mut out).unwrap();
    ctx.grant_end(DOM0, DOM0, &mut out);
    assert_eq!(out.released, [pa], "released after the plan");
    assert!(!out.plan.is_empty());
    w.exec(out);
    assert_eq!(w.frames.frame(pa).unwrap().refs, 0, "free");
}
