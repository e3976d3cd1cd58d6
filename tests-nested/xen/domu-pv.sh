#!/bin/sh
# The PV part of the domU of issue 13's test (/usr/lib/pv.sh in build-domu.sh's initrd-pv.cpio),
# run by /init (domu-init.sh) when the command line has domu.pv=<part>. Linux's own frontends
# (xen-blkfront, xen-netfront, modules of Debian's kernel) against dom0's backends (xen-blkback
# on a loop device of dom0's image file, xen-netback on bridge xenbr0). Everything goes to hvc0,
# which dom0's xenconsoled logs (/var/log/xen/console/guest-<name>.log); dom0-pv.sh waits for
# these lines there. Lines, each with the domU's uptime t=:
#   domu.pv=disk   DOMU: pv modules loaded, DOMU: xvda <size>, DOMU: token <content of /token>,
#                  DOMU: wrote /from-domu <line>, [bench], DOMU: disk done; then powers off.
#                  With domu.pv.bench=N (MiB): DOMU: bench write begin / end N MiB <s> s, then
#                  DOMU: bench read begin / end (a file of N MiB written with conv=fsync, the
#                  page cache dropped, read back); each begin is followed by a 1 s pause so
#                  that dom0's matching marker (hvtrace.c cuts phases there) comes before dd.
#   domu.pv=net    DOMU: eth0 up <mac>, DOMU: ping ok|FAIL ping <busybox ping summary>, then
#                  waits for dom0's `xl shutdown` (dom0 pings back meanwhile).
#                  With domu.pv.bench=N (MiB), a transfer each way over the vif with busybox nc
#                  (dom0 connects, dom0-pv.sh times it): a block of 1 MiB from /dev/urandom
#                  sent N times (DOMU: net send ready N MiB md5 <md5 of the N MiB>, listening
#                  on port 5001: dom0 receives the stream into a file and checks its size and
#                  md5), then DOMU: net recv ready (listening on port 5002: dom0 sends back the
#                  file), DOMU: net recv end md5 <md5 of what arrived> (dom0 compares).
#   domu.pv=ddloop DOMU: dd loop running, then DOMU: dd loop <n> after each 2 MiB written with
#                  conv=fsync, forever: dom0 destroys the domain with writes in flight.
# A failed step prints "DOMU: FAIL <what>" and the domU powers off (net: waits as above).
up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "DOMU: $* t=$(up)"; }
PART= BENCH=0 DOM0_IP=192.0.2.1 MY_IP=192.0.2.2
for w in $(cat /proc/cmdline); do
    case $w in
        domu.pv=*) PART=${w#domu.pv=} ;;
        domu.pv.bench=*) BENCH=${w#domu.pv.bench=} ;;
    esac
done
end() { sync; poweroff -f; }
die() { say "FAIL $*"; end; }

# /dev/xvda: blkfront's disk node comes from devtmpfs (domu-init.sh mounts only proc and sysfs;
# without it the disk connects, "blkfront: xvda: ...", but no /dev/xvda appears).
mount -t devtmpfs dev /dev 2>/dev/null || true
for m in $(cat /usr/lib/modules/order); do
    grep -q "^$(echo "$m" | tr - _) " /proc/modules && continue
    insmod "/usr/lib/modules/$m.ko" || die "insmod $m"
done
say "pv modules loaded: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"

# wait_for TEST PATH SECONDS: frontends appear asynchronously (xenbus probes the device when
# dom0's backend reaches InitWait, after libxl's hotplug script ran).
wait_for() {
    local i=0
    while ! test "$1" "$2"; do
        [ $i -lt $(($3 * 10)) ] || return 1
        sleep 0.1; i=$((i + 1))
    done
}

# listening PORT: wait (up to 10 s) until a TCP socket listens on PORT (dom0 connects once
# it sees the next line).
listening() {
    local i=0
    while ! netstat -ltn 2>/dev/null | grep -q ":$1 "; do
        [ $i -lt 100 ] || { say "FAIL nothing listens on port $1 after 10 s"; return 1; }
        sleep 0.1; i=$((i + 1))
    done
}

# seconds between two `up` values, 2 decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

case $PART in
disk)
    wait_for -b /dev/xvda 60 || die "no /dev/xvda after 60 s"
    say "xvda $(cat /sys/block/xvda/size 2>/dev/null) sectors"
    mount -t ext4 /dev/xvda /mnt || die "mount -t ext4 /dev/xvda"
    [ -r /mnt/token ] || die "no /token on xvda"
    TOKEN=$(cat /mnt/token)
    say "token $TOKEN"
    # What dom0 checks after the domain is gone: the token it wrote, read back through blkfront,
    # and a value only this domU knows (its boot's random uuid).
    LINE="written-by-domu $TOKEN $(cat /proc/sys/kernel/random/uuid)"
    echo "$LINE" >/mnt/from-domu || die "write /from-domu"
    sync
    say "wrote /from-domu $LINE"
    if [ "$BENCH" -gt 0 ] 2>/dev/null; then
        say "bench write begin"; sleep 1
        t0=$(up)
        out=$(dd if=/dev/zero of=/mnt/bench bs=1M count="$BENCH" conv=fsync 2>&1) || die "bench write: $out"
        t1=$(up)
        say "bench write end $BENCH MiB $(secs "$t0" "$t1") s ($(echo "$out" | tail -n 1))"
        sync
        echo 3 >/proc/sys/vm/drop_caches
        say "bench read begin"; sleep 1
        t0=$(up)
        out=$(dd if=/mnt/bench of=/dev/null bs=1M 2>&1) || die "bench read: $out"
        t1=$(up)
        say "bench read end $BENCH MiB $(secs "$t0" "$t1") s ($(echo "$out" | tail -n 1))"
        rm -f /mnt/bench
    fi
    umount /mnt || die "umount /mnt"
    say "disk done"
    end
    ;;
