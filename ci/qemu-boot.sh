#!/usr/bin/env bash
# Boot hv the ways real firmware and bootloaders do, not only where QEMU's
# -kernel puts it (issue 15).
#
#   ci/qemu-boot.sh addresses [--no-build]   hv.bin loaded with `-device loader` at three
#       2 MiB-aligned addresses other than where -kernel puts it (0x40200000), entered at
#       EL2 through a 32-byte stub that sets x0 = DTB, x1..x3 = 0 (booting.rst) and
#       branches to hv; the demo guest must pass, hv must say where it runs, and the
#       Image header's image_size/flags must be true.
#   ci/qemu-boot.sh smp N [--no-build]        the demo on -smp N: "N CPUs online".
#   ci/qemu-boot.sh console [--no-build]      two PL011s, only the second one wired to the log:
#       hv must find it from `dtuart=serial1` (an alias) in xen,xen-bootargs, from
#       `dtuart=/pl011@9040000:115200n8` (a path with options), and from /chosen/stdout-path
#       with no dtuart=, as Xen's dt-uart.c does.
#   ci/qemu-boot.sh uefi [--no-build]         Debian's edk2 (qemu-efi-aarch64) and GRUB
#       (grub-efi-arm64-bin; pinned .debs, SHA-256 checked, cached in .cache/uefi; the GRUB EFI
#       image is built with the host's grub-mkimage from the package's modules):
#       (a) GRUB `xen_hypervisor /hv loglvl=info; xen_module /guest-hello.bin` boots hv, which
#           runs the module as d0 (Xen's rule: the first kernel module is dom0;
#           -M virt,acpi=off: edk2 then offers the DT);
#       (b) hv itself as \EFI\BOOT\BOOTAA64.EFI (firmware's DT, embedded demo guest);
#       (c) the same with ACPI on (edk2 offers only ACPI): hv must say so and stop.
#
# Needs what `hvrun build` builds (target/hvrun/hv.bin); QEMU, dtc.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:?usage: ci/qemu-boot.sh addresses|console|uefi|smp N [--no-build]}"
shift
smp_n=2
if [ "$mode" = smp ]; then
    smp_n="${1:?usage: ci/qemu-boot.sh smp N}"
    shift
fi
build=1
for a in "$@"; do
    case "$a" in
    --no-build) build=0 ;;
    *) echo "qemu-boot: unknown option $a" >&2; exit 2 ;;
    esac
done
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
target="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
out="$target/hvrun/boot"
mkdir -p "$out"
if [ "$build" = 1 ]; then
    cargo run -q -p tests-nested --bin hvrun -- build
fi
hv="${HV_BIN:-$target/hvrun/hv.bin}"   # HV_BIN: another hv.bin (e.g. an older build)
[ -f "$hv" ] || { echo "qemu-boot: $hv missing (run hvrun build)" >&2; exit 1; }

MACHINE="virt,virtualization=on,gic-version=3"
QEMU=(qemu-system-aarch64 -cpu max -nic none -nographic -no-reboot)

# Little-endian 32/64-bit values as printf escapes.
le32() { local v=$(($1)); printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((v & 255)) $((v >> 8 & 255)) $((v >> 16 & 255)) $((v >> 24 & 255)); }
le64() { le32 $(($1 & 0xffffffff)); le32 $(($1 >> 32)); }
# Read a little-endian 64-bit field of a file at a byte offset.
rd64() { od -An -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }

fail=0
check_log() { # log, description, fixed strings that must appear in order
    local log="$1" what="$2"
    shift 2
    local line=0 m n
    for m in "$@"; do
        n="$(grep -nF -- "$m" "$log" | cut -d: -f1 | awk -v after="$line" '$1 >= after { print; exit }')"
        if [ -z "$n" ]; then
            echo "qemu-boot: FAIL $what: missing (in order) \"$m\" in $log"
            fail=1
            return 1
        fi
        line="$n"
    done
    echo "qemu-boot: PASS $what ($# markers)"
}

run_qemu() { # log, timeout, qemu args...
    local log="$1" t="$2"
    shift 2
    echo "# ${QEMU[*]} $*" >"$log"
    local t0=$SECONDS rc=0
    timeout "$t" "${QEMU[@]}" "$@" </dev/null >>"$log" 2>&1 || rc=$?
    echo "qemu-boot: QEMU exit $rc after $((SECONDS - t0))s ($log)"
    return "$rc"
}

