# shellcheck shell=bash
# The `pv` mode of the dom0 runners (issue 13), sourced by lib.sh: run-peer.sh pv / run-hv.sh pv.
# dom0's image gets the domU with its PV initrd (build-dom0.sh DOM0_PV=1, in OUT/dom0-pv) and
# boots with `dom0.pv dom0.pv.parts=P dom0.pv.bench=N`: /init then runs dom0-pv.sh (PV disk
# through xen-blkback + Xen's block script, PV network through xen-netback + vif-bridge, each
# against Linux's frontends in a domU; see dom0-pv.sh). Each part is its own check, so that a
# hypervisor on which one part cannot work (netback needs GNTTABOP_copy) still shows the others:
#   disk     its markers in order; the domU read dom0's token ([domp] DOMU: token <T>, T from
#            `pv setup ok: token=<T>`); what dom0 read back from the image after the domU went
#            (`pv disk ok: from-domu=written-by-domu <T> <uuid>`) is the line the domU says it
#            wrote ([domp] DOMU: wrote /from-domu ...).
#   destroy  its markers (xl destroy with the domU's writes in flight, e2fsck -f -y then a
#            clean e2fsck -f -n, dom0's token intact).
#   net      its markers (vif on xenbr0, the domU's ping of dom0 and dom0's of the domU, 3/3).
#   end      dom0 healthy after all: `xl list` only Domain-0, free_memory back, no loop device;
#            then init.sh's `done`, QEMU exit status 0.
# The result per part goes to OUT/pv-results.txt (PASS / FAIL <first reason>); the mode fails
# if any part fails. On hv, the lines of hv's log about what it does not do (`not implemented`,
# `-ENOSYS`, `hv: ERROR`/`WARN`) are collected in OUT/pv-hv-lines.txt and printed.
# Output in OUT: pv.log (stamped serial lines), pv.dtb, pv-results.txt, pv-phases.txt (dom0's
# seconds per phase), pv-trace.txt + pv-bench.txt (TRACE=1 with PV_BENCH: hypercalls and TLBIs
# per MiB in the benchmark's phases).
# Env: PV_PARTS (disk,destroy,net), PV_BENCH (MiB for the domU's dd write/read of xvda, 0 = none),
#      PV_TIMEOUT (TIMEOUT, at most 900 s), PV_DOM0_OUT.

# pv_markers PART: that part's markers, in order.
pv_markers() {
    case $1 in
        disk)
            echo 'pv disk begin|pv disk created|pv disk domu token|pv disk domu done|pv disk gone|pv disk ok'
            ;;
        destroy)
            echo 'pv destroy begin|pv destroy created|pv destroy io in flight|pv destroy end|pv destroy fsck|pv destroy ok'
            ;;
        net)
            echo 'pv net begin|pv net created|pv net bridge port|pv net domu ping ok|pv net dom0 ping ok|pv net gone|pv net ok'
            ;;
        end) echo 'pv end|pv test done|done' ;;   # init.sh: "done" or "done with failures"
    esac
}

