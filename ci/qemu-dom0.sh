#!/usr/bin/env bash
# Issue 11: hv boots Debian's unmodified kernel as dom0 from Xen's boot binding, the same DTB
# and dom0 image as the Xen peer (ci/xen-peer.sh): tests-nested/xen/run-hv.sh. Checks every
# DOM0: marker (modules, ext4 from the passed-through virtio-blk disk with the test's token,
# xenfs, xenstored, xen-init-dom0, xenconsoled, xl info with hv's version, xl list with
# Domain-0, xl dmesg with hv's banner), QEMU exit 0 after dom0's poweroff; the console test
# (typed command answered by dom0's shell, 3x Ctrl-A to hv, 'h', back, poweroff); the panic
# test (hv reports dom0's end and powers off); the domus test (a dom0less domU from a
# /chosen/domU1 "xen,domain" node runs next to dom0: its markers, 3x Ctrl-A from dom0 reaches
# the domU's shell, then hv, then dom0 again; dom0's poweroff ends the machine). A run that
# stops early fails naming the first missing marker and the last one seen.
# Usage: ci/qemu-dom0.sh [check|console|panic|domus|all]   (default all; env as run-hv.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
exec tests-nested/xen/run-hv.sh "${@:-all}"
