//! Decoding of guest exits: raw `ESR_EL2`/`FAR_EL2`/`HPFAR_EL2` values into a typed [`ExitReason`].
//!
//! Field positions follow the Arm ARM (DDI 0487), "ESR_EL2, Exception
//! Syndrome Register (EL2)" and "HPFAR_EL2". Only raw values come in; nothing
//! here touches a register, so every path is host-tested with real syndromes.

use pv_tlb::Ipa;

use crate::arch::{ExitVector, RawExit};

/// Exception classes (`ESR_ELx.EC`) hv distinguishes.
pub mod ec {
    /// Unknown reason (also what hv injects for an undefined instruction).
    pub const UNKNOWN: u8 = 0x00;
    /// WFI/WFE (and WFIT/WFET) trapped by HCR_EL2.TWI/TWE.
    pub const WFX: u8 = 0x01;
    /// HVC from AArch64.
    pub const HVC64: u8 = 0x16;
    /// SMC from AArch64 (trapped by HCR_EL2.TSC).
    pub const SMC64: u8 = 0x17;
    /// MSR/MRS/SYS from AArch64.
    pub const SYS64: u8 = 0x18;
    /// Instruction abort from a lower EL.
    pub const IABT_LOWER: u8 = 0x20;
    /// Data abort from a lower EL.
    pub const DABT_LOWER: u8 = 0x24;
}

/// `ESR_ELx.IL`: the trapped instruction was 32 bits long.
pub const ESR_IL: u64 = 1 << 25;

/// Size of the access of a data abort with a valid instruction syndrome (`SAS`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AccessSize {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Half,
    /// 32 bits.
    Word,
    /// 64 bits.
    Double,
}

impl AccessSize {
    /// The access size in bytes.
    #[must_use]
    pub const fn bytes(self) -> u8 {
        match self {
            AccessSize::Byte => 1,
            AccessSize::Half => 2,
            AccessSize::Word => 4,
            AccessSize::Double => 8,
        }
    }
}

/// The instruction syndrome of a data abort (present when `ISV` = 1): enough
/// to emulate the load/store without decoding the instruction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DataAccess {
    /// Access size (`SAS`).
    pub sas: AccessSize,
    /// Sign-extend the loaded value (`SSE`).
    pub sse: bool,
    /// Transfer register number (`SRT`); 31 means XZR/WZR.
    pub srt: u8,
    /// 64-bit transfer register (`SF`).
    pub sf: bool,
    /// Acquire/release semantics (`AR`).
    pub ar: bool,
}

/// A fault status code (`DFSC`/`IFSC`) decoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultStatus {
    /// Address size fault at `level` (-1..=3).
    AddressSize {
        /// Lookup level.
        level: i8,
    },
    /// Translation fault at `level` (-1..=3).
    Translation {
        /// Lookup level.
        level: i8,
    },
    /// Access flag fault at `level` (0..=3).
    AccessFlag {
        /// Lookup level.
        level: i8,
    },
    /// Permission fault at `level` (0..=3).
    Permission {
        /// Lookup level.
        level: i8,
    },
    /// Synchronous external abort, not on a translation table walk.
    SyncExternal,
    /// Synchronous external abort on a translation table walk at `level`.
    SyncExternalOnWalk {
        /// Lookup level.
        level: i8,
    },
    /// Alignment fault.
    Alignment,
    /// TLB conflict abort.
    TlbConflict,
    /// Any other code (kept raw).
    Other(u8),
}

impl FaultStatus {
    /// Decode a 6-bit `DFSC`/`IFSC`.
    #[must_use]
    pub const fn decode(fsc: u8) -> Self {
        let fsc = fsc & 0x3f;
        let level = (fsc & 3) as i8;
        match fsc {
            0x00..=0x03 => FaultStatus::AddressSize { level },
            0x04..=0x07 => FaultStatus::Translation { level },
            0x08..=0x0b => FaultStatus::AccessFlag { level },
            0x0c..=0x0f => FaultStatus::Permission { level },
            0x10 => FaultStatus::SyncExternal,
            0x14..=0x17 => FaultStatus::SyncExternalOnWalk { level },
            0x13 => FaultStatus::SyncExternalOnWalk { level: -1 },
            0x21 => FaultStatus::Alignment,
            0x29 => FaultStatus::AddressSize { level: -1 },
            0x2b => FaultStatus::Translation { level: -1 },
            0x30 => FaultStatus::TlbConflict,
            other => FaultStatus::Other(other),
        }
    }

