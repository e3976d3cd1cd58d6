//! hv's own stage-1 identity map, as pure table construction (host-tested);
//! `arch::aarch64::mmu` runs it on a static pool of tables with the MMU off.
//!
//! VMSAv8-64, 4 KiB granule, 48-bit VA, 4 levels (level 0 has no blocks):
//! leaves are 1 GiB / 2 MiB blocks or 4 KiB pages, the largest that
//! alignment allows.

/// `MAIR_EL2`: attr0 Device-nGnRE, attr1 Normal WB RA/WA (inner and outer), attr2 Normal NC.
pub const MAIR: u64 = 0x04 | (0xff << 8) | (0x44 << 16);
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
/// Output-address bits of a descriptor.
pub const PA_MASK: u64 = 0x0000_ffff_ffff_f000;
/// Leaf attributes of RAM: Normal WB, inner shareable, EL2 RW + executable, no EL0 access.
pub const RAM: u64 = ATTR_NORMAL | SH_INNER | AF | UXN;
/// Leaf attributes of MMIO: Device-nGnRE, never executable.
pub const DEVICE: u64 = ATTR_DEVICE | AF | UXN | PXN;
/// Leaf attribute bits compared by [`translate`].
pub const ATTR_MASK: u64 = 0x7 << 2 | SH_INNER | AF | PXN | UXN;

/// The table pool ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfTables;

/// Builds an identity map in `tables` (table 0 is the root). `base_pa` is
/// the physical address of `tables[0]`; table `i` is at `base_pa + i * 4096`.
pub struct IdMapBuilder<'t> {
    tables: &'t mut [[u64; 512]],
    base_pa: u64,
    next: usize,
}

impl<'t> IdMapBuilder<'t> {
    /// Start with an empty root in `tables[0]` (all tables must be zero).
    #[must_use]
    pub fn new(tables: &'t mut [[u64; 512]], base_pa: u64) -> Self {
        Self {
            tables,
            base_pa,
            next: 1,
        }
    }

    /// Number of tables used so far.
    #[must_use]
    pub fn tables_used(&self) -> usize {
        self.next
    }

    /// Identity-map `[start, end)` (widened to 4 KiB pages, capped at 2^48)
    /// with leaf `attrs`. Ranges already mapped keep their first mapping.
    ///
    /// # Errors
    /// [`OutOfTables`] if the pool is exhausted (what was mapped stays mapped).
    pub fn map(&mut self, start: u64, end: u64, attrs: u64) -> Result<(), OutOfTables> {
        let start = start & !0xfff;
        let end = end.div_ceil(0x1000).saturating_mul(0x1000).min(1 << 48);
        if start >= end {
            return Ok(());
        }
        self.map_level(0, 0, start, end, attrs)
    }

