//! hv's own GICv3 (physical interrupts at EL2) and the virtual CPU
//! interface registers (`ICH_*_EL2`) behind the GIC hooks of [`crate::arch::Arch`].
//!
//! **Set-up** ([`init_distributor`] once on the boot CPU, [`init_cpu`] on each
//! CPU before it runs guests): `GICD_CTLR` = ARE + EnableGrp1 (the bits are
//! the same in the single-security and Non-secure views); this CPU's
//! redistributor is the frame whose `GICR_TYPER.Affinity` equals its MPIDR
//! (walking each DTB region by 128 KiB, or 256 KiB with `VLPIS`, until
//! `Last`), woken through `GICR_WAKER`; SGIs/PPIs in Group 1, hv's kick SGI
//! and PPIs 25 (maintenance), 28 (EL2 virtual timer, hv's), 27 (EL1 virtual
//! timer) enabled, the EL2 physical timer off; CPU interface: `ICC_PMR_EL1` = 0xff, `ICC_BPR1_EL1` = 0,
//! `ICC_CTLR_EL1.EOImode` = 1 (an EOI only drops the priority; deactivation
//! is a separate `ICC_DIR_EL1` write), `ICC_IGRPEN1_EL1` = 1;
//! `ICH_HCR_EL2` = 0 until a vCPU is entered. hv runs with `PSTATE.I` set at
//! EL2 all the time: physical IRQs arrive as guest exits (`HCR_EL2.IMO`) or
//! wake `WFI` in the idle loop, and are then acknowledged through
//! `ICC_IAR1_EL1` ([`ack`]). hv's own are ended with `ICC_EOIR1_EL1` +
//! `ICC_DIR_EL1` ([`eoi`]); an SPI routed to a guest only with
//! `ICC_EOIR1_EL1` ([`drop_priority`]): the guest's deactivation of the
//! virtual interrupt linked to it (list register HW bit) deactivates it.
//!
//! **SPIs** ([`init_distributor`], as Xen's `gicv3_dist_init`): all disabled,
//! deactivated, not pending, Group 1, priority 0xa0, routed to the boot CPU.
//! [`HostDist`] is the [`crate::irq::PhysDist`] hv configures guests' SPIs
//! through (installed with [`crate::irq::install`]).
//!
//! **Guest SGIs.** With `HCR_EL2.IMO`/`FMO` set, EL1 writes to
//! `ICC_SGI1R_EL1`/`ICC_ASGI1R_EL1`/`ICC_SGI0R_EL1` trap to EL2 (GICv3
//! architecture spec, the registers' "Traps" sections; QEMU models it in
//! `gicv3_sgi_access`, hw/intc/arm_gicv3_cpuif.c); no `ICH_HCR_EL2.TC` needed.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use super::sysreg::{isb, read_sysreg, write_sysreg};
use crate::arch::irq;
use crate::bootinfo::BootInfo;
use alloc::vec::Vec;

/// Each CPU's MPIDR affinity (Aff3 in [39:32], Aff2.Aff1.Aff0 in [23:0]),
/// published by [`init_cpu`]; used to address kick SGIs. One slot per CPU,
/// allocated by [`init_distributor`].
static MPIDRS: spin::Once<Vec<AtomicU64>> = spin::Once::new();

/// Priority of hv's own interrupts.
const HV_PRIO: u8 = 0xa0;

// The GIC accessors are one `ldr`/`str` each with a plain base register,
// written in asm rather than `read_volatile`/`write_volatile`: the compiler
// may turn a volatile access in a loop into a post-indexed `str x8, [x9], #8`,
// and an access with writeback (or a pair) traps to a hypervisor below hv
// with ESR_EL2.ISS.ISV = 0 (Arm ARM, ISS encoding for a Data Abort: ISV is
// set only for a single general-purpose register load/store without
// writeback), which KVM cannot emulate: it injects an external abort (seen in
// the nested rig, hv at vEL2: GICD_IROUTER32 init, ESR 0x96000010). Linux's
// arm64 `__raw_readl`/`__raw_writel` (arch/arm64/include/asm/io.h) are asm for
// the same reason.

