//! Domains: id, VMID, stage-2 table, RAM, kernel loading and teardown.

pub mod build;
pub mod dtb;

use alloc::vec::Vec;
use core::fmt;

use memops::physmap::P2mKind;
use memops::{FrameTable, Physmap, S2Attrs, Stage2, TableMem};
use pv_tlb::DeferredFlush;
#[cfg(test)]
use pv_tlb::TlbOp;
use pv_tlb::{Ipa, PhysAddr, Vmid, PAGE_SIZE};

use crate::arch::{Arch, PhysMem, Stage2Regs};
use crate::guest::{GuestMemError, GuestMemory};
use crate::xen::console::ConsoleLine;

/// Start of guest RAM bank 0 (Xen's `GUEST_RAM0_BASE`, public/arch-arm.h).
pub const GUEST_RAM0_BASE: u64 = 0x4000_0000;
/// Size of guest RAM bank 0 (Xen's `GUEST_RAM0_SIZE`: 3 GiB).
pub const GUEST_RAM0_SIZE: u64 = 0xc000_0000;
/// Start of guest RAM bank 1 (Xen's `GUEST_RAM1_BASE`): RAM beyond bank 0's
/// 3 GiB continues here.
pub const GUEST_RAM1_BASE: u64 = 0x02_0000_0000;
/// Size of guest RAM bank 1 (Xen's `GUEST_RAM1_SIZE`: 1016 GiB).
pub const GUEST_RAM1_SIZE: u64 = 0xfe_0000_0000;

/// The guest RAM banks `(IPA, bytes)` of a domain with `ram_bytes` of RAM,
/// as Xen lays a domU out (public/arch-arm.h `GUEST_RAM_BANK_BASES`): bank 0
/// first, the rest in bank 1 (empty when it all fits bank 0).
#[must_use]
pub const fn ram_banks(ram_bytes: u64) -> [(u64, u64); 2] {
    let b0 = if ram_bytes < GUEST_RAM0_SIZE {
        ram_bytes
    } else {
        GUEST_RAM0_SIZE
    };
    [(GUEST_RAM0_BASE, b0), (GUEST_RAM1_BASE, ram_bytes - b0)]
}

/// RAM a domain gets unless told otherwise.
pub const DEFAULT_RAM_BYTES: u64 = 16 << 20;
/// Smallest RAM hv builds a domain with.
pub const MIN_RAM_BYTES: u64 = 1 << 20;

pub use crate::arch::FrameSource;

/// A domain id (`d<N>` in logs; 0 is reserved for a control domain).
pub type DomId = u16;

/// The most domains hv holds at once (built at boot and by `createdomain`,
/// ended ones included until destroyed). Xen's bound is its domid space
/// (`DOMID_FIRST_RESERVED`, 0x7ff0) and memory; hv's is lower and fixed so
/// that a control domain cannot make hv's domain list grow without end.
pub const MAX_DOMAINS: usize = 1024;

/// Why building a domain failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DomainError {
    /// Every VMID is in use.
    NoVmid,
    /// Not enough frames for the domain's RAM.
    OutOfMemory {
        /// Bytes requested.
        bytes: u64,
    },
    /// hv's heap cannot hold the domain's bookkeeping (a physmap record per
    /// page of RAM) above its reserve ([`crate::mm::heap`]).
    HeapFull {
        /// Bytes of RAM requested.
        bytes: u64,
        /// Heap bytes the domain would need.
        need: usize,
    },
    /// hv holds [`MAX_DOMAINS`] domains already.
    TooManyDomains,
    /// The requested RAM size is unusable (too small, not page-multiple, above bank 0).
    BadRamSize {
        /// Bytes requested.
        bytes: u64,
    },
    /// Building the stage-2 table failed.
    Stage2(memops::Error),
    /// The kernel does not fit in the domain's RAM.
    KernelTooBig {
        /// Bytes the kernel needs from the RAM base (text_offset + size).
        needed: u64,
        /// RAM size.
        ram: u64,
    },
    /// Copying the kernel into guest memory failed.
    Copy(GuestMemError),
    /// dom0's device tree could not be derived from the host's
    /// ([`crate::hostdt::derive`]), or it and the initrd fit nowhere in bank 0.
    Dom0Dt(&'static str),
    /// The DTB and ramdisk do not fit between the kernel and the end of RAM.
    NoRoomForBootData {
        /// First free IPA after the kernel.
        kernel_end: Ipa,
        /// Bytes of ramdisk.
        ramdisk: u64,
    },
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainError::NoVmid => write!(f, "no free VMID"),
            DomainError::OutOfMemory { bytes } => {
                write!(f, "out of memory for {bytes:#x} bytes of RAM")
            }
            DomainError::HeapFull { bytes, need } => write!(
                f,
                "hv's heap has no room for the records of {bytes:#x} bytes of RAM ({need} bytes)"
            ),
            DomainError::TooManyDomains => write!(f, "hv holds {MAX_DOMAINS} domains already"),
            DomainError::BadRamSize { bytes } => write!(f, "unusable RAM size {bytes:#x}"),
            DomainError::Stage2(e) => write!(f, "stage-2: {e}"),
            DomainError::KernelTooBig { needed, ram } => {
                write!(
                    f,
                    "kernel needs {needed:#x} bytes from the RAM base, RAM is {ram:#x}"
                )
            }
            DomainError::Copy(e) => write!(f, "copying into guest RAM: {e}"),
            DomainError::Dom0Dt(e) => write!(f, "dom0's device tree: {e}"),
            DomainError::NoRoomForBootData {
                kernel_end,
                ramdisk,
            } => {
                write!(f, "no room for the DTB and a {ramdisk:#x}-byte ramdisk above the kernel (ends at {kernel_end})")
            }
        }
    }
}

/// VMID allocator over the CPU's VMID width.
///
/// VMID 0 is never handed out. Allocation searches round-robin from the last
/// VMID handed out (rolling over from the top of the space back to 1), so a
/// freed VMID is reused as late as possible; when every VMID is in use,
/// [`VmidAllocator::alloc`] fails instead of stealing one. A domain's VMID is
/// flushed ([`Domain::destroy`]) before it is freed, so a reused VMID never
/// finds stale translations.
pub struct VmidAllocator {
    used: Vec<bool>,
    next: usize,
}

impl VmidAllocator {
    /// An allocator for `bits`-wide VMIDs (2..=16).
    #[must_use]
    pub fn new(bits: u8) -> Self {
        let n = 1usize << bits.clamp(1, 16);
        let mut used = alloc::vec![false; n];
        used[0] = true;
        Self { used, next: 1 }
    }

    /// A free VMID.
    ///
    /// # Errors
    /// [`DomainError::NoVmid`] when every VMID is in use.
    pub fn alloc(&mut self) -> Result<Vmid, DomainError> {
        let n = self.used.len();
        for i in 0..n {
            let v = (self.next + i) % n;
            if !self.used[v] {
                self.used[v] = true;
                self.next = (v + 1) % n;
                return Ok(Vmid(v as u16));
            }
        }
        Err(DomainError::NoVmid)
    }

