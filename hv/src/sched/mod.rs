//! The vCPU scheduler: *decide* here, *do* in the run loop (`start/run.rs`).
//!
//! Shape borrowed from tock's `kernel/src/scheduler.rs`: [`Scheduler::next`]
//! returns a [`Decision`] and the run loop executes it; the policy is pure
//! (no arch access), so every choice is host-tested.
//!
//! Policy: per-pCPU FIFO run queues; a running vCPU keeps its pCPU until it
//! yields, blocks (WFI, `SCHEDOP_block`), stops, or its time slice ends
//! while another vCPU waits in the same queue; a vCPU *woken* from blocked
//! (an interrupt for it: an IPI, an event channel, its timer) is *boosted*:
//! it queues ahead of the vCPUs that were preempted or yielded, and takes the
//! pCPU from a running unboosted vCPU once that one has run for the rate
//! limit (a tenth of a slice), as Xen's credit scheduler boosts a waking vCPU
//! (`CSCHED_PRI_TS_BOOST`) and bounds it by `sched_ratelimit_us` (1 ms): a
//! dom0 vCPU answering xenstore or an IPI then waits at most ~1 ms behind a
//! domU vCPU that computes, not the rest of a 10 ms slice per wake-up; a pCPU whose queue is empty
//! takes the oldest parked vCPU from the longest other queue (migration);
//! with nothing to run the pCPU idles (WFI) until kicked, an interrupt, or
//! the earliest virtual-timer deadline of a blocked vCPU. **Lazy
//! switching**: the vCPU loaded on a pCPU stays loaded while the pCPU idles
//! or while it is the only runnable one, so [`Decision::Continue`] means
//! "enter it again without `vcpu_load`"; its EL1, FP/SIMD and GIC state are
//! saved only when [`Decision::Switch`] gives the pCPU to another vCPU.
//!
//! **Ownership protocol (pick / park / steal).** Every vCPU is in exactly one
//! place: *parked* inside the [`Scheduler`] (it owns the `V`), or *held* by
//! one pCPU's loop (loaded there, or being put there). Each step below is one
//! critical section under the run-queue lock:
//! - *pick*: [`Scheduler::next`] hands out a vCPU only by moving it out of
//!   the parked set into the [`Decision::Switch`] (so a pCPU can never be
//!   told to run a vCPU it cannot get), or continues the one held here;
//! - *put* (no lock): the pCPU saves the vCPU the switch took it from, which
//!   stays held by this pCPU meanwhile: no other pCPU can take it, even
//!   though it may already wait in this pCPU's queue (a preempted vCPU);
//! - *park*: [`Scheduler::park`] gives it back; only now may another pCPU
//!   *steal* it, and the idle pCPUs to kick are returned so one does.
//!
//! A pCPU must park before it asks again ([`Scheduler::next`] panics
//! otherwise). `sched/model.rs` explores every interleaving of these steps
//! on 2 pCPUs (no vCPU lost or run twice; no runnable vCPU left while every
//! pCPU sleeps unkicked).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::domain::DomId;
use crate::vcpu::Vcpu;
use crate::vgic::Vgic;

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

/// A vCPU's identity: domain and index.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct VcpuKey {
    /// Domain id.
    pub dom: DomId,
    /// vCPU index in its domain.
    pub idx: u32,
}

/// Scheduling state of one vCPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum RunState {
    /// Waiting in run queue `queue`.
    Queued {
        /// The pCPU whose queue holds it.
        queue: usize,
    },
    /// Running on `cpu`.
    Running {
        /// The pCPU.
        cpu: usize,
    },
    /// Waiting for an interrupt (WFI / `SCHEDOP_block`).
    Blocked {
        /// Counter value at which its virtual timer fires, if armed (only
        /// tracked while it is not loaded: a loaded vCPU's timer is live).
        deadline: Option<u64>,
    },
}

