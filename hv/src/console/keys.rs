//! hv's debug keys: what a byte typed while hv has the serial input prints.
//!
//! After Xen's `xen/common/keyhandler.c` (`handle_keypress`, the key table,
//! `'h'` "showing installed handlers"): Xen's letters where Xen has one for
//! the same thing (`h` help, `q` domain info, `r` run queues, `m` memory,
//! `p`/`P` print/reset performance counters, `*` everything); hv's own for
//! what Xen lacks (`v` the nesting verdict and TLB policy). Each key
//! prints `hv: '<k>' pressed -> <what>` first, as Xen's handlers do. Keys
//! without a handler print a one-line hint (Xen ignores them silently).

use core::fmt::Write;
use core::sync::atomic::Ordering;

use memops::{FrameTable, TableMem};
use pv_tlb::Policy;

use super::{Console, Input};
use crate::arch::PhysMem;
use crate::sched::RunState;

/// The read-only parts of the world the keys print.
pub struct WorldInfo<'a> {
    /// The guest page pool.
    pub pool: &'a FrameTable,
    /// The TLB policy hv plans under.
    pub policy: Policy,
    /// VMIDs in use.
    pub vmids_in_use: usize,
    /// hv's heap: free bytes.
    pub heap_free: usize,
    /// The deferred-flush gatherer's counters.
    pub deferred: pv_tlb::DeferredStats,
}

/// One debug key.
pub struct Key {
    /// The byte.
    pub key: u8,
    /// What it does (`h` prints it).
    pub desc: &'static str,
}

/// Every key hv handles, in `h`'s order.
pub const KEYS: &[Key] = &[
    Key {
        key: b'h',
        desc: "display this help",
    },
    Key {
        key: b'm',
        desc: "memory info (guest page pool, hv's heap and frames)",
    },
    Key {
        key: b'p',
        desc: "print hv's counters (TLBIs by kind, p2m ops, exits, hypercalls, scheduler, console)",
    },
    Key {
        key: b'P',
        desc: "reset hv's counters",
    },
    Key {
        key: b'q',
        desc: "dump domain info (id, RAM, vCPUs, state)",
    },
    Key {
        key: b'r',
        desc: "dump run queues (where each vCPU is)",
    },
    Key {
        key: b'v',
        desc: "nesting verdict and TLB policy",
    },
    Key {
        key: b'*',
        desc: "print all diagnostics",
    },
];

/// Run the handler of `key` ([`KEYS`]).
pub fn handle<M: PhysMem + TableMem>(key: u8, con: &Console, w: &mut Input<'_, M>) {
    match key {
        b'h' => help(w.out),
        b'm' => memory(w),
        b'p' => counters(con, w),
        b'P' => {
            let _ = writeln!(w.out, "hv: 'P' pressed -> resetting hv's counters");
            crate::counters::reset_counters();
        }
        b'q' => domains(w),
        b'r' => runqueues(w),
        b'v' => platform(w),
        b'*' => {
            let _ = writeln!(
                w.out,
                "hv: '*' pressed -> firing all diagnostic keyhandlers"
            );
            memory(w);
            counters(con, w);
            domains(w);
            runqueues(w);
            platform(w);
        }
        // Line endings a terminal sends are not keys.
        b'\r' | b'\n' => {}
        other => {
            let _ = writeln!(
                w.out,
                "hv: key {:?} ({other:#04x}) has no handler ('h' lists them)",
                char::from(other)
            );
        }
    }
}

fn help(out: &mut dyn Write) {
    let _ = writeln!(out, "hv: 'h' pressed -> showing installed handlers");
    for k in KEYS {
        let _ = writeln!(
            out,
            "hv:  key '{}' (ascii '{:02x}') => {}",
            char::from(k.key),
            k.key,
            k.desc
        );
    }
}

fn memory<M>(w: &mut Input<'_, M>) {
    let i = &w.info;
    let _ = writeln!(w.out, "hv: 'm' pressed -> memory info");
    let _ = writeln!(
        w.out,
        "hv:  guest page pool: {} of {} frames free ({} MiB of {} MiB)",
        i.pool.free_frames(),
        i.pool.total_frames(),
        i.pool.free_frames() >> 8,
        i.pool.total_frames() >> 8
    );
    let frames = crate::mm::frame::try_frames().map(|f| f.lock().free_count());
    match frames {
        Some(n) => {
            let _ = writeln!(w.out, "hv:  hv's frame allocator: {n} frames free");
        }
        None => {
            let _ = writeln!(w.out, "hv:  hv's frame allocator: not set up");
        }
    }
    let _ = writeln!(
        w.out,
        "hv:  hv's heap: {} KiB free; VMIDs in use: {}",
        i.heap_free >> 10,
        i.vmids_in_use
    );
}