header_checks() {
    # booting.rst: flags bit 3 = 1 (any 2 MiB-aligned base), 4K pages, LE;
    # image_size covers the file and bss/stacks (page multiple).
    local flags size filesz
    flags="$(rd64 "$hv" 24)"
    size="$(rd64 "$hv" 16)"
    filesz="$(stat -c %s "$hv")"
    if [ "$flags" != 10 ]; then echo "qemu-boot: FAIL header flags $flags (want 0xa)"; fail=1; fi
    if [ "$size" -lt "$filesz" ] || [ $((size % 4096)) -ne 0 ]; then
        echo "qemu-boot: FAIL header image_size $size vs file $filesz"; fail=1
    else
        echo "qemu-boot: PASS header: flags 0xa, image_size $size >= file $filesz"
    fi
}

addresses() {
    header_checks
    local dtb="$out/virt-2g.dtb"
    "${QEMU[@]}" -M "$MACHINE,dumpdtb=$dtb" -smp 2 -m 2G >/dev/null 2>&1
    local dtb_at=0x41000000 stub_at=0x40200000
    # 2 MiB-aligned, none the -kernel address: low RAM, the 2 GiB line, near the top of 2 GiB.
    for at in 0x44600000 0x80000000 0xbfc00000; do
        local stub="$out/stub-$at.bin" log="$out/addr-$at.log"
        # ldr x0, =dtb; mov x1..x3, xzr; ldr x4, =hv; br x4; .quad dtb; .quad hv
        printf "$(le32 0x580000c0)$(le32 0xaa1f03e1)$(le32 0xaa1f03e2)$(le32 0xaa1f03e3)$(le32 0x58000084)$(le32 0xd61f0080)$(le64 $dtb_at)$(le64 $at)" >"$stub"
        run_qemu "$log" 60 -M "$MACHINE" -smp 2 -m 2G \
            -device "loader,file=$hv,addr=$at,force-raw=on" \
            -device "loader,file=$dtb,addr=$dtb_at,force-raw=on" \
            -device "loader,file=$stub,addr=$stub_at,force-raw=on,cpu-num=0" || { fail=1; continue; }
        check_log "$log" "hv loaded at $at" \
            "hv: hv " "image at $(printf '%#x' "$at").." "DTB at $dtb_at" "CPU1 online" "2 CPUs online" \
            "(d1) guest-hello: all checks passed" "hv: all domains ended, powering off" || true
    done
}

smp() {
    local n="$smp_n" log="$out/smp$smp_n.log" t0=$SECONDS
    run_qemu "$log" 300 -M "$MACHINE" -smp "$n" -m 1G -kernel "$hv" || fail=1
    check_log "$log" "-smp $n demo" "hv: hv " "$n CPUs in the DTB" "CPU$((n - 1)) online" "$n CPUs online" \
        "(d1) guest-hello: all checks passed" "hv: all domains ended, powering off" || true
    echo "qemu-boot: -smp $n took $((SECONDS - t0))s"
}

