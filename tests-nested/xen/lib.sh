# shellcheck shell=bash
# What the dom0 runners share (sourced by run-peer.sh, run-hv.sh, bench-boot.sh): the dom0
# image and its disk, the machine, the Xen boot binding (the DTB QEMU makes for Xen with
# guest-loader modules, used unchanged for hv), one QEMU run with stamped serial lines, and
# the checks of init.sh's markers. Nothing here starts QEMU until a dom0_run* function is called.
#
# Env: SMP (2), MEM (2G), DOM0_MEM (512M), TIMEOUT (s, 300), XEN_ARGS_EXTRA (appended to the
# hypervisor's command line, /chosen/bootargs), DOM0_ARGS_EXTRA (to dom0's), QEMU, TRACE=1
# (hvtrace.c counts hypercalls and TLBIs per phase), HV_PREBUILT (hv.bin to use instead of
# building this tree's hv).
XEN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$XEN_DIR/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
QEMU=${QEMU:-qemu-system-aarch64}
SMP=${SMP:-2}
MEM=${MEM:-2G}
DOM0_MEM=${DOM0_MEM:-512M}
TIMEOUT=${TIMEOUT:-300}
# The hypervisor's command line (Xen's; hv reads the same /chosen/bootargs).
XEN_ARGS="console=dtuart dtuart=serial0 dom0_mem=$DOM0_MEM dom0_max_vcpus=$SMP loglvl=all guest_loglvl=all ${XEN_ARGS_EXTRA:-}"
# The machine of issue 11's acceptance.
MACHINE=(-M virt,virtualization=on,gic-version=3 -cpu max -smp "$SMP" -m "$MEM" -nic none)
# init.sh's markers of a full run, in order ("disk ok" needs the disk of dom0_disk).
DOM0_MARKERS=('/init reached' 'modules loaded' 'disk ok' 'xenfs mounted' 'xenstored up'
              'xen-init-dom0 done' 'xenconsoled up' 'xl info end' 'xl list end' 'xl dmesg end'
              'done t=')

dlog() { echo "[${DLOG:-dom0}] $*" >&2; }

# dom0_setup: the pinned packages (fetch.sh), the image (build-dom0.sh: DOM0_KERNEL,
# DOM0_INITRD, DOM0_*_ADDR, DOM0_CMDLINE), the host tools (rig-stamp, hvserial).
dom0_setup() {
    eval "$("$XEN_DIR/fetch.sh")"          # XEN_IMAGE ...
    eval "$("$XEN_DIR/build-dom0.sh")"     # DOM0_KERNEL DOM0_INITRD DOM0_*_ADDR DOM0_CMDLINE
    ( cd "$REPO" && cargo build -q --release -p vmm --bin rig-stamp -p tests-nested --bin hvserial ) >&2
}

# dom0_disk DIR: DIR/disk.img, a 16 MiB ext4 file system (made without root: mke2fs -d, from
# e2fsprogs, priority required in Debian) whose /token holds a fresh DISK_TOKEN; DISK = the
# QEMU arguments attaching it as a virtio-blk device on a virtio-mmio transport.
dom0_disk() {
    local dir=$1 mke2fs
    mke2fs=$(PATH=$PATH:/usr/sbin:/sbin command -v mke2fs) || { dlog "mke2fs is missing (e2fsprogs)"; return 1; }
    DISK_TOKEN=token-$RANDOM$RANDOM
    rm -rf "$dir/disk-root" "$dir/disk.img"; mkdir -p "$dir/disk-root"
    echo "$DISK_TOKEN" >"$dir/disk-root/token"
    "$mke2fs" -q -F -t ext4 -L dom0disk -d "$dir/disk-root" "$dir/disk.img" 16M >"$dir/mke2fs.log" 2>&1 ||
        { cat "$dir/mke2fs.log" >&2; return 1; }
    DISK=(-drive "if=none,id=d0,file=$dir/disk.img,format=raw" -device virtio-blk-device,drive=d0)
}

# dom0_boot_xen DOM0_ARGS: BOOT_XEN = Xen's boot the way QEMU documents it for Xen
# (docs/system/guest-loader.rst): Xen's image with -kernel, its command line with -append
# (/chosen/bootargs), dom0's kernel (with its bootargs) and initramfs as multiboot modules.
dom0_boot_xen() {
    BOOT_XEN=(-kernel "$XEN_IMAGE" -append "$XEN_ARGS"
              -device "guest-loader,addr=$DOM0_KERNEL_ADDR,kernel=$DOM0_KERNEL,bootargs=$1"
              -device "guest-loader,addr=$DOM0_INITRD_ADDR,initrd=$DOM0_INITRD")
}

# dom0_dtb FILE: the DTB of BOOT_XEN's machine (QEMU's own plus guest-loader's /chosen:
# bootargs, module@... with the files' sizes) into FILE, with FILE.dts next to it. QEMU's dump
# is padded to 1 MiB; FILE is the same tree compacted by dtc.
dom0_dtb() {
    local m=("${MACHINE[@]}")
    m[1]+=",dumpdtb=$1"
    "$QEMU" "${m[@]}" -nographic "${BOOT_XEN[@]}" "${DISK[@]}" >/dev/null 2>&1
    dtc -q -I dtb -O dts -o "$1.dts" "$1"
    dtc -q -I dts -O dtb -o "$1" "$1.dts"
}

