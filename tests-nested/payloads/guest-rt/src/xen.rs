//! Xen's Arm hypercall ABI as seen by a guest: numbers, sub-commands, errno
//! values and the few structures the test guests pass (from Xen's
//! `public/xen.h`, `public/version.h`, `public/sched.h`, `public/arch-arm.h`).

/// The immediate of a Xen hypercall: `HVC #0xEA1` (`XEN_HYPERCALL_TAG`).
pub const HYPERCALL_TAG: u16 = 0xEA1;

/// `__HYPERVISOR_xen_version`.
pub const HYPERVISOR_XEN_VERSION: u64 = 17;
/// `__HYPERVISOR_console_io`.
pub const HYPERVISOR_CONSOLE_IO: u64 = 18;
/// `__HYPERVISOR_sched_op`.
pub const HYPERVISOR_SCHED_OP: u64 = 29;
/// A hypercall number Xen leaves unassigned (below `NR_hypercalls` = 64).
pub const HYPERVISOR_UNASSIGNED: u64 = 63;

/// `XENVER_version`: returns `major << 16 | minor`.
pub const XENVER_VERSION: u64 = 0;
/// `CONSOLEIO_write`: x1 = byte count, x2 = buffer address.
pub const CONSOLEIO_WRITE: u64 = 0;
/// `SCHEDOP_shutdown`: x1 = address of a [`SchedShutdown`].
pub const SCHEDOP_SHUTDOWN: u64 = 2;

/// `SHUTDOWN_poweroff`.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// `SHUTDOWN_crash`.
pub const SHUTDOWN_CRASH: u32 = 3;

/// `-EFAULT`.
pub const EFAULT: i64 = -14;
/// `-ENOSYS`.
pub const ENOSYS: i64 = -38;

/// `struct sched_shutdown` from `public/sched.h`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
pub struct SchedShutdown {
    /// One of the `SHUTDOWN_*` reasons.
    pub reason: u32,
}

/// The answer to `XENVER_version`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct XenVersion {
    /// Major version (bits 31:16).
    pub major: u16,
    /// Minor version (bits 15:0).
    pub minor: u16,
}

impl XenVersion {
    /// Decodes the value `xen_version(XENVER_version)` left in x0, or `None`
    /// when it is a negative errno or does not fit in 32 bits.
    pub fn from_raw(x0: i64) -> Option<Self> {
        let v = u32::try_from(x0).ok()?;
        let major = u16::try_from(v >> 16).ok()?;
        let minor = u16::try_from(v & 0xffff).ok()?;
        Some(Self { major, minor })
    }
}

/// `ESR_ELx.EC` (bits 31:26): the exception class.
pub fn esr_ec(esr: u64) -> u8 {
    // The mask keeps 6 bits, so the value always fits.
    ((esr >> 26) & 0x3f) as u8
}

/// `ESR_ELx.EC` for an unknown reason, which is how an undefined instruction is reported.
pub const EC_UNKNOWN: u8 = 0x00;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_decodes_major_minor() {
        assert_eq!(
            XenVersion::from_raw((4 << 16) | 20),
            Some(XenVersion {
                major: 4,
                minor: 20
            })
        );
        assert_eq!(XenVersion::from_raw(ENOSYS), None);
        assert_eq!(XenVersion::from_raw(1 << 32), None);
    }

    #[test]
    fn esr_class_is_bits_31_to_26() {
        // HVC64 (EC 0x16) with imm16 0xEA1 and IL set.
        assert_eq!(esr_ec(0x5a00_0ea1), 0x16);
        // Unknown reason, IL set.
        assert_eq!(esr_ec(0x0200_0000), EC_UNKNOWN);
        // Upper bits (ISS2) are ignored.
        assert_eq!(esr_ec((1 << 32) | (0x24 << 26)), 0x24);
    }

    #[test]
    fn sched_shutdown_is_one_u32() {
        assert_eq!(core::mem::size_of::<SchedShutdown>(), 4);
    }
}
