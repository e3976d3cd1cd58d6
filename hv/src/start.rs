//! The portable boot flow and run loop (layer `start`, DESIGN.md "Layers").
//!
//! [`run_primary`] builds the boot domains (module and dom0less, through the
//! builder in [`crate::domain::build`]), publishes the [`System`] for the
//! other CPUs and runs; [`run_secondary`] waits for it and runs too. Each
//! pCPU runs the scheduled loop of `start/run.rs` ([`crate::sched`] decides:
//! per-pCPU run queues, time slices, migration, lazy switching). Exits are
//! decoded ([`ExitReason`]) and handled here: Xen hypercalls go to
//! [`crate::hypercall::handle`] and its [`Reply`] becomes the vCPU's next step
//! in one place (`apply_reply`); PSCI (SMC, or `HVC #0` as Xen's SMCCC path),
//! undefined instruction injection, stage-2 faults (retried when the IPA is
//! mapped by the time hv looks under the `shared` lock, e.g. after a block
//! split; else they end the domain only), trapped debug/PMU registers
//! (RAZ/WI or undef).
//!
//! Locks: `shared` (the [`World`]: memory, domains, VMIDs, frames, console)
//! before `runq` when both are held (PSCI CPU_ON); a vGIC lock and the
//! rate-limit table are leaves. No lock is held while a guest runs.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memops::{FrameTable, TableMem};
use pv_tlb::PhysAddr;
use pv_tlb::{LastRan, Policy};
use spin::{Mutex, Once};

use crate::arch::{Arch, PhysMem, RawExit};
use crate::bootinfo::{BootModule, DomUNode, ModuleDomain};
use crate::counters::WindowClose;
use crate::domain::build::{
    dom0less_spec, domains_from_modules, legacy_module_domain, pick_evtchn_ppi, read_host,
    BootImage, Dom0Setup, DomainSpec,
};
use crate::domain::{DomId, Domain, DomainError, EndReason, FrameSource, DEFAULT_RAM_BYTES};
use crate::hypercall::{self, Action, Reply};
use crate::options::HvOptions;
use crate::trap::{debug_pmu_answer, esr_ec, ExitReason, FaultStatus, SysRegAccess, SysRegAnswer};
use crate::vcpu::Vcpu;
use crate::xen::{self, ConsoleSink};

/// PSCI function ids hv answers for guests (Arm DEN0022, SMC32 and SMC64 calling conventions).
pub mod psci {
    pub use crate::psci::ret::NOT_SUPPORTED;
    pub use crate::psci::{CPU_OFF, FEATURES, SYSTEM_OFF, SYSTEM_RESET, V1_1, VERSION};
}

/// Host frames through hv's global frame allocator (`mm::frame::frames()`).
pub struct GlobalFrames;

impl FrameSource for GlobalFrames {
    fn alloc_frames(&mut self, count: u64, align_pages: u64) -> Option<PhysAddr> {
        let count = usize::try_from(count).ok()?;
        let align = usize::try_from(align_pages).ok()?;
        crate::mm::frame::frames().lock().alloc(count, align)
    }

    fn free_frames(&mut self, pa: PhysAddr, count: u64) {
        if let Ok(count) = usize::try_from(count) {
            crate::mm::frame::frames().lock().free(pa, count);
        }
    }
}

/// dom0's RAM when `dom0_mem=` is absent: Xen on Arm's default ("PLEASE
/// SPECIFY dom0_mem PARAMETER - USING 512M FOR NOW").
pub const DOM0_DEFAULT_MEM: u64 = 512 << 20;

/// What building the hardware domain needs from the platform
/// ([`System::add_boot_domains`]).
#[derive(Clone, Copy, Debug)]
pub struct HwEnv<'a> {
    /// The host DTB (NOP-free).
    pub host_dtb: &'a [u8],
    /// MMIO hv drives itself (its UART).
    pub uart: Option<crate::mm::MemRange>,
    /// hv's image in host RAM (dom0's grant-table region is carved from it, as Xen's).
    pub hv_image: crate::mm::MemRange,
    /// The host's GICD and first GICR (dom0's vGIC goes there).
    pub gic: Option<crate::vgic::VgicLayout>,
    /// The PPIs the host timer uses (not the event channel's; 0: none).
    pub timer_ppis: [u32; 5],
    /// Physical CPUs (dom0's default vCPU count).
    pub ncpus: u32,
}

/// Frames left to hv's own allocator when the guest page pool is carved
/// (stage-2 tables, hv's heap): 32 MiB.
pub const POOL_RESERVE_FRAMES: u64 = 8192;

/// Carve the guest page pool out of `frames`: the largest 2 MiB-aligned
/// contiguous run it can give, trying `free - POOL_RESERVE_FRAMES` first and
/// then 1/8 less each time. An empty pool if even 2 MiB is not available.
pub fn carve_pool(frames: &mut dyn FrameSource, free: u64) -> FrameTable {
    let mut want = free.saturating_sub(POOL_RESERVE_FRAMES) & !511;
    while want >= 512 {
        if let Some(pa) = frames.alloc_frames(want, 512) {
            return FrameTable::new(pa, want);
        }
        want = want.saturating_sub((want / 8).max(512)) & !511;
    }
    FrameTable::new(PhysAddr(0), 0)
}

/// How a pCPU left [`System::run_cpu`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CpuExit {
    /// This CPU ended the last domain and printed the power-off line: call `system_off`.
    PowerOff,
    /// Every domain has ended (another CPU powers off).
    AllEnded,
}

/// What happens to a vCPU after one exit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Next {
    Resume,
    Yield,
    /// Wait for an interrupt (WFI): the scheduler blocks the vCPU.
    Block,
    /// Let the scheduler decide again (after a physical IRQ).
    Resched,
    VcpuOff,
    EndDomain(EndReason),
}

use crate::world::World;

/// pCPUs whose armed EL2-timer deadline [`System`] caches (not a CPU limit).
const HV_TIMER_SLOTS: usize = 256;

