#!/usr/bin/env bash
# Nested Linux boot benchmark (issue 14 item 4), one L1 boot of the rig with QEMU as L1's VMM:
#   (a) hv at vEL2 (QEMU -accel kvm -M virt,virtualization=on) booting Debian's kernel + the
#       HV-LINUX-MARKER initramfs as a dom0less domU (the DTB of ci/qemu-linux.sh);
#   (b) the same kernel + initramfs as a plain KVM guest of L1 (QEMU -accel kvm, no hv).
# Prints, for each, the L1 seconds from QEMU's start to the marker and the traps to L0 (KVM exits
# of the VM, debugfs via rig-kvm-stamp, console MMIO excluded), and the ratio (a)/(b); goal <= 1.3x.
# Usage: tests-nested/rig/linux-bench.sh [--trace-exits] [--log FILE]   (run it under the QEMU lock)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
WORK=$CARGO_TARGET_DIR/linux-bench
mkdir -p "$WORK"
LOG=$WORK/linux-bench.log EXTRA=()
while [ $# -gt 0 ]; do
    case $1 in
        --trace-exits) EXTRA+=(--trace-exits); shift ;;
        --log) LOG=$2; shift 2 ;;
        *) echo "usage: $0 [--trace-exits] [--log FILE]" >&2; exit 2 ;;
    esac
done
eval "$("$REPO/tests-nested/linux/build.sh")"   # LINUX_IMAGE, LINUX_INITRD
( cd "$REPO" && cargo build -q --release --target aarch64-unknown-none -p hv )
OBJCOPY=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy
"$OBJCOPY" -O binary "$CARGO_TARGET_DIR/aarch64-unknown-none/release/hv" "$WORK/hv.bin"
KADDR=0x50000000 RADDR=0x54000000 MEM=1G
KSIZE=$(stat -c %s "$LINUX_IMAGE") RSIZE=$(stat -c %s "$LINUX_INITRD")
ARGS="console=hvc0 earlycon=xenboot rdinit=/init panic=-1 loglevel=7"
# The bare-QEMU DTB with /chosen/domU1 (Xen's dom0less binding), as ci/qemu-linux.sh writes it.
qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -smp 1 -m $MEM -nic none \
    -machine dumpdtb="$WORK/base.dtb" -nographic >/dev/null 2>&1
dtc -q -I dtb -O dts "$WORK/base.dtb" | awk -v ks="$KSIZE" -v rs="$RSIZE" -v args="$ARGS" \
    -v ka="$KADDR" -v ra="$RADDR" '
    /^\tchosen \{/ && !done { inchosen = 1; print; print "\t\txen,xen-bootargs = \"loglvl=info\";"; next }
    inchosen && /^\t\};/ {
        print "\t\tdomU1 {"; print "\t\t\tcompatible = \"xen,domain\";"
        print "\t\t\t#address-cells = <0x1>;"; print "\t\t\t#size-cells = <0x1>;"
        print "\t\t\tmemory = <0x0 0x40000>;"; print "\t\t\tcpus = <1>;"
        printf "\t\t\tmodule@%s {\n", substr(ka, 3)
        print "\t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";"
        printf "\t\t\t\treg = <%s %s>;\n", ka, ks; printf "\t\t\t\tbootargs = \"%s\";\n", args
        print "\t\t\t};"
        printf "\t\t\tmodule@%s {\n", substr(ra, 3)
        print "\t\t\t\tcompatible = \"multiboot,ramdisk\", \"multiboot,module\";"
        printf "\t\t\t\treg = <%s %s>;\n", ra, rs; print "\t\t\t};"; print "\t\t};"
        inchosen = 0; done = 1
    }
    { print }' | dtc -q -I dts -O dtb -o "$WORK/hv-domu.dtb" -
COMMON="-accel kvm -cpu host -smp 1 -m $MEM -display none -serial stdio -monitor none -nic none -no-reboot"
set +e
"$REPO/tests-nested/rig/run.sh" --l1-vmm qemu --exit-stamps --quiet --log "$LOG" --timeout 600 \
    ${EXTRA[@]+"${EXTRA[@]}"} \
    --file hv=$WORK/hv.bin --file dtb=$WORK/hv-domu.dtb --file linux=$LINUX_IMAGE --file initrd=$LINUX_INITRD \
    --qemu-run hv "-M virt,virtualization=on,gic-version=3 $COMMON -kernel /rig/hv -dtb /rig/dtb -device loader,file=/rig/linux,addr=$KADDR,force-raw=on -device loader,file=/rig/initrd,addr=$RADDR,force-raw=on" \
    --qemu-run kvm "-M virt,gic-version=3 $COMMON -kernel /rig/linux -initrd /rig/initrd -append console=ttyAMA0@SP@rdinit=/init@SP@panic=-1" \
    --expect "(d1) HV-LINUX-MARKER" --expect "HV-LINUX-MARKER up after"
rc=$?
set -e
# Per run: seconds since QEMU started (rig-kvm-stamp starts with it) and L0= (the VM's traps to
# L0 so far; the VM is new, so it starts at 0) on the marker's line.
report() {
    awk -v run="$1" -v pat="$2" '
        index($0, "RIG: vmm " run ": ") { on = 1; next }
        on && index($0, pat) && match($0, /^\[ *[0-9.]+ L0=[0-9]+\]/) {
            h = substr($0, 2, RLENGTH - 2); split(h, f, " "); sub(/L0=/, "", f[2])
            printf "%s %.3f %d\n", run, f[1], f[2]; exit
        }' "$LOG"
}
a=$(report hv "(d1) HV-LINUX-MARKER") b=$(report kvm "HV-LINUX-MARKER up after")
echo "[linux-bench] (a) hv domU:  ${a:-no marker}  (name, s from QEMU's start to the marker, traps to L0 until then)"
echo "[linux-bench] (b) KVM guest: ${b:-no marker}"
if [ -n "$a" ] && [ -n "$b" ]; then
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        printf "[linux-bench] hv nested / plain KVM: time %.2fx, traps to L0 %.2fx (goal <= 1.3x)\n", x[2] / y[2], x[3] / y[3] }'
fi
grep -E "^RIG: (kvm|exits) " "$LOG" || true
echo "[linux-bench] log: $LOG"
exit $rc
