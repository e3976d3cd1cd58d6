#!/usr/bin/env bash
# The runners' checks (lib.sh) against recorded serial logs, no QEMU (~1 s): a full Xen run
# passes with Xen's patterns and fails with hv's naming the two hv lines; hv's boot log of
# 2026-12-04 (no dom0) fails before the first marker; a run cut after `xenconsoled up` that
# timed out names 'xl info end' and the timeout; a wrong disk token is reported; the figures
# and hvtrace sums (to /init, to xl list) of recorded runs.
set -euo pipefail
# shellcheck source=tests-nested/xen/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RES=$REPO/tests-nested/results
LOG=$RES/2026-12-05-dom0/xen-check.log
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
n=0
expect() {   # expect "WHAT" "EXPECTED FAIL TEXT" (empty: no failure)
    local got="${FAIL[*]:-}"
    if [ "$got" = "$2" ]; then n=$((n + 1)); else echo "selftest: FAIL $1: got [$got], want [$2]"; exit 1; fi
}
DISK_TOKEN=token-2053326821 RUN_RC=0
FAIL=(); dom0_check_full "$LOG" '^xen_version +: 4\.20' 'Xen version 4\.20'
expect "Xen run, Xen's patterns" ""
FAIL=(); dom0_check_full "$LOG" '^xen_(version|extra|changeset) +: .*hv' 'hv 0\.1\.0 booting'
expect "Xen run, hv's patterns" "xl info has no line matching /^xen_(version|extra|changeset) +: .*hv/ xl dmesg has no line matching /hv 0\.1\.0 booting/"
sed 's/^/0.1 0.1| /' "$RES/2026-12-04-xen-peer/hv-today-on-xen-dtb.log" >"$TMP/hv.log"
FAIL=(); dom0_check_full "$TMP/hv.log" x y
expect "hv without dom0" "stopped before 'DOM0: /init reached' (last marker: '(none: dom0 printed no marker)')"
head -n 380 "$LOG" >"$TMP/cut.log"; RUN_RC=124
FAIL=(); dom0_check_full "$TMP/cut.log" x y
expect "cut run" "stopped before 'DOM0: xl info end' (last marker: 'DOM0: xenconsoled up') QEMU exit status 124 (124 = timeout after ${TIMEOUT}s)"
DISK_TOKEN=token-1 RUN_RC=0
FAIL=(); dom0_check_full "$LOG" '^xen_version +: 4\.20' 'Xen version 4\.20'
expect "wrong token" "the disk's token is not token-1: DOM0: disk ok token-2053326821 t=3.33"
read -r a b c d <<<"$(dom0_figures "$LOG" X | sed -n 's/^X_TO_\(INIT\|XL_LIST\)_\(WALL\|CPU\)=//p' | tr '\n' ' ')"
[ "$a $b $c $d" = "8.90 12.09 11.04 14.71" ] || { echo "selftest: FAIL figures: $a $b $c $d"; exit 1; }
t=$(dom0_trace_sums "$RES/2026-12-04-xen-peer/trace-xen-4.20.txt")
[ "$t" = "957 130727 1253 139554" ] || { echo "selftest: FAIL trace sums: $t"; exit 1; }
echo "selftest: $((n + 2)) checks PASS"
