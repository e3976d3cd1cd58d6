//! Whole run-loop scenarios driven through the fake arch.

use super::*;
use crate::arch::fake::{Event, FakeArch, FakeMachine, FakeMem, Kind, SharedMachine, Step};
use crate::arch::{El1Reg, GuestGprs};
use crate::domain::{FrameSource, GUEST_RAM0_BASE};
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use memops::FrameTable;
use pv_tlb::{Ipa, TlbOp};
use std::format;

const RAM: u64 = 2 << 20;
/// Frames of the guest page pool in [`rig`] (48 MiB).
const POOL_FRAMES: u64 = 0x3000;
/// Where tests put boot modules in the rig's host RAM (above the pool).
const MODULES: u64 = 0x8380_0000;
const NOSYS: u64 = (-38i64) as u64;
const EFAULT: u64 = (-14i64) as u64;
const EINVAL: u64 = (-22i64) as u64;

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl ConsoleSink for Lines {
    fn guest_line(&mut self, domid: u16, line: &str) {
        self.0.lock().push(format!("(d{domid}) {line}"));
    }
    fn hv_line(&mut self, args: core::fmt::Arguments<'_>) {
        self.0.lock().push(format!("hv: {args}"));
    }
}

impl Lines {
    fn all(&self) -> Vec<String> {
        self.0.lock().clone()
    }
    fn has(&self, s: &str) -> bool {
        self.0.lock().iter().any(|l| l == s)
    }
}

struct Rig {
    sys: System<FakeMem>,
    lines: Lines,
    machine: SharedMachine,
}

fn rig() -> Rig {
    rig_with(Policy::XenCompat)
}

fn rig_with(policy: Policy) -> Rig {
    let mem = FakeMem::new(0x8000_0000, 0x400_0000);
    // Guest pages: the bottom 48 MiB; table frames come from the fake's top;
    // test modules sit at MODULES in between.
    let pool = FrameTable::new(PhysAddr(0x8000_0000), POOL_FRAMES);
    let lines = Lines::default();
    let sys = System::new(mem, pool, policy, Box::new(lines.clone()), 2, 40);
    Rig {
        sys,
        lines,
        machine: FakeMachine::new_shared(),
    }
}

/// A raw kernel (no Image header) of 0x1000 bytes with `text` at offset 0x100
/// and a zero word (SHUTDOWN_poweroff) at 0x200.
fn kernel(text: &[u8]) -> Vec<u8> {
    let mut k = vec![0u8; 0x1000];
    k[0x100..0x100 + text.len()].copy_from_slice(text);
    k[0x204..0x208].copy_from_slice(&7u32.to_le_bytes());
    k
}

