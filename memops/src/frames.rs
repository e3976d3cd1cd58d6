//! Page ownership and reference counts for the frames hv gives to domains.
//!
//! Every frame of the guest pool has an owner (a domid) while allocated and a
//! reference count:
//! - 1 for the allocation itself (dropped when the owner gives the page back
//!   with `decrease_reservation`, or when the owner is destroyed);
//! - +1 for every foreign mapping of it in another domain's physmap (a domU
//!   page mapped by the control domain), dropped when that mapping is removed.
//!
//! A reference is dropped only *after* the TLB invalidation of the mapping it
//! stood for has run: memops hands the reference to
//! [`pv_tlb::DeferredFlush`], which returns it in [`pv_tlb::Flush::released`]
//! next to the plan; hv executes the plan, then calls [`FrameTable::release`].
//! A frame whose count reaches 0 is free again. Freed frames are not scrubbed
//! here: whoever allocates a frame for a domain zeroes it first (memops'
//! `populate_physmap` calls [`crate::xen::MemEnv::scrub`]).

use alloc::vec::Vec;

use crate::{Error, PhysAddr, PAGE_SIZE};

/// Ownership record of one frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Frame {
    /// Owning domain, `None` when free.
    pub owner: Option<u16>,
    /// Reference count (0 when free).
    pub refs: u32,
}

/// The pool of frames hv can give to domains.
#[derive(Clone, Debug)]
pub struct FrameTable {
    base_pfn: u64,
    frames: Vec<Frame>,
    free: u64,
    hint: usize,
}

impl FrameTable {
    /// A pool of `nframes` free frames from `base` (4 KiB aligned).
    #[must_use]
    pub fn new(base: PhysAddr, nframes: u64) -> Self {
        Self {
            base_pfn: base.page_number(),
            frames: alloc::vec![Frame::default(); nframes as usize],
            free: nframes,
            hint: 0,
        }
    }

    fn index(&self, pa: PhysAddr) -> Option<usize> {
        let pfn = pa.page_number().checked_sub(self.base_pfn)?;
        let i = usize::try_from(pfn).ok()?;
        (i < self.frames.len()).then_some(i)
    }

    /// True if `pa` is a frame of this pool.
    #[must_use]
    pub fn contains(&self, pa: PhysAddr) -> bool {
        self.index(pa).is_some()
    }

    /// Number of free frames.
    #[must_use]
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    /// Total frames in the pool.
    #[must_use]
    pub fn total_frames(&self) -> u64 {
        self.frames.len() as u64
    }

    /// The record of `pa`, if it is in the pool.
    #[must_use]
    pub fn frame(&self, pa: PhysAddr) -> Option<Frame> {
        self.index(pa).map(|i| self.frames[i])
    }

    /// Allocate `1 << order` contiguous frames, aligned to their size, for
    /// `owner`; each starts with one (allocation) reference. The caller
    /// must scrub them before the owner can see them.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if no such run is free; [`Error::Invalid`] for `order > 18`.
    pub fn alloc(&mut self, owner: u16, order: u32) -> Result<PhysAddr, Error> {
        if order > 18 {
            return Err(Error::Invalid {
                what: "extent order",
            });
        }
        let n = 1usize << order;
        if (n as u64) > self.free {
            return Err(Error::OutOfMemory);
        }
        let len = self.frames.len();
        // Absolute pfn alignment: index i is aligned when (base_pfn + i) % n == 0.
        let first_aligned = |from: usize| -> usize {
            let abs = self.base_pfn + from as u64;
            let rem = abs % n as u64;
            if rem == 0 {
                from
            } else {
                from + (n as u64 - rem) as usize
            }
        };
        for start_from in [self.hint, 0] {
            let mut i = first_aligned(start_from);
            while i + n <= len {
                match self.frames[i..i + n].iter().position(|f| f.refs != 0) {
                    None => {
                        for f in &mut self.frames[i..i + n] {
                            *f = Frame {
                                owner: Some(owner),
                                refs: 1,
                            };
                        }
                        self.free -= n as u64;
                        self.hint = i + n;
                        return Ok(PhysAddr::from_page_number(self.base_pfn + i as u64));
                    }
                    Some(busy) => i = first_aligned(i + busy + 1),
                }
            }
        }
        Err(Error::OutOfMemory)
    }

    /// Take one more reference on an allocated frame.
    ///
    /// # Errors
    /// [`Error::NotOwner`] if `pa` is not an allocated frame of the pool;
    /// [`Error::BadRefcount`] if the count would overflow.
    pub fn get(&mut self, pa: PhysAddr) -> Result<(), Error> {
        let i = self.index(pa).ok_or(Error::NotOwner { pa })?;
        let f = &mut self.frames[i];
        if f.refs == 0 {
            return Err(Error::NotOwner { pa });
        }
        f.refs = f.refs.checked_add(1).ok_or(Error::BadRefcount { pa })?;
        Ok(())
    }

    /// Drop one reference; returns true if the frame became free.
    ///
    /// # Errors
    /// [`Error::NotOwner`] if `pa` is not in the pool; [`Error::BadRefcount`] if it is already free.
    pub fn put(&mut self, pa: PhysAddr) -> Result<bool, Error> {
        let i = self.index(pa).ok_or(Error::NotOwner { pa })?;
        let f = &mut self.frames[i];
        if f.refs == 0 {
            return Err(Error::BadRefcount { pa });
        }
        f.refs -= 1;
        if f.refs == 0 {
            f.owner = None;
            self.free += 1;
            if i < self.hint {
                self.hint = i;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Drop one reference on each released frame (after the plan that
    /// came with them ran). Returns how many frames became free.
    ///
    /// # Errors
    /// The first error of [`FrameTable::put`]; the frames before it are released.
    pub fn release(&mut self, released: &[PhysAddr]) -> Result<u64, Error> {
        let mut n = 0;
        for pa in released {
            if self.put(*pa)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Bytes per frame.
    #[must_use]
    pub const fn frame_size() -> u64 {
        PAGE_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_get_put() {
        let mut t = FrameTable::new(PhysAddr(0x4000_1000), 1024);
        let a = t.alloc(1, 0).unwrap();
        assert_eq!(a, PhysAddr(0x4000_1000));
        let b = t.alloc(2, 9).unwrap();
        assert!(b.is_aligned(2 << 20));
        assert_eq!(t.free_frames(), 1024 - 513);
        assert_eq!(t.alloc(2, 9), Err(Error::OutOfMemory));
        t.get(a).unwrap();
        assert!(!t.put(a).unwrap());
        assert_eq!(t.frame(a).unwrap().owner, Some(1));
        assert!(t.put(a).unwrap());
        assert_eq!(t.frame(a), Some(Frame::default()));
        assert_eq!(t.put(a), Err(Error::BadRefcount { pa: a }));
        assert_eq!(t.get(a), Err(Error::NotOwner { pa: a }));
        assert_eq!(t.get(PhysAddr(0)), Err(Error::NotOwner { pa: PhysAddr(0) }));
        assert_eq!(
            t.alloc(1, 19),
            Err(Error::Invalid {
                what: "extent order"
            })
        );
        assert_eq!(t.alloc(3, 0).unwrap(), a, "freed frame is reused");
    }
}
