#!/usr/bin/env bash
# Fetches the L1 VMM users run: Debian's arm64 qemu-system-aarch64 from trixie-backports
# (qemu-system-arm), with apt pointed at a private state dir (apt-private.sh, as fetch-l1.sh).
# The packages are pinned in qemu-l1.lock (name, version, SHA-256 of the .deb): qemu-system-arm and
# the packages that hold the shared libraries it loads. Only the files QEMU loads go into L1's
# initramfs: the binary, its ELF interpreter and the closure of its DT_NEEDED entries (readelf -d),
# resolved in the unpacked packages; QEMU's modules (/usr/lib/.../qemu/*.so) and data files
# (/usr/share/qemu: option ROMs, keymaps) are left out, as `-M virt -kernel ... -nic none
# -nographic` loads none of them.
# Prints KEY=VALUE lines: QEMU_L1_SPECS=<file of rig-cpio specs, one per line>,
# QEMU_L1_VERSION=<version>, QEMU_L1_BYTES=<bytes of the files>.
# If a pinned version has left the mirror, the dependency closure of trixie-backports'
# qemu-system-arm is resolved by apt and used unpinned, with the SHA-256 of each .deb printed.
#   --relock   resolve anew and print a new qemu-l1.lock on stdout
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RIG_CACHE=${RIG_CACHE:-$REPO/.cache/rig}
KEYRING=${RIG_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
MIRROR=${RIG_MIRROR:-http://deb.debian.org/debian}
LOCK=$HERE/qemu-l1.lock
QEMU_PKG=qemu-system-arm
QEMU_BIN=usr/bin/qemu-system-aarch64
LIBDIRS=(usr/lib/aarch64-linux-gnu lib/aarch64-linux-gnu usr/lib lib)

log() { echo "[fetch-qemu-l1] $*" >&2; }

RELOCK=0
[ "${1:-}" = --relock ] && RELOCK=1

DEBS=$RIG_CACHE/debs
mkdir -p "$DEBS"
# shellcheck source=apt-private.sh
. "$HERE/apt-private.sh"

deb_path() { echo "$DEBS/${1}_${2#*:}_arm64.deb"; }

# The dependency closure of trixie-backports' qemu-system-arm (Depends only) as "name version" lines.
closure() {
    apt_update
    "${APT[@]}" -s -o APT::Install-Recommends=0 install -t trixie-backports "$QEMU_PKG" 2>/dev/null |
        awk '/^Inst / { v = $3; gsub(/[()]/, "", v); print $2, v }'
}

# Downloads "name version" lines from stdin (unchecked) into $DEBS; prints the .deb paths.
download_all() {
    local name ver f
    while read -r name ver; do
        f=$(deb_path "$name" "$ver")
        [ -f "$f" ] || download "$name=$ver" "$f"
        echo "$f"
    done
}

# needed ROOT: the DT_NEEDED closure of ROOT/$QEMU_BIN, as paths relative to ROOT (symlinks
# not followed), one per line. Fails when a library is not found.
needed() {
    local root=$1 todo=("$QEMU_BIN") seen=" " f n d p miss=0
    while [ ${#todo[@]} -gt 0 ]; do
        f=${todo[0]}; todo=("${todo[@]:1}")
        for n in $(readelf -d "$root/$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            case $seen in *" $n "*) continue ;; esac
            seen+="$n "
            p=""
            for d in "${LIBDIRS[@]}"; do
                if [ -e "$root/$d/$n" ]; then p=$d/$n; break; fi
            done
            if [ -z "$p" ]; then log "$n (needed by $f) is in none of the packages"; miss=1; continue; fi
            echo "$p"
            todo+=("$p")
        done
    done
    [ $miss = 0 ]
}

# interp ROOT: the ELF interpreter of ROOT/$QEMU_BIN (e.g. /lib/ld-linux-aarch64.so.1).
interp() { readelf -l "$1/$QEMU_BIN" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p'; }

# unpack_all ROOT DEB...: a fresh staging root with every .deb unpacked.
unpack_all() {
    local root=$1; shift
    rm -rf "$root"; mkdir -p "$root"
    local d; for d in "$@"; do dpkg-deb -x "$d" "$root"; done
}

if [ $RELOCK = 1 ]; then
    mapfile -t debs < <(closure | download_all)
    root=$RIG_CACHE/qemu-l1/relock
    unpack_all "$root" "${debs[@]}"
    # The interpreter: /lib/... is base-files' merged-/usr symlink, the packages ship usr/lib/...
    i=$(interp "$root"); i=${i#/}; [ -e "$root/$i" ] || i=usr/${i#usr/}
    files=$(needed "$root"; echo "${QEMU_BIN}"; echo "$i")
    # The package of each file (symlinks resolved inside the root).
    declare -A owner=()
    for d in "${debs[@]}"; do
        while read -r f; do [ -n "$f" ] && owner["$f"]=$d; done < <(dpkg-deb -c "$d" | awk '{print $6}' | sed 's|^\./||')
    done
    echo "# qemu-system-aarch64 for the rig's L1 (fetch-qemu-l1.sh): Debian trixie-backports' qemu-system-arm"
    echo "# and the packages holding every shared library it loads (NEEDED closure). name version sha256-of-.deb"
    echo "# Regenerate with: tests-nested/rig/fetch-qemu-l1.sh --relock > tests-nested/rig/qemu-l1.lock"
    for f in $files; do
        t=$(realpath -m --relative-to="$root" "$(readlink -f "$root/$f")")
        [ -n "${owner[$t]:-}" ] || { log "no package ships $t"; exit 1; }
        echo "${owner[$t]}"
    done | sort -u | while read -r d; do
        echo "$(dpkg-deb -f "$d" Package) $(dpkg-deb -f "$d" Version) $(sha_of "$d")"
    done
    rm -rf "$root"
    exit 0
fi

# Pinned set, or the resolved closure when a pin has left the mirror.
debs=()
pinned=1
while read -r name ver sha; do
    case $name in ''|'#'*) continue ;; esac
    f=$(deb_path "$name" "$ver")
    if [ -f "$f" ] && [ "$(sha_of "$f")" = "$sha" ]; then debs+=("$f"); continue; fi
    apt_update
    if ! "${CACHE[@]}" show "$name=$ver" 2>/dev/null | grep '^Package:' >/dev/null; then
        log "pinned $name $ver has left the mirror"
        pinned=0; break
    fi
    download "$name=$ver" "$f"
    have=$(sha_of "$f")
    if [ "$have" != "$sha" ]; then
        log "SHA-256 mismatch for $name $ver: expected $sha, got $have"
        rm -f "$f"; exit 1
    fi
    debs+=("$f")
done <"$LOCK"
if [ $pinned = 0 ]; then
    log "using the current dependency closure of trixie-backports' $QEMU_PKG (unpinned):"
    mapfile -t debs < <(closure | download_all)
    for d in "${debs[@]}"; do log "  $(basename "$d") sha256 $(sha_of "$d")"; done
fi

# Stage once per set of .debs (keyed by their checksums).
key=$(for d in "${debs[@]}"; do sha_of "$d"; done | sort | sha256sum | cut -c1-16)
out=$RIG_CACHE/qemu-l1/$key
if [ ! -f "$out/.done" ]; then
    unpack_all "$out/root" "${debs[@]}"
    needed "$out/root" >"$out/needed"
    interp "$out/root" >"$out/interp"
    touch "$out/.done"
fi
root=$out/root
ip=$(cat "$out/interp"); ip=${ip#/}
[ -n "$ip" ] || { log "no ELF interpreter in $QEMU_BIN"; exit 1; }

# rig-cpio specs: real files (symlinks resolved) under their NEEDED names, parents first.
specs=$out/specs
{
    echo "dir:usr"; echo "dir:usr/bin"; echo "dir:usr/lib"; echo "dir:usr/lib/aarch64-linux-gnu"
    # Debian's merged /usr: /lib -> usr/lib, so the interpreter path /lib/ld-linux-aarch64.so.1 works.
    echo "sym:lib=usr/lib"
    echo "file:$QEMU_BIN=$root/$QEMU_BIN:755"
    while read -r p; do echo "file:usr/lib/aarch64-linux-gnu/$(basename "$p")=$(readlink -f "$root/$p"):755"; done <"$out/needed"
    # Merged /usr: the packages ship usr/lib/..., /lib is base-files' symlink.
    tgt=$(readlink -e "$root/$ip" || readlink -e "$root/usr/${ip#usr/}") ||
        { log "ELF interpreter /$ip not in the packages"; exit 1; }
    echo "file:usr/lib/aarch64-linux-gnu/$(basename "$tgt")=$tgt:755"
    # The interpreter's own name (e.g. usr/lib/ld-linux-aarch64.so.1 -> aarch64-linux-gnu/...).
    [ "usr/lib/aarch64-linux-gnu/$(basename "$tgt")" = "usr/${ip#usr/}" ] ||
        echo "sym:usr/${ip#usr/}=aarch64-linux-gnu/$(basename "$tgt")"
} | awk '!seen[$0]++' >"$specs"
bytes=$(sed -n 's/^file:[^=]*=\(.*\):755$/\1/p' "$specs" | xargs stat -L -c %s | awk '{s += $1} END {print s}')
ver=$(dpkg-deb -f "$(printf '%s\n' "${debs[@]}" | grep "/${QEMU_PKG}_")" Version)
log "$QEMU_PKG $ver: $(grep -c '^file:' "$specs") files, $((bytes / 1024 / 1024)) MiB for L1's initramfs"
echo "QEMU_L1_SPECS=$specs"
echo "QEMU_L1_VERSION=$ver"
echo "QEMU_L1_BYTES=$bytes"
