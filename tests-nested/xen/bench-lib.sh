# Shared by the side-by-side benchmarks (bench-xl.sh, bench-pv.sh); sourced, not run.
# bench_both MODE WHAT: the two runs of one benchmark, Debian's Xen (run-peer.sh MODE) and then
# hv (run-hv.sh MODE), each with OUT=$OUT/<xen|hv> and its output in $OUT/run-<xen|hv>.txt
# (WHAT: the settings to name in the progress line). Sets ST[xen], ST[hv] (PASS, FAIL, or
# recorded with TABLE_ONLY: no run, the table is made from OUT's earlier runs) and BENCH_RC (1
# when a run failed). The caller declares ST (declare -A ST=()) and sets XEN_DIR and OUT.
bench_both() {
    local mode=$1 what=$2 h runner
    BENCH_RC=0
    for h in xen hv; do
        if [ -n "${TABLE_ONLY:-}" ]; then ST[$h]=recorded; continue; fi
        runner=$XEN_DIR/run-$([ $h = xen ] && echo peer || echo hv).sh
        echo "[bench-$mode] $h: $runner $mode ($what${TRACE:+, TRACE=1}), output $OUT/run-$h.txt" >&2
        if OUT=$OUT/$h "$runner" "$mode" >"$OUT/run-$h.txt" 2>&1; then ST[$h]=PASS; else ST[$h]=FAIL; BENCH_RC=1; fi
        tail -n 1 "$OUT/run-$h.txt" >&2
    done
}
