//! hv's heap as guest-driven allocations see it.
//!
//! Guests make hv allocate (a record per mapped gfn in a physmap, a domain
//! per `createdomain`). A guest must never crash hv by exhausting the heap,
//! so these allocations are gated: they go ahead only while the heap keeps
//! [`RESERVE`] bytes free after the worst case of what they may take, and
//! fail with `-ENOMEM` otherwise (memops' `MemEnv::heap_room`). The reserve
//! is far larger than any single gated step (at most 512 records, one 2 MiB
//! extent, ~48 KiB) plus the flush gatherer's growth, so hv's own
//! allocations (plans, console lines, vCPUs) always find room.
//!
//! The arch layer registers how to read the free byte count
//! ([`set_probe`]); without one (host tests) the heap counts as unbounded.

use spin::Once;

/// Bytes guest-driven allocations must leave free (2 MiB).
pub const RESERVE: usize = 2 << 20;

/// Upper bound of the heap bytes one physmap record costs: a
/// `BTreeMap<u64, P2mEntry>` leaf holds up to 11 records in ~280 bytes and
/// at least 5 (~56 bytes each), plus its share of internal nodes.
pub const RECORD_BYTES: usize = 96;

/// Heap bytes a new domain costs at most (domain, vCPU, physmap, lists).
pub const DOMAIN_BYTES: usize = 64 << 10;

static PROBE: Once<fn() -> usize> = Once::new();

/// Register the function that returns the heap's free bytes (once, at boot).
pub fn set_probe(f: fn() -> usize) {
    PROBE.call_once(|| f);
}

/// Free heap bytes (`usize::MAX` when no probe is registered).
#[must_use]
pub fn free() -> usize {
    PROBE.get().map_or(usize::MAX, |f| f())
}

/// True if `free` bytes leave room for `bytes` more above [`RESERVE`].
#[must_use]
pub fn room(free: usize, bytes: usize) -> bool {
    free.saturating_sub(RESERVE) >= bytes
}

/// True if `free` bytes leave room for `records` more physmap records.
#[must_use]
pub fn room_for_records(free: usize, records: u64) -> bool {
    let bytes = usize::try_from(records)
        .ok()
        .and_then(|r| r.checked_mul(RECORD_BYTES));
    bytes.is_some_and(|b| room(free, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_kept() {
        assert!(room_for_records(RESERVE + 96 * 10, 10));
        assert!(!room_for_records(RESERVE + 96 * 10 - 1, 10));
        assert!(!room_for_records(RESERVE, 1));
        assert!(!room(100, 1));
        assert!(!room_for_records(usize::MAX, u64::MAX));
        assert!(room(usize::MAX, DOMAIN_BYTES));
        assert_eq!(free(), usize::MAX);
    }
}
