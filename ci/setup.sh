#!/usr/bin/env bash
# Installs what a fresh Debian 12 (bookworm) machine lacks to build and test hv:
#   - the bookworm-backports suite in apt's sources (deb822 file), if missing;
#   - qemu-system-arm from bookworm-backports (qemu-system-aarch64 >= 9), if missing or older;
#   - device-tree-compiler (dtc), if missing;
#   - grub-common (grub-mkimage, for ci/qemu-boot.sh uefi), if missing;
#   - the Rust toolchain, targets and components pinned in rust-toolchain.toml (via rustup).
# Idempotent and quiet: it prints one line per thing it checks and only shows
# tool output when something fails. Needs root or sudo for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and sudo is missing"
    SUDO=(sudo -n)
fi
export DEBIAN_FRONTEND=noninteractive
APT_LOG="$(mktemp -t hv-setup-apt.XXXXXX)"
trap 'rm -f "$APT_LOG"' EXIT

# Runs a command quietly; on failure shows its output and stops.
quiet() {
    if ! "$@" >"$APT_LOG" 2>&1; then
        cat "$APT_LOG" >&2
        die "failed: $*"
    fi
}

qemu_major() {
    # Empty output (not a failure) when QEMU is missing: callers test for "".
    command -v qemu-system-aarch64 >/dev/null 2>&1 || return 0
    qemu-system-aarch64 --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -n1 || true
}

# --- apt: bookworm-backports, qemu, dtc ---------------------------------------
if command -v apt-get >/dev/null 2>&1; then
    # (APT_ETC may point elsewhere to try this part out without touching /etc/apt.)
    APT_ETC="${APT_ETC:-/etc/apt}"
    BACKPORTS="$APT_ETC/sources.list.d/bookworm-backports.sources"
    if grep -rqsE --include='*.list' --include='*.sources' '^[^#]*bookworm-backports' \
        "$APT_ETC/sources.list" "$APT_ETC/sources.list.d/" 2>/dev/null; then
        log "apt source bookworm-backports: present"
    else
        log "apt source bookworm-backports: adding $BACKPORTS"
        printf '%s\n' \
            'Types: deb' \
            'URIs: http://deb.debian.org/debian' \
            'Suites: bookworm-backports' \
            'Components: main' \
            'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
            | "${SUDO[@]}" tee "$BACKPORTS" >/dev/null
    fi

    updated=0
    apt_update() {
        if [ "$updated" -eq 0 ]; then
            quiet "${SUDO[@]}" apt-get -q update
            updated=1
        fi
    }

    major="$(qemu_major)"
    if [ -n "$major" ] && [ "$major" -ge 9 ]; then
        log "qemu-system-aarch64: $(qemu-system-aarch64 --version | head -n1)"
    else
        log "qemu-system-aarch64: ${major:+version $major is too old, }installing qemu-system-arm from bookworm-backports"
        apt_update
        quiet "${SUDO[@]}" apt-get -q -y install --no-install-recommends -t bookworm-backports qemu-system-arm
        major="$(qemu_major)"
        [ -n "$major" ] && [ "$major" -ge 9 ] || die "qemu-system-aarch64 still missing or older than 9 after install"
        log "qemu-system-aarch64: installed $(qemu-system-aarch64 --version | head -n1)"
    fi

    if command -v dtc >/dev/null 2>&1; then
        log "dtc: $(dtc --version | head -n1)"
    else
        log "dtc: installing device-tree-compiler"
        apt_update
        quiet "${SUDO[@]}" apt-get -q -y install --no-install-recommends device-tree-compiler
    fi

    # grub-mkimage builds the GRUB EFI image of ci/qemu-boot.sh uefi (from Debian's arm64 modules).
    if command -v grub-mkimage >/dev/null 2>&1; then
        log "grub-mkimage: $(grub-mkimage --version | head -n1)"
    else
        log "grub-mkimage: installing grub-common"
        apt_update
        quiet "${SUDO[@]}" apt-get -q -y install --no-install-recommends grub-common
    fi
else
    log "apt-get not found (not Debian): install qemu-system-aarch64 (>= 9) and dtc yourself"
    major="$(qemu_major)"
    [ -n "$major" ] && [ "$major" -ge 9 ] || die "qemu-system-aarch64 >= 9 is missing"
    command -v dtc >/dev/null 2>&1 || die "dtc is missing"
fi

# --- Rust: toolchain, targets, components from rust-toolchain.toml ----------------
if ! command -v rustup >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/rustup" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v rustup >/dev/null 2>&1 || die "rustup is missing: install it from https://rustup.rs, then rerun"

toolchain="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)"
[ -n "$toolchain" ] || die "no channel in rust-toolchain.toml"
targets="$(sed -n 's/^targets *= *\[\(.*\)\]/\1/p' rust-toolchain.toml | tr -d '",')"
components="$(sed -n 's/^components *= *\[\(.*\)\]/\1/p' rust-toolchain.toml | tr -d '",')"

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    log "rust: installing toolchain $toolchain"
    # rustup >= 1.28 installs the toolchain file's toolchain with no argument.
    quiet rustup toolchain install --profile minimal "$toolchain"
fi
missing_targets=()
installed_targets="$(rustup +"$toolchain" target list --installed)"
for t in $targets; do
    grep -qx "$t" <<<"$installed_targets" || missing_targets+=("$t")
done
if [ "${#missing_targets[@]}" -gt 0 ]; then
    log "rust: adding targets ${missing_targets[*]}"
    quiet rustup +"$toolchain" target add "${missing_targets[@]}"
fi
missing_components=()
installed_components="$(rustup +"$toolchain" component list --installed)"
for c in $components; do
    grep -q "^$c" <<<"$installed_components" || missing_components+=("$c")
done
if [ "${#missing_components[@]}" -gt 0 ]; then
    log "rust: adding components ${missing_components[*]}"
    quiet rustup +"$toolchain" component add "${missing_components[@]}"
fi
log "rust: $(rustup run "$toolchain" rustc --version); targets: $targets; components: $components"
log "done"

# --- fuzzing (issue 9): cargo-fuzz for hv/fuzz, run by ci/fuzz-smoke.sh ---------
# The targets build with the nightly toolchain when it is installed, else with
# the pinned one and RUSTC_BOOTSTRAP=1 (no new toolchain is downloaded here).
# cargo-fuzz comes from crates.io, pinned; libfuzzer-sys compiles libFuzzer (C++).
CARGO_FUZZ_VERSION=0.13.2
if rustup run nightly rustc --version >/dev/null 2>&1; then
    log "fuzz: $(rustup run nightly rustc --version)"
else
    log "fuzz: no nightly toolchain: hv/fuzz builds with $toolchain and RUSTC_BOOTSTRAP=1"
fi
if ! command -v c++ >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    log "fuzz: installing g++ (libFuzzer)"
    quiet "${SUDO[@]}" apt-get install -y -q g++
fi
if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
    log "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    quiet cargo +"$toolchain" install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
log "fuzz: $(cargo fuzz --version)"
