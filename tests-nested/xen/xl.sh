# shellcheck shell=bash
# The `xl` mode of the dom0 runners (issue 12), sourced by lib.sh: run-peer.sh xl / run-hv.sh xl.
# dom0's image gets the domU (build-dom0.sh DOM0_DOMU=1: build-domu.sh's gzip'd kernel and
# busybox initrd, /etc/xen/domu.cfg) and boots with `dom0.xl dom0.xl.rounds=N`: /init then
# runs dom0-xl.sh (xl create, xl list, the domU's /init marker in xenconsoled's log, xl
# shutdown -w, a second create + xl destroy, N create/destroy rounds with free_memory before and
# after). The check: every marker in order (a run that stops names the first missing marker
# and the last one seen), no "DOM0: FAIL", a `domu` row (128 MB, 1 vCPU) in `xl list`, QEMU
# exit status 0. Output in OUT: xl.log (stamped serial lines), xl.dtb, xl-phases.txt (dom0's
# seconds per phase), xl-trace.txt + xl-trace-summary.txt (TRACE=1: hypercalls and TLBIs by
# kind per phase).
# Env: XL_ROUNDS (20), XL_TIMEOUT (TIMEOUT capped at 400 s), XL_ASSERT_TLB (targeted|xen-compat:
# with TRACE=1, xl_trace_limits' counts per create and destroy), XL_CREATE_TLBI_MAX (64).

# The markers of dom0-xl.sh, in order, after init.sh's up to `xl dmesg end`.
XL_MARKERS=('xl create begin' 'xl create end' 'xl list domu end' 'domu console wait'
            'domu console ok' 'xl shutdown begin' 'xl shutdown end' 'domu gone' 'xl create2 begin'
            'xl create2 end' 'domu2 console ok' 'xl destroy begin' 'xl destroy end'
            'xl rounds begin' 'xl rounds end' 'xl test done' 'done t=')

# xl_phases LOG: one line per dom0 marker of the xl test: "<phase> <seconds until the next
# marker>" (dom0's uptime t=), the round phases summed ("round_create" and "round_destroy",
# with their count and mean).
xl_phases() {
    dom0_serial "$1" | awk '
        /^DOM0: / && / t=[0-9.]+/ {
            name = substr($0, 7); sub(/(:| on | t=).*/, "", name); gsub(/ /, "_", name)
            t = $0; sub(/.* t=/, "", t); sub(/ .*/, "", t)
            if (prev != "" && started) { d = t - pt; sum[prev] += d; cnt[prev]++; if (!(prev in seen)) { seen[prev] = 1; order[++n] = prev } }
            if (name == "xl_create_begin") started = 1
            prev = name; pt = t
        }
        END {
            for (i = 1; i <= n; i++) {
                p = order[i]
                if (cnt[p] > 1) printf "%-20s %8.2f s  (%d x, mean %.2f s)\n", p, sum[p], cnt[p], sum[p] / cnt[p]
                else printf "%-20s %8.2f s\n", p, sum[p]
            }
        }'
}

# xl_trace_summary TRACE: per phase name (rounds summed) from the xl test on: hypercalls,
# TLBIs in all and by kind (operation@EL).
xl_trace_summary() {
    awk '
        $1 == "PHASE" { nm = $3; if (nm == "xl_create_begin") on = 1; if (!on) next
                        if (!(nm in seen)) { seen[nm] = 1; order[++n] = nm }
                        if ($4 == "tlbi") { k = $5 "@" $6; tl[nm] += $NF; tk[nm, k] += $NF; if (!(k in kseen)) { kseen[k] = 1; kinds[++m] = k } }
                        else if ($4 != "gntop") hc[nm] += $NF }
        END {
            printf "%-20s %9s %9s", "phase", "hypercall", "tlbi"
            for (j = 1; j <= m; j++) printf " %s", kinds[j]
            printf "\n"
            for (i = 1; i <= n; i++) {
                p = order[i]; printf "%-20s %9d %9d", p, hc[p], tl[p]
                for (j = 1; j <= m; j++) printf " %s=%d", kinds[j], tk[p, kinds[j]]
                printf "\n"
            }
        }' "$1"
}

# xl_trace_agree LOG TRACE: on hv, its own TLBI counters (the power-off `hv: counters:` line,
# guest-TLB operations by kind) must equal the plugin's count of the same EL2 instructions over
# the whole run; appends each disagreement to FAIL and prints the comparison.
xl_trace_agree() {
    local line k n p bad=0
    line=$(dom0_serial "$1" | grep -m1 '^hv: counters:' || true)
    [ -n "$line" ] || return 0
    for k in IPAS2E1IS RIPAS2E1IS VMALLE1IS VMALLE1 VMALLS12E1IS VMALLS12E1 ALLE1IS; do
        n=$(sed -n "s/.* $k=\([0-9]*\).*/\1/p" <<<"$line")
        p=$(awk -v k="$k" '$1 == "PHASE" && $4 == "tlbi" && $5 == k && $6 == "el2" { s += $NF } END { print s + 0 }' "$2")
        if [ "$n" != "$p" ]; then
            FAIL+=("TLBI $k: hv counted $n, the plugin $p"); bad=1
        fi
        printf '[%s] %s: TLBI %-13s hv %8s  plugin %8s\n' "$DLOG" "${DLOG_WHAT:-xl}" "$k" "$n" "$p" >&2
    done
    [ $bad = 1 ] || dlog "${DLOG_WHAT:-xl}: hv's TLBI counters equal the plugin's (EL2, whole run)"
}

