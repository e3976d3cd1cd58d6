//! A virtual GICv3 per domain: distributor and redistributor state, MMIO
//! emulation at Xen's guest addresses, SGIs from trapped `ICC_SGI1R_EL1`
//! writes, and the list-register state machine ([`lr`]).
//!
//! # API for the rest of hv (stable)
//! - [`Vgic::inject`]`(vcpu, intid)`: make an interrupt pending (edge
//!   semantics: a latch). `vcpu` selects the redistributor for SGIs/PPIs
//!   (INTID < 32) and is ignored for SPIs (routed by `GICD_IROUTER`). Used for
//!   the event-channel upcall ([`PPI_EVTCHN`]) and the virtual timer ([`PPI_VTIMER`]).
//! - [`Vgic::set_level`]`(vcpu, intid, high)`: drive a level-sensitive input.
//! - [`Vgic::is_pending`], [`Vgic::has_deliverable`]: queries (a blocked
//!   vCPU is woken when `has_deliverable` turns true).
//! - [`Vgic::with_layout`]`(domid, nr_vcpus, layout)`: a vGIC at other
//!   addresses ([`VgicLayout`]; dom0 sees its vGIC at the host's GICD/GICR,
//!   as Xen's hardware domain, with the host's number of SPIs).
//! - [`Vgic::route_hw_spi`]`(intid, level)`: link virtual SPI `intid` to the
//!   physical SPI of the same number ([`crate::irq`]); [`Vgic::inject_hw`] is
//!   how the IRQ exit delivers it, [`Vgic::release_hw`] gives every link back
//!   (domain destroy).
//! - Every injection that may need a running or sleeping pCPU to look again
//!   sets bits in [`take_kicks`] (a global hint: the run loop sends hv's kick
//!   SGI to those pCPUs after each exit it handles).
//!
//! # Guest layout (Xen's `xen/include/public/arch-arm.h`)
//! `GUEST_GICV3_GICD_BASE` 0x0300_1000 (64 KiB), `GUEST_GICV3_GICR0_BASE`
//! 0x0302_0000 with one 128 KiB redistributor (RD_base + SGI_base frames)
//! per vCPU, up to 128 vCPUs (`GUEST_GICV3_GICR0_SIZE` 16 MiB).
//! Any other [`VgicLayout`] (dom0 at the host's addresses) decodes the 64 KiB
//! distributor and exactly one redistributor frame pair per vCPU of the
//! domain: the host's redistributor region is followed by other devices
//! (QEMU virt: GICR 0x080a_0000..0x0900_0000, then the UART), so the vGIC
//! must not claim more than it serves. Xen's `vgic_v3_domain_init` gives
//! the hardware domain the host's regions the same way.
//!
//! # Hardware interrupts (see [`crate::irq`])
//! A virtual SPI linked to a physical one ([`IrqState::hw`]) is presented
//! with `ICH_LR<n>_EL2.HW` = 1 and pINTID = its INTID; the guest's
//! deactivation deactivates the physical SPI. Its guest-visible registers
//! reach the physical distributor as Xen's `vgic_enable_irqs` and KVM's
//! `vgic_hw_irq_*` do: `ISENABLER`/`ICENABLER` enable/disable the physical
//! SPI; `ISPENDR` makes the *physical* one pending (it then arrives as any
//! other); `ICPENDR` clears both and, if the virtual one is not active,
//! deactivates the physical one hv acknowledged for it; `ICACTIVER` on a
//! virtual SPI that is not pending does the same (else the physical SPI
//! would stay active and never fire again). A list register never holds a
//! HW interrupt both pending and active (KVM's rule: the physical side holds
//! the second pending state).
//!
//! # What the guest sees
//! A GICv3 with a single security state (`GICD_CTLR.DS` = 1), affinity
//! routing always on (`ARE` RAO/WI), no LPIs/ITS, [`SPI_COUNT`] SPIs,
//! 5 priority bits. Registers outside the set Linux's `irq-gic-v3.c` uses
//! read as zero and ignore writes, with a rate-limited warning naming the
//! offset (never silently); an access without a valid instruction syndrome
//! in the GIC ranges gets a synchronous external abort injected (hv cannot
//! emulate it without decoding the instruction).

pub mod lr;
pub mod mmio;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use spin::Mutex;

