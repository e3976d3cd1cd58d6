//! Property test: physmap changes + deferred flushes + vCPU switches,
//! executed against pv-tlb's model TLB, never leave a stale translation usable.
//!
//! The safety property checked after every step and on every access:
//! - a cached translation (stage-2 or combined) of `(VMID, IPA)` that differs
//!   from the current stage-2 (or exists while the IPA is unmapped) is
//!   allowed only while the invalidation of that IPA is pending *and* the
//!   frame it points to is still held by the gatherer (so it cannot have been
//!   freed, scrubbed, reused or given to another domain);
//! - an access never hits a combined entry created by another vCPU's
//!   stage-1 context of the same VMID.

extern crate std;

use std::format;
use std::string::String;
use std::vec::Vec;

use proptest::prelude::*;
use pv_tlb::model::{ModelTlb, S2Entry};
use pv_tlb::{plan, DeferredFlush, Flush, LastRan, Policy, TlbOp, Vmid};

use crate::physmap::P2mKind;
use crate::sim::SimTableMem;
use crate::*;

const NDOM: usize = 2;
const NCPU: usize = 2;
/// gfn space per domain: 4 slots of 2 MiB.
const GFNS: u64 = 2048;

#[derive(Clone, Debug)]
enum Step {
    /// Map a fresh page (order 0) or 2 MiB extent (order 9) at `gfn` of `dom`.
    Map { dom: usize, gfn: u64, big: bool },
    /// Unmap `gfn` of `dom` (its page goes back to the pool after the flush).
    Unmap { dom: usize, gfn: u64 },
    /// The hypercall ends (coalescable: a single remove_from_physmap).
    End { dom: usize, coalescable: bool },
    /// `dom` exits for something else than a remove: its coalescing window closes.
    Exit { dom: usize },
    /// Allocator pressure: flush everything, release the held frames.
    Free,
    /// vCPU `vcpu` of `dom` runs on `cpu`.
    Switch { cpu: usize, dom: usize, vcpu: u32 },
    /// The vCPU running on `cpu` touches `gfn`.
    Access { cpu: usize, gfn: u64 },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..NDOM, 0..GFNS, prop::bool::weighted(0.15))
            .prop_map(|(dom, gfn, big)| Step::Map { dom, gfn, big }),
        6 => (0..NDOM, 0..GFNS).prop_map(|(dom, gfn)| Step::Unmap { dom, gfn }),
        2 => (0..NDOM, any::<bool>()).prop_map(|(dom, coalescable)| Step::End { dom, coalescable }),
        1 => (0..NDOM).prop_map(|dom| Step::Exit { dom }),
        2 => Just(Step::Free),
        4 => (0..NCPU, 0..NDOM, 0..2u32).prop_map(|(cpu, dom, vcpu)| Step::Switch { cpu, dom, vcpu }),
        12 => (0..NCPU, 0..GFNS).prop_map(|(cpu, gfn)| Step::Access { cpu, gfn }),
    ]
}

/// Which ops of each plan actually run (the fault-injection knob).
type Keep = fn(&TlbOp) -> bool;

struct Harness {
    policy: Policy,
    tables: SimTableMem,
    frames: FrameTable,
    flush: DeferredFlush,
    doms: Vec<Physmap>,
    model: ModelTlb,
    last: Vec<LastRan>,
    running: Vec<Option<(usize, u32)>>,
    keep: Keep,
    /// Recently touched gfns (biases accesses and unmaps towards mapped pages).
    touched: Vec<(usize, u64)>,
}

fn vmid(d: usize) -> Vmid {
    Vmid(d as u16 + 1)
}

impl Harness {
    fn new(policy: Policy, keep: Keep) -> Self {
        let mut tables = SimTableMem::new();
        let doms = (0..NDOM)
            .map(|d| Physmap::new(&mut tables, d as u16, 40, 1 << 20).unwrap())
            .collect();
        Self {
            policy,
            tables,
            // Small pool: frames are reused quickly.
            frames: FrameTable::new(PhysAddr(0x1_0000_0000), 1536),
            flush: DeferredFlush::new(policy),
            doms,
            model: ModelTlb::new(NCPU),
            last: (0..NCPU).map(|_| LastRan::new()).collect(),
            running: alloc::vec![None; NCPU],
            keep,
            touched: Vec::new(),
        }
    }