    /// Give back `vmid` (its TLB entries must already be gone).
    pub fn free(&mut self, vmid: Vmid) {
        if let Some(u) = self.used.get_mut(usize::from(vmid.0)) {
            if vmid.0 != 0 {
                *u = false;
            }
        }
    }

    /// VMIDs in use (0 not counted).
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.used.iter().filter(|u| **u).count() - 1
    }
}

/// How a domain ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EndReason {
    /// `SCHEDOP_shutdown` with a reason.
    Shutdown(crate::xen::ShutdownReason),
    /// PSCI `SYSTEM_OFF` from the guest.
    PsciSystemOff,
    /// PSCI `SYSTEM_RESET` from the guest (hv does not restart domains).
    PsciSystemReset,
    /// Every vCPU called PSCI `CPU_OFF`.
    AllVcpusOff,
    /// A stage-2 fault outside the domain's memory.
    Stage2Fault {
        /// The faulting IPA.
        ipa: Ipa,
    },
    /// An exit hv cannot handle.
    UnhandledExit {
        /// `ESR_EL2.EC`.
        ec: u8,
    },
    /// `XEN_DOMCTL_destroydomain` from the control domain.
    Destroyed,
}

impl EndReason {
    /// The `SHUTDOWN_*` code a toolstack sees (`XEN_DOMINF_shutdown`).
    #[must_use]
    pub const fn shutdown_code(self) -> u32 {
        use crate::xen::abi::shutdown;
        match self {
            EndReason::Shutdown(r) => r as u32,
            EndReason::PsciSystemOff | EndReason::AllVcpusOff | EndReason::Destroyed => {
                shutdown::POWEROFF
            }
            EndReason::PsciSystemReset => shutdown::REBOOT,
            EndReason::Stage2Fault { .. } | EndReason::UnhandledExit { .. } => shutdown::CRASH,
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::Shutdown(r) => write!(f, "{r}"),
            EndReason::PsciSystemOff => write!(f, "PSCI SYSTEM_OFF"),
            EndReason::PsciSystemReset => write!(f, "PSCI SYSTEM_RESET"),
            EndReason::AllVcpusOff => write!(f, "all vCPUs off"),
            EndReason::Stage2Fault { ipa } => write!(f, "stage-2 fault at IPA {ipa}"),
            EndReason::UnhandledExit { ec } => write!(f, "unhandled exit, EC {ec:#04x}"),
            EndReason::Destroyed => write!(f, "destroyed by the control domain"),
        }
    }
}

/// One contiguous piece of a domain's RAM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RamChunk {
    /// Guest address.
    pub ipa: Ipa,
    /// Host address.
    pub pa: PhysAddr,
    /// Number of 4 KiB frames.
    pub pages: u64,
}

/// A domain: address space, RAM and bookkeeping (vCPUs live in the scheduler).
pub struct Domain {
    /// The domain id.
    pub id: DomId,
    vmid: Vmid,
    physmap: Physmap,
    ram: Vec<RamChunk>,
    ram_bytes: u64,
    /// A direct-mapped domain's RAM banks `(IPA == PA, bytes)` in address
    /// order (empty: Xen's guest layout, [`ram_banks`]).
    direct: Vec<(u64, u64)>,
    /// Xen's `xen_domain_handle_t` (a UUID; hv derives it from the id).
    pub handle: [u8; 16],
    /// A privileged (control) domain.
    pub privileged: bool,
    /// The partial console line.
    pub console: ConsoleLine,
    /// Set once the domain is ending; its vCPUs stop at their next exit.
    pub ending: Option<EndReason>,
    /// vCPUs not yet stopped (the domain is destroyed when this reaches 0).
    pub live_vcpus: u32,
    /// Built through `XEN_DOMCTL_createdomain`: it stays (shut down) after its
    /// vCPUs stop, until the control domain destroys it.
    pub from_domctl: bool,
    /// `XEN_DOMCTL_max_vcpus`.
    pub max_vcpus: u32,
    /// vCPU contexts from `XEN_DOMCTL_setvcpucontext` (with their
    /// `VGCF_online` flag), until unpaused: vCPU 0 and the online ones run
    /// then, the others wait for PSCI CPU_ON.
    pub vcpu_contexts: Vec<(alloc::boxed::Box<crate::vcpu::Vcpu>, bool)>,
    /// Unpaused at least once (its vCPUs were queued): Xen's `creation_finished`.
    pub unpaused: bool,
    /// Xen's `controller_pause_count`: pauses by the control domain
    /// (`XEN_DOMCTL_pausedomain`) not yet undone; 1 from `createdomain`
    /// until the toolstack's first unpause. While it is non-zero no vCPU of
    /// the domain is scheduled.
    pub pause_count: u32,
    /// vCPUs the run loop took off the scheduler because the domain is
    /// paused ([`Domain::pause_count`]); queued again at the last unpause,
    /// dropped if the domain ends meanwhile. They still count in
    /// [`Domain::live_vcpus`].
    pub paused_vcpus: Vec<alloc::boxed::Box<crate::vcpu::Vcpu>>,
    /// Xen-interface state: event channels, grant table, console ring ([`crate::xen::domu`]).
    pub xen: crate::xen::domu::DomainXen,
    /// The domain's virtual GICv3 (shared with its vCPUs; see [`crate::vgic`]).
    pub vgic: alloc::sync::Arc<crate::vgic::Vgic>,
    /// The toolstack's settings that hv records and reports back but does
    /// not act on (scheduler parameters, P2M pool size).
    pub ctl: DomainCtl,
}

/// What `XEN_DOMCTL_scheduler_op` and `XEN_DOMCTL_set_paging_mempool_size`
/// set: reported back as Xen does, not enforced (hv's run queue has no
/// weights or caps, and stage-2 tables come from hv's shared table pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainCtl {
    /// credit2 weight (Xen's `CSCHED2_DEFAULT_WEIGHT` 256 until set).
    pub weight: u16,
    /// credit2 cap (percent of one pCPU; 0 = none).
    pub cap: u32,
    /// The P2M pool size in bytes (page multiple).
    pub paging_mempool: u64,
}

impl Default for DomainCtl {
    fn default() -> Self {
        Self {
            weight: 256,
            cap: 0,
            paging_mempool: 0,
        }
    }
}

/// The arm64 `Image` header magic (`ARM\x64` at offset 56), Linux's
/// Documentation/arch/arm64/booting.rst.
pub const ARM64_IMAGE_MAGIC: u32 = 0x644d_5241;

/// Reads bytes `[off, off + buf.len())` of a boot image into `buf`.
pub type ImageReader<'r, M> = &'r mut dyn FnMut(&M, u64, &mut [u8]);

