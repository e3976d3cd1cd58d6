//! Hardware interrupts and relocated vGICs: dom0's layout at the host's
//! addresses, physical SPIs linked to virtual ones (HW list registers), the
//! physical distributor operations the guest's register writes cause, and
//! their release. The fake physical distributor records every operation.

use super::lr::bits;
use super::mmio::MmioAccess;
use super::*;
use crate::arch::fake::{DistOp, FakeArch, FakeDist, FakeMachine, SharedMachine};
use crate::irq::{HwIrqs, Owner, RouteError, GUEST_SPI_PRIORITY, TARGET_PCPU};

/// QEMU virt's GICv3 (hw/arm/virt.c `base_memmap`).
const HOST: VgicLayout = VgicLayout {
    gicd: 0x0800_0000,
    gicr: 0x080a_0000,
};
/// QEMU virt's distributor: `GICD_TYPER.ITLinesNumber` = 8 (288 lines).
const HOST_LINES: u32 = 288;
/// PL031 RTC: SPI 2 (level), QEMU virt's `VIRT_RTC` interrupt.
const RTC: u32 = 34;

fn machine_and_hw(lines: u32) -> (SharedMachine, Arc<HwIrqs>) {
    let m = FakeMachine::new_shared();
    let hw = Arc::new(HwIrqs::new(Arc::new(FakeDist::new(m.clone(), lines))));
    (m, hw)
}

/// dom0's vGIC at the host's addresses with `n` vCPUs.
fn dom0(n: u32) -> (SharedMachine, Arc<HwIrqs>, Vgic) {
    let (m, hw) = machine_and_hw(HOST_LINES);
    let g = Vgic::with_hw(0, n, HOST, Some(hw.clone()));
    (m, hw, g)
}

fn acc(g: &Vgic, cpu: u32, ipa: u64, write: bool, size: u8, value: u64) -> Option<u64> {
    g.mmio(cpu, ipa, MmioAccess { write, size, value })
        .map(|r| r.expect("a valid access"))
}

fn rd(g: &Vgic, ipa: u64) -> u64 {
    acc(g, 0, ipa, false, 4, 0).expect("in range")
}

fn wr(g: &Vgic, ipa: u64, v: u64) {
    acc(g, 0, ipa, true, 4, v).expect("in range");
}

/// Bit register `base` (ISENABLER 0x100, ...) of the distributor at `layout`
/// with the bit of `intid` set.
fn bit(l: VgicLayout, base: u64, intid: u32) -> (u64, u64) {
    (l.gicd + base + 4 * u64::from(intid / 32), 1 << (intid % 32))
}

/// Linux's distributor set-up: groups on, the redistributors awake, every
/// SPI Group 1.
fn gic_on(g: &Vgic, l: VgicLayout, cpus: u32) {
    wr(g, l.gicd, 0x12);
    for c in 0..cpus {
        wr(g, l.gicr + u64::from(c) * GICR_STRIDE + 0x14, 0);
    }
    for n in 1..g.nr_irqs_for_tests() / 32 {
        wr(g, l.gicd + 0x80 + 4 * u64::from(n), 0xffff_ffff);
    }
}

impl Vgic {
    fn nr_irqs_for_tests(&self) -> u32 {
        self.with_state(|s| s.nr_irqs())
    }
}

/// [`dom0`] with `n` vCPUs after Linux's [`gic_on`], the RTC's SPI routed
/// to it and, if `enable`, enabled by the guest (GICD_ISENABLER).
fn dom0_rtc(n: u32, enable: bool) -> (SharedMachine, Arc<HwIrqs>, Vgic) {
    let (m, hw, g) = dom0(n);
    gic_on(&g, HOST, n);
    g.route_hw_spi(RTC, true).unwrap();
    if enable {
        let (set, b) = bit(HOST, 0x100, RTC);
        wr(&g, set, b);
    }
    (m, hw, g)
}

fn ops(m: &SharedMachine) -> Vec<DistOp> {
    let mut m = m.lock();
    let o = m.dist_ops();
    m.events.clear();
    o
}

