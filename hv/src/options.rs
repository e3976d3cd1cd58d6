//! hv's own command line.
//!
//! The command line comes from `/chosen/xen,xen-bootargs` (else `/chosen/bootargs`),
//! see [`crate::bootinfo::BootInfo::cmdline`]. It is a list of `key=value` words
//! separated by spaces:
//!
//! | word | values | default |
//! |---|---|---|
//! | `loglvl=` | `<level>[/<rate-limited level>]`, level one of Xen's `none`, `error`, `warning`, `info`, `debug`, `all` (hv also takes `off`, `warn`, `trace`) | `info` |
//! | `tlb=` | `xen-compat`, `targeted`, `auto` | `auto` |
//! | `nested=` | `auto`, `on`, `off` | `auto` |
//! | `console=` | Xen's comma list; hv's only console is `dtuart` (`none` silences nothing) | `dtuart` |
//! | `dtuart=` | the console's path or alias (`serial0`, `/pl011@9000000`), read by `bootinfo` | `stdout-path` |
//! | `dom0_mem=` | a size, `<n>[B|K|M|G|T]` (no suffix: KiB, as Xen's `parse_size_and_unit`), or x86 Xen's list `<size>,max:<size>,min:<size>` | 16M |
//! | `dom0_max_vcpus=` | `<n>` (Arm Xen; `0` = one per physical CPU) or x86 Xen's `<min>-<max>` | 1 |
//!
//! `dom0_mem=` and `dom0_max_vcpus=` are Xen's names (docs/misc/xen-command-line.pandoc) for
//! the control domain's RAM and vCPUs. Arm Xen 4.20 reads `dom0_mem` with
//! `parse_size_and_unit` only (xen/arch/arm/domain_build.c `parse_dom0_mem`: a trailing
//! `,max:...` is reported as invalid but the leading size is kept) and `dom0_max_vcpus` as a
//! plain integer (`integer_param`, 0 = every CPU of cpupool0, `dom0_max_vcpus()`); x86 Xen
//! (xen/arch/x86/dom0_build.c `parse_dom0_mem`, `parse_dom0_max_vcpus`) also takes the list
//! and range forms, which DTBs written for x86 habits carry, so hv accepts both
//! ([`HvOptions::dom0_mem_bytes`], [`HvOptions::dom0_vcpus`]).
//! (hv also still reads `mem=`, `vcpus=` and `dom0` from a module's own
//! bootargs, and removes them from what the guest sees; dom0less domains use their node's
//! `memory` and `cpus` properties.)
//!
//! Unknown words and bad values are reported through a callback (the boot code
//! logs them as warnings) and never stop the boot.

use log::LevelFilter;
use nested_detect::{Decision, Override};
use pv_tlb::plan::{Policy, PolicyChoice};
use spin::Once;

/// Which TLB invalidation policy hv uses (see the `pv-tlb` crate).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum TlbPolicyChoice {
    /// Flush like upstream Xen: a full stage-2 flush per p2m operation.
    XenCompat,
    /// Invalidate only what changed (IPA / range TLBIs).
    Targeted,
    /// Let hv choose from what it detects at boot (nested or not).
    #[default]
    Auto,
}

/// Whether hv assumes it runs nested under another hypervisor.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum NestedChoice {
    /// Decide from the evidence gathered at boot (`nested-detect`).
    #[default]
    Auto,
    /// Assume hv runs nested.
    On,
    /// Assume hv runs on bare metal.
    Off,
}

/// The parsed command line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HvOptions {
    /// Maximum log level always printed (`loglvl=<level>`).
    pub log_level: LevelFilter,
    /// Xen's upper threshold (`loglvl=<level>/<rate-limited level>`): messages above
    /// [`HvOptions::log_level`] up to this one are printed rate-limited
    /// (xen/drivers/char/console.c `_parse_loglvl`; never below `log_level`).
    pub log_level_rate_limited: LevelFilter,
    /// TLB policy (`tlb=`).
    pub tlb: TlbPolicyChoice,
    /// Nested-virtualization assumption (`nested=`).
    pub nested: NestedChoice,
    /// The control domain's RAM in bytes (`dom0_mem=<size>`, the list's bare size).
    pub dom0_mem: Option<u64>,
    /// `dom0_mem=...,max:<size>` (x86 Xen's list form).
    pub dom0_mem_max: Option<u64>,
    /// `dom0_mem=...,min:<size>` (x86 Xen's list form).
    pub dom0_mem_min: Option<u64>,
    /// The control domain's vCPUs when `dom0_max_vcpus=<n>` names a fixed number
    /// (`n > 0`); see [`HvOptions::dom0_vcpus`] for Xen's full rule.
    pub dom0_max_vcpus: Option<u32>,
    /// `dom0_max_vcpus=` as written: `(min, max)`; `<n>` is `(n, n)`, `0` is
    /// `(0, 0)` (every CPU), `<min>-<max>` x86 Xen's range.
    pub dom0_vcpus_range: Option<(u32, u32)>,
}

