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
#
# Needs what `hvrun build` builds (target/hvrun/hv.bin); QEMU, dtc.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:?usage: ci/qemu-boot.sh addresses|console|smp N [--no-build]}"
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

case "$mode" in
console) console ;;
addresses) addresses ;;
smp) smp ;;
*) echo "qemu-boot: unknown mode $mode" >&2; exit 2 ;;
esac
[ "$fail" = 0 ]
