#!/usr/bin/env bash
# The `xl` mode's checks (xl.sh) against the recorded peer log, no QEMU (~1 s): the full run of
# results/2026-12-05-xl-peer passes; the same log cut after the domU's /init names 'xl shutdown
# begin' as the first missing marker; a log without the domU row fails the `xl list` check; hv's
# recorded run (results/2026-12-05-xl-hv) passes, and fails once a destroy leaves a VMID in use;
# hv's TLBI counters agree with the plugin's in the recorded TRACE=1 run, not once a count differs;
# the phases table sums the 20 rounds.
set -euo pipefail
# shellcheck source=tests-nested/xen/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG=$REPO/tests-nested/results/2026-12-05-xl-peer/xl.log
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
n=0
check() { FAIL=(); xl_check "$1"; }
expect() {
    local got="${FAIL[*]:-}"
    if [ "$got" = "$2" ]; then n=$((n + 1)); else echo "xl-selftest: FAIL $1: got [$got], want [$2]"; exit 1; fi
}
check "$LOG"; expect "peer run" ""
awk '{ print } /DOM0: domu console ok/ { exit }' "$LOG" >"$TMP/cut.log"
check "$TMP/cut.log"; expect "cut run" "stopped before 'DOM0: xl shutdown begin' (last marker: 'DOM0: domu console ok')"
grep -v '| domu  ' "$LOG" >"$TMP/norow.log"
check "$TMP/norow.log"; expect "no domu row" "xl list shows no 'domu' row with 128 MB and 1 vCPU"
HVLOG=$REPO/tests-nested/results/2026-12-05-xl-hv/xl.log
check "$HVLOG"; expect "hv run" ""
{ cat "$HVLOG"; echo "105.0 106.0| hv: d22 destroyed (2 VMIDs in use)"; } >"$TMP/vmid.log"
check "$TMP/vmid.log"; expect "VMID kept" "VMIDs not returned after the last destroy: hv: d22 destroyed (2 VMIDs in use)"
TR=$REPO/tests-nested/results/2026-12-05-xl-hv/trace
DLOG=xl-selftest
FAIL=(); xl_trace_agree "$TR/xl.log" "$TR/xl-trace.txt" 2>/dev/null; expect "hv = plugin" ""
sed 's/^\(PHASE [0-9]* [^ ]* tlbi IPAS2E1IS el2\) \([0-9]*\)$/\1 0/' "$TR/xl-trace.txt" >"$TMP/trace.txt"
FAIL=(); xl_trace_agree "$TR/xl.log" "$TMP/trace.txt" 2>/dev/null
expect "hv != plugin" "TLBI IPAS2E1IS: hv counted 24898, the plugin 0"
xl_phases "$LOG" | grep -q '^round_create .*(20 x' || { echo "xl-selftest: FAIL phases"; exit 1; }
echo "xl-selftest: $((n + 1)) checks PASS"
