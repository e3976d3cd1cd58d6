//! dom0's device tree, derived from the host's the way Xen 4.20 derives the
//! hardware domain's (xen/arch/arm/domain_build.c `prepare_dtb_hwdom`,
//! `handle_node`, `write_properties`, `make_gic_node`, `make_timer_node`,
//! `make_hypervisor_node`, `make_psci_node`, `make_cpus_node`,
//! `make_memory_node`, `find_host_extended_regions`, `find_memory_holes`,
//! `add_ext_regions`; xen/arch/arm/gic-v3.c `gicv3_make_hwdom_dt_node`;
//! xen/arch/arm/device.c `handle_device`, `map_irq_to_domain`,
//! `map_range_to_domain`).
//!
//! [`derive`] is a pure function: the host DTB and hv's decisions
//! ([`Dom0DtSpec`]: its own devices, dom0's direct-mapped RAM banks, vCPUs,
//! grant-table region, event-channel PPI, command line, initrd) in; dom0's DTB
//! and a [`PassthroughPlan`] out. The plan is what the domain builder must do
//! for the DTB to be true: map every listed MMIO range 1:1 (IPA == PA) and
//! route every listed SPI to dom0 as a hardware interrupt. Nothing here
//! touches hardware.
//!
//! What dom0 sees, node by node (Xen's rules unless marked **hv**):
//! - Xen's skip list (`handle_node` `skip_matches`): `xen,domain`,
//!   `xen,domain-shared-memory-v1`, `xen,evtchn-v1`, `xen,xen`, boot modules
//!   (`multiboot,module`, `xen,multiboot-module`), PSCI, the PMUs Xen lists,
//!   `arm,armv7-timer-mem`, `/cpus` and `memory` nodes: dropped with their
//!   subtrees ([`Why::Skipped`]).
//! - The GIC (`arm,gic-v3`, the first one) is replaced by an
//!   `interrupt-controller` node at the host's GICD/GICR addresses with the
//!   host's `compatible` and `phandle` (the vGIC is emulated there); its
//!   children (the ITS) are not given: **hv** lists them as
//!   [`Why::HiddenIts`] (Xen without `CONFIG_HAS_ITS` drops them the same way).
//! - The architected timer is replaced by a `timer` node with the host's three
//!   EL1 PPIs, active-low level, all CPUs.
//! - Nodes hv uses itself ([`Dom0DtSpec::hv_devices`], its UART) are removed
//!   ([`Why::UsedByHv`]); `/chosen/stdout-path` goes with Xen's other
//!   `/chosen` properties.
//! - IOMMUs are never given (**hv**: any node with `#iommu-cells`, Xen: nodes
//!   its IOMMU drivers claim) ([`Why::Iommu`]).
//! - Nodes with a PPI are not given (the vGIC cannot route hardware PPIs)
//!   ([`Why::UsesPpi`]).
//! - **hv** (this issue): PCI host bridges (`device_type = "pci"`) are hidden
//!   when [`Dom0DtSpec::hide_pci`] ([`Why::HiddenPci`]); Xen would give them.
//! - **hv**: a host `/hypervisor` node is dropped (Xen keeps it and warns;
//!   two `/hypervisor` nodes would not be a valid tree) ([`Why::Replaced`]).
//! - Every other node is copied with its properties (`xen,passthrough`
//!   dropped, `status` moved last), and its `reg` ranges (translated through
//!   the parents' `ranges` to CPU addresses) and its SPIs on the GIC enter
//!   the plan. **hv**: a `reg` that does not translate to a CPU address
//!   (a parent without `ranges`, e.g. an I2C bus) is a bus-local address and
//!   is not mapped (Xen fails the build there).
//! - `/chosen` loses `xen,xen-bootargs`, `xen,dom0-bootargs`, `bootargs`,
//!   `stdout-path`, `xen,static-heap`, `linux,initrd-*` and the UEFI
//!   properties, and gets `bootargs` = dom0's command line and
//!   `linux,initrd-start`/`-end` (64-bit) for dom0's initrd.
//! - Appended to the root, in Xen's order: `hypervisor` (`compatible =
//!   "xen,xen-4.20", "xen,xen"`, `reg` = the grant-table region then the
//!   extended regions, `interrupts` = the event-channel PPI, active-low level),
//!   `psci` (`arm,psci-1.0`, `hvc`, Xen's `cpu_off`/`cpu_on` = 1/2), `cpus`
//!   (one `cpu@<vMPIDR>` per vCPU, Xen's `vcpuid_to_vaffinity`: Aff0 = id % 16,
//!   Aff1 = id / 16, the host's first CPU `compatible`), `memory@<first bank>`
//!   with dom0's banks, and a second memory node for `/reserved-memory`
//!   regions if the host has any.
//!
//! Linux reads the `hypervisor` node in arch/arm/xen/enlighten.c:
//! `fdt_find_hyper_node` wants it at depth 1, named `hypervisor`, with a
//! `compatible` starting `xen,xen-` for the version; `xen_dt_guest_init`
//! finds it by `xen,xen`, takes `interrupts[0]` (through `interrupt-parent`)
//! as the event-channel IRQ and `reg[0]` as the grant-table frames;
//! `arch_xen_unpopulated_init` takes `reg[1..]` as extended regions, which
//! must be sorted and must not overlap.