/// Where a loaded kernel sits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KernelPlacement {
    /// The entry point (the load address).
    pub entry: Ipa,
    /// First IPA after the kernel (its `image_size` for an Image, BSS included).
    pub end: Ipa,
}

/// True if `header` carries the arm64 `Image` magic.
#[must_use]
pub fn is_arm64_image(header: &[u8]) -> bool {
    header.get(56..60) == Some(&ARM64_IMAGE_MAGIC.to_le_bytes()[..])
}

/// True if `header` is an arm64 `Image` whose flags say it may sit anywhere
/// in physical memory (bit 3, "physical placement independence", Linux's
/// Documentation/arch/arm64/booting.rst; Linux sets it since 4.6). Only such a
/// kernel can run direct-mapped at wherever its RAM bank lies; hv's bare test
/// payloads (flags 0x2, linked at Xen's guest RAM base) cannot.
#[must_use]
pub fn is_relocatable_image(header: &[u8]) -> bool {
    is_arm64_image(header)
        && header
            .get(24..32)
            .and_then(|b| b.try_into().ok())
            .is_some_and(|b: [u8; 8]| u64::from_le_bytes(b) & 8 != 0)
}

/// Where a kernel goes: offset from the RAM base of the load address.
/// An arm64 `Image` (magic at 56) loads at `text_offset` (bytes 8..16);
/// anything else is a raw binary loaded at the RAM base.
#[must_use]
pub fn kernel_load_offset(header: &[u8]) -> u64 {
    let word = |at: usize, n: usize| -> Option<u64> {
        let b = header.get(at..at + n)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    };
    match (word(56, 4), word(8, 8)) {
        (Some(m), Some(text_offset)) if m == u64::from(ARM64_IMAGE_MAGIC) => text_offset,
        _ => 0,
    }
}

/// The smallest run of a direct-mapped domain's RAM (a stage-2 block).
pub const DIRECT_BLOCK: u64 = 2 << 20;
/// The most banks a direct-mapped domain's RAM is split into (Xen's
/// `NR_MEM_BANKS` is larger; hv's pool is one contiguous carve, so a few suffice).
pub const MAX_DIRECT_BANKS: usize = 64;

/// Take `bytes` (a multiple of [`DIRECT_BLOCK`]) of contiguous RAM from the
/// pool for `owner`, as Xen's `allocate_memory_11` does for dom0: the
/// largest naturally aligned power-of-two run that fits what is left (at most
/// 1 GiB, the pool's largest order; at least 2 MiB), then the next, each
/// order tried down to 2 MiB; the pool gives the lowest run free (below
/// 4 GiB first when it spans it, as Xen wants bank 0 for 32-bit DMA).
/// Returns the banks `(base, bytes)` sorted and with adjacent runs merged.
/// Each frame holds its one allocation reference; nothing is zeroed here.
///
/// # Errors
/// [`DomainError::OutOfMemory`] (everything taken is given back).
pub fn alloc_direct(
    pool: &mut FrameTable,
    owner: DomId,
    bytes: u64,
) -> Result<Vec<(u64, u64)>, DomainError> {
    const MIN_ORDER: u32 = 9;
    const MAX_ORDER: u32 = 18;
    let oom = DomainError::OutOfMemory { bytes };
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let give_back = |pool: &mut FrameTable, runs: &[(u64, u64)]| {
        for &(base, n) in runs {
            for i in 0..n / PAGE_SIZE {
                let _ = pool.put(PhysAddr(base + i * PAGE_SIZE));
            }
        }
    };
    let mut left = bytes / PAGE_SIZE;
    if !bytes.is_multiple_of(DIRECT_BLOCK) || left == 0 {
        return Err(DomainError::BadRamSize { bytes });
    }
    while left > 0 {
        let mut order = (63 - left.leading_zeros()).min(MAX_ORDER);
        let got = loop {
            if order < MIN_ORDER {
                break None;
            }
            if let Ok(pa) = pool.alloc(owner, order) {
                break Some((pa.0, PAGE_SIZE << order));
            }
            order -= 1;
        };
        let Some(run) = got else {
            give_back(pool, &runs);
            return Err(oom);
        };
        if runs.try_reserve(1).is_err() {
            give_back(pool, &runs);
            give_back(pool, &[run]);
            return Err(oom);
        }
        runs.push(run);
        left -= run.1 / PAGE_SIZE;
    }
    runs.sort_unstable();
    let mut banks: Vec<(u64, u64)> = Vec::new();
    for r in &runs {
        match banks.last_mut() {
            Some(b) if b.0 + b.1 == r.0 => b.1 += r.1,
            _ => banks.push(*r),
        }
    }
    if banks.len() > MAX_DIRECT_BANKS {
        give_back(pool, &runs);
        return Err(oom);
    }
    Ok(banks)
}

/// Where a direct-mapped domain's DTB and initrd go, as Xen's
/// `place_modules` (xen/arch/arm/kernel.c): both 2 MiB-rounded, DTB first
/// then the initrd, at bank 0 + 128 MiB when that is above the kernel and
/// fits, else at the top of bank 0 above the 2 MiB-rounded kernel, else below
/// the kernel. `bank0` is `(base, bytes)`, `kernel` `[start, end)`.
/// Returns `(dtb, initrd)` addresses, `None` if they fit nowhere.
#[must_use]
pub fn place_modules(
    bank0: (u64, u64),
    kernel: (u64, u64),
    initrd_bytes: u64,
    dtb_bytes: u64,
) -> Option<(u64, u64)> {
    let round = |n: u64| n.checked_next_multiple_of(DIRECT_BLOCK);
    let initrd_len = round(initrd_bytes)?;
    let dtb_len = round(dtb_bytes)?;
    let modsize = initrd_len.checked_add(dtb_len)?;
    let (rambase, ramsize) = bank0;
    let ramend = rambase.checked_add(ramsize)?;
    let (kernbase, kernend) = kernel;
    let kernsize = round(kernend)?.checked_sub(kernbase)?;
    let ram128mb = rambase.checked_add(128 << 20)?;
    if modsize.checked_add(kernsize)? > ramsize {
        return None;
    }
    let modbase = if ramend >= ram128mb.checked_add(modsize)? && kernend < ram128mb {
        ram128mb
    } else if ramend - modsize > round(kernend)? {
        ramend - modsize
    } else if kernbase.checked_sub(rambase)? > modsize {
        kernbase - modsize
    } else {
        return None;
    };
    Some((modbase, modbase + dtb_len))
}

