//! The scheduled run loop of each pCPU (executes [`crate::sched::Decision`]s)
//! and the exits that involve interrupts, timers and SMP: vGIC MMIO, trapped
//! SGI writes, WFI, physical IRQs, guest PSCI.
//!
//! Per pCPU: the vCPU loaded here lives in the loop (`current`), every other
//! vCPU is parked in [`crate::sched::RunQueues`]. Around each guest entry the
//! vCPU's list registers are filled and read back ([`crate::vgic::lr`]); on a
//! real switch the outgoing vCPU is put (EL1/FP/GIC state saved, its virtual
//! timer stopped and its deadline recorded if it is blocked) and the
//! incoming one loaded, then this pCPU's `LastRan` plan runs (pv-tlb: a
//! different vCPU of the same VMID costs `TLBI VMALLE1` + `IC IALLU` under
//! `targeted`, `TLBI VMALLS12E1` under `xen-compat`).
//!
//! **Virtual timer.** A vCPU's `CNTV_*` registers are its own (saved and
//! restored with its EL1 state, `CNTVOFF_EL2` = 0). While it is loaded its
//! timer raises physical PPI 27, which `HCR_EL2.IMO` routes to EL2: hv masks
//! the timer (`CNTV_CTL_EL0.IMASK`, on the guest's behalf) and injects virtual
//! PPI 27, as Xen's `vtimer_interrupt` does (xen/arch/arm/vtimer.c); the
//! guest's handler reprograms `CNTV_CTL`, which unmasks it. While a blocked
//! vCPU is not loaded, hv arms its EL2 timer (the EL2 virtual timer, PPI 28) for the
//! earliest such deadline and injects PPI 27 when it passes.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use memops::TableMem;
use pv_tlb::LastRan;

use super::{CpuExit, Next, System};
use crate::arch::{irq, Arch, El1Reg, PhysMem};
use crate::counters::WindowClose;
use crate::psci::{self, PsciCall};
use crate::sched::{Decision, VcpuKey};
use crate::trap::{DataAbort, SysRegAccess};
use crate::vcpu::{Vcpu, PSR_MODE_EL0T};
use crate::vgic::{self, mmio::MmioAccess, Vgic, PPI_VTIMER};

/// Time slices per second.
pub const SLICES_PER_SECOND: u64 = 100;

/// `CNTV_CTL_EL0` bits.
mod cntv {
    pub const ENABLE: u64 = 1 << 0;
    pub const IMASK: u64 = 1 << 1;
    pub const ISTATUS: u64 = 1 << 2;
}

/// Inject a synchronous external abort for the data abort `a` (the access is
/// not emulated; `ELR` is the faulting instruction).
fn inject_dabt(arch: &mut dyn Arch, v: &mut Vcpu, a: &DataAbort) {
    let ec: u64 = if v.gprs.pstate & 0xf == PSR_MODE_EL0T {
        0x24
    } else {
        0x25
    };
    let esr = (ec << 26) | crate::trap::ESR_IL | (u64::from(a.wnr) << 6) | 0x10;
    let elr = v.gprs.pc;
    v.inject_sync(arch, elr, esr, Some(a.far));
}

fn key(v: &Vcpu) -> VcpuKey {
    VcpuKey {
        dom: v.domid,
        idx: v.id,
    }
}

/// The deadline of a virtual timer that would interrupt (enabled, unmasked).
fn vtimer_deadline(ctl: u64, cval: u64) -> Option<u64> {
    (ctl & cntv::ENABLE != 0 && ctl & cntv::IMASK == 0).then_some(cval)
}

/// This pCPU's loop state.
struct Pcpu {
    cpu: usize,
    current: Option<Box<Vcpu>>,
    last_ran: LastRan,
}

