//! The embedded demo guest: what hv runs when it is booted with no boot
//! module at all (no `/chosen/module@...`, no dom0less domain).
//!
//! `hvrun build` sets `HV_DEFAULT_GUEST` to the freshly built guest-hello
//! Image before it builds hv, and `hv/build.rs` embeds that file; a build
//! without the variable embeds nothing and hv then reports "no domain to run".

include!(concat!(env!("OUT_DIR"), "/default_guest.rs"));

/// Copies bytes `[off, off + buf.len())` of `image` into `buf`; bytes past
/// the end of the image read as zero (the loader asks only within `size`).
pub fn read_into(image: &[u8], off: u64, buf: &mut [u8]) {
    let start = usize::try_from(off).unwrap_or(usize::MAX).min(image.len());
    let end = start.saturating_add(buf.len()).min(image.len());
    let n = end - start;
    buf[..n].copy_from_slice(&image[start..end]);
    buf[n..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_within_and_past_the_image() {
        let img = [1u8, 2, 3, 4, 5];
        let mut b = [9u8; 3];
        read_into(&img, 1, &mut b);
        assert_eq!(b, [2, 3, 4]);
        read_into(&img, 3, &mut b);
        assert_eq!(b, [4, 5, 0]);
        read_into(&img, u64::MAX, &mut b);
        assert_eq!(b, [0, 0, 0]);
    }

    #[test]
    fn host_builds_embed_nothing_unless_asked() {
        // Host test builds never set HV_DEFAULT_GUEST (ci/test.sh does not).
        if std::env::var_os("HV_DEFAULT_GUEST").is_none() {
            assert!(DEFAULT_GUEST.is_none());
        }
    }
}
