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
    # (A subshell: a failed redirection of a special built-in ends a non-interactive shell.)
    if ( : </dev/hvc0 ) 2>/dev/null; then
        sh </dev/hvc0 >/dev/hvc0 2>&1
    else
        # No PV console (a Xen 4.20 dom0less domU with vpl011, console=ttyAMA0:
        # tests-nested/xen/lib.sh's domus mode on Xen): the console /init has.
        sh
    fi
fi
poweroff -f
