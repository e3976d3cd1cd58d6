//! `GNTTABOP_copy` against the fake arch: d0 (netback's domain) copies
//! between grants of d1 / d2 (frontends) and its own frames.

use super::*;
use crate::domain::EndReason;
use crate::xen::abi::{GnttabCopy, GnttabCopyPtr};
use crate::xen::evtchn::DOMID_SELF;
use crate::xen::grant::gntcopy;

/// d2's page that it grants as a dest.
const D2_GFN: u64 = (B >> 12) + 0x20;
/// d0's own frames (2 MiB into its RAM, clear of ARG's arrays).
const OWN_GFN: u64 = (B >> 12) + 0x200;
const SRC: u16 = gntcopy::SOURCE_GREF;
const DST: u16 = gntcopy::DEST_GREF;

fn gref(domid: u16, r: u32, offset: u16) -> GnttabCopyPtr {
    GnttabCopyPtr {
        u: u64::from(r),
        domid,
        offset,
    }
}

fn gmfn(domid: u16, gfn: u64, offset: u16) -> GnttabCopyPtr {
    GnttabCopyPtr {
        u: gfn,
        domid,
        offset,
    }
}

fn op(source: GnttabCopyPtr, dest: GnttabCopyPtr, len: u16, flags: u16) -> GnttabCopy {
    GnttabCopy {
        source,
        dest,
        len,
        flags,
        status: 77,
    }
}

impl W {
    /// Write `ops` at ARG in `caller`'s RAM, issue `GNTTABOP_copy` on them
    /// (one invocation: `count` = `ops.len()`): the reply and the structs
    /// as read back.
    fn copy_raw(&mut self, caller: u16, ops: &[GnttabCopy]) -> (Reply, Vec<GnttabCopy>) {
        for (i, o) in ops.iter().enumerate() {
            self.put(caller, ARG + (i * GnttabCopy::SIZE) as u64, &o.to_bytes());
        }
        let r = self.raw(caller, [5, ARG, ops.len() as u64]);
        let back = (0..ops.len())
            .map(|i| {
                let b = self
                    .get(
                        caller,
                        ARG + (i * GnttabCopy::SIZE) as u64,
                        GnttabCopy::SIZE,
                    )
                    .unwrap();
                GnttabCopy::from_bytes(b.as_slice().try_into().unwrap())
            })
            .collect();
        (r, back)
    }

    /// One op by d0: its status (the hypercall itself must answer 0).
    fn copy1(&mut self, o: GnttabCopy) -> i16 {
        let (r, back) = self.copy_raw(0, &[o]);
        assert_eq!(r, Reply::ret(Ok(0)), "the hypercall succeeds: {o:?}");
        let mut want = o;
        want.status = back[0].status;
        assert_eq!(back[0], want, "only the status is written back");
        back[0].status
    }

    fn nothing_pinned(&self) {
        for d in [1, 2] {
            for r in 0..16 {
                assert!(self.dom(d).xen.grant.active(r).is_none(), "d{d} ref {r}");
            }
        }
    }
}

#[test]
fn copy_moves_bytes_between_two_domains_grants_without_a_tlbi() {
    let mut w = W::new();
    w.grant(1, 1, RW | gtf::READONLY, 0, GRANTED_GFN);
    w.grant(2, 2, RW, 0, D2_GFN);
    w.put(2, D2_GFN << 12, &[0xee; 64]);
    let pa1 = w.granted_pa();
    let pa2 = w.dom(2).physmap().lookup(D2_GFN).unwrap().pa;
    let tlb = w.tlb_ops().len();
    let st = w.copy1(op(
        gref(1, 1, 0),
        gref(2, 2, 0x10),
        MARK.len() as u16,
        SRC | DST,
    ));
    assert_eq!(st, grant::GNTST_OKAY);
    let got = w.get(2, (D2_GFN << 12) + 0x10, MARK.len()).unwrap();
    assert_eq!(got, MARK, "d1's bytes are in d2's page");
    assert_eq!(
        w.get(2, D2_GFN << 12, 0x10).unwrap(),
        [0xee; 0x10],
        "before the range untouched"
    );
    let after = (D2_GFN << 12) + 0x10 + MARK.len() as u64;
    assert_eq!(w.get(2, after, 4).unwrap(), [0xee; 4], "after it too");
    assert_eq!(
        w.tlb_ops().len(),
        tlb,
        "a copy changes no mapping: no TLB maintenance"
    );
    // The pins were dropped and the status bits cleared after the copy.
    assert_eq!(w.entry(1, 1).0, RW | gtf::READONLY);
    assert_eq!(w.entry(2, 2).0, RW);
    w.nothing_pinned();
    assert_eq!((w.refs(pa1), w.refs(pa2)), (1, 1), "no page reference kept");
    assert!(
        w.dom(0).physmap().lookup(HOST >> 12).is_none(),
        "nothing mapped"
    );
}

