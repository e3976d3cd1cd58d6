//! Virtual CPUs: register state and exception injection.

use crate::arch::{Arch, El1Reg, El1Sysregs, GuestGprs};
use crate::trap::ESR_IL;

/// PSTATE.M for EL1 with SP_EL1 (EL1h).
pub const PSR_MODE_EL1H: u64 = 0b0101;
/// PSTATE.M for EL1 with SP_EL0 (EL1t).
pub const PSR_MODE_EL1T: u64 = 0b0100;
/// PSTATE.M for EL0 (EL0t).
pub const PSR_MODE_EL0T: u64 = 0b0000;
/// PSTATE.{D,A,I,F}: all exceptions masked.
pub const PSR_DAIF: u64 = 0b1111 << 6;

/// Vector table offsets (Arm ARM D1.3.1, as Xen's `VECTOR64_*`).
pub mod vector {
    /// Current EL with SP_EL0.
    pub const CURRENT_SP0: u64 = 0x000;
    /// Current EL with SP_ELx.
    pub const CURRENT_SPX: u64 = 0x200;
    /// Lower EL, AArch64.
    pub const LOWER_A64: u64 = 0x400;
    /// Lower EL, AArch32.
    pub const LOWER_A32: u64 = 0x600;
}

/// One virtual CPU of a domain.
#[derive(Debug)]
pub struct Vcpu {
    /// The owning domain's id.
    pub domid: u16,
    /// Index within the domain (0 = boot vCPU).
    pub id: u32,
    /// General-purpose registers, pc and PSTATE.
    pub gprs: GuestGprs,
    /// EL1 system registers while the vCPU is not loaded on a pCPU.
    pub sysregs: El1Sysregs,
    /// Its domain's vGIC (set when the vCPU is first loaded).
    pub vgic: Option<alloc::sync::Arc<crate::vgic::Vgic>>,
    /// Its runstate says blocked (it waits in WFI or SCHEDOP_block while
    /// still loaded on its pCPU); the next run makes it running again.
    pub blocked: bool,
    /// Its vGIC's notification count ([`crate::vgic::Vgic::notified`]) when
    /// it last entered the guest: an IRQ exit compares against it.
    pub irq_mark: u64,
    /// IRQ exits in a row that kept its domain's coalescing window open
    /// ([`pv_tlb::irq_exit_closes_window`]).
    pub irq_keeps: u32,
    /// It made a coalescable remove since one of its own exits last closed
    /// its domain's coalescing window: its exits close the window, a
    /// sibling's do not (`start::window_closes`).
    pub window_opener: bool,
}

impl Vcpu {
    /// A vCPU that starts at `entry` in EL1h with all exceptions masked and
    /// the MMU off (the arm64 Linux boot protocol), with `x0` = `x0`.
    #[must_use]
    pub fn new(domid: u16, id: u32, entry: u64, x0: u64) -> Self {
        let mut gprs = GuestGprs::default();
        gprs.x[0] = x0;
        gprs.pc = entry;
        gprs.pstate = PSR_DAIF | PSR_MODE_EL1H;
        Self {
            domid,
            id,
            gprs,
            sysregs: El1Sysregs::default(),
            vgic: None,
            blocked: false,
            irq_mark: 0,
            irq_keeps: 0,
            window_opener: false,
        }
    }

    /// `VMPIDR_EL2` for this vCPU: RES1 bit 31, Aff0/Aff1 from the index.
    #[must_use]
    pub fn vmpidr(&self) -> u64 {
        (1 << 31) | u64::from(self.id & 0xff) | (u64::from((self.id >> 8) & 0xff) << 8)
    }

    /// Inject an undefined-instruction exception into the guest at EL1
    /// (the vCPU must be loaded on `arch`), as Xen's `inject_undef64_exception`:
    /// `ESR_EL1` = EC 0 with IL, `ELR_EL1` = `elr` (the faulting instruction),
    /// `SPSR_EL1` = the guest's PSTATE; the guest resumes at `VBAR_EL1` + the
    /// synchronous vector for the mode it was in, in EL1h with DAIF masked.
    pub fn inject_undef(&mut self, arch: &mut dyn Arch, elr: u64) {
        self.inject_sync(arch, elr, ESR_IL, None);
    }

    /// Inject a synchronous exception with syndrome `esr` (and `FAR_EL1` =
    /// `far` when given) at EL1, returning to `elr`, as [`Vcpu::inject_undef`].
    pub fn inject_sync(&mut self, arch: &mut dyn Arch, elr: u64, esr: u64, far: Option<u64>) {
        let vbar = arch.read_el1(El1Reg::VbarEl1);
        let pstate = self.gprs.pstate;
        let base = if pstate & (1 << 4) != 0 {
            vector::LOWER_A32
        } else {
            match pstate & 0xf {
                PSR_MODE_EL0T => vector::LOWER_A64,
                PSR_MODE_EL1T => vector::CURRENT_SP0,
                _ => vector::CURRENT_SPX,
            }
        };
        arch.write_el1(El1Reg::ElrEl1, elr);
        arch.write_el1(El1Reg::SpsrEl1, pstate);
        arch.write_el1(El1Reg::EsrEl1, esr);
        if let Some(far) = far {
            arch.write_el1(El1Reg::FarEl1, far);
        }
        self.gprs.pc = vbar.wrapping_add(base);
        self.gprs.pstate = PSR_DAIF | PSR_MODE_EL1H;
    }
}
