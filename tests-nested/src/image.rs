//! The arm64 Linux `Image` header (Documentation/arch/arm64/booting.rst) that
//! QEMU, U-Boot's `booti` and hv use to place a kernel, and where the runner
//! puts boot modules in guest RAM.

use std::fmt;

/// `"ARM\x64"` at offset 0x38.
pub const MAGIC: u32 = 0x644d_5241;
/// The size of the header.
pub const HEADER_LEN: usize = 64;

/// The fields of the header the runner uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Load offset from a 2 MiB-aligned RAM base.
    pub text_offset: u64,
    /// Effective size in memory (including .bss); 0 on very old kernels.
    pub image_size: u64,
    /// Flags: bit 0 big-endian, bits 1-2 page size, bit 3 placement.
    pub flags: u64,
}

/// Why bytes are not an arm64 Image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than the 64-byte header.
    TooShort(usize),
    /// The magic at 0x38 is not `"ARM\x64"`.
    BadMagic(u32),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(n) => write!(f, "{n} bytes, shorter than the 64-byte arm64 Image header"),
            Self::BadMagic(m) => write!(
                f,
                "no arm64 Image header: magic at offset 0x38 is {m:#010x}, not 0x644d5241 (\"ARM\\x64\")"
            ),
        }
    }
}

impl std::error::Error for ImageError {}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

impl ImageHeader {
    /// Parses the header at the start of `bytes`.
    ///
    /// # Errors
    /// [`ImageError::TooShort`] or [`ImageError::BadMagic`].
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        if bytes.len() < HEADER_LEN {
            return Err(ImageError::TooShort(bytes.len()));
        }
        let mut m = [0u8; 4];
        m.copy_from_slice(bytes.get(0x38..0x3c).unwrap_or(&[0; 4]));
        let magic = u32::from_le_bytes(m);
        if magic != MAGIC {
            return Err(ImageError::BadMagic(magic));
        }
        Ok(Self {
            text_offset: le64(bytes, 8),
            image_size: le64(bytes, 16),
            flags: le64(bytes, 24),
        })
    }
}

/// QEMU virt's RAM base.
pub const RAM_BASE: u64 = 0x4000_0000;
/// With no initrd, QEMU's direct kernel boot puts the DTB at RAM base +
/// 128 MiB (hw/arm/boot.c: the initrd slot, then the DTB after it).
pub const QEMU_DTB_ADDR: u64 = RAM_BASE + 0x0800_0000;
/// First boot module address: RAM base + 192 MiB, leaving 64 MiB for the DTB
/// and everything below 128 MiB for hv's own image.
pub const MODULE_BASE: u64 = RAM_BASE + 0x0c00_0000;
/// Modules are 2 MiB aligned.
pub const MODULE_ALIGN: u64 = 0x20_0000;

/// Where modules of the given sizes go: from [`MODULE_BASE`] upward, each
/// 2 MiB aligned, all below `ram_end`.
///
/// # Errors
/// A message when they do not fit below `ram_end`.
pub fn place_modules(sizes: &[u64], ram_end: u64) -> Result<Vec<u64>, String> {
    let mut at = MODULE_BASE;
    let mut out = Vec::with_capacity(sizes.len());
    for &size in sizes {
        let end = at
            .checked_add(size)
            .filter(|&e| e <= ram_end)
            .ok_or_else(|| {
                format!("module of {size:#x} bytes at {at:#x} does not fit below {ram_end:#x}")
            })?;
        out.push(at);
        at = end.div_ceil(MODULE_ALIGN) * MODULE_ALIGN;
    }
    Ok(out)
}

/// Checks that a kernel image (hv) loaded at RAM base + text_offset ends
/// below the DTB QEMU places at [`QEMU_DTB_ADDR`].
///
/// # Errors
/// A message naming the overlap.
pub fn check_kernel_fits(h: &ImageHeader, file_len: u64) -> Result<(), String> {
    let size = h.image_size.max(file_len);
    let end = RAM_BASE + h.text_offset + size;
    if end > QEMU_DTB_ADDR {
        return Err(format!(
            "kernel image ends at {end:#x} (text_offset {:#x}, size {size:#x}), over QEMU's DTB at {QEMU_DTB_ADDR:#x}",
            h.text_offset
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64) -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes());
        b[8..16].copy_from_slice(&text_offset.to_le_bytes());
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[24..32].copy_from_slice(&2u64.to_le_bytes());
        b[0x38..0x3c].copy_from_slice(&MAGIC.to_le_bytes());
        b
    }

    #[test]
    fn parses_the_fields() {
        let h = ImageHeader::parse(&header(0x80000, 0x14000)).unwrap();
        assert_eq!(
            h,
            ImageHeader {
                text_offset: 0x80000,
                image_size: 0x14000,
                flags: 2
            }
        );
    }

    #[test]
    fn rejects_elf_and_short_files() {
        let mut elf = header(0, 0);
        elf[0..4].copy_from_slice(b"\x7fELF");
        elf[0x38..0x3c].copy_from_slice(&[1, 0, 0, 0]);
        assert_eq!(ImageHeader::parse(&elf), Err(ImageError::BadMagic(1)));
        assert_eq!(ImageHeader::parse(&[0; 10]), Err(ImageError::TooShort(10)));
    }

    #[test]
    fn modules_are_2mib_aligned_and_packed_upward() {
        let at = place_modules(&[0x31e7, 0x20_0000, 1], 0x8000_0000).unwrap();
        assert_eq!(at, vec![0x4c00_0000, 0x4c20_0000, 0x4c40_0000]);
        assert!(at.iter().all(|a| a % MODULE_ALIGN == 0));
        assert!(place_modules(&[0x4000_0000], 0x8000_0000).is_err());
        assert_eq!(place_modules(&[], 0x8000_0000).unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn kernel_must_end_below_qemus_dtb() {
        let ok = ImageHeader::parse(&header(0x80000, 0x20_0000)).unwrap();
        assert!(check_kernel_fits(&ok, 0x1000).is_ok());
        let big = ImageHeader::parse(&header(0x80000, 0x0800_0000)).unwrap();
        assert!(check_kernel_fits(&big, 0x1000).is_err());
    }
}
