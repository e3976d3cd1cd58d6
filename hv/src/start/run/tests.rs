//! The scheduled run loop against the fake arch: SMP guests on one pCPU,
//! vCPU-switch TLB work per policy, lazy resume after idle, vGIC MMIO and
//! SGIs through the run loop, the virtual timer waking a blocked vCPU.

use super::super::*;
use crate::arch::fake::{Event, FakeArch, FakeMachine, FakeMem, SharedMachine, Step};
use crate::arch::{irq, El1Reg};
use crate::testutil::Lines;
use crate::vgic::{GICD_BASE, GICR_BASE, GICR_STRIDE};
use alloc::vec;
use alloc::vec::Vec;
use pv_tlb::TlbOpKind;

const ENTRY1: u64 = 0x4000_0800;

fn system(policy: Policy) -> (System<FakeMem>, Lines, SharedMachine) {
    let lines = Lines::default();
    let sys = crate::testutil::system(policy, Box::new(lines.clone()), 2);
    (sys, lines, FakeMachine::new_shared())
}

fn add(sys: &System<FakeMem>, vcpus: u32) -> DomId {
    let img = vec![0u8; 0x1000];
    let spec = DomainSpec {
        vcpus,
        ..DomainSpec::domu(2 << 20)
    };
    crate::testutil::add_image(sys, spec, &img).unwrap()
}

fn yield_() -> Step {
    Step::hypercall(29, &[0])
}

fn poweroff() -> Step {
    // SCHEDOP_shutdown with a reason word (0 = poweroff) at RAM base + 0x200
    // (the image is all zeros).
    Step::hypercall(29, &[2, 0x4000_0200])
}

fn cpu_on(target: u64, entry: u64, ctx: u64) -> Step {
    Step::hvc(0, 0, &[0xc400_0003, target, entry, ctx])
}

/// A 32-bit store of `val` to `ipa` through x0 (ISV set, SRT = 0).
fn mmio_write(ipa: u64, val: u64) -> Step {
    let mut s = Step::data_abort(ipa, true);
    s.set_x.push((0, val));
    s
}

/// `MSR ICC_SGI1R_EL1, x1` (ISS: Op0 3, Op2 5, Op1 0, CRn 12, Rt 1, CRm 11, write).
fn sgi1r(val: u64) -> Step {
    let iss = (3 << 20) | (5 << 17) | (12 << 10) | (1 << 5) | (11 << 1);
    let mut s = Step::sysreg(iss);
    s.set_x.push((1, val));
    s
}

fn tlb_counts(m: &FakeMachine) -> (usize, usize, usize) {
    let ops = m.tlb_ops();
    let n = |k: TlbOpKind| ops.iter().filter(|o| o.kind() == Some(k)).count();
    (
        n(TlbOpKind::Vmalle1),
        n(TlbOpKind::IcIallu),
        n(TlbOpKind::Vmalls12e1),
    )
}

