//! Per-CPU data, reached through `TPIDR_EL2`, one entry per DTB CPU,
//! allocated on hv's heap at boot ([`init`]).

use super::ExitRecord;
use crate::arch::{FpState, GuestGprs};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// One CPU's data. The assembly in `head.rs` uses `gprs`, `exit`, `fp` and
/// `stack_top` by offset.
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
    /// The top of this CPU's stack (the secondary entry loads `SP` from it).
    pub stack_top: u64,
    /// FP/SIMD state of the vCPU loaded on this CPU (saved at every exit).
    pub fp: FpState,
}

/// The entries (`COUNT` of them), allocated once by [`init`] and never freed.
static BASE: AtomicPtr<PerCpu> = AtomicPtr::new(core::ptr::null_mut());
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Allocate `ncpus` entries (boot CPU, once, after the heap exists and
/// before any CPU uses `TPIDR_EL2`).
pub fn init(ncpus: usize) {
    let mut v: Vec<PerCpu> = Vec::with_capacity(ncpus.max(1));
    v.resize_with(ncpus.max(1), || PerCpu {
        gprs: core::ptr::null_mut(),
        exit: core::ptr::null_mut(),
        index: 0,
        mpidr: 0,
        stack_top: 0,
        fp: FpState {
            v: [0; 32],
            fpsr: 0,
            fpcr: 0,
        },
    });
    let n = v.len();
    let p = v.leak().as_mut_ptr();
    COUNT.store(n, Ordering::Release);
    BASE.store(p, Ordering::Release);
}

/// How many entries [`init`] allocated.
#[must_use]
pub fn count() -> usize {
    COUNT.load(Ordering::Acquire)
}

/// Fill in CPU `index`'s entry (before that CPU runs) and return its address.
///
/// # Safety
/// CPU `index` must not be running yet, or be the caller.
pub unsafe fn prepare(index: usize, mpidr: u64, stack_top: u64) -> *mut PerCpu {
    assert!(index < count(), "per-CPU entry {index} not allocated");
    // SAFETY: in bounds (checked above) of the leaked allocation of `count()`
    // entries, which lives for hv's lifetime.
    let p = unsafe { BASE.load(Ordering::Acquire).add(index) };
    // SAFETY: per the contract no other CPU uses the entry now; the boot CPU
    // starts CPU `index` with PSCI CPU_ON afterwards, which orders these
    // writes before anything that CPU does (and it reads them with its MMU
    // on, coherently).
    let e = unsafe { &mut *p };
    e.index = index as u64;
    e.mpidr = mpidr;
    e.stack_top = stack_top;
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
        // SAFETY: TPIDR_EL2 is only ever set to an entry from `prepare`, which is 'static.
        unsafe { (*p).index as usize }
    }
}
