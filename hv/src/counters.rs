//! hv's counters (`struct hv_counters` of `HVOP_get_counters`, DESIGN.md
//! "Counters"): the TLB ops by kind and flush plans ([`crate::tlb::STATS`]),
//! stage-2 operations, guest exits and hypercalls. The run loop and the
//! hypercall layer count; `hv_op` and the power-off line read them.

use core::sync::atomic::{AtomicU64, Ordering};

use pv_tlb::TlbOpKind;

/// Stage-2 operations recorded (memory_op glue adds to it).
pub static P2M_OPS: AtomicU64 = AtomicU64::new(0);
/// Guest exits handled (all pCPUs).
pub static GUEST_EXITS: AtomicU64 = AtomicU64::new(0);
/// Xen hypercalls handled (all pCPUs).
pub static HYPERCALLS: AtomicU64 = AtomicU64::new(0);

/// What closed a coalescing window that had invalidations pending (index =
/// [`WindowClose`]); the power-off counters line and the `p` key print them.
pub static WINDOW_CLOSES: [AtomicU64; WindowClose::ALL.len()] =
    [const { AtomicU64::new(0) }; WindowClose::ALL.len()];

/// The exit (or event) that closed a caller's coalescing window.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WindowClose {
    /// A hypercall that is not a coalescable remove.
    Hypercall,
    /// A physical IRQ/FIQ exit.
    Irq,
    /// WFI/WFE.
    Wfx,
    /// A stage-2 abort (MMIO emulation included).
    Abort,
    /// A trapped system register.
    SysReg,
    /// PSCI (HVC #0 / SMC) or any other exit.
    Other,
    /// One of the caller's vCPUs was put (descheduled).
    Put,
    /// A domctl closed it itself (cacheflush).
    Domctl,
}

impl WindowClose {
    /// Every kind, in counter order.
    pub const ALL: [WindowClose; 8] = [
        WindowClose::Hypercall,
        WindowClose::Irq,
        WindowClose::Wfx,
        WindowClose::Abort,
        WindowClose::SysReg,
        WindowClose::Other,
        WindowClose::Put,
        WindowClose::Domctl,
    ];

    /// Its name in counter lines.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            WindowClose::Hypercall => "hypercall",
            WindowClose::Irq => "irq",
            WindowClose::Wfx => "wfx",
            WindowClose::Abort => "abort",
            WindowClose::SysReg => "sysreg",
            WindowClose::Other => "other",
            WindowClose::Put => "put",
            WindowClose::Domctl => "domctl",
        }
    }

    /// Count one close that flushed something.
    pub fn count(self) {
        WINDOW_CLOSES[self as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The kinds of physical interrupt an IRQ exit handled (bit masks), for
/// [`IRQ_CLOSE_CLASSES`].
pub mod irq_class {
    /// The running vCPU's virtual timer.
    pub const VTIMER: u8 = 1 << 0;
    /// A hardware SPI (injected into its owner's vGIC).
    pub const SPI: u8 = 1 << 1;
    /// hv's own (EL2) timer.
    pub const HYP_TIMER: u8 = 1 << 2;
    /// hv's kick SGI (another pCPU made an interrupt pending).
    pub const KICK: u8 = 1 << 3;
    /// The vGIC maintenance interrupt.
    pub const MAINTENANCE: u8 = 1 << 4;
    /// The console UART.
    pub const UART: u8 = 1 << 5;
    /// Names, bit order.
    pub const NAMES: [&str; 6] = ["vtimer", "spi", "hyp_timer", "kick", "maint", "uart"];
}

/// Per kind of physical interrupt ([`irq_class`] bit order): IRQ exits
/// that closed a window with invalidations pending and handled that kind.
pub static IRQ_CLOSE_CLASSES: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

/// IRQ exits that kept a window with invalidations pending open
/// ([`pv_tlb::irq_exit_closes_window`]).
pub static WINDOW_KEPT_BY_IRQ: AtomicU64 = AtomicU64::new(0);

/// Count the kinds in `seen` (an [`irq_class`] mask) of a closing IRQ exit.
pub fn count_irq_classes(seen: u8) {
    for (i, c) in IRQ_CLOSE_CLASSES.iter().enumerate() {
        if seen & (1 << i) != 0 {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `window_closes: hypercall=.. irq=.. ...` followed by the gatherer's
/// [`pv_tlb::DeferredStats`] (why plans ran, how scattered their sets were).
#[must_use]
pub fn window_line(d: &pv_tlb::DeferredStats) -> alloc::string::String {
    use core::fmt::Write;
    let mut s = alloc::string::String::from("window_closes:");
    for k in WindowClose::ALL {
        let _ = write!(
            s,
            " {}={}",
            k.name(),
            WINDOW_CLOSES[k as usize].load(Ordering::Relaxed)
        );
    }
    let _ = write!(
        s,
        " kept_by_irq={}",
        WINDOW_KEPT_BY_IRQ.load(Ordering::Relaxed)
    );
    s.push_str(" irq_kinds:");
    for (name, c) in irq_class::NAMES.iter().zip(IRQ_CLOSE_CLASSES.iter()) {
        let _ = write!(s, " {name}={}", c.load(Ordering::Relaxed));
    }
    let _ = write!(
        s,
        " deferred: recorded={} plans={} at_window_close={} at_hypercall_end={} forced_by_map={} forced_by_cap={} explicit={} planned_pages={} planned_runs={} sorted_runs={} span_pages={}",
        d.recorded,
        d.plans,
        d.at_window_close,
        d.at_hypercall_end,
        d.forced_by_map,
        d.forced_by_cap,
        d.explicit,
        d.planned_pages,
        d.planned_runs,
        d.planned_sorted_runs,
        d.planned_span_pages
    );
    s
}

/// `struct hv_counters` as of now.
#[must_use]
pub fn counters() -> [u64; 12] {
    let mut c = [0u64; 12];
    for (i, k) in TlbOpKind::ALL.iter().enumerate() {
        c[i] = crate::tlb::STATS.count(*k);
    }
    c[8] = P2M_OPS.load(Ordering::Relaxed);
    c[9] = crate::tlb::STATS.plans();
    c[10] = GUEST_EXITS.load(Ordering::Relaxed);
    c[11] = HYPERCALLS.load(Ordering::Relaxed);
    c
}

/// Zero every counter.
pub fn reset_counters() {
    crate::tlb::STATS.reset();
    P2M_OPS.store(0, Ordering::Relaxed);
    GUEST_EXITS.store(0, Ordering::Relaxed);
    HYPERCALLS.store(0, Ordering::Relaxed);
    for c in WINDOW_CLOSES.iter().chain(IRQ_CLOSE_CLASSES.iter()) {
        c.store(0, Ordering::Relaxed);
    }
    WINDOW_KEPT_BY_IRQ.store(0, Ordering::Relaxed);
}
