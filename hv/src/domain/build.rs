//! The one domain builder: boot modules, dom0less nodes and the toolstack's
//! `createdomain` all build their domains here ([`Builder`]), from a
//! [`DomainSpec`] (RAM, vCPUs, privilege, command line, DTB) and boot images.
//! Everything a domain takes is checked before anything is taken; a domain
//! that cannot be built leaves nothing behind.
//!
//! The builder borrows the parts of the world it needs ([`Builder`]); it
//! never imports the boot flow (`start`) nor the world.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use memops::{FrameTable, TableMem};
use pv_tlb::{Ipa, PhysAddr, PAGE_SIZE};

use super::{DomId, Domain, DomainError, VmidAllocator, DEFAULT_RAM_BYTES, GUEST_RAM0_BASE};
use crate::arch::PhysMem;
use crate::bootinfo::{BootModule, DomUNode, ModuleKind};
use crate::options::HvOptions;
use crate::vcpu::Vcpu;
use crate::xen::domu::{DomainXen, XEN_FRAMES};
use crate::xen::ConsoleSink;

/// What a domain is built with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DomainSpec<'a> {
    /// RAM in bytes.
    pub ram_bytes: u64,
    /// The control domain: gets domid 0 and may use privileged calls.
    pub privileged: bool,
    /// Its command line (`/chosen/bootargs` of its DTB).
    pub bootargs: Option<&'a str>,
    /// Give it a DTB (and its ramdisk) with the address in x0; else x0 = 0.
    /// Such a guest also gets the Xen domU interfaces' state (shared info,
    /// grant frames, console ring: [`xen::domu::DomainXen::setup`]).
    pub dtb: bool,
    /// vCPUs (`XEN_DOMCTL_max_vcpus`; the DTB lists them; vCPU 0 boots).
    pub vcpus: u32,
}

impl DomainSpec<'_> {
    /// An unprivileged domain with `ram_bytes` of RAM and no DTB.
    #[must_use]
    pub const fn domu(ram_bytes: u64) -> Self {
        Self {
            ram_bytes,
            privileged: false,
            bootargs: None,
            dtb: false,
            vcpus: 1,
        }
    }
}

/// A boot image (kernel or ramdisk): its size and how to read it.
pub struct BootImage<'r, M> {
    /// Size in bytes.
    pub size: u64,
    /// Reads bytes `[off, off + buf.len())` of the image into `buf`.
    pub read: &'r mut dyn FnMut(&M, u64, &mut [u8]),
}

/// Parse a `vcpus=<n>` option from a module's bootargs (hv-specific, as
/// `mem=`; dom0less domains use the `cpus` property instead).
#[must_use]
pub fn parse_vcpus(bootargs: &str) -> Option<u32> {
    bootargs
        .split_whitespace()
        .find_map(|w| w.strip_prefix("vcpus="))?
        .parse()
        .ok()
}

