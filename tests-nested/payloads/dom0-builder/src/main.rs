//! The control-domain payload binary (see the library's documentation for
//! what it does, its command line and its output).
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std, no_main)]

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!("dom0-builder is a guest payload: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod hc;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod guest;