fn mmio_read32(pa: u64) -> u32 {
    let v: u32;
    // SAFETY: `pa` is a GIC register inside a DTB GIC range, identity-mapped
    // Device-nGnRE by boot.rs; a 32-bit aligned read has no side effect on
    // the registers hv reads. One `ldr` without writeback (ISV = 1).
    unsafe {
        core::arch::asm!("ldr {v:w}, [{a}]", a = in(reg) pa, v = out(reg) v,
                         options(nostack, readonly, preserves_flags));
    }
    v
}

fn mmio_write32(pa: u64, v: u32) {
    // SAFETY: as in mmio_read32; hv owns the physical GIC. One `str` without
    // writeback (ISV = 1).
    unsafe {
        core::arch::asm!("str {v:w}, [{a}]", a = in(reg) pa, v = in(reg) v,
                         options(nostack, preserves_flags));
    }
}

fn mmio_read64(pa: u64) -> u64 {
    let v: u64;
    // SAFETY: as in mmio_read32 (GICR_TYPER is a 64-bit register).
    unsafe {
        core::arch::asm!("ldr {v:x}, [{a}]", a = in(reg) pa, v = out(reg) v,
                         options(nostack, readonly, preserves_flags));
    }
    v
}

fn mmio_write64(pa: u64, v: u64) {
    // SAFETY: as in mmio_read32; GICD_IROUTER<n> is a 64-bit register that
    // takes 64-bit accesses (GICv3 spec, "GICD_IROUTER<n>"). One `str`
    // without writeback (ISV = 1).
    unsafe {
        core::arch::asm!("str {v:x}, [{a}]", a = in(reg) pa, v = in(reg) v,
                         options(nostack, preserves_flags));
    }
}

/// Distributor register offsets (GICv3 spec, "Distributor register map").
mod gicd {
    pub const CTLR: u64 = 0x0000;
    pub const TYPER: u64 = 0x0004;
    pub const IGROUPR: u64 = 0x0080;
    pub const ISENABLER: u64 = 0x0100;
    pub const ICENABLER: u64 = 0x0180;
    pub const ISPENDR: u64 = 0x0200;
    pub const ICPENDR: u64 = 0x0280;
    pub const ICACTIVER: u64 = 0x0380;
    pub const IPRIORITYR: u64 = 0x0400;
    pub const ICFGR: u64 = 0x0c00;
    pub const IROUTER: u64 = 0x6000;
    /// `GICD_CTLR.RWP`: a write to CTLR or ICENABLER is still in progress.
    pub const RWP: u32 = 1 << 31;
}

/// Wait until the distributor finished the last `GICD_CTLR`/`GICD_ICENABLER`
/// write (`GICD_CTLR.RWP`), as the spec requires before relying on it.
fn wait_rwp(d: u64) {
    while mmio_read32(d + gicd::CTLR) & gicd::RWP != 0 {
        core::hint::spin_loop();
    }
}

/// The physical distributor as [`crate::irq::PhysDist`]: SPIs given to guests.
pub struct HostDist {
    base: u64,
    lines: u32,
    /// Serialises read-modify-writes of shared registers (IGROUPR,
    /// IPRIORITYR, ICFGR) between pCPUs.
    lock: spin::Mutex<()>,
}

impl HostDist {
    fn bit(&self, reg: u64, intid: u32) -> (u64, u32) {
        (
            self.base + reg + 4 * u64::from(intid / 32),
            1 << (intid % 32),
        )
    }
}

