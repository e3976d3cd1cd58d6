//! The vCPU scheduler: *decide* here, *do* in the run loop (`start.rs`).
//!
//! Shape borrowed from tock's `kernel/src/scheduler.rs`: [`Scheduler::next`]
//! returns a [`Decision`] and the run loop executes it; the policy is pure
//! (no arch access), so every choice is host-tested.
//!
//! Policy: per-pCPU FIFO run queues; a running vCPU keeps its pCPU until it
//! yields, blocks (WFI, `SCHEDOP_block`), stops, or its time slice ends
//! while another vCPU waits in the same queue; a pCPU whose queue is empty
//! takes the oldest vCPU from the longest other queue (migration), but never
//! one still loaded on another pCPU; with nothing to run the pCPU idles (WFI)
//! until an interrupt or the earliest virtual-timer deadline of a blocked
//! vCPU. **Lazy switching**: the vCPU loaded on a pCPU stays loaded while
//! the pCPU idles or while it is the only runnable one, so [`Decision::Continue`]
//! means "enter it again without `vcpu_load`"; its EL1, FP/SIMD and GIC
//! state are saved only when [`Decision::Switch`] gives the pCPU to another vCPU.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::domain::DomId;
use crate::vcpu::Vcpu;
use crate::vgic::Vgic;

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
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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

#[derive(Clone, Copy, Debug)]
struct Entry {
    state: RunState,
    /// The pCPU it is loaded on (its state lives in that pCPU's registers).
    loaded_on: Option<usize>,
}

/// What a pCPU does next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decision {
    /// Enter the vCPU loaded here again (no `vcpu_load`).
    Continue(VcpuKey),
    /// Put the vCPU loaded here (if any) and load and run `to`.
    Switch {
        /// The vCPU to run.
        to: VcpuKey,
    },
    /// Nothing to run: wait for an interrupt, or until `until` (counter ticks).
    Idle {
        /// Earliest virtual-timer deadline of a blocked, unloaded vCPU.
        until: Option<u64>,
    },
}

#[derive(Clone, Debug, Default)]
struct Pcpu {
    queue: VecDeque<VcpuKey>,
    running: Option<VcpuKey>,
    loaded: Option<VcpuKey>,
    slice_end: u64,
}

/// Counters of scheduler activity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedStats {
    /// `Switch` decisions (a `vcpu_load` follows).
    pub switches: u64,
    /// `Continue` decisions after the vCPU had stopped (yield/block) with nothing else to run.
    pub lazy_resumes: u64,
    /// vCPUs taken from another pCPU's queue.
    pub migrations: u64,
    /// Time slices that ended with another vCPU waiting.
    pub preemptions: u64,
    /// Loads of a vCPU on a pCPU whose last vCPU of that VMID was another
    /// one (the switches that need pv-tlb's `LastRan` plan).
    pub same_vmid_switches: u64,
}

/// The pure scheduler.
#[derive(Clone, Debug)]
pub struct Scheduler {
    cpus: Vec<Pcpu>,
    vcpus: BTreeMap<VcpuKey, Entry>,
    slice: u64,
    /// Activity counters.
    pub stats: SchedStats,
}

impl Scheduler {
    /// `ncpus` pCPUs, time slices of `slice` counter ticks.
    #[must_use]
    pub fn new(ncpus: usize, slice: u64) -> Self {
        Self {
            cpus: alloc::vec![Pcpu::default(); ncpus.max(1)],
            vcpus: BTreeMap::new(),
            slice: slice.max(1),
            stats: SchedStats::default(),
        }
    }

    /// Set the time-slice length (counter ticks).
    pub fn set_slice(&mut self, slice: u64) {
        self.slice = slice.max(1);
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

    /// The pCPU `key` is loaded on.
    #[must_use]
    pub fn loaded_on(&self, key: VcpuKey) -> Option<usize> {
        self.vcpus.get(&key).and_then(|e| e.loaded_on)
    }

    /// vCPUs known (runnable, running or blocked).
    pub fn keys(&self) -> impl Iterator<Item = VcpuKey> + '_ {
        self.vcpus.keys().copied()
    }

    fn shortest_queue(&self) -> usize {
        (0..self.cpus.len())
            .min_by_key(|&c| self.cpus[c].queue.len() + usize::from(self.cpus[c].running.is_some()))
            .unwrap_or(0)
    }

    /// A new runnable vCPU, queued on the least busy pCPU. Returns that pCPU.
    pub fn add(&mut self, key: VcpuKey) -> usize {
        let q = self.shortest_queue();
        self.cpus[q].queue.push_back(key);
        self.vcpus.insert(
            key,
            Entry {
                state: RunState::Queued { queue: q },
                loaded_on: None,
            },
        );
        q
    }

