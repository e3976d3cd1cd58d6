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

// ---- 2 MiB promotion of contiguous page runs (issue 14 item 3) ----

const WIN: u64 = 0x1_0000_0000;
const FRAMES: u64 = 0x8000_0000;

/// Map the 512 pages of the region at `ipa` one by one (in a scrambled
/// order) to the contiguous run at `pa`; promotion must not happen before
/// the 512th page.
fn map_pages_scrambled(s: &mut Stage2, m: &mut SimTableMem, ipa: u64, pa: u64, n: u64) {
    for k in 0..n {
        let i = (k * 7) % 512;
        s.map(
            m,
            Ipa(ipa + i * PAGE_SIZE),
            PhysAddr(pa + i * PAGE_SIZE),
            PAGE_SIZE,
            S2Attrs::RAM_RO,
        )
        .unwrap();
        if k + 1 < 512 {
            assert!(
                !s.promotable(m, Ipa(ipa)),
                "promotable after {} pages",
                k + 1
            );
            assert!(!s.promote(m, Ipa(ipa)));
        }
    }
}

#[test]
fn the_512th_contiguous_page_promotes_the_table_to_a_block_with_bbm() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    map_pages_scrambled(&mut s, &mut m, WIN, FRAMES, 512);
    assert_eq!(leaves(&s, &m).len(), 512);
    let tables = m.live_tables();
    assert!(m.sync_invalidations.is_empty());
    assert!(s.promote(&mut m, Ipa(WIN + 77 * PAGE_SIZE)));
    // One leaf, same translation and attributes everywhere.
    assert_eq!(leaves(&s, &m), [(WIN, FRAMES, MIB2)]);
    for i in 0..512 {
        assert_eq!(
            s.lookup(&m, Ipa(WIN + i * PAGE_SIZE + 8)),
            Some((PhysAddr(FRAMES + i * PAGE_SIZE + 8), S2Attrs::RAM_RO))
        );
    }
    // Break-before-make: the table entry was invalidated (every page, no
    // level hint) before the block was written; the table frame is freed.
    assert_eq!(m.bbm_violations, 0);
    assert_eq!(m.sync_invalidations.len(), 1);
    assert_eq!(
        m.sync_invalidations[0].ranges(),
        &[IpaRange {
            base: Ipa(WIN),
            pages: 512,
            level: 0
        }]
    );
    assert_eq!(m.sync_roots, [s.root()]);
    assert_eq!(m.live_tables(), tables - 1);
    assert_eq!(m.freed, 1);
    // Nothing more to promote.
    assert!(!s.promote(&mut m, Ipa(WIN)));
    s.destroy(&mut m);
    assert_eq!(m.live_tables(), 0, "no table frame leaked");
}

#[test]
fn only_a_full_aligned_contiguous_uniform_table_is_promoted() {
    // 511 pages.
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    map_pages_scrambled(&mut s, &mut m, WIN, FRAMES, 511);
    assert!(!s.promote(&mut m, Ipa(WIN)));
    // The physical run is not 2 MiB aligned.
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    s.map(
        &mut m,
        Ipa(WIN),
        PhysAddr(FRAMES + PAGE_SIZE),
        MIB2,
        S2Attrs::RAM,
    )
    .unwrap();
    assert!(!s.promote(&mut m, Ipa(WIN)));
    // Two pages swapped.
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    s.map(
        &mut m,
        Ipa(WIN),
        PhysAddr(FRAMES),
        MIB2 - 2 * PAGE_SIZE,
        S2Attrs::RAM,
    )
    .unwrap();
    let top = MIB2 - 2 * PAGE_SIZE;
    s.map(
        &mut m,
        Ipa(WIN + top),
        PhysAddr(FRAMES + top + PAGE_SIZE),
        PAGE_SIZE,
        S2Attrs::RAM,
    )
    .unwrap();
    s.map(
        &mut m,
        Ipa(WIN + top + PAGE_SIZE),
        PhysAddr(FRAMES + top),
        PAGE_SIZE,
        S2Attrs::RAM,
    )
    .unwrap();
    assert!(!s.promote(&mut m, Ipa(WIN)));
    // One page with other attributes.
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    s.map(&mut m, Ipa(WIN), PhysAddr(FRAMES), PAGE_SIZE, S2Attrs::RAM)
        .unwrap();
    s.map(
        &mut m,
        Ipa(WIN + PAGE_SIZE),
        PhysAddr(FRAMES + PAGE_SIZE),
        MIB2 - PAGE_SIZE,
        S2Attrs::RAM_RO,
    )
    .unwrap();
    assert!(!s.promote(&mut m, Ipa(WIN)));
    assert!(m.sync_invalidations.is_empty());
    assert_eq!(leaves(&s, &m).len(), 512);
}

