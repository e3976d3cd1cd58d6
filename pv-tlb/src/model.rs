//! A model TLB for host tests.
//!
//! Each modelled pCPU caches two kinds of entries, as an Armv8 TLB may:
//! - *stage-2 entries*: `(VMID, IPA block, level) -> PA`, filled by a walk;
//! - *combined stage-1+2 entries*: `(VMID, VA) -> PA`, tagged here with the
//!   vCPU whose stage-1 context created them (real TLBs tag by VMID and ASID
//!   only, so another vCPU of the same VMID *would hit them*: the model
//!   reports such a hit so that a missing vCPU-switch flush shows up).
//!
//! [`ModelTlb::execute`] drops entries exactly as each [`TlbOp`]'s
//! architectural definition allows, and no more:
//! - `IPAS2E1IS`/`RIPAS2E1IS` drop stage-2 entries of the VMID covering the
//!   IPA/range on every pCPU, only at the hinted level when a TTL hint is
//!   given (a wrong hint leaves the entry), and never combined entries;
//! - `VMALLE1(IS)` drops combined entries of the VMID (here / everywhere);
//! - `VMALLS12E1(IS)` drops both kinds for the VMID; `ALLE1IS` everything.
//!
//! Barriers are not modelled by the cache; [`check_barriers`] checks their
//! placement in a plan separately.

use alloc::vec::Vec;

use crate::addr::{Ipa, PhysAddr, Vmid, PAGE_SIZE};
use crate::op::TlbOp;

/// Size of a leaf entry at `level` (4 KiB granule).
const fn leaf_size(level: u8) -> u64 {
    1 << (12 + 9 * (3 - level as u32))
}

/// A cached stage-2 entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct S2Entry {
    /// VMID tag.
    pub vmid: Vmid,
    /// First IPA of the leaf.
    pub base: Ipa,
    /// Leaf level (1..=3).
    pub level: u8,
    /// Output address of `base`.
    pub pa: PhysAddr,
}

impl S2Entry {
    fn covers(&self, ipa: Ipa) -> bool {
        ipa.0 >= self.base.0 && ipa.0 - self.base.0 < leaf_size(self.level)
    }
    fn translate(&self, ipa: Ipa) -> PhysAddr {
        PhysAddr(self.pa.0 + (ipa.0 - self.base.0))
    }
}

/// A cached combined stage-1+2 entry (stage-1 is modelled as identity, so VA == IPA).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CombinedEntry {
    /// VMID tag.
    pub vmid: Vmid,
    /// The vCPU whose stage-1 context made it.
    pub vcpu: u32,
    /// Page-aligned VA (== IPA).
    pub va: Ipa,
    /// Page-aligned output address.
    pub pa: PhysAddr,
}

/// What a lookup hit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Hit {
    /// The translation the TLB would use (page-aligned).
    pub pa: PhysAddr,
    /// For combined entries: the vCPU context that created it.
    pub creator: Option<u32>,
}

#[derive(Clone, Debug, Default)]
struct Cpu {
    s2: Vec<S2Entry>,
    comb: Vec<CombinedEntry>,
}

/// The model: one TLB per pCPU.
#[derive(Clone, Debug)]
pub struct ModelTlb {
    cpus: Vec<Cpu>,
}

impl ModelTlb {
    /// A model with `ncpus` empty TLBs.
    #[must_use]
    pub fn new(ncpus: usize) -> Self {
        Self {
            cpus: (0..ncpus).map(|_| Cpu::default()).collect(),
        }
    }

    /// Cache the translation of `ipa` on `cpu` for vCPU `vcpu` after a walk
    /// (for `leaf.vmid`) found the leaf entry `leaf`.
    pub fn fill(&mut self, cpu: usize, vcpu: u32, ipa: Ipa, leaf: S2Entry) {
        let Some(c) = self.cpus.get_mut(cpu) else {
            return;
        };
        let e = leaf;
        let vmid = e.vmid;
        if !c.s2.contains(&e) {
            c.s2.push(e);
        }
        let va = ipa.align_down(PAGE_SIZE);
        let ce = CombinedEntry {
            vmid,
            vcpu,
            va,
            pa: e.translate(va),
        };
        if !c.comb.contains(&ce) {
            c.comb.push(ce);
        }
    }

