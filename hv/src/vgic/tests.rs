//! vGIC register semantics and the list-register state machine against the
//! fake arch (2 list registers, every LR access recorded).

use super::lr::{bits, HCR_EN, HCR_UIE};
use super::mmio::{in_range, BadAccess, MmioAccess};
use super::*;
use crate::arch::fake::{FakeArch, FakeMachine};
use crate::arch::Arch;
use alloc::vec;

fn rd(g: &Vgic, cpu: u32, ipa: u64) -> u64 {
    g.mmio(
        cpu,
        ipa,
        MmioAccess {
            write: false,
            size: 4,
            value: 0,
        },
    )
    .expect("in range")
    .expect("a valid access")
}

fn wr(g: &Vgic, cpu: u32, ipa: u64, value: u64) {
    g.mmio(
        cpu,
        ipa,
        MmioAccess {
            write: true,
            size: 4,
            value,
        },
    )
    .expect("in range")
    .expect("a valid access");
}

const SGI_BASE: u64 = GICR_BASE + 0x1_0000;

/// Linux's gic-v3 boot sequence: enable groups, wake the redistributor,
/// Group 1 and priorities for everything, enable some interrupts.
fn linux_like(g: &Vgic, cpus: u32) {
    wr(g, 0, GICD_BASE, 0x12); // ARE | EnableGrp1
    for c in 0..cpus {
        let rd_base = GICR_BASE + u64::from(c) * GICR_STRIDE;
        wr(g, c, rd_base + 0x14, 0);
        let sgi = rd_base + 0x1_0000;
        wr(g, c, sgi + 0x80, 0xffff_ffff);
        for r in 0..8 {
            wr(g, c, sgi + 0x400 + 4 * r, 0xa0a0_a0a0);
        }
    }
    wr(g, 0, GICD_BASE + 0x84, 0xffff_ffff);
    wr(g, 0, GICD_BASE + 0x88, 0xffff_ffff);
}

#[test]
fn distributor_id_registers() {
    let g = Vgic::new(1, 2);
    let typer = rd(&g, 0, GICD_BASE + 4);
    assert_eq!(typer & 0x1f, u64::from(NR_IRQS / 32 - 1), "ITLinesNumber");
    assert_eq!((typer >> 19) & 0x1f, 9, "IDbits");
    assert_eq!(rd(&g, 0, GICD_BASE + 0xffe8) >> 4 & 0xf, 3, "PIDR2.ArchRev");
    assert_eq!(rd(&g, 0, GICR_BASE + 0xffe8) >> 4 & 0xf, 3);
    // ARE and DS always set, groups off at reset.
    assert_eq!(rd(&g, 0, GICD_BASE), 0x50);
    wr(&g, 0, GICD_BASE, 0x13);
    assert_eq!(rd(&g, 0, GICD_BASE), 0x53);
    assert!(in_range(GICD_BASE) && in_range(GICR_BASE + 0x2_0000) && !in_range(0x4000_0000));
}

