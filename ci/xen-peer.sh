#!/usr/bin/env bash
# The Xen peer: Debian's Xen 4.20 (xen-hypervisor-4.20-arm64, pinned) on bare QEMU TCG boots the
# project's dom0 image (Debian's 7.2 kernel + xen-utils-4.20 in an initramfs); dom0 loads the
# xen modules, mounts ext4 from a virtio-blk disk (virtio-mmio) and reads the test's token,
# mounts xenfs, starts xenstored, xen-init-dom0 and xenconsoled, runs `xl info`, `xl list`
# (Domain-0 must be listed) and `xl dmesg` (Xen's banner) and powers off; QEMU must exit 0.
# Then the console test (a shell on dom0's console through a unix socket: typed command
# answered; 3x Ctrl-A to Xen, 'h' debug key; back to dom0; poweroff) and the panic test (dom0's
# kernel crashes, Xen reports it and the run ends with QEMU exit 0).
# Prints the boot-time figures (to dom0's /init, to `xl list` done). ~11 + 25 + 15 s of QEMU
# after the first fetch (~90 MB of .debs). Usage: ci/xen-peer.sh [check|console|panic|all]
# (default all). Env as tests-nested/xen/run-peer.sh (SMP, MEM, DOM0_MEM, TIMEOUT, TRACE).
set -euo pipefail
cd "$(dirname "$0")/.."
exec tests-nested/xen/run-peer.sh "${@:-all}"