#[test]
fn netback_tx_and_rx_copy_through_its_own_frames() {
    let mut w = W::new();
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    let own = OWN_GFN << 12;
    // tx: from the frontend's grant into d0's frame (DOMID_SELF).
    let tx = op(
        gref(1, 1, 0),
        gmfn(DOMID_SELF, OWN_GFN, 0x800),
        MARK.len() as u16,
        SRC,
    );
    assert_eq!(w.copy1(tx), grant::GNTST_OKAY);
    assert_eq!(w.get(0, own + 0x800, MARK.len()).unwrap(), MARK);
    // rx: from d0's frame into the frontend's grant.
    w.put(0, own + 0x10, b"rx packet");
    let rx = op(gmfn(DOMID_SELF, OWN_GFN, 0x10), gref(1, 1, 0x200), 9, DST);
    assert_eq!(w.copy1(rx), grant::GNTST_OKAY);
    assert_eq!(
        w.get(1, (GRANTED_GFN << 12) + 0x200, 9).unwrap(),
        b"rx packet"
    );
    // Frame to frame within d0, and a grant d0 gave itself (DOMID_SELF).
    let f2f = op(
        gmfn(DOMID_SELF, OWN_GFN, 0x10),
        gmfn(DOMID_SELF, OWN_GFN + 1, 0),
        9,
        0,
    );
    assert_eq!(w.copy1(f2f), grant::GNTST_OKAY);
    assert_eq!(w.get(0, own + 0x1000, 9).unwrap(), b"rx packet");
    w.grant(0, 9, RW, 0, OWN_GFN + 2);
    let own_gref = op(gref(DOMID_SELF, 9, 0), gref(0, 9, 0x100), 9, SRC | DST);
    w.put(0, own + 0x2000, b"self gref");
    assert_eq!(w.copy1(own_gref), grant::GNTST_OKAY);
    assert_eq!(w.get(0, own + 0x2100, 9).unwrap(), b"self gref");
    assert_eq!(w.entry(0, 9).0, RW);
    assert_eq!(w.entry(1, 1).0, RW);
    w.nothing_pinned();
    // The whole page, at both ends.
    let page = op(gref(1, 1, 0), gmfn(DOMID_SELF, OWN_GFN + 3, 0), 4096, SRC);
    assert_eq!(w.copy1(page), grant::GNTST_OKAY);
    let a = w.get(1, GRANTED_GFN << 12, 4096).unwrap();
    assert_eq!(w.get(0, own + 0x3000, 4096).unwrap(), a);
}

