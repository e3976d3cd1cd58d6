#!/usr/bin/env bash
# Build the domU that dom0 creates with `xl create` (issue 12): Debian's unmodified arm64
# kernel (the same Image as dom0's, tests-nested/rig/fetch-l1.sh) and a tiny busybox-static
# initramfs whose /init is domu-init.sh (/sbin/poweroff = domu-poweroff.sh).
# The kernel is stored gzip'd: libxenguest gunzips a kernel itself (xc_dom_kernel_file ->
# xc_dom_try_gunzip in tools/libs/guest/xg_dom_core.c), and it keeps dom0's initramfs small.
# Output directory (DOMU_OUT, default .cache/xen/domu): Image.gz, initrd.cpio. Prints
# DOMU_KERNEL=..., DOMU_INITRD=... on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
OUT=${DOMU_OUT:-$REPO/.cache/xen/domu}
mkdir -p "$OUT"
eval "$("$REPO/tests-nested/rig/fetch-l1.sh")"   # L1_IMAGE, BUSYBOX
( cd "$REPO" && cargo build -q --release -p vmm --bin rig-cpio ) >&2
"$CARGO_TARGET_DIR/release/rig-cpio" "$OUT/initrd.cpio" \
    dir:bin dir:sbin dir:dev dir:proc dir:sys dir:tmp cdev:dev/console=5,1 cdev:dev/hvc0=229,0 \
    "file:bin/busybox=$BUSYBOX" sym:bin/sh=busybox "file:init=$HERE/domu-init.sh" \
    "file:sbin/poweroff=$HERE/domu-poweroff.sh"
# gzip only when the kernel changed (gzip -6 of 48 MB takes a few seconds).
if [ ! -s "$OUT/Image.gz" ] || [ "$L1_IMAGE" -nt "$OUT/Image.gz" ]; then
    gzip -6 -n -c "$L1_IMAGE" >"$OUT/Image.gz.tmp" && mv "$OUT/Image.gz.tmp" "$OUT/Image.gz"
fi
echo "[xen-domu] kernel $(stat -c %s "$OUT/Image.gz") bytes (gzip), initrd $(stat -c %s "$OUT/initrd.cpio") bytes" >&2
echo "DOMU_KERNEL=$OUT/Image.gz"
echo "DOMU_INITRD=$OUT/initrd.cpio"
