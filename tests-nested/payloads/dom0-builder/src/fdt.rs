//! A minimal, bounds-checked flattened device tree reader (no allocation).
//!
//! Format from the Devicetree Specification v0.4, chapter 5: a 40-byte
//! big-endian header (magic 0xd00dfeed, totalsize, off_dt_struct,
//! off_dt_strings, ...), a structure block of 4-byte aligned tokens
//! (`FDT_BEGIN_NODE` 1 + NUL-terminated name, `FDT_END_NODE` 2, `FDT_PROP` 3 +
//! len + nameoff + value, `FDT_NOP` 4, `FDT_END` 9) and a strings block.
//! Every read is checked against the blob; malformed input gives an error or
//! `None`, never a panic.

/// `FDT_MAGIC`.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Why a blob is not a usable FDT.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FdtError {
    /// Shorter than its header or its `totalsize`.
    Truncated,
    /// Wrong magic number.
    BadMagic(u32),
    /// A block lies outside `totalsize`.
    BadLayout,
    /// A token or name runs off the structure block.
    BadStructure,
}

impl core::fmt::Display for FdtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FdtError::Truncated => write!(f, "truncated FDT"),
            FdtError::BadMagic(m) => write!(f, "bad FDT magic {m:#x}"),
            FdtError::BadLayout => write!(f, "FDT blocks outside totalsize"),
            FdtError::BadStructure => write!(f, "malformed FDT structure block"),
        }
    }
}

