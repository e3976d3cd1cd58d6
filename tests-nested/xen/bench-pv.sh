#!/usr/bin/env bash
# The PV I/O benchmark of issue 13: Debian's Xen 4.20 (the peer) and hv run the same `pv` test
# (pv.sh's mode: the same dom0 image, the same QEMU machine; dom0's blkback/netback, the domUs'
# blkfront/netfront) one after the other in one invocation, with PV_BENCH MiB (default 64): the
# domU's dd write and read of its xvda (an ext4-formatted raw image on dom0's loop device), then
# PV_BENCH MiB each way over the vif (busybox nc, md5 checked). With TRACE=1 (default here;
# hvtrace.c, the same counting on both) the figures per MiB moved: the hypervisor's TLBIs (EL2)
# and of them the full flushes (VMALLS12E1*, ALLE1*), the grant operations dom0 asked for
# (map_grant_ref, unmap_grant_ref, copy: sums of grant_table_op's count) and hypercalls.
#
# Usage: tests-nested/xen/bench-pv.sh   (env: PV_BENCH (64), TRACE (1), PV_PARTS, TIMEOUT, as
#        run-peer.sh; TABLE_ONLY=1 prints the table again from OUT's existing runs)
# Output in OUT (default target/bench-pv): xen/ and hv/ (each runner's OUT: pv.log,
# pv-bench.txt, pv-trace.txt, pv-results.txt), run-xen.txt, run-hv.txt, bench.txt (the table).
# Exit status 0 when both runs passed.
set -uo pipefail
XEN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$XEN_DIR/../.." && pwd)
OUT=${OUT:-${CARGO_TARGET_DIR:-$REPO/target}/bench-pv}
mkdir -p "$OUT"
export PV_BENCH=${PV_BENCH:-64} TRACE=${TRACE-1} TIMEOUT=${TIMEOUT:-900}
export PV_DOM0_OUT=$OUT/dom0-pv   # one image for both runs
# shellcheck source=tests-nested/xen/bench-lib.sh
source "$XEN_DIR/bench-lib.sh"
declare -A ST=()
bench_both pv "PV_BENCH=$PV_BENCH"
rc=$BENCH_RC

# One row per phase (write, read: the domU's dd; send: domU -> dom0, recv: dom0 -> domU) and
# figure of pv.sh's pv_bench lines (key=value; "-" where a run has none), Xen beside hv.
{
    printf '%-6s %-28s %10s %10s\n' phase figure 'Xen 4.20' hv
    awk '
        BEGIN {
            split("mibps hc el2 full map unmap copy tlbi", keys, " ")
            label["mibps"] = "MiB/s"; label["hc"] = "hypercalls / MiB"
            label["el2"] = "EL2 TLBIs / MiB"; label["full"] = "full flushes (EL2) / MiB"
            label["map"] = "grant maps / MiB"; label["unmap"] = "grant unmaps / MiB"
            label["copy"] = "grant copies / MiB"; label["tlbi"] = "TLBIs, any EL / MiB"
        }
        {
            h = (FILENAME ~ /\/xen\//) ? "xen" : "hv"
            if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
            for (i = 2; i <= NF; i++) { split($i, kv, "="); v[h, $1, kv[1]] = kv[2] }
        }
        END {
            for (i = 1; i <= n; i++)
                for (k = 1; k <= 8; k++) {
                    p = order[i]; key = keys[k]
                    x = ((("xen", p, key) in v) ? v["xen", p, key] : "-")
                    y = ((("hv", p, key) in v) ? v["hv", p, key] : "-")
                    if (x == "-" && y == "-") continue
                    printf "%-6s %-28s %10s %10s\n", p, label[key], x, y
                }
        }' "$OUT/xen/pv-bench.txt" "$OUT/hv/pv-bench.txt" 2>/dev/null
    for h in xen hv; do
        printf '%s: %s' "$h" "${ST[$h]}"
        [ -f "$OUT/$h/pv-results.txt" ] && printf ' (%s)' "$(tr '\n' ';' <"$OUT/$h/pv-results.txt" | sed 's/;$//')"
        printf '\n'
    done
} >"$OUT/bench.txt"
cat "$OUT/bench.txt"
exit $rc
