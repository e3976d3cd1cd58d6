#!/bin/sh
# /init of the dom0 image (busybox-static + Debian's xen-utils-4.20). The same image boots under
# Debian's Xen 4.20 (the peer, tests-nested/xen/run-peer.sh) and under hv. Markers, in order:
#   DOM0: /init reached        DOM0: modules loaded        DOM0: xenfs mounted
#   DOM0: xenstored up         DOM0: xen-init-dom0 done    DOM0: xenconsoled up
#   DOM0: disk ok <content>    (or "DOM0: disk none" when there is no /dev/vda)
#   DOM0: xenfs mounted        DOM0: xenstored up          DOM0: xen-init-dom0 done
#   DOM0: xenconsoled up       DOM0: xl info begin/end     DOM0: xl list begin/end
#   DOM0: xl dmesg begin/end   DOM0: done
# each with dom0's uptime ("t=<s>"). A failing step prints "DOM0: FAIL <step> ..." and goes on
# to power off. The disk: a passed-through virtio-mmio virtio-blk disk (/dev/vda) holding an
# ext4 file system whose file /token the test wrote (tests-nested/xen/lib.sh, dom0_disk).
# Kernel command-line words: dom0.shell (a shell on the console, then the power-off when it
# exits), dom0.noxl (stop after the daemons), dom0.xl (issue 12: after `xl dmesg`, the `xl
# create` test of /usr/lib/hvtest/dom0-xl.sh, tests-nested/xen/xl.sh), dom0.pv (issue 13: after
# `xl dmesg`, the PV disk and network test of /usr/lib/hvtest/dom0-pv.sh, tests-nested/xen/pv.sh),
# dom0.panic (crash the kernel through sysrq 'c' instead of powering off).
/bin/busybox --install -s /bin
export PATH=/bin:/usr/lib/xen-4.20/bin:/usr/bin
export LD_LIBRARY_PATH=/usr/lib/aarch64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
# xenconsoled creates a pty per guest console: devpts must be mounted.
mount -t devpts devpts /dev/pts
# What udev would make and devtmpfs does not: Xen's hotplug scripts (locking.sh) stat /dev/stdin.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin; ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
# e2fsprogs (mke2fs, e2fsck) look for mounted file systems in /etc/mtab.
ln -sf /proc/self/mounts /etc/mtab
mkdir -p /var/run/xen /var/run/xenstored /var/lib/xen/xenstore /var/log/xen
up() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "DOM0: $* t=$(up)"; }
fail() { echo "DOM0: FAIL $*"; FAILED=1; }
FAILED=0
mark "/init reached on $(uname -r)"
case " $(cat /proc/cmdline) " in *" dom0.shell "*) SHELL_AT_END=1 ;; esac
case " $(cat /proc/cmdline) " in *" dom0.noxl "*) NOXL=1 ;; esac
case " $(cat /proc/cmdline) " in *" dom0.panic "*) PANIC=1 ;; esac
case " $(cat /proc/cmdline) " in *" dom0.xl "*) XLTEST=1 ;; esac
case " $(cat /proc/cmdline) " in *" dom0.pv "*) PVTEST=1 ;; esac

for m in $(cat /usr/lib/modules/order); do
    # A module may already be built in or loaded (then insmod fails with EEXIST): check first.
    grep -q "^$(echo "$m" | tr - _) " /proc/modules && continue
    insmod "/usr/lib/modules/$m.ko" || fail "insmod $m"
done
mark "modules loaded: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"

# The passed-through virtio-blk disk: virtio_mmio probes the host's transports (dom0's DT
# has them), virtio_blk makes /dev/vda asynchronously: wait up to 5 s for it.
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -b /dev/vda ]; then
    mkdir -p /mnt/disk
    if mount -t ext4 -o ro /dev/vda /mnt/disk; then
        if [ -r /mnt/disk/token ]; then
            mark "disk ok $(cat /mnt/disk/token)"
        else
            fail "disk: no /token on /dev/vda"
        fi
        umount /mnt/disk
    else
        fail "mount /dev/vda (ext4)"
    fi
else
    mark "disk none"
fi

mount -t xenfs xenfs /proc/xen || fail "mount xenfs"
mark "xenfs mounted: $(cat /proc/xen/capabilities 2>/dev/null)"

# xenstored forks into the background once /dev/xen/xenbus_backend and its socket are ready.
xenstored --pid-file /var/run/xenstored.pid || fail "xenstored exit $?"
i=0
while [ ! -S /var/run/xenstored/socket ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if xenstore-read / >/dev/null 2>&1 || xenstore ls / >/dev/null 2>&1; then
    mark "xenstored up"
else
    fail "xenstored not answering"
fi
xen-init-dom0 || fail "xen-init-dom0 exit $?"
mark "xen-init-dom0 done: name=$(xenstore read /local/domain/0/name 2>/dev/null)"
xenconsoled --pid-file=/var/run/xenconsoled.pid --log=guest || fail "xenconsoled exit $?"
mark "xenconsoled up"

if [ -z "${NOXL:-}" ]; then
    mark "xl info begin"
    xl info || fail "xl info exit $?"
    mark "xl info end"
    mark "xl list begin"
    xl list || fail "xl list exit $?"
    mark "xl list end"
    mark "xl dmesg begin"
    xl dmesg || fail "xl dmesg exit $?"
    mark "xl dmesg end"
    if [ -n "${XLTEST:-}" ]; then
        sh /usr/lib/hvtest/dom0-xl.sh || FAILED=1
    fi
    if [ -n "${PVTEST:-}" ]; then
        sh /usr/lib/hvtest/dom0-pv.sh || FAILED=1
    fi
fi
[ $FAILED = 0 ] && mark "done" || mark "done with failures"
if [ -n "${SHELL_AT_END:-}" ]; then
    mark "shell"
    setsid cttyhack sh
fi
if [ -n "${PANIC:-}" ]; then
    mark "panic"
    echo 1 >/proc/sys/kernel/sysrq
    echo c >/proc/sysrq-trigger
fi
poweroff -f
