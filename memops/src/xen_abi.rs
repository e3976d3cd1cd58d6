//! Xen's public ABI structures that hv and memops read from or write to guest
//! memory, written once (issue 10), for arm64.
//!
//! Reference: xen-project/xen tag `RELEASE-4.20.4`, `xen/include/public/`
//! (the Xen release hv's `XEN_DOMCTL_INTERFACE_VERSION` 0x17 and
//! `XEN_SYSCTL_INTERFACE_VERSION` 0x15 belong to). On arm64 every guest
//! handle (`XEN_GUEST_HANDLE`, `XEN_GUEST_HANDLE_64`) is a 64-bit, 8-byte
//! aligned field (`arch-arm.h`: `__guest_handle_64_*`), and `xen_pfn_t`,
//! `xen_ulong_t` are `uint64_t`; `domid_t` is `uint16_t`, `evtchn_port_t`
//! `uint32_t`.
//!
//! Each structure is a `#[repr(C)]` Rust struct with the C field types, so
//! Rust lays it out as the C compiler does for arm64; its size and the offset
//! of every field are asserted at compile time against the numbers written
//! next to the field (taken from the header). Guest bytes are read and
//! written only through explicit little-endian [`Le`] encoders
//! (`from_bytes` / `to_bytes`): this crate has no `unsafe`, no transmute.
//! Padding bytes encode as zero and are ignored when decoding. A C union is
//! either its own typed member structs over a byte array (`xen_domctl.u`,
//! `xen_sysctl.u`) or, when it is a few scalars, the widest scalars with a
//! doc line per member (little-endian makes a zero-extended narrower member
//! the same bytes).
//!
//! This file needs nothing from the rest of memops (no `crate::` paths, no
//! allocation), so a guest payload can include it as a module as is.

/// A field of an ABI structure with a fixed little-endian encoding.
pub trait Le: Sized + Copy {
    /// Encoded size in bytes (= `size_of::<Self>()` for every type here).
    const SIZE: usize;
    /// Decode from `b[at..at + SIZE]` (bytes past the end of `b` read as 0).
    fn get(b: &[u8], at: usize) -> Self;
    /// Encode into `b[at..at + SIZE]` (nothing is written if that does not fit).
    fn put(&self, b: &mut [u8], at: usize);
}

macro_rules! le_int {
    ($($t:ty),*) => {$(
        impl Le for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            fn get(b: &[u8], at: usize) -> Self {
                let mut a = [0u8; core::mem::size_of::<$t>()];
                if let Some(s) = at.checked_add(a.len()).and_then(|e| b.get(at..e)) {
                    a.copy_from_slice(s);
                }
                <$t>::from_le_bytes(a)
            }
            fn put(&self, b: &mut [u8], at: usize) {
                let a = self.to_le_bytes();
                if let Some(s) = at.checked_add(a.len()).and_then(|e| b.get_mut(at..e)) {
                    s.copy_from_slice(&a);
                }
            }
        }
    )*};
}
le_int!(u8, u16, u32, u64, i8, i16, i32, i64);

impl<T: Le, const N: usize> Le for [T; N] {
    const SIZE: usize = T::SIZE * N;
    fn get(b: &[u8], at: usize) -> Self {
        core::array::from_fn(|i| T::get(b, at.saturating_add(i * T::SIZE)))
    }
    fn put(&self, b: &mut [u8], at: usize) {
        for (i, v) in self.iter().enumerate() {
            v.put(b, at.saturating_add(i * T::SIZE));
        }
    }
}

