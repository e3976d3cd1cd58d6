//! Scheduler decisions, host-tested.

use super::*;

const A: VcpuKey = VcpuKey { dom: 1, idx: 0 };
const B: VcpuKey = VcpuKey { dom: 1, idx: 1 };
const C: VcpuKey = VcpuKey { dom: 2, idx: 0 };

/// `next`, then park at once the vCPU a switch took the pCPU from (as the
/// run loop does after putting it).
fn next(s: &mut Scheduler<()>, cpu: usize, now: u64) -> Decision<()> {
    let d = s.next(cpu, now);
    if let Some(old) = s.cpus[cpu].putting {
        s.park(cpu, old, (), None).unwrap();
    }
    s.check().unwrap();
    d
}

#[test]
fn first_run_switches_then_continues_without_reload() {
    let mut s = Scheduler::<()>::new(1, 100);
    s.add(A, ()).unwrap();
    assert_eq!(next(&mut s, 0, 0), Decision::Switch { to: A, vcpu: () });
    assert_eq!(
        next(&mut s, 0, 10),
        Decision::Continue(A),
        "alone: no timer, no switch"
    );
    // Yield with nobody else: the same vCPU comes back without a load.
    s.yield_now(0);
    assert_eq!(next(&mut s, 0, 20), Decision::Continue(A));
    assert_eq!(s.stats.switches, 1);
    assert_eq!(s.stats.lazy_resumes, 1);
}

#[test]
fn yield_alternates_two_vcpus_of_one_domain() {
    let mut s = Scheduler::<()>::new(1, 1000);
    s.add(A, ()).unwrap();
    s.add(B, ()).unwrap();
    let mut ran = Vec::new();
    for t in 0..6 {
        match next(&mut s, 0, t) {
            Decision::Switch { to, .. } => ran.push(to),
            d => panic!("expected a switch, got {d:?}"),
        }
        s.yield_now(0);
    }
    assert_eq!(ran, [A, B, A, B, A, B]);
    assert_eq!(s.stats.switches, 6);
}

#[test]
fn time_slice_preempts_only_when_someone_waits() {
    let mut s = Scheduler::<()>::new(1, 100);
    s.add(A, ()).unwrap();
    assert_eq!(next(&mut s, 0, 0), Decision::Switch { to: A, vcpu: () });
    assert_eq!(s.slice_deadline(0), None, "nobody waits: no slice timer");
    s.add(B, ()).unwrap();
    assert_eq!(s.slice_deadline(0), Some(100));
    assert_eq!(next(&mut s, 0, 50), Decision::Continue(A), "slice not over");
    assert_eq!(next(&mut s, 0, 100), Decision::Switch { to: B, vcpu: () });
    assert_eq!(s.stats.preemptions, 1);
    assert_eq!(s.state(A), Some(RunState::Queued { queue: 0 }));
}

#[test]
fn blocked_vcpu_idles_the_pcpu_and_stays_loaded() {
    let mut s = Scheduler::<()>::new(1, 100);
    s.add(A, ()).unwrap();
    assert_eq!(next(&mut s, 0, 0), Decision::Switch { to: A, vcpu: () });
    s.block(0);
    assert_eq!(next(&mut s, 0, 1), Decision::Idle { until: None });
    assert_eq!(s.loaded(0), Some(A), "lazy: still loaded while idle");
    assert_eq!(s.wake(A), 1, "woken on the pCPU it is loaded on");
    assert_eq!(
        next(&mut s, 0, 2),
        Decision::Continue(A),
        "no reload after idle"
    );
    assert_eq!(s.stats.switches, 1);
}

#[test]
fn timer_deadline_of_unloaded_blocked_vcpu() {
    let mut s = Scheduler::<()>::new(1, 100);
    s.add(A, ()).unwrap();
    s.add(B, ()).unwrap();
    assert_eq!(next(&mut s, 0, 0), Decision::Switch { to: A, vcpu: () });
    s.block(0);
    assert_eq!(next(&mut s, 0, 1), Decision::Switch { to: B, vcpu: () });
    assert_eq!(s.loaded_on(A), None, "A was put");
    s.set_deadline(A, Some(500));
    s.block(0);
    assert_eq!(next(&mut s, 0, 2), Decision::Idle { until: Some(500) });
    assert!(s.expire(499).0.is_empty());
    assert_eq!(s.expire(500).0, vec![A]);
    assert_eq!(next(&mut s, 0, 501), Decision::Switch { to: A, vcpu: () });
}