    /// True for the faults a missing or read-only stage-2 mapping causes
    /// (translation, access flag, permission, address size).
    #[must_use]
    pub const fn is_translation_related(self) -> bool {
        matches!(
            self,
            FaultStatus::Translation { .. }
                | FaultStatus::AccessFlag { .. }
                | FaultStatus::Permission { .. }
                | FaultStatus::AddressSize { .. }
        )
    }
}

impl core::fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FaultStatus::AddressSize { level } => write!(f, "address size fault, level {level}"),
            FaultStatus::Translation { level } => write!(f, "translation fault, level {level}"),
            FaultStatus::AccessFlag { level } => write!(f, "access flag fault, level {level}"),
            FaultStatus::Permission { level } => write!(f, "permission fault, level {level}"),
            FaultStatus::SyncExternal => write!(f, "synchronous external abort"),
            FaultStatus::SyncExternalOnWalk { level } => {
                write!(f, "synchronous external abort on table walk, level {level}")
            }
            FaultStatus::Alignment => write!(f, "alignment fault"),
            FaultStatus::TlbConflict => write!(f, "TLB conflict abort"),
            FaultStatus::Other(code) => write!(f, "fault status {code:#04x}"),
        }
    }
}

/// A data abort taken from the guest to EL2 (a stage-2 fault, usually).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DataAbort {
    /// The faulting IPA: `HPFAR_EL2.FIPA` with the page offset of `FAR_EL2`.
    pub ipa: Ipa,
    /// `FAR_EL2`: the guest virtual address (meaningless when `far_valid` is false).
    pub far: u64,
    /// `FnV` clear: `FAR_EL2` holds the faulting address.
    pub far_valid: bool,
    /// The instruction syndrome, when `ISV` = 1.
    pub access: Option<DataAccess>,
    /// The access was a write (`WnR`).
    pub wnr: bool,
    /// The fault happened on a stage-1 table walk (`S1PTW`).
    pub s1ptw: bool,
    /// External abort type (`EA`).
    pub ea: bool,
    /// Cache maintenance or address translation instruction (`CM`).
    pub cm: bool,
    /// The fault status code decoded (`DFSC`).
    pub fsc: FaultStatus,
}

/// An instruction abort taken from the guest to EL2.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InstrAbort {
    /// The faulting IPA (as for [`DataAbort::ipa`]).
    pub ipa: Ipa,
    /// `FAR_EL2`.
    pub far: u64,
    /// `FnV` clear: `FAR_EL2` holds the faulting address.
    pub far_valid: bool,
    /// The fault happened on a stage-1 table walk (`S1PTW`).
    pub s1ptw: bool,
    /// External abort type (`EA`).
    pub ea: bool,
    /// The fault status code decoded (`IFSC`).
    pub fsc: FaultStatus,
}

/// A trapped `MRS`/`MSR`/`SYS` instruction (EC 0x18).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SysRegAccess {
    /// `Op0`.
    pub op0: u8,
    /// `Op1`.
    pub op1: u8,
    /// `CRn`.
    pub crn: u8,
    /// `CRm`.
    pub crm: u8,
    /// `Op2`.
    pub op2: u8,
    /// Transfer register (31 = XZR).
    pub rt: u8,
    /// True for a read (`MRS`), false for a write (`MSR`).
    pub read: bool,
}

impl SysRegAccess {
    /// A write of `ICC_SGI1R_EL1`, `ICC_ASGI1R_EL1` or `ICC_SGI0R_EL1` (the
    /// guest sends an SGI; trapped with `HCR_EL2.IMO`/`FMO`).
    #[must_use]
    pub fn is_sgi_write(&self) -> bool {
        (self.op0, self.op1, self.crn, self.crm) == (3, 0, 12, 11)
            && matches!(self.op2, 5..=7)
            && !self.read
    }
}

impl core::fmt::Display for SysRegAccess {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} S{}_{}_C{}_C{}_{} {} x{}",
            if self.read { "MRS" } else { "MSR" },
            self.op0,
            self.op1,
            self.crn,
            self.crm,
            self.op2,
            if self.read { "into" } else { "from" },
            self.rt
        )
    }
}

