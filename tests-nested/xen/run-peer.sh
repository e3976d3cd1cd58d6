#!/usr/bin/env bash
# The Xen peer: boot Debian's Xen 4.20 hypervisor (xen-hypervisor-4.20-arm64, pinned by
# fetch.sh) on bare QEMU TCG with the dom0 image (build-dom0.sh), the way QEMU documents
# booting Xen: Xen's Image with -kernel (entered at EL2), its command line with -append
# (/chosen/bootargs), dom0's kernel and initramfs as multiboot modules with
# `-device guest-loader` (/chosen/module@... nodes, compatible "multiboot,kernel" /
# "multiboot,ramdisk", the kernel's bootargs in its node). A virtio-blk disk (virtio-mmio)
# holds an ext4 file system with a token dom0 must read.
#
# Usage: tests-nested/xen/run-peer.sh [check|console|panic|domus|xl|pv|shell|all]   (default check)
#   check: every DOM0: marker of init.sh (disk ok <token>, xl info, xl list with Domain-0,
#          xl dmesg with Xen's banner), no "DOM0: FAIL", QEMU exits 0 (dom0's poweroff powers
#          the machine off through Xen); prints the figures: wall and QEMU CPU seconds to
#          dom0's /init, to `xl list` done, to exit.
#   console, panic, domus: see dom0_main in lib.sh (shared with run-hv.sh).
# Output in OUT (default target/xen-peer): run.log (every serial line with "wall cpu|"
# stamps), xen-peer.dtb (the DTB QEMU built for this run, modules included: the same DTB
# boots hv, see README.md), figures.env, trace.txt (TRACE=1: hvtrace.c's hypercall and TLBI
# counts per phase, cut at dom0's "DOM0: " console lines).
# Env: SMP (2), MEM (2G), DOM0_MEM (512M), TIMEOUT (s, 300), XEN_ARGS_EXTRA, DOM0_ARGS_EXTRA,
#      QEMU, OUT, TRACE.
set -euo pipefail
# shellcheck source=tests-nested/xen/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
dom0_main xen "$@"