#[test]
fn copy_errors_are_xens() {
    let mut w = W::new();
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    w.grant(1, 2, RW | gtf::READONLY, 0, GRANTED_GFN);
    w.grant(1, 3, 0, 0, GRANTED_GFN); // not (or no longer) granted
    w.grant(1, 4, RW, 2, GRANTED_GFN); // granted to d2
    w.grant(1, 5, RW, 0, 0x7_0000); // a frame d1 does not have
    w.grant(1, 6, gtf::TYPE_MASK, 0, GRANTED_GFN); // GTF_accept_transfer|..
    let own = gmfn(DOMID_SELF, OWN_GFN, 0);
    w.put(0, OWN_GFN << 12, &[0x55; 16]);
    let untouched = |w: &mut W, what: &str| {
        assert_eq!(
            w.get(0, OWN_GFN << 12, 16).unwrap(),
            [0x55; 16],
            "{what}: nothing copied"
        );
        assert_eq!(
            w.get(1, GRANTED_GFN << 12, MARK.len()).unwrap(),
            MARK,
            "{what}"
        );
        w.nothing_pinned();
        for (r, f) in [(1, RW), (2, RW | gtf::READONLY), (3, 0), (4, RW), (5, RW)] {
            assert_eq!(w.entry(1, r).0, f, "{what}: ref {r}'s flags as before");
        }
    };
    let cases: &[(&str, GnttabCopy, i16)] = &[
        (
            "a read-only grant as the dest",
            op(own, gref(1, 2, 0), 8, DST),
            grant::GNTST_GENERAL_ERROR,
        ),
        (
            "an entry not GTF_permit_access",
            op(gref(1, 3, 0), own, 8, SRC),
            grant::GNTST_GENERAL_ERROR,
        ),
        (
            "an entry of another type",
            op(gref(1, 6, 0), own, 8, SRC),
            grant::GNTST_GENERAL_ERROR,
        ),
        (
            "an entry granted to another domain",
            op(gref(1, 4, 0), own, 8, SRC),
            grant::GNTST_GENERAL_ERROR,
        ),
        (
            "a ref past the table",
            op(gref(1, 512, 0), own, 8, SRC),
            grant::GNTST_BAD_GNTREF,
        ),
        (
            "a ref past the table (dest)",
            op(own, gref(1, u32::MAX, 0), 8, DST),
            grant::GNTST_BAD_GNTREF,
        ),
        (
            "a granted frame that is not the granter's RAM",
            op(gref(1, 5, 0), own, 8, SRC),
            grant::GNTST_BAD_PAGE,
        ),
        (
            "no such source domain",
            op(gref(9, 1, 0), own, 8, SRC),
            grant::GNTST_BAD_DOMAIN,
        ),
        (
            "no such dest domain",
            op(own, gref(DOMID_SELF - 1, 1, 0), 8, DST),
            grant::GNTST_BAD_DOMAIN,
        ),
        (
            "a frame of another domain, even for a privileged caller",
            op(gmfn(1, GRANTED_GFN, 0), own, 8, 0),
            grant::GNTST_PERMISSION_DENIED,
        ),
        (
            "a frame named by the caller's own id (only DOMID_SELF)",
            op(gmfn(0, OWN_GFN + 1, 0), own, 8, 0),
            grant::GNTST_PERMISSION_DENIED,
        ),
        (
            "a dest frame of another domain",
            op(gref(1, 1, 0), gmfn(1, GRANTED_GFN, 0), 8, SRC),
            grant::GNTST_PERMISSION_DENIED,
        ),
        (
            "a source frame the caller does not have",
            op(gmfn(DOMID_SELF, 0x7_0000, 0), gref(1, 1, 0), 8, DST),
            grant::GNTST_BAD_PAGE,
        ),
        (
            "a dest frame the caller does not have",
            op(gref(1, 1, 0), gmfn(DOMID_SELF, u64::MAX, 0), 8, SRC),
            grant::GNTST_BAD_PAGE,
        ),
        (
            "source offset + len past the page",
            op(gref(1, 1, 4000), own, 97, SRC),
            grant::GNTST_BAD_COPY_ARG,
        ),
        (
            "dest offset + len past the page",
            op(gref(1, 1, 0), gmfn(DOMID_SELF, OWN_GFN, 0xffff), 1, SRC),
            grant::GNTST_BAD_COPY_ARG,
        ),
        (
            "len past a page",
            op(gref(1, 1, 0), own, 4097, SRC),
            grant::GNTST_BAD_COPY_ARG,
        ),
        (
            "the grant is checked before the range (gnttab_copy_one's order)",
            op(gref(1, 512, 4000), own, 4000, SRC),
            grant::GNTST_BAD_GNTREF,
        ),
        (
            "the domains before the grants",
            op(gref(1, 512, 0), gref(9, 1, 0), 8, SRC | DST),
            grant::GNTST_BAD_DOMAIN,
        ),
    ];
    for (what, o, want) in cases {
        assert_eq!(w.copy1(*o), *want, "{what}");
        untouched(&mut w, what);
    }
    // The source was claimed (pinned, GTF_reading) before the dest was
    // refused: both are released.
    let o = op(gref(1, 1, 0), gref(1, 2, 0), 8, SRC | DST);
    assert_eq!(w.copy1(o), grant::GNTST_GENERAL_ERROR);
    untouched(&mut w, "source released after a refused dest");
    // A foreign page mapped in the caller's p2m is not its frame.
    let m = w.map(1, 1, gntmap::HOST_MAP, HOST);
    assert_eq!(m.status, grant::GNTST_OKAY);
    let fgn = op(gmfn(DOMID_SELF, HOST >> 12, 0), own, 8, 0);
    assert_eq!(w.copy1(fgn), grant::GNTST_BAD_PAGE);
    // len 0 is done before anything is looked at.
    let zero = op(gref(9, 512, 0xffff), gmfn(5, u64::MAX, 0xffff), 0, 0);
    assert_eq!(w.copy1(zero), grant::GNTST_OKAY);
}

