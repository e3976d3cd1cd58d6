#!/usr/bin/env bash
# The Xen peer: boot Debian's Xen 4.20 hypervisor (xen-hypervisor-4.20-arm64, pinned by
# fetch.sh) on bare QEMU TCG with the dom0 image (build-dom0.sh), the way QEMU documents
# booting Xen: Xen's Image with -kernel (entered at EL2), its command line with -append
# (/chosen/bootargs), dom0's kernel and initramfs as multiboot modules with
# `-device guest-loader` (/chosen/module@... nodes, compatible "multiboot,kernel" /
# "multiboot,ramdisk", the kernel's bootargs in its node).
#
# Checks: dom0 reaches /init, every DOM0: marker of init.sh, no "DOM0: FAIL", `xl list` shows
# Domain-0, QEMU exits 0 (dom0's poweroff powers the machine off through Xen).
# Prints the figures: wall and QEMU CPU seconds to dom0's /init, to `xl list` done, to exit.
# Writes into OUT (default target/xen-peer): run.log (every serial line with "wall cpu|"
# stamps), xen-peer.dtb (the DTB QEMU built for this run, modules included: the same DTB
# boots hv, see README.md), figures.env.
#
# With TRACE=1, the TCG plugin hvtrace.c counts every hypercall (number, sub-op) and TLBI per
# phase (the phases are cut at dom0's "DOM0: " console lines) into OUT/trace.txt.
# Usage: tests-nested/xen/run-peer.sh   env: SMP (2), MEM (2G), DOM0_MEM (512M), TIMEOUT (s, 900),
#        XEN_ARGS_EXTRA (appended to Xen's command line), DOM0_ARGS_EXTRA (to dom0's), QEMU, OUT.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
OUT=${OUT:-$CARGO_TARGET_DIR/xen-peer}
QEMU=${QEMU:-qemu-system-aarch64}
SMP=${SMP:-2}
MEM=${MEM:-2G}
DOM0_MEM=${DOM0_MEM:-512M}
TIMEOUT=${TIMEOUT:-900}
log() { echo "[xen-peer] $*" >&2; }
mkdir -p "$OUT"

eval "$("$HERE/fetch.sh")"          # XEN_IMAGE ...
eval "$("$HERE/build-dom0.sh")"     # DOM0_KERNEL DOM0_INITRD DOM0_*_ADDR DOM0_CMDLINE
( cd "$REPO" && cargo build -q --release -p vmm --bin rig-stamp ) >&2
PLUGIN=()
if [ -n "${TRACE:-}" ]; then
    # Count hypercalls (by number and sub-op) and TLBIs per phase with hvtrace.c.
    gcc -shared -fPIC -O2 -Wall -o "$OUT/hvtrace.so" "$HERE/hvtrace.c"
    PLUGIN=(-plugin "$OUT/hvtrace.so,out=$OUT/trace.txt")
fi

XEN_ARGS="console=dtuart dtuart=serial0 dom0_mem=$DOM0_MEM dom0_max_vcpus=$SMP loglvl=all guest_loglvl=all ${XEN_ARGS_EXTRA:-}"
DOM0_ARGS="$DOM0_CMDLINE ${DOM0_ARGS_EXTRA:-}"
M=(-M virt,virtualization=on,gic-version=3 -cpu max -smp "$SMP" -m "$MEM" -nic none)
BOOT=(-kernel "$XEN_IMAGE" -append "$XEN_ARGS"
      -device "guest-loader,addr=$DOM0_KERNEL_ADDR,kernel=$DOM0_KERNEL,bootargs=$DOM0_ARGS"
      -device "guest-loader,addr=$DOM0_INITRD_ADDR,initrd=$DOM0_INITRD")
# The DTB of this very run (QEMU's own plus the guest-loader's /chosen nodes).
M_DUMP=("${M[@]}"); M_DUMP[1]+=",dumpdtb=$OUT/xen-peer.dtb"
"$QEMU" "${M_DUMP[@]}" -nographic "${BOOT[@]}" >/dev/null 2>&1
dtc -q -I dtb -O dts -o "$OUT/xen-peer.dts" "$OUT/xen-peer.dtb"
# QEMU's dump is padded to 1 MiB; the same tree compacted (8 KiB) is what hv is booted with
# (with the 1 MiB file hv printed nothing at all, 2026-12-04).
dtc -q -I dts -O dtb -o "$OUT/xen-peer.dtb" "$OUT/xen-peer.dts"

