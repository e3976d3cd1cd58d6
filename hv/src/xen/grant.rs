//! The grant table of a domain (`grant_table_op`, hypercall 20), version 1.
//!
//! Sources: Xen `xen/include/public/grant_table.h` (`GNTTABOP_*`, the
//! argument structs, `GNTST_*`), `xen/include/public/arch-arm.h`
//! (`GUEST_GNTTAB_BASE` 0x38000000, `GUEST_GNTTAB_SIZE` 0x01000000), Xen
//! `xen/common/grant_table.c` (query_size / setup_table / set_version
//! semantics); Linux `drivers/xen/grant-table.c` (`gnttab_max_grant_frames`
//! uses query_size, `gnttab_map` maps frame `i` with `XENMEM_add_to_physmap`
//! space `XENMAPSPACE_grant_table` idx `i` at a gfn of the DT's grant region)
//! and `arch/arm/xen/enlighten.c` (the region is `/hypervisor`'s `reg`).
//!
//! hv keeps the shared frames (zeroed, hv-owned pool frames) and where the
//! guest mapped them; nothing maps grants yet (no backends), so the table's
//! content is the guest's business.

use alloc::vec::Vec;

use pv_tlb::PhysAddr;

use super::Errno;

/// `GUEST_GNTTAB_BASE` (public/arch-arm.h).
pub const GUEST_GNTTAB_BASE: u64 = 0x3800_0000;
/// `GUEST_GNTTAB_SIZE` (public/arch-arm.h).
pub const GUEST_GNTTAB_SIZE: u64 = 0x0100_0000;
/// Grant frames a domain may have (Xen's default for domUs is larger; Linux
/// only needs a few without backends).
pub const MAX_GRANT_FRAMES: u32 = 4;

/// `GNTTABOP_*` (public/grant_table.h).
pub mod op {
    #![allow(missing_docs)]
    pub const MAP_GRANT_REF: u32 = 0;
    pub const UNMAP_GRANT_REF: u32 = 1;
    pub const SETUP_TABLE: u32 = 2;
    pub const DUMP_TABLE: u32 = 3;
    pub const TRANSFER: u32 = 4;
    pub const COPY: u32 = 5;
    pub const QUERY_SIZE: u32 = 6;
    pub const UNMAP_AND_REPLACE: u32 = 7;
    pub const SET_VERSION: u32 = 8;
    pub const GET_STATUS_FRAMES: u32 = 9;
    pub const GET_VERSION: u32 = 10;
}

/// `GNTST_okay`.
pub const GNTST_OKAY: i16 = 0;
/// `GNTST_general_error`.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// `GNTST_bad_domain`.
pub const GNTST_BAD_DOMAIN: i16 = -2;

/// `sizeof(struct gnttab_query_size)`: dom u16 @0, nr_frames u32 @4, max_nr_frames u32 @8, status i16 @12.
pub const QUERY_SIZE_LEN: usize = 16;
/// `sizeof(struct gnttab_setup_table)` on arm64: dom u16 @0, nr_frames u32 @4,
/// status i16 @8, frame_list handle (u64) @16.
pub const SETUP_TABLE_LEN: usize = 24;
/// `INVALID_GFN` as written into a setup_table frame list.
pub const INVALID_GFN: u64 = !0;

/// One domain's grant table.
#[derive(Debug, Default)]
pub struct GrantTable {
    frames: Vec<PhysAddr>,
    mapped_at: Vec<Option<u64>>,
    nr_frames: u32,
}

impl GrantTable {
    /// A v1 table backed by `frames` (zeroed host frames, at most
    /// [`MAX_GRANT_FRAMES`] are used).
    #[must_use]
    pub fn new(frames: Vec<PhysAddr>) -> Self {
        let n = frames.len();
        Self {
            frames,
            mapped_at: alloc::vec![None; n],
            nr_frames: 0,
        }
    }

    /// Frames in use (`nr_frames`).
    #[must_use]
    pub fn nr_frames(&self) -> u32 {
        self.nr_frames
    }

    /// Frames the table may grow to (`max_nr_frames`).
    #[must_use]
    pub fn max_frames(&self) -> u32 {
        self.frames.len() as u32
    }

    /// The host frames (for teardown).
    #[must_use]
    pub fn frames(&self) -> &[PhysAddr] {
        &self.frames
    }

