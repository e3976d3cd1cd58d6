//! The boot flow in Rust: from `hv_boot_primary` / `hv_boot_secondary`
//! (called by `head.rs` with a stack, E2H and VBAR set) to portable code.

use super::cpu::{Cpu, HostMem};
use super::head::{
    __image_end, __image_start, __stacks_start, hv_mmu_enable, hv_park, hv_secondary_entry,
    TrapFrame,
};
use super::mmu::{self, Builder};
use super::pl011::Pl011;
use super::sysreg::{read_sysreg, write_sysreg};
use super::{percpu, psci, GUARD_SIZE, HEAP, HEAP_PAGES, STACK_SIZE};
use crate::bootinfo::{strip_nops, BootInfo, FixedVec};
use crate::logger::{self, ConsoleSink};
use crate::mm::frame::{self, FrameAllocator};
use crate::mm::MemRange;
use crate::options::{boot_facts, set_boot_facts, BootFacts, HvOptions};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use pv_tlb::PAGE_SIZE;
use spin::Once;

/// hv's version, as printed in the banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

static BOOT: Once<BootInfo<'static>> = Once::new();
static UART: Once<Pl011> = Once::new();
static OPTIONS: Once<HvOptions> = Once::new();
static ONLINE: AtomicUsize = AtomicUsize::new(0);
/// The secondary CPUs' stacks: `STACKS_COUNT` stacks of [`STACK_SIZE`] bytes
/// from `STACKS_BASE` (CPU i >= 1 has the (i-1)th), placed in RAM by the boot
/// CPU before its MMU is on (plain stores: no atomic read-modify-write runs
/// with the MMU off) and kept out of the frame allocator.
static STACKS_BASE: AtomicU64 = AtomicU64::new(0);
static STACKS_COUNT: AtomicU64 = AtomicU64::new(0);

/// hv's command-line options (defaults before the boot CPU parsed them).
#[must_use]
pub fn options() -> HvOptions {
    OPTIONS.get().copied().unwrap_or_default()
}

/// The DTB's boot information (after the boot CPU parsed it).
#[must_use]
pub fn boot_info() -> Option<&'static BootInfo<'static>> {
    BOOT.get()
}

fn park() -> ! {
    // SAFETY: parking masks interrupts and waits forever; no memory is touched.
    unsafe { hv_park() }
}

/// The DTB blob at `pa`, sized by its header (at most 2 MiB, as booting.rst
/// allows; a larger `totalsize` whose blocks fit is shrunk to them,
/// [`crate::bootinfo::usable_totalsize`]), with its `FDT_NOP` tokens removed
/// in place ([`strip_nops`]).
///
/// # Safety
/// `pa` is the address the boot protocol gave in x0.
unsafe fn dtb_slice(pa: u64) -> Option<&'static [u8]> {
    if pa == 0 || !pa.is_multiple_of(8) {
        return None;
    }
    let mut hdr = [0u8; 40];
    for (i, w) in hdr.chunks_exact_mut(4).enumerate() {
        // SAFETY: booting.rst: x0 holds the DTB's address in RAM, 8-byte
        // aligned; its 40-byte header is readable (identity / MMU off).
        let v = unsafe { (pa as *const u32).wrapping_add(i).read_volatile() };
        w.copy_from_slice(&v.to_ne_bytes());
    }
    let size = crate::bootinfo::usable_totalsize(&hdr)?;
    let given = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    if given != size {
        // Plain store: the MMU is off, only the boot CPU runs (reported once the console is up).
        DTB_GROWN_FROM.store(u64::from(given), Ordering::Relaxed);
    }
    // SAFETY: the whole blob (`size` <= its own totalsize) is in RAM that the
    // boot protocol hands to hv and that hv never hands out (it is excluded
    // from the frame allocator); this is the only reference while the
    // header's totalsize is rewritten and the NOPs are stripped.
    let blob = unsafe { core::slice::from_raw_parts_mut(pa as *mut u8, size as usize) };
    blob[4..8].copy_from_slice(&size.to_be_bytes());
    strip_nops(blob).ok()?;
    Some(blob)
}

