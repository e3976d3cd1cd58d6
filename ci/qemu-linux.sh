#!/usr/bin/env bash
# Boot Debian's unmodified arm64 kernel as a dom0less domU under hv on bare QEMU (TCG, EL2):
#   (a) 1 vCPU on -smp 1, (b) 2 vCPUs on -smp 2 (nproc must say 2).
# Each run must reach the initramfs, print HV-LINUX-MARKER through hvc0 (the PV console ring,
# "(d1) " prefixed by hv), power off (PSCI SYSTEM_OFF or SCHEDOP_shutdown), and hv must power off.
# Usage: ci/qemu-linux.sh [a|b|all]   (env: TIMEOUT=secs per run, default 900; QEMU)
#        ci/qemu-linux.sh run NAME SMP VCPUS [QEMU_MEM [DOMU_MIB [REPEAT [DOMUS]]]]
#          any configuration: QEMU -smp SMP -m QEMU_MEM (default 1G), DOMUS domUs (default 1)
#          of VCPUS vCPUs and DOMU_MIB MiB each (default 256), booted REPEAT times (default 1);
#          every run must pass (each domU: marker, nproc, power-off; then hv powers off).
#        ci/qemu-linux.sh toobig
#          -m 2G: domU1 (256 MiB) boots while domU2 (2560 MiB, more than is free) is refused
#          with a clean "domain not built" line (issue 9 finding 12). Env TOOBIG_MIB adds such a
#          domU (after the DOMUS others) to any run.
set -euo pipefail
# shellcheck source=ci/lib-linux.sh
source "$(dirname "$0")/lib-linux.sh"
linux_setup linux
WHICH=${1:-all}
TIMEOUT=${TIMEOUT:-900}
linux_build qemu-linux
# Kernel args: the PV console; early messages through console_io (xenboot earlycon).
ARGS="console=hvc0 earlycon=xenboot rdinit=/init panic=-1 loglevel=7"

# run NAME SMP VCPUS [QEMU_MEM [DOMU_MIB [DOMUS]]]
run() {
    local name=$1 smp=$2 vcpus=$3 qmem=${4:-1G} domu_mib=${5:-256} ndom=${6:-1}
    local domu_kib; domu_kib=$(printf '0x%x' $((domu_mib * 1024)))
    local m=(-M virt,virtualization=on,gic-version=3 -cpu max -smp "$smp" -m "$qmem" -nic none)
    dom0less_dtb "$name" "$vcpus" "$domu_kib" "$ndom" "${m[@]}"
    local log=$WORK/$name.log t0; t0=$(now)
    echo "[qemu-linux] ($name) -smp $smp -m $qmem, $ndom domU(s) with $vcpus vCPU(s) and $domu_mib MiB; log: $log" >&2
    set +e
    timeout --foreground "$TIMEOUT" "$QEMU" "${m[@]}" -nographic -no-reboot \
        -kernel "$WORK/hv.bin" -dtb "$WORK/$name.dtb" \
        -device "loader,file=$LINUX_IMAGE,addr=$KADDR,force-raw=on" \
        -device "loader,file=$LINUX_INITRD,addr=$RADDR,force-raw=on" </dev/null >"$log" 2>&1
    local rc=$?
    set -e
    local secs=$(( $(now) - t0 )) fail=()
    local d
    for d in $(seq 1 "$ndom"); do
        grep -q "hv: d$d: PV console ring in use" "$log" || fail+=("d$d never used the PV console ring")
        grep -q "^(d$d) HV-LINUX-MARKER" "$log" || fail+=("no HV-LINUX-MARKER from d$d")
        grep -Eq "^\(d$d\) HV-LINUX-NPROC=$vcpus[[:space:]]*\$" "$log" || fail+=("d$d: nproc is not $vcpus")
        # Debian's kernel powers off through PSCI SYSTEM_OFF (psci's sys-off handler has firmware
        # priority over Xen's pm_power_off), exactly as on Xen, which turns it into
        # SHUTDOWN_poweroff; a kernel without PSCI uses SCHEDOP_shutdown(poweroff). Either is a
        # clean power-off; which one was used is printed.
        grep -Eq "hv: d$d ended \((poweroff|PSCI SYSTEM_OFF)\)" "$log" || fail+=("d$d did not power off")
    done
    # A clean boot and power-off logs no hv error (issue 9 saw `hv: ERROR: CPU1: d1v2 scheduled
    # but not parked`, a lost vCPU; a panic prints `hv: ERROR:` too).
    # (The toobig run's refused domU is the one expected error line.)
    local errors; errors=$(grep '^hv: ERROR' "$log" | grep -v 'domain not built: out of memory' || true)
    [ -z "$errors" ] || fail+=("hv logged an error: $(head -n1 <<<"$errors")")
    grep -q 'hv: all domains ended, powering off' "$log" || fail+=("hv did not power off")
    if [ -n "${TOOBIG_MIB:-}" ]; then
        grep -q 'hv: ERROR: dom0less domU2: domain not built: out of memory' "$log" \
            || fail+=("no clean 'domain not built' line for the ${TOOBIG_MIB} MiB domU2")
        ! grep -q 'hv: ERROR: panic' "$log" || fail+=("hv panicked")
    fi
    [ $rc = 0 ] || fail+=("QEMU exit status $rc (124 = timeout)")
    if [ ${#fail[@]} = 0 ]; then
        echo "[qemu-linux] ($name) PASS in $secs s" >&2
        grep -E 'console ring in use|^\(d[0-9]+\) HV-LINUX|hv: d[0-9]+ ended|hv: sched:|hv: id-regs|hv: debug-pmu|hv: all domains|not built' "$log" >&2
    else
        echo "[qemu-linux] ($name) FAIL after $secs s: ${fail[*]}; last lines:" >&2
        tail -n 40 "$log" >&2
        return 1
    fi
}

status=0
case $WHICH in
    a) run a 1 1 || status=1 ;;
    b) run b 2 2 || status=1 ;;
    all) run a 1 1 || status=1; run b 2 2 || status=1 ;;
    toobig) TOOBIG_MIB=2560 run toobig 1 1 2G 256 || status=1 ;;
    run)
        [ $# -ge 4 ] || { echo "usage: $0 run NAME SMP VCPUS [QEMU_MEM [DOMU_MIB [REPEAT [DOMUS]]]]" >&2; exit 2; }
        n=${7:-1} nfail=0 t_all=$(now)
        for i in $(seq 1 "$n"); do
            run "$2-$i" "$3" "$4" "${5:-1G}" "${6:-256}" "${8:-1}" || { status=1; nfail=$((nfail + 1)); }
        done
        echo "[qemu-linux] $2: $((n - nfail)) of $n run(s) passed in $(( $(now) - t_all )) s" >&2
        ;;
    *) echo "usage: $0 [a|b|all|toobig] | run NAME SMP VCPUS [QEMU_MEM [DOMU_MIB [REPEAT [DOMUS]]]]" >&2; exit 2 ;;
esac
exit $status
