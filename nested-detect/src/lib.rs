//! nested-detect: a pure verdict on whether hv runs nested.
//!
//! hv gathers [`Evidence`] at boot (at EL2, before it changes HCR_EL2 for guests) and calls
//! [`decide`]; the [`Decision`] carries the [`Verdict`] and the [`Reason`]s it rests on, and
//! prints as one line (`Display`). Nothing here touches hardware.
//!
//! Evidence and how strong it is:
//! - **SMCCC vendor-specific hypervisor UID** (`0x8600ff01`, issued with `SMC #0` from EL2):
//!   a hypervisor above us answers with its UID; KVM's is published in Linux
//!   `include/linux/arm-smccc.h` (`ARM_SMCCC_VENDOR_HYP_UID_KVM_REG_0..3`,
//!   UUID 28b46fb6-2ec5-11e9-a9ca-4b564d003a74). Firmware at EL3 answers NOT_SUPPORTED.
//!   Decisive when answered. (`HVC` from vEL2 is *not* usable: KVM reflects it to vEL2's own
//!   vector, as an HVC at EL2 targets EL2.) Guard it with `SMC` SMCCC_VERSION (0x8000_0000)
//!   first and skip the query (UID `None`) below 1.1: measured, KVM answers 0x10001 and QEMU's
//!   bare-metal PSCI emulation NOT_SUPPORTED; this keeps broken EL3 firmware out of the path.
//! - **Timing probe**: the cost of an ID register read (trapped to L0 by HCR_EL2.TID3 when
//!   hv is a guest hypervisor) against a never-trapped one (`CurrentEL`). Decisive either way
//!   when present: >= [`TRAP_RATIO_NESTED`] means an L0 handles our ID register reads.
//! - **ID register fingerprints** of KVM's guest-hypervisor view (`limit_nv_id_reg()` in
//!   Linux `arch/arm64/kvm/nested.c`): ID_AA64MMFR4_EL1 forced to exactly
//!   NV_frac = NV2_ONLY | E2H0 = NI_NV1; ID_AA64MMFR2_EL1 with BBM cleared, TTL forced and
//!   NV hidden; PARange capped at 48 bits. Supporting evidence only.
//! - **DT hints**: a `/hypervisor` node (Xen's binding) says we are someone's guest.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

/// KVM's SMCCC vendor-specific hypervisor service UID, as returned in w0..w3
/// (Linux `include/linux/arm-smccc.h`, `ARM_SMCCC_VENDOR_HYP_UID_KVM_REG_0..3`).
pub const KVM_UID: [u32; 4] = [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d];

/// The SMCCC function ID of the vendor-specific hypervisor service "Call UID" query.
pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_ff01;

/// SMCCC's NOT_SUPPORTED return value (-1 in w0).
pub const SMCCC_NOT_SUPPORTED: u32 = 0xffff_ffff;

/// A trapped/local cost ratio at or above this means an L0 hypervisor traps ID register
/// reads. Measured: 1.9-2.3 on bare QEMU (TCG), 630-750 in the nested rig; on hardware a
/// trap to L0 costs ~1 us against a few ns.
pub const TRAP_RATIO_NESTED: u64 = 32;

/// ID_AA64MMFR4_EL1 as KVM shows it to a VHE guest hypervisor: NV_frac (bits 23:20) =
/// NV2_ONLY (1), E2H0 (bits 27:24) = NI_NV1 (0b1110), every other field 0.
pub const KVM_GUEST_HYP_MMFR4: u64 = 0x0e10_0000;

/// Hints from the device tree hv booted with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DtHints {
    /// A `/hypervisor` node exists (Xen's guest binding).
    pub hypervisor_node: bool,
    /// The root `compatible` names a virtual platform (e.g. `linux,dummy-virt`). QEMU's virt
    /// machine says so with or without nesting: informational only.
    pub virtual_platform: bool,
}

