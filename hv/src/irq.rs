//! Physical interrupts given to domains: which domain owns which physical
//! SPI, and the distributor operations hv makes on its behalf.
//!
//! Xen's model (xen/arch/arm/irq.c `route_irq_to_guest`, `release_guest_irq`;
//! xen/arch/arm/gic.c `gic_route_irq_to_guest`; xen/arch/arm/vgic.c
//! `vgic_enable_irqs`/`vgic_disable_irqs`): the hardware domain gets every SPI
//! of the devices it is given with the *same* virtual number; the physical
//! SPI is configured (Group 1, a priority, the DT's trigger, routed to a pCPU)
//! and left disabled until the guest enables the virtual one through its
//! vGIC's `GICD_ISENABLER`; `GICD_ICENABLER` disables it again; destroying the
//! domain releases it (disabled, deactivated, owner forgotten).
//!
//! Delivery (the run loop's IRQ exit, `start/run.rs` `phys_irqs`): hv
//! acknowledges (`ICC_IAR1_EL1`), drops the priority at once (`ICC_EOIR1_EL1`
//! with `ICC_CTLR_EL1.EOImode` = 1) and makes the virtual SPI pending in the
//! owner's vGIC with the list register's HW bit set and pINTID = INTID: the
//! guest's deactivation of the virtual interrupt deactivates the physical one
//! (GICv3 architecture specification, `ICH_LR<n>_EL2.HW`), so hv never writes
//! `ICC_DIR_EL1` for a routed SPI. hv's own interrupts (SGIs, timers, its
//! UART) get `ICC_EOIR1_EL1` + `ICC_DIR_EL1`.
//!
//! **Target pCPU.** Every routed SPI goes to pCPU 0 (`GICD_IROUTER` =
//! the boot CPU's affinity). Xen routes it to the pCPU running the target
//! vCPU and moves it when the vCPU migrates (`vgic_migrate_irq`,
//! `arch_move_irqs`); hv's vCPUs float between pCPUs, so a fixed pCPU is the
//! first step: the IRQ exit on pCPU 0 injects and kicks the pCPU that runs
//! the target vCPU (or wakes it). The guest's deactivation then happens on
//! whichever pCPU runs that vCPU: an SPI's active state lives in the
//! distributor, so an HW list register sends the deactivation there from any
//! CPU interface (GICv3 spec, `GICV_DIR`/`ICH_LR<n>_EL2.HW`; QEMU fixed its
//! GICv2 model for exactly this Xen case, commit 7175a562 "hw/intc/arm_gic:
//! Fix deactivation of SPI lines").
//!
//! The distributor itself is behind [`PhysDist`] (the real one in
//! `arch/aarch64/gic.rs`, installed at boot with [`install`]; a recording
//! fake in `arch/fake.rs`).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

/// First SPI INTID.
pub const SPI_FIRST: u32 = 32;
/// INTIDs 1020..1023 are special; SPIs end below.
pub const SPI_LIMIT: u32 = 1020;
/// Priority hv gives routed SPIs (Xen's `GIC_PRI_IRQ`).
pub const GUEST_SPI_PRIORITY: u8 = 0xa0;
/// The pCPU every routed SPI is sent to (see the module doc).
pub const TARGET_PCPU: usize = 0;

/// Operations on the physical distributor (`GICD_*`), callable from any pCPU.
/// The implementation serialises its read-modify-writes.
pub trait PhysDist: Send + Sync {
    /// Interrupt lines the distributor implements (`GICD_TYPER.ITLinesNumber`:
    /// 32 * (N + 1), at most 1020): SPIs are `32..lines()`.
    fn lines(&self) -> u32;
    /// Configure SPI `intid` for a guest: disabled, Group 1, `priority`,
    /// level-sensitive (`level`) or edge-triggered (`GICD_ICFGR`), routed to
    /// pCPU `target` (`GICD_IROUTER`).
    fn spi_configure(&self, intid: u32, level: bool, priority: u8, target: usize);
    /// `GICD_ISENABLER`.
    fn spi_enable(&self, intid: u32);
    /// `GICD_ICENABLER` (and wait for `GICD_CTLR.RWP`).
    fn spi_disable(&self, intid: u32);
    /// `GICD_ISPENDR` (`pending`) or `GICD_ICPENDR`.
    fn spi_set_pending(&self, intid: u32, pending: bool);
    /// `GICD_ICACTIVER`: deactivate (an SPI may be deactivated from any pCPU).
    fn spi_deactivate(&self, intid: u32);
}

