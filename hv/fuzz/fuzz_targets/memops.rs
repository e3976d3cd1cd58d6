//! memops' `memory_op` handlers (populate / decrease_reservation /
//! add_to_physmap{,_batch} incl. foreign maps and shared info /
//! remove_from_physmap{,_batch}, any raw command and argument block) and
//! domain teardown, in sequences over three domains (d0 privileged, d1, d2),
//! checked against a model after every step:
//!
//! - no page owned twice: every pool page a stage-2 maps is allocated, owned
//!   by the mapping domain (own RAM) or by the named owner (foreign), and
//!   mapped as own RAM at most once; its reference count covers every
//!   mapping of it; each physmap's records match its stage-2 leaves;
//! - every unmap's invalidation returned: a model TLB (pv-tlb's) that has
//!   cached every mapping before each step never keeps a translation that
//!   differs from the stage-2 unless its invalidation is still pending in the
//!   gatherer and the gatherer still holds the frame; no break-before-make
//!   violation;
//! - no frame leaked: after tearing every domain down and flushing, every
//!   pool frame is free, every table frame freed and the gatherer empty.
//!
//! Continuations are re-issued as a guest would (the budget is fuzzed).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use memops::sim::SimTableMem;
use memops::xen::*;
use memops::*;
use pv_tlb::model::{ModelTlb, S2Entry};
use pv_tlb::{plan, DeferredFlush, Flush, Policy};

/// The caller's scratch memory: [BASE, BASE + LEN).
const BASE: u64 = 0x4000_0000;
const LEN: usize = 1 << 16;
const POOL: PhysAddr = PhysAddr(0x1_0000_0000);
const POOL_FRAMES: u64 = 1536;
const NDOM: u16 = 3;
/// Where argument blocks and lists go in the scratch memory.
const ARG: u64 = BASE;
const LIST_A: u64 = BASE + 0x1000;
const LIST_B: u64 = BASE + 0x5000;
const LIST_E: u64 = BASE + 0x9000;
/// Largest list written by a structured step.
const MAX_LIST: usize = 64;

fn vmid(d: u16) -> Vmid {
    Vmid(d + 1)
}

struct Guest {
    mem: Vec<u8>,
}

impl Guest {
    fn range(&self, ipa: Ipa, len: usize) -> Result<core::ops::Range<usize>, Error> {
        let off = ipa.0.checked_sub(BASE).ok_or(Error::Fault { ipa })?;
        let off = usize::try_from(off).map_err(|_| Error::Fault { ipa })?;
        let end = off.checked_add(len).ok_or(Error::Fault { ipa })?;
        if end > self.mem.len() {
            return Err(Error::Fault { ipa });
        }
        Ok(off..end)
    }
    fn put(&mut self, at: u64, b: &[u8]) {
        let r = self.range(Ipa(at), b.len()).unwrap();
        self.mem[r].copy_from_slice(b);
    }
    fn put_u64s(&mut self, at: u64, v: &[u64]) {
        for (i, x) in v.iter().enumerate() {
            self.put(at + 8 * i as u64, &x.to_le_bytes());
        }
    }
}