fn be32(b: &[u8], o: usize) -> Option<u32> {
    let s = b.get(o..o.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// `totalsize` from an FDT header (to size the blob before parsing it).
///
/// # Errors
/// [`FdtError::Truncated`] if `header` is shorter than 8 bytes,
/// [`FdtError::BadMagic`] if it is not an FDT.
pub fn total_size(header: &[u8]) -> Result<u32, FdtError> {
    let magic = be32(header, 0).ok_or(FdtError::Truncated)?;
    if magic != FDT_MAGIC {
        return Err(FdtError::BadMagic(magic));
    }
    be32(header, 4).ok_or(FdtError::Truncated)
}

/// A parsed FDT.
#[derive(Clone, Copy, Debug)]
pub struct Fdt<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
}

/// A node: the offset of its `FDT_BEGIN_NODE` token in the structure block.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Node(usize);

enum Token<'a> {
    Begin(&'a [u8]),
    End,
    Prop(&'a [u8], &'a [u8]),
    Finish,
}

impl<'a> Fdt<'a> {
    /// Check the header and find the blocks.
    ///
    /// # Errors
    /// [`FdtError`] for a short blob, a wrong magic or blocks outside it.
    pub fn parse(blob: &'a [u8]) -> Result<Self, FdtError> {
        let total = total_size(blob)? as usize;
        if blob.len() < 40 || total < 40 || blob.len() < total {
            return Err(FdtError::Truncated);
        }
        let blob = &blob[..total];
        let field = |o| be32(blob, o).map(|v| v as usize).ok_or(FdtError::Truncated);
        let (off_struct, off_strings) = (field(8)?, field(12)?);
        let (size_strings, size_struct) = (field(32)?, field(36)?);
        let block = |off: usize, size: usize| {
            off.checked_add(size)
                .and_then(|end| blob.get(off..end))
                .ok_or(FdtError::BadLayout)
        };
        Ok(Self {
            structure: block(off_struct, size_struct)?,
            strings: block(off_strings, size_strings)?,
        })
    }

    fn cstr_at(b: &[u8], o: usize) -> Option<&[u8]> {
        let rest = b.get(o..)?;
        let n = rest.iter().position(|&c| c == 0)?;
        rest.get(..n)
    }

    /// The token at `o` and the offset of the next one.
    fn token(&self, o: usize) -> Result<(Token<'a>, usize), FdtError> {
        let s = self.structure;
        let mut o = o;
        loop {
            let t = be32(s, o).ok_or(FdtError::BadStructure)?;
            o += 4;
            match t {
                FDT_NOP => continue,
                FDT_BEGIN_NODE => {
                    let name = Self::cstr_at(s, o).ok_or(FdtError::BadStructure)?;
                    let next = (o + name.len() + 1 + 3) & !3;
                    return Ok((Token::Begin(name), next));
                }
                FDT_END_NODE => return Ok((Token::End, o)),
                FDT_PROP => {
                    let len = be32(s, o).ok_or(FdtError::BadStructure)? as usize;
                    let nameoff = be32(s, o + 4).ok_or(FdtError::BadStructure)? as usize;
                    let start = o + 8;
                    let value = start
                        .checked_add(len)
                        .and_then(|e| s.get(start..e))
                        .ok_or(FdtError::BadStructure)?;
                    let name =
                        Self::cstr_at(self.strings, nameoff).ok_or(FdtError::BadStructure)?;
                    return Ok((Token::Prop(name, value), (start + len + 3) & !3));
                }
                FDT_END => return Ok((Token::Finish, o)),
                _ => return Err(FdtError::BadStructure),
            }
        }
    }

    /// The root node.
    ///
    /// # Errors
    /// [`FdtError::BadStructure`] if the structure block does not start with a node.
    pub fn root(&self) -> Result<Node, FdtError> {
        match self.token(0)? {
            (Token::Begin(_), _) => Ok(Node(0)),
            _ => Err(FdtError::BadStructure),
        }
    }

    /// The name of `node` (with its unit address).
    #[must_use]
    pub fn name(&self, node: Node) -> &'a [u8] {
        match self.token(node.0) {
            Ok((Token::Begin(n), _)) => n,
            _ => &[],
        }
    }

    /// Calls `f` for each property of `node` until it returns `true`.
    fn props(&self, node: Node, mut f: impl FnMut(&'a [u8], &'a [u8]) -> bool) {
        let Ok((Token::Begin(_), mut o)) = self.token(node.0) else {
            return;
        };
        while let Ok((t, next)) = self.token(o) {
            match t {
                Token::Prop(n, v) => {
                    if f(n, v) {
                        return;
                    }
                }
                _ => return,
            }
            o = next;
        }
    }

    /// The value of property `name` of `node`.
    #[must_use]
    pub fn prop(&self, node: Node, name: &str) -> Option<&'a [u8]> {
        let mut found = None;
        self.props(node, |n, v| {
            if n == name.as_bytes() {
                found = Some(v);
                true
            } else {
                false
            }
        });
        found
    }

    /// Calls `f` for each direct child of `node` until it returns `true`.
    pub fn children(&self, node: Node, mut f: impl FnMut(Node) -> bool) {
        let Ok((Token::Begin(_), mut o)) = self.token(node.0) else {
            return;
        };
        let mut depth = 0usize;
        // Bounded by the structure size: every token advances `o`.
        for _ in 0..self.structure.len() {
            let Ok((t, next)) = self.token(o) else {
                return;
            };
            match t {
                Token::Begin(_) => {
                    if depth == 0 && f(Node(o)) {
                        return;
                    }
                    depth += 1;
                }
                Token::End => {
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                }
                Token::Prop(..) => {}
                Token::Finish => return,
            }
            o = next;
        }
    }

    /// The child of `node` called `name`: an exact match, or `name@<unit>`.
    #[must_use]
    pub fn child(&self, node: Node, name: &str) -> Option<Node> {
        let mut found = None;
        self.children(node, |c| {
            let n = self.name(c);
            let base = n.split(|&b| b == b'@').next().unwrap_or(n);
            if n == name.as_bytes() || (!name.contains('@') && base == name.as_bytes()) {
                found = Some(c);
                true
            } else {
                false
            }
        });
        found
    }

    /// The node at an absolute `path` such as `/chosen` (components may omit
    /// unit addresses).
    #[must_use]
    pub fn find(&self, path: &str) -> Option<Node> {
        let mut n = self.root().ok()?;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            n = self.child(n, comp)?;
        }
        Some(n)
    }

    /// A u32 property.
    #[must_use]
    pub fn prop_u32(&self, node: Node, name: &str) -> Option<u32> {
        let v = self.prop(node, name)?;
        if v.len() != 4 {
            return None;
        }
        be32(v, 0)
    }

    /// A property holding one number of 1 or 2 cells (u32 or u64).
    #[must_use]
    pub fn prop_num(&self, node: Node, name: &str) -> Option<u64> {
        let v = self.prop(node, name)?;
        read_cells(v, v.len() / 4).filter(|_| v.len() == 4 || v.len() == 8)
    }

    /// A string property (without its NUL).
    #[must_use]
    pub fn prop_str(&self, node: Node, name: &str) -> Option<&'a str> {
        let v = self.prop(node, name)?;
        let v = v.strip_suffix(&[0]).unwrap_or(v);
        core::str::from_utf8(v).ok()
    }

    /// `#address-cells` and `#size-cells` of `node` (defaults 2 and 1).
    #[must_use]
    pub fn cells(&self, node: Node) -> (usize, usize) {
        let a = self.prop_u32(node, "#address-cells").unwrap_or(2) as usize;
        let s = self.prop_u32(node, "#size-cells").unwrap_or(1) as usize;
        (a, s)
    }
}

