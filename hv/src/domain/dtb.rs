//! A minimal flattened-device-tree writer for the DTB hv hands a guest in x0.
//!
//! Format: Devicetree Specification v0.4, chapter 5 (header, memory
//! reservation block, structure block, strings block; all big-endian).

use alloc::vec::Vec;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;
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

/// What a guest's DTB says.
pub struct GuestDtb<'a> {
    /// Guest RAM base.
    pub ram_base: u64,
    /// Guest RAM size.
    pub ram_size: u64,
    /// `/chosen/bootargs`.
    pub bootargs: Option<&'a str>,
    /// `/chosen/linux,initrd-start` and `-end` (IPAs).
    pub initrd: Option<(u64, u64)>,
}

impl GuestDtb<'_> {
    /// The blob: `/` with 2 address and size cells, `/memory@<base>`, `/chosen`.
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32s("#address-cells", &[2]);
        w.prop_u32s("#size-cells", &[2]);
        w.prop_str("compatible", "hv,guest");
        w.prop_str("model", "hv guest");
        w.begin_node("chosen");
        if let Some(args) = self.bootargs {
            w.prop_str("bootargs", args);
        }
        if let Some((start, end)) = self.initrd {
            w.prop_u64("linux,initrd-start", start);
            w.prop_u64("linux,initrd-end", end);
        }
        w.end_node();
        let mut name = alloc::string::String::new();
        let _ = core::fmt::Write::write_fmt(&mut name, format_args!("memory@{:x}", self.ram_base));
        w.begin_node(&name);
        w.prop_str("device_type", "memory");
        w.prop_u32s(
            "reg",
            &[
                (self.ram_base >> 32) as u32,
                self.ram_base as u32,
                (self.ram_size >> 32) as u32,
                self.ram_size as u32,
            ],
        );
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

    #[test]
    fn without_bootargs_or_initrd() {
        let blob = GuestDtb {
            ram_base: 0x4000_0000,
            ram_size: 0x20_0000,
            bootargs: None,
            initrd: None,
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
}
