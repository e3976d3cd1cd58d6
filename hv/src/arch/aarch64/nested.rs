//! Gathering `nested-detect`'s evidence at EL2 (the decision itself is portable).

use super::sysreg::read_sysreg;
use crate::bootinfo::{BootInfo, PsciConduit};
use nested_detect::{
    smccc_version_from, uid_from_smccc, uid_query_allowed, DtHints, Evidence, Timing,
    SMCCC_VERSION, VENDOR_HYP_CALL_UID,
};

/// Iterations of each timing loop.
const ITERS: u64 = 256;

fn counter() -> u64 {
    super::sysreg::isb(); // read the counter after what precedes, not early
    read_sysreg!("cntvct_el0")
}

/// Counter ticks for `ITERS` reads of ID_AA64MMFR0_EL1 (trapped to L0 by
/// HCR_EL2.TID3 when hv is a guest hypervisor under KVM).
fn time_idreg() -> u64 {
    let t0 = counter();
    for _ in 0..ITERS {
        core::hint::black_box(read_sysreg!("id_aa64mmfr0_el1"));
    }
    counter().wrapping_sub(t0)
}

/// Counter ticks for `ITERS` reads of CurrentEL (never trapped).
fn time_local() -> u64 {
    let t0 = counter();
    for _ in 0..ITERS {
        core::hint::black_box(read_sysreg!("CurrentEL"));
    }
    counter().wrapping_sub(t0)
}

/// One SMCCC fast call through `SMC #0`: x0 = `function`, no arguments; x0..x3 back.
fn smc(function: u32) -> (u64, u64, u64, u64) {
    let (mut x0, x1, x2, x3): (u64, u64, u64, u64);
    x0 = u64::from(function);
    // SAFETY: an SMCCC fast call through the DTB's SMC conduit (the callers check it): it
    // takes values only and may clobber x0..x17 (declared); no memory hv owns is touched.
    unsafe {
        core::arch::asm!("smc #0",
            inout("x0") x0, out("x1") x1, out("x2") x2, out("x3") x3,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
            out("x15") _, out("x16") _, out("x17") _, options(nostack));
    }
    (x0, x1, x2, x3)
}

/// SMCCC_VERSION and, for SMCCC 1.1 or later, the vendor hypervisor "Call UID" query,
/// both through `SMC #0`. Only made when the DTB names the SMC conduit for PSCI (so
/// something at a higher EL answers SMCs; without EL3 firmware SMC is undefined).
fn smccc(conduit: Option<PsciConduit>) -> (Option<u32>, Option<[u32; 4]>) {
    if conduit != Some(PsciConduit::Smc) {
        return (None, None);
    }
    let version = smccc_version_from(smc(SMCCC_VERSION).0);
    if !uid_query_allowed(version) {
        return (version, None);
    }
    let (x0, x1, x2, x3) = smc(VENDOR_HYP_CALL_UID);
    (version, uid_from_smccc(x0, x1, x2, x3))
}

/// Everything `nested_detect::decide` looks at. Call before the CPU's
/// `HCR_EL2` is set up for guests.
#[must_use]
pub fn gather(info: &BootInfo<'_>) -> Evidence {
    let cntfrq = read_sysreg!("cntfrq_el0");
    // Warm up (first-touch costs), then measure.
    let _ = (time_idreg(), time_local());
    let (trapped, local) = (time_idreg(), time_local());
    let (smccc_version, smccc_hyp_uid) = smccc(info.psci);
    Evidence {
        smccc_hyp_uid,
        smccc_version,
        midr: read_sysreg!("midr_el1"),
        mmfr0: read_sysreg!("id_aa64mmfr0_el1"),
        mmfr1: read_sysreg!("id_aa64mmfr1_el1"),
        mmfr2: read_sysreg!("id_aa64mmfr2_el1"),
        mmfr4: read_sysreg!("S3_0_C0_C7_4"), // ID_AA64MMFR4_EL1
        dt: DtHints::from_root(info.root_compatible, info.hypervisor_node),
        timing: Timing::from_ticks(trapped, local, ITERS, cntfrq),
    }
}
