//! Shared pieces of hv's fuzz targets: a scripted guest CPU over hv's fake
//! arch that a target can stop when the guests have nothing left to do.
//!
//! `hv::arch::fake::FakeArch` (feature `fuzzing` of hv) runs guests from
//! scripts and panics when a script runs out; a fuzz input cannot know how
//! many exits hv will take (continuations, blocked vCPUs, domains a guest
//! creates), so [`GuestCpu`] wraps it with its own scripts and:
//! - re-issues an `HVC` whose continuation put the pc back on it (as a guest
//!   does), with hv's updated registers;
//! - gives a vCPU whose script ran out `PSCI SYSTEM_OFF` (vCPU 0) or
//!   `PSCI CPU_OFF` (others), so every domain ends and the teardown runs;
//! - keeps its own counter (1 ms per exit, 1 ms per idle wait), raises hv's
//!   EL2 timer interrupt when its deadline passed;
//! - ends the input ([`Stop`], by unwinding without the panic hook, which
//!   libFuzzer would count as a crash) after too many exits, or when the pCPU
//!   idles with nothing to wake it (every vCPU blocked for good is the
//!   guests' choice, not an hv bug).
#![allow(missing_docs)]

use std::collections::{BTreeMap, VecDeque};

use hv::arch::fake::FakeArch;
use hv::arch::{Arch, El1Reg, El1Sysregs, ExitVector, GuestGprs, RawExit, Stage2Regs};
use pv_tlb::{PhysAddr, TlbOp};

/// The unwind payload that ends an input early (not a finding).
pub struct Stop;

/// End this input (see [`Stop`]).
pub fn stop() -> ! {
    std::panic::resume_unwind(Box::new(Stop))
}

/// One scripted guest exit, with the register effects before it.
#[derive(Clone, Debug)]
pub struct GuestStep {
    pub set_x: Vec<(usize, u64)>,
    pub el1_set: Vec<(El1Reg, u64)>,
    pub lr_set: Vec<(usize, u64)>,
    pub raise: Vec<u32>,
    pub pc_advance: u64,
    pub exit: RawExit,
}

/// `PSCI` function ids the harness uses to end vCPUs.
pub const PSCI_CPU_OFF: u64 = 0x8400_0002;
pub const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;

/// An ESR for an exception class with IL set.
#[must_use]
pub const fn esr(ec: u64, iss: u64) -> u64 {
    (ec << 26) | (1 << 25) | (iss & 0x1ff_ffff)
}

impl GuestStep {
    #[must_use]
    pub fn new(exit: RawExit) -> Self {
        Self {
            set_x: Vec::new(),
            el1_set: Vec::new(),
            lr_set: Vec::new(),
            raise: Vec::new(),
            pc_advance: 0,
            exit,
        }
    }

    #[must_use]
    pub fn sync(esr: u64, far: u64, hpfar: u64) -> Self {
        Self::new(RawExit {
            vector: ExitVector::Sync,
            esr,
            far,
            hpfar,
        })
    }

    /// `HVC #imm` (the pc moves past it).
    #[must_use]
    pub fn hvc(imm: u16) -> Self {
        let mut s = Self::sync(esr(0x16, u64::from(imm)), 0, 0);
        s.pc_advance = 4;
        s
    }

    /// `SMC #0` with x0 = `fid` (the pc stays on it, as hardware reports).
    #[must_use]
    pub fn psci_smc(fid: u64) -> Self {
        let mut s = Self::sync(esr(0x17, 0), 0, 0);
        s.set_x.push((0, fid));
        s
    }
}

const MAX_EXITS: u32 = 4096;
const MAX_IDLE: u32 = 256;
const MAX_AUTO: u32 = 16;
/// hv's EL2 timer PPI.
const HYP_TIMER: u32 = hv::arch::irq::HYP_TIMER;

