//! `GNTTABOP_map_grant_ref` / `unmap_grant_ref` / `cache_flush` against the
//! fake arch: a privileged d0 (the mapper, as xenstored/xenconsoled/blkback)
//! and a domU d1 (the granter), under the targeted TLB policy.

use super::grant_table_op::GRANT_BUDGET;
use super::*;
use crate::arch::fake::{FakeArch, FakeMachine, FakeMem};
use crate::domain::GUEST_RAM0_BASE;
use crate::testutil::{self, Lines};
use crate::xen::abi::{GnttabCacheFlush, GnttabMapGrantRef, GnttabUnmapGrantRef};
use crate::xen::grant::{self, gntmap, gtf};
use memops::P2mKind;
use pv_tlb::TlbOp;

const B: u64 = GUEST_RAM0_BASE;
/// Where the tests put a call's array (in the caller's RAM, MMU off).
const ARG: u64 = B + 0x1000;
/// d1's page it grants (a gfn of its RAM) and what is written in it.
const GRANTED_GFN: u64 = (B >> 12) + 0x10;
const MARK: &[u8] = b"granted page";
/// Where d0 maps grants: guest-physical, outside its RAM (as Linux's
/// unpopulated-alloc pages in an extended region).
const HOST: u64 = 0x6000_0000;

struct W {
    world: crate::world::World<FakeMem>,
    arch: FakeArch,
}

impl W {
    fn new() -> Self {
        let policy = pv_tlb::Policy::Targeted {
            has_range: false,
            nested: false,
        };
        let mut world = testutil::world(0x800_0000, 0x8000, policy, Box::new(Lines::default()), 4);
        for (id, ram) in [(0u16, 8u64 << 20), (1, 4 << 20), (2, 4 << 20)] {
            let d = testutil::push_domain(&mut world, id, ram, 1);
            d.privileged = id == 0;
            // One grant frame in use from creation (INITIAL_NR_GRANT_FRAMES).
            assert_eq!(d.xen.grant.nr_frames(), 1);
        }
        let mut w = Self {
            world,
            arch: FakeArch::new(0, FakeMachine::new_shared()),
        };
        w.put(1, GRANTED_GFN << 12, MARK);
        w
    }

    fn idx(&self, d: u16) -> usize {
        testutil::dom_index(&self.world, d)
    }

    fn dom(&self, d: u16) -> &Domain {
        &self.world.domains[self.idx(d)]
    }

    fn put(&mut self, d: u16, ipa: u64, b: &[u8]) {
        testutil::guest_put(&mut self.world, d, ipa, b);
    }

    fn get(&mut self, d: u16, ipa: u64, n: usize) -> Option<Vec<u8>> {
        let i = self.idx(d);
        let mut b = alloc::vec![0u8; n];
        self.world.domains[i]
            .guest_memory(&mut self.world.mem)
            .copy_from_guest(Ipa(ipa), &mut b)
            .ok()?;
        Some(b)
    }

    fn raw(&mut self, caller: u16, args: [u64; 3]) -> Reply {
        let mut ctx = Ctx::new(
            caller,
            0,
            Stage1::default(),
            &mut self.world,
            &mut self.arch,
        );
        handle(
            Call {
                nr: nr::GRANT_TABLE_OP,
                args: [args[0], args[1], args[2], 0, 0],
            },
            &mut ctx,
        )
    }

    fn call(&mut self, caller: u16, args: [u64; 3]) -> i64 {
        self.raw(caller, args).ret as i64
    }

    /// Domain `d`'s grant entry `gref`: `(flags, domid, frame)`.
    fn entry(&self, d: u16, gref: u32) -> (u16, u16, u32) {
        let pa = self.dom(d).xen.grant.entry_pa(gref).unwrap();
        let mut b = [0u8; 8];
        crate::arch::PhysMem::read(&self.world.mem, pa, &mut b);
        (
            u16::from_le_bytes([b[0], b[1]]),
            u16::from_le_bytes([b[2], b[3]]),
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        )
    }

