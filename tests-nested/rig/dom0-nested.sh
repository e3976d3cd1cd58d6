#!/usr/bin/env bash
# Issue 11's dom0 in the nested rig: hv at vEL2 booting the dom0 image of tests-nested/xen
# (Debian's kernel + Xen's tools initramfs, .cache/xen/dom0/) with Xen's boot binding:
#   L0 QEMU TCG (-cpu max,lpa2=off: L1 KVM's IPA limit 48)
#   -> L1 Debian KVM (kvm-arm.mode=nested)
#   -> L1's qemu-system-aarch64 -accel kvm -M virt,virtualization=on,gic-version=3 -cpu host
#   -> hv at vEL2 -> Linux dom0.
# The DTB is made inside L1 the way tests-nested/xen/lib.sh makes it on bare QEMU (dom0_dtb):
# L1's QEMU with Xen's boot (-append = Xen's command line, guest-loader modules: dom0's kernel
# with its bootargs, the initramfs) and `dumpdtb`, i.e. QEMU's DTB of the machine hv then runs
# on (KVM's -cpu host, the VM's RAM and CPUs), not the host's TCG one. The second L1 run boots
# `-kernel hv -dtb <that DTB>` with the kernel and initramfs loaded at the modules' addresses
# (-device loader), plus the 16 MiB ext4 virtio-blk disk of lib.sh (dom0_disk). Between the two
# runs L1 prints the DTB (gzip | base64), saved here as OUT/boot-nested.dtb/.dts.
# Checks: every DOM0 marker of lib.sh in order, the disk's token, Domain-0 in `xl list`, hv's
# version in `xl info`, its banner in `xl dmesg`, hv's nested verdict, both L1 QEMU runs exit 0.
# Figures: wall s and L0 QEMU CPU s to dom0's /init and to `xl list` done, from L0 QEMU's start
# and from the start of hv's L1 run; traps to L0 (L1 KVM's exits, rig-kvm-stamp) at the same
# points and in all.
#
# MODE=xl (issue 12 item 5, the nested `xl create`): dom0's image is the one with the domU
# (build-dom0.sh DOM0_DOMU=1, as run-hv.sh xl) and dom0 boots with `dom0.xl
# dom0.xl.rounds=XL_ROUNDS`: after init.sh's steps dom0-xl.sh runs xl create, xl list, the
# domU's /init through xenconsoled, xl shutdown -w, create + xl destroy, XL_ROUNDS
# create/destroy rounds. Checks: xl.sh's xl_check (the same as run-hv.sh xl) on OUT/xl.log (LOG
# with the L0= stamps taken out, i.e. lib.sh's format), plus the L1 checks above. Figures per
# phase (OUT/xl-phases.txt: lib.sh's xl_phases; OUT/xl-phases-nested.txt: dom0 s, L0 QEMU CPU s
# and traps to L0 between dom0-xl.sh's markers, rounds summed) and hv's power-off counter
# lines (`hv: counters:`, `hv: window_closes:`).
# IPA_LIMIT=48|52: L1 KVM's IPA limit (run.sh --ipa-limit: L0 -cpu max,lpa2=off or -cpu max).
# It sizes KVM's shadow stage-2 tables and the range its VMALLS12E1IS emulation unmaps
# (kvm_get_pa_bits() = the limit), whatever IPA size the VM and hv use; see
# tests-nested/results/2026-12-05-xl-nested/README.md.
#
# Usage: tests-nested/rig/dom0-nested.sh
# Env: MODE (check | xl, check), IPA_LIMIT (48 | 52, 48), XL_ROUNDS (xl mode: rounds, 2),
#      XL_STEP_TIMEOUT (xl mode: s per xl command / wait in dom0, dom0.xl.timeout, 900),
#      SMP (L0 CPUs = VM vCPUs = dom0_max_vcpus, 1), VM_MEM (MiB, 1536), DOM0_MEM (512M),
#      TIMEOUT (s, per L1 run, 900; xl mode 2400), NO_DISK=1 (leave the virtio-blk disk out;
#      not with MODE=xl: its markers include the disk's), OUT (target/dom0-nested; xl mode
#      target/xl-nested-IPA_LIMIT), XEN_ARGS_EXTRA, DOM0_ARGS_EXTRA, RIG_CACHE (as run.sh).
set -euo pipefail
MODE=${MODE:-check}
IPA_LIMIT=${IPA_LIMIT:-48}
XL_ROUNDS=${XL_ROUNDS:-2}
SMP=${SMP:-1}
VM_MEM=${VM_MEM:-1536}
DOM0_MEM=${DOM0_MEM:-512M}
case $MODE in check | xl) ;; *) echo "dom0-nested: MODE must be check or xl" >&2; exit 2 ;; esac
case $IPA_LIMIT in 48 | 52) ;; *) echo "dom0-nested: IPA_LIMIT must be 48 or 52" >&2; exit 2 ;; esac
if [ "$MODE" = xl ] && [ -n "${NO_DISK:-}" ]; then
    echo "dom0-nested: MODE=xl needs the disk (init.sh's 'disk ok' marker is in xl_check's list)" >&2; exit 2
