//! Host-side runners for hv's QEMU and nested-rig tests.
//!
//! `hvrun` (src/bin/hvrun.rs) builds hv and the EL1 guest payloads, prepares a
//! DTB with Xen-style boot modules, runs QEMU with a timeout and checks the
//! serial log against ordered markers. The pieces are plain functions so the
//! DTS editing and marker matching are unit-tested on the host.

pub mod cli;
pub mod domu;
pub mod dts;
pub mod hostile;
pub mod image;
pub mod markers;
pub mod matrix;
pub mod qemu;
pub mod scenario;
pub mod toolchain;
