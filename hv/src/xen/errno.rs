//! Xen's errno values (xen/include/public/errno.h), returned negated in x0.
//!
//! hv's modules use their own error enums with context; they are mapped to an
//! [`Errno`] only at the hypercall boundary.

/// A Xen errno (positive; the guest sees `-(errno)` in x0).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(i64)]
#[allow(missing_docs)]
pub enum Errno {
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EINTR = 4,
    EIO = 5,
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
    ERANGE = 34,
    ENOSYS = 38,
    ENODATA = 61,
    EOVERFLOW = 75,
    EOPNOTSUPP = 95,
}

impl Errno {
    /// The value as the guest receives it: `-(errno)` in a 64-bit register.
    #[must_use]
    pub const fn to_x0(self) -> u64 {
        (-(self as i64)) as u64
    }

    /// The errno for a positive Xen errno number `n`, if hv knows it
    /// (used to pass through errors memops reports as numbers).
    #[must_use]
    pub fn from_number(n: i64) -> Option<Errno> {
        use Errno::*;
        [
            EPERM, ENOENT, ESRCH, EINTR, EIO, E2BIG, EAGAIN, ENOMEM, EACCES, EFAULT, EBUSY, EEXIST,
            ENODEV, EINVAL, ENOSPC, ERANGE, ENOSYS, ENODATA, EOVERFLOW, EOPNOTSUPP,
        ]
        .into_iter()
        .find(|e| *e as i64 == n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen_public_errno_h() {
        assert_eq!(Errno::EPERM as i64, 1);
        assert_eq!(Errno::ESRCH as i64, 3);
        assert_eq!(Errno::ENOMEM as i64, 12);
        assert_eq!(Errno::EFAULT as i64, 14);
        assert_eq!(Errno::EBUSY as i64, 16);
        assert_eq!(Errno::EINVAL as i64, 22);
        assert_eq!(Errno::ENOSYS as i64, 38);
        assert_eq!(Errno::ENOSYS.to_x0(), (-38i64) as u64);
        assert_eq!(Errno::from_number(14), Some(Errno::EFAULT));
        assert_eq!(Errno::from_number(1000), None);
    }
}
