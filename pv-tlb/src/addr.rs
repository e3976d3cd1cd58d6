//! Typed addresses shared by every hv crate.
//!
//! Each address space has its own `#[repr(transparent)]` newtype so that an
//! intermediate physical address (what a guest calls physical) can never be
//! passed where a host physical address is expected.

use core::fmt;

/// Size of a translation granule (4 KiB).
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

macro_rules! address_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw address.
            #[must_use]
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// The page (frame) number: the address shifted right by [`PAGE_SHIFT`].
            #[must_use]
            pub const fn page_number(self) -> u64 {
                self.0 >> PAGE_SHIFT
            }
            /// The address of page number `n`.
            #[must_use]
            pub const fn from_page_number(n: u64) -> Self {
                Self(n << PAGE_SHIFT)
            }
            /// The offset within its 4 KiB page.
            #[must_use]
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }
            /// True if aligned to `align` (a power of two).
            #[must_use]
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
            /// Rounded down to `align` (a power of two).
            #[must_use]
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }
            /// `self + off`, or `None` on overflow.
            #[must_use]
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#018x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#018x}", self.0)
            }
        }
    };
}

address_type!(
    /// A host physical address (output of stage-2, input of hv's own mappings).
    PhysAddr
);
address_type!(
    /// An intermediate physical address: a guest's "physical" address, input of stage-2.
    Ipa
);
address_type!(
    /// A virtual address in some stage-1 regime.
    VirtAddr
);

/// A virtual machine identifier as written to `VTTBR_EL2.VMID`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[repr(transparent)]
pub struct Vmid(pub u16);

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::format;

    #[test]
    fn addresses_print_as_fixed_width_hex() {
        assert_eq!(format!("{}", Ipa(0x4000_0000)), "0x0000000040000000");
        assert_eq!(
            format!("{:?}", PhysAddr(0x1000)),
            "PhysAddr(0x0000000000001000)"
        );
    }

    #[test]
    fn page_arithmetic() {
        let a = Ipa(0x4000_1234);
        assert_eq!(a.page_number(), 0x40001);
        assert_eq!(a.page_offset(), 0x234);
        assert_eq!(a.align_down(PAGE_SIZE), Ipa(0x4000_1000));
        assert!(!a.is_aligned(PAGE_SIZE));
        assert_eq!(Ipa::from_page_number(0x40001), Ipa(0x4000_1000));
        assert_eq!(Ipa(u64::MAX).checked_add(1), None);
    }
}