#[test]
fn host_layout_decodes_at_the_host_addresses_only() {
    let (_m, _hw, g) = dom0(2);
    assert_eq!(g.layout(), HOST);
    // The distributor and exactly two redistributors at the host's bases.
    for ipa in [
        HOST.gicd,
        HOST.gicd + 0xfffc,
        HOST.gicr,
        HOST.gicr + 2 * GICR_STRIDE - 4,
    ] {
        assert!(g.in_range(ipa), "{ipa:#x}");
    }
    // Not Xen's guest addresses, not past the vCPUs' frames (QEMU virt puts
    // more redistributor space there, then the UART at 0x0900_0000).
    for ipa in [
        GICD_BASE,
        GICR_BASE,
        HOST.gicd + GICD_SIZE,
        HOST.gicr + 2 * GICR_STRIDE,
        0x0900_0000,
        HOST.gicd - 4,
    ] {
        assert!(!g.in_range(ipa), "{ipa:#x}");
        assert_eq!(acc(&g, 0, ipa, false, 4, 0), None, "{ipa:#x} not decoded");
    }
    // GICD_TYPER.ITLinesNumber is the host's (288 lines: 8), 256 SPIs.
    assert_eq!(rd(&g, HOST.gicd + 4) & 0x1f, 8);
    assert_eq!(g.nr_spis(), HOST_LINES - 32);
    // GICR_TYPER of the second redistributor: vCPU 1, Last.
    let typer = rd(&g, HOST.gicr + GICR_STRIDE + 8);
    assert_eq!((typer >> 8) & 0xffff, 1);
    assert_eq!((typer >> 4) & 1, 1, "Last");
    assert_eq!(rd(&g, HOST.gicr + 8) >> 4 & 1, 0);
    // Growing the domain's vCPUs grows the decoded range.
    g.set_nr_vcpus(4);
    assert!(g.in_range(HOST.gicr + 4 * GICR_STRIDE - 4));
    assert!(!g.in_range(HOST.gicr + 4 * GICR_STRIDE));
    // SPI 287 is implemented (enable sticks), 288.. are not (RAZ/WI).
    let (r, b) = bit(HOST, 0x100, 287);
    wr(&g, r, b);
    assert_eq!(rd(&g, r), b);
    wr(&g, HOST.gicd + 0x100 + 4 * 9, 0xffff_ffff);
    assert_eq!(rd(&g, HOST.gicd + 0x100 + 4 * 9), 0);
}

#[test]
fn guest_layout_keeps_xens_addresses_and_64_spis() {
    let (_m, hw) = machine_and_hw(HOST_LINES);
    let g = Vgic::with_hw(3, 1, VgicLayout::GUEST, Some(hw));
    assert_eq!(g.nr_spis(), SPI_COUNT);
    assert!(g.in_range(GICD_BASE) && g.in_range(GICR_BASE + GICR_SIZE - 4));
    assert!(!g.in_range(HOST.gicd));
    assert_eq!(rd(&g, GICD_BASE + 4) & 0x1f, u64::from(NR_IRQS / 32 - 1));
    // A host layout without a physical distributor: Xen's guest SPI count.
    let g = Vgic::with_hw(0, 1, HOST, None);
    assert_eq!(g.nr_spis(), SPI_COUNT);
    // A distributor with the maximum 1020 lines: 988 SPIs, ITLinesNumber 31.
    let (_m, hw) = machine_and_hw(1024);
    let g = Vgic::with_hw(0, 1, HOST, Some(hw));
    assert_eq!(g.nr_spis(), 988);
    assert_eq!(rd(&g, HOST.gicd + 4) & 0x1f, 31);
    // Bit registers for INTIDs 1020..1023 exist in the last word: RAZ/WI.
    wr(&g, HOST.gicd + 0x100 + 4 * 31, 0xffff_ffff);
    assert_eq!(rd(&g, HOST.gicd + 0x100 + 4 * 31), 0x0fff_ffff);
}

