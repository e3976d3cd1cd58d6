//! A flattened device tree writer into a caller's buffer (no allocation),
//! and the DTB the builder gives a domU.
//!
//! Layout written (Devicetree Specification v0.4, chapter 5): header (40
//! bytes, version 17, last compatible 16), an empty memory reservation map,
//! the structure block, then the strings block. The structure block grows in
//! place after the header; strings collect in a small side table and are
//! appended by [`FdtWriter::finish`].

use crate::abi::guest;

/// Why a DTB could not be written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FdtWriteError {
    /// The output buffer (or the strings table) is full.
    NoSpace,
    /// `end_node`/`finish` without a matching `begin_node`, or unclosed nodes.
    Unbalanced,
}

impl core::fmt::Display for FdtWriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FdtWriteError::NoSpace => write!(f, "DTB buffer full"),
            FdtWriteError::Unbalanced => write!(f, "unbalanced DTB nodes"),
        }
    }
}

const HEADER: usize = 40;
const RSVMAP: usize = 16;
const STRINGS_MAX: usize = 512;

/// Writes an FDT into a byte buffer.
pub struct FdtWriter<'a> {
    out: &'a mut [u8],
    pos: usize,
    strings: [u8; STRINGS_MAX],
    strings_len: usize,
    depth: usize,
}

