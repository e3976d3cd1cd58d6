//! Per-domain rate limiting of guest-triggered log lines.
//!
//! A guest must not be able to flood hv's console (issue 9 finding 10: every
//! trapped system register or `HVC #imm` printed a WARN line). Xen limits
//! guest-triggered messages (`XENLOG_G_*`) with `printk_ratelimit()`
//! (`xen/drivers/char/console.c`: a token bucket, `printk_ratelimit_ms` =
//! 5000, `printk_ratelimit_burst` = 10, "N messages suppressed" once lines
//! flow again). hv does the same, but per domain, so one noisy domain cannot
//! silence the lines of another.
//!
//! - [`RateLimit`]: the portable token bucket (time passed in, unit-tested).
//! - [`guest_log_ok`]`(domid)`: the per-domain table every guest-triggered
//!   log line goes through (the [`glog!`](crate::glog) macro); the time is
//!   read only when such a line is about to be printed, from the clock the
//!   arch layer registers at boot ([`set_clock`]; host tests set it with
//!   [`set_now_ns`]). Reading it at every guest exit would cost a trap to L0
//!   per exit when nested (KVM traps counter reads of a guest hypervisor
//!   without FEAT_ECV).

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

/// Lines allowed in a burst (Xen's `printk_ratelimit_burst`).
pub const BURST: u32 = 10;
/// Time in which a full burst is earned back (Xen's `printk_ratelimit_ms`).
pub const INTERVAL_NS: u64 = 5_000_000_000;

/// What [`RateLimit::check`] decided.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Print the line; `suppressed` lines were dropped since the last one printed.
    Allow {
        /// Lines dropped since the previous allowed one.
        suppressed: u64,
    },
    /// Drop the line (counted).
    Deny,
}

/// A token bucket: `burst` lines at once, one more every `interval / burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    burst: u32,
    interval_ns: u64,
    /// Credit in nanoseconds (one line costs `interval_ns / burst`).
    credit_ns: u64,
    last_ns: u64,
    missed: u64,
}

impl RateLimit {
    /// A full bucket of `burst` lines refilled over `interval_ns`.
    #[must_use]
    pub const fn new(burst: u32, interval_ns: u64) -> Self {
        let burst = if burst == 0 { 1 } else { burst };
        Self {
            burst,
            interval_ns,
            credit_ns: interval_ns,
            last_ns: 0,
            missed: 0,
        }
    }

    fn cost(&self) -> u64 {
        (self.interval_ns / u64::from(self.burst)).max(1)
    }

    /// May a line be printed at time `now_ns`? Time going backwards (another
    /// pCPU's older reading) earns nothing.
    pub fn check(&mut self, now_ns: u64) -> Verdict {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        let cap = self.cost().saturating_mul(u64::from(self.burst));
        self.credit_ns = self.credit_ns.saturating_add(elapsed).min(cap);
        if self.credit_ns >= self.cost() {
            self.credit_ns -= self.cost();
            let suppressed = core::mem::take(&mut self.missed);
            Verdict::Allow { suppressed }
        } else {
            self.missed = self.missed.saturating_add(1);
            Verdict::Deny
        }
    }