#[test]
fn two_vcpus_of_one_domain_on_one_pcpu_per_policy() {
    let targeted = Policy::Targeted {
        has_range: true,
        nested: false,
    };
    for policy in [targeted, Policy::XenCompat] {
        let (sys, lines, machine) = system(policy);
        add(&sys, 2);
        {
            let mut m = machine.lock();
            m.script(
                1,
                0,
                [
                    cpu_on(1, ENTRY1, 0x77),
                    cpu_on(1, ENTRY1, 0),
                    cpu_on(2, ENTRY1, 0),
                    yield_(),
                    yield_(),
                    yield_(),
                    poweroff(),
                ],
            );
            m.script(1, 1, [yield_(), yield_(), Step::smc(&[0x8400_0002])]);
        }
        let mut arch = FakeArch::new(0, machine.clone());
        assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
        let m = machine.lock();
        let e0 = m.entries(1, 0);
        assert_eq!(e0[1].x[0], 0, "CPU_ON succeeds");
        assert_eq!(e0[2].x[0], crate::psci::ret::ALREADY_ON);
        assert_eq!(
            e0[3].x[0],
            crate::psci::ret::INVALID_PARAMETERS,
            "only 2 vCPUs"
        );
        let e1 = m.entries(1, 1);
        assert_eq!(
            (e1[0].pc, e1[0].x[0]),
            (ENTRY1, 0x77),
            "entry and context_id"
        );
        assert_eq!(e1[0].pstate, 0x3c5, "EL1h, DAIF masked");
        // v0 v1 v0 v1 v0 v1(CPU_OFF) v0: 7 loads, 6 of them another vCPU of VMID 1.
        let stats = sys.runq.lock().sched.stats;
        assert_eq!(stats.same_vmid_switches, 6);
        assert_eq!(
            m.events
                .iter()
                .filter(|e| matches!(e, Event::Load { .. }))
                .count(),
            7
        );
        let (vmalle1, ic, vmalls12e1) = tlb_counts(&m);
        match policy {
            Policy::XenCompat => assert_eq!((vmalle1, ic, vmalls12e1), (0, 0, 6)),
            _ => assert_eq!((vmalle1, ic, vmalls12e1), (6, 6, 0), "no stage-2 flush"),
        }
        assert!(lines
            .0
            .lock()
            .iter()
            .any(|l| l.starts_with("hv: sched: switches=7 same_vmid_switches=6")));
    }
}

#[test]
fn vtimer_wakes_a_blocked_vcpu_without_reloading_it() {
    let (sys, _lines, machine) = system(Policy::XenCompat);
    add(&sys, 1);
    let sgi_base = GICR_BASE + 0x1_0000;
    machine.lock().script(
        1,
        0,
        [
            mmio_write(GICD_BASE, 0x12),
            mmio_write(GICR_BASE + 0x14, 0),
            mmio_write(sgi_base + 0x80, 0xffff_ffff),
            mmio_write(sgi_base + 0x100, 1 << 27),
            // WFI with the timer enabled and its condition met: the physical
            // PPI 27 is pending when hv looks.
            Step::wfx(false)
                .with_el1(El1Reg::CntvCtlEl0, 0b101)
                .raising(&[irq::VTIMER]),
            poweroff(),
        ],
    );
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
    let m = machine.lock();
    let loads = m
        .events
        .iter()
        .filter(|e| matches!(e, Event::Load { .. }))
        .count();
    assert_eq!(loads, 1, "the vCPU came back after idle without a reload");
    assert!(
        m.el1_writes().contains(&(El1Reg::CntvCtlEl0, 0b111)),
        "timer masked on the guest's behalf"
    );
    assert!(m.events.contains(&Event::Eoi {
        cpu: 0,
        intid: irq::VTIMER
    }));
    let lr27 = m
        .lr_accesses()
        .iter()
        .any(|(_, n, v)| *n == 0 && v.is_some_and(|v| v & 0xffff_ffff == 27 && v >> 62 == 1));
    assert!(lr27, "virtual PPI 27 presented pending in LR 0");
}

#[test]
fn sgi_from_one_vcpu_reaches_the_other_through_its_lrs() {
    let (sys, _lines, machine) = system(Policy::XenCompat);
    add(&sys, 2);
    let sgi1 = GICR_BASE + GICR_STRIDE + 0x1_0000;
    {
        let mut m = machine.lock();
        m.script(
            1,
            0,
            [
                mmio_write(GICD_BASE, 0x12),
                mmio_write(GICR_BASE + GICR_STRIDE + 0x14, 0),
                mmio_write(sgi1 + 0x80, 0xffff_ffff),
                mmio_write(sgi1 + 0x100, 1 << 3),
                cpu_on(1, ENTRY1, 0),
                sgi1r((3 << 24) | 0b10),
                yield_(),
                poweroff(),
            ],
        );
        m.script(1, 1, [Step::smc(&[0x8400_0002])]);
    }
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
    let m = machine.lock();
    let e0 = m.entries(1, 0);
    assert_eq!(e0[6].pc, e0[5].pc + 4, "the trapped MSR is stepped over");
    // vCPU 1's only entry presents SGI 3 (pending, Group 1) in LR 0.
    let enter1 = m
        .events
        .iter()
        .position(|e| matches!(e, Event::Enter { vcpu: 1, .. }))
        .unwrap();
    let lr = m.events[..enter1].iter().rev().find_map(|e| match e {
        Event::LrWrite { n: 0, val, .. } => Some(*val),
        _ => None,
    });
    assert_eq!(lr, Some((1 << 62) | (1 << 60) | 3));
}