fi
# xl mode: L1 boot + dom0 boot (~1 min) + the xl test (bare QEMU: ~25 s before the rounds and
# ~4 s per round; nested several times that).
NESTED_TIMEOUT=${TIMEOUT:-$([ "$MODE" = xl ] && echo 2400 || echo 900)}
# lib.sh's functions (read-only use): the image, the disk, hv's build, the stamps, the checks
# (and xl.sh's, which lib.sh sources: xl_check, xl_phases).
# shellcheck source=tests-nested/xen/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../xen/lib.sh"
TIMEOUT=$NESTED_TIMEOUT
if [ "$MODE" = xl ]; then
    OUT=${OUT:-$CARGO_TARGET_DIR/xl-nested-$IPA_LIMIT}
    DLOG=xl-nested-$IPA_LIMIT
else
    OUT=${OUT:-$CARGO_TARGET_DIR/dom0-nested}
    DLOG=dom0-nested
fi
mkdir -p "$OUT"
LOG=$OUT/run.log

# The dom0 image: build-dom0.sh's output (DOM0_DIR, default .cache/xen/dom0; made by
# tests-nested/xen/build-dom0.sh when absent), copied into OUT so that a rebuild by another
# runner during this (long) run cannot change it.
DOM0_DIR=${DOM0_DIR:-$REPO/.cache/xen/dom0}
if [ "$MODE" = xl ]; then
    # The image with the domU, built into OUT every run as dom0_mode_xl does (XL_DOM0_OUT).
    DOM0_DIR=${XL_DOM0_OUT:-$OUT/dom0-xl}
    DOM0_OUT=$DOM0_DIR DOM0_DOMU=1 "$XEN_DIR/build-dom0.sh" >/dev/null
fi
[ -s "$DOM0_DIR/dom0.env" ] || "$XEN_DIR/build-dom0.sh" >/dev/null
cp "$DOM0_DIR/Image" "$OUT/Image"; cp "$DOM0_DIR/initramfs.cpio" "$OUT/initramfs.cpio"
eval "$(grep -E '^DOM0_(KERNEL_ADDR|INITRD_ADDR|CMDLINE)=' "$DOM0_DIR/dom0.env")"
DOM0_KERNEL=$OUT/Image DOM0_INITRD=$OUT/initramfs.cpio
( cd "$REPO" && cargo build -q --release -p vmm --bin rig-stamp ) >&2
DISK_WORDS=""
if [ -z "${NO_DISK:-}" ]; then
    dom0_disk "$OUT"
    DISK_WORDS="-drive if=none,id=d0,file=/rig/disk.img,format=raw -device virtio-blk-device,drive=d0"
    MARKERS=("${DOM0_MARKERS[@]}")
else
    MARKERS=()
    for m in "${DOM0_MARKERS[@]}"; do [ "$m" = 'disk ok' ] || MARKERS+=("$m"); done
