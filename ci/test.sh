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
# Issue 15: the demo from three 2 MiB-aligned load addresses (-device loader + an EL2 stub),
# the Image header's image_size/flags (~3 s); the console from dtuart= / stdout-path (~2 s);
# the demo on -smp 16 and -smp 32 ("N CPUs online", ~5 s and ~12 s).
step boot-addresses bash ci/qemu-boot.sh addresses --no-build
step boot-console bash ci/qemu-boot.sh console --no-build
step smp16 bash ci/qemu-boot.sh smp 16 --no-build
step smp32 bash ci/qemu-boot.sh smp 32 --no-build
# Issue 15: Debian's edk2 + GRUB (pinned .debs, first run fetches ~6 MB): GRUB's xen_hypervisor /
# xen_module boots hv with the demo guest; hv as BOOTAA64.EFI; ACPI-only firmware refused (~30 s).
step uefi-grub bash ci/qemu-boot.sh uefi --no-build
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
# Issue 15: Debian's kernel with 16 vCPUs on -smp 16 (nproc = 16; ~60 s).
step smp16-linux bash ci/qemu-linux.sh run smp16 16 16 1G 256
# The nested rig (issue 4): hv at vEL2 under KVM, a domU build, bare QEMU's verdict (~1-2 min).
step rig-nested-smoke bash ci/rig-nested-smoke.sh

echo
for r in "${results[@]}"; do
    echo "ci:   $r"
done
echo "ci: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
