#!/bin/sh
# /init of the rig's L1 initramfs (busybox-static). KVM is built into Debian's kernel
# (CONFIG_KVM=y), so nothing is loaded: mount, report what KVM says, run the VMM(s), power off.
# /rig/args is a script of `run NAME PROGRAM ARGS...` lines (the rig VMM or QEMU), run one after
# the other; each prints `RIG: vmm NAME exit RC after T s (started at T0 s)`.
#   RIG_STAMP=1: the run's output goes through /rig/kvm-stamp (QEMU has no exit counter: each
#     line gets `L0=<KVM exits>` from debugfs; at the end `RIG: kvm-stamp exits=...`).
#   TRACE_EXITS=1: ftrace histograms (kept in the kernel) of the VM's traps to this (L1) KVM by
#     (ret, exception class, PC) and of trapped system registers, printed after each run as
#     `RIG: hist NAME kvm_exit: ...` / `RIG: hist NAME kvm_sys_access: ...`, with the exits
#     summed by exception class as `RIG: exits NAME <count> ec=0x.. ret=..`.
#   RIG_TICK=N: every N s, `RIG: tick NAME exits=...` (shows a guest that spins or sleeps).
#   TRACE_IRQS=1 (with TRACE_EXITS=1): also histograms of what L1 does about interrupts during
#     each run: host IRQs taken (irq_handler_entry by Linux irq number; /proc/interrupts is
#     printed after the run to name them), hrtimers expired (by callback), KVM's timer events
#     (kvm_timer_update_irq by INTID and level, kvm_timer_emulate / kvm_timer_hrtimer_expire by
#     timer index: KVM's enum, 0 ptimer, 1 vtimer, 2 hvtimer, 3 hptimer), vgic_update_irq_pending and the
#     exceptions KVM injects into the guest hypervisor (kvm_inject_nested_exception), printed
#     as `RIG: hist NAME EVENT: ...`. A histogram an event does not support is reported and
#     skipped.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
echo "RIG: L1 $(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s"
dmesg | grep -E 'kvm \[|KVM|IPA Size|Nested' | sed 's/^/RIG: dmesg: /'
[ -c /dev/kvm ] || echo "RIG: no /dev/kvm"
K=/sys/kernel/debug/kvm
T=/sys/kernel/tracing
HIST_EXIT='hist:keys=ret,esr_ec,vcpu_pc:size=16384'
HIST_SYS='hist:keys=Op0,Op1,CRn,CRm,Op2,is_write,vcpu_pc:size=16384'
RIG_STAMP=0 RIG_TICK=0 TRACE_EXITS=0 TRACE_IRQS=0
# TRACE_IRQS's histograms: `subsystem/event keys`.
IRQ_HISTS='irq/irq_handler_entry irq
timer/hrtimer_expire_entry function.sym
kvm/kvm_timer_update_irq irq,level
kvm/kvm_timer_emulate timer_idx,should_fire
kvm/kvm_timer_hrtimer_expire timer_idx
kvm/vgic_update_irq_pending irq,level
kvm/kvm_inject_nested_exception type'
trace_on() {
    mount -t tracefs nodev $T 2>/dev/null
    echo "$HIST_EXIT" >$T/events/kvm/kvm_exit/trigger || echo "RIG: trace: no hist trigger on kvm_exit"
    echo "$HIST_SYS" >$T/events/kvm/kvm_sys_access/trigger ||
        echo "RIG: trace: no hist trigger on kvm_sys_access"
    [ "$TRACE_IRQS" = 1 ] || return 0
    echo "$IRQ_HISTS" | while read -r e k; do
        echo "hist:keys=$k:size=4096" >$T/events/$e/trigger 2>/dev/null ||
            echo "RIG: trace: no hist trigger on $e ($k)"
    done
}
trace_off() {
    for e in kvm_exit kvm_sys_access; do
        grep -v '^#' $T/events/kvm/$e/hist | grep . | sed "s/^/RIG: hist $1 $e: /"
    done
    # By exception class: `{ ret: 1, esr_ec: 24, vcpu_pc: ... } hitcount: 5`.
    grep -v '^#' $T/events/kvm/kvm_exit/hist | awk -v n="$1" '
        /hitcount:/ {
            r = $0; sub(/.*ret: */, "", r); sub(/[ ,].*/, "", r)
            e = $0; sub(/.*esr_ec: */, "", e); sub(/[ ,].*/, "", e)
            h = $0; sub(/.*hitcount: */, "", h)
            c[sprintf("ec=0x%02x ret=%s", e, r)] += h; t += h
        }
        END { for (k in c) printf "RIG: exits %s %d %s\n", n, c[k], k; printf "RIG: exits %s %d total\n", n, t }'
    if [ "$TRACE_IRQS" = 1 ]; then
        echo "$IRQ_HISTS" | while read -r e k; do
            [ -r $T/events/$e/hist ] || continue
            grep -v '^#' $T/events/$e/hist | grep . | sed "s|^|RIG: hist $1 $e: |"
            echo "!hist:keys=$k:size=4096" >$T/events/$e/trigger 2>/dev/null
        done
        sed "s/^/RIG: interrupts $1: /" /proc/interrupts
    fi
    echo "!$HIST_EXIT" >$T/events/kvm/kvm_exit/trigger
    echo "!$HIST_SYS" >$T/events/kvm/kvm_sys_access/trigger
}
run() {
    name=$1; shift
    echo "RIG: vmm $name: $*"
    [ "$TRACE_EXITS" = 1 ] && trace_on
    tick=""
    if [ "$RIG_TICK" != 0 ]; then
        ( while sleep "$RIG_TICK"; do echo "RIG: tick $name exits=$(cat $K/exits)"; done ) &
        tick=$!
    fi
    t0=$(cut -d' ' -f1 /proc/uptime)
    if [ "$RIG_STAMP" = 1 ]; then
        { "$@" </dev/null; echo $? >/tmp/rc; } 2>&1 | /rig/kvm-stamp | sed "s/^RIG: kvm-stamp /RIG: kvm $name /"
        rc=$(cat /tmp/rc)
    else
        "$@"
        rc=$?
    fi
    t1=$(cut -d' ' -f1 /proc/uptime)
    [ -n "$tick" ] && kill "$tick"
    [ "$TRACE_EXITS" = 1 ] && trace_off "$name"
    echo "RIG: vmm $name exit $rc after $t1 s (started at $t0 s)"
    # The single-run form that older runners check.
    [ "$name" = vmm ] && echo "RIG: vmm exit $rc after $t1 s (started at $t0 s)"
}
. /rig/args
poweroff -f