use crate::irq::HwIrqs;
/// Why [`Vgic::route_hw_spi`] refused (defined with the SPI ownership table).
pub use crate::irq::RouteError;

/// Distributor base IPA (`GUEST_GICV3_GICD_BASE`).
pub const GICD_BASE: u64 = 0x0300_1000;
/// Distributor size (`GUEST_GICV3_GICD_SIZE`).
pub const GICD_SIZE: u64 = 0x1_0000;
/// First redistributor IPA (`GUEST_GICV3_GICR0_BASE`).
pub const GICR_BASE: u64 = 0x0302_0000;
/// Size of the redistributor region (`GUEST_GICV3_GICR0_SIZE`, 128 vCPUs).
pub const GICR_SIZE: u64 = 0x0100_0000;
/// One vCPU's redistributor: RD_base and SGI_base frames.
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Most vCPUs a domain's vGIC serves (`GICR_SIZE / GICR_STRIDE`).
pub const MAX_VCPUS: u32 = (GICR_SIZE / GICR_STRIDE) as u32;
/// SPIs each vGIC at [`VgicLayout::GUEST`] has (INTIDs 32..32 + SPI_COUNT).
pub const SPI_COUNT: u32 = 64;
/// One past the largest INTID a vGIC at [`VgicLayout::GUEST`] implements.
pub const NR_IRQS: u32 = 32 + SPI_COUNT;
/// Most SPIs any vGIC implements (INTIDs up to 1019).
pub const MAX_SPIS: u32 = crate::irq::SPI_LIMIT - 32;

/// Where a domain's distributor and redistributors sit in its IPA space.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VgicLayout {
    /// Distributor base (64 KiB, [`GICD_SIZE`]).
    pub gicd: u64,
    /// First redistributor; one [`GICR_STRIDE`] (RD_base + SGI_base) per vCPU.
    pub gicr: u64,
}

impl VgicLayout {
    /// Xen's guest addresses (`GUEST_GICV3_GICD_BASE`, `GUEST_GICV3_GICR0_BASE`).
    pub const GUEST: VgicLayout = VgicLayout {
        gicd: GICD_BASE,
        gicr: GICR_BASE,
    };

    /// True if `ipa` is in the distributor frame.
    #[must_use]
    pub fn in_gicd(&self, ipa: u64) -> bool {
        ipa.wrapping_sub(self.gicd) < GICD_SIZE
    }

    /// Bytes of redistributor space decoded for `nr_vcpus` vCPUs: Xen's
    /// whole guest region at [`VgicLayout::GUEST`], one frame pair per vCPU
    /// elsewhere (see the module doc).
    #[must_use]
    pub fn gicr_size(&self, nr_vcpus: u32) -> u64 {
        if *self == VgicLayout::GUEST {
            GICR_SIZE
        } else {
            u64::from(nr_vcpus.clamp(1, MAX_VCPUS)) * GICR_STRIDE
        }
    }

    /// True if `ipa` is in the redistributor space of `nr_vcpus` vCPUs.
    #[must_use]
    pub fn in_gicr(&self, ipa: u64, nr_vcpus: u32) -> bool {
        ipa.wrapping_sub(self.gicr) < self.gicr_size(nr_vcpus)
    }
}

/// Xen's event-channel upcall PPI (`GUEST_EVTCHN_PPI`).
pub const PPI_EVTCHN: u32 = 31;
/// The EL1 virtual timer PPI (`GUEST_TIMER_VIRT_PPI`).
pub const PPI_VTIMER: u32 = 27;
/// The EL1 physical timer PPI (`GUEST_TIMER_PHYS_NS_PPI`).
pub const PPI_PTIMER: u32 = 30;

/// Priority mask of the 5 implemented priority bits.
pub const PRIO_MASK: u8 = 0xf8;

/// Why an injection or query was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VgicError {
    /// The INTID is not implemented (SPIs beyond [`NR_IRQS`], or special INTIDs).
    BadIntid(u32),
    /// The vCPU index is beyond the domain's vCPUs.
    BadVcpu(u32),
}

impl core::fmt::Display for VgicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VgicError::BadIntid(i) => write!(f, "INTID {i} not implemented"),
            VgicError::BadVcpu(v) => write!(f, "no vCPU {v}"),
        }
    }
}