impl Default for HvOptions {
    fn default() -> Self {
        Self {
            log_level: LevelFilter::Info,
            log_level_rate_limited: LevelFilter::Info,
            tlb: TlbPolicyChoice::Auto,
            nested: NestedChoice::Auto,
            dom0_mem: None,
            dom0_mem_max: None,
            dom0_mem_min: None,
            dom0_max_vcpus: None,
            dom0_vcpus_range: None,
        }
    }
}

/// Something in the command line hv did not understand; reported, never fatal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OptionWarning<'a> {
    /// A word hv does not know (it may be meant for Xen or someone else).
    UnknownWord(&'a str),
    /// A known key with a value hv does not accept.
    BadValue {
        /// The key (`loglvl`, `tlb`, `nested`).
        key: &'a str,
        /// The rejected value.
        value: &'a str,
    },
}

impl core::fmt::Display for OptionWarning<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OptionWarning::UnknownWord(w) => write!(f, "ignoring unknown option '{w}'"),
            OptionWarning::BadValue { key, value } => {
                write!(f, "ignoring bad value '{value}' for option '{key}'")
            }
        }
    }
}

impl HvOptions {
    /// Parse `cmdline`, calling `warn` for every word that is not understood.
    /// Later words override earlier ones.
    pub fn parse<'a>(cmdline: &'a str, mut warn: impl FnMut(OptionWarning<'a>)) -> Self {
        let mut opts = Self::default();
        for word in cmdline.split_ascii_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                warn(OptionWarning::UnknownWord(word));
                continue;
            };
            let ok = match key {
                "loglvl" => parse_loglvl(value).map(|(l, u)| {
                    opts.log_level = l;
                    opts.log_level_rate_limited = u;
                }),
                "tlb" => match value {
                    "xen-compat" => Some(TlbPolicyChoice::XenCompat),
                    "targeted" => Some(TlbPolicyChoice::Targeted),
                    "auto" => Some(TlbPolicyChoice::Auto),
                    _ => None,
                }
                .map(|t| opts.tlb = t),
                "nested" => match value {
                    "auto" => Some(NestedChoice::Auto),
                    "on" => Some(NestedChoice::On),
                    "off" => Some(NestedChoice::Off),
                    _ => None,
                }
                .map(|n| opts.nested = n),
                // The console device (Xen's dtuart=): read by bootinfo.
                "dtuart" => Some(()).filter(|()| !value.is_empty()),
                // Xen's console list (drivers/char/console.c): hv's only console is
                // the DT UART; `none` is accepted (hv keeps its UART for errors).
                "console" => value
                    .split(',')
                    .all(|c| matches!(c, "dtuart" | "none"))
                    .then_some(()),
                "dom0_mem" => parse_dom0_mem(value).map(|(amount, min, max)| {
                    opts.dom0_mem = amount;
                    opts.dom0_mem_min = min;
                    opts.dom0_mem_max = max;
                }),
                "dom0_max_vcpus" => parse_vcpu_range(value).map(|(lo, hi)| {
                    opts.dom0_vcpus_range = Some((lo, hi));
                    opts.dom0_max_vcpus = (lo == hi && hi > 0).then_some(hi);
                }),
                _ => {
                    warn(OptionWarning::UnknownWord(word));
                    continue;
                }
            };
            if ok.is_none() {
                warn(OptionWarning::BadValue { key, value });
            }
        }
        opts
    }
}