# pv_check_part LOG PART: appends PART's failures to FAIL (first missing marker with the last
# one seen, its "DOM0: FAIL pv PART" lines, the part's own assertions).
pv_check_part() {
    local log=$1 p=$2 m last='(none)' markers t l w
    IFS='|' read -r -a markers <<<"$(pv_markers "$p")"
    for m in "${markers[@]}"; do
        if dom0_serial "$log" | grep -q "^DOM0: $m"; then
            last="DOM0: $m"
        else
            FAIL+=("$p: stopped before 'DOM0: $m' (last of the part: '$last')")
            break
        fi
    done
    l=$(dom0_serial "$log" | grep "^DOM0: FAIL pv $p" | tr '\n' ';' || true)
    [ -z "$l" ] || FAIL+=("$p: $l")
    t=$(dom0_serial "$log" | sed -n 's/^DOM0: pv setup ok: token=\([^ ]*\) .*/\1/p' | head -n1)
    case $p in
        disk)
            if [ -n "$t" ]; then
                dom0_serial "$log" | grep -q "^\[domp\] DOMU: token $t t=" ||
                    FAIL+=("disk: the domU did not print the token $t")
                # What dom0 read back must be the line the domU wrote (its uuid included).
                w=$(dom0_serial "$log" | sed -n 's/^\[domp\] DOMU: wrote \/from-domu \(.*\) t=[0-9.]*$/\1/p' | head -n1)
                l=$(dom0_serial "$log" | sed -n 's/^DOM0: pv disk ok: from-domu=\(.*\) t=[0-9.]*$/\1/p' | head -n1)
                if [ -n "$l" ] && { [ -z "$w" ] || [ "$l" != "$w" ] || [[ $w != "written-by-domu $t "?* ]]; }; then
                    FAIL+=("disk: dom0 read back '$l', the domU wrote '$w'")
                fi
            fi
            ;;
        destroy)
            l=$(dom0_serial "$log" | grep -m1 '^DOM0: pv destroy fsck' || true)
            if [ -n "$l" ] && ! [[ $l =~ e2fsck\ -f\ -y\ exit\ [01],\ then\ e2fsck\ -f\ -n\ exit\ 0 ]]; then
                FAIL+=("destroy: $l")
            fi
            ;;
    esac
}

# pv_bench LOG TRACE: the benchmark's figures: seconds and MiB/s from the domU's lines; with a
# trace, hypercalls and TLBIs (all, and EL2 ones) per MiB in the phases pv_bench_write_begin
# and pv_bench_read_begin (dom0's markers around the domU's dd; 1 s of idle domU included).
pv_bench() {
    local log=$1 trace=${2:-} d line mib s
    for d in write read; do
        line=$(dom0_serial "$log" | grep -m1 "^\[domp\] DOMU: bench $d end" || true)
        [ -n "$line" ] || { echo "bench $d: no result"; continue; }
        mib=$(sed -n 's/.*bench [a-z]* end \([0-9]*\) MiB \([0-9.]*\) s.*/\1/p' <<<"$line")
        s=$(sed -n 's/.*bench [a-z]* end \([0-9]*\) MiB \([0-9.]*\) s.*/\2/p' <<<"$line")
        printf 'bench %-5s %s MiB in %s s (%s MiB/s, domU uptime)' "$d" "$mib" "$s" \
            "$(awk -v m="$mib" -v s="$s" 'BEGIN { if (s > 0) printf "%.2f", m / s; else print "-" }')"
        if [ -n "$trace" ] && [ -f "$trace" ]; then
            awk -v ph="pv_bench_${d}_begin" -v mib="$mib" '
                $1 == "PHASE" && $3 == ph { if ($4 == "tlbi") { t += $NF; if ($6 == "el2") t2 += $NF } else h += $NF }
                END { printf "; per MiB: %.1f hypercalls, %.1f TLBIs (%.1f at EL2)", h / mib, t / mib, t2 / mib }' "$trace"
        fi
        echo
    done
}

