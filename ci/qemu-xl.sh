#!/usr/bin/env bash
# Issue 12: Xen's toolstack on hv. The dom0 image of ci/qemu-dom0.sh plus the domU (Debian's
# kernel + a busybox initrd, tests-nested/xen/domu.cfg: 128 MB, 1 vCPU); dom0's /init runs
# tests-nested/xen/dom0-xl.sh: `xl create`, `xl list` shows the domU running, the domU's /init
# marker through xenconsoled, `xl shutdown -w`, a second create + `xl destroy`, then XL_ROUNDS
# (20) create/destroy rounds with free_memory back to its start value; hv's VMIDs back after the
# last destroy (tests-nested/xen/xl.sh's check). ~2 min of QEMU plus the image build.
# Usage: ci/qemu-xl.sh   (env as run-hv.sh: XL_ROUNDS, TIMEOUT, TRACE=1 for TLBIs per phase)
set -euo pipefail
cd "$(dirname "$0")/.."
exec tests-nested/xen/run-hv.sh xl