    /// Domain `d` grants `frame` to `to` in entry `gref` with `flags`.
    fn grant(&mut self, d: u16, gref: u32, flags: u16, to: u16, frame: u64) {
        let pa = self.dom(d).xen.grant.entry_pa(gref).unwrap();
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&flags.to_le_bytes());
        b[2..4].copy_from_slice(&to.to_le_bytes());
        b[4..8].copy_from_slice(&(frame as u32).to_le_bytes());
        crate::arch::PhysMem::write(&mut self.world.mem, pa, &b);
    }

    fn map_ops(&mut self, caller: u16, ops: &[GnttabMapGrantRef]) -> (i64, Vec<GnttabMapGrantRef>) {
        let at = B + 0x1000;
        for (i, o) in ops.iter().enumerate() {
            self.put(
                caller,
                at + (i * GnttabMapGrantRef::SIZE) as u64,
                &o.to_bytes(),
            );
        }
        let r = self.call(caller, [0, at, ops.len() as u64]);
        let back = (0..ops.len())
            .map(|i| {
                let b = self
                    .get(caller, at + (i * GnttabMapGrantRef::SIZE) as u64, 32)
                    .unwrap();
                GnttabMapGrantRef::from_bytes(b.as_slice().try_into().unwrap())
            })
            .collect();
        (r, back)
    }

    /// One map op by d0 of `dom`'s `gref` at `host`; the op as written back.
    fn map(&mut self, dom: u16, gref: u32, flags: u32, host: u64) -> GnttabMapGrantRef {
        self.map_by(0, dom, gref, flags, host)
    }

    fn map_by(
        &mut self,
        caller: u16,
        dom: u16,
        gref: u32,
        flags: u32,
        host: u64,
    ) -> GnttabMapGrantRef {
        let op = GnttabMapGrantRef {
            host_addr: host,
            flags,
            r#ref: gref,
            dom,
            status: 77,
            handle: 0xdead,
            dev_bus_addr: 0,
        };
        let (r, back) = self.map_ops(caller, &[op]);
        assert_eq!(r, 0, "the hypercall itself succeeds");
        back[0]
    }

    fn unmap_by(&mut self, caller: u16, handle: u32, host: u64) -> i16 {
        let op = GnttabUnmapGrantRef {
            host_addr: host,
            dev_bus_addr: 0,
            handle,
            status: 77,
        };
        self.put(caller, ARG, &op.to_bytes());
        assert_eq!(self.call(caller, [1, ARG, 1]), 0);
        let b = self.get(caller, ARG, 24).unwrap();
        GnttabUnmapGrantRef::from_bytes(b.as_slice().try_into().unwrap()).status
    }

    fn unmap(&mut self, handle: u32, host: u64) -> i16 {
        self.unmap_by(0, handle, host)
    }

    fn granted_pa(&self) -> PhysAddr {
        self.dom(1).physmap().lookup(GRANTED_GFN).unwrap().pa
    }

    fn refs(&self, pa: PhysAddr) -> u32 {
        self.world.pool.frame(pa).unwrap().refs
    }

    fn tlb_ops(&self) -> Vec<TlbOp> {
        self.arch.machine().lock().tlb_ops()
    }

    fn destroy(&mut self, d: u16) {
        let i = self.idx(d);
        let dom = self.world.domains.swap_remove(i);
        crate::world::domain_destroyed(&mut self.world.domains, &dom);
        let crate::world::World {
            mem,
            pool,
            flush,
            vmids,
            ..
        } = &mut self.world;
        dom.destroy(&mut self.arch, mem, pool, flush, vmids);
    }
}

const RW: u16 = gtf::PERMIT_ACCESS;

