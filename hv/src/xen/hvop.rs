//! The ABI of `hv_op` (hypercall 49, `__HYPERVISOR_arch_1`, unused by Xen
//! on Arm): hv's own privileged operations (DESIGN.md, "hv_op"); the call is
//! `hypercall::hv_op`, the counters `crate::counters`.
//!
//! `HVOP_get_counters` (1) copies `struct hv_counters` (12 little-endian u64,
//! 96 bytes): `tlbi[8]` in `pv_tlb::TlbOpKind::ALL` order, `p2m_ops`,
//! `plans`, `guest_exits`, `hypercalls`. `HVOP_reset_counters` (2) zeroes
//! them. `HVOP_get_resources` (3) copies `struct hv_resources` (8
//! little-endian u64, 64 bytes, [`Resources`]): what hv has handed out right
//! now (free frames, VMIDs, domains, event channels, heap), so a toolstack
//! can check that create/destroy gives everything back. Unprivileged callers
//! get `-EPERM`; other sub-ops `-ENOSYS`.

/// The hypercall number.
pub const HYPERVISOR_HV_OP: u64 = 49;
/// Copy out `struct hv_counters`.
pub const HVOP_GET_COUNTERS: u32 = 1;
/// Zero the counters.
pub const HVOP_RESET_COUNTERS: u32 = 2;
/// `sizeof(struct hv_counters)`.
pub const HV_COUNTERS_LEN: usize = 12 * 8;
/// Copy out `struct hv_resources` ([`Resources`]).
pub const HVOP_GET_RESOURCES: u32 = 3;
/// `sizeof(struct hv_resources)`.
pub const HV_RESOURCES_LEN: usize = 8 * 8;

/// `struct hv_resources`: 8 little-endian u64 in this field order. Values
/// hv cannot know (no heap probe, no frame allocator in host tests) are
/// `u64::MAX`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Resources {
    /// Free frames of the guest page pool (`XEN_SYSCTL_physinfo`'s `free_pages`).
    pub pool_free: u64,
    /// Frames of the guest page pool.
    pub pool_total: u64,
    /// Free frames of hv's own frame allocator (stage-2 tables come from it).
    pub hv_frames_free: u64,
    /// VMIDs allocated to domains.
    pub vmids_in_use: u64,
    /// Domains hv holds (running, shut down or not yet unpaused).
    pub domains: u64,
    /// Event channel ports in use over all domains (port 0 never counts).
    pub evtchns_in_use: u64,
    /// Free bytes of hv's heap.
    pub heap_free: u64,
    /// Guest page-pool frames some domain owns (`pool_total - pool_free`).
    pub pool_used: u64,
}

impl Resources {
    /// The 64 bytes copied to the guest.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HV_RESOURCES_LEN] {
        let v = [
            self.pool_free,
            self.pool_total,
            self.hv_frames_free,
            self.vmids_in_use,
            self.domains,
            self.evtchns_in_use,
            self.heap_free,
            self.pool_used,
        ];
        let mut out = [0u8; HV_RESOURCES_LEN];
        for (chunk, x) in out.chunks_exact_mut(8).zip(v) {
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hv_resources_layout_is_eight_le_u64_in_field_order() {
        let r = Resources {
            pool_free: 1,
            pool_total: 2,
            hv_frames_free: 3,
            vmids_in_use: 4,
            domains: 5,
            evtchns_in_use: 6,
            heap_free: u64::MAX,
            pool_used: 0x0102_0304_0506_0708,
        };
        let b = r.to_bytes();
        assert_eq!(b.len(), 64);
        for (i, want) in [1u64, 2, 3, 4, 5, 6].iter().enumerate() {
            assert_eq!(b[i * 8..i * 8 + 8], want.to_le_bytes(), "field {i}");
        }
        assert_eq!(b[48..56], [0xff; 8]);
        assert_eq!(b[56..64], [8, 7, 6, 5, 4, 3, 2, 1]);
        // hv_counters keeps its 96-byte layout.
        assert_eq!(HV_COUNTERS_LEN, 96);
    }
}
