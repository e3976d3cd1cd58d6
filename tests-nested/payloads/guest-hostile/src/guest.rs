//! The guest side of `guest-hostile` (see main.rs).

use core::sync::atomic::{AtomicU64, Ordering};
use guest_hostile::{
    find_arg, in_own_ram, tame, Rng, Tame, GICD, GICD_SIZE, GICR, GICR_SIZE, HV_ADDR, MAGIC,
    MULTICALL_ENTRY, OUTSIDE_RAM, RAM_BASE, RAM_SIZE, SAC_BASE, SAC_SIZE,
};
use guest_rt::{hypercall, println, vectors, xen};

// Xen's errno values (public/errno.h), negated as hypercalls return them.
const EPERM: i64 = -1;
const ENOENT: i64 = -2;
const ENXIO: i64 = -6;
const EBUSY: i64 = -16;
const ESRCH: i64 = -3;
const EFAULT: i64 = -14;
const EINVAL: i64 = -22;
const ENOSPC: i64 = -28;
const ENOSYS: i64 = -38;
const EOPNOTSUPP: i64 = -95;

// Hypercall numbers (public/xen.h; hv_op is hv's 49).
const MEMORY_OP: u64 = 12;
const MULTICALL: u64 = 13;
const XEN_VERSION: u64 = 17;
const CONSOLE_IO: u64 = 18;
const GRANT_TABLE_OP: u64 = 20;
const VM_ASSIST: u64 = 21;
const VCPU_OP: u64 = 24;
const SCHED_OP: u64 = 29;
const EVENT_CHANNEL_OP: u64 = 32;
const HVM_OP: u64 = 34;
const PLATFORM_OP: u64 = 7;
const SYSCTL: u64 = 35;
const DOMCTL: u64 = 36;
const HV_OP: u64 = 49;

/// Vector entry of a synchronous exception from EL1 with SP_EL1.
const VEC_SYNC: u64 = 4;
/// `ESR_EL1.EC` of a data abort taken without a change in EL.
const EC_DABT_CUR: u8 = 0x25;

/// Scratch the hypercalls may read and write (ours, no Rust object lives in it).
const SCRATCH: u64 = SAC_BASE;

struct Tally {
    pass: u32,
    fail: u32,
}

static TALLY: spin_tally::Cell = spin_tally::Cell::new();

mod spin_tally {
    use core::sync::atomic::{AtomicU32, Ordering};
    /// Pass/fail counters (only vCPU 0 runs the tests).
    pub struct Cell(AtomicU32, AtomicU32);
    impl Cell {
        pub const fn new() -> Self {
            Self(AtomicU32::new(0), AtomicU32::new(0))
        }
        pub fn add(&self, ok: bool) {
            if ok {
                self.0.fetch_add(1, Ordering::Relaxed);
            } else {
                self.1.fetch_add(1, Ordering::Relaxed);
            }
        }
        pub fn get(&self) -> super::Tally {
            super::Tally {
                pass: self.0.load(Ordering::Relaxed),
                fail: self.1.load(Ordering::Relaxed),
            }
        }
    }
}

/// Records a named test: `PASS name (got ..)` or `FAIL name (got .., expect ..)`.
fn check(name: &str, ok: bool, got: i64, want: &str) {
    TALLY.add(ok);
    if ok {
        println!("PASS {} (got {})", name, got);
    } else {
        println!("FAIL {} (got {}, expect {})", name, got, want);
    }
}

fn expect(name: &str, got: i64, want: i64) {
    let mut w = [0u8; 24];
    check(name, got == want, got, fmt_i64(&mut w, want));
}

/// `want` as text without an allocator.
fn fmt_i64(buf: &mut [u8; 24], v: i64) -> &str {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    core::str::from_utf8(&buf[i..]).unwrap_or("?")
}

/// A raw hypercall with hostile arguments.
fn hc(nr: u64, a: [u64; 5]) -> i64 {
    // SAFETY: every address argument the tests pass is either outside our
    // RAM (hv must refuse it), an MMIO address (hv must refuse it), or in
    // the sacrificial region, where no Rust object lives and any write hv
    // makes is harmless to this program.
    unsafe { hypercall::hypercall(nr, a) }
}

/// True if `r` looks like a hypercall answer (a value or a Xen errno), not
/// garbage left in x0.
fn sane(r: i64) -> bool {
    r >= -4095
}

// ---- memory helpers on the sacrificial region ----

fn sac_write_u64(addr: u64, v: u64) {
    if (SAC_BASE..SAC_BASE + SAC_SIZE - 7).contains(&addr) && addr.is_multiple_of(8) {
        // SAFETY: an aligned word inside the sacrificial region (checked),
        // which no Rust object uses and which is mapped RAM unless a hostile
        // call unmapped it: callers only write pages they know are mapped
        // (the first 64 KiB, never given to a removing call).
        unsafe { (addr as *mut u64).write_volatile(v) };
    }
}

fn sac_read_u64(addr: u64) -> u64 {
    if (SAC_BASE..SAC_BASE + SAC_SIZE - 7).contains(&addr) && addr.is_multiple_of(8) {
        // SAFETY: as in sac_write_u64 (a read).
        unsafe { (addr as *const u64).read_volatile() }
    } else {
        0
    }
}

fn sac_fill(addr: u64, words: usize, v: u64) {
    for i in 0..words as u64 {
        sac_write_u64(addr + 8 * i, v);
    }
}

fn put16(addr: u64, off: u64, v: u16) {
    let a = (addr + off) & !7;
    let sh = ((addr + off) & 7) * 8;
    let w = sac_read_u64(a) & !(0xffff << sh) | (u64::from(v) << sh);
    sac_write_u64(a, w);
}

fn put32(addr: u64, off: u64, v: u32) {
    let a = (addr + off) & !7;
    let sh = ((addr + off) & 7) * 8;
    let w = sac_read_u64(a) & !(0xffff_ffff << sh) | (u64::from(v) << sh);
    sac_write_u64(a, w);
}

fn get32(addr: u64, off: u64) -> u32 {
    let a = (addr + off) & !7;
    let sh = ((addr + off) & 7) * 8;
    (sac_read_u64(a) >> sh) as u32
}

// ---- exceptions: run one instruction with the vector table armed ----

static LAST_ELR: AtomicU64 = AtomicU64::new(0);

/// What an armed access did: the value, or the exception it took.
#[derive(Clone, Copy)]
enum Access {
    Value(u64),
    Trap(vectors::Caught),
}

macro_rules! armed {
    ($insn:expr, $addr:expr, $val:expr) => {{
        let before = vectors::count();
        let mut v: u64 = $val;
        // SAFETY: the resume slot is armed with label 2 first, so if the
        // instruction traps the guest-rt handler (which saves and restores
        // what it uses) returns right after it. The address is either a
        // vGIC register (emulated by hv, no Rust object), or, for system
        // registers, no memory at all.
        unsafe {
            core::arch::asm!(
                "adr {t}, 2f",
                "str {t}, [{slot}]",
                $insn,
                "2:",
                t = out(reg) _,
                slot = in(reg) vectors::resume_slot(),
                a = in(reg) $addr,
                v = inout(reg) v,
                options(nostack),
            );
        }
        vectors::disarm();
        if vectors::count() != before {
            match vectors::last() {
                Some(c) => {
                    LAST_ELR.store(c.elr, Ordering::Relaxed);
                    Access::Trap(c)
                }
                None => Access::Value(v),
            }
        } else {
            Access::Value(v)
        }
    }};
}

fn mmio_read(addr: u64, width: u8) -> Access {
    match width {
        1 => armed!("ldrb {v:w}, [{a}]", addr, 0),
        2 => armed!("ldrh {v:w}, [{a}]", addr, 0),
        4 => armed!("ldr {v:w}, [{a}]", addr, 0),
        _ => armed!("ldr {v}, [{a}]", addr, 0),
    }
}

fn mmio_write(addr: u64, width: u8, val: u64) -> Access {
    match width {
        1 => armed!("strb {v:w}, [{a}]", addr, val),
        2 => armed!("strh {v:w}, [{a}]", addr, val),
        4 => armed!("str {v:w}, [{a}]", addr, val),
        _ => armed!("str {v}, [{a}]", addr, val),
    }
}

macro_rules! sysreg_read {
    ($r:literal) => {
        armed!(concat!("mrs {v}, ", $r, " // {a}"), 0u64, 0)
    };
}
macro_rules! sysreg_write {
    ($r:literal, $val:expr) => {
        armed!(concat!("msr ", $r, ", {v} // {a}"), 0u64, $val)
    };
}

fn describe(a: Access) -> i64 {
    match a {
        Access::Value(v) => v as i64,
        Access::Trap(c) => -(0x1000 + i64::from(xen::esr_ec(c.esr))),
    }
}

// ---- stage 1: identity map, GIC as Normal memory, a Device alias ----

#[repr(C, align(4096))]
struct Table([u64; 512]);
static mut L1: Table = Table([0; 512]);

/// VA of the Device-memory alias of IPA 0..1 GiB (GICD, GICR).
const DEVICE_ALIAS: u64 = 0x8000_0000;

