#!/usr/bin/env bash
# Killing hvrun must not leave its QEMU running: hvrun boots hv with a guest that spins forever
# (a 4 KiB arm64 Image whose first instruction is `b .`), and once hv has built the domain
# hvrun is sent SIGKILL, SIGTERM and SIGINT (one run each); no qemu-system-aarch64 of that run
# may remain a few seconds later. Prints one line per signal.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q -p tests-nested --bin hvrun || exit 1
HVRUN=$CARGO_TARGET_DIR/debug/hvrun
"$HVRUN" build >/dev/null 2>&1 || { echo "test-kill: hvrun build failed" >&2; exit 1; }
T=$(mktemp -d -t hv-test-kill.XXXXXX)
trap 'rm -rf "$T"' EXIT

# arm64 Image header (Documentation/arch/arm64/booting.rst): code0 = `b .` (0x14000000),
# text_offset 0x80000, image_size 4096, flags 0xa (LE, 4K pages), magic "ARM\x64" at 0x38.
le32() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $((($1 >> 8) & 255)))\\x$(printf %02x $((($1 >> 16) & 255)))\\x$(printf %02x $((($1 >> 24) & 255)))"; }
{
    le32 0x14000000; le32 0          # code0: b . ; code1
    le32 0x80000; le32 0             # text_offset
    le32 4096; le32 0                # image_size
    le32 0xa; le32 0                 # flags
    le32 0; le32 0; le32 0; le32 0; le32 0; le32 0  # res2..res4
    printf 'ARM\x64'; le32 0         # magic, res5
} >"$T/spin.bin"
truncate -s 4096 "$T/spin.bin"

qemus() { pgrep -f "qemu-system-aarch64 .*$T/spin.bin" || true; }

# Job control: background jobs keep the default SIGINT action (a non-interactive shell would
# start them with SIGINT ignored).
set -m
failed=0
for sig in KILL TERM INT; do
    "$HVRUN" demo --no-build --smp 1 --module "$T/spin.bin" --timeout 600 >"$T/$sig.out" 2>&1 &
    pid=$!
    up=0
    for _ in $(seq 1 600); do
        if grep -q '^hv: d0: ' "$T/$sig.out" && [ -n "$(qemus)" ]; then up=1; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ $up = 0 ]; then
        echo "test-kill: FAIL $sig: the spinning guest never started; hvrun said:"
        tail -n 20 "$T/$sig.out"
        kill -KILL "$pid" 2>/dev/null
        failed=$((failed + 1))
        continue
    fi
    q=$(qemus)
    kill -"$sig" "$pid"
    wait "$pid" 2>/dev/null
    left=""
    for _ in $(seq 1 50); do
        left=$(qemus)
        [ -z "$left" ] && break
        sleep 0.1
    done
    if [ -z "$left" ]; then
        echo "test-kill: PASS SIG$sig to hvrun: its QEMU (pid $q) is gone"
    else
        echo "test-kill: FAIL SIG$sig to hvrun: QEMU pid(s) $left still running; killing them"
        for p in $left; do kill -KILL "$p" 2>/dev/null; done
        failed=$((failed + 1))
    fi
done
echo "test-kill: $((3 - failed)) passed, $failed failed"
[ $failed = 0 ]