#[test]
fn removing_one_page_of_a_promoted_block_splits_it_back() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    map_pages_scrambled(&mut s, &mut m, WIN, FRAMES, 512);
    assert!(s.promote(&mut m, Ipa(WIN)));
    m.sync_invalidations.clear();
    let inv = s
        .unmap(&mut m, Ipa(WIN + 300 * PAGE_SIZE), PAGE_SIZE)
        .unwrap();
    // The block was broken and invalidated before its table was written ...
    assert_eq!(m.bbm_violations, 0);
    assert_eq!(
        m.sync_invalidations[0].ranges(),
        &[IpaRange {
            base: Ipa(WIN),
            pages: 512,
            level: 2
        }]
    );
    // ... and exactly the removed page is left to invalidate.
    assert_eq!(
        inv.ranges(),
        &[IpaRange {
            base: Ipa(WIN + 300 * PAGE_SIZE),
            pages: 1,
            level: 3
        }]
    );
    let l = leaves(&s, &m);
    assert_eq!(l.len(), 511);
    for (ipa, pa, size) in l {
        assert_eq!((pa - FRAMES, size), (ipa - WIN, PAGE_SIZE));
    }
    assert_eq!(s.lookup(&m, Ipa(WIN + 300 * PAGE_SIZE)), None);
    // Mapping the page back promotes again.
    s.map(
        &mut m,
        Ipa(WIN + 300 * PAGE_SIZE),
        PhysAddr(FRAMES + 300 * PAGE_SIZE),
        PAGE_SIZE,
        S2Attrs::RAM_RO,
    )
    .unwrap();
    assert!(s.promote(&mut m, Ipa(WIN)));
    assert_eq!(leaves(&s, &m), [(WIN, FRAMES, MIB2)]);
    s.destroy(&mut m);
    assert_eq!(m.live_tables(), 0);
}

#[test]
fn a_block_replaces_an_empty_table_with_one_walk_cache_invalidation() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    s.map(&mut m, Ipa(WIN), PhysAddr(FRAMES), MIB2, S2Attrs::RAM)
        .unwrap();
    // Split, then every page removed: an empty level-3 table stays.
    for i in 0..512 {
        s.unmap(&mut m, Ipa(WIN + i * PAGE_SIZE), PAGE_SIZE)
            .unwrap();
    }
    assert!(leaves(&s, &m).is_empty());
    let tables = m.live_tables();
    m.sync_invalidations.clear();
    let inv = s
        .map(
            &mut m,
            Ipa(WIN),
            PhysAddr(FRAMES + MIB2),
            MIB2,
            S2Attrs::RAM,
        )
        .unwrap();
    assert!(inv.is_empty());
    assert_eq!(leaves(&s, &m), [(WIN, FRAMES + MIB2, MIB2)]);
    assert_eq!(m.sync_invalidations.len(), 1);
    let w = &m.sync_invalidations[0];
    assert_eq!(
        w.ranges(),
        &[IpaRange {
            base: Ipa(WIN),
            pages: 1,
            level: 0
        }]
    );
    assert!(!w.needs_stage1(), "nothing combined through an empty table");
    assert_eq!(m.bbm_violations, 0);
    assert_eq!(m.live_tables(), tables - 1, "the empty table is freed");
    // A table that still maps a page is not replaced that way: the page is
    // remapped by the map (level-3 entries) and nothing is freed.
    s.unmap(&mut m, Ipa(WIN), MIB2 - PAGE_SIZE).unwrap();
    let tables = m.live_tables();
    s.map(&mut m, Ipa(WIN), PhysAddr(FRAMES), MIB2, S2Attrs::RAM)
        .unwrap();
    assert_eq!(leaves(&s, &m).len(), 512);
    assert_eq!(m.live_tables(), tables);
    s.destroy(&mut m);
    assert_eq!(m.live_tables(), 0);
}

