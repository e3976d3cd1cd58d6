#!/usr/bin/env bash
# Build the dom0 image: Debian's unmodified arm64 kernel Image + an initramfs holding Debian's
# xen-utils-4.20 daemons and tools (only the ELF files they need, resolved from DT_NEEDED with
# readelf -d), the kernel modules the Xen stack needs (with their `depends=`), busybox-static,
# and /init (tests-nested/xen/init.sh). Everything comes from tests-nested/xen/fetch.sh (pinned).
#
# Output directory (default .cache/xen/dom0): Image, initramfs.cpio, dom0.env. dom0.env is the
# image's description, shared by every runner that boots it (the Xen peer, hv):
#   DOM0_KERNEL, DOM0_INITRD   the two files
#   DOM0_KERNEL_ADDR, DOM0_INITRD_ADDR   where runners load them (guest-physical, QEMU virt)
#   DOM0_CMDLINE               dom0's command line (multiboot,kernel module's bootargs)
# Prints the same KEY=VALUE lines on stdout.
# Env: DOM0_OUT (output dir), DOM0_EXTRA_MODULES (more module names to include and load),
#      DOM0_DOMU=1 (issue 12: add the domU of build-domu.sh, /var/lib/domu/{Image.gz,initrd.cpio},
#      ~19 MB; /etc/xen/domu.cfg and dom0-xl.sh, the `dom0.xl` test, are always in the image),
#      DOM0_PV=1 (issue 13: the same domU plus its PV initrd, /var/lib/domu/initrd-pv.cpio, with
#      xen-blkfront, xen-netfront and ext4; dom0-pv.sh, the `dom0.pv` test, /etc/xen/domu-pv.cfg
#      and the hotplug scripts with bash, flock, mke2fs and e2fsck are always in the image).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
OUT=${DOM0_OUT:-$REPO/.cache/xen/dom0}
log() { echo "[xen-dom0] $*" >&2; }

for t in readelf strings xz dpkg-deb; do
    command -v "$t" >/dev/null || { log "$t is missing (binutils / xz-utils / dpkg)"; exit 1; }
done
eval "$("$HERE/fetch.sh")"   # XEN_IMAGE XEN_ROOT XEN_MODULES DOM0_KERNEL BUSYBOX

# Modules, in load order (dependencies are added before their users from `depends=`).
# Xen stack: xen-evtchn, xen-gntdev, xen-gntalloc, xen-privcmd, xenfs (xenfs needs privcmd).
# PV backends (issue 13): loop, xen-blkback, xen-netback, bridge (+ stp, llc).
# Passed-through virtio-mmio disk with ext4 (issue 11): virtio_mmio, virtio_blk, ext4 (+ deps).
MODULES="xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs loop xen-blkback xen-netback bridge
         virtio_mmio virtio_blk ext4 ${DOM0_EXTRA_MODULES:-}"
# Xen's user space: the daemons dom0 starts and the tools the tests run.
XEN_BIN=/usr/lib/xen-4.20/bin
# Issue 13: what Xen's hotplug scripts (/etc/xen/scripts, xen-utils-common) run that busybox
# lacks: bash (they are bash scripts: #!/bin/bash) and flock (locking.sh), and e2fsprogs' mke2fs
# and e2fsck (dom0 makes and checks the guests' ext4 disk images: busybox's mke2fs is ext2-only).
PROGRAMS="$XEN_BIN/xl $XEN_BIN/xenstored $XEN_BIN/xenconsoled $XEN_BIN/xen-init-dom0
          $XEN_BIN/xenstore-control /usr/bin/xenstore
          /usr/bin/bash /usr/bin/flock /usr/sbin/mke2fs /usr/sbin/e2fsck"
# libxl runs a disk's `block` script (a file: losetup onto a loop device) and a vif's
# `vif-bridge` itself (xl.conf run_hotplug_scripts=1, the default; there is no udev in the
# image), and the scripts source these (xenstore-read etc. are the xenstore binary's names).
HOTPLUG_SCRIPTS="block block-common.sh vif-bridge vif-common.sh xen-hotplug-common.sh
                 xen-network-common.sh xen-script-common.sh logging.sh locking.sh hotplugpath.sh"
XENSTORE_NAMES="xenstore-read xenstore-write xenstore-rm xenstore-exists xenstore-list xenstore-ls
                xenstore-chmod xenstore-watch"
# Libraries loaded with dlopen (not in any DT_NEEDED): glibc's pthread_cancel needs libgcc_s.
DLOPENED="libgcc_s.so.1"
LIBDIRS="$XEN_ROOT/usr/lib/aarch64-linux-gnu $XEN_ROOT/usr/lib $XEN_ROOT/usr/lib/xen-4.20/lib"

mkdir -p "$OUT"
stage=$OUT/stage
rm -rf "$stage"; mkdir -p "$stage/mod"

# --- kernel modules (modules.sh): decompressed, `depends=` first, in load order.
# shellcheck source=tests-nested/xen/modules.sh
source "$HERE/modules.sh"
mods_stage "$XEN_MODULES" "$stage/mod" $MODULES
order=("${MODS_ORDER[@]}")

