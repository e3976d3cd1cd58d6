//! Checked access to a domain's memory by IPA.
//!
//! The only way hv touches guest memory: every page is translated through the
//! domain's stage-2 table ([`memops::Stage2::lookup`]), must be normal RAM with
//! the needed permission, and copies are split at 4 KiB page boundaries. A
//! whole copy is checked before any byte moves, so a failing
//! `copy_to_guest` leaves the guest unchanged. Errors map to `-EFAULT`.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;

use memops::{MemType, Stage2, Stage2View, TableMem};
use pv_tlb::{Ipa, PhysAddr, PAGE_SIZE};

use crate::arch::PhysMem;
use crate::xen::errno::Errno;

/// Why a guest memory access failed (every variant is `-EFAULT` for the guest).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GuestMemError {
    /// No stage-2 mapping for this IPA.
    Unmapped {
        /// The page that failed.
        ipa: Ipa,
    },
    /// Mapped, but not RAM (device) or not readable.
    NotRam {
        /// The page that failed.
        ipa: Ipa,
    },
    /// Mapped read-only, and hv was asked to write.
    NotWritable {
        /// The page that failed.
        ipa: Ipa,
    },
    /// `ipa + len` overflows.
    Overflow {
        /// Start of the access.
        ipa: Ipa,
        /// Its length.
        len: u64,
    },
}

impl GuestMemError {
    /// The errno the guest gets.
    #[must_use]
    pub const fn errno(self) -> Errno {
        Errno::EFAULT
    }
}

impl fmt::Display for GuestMemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestMemError::Unmapped { ipa } => write!(f, "IPA {ipa} not mapped"),
            GuestMemError::NotRam { ipa } => write!(f, "IPA {ipa} is not readable RAM"),
            GuestMemError::NotWritable { ipa } => write!(f, "IPA {ipa} is read-only"),
            GuestMemError::Overflow { ipa, len } => write!(f, "IPA {ipa} + {len:#x} overflows"),
        }
    }
}

/// A value with a fixed little-endian layout in guest memory (a Xen ABI struct).
pub trait GuestType: Sized {
    /// Size in bytes in guest memory.
    const SIZE: usize;
    /// Encode into `out` (exactly `SIZE` bytes).
    fn encode(&self, out: &mut [u8]);
    /// Decode from `bytes` (exactly `SIZE` bytes).
    fn decode(bytes: &[u8]) -> Self;
}

impl GuestType for u32 {
    const SIZE: usize = 4;
    fn encode(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        let mut b = [0; 4];
        b.copy_from_slice(bytes);
        u32::from_le_bytes(b)
    }
}

impl GuestType for u64 {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        let mut b = [0; 8];
        b.copy_from_slice(bytes);
        u64::from_le_bytes(b)
    }
}

impl<const N: usize> GuestType for [u8; N] {
    const SIZE: usize = N;
    fn encode(&self, out: &mut [u8]) {
        out.copy_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Self {
        let mut b = [0; N];
        b.copy_from_slice(bytes);
        b
    }
}

/// A guest virtual address: a hypercall's guest handle on Arm (Xen's
/// `copy_{from,to}_guest` walk the caller's stage 1), never dereferenced
/// until translated (stage 1, then stage 2) and checked. With the caller's
/// MMU off it equals the IPA.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct GuestVa(pub u64);

impl GuestVa {
    /// `off` bytes further (wrapping, as the guest's own pointer arithmetic).
    #[must_use]
    pub const fn add(self, off: u64) -> Self {
        GuestVa(self.0.wrapping_add(off))
    }
}

impl fmt::Display for GuestVa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VA {:#x}", self.0)
    }
}

/// A typed guest pointer (Xen's `XEN_GUEST_HANDLE(T)`): a guest address (a
/// [`GuestVa`] when the view has the caller's stage 1), never dereferenced
/// until translated and checked.
pub struct GuestHandle<T> {
    ipa: Ipa,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for GuestHandle<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for GuestHandle<T> {}

impl<T> PartialEq for GuestHandle<T> {
    fn eq(&self, other: &Self) -> bool {
        self.ipa == other.ipa
    }
}
impl<T> Eq for GuestHandle<T> {}

impl<T> fmt::Debug for GuestHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuestHandle({})", self.ipa)
    }
}

impl<T> GuestHandle<T> {
    /// A handle from a raw guest register value.
    #[must_use]
    pub const fn new(raw: u64) -> Self {
        Self {
            ipa: Ipa(raw),
            _t: PhantomData,
        }
    }
    /// The IPA it points at.
    #[must_use]
    pub const fn ipa(self) -> Ipa {
        self.ipa
    }
    /// True for a NULL handle.
    #[must_use]
    pub const fn is_null(self) -> bool {
        self.ipa.0 == 0
    }
}

