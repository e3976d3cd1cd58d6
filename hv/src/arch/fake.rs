//! Recording, hostile fake of [`super::Arch`], [`super::PhysMem`] and
//! [`memops::TableMem`] for host tests.
//!
//! - A 2-bit VMID space, so VMID exhaustion and reuse run in every test.
//! - Guest execution is *scripted*: each vCPU (keyed by the VMID in the loaded
//!   `VTTBR_EL2` and `VMPIDR_EL2.Aff0`) has a queue of [`Step`]s; `run_vcpu`
//!   pops one, applies its register effects and returns its exit. Running a
//!   vCPU without a script, or calling EL1 accessors with nothing loaded, panics:
//!   those are contract violations by hv, and a test must see them.
//! - Every `tlb_op`, `write_el1`, load/put, guest entry and `system_off` is
//!   recorded in one log shared by all fake CPUs ([`FakeMachine`]), with the
//!   CPU index, so tests assert what hv *did*.
//! - Physical memory is a sparse map of 4 KiB frames inside a RAM window;
//!   accesses outside that window or across a frame boundary panic.

extern crate std;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;

use memops::{InvalidationSet, TableMem};
use pv_tlb::{PhysAddr, TlbOp, Vmid, PAGE_SIZE};
use spin::Mutex;

use super::FrameSource;
use super::{Arch, El1Reg, El1Sysregs, ExitVector, GuestGprs, PhysMem, RawExit, Stage2Regs};

/// Payload of the panic [`FakeArch::system_off`] raises (tests catch it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemOff {
    /// The CPU that powered off.
    pub cpu: usize,
}

/// One thing hv did to the fake machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `vcpu_load` with the VMID of its VTTBR and its VMPIDR.
    Load {
        /// pCPU.
        cpu: usize,
        /// VMID from `VTTBR_EL2[63:48]`.
        vmid: Vmid,
        /// `VMPIDR_EL2`.
        vmpidr: u64,
    },
    /// `vcpu_put`.
    Put {
        /// pCPU.
        cpu: usize,
    },
    /// `write_el1`.
    WriteEl1 {
        /// pCPU.
        cpu: usize,
        /// Register.
        reg: El1Reg,
        /// Value.
        val: u64,
    },
    /// `tlb_op`.
    Tlb {
        /// pCPU.
        cpu: usize,
        /// The operation.
        op: TlbOp,
    },
    /// A guest entry (`run_vcpu`) with the registers hv handed in.
    Enter {
        /// pCPU.
        cpu: usize,
        /// VMID of the loaded stage-2.
        vmid: Vmid,
        /// vCPU index (`VMPIDR_EL2.Aff0`).
        vcpu: u8,
        /// The guest registers at entry.
        gprs: Box<GuestGprs>,
    },
    /// `dcache_clean_inval`.
    DcacheCleanInval {
        /// pCPU.
        cpu: usize,
        /// First byte.
        pa: PhysAddr,
        /// Bytes.
        len: u64,
    },
    /// `system_off`.
    SystemOff {
        /// pCPU.
        cpu: usize,
    },
    /// `ich_write_lr`.
    LrWrite {
        /// pCPU.
        cpu: usize,
        /// List register index.
        n: usize,
        /// Value.
        val: u64,
    },
    /// `ich_read_lr`.
    LrRead {
        /// pCPU.
        cpu: usize,
        /// List register index.
        n: usize,
    },
    /// `ich_write_hcr`.
    IchHcr {
        /// pCPU.
        cpu: usize,
        /// Value.
        val: u64,
    },
    /// `ich_elrsr` read.
    IchElrsr {
        /// pCPU.
        cpu: usize,
    },
    /// `ich_write_vmcr`.
    IchVmcr {
        /// pCPU.
        cpu: usize,
        /// Value.
        val: u64,
    },
    /// `irq_eoi`.
    Eoi {
        /// pCPU.
        cpu: usize,
        /// INTID.
        intid: u32,
    },
    /// `irq_drop_priority` (`ICC_EOIR1_EL1` alone, EOImode = 1).
    PrioDrop {
        /// pCPU.
        cpu: usize,
        /// INTID.
        intid: u32,
    },
    /// An operation on the physical distributor ([`FakeDist`]).
    Dist(DistOp),
    /// `kick` from `cpu` to `to`.
    Kick {
        /// pCPU sending.
        cpu: usize,
        /// pCPU kicked.
        to: usize,
    },
    /// `set_hv_timer`.
    HvTimer {
        /// pCPU.
        cpu: usize,
        /// Deadline (counter ticks).
        deadline: Option<u64>,
    },
}