use crate::bootinfo::{check_dtb, BootInfoError};
use crate::domain::dtb::FdtWriter;
use crate::mm::MemRange;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use fdt::node::FdtNode;
use fdt::Fdt;

/// `/hypervisor`'s `compatible`: Xen 4.20's ("xen,xen-" XEN_VERSION_STRING, "xen,xen").
pub const XEN_COMPATIBLE: &[u8] = b"xen,xen-4.20\0xen,xen\0";

/// Xen's PSCI 0.1 function numbers written as `cpu_off` / `cpu_on` in dom0's
/// `/psci` (xen/include/public/arch-arm.h `PSCI_cpu_off`, `PSCI_cpu_on`).
pub const PSCI_0_1_CPU_OFF: u32 = 1;
/// See [`PSCI_0_1_CPU_OFF`].
pub const PSCI_0_1_CPU_ON: u32 = 2;

/// Xen's limit on an Arm domain's vCPUs (`MAX_VIRT_CPUS`); the vMPIDR scheme
/// holds 16 × 256.
pub const MAX_VCPUS: u32 = 128;

/// An extended region is at least this big (`add_ext_regions`).
pub const EXT_REGION_MIN: u64 = 64 << 20;
const SZ_2M: u64 = 2 << 20;
const PAGE: u64 = 4096;

/// How the extended regions (`/hypervisor` `reg[1..]`) are found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExtRegions {
    /// None (Xen's `ext_regions=no`).
    Off,
    /// Host RAM given to nobody in dom0's view: the host's memory nodes minus
    /// dom0's banks, reserved memory and the grant-table region. Xen's choice
    /// for a direct-mapped dom0 without an IOMMU (`find_host_extended_regions`),
    /// which is hv's case.
    UnusedHostRam,
    /// The whole IPA space below `2^ipa_bits` minus every `reg` and PCI
    /// `ranges` of the host tree (`find_memory_holes`, Xen's choice when an
    /// IOMMU protects dom0).
    Holes {
        /// dom0's IPA size in bits.
        ipa_bits: u32,
    },
}

/// hv's decisions about dom0, the input of [`derive`] next to the host DTB.
#[derive(Clone, Copy, Debug)]
pub struct Dom0DtSpec<'a> {
    /// Paths of the host nodes hv drives itself (its UART, e.g. `/pl011@9000000`).
    pub hv_devices: &'a [&'a str],
    /// MMIO hv drives itself (e.g. `BootInfo::uart`): a node with a `reg` range
    /// (in CPU addresses) overlapping one of these is hv's, like [`Dom0DtSpec::hv_devices`].
    pub hv_mmio: &'a [MemRange],
    /// dom0's RAM banks, direct-mapped (IPA == PA), in address order.
    pub memory: &'a [MemRange],
    /// dom0's vCPUs (1..=[`MAX_VCPUS`]).
    pub vcpus: u32,
    /// The grant-table region (`/hypervisor` `reg[0]`; Xen uses its own text
    /// section, which dom0 never has in its RAM).
    pub gnttab: MemRange,
    /// How to find the extended regions.
    pub ext_regions: ExtRegions,
    /// The event-channel upcall PPI as a GIC INTID (16..=31), not one of the timer's.
    pub evtchn_ppi: u32,
    /// dom0's command line (`/chosen/bootargs`).
    pub bootargs: Option<&'a str>,
    /// Where dom0's initrd lies (`/chosen/linux,initrd-start`/`-end`).
    pub initrd: Option<MemRange>,
    /// Hide PCI host bridges (QEMU virt's PCIe in issue 11).
    pub hide_pci: bool,
}

/// An SPI to route to dom0 as a hardware interrupt (virtual INTID == physical).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Spi {
    /// GIC INTID (32 + the binding's number).
    pub intid: u32,
    /// The binding's flags cell (trigger type: 1 edge rising, 4 level high, ...).
    pub flags: u32,
}

/// A host device dom0 gets.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PassDevice {
    /// Its path in the host tree (and in dom0's).
    pub path: String,
    /// Its `reg` ranges in CPU physical addresses, to map 1:1 (device
    /// memory; Xen maps them `p2m_mmio_direct_c` and lets dom0's stage 1
    /// choose the attributes). Not page-aligned: the builder maps the pages
    /// they touch.
    pub mmio: Vec<MemRange>,
    /// A `/reserved-memory` child: RAM, to map 1:1 as normal memory and
    /// without I/O-memory rights (Xen's `map_range_to_domain`).
    pub ram: bool,
    /// Its SPIs.
    pub spis: Vec<Spi>,
}

/// Why a host node is not in dom0's tree as it is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Why {
    /// hv drives it ([`Dom0DtSpec::hv_devices`]).
    UsedByHv,
    /// Replaced by hv's own node (GIC, timer, `/hypervisor`).
    Replaced,
    /// On Xen's skip list (boot modules, PSCI, PMU, `/cpus`, memory, ...).
    Skipped,
    /// Uses a PPI, which the vGIC cannot route to a guest.
    UsesPpi,
    /// An IOMMU.
    Iommu,
    /// A second GIC (Xen drives one).
    SecondaryGic,
    /// A PCI host bridge, hidden in this issue.
    HiddenPci,
    /// A GICv3 ITS (hv does not emulate one).
    HiddenIts,
}