impl<M: PhysMem + TableMem + Send> System<M> {
    /// The scheduled loop behind [`System::run_cpu`].
    pub(super) fn run_scheduled(&self, arch: &mut dyn Arch) -> CpuExit {
        let cpu = arch.cpu_index();
        let mut p = Pcpu {
            cpu,
            current: None,
            last_ran: LastRan::new(),
        };
        {
            let mut rq = self.runq.lock();
            rq.sched.ensure_cpu(cpu);
            rq.sched
                .set_slice(arch.counter_frequency() / SLICES_PER_SECOND);
        }
        loop {
            if self.live_domains.load(Ordering::SeqCst) == 0 {
                if let Some(mut c) = p.current.take() {
                    self.put_vcpu(arch, &mut c);
                }
                self.arm_timer(arch, cpu, None);
                return CpuExit::AllEnded;
            }
            // A domain that is ending (PSCI SYSTEM_OFF or SCHEDOP_shutdown by
            // one of its vCPUs, destroydomain) loses its vCPUs wherever they are.
            if let Some(exit) = self.collect_ending(arch, &mut p) {
                return exit;
            }
            let now = arch.counter();
            let (decision, due, kicks, ncpus) = {
                let mut rq = self.runq.lock();
                let mut kicks = rq.wake_pending();
                let (expired, k) = rq.sched.expire(now);
                kicks |= k;
                let mut due: Vec<(Arc<Vgic>, u32)> = Vec::new();
                for k in expired {
                    if let Some(v) = rq.sched.parked_mut(k) {
                        // Masked on the guest's behalf, as when it fires live.
                        let ctl = v.sysregs.get(El1Reg::CntvCtlEl0);
                        v.sysregs.set(El1Reg::CntvCtlEl0, ctl | cntv::IMASK);
                    }
                    if let Some(g) = rq.vgics.get(&k.dom) {
                        due.push((g.clone(), k.idx));
                    }
                }
                let d = rq.sched.next(cpu, now);
                let n = rq.sched.ncpus();
                (d, due, kicks | core::mem::take(&mut rq.kicks), n)
            };
            for (g, idx) in due {
                let _ = g.inject(idx, PPI_VTIMER);
            }
            // Every kick requested so far (by this decision, by other pCPUs'
            // scheduler calls, by vGIC injections) goes out before this pCPU
            // sleeps or enters a guest that may not exit for a long time.
            let recheck = self.send_kicks(arch, cpu, ncpus, kicks);
            let mut v = match decision {
                Decision::Idle { until } => {
                    self.idle(arch, &mut p, until, recheck);
                    continue;
                }
                Decision::Continue(k) => match p.current.take() {
                    Some(mut c) if key(&c) == k => {
                        if core::mem::take(&mut c.blocked) {
                            // Woken where it blocked (still loaded): its
                            // runstate, and so getdomaininfo's cpu_time, says running.
                            self.runstate(arch, &c, crate::xen::domu::runstate::RUNNING);
                        }
                        c
                    }
                    other => {
                        log::error!(
                            "CPU{cpu}: scheduler resumes d{}v{} which is not loaded here",
                            k.dom,
                            k.idx
                        );
                        p.current = other;
                        self.runq.lock().sched.remove(k);
                        continue;
                    }
                },
                Decision::Switch { to, vcpu: mut n } => {
                    // The scheduler handed `to` over with the decision; the
                    // vCPU loaded here stays ours until parked.
                    if let Some(c) = p.current.take() {
                        if let Some(exit) = self.park(arch, cpu, c) {
                            return exit;
                        }
                    }
                    if !self.load_vcpu(arch, &mut n, &mut p) {
                        self.runq.lock().sched.remove(to);
                        if let Some(exit) = self.drop_vcpu(arch, n, None) {
                            return exit;
                        }
                        continue;
                    }
                    n
                }
            };
            let (ending, paused) = self.ending_or_paused(v.domid);
            if let Some(reason) = ending {
                self.put_vcpu(arch, &mut v);
                self.runq.lock().sched.remove(key(&v));
                if let Some(exit) = self.drop_vcpu(arch, v, Some(reason)) {
                    return exit;
                }
                continue;
            }
            if paused {
                // Paused after the loop top looked (or started by PSCI CPU_ON
                // while paused): it waits in its domain for the unpause.
                self.put_vcpu(arch, &mut v);
                self.runq.lock().sched.remove(key(&v));
                self.stash_paused(v);
                continue;
            }
            // The slice end, or an earlier timer deadline of a blocked vCPU
            // parked somewhere (this vCPU may never exit by itself).
            let (deadline, waits) = {
                let rq = self.runq.lock();
                (rq.sched.run_deadline(cpu), rq.sched.someone_waits(cpu))
            };
            self.arm_timer(arch, cpu, deadline);
            // WFE traps (a yield) only while a vCPU waits for this pCPU: one
            // queued later kicks it, and the loop comes back here.
            arch.set_wfe_trap(waits);
            match self.run_until_yield(arch, &mut v) {
                Next::Resume | Next::Resched => p.current = Some(v),
                Next::Yield => {
                    self.runq.lock().sched.yield_now(cpu);
                    p.current = Some(v);
                }
                Next::Block => {
                    // Blocked time is not running time (Xen's vcpu_block:
                    // RUNSTATE_blocked); `put` or the next run ends it.
                    self.runstate(arch, &v, crate::xen::domu::runstate::BLOCKED);
                    v.blocked = true;
                    let mut rq = self.runq.lock();
                    rq.sched.block(cpu);
                    // An interrupt injected after the WFI check but before the
                    // vCPU was marked blocked: another pCPU may have consumed
                    // its wake epoch already, so look once more (under runq).
                    if v.vgic.as_ref().is_some_and(|g| g.has_deliverable(v.id)) {
                        let _ = rq.sched.wake(key(&v)); // queued here: no kick
                    }
                    drop(rq);
                    p.current = Some(v);
                }
                Next::VcpuOff => {
                    self.put_vcpu(arch, &mut v);
                    self.runq.lock().sched.remove(key(&v));
                    if let Some(exit) = self.drop_vcpu(arch, v, None) {
                        return exit;
                    }
                }
                Next::EndDomain(reason) => {
                    self.put_vcpu(arch, &mut v);
                    self.runq.lock().sched.remove(key(&v));
                    // Its other vCPUs go at the loop top (collect_ending).
                    if let Some(exit) = self.drop_vcpu(arch, v, Some(reason)) {
                        return exit;
                    }
                }
            }
        }
    }