/// State of one virtual interrupt.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct IrqState {
    /// `ISENABLER`.
    pub enabled: bool,
    /// Pending latch (edge, or set through `ISPENDR`) not yet in a list register.
    pub pending: bool,
    /// Active (acknowledged, not yet deactivated), when not in a list register.
    pub active: bool,
    /// The input line of a level-sensitive interrupt ([`Vgic::set_level`]).
    pub line: bool,
    /// `ICFGR`: level-sensitive (false: edge-triggered).
    pub level: bool,
    /// `IGROUPR`: Group 1.
    pub group1: bool,
    /// `IPRIORITYR` (only [`PRIO_MASK`] bits kept).
    pub priority: u8,
    /// Currently held by a list register of the vCPU it is queued on.
    pub in_lr: bool,
    /// Linked to the physical SPI of the same INTID ([`Vgic::route_hw_spi`]).
    pub hw: bool,
}

impl IrqState {
    /// Pending as the GIC sees it (latch, or a high level-sensitive line).
    #[must_use]
    pub fn pending_now(&self) -> bool {
        self.pending || (self.level && self.line)
    }
}

/// Per-vCPU (redistributor) state.
#[derive(Clone, Debug)]
pub struct VgicCpu {
    /// SGIs and PPIs (INTIDs 0..32).
    pub private: [IrqState; 32],
    /// `GICR_WAKER.ProcessorSleep`.
    pub sleep: bool,
    /// List-register bookkeeping of this vCPU ([`lr::LrBook`]).
    pub lrs: lr::LrBook,
    /// The pCPU this vCPU is loaded on (running, or kept loaded while idle).
    pub resident: Option<usize>,
    /// How many times something became pending for this vCPU
    /// ([`Vgic::notified`]; a cell: bumped by `notify`, which needs no
    /// `&mut`, always under the vGIC's lock).
    pub notified: core::cell::Cell<u64>,
}

impl Default for VgicCpu {
    fn default() -> Self {
        let mut private = [IrqState::default(); 32];
        for (i, p) in private.iter_mut().enumerate() {
            // SGIs are edge-triggered and always enabled for forwarding
            // decisions by GICR_ISENABLER0; PPIs reset level-sensitive.
            p.level = i >= 16;
        }
        Self {
            private,
            sleep: true,
            lrs: lr::LrBook::default(),
            resident: None,
            notified: core::cell::Cell::new(0),
        }
    }
}

/// The mutable state behind a [`Vgic`]'s lock.
#[derive(Clone, Debug)]
pub struct VgicState {
    /// The owning domain (for log lines).
    pub domid: u16,
    /// `GICD_CTLR.EnableGrp0`.
    pub grp0: bool,
    /// `GICD_CTLR.EnableGrp1`.
    pub grp1: bool,
    /// SPIs (INTID 32 + index).
    pub spis: Vec<IrqState>,
    /// `GICD_IROUTER<n>` of each SPI.
    pub routes: Vec<u64>,
    /// Redistributors, one per vCPU.
    pub cpus: Vec<VgicCpu>,
    /// Where the guest sees the distributor and redistributors.
    pub layout: VgicLayout,
    /// The physical distributor and SPI ownership, for hardware interrupts.
    pub hw: Option<Arc<HwIrqs>>,
}

/// One domain's virtual GIC (shared by its vCPUs and by whoever injects).
#[derive(Debug)]
pub struct Vgic {
    state: Mutex<VgicState>,
}

impl Drop for Vgic {
    /// A vGIC that goes away gives its hardware interrupts back (domain
    /// destroy calls [`Vgic::release_hw`] earlier; this is the safety net).
    fn drop(&mut self) {
        self.state.get_mut().release_hw();
    }
}

/// pCPUs that should look at their vCPUs' interrupts again (bit n = pCPU n).
static KICKS: AtomicU64 = AtomicU64::new(0);

/// Take (and clear) the set of pCPUs to kick: bit n for pCPU n. The run loop
/// sends hv's kick SGI to each of them except itself.
pub fn take_kicks() -> u64 {
    KICKS.swap(0, Ordering::AcqRel)
}

/// Add pCPUs to the kick set.
pub fn request_kicks(mask: u64) {
    if mask != 0 {
        KICKS.fetch_or(mask, Ordering::AcqRel);
    }
}

