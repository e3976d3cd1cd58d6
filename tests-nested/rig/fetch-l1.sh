#!/usr/bin/env bash
# Fetch the L1 pieces of the nested rig: Debian's arm64 kernel Image (trixie-backports) and
# busybox-static (trixie), by package name, with apt pointed at a private state dir.
# Versions are pinned and the .deb files SHA-256 checked; everything is cached under $RIG_CACHE.
# Prints the paths on stdout as KEY=VALUE lines (L1_IMAGE=..., BUSYBOX=...).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RIG_CACHE=${RIG_CACHE:-$REPO/.cache/rig}
KEYRING=${RIG_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
MIRROR=${RIG_MIRROR:-http://deb.debian.org/debian}

# Pinned packages: name, version, SHA-256 of the .deb.
KERNEL_ABI=7.2.12+deb13
KERNEL_PKG=linux-binary-${KERNEL_ABI}-arm64
KERNEL_VER=7.2.12-1~bpo13+1
KERNEL_SHA256=b9e64257d4b67166f4bf053813b24e0cb3bb0bf3d0a3a1509dc09015e00b5daa
BUSYBOX_PKG=busybox-static
BUSYBOX_VER=1:1.37.0-6+b9
BUSYBOX_SHA256=c833be48abfa16bc19c4966ec93e289ff1ce5d2f1476cad3a57bd105378cd15c

log() { echo "[fetch-l1] $*" >&2; }

DEBS=$RIG_CACHE/debs
mkdir -p "$DEBS"
# shellcheck source=apt-private.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-private.sh"

# fetch NAME VERSION SHA256 -> prints the path of the verified .deb
fetch() {
    local name=$1 ver=$2 sha=$3 file
    file=$DEBS/${name}_${ver#*:}_arm64.deb
    if [ -f "$file" ] && [ "$(sha_of "$file")" = "$sha" ]; then
        echo "$file"; return
    fi
    apt_update
    download "$name=$ver" "$file"
    local have; have=$(sha_of "$file")
    if [ "$have" != "$sha" ]; then
        log "SHA-256 mismatch for $name $ver: expected $sha, got $have"
        rm -f "$file"; exit 1
    fi
    echo "$file"
}

kernel_deb=""
kfile=$DEBS/${KERNEL_PKG}_${KERNEL_VER}_arm64.deb
if [ -f "$kfile" ] && [ "$(sha_of "$kfile")" = "$KERNEL_SHA256" ]; then
    kernel_deb=$kfile
else
    apt_update
    if "${CACHE[@]}" show "$KERNEL_PKG=$KERNEL_VER" 2>/dev/null | grep '^Package:' >/dev/null; then
        kernel_deb=$(fetch "$KERNEL_PKG" "$KERNEL_VER" "$KERNEL_SHA256")
    else
        # Backports keep only the newest version: take the newest linux-binary-7.*-arm64 there.
        newest=$("${CACHE[@]}" search --names-only '^linux-binary-7\.[0-9.]+\+deb13-arm64$' \
                 | cut -d' ' -f1 | sort -V | tail -1)
        [ -n "$newest" ] || { log "no linux-binary-7.x-arm64 in trixie-backports"; exit 1; }
        nver=$("${CACHE[@]}" policy "$newest" | awk '/Candidate:/ {print $2}')
        log "pinned $KERNEL_PKG $KERNEL_VER has left the mirror; using $newest $nver (unpinned)"
        kernel_deb=$DEBS/${newest}_${nver}_arm64.deb
        [ -f "$kernel_deb" ] || download "$newest=$nver" "$kernel_deb"
        log "SHA-256 of $(basename "$kernel_deb"): $(sha_of "$kernel_deb")"
    fi
fi
busybox_deb=$(fetch "$BUSYBOX_PKG" "$BUSYBOX_VER" "$BUSYBOX_SHA256")

# Unpack (once per .deb).
unpack() {
    local deb=$1 dir=$RIG_CACHE/x/$(basename "$1" .deb)
    if [ ! -f "$dir/.done" ]; then
        rm -rf "$dir"; mkdir -p "$dir"; dpkg-deb -x "$deb" "$dir"; touch "$dir/.done"
    fi
    echo "$dir"
}
kdir=$(unpack "$kernel_deb")
bdir=$(unpack "$busybox_deb")
# The package ships the (uncompressed arm64 Image) as usr/lib/modules/<abi>/vmlinuz.
image=$(ls "$kdir"/usr/lib/modules/*/vmlinuz "$kdir"/boot/vmlinuz-* 2>/dev/null | head -1 || true)
[ -n "$image" ] || { log "no vmlinuz in $kernel_deb"; exit 1; }
echo "L1_IMAGE=$image"
echo "BUSYBOX=$bdir/usr/bin/busybox"
echo "KERNEL_DEB=$kernel_deb"