impl Rig {
    fn add(&self, image: &[u8]) -> DomId {
        let img = image.to_vec();
        self.sys
            .add_domain(
                DomainSpec::domu(RAM),
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
    fn script(&self, vmid: u16, steps: impl IntoIterator<Item = Step>) {
        self.machine.lock().script(vmid, 0, steps);
    }
    fn run(&self, cpu: usize) -> CpuExit {
        let mut arch = FakeArch::new(cpu, self.machine.clone());
        self.sys.run_cpu(&mut arch)
    }
    fn entries(&self, vmid: u16) -> Vec<GuestGprs> {
        self.machine.lock().entries(vmid, 0)
    }
}

fn shutdown(reason_ipa: u64) -> Step {
    Step::hypercall(29, &[2, reason_ipa])
}

#[test]
fn hypercalls_answer_in_x0_and_the_domain_powers_off() {
    let r = rig();
    assert_eq!(r.add(&kernel(b"hello\x01\nsecond")), 1);
    r.script(
        1,
        [
            Step::hypercall(17, &[0]),
            Step::hypercall(18, &[0, 13, GUEST_RAM0_BASE + 0x100]),
            Step::hypercall(99, &[1, 2, 3]),
            Step::hypercall(20, &[]),
            Step::hypercall(17, &[10]),
            Step::hypercall(18, &[0, 16, 0x1000_0000]),
            Step::hypercall(18, &[1, 16, GUEST_RAM0_BASE]),
            Step::hypercall(12, &[6, 0]),
            shutdown(GUEST_RAM0_BASE + 0x200),
        ],
    );
    assert_eq!(r.run(0), CpuExit::PowerOff);
    let e = r.entries(1);
    assert_eq!(e.len(), 9);
    assert_eq!(e[0].pc, GUEST_RAM0_BASE, "raw binary entry at the RAM base");
    assert_eq!(e[0].pstate, 0x3c5, "EL1h, DAIF masked");
    assert_eq!(e[0].x[0], 0, "x0 = 0 (no DTB yet)");
    assert_eq!(e[1].x[0], (4 << 16) | 20, "XENVER_version");
    assert_eq!(e[1].pc, GUEST_RAM0_BASE + 4, "pc stays past the HVC");
    assert_eq!(e[2].x[0], 0, "CONSOLEIO_write returns 0");
    assert_eq!(e[3].x[0], NOSYS, "unknown hypercall");
    assert_eq!(e[4].x[0], NOSYS, "unimplemented hypercall");
    assert_eq!(e[5].x[0], NOSYS, "unknown xen_version command");
    assert_eq!(e[6].x[0], EFAULT, "console buffer outside RAM");
    assert_eq!(e[7].x[0], 0, "CONSOLEIO_read: no input");
    assert_eq!(e[8].x[0], EFAULT, "populate_physmap with a NULL argument");
    let lines = r.lines.all();
    assert!(lines.contains(&"(d1) hello\\x01".to_string()), "{lines:?}");
    // The unterminated "second" is flushed when the domain ends, before the end line.
    let i = lines
        .iter()
        .position(|l| l == "(d1) second")
        .expect("partial line flushed");
    let j = lines
        .iter()
        .position(|l| l == "hv: d1 ended (poweroff)")
        .expect("end line");
    assert!(i < j);
    assert_eq!(lines.last().unwrap(), "hv: all domains ended, powering off");
    assert_eq!(r.sys.live_domains(), 0);
    let counters = &lines[lines.len() - 2];
    assert!(
        counters.starts_with("hv: counters: IPAS2E1IS="),
        "{counters}"
    );
    assert!(
        counters.contains(" VMALLS12E1IS=") && counters.contains(" hypercalls="),
        "{counters}"
    );
    // Everything given back after one VMID flush (xen-compat policy in the rig).
    let ops = r.machine.lock().tlb_ops();
    let tlbis: Vec<_> = ops.iter().filter(|o| o.kind().is_some()).collect();
    assert_eq!(
        tlbis,
        vec![&TlbOp::Vmalls12e1is {
            vmid: pv_tlb::Vmid(1)
        }],
        "{ops:?}"
    );
    assert_eq!(r.sys.pool_free(), POOL_FRAMES);
    r.sys.with_mem(|m, vmids| {
        assert_eq!(m.allocated(Kind::Table), 0);
        assert_eq!(vmids, 0);
    });
}

#[test]
fn wrong_immediate_injects_undefined_instruction_at_el1() {
    let r = rig();
    r.add(&kernel(b""));
    r.script(
        1,
        [
            Step::hypercall(17, &[0]),
            Step::hvc(1, 17, &[0]),
            Step::hypercall(17, &[0]),
            shutdown(GUEST_RAM0_BASE + 0x200),
        ],
    );
    // VBAR_EL1 is 0 (reset value): the vector is at 0x200.
    assert_eq!(r.run(0), CpuExit::PowerOff);
    let e = r.entries(1);
    let hvc_pc = GUEST_RAM0_BASE + 4;
    // Undefined instruction: current EL with SP_ELx sync vector, EL1h, DAIF masked; x0 untouched.
    assert_eq!(e[2].pc, 0x200);
    assert_eq!(e[2].pstate, 0x3c5);
    assert_eq!(e[2].x[0], 0, "x0 not written by an injected exception");
    let w = r.machine.lock().el1_writes();
    assert_eq!(
        w,
        vec![
            (El1Reg::ElrEl1, hvc_pc),
            (El1Reg::SpsrEl1, 0x3c5),
            (El1Reg::EsrEl1, 1 << 25)
        ]
    );
}

#[test]
fn undef_vector_follows_the_guest_mode() {
    use crate::arch::Arch;
    use crate::vcpu::Vcpu;
    let machine = FakeMachine::new_shared();
    let mut arch = FakeArch::new(0, machine.clone());
    let mut sysregs = crate::arch::El1Sysregs::default();
    sysregs.set(El1Reg::VbarEl1, 0x4000_8000);
    let regs = crate::arch::Stage2Regs {
        vttbr: 1 << 48,
        vtcr: 0,
    };
    for (pstate, vec) in [(0x3c5u64, 0x200u64), (0x3c4, 0x000), (0x000, 0x400)] {
        let mut v = Vcpu::new(1, 0, 0x4000_0000, 0);
        v.gprs.pstate = pstate;
        arch.vcpu_load(&sysregs, regs, v.vmpidr());
        v.inject_undef(&mut arch, 0x4000_1234);
        assert_eq!(v.gprs.pc, 0x4000_8000 + vec, "pstate {pstate:#x}");
        assert_eq!(v.gprs.pstate, 0x3c5);
        assert_eq!(arch.read_el1(El1Reg::SpsrEl1), pstate);
        assert_eq!(arch.read_el1(El1Reg::ElrEl1), 0x4000_1234);
        assert_eq!(arch.read_el1(El1Reg::EsrEl1), 0x0200_0000);
        let mut back = sysregs;
        arch.vcpu_put(&mut back);
    }
}

#[test]
fn stage2_fault_ends_only_that_domain() {
    let r = rig();
    assert_eq!(r.add(&kernel(b"")), 1);
    assert_eq!(r.add(&kernel(b"d2 alive\n")), 2);
    r.script(1, [Step::data_abort(0x1000_0000, false)]);
    r.script(
        2,
        [
            Step::hypercall(29, &[0]),
            Step::hypercall(18, &[0, 9, GUEST_RAM0_BASE + 0x100]),
            shutdown(GUEST_RAM0_BASE + 0x200),
        ],
    );
    assert_eq!(r.run(0), CpuExit::PowerOff);
    let lines = r.lines.all();
    assert!(
        r.lines
            .has("hv: d1 ended (stage-2 fault at IPA 0x0000000010000000)"),
        "{lines:?}"
    );
    assert!(r.lines.has("(d2) d2 alive"), "{lines:?}");
    assert!(r.lines.has("hv: d2 ended (poweroff)"), "{lines:?}");
    assert_eq!(lines.last().unwrap(), "hv: all domains ended, powering off");
    assert_eq!(
        r.machine.lock().system_offs(),
        0,
        "run_cpu leaves system_off to its caller"
    );
    let full: Vec<_> = r
        .machine
        .lock()
        .tlb_ops()
        .into_iter()
        .filter(|o| matches!(o, TlbOp::Vmalls12e1is { .. }))
        .collect();
    assert_eq!(
        full,
        vec![
            TlbOp::Vmalls12e1is {
                vmid: pv_tlb::Vmid(1)
            },
            TlbOp::Vmalls12e1is {
                vmid: pv_tlb::Vmid(2)
            }
        ]
    );
}

#[test]
fn yields_round_robin_and_lazy_reload() {
    let r = rig();
    r.add(&kernel(b""));
    r.add(&kernel(b""));
    r.script(
        1,
        [
            Step::wfx(false),
            Step::hypercall(29, &[0]),
            shutdown(GUEST_RAM0_BASE + 0x200),
        ],
    );
    r.script(
        2,
        [
            Step::wfx(true),
            Step::irq(),
            Step::hypercall(29, &[0]),
            Step::hypercall(29, &[0]),
            shutdown(GUEST_RAM0_BASE + 0x200),
        ],
    );
    assert_eq!(r.run(0), CpuExit::PowerOff);
    let m = r.machine.lock();
    let order: Vec<u16> = m
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Enter { vmid, .. } => Some(vmid.0),
            _ => None,
        })
        .collect();
    // Alternate on yields (WFI with no GIC or timer to wake it yields, WFE
    // yields); a physical IRQ exit is no yield: d2 resumes (its slice is not
    // over), then yields to d1; d2 then runs alone.
    assert_eq!(order, vec![1, 2, 1, 2, 2, 1, 2, 2]);
    let loads = m
        .events
        .iter()
        .filter(|e| matches!(e, Event::Load { .. }))
        .count();
    // 1,2,1,2,1,2: six loads; d2's entries after the IRQ and after d1 ended
    // reuse the loaded context.
    assert_eq!(loads, 6);
    // Switching between different VMIDs needs no TLB maintenance: the only
    // TLBIs are the two destroy flushes.
    let tlbis: Vec<_> = m
        .tlb_ops()
        .into_iter()
        .filter(|o| o.kind().is_some())
        .collect();
    assert_eq!(
        tlbis,
        vec![
            TlbOp::Vmalls12e1is {
                vmid: pv_tlb::Vmid(1)
            },
            TlbOp::Vmalls12e1is {
                vmid: pv_tlb::Vmid(2)
            }
        ]
    );
    drop(m);
    // WFI/WFE are stepped over.
    let e = r.entries(1);
    assert_eq!(e[1].pc, GUEST_RAM0_BASE + 4);
}