    /// Nothing to run: collect vCPUs of ending domains, then wait for an
    /// interrupt (or `until`) and handle what arrived.
    fn idle(&self, arch: &mut dyn Arch, p: &mut Pcpu, until: Option<u64>, recheck: bool) {
        if recheck {
            return;
        }
        self.arm_timer(arch, p.cpu, until);
        arch.wait_for_interrupt();
        let _ = self.phys_irqs(arch, p.cpu, p.current.as_deref_mut());
    }

    /// Deschedule the vCPUs of ending domains wherever they are, as Xen's
    /// `domain_shutdown` pauses every vCPU of the domain at once: the one
    /// loaded here is put and dropped, every parked one (queued or blocked)
    /// is taken out of the scheduler and dropped, and the pCPUs holding
    /// others are kicked so they do the same at their next look.
    ///
    /// Paused domains ([`crate::domain::Domain::pause_count`], Xen's
    /// `domain_pause`) lose their vCPUs the same way, but into the domain's
    /// `paused_vcpus` (queued again at the last unpause); an ending domain's
    /// paused vCPUs are dropped here.
    fn collect_ending(&self, arch: &mut dyn Arch, p: &mut Pcpu) -> Option<CpuExit> {
        let (ending, paused, stashed) = {
            let mut sh = self.shared.lock();
            let mut ending = Vec::new();
            let mut paused = Vec::new();
            let mut stashed = Vec::new();
            for d in &mut sh.domains {
                if d.ending.is_some() && d.live_vcpus > 0 {
                    ending.push(d.id);
                    stashed.append(&mut d.paused_vcpus);
                } else if d.pause_count > 0 && d.live_vcpus as usize > d.paused_vcpus.len() {
                    paused.push(d.id);
                }
            }
            (ending, paused, stashed)
        };
        if !paused.is_empty() {
            self.collect_paused(arch, p, &paused);
        }
        for v in stashed {
            if let Some(exit) = self.drop_vcpu(arch, v, None) {
                return Some(exit);
            }
        }
        if ending.is_empty() {
            return None;
        }
        if let Some(mut v) = p.current.take_if(|c| ending.contains(&c.domid)) {
            self.put_vcpu(arch, &mut v);
            self.runq.lock().sched.remove(key(&v));
            if let Some(exit) = self.drop_vcpu(arch, v, None) {
                return Some(exit);
            }
        }
        let parked = {
            let mut rq = self.runq.lock();
            let parked = rq.sched.take_parked(|k| ending.contains(&k.dom));
            let holders = rq.sched.holders(|k| ending.contains(&k.dom));
            rq.kicks |= holders; // not this pCPU: it holds none of them now
            parked
        };
        for (_, v) in parked {
            if let Some(exit) = self.drop_vcpu(arch, v, None) {
                return Some(exit);
            }
        }
        None
    }

