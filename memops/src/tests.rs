//! Host tests of the stage-2 tables.

extern crate std;

use std::vec::Vec;

use crate::sim::SimTableMem;
use crate::stage2::level_size;
use crate::*;

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;

fn leaves(s: &Stage2, m: &SimTableMem) -> Vec<(u64, u64, u64)> {
    let mut v = Vec::new();
    s.for_each_leaf(m, &mut |ipa, pa, size, _| v.push((ipa.0, pa.0, size)));
    v
}

#[test]
fn new_rejects_bad_ipa_bits_and_sets_vtcr() {
    let mut m = SimTableMem::new();
    assert_eq!(
        Stage2::new(&mut m, 31),
        Err(Error::UnsupportedIpaBits { ipa_bits: 31 })
    );
    assert_eq!(
        Stage2::new(&mut m, 49),
        Err(Error::UnsupportedIpaBits { ipa_bits: 49 })
    );
    let s = Stage2::new(&mut m, 40).unwrap();
    assert_eq!(s.start_level(), 0);
    // T0SZ=24, SL0=0b10, IRGN0=ORGN0=WBWA, SH0=inner, TG0=4K.
    assert_eq!(
        s.vtcr_bits(),
        24 | (0b10 << 6) | (1 << 8) | (1 << 10) | (3 << 12)
    );
    let s = Stage2::new(&mut m, 39).unwrap();
    assert_eq!(s.start_level(), 1);
    assert_eq!(s.vtcr_bits() & 0xff, 25 | (0b01 << 6));
    let mut m2 = SimTableMem::new();
    m2.limit = Some(0);
    assert!(matches!(
        Stage2::new(&mut m2, 40),
        Err(Error::OutOfTableMemory { .. })
    ));
}

#[test]
fn map_page_lookup_and_unmap() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    let inv = s
        .map(
            &mut m,
            Ipa(0x4000_1000),
            PhysAddr(0x9_0000_3000),
            PAGE_SIZE,
            S2Attrs::RAM,
        )
        .unwrap();
    assert!(inv.is_empty(), "mapping over nothing needs no invalidation");
    assert_eq!(
        s.lookup(&m, Ipa(0x4000_1abc)),
        Some((PhysAddr(0x9_0000_3abc), S2Attrs::RAM))
    );
    assert_eq!(s.lookup(&m, Ipa(0x4000_2000)), None);
    assert_eq!(s.lookup(&m, Ipa(0x4000_0fff)), None);
    assert_eq!(s.lookup(&m, Ipa(1 << 41)), None);
    let inv = s.unmap(&mut m, Ipa(0x4000_1000), PAGE_SIZE).unwrap();
    assert_eq!(
        inv.ranges(),
        &[IpaRange {
            base: Ipa(0x4000_1000),
            pages: 1,
            level: 3
        }]
    );
    assert!(inv.needs_stage1());
    assert_eq!(s.lookup(&m, Ipa(0x4000_1000)), None);
    assert!(m.sync_invalidations.is_empty());
}

#[test]
fn blocks_are_used_where_aligned() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    // 4K + 2M + 1G + 2M + 4K, IPA and PA congruent mod 1 GiB.
    let ipa = GIB - MIB2 - PAGE_SIZE;
    let pa = 0x40_0000_0000 + ipa;
    let size = PAGE_SIZE + MIB2 + GIB + MIB2 + PAGE_SIZE;
    s.map(&mut m, Ipa(ipa), PhysAddr(pa), size, S2Attrs::RAM)
        .unwrap();
    let l = leaves(&s, &m);
    let sizes: Vec<u64> = l.iter().map(|x| x.2).collect();
    assert_eq!(sizes, [PAGE_SIZE, MIB2, GIB, MIB2, PAGE_SIZE]);
    for (i, p, _) in &l {
        assert_eq!(p - i, pa - ipa);
    }
    assert_eq!(
        s.lookup(&m, Ipa(GIB + 0x123_4567)),
        Some((PhysAddr(pa - ipa + GIB + 0x123_4567), S2Attrs::RAM))
    );
    // Unmapping the whole range removes one entry per leaf, at its level.
    let inv = s.unmap(&mut m, Ipa(ipa), size).unwrap();
    let lv: Vec<(u64, u8)> = inv.ranges().iter().map(|r| (r.pages, r.level)).collect();
    assert_eq!(lv, [(1, 3), (512, 2), (1 << 18, 1), (512, 2), (1, 3)]);
    assert_eq!(inv.entries(), 5);
    assert!(leaves(&s, &m).is_empty());
}

#[test]
fn misaligned_pa_falls_back_to_pages() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    s.map(
        &mut m,
        Ipa(0x4000_0000),
        PhysAddr(0x9_0000_1000),
        MIB2,
        S2Attrs::RAM,
    )
    .unwrap();
    let l = leaves(&s, &m);
    assert_eq!(l.len(), 512);
    assert!(l.iter().all(|x| x.2 == PAGE_SIZE));
}

