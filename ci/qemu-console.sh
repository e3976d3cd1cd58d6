#!/usr/bin/env bash
# hv's serial console input on bare QEMU (TCG, EL2), issue 11 item 4: Debian's arm64 kernel as a
# dom0less domU whose /init runs a shell on hvc0 (tests-nested/linux/init.sh, `hv.shell`).
# QEMU's serial is this script's pipe (`-serial stdio`, no monitor mux, so CTRL-a reaches hv).
# The script types into hv's UART and checks, in order:
#   1. hv announces the first focus: `hv: *** Serial input to DOM1 (type 'CTRL-a' three times ...)`
#   2. a command typed reaches the domU's shell (through its console ring's in[]) and the answer
#      comes back: `echo hello-<random>` -> `(d1) hello-<random>`
#   3. CTRL-a x3 -> `hv: *** Serial input to hv`; debug keys `h`, `p` (counters: TLBIs by kind,
#      p2m ops, exits, hypercalls), `q` (domains), `r` (run queues), `v` (nesting verdict, TLB
#      policy) print their lines
#   4. CTRL-a x3 -> back to DOM1; `poweroff -f` ends the domU, hv powers off, QEMU exits 0.
# Usage: ci/qemu-console.sh   (env: TIMEOUT=secs, default 300; SMP (default 2); QEMU; HV_ARGS)
set -euo pipefail
# shellcheck source=ci/lib-linux.sh
source "$(dirname "$0")/lib-linux.sh"
linux_setup console
TIMEOUT=${TIMEOUT:-300}
SMP=${SMP:-2}
LOG=$WORK/console.log

# The initramfs is built into the target dir (.cache may be shared read-only).
export LINUX_OUT=$WORK/linux
linux_build qemu-console
ARGS="console=hvc0 earlycon=xenboot rdinit=/init panic=-1 loglevel=4 hv.shell"
M=(-M virt,virtualization=on,gic-version=3 -cpu max -smp "$SMP" -m 1G -nic none)
dom0less_dtb console 1 0x40000 1 "${M[@]}"

T0=$(now)
DEADLINE=$((T0 + TIMEOUT))
: >"$LOG"
coproc QEMU_PROC { exec timeout --foreground "$TIMEOUT" "$QEMU" "${M[@]}" -display none \
    -monitor none -serial stdio -no-reboot -kernel "$WORK/hv.bin" -dtb "$WORK/console.dtb" \
    -device "loader,file=$LINUX_IMAGE,addr=$KADDR,force-raw=on" \
    -device "loader,file=$LINUX_INITRD,addr=$RADDR,force-raw=on" 2>&1; }
QPID=$QEMU_PROC_PID
exec {QIN}>&"${QEMU_PROC[1]}" {QOUT}<&"${QEMU_PROC[0]}"

fail() {
    echo "[qemu-console] FAIL after $(( $(now) - T0 )) s: $*; last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    kill "$QPID" 2>/dev/null || true
    exit 1
}

# wait_for REGEX: read serial lines (into the log) until one matches (extended regex).
wait_for() {
    local line left
    while :; do
        left=$((DEADLINE - $(now)))
        [ "$left" -gt 0 ] || fail "timed out waiting for /$1/"
        if ! IFS= read -r -t "$left" line <&"$QOUT"; then
            fail "QEMU ended while waiting for /$1/"
        fi
        line=${line%$'\r'}
        printf '%s\n' "$line" >>"$LOG"
        grep -q '^hv: ERROR' <<<"$line" && fail "hv logged an error: $line"
        grep -Eq -- "$1" <<<"$line" && return 0
    done
}

# type STR: send bytes to hv's UART, a few at a time (a person types slowly too).
type_in() {
    local s=$1 i
    for ((i = 0; i < ${#s}; i += 8)); do
        printf '%s' "${s:i:8}" >&"$QIN"
        sleep 0.05
    done
}

CTRL_A=$'\x01'
SW="\\(type 'CTRL-a' three times to switch input\\)"
wait_for "^hv: \\*\\*\\* Serial input to DOM1 $SW\$"
wait_for '^\(d1\) HV-LINUX-SHELL ready'
sleep 1
WORD="hello-$RANDOM$RANDOM"
type_in "echo $WORD"$'\r'
wait_for "^\\(d1\\) $WORD\$"
echo "[qemu-console] the domU's shell answered '$WORD'" >&2
type_in "$CTRL_A$CTRL_A$CTRL_A"
wait_for "^hv: \\*\\*\\* Serial input to hv $SW\$"
type_in h
wait_for "^hv: 'h' pressed -> showing installed handlers"
wait_for "^hv:  key '\\*'"
type_in p
wait_for "^hv:  tlbi: IPAS2E1IS=[0-9]+ RIPAS2E1IS=[0-9]+ VMALLE1IS=[0-9]+"
wait_for '^hv:  p2m_ops=[0-9]+ plans=[0-9]+ guest_exits=[1-9][0-9]* hypercalls=[1-9][0-9]*'
type_in q
wait_for '^hv:  d1: RAM 256 MiB \(65536 pages\), vCPUs 1 \(1 live\), running, console ring yes'
type_in r
wait_for '^hv:  d1v0: '
type_in v
wait_for '^hv:  tlb policy: '
type_in "$CTRL_A$CTRL_A$CTRL_A"
wait_for "^hv: \\*\\*\\* Serial input to DOM1 $SW\$"
type_in $'poweroff -f\r'
wait_for '^hv: all domains ended, powering off'
exec {QIN}>&-
set +e
wait "$QPID"
rc=$?
set -e
# The rest of the output.
cat <&"$QOUT" >>"$LOG" 2>/dev/null || true
[ "$rc" = 0 ] || fail "QEMU exit status $rc (124 = timeout)"
echo "[qemu-console] PASS in $(( $(now) - T0 )) s; log: $LOG" >&2
grep -E "Serial input to|^\(d1\) (echo )?hello-|^hv:  (tlbi|p2m_ops|d1:|d1v0|tlb policy|platform|console:)|'[a-z]' pressed|ended|all domains" "$LOG" >&2
