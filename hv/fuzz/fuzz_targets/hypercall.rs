//! hv's guest entry on the fake arch: a control domain (d0, privileged) and
//! an unprivileged domU, each with a guest memory image from the input (its
//! "kernel", loaded at the RAM base, so handles into RAM point at fuzzed
//! bytes) and a script of exits from the input: Xen hypercalls
//! (`HVC #0xEA1`, every number and all six arguments), other `HVC`
//! immediates, PSCI over HVC/SMC, data aborts (vGIC MMIO, RAM, unmapped),
//! trapped system registers, WFI/WFE, physical IRQs, raw exits; each may
//! also change the vCPU's EL1 registers (its stage 1, so hv's software walk
//! of guest handles runs on hostile tables in the image) and list registers.
//! Guests may bring up more vCPUs; every vCPU whose script ran out powers
//! off (see `hv_fuzz::GuestCpu`).
//!
//! Properties: no panic in hv (the fake arch's contract checks included);
//! when every domain ended, every guest page went back to the pool, every
//! stage-2 table frame was freed and every VMID released.
#![no_main]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use arbitrary::Arbitrary;
use hv::arch::fake::{FakeArch, FakeMachine, FakeMem, Kind};
use hv::arch::{El1Reg, ExitVector, RawExit};
use hv::domain::build::{BootImage, DomainSpec};
use hv::domain::GUEST_RAM0_BASE;
use hv::start::{CpuExit, System};
use hv::xen::ConsoleSink;
use hv_fuzz::{esr, GuestCpu, GuestStep, Stop};
use libfuzzer_sys::fuzz_target;
use memops::FrameTable;
use pv_tlb::{PhysAddr, Policy};

const POOL_FRAMES: u64 = 0x3000;
/// Guest RAM: 256 KiB (fast to build), or 2 MiB (room for 2 MiB extents).
const RAM: u64 = 2 << 20;
const SMALL_RAM: u64 = 256 << 10;
const MAX_IMAGE: usize = 64 << 10;
const MAX_STEPS: usize = 96;
/// Stage-2 input size: 32 bits hold every guest address hv uses (GIC, RAM,
/// grant table) and make each stage-2 two levels deep (fast teardown).
const IPA_BITS: u8 = 32;

/// Free heap bytes hv sees (guest-driven allocations are gated on it).
static HEAP_FREE: AtomicUsize = AtomicUsize::new(usize::MAX);

fn heap_free() -> usize {
    HEAP_FREE.load(Ordering::Relaxed)
}

/// `HV_FUZZ_DEBUG=1`: say how each input ended (replaying a corpus).
fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("HV_FUZZ_DEBUG").is_some())
}

struct Quiet;