fi
dom0_build_hv "$OUT"
XEN_ARGS="console=dtuart dtuart=serial0 dom0_mem=$DOM0_MEM dom0_max_vcpus=$SMP loglvl=all guest_loglvl=all ${XEN_ARGS_EXTRA:-}"
D0ARGS="$DOM0_CMDLINE ${DOM0_ARGS_EXTRA:-}"
# dom0.xl.timeout: dom0-xl.sh's limit per xl command and per wait (120 s by default); nested,
# one `xl create` takes ~2 minutes at IPA limit 48 (~26k hypercalls, ~8 traps to L0 each).
[ "$MODE" != xl ] || D0ARGS="$DOM0_CMDLINE dom0.xl dom0.xl.rounds=$XL_ROUNDS dom0.xl.timeout=${XL_STEP_TIMEOUT:-900} ${DOM0_ARGS_EXTRA:-}"
sp() { printf '%s' "${1// /@SP@}"; }   # run.sh --qemu-run: @SP@ is a blank inside a word
MACH="-accel kvm -M virt,virtualization=on,gic-version=3 -cpu host -smp $SMP -m ${VM_MEM}M -display none -monitor none -nic none -no-reboot"
# 1: the DTB of Xen's boot on L1's machine (lib.sh dom0_boot_xen + dom0_dtb, -kernel hv
# instead of Xen's image: -kernel's file does not change the DTB).
DTB_RUN="${MACH/virtualization=on,gic-version=3/virtualization=on,gic-version=3,dumpdtb=/tmp/boot.dtb} -serial stdio"
DTB_RUN+=" -kernel /rig/hv -append $(sp "$XEN_ARGS")"
DTB_RUN+=" -device guest-loader,addr=$DOM0_KERNEL_ADDR,kernel=/rig/Image,bootargs=$(sp "${D0ARGS% }")"
DTB_RUN+=" -device guest-loader,addr=$DOM0_INITRD_ADDR,initrd=/rig/initrd $DISK_WORDS"
# 2: hv with that DTB (lib.sh dom0_boot_hv).
HV_RUN="$MACH -serial stdio -kernel /rig/hv -dtb /tmp/boot.dtb"
HV_RUN+=" -device loader,file=/rig/Image,addr=$DOM0_KERNEL_ADDR,force-raw=on"
HV_RUN+=" -device loader,file=/rig/initrd,addr=$DOM0_INITRD_ADDR,force-raw=on $DISK_WORDS"
FILES=(--file "hv=$HV_BIN" --file "Image=$DOM0_KERNEL" --file "initrd=$DOM0_INITRD")
[ -n "${NO_DISK:-}" ] || FILES+=(--file "disk.img=$OUT/disk.img")

dlog "mode $MODE, L1 IPA limit $IPA_LIMIT, L0 -smp $SMP, L1 QEMU -smp $SMP -m ${VM_MEM}M, dom0_mem=$DOM0_MEM, disk: ${NO_DISK:+none}${NO_DISK:-virtio-blk}, timeout ${TIMEOUT}s; log $LOG"
dlog "hypervisor: $XEN_ARGS"
dlog "dom0: $D0ARGS"
start=$(us)
set +e
"$REPO/tests-nested/rig/run.sh" --l1-vmm qemu --ipa-limit "$IPA_LIMIT" --smp "$SMP" --timeout "$TIMEOUT" \
    "${FILES[@]}" --exit-stamps --cpu-stamps --log "$OUT/rig.log" \
    --qemu-run dtb "$DTB_RUN" \
    --l1-sh 'echo "RIG: dtb begin $(wc -c </tmp/boot.dtb)"; gzip -c /tmp/boot.dtb | base64; echo "RIG: dtb end"' \
    --qemu-run hv "$HV_RUN" \
    --expect "IPA Size Limit: $IPA_LIMIT bits" 2>"$OUT/run.err" | stamp_lines "$start" >"$LOG"