/// Print `msg` on the console found in the DTB with the MMU still off (no
/// locks: only the boot CPU runs), then power off.
fn early_fail(info: &BootInfo<'_>, msg: &str) -> ! {
    if let Some(uart) = info.uart {
        // SAFETY: the DTB names this PL011; with the MMU off every access is
        // Device-nGnRnE, and no other CPU runs yet.
        let u = unsafe { Pl011::new(uart.base.raw()) };
        u.write_bytes(b"hv: ERROR: ");
        u.write_bytes(msg.as_bytes());
        u.write_bytes(b"\n");
    }
    psci::system_off(info.psci)
}

/// The first guard page (the unmapped lowest page of a CPU's stack) at or
/// above `from`: the boot CPU's in the image, then the allocated ones.
fn next_guard(from: u64) -> Option<u64> {
    let boot = core::ptr::addr_of!(__stacks_start) as u64;
    let base = STACKS_BASE.load(Ordering::Relaxed);
    let n = STACKS_COUNT.load(Ordering::Relaxed);
    let stack = STACK_SIZE as u64;
    let other = if n == 0 || from >= base + n * stack {
        None
    } else {
        Some(base + from.saturating_sub(base).div_ceil(stack) * stack)
            .filter(|&g| g < base + n * stack)
    };
    let boot = (boot >= from).then_some(boot);
    match (boot, other) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The CPU whose stack's guard page holds `addr`, if any.
fn guard_cpu(addr: u64) -> Option<usize> {
    let boot = core::ptr::addr_of!(__stacks_start) as u64;
    if (boot..boot + GUARD_SIZE as u64).contains(&addr) {
        return Some(0);
    }
    let base = STACKS_BASE.load(Ordering::Relaxed);
    let n = STACKS_COUNT.load(Ordering::Relaxed);
    let k = addr.checked_sub(base)? / STACK_SIZE as u64;
    (k < n && (addr - base) % (STACK_SIZE as u64) < GUARD_SIZE as u64).then_some(k as usize + 1)
}

/// Map `[start, end)` as RAM except the guard pages ([`next_guard`]).
fn map_except(b: &mut Builder, start: u64, end: u64) -> Result<(), mmu::OutOfTables> {
    let mut at = start;
    while at < end {
        match next_guard(at) {
            Some(g) if g < end => {
                if g > at {
                    b.map(at, g, mmu::RAM)?;
                }
                at = g + GUARD_SIZE as u64;
            }
            _ => return b.map(at, end, mmu::RAM),
        }
    }
    Ok(())
}

/// How many CPUs hv runs on: the DTB's, plus the boot CPU if the DTB does
/// not list it (index 0 is always the boot CPU).
fn cpu_count(info: &BootInfo<'_>) -> usize {
    let me = read_sysreg!("mpidr_el1") & 0xff_00ff_ffff;
    let listed = info.cpus.iter().any(|m| m == me);
    info.cpus.len() + usize::from(!listed)
}

/// RAM hv must not hand out: its image, the DTB, reserved ranges, boot
/// modules, and the secondary stacks once placed.
fn boot_exclusions(info: &BootInfo<'_>, dtb_pa: u64) -> FixedVec<MemRange, 32> {
    let mut exclude: FixedVec<MemRange, 32> = FixedVec::default();
    let mut ok = exclude.push(image_range()).is_ok();
    ok &= exclude
        .push(MemRange::new(dtb_pa, info.dtb_size as u64))
        .is_ok();
    for r in info.reserved.as_slice() {
        ok &= exclude.push(*r).is_ok();
    }
    for m in info.modules().iter().copied().chain(info.domu_modules()) {
        ok &= exclude.push(MemRange::new(m.pa.raw(), m.size)).is_ok();
    }
    let n = STACKS_COUNT.load(Ordering::Relaxed);
    if n != 0 {
        let base = STACKS_BASE.load(Ordering::Relaxed);
        ok &= exclude
            .push(MemRange::new(base, n * STACK_SIZE as u64))
            .is_ok();
    }
    if !ok {
        early_fail(info, "too many excluded ranges for the frame allocator");
    }
    exclude
}

/// Place the secondary CPUs' stacks (`ncpus - 1` of them, [`STACK_SIZE`]
/// aligned) in RAM that nothing else uses. MMU off, boot CPU only.
fn place_stacks(info: &BootInfo<'_>, dtb_pa: u64, ncpus: usize) {
    let n = ncpus.saturating_sub(1) as u64;
    if n == 0 {
        return;
    }
    let stack = STACK_SIZE as u64;
    let exclude = boot_exclusions(info, dtb_pa);
    let want = n * stack + stack; // slack to align the start
    let Some(at) = FrameAllocator::find_storage(info.memory.as_slice(), exclude.as_slice(), want)
    else {
        early_fail(info, "no RAM for the secondary CPUs' stacks");
    };
    STACKS_BASE.store(at.raw().next_multiple_of(stack), Ordering::Relaxed);
    STACKS_COUNT.store(n, Ordering::Relaxed);
}

/// The DTB header's totalsize when hv shrank it ([`dtb_slice`]), else 0.
static DTB_GROWN_FROM: AtomicU64 = AtomicU64::new(0);

/// The host DTB hv booted from (NOP-free), once the boot CPU parsed it.
static HOST_DTB: Once<&'static [u8]> = Once::new();

/// What the hardware domain's build needs from the platform
/// ([`crate::start::HwEnv`]): the host DTB, hv's UART and image, the host
/// GIC's addresses, the timer's PPIs, the CPU count.
pub(super) fn hw_env(info: &'static BootInfo<'static>) -> crate::start::HwEnv<'static> {
    let t = info.timer.unwrap_or_default();
    crate::start::HwEnv {
        host_dtb: HOST_DTB.get().copied().unwrap_or(&[]),
        uart: info.uart,
        hv_image: image_range(),
        gic: info.gic.as_ref().and_then(|g| {
            Some(crate::vgic::VgicLayout {
                gicd: g.dist.base.raw(),
                gicr: g.redist.as_slice().first()?.base.raw(),
            })
        }),
        timer_ppis: [
            t.sec_phys,
            t.phys,
            t.virt,
            t.hyp_phys,
            t.hyp_virt.unwrap_or(0),
        ],
        ncpus: u32::try_from(cpu_count(info)).unwrap_or(1),
    }
}

