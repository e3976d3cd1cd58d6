#!/usr/bin/env bash
# hv's CI: every step runs (none is skipped), each is reported on one line (its output goes to
# <target>/ci-logs/<step>.log; a failing step's last lines are printed), and the last line is
# "ci: N passed, M failed". Exits non-zero when any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

passed=0
failed=0
results=()
# Each step's full output goes to $CI_LOGS/<step>.log; the terminal gets one line per step
# (plus download progress), and the failing step's last lines.
CI_LOGS="${CI_LOGS:-${CARGO_TARGET_DIR:-target}/ci-logs}"
mkdir -p "$CI_LOGS"
CI_LOGS="$(cd "$CI_LOGS" && pwd)"
TAIL_LINES="${CI_TAIL_LINES:-60}"

# Lines of a step's output shown live: downloads and their progress (tests-nested/rig/fetch-l1.sh
# prints "[fetch-l1] ..." lines and apt's "Get:N ... [size]" / "Fetched ..." lines; "[download] ..."
# is for any other script).
show_live() {
    local name="$1"
    while IFS= read -r l; do
        case "$l" in
            "[fetch-l1]"* | "[download]"* | "Get:"[0-9]* | "Fetched "*)
                printf 'ci:   %s: %s\n' "$name" "$l" ;;
        esac
    done
}

