#!/usr/bin/env bash
# Makes sure qemu-system-aarch64 >= 9 is installed (the rig needs TCG's FEAT_NV2 with
# virtualization=on). On Debian bookworm it comes from bookworm-backports:
#   apt-get install -t bookworm-backports qemu-system-arm
# Installs it that way when missing and we are root on Debian; otherwise says what to do.
set -euo pipefail
ver() { qemu-system-aarch64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p'; }
v=$(ver || true)
if [ -n "$v" ] && [ "$v" -ge 9 ]; then exit 0; fi
echo "[rig] qemu-system-aarch64 ${v:-missing} (need >= 9)" >&2
if [ "$(id -u)" = 0 ] && [ -r /etc/debian_version ] && command -v apt-get >/dev/null; then
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [ "$codename" = bookworm ]; then
        if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            echo "deb http://deb.debian.org/debian bookworm-backports main" \
                >/etc/apt/sources.list.d/bookworm-backports.list
        fi
        apt-get update -q >&2
        apt-get install -y -q -t bookworm-backports qemu-system-arm >&2
    else
        apt-get update -q >&2
        apt-get install -y -q qemu-system-arm >&2
    fi
    v=$(ver || true)
    [ -n "$v" ] && [ "$v" -ge 9 ] && exit 0
fi
echo "[rig] install qemu-system-arm >= 9 (Debian bookworm: apt-get install -t bookworm-backports qemu-system-arm)" >&2
exit 1
