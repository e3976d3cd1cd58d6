//! Operand encodings of the stage-2 TLBI instructions hv issues (pure, host-tested;
//! the arch layer only moves the results into `Xt`).
//!
//! Arm ARM (DDI 0487), "TLBI IPAS2E1IS" and "TLBI RIPAS2E1IS"; Linux's
//! `__TLBI_VADDR_RANGE` / `__TLBI_RANGE_NUM` / `__flush_tlb_range_op` in
//! arch/arm64/include/asm/tlbflush.h use the same layout.

use pv_tlb::Ipa;

/// `Xt` for `TLBI IPAS2E1IS` with a 4 KiB granule: `IPA\[47:12\]` in bits
/// \[35:0\]; with FEAT_TTL and a known leaf `level` (1..=3), TTL in bits
/// \[47:44\] = `0b01` (4 KiB) : level. Without FEAT_TTL the field is RES0.
#[must_use]
pub fn ipas2_operand(ipa: Ipa, level: Option<u8>, feat_ttl: bool) -> u64 {
    let mut x = (ipa.raw() >> 12) & ((1 << 36) - 1);
    if let (true, Some(l @ 1..=3)) = (feat_ttl, level) {
        x |= (0b0100 | u64::from(l)) << 44;
    }
    x
}

/// One instruction of a range invalidation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RangeStep {
    /// `TLBI RIPAS2E1IS` with this `Xt`, covering `pages` pages from `base`.
    Range {
        /// The operand.
        xt: u64,
        /// First IPA covered.
        base: Ipa,
        /// Pages covered: `(NUM + 1) << (5 * SCALE + 1)`.
        pages: u64,
    },
    /// `TLBI IPAS2E1IS` of one page (a range op cannot express 1 page).
    Single {
        /// The operand (see [`ipas2_operand`]).
        xt: u64,
        /// The page.
        ipa: Ipa,
    },
}

/// Pages covered by a range TLBI with `num` (0..=31) and `scale` (0..=3).
#[must_use]
pub const fn range_pages(num: u64, scale: u32) -> u64 {
    (num + 1) << (5 * scale + 1)
}

/// `Xt` for `TLBI RIPAS2E1IS`, 4 KiB granule: BaseADDR = `IPA >> 12` in
/// \[36:0\], TTL (0 = any level, else the level 1..=3) in \[38:37\], NUM in
/// \[43:39\], SCALE in \[45:44\], TG = 0b01 (4 KiB) in \[47:46\].
#[must_use]
pub fn ripas2_operand(base: Ipa, num: u64, scale: u32, level: Option<u8>) -> u64 {
    let ttl = match level {
        Some(l @ 1..=3) => u64::from(l),
        _ => 0,
    };
    ((base.raw() >> 12) & ((1 << 37) - 1))
        | (ttl << 37)
        | ((num & 31) << 39)
        | (u64::from(scale & 3) << 44)
        | (0b01 << 46)
}

