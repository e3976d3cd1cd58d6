#!/usr/bin/env bash
# Build the domU that dom0 creates with `xl create` (issue 12): Debian's unmodified arm64
# kernel (the same Image as dom0's, tests-nested/rig/fetch-l1.sh) and a tiny busybox-static
# initramfs whose /init is domu-init.sh (/sbin/poweroff = domu-poweroff.sh).
# The kernel is stored gzip'd: libxenguest gunzips a kernel itself (xc_dom_kernel_file ->
# xc_dom_try_gunzip in tools/libs/guest/xg_dom_core.c), and it keeps dom0's initramfs small.
# Output directory (DOMU_OUT, default .cache/xen/domu): Image.gz, initrd.cpio. Prints
# DOMU_KERNEL=..., DOMU_INITRD=... on stdout.
# DOMU_PV=1 (issue 13) also makes initrd-pv.cpio (DOMU_PV_INITRD=...): the same initrd plus
# /usr/lib/pv.sh (domu-pv.sh, run by /init when the command line has domu.pv=<part>) and the
# modules of the PV frontends, from the same pinned linux-modules package as dom0's (fetch.sh;
# in Debian's kernel they are modules, none built in): xen-blkfront, xen-netfront, ext4 (+ its
# depends=), loaded in the order of /usr/lib/modules/order.
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
if [ -n "${DOMU_PV:-}" ]; then
    log() { echo "[xen-domu] $*" >&2; }
    eval "$("$HERE/fetch.sh")"   # XEN_MODULES (the pinned linux-modules of this kernel)
    # shellcheck source=tests-nested/xen/modules.sh
    source "$HERE/modules.sh"
    rm -rf "$OUT/pv-mod"
    mods_stage "$XEN_MODULES" "$OUT/pv-mod" xen-blkfront xen-netfront ext4
    pvspecs=(dir:usr dir:usr/lib dir:usr/lib/modules "file:usr/lib/pv.sh=$HERE/domu-pv.sh"
             "file:usr/lib/modules/order=$OUT/pv-mod/order:644")
    for m in "${MODS_ORDER[@]}"; do pvspecs+=("file:usr/lib/modules/$m.ko=$OUT/pv-mod/$m.ko:644"); done
    "$CARGO_TARGET_DIR/release/rig-cpio" "$OUT/initrd-pv.cpio" \
        dir:bin dir:sbin dir:dev dir:proc dir:sys dir:tmp dir:mnt cdev:dev/console=5,1 cdev:dev/hvc0=229,0 \
        "file:bin/busybox=$BUSYBOX" sym:bin/sh=busybox "file:init=$HERE/domu-init.sh" \
        "file:sbin/poweroff=$HERE/domu-poweroff.sh" "${pvspecs[@]}"
    echo "[xen-domu] PV initrd $(stat -c %s "$OUT/initrd-pv.cpio") bytes, modules: ${MODS_ORDER[*]}" >&2
fi
# gzip only when the kernel changed (gzip -6 of 48 MB takes a few seconds).
if [ ! -s "$OUT/Image.gz" ] || [ "$L1_IMAGE" -nt "$OUT/Image.gz" ]; then
    gzip -6 -n -c "$L1_IMAGE" >"$OUT/Image.gz.tmp" && mv "$OUT/Image.gz.tmp" "$OUT/Image.gz"
fi
echo "[xen-domu] kernel $(stat -c %s "$OUT/Image.gz") bytes (gzip), initrd $(stat -c %s "$OUT/initrd.cpio") bytes" >&2
echo "DOMU_KERNEL=$OUT/Image.gz"
echo "DOMU_INITRD=$OUT/initrd.cpio"
[ -z "${DOMU_PV:-}" ] || echo "DOMU_PV_INITRD=$OUT/initrd-pv.cpio"