/// Why a guest left the CPU, decoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExitReason {
    /// `HVC #imm16` from AArch64 (the return address is already past it).
    Hvc {
        /// The immediate; Xen's hypercalls use `0xEA1`.
        imm16: u16,
    },
    /// `SMC #imm16` from AArch64, trapped (the return address is the SMC itself).
    Smc {
        /// The immediate.
        imm16: u16,
    },
    /// Data abort from the guest.
    DataAbortLower(DataAbort),
    /// Instruction abort from the guest.
    InstrAbortLower(InstrAbort),
    /// Trapped system-register access.
    SysReg(SysRegAccess),
    /// Trapped WFI or WFE.
    Wfx {
        /// WFE (or WFET) rather than WFI (or WFIT).
        wfe: bool,
    },
    /// A physical IRQ arrived while the guest ran.
    Irq,
    /// A physical FIQ arrived while the guest ran.
    Fiq,
    /// An SError arrived while the guest ran.
    SError,
    /// A synchronous exit hv does not handle.
    Unknown {
        /// `ESR_EL2.EC`.
        ec: u8,
    },
}

/// `ESR_ELx.EC`.
#[must_use]
pub const fn esr_ec(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

/// `ESR_ELx.ISS`.
#[must_use]
pub const fn esr_iss(esr: u64) -> u32 {
    (esr & 0x1ff_ffff) as u32
}

/// The faulting IPA from `HPFAR_EL2.FIPA` (bits [47:4] hold IPA[55:12] with
/// FEAT_LPA, [43:4] without; bit 63 `NS` is not part of it) plus the page
/// offset from `FAR_EL2`.
#[must_use]
pub const fn fault_ipa(hpfar: u64, far: u64) -> Ipa {
    let fipa = (hpfar >> 4) & ((1 << 44) - 1);
    Ipa((fipa << 12) | (far & 0xfff))
}

const fn bit(v: u32, n: u32) -> bool {
    (v >> n) & 1 == 1
}

impl ExitReason {
    /// Decode the raw values captured at an exit.
    #[must_use]
    pub fn decode(raw: &RawExit) -> ExitReason {
        match raw.vector {
            ExitVector::Irq => return ExitReason::Irq,
            ExitVector::Fiq => return ExitReason::Fiq,
            ExitVector::SError => return ExitReason::SError,
            ExitVector::Sync => {}
        }
        let ec = esr_ec(raw.esr);
        let iss = esr_iss(raw.esr);
        match ec {
            ec::HVC64 => ExitReason::Hvc { imm16: iss as u16 },
            ec::SMC64 => ExitReason::Smc { imm16: iss as u16 },
            ec::WFX => ExitReason::Wfx { wfe: bit(iss, 0) },
            ec::SYS64 => ExitReason::SysReg(SysRegAccess {
                op0: ((iss >> 20) & 3) as u8,
                op2: ((iss >> 17) & 7) as u8,
                op1: ((iss >> 14) & 7) as u8,
                crn: ((iss >> 10) & 0xf) as u8,
                rt: ((iss >> 5) & 0x1f) as u8,
                crm: ((iss >> 1) & 0xf) as u8,
                read: bit(iss, 0),
            }),
            ec::DABT_LOWER => {
                let access = bit(iss, 24).then(|| DataAccess {
                    sas: match (iss >> 22) & 3 {
                        0 => AccessSize::Byte,
                        1 => AccessSize::Half,
                        2 => AccessSize::Word,
                        _ => AccessSize::Double,
                    },
                    sse: bit(iss, 21),
                    srt: ((iss >> 16) & 0x1f) as u8,
                    sf: bit(iss, 15),
                    ar: bit(iss, 14),
                });
                ExitReason::DataAbortLower(DataAbort {
                    ipa: fault_ipa(raw.hpfar, raw.far),
                    far: raw.far,
                    far_valid: !bit(iss, 10),
                    access,
                    wnr: bit(iss, 6),
                    s1ptw: bit(iss, 7),
                    ea: bit(iss, 9),
                    cm: bit(iss, 8),
                    fsc: FaultStatus::decode((iss & 0x3f) as u8),
                })
            }
            ec::IABT_LOWER => ExitReason::InstrAbortLower(InstrAbort {
                ipa: fault_ipa(raw.hpfar, raw.far),
                far: raw.far,
                far_valid: !bit(iss, 10),
                s1ptw: bit(iss, 7),
                ea: bit(iss, 9),
                fsc: FaultStatus::decode((iss & 0x3f) as u8),
            }),
            ec => ExitReason::Unknown { ec },
        }
    }
}

/// How hv answers a trapped debug or PMU system-register access (the
/// registers `MDCR_EL2.TDRA/TDOSA/TDA/TPM/TPMCR` trap, see [`mdcr_el2_guest`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SysRegAnswer {
    /// Reads return 0, writes are ignored; the instruction is stepped over.
    RazWi,
    /// An undefined-instruction exception at the access.
    Undef,
}

