//! Per-CPU data, reached through `TPIDR_EL2`.

use super::ExitRecord;
use crate::arch::{FpState, GuestGprs};
use crate::bootinfo::MAX_CPUS;
use core::cell::UnsafeCell;

/// One CPU's data. The assembly in `head.rs` uses `gprs`, `exit` and `fp` by offset.
#[repr(C, align(16))]
pub struct PerCpu {
    /// Guest registers of the running `run_vcpu` call.
    pub gprs: *mut GuestGprs,
    /// Where the running `run_vcpu` call wants its exit record.
    pub exit: *mut ExitRecord,
    /// hv's CPU index.
    pub index: u64,
    /// This CPU's `MPIDR_EL1` affinity.
    pub mpidr: u64,
    /// FP/SIMD state of the vCPU loaded on this CPU (saved at every exit).
    pub fp: FpState,
}

struct PerCpuArray(UnsafeCell<[PerCpu; MAX_CPUS]>);

// SAFETY: entry `i` is only touched by CPU `i` (through TPIDR_EL2), except
// that the boot CPU fills it in before starting CPU `i` with PSCI CPU_ON,
// which orders those writes before anything CPU `i` does.
unsafe impl Sync for PerCpuArray {}

const EMPTY: PerCpu = PerCpu {
    gprs: core::ptr::null_mut(),
    exit: core::ptr::null_mut(),
    index: 0,
    mpidr: 0,
    fp: FpState {
        v: [0; 32],
        fpsr: 0,
        fpcr: 0,
    },
};

static PERCPU: PerCpuArray = PerCpuArray(UnsafeCell::new([EMPTY; MAX_CPUS]));

/// Fill in CPU `index`'s entry (before that CPU runs) and return its address.
///
/// # Safety
/// CPU `index` must not be running yet, or be the caller.
pub unsafe fn prepare(index: usize, mpidr: u64) -> *mut PerCpu {
    assert!(index < MAX_CPUS);
    // SAFETY: in bounds (checked above) of the static array.
    let p = unsafe { PERCPU.0.get().cast::<PerCpu>().add(index) };
    // SAFETY: per the contract no other CPU uses the entry now.
    unsafe { (*p).index = index as u64 };
    // SAFETY: as above.
    unsafe { (*p).mpidr = mpidr };
    p
}

/// This CPU's entry.
#[must_use]
pub fn this() -> *mut PerCpu {
    super::sysreg::read_sysreg!("tpidr_el2") as *mut PerCpu
}

/// This CPU's index (0 before TPIDR_EL2 is set up).
#[must_use]
pub fn index() -> usize {
    let p = this();
    if p.is_null() {
        0
    } else {
        // SAFETY: TPIDR_EL2 is only ever set to an entry of PERCPU, which is 'static.
        unsafe { (*p).index as usize }
    }
}