/// The routing value (`GICD_IROUTER` layout: Aff3 [39:32], Aff2.Aff1.Aff0
/// [23:0], IRM = 0) of pCPU `cpu`, or of the calling CPU if `cpu` is not online.
fn irouter_of(cpu: usize) -> u64 {
    match MPIDRS
        .get()
        .and_then(|v| v.get(cpu))
        .map(|m| m.load(Ordering::Acquire))
    {
        Some(m) if m != u64::MAX => m,
        _ => {
            let mpidr = read_sysreg!("mpidr_el1");
            (mpidr & 0xff_ffff) | (((mpidr >> 32) & 0xff) << 32)
        }
    }
}

impl crate::irq::PhysDist for HostDist {
    fn lines(&self) -> u32 {
        self.lines
    }

    fn spi_configure(&self, intid: u32, level: bool, priority: u8, target: usize) {
        if !(32..self.lines).contains(&intid) {
            return;
        }
        let _g = self.lock.lock();
        // Disabled first: changing ICFGR of an enabled SPI is UNPREDICTABLE.
        let (reg, bit) = self.bit(gicd::ICENABLER, intid);
        mmio_write32(reg, bit);
        wait_rwp(self.base);
        let (reg, bit) = self.bit(gicd::IGROUPR, intid);
        mmio_write32(reg, mmio_read32(reg) | bit);
        let reg = self.base + gicd::IPRIORITYR + u64::from(intid & !3);
        let shift = 8 * (intid & 3);
        mmio_write32(
            reg,
            (mmio_read32(reg) & !(0xff << shift)) | (u32::from(priority) << shift),
        );
        // ICFGR: two bits per INTID, bit 2n+1 set = edge-triggered.
        let reg = self.base + gicd::ICFGR + 4 * u64::from(intid / 16);
        let edge = 1u32 << (2 * (intid % 16) + 1);
        let v = mmio_read32(reg);
        mmio_write32(reg, if level { v & !edge } else { v | edge });
        mmio_write64(
            self.base + gicd::IROUTER + 8 * u64::from(intid),
            irouter_of(target),
        );
    }

    fn spi_enable(&self, intid: u32) {
        if (32..self.lines).contains(&intid) {
            let (reg, bit) = self.bit(gicd::ISENABLER, intid);
            mmio_write32(reg, bit);
        }
    }

    fn spi_disable(&self, intid: u32) {
        if (32..self.lines).contains(&intid) {
            let (reg, bit) = self.bit(gicd::ICENABLER, intid);
            mmio_write32(reg, bit);
            wait_rwp(self.base);
        }
    }

    fn spi_set_pending(&self, intid: u32, pending: bool) {
        if (32..self.lines).contains(&intid) {
            let r = if pending {
                gicd::ISPENDR
            } else {
                gicd::ICPENDR
            };
            let (reg, bit) = self.bit(r, intid);
            mmio_write32(reg, bit);
        }
    }

    fn spi_deactivate(&self, intid: u32) {
        if (32..self.lines).contains(&intid) {
            let (reg, bit) = self.bit(gicd::ICACTIVER, intid);
            mmio_write32(reg, bit);
        }
    }
}

