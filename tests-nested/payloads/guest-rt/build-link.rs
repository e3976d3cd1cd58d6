// The build script every payload shares (each payload's build.rs includes this
// file): link the payload at its Image address with guest-rt's linker script,
// only for the bare-metal target (host builds are a plain explanatory binary).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let script = format!("{dir}/../guest-rt/guest.ld");
    println!("cargo:rerun-if-changed={script}");
    println!("cargo:rerun-if-changed={dir}/../guest-rt/build-link.rs");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("TARGET").as_deref() == Ok("aarch64-unknown-none") {
        println!("cargo:rustc-link-arg-bins=-T{script}");
    }
}
