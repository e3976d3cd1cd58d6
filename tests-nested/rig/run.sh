#!/usr/bin/env bash
# Runs one guest hypervisor image (hv or the probe payload) in the nested rig:
#   L0 qemu-system-aarch64 (TCG, virtualization=on, GICv3)
#   -> L1 Debian arm64 kernel with kvm-arm.mode=nested, busybox initramfs
#   -> the rig VMM (tests-nested/vmm) -> the image at vEL2.
# Usage: run.sh --guest IMAGE [options]; see usage() below. Exit status 0 when the VMM ended
# with status 0 and every --expect marker appeared in the log.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/tests-nested/rig
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

usage() {
    cat >&2 <<'U'
usage: run.sh --guest IMAGE [--ipa-limit 48|52] [--smp N] [--vm-cpus N] [--vm-mem MIB]
              [--vm-ipa BITS] [--cmdline STR] [--module FILE [--module-args STR]]
              [--ramdisk FILE] [--timeout SECS] [--log FILE] [--expect TEXT]...
              [--exit-stamps] [--cpu-stamps] [--quiet] [--l1-append STR] [--trace-exits]
  --ipa-limit  L1 KVM's IPA limit: 48 (-cpu max,lpa2=off, default) or 52 (-cpu max)
  --smp        L0 CPUs given to L1 (default 1)
  --vm-cpus    vCPUs of the VMM's VM (default 1); --vm-mem its RAM (default 512 MiB)
  --vm-ipa     the VM's IPA size (default 40; 0 = L1's limit)
  --cmdline    /chosen/bootargs for the guest hypervisor
  --exit-stamps  the VMM prefixes serial lines with L0=<traps to L0 so far>
  --cpu-stamps   prefix each output line with the CPU seconds L0 QEMU has used so far
                 (rig-stamp: `   12.345678| line`)
  --quiet      do not copy the serial output to stdout (the log still has it)
  --l1-append  extra words for the L1 kernel's command line
  --trace-exits  (or RIG_TRACE_EXITS=1) L1 keeps an ftrace histogram of KVM's exits by
                 (exit code, exception class, PC) and prints it as `RIG: hist ...` lines
                 (tests-nested/results/2026-12-04-traps/traps.py turns them into a table)
U
    exit 2
}

IPA_LIMIT=48 SMP=1 TIMEOUT=900 LOG="" GUEST="" CMDLINE=""
VM_CPUS=1 VM_MEM=512 VM_IPA=40 STAMPS="" QUIET=0 CPU_STAMPS=0 L1_APPEND=
TRACE_EXITS=${RIG_TRACE_EXITS:-0}
MODS=() EXPECT=()
while [ $# -gt 0 ]; do
    case $1 in
        --guest) GUEST=$2; shift 2 ;;
        --ipa-limit) IPA_LIMIT=$2; shift 2 ;;
        --smp) SMP=$2; shift 2 ;;
        --vm-cpus) VM_CPUS=$2; shift 2 ;;
        --vm-mem) VM_MEM=$2; shift 2 ;;
        --vm-ipa) VM_IPA=$2; shift 2 ;;
        --cmdline) CMDLINE=$2; shift 2 ;;
        --module|--ramdisk) MODS+=("$1" "$2"); shift 2 ;;
        --module-args) MODS+=("$1" "$2"); shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --log) LOG=$2; shift 2 ;;
        --expect) EXPECT+=("$2"); shift 2 ;;
        --exit-stamps) STAMPS=" --exit-stamps"; shift ;;
        --quiet) QUIET=1; shift ;;
        --cpu-stamps) CPU_STAMPS=1; shift ;;
        --l1-append) L1_APPEND=" $2"; shift 2 ;;
        --trace-exits) TRACE_EXITS=1; shift ;;
        *) usage ;;
    esac
done
[ -n "$GUEST" ] || usage
case $IPA_LIMIT in
    48) CPU=max,lpa2=off ;;
    52) CPU=max ;;
    *) echo "run.sh: --ipa-limit must be 48 or 52" >&2; exit 2 ;;
esac