/// Turns this vCPU's MMU on with 1 GiB identity blocks: 0..1G Normal
/// (GICD/GICR/the console page as Normal memory: unaligned accesses reach
/// hv), 1G..2G Normal (RAM), and VA 2G..3G -> IPA 0..1G as Device-nGnRnE.
fn mmu_on() {
    const VALID_BLOCK: u64 = 0b01;
    const AF: u64 = 1 << 10;
    const SH_INNER: u64 = 0b11 << 8;
    const NORMAL: u64 = 1 << 2; // AttrIndx 1
    const DEVICE: u64 = 0; // AttrIndx 0
    let normal = VALID_BLOCK | AF | SH_INNER | NORMAL;
    let table = core::ptr::addr_of_mut!(L1) as *mut u64;
    for (i, desc) in [normal, 0x4000_0000 | normal, VALID_BLOCK | AF | DEVICE]
        .into_iter()
        .enumerate()
    {
        let slot = table.wrapping_add(i);
        // SAFETY: entry i (< 3) of L1, a 4 KiB-aligned static of 512 words
        // that only this function touches, before the MMU uses it.
        unsafe { slot.write_volatile(desc) };
    }
    let mair: u64 = 0xff << 8; // attr0 Device-nGnRnE, attr1 Normal WB RA/WA
    let tcr: u64 = 25 // T0SZ: 39-bit VAs, walk starts at level 1
        | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) // WB WA, inner shareable
        | (1 << 23) // EPD1: no TTBR1 walks
        | (0b10 << 30) // TG1 4K
        | (0b010 << 32); // IPS 40 bits
                         // SAFETY: the tables identity-map every address this program uses
                         // (its image, stack, the sacrificial region, the GIC), so execution
                         // continues at the next instruction with the MMU on. The DC CIVAC makes
                         // the table written with the MMU off visible to cacheable walks; the
                         // TLBI drops anything cached under the old (off) regime; the ISBs make
                         // each system register write take effect before the next step.
    unsafe {
        core::arch::asm!(
            "dc civac, {tab}",
            "dsb sy",
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {tab}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "mrs {t}, sctlr_el1",
            "orr {t}, {t}, #1",        // M
            "orr {t}, {t}, #(1 << 2)", // C
            "orr {t}, {t}, #(1 << 12)", // I
            "bic {t}, {t}, #(1 << 1)", // A = 0: unaligned Normal accesses allowed
            "msr sctlr_el1, {t}",
            "isb",
            tab = in(reg) table as u64,
            mair = in(reg) mair,
            tcr = in(reg) tcr,
            t = out(reg) _,
            options(nostack),
        );
    }
}

// ---- PSCI ----

fn smccc(hvc: bool, fid: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = fid;
    if hvc {
        // SAFETY: SMCCC call through HVC #0 (hv's PSCI conduit); the callee
        // may clobber x0..x17, declared here; PSCI takes values only.
        unsafe {
            core::arch::asm!("hvc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                out("x15") _, out("x16") _, out("x17") _, options(nostack));
        }
    } else {
        // SAFETY: as above through SMC #0, which hv traps (HCR_EL2.TSC).
        unsafe {
            core::arch::asm!("smc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                out("x15") _, out("x16") _, out("x17") _, options(nostack));
        }
    }
    x0 as i64
}

const PSCI_VERSION: u64 = 0x8400_0000;
const PSCI_CPU_OFF: u64 = 0x8400_0002;
const PSCI_CPU_ON_64: u64 = 0xc400_0003;
const PSCI_CPU_ON_32: u64 = 0x8400_0003;
const PSCI_AFFINITY_INFO_64: u64 = 0xc400_0004;
const PSCI_FEATURES: u64 = 0x8400_000a;
const PSCI_NOT_SUPPORTED: i64 = -1;
const PSCI_INVALID_PARAMETERS: i64 = -2;
const PSCI_ALREADY_ON: i64 = -4;

// ---- the tests ----

/// Every hypercall number 0..=64 with seven argument patterns. Numbers hv
/// does not implement must answer -ENOSYS to all; for the others the
/// patterns with a bad struct pointer must get Xen's errno.
fn sweep() {
    let patterns: [[u64; 5]; 7] = [
        [0; 5],
        [u64::MAX; 5],
        [0, OUTSIDE_RAM, OUTSIDE_RAM, OUTSIDE_RAM, 0],
        [1, GICD, GICD + 1, MAGIC, 7],
        [
            2,
            HV_ADDR,
            0xffff_ffff,
            RAM_BASE + RAM_SIZE - 8,
            0x7fff_ffff,
        ],
        [0x3f, SCRATCH + 1, 0x7fff_ffff, SCRATCH + 3, 1 << 40],
        [3, SCRATCH + 0xff9, 1 << 40, 0, u64::MAX],
    ];
    // Xen's answers for pattern 2 (handle outside RAM) and pattern 3 (MMIO
    // handle). Pattern 2's sub-op 0 is one hv does not have for memory_op
    // (increase_reservation: -ENOSYS whatever the handle) and, for
    // grant_table_op, map_grant_ref: both are left to the targeted tests.
    let p2 = |nr: u64| -> Option<i64> {
        Some(match nr {
            MULTICALL | CONSOLE_IO | EVENT_CHANNEL_OP | HVM_OP | SYSCTL | DOMCTL | PLATFORM_OP => {
                EFAULT
            }
            VM_ASSIST => EINVAL,
            VCPU_OP => ENOENT,
            SCHED_OP => 0,
            HV_OP => EPERM,
            _ => return None,
        })
    };
    let p3 = |nr: u64| -> Option<i64> {
        Some(match nr {
            MEMORY_OP | MULTICALL | XEN_VERSION | EVENT_CHANNEL_OP | HVM_OP | SYSCTL | DOMCTL
            | PLATFORM_OP => EFAULT,
            VM_ASSIST => EINVAL,
            VCPU_OP => ENOENT,
            HV_OP => EPERM,
            _ => return None,
        })
    };
    sac_fill(SCRATCH, 1024, 0xa5a5_a5a5_a5a5_a5a5);
    let mut unknown_ok = 0u32;
    let mut unknown_bad = 0u32;
    for nr in 0..=64u64 {
        let mut rets = [0i64; 7];
        for (i, p) in patterns.iter().enumerate() {
            let mut a = *p;
            let t = tame(nr, &mut a);
            println!(
                "S nr={} p{} a=[{:#x},{:#x},{:#x},{:#x},{:#x}]{}",
                nr,
                i,
                a[0],
                a[1],
                a[2],
                a[3],
                a[4],
                if t == Tame::AsDrawn { "" } else { " (tamed)" }
            );
            rets[i] = hc(nr, a);
        }
        println!("S nr={} -> {:?}", nr, rets);
        let implemented = guest_hostile::IMPLEMENTED.contains(&nr);
        if !implemented {
            if rets.iter().all(|r| *r == ENOSYS) {
                unknown_ok += 1;
            } else {
                unknown_bad += 1;
                println!(
                    "FAIL hypercall {} (unassigned) -> -ENOSYS for every pattern (got {:?})",
                    nr, rets
                );
            }
            continue;
        }
        let mut name = [0u8; 96];
        if let Some(w) = p2(nr) {
            expect(
                label(&mut name, "hypercall ", nr, ": handle outside RAM"),
                rets[2],
                w,
            );
        }
        if let Some(w) = p3(nr) {
            expect(
                label(&mut name, "hypercall ", nr, ": MMIO handle"),
                rets[3],
                w,
            );
        }
        let all_sane = rets.iter().all(|r| sane(*r));
        check(
            label(
                &mut name,
                "hypercall ",
                nr,
                ": seven hostile patterns answered",
            ),
            all_sane,
            rets.iter().copied().min().unwrap_or(0),
            "values or Xen errnos",
        );
    }
    TALLY.add(unknown_bad == 0);
    if unknown_bad == 0 {
        println!(
            "PASS unassigned hypercalls 0..=64 -> -ENOSYS ({} numbers)",
            unknown_ok
        );
    } else {
        println!(
            "FAIL unassigned hypercalls 0..=64 -> -ENOSYS ({} numbers wrong)",
            unknown_bad
        );
    }
}

/// "prefix<n>suffix" in `buf` (`n` in hex from 0x100 on: register offsets).
fn label<'a>(buf: &'a mut [u8; 96], prefix: &str, n: u64, suffix: &str) -> &'a str {
    let mut num = [0u8; 24];
    let mut hex = [0u8; 18];
    let ns = if n >= 0x100 {
        let mut i = hex.len();
        let mut v = n;
        while v != 0 {
            i -= 1;
            hex[i] = b"0123456789abcdef"[(v & 0xf) as usize];
            v >>= 4;
        }
        i -= 2;
        hex[i] = b'0';
        hex[i + 1] = b'x';
        core::str::from_utf8(&hex[i..]).unwrap_or("?")
    } else {
        fmt_i64(&mut num, n as i64)
    };
    let mut len = 0;
    for b in prefix.bytes().chain(ns.bytes()).chain(suffix.bytes()) {
        if len < buf.len() {
            buf[len] = b;
            len += 1;
        }
    }
    core::str::from_utf8(&buf[..len]).unwrap_or("?")
}

