#!/usr/bin/env bash
# Two vCPUs of one domain on one pCPU (QEMU -smp 1): guest-smp (vcpus=2)
# CPU_ONs its second vCPU, the two take turns with SCHEDOP_yield, then use
# the vGIC (an SGI, virtual-timer PPI 27 while blocked in WFI). Run once under
# tlb=targeted and once under tlb=xen-compat; hv prints its TLB counters and
# scheduler counters at power-off. Asserts, for each run:
#   - guest-smp: all checks passed;
#   - targeted:   VMALLS12E1 = 0 (no stage-2 flush from vCPU switches) and
#                 VMALLE1 = IC_IALLU = same_vmid_switches > 0;
#   - xen-compat: VMALLS12E1 = same_vmid_switches > 0, VMALLE1 = 0;
# and prints the two side by side. Also runs the same guest on -smp 2.
# Usage: ci/qemu-smp-switch.sh [--no-build]  (~10 s after the build)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
out="$target/hvrun"
if [ "${1:-}" != "--no-build" ]; then
    cargo run -q -p tests-nested --bin hvrun -- build
fi
objcopy="$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy"
cargo build -q --release --target aarch64-unknown-none -p guest-smp
mkdir -p "$out"
"$objcopy" -O binary "$target/aarch64-unknown-none/release/guest-smp" "$out/guest-smp.bin"

run() { # <smp> <policy> -> serial output on stdout
    cargo run -q -p tests-nested --bin hvrun -- demo --no-build --smp "$1" \
        --module "$out/guest-smp.bin" --module-args "vcpus=2" \
        --bootargs "loglvl=info tlb=$2" \
        --expect "(d0) guest-smp: all checks passed" \
        --expect "hv: sched: *" --expect "hv: counters: *" --timeout 90
}
# field <name> <line>: the value of " name=<n>" in line
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$2"; }

fail=0
declare -A vm12 vme1 ic same sw
for policy in targeted xen-compat; do
    log="$(run 1 "$policy")" || { echo "$log" | tail -40; echo "FAIL: $policy run"; exit 1; }
    c="$(grep '^hv: counters:' <<<"$log")"
    s="$(grep '^hv: sched:' <<<"$log")"
    vm12[$policy]="$(field VMALLS12E1 "$c")"
    vme1[$policy]="$(field VMALLE1 "$c")"
    ic[$policy]="$(field IC_IALLU "$c")"
    same[$policy]="$(field same_vmid_switches "$s")"
    sw[$policy]="$(field switches "$s")"
done

printf '\n%-34s %10s %10s\n' "2 vCPUs of d0 on 1 pCPU" targeted xen-compat
for row in "vCPU switches (loads):sw" "same-VMID switches:same" \
           "TLBI VMALLS12E1 (stage-1+2, local):vm12" "TLBI VMALLE1 (stage-1, local):vme1" \
           "IC IALLU:ic"; do
    name="${row%%:*}"
    declare -n arr="${row##*:}"
    printf '%-34s %10s %10s\n' "$name" "${arr[targeted]}" "${arr[xen-compat]}"
done
echo

check() { if eval "$1"; then echo "ok: $2"; else echo "FAIL: $2"; fail=1; fi; }
check '[ "${same[targeted]}" -gt 0 ]' "targeted run switched between the domain's vCPUs (${same[targeted]})"
check '[ "${vm12[targeted]}" -eq 0 ]' "targeted: 0 stage-2 flushes (VMALLS12E1) from vCPU switches"
check '[ "${vme1[targeted]}" -eq "${same[targeted]}" ] && [ "${ic[targeted]}" -eq "${same[targeted]}" ]' \
    "targeted: one VMALLE1 + IC IALLU per same-VMID switch"
check '[ "${same[xen-compat]}" -gt 0 ] && [ "${vm12[xen-compat]}" -eq "${same[xen-compat]}" ]' \
    "xen-compat: one VMALLS12E1 per same-VMID switch (${vm12[xen-compat]})"
check '[ "${vme1[xen-compat]}" -eq 0 ]' "xen-compat: no VMALLE1"

log2="$(run 2 targeted)" && echo "ok: -smp 2 run passed" || { echo "$log2" | tail -30; echo "FAIL: -smp 2 run"; fail=1; }
exit "$fail"