impl DtHints {
    /// Builds hints from the root node's raw `compatible` property (NUL-separated strings)
    /// and whether a `/hypervisor` node exists.
    pub fn from_root(compatible: &[u8], hypervisor_node: bool) -> Self {
        let virtual_platform = compatible
            .split(|&b| b == 0)
            .any(|s| s == b"linux,dummy-virt" || s.starts_with(b"xen,") || s.ends_with(b",virt"));
        DtHints {
            hypervisor_node,
            virtual_platform,
        }
    }
}

/// The timing probe: nanoseconds per operation, averaged over a loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// An instruction that traps to an L0 hypervisor if there is one (an ID register read).
    pub trapped_ns_per_op: u64,
    /// An instruction that never traps (`mrs CurrentEL`).
    pub local_ns_per_op: u64,
}

impl Timing {
    /// Builds the probe result from generic-timer ticks: `trapped_ticks` and `local_ticks`
    /// for `iters` iterations each, with the counter at `cntfrq` Hz (CNTFRQ_EL0). `None`
    /// when `iters` or `cntfrq` is 0.
    pub fn from_ticks(
        trapped_ticks: u64,
        local_ticks: u64,
        iters: u64,
        cntfrq: u64,
    ) -> Option<Self> {
        if iters == 0 || cntfrq == 0 {
            return None;
        }
        let ns = |t: u64| {
            (u128::from(t) * 1_000_000_000 / u128::from(cntfrq) / u128::from(iters)) as u64
        };
        Some(Timing {
            trapped_ns_per_op: ns(trapped_ticks),
            local_ns_per_op: ns(local_ticks),
        })
    }

    /// trapped / local, with local clamped to at least 1 ns.
    pub fn ratio(&self) -> u64 {
        self.trapped_ns_per_op / self.local_ns_per_op.max(1)
    }

    /// trapped / local in tenths (for printing ratios below 10 as `0.8`).
    pub fn ratio_tenths(&self) -> u64 {
        (u128::from(self.trapped_ns_per_op) * 10 / u128::from(self.local_ns_per_op.max(1))) as u64
    }
}

/// Everything hv gathers at boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// w0..w3 of the vendor hypervisor UID query through SMC; `None` when it returned
    /// NOT_SUPPORTED or was not made (see [`uid_from_smccc`]).
    pub smccc_hyp_uid: Option<[u32; 4]>,
    /// MIDR_EL1.
    pub midr: u64,
    /// ID_AA64MMFR0_EL1.
    pub mmfr0: u64,
    /// ID_AA64MMFR1_EL1.
    pub mmfr1: u64,
    /// ID_AA64MMFR2_EL1.
    pub mmfr2: u64,
    /// ID_AA64MMFR4_EL1 (encoding S3_0_C0_C7_4).
    pub mmfr4: u64,
    /// Device tree hints.
    pub dt: DtHints,
    /// The timing probe, if hv ran it.
    pub timing: Option<Timing>,
    /// w0 of `SMC` SMCCC_VERSION (0x8000_0000), e.g. 0x10001 for 1.1; `None` when not asked
    /// (no SMC conduit) or NOT_SUPPORTED. The UID query is made only for 1.1 and later.
    pub smccc_version: Option<u32>,
}

/// Interprets x0..x3 after `SMC #0` with x0 = [`VENDOR_HYP_CALL_UID`]: `None` for
/// NOT_SUPPORTED (w0 = -1) and for a call that came back untouched (w0 still the function
/// ID, as when an exception handler skipped it).
pub fn uid_from_smccc(x0: u64, x1: u64, x2: u64, x3: u64) -> Option<[u32; 4]> {
    let w = [x0 as u32, x1 as u32, x2 as u32, x3 as u32];
    if w[0] == SMCCC_NOT_SUPPORTED || w[0] == VENDOR_HYP_CALL_UID {
        return None;
    }
    Some(w)
}

/// SMCCC_VERSION's function ID (SMC32 fast call).
pub const SMCCC_VERSION: u32 = 0x8000_0000;

