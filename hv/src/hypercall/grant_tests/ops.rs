//! `GNTTABOP_query_size`, `setup_table`, `set_version`, `get_version`,
//! `get_status_frames` as Xen 4.20 answers them (d0 privileged, d1 / d2
//! domUs).

use super::*;
use crate::xen::abi::{
    GnttabGetStatusFrames, GnttabGetVersion, GnttabQuerySize, GnttabSetVersion, GnttabSetupTable,
};
use crate::xen::evtchn::DOMID_SELF;

/// Where a frame list goes (in the caller's RAM).
const LIST: u64 = B + 0x3000;
/// An address no domain has RAM at.
const NOWHERE: u64 = 0x7000_0000;

impl W {
    /// `GNTTABOP_<cmd>` by `caller` on `bytes` at ARG with `count`: x0 and
    /// the bytes after.
    fn op_bytes(&mut self, caller: u16, cmd: u64, bytes: &[u8], count: u64) -> (i64, Vec<u8>) {
        self.put(caller, ARG, bytes);
        let r = self.call(caller, [cmd, ARG, count]);
        (r, self.get(caller, ARG, bytes.len()).unwrap())
    }

    fn query_size(&mut self, caller: u16, dom: u16, count: u64) -> (i64, GnttabQuerySize) {
        let q = GnttabQuerySize {
            dom,
            nr_frames: 0xaaaa,
            max_nr_frames: 0xbbbb,
            status: 77,
        };
        let (r, b) = self.op_bytes(caller, 6, &q.to_bytes(), count);
        (
            r,
            GnttabQuerySize::from_bytes(b.as_slice().try_into().unwrap()),
        )
    }

    fn setup_table(
        &mut self,
        caller: u16,
        dom: u16,
        nr: u32,
        list: u64,
    ) -> (i64, GnttabSetupTable) {
        let t = GnttabSetupTable {
            dom,
            nr_frames: nr,
            status: 77,
            frame_list: list,
        };
        let (r, b) = self.op_bytes(caller, 2, &t.to_bytes(), 1);
        (
            r,
            GnttabSetupTable::from_bytes(b.as_slice().try_into().unwrap()),
        )
    }

    fn status_frames(&mut self, caller: u16, dom: u16, nr: u32, count: u64) -> (i64, i16) {
        let g = GnttabGetStatusFrames {
            nr_frames: nr,
            dom,
            status: 77,
            frame_list: LIST,
        };
        let (r, b) = self.op_bytes(caller, 9, &g.to_bytes(), count);
        let back = GnttabGetStatusFrames::from_bytes(b.as_slice().try_into().unwrap());
        assert_eq!(
            (back.nr_frames, back.dom, back.frame_list),
            (nr, dom, LIST),
            "only the status is written"
        );
        (r, back.status)
    }
}

fn einval() -> i64 {
    Errno::EINVAL.to_x0() as i64
}

fn efault() -> i64 {
    Errno::EFAULT.to_x0() as i64
}

#[test]
fn query_size_as_xen() {
    let mut w = W::new();
    let max = grant::DEFAULT_MAX_GRANT_FRAMES;
    let (r, q) = w.query_size(1, DOMID_SELF, 1);
    assert_eq!((r, q.nr_frames, q.max_nr_frames, q.status), (0, 1, max, 0));
    assert_eq!(w.query_size(1, 1, 1).1.status, 0, "its own id");
    // A control domain asks about another domain (XSM_TARGET).
    let crate::world::World {
        domains, pool, mem, ..
    } = &mut w.world;
    let d2 = domains.iter_mut().find(|d| d.id == 2).unwrap();
    d2.xen.grow_grant(2, 3, pool, mem).unwrap();
    let (r, q) = w.query_size(0, 2, 1);
    assert_eq!((r, q.nr_frames, q.max_nr_frames, q.status), (0, 3, max, 0));
    // A domU may not; nothing but the status changes then.
    let (r, q) = w.query_size(1, 2, 1);
    assert_eq!(
        (r, q.nr_frames, q.max_nr_frames, q.status),
        (0, 0xaaaa, 0xbbbb, grant::GNTST_PERMISSION_DENIED)
    );
    let (r, q) = w.query_size(0, 9, 1);
    assert_eq!((r, q.status), (0, grant::GNTST_BAD_DOMAIN));
    // count must be 1 (Xen's gnttab_query_size).
    assert_eq!(w.query_size(1, DOMID_SELF, 2).0, einval());
    assert_eq!(w.query_size(1, DOMID_SELF, 0).0, einval());
    assert_eq!(w.call(1, [6, NOWHERE, 1]), efault());
}

