#!/usr/bin/env bash
# Runs the EL2 probe payload directly on QEMU's virt machine (bare metal at EL2, PSCI via SMC).
# Usage: probe-bare.sh [CPU] [LOG]   (CPU defaults to "max")
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CPU=${1:-max}
LOG=${2:-$REPO/build/rig/probe-bare-${CPU//,/_}.log}
mkdir -p "$REPO/build/rig" "$(dirname "$LOG")"
"$HERE/build-payload.sh" "$REPO/build/rig/probe.bin"
timeout 120 qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu "$CPU" -m 1G -nic none \
    -nographic -no-reboot -kernel "$REPO/build/rig/probe.bin" | tee "$LOG"
grep -q 'PROBE: SYSTEM_OFF' "$LOG"