/// A host node dom0 does not get as it is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Removed {
    /// Its path.
    pub path: String,
    /// Why.
    pub why: Why,
}

/// What the domain builder must do for dom0's DTB to be true.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct PassthroughPlan {
    /// Devices given to dom0, in tree order.
    pub devices: Vec<PassDevice>,
    /// Host nodes not given (their subtrees not listed), in tree order.
    pub removed: Vec<Removed>,
    /// The extended regions written to `/hypervisor` (nothing to map).
    pub ext_regions: Vec<MemRange>,
}

impl PassthroughPlan {
    /// Every SPI to route, in tree order (shared lines appear once per device).
    pub fn spis(&self) -> impl Iterator<Item = Spi> + '_ {
        self.devices.iter().flat_map(|d| d.spis.iter().copied())
    }
}

/// dom0's DTB and the plan that makes it true.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Dom0Dt {
    /// The flattened tree for dom0's x0.
    pub dtb: Vec<u8>,
    /// What to map and route.
    pub plan: PassthroughPlan,
}

/// Why dom0's tree could not be derived.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HostDtError {
    /// The host blob is not a usable DTB.
    Dtb(BootInfoError),
    /// No `arm,gic-v3` node with `interrupt-controller`, a `phandle` and its
    /// `reg` (GICD plus the redistributor regions).
    NoGic,
    /// No `arm,armv8-timer` / `arm,armv7-timer` node with three GIC PPIs.
    NoTimer,
    /// No `/cpus` child with `device_type = "cpu"` and a `compatible`.
    NoCpu,
    /// The root's `#address-cells` / `#size-cells` are not 1 or 2.
    RootCells,
    /// A decision in [`Dom0DtSpec`] is unusable.
    BadSpec(&'static str),
    /// Two children of the root share a name (the DT specification makes
    /// sibling names unique): a path such as `/reserved-memory` would find
    /// one node in the host tree and another in dom0's (found by the
    /// `hostdt` fuzz target: a host memory node named `reserved-memory`
    /// left the real one, with unreadable cells, first in dom0's tree).
    DuplicateNode,
}

impl core::fmt::Display for HostDtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HostDtError::Dtb(e) => write!(f, "host DTB: {e}"),
            HostDtError::NoGic => write!(f, "no usable arm,gic-v3 node"),
            HostDtError::NoTimer => write!(f, "no usable architected timer node"),
            HostDtError::NoCpu => write!(f, "no /cpus/cpu node with a compatible"),
            HostDtError::RootCells => write!(f, "root #address-cells/#size-cells not 1 or 2"),
            HostDtError::BadSpec(what) => write!(f, "bad dom0 decision: {what}"),
            HostDtError::DuplicateNode => write!(f, "two root nodes share a name"),
        }
    }
}