#[test]
fn setup_table_as_xen() {
    let mut w = W::new();
    let max = grant::DEFAULT_MAX_GRANT_FRAMES;
    w.put(1, LIST, &[0x11; 64]);
    let (r, t) = w.setup_table(1, DOMID_SELF, 2, LIST);
    assert_eq!((r, t.status, t.nr_frames, t.frame_list), (0, 0, 2, LIST));
    assert_eq!(w.dom(1).xen.grant.query_size().0, 2, "the table grew");
    // Frames a translated guest has not mapped have no gfn.
    let l = w.get(1, LIST, 24).unwrap();
    assert_eq!(l[..16], [0xff; 16], "INVALID_GFN twice");
    assert_eq!(l[16..], [0x11; 8], "nothing past nr_frames");
    assert_eq!(
        w.setup_table(1, DOMID_SELF, max + 1, LIST).1.status,
        grant::GNTST_GENERAL_ERROR
    );
    let (r, t) = w.setup_table(1, DOMID_SELF, 1, NOWHERE);
    assert_eq!(
        (r, t.status),
        (0, grant::GNTST_BAD_VIRT_ADDR),
        "a fault in frame_list"
    );
    assert_eq!(
        w.setup_table(1, 2, 1, LIST).1.status,
        grant::GNTST_PERMISSION_DENIED
    );
    assert_eq!(
        w.setup_table(1, 0x7000, 1, LIST).1.status,
        grant::GNTST_BAD_DOMAIN
    );
    assert_eq!(
        w.setup_table(0, 2, 1, LIST).1.status,
        grant::GNTST_OKAY,
        "privileged"
    );
    // count must be 1.
    let t = GnttabSetupTable {
        dom: DOMID_SELF,
        nr_frames: 1,
        status: 77,
        frame_list: LIST,
    };
    assert_eq!(w.op_bytes(1, 2, &t.to_bytes(), 0).0, einval());
    assert_eq!(w.op_bytes(1, 2, &t.to_bytes(), 2).0, einval());
    assert_eq!(w.call(1, [2, NOWHERE, 1]), efault());
}

#[test]
fn versions_as_xen_on_arm() {
    let mut w = W::new();
    let sv = |w: &mut W, v: u32, count: u64| {
        let (r, b) = w.op_bytes(1, 8, &GnttabSetVersion { version: v }.to_bytes(), count);
        (
            r,
            GnttabSetVersion::from_bytes(b.as_slice().try_into().unwrap()).version,
        )
    };
    assert_eq!(sv(&mut w, 1, 1), (0, 1), "Linux's request");
    assert_eq!(sv(&mut w, 1, 0), (0, 1), "count is not looked at");
    assert_eq!(
        sv(&mut w, 2, 1),
        (Errno::ENOSYS.to_x0() as i64, 1),
        "max_version 1 on Arm"
    );
    assert_eq!(sv(&mut w, 0, 1), (einval(), 1));
    assert_eq!(sv(&mut w, 3, 1), (einval(), 1));
    assert_eq!(w.call(1, [8, NOWHERE, 1]), efault());

    let gv = |w: &mut W, caller: u16, dom: u16| {
        let v = GnttabGetVersion {
            dom,
            pad: 0x5a5a,
            version: 77,
        };
        let (r, b) = w.op_bytes(caller, 10, &v.to_bytes(), 0);
        let back = GnttabGetVersion::from_bytes(b.as_slice().try_into().unwrap());
        assert_eq!(
            (back.dom, back.pad),
            (dom, 0x5a5a),
            "only version is written"
        );
        (r, back.version)
    };
    assert_eq!(gv(&mut w, 1, DOMID_SELF), (0, 1));
    assert_eq!(gv(&mut w, 0, 2), (0, 1), "a control domain asks another");
    assert_eq!(gv(&mut w, 1, 2), (Errno::EPERM.to_x0() as i64, 77));
    assert_eq!(gv(&mut w, 0, 9), (Errno::ESRCH.to_x0() as i64, 77));
    assert_eq!(w.call(1, [10, NOWHERE, 1]), efault());
}