#[test]
fn psci_from_the_guest() {
    let r = rig();
    r.add(&kernel(b""));
    r.add(&kernel(b""));
    r.script(
        1,
        [
            Step::smc(&[u64::from(psci::VERSION)]),
            Step::smc(&[0xc400_0003]),
            Step::smc(&[u64::from(psci::FEATURES), u64::from(psci::SYSTEM_OFF)]),
            Step::hvc(0, 0, &[u64::from(psci::VERSION)]),
            Step::smc(&[u64::from(psci::SYSTEM_OFF)]),
        ],
    );
    r.script(2, [Step::smc(&[u64::from(psci::CPU_OFF)])]);
    assert_eq!(r.run(0), CpuExit::PowerOff);
    let e = r.entries(1);
    assert_eq!(e[1].x[0], psci::V1_1);
    assert_eq!(e[1].pc, GUEST_RAM0_BASE + 4, "SMC stepped over");
    assert_eq!(
        e[2].x[0],
        crate::psci::ret::ALREADY_ON,
        "CPU_ON of the caller itself (MPIDR 0)"
    );
    assert_eq!(e[3].x[0], 0, "SYSTEM_OFF is a feature");
    assert_eq!(e[4].x[0], psci::V1_1, "HVC #0 is the SMCCC conduit");
    assert_eq!(e[4].pc, GUEST_RAM0_BASE + 16, "HVC not stepped twice");
    assert!(r.lines.has("hv: d1 ended (PSCI SYSTEM_OFF)"));
    assert!(r.lines.has("hv: d2 ended (all vCPUs off)"));
}

#[test]
fn sysreg_trap_injects_undef_at_the_instruction() {
    let r = rig();
    r.add(&kernel(b""));
    // MRS x3, CTR_EL0.
    r.script(
        1,
        [
            Step::hypercall(17, &[0]),
            Step::sysreg(0x32c061),
            shutdown(GUEST_RAM0_BASE + 0x200),
        ],
    );
    r.run(0);
    let w = r.machine.lock().el1_writes();
    assert_eq!(
        w[0],
        (El1Reg::ElrEl1, GUEST_RAM0_BASE + 4),
        "ELR = the trapped instruction"
    );
    assert_eq!(r.entries(1)[2].pc, 0x200);
}

#[test]
fn bad_shutdown_arguments_are_refused_and_the_guest_runs_on() {
    let r = rig();
    r.add(&kernel(b""));
    r.script(
        1,
        [
            shutdown(0x1000_0000),
            shutdown(GUEST_RAM0_BASE + 0x204),
            Step::hypercall(29, &[99]),
            Step::hypercall(29, &[2, GUEST_RAM0_BASE + 0x200]),
        ],
    );
    r.run(0);
    let e = r.entries(1);
    assert_eq!(e[1].x[0], EFAULT);
    assert_eq!(e[2].x[0], EINVAL, "reason 7 > SHUTDOWN_MAX");
    assert_eq!(e[3].x[0], NOSYS);
    assert!(r.lines.has("hv: d1 ended (poweroff)"));
}

#[test]
fn xen_version_structures_are_copied_out() {
    let r = rig();
    r.add(&kernel(b""));
    let b = GUEST_RAM0_BASE;
    // get_features argument: submap_idx 0 at +0x800, submap_idx 1 at +0x808.
    r.sys
        .with_guest_memory(1, |gm| {
            gm.copy_to_guest(Ipa(b + 0x800), &[0; 8]).unwrap();
            gm.copy_to_guest(Ipa(b + 0x808), &[1, 0, 0, 0, 0, 0, 0, 0])
                .unwrap();
        })
        .unwrap();
    r.script(
        1,
        [
            Step::hypercall(17, &[1, b + 0x400]),
            Step::hypercall(17, &[6, b + 0x800]),
            Step::hypercall(17, &[6, b + 0x808]),
            Step::hypercall(17, &[7, 0]),
            Step::hypercall(17, &[7, b]),
            Step::hypercall(17, &[3, b + 0x1000]),
            Step::hypercall(17, &[3, b + RAM - 0x10]),
            Step::hypercall(17, &[8, b + 0x900]),
            Step::hypercall(17, &[2, b + 0xa00]),
            Step::hypercall(17, &[4, 0x1000_0000]),
        ],
    );
    r.script(1, [shutdown(b + 0x200)]);
    r.run(0);
    let e = r.entries(1);
    assert_eq!(e[1].x[0], 0, "extraversion");
    assert_eq!(e[2].x[0], 0, "get_features submap 0");
    assert_eq!(e[3].x[0], EINVAL, "get_features submap 1");
    assert_eq!(e[4].x[0], 4096, "pagesize");
    assert_eq!(e[5].x[0], EINVAL, "pagesize with an argument");
    assert_eq!(e[6].x[0], 0, "capabilities");
    assert_eq!(e[7].x[0], EFAULT, "capabilities crossing the end of RAM");
    assert_eq!(e[8].x[0], 0, "guest_handle");
    assert_eq!(e[9].x[0], 0, "compile_info");
    assert_eq!(e[10].x[0], EFAULT, "changeset outside RAM");
}