/// Distributor set-up and the kick table for `ncpus` CPUs (boot CPU, after
/// the heap exists, before secondaries start).
pub fn init_distributor(info: &BootInfo<'_>, ncpus: usize) {
    MPIDRS.call_once(|| (0..ncpus).map(|_| AtomicU64::new(u64::MAX)).collect());
    let Some(gic) = &info.gic else {
        log::warn!("no GICv3 in the DTB: hv runs without interrupts");
        return;
    };
    let d = gic.dist.base.raw();
    // GICD_CTLR: ARE (bit 4) first, then EnableGrp1 (bit 1); wait for RWP (bit 31).
    mmio_write32(d, 1 << 4);
    while mmio_read32(d) & (1 << 31) != 0 {
        core::hint::spin_loop();
    }
    mmio_write32(d, (1 << 4) | (1 << 1));
    while mmio_read32(d) & (1 << 31) != 0 {
        core::hint::spin_loop();
    }
    // GICD_TYPER.ITLinesNumber [4:0]: 32 * (N + 1) lines, INTIDs below 1020.
    let lines = (32 * ((mmio_read32(d + gicd::TYPER) & 0x1f) + 1)).min(crate::irq::SPI_LIMIT);
    // Every SPI off, inactive, not pending, Group 1, priority HV_PRIO,
    // routed to this (the boot) CPU, as Xen's gicv3_dist_init.
    for first in (32..lines).step_by(32) {
        let w = 4 * u64::from(first / 32);
        mmio_write32(d + gicd::ICENABLER + w, u32::MAX);
        mmio_write32(d + gicd::ICACTIVER + w, u32::MAX);
        mmio_write32(d + gicd::ICPENDR + w, u32::MAX);
        mmio_write32(d + gicd::IGROUPR + w, u32::MAX);
    }
    wait_rwp(d);
    let prio4 = u32::from_ne_bytes([HV_PRIO; 4]);
    for first in (32..lines).step_by(4) {
        mmio_write32(d + gicd::IPRIORITYR + u64::from(first), prio4);
    }
    let me = irouter_of(usize::MAX);
    for intid in 32..lines {
        mmio_write64(d + gicd::IROUTER + 8 * u64::from(intid), me);
    }
    crate::irq::install(Arc::new(HostDist {
        base: d,
        lines,
        lock: spin::Mutex::new(()),
    }));
    log::debug!("GICv3 distributor: {lines} interrupt lines, SPIs 32..{lines} off");
}

/// This CPU's redistributor base, found by affinity.
fn find_redist(info: &BootInfo<'_>, aff: u64) -> Option<u64> {
    let gic = info.gic.as_ref()?;
    for r in gic.redist.as_slice() {
        let mut at = r.base.raw();
        while at + 0x2_0000 <= r.end() {
            let typer = mmio_read64(at + 0x8);
            if typer >> 32 == aff {
                return Some(at);
            }
            if typer & (1 << 4) != 0 {
                break; // Last
            }
            at += if typer & (1 << 1) != 0 {
                0x4_0000
            } else {
                0x2_0000
            };
        }
    }
    None
}

