#!/bin/sh
# dom0's PV disk and network test (issue 13), run by /init (init.sh) when dom0's command line
# has `dom0.pv`, after xenconsoled is up: Linux's backends in dom0 (xen-blkback on a loop device
# that Xen's /etc/xen/scripts/block sets up for an image file, xen-netback with Xen's
# vif-bridge on bridge xenbr0; libxl runs both scripts itself, xl.conf run_hotplug_scripts=1)
# against Linux's frontends in a domU (domu-pv.sh). Parts (dom0.pv.parts=a+b+..., default
# disk,destroy,net), each ending with "DOM0: pv <part> ok" or "DOM0: FAIL pv <part> ..."; a
# failed part does not stop the next one (the network part comes last: on a hypervisor without
# GNTTABOP_copy, netback's data path cannot work while blkback's map/unmap path can).
#   setup    xenbr0 (brctl addbr: STP off; forward delay 0) with 192.0.2.1/24 (TEST-NET-1: QEMU has
#            -nic none, no packet leaves the emulated machine); a tmpfs on /var/lib/pv with
#            xvda.img, an ext4 image (mke2fs -t ext4) holding /token = a fresh token, written
#            by dom0 through a loop mount.
#            Markers: pv begin, pv setup ok: token=<T> image=<MiB>M
#   disk     xl create domp with disk=['<img>,raw,xvda,rw']: the domU mounts /dev/xvda, prints
#            the token, writes /from-domu ("written-by-domu <T> <its uuid>"), [benchmark,
#            dom0.pv.bench=MiB], unmounts and powers off; dom0 waits for the domain to go, for
#            the loop device to be released (the block script's remove), mounts the image and
#            checks /from-domu. Markers: pv disk begin, pv disk created, pv disk domu token <T>,
#            [pv bench write begin/end, pv bench read begin/end], pv disk domu done, pv disk
#            gone, pv disk ok: from-domu=<line>
#   destroy  xl create domd (same disk) running a dd loop with conv=fsync; after 3 loops `xl
#            destroy` with writes in flight; then e2fsck -f -y (replays the journal; exit 0 or
#            1 accepted) and e2fsck -f -n (must be clean, exit 0) on the image, dom0's /token
#            still there. Markers: pv destroy begin, pv destroy
#            created, pv destroy io in flight, pv destroy end, pv destroy fsck: ..., pv destroy ok
#   net      xl create domn with vif=['bridge=xenbr0']: vif<id>.0 must be a port of xenbr0, the
#            domU pings 192.0.2.1 (3 of 3 answers), dom0 pings it back (192.0.2.2, 3 of 3),
#            [benchmark, dom0.pv.bench=MiB: the domU sends MiB MiB (a random 1 MiB block
#            repeated) to dom0 over the vif with busybox nc, dom0 checks the size and the md5 the
#            domU announced, then sends the file back and the domU's md5 of what arrived must be
#            the same], `xl shutdown -w`. Markers: pv net begin, pv net created, pv net bridge
#            port <vif>, pv net domu ping ok, pv net dom0 ping ok, [pv net send begin, pv net
#            send end: <MiB> MiB <s> s ..., pv net recv begin, pv net recv end: <MiB> MiB <s> s
#            ..., pv net bench ok], pv net gone, pv net ok
#   end      `xl list` has only Domain-0, xl info free_memory as before the first part, no loop
#            device left. Markers: pv end: free_memory ..., pv test done
# The domUs' console logs (xenconsoled, --log=guest) are copied to the serial console, each
# line prefixed "[<name>] ", after each part. Every xl command runs under busybox `timeout`.
up() { cut -d' ' -f1 /proc/uptime; }
# seconds between two `up` values, 2 decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mark() { echo "DOM0: $* t=$(up)"; }
PV_FAILED=0
pfail() { echo "DOM0: FAIL pv $*"; PV_FAILED=1; }
XL_T=120
t_xl() { timeout "$XL_T" xl "$@"; }
free_mem() { t_xl info | sed -n 's/^free_memory *: *//p'; }
# /usr/sbin/{mke2fs,e2fsck} are e2fsprogs' (busybox's /bin/mke2fs makes ext2 only).
CFG=/etc/xen/domu-pv.cfg
DIR=/var/lib/pv
IMG=$DIR/xvda.img
BR=xenbr0 DOM0_IP=192.0.2.1 DOMU_IP=192.0.2.2
CONLOG=/var/log/xen/console
PARTS=disk,destroy,net BENCH=0
for w in $(cat /proc/cmdline); do
    case $w in
        dom0.pv.parts=*) PARTS=${w#dom0.pv.parts=} ;;
        dom0.pv.bench=*) BENCH=${w#dom0.pv.bench=} ;;
    esac
done
EXTRA="console=hvc0 cma=0 rdinit=/init"
DISK="disk=['$IMG,raw,xvda,rw']"
mkdir -p $CONLOG /mnt/pv

# gone NAME SECONDS: wait until `xl list` has no row NAME.
gone() {
    local i=0
    while t_xl list | grep -q "^$1 "; do
        [ $i -lt $(($2 * 10)) ] || return 1
        sleep 0.1; i=$((i + 1))
    done
}
# wait_log NAME ERE SECONDS: wait for a line matching ERE in NAME's console log; prints it.
wait_log() {
    local log=$CONLOG/guest-$1.log i=0
    while [ $i -lt $(($3 * 10)) ]; do
        if tr -d '\r' <"$log" 2>/dev/null | grep -Em1 "$2"; then return 0; fi
        sleep 0.1; i=$((i + 1))
    done
    return 1
}
# show NAME: NAME's console log on the serial console (the runner checks the domU's lines).
show() { tr -d '\r' <"$CONLOG/guest-$1.log" 2>/dev/null | sed "s/^/[$1] /"; }
# why NAME: what helps when a part fails: the domU's last lines, xl list, the hotplug log.
why() {
    echo "DOM0: pv: last lines of $1's console:"; tail -n 15 "$CONLOG/guest-$1.log" 2>/dev/null | tr -d '\r'
    xl list
    echo "DOM0: pv: /var/log/xen/xen-hotplug.log:"; tail -n 15 /var/log/xen/xen-hotplug.log 2>/dev/null
}
# kill_domain NAME: end NAME however it is (a failed part must not leave it to the next one).
kill_domain() {
    t_xl list | grep -q "^$1 " || return 0
    t_xl destroy "$1" || echo "DOM0: pv: xl destroy $1 exit $?"
    gone "$1" 30 || echo "DOM0: pv: $1 still listed after xl destroy"
}
# loops_free SECONDS: wait until no loop device is attached (the block script's remove ran).
loops_free() {
    local i=0
    while [ -n "$(losetup -a)" ]; do
        [ $i -lt $(($1 * 10)) ] || { losetup -a; return 1; }
        sleep 0.1; i=$((i + 1))
    done
}
# img_mount / img_umount: the image on /mnt/pv through a loop device of dom0's own.
img_mount() {
    LOOP=$(losetup -f) && losetup "$LOOP" "$IMG" && mount -t ext4 "$LOOP" /mnt/pv
}
img_umount() { umount /mnt/pv; losetup -d "$LOOP"; }

setup() {
    mark "pv begin: parts=$PARTS bench=${BENCH}MiB"
    # The bridge the vifs join (vif-bridge: `bridge=xenbr0`), with dom0's address on it.
    # (busybox's brctl has no stp/setfd here: a new bridge has STP off; its forward delay goes
    # through sysfs, so that a port forwards as soon as it joins.)
    brctl addbr $BR && echo 0 >/sys/class/net/$BR/bridge/forward_delay &&
        ip addr add $DOM0_IP/24 dev $BR && ip link set $BR up || { pfail "setup: bridge $BR"; return 1; }
    # The image: on a tmpfs, sized for the benchmark's file plus the file system's own.
    local mib=64
    [ "$BENCH" -le 32 ] 2>/dev/null || mib=$((BENCH + 48))
    # (plus the network benchmark's file)
    local net=0
    case ,$PARTS, in *[,+]net[,+]*) net=$BENCH ;; esac
    mkdir -p $DIR
    mount -t tmpfs -o size=$((mib + net + 16))m pv $DIR || { pfail "setup: tmpfs"; return 1; }
    truncate -s ${mib}M $IMG && /usr/sbin/mke2fs -q -F -t ext4 -L pvdisk $IMG >/tmp/mke2fs.log 2>&1 ||
        { cat /tmp/mke2fs.log; pfail "setup: mke2fs -t ext4 $IMG"; return 1; }
    TOKEN=pv-$(cut -c1-8 /proc/sys/kernel/random/uuid)$(cut -c1-8 /proc/sys/kernel/random/uuid)
    img_mount || { pfail "setup: loop mount of $IMG"; return 1; }
    echo "$TOKEN" >/mnt/pv/token
    img_umount || { pfail "setup: umount"; return 1; }
    loops_free 5 || { pfail "setup: loop device still attached"; return 1; }
    mark "pv setup ok: token=$TOKEN image=${mib}M"
}

