#!/usr/bin/env bash
# The `xl` benchmark of issue 12: Debian's Xen 4.20 (the peer) and hv run the same `xl` test
# (xl.sh's mode: the same dom0 image with the domU, the same QEMU machine and DTB procedure:
# `xl create`, its console, `xl shutdown`, create + `xl destroy`, XL_ROUNDS create/destroy
# rounds) one after the other in one invocation, and the figures are printed side by side per
# phase: dom0's seconds (its uptime between its markers; the rounds as means) and, with TRACE=1
# (hvtrace.c, the same counting on both), the hypervisor's own TLBIs (EL2) and its full flushes
# (VMALLS12E1*, ALLE1*) per phase (the rounds as means).
#
# Usage: tests-nested/xen/bench-xl.sh      (env: XL_ROUNDS (default 20), TRACE, as run-peer.sh;
#        TABLE_ONLY=1 prints the table again from OUT's existing runs)
# Output in OUT (default target/bench-xl): xen/ and hv/ (each runner's OUT: xl.log,
# xl-phases.txt, xl-trace*.txt), run-xen.txt, run-hv.txt, bench.txt (the table).
# Exit status 0 when both runs passed.
set -uo pipefail
XEN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$XEN_DIR/../.." && pwd)
OUT=${OUT:-${CARGO_TARGET_DIR:-$REPO/target}/bench-xl}
mkdir -p "$OUT"
export XL_ROUNDS=${XL_ROUNDS:-20}
export XL_DOM0_OUT=$OUT/dom0-xl   # one image for both runs
rc=0
declare -A ST=()
for h in xen hv; do
    if [ -n "${TABLE_ONLY:-}" ]; then ST[$h]=recorded; continue; fi
    runner=$XEN_DIR/run-$([ $h = xen ] && echo peer || echo hv).sh
    echo "[bench-xl] $h: $runner xl (XL_ROUNDS=$XL_ROUNDS${TRACE:+, TRACE=1}), output $OUT/run-$h.txt" >&2
    if OUT=$OUT/$h "$runner" xl >"$OUT/run-$h.txt" 2>&1; then ST[$h]=PASS; else ST[$h]=FAIL; rc=1; fi
    tail -n 1 "$OUT/run-$h.txt" >&2
done

# phase_table: one row per phase of hv's xl-phases.txt (in its order): seconds on Xen and hv,
# then (TRACE) EL2 TLBIs and full flushes on each, rounds as means per round.
{
    printf '%-20s %10s %10s' phase 'Xen s' 'hv s'
    [ -n "${TRACE:-}" ] && printf ' %12s %12s %10s %10s' 'Xen TLBIs' 'hv TLBIs' 'Xen full' 'hv full'
    printf '\n'
    awk -v trace="${TRACE:-}" -v rounds="$XL_ROUNDS" '
        function mean(s, name) { return (name ~ /^round_/ && rounds > 0) ? s / rounds : s }
        FILENAME ~ /xl-phases.txt$/ {
            h = (FILENAME ~ /\/xen\//) ? "xen" : "hv"
            secs[h, $1] = $2; if (h == "hv") order[++n] = $1; next
        }
        FILENAME ~ /xl-trace-summary.txt$/ && FNR > 1 {
            h = (FILENAME ~ /\/xen\//) ? "xen" : "hv"
            for (i = 4; i <= NF; i++) if ($i ~ /@el2=/) {
                split($i, kv, "="); el2[h, $1] += kv[2]
                if (kv[1] ~ /^(VMALLS12E1|ALLE1)/) full[h, $1] += kv[2]
            }
        }
        END {
            for (i = 1; i <= n; i++) {
                p = order[i]
                x = ((("xen", p) in secs) ? secs["xen", p] : "-"); y = secs["hv", p]
                if (p ~ /^round_/) { if (x != "-") x = sprintf("%.2f", x / rounds); y = sprintf("%.2f", y / rounds) }
                printf "%-20s %10s %10s", p (p ~ /^round_/ ? "*" : ""), x, y
                if (trace != "")
                    printf " %12.1f %12.1f %10.1f %10.1f", mean(el2["xen", p], p), mean(el2["hv", p], p), mean(full["xen", p], p), mean(full["hv", p], p)
                printf "\n"
            }
        }' "$OUT/xen/xl-phases.txt" "$OUT/hv/xl-phases.txt" \
        ${TRACE:+"$OUT/xen/xl-trace-summary.txt" "$OUT/hv/xl-trace-summary.txt"}
    echo "* mean of $XL_ROUNDS rounds"
    echo "xen: ${ST[xen]}   hv: ${ST[hv]}"
} | tee "$OUT/bench.txt"
exit $rc
