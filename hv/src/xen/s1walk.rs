//! Guest virtual -> guest physical translation through a vCPU's stage-1
//! tables, in software.
//!
//! On Arm, Xen's guest handles are guest *virtual* addresses: Xen copies
//! through them with `copy_{from,to}_guest`, which translates each page with
//! the guest's own stage-1 (xen/arch/arm/guestcopy.c, `translate_get_page` ->
//! `get_page_from_gva`). Linux passes kernel pointers (linear map, per-CPU
//! areas, `vmalloc`). hv does the same walk here, reading descriptors from
//! guest memory through the domain's stage 2, so it works whatever vCPU is
//! loaded and is host-testable.
//!
//! Arm ARM (DDI 0487) D8 "The AArch64 Virtual Memory System Architecture":
//! VA range selection by bit 55 (TTBR0 / TTBR1), `TCR_EL1.{T0SZ,T1SZ,TG0,TG1,
//! EPD0,EPD1,TBI0,TBI1}`, the translation granules (4K, 16K, 64K), the starting
//! level from the input size, table / block / page descriptors with the
//! output address in bits \[47:granule\] (52-bit output addresses are not
//! supported), `AP[2]` (bit 7) for read-only. With `SCTLR_EL1.M` = 0 the VA is
//! the IPA.

use crate::arch::{Arch, El1Reg};

/// The stage-1 controls of one vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stage1 {
    /// `SCTLR_EL1`.
    pub sctlr: u64,
    /// `TCR_EL1`.
    pub tcr: u64,
    /// `TTBR0_EL1`.
    pub ttbr0: u64,
    /// `TTBR1_EL1`.
    pub ttbr1: u64,
}

/// Why a VA did not translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S1Fault {
    /// Outside both VA ranges, or the range's walks are disabled (EPDn).
    Range,
    /// A descriptor could not be read (its IPA is not guest RAM).
    TableUnreadable,
    /// An invalid descriptor.
    Translation,
    /// A write through a read-only mapping.
    Permission,
    /// A granule / size combination hv does not walk.
    Unsupported,
}

const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

impl Stage1 {
    /// The loaded vCPU's stage-1 registers.
    #[must_use]
    pub fn of(arch: &dyn Arch) -> Self {
        Self {
            sctlr: arch.read_el1(El1Reg::SctlrEl1),
            tcr: arch.read_el1(El1Reg::TcrEl1),
            ttbr0: arch.read_el1(El1Reg::Ttbr0El1),
            ttbr1: arch.read_el1(El1Reg::Ttbr1El1),
        }
    }

    /// The stage-1 MMU is on (`SCTLR_EL1.M`).
    #[must_use]
    pub fn mmu_on(&self) -> bool {
        self.sctlr & 1 != 0
    }