RUNLOG=$OUT/run.log
log "Xen $(basename "$XEN_IMAGE"), -smp $SMP -m $MEM, dom0_mem=$DOM0_MEM; log: $RUNLOG"
log "Xen: $XEN_ARGS"
log "dom0: $DOM0_ARGS"
# Every line gets "<wall s since start> <QEMU CPU s>|" (rig-stamp gives the CPU time of QEMU's
# process tree, which other load on the machine disturbs much less than wall time).
us() { local t=$EPOCHREALTIME; echo $(( ${t/./} )); }
start=$(us)
set +e
timeout --foreground "$TIMEOUT" "$CARGO_TARGET_DIR/release/rig-stamp" -- \
    "$QEMU" "${M[@]}" -nographic -no-reboot "${PLUGIN[@]}" "${BOOT[@]}" </dev/null |
    while IFS= read -r line; do
        t=$EPOCHREALTIME; t=$(( ${t/./} - start ))
        printf '%d.%06d %s\n' $((t / 1000000)) $((t % 1000000)) "${line//$'\r'/}"
    done >"$RUNLOG"
rc=${PIPESTATUS[0]}
set -e
end=$(( $(us) - start )); end=$((end / 1000000)).$(printf '%06d' $((end % 1000000)))

# stamp PATTERN -> "wall cpu" of the first line matching PATTERN (ERE on the serial text).
stamp() {
    awk -v re="$1" '{ split($0, a, "|"); t = a[1]; sub(/^[^|]*\| ?/, ""); if ($0 ~ re) { split(t, s, " "); printf "%.2f %.2f\n", s[1], s[2]; exit } }' "$RUNLOG"
}
serial() { sed 's/^[^|]*| \{0,1\}//' "$RUNLOG"; }
fail=()
for m in '/init reached' 'modules loaded' 'xenfs mounted' 'xenstored up' 'xen-init-dom0 done' \
         'xenconsoled up' 'xl info end' 'xl list end' 'done t='; do
    serial | grep -q "^DOM0: $m" || fail+=("no 'DOM0: $m' marker")
done
! serial | grep -q '^DOM0: FAIL' || fail+=("$(serial | grep -m1 '^DOM0: FAIL')")
serial | awk '/^DOM0: xl list begin/ {on = 1; next} /^DOM0: xl list end/ {on = 0} on' \
    | grep -Eq '^Domain-0 +0 +[0-9]+ +[0-9]+ ' || fail+=("xl list shows no Domain-0")
[ "$rc" = 0 ] || fail+=("QEMU exit status $rc (124 = timeout after ${TIMEOUT}s)")

read -r w_init c_init <<<"$(stamp '^DOM0: /init reached')"
read -r w_xs c_xs <<<"$(stamp '^DOM0: xenstored up')"
read -r w_list c_list <<<"$(stamp '^DOM0: xl list end')"
c_end=$(tail -n1 "$RUNLOG" | sed 's/|.*//' | awk '{print $2}')
cat >"$OUT/figures.env" <<FIG
XEN_PEER_TO_INIT_WALL=${w_init:-}
XEN_PEER_TO_INIT_CPU=${c_init:-}
XEN_PEER_TO_XENSTORED_WALL=${w_xs:-}
XEN_PEER_TO_XL_LIST_WALL=${w_list:-}
XEN_PEER_TO_XL_LIST_CPU=${c_list:-}
XEN_PEER_TOTAL_WALL=$end
XEN_PEER_TOTAL_CPU=${c_end:-}
FIG
serial | sed -n '/^DOM0: xl info begin/,/^DOM0: xl list end/p' >&2
serial | grep -E '^\(XEN\) (Xen version|Loading d0 kernel|Loading d0 initrd|Allocating 1:1|Freed)' >&2 || true
printf '[xen-peer] figures (wall s / QEMU CPU s): dom0 /init %s / %s, xl list done %s / %s, exit %.1f / %s\n' \
    "${w_init:-?}" "${c_init:-?}" "${w_list:-?}" "${c_list:-?}" "$end" "${c_end:-?}" >&2
if [ ${#fail[@]} = 0 ]; then
    log "PASS"
else
    log "FAIL: ${fail[*]}"
    serial | tail -n 40 >&2
    exit 1
fi
