//! A writer for the "newc" cpio format the Linux kernel unpacks as its initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst).

/// One archive member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory with permission bits.
    Dir(String, u32),
    /// A regular file: path, permission bits, contents.
    File(String, u32, Vec<u8>),
    /// A symbolic link: path, target.
    Symlink(String, String),
    /// A character device node: path, major, minor.
    CharDev(String, u32, u32),
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

fn member(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
    let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime: fixed, so archives are reproducible
        data.len() as u32,
        0,
        0,
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// Serializes `entries` (in order; parents before children) plus the trailer.
pub fn newc(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir(p, perm) => member(&mut out, ino, p, S_IFDIR | perm, &[], (0, 0)),
            Entry::File(p, perm, d) => member(&mut out, ino, p, S_IFREG | perm, d, (0, 0)),
            Entry::Symlink(p, t) => member(&mut out, ino, p, S_IFLNK | 0o777, t.as_bytes(), (0, 0)),
            Entry::CharDev(p, ma, mi) => member(&mut out, ino, p, S_IFCHR | 0o600, &[], (*ma, *mi)),
        }
    }
    member(&mut out, 0, "TRAILER!!!", 0, &[], (0, 0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let a = newc(&[
            Entry::Dir("bin".into(), 0o755),
            Entry::File("init".into(), 0o755, b"#!/bin/sh\n".to_vec()),
            Entry::CharDev("dev/console".into(), 5, 1),
        ]);
        assert_eq!(&a[..6], b"070701");
        // First header: ino 1, mode dir|0755, namesize 4 ("bin\0").
        assert_eq!(&a[6..14], b"00000001");
        assert_eq!(&a[14..22], b"000041ed");
        assert_eq!(&a[94..102], b"00000004");
        assert_eq!(&a[110..114], b"bin\0");
        // 110 + 4 = 114 -> padded to 116: the next header starts there.
        assert_eq!(&a[116..122], b"070701");
        assert_eq!(a.len() % 4, 0);
        let has = |s: &[u8]| a.windows(s.len()).any(|w| w == s);
        assert!(has(b"TRAILER!!!\0"));
        assert!(has(b"#!/bin/sh\n"));
        // The console node carries rdev 5:1.
        assert!(has(b"0000000500000001"));
    }
}