/// Defines an ABI struct: `#[repr(C)]`, every field public, size and field
/// offsets asserted at compile time, `SIZE`, `from_bytes`, `to_bytes`,
/// [`Le`] (so structs nest) and `Default` (all zero).
macro_rules! xen_struct {
    (
        $(#[$m:meta])*
        pub struct $name:ident: $size:literal {
            $( $(#[$fm:meta])* $f:ident: $t:ty = $off:literal, )*
        }
    ) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub struct $name {
            $( $(#[$fm])* pub $f: $t, )*
        }
        const _: () = assert!(core::mem::size_of::<$name>() == $size);
        $(
            const _: () = assert!(core::mem::offset_of!($name, $f) == $off);
            const _: () = assert!(<$t as Le>::SIZE == core::mem::size_of::<$t>());
        )*
        impl $name {
            /// `sizeof` of the C structure on arm64.
            pub const SIZE: usize = $size;
            /// Decode from guest bytes (little-endian; padding ignored).
            #[must_use]
            pub fn from_bytes(b: &[u8; $size]) -> Self {
                Self { $( $f: <$t as Le>::get(b, $off), )* }
            }
            /// Encode to guest bytes (little-endian; padding zero).
            #[must_use]
            pub fn to_bytes(&self) -> [u8; $size] {
                let mut b = [0u8; $size];
                $( Le::put(&self.$f, &mut b, $off); )*
                b
            }
        }
        impl Le for $name {
            const SIZE: usize = $size;
            fn get(b: &[u8], at: usize) -> Self {
                let mut a = [0u8; $size];
                if let Some(s) = at.checked_add($size).and_then(|e| b.get(at..e)) {
                    a.copy_from_slice(s);
                }
                Self::from_bytes(&a)
            }
            fn put(&self, b: &mut [u8], at: usize) {
                if let Some(s) = at.checked_add($size).and_then(|e| b.get_mut(at..e)) {
                    s.copy_from_slice(&self.to_bytes());
                }
            }
        }
        impl Default for $name {
            fn default() -> Self {
                Self::from_bytes(&[0; $size])
            }
        }
    };
}

// ---------------------------------------------------------------------------
// memory_op: xen/include/public/memory.h
// ---------------------------------------------------------------------------

xen_struct! {
    /// `struct xen_memory_reservation` (memory.h; `XENMEM_increase_reservation`,
    /// `XENMEM_decrease_reservation`, `XENMEM_populate_physmap`).
    pub struct XenMemoryReservation: 32 {
        /// `XEN_GUEST_HANDLE(xen_pfn_t) extent_start`.
        extent_start: u64 = 0,
        /// `xen_ulong_t nr_extents`.
        nr_extents: u64 = 8,
        /// `unsigned int extent_order`.
        extent_order: u32 = 16,
        /// `unsigned int mem_flags` (`XENMEMF_*`; hv ignores them).
        mem_flags: u32 = 20,
        /// `domid_t domid`.
        domid: u16 = 24,
    }
}

xen_struct! {
    /// `struct xen_add_to_physmap` (memory.h; `XENMEM_add_to_physmap`).
    pub struct XenAddToPhysmap: 24 {
        /// `domid_t domid`.
        domid: u16 = 0,
        /// `uint16_t size` (`XENMAPSPACE_gmfn_range` only).
        size: u16 = 2,
        /// `unsigned int space` (`XENMAPSPACE_*`).
        space: u32 = 4,
        /// `xen_ulong_t idx`.
        idx: u64 = 8,
        /// `xen_pfn_t gpfn`.
        gpfn: u64 = 16,
    }
}

xen_struct! {
    /// `struct xen_add_to_physmap_batch` (memory.h; `XENMEM_add_to_physmap_batch`).
    pub struct XenAddToPhysmapBatch: 32 {
        /// `domid_t domid`.
        domid: u16 = 0,
        /// `uint16_t space` (`XENMAPSPACE_*`).
        space: u16 = 2,
        /// `uint16_t size`: entries in `idxs`, `gpfns`, `errs`.
        size: u16 = 4,
        /// `union xen_add_to_physmap_batch_extra u`: `domid_t foreign_domid`
        /// (`XENMAPSPACE_gmfn_foreign`) / `uint16_t res0`.
        foreign_domid: u16 = 6,
        /// `XEN_GUEST_HANDLE(xen_ulong_t) idxs`.
        idxs: u64 = 8,
        /// `XEN_GUEST_HANDLE(xen_pfn_t) gpfns`.
        gpfns: u64 = 16,
        /// `XEN_GUEST_HANDLE(int) errs`.
        errs: u64 = 24,
    }
}

xen_struct! {
    /// `struct xen_mem_acquire_resource` (memory.h; `XENMEM_acquire_resource`).
    pub struct XenMemAcquireResource: 32 {
        /// `domid_t domid`: the domain owning the resource.
        domid: u16 = 0,
        /// `uint16_t type` (`XENMEM_resource_*`).
        r#type: u16 = 2,
        /// `uint32_t id` (for the grant table: `_id_shared` 0 / `_id_status` 1).
        id: u32 = 4,
        /// `uint32_t nr_frames` (IN; OUT for a size query).
        nr_frames: u32 = 8,
        /// `uint32_t pad` (must be 0; `flags` before 4.15).
        pad: u32 = 12,
        /// `uint64_aligned_t frame`: the first frame of the resource.
        frame: u64 = 16,
        /// `XEN_GUEST_HANDLE(xen_pfn_t) frame_list`: the caller's gfns.
        frame_list: u64 = 24,
    }
}

xen_struct! {
    /// `struct xen_remove_from_physmap` (memory.h; `XENMEM_remove_from_physmap`).
    pub struct XenRemoveFromPhysmap: 16 {
        /// `domid_t domid`.
        domid: u16 = 0,
        /// `xen_pfn_t gpfn`.
        gpfn: u64 = 8,
    }
}

xen_struct! {
    /// hv's `struct xen_remove_from_physmap_batch` (`XENMEM_remove_from_physmap_batch`
    /// = 63; not in Xen: its C definition, in the style of memory.h, is in
    /// the doc of memops' `xen::XENMEM_REMOVE_FROM_PHYSMAP_BATCH`).
    pub struct XenRemoveFromPhysmapBatch: 24 {
        /// `domid_t domid`.
        domid: u16 = 0,
        /// `uint16_t res0` (must be 0).
        res0: u16 = 2,
        /// `uint32_t size`.
        size: u32 = 4,
        /// `XEN_GUEST_HANDLE(xen_pfn_t) gpfns`.
        gpfns: u64 = 8,
        /// `XEN_GUEST_HANDLE(int) errs`.
        errs: u64 = 16,
    }
}

// ---------------------------------------------------------------------------
// domctl: xen/include/public/domctl.h, arch-arm.h
// ---------------------------------------------------------------------------

/// `XEN_DOMCTL_INTERFACE_VERSION` of Xen 4.20 (and 4.21).
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x17;
/// `XEN_SYSCTL_INTERFACE_VERSION` of Xen 4.17 to 4.20 (4.21: 0x16).
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x15;
/// Bytes of the `u` union of `struct xen_domctl` and `struct xen_sysctl`
/// (`uint8_t pad[128]`).
pub const CTL_UNION_SIZE: usize = 128;

xen_struct! {
    /// `struct xen_domctl` (domctl.h): the header and the 128-byte union `u`,
    /// read and written with [`XenDomctl::member`] / [`XenDomctl::set_member`].
    pub struct XenDomctl: 144 {
        /// `uint32_t cmd` (`XEN_DOMCTL_*`).
        cmd: u32 = 0,
        /// `uint32_t interface_version` (`XEN_DOMCTL_INTERFACE_VERSION`).
        interface_version: u32 = 4,
        /// `domid_t domain`.
        domain: u16 = 8,
        /// `uint16_t _pad[3]`.
        pad: [u16; 3] = 10,
        /// `union { ... uint8_t pad[128]; } u`.
        u: [u8; 128] = 16,
    }
}

impl XenDomctl {
    /// A header for `cmd` on `domain` with the current interface version
    /// and an all-zero union.
    #[must_use]
    pub fn new(cmd: u32, domain: u16) -> Self {
        Self {
            cmd,
            interface_version: XEN_DOMCTL_INTERFACE_VERSION,
            domain,
            ..Self::default()
        }
    }
    /// The union read as member `T`.
    #[must_use]
    pub fn member<T: Le>(&self) -> T {
        T::get(&self.u, 0)
    }
    /// Set the union to member `m` (bytes past it zeroed).
    pub fn set_member<T: Le>(&mut self, m: &T) {
        self.u = [0; CTL_UNION_SIZE];
        m.put(&mut self.u, 0);
    }
}

/// `XEN_DOMCTL_*` commands hv handles (domctl.h).
pub mod domctl_cmd {
    #![allow(missing_docs)]
    pub const CREATEDOMAIN: u32 = 1;
    pub const DESTROYDOMAIN: u32 = 2;
    pub const PAUSEDOMAIN: u32 = 3;
    pub const UNPAUSEDOMAIN: u32 = 4;
    pub const GETDOMAININFO: u32 = 5;
    pub const SETVCPUAFFINITY: u32 = 9;
    pub const MAX_MEM: u32 = 11;
    pub const SETVCPUCONTEXT: u32 = 12;
    pub const MAX_VCPUS: u32 = 15;
    pub const SCHEDULER_OP: u32 = 16;
    pub const SET_ADDRESS_SIZE: u32 = 35;
    pub const SETNODEAFFINITY: u32 = 68;
    pub const CACHEFLUSH: u32 = 71;
    pub const GET_PAGING_MEMPOOL_SIZE: u32 = 85;
    pub const SET_PAGING_MEMPOOL_SIZE: u32 = 86;
    pub const SET_LLC_COLORS: u32 = 89;
}

xen_struct! {
    /// `struct xen_arch_domainconfig` (arch-arm.h). Xen 4.21 appends
    /// `uint8_t arm_sci_type` at 12 (16 bytes, same interface version; it
    /// falls in the union's tail, hv does not read it).
    pub struct XenArchDomainconfig: 12 {
        /// `uint8_t gic_version` (`XEN_DOMCTL_CONFIG_GIC_*`; IN/OUT).
        gic_version: u8 = 0,
        /// `uint8_t sve_vl` (SVE vector length / 128).
        sve_vl: u8 = 1,
        /// `uint16_t tee_type` (`XEN_DOMCTL_CONFIG_TEE_*`).
        tee_type: u16 = 2,
        /// `uint32_t nr_spis`.
        nr_spis: u32 = 4,
        /// `uint32_t clock_frequency` (OUT).
        clock_frequency: u32 = 8,
    }
}

xen_struct! {
    /// `struct xen_domctl_createdomain` (domctl.h; `XEN_DOMCTL_createdomain`).
    pub struct XenDomctlCreatedomain: 72 {
        /// `uint32_t ssidref`.
        ssidref: u32 = 0,
        /// `xen_domain_handle_t handle` (`uint8_t[16]`).
        handle: [u8; 16] = 4,
        /// `uint32_t flags` (`XEN_DOMCTL_CDF_*`).
        flags: u32 = 20,
        /// `uint32_t iommu_opts` (`XEN_DOMCTL_IOMMU_*`).
        iommu_opts: u32 = 24,
        /// `uint32_t max_vcpus`.
        max_vcpus: u32 = 28,
        /// `uint32_t max_evtchn_port`.
        max_evtchn_port: u32 = 32,
        /// `int32_t max_grant_frames` (< 0: default).
        max_grant_frames: i32 = 36,
        /// `int32_t max_maptrack_frames` (< 0: default).
        max_maptrack_frames: i32 = 40,
        /// `uint32_t grant_opts` (`XEN_DOMCTL_GRANT_version(v)` in bits 3:0).
        grant_opts: u32 = 44,
        /// `uint32_t altp2m_opts`.
        altp2m_opts: u32 = 48,
        /// `uint32_t vmtrace_size`.
        vmtrace_size: u32 = 52,
        /// `uint32_t cpupool_id`.
        cpupool_id: u32 = 56,
        /// `struct xen_arch_domainconfig arch`.
        arch: XenArchDomainconfig = 60,
    }
}

xen_struct! {
    /// `struct xen_domctl_getdomaininfo` (domctl.h; `XEN_DOMCTL_getdomaininfo`).
    pub struct XenDomctlGetdomaininfo: 120 {
        /// `domid_t domain`.
        domain: u16 = 0,
        /// `uint16_t pad1`.
        pad1: u16 = 2,
        /// `uint32_t flags` (`XEN_DOMINF_*`).
        flags: u32 = 4,
        /// `uint64_aligned_t tot_pages`.
        tot_pages: u64 = 8,
        /// `uint64_aligned_t max_pages`.
        max_pages: u64 = 16,
        /// `uint64_aligned_t outstanding_pages`.
        outstanding_pages: u64 = 24,
        /// `uint64_aligned_t shr_pages`.
        shr_pages: u64 = 32,
        /// `uint64_aligned_t paged_pages`.
        paged_pages: u64 = 40,
        /// `uint64_aligned_t shared_info_frame`.
        shared_info_frame: u64 = 48,
        /// `uint64_aligned_t cpu_time`.
        cpu_time: u64 = 56,
        /// `uint32_t nr_online_vcpus`.
        nr_online_vcpus: u32 = 64,
        /// `uint32_t max_vcpu_id`.
        max_vcpu_id: u32 = 68,
        /// `uint32_t ssidref`.
        ssidref: u32 = 72,
        /// `xen_domain_handle_t handle`.
        handle: [u8; 16] = 76,
        /// `uint32_t cpupool`.
        cpupool: u32 = 92,
        /// `uint8_t gpaddr_bits`.
        gpaddr_bits: u8 = 96,
        /// `uint8_t pad2[7]`.
        pad2: [u8; 7] = 97,
        /// `struct xen_arch_domainconfig arch_config`.
        arch_config: XenArchDomainconfig = 104,
    }
}

xen_struct! {
    /// `struct xen_domctl_max_mem` (domctl.h; `XEN_DOMCTL_max_mem`).
    pub struct XenDomctlMaxMem: 8 {
        /// `uint64_aligned_t max_memkb`.
        max_memkb: u64 = 0,
    }
}

xen_struct! {
    /// `struct xen_domctl_vcpuaffinity` (domctl.h; `XEN_DOMCTL_setvcpuaffinity`).
    pub struct XenDomctlVcpuaffinity: 40 {
        /// `uint32_t vcpu`.
        vcpu: u32 = 0,
        /// `uint32_t flags` (`XEN_VCPUAFFINITY_HARD` 1, `_SOFT` 2).
        flags: u32 = 4,
        /// `struct xenctl_bitmap cpumap_hard` (IN/OUT).
        cpumap_hard: XenctlBitmap = 8,
        /// `struct xenctl_bitmap cpumap_soft` (IN/OUT).
        cpumap_soft: XenctlBitmap = 24,
    }
}

xen_struct! {
    /// `struct xen_domctl_nodeaffinity` (domctl.h; `XEN_DOMCTL_setnodeaffinity`).
    pub struct XenDomctlNodeaffinity: 16 {
        /// `struct xenctl_bitmap nodemap`.
        nodemap: XenctlBitmap = 0,
    }
}

xen_struct! {
    /// `struct xen_domctl_address_size` (domctl.h; `XEN_DOMCTL_set_address_size`).
    pub struct XenDomctlAddressSize: 4 {
        /// `uint32_t size` (bits).
        size: u32 = 0,
    }
}

xen_struct! {
    /// `struct xen_domctl_paging_mempool` (domctl.h;
    /// `XEN_DOMCTL_{get,set}_paging_mempool_size`).
    pub struct XenDomctlPagingMempool: 8 {
        /// `uint64_aligned_t size` (bytes).
        size: u64 = 0,
    }
}

xen_struct! {
    /// `struct xen_domctl_cacheflush` (domctl.h; `XEN_DOMCTL_cacheflush`).
    pub struct XenDomctlCacheflush: 16 {
        /// `xen_pfn_t start_pfn` (a gfn of the target).
        start_pfn: u64 = 0,
        /// `xen_pfn_t nr_pfns`.
        nr_pfns: u64 = 8,
    }
}

xen_struct! {
    /// `struct xen_domctl_scheduler_op` (domctl.h; `XEN_DOMCTL_scheduler_op`)
    /// with its union read as `struct xen_domctl_sched_credit2` (the union is
    /// 16 bytes at 8: its largest member, `v`, holds a 64-bit handle).
    pub struct XenDomctlSchedulerOp: 24 {
        /// `uint32_t sched_id` (`XEN_SCHEDULER_*`).
        sched_id: u32 = 0,
        /// `uint32_t cmd` (`XEN_DOMCTL_SCHEDOP_*`).
        cmd: u32 = 4,
        /// `u.credit2.weight`.
        credit2_weight: u16 = 8,
        /// `u.credit2.pad`.
        credit2_pad: u16 = 10,
        /// `u.credit2.cap`.
        credit2_cap: u32 = 12,
        /// The rest of the union.
        rest: u64 = 16,
    }
}

xen_struct! {
    /// `struct xen_domctl_max_vcpus` (domctl.h; `XEN_DOMCTL_max_vcpus`).
    pub struct XenDomctlMaxVcpus: 4 {
        /// `uint32_t max`.
        max: u32 = 0,
    }
}

xen_struct! {
    /// `struct xen_domctl_vcpucontext` (domctl.h; `XEN_DOMCTL_setvcpucontext`,
    /// `XEN_DOMCTL_getvcpucontext`).
    pub struct XenDomctlVcpucontext: 16 {
        /// `uint32_t vcpu`.
        vcpu: u32 = 0,
        /// `XEN_GUEST_HANDLE_64(vcpu_guest_context_t) ctxt`.
        ctxt: u64 = 8,
    }
}

xen_struct! {
    /// `struct vcpu_guest_core_regs` (arch-arm.h), arm64 names: every
    /// `__DECL_REG` is a 64-bit union of the AArch64 and AArch32 names.
    pub struct VcpuGuestCoreRegs: 312 {
        /// `x0` .. `x30`.
        x: [u64; 31] = 0,
        /// `pc64` (ELR_EL2).
        pc64: u64 = 248,
        /// `cpsr` (SPSR_EL2).
        cpsr: u64 = 256,
        /// `spsr_el1` (union with AArch32's `spsr_svc`).
        spsr_el1: u64 = 264,
        /// `spsr_fiq`.
        spsr_fiq: u32 = 272,
        /// `spsr_irq`.
        spsr_irq: u32 = 276,
        /// `spsr_und`.
        spsr_und: u32 = 280,
        /// `spsr_abt`.
        spsr_abt: u32 = 284,
        /// `sp_el0`.
        sp_el0: u64 = 288,
        /// `sp_el1`.
        sp_el1: u64 = 296,
        /// `elr_el1`.
        elr_el1: u64 = 304,
    }
}

xen_struct! {
    /// `struct vcpu_guest_context` (arch-arm.h; what setvcpucontext's `ctxt` points at).
    pub struct VcpuGuestContext: 352 {
        /// `uint32_t flags` (`VGCF_*`).
        flags: u32 = 0,
        /// `struct vcpu_guest_core_regs user_regs`.
        user_regs: VcpuGuestCoreRegs = 8,
        /// `uint64_t sctlr`.
        sctlr: u64 = 320,
        /// `uint64_t ttbcr`.
        ttbcr: u64 = 328,
        /// `uint64_t ttbr0`.
        ttbr0: u64 = 336,
        /// `uint64_t ttbr1`.
        ttbr1: u64 = 344,
    }
}

const _: () = assert!(XenDomctlCreatedomain::SIZE <= CTL_UNION_SIZE);
const _: () = assert!(XenDomctlGetdomaininfo::SIZE <= CTL_UNION_SIZE);
const _: () = assert!(XenDomctlVcpucontext::SIZE <= CTL_UNION_SIZE);

// ---------------------------------------------------------------------------
// sysctl: xen/include/public/sysctl.h
// ---------------------------------------------------------------------------

xen_struct! {
    /// `struct xen_sysctl` (sysctl.h): the header and the 128-byte union `u`.
    pub struct XenSysctl: 136 {
        /// `uint32_t cmd` (`XEN_SYSCTL_*`).
        cmd: u32 = 0,
        /// `uint32_t interface_version` (`XEN_SYSCTL_INTERFACE_VERSION`).
        interface_version: u32 = 4,
        /// `union { ... uint8_t pad[128]; } u`.
        u: [u8; 128] = 8,
    }
}

impl XenSysctl {
    /// The union read as member `T`.
    #[must_use]
    pub fn member<T: Le>(&self) -> T {
        T::get(&self.u, 0)
    }
    /// Set the union to member `m` (bytes past it zeroed).
    pub fn set_member<T: Le>(&mut self, m: &T) {
        self.u = [0; CTL_UNION_SIZE];
        m.put(&mut self.u, 0);
    }
}

/// `XEN_SYSCTL_physinfo`.
pub const XEN_SYSCTL_PHYSINFO: u32 = 3;

xen_struct! {
    /// `struct xen_sysctl_physinfo` (sysctl.h; `XEN_SYSCTL_physinfo`).
    pub struct XenSysctlPhysinfo: 112 {
        /// `uint32_t threads_per_core`.
        threads_per_core: u32 = 0,
        /// `uint32_t cores_per_socket`.
        cores_per_socket: u32 = 4,
        /// `uint32_t nr_cpus`.
        nr_cpus: u32 = 8,
        /// `uint32_t max_cpu_id`.
        max_cpu_id: u32 = 12,
        /// `uint32_t nr_nodes`.
        nr_nodes: u32 = 16,
        /// `uint32_t max_node_id`.
        max_node_id: u32 = 20,
        /// `uint32_t cpu_khz`.
        cpu_khz: u32 = 24,
        /// `uint32_t capabilities` (`XEN_SYSCTL_PHYSCAP_*`).
        capabilities: u32 = 28,
        /// `uint32_t arch_capabilities`.
        arch_capabilities: u32 = 32,
        /// `uint32_t pad`.
        pad: u32 = 36,
        /// `uint64_aligned_t total_pages`.
        total_pages: u64 = 40,
        /// `uint64_aligned_t free_pages`.
        free_pages: u64 = 48,
        /// `uint64_aligned_t scrub_pages`.
        scrub_pages: u64 = 56,
        /// `uint64_aligned_t outstanding_pages`.
        outstanding_pages: u64 = 64,
        /// `uint64_aligned_t max_mfn`.
        max_mfn: u64 = 72,
        /// `uint32_t hw_cap[8]`.
        hw_cap: [u32; 8] = 80,
    }
}

const _: () = assert!(XenSysctlPhysinfo::SIZE <= CTL_UNION_SIZE);

/// `XEN_SYSCTL_*` commands (sysctl.h) hv knows by name.
pub mod sysctl_cmd {
    #![allow(missing_docs)]
    pub const READCONSOLE: u32 = 1;
    pub const TBUF_OP: u32 = 2;
    pub const PHYSINFO: u32 = 3;
    pub const SCHED_ID: u32 = 4;
    pub const PERFC_OP: u32 = 5;
    pub const GETDOMAININFOLIST: u32 = 6;
    pub const DEBUG_KEYS: u32 = 7;
    pub const GETCPUINFO: u32 = 8;
    pub const AVAILHEAP: u32 = 9;
    pub const CPUTOPOINFO: u32 = 16;
    pub const NUMAINFO: u32 = 17;
    pub const CPUPOOL_OP: u32 = 18;
    pub const SCHEDULER_OP: u32 = 19;
    pub const GET_CPU_FEATURESET: u32 = 26;
    pub const GET_CPU_POLICY: u32 = 29;
}

/// `XEN_SYSCTL_PHYSCAP_*` (sysctl.h).
pub mod physcap {
    #![allow(missing_docs)]
    pub const HVM: u32 = 1 << 0;
    pub const PV: u32 = 1 << 1;
    pub const DIRECTIO: u32 = 1 << 2;
    pub const HAP: u32 = 1 << 3;
    pub const SHADOW: u32 = 1 << 4;
    pub const IOMMU_HAP_PT_SHARE: u32 = 1 << 5;
    pub const VMTRACE: u32 = 1 << 6;
    pub const VPMU: u32 = 1 << 7;
    pub const GNTTAB_V1: u32 = 1 << 8;
    pub const GNTTAB_V2: u32 = 1 << 9;
    /// `XEN_SYSCTL_PHYSCAP_ARM_SVE_MASK` of `arch_capabilities`: the SVE
    /// vector length / 128 (0: no SVE for guests).
    pub const ARM_SVE_MASK: u32 = 0x1f;
}

xen_struct! {
    /// `struct xen_sysctl_readconsole` (sysctl.h; `XEN_SYSCTL_readconsole`).
    pub struct XenSysctlReadconsole: 24 {
        /// `uint8_t clear` (IN: non-zero clears after reading).
        clear: u8 = 0,
        /// `uint8_t incremental` (IN: non-zero starts at `index`).
        incremental: u8 = 1,
        /// `uint8_t pad0, pad1`.
        pad: [u8; 2] = 2,
        /// `uint32_t index` (IN: start if incremental; OUT: end index).
        index: u32 = 4,
        /// `XEN_GUEST_HANDLE_64(char) buffer`.
        buffer: u64 = 8,
        /// `uint32_t count` (IN: buffer size; OUT: bytes written).
        count: u32 = 16,
    }
}

xen_struct! {
    /// `struct xen_sysctl_sched_id` (sysctl.h; `XEN_SYSCTL_sched_id`).
    pub struct XenSysctlSchedId: 4 {
        /// `uint32_t sched_id` (OUT, `XEN_SCHEDULER_*`).
        sched_id: u32 = 0,
    }
}

xen_struct! {
    /// `struct xen_sysctl_getdomaininfolist` (sysctl.h; `XEN_SYSCTL_getdomaininfolist`).
    pub struct XenSysctlGetdomaininfolist: 24 {
        /// `domid_t first_domain` (IN).
        first_domain: u16 = 0,
        /// `uint32_t max_domains` (IN).
        max_domains: u32 = 4,
        /// `XEN_GUEST_HANDLE_64(xen_domctl_getdomaininfo_t) buffer`.
        buffer: u64 = 8,
        /// `uint32_t num_domains` (OUT).
        num_domains: u32 = 16,
    }
}

xen_struct! {
    /// `struct xenctl_bitmap` (xen.h).
    pub struct XenctlBitmap: 16 {
        /// `XEN_GUEST_HANDLE_64(uint8) bitmap`.
        bitmap: u64 = 0,
        /// `uint32_t nr_bits`.
        nr_bits: u32 = 8,
    }
}

/// `XEN_SYSCTL_CPUPOOL_OP_*` (sysctl.h).
pub mod cpupool_op {
    #![allow(missing_docs)]
    pub const CREATE: u32 = 1;
    pub const DESTROY: u32 = 2;
    pub const INFO: u32 = 3;
    pub const ADDCPU: u32 = 4;
    pub const RMCPU: u32 = 5;
    pub const MOVEDOMAIN: u32 = 6;
    pub const FREEINFO: u32 = 7;
    /// `XEN_SYSCTL_CPUPOOL_PAR_ANY`.
    pub const PAR_ANY: u32 = 0xffff_ffff;
}

xen_struct! {
    /// `struct xen_sysctl_cpupool_op` (sysctl.h; `XEN_SYSCTL_cpupool_op`).
    pub struct XenSysctlCpupoolOp: 40 {
        /// `uint32_t op` (`XEN_SYSCTL_CPUPOOL_OP_*`).
        op: u32 = 0,
        /// `uint32_t cpupool_id` (IN: CDIARM, OUT: CI).
        cpupool_id: u32 = 4,
        /// `uint32_t sched_id` (IN: C, OUT: I).
        sched_id: u32 = 8,
        /// `uint32_t domid` (IN: M).
        domid: u32 = 12,
        /// `uint32_t cpu` (IN: AR).
        cpu: u32 = 16,
        /// `uint32_t n_dom` (OUT: I).
        n_dom: u32 = 20,
        /// `struct xenctl_bitmap cpumap` (OUT: IF; the caller's buffer).
        cpumap: XenctlBitmap = 24,
    }
}

xen_struct! {
    /// `struct xen_sysctl_cputopo` (sysctl.h): one CPU of `cputopoinfo`.
    pub struct XenSysctlCputopo: 12 {
        /// `uint32_t core`.
        core: u32 = 0,
        /// `uint32_t socket`.
        socket: u32 = 4,
        /// `uint32_t node`.
        node: u32 = 8,
    }
}

xen_struct! {
    /// `struct xen_sysctl_cputopoinfo` (sysctl.h; `XEN_SYSCTL_cputopoinfo`).
    pub struct XenSysctlCputopoinfo: 16 {
        /// `uint32_t num_cpus` (IN: entries in `cputopo`; OUT: entries Xen has).
        num_cpus: u32 = 0,
        /// `XEN_GUEST_HANDLE_64(xen_sysctl_cputopo_t) cputopo` (NULL: size query).
        cputopo: u64 = 8,
    }
}

xen_struct! {
    /// `struct xen_sysctl_meminfo` (sysctl.h): one node of `numainfo`.
    pub struct XenSysctlMeminfo: 16 {
        /// `uint64_t memsize` (bytes).
        memsize: u64 = 0,
        /// `uint64_t memfree` (bytes).
        memfree: u64 = 8,
    }
}

xen_struct! {
    /// `struct xen_sysctl_numainfo` (sysctl.h; `XEN_SYSCTL_numainfo`).
    pub struct XenSysctlNumainfo: 24 {
        /// `uint32_t num_nodes`.
        num_nodes: u32 = 0,
        /// `XEN_GUEST_HANDLE_64(xen_sysctl_meminfo_t) meminfo`.
        meminfo: u64 = 8,
        /// `XEN_GUEST_HANDLE_64(uint32) distance` (`num_nodes` squared entries).
        distance: u64 = 16,
    }
}

const _: () = assert!(XenSysctlCpupoolOp::SIZE <= CTL_UNION_SIZE);

// ---------------------------------------------------------------------------
// version.h: xen_varbuf (XENVER_build_id, XENVER_*2)
// ---------------------------------------------------------------------------

xen_struct! {
    /// The header of `struct xen_varbuf` (version.h): `uint32_t len` then
    /// `char buf[]` (a flexible array at offset 4, `len` bytes, no NUL).
    pub struct XenVarbuf: 4 {
        /// `uint32_t len` (IN: the buffer's size).
        len: u32 = 0,
    }
}

// ---------------------------------------------------------------------------
// vcpu_op: xen/include/public/vcpu.h
// ---------------------------------------------------------------------------

xen_struct! {
    /// `struct vcpu_register_vcpu_info` (vcpu.h; `VCPUOP_register_vcpu_info`).
    pub struct VcpuRegisterVcpuInfo: 16 {
        /// `uint64_t mfn` (a gfn for a translated guest).
        mfn: u64 = 0,
        /// `uint32_t offset` in that page.
        offset: u32 = 8,
        /// `uint32_t rsvd`.
        rsvd: u32 = 12,
    }
}

xen_struct! {
    /// `struct vcpu_register_runstate_memory_area` (vcpu.h;
    /// `VCPUOP_register_runstate_memory_area`, and `VCPUOP_register_runstate_phys_area`
    /// whose `struct vcpu_register_time_memory_area`-like argument has the same layout).
    pub struct VcpuRegisterRunstateMemoryArea: 8 {
        /// `union { XEN_GUEST_HANDLE h; struct vcpu_runstate_info *v; uint64_t p; } addr`.
        addr: u64 = 0,
    }
}

/// `XEN_RUNSTATE_UPDATE`: bit 63 of `state_entry_time` while Xen writes the area.
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

xen_struct! {
    /// `struct vcpu_runstate_info` (vcpu.h).
    pub struct VcpuRunstateInfo: 48 {
        /// `int state` (`RUNSTATE_*`).
        state: i32 = 0,
        /// `uint64_t state_entry_time` (ns; `XEN_RUNSTATE_UPDATE` in bit 63).
        state_entry_time: u64 = 8,
        /// `uint64_t time[4]`: ns spent in each `RUNSTATE_*`.
        time: [u64; 4] = 16,
    }
}

// ---------------------------------------------------------------------------
// event_channel_op: xen/include/public/event_channel.h
// ---------------------------------------------------------------------------

xen_struct! {
    /// `struct evtchn_alloc_unbound` (`EVTCHNOP_alloc_unbound`).
    pub struct EvtchnAllocUnbound: 8 {
        /// `domid_t dom` (IN).
        dom: u16 = 0,
        /// `domid_t remote_dom` (IN).
        remote_dom: u16 = 2,
        /// `evtchn_port_t port` (OUT).
        port: u32 = 4,
    }
}

xen_struct! {
    /// `struct evtchn_bind_interdomain` (`EVTCHNOP_bind_interdomain`).
    pub struct EvtchnBindInterdomain: 12 {
        /// `domid_t remote_dom` (IN).
        remote_dom: u16 = 0,
        /// `evtchn_port_t remote_port` (IN).
        remote_port: u32 = 4,
        /// `evtchn_port_t local_port` (OUT).
        local_port: u32 = 8,
    }
}

xen_struct! {
    /// `struct evtchn_bind_virq` (`EVTCHNOP_bind_virq`).
    pub struct EvtchnBindVirq: 12 {
        /// `uint32_t virq` (IN).
        virq: u32 = 0,
        /// `uint32_t vcpu` (IN).
        vcpu: u32 = 4,
        /// `evtchn_port_t port` (OUT).
        port: u32 = 8,
    }
}

xen_struct! {
    /// `struct evtchn_bind_ipi` (`EVTCHNOP_bind_ipi`).
    pub struct EvtchnBindIpi: 8 {
        /// `uint32_t vcpu` (IN).
        vcpu: u32 = 0,
        /// `evtchn_port_t port` (OUT).
        port: u32 = 4,
    }
}

xen_struct! {
    /// `struct evtchn_close` (`EVTCHNOP_close`); `struct evtchn_send`
    /// (`EVTCHNOP_send`) and `struct evtchn_unmask` (`EVTCHNOP_unmask`) have
    /// the same single field (aliases below).
    pub struct EvtchnClose: 4 {
        /// `evtchn_port_t port`.
        port: u32 = 0,
    }
}

/// `struct evtchn_send` (`EVTCHNOP_send`): `evtchn_port_t port` at 0, 4 bytes.
pub type EvtchnSend = EvtchnClose;
/// `struct evtchn_unmask` (`EVTCHNOP_unmask`): `evtchn_port_t port` at 0, 4 bytes.
pub type EvtchnUnmask = EvtchnClose;

xen_struct! {
    /// `struct evtchn_status` (`EVTCHNOP_status`).
    pub struct EvtchnStatus: 24 {
        /// `domid_t dom` (IN).
        dom: u16 = 0,
        /// `evtchn_port_t port` (IN).
        port: u32 = 4,
        /// `uint32_t status` (OUT, `EVTCHNSTAT_*`).
        status: u32 = 8,
        /// `uint32_t vcpu` (OUT).
        vcpu: u32 = 12,
        /// `union u` (OUT): `u[0]` is `unbound.dom` / `interdomain.dom`
        /// (`domid_t`, zero-extended) or `pirq` or `virq`; `u[1]` is
        /// `interdomain.port`.
        u: [u32; 2] = 16,
    }
}

xen_struct! {
    /// `struct evtchn_bind_vcpu` (`EVTCHNOP_bind_vcpu`).
    pub struct EvtchnBindVcpu: 8 {
        /// `evtchn_port_t port`.
        port: u32 = 0,
        /// `uint32_t vcpu`.
        vcpu: u32 = 4,
    }
}

// ---------------------------------------------------------------------------
// grant_table_op: xen/include/public/grant_table.h
// ---------------------------------------------------------------------------

xen_struct! {
    /// `struct gnttab_setup_table` (`GNTTABOP_setup_table`).
    pub struct GnttabSetupTable: 24 {
        /// `domid_t dom` (IN).
        dom: u16 = 0,
        /// `uint32_t nr_frames` (IN).
        nr_frames: u32 = 4,
        /// `int16_t status` (OUT, `GNTST_*`).
        status: i16 = 8,
        /// `XEN_GUEST_HANDLE(xen_pfn_t) frame_list` (OUT).
        frame_list: u64 = 16,
    }
}

xen_struct! {
    /// `struct gnttab_query_size` (`GNTTABOP_query_size`).
    pub struct GnttabQuerySize: 16 {
        /// `domid_t dom` (IN).
        dom: u16 = 0,
        /// `uint32_t nr_frames` (OUT).
        nr_frames: u32 = 4,
        /// `uint32_t max_nr_frames` (OUT).
        max_nr_frames: u32 = 8,
        /// `int16_t status` (OUT, `GNTST_*`).
        status: i16 = 12,
    }
}

xen_struct! {
    /// `struct gnttab_map_grant_ref` (`GNTTABOP_map_grant_ref`).
    pub struct GnttabMapGrantRef: 32 {
        /// `uint64_t host_addr` (IN; on Arm the caller's guest-physical address).
        host_addr: u64 = 0,
        /// `uint32_t flags` (IN, `GNTMAP_*`).
        flags: u32 = 8,
        /// `grant_ref_t ref` (IN).
        r#ref: u32 = 12,
        /// `domid_t dom` (IN, the granting domain).
        dom: u16 = 16,
        /// `int16_t status` (OUT, `GNTST_*`).
        status: i16 = 18,
        /// `grant_handle_t handle` (OUT).
        handle: u32 = 20,
        /// `uint64_t dev_bus_addr` (OUT).
        dev_bus_addr: u64 = 24,
    }
}

xen_struct! {
    /// `struct gnttab_unmap_grant_ref` (`GNTTABOP_unmap_grant_ref`).
    pub struct GnttabUnmapGrantRef: 24 {
        /// `uint64_t host_addr` (IN).
        host_addr: u64 = 0,
        /// `uint64_t dev_bus_addr` (IN).
        dev_bus_addr: u64 = 8,
        /// `grant_handle_t handle` (IN).
        handle: u32 = 16,
        /// `int16_t status` (OUT, `GNTST_*`).
        status: i16 = 20,
    }
}

xen_struct! {
    /// `struct gnttab_cache_flush` (`GNTTABOP_cache_flush`).
    pub struct GnttabCacheFlush: 16 {
        /// `union { uint64_t dev_bus_addr; grant_ref_t ref; } a` (IN).
        a: u64 = 0,
        /// `uint16_t offset` (IN, within the page).
        offset: u16 = 8,
        /// `uint16_t length` (IN).
        length: u16 = 10,
        /// `uint32_t op` (IN, `GNTTAB_CACHE_*`).
        op: u32 = 12,
    }
}

xen_struct! {
    /// `struct gnttab_set_version` (`GNTTABOP_set_version`).
    pub struct GnttabSetVersion: 4 {
        /// `uint32_t version` (IN/OUT).
        version: u32 = 0,
    }
}

xen_struct! {
    /// `struct gnttab_get_version` (`GNTTABOP_get_version`).
    pub struct GnttabGetVersion: 8 {
        /// `domid_t dom` (IN).
        dom: u16 = 0,
        /// `uint16_t pad`.
        pad: u16 = 2,
        /// `uint32_t version` (OUT).
        version: u32 = 4,
    }
}

xen_struct! {
    /// `struct gnttab_copy_ptr` (the `source` / `dest` of a `struct
    /// gnttab_copy`).
    pub struct GnttabCopyPtr: 16 {
        /// `union { grant_ref_t ref; xen_pfn_t gmfn; } u` (IN): a grant
        /// reference (the low 32 bits) with `GNTCOPY_{source,dest}_gref`,
        /// else a frame of the caller.
        u: u64 = 0,
        /// `domid_t domid` (IN).
        domid: u16 = 8,
        /// `uint16_t offset` (IN, within the page).
        offset: u16 = 10,
    }
}

impl GnttabCopyPtr {
    /// `u.ref`: the grant reference member of the union.
    #[must_use]
    pub fn gref(&self) -> u32 {
        self.u as u32
    }
}

xen_struct! {
    /// `struct gnttab_copy` (`GNTTABOP_copy`).
    pub struct GnttabCopy: 40 {
        /// `struct gnttab_copy_ptr source` (IN).
        source: GnttabCopyPtr = 0,
        /// `struct gnttab_copy_ptr dest` (IN).
        dest: GnttabCopyPtr = 16,
        /// `uint16_t len` (IN).
        len: u16 = 32,
        /// `uint16_t flags` (IN, `GNTCOPY_*`).
        flags: u16 = 34,
        /// `int16_t status` (OUT, `GNTST_*`).
        status: i16 = 36,
    }
}

xen_struct! {
    /// `struct gnttab_get_status_frames` (`GNTTABOP_get_status_frames`).
    pub struct GnttabGetStatusFrames: 16 {
        /// `uint32_t nr_frames` (IN).
        nr_frames: u32 = 0,
        /// `domid_t dom` (IN).
        dom: u16 = 4,
        /// `int16_t status` (OUT, `GNTST_*`).
        status: i16 = 6,
        /// `XEN_GUEST_HANDLE(uint64_t) frame_list` (OUT).
        frame_list: u64 = 8,
    }
}

// ---------------------------------------------------------------------------
// hvm_op: xen/include/public/hvm/hvm_op.h
// ---------------------------------------------------------------------------

xen_struct! {
    /// `struct xen_hvm_param` (hvm/hvm_op.h; `HVMOP_set_param`, `HVMOP_get_param`).
    pub struct XenHvmParam: 16 {
        /// `domid_t domid` (IN).
        domid: u16 = 0,
        /// `uint16_t pad`.
        pad: u16 = 2,
        /// `uint32_t index` (IN, `HVM_PARAM_*`).
        index: u32 = 4,
        /// `uint64_t value` (IN/OUT).
        value: u64 = 8,
    }
}

// ---------------------------------------------------------------------------
// xen.h: multicall, shared info, vcpu info
// ---------------------------------------------------------------------------

xen_struct! {
    /// `struct multicall_entry` (xen.h; `__HYPERVISOR_multicall`).
    pub struct MulticallEntry: 64 {
        /// `xen_ulong_t op`.
        op: u64 = 0,
        /// `xen_ulong_t result` (OUT).
        result: u64 = 8,
        /// `xen_ulong_t args[6]`.
        args: [u64; 6] = 16,
    }
}

xen_struct! {
    /// `struct vcpu_time_info` (xen.h).
    pub struct VcpuTimeInfo: 32 {
        /// `uint32_t version`.
        version: u32 = 0,
        /// `uint32_t pad0`.
        pad0: u32 = 4,
        /// `uint64_t tsc_timestamp`.
        tsc_timestamp: u64 = 8,
        /// `uint64_t system_time`.
        system_time: u64 = 16,
        /// `uint32_t tsc_to_system_mul`.
        tsc_to_system_mul: u32 = 24,
        /// `int8_t tsc_shift`.
        tsc_shift: i8 = 28,
        /// `uint8_t flags`.
        flags: u8 = 29,
        /// `uint8_t pad1[2]`.
        pad1: [u8; 2] = 30,
    }
}

xen_struct! {
    /// `struct vcpu_info` (xen.h; `struct arch_vcpu_info` is empty on Arm).
    pub struct VcpuInfo: 48 {
        /// `uint8_t evtchn_upcall_pending`.
        evtchn_upcall_pending: u8 = 0,
        /// `uint8_t evtchn_upcall_mask` (`pad0` on Arm: no PV upcall mask).
        pad0: u8 = 1,
        /// `xen_ulong_t evtchn_pending_sel`.
        evtchn_pending_sel: u64 = 8,
        /// `vcpu_time_info_t time`.
        time: VcpuTimeInfo = 16,
    }
}

/// `XEN_LEGACY_MAX_VCPUS` on Arm (arch-arm.h).
pub const XEN_LEGACY_MAX_VCPUS: usize = 1;

xen_struct! {
    /// `struct shared_info` (xen.h; `struct arch_shared_info` is empty on Arm).
    /// The page is 4 KiB; the structure is its first 1088 bytes.
    pub struct SharedInfo: 1088 {
        /// `struct vcpu_info vcpu_info[XEN_LEGACY_MAX_VCPUS]`.
        vcpu_info: [VcpuInfo; 1] = 0,
        /// `xen_ulong_t evtchn_pending[64]`.
        evtchn_pending: [u64; 64] = 48,
        /// `xen_ulong_t evtchn_mask[64]`.
        evtchn_mask: [u64; 64] = 560,
        /// `uint32_t wc_version`.
        wc_version: u32 = 1072,
        /// `uint32_t wc_sec`.
        wc_sec: u32 = 1076,
        /// `uint32_t wc_nsec`.
        wc_nsec: u32 = 1080,
        /// `uint32_t wc_sec_hi`.
        wc_sec_hi: u32 = 1084,
    }
}

// ---------------------------------------------------------------------------
// hv_op (hypercall 49): hv's own ABI (DESIGN.md, "hv_op"), not Xen's
// ---------------------------------------------------------------------------

xen_struct! {
    /// hv's `struct hv_counters` (`HVOP_get_counters`).
    pub struct HvCounters: 96 {
        /// `uint64_t tlbi[8]`: TLB operations executed, in
        /// `pv_tlb::TlbOpKind::ALL` order.
        tlbi: [u64; 8] = 0,
        /// `uint64_t p2m_ops`: stage-2 operations recorded.
        p2m_ops: u64 = 64,
        /// `uint64_t plans`: flush plans executed.
        plans: u64 = 72,
        /// `uint64_t guest_exits`.
        guest_exits: u64 = 80,
        /// `uint64_t hypercalls`.
        hypercalls: u64 = 88,
    }
}

xen_struct! {
    /// hv's `struct hv_resources` (`HVOP_get_resources`): what hv has handed
    /// out right now (`u64::MAX` where hv cannot know).
    pub struct HvResources: 64 {
        /// Free frames of the guest page pool.
        pool_free: u64 = 0,
        /// Frames of the guest page pool.
        pool_total: u64 = 8,
        /// Free frames of hv's own frame allocator (stage-2 tables).
        hv_frames_free: u64 = 16,
        /// VMIDs allocated to domains.
        vmids_in_use: u64 = 24,
        /// Domains hv holds.
        domains: u64 = 32,
        /// Event channel ports in use over all domains.
        evtchns_in_use: u64 = 40,
        /// Free bytes of hv's heap.
        heap_free: u64 = 48,
        /// Guest page-pool frames some domain owns.
        pool_used: u64 = 56,
    }
}

/// Byte offsets hv reads and writes in place in the shared-info page and in
/// a registered `vcpu_info` (from the structs above, so they cannot drift).
pub mod layout {
    use super::{SharedInfo, VcpuInfo};
    use core::mem::offset_of;
    /// `vcpu_info.evtchn_upcall_pending`.
    pub const VI_UPCALL_PENDING: u64 = offset_of!(VcpuInfo, evtchn_upcall_pending) as u64;
    /// `vcpu_info.evtchn_pending_sel`.
    pub const VI_PENDING_SEL: u64 = offset_of!(VcpuInfo, evtchn_pending_sel) as u64;
    /// `sizeof(struct vcpu_info)`.
    pub const VCPU_INFO_SIZE: u64 = VcpuInfo::SIZE as u64;
    /// `shared_info.evtchn_pending[]`.
    pub const SI_PENDING: u64 = offset_of!(SharedInfo, evtchn_pending) as u64;
    /// `shared_info.evtchn_mask[]`.
    pub const SI_MASK: u64 = offset_of!(SharedInfo, evtchn_mask) as u64;
    /// `shared_info.wc_version`.
    pub const SI_WC_VERSION: u64 = offset_of!(SharedInfo, wc_version) as u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known bytes decode to the named fields and encode back identically
    /// (so `from_bytes`/`to_bytes` use the asserted offsets, little-endian).
    #[test]
    fn add_to_physmap_batch_bytes_are_xens() {
        let mut b = [0u8; 32];
        b[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
        b[2..4].copy_from_slice(&4u16.to_le_bytes());
        b[4..6].copy_from_slice(&3u16.to_le_bytes());
        b[6..8].copy_from_slice(&7u16.to_le_bytes());
        b[8..16].copy_from_slice(&0x1000u64.to_le_bytes());
        b[16..24].copy_from_slice(&0x2000u64.to_le_bytes());
        b[24..32].copy_from_slice(&0x3000u64.to_le_bytes());
        let x = XenAddToPhysmapBatch::from_bytes(&b);
        assert_eq!(
            x,
            XenAddToPhysmapBatch {
                domid: 0x7ff0,
                space: 4,
                size: 3,
                foreign_domid: 7,
                idxs: 0x1000,
                gpfns: 0x2000,
                errs: 0x3000
            }
        );
        assert_eq!(x.to_bytes(), b);
    }

    #[test]
    fn padding_encodes_as_zero_and_is_ignored() {
        let mut b = [0xffu8; 32];
        let r = XenMemoryReservation::from_bytes(&b);
        assert_eq!(r.domid, 0xffff);
        assert_eq!(r.extent_order, u32::MAX);
        let out = r.to_bytes();
        assert_eq!(&out[26..32], &[0; 6], "tail padding after domid");
        b[26..32].fill(0);
        assert_eq!(out, b);
    }

    #[test]
    fn domctl_members_sit_in_the_union() {
        let mut d = XenDomctl::new(domctl_cmd::CREATEDOMAIN, 5);
        let c = XenDomctlCreatedomain {
            flags: 3,
            max_vcpus: 2,
            grant_opts: 1,
            arch: XenArchDomainconfig {
                gic_version: 2,
                nr_spis: 32,
                ..Default::default()
            },
            ..Default::default()
        };
        d.set_member(&c);
        let b = d.to_bytes();
        assert_eq!(&b[0..4], &1u32.to_le_bytes());
        assert_eq!(&b[4..8], &0x17u32.to_le_bytes());
        assert_eq!(&b[8..10], &5u16.to_le_bytes());
        assert_eq!(&b[16 + 20..16 + 24], &3u32.to_le_bytes(), "flags");
        assert_eq!(&b[16 + 28..16 + 32], &2u32.to_le_bytes(), "max_vcpus");
        assert_eq!(b[16 + 60], 2, "arch.gic_version");
        assert_eq!(&b[16 + 64..16 + 68], &32u32.to_le_bytes(), "arch.nr_spis");
        let back = XenDomctl::from_bytes(&b);
        assert_eq!(back.member::<XenDomctlCreatedomain>(), c);
        // A smaller member clears what a bigger one left.
        d.set_member(&XenDomctlMaxVcpus { max: 9 });
        assert_eq!(d.member::<XenDomctlCreatedomain>().flags, 0);
        assert_eq!(d.member::<XenDomctlMaxVcpus>().max, 9);
    }

    #[test]
    fn vcpu_guest_context_offsets_are_the_ones_setvcpucontext_reads() {
        let mut c = VcpuGuestContext::default();
        c.user_regs.x[0] = 0xa;
        c.user_regs.x[30] = 0xb;
        c.user_regs.pc64 = 0x4008_0000;
        c.user_regs.cpsr = 0x3c5;
        c.user_regs.sp_el1 = 0x11;
        c.ttbr1 = 0x22;
        let b = c.to_bytes();
        let at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!(at(8), 0xa);
        assert_eq!(at(8 + 240), 0xb);
        assert_eq!(at(8 + 248), 0x4008_0000);
        assert_eq!(at(8 + 256), 0x3c5);
        assert_eq!(at(8 + 296), 0x11);
        assert_eq!(at(344), 0x22);
        assert_eq!(VcpuGuestContext::from_bytes(&b), c);
    }

    #[test]
    fn short_or_misplaced_input_reads_zero_and_writes_nothing() {
        assert_eq!(u64::get(&[1, 2, 3], 0), 0);
        assert_eq!(u32::get(&[1, 2, 3, 4], usize::MAX), 0);
        let mut b = [9u8; 3];
        0x1234_5678u32.put(&mut b, 0);
        assert_eq!(b, [9; 3]);
    }

    /// The in-place offsets hv's event channels use (hv/src/xen/evtchn.rs
    /// `layout`), spelled as numbers once more.
    #[test]
    fn shared_info_layout_is_arm64s() {
        assert_eq!(layout::VCPU_INFO_SIZE, 48);
        assert_eq!(layout::SI_PENDING, 48);
        assert_eq!(layout::SI_MASK, 48 + 512);
        assert_eq!(layout::VI_PENDING_SEL, 8);
        assert_eq!(layout::VI_UPCALL_PENDING, 0);
        assert_eq!(layout::SI_WC_VERSION, 1072);
    }
}