    /// Take the vCPUs of the paused domains `paused` off the scheduler: the
    /// one loaded here is put, the parked ones are taken out, and the pCPUs
    /// holding others are kicked to do the same at their next look (each
    /// goes to its domain's `paused_vcpus`, [`System::stash_paused`]).
    fn collect_paused(&self, arch: &mut dyn Arch, p: &mut Pcpu, paused: &[crate::domain::DomId]) {
        if let Some(mut v) = p.current.take_if(|c| paused.contains(&c.domid)) {
            self.put_vcpu(arch, &mut v);
            self.runq.lock().sched.remove(key(&v));
            self.stash_paused(v);
        }
        let parked = {
            let mut rq = self.runq.lock();
            let parked = rq.sched.take_parked(|k| paused.contains(&k.dom));
            let holders = rq.sched.holders(|k| paused.contains(&k.dom));
            rq.kicks |= holders; // not this pCPU: it holds none of them now
            parked
        };
        for (_, v) in parked {
            self.stash_paused(v);
        }
    }

    /// `v` (put, out of the scheduler) belongs to a domain that was paused:
    /// keep it in the domain until the last unpause. If the domain was
    /// unpaused meanwhile it is queued again; if it is ending (or gone), the
    /// next `collect_ending` drops it with the others.
    fn stash_paused(&self, v: Box<Vcpu>) {
        let mut sh = self.shared.lock();
        match sh.entry(v.domid) {
            Some(d) if d.pause_count > 0 || d.ending.is_some() => d.paused_vcpus.push(v),
            Some(_) => self.runq.lock().push_back(v), // lock order: shared, runq
            None => log::error!(
                "d{}v{}: paused vCPU of a domain that is gone",
                v.domid,
                v.id
            ),
        }
    }

    /// Send hv's kick SGI to the pCPUs named in `kicks` and the vGIC's kick
    /// set; true if this pCPU itself was named (look again before sleeping).
    fn send_kicks(&self, arch: &mut dyn Arch, cpu: usize, ncpus: usize, kicks: u64) -> bool {
        let k = vgic::take_kicks() | kicks;
        if k == 0 {
            return false;
        }
        for c in kick_targets(k, ncpus, cpu) {
            arch.kick(c);
        }
        (k >> (cpu % 64)) & 1 == 1
    }

    /// Arm (or disarm) this pCPU's EL2 timer, skipping redundant writes.
    fn arm_timer(&self, arch: &mut dyn Arch, cpu: usize, deadline: Option<u64>) {
        let want = deadline.unwrap_or(u64::MAX);
        let Some(slot) = self.hv_timer.get(cpu) else {
            arch.set_hv_timer(deadline);
            return;
        };
        if slot.swap(want, Ordering::Relaxed) != want {
            arch.set_hv_timer(deadline);
        }
    }