# dom0_build_hv DIR: hv for aarch64-unknown-none (release) as a flat Image DIR/hv.bin (HV_BIN),
# made the way hvrun makes it (llvm-objcopy -O binary); HV_VERSION = its version.
# With HV_PREBUILT=FILE, FILE (a flat hv Image built elsewhere) is copied instead.
dom0_build_hv() {
    HV_BIN=$1/hv.bin
    HV_VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n1)
    if [ -n "${HV_PREBUILT:-}" ]; then
        cp "$HV_PREBUILT" "$HV_BIN"
        dlog "hv: prebuilt $HV_PREBUILT"
        return
    fi
    ( cd "$REPO" && cargo build -q --release --target aarch64-unknown-none -p hv ) >&2
    local objcopy
    objcopy=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy
    [ -x "$objcopy" ] || objcopy=llvm-objcopy
    "$objcopy" -O binary "$CARGO_TARGET_DIR/aarch64-unknown-none/release/hv" "$HV_BIN"
}

# dom0_boot_hv DTB: BOOT_HV = hv booted with Xen's binding: the DTB of dom0_dtb unchanged,
# hv's Image with -kernel, dom0's kernel and initramfs at the modules' addresses.
dom0_boot_hv() {
    BOOT_HV=(-kernel "$HV_BIN" -dtb "$1"
             -device "loader,file=$DOM0_KERNEL,addr=$DOM0_KERNEL_ADDR,force-raw=on"
             -device "loader,file=$DOM0_INITRD,addr=$DOM0_INITRD_ADDR,force-raw=on")
}

# dom0_plugin FILE: PLUGIN = the hvtrace.c plugin writing FILE when TRACE is set, else empty.
dom0_plugin() {
    PLUGIN=()
    [ -n "${TRACE:-}" ] || return 0
    [ -f "$CARGO_TARGET_DIR/hvtrace.so" ] && [ "$CARGO_TARGET_DIR/hvtrace.so" -nt "$XEN_DIR/hvtrace.c" ] ||
        gcc -shared -fPIC -O2 -Wall -o "$CARGO_TARGET_DIR/hvtrace.so" "$XEN_DIR/hvtrace.c"
    PLUGIN=(-plugin "$CARGO_TARGET_DIR/hvtrace.so,out=$1")
}

us() { local t=$EPOCHREALTIME; echo $(( ${t/./} )); }
# Prefixes every input line (rig-stamp's "<cpu>| text") with the wall seconds since $1 (us).
stamp_lines() {
    local start=$1 line t
    while IFS= read -r line; do
        t=$EPOCHREALTIME; t=$(( ${t/./} - start ))
        printf '%d.%06d %s\n' $((t / 1000000)) $((t % 1000000)) "${line//$'\r'/}"
    done
}

# dom0_run LOG QEMU-ARGS...: one QEMU run (serial on stdio, -no-reboot) with every line stamped
# "<wall s since start> <QEMU CPU s>| text" into LOG (rig-stamp: the CPU time of QEMU's process
# tree, which other load on the machine disturbs much less than wall time). Sets RUN_RC
# (QEMU's exit status, 124 = timeout) and RUN_WALL (seconds to QEMU's exit).
dom0_run() {
    local log=$1 start end; shift
    start=$(us)
    set +e
    # setpriv --pdeathsig: QEMU dies with rig-stamp, whatever kills it (an orphaned QEMU would
    # run on and keep any lock its caller holds).
    timeout "$TIMEOUT" "$CARGO_TARGET_DIR/release/rig-stamp" -- setpriv --pdeathsig KILL -- \
        "$QEMU" "${MACHINE[@]}" -nographic -no-reboot "$@" </dev/null | stamp_lines "$start" >"$log"
    RUN_RC=${PIPESTATUS[0]}
    set -e
    end=$(( $(us) - start )); RUN_WALL=$((end / 1000000)).$(printf '%06d' $((end % 1000000)))
}

# dom0_run_console LOG SOCKET STEPS -- QEMU-ARGS...: the same with the serial port on a unix
# socket (no QEMU mux on it: Ctrl-A reaches the guest) driven by hvserial with STEPS (see
# tests-nested/src/bin/hvserial.rs: expect=, send=, sleep=, timeout=). LOG gets the guest's
# output and hvserial's "hvserial: ..." progress lines (the CPU column is hvserial's, not
# QEMU's: no figures from this mode). Sets RUN_RC (QEMU's) and CHAT_RC (hvserial's).
dom0_run_console() {
    local log=$1 sock=$2 steps=() start qpid; shift 2
    while [ "$1" != -- ]; do steps+=("$1"); shift; done; shift
    rm -f "$sock"
    start=$(us)
    timeout "$TIMEOUT" setpriv --pdeathsig KILL -- "$QEMU" "${MACHINE[@]}" -display none -monitor none -no-reboot \
        -chardev "socket,id=ser0,path=$sock,server=on,wait=on" -serial chardev:ser0 "$@" \
        </dev/null >"$log.qemu" 2>&1 &
    qpid=$!
    set +e
    timeout "$TIMEOUT" "$CARGO_TARGET_DIR/release/rig-stamp" -- \
        "$CARGO_TARGET_DIR/release/hvserial" "$sock" "${steps[@]}" | stamp_lines "$start" >"$log"
    CHAT_RC=${PIPESTATUS[0]}
    if [ "$CHAT_RC" != 0 ]; then
        kill "$qpid" 2>/dev/null
    fi
    wait "$qpid"
    RUN_RC=$?
    set -e
    RUN_WALL=
    rm -f "$sock"
}