#[test]
fn physmap_promotes_only_foreign_runs_and_removes_a_foreign_block_whole() {
    let mut m = SimTableMem::new();
    let mut pm = Physmap::new(&mut m, 0, 40, 1 << 20).unwrap();
    let g = WIN >> 12;
    let foreign = P2mKind::Foreign { owner: 1 };
    // Own RAM is never promoted by promote_foreign.
    for i in 0..512 {
        let _ = pm
            .insert(
                &mut m,
                0x4_0000 + i,
                PhysAddr(FRAMES + MIB2 + i * PAGE_SIZE),
                1,
                P2mKind::Ram,
                S2Attrs::RAM,
            )
            .unwrap();
    }
    assert!(!pm.promote_foreign(&mut m, 0x4_0000));
    for i in 0..512 {
        let _ = pm
            .insert(
                &mut m,
                g + i,
                PhysAddr(FRAMES + i * PAGE_SIZE),
                1,
                foreign,
                S2Attrs::RAM_RO,
            )
            .unwrap();
        assert_eq!(pm.promote_foreign(&mut m, g + i), i == 511);
    }
    let tables = pm.table_frames();
    assert!(pm.is_foreign_block(&m, g));
    assert!(!pm.is_foreign_block(&m, g + 1));
    // Records stay per page.
    assert_eq!(pm.mapped(), 1024);
    assert_eq!(pm.foreign_mapped(), 512);
    assert_eq!(
        pm.lookup(g + 9).unwrap().pa,
        PhysAddr(FRAMES + 9 * PAGE_SIZE)
    );
    // One page removed: split, the others stay.
    let (inv, r) = pm.remove(&mut m, g + 9, false).unwrap();
    assert_eq!(r, Removed::Release(PhysAddr(FRAMES + 9 * PAGE_SIZE)));
    assert_eq!(inv.pages(), 1);
    assert_eq!(pm.table_frames(), tables + 1);
    assert!(!pm.is_foreign_block(&m, g));
    let mut held = Vec::new();
    assert!(pm.remove_foreign_block(&mut m, g, &mut held).is_err());
    assert!(held.is_empty());
    // Back, promoted again, then removed whole: one level-2 entry.
    let _ = pm
        .insert(
            &mut m,
            g + 9,
            PhysAddr(FRAMES + 9 * PAGE_SIZE),
            1,
            foreign,
            S2Attrs::RAM_RO,
        )
        .unwrap();
    assert!(pm.promote_foreign(&mut m, g + 9));
    assert_eq!(pm.table_frames(), tables);
    let inv = pm.remove_foreign_block(&mut m, g, &mut held).unwrap();
    assert_eq!(
        inv.ranges(),
        &[IpaRange {
            base: Ipa(WIN),
            pages: 512,
            level: 2
        }]
    );
    assert_eq!(held.len(), 512);
    assert!(held
        .iter()
        .enumerate()
        .all(|(i, pa)| pa.0 == FRAMES + i as u64 * PAGE_SIZE));
    assert_eq!(pm.foreign_mapped(), 0);
    assert_eq!(pm.mapped(), 512);
    assert!(pm.lookup(g).is_none() && pm.lookup(g + 511).is_none());
    let t = pm.teardown(&m);
    t.finish(&mut m);
    assert_eq!(m.live_tables(), 0, "no table frame leaked");
}