    /// Acknowledge and handle every pending physical interrupt of this pCPU.
    ///
    /// EOImode = 1 ([`crate::irq`]): hv's own interrupts are ended with a
    /// priority drop and a deactivation ([`Arch::irq_eoi`]); an SPI routed to
    /// a domain only has its priority dropped ([`Arch::irq_drop_priority`])
    /// and is made pending in the owner's vGIC, whose list register links it
    /// (HW): the guest's deactivation ends it.
    fn phys_irqs(
        &self,
        arch: &mut dyn Arch,
        cpu: usize,
        mut current: Option<&mut Vcpu>,
    ) -> IrqsHandled {
        let mut seen = 0u8;
        let mut own_timer = 0u64;
        while let Some(intid) = arch.irq_ack() {
            log::trace!("CPU{cpu}: physical IRQ {intid}");
            if intid >= crate::irq::SPI_FIRST {
                if let Some(g) = self.hw_owner(intid, current.as_deref()) {
                    arch.irq_drop_priority(intid);
                    // Pending for its target vCPU, which is kicked or woken
                    // by the loop (vgic's kick set and wake epoch).
                    if let Err(e) = g.inject_hw(intid) {
                        log::warn!("CPU{cpu}: physical SPI {intid}: {e}");
                    }
                    crate::irq::count_delivered();
                    seen |= crate::counters::irq_class::SPI;
                    continue;
                }
            }
            match intid {
                irq::VTIMER => {
                    seen |= crate::counters::irq_class::VTIMER;
                    if let Some(v) = current.as_deref_mut() {
                        own_timer += u64::from(vtimer_fired(arch, v));
                    }
                }
                irq::HYP_TIMER => {
                    seen |= crate::counters::irq_class::HYP_TIMER;
                    // Level-sensitive: disarm; the loop re-arms what it needs.
                    arch.set_hv_timer(None);
                    if let Some(s) = self.hv_timer.get(cpu) {
                        s.store(u64::MAX, Ordering::Relaxed);
                    }
                }
                irq::KICK_SGI => seen |= crate::counters::irq_class::KICK,
                irq::MAINTENANCE => seen |= crate::counters::irq_class::MAINTENANCE,
                i if crate::console::is_uart_irq(i) => {
                    seen |= crate::counters::irq_class::UART;
                    crate::console::serial_irq(&mut self.shared.lock(), Some(&self.runq));
                }
                other => log::warn!("CPU{cpu}: unexpected physical interrupt {other}"),
            }
            arch.irq_eoi(intid);
        }
        IrqsHandled {
            kinds: seen,
            own_timer,
        }
    }

    /// The vGIC physical SPI `intid` is linked to: the running vCPU's
    /// domain's first (dom0's vCPUs take most of them), else the domain's
    /// that owns it.
    fn hw_owner(&self, intid: u32, current: Option<&Vcpu>) -> Option<Arc<Vgic>> {
        if let Some(g) = current.and_then(|v| v.vgic.as_ref()) {
            if g.is_hw(intid) {
                return Some(g.clone());
            }
        }
        let sh = self.shared.lock();
        sh.domains
            .iter()
            .find(|d| d.vgic.is_hw(intid))
            .map(|d| d.vgic.clone())
    }

    /// A physical IRQ ended the guest's run.
    ///
    /// Its domain's coalescing window closes only if the vCPU made the
    /// removes ([`Vcpu::window_opener`]) and will take an interrupt other
    /// than its own timer's, or after too many such exits in a row
    /// (`pv_tlb::irq_exit_closes_window`).
    pub(super) fn irq_exit(&self, arch: &mut dyn Arch, v: &mut Vcpu) -> Next {
        let cpu = arch.cpu_index();
        let h = self.phys_irqs(arch, cpu, Some(v));
        let closes = match &v.vgic {
            Some(g) => pv_tlb::irq_exit_closes_window(
                g.notified(v.id).wrapping_sub(v.irq_mark),
                h.own_timer,
                v.irq_keeps,
            ),
            None => true,
        };
        if !v.window_opener {
            // A sibling of the caller: its interrupts leave the window as
            // its other exits do (`window_closes`).
        } else if closes {
            v.irq_keeps = 0;
            v.window_opener = false;
            if self.close_window(arch, v.domid, WindowClose::Irq) {
                crate::counters::count_irq_classes(h.kinds);
            }
        } else if self.window_open(v.domid) {
            v.irq_keeps += 1;
            crate::counters::WINDOW_KEPT_BY_IRQ.fetch_add(1, Ordering::Relaxed);
        }
        Next::Resched
    }

