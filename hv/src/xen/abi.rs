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

/// Xen's hypercall names by number (public/xen.h), for logs: a table, not
/// a dispatcher (`hypercall::handle` holds the one `match` over numbers).
const HYPERCALL_NAMES: [Option<&str>; 56] = [
    Some("set_trap_table"),                // 0
    Some("mmu_update"),                    // 1
    Some("set_gdt"),                       // 2
    Some("stack_switch"),                  // 3
    Some("set_callbacks"),                 // 4
    Some("fpu_taskswitch"),                // 5
    Some("sched_op_compat"),               // 6
    Some("platform_op"),                   // 7
    Some("set_debugreg"),                  // 8
    Some("get_debugreg"),                  // 9
    Some("update_descriptor"),             // 10
    None,                                  // 11
    Some("memory_op"),                     // 12
    Some("multicall"),                     // 13
    Some("update_va_mapping"),             // 14
    Some("set_timer_op"),                  // 15
    Some("event_channel_op_compat"),       // 16
    Some("xen_version"),                   // 17
    Some("console_io"),                    // 18
    Some("physdev_op_compat"),             // 19
    Some("grant_table_op"),                // 20
    Some("vm_assist"),                     // 21
    Some("update_va_mapping_otherdomain"), // 22
    Some("iret"),                          // 23
    Some("vcpu_op"),                       // 24
    Some("set_segment_base"),              // 25
    Some("mmuext_op"),                     // 26
    Some("xsm_op"),                        // 27
    Some("nmi_op"),                        // 28
    Some("sched_op"),                      // 29
    Some("callback_op"),                   // 30
    Some("xenoprof_op"),                   // 31
    Some("event_channel_op"),              // 32
    Some("physdev_op"),                    // 33
    Some("hvm_op"),                        // 34
    Some("sysctl"),                        // 35
    Some("domctl"),                        // 36
    Some("kexec_op"),                      // 37
    Some("tmem_op"),                       // 38
    Some("argo_op"),                       // 39
    Some("xenpmu_op"),                     // 40
    Some("dm_op"),                         // 41
    Some("hypfs_op"),                      // 42
    None,                                  // 43
    None,                                  // 44
    None,                                  // 45
    None,                                  // 46
    None,                                  // 47
    Some("arch_N"),                        // 48
    Some("arch_N"),                        // 49
    Some("arch_N"),                        // 50
    Some("arch_N"),                        // 51
    Some("arch_N"),                        // 52
    Some("arch_N"),                        // 53
    Some("arch_N"),                        // 54
    Some("arch_N"),                        // 55
];

/// A name for hypercall `n` (for logs), if Xen defines it.
#[must_use]
pub fn hypercall_name(n: u64) -> Option<&'static str> {
    usize::try_from(n)
        .ok()
        .and_then(|i| HYPERCALL_NAMES.get(i).copied().flatten())
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
    pub const BUILD_ID: u32 = 10;
    pub const EXTRAVERSION2: u32 = 11;
    pub const CAPABILITIES2: u32 = 12;
    pub const CHANGESET2: u32 = 13;
    pub const COMMANDLINE2: u32 = 14;

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

/// `VIRQ_*` (xen/include/public/xen.h).
pub mod virq {
    #![allow(missing_docs)]
    pub const TIMER: u32 = 0;
    pub const DEBUG: u32 = 1;
    pub const CONSOLE: u32 = 2;
    pub const DOM_EXC: u32 = 3;
    pub const TBUF: u32 = 4;
    pub const DEBUGGER: u32 = 6;
    pub const XENOPROF: u32 = 7;
    pub const CON_RING: u32 = 8;
    pub const PCPU_STATE: u32 = 9;
    pub const MEM_EVENT: u32 = 10;
    pub const ARGO: u32 = 11;
    pub const ENOMEM: u32 = 12;
    pub const XENPMU: u32 = 13;
    pub const ARCH_0: u32 = 16;
    pub const ARCH_7: u32 = 23;

    /// Xen's `virq_is_global` (xen/common/event_channel.c): every VIRQ but
    /// the per-vCPU ones (timer, debug, xenoprof, xenpmu) is global — bound
    /// on vCPU 0 only, may move with `EVTCHNOP_bind_vcpu`, raised for the one
    /// domain that handles it. On Arm `arch_virq_is_global` is true.
    #[must_use]
    pub const fn is_global(v: u32) -> bool {
        !matches!(v, TIMER | DEBUG | XENOPROF | XENPMU)
    }
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