/// Who owns a physical SPI.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Owner {
    /// hv itself (its UART's interrupt): never routed to a guest.
    Hv,
    /// A domain: the SPI is linked to its vGIC's SPI of the same number.
    Domain(u16),
}

/// Why an SPI could not be routed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RouteError {
    /// Not an SPI the physical distributor implements (below 32, at or beyond
    /// its line count, or a special INTID).
    NotSpi(u32),
    /// Beyond the SPIs this domain's vGIC implements.
    BeyondVgic(u32),
    /// Already owned (by hv or another domain).
    Busy(u32, Owner),
    /// hv runs without a physical distributor it can program (no GICv3 in
    /// the DTB, or a host test without a fake one).
    NoPhysicalGic,
}

impl RouteError {
    /// The Xen errno a hypercall would answer with (`-EINVAL` for a bad
    /// INTID, `-EBUSY` for a taken one, `-ENODEV` without a GIC).
    #[must_use]
    pub fn errno(&self) -> i64 {
        match self {
            RouteError::NotSpi(_) | RouteError::BeyondVgic(_) => -22,
            RouteError::Busy(..) => -16,
            RouteError::NoPhysicalGic => -19,
        }
    }
}

impl core::fmt::Display for RouteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RouteError::NotSpi(i) => write!(f, "INTID {i} is not a physical SPI"),
            RouteError::BeyondVgic(i) => write!(f, "INTID {i} is beyond the domain's vGIC"),
            RouteError::Busy(i, Owner::Hv) => write!(f, "SPI {i} is hv's own"),
            RouteError::Busy(i, Owner::Domain(d)) => write!(f, "SPI {i} is routed to d{d}"),
            RouteError::NoPhysicalGic => write!(f, "no physical GIC to route to"),
        }
    }
}

/// The physical distributor and the ownership of its SPIs (one per machine).
pub struct HwIrqs {
    dist: Arc<dyn PhysDist>,
    owners: Mutex<BTreeMap<u32, Owner>>,
}

impl core::fmt::Debug for HwIrqs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HwIrqs")
            .field("lines", &self.dist.lines())
            .field("owners", &*self.owners.lock())
            .finish()
    }
}

impl HwIrqs {
    /// A table over `dist`, nothing owned.
    #[must_use]
    pub fn new(dist: Arc<dyn PhysDist>) -> Self {
        Self {
            dist,
            owners: Mutex::new(BTreeMap::new()),
        }
    }

    /// The distributor.
    #[must_use]
    pub fn dist(&self) -> &dyn PhysDist {
        &*self.dist
    }

    /// Interrupt lines of the physical distributor (capped at [`SPI_LIMIT`]).
    #[must_use]
    pub fn lines(&self) -> u32 {
        self.dist.lines().min(SPI_LIMIT)
    }

    /// SPIs of the physical distributor (`lines() - 32`).
    #[must_use]
    pub fn nr_spis(&self) -> u32 {
        self.lines().saturating_sub(SPI_FIRST)
    }

    fn check_spi(&self, intid: u32) -> Result<(), RouteError> {
        if (SPI_FIRST..self.lines()).contains(&intid) {
            Ok(())
        } else {
            Err(RouteError::NotSpi(intid))
        }
    }

    /// Who owns `intid`, if anyone.
    #[must_use]
    pub fn owner(&self, intid: u32) -> Option<Owner> {
        self.owners.lock().get(&intid).copied()
    }

    /// Mark `intid` as hv's own (its UART): no domain can be given it.
    ///
    /// # Errors
    /// [`RouteError::NotSpi`], or [`RouteError::Busy`] if a domain owns it.
    pub fn reserve_for_hv(&self, intid: u32) -> Result<(), RouteError> {
        self.check_spi(intid)?;
        let mut o = self.owners.lock();
        match o.get(&intid) {
            Some(Owner::Domain(d)) => Err(RouteError::Busy(intid, Owner::Domain(*d))),
            _ => {
                o.insert(intid, Owner::Hv);
                Ok(())
            }
        }
    }

    /// Give SPI `intid` to domain `domid` and configure it (disabled, Group 1,
    /// [`GUEST_SPI_PRIORITY`], `level`-sensitive or edge, routed to
    /// [`TARGET_PCPU`]). Routing it again to the same domain reconfigures it.
    ///
    /// # Errors
    /// [`RouteError::NotSpi`] or [`RouteError::Busy`].
    pub fn claim(&self, intid: u32, domid: u16, level: bool) -> Result<(), RouteError> {
        self.check_spi(intid)?;
        {
            let mut o = self.owners.lock();
            match o.get(&intid) {
                Some(&Owner::Domain(d)) if d == domid => {}
                Some(&other) => return Err(RouteError::Busy(intid, other)),
                None => {
                    o.insert(intid, Owner::Domain(domid));
                }
            }
        }
        self.dist
            .spi_configure(intid, level, GUEST_SPI_PRIORITY, TARGET_PCPU);
        Ok(())
    }