    fn run(&mut self, cpu: usize, ops: &[TlbOp]) {
        for op in ops {
            if (self.keep)(op) {
                self.model.execute(cpu, op);
            }
        }
    }

    /// Break-before-make flushes happen synchronously inside the table update.
    fn drain_sync(&mut self, d: usize) {
        for s in core::mem::take(&mut self.tables.sync_invalidations) {
            let p = plan(vmid(d), &s, &self.policy);
            self.run(0, p.ops());
        }
    }

    fn exec(&mut self, f: Flush) {
        self.run(0, f.plan.ops());
        self.frames.release(&f.released).unwrap();
    }

    fn remove(&mut self, d: usize, gfn: u64) {
        if self.doms[d].lookup(gfn).is_none() {
            return;
        }
        let (inv, r) = self.doms[d].remove(&mut self.tables, gfn, true).unwrap();
        self.drain_sync(d);
        let held: Vec<PhysAddr> = match r {
            Removed::Release(pa) => alloc::vec![pa],
            _ => Vec::new(),
        };
        let f = self.flush.record(vmid(d), &inv, &held);
        self.exec(f);
    }

    fn truth(&self, d: usize, ipa: Ipa) -> Option<PhysAddr> {
        self.doms[d]
            .stage2()
            .lookup(&self.tables, ipa)
            .map(|(pa, _)| pa.align_down(PAGE_SIZE))
    }

    fn allowed_stale(&self, d: usize, ipa: Ipa, pa: PhysAddr) -> bool {
        self.flush.is_pending(vmid(d), ipa) && self.flush.holds(pa)
    }

    fn step(&mut self, s: &Step) -> Result<(), String> {
        match *s {
            Step::Map { dom, gfn, big } => {
                let (gfn, order) = if big { (gfn & !511, 9) } else { (gfn, 0) };
                let pages = 1u64 << order;
                for g in gfn..gfn + pages {
                    self.remove(dom, g);
                }
                let pa = match self.frames.alloc(dom as u16, order) {
                    Ok(pa) => pa,
                    Err(_) => {
                        // Pool exhausted: get held frames back first.
                        let f = self.flush.flush_all();
                        self.exec(f);
                        match self.frames.alloc(dom as u16, order) {
                            Ok(pa) => pa,
                            Err(_) => return Ok(()),
                        }
                    }
                };
                let f =
                    self.flush
                        .before_map(vmid(dom), Ipa::from_page_number(gfn), pages * PAGE_SIZE);
                self.exec(f);
                let inv = self.doms[dom]
                    .insert(&mut self.tables, gfn, pa, pages, P2mKind::Ram, S2Attrs::RAM)
                    .map_err(|e| format!("insert: {e}"))?;
                self.drain_sync(dom);
                let f = self.flush.record(vmid(dom), &inv, &[]);
                self.exec(f);
                self.touched.push((dom, gfn));
            }
            Step::Unmap { dom, gfn } => {
                let g = self
                    .touched
                    .iter()
                    .rev()
                    .find(|t| t.0 == dom)
                    .map_or(gfn, |t| if gfn % 2 == 0 { t.1 } else { gfn });
                self.remove(dom, g);
            }
            Step::End { dom, coalescable } => {
                let f = self.flush.end_hypercall(vmid(dom), vmid(dom), coalescable);
                self.exec(f);
            }
            Step::Exit { dom } => {
                let f = self.flush.close_window(vmid(dom));
                self.exec(f);
                if self.flush.window_open(vmid(dom)) {
                    return Err(format!("d{dom}: window still open after its exit"));
                }
            }
            Step::Free => {
                let f = self.flush.flush_all();
                self.exec(f);
            }
            Step::Switch { cpu, dom, vcpu } => {
                let p = self.last[cpu].switch_to(vmid(dom), vcpu, &self.policy);
                self.run(cpu, p.ops());
                self.running[cpu] = Some((dom, vcpu));
            }
            Step::Access { cpu, gfn } => {
                let Some((dom, vcpu)) = self.running[cpu] else {
                    return Ok(());
                };
                let g = self
                    .touched
                    .iter()
                    .rev()
                    .find(|t| t.0 == dom)
                    .map_or(gfn, |t| if gfn % 3 == 0 { gfn } else { t.1 + gfn % 512 });
                let ipa = Ipa::from_page_number(g);
                let truth = self.truth(dom, ipa);
                let hits = self.model.lookup(cpu, vmid(dom), ipa);
                for h in &hits {
                    if let Some(c) = h.creator {
                        if c != vcpu {
                            return Err(format!(
                                "cpu{cpu} vCPU {vcpu} of d{dom} hit a combined entry of vCPU {c} at {ipa}"
                            ));
                        }
                    }
                    if Some(h.pa) != truth && !self.allowed_stale(dom, ipa, h.pa) {
                        return Err(format!(
                            "stale: d{dom} {ipa} -> {} (truth {truth:?}) usable on cpu{cpu}",
                            h.pa
                        ));
                    }
                }
                let comb_hit = hits.iter().any(|h| h.creator.is_some());
                let s2_hit = hits.iter().find(|h| h.creator.is_none());
                match (comb_hit, s2_hit) {
                    (true, _) => {}
                    // The walk used the cached stage-2 entry (stale or not).
                    (false, Some(h)) => self.model.fill_combined(cpu, vmid(dom), vcpu, ipa, h.pa),
                    (false, None) => {
                        if let Some(l) = self.doms[dom].stage2().walk(&self.tables, ipa) {
                            self.model.fill(
                                cpu,
                                vcpu,
                                ipa,
                                S2Entry {
                                    vmid: vmid(dom),
                                    base: l.base,
                                    level: l.level,
                                    pa: l.pa,
                                },
                            );
                        }
                    }
                }
            }
        }
        self.check_all()
    }

