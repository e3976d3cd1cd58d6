//! The guest's view of the CPU's ID registers, and what hv answers when a
//! guest touches SVE or SME.
//!
//! hv traps guest reads of the ID register space (`HCR_EL2.TID3`: op0 3,
//! op1 0, CRn 0, CRm 1..=7) and answers them here with *sanitised* values:
//! the host's value (through [`Arch::host_id_reg`]) with every feature field
//! hidden whose EL1/EL0 state hv does not context-switch, trap or emulate.
//! The idea is KVM's (`arch/arm64/kvm/sys_regs.c`,
//! `__kvm_read_sanitised_id_reg` / `read_sanitised_id_reg`: the host's
//! sanitised value with the features the VM does not get masked out); the
//! tables are hv's own, from the Arm ARM (DDI 0487, "ID_AA64*_EL1"), matched
//! against what `Arch::vcpu_load` / `vcpu_put` switch: the EL1 registers of
//! [`crate::arch::El1Reg`], FP/SIMD (V0..V31, FPSR, FPCR) and the pointer
//! authentication keys. Everything else the guest could set would leak
//! between vCPUs of different domains on one pCPU, or trap to hv (and end the
//! domain), so the guest must not believe the feature exists.
//!
//! - Known AArch64 ID registers: host value with [`rules`] applied.
//! - AArch32 ID registers (CRm 1..=3): RAZ, because AArch32 is hidden at EL0
//!   and EL1 (`ID_AA64PFR0_EL1.{EL0,EL1}` capped at "AArch64 only"; the Arm ARM
//!   makes them UNKNOWN then, and hv handles none of the AArch32 trap classes).
//! - Unallocated encodings in the space: RAZ (the Arm ARM's rule for the
//!   reserved ID space; hv never reads them from the CPU).
//! - Writes (`MSR` to an ID register): undefined instruction injected.
//! - CRm 0 (`MIDR_EL1`, `MPIDR_EL1`, `REVIDR_EL1`) is not trapped by TID3;
//!   `VPIDR_EL2`/`VMPIDR_EL2` give the guest its MIDR/MPIDR.
//!
//! SVE and SME instructions and their control registers (`ZCR_EL1`,
//! `SMCR_EL1`, `SVCR`) trap to EL2 through `CPTR_EL2` (`ZEN`/`SMEN` = 0 with
//! E2H = 1, `TZ`/`TSM` = 1 without, set at boot in `arch/aarch64/head.rs`).
//! A guest that uses them anyway gets an undefined instruction, exactly what
//! a CPU without SVE/SME would give it ([`sve_sme_trap`]), logged once.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch::Arch;
use crate::trap::SysRegAccess;
use crate::vcpu::Vcpu;

/// `ESR_EL2.EC` of a trapped SVE access (`CPTR_EL2.ZEN` / `TZ`).
pub const EC_SVE: u8 = 0x19;
/// `ESR_EL2.EC` of a trapped SME access (`CPTR_EL2.SMEN` / `TSM`).
pub const EC_SME: u8 = 0x1d;

/// Guest reads of ID registers answered (all domains, since boot).
pub static READS: AtomicU64 = AtomicU64::new(0);
/// Guest writes to ID registers refused (undefined instruction).
pub static WRITES: AtomicU64 = AtomicU64::new(0);
/// Guest SVE/SME accesses answered with an undefined instruction.
pub static SVE_SME_TRAPS: AtomicU64 = AtomicU64::new(0);

/// A register of the ID space, by its `(CRm, op2)` (op0 3, op1 0, CRn 0).
pub type Encoding = (u8, u8);

