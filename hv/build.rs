//! Passes hv's linker script to the linker (only for the bare-metal binary)
//! and embeds the demo guest named by `HV_DEFAULT_GUEST`, if set.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/arch/aarch64/linker.ld");
    println!("cargo:rerun-if-env-changed=HV_DEFAULT_GUEST");
    if env::var("TARGET").as_deref() == Ok("aarch64-unknown-none") {
        let dir =
            PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
        let script = dir.join("src/arch/aarch64/linker.ld");
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        // Position-independent executable: every absolute address in hv's
        // data becomes an R_AARCH64_RELATIVE entry in .rela.dyn, which
        // head.rs applies at entry for the address hv was loaded at.
        println!("cargo:rustc-link-arg-bins=--pie");
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
        println!("cargo:rustc-link-arg-bins=-z");
        println!("cargo:rustc-link-arg-bins=notext");
    }
    // The demo default (issue 2): `hvrun build` builds guest-hello first and
    // names its flat Image here, so an hv started with no boot module still
    // runs a guest. Without the variable hv embeds nothing.
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let code = match env::var("HV_DEFAULT_GUEST") {
        Ok(path) if !path.is_empty() => {
            let path = std::fs::canonicalize(&path)
                .unwrap_or_else(|e| panic!("HV_DEFAULT_GUEST={path}: {e}"));
            println!("cargo:rerun-if-changed={}", path.display());
            format!(
                "/// The embedded demo guest (a flat arm64 Image).\n\
                 pub static DEFAULT_GUEST: Option<&[u8]> = Some(include_bytes!({:?}));\n",
                path.display().to_string()
            )
        }
        _ => "/// No demo guest was embedded (HV_DEFAULT_GUEST was unset).\n\
              pub static DEFAULT_GUEST: Option<&[u8]> = None;\n"
            .to_string(),
    };
    std::fs::write(out.join("default_guest.rs"), code).expect("write default_guest.rs");
}