#[test]
fn route_checks_the_intid_and_configures_the_physical_spi() {
    let (m, hw, g) = dom0(1);
    for bad in [0, 27, 31, HOST_LINES, 1020, 1023, u32::MAX] {
        assert_eq!(g.route_hw_spi(bad, true), Err(RouteError::NotSpi(bad)));
    }
    assert!(ops(&m).is_empty(), "nothing touched for refused INTIDs");
    // A domU at Xen's layout has 64 SPIs: a host SPI beyond them is refused.
    let domu = Vgic::with_hw(1, 1, VgicLayout::GUEST, Some(hw.clone()));
    assert_eq!(
        domu.route_hw_spi(200, true),
        Err(RouteError::BeyondVgic(200))
    );
    assert_eq!(
        Vgic::new(2, 1).route_hw_spi(RTC, true),
        Err(RouteError::NoPhysicalGic),
        "no physical distributor (a host test without one, a DTB without a GIC)"
    );
    g.route_hw_spi(RTC, true).unwrap();
    assert!(g.is_hw(RTC) && !g.is_hw(RTC + 1) && !g.is_hw(27));
    assert_eq!(g.hw_spis(), [RTC]);
    assert_eq!(hw.owner(RTC), Some(Owner::Domain(0)));
    assert_eq!(
        ops(&m),
        [DistOp::Configure {
            intid: RTC,
            level: true,
            priority: GUEST_SPI_PRIORITY,
            target: TARGET_PCPU
        }]
    );
    assert!(
        !m.lock().spi_enabled.contains(&RTC),
        "disabled until the guest enables it"
    );
    // Another domain cannot take it; hv's own SPI cannot be routed.
    assert_eq!(
        domu.route_hw_spi(RTC, true),
        Err(RouteError::Busy(RTC, Owner::Domain(0)))
    );
    hw.reserve_for_hv(33).unwrap();
    assert_eq!(
        g.route_hw_spi(33, true),
        Err(RouteError::Busy(33, Owner::Hv))
    );
    // The virtual trigger follows the route: an edge SPI reads as edge.
    g.route_hw_spi(79, false).unwrap();
    let cfg = rd(&g, HOST.gicd + 0xc00 + 4 * (79 / 16));
    assert_eq!((cfg >> (2 * (79 % 16) + 1)) & 1, 1, "edge");
}

#[test]
fn guest_enable_and_disable_reach_the_physical_spi() {
    let (m, _hw, g) = dom0(1);
    g.route_hw_spi(RTC, true).unwrap();
    // Another SPI, not routed: its writes never reach the distributor.
    let (r, b) = bit(HOST, 0x100, 35);
    wr(&g, r, b);
    ops(&m);
    let (set, b) = bit(HOST, 0x100, RTC);
    let (clr, _) = bit(HOST, 0x180, RTC);
    wr(&g, set, b);
    assert_eq!(ops(&m), [DistOp::Enable(RTC)]);
    assert!(m.lock().spi_enabled.contains(&RTC));
    wr(&g, set, b); // already enabled: nothing more
    assert!(ops(&m).is_empty());
    wr(&g, clr, b | (1u64 << 3)); // also SPI 35 (not routed)
    assert_eq!(ops(&m), [DistOp::Disable(RTC)]);
    assert!(!m.lock().spi_enabled.contains(&RTC));
    wr(&g, clr, b);
    assert!(ops(&m).is_empty(), "already disabled");
    // Routing an SPI the guest already enabled enables the physical one.
    let (r, b) = bit(HOST, 0x100, 35);
    wr(&g, r, b);
    ops(&m);
    g.route_hw_spi(35, true).unwrap();
    assert_eq!(
        &ops(&m)[1..],
        [DistOp::Enable(35)],
        "configured, then enabled at once"
    );
}

/// One LR's state bits.
fn state(lr: u64) -> (bool, bool) {
    (lr & bits::PENDING != 0, lr & bits::ACTIVE != 0)
}

#[test]
fn ack_inject_and_the_guests_eoi_deactivate_through_the_hw_bit() {
    let (m, _hw, g) = dom0_rtc(1, true);
    let mut a = FakeArch::new(0, m.clone());
    ops(&m);
    assert!(!g.has_deliverable(0));
    // hv acknowledged physical SPI 34 and dropped its priority: inject.
    g.inject_hw(RTC).unwrap();
    assert!(g.has_deliverable(0));
    assert_eq!(g.flush_lrs(0, &mut a), 0);
    let lr = a.lrs[0];
    assert_eq!(lr & 0xffff_ffff, u64::from(RTC));
    assert_ne!(lr & bits::HW, 0, "HW bit");
    assert_eq!(
        (lr >> bits::PINTID_SHIFT) & bits::PINTID_MASK,
        u64::from(RTC),
        "pINTID"
    );
    assert_eq!(state(lr), (true, false));
    // The guest acknowledges: the LR becomes active (the GIC keeps HW/pINTID).
    a.lrs[0] = (lr & !bits::PENDING) | bits::ACTIVE;
    g.sync_lrs(0, &mut a);
    assert!(g.with_state(|s| s.spis[(RTC - 32) as usize].active));
    // Presented again, active only, still linked.
    g.flush_lrs(0, &mut a);
    assert_eq!(state(a.lrs[0]), (false, true));
    assert_ne!(a.lrs[0] & bits::HW, 0);
    // The guest's EOI empties the LR (the GIC deactivated the physical SPI).
    a.lrs[0] = 0;
    g.sync_lrs(0, &mut a);
    let irq = g.with_state(|s| s.spis[(RTC - 32) as usize]);
    assert!(!irq.active && !irq.pending && !irq.in_lr && irq.hw);
    assert!(!g.has_deliverable(0));
    assert!(ops(&m).is_empty(), "hv never deactivates it itself");
    // Not a routed SPI: refused.
    assert_eq!(g.inject_hw(RTC + 1), Err(VgicError::BadIntid(RTC + 1)));
    assert_eq!(g.inject_hw(27), Err(VgicError::BadIntid(27)));
    assert_eq!(g.inject_hw(5000), Err(VgicError::BadIntid(5000)));
}

