#!/usr/bin/env bash
# hv as dom0's hypervisor, booted exactly as the Xen peer (run-peer.sh): the DTB QEMU makes for
# Xen's boot (guest-loader's /chosen: Xen's command line in bootargs, dom0's kernel with its
# bootargs and the initramfs as multiboot modules, the sizes those of the files) unchanged,
# with `-kernel hv.bin -dtb <that DTB>` and dom0's kernel and initramfs loaded at the modules'
# addresses with `-device loader`. Same image, disk and checks as the peer, plus `xl info`
# showing hv's version and `xl dmesg` showing hv's banner ("hv <version> booting").
# A run that stops early fails naming the first missing marker and the last one seen.
#
# Usage: tests-nested/xen/run-hv.sh [check|console|panic|domus|xl|pv|shell|all]   (default check)
# Output in OUT (default target/hv-dom0). Env as run-peer.sh, plus HV_SWITCH_EXPECT,
# HV_KEY_EXPECT, HV_COUNTERS_EXPECT, HV_BACK_EXPECT (console mode: what hv prints after 3x
# Ctrl-A, after `h`, after `p` (counters),
# after 3x Ctrl-A back to dom0) and PANIC_ERE (panic mode: hv's report of dom0's crash).
set -euo pipefail
# shellcheck source=tests-nested/xen/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
dom0_main hv "$@"
