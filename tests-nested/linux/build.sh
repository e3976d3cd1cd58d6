#!/usr/bin/env bash
# Fetch Debian's unmodified arm64 kernel and busybox-static (pinned and checksummed by
# tests-nested/rig/fetch-l1.sh, cached under .cache/rig) and build the Linux guest's
# initramfs (/init = init.sh) with the rig's cpio tool. Prints KEY=VALUE lines:
# LINUX_IMAGE=<uncompressed arm64 Image> LINUX_INITRD=<newc cpio>.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
OUT=${LINUX_OUT:-$REPO/.cache/linux}
mkdir -p "$OUT"

eval "$("$REPO/tests-nested/rig/fetch-l1.sh")"   # L1_IMAGE, BUSYBOX, KERNEL_DEB
echo "[linux] kernel $(basename "$KERNEL_DEB")" >&2

( cd "$REPO" && cargo build -q --release -p vmm --bin rig-cpio ) >&2
CPIO=$OUT/initramfs.cpio
"$CARGO_TARGET_DIR/release/rig-cpio" "$CPIO" \
    dir:bin dir:dev dir:proc dir:sys dir:tmp cdev:dev/console=5,1 cdev:dev/hvc0=229,0 \
    "file:bin/busybox=$BUSYBOX" sym:bin/sh=busybox "file:init=$HERE/init.sh"
echo "LINUX_IMAGE=$L1_IMAGE"
echo "LINUX_INITRD=$CPIO"