#[test]
fn a_hw_lr_is_never_pending_and_active() {
    let (m, _hw, g) = dom0_rtc(1, true);
    let mut a = FakeArch::new(0, m.clone());
    // Active (the guest acknowledged it) and pending again (a second
    // physical edge after an ICACTIVER game): only the active state goes to
    // the LR, the pending latch waits in the vGIC.
    g.with_state(|s| s.spis[(RTC - 32) as usize].active = true);
    g.inject_hw(RTC).unwrap();
    g.flush_lrs(0, &mut a);
    assert_eq!(state(a.lrs[0]), (false, true));
    assert!(g.with_state(|s| s.spis[(RTC - 32) as usize].pending));
    // The guest deactivates: the next entry presents the pending one.
    a.lrs[0] = 0;
    g.sync_lrs(0, &mut a);
    g.flush_lrs(0, &mut a);
    assert_eq!(state(a.lrs[0]), (true, false));
    assert!(
        !g.with_state(|s| s.spis[(RTC - 32) as usize].pending),
        "the LR owns it"
    );
}

#[test]
fn put_and_load_keep_a_hw_interrupt_in_flight() {
    let (m, _hw, g) = dom0_rtc(2, true);
    let mut a0 = FakeArch::new(0, m.clone());
    let mut a1 = FakeArch::new(1, m.clone());
    g.load_cpu(0, 0, &mut a0);
    g.inject_hw(RTC).unwrap();
    g.flush_lrs(0, &mut a0);
    // The guest acknowledged it, then the vCPU is descheduled: sync, put.
    a0.lrs[0] = (a0.lrs[0] & !bits::PENDING) | bits::ACTIVE;
    g.sync_lrs(0, &mut a0);
    g.put_cpu(0, &mut a0);
    assert_eq!(a0.lrs, [0, 0], "the LR is cleared on put");
    let irq = g.with_state(|s| s.spis[(RTC - 32) as usize]);
    assert!(irq.active && irq.hw && !irq.in_lr, "state kept in the vGIC");
    // vCPU 0 comes back on pCPU 1: the LR is restored there, HW and active.
    g.load_cpu(0, 1, &mut a1);
    g.flush_lrs(0, &mut a1);
    assert_eq!(a1.lrs[0] & 0xffff_ffff, u64::from(RTC));
    assert_ne!(a1.lrs[0] & bits::HW, 0);
    assert_eq!(state(a1.lrs[0]), (false, true));
    assert!(ops(&m).iter().all(|o| !matches!(o, DistOp::Deactivate(_))));
}

#[test]
fn pending_and_active_writes_on_a_hw_spi_follow_the_physical_one() {
    let (m, _hw, g) = dom0_rtc(1, false);
    ops(&m);
    let (ispend, b) = bit(HOST, 0x200, RTC);
    let (icpend, _) = bit(HOST, 0x280, RTC);
    let (icact, _) = bit(HOST, 0x380, RTC);
    let (isact, _) = bit(HOST, 0x300, RTC);
    // ISPENDR: the physical SPI becomes pending (it then arrives as any other).
    wr(&g, ispend, b);
    assert_eq!(ops(&m), [DistOp::SetPending(RTC, true)]);
    assert!(!g.is_pending(0, RTC), "not latched virtually");
    // A delivered one cleared by ICPENDR: the physical SPI hv acknowledged
    // for it would stay active for ever: cleared and deactivated.
    g.inject_hw(RTC).unwrap();
    wr(&g, icpend, b);
    assert_eq!(
        ops(&m),
        [DistOp::SetPending(RTC, false), DistOp::Deactivate(RTC)]
    );
    assert!(!g.is_pending(0, RTC));
    // ICPENDR when nothing was pending: the physical pending state only.
    wr(&g, icpend, b);
    assert_eq!(ops(&m), [DistOp::SetPending(RTC, false)]);
    // Active and cleared through ICACTIVER (not pending): deactivated.
    wr(&g, isact, b);
    assert!(ops(&m).is_empty(), "ISACTIVER is virtual only");
    wr(&g, icact, b);
    assert_eq!(ops(&m), [DistOp::Deactivate(RTC)]);
    // Active and pending: ICACTIVER leaves the physical SPI active (the
    // pending state still owns it).
    wr(&g, isact, b);
    g.inject_hw(RTC).unwrap();
    wr(&g, icact, b);
    assert!(ops(&m).is_empty());
    // A non-routed SPI's writes never reach the distributor.
    let (ispend36, b36) = bit(HOST, 0x200, 36);
    wr(&g, ispend36, b36);
    assert!(g.is_pending(0, 36));
    assert!(ops(&m).is_empty());
}

