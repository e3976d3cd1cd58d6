//! hv's own EL2 stage-1 identity map (EL2&0 regime, `TTBR0_EL2`, 4 KiB
//! granule, 48-bit VA, 4 levels). Built once by the boot CPU with the MMU
//! off from a static pool of tables in `.bss`; every CPU uses the same tables.

use super::sysreg::read_sysreg;
use core::cell::UnsafeCell;

/// Tables in the static pool (enough for a few RAM ranges and devices with 4 KiB edges).
const POOL: usize = 32;

/// `MAIR_EL2`: attr0 Device-nGnRE, attr1 Normal WB RA/WA (inner and outer), attr2 Normal NC.
pub const MAIR: u64 = 0x04 | (0xff << 8) | (0x44 << 16);
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const PA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Leaf attributes of RAM: Normal WB, inner shareable, EL2 RW + executable, no EL0 access.
pub const RAM: u64 = ATTR_NORMAL | SH_INNER | AF | UXN;
/// Leaf attributes of MMIO: Device-nGnRE, never executable.
pub const DEVICE: u64 = ATTR_DEVICE | AF | UXN | PXN;

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

/// The pool ran out.
#[derive(Debug, Clone, Copy)]
pub struct OutOfTables;

/// Builds the identity map. Only one exists, on the boot CPU, before the MMU is on.
pub struct Builder {
    next: usize,
}

impl Builder {
    /// Start from an empty root table.
    ///
    /// # Safety
    /// Only once, on the boot CPU, before the MMU is on and before other CPUs run.
    #[must_use]
    pub unsafe fn new() -> Self {
        Self { next: 1 }
    }

    fn table(&self, i: usize) -> *mut u64 {
        TABLES
            .0
            .get()
            .cast::<[u64; 512]>()
            .wrapping_add(i)
            .cast::<u64>()
    }

    fn alloc(&mut self) -> Result<*mut u64, OutOfTables> {
        if self.next >= POOL {
            return Err(OutOfTables);
        }
        self.next += 1;
        Ok(self.table(self.next - 1))
    }

    /// Identity-map `[start, end)` (widened to 4 KiB pages) with leaf `attrs`.
    /// Ranges already mapped keep their first mapping.
    ///
    /// # Errors
    /// [`OutOfTables`] if the static pool is exhausted.
    pub fn map(&mut self, start: u64, end: u64, attrs: u64) -> Result<(), OutOfTables> {
        let start = start & !0xfff;
        let end = end.div_ceil(0x1000).saturating_mul(0x1000).min(1 << 48);
        if start >= end {
            return Ok(());
        }
        self.map_level(self.table(0), 0, start, end, attrs)
    }

    fn map_level(
        &mut self,
        table: *mut u64,
        level: u32,
        start: u64,
        end: u64,
        attrs: u64,
    ) -> Result<(), OutOfTables> {
        let shift = 39 - 9 * level;
        let block = 1u64 << shift;
        let mut addr = start;
        while addr < end {
            let idx = ((addr >> shift) & 511) as usize;
            let block_end = (addr & !(block - 1)) + block;
            let chunk_end = end.min(block_end);
            // SAFETY: idx < 512 and `table` is one of the pool's tables; no one
            // else accesses the pool now (Builder::new's contract).
            let entry = unsafe { table.add(idx) };
            // SAFETY: as above.
            let cur = unsafe { entry.read_volatile() };
            if level >= 1 && addr & (block - 1) == 0 && chunk_end == block_end {
                if cur & 1 == 0 {
                    let ty = if level == 3 { 0b11 } else { 0b01 };
                    // SAFETY: as above.
                    unsafe { entry.write_volatile(addr | attrs | ty) };
                }
            } else if level < 3 {
                let next = if cur & 0b11 == 0b11 {
                    (cur & PA_MASK) as *mut u64
                } else if cur & 1 == 0 {
                    let t = self.alloc()?;
                    // SAFETY: as above; a table descriptor points at a zeroed pool table.
                    unsafe { entry.write_volatile(t as u64 | 0b11) };
                    t
                } else {
                    addr = chunk_end; // already a block: keep the first mapping
                    continue;
                };
                self.map_level(next, level + 1, addr, chunk_end, attrs)?;
            }
            addr = chunk_end;
        }
        Ok(())
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
        let cfg = [MAIR, tcr, self.table(0) as u64, SCTLR_ON];
        // SAFETY: single writer before other CPUs run (MmuConfig's Sync argument).
        unsafe { HV_MMU_CONFIG.0.get().write_volatile(cfg) };
        cfg
    }
}