WORK=$REPO/build/rig
mkdir -p "$WORK"
LOG=${LOG:-$WORK/rig-$(date +%Y%m%d-%H%M%S).log}
now() { date +%s.%N; }
stage() { awk -v a="$2" -v b="$(now)" -v s="$1" 'BEGIN { printf "[rig] %-28s %7.1f s\n", s, b - a }' >&2; }

t=$(now)
eval "$("$HERE/fetch-l1.sh")"
stage "fetch L1 (kernel, busybox)" "$t"

t=$(now)
VMM=$("$HERE/build-vmm.sh")
stage "build VMM (aarch64 musl)" "$t"

t=$(now)
ROOT=$WORK/initramfs-$$
rm -rf "$ROOT"; mkdir -p "$ROOT"
# /rig/args: the VMM's argv, each word single-quoted for the busybox shell.
q() { printf "'%s' " "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
args="--kernel /rig/guest --cpus $VM_CPUS --mem-mib $VM_MEM --ipa-bits $VM_IPA --timeout $TIMEOUT$STAMPS"
specs=("file:rig/guest=$GUEST:644")
n=0 i=0
set_args=$(for a in $args; do q "$a"; done)
set_args+=$(q --cmdline; q "$CMDLINE")
while [ $i -lt ${#MODS[@]} ]; do
    flag=${MODS[$i]} val=${MODS[$((i + 1))]}
    if [ "$flag" = --module-args ]; then
        set_args+=$(q "$flag"; q "$val")
    else
        specs+=("file:rig/m$n=$val:644")
        set_args+=$(q "$flag"; q "/rig/m$n")
        n=$((n + 1))
    fi
    i=$((i + 2))
done
printf 'set -- %s\n' "$set_args" >"$ROOT/args"
[ "$TRACE_EXITS" = 1 ] && echo 'TRACE_EXITS=1' >>"$ROOT/args"
CPIO=$WORK/initramfs-$$.cpio
"$CARGO_TARGET_DIR/release/rig-cpio" "$CPIO" \
    dir:bin dir:dev dir:proc dir:sys dir:tmp dir:rig cdev:dev/console=5,1 \
    "file:bin/busybox=$BUSYBOX" sym:bin/sh=busybox "file:init=$HERE/init.sh" "file:rig/vmm=$VMM" \
    "file:rig/args=$ROOT/args:644" "${specs[@]}"
rm -rf "$ROOT"
stage "build initramfs" "$t"

t=$(now)
echo "[rig] L0 qemu -cpu $CPU -smp $SMP; log: $LOG" >&2
WRAP=()
[ $CPU_STAMPS = 1 ] && WRAP=("$CARGO_TARGET_DIR/release/rig-stamp" --)
set +e
${WRAP[@]+"${WRAP[@]}"} timeout --foreground "$((TIMEOUT + 60))" qemu-system-aarch64 \
    -M virt,virtualization=on,gic-version=3 -cpu "$CPU" -accel tcg,thread=multi \
    -smp "$SMP" -m 2G -nic none -nographic -no-reboot \
    -kernel "$L1_IMAGE" -initrd "$CPIO" \
    -append "console=ttyAMA0 kvm-arm.mode=nested rdinit=/init panic=-1$L1_APPEND" 2>&1 |
    if [ $QUIET = 1 ]; then cat >"$LOG"; else tee "$LOG"; fi
qrc=${PIPESTATUS[0]}
set -e
rm -f "$CPIO"
stage "run L0+L1+VMM+guest" "$t"

fail=0
[ "$qrc" = 0 ] || { echo "[rig] qemu exit status $qrc" >&2; fail=1; }
grep -q 'RIG: vmm exit 0 ' "$LOG" || { echo "[rig] VMM did not exit 0" >&2; fail=1; }
for m in ${EXPECT[@]+"${EXPECT[@]}"}; do
    grep -qF -- "$m" "$LOG" || { echo "[rig] missing marker: $m" >&2; fail=1; }
done
[ $fail = 0 ] && echo "[rig] OK ($LOG)" >&2
exit $fail
