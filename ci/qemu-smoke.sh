#!/usr/bin/env bash
# QEMU smoke test of hv: guest-fault as d0 (the first kernel module, Xen's rule; it must end with a
# stage-2 fault) and guest-hello as d1 (all its ABI checks must pass), then hv powers off.
# Usage: ci/qemu-smoke.sh <smp> [hvrun options, e.g. --no-build --timeout 180]
set -euo pipefail
cd "$(dirname "$0")/.."
smp="${1:?usage: ci/qemu-smoke.sh <smp> [hvrun options]}"
shift
exec cargo run -q -p tests-nested --bin hvrun -- smoke --smp "$smp" "$@"