impl Domain {
    /// Build a domain: a VMID, an empty physmap (stage-2 table of
    /// `ipa_bits`), and `ram_bytes` of zeroed RAM from the guest page pool
    /// mapped at [`GUEST_RAM0_BASE`] (2 MiB runs where the pool has them, so
    /// stage-2 uses blocks). The reservation limit is the initial RAM.
    ///
    /// # Errors
    /// [`DomainError`]; everything taken so far is given back.
    pub fn create<M: PhysMem + TableMem>(
        id: DomId,
        ram_bytes: u64,
        ipa_bits: u8,
        vmids: &mut VmidAllocator,
        mem: &mut M,
        pool: &mut FrameTable,
    ) -> Result<Domain, DomainError> {
        let [_, (b1, b1_size)] = ram_banks(ram_bytes);
        if ram_bytes < MIN_RAM_BYTES
            || !ram_bytes.is_multiple_of(PAGE_SIZE)
            || ram_bytes > GUEST_RAM0_SIZE + GUEST_RAM1_SIZE
            || (b1_size > 0 && b1 + b1_size > 1u64 << ipa_bits.min(63))
        {
            return Err(DomainError::BadRamSize { bytes: ram_bytes });
        }
        Self::create_inner(id, ram_bytes, ipa_bits, vmids, mem, pool)
    }

    /// An empty domain for `XEN_DOMCTL_createdomain`: a VMID and an empty
    /// physmap with a reservation of 0 pages (`XEN_DOMCTL_max_mem` raises it;
    /// the toolstack populates it with `XENMEM_populate_physmap`).
    ///
    /// # Errors
    /// [`DomainError::NoVmid`], [`DomainError::Stage2`].
    pub fn create_empty<M: PhysMem + TableMem>(
        id: DomId,
        ipa_bits: u8,
        vmids: &mut VmidAllocator,
        mem: &mut M,
        pool: &mut FrameTable,
    ) -> Result<Domain, DomainError> {
        let mut d = Self::create_inner(id, 0, ipa_bits, vmids, mem, pool)?;
        d.from_domctl = true;
        // Xen's domain_create: controller_pause_count = 1 until the
        // toolstack's first unpause.
        d.pause_count = 1;
        Ok(d)
    }

    /// A direct-mapped domain (Xen's hardware domain on Arm,
    /// `allocate_memory_11`): `ram_bytes` of zeroed RAM taken from the guest
    /// page pool as naturally aligned power-of-two runs ([`alloc_direct`])
    /// and mapped at IPA == PA. Its banks are [`Domain::banks`].
    ///
    /// # Errors
    /// [`DomainError::BadRamSize`] (not a multiple of 2 MiB, or a bank past
    /// `ipa_bits`), [`DomainError::OutOfMemory`], [`DomainError::Stage2`];
    /// everything taken so far is given back.
    pub fn create_direct<M: PhysMem + TableMem>(
        id: DomId,
        ram_bytes: u64,
        ipa_bits: u8,
        vmids: &mut VmidAllocator,
        mem: &mut M,
        pool: &mut FrameTable,
    ) -> Result<Domain, DomainError> {
        if ram_bytes < DIRECT_BLOCK || !ram_bytes.is_multiple_of(DIRECT_BLOCK) {
            return Err(DomainError::BadRamSize { bytes: ram_bytes });
        }
        let runs = alloc_direct(pool, id, ram_bytes)?;
        let top = 1u64 << ipa_bits.min(63);
        let give_back = |pool: &mut FrameTable, runs: &[(u64, u64)]| {
            for &(base, bytes) in runs {
                for i in 0..bytes / PAGE_SIZE {
                    let _ = pool.put(PhysAddr(base + i * PAGE_SIZE));
                }
            }
        };
        if runs.iter().any(|&(b, n)| b + n > top) {
            give_back(pool, &runs);
            return Err(DomainError::BadRamSize { bytes: ram_bytes });
        }
        let mut d = match Self::create_inner(id, 0, ipa_bits, vmids, mem, pool) {
            Ok(d) => d,
            Err(e) => {
                give_back(pool, &runs);
                return Err(e);
            }
        };
        d.ram_bytes = ram_bytes;
        d.physmap.set_max_pages(ram_bytes / PAGE_SIZE);
        for (mapped, &(base, bytes)) in runs.iter().enumerate() {
            let pages = bytes / PAGE_SIZE;
            for i in 0..pages {
                mem.zero_frame(PhysAddr(base + i * PAGE_SIZE));
            }
            // A fresh mapping of never-mapped IPAs: nothing to invalidate.
            if let Err(e) = d.physmap.insert(
                mem,
                base / PAGE_SIZE,
                PhysAddr(base),
                pages,
                P2mKind::Ram,
                S2Attrs::RAM,
            ) {
                // The runs not mapped yet go back here; the mapped ones with the physmap.
                give_back(pool, &runs[mapped..]);
                d.discard(mem, pool, vmids);
                return Err(DomainError::Stage2(e));
            }
            d.ram.push(RamChunk {
                ipa: Ipa(base),
                pa: PhysAddr(base),
                pages,
            });
        }
        d.direct = runs;
        Ok(d)
    }

    fn create_inner<M: PhysMem + TableMem>(
        id: DomId,
        ram_bytes: u64,
        ipa_bits: u8,
        vmids: &mut VmidAllocator,
        mem: &mut M,
        pool: &mut FrameTable,
    ) -> Result<Domain, DomainError> {
        let vmid = vmids.alloc()?;
        let physmap = match Physmap::new(mem, id, ipa_bits, ram_bytes / PAGE_SIZE) {
            Ok(p) => p,
            Err(e) => {
                vmids.free(vmid);
                return Err(DomainError::Stage2(e));
            }
        };
        let mut handle = [0u8; 16];
        handle[14..16].copy_from_slice(&id.to_be_bytes());
        let mut d = Domain {
            id,
            vmid,
            physmap,
            ram: Vec::new(),
            ram_bytes,
            direct: Vec::new(),
            handle,
            privileged: false,
            console: ConsoleLine::default(),
            ending: None,
            live_vcpus: 0,
            from_domctl: false,
            max_vcpus: 1,
            vcpu_contexts: Vec::new(),
            unpaused: false,
            pause_count: 0,
            paused_vcpus: Vec::new(),
            xen: crate::xen::domu::DomainXen::default(),
            vgic: alloc::sync::Arc::new(crate::vgic::Vgic::new(id, 1)),
            ctl: DomainCtl::default(),
        };
        if let Err(e) = d.populate(mem, pool) {
            d.discard(mem, pool, vmids);
            return Err(e);
        }
        Ok(d)
    }

    fn populate<M: PhysMem + TableMem>(
        &mut self,
        mem: &mut M,
        pool: &mut FrameTable,
    ) -> Result<(), DomainError> {
        let oom = DomainError::OutOfMemory {
            bytes: self.ram_bytes,
        };
        for (base, bytes) in ram_banks(self.ram_bytes) {
            self.populate_bank(mem, pool, base / PAGE_SIZE, bytes / PAGE_SIZE, oom)?;
        }
        Ok(())
    }

