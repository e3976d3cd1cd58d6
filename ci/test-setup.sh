#!/usr/bin/env bash
# Tests ci/setup.sh's decisions without touching the machine: setup.sh runs with a PATH that has
# every host tool except qemu-system-aarch64, dtc, grub-mkimage, c++, apt-get, rustup, cargo and
# sudo, which are stubs that record their arguments (apt-get "installs" a fake QEMU, dtc,
# grub-mkimage, c++), and APT_ETC points at a scratch /etc/apt. Each case checks the exit status, the commands setup.sh issued and what it wrote.
# Usage: ci/test-setup.sh   (prints one line per case, ends with "test-setup: N passed, M failed")
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SETUP=${SETUP_SH:-$REPO/ci/setup.sh}
TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)

T=$(mktemp -d -t hv-test-setup.XXXXXX)
trap 'rm -rf "$T"' EXIT

# The host's tools minus the ones setup.sh decides about.
SYS=$T/sys
mkdir -p "$SYS"
for d in /usr/local/bin /usr/bin /bin /usr/sbin /sbin; do
    for f in "$d"/*; do
        b=${f##*/}
        case $b in
            qemu-system-* | dtc | grub-mkimage | c++ | g++ | apt-get | apt | rustup | sudo | cargo | rustc) continue ;;
        esac
        [ -x "$f" ] && [ ! -e "$SYS/$b" ] && ln -s "$f" "$SYS/$b"
    done
done

passed=0
failed=0
fails=()

# new_case: a fresh stub dir, apt dir, record file.
new_case() {
    C=$T/case$((passed + failed))
    STUB=$C/bin
    mkdir -p "$STUB" "$C/etc/apt/sources.list.d" "$C/home"
    echo "deb http://deb.debian.org/debian bookworm main" >"$C/etc/apt/sources.list"
    : >"$C/calls"
    # apt-get: records; "install" of qemu-system-arm / device-tree-compiler makes the fake tool.
    cat >"$STUB/apt-get" <<EOF
#!/bin/bash
echo "apt-get \$*" >>"$C/calls"
case " \$* " in
    *" install "*qemu-system-arm*)
        if [ -n "\${STUB_QEMU_AFTER:-}" ]; then
            printf '#!/bin/sh\necho "QEMU emulator version %s (Debian)"\n' "\$STUB_QEMU_AFTER" >"$STUB/qemu-system-aarch64"
            chmod +x "$STUB/qemu-system-aarch64"
        fi ;;
esac
case " \$* " in
    *" install "*device-tree-compiler*)
        printf '#!/bin/sh\necho "Version: DTC 1.6.1"\n' >"$STUB/dtc"; chmod +x "$STUB/dtc" ;;
esac
case " \$* " in
    *" install "*grub-common*)
        printf '#!/bin/sh\necho "grub-mkimage (GRUB) 2.06"\n' >"$STUB/grub-mkimage"; chmod +x "$STUB/grub-mkimage" ;;
    *" install "*" g++"*) printf '#!/bin/sh\n' >"$STUB/c++"; chmod +x "$STUB/c++" ;;
esac
exit 0
EOF
    # cargo: only what setup.sh asks of it (cargo fuzz --version, cargo install).
    cat >"$STUB/cargo" <<EOF
#!/bin/bash
echo "cargo \$*" >>"$C/calls"
case "\$*" in
    "fuzz --version") echo "cargo-fuzz \${STUB_CARGO_FUZZ:-0.13.2}" ;;
esac
exit 0
EOF
    # sudo (used only when the test does not run as root): records and runs.
    cat >"$STUB/sudo" <<EOF
#!/bin/bash
[ "\$1" = -n ] && shift
"\$@"
EOF
    # rustup: the pinned toolchain is installed; targets/components as STUB_TARGETS/STUB_COMPONENTS.
    cat >"$STUB/rustup" <<EOF