fn image_range() -> MemRange {
    let start = core::ptr::addr_of!(__image_start) as u64;
    let end = core::ptr::addr_of!(__image_end) as u64;
    MemRange::new(start, end - start)
}

/// Entered at EL1 (e.g. QEMU without `virtualization=on`): say so on the
/// DTB's console and power off. MMU off, only this CPU runs.
#[no_mangle]
extern "C" fn hv_boot_wrong_el(dtb_pa: u64) -> ! {
    // SAFETY: dtb_pa is x0 at entry (boot protocol).
    let Some(dtb) = (unsafe { dtb_slice(dtb_pa) }) else {
        park()
    };
    let Ok(info) = BootInfo::parse(dtb) else {
        park()
    };
    early_fail(
        &info,
        "hv was entered at EL1: it must be started at EL2 (QEMU: -M virt,virtualization=on); powering off",
    )
}

/// Boot CPU, called from `head.rs` with `dtb_pa` from x0, `vh` =
/// `ID_AA64MMFR1_EL1.VH` and `bad_relocs` = relocations `head.rs` could not
/// apply; the MMU is off and hv's relocations are applied.
#[no_mangle]
extern "C" fn hv_boot_primary(dtb_pa: u64, vh: u64, bad_relocs: u64) -> ! {
    // SAFETY: dtb_pa is x0 at entry (boot protocol).
    let Some(dtb) = (unsafe { dtb_slice(dtb_pa) }) else {
        park() // no DTB, so no console to complain on
    };
    let Ok(info) = BootInfo::parse(dtb) else {
        park()
    };
    if vh == 0 {
        early_fail(
            &info,
            "hv requires FEAT_VHE (ID_AA64MMFR1_EL1.VH == 0): it runs with HCR_EL2.E2H = 1; powering off",
        );
    }

    if bad_relocs != 0 {
        early_fail(
            &info,
            "hv's image has relocations other than R_AARCH64_RELATIVE: it cannot run at this address; powering off",
        );
    }
    let ncpus = cpu_count(&info);
    place_stacks(&info, dtb_pa, ncpus);

    // hv's identity map: RAM Normal WB, the devices hv drives Device-nGnRE.
    // SAFETY: boot CPU, MMU off, no other CPU running.
    let mut b = unsafe { Builder::new() };
    let mut ok = true;
    let img = image_range();
    for m in info.memory.as_slice() {
        ok &= map_except(&mut b, m.base.raw(), m.end()).is_ok();
    }
    ok &= map_except(&mut b, dtb_pa, dtb_pa + dtb.len() as u64).is_ok();
    ok &= map_except(&mut b, img.base.raw(), img.end()).is_ok();
    let mut devices: FixedVec<MemRange, 8> = FixedVec::default();
    let _ = info.uart.map(|u| devices.push(u));
    if let Some(gic) = &info.gic {
        let _ = devices.push(gic.dist);
        for r in gic.redist.as_slice() {
            let _ = devices.push(*r);
        }
    }
    for d in devices.as_slice() {
        ok &= b.map(d.base.raw(), d.end(), mmu::DEVICE).is_ok();
    }
    if !ok {
        early_fail(&info, "out of boot page tables");
    }
    let cfg = b.finish();
    // SAFETY: cfg describes an identity map of everything hv touches (its image,
    // stack, the DTB, RAM, the console and GIC), so execution continues at the
    // same addresses; the invalidated range is hv's own image.
    unsafe { hv_mmu_enable(&cfg, img.base.raw() as usize, img.end() as usize) };

    // From here on: MMU and caches on, atomics usable.
    let info = BOOT.call_once(|| info);
    HOST_DTB.call_once(|| dtb);
    if let Some(u) = info.uart {
        // SAFETY: the DTB's PL011, identity-mapped as Device memory above;
        // all later output goes through the logger's lock.
        let uart = UART.call_once(|| unsafe { Pl011::new(u.base.raw()) });
        let level = HvOptions::parse(info.cmdline, |_| {}).log_level;
        logger::init(uart, level);
    }
    logger::print(format_args!("hv: hv {VERSION} booting at EL2 (VHE)\n"));
    // The guest-log rate limiter reads the time only when a guest-triggered
    // line is about to be printed (never on the exit path).
    crate::ratelimit::set_clock(guest_log_clock);
    log::info!(
        "image at {:#x}..{:#x} (relocated), DTB at {dtb_pa:#x}, {ncpus} CPUs in the DTB",
        img.base.raw(),
        img.end()
    );
    let options =
        OPTIONS.call_once(|| HvOptions::parse(info.cmdline, |w| log::warn!("command line: {w}")));
    log::info!("command line: \"{}\"", info.cmdline);
    let grown = DTB_GROWN_FROM.load(Ordering::Relaxed);
    if grown != 0 {
        log::info!(
            "DTB: totalsize {grown:#x} is past 2 MiB (QEMU's -dtb grows a padded file); using its blocks' {:#x} bytes",
            dtb.len()
        );
    }
    log_console(info);
    if info.memory_ignored != 0 {
        log::warn!(
            "DTB: ignoring {} memory ranges beyond hv's limit",
            info.memory_ignored
        );
    }

    init_frames(info, dtb_pa);
    init_heap();
    percpu::init(ncpus);

    // Nesting verdict, from evidence gathered before HCR_EL2 is set for guests.
    let evidence = super::nested::gather(info);
    let decision = nested_detect::decide(&evidence, options.nested.as_override());
    logger::print(format_args!("hv: platform: {decision}\n"));
    logger::print(format_args!("hv: nested-detect evidence: {evidence}\n"));
    let has_tlbi_range = (read_sysreg!("id_aa64isar0_el1") >> 56) & 0xf == 2;
    set_boot_facts(BootFacts {
        nested: decision,
        has_tlbi_range,
    });
    log::info!(
        "tlb policy: {:?} (tlb={:?})",
        options.tlb_policy(boot_facts()),
        options.tlb
    );

    let boot_stack_top = core::ptr::addr_of!(__stacks_start) as u64 + STACK_SIZE as u64;
    // SAFETY: CPU 0 is the caller.
    let me = unsafe {
        percpu::prepare(
            0,
            read_sysreg!("mpidr_el1") & 0xff_00ff_ffff,
            boot_stack_top,
        )
    };
    // SAFETY: TPIDR_EL2 is hv's own per-CPU pointer register.
    unsafe { write_sysreg!("tpidr_el2", me as u64) };
    // SAFETY: once, on the boot CPU, before any guest.
    unsafe { Cpu::init_el2() };
    super::gic::init_distributor(info, ncpus);
    // SAFETY: once on this CPU, before any guest, IRQs masked.
    unsafe { super::gic::init_cpu(info, 0) };
    super::pl011::start_input(info, dtb, UART.get());
    logger::print(format_args!("hv: CPU0 online\n"));
    ONLINE.fetch_add(1, Ordering::SeqCst);
    start_secondaries(info);
    crate::hypercall::host::set_host_facts(crate::hypercall::host::HostFacts {
        nr_cpus: ONLINE.load(Ordering::SeqCst) as u32,
        cmdline: info.cmdline,
        ram_end_pfn: info
            .memory
            .as_slice()
            .iter()
            .map(|r| (r.base.0 + r.size) >> 12)
            .max()
            .unwrap_or(0),
    }); // sysctl physinfo / XENVER_commandline (Xen: num_online_cpus, saved_cmdline, max_page)

    let cpu = Cpu::new(0, info.psci);
    let mem = HostMem::new(info.memory);
    super::enter_primary(cpu, mem, info, options)
}