/// One operation on the fake physical distributor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistOp {
    /// [`crate::irq::PhysDist::spi_configure`].
    Configure {
        /// INTID.
        intid: u32,
        /// Level-sensitive.
        level: bool,
        /// Priority.
        priority: u8,
        /// Target pCPU.
        target: usize,
    },
    /// `GICD_ISENABLER`.
    Enable(u32),
    /// `GICD_ICENABLER`.
    Disable(u32),
    /// `GICD_ISPENDR` (true) / `GICD_ICPENDR`.
    SetPending(u32, bool),
    /// `GICD_ICACTIVER`.
    Deactivate(u32),
}

/// A recording fake of the physical distributor: every operation goes into
/// the machine's event log ([`Event::Dist`]) and its SPI enable set.
pub struct FakeDist {
    machine: SharedMachine,
    lines: u32,
}

impl FakeDist {
    /// A distributor with `lines` interrupt lines on `machine`.
    #[must_use]
    pub fn new(machine: SharedMachine, lines: u32) -> Self {
        Self { machine, lines }
    }

    fn op(&self, op: DistOp) {
        let mut m = self.machine.lock();
        match op {
            DistOp::Enable(i) => {
                m.spi_enabled.insert(i);
            }
            DistOp::Disable(i) | DistOp::Configure { intid: i, .. } => {
                m.spi_enabled.remove(&i);
            }
            _ => {}
        }
        m.events.push(Event::Dist(op));
    }
}

impl crate::irq::PhysDist for FakeDist {
    fn lines(&self) -> u32 {
        self.lines
    }
    fn spi_configure(&self, intid: u32, level: bool, priority: u8, target: usize) {
        self.op(DistOp::Configure {
            intid,
            level,
            priority,
            target,
        });
    }
    fn spi_enable(&self, intid: u32) {
        self.op(DistOp::Enable(intid));
    }
    fn spi_disable(&self, intid: u32) {
        self.op(DistOp::Disable(intid));
    }
    fn spi_set_pending(&self, intid: u32, pending: bool) {
        self.op(DistOp::SetPending(intid, pending));
    }
    fn spi_deactivate(&self, intid: u32) {
        self.op(DistOp::Deactivate(intid));
    }
}

/// One scripted guest step: register effects, then an exit.
#[derive(Debug, Clone)]
pub struct Step {
    /// Registers the "guest" sets before exiting (`(n, value)` for xN).
    pub set_x: Vec<(usize, u64)>,
    /// Added to the pc before the exit (an `HVC` leaves `ELR_EL2` past itself).
    pub pc_advance: u64,
    /// The exit.
    pub exit: RawExit,
    /// What the "guest" did to the list registers before exiting (`(n, value)`).
    pub lr_set: Vec<(usize, u64)>,
    /// Physical interrupts that became pending on this pCPU with the exit.
    pub raise: Vec<u32>,
    /// EL1 registers the "guest" wrote before exiting (e.g. its `CNTV_CTL_EL0`).
    pub el1_set: Vec<(El1Reg, u64)>,
}

impl Step {
    /// `HVC #imm16` with x16 = `nr` and x0.. = `args`.
    #[must_use]
    pub fn hvc(imm16: u16, nr: u64, args: &[u64]) -> Step {
        let mut set_x: Vec<(usize, u64)> = args.iter().copied().enumerate().collect();
        set_x.push((16, nr));
        Step {
            set_x,
            pc_advance: 4,
            exit: sync_exit((0x16 << 26) | (1 << 25) | u64::from(imm16), 0, 0),
            lr_set: Vec::new(),
            raise: Vec::new(),
            el1_set: Vec::new(),
        }
    }

