#!/usr/bin/env bash
# Nested smoke test (issue 4), run by ci/test.sh:
#   1. the rig (L0 QEMU TCG -cpu max,lpa2=off -> L1 Debian arm64 KVM, kvm-arm.mode=nested,
#      IPA limit 48 -> rig VMM -> hv at vEL2): hv prints "platform: nested under KVM (...)"
#      and its evidence, tlb=auto picks Targeted { nested: true }, the control domain
#      (dom0-builder as d0, images blob as its ramdisk) builds a 16 MiB domU with
#      remove_from_physmap_batch (no full stage-2 flush), the domU (guest-hello) runs, all
#      power off;
#   2. hv directly on QEMU: "platform: bare metal (...)", the same build and domU;
#   3. the rig again with 2 L0 CPUs, 2 vCPUs, 2 hv CPUs.
# Builds hv and the payloads and fetches the L1 kernel (cached in .cache/rig) first.
# About 1 minute once things are built and cached. Logs: $CARGO_TARGET_DIR/hvmatrix/smoke/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
t0=$SECONDS
tests-nested/rig/ensure-qemu.sh
cargo run -q -p tests-nested --bin hvmatrix -- smoke
echo "[rig-nested-smoke] OK in $((SECONDS - t0)) s" >&2