/// The lowest SMCCC version (1.1, as `major << 16 | minor`) whose vendor-specific hypervisor
/// service hv queries for its UID.
pub const SMCCC_VERSION_1_1: u32 = 0x1_0001;

/// Interprets w0 after `SMC #0` with x0 = [`SMCCC_VERSION`]: `None` for NOT_SUPPORTED (any
/// negative value) and for a call that came back untouched.
pub fn smccc_version_from(x0: u64) -> Option<u32> {
    let w = x0 as u32;
    if (w as i32) < 0 || w == SMCCC_VERSION {
        return None;
    }
    Some(w)
}

/// Whether an SMCCC version (from [`smccc_version_from`]) is new enough for the UID query.
pub fn uid_query_allowed(version: Option<u32>) -> bool {
    version.is_some_and(|v| v >= SMCCC_VERSION_1_1)
}

impl fmt::Display for Evidence {
    /// One line for hv's boot log, e.g.
    /// `hyp-uid=b66fb428-e911c52e-564bcaa9-743a004d midr=0xf0510 mmfr0=0x... ...`;
    /// [`Evidence::parse_line`] reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.smccc_hyp_uid {
            Some(u) => write!(
                f,
                "hyp-uid={:08x}-{:08x}-{:08x}-{:08x}",
                u[0], u[1], u[2], u[3]
            )?,
            None => f.write_str("hyp-uid=none")?,
        }
        write!(
            f,
            " midr={:#x} mmfr0={:#x} mmfr1={:#x} mmfr2={:#x} mmfr4={:#x}",
            self.midr, self.mmfr0, self.mmfr1, self.mmfr2, self.mmfr4
        )?;
        match self.timing {
            Some(t) => write!(
                f,
                " idreg={}ns local={}ns",
                t.trapped_ns_per_op, t.local_ns_per_op
            )?,
            None => f.write_str(" timing=none")?,
        }
        write!(
            f,
            " dt-hyp-node={} dt-virt={}",
            self.dt.hypervisor_node as u8, self.dt.virtual_platform as u8
        )?;
        match self.smccc_version {
            Some(v) => write!(f, " smccc={v:#x}"),
            None => f.write_str(" smccc=none"),
        }
    }
}

impl Evidence {
    /// Reads the line [`Evidence`]'s `Display` writes (anything before `hyp-uid=` is
    /// skipped, e.g. hv's `hv: nested-detect evidence: ` prefix), so that evidence hv printed
    /// at boot can be decided again on the host. `None` when a field is missing or malformed;
    /// `smccc=` is optional (lines from before it existed).
    pub fn parse_line(line: &str) -> Option<Evidence> {
        let at = line.find("hyp-uid=")?;
        let mut e = Evidence::default();
        let mut seen = 0u16;
        let mut timing = (None, None, false);
        let mut dt = (None, None);
        let hex = |v: &str| u64::from_str_radix(v.strip_prefix("0x")?, 16).ok();
        let ns = |v: &str| v.strip_suffix("ns")?.parse::<u64>().ok();
        let bit = |v: &str| match v {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        };
        for word in line[at..].split_ascii_whitespace() {
            let (k, v) = word.split_once('=')?;
            match k {
                "hyp-uid" if v == "none" => e.smccc_hyp_uid = None,
                "hyp-uid" => {
                    let mut u = [0u32; 4];
                    let mut parts = v.split('-');
                    for w in &mut u {
                        *w = u32::from_str_radix(parts.next()?, 16).ok()?;
                    }
                    if parts.next().is_some() {
                        return None;
                    }
                    e.smccc_hyp_uid = Some(u);
                }
                "midr" => e.midr = hex(v)?,
                "mmfr0" => e.mmfr0 = hex(v)?,
                "mmfr1" => e.mmfr1 = hex(v)?,
                "mmfr2" => e.mmfr2 = hex(v)?,
                "mmfr4" => e.mmfr4 = hex(v)?,
                "idreg" => timing.0 = Some(ns(v)?),
                "local" => timing.1 = Some(ns(v)?),
                "timing" if v == "none" => timing.2 = true,
                "dt-hyp-node" => dt.0 = Some(bit(v)?),
                "dt-virt" => dt.1 = Some(bit(v)?),
                "smccc" if v == "none" => e.smccc_version = None,
                "smccc" => e.smccc_version = Some(u32::try_from(hex(v)?).ok()?),
                _ => return None,
            }
            seen += 1;
        }
        e.timing = match timing {
            (Some(t), Some(l), false) => Some(Timing {
                trapped_ns_per_op: t,
                local_ns_per_op: l,
            }),
            (None, None, true) => None,
            _ => return None,
        };
        e.dt = DtHints {
            hypervisor_node: dt.0?,
            virtual_platform: dt.1?,
        };
        // hyp-uid, midr, mmfr0/1/2/4, timing (1 or 2 words), dt (2), smccc (optional).
        (seen >= 9).then_some(e)
    }
}

