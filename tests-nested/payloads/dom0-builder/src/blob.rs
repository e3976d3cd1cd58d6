//! The images blob hv's runner puts in the control domain's ramdisk
//! (DESIGN.md, "Images blob"): little-endian, `magic "HVIMG001"` (8 bytes),
//! `u32 count`, `u32 reserved`, then `count` entries of
//! `{ u8 name[16] (NUL padded), u64 offset, u64 size }`, offsets from the
//! blob start, each 4 KiB aligned. Names used: `kernel`, `initrd`.

/// The blob's magic.
pub const MAGIC: &[u8; 8] = b"HVIMG001";
/// Header bytes before the first entry.
pub const HEADER_SIZE: usize = 16;
/// Bytes per entry.
pub const ENTRY_SIZE: usize = 32;
/// Alignment of every image in the blob.
pub const IMAGE_ALIGN: u64 = 4096;

/// Why a blob is unusable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BlobError {
    /// Shorter than its header or entry table.
    Truncated,
    /// Not `HVIMG001`.
    BadMagic,
    /// An entry's range is outside the blob or not 4 KiB aligned.
    BadEntry {
        /// Index of the entry.
        index: u32,
    },
}

impl core::fmt::Display for BlobError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BlobError::Truncated => write!(f, "images blob truncated"),
            BlobError::BadMagic => write!(f, "images blob: bad magic (want HVIMG001)"),
            BlobError::BadEntry { index } => write!(f, "images blob: bad entry {index}"),
        }
    }
}

/// A validated images blob.
#[derive(Clone, Copy, Debug)]
pub struct Blob<'a> {
    data: &'a [u8],
    count: u32,
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

impl<'a> Blob<'a> {
    /// Check the header and every entry.
    ///
    /// # Errors
    /// [`BlobError`] for a short blob, a wrong magic, or an entry whose range
    /// is unaligned or outside the blob.
    pub fn parse(data: &'a [u8]) -> Result<Self, BlobError> {
        if data.get(..8).ok_or(BlobError::Truncated)? != MAGIC {
            return Err(BlobError::BadMagic);
        }
        let count = u32_at(data, 8).ok_or(BlobError::Truncated)?;
        let table_end = (count as usize)
            .checked_mul(ENTRY_SIZE)
            .and_then(|t| t.checked_add(HEADER_SIZE))
            .ok_or(BlobError::Truncated)?;
        if table_end > data.len() {
            return Err(BlobError::Truncated);
        }
        let b = Self { data, count };
        for index in 0..count {
            b.entry(index).ok_or(BlobError::BadEntry { index })?;
        }
        Ok(b)
    }

    /// Number of entries.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Entry `i`: (name, bytes), or `None` if it is invalid.
    #[must_use]
    pub fn entry(&self, i: u32) -> Option<(&'a str, &'a [u8])> {
        if i >= self.count {
            return None;
        }
        let e = HEADER_SIZE + ENTRY_SIZE * i as usize;
        let raw = self.data.get(e..e + 16)?;
        let n = raw.iter().position(|&c| c == 0).unwrap_or(16);
        let name = core::str::from_utf8(raw.get(..n)?).ok()?;
        let off = u64_at(self.data, e + 16)?;
        let size = u64_at(self.data, e + 24)?;
        if !off.is_multiple_of(IMAGE_ALIGN) {
            return None;
        }
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        Some((name, self.data.get(start..end)?))
    }

    /// The image called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        (0..self.count)
            .filter_map(|i| self.entry(i))
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d)
    }
}

/// Builds a blob (host tests and tools).
#[cfg(test)]
pub fn build(images: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(images.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut off = (HEADER_SIZE + ENTRY_SIZE * images.len()).next_multiple_of(4096) as u64;
    let mut table = Vec::new();
    for (name, data) in images {
        let mut n = [0u8; 16];
        n[..name.len()].copy_from_slice(name.as_bytes());
        table.extend_from_slice(&n);
        table.extend_from_slice(&off.to_le_bytes());
        table.extend_from_slice(&(data.len() as u64).to_le_bytes());
        off = (off + data.len() as u64).next_multiple_of(4096);
    }
    out.extend_from_slice(&table);
    for (_, data) in images {
        out.resize(out.len().next_multiple_of(4096), 0);
        out.extend_from_slice(data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_kernel_and_initrd() {
        let k = vec![0xaa; 5000];
        let i = vec![0x55; 10];
        let b = build(&[("kernel", &k), ("initrd", &i)]);
        let p = Blob::parse(&b).unwrap();
        assert_eq!(p.count(), 2);
        assert_eq!(p.get("kernel"), Some(&k[..]));
        assert_eq!(p.get("initrd"), Some(&i[..]));
        assert_eq!(p.get("dtb"), None);
        assert_eq!(p.entry(2), None);
    }

    #[test]
    fn rejects_bad_blobs() {
        let b = build(&[("kernel", &[1, 2, 3])]);
        assert_eq!(Blob::parse(&b[..4]).unwrap_err(), BlobError::Truncated);
        let mut m = b.clone();
        m[0] = b'X';
        assert_eq!(Blob::parse(&m).unwrap_err(), BlobError::BadMagic);
        // Too many entries for the data.
        let mut c = b.clone();
        c[8..12].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert_eq!(Blob::parse(&c).unwrap_err(), BlobError::Truncated);
        // Unaligned offset.
        let mut u = b.clone();
        u[16 + 16..16 + 24].copy_from_slice(&4097u64.to_le_bytes());
        assert_eq!(
            Blob::parse(&u).unwrap_err(),
            BlobError::BadEntry { index: 0 }
        );
        // Size beyond the blob, and an overflowing size.
        for size in [b.len() as u64, u64::MAX] {
            let mut s = b.clone();
            s[16 + 24..16 + 32].copy_from_slice(&size.to_le_bytes());
            assert_eq!(
                Blob::parse(&s).unwrap_err(),
                BlobError::BadEntry { index: 0 }
            );
        }
    }
}