#!/bin/bash
echo "rustup \$*" >>"$C/calls"
case "\$*" in
    "run "*" rustc --version") echo "rustc 1.0.0 (stub)" ;;
    *"target list --installed") printf '%s\n' x86_64-unknown-linux-gnu \${STUB_TARGETS:-} ;;
    *"component list --installed") printf '%s\n' \${STUB_COMPONENTS:-} ;;
esac
exit 0
EOF
    chmod +x "$STUB/apt-get" "$STUB/sudo" "$STUB/rustup" "$STUB/cargo"
}

qemu_stub() { # VERSION: an installed qemu-system-aarch64 of that version
    printf '#!/bin/sh\necho "QEMU emulator version %s (Debian 1:%s)"\n' "$1" "$1" >"$STUB/qemu-system-aarch64"
    chmod +x "$STUB/qemu-system-aarch64"
}
dtc_stub() { # dtc, grub-mkimage and c++ present
    printf '#!/bin/sh\necho "Version: DTC 1.6.1"\n' >"$STUB/dtc"
    printf '#!/bin/sh\necho "grub-mkimage (GRUB) 2.06"\n' >"$STUB/grub-mkimage"
    printf '#!/bin/sh\n' >"$STUB/c++"
    chmod +x "$STUB/dtc" "$STUB/grub-mkimage" "$STUB/c++"
}

# run_setup: runs setup.sh in the case's world; sets RC and OUT.
run_setup() {
    OUT=$(env -i HOME="$C/home" PATH="$STUB:$SYS" APT_ETC="$C/etc/apt" \
        STUB_QEMU_AFTER="${STUB_QEMU_AFTER:-}" STUB_TARGETS="${STUB_TARGETS:-}" \
        STUB_COMPONENTS="${STUB_COMPONENTS:-}" STUB_CARGO_FUZZ="${STUB_CARGO_FUZZ:-}" \
        bash "$SETUP" 2>&1)
    RC=$?
}

problems=()
expect() { # DESCRIPTION COMMAND...: records a problem unless COMMAND succeeds
    local what=$1
    shift
    "$@" || problems+=("$what")
}
called() { grep -qxF -- "$1" "$C/calls"; }
not_called() { ! grep -q -- "$1" "$C/calls"; }
ncalls() { grep -c -- "$1" "$C/calls"; }