part_disk() {
    local l
    mark "pv disk begin"
    t_xl create $CFG 'name="domp"' "$DISK" "extra=\"$EXTRA domu.pv=disk domu.pv.bench=$BENCH\"" ||
        { pfail "disk: xl create exit $?"; why domp; return 1; }
    mark "pv disk created: $(t_xl block-list domp | tail -n +2 | tr -s ' ' | tr '\n' ';')"
    l=$(wait_log domp 'DOMU: (token|FAIL)' 120) && case $l in *"DOMU: token"*) ;; *) false ;; esac ||
        { pfail "disk: no token from the domU in 120 s: ${l:-nothing}"; why domp; kill_domain domp; return 1; }
    mark "pv disk domu token ${l#*DOMU: token }"
    if [ "$BENCH" -gt 0 ] 2>/dev/null; then
        # dom0's markers around the domU's dd (hvtrace.c cuts its phases at DOM0: lines; the
        # domU pauses 1 s after each "begin" line, dom0 polls every 0.1 s).
        for d in write read; do
            l=$(wait_log domp "DOMU: (bench $d begin|FAIL)" 120) || true
            mark "pv bench $d begin"
            l=$(wait_log domp "DOMU: (bench $d end|FAIL)" 600) || true
            mark "pv bench $d end: ${l#*DOMU: }"
        done
    fi
    l=$(wait_log domp 'DOMU: (disk done|FAIL)' 300) && case $l in *"disk done"*) ;; *) false ;; esac ||
        { pfail "disk: the domU did not finish: ${l:-nothing in 300 s}"; why domp; kill_domain domp; return 1; }
    mark "pv disk domu done"
    # The domU powers itself off; the xl that created it then destroys it (on_poweroff).
    gone domp 60 || { pfail "disk: domp still listed 60 s after its poweroff"; why domp; kill_domain domp; return 1; }
    loops_free 30 || { pfail "disk: loop device still attached 30 s after domp went"; return 1; }
    mark "pv disk gone"
    show domp
    img_mount || { pfail "disk: loop mount of $IMG after the domU"; return 1; }
    l=$(cat /mnt/pv/from-domu 2>/dev/null)
    img_umount
    case $l in
        "written-by-domu $TOKEN "?*) mark "pv disk ok: from-domu=$l" ;;
        *) pfail "disk: /from-domu is '$l', not 'written-by-domu $TOKEN <uuid>'"; return 1 ;;
    esac
}