    /// Load `n` here: EL1 state and stage-2 (with the `LastRan` plan), then
    /// its vGIC CPU-interface state. False if its domain is gone.
    fn load_vcpu(&self, arch: &mut dyn Arch, n: &mut Vcpu, p: &mut Pcpu) -> bool {
        let (vgic, vmid) = {
            let mut sh = self.shared.lock();
            let Some(d) = sh.entry(n.domid) else {
                return false;
            };
            if d.vgic.nr_vcpus() < d.max_vcpus {
                d.vgic.set_nr_vcpus(d.max_vcpus);
            }
            (d.vgic.clone(), d.vmid())
        };
        let same_vmid_switch = p.last_ran.last(vmid).is_some_and(|l| l != n.id);
        if !self.load(arch, n, &mut p.last_ran) {
            return false;
        }
        n.blocked = false; // `load` made it running
        let mut rq = self.runq.lock();
        rq.vgics.insert(n.domid, vgic.clone());
        if same_vmid_switch {
            rq.sched.stats.same_vmid_switches += 1;
        }
        drop(rq);
        vgic.load_cpu(n.id, p.cpu, arch);
        n.vgic = Some(vgic);
        true
    }

    /// Save `v`'s state because it leaves this pCPU: its virtual timer is
    /// stopped in hardware (so it cannot fire for nobody) and kept in its
    /// saved registers, its vGIC CPU-interface state saved, its LRs cleared.
    pub(super) fn put_vcpu(&self, arch: &mut dyn Arch, v: &mut Vcpu) {
        if let Some(g) = &v.vgic {
            g.put_cpu(v.id, arch);
        }
        let ctl = arch.read_el1(El1Reg::CntvCtlEl0);
        if ctl & cntv::ENABLE != 0 {
            arch.write_el1(El1Reg::CntvCtlEl0, 0);
        }
        self.put(arch, v);
        v.sysregs.set(El1Reg::CntvCtlEl0, ctl);
    }

    /// Another vCPU takes this pCPU from `c`: put it (no lock held: other
    /// pCPUs cannot take it meanwhile, the scheduler still counts it as held
    /// here), then park it with its timer deadline (kept if it is blocked)
    /// and kick the idle pCPUs at once if it is runnable: one of them may
    /// take it now.
    fn park(&self, arch: &mut dyn Arch, cpu: usize, mut c: Box<Vcpu>) -> Option<CpuExit> {
        self.put_vcpu(arch, &mut c);
        let k = key(&c);
        let deadline = vtimer_deadline(
            c.sysregs.get(El1Reg::CntvCtlEl0),
            c.sysregs.get(El1Reg::CntvCvalEl0),
        );
        let (parked, ncpus) = {
            let mut rq = self.runq.lock();
            (rq.sched.park(cpu, k, c, deadline), rq.sched.ncpus())
        };
        match parked {
            Ok(kicks) => {
                // At once: this pCPU goes on into another guest, and an idle
                // pCPU may take the parked vCPU now.
                self.send_kicks(arch, cpu, ncpus, kicks);
                None
            }
            Err(c) => self.drop_vcpu(arch, c, None),
        }
    }