# --- ELF files and their libraries, from DT_NEEDED (recursively).
declare -A lib_done=()
files=()   # "archive-path=host-path"
find_lib() {
    local d
    for d in $LIBDIRS; do [ -e "$d/$1" ] && { readlink -f "$d/$1"; return; }; done
    return 1
}
add_elf() {   # add_elf HOSTFILE: its NEEDED libraries, recursively
    local n p
    for n in $(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [ -z "${lib_done[$n]:-}" ] || continue
        lib_done[$n]=1
        p=$(find_lib "$n") || { log "library $n (needed by $1) not found in the unpacked packages"; exit 1; }
        files+=("usr/lib/aarch64-linux-gnu/$n=$p")
        add_elf "$p"
    done
}
for p in $PROGRAMS; do
    [ -f "$XEN_ROOT$p" ] || { log "$p is not in the packages"; exit 1; }
    files+=("${p#/}=$XEN_ROOT$p")
    add_elf "$XEN_ROOT$p"
done
for n in $DLOPENED; do
    [ -n "${lib_done[$n]:-}" ] && continue
    lib_done[$n]=1
    p=$(find_lib "$n") || { log "library $n not found"; exit 1; }
    files+=("usr/lib/aarch64-linux-gnu/$n=$p"); add_elf "$p"
done

( cd "$REPO" && cargo build -q --release -p vmm --bin rig-cpio ) >&2
specs=(dir:bin dir:dev dir:etc dir:proc dir:sys dir:tmp dir:mnt dir:root dir:run
       dir:var dir:var/lib dir:var/lib/xen dir:var/lib/xenstored dir:var/log dir:var/log/xen
       dir:var/run dir:var/run/xen dir:var/run/xenstored
       dir:etc/xen dir:usr dir:usr/bin dir:usr/lib dir:usr/lib/aarch64-linux-gnu
       dir:usr/lib/xen-4.20 dir:usr/lib/xen-4.20/bin dir:usr/lib/modules
       dir:usr/sbin dir:etc/xen/scripts
       sym:lib=usr/lib sym:bin/bash=../usr/bin/bash
       "file:etc/mke2fs.conf=$XEN_ROOT/etc/mke2fs.conf:644"
       "sym:usr/lib/ld-linux-aarch64.so.1=aarch64-linux-gnu/ld-linux-aarch64.so.1"
       cdev:dev/console=5,1
       "file:bin/busybox=$BUSYBOX" sym:bin/sh=busybox "file:init=$HERE/init.sh"
       "file:etc/xen/xl.conf=$HERE/xl.conf:644"
       dir:usr/lib/hvtest "file:usr/lib/hvtest/dom0-xl.sh=$HERE/dom0-xl.sh"
       "file:etc/xen/domu.cfg=$HERE/domu.cfg:644"
       "file:usr/lib/hvtest/dom0-pv.sh=$HERE/dom0-pv.sh" "file:etc/xen/domu-pv.cfg=$HERE/domu-pv.cfg:644")
for n in $HOTPLUG_SCRIPTS; do
    [ -f "$XEN_ROOT/etc/xen/scripts/$n" ] || { log "etc/xen/scripts/$n is not in xen-utils-common"; exit 1; }
    specs+=("file:etc/xen/scripts/$n=$XEN_ROOT/etc/xen/scripts/$n")
done
for n in $XENSTORE_NAMES; do specs+=("sym:usr/bin/$n=xenstore"); done
if [ -n "${DOM0_DOMU:-}${DOM0_PV:-}" ]; then
    # DOMU_PV=1: build-domu.sh also makes the PV test's initrd (DOMU_PV_INITRD).
    eval "$(DOMU_OUT=${DOMU_OUT:-$OUT/domu} DOMU_PV=${DOM0_PV:-} "$HERE/build-domu.sh")"   # DOMU_KERNEL DOMU_INITRD [DOMU_PV_INITRD]
    specs+=(dir:var/lib/domu "file:var/lib/domu/Image.gz=$DOMU_KERNEL:644"
            "file:var/lib/domu/initrd.cpio=$DOMU_INITRD:644")
    [ -z "${DOM0_PV:-}" ] || specs+=("file:var/lib/domu/initrd-pv.cpio=$DOMU_PV_INITRD:644")
fi
for f in "${files[@]}"; do specs+=("file:${f%%=*}=${f#*=}"); done
for m in "${order[@]}"; do specs+=("file:usr/lib/modules/$m.ko=$stage/mod/$m.ko:644"); done
specs+=("file:usr/lib/modules/order=$stage/mod/order:644")
"$CARGO_TARGET_DIR/release/rig-cpio" "$OUT/initramfs.cpio" "${specs[@]}"
cp "$DOM0_KERNEL" "$OUT/Image"

log "initramfs: $(stat -c %s "$OUT/initramfs.cpio") bytes; ${#files[@]} ELF files; modules: ${order[*]}"
cat >"$OUT/dom0.env" <<ENV
DOM0_KERNEL=$OUT/Image
DOM0_INITRD=$OUT/initramfs.cpio
DOM0_KERNEL_ADDR=0x50000000
DOM0_INITRD_ADDR=0x58000000
DOM0_CMDLINE="console=hvc0 earlycon=xenboot rdinit=/init"
ENV
cat "$OUT/dom0.env"