#[test]
fn partial_unmap_splits_block_with_break_before_make() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    s.map(
        &mut m,
        Ipa(0x4000_0000),
        PhysAddr(0x8000_0000),
        MIB2,
        S2Attrs::RAM,
    )
    .unwrap();
    assert_eq!(leaves(&s, &m).len(), 1);
    let inv = s.unmap(&mut m, Ipa(0x4000_5000), PAGE_SIZE).unwrap();
    // The block was broken and flushed synchronously before the table was written.
    assert_eq!(m.sync_invalidations.len(), 1);
    assert_eq!(
        m.sync_invalidations[0].ranges(),
        &[IpaRange {
            base: Ipa(0x4000_0000),
            pages: 512,
            level: 2
        }]
    );
    assert_eq!(m.bbm_violations, 0);
    assert_eq!(m.sync_roots, [s.root()]);
    assert_eq!(inv.ranges().len(), 1);
    assert_eq!(inv.ranges()[0].level, 3);
    assert_eq!(s.lookup(&m, Ipa(0x4000_5000)), None);
    assert_eq!(
        s.lookup(&m, Ipa(0x4000_4008)),
        Some((PhysAddr(0x8000_4008), S2Attrs::RAM))
    );
    assert_eq!(
        s.lookup(&m, Ipa(0x4000_6000)),
        Some((PhysAddr(0x8000_6000), S2Attrs::RAM))
    );
    assert_eq!(leaves(&s, &m).len(), 511);
}

#[test]
fn partial_unmap_of_1g_block_splits_twice() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    s.map(&mut m, Ipa(GIB), PhysAddr(4 * GIB), GIB, S2Attrs::RAM)
        .unwrap();
    s.unmap(&mut m, Ipa(GIB + MIB2 + PAGE_SIZE), PAGE_SIZE)
        .unwrap();
    assert_eq!(m.sync_invalidations.len(), 2);
    assert_eq!(m.sync_invalidations[0].ranges()[0].level, 1);
    assert_eq!(m.sync_invalidations[1].ranges()[0].level, 2);
    // 511 2M blocks + 511 pages.
    assert_eq!(leaves(&s, &m).len(), 511 + 511);
    assert_eq!(
        s.lookup(&m, Ipa(GIB + 3 * MIB2)),
        Some((PhysAddr(4 * GIB + 3 * MIB2), S2Attrs::RAM))
    );
}

#[test]
fn unmap_of_unmapped_range_is_empty() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    let inv = s.unmap(&mut m, Ipa(0x4000_0000), 16 * PAGE_SIZE).unwrap();
    assert!(inv.is_empty());
    s.map(
        &mut m,
        Ipa(0x4000_2000),
        PhysAddr(0x1000),
        PAGE_SIZE,
        S2Attrs::RAM,
    )
    .unwrap();
    let inv = s.unmap(&mut m, Ipa(0x4000_0000), 16 * PAGE_SIZE).unwrap();
    assert_eq!(inv.pages(), 1);
}

#[test]
fn bad_ranges_are_errors_and_change_nothing() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    let r = S2Attrs::RAM;
    assert!(matches!(
        s.map(&mut m, Ipa(0x1001), PhysAddr(0), PAGE_SIZE, r),
        Err(Error::Misaligned { .. })
    ));
    assert!(matches!(
        s.map(&mut m, Ipa(0x1000), PhysAddr(0x10), PAGE_SIZE, r),
        Err(Error::Misaligned { pa: Some(_), .. })
    ));
    assert!(matches!(
        s.map(&mut m, Ipa(0x1000), PhysAddr(0), 100, r),
        Err(Error::Misaligned { .. })
    ));
    assert!(matches!(
        s.map(&mut m, Ipa(0x1000), PhysAddr(0), 0, r),
        Err(Error::EmptyRange { .. })
    ));
    assert!(matches!(
        s.map(&mut m, Ipa(!0xfff), PhysAddr(0), 2 * PAGE_SIZE, r),
        Err(Error::Overflow { .. })
    ));
    assert!(matches!(
        s.map(
            &mut m,
            Ipa((1 << 40) - PAGE_SIZE),
            PhysAddr(0),
            2 * PAGE_SIZE,
            r
        ),
        Err(Error::IpaOutOfRange { ipa_bits: 40, .. })
    ));
    assert!(matches!(
        s.map(&mut m, Ipa(0), PhysAddr(1 << 48), PAGE_SIZE, r),
        Err(Error::PaOutOfRange { .. })
    ));
    assert!(matches!(
        s.map(&mut m, Ipa(0), PhysAddr(!0xfff), 2 * PAGE_SIZE, r),
        Err(Error::Overflow { .. })
    ));
    assert!(matches!(
        s.unmap(&mut m, Ipa(1 << 40), PAGE_SIZE),
        Err(Error::IpaOutOfRange { .. })
    ));
    assert!(leaves(&s, &m).is_empty());
    assert_eq!(m.live_tables(), 1);
    assert_eq!(Error::EmptyRange { ipa: Ipa(0) }.xen_errno(), -22);
}

