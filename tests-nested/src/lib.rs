//! Host-side runners for hv's QEMU and nested-rig tests.