part_destroy() {
    local l rc1 rc2
    mark "pv destroy begin"
    t_xl create $CFG 'name="domd"' "$DISK" "extra=\"$EXTRA domu.pv=ddloop\"" ||
        { pfail "destroy: xl create exit $?"; why domd; return 1; }
    mark "pv destroy created"
    l=$(wait_log domd 'DOMU: (dd loop 3 |FAIL)' 180) && case $l in *"dd loop 3 "*) ;; *) false ;; esac ||
        { pfail "destroy: no 3 dd loops from the domU in 180 s: ${l:-nothing}"; why domd; kill_domain domd; return 1; }
    mark "pv destroy io in flight: ${l#*DOMU: }"
    t_xl destroy domd || { pfail "destroy: xl destroy exit $?"; why domd; kill_domain domd; return 1; }
    gone domd 0 || { pfail "destroy: domd still listed after xl destroy"; return 1; }
    loops_free 30 || { pfail "destroy: loop device still attached 30 s after xl destroy"; return 1; }
    mark "pv destroy end: $(tr -d '\r' <$CONLOG/guest-domd.log | grep -c 'DOMU: dd loop [0-9]') loops logged"
    show domd | tail -n 3
    /usr/sbin/e2fsck -f -y $IMG >/tmp/fsck1.log 2>&1; rc1=$?
    /usr/sbin/e2fsck -f -n $IMG >/tmp/fsck2.log 2>&1; rc2=$?
    mark "pv destroy fsck: e2fsck -f -y exit $rc1, then e2fsck -f -n exit $rc2"
    sed 's/^/  fsck1: /' /tmp/fsck1.log; sed 's/^/  fsck2: /' /tmp/fsck2.log
    # e2fsck: 0 clean, 1 errors corrected (a journal replay counts); then a second look: clean.
    [ $rc1 -le 1 ] && [ $rc2 = 0 ] || { pfail "destroy: e2fsck exit $rc1 then $rc2"; return 1; }
    img_mount || { pfail "destroy: loop mount of $IMG after fsck"; return 1; }
    l=$(cat /mnt/pv/token 2>/dev/null)
    img_umount
    [ "$l" = "$TOKEN" ] || { pfail "destroy: /token is '$l' after the destroy, not $TOKEN"; return 1; }
    mark "pv destroy ok"
}