/// Bumped whenever an interrupt becomes pending for some vCPU: the scheduler
/// re-examines blocked vCPUs when it changed.
static WAKE_EPOCH: AtomicU64 = AtomicU64::new(0);

/// The current wake epoch (see [`WAKE_EPOCH`]'s doc).
pub fn wake_epoch() -> u64 {
    WAKE_EPOCH.load(Ordering::Acquire)
}

/// How many unknown-register accesses guests made (all domains).
static UNKNOWN_SEEN: AtomicU32 = AtomicU32::new(0);

/// Warn about an unimplemented register, rate-limited per domain
/// ([`crate::ratelimit`]).
pub(crate) fn warn_unknown(domid: u16, what: &str, offset: u64, write: bool) {
    let n = UNKNOWN_SEEN.fetch_add(1, Ordering::Relaxed);
    crate::glog!(
        domid,
        Warn,
        "d{domid}: vGIC {what} offset {offset:#06x} not implemented ({}): RAZ/WI [{} so far]",
        if write { "write" } else { "read" },
        n + 1
    );
}

impl Vgic {
    /// A vGIC for domain `domid` with `nr_vcpus` redistributors
    /// (1..=[`MAX_VCPUS`]) at Xen's guest addresses, [`SPI_COUNT`] SPIs.
    #[must_use]
    pub fn new(domid: u16, nr_vcpus: u32) -> Self {
        Self::with_layout(domid, nr_vcpus, VgicLayout::GUEST)
    }

    /// A vGIC at `layout`. At [`VgicLayout::GUEST`] it has [`SPI_COUNT`]
    /// SPIs; at any other layout (dom0 at the host's addresses) the host's
    /// number of SPIs (`GICD_TYPER.ITLinesNumber` of the physical
    /// distributor, as Xen's `vgic_v3_domain_init` for the hardware domain),
    /// or [`SPI_COUNT`] when hv has no physical distributor. Hardware
    /// interrupts go through the machine's [`crate::irq::global`] table.
    #[must_use]
    pub fn with_layout(domid: u16, nr_vcpus: u32, layout: VgicLayout) -> Self {
        Self::with_hw(domid, nr_vcpus, layout, crate::irq::global())
    }

    /// [`Vgic::with_layout`] with an explicit hardware-interrupt table (host
    /// tests give a fake one).
    #[must_use]
    pub fn with_hw(domid: u16, nr_vcpus: u32, layout: VgicLayout, hw: Option<Arc<HwIrqs>>) -> Self {
        let n = nr_vcpus.clamp(1, MAX_VCPUS) as usize;
        let nr_spis = match &hw {
            Some(h) if layout != VgicLayout::GUEST => h.nr_spis().min(MAX_SPIS),
            _ => SPI_COUNT,
        } as usize;
        let spi = IrqState {
            level: true,
            ..IrqState::default()
        };
        Self {
            state: Mutex::new(VgicState {
                domid,
                grp0: false,
                grp1: false,
                spis: alloc::vec![spi; nr_spis],
                routes: alloc::vec![0; nr_spis],
                cpus: alloc::vec![VgicCpu::default(); n],
                layout,
                hw,
            }),
        }
    }

    /// Where the guest sees this vGIC.
    #[must_use]
    pub fn layout(&self) -> VgicLayout {
        self.state.lock().layout
    }

    /// SPIs this vGIC implements.
    #[must_use]
    pub fn nr_spis(&self) -> u32 {
        self.state.lock().spis.len() as u32
    }

    /// True if `ipa` is one of this vGIC's registers (its distributor, or the
    /// redistributor frames of its vCPUs; see [`VgicLayout::gicr_size`]).
    #[must_use]
    pub fn in_range(&self, ipa: u64) -> bool {
        let s = self.state.lock();
        s.layout.in_gicd(ipa) || s.layout.in_gicr(ipa, s.cpus.len() as u32)
    }

    /// [`Vgic::in_range`] (the name the integration branch uses).
    #[must_use]
    pub fn contains(&self, ipa: u64) -> bool {
        self.in_range(ipa)
    }

