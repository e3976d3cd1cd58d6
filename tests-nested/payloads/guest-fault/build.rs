//! Links the payload with guest-rt's linker script (the build script all payloads share).
include!("../guest-rt/build-link.rs");