net)
    wait_for -e /sys/class/net/eth0 60 || die "no eth0 after 60 s"
    ip link set eth0 up || say "FAIL ip link set eth0 up"
    ip addr add "$MY_IP/24" dev eth0 || say "FAIL ip addr add $MY_IP/24"
    say "eth0 up $(cat /sys/class/net/eth0/address)"
    # -w 30: at most 30 s in all (busybox ping); all three answers are required.
    out=$(ping -c 3 -w 30 "$DOM0_IP" 2>&1)
    rc=$?
    sum=$(echo "$out" | grep 'packets transmitted' | tr -d '\r')
    case $rc:$sum in
        0:"3 packets transmitted, 3 packets received"*) say "ping ok $DOM0_IP: $sum" ;;
        *) say "FAIL ping $DOM0_IP rc=$rc: ${sum:-$(echo "$out" | tail -n 2 | tr '\n' ' ')}" ;;
    esac
    if [ "$BENCH" -gt 0 ] 2>/dev/null; then
        # busybox nc (the small one): on EOF of its stdin it shuts its socket's write side and
        # reads on until the peer closes; on EOF of the socket it exits. The receiving side's
        # stdin is therefore a fifo held open (fd 9), so that it never shuts its side first.
        dd if=/dev/urandom of=/tmp/blk bs=1M count=1 2>/dev/null || say "FAIL net bench: urandom"
        rep() { i=0; while [ $i -lt "$BENCH" ]; do cat /tmp/blk; i=$((i + 1)); done; }
        sum=$(rep | md5sum | cut -d' ' -f1)
        rep | nc -l -p 5001 >/dev/null &
        # (nc -l reads its stdin only after the connection: the pipe above waits until then)
        listening 5001
        say "net send ready $BENCH MiB md5 $sum"
        wait $! || say "FAIL net send: nc exit $?"
        say "net send end"
        mkfifo /tmp/hold
        nc -l -p 5002 </tmp/hold | md5sum >/tmp/recv.sum &
        p=$!
        exec 9>/tmp/hold
        listening 5002
        say "net recv ready"
        wait $p
        exec 9>&-
        say "net recv end md5 $(cut -d' ' -f1 /tmp/recv.sum)"
    fi
    say "net done"
    # dom0 pings this address, then shuts the domain down (domu-poweroff.sh).
    while :; do sleep 3600; done
    ;;
ddloop)
    wait_for -b /dev/xvda 60 || die "no /dev/xvda after 60 s"
    mount -t ext4 /dev/xvda /mnt || die "mount -t ext4 /dev/xvda"
    say "dd loop running"
    n=0
    while :; do
        dd if=/dev/zero of=/mnt/loop.bin bs=64k count=32 conv=fsync 2>/dev/null || die "dd loop $n"
        n=$((n + 1))
        say "dd loop $n"
    done
    ;;
*)
    die "unknown domu.pv=$PART"
    ;;
esac
