#!/usr/bin/env bash
# Captures nested-detect's evidence fixtures: the probe payload's PROBE lines on bare QEMU
# (-cpu max, -cpu max,lpa2=off) and in the rig (L1 IPA limit 48 and 52; 48 with 2 CPUs).
# Usage: capture-fixtures.sh [OUTDIR]  (default nested-detect/tests/fixtures)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${1:-$REPO/nested-detect/tests/fixtures}
mkdir -p "$OUT" "$REPO/build/rig"
PROBE=$REPO/build/rig/probe.bin
"$HERE/build-payload.sh" "$PROBE"
keep() { # keep(LOG, FIXTURE, HOW): the PROBE lines without the VMM's timestamps
    { echo "# $3"; echo "# captured $(date -u +%Y-%m-%dT%H:%MZ), $(qemu-system-aarch64 --version | head -1)";
      sed -n 's/^.*\(PROBE: .*\)$/\1/p' "$1" | tr -d '\r'; } >"$2"
    echo "wrote $2" >&2
}
for cpu in max max,lpa2=off; do
    log=$REPO/build/rig/probe-bare-${cpu//,/_}.log
    "$HERE/probe-bare.sh" "$cpu" "$log" >/dev/null
    keep "$log" "$OUT/bare-qemu-${cpu//[,=]/-}.txt" "bare QEMU: tests-nested/rig/probe-bare.sh $cpu"
done
for cfg in "48 1" "52 1" "48 2"; do
    set -- $cfg
    log=$REPO/build/rig/probe-rig-ipa$1-smp$2.log
    "$HERE/run.sh" --guest "$PROBE" --ipa-limit "$1" --smp "$2" --vm-cpus "$2" --timeout 300 \
        --log "$log" --expect "PROBE: SYSTEM_OFF" >/dev/null
    keep "$log" "$OUT/rig-ipa$1-smp$2.txt" \
        "nested rig: tests-nested/rig/run.sh --guest probe.bin --ipa-limit $1 --smp $2 --vm-cpus $2"
done