fn field(reg: u64, lsb: u32) -> u64 {
    (reg >> lsb) & 0xf
}

impl Evidence {
    /// ID_AA64MMFR4_EL1 is exactly what KVM shows a VHE guest hypervisor.
    pub fn kvm_mmfr4(&self) -> bool {
        self.mmfr4 == KVM_GUEST_HYP_MMFR4
    }

    /// ID_AA64MMFR2_EL1 as KVM filters it: NV (27:24) hidden, BBM (55:52) cleared, TTL
    /// (51:48) forced to 1.
    pub fn kvm_mmfr2(&self) -> bool {
        field(self.mmfr2, 24) == 0 && field(self.mmfr2, 52) == 0 && field(self.mmfr2, 48) == 1
    }

    /// ID_AA64MMFR0_EL1.PARange (3:0) is 48 bits (KVM caps it there for a guest hypervisor;
    /// common on hardware too, so it only ever supports other evidence).
    pub fn parange_48(&self) -> bool {
        field(self.mmfr0, 0) == 5
    }

    /// MIDR_EL1.Implementer is 0 ("reserved for software use": QEMU TCG's `max` CPU).
    pub fn software_cpu(&self) -> bool {
        (self.midr >> 24) & 0xff == 0
    }
}

/// What the user asked for with `nested=auto|on|off`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Override {
    /// Decide from the evidence.
    #[default]
    Auto,
    /// Treat hv as nested (the kind still comes from the evidence).
    On,
    /// Treat hv as running on bare metal.
    Off,
}

impl Override {
    /// Parses the value of `nested=`: `auto`, `on` or `off`.
    pub fn parse(s: &str) -> Option<Override> {
        match s {
            "auto" => Some(Override::Auto),
            "on" => Some(Override::On),
            "off" => Some(Override::Off),
            _ => None,
        }
    }
}

/// Where hv runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// hv owns the real EL2.
    BareMetal,
    /// hv is a guest hypervisor under KVM (vEL2).
    NestedKvm,
    /// hv is a guest hypervisor under something that is not (recognisably) KVM.
    NestedUnknown,
}

impl Verdict {
    /// True for both nested verdicts.
    pub fn is_nested(self) -> bool {
        self != Verdict::BareMetal
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::BareMetal => "bare metal",
            Verdict::NestedKvm => "nested under KVM",
            Verdict::NestedUnknown => "nested under an unknown hypervisor",
        })
    }
}