fn unknown_subops() {
    sac_fill(SCRATCH, 64, 0);
    let s = SCRATCH;
    expect(
        "memory_op unknown cmd 62 -> -ENOSYS",
        hc(MEMORY_OP, [62, s, 0, 0, 0]),
        ENOSYS,
    );
    expect(
        "xen_version unknown cmd -> -ENOSYS",
        hc(XEN_VERSION, [0x7fff_fff0, s, 0, 0, 0]),
        ENOSYS,
    );
    expect(
        "console_io unknown cmd -> -ENOSYS",
        hc(CONSOLE_IO, [0x7fff_fff0, 1, s, 0, 0]),
        ENOSYS,
    );
    expect(
        "grant_table_op unknown cmd -> -ENOSYS",
        hc(GRANT_TABLE_OP, [0xff0, s, 1, 0, 0]),
        ENOSYS,
    );
    expect(
        "grant_table_op continuation bits on a cmd that takes none -> -EINVAL",
        hc(GRANT_TABLE_OP, [0x7fff_fff0, s, 1, 0, 0]),
        EINVAL,
    );
    expect(
        "sched_op unknown cmd -> -ENOSYS",
        hc(SCHED_OP, [0x7fff_fff0, s, 0, 0, 0]),
        ENOSYS,
    );
    expect(
        "event_channel_op unknown cmd -> -ENOSYS",
        hc(EVENT_CHANNEL_OP, [0x7fff_fff0, s, 0, 0, 0]),
        ENOSYS,
    );
    expect(
        "hvm_op unknown cmd -> -ENOSYS",
        hc(HVM_OP, [0x7fff_fff0, s, 0, 0, 0]),
        ENOSYS,
    );
    // Type 5 (VMASST_TYPE_runstate_update_flag) is the one Arm allows; Xen
    // checks the type first (-EINVAL), then the command (-ENOSYS).
    expect(
        "vm_assist unknown cmd, valid type -> -ENOSYS",
        hc(VM_ASSIST, [0x7fff_fff0, 5, 0, 0, 0]),
        ENOSYS,
    );
    expect(
        "vm_assist type 0 (not valid on Arm) -> -EINVAL",
        hc(VM_ASSIST, [0, 0, 0, 0, 0]),
        EINVAL,
    );
    expect(
        "vcpu_op unknown cmd on vCPU 0 -> -EINVAL (Arm)",
        hc(VCPU_OP, [0x7fff_fff0, 0, s, 0, 0]),
        EINVAL,
    );
    expect(
        "hv_op from a domU -> -EPERM",
        hc(HV_OP, [1, s, 0, 0, 0]),
        EPERM,
    );
    expect(
        "hv_op get_resources from a domU -> -EPERM",
        hc(HV_OP, [3, s, 0, 0, 0]),
        EPERM,
    );
    expect(
        "xen_version XENVER_pagesize with a non-NULL arg -> -EINVAL",
        hc(XEN_VERSION, [7, s, 0, 0, 0]),
        EINVAL,
    );
    // struct xen_feature_info { unsigned int submap_idx; uint32_t submap; }
    put32(s, 0, 9999);
    expect(
        "xen_version get_features submap 9999 -> -EINVAL",
        hc(XEN_VERSION, [6, s, 0, 0, 0]),
        EINVAL,
    );
}

// EVTCHNOP_* (public/event_channel.h).
const EV_BIND_INTERDOMAIN: u64 = 0;
const EV_BIND_VIRQ: u64 = 1;
const EV_CLOSE: u64 = 3;
const EV_SEND: u64 = 4;
const EV_STATUS: u64 = 5;
const EV_ALLOC_UNBOUND: u64 = 6;
const EV_BIND_IPI: u64 = 7;
const EV_BIND_VCPU: u64 = 8;
const EV_UNMASK: u64 = 9;
const EV_INIT_CONTROL: u64 = 11;
const EV_EXPAND_ARRAY: u64 = 12;
const EV_SET_PRIORITY: u64 = 13;
const DOMID_SELF: u16 = 0x7ff0;

fn ev(cmd: u64, arg: u64) -> i64 {
    hc(EVENT_CHANNEL_OP, [cmd, arg, 0, 0, 0])
}

fn evtchn_abuse() {
    let s = SCRATCH;
    sac_fill(s, 8, 0);
    put32(s, 0, 0);
    expect("EVTCHNOP_send port 0 -> -EINVAL", ev(EV_SEND, s), EINVAL);
    put32(s, 0, 1023);
    expect(
        "EVTCHNOP_send free port 1023 -> -EINVAL",
        ev(EV_SEND, s),
        EINVAL,
    );
    put32(s, 0, u32::MAX);
    expect(
        "EVTCHNOP_send port 0xffffffff -> -EINVAL",
        ev(EV_SEND, s),
        EINVAL,
    );
    put32(s, 0, 0);
    expect("EVTCHNOP_close port 0 -> -EINVAL", ev(EV_CLOSE, s), EINVAL);
    put32(s, 0, 5000);
    expect(
        "EVTCHNOP_close port 5000 -> -EINVAL",
        ev(EV_CLOSE, s),
        EINVAL,
    );
    put32(s, 0, u32::MAX);
    expect(
        "EVTCHNOP_unmask port 0xffffffff -> -EINVAL",
        ev(EV_UNMASK, s),
        EINVAL,
    );
    expect(
        "EVTCHNOP_send handle outside RAM -> -EFAULT",
        ev(EV_SEND, OUTSIDE_RAM),
        EFAULT,
    );
    expect(
        "EVTCHNOP_send handle in the GIC -> -EFAULT",
        ev(EV_SEND, GICD + 0x100),
        EFAULT,
    );
    expect(
        "EVTCHNOP_status handle at hv's addresses -> -EFAULT",
        ev(EV_STATUS, HV_ADDR),
        EFAULT,
    );
    // alloc_unbound { domid_t dom, remote_dom; OUT evtchn_port_t port; }
    sac_fill(s, 8, 0);
    put16(s, 0, 0);
    put16(s, 2, DOMID_SELF);
    expect(
        "EVTCHNOP_alloc_unbound in dom0 from a domU -> -EPERM",
        ev(EV_ALLOC_UNBOUND, s),
        EPERM,
    );
    // bind_interdomain { domid_t remote_dom; port remote_port; OUT local_port }
    sac_fill(s, 8, 0);
    put16(s, 0, 0x7000);
    put32(s, 4, 1);
    expect(
        "EVTCHNOP_bind_interdomain to domain 0x7000 -> -ESRCH",
        ev(EV_BIND_INTERDOMAIN, s),
        ESRCH,
    );
    put16(s, 0, DOMID_SELF);
    put32(s, 4, 1);
    expect(
        "EVTCHNOP_bind_interdomain to own console port 1 -> -EINVAL",
        ev(EV_BIND_INTERDOMAIN, s),
        EINVAL,
    );
    // bind_virq { virq; vcpu; OUT port }
    sac_fill(s, 8, 0);
    put32(s, 0, 9999);
    expect(
        "EVTCHNOP_bind_virq virq 9999 -> -EINVAL",
        ev(EV_BIND_VIRQ, s),
        EINVAL,
    );
    put32(s, 0, 0);
    put32(s, 4, 99);
    expect(
        "EVTCHNOP_bind_virq vcpu 99 -> -ENOENT",
        ev(EV_BIND_VIRQ, s),
        ENOENT,
    );
    sac_fill(s, 8, 0);
    put32(s, 0, 77);
    expect(
        "EVTCHNOP_bind_ipi vcpu 77 -> -ENOENT",
        ev(EV_BIND_IPI, s),
        ENOENT,
    );
    // bind_vcpu { port; vcpu }
    put32(s, 0, 1);
    put32(s, 4, 99);
    expect(
        "EVTCHNOP_bind_vcpu console port to vcpu 99 -> -ENOENT",
        ev(EV_BIND_VCPU, s),
        ENOENT,
    );
    // status { domid_t dom; port; OUT ... }
    sac_fill(s, 8, 0);
    put16(s, 0, DOMID_SELF);
    put32(s, 4, 99_999);
    expect(
        "EVTCHNOP_status port 99999 -> -EINVAL",
        ev(EV_STATUS, s),
        EINVAL,
    );
    put16(s, 0, 0);
    put32(s, 4, 1);
    expect(
        "EVTCHNOP_status of dom0's port from a domU -> -EPERM",
        ev(EV_STATUS, s),
        EPERM,
    );
    // FIFO (Xen 4.20's errnos), every call failing so this domain stays on
    // 2-level: init_control { u64 control_gfn; u32 offset; u32 vcpu; OUT
    // u8 link_bits; }, expand_array { u64 array_gfn }, set_priority { port; prio }.
    sac_fill(s, 3, 0);
    sac_write_u64(s, OUTSIDE_RAM >> 12);
    put32(s, 12, 99);
    expect(
        "EVTCHNOP_init_control vcpu 99 -> -ENOENT",
        ev(EV_INIT_CONTROL, s),
        ENOENT,
    );
    put32(s, 12, 0);
    put32(s, 8, 4093);
    expect(
        "EVTCHNOP_init_control offset crossing the page -> -EINVAL",
        ev(EV_INIT_CONTROL, s),
        EINVAL,
    );
    put32(s, 8, 4);
    expect(
        "EVTCHNOP_init_control offset 4 (unaligned) -> -EINVAL",
        ev(EV_INIT_CONTROL, s),
        EINVAL,
    );
    put32(s, 8, 0);
    expect(
        "EVTCHNOP_init_control gfn outside RAM -> -EINVAL",
        ev(EV_INIT_CONTROL, s),
        EINVAL,
    );
    sac_write_u64(s, u64::MAX);
    expect(
        "EVTCHNOP_init_control gfn 2^64-1 -> -EINVAL",
        ev(EV_INIT_CONTROL, s),
        EINVAL,
    );
    sac_write_u64(s, HV_ADDR >> 12);
    expect(
        "EVTCHNOP_expand_array before init_control -> -EOPNOTSUPP",
        ev(EV_EXPAND_ARRAY, s),
        EOPNOTSUPP,
    );
    put32(s, 0, 1);
    put32(s, 4, 3);
    expect(
        "EVTCHNOP_set_priority on 2-level -> -ENOSYS",
        ev(EV_SET_PRIORITY, s),
        ENOSYS,
    );
    put32(s, 0, u32::MAX);
    expect(
        "EVTCHNOP_set_priority port 0xffffffff -> -EINVAL",
        ev(EV_SET_PRIORITY, s),
        EINVAL,
    );
    expect(
        "EVTCHNOP_init_control handle outside RAM -> -EFAULT",
        ev(EV_INIT_CONTROL, OUTSIDE_RAM),
        EFAULT,
    );
    // Allocate until the table is full, then give everything back.
    let mut ports = 0u32;
    let mut last = 0i64;
    let mut max_port = 0u32;
    for _ in 0..5000 {
        sac_fill(s, 2, 0);
        put16(s, 0, DOMID_SELF);
        put16(s, 2, DOMID_SELF);
        last = ev(EV_ALLOC_UNBOUND, s);
        if last != 0 {
            break;
        }
        ports += 1;
        max_port = max_port.max(get32(s, 4));
    }
    println!(
        "alloc_unbound: {} ports (highest {}), then {}",
        ports, max_port, last
    );
    expect("EVTCHNOP_alloc_unbound until full -> -ENOSPC", last, ENOSPC);
    let mut close_bad = 0u32;
    for p in 2..=max_port {
        put32(s, 0, p);
        if ev(EV_CLOSE, s) != 0 {
            close_bad += 1;
        }
    }
    check(
        "every allocated port closes",
        close_bad == 0,
        i64::from(close_bad),
        "0 failures",
    );
    sac_fill(s, 2, 0);
    put16(s, 0, DOMID_SELF);
    put16(s, 2, DOMID_SELF);
    let rc = ev(EV_ALLOC_UNBOUND, s);
    let p = get32(s, 4);
    check(
        "a port can be allocated again after closing",
        rc == 0 && p >= 2,
        rc,
        "0 and port >= 2",
    );
    put32(s, 0, p);
    let _ = ev(EV_CLOSE, s);
    // Sending to oneself over a loopback interdomain channel 1000 times.
    sac_fill(s, 2, 0);
    put16(s, 0, DOMID_SELF);
    put16(s, 2, DOMID_SELF);
    let rc1 = ev(EV_ALLOC_UNBOUND, s);
    let a = get32(s, 4);
    sac_fill(s, 2, 0);
    put16(s, 0, DOMID_SELF);
    put32(s, 4, a);
    let rc2 = ev(EV_BIND_INTERDOMAIN, s);
    let b = get32(s, 8);
    let mut bad = 0u32;
    for _ in 0..1000 {
        put32(s, 0, b);
        if ev(EV_SEND, s) != 0 {
            bad += 1;
        }
    }
    check(
        "loopback interdomain channel: 1000 sends answer 0",
        rc1 == 0 && rc2 == 0 && bad == 0,
        i64::from(bad),
        "0 failures",
    );
    put32(s, 0, b);
    let _ = ev(EV_CLOSE, s);
    put32(s, 0, a);
    let _ = ev(EV_CLOSE, s);
}