    /// Every cached translation is current, or pending with its frame held.
    fn check_all(&self) -> Result<(), String> {
        for (cpu, v, base, level, pa) in self.model.entries() {
            let d = (v.0 - 1) as usize;
            let pages = level_size(level) / PAGE_SIZE;
            for k in 0..pages {
                let ipa = Ipa(base.0 + k * PAGE_SIZE);
                let p = PhysAddr(pa.0 + k * PAGE_SIZE);
                if self.truth(d, ipa) != Some(p) && !self.allowed_stale(d, ipa, p) {
                    return Err(format!(
                        "stale entry on cpu{cpu}: d{d} {ipa} -> {p} (level {level}), truth {:?}, pending {}, held {}",
                        self.truth(d, ipa),
                        self.flush.is_pending(v, ipa),
                        self.flush.holds(p)
                    ));
                }
            }
        }
        if self.tables.bbm_violations != 0 {
            return Err(format!(
                "{} break-before-make violations",
                self.tables.bbm_violations
            ));
        }
        Ok(())
    }

    fn run_all(&mut self, steps: &[Step]) -> Result<(), String> {
        for (i, s) in steps.iter().enumerate() {
            self.step(s).map_err(|e| format!("step {i} {s:?}: {e}"))?;
        }
        Ok(())
    }
}

const POLICIES: [Policy; 5] = Policy::ALL;
/// hv's choice nested with FEAT_TLBIRANGE (the mutation tests' targeted policy).
const TARGETED_RANGE_NESTED: Policy = Policy::Targeted {
    has_range: true,
    nested: true,
};

fn keep_all(_: &TlbOp) -> bool {
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_stale_translation_stays_usable(
        steps in prop::collection::vec(step_strategy(), 1..80),
        p in 0..POLICIES.len(),
    ) {
        let mut h = Harness::new(POLICIES[p], keep_all);
        let r = h.run_all(&steps);
        prop_assert!(r.is_ok(), "{:?}: {}", POLICIES[p], r.unwrap_err());
    }
}

/// A fixed scenario that exercises every flush kind: two vCPUs of d0 on one
/// pCPU, a page cached by both TLB kinds, unmapped, its frame freed and
/// reused by d1.
fn scenario() -> Vec<Step> {
    alloc::vec![
        Step::Map {
            dom: 0,
            gfn: 7,
            big: false
        },
        Step::Switch {
            cpu: 0,
            dom: 0,
            vcpu: 0
        },
        Step::Access { cpu: 0, gfn: 512 }, // gfn 7 (last touched + 512 % 512)
        Step::Switch {
            cpu: 0,
            dom: 0,
            vcpu: 1
        },
        Step::Access { cpu: 0, gfn: 512 },
        Step::Unmap { dom: 0, gfn: 0 },
        Step::End {
            dom: 0,
            coalescable: false
        },
        Step::Free,
        Step::Map {
            dom: 1,
            gfn: 100,
            big: false
        },
        Step::Switch {
            cpu: 1,
            dom: 0,
            vcpu: 1
        },
        Step::Access { cpu: 1, gfn: 3 },
        Step::Access { cpu: 0, gfn: 3 },
    ]
}