/// `ID_AA64PFR0_EL1`.
pub const AA64PFR0: Encoding = (4, 0);
/// `ID_AA64PFR1_EL1`.
pub const AA64PFR1: Encoding = (4, 1);
/// `ID_AA64PFR2_EL1`.
pub const AA64PFR2: Encoding = (4, 2);
/// `ID_AA64ZFR0_EL1` (SVE features).
pub const AA64ZFR0: Encoding = (4, 4);
/// `ID_AA64SMFR0_EL1` (SME features).
pub const AA64SMFR0: Encoding = (4, 5);
/// `ID_AA64FPFR0_EL1` (FP8 features, state in `FPMR`).
pub const AA64FPFR0: Encoding = (4, 7);
/// `ID_AA64DFR0_EL1`.
pub const AA64DFR0: Encoding = (5, 0);
/// `ID_AA64DFR1_EL1`.
pub const AA64DFR1: Encoding = (5, 1);
/// `ID_AA64DFR2_EL1`.
pub const AA64DFR2: Encoding = (5, 2);
/// `ID_AA64AFR0_EL1` (IMPLEMENTATION DEFINED).
pub const AA64AFR0: Encoding = (5, 4);
/// `ID_AA64AFR1_EL1` (IMPLEMENTATION DEFINED).
pub const AA64AFR1: Encoding = (5, 5);
/// `ID_AA64ISAR0_EL1`.
pub const AA64ISAR0: Encoding = (6, 0);
/// `ID_AA64ISAR1_EL1`.
pub const AA64ISAR1: Encoding = (6, 1);
/// `ID_AA64ISAR2_EL1`.
pub const AA64ISAR2: Encoding = (6, 2);
/// `ID_AA64ISAR3_EL1`.
pub const AA64ISAR3: Encoding = (6, 3);
/// `ID_AA64MMFR0_EL1`.
pub const AA64MMFR0: Encoding = (7, 0);
/// `ID_AA64MMFR1_EL1`.
pub const AA64MMFR1: Encoding = (7, 1);
/// `ID_AA64MMFR2_EL1`.
pub const AA64MMFR2: Encoding = (7, 2);
/// `ID_AA64MMFR3_EL1`.
pub const AA64MMFR3: Encoding = (7, 3);
/// `ID_AA64MMFR4_EL1`.
pub const AA64MMFR4: Encoding = (7, 4);

/// What the guest sees of one ID register.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum View {
    /// Reads as zero (unallocated, AArch32, or a register whose every
    /// feature is hidden).
    Raz,
    /// The host value with `caps` applied.
    Sanitised(&'static [Cap]),
}

/// An unsigned 4-bit feature field limited to `max` (0 hides the feature).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cap {
    /// Lowest bit of the field.
    pub shift: u8,
    /// Largest value the guest may see.
    pub max: u8,
    /// The field's name and why it is limited.
    pub why: &'static str,
}

const fn cap(shift: u8, max: u8, why: &'static str) -> Cap {
    Cap { shift, max, why }
}

/// `ID_AA64PFR0_EL1` limits.
pub const PFR0_CAPS: &[Cap] = &[
    cap(
        0,
        1,
        "EL0: AArch64 only (hv handles no AArch32 trap classes)",
    ),
    cap(4, 1, "EL1: AArch64 only (HCR_EL2.RW = 1)"),
    cap(8, 0, "EL2: no nested virtualisation"),
    cap(
        28,
        0,
        "RAS: error records not trapped (HCR_EL2.TERR = 0), DISR not switched",
    ),
    cap(
        32,
        0,
        "SVE: Z/P/FFR and ZCR_EL1 not switched; use traps (CPTR_EL2.ZEN)",
    ),
    cap(36, 0, "SEL2: Secure EL2 is not the guest's"),
    cap(40, 0, "MPAM: MPAM0/1_EL1 not switched"),
    cap(44, 0, "AMU: activity monitors not virtualised"),
    cap(52, 0, "RME: realms are not the guest's"),
];

/// `ID_AA64PFR1_EL1` limits.
pub const PFR1_CAPS: &[Cap] = &[
    cap(
        8,
        0,
        "MTE: GCR/RGSR/TFSR(E0)_EL1 and tags not switched, HCR_EL2.ATA = 0",
    ),
    cap(12, 0, "RAS_frac: RAS hidden"),
    cap(16, 0, "MPAM_frac: MPAM hidden"),
    cap(
        24,
        0,
        "SME: ZA/ZT0, SMCR_EL1, SVCR, TPIDR2_EL0 not switched; use traps (CPTR_EL2.SMEN)",
    ),
    cap(
        28,
        0,
        "RNDR_trap: EL3 trapping of RNDR is not the guest's concern",
    ),
    cap(36, 0, "NMI: the vGIC has no NMIs"),
    cap(40, 0, "MTE_frac: MTE hidden"),
    cap(44, 0, "GCS: GCSCR(E0)_EL1, GCSPR_EL0/1 not switched"),
    cap(48, 0, "THE: RCWMASK_EL1/RCWSMASK_EL1 not switched"),
    cap(52, 0, "MTEX: MTE hidden"),
    cap(56, 0, "DF2: needs SCTLR2_EL1, not switched"),
    cap(60, 0, "PFAR: PFAR_EL1 not switched"),
];

