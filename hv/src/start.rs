//! The portable boot flow and run loop.
//!
//! [`run_primary`] builds one domain per kernel boot module, publishes the
//! [`System`] for the other CPUs and runs; [`run_secondary`] waits for it and
//! runs too. Scheduling is cooperative over one FIFO run queue shared by all
//! pCPUs (so vCPUs are dealt out round-robin): a pCPU runs a vCPU until it
//! yields (`SCHEDOP_yield`/`block`, WFI/WFE), ends, or its domain ends; a
//! vCPU that yields with nobody else waiting keeps its pCPU and is not
//! reloaded. Exits are decoded ([`ExitReason`]) and handled here: Xen
//! hypercalls, PSCI (SMC, or `HVC #0` as Xen's SMCCC path), undefined
//! instruction injection, stage-2 faults (retried when the IPA is mapped by
//! the time hv looks under the `shared` lock, e.g. after a block split; else
//! they end the domain only), trapped debug/PMU registers (RAZ/WI or undef).
//!
//! Locks: `shared` (memory, domains, VMIDs, frames, console) and `runq` are
//! never held at the same time. No lock is held while a guest runs.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memops::{FrameTable, TableMem};
use pv_tlb::{DeferredFlush, LastRan, Policy};
use pv_tlb::{PhysAddr, PAGE_SIZE};
use spin::{Mutex, Once};

use crate::arch::{Arch, PhysMem, RawExit};
use crate::bootinfo::{BootModule, ModuleKind};
use crate::domain::{
    DomId, Domain, DomainError, EndReason, FrameSource, VmidAllocator, DEFAULT_RAM_BYTES,
};
use crate::options::HvOptions;
use crate::trap::{debug_pmu_answer, esr_ec, ExitReason, FaultStatus, SysRegAccess, SysRegAnswer};
use crate::vcpu::Vcpu;
use crate::xen::memory::{MemoryOpCtx, MemoryOpResult};
use crate::xen::{self, Action, ConsoleSink, DecodeError, Hypercall, HypercallCtx};

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

/// State behind the `shared` lock.
struct Shared<M> {
    mem: M,
    domains: Vec<Domain>,
    vmids: VmidAllocator,
    pool: FrameTable,
    flush: DeferredFlush,
    sink: Box<dyn ConsoleSink + Send>,
}

impl<M> Shared<M> {
    fn entry(&mut self, id: DomId) -> Option<&mut Domain> {
        self.domains.iter_mut().find(|d| d.id == id)
    }
}

/// pCPUs whose armed EL2-timer deadline [`System`] caches (not a CPU limit).
const HV_TIMER_SLOTS: usize = 256;

/// Domains, vCPUs and host memory: everything the pCPUs share.
pub struct System<M> {
    shared: Mutex<Shared<M>>,
    runq: Mutex<crate::sched::RunQueues>,
    /// Each pCPU's armed EL2-timer deadline (`u64::MAX`: disarmed), a cache
    /// that saves redundant timer writes; a pCPU beyond it writes every time.
    hv_timer: [core::sync::atomic::AtomicU64; HV_TIMER_SLOTS],
    live_domains: AtomicUsize,
    ipa_bits: u8,
    next_domid: AtomicUsize,
    /// Some invalidation is pending in the flush gatherer (a coalescing
    /// window may be open): exits then take the lock to close it.
    deferred: AtomicBool,
    /// Free bytes of hv's heap (guest-driven allocations are gated on it).
    heap_free: fn() -> usize,
}

/// What a domain is built with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DomainSpec<'a> {
    /// RAM in bytes.
    pub ram_bytes: u64,
    /// The control domain: gets domid 0 and may use privileged calls.
    pub privileged: bool,
    /// Its command line (`/chosen/bootargs` of its DTB).
    pub bootargs: Option<&'a str>,
    /// Give it a DTB (and its ramdisk) with the address in x0; else x0 = 0.
    /// Such a guest also gets the Xen domU interfaces' state (shared info,
    /// grant frames, console ring: [`xen::domu::DomainXen::setup`]).
    pub dtb: bool,
    /// vCPUs (`XEN_DOMCTL_max_vcpus`; the DTB lists them; vCPU 0 boots).
    pub vcpus: u32,
}