#[test]
fn map_shows_the_granted_page_in_the_callers_p2m_and_unmap_takes_it_back() {
    let mut w = W::new();
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    let pa = w.granted_pa();
    assert_eq!(w.refs(pa), 1);
    assert!(w.get(0, HOST, 1).is_none(), "nothing at HOST before");
    let op = w.map(1, 1, gntmap::HOST_MAP, HOST);
    assert_eq!(op.status, grant::GNTST_OKAY);
    assert_eq!(op.handle, 0);
    assert_eq!(op.dev_bus_addr, pa.0, "mfn_to_maddr of the frame");
    let e = w.dom(0).physmap().lookup(HOST >> 12).unwrap();
    assert_eq!((e.pa, e.kind), (pa, P2mKind::Foreign { owner: 1 }));
    assert_eq!(
        w.get(0, HOST, MARK.len()).unwrap(),
        MARK,
        "d0 reads d1's page"
    );
    w.put(0, HOST + 0x100, b"backend");
    assert_eq!(
        w.get(1, (GRANTED_GFN << 12) + 0x100, 7).unwrap(),
        b"backend"
    );
    assert_eq!(w.refs(pa), 2, "the mapping holds a page reference");
    let (flags, domid, frame) = w.entry(1, 1);
    assert_eq!(flags, RW | gtf::READING | gtf::WRITING);
    assert_eq!(
        (domid, u64::from(frame)),
        (0, GRANTED_GFN),
        "rest unchanged"
    );
    let act = w.dom(1).xen.grant.active(1).unwrap();
    assert_eq!(
        (act.mapper, act.pa, act.write_pins, act.read_pins),
        (0, pa, 1, 0)
    );

    // A second (read-only) mapping of the same grant by the same domain.
    let ro = w.map(1, 1, gntmap::HOST_MAP | gntmap::READONLY, HOST + 0x1000);
    assert_eq!(ro.status, grant::GNTST_OKAY);
    assert_eq!(ro.handle, 1);
    let (_, attrs) = w
        .dom(0)
        .stage2()
        .view()
        .lookup(&w.world.mem, Ipa(HOST + 0x1000))
        .unwrap();
    assert!(attrs.read && !attrs.write, "GNTMAP_readonly maps read-only");
    assert_eq!(w.refs(pa), 3);

    // Unmap the writable one: GTF_writing goes, GTF_reading stays.
    let before = w.tlb_ops().len();
    assert_eq!(w.unmap(op.handle, HOST), grant::GNTST_OKAY);
    let ops = w.tlb_ops()[before..].to_vec();
    assert!(
        ops.iter().any(|o| matches!(o, TlbOp::Ipas2e1is { .. })),
        "targeted: the unmapped IPA is invalidated: {ops:?}"
    );
    assert!(
        !ops.iter().any(|o| matches!(
            o,
            TlbOp::Vmalls12e1is { .. } | TlbOp::Vmalls12e1 { .. } | TlbOp::Alle1is
        )),
        "never a full flush: {ops:?}"
    );
    assert!(w.dom(0).physmap().lookup(HOST >> 12).is_none());
    assert!(w.get(0, HOST, 1).is_none(), "d0 no longer reaches the page");
    assert_eq!(w.refs(pa), 2);
    assert_eq!(w.entry(1, 1).0, RW | gtf::READING);
    // Stale handle.
    assert_eq!(w.unmap(op.handle, HOST), grant::GNTST_BAD_HANDLE);
    assert_eq!(w.unmap(99, HOST), grant::GNTST_BAD_HANDLE);
    // The read-only one: the entry is the granter's alone again.
    assert_eq!(w.unmap(ro.handle, HOST + 0x1000), grant::GNTST_OKAY);
    assert_eq!(w.entry(1, 1).0, RW);
    assert_eq!(w.refs(pa), 1);
    assert!(w.dom(1).xen.grant.active(1).is_none());
    // A freed handle is used again.
    assert_eq!(w.map(1, 1, gntmap::HOST_MAP, HOST).handle, ro.handle);
}

#[test]
fn the_page_outlives_a_destroyed_granter_until_unmapped() {
    let mut w = W::new();
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    let pa = w.granted_pa();
    let op = w.map(1, 1, gntmap::HOST_MAP, HOST);
    assert_eq!(op.status, grant::GNTST_OKAY);
    let free = w.world.pool.free_frames();
    w.destroy(1);
    let f = w.world.pool.frame(pa).unwrap();
    assert_eq!(f.refs, 1, "only d0's mapping holds it");
    assert!(f.owner.is_some(), "not back in the pool");
    assert!(w.world.pool.free_frames() > free, "the rest of d1 is");
    assert_eq!(w.get(0, HOST, MARK.len()).unwrap(), MARK, "still mapped");
    // xenstored's unmap after the destroy (the trace's order).
    assert_eq!(w.unmap(op.handle, HOST), grant::GNTST_OKAY);
    assert_eq!(
        w.world.pool.frame(pa).unwrap().refs,
        0,
        "freed after the unmap"
    );
    assert!(w.dom(0).physmap().lookup(HOST >> 12).is_none());
}