/// Per-CPU set-up: redistributor, CPU interface, virtual interface off.
///
/// # Safety
/// Once per CPU at EL2 before it runs guests, with `PSTATE.I` set.
pub unsafe fn init_cpu(info: &BootInfo<'_>, index: usize) {
    let mpidr = read_sysreg!("mpidr_el1");
    // GICR_TYPER.Affinity layout: Aff3.Aff2.Aff1.Aff0.
    let aff = (mpidr & 0xff_ffff) | (((mpidr >> 32) & 0xff) << 24);
    if let Some(m) = MPIDRS.get().and_then(|v| v.get(index)) {
        m.store(
            (mpidr & 0xff_ffff) | (((mpidr >> 32) & 0xff) << 32),
            Ordering::Release,
        );
    }
    let Some(rd) = find_redist(info, aff) else {
        log::warn!("CPU{index}: no redistributor for affinity {aff:#x}");
        return;
    };
    // GICR_WAKER: clear ProcessorSleep, wait for ChildrenAsleep to clear.
    let waker = rd + 0x14;
    mmio_write32(waker, mmio_read32(waker) & !(1 << 1));
    while mmio_read32(waker) & (1 << 2) != 0 {
        core::hint::spin_loop();
    }
    let sgi = rd + 0x1_0000;
    mmio_write32(sgi + 0x180, u32::MAX); // ICENABLER0: start from nothing enabled
    mmio_write32(sgi + 0x80, u32::MAX); // IGROUPR0: all Group 1
    for intid in [irq::KICK_SGI, irq::MAINTENANCE, irq::HYP_TIMER, irq::VTIMER] {
        let reg = sgi + 0x400 + u64::from(intid & !3);
        let shift = 8 * (intid & 3);
        let v = mmio_read32(reg) & !(0xff << shift);
        mmio_write32(reg, v | (u32::from(HV_PRIO) << shift));
    }
    mmio_write32(
        sgi + 0x100,
        (1 << irq::KICK_SGI) | (1 << irq::MAINTENANCE) | (1 << irq::HYP_TIMER) | (1 << irq::VTIMER),
    );
    // The EL2 physical timer is not hv's ([`irq::HYP_TIMER`]); its reset
    // state is UNKNOWN on hardware: keep it off (and PPI 26 disabled above).
    // SAFETY: CNTHP_CTL_EL2 = 0 only stops a timer nothing uses.
    unsafe { write_sysreg!("S3_4_C14_C2_1", 0u64) };
    // SAFETY (each CPU-interface write below): hv's own physical CPU
    // interface at EL2 (ICC_SRE_EL2.SRE = 1 from init_el2); IRQs stay masked
    // by PSTATE.I, so nothing is taken as an exception.
    // SAFETY: see above. ICC_PMR_EL1: every priority passes.
    unsafe { write_sysreg!("S3_0_C4_C6_0", 0xffu64) };
    // SAFETY: see above. ICC_BPR1_EL1 = 0.
    unsafe { write_sysreg!("S3_0_C12_C12_3", 0u64) };
    // SAFETY: see above. ICC_CTLR_EL1: EOImode [1] = 1: EOIR drops the
    // priority only, DIR deactivates (guest SPIs are deactivated by the
    // guest through the list register's HW bit, crate::irq).
    unsafe { write_sysreg!("S3_0_C12_C12_4", 1u64 << 1) };
    // SAFETY: see above. ICC_IGRPEN1_EL1 = 1.
    unsafe { write_sysreg!("S3_0_C12_C12_7", 1u64) };
    // SAFETY: virtual interface off until a vCPU enters (ICH_HCR_EL2).
    unsafe { write_sysreg!("S3_4_C12_C11_0", 0u64) };
    isb(); // the CPU interface settings apply from here on
}

/// `ICC_IAR1_EL1`: acknowledge; `None` for a spurious INTID (1020..1023).
pub fn ack() -> Option<u32> {
    let v: u64;
    // SAFETY: reading IAR acknowledges hv's own highest-priority pending
    // physical interrupt (it becomes active); hv ends it with eoi().
    unsafe {
        core::arch::asm!("mrs {0}, S3_0_C12_C12_0", out(reg) v, options(nostack, preserves_flags))
    };
    let intid = (v & 0xff_ffff) as u32;
    (intid < 1020).then_some(intid)
}

/// End one of hv's own interrupts: `ICC_EOIR1_EL1` (priority drop, EOImode
/// = 1) then `ICC_DIR_EL1` (deactivation), as Linux's `gic_eoimode1_eoi_irq`.
pub fn eoi(intid: u32) {
    // SAFETY: drops the running priority of an interrupt hv acknowledged
    // with ack(); EOImode = 1, so it stays active until DIR.
    unsafe { write_sysreg!("S3_0_C12_C12_1", u64::from(intid)) };
    // SAFETY: ICC_DIR_EL1 deactivates the interrupt hv just ended (valid
    // with EOImode = 1, which init_cpu set).
    unsafe { write_sysreg!("S3_0_C12_C11_1", u64::from(intid)) };
    isb(); // the deactivation takes effect before hv waits again
}

/// Priority drop only (`ICC_EOIR1_EL1` with EOImode = 1) of a physical SPI
/// routed to a guest: it stays active until the guest deactivates the
/// virtual interrupt its list register links to it.
pub fn drop_priority(intid: u32) {
    // SAFETY: drops the running priority of an SPI hv acknowledged with
    // ack() without deactivating it (EOImode = 1); the guest's EOI through
    // an HW list register deactivates it.
    unsafe { write_sysreg!("S3_0_C12_C12_1", u64::from(intid)) };
    isb(); // the priority drop takes effect before hv acknowledges the next one
}

