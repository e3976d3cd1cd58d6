//! The arm64 `Image` header (Linux Documentation/arch/arm64/booting.rst):
//! code0/code1, `text_offset` (u64 at 8), `image_size` (u64 at 16), `flags`
//! (u64 at 24), reserved words, the magic `ARM\x64` (0x644d5241) at 0x38.

/// `ARM\x64`, little-endian u32 at offset 0x38.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;

/// Why a kernel is not a usable arm64 Image.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImageError {
    /// Shorter than the 64-byte header.
    Truncated,
    /// No `ARM\x64` magic.
    BadMagic,
    /// Big-endian kernel (flags bit 0), which the builder cannot load.
    BigEndian,
    /// `text_offset` is not a multiple of 4 KiB.
    UnalignedTextOffset(u64),
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ImageError::Truncated => write!(f, "kernel shorter than an Image header"),
            ImageError::BadMagic => write!(f, "kernel has no ARM\\x64 magic"),
            ImageError::BigEndian => write!(f, "big-endian kernel"),
            ImageError::UnalignedTextOffset(t) => write!(f, "text_offset {t:#x} not page aligned"),
        }
    }
}

/// What the loader needs from the header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ImageHeader {
    /// Load offset from the 2 MiB aligned RAM base.
    pub text_offset: u64,
    /// Bytes the kernel occupies from its load address (incl. .bss): the
    /// header's `image_size`, or the file size when that is 0 (old kernels).
    pub effective_size: u64,
}

impl ImageHeader {
    /// Parse the header of `kernel`.
    ///
    /// # Errors
    /// [`ImageError`] for a short file, a missing magic, a big-endian or
    /// unaligned kernel.
    pub fn parse(kernel: &[u8]) -> Result<Self, ImageError> {
        let u64_at = |o: usize| {
            kernel
                .get(o..o + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or(ImageError::Truncated)
        };
        let magic = kernel
            .get(0x38..0x3c)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or(ImageError::Truncated)?;
        if magic != IMAGE_MAGIC {
            return Err(ImageError::BadMagic);
        }
        let (mut text_offset, image_size, flags) = (u64_at(8)?, u64_at(16)?, u64_at(24)?);
        if image_size == 0 {
            // booting.rst: image_size 0 means a pre-3.17 kernel whose
            // text_offset is 0x80000.
            text_offset = 0x80000;
        }
        if flags & 1 != 0 {
            return Err(ImageError::BigEndian);
        }
        if !text_offset.is_multiple_of(4096) {
            return Err(ImageError::UnalignedTextOffset(text_offset));
        }
        Ok(Self {
            text_offset,
            effective_size: image_size.max(kernel.len() as u64),
        })
    }
}

#[cfg(test)]
pub(crate) fn fake_image(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
    let mut k = vec![0u8; len.max(64)];
    k[8..16].copy_from_slice(&text_offset.to_le_bytes());
    k[16..24].copy_from_slice(&image_size.to_le_bytes());
    k[24..32].copy_from_slice(&2u64.to_le_bytes());
    k[0x38..0x3c].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_linux_like_header() {
        let h = ImageHeader::parse(&fake_image(0, 0x3a0_0000, 0x300_0000)).unwrap();
        assert_eq!((h.text_offset, h.effective_size), (0, 0x3a0_0000));
        let h = ImageHeader::parse(&fake_image(0x80000, 0x1_2000, 0x1000)).unwrap();
        assert_eq!((h.text_offset, h.effective_size), (0x80000, 0x1_2000));
    }

    #[test]
    fn old_kernels_and_bad_headers() {
        let h = ImageHeader::parse(&fake_image(0x1234, 0, 8192)).unwrap();
        assert_eq!((h.text_offset, h.effective_size), (0x80000, 8192));
        assert_eq!(ImageHeader::parse(&[0; 10]), Err(ImageError::Truncated));
        let mut k = fake_image(0, 4096, 4096);
        k[0x38] = 0;
        assert_eq!(ImageHeader::parse(&k), Err(ImageError::BadMagic));
        let mut k = fake_image(0, 4096, 4096);
        k[24] = 3;
        assert_eq!(ImageHeader::parse(&k), Err(ImageError::BigEndian));
        assert_eq!(
            ImageHeader::parse(&fake_image(0x80010, 4096, 4096)),
            Err(ImageError::UnalignedTextOffset(0x80010))
        );
    }
}
