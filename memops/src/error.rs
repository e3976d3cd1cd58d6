//! The one error type of memops, with context in every variant.

use core::fmt;

use crate::{Ipa, PhysAddr};

/// Why a memops operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Error {
    /// IPA size not supported (hv supports 32..=48 bits with a 4 KiB granule).
    UnsupportedIpaBits {
        /// The requested IPA size.
        ipa_bits: u8,
    },
    /// An address or size is not aligned to 4 KiB.
    Misaligned {
        /// The offending IPA (or the IPA of the operation when `pa`/`size` is the culprit).
        ipa: Ipa,
        /// The output address of the operation, if any.
        pa: Option<PhysAddr>,
        /// The size of the operation.
        size: u64,
    },
    /// `address + size` overflows 64 bits.
    Overflow {
        /// Start of the operation.
        ipa: Ipa,
        /// Size of the operation.
        size: u64,
    },
    /// The IPA range goes past the stage-2 input size.
    IpaOutOfRange {
        /// Start of the operation.
        ipa: Ipa,
        /// Size of the operation.
        size: u64,
        /// The table's input size.
        ipa_bits: u8,
    },
    /// The output range goes past the 48-bit output address space.
    PaOutOfRange {
        /// Start of the output range.
        pa: PhysAddr,
        /// Size of the operation.
        size: u64,
    },
    /// A zero-sized operation.
    EmptyRange {
        /// Start of the operation.
        ipa: Ipa,
    },
    /// [`crate::TableMem::alloc_table`] returned `None`.
    OutOfTableMemory {
        /// The IPA being mapped when the allocation failed: everything below it
        /// in this operation is mapped, nothing from it on.
        ipa: Ipa,
    },
    /// A guest frame number is not mapped in the domain's physmap.
    NotMapped {
        /// The IPA that was looked up.
        ipa: Ipa,
    },
    /// A frame is not owned by the domain that tried to use it.
    NotOwner {
        /// The frame.
        pa: PhysAddr,
    },
    /// A frame's reference count would overflow or is otherwise in the wrong state.
    BadRefcount {
        /// The frame.
        pa: PhysAddr,
    },
    /// The frame allocator has no free frame.
    OutOfMemory,
    /// A guest copy failed (handle outside guest RAM or not mapped).
    Fault {
        /// The guest address that could not be accessed.
        ipa: Ipa,
    },
    /// A guest-supplied argument is invalid (unknown space, size over limit, ...).
    Invalid {
        /// A short static explanation.
        what: &'static str,
    },
    /// The caller lacks the privilege (e.g. a foreign map from an unprivileged domain).
    Permission {
        /// A short static explanation.
        what: &'static str,
    },
    /// The referenced domain does not exist.
    NoSuchDomain {
        /// Xen domid.
        domid: u16,
    },
    /// The page is still referenced (e.g. foreign-mapped, or its flush is pending).
    Busy {
        /// The frame.
        pa: PhysAddr,
    },
}

/// A Xen errno (xen/include/public/errno.h): positive here, returned negated
/// to the guest (in x0 or an `errs[]` slot). The one errno table of hv: hv's
/// hypercall layer re-exports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i64)]
#[allow(missing_docs)]
pub enum Errno {
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EINTR = 4,
    EIO = 5,
    ENXIO = 6,
    E2BIG = 7,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    ENODEV = 19,
    EINVAL = 22,
    ENOSPC = 28,
    EDOM = 33,
    ERANGE = 34,
    ENOSYS = 38,
    ENODATA = 61,
    EOVERFLOW = 75,
    EILSEQ = 84,
    EOPNOTSUPP = 95,
    ENOBUFS = 105,
}

impl Errno {
    /// Every errno in the table.
    pub const ALL: [Errno; 24] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EINTR,
        Errno::EIO,
        Errno::ENXIO,
        Errno::E2BIG,
        Errno::EAGAIN,
        Errno::ENOMEM,
        Errno::EACCES,
        Errno::EFAULT,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::ENODEV,
        Errno::EINVAL,
        Errno::ENOSPC,
        Errno::EDOM,
        Errno::ERANGE,
        Errno::ENOSYS,
        Errno::ENODATA,
        Errno::EOVERFLOW,
        Errno::EILSEQ,
        Errno::EOPNOTSUPP,
        Errno::ENOBUFS,
    ];

    /// The value as the guest receives it: `-(errno)` in a 64-bit register.
    #[must_use]
    pub const fn to_x0(self) -> u64 {
        (-(self as i64)) as u64
    }

    /// The errno for a positive Xen errno number `n`, if the table has it.
    #[must_use]
    pub fn from_number(n: i64) -> Option<Errno> {
        Self::ALL.into_iter().find(|e| *e as i64 == n)
    }
}

