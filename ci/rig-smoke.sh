#!/usr/bin/env bash
# Nested-rig smoke test: the EL2 probe payload on bare QEMU and in the rig at L1 IPA limit 48
# (QEMU TCG -> Debian arm64 kernel with kvm-arm.mode=nested -> rig VMM -> payload at vEL2).
# Checks the markers and prints how long each stage took. Idempotent: downloads and builds
# are cached (<repo>/.cache/rig, the cargo target dir).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RIG=$REPO/tests-nested/rig
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
now() { date +%s.%N; }
T0=$(now)
stage() { awk -v a="$2" -v b="$(now)" -v s="$1" 'BEGIN { printf "[rig-smoke] %-32s %7.1f s\n", s, b - a }' >&2; }
OUT=$REPO/build/rig
mkdir -p "$OUT"

t=$(now); "$RIG/ensure-qemu.sh"; stage "qemu present" "$t"
t=$(now); "$RIG/build-payload.sh" "$OUT/probe.bin"; stage "build probe payload" "$t"

t=$(now)
"$RIG/probe-bare.sh" max "$OUT/smoke-bare.log" >/dev/null
for m in 'PROBE: start CurrentEL=2' 'PROBE: SMC 0x8600ff01 x0=0xffffffff' 'PROBE: SYSTEM_OFF'; do
    grep -qF -- "$m" "$OUT/smoke-bare.log" || { echo "[rig-smoke] bare: missing '$m'" >&2; exit 1; }
done
stage "bare QEMU probe" "$t"

t=$(now)
"$RIG/run.sh" --guest "$OUT/probe.bin" --ipa-limit 48 --smp 1 --timeout 300 \
    --log "$OUT/smoke-rig48.log" \
    --expect 'VHE+NV2 mode initialized successfully' \
    --expect 'IPA Size Limit: 48 bits' \
    --expect 'VMM: vCPU0 PSTATE 0x3c9 (EL2)' \
    --expect 'PROBE: start CurrentEL=2 HCR_EL2.E2H=1' \
    --expect 'PROBE: SMC 0x8600ff01 x0=0xb66fb428 x1=0xe911c52e x2=0x564bcaa9 x3=0x743a004d' \
    --expect 'PROBE: exits around 256 ID reg reads: ' \
    --expect 'PROBE: SYSTEM_OFF' \
    --expect 'VMM: vCPU0: PSCI SYSTEM_OFF' \
    --expect 'VMM: vCPU0 KVM stats: exits=' >/dev/null
stage "nested rig probe (IPA limit 48)" "$t"

t=$(now)
"$RIG/run.sh" --guest "$OUT/probe.bin" --ipa-limit 48 --smp 2 --vm-cpus 2 --timeout 300 \
    --log "$OUT/smoke-rig48-smp2.log" \
    --expect 'PROBE: cpu1 up CurrentEL=2' \
    --expect 'PROBE: CPU_ON(1) -> 0, cpu1 seen=1' \
    --expect 'VMM: vCPU0: PSCI SYSTEM_OFF' >/dev/null
stage "nested rig, 2 CPUs, 2 vCPUs" "$t"
grep -E 'PROBE: (SMC|timing)' "$OUT/smoke-bare.log" | sed 's/^/[rig-smoke] bare: /' >&2
grep -E 'PROBE: (SMC|timing|exits)|KVM stats' "$OUT/smoke-rig48.log" | sed 's/^.*PROBE/[rig-smoke] rig:  PROBE/' >&2
stage "total" "$T0"
echo "[rig-smoke] OK" >&2