// GNTTABOP_* (public/grant_table.h).
const GT_MAP_GRANT_REF: u64 = 0;
const GT_UNMAP_GRANT_REF: u64 = 1;
const GT_SETUP_TABLE: u64 = 2;
const GT_QUERY_SIZE: u64 = 6;
const GT_SET_VERSION: u64 = 8;
const GT_CACHE_FLUSH: u64 = 12;
const GT_COPY: u64 = 5;
const GNTCOPY_SOURCE_GREF: u16 = 1;

fn grant_abuse() {
    let s = SCRATCH;
    // setup_table { domid_t dom; u32 nr_frames; OUT int16 status; handle frame_list }
    sac_fill(s, 4, 0);
    put16(s, 0, DOMID_SELF);
    put32(s, 4, 1000);
    sac_write_u64(s + 16, SCRATCH + 0x1000);
    let rc = hc(GRANT_TABLE_OP, [GT_SETUP_TABLE, s, 1, 0, 0]);
    let st = get32(s, 8) as u16 as i16;
    check(
        "GNTTABOP_setup_table 1000 frames -> status GNTST_general_error",
        rc == 0 && st == -1,
        if rc != 0 { rc } else { i64::from(st) },
        "rc 0, status -1",
    );
    sac_fill(s, 4, 0);
    put16(s, 0, DOMID_SELF);
    put32(s, 4, 1);
    sac_write_u64(s + 16, OUTSIDE_RAM);
    let rc = hc(GRANT_TABLE_OP, [GT_SETUP_TABLE, s, 1, 0, 0]);
    let st = get32(s, 8) as u16 as i16;
    check(
        "GNTTABOP_setup_table frame_list outside RAM -> -EFAULT or GNTST_bad_virt_addr",
        rc == EFAULT || (rc == 0 && st == -5),
        if rc != 0 { rc } else { i64::from(st) },
        "-14, or status -5",
    );
    sac_fill(s, 4, 0);
    put16(s, 0, 0x7000);
    put32(s, 4, 1);
    sac_write_u64(s + 16, SCRATCH + 0x1000);
    let rc = hc(GRANT_TABLE_OP, [GT_SETUP_TABLE, s, 1, 0, 0]);
    let st = get32(s, 8) as u16 as i16;
    check(
        "GNTTABOP_setup_table for domain 0x7000 -> status GNTST_bad_domain",
        rc == 0 && st == -2,
        if rc != 0 { rc } else { i64::from(st) },
        "rc 0, status -2",
    );
    expect(
        "GNTTABOP_query_size handle outside RAM -> -EFAULT",
        hc(GRANT_TABLE_OP, [GT_QUERY_SIZE, OUTSIDE_RAM, 1, 0, 0]),
        EFAULT,
    );
    let rc = hc(
        GRANT_TABLE_OP,
        [GT_QUERY_SIZE, OUTSIDE_RAM, 0x7fff_ffff, 0, 0],
    );
    check(
        "GNTTABOP_query_size count 0x7fffffff answers",
        sane(rc) && rc < 0,
        rc,
        "an errno",
    );
    let rc = hc(
        GRANT_TABLE_OP,
        [GT_QUERY_SIZE, OUTSIDE_RAM, 0xffff_ffff, 0, 0],
    );
    expect(
        "GNTTABOP_query_size count -1 -> -EINVAL ((int)count < 0)",
        rc,
        EINVAL,
    );
    sac_fill(s, 1, 0);
    put32(s, 0, 2);
    let rc = hc(GRANT_TABLE_OP, [GT_SET_VERSION, s, 1, 0, 0]);
    check(
        "GNTTABOP_set_version 2 refused (Arm: v1 only)",
        rc < 0 && sane(rc),
        rc,
        "an errno",
    );
    // map_grant_ref of a made-up grant from domain 0x7000.
    sac_fill(s, 8, 0);
    let rc = hc(GRANT_TABLE_OP, [0, s, 1, 0, 0]);
    check(
        "GNTTABOP_map_grant_ref of garbage answers",
        sane(rc),
        rc,
        "a value or errno",
    );
    // map_grant_ref { u64 host_addr; u32 flags; u32 ref; domid_t dom;
    // OUT int16 status; OUT u32 handle; OUT u64 dev_bus_addr }
    sac_fill(s, 4, 0);
    sac_write_u64(s, SCRATCH + 0x2000);
    put32(s, 8, 2); // GNTMAP_host_map
    put16(s, 16, 0x7000);
    let rc = hc(GRANT_TABLE_OP, [GT_MAP_GRANT_REF, s, 1, 0, 0]);
    let st = (get32(s, 16) >> 16) as u16 as i16;
    check(
        "GNTTABOP_map_grant_ref from domain 0x7000 -> status GNTST_bad_domain",
        rc == 0 && st == -2,
        if rc != 0 { rc } else { i64::from(st) },
        "rc 0, status -2",
    );
    // unmap_grant_ref { u64 host_addr; u64 dev_bus_addr; u32 handle; OUT int16 status }
    sac_fill(s, 3, 0);
    sac_write_u64(s, SCRATCH + 0x2000);
    put32(s, 16, 0x1234);
    let rc = hc(GRANT_TABLE_OP, [GT_UNMAP_GRANT_REF, s, 1, 0, 0]);
    let st = get32(s, 20) as u16 as i16;
    check(
        "GNTTABOP_unmap_grant_ref of an unknown handle -> status GNTST_bad_handle",
        rc == 0 && st == -4,
        if rc != 0 { rc } else { i64::from(st) },
        "rc 0, status -4",
    );
    // Linux's cache_flush probe: one zeroed struct answers 0.
    sac_fill(s, 2, 0);
    expect(
        "GNTTABOP_cache_flush probe -> 0",
        hc(GRANT_TABLE_OP, [GT_CACHE_FLUSH, s, 1, 0, 0]),
        0,
    );
}

/// `GNTTABOP_copy` of `len` bytes: the source `(u, domid, offset)`, the
/// dest a frame of ours at `dest_off`, `flags`: (rc, status).
fn grant_copy(src: (u64, u16, u16), dest_off: u16, len: u16, flags: u16) -> (i64, i16) {
    // gnttab_copy { {u64 u; domid_t domid; u16 offset} source, dest;
    // u16 len; u16 flags; OUT int16 status }
    let s = SCRATCH;
    sac_fill(s, 5, 0);
    sac_write_u64(s, src.0);
    put16(s, 8, src.1);
    put16(s, 10, src.2);
    sac_write_u64(s + 16, (SCRATCH + 0x5000) >> 12);
    put16(s, 24, DOMID_SELF);
    put16(s, 26, dest_off);
    put16(s, 32, len);
    put16(s, 34, flags);
    put16(s, 36, 0x77);
    let rc = hc(GRANT_TABLE_OP, [GT_COPY, s, 1, 0, 0]);
    (rc, get32(s, 36) as u16 as i16)
}