impl NestedChoice {
    /// The `nested-detect` override this choice stands for.
    #[must_use]
    pub fn as_override(self) -> Override {
        match self {
            NestedChoice::Auto => Override::Auto,
            NestedChoice::On => Override::On,
            NestedChoice::Off => Override::Off,
        }
    }
}

impl TlbPolicyChoice {
    /// The `pv-tlb` choice this stands for.
    #[must_use]
    pub fn as_pv_tlb(self) -> PolicyChoice {
        match self {
            TlbPolicyChoice::XenCompat => PolicyChoice::XenCompat,
            TlbPolicyChoice::Targeted => PolicyChoice::Targeted,
            TlbPolicyChoice::Auto => PolicyChoice::Auto,
        }
    }
}

/// What the boot CPU found out about the platform; set once by the arch
/// layer ([`set_boot_facts`]) before portable code runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootFacts {
    /// The nesting verdict (`nested-detect`, with `nested=` applied).
    pub nested: Decision,
    /// FEAT_TLBIRANGE (`ID_AA64ISAR0_EL1.TLB == 0b0010`).
    pub has_tlbi_range: bool,
}

static BOOT_FACTS: Once<BootFacts> = Once::new();

/// Record the boot facts (first call wins).
pub fn set_boot_facts(facts: BootFacts) {
    BOOT_FACTS.call_once(|| facts);
}

/// The boot facts, once the arch layer has set them (never on the host).
#[must_use]
pub fn boot_facts() -> Option<&'static BootFacts> {
    BOOT_FACTS.get()
}

impl HvOptions {
    /// The TLB policy for `tlb=` given what boot found out (`pv_tlb::plan::resolve`).
    /// Without facts (host tests): not nested, no range TLBIs.
    #[must_use]
    pub fn tlb_policy(&self, facts: Option<&BootFacts>) -> Policy {
        let (nested, range) = facts.map_or((false, false), |f| {
            (f.nested.verdict.is_nested(), f.has_tlbi_range)
        });
        pv_tlb::plan::resolve(self.tlb.as_pv_tlb(), nested, range)
    }
}

/// A size as Xen's `parse_size_and_unit` reads it (xen/common/lib.c): a decimal number with
/// an optional `B`, `K`, `M`, `G` or `T` suffix; no suffix means KiB.
fn parse_xen_size(value: &str) -> Option<u64> {
    let (num, shift) = match value.as_bytes().last()? {
        b'B' | b'b' => (&value[..value.len() - 1], 0),
        b'K' | b'k' => (&value[..value.len() - 1], 10),
        b'M' | b'm' => (&value[..value.len() - 1], 20),
        b'G' | b'g' => (&value[..value.len() - 1], 30),
        b'T' | b't' => (&value[..value.len() - 1], 40),
        _ => (value, 10),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn parse_level(value: &str) -> Option<LevelFilter> {
    Some(match value {
        "none" | "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" | "warning" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        // Xen's `all` is its most verbose level (everything up to
        // XENLOG_DEBUG, xen/drivers/char/console.c `_parse_loglvl`): hv's
        // `debug`. hv's per-exit `trace` lines have no Xen counterpart and are
        // asked for by name only (the peer's `loglvl=all` printed thousands of
        // them per dom0 boot).
        "debug" | "all" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return None,
    })
}

/// Xen's `loglvl=<level>[/<upper>]` (xen/drivers/char/console.c `_parse_loglvl`): the
/// upper (rate-limited) threshold defaults to, and is never below, the level.
fn parse_loglvl(value: &str) -> Option<(LevelFilter, LevelFilter)> {
    let (lower, upper) = match value.split_once('/') {
        Some((l, u)) => (parse_level(l)?, parse_level(u)?),
        None => {
            let l = parse_level(value)?;
            (l, l)
        }
    };
    Some((lower, upper.max(lower)))
}

/// `dom0_mem=`: Arm Xen's single size, or x86 Xen's comma list of `<size>`,
/// `min:<size>`, `max:<size>` (xen/arch/x86/dom0_build.c `parse_dom0_mem`;
/// negative sizes, x86's "all but", are not taken). Gives `(amount, min, max)`;
/// `None` for anything unreadable or a zero size.
fn parse_dom0_mem(value: &str) -> Option<(Option<u64>, Option<u64>, Option<u64>)> {
    let (mut amount, mut min, mut max) = (None, None, None);
    for item in value.split(',') {
        let (slot, size) = if let Some(v) = item.strip_prefix("min:") {
            (&mut min, v)
        } else if let Some(v) = item.strip_prefix("max:") {
            (&mut max, v)
        } else {
            (&mut amount, item)
        };
        *slot = Some(parse_xen_size(size).filter(|&b| b > 0)?);
    }
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            return None;
        }
    }
    Some((amount, min, max))
}