#[test]
fn get_status_frames_of_a_v1_table() {
    let mut w = W::new();
    assert_eq!(w.status_frames(1, DOMID_SELF, 0, 1), (0, grant::GNTST_OKAY));
    assert_eq!(
        w.status_frames(1, DOMID_SELF, 1, 1),
        (0, grant::GNTST_GENERAL_ERROR),
        "v1: no status frames"
    );
    assert_eq!(
        w.status_frames(1, 2, 0, 1),
        (0, grant::GNTST_PERMISSION_DENIED)
    );
    assert_eq!(w.status_frames(0, 2, 0, 1), (0, grant::GNTST_OKAY));
    assert_eq!(w.status_frames(0, 9, 0, 1), (0, grant::GNTST_BAD_DOMAIN));
    assert_eq!(w.status_frames(1, DOMID_SELF, 0, 2).0, einval());
    assert_eq!(w.call(1, [9, NOWHERE, 1]), efault());
    // What hv still does not do.
    for cmd in [3, 4, 7, 11, 13] {
        assert_eq!(
            w.call(1, [cmd, ARG, 1]),
            Errno::ENOSYS.to_x0() as i64,
            "cmd {cmd}"
        );
    }
}

#[test]
fn empty_batches_answer_zero() {
    let mut w = W::new();
    for cmd in [0, 1, 5, 12] {
        assert_eq!(w.call(0, [cmd, NOWHERE, 0]), 0, "cmd {cmd} count 0");
    }
}