    /// A data abort in the vGIC's ranges: emulate it (`None` if `a` is not
    /// for the vGIC).
    pub(super) fn gic_mmio(
        &self,
        arch: &mut dyn Arch,
        v: &mut Vcpu,
        a: &DataAbort,
    ) -> Option<Next> {
        let ipa = a.ipa.raw();
        // The domain's own layout (dom0's vGIC sits at the host's addresses).
        let g = v.vgic.clone().filter(|g| g.contains(ipa))?;
        let Some(s) = a.access else {
            // No instruction syndrome: hv cannot emulate the access without
            // decoding the instruction. The guest gets a synchronous external abort.
            if crate::ratelimit::guest_log_ok(v.domid) {
                log::warn!(
                    "d{}v{}: vGIC access at IPA {:#x} without a valid syndrome (pc {:#x}): injecting a data abort",
                    v.domid,
                    v.id,
                    ipa,
                    v.gprs.pc
                );
            }
            inject_dabt(arch, v, a);
            return Some(Next::Resume);
        };
        let size = s.sas.bytes();
        let mask = if size >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * u32::from(size))) - 1
        };
        let rt = usize::from(s.srt);
        let value = if a.wnr && rt < 31 {
            v.gprs.x[rt] & mask
        } else {
            0
        };
        log::trace!(
            "d{}v{}: vGIC {} {ipa:#x} size {size} value {value:#x}",
            v.domid,
            v.id,
            if a.wnr { "write" } else { "read" }
        );
        let r = match g.mmio(
            v.id,
            ipa,
            MmioAccess {
                write: a.wnr,
                size,
                value,
            },
        ) {
            Some(Ok(r)) => r,
            // Unaligned, or a width the register lacks: a data abort, as
            // Xen's vgic-v3 `bad_width` (the guest's own fault, not hv's).
            Some(Err(vgic::mmio::BadAccess)) => {
                if crate::ratelimit::guest_log_ok(v.domid) {
                    log::warn!(
                        "d{}v{}: vGIC bad access at IPA {ipa:#x} (size {size}, pc {:#x}): injecting a data abort",
                        v.domid,
                        v.id,
                        v.gprs.pc
                    );
                }
                inject_dabt(arch, v, a);
                return Some(Next::Resume);
            }
            None => 0,
        };
        if !a.wnr && rt < 31 {
            let mut val = r & mask;
            if s.sse && size < 8 {
                let sign = 1u64 << (8 * u32::from(size) - 1);
                if val & sign != 0 {
                    val |= !mask;
                }
            }
            if !s.sf {
                val &= 0xffff_ffff;
            }
            v.gprs.x[rt] = val;
        }
        v.gprs.pc = v.gprs.pc.wrapping_add(4);
        Some(Next::Resume)
    }

    /// A trapped `ICC_SGI1R_EL1`/`ICC_ASGI1R_EL1`/`ICC_SGI0R_EL1` write
    /// (`None` for any other system register).
    pub(super) fn sgi_trap(&self, v: &mut Vcpu, acc: &SysRegAccess) -> Option<Next> {
        if !acc.is_sgi_write() {
            return None;
        }
        let g = v.vgic.clone()?;
        let val = if acc.rt < 31 {
            v.gprs.x[usize::from(acc.rt)]
        } else {
            0
        };
        g.send_sgi(v.id, val);
        v.gprs.pc = v.gprs.pc.wrapping_add(4);
        Some(Next::Resume)
    }

    /// A trapped WFI (block until an interrupt is pending), WFE (yield), or
    /// WFIT/WFET (FEAT_WFxT, `ESR_EL2.ISS.TI` = 0b10/0b11: yield; a WFx with
    /// a timeout may complete early, and Linux's `__delay` loops on them).
    pub(super) fn wfx(&self, arch: &mut dyn Arch, v: &mut Vcpu, wfe: bool, esr: u64) -> Next {
        // A trapped WFI/WFE returns to itself: step over it.
        v.gprs.pc = v.gprs.pc.wrapping_add(4);
        let with_timeout = esr & 0b10 != 0;
        if wfe || with_timeout {
            return Next::Yield;
        }
        let Some(g) = v.vgic.clone() else {
            return Next::Yield;
        };
        if g.has_deliverable(v.id) {
            // The WFI completes at once (an interrupt is pending, perhaps
            // masked by the guest: Linux's cpu_park_loop spins on WFI with
            // DAIF set). Still a scheduling point, as Xen's
            // vcpu_block_unless_event_pending raises SCHEDULE_SOFTIRQ: else
            // such a vCPU never leaves its pCPU to the others, nor notices
            // that its domain ends.
            return Next::Yield;
        }
        let ctl = arch.read_el1(El1Reg::CntvCtlEl0);
        let timer = vtimer_deadline(ctl, 0).is_some();
        let gic_on = g.with_state(|s| s.grp0 || s.grp1);
        log::trace!(
            "d{}v{}: WFI, timer {timer} (CNTV_CTL {ctl:#x}), GIC {gic_on}",
            v.domid,
            v.id
        );
        if timer || gic_on {
            Next::Block
        } else {
            // Nothing could ever wake it (no GIC, no timer): WFI may complete
            // at any time architecturally, so let others run and come back.
            Next::Yield
        }
    }

    /// Guest PSCI (function id in w0; the pc is already past the call).
    pub(super) fn guest_psci(&self, v: &mut Vcpu) -> Next {
        let x = &v.gprs.x;
        match psci::decode(&[x[0], x[1], x[2], x[3]]) {
            PsciCall::Return(r) => v.gprs.x[0] = r,
            PsciCall::CpuOff => return Next::VcpuOff,
            PsciCall::SystemOff => return Next::EndDomain(crate::domain::EndReason::PsciSystemOff),
            PsciCall::SystemReset => {
                return Next::EndDomain(crate::domain::EndReason::PsciSystemReset)
            }
            PsciCall::CpuOn {
                target,
                entry,
                context,
            } => {
                v.gprs.x[0] = self.cpu_on(v.domid, target, entry, context);
                if v.gprs.x[0] == psci::ret::SUCCESS {
                    // Through the loop, which kicks an idle pCPU for the new
                    // vCPU now: the caller may poll for it without trapping.
                    return Next::Resched;
                }
            }
            PsciCall::AffinityInfo { target } => {
                let k = VcpuKey {
                    dom: v.domid,
                    idx: target,
                };
                let max = self.shared.lock().entry(v.domid).map_or(0, |d| d.max_vcpus);
                v.gprs.x[0] = if target >= max {
                    psci::ret::INVALID_PARAMETERS
                } else if target == v.id || self.runq.lock().sched.state(k).is_some() {
                    psci::ret::AFF_ON
                } else {
                    psci::ret::AFF_OFF
                };
            }
        }
        Next::Resume
    }

    /// PSCI CPU_ON: queue vCPU `target` of `dom` at `entry` with x0 = `context`.
    fn cpu_on(&self, dom: u16, target: u32, entry: u64, context: u64) -> u64 {
        let mut sh = self.shared.lock();
        let Some(d) = sh.entry(dom) else {
            return psci::ret::INVALID_PARAMETERS;
        };
        if target >= d.max_vcpus {
            return psci::ret::INVALID_PARAMETERS;
        }
        // Lock order: shared, then runq.
        let mut rq = self.runq.lock();
        let k = VcpuKey { dom, idx: target };
        if rq.sched.state(k).is_some() {
            return psci::ret::ALREADY_ON;
        }
        d.live_vcpus += 1;
        rq.push_back(Box::new(Vcpu::new(dom, target, entry, context)));
        log::debug!("d{dom}: PSCI CPU_ON vCPU {target} at {entry:#x}");
        psci::ret::SUCCESS
    }
}

