#!/usr/bin/env bash
# The `pv` mode's checks (pv.sh) against recorded logs (tests-nested/results/2026-12-05-pv), no
# QEMU: the peer's and hv's disk+destroy runs pass every part; hv's full run fails the net part
# at the domU's ping (netback's GNTTABOP_copy, -ENOSYS on hv: dom0 oopses) and the end part
# (dom0 died); a disk log whose read-back line differs from what the domU wrote fails; a disk
# log cut before the domU's token names 'pv disk domu token'.
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
echo "pv-selftest: $n checks PASS"
