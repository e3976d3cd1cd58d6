#!/usr/bin/env bash
# Issue 3 acceptance under QEMU (bare, -smp 2): hv boots dom0-builder as d0 with
# an images blob; d0 builds the small (guest-hello, booted) and the realistic
# (Debian's arm64 Image via tests-nested/rig/fetch-l1.sh + a 1 MiB initrd, into
# 128 MiB) domU with single and batched removes, under tlb=targeted and
# tlb=xen-compat; runs the negative tests, 100 create/destroy rounds, the heap
# exhaustion (-ENOMEM, never a panic) and the stale-TLB reads. hvrun asserts the TLBI counts and prints a table of them.
# Four QEMU runs, ~21 s of QEMU on a loaded 2-core machine (~15 s idle).
# Usage: ci/qemu-domu.sh [hvrun domu options, e.g. --only small --no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
exec cargo run -q -p tests-nested --bin hvrun -- domu "$@"
