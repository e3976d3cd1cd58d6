#!/usr/bin/env bash
# Issue 13 on hv: the PV disk and network test of ci/xen-pv.sh (tests-nested/xen/run-hv.sh pv,
# the same image and checks as on the Xen peer). All parts pass on hv since GNTTABOP_copy.
# Usage: ci/qemu-pv.sh   (env as run-hv.sh: PV_PARTS (disk,destroy,net), PV_BENCH, TRACE, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
exec tests-nested/xen/run-hv.sh pv