mod promotion_props {
    //! Random map/unmap sequences on two tables, one promoting after every
    //! mapping and one never: every IPA translates the same in both, every
    //! translation a step changed is covered by the invalidation it returned
    //! or ran synchronously, and the live table frames are exactly the ones
    //! reachable from the root.
    extern crate std;

    use std::collections::BTreeMap;
    use std::format;
    use std::string::String;

    use proptest::prelude::*;

    use super::{FRAMES, MIB2, WIN};
    use crate::sim::SimTableMem;
    use crate::*;

    /// 4 regions of 2 MiB.
    const PAGES: u64 = 2048;

    #[derive(Clone, Debug)]
    enum Op {
        /// Map page `gfn` to its "natural" frame (contiguous runs appear) or
        /// to a shifted one (never promotable), with one of two attributes.
        Map { gfn: u64, shifted: bool, ro: bool },
        /// Map a whole region page by page, naturally (the fast route to promotions).
        FillRegion { region: u64 },
        /// Map a whole region in one call (a block where the entry is
        /// invalid or an empty table), naturally or shifted by one page.
        MapRegion { region: u64, shifted: bool },
        /// Unmap `pages` pages from `gfn`.
        Unmap { gfn: u64, pages: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..PAGES, prop::bool::weighted(0.1), prop::bool::weighted(0.1))
                .prop_map(|(gfn, shifted, ro)| Op::Map { gfn, shifted, ro }),
            2 => (0..PAGES / 512).prop_map(|region| Op::FillRegion { region }),
            2 => (0..PAGES / 512, prop::bool::weighted(0.2))
                .prop_map(|(region, shifted)| Op::MapRegion { region, shifted }),
            4 => (0..PAGES, prop_oneof![Just(1u64), 1..700u64])
                .prop_map(|(gfn, pages)| Op::Unmap { gfn, pages }),
        ]
    }

    fn all(s: &Stage2, m: &SimTableMem) -> BTreeMap<u64, (PhysAddr, S2Attrs)> {
        (0..PAGES)
            .filter_map(|g| {
                let ipa = Ipa(WIN + g * PAGE_SIZE);
                s.lookup(m, ipa).map(|t| (g, t))
            })
            .collect()
    }

    fn reachable(m: &SimTableMem, table: PhysAddr, level: u8) -> usize {
        let mut n = 1;
        if level < 3 {
            for i in 0..512 {
                let d = m.read_entry(table, i);
                if d & 3 == 3 {
                    n += reachable(m, PhysAddr(d & 0x0000_ffff_ffff_f000), level + 1);
                }
            }
        }
        n
    }

    struct Side {
        m: SimTableMem,
        s: Stage2,
    }

    fn apply(side: &mut Side, op: &Op, promote: bool) -> Result<InvalidationSet, String> {
        let map = |side: &mut Side, gfn: u64, shifted: bool, ro: bool| {
            let pa = FRAMES + (gfn + u64::from(shifted)) * PAGE_SIZE;
            let attrs = if ro { S2Attrs::RAM_RO } else { S2Attrs::RAM };
            let ipa = Ipa(WIN + gfn * PAGE_SIZE);
            let inv = side
                .s
                .map(&mut side.m, ipa, PhysAddr(pa), PAGE_SIZE, attrs)
                .map_err(|e| format!("{e}"))?;
            if promote {
                side.s.promote(&mut side.m, ipa);
            }
            Ok::<_, String>(inv)
        };
        match *op {
            Op::Map { gfn, shifted, ro } => map(side, gfn, shifted, ro),
            Op::FillRegion { region } => {
                let mut inv = InvalidationSet::new();
                for g in region * 512..region * 512 + 512 {
                    inv.merge(&map(side, g, false, false)?);
                }
                Ok(inv)
            }
            Op::MapRegion { region, shifted } => {
                let g = region * 512;
                let pa = FRAMES + (g + u64::from(shifted)) * PAGE_SIZE;
                side.s
                    .map(
                        &mut side.m,
                        Ipa(WIN + g * PAGE_SIZE),
                        PhysAddr(pa),
                        MIB2,
                        S2Attrs::RAM,
                    )
                    .map_err(|e| format!("{e}"))
            }
            Op::Unmap { gfn, pages } => {
                let pages = pages.min(PAGES - gfn);
                side.s
                    .unmap(&mut side.m, Ipa(WIN + gfn * PAGE_SIZE), pages * PAGE_SIZE)
                    .map_err(|e| format!("{e}"))
            }
        }
    }

    fn run(ops: &[Op]) -> Result<u64, String> {
        let mk = || {
            let mut m = SimTableMem::new();
            let s = Stage2::new(&mut m, 40).unwrap();
            Side { m, s }
        };
        let (mut a, mut b) = (mk(), mk());
        let mut promotions = 0;
        for (n, op) in ops.iter().enumerate() {
            let before = all(&a.s, &a.m);
            let freed = a.m.freed;
            a.m.sync_invalidations.clear();
            let inv = apply(&mut a, op, true)?;
            apply(&mut b, op, false)?;
            promotions += (a.m.freed - freed) as u64;
            let after = all(&a.s, &a.m);
            if after != all(&b.s, &b.m) {
                return Err(format!("op {n} {op:?}: translations differ with promotion"));
            }
            // Every changed translation is covered by an invalidation.
            for g in 0..PAGES {
                if before.get(&g) != after.get(&g) && before.contains_key(&g) {
                    let ipa = Ipa(WIN + g * PAGE_SIZE);
                    let covered =
                        inv.contains(ipa) || a.m.sync_invalidations.iter().any(|s| s.contains(ipa));
                    if !covered {
                        return Err(format!("op {n} {op:?}: gfn {g} changed, not invalidated"));
                    }
                }
            }
            if a.m.bbm_violations != 0 {
                return Err(format!("op {n} {op:?}: break-before-make violated"));
            }
            let live = a.m.live_tables();
            let reach = reachable(&a.m, a.s.root(), a.s.start_level());
            if live != reach {
                return Err(format!(
                    "op {n} {op:?}: {live} live tables, {reach} reachable"
                ));
            }
            // A promoted block's leaf is level 2 with the right output.
            for g in (0..PAGES).step_by(512) {
                if let Some(l) = a.s.walk(&a.m, Ipa(WIN + g * PAGE_SIZE)) {
                    if l.level == 2 && l.pa != PhysAddr(FRAMES + g * PAGE_SIZE) {
                        return Err(format!("op {n}: block at gfn {g} maps {}", l.pa));
                    }
                }
            }
        }
        a.s.destroy(&mut a.m);
        if a.m.live_tables() != 0 {
            return Err(format!("{} table frames leaked", a.m.live_tables()));
        }
        Ok(promotions)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
        #[test]
        fn promotion_changes_no_translation_and_invalidates_every_change(
            ops in prop::collection::vec(op(), 1..40)
        ) {
            let r = run(&ops);
            prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        }
    }

    #[test]
    fn the_property_sees_promotions_and_splits() {
        use Op::*;
        let ops = [
            FillRegion { region: 1 },
            Unmap { gfn: 600, pages: 1 },
            Map {
                gfn: 600,
                shifted: false,
                ro: false,
            },
            Map {
                gfn: 600,
                shifted: false,
                ro: true,
            },
            Map {
                gfn: 600,
                shifted: false,
                ro: false,
            },
            Unmap {
                gfn: 0,
                pages: 2048,
            },
        ];
        assert_eq!(run(&ops).unwrap(), 3, "promotions (tables freed)");
    }
}