/// Say which console hv uses and why (Xen's dtuart= / stdout-path rules).
fn log_console(info: &BootInfo<'_>) {
    use crate::bootinfo::ConsoleFrom;
    let c = info.console;
    let from = match c.from {
        ConsoleFrom::Dtuart => "dtuart=",
        ConsoleFrom::StdoutPath => "stdout-path ",
        ConsoleFrom::FirstPl011 => "",
    };
    let base = info.uart.map_or(0, |u| u.base.raw());
    if c.from == ConsoleFrom::FirstPl011 {
        log::info!("console: PL011 at {base:#x} (the first one: no dtuart= or stdout-path)");
    } else if c.found {
        log::info!("console: PL011 at {base:#x} ({from}{})", c.name);
    } else {
        log::warn!(
            "console: {from}{}: no enabled PL011 at that path or alias; using the PL011 at {base:#x}",
            c.name
        );
    }
}

fn init_frames(info: &BootInfo<'static>, dtb_pa: u64) {
    let mut exclude = boot_exclusions(info, dtb_pa);
    let ram = info.memory.as_slice();
    let words = FrameAllocator::storage_words(ram);
    let bytes = (words * 8) as u64;
    let Some(at) = FrameAllocator::find_storage(ram, exclude.as_slice(), bytes) else {
        panic!("no room for the frame allocator's bitmaps ({bytes} bytes)");
    };
    let ok = exclude.push(MemRange::new(at.raw(), bytes)).is_ok();
    assert!(ok, "too many excluded ranges for the frame allocator");
    // SAFETY: `at..at+bytes` is RAM (identity-mapped Normal) that overlaps
    // nothing in use (find_storage) and is excluded from the pool, so this is
    // the only reference to it, for hv's lifetime.
    let storage = unsafe { core::slice::from_raw_parts_mut(at.raw() as *mut u64, words) };
    match FrameAllocator::new(ram, exclude.as_slice(), storage) {
        Ok(fa) => {
            log::info!(
                "frames: {} free of {} MiB RAM",
                fa.free_count(),
                ram.iter().map(|r| r.size).sum::<u64>() >> 20
            );
            frame::init(fa);
        }
        Err(e) => panic!("frame allocator: {e:?}"),
    }
}

