//! List registers: moving a vCPU's pending and active virtual interrupts in
//! and out of `ICH_LR<n>_EL2`.
//!
//! The per-vCPU list of interrupts to present is built at each guest entry
//! from the vGIC state: every interrupt of the vCPU (its SGIs/PPIs and the
//! SPIs routed to it) that is active, or pending and forwardable (enabled,
//! group enabled), sorted **active first, then by priority, then by INTID**.
//! - **Entry** ([`flush`]): the first `min(len, LRs)` go into LRs 0..k (the
//!   LR owns their pending/active state while they sit there); LRs that held
//!   something before and are not needed now are cleared; nothing else is
//!   touched. If more were waiting than there are LRs, `ICH_HCR_EL2.UIE` is set:
//!   the maintenance interrupt (PPI 25) fires when at most one LR is still
//!   valid, the guest exits and the next entry refills.
//! - **Exit** ([`sync`]): only the LRs written at entry are looked at.
//!   `ICH_ELRSR_EL2` says which of them became empty (the guest acknowledged
//!   and deactivated them): those are not read; the others are read back and
//!   their state goes back to the vGIC (a pending latch set meanwhile by an
//!   injection is kept: edge semantics).
//! - **Switch** ([`vcpu_put`]/[`vcpu_load`]): `ICH_VMCR_EL2` and the active
//!   priority registers are saved and restored, and the LRs the outgoing vCPU
//!   used are cleared, only when another vCPU really takes the pCPU.
//!
//! - **Hardware interrupts** ([`super::IrqState::hw`]): the LR gets `HW` = 1
//!   and pINTID = the INTID, so the guest's deactivation deactivates the
//!   physical SPI hv acknowledged; such an LR is never pending and active at
//!   once (the pending latch waits in the vGIC until the active state ends).
//!   Their state moves between LRs and the vGIC exactly as the others' (a
//!   put clears the LR only after [`sync`] took its state; [`flush`]
//!   presents it again with `HW` wherever the vCPU runs next).
//!
//! The same split as KVM's `vgic_flush_lr_state`/`vgic_sync_hwstate` and its
//! `vgic_v3_load`/`vgic_v3_put` (virt/kvm/arm/vgic), written from the GICv3
//! architecture specification's description of `ICH_LR<n>_EL2`.

use alloc::vec::Vec;

use super::{IrqState, Vgic, VgicState};
use crate::arch::Arch;

/// `ICH_LR<n>_EL2` fields.
pub mod bits {
    /// State [63:62]: pending.
    pub const PENDING: u64 = 1 << 62;
    /// State [63:62]: active.
    pub const ACTIVE: u64 = 1 << 63;
    /// `HW` [61]: linked to a physical interrupt.
    pub const HW: u64 = 1 << 61;
    /// pINTID [44:32] (with `HW` = 1).
    pub const PINTID_SHIFT: u32 = 32;
    /// pINTID field mask (13 bits).
    pub const PINTID_MASK: u64 = 0x1fff;
    /// `Group` [60]: Group 1.
    pub const GROUP1: u64 = 1 << 60;
    /// Priority [55:48].
    pub const PRIO_SHIFT: u32 = 48;
}

/// `ICH_HCR_EL2.En`: the virtual CPU interface is enabled.
pub const HCR_EN: u64 = 1 << 0;
/// `ICH_HCR_EL2.UIE`: maintenance interrupt when at most one LR is valid.
pub const HCR_UIE: u64 = 1 << 1;

/// Most list registers the architecture allows.
pub const MAX_LRS: usize = 16;

/// Per-vCPU list-register bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LrBook {
    /// INTIDs written to LRs 0..`used` at the last entry.
    pub intids: [u32; MAX_LRS],
    /// LRs written at the last entry (and not yet synced back).
    pub used: usize,
    /// Bit n: LR n's pending state came from the pending latch (edge or
    /// `ISPENDR`), not only from a level-sensitive line.
    pub latched: u16,
    /// LRs that may hold a non-zero value on the pCPU this vCPU is loaded on.
    pub dirty: usize,
    /// The maintenance interrupt was armed at the last entry.
    pub uie: bool,
    /// Saved `ICH_VMCR_EL2` (while not loaded).
    pub vmcr: u64,
    /// Saved `ICH_AP0R<n>_EL2` / `ICH_AP1R<n>_EL2` (while not loaded).
    pub apr: [[u64; 4]; 2],
    /// Entries that did not fit (overflow episodes), for counters.
    pub overflows: u64,
}