impl ConsoleSink for Quiet {
    fn guest_line(&mut self, _domid: u16, _line: &str) {}
    fn hv_line(&mut self, _args: core::fmt::Arguments<'_>) {}
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Arg {
    Zero,
    Small(u8),
    /// Guest RAM (RAM base + offset): into the image, the DTB, or past it.
    Ram(u16),
    RamPage(u16),
    Neg(u8),
    Dom(u8),
    DomSelf,
    Raw(u64),
}

impl Arg {
    fn value(self) -> u64 {
        match self {
            Arg::Zero => 0,
            Arg::Small(v) => u64::from(v),
            Arg::Ram(off) => GUEST_RAM0_BASE + u64::from(off),
            Arg::RamPage(p) => GUEST_RAM0_BASE + (u64::from(p) << 12),
            Arg::Neg(v) => (-i64::from(v)) as u64,
            Arg::Dom(d) => u64::from(d % 8),
            Arg::DomSelf => 0x7ff0,
            Arg::Raw(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Nr {
    /// Xen's hypercall numbers (0..48 covers all of public/xen.h's).
    Known(u8),
    Raw(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Where {
    Gicd(u16),
    Gicr(u32),
    Ram(u32),
    Raw(u64),
}

impl Where {
    fn ipa(self) -> u64 {
        match self {
            Where::Gicd(o) => hv::vgic::GICD_BASE + u64::from(o),
            Where::Gicr(o) => hv::vgic::GICR_BASE + u64::from(o) % hv::vgic::GICR_SIZE,
            Where::Ram(o) => GUEST_RAM0_BASE + u64::from(o) % (RAM * 2),
            Where::Raw(v) => v & 0xff_ffff_ffff,
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Exit {
    Hypercall {
        nr: Nr,
        args: [Arg; 6],
    },
    Hvc {
        imm: u16,
        x: [Arg; 4],
    },
    /// PSCI / SMCCC over SMC (x0 = function id).
    Smc {
        fid: u32,
        x: [Arg; 3],
    },
    Abort {
        at: Where,
        write: bool,
        /// SAS (0..3), SRT, SF, SSE, ISV, DFSC.
        sas: u8,
        srt: u8,
        flags: u8,
        dfsc: u8,
        value: u64,
    },
    Sysreg {
        iss: u32,
        value: u64,
    },
    Wfx {
        wfe: bool,
    },
    Irq {
        intids: Vec<u8>,
    },
    Raw {
        vector: u8,
        esr: u64,
        far: u64,
        hpfar: u64,
    },
}

#[derive(Arbitrary, Debug, Clone)]
struct Step {
    /// Which vCPU: domain (0 = d0, 1 = the domU) and vCPU index.
    who: u8,
    exit: Exit,
    el1: Option<(u8, u64)>,
    lr: Option<(u8, u64)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    big_ram: [bool; 2],
    heap_free_kib: Option<u16>,
    targeted: bool,
    dom0_vcpus: u8,
    domu_vcpus: u8,
    domu_dtb: bool,
    images: [Vec<u8>; 2],
    steps: Vec<Step>,
}

const EL1_REGS: [El1Reg; 8] = [
    El1Reg::SctlrEl1,
    El1Reg::TcrEl1,
    El1Reg::Ttbr0El1,
    El1Reg::Ttbr1El1,
    El1Reg::VbarEl1,
    El1Reg::CntvCtlEl0,
    El1Reg::CntvCvalEl0,
    El1Reg::SpsrEl1,
];

fn step(s: &Step) -> GuestStep {
    let mut g = match &s.exit {
        Exit::Hypercall { nr, args } => {
            let mut g = GuestStep::hvc(0xea1);
            g.set_x = args
                .iter()
                .enumerate()
                .map(|(i, a)| (i, a.value()))
                .collect();
            let nr = match *nr {
                Nr::Known(n) => u64::from(n % 48),
                Nr::Raw(v) => v,
            };
            g.set_x.push((16, nr));
            g
        }
        Exit::Hvc { imm, x } => {
            let mut g = GuestStep::hvc(*imm);
            g.set_x = x.iter().enumerate().map(|(i, a)| (i, a.value())).collect();
            g
        }
        Exit::Smc { fid, x } => {
            let mut g = GuestStep::psci_smc(u64::from(*fid));
            g.set_x
                .extend(x.iter().enumerate().map(|(i, a)| (i + 1, a.value())));
            g
        }
        Exit::Abort {
            at,
            write,
            sas,
            srt,
            flags,
            dfsc,
            value,
        } => {
            let ipa = at.ipa();
            let srt = u64::from(srt % 31);
            let isv = u64::from(flags & 1 == 0);
            let iss = (isv << 24)
                | (u64::from(sas & 3) << 22)
                | (u64::from(flags >> 1 & 1) << 21)
                | (srt << 16)
                | (u64::from(flags >> 2 & 1) << 15)
                | (u64::from(*write) << 6)
                | if flags & 8 == 0 {
                    0x07
                } else {
                    u64::from(dfsc & 0x3f)
                };
            let mut g = GuestStep::sync(esr(0x24, iss), ipa, (ipa >> 12) << 4);
            g.set_x.push((srt as usize, *value));
            g
        }
        Exit::Sysreg { iss, value } => {
            let rt = (iss >> 5) & 0x1f;
            let mut g = GuestStep::sync(esr(0x18, u64::from(*iss)), 0, 0);
            if rt < 31 {
                g.set_x.push((rt as usize, *value));
            }
            g
        }
        Exit::Wfx { wfe } => GuestStep::sync(esr(0x01, u64::from(*wfe)), 0, 0),
        Exit::Irq { intids } => {
            let mut g = GuestStep::new(RawExit {
                vector: ExitVector::Irq,
                esr: 0,
                far: 0,
                hpfar: 0,
            });
            g.raise = intids.iter().take(4).map(|i| u32::from(*i)).collect();
            g
        }
        Exit::Raw {
            vector,
            esr,
            far,
            hpfar,
        } => GuestStep::new(RawExit {
            vector: match vector % 4 {
                0 => ExitVector::Sync,
                1 => ExitVector::Irq,
                2 => ExitVector::Fiq,
                _ => ExitVector::SError,
            },
            esr: *esr,
            far: *far,
            hpfar: *hpfar,
        }),
    };
    if let Some((r, v)) = s.el1 {
        g.el1_set
            .push((EL1_REGS[usize::from(r) % EL1_REGS.len()], v));
    }
    if let Some((n, v)) = s.lr {
        g.lr_set.push((usize::from(n % 2), v));
    }
    g
}

fn image(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes[..bytes.len().min(MAX_IMAGE)].to_vec();
    if v.len() < 64 {
        v.resize(64, 0);
    }
    v
}

fn run(input: &Input) {
    HEAP_FREE.store(
        input.heap_free_kib.map_or(usize::MAX, |k| {
            (usize::from(k) << 10) + hv::mm::heap::RESERVE / 2
        }),
        Ordering::Relaxed,
    );
    let _ = hv::vgic::take_kicks();
    let mem = FakeMem::new(0x8000_0000, 0x400_0000);
    let pool = FrameTable::new(PhysAddr(0x8000_0000), POOL_FRAMES);
    let policy = if input.targeted {
        Policy::Targeted {
            has_range: true,
            nested: true,
        }
    } else {
        Policy::XenCompat
    };
    let mut sys = System::new(mem, pool, policy, Box::new(Quiet), 2, IPA_BITS);
    sys.set_heap_probe(heap_free);
    let ram = |big: bool| if big { RAM } else { SMALL_RAM };
    let specs = [
        DomainSpec {
            ram_bytes: ram(input.big_ram[0]),
            privileged: true,
            bootargs: Some("dom0"),
            dtb: true,
            vcpus: u32::from(input.dom0_vcpus % 4) + 1,
        },
        DomainSpec {
            ram_bytes: ram(input.big_ram[1]),
            privileged: false,
            bootargs: None,
            dtb: input.domu_dtb,
            vcpus: u32::from(input.domu_vcpus % 4) + 1,
        },
    ];
    for (spec, img) in specs.into_iter().zip(&input.images) {
        let img = image(img);
        let r = sys.add_domain(
            spec,
            BootImage {
                size: img.len() as u64,
                read: &mut |_m: &FakeMem, off, buf: &mut [u8]| {
                    buf.copy_from_slice(&img[off as usize..off as usize + buf.len()]);
                },
            },
            None,
        );
        if r.is_err() {
            return;
        }
    }
    let machine = FakeMachine::new_shared();
    let mut cpu = GuestCpu::new(FakeArch::new(0, machine));
    // d0 runs with VMID 1, the domU with VMID 2 (the order they were built).
    for s in input.steps.iter().take(MAX_STEPS) {
        let vmid = 1 + u16::from(s.who & 1);
        let vcpu = (s.who >> 1) % 4;
        cpu.script(vmid, vcpu, [step(s)]);
    }
    let r = catch_unwind(AssertUnwindSafe(|| sys.run_cpu(&mut cpu)));
    if debug() {
        eprintln!(
            "hypercall: {}",
            if r.is_ok() {
                "all domains ended"
            } else {
                "stopped early"
            }
        );
    }
    match r {
        Ok(exit) => {
            assert_eq!(exit, CpuExit::PowerOff);
            assert_eq!(sys.live_domains(), 0);
            assert_eq!(sys.pool_free(), POOL_FRAMES, "guest pages leaked");
            sys.with_mem(|m, vmids| {
                assert_eq!(m.allocated(Kind::Table), 0, "stage-2 table frames leaked");
                assert_eq!(vmids, 0, "VMIDs leaked");
            });
        }
        Err(p) => {
            if !p.is::<Stop>() {
                std::panic::resume_unwind(p);
            }
        }
    }
}

fuzz_target!(|input: Input| run(&input));