/// The command line a module's guest gets: its bootargs without hv's own words
/// (`mem=`, `vcpus=`, `dom0`), which configure the domain, not the kernel (as Xen keeps
/// `dom0_mem=` on its own command line and a dom0less domain's `memory`/`cpus` in
/// properties, never in the guest's `bootargs`).
#[must_use]
pub fn guest_cmdline(bootargs: &str) -> alloc::string::String {
    let mut out = alloc::string::String::with_capacity(bootargs.len());
    for w in bootargs.split_whitespace() {
        if w == "dom0" || w.starts_with("mem=") || w.starts_with("vcpus=") {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// Parse a `mem=<n>[K|M|G]` option from a module's bootargs.
#[must_use]
pub fn parse_mem(bootargs: &str) -> Option<u64> {
    let v = bootargs
        .split_whitespace()
        .find_map(|w| w.strip_prefix("mem="))?;
    let (num, shift) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// What a dom0less node asks for, as a [`DomainSpec`]: `memory` KiB (16 MiB
/// when absent), `cpus` vCPUs, the kernel module's bootargs, a DTB (Xen's
/// docs/misc/arm/device-tree/booting.txt "Dom0less",
/// xen/arch/arm/dom0less-build.c).
#[must_use]
pub fn dom0less_spec<'a>(d: &DomUNode<'a>) -> DomainSpec<'a> {
    DomainSpec {
        ram_bytes: d
            .memory_kib
            .and_then(|k| k.checked_mul(1024))
            .unwrap_or(DEFAULT_RAM_BYTES),
        privileged: false,
        bootargs: d.kernel.bootargs,
        dtb: true,
        vcpus: d.cpus,
    }
}

/// One domain a kernel boot module asks for, in Xen's guest layout (hv's
/// bare payloads, [`legacy_module_domain`]): its settings, its command line
/// without hv's words, its kernel and its ramdisk.
pub struct ModuleDomain<'m> {
    /// RAM: `mem=`, else (control domain) `dom0_mem=`, else the default.
    pub ram_bytes: u64,
    /// dom0 by Xen's rule (the first kernel module).
    pub privileged: bool,
    /// vCPUs: `vcpus=`, else (control domain) `dom0_max_vcpus=`, else 1.
    pub vcpus: u32,
    /// The guest's command line ([`guest_cmdline`]).
    pub cmdline: Option<String>,
    /// The kernel module.
    pub kernel: BootModule<'m>,
    /// Its ramdisk module.
    pub ramdisk: Option<BootModule<'m>>,
}

impl ModuleDomain<'_> {
    /// As a [`DomainSpec`] (with a DTB).
    #[must_use]
    pub fn spec(&self) -> DomainSpec<'_> {
        DomainSpec {
            ram_bytes: self.ram_bytes,
            privileged: self.privileged,
            bootargs: self.cmdline.as_deref().filter(|c| !c.is_empty()),
            dtb: true,
            vcpus: self.vcpus,
        }
    }
}

/// Xen's rule over a bare module list (what
/// [`crate::bootinfo::BootInfo::module_domains`] does with a DTB's `/chosen`):
/// the first kernel module is dom0 with the first ramdisk module; every
/// further kernel module (an hv extension) is one more domain with the
/// ramdisk module right after it (unless that is dom0's).
#[must_use]
pub fn domains_from_modules<'m>(
    modules: &[BootModule<'m>],
) -> Vec<crate::bootinfo::ModuleDomain<'m>> {
    let dom0_rd = modules
        .iter()
        .find(|m| m.kind == ModuleKind::Ramdisk)
        .copied();
    let mut out = Vec::new();
    for (i, m) in modules
        .iter()
        .enumerate()
        .filter(|(_, m)| m.kind == ModuleKind::Kernel)
    {
        let dom0 = out.is_empty();
        let ramdisk = if dom0 {
            dom0_rd
        } else {
            modules
                .get(i + 1)
                .filter(|r| r.kind == ModuleKind::Ramdisk && Some(**r) != dom0_rd)
                .copied()
        };
        out.push(crate::bootinfo::ModuleDomain {
            kernel: *m,
            ramdisk,
            bootargs: m.bootargs,
            dom0,
        });
    }
    out
}

/// A module domain built in Xen's guest layout: `mem=` in its bootargs sets
/// the RAM size (dom0: else `dom0_mem=`), `vcpus=` the vCPUs (dom0: else a
/// fixed `dom0_max_vcpus=`), else [`DEFAULT_RAM_BYTES`] and 1; those words and
/// `dom0` are removed from its command line ([`guest_cmdline`]).
#[must_use]
pub fn legacy_module_domain<'m>(
    m: &crate::bootinfo::ModuleDomain<'m>,
    options: &HvOptions,
) -> ModuleDomain<'m> {
    let (dom0_mem, dom0_vcpus) = if m.dom0 {
        (options.dom0_mem, options.dom0_max_vcpus)
    } else {
        (None, None)
    };
    ModuleDomain {
        ram_bytes: m
            .bootargs
            .and_then(parse_mem)
            .or(dom0_mem)
            .unwrap_or(DEFAULT_RAM_BYTES),
        privileged: m.dom0,
        vcpus: m.bootargs.and_then(parse_vcpus).or(dom0_vcpus).unwrap_or(1),
        cmdline: m.bootargs.map(guest_cmdline),
        kernel: m.kernel,
        ramdisk: m.ramdisk,
    }
}

