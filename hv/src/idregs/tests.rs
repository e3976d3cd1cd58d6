//! ID register decode, sanitising, and the run loop's answers (fake arch).

extern crate std;

use super::*;
use crate::arch::fake::{FakeArch, FakeMachine, FakeMem, SharedMachine, Step};
use crate::arch::{El1Reg, ExitVector, GuestGprs, RawExit};
use crate::domain::build::DomainSpec;
use crate::domain::GUEST_RAM0_BASE;
use crate::start::{CpuExit, System};
use crate::testutil::Lines;
use crate::trap::{ExitReason, ESR_IL};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;
use pv_tlb::Policy;

/// ESR ISS of `MRS/MSR` op0 3, op1 0, CRn 0, `crm`, `op2` with `rt`.
fn iss(crm: u64, op2: u64, rt: u64, read: bool) -> u64 {
    (3 << 20) | (op2 << 17) | (rt << 5) | (crm << 1) | u64::from(read)
}

fn field(v: u64, shift: u8) -> u64 {
    (v >> shift) & 0xf
}

#[test]
fn decode_table() {
    // (ESR, expected ID encoding): real syndromes of MRS/MSR at EL1.
    let cases: &[(u64, Option<Encoding>, &str)] = &[
        // MRS x1, ID_AA64PFR0_EL1 (S3_0_C0_C4_0).
        (0x6230_0029, Some(AA64PFR0), "ID_AA64PFR0_EL1"),
        // MRS x0, ID_AA64ZFR0_EL1 (S3_0_C0_C4_4).
        (0x6238_0009, Some(AA64ZFR0), "ID_AA64ZFR0_EL1"),
        // MRS x2, ID_AA64SMFR0_EL1 (S3_0_C0_C4_5).
        (0x623a_0049, Some(AA64SMFR0), "ID_AA64SMFR0_EL1"),
        // MRS x30, ID_AA64MMFR4_EL1 (S3_0_C0_C7_4).
        (0x6238_03cf, Some(AA64MMFR4), "ID_AA64MMFR4_EL1"),
        // MRS x3, ID_PFR0_EL1 (AArch32 register, CRm 1).
        (0x6230_0063, Some((1, 0)), "ID_PFR0_EL1"),
        // MRS x4, S3_0_C0_C7_7 (unallocated, still the ID space).
        (0x623e_008f, Some((7, 7)), "S3_0_C0_C7_7"),
        // MSR ID_AA64PFR0_EL1, x1 (a write: still decoded, answered by undef).
        (0x6230_0028, Some(AA64PFR0), "write"),
        // MRS x0, MIDR_EL1 (CRm 0: not TID3's).
        (0x6230_0001, None, "MIDR_EL1"),
        // MRS x0, MPIDR_EL1 (CRm 0, op2 5).
        (0x623a_0001, None, "MPIDR_EL1"),
        // MRS x3, CTR_EL0 (op1 3: TID2's).
        (0x6232_c061, None, "CTR_EL0"),
        // MRS x0, CCSIDR_EL1 (op1 1).
        (0x6230_4001, None, "CCSIDR_EL1"),
        // MSR SCTLR_EL1, x0 (CRn 1).
        (0x6230_0400, None, "SCTLR_EL1"),
    ];
    for &(esr, want, name) in cases {
        let raw = RawExit {
            vector: ExitVector::Sync,
            esr,
            far: 0,
            hpfar: 0,
        };
        let ExitReason::SysReg(acc) = ExitReason::decode(&raw) else {
            panic!("{name}: not a sysreg trap");
        };
        assert_eq!(id_encoding(&acc), want, "{name} ({acc})");
    }
    assert_eq!(iss(4, 0, 1, true) | (0x18 << 26) | ESR_IL, 0x6230_0029);
}