/// One piece of evidence the decision used (or a note about it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The vendor hypervisor UID query returned KVM's UID.
    SmcccUidKvm,
    /// The query returned some other UID.
    SmcccUidOther([u32; 4]),
    /// The query returned NOT_SUPPORTED (or was not made).
    SmcccUidNone,
    /// ID register reads cost this many times a local instruction: trapped.
    Trapped(u64),
    /// ID register reads cost this many tenths of a local instruction: not trapped
    /// (printed as e.g. `0.8x`).
    NotTrapped(u64),
    /// No timing probe was run.
    NoTiming,
    /// ID_AA64MMFR4_EL1 equals KVM's guest-hypervisor value.
    KvmMmfr4,
    /// ID_AA64MMFR2_EL1 shows KVM's filtering (NV hidden, BBM cleared, TTL forced).
    KvmMmfr2,
    /// PARange is 48 bits.
    ParangeCapped,
    /// The DT has a /hypervisor node.
    DtHypervisorNode,
    /// The DT root is a virtual platform (informational).
    DtVirtualPlatform,
    /// MIDR's implementer is 0: an emulated CPU (informational).
    SoftwareCpu,
    /// The evidence disagrees (e.g. a KVM UID but untrapped ID registers).
    Conflict,
    /// `nested=on` forced a nested verdict.
    ForcedOn,
    /// `nested=off` forced bare metal.
    ForcedOff,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::SmcccUidKvm => f.write_str("SMCCC hyp UID = KVM"),
            Reason::SmcccUidOther(u) => {
                write!(
                    f,
                    "SMCCC hyp UID = {:08x}-{:08x}-{:08x}-{:08x}",
                    u[0], u[1], u[2], u[3]
                )
            }
            Reason::SmcccUidNone => f.write_str("SMCCC hyp UID not supported"),
            Reason::Trapped(r) => write!(f, "ID reg read {r}x local (trapped)"),
            Reason::NotTrapped(r) => {
                write!(f, "ID reg read {}.{}x local (not trapped)", r / 10, r % 10)
            }
            Reason::NoTiming => f.write_str("no timing probe"),
            Reason::KvmMmfr4 => f.write_str("MMFR4 = KVM guest-hyp value"),
            Reason::KvmMmfr2 => f.write_str("MMFR2 NV hidden, BBM cleared, TTL forced"),
            Reason::ParangeCapped => f.write_str("PARange 48 bits"),
            Reason::DtHypervisorNode => f.write_str("DT /hypervisor node"),
            Reason::DtVirtualPlatform => f.write_str("DT virtual platform"),
            Reason::SoftwareCpu => f.write_str("MIDR implementer 0 (emulated CPU)"),
            Reason::Conflict => f.write_str("conflicting evidence"),
            Reason::ForcedOn => f.write_str("nested=on"),
            Reason::ForcedOff => f.write_str("nested=off"),
        }
    }
}

const MAX_REASONS: usize = 12;

/// A verdict and the reasons behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    reasons: [Option<Reason>; MAX_REASONS],
}

impl Decision {
    fn new(verdict: Verdict) -> Self {
        Decision {
            verdict,
            reasons: [None; MAX_REASONS],
        }
    }

    fn push(&mut self, r: Reason) {
        if let Some(slot) = self.reasons.iter_mut().find(|s| s.is_none()) {
            *slot = Some(r);
        }
    }

    /// The evidence used, strongest first.
    pub fn reasons(&self) -> impl Iterator<Item = Reason> + '_ {
        self.reasons.iter().filter_map(|r| *r)
    }

    /// Whether `r` is among the reasons.
    pub fn has(&self, r: Reason) -> bool {
        self.reasons().any(|x| x == r)
    }
}

impl fmt::Display for Decision {
    /// `nested under KVM (SMCCC hyp UID = KVM; ID reg read 650x local (trapped); ...)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.verdict)?;
        for (i, r) in self.reasons().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{r}")?;
        }
        f.write_str(")")
    }
}