# xl_trace_limits TRACE POLICY: issue 12's per-create and per-destroy TLBI counts, from the
# plugin's EL2 (hypervisor) TLBIs of each occurrence of a phase (the rounds one by one); appends
# each violation to FAIL and prints what it checked.
#   targeted    every create (xl_create_begin, xl_create2_begin, each round_create): 0
#               VMALLS12E1*, 0 ALLE1*, at most XL_CREATE_TLBI_MAX (64) TLBIs for the p2m
#               changes (every EL2 TLBI but the local VMALLE1 hv issues when a vCPU of a
#               domain follows another vCPU of it on a pCPU, Xen's flush_guest_tlb_local at
#               a context switch: a scheduling cost, printed beside; it appears once the
#               unpaused domU competes with dom0's two vCPUs for the two pCPUs); every
#               destroy (xl_destroy_begin + xl_destroy_end, each round_destroy) and the shutdown
#               (xl_shutdown_begin + xl_shutdown_end): at most 1 full flush (VMALLS12E1*/ALLE1*).
#   xen-compat  the first create: one VMALLS12E1IS per page removed (memory_op 15 calls, in
#               multicalls too), as upstream Xen; no ALLE1*.
xl_trace_limits() {
    local out
    out=$(awk -v policy="$2" -v max="${XL_CREATE_TLBI_MAX:-64}" '
        # Occurrences: a PHASE number is one occurrence; a destroy spans two phases.
        $1 == "PHASE" {
            n = $2; nm = $3
            if (!(n in name)) { name[n] = nm; order[++k] = n }
            if ($4 == "tlbi" && $6 == "el2") {
                if ($5 == "VMALLE1") sw[n] += $NF; else tl[n] += $NF
                if ($5 ~ /^(VMALLS12E1|ALLE1)/) full[n] += $NF
                if ($5 ~ /^ALLE1/) alle1[n] += $NF
                if ($5 == "VMALLS12E1IS") vs12[n] += $NF
            } else if ($4 ~ /^(multicall>)?memory_op:15$/) rm[n] += $NF
        }
        function unit(nm) {
            if (nm == "xl_destroy_end") return "xl_destroy_begin"
            if (nm == "xl_shutdown_end") return "xl_shutdown_begin"
            return nm
        }
        END {
            for (i = 1; i <= k; i++) {
                n = order[i]; nm = name[n]
                if (policy == "targeted" && nm ~ /^(xl_create_begin|xl_create2_begin|round_create)$/) {
                    creates++
                    printf "CHECK create %s (phase %d): %d TLBIs, %d full (+ %d VMALLE1 at vCPU switches)\n", nm, n, tl[n], full[n], sw[n]
                    if (full[n] > 0) printf "FAIL %s (phase %d): %d full flushes (VMALLS12E1*/ALLE1*) under tlb=targeted\n", nm, n, full[n]
                    if (tl[n] > max) printf "FAIL %s (phase %d): %d EL2 TLBIs for the p2m, more than %d\n", nm, n, tl[n], max
                }
                u = unit(nm)
                if (policy == "targeted" && u ~ /^(xl_destroy_begin|xl_shutdown_begin|round_destroy)$/) {
                    if (u != nm) { df[last[u]] += full[n]; continue }
                    last[u] = n; df[n] += full[n]; dn[n] = u; dorder[++dk] = n
                }
                if (policy == "xen-compat" && nm == "xl_create_begin" && !done) {
                    done = 1
                    printf "CHECK create %s (phase %d): %d VMALLS12E1IS for %d removes, %d ALLE1*\n", nm, n, vs12[n], rm[n], alle1[n]
                    if (rm[n] == 0) printf "FAIL xen-compat: no remove_from_physmap in %s\n", nm
                    if (vs12[n] != rm[n]) printf "FAIL xen-compat: %d VMALLS12E1IS for %d removed pages in %s\n", vs12[n], rm[n], nm
                    if (alle1[n] > 0) printf "FAIL xen-compat: %d ALLE1* in %s\n", alle1[n], nm
                }
            }
            for (i = 1; i <= dk; i++) {
                n = dorder[i]; destroys++
                if (df[n] > 1) printf "FAIL %s (phase %d): %d full flushes, more than 1\n", dn[n], n, df[n]
                else printf "CHECK destroy %s (phase %d): %d full\n", dn[n], n, df[n]
            }
            if (policy == "targeted" && (creates == 0 || destroys == 0)) printf "FAIL no create or destroy phase in the trace\n"
            if (policy == "xen-compat" && !done) printf "FAIL no xl_create_begin phase in the trace\n"
        }' "$1")
    local l
    while IFS= read -r l; do
        case $l in
            FAIL\ *) FAIL+=("${l#FAIL }") ;;
        esac
    done <<<"$out"
    grep -c '^CHECK' <<<"$out" | xargs printf '[%s] xl: tlb=%s: %s phases checked\n' "$DLOG" "$2" >&2
    grep -E '^CHECK create (xl_create_begin|xl_create2_begin)' <<<"$out" | sed "s/^CHECK /[$DLOG] xl: /" >&2 || true
    awk '$1 == "CHECK" && $3 == "round_create" { sub(/,/, "", $6); t += $6; if ($6 > m) m = $6; c++ }
         END { if (c) printf "[%s] xl: round creates: %d, EL2 TLBIs mean %.1f, max %d\n", d, c, t / c, m }' d="$DLOG" <<<"$out" >&2
}

