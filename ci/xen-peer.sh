#!/usr/bin/env bash
# The Xen peer: Debian's Xen 4.20 (xen-hypervisor-4.20-arm64, pinned) on bare QEMU TCG boots the
# project's dom0 image (Debian's 7.2 kernel + xen-utils-4.20 in an initramfs); dom0 loads the
# xen modules, mounts xenfs, starts xenstored, xen-init-dom0 and xenconsoled, runs `xl info`
# and `xl list` (Domain-0 must be listed) and powers off; QEMU must exit 0.
# Prints the boot-time figures (to dom0's /init, to `xl list` done). ~35 s of QEMU after the
# first fetch (~90 MB of .debs). Env as tests-nested/xen/run-peer.sh (SMP, MEM, DOM0_MEM, TRACE).
set -euo pipefail
cd "$(dirname "$0")/.."
exec tests-nested/xen/run-peer.sh "$@"
