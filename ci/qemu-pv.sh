#!/usr/bin/env bash
# Issue 13 on hv: the PV disk and network test of ci/xen-pv.sh (tests-nested/xen/run-hv.sh pv,
# the same image and checks as on the Xen peer), with the benchmark (PV_BENCH=64: the domU's dd
# write and read of 64 MiB of xvda, 64 MiB each way over the vif) counted by the hvtrace plugin
# (TRACE=1). Asserted besides the parts' checks (pv.sh): under tlb=targeted (hv's default) no
# VMALLS12E1* / ALLE1* at EL2 during the domU's dd write and read (pv_tlb_check), and hv's own
# TLBI counters equal the plugin's over the whole run. Figures per MiB: OUT/pv-bench.txt.
# Usage: ci/qemu-pv.sh   (env as run-hv.sh: PV_PARTS (disk,destroy,net), PV_BENCH, TRACE, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
export TRACE=${TRACE-1} PV_BENCH=${PV_BENCH:-64}
exec tests-nested/xen/run-hv.sh pv