impl Default for LrBook {
    fn default() -> Self {
        Self {
            intids: [0; MAX_LRS],
            used: 0,
            latched: 0,
            dirty: 0,
            uie: false,
            // VMCR reset: VPMR = 0 (everything masked until the guest sets
            // ICC_PMR_EL1), groups disabled.
            vmcr: 0,
            apr: [[0; 4]; 2],
            overflows: 0,
        }
    }
}

/// Number of list registers (`ICH_VTR_EL2.ListRegs` + 1).
#[must_use]
pub fn lr_count(vtr: u64) -> usize {
    (((vtr & 0x1f) + 1) as usize).min(MAX_LRS)
}

/// Number of active-priority registers per group (`ICH_VTR_EL2.PRIbits`:
/// 5 bits -> 1, 6 -> 2, 7 -> 4).
#[must_use]
pub fn apr_count(vtr: u64) -> usize {
    let pribits = ((vtr >> 29) & 7) + 1;
    match pribits {
        7 => 4,
        6 => 2,
        _ => 1,
    }
}

/// Whether an LR presenting `irq` carries its pending state: not for a
/// hardware interrupt that is active (KVM's `vgic_v3_populate_lr`: "never
/// set pending+active on a HW interrupt").
fn lr_pending(irq: &IrqState) -> bool {
    irq.pending_now() && !(irq.hw && irq.active)
}

/// The LR value presenting `intid` with `irq`'s state.
#[must_use]
pub fn encode(intid: u32, irq: &IrqState) -> u64 {
    let mut v = u64::from(intid) | (u64::from(irq.priority) << bits::PRIO_SHIFT);
    if irq.group1 {
        v |= bits::GROUP1;
    }
    if irq.hw {
        v |= bits::HW | ((u64::from(intid) & bits::PINTID_MASK) << bits::PINTID_SHIFT);
    }
    if lr_pending(irq) {
        v |= bits::PENDING;
    }
    if irq.active {
        v |= bits::ACTIVE;
    }
    v
}

/// The vCPU's interrupts to present, in presentation order (active first,
/// then priority, then INTID).
#[must_use]
pub fn ordered(s: &VgicState, cpu: usize) -> Vec<u32> {
    let mut list: Vec<(bool, u8, u32)> = Vec::new();
    if let Some(c) = s.cpus.get(cpu) {
        for (intid, irq) in c.private.iter().enumerate() {
            if irq.active || s.forwardable(irq) {
                list.push((!irq.active, irq.priority, intid as u32));
            }
        }
    }
    // Most of a host-sized vGIC's SPIs are idle: test the state first.
    for (n, irq) in s.spis.iter().enumerate() {
        let intid = n as u32 + 32;
        if (irq.active || s.forwardable(irq)) && s.spi_target(intid) == cpu {
            list.push((!irq.active, irq.priority, intid));
        }
    }
    list.sort_unstable();
    list.into_iter().map(|(_, _, i)| i).collect()
}

/// Guest entry: fill the LRs of the loaded vCPU `cpu` (see the module doc).
/// Returns how many interrupts were left waiting for a free LR.
pub fn flush(s: &mut VgicState, cpu: usize, arch: &mut dyn Arch) -> usize {
    let nr = lr_count(arch.ich_vtr());
    let list = ordered(s, cpu);
    let k = list.len().min(nr);
    let mut intids = [0u32; MAX_LRS];
    let mut latched = 0u16;
    for (slot, &intid) in list.iter().take(k).enumerate() {
        let Ok(irq) = s.irq_mut(cpu, intid) else {
            continue;
        };
        let val = encode(intid, irq);
        if irq.pending && val & bits::PENDING != 0 {
            latched |= 1 << slot;
            // The LR owns the pending state now.
            irq.pending = false;
        }
        // The LR owns the active state now.
        irq.active = false;
        irq.in_lr = true;
        intids[slot] = intid;
        arch.ich_write_lr(slot, val);
    }
    let Some(c) = s.cpus.get_mut(cpu) else {
        return 0;
    };
    for slot in k..c.lrs.dirty {
        arch.ich_write_lr(slot, 0);
    }
    let waiting = list.len() - k;
    c.lrs.intids = intids;
    c.lrs.used = k;
    c.lrs.latched = latched;
    c.lrs.dirty = k;
    c.lrs.uie = waiting > 0;
    if waiting > 0 {
        c.lrs.overflows += 1;
    }
    arch.ich_write_hcr(HCR_EN | if waiting > 0 { HCR_UIE } else { 0 });
    waiting
}