RUN_RC=${PIPESTATUS[0]}
set -e
end=$(( $(us) - start )); RUN_WALL=$((end / 1000000)).$(printf '%06d' $((end % 1000000)))
cat "$OUT/run.err" >&2

# Lines of LOG: "<wall> <L0 CPU>| [<t> L0=<exits>] text" (the L0= part on the L1 runs' lines).
txt() { sed -e 's/^[^|]*| \{0,1\}//' -e 's/^\[ *[0-9.]* L0=[0-9]*\] //' "$LOG" || true; }
# at ERE -> "wall cpu l0exits" of LOG's first line whose text matches ERE.
at() {
    awk -v re="$1" '{
        split($0, a, "|"); split(a[1], s, " "); t = $0; sub(/^[^|]*\| ?/, "", t)
        l0 = "-"; if (t ~ /^\[ *[0-9.]* L0=[0-9]*\] /) { l0 = t; sub(/^.*L0=/, "", l0); sub(/\].*/, "", l0); sub(/^\[[^]]*\] /, "", t) }
        if (t ~ re) { printf "%.2f %.2f %s\n", s[1], s[2], l0; exit } }' "$LOG"
}

# xl_nested_phases LOG: xl_phases' phases (dom0-xl.sh's markers from `xl create begin` on, each
# phase named after the marker that starts it, the rounds' phases summed) with, per phase:
# how many, dom0 seconds (its uptime t=), L0 QEMU CPU seconds (rig-stamp's column) and traps
# to L0 (differences of the L0= stamps: they lag the guest by the pipe, the sum over a phase
# does not).
xl_nested_phases() {
    awk '
        {
            split($0, a, "|"); split(a[1], s, " "); t = $0; sub(/^[^|]*\| ?/, "", t)
            l0 = ""
            if (t ~ /^\[ *[0-9.]* L0=[0-9]*\] /) { l0 = t; sub(/^.*L0=/, "", l0); sub(/\].*/, "", l0); sub(/^\[[^]]*\] /, "", t) }
            if (t !~ /^DOM0: / || t !~ / t=[0-9.]+/ || l0 == "") next
            name = substr(t, 7); sub(/(:| on | t=).*/, "", name); gsub(/ /, "_", name)
            up = t; sub(/.* t=/, "", up); sub(/ .*/, "", up)
            if (prev != "" && started) {
                if (!(prev in n)) order[++k] = prev
                n[prev]++; ds[prev] += up - pup; dc[prev] += s[2] - pc; dl[prev] += l0 - pl
            }
            if (name == "xl_create_begin") started = 1
            prev = name; pup = up; pc = s[2]; pl = l0
        }
        END {
            printf "%-20s %3s %9s %9s %9s\n", "phase", "n", "dom0_s", "l0cpu_s", "l0_traps"
            for (i = 1; i <= k; i++) {
                p = order[i]
                printf "%-20s %3d %9.2f %9.2f %9d", p, n[p], ds[p], dc[p], dl[p]
                if (n[p] > 1) printf "   mean %.2f s, %.2f s, %d traps", ds[p] / n[p], dc[p] / n[p], dl[p] / n[p]
                printf "\n"
            }
        }' "$1"
}
# phase_get TABLE PHASE COLUMN -> that column of xl_nested_phases' row (- if absent); with n > 1
# the mean.
phase_get() {
    awk -v p="$2" -v c="$3" '$1 == p { v = $c; if ($2 > 1) v = v / $2; printf(c == 5 ? "%d" : "%.2f", v); f = 1 } END { if (!f) print "-" }' "$1"
}

# The DTB L1 printed.
txt | awk '/^RIG: dtb end/ {on = 0} on {print} /^RIG: dtb begin/ {on = 1}' | tr -d '\r' |
    base64 -d 2>/dev/null | gunzip -c >"$OUT/boot-nested.dtb" 2>/dev/null || true
if [ -s "$OUT/boot-nested.dtb" ]; then
    dtc -q -I dtb -O dts -o "$OUT/boot-nested.dts" "$OUT/boot-nested.dtb" || true
    dlog "DTB of L1's machine: $OUT/boot-nested.dts"
