//! A minimal flattened-device-tree writer for the DTB hv hands a guest in x0.
//!
//! Format: Devicetree Specification v0.4, chapter 5 (header, memory
//! reservation block, structure block, strings block; all big-endian).

use alloc::vec::Vec;

const FDT_MAGIC: u32 = 0xd00d_feed;
use crate::bootinfo::{FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_PROP};
const HEADER_LEN: usize = 40;
/// One empty memory reservation entry (the terminator).
const RSVMAP_LEN: usize = 16;

/// Builds a DTB node by node.
#[derive(Default)]
pub struct FdtWriter {
    structs: Vec<u8>,
    strings: Vec<u8>,
    depth: usize,
}

impl FdtWriter {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn u32(&mut self, v: u32) {
        self.structs.extend_from_slice(&v.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
    }

    fn string_offset(&mut self, name: &str) -> u32 {
        let mut at = 0;
        while at < self.strings.len() {
            let end = self.strings[at..]
                .iter()
                .position(|b| *b == 0)
                .map_or(self.strings.len(), |p| at + p);
            if &self.strings[at..end] == name.as_bytes() {
                return at as u32;
            }
            at = end + 1;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }

    /// Open a node (`""` for the root).
    pub fn begin_node(&mut self, name: &str) {
        self.u32(FDT_BEGIN_NODE);
        self.structs.extend_from_slice(name.as_bytes());
        self.structs.push(0);
        self.pad();
        self.depth += 1;
    }

    /// Close the innermost open node.
    pub fn end_node(&mut self) {
        self.u32(FDT_END_NODE);
        self.depth = self.depth.saturating_sub(1);
    }

    /// A property with raw bytes.
    pub fn prop(&mut self, name: &str, value: &[u8]) {
        let nameoff = self.string_offset(name);
        self.u32(FDT_PROP);
        self.u32(value.len() as u32);
        self.u32(nameoff);
        self.structs.extend_from_slice(value);
        self.pad();
    }

    /// A string property (NUL terminated).
    pub fn prop_str(&mut self, name: &str, value: &str) {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.prop(name, &v);
    }

    /// A property of big-endian 32-bit cells.
    pub fn prop_u32s(&mut self, name: &str, cells: &[u32]) {
        let v: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop(name, &v);
    }

    /// A 64-bit property (two cells).
    pub fn prop_u64(&mut self, name: &str, value: u64) {
        self.prop(name, &value.to_be_bytes());
    }

    /// The blob (closes any node left open).
    #[must_use]
    pub fn finish(mut self) -> Vec<u8> {
        while self.depth > 0 {
            self.end_node();
        }
        self.u32(FDT_END);
        let off_rsv = HEADER_LEN;
        let off_struct = off_rsv + RSVMAP_LEN;
        let off_strings = off_struct + self.structs.len();
        let total = off_strings + self.strings.len();
        let mut out = Vec::with_capacity(total);
        for v in [
            FDT_MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            off_rsv as u32,
            17, // version
            16, // last compatible version
            0,  // boot CPU
            self.strings.len() as u32,
            self.structs.len() as u32,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&[0; RSVMAP_LEN]);
        out.extend_from_slice(&self.structs);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// Phandle of the guest's GIC node (Xen's `GUEST_PHANDLE_GIC`, 65000).
pub const GUEST_PHANDLE_GIC: u32 = 65000;
/// The guest's distributor (`GUEST_GICV3_GICD_BASE`/`_SIZE`, public/arch-arm.h):
/// the vGIC's own addresses ([`crate::vgic`] emulates what the DTB names).
pub const GUEST_GICD: (u64, u64) = (crate::vgic::GICD_BASE, crate::vgic::GICD_SIZE);
/// The first redistributor (`GUEST_GICV3_GICR0_BASE`) and the per-vCPU stride.
pub const GUEST_GICR: (u64, u64) = (crate::vgic::GICR_BASE, crate::vgic::GICR_STRIDE);
/// `xen,xen-<version>` of the `/hypervisor` node (Linux parses the version from it).
pub const XEN_COMPAT_VERSION: &str = "4.20";
/// GIC interrupt-specifier type of a PPI (first cell).
const GIC_PPI: u32 = 1;
/// Level-low with all CPUs in the (GICv2-style) mask, as Xen writes its guests' PPIs.
const PPI_FLAGS: u32 = 0xf08;

/// What a guest's DTB says.
pub struct GuestDtb<'a> {
    /// Guest RAM base.
    pub ram_base: u64,
    /// Guest RAM size in total (from `GUEST_RAM0_BASE`, what passes bank 0's
    /// 3 GiB is listed in bank 1, [`super::ram_banks`]).
    pub ram_size: u64,
    /// `/chosen/bootargs`.
    pub bootargs: Option<&'a str>,
    /// `/chosen/linux,initrd-start` and `-end` (IPAs).
    pub initrd: Option<(u64, u64)>,
    /// vCPUs (one `/cpus/cpu@N` each, MPIDR Aff1.Aff0 = the index as hv's
    /// `VMPIDR_EL2`; the GICR region covers them).
    pub vcpus: u32,
}

fn reg2(w: &mut FdtWriter, base: &[(u64, u64)]) {
    let mut cells = alloc::vec::Vec::new();
    for &(a, n) in base {
        cells.extend_from_slice(&[(a >> 32) as u32, a as u32, (n >> 32) as u32, n as u32]);
    }
    w.prop_u32s("reg", &cells);
}

fn node_at(w: &mut FdtWriter, name: &str, at: u64) {
    let mut n = alloc::string::String::new();
    let _ = core::fmt::Write::write_fmt(&mut n, format_args!("{name}@{at:x}"));
    w.begin_node(&n);
}

impl GuestDtb<'_> {
    /// The blob, shaped as Xen's toolstack / dom0less builder shapes a domU's
    /// (xen/arch/arm/domain_build.c and dom0less-build.c: make_hypervisor_node,
    /// make_psci_node, make_cpus_node, make_gicv3_domU_node, make_timer_node):
    /// `/` with 2 address and size cells, `/chosen` (bootargs, initrd), `/cpus`,
    /// `/psci` (HVC), the GICv3 at Xen's guest addresses, the architected timer
    /// (PPIs 13, 14, 11, 10 = INTIDs 29, 30, 27, 26), `/hypervisor` (grant-table
    /// region in `reg`, the event-channel PPI 15 = INTID 31) and `/memory`.
    /// No UART: the console is the PV ring (`hvc0`).
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        let vcpus = self.vcpus.max(1);
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32s("#address-cells", &[2]);
        w.prop_u32s("#size-cells", &[2]);
        w.prop("compatible", b"xen,xenvm-4.20\0xen,xenvm\0");
        w.prop_str("model", "XENVM-4.20 (hv)");
        w.prop_u32s("interrupt-parent", &[GUEST_PHANDLE_GIC]);

        w.begin_node("chosen");
        if let Some(args) = self.bootargs {
            w.prop_str("bootargs", args);
        }
        if let Some((start, end)) = self.initrd {
            w.prop_u64("linux,initrd-start", start);
            w.prop_u64("linux,initrd-end", end);
        }
        w.end_node();

        w.begin_node("cpus");
        w.prop_u32s("#address-cells", &[1]);
        w.prop_u32s("#size-cells", &[0]);
        for id in 0..vcpus {
            let mpidr = (id & 0xff) | (((id >> 8) & 0xff) << 8);
            node_at(&mut w, "cpu", u64::from(mpidr));
            w.prop_str("device_type", "cpu");
            w.prop_str("compatible", "arm,armv8");
            w.prop_str("enable-method", "psci");
            w.prop_u32s("reg", &[mpidr]);
            w.end_node();
        }
        w.end_node();

        w.begin_node("psci");
        w.prop("compatible", b"arm,psci-1.0\0arm,psci-0.2\0arm,psci\0");
        w.prop_str("method", "hvc");
        w.prop_u32s("cpu_off", &[0x8400_0002]);
        w.prop_u32s("cpu_on", &[0xc400_0003]);
        w.end_node();

        node_at(&mut w, "interrupt-controller", GUEST_GICD.0);
        w.prop_str("compatible", "arm,gic-v3");
        w.prop_u32s("#interrupt-cells", &[3]);
        w.prop_u32s("#address-cells", &[0]);
        w.prop("interrupt-controller", &[]);
        w.prop_u32s("#redistributor-regions", &[1]);
        reg2(
            &mut w,
            &[GUEST_GICD, (GUEST_GICR.0, GUEST_GICR.1 * u64::from(vcpus))],
        );
        w.prop_u32s("phandle", &[GUEST_PHANDLE_GIC]);
        w.prop_u32s("linux,phandle", &[GUEST_PHANDLE_GIC]);
        w.end_node();

        w.begin_node("timer");
        w.prop_str("compatible", "arm,armv8-timer");
        let mut irqs = alloc::vec::Vec::new();
        for ppi in [13, 14, 11, 10] {
            irqs.extend_from_slice(&[GIC_PPI, ppi, PPI_FLAGS]);
        }
        w.prop_u32s("interrupts", &irqs);
        w.prop_u32s("interrupt-parent", &[GUEST_PHANDLE_GIC]);
        w.end_node();

        // Exactly "hypervisor": Linux's fdt_find_hyper_node matches the name
        // without a unit address (arch/arm/xen/enlighten.c).
        w.begin_node("hypervisor");
        let mut compat = alloc::vec::Vec::new();
        compat.extend_from_slice(b"xen,xen-");
        compat.extend_from_slice(XEN_COMPAT_VERSION.as_bytes());
        compat.extend_from_slice(b"\0xen,xen\0");
        w.prop("compatible", &compat);
        reg2(
            &mut w,
            &[(
                crate::xen::grant::GUEST_GNTTAB_BASE,
                crate::xen::grant::GUEST_GNTTAB_SIZE,
            )],
        );
        w.prop_u32s(
            "interrupts",
            &[
                GIC_PPI,
                crate::xen::evtchn::GUEST_EVTCHN_PPI - 16,
                PPI_FLAGS,
            ],
        );
        w.prop_u32s("interrupt-parent", &[GUEST_PHANDLE_GIC]);
        w.end_node();

        // RAM beyond bank 0 continues in bank 1 (Xen's layout): one /memory
        // node with a reg entry per non-empty bank.
        let banks = if self.ram_base == super::GUEST_RAM0_BASE {
            super::ram_banks(self.ram_size)
        } else {
            [(self.ram_base, self.ram_size), (0, 0)]
        };
        let regs: alloc::vec::Vec<(u64, u64)> =
            banks.into_iter().filter(|&(_, n)| n != 0).collect();
        node_at(&mut w, "memory", self.ram_base);
        w.prop_str("device_type", "memory");
        reg2(&mut w, &regs);
        w.end_node();
        w.end_node();
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_dtb_parses_with_the_fdt_crate() {
        let blob = GuestDtb {
            ram_base: 0x4000_0000,
            ram_size: 0x100_0000,
            bootargs: Some("console=hvc0 dom0"),
            initrd: Some((0x40e0_0000, 0x40e0_1234)),
            vcpus: 1,
        }
        .build();
        let fdt = fdt::Fdt::new(&blob).expect("valid DTB");
        assert_eq!(fdt.total_size(), blob.len());
        let chosen = fdt.find_node("/chosen").expect("/chosen");
        let args = chosen.property("bootargs").and_then(|p| p.as_str());
        assert_eq!(args, Some("console=hvc0 dom0"));
        let start = chosen
            .property("linux,initrd-start")
            .and_then(|p| p.as_usize());
        let end = chosen
            .property("linux,initrd-end")
            .and_then(|p| p.as_usize());
        assert_eq!((start, end), (Some(0x40e0_0000), Some(0x40e0_1234)));
        let mem = fdt.memory();
        let r: alloc::vec::Vec<_> = mem
            .regions()
            .map(|r| (r.starting_address as usize, r.size))
            .collect();
        assert_eq!(r, [(0x4000_0000, Some(0x100_0000))]);
    }

    /// Issue 9 finding 12: RAM past bank 0's 3 GiB is listed in bank 1.
    #[test]
    fn ram_past_3_gib_is_listed_in_bank_1() {
        let blob = GuestDtb {
            ram_base: 0x4000_0000,
            ram_size: 4 << 30,
            bootargs: None,
            initrd: None,
            vcpus: 1,
        }
        .build();
        let fdt = fdt::Fdt::new(&blob).expect("valid DTB");
        let r: alloc::vec::Vec<_> = fdt
            .memory()
            .regions()
            .map(|r| (r.starting_address as usize, r.size))
            .collect();
        assert_eq!(
            r,
            [
                (0x4000_0000, Some(0xc000_0000)),
                (0x2_0000_0000, Some(0x4000_0000))
            ]
        );
    }

    #[test]
    fn without_bootargs_or_initrd() {
        let blob = GuestDtb {
            ram_base: 0x4000_0000,
            ram_size: 0x20_0000,
            bootargs: None,
            initrd: None,
            vcpus: 1,
        }
        .build();
        let fdt = fdt::Fdt::new(&blob).expect("valid DTB");
        let chosen = fdt.find_node("/chosen").expect("/chosen");
        assert!(chosen.property("bootargs").is_none());
        assert!(chosen.property("linux,initrd-start").is_none());
        // Property names are shared in the strings block.
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32s("a", &[1]);
        w.prop_u32s("a", &[2]);
        let b = w.finish();
        assert_eq!(
            u32::from_be_bytes([b[32], b[33], b[34], b[35]]),
            2,
            "one string: \"a\\0\""
        );
    }

    #[test]
    fn linux_domu_nodes() {
        let blob = GuestDtb {
            ram_base: 0x4000_0000,
            ram_size: 0x1000_0000,
            bootargs: Some("console=hvc0"),
            initrd: None,
            vcpus: 2,
        }
        .build();
        let fdt = fdt::Fdt::new(&blob).expect("valid DTB");
        let hyp = fdt.find_node("/hypervisor").expect("/hypervisor");
        let compat: alloc::vec::Vec<&str> = hyp.compatible().unwrap().all().collect();
        assert_eq!(compat, ["xen,xen-4.20", "xen,xen"]);
        let r: alloc::vec::Vec<_> = hyp
            .reg()
            .unwrap()
            .map(|r| (r.starting_address as usize, r.size))
            .collect();
        assert_eq!(r, [(0x3800_0000, Some(0x0100_0000))]);
        let irq = hyp.property("interrupts").unwrap().value;
        assert_eq!(
            irq,
            [0, 0, 0, 1, 0, 0, 0, 15, 0, 0, 0xf, 8],
            "PPI 15 = INTID 31"
        );
        // One cpu node per vCPU, MPIDR in reg, PSCI enable method.
        let cpus: alloc::vec::Vec<_> = fdt.cpus().map(|c| c.ids().first()).collect();
        assert_eq!(cpus, [0, 1]);
        let cpu1 = fdt.find_node("/cpus/cpu@1").unwrap();
        assert_eq!(
            cpu1.property("enable-method").unwrap().as_str(),
            Some("psci")
        );
        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));
        assert!(psci
            .compatible()
            .unwrap()
            .all()
            .any(|c| c == "arm,psci-0.2"));
        // GICv3 at Xen's guest addresses, GICR sized for 2 vCPUs, 3 cells.
        let gic = fdt.find_compatible(&["arm,gic-v3"]).expect("GICv3");
        let r: alloc::vec::Vec<_> = gic
            .reg()
            .unwrap()
            .map(|r| (r.starting_address as usize, r.size))
            .collect();
        assert_eq!(
            r,
            [(0x0300_1000, Some(0x1_0000)), (0x0302_0000, Some(0x4_0000))]
        );
        assert_eq!(
            gic.property("#interrupt-cells").unwrap().as_usize(),
            Some(3)
        );
        assert_eq!(
            gic.property("phandle").unwrap().as_usize(),
            Some(GUEST_PHANDLE_GIC as usize)
        );
        // The timer's PPIs: 13, 14, 11, 10 (INTIDs 29, 30, 27, 26).
        let t = fdt.find_compatible(&["arm,armv8-timer"]).expect("timer");
        let v = t.property("interrupts").unwrap().value;
        let ppis: alloc::vec::Vec<u32> = v
            .chunks(12)
            .map(|c| u32::from_be_bytes([c[4], c[5], c[6], c[7]]))
            .collect();
        assert_eq!(ppis, [13, 14, 11, 10]);
        // No UART: the console is hvc0.
        assert!(fdt.find_compatible(&["arm,pl011"]).is_none());
        assert!(fdt.all_nodes().all(|n| !n.name.starts_with("pl011")));
        let mem: alloc::vec::Vec<_> = fdt
            .memory()
            .regions()
            .map(|r| (r.starting_address as usize, r.size))
            .collect();
        assert_eq!(mem, [(0x4000_0000, Some(0x1000_0000))]);
    }
}