/// Copy host memory at `pa` into `buf`, split at page boundaries as [`PhysMem`] requires.
pub fn read_host<M: PhysMem + ?Sized>(mem: &M, pa: PhysAddr, buf: &mut [u8]) {
    let mut done = 0usize;
    while done < buf.len() {
        let at = PhysAddr(pa.0 + done as u64);
        let n = ((PAGE_SIZE - at.page_offset()) as usize).min(buf.len() - done);
        mem.read(at, &mut buf[done..done + n]);
        done += n;
    }
}

/// What hv decided about the hardware domain (Xen's dom0 on Arm: direct-mapped
/// RAM, the host's device tree, every device hv does not use).
#[derive(Clone, Copy, Debug)]
pub struct Dom0Setup<'a> {
    /// RAM in bytes (`dom0_mem=`, a multiple of 2 MiB).
    pub ram_bytes: u64,
    /// vCPUs (`dom0_max_vcpus=`).
    pub vcpus: u32,
    /// dom0's command line, unchanged (`BootInfo::dom0`'s).
    pub bootargs: Option<&'a str>,
    /// The host DTB (NOP-free) its tree is derived from.
    pub host_dtb: &'a [u8],
    /// MMIO hv drives itself (its UART): not given.
    pub hv_mmio: &'a [crate::mm::MemRange],
    /// The grant-table region (`/hypervisor` `reg[0]`): host addresses
    /// that are not dom0's RAM (Xen: its own text).
    pub gnttab: crate::mm::MemRange,
    /// The event-channel upcall PPI ([`pick_evtchn_ppi`]).
    pub evtchn_ppi: u32,
    /// Where its vGIC sits (the host's GICD / first GICR).
    pub layout: crate::vgic::VgicLayout,
}

/// The event-channel PPI for the hardware domain, as Xen's `evtchn_allocate`
/// (`vgic_allocate_ppi`: the first PPI, from INTID 16, no one uses): not
/// one of the host timer's PPIs `used` nor the GIC maintenance interrupt
/// (25). 16 on QEMU virt, as the peer's log says ("Allocating PPI 16 for
/// event channel interrupt").
#[must_use]
pub fn pick_evtchn_ppi(used: &[u32]) -> Option<u32> {
    (16..32).find(|p| *p != 25 && !used.contains(p))
}

/// The page ranges `[start, end)` to map for `ranges` (rounded out to pages),
/// sorted, with overlapping and adjacent ones merged (QEMU's virtio-mmio
/// transports share pages: each page is mapped once).
#[must_use]
pub fn page_runs(ranges: impl Iterator<Item = crate::mm::MemRange>) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = ranges
        .filter(|r| r.size != 0)
        .filter_map(|r| {
            let end = r
                .base
                .0
                .checked_add(r.size)?
                .checked_next_multiple_of(PAGE_SIZE)?;
            Some((r.base.0 & !(PAGE_SIZE - 1), end))
        })
        .collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in v {
        match out.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The parts of the world a domain is built from (`World::builder`).
pub struct Builder<'a, M> {
    /// Host RAM and table memory.
    pub mem: &'a mut M,
    /// Every domain (the new one is added).
    pub domains: &'a mut Vec<Domain>,
    /// VMIDs.
    pub vmids: &'a mut VmidAllocator,
    /// The guest page pool.
    pub pool: &'a mut FrameTable,
    /// hv's console.
    pub sink: &'a mut dyn ConsoleSink,
    /// IPA size of the domain's stage 2.
    pub ipa_bits: u8,
    /// The domid rover.
    pub next_domid: &'a mut usize,
    /// Free bytes of hv's heap.
    pub heap_free: fn() -> usize,
}