dom0_mode_pv() {
    local hyp=$1 log=$OUT/pv.log t=$TIMEOUT parts=${PV_PARTS:-disk,destroy,net} bench=${PV_BENCH:-0}
    local p n0 res=() allfail=()
    FAIL=()
    eval "$(DOM0_OUT=${PV_DOM0_OUT:-$OUT/dom0-pv} DOM0_PV=1 "$XEN_DIR/build-dom0.sh")"
    # Parts joined with '+' on dom0's command line: QEMU's -device guest-loader option takes
    # bootargs=... and splits its value at commas.
    dom0_boot "$hyp" "$DOM0_CMDLINE dom0.pv dom0.pv.parts=${parts//,/+} dom0.pv.bench=$bench ${DOM0_ARGS_EXTRA:-}" "$OUT/pv.dtb"
    dom0_plugin "$OUT/pv-trace.txt"
    TIMEOUT=${PV_TIMEOUT:-$TIMEOUT}; [ "$TIMEOUT" -le 900 ] || TIMEOUT=900
    dlog "pv: dom0.pv parts=$parts bench=${bench}MiB, timeout ${TIMEOUT}s; initramfs $(stat -c %s "$DOM0_INITRD") bytes; log: $log"
    dom0_run "$log" "${PLUGIN[@]}" "${BOOT[@]}" "${DISK[@]}"
    TIMEOUT=$t
    # dom0 itself up to the test (init.sh's markers to `xl dmesg end`, then the setup), and
    # any "DOM0: FAIL" line that is not a part's (those are the parts' checks below).
    local m=("${DOM0_MARKERS[@]}") last='(none: dom0 printed no marker)' l
    for p in "${m[@]:0:${#m[@]}-1}" 'pv begin' 'pv setup ok'; do
        if dom0_serial "$log" | grep -q "^DOM0: $p"; then last="DOM0: $p"; else
            FAIL+=("stopped before 'DOM0: $p' (last marker: '$last')"); break
        fi
    done
    l=$(dom0_serial "$log" | grep '^DOM0: FAIL' | grep -Ev '^DOM0: FAIL pv (disk|destroy|net|end)' | tr '\n' ';' || true)
    [ -z "$l" ] || FAIL+=("$l")
    if [ ${#FAIL[@]} != 0 ]; then
        res+=("boot+setup FAIL ${FAIL[0]}"); allfail+=("${FAIL[@]}")
    else
        res+=("boot+setup PASS")
    fi
    for p in ${parts//,/ } end; do
        FAIL=()
        pv_check_part "$log" "$p"
        [ "$p" != end ] || [ "$RUN_RC" = 0 ] || FAIL+=("QEMU exit status $RUN_RC (124 = timeout after ${PV_TIMEOUT:-$TIMEOUT}s)")
        if [ ${#FAIL[@]} = 0 ]; then res+=("$p PASS"); else res+=("$p FAIL ${FAIL[0]}"); allfail+=("${FAIL[@]}"); fi
    done
    printf '%s\n' "${res[@]}" >"$OUT/pv-results.txt"
    xl_phases "$log" >"$OUT/pv-phases.txt" 2>/dev/null || true
    dlog "pv: results ($OUT/pv-results.txt):"
    sed 's/^/    /' "$OUT/pv-results.txt" >&2
    dom0_serial "$log" | grep -E '^DOM0: pv (setup ok|disk (created|domu token|ok)|destroy (io|fsck|ok)|net (created|bridge|domu ping|dom0 ping|ok)|bench|end)|^\[dom[pdn]\] DOMU: (token|wrote|bench .* end|ping|FAIL)' >&2 || true
    if [ "$bench" != 0 ]; then
        pv_bench "$log" "${TRACE:+$OUT/pv-trace.txt}" >"$OUT/pv-bench.txt"
        dlog "pv: benchmark ($OUT/pv-bench.txt):"; cat "$OUT/pv-bench.txt" >&2
    fi
    if [ "$hyp" = hv ]; then
        dom0_serial "$log" | grep -E '^hv: .*(not implemented|ENOSYS|ERROR|WARN)|^hv: counters:' |
            awk '!seen[$0]++' >"$OUT/pv-hv-lines.txt" || true
        dlog "pv: hv's lines about what it does not do ($OUT/pv-hv-lines.txt, $(wc -l <"$OUT/pv-hv-lines.txt") distinct):"
        head -n 20 "$OUT/pv-hv-lines.txt" >&2
    fi
    printf '[%s] pv: wall %.1f s, QEMU CPU %s s\n' "$DLOG" "$RUN_WALL" \
        "$(sed 's/|.*//' "$log" | awk '$2 > m { m = $2 } END { print m }')" >&2
    FAIL=("${allfail[@]}")
    dom0_report pv "$log"
}