#[test]
fn copy_keeps_the_pins_of_the_callers_mappings() {
    let mut w = W::new();
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    let ro = w.map(1, 1, gntmap::HOST_MAP | gntmap::READONLY, HOST);
    assert_eq!(ro.status, grant::GNTST_OKAY);
    assert_eq!(w.entry(1, 1).0, RW | gtf::READING);
    // Copy into the entry d0 maps read-only: GTF_writing for the copy only.
    w.put(0, OWN_GFN << 12, b"into a mapped grant");
    let o = op(gmfn(DOMID_SELF, OWN_GFN, 0), gref(1, 1, 0x300), 19, DST);
    assert_eq!(w.copy1(o), grant::GNTST_OKAY);
    assert_eq!(w.get(0, HOST + 0x300, 19).unwrap(), b"into a mapped grant");
    assert_eq!(
        w.entry(1, 1).0,
        RW | gtf::READING,
        "the mapping's bit stays"
    );
    let a = w.dom(1).xen.grant.active(1).unwrap();
    assert_eq!((a.read_pins, a.write_pins), (1, 0));
    // And out of it.
    let o = op(gref(1, 1, 0), gmfn(DOMID_SELF, OWN_GFN, 0x100), 4, SRC);
    assert_eq!(w.copy1(o), grant::GNTST_OKAY);
    assert_eq!(w.get(0, (OWN_GFN << 12) + 0x100, 4).unwrap(), &MARK[..4]);
    assert_eq!(w.entry(1, 1).0, RW | gtf::READING);
    // The granter makes the entry read-only while d0 maps it: a copy into
    // it is refused and GTF_writing is not left behind.
    w.grant(1, 1, RW | gtf::READONLY | gtf::READING, 0, GRANTED_GFN);
    let o = op(gmfn(DOMID_SELF, OWN_GFN, 0), gref(1, 1, 0), 4, DST);
    assert_eq!(w.copy1(o), grant::GNTST_GENERAL_ERROR);
    assert_eq!(w.entry(1, 1).0, RW | gtf::READONLY | gtf::READING);
    // Another domain's copy of a grant d0 has pinned: refused.
    w.grant(1, 1, RW | gtf::READING, 0, GRANTED_GFN);
    w.put(2, D2_GFN << 12, &[1; 4]);
    let by2 = op(gref(1, 1, 0), gmfn(DOMID_SELF, D2_GFN, 0), 4, SRC);
    w.put(2, ARG, &by2.to_bytes());
    assert_eq!(w.call(2, [5, ARG, 1]), 0);
    let st = w.get(2, ARG + 36, 2).unwrap();
    assert_eq!(
        i16::from_le_bytes([st[0], st[1]]),
        grant::GNTST_GENERAL_ERROR
    );
    assert_eq!(w.unmap(ro.handle, HOST), grant::GNTST_OKAY);
    assert_eq!(w.entry(1, 1).0, RW);
}

#[test]
fn a_destroyed_or_dying_granter_is_a_bad_domain() {
    let mut w = W::new();
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    w.grant(1, 2, RW, 0, GRANTED_GFN + 1);
    let m = w.map(1, 1, gntmap::HOST_MAP, HOST);
    assert_eq!(m.status, grant::GNTST_OKAY);
    let from = |r| op(gref(1, r, 0), gmfn(DOMID_SELF, OWN_GFN, 0), 8, SRC);
    // Dying (destroyed, its vCPUs not yet stopped): a grant d0 has pinned
    // is refused (acquire_grant_for_copy: rd->is_dying).
    let i = w.idx(1);
    w.world.domains[i].ending = Some(EndReason::Destroyed);
    assert_eq!(w.copy1(from(1)), grant::GNTST_BAD_DOMAIN);
    w.world.domains[i].ending = None;
    assert_eq!(w.copy1(from(1)), grant::GNTST_OKAY);
    // Gone: no such domain, for the mapped grant and for any other.
    w.destroy(1);
    assert_eq!(w.copy1(from(1)), grant::GNTST_BAD_DOMAIN);
    assert_eq!(w.copy1(from(2)), grant::GNTST_BAD_DOMAIN);
    let to = op(gmfn(DOMID_SELF, OWN_GFN, 0), gref(1, 2, 0), 8, DST);
    assert_eq!(w.copy1(to), grant::GNTST_BAD_DOMAIN);
    // d0's mapping still reads the page; its unmap still works.
    assert_eq!(w.get(0, HOST, MARK.len()).unwrap(), MARK);
    assert_eq!(w.unmap(m.handle, HOST), grant::GNTST_OKAY);
}

