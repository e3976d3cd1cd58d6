//! The scheduled run loop against the fake arch: SMP guests on one pCPU,
//! vCPU-switch TLB work per policy, lazy resume after idle, vGIC MMIO and
//! SGIs through the run loop, the virtual timer waking a blocked vCPU.

use super::super::*;
use crate::arch::fake::{Event, FakeArch, FakeMachine, FakeMem, SharedMachine, Step};
use crate::arch::{irq, El1Reg};
use crate::vgic::{GICD_BASE, GICR_BASE, GICR_STRIDE};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use memops::FrameTable;
use pv_tlb::TlbOpKind;
use std::format;

const ENTRY1: u64 = 0x4000_0800;

#[derive(Clone, Default)]
struct Lines(alloc::sync::Arc<Mutex<Vec<String>>>);

impl ConsoleSink for Lines {
    fn guest_line(&mut self, domid: u16, line: &str) {
        self.0.lock().push(format!("(d{domid}) {line}"));
    }
    fn hv_line(&mut self, args: core::fmt::Arguments<'_>) {
        self.0.lock().push(format!("hv: {args}"));
    }
}

fn system(policy: Policy) -> (System<FakeMem>, Lines, SharedMachine) {
    let mem = FakeMem::new(0x8000_0000, 0x400_0000);
    let pool = FrameTable::new(PhysAddr(0x8000_0000), 0x3000);
    let lines = Lines::default();
    let sys = System::new(mem, pool, policy, Box::new(lines.clone()), 2, 40);
    (sys, lines, FakeMachine::new_shared())
}

fn add(sys: &System<FakeMem>, vcpus: u32) -> DomId {
    let img = vec![0u8; 0x1000];
    let spec = DomainSpec {
        vcpus,
        ..DomainSpec::domu(2 << 20)
    };
    sys.add_domain(
        spec,
        BootImage {
            size: img.len() as u64,
            read: &mut |_m: &FakeMem, off, buf: &mut [u8]| {
                buf.copy_from_slice(&img[off as usize..off as usize + buf.len()]);
            },
        },
        None,
    )
    .unwrap()
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
