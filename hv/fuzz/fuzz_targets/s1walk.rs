//! The software stage-1 walker (`xen::s1walk::Stage1::translate`) on hostile
//! guest tables: any SCTLR/TCR/TTBR, any VA, descriptors from the input
//! (either a small window of guest memory, everything else unreadable, or
//! every address readable with input-derived contents).
//!
//! Properties: no panic; at most one read per level (five levels at most),
//! each of an 8-byte aligned IPA below 2^52; with the MMU off the VA is the
//! IPA; a translation's IPA is below 2^48 and keeps the VA's page offset;
//! a write that translates also translates, to the same IPA, as a read.
#![no_main]

use arbitrary::Arbitrary;
use hv::xen::s1walk::{S1Fault, Stage1};
use libfuzzer_sys::fuzz_target;

/// Where the window of guest memory starts (a typical guest RAM IPA).
const WIN: u64 = 0x4000_0000;

#[derive(Arbitrary, Debug)]
struct Input {
    sctlr_m: bool,
    tcr: Tcr,
    ttbr0: Ttbr,
    ttbr1: Ttbr,
    vas: Vec<Va>,
    /// Every IPA reads (descriptors cycle through `mem`), else only the window.
    everything_readable: bool,
    mem: Vec<u64>,
}

#[derive(Arbitrary, Debug)]
enum Tcr {
    Raw(u64),
    /// Linux-like: T0SZ/T1SZ, granules, TBI, EPD and DS picked separately.
    Fields {
        t0sz: u8,
        t1sz: u8,
        tg0: u8,
        tg1: u8,
        epd0: bool,
        epd1: bool,
        tbi0: bool,
        tbi1: bool,
        ds: bool,
    },
}

impl Tcr {
    fn value(&self) -> u64 {
        match *self {
            Tcr::Raw(v) => v,
            Tcr::Fields {
                t0sz,
                t1sz,
                tg0,
                tg1,
                epd0,
                epd1,
                tbi0,
                tbi1,
                ds,
            } => {
                u64::from(t0sz & 0x3f)
                    | u64::from(epd0) << 7
                    | u64::from(tg0 & 3) << 14
                    | u64::from(t1sz & 0x3f) << 16
                    | u64::from(epd1) << 23
                    | u64::from(tg1 & 3) << 30
                    | u64::from(tbi0) << 37
                    | u64::from(tbi1) << 38
                    | u64::from(ds) << 59
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Ttbr {
    /// A table in the window (page index, low bits).
    Window(u8, u16),
    Raw(u64),
}

impl Ttbr {
    fn value(&self) -> u64 {
        match *self {
            Ttbr::Window(page, low) => WIN + (u64::from(page) << 12) + u64::from(low & 0xfff),
            Ttbr::Raw(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Va {
    Raw(u64, bool),
    /// A kernel (TTBR1) address.
    High(u64, bool),
    /// A user (TTBR0) address.
    Low(u64, bool),
}

fuzz_target!(|input: Input| {
    let s = Stage1 {
        sctlr: u64::from(input.sctlr_m),
        tcr: input.tcr.value(),
        ttbr0: input.ttbr0.value(),
        ttbr1: input.ttbr1.value(),
    };
    let mem = &input.mem;
    let everything = input.everything_readable && !mem.is_empty();
    for va in input.vas.iter().take(64) {
        let (va, write) = match *va {
            Va::Raw(v, w) => (v, w),
            Va::High(v, w) => (v | 0xffff_0000_0000_0000, w),
            Va::Low(v, w) => (v & 0x0000_ffff_ffff_ffff, w),
        };
        let walk = |write: bool| {
            let mut reads = 0u32;
            let mut read = |ipa: u64| {
                reads += 1;
                assert!(reads <= 5, "more than five descriptor reads");
                assert_eq!(ipa % 8, 0, "unaligned descriptor read at {ipa:#x}");
                assert!(ipa < 1 << 52, "descriptor read at {ipa:#x}");
                if everything {
                    return Some(mem[((ipa / 8) % mem.len() as u64) as usize]);
                }
                let i = ipa.checked_sub(WIN)? / 8;
                mem.get(usize::try_from(i).ok()?).copied()
            };
            let r = s.translate(va, write, &mut read);
            (r, reads)
        };
        let (w, _) = walk(write);
        let (r, reads) = walk(false);
        if !s.mmu_on() {
            assert_eq!(r, Ok(va));
            assert_eq!(reads, 0);
            continue;
        }
        if let Ok(ipa) = r {
            assert!(ipa < 1 << 48, "IPA {ipa:#x} beyond 48 bits");
            assert_eq!(ipa & 0xfff, va & 0xfff, "page offset lost");
        }
        match w {
            Ok(ipa) => assert_eq!(r, Ok(ipa), "write translates, read does not"),
            Err(S1Fault::Permission) => assert!(write && r.is_ok()),
            Err(e) => assert_eq!(r, Err(e), "write and read walks differ"),
        }
    }
});