# The serial text of LOG (stamps removed). `|| true`: a reader that stops early (grep -q) must
# not turn SIGPIPE into a failed pipeline under pipefail.
dom0_serial() { sed 's/^[^|]*| \{0,1\}//' "$1" || true; }
# dom0_stamp LOG ERE -> "wall cpu" of the first line of LOG whose text matches ERE.
dom0_stamp() {
    awk -v re="$2" '{ split($0, a, "|"); t = a[1]; sub(/^[^|]*\| ?/, ""); if ($0 ~ re) { split(t, s, " "); printf "%.2f %.2f\n", s[1], s[2]; exit } }' "$1"
}
# dom0_block LOG BEGIN END: the lines between "DOM0: BEGIN" and "DOM0: END".
dom0_block() {
    dom0_serial "$1" | awk -v b="^DOM0: $2" -v e="^DOM0: $3" '$0 ~ b {on = 1; next} $0 ~ e {on = 0} on' || true
}

# dom0_check_markers LOG MARKER...: appends to FAIL (an array the caller declares) the first
# marker that is missing (naming the last one seen, so a run that stopped says where), any
# "DOM0: FAIL" line, and returns 1 if something was added.
dom0_check_markers() {
    local log=$1 m last='(none: dom0 printed no marker)' n=${#FAIL[@]}; shift
    for m in "$@"; do
        if dom0_serial "$log" | grep -q "^DOM0: $m"; then
            last="DOM0: $m"
        else
            FAIL+=("stopped before 'DOM0: $m' (last marker: '$last')")
            break
        fi
    done
    if dom0_serial "$log" | grep -q '^DOM0: FAIL'; then
        FAIL+=("$(dom0_serial "$log" | grep '^DOM0: FAIL' | tr '\n' ';')")
    fi
    [ ${#FAIL[@]} = "$n" ]
}

# dom0_check_full LOG VERSION_ERE BANNER_ERE: a full run's checks (run-peer.sh/run-hv.sh
# "check" mode): every marker, the disk's token, Domain-0 in `xl list`, VERSION_ERE in `xl
# info`, BANNER_ERE in `xl dmesg`, QEMU exit status 0 (RUN_RC).
dom0_check_full() {
    local log=$1 ver=$2 banner=$3
    dom0_check_markers "$log" "${DOM0_MARKERS[@]}" || true
    if dom0_serial "$log" | grep -q '^DOM0: disk ok' &&
        ! dom0_serial "$log" | grep -q "^DOM0: disk ok $DISK_TOKEN "; then
        FAIL+=("the disk's token is not $DISK_TOKEN: $(dom0_serial "$log" | grep -m1 '^DOM0: disk ok')")
    fi
    if dom0_serial "$log" | grep -q '^DOM0: xl list end'; then
        dom0_block "$log" 'xl list begin' 'xl list end' | grep -Eq '^Domain-0 +0 +[0-9]+ +[0-9]+ ' ||
            FAIL+=("xl list shows no Domain-0")
    fi
    if dom0_serial "$log" | grep -q '^DOM0: xl info end'; then
        dom0_block "$log" 'xl info begin' 'xl info end' | grep -Eq "$ver" ||
            FAIL+=("xl info has no line matching /$ver/")
    fi
    if dom0_serial "$log" | grep -q '^DOM0: xl dmesg end'; then
        dom0_block "$log" 'xl dmesg begin' 'xl dmesg end' | grep -Eq "$banner" ||
            FAIL+=("xl dmesg has no line matching /$banner/")
    fi
    [ "$RUN_RC" = 0 ] || FAIL+=("QEMU exit status $RUN_RC (124 = timeout after ${TIMEOUT}s)")
}

# dom0_figures LOG PREFIX: PREFIX_TO_INIT_WALL/CPU, _TO_XL_LIST_WALL/CPU, _TOTAL_WALL/CPU lines
# (KEY=VALUE) from LOG's stamps; W_INIT C_INIT W_LIST C_LIST C_END are set too.
dom0_figures() {
    local log=$1 p=$2
    read -r W_INIT C_INIT <<<"$(dom0_stamp "$log" '^DOM0: /init reached')"
    read -r W_XS C_XS <<<"$(dom0_stamp "$log" '^DOM0: xenstored up')"
    read -r W_LIST C_LIST <<<"$(dom0_stamp "$log" '^DOM0: xl list end')"
    # The largest CPU stamp: lines read after QEMU's exit carry a smaller one (its process is gone).
    C_END=$(sed 's/|.*//' "$log" | awk '$2 > m { m = $2 } END { if (m != "") printf "%.2f", m }')
    cat <<FIG
${p}_TO_INIT_WALL=${W_INIT:-}
${p}_TO_INIT_CPU=${C_INIT:-}
${p}_TO_XENSTORED_WALL=${W_XS:-}
${p}_TO_XL_LIST_WALL=${W_LIST:-}
${p}_TO_XL_LIST_CPU=${C_LIST:-}
${p}_TOTAL_WALL=${RUN_WALL:-}
${p}_TOTAL_CPU=${C_END:-}
FIG
}

# dom0_trace_sums TRACE: "to_init_hvc to_init_tlbi to_list_hvc to_list_tlbi" from hvtrace's
# output (phases before the one named "/init_reached", and before "xl_list_end": hvtrace names a phase after the DOM0 line starting it, spaces as _).
dom0_trace_sums() {
    awk '
        $1 == "PHASE" { n = $2; name[n] = $3; if ($4 == "tlbi") t[n] += $NF; else if ($4 != "gntop") h[n] += $NF }
        $1 == "END" { name[$2] = $3; if ($2 > max) max = $2 }
        END {
            ii = -1; il = -1; hi = ti = hl = tl = 0
            for (i = 0; i <= max; i++) { if (name[i] == "/init_reached" && ii < 0) ii = i; if (name[i] == "xl_list_end" && il < 0) il = i }
            for (i = 0; i <= max; i++) {
                if (i < ii) { hi += h[i]; ti += t[i] }
                if (i < il) { hl += h[i]; tl += t[i] }
            }
            # A run that never printed the marker has no figure for it.
            if (ii < 0) { hi = "-"; ti = "-" }
            if (il < 0) { hl = "-"; tl = "-" }
            printf "%s %s %s %s\n", hi, ti, hl, tl
        }' "$1"
}

# dom0_report NAME: prints PASS or the failures (FAIL) with the log's last lines; returns 1 on failure.
dom0_report() {
    local name=$1 log=$2
    if [ ${#FAIL[@]} = 0 ]; then
        dlog "$name: PASS"
    else
        dlog "$name: FAIL: ${FAIL[0]}"
        local f
        for f in "${FAIL[@]:1}"; do dlog "$name:       $f"; done
        dlog "$name: last lines of $log:"
        dom0_serial "$log" | tail -n 30 >&2
        return 1
    fi
}

# dom0_main HYP [MODE...]: the runner of run-peer.sh (HYP xen) and run-hv.sh (HYP hv). Modes:
#   check    (default) the full run: every marker, the disk's token, Domain-0 in `xl list`, the
#            hypervisor's version in `xl info` and its banner in `xl dmesg`, dom0's poweroff
#            ends the run with QEMU exit status 0; prints the boot-time figures.
#   console  dom0.shell: the serial port on a unix socket; types `echo "hello-""N"` (N random)
#            into dom0's shell and expects hello-N; 3x Ctrl-A (input to the hypervisor), `h`
#            (its debug-key help; hv: then `p`, its counters), 3x Ctrl-A (back to dom0),
#            `poweroff -f`: QEMU exit status 0.
#   panic    dom0.panic: dom0's kernel crashes (sysrq 'c'); the hypervisor must report it and
#            end the run (QEMU -no-reboot: exit status 0).
#   domus    dom0 (dom0.shell) next to one dom0less domU (/chosen/domU1, "xen,domain": Debian's
#            kernel with tests-nested/linux's initramfs, `hv.shell`): dom0 reaches its shell
#            (markers /init reached, disk ok, xl list end, shell), the domU prints its markers
#            (`(d1) HV-LINUX-MARKER`, `(d1) HV-LINUX-SHELL ready`); typed input reaches dom0's
#            shell; 3x Ctrl-A -> the domU's console, a command typed there is answered by the
#            domU's shell (`(d1) domu-N`); 3x Ctrl-A -> the hypervisor, `q` (its domains);
#            3x Ctrl-A -> dom0, `poweroff -f`: the machine ends with the domU still running
#            (Xen's hwdom_shutdown), QEMU exit status 0. See dom0_mode_domus for Xen's variant.
#   all      check, console, panic (hv: and domus).
# Output in OUT (xen: target/xen-peer, hv: target/hv-dom0): <mode>.log (stamped serial
# lines; check mode: run.log), the DTB (xen-peer.dtb / boot.dtb, same tree for both
# hypervisors), figures.env, trace.txt (TRACE=1).
dom0_main() {
    local hyp=$1 modes=() m rc=0; shift
    modes=("$@"); [ ${#modes[@]} -gt 0 ] || modes=(check)
    MORE_KEYS=()
    if [ "${modes[*]}" = all ]; then
        modes=(check console panic)
        [ "$hyp" != hv ] || modes+=(domus)
    fi
    for m in "${modes[@]}"; do
        case $m in check | console | panic | domus | xl | pv | shell) ;; *) dlog "unknown mode $m (check, console, panic, domus, xl, pv, shell, all)"; return 2 ;; esac
    done
    case $hyp in
        xen)
            OUT=${OUT:-$CARGO_TARGET_DIR/xen-peer}; DLOG=xen-peer; PREFIX=XEN_PEER; DTB_NAME=xen-peer.dtb
            VERSION_ERE='^xen_version +: 4\.20'
            BANNER_ERE='Xen version 4\.20'
            SWITCH_EXPECT="*** Serial input to Xen"
            DOMU_SWITCH_EXPECT="*** Serial input to DOM1"
            KEY_EXPECT="'h' pressed"
            BACK_EXPECT="*** Serial input to DOM0"
            PANIC_ERE=${PANIC_ERE:-'Hardware Dom0 (crashed|shutdown)'}
            ;;
        hv)
            OUT=${OUT:-$CARGO_TARGET_DIR/hv-dom0}; DLOG=hv-dom0; PREFIX=HV_DOM0; DTB_NAME=boot.dtb
            ;;
        *) dlog "unknown hypervisor $hyp"; return 2 ;;
    esac
    mkdir -p "$OUT"
    dom0_setup
    dom0_disk "$OUT"
    if [ "$hyp" = hv ]; then
        dom0_build_hv "$OUT"
        VERSION_ERE="^xen_(version|extra|changeset) +: .*hv"
        BANNER_ERE="hv $HV_VERSION booting"
        # hv's console switch and debug keys (Xen's wording, issue 11): override if hv words them otherwise.
        SWITCH_EXPECT=${HV_SWITCH_EXPECT:-"*** Serial input to hv"}
        DOMU_SWITCH_EXPECT=${HV_DOMU_SWITCH_EXPECT:-"*** Serial input to DOM1"}
        KEY_EXPECT=${HV_KEY_EXPECT:-"'h' pressed"}
        BACK_EXPECT=${HV_BACK_EXPECT:-"*** Serial input to DOM0"}
        # hv's counters key (hv/src/console/keys.rs: `hv: 'p' pressed -> hv's counters`).
        MORE_KEYS=(send=p "expect=${HV_COUNTERS_EXPECT:-"'p' pressed"}" sleep=500)
        PANIC_ERE=${PANIC_ERE:-'d0 ended \((crash|reboot)'}
    fi
    dlog "$hyp: -smp $SMP -m $MEM, dom0_mem=$DOM0_MEM; output in $OUT"
    dlog "hypervisor: $XEN_ARGS"
    for m in "${modes[@]}"; do
        if [ "$rc" != 0 ] && [ "${modes[0]}" = check ] && [ -z "${DOM0_NO_SKIP:-}" ]; then
            # The other modes need a dom0 that boots to its shell: after a failed check they
            # would only wait for their timeout (DOM0_NO_SKIP=1 runs them anyway).
            dlog "$m: SKIPPED (check failed)"
            continue
        fi
        "dom0_mode_$m" "$hyp" || rc=1
    done
    return $rc
}

# dom0_boot HYP DOM0_ARGS DTB: BOOT = the boot arguments of HYP with that dom0 command line
# (the DTB is made from Xen's boot in both cases, and written to DTB).
dom0_boot() {
    dom0_boot_xen "$2"
    dom0_dtb "$3"
    if [ "$1" = xen ]; then
        BOOT=("${BOOT_XEN[@]}")
    else
        dom0_boot_hv "$3"
        BOOT=("${BOOT_HV[@]}")
    fi
}

dom0_mode_check() {
    local hyp=$1 log=$OUT/run.log
    FAIL=()
    dom0_boot "$hyp" "$DOM0_CMDLINE ${DOM0_ARGS_EXTRA:-}" "$OUT/$DTB_NAME"
    dom0_plugin "$OUT/trace.txt"
    dlog "check: dom0: $DOM0_CMDLINE ${DOM0_ARGS_EXTRA:-}; log: $log"
    dom0_run "$log" "${PLUGIN[@]}" "${BOOT[@]}" "${DISK[@]}"
    dom0_check_full "$log" "$VERSION_ERE" "$BANNER_ERE"
    dom0_figures "$log" "$PREFIX" >"$OUT/figures.env"
    dom0_block "$log" 'xl info begin' 'xl list end' | grep -E '^(xen_version|xen_changeset|total_memory|free_memory|nr_cpus)|^Name|^Domain-0' >&2 || true
    dom0_serial "$log" | grep -m1 '^DOM0: disk ok' >&2 || true
    dom0_block "$log" 'xl dmesg begin' 'xl dmesg end' | grep -E -m1 "$BANNER_ERE" >&2 || true
    printf '[%s] figures (wall s / QEMU CPU s): dom0 /init %s / %s, xl list done %s / %s, exit %.1f / %s\n' \
        "$DLOG" "${W_INIT:-?}" "${C_INIT:-?}" "${W_LIST:-?}" "${C_LIST:-?}" "$RUN_WALL" "${C_END:-?}" >&2
    [ -z "${TRACE:-}" ] || dlog "trace: $OUT/trace.txt (hypercalls/TLBIs to /init, to xl list done: $(dom0_trace_sums "$OUT/trace.txt"))"
    dom0_report check "$log"
}

# shell: not a test. dom0 boots as in check (disk attached), then its shell runs on this
# terminal (`-serial stdio`, no QEMU mux: three Ctrl-A reach the hypervisor's console switch);
# `xl`, `xenstore-ls` etc. are on dom0's PATH; `poweroff -f` in dom0 ends the run.
dom0_mode_shell() {
    local hyp=$1
    dom0_boot "$hyp" "$DOM0_CMDLINE dom0.shell ${DOM0_ARGS_EXTRA:-}" "$OUT/$DTB_NAME"
    dlog "shell: dom0's shell on this terminal once 'DOM0: shell' shows; three Ctrl-A switch input; 'poweroff -f' ends it"
    setpriv --pdeathsig KILL -- "$QEMU" "${MACHINE[@]}" -display none -monitor none -serial stdio -no-reboot \
        "${BOOT[@]}" "${DISK[@]}"
}

dom0_mode_console() {
    local hyp=$1 log=$OUT/console.log n=$RANDOM$RANDOM
    FAIL=()
    dom0_boot "$hyp" "$DOM0_CMDLINE dom0.shell ${DOM0_ARGS_EXTRA:-}" "$OUT/console.dtb"
    dlog "console: dom0.shell, serial on a unix socket; log: $log"
    dom0_run_console "$log" "$OUT/serial.sock" \
        "expect=DOM0: shell" sleep=1500 \
        "send=echo \"hello-\"\"$n\"\\r" "expect=hello-$n" \
        'send=\x01\x01\x01' "expect=$SWITCH_EXPECT" \
        send=h "expect=$KEY_EXPECT" sleep=500 "${MORE_KEYS[@]}" \
        'send=\x01\x01\x01' "expect=$BACK_EXPECT" sleep=500 \
        'send=poweroff -f\r' -- "${BOOT[@]}" "${DISK[@]}"
    dom0_check_markers "$log" '/init reached' 'disk ok' 'xl list end' 'shell' || true
    [ "$CHAT_RC" = 0 ] || FAIL+=("$(dom0_serial "$log" | grep -m1 '^hvserial: FAIL' || echo "hvserial exit status $CHAT_RC")")
    [ "$RUN_RC" = 0 ] || FAIL+=("QEMU exit status $RUN_RC (124 = timeout after ${TIMEOUT}s)")
    [ ${#FAIL[@]} != 0 ] || dom0_serial "$log" | grep '^hvserial: saw' >&2
    dom0_report console "$log"
}

dom0_mode_panic() {
    local hyp=$1 log=$OUT/panic.log
    FAIL=()
    # Linux on arm64 has no Xen panic notifier: with panic=0 (Debian's default) the panicked
    # kernel spins and the hypervisor never learns (seen on Xen 4.20, 2026-12-05). panic=1
    # makes it restart 1 s later: SCHEDOP_shutdown(reboot) (drivers/xen: xen_restart), which
    # Xen answers for dom0 with "Hardware Dom0 shutdown: rebooting machine" (hwdom_shutdown);
    # under -no-reboot QEMU then exits 0.
    dom0_boot "$hyp" "$DOM0_CMDLINE dom0.panic panic=1 ${DOM0_ARGS_EXTRA:-}" "$OUT/panic.dtb"
    dlog "panic: dom0.panic panic=1; log: $log"
    local t=$TIMEOUT
    [ "$TIMEOUT" -le 120 ] || TIMEOUT=120
    dom0_run "$log" "${BOOT[@]}" "${DISK[@]}"
    TIMEOUT=$t
    dom0_check_markers "$log" '/init reached' 'xl list end' 'panic' || true
    dom0_serial "$log" | grep -q 'Kernel panic - not syncing' || FAIL+=("no 'Kernel panic' from dom0")
    dom0_serial "$log" | grep -Eq "$PANIC_ERE" || FAIL+=("the hypervisor did not report dom0's crash (/$PANIC_ERE/)")
    [ "$RUN_RC" = 0 ] || FAIL+=("QEMU exit status $RUN_RC (124 = timeout after ${TIMEOUT}s)")
    [ ${#FAIL[@]} != 0 ] || dom0_serial "$log" | grep -E -m2 "Kernel panic|$PANIC_ERE" >&2
    dom0_report panic "$log"
}

# The dom0less domU of the domus mode: Debian's kernel (tests-nested/linux/build.sh: the same
# pinned Image as dom0's) with tests-nested/linux's initramfs (init.sh: HV-LINUX-MARKER,
# HV-LINUX-NPROC, with `hv.shell` a shell on hvc0), DOMU_MEM_MIB (256) MiB, DOMU_CPUS (1)
# vCPUs, its modules at DOMU_KERNEL_ADDR/DOMU_INITRD_ADDR (above dom0's modules: dom0's kernel
# at 0x50000000 is ~47 MiB, its initramfs at 0x58000000 ~10 MiB).
DOMU_MEM_MIB=${DOMU_MEM_MIB:-256}
DOMU_CPUS=${DOMU_CPUS:-1}
DOMU_KERNEL_ADDR=0x60000000
DOMU_INITRD_ADDR=0x64000000

# dom0_domu_setup: DOMU_KERNEL, DOMU_INITRD (the initramfs is built into OUT: .cache may be
# shared read-only).
dom0_domu_setup() {
    local env
    env=$(LINUX_OUT=$OUT/linux "$REPO/tests-nested/linux/build.sh")
    DOMU_KERNEL=$(sed -n 's/^LINUX_IMAGE=//p' <<<"$env")
    DOMU_INITRD=$(sed -n 's/^LINUX_INITRD=//p' <<<"$env")
    [ -f "$DOMU_KERNEL" ] && [ -f "$DOMU_INITRD" ] || { dlog "domU image missing: $env"; return 1; }
    if [ $(( DOMU_KERNEL_ADDR + $(stat -c %s "$DOMU_KERNEL") )) -gt $((DOMU_INITRD_ADDR)) ]; then
        dlog "the domU's kernel overlaps its initramfs at $DOMU_INITRD_ADDR"; return 1
    fi
}

# dom0_add_domu DTB ARGS [EXTRA_PROP]: adds to DTB (made by dom0_dtb, DTB.dts next to it) one
# dom0less domain the way Xen's docs/misc/arm/device-tree/booting.txt ("Dom0less") describes
# it: /chosen/domU1 { compatible = "xen,domain"; #address-cells, #size-cells; memory (KiB,
# two cells); cpus; module@ADDR { "multiboot,kernel", "multiboot,module"; reg; bootargs = ARGS };
# module@ADDR { "multiboot,ramdisk", "multiboot,module"; reg } }, plus EXTRA_PROP (a property
# line, e.g. "vpl011;"). DTB is rewritten (DTB.dts too).
dom0_add_domu() {
    local dtb=$1 args=$2 extra=${3:-} ks rs
    ks=$(printf '0x%x' "$(stat -c %s "$DOMU_KERNEL")")
    rs=$(printf '0x%x' "$(stat -c %s "$DOMU_INITRD")")
    awk -v ks="$ks" -v rs="$rs" -v args="$args" -v cpus="$DOMU_CPUS" -v extra="$extra" \
        -v ka="$DOMU_KERNEL_ADDR" -v ra="$DOMU_INITRD_ADDR" -v mem="$(printf '0x%x' $((DOMU_MEM_MIB * 1024)))" '
        /^\tchosen \{/ && !done { inchosen = 1 }
        inchosen && /^\t\};/ {
            print "\t\tdomU1 {"
            print "\t\t\tcompatible = \"xen,domain\";"
            print "\t\t\t#address-cells = <0x1>;"
            print "\t\t\t#size-cells = <0x1>;"
            printf "\t\t\tmemory = <0x0 %s>;\n", mem
            printf "\t\t\tcpus = <%d>;\n", cpus
            if (extra != "") print "\t\t\t" extra
            printf "\t\t\tmodule@%s {\n", substr(ka, 3)
            print "\t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";"
            printf "\t\t\t\treg = <%s %s>;\n", ka, ks
            printf "\t\t\t\tbootargs = \"%s\";\n", args
            print "\t\t\t};"
            printf "\t\t\tmodule@%s {\n", substr(ra, 3)
            print "\t\t\t\tcompatible = \"multiboot,ramdisk\", \"multiboot,module\";"
            printf "\t\t\t\treg = <%s %s>;\n", ra, rs
            print "\t\t\t};"
            print "\t\t};"
            inchosen = 0; done = 1
        }
        { print }' "$dtb.dts" >"$dtb.domu.dts"
    grep -q 'domU1 {' "$dtb.domu.dts" || { dlog "no /chosen in $dtb.dts"; return 1; }
    mv "$dtb.domu.dts" "$dtb.dts"
    dtc -q -I dts -O dtb -o "$dtb" "$dtb.dts"
}

dom0_mode_domus() {
    local hyp=$1 log=$OUT/domus.log dtb=$OUT/domus.dtb n=$RANDOM$RANDOM k=$RANDOM$RANDOM
    local domu_args="console=hvc0 earlycon=xenboot rdinit=/init panic=-1 loglevel=4 hv.shell" extra=
    # The domU's console lines: hv prefixes its PV console ring's lines "(d1) "; Xen prints its
    # vpl011's as "(XEN) DOM1: " (vpl011_write_data_xen) and its console_io ones "(d1) ".
    local pre='(d1) ' pre_ere='^\(d1\) ' answer="(d1) domu-$k"
    FAIL=()
    dom0_domu_setup
    if [ "$hyp" = xen ]; then
        # Xen 4.20 gives a dom0less domU no PV console ring unless dom0's toolstack makes one
        # (init-dom0less, xen,enhanced) and routes serial input to a domU only through its
        # emulated PL011 (`vpl011`, CONFIG_SBSA_VUART_CONSOLE): the domU gets vpl011 and its
        # console on ttyAMA0 there (its earlycon stays Xen's console_io).
        domu_args="console=ttyAMA0 earlycon=xenboot rdinit=/init panic=-1 loglevel=4 hv.shell"
        extra="vpl011;"
        pre='DOM1: ' pre_ere='^(\(XEN\) )?DOM1: '
        # While serial input goes to the domU, Xen prints its vpl011 text as it comes, "(XEN) "
        # inserted wherever a flush fell (seen: `(XEN) cho "domu-""13(XEN) 55626327"`, then
        # `domu-1355626327` with no prefix): only the answer itself (the echoed command line has
        # `"domu-""K"`, never `domu-K`; a flush inside it would still fail the run).
        answer="domu-$k"
    fi
    dom0_boot_xen "$DOM0_CMDLINE dom0.shell ${DOM0_ARGS_EXTRA:-}"
    dom0_dtb "$dtb"
    dom0_add_domu "$dtb" "$domu_args" "$extra"
    local loaders=(-device "loader,file=$DOMU_KERNEL,addr=$DOMU_KERNEL_ADDR,force-raw=on"
                   -device "loader,file=$DOMU_INITRD,addr=$DOMU_INITRD_ADDR,force-raw=on")
    if [ "$hyp" = xen ]; then
        # The same DTB given to Xen with -dtb (no -append: /chosen/bootargs stays Xen's), every
        # module loaded at its address as for hv.
        BOOT=(-kernel "$XEN_IMAGE" -dtb "$dtb"
              -device "loader,file=$DOM0_KERNEL,addr=$DOM0_KERNEL_ADDR,force-raw=on"
              -device "loader,file=$DOM0_INITRD,addr=$DOM0_INITRD_ADDR,force-raw=on" "${loaders[@]}")
    else
        dom0_boot_hv "$dtb"
        BOOT=("${BOOT_HV[@]}" "${loaders[@]}")
    fi
    dlog "domus: dom0.shell + domU1 ($DOMU_CPUS vCPU, $DOMU_MEM_MIB MiB: $domu_args); log: $log"
    dom0_run_console "$log" "$OUT/serial.sock" \
        "expect=DOM0: shell" sleep=1500 \
        "send=echo \"hello-\"\"$n\"\\r" "expect=hello-$n" \
        'send=\x01\x01\x01' "expect=$DOMU_SWITCH_EXPECT" sleep=500 \
        "send=echo \"domu-\"\"$k\"\\r" "expect=$answer" \
        'send=\x01\x01\x01' "expect=$SWITCH_EXPECT" \
        send=q "expect=${QKEY_EXPECT:-"'q' pressed"}" sleep=500 \
        'send=\x01\x01\x01' "expect=$BACK_EXPECT" sleep=500 \
        'send=poweroff -f\r' -- "${BOOT[@]}" "${DISK[@]}"
    dom0_check_markers "$log" '/init reached' 'disk ok' 'xl list end' 'shell' || true
    dom0_serial "$log" | grep -Eq "${pre_ere}HV-LINUX-MARKER" || FAIL+=("no '${pre}HV-LINUX-MARKER' from the domU")
    dom0_serial "$log" | grep -Eq "${pre_ere}HV-LINUX-NPROC=$DOMU_CPUS[[:space:]]*\$" || FAIL+=("the domU's nproc is not $DOMU_CPUS")
    dom0_serial "$log" | grep -Eq "${pre_ere}HV-LINUX-SHELL ready" || FAIL+=("no '${pre}HV-LINUX-SHELL ready' from the domU")
    if [ "$hyp" = hv ]; then
        local errors; errors=$(dom0_serial "$log" | grep '^hv: ERROR' || true)
        [ -z "$errors" ] || FAIL+=("hv logged an error: $(head -n1 <<<"$errors")")
        # hv's `q` lists both domains, the domU with its console ring.
        dom0_serial "$log" | grep -Eq "^hv: +d1: RAM $DOMU_MEM_MIB MiB .*console ring yes" ||
            FAIL+=("hv's 'q' did not list d1 ($DOMU_MEM_MIB MiB, console ring yes)")
    fi
    [ "$CHAT_RC" = 0 ] || FAIL+=("$(dom0_serial "$log" | grep -m1 '^hvserial: FAIL' || echo "hvserial exit status $CHAT_RC")")
    [ "$RUN_RC" = 0 ] || FAIL+=("QEMU exit status $RUN_RC (124 = timeout after ${TIMEOUT}s)")
    if [ ${#FAIL[@]} = 0 ]; then
        # (xl dmesg in dom0 prints the hypervisor's buffer again, the domU's lines included: first only.)
        dom0_serial "$log" | grep -E -m3 "${pre_ere}HV-LINUX" >&2 || true
        dom0_serial "$log" | grep -E '^hvserial: saw|d[0-9]+ ended|still running|Hardware Dom0' >&2 || true
        dlog "domus: xl list in dom0:"
        dom0_block "$log" 'xl list begin' 'xl list end' >&2
    fi
    dom0_report domus "$log"
}

# The `xl` mode (issue 12): dom0_mode_xl.
# shellcheck source=tests-nested/xen/xl.sh
source "$XEN_DIR/xl.sh"
# The `pv` mode (issue 13): dom0_mode_pv.
# shellcheck source=tests-nested/xen/pv.sh
source "$XEN_DIR/pv.sh"
