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
t0=$(cut -d' ' -f1 /proc/uptime)
/rig/vmm "$@"
rc=$?
echo "RIG: vmm exit $rc after $(cut -d' ' -f1 /proc/uptime) s (started at $t0 s)"
poweroff -f