/// `ID_AA64DFR0_EL1` limits (DebugVer, BRPs, WRPs, CTX_CMPs, DoubleLock kept:
/// the debug architecture cannot be absent).
pub const DFR0_CAPS: &[Cap] = &[
    cap(4, 0, "TraceVer: trace unit registers not switched"),
    cap(
        8,
        0,
        "PMUVer: PMU registers not switched, no virtual PMU interrupt",
    ),
    cap(16, 0, "PMSS: PMU hidden"),
    cap(24, 0, "SEBEP: PMU hidden"),
    cap(32, 0, "PMSVer: SPE (PMSCR_EL1, ...) not switched"),
    cap(40, 0, "TraceFilt: TRFCR_EL1 not switched"),
    cap(44, 0, "TraceBuffer: TRBE not switched"),
    cap(48, 0, "MTPMU: PMU hidden"),
    cap(52, 0, "BRBE: branch record buffer not switched"),
    cap(56, 0, "ExtTrcBuff: trace hidden"),
    cap(60, 0, "HPMN0: PMU hidden"),
];

/// `ID_AA64ISAR1_EL1` limits (pointer authentication kept: hv switches the keys).
pub const ISAR1_CAPS: &[Cap] = &[cap(
    60,
    0,
    "LS64: ST64B*/LD64B trap to EL2 (HCRX_EL2.EnALS/EnAS0/EnASR = 0), unhandled",
)];

/// `ID_AA64ISAR2_EL1` limits (MOPS kept: HCRX_EL2.MSCEn; WFxT kept: handled).
pub const ISAR2_CAPS: &[Cap] = &[
    cap(
        32,
        0,
        "SYSREG_128: 128-bit system registers (D128) not switched",
    ),
    cap(36, 0, "SYSINSTR_128: D128 hidden"),
];

/// `ID_AA64MMFR0_EL1` limits (PARange is limited separately to hv's IPA size).
pub const MMFR0_CAPS: &[Cap] = &[
    cap(56, 0, "FGT: EL2 feature"),
    cap(
        60,
        1,
        "ECV: CNTPOFF_EL2 is EL2's (self-synchronised counter reads kept)",
    ),
];

/// `ID_AA64MMFR1_EL1` limits.
pub const MMFR1_CAPS: &[Cap] = &[
    cap(8, 0, "VH: no EL2 for the guest"),
    cap(
        16,
        0,
        "LO: LORegion registers not switched, HCR_EL2.TLOR = 0",
    ),
    cap(32, 0, "TWED: EL2 feature"),
    cap(40, 0, "HCX: EL2 feature"),
];

/// `ID_AA64MMFR2_EL1` limits.
pub const MMFR2_CAPS: &[Cap] = &[
    cap(24, 0, "NV: no nested virtualisation"),
    cap(40, 0, "FWB: EL2 feature"),
    cap(56, 0, "EVT: EL2 feature"),
];

/// `ID_AA64MMFR3_EL1` limits: every field describes EL1 state hv does not
/// switch or an EL2/EL3 feature; only Spec_FPACC (bits 63:60) is kept.
pub const MMFR3_CAPS: &[Cap] = &[
    cap(
        0,
        0,
        "TCRX: TCR2_EL1 not switched (and HCRX_EL2.TCR2En = 0 traps it)",
    ),
    cap(4, 0, "SCTLRX: SCTLR2_EL1 not switched"),
    cap(8, 0, "S1PIE: PIR(E0)_EL1 not switched"),
    cap(12, 0, "S2PIE: EL2 feature"),
    cap(16, 0, "S1POE: POR_EL0/POR_EL1 not switched"),
    cap(20, 0, "S2POE: EL2 feature"),
    cap(24, 0, "AIE: needs TCR2_EL1/MAIR2_EL1, not switched"),
    cap(28, 0, "MEC: EL2/realm feature"),
    cap(32, 0, "D128: 128-bit tables, not switched"),
    cap(36, 0, "D128_2: EL2 feature"),
    cap(40, 0, "SNERR: needs SCTLR2_EL1"),
    cap(44, 0, "ANERR: needs SCTLR2_EL1"),
    cap(48, 0, "SDERR: needs SCTLR2_EL1"),
    cap(52, 0, "ADERR: needs SCTLR2_EL1"),
    cap(56, 0, "reserved"),
];

/// How the guest sees ID register `enc` (`(CRm, op2)` of op0 3, op1 0, CRn 0).
#[must_use]
pub const fn rules(enc: Encoding) -> View {
    match enc {
        AA64PFR0 => View::Sanitised(PFR0_CAPS),
        AA64PFR1 => View::Sanitised(PFR1_CAPS),
        AA64DFR0 => View::Sanitised(DFR0_CAPS),
        AA64ISAR0 | AA64ISAR3 => View::Sanitised(&[]),
        AA64ISAR1 => View::Sanitised(ISAR1_CAPS),
        AA64ISAR2 => View::Sanitised(ISAR2_CAPS),
        AA64MMFR0 => View::Sanitised(MMFR0_CAPS),
        AA64MMFR1 => View::Sanitised(MMFR1_CAPS),
        AA64MMFR2 => View::Sanitised(MMFR2_CAPS),
        AA64MMFR3 => View::Sanitised(MMFR3_CAPS),
        // PFR2 (MTE extensions, FPMR), ZFR0 (SVE), SMFR0 (SME), FPFR0 (FP8:
        // FPMR not switched), DFR1/DFR2 (PMU and debug extensions), AFR0/1
        // (IMPLEMENTATION DEFINED), MMFR4 (ASID2/TCR2, EL2 features), the
        // AArch32 registers (AArch32 hidden) and every unallocated encoding.
        _ => View::Raz,
    }
}

