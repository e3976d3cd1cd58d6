#!/usr/bin/env bash
# Issue 12: Xen's toolstack on hv. The dom0 image of ci/qemu-dom0.sh plus the domU (Debian's
# kernel + a busybox initrd, tests-nested/xen/domu.cfg: 128 MB, 1 vCPU); dom0's /init runs
# tests-nested/xen/dom0-xl.sh: `xl create`, `xl list` shows the domU running, the domU's /init
# marker through xenconsoled, `xl shutdown -w`, a second create + `xl destroy`, then XL_ROUNDS
# (20) create/destroy rounds with free_memory back to its start value; hv's VMIDs back after the
# last destroy (tests-nested/xen/xl.sh's check).
# Both runs count with the hvtrace plugin (TRACE=1), whose EL2 counts must equal hv's own:
#   1. tlb=targeted (hv's default): every create 0 VMALLS12E1*, 0 ALLE1*, <= 64 TLBIs; every
#      destroy <= 1 full flush (xl.sh's xl_trace_limits);
#   2. tlb=xen-compat, one create (XL_ROUNDS=1): one VMALLS12E1IS per page removed, as Xen.
# ~3 min of QEMU plus the image build.
# Usage: ci/qemu-xl.sh   (env as run-hv.sh: XL_ROUNDS, TIMEOUT; OUT (target/hv-dom0))
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-target/hv-dom0}
export TRACE=1
OUT=$out XL_ASSERT_TLB=targeted tests-nested/xen/run-hv.sh xl
OUT=$out-xen-compat XL_ROUNDS=1 XL_ASSERT_TLB=xen-compat XL_DOM0_OUT=$out/dom0-xl \
    XEN_ARGS_EXTRA="${XEN_ARGS_EXTRA:-} tlb=xen-compat" tests-nested/xen/run-hv.sh xl