    /// A Xen hypercall: `HVC #0xEA1`.
    #[must_use]
    pub fn hypercall(nr: u64, args: &[u64]) -> Step {
        Step::hvc(0xea1, nr, args)
    }

    /// `SMC #0` with x0.. = `args` (the pc stays on the SMC, as hardware reports it).
    #[must_use]
    pub fn smc(args: &[u64]) -> Step {
        Step {
            set_x: args.iter().copied().enumerate().collect(),
            pc_advance: 0,
            exit: sync_exit(0x17 << 26 | (1 << 25), 0, 0),
            lr_set: Vec::new(),
            raise: Vec::new(),
            el1_set: Vec::new(),
        }
    }

    /// A data abort (write if `write`) at `ipa` with a translation fault level 3.
    #[must_use]
    pub fn data_abort(ipa: u64, write: bool) -> Step {
        let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (u64::from(write) << 6) | 0x07;
        Step {
            set_x: Vec::new(),
            pc_advance: 0,
            exit: sync_exit(esr, 0xffff_0000_0000_0000 | ipa, (ipa >> 12) << 4),
            lr_set: Vec::new(),
            raise: Vec::new(),
            el1_set: Vec::new(),
        }
    }

    /// WFI (`wfe` false) or WFE.
    #[must_use]
    pub fn wfx(wfe: bool) -> Step {
        Step {
            set_x: Vec::new(),
            pc_advance: 0,
            exit: sync_exit((0x01 << 26) | (1 << 25) | u64::from(wfe), 0, 0),
            lr_set: Vec::new(),
            raise: Vec::new(),
            el1_set: Vec::new(),
        }
    }

    /// A trapped `MRS`/`MSR` with the given ESR ISS.
    #[must_use]
    pub fn sysreg(iss: u64) -> Step {
        Step {
            set_x: Vec::new(),
            pc_advance: 0,
            exit: sync_exit((0x18 << 26) | (1 << 25) | iss, 0, 0),
            lr_set: Vec::new(),
            raise: Vec::new(),
            el1_set: Vec::new(),
        }
    }

    /// A physical IRQ.
    #[must_use]
    pub fn irq() -> Step {
        Step {
            set_x: Vec::new(),
            pc_advance: 0,
            exit: RawExit {
                vector: ExitVector::Irq,
                esr: 0,
                far: 0,
                hpfar: 0,
            },
            lr_set: Vec::new(),
            raise: Vec::new(),
            el1_set: Vec::new(),
        }
    }

    /// A physical IRQ exit with `intids` pending on the pCPU.
    #[must_use]
    pub fn irq_with(intids: &[u32]) -> Step {
        let mut s = Step::irq();
        s.raise = intids.to_vec();
        s
    }

    /// The "guest" also sets its EL1 register `reg` to `val` before this exit.
    #[must_use]
    pub fn with_el1(mut self, reg: El1Reg, val: u64) -> Step {
        self.el1_set.push((reg, val));
        self
    }

    /// Physical `intids` also become pending on the pCPU with this exit.
    #[must_use]
    pub fn raising(mut self, intids: &[u32]) -> Step {
        self.raise.extend_from_slice(intids);
        self
    }

    /// The "guest" also sets list register `n` to `val` before this exit.
    #[must_use]
    pub fn with_lr(mut self, n: usize, val: u64) -> Step {
        self.lr_set.push((n, val));
        self
    }
}

fn sync_exit(esr: u64, far: u64, hpfar: u64) -> RawExit {
    RawExit {
        vector: ExitVector::Sync,
        esr,
        far,
        hpfar,
    }
}

/// State shared by every fake CPU of one test: scripts and the event log.
#[derive(Default)]
pub struct FakeMachine {
    scripts: BTreeMap<(u16, u8), VecDeque<Step>>,
    /// Everything hv did, in order.
    pub events: Vec<Event>,
    counter: u64,
    /// Physical interrupts pending per pCPU (what `irq_ack` returns, in order).
    pub phys: BTreeMap<usize, VecDeque<u32>>,
    /// `wait_for_interrupt` calls (counted, not logged: idle pCPUs loop).
    pub wfis: u64,
    /// `set_wfe_trap` calls: (pCPU, trap), in order.
    pub wfe_trap: Vec<(usize, bool)>,
    /// The host ID registers `host_id_reg` returns, by `(CRm, op2)` (absent: 0).
    pub id_regs: BTreeMap<(u8, u8), u64>,
    /// SPIs enabled in the fake physical distributor ([`FakeDist`]).
    pub spi_enabled: alloc::collections::BTreeSet<u32>,
}