#[test]
fn two_pcpus_share_the_domains_and_exactly_one_powers_off() {
    let r = rig();
    for _ in 0..3 {
        r.add(&kernel(b"x\n"));
    }
    for vmid in 1..=3 {
        let mut steps: Vec<Step> = (0..50).map(|_| Step::hypercall(29, &[0])).collect();
        steps.push(Step::hypercall(18, &[0, 2, GUEST_RAM0_BASE + 0x100]));
        steps.push(shutdown(GUEST_RAM0_BASE + 0x200));
        r.script(vmid, steps);
    }
    let exits: Vec<CpuExit> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|cpu| {
                s.spawn({
                    let r = &r;
                    move || r.run(cpu)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        exits.iter().filter(|e| **e == CpuExit::PowerOff).count(),
        1,
        "{exits:?}"
    );
    for d in 1..=3 {
        assert!(r.lines.has(&format!("hv: d{d} ended (poweroff)")));
        assert_eq!(r.entries(d as u16).len(), 52);
        assert_eq!(r.machine.lock().remaining(d as u16, 0), 0);
    }
    assert_eq!(
        r.lines
            .all()
            .iter()
            .filter(|l| *l == "(d1) x" || *l == "(d2) x" || *l == "(d3) x")
            .count(),
        3
    );
    assert_eq!(
        r.lines.all().last().unwrap(),
        "hv: all domains ended, powering off"
    );
    assert_eq!(r.sys.pool_free(), POOL_FRAMES);
    r.sys.with_mem(|m, vmids| {
        assert_eq!(m.allocated(Kind::Table), 0);
        assert_eq!(vmids, 0);
    });
}

#[test]
fn mem_option_and_module_reading() {
    assert_eq!(parse_mem("console=hvc0 mem=64M"), Some(64 << 20));
    assert_eq!(parse_mem("mem=512k"), Some(512 << 10));
    assert_eq!(parse_mem("mem=1G quiet"), Some(1 << 30));
    assert_eq!(parse_mem("mem=4096"), Some(4096));
    assert_eq!(parse_mem("mem=abc"), None);
    assert_eq!(parse_mem("mem=99999999999999G"), None);
    assert_eq!(parse_mem("quiet"), None);
    // Domains from boot modules: a module in host RAM, read across a page boundary.
    let r = rig();
    let mut img = kernel(b"from module\n");
    img.resize(0x1800, 0x33);
    let pa = MODULES + 0x800;
    r.sys.with_mem(|m, _| {
        let mut off = 0;
        while off < img.len() {
            let at = pa + off as u64;
            let n = (0x1000 - (at & 0xfff) as usize).min(img.len() - off);
            m.write(PhysAddr(at), &img[off..off + n]);
            off += n;
        }
    });
    let modules = [
        BootModule {
            pa: PhysAddr(pa),
            size: img.len() as u64,
            kind: ModuleKind::Kernel,
            bootargs: Some("mem=3M"),
        },
        BootModule {
            pa: PhysAddr(pa),
            size: 16,
            kind: ModuleKind::Ramdisk,
            bootargs: None,
        },
        // Too big for its RAM: refused, nothing leaks.
        BootModule {
            pa: PhysAddr(pa),
            size: 2 << 20,
            kind: ModuleKind::Kernel,
            bootargs: Some("mem=1M"),
        },
    ];
    r.sys.add_module_domains(&modules);
    assert_eq!(r.sys.live_domains(), 1);
    let back = r
        .sys
        .with_guest_memory(1, |gm| {
            let mut b = vec![0u8; img.len()];
            gm.copy_from_guest(Ipa(GUEST_RAM0_BASE), &mut b).unwrap();
            b
        })
        .unwrap();
    assert_eq!(back, img);
    assert!(
        r.lines.has(
            "hv: d1: 3 MiB RAM at 0x40000000, VMID 1, kernel 0x1800 bytes entry 0x0000000040000000, DTB 0x402f0000"
        ),
        "{:?}",
        r.lines.all()
    );
    // Its DTB (x0) names its bootargs and the ramdisk module that follows it.
    let (args, rd) = r
        .sys
        .with_guest_memory(1, |gm| {
            let mut blob = vec![0u8; 4096];
            gm.copy_from_guest(Ipa(0x402f_0000), &mut blob).unwrap();
            let fdt = fdt::Fdt::new(&blob).unwrap();
            let chosen = fdt.find_node("/chosen").unwrap();
            let args = chosen
                .property("bootargs")
                .and_then(|p| p.as_str())
                .map(String::from);
            let s = chosen
                .property("linux,initrd-start")
                .and_then(|p| p.as_usize())
                .unwrap() as u64;
            let e = chosen
                .property("linux,initrd-end")
                .and_then(|p| p.as_usize())
                .unwrap() as u64;
            let mut rd = vec![0u8; (e - s) as usize];
            gm.copy_from_guest(Ipa(s), &mut rd).unwrap();
            (args, rd)
        })
        .unwrap();
    assert_eq!(args.as_deref(), Some("mem=3M"));
    assert_eq!(rd, img[..16].to_vec());
    // 3 MiB of RAM, plus the Xen pages of a DTB guest (xen::domu).
    assert_eq!(
        r.sys.pool_free(),
        POOL_FRAMES - 768 - crate::xen::domu::XEN_FRAMES
    );
    r.sys.with_mem(|_, vmids| assert_eq!(vmids, 1));
}

/// The only test that uses the globals (`mm::frame`, the secondary runner):
/// run_primary builds d1 from a boot module, runs it and powers off.
#[test]
fn run_primary_runs_module_domains_and_powers_off() {
    use crate::arch::fake::SystemOff;
    use crate::mm::frame::{self, FrameAllocator};
    use crate::mm::MemRange;
    let ram = [MemRange::new(0x9000_0000, 0x400_0000)];
    let storage: &'static mut [u64] =
        Box::leak(vec![0u64; FrameAllocator::storage_words(&ram)].into_boxed_slice());
    frame::init(FrameAllocator::new(&ram, &[], storage).unwrap());
    let free_before = frame::frames().lock().free_count();

    let mut mem = FakeMem::new(0x8000_0000, 0x2000_0000);
    let img = kernel(b"via run_primary\n");
    mem.write(PhysAddr(0x8000_0000), &img[..0x1000]);
    let machine = FakeMachine::new_shared();
    machine.lock().script(
        1,
        0,
        [
            Step::hypercall(18, &[0, 16, GUEST_RAM0_BASE + 0x100]),
            shutdown(GUEST_RAM0_BASE + 0x200),
        ],
    );
    let arch = FakeArch::new(0, machine.clone());
    let modules = [BootModule {
        pa: PhysAddr(0x8000_0000),
        size: 0x1000,
        kind: ModuleKind::Kernel,
        bootargs: None,
    }];
    let opts = HvOptions::default();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_primary(arch, mem, &modules, &opts)
    }));
    let payload = r.expect_err("run_primary returned");
    assert_eq!(
        payload.downcast_ref::<SystemOff>(),
        Some(&SystemOff { cpu: 0 })
    );
    let m = machine.lock();
    assert_eq!(m.system_offs(), 1);
    assert_eq!(m.remaining(1, 0), 0);
    assert_eq!(m.entries(1, 0)[1].x[0], 0, "console_io answered");
    drop(m);
    // The guest page pool was carved from the global allocator, leaving the reserve.
    let free_after = frame::frames().lock().free_count() as u64;
    assert_eq!(free_after, POOL_RESERVE_FRAMES);
    assert!(free_before as u64 > free_after);
    assert!(RUNNER.get().is_some(), "secondaries can find the system");
}

