#!/usr/bin/env bash
# hv's CI: every step runs (none is skipped), each is reported, and the last
# line is "ci: N passed, M failed". Exits non-zero when any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

passed=0
failed=0
results=()

step() {
    local name="$1"
    shift
    echo
    echo "==> ci: $name: $*"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        results+=("PASS $name ($((SECONDS - t0))s)")
        echo "<== ci: PASS $name ($((SECONDS - t0))s)"
    else
        failed=$((failed + 1))
        results+=("FAIL $name ($((SECONDS - t0))s)")
        echo "<== ci: FAIL $name ($((SECONDS - t0))s)"
    fi
}

echo "ci: $(cargo --version), $(qemu-system-aarch64 --version | head -n1), $(dtc --version | head -n1)"

# hv and every guest payload crate that is a workspace member
# (tests-nested/payloads/*) build for aarch64-unknown-none.
AARCH64_PKGS=(-p hv)
for manifest in tests-nested/payloads/*/Cargo.toml; do
    dir="${manifest%/Cargo.toml}"
    grep -q "\"$dir\"" Cargo.toml || continue
    name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n1)"
    [ -n "$name" ] && AARCH64_PKGS+=(-p "$name")
done
echo "ci: aarch64 crates: ${AARCH64_PKGS[*]}"

step fmt cargo fmt --all -- --check
step clippy-host cargo clippy --workspace --all-targets -- -D warnings
step clippy-aarch64 cargo clippy --target aarch64-unknown-none "${AARCH64_PKGS[@]}" -- -D warnings
step test-host cargo test --workspace
# hvrun build = cargo build --release --target aarch64-unknown-none -p hv
# -p guest-hello -p guest-fault, then llvm-objcopy to flat Images.
step build-aarch64 cargo run -q -p tests-nested --bin hvrun -- build
# The README's demo: no boot module, so hv runs the guest-hello embedded in its image.
step demo-embedded cargo run -q -p tests-nested --bin hvrun -- demo --no-build --smp 1 --timeout 120
step smoke-smp1 bash ci/qemu-smoke.sh 1 --no-build --timeout 180
step smoke-smp2 bash ci/qemu-smoke.sh 2 --no-build --timeout 180
# Two vCPUs of one domain on one pCPU under tlb=targeted and tlb=xen-compat
# (vCPU-switch TLB counts side by side; vGIC SGI/vtimer; PSCI CPU_ON), ~15 s.
step smp-switch bash ci/qemu-smp-switch.sh --no-build
# Issue 3: domU building by d0 under both TLB policies, asserted TLBI counts (~30 s).
step qemu-domu bash ci/qemu-domu.sh --timeout 600
# Issue 5: Debian's unmodified arm64 kernel as a dom0less domU (1 vCPU on -smp 1, 2 vCPUs on
# -smp 2): marker through the PV console ring, nproc, power-off (~20 s after the first fetch).
step qemu-linux bash ci/qemu-linux.sh all
# Issue 9 (findings 4, 11): more vCPUs than pCPUs, each booted and powered off 5 times (before,
# 2v-smp1 hung at power-off in 5 of 6 runs, 4v-smp2 lost a vCPU in 3 of 6): ~1 min each when idle.
step linux-2v-smp1 bash ci/qemu-linux.sh run 2v-smp1 1 2 1G 256 5
step linux-4v-smp2 bash ci/qemu-linux.sh run 4v-smp2 2 4 1G 256 5
# Two domUs of 2 vCPUs on -smp 2 (before: 2 of 5 runs stalled), once: ~40-80 s.
step linux-2dom-smp2 bash ci/qemu-linux.sh run 2dom-smp2 2 2 1G 256 1 2
# The nested rig (issue 4): hv at vEL2 under KVM, a domU build, bare QEMU's verdict (~1-2 min).
step rig-nested-smoke bash ci/rig-nested-smoke.sh

echo
for r in "${results[@]}"; do
    echo "ci:   $r"
done
echo "ci: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