    fn map_level(
        &mut self,
        table: usize,
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
            let cur = self.tables[table][idx];
            if level >= 1 && addr & (block - 1) == 0 && chunk_end == block_end {
                if cur & 1 == 0 {
                    let ty = if level == 3 { 0b11 } else { 0b01 };
                    self.tables[table][idx] = addr | attrs | ty;
                }
            } else if level < 3 {
                let next = if cur & 0b11 == 0b11 {
                    ((cur & PA_MASK) - self.base_pa) as usize / 4096
                } else if cur & 1 == 0 {
                    if self.next >= self.tables.len() {
                        return Err(OutOfTables);
                    }
                    let t = self.next;
                    self.next += 1;
                    self.tables[table][idx] = (self.base_pa + t as u64 * 4096) | 0b11;
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
}

/// Walk the map in `tables` (root `tables[0]` at `base_pa`) for `va`: the
/// output address and leaf attributes ([`ATTR_MASK`] bits), and the level
/// of the leaf.
#[must_use]
pub fn translate(tables: &[[u64; 512]], base_pa: u64, va: u64) -> Option<(u64, u64, u32)> {
    let mut t = 0usize;
    for level in 0..4u32 {
        let shift = 39 - 9 * level;
        let d = *tables.get(t)?.get(((va >> shift) & 511) as usize)?;
        if d & 1 == 0 {
            return None;
        }
        let is_table = d & 0b10 != 0 && level < 3;
        if !is_table {
            let off = va & ((1u64 << shift) - 1);
            return Some((
                (d & PA_MASK & !((1u64 << shift) - 1)) | off,
                d & ATTR_MASK,
                level,
            ));
        }
        t = ((d & PA_MASK) - base_pa) as usize / 4096;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    const BASE: u64 = 0x4010_0000;
    const GIB: u64 = 1 << 30;

    #[test]
    fn qemu_virt_layout_uses_big_blocks_and_4k_edges() {
        let mut t = vec![[0u64; 512]; 32];
        let mut b = IdMapBuilder::new(&mut t, BASE);
        b.map(0x4000_0000, 0x4000_0000 + GIB, RAM).unwrap(); // 1 GiB of RAM
        b.map(0x0900_0000, 0x0900_1000, DEVICE).unwrap(); // PL011
        b.map(0x0800_0000, 0x0801_0000, DEVICE).unwrap(); // GICD
        b.map(0x080a_0000, 0x0900_0000, DEVICE).unwrap(); // GICR
        let used = b.tables_used();
        assert!(used <= 8, "{used} tables");
        // RAM: one 1 GiB block at level 1.
        assert_eq!(
            translate(&t, BASE, 0x4123_4567),
            Some((0x4123_4567, RAM, 1))
        );
        // The UART: a 4 KiB device page, and nothing mapped right after it.
        assert_eq!(
            translate(&t, BASE, 0x0900_0ff8),
            Some((0x0900_0ff8, DEVICE, 3))
        );
        assert_eq!(translate(&t, BASE, 0x0900_1000), None);
        // GICR uses 2 MiB blocks where aligned.
        assert_eq!(translate(&t, BASE, 0x0820_0000).map(|x| x.2), Some(2));
        assert_eq!(translate(&t, BASE, 0x080a_0000).map(|x| x.1), Some(DEVICE));
        assert_eq!(translate(&t, BASE, 0x0), None);
        assert_eq!(translate(&t, BASE, 0x8000_0000), None);
    }

    #[test]
    fn holes_stay_unmapped_and_first_mapping_wins() {
        let mut t = vec![[0u64; 512]; 32];
        let mut b = IdMapBuilder::new(&mut t, BASE);
        // RAM with a guard page hole at 0x4030_0000.
        b.map(0x4000_0000, 0x4030_0000, RAM).unwrap();
        b.map(0x4030_1000, 0x4100_0000, RAM).unwrap();
        b.map(0x4000_0000, 0x4100_0000, DEVICE).unwrap(); // overlapping: ignored
        assert_eq!(
            translate(&t, BASE, 0x402f_fff0),
            Some((0x402f_fff0, RAM, 3))
        );
        assert_eq!(translate(&t, BASE, 0x4030_0000), None, "guard page");
        assert_eq!(translate(&t, BASE, 0x4030_1000).map(|x| x.1), Some(RAM));
        assert_eq!(
            translate(&t, BASE, 0x4000_0000),
            Some((0x4000_0000, RAM, 2))
        );
    }

    #[test]
    fn out_of_tables_is_an_error() {
        let mut t = vec![[0u64; 512]; 4];
        let mut b = IdMapBuilder::new(&mut t, BASE);
        // A 4 KiB page needs a level 1, 2 and 3 table below the root ...
        assert_eq!(b.map(0x1000, 0x2000, RAM), Ok(()));
        assert_eq!(b.tables_used(), 4);
        // ... and one under another level-0 entry needs three more.
        assert_eq!(b.map(0x80_0000_1000, 0x80_0000_2000, RAM), Err(OutOfTables));
        assert!(translate(&t, BASE, 0x1000).is_some());
    }

    #[test]
    fn unaligned_ranges_are_widened_to_pages() {
        let mut t = vec![[0u64; 512]; 8];
        let mut b = IdMapBuilder::new(&mut t, BASE);
        b.map(0x4800_0123, 0x4800_1001, RAM).unwrap();
        assert!(translate(&t, BASE, 0x4800_0000).is_some());
        assert!(translate(&t, BASE, 0x4800_1fff).is_some());
        assert!(translate(&t, BASE, 0x4800_2000).is_none());
    }
}