#[test]
fn dom0_module_is_privileged_and_reads_counters_through_hv_op() {
    let r = rig();
    let img = kernel(b"");
    let pa = MODULES;
    r.sys.with_mem(|m, _| m.write(PhysAddr(pa), &img[..0x1000]));
    let modules = [
        BootModule {
            pa: PhysAddr(pa),
            size: 0x1000,
            kind: ModuleKind::Kernel,
            bootargs: None,
        },
        BootModule {
            pa: PhysAddr(pa),
            size: 0x1000,
            kind: ModuleKind::Kernel,
            bootargs: Some("console=hvc0 dom0 mem=2M"),
        },
    ];
    r.sys.add_module_domains(&modules);
    assert!(r.lines.has("hv: d0: 2 MiB RAM at 0x40000000, VMID 2, kernel 0x1000 bytes entry 0x0000000040000000, DTB 0x401f0000 (control domain)"), "{:?}", r.lines.all());
    assert!(r
        .lines
        .all()
        .iter()
        .any(|l| l.starts_with("hv: d1: 16 MiB RAM")));
    // d1 (VMID 1) is refused hv_op; d0 (VMID 2) reads the counters.
    r.script(
        1,
        [
            Step::hypercall(49, &[1, GUEST_RAM0_BASE + 0x800]),
            shutdown(GUEST_RAM0_BASE + 0x200),
        ],
    );
    r.script(
        2,
        [
            Step::hypercall(49, &[1, GUEST_RAM0_BASE + 0x800]),
            Step::hypercall(49, &[1, 0x1000_0000]),
            Step::hypercall(49, &[7, 0]),
            shutdown(GUEST_RAM0_BASE + 0x200),
        ],
    );
    // Read d0's copy of the counters at its last exit, before it is torn down.
    assert_eq!(r.run(0), CpuExit::PowerOff);
    let e1 = r.entries(1);
    assert_eq!(e1[1].x[0], (-1i64) as u64, "-EPERM for d1");
    let e0 = r.entries(2);
    assert_eq!(e0[1].x[0], 0, "get_counters for d0");
    assert_eq!(e0[2].x[0], EFAULT);
    assert_eq!(e0[3].x[0], NOSYS);
    assert!(r.lines.has("hv: d0 ended (poweroff)"));
}

#[test]
fn hv_counters_layout() {
    // Counters are global (other tests run in parallel): check the layout and that they move.
    let before = crate::xen::hvop::counters();
    let r = rig();
    r.add(&kernel(b""));
    r.script(
        1,
        [
            Step::hypercall(17, &[0]),
            Step::hypercall(17, &[0]),
            shutdown(GUEST_RAM0_BASE + 0x200),
        ],
    );
    r.run(0);
    let after = crate::xen::hvop::counters();
    assert!(after[10] >= before[10] + 3, "guest_exits");
    assert!(after[11] >= before[11] + 3, "hypercalls");
    assert!(
        after[4] > before[4],
        "VMALLS12E1IS (index 4) from the destroy flush"
    );
    assert!(after[9] > before[9], "plans");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any sequence of hypercalls with arbitrary arguments never panics hv:
        /// each is answered in x0 (or ends the domain), and the run completes.
        #[test]
        fn arbitrary_hypercalls_never_panic(
            calls in proptest::collection::vec((0u64..64, any::<u64>(), any::<u64>(), any::<u64>(), proptest::sample::select(vec![0u64, GUEST_RAM0_BASE, GUEST_RAM0_BASE + 0xff0, GUEST_RAM0_BASE + RAM - 4, 0x1000_0000, u64::MAX - 8])), 1..12)
        ) {
            let r = rig();
            r.add(&kernel(b"prop\n"));
            let steps: Vec<Step> = calls
                .iter()
                .map(|&(nr, a0, a1, a2, h)| {
                    // Keep shutdowns rare so later calls run too.
                    let nr = if nr == 29 && a0 % 4 == 2 { 17 } else { nr };
                    Step::hypercall(nr, &[a0 % 16, h, a1, a2, h])
                })
                .collect();
            let n = steps.len();
            r.script(1, steps);
            r.script(1, [shutdown(GUEST_RAM0_BASE + 0x200)]);
            prop_assert_eq!(r.run(0), CpuExit::PowerOff);
            let e = r.entries(1);
            prop_assert!(e.len() >= 2 && e.len() <= n + 2);
        }

        /// Trap decoding accepts every ESR/FAR/HPFAR.
        #[test]
        fn exit_decode_total(esr in any::<u64>(), far in any::<u64>(), hpfar in any::<u64>()) {
            let raw = RawExit { vector: crate::arch::ExitVector::Sync, esr, far, hpfar };
            let _ = ExitReason::decode(&raw);
        }
    }
}