#[test]
fn vgic_reads_fill_the_register_and_accesses_without_syndrome_abort() {
    let (sys, _lines, machine) = system(Policy::XenCompat);
    add(&sys, 1);
    // A read of GICD_TYPER into x0, then a store without a valid syndrome.
    let mut no_isv = Step::data_abort(GICD_BASE + 0x100, true);
    no_isv.exit.esr &= !(1 << 24);
    machine.lock().script(
        1,
        0,
        [Step::data_abort(GICD_BASE + 4, false), no_isv, poweroff()],
    );
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
    let m = machine.lock();
    let e = m.entries(1, 0);
    assert_eq!(
        e[1].x[0] & 0x1f,
        2,
        "GICD_TYPER.ITLinesNumber for 96 INTIDs"
    );
    assert_eq!(e[1].pc, e[0].pc + 4);
    // The syndrome-less access: a data abort (EC 0x25, external abort,
    // write) taken at VBAR_EL1 + 0x200, with FAR_EL1 set.
    assert_eq!(e[2].pc, 0x200);
    let w = m.el1_writes();
    let esr = w
        .iter()
        .find(|(r, _)| *r == El1Reg::EsrEl1)
        .map(|(_, v)| *v)
        .unwrap();
    assert_eq!(esr >> 26, 0x25);
    assert_eq!(esr & 0x3f, 0x10);
    assert_eq!((esr >> 6) & 1, 1, "WnR");
    assert!(w.iter().any(|(r, _)| *r == El1Reg::FarEl1));
}

/// WFI blocks (the pCPU idles until the virtual timer wakes the vCPU); WFIT
/// (FEAT_WFxT, ESR_EL2.ISS.TI = 0b10) only yields: a WFx with a timeout may
/// complete early, and blocking it would need its deadline.
#[test]
fn wfi_blocks_but_wfit_yields() {
    for with_timeout in [false, true] {
        let (sys, _lines, machine) = system(Policy::XenCompat);
        add(&sys, 1);
        let mut wfx = Step::wfx(false)
            .with_el1(El1Reg::CntvCtlEl0, 0b101)
            .raising(&[irq::VTIMER]);
        if with_timeout {
            wfx.exit.esr |= 0b10;
        }
        machine.lock().script(
            1,
            0,
            [
                mmio_write(GICD_BASE, 0x12),
                mmio_write(GICR_BASE + 0x1_0000 + 0x80, 0xffff_ffff),
                mmio_write(GICR_BASE + 0x1_0000 + 0x100, 1 << 27),
                wfx,
                poweroff(),
            ],
        );
        let mut arch = FakeArch::new(0, machine.clone());
        assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
        let m = machine.lock();
        let e = m.entries(1, 0);
        assert_eq!(e[4].pc, e[3].pc + 4, "stepped over");
        if with_timeout {
            assert_eq!(m.wfis, 0, "WFIT never idles the pCPU");
        } else {
            assert!(m.wfis >= 1, "WFI blocked until the timer fired");
        }
    }
}

/// GIC on for vCPU `n`'s redistributor: distributor Group 1 + ARE, the
/// redistributor awake, SGIs/PPIs Group 1, and `enable` set in ISENABLER0.
fn gic_on(n: u64, enable: u32) -> [Step; 4] {
    let rd = GICR_BASE + n * GICR_STRIDE;
    [
        mmio_write(GICD_BASE, 0x12),
        mmio_write(rd + 0x14, 0),
        mmio_write(rd + 0x1_0000 + 0x80, 0xffff_ffff),
        mmio_write(rd + 0x1_0000 + 0x100, u64::from(enable)),
    ]
}