/// Where a vCPU's state lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Home<V> {
    /// Parked here: owned by the scheduler, loaded nowhere; only such a vCPU
    /// can be handed to a pCPU ([`Decision::Switch`] carries it).
    Parked(V),
    /// Held by pCPU `cpu`'s loop: loaded there, or being put there after a
    /// [`Decision::Switch`] took the pCPU from it (until [`Scheduler::park`]).
    Held {
        /// The pCPU.
        cpu: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Entry<V> {
    state: RunState,
    home: Home<V>,
    /// Woken from blocked and not yet run since: queued ahead of unboosted
    /// vCPUs, and may preempt an unboosted one after the rate limit.
    boost: bool,
}

/// What a pCPU does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<V> {
    /// Enter the vCPU loaded here again (no `vcpu_load`).
    Continue(VcpuKey),
    /// Load and run `to` (handed over with the decision: it was parked). The
    /// vCPU loaded here before, if any, is still held by this pCPU: the caller
    /// puts it and gives it back with [`Scheduler::park`] before it asks again.
    Switch {
        /// The vCPU to run.
        to: VcpuKey,
        /// Its state, taken out of the parked set.
        vcpu: V,
    },
    /// Nothing to run: wait for an interrupt, or until `until` (counter ticks).
    Idle {
        /// Earliest virtual-timer deadline of a blocked, unloaded vCPU.
        until: Option<u64>,
    },
}

impl<V> Decision<V> {
    /// The decision without its payload (tests, logs).
    #[must_use]
    pub fn key(&self) -> Decision<()> {
        match self {
            Decision::Continue(k) => Decision::Continue(*k),
            Decision::Switch { to, .. } => Decision::Switch { to: *to, vcpu: () },
            Decision::Idle { until } => Decision::Idle { until: *until },
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Pcpu {
    queue: VecDeque<VcpuKey>,
    running: Option<VcpuKey>,
    /// The vCPU loaded here (held by this pCPU's loop).
    loaded: Option<VcpuKey>,
    /// The vCPU a [`Decision::Switch`] took this pCPU from, not yet parked.
    putting: Option<VcpuKey>,
    /// The last decision here was [`Decision::Idle`]: the pCPU sleeps until kicked.
    idle: bool,
    slice_end: u64,
    /// When the running vCPU got this pCPU (counter ticks).
    started: u64,
    /// The running vCPU got this pCPU boosted (a boosted one is not
    /// preempted by another boost, only by its slice end).
    running_boost: bool,
}

/// Counters of scheduler activity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SchedStats {
    /// `Switch` decisions (a `vcpu_load` follows).
    pub switches: u64,
    /// `Continue` decisions after the vCPU had stopped (yield/block) with nothing else to run.
    pub lazy_resumes: u64,
    /// vCPUs taken from another pCPU's queue.
    pub migrations: u64,
    /// Time slices that ended with another vCPU waiting.
    pub preemptions: u64,
    /// Running vCPUs preempted by a woken (boosted) one after the rate limit.
    pub boosts: u64,
    /// Loads of a vCPU on a pCPU whose last vCPU of that VMID was another
    /// one (the switches that need pv-tlb's `LastRan` plan).
    pub same_vmid_switches: u64,
}

/// The pure scheduler; it owns every vCPU that is not held by a pCPU (`V`
/// is the vCPU: `Box<Vcpu>` in hv, a token in the model tests).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scheduler<V> {
    cpus: Vec<Pcpu>,
    vcpus: BTreeMap<VcpuKey, Entry<V>>,
    slice: u64,
    /// Least run time before a boosted vCPU preempts (counter ticks).
    ratelimit: u64,
    /// Activity counters.
    pub stats: SchedStats,
}

/// A kick mask naming `cpu`: bit n = pCPU n; a pCPU numbered 64 or more is
/// named by all bits set, which means every pCPU (`start::run::kick_targets`).
fn bit(cpu: usize) -> u64 {
    if cpu < 64 {
        1 << cpu
    } else {
        u64::MAX
    }
}

impl<V> Scheduler<V> {
    /// `ncpus` pCPUs, time slices of `slice` counter ticks.
    #[must_use]
    pub fn new(ncpus: usize, slice: u64) -> Self {
        Self {
            cpus: alloc::vec![Pcpu::default(); ncpus.max(1)],
            vcpus: BTreeMap::new(),
            slice: slice.max(1),
            ratelimit: Self::ratelimit_of(slice),
            stats: SchedStats::default(),
        }
    }