impl DomainSpec<'_> {
    /// An unprivileged domain with `ram_bytes` of RAM and no DTB.
    #[must_use]
    pub const fn domu(ram_bytes: u64) -> Self {
        Self {
            ram_bytes,
            privileged: false,
            bootargs: None,
            dtb: false,
            vcpus: 1,
        }
    }
}

/// A boot image (kernel or ramdisk): its size and how to read it.
pub struct BootImage<'r, M> {
    /// Size in bytes.
    pub size: u64,
    /// Reads bytes `[off, off + buf.len())` of the image into `buf`.
    pub read: &'r mut dyn FnMut(&M, u64, &mut [u8]),
}

/// Parse a `vcpus=<n>` option from a module's bootargs (hv-specific, as
/// `mem=`; dom0less domains use the `cpus` property instead).
#[must_use]
pub fn parse_vcpus(bootargs: &str) -> Option<u32> {
    bootargs
        .split_whitespace()
        .find_map(|w| w.strip_prefix("vcpus="))?
        .parse()
        .ok()
}

/// The command line a module's guest gets: its bootargs without hv's own words
/// (`mem=`, `vcpus=`, `dom0`), which configure the domain, not the kernel (as Xen keeps
/// `dom0_mem=` on its own command line and a dom0less domain's `memory`/`cpus` in
/// properties, never in the guest's `bootargs`).
#[must_use]
pub fn guest_cmdline(bootargs: &str) -> alloc::string::String {
    let mut out = alloc::string::String::with_capacity(bootargs.len());
    for w in bootargs.split_whitespace() {
        if w == "dom0" || w.starts_with("mem=") || w.starts_with("vcpus=") {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// Parse a `mem=<n>[K|M|G]` option from a module's bootargs.
#[must_use]
pub fn parse_mem(bootargs: &str) -> Option<u64> {
    let v = bootargs
        .split_whitespace()
        .find_map(|w| w.strip_prefix("mem="))?;
    let (num, shift) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
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
            shared: Mutex::new(Shared {
                mem,
                domains: Vec::new(),
                vmids: VmidAllocator::new(vmid_bits),
                pool,
                flush: DeferredFlush::new(policy),
                sink,
            }),
            runq: Mutex::new(crate::sched::RunQueues::new(1, 1)),
            hv_timer: [const { core::sync::atomic::AtomicU64::new(u64::MAX) }; HV_TIMER_SLOTS],
            live_domains: AtomicUsize::new(0),
            ipa_bits,
            next_domid: AtomicUsize::new(1),
            deferred: AtomicBool::new(false),
            heap_free: crate::mm::heap::free,
        }
    }

    /// Replace how the heap's free bytes are read (tests of heap exhaustion).
    pub fn set_heap_probe(&mut self, f: fn() -> usize) {
        self.heap_free = f;
    }

    /// Build a domain (d0 if privileged, else d<N> with N counting from 1):
    /// RAM, the kernel, and (for [`DomainSpec::dtb`]) the ramdisk and a guest
    /// DTB whose address goes in x0; then queue its boot vCPU.
    ///
    /// # Errors
    /// [`DomainError`] if the domain cannot be built (nothing is left behind).
    pub fn add_domain(
        &self,
        spec: DomainSpec<'_>,
        kernel: BootImage<'_, M>,
        ramdisk: Option<BootImage<'_, M>>,
    ) -> Result<DomId, DomainError> {
        let ram_bytes = spec.ram_bytes;
        let mut sh = self.shared.lock();
        // Everything a domain of this size takes is checked before anything
        // is taken: frames for its RAM and hv's Xen pages, heap for a physmap
        // record per page, a slot in the domain list (a domain too large for
        // the machine gets this error, never a failed allocation).
        let pages = (ram_bytes / PAGE_SIZE).saturating_add(xen::domu::XEN_FRAMES);
        if pages > sh.pool.free_frames() {
            return Err(DomainError::OutOfMemory { bytes: ram_bytes });
        }
        let need = crate::mm::heap::build_bytes(pages).unwrap_or(usize::MAX);
        if !crate::mm::heap::room((self.heap_free)(), need) {
            return Err(DomainError::HeapFull {
                bytes: ram_bytes,
                need,
            });
        }
        reserve_domain_slot(&mut sh.domains, self.heap_free)?;
        let privileged = spec.privileged && !sh.domains.iter().any(|d| d.id == 0);
        if spec.privileged && !privileged {
            log::warn!("a control domain (d0) exists already: this one is unprivileged");
        }
        let id = if privileged {
            0
        } else {
            self.next_domid.fetch_add(1, Ordering::Relaxed) as DomId
        };
        let Shared {
            mem,
            vmids,
            pool,
            sink,
            ..
        } = &mut *sh;
        let mut dom = Domain::create(id, ram_bytes, self.ipa_bits, vmids, mem, pool)?;
        dom.max_vcpus = spec.vcpus.clamp(1, crate::vgic::MAX_VCPUS);
        dom.vgic.set_nr_vcpus(dom.max_vcpus);
        if spec.dtb {
            match xen::domu::DomainXen::setup(id, dom.max_vcpus, dom.physmap_mut(), mem, pool) {
                Ok(x) => dom.xen = x,
                Err(e) => {
                    dom.discard(mem, pool, vmids);
                    return Err(DomainError::Stage2(e));
                }
            }
        }
        let placed = dom
            .load_kernel(mem, kernel.size, kernel.read)
            .and_then(|k| {
                let x0 = if spec.dtb {
                    let rd = ramdisk.map(|r| (r.size, r.read));
                    dom.load_boot_data(mem, k.end, spec.bootargs, rd)?.0
                } else {
                    0
                };
                Ok((k, x0))
            });
        let (k, x0) = match placed {
            Ok(p) => p,
            Err(e) => {
                dom.discard(mem, pool, vmids);
                return Err(e);
            }
        };
        dom.privileged = privileged;
        sink.hv_line(format_args!(
            "d{id}: {} MiB RAM at {:#x}, VMID {}, kernel {:#x} bytes entry {}, DTB {x0:#x}{}",
            ram_bytes >> 20,
            crate::domain::GUEST_RAM0_BASE,
            dom.vmid().0,
            kernel.size,
            k.entry,
            if privileged { " (control domain)" } else { "" }
        ));
        dom.live_vcpus = 1;
        sh.domains.push(dom);
        drop(sh);
        self.live_domains.fetch_add(1, Ordering::SeqCst);
        self.runq
            .lock()
            .push_back(Box::new(Vcpu::new(id, 0, k.entry.0, x0)));
        Ok(id)
    }

    /// Build one domain per kernel module (Xen's `/chosen/module@` binding):
    /// `mem=` in its bootargs sets the RAM size, the word `dom0` makes it the
    /// privileged control domain d0, a `multiboot,ramdisk` module right after
    /// it becomes its initrd; each gets a DTB in x0 with its bootargs.
    pub fn add_module_domains(&self, modules: &[BootModule<'_>]) {
        self.add_module_domains_with(modules, &HvOptions::default());
    }

    /// [`System::add_module_domains`] with hv's command line: the control domain's RAM
    /// and vCPUs come from Xen's `dom0_mem=` / `dom0_max_vcpus=` unless its bootargs
    /// say `mem=` / `vcpus=`. hv's own words (`mem=`, `vcpus=`, `dom0`) are removed
    /// from the command line the guest gets ([`guest_cmdline`]).
    pub fn add_module_domains_with(&self, modules: &[BootModule<'_>], options: &HvOptions) {
        for (i, m) in modules
            .iter()
            .enumerate()
            .filter(|(_, m)| m.kind == ModuleKind::Kernel)
        {
            let privileged = m
                .bootargs
                .is_some_and(|a| a.split_whitespace().any(|w| w == "dom0"));
            let (dom0_mem, dom0_vcpus) = if privileged {
                (options.dom0_mem, options.dom0_max_vcpus)
            } else {
                (None, None)
            };
            let cmdline = m.bootargs.map(guest_cmdline);
            let spec = DomainSpec {
                ram_bytes: m
                    .bootargs
                    .and_then(parse_mem)
                    .or(dom0_mem)
                    .unwrap_or(DEFAULT_RAM_BYTES),
                privileged,
                bootargs: cmdline.as_deref().filter(|c| !c.is_empty()),
                dtb: true,
                vcpus: m.bootargs.and_then(parse_vcpus).or(dom0_vcpus).unwrap_or(1),
            };
            let base = m.pa;
            let mut read_kernel =
                |mem: &M, off: u64, buf: &mut [u8]| read_host(mem, PhysAddr(base.0 + off), buf);
            let rd = modules
                .get(i + 1)
                .filter(|r| r.kind == ModuleKind::Ramdisk)
                .copied();
            let rd_base = rd.map_or(PhysAddr(0), |r| r.pa);
            let mut read_rd =
                |mem: &M, off: u64, buf: &mut [u8]| read_host(mem, PhysAddr(rd_base.0 + off), buf);
            let r = self.add_domain(
                spec,
                BootImage {
                    size: m.size,
                    read: &mut read_kernel,
                },
                rd.map(|r| BootImage {
                    size: r.size,
                    read: &mut read_rd,
                }),
            );
            if let Err(e) = r {
                log::error!("module at {base}: domain not built: {e}");
            }
        }
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
        let Shared { mem, domains, .. } = &mut *sh;
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

    /// Load `v` on this CPU; false if its domain is gone.
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

    fn ending(&self, id: DomId) -> Option<EndReason> {
        self.shared.lock().entry(id).and_then(|d| d.ending)
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
        let Shared {
            mem,
            domains,
            vmids,
            pool,
            flush,
            sink,
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
        // Its log rate limit starts afresh for the next domain with this id.
        crate::ratelimit::forget(id);
        if e.from_domctl {
            // A toolstack-built domain stays (shut down) until destroydomain.
            sink.hv_line(format_args!("d{id} ended ({why})"));
        } else {
            let dom = domains.swap_remove(idx);
            crate::xen::domu::domain_destroyed(domains, &dom);
            dom.destroy(arch, mem, pool, flush, vmids);
            sink.hv_line(format_args!("d{id} ended ({why})"));
        }
        if self.live_domains.fetch_sub(1, Ordering::SeqCst) == 1 {
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
                "sched: switches={} same_vmid_switches={} lazy_resumes={} migrations={} preemptions={}",
                s.switches, s.same_vmid_switches, s.lazy_resumes, s.migrations, s.preemptions
            ));
            let c = xen::hvop::counters();
            let mut tlbi = alloc::string::String::new();
            for (k, n) in pv_tlb::TlbOpKind::ALL.iter().zip(c.iter()) {
                let _ =
                    core::fmt::Write::write_fmt(&mut tlbi, format_args!(" {}={n}", k.mnemonic()));
            }
            sink.hv_line(format_args!(
                "counters:{tlbi} p2m_ops={} plans={} guest_exits={} hypercalls={}",
                c[8], c[9], c[10], c[11]
            ));
            sink.hv_line(format_args!("all domains ended, powering off"));
            return Some(CpuExit::PowerOff);
        }
        None
    }

    /// Domain `id`'s coalescing window closes (its exit is not a coalescable
    /// remove, or one of its vCPUs is put): run the flushes it kept pending,
    /// then release their pages (`pv_tlb::deferred`, "The coalescing window").
    fn close_window(&self, arch: &mut dyn Arch, id: DomId) {
        if !self.deferred.load(Ordering::SeqCst) {
            return;
        }
        let mut sh = self.shared.lock();
        let Some(vmid) = sh.entry(id).map(|d| d.vmid()) else {
            return;
        };
        let f = sh.flush.close_window(vmid);
        crate::tlb::execute_ops(f.plan.ops(), arch);
        if let Err(e) = sh.pool.release(&f.released) {
            log::error!("d{id}: releasing pages after a window flush: {e}");
        }
        let idle = sh.flush.is_idle();
        self.deferred.store(!idle, Ordering::SeqCst);
    }

    /// Save `v`'s EL1 state (it leaves this pCPU), closing its domain's
    /// coalescing window first.
    fn put(&self, arch: &mut dyn Arch, v: &mut Vcpu) {
        self.close_window(arch, v.domid);
        self.runstate(arch, v, xen::domu::runstate::RUNNABLE);
        arch.vcpu_put(&mut v.sysregs);
    }

    /// The loaded vCPU `v` changes runstate (its registered area is kept current).
    fn runstate(&self, arch: &mut dyn Arch, v: &Vcpu, state: u32) {
        let now = xen::domu::ticks_to_ns(arch.counter(), arch.counter_frequency());
        let s1 = xen::s1walk::Stage1::of(&*arch);
        let mut sh = self.shared.lock();
        let Shared { mem, domains, .. } = &mut *sh;
        if let Some(d) = domains.iter_mut().find(|d| d.id == v.domid) {
            xen::domu::runstate_switch(d, v.id, state, now, s1, mem);
        }
    }

    /// Run `v` (loaded) until it yields, stops or its domain ends.
    fn run_until_yield(&self, arch: &mut dyn Arch, v: &mut Vcpu) -> Next {
        loop {
            if let Some(g) = &v.vgic {
                g.flush_lrs(v.id, arch);
            }
            let raw = arch.run_vcpu(&mut v.gprs);
            if let Some(g) = &v.vgic {
                g.sync_lrs(v.id, arch);
            }
            xen::hvop::GUEST_EXITS.fetch_add(1, Ordering::Relaxed);
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
        if !keeps_window(&exit, v) {
            self.close_window(arch, d);
        }
        match exit {
            ExitReason::Hvc { imm16: 0 } => self.psci(v),
            ExitReason::Hvc { imm16 } => {
                if imm16 == xen::abi::XEN_HYPERCALL_TAG {
                    xen::hvop::HYPERCALLS.fetch_add(1, Ordering::Relaxed);
                }
                let x = &v.gprs.x;
                match Hypercall::decode(imm16, x[16], &[x[0], x[1], x[2], x[3], x[4]]) {
                    Ok(Hypercall::Domctl { arg }) => self.domctl(arch, v, arg),
                    Ok(Hypercall::Sysctl { arg }) => self.sysctl(v, arg),
                    Ok(call) => self.hypercall(arch, v, &call),
                    Err(e @ DecodeError::NotXen { .. }) => {
                        crate::glog!(
                            d,
                            Warn,
                            "d{d}v{n}: {e} at pc {:#x}: injecting undefined instruction",
                            v.gprs.pc.wrapping_sub(4)
                        );
                        // The return address is past the HVC; report the HVC itself.
                        let elr = v.gprs.pc.wrapping_sub(4);
                        v.inject_undef(arch, elr);
                        Next::Resume
                    }
                    Err(e) => {
                        log::debug!("d{d}v{n}: {e}: -ENOSYS");
                        v.gprs.x[0] = e.errno().unwrap_or(xen::Errno::ENOSYS).to_x0();
                        Next::Resume
                    }
                }
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
        let Shared { mem, domains, .. } = &mut *sh;
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

    fn hypercall(&self, arch: &mut dyn Arch, v: &mut Vcpu, call: &Hypercall) -> Next {
        // Guest handles are virtual addresses of the calling vCPU (Xen on Arm).
        let s1 = Some(xen::s1walk::Stage1::of(&*arch));
        let mut sh = self.shared.lock();
        let Shared {
            mem,
            domains,
            sink,
            pool,
            flush,
            vmids,
        } = &mut *sh;
        // HVOP_get_resources reports system-wide state only this lock sees.
        let resources = matches!(
            call,
            Hypercall::HvOp {
                op: xen::hvop::HVOP_GET_RESOURCES,
                ..
            }
        )
        .then(|| xen::hvop::gather(domains, pool, vmids.in_use(), (self.heap_free)()));
        if let Hypercall::MemoryOp { cmd, arg } = *call {
            // The one dispatch point of memory operations (see xen::memory).
            let mut ctx = MemoryOpCtx {
                caller: v.domid,
                s1,
                mem,
                domains,
                pool,
                flush,
                arch,
                heap_free: self.heap_free,
            };
            let r = xen::memory::memory_op(cmd, arg, &mut ctx);
            self.deferred.store(!flush.is_idle(), Ordering::SeqCst);
            return match r {
                MemoryOpResult::Done(x0) => {
                    v.gprs.x[0] = x0;
                    Next::Resume
                }
                MemoryOpResult::Continue { cmd } => {
                    // Re-issue the HVC with the resume index; let others run first.
                    v.gprs.x[0] = cmd;
                    v.gprs.pc = v.gprs.pc.wrapping_sub(4);
                    Next::Yield
                }
            };
        }
        // The domU interfaces (event channels, grant table, vcpu_op, hvm_op,
        // vm_assist, multicall) see every domain: xen::domu.
        let mut upcalls = xen::evtchn::RecordingIrqSink::default();
        let out = xen::domu::system_call(
            call,
            &mut xen::domu::SysCtx {
                caller: v.domid,
                vcpu: v.id,
                s1,
                domains,
                mem,
                pool,
                sink: sink.as_mut(),
                irq: &mut upcalls,
            },
        );
        xen::domu::deliver_upcalls(domains, &upcalls.upcalls);
        if let Some(out) = out {
            v.gprs.x[0] = out.ret;
            return match out.action {
                Action::Continue => Next::Resume,
                Action::Yield => Next::Yield,
                Action::Block => xen_block(domains, mem, v),
                Action::Shutdown(r) => Next::EndDomain(EndReason::Shutdown(r)),
                Action::Continuation { args, block } => continuation(domains, mem, v, args, block),
            };
        }
        let Some(e) = domains.iter_mut().find(|d| d.id == v.domid) else {
            return Next::EndDomain(EndReason::UnhandledExit { ec: 0x16 });
        };
        let (privileged, handle) = (e.privileged, e.handle);
        let (stage2, line) = e.hypercall_parts();
        let mut ctx = HypercallCtx {
            domid: v.domid,
            privileged,
            handle,
            mem: crate::guest::GuestMemory::new(stage2, mem).with_stage1(s1),
            line,
            sink: sink.as_mut(),
        };
        let out = match (call, resources) {
            (Hypercall::HvOp { arg, .. }, Some(r)) => {
                xen::Outcome::ret(xen::hvop::get_resources(arg.ipa().0, &r, &mut ctx))
            }
            _ => xen::dispatch(call, &mut ctx),
        };
        v.gprs.x[0] = out.ret;
        match out.action {
            Action::Continue => Next::Resume,
            Action::Yield => Next::Yield,
            Action::Block => xen_block(domains, mem, v),
            Action::Shutdown(r) => Next::EndDomain(EndReason::Shutdown(r)),
            Action::Continuation { args, block } => continuation(domains, mem, v, args, block),
        }
    }

    /// PSCI for the guest (function id in w0; the pc is already past the
    /// call): [`crate::psci`], carried out in `start/run.rs`.
    fn psci(&self, v: &mut Vcpu) -> Next {
        self.guest_psci(v)
    }
}

/// Make room for one more domain in `domains` before anything is built:
/// at most [`crate::domain::MAX_DOMAINS`], and the list's growth (it doubles)
/// plus [`crate::mm::heap::DOMAIN_BYTES`] must fit above the heap's reserve;
/// the slot is then reserved fallibly. ~2048 `createdomain` calls once grew
/// the list to 7 MB past a 64 KiB check and hv's heap ran out (issue 9
/// finding 5).
fn reserve_domain_slot(
    domains: &mut Vec<Domain>,
    heap_free: fn() -> usize,
) -> Result<(), DomainError> {
    if domains.len() >= crate::domain::MAX_DOMAINS {
        return Err(DomainError::TooManyDomains);
    }
    let grow = if domains.len() == domains.capacity() {
        // RawVec's amortized growth: twice the capacity, at least 4.
        (domains.capacity() * 2).max(4) * core::mem::size_of::<Domain>()
    } else {
        0
    };
    let need = grow.saturating_add(crate::mm::heap::DOMAIN_BYTES);
    if !crate::mm::heap::room(heap_free(), need) {
        return Err(DomainError::HeapFull { bytes: 0, need });
    }
    domains
        .try_reserve(1)
        .map_err(|_| DomainError::HeapFull { bytes: 0, need })
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

/// True if `exit` leaves the caller's coalescing window open: a Xen
/// `memory_op` that is a remove (`XENMEM_remove_from_physmap`, hv's
/// `XENMEM_remove_from_physmap_batch`) or the continuation of a preempted
/// call (resume index in `cmd[63:6]`). Every other exit closes it.
fn keeps_window(exit: &ExitReason, v: &Vcpu) -> bool {
    let ExitReason::Hvc { imm16 } = *exit else {
        return false;
    };
    let cmd = v.gprs.x[0];
    let op = cmd & memops::xen::MEMOP_CMD_MASK;
    imm16 == xen::abi::XEN_HYPERCALL_TAG
        && v.gprs.x[16] == xen::abi::nr::MEMORY_OP
        && (op == memops::xen::XENMEM_REMOVE_FROM_PHYSMAP
            || op == memops::xen::XENMEM_REMOVE_FROM_PHYSMAP_BATCH
            || cmd >> memops::xen::MEMOP_EXTENT_SHIFT != 0)
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

/// Copy host memory at `pa` into `buf`, split at page boundaries as [`PhysMem`] requires.
pub fn read_host<M: PhysMem + ?Sized>(mem: &M, pa: PhysAddr, buf: &mut [u8]) {
    let mut done = 0usize;
    while done < buf.len() {
        let at = PhysAddr(pa.0 + done as u64);
        let n = ((PAGE_SIZE - at.page_offset()) as usize).min(buf.len() - done);
        mem.read(at, &mut buf[done..done + n]);
        done += n;
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

/// The boot CPU's last step: build a domain per kernel module, let the
/// secondaries in, and run until every domain has ended; then power off.
pub fn run_primary<A: Arch, M: PhysMem + TableMem + Send + 'static>(
    arch: A,
    mem: M,
    modules: &[BootModule<'_>],
    options: &HvOptions,
) -> ! {
    run_primary_with_domus(arch, mem, modules, &[], options)
}

/// [`run_primary`] that also builds the dom0less domains `domus` (after the
/// module domains, see [`crate::dom0less`]).
pub fn run_primary_with_domus<A: Arch, M: PhysMem + TableMem + Send + 'static>(
    mut arch: A,
    mem: M,
    modules: &[BootModule<'_>],
    domus: &[crate::bootinfo::DomUNode<'_>],
    options: &HvOptions,
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
    system.add_module_domains_with(modules, options);
    crate::dom0less::add_domus(system, domus);
    if modules.is_empty() && domus.is_empty() {
        add_demo_domain(system);
    }
    if system.live_domains() == 0 {
        log::info!("no domain to run");
        log::info!("all domains ended, powering off");
        arch.system_off();
    }
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

mod domctl;
mod run;
#[cfg(test)]
mod tests;