fn psci_version() -> Step {
    Step::hvc(0, 0, &[0x8400_0000])
}

fn cpu_off() -> Step {
    Step::smc(&[0x8400_0002])
}

/// Issue 9, finding 11: Linux's `cpu_park_loop` (`WFE; WFI` with DAIF set)
/// on a vCPU with an interrupt pending that it never takes: each WFI
/// completes at once. Before, hv resumed the vCPU straight away, so it never
/// left its pCPU and the other vCPU (the one about to power off) never ran
/// again. Now such a WFI is a scheduling point (Xen's
/// `vcpu_block_unless_event_pending` also goes through the scheduler).
#[test]
fn wfi_with_a_pending_masked_interrupt_lets_the_other_vcpu_run() {
    let (sys, _lines, machine) = system(Policy::XenCompat);
    add(&sys, 2);
    {
        let mut m = machine.lock();
        m.script(1, 0, gic_on(0, 1 << 3));
        m.script(
            1,
            0,
            [
                cpu_on(1, ENTRY1, 0),
                // SGI 3 to itself: pending, delivered in an LR, never taken.
                sgi1r((3 << 24) | 0b01),
                Step::wfx(false),
                Step::wfx(false),
                Step::wfx(false),
                poweroff(),
            ],
        );
        m.script(1, 1, [cpu_off()]);
    }
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
    let m = machine.lock();
    let enters: Vec<u8> = m
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Enter { vcpu, .. } => Some(*vcpu),
            _ => None,
        })
        .collect();
    let v1 = enters.iter().position(|v| *v == 1);
    assert!(
        v1.is_some_and(|i| i < enters.len() - 1),
        "vCPU 1 ran while vCPU 0 spun on WFI: {enters:?}"
    );
    assert_eq!(m.remaining(1, 0), 0);
    assert_eq!(m.remaining(1, 1), 0);
}

/// Issue 9, finding 11: a vCPU that never exits on its own (a guest loop
/// with interrupts masked) must not keep a blocked vCPU's virtual timer from
/// firing: while it runs, hv's timer is armed for the earliest deadline of a
/// blocked, parked vCPU (before: only for the slice end, which is not armed
/// when nobody is queued, so the blocked vCPU slept for ever).
#[test]
fn a_running_vcpu_leaves_the_timer_armed_for_a_blocked_one() {
    // After 7 guest entries (the fake counter moves 1000 per entry): vCPU 0
    // is back on the pCPU by then, and its next exit is past it.
    const DEADLINE: u64 = 7_500;
    let (sys, _lines, machine) = system(Policy::XenCompat);
    add(&sys, 2);
    {
        let mut m = machine.lock();
        m.script(
            1,
            0,
            [
                cpu_on(1, ENTRY1, 0),
                yield_(),
                // Runs alone now: the next exit is hv's timer firing.
                Step::irq_with(&[irq::HYP_TIMER]),
                yield_(),
                poweroff(),
            ],
        );
        m.script(1, 1, gic_on(1, 1 << 27));
        m.script(
            1,
            1,
            [
                Step::wfx(false)
                    .with_el1(El1Reg::CntvCvalEl0, DEADLINE)
                    .with_el1(El1Reg::CntvCtlEl0, 0b001),
                cpu_off(),
            ],
        );
    }
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
    let m = machine.lock();
    let enters: Vec<(usize, u8)> = m
        .events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::Enter { vcpu, .. } => Some((i, *vcpu)),
            _ => None,
        })
        .collect();
    let order: Vec<u8> = enters.iter().map(|(_, v)| *v).collect();
    // v0: CPU_ON, yield; v1: GIC on (4), WFI; v0: the timer IRQ, yield;
    // v1 (woken by its timer): CPU_OFF; v0: power-off.
    assert_eq!(order, [0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 0]);
    // vCPU 0's entry after vCPU 1 blocked: hv's timer armed for vCPU 1's
    // deadline (before: disarmed, as nobody was queued).
    let (at, _) = enters[7];
    let armed = m.events[..at].iter().rev().find_map(|e| match e {
        Event::HvTimer { deadline, .. } => Some(*deadline),
        _ => None,
    });
    assert_eq!(
        armed,
        Some(Some(DEADLINE)),
        "hv's timer armed for the blocked vCPU"
    );
    assert!(m.events.contains(&Event::Eoi {
        cpu: 0,
        intid: irq::HYP_TIMER
    }));
}

