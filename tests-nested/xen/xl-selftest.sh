#!/usr/bin/env bash
# The `xl` mode's checks (xl.sh) against the recorded peer log, no QEMU (~1 s): the full run of
# results/2026-12-05-xl-peer passes; the same log cut after the domU's /init names 'xl shutdown
# begin' as the first missing marker; a log without the domU row fails the `xl list` check; hv's
# recorded run (results/2026-12-05-xl-hv) passes, and fails once a destroy leaves a VMID in use;
# hv's TLBI counters agree with the plugin's in the recorded TRACE=1 run, not once a count differs;
# the per-create/per-destroy TLBI limits (xl_trace_limits) pass and fail on small traces; the
# phases table sums the 20 rounds.
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
# xl_trace_limits on small traces: a create within the limits passes; a full flush in a create,
# 65 TLBIs in a round's create, 2 full flushes in one destroy (begin + end) and, under
# xen-compat, one VMALLS12E1IS short of the removes each fail.
tr() { printf 'PHASE %s\n' "$@" >"$TMP/t.txt"; }
lim() { FAIL=(); xl_trace_limits "$TMP/t.txt" "$1" 2>/dev/null; }
ok=('1 xl_create_begin tlbi RIPAS2E1IS el2 31' '1 xl_create_begin tlbi VMALLE1IS el2 31'
    '1 xl_create_begin tlbi VMALLE1 el1 500' '1 xl_create_begin memory_op:15 12000'
    '2 xl_destroy_begin tlbi VMALLS12E1IS el2 1' '3 xl_destroy_end tlbi VMALLE1 el2 3'
    '4 round_create tlbi RIPAS2E1IS el2 32' '4 round_create tlbi VMALLE1IS el2 32'
    '4 round_create tlbi VMALLE1 el2 40'
    '5 round_destroy tlbi VMALLS12E1IS el2 1')
tr "${ok[@]}"; lim targeted; expect "limits ok" ""
tr "${ok[@]}" '1 xl_create_begin tlbi VMALLS12E1IS el2 1'; lim targeted
expect "create full flush" "xl_create_begin (phase 1): 1 full flushes (VMALLS12E1*/ALLE1*) under tlb=targeted"
tr "${ok[@]}" '4 round_create tlbi IPAS2E1IS el2 1'; lim targeted
expect "create 65" "round_create (phase 4): 65 EL2 TLBIs for the p2m, more than 64"
tr "${ok[@]}" '3 xl_destroy_end tlbi ALLE1IS el2 1'; lim targeted
expect "destroy 2 full" "xl_destroy_begin (phase 2): 2 full flushes, more than 1"
tr '1 xl_create_begin memory_op:15 7' '1 xl_create_begin multicall>memory_op:15 1' \
   '1 xl_create_begin tlbi VMALLS12E1IS el2 8'; lim xen-compat; expect "xen-compat ok" ""
tr '1 xl_create_begin memory_op:15 8' '1 xl_create_begin tlbi VMALLS12E1IS el2 7'; lim xen-compat
expect "xen-compat short" "xen-compat: 7 VMALLS12E1IS for 8 removed pages in xl_create_begin"
xl_phases "$LOG" | grep -q '^round_create .*(20 x' || { echo "xl-selftest: FAIL phases"; exit 1; }
echo "xl-selftest: $((n + 1)) checks PASS"
