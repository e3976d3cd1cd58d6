//! hv's own EL2 stage-1 identity map (EL2&0 regime, `TTBR0_EL2`, 4 KiB
//! granule, 48-bit VA, 4 levels). The tables are built by
//! [`crate::mm::idmap`] (host-tested) once by the boot CPU with the MMU off,
//! in a static pool in `.bss`; every CPU uses the same tables.

use super::sysreg::read_sysreg;
use crate::mm::idmap::{IdMapBuilder, MAIR};
pub use crate::mm::idmap::{OutOfTables, DEVICE, RAM};
use core::cell::UnsafeCell;

/// Tables in the static pool (a few RAM ranges, devices, and the 4 KiB
/// edges of each CPU's stack guard page).
const POOL: usize = 64;

/// `SCTLR_EL2` with the MMU, both caches and SP alignment checks on (RES1 bits of
/// the E2H = 1 layout included).
pub const SCTLR_ON: u64 = 0x30c5_0830 | 1 | (1 << 2) | (1 << 3) | (1 << 12);

#[repr(C, align(4096))]
struct Pool(UnsafeCell<[[u64; 512]; POOL]>);

// SAFETY: the pool is written only by the boot CPU, with the MMU off, before
// any other CPU is started; afterwards it is only read by table walkers.
unsafe impl Sync for Pool {}

static TABLES: Pool = Pool(UnsafeCell::new([[0; 512]; POOL]));

/// `[MAIR, TCR, TTBR0, SCTLR]` for `hv_mmu_enable` and the secondary entry.
#[repr(C, align(64))]
pub struct MmuConfig(pub UnsafeCell<[u64; 4]>);

// SAFETY: written once by the boot CPU with the MMU off (so it is in memory
// when secondaries read it with their MMU off) and never again.
unsafe impl Sync for MmuConfig {}

/// Read by the secondary entry code before its MMU is on.
pub static HV_MMU_CONFIG: MmuConfig = MmuConfig(UnsafeCell::new([0; 4]));

/// Builds the identity map. Only one exists, on the boot CPU, before the MMU is on.
pub struct Builder {
    inner: IdMapBuilder<'static>,
}

impl Builder {
    /// Start from an empty root table.
    ///
    /// # Safety
    /// Only once, on the boot CPU, before the MMU is on and before other CPUs run.
    #[must_use]
    pub unsafe fn new() -> Self {
        let base = TABLES.0.get();
        // SAFETY: per the contract this is the only reference to the pool
        // for as long as the builder lives (the walkers only use it later).
        let tables: &'static mut [[u64; 512]; POOL] = unsafe { &mut *base };
        Self {
            inner: IdMapBuilder::new(tables, base as u64),
        }
    }

    /// Identity-map `[start, end)` (widened to 4 KiB pages) with leaf `attrs`.
    /// Ranges already mapped keep their first mapping.
    ///
    /// # Errors
    /// [`OutOfTables`] if the static pool is exhausted.
    pub fn map(&mut self, start: u64, end: u64, attrs: u64) -> Result<(), OutOfTables> {
        self.inner.map(start, end, attrs)
    }

    /// The register values that turn this map on, also stored in
    /// [`HV_MMU_CONFIG`] for the secondary CPUs.
    pub fn finish(self) -> [u64; 4] {
        let parange = read_sysreg!("id_aa64mmfr0_el1") & 0xf;
        let ips = parange.min(5); // 48 bits at most: hv's map uses 48-bit VAs
        let tcr = 16                // T0SZ: 48-bit VA
            | (1 << 8)              // IRGN0: WB RA WA
            | (1 << 10)             // ORGN0: WB RA WA
            | (3 << 12)             // SH0: inner shareable
            | (1 << 23)             // EPD1: no TTBR1_EL2 walks
            | (2 << 30)             // TG1: 4 KiB (unused, but a valid encoding)
            | (ips << 32); // IPS
        let cfg = [MAIR, tcr, TABLES.0.get() as u64, SCTLR_ON];
        // SAFETY: single writer before other CPUs run (MmuConfig's Sync argument).
        unsafe { HV_MMU_CONFIG.0.get().write_volatile(cfg) };
        cfg
    }
}