#[test]
fn memory_op_goes_through_memops_with_planned_flushes() {
    let r = rig();
    let b = GUEST_RAM0_BASE;
    let mut k = kernel(b"");
    // struct xen_memory_reservation at +0x300: extent_start = +0x400, 1 extent,
    // order 0, DOMID_SELF; the extent list names gfn of IPA +0x10_0000.
    k[0x300..0x308].copy_from_slice(&(b + 0x400).to_le_bytes());
    k[0x308..0x310].copy_from_slice(&1u64.to_le_bytes());
    k[0x318..0x31a].copy_from_slice(&0x7ff0u16.to_le_bytes());
    k[0x400..0x408].copy_from_slice(&((b + 0x10_0000) >> 12).to_le_bytes());
    r.add(&k);
    r.sys
        .with_guest_memory(1, |gm| {
            gm.copy_to_guest(Ipa(b + 0x10_0000), b"old data").unwrap()
        })
        .unwrap();
    r.script(
        1,
        [
            Step::hypercall(12, &[1, b + 0x300]),
            Step::hypercall(12, &[6, b + 0x300]),
            Step::hypercall(12, &[63, 0x1000_0000]),
        ],
    );
    r.script(1, [shutdown(b + 0x200)]);
    let before = r.sys.pool_free();
    assert_eq!(r.run(0), CpuExit::PowerOff);
    let e = r.entries(1);
    assert_eq!(e[1].x[0], 1, "decrease_reservation: 1 extent");
    assert_eq!(e[2].x[0], 1, "populate_physmap: 1 extent");
    assert_eq!(
        e[3].x[0], EFAULT,
        "remove_from_physmap_batch with a bad handle"
    );
    let ops = r.machine.lock().tlb_ops();
    let full = ops
        .iter()
        .filter(|o| matches!(o, TlbOp::Vmalls12e1is { .. }))
        .count();
    // xen-compat: one full flush for the decrease, one for the destroy.
    assert_eq!(full, 2, "{ops:?}");
    assert_eq!(r.sys.pool_free(), POOL_FRAMES);
    assert_eq!(before, POOL_FRAMES - 512);
}

/// The control domain builds, runs and destroys a domU through domctl,
/// sysctl and memory_op, as Xen's toolstack does.
#[test]
fn control_domain_builds_a_domu_through_domctl() {
    let r = rig();
    let b = GUEST_RAM0_BASE;
    let mut k = vec![0u8; 0x2000];
    let w32 = |k: &mut Vec<u8>, o: usize, v: u32| k[o..o + 4].copy_from_slice(&v.to_le_bytes());
    let w64 = |k: &mut Vec<u8>, o: usize, v: u64| k[o..o + 8].copy_from_slice(&v.to_le_bytes());
    let domctl = |k: &mut Vec<u8>, o: usize, cmd: u32, dom: u16| {
        k[o..o + 4].copy_from_slice(&cmd.to_le_bytes());
        k[o + 4..o + 8].copy_from_slice(&0x17u32.to_le_bytes());
        k[o + 8..o + 10].copy_from_slice(&dom.to_le_bytes());
    };
    // Modules are built in order: d0 (VMID 1), d1 (VMID 2); the domU the
    // control domain creates becomes d2 (VMID 3).
    w32(&mut k, 0x100, 3); // sysctl physinfo
    w32(&mut k, 0x104, 0x16);
    domctl(&mut k, 0x200, 1, 0); // createdomain, hv picks the domid
    w32(&mut k, 0x200 + 16 + 20, 3); // hvm | hap
    w32(&mut k, 0x200 + 16 + 28, 1); // max_vcpus
    domctl(&mut k, 0x300, 11, 2); // max_mem 16 KiB = 4 pages
    w64(&mut k, 0x310, 16);
    domctl(&mut k, 0x400, 12, 2); // setvcpucontext vcpu 0
    w64(&mut k, 0x418, b + 0x1000);
    domctl(&mut k, 0x500, 4, 2); // unpause
    domctl(&mut k, 0x600, 5, 2); // getdomaininfo
    domctl(&mut k, 0x700, 5, 9); // getdomaininfo of nobody
    domctl(&mut k, 0x800, 2, 2); // destroydomain
    domctl(&mut k, 0x880, 1, 0); // createdomain without hvm|hap
    w32(&mut k, 0x880 + 16 + 28, 1);
    w64(&mut k, 0x900, b + 0xa00); // reservation: 4 gfns for d2
    w64(&mut k, 0x908, 4);
    k[0x918..0x91a].copy_from_slice(&2u16.to_le_bytes());
    for i in 0..4u64 {
        w64(&mut k, 0xa00 + 8 * i as usize, 0x40000 + i);
    }
    w32(&mut k, 0x1000, 1); // vcpu_guest_context: online
    w64(&mut k, 0x1008, 0x1234); // x0
    w64(&mut k, 0x1008 + 248, b); // pc
    w64(&mut k, 0x1008 + 256, 0x3c5); // cpsr
    r.sys.with_mem(|m, _| {
        m.write(PhysAddr(MODULES), &k[..0x1000]);
        m.write(PhysAddr(MODULES + 0x1000), &k[0x1000..]);
    });
    let modules = [
        BootModule {
            pa: PhysAddr(MODULES),
            size: 0x2000,
            kind: ModuleKind::Kernel,
            bootargs: Some("dom0 mem=2M"),
        },
        BootModule {
            pa: PhysAddr(MODULES),
            size: 0x2000,
            kind: ModuleKind::Kernel,
            bootargs: Some("mem=1M"),
        },
    ];
    r.sys.add_module_domains(&modules);
    let dc = |o: u64| Step::hypercall(36, &[b + o]);
    r.script(
        1,
        [
            Step::hypercall(35, &[b + 0x100]),
            dc(0x200),
            dc(0x880),
            dc(0x300),
            Step::hypercall(12, &[6, b + 0x900]),
            dc(0x400),
            dc(0x500),
            dc(0x600),
            dc(0x700),
            Step::hypercall(29, &[0]),
            dc(0x800),
            shutdown(b + 0x1ff0),
        ],
    );
    r.script(2, [dc(0x200), shutdown(b + 0x1ff0)]);
    r.script(3, [Step::hypercall(17, &[0]), shutdown(b + 0x10)]);
    let before = r.sys.pool_free();
    assert_eq!(r.run(0), CpuExit::PowerOff);
    let e0 = r.entries(1);
    let want = [
        (0, "sysctl physinfo"),
        (0, "createdomain"),
        (EINVAL, "createdomain without hvm|hap"),
        (0, "max_mem"),
        (4, "populate_physmap for d2: 4 extents"),
        (0, "setvcpucontext"),
        (0, "unpausedomain"),
        (0, "getdomaininfo"),
        ((-3i64) as u64, "getdomaininfo of a missing domain: -ESRCH"),
        (0, "yield"),
        (0, "destroydomain"),
    ];
    for (i, (x0, what)) in want.iter().enumerate() {
        assert_eq!(e0[i + 1].x[0], *x0, "{what}");
    }
    assert_eq!(
        r.entries(2)[1].x[0],
        (-1i64) as u64,
        "domctl from an unprivileged domain: -EPERM"
    );
    let d2 = r.entries(3);
    assert_eq!(
        (d2[0].pc, d2[0].x[0], d2[0].pstate),
        (b, 0x1234, 0x3c5),
        "the context set by domctl"
    );
    assert_eq!(d2[1].x[0], (4 << 16) | 20);
    for l in [
        "hv: d2: created by domctl, VMID 3",
        "hv: d2 ended (poweroff)",
        "hv: d2 destroyed (1 VMIDs in use)",
        "hv: d0 ended (poweroff)",
    ] {
        assert!(r.lines.has(l), "{l}: {:?}", r.lines.all());
    }
    // Two DTB guests also hold their Xen pages (xen::domu).
    assert_eq!(
        before,
        POOL_FRAMES - 512 - 256 - 2 * crate::xen::domu::XEN_FRAMES
    );
    assert_eq!(r.sys.pool_free(), POOL_FRAMES);
    r.sys.with_mem(|m, vmids| {
        assert_eq!(m.allocated(Kind::Table), 0);
        assert_eq!(vmids, 0);
    });
}

