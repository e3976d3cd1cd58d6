#!/usr/bin/env bash
# Builds the rig VMM as a static aarch64-unknown-linux-musl binary (linked by rust-lld) and
# the host tools rig-cpio and rig-stamp (and the L1 tool rig-kvm-stamp); prints the path of the stripped VMM binary.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static"
cd "$REPO"
cargo build -q --release -p vmm --bin vmm --bin rig-kvm-stamp --target aarch64-unknown-linux-musl >&2
cargo build -q --release -p vmm --bin rig-cpio --bin rig-stamp >&2
OBJCOPY=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy
out=$CARGO_TARGET_DIR/aarch64-unknown-linux-musl/release/vmm.stripped
"$OBJCOPY" --strip-all "$CARGO_TARGET_DIR/aarch64-unknown-linux-musl/release/vmm" "$out"
# rig-kvm-stamp (QEMU-in-L1 runs: KVM exit stamps from debugfs) next to it.
"$OBJCOPY" --strip-all "$CARGO_TARGET_DIR/aarch64-unknown-linux-musl/release/rig-kvm-stamp" \
    "$CARGO_TARGET_DIR/aarch64-unknown-linux-musl/release/rig-kvm-stamp.stripped"
echo "$out"