#[test]
fn a_long_copy_batch_continues_after_the_budget() {
    let mut w = W::new();
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    // Byte i of d1's page to byte i of d0's frame, one op each.
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    w.put(1, GRANTED_GFN << 12, &pattern);
    let n = GRANT_BUDGET as usize + 3;
    let ops: Vec<GnttabCopy> = (0..n)
        .map(|i| {
            op(
                gref(1, 1, i as u16),
                gmfn(DOMID_SELF, OWN_GFN, i as u16),
                1,
                SRC,
            )
        })
        .collect();
    let tlb = w.tlb_ops().len();
    let (r, back) = w.copy_raw(0, &ops);
    let next = ARG + u64::from(GRANT_BUDGET) * GnttabCopy::SIZE as u64;
    assert_eq!(
        r.action,
        Action::Continuation {
            args: [5, next, 3],
            block: false
        },
        "Xen's continuation: uop advanced by the ops done, count = those left"
    );
    assert!(back[..GRANT_BUDGET as usize].iter().all(|o| o.status == 0));
    assert!(
        back[GRANT_BUDGET as usize..].iter().all(|o| o.status == 77),
        "not yet done"
    );
    assert_eq!(
        w.get(0, OWN_GFN << 12, GRANT_BUDGET as usize).unwrap(),
        pattern[..GRANT_BUDGET as usize]
    );
    assert_eq!(
        w.get(0, (OWN_GFN << 12) + u64::from(GRANT_BUDGET), 3)
            .unwrap(),
        [0; 3]
    );
    // The re-issued call finishes the batch.
    assert_eq!(w.call(0, [5, next, 3]), 0);
    assert_eq!(w.get(0, OWN_GFN << 12, n).unwrap(), pattern[..n]);
    for i in 0..3 {
        let at = next + (i * GnttabCopy::SIZE) as u64 + 36;
        assert_eq!(w.get(0, at, 2).unwrap(), [0, 0]);
    }
    assert_eq!(w.entry(1, 1).0, RW);
    w.nothing_pinned();
    assert_eq!(w.tlb_ops().len(), tlb, "no TLB maintenance");
}

#[test]
fn copy_hypercall_level_answers() {
    let mut w = W::new();
    assert_eq!(w.call(0, [5, ARG, 0]), 0, "count 0");
    assert_eq!(
        w.call(0, [5, 0x7000_0000, 1]),
        Errno::EFAULT.to_x0() as i64,
        "unreadable array"
    );
    assert_eq!(
        w.call(0, [5 | 1 << 12, ARG, 1]),
        Errno::EINVAL.to_x0() as i64,
        "opaque bits"
    );
    assert_eq!(
        w.call(0, [5, ARG, 1 << 31]),
        Errno::EINVAL.to_x0() as i64,
        "negative count"
    );
    // An array whose second struct is unreadable: the first is done, then -EFAULT.
    w.grant(1, 1, RW, 0, GRANTED_GFN);
    let end = B + (8 << 20) - GnttabCopy::SIZE as u64;
    let o = op(gref(1, 1, 0), gmfn(DOMID_SELF, OWN_GFN, 0), 4, SRC);
    w.put(0, end, &o.to_bytes());
    assert_eq!(w.call(0, [5, end, 2]), Errno::EFAULT.to_x0() as i64);
    assert_eq!(
        w.get(0, end + 36, 2).unwrap(),
        [0, 0],
        "the first op's status"
    );
    assert_eq!(w.get(0, OWN_GFN << 12, 4).unwrap(), &MARK[..4]);
}