impl<'a> FdtWriter<'a> {
    /// A writer over `out`.
    ///
    /// # Errors
    /// [`FdtWriteError::NoSpace`] if `out` cannot even hold the header.
    pub fn new(out: &'a mut [u8]) -> Result<Self, FdtWriteError> {
        if out.len() < HEADER + RSVMAP + 8 {
            return Err(FdtWriteError::NoSpace);
        }
        out[..HEADER + RSVMAP].fill(0);
        Ok(Self {
            out,
            pos: HEADER + RSVMAP,
            strings: [0; STRINGS_MAX],
            strings_len: 0,
            depth: 0,
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), FdtWriteError> {
        let end = self
            .pos
            .checked_add(bytes.len())
            .ok_or(FdtWriteError::NoSpace)?;
        self.out
            .get_mut(self.pos..end)
            .ok_or(FdtWriteError::NoSpace)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    fn pad(&mut self) -> Result<(), FdtWriteError> {
        while !self.pos.is_multiple_of(4) {
            self.put(&[0])?;
        }
        Ok(())
    }

    fn put32(&mut self, v: u32) -> Result<(), FdtWriteError> {
        self.put(&v.to_be_bytes())
    }

    /// Offset of `name` in the strings block (added if new).
    fn string(&mut self, name: &str) -> Result<u32, FdtWriteError> {
        let n = name.as_bytes();
        let table = &self.strings[..self.strings_len];
        let mut o = 0;
        while o < table.len() {
            let rest = &table[o..];
            let len = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            if &rest[..len] == n {
                return Ok(o as u32);
            }
            o += len + 1;
        }
        let at = self.strings_len;
        let end = at + n.len() + 1;
        let dst = self
            .strings
            .get_mut(at..end)
            .ok_or(FdtWriteError::NoSpace)?;
        dst[..n.len()].copy_from_slice(n);
        dst[n.len()] = 0;
        self.strings_len = end;
        Ok(at as u32)
    }

    /// Opens a node (`""` for the root).
    ///
    /// # Errors
    /// [`FdtWriteError::NoSpace`] when the buffer is full.
    pub fn begin_node(&mut self, name: &str) -> Result<(), FdtWriteError> {
        self.put32(1)?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.depth += 1;
        Ok(())
    }

    /// Closes the innermost node.
    ///
    /// # Errors
    /// [`FdtWriteError::Unbalanced`] with no open node, else as [`Self::begin_node`].
    pub fn end_node(&mut self) -> Result<(), FdtWriteError> {
        if self.depth == 0 {
            return Err(FdtWriteError::Unbalanced);
        }
        self.put32(2)?;
        self.depth -= 1;
        Ok(())
    }

    /// A property with raw bytes.
    ///
    /// # Errors
    /// [`FdtWriteError::NoSpace`] when the buffer or strings table is full.
    pub fn prop(&mut self, name: &str, value: &[u8]) -> Result<(), FdtWriteError> {
        let off = self.string(name)?;
        self.put32(3)?;
        self.put32(u32::try_from(value.len()).map_err(|_| FdtWriteError::NoSpace)?)?;
        self.put32(off)?;
        self.put(value)?;
        self.pad()
    }

    /// An empty property (a flag such as `interrupt-controller`).
    ///
    /// # Errors
    /// As [`Self::prop`].
    pub fn prop_empty(&mut self, name: &str) -> Result<(), FdtWriteError> {
        self.prop(name, &[])
    }

    /// A u32 property.
    ///
    /// # Errors
    /// As [`Self::prop`].
    pub fn prop_u32(&mut self, name: &str, v: u32) -> Result<(), FdtWriteError> {
        self.prop(name, &v.to_be_bytes())
    }

    /// A u64 property (two cells).
    ///
    /// # Errors
    /// As [`Self::prop`].
    pub fn prop_u64(&mut self, name: &str, v: u64) -> Result<(), FdtWriteError> {
        self.prop(name, &v.to_be_bytes())
    }

    /// A property of 32-bit cells.
    ///
    /// # Errors
    /// As [`Self::prop`].
    pub fn prop_cells(&mut self, name: &str, cells: &[u32]) -> Result<(), FdtWriteError> {
        let off = self.string(name)?;
        self.put32(3)?;
        self.put32(u32::try_from(cells.len() * 4).map_err(|_| FdtWriteError::NoSpace)?)?;
        self.put32(off)?;
        for c in cells {
            self.put32(*c)?;
        }
        Ok(())
    }

    /// A string property.
    ///
    /// # Errors
    /// As [`Self::prop`].
    pub fn prop_str(&mut self, name: &str, s: &str) -> Result<(), FdtWriteError> {
        self.prop_strs(name, &[s])
    }

    /// A string-list property.
    ///
    /// # Errors
    /// As [`Self::prop`].
    pub fn prop_strs(&mut self, name: &str, list: &[&str]) -> Result<(), FdtWriteError> {
        let off = self.string(name)?;
        let len: usize = list.iter().map(|s| s.len() + 1).sum();
        self.put32(3)?;
        self.put32(u32::try_from(len).map_err(|_| FdtWriteError::NoSpace)?)?;
        self.put32(off)?;
        for s in list {
            self.put(s.as_bytes())?;
            self.put(&[0])?;
        }
        self.pad()
    }

    /// Ends the structure block, appends the strings, fills in the header;
    /// returns the DTB's total size.
    ///
    /// # Errors
    /// [`FdtWriteError::Unbalanced`] with nodes still open,
    /// [`FdtWriteError::NoSpace`] when the strings do not fit.
    pub fn finish(mut self) -> Result<usize, FdtWriteError> {
        if self.depth != 0 {
            return Err(FdtWriteError::Unbalanced);
        }
        self.put32(9)?;
        let struct_end = self.pos;
        let strings = self.strings;
        self.put(&strings[..self.strings_len])?;
        let total = self.pos;
        // Header fields in order: magic, totalsize, off_dt_struct,
        // off_dt_strings, off_mem_rsvmap, version, last_comp_version,
        // boot_cpuid_phys, size_dt_strings, size_dt_struct.
        let fields = [
            0xd00d_feed,
            total as u32,
            (HEADER + RSVMAP) as u32,
            struct_end as u32,
            HEADER as u32,
            17,
            16,
            0,
            self.strings_len as u32,
            (struct_end - HEADER - RSVMAP) as u32,
        ];
        for (f, dst) in fields.iter().zip(self.out.chunks_exact_mut(4)) {
            dst.copy_from_slice(&f.to_be_bytes());
        }
        Ok(total)
    }
}

/// What goes into a domU's DTB.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DomuDtb<'s> {
    /// RAM base (IPA).
    pub ram_base: u64,
    /// RAM size in bytes.
    pub ram_size: u64,
    /// `/chosen/bootargs`.
    pub bootargs: &'s str,
    /// Initrd range (IPA start, end), as u64 `linux,initrd-start/-end`.
    pub initrd: Option<(u64, u64)>,
    /// Add Xen's `/hypervisor` node (grant table region, event-channel PPI).
    pub xen_node: bool,
}

/// GIC phandle in the domU DTB.
const GIC_PHANDLE: u32 = 0xfde8;

/// Writes the domU's DTB the way `libxl` lays it out for a 1-vCPU GICv3
/// guest (tools/libs/light/libxl_arm.c): root cells 2/2, `/chosen`,
/// `/cpus/cpu@0` (PSCI), `/psci` (HVC conduit), `/memory@<base>`, the GICv3
/// at Xen's guest addresses, the architected timer on Xen's guest PPIs, and
/// optionally `/hypervisor`. Returns the DTB's size.
///
/// # Errors
/// [`FdtWriteError::NoSpace`] if `out` is too small.
pub fn write_domu_dtb(out: &mut [u8], d: &DomuDtb<'_>) -> Result<usize, FdtWriteError> {
    let hi = |v: u64| (v >> 32) as u32;
    let lo = |v: u64| v as u32;
    // GIC_PPI interrupt specifier: <1 (PPI) irq-16 flags>; flags 0xf08 =
    // all-CPU mask, level triggered, active low (as libxl writes it).
    let ppi = |irq: u32| [1, irq - 16, 0xf08];

    let mut w = FdtWriter::new(out)?;
    w.begin_node("")?;
    w.prop_strs("compatible", &["xen,xenvm-4.21", "xen,xenvm"])?;
    w.prop_str("model", "XENVM-4.21")?;
    w.prop_u32("interrupt-parent", GIC_PHANDLE)?;
    w.prop_u32("#address-cells", 2)?;
    w.prop_u32("#size-cells", 2)?;

    w.begin_node("chosen")?;
    w.prop_str("bootargs", d.bootargs)?;
    if let Some((s, e)) = d.initrd {
        w.prop_u64("linux,initrd-start", s)?;
        w.prop_u64("linux,initrd-end", e)?;
    }
    w.end_node()?;

    w.begin_node("cpus")?;
    w.prop_u32("#address-cells", 1)?;
    w.prop_u32("#size-cells", 0)?;
    w.begin_node("cpu@0")?;
    w.prop_str("device_type", "cpu")?;
    w.prop_str("compatible", "arm,armv8")?;
    w.prop_str("enable-method", "psci")?;
    w.prop_u32("reg", 0)?;
    w.end_node()?;
    w.end_node()?;

    w.begin_node("psci")?;
    w.prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])?;
    w.prop_str("method", "hvc")?;
    w.prop_u32("cpu_off", 0x8400_0002)?;
    w.prop_u32("cpu_on", 0xc400_0003)?;
    w.end_node()?;