/// hv's heap: [`crate::mm::heap::boot_pages`] frames (grows with RAM; 1/8
/// less each try while no contiguous run that large is free, down to
/// [`HEAP_PAGES`]).
fn init_heap() {
    let mut frames = frame::frames().lock();
    let mut pages = crate::mm::heap::boot_pages(frames.free_count());
    let pa = loop {
        if let Some(pa) = frames.alloc(pages, 1) {
            break pa;
        }
        if pages <= HEAP_PAGES {
            panic!("no memory for the heap");
        }
        pages = (pages - pages / 8).max(HEAP_PAGES);
    };
    drop(frames);
    let size = pages * PAGE_SIZE as usize;
    // SAFETY: the frames were just allocated for the heap alone and are
    // identity-mapped RAM; the heap is initialised once, before any allocation.
    unsafe { HEAP.lock().init(pa.raw() as *mut u8, size) };
    // Guest-driven allocations are gated on the free bytes (mm::heap).
    crate::mm::heap::set_probe(|| HEAP.lock().free());
    log::info!("heap: {} MiB at {pa}", size >> 20);
}

fn start_secondaries(info: &BootInfo<'static>) {
    let me = read_sysreg!("mpidr_el1") & 0xff_00ff_ffff;
    let Some(conduit) = info.psci else {
        if info.cpus.len() > 1 {
            log::warn!("no /psci node: secondary CPUs stay off");
        }
        return;
    };
    let freq = read_sysreg!("cntfrq_el0").max(1);
    let stacks = STACKS_BASE.load(Ordering::Relaxed);
    let mut next = 1;
    for mpidr in info.cpus.iter() {
        if mpidr == me || next >= percpu::count() {
            continue;
        }
        let stack_top = stacks + (next * STACK_SIZE) as u64; // the (next-1)th stack's top
                                                             // SAFETY: CPU `next` has not been started.
        let entry_data = unsafe { percpu::prepare(next, mpidr, stack_top) };
        let entry = hv_secondary_entry as *const () as u64;
        let ret = psci::call(conduit, psci::CPU_ON_64, mpidr, entry, entry_data as u64);
        if ret != 0 {
            log::warn!("PSCI CPU_ON({mpidr:#x}) failed: {ret}");
            continue;
        }
        // Xen waits 1 s per CPU; an emulated machine with many CPUs on a
        // busy host (QEMU TCG, -smp 32) can take longer, so hv waits 5 s.
        let start = read_sysreg!("cntpct_el0");
        while ONLINE.load(Ordering::SeqCst) <= next {
            if read_sysreg!("cntpct_el0").wrapping_sub(start) > 5 * freq {
                log::warn!("CPU{next} (MPIDR {mpidr:#x}) did not come online within 5 s");
                break;
            }
            core::hint::spin_loop();
        }
        next += 1;
    }
    log::info!("{} CPUs online", ONLINE.load(Ordering::SeqCst));
}