/// The loaded vCPU's virtual timer raised physical PPI 27: mask it on the
/// guest's behalf and inject virtual PPI 27 (Xen's `vtimer_interrupt`).
fn vtimer_fired(arch: &mut dyn Arch, v: &mut Vcpu) -> bool {
    let ctl = arch.read_el1(El1Reg::CntvCtlEl0);
    if ctl & cntv::ENABLE == 0 || ctl & cntv::ISTATUS == 0 || ctl & cntv::IMASK != 0 {
        return false; // no longer firing (the guest reprogrammed it)
    }
    arch.write_el1(El1Reg::CntvCtlEl0, ctl | cntv::IMASK);
    match &v.vgic {
        Some(g) => g.inject(v.id, PPI_VTIMER).is_ok(),
        None => false,
    }
}

/// What [`System::phys_irqs`] handled.
pub(super) struct IrqsHandled {
    /// [`crate::counters::irq_class`] bits of the kinds seen.
    pub kinds: u8,
    /// Injections of the running vCPU's own virtual timer.
    pub own_timer: u64,
}

#[cfg(test)]
mod irq_tests;
#[cfg(test)]
mod tests;

/// The pCPUs (of `ncpus`, other than `me`) that the kick mask `k` names: bit
/// c names pCPU c; all bits set (vgic's "any pCPU", also how a pCPU numbered
/// 64 or more is named) is every pCPU, however many there are.
pub(super) fn kick_targets(k: u64, ncpus: usize, me: usize) -> impl Iterator<Item = usize> {
    (0..ncpus).filter(move |&c| c != me && (k == u64::MAX || (c < 64 && (k >> c) & 1 == 1)))
}
