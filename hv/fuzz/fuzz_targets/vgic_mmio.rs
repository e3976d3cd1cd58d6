//! vGIC MMIO emulation (`vgic::Vgic::mmio`) at every offset, width and
//! alignment of the distributor and the redistributors, interleaved with
//! what the rest of hv does to the vGIC (injections, levels, SGIs from
//! trapped ICC_SGI1R writes, residency changes), at Xen's guest layout or
//! at QEMU virt's host addresses (dom0's) with physical SPIs routed to the
//! vGIC (hardware interrupts against the recording fake distributor).
//!
//! Properties: no panic; an access outside the ranges is not the vGIC's
//! (`None`); one inside of a width other than 1/2/4/8, or unaligned, is
//! refused (`BadAccess`: hv injects a data abort, as Xen); an emulated read
//! returns no bits beyond its width, a write returns 0; a guest access never
//! configures a physical SPI, and only touches SPIs routed to the vGIC.
#![no_main]

use arbitrary::Arbitrary;
use hv::arch::fake::{DistOp, FakeDist, FakeMachine};
use hv::irq::HwIrqs;
use hv::vgic::mmio::{BadAccess, MmioAccess};
use hv::vgic::{Vgic, VgicLayout, GICD_SIZE, GICR_SIZE, GICR_STRIDE, MAX_VCPUS};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

/// QEMU virt's GICD/GICR (dom0's vGIC layout).
const HOST: VgicLayout = VgicLayout {
    gicd: 0x0800_0000,
    gicr: 0x080a_0000,
};

#[derive(Arbitrary, Debug)]
struct Input {
    nr_vcpus: u8,
    /// dom0's layout (host addresses, host SPI count) instead of Xen's guest one.
    host: bool,
    /// Physical interrupt lines of the fake distributor (host layout).
    lines: u16,
    /// SPIs routed to the vGIC before the ops (level-sensitive if odd).
    routed: Vec<u16>,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Where {
    /// Distributor offset (any byte).
    Dist(u16),
    /// Redistributor `n`, offset in its two 64 KiB frames (any byte).
    Redist(u8, u32),
    Raw(u64),
}

impl Where {
    fn ipa(&self, l: VgicLayout) -> u64 {
        match *self {
            Where::Dist(off) => l.gicd + u64::from(off) % GICD_SIZE,
            Where::Redist(n, off) => {
                l.gicr + (u64::from(n) * GICR_STRIDE) % GICR_SIZE + u64::from(off) % GICR_STRIDE
            }
            Where::Raw(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Mmio {
        vcpu: u8,
        at: Where,
        write: bool,
        size: u8,
        value: u64,
    },
    Inject {
        vcpu: u8,
        intid: u32,
    },
    Level {
        vcpu: u8,
        intid: u32,
        high: bool,
    },
    Sgi {
        from: u8,
        val: u64,
    },
    Resident {
        vcpu: u8,
        pcpu: Option<u8>,
    },
    Deliverable {
        vcpu: u8,
    },
    SetVcpus(u8),
    /// hv acknowledged physical SPI `intid` (the IRQ exit's injection).
    InjectHw(u16),
    /// Domain destroy.
    ReleaseHw,
}

fuzz_target!(|input: Input| {
    let nr = u32::from(input.nr_vcpus) % MAX_VCPUS + 1;
    let machine = FakeMachine::new_shared();
    let lines = 32 * (u32::from(input.lines) % 32 + 1);
    let hw = Arc::new(HwIrqs::new(Arc::new(FakeDist::new(machine.clone(), lines))));
    let layout = if input.host { HOST } else { VgicLayout::GUEST };
    let g = Vgic::with_hw(1, nr, layout, Some(hw.clone()));
    for &r in input.routed.iter().take(16) {
        let _ = g.route_hw_spi(u32::from(r) % 1100, r & 1 == 1);
    }
    machine.lock().events.clear();
    for op in input.ops.iter().take(256) {
        // hv only ever names one of the domain's vCPUs.
        let n = g.nr_vcpus();
        let routed = g.hw_spis();
        match *op {
            Op::Mmio {
                vcpu,
                ref at,
                write,
                size,
                value,
            } => {
                let ipa = at.ipa(layout);
                let size = match size % 8 {
                    0 => 1,
                    1 => 2,
                    2..=4 => 4,
                    5..=6 => 8,
                    _ => size,
                };
                let acc = MmioAccess { write, size, value };
                let r = g.mmio(u32::from(vcpu) % n, ipa, acc);
                let gicr_size = if input.host {
                    u64::from(n) * GICR_STRIDE
                } else {
                    GICR_SIZE
                };
                let in_range = (layout.gicd..layout.gicd + GICD_SIZE).contains(&ipa)
                    || (layout.gicr..layout.gicr + gicr_size).contains(&ipa);
                if !in_range {
                    assert_eq!(r, None, "an access outside the vGIC was emulated");
                    continue;
                }
                let r = r.expect("an access in the vGIC's ranges is handled");
                if !matches!(size, 1 | 2 | 4 | 8) || ipa % u64::from(size) != 0 {
                    assert_eq!(
                        r,
                        Err(BadAccess),
                        "a bad width or unaligned access was emulated"
                    );
                    continue;
                }
                // Aligned: emulated, or refused for a width the register lacks.
                let Ok(v) = r else { continue };
                if write {
                    assert_eq!(v, 0, "a write returned {v:#x}");
                } else if size < 8 {
                    assert_eq!(v >> (8 * size), 0, "{size}-byte read returned {v:#x}");
                }
            }
            Op::Inject { vcpu, intid } => {
                let _ = g.inject(u32::from(vcpu) % n, intid % 128);
            }
            Op::Level { vcpu, intid, high } => {
                let _ = g.set_level(u32::from(vcpu) % n, intid % 128, high);
            }
            Op::Sgi { from, val } => {
                let _ = g.send_sgi(u32::from(from) % n, val);
            }
            Op::Resident { vcpu, pcpu } => {
                g.set_resident(u32::from(vcpu) % n, pcpu.map(|p| usize::from(p % 8)));
            }
            Op::Deliverable { vcpu } => {
                let _ = g.has_deliverable(u32::from(vcpu) % n);
            }
            Op::SetVcpus(k) => g.set_nr_vcpus(u32::from(k) % MAX_VCPUS + 1),
            Op::InjectHw(intid) => {
                let intid = u32::from(intid) % 1100;
                assert_eq!(g.inject_hw(intid).is_ok(), g.is_hw(intid));
            }
            Op::ReleaseHw => g.release_hw(),
        }
        // Only SPIs routed before this op (a release gives them back) reach
        // the physical distributor, and never to be reconfigured.
        for e in machine.lock().events.drain(..) {
            if let hv::arch::fake::Event::Dist(d) = e {
                let i = match d {
                    DistOp::Configure { .. } => panic!("a guest access configured an SPI: {d:?}"),
                    DistOp::Enable(i)
                    | DistOp::Disable(i)
                    | DistOp::SetPending(i, _)
                    | DistOp::Deactivate(i) => i,
                };
                assert!(routed.contains(&i), "SPI {i} touched but not routed");
            }
        }
    }
    let _ = hv::vgic::take_kicks();
});