# xl_check LOG: appends to FAIL the first missing marker (init.sh's up to `xl dmesg end`, then
# dom0-xl.sh's, then `done`), any "DOM0: FAIL" line, a missing `domu` row (128 MB, 1 vCPU)
# in the `xl list` after the first create, and (hv) VMIDs still in use after the last destroy.
xl_check() {
    local m=("${DOM0_MARKERS[@]}")
    dom0_check_markers "$1" "${m[@]:0:${#m[@]}-1}" "${XL_MARKERS[@]}" || true
    if dom0_serial "$1" | grep -q '^DOM0: xl list domu end'; then
        dom0_block "$1" 'xl list domu begin' 'xl list domu end' | grep -Eq '^domu +[0-9]+ +128 +1 ' ||
            FAIL+=("xl list shows no 'domu' row with 128 MB and 1 vCPU")
    fi
    # hv: every VMID back after the last destroy (dom0's is the one left in use).
    local v
    v=$(dom0_serial "$1" | grep -E '^hv: d[0-9]+ destroyed \([0-9]+ VMIDs in use\)' | tail -n 1 || true)
    if [ -n "$v" ] && ! grep -q '(1 VMIDs in use)' <<<"$v"; then
        FAIL+=("VMIDs not returned after the last destroy: $v")
    fi
}

dom0_mode_xl() {
    local hyp=$1 log=$OUT/xl.log rounds=${XL_ROUNDS:-20} t=$TIMEOUT
    FAIL=()
    # The image with the domU (its own directory: the default image stays small).
    eval "$(DOM0_OUT=${XL_DOM0_OUT:-$OUT/dom0-xl} DOM0_DOMU=1 "$XEN_DIR/build-dom0.sh")"
    dom0_boot "$hyp" "$DOM0_CMDLINE dom0.xl dom0.xl.rounds=$rounds ${DOM0_ARGS_EXTRA:-}" "$OUT/xl.dtb"
    dom0_plugin "$OUT/xl-trace.txt"
    TIMEOUT=${XL_TIMEOUT:-$TIMEOUT}; [ "$TIMEOUT" -le 400 ] || TIMEOUT=400
    dlog "xl: dom0.xl, $rounds rounds, timeout ${TIMEOUT}s; initramfs $(stat -c %s "$DOM0_INITRD") bytes; log: $log"
    dom0_run "$log" "${PLUGIN[@]}" "${BOOT[@]}" "${DISK[@]}"
    xl_check "$log"
    [ "$RUN_RC" = 0 ] || FAIL+=("QEMU exit status $RUN_RC (124 = timeout after ${TIMEOUT}s)")
    TIMEOUT=$t
    xl_phases "$log" >"$OUT/xl-phases.txt"
    dom0_block "$log" 'xl list domu begin' 'xl list domu end' >&2 || true
    dom0_serial "$log" | grep -E '^DOM0: (domu2? console ok|xl rounds (begin|end))' >&2 || true
    dlog "xl: dom0's seconds per phase ($OUT/xl-phases.txt):"
    cat "$OUT/xl-phases.txt" >&2
    printf '[%s] xl: wall %.1f s, QEMU CPU %s s\n' "$DLOG" "$RUN_WALL" \
        "$(sed 's/|.*//' "$log" | awk '$2 > m { m = $2 } END { print m }')" >&2
    if [ -n "${TRACE:-}" ]; then
        xl_trace_agree "$log" "$OUT/xl-trace.txt"
        [ -z "${XL_ASSERT_TLB:-}" ] || xl_trace_limits "$OUT/xl-trace.txt" "$XL_ASSERT_TLB"
        xl_trace_summary "$OUT/xl-trace.txt" >"$OUT/xl-trace-summary.txt"
        dlog "xl: hypercalls and TLBIs per phase ($OUT/xl-trace-summary.txt):"
        cat "$OUT/xl-trace-summary.txt" >&2
    fi
    dom0_report xl "$log"
}