    /// Forget `key` (CPU_OFF, domain ended). The caller has put it if it was loaded.
    pub fn remove(&mut self, key: VcpuKey) {
        if let Some(e) = self.vcpus.remove(&key) {
            if let RunState::Queued { queue } = e.state {
                self.cpus[queue].queue.retain(|k| *k != key);
            }
        }
        for c in &mut self.cpus {
            if c.running == Some(key) {
                c.running = None;
            }
            if c.loaded == Some(key) {
                c.loaded = None;
            }
        }
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
    /// vCPU goes back to a run queue (the one of the pCPU it is loaded on,
    /// else the least busy). Returns the pCPU that should look again (to
    /// kick it), or `None` if nothing changed.
    pub fn wake(&mut self, key: VcpuKey) -> Option<usize> {
        let e = *self.vcpus.get(&key)?;
        match e.state {
            RunState::Blocked { .. } => {
                let q = e.loaded_on.unwrap_or_else(|| self.shortest_queue());
                self.cpus[q].queue.push_back(key);
                if let Some(e) = self.vcpus.get_mut(&key) {
                    e.state = RunState::Queued { queue: q };
                }
                Some(q)
            }
            RunState::Running { cpu } => Some(cpu),
            RunState::Queued { .. } => None,
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
    /// passed at `now`; returns them (the run loop injects their timer PPI).
    pub fn expire(&mut self, now: u64) -> Vec<VcpuKey> {
        let due: Vec<VcpuKey> = self
            .vcpus
            .iter()
            .filter(|(_, e)| matches!(e.state, RunState::Blocked { deadline: Some(d) } if d <= now))
            .map(|(k, _)| *k)
            .collect();
        for k in &due {
            let _ = self.wake(*k);
        }
        due
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
        (c.running.is_some() && !c.queue.is_empty()).then_some(c.slice_end)
    }

    /// Decide what `cpu` runs at time `now`.
    pub fn next(&mut self, cpu: usize, now: u64) -> Decision {
        self.ensure_cpu(cpu);
        if let Some(cur) = self.cpus[cpu].running {
            if self.cpus[cpu].queue.is_empty() || now < self.cpus[cpu].slice_end {
                return Decision::Continue(cur);
            }
            // Its slice is over and someone waits: to the back of the queue.
            self.stats.preemptions += 1;
            self.yield_now(cpu);
        }
        let picked = match self.cpus[cpu].queue.pop_front() {
            Some(k) => Some(k),
            None => self.steal(cpu),
        };
        let Some(key) = picked else {
            return Decision::Idle {
                until: self.earliest_deadline(),
            };
        };
        let loaded_here = self.cpus[cpu].loaded == Some(key);
        self.cpus[cpu].running = Some(key);
        self.cpus[cpu].slice_end = now.saturating_add(self.slice);
        if let Some(e) = self.vcpus.get_mut(&key) {
            e.state = RunState::Running { cpu };
        }
        if loaded_here {
            self.stats.lazy_resumes += 1;
            return Decision::Continue(key);
        }
        // The vCPU loaded here (if any) is put by the caller.
        if let Some(old) = self.cpus[cpu].loaded.replace(key) {
            if let Some(e) = self.vcpus.get_mut(&old) {
                e.loaded_on = None;
            }
        }
        if let Some(e) = self.vcpus.get_mut(&key) {
            e.loaded_on = Some(cpu);
        }
        self.stats.switches += 1;
        Decision::Switch { to: key }
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

    /// Take the oldest vCPU of the longest other queue that is not loaded
    /// on another pCPU.
    fn steal(&mut self, cpu: usize) -> Option<VcpuKey> {
        let mut order: Vec<usize> = (0..self.cpus.len()).filter(|&c| c != cpu).collect();
        order.sort_by_key(|&c| core::cmp::Reverse(self.cpus[c].queue.len()));
        for victim in order {
            let pos = self.cpus[victim].queue.iter().position(|k| {
                self.vcpus
                    .get(k)
                    .is_some_and(|e| e.loaded_on.is_none() || e.loaded_on == Some(cpu))
            });
            if let Some(p) = pos {
                self.stats.migrations += 1;
                return self.cpus[victim].queue.remove(p);
            }
        }
        None
    }
}

/// The scheduler with the vCPUs it schedules: what the run loop's lock protects.
pub struct RunQueues {
    /// The pure policy.
    pub sched: Scheduler,
    /// vCPUs not loaded on any pCPU (a loaded one lives with its pCPU's loop).
    pub parked: BTreeMap<VcpuKey, Box<Vcpu>>,
    /// Each domain's vGIC (for wake-ups of blocked vCPUs).
    pub vgics: BTreeMap<DomId, Arc<Vgic>>,
    /// The wake epoch ([`crate::vgic::wake_epoch`]) last examined.
    pub seen_epoch: u64,
}

impl RunQueues {
    /// Empty queues for `ncpus` pCPUs with `slice`-tick time slices.
    #[must_use]
    pub fn new(ncpus: usize, slice: u64) -> Self {
        Self {
            sched: Scheduler::new(ncpus, slice),
            parked: BTreeMap::new(),
            vgics: BTreeMap::new(),
            seen_epoch: u64::MAX,
        }
    }

    /// Queue a new runnable vCPU (kicking idle pCPUs so one picks it up).
    pub fn push_back(&mut self, v: Box<Vcpu>) {
        let key = VcpuKey {
            dom: v.domid,
            idx: v.id,
        };
        if self.sched.state(key).is_some() {
            log::warn!("d{}v{}: queued twice (ignored)", key.dom, key.idx);
            return;
        }
        self.parked.insert(key, v);
        self.sched.add(key);
        crate::vgic::request_kicks(u64::MAX);
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
                if let Some(c) = self.sched.wake(key) {
                    if c < 64 {
                        kicks |= 1 << c;
                    }
                }
            }
        }
        kicks
    }
}