/// A direct-mapped hardware domain's passed-through MMIO (issue 11): mapped
/// 1:1 with the given attributes (2 MiB blocks where aligned), not recorded
/// (no reference, no reservation), refused over a recorded gfn, and left to
/// teardown's invalidation (nothing to release).
#[test]
fn physmap_maps_mmio_without_records() {
    let mut m = SimTableMem::new();
    let mut pm = Physmap::new(&mut m, 0, 40, 16).unwrap();
    // A 4 MiB flash at 0 and one virtio-mmio page.
    let _ = pm
        .map_mmio(&mut m, 0, PhysAddr(0), 1024, S2Attrs::DEVICE)
        .unwrap();
    let _ = pm
        .map_mmio(&mut m, 0xa000, PhysAddr(0xa00_0000), 1, S2Attrs::DEVICE)
        .unwrap();
    for ipa in [0u64, 0x3f_f000, 0xa00_0000] {
        let (pa, a) = pm.stage2().lookup(&m, Ipa(ipa)).unwrap();
        assert_eq!((pa.0, a), (ipa, S2Attrs::DEVICE));
    }
    assert!(pm.stage2().lookup(&m, Ipa(0x40_0000)).is_none());
    assert_eq!((pm.mapped(), pm.tot_pages()), (0, 0));
    assert_eq!(pm.lookup(0xa000), None);
    // Over a recorded gfn: Busy, nothing changed.
    let _ = pm
        .insert(
            &mut m,
            0x5_0000,
            PhysAddr(FRAMES),
            1,
            P2mKind::Ram,
            S2Attrs::RAM,
        )
        .unwrap();
    assert!(matches!(
        pm.map_mmio(&mut m, 0x5_0000, PhysAddr(0x5000_0000), 1, S2Attrs::DEVICE),
        Err(Error::Busy { .. })
    ));
    assert_eq!(
        pm.stage2().lookup(&m, Ipa(0x5000_0000)).unwrap().0,
        PhysAddr(FRAMES)
    );
    let t = pm.teardown(&m);
    assert_eq!(t.held, [PhysAddr(FRAMES)], "only the RAM page goes back");
    t.finish(&mut m);
    assert_eq!(m.live_tables(), 0);
}

