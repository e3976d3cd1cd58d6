//! Xen's errno values (xen/include/public/errno.h), returned negated in x0.
//!
//! hv's modules use their own error enums with context; they are mapped to an
//! [`Errno`] only at the hypercall boundary.

pub use memops::error::Errno;

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
        assert_eq!(Errno::EDOM as i64, 33);
        assert_eq!(Errno::EOPNOTSUPP as i64, 95);
        for e in Errno::ALL {
            assert_eq!(Errno::from_number(e as i64), Some(e));
        }
    }
}