console() {
    local base="$out/virt-2uart.dtb"
    "${QEMU[@]}" -M "$MACHINE,dumpdtb=$base" -smp 1 -m 1G -serial null -serial null >/dev/null 2>&1
    local name how
    for how in "dtuart=serial1" "dtuart=/pl011@9040000:115200n8" "stdout-path=serial1"; do
        name="${how//[^a-z0-9]/_}"
        local dtb="$out/console-$name.dtb" log="$out/console-$name.log"
        cp "$base" "$dtb"
        case "$how" in
        dtuart=*) fdtput -t s "$dtb" /chosen xen,xen-bootargs "loglvl=info $how" ;;
        stdout-path=*) fdtput -t s "$dtb" /chosen stdout-path "${how#stdout-path=}" ;;
        esac
        # Only the second UART reaches the log: the first goes nowhere.
        echo "# -serial null -serial stdio -kernel $hv -dtb $dtb" >"$log"
        timeout 120 qemu-system-aarch64 -M "$MACHINE" -cpu max -nic none -display none -monitor none \
            -no-reboot -smp 1 -m 1G -serial null -serial stdio -kernel "$hv" -dtb "$dtb" \
            </dev/null >>"$log" 2>&1 || { echo "qemu-boot: FAIL QEMU ($log)"; fail=1; continue; }
        local want
        case "$how" in
        dtuart=serial1) want="(dtuart=serial1)" ;;
        dtuart=/*) want="(dtuart=/pl011@9040000)" ;;
        *) want="(stdout-path serial1)" ;;
        esac
        check_log "$log" "console from $how" "hv: hv " "console: PL011 at 0x9040000 $want" \
            "(d1) guest-hello: all checks passed" "hv: all domains ended, powering off" || true
    done
}

# --- UEFI ------------------------------------------------------------------------
UEFI_CACHE="${UEFI_CACHE:-$PWD/.cache/uefi}"
KEYRING="${UEFI_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
MIRROR="${UEFI_MIRROR:-http://deb.debian.org/debian}"
# name version sha256 (trixie)
EDK2_DEB=(qemu-efi-aarch64 2025.02-8+deb13u1 a00b2411a79c8aeafd95a7c868ac3cd1aab592f1af9fff965f02d81a625276ed)
GRUB_DEB=(grub-efi-arm64-bin 2.12-9+deb13u4 d2e8ae88ea1abf550dacab4747ab88d8c1a91b9afbd5d234ee76e664cb5d2e86)

uefi_fetch() { # name version sha256 -> path of the verified (or, if gone, newest) .deb
    local name="$1" ver="$2" sha="$3" a="$UEFI_CACHE/apt" f
    f="$(ls "$UEFI_CACHE/debs/${name}_${ver#*:}_"*.deb 2>/dev/null | head -n1 || true)"
    if [ -n "$f" ] && [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sha" ]; then echo "$f"; return; fi
    mkdir -p "$a/state/lists/partial" "$a/cache/archives/partial" "$a/etc/sources.list.d" \
        "$a/etc/preferences.d" "$a/etc/apt.conf.d" "$UEFI_CACHE/debs"
    : >"$a/status"
    echo "deb [arch=arm64 signed-by=$KEYRING] $MIRROR trixie main" >"$a/etc/sources.list"
    local o=(-o "Dir=$a" -o "Dir::State=$a/state" -o "Dir::State::status=$a/status"
        -o "Dir::Cache=$a/cache" -o "Dir::Etc=$a/etc" -o "Dir::Etc::sourcelist=$a/etc/sources.list"
        -o "Dir::Etc::sourceparts=$a/etc/sources.list.d" -o "Dir::Etc::preferencesparts=$a/etc/preferences.d"
        -o "Dir::Etc::parts=$a/etc/apt.conf.d" -o "APT::Architecture=arm64" -o "APT::Architectures=arm64"
        -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
    [ -f "$a/.updated" ] || { apt-get -q "${o[@]}" update >&2 && touch "$a/.updated"; }
    local tmp
    tmp="$(mktemp -d "$UEFI_CACHE/dl.XXXXXX")"
    if ! (cd "$tmp" && apt-get -q "${o[@]}" download "$name=$ver" >&2); then
        echo "qemu-boot: $name $ver has left the mirror; taking the newest (unpinned)" >&2
        (cd "$tmp" && apt-get -q "${o[@]}" download "$name" >&2)
        sha=""
    fi
    f="$UEFI_CACHE/debs/$(basename "$(ls "$tmp"/*.deb)")"
    mv "$tmp"/*.deb "$f"
    rmdir "$tmp"
    local have
    have="$(sha256sum "$f" | cut -d' ' -f1)"
    if [ -n "$sha" ] && [ "$have" != "$sha" ]; then
        echo "qemu-boot: SHA-256 mismatch for $f: expected $sha, got $have" >&2
        rm -f "$f"
        return 1
    fi
    [ -n "$sha" ] || echo "qemu-boot: SHA-256 of $(basename "$f"): $have" >&2
    echo "$f"
}

# run_watch LOG TIMEOUT OK-LINE QEMU-ARGS...: run QEMU until it exits or LOG has OK-LINE
# (then QEMU, started here, is stopped by its PID); fails on timeout.
run_watch() {
    local log="$1" t="$2" ok="$3"
    shift 3
    echo "# qemu-system-aarch64 $*" >"$log"
    qemu-system-aarch64 "$@" </dev/null >>"$log" 2>&1 &
    local pid=$! t0=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        if [ -n "$ok" ] && grep -aqF -- "$ok" "$log"; then
            kill "$pid" 2>/dev/null || true
            break
        fi
        if [ $((SECONDS - t0)) -ge "$t" ]; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            echo "qemu-boot: FAIL timeout after ${t}s ($log)"
            return 1
        fi
        sleep 1
    done
    wait "$pid" 2>/dev/null || true
    echo "qemu-boot: QEMU done after $((SECONDS - t0))s ($log)"
}

uefi() {
    command -v grub-mkimage >/dev/null || { echo "qemu-boot: grub-mkimage missing (ci/setup.sh installs grub-common)"; return 1; }
    local edk2 grub x="$UEFI_CACHE/x"
    edk2="$(uefi_fetch "${EDK2_DEB[@]}")" || return 1
    grub="$(uefi_fetch "${GRUB_DEB[@]}")" || return 1
    for d in "$edk2" "$grub"; do
        local dir
        dir="$x/$(basename "$d" .deb)"
        [ -f "$dir/.done" ] || { rm -rf "$dir"; mkdir -p "$dir"; dpkg-deb -x "$d" "$dir"; touch "$dir/.done"; }
    done
    local fw mods
    fw="$(ls "$x"/qemu-efi-aarch64_*/usr/share/qemu-efi-aarch64/QEMU_EFI.fd | head -n1)"
    mods="$(ls -d "$x"/grub-efi-arm64-bin_*/usr/lib/grub/arm64-efi | head -n1)"
    local guest
    guest="$(dirname "$hv")/guest-hello.bin"
    [ -f "$guest" ] || guest="$target/hvrun/guest-hello.bin"

    # (a) GRUB: the entry a Xen user writes, with hv in Xen's place.
    local esp="$out/esp-grub" cfg="$out/grub-early.cfg"
    rm -rf "$esp"
    mkdir -p "$esp/EFI/BOOT"
    cp "$hv" "$esp/hv"
    cp "$guest" "$esp/guest-hello.bin"
    cat >"$cfg" <<'CFG'