/// Tables left empty by unmaps are reported once each (one IPA under every
/// table entry of the tree, with the leaves), and physmap teardown adds
/// them to its invalidation as level-0 pages.
#[test]
fn empty_tables_are_reported_for_retiring_the_vmid() {
    let mut m = SimTableMem::new();
    let mut s = Stage2::new(&mut m, 40).unwrap();
    let page = |s: &mut Stage2, m: &mut SimTableMem, ipa: u64| {
        s.map(m, Ipa(ipa), PhysAddr(ipa), PAGE_SIZE, S2Attrs::RAM)
            .unwrap();
    };
    // One page kept; one level-3 table emptied in the same 1 GiB; a whole
    // 1 GiB emptied down to its level-3 table.
    page(&mut s, &mut m, 0x4000_0000);
    page(&mut s, &mut m, 0x4060_3000);
    page(&mut s, &mut m, 0x1_8020_1000);
    s.unmap(&mut m, Ipa(0x4060_3000), PAGE_SIZE).unwrap();
    s.unmap(&mut m, Ipa(0x1_8020_1000), PAGE_SIZE).unwrap();
    let mut empty = Vec::new();
    s.for_each_empty_table(&m, &mut |ipa| empty.push(ipa.0));
    // Tables survive unmaps here (else nothing would be reported; the
    // check below would then have to change with them).
    assert_eq!(m.live_tables(), 1 + 1 + 2 + 3);
    assert_eq!(empty, [0x4060_0000, 0x1_8020_0000]);
    s.destroy(&mut m);
}