/// The shared machine handle.
pub type SharedMachine = Arc<Mutex<FakeMachine>>;

impl FakeMachine {
    /// A new machine behind a shared handle.
    #[must_use]
    pub fn new_shared() -> SharedMachine {
        Arc::new(Mutex::new(FakeMachine::default()))
    }

    /// Append `steps` to the script of vCPU `vcpu` of the domain running with `vmid`.
    pub fn script(&mut self, vmid: u16, vcpu: u8, steps: impl IntoIterator<Item = Step>) {
        self.scripts.entry((vmid, vcpu)).or_default().extend(steps);
    }

    /// Steps not yet consumed by vCPU `vcpu` of `vmid`.
    #[must_use]
    pub fn remaining(&self, vmid: u16, vcpu: u8) -> usize {
        self.scripts.get(&(vmid, vcpu)).map_or(0, VecDeque::len)
    }

    /// Registers at each entry of vCPU `vcpu` of `vmid`, in order.
    #[must_use]
    pub fn entries(&self, vmid: u16, vcpu: u8) -> Vec<GuestGprs> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Enter {
                    vmid: v,
                    vcpu: c,
                    gprs,
                    ..
                } if v.0 == vmid && *c == vcpu => Some(**gprs),
                _ => None,
            })
            .collect()
    }

    /// Every TLB op executed, in order.
    #[must_use]
    pub fn tlb_ops(&self) -> Vec<TlbOp> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Tlb { op, .. } => Some(*op),
                _ => None,
            })
            .collect()
    }

    /// Every `dcache_clean_inval` range, in order.
    #[must_use]
    pub fn dcache_cleans(&self) -> Vec<(PhysAddr, u64)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::DcacheCleanInval { pa, len, .. } => Some((*pa, *len)),
                _ => None,
            })
            .collect()
    }

    /// Make physical `intid` pending on pCPU `cpu`.
    pub fn raise(&mut self, cpu: usize, intid: u32) {
        self.phys.entry(cpu).or_default().push_back(intid);
    }

    /// Every list-register access (`(cpu, n, Some(value))` for writes, `None` for reads), in order.
    #[must_use]
    pub fn lr_accesses(&self) -> Vec<(usize, usize, Option<u64>)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::LrWrite { cpu, n, val } => Some((*cpu, *n, Some(*val))),
                Event::LrRead { cpu, n } => Some((*cpu, *n, None)),
                _ => None,
            })
            .collect()
    }

    /// Every EL1 register write, in order.
    #[must_use]
    pub fn el1_writes(&self) -> Vec<(El1Reg, u64)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::WriteEl1 { reg, val, .. } => Some((*reg, *val)),
                _ => None,
            })
            .collect()
    }

    /// Every physical distributor operation, in order.
    #[must_use]
    pub fn dist_ops(&self) -> Vec<DistOp> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Dist(op) => Some(*op),
                _ => None,
            })
            .collect()
    }

    /// How hv ended each physical interrupt, in order: `(cpu, intid, deactivated)`
    /// (`irq_eoi` = priority drop and deactivation: true; `irq_drop_priority`: false).
    #[must_use]
    pub fn irq_ends(&self) -> Vec<(usize, u32, bool)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Eoi { cpu, intid } => Some((*cpu, *intid, true)),
                Event::PrioDrop { cpu, intid } => Some((*cpu, *intid, false)),
                _ => None,
            })
            .collect()
    }

    /// How many times `system_off` was called.
    #[must_use]
    pub fn system_offs(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::SystemOff { .. }))
            .count()
    }
}

struct Loaded {
    sysregs: El1Sysregs,
    vmid: Vmid,
    vcpu: u8,
}