    /// Cache a combined entry only (a walk that used a cached stage-2 entry
    /// translating `ipa` to `pa`).
    pub fn fill_combined(&mut self, cpu: usize, vmid: Vmid, vcpu: u32, ipa: Ipa, pa: PhysAddr) {
        let Some(c) = self.cpus.get_mut(cpu) else {
            return;
        };
        let ce = CombinedEntry {
            vmid,
            vcpu,
            va: ipa.align_down(PAGE_SIZE),
            pa: pa.align_down(PAGE_SIZE),
        };
        if !c.comb.contains(&ce) {
            c.comb.push(ce);
        }
    }

    /// Every cached translation of `ipa` for `vmid` on `cpu` that an access
    /// could use (combined entries first, as a TLB would prefer them).
    #[must_use]
    pub fn lookup(&self, cpu: usize, vmid: Vmid, ipa: Ipa) -> Vec<Hit> {
        let mut v = Vec::new();
        let Some(c) = self.cpus.get(cpu) else {
            return v;
        };
        let va = ipa.align_down(PAGE_SIZE);
        for e in c.comb.iter().filter(|e| e.vmid == vmid && e.va == va) {
            v.push(Hit {
                pa: e.pa,
                creator: Some(e.vcpu),
            });
        }
        for e in c.s2.iter().filter(|e| e.vmid == vmid && e.covers(va)) {
            v.push(Hit {
                pa: e.translate(va),
                creator: None,
            });
        }
        v
    }

    /// All cached entries of all pCPUs, as `(cpu, vmid, page IPA, page PA)`
    /// (stage-2 block entries expanded lazily by the caller's query: only
    /// their base page is reported together with the level).
    #[must_use]
    pub fn entries(&self) -> Vec<(usize, Vmid, Ipa, u8, PhysAddr)> {
        let mut v = Vec::new();
        for (i, c) in self.cpus.iter().enumerate() {
            for e in &c.s2 {
                v.push((i, e.vmid, e.base, e.level, e.pa));
            }
            for e in &c.comb {
                v.push((i, e.vmid, e.va, 3, e.pa));
            }
        }
        v
    }

    fn on(&mut self, cpu: usize, broadcast: bool, mut f: impl FnMut(&mut Cpu)) {
        if broadcast {
            self.cpus.iter_mut().for_each(&mut f);
        } else if let Some(c) = self.cpus.get_mut(cpu) {
            f(c);
        }
    }

    /// Execute `op` as issued by `cpu`.
    pub fn execute(&mut self, cpu: usize, op: &TlbOp) {
        let ttl_ok = |ttl: Option<u8>, level: u8| ttl.is_none_or(|t| t == level);
        match *op {
            TlbOp::DsbIshst | TlbOp::DsbIsh | TlbOp::DsbNsh | TlbOp::Isb | TlbOp::IcIallu => {}
            TlbOp::Ipas2e1is { vmid, ipa, ttl } => self.on(cpu, true, |c| {
                c.s2.retain(|e| !(e.vmid == vmid && e.covers(ipa) && ttl_ok(ttl, e.level)));
            }),
            TlbOp::Ripas2e1is {
                vmid,
                base,
                pages,
                ttl,
            } => {
                let end = base.0.saturating_add(pages.saturating_mul(PAGE_SIZE));
                self.on(cpu, true, |c| {
                    c.s2.retain(|e| {
                        let e_end = e.base.0 + leaf_size(e.level);
                        !(e.vmid == vmid
                            && e.base.0 < end
                            && e_end > base.0
                            && ttl_ok(ttl, e.level))
                    });
                });
            }
            TlbOp::Vmalle1is { vmid } => self.on(cpu, true, |c| c.comb.retain(|e| e.vmid != vmid)),
            TlbOp::Vmalle1 { vmid } => self.on(cpu, false, |c| c.comb.retain(|e| e.vmid != vmid)),
            TlbOp::Vmalls12e1is { vmid } => self.on(cpu, true, |c| {
                c.comb.retain(|e| e.vmid != vmid);
                c.s2.retain(|e| e.vmid != vmid);
            }),
            TlbOp::Vmalls12e1 { vmid } => self.on(cpu, false, |c| {
                c.comb.retain(|e| e.vmid != vmid);
                c.s2.retain(|e| e.vmid != vmid);
            }),
            TlbOp::Alle1is => self.on(cpu, true, |c| {
                c.comb.clear();
                c.s2.clear();
            }),
        }
    }