/// Guest exit: take the state of the LRs written at entry back into the vGIC.
pub fn sync(s: &mut VgicState, cpu: usize, arch: &mut dyn Arch) {
    let Some(c) = s.cpus.get(cpu) else {
        return;
    };
    let book = c.lrs;
    if book.uie {
        // Stop the maintenance interrupt while hv runs (it is level-sensitive).
        arch.ich_write_hcr(HCR_EN);
    }
    if book.used == 0 {
        return;
    }
    let elrsr = arch.ich_elrsr();
    for slot in 0..book.used {
        let lr = if (elrsr >> slot) & 1 == 1 {
            0
        } else {
            arch.ich_read_lr(slot)
        };
        let intid = book.intids[slot];
        if let Ok(irq) = s.irq_mut(cpu, intid) {
            irq.in_lr = false;
            // A pending state that came from the latch stays latched; one
            // that came from a level-sensitive line follows the line.
            irq.pending |= lr & bits::PENDING != 0 && (book.latched >> slot) & 1 == 1;
            irq.active = lr & bits::ACTIVE != 0;
        }
    }
    if let Some(c) = s.cpus.get_mut(cpu) {
        c.lrs.used = 0;
        c.lrs.uie = false;
    }
}

/// Another context takes the pCPU from vCPU `cpu`: save its CPU-interface
/// state and clear the LRs it used (their state is in the vGIC already).
pub fn vcpu_put(s: &mut VgicState, cpu: usize, arch: &mut dyn Arch) {
    let vtr = arch.ich_vtr();
    let Some(c) = s.cpus.get_mut(cpu) else {
        return;
    };
    c.lrs.vmcr = arch.ich_read_vmcr();
    for g in 0..2 {
        for n in 0..apr_count(vtr) {
            c.lrs.apr[g][n] = arch.ich_read_apr(g == 1, n);
        }
    }
    for slot in 0..c.lrs.dirty {
        arch.ich_write_lr(slot, 0);
    }
    c.lrs.dirty = 0;
    c.resident = None;
    arch.ich_write_hcr(0);
}

/// vCPU `cpu` is loaded on pCPU `pcpu`: restore its CPU-interface state.
pub fn vcpu_load(s: &mut VgicState, cpu: usize, pcpu: usize, arch: &mut dyn Arch) {
    let vtr = arch.ich_vtr();
    let Some(c) = s.cpus.get_mut(cpu) else {
        return;
    };
    arch.ich_write_vmcr(c.lrs.vmcr);
    for g in 0..2 {
        for n in 0..apr_count(vtr) {
            arch.ich_write_apr(g == 1, n, c.lrs.apr[g][n]);
        }
    }
    c.lrs.dirty = 0;
    c.resident = Some(pcpu);
}

impl Vgic {
    /// [`flush`] under the lock.
    pub fn flush_lrs(&self, cpu: u32, arch: &mut dyn Arch) -> usize {
        flush(&mut self.state.lock(), cpu as usize, arch)
    }

    /// [`sync`] under the lock.
    pub fn sync_lrs(&self, cpu: u32, arch: &mut dyn Arch) {
        sync(&mut self.state.lock(), cpu as usize, arch);
    }

    /// [`vcpu_load`] under the lock.
    pub fn load_cpu(&self, cpu: u32, pcpu: usize, arch: &mut dyn Arch) {
        vcpu_load(&mut self.state.lock(), cpu as usize, pcpu, arch);
    }

    /// [`vcpu_put`] under the lock.
    pub fn put_cpu(&self, cpu: u32, arch: &mut dyn Arch) {
        vcpu_put(&mut self.state.lock(), cpu as usize, arch);
    }
}