# step NAME CMD...: runs CMD with its output in $CI_LOGS/NAME.log; prints one line.
step() {
    local name="$1"
    shift
    local log="$CI_LOGS/$name.log"
    local t0=$SECONDS rc
    printf '# %s\n' "$*" >"$log"
    [ -t 1 ] && printf 'ci: ....  %s\r' "$name"
    "$@" </dev/null 2>&1 | tee -a "$log" | show_live "$name"
    rc=${PIPESTATUS[0]}
    local secs=$((SECONDS - t0))
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        results+=("PASS $name (${secs}s)")
        echo "ci: PASS  $name (${secs}s)"
    else
        failed=$((failed + 1))
        results+=("FAIL $name (${secs}s)")
        echo "ci: FAIL  $name (${secs}s, exit $rc): $*"
        echo "ci: ---- last $TAIL_LINES lines of $log ----"
        tail -n "$TAIL_LINES" "$log"
        echo "ci: ---- end of $name ----"
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
echo "ci: aarch64 crates: ${AARCH64_PKGS[*]}; step logs in $CI_LOGS"

# ci/setup.sh's decisions (what it installs when QEMU/dtc are missing or QEMU is too old), with
# stubs for apt-get, rustup and the tools; nothing is installed (~2 s).
step setup-logic bash ci/test-setup.sh
step fmt cargo fmt --all -- --check
step clippy-host cargo clippy --workspace --all-targets -- -D warnings
step clippy-aarch64 cargo clippy --target aarch64-unknown-none "${AARCH64_PKGS[@]}" -- -D warnings
step test-host cargo test --workspace
# Issue 9: hv/fuzz's cargo-fuzz targets (hypercall entry, vGIC MMIO, memops,
# stage-1 walker, host DTB, boot args), ~30 s each after the build (~4-5 min).
step fuzz-smoke bash ci/fuzz-smoke.sh
# hvrun build = cargo build --release --target aarch64-unknown-none -p hv
# -p guest-hello -p guest-fault, then llvm-objcopy to flat Images.
step build-aarch64 cargo run -q -p tests-nested --bin hvrun -- build
# Killing hvrun (SIGKILL, SIGTERM, SIGINT) during a run leaves no QEMU behind (~15 s).
step kill-hvrun bash ci/test-kill.sh
# The README's demo: no boot module, so hv runs the guest-hello embedded in its image.
step demo-embedded cargo run -q -p tests-nested --bin hvrun -- demo --no-build --smp 1 --timeout 120
# The demo from three 2 MiB-aligned load addresses (-device loader + an EL2 stub),
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
# domU building by d0 under both TLB policies, asserted TLBI counts (~30 s).
step qemu-domu bash ci/qemu-domu.sh --timeout 600
# Debian's unmodified arm64 kernel as a dom0less domU (1 vCPU on -smp 1, 2 vCPUs on
# -smp 2): marker through the PV console ring, nproc, power-off (~20 s after the first fetch).
step qemu-linux bash ci/qemu-linux.sh all
# Issue 9 (findings 4, 11): more vCPUs than pCPUs, each booted and powered off 5 times (before,
# 2v-smp1 hung at power-off in 5 of 6 runs, 4v-smp2 lost a vCPU in 3 of 6): ~1 min each when idle.
step linux-2v-smp1 bash ci/qemu-linux.sh run 2v-smp1 1 2 1G 256 5
step linux-4v-smp2 bash ci/qemu-linux.sh run 4v-smp2 2 4 1G 256 5
# Two domUs of 2 vCPUs on -smp 2 (before: 2 of 5 runs stalled), once: ~40-80 s.
step linux-2dom-smp2 bash ci/qemu-linux.sh run 2dom-smp2 2 2 1G 256 1 2
# Debian's kernel with 16 vCPUs on -smp 16 (nproc = 16; ~60 s).
step smp16-linux bash ci/qemu-linux.sh run smp16 16 16 1G 256
# The same kernel through the runner a user is told to use: `hvrun linux` with 2 vCPUs, 512 MiB.
step hvrun-linux cargo run -q -p tests-nested --bin hvrun -- linux --no-build --smp 2 --vcpus 2 --mem 512M
# The hostile guest next to a responder that must stay alive, and
# 100 create/destroy rounds that must give back every frame, VMID, event
# channel and heap byte (~20 s).
step hostile bash ci/qemu-hostile.sh
# hv's serial input (issue 11): a command typed into hv's UART reaches a Linux domU's shell
# through its console ring and the answer comes back; CTRL-a x3 switches to hv, whose debug keys
# print counters, domains, run queues and the nesting verdict; back to the domU, power-off (~10 s).
step console bash ci/qemu-console.sh
# a 2 GiB Linux domU on -m 4G boots to its marker (hv's heap grows with RAM)
# (~45 s); a domU larger than what is free is refused cleanly while another one runs (~15 s).
step linux-2g bash ci/qemu-linux.sh run 2g 2 1 4G 2048
step linux-toobig bash ci/qemu-linux.sh toobig
# The Xen peer (issues 11-13): Debian's Xen 4.20 boots the project's dom0 image (Debian's kernel +
# xen-utils-4.20) to `xl list` showing Domain-0, reads the virtio-blk disk, answers on its console,
# reports a dom0 panic (~1 min of QEMU, ~2 min with the image build).
# The dom0 runners' checks (tests-nested/xen/lib.sh, xl.sh) against recorded logs, no QEMU (~1 s).
step dom0-checks bash tests-nested/xen/selftest.sh
step xl-checks bash tests-nested/xen/xl-selftest.sh
step xen-peer bash ci/xen-peer.sh
# Issue 11: hv boots the same dom0 image from the same DTB (Xen's boot binding): every marker,
# the virtio-blk disk, xl info/list/dmesg, console input and Ctrl-A x3, poweroff, dom0 panic.
step dom0 bash ci/qemu-dom0.sh
# Issue 12: from that dom0, Xen's `xl` creates a 128 MB Linux domU (its /init marker through `xl
# console`'s daemon), shuts it down, creates + destroys another, then 20 create/destroy rounds
# with free memory and VMIDs back (~2 min of QEMU, +1 min for the image with the domU).
step xl bash ci/qemu-xl.sh
# Issue 13: PV disk (blkback/blkfront on a loop-backed ext4 image) and network (netback/netfront
# over a bridge, GNTTABOP_copy), destroy with I/O in flight + e2fsck, on hv.
step pv-checks bash tests-nested/xen/pv-selftest.sh
step pv bash ci/qemu-pv.sh
# The nested rig: hv at vEL2 under KVM, a domU build, bare QEMU's verdict (~1-2 min).
step rig-nested-smoke bash ci/rig-nested-smoke.sh

# A newcomer's machine: README's first command, then the Linux guest, in a minimal Debian 12
# root (debootstrap minbase + build-essential curl git xz-utils ca-certificates llvm, the
# host's rustup), from a clone of this commit. The base root is cached in
# /var/cache/hv-fresh-machine (~1.3 GB); ~2 min with the cache, +1 min without.
step fresh-machine bash ci/fresh-machine.sh --linux

echo "ci: step logs: $CI_LOGS"
echo "ci: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