#[test]
fn a_reused_domid_is_not_the_destroyed_granter() {
    let mut w = W::new();
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    let op = w.map(1, 1, gntmap::HOST_MAP, HOST);
    w.destroy(1);
    // A new d1, whose entry 1 d0 maps too.
    let d = testutil::push_domain(&mut w.world, 1, 4 << 20, 1);
    assert_eq!(d.xen.grant.nr_frames(), 1);
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    let op2 = w.map(1, 1, gntmap::HOST_MAP, HOST + 0x1000);
    assert_eq!(op2.status, grant::GNTST_OKAY);
    // The old mapping's unmap does not unpin the new domain's entry.
    assert_eq!(w.unmap(op.handle, HOST), grant::GNTST_OKAY);
    assert_eq!(w.entry(1, 1).0, RW | gtf::READING | gtf::WRITING);
    assert_eq!(w.dom(1).xen.grant.active(1).unwrap().write_pins, 1);
}

#[test]
fn a_destroyed_mapper_unpins_its_grants() {
    let mut w = W::new();
    // d2 maps d1's grant (a driver domain), then is destroyed unmapped.
    w.grant(1, 3, RW, 2, GRANTED_GFN);
    let pa = w.granted_pa();
    let op = w.map_by(2, 1, 3, gntmap::HOST_MAP, HOST);
    assert_eq!(op.status, grant::GNTST_OKAY);
    assert_eq!(w.refs(pa), 2);
    w.destroy(2);
    assert_eq!(w.refs(pa), 1, "its physmap's reference went with it");
    assert!(w.dom(1).xen.grant.active(3).is_none(), "unpinned");
    // The flags come back at the next grant_table_op.
    assert_eq!(w.entry(1, 3).0, RW | gtf::READING | gtf::WRITING);
    assert_eq!(w.call(0, [12, 0, 0]), 0);
    assert_eq!(w.entry(1, 3).0, RW);
}

