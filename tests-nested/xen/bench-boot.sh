#!/usr/bin/env bash
# Boot-time benchmark of issue 11: Xen 4.20 (the peer) and hv boot the same dom0 image from the
# same DTB (the one QEMU makes for Xen's boot: tests-nested/xen/lib.sh, dom0_dtb) on the same
# machine, one after the other in one invocation, and the figures are printed side by side:
# wall seconds since QEMU started and CPU seconds of QEMU's process tree (rig-stamp) to dom0's
# `DOM0: /init reached`, to `DOM0: xl list end`, to QEMU's exit. With TRACE=1, hvtrace.c's
# counts are added: hypercalls (hvc #0xea1 at EL1) and TLBIs (every EL) to /init and to xl list.
# A run that does not get there shows "-" and names the first missing marker.
#
# Usage: tests-nested/xen/bench-boot.sh [both|xen|hv]   (default both)
# Output in OUT (default target/bench-boot): bench-xen.log, bench-hv.log (stamped serial),
# boot.dtb, trace-xen.txt / trace-hv.txt (TRACE=1), bench.env (KEY=VALUE), bench.txt (the table).
# Env as run-peer.sh (SMP, MEM, DOM0_MEM, TIMEOUT, XEN_ARGS_EXTRA, DOM0_ARGS_EXTRA, QEMU, TRACE).
# Exit status 0 when every run reached `xl list` and exited 0.
set -euo pipefail
# shellcheck source=tests-nested/xen/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DLOG=bench-boot
WHICH=${1:-both}
case $WHICH in both) HYPS=(xen hv) ;; xen | hv) HYPS=("$WHICH") ;; *) dlog "usage: $0 [both|xen|hv]"; exit 2 ;; esac
OUT=${OUT:-$CARGO_TARGET_DIR/bench-boot}
mkdir -p "$OUT"
dom0_setup
dom0_disk "$OUT"
[ "$WHICH" = xen ] || dom0_build_hv "$OUT"
ARGS="$DOM0_CMDLINE ${DOM0_ARGS_EXTRA:-}"
dom0_boot_xen "$ARGS"
dom0_dtb "$OUT/boot.dtb"
dom0_boot_hv "$OUT/boot.dtb"
dlog "hypervisor: $XEN_ARGS; dom0: $ARGS; -smp $SMP -m $MEM; DTB $OUT/boot.dtb"

declare -A R=()
rc=0
for h in "${HYPS[@]}"; do
    log=$OUT/bench-$h.log
    if [ "$h" = xen ]; then BOOT=("${BOOT_XEN[@]}"); else BOOT=("${BOOT_HV[@]}"); fi
    dom0_plugin "$OUT/trace-$h.txt"
    rm -f "$OUT/trace-$h.txt"
    dlog "$h: booting (log $log)"
    dom0_run "$log" "${PLUGIN[@]}" "${BOOT[@]}" "${DISK[@]}"
    FAIL=()
    dom0_check_markers "$log" '/init reached' 'xl list end' || true
    [ "$RUN_RC" = 0 ] || FAIL+=("QEMU exit status $RUN_RC (124 = timeout after ${TIMEOUT}s)")
    P=$(echo "$h" | tr a-z A-Z)
    dom0_figures "$log" "BENCH_$P" >>"$OUT/bench.env.new"
    R[$h.init]="${W_INIT:--} / ${C_INIT:--}"
    R[$h.list]="${W_LIST:--} / ${C_LIST:--}"
    R[$h.end]="$(printf '%.2f' "$RUN_WALL") / ${C_END:--}"
    R[$h.status]=$([ ${#FAIL[@]} = 0 ] && echo ok || echo "FAIL: ${FAIL[0]}")
    if [ -n "${TRACE:-}" ] && [ -s "$OUT/trace-$h.txt" ]; then
        read -r hi ti hl tl <<<"$(dom0_trace_sums "$OUT/trace-$h.txt")"
        R[$h.hvc_init]=$hi; R[$h.tlbi_init]=$ti; R[$h.hvc_list]=$hl; R[$h.tlbi_list]=$tl
        printf 'BENCH_%s_HVC_TO_INIT=%s\nBENCH_%s_TLBI_TO_INIT=%s\nBENCH_%s_HVC_TO_XL_LIST=%s\nBENCH_%s_TLBI_TO_XL_LIST=%s\n' \
            "$P" "$hi" "$P" "$ti" "$P" "$hl" "$P" "$tl" >>"$OUT/bench.env.new"
    fi
    [ ${#FAIL[@]} = 0 ] || { rc=1; dom0_report "$h" "$log" || true; }
done
mv "$OUT/bench.env.new" "$OUT/bench.env"

{
    printf '%-34s' "same DTB and dom0, -smp $SMP -m $MEM"
    for h in "${HYPS[@]}"; do printf '%-22s' "$([ "$h" = xen ] && echo 'Xen 4.20' || echo "hv ${HV_VERSION:-}")"; done; echo
    row() {
        printf '%-34s' "$1"
        for h in "${HYPS[@]}"; do printf '%-22s' "${R[$h.$2]:--}"; done; echo
    }
    row 'to /init (wall s / CPU s)' init
    row 'to xl list done (wall / CPU)' list
    row 'to QEMU exit (wall / CPU)' end
    if [ -n "${TRACE:-}" ]; then
        row 'hypercalls to /init' hvc_init
        row 'TLBIs (all ELs) to /init' tlbi_init
        row 'hypercalls to xl list done' hvc_list
        row 'TLBIs (all ELs) to xl list' tlbi_list
    fi
    for h in "${HYPS[@]}"; do echo "$h: ${R[$h.status]}"; done
} | tee "$OUT/bench.txt"
exit $rc