impl HostDtError {
    /// A fixed description (for callers whose errors are `Copy`).
    #[must_use]
    pub fn what(&self) -> &'static str {
        match self {
            HostDtError::Dtb(_) => "the host DTB is not usable",
            HostDtError::NoGic => "no usable arm,gic-v3 node",
            HostDtError::NoTimer => "no usable architected timer node",
            HostDtError::NoCpu => "no /cpus/cpu node with a compatible",
            HostDtError::RootCells => "root #address-cells/#size-cells not 1 or 2",
            HostDtError::BadSpec(what) => what,
            HostDtError::DuplicateNode => "two root nodes share a name",
        }
    }
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// A number of 1 or 2 cells (0 cells: 0).
fn read_cells(b: &[u8]) -> Option<u64> {
    match b.len() {
        0 => Some(0),
        4 => be32(b).map(u64::from),
        8 => Some(u64::from_be_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

fn prop<'a>(n: FdtNode<'_, 'a>, name: &str) -> Option<&'a [u8]> {
    n.property(name).map(|p| p.value)
}

fn u32_prop(n: FdtNode<'_, '_>, name: &str) -> Option<u32> {
    prop(n, name).filter(|v| v.len() == 4).and_then(be32)
}

fn str_prop<'a>(n: FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
    let v = prop(n, name)?;
    core::str::from_utf8(v.strip_suffix(&[0]).unwrap_or(v)).ok()
}

fn compatible(n: FdtNode<'_, '_>, c: &str) -> bool {
    prop(n, "compatible").is_some_and(|v| v.split(|&b| b == 0).any(|s| s == c.as_bytes()))
}

/// An address space's translation to CPU physical addresses.
#[derive(Clone, Debug)]
enum Xlate {
    /// Addresses are CPU addresses.
    Identity,
    /// Windows `(child base, cpu base, size)`.
    Windows(Vec<(u64, u64, u64)>),
    /// Bus-local addresses (no `ranges`).
    None,
}

impl Xlate {
    fn cpu(&self, addr: u64, size: u64) -> Option<u64> {
        match self {
            Xlate::Identity => Some(addr),
            Xlate::Windows(w) => w.iter().find_map(|&(c, p, s)| {
                let off = addr.checked_sub(c)?;
                (off.checked_add(size)? <= s).then(|| p.checked_add(off))?
            }),
            Xlate::None => None,
        }
    }

    /// The translation of `node`'s children: `node`'s `ranges` (child address
    /// cells `ac`, `node`'s own address cells `pac`, size cells `sc`) composed
    /// with `self` (the translation of `node`'s address space).
    fn child(&self, node: FdtNode<'_, '_>, ac: usize, pac: usize, sc: usize) -> Xlate {
        let Some(r) = prop(node, "ranges") else {
            return Xlate::None;
        };
        if r.is_empty() {
            return self.clone();
        }
        let stride = (ac + pac + sc) * 4;
        if ac > 2 || pac > 2 || sc > 2 || stride == 0 || !r.len().is_multiple_of(stride) {
            return Xlate::None;
        }
        let w = r
            .chunks_exact(stride)
            .filter_map(|c| {
                let (ca, rest) = c.split_at(ac * 4);
                let (pa, sz) = rest.split_at(pac * 4);
                let (ca, pa, sz) = (read_cells(ca)?, read_cells(pa)?, read_cells(sz)?);
                Some((ca, self.cpu(pa, sz)?, sz))
            })
            .collect();
        Xlate::Windows(w)
    }
}

/// `(#address-cells, #size-cells)` `node` gives its children.
fn cells_of(node: FdtNode<'_, '_>, inherited: (usize, usize)) -> (usize, usize) {
    (
        u32_prop(node, "#address-cells").map_or(inherited.0, |v| v as usize),
        u32_prop(node, "#size-cells").map_or(inherited.1, |v| v as usize),
    )
}

/// `node`'s `reg` entries decoded with its parent's cells (none if undecodable).
fn regs(node: FdtNode<'_, '_>, (ac, sc): (usize, usize)) -> Vec<(u64, u64)> {
    let Some(v) = prop(node, "reg") else {
        return Vec::new();
    };
    let stride = (ac + sc) * 4;
    if ac > 2 || sc > 2 || stride == 0 || !v.len().is_multiple_of(stride) {
        return Vec::new();
    }
    v.chunks_exact(stride)
        .filter_map(|c| {
            let (a, s) = c.split_at(ac * 4);
            Some((read_cells(a)?, read_cells(s)?))
        })
        .collect()
}

/// A GIC interrupt specifier `(type, number, flags)` as an INTID, SPI or PPI.
fn gic_intid(ty: u32, num: u32) -> Option<u32> {
    match ty {
        0 => num.checked_add(32).filter(|&i| i < 1020),
        1 => num.checked_add(16).filter(|&i| i < 32),
        _ => None,
    }
}

/// A GIC interrupt specifier for INTID `irq` (PPI or SPI), all CPUs,
/// active-low level (Xen's `set_interrupt(.., 0xf, DT_IRQ_TYPE_LEVEL_LOW)`).
fn gic_cells_low_level(irq: u32) -> [u32; 3] {
    let ppi = irq < 32;
    [
        u32::from(ppi),
        irq - if ppi { 16 } else { 32 },
        (0xf << 8) | 8,
    ]
}

/// Push `(base, size)` as `ac` + `sc` cells.
fn push_range(out: &mut Vec<u32>, ac: usize, sc: usize, base: u64, size: u64) {
    for (v, n) in [(base, ac), (size, sc)] {
        if n == 2 {
            out.push((v >> 32) as u32);
        }
        out.push(v as u32);
    }
}

/// What [`derive`] found in the host tree before writing.
struct Host {
    gic_phandle: u32,
    timer_ppis: [u32; 3],
    root_cells: (usize, usize),
}

struct Walk<'s, 'b, 'a> {
    fdt: &'b Fdt<'a>,
    spec: &'s Dom0DtSpec<'s>,
    host: Host,
    w: FdtWriter,
    plan: PassthroughPlan,
    gic_done: bool,
    resv: Vec<MemRange>,
}

/// Xen's `skip_matches` (domain_build.c `handle_node`).
const SKIP_COMPATIBLE: &[&str] = &[
    "xen,domain",
    "xen,domain-shared-memory-v1",
    "xen,evtchn-v1",
    "xen,xen",
    "xen,multiboot-module",
    "multiboot,module",
    "arm,psci",
    "arm,psci-0.2",
    "arm,psci-1.0",
    "arm,cortex-a7-pmu",
    "arm,cortex-a15-pmu",
    "arm,cortex-a53-edac",
    "arm,armv8-pmuv3",
    "arm,armv7-timer-mem",
];

/// `/chosen` properties dom0 does not inherit (`write_properties`).
const CHOSEN_DROP: &[&str] = &[
    "xen,static-heap",
    "xen,xen-bootargs",
    "xen,dom0-bootargs",
    "bootargs",
    "linux,initrd-start",
    "linux,initrd-end",
    "stdout-path",
    "linux,uefi-system-table",
    "linux,uefi-mmap-start",
    "linux,uefi-mmap-size",
    "linux,uefi-mmap-desc-size",
    "linux,uefi-mmap-desc-ver",
];

impl Walk<'_, '_, '_> {
    fn remove(&mut self, path: &str, why: Why) {
        self.plan.removed.push(Removed {
            path: path.into(),
            why,
        });
    }

    /// The INTIDs of `node`'s `interrupts` on the GIC, with their flags;
    /// interrupts on another controller are not mapped (`map_device_irqs_to_domain`).
    fn gic_irqs(&self, node: FdtNode<'_, '_>, irq_parent: Option<u32>) -> Vec<(u32, u32)> {
        let Some(v) = prop(node, "interrupts") else {
            return Vec::new();
        };
        let parent = u32_prop(node, "interrupt-parent").or(irq_parent);
        if parent != Some(self.host.gic_phandle) {
            return Vec::new();
        }
        v.chunks_exact(12)
            .filter_map(|c| {
                let (ty, num, flags) = (be32(c)?, be32(&c[4..])?, be32(&c[8..])?);
                Some((gic_intid(ty, num)?, flags))
            })
            .collect()
    }

    fn node(
        &mut self,
        n: FdtNode<'_, '_>,
        path: &str,
        depth: usize,
        parent_cells: (usize, usize),
        xlate: &Xlate,
        irq_parent: Option<u32>,
    ) {
        let is_root = depth == 0;
        if !is_root {
            if SKIP_COMPATIBLE.iter().any(|c| compatible(n, c))
                || path == "/cpus"
                || str_prop(n, "device_type") == Some("memory")
            {
                return self.remove(path, Why::Skipped);
            }
            if compatible(n, "arm,gic-v3") {
                return self.gic(n, path, parent_cells);
            }
            if compatible(n, "arm,armv7-timer") || compatible(n, "arm,armv8-timer") {
                self.timer(n);
                return self.remove(path, Why::Replaced);
            }
            if path == "/hypervisor" {
                return self.remove(path, Why::Replaced);
            }
            let mmio: Vec<MemRange> = regs(n, parent_cells)
                .into_iter()
                .filter_map(|(a, s)| Some(MemRange::new(xlate.cpu(a, s)?, s)))
                .filter(|r| r.size != 0)
                .collect();
            if self.spec.hv_devices.contains(&path)
                || mmio
                    .iter()
                    .any(|r| self.spec.hv_mmio.iter().any(|h| h.overlaps(r)))
            {
                return self.remove(path, Why::UsedByHv);
            }
            if prop(n, "#iommu-cells").is_some() {
                return self.remove(path, Why::Iommu);
            }
            let irqs = self.gic_irqs(n, irq_parent);
            if irqs.iter().any(|&(i, _)| i < 32) {
                return self.remove(path, Why::UsesPpi);
            }
            if self.spec.hide_pci && str_prop(n, "device_type") == Some("pci") {
                return self.remove(path, Why::HiddenPci);
            }
            // handle_device: its MMIO and SPIs.
            let ram = path.starts_with("/reserved-memory/");
            if ram {
                self.resv.extend(mmio.iter().copied());
            }
            let spis: Vec<Spi> = irqs
                .into_iter()
                .map(|(intid, flags)| Spi { intid, flags })
                .collect();
            if !mmio.is_empty() || !spis.is_empty() {
                self.plan.devices.push(PassDevice {
                    path: path.into(),
                    mmio,
                    ram,
                    spis,
                });
            }
        }
        self.w.begin_node(if is_root { "" } else { n.name });
        self.properties(n, path);
        let cells = cells_of(n, parent_cells);
        let child_xlate = if is_root {
            Xlate::Identity
        } else {
            xlate.child(n, cells.0, parent_cells.0, cells.1)
        };
        let child_irq_parent = u32_prop(n, "interrupt-parent").or(irq_parent);
        if depth < 32 {
            for c in n.children() {
                let p = if is_root {
                    format!("/{}", c.name)
                } else {
                    format!("{path}/{}", c.name)
                };
                self.node(c, &p, depth + 1, cells, &child_xlate, child_irq_parent);
            }
        }
        if is_root {
            self.root_tail();
        }
        self.w.end_node();
    }

    /// `write_properties`.
    fn properties(&mut self, n: FdtNode<'_, '_>, path: &str) {
        let chosen = path == "/chosen";
        let mut status = None;
        for p in n.properties() {
            if (chosen && CHOSEN_DROP.contains(&p.name)) || p.name == "xen,passthrough" {
                continue;
            }
            if p.name == "status" {
                status = Some(p.value);
                continue;
            }
            self.w.prop(p.name, p.value);
        }
        if let Some(s) = status {
            self.w.prop("status", s);
        }
        if chosen {
            if let Some(a) = self.spec.bootargs {
                self.w.prop_str("bootargs", a);
            }
            if let Some(r) = self.spec.initrd.filter(|r| r.size != 0) {
                self.w.prop_u64("linux,initrd-start", r.base.0);
                self.w.prop_u64("linux,initrd-end", r.end());
            }
        }
    }

    /// `make_gic_node` + `gicv3_make_hwdom_dt_node`.
    fn gic(&mut self, n: FdtNode<'_, '_>, path: &str, (ac, sc): (usize, usize)) {
        if self.gic_done || u32_prop(n, "phandle") != Some(self.host.gic_phandle) {
            return self.remove(path, Why::SecondaryGic);
        }
        self.gic_done = true;
        self.w.begin_node("interrupt-controller");
        self.w.prop_u32s("phandle", &[self.host.gic_phandle]);
        for c in ["#address-cells", "#size-cells"] {
            if let Some(v) = prop(n, c) {
                self.w.prop(c, v);
            }
        }
        self.w.prop_u32s("#interrupt-cells", &[3]);
        self.w.prop("interrupt-controller", &[]);
        self.w
            .prop("compatible", prop(n, "compatible").unwrap_or_default());
        let nr = u32_prop(n, "#redistributor-regions").unwrap_or(1);
        self.w.prop_u32s("#redistributor-regions", &[nr]);
        let len = (ac + sc) * 4 * (nr as usize + 1);
        let reg = prop(n, "reg").unwrap_or_default();
        self.w.prop("reg", reg.get(..len).unwrap_or(reg));
        self.w.end_node();
        for c in n.children() {
            let p = format!("{path}/{}", c.name);
            let why = if compatible(c, "arm,gic-v3-its") {
                Why::HiddenIts
            } else {
                Why::Replaced
            };
            self.remove(&p, why);
        }
        self.remove(path, Why::Replaced);
    }

    /// `make_timer_node` (hardware domain: the host's PPIs).
    fn timer(&mut self, n: FdtNode<'_, '_>) {
        self.w.begin_node("timer");
        self.w.prop_str("compatible", "arm,armv8-timer");
        let cells: Vec<u32> = self
            .host
            .timer_ppis
            .iter()
            .flat_map(|&i| gic_cells_low_level(i))
            .collect();
        self.w.prop_u32s("interrupts", &cells);
        self.w
            .prop_u32s("interrupt-parent", &[self.host.gic_phandle]);
        if let Some(f) = u32_prop(n, "clock-frequency") {
            self.w.prop_u32s("clock-frequency", &[f]);
        }
        self.w.end_node();
    }

    /// The nodes Xen appends to the root after the host's children.
    fn root_tail(&mut self) {
        let (ac, sc) = self.host.root_cells;
        let spec = self.spec;
        // make_hypervisor_node
        self.w.begin_node("hypervisor");
        self.w.prop("compatible", XEN_COMPATIBLE);
        let mut reg = Vec::new();
        push_range(&mut reg, ac, sc, spec.gnttab.base.0, spec.gnttab.size);
        for r in &self.plan.ext_regions {
            push_range(&mut reg, ac, sc, r.base.0, r.size);
        }
        self.w.prop_u32s("reg", &reg);
        self.w
            .prop_u32s("interrupts", &gic_cells_low_level(spec.evtchn_ppi));
        self.w
            .prop_u32s("interrupt-parent", &[self.host.gic_phandle]);
        self.w.end_node();
        // make_psci_node
        self.w.begin_node("psci");
        self.w
            .prop("compatible", b"arm,psci-1.0\0arm,psci-0.2\0arm,psci\0");
        self.w.prop_str("method", "hvc");
        self.w.prop_u32s("cpu_off", &[PSCI_0_1_CPU_OFF]);
        self.w.prop_u32s("cpu_on", &[PSCI_0_1_CPU_ON]);
        self.w.end_node();
        // make_cpus_node
        let (compat, freq) = cpu_props(self.fdt);
        self.w.begin_node("cpus");
        self.w.prop_u32s("#address-cells", &[1]);
        self.w.prop_u32s("#size-cells", &[0]);
        for id in 0..spec.vcpus {
            let aff = vcpu_affinity(id);
            self.w.begin_node(&format!("cpu@{aff:x}"));
            self.w.prop("compatible", compat);
            self.w.prop_str("device_type", "cpu");
            self.w.prop_u32s("reg", &[aff]);
            if let Some(f) = freq {
                self.w.prop_u32s("clock-frequency", &[f]);
            }
            self.w.prop_str("enable-method", "psci");
            self.w.end_node();
        }
        self.w.end_node();
        // make_memory_node: dom0's banks, then the reserved-memory regions.
        let resv = core::mem::take(&mut self.resv);
        for banks in [spec.memory, &resv[..]] {
            let Some(first) = banks.first() else {
                continue;
            };
            self.w.begin_node(&format!("memory@{:x}", first.base.0));
            self.w.prop_str("device_type", "memory");
            let mut reg = Vec::new();
            for b in banks {
                push_range(&mut reg, ac, sc, b.base.0, b.size);
            }
            self.w.prop_u32s("reg", &reg);
            self.w.end_node();
        }
    }
}