    let mut name = NameBuf::new();
    name.push_str("memory@");
    name.push_hex(d.ram_base);
    w.begin_node(name.as_str())?;
    w.prop_str("device_type", "memory")?;
    w.prop_cells(
        "reg",
        &[
            hi(d.ram_base),
            lo(d.ram_base),
            hi(d.ram_size),
            lo(d.ram_size),
        ],
    )?;
    w.end_node()?;

    let mut name = NameBuf::new();
    name.push_str("interrupt-controller@");
    name.push_hex(guest::GICV3_GICD_BASE);
    w.begin_node(name.as_str())?;
    w.prop_str("compatible", "arm,gic-v3")?;
    w.prop_u32("#interrupt-cells", 3)?;
    w.prop_u32("#address-cells", 0)?;
    w.prop_empty("interrupt-controller")?;
    w.prop_u32("redistributor-stride", guest::GICV3_RDIST_STRIDE as u32)?;
    w.prop_u32("#redistributor-regions", 1)?;
    w.prop_cells(
        "reg",
        &[
            hi(guest::GICV3_GICD_BASE),
            lo(guest::GICV3_GICD_BASE),
            hi(guest::GICV3_GICD_SIZE),
            lo(guest::GICV3_GICD_SIZE),
            hi(guest::GICV3_GICR0_BASE),
            lo(guest::GICV3_GICR0_BASE),
            hi(guest::GICV3_RDIST_STRIDE),
            lo(guest::GICV3_RDIST_STRIDE),
        ],
    )?;
    w.prop_u32("linux,phandle", GIC_PHANDLE)?;
    w.prop_u32("phandle", GIC_PHANDLE)?;
    w.end_node()?;

    w.begin_node("timer")?;
    w.prop_str("compatible", "arm,armv8-timer")?;
    let mut irqs = [0u32; 12];
    for (i, p) in [
        guest::TIMER_PHYS_S_PPI,
        guest::TIMER_PHYS_NS_PPI,
        guest::TIMER_VIRT_PPI,
        26, // hypervisor timer PPI (GUEST_TIMER_HYP_PPI is not public; Linux wants 4)
    ]
    .iter()
    .enumerate()
    {
        irqs[3 * i..3 * i + 3].copy_from_slice(&ppi(*p));
    }
    w.prop_cells("interrupts", &irqs)?;
    w.prop_empty("always-on")?;
    w.end_node()?;

    if d.xen_node {
        let mut name = NameBuf::new();
        name.push_str("hypervisor@");
        name.push_hex(guest::GNTTAB_BASE);
        w.begin_node(name.as_str())?;
        w.prop_strs("compatible", &["xen,xen-4.21", "xen,xen"])?;
        w.prop_cells(
            "reg",
            &[
                hi(guest::GNTTAB_BASE),
                lo(guest::GNTTAB_BASE),
                hi(guest::GNTTAB_SIZE),
                lo(guest::GNTTAB_SIZE),
            ],
        )?;
        w.prop_cells("interrupts", &ppi(guest::EVTCHN_PPI))?;
        w.end_node()?;
    }