#[test]
fn map_errors_are_xens() {
    let mut w = W::new();
    let h = gntmap::HOST_MAP;
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    let check = |w: &mut W, what: &str, dom: u16, gref: u32, flags: u32, host: u64, want: i16| {
        let free = w.world.pool.free_frames();
        let op = w.map(dom, gref, flags, host);
        assert_eq!(op.status, want, "{what}");
        assert_eq!(op.handle, 0xdead, "{what}: no handle");
        assert!(
            w.dom(0).physmap().lookup(host >> 12).is_none(),
            "{what}: nothing mapped"
        );
        assert_eq!(w.world.pool.free_frames(), free, "{what}");
    };
    check(
        &mut w,
        "no host_map",
        1,
        1,
        gntmap::READONLY,
        HOST,
        grant::GNTST_BAD_GNTREF,
    );
    check(
        &mut w,
        "device_map",
        1,
        1,
        h | gntmap::DEVICE_MAP,
        HOST,
        grant::GNTST_GENERAL_ERROR,
    );
    check(
        &mut w,
        "contains_pte",
        1,
        1,
        h | gntmap::CONTAINS_PTE,
        HOST,
        grant::GNTST_GENERAL_ERROR,
    );
    check(
        &mut w,
        "no such domain",
        9,
        1,
        h,
        HOST,
        grant::GNTST_BAD_DOMAIN,
    );
    check(
        &mut w,
        "DOMID_SELF",
        0x7ff0,
        1,
        h,
        HOST,
        grant::GNTST_BAD_DOMAIN,
    );
    check(
        &mut w,
        "ref past the table",
        1,
        512,
        h,
        HOST,
        grant::GNTST_BAD_GNTREF,
    );
    // Unknown flag bits: refused by create_grant_host_mapping, entry restored.
    check(
        &mut w,
        "flag 1<<5",
        1,
        1,
        h | 1 << 5,
        HOST,
        grant::GNTST_GENERAL_ERROR,
    );
    assert_eq!(w.entry(1, 1).0, RW, "status undone");
    assert!(w.dom(1).xen.grant.active(1).is_none(), "pin undone");
    // Outside the caller's IPA space (40 bits).
    check(
        &mut w,
        "gfn out of range",
        1,
        1,
        h,
        1 << 40,
        grant::GNTST_GENERAL_ERROR,
    );
    assert_eq!(w.entry(1, 1).0, RW);
    // Entries that do not permit it.
    w.grant(1, 2, 0, 0, GRANTED_GFN);
    check(
        &mut w,
        "not permit_access",
        1,
        2,
        h,
        HOST,
        grant::GNTST_GENERAL_ERROR,
    );
    assert_eq!(w.entry(1, 2).0, 0, "bits taken back");
    w.grant(1, 2, RW, 2, GRANTED_GFN);
    check(
        &mut w,
        "granted to d2",
        1,
        2,
        h,
        HOST,
        grant::GNTST_GENERAL_ERROR,
    );
    assert_eq!(w.entry(1, 2).0, RW);
    w.grant(1, 2, RW | gtf::SUB_PAGE, 0, GRANTED_GFN);
    check(
        &mut w,
        "sub-page",
        1,
        2,
        h,
        HOST,
        grant::GNTST_GENERAL_ERROR,
    );
    w.grant(1, 2, RW | gtf::READONLY, 0, GRANTED_GFN);
    check(
        &mut w,
        "writable map of r/o",
        1,
        2,
        h,
        HOST,
        grant::GNTST_GENERAL_ERROR,
    );
    assert_eq!(w.entry(1, 2).0, RW | gtf::READONLY);
    w.grant(1, 2, RW | gtf::PCD, 0, GRANTED_GFN);
    check(
        &mut w,
        "cache attributes",
        1,
        2,
        h,
        HOST,
        grant::GNTST_GENERAL_ERROR,
    );
    assert_eq!(w.entry(1, 2).0, RW | gtf::PCD);
    // A frame that is not the granter's RAM.
    w.grant(1, 2, RW, 0, 0x7_0000);
    check(
        &mut w,
        "frame not RAM",
        1,
        2,
        h,
        HOST,
        grant::GNTST_BAD_PAGE,
    );
    assert_eq!(w.entry(1, 2).0, RW, "reading/writing taken back");
    // Read-only map of a r/o grant works.
    w.grant(1, 2, RW | gtf::READONLY, 0, GRANTED_GFN);
    let ro = w.map(1, 2, h | gntmap::READONLY, HOST);
    assert_eq!(ro.status, grant::GNTST_OKAY);
    assert_eq!(w.entry(1, 2).0, RW | gtf::READONLY | gtf::READING);
    // Mapped by d0: another domain may not map the same entry.
    w.grant(1, 4, RW, 2, GRANTED_GFN);
    assert_eq!(w.map_by(2, 1, 4, h, HOST).status, grant::GNTST_OKAY);
    w.grant(1, 4, RW, 0, GRANTED_GFN);
    check(
        &mut w,
        "pinned by d2",
        1,
        4,
        h,
        HOST + 0x1000,
        grant::GNTST_GENERAL_ERROR,
    );
    // Per-op status in one batch: ok, bad, ok.
    w.grant(1, 5, RW, 0, GRANTED_GFN);
    let op = |gref, host| GnttabMapGrantRef {
        host_addr: host,
        flags: h,
        r#ref: gref,
        dom: 1,
        ..GnttabMapGrantRef::default()
    };
    let (r, back) = w.map_ops(
        0,
        &[
            op(5, HOST + 0x3000),
            op(9999, HOST + 0x4000),
            op(5, HOST + 0x5000),
        ],
    );
    assert_eq!(r, 0);
    let st: Vec<i16> = back.iter().map(|o| o.status).collect();
    assert_eq!(st, [0, grant::GNTST_BAD_GNTREF, 0]);
}

#[test]
fn unmap_checks_the_address_as_xen() {
    let mut w = W::new();
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    let pa = w.granted_pa();
    let op = w.map(1, 1, gntmap::HOST_MAP, HOST);
    // Another gfn (not mapping the frame): general error, still mapped.
    assert_eq!(w.unmap(op.handle, B), grant::GNTST_GENERAL_ERROR);
    assert_eq!(
        w.unmap(op.handle, HOST + 0x1000),
        grant::GNTST_GENERAL_ERROR
    );
    // host_addr 0: nothing is done, okay, the handle stays.
    assert_eq!(w.unmap(op.handle, 0), grant::GNTST_OKAY);
    assert_eq!(w.refs(pa), 2);
    assert_eq!(w.get(0, HOST, MARK.len()).unwrap(), MARK);
    // The page offset of host_addr is ignored (gaddr_to_gfn).
    assert_eq!(w.unmap(op.handle, HOST + 0x123), grant::GNTST_OKAY);
    assert_eq!(w.refs(pa), 1);
}