/// The first `/cpus` cpu's `compatible` and `clock-frequency` (Xen's
/// `make_cpus_node` assumes every CPU is the same).
fn cpu_props<'a>(fdt: &Fdt<'a>) -> (&'a [u8], Option<u32>) {
    fdt.find_node("/cpus")
        .into_iter()
        .flat_map(|c| c.children())
        .find(|c| str_prop(*c, "device_type") == Some("cpu"))
        .map_or((&[][..], None), |c| {
            (
                prop(c, "compatible").unwrap_or_default(),
                u32_prop(c, "clock-frequency"),
            )
        })
}

/// A vCPU's MPIDR affinity as Xen numbers them (`vcpuid_to_vaffinity`).
#[must_use]
pub fn vcpu_affinity(id: u32) -> u32 {
    (id & 0xf) | (((id >> 4) & 0xff) << 8)
}

/// A set of byte ranges `[start, end)`, kept sorted and disjoint.
#[derive(Default)]
struct RangeSet(Vec<(u64, u64)>);

impl RangeSet {
    fn add(&mut self, start: u64, end: u64) {
        if start < end {
            self.0.push((start, end));
            self.0.sort_unstable();
            let mut out: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
            for &(s, e) in &self.0 {
                match out.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => out.push((s, e)),
                }
            }
            self.0 = out;
        }
    }

    fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(s, e) in &self.0 {
            if e <= start || s >= end {
                out.push((s, e));
                continue;
            }
            if s < start {
                out.push((s, start));
            }
            if e > end {
                out.push((end, e));
            }
        }
        self.0 = out;
    }

    /// Xen's `add_ext_regions` on each range: 2 MiB aligned inwards, at least
    /// [`EXT_REGION_MIN`].
    fn ext_regions(&self) -> Vec<MemRange> {
        self.0
            .iter()
            .filter_map(|&(s, e)| {
                let start = s.checked_next_multiple_of(SZ_2M)?;
                let size = e.checked_sub(start)? & !(SZ_2M - 1);
                (size >= EXT_REGION_MIN).then(|| MemRange::new(start, size))
            })
            .collect()
    }
}