finish() { # NAME
    if [ ${#problems[@]} -eq 0 ]; then
        passed=$((passed + 1))
        echo "test-setup: PASS $1"
    else
        failed=$((failed + 1))
        fails+=("$1")
        echo "test-setup: FAIL $1:"
        printf '  - %s\n' "${problems[@]}"
        echo "  setup.sh exit status $RC, output:"
        sed 's/^/    | /' <<<"$OUT"
        echo "  commands issued:"
        sed 's/^/    | /' "$C/calls"
    fi
    problems=()
}

ALL_TARGETS=$(sed -n 's/^targets *= *\[\(.*\)\]/\1/p' rust-toolchain.toml | tr -d '",')
ALL_COMPONENTS=$(sed -n 's/^components *= *\[\(.*\)\]/\1/p' rust-toolchain.toml | tr -d '",')
BACKPORTS_INSTALL="apt-get -q -y install --no-install-recommends -t bookworm-backports qemu-system-arm"
DTC_INSTALL="apt-get -q -y install --no-install-recommends device-tree-compiler"

# 1. A fresh machine: no QEMU, no dtc, no backports source.
new_case
STUB_QEMU_AFTER=10.0.2 STUB_TARGETS=$ALL_TARGETS STUB_COMPONENTS=$ALL_COMPONENTS run_setup
expect "exit status 0 (got $RC)" test "$RC" -eq 0
expect "apt-get update once" test "$(ncalls 'apt-get -q update')" -eq 1
expect "installs qemu-system-arm from bookworm-backports" called "$BACKPORTS_INSTALL"
expect "installs device-tree-compiler" called "$DTC_INSTALL"
expect "installs grub-common" called "apt-get -q -y install --no-install-recommends grub-common"
expect "installs g++ (no c++)" called "apt-get install -y -q g++"
expect "writes the deb822 backports source" \
    grep -qx 'Suites: bookworm-backports' "$C/etc/apt/sources.list.d/bookworm-backports.sources"
expect "says it installs QEMU" grep -q 'installing qemu-system-arm from bookworm-backports' <<<"$OUT"
expect "reports the installed version" grep -q 'installed QEMU emulator version 10.0.2' <<<"$OUT"
expect "adds no rust target" not_called "target add"
finish "fresh machine: installs qemu-system-arm (backports) and dtc"

# 2. A too-old QEMU (bookworm's 7.2), dtc present, backports already in sources.list.
new_case
qemu_stub 7.2.15
dtc_stub
echo "deb http://deb.debian.org/debian bookworm-backports main" >>"$C/etc/apt/sources.list"
STUB_QEMU_AFTER=9.2.0 STUB_TARGETS=$ALL_TARGETS STUB_COMPONENTS=$ALL_COMPONENTS run_setup
expect "exit status 0 (got $RC)" test "$RC" -eq 0
expect "says 7 is too old" grep -q 'version 7 is too old' <<<"$OUT"
expect "installs qemu-system-arm from bookworm-backports" called "$BACKPORTS_INSTALL"
expect "does not install dtc" not_called device-tree-compiler
expect "does not install grub-common" not_called grub-common
expect "does not add a second backports source" test ! -e "$C/etc/apt/sources.list.d/bookworm-backports.sources"
finish "QEMU 7.2 is too old: upgraded from backports"

# 3. Everything present: no apt-get at all.
new_case
qemu_stub 10.0.2
dtc_stub
echo "deb http://deb.debian.org/debian bookworm-backports main" >>"$C/etc/apt/sources.list"
STUB_TARGETS=$ALL_TARGETS STUB_COMPONENTS=$ALL_COMPONENTS run_setup
expect "exit status 0 (got $RC)" test "$RC" -eq 0
expect "no apt-get call" not_called apt-get
expect "no cargo install" not_called "cargo install"
finish "everything present: installs nothing"

# 4. The install does not bring a new-enough QEMU: setup.sh must fail and say so.
new_case
qemu_stub 8.2.0
dtc_stub
STUB_QEMU_AFTER=8.2.0 STUB_TARGETS=$ALL_TARGETS STUB_COMPONENTS=$ALL_COMPONENTS run_setup
expect "non-zero exit status (got $RC)" test "$RC" -ne 0
expect "names the problem" grep -q 'still missing or older than 9' <<<"$OUT"
finish "install leaves QEMU 8: setup fails"

# 5. Rust targets and components missing: added through rustup.
new_case
qemu_stub 10.0.2
dtc_stub
STUB_TARGETS="" STUB_COMPONENTS="" run_setup
expect "exit status 0 (got $RC)" test "$RC" -eq 0
expect "adds the targets: $ALL_TARGETS" called "rustup +$TOOLCHAIN target add $(echo $ALL_TARGETS)"
expect "adds the components: $ALL_COMPONENTS" called "rustup +$TOOLCHAIN component add $(echo $ALL_COMPONENTS)"
finish "missing rust targets/components are added"

# 6. cargo-fuzz missing (or another version): the pinned one is installed.
new_case
qemu_stub 10.0.2
dtc_stub
STUB_CARGO_FUZZ=none STUB_TARGETS=$ALL_TARGETS STUB_COMPONENTS=$ALL_COMPONENTS run_setup
expect "exit status 0 (got $RC)" test "$RC" -eq 0
expect "installs the pinned cargo-fuzz" grep -q "^cargo +$TOOLCHAIN install cargo-fuzz --version [0-9.]* --locked$" "$C/calls"
finish "cargo-fuzz missing: installed, pinned"

echo "test-setup: $passed passed, $failed failed${fails:+ (${fails[*]})}"
[ "$failed" -eq 0 ]
