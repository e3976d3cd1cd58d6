#!/usr/bin/env bash
# Issue 13 on the Xen peer (Debian's Xen 4.20 on bare QEMU TCG): PV disk and network with
# Linux's backends in dom0 (xen-blkback on a loop device set up by Xen's `block` hotplug script,
# xen-netback with `vif-bridge` on xenbr0; libxl runs both) and Linux's frontends in domUs
# (tests-nested/xen/dom0-pv.sh, domu-pv.sh). Parts, each checked on its own: disk (the domU
# reads dom0's token from /dev/xvda and writes a file dom0 then finds in the image), destroy
# (`xl destroy` with writes in flight, then e2fsck clean), net (the domU and dom0 ping each
# other over the bridge), end (dom0 healthy: xl list, free_memory back, no loop device).
# Usage: ci/xen-pv.sh   (env as tests-nested/xen/run-peer.sh: PV_PARTS, PV_BENCH, TRACE, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
exec tests-nested/xen/run-peer.sh pv