/// One fake physical CPU.
pub struct FakeArch {
    cpu: usize,
    machine: SharedMachine,
    loaded: Option<Loaded>,
    /// This pCPU's list registers (the fake has 2).
    pub lrs: [u64; FAKE_LRS],
    /// This pCPU's `ICH_HCR_EL2`.
    pub hcr: u64,
    /// This pCPU's `ICH_VMCR_EL2`.
    pub vmcr: u64,
    apr: [[u64; 4]; 2],
    /// When set, `vcpu_load` notes the stage-2 there, as the real arch
    /// notes it in [`crate::tlb::stage2`].
    pub stage2_tlb: Option<Arc<crate::tlb::Stage2Tlb>>,
}

/// List registers of the fake GIC.
pub const FAKE_LRS: usize = 2;

impl FakeArch {
    /// CPU `cpu` of `machine`.
    #[must_use]
    pub fn new(cpu: usize, machine: SharedMachine) -> Self {
        Self {
            cpu,
            machine,
            loaded: None,
            lrs: [0; FAKE_LRS],
            hcr: 0,
            vmcr: 0,
            apr: [[0; 4]; 2],
            stage2_tlb: None,
        }
    }

    /// The shared machine.
    #[must_use]
    pub fn machine(&self) -> &SharedMachine {
        &self.machine
    }

    fn record(&self, e: Event) {
        self.machine.lock().events.push(e);
    }

    fn loaded(&self) -> &Loaded {
        self.loaded
            .as_ref()
            .expect("fake arch: EL1 access with no vCPU loaded")
    }
}

impl Arch for FakeArch {
    fn cpu_index(&self) -> usize {
        self.cpu
    }

    fn vcpu_load(&mut self, sysregs: &El1Sysregs, stage2: Stage2Regs, vmpidr: u64) {
        assert!(
            self.loaded.is_none(),
            "fake arch: vcpu_load over a loaded vCPU without vcpu_put"
        );
        let vmid = Vmid((stage2.vttbr >> 48) as u16);
        assert!(
            u32::from(vmid.0) < (1 << self.vmid_bits()),
            "fake arch: VMID {vmid:?} wider than 2 bits"
        );
        self.record(Event::Load {
            cpu: self.cpu,
            vmid,
            vmpidr,
        });
        if let Some(s2) = &self.stage2_tlb {
            s2.vmids
                .loaded(vmid, PhysAddr(stage2.vttbr & 0x0000_ffff_ffff_fffe));
        }
        self.loaded = Some(Loaded {
            sysregs: *sysregs,
            vmid,
            vcpu: (vmpidr & 0xff) as u8,
        });
    }

    fn vcpu_put(&mut self, sysregs: &mut El1Sysregs) {
        let l = self
            .loaded
            .take()
            .expect("fake arch: vcpu_put with no vCPU loaded");
        *sysregs = l.sysregs;
        self.record(Event::Put { cpu: self.cpu });
    }

    fn read_el1(&self, reg: El1Reg) -> u64 {
        self.loaded().sysregs.get(reg)
    }

    fn write_el1(&mut self, reg: El1Reg, val: u64) {
        let cpu = self.cpu;
        let l = self
            .loaded
            .as_mut()
            .expect("fake arch: write_el1 with no vCPU loaded");
        l.sysregs.set(reg, val);
        self.record(Event::WriteEl1 { cpu, reg, val });
    }