/// The answer for a trapped debug or PMU register access `acc` made at EL0
/// (`el0`) or EL1, exactly as Xen's arm64 `do_sysreg` (xen/arch/arm/arm64/
/// vsysreg.c): hv offers no self-hosted debug and no PMU (ID_AA64DFR0 hides
/// the PMU, [`crate::idregs`]), so guests see empty registers and nothing a
/// domain writes reaches the hardware another domain reads (issue 9
/// finding 8). `None` for any other register.
///
/// - RAZ/WI from EL1, undefined from EL0 (Xen's `handle_raz_wi(.., 1)`):
///   `OSDLR_EL1`, `MDSCR_EL1`, `DBGB{V,C}R<n>_EL1`, `DBGW{V,C}R<n>_EL1`,
///   `PMINTEN{SET,CLR}_EL1`, `PMUSERENR_EL0` (EL1), `PMCR_EL0`,
///   `PMCNTEN{SET,CLR}_EL0`, `PMOVS{CLR,SET}_EL0`, `PMSWINC_EL0`,
///   `PMSELR_EL0`, `PMCEID{0,1}_EL0`, `PMCCNTR_EL0`, `PMXEV{TYPER,CNTR}_EL0`.
/// - Read-as-zero, undefined on write (`handle_ro_raz`): `MDRAR_EL1` (EL1
///   only), `MDCCSR_EL0` and `PMUSERENR_EL0` at EL0.
/// - Write-ignored, undefined on read (`handle_wo_wi`): `OSLAR_EL1` (EL1 only).
/// - Undefined (Xen's "unhandled"): every other register in the trapped
///   groups: `PMEVCNTR<n>_EL0`, `PMEVTYPER<n>_EL0`, `PMCCFILTR_EL0`,
///   `PMMIR_EL1`, `OSLSR_EL1`, `DBGPRCR_EL1`, `MDCCINT_EL1`, the DCC and
///   OS-save registers, `DBGCLAIM*`, `DBGAUTHSTATUS_EL1`, `DBGVCR32_EL2`.
#[must_use]
pub fn debug_pmu_answer(acc: &SysRegAccess, el0: bool) -> Option<SysRegAnswer> {
    use SysRegAnswer::{RazWi, Undef};
    let raz_wi = |min_el1: bool| if min_el1 && el0 { Undef } else { RazWi };
    let ro_raz = |min_el1: bool| {
        if !acc.read || (min_el1 && el0) {
            Undef
        } else {
            RazWi
        }
    };
    let wo_wi = |min_el1: bool| {
        if acc.read || (min_el1 && el0) {
            Undef
        } else {
            RazWi
        }
    };
    let SysRegAccess {
        op0,
        op1,
        crn,
        crm,
        op2,
        ..
    } = *acc;
    Some(match (op0, op1, crn, crm, op2) {
        // Debug registers (op0 = 2): MDCR_EL2.TDA / TDOSA / TDRA.
        (2, 0, 0, _, 4..=7) => raz_wi(true), // DBGBVR/BCR/WVR/WCR<n>_EL1
        (2, 0, 0, 2, 2) => raz_wi(true),     // MDSCR_EL1
        (2, 0, 1, 0, 0) => ro_raz(true),     // MDRAR_EL1
        (2, 0, 1, 0, 4) => wo_wi(true),      // OSLAR_EL1
        (2, 0, 1, 3, 4) => raz_wi(true),     // OSDLR_EL1
        (2, 3, 0, 1, 0) => ro_raz(false),    // MDCCSR_EL0
        (2, _, _, _, _) => Undef,            // every other debug register
        // PMU registers (op0 = 3): MDCR_EL2.TPM / TPMCR.
        (3, 0, 9, 14, 1 | 2) => raz_wi(true), // PMINTENSET/CLR_EL1
        (3, 3, 9, 14, 0) if el0 => ro_raz(false), // PMUSERENR_EL0 at EL0
        (3, 3, 9, 14, 0) => raz_wi(true),     // PMUSERENR_EL0 at EL1
        (3, 3, 9, 12, _) | (3, 3, 9, 13, 0..=2) | (3, 3, 9, 14, 3) => raz_wi(true),
        (3, 0, 9, 14, 6) => Undef,      // PMMIR_EL1
        (3, 3, 14, 8..=15, _) => Undef, // PMEVCNTR<n>, PMEVTYPER<n>, PMCCFILTR
        (3, 3, 9, 13..=14, _) => Undef, // other PMU encodings
        _ => return None,
    })
}