#[test]
fn pool_carving_takes_the_largest_run_it_can_get() {
    struct Frames {
        largest: u64,
        asked: Vec<u64>,
    }
    impl FrameSource for Frames {
        fn alloc_frames(&mut self, count: u64, align_pages: u64) -> Option<PhysAddr> {
            assert_eq!(align_pages, 512);
            self.asked.push(count);
            (count <= self.largest).then_some(PhysAddr(0x4000_0000))
        }
        fn free_frames(&mut self, _pa: PhysAddr, _count: u64) {}
    }
    let mut f = Frames {
        largest: 150_000,
        asked: Vec::new(),
    };
    let pool = carve_pool(&mut f, 262_000);
    assert_eq!(f.asked[0], (262_000 - POOL_RESERVE_FRAMES) & !511);
    assert!(
        pool.total_frames() <= 150_000 && pool.total_frames() > 150_000 * 7 / 8,
        "{}",
        pool.total_frames()
    );
    assert_eq!(pool.total_frames() % 512, 0);
    let mut none = Frames {
        largest: 0,
        asked: Vec::new(),
    };
    assert_eq!(carve_pool(&mut none, 100_000).total_frames(), 0);
    assert_eq!(
        carve_pool(&mut none, 1000).total_frames(),
        0,
        "below the reserve"
    );
}

#[test]
fn vmid_exhaustion_refuses_a_domain_and_an_ended_one_frees_its_vmid() {
    let r = rig();
    for _ in 0..3 {
        r.add(&kernel(b""));
    }
    let img = kernel(b"");
    let fourth = r.sys.add_domain(
        DomainSpec::domu(RAM),
        BootImage {
            size: img.len() as u64,
            read: &mut |_m: &FakeMem, off, buf: &mut [u8]| {
                buf.copy_from_slice(&img[off as usize..off as usize + buf.len()]);
            },
        },
        None,
    );
    assert_eq!(
        fourth,
        Err(crate::domain::DomainError::NoVmid),
        "2-bit VMIDs: 3 domains at most"
    );
    assert_eq!(
        r.sys.pool_free(),
        POOL_FRAMES - 3 * 512,
        "the refused domain left nothing behind"
    );
    // d1 ends; its VMID comes back (after its flush) and the next domain gets it.
    r.script(1, [Step::data_abort(0x1000_0000, false)]);
    r.script(
        2,
        [Step::hypercall(29, &[0]), shutdown(GUEST_RAM0_BASE + 0x200)],
    );
    r.script(
        3,
        [Step::hypercall(29, &[0]), shutdown(GUEST_RAM0_BASE + 0x200)],
    );
    assert_eq!(r.run(0), CpuExit::PowerOff);
    r.sys.with_mem(|_, vmids| assert_eq!(vmids, 0));
    assert_eq!(r.add(&kernel(b"")), 5, "domids are not reused; the VMID is");
    let m = r.machine.lock();
    let flushed: Vec<u16> = m
        .tlb_ops()
        .iter()
        .filter_map(|o| match o {
            TlbOp::Vmalls12e1is { vmid } => Some(vmid.0),
            _ => None,
        })
        .collect();
    assert_eq!(
        flushed,
        vec![1, 2, 3],
        "each VMID flushed once before it could be reused"
    );
}

/// TLB ops executed between guest entries `from` and `to` (0 = first entry)
/// of `vmid`'s vCPU 0, in order.
fn ops_between(r: &Rig, vmid: u16, from: usize, to: usize) -> Vec<TlbOp> {
    let m = r.machine.lock();
    let mut n = 0usize;
    let mut out = Vec::new();
    for e in &m.events {
        match e {
            Event::Enter { vmid: v, .. } if v.0 == vmid => {
                n += 1;
                if n > to {
                    break;
                }
            }
            Event::Tlb { op, .. } if n > from => out.push(*op),
            _ => {}
        }
    }
    out
}