#[test]
fn hypercall_level_answers() {
    let mut w = W::new();
    assert_eq!(w.call(0, [0, ARG, 0]), 0, "count 0");
    assert_eq!(w.call(0, [1, ARG, 0]), 0, "unmap count 0 (blkback's)");
    assert_eq!(
        w.call(0, [0, ARG, 1 << 31]),
        Errno::EINVAL.to_x0() as i64,
        "negative count"
    );
    assert_eq!(
        w.call(0, [1 | 1 << 12, ARG, 1]),
        Errno::EINVAL.to_x0() as i64,
        "opaque bits"
    );
    assert_eq!(w.call(0, [0, 0x7000_0000, 1]), Errno::EFAULT.to_x0() as i64);
    assert_eq!(w.call(0, [1, 0x7000_0000, 1]), Errno::EFAULT.to_x0() as i64);
    // A long unmap batch continues after GRANT_BUDGET ops.
    let n = u64::from(GRANT_BUDGET) + 3;
    let r = w.raw(0, [1, ARG, n]);
    let left = n - u64::from(GRANT_BUDGET);
    let next = ARG + u64::from(GRANT_BUDGET) * 24;
    assert_eq!(
        r.action,
        Action::Continuation {
            args: [1, next, left],
            block: false
        }
    );
    // Each handle-0 op was a bad handle.
    let st = w.get(0, ARG + 20, 2).unwrap();
    assert_eq!(i16::from_le_bytes([st[0], st[1]]), grant::GNTST_BAD_HANDLE);
    assert_eq!(w.call(0, [1, next, left]), 0);
    // cache_flush too (zeroed entries: nothing to do each), without
    // carrying a cur_ref.
    w.put(0, ARG, &alloc::vec![0u8; n as usize * 16]);
    let r = w.raw(0, [12, ARG, n]);
    assert_eq!(
        r.action,
        Action::Continuation {
            args: [12, ARG + u64::from(GRANT_BUDGET) * 16, left],
            block: false
        }
    );
}

#[test]
fn cache_flush_as_xen() {
    let mut w = W::new();
    let e = |x: Errno| x.to_x0() as i64;
    assert_eq!(w.call(0, [12, 0, 0]), 0, "Linux's probe");
    let own = w.dom(0).physmap().lookup(B >> 12).unwrap().pa;
    let flush = |w: &mut W, cur: u64, a: u64, offset: u16, length: u16, op: u32| {
        let c = GnttabCacheFlush {
            a,
            offset,
            length,
            op,
        };
        w.put(0, ARG, &c.to_bytes());
        w.call(0, [12 | cur << 12, ARG, 1])
    };
    let clean = grant::cache::CLEAN;
    assert_eq!(flush(&mut w, 0, own.0, 0, 4096, clean), 0, "own page");
    assert_eq!(flush(&mut w, 0, own.0, 4096, 0, clean), e(Errno::EINVAL));
    assert_eq!(flush(&mut w, 0, own.0, 1, 4096, clean), e(Errno::EINVAL));
    assert_eq!(flush(&mut w, 0, own.0, 0, 4097, clean), e(Errno::EINVAL));
    assert_eq!(flush(&mut w, 0, own.0, 0, 8, 4), e(Errno::EINVAL));
    assert_eq!(
        flush(&mut w, 0, own.0, 0, 8, grant::cache::SOURCE_GREF | clean),
        e(Errno::EINVAL),
        "SOURCE_GREF fails the op mask first"
    );
    assert_eq!(flush(&mut w, 0, own.0, 0, 0, clean), 0, "nothing to do");
    assert_eq!(flush(&mut w, 0, own.0, 0, 8, 0), 0, "nothing to do");
    assert_eq!(flush(&mut w, 5, own.0, 0, 0, clean), e(Errno::EILSEQ));
    assert_eq!(
        flush(&mut w, 0, 0x1000, 0, 8, clean),
        e(Errno::EINVAL),
        "not RAM"
    );
    // A free pool frame: no owner.
    let free = (0..0x8000u64)
        .map(|i| PhysAddr(0x8000_0000 + i * 4096))
        .rev()
        .find(|p| w.world.pool.frame(*p).unwrap().owner.is_none())
        .unwrap();
    assert_eq!(flush(&mut w, 0, free.0, 0, 8, clean), e(Errno::EPERM));
    // d1's page: only once d0 maps it by grant.
    let pa = w.granted_pa();
    assert_eq!(
        flush(&mut w, 0, pa.0, 0, 8, grant::cache::INVAL),
        e(Errno::EINVAL)
    );
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    let op = w.map(1, 1, gntmap::HOST_MAP, HOST);
    assert_eq!(
        flush(&mut w, 0, pa.0 + 0x40, 0x40, 8, clean | grant::cache::INVAL),
        0
    );
    assert_eq!(w.unmap(op.handle, HOST), grant::GNTST_OKAY);
    assert_eq!(flush(&mut w, 0, pa.0, 0, 8, clean), e(Errno::EINVAL));
}

