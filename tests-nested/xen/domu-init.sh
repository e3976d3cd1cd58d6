#!/bin/sh
# /init of the domU that dom0 creates with `xl create` (issue 12; tests-nested/xen/xl.sh):
# busybox-static only. Prints "DOMU: /init reached ..." on the console (hvc0: the PV console
# ring that xenconsoled reads and logs to /var/log/xen/console/guest-<name>.log in dom0), then
# by the kernel command-line word:
#   domu.poweroff   power off at once (poweroff -f: SCHEDOP_shutdown(poweroff))
#   domu.pv=PART    issue 13: run /usr/lib/pv.sh (domu-pv.sh: PV disk / network parts)
#   (default)       wait: dom0 ends the domain with `xl shutdown` (the kernel's xenbus watch
#                   on control/shutdown runs /sbin/poweroff, drivers/xen/manage.c
#                   do_poweroff -> orderly_poweroff) or `xl destroy`.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "DOMU: /init reached t=$(cut -d' ' -f1 /proc/uptime) on $(uname -r) nproc=$(nproc) mem_kb=$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)"
# Issue 13's PV test (initrd-pv.cpio of build-domu.sh DOMU_PV=1 has /usr/lib/pv.sh, domu-pv.sh).
case " $(cat /proc/cmdline) " in
    *" domu.pv="*) [ -r /usr/lib/pv.sh ] && exec sh /usr/lib/pv.sh
                   echo "DOMU: FAIL domu.pv= given but this initrd has no /usr/lib/pv.sh" ;;
esac
if grep -qw domu.poweroff /proc/cmdline; then
    echo "DOMU: poweroff"
    poweroff -f
fi
echo "DOMU: waiting"
while :; do sleep 3600; done