impl GuestCopy for Guest {
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

struct Env {
    doms: Vec<(u16, Physmap)>,
    model: ModelTlb,
    heap_records: Option<u64>,
}

impl MemEnv for Env {
    fn physmap(&self, domid: u16) -> Option<&Physmap> {
        self.doms.iter().find(|d| d.0 == domid).map(|d| &d.1)
    }
    fn physmap_mut(&mut self, domid: u16) -> Option<&mut Physmap> {
        self.doms
            .iter_mut()
            .find(|d| d.0 == domid)
            .map(|d| &mut d.1)
    }
    fn is_privileged(&self, domid: u16) -> bool {
        domid == 0 && self.physmap(0).is_some()
    }
    fn vmid(&self, domid: u16) -> Option<Vmid> {
        self.physmap(domid).map(|_| vmid(domid))
    }
    fn shared_info(&self, domid: u16) -> Option<PhysAddr> {
        Some(PhysAddr(0x7000_0000 + u64::from(domid) * PAGE_SIZE))
    }
    fn grant_frame(
        &mut self,
        _frames: &mut FrameTable,
        domid: u16,
        idx: u64,
        _gpfn: u64,
    ) -> Option<PhysAddr> {
        (idx < 4).then(|| PhysAddr(0x7100_0000 + (u64::from(domid) * 4 + idx) * PAGE_SIZE))
    }
    fn scrub(&mut self, _pa: PhysAddr) {}
    fn execute(&mut self, plan: &pv_tlb::Plan) {
        for op in plan.ops() {
            self.model.execute(0, op);
        }
    }
    fn heap_room(&self, records: u64) -> bool {
        let used: u64 = self.doms.iter().map(|d| d.1.mapped() as u64).sum();
        self.heap_records.is_none_or(|max| used + records <= max)
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Gfn {
    /// In the first 2 MiB slots (collisions, block splits).
    Low(u16),
    /// Relative to the last gfn a step used.
    Near(i8),
    Raw(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Dom {
    Id(u8),
    SelfId,
    Raw(u16),
}

impl Dom {
    fn id(self) -> u16 {
        match self {
            Dom::Id(d) => u16::from(d) % (NDOM + 1),
            Dom::SelfId => DOMID_SELF,
            Dom::Raw(r) => r,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    Populate {
        caller: u8,
        target: Dom,
        gfns: Vec<Gfn>,
        order: u8,
    },
    Decrease {
        caller: u8,
        target: Dom,
        gfns: Vec<Gfn>,
        order: u8,
    },
    /// add_to_physmap_batch (gmfn_foreign by default).
    Batch {
        caller: u8,
        target: Dom,
        space: u8,
        foreign: Dom,
        idxs: Vec<Gfn>,
        gpfns: Vec<Gfn>,
    },
    /// add_to_physmap (shared info, grant table, gmfn, gmfn_range, foreign).
    Add {
        caller: u8,
        target: Dom,
        space: u8,
        size: u16,
        idx: Gfn,
        gpfn: Gfn,
    },
    Remove {
        caller: u8,
        target: Dom,
        gpfn: Gfn,
    },
    RemoveBatch {
        caller: u8,
        target: Dom,
        gpfns: Vec<Gfn>,
    },
    /// Any command with an argument block of the input's bytes.
    Raw {
        caller: u8,
        cmd: u64,
        block: Vec<u8>,
        lists: Vec<u64>,
    },
    /// The hypercall ends / the caller exits for something else.
    End {
        dom: u8,
        coalescable: bool,
    },
    Exit {
        dom: u8,
    },
    FlushAll,
    /// Tear a domain down (as destroydomain) and build a fresh one in its place.
    Recreate {
        dom: u8,
        max_pages: u16,
    },
    SetBudget(u8),
}

struct World {
    env: Env,
    tables: SimTableMem,
    frames: FrameTable,
    flush: DeferredFlush,
    guest: Guest,
    budget: u64,
    last_gfn: u64,
}

impl World {
    fn new(policy: Policy, heap_records: Option<u64>) -> Self {
        let mut tables = SimTableMem::new();
        let doms = (0..NDOM)
            .map(|d| (d, Physmap::new(&mut tables, d, 40, 4096).unwrap()))
            .collect();
        Self {
            env: Env {
                doms,
                model: ModelTlb::new(1),
                heap_records,
            },
            tables,
            frames: FrameTable::new(POOL, POOL_FRAMES),
            flush: DeferredFlush::new(policy),
            guest: Guest { mem: vec![0; LEN] },
            budget: 64,
            last_gfn: 0,
        }
    }

    fn gfn(&mut self, g: Gfn) -> u64 {
        let v = match g {
            Gfn::Low(x) => u64::from(x) % 2048,
            Gfn::Near(d) => self.last_gfn.wrapping_add(d as i64 as u64),
            Gfn::Raw(r) => r,
        };
        self.last_gfn = v;
        v
    }

    fn gfns(&mut self, v: &[Gfn]) -> Vec<u64> {
        v.iter().take(MAX_LIST).map(|g| self.gfn(*g)).collect()
    }

    fn dom_of_root(&self, root: PhysAddr) -> Option<u16> {
        self.env
            .doms
            .iter()
            .find(|d| d.1.stage2().root() == root)
            .map(|d| d.0)
    }

    /// Execute a flush as hv does: the synchronous break-before-make
    /// invalidations first, then the plan, then the releases.
    fn exec(&mut self, f: Flush) {
        let sync = core::mem::take(&mut self.tables.sync_invalidations);
        let roots = core::mem::take(&mut self.tables.sync_roots);
        for (i, s) in sync.iter().enumerate() {
            // A set without a named root flushes every domain.
            let doms: Vec<u16> = match roots.get(i).and_then(|r| self.dom_of_root(*r)) {
                Some(d) => vec![d],
                None => (0..=NDOM).collect(),
            };
            for d in doms {
                for op in plan(vmid(d), s, &self.flush.policy()).ops() {
                    self.env.model.execute(0, op);
                }
            }
        }
        for op in f.plan.ops() {
            self.env.model.execute(0, op);
        }
        self.frames
            .release(&f.released)
            .expect("a released frame was not held");
    }

    fn op(&mut self, caller: u16, cmd: u64, arg: u64) {
        let mut cmd = cmd;
        // Bounded: every continuation must make progress.
        for _ in 0..4096 {
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
                MemOpRet::Done(_) => break,
                MemOpRet::Continue { cmd: c } => {
                    assert_eq!(c & MEMOP_CMD_MASK, cmd & MEMOP_CMD_MASK);
                    assert!(
                        c >> MEMOP_EXTENT_SHIFT > cmd >> MEMOP_EXTENT_SHIFT,
                        "a continuation made no progress"
                    );
                    cmd = c;
                }
            }
        }
        let f = self.flush.end_hypercall(vmid(caller), vmid(caller), true);
        self.exec(f);
    }

    fn reservation(&mut self, op: u64, caller: u16, target: u16, gfns: &[u64], order: u8) {
        self.guest.put_u64s(LIST_A, gfns);
        let mut s = [0u8; MemoryReservation::SIZE];
        s[0..8].copy_from_slice(&LIST_A.to_le_bytes());
        s[8..16].copy_from_slice(&(gfns.len() as u64).to_le_bytes());
        let order = if order < 200 {
            u32::from(order % 2) * 9
        } else {
            u32::from(order)
        };
        s[16..20].copy_from_slice(&order.to_le_bytes());
        s[24..26].copy_from_slice(&target.to_le_bytes());
        self.guest.put(ARG, &s);
        self.op(caller, op, ARG);
    }

    /// Every mapping of every live domain: (domain, gfn, pa, leaf size).
    fn leaves(&self) -> Vec<(u16, u64, PhysAddr, u64)> {
        let mut v = Vec::new();
        for (d, pm) in &self.env.doms {
            pm.stage2()
                .for_each_leaf(&self.tables, &mut |ipa, pa, size, _| {
                    v.push((*d, ipa.page_number(), pa, size));
                });
        }
        v
    }

    /// The worst-case TLB: every current mapping cached on the one model CPU.
    fn fill_tlb(&mut self) {
        for (d, gfn, pa, size) in self.leaves() {
            let level = match size {
                s if s == 1 << 30 => 1,
                s if s == 2 << 20 => 2,
                _ => 3,
            };
            let ipa = Ipa::from_page_number(gfn);
            self.env.model.fill(
                0,
                0,
                ipa,
                S2Entry {
                    vmid: vmid(d),
                    base: ipa,
                    level,
                    pa,
                },
            );
        }
    }

    fn truth(&self, d: u16, ipa: Ipa) -> Option<PhysAddr> {
        let pm = self.env.physmap(d)?;
        pm.stage2()
            .lookup(&self.tables, ipa)
            .map(|(pa, _)| pa.align_down(PAGE_SIZE))
    }

    fn check(&self) {
        assert_eq!(self.tables.bbm_violations, 0, "break-before-make violated");
        // Stale translations only while pending with the frame held.
        for (cpu, v, base, level, pa) in self.env.model.entries() {
            let d = v.0 - 1;
            let pages = level_size(level) / PAGE_SIZE;
            for k in 0..pages {
                let ipa = Ipa(base.0 + k * PAGE_SIZE);
                let p = PhysAddr(pa.0 + k * PAGE_SIZE);
                let truth = self.truth(d, ipa);
                if truth != Some(p) {
                    // The frame cannot be reused meanwhile: the gatherer holds a
                    // reference, or it is still the domain's own (an orphan of
                    // remove_from_physmap, freed only at teardown), or it is one
                    // of hv's pages of the domain outside the pool (shared info,
                    // grant frames: they live as long as the domain).
                    let kept = self.flush.holds(p)
                        || !self.frames.contains(p)
                        || self.frames.frame(p).is_some_and(|f| f.owner == Some(d));
                    assert!(
                        self.flush.is_pending(v, ipa) && kept,
                        "stale entry on cpu{cpu}: d{d} {ipa} -> {p}, truth {truth:?}, pending {}, held {}",
                        self.flush.is_pending(v, ipa),
                        self.flush.holds(p)
                    );
                }
            }
        }
        // Ownership and reference counts.
        let mut own: std::collections::BTreeMap<u64, (u16, u64)> = Default::default();
        let mut refs_needed: std::collections::BTreeMap<u64, u32> = Default::default();
        let mut pages_of = [0usize; NDOM as usize + 1];
        for (d, gfn, pa, size) in self.leaves() {
            for k in 0..size / PAGE_SIZE {
                let g = gfn + k;
                let p = PhysAddr(pa.0 + k * PAGE_SIZE);
                pages_of[d as usize] += 1;
                let pm = self.env.physmap(d).unwrap();
                let e = pm
                    .lookup(g)
                    .unwrap_or_else(|| panic!("d{d} gfn {g:#x} mapped without a record"));
                assert_eq!(e.pa, p, "d{d} gfn {g:#x}: record and stage-2 differ");
                if !self.frames.contains(p) {
                    assert!(
                        matches!(e.kind, P2mKind::SharedInfo) || p.0 >= 0x7000_0000,
                        "d{d} gfn {g:#x} maps {p}, outside the pool"
                    );
                    continue;
                }
                let f = self.frames.frame(p).unwrap();
                let owner = f
                    .owner
                    .unwrap_or_else(|| panic!("d{d} gfn {g:#x} maps free frame {p}"));
                match e.kind {
                    P2mKind::Ram => {
                        assert_eq!(owner, d, "d{d} gfn {g:#x}: own RAM {p} owned by d{owner}");
                        if let Some((od, og)) = own.insert(p.0, (d, g)) {
                            panic!("{p} mapped as own RAM twice: d{od} gfn {og:#x} and d{d} gfn {g:#x}");
                        }
                        *refs_needed.entry(p.0).or_default() += 1;
                    }
                    P2mKind::Foreign { owner: o } => {
                        assert_eq!(
                            owner, o,
                            "d{d} gfn {g:#x}: foreign {p} owned by d{owner}, not d{o}"
                        );
                        assert_ne!(o, d, "d{d} maps its own page as foreign");
                        *refs_needed.entry(p.0).or_default() += 1;
                    }
                    P2mKind::SharedInfo => panic!("shared info {p} inside the pool"),
                }
            }
        }
        for (pa, n) in refs_needed {
            let f = self.frames.frame(PhysAddr(pa)).unwrap();
            assert!(
                f.refs >= n,
                "{pa:#x}: {} references for {n} mappings",
                f.refs
            );
        }
        for (d, pm) in &self.env.doms {
            assert_eq!(
                pm.mapped(),
                pages_of[*d as usize],
                "d{d}: physmap records and stage-2 pages differ"
            );
        }
    }

    fn teardown(&mut self, d: u16) {
        let i = self.env.doms.iter().position(|x| x.0 == d).unwrap();
        let (_, pm) = self.env.doms.remove(i);
        let (f, t) = MemCtx {
            env: &mut self.env,
            tables: &mut self.tables,
            frames: &mut self.frames,
            flush: &mut self.flush,
            budget: self.budget,
        }
        .teardown(pm, Some(vmid(d)));
        self.exec(f);
        t.finish(&mut self.tables);
    }

    fn step(&mut self, s: &Step) {
        let who = |c: u8| u16::from(c) % NDOM;
        match s {
            Step::Populate {
                caller,
                target,
                gfns,
                order,
            } => {
                let g = self.gfns(gfns);
                self.reservation(
                    XENMEM_POPULATE_PHYSMAP,
                    who(*caller),
                    target.id(),
                    &g,
                    *order,
                );
            }
            Step::Decrease {
                caller,
                target,
                gfns,
                order,
            } => {
                let g = self.gfns(gfns);
                self.reservation(
                    XENMEM_DECREASE_RESERVATION,
                    who(*caller),
                    target.id(),
                    &g,
                    *order,
                );
            }
            Step::Batch {
                caller,
                target,
                space,
                foreign,
                idxs,
                gpfns,
            } => {
                let i = self.gfns(idxs);
                let g = self.gfns(gpfns);
                self.guest.put_u64s(LIST_A, &i);
                self.guest.put_u64s(LIST_B, &g);
                let mut b = [0u8; AddToPhysmapBatch::SIZE];
                let space = if *space < 200 {
                    XENMAPSPACE_GMFN_FOREIGN as u16
                } else {
                    u16::from(*space % 8)
                };
                b[0..2].copy_from_slice(&target.id().to_le_bytes());
                b[2..4].copy_from_slice(&space.to_le_bytes());
                b[4..6].copy_from_slice(&(i.len().min(g.len()) as u16).to_le_bytes());
                b[6..8].copy_from_slice(&foreign.id().to_le_bytes());
                b[8..16].copy_from_slice(&LIST_A.to_le_bytes());
                b[16..24].copy_from_slice(&LIST_B.to_le_bytes());
                b[24..32].copy_from_slice(&LIST_E.to_le_bytes());
                self.guest.put(ARG, &b);
                self.op(who(*caller), XENMEM_ADD_TO_PHYSMAP_BATCH, ARG);
            }
            Step::Add {
                caller,
                target,
                space,
                size,
                idx,
                gpfn,
            } => {
                let (i, g) = (self.gfn(*idx), self.gfn(*gpfn));
                let mut b = [0u8; AddToPhysmap::SIZE];
                b[0..2].copy_from_slice(&target.id().to_le_bytes());
                b[2..4].copy_from_slice(&(size % 1024).to_le_bytes());
                b[4..8].copy_from_slice(&u32::from(space % 7).to_le_bytes());
                b[8..16].copy_from_slice(&i.to_le_bytes());
                b[16..24].copy_from_slice(&g.to_le_bytes());
                self.guest.put(ARG, &b);
                self.op(who(*caller), XENMEM_ADD_TO_PHYSMAP, ARG);
            }
            Step::Remove {
                caller,
                target,
                gpfn,
            } => {
                let g = self.gfn(*gpfn);
                let mut b = [0u8; RemoveFromPhysmap::SIZE];
                b[0..2].copy_from_slice(&target.id().to_le_bytes());
                b[8..16].copy_from_slice(&g.to_le_bytes());
                self.guest.put(ARG, &b);
                self.op(who(*caller), XENMEM_REMOVE_FROM_PHYSMAP, ARG);
            }
            Step::RemoveBatch {
                caller,
                target,
                gpfns,
            } => {
                let g = self.gfns(gpfns);
                self.guest.put_u64s(LIST_A, &g);
                let mut b = [0u8; RemoveFromPhysmapBatch::SIZE];
                b[0..2].copy_from_slice(&target.id().to_le_bytes());
                b[4..8].copy_from_slice(&(g.len() as u32).to_le_bytes());
                b[8..16].copy_from_slice(&LIST_A.to_le_bytes());
                b[16..24].copy_from_slice(&LIST_E.to_le_bytes());
                self.guest.put(ARG, &b);
                self.op(who(*caller), XENMEM_REMOVE_FROM_PHYSMAP_BATCH, ARG);
            }
            Step::Raw {
                caller,
                cmd,
                block,
                lists,
            } => {
                let n = block.len().min(64);
                self.guest.put(ARG, &block[..n]);
                let l: Vec<u64> = lists.iter().take(MAX_LIST).copied().collect();
                self.guest.put_u64s(LIST_A, &l);
                self.op(who(*caller), *cmd, ARG);
            }
            Step::End { dom, coalescable } => {
                let d = who(*dom);
                let f = self.flush.end_hypercall(vmid(d), vmid(d), *coalescable);
                self.exec(f);
            }
            Step::Exit { dom } => {
                let f = self.flush.close_window(vmid(who(*dom)));
                self.exec(f);
            }
            Step::FlushAll => {
                let f = self.flush.flush_all();
                self.exec(f);
            }
            Step::Recreate { dom, max_pages } => {
                let d = who(*dom);
                self.teardown(d);
                let pm = Physmap::new(&mut self.tables, d, 40, u64::from(*max_pages)).unwrap();
                self.env.doms.push((d, pm));
            }
            Step::SetBudget(b) => self.budget = u64::from(*b).max(1),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    policy: u8,
    heap_records: Option<u16>,
    steps: Vec<Step>,
}

fuzz_target!(|input: Input| {
    let policy = match input.policy % 4 {
        0 => Policy::XenCompat,
        1 => Policy::Targeted {
            has_range: true,
            nested: true,
        },
        2 => Policy::Targeted {
            has_range: false,
            nested: true,
        },
        _ => Policy::Targeted {
            has_range: true,
            nested: false,
        },
    };
    let mut w = World::new(policy, input.heap_records.map(u64::from));
    for s in input.steps.iter().take(48) {
        w.fill_tlb();
        w.step(s);
        w.check();
    }
    // Nothing leaks: every domain torn down, everything flushed and released.
    for d in 0..NDOM {
        w.teardown(d);
    }
    let f = w.flush.flush_all();
    w.exec(f);
    assert_eq!(w.flush.held_pages(), 0, "the gatherer still holds frames");
    assert_eq!(
        w.frames.free_frames(),
        POOL_FRAMES,
        "frames leaked after every domain was torn down"
    );
    assert_eq!(w.tables.live_tables(), 0, "table frames leaked");
});