/// Send hv's kick SGI to CPU `cpu` (`ICC_SGI1R_EL1` by affinity).
pub fn kick(cpu: usize) {
    let Some(m) = MPIDRS
        .get()
        .and_then(|v| v.get(cpu))
        .map(|m| m.load(Ordering::Acquire))
    else {
        return;
    };
    if m == u64::MAX {
        return; // not online
    }
    let aff0 = m & 0xff;
    let v = ((m >> 32) & 0xff) << 48       // Aff3
        | ((m >> 16) & 0xff) << 32          // Aff2
        | ((m >> 8) & 0xff) << 16           // Aff1
        | (aff0 >> 4) << 44                 // RS
        | u64::from(irq::KICK_SGI) << 24    // INTID
        | 1 << (aff0 & 0xf); // TargetList
                             // SAFETY: a barrier only orders memory accesses.
                             // Make hv's state updates visible before the target CPU is interrupted
                             // (as Linux's gic_ipi_send_mask does).
    unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
    // SAFETY: generates an SGI to another CPU running hv; it only makes that
    // CPU exit its guest or its WFI.
    unsafe { write_sysreg!("S3_0_C12_C11_5", v) };
    isb(); // the SGI is generated before hv goes on
}

/// Arm (or disarm) hv's EL2 timer, the EL2 virtual timer (`CNTHV_CVAL_EL2`,
/// `CNTHV_CTL_EL2`, FEAT_VHE, which hv requires; [`irq::HYP_TIMER`]).
/// `deadline` is a `CNTVCT_EL0` value (hv's clock, [`crate::arch::Arch::counter`]).
pub fn set_hyp_timer(deadline: Option<u64>) {
    // The EL2 virtual timer compares with the count hv reads as CNTVCT_EL0:
    // at EL2 with E2H = 1 both are the physical count (offset 0); a guest
    // hypervisor under KVM reads CNTVCT_EL0 through the same virtual offset
    // KVM gives this timer (its `hvtimer`, the EL1 virtual timer while hv
    // runs), so a deadline needs no conversion. The EL2 physical timer did
    // (CNTPCT_EL0 - CNTVCT_EL0 added at each arming, issue 14) and, nested,
    // its CNTPOFF_EL2 offset, not applied by the rig's L0, made L1 take an
    // IRQ exit per hv instruction from each deadline to deadline + offset
    // ([`irq::HYP_TIMER`]).
    match deadline {
        Some(t) => {
            // SAFETY: hv's own EL2 timer; its interrupt (PPI 28) only wakes hv.
            unsafe { write_sysreg!("S3_4_C14_C3_2", t) };
            // SAFETY: as above. ENABLE = 1, IMASK = 0.
            unsafe { write_sysreg!("S3_4_C14_C3_1", 1u64) };
        }
        // SAFETY: as above. Disabled.
        None => unsafe { write_sysreg!("S3_4_C14_C3_1", 0u64) },
    }
    isb(); // the timer's new settings apply before hv waits or enters a guest
}

/// Wait for a physical interrupt (taken by nothing: `PSTATE.I` is set).
pub fn wfi() {
    // SAFETY: a barrier only orders memory accesses.
    // Everything hv wrote is visible before this CPU sleeps.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
    // SAFETY: WFI only suspends this CPU until an interrupt is pending.
    unsafe { core::arch::asm!("wfi", options(nostack, preserves_flags)) };
}