/// Split an invalidation of `pages` pages from `base` into range TLBIs (largest
/// scale first, as Linux's `__flush_tlb_range_op` does) and single-page TLBIs
/// for what a range cannot express. Covers exactly `[base, base + pages * 4K)`.
pub fn range_steps(
    base: Ipa,
    pages: u64,
    level: Option<u8>,
    feat_ttl: bool,
) -> impl Iterator<Item = RangeStep> {
    let mut addr = base.raw();
    let mut left = pages;
    let mut scale: i32 = 3;
    core::iter::from_fn(move || loop {
        if left == 0 {
            return None;
        }
        if left == 1 || scale < 0 {
            let ipa = Ipa(addr);
            addr += 4096;
            left -= 1;
            return Some(RangeStep::Single {
                xt: ipas2_operand(ipa, level, feat_ttl),
                ipa,
            });
        }
        let s = scale as u32;
        let cap = left.min(range_pages(31, s));
        let units = cap >> (5 * s + 1);
        if units == 0 {
            scale -= 1;
            continue;
        }
        let num = units - 1;
        let n = range_pages(num, s);
        let step = RangeStep::Range {
            xt: ripas2_operand(Ipa(addr), num, s, level),
            base: Ipa(addr),
            pages: n,
        };
        addr += n * 4096;
        left -= n;
        return Some(step);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    #[test]
    fn ipas2_fields() {
        assert_eq!(ipas2_operand(Ipa(0x4000_1000), None, true), 0x40001);
        assert_eq!(
            ipas2_operand(Ipa(0x4000_1000), Some(3), true),
            0x40001 | (0b0111 << 44)
        );
        assert_eq!(ipas2_operand(Ipa(0x4020_0000), Some(2), true) >> 44, 0b0110);
        assert_eq!(
            ipas2_operand(Ipa(0x4000_1000), Some(3), false),
            0x40001,
            "TTL is RES0 without FEAT_TTL"
        );
        assert_eq!(
            ipas2_operand(Ipa(0xffff_ffff_f000), None, false),
            (1 << 36) - 1
        );
    }

    #[test]
    fn ripas2_fields() {
        // 64 pages = (NUM=31 + 1) << 1 at SCALE 0.
        let x = ripas2_operand(Ipa(0x8000_0000), 31, 0, Some(3));
        assert_eq!(x & ((1 << 37) - 1), 0x80000);
        assert_eq!((x >> 37) & 3, 3);
        assert_eq!((x >> 39) & 31, 31);
        assert_eq!((x >> 44) & 3, 0);
        assert_eq!((x >> 46) & 3, 1);
        assert_eq!(x >> 48, 0);
        assert_eq!(range_pages(31, 0), 64);
        assert_eq!(range_pages(0, 1), 64);
        assert_eq!(range_pages(31, 3), 32 << 16);
    }

    #[test]
    fn exact_counts_take_one_instruction() {
        for (pages, scale, num) in [(2, 0, 0), (64, 1, 0), (512, 1, 7), (2048, 2, 0)] {
            let steps: Vec<_> = range_steps(Ipa(0x4000_0000), pages, None, false).collect();
            assert_eq!(steps.len(), 1, "{pages}");
            let RangeStep::Range { xt, pages: n, .. } = steps[0] else {
                panic!("{pages}: {steps:?}")
            };
            assert_eq!(n, pages);
            assert_eq!((xt >> 44) & 3, scale, "{pages}");
            assert_eq!((xt >> 39) & 31, num, "{pages}");
        }
        let one: Vec<_> = range_steps(Ipa(0x4000_0000), 1, Some(3), true).collect();
        assert_eq!(
            one,
            [RangeStep::Single {
                xt: 0x40000 | (0b0111 << 44),
                ipa: Ipa(0x4000_0000)
            }]
        );
    }

    proptest! {
        /// The steps tile the range exactly, in order, without gaps or overlap.
        #[test]
        fn steps_cover_exactly(base in 0u64..(1 << 36), pages in 0u64..5_000_000) {
            let base = Ipa(base << 12);
            let mut next = base.raw();
            let mut count = 0u64;
            for s in range_steps(base, pages, None, false) {
                count += 1;
                match s {
                    RangeStep::Range { xt, base, pages: n } => {
                        prop_assert_eq!(base.raw(), next);
                        prop_assert_eq!(n, range_pages((xt >> 39) & 31, ((xt >> 44) & 3) as u32));
                        prop_assert_eq!(xt & ((1 << 37) - 1), (base.raw() >> 12) & ((1 << 37) - 1));
                        next += n * 4096;
                    }
                    RangeStep::Single { ipa, .. } => {
                        prop_assert_eq!(ipa.raw(), next);
                        next += 4096;
                    }
                }
            }
            prop_assert_eq!(next, base.raw() + pages * 4096);
            prop_assert!(count <= 4 * 31 + 1 + pages / (32 << 16), "{} steps for {} pages", count, pages);
        }
    }
}
