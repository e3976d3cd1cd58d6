//! Physical SPIs routed to a domain through the run loop (fake arch): the
//! IRQ exit drops the priority only and injects with the HW bit, the guest's
//! EOI ends it, an SPI for a blocked vCPU wakes it from the idle loop, hv's
//! own interrupts get a priority drop and a deactivation, and the domain's
//! end releases its SPIs.

use super::super::*;
use crate::arch::fake::{
    DistOp, Event, FakeArch, FakeDist, FakeMachine, FakeMem, SharedMachine, Step,
};
use crate::arch::{irq, El1Reg};
use crate::irq::{HwIrqs, Owner};
use crate::vgic::lr::bits;
use crate::vgic::VgicLayout;
use alloc::sync::Arc;
use alloc::vec::Vec;
use pv_tlb::TlbOp;

/// QEMU virt's GICv3 addresses: dom0's vGIC sits there.
const HOST: VgicLayout = VgicLayout {
    gicd: 0x0800_0000,
    gicr: 0x080a_0000,
};
/// PL031's SPI on QEMU virt.
const RTC: u32 = 34;

struct Quiet;
impl ConsoleSink for Quiet {
    fn guest_line(&mut self, _: u16, _: &str) {}
    fn hv_line(&mut self, _: core::fmt::Arguments<'_>) {}
}

/// A system with one 1-vCPU domain whose vGIC is at the host's addresses
/// with SPI 34 routed to it (what dom0's builder does).
fn system_with_routed_rtc() -> (System<FakeMem>, SharedMachine, Arc<HwIrqs>, DomId) {
    let sys = crate::testutil::system(Policy::XenCompat, Box::new(Quiet), 2);
    let machine = FakeMachine::new_shared();
    let hw = Arc::new(HwIrqs::new(Arc::new(FakeDist::new(machine.clone(), 288))));
    let id = crate::testutil::add_image(&sys, DomainSpec::domu(2 << 20), &[0u8; 0x1000]).unwrap();
    {
        let mut sh = sys.shared.lock();
        let d = sh.entry(id).unwrap();
        d.vgic = Arc::new(crate::vgic::Vgic::with_hw(id, 1, HOST, Some(hw.clone())));
        d.vgic.route_hw_spi(RTC, true).unwrap();
    }
    (sys, machine, hw, id)
}

fn mmio_write(ipa: u64, val: u64) -> Step {
    let mut s = Step::data_abort(ipa, true);
    s.set_x.push((0, val));
    s
}

/// Linux's set-up at the host's addresses: groups, redistributor, SPI 34
/// Group 1 and enabled (ISENABLER1 bit 2), PPI 27 enabled.
fn gic_on() -> [Step; 5] {
    [
        mmio_write(HOST.gicd, 0x12),
        mmio_write(HOST.gicr + 0x14, 0),
        mmio_write(HOST.gicr + 0x1_0000 + 0x100, 1 << 27),
        mmio_write(HOST.gicd + 0x84, 0xffff_ffff),
        mmio_write(HOST.gicd + 0x104, 1 << (RTC - 32)),
    ]
}

/// d1v0's script: Linux's [`gic_on`], then `steps`.
fn script(machine: &SharedMachine, steps: impl IntoIterator<Item = Step>) {
    let mut m = machine.lock();
    m.script(1, 0, gic_on());
    m.script(1, 0, steps);
}

fn poweroff() -> Step {
    Step::hypercall(29, &[2, 0x4000_0200])
}

/// Every LR write that presents `intid`, as `(value)`.
fn lr_writes_of(m: &FakeMachine, intid: u32) -> Vec<u64> {
    m.lr_accesses()
        .into_iter()
        .filter_map(|(_, _, w)| w)
        .filter(|v| v & 0xffff_ffff == u64::from(intid) && v >> 62 != 0)
        .collect()
}

#[test]
fn routed_spi_is_injected_with_the_hw_bit_and_ended_by_the_guest() {
    let (sys, machine, hw, id) = system_with_routed_rtc();
    script(
        &machine,
        [
            // The device interrupts while the guest runs; the kick SGI
            // (hv's own) arrives with it.
            Step::irq_with(&[RTC, irq::KICK_SGI]),
            // The guest acknowledged and EOIed it: LR 0 is empty again.
            Step::hypercall(29, &[0]).with_lr(0, 0),
            poweroff(),
        ],
    );
    let delivered = crate::irq::delivered();
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
    assert!(crate::irq::delivered() > delivered, "counted");
    let m = machine.lock();
    let ends = m.irq_ends();
    assert!(
        ends.contains(&(0, RTC, false)),
        "priority drop only: {ends:?}"
    );
    assert!(!ends.contains(&(0, RTC, true)), "hv never deactivates it");
    assert!(
        ends.contains(&(0, irq::KICK_SGI, true)),
        "hv's own: EOIR + DIR"
    );
    let lrs = lr_writes_of(&m, RTC);
    assert_eq!(lrs.len(), 1, "presented once: {lrs:x?}");
    assert_ne!(lrs[0] & bits::HW, 0);
    assert_eq!((lrs[0] >> 32) & 0x1fff, u64::from(RTC));
    assert_eq!(lrs[0] >> 62, 1, "pending");
    // Configured at route time, enabled by the guest, released when the
    // domain ended (disabled, not pending, deactivated).
    let ops = m.dist_ops();
    assert_eq!(
        ops[0],
        DistOp::Configure {
            intid: RTC,
            level: true,
            priority: 0xa0,
            target: 0
        }
    );
    assert_eq!(ops[1], DistOp::Enable(RTC));
    assert_eq!(
        &ops[2..],
        [
            DistOp::Disable(RTC),
            DistOp::SetPending(RTC, false),
            DistOp::Deactivate(RTC)
        ]
    );
    drop(m);
    assert_eq!(hw.owner(RTC), None, "released with d{id}");
    assert!(sys.shared.lock().entry(id).is_none());
}

#[test]
fn routed_spi_wakes_a_blocked_vcpu_from_the_idle_loop() {
    let (sys, machine, _hw, _id) = system_with_routed_rtc();
    script(
        &machine,
        [
            // WFI with the timer off and the GIC on: the vCPU blocks; the
            // SPI becomes pending physically meanwhile (the idle pCPU
            // acknowledges it after its WFI).
            Step::wfx(false)
                .with_el1(El1Reg::CntvCtlEl0, 0)
                .raising(&[RTC]),
            Step::hypercall(29, &[0]).with_lr(0, 0),
            poweroff(),
        ],
    );
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
    let m = machine.lock();
    assert!(m.wfis >= 1, "the pCPU idled");
    assert!(m.irq_ends().contains(&(0, RTC, false)));
    let lrs = lr_writes_of(&m, RTC);
    assert_eq!(lrs.len(), 1, "woken and presented");
    assert_ne!(lrs[0] & bits::HW, 0);
}

#[test]
fn an_spi_nobody_owns_is_ended_by_hv() {
    let (sys, machine, hw, _id) = system_with_routed_rtc();
    hw.reserve_for_hv(40).unwrap();
    assert_eq!(hw.owner(40), Some(Owner::Hv));
    script(&machine, [Step::irq_with(&[41]), poweroff()]);
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
    let m = machine.lock();
    assert!(m.irq_ends().contains(&(0, 41, true)), "EOIR + DIR");
    assert!(lr_writes_of(&m, 41).is_empty());
}

/// [`system_with_routed_rtc`] under the targeted policy, its image holding
/// three `struct xen_remove_from_physmap` (DOMID_SELF, a RAM page each) at
/// +0x300.
fn targeted_system_with_routed_rtc() -> (System<FakeMem>, SharedMachine) {
    let policy = Policy::Targeted {
        has_range: true,
        nested: false,
    };
    let sys = crate::testutil::system(policy, Box::new(Quiet), 2);
    let machine = FakeMachine::new_shared();
    let hw = Arc::new(HwIrqs::new(Arc::new(FakeDist::new(machine.clone(), 288))));
    let mut k = [0u8; 0x1000];
    for i in 0..3u64 {
        let o = 0x300 + 16 * i as usize;
        k[o..o + 2].copy_from_slice(&0x7ff0u16.to_le_bytes());
        k[o + 8..o + 16].copy_from_slice(&((RAM0 >> 12) + 0x100 + i).to_le_bytes());
    }
    let id = crate::testutil::add_image(&sys, DomainSpec::domu(2 << 20), &k).unwrap();
    {
        let mut sh = sys.shared.lock();
        let d = sh.entry(id).unwrap();
        d.vgic = Arc::new(crate::vgic::Vgic::with_hw(id, 1, HOST, Some(hw)));
        d.vgic.route_hw_spi(RTC, true).unwrap();
    }
    (sys, machine)
}

const RAM0: u64 = crate::domain::GUEST_RAM0_BASE;

fn remove(i: u64) -> Step {
    Step::hypercall(12, &[15, RAM0 + 0x300 + 16 * i])
}

/// The stage-2 IPA TLBIs (and VMALLE1IS) d1 got between its entries
/// `from` and `to` (entry 0 is the first), i.e. during the exits in between.
fn tlbis_between(m: &FakeMachine, from: usize, to: usize) -> usize {
    let mut n = 0usize;
    let mut out = 0;
    for e in &m.events {
        match e {
            Event::Enter { vmid, .. } if vmid.0 == 1 => {
                n += 1;
                if n > to {
                    break;
                }
            }
            Event::Tlb { op, .. } if n > from => {
                if matches!(
                    op,
                    TlbOp::Ipas2e1is { .. } | TlbOp::Ripas2e1is { .. } | TlbOp::Vmalle1is { .. }
                ) {
                    out += 1;
                }
            }
            _ => {}
        }
    }
    out
}

/// The coalescing window across physical-interrupt exits: after two
/// single removes, IRQ exits that give the caller nothing new (hv's own
/// timer, a kick, its own virtual timer firing) keep the invalidation
/// pending; one after which it takes another interrupt (a device's SPI)
/// runs it before the guest resumes; so does the 16th IRQ exit in a row.
#[test]
fn irq_exits_keep_the_window_unless_the_caller_gets_an_interrupt() {
    let vtimer = || {
        Step::irq_with(&[irq::VTIMER]).with_el1(El1Reg::CntvCtlEl0, 0b101) // ENABLE | ISTATUS
    };
    // Entries: 0 boot, 1..=5 Linux's GIC set-up, 6 and 7 after the removes.
    for (case, irq_steps, closes_at) in [
        // hv's timer, a kick with nothing for this vCPU, its own tick.
        (
            "own",
            vec![
                Step::irq_with(&[irq::HYP_TIMER]),
                Step::irq_with(&[irq::KICK_SGI]),
                vtimer(),
            ],
            None,
        ),
        // Its tick, then the RTC's SPI (routed to it).
        ("spi", vec![vtimer(), Step::irq_with(&[RTC])], Some(1)),
        // 16 hv timer IRQs in a row.
        (
            "bound",
            (0..pv_tlb::MAX_IRQ_EXITS_KEPT)
                .map(|_| Step::irq_with(&[irq::HYP_TIMER]))
                .collect(),
            Some(pv_tlb::MAX_IRQ_EXITS_KEPT as usize - 1),
        ),
    ] {
        let (sys, machine) = targeted_system_with_routed_rtc();
        let n = irq_steps.len();
        let mut steps = vec![remove(0), remove(1)];
        steps.extend(irq_steps);
        // A console write: any hypercall but a remove closes the window.
        steps.push(Step::hypercall(18, &[0, 1, RAM0 + 0x100]));
        steps.push(poweroff());
        script(&machine, steps);
        let mut arch = FakeArch::new(0, machine.clone());
        assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff, "{case}");
        let m = machine.lock();
        assert_eq!(tlbis_between(&m, 6, 7), 0, "{case}: the second remove");
        for k in 0..n {
            let got = tlbis_between(&m, 7 + k, 8 + k);
            let want = if closes_at == Some(k) { 2 } else { 0 };
            assert_eq!(got, want, "{case}: IRQ exit {k}");
        }
        let at_write = tlbis_between(&m, 7 + n, 8 + n);
        let want = if closes_at.is_none() { 2 } else { 0 };
        assert_eq!(at_write, want, "{case}: the console write");
    }
}

/// hv's EL2 timer is the EL2 virtual timer (PPI 28): its interrupt is hv's
/// own (disarmed, EOIR + DIR, never shown to a guest). With the EL2
/// physical timer (PPI 26) as hv's timer, 28 was an unexpected interrupt
/// and nothing disarmed the level-sensitive timer
/// (results/2026-12-06-nested-boot: nested, PPI 26's timer cost an IRQ exit
/// per hv instruction).
#[test]
fn the_el2_virtual_timer_is_hvs_timer() {
    assert_eq!(irq::HYP_TIMER, 28);
    let (sys, machine, _hw, _id) = system_with_routed_rtc();
    script(&machine, [Step::irq_with(&[28]), poweroff()]);
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
    let m = machine.lock();
    assert!(
        m.events.contains(&Event::HvTimer {
            cpu: 0,
            deadline: None
        }),
        "the timer interrupt disarms hv's timer"
    );
    assert!(m.irq_ends().contains(&(0, 28, true)), "EOIR + DIR");
    assert!(lr_writes_of(&m, 28).is_empty());
}