    /// Translate `va` (for a write if `write`) to an IPA; `read` reads the
    /// 64-bit descriptor at an IPA. With the MMU off the VA is the IPA.
    ///
    /// # Errors
    /// [`S1Fault`] as the walk finds it.
    pub fn translate(
        &self,
        va: u64,
        write: bool,
        read: &mut dyn FnMut(u64) -> Option<u64>,
    ) -> Result<u64, S1Fault> {
        if !self.mmu_on() {
            return Ok(va);
        }
        let upper = va & (1 << 55) != 0;
        let tcr = self.tcr;
        let epd_bit = if upper { 23 } else { 7 };
        if tcr & (1 << epd_bit) != 0 {
            return Err(S1Fault::Range);
        }
        let (tsz, tg, epd, tbi, ttbr) = if upper {
            (
                (tcr >> 16) & 0x3f,
                match (tcr >> 30) & 3 {
                    1 => 14,
                    2 => 12,
                    3 => 16,
                    _ => return Err(S1Fault::Unsupported),
                },
                tcr & (1 << 23) != 0,
                tcr & (1 << 38) != 0,
                self.ttbr1,
            )
        } else {
            (
                tcr & 0x3f,
                match (tcr >> 14) & 3 {
                    0 => 12,
                    1 => 16,
                    2 => 14,
                    _ => return Err(S1Fault::Unsupported),
                },
                tcr & (1 << 7) != 0,
                tcr & (1 << 37) != 0,
                self.ttbr0,
            )
        };
        // FEAT_LPA2 (TCR_EL1.DS): 52-bit VAs with 4K/16K granules (T1SZ down to
        // 12, a level -1 for 4K). Output addresses stay below 2^48 for hv's guests,
        // so descriptor bits 9:8 (OA[51:50] under DS) are simply not used.
        let ds = tcr & (1 << 59) != 0 && tg != 16;
        let min_tsz = if ds { 12 } else { 16 };
        if epd || !(min_tsz..=48).contains(&tsz) {
            return Err(if epd {
                S1Fault::Range
            } else {
                S1Fault::Unsupported
            });
        }
        let ia_bits = 64 - tsz as u32;
        // The bits above the input range must all equal bit 55 (TBI: bits 63:56 ignored).
        let top = if tbi { 56 } else { 64 };
        let above = (va >> ia_bits) & ((1u64 << (top - ia_bits)) - 1);
        let want = if upper {
            (1u64 << (top - ia_bits)) - 1
        } else {
            0
        };
        if above != want {
            return Err(S1Fault::Range);
        }
        let g: u32 = tg;
        let stride = g - 3;
        let levels = (ia_bits - g).div_ceil(stride) as i32;
        if levels == 0 || levels > 5 || (levels == 5 && !ds) {
            return Err(S1Fault::Unsupported);
        }
        let start = 4 - levels;
        let mut level = start;
        // TTBR.BADDR holds the start table's address, aligned to its size
        // (at least 64 bytes under DS); the bits below (CnP in bit 0) are not
        // part of it: a misaligned base is used as if they were 0, one of the
        // Arm ARM's CONSTRAINED UNPREDICTABLE choices (D8.2.3 "Translation
        // table base address alignment"). Never read a descriptor unaligned.
        let start_bits = ia_bits - (g + stride * (3 - start) as u32);
        let align = (8u64 << start_bits).max(if ds { 64 } else { 8 });
        let mut table = ttbr & 0x0000_ffff_ffff_ffff & !(align - 1);
        // The first table may be smaller (or, concatenated, bigger) than a page:
        // index bits at the start level are what is left of the input size.
        let mut read_only = false;
        loop {
            let shift = g + stride * (3 - level) as u32;
            let bits = if level == start {
                ia_bits - shift
            } else {
                stride
            };
            let idx = (va >> shift) & ((1u64 << bits) - 1);
            let desc = read(table + idx * 8).ok_or(S1Fault::TableUnreadable)?;
            if desc & 1 == 0 {
                return Err(S1Fault::Translation);
            }
            read_only |= desc & (1 << 7) != 0 && (level == 3 || desc & 2 == 0);
            // APTable[1] (bit 62) of a table descriptor makes what is below read-only.
            if level < 3 && desc & 2 != 0 {
                read_only |= desc & (1 << 62) != 0;
                table = desc & OA_MASK & !((1u64 << g) - 1);
                level += 1;
                continue;
            }
            if level == 3 && desc & 2 == 0 {
                return Err(S1Fault::Translation);
            }
            // A block or page (level 3): output address + offset. Blocks exist
            // at levels 1-2 with 4K granules (level 0 too under DS), at level 2
            // with 16K (level 1 too under DS) and 64K granules (level 1 only
            // with 52-bit output addresses, which hv does not support); any
            // other block descriptor is a translation fault (Arm ARM D8.3.1).
            let block_ok = match g {
                12 => level >= 1 || (level == 0 && ds),
                14 => level >= 2 || (level == 1 && ds),
                _ => level >= 2,
            };
            if !block_ok {
                return Err(S1Fault::Translation);
            }
            if write && read_only {
                return Err(S1Fault::Permission);
            }
            let mask = (1u64 << shift) - 1;
            return Ok((desc & OA_MASK & !mask) | (va & mask));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    /// TCR for 48-bit VAs in both halves with 4K granules (as Linux's
    /// VA_BITS=48 kernels), TBI0 set.
    const TCR_4K_48: u64 = 16 | (16 << 16) | (2 << 30) | (1 << 37);

    struct Tables(BTreeMap<u64, u64>);
    impl Tables {
        fn set(&mut self, table: u64, idx: u64, desc: u64) {
            self.0.insert(table + idx * 8, desc);
        }
        fn reader(&self) -> impl FnMut(u64) -> Option<u64> + '_ {
            |ipa| Some(*self.0.get(&ipa).unwrap_or(&0))
        }
    }

    #[test]
    fn four_level_4k_walk_with_blocks_pages_and_permissions() {
        let mut t = Tables(BTreeMap::new());
        // TTBR1 tables at 0x4100_0000.. : L0 -> L1 -> L2 (a 2 MiB block) and L2 -> L3 (pages).
        let (l0, l1, l2, l3) = (0x4100_0000, 0x4100_1000, 0x4100_2000, 0x4100_3000);
        let va = 0xffff_8000_0020_3456u64;
        let i0 = (va >> 39) & 511;
        let i1 = (va >> 30) & 511;
        let i2 = (va >> 21) & 511;
        let i3 = (va >> 12) & 511;
        t.set(l0, i0, l1 | 3);
        t.set(l1, i1, l2 | 3);
        t.set(l2, i2, l3 | 3);
        t.set(l3, i3, 0x4567_8000 | 3 | (1 << 10));
        // The next 2 MiB: a read-only block (AP[2]).
        t.set(l2, i2 + 1, 0x4800_0000 | 1 | (1 << 7));
        let s = Stage1 {
            sctlr: 1,
            tcr: TCR_4K_48,
            ttbr0: 0,
            ttbr1: l0,
        };
        let mut r = t.reader();
        assert_eq!(s.translate(va, true, &mut r), Ok(0x4567_8456));
        let vb = va + (2 << 20);
        assert_eq!(
            s.translate(vb, false, &mut r),
            Ok(0x4800_0000 | (vb & 0x1f_ffff))
        );
        assert_eq!(s.translate(vb, true, &mut r), Err(S1Fault::Permission));
        // Unmapped, non-canonical, and TTBR0 with no tables (reads as invalid).
        assert_eq!(
            s.translate(va + (4 << 20), false, &mut r),
            Err(S1Fault::Translation)
        );
        assert_eq!(
            s.translate(0x00ff_8000_0000_0000, false, &mut r),
            Err(S1Fault::Range)
        );
        assert_eq!(
            s.translate(0x1000, false, &mut r),
            Err(S1Fault::Translation)
        );
        // MMU off: identity.
        let off = Stage1 { sctlr: 0, ..s };
        assert_eq!(off.translate(0x4000_1234, true, &mut r), Ok(0x4000_1234));
    }

    // Found by the s1walk fuzz target (hv/fuzz): the low bits of a TTBR
    // (CnP, a misaligned base) were added to the descriptor address, so the
    // walker read descriptors unaligned (across a page boundary at 0xffc).
    #[test]
    fn misaligned_ttbr_bits_are_not_part_of_the_table_address() {
        let mut t = Tables(BTreeMap::new());
        let (l0, l1, l2) = (0x4100_0000u64, 0x4100_1000, 0x4100_2000);
        let va = 0xffff_8000_0020_3456u64;
        t.set(l0, (va >> 39) & 511, l1 | 3);
        t.set(l1, (va >> 30) & 511, l2 | 3);
        t.set(l2, (va >> 21) & 511, 0x4800_0000 | 1);
        let mut aligned = |ipa: u64| {
            assert_eq!(ipa % 8, 0, "descriptor read at {ipa:#x}");
            Some(*t.0.get(&ipa).unwrap_or(&0))
        };
        for low in [1, 4, 0xffc, 0xfff] {
            let s = Stage1 {
                sctlr: 1,
                tcr: TCR_4K_48,
                ttbr0: 0,
                ttbr1: l0 | low,
            };
            assert_eq!(
                s.translate(va, false, &mut aligned),
                Ok(0x4800_0000 | (va & 0x1f_ffff)),
                "TTBR1 low bits {low:#x}"
            );
        }
    }

    #[test]
    fn three_level_39_bit_and_64k_granule() {
        let mut t = Tables(BTreeMap::new());
        // T0SZ = 25 (39-bit), 4K: starts at level 1.
        let s = Stage1 {
            sctlr: 1,
            tcr: 25 | (1 << 23),
            ttbr0: 0x4000_0000,
            ttbr1: 0,
        };
        let va = 0x12_3456_7890u64;
        t.set(0x4000_0000, (va >> 30) & 511, 0x8000_0000 | 1);
        let mut r = t.reader();
        assert_eq!(
            s.translate(va, false, &mut r),
            Ok(0x8000_0000 | (va & 0x3fff_ffff))
        );
        // EPD1: the upper range is off.
        assert_eq!(
            s.translate(0xffff_ff80_0000_0000, false, &mut r),
            Err(S1Fault::Range)
        );
        // 64K granule, 42-bit VA (T0SZ = 22): levels 2 and 3.
        let s = Stage1 {
            sctlr: 1,
            tcr: 22 | (1 << 14),
            ttbr0: 0x5000_0000,
            ttbr1: 0,
        };
        let va = 0x123_4567_89abu64;
        let mut t = Tables(BTreeMap::new());
        t.set(0x5000_0000, (va >> 29) & 0x1fff, 0x5001_0000 | 3);
        t.set(0x5001_0000, (va >> 16) & 0x1fff, 0x6000_0000 | 3);
        let mut r = t.reader();
        assert_eq!(
            s.translate(va, true, &mut r),
            Ok(0x6000_0000 | (va & 0xffff))
        );
        // An unreadable table.
        let mut none = |_ipa: u64| None;
        assert_eq!(
            s.translate(va, false, &mut none),
            Err(S1Fault::TableUnreadable)
        );
    }

    #[test]
    fn block_descriptors_only_at_the_levels_the_granule_has_blocks() {
        // 16K granule, 47-bit VA (T0SZ = 17): levels 1..3; a level-1 block
        // (64 GiB) exists only under DS (FEAT_LPA2).
        let va = 0x12_3456_789au64;
        let mut t = Tables(BTreeMap::new());
        t.set(0x5000_0000, (va >> 36) & 0x7ff, 0x40_0000_0000 | 1);
        let s16 = |ds: u64| Stage1 {
            sctlr: 1,
            tcr: 17 | (2 << 14) | (ds << 59),
            ttbr0: 0x5000_0000,
            ttbr1: 0,
        };
        let mut r = t.reader();
        assert_eq!(
            s16(0).translate(va, false, &mut r),
            Err(S1Fault::Translation)
        );
        assert_eq!(
            s16(1).translate(va, false, &mut r),
            Ok(0x40_0000_0000 | (va & 0xf_ffff_ffff))
        );
        // 64K granule, 48-bit VA: levels 1..3; no level-1 block (4 TiB) without
        // 52-bit output addresses.
        let mut t = Tables(BTreeMap::new());
        t.set(0x5000_0000, (va >> 42) & 0x3f, 0x400_0000_0000 | 1);
        let s64 = Stage1 {
            sctlr: 1,
            tcr: 16 | (1 << 14),
            ttbr0: 0x5000_0000,
            ttbr1: 0,
        };
        let mut r = t.reader();
        assert_eq!(s64.translate(va, false, &mut r), Err(S1Fault::Translation));
    }

    #[test]
    fn lpa2_52_bit_4k_five_levels() {
        // Linux with VA_BITS=52 on FEAT_LPA2: T1SZ = 12, TG1 = 4K, DS = 1.
        let tcr = 16 | (12 << 16) | (2 << 30) | (1 << 59);
        let s = Stage1 {
            sctlr: 1,
            tcr,
            ttbr0: 0,
            ttbr1: 0x4000_0000,
        };
        let va = 0xfff1_2345_6789_a000u64 | 0x123;
        let mut t = Tables(BTreeMap::new());
        let mut table = 0x4000_0000u64;
        for (lvl, shift) in [(-1i32, 48u32), (0, 39), (1, 30), (2, 21)] {
            let bits = if lvl == -1 { 4 } else { 9 };
            let next = 0x4001_0000 + ((lvl + 1) as u64) * 0x1000;
            t.set(table, (va >> shift) & ((1 << bits) - 1), next | 3);
            table = next;
        }
        t.set(table, (va >> 12) & 511, 0x4abc_d000 | 3);
        let mut r = t.reader();
        assert_eq!(s.translate(va, true, &mut r), Ok(0x4abc_d123));
        // Without DS the same T1SZ is not walkable.
        let no_ds = Stage1 {
            tcr: tcr & !(1 << 59),
            ..s
        };
        assert_eq!(
            no_ds.translate(va, false, &mut r),
            Err(S1Fault::Unsupported)
        );
    }
}