#[test]
fn an_unmap_batch_is_one_targeted_plan() {
    let plans = |ops: &[TlbOp]| ops.iter().filter(|o| matches!(o, TlbOp::DsbIshst)).count();
    let mut w = W::new();
    let mut handles = Vec::new();
    for i in 0..3u32 {
        w.grant(1, 10 + i, RW, 0, GRANTED_GFN + u64::from(i));
        let op = w.map(1, 10 + i, gntmap::HOST_MAP, HOST + u64::from(i) * 0x1000);
        assert_eq!(op.status, grant::GNTST_OKAY);
        handles.push(op.handle);
    }
    let before = w.tlb_ops().len();
    for (i, h) in handles.iter().enumerate() {
        let op = GnttabUnmapGrantRef {
            host_addr: HOST + i as u64 * 0x1000,
            dev_bus_addr: 0,
            handle: *h,
            status: 1,
        };
        w.put(0, ARG + i as u64 * 24, &op.to_bytes());
    }
    assert_eq!(w.call(0, [1, ARG, 3]), 0);
    let ops = w.tlb_ops()[before..].to_vec();
    assert_eq!(plans(&ops), 1, "one plan for the batch: {ops:?}");
    let pages = ops
        .iter()
        .filter(|o| matches!(o, TlbOp::Ipas2e1is { .. }))
        .count();
    assert_eq!(pages, 3, "each unmapped IPA by address: {ops:?}");
    for i in 0..3u32 {
        assert_eq!(w.entry(1, 10 + i).0, RW);
        assert!(w
            .dom(0)
            .physmap()
            .lookup((HOST >> 12) + u64::from(i))
            .is_none());
    }
    // The same three as single calls: three plans.
    let handles: Vec<u32> = (0..3u32)
        .map(|i| {
            w.map(1, 10 + i, gntmap::HOST_MAP, HOST + u64::from(i) * 0x1000)
                .handle
        })
        .collect();
    let before = w.tlb_ops().len();
    for (i, h) in handles.iter().enumerate() {
        assert_eq!(w.unmap(*h, HOST + i as u64 * 0x1000), grant::GNTST_OKAY);
    }
    assert_eq!(plans(&w.tlb_ops()[before..]), 3);
}

#[test]
fn pin_counters_do_not_overflow() {
    let mut w = W::new();
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    let ro = gntmap::HOST_MAP | gntmap::READONLY;
    for i in 0..u64::from(grant::MAX_PINS) {
        let op = w.map(1, 1, ro, HOST + i * 0x1000);
        assert_eq!(op.status, grant::GNTST_OKAY, "mapping {i}");
    }
    let at = HOST + u64::from(grant::MAX_PINS) * 0x1000;
    assert_eq!(w.map(1, 1, ro, at).status, grant::GNTST_GENERAL_ERROR);
    assert!(w.dom(0).physmap().lookup(at >> 12).is_none());
    // A writable mapping still has its own counter.
    assert_eq!(w.map(1, 1, gntmap::HOST_MAP, at).status, grant::GNTST_OKAY);
    assert_eq!(
        w.refs(w.granted_pa()),
        1 + u32::from(grant::MAX_PINS as u16) + 1
    );
}

mod copy;
mod ops;
