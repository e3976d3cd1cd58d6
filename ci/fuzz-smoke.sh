#!/usr/bin/env bash
# Fuzz smoke (issue 9): build hv/fuzz's cargo-fuzz targets and run each for
# FUZZ_SECONDS (default 30) from its committed corpus (hv/fuzz/corpus/<t>).
# New inputs and crashes go under hv/fuzz/target/smoke/, never into the
# committed corpus. Fails on the first crash, printing the reproducer.
# Usage: ci/fuzz-smoke.sh [TARGET...]   (default: every target)
# Long runs: see README ("Fuzzing").
set -uo pipefail
cd "$(dirname "$0")/../hv/fuzz"
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

secs="${FUZZ_SECONDS:-30}"
all=(hypercall vgic_mmio memops s1walk bootinfo options hostdt)
targets=("$@")
[ "$#" -gt 0 ] || targets=("${all[@]}")

# Nightly if installed, else the pinned toolchain with RUSTC_BOOTSTRAP=1.
tc=()
if rustup run nightly rustc --version >/dev/null 2>&1; then
    tc=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi
# -s none: no ASan (the code under test is safe Rust); -a: debug assertions
# and overflow checks on.
flags=(-s none -a)

t0=$SECONDS
# The root's `cargo fmt --all` does not see this crate (not a workspace member).
if ! cargo "${tc[@]}" fmt --check; then
    echo "fuzz-smoke: hv/fuzz is not formatted (cargo +nightly fmt in hv/fuzz)"
    exit 1
fi
mkdir -p target
if ! cargo "${tc[@]}" fuzz build "${flags[@]}" >target/smoke-build.log 2>&1; then
    # the compiler's errors, not cargo-fuzz's backtrace
    grep -E -A12 '^(error|warning)' target/smoke-build.log | head -n 60
    echo "fuzz-smoke: build failed (whole log: hv/fuzz/target/smoke-build.log)"
    exit 1
fi
tail -n 1 target/smoke-build.log
echo "fuzz-smoke: built in $((SECONDS - t0))s"

work=target/smoke
failed=0
for t in "${targets[@]}"; do
    rm -rf "$work/$t"
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts" "corpus/$t"
    s0=$SECONDS
    if cargo "${tc[@]}" fuzz run "${flags[@]}" "$t" "$work/$t/corpus" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/$t/artifacts/" >"$work/$t/log" 2>&1; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/log")"
        cov="$(grep -o 'cov: [0-9]* ft: [0-9]*' "$work/$t/log" | tail -n1)"
        echo "fuzz-smoke: $t: ok, ${runs:-?} executions, $cov ($((SECONDS - s0))s)"
    else
        failed=$((failed + 1))
        echo "fuzz-smoke: $t: FAILED ($((SECONDS - s0))s)"
        grep -E -A12 "panicked|ERROR: libFuzzer|SUMMARY" "$work/$t/log" | head -n 40
        for a in "$work/$t/artifacts"/*; do
            [ -e "$a" ] || continue
            echo "fuzz-smoke: reproducer $PWD/$a (cargo fuzz run ${flags[*]} $t $a)"
            cargo "${tc[@]}" fuzz fmt "${flags[@]}" "$t" "$a" 2>/dev/null | head -n 60
        done
    fi
done
echo "fuzz-smoke: ${#targets[@]} targets, $failed failed, $((SECONDS - t0))s"
[ "$failed" -eq 0 ]