#[test]
fn idle_pcpu_steals_but_not_a_vcpu_loaded_elsewhere() {
    let mut s = Scheduler::<()>::new(2, 100);
    s.add(A, ()).unwrap(); // queue 0
    s.add(B, ()).unwrap(); // queue 1
    s.add(C, ()).unwrap(); // queue 0
    assert_eq!(next(&mut s, 0, 0), Decision::Switch { to: A, vcpu: () });
    assert_eq!(next(&mut s, 1, 0), Decision::Switch { to: B, vcpu: () });
    // pCPU 1's vCPU blocks; C waits on pCPU 0's queue: pCPU 1 takes it.
    s.block(1);
    assert_eq!(next(&mut s, 1, 1), Decision::Switch { to: C, vcpu: () });
    assert_eq!(s.stats.migrations, 1);
    // A yields on pCPU 0 and is the only queued one there; pCPU 1 (C blocks)
    // must not take A: A is still loaded on pCPU 0.
    s.yield_now(0);
    s.block(1);
    assert_eq!(next(&mut s, 1, 2), Decision::Idle { until: None });
    assert_eq!(next(&mut s, 0, 2), Decision::Continue(A));
}

#[test]
fn wake_of_running_vcpu_names_its_pcpu_and_remove_cleans_up() {
    let mut s = Scheduler::<()>::new(2, 100);
    s.add(A, ()).unwrap();
    assert_eq!(next(&mut s, 0, 0), Decision::Switch { to: A, vcpu: () });
    assert_eq!(s.wake(A), 1);
    assert_eq!(s.wake(C), 0, "unknown vCPU");
    s.remove(A);
    assert_eq!(s.loaded(0), None);
    assert_eq!(next(&mut s, 0, 1), Decision::Idle { until: None });
}

/// The xl rounds' case (2 pCPUs, dom0's two vCPUs and a computing domU
/// vCPU): a dom0 vCPU woken by an IPI queues behind the domU's vCPU, and
/// takes the pCPU after the rate limit (a tenth of the slice), not at the
/// end of the domU's slice.
#[test]
fn woken_vcpu_preempts_after_the_rate_limit_not_the_slice() {
    let mut s = Scheduler::<()>::new(1, 100);
    s.add(C, ()).unwrap();
    s.add(A, ()).unwrap();
    assert_eq!(next(&mut s, 0, 0), Decision::Switch { to: C, vcpu: () });
    s.yield_now(0);
    assert_eq!(next(&mut s, 0, 1), Decision::Switch { to: A, vcpu: () });
    s.block(0); // A waits for an IPI
    assert_eq!(next(&mut s, 0, 2), Decision::Switch { to: C, vcpu: () });
    // Nobody waits: the domU's vCPU runs without a timer.
    assert_eq!(s.slice_deadline(0), None);
    assert_eq!(s.wake(A), 1);
    // Its timer: the rate limit after C started (2 + 10), not the slice end (102).
    assert_eq!(s.slice_deadline(0), Some(12));
    assert_eq!(
        next(&mut s, 0, 11),
        Decision::Continue(C),
        "C had < 1/10 slice"
    );
    assert_eq!(next(&mut s, 0, 12), Decision::Switch { to: A, vcpu: () });
    assert_eq!((s.stats.boosts, s.stats.preemptions), (1, 0));
    // A got the pCPU boosted: C, queued behind it, waits for A's whole slice.
    assert_eq!(s.slice_deadline(0), Some(112));
    assert_eq!(next(&mut s, 0, 50), Decision::Continue(A));
    assert_eq!(next(&mut s, 0, 112), Decision::Switch { to: C, vcpu: () });
    assert_eq!((s.stats.boosts, s.stats.preemptions), (1, 1));
}