/// `MDCR_EL2` bits hv sets for guests.
pub mod mdcr {
    /// `HPMN`: event counters EL1 may use (kept as firmware/reset set it).
    pub const HPMN: u64 = 0x1f;
    /// Trap `PMCR_EL0`.
    pub const TPMCR: u64 = 1 << 5;
    /// Trap every PMU register.
    pub const TPM: u64 = 1 << 6;
    /// Route debug exceptions to EL2 (never set: hv does not debug guests).
    pub const TDE: u64 = 1 << 8;
    /// Trap debug registers.
    pub const TDA: u64 = 1 << 9;
    /// Trap the OS lock / power-down debug registers.
    pub const TDOSA: u64 = 1 << 10;
    /// Trap `MDRAR_EL1`.
    pub const TDRA: u64 = 1 << 11;
    /// `E2PB`: 0b00 = the statistical profiling buffer belongs to EL2 and
    /// EL1 accesses to it trap.
    pub const E2PB: u64 = 0b11 << 12;
    /// Trap the statistical profiling (SPE) control registers.
    pub const TPMS: u64 = 1 << 14;
    /// Trap `TRFCR_EL1` (trace filter control).
    pub const TTRF: u64 = 1 << 19;
}

/// `MDCR_EL2` while guests run, from its value at boot (`old`) and
/// `ID_AA64DFR0_EL1` (`dfr0`): Xen's `TDRA|TDOSA|TDA|TPM|TPMCR`
/// (xen/arch/arm/traps.c `init_traps`), plus, where the CPU has them, SPE
/// (`TPMS`, `E2PB` = 0) and trace-filter (`TTRF`) traps (bits that are RES0
/// without the feature stay 0). `HPMN` keeps its reset value (0 is
/// CONSTRAINED UNPREDICTABLE without FEAT_HPMN0); `TDE` stays clear; every
/// other bit is cleared.
#[must_use]
pub const fn mdcr_el2_guest(old: u64, dfr0: u64) -> u64 {
    let mut v = (old & mdcr::HPMN) | mdcr::TPMCR | mdcr::TPM | mdcr::TDA | mdcr::TDOSA | mdcr::TDRA;
    if (dfr0 >> 32) & 0xf != 0 {
        v |= mdcr::TPMS; // PMSVer: SPE present; E2PB = 0b00 (EL1 traps)
    }
    if (dfr0 >> 40) & 0xf != 0 {
        v |= mdcr::TTRF; // TraceFilt: TRFCR_EL1 present
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync(esr: u64, far: u64, hpfar: u64) -> RawExit {
        RawExit {
            vector: ExitVector::Sync,
            esr,
            far,
            hpfar,
        }
    }

    #[test]
    fn decode_table_of_real_syndromes() {
        let cases: &[(RawExit, ExitReason)] = &[
            // HVC #0xEA1 from AArch64: EC 0x16, IL, ISS = imm16.
            (sync(0x5a00_0ea1, 0, 0), ExitReason::Hvc { imm16: 0xea1 }),
            // HVC #0 (what PSCI-over-HVC callers use).
            (sync(0x5a00_0000, 0, 0), ExitReason::Hvc { imm16: 0 }),
            // SMC #0: EC 0x17.
            (sync(0x5e00_0000, 0, 0), ExitReason::Smc { imm16: 0 }),
            // WFI: EC 0x01, TI = 0.
            (sync(0x0600_0000, 0, 0), ExitReason::Wfx { wfe: false }),
            // WFE: TI = 1.
            (sync(0x0600_0001, 0, 0), ExitReason::Wfx { wfe: true }),
            // AArch32 HVC (EC 0x12) is not handled.
            (sync(0x4a00_0000, 0, 0), ExitReason::Unknown { ec: 0x12 }),
            // EC 0 (unknown reason).
            (sync(0x0200_0000, 0, 0), ExitReason::Unknown { ec: 0 }),
            (
                RawExit {
                    vector: ExitVector::Irq,
                    esr: 0,
                    far: 0,
                    hpfar: 0,
                },
                ExitReason::Irq,
            ),
            (
                RawExit {
                    vector: ExitVector::Fiq,
                    esr: 0,
                    far: 0,
                    hpfar: 0,
                },
                ExitReason::Fiq,
            ),
            (
                RawExit {
                    vector: ExitVector::SError,
                    esr: 0xbe00_0000,
                    far: 0,
                    hpfar: 0,
                },
                ExitReason::SError,
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(ExitReason::decode(raw), *want, "ESR {:#x}", raw.esr);
        }
    }

    #[test]
    fn sysreg_trap_mrs_ctr_el0_and_msr_sctlr() {
        // MRS x3, CTR_EL0 (op0 3, op1 3, CRn 0, CRm 0, op2 1) trapped with TID2:
        // ISS = op0<<20 | op2<<17 | op1<<14 | crn<<10 | rt<<5 | crm<<1 | dir.
        let iss = (3 << 20) | (1 << 17) | (3 << 14) | (3 << 5) | 1;
        let esr = (0x18u64 << 26) | ESR_IL | iss;
        assert_eq!(esr, 0x6232_c061);
        let got = ExitReason::decode(&sync(esr, 0, 0));
        assert_eq!(
            got,
            ExitReason::SysReg(SysRegAccess {
                op0: 3,
                op1: 3,
                crn: 0,
                crm: 0,
                op2: 1,
                rt: 3,
                read: true
            })
        );
        // MSR SCTLR_EL1, x0 (op0 3, op1 0, CRn 1, CRm 0, op2 0) trapped with TVM.
        let esr = 0x6230_0400;
        let ExitReason::SysReg(acc) = ExitReason::decode(&sync(esr, 0, 0)) else {
            panic!("not sysreg")
        };
        assert_eq!(
            (acc.op0, acc.op1, acc.crn, acc.crm, acc.op2, acc.rt, acc.read),
            (3, 0, 1, 0, 0, 0, false)
        );
        assert_eq!(std::format!("{acc}"), "MSR S3_0_C1_C0_0 from x0");
    }

    #[test]
    fn data_abort_with_syndrome_write_translation_fault() {
        // STR w1, [x0] to an unmapped IPA 0x0900_0000 (the PL011 of QEMU virt):
        // EC 0x24, IL, ISV, SAS = word, SRT = 1, WnR, DFSC = translation fault level 3.
        let esr = 0x9381_0047;
        let raw = sync(esr, 0xffff_0000_0900_0004, 0x0009_0000);
        let ExitReason::DataAbortLower(d) = ExitReason::decode(&raw) else {
            panic!("not a data abort")
        };
        assert_eq!(d.ipa, Ipa(0x0900_0004));
        assert_eq!(d.far, 0xffff_0000_0900_0004);
        assert!(d.far_valid);
        assert!(d.wnr);
        assert!(!d.s1ptw);
        assert_eq!(d.fsc, FaultStatus::Translation { level: 3 });
        assert_eq!(
            d.access,
            Some(DataAccess {
                sas: AccessSize::Word,
                sse: false,
                srt: 1,
                sf: false,
                ar: false
            })
        );
    }

    #[test]
    fn data_abort_without_syndrome_read_permission_and_s1ptw() {
        // LDP (no ISV) read, permission fault level 2, on a stage-1 walk.
        let esr = (0x24u64 << 26) | ESR_IL | (1 << 7) | 0x0e;
        let ExitReason::DataAbortLower(d) = ExitReason::decode(&sync(esr, 0x1234_5678, 0x40_0000))
        else {
            panic!("not a data abort")
        };
        assert_eq!(d.access, None);
        assert!(!d.wnr);
        assert!(d.s1ptw);
        assert_eq!(d.fsc, FaultStatus::Permission { level: 2 });
        assert_eq!(d.ipa, Ipa(0x4000_0678));
        // 64-bit sign-extending load into x30 with acquire: SAS 3, SSE, SRT 30, SF, AR.
        let iss = (1 << 24) | (3 << 22) | (1 << 21) | (30 << 16) | (1 << 15) | (1 << 14) | 0x0b;
        let ExitReason::DataAbortLower(d) =
            ExitReason::decode(&sync((0x24u64 << 26) | ESR_IL | iss, 0, 0))
        else {
            panic!("not a data abort")
        };
        assert_eq!(
            d.access,
            Some(DataAccess {
                sas: AccessSize::Double,
                sse: true,
                srt: 30,
                sf: true,
                ar: true
            })
        );
        assert_eq!(d.fsc, FaultStatus::AccessFlag { level: 3 });
    }

    #[test]
    fn instruction_abort_and_fnv() {
        // Instruction fetch from unmapped IPA 0x8000_0000, translation fault level 1, FnV set.
        let esr = (0x20u64 << 26) | ESR_IL | (1 << 10) | 0x05;
        let ExitReason::InstrAbortLower(i) = ExitReason::decode(&sync(esr, 0xdead, 0x0080_0000))
        else {
            panic!("not an instruction abort")
        };
        assert!(!i.far_valid);
        assert_eq!(i.fsc, FaultStatus::Translation { level: 1 });
        assert_eq!(i.ipa.align_down(4096), Ipa(0x8000_0000));
    }

    #[test]
    fn hpfar_ns_bit_is_not_part_of_the_ipa() {
        assert_eq!(fault_ipa((1 << 63) | 0x0040_0000, 0x10), Ipa(0x4000_0010));
        // FEAT_LPA: IPA bits up to 51 come through.
        assert_eq!(fault_ipa(0x0fff_ffff_fff0, 0), Ipa(0x000f_ffff_ffff_f000));
    }

    #[test]
    fn fault_status_codes() {
        let cases = [
            (0x04, FaultStatus::Translation { level: 0 }),
            (0x07, FaultStatus::Translation { level: 3 }),
            (0x2b, FaultStatus::Translation { level: -1 }),
            (0x09, FaultStatus::AccessFlag { level: 1 }),
            (0x0f, FaultStatus::Permission { level: 3 }),
            (0x01, FaultStatus::AddressSize { level: 1 }),
            (0x10, FaultStatus::SyncExternal),
            (0x15, FaultStatus::SyncExternalOnWalk { level: 1 }),
            (0x21, FaultStatus::Alignment),
            (0x30, FaultStatus::TlbConflict),
            (0x3f, FaultStatus::Other(0x3f)),
        ];
        for (code, want) in cases {
            assert_eq!(FaultStatus::decode(code), want, "code {code:#x}");
        }
        assert!(FaultStatus::Permission { level: 3 }.is_translation_related());
        assert!(!FaultStatus::SyncExternal.is_translation_related());
        assert_eq!(
            std::format!("{}", FaultStatus::Translation { level: 2 }),
            "translation fault, level 2"
        );
    }

    fn acc(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8, read: bool) -> SysRegAccess {
        SysRegAccess {
            op0,
            op1,
            crn,
            crm,
            op2,
            rt: 1,
            read,
        }
    }

    /// Issue 9 finding 8: debug and PMU registers get Xen's answers.
    #[test]
    fn debug_and_pmu_registers_are_answered_as_xen_does() {
        use SysRegAnswer::{RazWi, Undef};
        let a = |op0, op1, crn, crm, op2, read, el0| {
            debug_pmu_answer(&acc(op0, op1, crn, crm, op2, read), el0)
        };
        // The registers of the report: DBGBVR0, DBGWVR0, PMSELR (RAZ/WI),
        // PMEVTYPER0, PMCCFILTR (undefined).
        assert_eq!(
            a(2, 0, 0, 0, 4, false, false),
            Some(RazWi),
            "DBGBVR0_EL1 write"
        );
        assert_eq!(
            a(2, 0, 0, 0, 4, true, false),
            Some(RazWi),
            "DBGBVR0_EL1 read"
        );
        assert_eq!(a(2, 0, 0, 15, 7, true, false), Some(RazWi), "DBGWCR15_EL1");
        assert_eq!(a(2, 0, 0, 0, 6, false, false), Some(RazWi), "DBGWVR0_EL1");
        assert_eq!(
            a(2, 0, 0, 0, 6, true, true),
            Some(Undef),
            "DBGWVR0 from EL0"
        );
        assert_eq!(a(3, 3, 9, 12, 5, false, false), Some(RazWi), "PMSELR_EL0");
        assert_eq!(
            a(3, 3, 9, 12, 5, true, true),
            Some(Undef),
            "PMSELR_EL0 from EL0"
        );
        assert_eq!(
            a(3, 3, 14, 12, 0, false, false),
            Some(Undef),
            "PMEVTYPER0_EL0"
        );
        assert_eq!(a(3, 3, 14, 8, 3, true, false), Some(Undef), "PMEVCNTR3_EL0");
        assert_eq!(
            a(3, 3, 14, 15, 7, true, false),
            Some(Undef),
            "PMCCFILTR_EL0"
        );
        assert_eq!(a(3, 3, 9, 12, 0, true, false), Some(RazWi), "PMCR_EL0");
        assert_eq!(a(3, 3, 9, 13, 0, true, false), Some(RazWi), "PMCCNTR_EL0");
        assert_eq!(a(3, 3, 9, 14, 3, false, false), Some(RazWi), "PMOVSSET_EL0");
        assert_eq!(
            a(3, 0, 9, 14, 1, false, false),
            Some(RazWi),
            "PMINTENSET_EL1"
        );
        // PMUSERENR_EL0: RAZ/WI at EL1, read-only zero at EL0.
        assert_eq!(a(3, 3, 9, 14, 0, false, false), Some(RazWi));
        assert_eq!(a(3, 3, 9, 14, 0, true, true), Some(RazWi));
        assert_eq!(a(3, 3, 9, 14, 0, false, true), Some(Undef));
        // Debug: MDSCR RAZ/WI, MDRAR read-only, OSLAR write-only, OSDLR RAZ/WI,
        // MDCCSR_EL0 read-only at EL0 and EL1, OSLSR/DBGPRCR/DCC undefined.
        assert_eq!(a(2, 0, 0, 2, 2, false, false), Some(RazWi), "MDSCR_EL1");
        assert_eq!(a(2, 0, 1, 0, 0, true, false), Some(RazWi), "MDRAR_EL1 read");
        assert_eq!(
            a(2, 0, 1, 0, 0, false, false),
            Some(Undef),
            "MDRAR_EL1 write"
        );
        assert_eq!(
            a(2, 0, 1, 0, 4, false, false),
            Some(RazWi),
            "OSLAR_EL1 write"
        );
        assert_eq!(a(2, 0, 1, 0, 4, true, false), Some(Undef), "OSLAR_EL1 read");
        assert_eq!(a(2, 0, 1, 3, 4, true, false), Some(RazWi), "OSDLR_EL1");
        assert_eq!(
            a(2, 3, 0, 1, 0, true, true),
            Some(RazWi),
            "MDCCSR_EL0 at EL0"
        );
        assert_eq!(
            a(2, 3, 0, 1, 0, false, false),
            Some(Undef),
            "MDCCSR_EL0 write"
        );
        assert_eq!(a(2, 0, 1, 1, 4, true, false), Some(Undef), "OSLSR_EL1");
        assert_eq!(a(2, 0, 1, 4, 4, true, false), Some(Undef), "DBGPRCR_EL1");
        assert_eq!(a(2, 3, 0, 4, 0, true, false), Some(Undef), "DBGDTR_EL0");
        assert_eq!(
            a(2, 0, 7, 14, 6, true, false),
            Some(Undef),
            "DBGAUTHSTATUS_EL1"
        );
        // Not debug/PMU: left to the other handlers.
        assert_eq!(a(3, 0, 1, 0, 0, true, false), None, "SCTLR_EL1");
        assert_eq!(a(3, 0, 12, 11, 5, false, false), None, "ICC_SGI1R_EL1");
        assert_eq!(a(3, 0, 0, 5, 0, true, false), None, "ID_AA64DFR0_EL1");
        assert_eq!(a(3, 3, 14, 0, 1, true, false), None, "CNTPCT_EL0");
    }

    #[test]
    fn mdcr_el2_traps_debug_and_pmu_and_keeps_hpmn() {
        let base = mdcr::TDRA | mdcr::TDOSA | mdcr::TDA | mdcr::TPM | mdcr::TPMCR;
        assert_eq!(mdcr_el2_guest(0, 0), base);
        // HPMN kept; TDE, HPME, E2PB and anything else firmware left cleared.
        assert_eq!(mdcr_el2_guest(!0x1f | 6, 0), base | 6);
        assert_eq!(mdcr_el2_guest(mdcr::TDE | (1 << 7), 0) & mdcr::TDE, 0);
        // SPE and trace filter traps only where the CPU has them.
        assert_eq!(mdcr_el2_guest(0, 1 << 32), base | mdcr::TPMS);
        assert_eq!(mdcr_el2_guest(0, 1 << 40), base | mdcr::TTRF);
        assert_eq!(mdcr_el2_guest(0, 1 << 32) & mdcr::E2PB, 0);
    }
}