# net_bench: the network benchmark (dom0.pv.bench=MiB) with domn up: the domU's MiB MiB to
# dom0 (dom0 connects to its port 5001, receives into $DIR/net.bin: size and md5 checked), then
# the same file back to the domU (its port 5002; the md5 of what it received checked). busybox
# nc exits on EOF of its socket and, on EOF of its stdin, shuts the socket's write side: the
# receiving nc's stdin is a fifo held open (fd 9). Markers around each transfer (hvtrace.c
# cuts its phases there); seconds from dom0's uptime around its nc.
net_bench() {
    local l sum n got rc p t0 t1 want=$((BENCH * 1048576))
    l=$(wait_log domn 'DOMU: (net send ready|FAIL)' 300)
    case $l in *"net send ready"*) ;; *) pfail "net: the domU's send: ${l:-not ready in 300 s}"; return 1 ;; esac
    sum=$(echo "$l" | sed -n 's/.* md5 \([0-9a-f]*\).*/\1/p')
    rm -f $DIR/hold $DIR/net.bin; mkfifo $DIR/hold
    mark "pv net send begin"
    t0=$(up)
    timeout 300 nc $DOMU_IP 5001 <$DIR/hold >$DIR/net.bin &
    p=$!
    exec 9>$DIR/hold
    wait $p; rc=$?
    t1=$(up)
    exec 9>&-
    n=$(stat -c %s $DIR/net.bin)
    mark "pv net send end: $((n / 1048576)) MiB $(secs "$t0" "$t1") s, nc exit $rc"
    got=$(md5sum <$DIR/net.bin | cut -d' ' -f1)
    [ $rc = 0 ] && [ "$n" = $want ] && [ -n "$sum" ] && [ "$got" = "$sum" ] ||
        { pfail "net: domU->dom0: nc exit $rc, $n bytes md5 $got, the domU sent $want bytes md5 '$sum'"; return 1; }
    l=$(wait_log domn 'DOMU: (net recv ready|FAIL)' 60)
    case $l in *"net recv ready"*) ;; *) pfail "net: the domU's receive: ${l:-not ready in 60 s}"; return 1 ;; esac
    mark "pv net recv begin"
    t0=$(up)
    timeout 300 nc $DOMU_IP 5002 <$DIR/net.bin >/dev/null; rc=$?
    t1=$(up)
    mark "pv net recv end: $BENCH MiB $(secs "$t0" "$t1") s, nc exit $rc"
    l=$(wait_log domn 'DOMU: (net recv end|FAIL)' 60)
    got=$(echo "$l" | sed -n 's/.*net recv end md5 \([0-9a-f]*\).*/\1/p')
    rm -f $DIR/hold $DIR/net.bin
    [ $rc = 0 ] && [ "$got" = "$sum" ] ||
        { pfail "net: dom0->domU: nc exit $rc, the domU received md5 '$got' (${l:-no line in 60 s}), dom0 sent md5 $sum"; return 1; }
    mark "pv net bench ok: $BENCH MiB each way, md5 $sum"
}