/// A boosted vCPU does not preempt another boosted one before its slice
/// ends, and woken vCPUs queue in wake order ahead of preempted ones.
#[test]
fn boosted_vcpus_queue_in_wake_order_ahead_of_preempted_ones() {
    const D: VcpuKey = VcpuKey { dom: 2, idx: 1 };
    let mut s = Scheduler::<()>::new(1, 100);
    for k in [A, B, D] {
        s.add(k, ()).unwrap();
    }
    assert_eq!(next(&mut s, 0, 0), Decision::Switch { to: A, vcpu: () });
    s.block(0);
    assert_eq!(next(&mut s, 0, 1), Decision::Switch { to: B, vcpu: () });
    s.block(0);
    assert_eq!(next(&mut s, 0, 2), Decision::Switch { to: D, vcpu: () });
    s.add(C, ()).unwrap(); // a new, unboosted vCPU waits first
    s.wake(B);
    s.wake(A);
    assert_eq!(next(&mut s, 0, 12), Decision::Switch { to: B, vcpu: () });
    // B was boosted: A's boost does not preempt it at the rate limit.
    assert_eq!(s.slice_deadline(0), Some(112));
    assert_eq!(next(&mut s, 0, 30), Decision::Continue(B));
    assert_eq!(next(&mut s, 0, 112), Decision::Switch { to: A, vcpu: () });
    // Then C (queued first, unboosted), then D (preempted by B's boost).
    s.yield_now(0);
    assert_eq!(next(&mut s, 0, 113), Decision::Switch { to: C, vcpu: () });
    s.yield_now(0);
    assert_eq!(next(&mut s, 0, 114), Decision::Switch { to: D, vcpu: () });
}

/// The other half of the xl rounds' case: dom0's two vCPUs queued on pCPU 0
/// while a domU vCPU computes on pCPU 1 (no pCPU ever idles, so nobody
/// steals): at the end of its slice pCPU 1 takes the vCPU waiting on pCPU 0
/// and the preempted one waits on pCPU 1, so the three share both pCPUs.
#[test]
fn slice_end_takes_a_vcpu_waiting_on_another_pcpu() {
    let mut s = Scheduler::<()>::new(2, 100);
    s.add(A, ()).unwrap(); // queue 0
    s.add(C, ()).unwrap(); // queue 1
    assert_eq!(next(&mut s, 0, 0), Decision::Switch { to: A, vcpu: () });
    assert_eq!(next(&mut s, 1, 0), Decision::Switch { to: C, vcpu: () });
    assert_eq!(s.slice_deadline(1), None, "nobody waits anywhere");
    s.add(B, ()).unwrap(); // ties go to queue 0
    assert_eq!(s.state(B), Some(RunState::Queued { queue: 0 }));
    assert_eq!(s.slice_deadline(1), Some(100), "B waits on pCPU 0");
    assert_eq!(next(&mut s, 1, 50), Decision::Continue(C));
    assert_eq!(next(&mut s, 1, 100), Decision::Switch { to: B, vcpu: () });
    assert_eq!(s.state(C), Some(RunState::Queued { queue: 1 }));
    assert_eq!(s.state(B), Some(RunState::Running { cpu: 1 }));
    // pCPU 0's slice ends: it takes C, parked on pCPU 1's queue.
    assert_eq!(next(&mut s, 0, 100), Decision::Switch { to: C, vcpu: () });
    assert_eq!(s.state(A), Some(RunState::Queued { queue: 0 }));
    assert_eq!(s.stats.migrations, 2);
}

/// A preempted vCPU parked while another pCPU runs a vCPU with no slice
/// timer (its own queue was empty): that pCPU is kicked, so it arms its
/// slice timer and can take the parked one.
#[test]
fn parking_a_runnable_vcpu_kicks_a_pcpu_running_without_slice_timer() {
    let mut s = Scheduler::<()>::new(2, 100);
    s.add(A, ()).unwrap(); // queue 0
    s.add(C, ()).unwrap(); // queue 1
    assert_eq!(next(&mut s, 0, 0), Decision::Switch { to: A, vcpu: () });
    assert_eq!(next(&mut s, 1, 0), Decision::Switch { to: C, vcpu: () });
    assert_eq!(s.slice_deadline(1), None, "pCPU 1 enters C untimed");
    s.add(B, ()).unwrap(); // queue 0 (kicks pCPU 0 only)
    assert_eq!(s.next(0, 100).key(), Decision::Switch { to: B, vcpu: () });
    assert_eq!(s.park(0, A, (), None), Ok(0b10), "pCPU 1 is kicked");
    assert_eq!(s.slice_deadline(1), Some(100), "A waits for pCPU 1 too");
}