    /// Execute every op of `ops` in order on `cpu`.
    pub fn execute_all(&mut self, cpu: usize, ops: &[TlbOp]) {
        for op in ops {
            self.execute(cpu, op);
        }
    }
}

/// Check barrier placement in a plan: a plan containing broadcast TLBIs must
/// start with `DSB ISHST` (table stores visible first), have a `DSB ISH`
/// after the last broadcast TLBI, a `DSB ISH` between the last stage-2 IPA
/// TLBI and a following `VMALLE1IS`, and end with `ISB`. Local TLBIs need a
/// `DSB NSH` (or `DSB ISH`) after them and a final `ISB`.
#[must_use]
pub fn check_barriers(ops: &[TlbOp]) -> bool {
    let is_bcast = |o: &TlbOp| {
        matches!(
            o,
            TlbOp::Ipas2e1is { .. }
                | TlbOp::Ripas2e1is { .. }
                | TlbOp::Vmalle1is { .. }
                | TlbOp::Vmalls12e1is { .. }
                | TlbOp::Alle1is
        )
    };
    let is_local = |o: &TlbOp| matches!(o, TlbOp::Vmalle1 { .. } | TlbOp::Vmalls12e1 { .. });
    let is_ipa = |o: &TlbOp| matches!(o, TlbOp::Ipas2e1is { .. } | TlbOp::Ripas2e1is { .. });
    if ops.is_empty() {
        return true;
    }
    if ops.iter().any(is_bcast) && ops.first() != Some(&TlbOp::DsbIshst) {
        return false;
    }
    if ops.last() != Some(&TlbOp::Isb) {
        return false;
    }
    // Every TLBI must be followed by a completing DSB before the final ISB.
    let mut need_dsb = false;
    let mut ipa_since_dsb = false;
    for o in ops {
        match o {
            TlbOp::DsbIsh => {
                need_dsb = false;
                ipa_since_dsb = false;
            }
            TlbOp::DsbNsh if !ipa_since_dsb => need_dsb = false,
            TlbOp::Vmalle1is { .. } if ipa_since_dsb => return false,
            o if is_bcast(o) || is_local(o) => {
                need_dsb = true;
                if is_ipa(o) {
                    ipa_since_dsb = true;
                }
            }
            _ => {}
        }
    }
    !need_dsb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipa_tlbi_keeps_combined_entries_and_respects_ttl() {
        let mut m = ModelTlb::new(2);
        let v = Vmid(1);
        m.fill(
            0,
            0,
            Ipa(0x4000_5000),
            S2Entry {
                vmid: v,
                base: Ipa(0x4000_0000),
                level: 2,
                pa: PhysAddr(0x8000_0000),
            },
        );
        assert_eq!(m.lookup(0, v, Ipa(0x4000_5000)).len(), 2);
        assert!(m.lookup(1, v, Ipa(0x4000_5000)).is_empty());
        // Wrong TTL hint: the level-2 entry stays.
        m.execute(
            1,
            &TlbOp::Ipas2e1is {
                vmid: v,
                ipa: Ipa(0x4000_5000),
                ttl: Some(3),
            },
        );
        assert_eq!(m.lookup(0, v, Ipa(0x4000_5000)).len(), 2);
        m.execute(
            1,
            &TlbOp::Ipas2e1is {
                vmid: v,
                ipa: Ipa(0x4000_7000),
                ttl: Some(2),
            },
        );
        let h = m.lookup(0, v, Ipa(0x4000_5000));
        assert_eq!(h.len(), 1, "combined entry survives an IPA TLBI");
        assert_eq!(h[0].creator, Some(0));
        m.execute(1, &TlbOp::Vmalle1 { vmid: v });
        assert_eq!(
            m.lookup(0, v, Ipa(0x4000_5000)).len(),
            1,
            "local op on cpu1"
        );
        m.execute(1, &TlbOp::Vmalle1is { vmid: v });
        assert!(m.lookup(0, v, Ipa(0x4000_5000)).is_empty());
    }

    #[test]
    fn range_and_full_flushes() {
        let mut m = ModelTlb::new(1);
        for (vm, i) in [(1u16, 0u64), (1, 1), (1, 9), (2, 1)] {
            let ipa = Ipa(i << 12);
            m.fill(
                0,
                0,
                ipa,
                S2Entry {
                    vmid: Vmid(vm),
                    base: ipa,
                    level: 3,
                    pa: PhysAddr(0x10_0000 + (i << 12)),
                },
            );
        }
        m.execute(
            0,
            &TlbOp::Ripas2e1is {
                vmid: Vmid(1),
                base: Ipa(0),
                pages: 2,
                ttl: None,
            },
        );
        assert!(m
            .lookup(0, Vmid(1), Ipa(0x1000))
            .iter()
            .all(|h| h.creator.is_some()));
        assert!(m
            .lookup(0, Vmid(1), Ipa(0x9000))
            .iter()
            .any(|h| h.creator.is_none()));
        assert!(m
            .lookup(0, Vmid(2), Ipa(0x1000))
            .iter()
            .any(|h| h.creator.is_none()));
        m.execute(0, &TlbOp::Vmalls12e1is { vmid: Vmid(1) });
        assert!(m.lookup(0, Vmid(1), Ipa(0x9000)).is_empty());
        assert_eq!(m.lookup(0, Vmid(2), Ipa(0x1000)).len(), 2);
        m.execute(0, &TlbOp::Alle1is);
        assert!(m.entries().is_empty());
    }

    #[test]
    fn barrier_checker() {
        use TlbOp::*;
        let v = Vmid(1);
        let ipa = Ipa(0);
        assert!(check_barriers(&[
            DsbIshst,
            Ipas2e1is {
                vmid: v,
                ipa,
                ttl: None
            },
            DsbIsh,
            Vmalle1is { vmid: v },
            DsbIsh,
            Isb
        ]));
        assert!(!check_barriers(&[
            Ipas2e1is {
                vmid: v,
                ipa,
                ttl: None
            },
            DsbIsh,
            Isb
        ]));
        assert!(!check_barriers(&[
            DsbIshst,
            Ipas2e1is {
                vmid: v,
                ipa,
                ttl: None
            },
            Vmalle1is { vmid: v },
            DsbIsh,
            Isb
        ]));
        assert!(!check_barriers(&[DsbIshst, Vmalls12e1is { vmid: v }, Isb]));
        assert!(check_barriers(&[Vmalle1 { vmid: v }, IcIallu, DsbNsh, Isb]));
        assert!(!check_barriers(&[Vmalle1 { vmid: v }, IcIallu, Isb]));
    }
}