    /// The rate limit for `slice`: a tenth of it (1 ms of hv's 10 ms slices,
    /// Xen's default `sched_ratelimit_us`).
    fn ratelimit_of(slice: u64) -> u64 {
        (slice / 10).max(1)
    }

    /// Set the time-slice length (counter ticks), and with it the rate limit.
    pub fn set_slice(&mut self, slice: u64) {
        self.slice = slice.max(1);
        self.ratelimit = Self::ratelimit_of(slice);
    }

    /// Number of pCPUs.
    #[must_use]
    pub fn ncpus(&self) -> usize {
        self.cpus.len()
    }

    /// Make room for pCPU `cpu` (pCPUs register as they come online).
    pub fn ensure_cpu(&mut self, cpu: usize) {
        if cpu >= self.cpus.len() {
            self.cpus.resize(cpu + 1, Pcpu::default());
        }
    }

    /// The state of `key`, if it is known.
    #[must_use]
    pub fn state(&self, key: VcpuKey) -> Option<RunState> {
        self.vcpus.get(&key).map(|e| e.state)
    }

    /// The pCPU holding `key` (loaded there or being put there); `None` if
    /// it is parked or unknown.
    #[must_use]
    pub fn held_by(&self, key: VcpuKey) -> Option<usize> {
        match self.vcpus.get(&key)?.home {
            Home::Held { cpu } => Some(cpu),
            Home::Parked(_) => None,
        }
    }

    /// The pCPU `key` is loaded on.
    #[must_use]
    pub fn loaded_on(&self, key: VcpuKey) -> Option<usize> {
        self.held_by(key)
            .filter(|&c| self.cpus.get(c).is_some_and(|p| p.loaded == Some(key)))
    }

    /// The parked vCPU `key` (to adjust its saved state under the lock).
    pub fn parked_mut(&mut self, key: VcpuKey) -> Option<&mut V> {
        match &mut self.vcpus.get_mut(&key)?.home {
            Home::Parked(v) => Some(v),
            Home::Held { .. } => None,
        }
    }

    /// vCPUs known (runnable, running or blocked).
    pub fn keys(&self) -> impl Iterator<Item = VcpuKey> + '_ {
        self.vcpus.keys().copied()
    }

    /// pCPUs whose last decision was [`Decision::Idle`] (they sleep until kicked).
    #[must_use]
    pub fn idle_mask(&self) -> u64 {
        (0..self.cpus.len())
            .filter(|&c| self.cpus[c].idle)
            .fold(0, |m, c| m | bit(c))
    }

    fn shortest_queue(&self) -> usize {
        (0..self.cpus.len())
            .min_by_key(|&c| self.cpus[c].queue.len() + usize::from(self.cpus[c].running.is_some()))
            .unwrap_or(0)
    }

    /// A new runnable vCPU `v` (parked, queued on the least busy pCPU).
    /// Returns the pCPUs to kick: that queue's pCPU and every idle one (any
    /// of them may take it).
    ///
    /// # Errors
    /// `v` back if `key` is known already.
    pub fn add(&mut self, key: VcpuKey, v: V) -> Result<u64, V> {
        if self.vcpus.contains_key(&key) {
            return Err(v);
        }
        let q = self.shortest_queue();
        self.cpus[q].queue.push_back(key);
        self.vcpus.insert(
            key,
            Entry {
                state: RunState::Queued { queue: q },
                home: Home::Parked(v),
                boost: false,
            },
        );
        Ok(bit(q) | self.idle_mask())
    }