impl<T: GuestType> GuestHandle<T> {
    /// The handle of element `index` of an array starting here, or `None` on overflow.
    #[must_use]
    pub fn offset(self, index: u64) -> Option<Self> {
        let off = index.checked_mul(T::SIZE as u64)?;
        Some(Self {
            ipa: self.ipa.checked_add(off)?,
            _t: PhantomData,
        })
    }
}

/// A view of one domain's memory: its stage-2 table plus host RAM.
pub struct GuestMemory<'a, M: PhysMem + TableMem> {
    stage2: Stage2View,
    mem: &'a mut M,
    /// The calling vCPU's stage 1: addresses are guest *virtual* when its MMU
    /// is on (Xen's guest handles on Arm, see [`crate::xen::s1walk`]).
    s1: Option<crate::xen::s1walk::Stage1>,
}

/// One checked piece of a copy: `len` bytes at `pa` (within one page).
struct Chunk {
    pa: PhysAddr,
    len: usize,
}

impl<'a, M: PhysMem + TableMem> GuestMemory<'a, M> {
    /// A view through `stage2` over `mem`.
    pub fn new(stage2: &Stage2, mem: &'a mut M) -> Self {
        Self {
            stage2: stage2.view(),
            mem,
            s1: None,
        }
    }

    /// A view through a [`Stage2View`] over `mem`.
    pub fn from_view(stage2: Stage2View, mem: &'a mut M) -> Self {
        Self {
            stage2,
            mem,
            s1: None,
        }
    }

    /// Addresses given to this view are translated through `s1` first (a
    /// vCPU's stage 1; identity while its MMU is off), as Xen's
    /// `copy_{from,to}_guest` do on Arm.
    #[must_use]
    pub fn with_stage1(mut self, s1: Option<crate::xen::s1walk::Stage1>) -> Self {
        self.s1 = s1;
        self
    }

    /// The guest physical address of guest address `va` (see [`Self::with_stage1`]).
    fn to_ipa(&self, va: Ipa, write: bool) -> Result<Ipa, GuestMemError> {
        let Some(s1) = self.s1.filter(crate::xen::s1walk::Stage1::mmu_on) else {
            return Ok(va);
        };
        let (view, mem) = (self.stage2, &*self.mem);
        let mut read = |ipa: u64| -> Option<u64> {
            let (pa, a) = view.lookup(mem, Ipa(ipa))?;
            if !a.read || a.mem != MemType::NormalWb || !ipa.is_multiple_of(8) {
                return None;
            }
            let mut b = [0u8; 8];
            mem.read(pa, &mut b);
            Some(u64::from_le_bytes(b))
        };
        s1.translate(va.0, write, &mut read).map(Ipa).map_err(|e| {
            log::debug!("stage-1 walk of {va}: {e:?} ({s1:x?})");
            match e {
                crate::xen::s1walk::S1Fault::Permission => GuestMemError::NotWritable { ipa: va },
                _ => GuestMemError::Unmapped { ipa: va },
            }
        })
    }

    /// Translate and check every page of `ipa..ipa+len`.
    fn chunks(&self, ipa: Ipa, len: usize, write: bool) -> Result<Vec<Chunk>, GuestMemError> {
        let len64 = len as u64;
        ipa.checked_add(len64)
            .ok_or(GuestMemError::Overflow { ipa, len: len64 })?;
        let mut out = Vec::new();
        let mut cur = ipa;
        let mut left = len64;
        while left > 0 {
            let in_page = (PAGE_SIZE - cur.page_offset()).min(left);
            let page = cur.align_down(PAGE_SIZE);
            let at = self.to_ipa(cur, write)?;
            let (pa, attrs) = self
                .stage2
                .lookup(&*self.mem, at)
                .ok_or(GuestMemError::Unmapped { ipa: page })?;
            if !attrs.read || attrs.mem != MemType::NormalWb {
                return Err(GuestMemError::NotRam { ipa: page });
            }
            if write && !attrs.write {
                return Err(GuestMemError::NotWritable { ipa: page });
            }
            out.push(Chunk {
                pa,
                len: in_page as usize,
            });
            // Cannot overflow: checked above for the whole range.
            cur = Ipa(cur.0 + in_page);
            left -= in_page;
        }
        Ok(out)
    }