fn counters<M>(con: &Console, w: &mut Input<'_, M>) {
    let _ = writeln!(w.out, "hv: 'p' pressed -> hv's counters");
    let c = crate::counters::counters();
    let mut line = alloc::string::String::new();
    for (k, n) in pv_tlb::TlbOpKind::ALL.iter().zip(c.iter()) {
        let _ = write!(line, " {}={n}", k.mnemonic());
    }
    let _ = writeln!(w.out, "hv:  tlbi:{line}");
    let _ = writeln!(
        w.out,
        "hv:  p2m_ops={} plans={} guest_exits={} hypercalls={}",
        c[8], c[9], c[10], c[11]
    );
    let _ = writeln!(
        w.out,
        "hv:  {}",
        crate::counters::window_line(&w.info.deferred)
    );
    if let Some(rq) = w.runq {
        let s = rq.lock().sched.stats;
        let _ = writeln!(
            w.out,
            "hv:  sched: switches={} same_vmid_switches={} lazy_resumes={} migrations={} preemptions={} boosts={}",
            s.switches, s.same_vmid_switches, s.lazy_resumes, s.migrations, s.preemptions, s.boosts
        );
    }
    let _ = writeln!(
        w.out,
        "hv:  id-regs: reads={} writes={}",
        crate::idregs::READS.load(Ordering::Relaxed),
        crate::idregs::WRITES.load(Ordering::Relaxed)
    );
    let s = con.stats;
    let _ = writeln!(
        w.out,
        "hv:  console: rx={} to_dom0={} to_rings={} dropped_dom0_full={} dropped_ring_full={} dropped_no_domain={} keys={} switches={}",
        s.rx_bytes,
        s.to_dom0,
        s.to_rings,
        s.dropped_dom0,
        s.dropped_ring,
        s.dropped_gone,
        s.keys,
        s.switches
    );
}

fn domains<M: PhysMem + TableMem>(w: &mut Input<'_, M>) {
    let _ = writeln!(w.out, "hv: 'q' pressed -> dumping domain info");
    for d in w.domains.iter() {
        let state = match (d.ending, d.pause_count) {
            (Some(r), _) => alloc::format!("ending ({r})"),
            (None, 0) => "running".into(),
            (None, n) => alloc::format!("paused ({n})"),
        };
        let _ = writeln!(
            w.out,
            "hv:  d{}: {}RAM {} MiB ({} pages), vCPUs {} ({} live), {}, console ring {}",
            d.id,
            if d.privileged { "privileged, " } else { "" },
            d.ram_bytes() >> 20,
            d.physmap().tot_pages(),
            d.max_vcpus,
            d.live_vcpus,
            state,
            if d.xen.console_ring.is_some() {
                "yes"
            } else {
                "no"
            }
        );
    }
    if w.domains.is_empty() {
        let _ = writeln!(w.out, "hv:  no domains");
    }
}

fn runqueues<M>(w: &mut Input<'_, M>) {
    let _ = writeln!(w.out, "hv: 'r' pressed -> dumping run queues");
    let Some(rq) = w.runq else {
        let _ = writeln!(w.out, "hv:  scheduler not available here");
        return;
    };
    let rq = rq.lock();
    let s = &rq.sched;
    for cpu in 0..s.ncpus() {
        match s.loaded(cpu) {
            Some(k) => {
                let _ = writeln!(w.out, "hv:  CPU{cpu}: d{}v{} loaded", k.dom, k.idx);
            }
            None => {
                let _ = writeln!(w.out, "hv:  CPU{cpu}: nothing loaded");
            }
        }
    }
    let mut keys: alloc::vec::Vec<_> = s.keys().collect();
    keys.sort_unstable();
    for k in keys {
        let st = match s.state(k) {
            Some(RunState::Running { cpu }) => alloc::format!("running on CPU{cpu}"),
            Some(RunState::Queued { queue }) => alloc::format!("runnable, queued on CPU{queue}"),
            Some(RunState::Blocked { deadline: Some(t) }) => {
                alloc::format!("blocked (timer at {t})")
            }
            Some(RunState::Blocked { deadline: None }) => "blocked".into(),
            None => "unknown".into(),
        };
        let _ = writeln!(w.out, "hv:  d{}v{}: {st}", k.dom, k.idx);
    }
}

fn platform<M>(w: &mut Input<'_, M>) {
    let _ = writeln!(w.out, "hv: 'v' pressed -> nesting verdict and TLB policy");
    match crate::options::boot_facts() {
        Some(f) => {
            let _ = writeln!(w.out, "hv:  platform: {}", f.nested);
            let _ = writeln!(
                w.out,
                "hv:  FEAT_TLBIRANGE: {}",
                if f.has_tlbi_range { "yes" } else { "no" }
            );
        }
        None => {
            let _ = writeln!(w.out, "hv:  platform: not probed");
        }
    }
    let _ = writeln!(w.out, "hv:  tlb policy: {:?}", w.info.policy);
}