    w.end_node()?;
    w.finish()
}

/// A small stack buffer for node names like `memory@40000000`.
struct NameBuf {
    b: [u8; 48],
    n: usize,
}

impl NameBuf {
    fn new() -> Self {
        Self { b: [0; 48], n: 0 }
    }
    fn push(&mut self, c: u8) {
        if let Some(s) = self.b.get_mut(self.n) {
            *s = c;
            self.n += 1;
        }
    }
    fn push_str(&mut self, s: &str) {
        for c in s.bytes() {
            self.push(c);
        }
    }
    fn push_hex(&mut self, v: u64) {
        let digits = if v == 0 {
            1
        } else {
            16 - (v.leading_zeros() / 4) as usize
        };
        for i in (0..digits).rev() {
            let d = ((v >> (4 * i)) & 0xf) as u8;
            self.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        }
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.b[..self.n]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdt::{BootInfo, Fdt, Region};

    fn domu(initrd: Option<(u64, u64)>, xen_node: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let n = write_domu_dtb(
            &mut buf,
            &DomuDtb {
                ram_base: 0x4000_0000,
                ram_size: 16 << 20,
                bootargs: "console=hvc0 guest-hello",
                initrd,
                xen_node,
            },
        )
        .unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn own_reader_reads_the_domu_dtb() {
        let b = domu(Some((0x4100_0000, 0x4110_0000)), false);
        let f = Fdt::parse(&b).unwrap();
        let i = BootInfo::from_fdt(&f).unwrap();
        assert_eq!(i.bootargs, "console=hvc0 guest-hello");
        assert_eq!(
            i.memory[0],
            Some(Region {
                base: 0x4000_0000,
                size: 16 << 20
            })
        );
        assert_eq!(
            i.initrd,
            Some(Region {
                base: 0x4100_0000,
                size: 0x10_0000
            })
        );
        assert!(f.find("/hypervisor").is_none());
        assert!(domu(None, true).len() > b.len() - 32);
    }

    #[test]
    fn independent_parser_agrees() {
        // The `fdt` crate (an unrelated implementation) must accept the blob.
        let b = domu(Some((0x4100_0000, 0x4110_0000)), true);
        let f = fdt::Fdt::new(&b).expect("fdt crate parses our DTB");
        let chosen = f.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("bootargs").and_then(|p| p.as_str()),
            Some("console=hvc0 guest-hello")
        );
        let mem = f.find_node("/memory@40000000").unwrap();
        let r = mem.reg().unwrap().next().unwrap();
        assert_eq!(r.starting_address as u64, 0x4000_0000);
        assert_eq!(r.size, Some(16 << 20));
        let gic = f.find_node("/interrupt-controller@3001000").unwrap();
        assert_eq!(gic.compatible().map(|c| c.first()), Some("arm,gic-v3"));
        let hyp = f.find_node("/hypervisor@38000000").unwrap();
        assert!(hyp.compatible().unwrap().all().any(|c| c == "xen,xen"));
        let cpu = f.find_node("/cpus/cpu@0").unwrap();
        assert_eq!(
            cpu.property("enable-method").and_then(|p| p.as_str()),
            Some("psci")
        );
        assert_eq!(f.total_size(), b.len());
    }

    #[test]
    fn header_fields() {
        let b = domu(None, false);
        let be = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        assert_eq!(be(0), 0xd00d_feed);
        assert_eq!(be(4) as usize, b.len());
        assert_eq!(be(8), 56, "off_dt_struct after header + empty rsvmap");
        assert_eq!(be(16), 40, "off_mem_rsvmap");
        assert_eq!((be(20), be(24)), (17, 16));
        assert_eq!(be(12) + be(32), be(4), "strings end the blob");
        assert_eq!(be(8) + be(36), be(12), "structure then strings");
    }

    #[test]
    fn too_small_buffers_fail_cleanly() {
        for n in [0, 10, 60, 200, 600] {
            let mut buf = vec![0u8; n];
            let r = write_domu_dtb(
                &mut buf,
                &DomuDtb {
                    ram_base: 0x4000_0000,
                    ram_size: 1 << 20,
                    bootargs: "x",
                    initrd: None,
                    xen_node: true,
                },
            );
            assert_eq!(r, Err(FdtWriteError::NoSpace), "{n}");
        }
        let mut buf = vec![0u8; 256];
        let mut w = FdtWriter::new(&mut buf).unwrap();
        assert_eq!(w.end_node(), Err(FdtWriteError::Unbalanced));
        w.begin_node("").unwrap();
        assert_eq!(w.finish(), Err(FdtWriteError::Unbalanced));
    }
}
