#!/usr/bin/env bash
# Issue 9, deliverable 5, under bare QEMU (-smp 2):
# 1. `hvrun hostile`: guest-hostile as d1 (named negative tests of every
#    hypercall 0..=64, event channels, grant table, vcpu_op, multicall,
#    memory_op, PSCI, trapped registers, the vGIC at odd offsets/widths, then
#    2000 random calls from seed 1, each printed before it is made) next to
#    guest-responder as d2, which must keep answering until d1 is gone; hv must
#    not panic and must power off.
# 2. `hvrun soak --rounds 100`: dom0-builder creates and destroys 100 domUs
#    (with an event channel each); free frames, VMIDs, domains, event channels
#    and hv's heap must be back at their start values (the README runs 1000).
# Usage: ci/qemu-hostile.sh [hvrun hostile options, e.g. --seed 7 --calls 5000]
set -uo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
rc=0
cargo run -q -p tests-nested --bin hvrun -- hostile "$@" || rc=1
cargo run -q -p tests-nested --bin hvrun -- soak --rounds 100 --timeout 600 || rc=1
exit "$rc"
