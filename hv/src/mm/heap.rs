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

/// Heap frames hv takes at boot at least (16 MiB).
pub const MIN_BOOT_PAGES: usize = 4096;

/// One heap byte per this many bytes of free RAM at boot (RAM / 32: 128
/// bytes per 4 KiB frame, above the [`RECORD_BYTES`] a mapped guest page
/// costs in its physmap plus the 8 its teardown list takes, so every frame
/// the pool can give a guest can be recorded; 128 MiB on a 4 GiB machine).
pub const RAM_PER_HEAP_BYTE: usize = 32;

/// Frames to give hv's heap at boot when `free_frames` 4 KiB frames are
/// free: [`RAM_PER_HEAP_BYTE`] of them, at least [`MIN_BOOT_PAGES`] (never
/// more than half of what is free). A fixed 16 MiB heap ran out with one
/// 640 MiB domU (issue 9 finding 12): hv's per-gfn records grow with guest
/// RAM, so its heap grows with the machine's.
#[must_use]
pub fn boot_pages(free_frames: usize) -> usize {
    (free_frames / RAM_PER_HEAP_BYTE)
        .max(MIN_BOOT_PAGES)
        .min(free_frames / 2)
}

/// Heap bytes building a domain with `ram_pages` of RAM needs at most: one
/// physmap record per page, the 8-byte entry its teardown list keeps per
/// page, and [`DOMAIN_BYTES`].
#[must_use]
pub fn build_bytes(ram_pages: u64) -> Option<usize> {
    usize::try_from(ram_pages)
        .ok()?
        .checked_mul(RECORD_BYTES + 8)?
        .checked_add(DOMAIN_BYTES)
}

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

    /// Issue 9 finding 12: the heap grows with RAM (a 2 GiB domU's
    /// records fit on a 4 GiB machine), never below 16 MiB, never over half.
    #[test]
    fn the_boot_heap_is_sized_from_ram() {
        let gib = 1 << 18; // 4 KiB frames per GiB
        assert_eq!(boot_pages(4 * gib), 32768, "128 MiB on 4 GiB");
        assert_eq!(boot_pages(gib / 4), MIN_BOOT_PAGES, "16 MiB at least");
        assert_eq!(boot_pages(4000), 2000, "never more than half of RAM");
        let heap = boot_pages(4 * gib) * 4096;
        let need = build_bytes(2 * gib as u64).unwrap();
        assert!(
            room(heap, need),
            "a 2 GiB domU fits in a 4 GiB machine's heap"
        );
        // Every pool frame a guest could get (all the rest) can be recorded.
        let pool_pages = (4 * gib - boot_pages(4 * gib)) as u64;
        assert!(build_bytes(pool_pages).unwrap() <= heap + DOMAIN_BYTES);
        assert_eq!(build_bytes(u64::MAX), None);
    }
}