fn page_down(a: u64) -> u64 {
    a & !(PAGE - 1)
}

fn page_up(a: u64) -> u64 {
    a.checked_next_multiple_of(PAGE).unwrap_or(!(PAGE - 1))
}

/// Every `reg` (translated) and PCI `ranges` window of the tree, for
/// [`ExtRegions::Holes`] (`find_memory_holes`).
fn all_addressable(
    n: FdtNode<'_, '_>,
    depth: usize,
    parent_cells: (usize, usize),
    xlate: &Xlate,
    out: &mut RangeSet,
) {
    if depth > 0 {
        for (a, s) in regs(n, parent_cells) {
            if let Some(c) = xlate.cpu(a, s) {
                out.add(page_down(c), page_up(c.saturating_add(s)));
            }
        }
    }
    let cells = cells_of(n, parent_cells);
    if str_prop(n, "device_type") == Some("pci") {
        // PCI ranges: 3-cell child address, parent address, size.
        let (pac, sc) = (parent_cells.0, cells.1);
        let stride = (3 + pac + sc) * 4;
        if let Some(r) = prop(n, "ranges").filter(|_| pac <= 2 && sc <= 2) {
            for c in r.chunks_exact(stride) {
                let (pa, sz) = c[12..].split_at(pac * 4);
                if let (Some(pa), Some(sz)) = (read_cells(pa), read_cells(sz)) {
                    if let Some(cpu) = xlate.cpu(pa, sz) {
                        out.add(page_down(cpu), page_up(cpu.saturating_add(sz)));
                    }
                }
            }
        }
    }
    let child = if depth == 0 {
        Xlate::Identity
    } else {
        xlate.child(n, cells.0, parent_cells.0, cells.1)
    };
    if depth < 32 {
        for c in n.children() {
            all_addressable(c, depth + 1, cells, &child, out);
        }
    }
}