part_net() {
    local l vif id rc
    mark "pv net begin"
    t_xl create $CFG 'name="domn"' "vif=['bridge=$BR']" "extra=\"$EXTRA domu.pv=net domu.pv.bench=$BENCH\"" ||
        { pfail "net: xl create exit $?"; why domn; return 1; }
    id=$(t_xl domid domn)
    mark "pv net created: domid $id: $(t_xl network-list domn | tail -n +2 | tr -s ' ' | tr '\n' ';')"
    # vif-bridge (run by libxl at the backend's InitWait) adds vif<domid>.0 to the bridge.
    vif=vif$id.0
    [ -e /sys/class/net/$BR/brif/$vif ] ||
        { pfail "net: $vif is not a port of $BR (ports: $(ls /sys/class/net/$BR/brif 2>/dev/null))"; why domn; kill_domain domn; return 1; }
    mark "pv net bridge port $vif"
    l=$(wait_log domn 'DOMU: (ping ok|FAIL)' 120)
    case $l in
        *"DOMU: ping ok"*) mark "pv net domu ping ok: ${l#*: }" ;;
        *) pfail "net: the domU's ping of $DOM0_IP: ${l:-no answer in 120 s}"; why domn; kill_domain domn; return 1 ;;
    esac
    l=$(ping -c 3 -w 30 $DOMU_IP 2>&1); rc=$?
    l=$(echo "$l" | grep 'packets transmitted')
    case $rc:$l in
        0:"3 packets transmitted, 3 packets received"*) mark "pv net dom0 ping ok: $l" ;;
        *) pfail "net: dom0's ping of $DOMU_IP rc=$rc: $l"; why domn; kill_domain domn; return 1 ;;
    esac
    if [ "$BENCH" -gt 0 ] 2>/dev/null; then
        net_bench || { why domn; kill_domain domn; return 1; }
    fi
    t_xl shutdown -w domn || { pfail "net: xl shutdown exit $?"; kill_domain domn; return 1; }
    gone domn 30 || { pfail "net: domn still listed 30 s after its shutdown"; kill_domain domn; return 1; }
    mark "pv net gone"
    show domn
    [ ! -e /sys/class/net/$vif ] || { pfail "net: $vif still exists after the domain went"; return 1; }
    mark "pv net ok"
}

FREE0=$(free_mem)
if setup; then
    for p in $(echo "$PARTS" | tr ,+ '  '); do
        case $p in
            disk | destroy | net) "part_$p" || true ;;
            *) pfail "unknown part $p" ;;
        esac
    done
fi
# dom0 is still healthy: xl answers, only Domain-0 is left, its memory came back, no loop device.
# (A domain whose netback still holds grants stays listed as "(null) ... --ps-d", dying, for a
# moment after `xl shutdown -w` returned: seen on Xen 4.20; wait up to 30 s for it to go.)
i=0
while L=$(t_xl list) && [ "$(echo "$L" | tail -n +2 | grep -vc '^Domain-0 ')" != 0 ] && [ $i -lt 300 ]; do
    sleep 0.1; i=$((i + 1))
done
L=$(t_xl list); rc=$?
echo "$L"
FREE1=$(free_mem)
mark "pv end: xl list exit $rc, free_memory before=$FREE0 after=$FREE1, loops: $(losetup -a | wc -l)"
[ $rc = 0 ] && [ "$(echo "$L" | tail -n +2 | grep -vc '^Domain-0 ')" = 0 ] || pfail "end: xl list exit $rc or a domain left"
[ -n "$FREE1" ] && [ "$FREE0" = "$FREE1" ] || pfail "end: free_memory $FREE0 before, $FREE1 after"
[ -z "$(losetup -a)" ] || pfail "end: loop devices left: $(losetup -a)"
mark "pv test done"
[ $PV_FAILED = 0 ]
