//! The hv image: on `aarch64-unknown-none` the entry point lives in
//! `hv::arch::aarch64::boot`; on any other target this binary only explains itself.
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
use hv as _;

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!(
        "hv is a bare-metal image: build it with --target aarch64-unknown-none (see README.md)"
    );
    std::process::exit(2);
}
