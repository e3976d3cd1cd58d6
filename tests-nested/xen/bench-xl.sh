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
# xl-phases.txt, xl-trace*.txt), run-xen.txt, run-hv.txt, bench.txt (the table), bench.svg
# (its plot: seconds and TLBIs of the create, destroy and round phases).
# Exit status 0 when both runs passed.
set -uo pipefail
XEN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$XEN_DIR/../.." && pwd)
OUT=${OUT:-${CARGO_TARGET_DIR:-$REPO/target}/bench-xl}
mkdir -p "$OUT"
export XL_ROUNDS=${XL_ROUNDS:-20}
export XL_DOM0_OUT=$OUT/dom0-xl   # one image for both runs
# shellcheck source=tests-nested/xen/bench-lib.sh
source "$XEN_DIR/bench-lib.sh"
declare -A ST=()
bench_both xl "XL_ROUNDS=$XL_ROUNDS"
rc=$BENCH_RC

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

# bench.svg: the plot of bench.txt: for the create, destroy and round phases, seconds (linear)
# and, with TRACE, EL2 TLBIs (log scale), Xen's bar beside hv's.
awk -v trace="${TRACE:-}" '
    BEGIN { split("xl_create_begin xl_destroy_begin round_create* round_destroy*", want, " ")
            split("xl create|xl destroy|round create (mean)|round destroy (mean)", label, "|") }
    { for (i = 1; i <= 4; i++) if ($1 == want[i]) { xs[i] = $2; hs[i] = $3; xt[i] = $4; ht[i] = $5 } }
    function bar(x, y, w, h, c, v) {
        printf "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\"/>\n", x, y - h, w, h, c
        printf "<text x=\"%d\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">%s</text>\n", x + w / 2, y - h - 3, v
    }
    function panel(x0, title, vals_x, vals_h, logs,    i, m, sx, sh, base) {
        m = 0
        for (i = 1; i <= 4; i++) {
            sx = logs ? log(vals_x[i] + 1) : vals_x[i]; sh = logs ? log(vals_h[i] + 1) : vals_h[i]
            if (sx > m) m = sx; if (sh > m) m = sh
        }
        if (m == 0) m = 1
        base = 300
        printf "<text x=\"%d\" y=\"30\" font-size=\"14\">%s</text>\n", x0, title
        printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", x0, base, x0 + 400, base
        for (i = 1; i <= 4; i++) {
            sx = logs ? log(vals_x[i] + 1) : vals_x[i]; sh = logs ? log(vals_h[i] + 1) : vals_h[i]
            bar(x0 + 10 + (i - 1) * 100, base, 35, 240 * sx / m, "#c0504d", vals_x[i])
            bar(x0 + 47 + (i - 1) * 100, base, 35, 240 * sh / m, "#4f81bd", vals_h[i])
            printf "<text x=\"%d\" y=\"%d\" font-size=\"10\" text-anchor=\"middle\">%s</text>\n", x0 + 46 + (i - 1) * 100, base + 15, label[i]
        }
    }
    END {
        w = trace != "" ? 900 : 450
        printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"360\" font-family=\"sans-serif\">\n", w
        printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
        panel(20, "seconds (dom0 uptime between markers)", xs, hs, 0)
        if (trace != "") panel(470, "EL2 TLBIs (log scale)", xt, ht, 1)
        printf "<rect x=\"20\" y=\"335\" width=\"12\" height=\"12\" fill=\"#c0504d\"/><text x=\"36\" y=\"346\" font-size=\"12\">Xen 4.20</text>\n"
        printf "<rect x=\"110\" y=\"335\" width=\"12\" height=\"12\" fill=\"#4f81bd\"/><text x=\"126\" y=\"346\" font-size=\"12\">hv</text>\n"
        printf "</svg>\n"
    }' "$OUT/bench.txt" >"$OUT/bench.svg"
echo "[bench-xl] plot: $OUT/bench.svg" >&2
exit $rc