macro_rules! lr_regs {
    ($m:ident, $n:expr $(, $arg:expr)?) => {
        match $n {
            0 => $m!("S3_4_C12_C12_0" $(, $arg)?),
            1 => $m!("S3_4_C12_C12_1" $(, $arg)?),
            2 => $m!("S3_4_C12_C12_2" $(, $arg)?),
            3 => $m!("S3_4_C12_C12_3" $(, $arg)?),
            4 => $m!("S3_4_C12_C12_4" $(, $arg)?),
            5 => $m!("S3_4_C12_C12_5" $(, $arg)?),
            6 => $m!("S3_4_C12_C12_6" $(, $arg)?),
            7 => $m!("S3_4_C12_C12_7" $(, $arg)?),
            8 => $m!("S3_4_C12_C13_0" $(, $arg)?),
            9 => $m!("S3_4_C12_C13_1" $(, $arg)?),
            10 => $m!("S3_4_C12_C13_2" $(, $arg)?),
            11 => $m!("S3_4_C12_C13_3" $(, $arg)?),
            12 => $m!("S3_4_C12_C13_4" $(, $arg)?),
            13 => $m!("S3_4_C12_C13_5" $(, $arg)?),
            14 => $m!("S3_4_C12_C13_6" $(, $arg)?),
            15 => $m!("S3_4_C12_C13_7" $(, $arg)?),
            _ => Default::default(),
        }
    };
}

/// `ICH_LR<n>_EL2` (0 for an index beyond 15).
pub fn read_lr(n: usize) -> u64 {
    macro_rules! rd {
        ($r:tt) => {
            read_sysreg!($r)
        };
    }
    lr_regs!(rd, n)
}

/// Write `ICH_LR<n>_EL2` (ignored beyond 15).
pub fn write_lr(n: usize, v: u64) {
    macro_rules! wr {
        ($r:tt, $v:expr) => {
            // SAFETY: the virtual CPU interface's list registers only affect
            // the virtual interrupts of the guest hv enters next.
            unsafe { write_sysreg!($r, $v) }
        };
    }
    lr_regs!(wr, n, v)
}

/// `ICH_AP0R<n>_EL2` / `ICH_AP1R<n>_EL2`.
pub fn read_apr(group1: bool, n: usize) -> u64 {
    match (group1, n) {
        (false, 0) => read_sysreg!("S3_4_C12_C8_0"),
        (false, 1) => read_sysreg!("S3_4_C12_C8_1"),
        (false, 2) => read_sysreg!("S3_4_C12_C8_2"),
        (false, 3) => read_sysreg!("S3_4_C12_C8_3"),
        (true, 0) => read_sysreg!("S3_4_C12_C9_0"),
        (true, 1) => read_sysreg!("S3_4_C12_C9_1"),
        (true, 2) => read_sysreg!("S3_4_C12_C9_2"),
        (true, 3) => read_sysreg!("S3_4_C12_C9_3"),
        _ => 0,
    }
}

/// Write `ICH_AP0R<n>_EL2` / `ICH_AP1R<n>_EL2`.
pub fn write_apr(group1: bool, n: usize, v: u64) {
    // SAFETY (each arm): the virtual interface's active-priority state of
    // the vCPU being loaded; only affects that guest's virtual interrupts.
    match (group1, n) {
        // SAFETY: see above.
        (false, 0) => unsafe { write_sysreg!("S3_4_C12_C8_0", v) },
        // SAFETY: see above.
        (false, 1) => unsafe { write_sysreg!("S3_4_C12_C8_1", v) },
        // SAFETY: see above.
        (false, 2) => unsafe { write_sysreg!("S3_4_C12_C8_2", v) },
        // SAFETY: see above.
        (false, 3) => unsafe { write_sysreg!("S3_4_C12_C8_3", v) },
        // SAFETY: see above.
        (true, 0) => unsafe { write_sysreg!("S3_4_C12_C9_0", v) },
        // SAFETY: see above.
        (true, 1) => unsafe { write_sysreg!("S3_4_C12_C9_1", v) },
        // SAFETY: see above.
        (true, 2) => unsafe { write_sysreg!("S3_4_C12_C9_2", v) },
        // SAFETY: see above.
        (true, 3) => unsafe { write_sysreg!("S3_4_C12_C9_3", v) },
        _ => {}
    }
}