/// `dom0_max_vcpus=`: Arm Xen's `<n>` (`integer_param`; 0 = every CPU), or x86
/// Xen's `<min>-<max>` (either side may be omitted: `<min>-`, `-<max>`;
/// xen/arch/x86/dom0_build.c `parse_dom0_max_vcpus`). Gives `(min, max)`, max
/// 0 for "no upper limit" in the range form.
fn parse_vcpu_range(value: &str) -> Option<(u32, u32)> {
    match value.split_once('-') {
        None => value.parse::<u32>().ok().map(|n| (n, n)),
        Some((lo, hi)) => {
            let lo = if lo.is_empty() { 0 } else { lo.parse().ok()? };
            let hi = if hi.is_empty() { 0 } else { hi.parse().ok()? };
            (hi == 0 || lo <= hi).then_some((lo, hi))
        }
    }
}

/// Xen's limit on a domain's vCPUs on Arm (`MAX_VIRT_CPUS`, xen/arch/arm/include/asm/config.h).
pub const XEN_MAX_VIRT_CPUS: u32 = 128;

impl HvOptions {
    /// The control domain's vCPU count on a machine with `cpus` physical CPUs,
    /// as Xen computes it: nothing or `0` = one per CPU, capped at
    /// [`XEN_MAX_VIRT_CPUS`] (Arm `dom0_max_vcpus()`); a range clamps the CPU
    /// count into `[min, max]` (x86 `dom0_max_vcpus()`).
    #[must_use]
    pub fn dom0_vcpus(&self, cpus: u32) -> u32 {
        let n = match self.dom0_vcpus_range {
            None | Some((0, 0)) => cpus,
            Some((lo, hi)) if lo == hi => hi,
            Some((lo, hi)) => {
                let hi = if hi == 0 { u32::MAX } else { hi };
                cpus.clamp(lo, hi)
            }
        };
        n.clamp(1, XEN_MAX_VIRT_CPUS)
    }

