//! Numbers and layouts of Xen's public ABI that hv implements.
//!
//! Sources (xen-project/xen, checked at c447b73, 2026-08):
//! - hypercall numbers: `xen/include/public/xen.h` (`__HYPERVISOR_*`);
//! - the HVC immediate: `xen/include/public/arch-arm.h` (`XEN_HYPERCALL_TAG`);
//! - console_io: `xen/include/public/xen.h` (`CONSOLEIO_*`);
//! - xen_version: `xen/include/public/version.h` (`XENVER_*`, struct layouts);
//! - features: `xen/include/public/features.h` (`XENFEAT_*`);
//! - sched_op: `xen/include/public/sched.h` (`SCHEDOP_*`, `SHUTDOWN_*`).
//!
//! The structures hv reads from or writes to guest memory (memory_op, domctl,
//! sysctl, vcpu_op, event channels, grant table, hvm_op, multicall, shared
//! info) are written once, in [`memops::xen_abi`] (typed, size and offsets
//! asserted at compile time), and re-exported here: use
//! `crate::xen::abi::XenDomctl` etc., never raw offsets.

pub use memops::xen_abi::*;

/// The `HVC` immediate of a Xen hypercall on Arm (`XEN_HYPERCALL_TAG`).
pub const XEN_HYPERCALL_TAG: u16 = 0xea1;

/// Hypercall numbers (`__HYPERVISOR_*`, xen/include/public/xen.h).
pub mod nr {
    #![allow(missing_docs)]
    pub const SET_TRAP_TABLE: u64 = 0;
    pub const MMU_UPDATE: u64 = 1;
    pub const PLATFORM_OP: u64 = 7;
    pub const MEMORY_OP: u64 = 12;
    pub const MULTICALL: u64 = 13;
    pub const SET_TIMER_OP: u64 = 15;
    pub const XEN_VERSION: u64 = 17;
    pub const CONSOLE_IO: u64 = 18;
    pub const GRANT_TABLE_OP: u64 = 20;
    pub const VM_ASSIST: u64 = 21;
    pub const VCPU_OP: u64 = 24;
    pub const XSM_OP: u64 = 27;
    pub const SCHED_OP: u64 = 29;
    pub const CALLBACK_OP: u64 = 30;
    pub const EVENT_CHANNEL_OP: u64 = 32;
    pub const PHYSDEV_OP: u64 = 33;
    pub const HVM_OP: u64 = 34;
    pub const SYSCTL: u64 = 35;
    pub const DOMCTL: u64 = 36;
    pub const KEXEC_OP: u64 = 37;
    pub const ARGO_OP: u64 = 39;
    pub const DM_OP: u64 = 41;
    pub const HYPFS_OP: u64 = 42;
    pub const ARCH_0: u64 = 48;
    pub const ARCH_7: u64 = 55;
}

/// A name for hypercall `n` (for logs), if Xen defines it.
#[must_use]
pub fn hypercall_name(n: u64) -> Option<&'static str> {
    Some(match n {
        0 => "set_trap_table",
        1 => "mmu_update",
        2 => "set_gdt",
        3 => "stack_switch",
        4 => "set_callbacks",
        5 => "fpu_taskswitch",
        6 => "sched_op_compat",
        7 => "platform_op",
        8 => "set_debugreg",
        9 => "get_debugreg",
        10 => "update_descriptor",
        12 => "memory_op",
        13 => "multicall",
        14 => "update_va_mapping",
        15 => "set_timer_op",
        16 => "event_channel_op_compat",
        17 => "xen_version",
        18 => "console_io",
        19 => "physdev_op_compat",
        20 => "grant_table_op",
        21 => "vm_assist",
        22 => "update_va_mapping_otherdomain",
        23 => "iret",
        24 => "vcpu_op",
        25 => "set_segment_base",
        26 => "mmuext_op",
        27 => "xsm_op",
        28 => "nmi_op",
        29 => "sched_op",
        30 => "callback_op",
        31 => "xenoprof_op",
        32 => "event_channel_op",
        33 => "physdev_op",
        34 => "hvm_op",
        35 => "sysctl",
        36 => "domctl",
        37 => "kexec_op",
        38 => "tmem_op",
        39 => "argo_op",
        40 => "xenpmu_op",
        41 => "dm_op",
        42 => "hypfs_op",
        48..=55 => "arch_N",
        _ => return None,
    })
}

