#!/usr/bin/env bash
# hv in the nested rig: L0 QEMU TCG -> L1 Debian arm64 KVM (kvm-arm.mode=nested, IPA limit 48)
# -> rig VMM -> hv at vEL2 (E2H = 1) with guest-hello as d1 (an L2 guest).
# Usage: ci/rig-hv-smoke.sh [SMP]   (SMP = L0 CPUs = VMM vCPUs = hv CPUs, default 1)
# Checks hv's boot, CPU and domain markers; checks the nested verdict once hv prints
# nested-detect's verdict (it is skipped, and said so, while hv does not).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMP=${1:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
now() { date +%s.%N; }
stage() { awk -v a="$2" -v b="$(now)" -v s="$1" 'BEGIN { printf "[rig-hv-smoke] %-30s %7.1f s\n", s, b - a }' >&2; }
T0=$(now)
OUT=$REPO/build/rig
mkdir -p "$OUT"
"$REPO/tests-nested/rig/ensure-qemu.sh"

t=$(now)
(cd "$REPO" && cargo run -q -p tests-nested --bin hvrun -- build >&2)
H=$CARGO_TARGET_DIR/hvrun
stage "build hv + payloads" "$t"

expect=(--expect 'hv: hv ' --expect 'booting at EL2 (VHE)'
        --expect '(d1) guest-hello: all checks passed'
        --expect 'hv: all domains ended, powering off'
        --expect 'VMM: vCPU' --expect 'PSCI SYSTEM_OFF')
for c in $(seq 0 $((SMP - 1))); do expect+=(--expect "hv: CPU$c online"); done
if grep -qa 'nested under KVM' "$H/hv.bin"; then
    expect+=(--expect 'nested under KVM')
else
    echo "[rig-hv-smoke] hv does not print nested-detect's verdict yet: verdict check skipped" >&2
fi

t=$(now)
"$REPO/tests-nested/rig/run.sh" --guest "$H/hv.bin" --module "$H/guest-hello.bin" \
    --cmdline "loglvl=info" --ipa-limit 48 --smp "$SMP" --vm-cpus "$SMP" --timeout 400 \
    --log "$OUT/rig-hv-smp$SMP.log" "${expect[@]}" >/dev/null
stage "hv in the rig (smp $SMP)" "$t"
grep -E 'VMM: vCPU[0-9] KVM stats' "$OUT/rig-hv-smp$SMP.log" | sed 's/^/[rig-hv-smoke] /' >&2
stage "total" "$T0"
echo "[rig-hv-smoke] OK" >&2
