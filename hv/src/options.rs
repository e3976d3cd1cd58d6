//! hv's own command line.
//!
//! The command line comes from `/chosen/xen,xen-bootargs` (else `/chosen/bootargs`),
//! see [`crate::bootinfo::BootInfo::cmdline`]. It is a list of `key=value` words
//! separated by spaces:
//!
//! | word | values | default |
//! |---|---|---|
//! | `loglvl=` | `none`, `error`, `warn`, `info`, `debug`, `trace` (`all` = `trace`) | `info` |
//! | `tlb=` | `xen-compat`, `targeted`, `auto` | `auto` |
//! | `nested=` | `auto`, `on`, `off` | `auto` |
//! | `dom0_mem=` | a size, `<n>[B|K|M|G]` (no suffix: KiB, as Xen's `parse_size_and_unit`) | 16M |
//! | `dom0_max_vcpus=` | vCPUs of the control domain | 1 |
//!
//! `dom0_mem=` and `dom0_max_vcpus=` are Xen's names (docs/misc/xen-command-line.pandoc) for
//! the control domain's RAM and vCPUs: the `/chosen/module@` kernel whose bootargs carry
//! the word `dom0`. (hv also still reads `mem=`, `vcpus=` and `dom0` from a module's own
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
    /// Maximum log level (`loglvl=`).
    pub log_level: LevelFilter,
    /// TLB policy (`tlb=`).
    pub tlb: TlbPolicyChoice,
    /// Nested-virtualization assumption (`nested=`).
    pub nested: NestedChoice,
    /// The control domain's RAM in bytes (`dom0_mem=`).
    pub dom0_mem: Option<u64>,
    /// The control domain's vCPUs (`dom0_max_vcpus=`).
    pub dom0_max_vcpus: Option<u32>,
}

impl Default for HvOptions {
    fn default() -> Self {
        Self {
            log_level: LevelFilter::Info,
            tlb: TlbPolicyChoice::Auto,
            nested: NestedChoice::Auto,
            dom0_mem: None,
            dom0_max_vcpus: None,
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
                "loglvl" => parse_level(value).map(|l| opts.log_level = l),
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
                "dtuart" => Some(()),
                "dom0_mem" => parse_xen_size(value)
                    .filter(|&b| b > 0)
                    .map(|b| opts.dom0_mem = Some(b)),
                "dom0_max_vcpus" => value
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .map(|n| opts.dom0_max_vcpus = Some(n)),
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
        "debug" => LevelFilter::Debug,
        "trace" | "all" => LevelFilter::Trace,
        _ => return None,
    })
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
        assert_eq!(o.log_level, LevelFilter::Trace);
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
        let (o, w) = parse("dom0_mem=lots dom0_max_vcpus=0 dom0_mem=0");
        assert_eq!((o.dom0_mem, o.dom0_max_vcpus), (None, None));
        assert_eq!(w.len(), 3);
        assert_eq!(HvOptions::default().dom0_mem, None);
    }

    #[test]
    fn later_words_win() {
        let (o, _) = parse("loglvl=error loglvl=warn");
        assert_eq!(o.log_level, LevelFilter::Warn);
    }

    #[test]
    fn unknown_words_warn_but_do_not_fail() {
        let (o, w) = parse("console=dtuart dom0_vcpus_pin noreboot tlb=sometimes loglvl=trace");
        assert_eq!(o.log_level, LevelFilter::Trace);
        assert_eq!(o.tlb, TlbPolicyChoice::Auto);
        assert_eq!(
            w,
            [
                OptionWarning::UnknownWord("console=dtuart"),
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
