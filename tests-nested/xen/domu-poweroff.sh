#!/bin/sh
# /sbin/poweroff of the domU: the kernel's orderly_poweroff() runs it when dom0 asks the domain
# to power off (`xl shutdown`, control/shutdown = "poweroff"). /init is a shell, not an init
# that busybox's poweroff could signal, so power off directly.
echo "DOMU: poweroff requested t=$(cut -d' ' -f1 /proc/uptime)" >/dev/console
exec /bin/busybox poweroff -f