fi

FAIL=()
for r in dtb hv; do
    txt | grep -q "^RIG: vmm $r exit 0 " || FAIL+=("L1 QEMU run $r did not exit 0: $(txt | grep -m1 "^RIG: vmm $r exit" || echo 'no exit line')")
done
if [ "$MODE" = xl ]; then
    # LOG in lib.sh's format ("<wall> <L0 CPU>| text": the L0= stamps taken out) so that xl.sh's
    # functions read it as they read run-hv.sh's xl.log.
    sed -e 's/| \[ *[0-9.]* L0=[0-9]*\] /| /' "$LOG" >"$OUT/xl.log"
    xl_check "$OUT/xl.log"
else
    last='(none)'
    for m in "${MARKERS[@]}"; do
        if txt | grep -q "^DOM0: $m"; then last="DOM0: $m"; else
            FAIL+=("stopped before 'DOM0: $m' (last marker: '$last')"); break
        fi
    done
    txt | grep -q '^DOM0: FAIL' && FAIL+=("$(txt | grep '^DOM0: FAIL' | tr '\n' ';')")
fi
if [ -z "${NO_DISK:-}" ] && txt | grep -q '^DOM0: disk ok' && ! txt | grep -q "^DOM0: disk ok $DISK_TOKEN"; then
    FAIL+=("the disk's token is not $DISK_TOKEN")
fi
# `|| true`: a reader that stops early (grep -q) must not turn the awk's SIGPIPE into a
# failed check under pipefail (seen with xl mode's long log: "xl dmesg has no 'hv ... booting'"
# although the line was there).
block() { txt | tr -d '\r' | awk -v b="^DOM0: $1" -v e="^DOM0: $2" '$0 ~ e {on = 0} on; $0 ~ b {on = 1}' || true; }
if txt | grep -q '^DOM0: xl list end'; then
    block 'xl list begin' 'xl list end' | grep -Eq '^Domain-0 +0 +[0-9]+ +[0-9]+ ' || FAIL+=("xl list shows no Domain-0")
    block 'xl info begin' 'xl info end' | grep -Eq '^xen_(version|extra|changeset) +: .*hv' || FAIL+=("xl info shows no hv version")
fi
if txt | grep -q '^DOM0: xl dmesg end'; then
    block 'xl dmesg begin' 'xl dmesg end' | grep -q "hv $HV_VERSION booting" || FAIL+=("xl dmesg has no 'hv $HV_VERSION booting'")
fi
VERDICT=$(txt | tr -d '\r' | grep -m1 'hv: platform:' || true)
[ -n "$VERDICT" ] || FAIL+=("no 'hv: platform:' verdict line")
case $VERDICT in *nested*) ;; *) FAIL+=("the verdict is not nested: $VERDICT") ;; esac
[ "$RUN_RC" = 0 ] || FAIL+=("run.sh exit status $RUN_RC")

