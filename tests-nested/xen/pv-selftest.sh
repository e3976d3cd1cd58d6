#!/usr/bin/env bash
# The `pv` mode's checks (pv.sh) against recorded logs (tests-nested/results/2026-12-05-pv), no
# QEMU: the peer's and hv's disk+destroy runs pass every part; hv's full run fails the net part
# at the domU's ping (netback's GNTTABOP_copy, -ENOSYS on hv: dom0 oopses) and the end part
# (dom0 died); a disk log whose read-back line differs from what the domU wrote fails; a disk
# log cut before the domU's token names 'pv disk domu token'.
# pv_tlb_check (below) on hand-made traces.
set -euo pipefail
# shellcheck source=tests-nested/xen/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
R=$REPO/tests-nested/results/2026-12-05-pv
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
n=0
part() { FAIL=(); pv_check_part "$1" "$2"; }
expect() {   # expect NAME ERE: FAIL joined must match ERE ('' = no failure)
    local got="${FAIL[*]:-}"
    if { [ -z "$2" ] && [ -z "$got" ]; } || { [ -n "$2" ] && [[ $got =~ $2 ]]; }; then n=$((n + 1))
    else echo "pv-selftest: FAIL $1: got [$got], want /$2/"; exit 1; fi
}
for run in disk-peer disk-hv; do
    for p in disk destroy end; do part "$R/$run/pv.log" $p; expect "$run $p" ''; done
done
part "$R/run1-hv/pv.log" net; expect "hv net" "stopped before 'DOM0: pv net domu ping ok'"
part "$R/run1-hv/pv.log" end; expect "hv end" "stopped before 'DOM0: pv end'"
sed 's/^\(.*DOM0: pv disk ok: from-domu=written-by-domu [^ ]*\) [^ ]*/\1 not-the-uuid/' "$R/disk-peer/pv.log" >"$TMP/uuid.log"
part "$TMP/uuid.log" disk; expect "read-back differs" "dom0 read back .*not-the-uuid"
awk '/DOM0: pv disk created/ { print; exit } { print }' "$R/disk-peer/pv.log" >"$TMP/cut.log"
part "$TMP/cut.log" disk; expect "cut" "stopped before 'DOM0: pv disk domu token'"
# pv_tlb_check (issue 13's assertion) on hand-made traces in hvtrace.c's format: EL2 range
# TLBIs in the dd phases pass; one VMALLS12E1IS or ALLE1IS at EL2 in either fails, naming it; a
# full flush at EL1 (the guest's own) or in another phase does not count; a trace without the
# read phase fails (nothing measured is no pass).
tr() {   # tr FILE LINE...: a trace with these PHASE lines, each phase ENDed
    local f=$1; shift; printf '%s\n' "$@" >"$f"; awk '$1 == "PHASE" { print "END", $2, $3 }' "$f" | sort -u >>"$f"
}
tlb() { FAIL=(); pv_tlb_check "$1" 2>/dev/null; }
ok=("PHASE 7 pv_bench_write_begin tlbi IPAS2E1IS el2 40" "PHASE 7 pv_bench_write_begin tlbi VMALLE1IS el2 3"
    "PHASE 8 pv_bench_read_begin tlbi RIPAS2E1IS el2 12" "PHASE 8 pv_bench_read_begin grant_table_op 900"
    "PHASE 8 pv_bench_read_begin tlbi VMALLS12E1IS el1 1" "PHASE 9 pv_destroy_begin tlbi VMALLS12E1IS el2 1")
tr "$TMP/t-ok" "${ok[@]}"; tlb "$TMP/t-ok"; expect "tlb ranges only" ''
tr "$TMP/t-w" "${ok[@]}" "PHASE 7 pv_bench_write_begin tlbi VMALLS12E1IS el2 2"; tlb "$TMP/t-w"
expect "tlb full flush in write" 'pv_bench_write_begin: 45 EL2 TLBIs, 2 full flushes VMALLS12E1IS=2'
tr "$TMP/t-r" "${ok[@]}" "PHASE 8 pv_bench_read_begin tlbi ALLE1IS el2 1"; tlb "$TMP/t-r"
expect "tlb ALLE1IS in read" 'pv_bench_read_begin: 13 EL2 TLBIs, 1 full flushes ALLE1IS=1'
tr "$TMP/t-m" "${ok[@]:0:2}"; tlb "$TMP/t-m"; expect "tlb read phase missing" 'pv_bench_read_begin: not in the trace'
echo "pv-selftest: $n checks PASS"