#[test]
fn register_table() {
    for enc in [
        AA64PFR0, AA64PFR1, AA64DFR0, AA64ISAR0, AA64ISAR1, AA64ISAR2, AA64ISAR3, AA64MMFR0,
        AA64MMFR1, AA64MMFR2, AA64MMFR3,
    ] {
        assert!(matches!(rules(enc), View::Sanitised(_)), "{enc:?}");
    }
    for enc in [
        AA64PFR2, AA64ZFR0, AA64SMFR0, AA64FPFR0, AA64DFR1, AA64DFR2, AA64AFR0, AA64AFR1, AA64MMFR4,
    ] {
        assert_eq!(rules(enc), View::Raz, "{enc:?}");
    }
    // AArch32 registers (CRm 1..=3) and unallocated encodings: RAZ.
    for crm in 1..=3 {
        for op2 in 0..8 {
            assert_eq!(rules((crm, op2)), View::Raz);
        }
    }
    for enc in [
        (4, 3),
        (4, 6),
        (5, 3),
        (5, 6),
        (5, 7),
        (6, 4),
        (6, 7),
        (7, 5),
        (7, 7),
    ] {
        assert_eq!(rules(enc), View::Raz, "{enc:?}");
    }
    // Every cap names a distinct 4-bit field.
    for caps in [
        PFR0_CAPS, PFR1_CAPS, DFR0_CAPS, ISAR1_CAPS, ISAR2_CAPS, MMFR0_CAPS, MMFR1_CAPS,
        MMFR2_CAPS, MMFR3_CAPS,
    ] {
        let mut seen = 0u64;
        for c in caps {
            assert_eq!(c.shift % 4, 0, "{}", c.why);
            assert_eq!(seen & (0xf << c.shift), 0, "{}", c.why);
            seen |= 0xf << c.shift;
        }
    }
}

#[test]
fn pfr0_hides_sve_and_unswitched_features() {
    // A QEMU `-cpu max`-like ID_AA64PFR0_EL1: EL0/EL1 AArch64+AArch32 (2),
    // EL2 1, EL3 1, FP 1, AdvSIMD 1, GIC 1, RAS 2, SVE 1, SEL2 1, MPAM 1,
    // AMU 1, DIT 1, RME 0, CSV2 2, CSV3 1.
    let host = 0x1201_1111_2111_1122;
    let g = sanitise(AA64PFR0, host, 48);
    assert_eq!(field(g, 32), 0, "SVE");
    assert_eq!(field(host, 32), 1);
    assert_eq!(g, 0x1201_0000_0111_1011);
    for (shift, want) in [(0, 1), (4, 1), (8, 0), (12, 1), (16, 1), (20, 1), (24, 1)] {
        assert_eq!(field(g, shift), want, "field at {shift}");
    }
    for (shift, want) in [
        (28, 0),
        (36, 0),
        (40, 0),
        (44, 0),
        (48, 1),
        (56, 2),
        (60, 1),
    ] {
        assert_eq!(field(g, shift), want, "field at {shift}");
    }
    // FP/AdvSIMD not implemented (0xf, signed fields) stays 0xf; AArch64-only
    // EL0 (1) stays 1.
    let g = sanitise(AA64PFR0, 0x00ff_0011, 48);
    assert_eq!(g, 0x00ff_0011);
}

#[test]
fn pfr1_hides_sme_mte_gcs_nmi() {
    // BT 1, SSBS 2, MTE 3, RAS_frac 1, MPAM_frac 1, SME 2, RNDR_trap 1,
    // CSV2_frac 2, NMI 1, MTE_frac 0, GCS 1, THE 1, MTEX 1, DF2 1, PFAR 1.
    let host = 0x1111_1012_1201_1321;
    let g = sanitise(AA64PFR1, host, 48);
    assert_eq!(field(g, 24), 0, "SME");
    assert_eq!(field(g, 8), 0, "MTE");
    assert_eq!(field(g, 44), 0, "GCS");
    assert_eq!(field(g, 36), 0, "NMI");
    assert_eq!(g, 0x0000_0002_0000_0021, "only BT, SSBS and CSV2_frac left");
}

#[test]
fn whole_registers_read_as_zero_through_the_arch_hook() {
    let machine = FakeMachine::new_shared();
    {
        let mut m = machine.lock();
        m.id_regs.insert(AA64ZFR0, 0x0110_0011_0000_0011);
        m.id_regs.insert(AA64SMFR0, 0x8ff1_0000_fd00_0000);
        m.id_regs.insert((1, 0), 0x1000_0131);
        m.id_regs.insert(AA64PFR0, 1 << 32);
        m.id_regs.insert(AA64ISAR0, 0x0221_1000_1021_1120);
    }
    let arch = FakeArch::new(0, machine);
    assert_eq!(guest_value(&arch, AA64ZFR0), 0);
    assert_eq!(guest_value(&arch, AA64SMFR0), 0);
    assert_eq!(guest_value(&arch, (1, 0)), 0);
    assert_eq!(guest_value(&arch, AA64PFR0), 0);
    assert_eq!(
        guest_value(&arch, AA64ISAR0),
        0x0221_1000_1021_1120,
        "instruction features pass through"
    );
}

