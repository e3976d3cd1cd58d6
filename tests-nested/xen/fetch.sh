#!/usr/bin/env bash
# Fetch the pieces of the Xen peer and of the dom0 image from Debian (arm64), by package name,
# with apt pointed at a private state dir (as tests-nested/rig/fetch-l1.sh does; that script
# also supplies the pinned kernel Image and busybox-static, which are reused here).
# Every package is pinned (version + SHA-256 of the .deb); when a pin has left the mirror, the
# current candidate is fetched instead and its new version and SHA-256 are printed, so the pin
# can be updated. Everything is cached under $XEN_CACHE (default .cache/xen).
# Prints KEY=VALUE lines on stdout:
#   XEN_IMAGE   Xen's arm64 Image (boot/xen-4.20-arm64; QEMU -kernel enters it at EL2)
#   XEN_ROOT    the unpacked tree of every user-space package (xen-utils, libraries)
#   XEN_MODULES the unpacked modules dir (usr/lib/modules/<abi>) of linux-modules
#   DOM0_KERNEL Debian's kernel Image (uncompressed arm64 Image, from fetch-l1.sh)
#   BUSYBOX     busybox-static (from fetch-l1.sh)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
XEN_CACHE=${XEN_CACHE:-$REPO/.cache/xen}
KEYRING=${RIG_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
MIRROR=${RIG_MIRROR:-http://deb.debian.org/debian}
SECURITY=${XEN_SECURITY_MIRROR:-http://security.debian.org/debian-security}

# Pinned packages: name version sha256. Xen 4.20 is in trixie (and trixie-security); the
# kernel's modules come from trixie-backports, matching fetch-l1.sh's kernel ABI.
# Issue 13 (PV disk and network): Xen's hotplug scripts (/etc/xen/scripts/block, vif-bridge,
# from xen-utils-common) are bash scripts (arrays, `for ((..))`, `trap ERR` in locking.sh and
# xen-hotplug-common.sh) that take their lock with flock(1), which busybox-static lacks: bash
# and util-linux (only /usr/bin/flock is used). e2fsprogs (+ libblkid1): mke2fs -t ext4 and
# e2fsck in dom0 (busybox's mke2fs makes ext2 only and it has no fsck for ext4).
XV=4.20.4+63-g7abfd2bce2-0+deb13u1
PINS="
xen-hypervisor-4.20-arm64 $XV b8b63ed4e100c92eab55f34ac05f03874ab9e84ce3e559cad9c25f338a0a2657
xen-utils-4.20            $XV 27cec10de61fa85a4816a83556ce17f98b9d749409ff260d5281ae0a86d05df4
xen-utils-common          $XV 5719236672a70ca985f36a6b3abe63d24ee2afcd0b567be9090d8f9a3323b0e3
xenstore-utils            $XV d34cae345f91b6e708e7f0c2fb82aa6a695b785b3c0c021665cece68fdf2bdc9
libxenmisc4.20            $XV 0210f704762f70408420191458ee6814f284ca911b1df451bd1dbfffcae10390
libxencall1               $XV 670fa752c0c3e6ea06494f51d81b4c185cd7cdad86235778de16fcfb5c808389
libxenevtchn1             $XV a5a239fd92d753af2d3af7866a8c7bc5c223b566b629b5c6a9803ee2bca118bd
libxenforeignmemory1      $XV defa76caf9d825cda6746376290fdc6c685c2a195d9a23df754ac28806712e8f
libxengnttab1             $XV 0a7258ab7fbce947781edaff1936e2269048989f09499e4c69b8c16be5e8c529
libxenstore4              $XV f8bae6120d7e450b1863a9f2505620d0ca3d02def3f40a96516451b620615ada
libxentoollog1            $XV 4d69a819153d7847e650840beb62a8039ae8d50065254ee20f62936457bda5ed
libxenhypfs1              $XV 3fcbdf565788239553784eaf508ca5deecabf8cf295de9411cc548028991a549
libxendevicemodel1        $XV 120dc319ffb9f0beff35db3a04cc6226dcaaf4f3682c3617d84cc7591bba7671
libxentoolcore1           $XV 408287a3b711065b26c06352820aface1bc3defa7cc872021c4f1b1bc9bf432b
libyajl2                  2.1.0-5+b2 24fa6da12564ea776c508641fe63a8b6a3b3a3a22b671013539cae8f6748cf80
libc6                     2.41-12+deb13u5 0966fc3da1a26cc57647c68b5736f791b6e7eb498173a7993f63b6c89b4ed4f5
libncurses6               6.5+20250216-2 259fe5736ebb105df7c6a7b5cc6231a8743666f5f57885f6c7989babe2fc0082
libtinfo6                 6.5+20250216-2 2a747f7fff3c2347c357387a7133df997410f07ba1b1df1a1461a97bd7fbc2fc
libext2fs2t64             1.47.2-3+b12 303433a742ff98337ad93e58b7e92cef224a062f4cffcaf5f0e0cb657b732081
libcom-err2               1.47.2-3+b12 1acba7e14a17a3f4b8008454e1a75840a5cdff4259d3c1d369092d82089ea0d8
libfdt1                   1.7.2-2+b1 43b3435ff8d67a3cbd91f88bdeffcb147f7f5da61fba50cf004505f03025ae1e
libuuid1                  2.41.5-0+deb13u1 448ad6b190184dbff24508ef2eda88bd737a5ffc0f9750eb779fcf9885292bea
zlib1g                    1:1.3.dfsg+really1.3.1-1+deb13u1 0e41b3d7ad8ad7fcd36dd4d61ca91a70018478fc4af652e044f4be770784ddff
libgcc-s1                 14.2.0-19 1108bc87879833d6d9a145f22a4a15cddb34e065b4b5f4b97bee586adbac2851
libzstd1                  1.5.7+dfsg-1+deb13u1 ab5ad90f986b315bfa12be50f438aa3453e32da3b29540844d2d847800d2ce08
liblzma5                  5.8.1-1+deb13u2 88f3aa499dc30edf01b9209ab40f11e37edfbecef971f84f4721de1874ed4827
libbz2-1.0                1.0.8-6 3537fe4fc577a60c8a9568873cd577db7ebc135eb8bb1825f18caf8972d9d2f2
liblz4-1                  1.10.0-4 f86fa7f8112d56b74f99c4a8baade57a9962d187d7c8e319428e171b2a34d223
bash                      5.2.37-2+b10 9e2d2b3646b250f53be79b6128d9cff5e99cc5ff4a8c84e58efab59ad9bb0ddc
util-linux                2.41.5-0+deb13u1 d427f83a08d46107e8f7d39f1522a8a316e785e45f04ad657d2ecb7570210d84
e2fsprogs                 1.47.2-3+b12 ebd315c483853fafe877e39c1f49bf725834d7af7249a98b727f2ef4fe01a5c4
libblkid1                 2.41.5-0+deb13u1 d7d122b4c7a0a8ae6135a1687c9c4ce80a88f9e498c01998f634dd32caab9016
linux-modules-7.2.12+deb13-arm64 7.2.12-1~bpo13+1 db43e8c0a8e822423f558a4ff67d6304cfd1007a549d04b4a33e049c4d513400
"

log() { echo "[xen-fetch] $*" >&2; }

# The kernel Image and busybox: the project's pins (fetch-l1.sh, cached under .cache/rig).
eval "$("$REPO/tests-nested/rig/fetch-l1.sh")"   # L1_IMAGE, BUSYBOX, KERNEL_DEB

DEBS=$XEN_CACHE/debs
mkdir -p "$DEBS"
# apt with a private state dir (the rig's helper): APT, CACHE, apt_update, download, sha_of.
APTD=$XEN_CACHE/apt
APT_EXTRA_SOURCES="deb [arch=arm64 signed-by=$KEYRING] $MIRROR trixie-updates main
deb [arch=arm64 signed-by=$KEYRING] $SECURITY trixie-security main"
# shellcheck source=../rig/apt-private.sh
. "$REPO/tests-nested/rig/apt-private.sh"

# fetch NAME VERSION SHA256 -> the path of the .deb (verified, or the new candidate with its
# checksum printed when the pin has left the mirror).
fetch() {
    local name=$1 ver=$2 sha=$3 file
    file=$DEBS/${name}_${ver#*:}_arm64.deb
    if [ -f "$file" ] && [ "$(sha_of "$file")" = "$sha" ]; then
        echo "$file"; return
    fi
    apt_update
    if "${CACHE[@]}" show "$name=$ver" 2>/dev/null | grep -q '^Package:'; then
        download "$name=$ver" "$file"
        local have; have=$(sha_of "$file")
        if [ "$have" != "$sha" ]; then
            log "SHA-256 mismatch for $name $ver: expected $sha, got $have"
            rm -f "$file"; exit 1
        fi
    else
        local nver; nver=$("${CACHE[@]}" policy "$name" | awk '/Candidate:/ {print $2}')
        [ -n "$nver" ] && [ "$nver" != "(none)" ] || { log "$name is not on the mirror"; exit 1; }
        file=$DEBS/${name}_${nver#*:}_arm64.deb
        [ -f "$file" ] || download "$name=$nver" "$file"
        log "pinned $name $ver has left the mirror; using $nver (UNPINNED)."
        log "  new pin: $name $nver $(sha_of "$file")"
    fi
    echo "$file"
}

# Unpack every user-space package into one tree (once per set of .debs), the modules apart.
ROOT=$XEN_CACHE/root
MODROOT=$XEN_CACHE/modules
stamp=""
xen_deb=""; mod_deb=""; user_debs=()
while read -r name ver sha; do
    [ -n "$name" ] || continue
    deb=$(fetch "$name" "$ver" "$sha")
    stamp+="$(basename "$deb") "
    case $name in
        xen-hypervisor-*) xen_deb=$deb ;;
        linux-modules-*) mod_deb=$deb ;;
        *) user_debs+=("$deb") ;;
    esac
done <<<"$PINS"
if [ "$(cat "$ROOT/.done" 2>/dev/null)" != "$stamp" ]; then
    log "unpacking ${#user_debs[@]} packages into $ROOT"
    rm -rf "$ROOT"; mkdir -p "$ROOT"
    for d in "$xen_deb" "${user_debs[@]}"; do dpkg-deb -x "$d" "$ROOT"; done
    echo "$stamp" >"$ROOT/.done"
fi
if [ "$(cat "$MODROOT/.done" 2>/dev/null)" != "$(basename "$mod_deb")" ]; then
    log "unpacking $(basename "$mod_deb")"
    rm -rf "$MODROOT"; mkdir -p "$MODROOT"
    dpkg-deb -x "$mod_deb" "$MODROOT"
    basename "$mod_deb" >"$MODROOT/.done"
fi
xen=$(ls "$ROOT"/boot/xen-4.20-arm64 2>/dev/null || ls "$ROOT"/boot/xen-*-arm64 | head -1)
mods=$(ls -d "$MODROOT"/usr/lib/modules/*/ | head -1)
echo "XEN_IMAGE=$xen"
echo "XEN_ROOT=$ROOT"
echo "XEN_MODULES=${mods%/}"
echo "DOM0_KERNEL=$L1_IMAGE"
echo "BUSYBOX=$BUSYBOX"