#[test]
fn remap_to_other_pa_uses_break_before_make_permission_change_does_not() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    s.map(
        &mut m,
        Ipa(0x4000_0000),
        PhysAddr(0x1000),
        PAGE_SIZE,
        S2Attrs::RAM,
    )
    .unwrap();
    let inv = s
        .map(
            &mut m,
            Ipa(0x4000_0000),
            PhysAddr(0x1000),
            PAGE_SIZE,
            S2Attrs::RAM_RO,
        )
        .unwrap();
    assert!(m.sync_invalidations.is_empty());
    assert_eq!(inv.pages(), 1, "permission reduction must be invalidated");
    let inv = s
        .map(
            &mut m,
            Ipa(0x4000_0000),
            PhysAddr(0x2000),
            PAGE_SIZE,
            S2Attrs::RAM,
        )
        .unwrap();
    assert!(inv.is_empty());
    assert_eq!(m.sync_invalidations.len(), 1);
    assert_eq!(m.bbm_violations, 0);
    assert_eq!(
        s.lookup(&m, Ipa(0x4000_0000)),
        Some((PhysAddr(0x2000), S2Attrs::RAM))
    );
}

#[test]
fn protect_changes_attributes_of_mapped_pages_only() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    s.map(
        &mut m,
        Ipa(0x4000_0000),
        PhysAddr(0x8000_0000),
        MIB2,
        S2Attrs::RAM,
    )
    .unwrap();
    let inv = s
        .protect(
            &mut m,
            Ipa(0x4000_0000),
            MIB2 + 4 * PAGE_SIZE,
            S2Attrs::RAM_RO,
        )
        .unwrap();
    assert_eq!(inv.entries(), 1);
    assert_eq!(
        s.lookup(&m, Ipa(0x4010_0000)),
        Some((PhysAddr(0x8010_0000), S2Attrs::RAM_RO))
    );
    assert_eq!(s.lookup(&m, Ipa(0x4020_0000)), None);
}

#[test]
fn out_of_table_memory_reports_where_it_stopped() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    m.limit = Some(3); // level 1, 2 and one level 3 table; the second level 3 table fails.
    let r = s.map(
        &mut m,
        Ipa(0x4000_1000),
        PhysAddr(0x1000),
        MIB2,
        S2Attrs::RAM,
    );
    assert_eq!(
        r,
        Err(Error::OutOfTableMemory {
            ipa: Ipa(0x4020_0000)
        })
    );
    assert!(s.lookup(&m, Ipa(0x401f_f000)).is_some());
    assert!(s.lookup(&m, Ipa(0x4020_0000)).is_none());
}

#[test]
fn destroy_frees_every_table() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 48).unwrap();
    for i in 0..8u64 {
        s.map(
            &mut m,
            Ipa(i * (1 << 39) + 0x5000),
            PhysAddr(0x1000 * i),
            PAGE_SIZE,
            S2Attrs::DEVICE,
        )
        .unwrap();
    }
    assert_eq!(m.live_tables(), 1 + 8 * 3);
    s.destroy(&mut m);
    assert_eq!(m.live_tables(), 0);
    assert_eq!(m.freed, 25);
}

#[test]
fn bbm_predicate() {
    let page = |pa: u64, a: S2Attrs| pa | a.descriptor_bits() | 0b11;
    let block = |pa: u64, a: S2Attrs| pa | a.descriptor_bits() | 0b01;
    assert!(!is_bbm_required(0, page(0x1000, S2Attrs::RAM)));
    assert!(!is_bbm_required(page(0x1000, S2Attrs::RAM), 0));
    assert!(!is_bbm_required(
        page(0x1000, S2Attrs::RAM),
        page(0x1000, S2Attrs::RAM_RO)
    ));
    assert!(is_bbm_required(
        page(0x1000, S2Attrs::RAM),
        page(0x2000, S2Attrs::RAM)
    ));
    assert!(is_bbm_required(
        page(0x1000, S2Attrs::RAM),
        page(0x1000, S2Attrs::DEVICE)
    ));
    assert!(is_bbm_required(
        block(0x20_0000, S2Attrs::RAM),
        0x5000 | 0b11
    ));
    assert_eq!(level_size(2), MIB2);
}

#[test]
fn attrs_roundtrip() {
    for a in [S2Attrs::RAM, S2Attrs::RAM_RO, S2Attrs::DEVICE] {
        assert_eq!(S2Attrs::from_descriptor(a.descriptor_bits()), a);
    }
    // Normal WB MemAttr[3:0] = 0b1111 in bits [5:2]; AF bit 10.
    assert_eq!(S2Attrs::RAM.descriptor_bits() & 0x43c, 0x43c);
    assert_eq!(S2Attrs::DEVICE.descriptor_bits() & 0x3c, 0b0001 << 2);
    assert_ne!(S2Attrs::DEVICE.descriptor_bits() & (1 << 54), 0);
}