/// Issue 9, finding 9: PSCI CPU_ON queues the target for an idle pCPU and
/// kicks it before the caller runs on (a caller that polls for the new vCPU
/// without trapping never gives hv another chance). Before, the kick was
/// only requested, and sent when the caller's pCPU next went through its loop.
#[test]
fn cpu_on_kicks_an_idle_pcpu_before_the_caller_runs_on() {
    let (sys, _lines, machine) = system(Policy::XenCompat);
    {
        // pCPU 1 has found nothing to do and sleeps.
        let mut rq = sys.runq.lock();
        rq.sched.ensure_cpu(1);
        assert!(matches!(
            rq.sched.next(1, 0),
            crate::sched::Decision::Idle { .. }
        ));
    }
    add(&sys, 2);
    {
        let mut m = machine.lock();
        m.script(
            1,
            0,
            [
                cpu_on(1, ENTRY1, 0),
                psci_version(),
                psci_version(),
                cpu_off(),
            ],
        );
        m.script(1, 1, [poweroff()]);
    }
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
    let m = machine.lock();
    let v0_entries: Vec<usize> = m
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Enter { vcpu: 0, .. }))
        .map(|(i, _)| i)
        .collect();
    let kicks: Vec<usize> = m
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| **e == Event::Kick { cpu: 0, to: 1 })
        .map(|(i, _)| i)
        .collect();
    assert!(
        kicks
            .iter()
            .any(|&k| k > v0_entries[0] && k < v0_entries[1]),
        "kicks at events {kicks:?}, the caller's entries at {v0_entries:?}"
    );
    assert_eq!(m.entries(1, 0)[1].x[0], 0, "CPU_ON succeeded");
    assert_eq!(m.entries(1, 1).len(), 1, "vCPU 1 ran");
}

/// Issue 9, finding 11: PSCI SYSTEM_OFF from one vCPU ends the domain at
/// once, as Xen's `domain_shutdown` pauses every vCPU: the other vCPUs are
/// taken out of the scheduler wherever they are parked (blocked or queued)
/// and dropped without being loaded and run again (before, each had to be
/// woken, picked, loaded and only then noticed its domain was ending).
#[test]
fn system_off_drops_parked_vcpus_without_running_them() {
    let (sys, lines, machine) = system(Policy::XenCompat);
    add(&sys, 3);
    {
        let mut m = machine.lock();
        m.script(
            1,
            0,
            [
                cpu_on(1, ENTRY1, 0),
                cpu_on(2, ENTRY1, 0),
                yield_(),
                Step::smc(&[0x8400_0008]),
            ],
        );
        // vCPU 1 blocks (GIC on, nothing pending); vCPU 2 yields (queued).
        m.script(1, 1, gic_on(1, 1 << 3));
        m.script(1, 1, [Step::wfx(false)]);
        m.script(1, 2, [yield_()]);
    }
    let mut arch = FakeArch::new(0, machine.clone());
    assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
    let m = machine.lock();
    let off = m
        .events
        .iter()
        .rposition(|e| matches!(e, Event::Enter { vcpu: 0, .. }))
        .unwrap()
        + 1;
    assert!(
        !m.events[off..]
            .iter()
            .any(|e| matches!(e, Event::Load { .. } | Event::Enter { .. })),
        "nothing loaded or entered after SYSTEM_OFF: {:?}",
        &m.events[off..]
    );
    assert!(lines
        .0
        .lock()
        .iter()
        .any(|l| l == "hv: d1 ended (PSCI SYSTEM_OFF)"));
    assert_eq!(sys.runq.lock().sched.keys().count(), 0);
}
