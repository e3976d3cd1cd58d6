//! vCPU switch planning.
//!
//! Stage-1 TLB entries are tagged by VMID and ASID, not by vCPU: two vCPUs of
//! one domain that run on the same pCPU one after the other share those tags
//! while their stage-1 tables (TTBRx_EL1) may differ. So when a pCPU runs a
//! *different* vCPU of a VMID than the last one of that VMID it ran, the
//! VMID's local stage-1 entries (and the local I-cache, whose entries may be
//! VMID-tagged too) must go. Different VMIDs need nothing: VMID tagging keeps
//! them apart. Same vCPU again: nothing.
//!
//! - targeted: `TLBI VMALLE1; IC IALLU; DSB NSH; ISB`, as KVM's
//!   `__kvm_flush_cpu_context` (called from `kvm_arch_vcpu_load` when
//!   `mmu->last_vcpu_ran` differs; `arch/arm64/kvm/hyp/vhe/tlb.c`).
//! - xen-compat: `DSB NSH; TLBI VMALLS12E1; DSB NSH; ISB`, as Xen's
//!   `p2m_restore_state` (`xen/arch/arm/mmu/p2m.c`, `flush_guest_tlb_local`),
//!   which also drops the VMID's stage-2 entries on this pCPU. (Xen issues
//!   `DSB NSHST` first; `DSB NSH` is the stronger barrier we have.)
//!
//! Like KVM's per-VM `last_vcpu_ran` percpu array and Xen's per-p2m
//! `last_vcpu_ran[cpu]`, the record is per (pCPU, VMID): [`LastRan`] is the
//! per-pCPU table of them.

use alloc::vec::Vec;

use crate::addr::Vmid;
use crate::op::TlbOp;
use crate::plan::{Plan, Policy};

/// Per-pCPU record: for each VMID, the last of its vCPUs that ran on this pCPU.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct LastRan {
    entries: Vec<(Vmid, u32)>,
}

impl LastRan {
    /// A pCPU that ran nothing yet.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// The last vCPU of `vmid` that ran on this pCPU, if any.
    #[must_use]
    pub fn last(&self, vmid: Vmid) -> Option<u32> {
        self.entries.iter().find(|e| e.0 == vmid).map(|e| e.1)
    }

    /// Record that vCPU `vcpu` of `vmid` is about to run on this pCPU and
    /// return what must be executed (locally) before it does.
    #[must_use]
    pub fn switch_to(&mut self, vmid: Vmid, vcpu: u32, policy: &Policy) -> Plan {
        let prev = match self.entries.iter_mut().find(|e| e.0 == vmid) {
            Some(e) => core::mem::replace(&mut e.1, vcpu),
            None => {
                self.entries.push((vmid, vcpu));
                return Plan::new();
            }
        };
        if prev == vcpu {
            return Plan::new();
        }
        match policy {
            Policy::XenCompat => Plan::from_ops(alloc::vec![
                // Earlier stores (tables, context) complete locally first.
                TlbOp::DsbNsh,
                TlbOp::Vmalls12e1 { vmid },
                // Local invalidation complete before the vCPU runs.
                TlbOp::DsbNsh,
                TlbOp::Isb,
            ]),
            Policy::Targeted { .. } => Plan::from_ops(alloc::vec![
                TlbOp::Vmalle1 { vmid },
                TlbOp::IcIallu,
                // Local TLB and I-cache invalidation complete before the vCPU runs.
                TlbOp::DsbNsh,
                TlbOp::Isb,
            ]),
        }
    }

    /// Forget `vmid` (its domain died or the VMID is being recycled; the
    /// recycling path must flush the VMID everywhere itself).
    pub fn forget(&mut self, vmid: Vmid) {
        self.entries.retain(|e| e.0 != vmid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::TlbOpKind;

    #[test]
    fn switch_rules() {
        let t = Policy::Targeted {
            has_range: true,
            nested: false,
        };
        let mut l = LastRan::new();
        assert!(l.switch_to(Vmid(1), 0, &t).is_empty());
        assert!(l.switch_to(Vmid(1), 0, &t).is_empty(), "same vCPU");
        assert!(l.switch_to(Vmid(2), 5, &t).is_empty(), "other VMID");
        let p = l.switch_to(Vmid(1), 1, &t);
        assert_eq!(p.count(TlbOpKind::Vmalle1), 1);
        assert_eq!(p.count(TlbOpKind::IcIallu), 1);
        assert_eq!(p.tlbis(), 1);
        assert_eq!(l.last(Vmid(1)), Some(1));
        let p = l.switch_to(Vmid(1), 0, &Policy::XenCompat);
        assert_eq!(p.count(TlbOpKind::Vmalls12e1), 1);
        assert_eq!(p.tlbis(), 1);
        l.forget(Vmid(1));
        assert!(l.switch_to(Vmid(1), 3, &t).is_empty());
        assert!(l.switch_to(Vmid(2), 5, &t).is_empty());
    }
}