    /// Take SPI `intid` back from `domid` (domain destroy): disabled, its
    /// pending state cleared, deactivated (it may have been acknowledged by
    /// hv and be waiting for the guest's EOI), owner forgotten. Does nothing
    /// if `domid` does not own it.
    pub fn release(&self, intid: u32, domid: u16) {
        let mut o = self.owners.lock();
        if o.get(&intid) != Some(&Owner::Domain(domid)) {
            return;
        }
        self.dist.spi_disable(intid);
        self.dist.spi_set_pending(intid, false);
        self.dist.spi_deactivate(intid);
        o.remove(&intid);
    }
}

/// Routed SPIs delivered to a domain (acknowledged by hv, injected).
static DELIVERED: AtomicU64 = AtomicU64::new(0);

/// Count one routed SPI delivered to its domain (the IRQ exit).
pub fn count_delivered() {
    DELIVERED.fetch_add(1, Ordering::Relaxed);
}

/// Routed SPIs injected into domains since boot (debug keys, power-off line).
#[must_use]
pub fn delivered() -> u64 {
    DELIVERED.load(Ordering::Relaxed)
}

/// The machine's table, installed once at boot by the arch layer.
static GLOBAL: spin::Once<Arc<HwIrqs>> = spin::Once::new();

/// Install the physical distributor (boot CPU, once; later calls are ignored).
pub fn install(dist: Arc<dyn PhysDist>) -> Arc<HwIrqs> {
    GLOBAL.call_once(|| Arc::new(HwIrqs::new(dist))).clone()
}

/// The machine's table, if a physical distributor was installed.
#[must_use]
pub fn global() -> Option<Arc<HwIrqs>> {
    GLOBAL.get().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::fake::{DistOp, FakeDist, FakeMachine};

    fn table(lines: u32) -> (crate::arch::fake::SharedMachine, HwIrqs) {
        let m = FakeMachine::new_shared();
        let t = HwIrqs::new(Arc::new(FakeDist::new(m.clone(), lines)));
        (m, t)
    }

    #[test]
    fn claim_checks_bounds_and_owners() {
        let (m, t) = table(288);
        assert_eq!(t.nr_spis(), 256);
        for bad in [0, 16, 31, 288, 1020, 1023, u32::MAX] {
            assert_eq!(t.claim(bad, 0, true), Err(RouteError::NotSpi(bad)));
        }
        assert!(m.lock().dist_ops().is_empty(), "nothing configured");
        t.claim(34, 0, true).unwrap();
        assert_eq!(t.owner(34), Some(Owner::Domain(0)));
        assert_eq!(
            m.lock().dist_ops(),
            [DistOp::Configure {
                intid: 34,
                level: true,
                priority: GUEST_SPI_PRIORITY,
                target: TARGET_PCPU
            }]
        );
        assert_eq!(
            t.claim(34, 1, false),
            Err(RouteError::Busy(34, Owner::Domain(0)))
        );
        t.claim(34, 0, false).unwrap(); // same owner: reconfigured
        t.reserve_for_hv(33).unwrap();
        assert_eq!(t.claim(33, 0, true), Err(RouteError::Busy(33, Owner::Hv)));
        assert_eq!(
            t.reserve_for_hv(34),
            Err(RouteError::Busy(34, Owner::Domain(0)))
        );
        assert_eq!(RouteError::Busy(33, Owner::Hv).errno(), -16);
    }

    #[test]
    fn release_only_by_the_owner_disables_and_deactivates() {
        let (m, t) = table(96);
        t.claim(40, 3, false).unwrap();
        m.lock().events.clear();
        t.release(40, 4); // not the owner
        assert!(m.lock().dist_ops().is_empty());
        assert_eq!(t.owner(40), Some(Owner::Domain(3)));
        t.release(40, 3);
        assert_eq!(
            m.lock().dist_ops(),
            [
                DistOp::Disable(40),
                DistOp::SetPending(40, false),
                DistOp::Deactivate(40)
            ]
        );
        assert_eq!(t.owner(40), None);
        t.claim(40, 4, true).unwrap(); // free again
    }

    #[test]
    fn lines_are_capped_below_the_special_intids() {
        let (_m, t) = table(1024);
        assert_eq!(t.lines(), 1020);
        assert_eq!(t.nr_spis(), 988);
        assert!(t.claim(1019, 0, true).is_ok());
    }
}