/// Host RAM (every enabled memory node) and reserved memory (`/memreserve/`
/// and `/reserved-memory` children with a `reg`).
fn host_ram_and_reserved(fdt: &Fdt<'_>, root_cells: (usize, usize)) -> (RangeSet, Vec<MemRange>) {
    let mut ram = RangeSet::default();
    let mut resv: Vec<MemRange> = fdt
        .memory_reservations()
        .map(|r| MemRange::new(r.address() as u64, r.size() as u64))
        .collect();
    if let Some(root) = fdt.find_node("/") {
        for n in root.children() {
            if str_prop(n, "device_type") == Some("memory")
                && !matches!(str_prop(n, "status"), Some(s) if s != "okay" && s != "ok")
            {
                for (a, s) in regs(n, root_cells) {
                    ram.add(a, a.saturating_add(s));
                }
            }
        }
    }
    if let Some(rm) = fdt.find_node("/reserved-memory") {
        let cells = cells_of(rm, root_cells);
        for c in rm.children() {
            resv.extend(regs(c, cells).into_iter().map(|(a, s)| MemRange::new(a, s)));
        }
    }
    (ram, resv)
}

/// Derive dom0's DTB and passthrough plan from the host DTB `host` and hv's
/// decisions `spec` (see the module docs for every rule).
///
/// # Errors
/// [`HostDtError`]: a malformed host DTB, no GICv3 / timer / CPU node, root
/// cells other than 1 or 2, or an unusable decision (no RAM bank, banks out of
/// order or overlapping, vCPUs outside 1..=[`MAX_VCPUS`], an empty
/// grant-table region, an event-channel INTID that is not a free PPI).
pub fn derive(host: &[u8], spec: &Dom0DtSpec<'_>) -> Result<Dom0Dt, HostDtError> {
    check_dtb(host).map_err(HostDtError::Dtb)?;
    let fdt = Fdt::new(host).map_err(|_| HostDtError::Dtb(BootInfoError::NotADtb))?;
    let root = fdt
        .find_node("/")
        .ok_or(HostDtError::Dtb(BootInfoError::NotADtb))?;
    let root_cells = cells_of(root, (2, 1));
    if !(1..=2).contains(&root_cells.0) || !(1..=2).contains(&root_cells.1) {
        return Err(HostDtError::RootCells);
    }
    let mut names: Vec<&str> = root.children().map(|n| n.name).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(HostDtError::DuplicateNode);
    }
    if spec.memory.is_empty()
        || spec
            .memory
            .iter()
            .any(|b| b.size == 0 || b.base.0.checked_add(b.size).is_none())
        || spec.memory.windows(2).any(|w| w[0].end() > w[1].base.0)
    {
        return Err(HostDtError::BadSpec("dom0 memory banks"));
    }
    let fits = |r: &MemRange| {
        let max = |cells: usize| {
            if cells == 1 {
                u64::from(u32::MAX)
            } else {
                u64::MAX
            }
        };
        r.base.0 <= max(root_cells.0) && r.size <= max(root_cells.1)
    };
    if !spec.memory.iter().all(fits) {
        return Err(HostDtError::BadSpec("dom0 memory banks"));
    }
    if !(1..=MAX_VCPUS).contains(&spec.vcpus) {
        return Err(HostDtError::BadSpec("dom0 vCPUs"));
    }
    if spec.gnttab.size == 0
        || spec.gnttab.base.0.checked_add(spec.gnttab.size).is_none()
        || !fits(&spec.gnttab)
    {
        return Err(HostDtError::BadSpec("grant-table region"));
    }
    // The primary GIC: the first arm,gic-v3 interrupt controller with a phandle.
    let mut gic = None;
    let mut timer = None;
    let mut stack = alloc::vec![(root, 0usize)];
    while let Some((n, d)) = stack.pop() {
        if compatible(n, "arm,gic-v3") && prop(n, "interrupt-controller").is_some() {
            gic = gic.or(u32_prop(n, "phandle").filter(|_| prop(n, "reg").is_some()));
        }
        if compatible(n, "arm,armv8-timer") || compatible(n, "arm,armv7-timer") {
            timer = timer.or(Some(n));
        }
        if d < 32 {
            // Reverse so the first node in tree order is found first.
            let kids: Vec<_> = n.children().collect();
            stack.extend(kids.into_iter().rev().map(|c| (c, d + 1)));
        }
    }
    let gic_phandle = gic.ok_or(HostDtError::NoGic)?;
    let t = timer
        .and_then(|t| prop(t, "interrupts"))
        .ok_or(HostDtError::NoTimer)?;
    let mut ppis = t.chunks_exact(12).map(|c| {
        let (ty, num) = (be32(c)?, be32(&c[4..])?);
        gic_intid(ty, num).filter(|&i| i < 32)
    });
    let mut next = || ppis.next().flatten().ok_or(HostDtError::NoTimer);
    let timer_ppis = [next()?, next()?, next()?];
    if !(16..32).contains(&spec.evtchn_ppi) || timer_ppis.contains(&spec.evtchn_ppi) {
        return Err(HostDtError::BadSpec("event-channel PPI"));
    }
    let mut walk = Walk {
        fdt: &fdt,
        spec,
        host: Host {
            gic_phandle,
            timer_ppis,
            root_cells,
        },
        w: FdtWriter::new(),
        plan: PassthroughPlan::default(),
        gic_done: false,
        resv: Vec::new(),
    };
    if cpu_props(&fdt).0.is_empty() {
        return Err(HostDtError::NoCpu);
    }
    walk.plan.ext_regions = match spec.ext_regions {
        ExtRegions::Off => Vec::new(),
        ExtRegions::UnusedHostRam => {
            let (mut free, resv) = host_ram_and_reserved(&fdt, root_cells);
            for r in spec.memory.iter().chain(&resv).chain([&spec.gnttab]) {
                free.remove(page_down(r.base.0), page_up(r.end()));
            }
            free.ext_regions()
        }
        ExtRegions::Holes { ipa_bits } => {
            let mut holes = RangeSet::default();
            let top = if ipa_bits >= 64 {
                u64::MAX
            } else {
                1u64 << ipa_bits.max(12)
            };
            holes.add(0, top);
            let mut used = RangeSet::default();
            all_addressable(root, 0, (2, 1), &Xlate::Identity, &mut used);
            for &(s, e) in &used.0 {
                holes.remove(s, e);
            }
            holes.ext_regions()
        }
    };
    // Regions the root's cells cannot express are left out (Xen would write them truncated).
    walk.plan.ext_regions.retain(fits);
    walk.node(root, "/", 0, (2, 1), &Xlate::Identity, None);
    if !walk.gic_done {
        return Err(HostDtError::NoGic);
    }
    Ok(Dom0Dt {
        dtb: walk.w.finish(),
        plan: walk.plan,
    })
}

#[cfg(test)]
mod tests;
