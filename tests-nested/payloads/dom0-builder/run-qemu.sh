#!/usr/bin/env bash
# Manual QEMU run of hv with dom0-builder as the control domain (d0).
#
#   tests-nested/payloads/dom0-builder/run-qemu.sh "dom0 mem=64M variant=both -- hello"
#
# Environment (all optional):
#   SMP=1|2            QEMU CPUs (default 1)
#   HVARGS="..."       hv's command line (default "loglvl=info")
#   TIMEOUT=120        seconds before QEMU is killed
#   KERNEL=path        domU kernel Image for the images blob (default: guest-hello)
#   INITRD=path        optional domU initrd for the blob
#   EXTRA_DOMU="..."   also boot guest-hello as a boot-module domain (d1) with
#                      these bootargs (for foreign-domid=1)
#   NO_BUILD=1         reuse the binaries of the last build
#
# It builds hv, guest-hello and dom0-builder (CARGO_TARGET_DIR, default
# target/), writes the images blob (DESIGN.md format) and a DTB with the
# modules in /chosen (dom0 kernel, its multiboot,ramdisk = the blob), runs
# QEMU and exits 0 when the run printed `dom0: RESULT PASS`, or, for a
# stale-test run, when hv ended d0 with a stage-2 fault and no stale read was
# reported.
set -euo pipefail
ARGS="${1:?usage: run-qemu.sh \"<dom0 bootargs>\"}"
SMP="${SMP:-1}"
HVARGS="${HVARGS:-loglvl=info}"
TIMEOUT="${TIMEOUT:-120}"
repo="$(cd "$(dirname "$0")/../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
rel="$target/aarch64-unknown-none/release"
out="$target/dom0-builder-run"
mkdir -p "$out"
objcopy="$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy"

if [[ -z "${NO_BUILD:-}" ]]; then
  (cd "$repo" && CARGO_TARGET_DIR="$target" cargo build -q --release --target aarch64-unknown-none \
    -p hv -p guest-hello -p dom0-builder)
fi
for b in hv guest-hello dom0-builder; do
  "$objcopy" -O binary "$rel/$b" "$out/$b.bin"
done

KERNEL="${KERNEL:-$out/guest-hello.bin}"
python3 - "$out/blob.bin" "$KERNEL" "${INITRD:-}" <<'PY'
import struct, sys
out, kernel, initrd = sys.argv[1], sys.argv[2], sys.argv[3]
ents = [("kernel", open(kernel, "rb").read())]
if initrd:
    ents.append(("initrd", open(initrd, "rb").read()))
page = lambda n: (n + 4095) // 4096 * 4096
off = page(16 + 32 * len(ents))
table, offs = b"", []
for name, data in ents:
    table += name.encode().ljust(16, b"\0") + struct.pack("<QQ", off, len(data))
    offs.append(off)
    off = page(off + len(data))
blob = bytearray(b"HVIMG001" + struct.pack("<II", len(ents), 0) + table)
for o, (_, data) in zip(offs, ents):
    blob += b"\0" * (o - len(blob)) + data
open(out, "wb").write(blob)
PY

# Module addresses: QEMU puts its DTB at 0x48000000; hv at 0x40200000.
K=0x50000000
R=0x51000000
blob_size=$(stat -c %s "$out/blob.bin")
X=$(printf '0x%x' $(( (R + blob_size + 0x1fffff) / 0x200000 * 0x200000 )))
qemu-system-aarch64 -M "virt,virtualization=on,gic-version=3,dumpdtb=$out/base.dtb" \
  -cpu max -smp "$SMP" -m 1G -nic none -nographic >/dev/null 2>&1
dtc -q -I dtb -O dts -o "$out/base.dts" "$out/base.dtb"
python3 - "$out" "$ARGS" "$HVARGS" "$K" "$R" "$X" "${EXTRA_DOMU:-}" <<'PY'
import os, sys
out, args, hvargs, k, r, x, extra = sys.argv[1:]
size = lambda f: hex(os.path.getsize(os.path.join(out, f)))
def mod(addr, compat, f, bootargs=None):
    b = f'\t\t\tbootargs = "{bootargs}";\n' if bootargs is not None else ""
    return (f'\t\tmodule@{int(addr, 16):x} {{\n\t\t\tcompatible = "{compat}", "multiboot,module";\n'
            f'\t\t\treg = <0x00 {addr} 0x00 {size(f)}>;\n{b}\t\t}};\n')
add = (f'\t\txen,xen-bootargs = "{hvargs}";\n\t\t#address-cells = <0x02>;\n\t\t#size-cells = <0x02>;\n'
       + mod(k, "multiboot,kernel", "dom0-builder.bin", args)
       + mod(r, "multiboot,ramdisk", "blob.bin"))
if extra:
    add += mod(x, "multiboot,kernel", "guest-hello.bin", extra)
src = open(os.path.join(out, "base.dts")).read()
i = src.index("\tchosen {\n")
j = src.index("\t};\n", i)
open(os.path.join(out, "run.dts"), "w").write(src[:j] + add + src[j:])
PY
dtc -q -I dts -O dtb -o "$out/run.dtb" "$out/run.dts"

loaders=(-device "loader,file=$out/dom0-builder.bin,addr=$K,force-raw=on"
         -device "loader,file=$out/blob.bin,addr=$R,force-raw=on")
if [[ -n "${EXTRA_DOMU:-}" ]]; then
  loaders+=(-device "loader,file=$out/guest-hello.bin,addr=$X,force-raw=on")
fi
set +e
timeout "$TIMEOUT" qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max \
  -smp "$SMP" -m 1G -nic none -nographic -no-reboot -kernel "$out/hv.bin" -dtb "$out/run.dtb" \
  "${loaders[@]}" 2>&1 | tee "$out/run.log"
set -e
if grep -q "STALE READ SUCCEEDED" "$out/run.log"; then
  echo "run-qemu: FAIL (stale read)"; exit 1
fi
if [[ "$ARGS" == *stale-test=* ]]; then
  grep -q "d0 ended (stage-2 fault" "$out/run.log" && { echo "run-qemu: PASS (stale read faulted)"; exit 0; }
  echo "run-qemu: FAIL (no stage-2 fault for the stale read)"; exit 1
fi
grep -q "dom0: RESULT PASS" "$out/run.log" && { echo "run-qemu: PASS"; exit 0; }
echo "run-qemu: FAIL"; exit 1