# Figures.
read -r W_HV C_HV _ <<<"$(at '^RIG: vmm hv: ')"
read -r W_INIT C_INIT L_INIT <<<"$(at '^DOM0: /init reached')"
read -r W_LIST C_LIST L_LIST <<<"$(at '^DOM0: xl list end')"
read -r W_HV0 _ L_HV0 <<<"$(at 'hv [0-9.]+ booting')"
KVM=$(txt | tr -d '\r' | grep -m1 '^RIG: kvm hv ' || true)
C_END=$(tail -n1 "$LOG" | sed 's/|.*//' | awk '{print $2}')
d() { [ -n "${1:-}" ] && [ -n "${2:-}" ] && [ "$1" != - ] && [ "$2" != - ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }' || echo -; }
L0_BASE=${L_HV0:-0}
{
    echo "NESTED_SMP=$SMP"
    echo "NESTED_VM_MEM_MIB=$VM_MEM"
    echo "NESTED_DOM0_MEM=$DOM0_MEM"
    echo "NESTED_DISK=${NO_DISK:+none}${NO_DISK:-virtio-blk}"
    echo "NESTED_HV_RUN_START_WALL=${W_HV:-}"
    echo "NESTED_HV_RUN_START_CPU=${C_HV:-}"
    echo "NESTED_TO_INIT_WALL=${W_INIT:-}"
    echo "NESTED_TO_INIT_CPU=${C_INIT:-}"
    echo "NESTED_TO_XL_LIST_WALL=${W_LIST:-}"
    echo "NESTED_TO_XL_LIST_CPU=${C_LIST:-}"
    echo "NESTED_HV_TO_INIT_WALL=$(d "${W_INIT:-}" "${W_HV:-}")"
    echo "NESTED_HV_TO_INIT_CPU=$(d "${C_INIT:-}" "${C_HV:-}")"
    echo "NESTED_HV_TO_XL_LIST_WALL=$(d "${W_LIST:-}" "${W_HV:-}")"
    echo "NESTED_HV_TO_XL_LIST_CPU=$(d "${C_LIST:-}" "${C_HV:-}")"
    echo "NESTED_L0_TRAPS_TO_INIT=${L_INIT:-}"
    echo "NESTED_L0_TRAPS_TO_XL_LIST=${L_LIST:-}"
    echo "NESTED_L0_TRAPS_AT_HV_BANNER=${L_HV0:-}"
    echo "NESTED_KVM_HV=\"${KVM:-}\""
    echo "NESTED_TOTAL_WALL=$RUN_WALL"
    echo "NESTED_TOTAL_CPU=${C_END:-}"
    echo "NESTED_VERDICT=\"${VERDICT:-}\""
} >"$OUT/figures.env"
dlog "verdict: ${VERDICT:-none}"
block 'xl info begin' 'xl list end' | grep -E '^(xen_version|xen_extra|total_memory|free_memory|nr_cpus)|^Name|^Domain-0' >&2 || true
txt | tr -d '\r' | grep -m1 '^DOM0: disk' >&2 || true
printf '[%s] from L0 start (wall s / L0 CPU s): hv run start %s / %s, dom0 /init %s / %s, xl list done %s / %s, exit %s / %s\n' \
    "$DLOG" "${W_HV:-?}" "${C_HV:-?}" "${W_INIT:-?}" "${C_INIT:-?}" "${W_LIST:-?}" "${C_LIST:-?}" "$RUN_WALL" "${C_END:-?}" >&2
printf '[%s] from hv run start (wall s / L0 CPU s): dom0 /init %s / %s, xl list done %s / %s\n' \
    "$DLOG" "$(d "${W_INIT:-}" "${W_HV:-}")" "$(d "${C_INIT:-}" "${C_HV:-}")" "$(d "${W_LIST:-}" "${W_HV:-}")" "$(d "${C_LIST:-}" "${C_HV:-}")" >&2
printf '[%s] traps to L0 (L1 KVM exits - user MMIO, lagging): at hv banner %s, at /init %s, at xl list done %s; %s\n' \
    "$DLOG" "${L_HV0:-?}" "${L_INIT:-?}" "${L_LIST:-?}" "${KVM:-no RIG: kvm line}" >&2
: "$L0_BASE"
# The limit L1 KVM reports and hv's view of it (PARange in the verdict; hv's stage-2 input size
# is PARange capped at 48 bits).
txt | tr -d '\r' | grep -E '^RIG: dmesg: .*(IPA Size Limit|Nested|VHE)' >&2 || true
COUNTERS=$(txt | tr -d '\r' | grep -m1 '^hv: counters:' || true)
WINDOWS=$(txt | tr -d '\r' | grep -m1 '^hv: window_closes:' || true)
dlog "hv at power-off: ${COUNTERS:-no 'hv: counters:' line}"
dlog "hv at power-off: ${WINDOWS:-no 'hv: window_closes:' line}"
{
    echo "NESTED_MODE=$MODE"
    echo "NESTED_IPA_LIMIT=$IPA_LIMIT"
    echo "NESTED_L1_IPA_LINE=\"$(txt | tr -d '\r' | grep -m1 -o 'kvm \[[0-9]*\]: IPA Size Limit.*' || true)\""
    echo "NESTED_HV_COUNTERS=\"$COUNTERS\""
    echo "NESTED_HV_WINDOW_CLOSES=\"$WINDOWS\""
} >>"$OUT/figures.env"
if [ "$MODE" = xl ]; then
    xl_phases "$OUT/xl.log" >"$OUT/xl-phases.txt"
    xl_nested_phases "$LOG" >"$OUT/xl-phases-nested.txt"
    T=$OUT/xl-phases-nested.txt
    # The domU runs from `xl create`'s return: create end .. its /init marker seen by dom0.
    DOMU_INIT=$(awk '$1 ~ /^(xl_create_end|xl_list_domu_begin|xl_list_domu_end|domu_console_wait)$/ { s += $3; c += $4; l += $5 }
                     END { printf "%.2f %.2f %d", s, c, l }' "$T")
    DOMU_UP=$(txt | tr -d '\r' | sed -n 's/^DOM0: domu console ok: DOMU: \/init reached t=\([0-9.]*\).*/\1/p' | head -n1)
    {
        echo "XL_ROUNDS=$XL_ROUNDS"
        echo "XL_CREATE_S=$(phase_get "$T" xl_create_begin 3)"
        echo "XL_CREATE_L0CPU_S=$(phase_get "$T" xl_create_begin 4)"
        echo "XL_CREATE_TRAPS=$(phase_get "$T" xl_create_begin 5)"
        echo "XL_DOMU_TO_INIT_S=${DOMU_INIT%% *}"
        echo "XL_DOMU_TO_INIT_TRAPS=${DOMU_INIT##* }"
        echo "XL_DOMU_KERNEL_UPTIME_AT_INIT=${DOMU_UP:-}"
        echo "XL_CREATE2_S=$(phase_get "$T" xl_create2_begin 3)"
        echo "XL_SHUTDOWN_S=$(phase_get "$T" xl_shutdown_begin 3)"
        echo "XL_DESTROY_S=$(phase_get "$T" xl_destroy_begin 3)"
        echo "XL_DESTROY_TRAPS=$(phase_get "$T" xl_destroy_begin 5)"
        echo "XL_ROUND_CREATE_MEAN_S=$(phase_get "$T" round_create 3)"
        echo "XL_ROUND_CREATE_MEAN_TRAPS=$(phase_get "$T" round_create 5)"
        echo "XL_ROUND_DESTROY_MEAN_S=$(phase_get "$T" round_destroy 3)"
        echo "XL_ROUND_DESTROY_MEAN_TRAPS=$(phase_get "$T" round_destroy 5)"
    } >>"$OUT/figures.env"
    dom0_block "$OUT/xl.log" 'xl list domu begin' 'xl list domu end' >&2 || true
    dom0_serial "$OUT/xl.log" | grep -E '^DOM0: (domu2? console ok|xl rounds (begin|end))' >&2 || true
    dlog "xl: per phase, dom0 s / L0 QEMU CPU s / traps to L0 ($T):"
    cat "$T" >&2
    dlog "xl: create $(phase_get "$T" xl_create_begin 3) s ($(phase_get "$T" xl_create_begin 5) traps), domU to /init $(awk '{print $1}' <<<"$DOMU_INIT") s (domU uptime ${DOMU_UP:-?} s), destroy $(phase_get "$T" xl_destroy_begin 3) s, round create $(phase_get "$T" round_create 3) s, round destroy $(phase_get "$T" round_destroy 3) s (dom0 seconds)"
fi
if [ ${#FAIL[@]} = 0 ]; then
    dlog "PASS"
else
    for f in "${FAIL[@]}"; do dlog "FAIL: $f"; done
    dlog "last lines of $LOG:"
    txt | tr -d '\r' | grep -v '^RIG: dtb\|^[A-Za-z0-9+/=]\{60,\}$' | tail -n 30 >&2
    exit 1
fi