#[cfg(test)]
mod plan_props {
    use super::*;
    use crate::inval::{pages_per_entry, InvalidationSet};
    use crate::plan::{plan, Policy};
    use proptest::prelude::*;

    const POLICIES: [Policy; 5] = Policy::ALL;

    proptest! {
        /// Any plan drops every cached entry of the set (at its level) and
        /// every combined entry of the VMID, and nothing of another VMID.
        #[test]
        fn plans_cover_their_set_and_spare_other_vmids(
            runs in prop::collection::vec((0u64..64, 1u64..40, 2u8..=3), 1..8),
            p in 0..POLICIES.len(),
        ) {
            let mut set = InvalidationSet::new();
            let mut m = ModelTlb::new(2);
            for &(slot, n, level) in &runs {
                let per = pages_per_entry(level);
                // Level 3: n pages from slot*512 (+7); level 2: n blocks.
                let (base, pages) = if level == 3 {
                    (slot * 512 + 7, n * 13)
                } else {
                    (slot * 512, n.min(4) * per)
                };
                set.add(Ipa(base << 12), pages, level);
                for e in 0..pages / per {
                    let b = Ipa((base + e * per) << 12);
                    for (vm, cpu) in [(1u16, 0usize), (2, 1)] {
                        m.fill(cpu, 0, b, S2Entry { vmid: Vmid(vm), base: b, level, pa: PhysAddr(b.0 + 0x1_0000_0000) });
                    }
                }
            }
            let pl = plan(Vmid(1), &set, &POLICIES[p]);
            prop_assert!(check_barriers(pl.ops()));
            m.execute_all(0, pl.ops());
            for (_, v, base, _, _) in m.entries() {
                prop_assert_eq!(v, Vmid(2), "entry {:?} of VMID 1 survived {:?}", base, POLICIES[p]);
            }
            prop_assert!(!m.entries().is_empty());
        }
    }
}