/// Domains, vCPUs and host memory: everything the pCPUs share.
pub struct System<M> {
    shared: Mutex<World<M>>,
    runq: Mutex<crate::sched::RunQueues>,
    /// Each pCPU's armed EL2-timer deadline (`u64::MAX`: disarmed), a cache
    /// that saves redundant timer writes; a pCPU beyond it writes every time.
    hv_timer: [core::sync::atomic::AtomicU64; HV_TIMER_SLOTS],
    live_domains: AtomicUsize,
    /// Some invalidation is pending in the flush gatherer (a coalescing
    /// window may be open): exits then take the lock to close it.
    deferred: AtomicBool,
}

fn pause() {
    #[cfg(test)]
    std::thread::yield_now();
    core::hint::spin_loop();
}

impl<M: PhysMem + TableMem + Send> System<M> {
    /// An empty system over `mem` (host RAM and table memory), with domain
    /// pages from `pool` and TLB maintenance planned under `policy`.
    pub fn new(
        mem: M,
        pool: FrameTable,
        policy: Policy,
        sink: Box<dyn ConsoleSink + Send>,
        vmid_bits: u8,
        ipa_bits: u8,
    ) -> Self {
        Self {
            shared: Mutex::new(World::new(mem, pool, policy, sink, vmid_bits, ipa_bits)),
            runq: Mutex::new(crate::sched::RunQueues::new(1, 1)),
            hv_timer: [const { core::sync::atomic::AtomicU64::new(u64::MAX) }; HV_TIMER_SLOTS],
            live_domains: AtomicUsize::new(0),
            deferred: AtomicBool::new(false),
        }
    }

    /// Replace how the heap's free bytes are read (tests of heap exhaustion).
    pub fn set_heap_probe(&mut self, f: fn() -> usize) {
        self.shared.get_mut().heap_free = f;
    }

    /// Build a domain ([`crate::domain::build::Builder::build`]) and queue
    /// its boot vCPU.
    ///
    /// # Errors
    /// [`DomainError`] if the domain cannot be built (nothing is left behind).
    pub fn add_domain(
        &self,
        spec: DomainSpec<'_>,
        kernel: BootImage<'_, M>,
        ramdisk: Option<BootImage<'_, M>>,
    ) -> Result<DomId, DomainError> {
        let (id, boot) = self.shared.lock().builder().build(spec, kernel, ramdisk)?;
        self.live_domains.fetch_add(1, Ordering::SeqCst);
        self.runq.lock().push_back(boot);
        Ok(id)
    }