/// `ID_AA64MMFR0_EL1.PARange` encoding of the largest size not above `bits`.
#[must_use]
pub const fn parange_for(bits: u8) -> u64 {
    match bits {
        0..=35 => 0,
        36..=39 => 1,
        40..=41 => 2,
        42..=43 => 3,
        44..=47 => 4,
        48..=51 => 5,
        _ => 6,
    }
}

/// The guest's value of ID register `enc` given the host's value `host` and
/// hv's stage-2 input size `ipa_bits` (the guest's physical address space).
#[must_use]
pub fn sanitise(enc: Encoding, host: u64, ipa_bits: u8) -> u64 {
    let View::Sanitised(caps) = rules(enc) else {
        return 0;
    };
    let mut v = host;
    for c in caps {
        let field = (v >> c.shift) & 0xf;
        if field > u64::from(c.max) {
            v = (v & !(0xf << c.shift)) | (u64::from(c.max) << c.shift);
        }
    }
    if enc == AA64MMFR0 {
        let pa = parange_for(ipa_bits);
        if v & 0xf > pa {
            v = (v & !0xf) | pa;
        }
    }
    v
}

/// The ID register a trapped access names, if it lies in the space TID3
/// traps (op0 3, op1 0, CRn 0, CRm 1..=7).
#[must_use]
pub const fn id_encoding(acc: &SysRegAccess) -> Option<Encoding> {
    if acc.op0 == 3 && acc.op1 == 0 && acc.crn == 0 && acc.crm >= 1 && acc.crm <= 7 {
        Some((acc.crm, acc.op2))
    } else {
        None
    }
}

/// The guest's value of ID register `enc` on `arch`'s CPU.
#[must_use]
pub fn guest_value(arch: &dyn Arch, enc: Encoding) -> u64 {
    match rules(enc) {
        View::Raz => 0,
        View::Sanitised(_) => sanitise(enc, arch.host_id_reg(enc.0, enc.1), arch.ipa_bits()),
    }
}

/// Answer a trapped access to the ID space (the caller checked
/// [`id_encoding`]): a read writes the guest's value to `Xt` (XZR discards
/// it) and steps over the `MRS`; a write injects an undefined instruction.
pub fn emulate(arch: &mut dyn Arch, v: &mut Vcpu, acc: &SysRegAccess) {
    let Some(enc) = id_encoding(acc) else {
        return;
    };
    if !acc.read {
        WRITES.fetch_add(1, Ordering::Relaxed);
        crate::glog!(
            v.domid,
            Debug,
            "d{}v{}: {acc}: ID registers are read-only: undefined instruction",
            v.domid,
            v.id
        );
        let elr = v.gprs.pc;
        v.inject_undef(arch, elr);
        return;
    }
    READS.fetch_add(1, Ordering::Relaxed);
    let val = guest_value(&*arch, enc);
    log::trace!("d{}v{}: {acc} = {val:#018x}", v.domid, v.id);
    if let Some(x) = v.gprs.x.get_mut(usize::from(acc.rt)) {
        *x = val;
    }
    v.gprs.pc = v.gprs.pc.wrapping_add(4);
}

/// A guest SVE or SME access trapped (`ec` is [`EC_SVE`] or [`EC_SME`]):
/// inject an undefined instruction at it (what a CPU without the feature
/// does), logging the first one only.
pub fn sve_sme_trap(arch: &mut dyn Arch, v: &mut Vcpu, ec: u8) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    SVE_SME_TRAPS.fetch_add(1, Ordering::Relaxed);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "d{}v{}: {} access at pc {:#x} (hidden from guests): undefined instruction (logged once)",
            v.domid,
            v.id,
            if ec == EC_SME { "SME" } else { "SVE" },
            v.gprs.pc
        );
    }
    // ELR_EL2 points at the trapped instruction.
    let elr = v.gprs.pc;
    v.inject_undef(arch, elr);
}

#[cfg(test)]
mod tests;