    /// Copy `buf.len()` bytes from the guest at `ipa` into `buf`.
    ///
    /// # Errors
    /// [`GuestMemError`] if any page of the range is unmapped or not RAM, or
    /// the range overflows; `buf` is then unspecified.
    pub fn copy_from_guest(&self, ipa: Ipa, buf: &mut [u8]) -> Result<(), GuestMemError> {
        let chunks = self.chunks(ipa, buf.len(), false)?;
        let mut off = 0;
        for c in chunks {
            self.mem.read(c.pa, &mut buf[off..off + c.len]);
            off += c.len;
        }
        Ok(())
    }

    /// Copy `buf` into the guest at `ipa`.
    ///
    /// # Errors
    /// [`GuestMemError`] if any page of the range is unmapped, not RAM or
    /// read-only, or the range overflows; nothing is written then.
    pub fn copy_to_guest(&mut self, ipa: Ipa, buf: &[u8]) -> Result<(), GuestMemError> {
        let chunks = self.chunks(ipa, buf.len(), true)?;
        let mut off = 0;
        for c in chunks {
            self.mem.write(c.pa, &buf[off..off + c.len]);
            off += c.len;
        }
        Ok(())
    }

    /// Read a `T` at `h`.
    ///
    /// # Errors
    /// As [`GuestMemory::copy_from_guest`].
    pub fn read<T: GuestType>(&self, h: GuestHandle<T>) -> Result<T, GuestMemError> {
        let mut b = vec![0u8; T::SIZE];
        self.copy_from_guest(h.ipa(), &mut b)?;
        Ok(T::decode(&b))
    }