/// A big-endian number of `cells` 32-bit cells (at most 2).
fn read_cells(v: &[u8], cells: usize) -> Option<u64> {
    if cells == 0 || cells > 2 {
        return None;
    }
    let mut x = 0u64;
    for i in 0..cells {
        x = (x << 32) | u64::from(be32(v, 4 * i)?);
    }
    Some(x)
}

/// A RAM range from `/memory`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Region {
    /// One past the last byte (saturating).
    #[must_use]
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// What the control domain needs from the DTB hv gives it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BootInfo<'a> {
    /// RAM banks from the `/memory` nodes (at most 4; empty slots are `None`).
    pub memory: [Option<Region>; 4],
    /// `/chosen/bootargs`.
    pub bootargs: &'a str,
    /// `/chosen/linux,initrd-start` .. `linux,initrd-end`.
    pub initrd: Option<Region>,
}

impl<'a> BootInfo<'a> {
    /// Read `/memory*` (by name or `device_type = "memory"`), `/chosen/bootargs`
    /// and the initrd range.
    ///
    /// # Errors
    /// [`FdtError`] if the blob is not a valid FDT.
    pub fn from_fdt(fdt: &Fdt<'a>) -> Result<Self, FdtError> {
        let root = fdt.root()?;
        let (ac, sc) = fdt.cells(root);
        let mut memory = [None; 4];
        let mut n = 0;
        fdt.children(root, |c| {
            let name = fdt.name(c);
            let is_mem = name == b"memory"
                || name.starts_with(b"memory@")
                || fdt.prop(c, "device_type") == Some(b"memory\0");
            if let (true, Some(reg)) = (is_mem, fdt.prop(c, "reg")) {
                let step = 4 * (ac + sc);
                if step > 0 {
                    for e in reg.chunks_exact(step) {
                        let base = read_cells(e, ac);
                        let size = e.get(4 * ac..).and_then(|s| read_cells(s, sc));
                        if let (Some(base), Some(size), Some(slot)) =
                            (base, size, memory.get_mut(n))
                        {
                            if size > 0 {
                                *slot = Some(Region { base, size });
                                n += 1;
                            }
                        }
                    }
                }
            }
            false
        });
        let chosen = fdt.find("/chosen");
        let bootargs = chosen
            .and_then(|c| fdt.prop_str(c, "bootargs"))
            .unwrap_or("");
        let initrd = chosen.and_then(|c| {
            let s = fdt.prop_num(c, "linux,initrd-start")?;
            let e = fdt.prop_num(c, "linux,initrd-end")?;
            (e > s).then(|| Region {
                base: s,
                size: e - s,
            })
        });
        Ok(Self {
            memory,
            bootargs,
            initrd,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdtw::FdtWriter;

    fn sample() -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut w = FdtWriter::new(&mut buf).unwrap();
        w.begin_node("").unwrap();
        w.prop_u32("#address-cells", 2).unwrap();
        w.prop_u32("#size-cells", 2).unwrap();
        w.begin_node("chosen").unwrap();
        w.prop_str("bootargs", "dom0 variant=batch").unwrap();
        w.prop_u64("linux,initrd-start", 0x4800_0000).unwrap();
        w.prop_u32("linux,initrd-end", 0x4810_0000).unwrap();
        w.end_node().unwrap();
        w.begin_node("cpus").unwrap();
        w.begin_node("cpu@0").unwrap();
        w.prop_str("device_type", "cpu").unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        w.begin_node("memory@40000000").unwrap();
        w.prop_str("device_type", "memory").unwrap();
        w.prop_cells(
            "reg",
            &[0, 0x4000_0000, 0, 0x0800_0000, 0x2, 0, 0, 0x10_0000],
        )
        .unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        let n = w.finish().unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn reads_memory_chosen_and_initrd() {
        let b = sample();
        let f = Fdt::parse(&b).unwrap();
        let i = BootInfo::from_fdt(&f).unwrap();
        assert_eq!(i.bootargs, "dom0 variant=batch");
        assert_eq!(
            i.memory[0],
            Some(Region {
                base: 0x4000_0000,
                size: 0x0800_0000
            })
        );
        assert_eq!(
            i.memory[1],
            Some(Region {
                base: 0x2_0000_0000,
                size: 0x10_0000
            })
        );
        assert_eq!(i.memory[2], None);
        assert_eq!(
            i.initrd,
            Some(Region {
                base: 0x4800_0000,
                size: 0x10_0000
            })
        );
        let cpu = f.find("/cpus/cpu").unwrap();
        assert_eq!(f.name(cpu), b"cpu@0");
        assert_eq!(f.prop_str(cpu, "device_type"), Some("cpu"));
        assert!(f.find("/nothing").is_none());
        assert!(f.find("/cpus/cpu@1").is_none());
    }

    #[test]
    fn no_chosen_means_empty_bootargs() {
        let mut buf = vec![0u8; 512];
        let mut w = FdtWriter::new(&mut buf).unwrap();
        w.begin_node("").unwrap();
        w.end_node().unwrap();
        let n = w.finish().unwrap();
        let f = Fdt::parse(&buf[..n]).unwrap();
        let i = BootInfo::from_fdt(&f).unwrap();
        assert_eq!((i.bootargs, i.initrd, i.memory[0]), ("", None, None));
    }

    #[test]
    fn rejects_bad_headers() {
        let b = sample();
        assert_eq!(Fdt::parse(&b[..20]).unwrap_err(), FdtError::Truncated);
        let mut bad = b.clone();
        bad[0] = 0;
        assert!(matches!(Fdt::parse(&bad), Err(FdtError::BadMagic(_))));
        // Structure block claimed beyond totalsize.
        let mut bad = b.clone();
        bad[36..40].copy_from_slice(&0x10_0000u32.to_be_bytes());
        assert_eq!(Fdt::parse(&bad).unwrap_err(), FdtError::BadLayout);
        // totalsize larger than the slice.
        assert_eq!(
            Fdt::parse(&b[..b.len() - 4]).unwrap_err(),
            FdtError::Truncated
        );
    }

    #[test]
    fn corrupt_structure_never_panics() {
        let b = sample();
        // Flip every byte of the structure block in turn and read everything.
        let off = u32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize;
        for i in off..b.len() {
            for v in [0u8, 0xff, 3, 9] {
                let mut c = b.clone();
                c[i] = v;
                if let Ok(f) = Fdt::parse(&c) {
                    let _ = BootInfo::from_fdt(&f);
                    let _ = f.find("/cpus/cpu@0");
                }
            }
        }
    }
}