    /// The control domain's RAM: `dom0_mem`'s size (else `max:`, else
    /// `default`), kept within `min:` / `max:`.
    #[must_use]
    pub fn dom0_mem_bytes(&self, default: u64) -> u64 {
        let want = self.dom0_mem.or(self.dom0_mem_max).unwrap_or(default);
        let want = self.dom0_mem_max.map_or(want, |m| want.min(m));
        self.dom0_mem_min.map_or(want, |m| want.max(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn parse(s: &str) -> (HvOptions, Vec<OptionWarning<'_>>) {
        let mut w = Vec::new();
        let o = HvOptions::parse(s, |x| w.push(x));
        (o, w)
    }

    #[test]
    fn empty_gives_defaults() {
        let (o, w) = parse("");
        assert_eq!(o, HvOptions::default());
        assert_eq!(o.log_level, LevelFilter::Info);
        assert_eq!(o.tlb, TlbPolicyChoice::Auto);
        assert_eq!(o.nested, NestedChoice::Auto);
        assert!(w.is_empty());
    }

    #[test]
    fn all_known_words() {
        let (o, w) = parse("  loglvl=debug   tlb=targeted nested=off ");
        assert!(w.is_empty());
        assert_eq!(o.log_level, LevelFilter::Debug);
        assert_eq!(o.tlb, TlbPolicyChoice::Targeted);
        assert_eq!(o.nested, NestedChoice::Off);
        let (o, _) = parse("tlb=xen-compat nested=on loglvl=all");
        assert_eq!(o.tlb, TlbPolicyChoice::XenCompat);
        assert_eq!(o.nested, NestedChoice::On);
        assert_eq!(o.log_level, LevelFilter::Debug);
    }

    #[test]
    fn policy_follows_choice_and_facts() {
        use nested_detect::{decide, Evidence};
        let bare = BootFacts {
            nested: decide(&Evidence::default(), Override::Off),
            has_tlbi_range: true,
        };
        let nested = BootFacts {
            nested: decide(&Evidence::default(), Override::On),
            has_tlbi_range: false,
        };
        assert!(nested.nested.verdict.is_nested());
        assert!(!bare.nested.verdict.is_nested());
        let (o, _) = parse("tlb=xen-compat");
        assert_eq!(o.tlb_policy(Some(&nested)), Policy::XenCompat);
        let (o, _) = parse("tlb=auto");
        assert_eq!(
            o.tlb_policy(Some(&nested)),
            Policy::Targeted {
                has_range: false,
                nested: true
            }
        );
        assert_eq!(
            o.tlb_policy(Some(&bare)),
            Policy::Targeted {
                has_range: true,
                nested: false
            }
        );
        assert_eq!(
            o.tlb_policy(None),
            Policy::Targeted {
                has_range: false,
                nested: false
            }
        );
        assert_eq!(NestedChoice::Off.as_override(), Override::Off);
    }

    #[test]
    fn dom0_mem_and_max_vcpus_are_read_as_xen_reads_them() {
        let (o, w) = parse("dom0_mem=512M dom0_max_vcpus=2");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.dom0_mem, Some(512 << 20));
        assert_eq!(o.dom0_max_vcpus, Some(2));
        // No suffix: KiB (Xen's parse_size_and_unit); B, G also accepted.
        assert_eq!(parse("dom0_mem=65536").0.dom0_mem, Some(64 << 20));
        assert_eq!(parse("dom0_mem=1G").0.dom0_mem, Some(1 << 30));
        assert_eq!(parse("dom0_mem=4096B").0.dom0_mem, Some(4096));
        let (o, w) = parse("dom0_mem=lots dom0_max_vcpus=x dom0_mem=0");
        assert_eq!((o.dom0_mem, o.dom0_max_vcpus), (None, None));
        assert_eq!(w.len(), 3);
        assert_eq!(HvOptions::default().dom0_mem, None);
    }

    /// What Debian's Xen DTBs and the Xen wiki write on `xen,xen-bootargs`.
    #[test]
    fn xen_command_lines_are_accepted_without_warnings() {
        let (o, w) = parse(
            "console=dtuart dtuart=serial0 dom0_mem=512M,max:512M dom0_max_vcpus=2 loglvl=all/all",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.dom0_mem, Some(512 << 20));
        assert_eq!(o.dom0_mem_max, Some(512 << 20));
        assert_eq!(o.dom0_mem_bytes(16 << 20), 512 << 20);
        assert_eq!((o.dom0_max_vcpus, o.dom0_vcpus(4)), (Some(2), 2));
        assert_eq!(o.log_level, LevelFilter::Debug);
        let (_, w) = parse("console=dtuart,none dtuart=/pl011@9000000:115200n8");
        assert!(w.is_empty(), "{w:?}");
        // A console hv does not have is reported, not silently taken.
        let (_, w) = parse("console=com1 console=vga,dtuart");
        assert_eq!(w.len(), 2, "{w:?}");
    }

    #[test]
    fn loglvl_takes_xen_levels_and_the_rate_limited_threshold() {
        let lv = |s| {
            let (o, w) = parse(s);
            assert!(w.is_empty(), "{s}: {w:?}");
            (o.log_level, o.log_level_rate_limited)
        };
        use LevelFilter::*;
        assert_eq!(lv("loglvl=none"), (Off, Off));
        assert_eq!(lv("loglvl=error"), (Error, Error));
        assert_eq!(lv("loglvl=warning"), (Warn, Warn));
        assert_eq!(lv("loglvl=info"), (Info, Info));
        assert_eq!(lv("loglvl=debug"), (Debug, Debug));
        assert_eq!(lv("loglvl=all"), (Debug, Debug));
        assert_eq!(lv("loglvl=trace"), (Trace, Trace));
        assert_eq!(lv("loglvl=warning/debug"), (Warn, Debug));
        assert_eq!(lv("loglvl=none/all"), (Off, Debug));
        // The upper threshold is never below the level (Xen's `_parse_loglvl`).
        assert_eq!(lv("loglvl=debug/error"), (Debug, Debug));
        for bad in [
            "loglvl=",
            "loglvl=loud",
            "loglvl=info/",
            "loglvl=/info",
            "loglvl=info/x",
        ] {
            let (o, w) = parse(bad);
            assert_eq!(w.len(), 1, "{bad}");
            assert_eq!(o.log_level, Info, "{bad} keeps the default");
        }
    }

    #[test]
    fn dom0_mem_list_form_of_x86_xen() {
        let (o, w) = parse("dom0_mem=1G,min:256M,max:768M");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            (o.dom0_mem, o.dom0_mem_min, o.dom0_mem_max),
            (Some(1 << 30), Some(256 << 20), Some(768 << 20))
        );
        assert_eq!(o.dom0_mem_bytes(16 << 20), 768 << 20, "max: caps the size");
        let (o, _) = parse("dom0_mem=max:64M");
        assert_eq!((o.dom0_mem, o.dom0_mem_bytes(16 << 20)), (None, 64 << 20));
        let (o, _) = parse("dom0_mem=min:32M");
        assert_eq!(
            o.dom0_mem_bytes(16 << 20),
            32 << 20,
            "min: raises the default"
        );
        assert_eq!(parse("").0.dom0_mem_bytes(16 << 20), 16 << 20);
        for bad in [
            "dom0_mem=512M,",
            "dom0_mem=512M,max:",
            "dom0_mem=max:1x",
            "dom0_mem=min:1G,max:512M",
            "dom0_mem=-1G",
        ] {
            let (o, w) = parse(bad);
            assert_eq!(w.len(), 1, "{bad}");
            assert_eq!(
                (o.dom0_mem, o.dom0_mem_max, o.dom0_mem_min),
                (None, None, None)
            );
        }
    }

    #[test]
    fn dom0_max_vcpus_number_zero_and_ranges() {
        let v = |s: &str, cpus| {
            let (o, w) = parse(s);
            assert!(w.is_empty(), "{s}: {w:?}");
            (o.dom0_max_vcpus, o.dom0_vcpus(cpus))
        };
        assert_eq!(v("dom0_max_vcpus=3", 8), (Some(3), 3));
        // Arm Xen: 0 (or nothing) is one vCPU per physical CPU, at most MAX_VIRT_CPUS.
        assert_eq!(v("dom0_max_vcpus=0", 8), (None, 8));
        assert_eq!(v("", 6), (None, 6));
        assert_eq!(v("", 512), (None, XEN_MAX_VIRT_CPUS));
        // x86 Xen's ranges clamp the CPU count.
        assert_eq!(v("dom0_max_vcpus=2-4", 8), (None, 4));
        assert_eq!(v("dom0_max_vcpus=2-4", 1), (None, 2));
        assert_eq!(v("dom0_max_vcpus=2-4", 3), (None, 3));
        assert_eq!(v("dom0_max_vcpus=-2", 8), (None, 2));
        assert_eq!(v("dom0_max_vcpus=6-", 4), (None, 6));
        for bad in [
            "dom0_max_vcpus=4-2",
            "dom0_max_vcpus=a-b",
            "dom0_max_vcpus=1-2-3",
        ] {
            let (o, w) = parse(bad);
            assert_eq!(w.len(), 1, "{bad}");
            assert_eq!(o.dom0_vcpus_range, None);
        }
    }

    #[test]
    fn later_words_win() {
        let (o, _) = parse("loglvl=error loglvl=warn");
        assert_eq!(o.log_level, LevelFilter::Warn);
    }

    #[test]
    fn unknown_words_warn_but_do_not_fail() {
        let (o, w) = parse("guest_loglvl=all dom0_vcpus_pin noreboot tlb=sometimes loglvl=trace");
        assert_eq!(o.log_level, LevelFilter::Trace);
        assert_eq!(o.tlb, TlbPolicyChoice::Auto);
        assert_eq!(
            w,
            [
                OptionWarning::UnknownWord("guest_loglvl=all"),
                OptionWarning::UnknownWord("dom0_vcpus_pin"),
                OptionWarning::UnknownWord("noreboot"),
                OptionWarning::BadValue {
                    key: "tlb",
                    value: "sometimes"
                },
            ]
        );
        assert_eq!(
            std::format!("{}", w[3]),
            "ignoring bad value 'sometimes' for option 'tlb'"
        );
    }
}