#[test]
fn the_scenario_passes_under_every_policy() {
    for p in POLICIES {
        Harness::new(p, keep_all).run_all(&scenario()).unwrap();
    }
}

#[test]
fn the_model_catches_each_missing_flush() {
    let no_ipa: Keep = |o| !matches!(o, TlbOp::Ipas2e1is { .. } | TlbOp::Ripas2e1is { .. });
    let no_s1: Keep = |o| !matches!(o, TlbOp::Vmalle1is { .. });
    let no_switch: Keep = |o| !matches!(o, TlbOp::Vmalle1 { .. } | TlbOp::Vmalls12e1 { .. });
    let no_full: Keep = |o| !matches!(o, TlbOp::Vmalls12e1is { .. });
    let targeted = TARGETED_RANGE_NESTED;
    for (name, policy, keep) in [
        ("IPA TLBIs", targeted, no_ipa),
        ("VMALLE1IS after IPA TLBIs", targeted, no_s1),
        ("vCPU switch flush (targeted)", targeted, no_switch),
        (
            "vCPU switch flush (xen-compat)",
            Policy::XenCompat,
            no_switch,
        ),
        ("full flush (xen-compat)", Policy::XenCompat, no_full),
    ] {
        let r = Harness::new(policy, keep).run_all(&scenario());
        assert!(r.is_err(), "removing the {name} went unnoticed");
    }
}

/// Random sequences (deterministic runner) find the missing flush too.
#[test]
fn random_sequences_find_each_missing_flush() {
    use proptest::test_runner::{Config, TestRunner};
    let no_s1: Keep = |o| !matches!(o, TlbOp::Vmalle1is { .. });
    let no_ipa: Keep = |o| !matches!(o, TlbOp::Ipas2e1is { .. } | TlbOp::Ripas2e1is { .. });
    let no_full: Keep = |o| !matches!(o, TlbOp::Vmalls12e1is { .. });
    let no_switch: Keep = |o| !matches!(o, TlbOp::Vmalle1 { .. } | TlbOp::Vmalls12e1 { .. });
    for (policy, keep) in [
        (TARGETED_RANGE_NESTED, no_s1),
        (
            Policy::Targeted {
                has_range: false,
                nested: true,
            },
            no_ipa,
        ),
        (
            Policy::Targeted {
                has_range: true,
                nested: false,
            },
            no_switch,
        ),
        (Policy::XenCompat, no_full),
        (Policy::XenCompat, no_switch),
    ] {
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 8192,
                failure_persistence: None,
                ..Config::default()
            },
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        );
        let r = runner.run(&prop::collection::vec(step_strategy(), 1..80), |steps| {
            Harness::new(policy, keep)
                .run_all(&steps)
                .map_err(proptest::test_runner::TestCaseError::fail)
        });
        assert!(
            r.is_err(),
            "{policy:?}: random sequences never noticed the missing flush"
        );
    }
}

#[test]
fn the_model_catches_a_wrong_ttl_hint_and_a_skipped_bbm_flush() {
    // Split a 2 MiB block while a vCPU caches it: the synchronous BBM flush
    // (level-2 TTL) must drop the block entry.
    let steps = alloc::vec![
        Step::Map {
            dom: 0,
            gfn: 512,
            big: true
        },
        Step::Switch {
            cpu: 0,
            dom: 0,
            vcpu: 0
        },
        Step::Access { cpu: 0, gfn: 5 },
        Step::Unmap { dom: 0, gfn: 0 },
        Step::End {
            dom: 0,
            coalescable: false
        },
        Step::Free,
        Step::Map {
            dom: 1,
            gfn: 3,
            big: false
        },
        Step::Access { cpu: 0, gfn: 5 },
    ];
    for p in POLICIES {
        Harness::new(p, keep_all).run_all(&steps).unwrap();
    }
    // Dropping every IPA TLBI (hence the BBM one too) leaves the block cached.
    let no_ipa: Keep = |o| !matches!(o, TlbOp::Ipas2e1is { .. } | TlbOp::Ripas2e1is { .. });
    assert!(Harness::new(TARGETED_RANGE_NESTED, no_ipa)
        .run_all(&steps)
        .is_err());
}