    /// Write `v` at `h`.
    ///
    /// # Errors
    /// As [`GuestMemory::copy_to_guest`].
    pub fn write<T: GuestType>(&mut self, h: GuestHandle<T>, v: &T) -> Result<(), GuestMemError> {
        let mut b = vec![0u8; T::SIZE];
        v.encode(&mut b);
        self.copy_to_guest(h.ipa(), &b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::fake::FakeMem;
    use memops::S2Attrs;

    const RAM: u64 = 0x4000_0000;

    /// A stage-2 with two RAM pages at 0x4000_0000 (backed by two
    /// non-contiguous host frames), a read-only page after them and a device page.
    fn setup() -> (FakeMem, Stage2) {
        let mut mem = FakeMem::new(0x8000_0000, 0x100_0000);
        let mut s2 = Stage2::new(&mut mem, 40).unwrap();
        s2.map(
            &mut mem,
            Ipa(RAM),
            PhysAddr(0x8010_0000),
            0x1000,
            S2Attrs::RAM,
        )
        .unwrap();
        s2.map(
            &mut mem,
            Ipa(RAM + 0x1000),
            PhysAddr(0x8020_0000),
            0x1000,
            S2Attrs::RAM,
        )
        .unwrap();
        s2.map(
            &mut mem,
            Ipa(RAM + 0x2000),
            PhysAddr(0x8030_0000),
            0x1000,
            S2Attrs::RAM_RO,
        )
        .unwrap();
        s2.map(
            &mut mem,
            Ipa(0x0900_0000),
            PhysAddr(0x8040_0000),
            0x1000,
            S2Attrs::DEVICE,
        )
        .unwrap();
        (mem, s2)
    }

    #[test]
    fn copies_split_at_page_boundaries_into_the_right_frames() {
        let (mut mem, s2) = setup();
        let data: Vec<u8> = (0..32u8).collect();
        GuestMemory::new(&s2, &mut mem)
            .copy_to_guest(Ipa(RAM + 0xff0), &data)
            .unwrap();
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        mem.read(PhysAddr(0x8010_0ff0), &mut a);
        mem.read(PhysAddr(0x8020_0000), &mut b);
        assert_eq!(&a[..], &data[..16]);
        assert_eq!(&b[..], &data[16..]);
        let mut back = [0u8; 32];
        GuestMemory::new(&s2, &mut mem)
            .copy_from_guest(Ipa(RAM + 0xff0), &mut back)
            .unwrap();
        assert_eq!(&back[..], &data[..]);
    }

    #[test]
    fn bad_addresses_are_efault_and_write_nothing() {
        let (mut mem, s2) = setup();
        let mut gm = GuestMemory::new(&s2, &mut mem);
        // Unmapped IPA.
        assert_eq!(
            gm.copy_to_guest(Ipa(0x1000), &[1]),
            Err(GuestMemError::Unmapped { ipa: Ipa(0x1000) })
        );
        // Read-only page: readable, not writable.
        let mut x = [0u8; 4];
        assert!(gm.copy_from_guest(Ipa(RAM + 0x2000), &mut x).is_ok());
        assert_eq!(
            gm.copy_to_guest(Ipa(RAM + 0x2000), &[1]),
            Err(GuestMemError::NotWritable {
                ipa: Ipa(RAM + 0x2000)
            })
        );
        // Device page: never RAM.
        assert_eq!(
            gm.copy_from_guest(Ipa(0x0900_0000), &mut x),
            Err(GuestMemError::NotRam {
                ipa: Ipa(0x0900_0000)
            })
        );
        // A write straddling RAM and the read-only page fails whole: the RAM part is untouched.
        gm.copy_to_guest(Ipa(RAM + 0x1ffc), &[7; 4]).unwrap();
        assert_eq!(
            gm.copy_to_guest(Ipa(RAM + 0x1ffe), &[9; 4]),
            Err(GuestMemError::NotWritable {
                ipa: Ipa(RAM + 0x2000)
            })
        );
        gm.copy_from_guest(Ipa(RAM + 0x1ffc), &mut x).unwrap();
        assert_eq!(x, [7; 4]);
        // Overflow.
        assert_eq!(
            gm.copy_from_guest(Ipa(u64::MAX - 1), &mut x),
            Err(GuestMemError::Overflow {
                ipa: Ipa(u64::MAX - 1),
                len: 4
            })
        );
        // Beyond the IPA size.
        assert_eq!(
            gm.copy_from_guest(Ipa(1 << 41), &mut x),
            Err(GuestMemError::Unmapped { ipa: Ipa(1 << 41) })
        );
        assert_eq!(
            GuestMemError::Unmapped { ipa: Ipa(0) }.errno(),
            Errno::EFAULT
        );
    }

    #[test]
    fn typed_handles() {
        let (mut mem, s2) = setup();
        let mut gm = GuestMemory::new(&s2, &mut mem);
        let h: GuestHandle<u32> = GuestHandle::new(RAM + 0xffe);
        gm.write(h, &0xdead_beef).unwrap();
        assert_eq!(gm.read(h), Ok(0xdead_beef));
        // The next element straddles into the second page: still readable.
        assert!(gm.read(h.offset(1).unwrap()).is_ok());
        assert_eq!(h.offset(1).unwrap().ipa(), Ipa(RAM + 0x1002));
        assert_eq!(h.offset(u64::MAX), None);
        let arr: GuestHandle<[u8; 16]> = GuestHandle::new(RAM + 0x10);
        gm.write(arr, &[3; 16]).unwrap();
        assert_eq!(gm.read(arr), Ok([3; 16]));
        assert!(GuestHandle::<u64>::new(0).is_null());
        assert_eq!(std::format!("{:?}", arr), "GuestHandle(0x0000000040000010)");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::arch::fake::FakeMem;
    use memops::S2Attrs;
    use proptest::prelude::*;

    proptest! {
        /// Over 3 mapped pages (scattered host frames) and anything around
        /// them: a copy succeeds exactly when its whole range is mapped, a
        /// successful write reads back, and a failed write changes nothing.
        #[test]
        fn copies_are_all_or_nothing(off in 0u64..0x5000, len in 0usize..0x2100, seed in any::<u8>()) {
            let mut mem = FakeMem::new(0x8000_0000, 0x100_0000);
            let mut s2 = Stage2::new(&mut mem, 40).unwrap();
            let base = 0x4000_1000u64;
            for (i, pa) in [0x8030_0000u64, 0x8010_0000, 0x8020_0000].iter().enumerate() {
                s2.map(&mut mem, Ipa(base + i as u64 * 0x1000), PhysAddr(*pa), 0x1000, S2Attrs::RAM).unwrap();
            }
            let mut gm = GuestMemory::new(&s2, &mut mem);
            let start = 0x4000_0000 + off;
            let inside = start >= base && start + len as u64 <= base + 0x3000;
            let mut before = alloc::vec![0u8; 0x3000];
            gm.copy_from_guest(Ipa(base), &mut before).unwrap();
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let w = gm.copy_to_guest(Ipa(start), &data);
            prop_assert_eq!(w.is_ok(), inside || len == 0);
            let mut after = alloc::vec![0u8; 0x3000];
            gm.copy_from_guest(Ipa(base), &mut after).unwrap();
            if w.is_ok() {
                let mut back = alloc::vec![0u8; len];
                gm.copy_from_guest(Ipa(start), &mut back).unwrap();
                prop_assert_eq!(back, data);
            } else {
                prop_assert_eq!(after, before);
            }
        }
    }
}