#[test]
fn parange_is_limited_to_hvs_ipa_size() {
    // PARange 6 (52 bits), TGRAN4 0, TGRAN64 0, TGRAN16 1, ASIDBits 2, FGT 1, ECV 2.
    let host = 0x2100_0000_0010_0026;
    let g = sanitise(AA64MMFR0, host, 48);
    assert_eq!(field(g, 0), 5, "48-bit PA");
    assert_eq!(field(g, 56), 0, "FGT");
    assert_eq!(field(g, 60), 1, "ECV");
    assert_eq!(g & 0x00ff_ffff_ffff_fff0, host & 0x00ff_ffff_ffff_fff0);
    assert_eq!(field(sanitise(AA64MMFR0, host, 40), 0), 2);
    // A host smaller than hv's IPA size keeps its own.
    assert_eq!(field(sanitise(AA64MMFR0, 0x1, 48), 0), 1);
    assert_eq!(
        [32, 36, 40, 42, 44, 48, 52].map(parange_for),
        [0, 1, 2, 3, 4, 5, 6]
    );
}

#[test]
fn mmfr3_keeps_only_spec_fpacc() {
    assert_eq!(sanitise(AA64MMFR3, u64::MAX, 48), 0xf000_0000_0000_0000);
    // MMFR1: VH, LO, TWED, HCX hidden; HAFDBS, VMIDBits, PAN, ... kept.
    let g = sanitise(AA64MMFR1, 0x1011_1111_3212_1122, 48);
    assert_eq!(g, 0x1011_1010_3210_1022);
}

proptest! {
    /// Sanitising never raises a field, touches only capped fields, and is
    /// idempotent (the guest value is a fixed point).
    #[test]
    fn sanitise_only_lowers_capped_fields(host in any::<u64>(), crm in 4u8..8, op2 in 0u8..8, ipa in 32u8..53) {
        let enc = (crm, op2);
        let g = sanitise(enc, host, ipa);
        prop_assert_eq!(sanitise(enc, g, ipa), g);
        match rules(enc) {
            View::Raz => prop_assert_eq!(g, 0),
            View::Sanitised(caps) => {
                for shift in (0..64).step_by(4) {
                    let (h, s) = (field(host, shift), field(g, shift));
                    prop_assert!(s <= h);
                    let capped = caps.iter().find(|c| c.shift == shift);
                    match capped {
                        Some(c) => prop_assert_eq!(s, h.min(u64::from(c.max))),
                        None if enc == AA64MMFR0 && shift == 0 => {
                            prop_assert_eq!(s, h.min(parange_for(ipa)));
                        }
                        None => prop_assert_eq!(s, h),
                    }
                }
            }
        }
    }
}

// ---- Through the run loop with the fake arch ----

/// One domU (VMID 1) with a raw 4 KiB kernel whose word at 0x200 is 0
/// (SHUTDOWN_poweroff reason), on a fake machine.
fn rig() -> (System<FakeMem>, SharedMachine) {
    let sys = crate::testutil::system(Policy::XenCompat, Box::new(Lines::default()), 2);
    crate::testutil::add_image(&sys, DomainSpec::domu(2 << 20), &[0u8; 0x1000]).unwrap();
    (sys, FakeMachine::new_shared())
}

fn shutdown() -> Step {
    Step::hypercall(29, &[2, GUEST_RAM0_BASE + 0x200])
}

fn entries(machine: &SharedMachine) -> Vec<GuestGprs> {
    machine.lock().entries(1, 0)
}