    /// Link virtual SPI `intid` to physical SPI `intid` (Xen gives the
    /// hardware domain the same numbers): the physical SPI is given to this
    /// domain and configured (Group 1, a priority, level-sensitive if `level`
    /// else edge-triggered, routed to pCPU [`crate::irq::TARGET_PCPU`]),
    /// enabled only while the guest enables the virtual one. The virtual
    /// SPI's trigger is set to match. Routing it again reconfigures it.
    ///
    /// # Errors
    /// [`RouteError::NotSpi`] for an INTID that is no physical SPI,
    /// [`RouteError::BeyondVgic`] for one beyond this vGIC's SPIs,
    /// [`RouteError::Busy`] if hv or another domain owns it,
    /// [`RouteError::NoPhysicalGic`] without a physical distributor.
    pub fn route_hw_spi(&self, intid: u32, level: bool) -> Result<(), RouteError> {
        let mut s = self.state.lock();
        let domid = s.domid;
        let r = s.route_hw_spi(intid, level);
        match r {
            Ok(()) => log::debug!(
                "d{domid}: physical SPI {intid} routed as a hardware interrupt ({})",
                if level { "level" } else { "edge" }
            ),
            Err(e) => log::warn!("d{domid}: cannot route physical SPI {intid}: {e}"),
        }
        r
    }

    /// True if virtual SPI `intid` is linked to the physical one.
    #[must_use]
    pub fn is_hw(&self, intid: u32) -> bool {
        let mut s = self.state.lock();
        intid >= 32 && s.irq_mut(0, intid).is_ok_and(|i| i.hw)
    }

    /// The INTIDs linked to physical SPIs, in order.
    #[must_use]
    pub fn hw_spis(&self) -> Vec<u32> {
        let s = self.state.lock();
        s.spis
            .iter()
            .enumerate()
            .filter(|(_, i)| i.hw)
            .map(|(n, _)| n as u32 + 32)
            .collect()
    }

    /// Physical SPI `intid` was acknowledged by hv (and its priority
    /// dropped): make the linked virtual SPI pending for its target vCPU,
    /// which is kicked or woken ([`take_kicks`], [`wake_epoch`]). The
    /// physical SPI stays active until the guest deactivates the virtual
    /// one (list register HW bit).
    ///
    /// # Errors
    /// [`VgicError::BadIntid`] if `intid` is not linked here.
    pub fn inject_hw(&self, intid: u32) -> Result<(), VgicError> {
        let mut s = self.state.lock();
        if intid < 32 {
            return Err(VgicError::BadIntid(intid));
        }
        let target = s.spi_target(intid);
        let irq = s.irq_mut(target, intid)?;
        if !irq.hw {
            return Err(VgicError::BadIntid(intid));
        }
        irq.pending = true;
        s.notify(target);
        Ok(())
    }

    /// Give every physical SPI linked here back ([`crate::irq::HwIrqs::release`]:
    /// disabled, deactivated, free for another domain). Domain destroy.
    pub fn release_hw(&self) {
        self.state.lock().release_hw();
    }

    /// Number of redistributors (vCPUs).
    #[must_use]
    pub fn nr_vcpus(&self) -> u32 {
        self.state.lock().cpus.len() as u32
    }

    /// Grow (or shrink) to `n` redistributors (`XEN_DOMCTL_max_vcpus`, or the
    /// dom0less `cpus` property), 1..=[`MAX_VCPUS`].
    pub fn set_nr_vcpus(&self, n: u32) {
        let n = n.clamp(1, MAX_VCPUS) as usize;
        self.state.lock().cpus.resize(n, VgicCpu::default());
    }