#[test]
fn release_gives_every_spi_back_and_drop_is_a_safety_net() {
    let (m, hw, g) = dom0(1);
    gic_on(&g, HOST, 1);
    for i in [RTC, 39, 79] {
        g.route_hw_spi(i, true).unwrap();
    }
    let (set, b) = bit(HOST, 0x100, RTC);
    wr(&g, set, b);
    g.inject_hw(RTC).unwrap(); // in flight when the domain goes
    ops(&m);
    g.release_hw();
    let o = ops(&m);
    for i in [RTC, 39, 79] {
        let mine: Vec<_> = o
            .iter()
            .filter(|op| {
                matches!(op, DistOp::Disable(x) | DistOp::SetPending(x, false) | DistOp::Deactivate(x) if *x == i)
            })
            .collect();
        assert_eq!(mine.len(), 3, "SPI {i}: disabled, not pending, deactivated");
        assert_eq!(hw.owner(i), None);
        assert!(!g.is_hw(i));
    }
    assert!(m.lock().spi_enabled.is_empty());
    assert!(!g.has_deliverable(0));
    // Free for another domain now.
    let other = Vgic::with_hw(5, 1, HOST, Some(hw.clone()));
    other.route_hw_spi(RTC, false).unwrap();
    ops(&m);
    // Dropping a vGIC releases what it still holds; releasing twice is harmless.
    other.release_hw();
    drop(other);
    assert_eq!(ops(&m).len(), 3);
    let other = Vgic::with_hw(6, 1, HOST, Some(hw.clone()));
    other.route_hw_spi(RTC, true).unwrap();
    drop(other);
    assert_eq!(hw.owner(RTC), None);
}

/// Guest-controlled register offsets never index past the vGIC's SPIs, and
/// never reach the physical distributor for SPIs not linked.
#[test]
fn guest_writes_everywhere_touch_only_linked_spis() {
    let (m, _hw, g) = dom0(1);
    g.route_hw_spi(RTC, true).unwrap();
    ops(&m);
    let mut linked = 0;
    for off in (0x80..0x400u64).step_by(4) {
        for v in [0xffff_ffffu64, 0] {
            wr(&g, HOST.gicd + off, v);
        }
    }
    for op in ops(&m) {
        match op {
            DistOp::Enable(i)
            | DistOp::Disable(i)
            | DistOp::SetPending(i, _)
            | DistOp::Deactivate(i) => {
                assert_eq!(i, RTC);
                linked += 1;
            }
            DistOp::Configure { .. } => panic!("a guest write reconfigured an SPI"),
        }
    }
    assert!(linked > 0);
    // IROUTER and IPRIORITYR across the whole frame: virtual only.
    for off in (0x6000..0x8000u64).step_by(8) {
        acc(&g, 0, HOST.gicd + off, true, 8, u64::MAX);
    }
    for off in (0x400..0x800u64).step_by(4) {
        wr(&g, HOST.gicd + off, u64::MAX);
    }
    assert!(ops(&m).is_empty());
}

/// A routed SPI for a vCPU that is not running (or runs elsewhere) wakes the
/// scheduler (the wake epoch moves) and asks for a kick of its pCPU.
#[test]
fn inject_hw_wakes_and_kicks() {
    let (_m, _hw, g) = dom0_rtc(2, true);
    // Route the virtual SPI to vCPU 1 (GICD_IROUTER: Aff0 = 1), resident on pCPU 1.
    acc(&g, 0, HOST.gicd + 0x6000 + 8 * u64::from(RTC), true, 8, 1);
    g.set_resident(1, Some(1));
    let before = wake_epoch();
    g.inject_hw(RTC).unwrap();
    assert!(wake_epoch() > before, "blocked vCPUs are looked at again");
    assert!(
        g.has_deliverable(1) && !g.has_deliverable(0),
        "for vCPU 1 only"
    );
}
