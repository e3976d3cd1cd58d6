#!/bin/sh
# /init of the rig's L1 initramfs (busybox-static). KVM is built into Debian's kernel
# (CONFIG_KVM=y), so nothing is loaded: mount, report what KVM says, run the VMM, power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "RIG: L1 $(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s"
dmesg | grep -E 'kvm \[|KVM|IPA Size|Nested' | sed 's/^/RIG: dmesg: /'
[ -c /dev/kvm ] || echo "RIG: no /dev/kvm"
. /rig/args
echo "RIG: vmm $*"
if [ "${TRACE_EXITS:-0}" = 1 ]; then
    # --trace-exits: a histogram of the VM's traps to this (L1) KVM by (exit code, exception
    # class, PC), kept in the kernel (hist triggers take at most 3 keys; a trapped system
    # register is named from the instruction at its PC).
    T=/sys/kernel/tracing
    mount -t tracefs nodev $T 2>/dev/null
    echo 'hist:keys=ret,esr_ec,vcpu_pc:size=16384' >$T/events/kvm/kvm_exit/trigger ||
        echo "RIG: trace: no hist trigger on kvm_exit"
fi
t0=$(cut -d' ' -f1 /proc/uptime)
/rig/vmm "$@"
rc=$?
if [ "${TRACE_EXITS:-0}" = 1 ]; then
    grep -v '^#' $T/events/kvm/kvm_exit/hist | grep . | sed 's/^/RIG: hist kvm_exit: /'
fi
echo "RIG: vmm exit $rc after $(cut -d' ' -f1 /proc/uptime) s (started at $t0 s)"
poweroff -f
