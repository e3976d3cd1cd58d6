# Shared by ci/qemu-linux.sh and ci/qemu-console.sh (sourced, not run): Debian's arm64 kernel
# booted as dom0less domU(s) under hv on bare QEMU (TCG, EL2).
#
# linux_setup NAME: cd to the repository, WORK=$CARGO_TARGET_DIR/qemu-NAME, QEMU.
# linux_build LABEL: the kernel and initramfs (LINUX_IMAGE, LINUX_INITRD, KSIZE, RSIZE; loaded at
#   KADDR, RADDR) and hv's flat binary ($WORK/hv.bin).
# dom0less_dtb NAME VCPUS MEM_KIB NDOM QEMU_MACHINE_ARGS...: QEMU's own DTB for that machine plus
#   Xen's dom0less binding for NDOM domUs -> $WORK/NAME.dtb (reads HV_ARGS, ARGS, TOOBIG_MIB).

now() { date +%s; }

linux_setup() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    REPO=$PWD
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
    QEMU=${QEMU:-qemu-system-aarch64}
    WORK=$CARGO_TARGET_DIR/qemu-$1
    mkdir -p "$WORK"
}

linux_build() {
    local t
    eval "$(tests-nested/linux/build.sh)"   # LINUX_IMAGE, LINUX_INITRD
    t=$(now)
    cargo build -q --release --target aarch64-unknown-none -p hv
    local objcopy
    objcopy=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy
    "$objcopy" -O binary "$CARGO_TARGET_DIR/aarch64-unknown-none/release/hv" "$WORK/hv.bin"
    echo "[$1] hv built in $(( $(now) - t )) s" >&2
    KADDR=0x50000000
    RADDR=0x54000000
    KSIZE=$(stat -c %s "$LINUX_IMAGE")
    RSIZE=$(stat -c %s "$LINUX_INITRD")
}

dom0less_dtb() {
    local name=$1 vcpus=$2 mem=$3 ndom=$4
    shift 4
    "$QEMU" "$@" -machine dumpdtb="$WORK/$name-base.dtb" -display none >/dev/null 2>&1
    dtc -q -I dtb -O dts "$WORK/$name-base.dtb" >"$WORK/$name-base.dts"
    # Xen's dom0less binding: /chosen/domU<n> (xen,domain; memory in KiB; cpus) with its kernel
    # and ramdisk modules; hv's own command line in xen,xen-bootargs.
    # Every domU boots the same kernel and initramfs modules (hv copies them into each domain).
    awk -v hvargs="${HV_ARGS:-loglvl=info}" -v ks="$KSIZE" -v rs="$RSIZE" -v args="$ARGS" -v cpus="$vcpus" \
        -v ka="$KADDR" -v ra="$RADDR" -v mem="$mem" -v ndom="$ndom" -v big="${TOOBIG_MIB:-}" '
        function domu(n, m, c, ramdisk) {
            print "\t\tdomU" n " {"
            print "\t\t\tcompatible = \"xen,domain\";"
            print "\t\t\t#address-cells = <0x1>;"
            print "\t\t\t#size-cells = <0x1>;"
            printf "\t\t\tmemory = <0x0 %s>;\n", m
            printf "\t\t\tcpus = <%d>;\n", c
            printf "\t\t\tmodule@%s {\n", substr(ka, 3)
            print "\t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";"
            printf "\t\t\t\treg = <%s %s>;\n", ka, ks
            printf "\t\t\t\tbootargs = \"%s\";\n", args
            print "\t\t\t};"
            if (ramdisk) {
                printf "\t\t\tmodule@%s {\n", substr(ra, 3)
                print "\t\t\t\tcompatible = \"multiboot,ramdisk\", \"multiboot,module\";"
                printf "\t\t\t\treg = <%s %s>;\n", ra, rs
                print "\t\t\t};"
            }
            print "\t\t};"
        }
        /^\tchosen \{/ && !done { inchosen = 1; print; print "\t\txen,xen-bootargs = \"" hvargs "\";"; next }
        inchosen && /^\t\};/ {
            for (d = 1; d <= ndom; d++) domu(d, mem, cpus, 1)
            # One more domU with the kernel only and more RAM than is free.
            if (big != "") domu(ndom + 1, sprintf("0x%x", big * 1024), 1, 0)
            inchosen = 0; done = 1
        }
        { print }
        ' "$WORK/$name-base.dts" >"$WORK/$name.dts"
    grep -q 'domU1' "$WORK/$name.dts" || { echo "[$name] no /chosen in QEMU's DTB" >&2; return 1; }
    dtc -q -I dts -O dtb -o "$WORK/$name.dtb" "$WORK/$name.dts"
}