/// A fake pCPU that runs scripted guests (see the crate docs).
pub struct GuestCpu {
    pub inner: FakeArch,
    scripts: BTreeMap<(u16, u8), VecDeque<GuestStep>>,
    loaded: Option<(u16, u8)>,
    /// Per vCPU: the pc of its last `HVC` and the step, to re-issue continuations.
    last_hvc: BTreeMap<(u16, u8), (u64, GuestStep)>,
    auto: BTreeMap<(u16, u8), u32>,
    counter: u64,
    deadline: Option<u64>,
    exits: u32,
    idle: u32,
}

impl GuestCpu {
    #[must_use]
    pub fn new(inner: FakeArch) -> Self {
        Self {
            inner,
            scripts: BTreeMap::new(),
            loaded: None,
            last_hvc: BTreeMap::new(),
            auto: BTreeMap::new(),
            counter: 0,
            deadline: None,
            exits: 0,
            idle: 0,
        }
    }

    /// Append `steps` to vCPU `vcpu` of the domain that runs with `vmid`.
    pub fn script(&mut self, vmid: u16, vcpu: u8, steps: impl IntoIterator<Item = GuestStep>) {
        self.scripts.entry((vmid, vcpu)).or_default().extend(steps);
    }

    fn raise(&mut self, intid: u32) {
        let cpu = self.inner.cpu_index();
        self.inner
            .machine()
            .lock()
            .phys
            .entry(cpu)
            .or_default()
            .push_back(intid);
    }

    fn next_step(&mut self, key: (u16, u8), pc: u64) -> GuestStep {
        // A continuation: hv put the pc back on the HVC; issue it again.
        if let Some((at, step)) = self.last_hvc.get(&key) {
            if *at == pc {
                let mut s = step.clone();
                s.set_x.clear();
                s.el1_set.clear();
                s.lr_set.clear();
                s.raise.clear();
                return s;
            }
        }
        if let Some(s) = self.scripts.get_mut(&key).and_then(VecDeque::pop_front) {
            return s;
        }
        let n = self.auto.entry(key).or_insert(0);
        *n += 1;
        if *n > MAX_AUTO {
            // hv keeps running a vCPU that asked to stop: leave it to the
            // exit bound rather than loop here.
            stop();
        }
        GuestStep::psci_smc(if key.1 == 0 {
            PSCI_SYSTEM_OFF
        } else {
            PSCI_CPU_OFF
        })
    }
}

