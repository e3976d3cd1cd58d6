#!/usr/bin/env bash
# Runs one guest hypervisor image (hv or the probe payload) in the nested rig:
#   L0 qemu-system-aarch64 (TCG, virtualization=on, GICv3)
#   -> L1 Debian arm64 kernel with kvm-arm.mode=nested, busybox initramfs
#   -> the L1 VMM: the rig VMM (tests-nested/vmm, --l1-vmm rig, the default) or Debian's
#      qemu-system-aarch64 with -accel kvm (--l1-vmm qemu, fetch-qemu-l1.sh)
#   -> the image at vEL2.
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
              [--exit-stamps] [--cpu-stamps] [--quiet] [--l1-append STR]
              [--l1-vmm rig|qemu] [--qemu-cpu CPU] [--trace-exits] [--tick N] [--dtb FILE] [--load FILE@ADDR]...
              [--file NAME=FILE]... [--qemu-run NAME ARGS]... [--l1-sh LINE]...
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
  --l1-vmm     rig: the rig VMM (its DTB, modules as Xen module@ nodes, exit-counter@b000000);
               qemu: Debian's qemu-system-aarch64 11.x in L1 (fetch-qemu-l1.sh) running
               `-accel kvm -M virt,virtualization=on,gic-version=3 -cpu host -smp VM_CPUS
               -m VM_MEM -kernel GUEST` plus -dtb / -device loader as on bare QEMU
  --qemu-cpu   (qemu) L1 QEMU's -cpu (default host)
  --trace-exits  (or RIG_TRACE_EXITS=1) L1 keeps ftrace histograms of KVM's exits by
               (exception class, PC) and trapped system registers by (name, PC) during each
               run and prints them as `RIG: hist NAME ...` lines, and the exits by exception
               class as `RIG: exits NAME <count> ec=0x.. ret=..`
  --trace-irqs (or RIG_TRACE_IRQS=1; implies --trace-exits) also L1's histograms of host IRQs,
               hrtimer callbacks, KVM timer events and injections into the guest hypervisor
               (init.sh TRACE_IRQS), and /proc/interrupts after each run
  --tick N     print the VM's KVM exits every N s (`RIG: tick NAME exits=...`)
  --dtb        (qemu) the DTB L1's QEMU gives the guest (e.g. the bare-QEMU one with modules)
  --load       (qemu) FILE loaded raw at ADDR (-device loader,...,force-raw=on)
  --file       (qemu) FILE is put at /rig/NAME for --qemu-run
  --qemu-run   (qemu) instead of --guest: one more L1 QEMU run NAME with ARGS (words split
               on blanks, @SP@ in a word is a blank; /rig/NAME paths for --file FILES);
               runs go one after the other
  --l1-sh      (qemu) LINE, a busybox shell line, run by L1's /init between the --qemu-runs
               given before and after it (e.g. printing a file a run wrote)
  With --l1-vmm qemu, --exit-stamps stamps QEMU's output with KVM's exits from debugfs
  (rig-kvm-stamp), and each run's KVM exits (debugfs) are printed as `RIG: kvm NAME ...`.
U
    exit 2
}

IPA_LIMIT=48 SMP=1 TIMEOUT=900 LOG="" GUEST="" CMDLINE=""
VM_CPUS=1 VM_MEM=512 VM_IPA=40 STAMPS="" QUIET=0 CPU_STAMPS=0 L1_APPEND=
L1_VMM=rig DTB="" QEMU_CPU=host TRACE=${RIG_TRACE_EXITS:-0} TICK=0 TRACE_IRQS=${RIG_TRACE_IRQS:-0}
MODS=() EXPECT=() LOADS=() FILES=() QRUNS=()
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
        --l1-vmm) L1_VMM=$2; shift 2 ;;
        --dtb) DTB=$2; shift 2 ;;
        --qemu-cpu) QEMU_CPU=$2; shift 2 ;;
        --trace-exits) TRACE=1; shift ;;
        --trace-irqs) TRACE_IRQS=1; shift ;;
        --tick) TICK=$2; shift 2 ;;
        --load) LOADS+=("$2"); shift 2 ;;
        --file) FILES+=("$2"); shift 2 ;;
        --qemu-run) QRUNS+=("$2" "$3"); shift 3 ;;
        --l1-sh) QRUNS+=("@sh" "$2"); shift 2 ;;
        *) usage ;;
    esac
