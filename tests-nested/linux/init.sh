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
poweroff -f
