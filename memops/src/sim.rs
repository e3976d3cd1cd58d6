//! A simulated [`TableMem`] for host tests (of memops and of hv).
//!
//! Frames live in a map keyed by physical address; allocation hands out
//! frames from a deliberately scattered address sequence, can be limited to
//! exercise out-of-memory paths, and every synchronous break-before-make
//! invalidation is recorded so tests can check it happened.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use pv_tlb::InvalidationSet;

use crate::stage2::{TableMem, ENTRIES};
use crate::PhysAddr;

/// Simulated table memory.
#[derive(Debug, Default)]
pub struct SimTableMem {
    frames: BTreeMap<u64, Box<[u64; ENTRIES]>>,
    next: u64,
    /// Remaining allocations allowed (`None` = unlimited).
    pub limit: Option<usize>,
    /// Every `invalidate_now` call, in order.
    pub sync_invalidations: Vec<InvalidationSet>,
    /// The stage-2 root named by each `invalidate_now_for` call, in order.
    pub sync_roots: Vec<PhysAddr>,
    /// Frames freed so far.
    pub freed: usize,
    /// Writes of a non-zero value over a valid entry with a different valid
    /// value that [`crate::is_bbm_required`] forbids (must stay 0).
    pub bbm_violations: usize,
}

impl SimTableMem {
    /// An empty simulated memory.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live (allocated, not freed) table frames.
    #[must_use]
    pub fn live_tables(&self) -> usize {
        self.frames.len()
    }
}

impl TableMem for SimTableMem {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        if let Some(l) = self.limit.as_mut() {
            if *l == 0 {
                return None;
            }
            *l -= 1;
        }
        // Scattered, high addresses: 0x8_0000_0000 + a stride that is not a power of two.
        self.next += 1;
        let pa = 0x8_0000_0000 + self.next * 0x3_5000;
        self.frames.insert(pa, Box::new([0; ENTRIES]));
        Some(PhysAddr(pa))
    }

    fn free_table(&mut self, pa: PhysAddr) {
        assert!(self.frames.remove(&pa.0).is_some(), "double free of {pa}");
        self.freed += 1;
    }

    fn read_entry(&self, table: PhysAddr, index: usize) -> u64 {
        self.frames.get(&table.0).expect("read of unknown table")[index]
    }

    fn write_entry(&mut self, table: PhysAddr, index: usize, value: u64) {
        let f = self
            .frames
            .get_mut(&table.0)
            .expect("write to unknown table");
        if crate::stage2::is_bbm_required(f[index], value) {
            self.bbm_violations += 1;
        }
        f[index] = value;
    }

    fn invalidate_now(&mut self, set: &InvalidationSet) {
        self.sync_invalidations.push(set.clone());
    }

    fn invalidate_now_for(&mut self, root: PhysAddr, set: &InvalidationSet) {
        self.sync_roots.push(root);
        self.invalidate_now(set);
    }
}
