#!/usr/bin/env bash
# The newcomer's check: README's first command on a clean Debian 12 machine.
#
# Builds a minimal Debian 12 root (debootstrap --variant=minbase bookworm) with only what README
# says a clean machine has (build-essential, curl, git, xz-utils, ca-certificates, llvm; the Rust
# toolchain comes from the host's rustup and cargo homes, bind-mounted), clones this repository's
# current commit into it and runs README's first command exactly as README writes it, which must
# print hvrun's PASS line. Everything else the run needs (QEMU, dtc, ...) must be installed by the
# project's own scripts inside the root. With --linux it then runs the Linux-guest command README
# tells a user to run (the ```sh block with `hvrun -- linux`), and ci/qemu-linux.sh a, which must
# download what they need by themselves.
#
# The base root (debootstrap + the packages above, nothing of the project) is cached as a tarball
# in $HV_FRESH_CACHE (default /var/cache/hv-fresh-machine, or $XDG_CACHE_HOME/hv-fresh-machine
# when /var/cache is not writable); the root itself is rebuilt from it on every run and removed
# afterwards. Mounts are always undone on exit, also on failure.
#
# Usage: ci/fresh-machine.sh [--linux] [--keep]    (needs root: debootstrap, chroot, mount)
#   env: HV_FRESH_PACKAGES (the packages of the base root), HV_FRESH_CACHE, HV_FRESH_MIRROR
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

LINUX=0 KEEP=0
for a in "$@"; do
    case $a in
        --linux) LINUX=1 ;;
        --keep) KEEP=1 ;;
        *) echo "usage: $0 [--linux] [--keep]" >&2; exit 2 ;;
    esac
done

log() { echo "[fresh-machine] $*" >&2; }
die() { echo "[fresh-machine] ERROR: $*" >&2; exit 1; }
now() { date +%s; }
T0=$(now)

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot and mount)"

SUITE=bookworm
MIRROR=${HV_FRESH_MIRROR:-http://deb.debian.org/debian}
# What README says a clean machine has (rustup comes from the host, bind-mounted).
read -r -a PACKAGES <<<"${HV_FRESH_PACKAGES:-build-essential curl git xz-utils ca-certificates llvm}"

if [ -z "${HV_FRESH_CACHE:-}" ]; then
    if mkdir -p /var/cache/hv-fresh-machine 2>/dev/null && [ -w /var/cache/hv-fresh-machine ]; then
        HV_FRESH_CACHE=/var/cache/hv-fresh-machine
    else
        HV_FRESH_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/hv-fresh-machine
    fi
fi
mkdir -p "$HV_FRESH_CACHE"
key=$(printf '%s\n' "$SUITE" "$MIRROR" "${PACKAGES[@]}" | sha256sum | cut -c1-12)
TARBALL=$HV_FRESH_CACHE/$SUITE-minbase-$key.tar

# The host's Rust toolchain (rustup and cargo homes).
RUSTUP_DIR=${RUSTUP_HOME:-$HOME/.rustup}
CARGO_DIR=${CARGO_HOME:-$HOME/.cargo}
[ -x "$CARGO_DIR/bin/rustup" ] || die "no rustup in $CARGO_DIR/bin (install it from https://rustup.rs)"
[ -d "$RUSTUP_DIR/toolchains" ] || die "no rustup home at $RUSTUP_DIR"

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/hv-fresh-machine.XXXXXX")
ROOT=$WORK/root
MOUNTS=()

cleanup() {
    local rc=$? m i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        m=${MOUNTS[$i]}
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
    # Only delete the root when nothing is mounted below it any more.
    if grep -q " $WORK" /proc/mounts; then
        log "mounts left below $WORK; not deleting it"
    elif [ "$KEEP" = 1 ]; then
        log "root kept at $ROOT"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bind SRC DEST [ro]: mount SRC on $ROOT/DEST, remembered for cleanup.
bind() {
    mkdir -p "$ROOT$2"
    mount --bind "$1" "$ROOT$2"
    MOUNTS+=("$ROOT$2")
    if [ "${3:-}" = ro ]; then
        mount -o remount,bind,ro "$ROOT$2"
    fi
}

# in_root CMD...: a login-like shell in the root, with a clean environment (a fresh machine's
# root user: HOME=/root, PATH from rustup's ~/.cargo/bin plus the usual system dirs).
in_root() {
    env -i HOME=/root USER=root LOGNAME=root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
        PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        chroot "$ROOT" "$@"
}

mount_system() {
    bind /proc /proc
    bind /sys /sys
    bind /dev /dev
    bind /dev/shm /dev/shm
    mkdir -p "$ROOT/dev/pts"
    mount -t devpts devpts "$ROOT/dev/pts" -o newinstance,ptmxmode=0666 2>/dev/null &&
        MOUNTS+=("$ROOT/dev/pts") || true
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
}

# --- the base root: cached tarball, else debootstrap + packages ---------------
mkdir -p "$ROOT"
if [ -f "$TARBALL" ]; then
    t=$(now)
    tar -C "$ROOT" -xf "$TARBALL"
    log "base root: unpacked the cached $TARBALL in $(($(now) - t)) s"
else
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap on this host"
        apt-get -q update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends debootstrap >/dev/null
    fi
    t=$(now)
    # "[download] " lines are shown live by ci/test.sh.
    echo "[download] fresh-machine: debootstrap --variant=minbase $SUITE from $MIRROR (~1 min)" >&2
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
        tail -n 30 "$WORK/debootstrap.log" >&2
        die "debootstrap failed"
    }
    log "base root: debootstrap took $(($(now) - t)) s"
    echo "[download] fresh-machine: apt-get install ${PACKAGES[*]} in the root (~1 min)" >&2
    t=$(now)
    mount_system
    # No daemons may start inside the root.
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod +x "$ROOT/usr/sbin/policy-rc.d"
    in_root apt-get -q update >"$WORK/apt.log" 2>&1 &&
        in_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y install "${PACKAGES[@]}" \
            >>"$WORK/apt.log" 2>&1 || {
        tail -n 30 "$WORK/apt.log" >&2
        die "installing ${PACKAGES[*]} in the root failed"
    }
    in_root apt-get clean
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[$i]}"; done
    MOUNTS=()
    log "base root: packages took $(($(now) - t)) s; caching it as $TARBALL"
    tar -C "$ROOT" --one-file-system -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
