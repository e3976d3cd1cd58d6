#!/usr/bin/env python3
"""Trap breakdown from a rig log made with `run.sh --trace-exits` (RIG_TRACE_EXITS=1).

usage: traps.py LOG HV_ELF [--per N] [--min COUNT]

Reads the `RIG: hist [NAME] kvm_exit:` lines (with or without the run name the merged rig scripts print) (an ftrace hist trigger in L1: every trap of
the VM to L1's KVM, keyed by exit code, exception class and PC; a trapped system
register access is named by disassembling hv's instruction there), names each PC in hv's
image with llvm-addr2line (hv is relocated to its load address, printed by hv as
`image at 0x...`; PCs outside hv's text are the L2 guest's) and prints one table
row per (cause, PC), with the count and the count divided by --per (e.g. the
number of hypercalls of the build under study). Counts cover the whole run.
"""
import re
import subprocess
import sys

EC = {
    0x01: "WFx", 0x07: "FP/SIMD access", 0x16: "HVC64", 0x17: "SMC64",
    0x18: "MSR/MRS (sysreg)", 0x1a: "ERET", 0x20: "IABT (lower EL)",
    0x24: "DABT (lower EL)", 0x3c: "BRK",
}
RET = {0: "IRQ", 1: "EL1 serror", 2: "trap", 3: "illegal", 4: "IL", 5: "serror"}
def rows(text):
    for line in text.splitlines():
        m = re.search(r"RIG: hist (?:\S+ )?(\w+): \{(.*)\} hitcount:\s*(\d+)", line)
        if not m:
            continue
        keys = {}
        for kv in m.group(2).split(","):
            k, v = kv.split(":", 1)
            keys[k.strip()] = v.strip()
        yield m.group(1), keys, int(m.group(3))


def main():
    args = sys.argv[1:]
    per, minc = 1, 20
    if "--per" in args:
        i = args.index("--per"); per = int(args[i + 1]); del args[i:i + 2]
    if "--min" in args:
        i = args.index("--min"); minc = int(args[i + 1]); del args[i:i + 2]
    log, elf = args
    text = open(log, errors="replace").read()
    m = re.search(r"image at (0x[0-9a-f]+)\.\.(0x[0-9a-f]+)", text)
    base = int(m.group(1), 16) if m else 0
    # hv's text: the first (executable) LOAD segment of its ELF, linked at 0.
    seg = subprocess.run(["readelf", "-lW", elf], capture_output=True, text=True).stdout
    text_size = next(int(l.split()[5], 16) for l in seg.splitlines()
                     if l.strip().startswith("LOAD") and " R E " in l)
    end = base + text_size

    def where(pc):
        if base <= pc < end:
            out = subprocess.run(["llvm-addr2line", "-f", "-C", "-e", elf, hex(pc - base)],
                                 capture_output=True, text=True).stdout.split("\n")[0]
            return "hv " + re.sub(r"::h[0-9a-f]{16}$", "", out)[-60:]
        return "L2 guest"

    def insn(pc):
        """The instruction at hv's `pc` (names a trapped system register)."""
        off = pc - base
        out = subprocess.run(["llvm-objdump", "-d", "--no-show-raw-insn",
                              "--start-address=%#x" % off, "--stop-address=%#x" % (off + 4), elf],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            if re.match(r"\s*[0-9a-f]+:\s", line):
                return " ".join(line.split(":", 1)[1].split())
        return "?"

    total = {}
    out = []
    for ev, k, n in rows(text):
        if ev != "kvm_exit":
            continue  # older logs also had a kvm_sys_access histogram (keyed by a pointer)
        total[ev] = total.get(ev, 0) + n
        pc = int(k["vcpu_pc"])
        ec = int(k["esr_ec"]); ret = int(k["ret"])
        cause = EC.get(ec, hex(ec)) if ret == 2 else RET.get(ret, str(ret))
        if ret == 2 and ec == 0x18 and base <= pc < end:
            cause += ": " + insn(pc)
        out.append((n, cause, pc))
    print("| cause | PC | where | count | per %d |" % per)
    print("|---|---|---|---:|---:|")
    for n, cause, pc in sorted(out, key=lambda r: -r[0]):
        if n >= minc:
            print("| %s | %#x | %s | %d | %.3f |" % (cause, pc, where(pc), n, n / per))
    print()
    print("totals (whole run): " + ", ".join("%s %d" % kv for kv in sorted(total.items())))


main()