impl W {
    /// `XENMEM_add_to_physmap` by `caller` of its own grant frame `idx` at
    /// `gpfn` (what Linux's `gnttab_map` does for a translated guest).
    fn add_grant_frame(&mut self, caller: u16, idx: u64, gpfn: u64) -> i64 {
        let mut s = [0u8; 24];
        s[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
        s[4..8].copy_from_slice(&1u32.to_le_bytes()); // XENMAPSPACE_grant_table
        s[8..16].copy_from_slice(&idx.to_le_bytes());
        s[16..24].copy_from_slice(&gpfn.to_le_bytes());
        self.put(caller, ARG, &s);
        let mut ctx = Ctx::new(
            caller,
            0,
            Stage1::default(),
            &mut self.world,
            &mut self.arch,
        );
        let r = handle(
            Call {
                nr: nr::MEMORY_OP,
                args: [7, ARG, 0, 0, 0],
            },
            &mut ctx,
        );
        r.ret as i64
    }
}

/// Linux's `gnttab_expand`: `gnttab_map(cur, cur + extra - 1)` maps the new
/// frames with the largest index first, so the table grows once; entries
/// of the new frames are real (a grant there is copied from), the maximum
/// is Xen's default, and the frames go back to the pool with the domain.
#[test]
fn linux_grows_its_table_up_to_max_grant_frames() {
    let mut w = W::new();
    let base = grant::GUEST_GNTTAB_BASE >> 12;
    assert_eq!(w.add_grant_frame(1, 0, base), 0);
    let free = w.world.pool.free_frames();
    for idx in (1..4).rev() {
        assert_eq!(w.add_grant_frame(1, idx, base + idx), 0, "frame {idx}");
    }
    assert_eq!(w.world.pool.free_frames(), free - 3, "three frames taken");
    let (_, q) = w.query_size(1, DOMID_SELF, 1);
    assert_eq!(
        (q.nr_frames, q.max_nr_frames),
        (4, grant::DEFAULT_MAX_GRANT_FRAMES)
    );
    let grown: Vec<PhysAddr> = (1..4)
        .map(|i| w.dom(1).xen.grant.frame(i).unwrap())
        .collect();
    for (i, pa) in grown.iter().enumerate() {
        let e = w.dom(1).physmap().lookup(base + 1 + i as u64).unwrap();
        assert_eq!(e.pa, *pa, "mapped where Linux asked");
        assert_eq!(w.world.pool.frame(*pa).unwrap().owner, Some(1));
    }
    assert_eq!(
        w.get(1, (base + 3) << 12, 4096).unwrap(),
        [0; 4096],
        "a new frame is zeroed"
    );
    // d1 grants ref 2047 (the last entry of frame 3) through its mapping.
    let mut e = [0u8; 8];
    e[0..2].copy_from_slice(&RW.to_le_bytes());
    e[4..8].copy_from_slice(&(GRANTED_GFN as u32).to_le_bytes());
    w.put(1, ((base + 3) << 12) + 511 * 8, &e);
    let mut c = [0u8; crate::xen::abi::GnttabCopy::SIZE];
    let o = crate::xen::abi::GnttabCopy {
        source: crate::xen::abi::GnttabCopyPtr {
            u: 2047,
            domid: 1,
            offset: 0,
        },
        dest: crate::xen::abi::GnttabCopyPtr {
            u: (B >> 12) + 0x300,
            domid: DOMID_SELF,
            offset: 0,
        },
        len: MARK.len() as u16,
        flags: crate::xen::grant::gntcopy::SOURCE_GREF,
        status: 77,
    };
    c.copy_from_slice(&o.to_bytes());
    w.put(0, ARG, &c);
    assert_eq!(w.call(0, [5, ARG, 1]), 0);
    assert_eq!(w.get(0, ARG + 36, 2).unwrap(), [0, 0], "GNTST_okay");
    assert_eq!(w.get(0, B + 0x30_0000, MARK.len()).unwrap(), MARK);
    assert_eq!(
        w.get(1, ((base + 3) << 12) + 511 * 8, 2).unwrap(),
        RW.to_le_bytes()
    );
    // Up to the maximum, not past it; no status frames (v1).
    let max = u64::from(grant::DEFAULT_MAX_GRANT_FRAMES);
    assert_eq!(w.add_grant_frame(1, max - 1, base + max - 1), 0);
    assert_eq!(w.dom(1).xen.grant.nr_frames(), 64);
    let einval = Errno::EINVAL.to_x0() as i64;
    assert_eq!(w.add_grant_frame(1, max, base + max), einval);
    assert_eq!(
        w.add_grant_frame(1, 1 << 31, base + max),
        einval,
        "a status frame"
    );
    assert_eq!(w.add_grant_frame(1, u64::MAX, base + max), einval);
    assert_eq!(w.world.pool.free_frames(), free - 63);
    // setup_table within the table: no growth, the gfns where d1 put them.
    let (r, t) = w.setup_table(1, DOMID_SELF, 4, LIST);
    assert_eq!((r, t.status), (0, 0));
    let l = w.get(1, LIST, 32).unwrap();
    let gfns: Vec<u64> = l
        .chunks(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(gfns, [base, base + 1, base + 2, base + 3]);
    // The domain's end gives every frame back.
    w.destroy(1);
    for pa in grown {
        assert_eq!(w.world.pool.frame(pa).unwrap().owner, None, "{pa} freed");
    }
}

#[test]
fn a_table_that_cannot_grow_is_refused_whole() {
    let mut w = W::new();
    // Leave two pool frames: growing d2's table by three fails, nothing taken.
    let mut taken = Vec::new();
    while w.world.pool.free_frames() > 2 {
        taken.push(w.world.pool.alloc(9, 0).unwrap());
    }
    let (r, t) = w.setup_table(2, DOMID_SELF, 4, LIST);
    assert_eq!((r, t.status), (0, grant::GNTST_GENERAL_ERROR));
    assert_eq!(w.world.pool.free_frames(), 2);
    assert_eq!(w.dom(2).xen.grant.nr_frames(), 1);
    let base = grant::GUEST_GNTTAB_BASE >> 12;
    assert_eq!(
        w.add_grant_frame(2, 3, base + 3),
        Errno::EINVAL.to_x0() as i64
    );
    assert_eq!(w.world.pool.free_frames(), 2);
    // Two more fit.
    let (r, t) = w.setup_table(2, DOMID_SELF, 3, LIST);
    assert_eq!((r, t.status), (0, 0));
    assert_eq!(w.dom(2).xen.grant.nr_frames(), 3);
    assert_eq!(w.world.pool.free_frames(), 0);
    for pa in taken {
        let _ = w.world.pool.put(pa);
    }
}