    /// Run `f` on the locked state (tests, the run loop's LR hooks).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut VgicState) -> R) -> R {
        f(&mut self.state.lock())
    }

    /// Make `intid` pending (edge semantics: a latch the guest's acknowledge
    /// consumes) for vCPU `vcpu` (SGIs/PPIs) or its routed target (SPIs).
    ///
    /// # Errors
    /// [`VgicError::BadIntid`] for INTIDs the vGIC does not implement,
    /// [`VgicError::BadVcpu`] for a vCPU beyond the domain's.
    pub fn inject(&self, vcpu: u32, intid: u32) -> Result<(), VgicError> {
        let mut s = self.state.lock();
        let target = s.target_of(vcpu, intid)?;
        s.irq_mut(target, intid)?.pending = true;
        s.notify(target);
        Ok(())
    }

    /// Drive the input line of a level-sensitive `intid` (vCPU as for [`Vgic::inject`]).
    ///
    /// # Errors
    /// As [`Vgic::inject`].
    pub fn set_level(&self, vcpu: u32, intid: u32, high: bool) -> Result<(), VgicError> {
        let mut s = self.state.lock();
        let target = s.target_of(vcpu, intid)?;
        let irq = s.irq_mut(target, intid)?;
        let rose = high && !irq.line;
        irq.line = high;
        if rose {
            s.notify(target);
        }
        Ok(())
    }

    /// True if `intid` is pending (latched or by level) for `vcpu`.
    #[must_use]
    pub fn is_pending(&self, vcpu: u32, intid: u32) -> bool {
        let mut s = self.state.lock();
        let Ok(target) = s.target_of(vcpu, intid) else {
            return false;
        };
        s.irq_mut(target, intid).is_ok_and(|i| i.pending_now())
    }

    /// How many times an interrupt became pending (or something else
    /// changed) for vCPU `vcpu`: unchanged across a guest exit means that
    /// exit gave the vCPU nothing new to take (the coalescing window's IRQ
    /// rule, `pv_tlb::deferred`).
    #[must_use]
    pub fn notified(&self, vcpu: u32) -> u64 {
        let s = self.state.lock();
        s.cpus.get(vcpu as usize).map_or(0, |c| c.notified.get())
    }

    /// True if vCPU `vcpu` has an interrupt the GIC would signal to it
    /// (pending, enabled, its group enabled), or one in its list registers.
    #[must_use]
    pub fn has_deliverable(&self, vcpu: u32) -> bool {
        let s = self.state.lock();
        s.deliverable(vcpu as usize)
    }

    /// Deliver the SGIs of a trapped `ICC_SGI1R_EL1` / `ICC_ASGI1R_EL1` /
    /// `ICC_SGI0R_EL1` write by vCPU `from` with value `val` (GICv3
    /// architecture spec, "ICC_SGI1R_EL1": TargetList [15:0], Aff1 [23:16],
    /// INTID [27:24], Aff2 [39:32], IRM [40], RS [47:44], Aff3 [55:48]).
    /// Returns how many vCPUs were targeted.
    pub fn send_sgi(&self, from: u32, val: u64) -> usize {
        let intid = ((val >> 24) & 0xf) as u32;
        let irm = (val >> 40) & 1 == 1;
        let mut s = self.state.lock();
        let n = s.cpus.len() as u32;
        let mut hits = 0;
        for v in 0..n {
            let hit = if irm {
                v != from
            } else {
                let aff1 = (val >> 16) & 0xff;
                let aff2 = (val >> 32) & 0xff;
                let aff3 = (val >> 48) & 0xff;
                let rs = (val >> 44) & 0xf;
                let (v_aff0, v_aff1) = (u64::from(v & 0xff), u64::from((v >> 8) & 0xff));
                aff3 == 0
                    && aff2 == 0
                    && aff1 == v_aff1
                    && v_aff0 / 16 == rs
                    && (val >> (v_aff0 % 16)) & 1 == 1
            };
            if hit {
                s.cpus[v as usize].private[intid as usize].pending = true;
                s.notify(v as usize);
                hits += 1;
            }
        }
        hits
    }

    /// Record where vCPU `vcpu` is loaded (`None` once it is put).
    pub fn set_resident(&self, vcpu: u32, pcpu: Option<usize>) {
        if let Some(c) = self.state.lock().cpus.get_mut(vcpu as usize) {
            c.resident = pcpu;
        }
    }
}

impl VgicState {
    /// The vCPU an interrupt belongs to: `vcpu` for INTID < 32, the routed
    /// vCPU for SPIs (`GICD_IROUTER`: Aff1.Aff0 name a vCPU; IRM = 1 or an
    /// unknown affinity means vCPU 0).
    fn target_of(&self, vcpu: u32, intid: u32) -> Result<usize, VgicError> {
        if intid < 32 {
            if (vcpu as usize) < self.cpus.len() {
                return Ok(vcpu as usize);
            }
            return Err(VgicError::BadVcpu(vcpu));
        }
        if intid >= self.nr_irqs() {
            return Err(VgicError::BadIntid(intid));
        }
        Ok(self.spi_target(intid))
    }