/// A copy probe: its name, source `(u, domid, offset)`, dest offset, len,
/// the status Xen gives.
type CopyCase = (&'static str, (u64, u16, u16), u16, u16, i16);

fn grant_copy_abuse() {
    let from = (SCRATCH + 0x4000) >> 12;
    sac_write_u64(SCRATCH + 0x4010, 0x1122_3344_5566_7788);
    sac_write_u64(SCRATCH + 0x5020, 0);
    let cases: [CopyCase; 5] = [
        (
            "GNTTABOP_copy between own frames (DOMID_SELF) -> status GNTST_okay",
            (from, DOMID_SELF, 0x10),
            0x20,
            8,
            0,
        ),
        (
            "GNTTABOP_copy of a frame named by a domid, not DOMID_SELF -> status GNTST_permission_denied",
            (from, 0, 0),
            0,
            8,
            -8,
        ),
        (
            "GNTTABOP_copy from a grant of domain 0x7000 -> status GNTST_bad_domain",
            (1, 0x7000, 0),
            0,
            8,
            -2,
        ),
        (
            "GNTTABOP_copy from grant ref 0xffffffff of its own -> status GNTST_bad_gntref",
            (0xffff_ffff, DOMID_SELF, 0),
            0,
            8,
            -3,
        ),
        (
            "GNTTABOP_copy past the end of the page -> status GNTST_bad_copy_arg",
            (from, DOMID_SELF, 0xff0),
            0,
            0x20,
            -10,
        ),
    ];
    for (i, (name, src, dest_off, len, want)) in cases.into_iter().enumerate() {
        let flags = if matches!(i, 2 | 3) {
            GNTCOPY_SOURCE_GREF
        } else {
            0
        };
        let (rc, st) = grant_copy(src, dest_off, len, flags);
        check(
            name,
            rc == 0 && st == want,
            if rc != 0 { rc } else { i64::from(st) },
            "rc 0 and Xen's status",
        );
    }
    check(
        "GNTTABOP_copy between own frames moved the bytes",
        sac_read_u64(SCRATCH + 0x5020) == 0x1122_3344_5566_7788,
        sac_read_u64(SCRATCH + 0x5020) as i64,
        "the source word",
    );
}

// VCPUOP_* (public/vcpu.h).
const VCPUOP_UP: u64 = 1;
const VCPUOP_REGISTER_RUNSTATE: u64 = 5;
const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;

fn vcpu_abuse() {
    let s = SCRATCH;
    // register_vcpu_info { u64 mfn; u32 offset; u32 rsvd }
    sac_fill(s, 2, 0);
    sac_write_u64(s, (SAC_BASE + 0x3000) >> 12);
    put32(s, 8, 4090);
    // map_guest_area (xen/common/domain.c): an area crossing its page, or
    // not aligned to xen_ulong_t, -> -ENXIO.
    expect(
        "VCPUOP_register_vcpu_info offset 4090 (crosses the page) -> -ENXIO",
        hc(VCPU_OP, [VCPUOP_REGISTER_VCPU_INFO, 0, s, 0, 0]),
        ENXIO,
    );
    put32(s, 8, 4);
    expect(
        "VCPUOP_register_vcpu_info offset 4 (misaligned) -> -ENXIO",
        hc(VCPU_OP, [VCPUOP_REGISTER_VCPU_INFO, 0, s, 0, 0]),
        ENXIO,
    );
    sac_write_u64(s, OUTSIDE_RAM >> 12);
    put32(s, 8, 0);
    expect(
        "VCPUOP_register_vcpu_info mfn outside RAM -> -EINVAL",
        hc(VCPU_OP, [VCPUOP_REGISTER_VCPU_INFO, 0, s, 0, 0]),
        EINVAL,
    );
    sac_write_u64(s, GICD >> 12);
    expect(
        "VCPUOP_register_vcpu_info mfn in the GIC -> -EINVAL",
        hc(VCPU_OP, [VCPUOP_REGISTER_VCPU_INFO, 0, s, 0, 0]),
        EINVAL,
    );
    expect(
        "VCPUOP_register_vcpu_info vcpu 5 -> -ENOENT",
        hc(VCPU_OP, [VCPUOP_REGISTER_VCPU_INFO, 5, s, 0, 0]),
        ENOENT,
    );
    expect(
        "VCPUOP_register_vcpu_info vcpu 0xffffffff -> -ENOENT",
        hc(VCPU_OP, [VCPUOP_REGISTER_VCPU_INFO, 0xffff_ffff, s, 0, 0]),
        ENOENT,
    );
    expect(
        "VCPUOP_up on Arm -> -EINVAL",
        hc(VCPU_OP, [VCPUOP_UP, 0, 0, 0, 0]),
        EINVAL,
    );
    let rc = hc(VCPU_OP, [VCPUOP_REGISTER_RUNSTATE, 0, OUTSIDE_RAM, 0, 0]);
    check(
        "VCPUOP_register_runstate_memory_area handle outside RAM answers",
        sane(rc),
        rc,
        "a value or errno",
    );
}

/// Multicall: a yield entry must not stop the batch (issue 9 finding 10).
fn multicall_abuse() {
    let list = SCRATCH + 0x2000;
    sac_fill(list, 3 * MULTICALL_ENTRY / 8, 0);
    // entry 0: sched_op(SCHEDOP_yield); entry 1: xen_version(XENVER_version);
    // entry 2: a number Xen does not assign.
    sac_write_u64(list, SCHED_OP);
    sac_write_u64(list + 8, 0x5555);
    sac_write_u64(list + 16, 0);
    sac_write_u64(list + 64, XEN_VERSION);
    sac_write_u64(list + 72, 0x5555);
    sac_write_u64(list + 80, 0);
    sac_write_u64(list + 128, 63);
    sac_write_u64(list + 136, 0x5555);
    let rc = hc(MULTICALL, [list, 3, 0, 0, 0]);
    let direct = hypercall::xen_version();
    let r1 = sac_read_u64(list + 72) as i64;
    let r2 = sac_read_u64(list + 136) as i64;
    println!(
        "multicall [yield, xen_version, 63] -> {} results {} {} {}",
        rc,
        sac_read_u64(list + 8) as i64,
        r1,
        r2
    );
    check(
        "multicall: entries after SCHEDOP_yield still run",
        rc == 0 && r1 == direct,
        r1,
        "xen_version's value",
    );
    expect(
        "multicall: unassigned entry -> -ENOSYS in its result",
        r2,
        ENOSYS,
    );
    expect(
        "multicall list outside RAM -> -EFAULT",
        hc(MULTICALL, [OUTSIDE_RAM, 1, 0, 0, 0]),
        EFAULT,
    );
    expect(
        "multicall list in the GIC -> -EFAULT",
        hc(MULTICALL, [GICD, 1, 0, 0, 0]),
        EFAULT,
    );
    // A nested multicall entry.
    sac_fill(list, 8, 0);
    sac_write_u64(list, MULTICALL);
    sac_write_u64(list + 16, list);
    sac_write_u64(list + 24, 1);
    let rc = hc(MULTICALL, [list, 1, 0, 0, 0]);
    let r = sac_read_u64(list + 8) as i64;
    check(
        "nested multicall answers an errno in its entry",
        rc == 0 && r < 0 && sane(r),
        r,
        "an errno",
    );
}

// XENMEM_* (public/memory.h).
const XENMEM_INCREASE_RESERVATION: u64 = 0;
const XENMEM_DECREASE_RESERVATION: u64 = 1;
const XENMEM_POPULATE_PHYSMAP: u64 = 6;
const XENMEM_ADD_TO_PHYSMAP: u64 = 7;

/// `struct xen_memory_reservation` at `at`: extent_start, nr_extents, extent_order, mem_flags, domid.
fn reservation(at: u64, extents: u64, nr: u64, order: u32, domid: u16) {
    sac_fill(at, 5, 0);
    sac_write_u64(at, extents);
    sac_write_u64(at + 8, nr);
    put32(at, 16, order);
    put32(at, 20, 0);
    put16(at, 24, domid);
}

fn memory_abuse() {
    let r = SCRATCH + 0x4000;
    let list = SCRATCH + 0x5000;
    // The PV console ring's page (finding 10): not the guest's to give back.
    sac_write_u64(list, MAGIC >> 12);
    reservation(r, list, 1, 0, DOMID_SELF);
    let rc = hc(MEMORY_OP, [XENMEM_DECREASE_RESERVATION, r, 0, 0, 0]);
    expect(
        "decrease_reservation of the console ring's gfn -> 0 extents",
        rc,
        0,
    );
    // Huge counts with a bad extent list.
    reservation(r, OUTSIDE_RAM, 1 << 40, 0, DOMID_SELF);
    let rc = hc(MEMORY_OP, [XENMEM_INCREASE_RESERVATION, r, 0, 0, 0]);
    check(
        "increase_reservation 2^40 extents from a list outside RAM answers",
        sane(rc) && rc <= 0,
        rc,
        "0 or an errno",
    );
    reservation(r, list, 1, 30, DOMID_SELF);
    sac_write_u64(list, (SAC_BASE + 0x10_0000) >> 12);
    let rc = hc(MEMORY_OP, [XENMEM_POPULATE_PHYSMAP, r, 0, 0, 0]);
    check(
        "populate_physmap order 30 -> 0 extents or an errno",
        sane(rc) && rc <= 0,
        rc,
        "<= 0",
    );
    reservation(r, list, 1, 0, 0);
    let rc = hc(MEMORY_OP, [XENMEM_POPULATE_PHYSMAP, r, 0, 0, 0]);
    check(
        "populate_physmap for dom0 from a domU refused",
        rc <= 0,
        rc,
        "<= 0",
    );
    reservation(r, list, 1, 0, 0x7000);
    let rc = hc(MEMORY_OP, [XENMEM_DECREASE_RESERVATION, r, 0, 0, 0]);
    check(
        "decrease_reservation for domain 0x7000 refused",
        rc <= 0 && sane(rc),
        rc,
        "<= 0",
    );
    // add_to_physmap { domid_t; u16 size; u32 space; u64 idx; u64 gpfn }
    sac_fill(r, 3, 0);
    put16(r, 0, DOMID_SELF);
    put32(r, 4, 99);
    sac_write_u64(r + 8, 0);
    sac_write_u64(r + 16, (SAC_BASE + 0x20_0000) >> 12);
    let rc = hc(MEMORY_OP, [XENMEM_ADD_TO_PHYSMAP, r, 0, 0, 0]);
    check(
        "add_to_physmap space 99 refused",
        rc < 0 && sane(rc),
        rc,
        "an errno",
    );
    put32(r, 4, 1); // XENMAPSPACE_grant_table
    sac_write_u64(r + 8, 100_000);
    let rc = hc(MEMORY_OP, [XENMEM_ADD_TO_PHYSMAP, r, 0, 0, 0]);
    expect(
        "add_to_physmap grant_table idx 100000 -> -EINVAL",
        rc,
        EINVAL,
    );
    put32(r, 4, 0); // XENMAPSPACE_shared_info
    sac_write_u64(r + 8, 1);
    let rc = hc(MEMORY_OP, [XENMEM_ADD_TO_PHYSMAP, r, 0, 0, 0]);
    expect("add_to_physmap shared_info idx 1 -> -EINVAL", rc, EINVAL);
    sac_write_u64(r + 8, 0);
    sac_write_u64(r + 16, 1 << 52);
    let rc = hc(MEMORY_OP, [XENMEM_ADD_TO_PHYSMAP, r, 0, 0, 0]);
    check(
        "add_to_physmap shared_info at gfn 2^52 refused",
        rc < 0 && sane(rc),
        rc,
        "an errno",
    );
    // Map shared info at 4096 gfns above 4 GiB (finding 6 needs a bound;
    // here: every answer is 0 or an errno, and the second domain lives on).
    let mut ok = 0u32;
    let mut first_err = 0i64;
    for i in 0..4096u64 {
        sac_write_u64(r + 16, 0x10_0000 + i);
        let rc = hc(MEMORY_OP, [XENMEM_ADD_TO_PHYSMAP, r, 0, 0, 0]);
        if rc == 0 {
            ok += 1;
        } else if first_err == 0 {
            first_err = rc;
        }
    }
    println!(
        "shared_info mapped at {} of 4096 gfns (first error {})",
        ok, first_err
    );
    check(
        "4096 shared_info mappings answered",
        first_err == 0 || sane(first_err),
        first_err,
        "0 or errno",
    );
    // Give them back (remove_from_physmap { domid_t; u64 gpfn }).
    for i in 0..4096u64 {
        sac_fill(r, 2, 0);
        put16(r, 0, DOMID_SELF);
        sac_write_u64(r + 8, 0x10_0000 + i);
        let _ = hc(MEMORY_OP, [15, r, 0, 0, 0]);
    }
    // vcpu_info in a sacrificial page, then that page given back (finding 2):
    // hv must keep its own reference, never hand the frame to anyone else.
    let page = SAC_BASE + 0x30_0000;
    sac_fill(r, 2, 0);
    sac_write_u64(r, page >> 12);
    put32(r, 8, 0);
    let rc1 = hc(VCPU_OP, [VCPUOP_REGISTER_VCPU_INFO, 0, r, 0, 0]);
    sac_write_u64(list, page >> 12);
    reservation(r, list, 1, 0, DOMID_SELF);
    let rc2 = hc(MEMORY_OP, [XENMEM_DECREASE_RESERVATION, r, 0, 0, 0]);
    println!(
        "vcpu_info at gfn {:#x}: register {}, decrease_reservation {}",
        page >> 12,
        rc1,
        rc2
    );
    check(
        "register_vcpu_info then decrease_reservation of its page answers",
        sane(rc1) && sane(rc2),
        rc2,
        "values",
    );
}

fn psci_abuse() {
    for (hvc, conduit) in [(true, "HVC"), (false, "SMC")] {
        let mut n = [0u8; 96];
        let v = smccc(hvc, PSCI_VERSION, 0, 0, 0);
        check(
            label(&mut n, "PSCI_VERSION via ", 0, conduit),
            v >= 0x1_0000,
            v,
            ">= 1.0",
        );
        let _ = conduit;
        let r = smccc(hvc, 0x8400_00ee, 0, 0, 0);
        expect(
            if hvc {
                "PSCI unknown function id -> NOT_SUPPORTED (HVC)"
            } else {
                "PSCI unknown function id -> NOT_SUPPORTED (SMC)"
            },
            r,
            PSCI_NOT_SUPPORTED,
        );
        let r = smccc(hvc, u64::MAX, u64::MAX, u64::MAX, u64::MAX);
        expect(
            if hvc {
                "SMCCC function id all ones -> NOT_SUPPORTED (HVC)"
            } else {
                "SMCCC function id all ones -> NOT_SUPPORTED (SMC)"
            },
            r,
            PSCI_NOT_SUPPORTED,
        );
    }
    let r = smccc(true, PSCI_FEATURES, 0xdead_beef, 0, 0);
    expect(
        "PSCI_FEATURES of an unknown id -> NOT_SUPPORTED",
        r,
        PSCI_NOT_SUPPORTED,
    );
    let r = smccc(true, PSCI_CPU_ON_64, 0, RAM_BASE + 0x8_0000, 0);
    expect("CPU_ON of myself -> ALREADY_ON", r, PSCI_ALREADY_ON);
    let r = smccc(true, PSCI_CPU_ON_64, 0xff_00ff, RAM_BASE + 0x8_0000, 0);
    expect(
        "CPU_ON MPIDR 0xff00ff -> INVALID_PARAMETERS",
        r,
        PSCI_INVALID_PARAMETERS,
    );
    let r = smccc(true, PSCI_CPU_ON_64, 200, RAM_BASE + 0x8_0000, 0);
    expect(
        "CPU_ON vCPU 200 -> INVALID_PARAMETERS",
        r,
        PSCI_INVALID_PARAMETERS,
    );
    let r = smccc(true, PSCI_CPU_ON_32, 0xffff_ffff, RAM_BASE + 0x8_0000, 0);
    expect(
        "CPU_ON (SMC32) MPIDR 0xffffffff -> INVALID_PARAMETERS",
        r,
        PSCI_INVALID_PARAMETERS,
    );
    let r = smccc(true, PSCI_AFFINITY_INFO_64, 0xff_00ff, 0, 0);
    expect(
        "AFFINITY_INFO MPIDR 0xff00ff -> INVALID_PARAMETERS",
        r,
        PSCI_INVALID_PARAMETERS,
    );
}

/// vCPU 1 (with `vcpus=2`): sets FLAG and turns itself off.
static SECONDARY_RAN: AtomicU64 = AtomicU64::new(0);

#[repr(C, align(16))]
struct Stack([u8; 0x2000]);
static mut STACK1: Stack = Stack([0; 0x2000]);

core::arch::global_asm!(
    r#"
    .text
    .global guest_hostile_secondary
guest_hostile_secondary:
    msr     daifset, #0xf
    adrp    x1, {stack}
    add     x1, x1, :lo12:{stack}
    add     x1, x1, #0x2000
    mov     sp, x1
    adrp    x1, {flag}
    add     x1, x1, :lo12:{flag}
    mov     x2, #1
    str     x2, [x1]
    dsb     sy
    ldr     x0, ={off}
    hvc     #0
    b       .
"#,
    stack = sym STACK1,
    flag = sym SECONDARY_RAN,
    off = const PSCI_CPU_OFF,
);

extern "C" {
    fn guest_hostile_secondary();
}

fn cntvct() -> u64 {
    let v: u64;
    // SAFETY: reading the virtual counter has no side effect.
    unsafe { core::arch::asm!("isb", "mrs {0}, cntvct_el0", out(reg) v, options(nostack)) };
    v
}

fn cntfrq() -> u64 {
    let v: u64;
    // SAFETY: reading the counter frequency has no side effect.
    unsafe { core::arch::asm!("mrs {0}, cntfrq_el0", out(reg) v, options(nostack)) };
    v
}

/// Finding 9: CPU_ON then poll a flag without trapping: vCPU 1 must run.
fn cpu_on_kick(vcpus: u64) {
    if vcpus < 2 {
        println!("cpu-on-kick: skipped (1 vCPU; boot with vcpus=2)");
        return;
    }
    let entry = guest_hostile_secondary as *const () as u64;
    let rc = smccc(true, PSCI_CPU_ON_64, 1, entry, 0);
    expect("CPU_ON vCPU 1", rc, 0);
    let deadline = cntvct() + 2 * cntfrq();
    while SECONDARY_RAN.load(Ordering::Acquire) == 0 && cntvct() < deadline {
        core::hint::spin_loop();
    }
    let ran = SECONDARY_RAN.load(Ordering::Acquire) != 0;
    check(
        "CPU_ON: vCPU 1 runs while vCPU 0 polls without trapping (2 s)",
        ran,
        i64::from(ran),
        "1",
    );
}

/// vCPU 1 as a reader (finding 3): reads one word in each of the 2 MiB
/// blocks 1, 2, 3, 4 and 6 of our RAM (the image is in block 0, hv's DTB in
/// block 7) until STOP is set, then turns itself off.
static STOP: AtomicU64 = AtomicU64::new(0);
static READS: AtomicU64 = AtomicU64::new(0);
/// Where the reader reads: the first word of blocks 1, 2, 3 and 4
/// (READ_AT + 0, 2, 4, 6 MiB; block 4's is the scratch page, never given
/// back) and of block 6 (READ_AT + 10 MiB).
const READ_AT: u64 = RAM_BASE + 0x20_0000;

core::arch::global_asm!(
    r#"
    .text
    .global guest_hostile_reader
guest_hostile_reader:
    msr     daifset, #0xf
    adrp    x1, {stack}
    add     x1, x1, :lo12:{stack}
    add     x1, x1, #0x2000
    mov     sp, x1
    adrp    x4, {stop}
    add     x4, x4, :lo12:{stop}
    adrp    x5, {reads}
    add     x5, x5, :lo12:{reads}
    mov     x6, #0
1:
    ldr     x2, ={at}
    and     x3, x6, #0x600000
    ldr     x3, [x2, x3]
    ldr     x2, ={at6}
    ldr     x3, [x2]
    add     x6, x6, #0x200, lsl #12
    ldr     x2, [x5]
    add     x2, x2, #1
    str     x2, [x5]
    ldr     x2, [x4]
    cbz     x2, 1b
    dsb     sy
    ldr     x0, ={off}
    hvc     #0
    b       .
"#,
    stack = sym STACK1,
    stop = sym STOP,
    reads = sym READS,
    at = const READ_AT,
    at6 = const READ_AT + 0xa0_0000,
    off = const PSCI_CPU_OFF,
);

extern "C" {
    fn guest_hostile_reader();
}

/// Finding 3: vCPU 1 keeps reading one 2 MiB block while vCPU 0 gives back
/// pages inside it (a block split, break-before-make): a fault on an entry
/// being remade must be retried, never end the domain.
fn split_race(vcpus: u64) {
    if vcpus < 2 {
        println!("split-race: skipped (1 vCPU; boot with vcpus=2)");
        return;
    }
    // vCPU 1 must be off again (cpu_on_kick turned it off).
    let mut off = false;
    for _ in 0..10_000 {
        if smccc(true, PSCI_AFFINITY_INFO_64, 1, 0, 0) == 1 {
            off = true;
            break;
        }
        let _ = hc(SCHED_OP, [0, 0, 0, 0, 0]);
    }
    if !off {
        check(
            "split-race: vCPU 1 is off before the test",
            false,
            0,
            "AFFINITY_INFO OFF",
        );
        return;
    }
    let entry = guest_hostile_reader as *const () as u64;
    let rc = smccc(true, PSCI_CPU_ON_64, 1, entry, 0);
    // Wait with SCHEDOP_yield (finding 9 is cpu_on_kick's business).
    let deadline = cntvct() + 2 * cntfrq();
    while READS.load(Ordering::Acquire) == 0 && cntvct() < deadline {
        let _ = hc(SCHED_OP, [0, 0, 0, 0, 0]);
    }
    let r = SCRATCH + 0x6000;
    let list = SCRATCH + 0x7000;
    let mut done = 0i64;
    for k in 0..16u64 {
        // Four pages in each block the reader reads (never the page it reads).
        let block = [0x20_0000u64, 0x40_0000, 0x60_0000, 0xc0_0000][(k % 4) as usize];
        sac_write_u64(list, (RAM_BASE + block + 0x8_0000 + (k / 4) * 0x2000) >> 12);
        reservation(r, list, 1, 0, DOMID_SELF);
        done += hc(MEMORY_OP, [XENMEM_DECREASE_RESERVATION, r, 0, 0, 0]);
        let before = READS.load(Ordering::Acquire);
        while READS.load(Ordering::Acquire) < before + 50 && cntvct() < deadline + cntfrq() {
            core::hint::spin_loop();
        }
    }
    STOP.store(1, Ordering::Release);
    let reads = READS.load(Ordering::Acquire);
    println!(
        "split-race: CPU_ON {}, 16 pages given back ({} extents) while vCPU 1 read {} times",
        rc, done, reads
    );
    check(
        "split-race: giving back pages of a block another vCPU reads keeps the domain alive",
        rc == 0 && done == 16 && reads > 0,
        done,
        "16 extents, reader alive",
    );
}

/// Finding 6: shared-info mappings at 2 MiB strides (each needs a fresh
/// stage-2 table frame) until hv refuses; they are held ~1.5 s while d2
/// (guest-responder) maps pages of its own, then removed. Xen bounds each
/// domain's p2m with its own pool: d1 may run out, d2 never does.
fn mapping_flood() {
    const MAX: u64 = 70_000;
    const BASE_GFN: u64 = 0x10_0000; // 4 GiB
    let r = SCRATCH + 0x8000;
    sac_fill(r, 3, 0);
    put16(r, 0, DOMID_SELF);
    put32(r, 4, 0); // XENMAPSPACE_shared_info, idx 0
    let t0 = cntvct();
    let mut mapped = 0u64;
    let mut err = 0i64;
    while mapped < MAX {
        sac_write_u64(r + 16, BASE_GFN + mapped * 512);
        let rc = hc(MEMORY_OP, [XENMEM_ADD_TO_PHYSMAP, r, 0, 0, 0]);
        if rc != 0 {
            err = rc;
            break;
        }
        mapped += 1;
    }
    let ms = (cntvct() - t0) * 1000 / cntfrq();
    println!(
        "mapping-flood: {} shared_info mappings at 2 MiB strides in {} ms, then {}",
        mapped, ms, err
    );
    let hold = cntvct() + cntfrq() * 3 / 2;
    while cntvct() < hold {
        let _ = hc(SCHED_OP, [0, 0, 0, 0, 0]);
    }
    // remove_from_physmap { domid_t; u64 gpfn }
    // Xen refuses a second mapping of a xenheap page (-EBUSY); an hv that
    // moves it instead leaves the older gfns empty (-ENOENT on remove).
    let mut bad = 0u64;
    let mut first_bad = 0i64;
    for i in 0..mapped {
        sac_fill(r, 2, 0);
        put16(r, 0, DOMID_SELF);
        sac_write_u64(r + 8, BASE_GFN + i * 512);
        let rc = hc(MEMORY_OP, [15, r, 0, 0, 0]);
        if rc != 0 && rc != ENOENT {
            if bad == 0 {
                first_bad = rc;
            }
            bad += 1;
        }
    }
    println!(
        "mapping-flood: {} removes answered other than 0 / -ENOENT (first {})",
        bad, first_bad
    );
    check(
        "mapping-flood: hv refuses (-ENOMEM, -ENOSPC, or Xen's -EBUSY for a mapped xenheap page) or maps them all; every remove answers 0 or -ENOENT",
        (err == 0 || err == -12 || err == ENOSPC || err == EBUSY) && bad == 0,
        err,
        "0, -12, -16 or -28; no other remove answer",
    );
}

/// Finding 7: a 2 MiB console_io write (lines of 1023 'x'). Xen's
/// console_io works in chunks and is preemptible: d2's xen_version must
/// not wait for it (the runner checks d2's slowest call).
fn console_flood() {
    const LEN: u64 = 2 << 20;
    let buf = SAC_BASE + 0x18_0000;
    for i in 0..LEN / 8 {
        let at = buf + 8 * i;
        let mut w = u64::from_le_bytes(*b"xxxxxxxx");
        if (i * 8) % 1024 == 1016 {
            w = u64::from_le_bytes(*b"xxxxxxx\n");
        }
        sac_write_u64(at, w);
    }
    let t0 = cntvct();
    let rc = hc(CONSOLE_IO, [0, LEN, buf, 0, 0]);
    let ms = (cntvct() - t0) * 1000 / cntfrq();
    println!(
        "console-flood: 2 MiB console_io write -> {} in {} ms",
        rc, ms
    );
    check(
        "console-flood: a 2 MiB console_io write answers 0",
        rc == 0,
        rc,
        "0",
    );
}

fn sysreg_abuse() {
    // Unallocated ID space reads as zero (TID3 emulated by hv).
    let r = sysreg_read!("S3_0_C0_C7_7");
    check(
        "unallocated ID register S3_0_C0_C7_7 reads as zero",
        matches!(r, Access::Value(0)),
        describe(r),
        "0",
    );
    let r = sysreg_read!("id_aa64dfr0_el1");
    let pmu = match r {
        Access::Value(v) => (v >> 8) & 0xf,
        Access::Trap(_) => 0xff,
    };
    println!("ID_AA64DFR0_EL1 = {:#x} (PMUVer {})", describe(r), pmu);
    // Debug and PMU registers (finding 8): Xen traps them (MDCR_EL2.TDA/TPM)
    // and answers RAZ/WI (or undef): what d1 writes must never read back.
    let pat = 0x4000_1234_5678u64 & !3;
    macro_rules! wi {
        ($r:literal, $v:expr) => {{
            let w = sysreg_write!($r, $v);
            let r = sysreg_read!($r);
            let leaked = matches!(r, Access::Value(x) if x == $v && $v != 0);
            println!("{} write {:?} read back {:#x}", $r, matches!(w, Access::Trap(_)), describe(r));
            check(concat!($r, " is RAZ/WI or undefined (never reads back)"), !leaked, describe(r), "0 or an undef");
        }};
    }
    wi!("dbgbvr0_el1", pat);
    wi!("dbgwvr0_el1", pat);
    wi!("dbgbcr0_el1", 0x1e7);
    wi!("mdscr_el1", 1 << 15);
    wi!("pmselr_el0", 3);
    wi!("pmccfiltr_el0", 1 << 31);
    wi!("pmevtyper0_el0", 0x11);
    wi!("pmuserenr_el0", 0xf);
    // Writes to an ID register are UNDEFINED; ACTLR_EL1 traps (TACR): 300
    // of them check that hv's log for them is rate-limited (the runner
    // counts hv's warnings for this domain).
    let w = sysreg_write!("S3_0_C0_C4_0", 0x1111);
    check(
        "write to ID_AA64PFR0_EL1 is undefined",
        matches!(w, Access::Trap(c) if c.index == VEC_SYNC),
        describe(w),
        "an undef",
    );
    let mut traps = 0u32;
    for _ in 0..300 {
        if let Access::Trap(_) = sysreg_write!("actlr_el1", 0x5a) {
            traps += 1;
        }
    }
    println!("actlr_el1: 300 writes, {} undefs", traps);
}

fn vgic_aligned() {
    // Device alias (as with the MMU off): aligned accesses of every width.
    let mut traps = 0u32;
    let mut n = 0u32;
    for off in (0..0x1_0000u64).step_by(0x100) {
        for w in [1u8, 2, 4, 8] {
            n += 1;
            if let Access::Trap(_) = mmio_read(DEVICE_ALIAS + GICD + off, w) {
                traps += 1;
            }
        }
    }
    println!(
        "GICD via Device alias: {} aligned reads, {} aborts",
        n, traps
    );
    let r = mmio_read(GICD, 8);
    check(
        "8-byte read of GICD_CTLR -> data abort (Xen: bad_width)",
        matches!(r, Access::Trap(c) if xen::esr_ec(c.esr) == EC_DABT_CUR),
        describe(r),
        "a data abort (EC 0x25)",
    );
    // IROUTER beyond the SPIs hv has, and at the top of the range.
    for off in [0x6000u64 + 8 * 200, 0x7fd8] {
        let _ = mmio_write(GICD + off, 8, u64::MAX);
        let r = mmio_read(GICD + off, 8);
        println!(
            "GICD+{:#x} IROUTER-range write all-ones, read {:#x}",
            off,
            describe(r)
        );
    }
    // Redistributors: vCPU 0's and 1's frames, a vCPU that does not exist, the end.
    for base in [
        GICR,
        GICR + 0x2_0000,
        GICR + 0x2_0000 * 7,
        GICR + GICR_SIZE - 0x2_0000,
    ] {
        for off in [
            0u64, 0x8, 0x14, 0x1_0080, 0x1_0100, 0x1_0400, 0x1_0c00, 0x1_0d00, 0xfffc, 0x1_fffc,
        ] {
            let _ = mmio_read(base + off, 4);
            let _ = mmio_write(base + off, 4, u64::from(u32::MAX));
        }
    }
    // Byte-wide IPRIORITYR writes read back (byte access is architected).
    let _ = mmio_write(GICD + 0x420, 1, 0xa0);
    let r = mmio_read(GICD + 0x420, 1);
    check(
        "GICD_IPRIORITYR byte write reads back",
        matches!(r, Access::Value(0xa0)),
        describe(r),
        "0xa0",
    );
}

/// Last, because on hv before the fix of issue 9 finding 1 the first of
/// them panics hv: unaligned accesses through the Normal mapping.
fn vgic_unaligned() {
    // Finding 1: an unaligned 4-byte read inside a bit register at
    // GICD+0x109. Xen (vgic-v3-dist bad_width) injects a data abort.
    for off in [
        0x109u64, 0x10a, 0x10b, 0x181, 0x283, 0x387, 0x40f, 0xc07, 0xd01, 0x6006,
    ] {
        let r = mmio_read(GICD + off, 4);
        let mut b = [0u8; 96];
        let name = label(
            &mut b,
            "unaligned 4-byte read at GICD+",
            off,
            " -> data abort",
        );
        check(
            name,
            matches!(r, Access::Trap(c) if xen::esr_ec(c.esr) == EC_DABT_CUR),
            describe(r),
            "a data abort (EC 0x25)",
        );
    }
    let r = mmio_write(GICD + 0x109, 4, u64::from(u32::MAX));
    check(
        "unaligned 4-byte write at GICD+0x109 -> data abort",
        matches!(r, Access::Trap(c) if xen::esr_ec(c.esr) == EC_DABT_CUR),
        describe(r),
        "a data abort",
    );
    // Every unaligned offset/width of the first 4 KiB of GICD and of vCPU
    // 0's SGI frame.
    for (what, base) in [
        ("GICD first ", GICD),
        ("GICR SGI frame first ", GICR + 0x1_0000),
    ] {
        let mut aborts = 0u32;
        let mut reads = 0u32;
        for off in 0..0x1000u64 {
            for w in [2u8, 4, 8] {
                if off % u64::from(w) == 0 {
                    continue;
                }
                reads += 1;
                if let Access::Trap(_) = mmio_read(base + off, w) {
                    aborts += 1;
                }
            }
        }
        println!(
            "{}4 KiB: {} unaligned reads, {} aborts",
            what, reads, aborts
        );
        let mut b = [0u8; 96];
        check(
            label(
                &mut b,
                what,
                4,
                " KiB: every unaligned 2/4/8-byte read aborts",
            ),
            aborts == reads,
            i64::from(aborts),
            "every one",
        );
    }
}

/// The seeded random phase: hypercalls and vGIC accesses, each printed before it is made.
fn random_phase(seed: u64, calls: u64) {
    println!(
        "random phase: hostile-seed={} hostile-calls={}",
        seed, calls
    );
    let mut rng = Rng::new(seed);
    let mut weird = 0u32;
    for i in 0..calls {
        if i % 64 == 0 {
            // Refill the first 64 KiB of the sacrificial region with hostile words.
            for w in 0..(0x1_0000 / 8) {
                sac_write_u64(SAC_BASE + 8 * w, rng.hostile());
            }
        }
        if rng.below(8) == 0 {
            let region = rng.below(2);
            let (base, size) = if region == 0 {
                (GICD, GICD_SIZE)
            } else {
                (GICR, 0x4_0000)
            };
            // Naturally aligned here (vgic_unaligned, last, covers the rest).
            let w = [1u8, 2, 4, 8][rng.below(4) as usize];
            let off = rng.below(size - 8) & !(u64::from(w) - 1);
            let write = rng.below(2) == 0;
            let val = rng.hostile();
            println!(
                "R {} mmio {} {:#x} w{} v={:#x}",
                i,
                if write { "write" } else { "read" },
                base + off,
                w,
                val
            );
            let r = if write {
                mmio_write(base + off, w, val)
            } else {
                mmio_read(base + off, w)
            };
            println!("R {} -> {:#x}", i, describe(r));
            continue;
        }
        let nr = rng.nr();
        let mut a = [
            rng.cmd(),
            rng.hostile(),
            rng.hostile(),
            rng.hostile(),
            rng.hostile(),
        ];
        let t = tame(nr, &mut a);
        println!(
            "R {} nr={} a=[{:#x},{:#x},{:#x},{:#x},{:#x}]{}",
            i,
            nr,
            a[0],
            a[1],
            a[2],
            a[3],
            a[4],
            match t {
                Tame::AsDrawn => "",
                Tame::SchedToYield => " (tamed: sched_op -> yield)",
                Tame::MulticallListOut => " (tamed: multicall list outside RAM)",
                Tame::ConsoleClamped => " (tamed: console count 256)",
                Tame::VcpuDownToOther => " (tamed: not vCPU 0)",
            }
        );
        let r = hc(nr, a);
        println!("R {} -> {}", i, r);
        if !sane(r) {
            weird += 1;
        }
    }
    println!("random phase: {} calls done ({} odd answers)", calls, weird);
    check("random phase completed", true, calls as i64, "-");
}

/// Entry point called by guest-rt's `_start`.
#[no_mangle]
extern "C" fn guest_main() {
    vectors::install();
    let dtb = guest_rt::boot_x0();
    // The DTB hv wrote near the top of our RAM: read its size from the
    // header (big-endian totalsize at offset 4), bounded by RAM's end.
    let bytes: &[u8] = if in_own_ram(dtb) && dtb.is_multiple_of(8) {
        // SAFETY: dtb is inside our RAM (checked) and hv wrote the DTB
        // there before entry; nothing else uses those bytes.
        let hdr = unsafe { core::slice::from_raw_parts(dtb as *const u8, 8) };
        let total = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as u64;
        let len = total.min(RAM_BASE + RAM_SIZE - dtb).min(0x1_0000);
        // SAFETY: as above, `len` bytes stay inside RAM.
        unsafe { core::slice::from_raw_parts(dtb as *const u8, len as usize) }
    } else {
        &[]
    };
    let seed = find_arg(bytes, "hostile-seed").unwrap_or(1);
    let calls = find_arg(bytes, "hostile-calls").unwrap_or(2000);
    let vcpus = find_arg(bytes, "vcpus")
        .unwrap_or(1)
        .max(guest_hostile::count_cpus(bytes));
    println!(
        "guest-hostile: seed {} calls {} vcpus {}",
        seed, calls, vcpus
    );

    // hostile-named=0: only the random phase (long seeded campaigns).
    let named = find_arg(bytes, "hostile-named").unwrap_or(1) != 0;
    if named {
        println!("== hypercall sweep 0..=64");
        sweep();
        println!("== unknown sub-ops");
        unknown_subops();
        println!("== event channels");
        evtchn_abuse();
        println!("== grant table");
        grant_abuse();
        grant_copy_abuse();
        println!("== vcpu_op");
        vcpu_abuse();
        println!("== multicall");
        multicall_abuse();
        // Before memory_op, which gives back a page of the buffer's range.
        println!("== console flood");
        console_flood();
        println!("== memory_op");
        memory_abuse();
        println!("== PSCI");
        psci_abuse();
        cpu_on_kick(vcpus);
        println!("== block split race (vcpus=2)");
        split_race(vcpus);
        println!("== mapping flood");
        mapping_flood();
        println!("== system registers");
        sysreg_abuse();
    }
    println!("== vGIC (stage 1 on: GIC as Normal memory)");
    mmu_on();
    if named {
        vgic_aligned();
    }
    println!("== random phase");
    random_phase(seed, calls);
    if named {
        println!("== vGIC unaligned");
        vgic_unaligned();
    }
    let t = TALLY.get();
    println!("guest-hostile: done: {} passed, {} failed", t.pass, t.fail);
    let r = hypercall::shutdown(xen::SHUTDOWN_POWEROFF);
    println!("FAIL SCHEDOP_shutdown returned {}", r);
    hypercall::shutdown_forever(xen::SHUTDOWN_CRASH);
}