    fn populate_bank<M: PhysMem + TableMem>(
        &mut self,
        mem: &mut M,
        pool: &mut FrameTable,
        first_gfn: u64,
        pages: u64,
        oom: DomainError,
    ) -> Result<(), DomainError> {
        const BLOCK_ORDER: u32 = 9;
        const BLOCK: u64 = 1 << BLOCK_ORDER;
        let mut left = pages;
        let mut gfn = first_gfn;
        while left > 0 {
            // The chunk list grows fallibly (one entry per run of contiguous
            // frames: a fragmented pool cannot make hv's heap overflow).
            self.ram.try_reserve(1).map_err(|_| oom)?;
            let (pa, pages) = match (left >= BLOCK)
                .then(|| pool.alloc(self.id, BLOCK_ORDER).ok())
                .flatten()
            {
                Some(pa) => (pa, BLOCK),
                None => (pool.alloc(self.id, 0).map_err(|_| oom)?, 1),
            };
            for i in 0..pages {
                mem.zero_frame(PhysAddr(pa.0 + i * PAGE_SIZE));
            }
            // A fresh mapping of never-mapped IPAs leaves nothing to invalidate.
            if let Err(e) = self
                .physmap
                .insert(mem, gfn, pa, pages, P2mKind::Ram, S2Attrs::RAM)
            {
                // Not recorded in the physmap: give the frames back here.
                for i in 0..pages {
                    let _ = pool.put(PhysAddr(pa.0 + i * PAGE_SIZE));
                }
                return Err(DomainError::Stage2(e));
            }
            let ipa = Ipa::from_page_number(gfn);
            match self.ram.last_mut() {
                Some(c)
                    if c.ipa.0 + c.pages * PAGE_SIZE == ipa.0
                        && c.pa.0 + c.pages * PAGE_SIZE == pa.0 =>
                {
                    c.pages += pages;
                }
                _ => self.ram.push(RamChunk { ipa, pa, pages }),
            }
            gfn += pages;
            left -= pages;
        }
        Ok(())
    }

