#!/usr/bin/env bash
# Builds the EL2 probe payload (tests-nested/rig/payload) into a flat arm64 Image.
# Usage: build-payload.sh OUT.bin
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:?usage: build-payload.sh OUT.bin}
OBJCOPY=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy
mkdir -p "$(dirname "$OUT")"
rustc --edition 2021 --target aarch64-unknown-none -C opt-level=2 -C panic=abort \
    -C relocation-model=static \
    -C link-arg=-T"$HERE/payload/payload.ld" -C link-arg=--no-gc-sections \
    -o "$OUT.elf" "$HERE/payload/payload.rs"
"$OBJCOPY" -O binary "$OUT.elf" "$OUT"