/// `CONSOLEIO_*` (xen/include/public/xen.h).
pub mod consoleio {
    /// Write `count` bytes from a guest buffer to the console.
    pub const WRITE: u32 = 0;
    /// Read up to `count` bytes of console input.
    pub const READ: u32 = 1;
}

/// `XENVER_*` (xen/include/public/version.h).
pub mod xenver {
    #![allow(missing_docs)]
    pub const VERSION: u32 = 0;
    pub const EXTRAVERSION: u32 = 1;
    pub const COMPILE_INFO: u32 = 2;
    pub const CAPABILITIES: u32 = 3;
    pub const CHANGESET: u32 = 4;
    pub const PLATFORM_PARAMETERS: u32 = 5;
    pub const GET_FEATURES: u32 = 6;
    pub const PAGESIZE: u32 = 7;
    pub const GUEST_HANDLE: u32 = 8;
    pub const COMMANDLINE: u32 = 9;

    /// `xen_extraversion_t`: `char[16]`.
    pub const EXTRAVERSION_LEN: usize = 16;
    /// `struct xen_compile_info`: compiler\[64\], compile_by\[16\], compile_domain\[32\], compile_date\[32\].
    pub const COMPILE_INFO_LEN: usize = 64 + 16 + 32 + 32;
    /// `xen_capabilities_info_t`: `char[1024]`.
    pub const CAPABILITIES_LEN: usize = 1024;
    /// `xen_changeset_info_t`: `char[64]`.
    pub const CHANGESET_LEN: usize = 64;
    /// `struct xen_platform_parameters`: one `xen_ulong_t` (64 bits on Arm).
    pub const PLATFORM_PARAMETERS_LEN: usize = 8;
    /// `xen_domain_handle_t`: `uint8_t[16]`.
    pub const DOMAIN_HANDLE_LEN: usize = 16;
    /// `xen_commandline_t`: `char[1024]`.
    pub const COMMANDLINE_LEN: usize = 1024;
}

/// `XENFEAT_*` bit numbers (xen/include/public/features.h).
pub mod xenfeat {
    #![allow(missing_docs)]
    pub const WRITABLE_PAGE_TABLES: u32 = 0;
    pub const AUTO_TRANSLATED_PHYSMAP: u32 = 2;
    pub const DOM0: u32 = 11;
    pub const MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
    pub const ARM_SMCCC_SUPPORTED: u32 = 14;
    pub const NOT_DIRECT_MAPPED: u32 = 16;
    pub const DIRECT_MAPPED: u32 = 17;
    pub const RUNSTATE_PHYS_AREA: u32 = 18;
}

/// `SCHEDOP_*` (xen/include/public/sched.h).
pub mod schedop {
    #![allow(missing_docs)]
    pub const YIELD: u32 = 0;
    pub const BLOCK: u32 = 1;
    pub const SHUTDOWN: u32 = 2;
    pub const POLL: u32 = 3;
    pub const REMOTE_SHUTDOWN: u32 = 4;
    pub const SHUTDOWN_CODE: u32 = 5;
    pub const WATCHDOG: u32 = 6;
    pub const PIN_OVERRIDE: u32 = 7;
}

/// `SHUTDOWN_*` reasons (xen/include/public/sched.h).
pub mod shutdown {
    #![allow(missing_docs)]
    pub const POWEROFF: u32 = 0;
    pub const REBOOT: u32 = 1;
    pub const SUSPEND: u32 = 2;
    pub const CRASH: u32 = 3;
    pub const WATCHDOG: u32 = 4;
    pub const SOFT_RESET: u32 = 5;
}