set timeout=0
search --no-floppy --file --set=root /hv
echo "grub: xen_hypervisor /hv loglvl=info"
xen_hypervisor /hv loglvl=info
echo "grub: xen_module /guest-hello.bin"
xen_module /guest-hello.bin
boot
CFG
    grub-mkimage -d "$mods" -O arm64-efi -o "$esp/EFI/BOOT/BOOTAA64.EFI" -c "$cfg" -p /EFI/BOOT \
        fat part_gpt part_msdos normal echo search search_fs_file xen_boot fdt boot || return 1
    local m=(-cpu max -smp 2 -m 1G -nic none -nographic -no-reboot -bios "$fw")
    local log="$out/uefi-grub.log"
    run_watch "$log" 300 "" -M "$MACHINE,acpi=off" "${m[@]}" -drive "file=fat:rw:$esp,format=raw,if=virtio" || fail=1
    check_log "$log" "edk2 + GRUB xen_hypervisor/xen_module" "grub: xen_module /guest-hello.bin" \
        "hv: UEFI: device tree found, exiting boot services" "hv: hv " "command line: \"loglvl=info\"" \
        "CPU1 online" "(d0) guest-hello: all checks passed" "hv: all domains ended, powering off" || true
    if grep -aqF "no boot modules" "$log"; then
        echo "qemu-boot: FAIL hv ran its embedded guest, not GRUB's module ($log)"
        fail=1
    fi

    # (b) hv as the firmware's boot application, with the DT.
    esp="$out/esp-efi"
    rm -rf "$esp"
    mkdir -p "$esp/EFI/BOOT"
    cp "$hv" "$esp/EFI/BOOT/BOOTAA64.EFI"
    log="$out/uefi-direct.log"
    run_watch "$log" 300 "" -M "$MACHINE,acpi=off" "${m[@]}" -drive "file=fat:rw:$esp,format=raw,if=virtio" || fail=1
    check_log "$log" "hv as an EFI application (DT)" "hv: UEFI: device tree found" "hv: hv " \
        "(d1) guest-hello: all checks passed" "hv: all domains ended, powering off" || true

    # (c) ACPI only: hv says so and stops (the firmware gets EFI_UNSUPPORTED back).
    log="$out/uefi-acpi.log"
    local acpi="the firmware offers only ACPI"
    run_watch "$log" 300 "$acpi" -M "$MACHINE" "${m[@]}" -drive "file=fat:rw:$esp,format=raw,if=virtio" || fail=1
    check_log "$log" "ACPI-only firmware refused" "$acpi" "hv needs a DTB (QEMU: -M virt,acpi=off); stopping" || true
    if grep -aqF "hv: hv " "$log"; then echo "qemu-boot: FAIL hv booted on ACPI-only firmware"; fail=1; fi
}

case "$mode" in
uefi) uefi ;;
console) console ;;
addresses) addresses ;;
smp) smp ;;
*) echo "qemu-boot: unknown mode $mode" >&2; exit 2 ;;
esac
[ "$fail" = 0 ]