/// Secondary CPUs, from `head.rs` with the MMU on, on the stack named by
/// their per-CPU entry `me` (PSCI CPU_ON's context_id).
#[no_mangle]
extern "C" fn hv_boot_secondary(me: *mut percpu::PerCpu) -> ! {
    // SAFETY: the boot CPU prepared this entry before CPU_ON; this CPU owns it now.
    let index = unsafe { (*me).index } as usize;
    // SAFETY: TPIDR_EL2 is hv's own per-CPU pointer register.
    unsafe { write_sysreg!("tpidr_el2", me as u64) };
    // SAFETY: once on this CPU, before any guest.
    unsafe { Cpu::init_el2() };
    if let Some(info) = BOOT.get() {
        // SAFETY: once on this CPU, before any guest, IRQs masked.
        unsafe { super::gic::init_cpu(info, index) };
    }
    logger::print(format_args!("hv: CPU{index} online\n"));
    ONLINE.fetch_add(1, Ordering::SeqCst);
    let psci = BOOT.get().and_then(|b| b.psci);
    super::enter_secondary(Cpu::new(index, psci))
}

/// hv took an exception at EL2 itself: report it and stop this CPU.
#[no_mangle]
extern "C" fn hv_el2_exception(frame: &TrapFrame, kind: u64) -> ! {
    let what = ["synchronous", "IRQ", "FIQ", "SError"]
        .get(kind as usize)
        .copied()
        .unwrap_or("?");
    if let Some(cpu) = guard_cpu(frame.far) {
        logger::emergency_print(format_args!(
            "hv: ERROR: stack overflow on CPU{cpu} (guard page hit at {:#x})\n",
            frame.far
        ));
    }
    logger::emergency_print(format_args!(
        "hv: ERROR: unexpected {what} exception at EL2 on CPU{}: ESR_EL2={:#x} (EC {:#x}) ELR_EL2={:#x} FAR_EL2={:#x} SPSR_EL2={:#x} SP={:#x}\n",
        percpu::index(),
        frame.esr,
        frame.esr >> 26,
        frame.elr,
        frame.far,
        frame.spsr,
        frame.sp
    ));
    for (i, regs) in frame.x.chunks(4).enumerate() {
        let r = |k: usize| regs.get(k).copied().unwrap_or(0);
        logger::emergency_print(format_args!(
            "hv:   x{:<2} {:#018x} {:#018x} {:#018x} {:#018x}\n",
            i * 4,
            r(0),
            r(1),
            r(2),
            r(3)
        ));
    }
    logger::emergency_print(format_args!("hv: CPU{} halted\n", percpu::index()));
    park()
}

/// Nanoseconds since the counter started, for the guest-log rate limiter.
fn guest_log_clock() -> u64 {
    crate::xen::domu::ticks_to_ns(read_sysreg!("cntvct_el0"), read_sysreg!("cntfrq_el0"))
}