impl<M: PhysMem + TableMem> Builder<'_, M> {
    /// Make room for one more domain before anything is built: at most
    /// [`super::MAX_DOMAINS`], and the list's growth (it doubles) plus
    /// [`crate::mm::heap::DOMAIN_BYTES`] must fit above the heap's reserve;
    /// the slot is then reserved fallibly. ~2048 `createdomain` calls once
    /// grew the list to 7 MB past a 64 KiB check and hv's heap ran out
    /// (issue 9 finding 5).
    ///
    /// # Errors
    /// [`DomainError::TooManyDomains`] or [`DomainError::HeapFull`].
    pub fn reserve_domain_slot(&mut self) -> Result<(), DomainError> {
        let domains = &mut *self.domains;
        if domains.len() >= super::MAX_DOMAINS {
            return Err(DomainError::TooManyDomains);
        }
        let grow = if domains.len() == domains.capacity() {
            // RawVec's amortized growth: twice the capacity, at least 4.
            (domains.capacity() * 2).max(4) * core::mem::size_of::<Domain>()
        } else {
            0
        };
        let need = grow.saturating_add(crate::mm::heap::DOMAIN_BYTES);
        if !crate::mm::heap::room((self.heap_free)(), need) {
            return Err(DomainError::HeapFull { bytes: 0, need });
        }
        domains
            .try_reserve(1)
            .map_err(|_| DomainError::HeapFull { bytes: 0, need })
    }

    /// Room for a domain of `ram_bytes`: frames for its RAM and hv's Xen
    /// pages, heap for a physmap record per page.
    ///
    /// # Errors
    /// [`DomainError::OutOfMemory`] or [`DomainError::HeapFull`].
    fn check_build_room(&self, ram_bytes: u64) -> Result<(), DomainError> {
        let pages = (ram_bytes / PAGE_SIZE).saturating_add(XEN_FRAMES);
        if pages > self.pool.free_frames() {
            return Err(DomainError::OutOfMemory { bytes: ram_bytes });
        }
        let need = crate::mm::heap::build_bytes(pages).unwrap_or(usize::MAX);
        if !crate::mm::heap::room((self.heap_free)(), need) {
            return Err(DomainError::HeapFull {
                bytes: ram_bytes,
                need,
            });
        }
        Ok(())
    }

    /// Build a domain (d0 if privileged, else d<N> with N counting from 1):
    /// RAM, the kernel, and (for [`DomainSpec::dtb`]) the Xen-interface
    /// state, the ramdisk and a guest DTB whose address goes in x0. Returns
    /// its id and its boot vCPU (for the caller to queue).
    ///
    /// # Errors
    /// [`DomainError`] if the domain cannot be built (nothing is left behind).
    pub fn build(
        &mut self,
        spec: DomainSpec<'_>,
        kernel: BootImage<'_, M>,
        ramdisk: Option<BootImage<'_, M>>,
    ) -> Result<(DomId, Box<Vcpu>), DomainError> {
        let ram_bytes = spec.ram_bytes;
        // Everything a domain of this size takes is checked before anything
        // is taken: frames for its RAM and hv's Xen pages, heap for a physmap
        // record per page, a slot in the domain list (a domain too large for
        // the machine gets this error, never a failed allocation).
        self.check_build_room(ram_bytes)?;
        self.reserve_domain_slot()?;
        let privileged = spec.privileged && !self.domains.iter().any(|d| d.id == 0);
        if spec.privileged && !privileged {
            log::warn!("a control domain (d0) exists already: this one is unprivileged");
        }
        let id = if privileged {
            0
        } else {
            *self.next_domid += 1;
            (*self.next_domid - 1) as DomId
        };
        let (mem, vmids, pool) = (&mut *self.mem, &mut *self.vmids, &mut *self.pool);
        let mut dom = Domain::create(id, ram_bytes, self.ipa_bits, vmids, mem, pool)?;
        dom.max_vcpus = spec.vcpus.clamp(1, crate::vgic::MAX_VCPUS);
        dom.vgic.set_nr_vcpus(dom.max_vcpus);
        if spec.dtb {
            match DomainXen::setup(id, dom.max_vcpus, dom.physmap_mut(), mem, pool) {
                Ok(x) => dom.xen = x,
                Err(e) => {
                    dom.discard(mem, pool, vmids);
                    return Err(DomainError::Stage2(e));
                }
            }
        }
        let placed = dom
            .load_kernel(mem, kernel.size, kernel.read)
            .and_then(|k| {
                let x0 = if spec.dtb {
                    let rd = ramdisk.map(|r| (r.size, r.read));
                    dom.load_boot_data(mem, k.end, spec.bootargs, rd)?.0
                } else {
                    0
                };
                Ok((k, x0))
            });
        let (k, x0) = match placed {
            Ok(p) => p,
            Err(e) => {
                dom.discard(mem, pool, vmids);
                return Err(e);
            }
        };
        dom.privileged = privileged;
        self.sink.hv_line(format_args!(
            "d{id}: {} MiB RAM at {:#x}, VMID {}, kernel {:#x} bytes entry {}, DTB {x0:#x}{}",
            ram_bytes >> 20,
            GUEST_RAM0_BASE,
            dom.vmid().0,
            kernel.size,
            k.entry,
            if privileged { " (control domain)" } else { "" }
        ));
        dom.live_vcpus = 1;
        self.domains.push(dom);
        Ok((id, Box::new(Vcpu::new(id, 0, k.entry.0, x0))))
    }

    /// Build the hardware domain d0 as Xen 4.20 does on Arm
    /// (xen/arch/arm/domain_build.c `construct_dom0`, `allocate_memory_11`,
    /// `prepare_dtb_hwdom`; kernel.c `kernel_zimage_load`, `place_modules`):
    /// RAM direct-mapped from the pool ([`Domain::create_direct`]), the vGIC
    /// at the host's addresses, its DTB derived from the host's
    /// ([`crate::hostdt::derive`]), every device in the plan mapped 1:1
    /// (Device-nGnRE; `/reserved-memory` as RAM) and its SPIs routed, the
    /// kernel at bank 0 + `text_offset`, the DTB at bank 0 + 128 MiB and the
    /// initrd 2 MiB-rounded after it. Returns its boot vCPU.
    ///
    /// # Errors
    /// [`DomainError`] (nothing is left behind).
    pub fn build_dom0(
        &mut self,
        setup: &Dom0Setup<'_>,
        kernel: BootImage<'_, M>,
        ramdisk: Option<BootImage<'_, M>>,
    ) -> Result<Box<Vcpu>, DomainError> {
        let ram_bytes = setup.ram_bytes;
        self.check_build_room(ram_bytes)?;
        if self.domains.iter().any(|d| d.id == 0) {
            return Err(DomainError::Dom0Dt("d0 exists already"));
        }
        self.reserve_domain_slot()?;
        let (mem, vmids, pool) = (&mut *self.mem, &mut *self.vmids, &mut *self.pool);
        let mut dom = Domain::create_direct(0, ram_bytes, self.ipa_bits, vmids, mem, pool)?;
        let r = Self::fill_dom0(&mut dom, mem, pool, setup, kernel, ramdisk);
        let (entry, dtb, plan) = match r {
            Ok(x) => x,
            Err(e) => {
                dom.discard(mem, pool, vmids);
                return Err(e);
            }
        };
        dom.privileged = true;
        for (b, n) in dom.banks() {
            self.sink.hv_line(format_args!(
                "d0: RAM bank {b:#x}-{:#x} ({} MiB), direct-mapped",
                b + n,
                n >> 20
            ));
        }
        let spis = plan.spis().count();
        self.sink.hv_line(format_args!(
            "d0: {} MiB RAM, {} vCPU(s), VMID {}, kernel entry {entry:#x}, DTB {dtb:#x}, vGIC at GICD {:#x} GICR {:#x}, event channel PPI {}, {} devices passed through ({spis} SPIs), {} host nodes hidden (control domain)",
            ram_bytes >> 20,
            dom.max_vcpus,
            dom.vmid().0,
            setup.layout.gicd,
            setup.layout.gicr,
            setup.evtchn_ppi,
            plan.devices.len(),
            plan.removed.len(),
        ));
        dom.live_vcpus = 1;
        self.domains.push(dom);
        Ok(Box::new(Vcpu::new(0, 0, entry, dtb)))
    }

    /// The parts of [`Builder::build_dom0`] after the RAM is taken (the
    /// caller discards the domain on error): returns the entry, the DTB's
    /// address and the passthrough plan carried out.
    fn fill_dom0(
        dom: &mut Domain,
        mem: &mut M,
        pool: &mut FrameTable,
        setup: &Dom0Setup<'_>,
        kernel: BootImage<'_, M>,
        ramdisk: Option<BootImage<'_, M>>,
    ) -> Result<(u64, u64, crate::hostdt::PassthroughPlan), DomainError> {
        use crate::hostdt::{derive, Dom0DtSpec, ExtRegions};
        use crate::mm::MemRange;
        dom.max_vcpus = setup.vcpus.clamp(1, crate::vgic::MAX_VCPUS);
        dom.vgic = alloc::sync::Arc::new(crate::vgic::Vgic::with_layout(
            0,
            dom.max_vcpus,
            setup.layout,
        ));
        let vcpus = dom.max_vcpus;
        let physmap = dom.physmap_mut();
        // Xen's gnttab_dom0_frames(): as many frames as the DT region has.
        let max_grant = u32::try_from(setup.gnttab.size / PAGE_SIZE).unwrap_or(u32::MAX);
        dom.xen = DomainXen::setup_hwdom(0, vcpus, physmap, mem, pool, setup.evtchn_ppi, max_grant)
            .map_err(DomainError::Stage2)?;
        let k = dom.load_kernel(mem, kernel.size, kernel.read)?;
        let banks: Vec<MemRange> = dom
            .banks()
            .iter()
            .map(|&(b, n)| MemRange::new(b, n))
            .collect();
        let rd_size = ramdisk.as_ref().map_or(0, |r| r.size);
        let mut spec = Dom0DtSpec {
            hv_devices: &[],
            hv_mmio: setup.hv_mmio,
            memory: &banks,
            vcpus: dom.max_vcpus,
            gnttab: setup.gnttab,
            ext_regions: ExtRegions::UnusedHostRam,
            evtchn_ppi: setup.evtchn_ppi,
            bootargs: setup.bootargs,
            // Its size first (the addresses do not change the DTB's size).
            initrd: ramdisk.as_ref().map(|r| MemRange::new(0, r.size)),
            hide_pci: true,
        };
        let sized = derive(setup.host_dtb, &spec).map_err(|e| DomainError::Dom0Dt(e.what()))?;
        let bank0 = banks.first().map_or((0, 0), |b| (b.base.0, b.size));
        let (dtb_at, rd_at) = crate::domain::place_modules(
            bank0,
            (k.entry.0, k.end.0),
            rd_size,
            sized.dtb.len() as u64,
        )
        .ok_or(DomainError::NoRoomForBootData {
            kernel_end: k.end,
            ramdisk: rd_size,
        })?;
        spec.initrd = ramdisk.as_ref().map(|r| MemRange::new(rd_at, r.size));
        let dt = derive(setup.host_dtb, &spec).map_err(|e| DomainError::Dom0Dt(e.what()))?;
        if let Some(r) = ramdisk {
            dom.copy_in(mem, Ipa(rd_at), r.size, r.read)?;
        }
        dom.guest_memory(mem)
            .copy_to_guest(Ipa(dtb_at), &dt.dtb)
            .map_err(DomainError::Copy)?;
        map_passthrough(dom, mem, &dt.plan)?;
        Ok((k.entry.0, dtb_at, dt.plan))
    }

    /// `createdomain`'s domain `id`: paused, empty (the toolstack gives it
    /// memory and vCPU contexts), `vcpus` vCPUs, with the Xen-interface
    /// state of a domain hv boots ([`DomainXen::setup`]). The caller has
    /// reserved the slot and picked the id; `handle` is its
    /// `xen_domain_handle_t`; its grant table may grow to `max_grant` frames.
    ///
    /// # Errors
    /// [`DomainError`] (nothing is left behind).
    pub fn create_paused(
        &mut self,
        id: DomId,
        vcpus: u32,
        handle: [u8; 16],
        max_grant: u32,
    ) -> Result<(), DomainError> {
        let (mem, vmids, pool) = (&mut *self.mem, &mut *self.vmids, &mut *self.pool);
        let mut d = Domain::create_empty(id, self.ipa_bits, vmids, mem, pool)?;
        d.handle = handle;
        d.max_vcpus = vcpus.clamp(1, crate::vgic::MAX_VCPUS);
        d.vgic.set_nr_vcpus(d.max_vcpus);
        match DomainXen::setup_toolstack(id, d.max_vcpus, d.physmap_mut(), mem, pool, max_grant) {
            Ok(x) => d.xen = x,
            Err(e) => {
                d.discard(mem, pool, vmids);
                return Err(DomainError::Stage2(e));
            }
        }
        self.sink.hv_line(format_args!(
            "d{id}: created by domctl, VMID {}",
            d.vmid().0
        ));
        self.domains.push(d);
        Ok(())
    }
}