    /// Lines dropped since the last one allowed.
    #[must_use]
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

/// Slots of the per-domain table: domain `d` uses slot `d % SLOTS`. With more
/// than `SLOTS` live domains two may share a bucket (and so a rate); a
/// bucket is never reset by another domain's use, so no set of domains can
/// print more than `SLOTS` buckets' worth.
const SLOTS: usize = 64;

static TABLE: Mutex<[(u16, RateLimit); SLOTS]> =
    Mutex::new([(u16::MAX, RateLimit::new(BURST, INTERVAL_NS)); SLOTS]);

/// hv's idea of "now" for the limiter (ns since boot), set by the run loop.
static NOW_NS: AtomicU64 = AtomicU64::new(0);

/// The arch layer's clock (ns since boot), read only when a guest-triggered
/// line is about to be printed.
static CLOCK: spin::Once<fn() -> u64> = spin::Once::new();

/// Register the clock the limiter reads (the arch layer, once at boot).
pub fn set_clock(clock: fn() -> u64) {
    CLOCK.call_once(|| clock);
}

/// Record the current time (where no clock is registered: host tests).
pub fn set_now_ns(now: u64) {
    NOW_NS.fetch_max(now, Ordering::Relaxed);
}

fn now_ns() -> u64 {
    if let Some(clock) = CLOCK.get() {
        set_now_ns(clock());
    }
    NOW_NS.load(Ordering::Relaxed)
}

/// Check domain `domid`'s bucket at time `now`; the verdict.
pub fn check_domain(domid: u16, now: u64) -> Verdict {
    let mut t = TABLE.lock();
    let slot = &mut t[usize::from(domid) % SLOTS];
    if slot.0 == u16::MAX {
        // Unused (or forgotten): a full bucket from now.
        *slot = (domid, RateLimit::new(BURST, INTERVAL_NS));
        slot.1.last_ns = now;
    }
    slot.0 = domid;
    slot.1.check(now)
}

/// May a guest-triggered log line of domain `domid` be printed now? Prints
/// the "lines suppressed" note itself when lines were dropped before.
pub fn guest_log_ok(domid: u16) -> bool {
    match check_domain(domid, now_ns()) {
        Verdict::Allow { suppressed: 0 } => true,
        Verdict::Allow { suppressed } => {
            log::warn!("d{domid}: {suppressed} guest-triggered log lines suppressed");
            true
        }
        Verdict::Deny => false,
    }
}

/// A domain is gone: its slot starts afresh for the next domain that uses it
/// (unless another live domain used the slot since).
pub fn forget(domid: u16) {
    let mut t = TABLE.lock();
    let slot = &mut t[usize::from(domid) % SLOTS];
    if slot.0 == domid {
        slot.0 = u16::MAX;
    }
}

/// A guest-triggered log line: `glog!(domid, Warn, "fmt", args..)` prints
/// through `log` at that level only when the level is enabled and domain
/// `domid`'s rate limit allows it ([`guest_log_ok`]).
#[macro_export]
macro_rules! glog {
    ($domid:expr, $lvl:ident, $($arg:tt)+) => {{
        if log::log_enabled!(log::Level::$lvl) && $crate::ratelimit::guest_log_ok($domid) {
            log::log!(log::Level::$lvl, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn burst_then_one_per_cost_and_suppressed_count() {
        let mut r = RateLimit::new(10, 5000 * MS);
        for _ in 0..10 {
            assert_eq!(r.check(0), Verdict::Allow { suppressed: 0 });
        }
        for _ in 0..1000 {
            assert_eq!(r.check(0), Verdict::Deny);
        }
        assert_eq!(r.missed(), 1000);
        // 499 ms later: still nothing (one line costs 500 ms).
        assert_eq!(r.check(499 * MS), Verdict::Deny);
        assert_eq!(
            r.check(500 * MS),
            Verdict::Allow { suppressed: 1001 },
            "one token earned, the drops reported once"
        );
        assert_eq!(r.check(500 * MS), Verdict::Deny);
    }

    #[test]
    fn credit_is_capped_at_one_burst() {
        let mut r = RateLimit::new(10, 5000 * MS);
        let t = 3_600_000 * MS; // an hour of silence
        let allowed = (0..100)
            .filter(|_| matches!(r.check(t), Verdict::Allow { .. }))
            .count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let mut r = RateLimit::new(2, 1000 * MS);
        assert!(matches!(r.check(10_000 * MS), Verdict::Allow { .. }));
        assert!(matches!(r.check(10_000 * MS), Verdict::Allow { .. }));
        assert_eq!(r.check(0), Verdict::Deny);
        assert_eq!(r.check(10_000 * MS), Verdict::Deny);
        assert!(matches!(r.check(10_500 * MS), Verdict::Allow { .. }));
    }

    #[test]
    fn a_flood_prints_a_bounded_number_of_lines() {
        // 1,000,000 guest-triggered lines in 10 s: at most burst + 10 s / 500 ms.
        let mut r = RateLimit::new(BURST, INTERVAL_NS);
        let n = 1_000_000u64;
        let printed = (0..n)
            .filter(|i| matches!(r.check(i * 10 * 1000 * MS / n), Verdict::Allow { .. }))
            .count();
        assert!(printed <= 10 + 20, "{printed} lines printed");
        assert!(printed >= 10);
    }

    #[test]
    fn domains_have_their_own_buckets() {
        // Domids unlikely to be used by other tests in this process.
        let (a, b) = (4000u16, 4001u16);
        forget(a);
        forget(b);
        let now = 7 * MS;
        let a_ok = (0..50)
            .filter(|_| matches!(check_domain(a, now), Verdict::Allow { .. }))
            .count();
        assert_eq!(a_ok, BURST as usize, "a's burst, then silence");
        assert!(
            matches!(check_domain(b, now), Verdict::Allow { .. }),
            "b is not silenced by a's flood"
        );
        forget(a);
        assert!(
            matches!(check_domain(a, now), Verdict::Allow { .. }),
            "fresh after forget"
        );
    }
}