impl Arch for GuestCpu {
    fn cpu_index(&self) -> usize {
        self.inner.cpu_index()
    }
    fn vcpu_load(&mut self, sysregs: &El1Sysregs, stage2: Stage2Regs, vmpidr: u64) {
        self.loaded = Some(((stage2.vttbr >> 48) as u16, (vmpidr & 0xff) as u8));
        self.inner.vcpu_load(sysregs, stage2, vmpidr);
    }
    fn vcpu_put(&mut self, sysregs: &mut El1Sysregs) {
        self.loaded = None;
        self.inner.vcpu_put(sysregs);
    }
    fn read_el1(&self, reg: El1Reg) -> u64 {
        self.inner.read_el1(reg)
    }
    fn write_el1(&mut self, reg: El1Reg, val: u64) {
        self.inner.write_el1(reg, val);
    }
    fn run_vcpu(&mut self, gprs: &mut GuestGprs) -> RawExit {
        self.exits += 1;
        if self.exits > MAX_EXITS {
            stop();
        }
        self.idle = 0;
        // Keep the fake's event log from growing without bound.
        self.inner.machine().lock().events.clear();
        let key = self.loaded.expect("run_vcpu with no vCPU loaded");
        let step = self.next_step(key, gprs.pc);
        for (n, v) in &step.set_x {
            gprs.x[*n] = *v;
        }
        for (r, v) in &step.el1_set {
            self.inner.write_el1(*r, *v);
        }
        for (n, v) in &step.lr_set {
            if let Some(lr) = self.inner.lrs.get_mut(*n) {
                *lr = *v;
            }
        }
        for i in &step.raise {
            self.raise(*i);
        }
        self.counter = self.counter.saturating_add(1_000_000);
        if self.deadline.is_some_and(|d| d <= self.counter) {
            self.deadline = None;
            self.raise(HYP_TIMER);
        }
        let hvc_pc = gprs.pc;
        gprs.pc = gprs.pc.wrapping_add(step.pc_advance);
        let exit = step.exit;
        if exit.vector == ExitVector::Sync && exit.esr >> 26 == 0x16 {
            self.last_hvc.insert(key, (hvc_pc, step));
        } else {
            self.last_hvc.remove(&key);
        }
        exit
    }
    fn tlb_op(&mut self, op: TlbOp) {
        self.inner.tlb_op(op);
    }
    fn dcache_clean_inval(&mut self, pa: PhysAddr, len: u64) {
        self.inner.dcache_clean_inval(pa, len);
    }
    fn counter(&self) -> u64 {
        self.counter
    }
    fn counter_frequency(&self) -> u64 {
        1_000_000_000
    }
    fn vmid_bits(&self) -> u8 {
        self.inner.vmid_bits()
    }
    fn ipa_bits(&self) -> u8 {
        self.inner.ipa_bits()
    }
    fn system_off(&mut self) -> ! {
        stop()
    }
    fn guest_va_to_ipa(&mut self, va: u64, write: bool) -> Option<u64> {
        self.inner.guest_va_to_ipa(va, write)
    }
    fn host_id_reg(&self, crm: u8, op2: u8) -> u64 {
        self.inner.host_id_reg(crm, op2)
    }
    fn ich_vtr(&self) -> u64 {
        self.inner.ich_vtr()
    }
    fn ich_read_lr(&mut self, n: usize) -> u64 {
        self.inner.ich_read_lr(n)
    }
    fn ich_write_lr(&mut self, n: usize, val: u64) {
        self.inner.ich_write_lr(n, val);
    }
    fn ich_write_hcr(&mut self, val: u64) {
        self.inner.ich_write_hcr(val);
    }
    fn ich_elrsr(&mut self) -> u64 {
        self.inner.ich_elrsr()
    }
    fn ich_misr(&mut self) -> u64 {
        self.inner.ich_misr()
    }
    fn ich_read_vmcr(&mut self) -> u64 {
        self.inner.ich_read_vmcr()
    }
    fn ich_write_vmcr(&mut self, val: u64) {
        self.inner.ich_write_vmcr(val);
    }
    fn ich_read_apr(&mut self, group1: bool, n: usize) -> u64 {
        self.inner.ich_read_apr(group1, n)
    }
    fn ich_write_apr(&mut self, group1: bool, n: usize, val: u64) {
        self.inner.ich_write_apr(group1, n, val);
    }
    fn irq_ack(&mut self) -> Option<u32> {
        self.inner.irq_ack()
    }
    fn irq_eoi(&mut self, intid: u32) {
        self.inner.irq_eoi(intid);
    }
    fn irq_drop_priority(&mut self, intid: u32) {
        self.inner.irq_drop_priority(intid);
    }
    fn kick(&mut self, to: usize) {
        self.inner.kick(to);
    }
    fn set_hv_timer(&mut self, deadline: Option<u64>) {
        self.deadline = deadline;
    }
    fn set_wfe_trap(&mut self, trap: bool) {
        self.inner.set_wfe_trap(trap);
    }
    fn wait_for_interrupt(&mut self) {
        self.idle += 1;
        if self.idle > MAX_IDLE {
            stop();
        }
        // Time passes while the pCPU sleeps: up to hv's timer, if armed.
        self.counter = self.counter.saturating_add(1_000_000);
        if let Some(d) = self.deadline.take() {
            self.counter = self.counter.max(d);
            self.raise(HYP_TIMER);
        }
    }
}