/// [`Errno`] values as positive `i64` numbers, for code that returns
/// `-errno::X` directly (memops' handlers and `errs[]` slots).
pub mod errno {
    use super::Errno;
    /// Operation not permitted.
    pub const EPERM: i64 = Errno::EPERM as i64;
    /// No such process (domain).
    pub const ESRCH: i64 = Errno::ESRCH as i64;
    /// Out of memory.
    pub const ENOMEM: i64 = Errno::ENOMEM as i64;
    /// Bad address.
    pub const EFAULT: i64 = Errno::EFAULT as i64;
    /// Device or resource busy.
    pub const EBUSY: i64 = Errno::EBUSY as i64;
    /// Invalid argument.
    pub const EINVAL: i64 = Errno::EINVAL as i64;
    /// Function not implemented.
    pub const ENOSYS: i64 = Errno::ENOSYS as i64;
    /// No such entry (Xen's answer for an unmapped gpfn in remove_from_physmap).
    pub const ENOENT: i64 = Errno::ENOENT as i64;
    /// Out of domain (bad continuation index).
    pub const EDOM: i64 = Errno::EDOM as i64;
    /// Operation not supported.
    pub const EOPNOTSUPP: i64 = Errno::EOPNOTSUPP as i64;
    /// I/O error (Xen's answer when a later frame of a resource fails).
    pub const EIO: i64 = Errno::EIO as i64;
}

impl Error {
    /// The negative Xen errno for this error (returned in x0 / `errs[]`).
    #[must_use]
    pub fn xen_errno(&self) -> i64 {
        -match self {
            Error::UnsupportedIpaBits { .. }
            | Error::Misaligned { .. }
            | Error::Overflow { .. }
            | Error::IpaOutOfRange { .. }
            | Error::PaOutOfRange { .. }
            | Error::EmptyRange { .. }
            | Error::Invalid { .. } => errno::EINVAL,
            Error::NotMapped { .. } => errno::ENOENT,
            Error::OutOfTableMemory { .. } | Error::OutOfMemory => errno::ENOMEM,
            Error::NotOwner { .. } | Error::Permission { .. } => errno::EPERM,
            Error::BadRefcount { .. } | Error::Busy { .. } => errno::EBUSY,
            Error::Fault { .. } => errno::EFAULT,
            Error::NoSuchDomain { .. } => errno::ESRCH,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnsupportedIpaBits { ipa_bits } => {
                write!(f, "unsupported IPA size {ipa_bits} bits")
            }
            Error::Misaligned { ipa, pa, size } => {
                write!(f, "misaligned: ipa {ipa} pa {pa:?} size {size:#x}")
            }
            Error::Overflow { ipa, size } => write!(f, "overflow: ipa {ipa} size {size:#x}"),
            Error::IpaOutOfRange {
                ipa,
                size,
                ipa_bits,
            } => write!(
                f,
                "ipa range {ipa}+{size:#x} beyond {ipa_bits}-bit input size"
            ),
            Error::PaOutOfRange { pa, size } => {
                write!(f, "pa range {pa}+{size:#x} beyond 48-bit output size")
            }
            Error::EmptyRange { ipa } => write!(f, "empty range at {ipa}"),
            Error::OutOfTableMemory { ipa } => write!(f, "out of table memory mapping {ipa}"),
            Error::NotMapped { ipa } => write!(f, "{ipa} not mapped"),
            Error::NotOwner { pa } => write!(f, "frame {pa} not owned by caller"),
            Error::BadRefcount { pa } => write!(f, "frame {pa} refcount in wrong state"),
            Error::OutOfMemory => write!(f, "out of memory"),
            Error::Fault { ipa } => write!(f, "guest access fault at {ipa}"),
            Error::Invalid { what } => write!(f, "invalid argument: {what}"),
            Error::Permission { what } => write!(f, "not permitted: {what}"),
            Error::NoSuchDomain { domid } => write!(f, "no domain {domid}"),
            Error::Busy { pa } => write!(f, "frame {pa} busy"),
        }
    }
}