fi

# --- mounts: kernel filesystems (QEMU needs them), the host's Rust toolchain ------
mount_system
bind "$RUSTUP_DIR" /root/.rustup
bind "$CARGO_DIR" /root/.cargo

# --- the repository: this checkout's current commit ---------------------------
COMMIT=$(git -C "$REPO" rev-parse HEAD)
git clone -q --no-local "$REPO" "$ROOT/root/hv"
git -C "$ROOT/root/hv" checkout -q --detach "$COMMIT"
log "cloned $COMMIT into the root's /root/hv"

# --- README's commands, exactly as written -------------------------------------
# readme_block N: the Nth ```sh block of README.md (1-based), indentation removed.
readme_block() {
    awk -v want="$1" '/^ *```sh$/ { n++; inb = (n == want); next } inb && /^ *```$/ { exit } inb { sub(/^ +/, ""); print }' README.md
}
# run_readme WHAT CMD PASS_REGEX: runs CMD in the root's clone, requires exit 0 and PASS_REGEX.
run_readme() {
    local what=$1 cmd=$2 pass=$3 t rc secs
    log "running $what in the root: $cmd"
    t=$(now)
    set +e
    in_root bash -c "cd /root/hv && $cmd" 2>&1 | tee "$WORK/cmd.log"
    rc=${PIPESTATUS[0]}
    set -e
    secs=$(($(now) - t))
    [ "$rc" -eq 0 ] || die "$what failed (exit $rc) after $secs s"
    grep -Eq "$pass" "$WORK/cmd.log" || die "$what: no line matching '$pass' (exit $rc)"
    log "$what passed in $secs s"
}

CMD=$(readme_block 1)
[ -n "$CMD" ] || die "no \`\`\`sh block in README.md"
run_readme "README's first command" "$CMD" '^hvrun: PASS demo'

# --- the Linux guest, as README tells a user to run it -------------------------
if [ "$LINUX" = 1 ]; then
    n=1 LCMD=""
    while b=$(readme_block "$n") && [ -n "$b" ]; do
        case $b in *"hvrun -- linux"*) LCMD=$b; break ;; esac
        n=$((n + 1))
    done
    [ -n "$LCMD" ] || die "no \`\`\`sh block with 'hvrun -- linux' in README.md"
    run_readme "README's Linux command" "$LCMD" '^hvrun: PASS linux'
    run_readme "ci/qemu-linux.sh a" "bash ci/qemu-linux.sh a" 'PASS'
fi
log "PASS in $(($(now) - T0)) s"