    fn run_vcpu(&mut self, gprs: &mut GuestGprs) -> RawExit {
        let (vmid, vcpu) = {
            let l = self.loaded();
            (l.vmid, l.vcpu)
        };
        let mut m = self.machine.lock();
        m.events.push(Event::Enter {
            cpu: self.cpu,
            vmid,
            vcpu,
            gprs: Box::new(*gprs),
        });
        m.counter += 1000;
        let step = m
            .scripts
            .get_mut(&(vmid.0, vcpu))
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| {
                panic!(
                    "fake arch: no scripted step left for VMID {} vCPU {vcpu}",
                    vmid.0
                )
            });
        for (n, v) in &step.set_x {
            gprs.x[*n] = *v;
        }
        if let Some(l) = self.loaded.as_mut() {
            for (r, v) in &step.el1_set {
                l.sysregs.set(*r, *v);
            }
        }
        for (n, v) in &step.lr_set {
            if let Some(lr) = self.lrs.get_mut(*n) {
                *lr = *v;
            }
        }
        for i in &step.raise {
            m.phys.entry(self.cpu).or_default().push_back(*i);
        }
        gprs.pc = gprs.pc.wrapping_add(step.pc_advance);
        step.exit
    }

    fn tlb_op(&mut self, op: TlbOp) {
        self.record(Event::Tlb { cpu: self.cpu, op });
    }

    fn dcache_clean_inval(&mut self, pa: PhysAddr, len: u64) {
        self.record(Event::DcacheCleanInval {
            cpu: self.cpu,
            pa,
            len,
        });
    }

    fn counter(&self) -> u64 {
        self.machine.lock().counter
    }

    fn counter_frequency(&self) -> u64 {
        1_000_000_000
    }

    fn vmid_bits(&self) -> u8 {
        2
    }

    fn ipa_bits(&self) -> u8 {
        40
    }

    fn system_off(&mut self) -> ! {
        self.record(Event::SystemOff { cpu: self.cpu });
        std::panic::panic_any(SystemOff { cpu: self.cpu })
    }

    fn guest_va_to_ipa(&mut self, va: u64, _write: bool) -> Option<u64> {
        let _ = self.loaded();
        // The fake's guests run with the MMU off: VA = IPA.
        Some(va)
    }

    fn host_id_reg(&self, crm: u8, op2: u8) -> u64 {
        self.machine
            .lock()
            .id_regs
            .get(&(crm, op2))
            .copied()
            .unwrap_or(0)
    }

    fn ich_vtr(&self) -> u64 {
        // ListRegs = 1 (2 LRs), PRIbits = 4 (5 bits).
        (4 << 29) | (FAKE_LRS as u64 - 1)
    }

    fn ich_read_lr(&mut self, n: usize) -> u64 {
        self.record(Event::LrRead { cpu: self.cpu, n });
        assert!(n < FAKE_LRS, "fake arch: read of LR {n} (only {FAKE_LRS})");
        self.lrs[n]
    }

    fn ich_write_lr(&mut self, n: usize, val: u64) {
        self.record(Event::LrWrite {
            cpu: self.cpu,
            n,
            val,
        });
        assert!(n < FAKE_LRS, "fake arch: write of LR {n} (only {FAKE_LRS})");
        self.lrs[n] = val;
    }

    fn ich_write_hcr(&mut self, val: u64) {
        self.record(Event::IchHcr { cpu: self.cpu, val });
        self.hcr = val;
    }

    fn ich_elrsr(&mut self) -> u64 {
        self.record(Event::IchElrsr { cpu: self.cpu });
        let mut e = 0;
        for (i, lr) in self.lrs.iter().enumerate() {
            if lr >> 62 == 0 {
                e |= 1 << i;
            }
        }
        e
    }

    fn ich_misr(&mut self) -> u64 {
        let valid = self.lrs.iter().filter(|lr| *lr >> 62 != 0).count();
        u64::from(self.hcr & 2 != 0 && valid <= 1) << 1
    }

    fn ich_read_vmcr(&mut self) -> u64 {
        self.vmcr
    }

    fn ich_write_vmcr(&mut self, val: u64) {
        self.record(Event::IchVmcr { cpu: self.cpu, val });
        self.vmcr = val;
    }

    fn ich_read_apr(&mut self, group1: bool, n: usize) -> u64 {
        self.apr[usize::from(group1)][n]
    }

    fn ich_write_apr(&mut self, group1: bool, n: usize, val: u64) {
        self.apr[usize::from(group1)][n] = val;
    }

    fn irq_ack(&mut self) -> Option<u32> {
        self.machine
            .lock()
            .phys
            .get_mut(&self.cpu)
            .and_then(VecDeque::pop_front)
    }

    fn irq_eoi(&mut self, intid: u32) {
        self.record(Event::Eoi {
            cpu: self.cpu,
            intid,
        });
    }

    fn irq_drop_priority(&mut self, intid: u32) {
        self.record(Event::PrioDrop {
            cpu: self.cpu,
            intid,
        });
    }

    fn kick(&mut self, to: usize) {
        let mut m = self.machine.lock();
        m.events.push(Event::Kick { cpu: self.cpu, to });
        m.phys
            .entry(to)
            .or_default()
            .push_back(super::irq::KICK_SGI);
    }

    fn set_hv_timer(&mut self, deadline: Option<u64>) {
        self.record(Event::HvTimer {
            cpu: self.cpu,
            deadline,
        });
    }

    fn set_wfe_trap(&mut self, trap: bool) {
        self.machine.lock().wfe_trap.push((self.cpu, trap));
    }

    fn wait_for_interrupt(&mut self) {
        {
            let mut m = self.machine.lock();
            m.wfis += 1;
            // Time passes while the pCPU sleeps.
            m.counter += 1_000_000;
        }
        std::thread::yield_now();
    }
}

