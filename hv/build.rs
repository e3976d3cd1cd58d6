//! Passes hv's linker script to the linker, only for the bare-metal binary.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/arch/aarch64/linker.ld");
    if env::var("TARGET").as_deref() == Ok("aarch64-unknown-none") {
        let dir =
            PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
        let script = dir.join("src/arch/aarch64/linker.ld");
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    }
}
