//! Facts about the machine the privileged interfaces report (`sysctl
//! physinfo`, `cputopoinfo`, `XENVER_commandline`), recorded once by the boot
//! CPU ([`set_host_facts`]) before any guest runs, as Xen's `saved_cmdline`
//! and `num_online_cpus()` are globals there.

use spin::Once;

/// What the boot CPU learned that hypercalls report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// Physical CPUs online (Xen's `num_online_cpus()`).
    pub nr_cpus: u32,
    /// hv's command line (Xen's `saved_cmdline`).
    pub cmdline: &'static str,
    /// One past the highest host RAM frame number (Xen's `max_page`; `physinfo`
    /// reports `max_mfn` = this - 1).
    pub ram_end_pfn: u64,
}

impl HostFacts {
    /// What a host test (or a call before boot recorded anything) sees: one
    /// CPU, an empty command line, no RAM bound.
    pub const UNKNOWN: Self = Self {
        nr_cpus: 1,
        cmdline: "",
        ram_end_pfn: 0,
    };
}

static FACTS: Once<HostFacts> = Once::new();

/// Record the host facts (first call wins; the boot CPU calls it once all
/// CPUs are online).
pub fn set_host_facts(facts: HostFacts) {
    FACTS.call_once(|| facts);
}

/// The recorded facts, or [`HostFacts::UNKNOWN`].
#[must_use]
pub fn host_facts() -> HostFacts {
    FACTS.get().copied().unwrap_or(HostFacts::UNKNOWN)
}