#[test]
fn mrs_of_id_registers_answers_in_xt_and_steps_over() {
    let (sys, machine) = rig();
    {
        let mut m = machine.lock();
        // Host PFR0 with SVE = 1 (and GIC 1, AdvSIMD 0, FP 0, EL1/EL0 1).
        m.id_regs.insert(AA64PFR0, 0x0000_0001_0100_0011);
        m.id_regs.insert(AA64ZFR0, 0x0110_0011_0000_0011);
        m.id_regs.insert(AA64ISAR0, 0x0000_0000_0000_0020);
        m.id_regs.insert((7, 7), 0xdead);
        m.script(
            1,
            0,
            [
                Step::hypercall(17, &[0]),
                Step::sysreg(iss(4, 0, 5, true)), // MRS x5, ID_AA64PFR0_EL1
                Step::sysreg(iss(4, 4, 6, true)), // MRS x6, ID_AA64ZFR0_EL1
                Step::sysreg(iss(6, 0, 30, true)), // MRS x30, ID_AA64ISAR0_EL1
                Step::sysreg(iss(7, 7, 7, true)), // MRS x7, S3_0_C0_C7_7 (unallocated)
                Step::sysreg(iss(4, 0, 31, true)), // MRS xzr, ID_AA64PFR0_EL1
                shutdown(),
            ],
        );
    }
    let before = READS.load(Ordering::Relaxed);
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
    let e = entries(&machine);
    let mrs_pc = GUEST_RAM0_BASE + 4;
    assert_eq!(
        e[2].x[5], 0x0000_0000_0100_0011,
        "SVE hidden, the rest kept"
    );
    assert_eq!(e[2].pc, mrs_pc + 4, "PC past the MRS");
    assert_eq!(e[3].x[6], 0, "ZFR0 reads as zero");
    assert_eq!(e[3].pc, mrs_pc + 8);
    assert_eq!(e[4].x[30], 0x20);
    assert_eq!(e[5].x[7], 0, "unallocated: RAZ");
    assert_eq!(e[6].pc, mrs_pc + 20, "MRS XZR stepped over");
    assert_eq!(e[6].x[..31], e[5].x[..31], "XZR: no register written");
    assert!(
        machine.lock().el1_writes().is_empty(),
        "no exception injected"
    );
    assert!(READS.load(Ordering::Relaxed) >= before + 5);
}

#[test]
fn msr_to_an_id_register_and_sve_use_inject_undef() {
    let (sys, machine) = rig();
    let sve = RawExit {
        vector: ExitVector::Sync,
        // EC 0x19 (SVE access trapped by CPTR_EL2), IL.
        esr: (u64::from(EC_SVE) << 26) | ESR_IL,
        far: 0,
        hpfar: 0,
    };
    let sme = RawExit {
        esr: (u64::from(EC_SME) << 26) | ESR_IL | 1, // SMTC 1: SMSTART/SMSTOP
        ..sve
    };
    let mut sve_step = Step::sysreg(0);
    sve_step.exit = sve;
    let mut sme_step = Step::sysreg(0);
    sme_step.exit = sme;
    machine.lock().script(
        1,
        0,
        [
            Step::hypercall(17, &[0]),
            Step::sysreg(iss(4, 0, 1, false)), // MSR ID_AA64PFR0_EL1, x1
            sve_step,
            sme_step,
            shutdown(),
        ],
    );
    let traps = SVE_SME_TRAPS.load(Ordering::Relaxed);
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff, "guest not ended");
    let e = entries(&machine);
    // VBAR_EL1 = 0: each injected undef lands on the current-EL SPx vector.
    assert_eq!(e[2].pc, 0x200);
    assert_eq!(e[3].pc, 0x200);
    assert_eq!(e[4].pc, 0x200);
    let w = machine.lock().el1_writes();
    let elrs: Vec<u64> = w
        .iter()
        .filter(|(r, _)| *r == El1Reg::ElrEl1)
        .map(|&(_, v)| v)
        .collect();
    // The MSR at +4, then the SVE and SME instructions at the vector (0x200).
    assert_eq!(elrs, vec![GUEST_RAM0_BASE + 4, 0x200, 0x200]);
    assert!(
        w.contains(&(El1Reg::EsrEl1, ESR_IL)),
        "EC 0: unknown reason"
    );
    assert!(SVE_SME_TRAPS.load(Ordering::Relaxed) >= traps + 2);
}