    /// Copy `size` bytes read by `image(mem, offset, buf)` into guest RAM at `ipa`.
    ///
    /// # Errors
    /// [`DomainError::Copy`] if the range is not writable guest RAM.
    pub fn copy_in<M: PhysMem + TableMem>(
        &mut self,
        mem: &mut M,
        ipa: Ipa,
        size: u64,
        image: &mut dyn FnMut(&M, u64, &mut [u8]),
    ) -> Result<(), DomainError> {
        let mut buf = [0u8; PAGE_SIZE as usize];
        let mut done = 0u64;
        while done < size {
            let n = (size - done).min(PAGE_SIZE) as usize;
            image(mem, done, &mut buf[..n]);
            let at = ipa
                .checked_add(done)
                .ok_or(DomainError::Copy(GuestMemError::Overflow {
                    ipa,
                    len: size,
                }))?;
            let mut gm = GuestMemory::new(self.physmap.stage2(), mem);
            gm.copy_to_guest(at, &buf[..n]).map_err(DomainError::Copy)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Copy a kernel into RAM: an arm64 `Image` at RAM base + `text_offset`,
    /// anything else at the RAM base. `image` reads the kernel's bytes
    /// `[off, off + buf.len())` (e.g. from a boot module in host RAM).
    ///
    /// # Errors
    /// [`DomainError::KernelTooBig`] if text_offset + size passes the end of RAM;
    /// [`DomainError::Copy`] if the copy fails.
    pub fn load_kernel<M: PhysMem + TableMem>(
        &mut self,
        mem: &mut M,
        size: u64,
        image: &mut dyn FnMut(&M, u64, &mut [u8]),
    ) -> Result<KernelPlacement, DomainError> {
        let mut header = [0u8; 64];
        let hlen = size.min(64) as usize;
        image(mem, 0, &mut header[..hlen]);
        let offset = kernel_load_offset(&header[..hlen]);
        // An Image's `image_size` (bytes 16..24) covers its BSS too.
        let image_size = if offset != 0 || is_arm64_image(&header[..hlen]) {
            u64::from_le_bytes(header[16..24].try_into().unwrap_or([0; 8]))
        } else {
            0
        };
        let span = size.max(image_size);
        let needed = offset.saturating_add(span);
        let (base0, bank0) = self.bank0();
        if needed > bank0 {
            return Err(DomainError::KernelTooBig { needed, ram: bank0 });
        }
        let load = Ipa(base0 + offset);
        self.copy_in(mem, load, size, image)?;
        Ok(KernelPlacement {
            entry: load,
            end: Ipa(load.0 + span),
        })
    }

    /// Place the boot data a module-booted guest gets (as Xen does for dom0):
    /// a ramdisk (if any) and the guest DTB ([`dtb::GuestDtb`]: memory,
    /// bootargs, initrd range) at the top of RAM, above the kernel. The DTB
    /// starts the last 2 MiB of RAM (the last 64 KiB below 4 MiB of RAM); the
    /// ramdisk ends just below it, page aligned. Returns the DTB's IPA (x0).
    ///
    /// # Errors
    /// [`DomainError::NoRoomForBootData`] if they would overlap the kernel;
    /// [`DomainError::Copy`] if a copy fails.
    pub fn load_boot_data<M: PhysMem + TableMem>(
        &mut self,
        mem: &mut M,
        kernel_end: Ipa,
        bootargs: Option<&str>,
        ramdisk: Option<(u64, ImageReader<'_, M>)>,
    ) -> Result<Ipa, DomainError> {
        // At the top of bank 0 (below 4 GiB, as Xen keeps them).
        let bank0 = ram_banks(self.ram_bytes)[0].1;
        let ram_end = GUEST_RAM0_BASE + bank0;
        let dtb_ipa = if bank0 >= 4 << 20 {
            ram_end - (2 << 20)
        } else {
            ram_end - (64 << 10)
        };
        let rd_size = ramdisk.as_ref().map_or(0, |r| r.0);
        let no_room = DomainError::NoRoomForBootData {
            kernel_end,
            ramdisk: rd_size,
        };
        let rd_start = dtb_ipa.checked_sub(rd_size).ok_or(no_room)? & !(PAGE_SIZE - 1);
        if rd_start < kernel_end.0 || dtb_ipa < kernel_end.0 {
            return Err(no_room);
        }
        let initrd = match ramdisk {
            Some((size, read)) => {
                self.copy_in(mem, Ipa(rd_start), size, read)?;
                Some((rd_start, rd_start + size))
            }
            None => None,
        };
        let blob = dtb::GuestDtb {
            ram_base: GUEST_RAM0_BASE,
            ram_size: self.ram_bytes,
            bootargs,
            initrd,
            vcpus: self.max_vcpus,
        }
        .build();
        let mut gm = GuestMemory::new(self.physmap.stage2(), mem);
        gm.copy_to_guest(Ipa(dtb_ipa), &blob)
            .map_err(DomainError::Copy)?;
        Ok(Ipa(dtb_ipa))
    }

    /// This domain's memory as seen through its stage-2 table.
    pub fn guest_memory<'a, M: PhysMem + TableMem>(&'a self, mem: &'a mut M) -> GuestMemory<'a, M> {
        GuestMemory::new(self.physmap.stage2(), mem)
    }

    /// The domain's VMID.
    #[must_use]
    pub fn vmid(&self) -> Vmid {
        self.vmid
    }

    /// The domain's stage-2 table.
    #[must_use]
    pub fn stage2(&self) -> &Stage2 {
        self.physmap.stage2()
    }

    /// The domain's physmap (stage-2 plus what each gfn maps).
    #[must_use]
    pub fn physmap(&self) -> &Physmap {
        &self.physmap
    }

    /// The domain's physmap, for memory operations.
    pub fn physmap_mut(&mut self) -> &mut Physmap {
        &mut self.physmap
    }

    /// Its Xen-interface state and its physmap, both mutable.
    pub fn xen_and_physmap(&mut self) -> (&mut crate::xen::domu::DomainXen, &mut Physmap) {
        (&mut self.xen, &mut self.physmap)
    }

    /// RAM size in bytes.
    #[must_use]
    pub fn ram_bytes(&self) -> u64 {
        self.ram_bytes
    }

    /// The RAM chunks (IPA order).
    #[must_use]
    pub fn ram(&self) -> &[RamChunk] {
        &self.ram
    }

    /// `IPA` is inside this domain's RAM (any bank).
    #[must_use]
    pub fn is_ram(&self, ipa: Ipa) -> bool {
        self.banks()
            .iter()
            .any(|&(base, size)| ipa.0 >= base && ipa.0 - base < size)
    }

    /// The RAM banks `(IPA, bytes)`: a direct-mapped domain's own, else Xen's
    /// guest layout ([`ram_banks`], empty banks left out).
    #[must_use]
    pub fn banks(&self) -> Vec<(u64, u64)> {
        if self.direct.is_empty() {
            ram_banks(self.ram_bytes)
                .into_iter()
                .filter(|b| b.1 != 0)
                .collect()
        } else {
            self.direct.clone()
        }
    }

    /// RAM is mapped at IPA == PA ([`Domain::create_direct`]).
    #[must_use]
    pub fn is_direct(&self) -> bool {
        !self.direct.is_empty()
    }

    /// The first bank `(IPA, bytes)`, where the kernel goes.
    fn bank0(&self) -> (u64, u64) {
        match self.direct.first() {
            Some(&b) => b,
            None => (GUEST_RAM0_BASE, ram_banks(self.ram_bytes)[0].1),
        }
    }

    /// `VTTBR_EL2`/`VTCR_EL2` for this domain (the arch layer adds PS, VS and RES1 bits to VTCR).
    #[must_use]
    pub fn stage2_regs(&self) -> Stage2Regs {
        Stage2Regs {
            vttbr: (u64::from(self.vmid.0) << 48) | self.physmap.stage2().root().0,
            vtcr: self.physmap.stage2().vtcr_bits(),
        }
    }

    /// Tear the domain down once none of its vCPUs can run: its physmap
    /// goes, the invalidation of everything it mapped is planned through
    /// `flush` (under the boot policy: range TLBIs over what it mapped, or
    /// at most one full flush for the whole domain) and executed on `arch`; only then do its pages go back to the
    /// pool, its tables to `mem` and its VMID to `vmids`.
    pub fn destroy<M: PhysMem + TableMem>(
        self,
        arch: &mut dyn Arch,
        mem: &mut M,
        pool: &mut FrameTable,
        flush: &mut DeferredFlush,
        vmids: &mut VmidAllocator,
    ) {
        let vmid = self.vmid;
        // Its physical SPIs (dom0's devices) go back first: disabled, deactivated.
        self.vgic.release_hw();
        let t = self.physmap.teardown(mem);
        // One plan retires the VMID (pv-tlb `retire_plan`): under targeted,
        // range TLBIs over what it mapped (and what was pending for it) +
        // VMALLE1IS, falling back to ONE full flush above the policy's
        // threshold; under xen-compat one full flush, as Xen. Nested, a full
        // flush is L0 KVM walking the whole IPA range (128 s at 52 bits).
        let f = flush.retire_vmid(vmid, &t.inval, &t.held);
        crate::tlb::execute_ops(f.plan.ops(), arch);
        let mut xen = self.xen;
        xen.release(pool);
        if let Err(e) = pool.release(&f.released) {
            log::error!("d{}: releasing its pages: {e}", self.id);
        }
        t.finish(mem);
        vmids.free(vmid);
    }

    /// Give back a domain that never ran (no TLB entry can exist for its VMID).
    pub fn discard<M: PhysMem + TableMem>(
        self,
        mem: &mut M,
        pool: &mut FrameTable,
        vmids: &mut VmidAllocator,
    ) {
        self.vgic.release_hw();
        let t = self.physmap.teardown(mem);
        let mut xen = self.xen;
        xen.release(pool);
        if let Err(e) = pool.release(&t.held) {
            log::error!("d{}: releasing its pages: {e}", self.id);
        }
        t.finish(mem);
        vmids.free(self.vmid);
    }

    /// The stage-2 table and the console line, borrowed together for a hypercall.
    pub fn hypercall_parts(&mut self) -> (&Stage2, &mut ConsoleLine) {
        (self.physmap.stage2(), &mut self.console)
    }
}

/// Write vCPU `vcpu`'s runstate into its registered area after it changed
/// (for the run loop at each switch): a physical area directly, a virtual one
/// through the vCPU's stage 1 `s1` (its registers, loaded or saved). With
/// `VMASST_TYPE_runstate_update_flag`, `XEN_RUNSTATE_UPDATE` is set in
/// `state_entry_time` around the update (public/vcpu.h).
pub fn publish_runstate<M: PhysMem + TableMem>(
    d: &Domain,
    vcpu: u32,
    s1: Option<crate::xen::s1walk::Stage1>,
    mem: &mut M,
) {
    let flag_on = d.xen.runstate_update_flag;
    let Some(rs) = d.xen.runstate.get(vcpu as usize).copied() else {
        return;
    };
    let Some(area) = rs.area else {
        return;
    };
    let mut gm = d
        .guest_memory(mem)
        .with_stage1(if rs.phys { None } else { s1 });
    let flag = if flag_on {
        crate::xen::domu::runstate::UPDATE
    } else {
        0
    };
    if flag_on {
        let _ = gm.copy_to_guest(Ipa(area + 8), &(rs.entry | flag).to_le_bytes());
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
    }
    let _ = gm.copy_to_guest(Ipa(area), &rs.encode(flag));
    if flag_on {
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        let _ = gm.copy_to_guest(Ipa(area + 8), &rs.entry.to_le_bytes());
    }
}

/// A vCPU switch: vCPU `vcpu` of `d` enters `state` (`RUNSTATE_*`) at
/// `now_ns`; its registered runstate area, if any, is rewritten through its
/// stage 1 `s1` (Xen's `update_runstate_area` at each context switch).
pub fn runstate_switch<M: PhysMem + TableMem>(
    d: &mut Domain,
    vcpu: u32,
    state: u32,
    now_ns: u64,
    s1: crate::xen::s1walk::Stage1,
    mem: &mut M,
) {
    let Some(rs) = d.xen.runstate.get_mut(vcpu as usize) else {
        return;
    };
    rs.switch(state, now_ns);
    if rs.area.is_some() {
        publish_runstate(d, vcpu, Some(s1), mem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::fake::{FakeArch, FakeMachine, FakeMem, Kind};

    fn fake_mem() -> FakeMem {
        FakeMem::new(0x8000_0000, 0x400_0000)
    }

    /// 48 MiB of guest pages at the bottom of [`fake_mem`] (tables come from its top).
    fn guest_pool() -> FrameTable {
        FrameTable::new(PhysAddr(0x8000_0000), 0x3000)
    }

    #[test]
    fn vmid_exhaustion_reuse_and_rollover_with_2_bits() {
        let mut v = VmidAllocator::new(2);
        assert_eq!(v.alloc(), Ok(Vmid(1)));
        assert_eq!(v.alloc(), Ok(Vmid(2)));
        assert_eq!(v.alloc(), Ok(Vmid(3)));
        assert_eq!(v.alloc(), Err(DomainError::NoVmid));
        assert_eq!(v.in_use(), 3);
        v.free(Vmid(2));
        // Rolls over past the top, skips VMID 0, finds the freed one.
        assert_eq!(v.alloc(), Ok(Vmid(2)));
        v.free(Vmid(1));
        v.free(Vmid(3));
        // Round-robin: 3 is after the last handed out (2).
        assert_eq!(v.alloc(), Ok(Vmid(3)));
        assert_eq!(v.alloc(), Ok(Vmid(1)));
        v.free(Vmid(0));
        assert_eq!(v.in_use(), 3);
    }

    #[test]
    fn image_header_text_offset() {
        let mut h = [0u8; 64];
        h[8..16].copy_from_slice(&0x8_0000u64.to_le_bytes());
        assert_eq!(kernel_load_offset(&h), 0, "no magic: raw binary");
        h[56..60].copy_from_slice(b"ARM\x64");
        assert_eq!(kernel_load_offset(&h), 0x8_0000);
        assert_eq!(kernel_load_offset(&h[..40]), 0, "short file: raw");
    }

    #[test]
    fn kernel_image_lands_at_text_offset_and_ram_is_zeroed() {
        let mut mem = fake_mem();
        let mut pool = guest_pool();
        let mut vmids = VmidAllocator::new(2);
        let mut d = create_in(&mut mem, &mut pool, &mut vmids, 1, 4 << 20).unwrap();
        assert_eq!(pool.free_frames(), 0x3000 - 1024);
        assert_eq!(d.ram()[0].ipa, Ipa(GUEST_RAM0_BASE));
        assert_eq!(d.ram().iter().map(|c| c.pages).sum::<u64>(), 1024);
        // An Image with text_offset 0x80000.
        let mut image = alloc::vec![0u8; 0x2345];
        image[8..16].copy_from_slice(&0x8_0000u64.to_le_bytes());
        image[16..24].copy_from_slice(&0x10_0000u64.to_le_bytes());
        image[56..60].copy_from_slice(b"ARM\x64");
        image[0x2344] = 0x77;
        let img = image.clone();
        let placed = d
            .load_kernel(
                &mut mem,
                image.len() as u64,
                &mut |_m: &FakeMem, off, buf: &mut [u8]| {
                    buf.copy_from_slice(&img[off as usize..off as usize + buf.len()]);
                },
            )
            .unwrap();
        let entry = placed.entry;
        assert_eq!(entry, Ipa(0x4008_0000));
        assert_eq!(placed.end, Ipa(0x4018_0000), "image_size (BSS) counts");
        let mut back = alloc::vec![0u8; image.len()];
        d.guest_memory(&mut mem)
            .copy_from_guest(entry, &mut back)
            .unwrap();
        assert_eq!(back, image);
        // RAM the kernel does not cover reads as zero (no host data leaks in).
        let mut z = [0xffu8; 16];
        d.guest_memory(&mut mem)
            .copy_from_guest(Ipa(GUEST_RAM0_BASE + 0x3f_fff0), &mut z)
            .unwrap();
        assert_eq!(z, [0; 16]);
        // Past the end of RAM: not mapped.
        assert!(d
            .guest_memory(&mut mem)
            .copy_from_guest(Ipa(GUEST_RAM0_BASE + (4 << 20)), &mut z)
            .is_err());
        // A raw binary loads at the RAM base; one too big is refused.
        let raw = [0x11u8; 100];
        let entry = d
            .load_kernel(&mut mem, 100, &mut |_m: &FakeMem, off, buf: &mut [u8]| {
                buf.copy_from_slice(&raw[off as usize..off as usize + buf.len()]);
            })
            .unwrap();
        assert_eq!(
            entry,
            KernelPlacement {
                entry: Ipa(GUEST_RAM0_BASE),
                end: Ipa(GUEST_RAM0_BASE + 100)
            }
        );
        assert_eq!(
            d.load_kernel(
                &mut mem,
                5 << 20,
                &mut |_m: &FakeMem, _off, buf: &mut [u8]| buf.fill(0)
            ),
            Err(DomainError::KernelTooBig {
                needed: 5 << 20,
                ram: 4 << 20
            })
        );
        let regs = d.stage2_regs();
        assert_eq!(regs.vttbr >> 48, 1);
        assert_eq!(regs.vttbr & 0xffff_ffff_ffff, d.stage2().root().0);

        // Destroy: one full flush of the VMID, then frames and VMID come back.
        let machine = FakeMachine::new_shared();
        let mut arch = FakeArch::new(0, machine.clone());
        destroy_in(d, &mut arch, &mut mem, &mut pool, &mut vmids);
        // Under xen-compat: exactly one full flush of VMID 1 (plus barriers).
        let ops = machine.lock().tlb_ops();
        let full = ops
            .iter()
            .filter(|o| **o == TlbOp::Vmalls12e1is { vmid: Vmid(1) })
            .count();
        assert_eq!(full, 1, "{ops:?}");
        assert!(
            ops.iter()
                .all(|o| o.kind().is_none() || o.kind() == Some(pv_tlb::TlbOpKind::Vmalls12e1is)),
            "{ops:?}"
        );
        assert_eq!(pool.free_frames(), 0x3000);
        assert_eq!(mem.allocated(Kind::Table), 0);
        assert_eq!(vmids.in_use(), 0);
    }

    #[test]
    fn boot_data_dtb_and_ramdisk_at_the_top_of_ram() {
        let mut mem = fake_mem();
        let mut pool = guest_pool();
        let mut vmids = VmidAllocator::new(2);
        let mut d = create_in(&mut mem, &mut pool, &mut vmids, 1, 8 << 20).unwrap();
        let rd = [0x5au8; 0x1234];
        let dtb = d
            .load_boot_data(
                &mut mem,
                Ipa(GUEST_RAM0_BASE + 0x10_0000),
                Some("console=hvc0"),
                Some((rd.len() as u64, &mut |_m: &FakeMem, off, buf: &mut [u8]| {
                    buf.copy_from_slice(&rd[off as usize..off as usize + buf.len()]);
                })),
            )
            .unwrap();
        assert_eq!(dtb, Ipa(GUEST_RAM0_BASE + (6 << 20)));
        let mut blob = alloc::vec![0u8; 4096];
        d.guest_memory(&mut mem)
            .copy_from_guest(dtb, &mut blob)
            .unwrap();
        let fdt = fdt::Fdt::new(&blob).expect("a DTB at x0");
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("bootargs").and_then(|p| p.as_str()),
            Some("console=hvc0")
        );
        let start = chosen
            .property("linux,initrd-start")
            .and_then(|p| p.as_usize())
            .unwrap() as u64;
        let end = chosen
            .property("linux,initrd-end")
            .and_then(|p| p.as_usize())
            .unwrap() as u64;
        assert_eq!(start, dtb.0 - 0x2000);
        assert_eq!(end - start, 0x1234);
        let mut back = [0u8; 0x1234];
        d.guest_memory(&mut mem)
            .copy_from_guest(Ipa(start), &mut back)
            .unwrap();
        assert_eq!(back, rd);
        // A kernel reaching into the boot data area is refused.
        assert_eq!(
            d.load_boot_data(&mut mem, Ipa(GUEST_RAM0_BASE + (7 << 20)), None, None),
            Err(DomainError::NoRoomForBootData {
                kernel_end: Ipa(GUEST_RAM0_BASE + (7 << 20)),
                ramdisk: 0
            })
        );
        // Small RAM: the DTB sits in the last 64 KiB.
        let mut small = create_in(&mut mem, &mut pool, &mut vmids, 2, 1 << 20).unwrap();
        let dtb = small
            .load_boot_data(&mut mem, Ipa(GUEST_RAM0_BASE + 0x1000), None, None)
            .unwrap();
        assert_eq!(dtb, Ipa(GUEST_RAM0_BASE + (1 << 20) - (64 << 10)));
    }

    #[test]
    fn out_of_frames_and_vmids_fail_cleanly() {
        let mut mem = FakeMem::new(0x8000_0000, 0x20_0000);
        let mut pool = FrameTable::new(PhysAddr(0x8000_0000), 256);
        let mut vmids = VmidAllocator::new(2);
        // 2 MiB of host RAM cannot hold 4 MiB of guest RAM.
        assert_eq!(
            create_in(&mut mem, &mut pool, &mut vmids, 1, 4 << 20).err(),
            Some(DomainError::OutOfMemory { bytes: 4 << 20 })
        );
        assert_eq!(pool.free_frames(), 256);
        assert_eq!(mem.allocated(Kind::Table), 0);
        assert_eq!(vmids.in_use(), 0);
        assert_eq!(
            create_in(&mut mem, &mut pool, &mut vmids, 1, 12345).err(),
            Some(DomainError::BadRamSize { bytes: 12345 })
        );
        let mut mem = fake_mem();
        let mut pool = guest_pool();
        let ds: Vec<Domain> = (1..=3)
            .map(|i| create_in(&mut mem, &mut pool, &mut vmids, i, 1 << 20).unwrap())
            .collect();
        assert_eq!(
            create_in(&mut mem, &mut pool, &mut vmids, 4, 1 << 20).err(),
            Some(DomainError::NoVmid)
        );
        // The failed first attempt used VMID 1: round-robin continues after it.
        assert_eq!(ds.iter().map(|d| d.vmid().0).collect::<Vec<_>>(), [2, 3, 1]);
    }

    /// Issue 9 finding 12: RAM beyond bank 0's 3 GiB continues in bank 1
    /// (Xen's guest layout), so a domain is limited by the machine, not by
    /// bank 0: 4 GiB is not a bad size (here the 1 MiB pool cannot hold it).
    #[test]
    fn ram_beyond_3_gib_goes_to_bank_1() {
        assert_eq!(
            ram_banks(2 << 30),
            [(GUEST_RAM0_BASE, 2 << 30), (GUEST_RAM1_BASE, 0)]
        );
        assert_eq!(
            ram_banks(5 << 30),
            [(GUEST_RAM0_BASE, 3 << 30), (GUEST_RAM1_BASE, 2 << 30)]
        );
        let mut mem = FakeMem::new(0x8000_0000, 0x20_0000);
        let mut pool = FrameTable::new(PhysAddr(0x8000_0000), 256);
        let mut vmids = VmidAllocator::new(2);
        let mut create = |bytes, ipa_bits| {
            Domain::create(1, bytes, ipa_bits, &mut vmids, &mut mem, &mut pool).err()
        };
        assert_eq!(
            create(4 << 30, 40),
            Some(DomainError::OutOfMemory { bytes: 4 << 30 })
        );
        assert_eq!(
            create(4 << 30, 33),
            Some(DomainError::BadRamSize { bytes: 4 << 30 }),
            "bank 1 (8 GiB up) is outside a 33-bit IPA space"
        );
        let too_big = GUEST_RAM0_SIZE + GUEST_RAM1_SIZE + PAGE_SIZE;
        assert_eq!(
            create(too_big, 48),
            Some(DomainError::BadRamSize { bytes: too_big })
        );
        assert_eq!(pool.free_frames(), 256);
        let d = Domain {
            ram_bytes: 4 << 30,
            ..create_in(
                &mut fake_mem(),
                &mut guest_pool(),
                &mut VmidAllocator::new(2),
                1,
                1 << 20,
            )
            .unwrap()
        };
        assert!(d.is_ram(Ipa(GUEST_RAM0_BASE + (3 << 30) - 1)));
        assert!(!d.is_ram(Ipa(GUEST_RAM0_BASE + (3 << 30))));
        assert!(d.is_ram(Ipa(GUEST_RAM1_BASE + (1 << 30) - 1)));
        assert!(!d.is_ram(Ipa(GUEST_RAM1_BASE + (1 << 30))));
    }

    /// Create with `mem` serving as table memory, physical memory and frame source.
    pub(crate) fn create_in(
        mem: &mut FakeMem,
        pool: &mut FrameTable,
        vmids: &mut VmidAllocator,
        id: DomId,
        bytes: u64,
    ) -> Result<Domain, DomainError> {
        Domain::create(id, bytes, 40, vmids, mem, pool)
    }

    fn destroy_in(
        d: Domain,
        arch: &mut FakeArch,
        mem: &mut FakeMem,
        pool: &mut FrameTable,
        vmids: &mut VmidAllocator,
    ) {
        let mut flush = DeferredFlush::new(pv_tlb::Policy::XenCompat);
        d.destroy(arch, mem, pool, &mut flush, vmids);
    }
}