/// Back-to-back single XENMEM_remove_from_physmap calls stay pending
/// (targeted) and are flushed when the caller's next other exit arrives,
/// before hv handles it; xen-compat flushes the whole VMID after each one.
#[test]
fn single_removes_coalesce_until_the_next_other_exit() {
    for policy in [
        Policy::Targeted {
            has_range: true,
            nested: false,
        },
        Policy::XenCompat,
    ] {
        let r = rig_with(policy);
        let b = GUEST_RAM0_BASE;
        let mut k = kernel(b"");
        // Three struct xen_remove_from_physmap (DOMID_SELF, gpfn) at +0x300.
        for i in 0..3u64 {
            let o = 0x300 + 16 * i as usize;
            k[o..o + 2].copy_from_slice(&0x7ff0u16.to_le_bytes());
            k[o + 8..o + 16].copy_from_slice(&((b >> 12) + 0x100 + i).to_le_bytes());
        }
        r.add(&k);
        let rm = |i: u64| Step::hypercall(12, &[15, b + 0x300 + 16 * i]);
        r.script(1, [rm(0), rm(1), rm(2), Step::hypercall(17, &[0])]);
        r.script(1, [shutdown(b + 0x200)]);
        assert_eq!(r.run(0), CpuExit::PowerOff);
        let e = r.entries(1);
        assert_eq!((e[1].x[0], e[2].x[0], e[3].x[0]), (0, 0, 0), "{policy:?}");
        let full = |ops: &[TlbOp]| {
            ops.iter()
                .filter(|o| matches!(o, TlbOp::Vmalls12e1is { .. }))
                .count()
        };
        // Entries: 0 boot, 1..3 after each remove, 4 after xen_version.
        let during = ops_between(&r, 1, 1, 3);
        let at_close = ops_between(&r, 1, 3, 4);
        if policy.is_xen_compat() {
            assert_eq!(full(&during), 2, "{during:?}");
            assert_eq!(full(&ops_between(&r, 1, 0, 1)), 1);
            assert!(at_close.is_empty(), "{at_close:?}");
        } else {
            // The first remove splits the RAM block (break-before-make runs
            // at once); the next two add nothing until the window closes.
            assert!(during.is_empty(), "{during:?}");
            assert_eq!(full(&at_close), 0, "{at_close:?}");
            assert!(
                at_close
                    .iter()
                    .any(|o| matches!(o, TlbOp::Ripas2e1is { .. } | TlbOp::Ipas2e1is { .. }))
                    && at_close
                        .iter()
                        .any(|o| matches!(o, TlbOp::Vmalle1is { .. })),
                "{at_close:?}"
            );
        }
    }
}

/// With hv's heap at its reserve, guest-driven mappings fail with -ENOMEM
/// (populate_physmap reports 0 extents done) and hv keeps running.
#[test]
fn a_full_heap_refuses_guest_mappings_without_panicking() {
    let mut r = rig();
    r.sys.set_heap_probe(|| crate::mm::heap::RESERVE);
    let b = GUEST_RAM0_BASE;
    let mut k = kernel(b"");
    // populate_physmap: 1 extent, order 0, DOMID_SELF, gfn of IPA +0x10_0000
    // (first given back by decrease_reservation, which needs no room).
    k[0x300..0x308].copy_from_slice(&(b + 0x400).to_le_bytes());
    k[0x308..0x310].copy_from_slice(&1u64.to_le_bytes());
    k[0x318..0x31a].copy_from_slice(&0x7ff0u16.to_le_bytes());
    k[0x400..0x408].copy_from_slice(&((b + 0x10_0000) >> 12).to_le_bytes());
    r.add(&k);
    r.script(
        1,
        [
            Step::hypercall(12, &[1, b + 0x300]),
            Step::hypercall(12, &[6, b + 0x300]),
            Step::hypercall(17, &[0]),
            shutdown(b + 0x200),
        ],
    );
    assert_eq!(r.run(0), CpuExit::PowerOff);
    let e = r.entries(1);
    assert_eq!(e[1].x[0], 1, "decrease_reservation frees records: allowed");
    assert_eq!(e[2].x[0], 0, "populate_physmap: no room, 0 extents");
    assert_eq!(e[3].x[0], (4 << 16) | 20, "hv still answers");
    assert_eq!(r.sys.pool_free(), POOL_FRAMES);
}

/// createdomain with hv's heap at its reserve: -ENOMEM, nothing created,
/// and the control domain runs on.
#[test]
fn createdomain_with_a_full_heap_is_refused() {
    let mut r = rig();
    r.sys.set_heap_probe(|| crate::mm::heap::RESERVE);
    let b = GUEST_RAM0_BASE;
    let mut k = vec![0u8; 0x1000];
    k[0x200..0x204].copy_from_slice(&1u32.to_le_bytes()); // createdomain
    k[0x204..0x208].copy_from_slice(&0x17u32.to_le_bytes());
    k[0x200 + 16 + 20..0x200 + 16 + 24].copy_from_slice(&3u32.to_le_bytes()); // hvm | hap
    k[0x200 + 16 + 28..0x200 + 16 + 32].copy_from_slice(&1u32.to_le_bytes()); // max_vcpus
    r.sys.with_mem(|m, _| m.write(PhysAddr(MODULES), &k));
    r.sys.add_module_domains(&[BootModule {
        pa: PhysAddr(MODULES),
        size: 0x1000,
        kind: ModuleKind::Kernel,
        bootargs: Some("dom0 mem=2M"),
    }]);
    r.script(
        1,
        [
            Step::hypercall(36, &[b + 0x200]),
            Step::hypercall(17, &[0]),
            shutdown(b + 0xff0),
        ],
    );
    assert_eq!(r.run(0), CpuExit::PowerOff);
    let e = r.entries(1);
    assert_eq!(e[1].x[0], (-12i64) as u64, "createdomain: -ENOMEM");
    assert_eq!(e[2].x[0], (4 << 16) | 20, "hv still answers");
    assert!(
        !r.lines
            .all()
            .iter()
            .any(|l| l.contains("created by domctl")),
        "{:?}",
        r.lines.all()
    );
}

/// SCHEDOP_block from a guest whose GIC is off cannot sleep forever: it
/// returns 0 and the guest runs on (h10, issue 5).
#[test]
fn sched_block_without_gic_returns() {
    let r = rig();
    assert_eq!(r.add(&kernel(b"after block\n")), 1);
    r.script(
        1,
        [
            Step::hypercall(29, &[1]),
            Step::hypercall(18, &[0, 12, GUEST_RAM0_BASE + 0x100]),
            shutdown(GUEST_RAM0_BASE + 0x200),
        ],
    );
    assert_eq!(r.run(0), CpuExit::PowerOff);
    assert_eq!(r.entries(1)[1].x[0], 0, "SCHEDOP_block returned 0");
    assert!(r.lines.has("(d1) after block"), "{:?}", r.lines.all());
}

#[test]
fn kicks_reach_every_pcpu_however_many() {
    use super::run::kick_targets;
    let all = |k, n, me| kick_targets(k, n, me).collect::<Vec<_>>();
    assert_eq!(all(0b1010, 8, 1), [3]);
    // "Any pCPU" (also how vgic names a pCPU >= 64) reaches all 70 but the sender.
    let v = all(u64::MAX, 70, 5);
    assert_eq!(v.len(), 69);
    assert!(v.contains(&69) && v.contains(&64) && !v.contains(&5));
    // A single bit never names a pCPU beyond 63.
    assert_eq!(all(1 << 63, 70, 0), [63]);
}