/// Frame bookkeeping shared by a [`FakeMem`] and its [`FakeFrames`] handles.
struct FrameBook {
    base_pfn: u64,
    /// Allocated frame numbers (tables and RAM).
    allocated: BTreeMap<u64, Kind>,
    /// Next never-used frame number, counting down.
    next_top: u64,
    /// Freed frame numbers available again.
    free: Vec<u64>,
}

impl FrameBook {
    fn take(&mut self, count: u64, align: u64, kind: Kind) -> Option<u64> {
        if count == 0 {
            return None;
        }
        let align = align.max(1);
        if count == 1 && align == 1 {
            if let Some(pfn) = self.free.pop() {
                self.allocated.insert(pfn, kind);
                return Some(pfn);
            }
        }
        // Hostile but simple: contiguous runs come from the top down; frames
        // skipped for alignment stay unused.
        let first = self.next_top.checked_sub(count)? & !(align - 1);
        if first < self.base_pfn {
            return None;
        }
        self.next_top = first;
        for pfn in first..first + count {
            self.allocated.insert(pfn, kind);
        }
        Some(first)
    }

    fn give_back(&mut self, pfn: u64, kind: Kind) {
        let was = self.allocated.remove(&pfn);
        assert_eq!(
            was,
            Some(kind),
            "fake mem: freeing frame {pfn:#x} that is not an allocated {kind:?} frame"
        );
        self.free.push(pfn);
    }
}

/// Simulated host RAM: a sparse map of 4 KiB frames inside `[base, base + size)`,
/// with a frame allocator (for table frames, and for domain RAM through
/// [`FakeMem::frames`]) that hands frames out from the top down and refuses
/// double frees. Unwritten and freed frames read as garbage, not zeros.
pub struct FakeMem {
    base: u64,
    size: u64,
    frames: BTreeMap<u64, Box<[u8; PAGE_SIZE as usize]>>,
    book: Arc<Mutex<FrameBook>>,
    /// Every `invalidate_now` call (break-before-make), in order.
    pub invalidations: Vec<InvalidationSet>,
    /// When set, `free_table` tells it (as the real arch tells
    /// [`crate::tlb::stage2`]).
    pub stage2_tlb: Option<Arc<crate::tlb::Stage2Tlb>>,
}

/// A [`FrameSource`] handle on a [`FakeMem`]'s frames.
pub struct FakeFrames {
    book: Arc<Mutex<FrameBook>>,
}

impl FrameSource for FakeFrames {
    fn alloc_frames(&mut self, count: u64, align_pages: u64) -> Option<PhysAddr> {
        self.book
            .lock()
            .take(count, align_pages, Kind::Ram)
            .map(PhysAddr::from_page_number)
    }

    fn free_frames(&mut self, pa: PhysAddr, count: u64) {
        let mut b = self.book.lock();
        for pfn in pa.page_number()..pa.page_number() + count {
            b.give_back(pfn, Kind::Ram);
        }
    }
}

/// What an allocated fake frame is used for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A stage-2 table.
    Table,
    /// Domain RAM (from [`FrameSource`]).
    Ram,
}