#[test]
fn redistributor_typer_last_and_affinity() {
    let g = Vgic::new(1, 3);
    for c in 0..3u64 {
        let base = GICR_BASE + c * GICR_STRIDE;
        let lo = rd(&g, 0, base + 8);
        let hi = rd(&g, 0, base + 0xc);
        assert_eq!(hi, c, "affinity of vCPU {c}");
        assert_eq!((lo >> 8) & 0xffff, c, "processor number");
        assert_eq!(
            (lo >> 4) & 1,
            u64::from(c == 2),
            "Last only on the final one"
        );
        let full = g
            .mmio(
                0,
                base + 8,
                MmioAccess {
                    write: false,
                    size: 8,
                    value: 0,
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(full, (c << 32) | lo);
    }
    // Beyond the last redistributor: RAZ.
    assert_eq!(rd(&g, 0, GICR_BASE + 3 * GICR_STRIDE + 8), 0);
    // WAKER: ChildrenAsleep follows ProcessorSleep.
    assert_eq!(rd(&g, 0, GICR_BASE + 0x14), 0b110);
    wr(&g, 0, GICR_BASE + 0x14, 0);
    assert_eq!(rd(&g, 0, GICR_BASE + 0x14), 0);
    assert_eq!(rd(&g, 0, GICR_BASE + GICR_STRIDE + 0x14), 0b110, "per vCPU");
}

#[test]
fn enable_pending_active_priority_config_route() {
    let g = Vgic::new(1, 2);
    // SPI 40: enable through ISENABLER1, read back through both views.
    wr(&g, 0, GICD_BASE + 0x104, 1 << 8);
    assert_eq!(rd(&g, 0, GICD_BASE + 0x104), 1 << 8);
    assert_eq!(rd(&g, 0, GICD_BASE + 0x184), 1 << 8);
    wr(&g, 0, GICD_BASE + 0x184, 1 << 8);
    assert_eq!(rd(&g, 0, GICD_BASE + 0x104), 0);
    // Pending through ISPENDR, cleared through ICPENDR.
    wr(&g, 0, GICD_BASE + 0x204, 1 << 8);
    assert!(g.is_pending(0, 40));
    wr(&g, 0, GICD_BASE + 0x284, 1 << 8);
    assert!(!g.is_pending(0, 40));
    // Active.
    wr(&g, 0, GICD_BASE + 0x304, 1 << 8);
    assert_eq!(rd(&g, 0, GICD_BASE + 0x384), 1 << 8);
    wr(&g, 0, GICD_BASE + 0x384, 1 << 8);
    assert_eq!(rd(&g, 0, GICD_BASE + 0x304), 0);
    // Priority: byte access, only 5 bits kept.
    let _ = g.mmio(
        0,
        GICD_BASE + 0x400 + 40,
        MmioAccess {
            write: true,
            size: 1,
            value: 0xff,
        },
    );
    assert_eq!(rd(&g, 0, GICD_BASE + 0x400 + 40), 0xf8);
    // ICFGR: SPI 40 edge.
    wr(&g, 0, GICD_BASE + 0xc08, 2 << (2 * 8));
    assert_eq!(rd(&g, 0, GICD_BASE + 0xc08), 2 << 16);
    // SGIs/PPIs are RAZ/WI in the distributor with ARE...
    wr(&g, 0, GICD_BASE + 0x100, 0xffff_ffff);
    assert_eq!(rd(&g, 0, GICD_BASE + 0x100), 0);
    // ... and banked per vCPU in the SGI_base frames.
    wr(&g, 1, SGI_BASE + GICR_STRIDE + 0x100, 1 << 27);
    assert_eq!(rd(&g, 0, SGI_BASE + GICR_STRIDE + 0x100), 1 << 27);
    assert_eq!(rd(&g, 0, SGI_BASE + 0x100), 0, "vCPU 0's PPI 27 untouched");
    assert_eq!(rd(&g, 0, SGI_BASE + 0xc00), 0xaaaa_aaaa, "SGIs are edge");
    // IROUTER: SPI 40 to vCPU 1; inject follows the route.
    let router = GICD_BASE + 0x6000 + 8 * 40;
    let _ = g.mmio(
        0,
        router,
        MmioAccess {
            write: true,
            size: 8,
            value: 1,
        },
    );
    assert_eq!(rd(&g, 0, router), 1);
    g.inject(0, 40).unwrap();
    assert_eq!(g.with_state(|s| s.spi_target(40)), 1);
    // Unknown registers: RAZ/WI (and warned about).
    assert_eq!(rd(&g, 0, GICD_BASE + 0x5000), 0);
    wr(&g, 0, GICD_BASE + 0x5000, 1);
    assert_eq!(rd(&g, 0, GICD_BASE + 0x5000), 0);
}

#[test]
fn inject_rejects_bad_ids() {
    let g = Vgic::new(1, 2);
    assert_eq!(g.inject(2, 31), Err(VgicError::BadVcpu(2)));
    assert_eq!(g.inject(0, NR_IRQS), Err(VgicError::BadIntid(NR_IRQS)));
    assert_eq!(g.inject(0, 1023), Err(VgicError::BadIntid(1023)));
    assert!(g.inject(1, PPI_EVTCHN).is_ok());
    assert!(g.is_pending(1, PPI_EVTCHN) && !g.is_pending(0, PPI_EVTCHN));
}

#[test]
fn deliverable_needs_enable_and_group() {
    let g = Vgic::new(1, 1);
    g.inject(0, PPI_EVTCHN).unwrap();
    assert!(!g.has_deliverable(0), "not enabled, group off");
    linux_like(&g, 1);
    assert!(!g.has_deliverable(0), "still not enabled");
    wr(&g, 0, SGI_BASE + 0x100, 1 << PPI_EVTCHN);
    assert!(g.has_deliverable(0));
}

#[test]
fn sgi_targets() {
    let g = Vgic::new(1, 3);
    // TargetList = {1, 2}, INTID 3, Aff1 = 0.
    assert_eq!(g.send_sgi(0, (3 << 24) | 0b110), 2);
    assert!(g.is_pending(1, 3) && g.is_pending(2, 3) && !g.is_pending(0, 3));
    // IRM: everyone but the sender.
    assert_eq!(g.send_sgi(1, (1 << 40) | (5 << 24)), 2);
    assert!(g.is_pending(0, 5) && g.is_pending(2, 5) && !g.is_pending(1, 5));
    // Aff1 = 1 matches no vCPU here.
    assert_eq!(g.send_sgi(0, (1 << 16) | 1), 0);
}

fn arch() -> FakeArch {
    FakeArch::new(0, FakeMachine::new_shared())
}

fn enabled(g: &Vgic, cpu: u32, intids: &[u32]) {
    for &i in intids {
        if i < 32 {
            let sgi = SGI_BASE + u64::from(cpu) * GICR_STRIDE;
            let cur = rd(g, cpu, sgi + 0x100);
            wr(g, cpu, sgi + 0x100, cur | (1 << i));
        } else {
            wr(
                g,
                cpu,
                GICD_BASE + 0x100 + 4 * u64::from(i / 32),
                1 << (i % 32),
            );
        }
    }
}

fn set_prio(g: &Vgic, cpu: u32, intid: u32, prio: u8) {
    let base = if intid < 32 {
        SGI_BASE + u64::from(cpu) * GICR_STRIDE
    } else {
        GICD_BASE
    };
    let _ = g.mmio(
        cpu,
        base + 0x400 + u64::from(intid),
        MmioAccess {
            write: true,
            size: 1,
            value: u64::from(prio),
        },
    );
}

fn lr_intid(lr: u64) -> u32 {
    (lr & 0xffff_ffff) as u32
}

fn clear_log(a: &FakeArch) {
    a.machine().lock().events.clear();
}

#[test]
fn two_lrs_fill_by_priority_and_overflow_arms_underflow() {
    let g = Vgic::new(1, 1);
    linux_like(&g, 1);
    enabled(&g, 0, &[1, 27, 31, 40]);
    set_prio(&g, 0, 27, 0x20);
    set_prio(&g, 0, 31, 0x80);
    set_prio(&g, 0, 40, 0x40);
    for i in [27, 31, 40] {
        g.inject(0, i).unwrap();
    }
    let mut a = arch();
    let waiting = g.flush_lrs(0, &mut a);
    assert_eq!(waiting, 1, "3 pending, 2 LRs");
    assert_eq!(lr_intid(a.lrs[0]), 27, "highest priority first");
    assert_eq!(lr_intid(a.lrs[1]), 40);
    assert_eq!(a.lrs[0] >> 62, 1, "pending");
    assert_eq!((a.lrs[0] >> 48) & 0xff, 0x20);
    assert_ne!(a.lrs[0] & bits::GROUP1, 0);
    assert_eq!(a.hcr, HCR_EN | HCR_UIE, "maintenance interrupt armed");
    // The guest acknowledges and deactivates 27 (LR 0 empties), 40 stays pending.
    a.lrs[0] = 0;
    clear_log(&a);
    g.sync_lrs(0, &mut a);
    // Only LR 1 is read: ELRSR says LR 0 is empty.
    assert_eq!(a.machine().lock().lr_accesses(), vec![(0, 1, None)]);
    assert!(!g.is_pending(0, 27));
    assert!(g.is_pending(0, 40));
    assert_eq!(a.hcr, HCR_EN, "maintenance interrupt disarmed in hv");
    // Refill: 40 and 31 now fit.
    assert_eq!(g.flush_lrs(0, &mut a), 0);
    assert_eq!(lr_intid(a.lrs[0]), 40);
    assert_eq!(lr_intid(a.lrs[1]), 31);
    assert_eq!(a.hcr, HCR_EN);
}

#[test]
fn active_before_pending_regardless_of_priority() {
    let g = Vgic::new(1, 1);
    linux_like(&g, 1);
    enabled(&g, 0, &[27, 31, 33]);
    set_prio(&g, 0, 27, 0x10);
    set_prio(&g, 0, 31, 0x10);
    set_prio(&g, 0, 33, 0xf0);
    g.inject(0, 33).unwrap();
    let mut a = arch();
    g.flush_lrs(0, &mut a);
    // The guest acknowledges 33 (active, low priority), then 27 and 31 arrive.
    a.lrs[0] = (a.lrs[0] & !(3 << 62)) | bits::ACTIVE;
    g.sync_lrs(0, &mut a);
    g.inject(0, 27).unwrap();
    g.inject(0, 31).unwrap();
    let list = g.with_state(|s| lr::ordered(s, 0));
    assert_eq!(list, vec![33, 27, 31]);
    assert_eq!(g.flush_lrs(0, &mut a), 1);
    assert_eq!(lr_intid(a.lrs[0]), 33);
    assert_eq!(a.lrs[0] >> 62, 2, "still active");
    assert_eq!(lr_intid(a.lrs[1]), 27);
}

#[test]
fn only_lrs_in_use_are_touched() {
    let g = Vgic::new(1, 1);
    linux_like(&g, 1);
    enabled(&g, 0, &[31]);
    let mut a = arch();
    // Nothing pending: entry writes no LR, exit reads nothing (not even ELRSR).
    clear_log(&a);
    g.flush_lrs(0, &mut a);
    g.sync_lrs(0, &mut a);
    assert!(a.machine().lock().lr_accesses().is_empty());
    assert!(!a
        .machine()
        .lock()
        .events
        .iter()
        .any(|e| matches!(e, crate::arch::fake::Event::IchElrsr { .. })));
    // One pending: LR 0 written, LR 1 never touched.
    g.inject(0, 31).unwrap();
    clear_log(&a);
    g.flush_lrs(0, &mut a);
    g.sync_lrs(0, &mut a);
    let acc = a.machine().lock().lr_accesses();
    assert_eq!(acc.len(), 2, "{acc:?}");
    assert!(acc.iter().all(|(_, n, _)| *n == 0), "{acc:?}");
    // The guest did not take it yet: it is still pending after the exit.
    assert!(g.is_pending(0, 31));
    // Taken and finished by the guest: next exit reads no LR at all.
    clear_log(&a);
    g.flush_lrs(0, &mut a);
    a.lrs[0] = 0;
    g.sync_lrs(0, &mut a);
    let acc = a.machine().lock().lr_accesses();
    assert_eq!(acc.iter().filter(|(_, _, v)| v.is_none()).count(), 0);
    assert!(!g.is_pending(0, 31));
    // Next entry has nothing: the stale LR 0 is cleared once, then left alone.
    clear_log(&a);
    g.flush_lrs(0, &mut a);
    g.flush_lrs(0, &mut a);
    assert_eq!(a.machine().lock().lr_accesses(), vec![(0, 0, Some(0))]);
}

#[test]
fn edge_reinjected_while_in_lr_is_kept() {
    let g = Vgic::new(1, 1);
    linux_like(&g, 1);
    enabled(&g, 0, &[31]);
    let mut a = arch();
    g.inject(0, 31).unwrap();
    g.flush_lrs(0, &mut a);
    // The guest acknowledged it (active); meanwhile it was injected again.
    a.lrs[0] = (a.lrs[0] & !(3 << 62)) | bits::ACTIVE;
    g.inject(0, 31).unwrap();
    g.sync_lrs(0, &mut a);
    g.flush_lrs(0, &mut a);
    assert_eq!(a.lrs[0] >> 62, 3, "active and pending again");
}

#[test]
fn level_line_follows_input() {
    let g = Vgic::new(1, 1);
    linux_like(&g, 1);
    enabled(&g, 0, &[27]);
    let mut a = arch();
    g.set_level(0, 27, true).unwrap();
    g.flush_lrs(0, &mut a);
    assert_eq!(a.lrs[0] >> 62, 1);
    // Guest acknowledges; the line is still high; then it drops and the guest EOIs.
    a.lrs[0] = (a.lrs[0] & !(3 << 62)) | bits::ACTIVE;
    g.sync_lrs(0, &mut a);
    g.set_level(0, 27, false).unwrap();
    g.flush_lrs(0, &mut a);
    assert_eq!(a.lrs[0] >> 62, 2, "active only: the line dropped");
    a.lrs[0] = 0;
    g.sync_lrs(0, &mut a);
    assert!(!g.has_deliverable(0));
}

#[test]
fn put_saves_vmcr_and_clears_used_lrs() {
    let g = Vgic::new(1, 2);
    linux_like(&g, 2);
    enabled(&g, 0, &[31]);
    let mut a = arch();
    g.load_cpu(0, 0, &mut a);
    g.inject(0, 31).unwrap();
    g.flush_lrs(0, &mut a);
    a.vmcr = 0xf000_0001; // the guest set its PMR and group enable
    g.sync_lrs(0, &mut a);
    clear_log(&a);
    g.put_cpu(0, &mut a);
    let acc = a.machine().lock().lr_accesses();
    assert_eq!(acc, vec![(0, 0, Some(0))], "only the used LR is cleared");
    g.load_cpu(1, 0, &mut a);
    assert_eq!(a.vmcr, 0, "vCPU 1's own VMCR");
    g.put_cpu(1, &mut a);
    g.load_cpu(0, 0, &mut a);
    assert_eq!(a.vmcr, 0xf000_0001, "vCPU 0's VMCR restored");
    assert_eq!(g.with_state(|s| s.cpus[0].resident), Some(0));
}

#[test]
fn fake_has_two_lrs() {
    let a = arch();
    assert_eq!(lr::lr_count(a.ich_vtr()), 2);
    assert_eq!(lr::apr_count(a.ich_vtr()), 1);
}

/// Every access a guest can make to the vGIC's ranges: each byte offset of
/// the distributor and of the redistributors (two present, one absent
/// beyond), each width, reads and writes of all-ones and a pattern. Nothing
/// may panic (issue 9 finding 1: `ldr w0, [GICD+0x109]` indexed `routes[64]`).
#[test]
fn sweep_every_offset_width_alignment_never_panics() {
    let g = Vgic::new(1, 2);
    linux_like(&g, 2);
    let ranges = [
        (GICD_BASE, GICD_SIZE),
        (GICR_BASE, 3 * GICR_STRIDE),
        (GICR_BASE + GICR_SIZE - 16, 16),
    ];
    for (base, len) in ranges {
        for off in 0..len {
            for size in [1u8, 2, 3, 4, 8, 16] {
                for (write, value) in [(false, 0), (true, u64::MAX), (true, 0x5a5a_a5a5_0f0f_f0f0)]
                {
                    for cpu in [0, 1, 7] {
                        let _ = g.mmio(cpu, base + off, MmioAccess { write, size, value });
                    }
                }
            }
        }
    }
    // The vGIC still works afterwards.
    g.inject(0, 40).unwrap();
    assert!(g.is_pending(0, 40));
}

/// The exact access of the finding (a 4-byte read at GICD+0x109), and the
/// other accesses Xen's vgic-v3 answers with a data abort (`bad_width`):
/// unaligned ones and widths a register does not have. Valid ones still work.
#[test]
fn unaligned_or_wrong_width_is_a_bad_access() {
    let g = Vgic::new(1, 2);
    let acc = |ipa: u64, size: u8, write: bool| {
        g.mmio(
            0,
            ipa,
            MmioAccess {
                write,
                size,
                value: u64::MAX,
            },
        )
        .expect("in range")
    };
    assert_eq!(acc(GICD_BASE + 0x109, 4, false), Err(BadAccess));
    assert_eq!(acc(GICD_BASE + 0x109, 4, true), Err(BadAccess));
    for (off, size) in [
        (0x104, 2),               // bit register: 32-bit only
        (0x104, 8),               // ... not 64
        (0x106, 2),               // unaligned halfword
        (0x0, 8),                 // CTLR
        (0x401, 4),               // IPRIORITYR unaligned word
        (0x400 + 40, 2),          // IPRIORITYR halfword
        (0xc08, 1),               // ICFGR byte
        (0x6000 + 8 * 40, 1),     // IROUTER byte
        (0x6000 + 8 * 40 + 4, 8), // IROUTER unaligned doubleword
    ] {
        assert_eq!(
            acc(GICD_BASE + off, size, false),
            Err(BadAccess),
            "{off:#x}/{size}"
        );
        assert_eq!(
            acc(GICD_BASE + off, size, true),
            Err(BadAccess),
            "{off:#x}/{size}"
        );
    }
    assert_eq!(
        acc(GICR_BASE + 0x14, 8, false),
        Err(BadAccess),
        "WAKER 32-bit"
    );
    assert_eq!(
        acc(GICR_BASE + 0x1_0100, 1, true),
        Err(BadAccess),
        "ISENABLER0 32-bit"
    );
    // Nothing above changed state: SPI 72..104 not enabled, routes untouched.
    assert_eq!(acc(GICD_BASE + 0x108, 4, false), Ok(0));
    assert_eq!(acc(GICD_BASE + 0x6000 + 8 * 40, 8, false), Ok(0));
    // Valid widths of the same registers.
    assert_eq!(acc(GICD_BASE + 0x400 + 40, 1, false), Ok(0));
    assert_eq!(acc(GICD_BASE + 0x6000 + 8 * 40 + 4, 4, false), Ok(0));
    assert_eq!(acc(GICR_BASE + 0xc, 4, false), Ok(0), "upper half of TYPER");
}