/// `ICH_VTR_EL2`.
pub fn vtr() -> u64 {
    // Read once: it never changes (and hv assumes symmetric CPUs), and
    // nested under KVM every read traps to L0 (ICH_VTR_EL2 is emulated, not
    // in the VNCR page); the LR code asks for it at every guest entry.
    // Never 0 (PRIbits >= 4), so 0 means "not read yet".
    static VTR: AtomicU64 = AtomicU64::new(0);
    match VTR.load(Ordering::Relaxed) {
        0 => {
            let v = read_sysreg!("S3_4_C12_C11_1");
            VTR.store(v, Ordering::Relaxed);
            v
        }
        v => v,
    }
}

/// `ICH_ELRSR_EL2`.
pub fn elrsr() -> u64 {
    read_sysreg!("S3_4_C12_C11_5")
}

/// `ICH_MISR_EL2`.
pub fn misr() -> u64 {
    read_sysreg!("S3_4_C12_C11_2")
}

/// `ICH_VMCR_EL2`.
pub fn read_vmcr() -> u64 {
    read_sysreg!("S3_4_C12_C11_7")
}

/// Write `ICH_VMCR_EL2`.
pub fn write_vmcr(v: u64) {
    // SAFETY: the loaded vCPU's virtual CPU-interface control (its PMR,
    // BPRs, group enables); affects only that guest.
    unsafe { write_sysreg!("S3_4_C12_C11_7", v) };
}

/// Write `ICH_HCR_EL2`.
pub fn write_hcr(v: u64) {
    // SAFETY: the virtual CPU interface's control (enable, maintenance
    // interrupt conditions); affects only the guest hv enters next.
    unsafe { write_sysreg!("S3_4_C12_C11_0", v) };
}

/// Route SPI `intid` to hv itself on the calling CPU (the console UART's
/// receive interrupt): disabled while it is set up, then Group 1, hv's
/// priority, level or edge (`GICD_ICFGR`), `GICD_IROUTER` = this CPU's
/// affinity (IRM = 0), enabled. Boot CPU, after [`init_distributor`].
pub fn enable_spi_to_self(info: &BootInfo<'_>, intid: u32, level: bool) {
    let Some(gic) = &info.gic else {
        return;
    };
    if !(32..1020).contains(&intid) {
        return;
    }
    // hv's own SPI: no domain may ever be given it (hostdt hides the UART
    // from dom0 too; this keeps the rule in the ownership table).
    if let Some(Err(e)) = crate::irq::global().map(|t| t.reserve_for_hv(intid)) {
        log::warn!("SPI {intid} for hv itself: {e}");
        return;
    }
    let d = gic.dist.base.raw();
    let (word, bit) = (u64::from(intid / 32) * 4, 1u32 << (intid % 32));
    mmio_write32(d + 0x180 + word, bit); // GICD_ICENABLER
    while mmio_read32(d) & (1 << 31) != 0 {
        core::hint::spin_loop(); // GICD_CTLR.RWP: the disable has taken effect
    }
    mmio_write32(d + 0x080 + word, mmio_read32(d + 0x080 + word) | bit); // IGROUPR: Group 1
    let prio = d + 0x400 + u64::from(intid & !3);
    let shift = 8 * (intid & 3);
    mmio_write32(
        prio,
        (mmio_read32(prio) & !(0xff << shift)) | (u32::from(HV_PRIO) << shift),
    );
    let cfg = d + 0xc00 + u64::from(intid / 16) * 4;
    let edge = 2u32 << (2 * (intid % 16)); // Int_config[1]: 1 edge, 0 level
    let v = mmio_read32(cfg);
    mmio_write32(cfg, if level { v & !edge } else { v | edge });
    let mpidr = read_sysreg!("mpidr_el1");
    let route = (mpidr & 0xff_ffff) | (((mpidr >> 32) & 0xff) << 32);
    // GICD_IROUTER<n>: a 64-bit register inside the distributor range.
    mmio_write64(d + 0x6000 + 8 * u64::from(intid), route);
    mmio_write32(d + 0x100 + word, bit); // GICD_ISENABLER
}