    /// Frame `idx` for `XENMAPSPACE_grant_table`, to be mapped at `gfn`:
    /// the table grows to cover it (Xen's `gnttab_map_frame`).
    ///
    /// # Errors
    /// `-EINVAL` for an index past the maximum (or a status frame, v2 only).
    pub fn map_frame(&mut self, idx: u64, gfn: u64) -> Result<PhysAddr, Errno> {
        // XENMAPSPACE_grant_table: bit 31 selects status frames (v2 only).
        if idx & (1 << 31) != 0 {
            return Err(Errno::EINVAL);
        }
        let i = usize::try_from(idx).map_err(|_| Errno::EINVAL)?;
        let pa = *self.frames.get(i).ok_or(Errno::EINVAL)?;
        self.mapped_at[i] = Some(gfn);
        self.nr_frames = self.nr_frames.max(i as u32 + 1);
        Ok(pa)
    }

    /// Frame `idx` for `XENMEM_acquire_resource` (another domain maps it):
    /// the table grows to cover it (Xen's `gnttab_acquire_resource`);
    /// `None` past the maximum.
    pub fn acquire_frame(&mut self, idx: u64) -> Option<PhysAddr> {
        let i = usize::try_from(idx).ok()?;
        let pa = *self.frames.get(i)?;
        self.nr_frames = self.nr_frames.max(i as u32 + 1);
        Some(pa)
    }

    /// Frame `idx`'s host address without mapping it.
    #[must_use]
    pub fn frame(&self, idx: u64) -> Option<PhysAddr> {
        usize::try_from(idx)
            .ok()
            .and_then(|i| self.frames.get(i).copied())
    }

    /// `GNTTABOP_query_size`: `(nr_frames, max_nr_frames)`.
    #[must_use]
    pub fn query_size(&self) -> (u32, u32) {
        (self.nr_frames, self.max_frames())
    }

    /// `GNTTABOP_setup_table` for `nr` frames: the table grows to `nr` and the
    /// gfn of each frame is returned (where the guest mapped it, else
    /// `INVALID_GFN`: on Arm a translated guest maps frames itself).
    ///
    /// # Errors
    /// `GNTST_general_error` if `nr` exceeds the maximum.
    pub fn setup_table(&mut self, nr: u32) -> Result<Vec<u64>, i16> {
        if nr > self.max_frames() {
            return Err(GNTST_GENERAL_ERROR);
        }
        self.nr_frames = self.nr_frames.max(nr);
        Ok(self.mapped_at[..nr as usize]
            .iter()
            .map(|g| g.unwrap_or(INVALID_GFN))
            .collect())
    }

    /// `GNTTABOP_set_version`: only version 1 exists here.
    ///
    /// # Errors
    /// `-EOPNOTSUPP` for version 2 (the guest keeps v1), `-EINVAL` otherwise.
    pub fn set_version(&self, version: u32) -> Result<(), Errno> {
        match version {
            0 | 1 => Ok(()),
            2 => Err(Errno::EOPNOTSUPP),
            _ => Err(Errno::EINVAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_grow_as_the_guest_maps_them() {
        let f = [0x8000_0000u64, 0x8000_1000, 0x8000_2000, 0x8000_3000].map(PhysAddr);
        let mut g = GrantTable::new(f.to_vec());
        assert_eq!(g.query_size(), (0, 4));
        // Linux maps frame 0 at the first gfn of the DT region.
        let gfn = GUEST_GNTTAB_BASE >> 12;
        assert_eq!(g.map_frame(0, gfn), Ok(f[0]));
        assert_eq!(g.query_size(), (1, 4));
        assert_eq!(g.map_frame(2, gfn + 2), Ok(f[2]));
        assert_eq!(g.query_size(), (3, 4));
        assert_eq!(g.map_frame(4, gfn + 4), Err(Errno::EINVAL));
        assert_eq!(
            g.map_frame(1 << 31, gfn),
            Err(Errno::EINVAL),
            "status frames are v2"
        );
        assert_eq!(
            g.setup_table(4),
            Ok(alloc::vec![gfn, INVALID_GFN, gfn + 2, INVALID_GFN])
        );
        assert_eq!(g.nr_frames(), 4);
        assert_eq!(g.setup_table(5), Err(GNTST_GENERAL_ERROR));
        assert_eq!(g.set_version(1), Ok(()));
        assert_eq!(g.set_version(2), Err(Errno::EOPNOTSUPP));
        assert_eq!(g.set_version(3), Err(Errno::EINVAL));
    }
}