/// Carry out `plan` for the direct-mapped `dom`: every device's MMIO pages
/// mapped 1:1 (Device-nGnRE; a `/reserved-memory` region as normal RAM), as
/// Xen's `map_range_to_domain`, and every SPI routed to its vGIC as a
/// hardware interrupt of the same number (`map_irq_to_domain`). A route the
/// vGIC refuses is logged (the device then has no interrupt) and the build
/// goes on, as Xen goes on past an IRQ it cannot route for a device it
/// does not need.
///
/// # Errors
/// [`DomainError::Stage2`] if a mapping fails.
pub fn map_passthrough<M: PhysMem + TableMem>(
    dom: &mut Domain,
    mem: &mut M,
    plan: &crate::hostdt::PassthroughPlan,
) -> Result<(), DomainError> {
    use memops::S2Attrs;
    for ram in [false, true] {
        let attrs = if ram { S2Attrs::RAM } else { S2Attrs::DEVICE };
        let runs = page_runs(
            plan.devices
                .iter()
                .filter(|d| d.ram == ram)
                .flat_map(|d| d.mmio.iter().copied()),
        );
        for (s, e) in runs {
            // Fresh mappings of never-mapped IPAs: nothing to invalidate.
            dom.physmap_mut()
                .map_mmio(mem, s / PAGE_SIZE, PhysAddr(s), (e - s) / PAGE_SIZE, attrs)
                .map_err(DomainError::Stage2)?;
        }
    }
    let mut seen: Vec<u32> = Vec::new();
    let mut refused = 0usize;
    for spi in plan.spis() {
        if seen.contains(&spi.intid) {
            continue;
        }
        seen.push(spi.intid);
        // The binding's trigger cell: 1/2 edge, 4/8 level (Xen's `irq_set_type`).
        let level = spi.flags & 0xc != 0;
        if let Err(e) = dom.vgic.route_hw_spi(spi.intid, level) {
            refused += 1;
            log::debug!("d{}: SPI {} not routed: {e:?}", dom.id, spi.intid);
        }
    }
    if refused != 0 {
        log::warn!(
            "d{}: {refused} of {} passed-through SPIs not routed (the vGIC refused them)",
            dom.id,
            seen.len()
        );
    }
    Ok(())
}
