#!/bin/sh
# dom0's `xl create` test (issue 12), run by /init (init.sh) when dom0's command line has
# `dom0.xl`, after xenconsoled is up. Every step prints a "DOM0: " marker with dom0's uptime
# (t=; hvtrace.c cuts its phases at these lines, so each phase is named after the marker that
# starts it), in order:
#   xl create begin / end          xl create /etc/xen/domu.cfg (128 MB, 1 vCPU)
#   xl list domu begin / end       the domU's row
#   domu console wait / ok         "DOMU: /init reached" in xenconsoled's log
#                                  (/var/log/xen/console/guest-domu.log, --log=guest)
#   xl shutdown begin / end        xl shutdown -w domu (the domU powers itself off)
#   domu gone                      no domu row in `xl list` any more
#   xl create2 begin / end         a second domain (name domu2), its /init marker seen
#   domu2 console wait / ok
#   xl destroy begin / end         xl destroy domu2
#   xl rounds begin                N rounds (dom0.xl.rounds=N, default 20) of create + destroy
#   round create / round destroy   one pair per round (name domr, no wait for its boot)
#   xl rounds end                  free_memory (xl info) before and after, which must match
#   xl test done
# A failed step prints "DOM0: FAIL xl <step> ..." and the test stops there (init.sh goes on
# to power off). Every xl command runs under busybox `timeout` (XL_T s, 120; exit status 143 =
# killed), so a hypervisor on which xl hangs fails at that step instead of at the runner's timeout.
# `dom0.xl.timeout=N` sets XL_T, the domU console waits and the wait for a shut-down domU to go
# (120 s each by default; that wait was 30 s before): nested under
# KVM one `xl create` takes minutes (tests-nested/rig/dom0-nested.sh MODE=xl).
up() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "DOM0: $* t=$(up)"; }
xfail() { echo "DOM0: FAIL xl $*"; exit 1; }
free_mem() { t_xl info | sed -n 's/^free_memory *: *//p'; }
CFG=/etc/xen/domu.cfg
XL_T=120
t_xl() { timeout "$XL_T" xl "$@"; }
ROUNDS=20
for w in $(cat /proc/cmdline); do
    case $w in
        dom0.xl.rounds=*) ROUNDS=${w#dom0.xl.rounds=} ;;
        dom0.xl.timeout=*) XL_T=${w#dom0.xl.timeout=} ;;
    esac
done
mkdir -p /var/log/xen/console

# gone NAME SECONDS: wait until `xl list` has no row NAME.
gone() {
    local i=0
    while t_xl list | grep -q "^$1 "; do
        [ $i -lt $(($2 * 10)) ] || { xl list; return 1; }
        sleep 0.1; i=$((i + 1))
    done
}

# wait_console NAME SECONDS: wait for the domU's /init marker in xenconsoled's log of NAME.
wait_console() {
    local log=/var/log/xen/console/guest-$1.log i=0
    mark "$1 console wait"
    while [ $i -lt $(($2 * 10)) ]; do
        if grep -q 'DOMU: /init reached' "$log" 2>/dev/null; then
            mark "$1 console ok: $(grep -m1 'DOMU: /init reached' "$log" | tr -d '\r')"
            return 0
        fi
        sleep 0.1; i=$((i + 1))
    done
    echo "DOM0: xl: last lines of $log:"; tail -n 20 "$log" 2>/dev/null
    xl list
    xfail "console: no 'DOMU: /init reached' from $1 in $2 s"
}

FREE0=$(free_mem)
mark "xl create begin: free_memory=$FREE0"
t_xl create "$CFG" || xfail "create exit $?"
mark "xl create end"
mark "xl list domu begin"
t_xl list || xfail "list exit $?"
mark "xl list domu end"
wait_console domu "$XL_T"
mark "xl shutdown begin"
t_xl shutdown -w domu || xfail "shutdown exit $?"
mark "xl shutdown end"
# `xl shutdown -w` returns when the domain has shut down; the xl process that `xl create` left
# behind (it watches the domain) then destroys it (on_poweroff="destroy"): wait for that.
gone domu "$XL_T" || xfail "shutdown: domu still listed $XL_T s after it shut down"
mark "domu gone"
grep -q 'DOMU: poweroff requested' /var/log/xen/console/guest-domu.log ||
    echo "DOM0: xl: (the domU's poweroff line is not in its log)"

mark "xl create2 begin"
t_xl create "$CFG" 'name="domu2"' || xfail "create2 exit $?"
mark "xl create2 end"
wait_console domu2 "$XL_T"
mark "xl destroy begin"
t_xl destroy domu2 || xfail "destroy exit $?"
mark "xl destroy end"
gone domu2 0 || xfail "destroy: domu2 still listed"

FREE1=$(free_mem)
mark "xl rounds begin: n=$ROUNDS free_memory=$FREE1"
n=1
while [ $n -le "$ROUNDS" ]; do
    mark "round create: $n"
    t_xl create -q "$CFG" 'name="domr"' || xfail "round $n: create exit $?"
    mark "round destroy: $n"
    t_xl destroy domr || xfail "round $n: destroy exit $?"
    n=$((n + 1))
done
FREE2=$(free_mem)
mark "xl rounds end: n=$ROUNDS free_memory before=$FREE1 after=$FREE2 (at start $FREE0)"
xl list
[ "$FREE1" = "$FREE2" ] || xfail "rounds: free_memory $FREE1 before, $FREE2 after"
[ "$FREE0" = "$FREE2" ] || xfail "free_memory $FREE0 at start, $FREE2 at the end"
mark "xl test done"