    /// Build the domains of the kernel modules `modules` by Xen's rule
    /// ([`domains_from_modules`]: the first kernel is dom0) with default options.
    pub fn add_module_domains(&self, modules: &[BootModule<'_>]) {
        self.add_module_domains_with(modules, &HvOptions::default());
    }

    /// [`System::add_module_domains`] with hv's command line (`dom0_mem=`,
    /// `dom0_max_vcpus=`), without a host DTB: every domain in Xen's guest layout.
    pub fn add_module_domains_with(&self, modules: &[BootModule<'_>], options: &HvOptions) {
        self.add_boot_domains(&domains_from_modules(modules), options, None);
    }

    /// Build the domains the boot modules stand for
    /// ([`crate::bootinfo::BootInfo::module_domains`]: dom0 first). dom0 whose
    /// kernel is an arm64 `Image` that may sit anywhere in RAM (flags bit 3,
    /// as Linux's) becomes Xen's hardware domain when `hw` describes the host
    /// ([`System::add_hwdom`]); any other module domain (hv's bare test
    /// payloads: flags 0x2, linked at Xen's guest RAM base) is built in
    /// Xen's guest layout with hv's module words (`mem=`, `vcpus=`). Failures
    /// are logged (`domain not built`).
    pub fn add_boot_domains(
        &self,
        domains: &[ModuleDomain<'_>],
        options: &HvOptions,
        hw: Option<&HwEnv<'_>>,
    ) -> Vec<Result<DomId, DomainError>> {
        let mut out = Vec::new();
        for m in domains {
            let r = match hw {
                Some(hw) if m.dom0 && self.is_relocatable_image(m.kernel.pa) => {
                    self.add_hwdom(m, options, hw).map(|()| 0)
                }
                _ => {
                    let l = legacy_module_domain(m, options);
                    self.add_images(l.spec(), &m.kernel, m.ramdisk.as_ref())
                }
            };
            if let Err(e) = &r {
                log::error!("module at {}: domain not built: {e}", m.kernel.pa);
            }
            out.push(r);
        }
        out
    }

    /// True if host memory at `pa` starts with the header of an arm64 `Image`
    /// that may sit anywhere in RAM ([`crate::domain::is_relocatable_image`]).
    fn is_relocatable_image(&self, pa: PhysAddr) -> bool {
        let mut hdr = [0u8; 64];
        read_host(&self.shared.lock().mem, pa, &mut hdr);
        crate::domain::is_relocatable_image(&hdr)
    }

    /// Build Xen's hardware domain from module domain `m`
    /// ([`crate::domain::build::Builder::build_dom0`]): RAM `dom0_mem=`
    /// (512 MiB when absent, as Xen on Arm; rounded up to 2 MiB), vCPUs
    /// `dom0_max_vcpus=` (one per CPU when absent), its command line unchanged.
    ///
    /// # Errors
    /// [`DomainError`].
    pub fn add_hwdom(
        &self,
        m: &ModuleDomain<'_>,
        options: &HvOptions,
        hw: &HwEnv<'_>,
    ) -> Result<(), DomainError> {
        let layout = hw.gic.ok_or(DomainError::Dom0Dt("the host has no GICv3"))?;
        let evtchn_ppi =
            pick_evtchn_ppi(&hw.timer_ppis).ok_or(DomainError::Dom0Dt("no free PPI"))?;
        let hv_mmio: Vec<crate::mm::MemRange> = hw.uart.into_iter().collect();
        let ram_bytes = options
            .dom0_mem_bytes(DOM0_DEFAULT_MEM)
            .checked_next_multiple_of(crate::domain::DIRECT_BLOCK)
            .unwrap_or(u64::MAX);
        // Xen's gnttab region: its own text (`_stext`), at most 64 frames.
        let gnttab = crate::mm::MemRange::new(
            hw.hv_image.base.0 & !(pv_tlb::PAGE_SIZE - 1),
            (hw.hv_image.size & !(pv_tlb::PAGE_SIZE - 1)).min(64 * pv_tlb::PAGE_SIZE),
        );
        let setup = Dom0Setup {
            ram_bytes,
            vcpus: options.dom0_vcpus(hw.ncpus),
            bootargs: m.bootargs,
            host_dtb: hw.host_dtb,
            hv_mmio: &hv_mmio,
            gnttab,
            evtchn_ppi,
            layout,
        };
        let kbase = m.kernel.pa;
        let mut read_kernel =
            |mem: &M, off: u64, buf: &mut [u8]| read_host(mem, PhysAddr(kbase.0 + off), buf);
        let rbase = m.ramdisk.map_or(PhysAddr(0), |r| r.pa);
        let mut read_rd =
            |mem: &M, off: u64, buf: &mut [u8]| read_host(mem, PhysAddr(rbase.0 + off), buf);
        let boot = self.shared.lock().builder().build_dom0(
            &setup,
            BootImage {
                size: m.kernel.size,
                read: &mut read_kernel,
            },
            m.ramdisk.map(|r| BootImage {
                size: r.size,
                read: &mut read_rd,
            }),
        )?;
        self.live_domains.fetch_add(1, Ordering::SeqCst);
        self.runq.lock().push_back(boot);
        Ok(())
    }

    /// Build every dom0less domain (`/chosen/domU*`, after the module
    /// domains); failures are logged and skipped. Returns what each gave.
    pub fn add_dom0less(&self, domus: &[DomUNode<'_>]) -> Vec<Result<DomId, DomainError>> {
        let mut out = Vec::new();
        for d in domus {
            let r = self.add_images(dom0less_spec(d), &d.kernel, d.ramdisk.as_ref());
            match r {
                Ok(id) => log::info!(
                    "dom0less {}: d{id}, {} vCPU(s), {} KiB",
                    d.name,
                    d.cpus,
                    d.memory_kib.unwrap_or(DEFAULT_RAM_BYTES >> 10)
                ),
                Err(e) => log::error!("dom0less {}: domain not built: {e}", d.name),
            }
            out.push(r);
        }
        out
    }

    /// [`System::add_domain`] with a kernel and ramdisk in host RAM.
    fn add_images(
        &self,
        spec: DomainSpec<'_>,
        kernel: &BootModule<'_>,
        ramdisk: Option<&BootModule<'_>>,
    ) -> Result<DomId, DomainError> {
        let kbase = kernel.pa;
        let mut read_kernel =
            |mem: &M, off: u64, buf: &mut [u8]| read_host(mem, PhysAddr(kbase.0 + off), buf);
        let rbase = ramdisk.map_or(PhysAddr(0), |r| r.pa);
        let mut read_rd =
            |mem: &M, off: u64, buf: &mut [u8]| read_host(mem, PhysAddr(rbase.0 + off), buf);
        self.add_domain(
            spec,
            BootImage {
                size: kernel.size,
                read: &mut read_kernel,
            },
            ramdisk.map(|r| BootImage {
                size: r.size,
                read: &mut read_rd,
            }),
        )
    }

    /// Number of domains not yet ended.
    #[must_use]
    pub fn live_domains(&self) -> usize {
        self.live_domains.load(Ordering::SeqCst)
    }

    /// Run `f` on domain `id`'s memory (tests and debugging).
    pub fn with_guest_memory<R>(
        &self,
        id: DomId,
        f: impl FnOnce(&mut crate::guest::GuestMemory<'_, M>) -> R,
    ) -> Option<R> {
        let mut sh = self.shared.lock();
        let World { mem, domains, .. } = &mut *sh;
        let d = domains.iter().find(|d| d.id == id)?;
        let mut gm = d.guest_memory(mem);
        Some(f(&mut gm))
    }

    /// Run `f` on host memory and the VMIDs in use (tests).
    pub fn with_mem<R>(&self, f: impl FnOnce(&mut M, usize) -> R) -> R {
        let mut sh = self.shared.lock();
        let vmids = sh.vmids.in_use();
        f(&mut sh.mem, vmids)
    }

    /// Free frames in the guest page pool.
    #[must_use]
    pub fn pool_free(&self) -> u64 {
        self.shared.lock().pool.free_frames()
    }

    /// Run vCPUs on this pCPU until every domain has ended: the
    /// scheduled loop of `start/run.rs` (see there and [`crate::sched`]).
    pub fn run_cpu(&self, arch: &mut dyn Arch) -> CpuExit {
        self.run_scheduled(arch)
    }

    /// Load `v` on this CPU (false if its domain is gone), then run the
    /// vCPU-switch plan of this pCPU's last-ran record (a different vCPU of
    /// the same VMID needs its local stage-1 entries dropped).
    fn load(&self, arch: &mut dyn Arch, v: &Vcpu, last_ran: &mut LastRan) -> bool {
        let mut sh = self.shared.lock();
        let policy = sh.flush.policy();
        let Some(e) = sh.entry(v.domid) else {
            return false;
        };
        let (regs, vmid) = (e.stage2_regs(), e.vmid());
        drop(sh);
        arch.vcpu_load(&v.sysregs, regs, v.vmpidr());
        self.runstate(arch, v, xen::domu::runstate::RUNNING);
        let plan = last_ran.switch_to(vmid, v.id, &policy);
        if !plan.is_empty() {
            crate::tlb::execute_ops(plan.ops(), arch);
        }
        true
    }

    /// Domain `id`'s end reason if it is ending, and whether the control
    /// domain has it paused (`XEN_DOMCTL_pausedomain`), under one lock.
    fn ending_or_paused(&self, id: DomId) -> (Option<EndReason>, bool) {
        self.shared
            .lock()
            .entry(id)
            .map_or((None, false), |d| (d.ending, d.pause_count > 0))
    }

    /// A vCPU (already put) leaves for good; ends its domain with `reason`
    /// (if not ending yet) and destroys it when no vCPU is left.
    fn drop_vcpu(
        &self,
        arch: &mut dyn Arch,
        v: Box<Vcpu>,
        reason: Option<EndReason>,
    ) -> Option<CpuExit> {
        let mut sh = self.shared.lock();
        let World {
            mem,
            domains,
            vmids,
            pool,
            flush,
            sink,
            ..
        } = &mut *sh;
        let idx = domains.iter().position(|d| d.id == v.domid)?;
        let e = &mut domains[idx];
        if let Some(r) = reason {
            if e.ending.is_none() {
                e.ending = Some(r);
            }
        }
        e.live_vcpus = e.live_vcpus.saturating_sub(1);
        if e.live_vcpus > 0 {
            return None;
        }
        let why = *e.ending.get_or_insert(EndReason::AllVcpusOff);
        if !e.console.is_empty() {
            e.console.flush(e.id, sink.as_mut());
        }
        let id = e.id;
        // Xen's hardware domain ending ends the machine (`hwdom_shutdown`:
        // poweroff halts it, reboot and crash restart it; hv powers off in
        // every case, which QEMU's `-no-reboot` makes the same exit).
        let hwdom = e.is_direct() && e.privileged;
        // Its log rate limit starts afresh for the next domain with this id.
        crate::ratelimit::forget(id);
        if e.from_domctl {
            // A toolstack-built domain stays (shut down) until destroydomain.
            sink.hv_line(format_args!("d{id} ended ({why})"));
        } else {
            let dom = domains.swap_remove(idx);
            crate::world::domain_destroyed(domains, &dom);
            dom.destroy(arch, mem, pool, flush, vmids);
            crate::world::grant_clears(domains, mem);
            sink.hv_line(format_args!("d{id} ended ({why})"));
            if why == EndReason::Destroyed {
                // As destroydomain's line for a domain that was not running.
                sink.hv_line(format_args!(
                    "d{id} destroyed ({} VMIDs in use)",
                    vmids.in_use()
                ));
            }
        }
        crate::hypercall::virq::dom_exc(domains, mem); // xenstored's @releaseDomain (Xen: send_global_virq)
        let last = self.live_domains.fetch_sub(1, Ordering::SeqCst) == 1;
        if hwdom && !last {
            sink.hv_line(format_args!(
                "hardware domain d{id} ended ({why}): ending the machine with {} domain(s) still running, as Xen",
                self.live_domains.load(Ordering::SeqCst)
            ));
        }
        if last || hwdom {
            // Lock order: shared, then runq.
            sink.hv_line(format_args!(
                "id-regs: reads={} writes={} sve_sme_traps={}",
                crate::idregs::READS.load(Ordering::Relaxed),
                crate::idregs::WRITES.load(Ordering::Relaxed),
                crate::idregs::SVE_SME_TRAPS.load(Ordering::Relaxed)
            ));
            sink.hv_line(format_args!(
                "debug-pmu: raz_wi={} undef={}",
                DEBUG_PMU_TRAPS[0].load(Ordering::Relaxed),
                DEBUG_PMU_TRAPS[1].load(Ordering::Relaxed)
            ));
            let s = self.runq.lock().sched.stats;
            sink.hv_line(format_args!(
                "sched: switches={} same_vmid_switches={} lazy_resumes={} migrations={} preemptions={} boosts={}",
                s.switches, s.same_vmid_switches, s.lazy_resumes, s.migrations, s.preemptions, s.boosts
            ));
            let c = crate::counters::counters();
            let mut tlbi = alloc::string::String::new();
            for (k, n) in pv_tlb::TlbOpKind::ALL.iter().zip(c.iter()) {
                let _ =
                    core::fmt::Write::write_fmt(&mut tlbi, format_args!(" {}={n}", k.mnemonic()));
            }
            sink.hv_line(format_args!(
                "counters:{tlbi} p2m_ops={} plans={} guest_exits={} hypercalls={}",
                c[8], c[9], c[10], c[11]
            ));
            sink.hv_line(format_args!(
                "{}",
                crate::counters::window_line(&flush.stats())
            ));
            if last {
                sink.hv_line(format_args!("all domains ended, powering off"));
            } else {
                sink.hv_line(format_args!("powering off"));
            }
            return Some(CpuExit::PowerOff);
        }
        None
    }

    /// Domain `id`'s coalescing window closes (its exit is not a coalescable
    /// remove, or one of its vCPUs is put): run the flushes it kept pending,
    /// then release their pages (`pv_tlb::deferred`, "The coalescing window").
    fn close_window(&self, arch: &mut dyn Arch, id: DomId, why: WindowClose) -> bool {
        if !self.deferred.load(Ordering::SeqCst) {
            return false;
        }
        let mut sh = self.shared.lock();
        let flushed = sh.close_window(arch, id);
        if flushed {
            why.count();
        }
        let idle = sh.flush.is_idle();
        self.deferred.store(!idle, Ordering::SeqCst);
        flushed
    }

    /// True if domain `id`'s coalescing window keeps invalidations pending.
    fn window_open(&self, id: DomId) -> bool {
        if !self.deferred.load(Ordering::SeqCst) {
            return false;
        }
        let sh = self.shared.lock();
        sh.domain(id)
            .is_some_and(|d| sh.flush.window_open(d.vmid()))
    }

    /// Save `v`'s EL1 state (it leaves this pCPU), closing its domain's
    /// coalescing window first.
    fn put(&self, arch: &mut dyn Arch, v: &mut Vcpu) {
        let _ = self.close_window(arch, v.domid, WindowClose::Put);
        if !v.blocked {
            // A blocked vCPU stays blocked while parked (Xen's runstate).
            self.runstate(arch, v, xen::domu::runstate::RUNNABLE);
        }
        arch.vcpu_put(&mut v.sysregs);
    }

    /// The loaded vCPU `v` changes runstate (its registered area is kept current).
    fn runstate(&self, arch: &mut dyn Arch, v: &Vcpu, state: u32) {
        let now = xen::domu::ticks_to_ns(arch.counter(), arch.counter_frequency());
        let s1 = xen::s1walk::Stage1::of(&*arch);
        let mut sh = self.shared.lock();
        let World { mem, domains, .. } = &mut *sh;
        if let Some(d) = domains.iter_mut().find(|d| d.id == v.domid) {
            crate::domain::runstate_switch(d, v.id, state, now, s1, mem);
        }
    }

    /// Run `v` (loaded) until it yields, stops or its domain ends.
    fn run_until_yield(&self, arch: &mut dyn Arch, v: &mut Vcpu) -> Next {
        loop {
            if let Some(g) = &v.vgic {
                // Before the LRs are filled: anything notified later is new
                // to the guest at the next exit.
                v.irq_mark = g.notified(v.id);
                g.flush_lrs(v.id, arch);
            }
            let raw = arch.run_vcpu(&mut v.gprs);
            if let Some(g) = &v.vgic {
                g.sync_lrs(v.id, arch);
            }
            crate::counters::GUEST_EXITS.fetch_add(1, Ordering::Relaxed);
            let epoch = crate::vgic::wake_epoch();
            match self.handle_exit(arch, v, &raw) {
                // An interrupt became pending somewhere (an SGI, an event
                // channel): let the loop kick pCPUs and wake vCPUs first.
                Next::Resume if crate::vgic::wake_epoch() != epoch => return Next::Resched,
                Next::Resume => {}
                other => return other,
            }
        }
    }

    fn handle_exit(&self, arch: &mut dyn Arch, v: &mut Vcpu, raw: &RawExit) -> Next {
        let (d, n) = (v.domid, v.id);
        let exit = ExitReason::decode(raw);
        // An IRQ exit decides once its interrupts are handled (`irq_exit`).
        if !matches!(exit, ExitReason::Irq | ExitReason::Fiq) {
            v.irq_keeps = 0;
            if window_closes(&exit, v) {
                let _ = self.close_window(arch, d, window_close_kind(&exit));
            }
        }
        match exit {
            ExitReason::Hvc { imm16: 0 } => self.psci(v),
            ExitReason::Hvc {
                imm16: xen::abi::XEN_HYPERCALL_TAG,
            } => {
                crate::counters::HYPERCALLS.fetch_add(1, Ordering::Relaxed);
                self.hypercall(arch, v)
            }
            ExitReason::Hvc { imm16 } => {
                // Not a Xen hypercall: an undefined instruction, as Xen's
                // do_trap_hypercall.
                crate::glog!(
                    d,
                    Warn,
                    "d{d}v{n}: HVC #{imm16:#x} is not a Xen hypercall at pc {:#x}: injecting undefined instruction",
                    v.gprs.pc.wrapping_sub(4)
                );
                // The return address is past the HVC; report the HVC itself.
                let elr = v.gprs.pc.wrapping_sub(4);
                v.inject_undef(arch, elr);
                Next::Resume
            }
            ExitReason::Smc { .. } => {
                // A trapped SMC returns to itself: step over it.
                v.gprs.pc = v.gprs.pc.wrapping_add(4);
                self.psci(v)
            }
            ExitReason::DataAbortLower(a) if self.gic_mmio(arch, v, &a).is_some() => Next::Resume,
            ExitReason::DataAbortLower(a)
                if self.fault_resolved(v, a.ipa, a.fsc, Need::data(a.wnr)) =>
            {
                Next::Resume
            }
            ExitReason::InstrAbortLower(a)
                if self.fault_resolved(v, a.ipa, a.fsc, Need::fetch(a.s1ptw)) =>
            {
                Next::Resume
            }
            ExitReason::DataAbortLower(a) => {
                let access = match a.access {
                    Some(s) => alloc::format!(", {} bytes via x{}", s.sas.bytes(), s.srt),
                    None => alloc::string::String::new(),
                };
                crate::glog!(
                    d,
                    Error,
                    "d{d}v{n}: stage-2 data abort at IPA {} ({}, {}{access}), ESR {:#x}, FAR {:#x}, HPFAR {:#x}, pc {:#x}, ending d{d}",
                    a.ipa,
                    a.fsc,
                    if a.wnr { "write" } else { "read" },
                    raw.esr,
                    raw.far,
                    raw.hpfar,
                    v.gprs.pc
                );
                Next::EndDomain(EndReason::Stage2Fault { ipa: a.ipa })
            }
            ExitReason::InstrAbortLower(a) => {
                crate::glog!(
                    d,
                    Error,
                    "d{d}v{n}: stage-2 instruction abort at IPA {} ({}), ESR {:#x}, FAR {:#x}, HPFAR {:#x}, ending d{d}",
                    a.ipa,
                    a.fsc,
                    raw.esr,
                    raw.far,
                    raw.hpfar
                );
                Next::EndDomain(EndReason::Stage2Fault { ipa: a.ipa })
            }
            ExitReason::SysReg(acc) if self.sgi_trap(v, &acc).is_some() => Next::Resume,
            ExitReason::SysReg(acc) if debug_pmu_answer(&acc, at_el0(v)).is_some() => {
                debug_pmu(arch, v, &acc);
                Next::Resume
            }
            ExitReason::SysReg(acc) if crate::idregs::id_encoding(&acc).is_some() => {
                crate::idregs::emulate(arch, v, &acc);
                Next::Resume
            }
            ExitReason::SysReg(acc) => {
                crate::glog!(
                    d,
                    Warn,
                    "d{d}v{n}: trapped {acc} at pc {:#x}: injecting undefined instruction",
                    v.gprs.pc
                );
                // ELR_EL2 points at the trapped instruction.
                let elr = v.gprs.pc;
                v.inject_undef(arch, elr);
                Next::Resume
            }
            ExitReason::Wfx { wfe } => self.wfx(arch, v, wfe, raw.esr),
            ExitReason::Irq | ExitReason::Fiq => self.irq_exit(arch, v),
            ExitReason::SError => {
                crate::glog!(
                    d,
                    Error,
                    "d{d}v{n}: SError, ESR {:#x}, ending d{d}",
                    raw.esr
                );
                Next::EndDomain(EndReason::UnhandledExit {
                    ec: esr_ec(raw.esr),
                })
            }
            ExitReason::Unknown {
                ec: ec @ (crate::idregs::EC_SVE | crate::idregs::EC_SME),
            } => {
                crate::idregs::sve_sme_trap(arch, v, ec);
                Next::Resume
            }
            ExitReason::Unknown { ec } => {
                crate::glog!(
                    d,
                    Error,
                    "d{d}v{n}: unhandled exit EC {ec:#04x}, ESR {:#x}, pc {:#x}, ending d{d}",
                    raw.esr,
                    v.gprs.pc
                );
                Next::EndDomain(EndReason::UnhandledExit { ec })
            }
        }
    }

    /// A stage-2 fault on an IPA that is mapped (again) by the time hv looks:
    /// the guest raced a change of its own p2m (a block split by
    /// break-before-make while giving back one page, a mapping being
    /// replaced), which another pCPU made under the `shared` lock. Taking
    /// that lock here waits for the change to finish; if the entry now allows
    /// the access, the vCPU retries the instruction (the PC still points at
    /// it), as Xen's `p2m_resolve_translation_fault` (which takes the p2m
    /// lock) and KVM's `user_mem_abort` do. Only faults a missing or changing
    /// entry causes are retried (translation, access flag, permission); the
    /// rest, and faults on IPAs still unmapped, go on to end the domain.
    fn fault_resolved(&self, v: &Vcpu, ipa: pv_tlb::Ipa, fsc: FaultStatus, need: Need) -> bool {
        if !matches!(
            fsc,
            FaultStatus::Translation { .. }
                | FaultStatus::AccessFlag { .. }
                | FaultStatus::Permission { .. }
        ) {
            return false;
        }
        let mut sh = self.shared.lock();
        let World { mem, domains, .. } = &mut *sh;
        let Some(d) = domains.iter().find(|d| d.id == v.domid) else {
            return false;
        };
        let Some((_, attrs)) = d.stage2().lookup(mem, ipa) else {
            return false;
        };
        let ok = attrs.read && (!need.write || attrs.write) && (!need.exec || attrs.exec);
        if ok {
            log::debug!(
                "d{}v{}: stage-2 {fsc} at IPA {ipa}: mapped now, retrying (pc {:#x})",
                v.domid,
                v.id,
                v.gprs.pc
            );
        }
        ok
    }

    /// A Xen hypercall from `v` (x16, x0..x4): [`hypercall::handle`] over
    /// the world, then its [`Reply`] and effects become the vCPU's next step
    /// (the one place the run loop does that).
    fn hypercall(&self, arch: &mut dyn Arch, v: &mut Vcpu) -> Next {
        let x = &v.gprs.x;
        let call = hypercall::Call {
            nr: x[16],
            args: [x[0], x[1], x[2], x[3], x[4]],
        };
        // Guest handles are virtual addresses of the calling vCPU (Xen on Arm).
        let s1 = xen::s1walk::Stage1::of(&*arch);
        let mut sh = self.shared.lock();
        let mut ctx = hypercall::Ctx::new(v.domid, v.id, s1, &mut sh, arch);
        let reply = hypercall::handle(call, &mut ctx);
        let fx = core::mem::take(&mut ctx.fx);
        crate::world::deliver_upcalls(&sh.domains, &fx.upcalls.upcalls);
        self.deferred.store(!sh.flush.is_idle(), Ordering::SeqCst);
        let mut next = apply_reply(&sh, v, reply);
        drop(sh);
        if fx.deschedule && next == Next::Resume {
            // Back to the loop top, which deschedules the paused domain's
            // vCPUs (`collect_ending`) before the caller runs on.
            next = Next::Resched;
        }
        if fx.domains_started > 0 {
            self.live_domains
                .fetch_add(fx.domains_started, Ordering::SeqCst);
        }
        if !fx.start.is_empty() {
            let mut rq = self.runq.lock();
            for n in fx.start {
                rq.push_back(n);
            }
        }
        next
    }

    /// PSCI for the guest (function id in w0; the pc is already past the
    /// call): [`crate::psci`], carried out in `start/run.rs`.
    fn psci(&self, v: &mut Vcpu) -> Next {
        self.guest_psci(v)
    }
}

/// Trapped debug/PMU register accesses answered RAZ/WI, and those answered
/// with an undefined instruction (printed at power-off).
pub static DEBUG_PMU_TRAPS: [core::sync::atomic::AtomicU64; 2] =
    [const { core::sync::atomic::AtomicU64::new(0) }; 2];

/// The vCPU trapped from EL0 (`SPSR_EL2.M` = EL0t).
fn at_el0(v: &Vcpu) -> bool {
    v.gprs.pstate & 0xf == crate::vcpu::PSR_MODE_EL0T
}

/// A trapped debug or PMU register access (`MDCR_EL2` traps them): answered
/// as Xen does ([`debug_pmu_answer`]): RAZ/WI, or an undefined instruction.
fn debug_pmu(arch: &mut dyn Arch, v: &mut Vcpu, acc: &SysRegAccess) {
    match debug_pmu_answer(acc, at_el0(v)) {
        Some(SysRegAnswer::RazWi) => {
            DEBUG_PMU_TRAPS[0].fetch_add(1, Ordering::Relaxed);
            if acc.read {
                if let Some(x) = v.gprs.x.get_mut(usize::from(acc.rt)) {
                    *x = 0;
                }
            }
            v.gprs.pc = v.gprs.pc.wrapping_add(4);
        }
        Some(SysRegAnswer::Undef) => {
            DEBUG_PMU_TRAPS[1].fetch_add(1, Ordering::Relaxed);
            log::debug!(
                "d{}v{}: {acc} (debug/PMU) at pc {:#x}: undefined instruction",
                v.domid,
                v.id,
                v.gprs.pc
            );
            // ELR_EL2 points at the trapped instruction.
            let elr = v.gprs.pc;
            v.inject_undef(arch, elr);
        }
        None => {}
    }
}

/// What a faulting access needed from its stage-2 entry.
#[derive(Clone, Copy, Debug)]
struct Need {
    write: bool,
    exec: bool,
}

impl Need {
    /// A data access; `WnR` is also set for a stage-1 walk that updates a
    /// descriptor (hardware access flag / dirty state), which needs write.
    fn data(wnr: bool) -> Self {
        Self {
            write: wnr,
            exec: false,
        }
    }

    /// An instruction fetch (execute permission), or the stage-1 table walk
    /// for one (`S1PTW`: a read).
    fn fetch(s1ptw: bool) -> Self {
        Self {
            write: false,
            exec: !s1ptw,
        }
    }
}

/// What `exit` counts as when it closes a window.
fn window_close_kind(exit: &ExitReason) -> WindowClose {
    match exit {
        ExitReason::Hvc {
            imm16: xen::abi::XEN_HYPERCALL_TAG,
        } => WindowClose::Hypercall,
        ExitReason::Irq | ExitReason::Fiq => WindowClose::Irq,
        ExitReason::Wfx { .. } => WindowClose::Wfx,
        ExitReason::DataAbortLower(_) | ExitReason::InstrAbortLower(_) => WindowClose::Abort,
        ExitReason::SysReg(_) => WindowClose::SysReg,
        _ => WindowClose::Other,
    }
}

/// True if `exit` (not an IRQ exit: `irq_exit`) of `v` closes its domain's
/// coalescing window: only an exit of the vCPU that made the removes (the
/// caller, [`Vcpu::window_opener`]) that [`keeps_window`] does not keep. A
/// sibling vCPU's exits leave it open: what it can reach through a stale
/// entry is a page the domain still holds (the pages stay held until the
/// flush), and it learns of the caller's removes only through memory, which
/// no exit of its own orders anyway (`pv_tlb::deferred`, "The coalescing
/// window"). dom0's idle vCPU waking and sleeping (WFI) beside libxl's
/// removes would otherwise cut them into dozens of plans per `xl create`.
fn window_closes(exit: &ExitReason, v: &mut Vcpu) -> bool {
    if keeps_window(exit, v) {
        if matches!(exit, ExitReason::Hvc { .. }) {
            v.window_opener = true;
        }
        return false;
    }
    core::mem::take(&mut v.window_opener)
}

/// True if `exit` leaves the caller's coalescing window open: a Xen
/// `memory_op` that is a remove (`XENMEM_remove_from_physmap`, hv's
/// `XENMEM_remove_from_physmap_batch`) or the continuation of a preempted
/// call (resume index in `cmd[63:6]`), a WFE, or an SGI write (`ICC_SGI1R_EL1`
/// and its kin). Every other exit closes it
/// (IRQ exits decide in `irq_exit`).
fn keeps_window(exit: &ExitReason, v: &Vcpu) -> bool {
    let imm16 = match *exit {
        // A WFE (trapped since HCR_EL2.TWE: hv yields the pCPU) tells the
        // caller nothing: it returns at once, or after another vCPU ran
        // here, and putting this vCPU for that closes the window (`put`).
        // A spinning dom0 vCPU would otherwise cut libxl's run of removes
        // into many plans.
        ExitReason::Wfx { wfe: true } => return true,
        // Sending an SGI tells the caller nothing either (the target, a
        // sibling, is not ordered by the window: `window_closes`). Nested,
        // dom0's IPIs between libxl's removes closed ~360 windows per create.
        ExitReason::SysReg(a) if a.is_sgi_write() => return true,
        ExitReason::Hvc { imm16 } => imm16,
        _ => return false,
    };
    let cmd = v.gprs.x[0];
    let op = cmd & memops::xen::MEMOP_CMD_MASK;
    imm16 == xen::abi::XEN_HYPERCALL_TAG
        && v.gprs.x[16] == xen::abi::nr::MEMORY_OP
        && (op == memops::xen::XENMEM_REMOVE_FROM_PHYSMAP
            || op == memops::xen::XENMEM_REMOVE_FROM_PHYSMAP_BATCH
            || cmd >> memops::xen::MEMOP_EXTENT_SHIFT != 0)
}

/// A hypercall's [`Reply`] as the vCPU's next step: x0, then resume, yield,
/// block, end the domain or re-issue (a continuation).
fn apply_reply<M: PhysMem + TableMem>(w: &World<M>, v: &mut Vcpu, reply: Reply) -> Next {
    v.gprs.x[0] = reply.ret;
    match reply.action {
        Action::Continue => Next::Resume,
        Action::Yield => Next::Yield,
        Action::Block => xen_block(&w.domains, &w.mem, v),
        Action::Shutdown(r) => Next::EndDomain(EndReason::Shutdown(r)),
        Action::Continuation { args, block } => continuation(&w.domains, &w.mem, v, args, block),
    }
}

/// A preempted hypercall (Xen's `hypercall_create_continuation` on Arm):
/// x0..x2 = `args`, the PC back onto the `HVC` (x16 still names the call),
/// then yield (or block) so hv's locks are free between the pieces.
fn continuation<M: PhysMem + TableMem>(
    domains: &[Domain],
    mem: &M,
    v: &mut Vcpu,
    args: [u64; 3],
    block: bool,
) -> Next {
    v.gprs.x[..3].copy_from_slice(&args);
    v.gprs.pc = v.gprs.pc.wrapping_sub(4);
    if block {
        xen_block(domains, mem, v)
    } else {
        Next::Yield
    }
}

/// `SCHEDOP_block`: resume at once if an event upcall or another interrupt is
/// pending for `v`, else block it like a WFI (the upcall PPI wakes it); a
/// guest whose GIC is off only yields.
fn xen_block<M: PhysMem + TableMem>(domains: &[Domain], mem: &M, v: &Vcpu) -> Next {
    let Some(d) = domains.iter().find(|d| d.id == v.domid) else {
        return Next::Yield;
    };
    if d.xen.evtchn.upcall_pending(v.id, mem) || d.vgic.has_deliverable(v.id) {
        Next::Resume
    } else if d.vgic.with_state(|s| s.grp0 || s.grp1) {
        Next::Block
    } else {
        // Its GIC is off: no upcall could ever wake it; let others run instead.
        Next::Yield
    }
}

/// What secondaries run: a [`System`] of any memory type.
pub trait CpuRunner: Sync {
    /// See [`System::run_cpu`].
    fn run_cpu(&self, arch: &mut dyn Arch) -> CpuExit;
}

impl<M: PhysMem + TableMem + Send> CpuRunner for System<M> {
    fn run_cpu(&self, arch: &mut dyn Arch) -> CpuExit {
        System::run_cpu(self, arch)
    }
}

static RUNNER: Once<&'static dyn CpuRunner> = Once::new();

fn finish(arch: &mut dyn Arch, exit: CpuExit) -> ! {
    match exit {
        CpuExit::PowerOff => arch.system_off(),
        CpuExit::AllEnded => loop {
            pause();
        },
    }
}

/// The boot CPU's last step: build a domain per kernel module (Xen's rule,
/// [`domains_from_modules`], no host DTB), let the secondaries in, and run
/// until every domain has ended; then power off.
pub fn run_primary<A: Arch, M: PhysMem + TableMem + Send + 'static>(
    arch: A,
    mem: M,
    modules: &[BootModule<'_>],
    options: &HvOptions,
) -> ! {
    run_primary_boot(
        arch,
        mem,
        &domains_from_modules(modules),
        &[],
        options,
        None,
    )
}

/// [`run_primary`] from a DTB's boot information: the module domains
/// (`BootInfo::module_domains`, dom0 first; with `hw`, dom0 is Xen's
/// hardware domain, [`System::add_boot_domains`]), then the dom0less domains
/// `domus` ([`System::add_dom0less`]).
pub fn run_primary_boot<A: Arch, M: PhysMem + TableMem + Send + 'static>(
    mut arch: A,
    mem: M,
    modules: &[ModuleDomain<'_>],
    domus: &[crate::bootinfo::DomUNode<'_>],
    options: &HvOptions,
    hw: Option<&HwEnv<'_>>,
) -> ! {
    log::debug!(
        "run_primary: tlb policy {:?}, nested {:?}",
        options.tlb,
        options.nested
    );
    let free = crate::mm::frame::frames().lock().free_count() as u64;
    let pool = carve_pool(&mut GlobalFrames, free);
    log::info!("guest page pool: {} MiB", pool.total_frames() >> 8);
    let policy = options.tlb_policy(crate::options::boot_facts());
    // Break-before-make invalidations by root are planned under the same policy.
    crate::tlb::init_stage2(policy, arch.vmid_bits());
    let system = System::new(
        mem,
        pool,
        policy,
        Box::new(xen::console::LogConsole),
        arch.vmid_bits(),
        arch.ipa_bits(),
    );
    let system: &'static System<M> = Box::leak(Box::new(system));
    system.add_boot_domains(modules, options, hw);
    system.add_dom0less(domus);
    if modules.is_empty() && domus.is_empty() {
        add_demo_domain(system);
    }
    if system.live_domains() == 0 {
        log::info!("no domain to run");
        log::info!("all domains ended, powering off");
        arch.system_off();
    }
    crate::console::endboot(&system.shared.lock().domains);
    RUNNER.call_once(|| system);
    let exit = system.run_cpu(&mut arch);
    finish(&mut arch, exit)
}

/// With no boot module at all, run the embedded demo guest (if one was built
/// in, see [`crate::demo`]) as d1 with the default RAM size.
fn add_demo_domain<M: PhysMem + TableMem + Send>(system: &System<M>) {
    let Some(image) = crate::demo::DEFAULT_GUEST else {
        return;
    };
    log::info!(
        "no boot modules: running the embedded demo guest ({} bytes)",
        image.len()
    );
    let mut read = |_: &M, off: u64, buf: &mut [u8]| crate::demo::read_into(image, off, buf);
    let spec = DomainSpec {
        ram_bytes: DEFAULT_RAM_BYTES,
        privileged: false,
        bootargs: None,
        dtb: true,
        vcpus: 1,
    };
    let kernel = BootImage {
        size: image.len() as u64,
        read: &mut read,
    };
    if let Err(e) = system.add_domain(spec, kernel, None) {
        log::error!("embedded demo guest: domain not built: {e}");
    }
}

/// A secondary CPU's last step: wait for the boot CPU's [`System`], then run vCPUs.
pub fn run_secondary<A: Arch>(mut arch: A) -> ! {
    let runner = loop {
        if let Some(r) = RUNNER.get() {
            break *r;
        }
        pause();
    };
    let exit = runner.run_cpu(&mut arch);
    finish(&mut arch, exit)
}

#[cfg(test)]
mod dom0_tests;
mod run;
#[cfg(test)]
mod tests;
