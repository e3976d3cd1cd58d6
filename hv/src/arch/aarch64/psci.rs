//! PSCI calls through the DTB's conduit (SMC Calling Convention).

use crate::bootinfo::PsciConduit;

// Function ids (Arm DEN0022) come from the portable guest-PSCI module: one table.
pub use crate::psci::{CPU_ON_64, SYSTEM_OFF, VERSION as PSCI_VERSION};

/// Make a PSCI call; returns x0.
pub fn call(conduit: PsciConduit, fid: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = u64::from(fid);
    match conduit {
        // SAFETY: SMCCC: the callee may clobber x0..x17 (declared) and touches
        // no memory hv owns; PSCI functions hv calls only take values.
        PsciConduit::Smc => unsafe {
            core::arch::asm!("smc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                out("x15") _, out("x16") _, out("x17") _, options(nostack));
        },
        // SAFETY: as above; at EL2 `HVC` reaches the hypervisor hv runs under
        // (the DTB says so by naming the hvc conduit).
        PsciConduit::Hvc => unsafe {
            core::arch::asm!("hvc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                out("x15") _, out("x16") _, out("x17") _, options(nostack));
        },
    }
    x0 as i64
}

/// `SYSTEM_OFF`, then park if the firmware returns.
pub fn system_off(conduit: Option<PsciConduit>) -> ! {
    if let Some(c) = conduit {
        call(c, SYSTEM_OFF, 0, 0, 0);
    }
    // SAFETY: parking masks interrupts and loops on WFE; it touches no memory.
    unsafe { super::head::hv_park() }
}