impl FakeMem {
    /// `size` bytes of RAM at `base` (both 4 KiB aligned).
    #[must_use]
    pub fn new(base: u64, size: u64) -> Self {
        assert!(base.is_multiple_of(PAGE_SIZE) && size.is_multiple_of(PAGE_SIZE));
        Self {
            base,
            size,
            frames: BTreeMap::new(),
            book: Arc::new(Mutex::new(FrameBook {
                base_pfn: base >> 12,
                allocated: BTreeMap::new(),
                next_top: (base + size) >> 12,
                free: Vec::new(),
            })),
            invalidations: Vec::new(),
            stage2_tlb: None,
        }
    }

    /// A frame source over this memory.
    #[must_use]
    pub fn frames(&self) -> FakeFrames {
        FakeFrames {
            book: self.book.clone(),
        }
    }

    fn check(&self, pa: PhysAddr, len: usize) {
        let end = pa.0 + len as u64;
        assert!(
            pa.0 >= self.base && end <= self.base + self.size,
            "fake mem: access {pa} + {len:#x} outside RAM"
        );
        assert!(
            len == 0 || pa.page_number() == (end - 1) >> 12,
            "fake mem: access {pa} + {len:#x} crosses a frame boundary"
        );
    }

    fn frame(&mut self, pfn: u64) -> &mut [u8; PAGE_SIZE as usize] {
        self.frames
            .entry(pfn)
            .or_insert_with(|| Box::new([0xa5; PAGE_SIZE as usize]))
    }

    fn is_table(&self, pa: PhysAddr) -> bool {
        self.book.lock().allocated.get(&pa.page_number()) == Some(&Kind::Table)
    }

    /// Frames currently allocated as `kind`.
    #[must_use]
    pub fn allocated(&self, kind: Kind) -> usize {
        self.book
            .lock()
            .allocated
            .values()
            .filter(|k| **k == kind)
            .count()
    }
}

impl PhysMem for FakeMem {
    fn read(&self, pa: PhysAddr, buf: &mut [u8]) {
        self.check(pa, buf.len());
        let off = pa.page_offset() as usize;
        match self.frames.get(&pa.page_number()) {
            Some(f) => buf.copy_from_slice(&f[off..off + buf.len()]),
            None => buf.fill(0xa5),
        }
    }

    fn write(&mut self, pa: PhysAddr, buf: &[u8]) {
        self.check(pa, buf.len());
        let off = pa.page_offset() as usize;
        self.frame(pa.page_number())[off..off + buf.len()].copy_from_slice(buf);
    }

    fn zero_frame(&mut self, pa: PhysAddr) {
        assert!(
            pa.is_aligned(PAGE_SIZE),
            "fake mem: zero_frame({pa}) not aligned"
        );
        self.check(pa, PAGE_SIZE as usize);
        self.frame(pa.page_number()).fill(0);
    }
}

impl TableMem for FakeMem {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        let pfn = self.book.lock().take(1, 1, Kind::Table)?;
        self.frame(pfn).fill(0);
        Some(PhysAddr::from_page_number(pfn))
    }

    fn free_table(&mut self, pa: PhysAddr) {
        if let Some(s2) = &self.stage2_tlb {
            s2.vmids.table_freed(pa);
        }
        self.book.lock().give_back(pa.page_number(), Kind::Table);
        // Hostile: a freed table keeps no valid entries.
        self.frame(pa.page_number()).fill(0x5a);
    }

    fn read_entry(&self, table: PhysAddr, index: usize) -> u64 {
        assert!(self.is_table(table), "fake mem: {table} is no table");
        assert!(index < 512);
        let mut b = [0u8; 8];
        self.read(PhysAddr(table.0 + 8 * index as u64), &mut b);
        u64::from_le_bytes(b)
    }

    fn write_entry(&mut self, table: PhysAddr, index: usize, value: u64) {
        assert!(self.is_table(table), "fake mem: {table} is no table");
        assert!(index < 512);
        self.write(PhysAddr(table.0 + 8 * index as u64), &value.to_le_bytes());
    }

    fn invalidate_now(&mut self, set: &InvalidationSet) {
        self.invalidations.push(set.clone());
    }
}