    /// One past the largest INTID this vGIC implements.
    #[must_use]
    pub fn nr_irqs(&self) -> u32 {
        32 + self.spis.len() as u32
    }

    fn route_hw_spi(&mut self, intid: u32, level: bool) -> Result<(), RouteError> {
        let hw = self.hw.clone().ok_or(RouteError::NoPhysicalGic)?;
        if !(crate::irq::SPI_FIRST..hw.lines()).contains(&intid) {
            return Err(RouteError::NotSpi(intid));
        }
        let domid = self.domid;
        let irq = self
            .spis
            .get_mut((intid - 32) as usize)
            .ok_or(RouteError::BeyondVgic(intid))?;
        hw.claim(intid, domid, level)?;
        irq.hw = true;
        irq.level = level;
        irq.line = false;
        if irq.enabled {
            hw.dist().spi_enable(intid);
        }
        Ok(())
    }

    fn release_hw(&mut self) {
        let Some(hw) = self.hw.clone() else {
            return;
        };
        let domid = self.domid;
        let mut released = 0;
        for (n, irq) in self.spis.iter_mut().enumerate() {
            if irq.hw {
                hw.release(n as u32 + 32, domid);
                irq.hw = false;
                irq.pending = false;
                irq.active = false;
                released += 1;
            }
        }
        if released > 0 {
            log::info!(
                "d{domid}: {released} physical SPIs released ({} routed interrupts delivered to domains since boot)",
                crate::irq::delivered()
            );
        }
    }

    /// The vCPU SPI `intid` is routed to.
    pub(crate) fn spi_target(&self, intid: u32) -> usize {
        // An INTID that is not an implemented SPI has no route: vCPU 0.
        let Some(&r) = intid
            .checked_sub(32)
            .and_then(|n| self.routes.get(n as usize))
        else {
            return 0;
        };
        if (r >> 31) & 1 == 1 || (r >> 16) & 0xff != 0 || (r >> 32) & 0xff != 0 {
            return 0;
        }
        let v = ((r & 0xff) | (((r >> 8) & 0xff) << 8)) as usize;
        if v < self.cpus.len() {
            v
        } else {
            0
        }
    }

    /// The state of `intid` as seen by vCPU `cpu` (private banked or SPI).
    ///
    /// # Errors
    /// [`VgicError`] for an unknown vCPU or INTID.
    pub fn irq_mut(&mut self, cpu: usize, intid: u32) -> Result<&mut IrqState, VgicError> {
        if intid < 32 {
            let c = self
                .cpus
                .get_mut(cpu)
                .ok_or(VgicError::BadVcpu(cpu as u32))?;
            Ok(&mut c.private[intid as usize])
        } else {
            self.spis
                .get_mut((intid - 32) as usize)
                .ok_or(VgicError::BadIntid(intid))
        }
    }

    fn group_enabled(&self, irq: &IrqState) -> bool {
        if irq.group1 {
            self.grp1
        } else {
            self.grp0
        }
    }

    /// Would the GIC forward `irq` (pending) to the CPU interface?
    fn forwardable(&self, irq: &IrqState) -> bool {
        irq.pending_now() && irq.enabled && self.group_enabled(irq)
    }

    fn deliverable(&self, cpu: usize) -> bool {
        let Some(c) = self.cpus.get(cpu) else {
            return false;
        };
        c.private.iter().any(|i| i.in_lr || self.forwardable(i))
            || self.spis.iter().enumerate().any(|(n, i)| {
                (i.in_lr || self.forwardable(i)) && self.spi_target(n as u32 + 32) == cpu
            })
    }

    /// Something changed for vCPU `cpu`: bump the wake epoch and ask the pCPU
    /// it is loaded on (or every pCPU, if it is not loaded) to look again.
    fn notify(&self, cpu: usize) {
        WAKE_EPOCH.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = self.cpus.get(cpu) {
            c.notified.set(c.notified.get().wrapping_add(1));
        }
        match self.cpus.get(cpu).and_then(|c| c.resident) {
            Some(p) if p < 64 => request_kicks(1 << p),
            _ => request_kicks(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hw_tests;