    /// Forget `key` (CPU_OFF, domain ended). Returns the vCPU if it was
    /// parked; a held one stays with its pCPU (only that pCPU removes it,
    /// and never while it is putting it).
    pub fn remove(&mut self, key: VcpuKey) -> Option<V> {
        let e = self.vcpus.remove(&key)?;
        if let RunState::Queued { queue } = e.state {
            self.cpus[queue].queue.retain(|k| *k != key);
        }
        for c in &mut self.cpus {
            if c.running == Some(key) {
                c.running = None;
            }
            if c.loaded == Some(key) {
                c.loaded = None;
            }
        }
        match e.home {
            Home::Parked(v) => Some(v),
            Home::Held { .. } => None,
        }
    }

    /// Take every parked vCPU whose key satisfies `f` out of the scheduler
    /// (their domain ends: nobody may pick them any more).
    pub fn take_parked(&mut self, mut f: impl FnMut(VcpuKey) -> bool) -> Vec<(VcpuKey, V)> {
        let keys: Vec<VcpuKey> = self
            .vcpus
            .iter()
            .filter(|(k, e)| f(**k) && matches!(e.home, Home::Parked(_)))
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.remove(k).map(|v| (k, v)))
            .collect()
    }

    /// pCPUs holding a vCPU whose key satisfies `f` (to kick them).
    #[must_use]
    pub fn holders(&self, mut f: impl FnMut(VcpuKey) -> bool) -> u64 {
        self.vcpus
            .iter()
            .filter(|(k, _)| f(**k))
            .filter_map(|(_, e)| match e.home {
                Home::Held { cpu } => Some(bit(cpu)),
                Home::Parked(_) => None,
            })
            .fold(0, |m, b| m | b)
    }

    /// The running vCPU of `cpu` gives the pCPU up but stays runnable.
    pub fn yield_now(&mut self, cpu: usize) {
        let Some(key) = self.cpus[cpu].running.take() else {
            return;
        };
        self.cpus[cpu].queue.push_back(key);
        if let Some(e) = self.vcpus.get_mut(&key) {
            e.state = RunState::Queued { queue: cpu };
        }
    }

    /// The running vCPU of `cpu` waits for an interrupt (it stays loaded).
    pub fn block(&mut self, cpu: usize) {
        let Some(key) = self.cpus[cpu].running.take() else {
            return;
        };
        if let Some(e) = self.vcpus.get_mut(&key) {
            e.state = RunState::Blocked { deadline: None };
        }
    }

    /// `key` has something to do (an interrupt became pending): a blocked
    /// vCPU goes back to a run queue (the one of the pCPU holding it, else
    /// the least busy). Returns the pCPUs that should look again (to kick
    /// them: the queue's pCPU, and for a parked vCPU every idle pCPU), or 0
    /// if nothing changed.
    pub fn wake(&mut self, key: VcpuKey) -> u64 {
        let Some(e) = self.vcpus.get(&key) else {
            return 0;
        };
        match e.state {
            RunState::Blocked { .. } => {
                let held = match e.home {
                    Home::Held { cpu } => Some(cpu),
                    Home::Parked(_) => None,
                };
                let q = held.unwrap_or_else(|| self.shortest_queue());
                // Boosted: behind the vCPUs woken before it, ahead of the rest.
                let at = self.cpus[q]
                    .queue
                    .iter()
                    .position(|k| !self.vcpus.get(k).is_some_and(|e| e.boost))
                    .unwrap_or(self.cpus[q].queue.len());
                self.cpus[q].queue.insert(at, key);
                if let Some(e) = self.vcpus.get_mut(&key) {
                    e.state = RunState::Queued { queue: q };
                    e.boost = true;
                }
                if held.is_some() {
                    bit(q)
                } else {
                    bit(q) | self.idle_mask()
                }
            }
            RunState::Running { cpu } => bit(cpu),
            RunState::Queued { .. } => 0,
        }
    }

    /// Blocked vCPUs (candidates for [`Scheduler::wake`]).
    #[must_use]
    pub fn blocked(&self) -> Vec<VcpuKey> {
        self.vcpus
            .iter()
            .filter(|(_, e)| matches!(e.state, RunState::Blocked { .. }))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Wake every blocked, unloaded vCPU whose virtual-timer deadline has
    /// passed at `now`; returns them (the run loop injects their timer PPI)
    /// and the pCPUs to kick.
    pub fn expire(&mut self, now: u64) -> (Vec<VcpuKey>, u64) {
        let due: Vec<VcpuKey> = self
            .vcpus
            .iter()
            .filter(|(_, e)| matches!(e.state, RunState::Blocked { deadline: Some(d) } if d <= now))
            .map(|(k, _)| *k)
            .collect();
        let mut kicks = 0;
        for k in &due {
            kicks |= self.wake(*k);
        }
        (due, kicks)
    }

    /// The earliest virtual-timer deadline among blocked, unloaded vCPUs.
    #[must_use]
    pub fn earliest_deadline(&self) -> Option<u64> {
        self.vcpus
            .values()
            .filter_map(|e| match e.state {
                RunState::Blocked { deadline } => deadline,
                _ => None,
            })
            .min()
    }

    /// The end of the running vCPU's time slice on `cpu`, if another vCPU
    /// waits in its queue (else the vCPU may run on without a timer).
    #[must_use]
    pub fn slice_deadline(&self, cpu: usize) -> Option<u64> {
        let c = self.cpus.get(cpu)?;
        if c.running.is_none() || (c.queue.is_empty() && !self.waits_elsewhere(cpu)) {
            return None;
        }
        Some(if self.boost_waits(cpu) {
            c.slice_end.min(c.started.saturating_add(self.ratelimit))
        } else {
            c.slice_end
        })
    }

    /// pCPUs other than `cpu` running a vCPU with an empty queue.
    fn untimed(&self, cpu: usize) -> u64 {
        (0..self.cpus.len())
            .filter(|&c| {
                c != cpu && self.cpus[c].running.is_some() && self.cpus[c].queue.is_empty()
            })
            .fold(0, |m, c| m | bit(c))
    }

    /// A parked vCPU waits in another pCPU's queue (one `cpu` could steal).
    fn waits_elsewhere(&self, cpu: usize) -> bool {
        self.cpus.iter().enumerate().any(|(n, c)| {
            n != cpu
                && c.queue.iter().any(|k| {
                    self.vcpus
                        .get(k)
                        .is_some_and(|e| matches!(e.home, Home::Parked(_)))
                })
        })
    }

    /// A vCPU waits in `cpu`'s queue that `cpu` could run: a guest WFE on
    /// `cpu` is worth trapping (a yield gives the pCPU to it; KVM likewise
    /// traps WFE only when other tasks wait for the CPU).
    #[must_use]
    pub fn someone_waits(&self, cpu: usize) -> bool {
        self.cpus
            .get(cpu)
            .is_some_and(|c| c.queue.iter().any(|k| self.pickable(cpu, *k)))
    }

    /// A boosted vCPU heads `cpu`'s queue and the running one was not boosted.
    fn boost_waits(&self, cpu: usize) -> bool {
        let c = &self.cpus[cpu];
        !c.running_boost
            && c.queue
                .front()
                .and_then(|k| self.vcpus.get(k))
                .is_some_and(|e| e.boost)
    }

    /// When the pCPU running a vCPU must look again: the end of its slice
    /// (if someone waits) or the earliest timer deadline of a blocked,
    /// unloaded vCPU, whichever comes first (that vCPU must be woken even if
    /// the running one never exits).
    #[must_use]
    pub fn run_deadline(&self, cpu: usize) -> Option<u64> {
        match (self.slice_deadline(cpu), self.earliest_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Can `cpu` take `key` now? Only a parked vCPU, or the one loaded here.
    fn pickable(&self, cpu: usize, key: VcpuKey) -> bool {
        match self.vcpus.get(&key).map(|e| &e.home) {
            Some(Home::Parked(_)) => true,
            Some(Home::Held { cpu: c }) => *c == cpu && self.cpus[cpu].loaded == Some(key),
            None => false,
        }
    }

    /// Decide what `cpu` runs at time `now`.
    ///
    /// # Panics
    /// If `cpu` still holds a vCPU a previous [`Decision::Switch`] took the
    /// pCPU from (the caller must [`Scheduler::park`] it first).
    pub fn next(&mut self, cpu: usize, now: u64) -> Decision<V> {
        self.ensure_cpu(cpu);
        assert!(
            self.cpus[cpu].putting.is_none(),
            "sched: CPU{cpu} asks again before parking {:?}",
            self.cpus[cpu].putting
        );
        if let Some(cur) = self.cpus[cpu].running {
            let c = &self.cpus[cpu];
            let slice_over = now >= c.slice_end;
            let boosted = self.boost_waits(cpu) && now >= c.started.saturating_add(self.ratelimit);
            let waits_here = !c.queue.is_empty();
            let waits = waits_here || (slice_over && self.waits_elsewhere(cpu));
            if !waits || !(slice_over || boosted) {
                self.cpus[cpu].idle = false;
                return Decision::Continue(cur);
            }
            // Its slice is over, or a woken vCPU waits and it has had its
            // rate limit: to the back of the queue.
            if slice_over {
                self.stats.preemptions += 1;
            } else {
                self.stats.boosts += 1;
            }
            self.yield_now(cpu);
            if !waits_here {
                // Only another pCPU's queue has someone waiting (that pCPU
                // runs a vCPU too): balance the load, take it, and leave the
                // preempted vCPU queued here, stealable once parked. Else
                // per-pCPU queues never mix while no pCPU idles: a domU
                // vCPU that computes keeps a pCPU while dom0's two vCPUs
                // share the other.
                if let Some(k) = self.steal(cpu) {
                    self.cpus[cpu].queue.push_front(k);
                }
            }
        }
        let own = self.cpus[cpu]
            .queue
            .iter()
            .position(|k| self.pickable(cpu, *k))
            .and_then(|p| self.cpus[cpu].queue.remove(p));
        let picked = match own {
            Some(k) => Some(k),
            None => self.steal(cpu),
        };
        let Some(key) = picked else {
            self.cpus[cpu].idle = true;
            return Decision::Idle {
                until: self.earliest_deadline(),
            };
        };
        let Some(e) = self.vcpus.get_mut(&key) else {
            unreachable!("picked vCPUs are known");
        };
        e.state = RunState::Running { cpu };
        let boost = core::mem::take(&mut e.boost);
        let c = &mut self.cpus[cpu];
        c.idle = false;
        c.running = Some(key);
        c.slice_end = now.saturating_add(self.slice);
        c.started = now;
        c.running_boost = boost;
        let old = c.loaded;
        let Some(e) = self.vcpus.get_mut(&key) else {
            unreachable!("picked vCPUs are known");
        };
        if old == Some(key) {
            self.stats.lazy_resumes += 1;
            return Decision::Continue(key);
        }
        let Home::Parked(v) = core::mem::replace(&mut e.home, Home::Held { cpu }) else {
            unreachable!("only parked vCPUs are picked from elsewhere");
        };
        // The vCPU loaded here (if any) stays held by this pCPU until parked.
        let c = &mut self.cpus[cpu];
        c.putting = old;
        c.loaded = Some(key);
        self.stats.switches += 1;
        Decision::Switch { to: key, vcpu: v }
    }

    /// Give back `v`, which a [`Decision::Switch`] took `cpu` from (put by
    /// the caller), with its virtual-timer `deadline` (used if it is
    /// blocked). From now on any pCPU may take it. Returns the pCPUs to
    /// kick: if it is runnable, every idle one.
    ///
    /// # Errors
    /// `v` back if it was removed meanwhile (the caller drops it).
    ///
    /// # Panics
    /// If `key` is not the vCPU being put on `cpu`.
    pub fn park(
        &mut self,
        cpu: usize,
        key: VcpuKey,
        v: V,
        deadline: Option<u64>,
    ) -> Result<u64, V> {
        assert_eq!(
            self.cpus[cpu].putting.take(),
            Some(key),
            "sched: CPU{cpu} parks a vCPU it was not putting"
        );
        let Some(e) = self.vcpus.get_mut(&key) else {
            return Err(v);
        };
        e.home = Home::Parked(v);
        Ok(match &mut e.state {
            RunState::Blocked { deadline: d } => {
                *d = deadline;
                0
            }
            // (`cpu` itself is not idle; the sender never kicks itself.)
            // Also the pCPUs running a vCPU with nobody waiting in their own
            // queue: they entered it with no slice timer and may never exit
            // by themselves (a domU booting with its timer not yet armed), so
            // they could not take this one at their slice end otherwise.
            RunState::Queued { .. } => self.idle_mask() | self.untimed(cpu),
            RunState::Running { .. } => unreachable!("a vCPU being put runs nowhere"),
        })
    }

    /// Record the virtual-timer deadline of `key` (blocked and no longer
    /// loaded anywhere, so its timer is not live).
    pub fn set_deadline(&mut self, key: VcpuKey, deadline: Option<u64>) {
        if let Some(e) = self.vcpus.get_mut(&key) {
            if let RunState::Blocked { deadline: d } = &mut e.state {
                *d = deadline;
            }
        }
    }

    /// The vCPU loaded on `cpu`.
    #[must_use]
    pub fn loaded(&self, cpu: usize) -> Option<VcpuKey> {
        self.cpus.get(cpu).and_then(|c| c.loaded)
    }

    /// Take the oldest parked vCPU of the longest other queue (a vCPU held
    /// by another pCPU, loaded or being put there, is never taken).
    fn steal(&mut self, cpu: usize) -> Option<VcpuKey> {
        let mut order: Vec<usize> = (0..self.cpus.len()).filter(|&c| c != cpu).collect();
        order.sort_by_key(|&c| core::cmp::Reverse(self.cpus[c].queue.len()));
        for victim in order {
            let pos = self.cpus[victim].queue.iter().position(|k| {
                self.vcpus
                    .get(k)
                    .is_some_and(|e| matches!(e.home, Home::Parked(_)))
            });
            if let Some(p) = pos {
                self.stats.migrations += 1;
                return self.cpus[victim].queue.remove(p);
            }
        }
        None
    }

    /// Check the scheduler's invariants (tests): every queued vCPU is in
    /// exactly the queue its state names; a running vCPU is the `running` of
    /// its pCPU and held there; a held vCPU is loaded or being put on its
    /// pCPU; a queued vCPU held by a pCPU waits in that pCPU's queue.
    ///
    /// # Errors
    /// A description of the first broken invariant.
    pub fn check(&self) -> Result<(), alloc::string::String> {
        use alloc::format;
        for (k, e) in &self.vcpus {
            let held = match e.home {
                Home::Held { cpu } => Some(cpu),
                Home::Parked(_) => None,
            };
            if let Some(c) = held {
                let p = &self.cpus[c];
                if p.loaded != Some(*k) && p.putting != Some(*k) {
                    return Err(format!(
                        "{k:?} held by CPU{c}, neither loaded nor put there"
                    ));
                }
            }
            let in_queues: Vec<usize> = (0..self.cpus.len())
                .flat_map(|c| {
                    self.cpus[c]
                        .queue
                        .iter()
                        .filter(|q| *q == k)
                        .map(move |_| c)
                })
                .collect();
            match e.state {
                RunState::Queued { queue } => {
                    if in_queues != [queue] {
                        return Err(format!(
                            "{k:?} queued on {queue} but in queues {in_queues:?}"
                        ));
                    }
                    if held.is_some_and(|c| c != queue) {
                        return Err(format!("{k:?} held by {held:?}, queued on {queue}"));
                    }
                }
                RunState::Running { cpu } => {
                    if self.cpus[cpu].running != Some(*k)
                        || held != Some(cpu)
                        || !in_queues.is_empty()
                    {
                        return Err(format!("{k:?} running on {cpu} inconsistently"));
                    }
                }
                RunState::Blocked { .. } => {
                    if !in_queues.is_empty() {
                        return Err(format!("{k:?} blocked but queued"));
                    }
                }
            }
        }
        for (c, p) in self.cpus.iter().enumerate() {
            for k in [p.running, p.loaded, p.putting].into_iter().flatten() {
                if !self.vcpus.contains_key(&k) {
                    return Err(format!("CPU{c} names unknown {k:?}"));
                }
            }
            if p.putting.is_some() && p.putting == p.loaded {
                return Err(format!("CPU{c} puts the vCPU it loaded"));
            }
        }
        Ok(())
    }
}

/// The scheduler with the vCPUs it schedules: what the run loop's lock protects.
pub struct RunQueues {
    /// The pure policy; it owns every parked vCPU (one not held by a pCPU's loop).
    pub sched: Scheduler<Box<Vcpu>>,
    /// Each domain's vGIC (for wake-ups of blocked vCPUs).
    pub vgics: BTreeMap<DomId, Arc<Vgic>>,
    /// The wake epoch ([`crate::vgic::wake_epoch`]) last examined.
    pub seen_epoch: u64,
    /// pCPUs the scheduler wants kicked (bit n = pCPU n): sent, with the
    /// vGIC's [`crate::vgic::take_kicks`], by the next pCPU through its loop.
    pub kicks: u64,
}

impl RunQueues {
    /// Empty queues for `ncpus` pCPUs with `slice`-tick time slices.
    #[must_use]
    pub fn new(ncpus: usize, slice: u64) -> Self {
        Self {
            sched: Scheduler::new(ncpus, slice),
            vgics: BTreeMap::new(),
            seen_epoch: u64::MAX,
            kicks: 0,
        }
    }

    /// Queue a new runnable vCPU, kicking the pCPU whose queue takes it and
    /// every idle pCPU (so one picks it up even if the caller's pCPU keeps
    /// running its guest: PSCI CPU_ON from a vCPU that polls without trapping).
    pub fn push_back(&mut self, v: Box<Vcpu>) {
        let key = VcpuKey {
            dom: v.domid,
            idx: v.id,
        };
        match self.sched.add(key, v) {
            Ok(kicks) => self.kicks |= kicks,
            Err(_) => log::warn!("d{}v{}: queued twice (ignored)", key.dom, key.idx),
        }
    }

    /// Wake blocked vCPUs that have a deliverable interrupt (when the wake
    /// epoch moved since the last look). Returns the pCPUs to kick (bit mask).
    pub fn wake_pending(&mut self) -> u64 {
        let epoch = crate::vgic::wake_epoch();
        if epoch == self.seen_epoch {
            return 0;
        }
        self.seen_epoch = epoch;
        let mut kicks = 0u64;
        for key in self.sched.blocked() {
            let ready = self
                .vgics
                .get(&key.dom)
                .is_some_and(|g| g.has_deliverable(key.idx));
            if ready {
                kicks |= self.sched.wake(key);
            }
        }
        kicks
    }
}