done
case $L1_VMM in
    rig) [ -n "$GUEST" ] || usage ;;
    qemu) [ -n "$GUEST" ] || [ ${#QRUNS[@]} -gt 0 ] || usage ;;
    *) echo "run.sh: --l1-vmm must be rig or qemu" >&2; exit 2 ;;
esac
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
# /rig/args: `run NAME PROGRAM ARGS...` lines for init.sh, each word single-quoted for the
# busybox shell.
q() { printf "'%s' " "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
specs=()
RUNS=()   # names of the runs init.sh makes
if [ "$L1_VMM" = rig ]; then
    args="--kernel /rig/guest --cpus $VM_CPUS --mem-mib $VM_MEM --ipa-bits $VM_IPA --timeout $TIMEOUT$STAMPS"
    specs+=("file:rig/guest=$GUEST:644" "file:rig/vmm=$VMM")
    n=0 i=0
    set_args=$(q run; q vmm; q /rig/vmm; for a in $args; do q "$a"; done)
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
    printf '%s\n' "$set_args" >"$ROOT/args"
    RUNS=(vmm)
else
    [ ${#MODS[@]} = 0 ] || { echo "run.sh: --module/--ramdisk are rig-VMM options; use --dtb and --load with --l1-vmm qemu" >&2; exit 2; }
    eval "$("$HERE/fetch-qemu-l1.sh")"   # QEMU_L1_SPECS, QEMU_L1_VERSION, QEMU_L1_BYTES
    echo "[rig] L1 VMM: qemu-system-aarch64 $QEMU_L1_VERSION ($((QEMU_L1_BYTES / 1048576)) MiB of files)" >&2
    mapfile -t qspecs <"$QEMU_L1_SPECS"
    specs+=("${qspecs[@]}" "file:rig/kvm-stamp=$(dirname "$VMM")/rig-kvm-stamp.stripped")
    # busybox timeout: SIGKILL after the run's time limit.
    QEMU_L1=(timeout -s KILL "$TIMEOUT" /usr/bin/qemu-system-aarch64)
    : >"$ROOT/args"
    [ -n "$STAMPS" ] && echo "RIG_STAMP=1" >>"$ROOT/args"
    if [ -n "$GUEST" ]; then
        specs+=("file:rig/guest=$GUEST:644")
        words=(-accel kvm -M virt,virtualization=on,gic-version=3 -cpu "$QEMU_CPU" -smp "$VM_CPUS"
               -m "${VM_MEM}M" -display none -serial stdio -monitor none -nic none -no-reboot
               -kernel /rig/guest)
        if [ -n "$DTB" ]; then
            specs+=("file:rig/dtb=$DTB:644"); words+=(-dtb /rig/dtb)
        fi
        [ -n "$CMDLINE" ] && words+=(-append "$CMDLINE")
        n=0
        for l in ${LOADS[@]+"${LOADS[@]}"}; do
            specs+=("file:rig/l$n=${l%@*}:644")
            words+=(-device "loader,file=/rig/l$n,addr=${l##*@},force-raw=on")
            n=$((n + 1))
        done
        { q run; q vmm; for w in "${QEMU_L1[@]}" "${words[@]}"; do q "$w"; done; echo; } >>"$ROOT/args"
        RUNS+=(vmm)
    fi
    for f in ${FILES[@]+"${FILES[@]}"}; do specs+=("file:rig/${f%%=*}=${f#*=}:644"); done
    i=0
    while [ $i -lt ${#QRUNS[@]} ]; do
        name=${QRUNS[$i]} qa=${QRUNS[$((i + 1))]}
        if [ "$name" = @sh ]; then
            printf '%s\n' "$qa" >>"$ROOT/args"
            i=$((i + 2))
            continue
        fi
        # shellcheck disable=SC2086 # ARGS is split on blanks by design
        { q run; q "$name"; for w in "${QEMU_L1[@]}" $qa; do q "${w//@SP@/ }"; done; echo; } >>"$ROOT/args"
        RUNS+=("$name")
        i=$((i + 2))
    done
fi
# Options for init.sh (either VMM): ftrace of kvm_exit, periodic exit counts.
{
    [ "$TRACE_IRQS" = 1 ] && TRACE=1
    [ "$TRACE" = 1 ] && echo "TRACE_EXITS=1"
    [ "$TRACE_IRQS" = 1 ] && echo "TRACE_IRQS=1"
    [ "$TICK" != 0 ] && echo "RIG_TICK=$TICK"
    cat "$ROOT/args"
} >"$ROOT/args.new"
mv "$ROOT/args.new" "$ROOT/args"
CPIO=$WORK/initramfs-$$.cpio
"$CARGO_TARGET_DIR/release/rig-cpio" "$CPIO" \
    dir:bin dir:dev dir:proc dir:sys dir:tmp dir:rig cdev:dev/console=5,1 \
    "file:bin/busybox=$BUSYBOX" sym:bin/sh=busybox "file:init=$HERE/init.sh" \
    "file:rig/args=$ROOT/args:644" "${specs[@]}"
rm -rf "$ROOT"
echo "[rig] initramfs $(( $(stat -c %s "$CPIO") / 1048576 )) MiB" >&2
stage "build initramfs" "$t"

t=$(now)
echo "[rig] L0 qemu -cpu $CPU -smp $SMP; log: $LOG" >&2
WRAP=()
[ $CPU_STAMPS = 1 ] && WRAP=("$CARGO_TARGET_DIR/release/rig-stamp" --)
set +e
${WRAP[@]+"${WRAP[@]}"} timeout --foreground "$((TIMEOUT + 60 + TRACE * 120))" qemu-system-aarch64 \
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
for r in "${RUNS[@]}"; do
    grep -q "RIG: vmm $r exit 0 " "$LOG" || { echo "[rig] VMM run $r did not exit 0" >&2; fail=1; }
done
for m in ${EXPECT[@]+"${EXPECT[@]}"}; do
    grep -qF -- "$m" "$LOG" || { echo "[rig] missing marker: $m" >&2; fail=1; }
done
[ $fail = 0 ] && echo "[rig] OK ($LOG)" >&2
exit $fail