/// Decides where hv runs.
///
/// With [`Override::Auto`]: an answered UID query decides (KVM's UID: nested under KVM, any
/// other: nested under an unknown hypervisor). Otherwise the timing probe decides nested or
/// not, and KVM's two ID register fingerprints (MMFR4 and MMFR2 together) name KVM. Without
/// UID or timing, both KVM fingerprints give nested under KVM, a DT /hypervisor node gives
/// nested under an unknown hypervisor, and anything less gives bare metal. Mistaking bare
/// metal for nested costs little (the targeted TLB policy is also correct there); the other
/// mistake costs seconds per flush, hence the leaning.
pub fn decide(e: &Evidence, ov: Override) -> Decision {
    let fingerprint_kvm = e.kvm_mmfr4() && e.kvm_mmfr2();
    let ratio = e.timing.map(|t| t.ratio());
    let trapped = ratio.map(|r| r >= TRAP_RATIO_NESTED);
    let auto = match (e.smccc_hyp_uid, trapped) {
        (Some(u), _) if u == KVM_UID => Verdict::NestedKvm,
        (Some(_), _) => Verdict::NestedUnknown,
        (None, Some(true)) if fingerprint_kvm => Verdict::NestedKvm,
        (None, Some(true)) => Verdict::NestedUnknown,
        (None, Some(false)) => Verdict::BareMetal,
        (None, None) if fingerprint_kvm => Verdict::NestedKvm,
        (None, None) if e.dt.hypervisor_node => Verdict::NestedUnknown,
        (None, None) => Verdict::BareMetal,
    };
    let verdict = match ov {
        Override::Auto => auto,
        Override::Off => Verdict::BareMetal,
        Override::On if auto.is_nested() => auto,
        Override::On => Verdict::NestedUnknown,
    };
    let mut d = Decision::new(verdict);
    match ov {
        Override::On => d.push(Reason::ForcedOn),
        Override::Off => d.push(Reason::ForcedOff),
        Override::Auto => {}
    }
    match e.smccc_hyp_uid {
        Some(u) if u == KVM_UID => d.push(Reason::SmcccUidKvm),
        Some(u) => d.push(Reason::SmcccUidOther(u)),
        None => d.push(Reason::SmcccUidNone),
    }
    match (ratio, e.timing) {
        (Some(r), _) if r >= TRAP_RATIO_NESTED => d.push(Reason::Trapped(r)),
        (Some(_), Some(t)) => d.push(Reason::NotTrapped(t.ratio_tenths())),
        _ => d.push(Reason::NoTiming),
    }
    if e.kvm_mmfr4() {
        d.push(Reason::KvmMmfr4);
    }
    if e.kvm_mmfr2() {
        d.push(Reason::KvmMmfr2);
    }
    if e.parange_48() {
        d.push(Reason::ParangeCapped);
    }
    if e.dt.hypervisor_node {
        d.push(Reason::DtHypervisorNode);
    }
    if e.dt.virtual_platform {
        d.push(Reason::DtVirtualPlatform);
    }
    if e.software_cpu() {
        d.push(Reason::SoftwareCpu);
    }
    // The evidence disagrees with the automatic verdict it produced.
    let conflict = match auto {
        Verdict::BareMetal => fingerprint_kvm || e.dt.hypervisor_node,
        Verdict::NestedKvm | Verdict::NestedUnknown => {
            trapped == Some(false) || (e.smccc_hyp_uid == Some(KVM_UID) && !fingerprint_kvm)
        }
    };
    if conflict {
        d.push(Reason::Conflict);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kvm_regs() -> Evidence {
        Evidence {
            mmfr0: 0x1100_0222_0010_0125,
            mmfr2: 0x1201_0111_0000_1011,
            mmfr4: KVM_GUEST_HYP_MMFR4,
            ..Evidence::default()
        }
    }

    #[test]
    fn uid_decoding() {
        assert_eq!(uid_from_smccc(u64::MAX, 1, 2, 3), None);
        assert_eq!(uid_from_smccc(0xffff_ffff, 1, 2, 3), None);
        assert_eq!(uid_from_smccc(0x8600_ff01, 0, 0, 0), None);
        assert_eq!(
            uid_from_smccc(0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d),
            Some(KVM_UID)
        );
        // Upper halves are ignored (SMC32 results live in w0..w3).
        assert_eq!(
            uid_from_smccc(0xdead_0000_0000_0001, 2, 3, 4),
            Some([1, 2, 3, 4])
        );
    }

    #[test]
    fn fingerprints() {
        let e = kvm_regs();
        assert!(e.kvm_mmfr4() && e.kvm_mmfr2() && e.parange_48());
        let bare = Evidence {
            mmfr2: 0x1221_0111_1201_1011,
            mmfr4: 0,
            mmfr0: 0x2100_0323_1020_1126,
            ..e
        };
        assert!(!bare.kvm_mmfr4() && !bare.kvm_mmfr2() && !bare.parange_48());
    }

    #[test]
    fn timing_from_ticks() {
        // 256 iterations, 1 GHz counter: 42398 ticks/iter -> 42398 ns.
        let t = Timing::from_ticks(42_398 * 256, 64 * 256, 256, 1_000_000_000).unwrap();
        assert_eq!(
            t,
            Timing {
                trapped_ns_per_op: 42_398,
                local_ns_per_op: 64
            }
        );
        assert_eq!(t.ratio(), 662);
        // 62.5 MHz counter (16 ns per tick), 100 iterations of 3 ticks -> 48 ns.
        let t = Timing::from_ticks(300, 100, 100, 62_500_000).unwrap();
        assert_eq!((t.trapped_ns_per_op, t.local_ns_per_op), (48, 16));
        assert_eq!(Timing::from_ticks(1, 1, 0, 1), None);
        assert_eq!(Timing::from_ticks(1, 1, 1, 0), None);
        // No overflow for large tick counts.
        assert!(Timing::from_ticks(u64::MAX, 1, 1, 1).is_some());
    }

    #[test]
    fn evidence_display() {
        let e = Evidence {
            smccc_hyp_uid: Some(KVM_UID),
            timing: Some(Timing {
                trapped_ns_per_op: 5,
                local_ns_per_op: 1,
            }),
            ..kvm_regs()
        };
        let mut buf = [0u8; 256];
        let mut w = Buf { b: &mut buf, n: 0 };
        core::fmt::write(&mut w, format_args!("{e}")).unwrap();
        let n = w.n;
        let s = core::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            s.starts_with(
                "hyp-uid=b66fb428-e911c52e-564bcaa9-743a004d midr=0x0 mmfr0=0x1100022200100125"
            ),
            "{s}"
        );
        assert!(
            s.ends_with("mmfr4=0xe100000 idreg=5ns local=1ns dt-hyp-node=0 dt-virt=0 smccc=none"),
            "{s}"
        );
    }

    struct Buf<'a> {
        b: &'a mut [u8],
        n: usize,
    }

    impl core::fmt::Write for Buf<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.n + s.len();
            self.b
                .get_mut(self.n..end)
                .ok_or(core::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.n = end;
            Ok(())
        }
    }

    #[test]
    fn evidence_line_round_trip() {
        let full = Evidence {
            smccc_hyp_uid: Some(KVM_UID),
            midr: 0xf0510,
            mmfr0: 0x1100_0222_0010_0125,
            mmfr1: 0x10_1100_1031_2121,
            mmfr2: 0x1201_0111_0000_1011,
            mmfr4: KVM_GUEST_HYP_MMFR4,
            dt: DtHints {
                hypervisor_node: false,
                virtual_platform: true,
            },
            timing: Some(Timing {
                trapped_ns_per_op: 41_048,
                local_ns_per_op: 118,
            }),
            smccc_version: Some(SMCCC_VERSION_1_1),
        };
        let bare = Evidence {
            smccc_hyp_uid: None,
            timing: None,
            smccc_version: None,
            dt: DtHints {
                hypervisor_node: true,
                virtual_platform: false,
            },
            ..full
        };
        for e in [full, bare] {
            let mut buf = [0u8; 512];
            let mut w = Buf { b: &mut buf, n: 0 };
            core::fmt::write(&mut w, format_args!("hv: nested-detect evidence: {e}")).unwrap();
            let n = w.n;
            let line = core::str::from_utf8(&buf[..n]).unwrap();
            assert_eq!(Evidence::parse_line(line), Some(e), "{line}");
        }
        // Lines from before `smccc=` existed still parse.
        let old = "hyp-uid=none midr=0xf0510 mmfr0=0x2100032310201126 mmfr1=0x110112010312122 mmfr2=0x1221011112011011 mmfr4=0x0 idreg=41ns local=54ns dt-hyp-node=0 dt-virt=1";
        let e = Evidence::parse_line(old).unwrap();
        assert_eq!((e.mmfr4, e.smccc_version), (0, None));
        assert_eq!(e.timing.map(|t| t.ratio_tenths()), Some(7));
        // Malformed or incomplete lines do not.
        assert_eq!(Evidence::parse_line("midr=0x1"), None);
        for bad in [
            "hyp-uid=none midr=0xf0510 mmfr0=0x0 mmfr1=0x0 mmfr2=0x0 mmfr4=0x0 idreg=41 local=54ns dt-hyp-node=0 dt-virt=1",
            "hyp-uid=none midr=0xf0510 mmfr0=0x0 mmfr1=0x0 mmfr2=0x0 mmfr4=0x0 idreg=41ns local=54ns dt-hyp-node=0",
            "hyp-uid=1-2-3 midr=0xf0510 mmfr0=0x0 mmfr1=0x0 mmfr2=0x0 mmfr4=0x0 idreg=41ns local=54ns dt-hyp-node=0 dt-virt=1",
            "hyp-uid=none midr=0xf0510 mmfr0=0x0 mmfr1=0x0 mmfr2=0x0 mmfr4=0x0 idreg=41ns local=54ns dt-hyp-node=0 dt-virt=1 bogus=1",
            "hyp-uid=none midr=0xf0510 mmfr0=0x0 mmfr1=0x0 mmfr2=0x0 mmfr4=0x0 idreg=41ns timing=none dt-hyp-node=0 dt-virt=1",
        ] {
            assert_eq!(Evidence::parse_line(bad), None, "{bad}");
        }
    }

    #[test]
    fn smccc_version_guard() {
        assert_eq!(smccc_version_from(0x1_0001), Some(0x1_0001));
        assert_eq!(smccc_version_from(0xffff_ffff), None);
        assert_eq!(smccc_version_from(u64::MAX), None);
        assert_eq!(smccc_version_from(u64::from(SMCCC_VERSION)), None);
        assert!(uid_query_allowed(Some(0x1_0001)) && uid_query_allowed(Some(0x1_0002)));
        assert!(!uid_query_allowed(Some(0x1_0000)) && !uid_query_allowed(None));
    }

    #[test]
    fn untrapped_ratio_prints_tenths() {
        let e = Evidence {
            timing: Some(Timing {
                trapped_ns_per_op: 41,
                local_ns_per_op: 54,
            }),
            ..Evidence::default()
        };
        let d = decide(&e, Override::Auto);
        assert!(d.has(Reason::NotTrapped(7)));
        let mut buf = [0u8; 256];
        let mut w = Buf { b: &mut buf, n: 0 };
        core::fmt::write(&mut w, format_args!("{d}")).unwrap();
        let n = w.n;
        let s = core::str::from_utf8(&buf[..n]).unwrap();
        assert!(s.contains("ID reg read 0.7x local (not trapped)"), "{s}");
    }

    #[test]
    fn override_parse() {
        assert_eq!(Override::parse("auto"), Some(Override::Auto));
        assert_eq!(Override::parse("on"), Some(Override::On));
        assert_eq!(Override::parse("off"), Some(Override::Off));
        assert_eq!(Override::parse("yes"), None);
    }

    #[test]
    fn reasons_are_bounded() {
        let e = Evidence {
            smccc_hyp_uid: Some([1, 2, 3, 4]),
            timing: Some(Timing {
                trapped_ns_per_op: 1,
                local_ns_per_op: 1,
            }),
            dt: DtHints {
                hypervisor_node: true,
                virtual_platform: true,
            },
            ..kvm_regs()
        };
        let d = decide(&e, Override::On);
        assert!(d.reasons().count() <= MAX_REASONS);
        assert!(d.has(Reason::ForcedOn) && d.has(Reason::Conflict));
    }
}
