#!/bin/sh
# /init of the Linux-guest initramfs (busybox-static): print the marker and
# the CPU count through the console (hvc0, Xen's PV console ring), power off
# (poweroff -f: the kernel's power-off path, SCHEDOP_shutdown in a Xen domU).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "HV-LINUX-MARKER up after $(cut -d' ' -f1 /proc/uptime) s on $(uname -r)"
echo "HV-LINUX-NPROC=$(nproc)"
# `hv.shell` on the kernel command line (ci/qemu-console.sh): a shell on the
# console (commands typed into hv's serial reach hvc0 through the console
# ring's in[]); the run ends when it exits.
if grep -qw hv.shell /proc/cmdline; then
    echo "HV-LINUX-SHELL ready"
    sh </dev/hvc0 >/dev/hvc0 2>&1
fi
poweroff -f
