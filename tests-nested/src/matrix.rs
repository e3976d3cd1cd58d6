//! The domU-creation timing matrix (issue 4): what to run, how to read the
//! serial logs, and the report (markdown table, SVG plot, acceptance checks).
//!
//! Every run boots hv with `dom0-builder` as the control domain (d0) and an
//! images blob as its ramdisk; d0 builds one domU per remove variant
//! (`variant=both`: one `XENMEM_remove_from_physmap` per page, then
//! `XENMEM_remove_from_physmap_batch`) and prints one result line per build:
//!
//! ```text
//! (d0) dom0: variant=batch pages=21 build_ticks=.. build_us=1234 tlbi: IPAS2E1IS=0 ... total=2 p2m_ops=.. plans=.. exits=.. hypercalls=..
//! ```
//!
//! In the nested rig the VMM runs with `--exit-stamps`, so each serial line
//! starts with `[<seconds> L0=<n>]`, the traps to L0 (KVM exits, the console's
//! own MMIO exits excluded) counted when the line began. The traps of a build
//! are the difference between its result line and the control domain's
//! previous line (the build runs between them; the two console hypercalls of
//! that previous line are included, a constant of a few traps).
//!
//! The binary `hvmatrix` (src/bin/hvmatrix.rs) runs the matrix; this module
//! is pure and host-tested.

use std::fmt::Write as _;

use pv_tlb::TlbOpKind;

/// TLB operation kinds in `hv_op` counter order: the mnemonics of
/// `pv_tlb::TlbOpKind::ALL`, the order hv copies `struct hv_counters.tlbi` in.
pub const TLBI_KINDS: [&str; TlbOpKind::ALL.len()] = {
    let mut names = [""; TlbOpKind::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = TlbOpKind::ALL[i].mnemonic();
        i += 1;
    }
    names
};

/// Indexes in [`TLBI_KINDS`] of the full stage-2 flushes
/// (`TlbOpKind::is_full_stage2`: VMALLS12E1IS, VMALLS12E1, ALLE1IS).
pub const FULL_FLUSH_KINDS: [usize; 3] = {
    let mut idx = [0; 3];
    let (mut i, mut n) = (0, 0);
    while i < TlbOpKind::ALL.len() {
        if TlbOpKind::ALL[i].is_full_stage2() {
            idx[n] = i;
            n += 1;
        }
        i += 1;
    }
    assert!(
        n == 3,
        "pv-tlb names exactly three full stage-2 flush kinds"
    );
    idx
};

/// Where hv runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Platform {
    /// hv directly on QEMU TCG at EL2 (`-cpu max`).
    Bare,
    /// hv at vEL2 in the nested rig; L1 KVM's IPA limit (48: `-cpu max,lpa2=off`, 52: `-cpu max`).
    Nested {
        /// L1 KVM's IPA size limit in bits.
        ipa_limit: u32,
    },
}

impl Platform {
    /// Short name used in file names: `bare`, `nested48`, `nested52`.
    #[must_use]
    pub fn key(self) -> String {
        match self {
            Platform::Bare => "bare".into(),
            Platform::Nested { ipa_limit } => format!("nested{ipa_limit}"),
        }
    }

    /// Column label: `bare metal QEMU`, `nested KVM, IPA 48`.
    #[must_use]
    pub fn label(self) -> String {
        match self {
            Platform::Bare => "bare metal QEMU".into(),
            Platform::Nested { ipa_limit } => format!("nested KVM, IPA limit {ipa_limit}"),
        }
    }

    /// True for the rig.
    #[must_use]
    pub fn is_nested(self) -> bool {
        matches!(self, Platform::Nested { .. })
    }
}

/// hv's TLB policy (`tlb=` on its command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    /// Upstream Xen's flushes (VMALLS12E1IS after every p2m operation).
    XenCompat,
    /// `tlb=auto`: hv picks from the nesting verdict (targeted, nested-aware in the rig).
    Auto,
}

impl Policy {
    /// The `tlb=` value.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Policy::XenCompat => "xen-compat",
            Policy::Auto => "auto",
        }
    }

    /// Table label.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Policy::XenCompat => "xen-compat",
            Policy::Auto => "targeted (tlb=auto)",
        }
    }
}

/// What the control domain builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// guest-hello's Image plus zero-filled pages: `pages` domU pages written and unmapped.
    Pages(u64),
    /// Debian's arm64 kernel Image and a small busybox initrd into a 128 MiB domU.
    Realistic,
}

/// One boot: both remove variants under one policy on one platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// Where.
    pub platform: Platform,
    /// hv's TLB policy.
    pub policy: Policy,
    /// What d0 builds.
    pub workload: Workload,
    /// Repetition number (0-based): the matrix repeats some runs to show the noise.
    pub rep: u32,
}

impl RunSpec {
    /// File-name key, e.g. `nested48-xen-compat-p24` or `bare-auto-realistic-r1`.
    #[must_use]
    pub fn key(&self) -> String {
        let w = match self.workload {
            Workload::Pages(n) => format!("p{n}"),
            Workload::Realistic => "realistic".into(),
        };
        let r = if self.rep > 0 {
            format!("-r{}", self.rep)
        } else {
            String::new()
        };
        format!("{}-{}-{w}{r}", self.platform.key(), self.policy.word())
    }

    /// hv's command line.
    #[must_use]
    pub fn hv_cmdline(&self) -> String {
        format!("loglvl=info tlb={}", self.policy.word())
    }

    /// The control domain's bootargs (dom0-builder's words).
    #[must_use]
    pub fn dom0_args(&self) -> String {
        match self.workload {
            Workload::Pages(n) => {
                let mib = (n * 4096).div_ceil(1 << 20).max(16);
                format!("dom0 mem=32M variant=both domu-mem={mib}M pages={n} noboot")
            }
            Workload::Realistic => "dom0 mem=256M variant=both domu-mem=128M noboot".into(),
        }
    }
}

/// The matrix: page-scaling runs on every platform and policy, the realistic
/// workload on the optimized path (repeated `realistic_reps` times).
#[must_use]
pub fn plan(sizes: &Sizes) -> Vec<RunSpec> {
    let mut out = Vec::new();
    let mut add = |platform, policy, workload, rep| {
        out.push(RunSpec {
            platform,
            policy,
            workload,
            rep,
        });
    };
    let n48 = Platform::Nested { ipa_limit: 48 };
    let n52 = Platform::Nested { ipa_limit: 52 };
    let (xc, auto) = (Policy::XenCompat, Policy::Auto);
    let (small, large) = (
        Workload::Pages(sizes.xen_compat_48),
        Workload::Pages(sizes.pages),
    );
    // Cheap runs first: a broken build shows within minutes.
    for (policy, w) in [(xc, small), (xc, large), (auto, small), (auto, large)] {
        add(Platform::Bare, policy, w, 0);
    }
    for rep in 0..sizes.bare_reps {
        for policy in [xc, auto] {
            add(
                Platform::Bare,
                policy,
                Workload::Pages(sizes.bare_pages),
                rep,
            );
        }
    }
    for rep in 0..sizes.realistic_reps {
        add(Platform::Bare, auto, Workload::Realistic, rep);
    }
    add(n48, auto, large, 0);
    add(n52, auto, large, 0);
    // The realistic builds at IPA limits 48 and 52 alternate, so that other load on
    // the machine hits both alike; the checks use the fastest run of each.
    for rep in 0..sizes.realistic_reps {
        add(n48, auto, Workload::Realistic, rep);
        add(n52, auto, Workload::Realistic, rep);
    }
    add(n48, auto, small, 0);
    add(n52, auto, Workload::Pages(sizes.xen_compat_52), 0);
    add(n48, xc, small, 0);
    add(n52, xc, Workload::Pages(sizes.xen_compat_52), 0);
    out
}

/// Page counts of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Pages of the optimized-path scaling runs (all platforms) and of bare xen-compat.
    pub pages: u64,
    /// Pages of xen-compat in the rig at IPA limit 48 (about 2.6 s per page).
    pub xen_compat_48: u64,
    /// Pages of xen-compat in the rig at IPA limit 52 (about 33 s per page; the
    /// builder writes at least 5: guest-hello and the DTB).
    pub xen_compat_52: u64,
    /// Runs of each realistic cell.
    pub realistic_reps: u32,
    /// Pages of the large bare-metal runs (both policies; cheap there).
    pub bare_pages: u64,
    /// Runs of each large bare-metal cell.
    pub bare_reps: u32,
}

impl Sizes {
    /// The full matrix (30-40 minutes on a shared 2-core machine).
    pub const FULL: Sizes = Sizes {
        pages: 4096,
        xen_compat_48: 24,
        xen_compat_52: 5,
        realistic_reps: 3,
        bare_pages: 16384,
        bare_reps: 3,
    };
    /// A quick pass over every kind of cell (checks the tooling).
    pub const QUICK: Sizes = Sizes {
        pages: 256,
        xen_compat_48: 4,
        xen_compat_52: 5,
        realistic_reps: 1,
        bare_pages: 1024,
        bare_reps: 1,
    };
}

/// One `dom0: variant=` result line.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BuildLine {
    /// `single` or `batch`.
    pub variant: String,
    /// domU pages written and unmapped.
    pub pages: u64,
    /// Build time in microseconds (createdomain through setvcpucontext).
    pub build_us: u64,
    /// TLB operations by kind, in [`TLBI_KINDS`] order; `None` when hv_op was refused.
    pub tlbi: Option<[u64; 8]>,
    /// Stage-2 operations recorded.
    pub p2m_ops: u64,
    /// Flush plans executed.
    pub plans: u64,
    /// Guest exits hv handled.
    pub exits: u64,
    /// Hypercalls hv handled.
    pub hypercalls: u64,
}

fn kv<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Parses the text after `dom0: ` of a build result line (`variant=.. pages=..`);
/// `None` for other lines (e.g. `variant=batch d2 shut down ...`).
#[must_use]
pub fn parse_build_line(line: &str) -> Option<BuildLine> {
    let at = line.find("dom0: variant=")?;
    let words: Vec<&str> = line[at + 6..].split_whitespace().collect();
    let num = |k: &str| kv(&words, k).and_then(|v| v.parse::<u64>().ok());
    let variant = kv(&words, "variant")?.to_string();
    let pages = num("pages")?;
    let build_us = num("build_us")?;
    let tlbi = TLBI_KINDS
        .iter()
        .map(|k| num(k))
        .collect::<Option<Vec<u64>>>()
        .and_then(|v| <[u64; 8]>::try_from(v).ok());
    Some(BuildLine {
        variant,
        pages,
        build_us,
        tlbi,
        p2m_ops: num("p2m_ops").unwrap_or(0),
        plans: num("plans").unwrap_or(0),
        exits: num("exits").unwrap_or(0),
        hypercalls: num("hypercalls").unwrap_or(0),
    })
}

/// The CPU time stamp `rig-stamp` puts in front of a line (`   12.345678| ...`), in
/// microseconds: L0 QEMU's CPU time when the host read the line.
#[must_use]
pub fn cpu_stamp_us(line: &str) -> Option<u64> {
    let (head, _) = line.split_once("| ")?;
    let (s, us) = head.trim_start().split_once('.')?;
    if us.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().ok()? * 1_000_000 + us.parse::<u64>().ok()?)
}

/// A line without its `rig-stamp` CPU time prefix.
fn without_cpu_stamp(line: &str) -> &str {
    match (cpu_stamp_us(line), line.split_once("| ")) {
        (Some(_), Some((_, rest))) => rest,
        _ => line,
    }
}

/// The `L0=<n>` stamp the rig VMM puts in front of a line (`[  1.234567 L0=42] ...`),
/// after the CPU time prefix if there is one.
#[must_use]
pub fn l0_stamp(line: &str) -> Option<u64> {
    let rest = without_cpu_stamp(line).trim_start().strip_prefix('[')?;
    let (head, _) = rest.split_once(']')?;
    head.split_whitespace()
        .find_map(|w| w.strip_prefix("L0="))
        .and_then(|n| n.parse().ok())
}

/// A build and what the stamps around it say.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Build {
    /// The result line.
    pub line: BuildLine,
    /// Traps to L0 from the control domain's previous line to the result line (rig only).
    pub l0_traps: Option<u64>,
    /// CPU time L0 QEMU used over the same span, in microseconds (runs with `rig-stamp`).
    pub cpu_us: Option<u64>,
}

/// What one run's log says.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RunLog {
    /// hv's `platform:` verdict line (text after `hv: platform: `).
    pub verdict: Option<String>,
    /// hv's `tlb policy:` line (text after `tlb policy: `).
    pub policy: Option<String>,
    /// Builds, with the traps to L0 and L0 QEMU's CPU time of each.
    pub builds: Vec<Build>,
    /// `dom0: RESULT PASS` seen.
    pub passed: bool,
    /// `hv: all domains ended, powering off` seen.
    pub powered_off: bool,
    /// Full stage-2 flushes outside the builds: destroy lines and hv's power-off counters.
    pub full_flushes_elsewhere: u64,
}

fn full_flushes_in(words: &[&str]) -> u64 {
    FULL_FLUSH_KINDS
        .iter()
        .filter_map(|&i| kv(words, TLBI_KINDS[i]).and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// Reads a run's serial log.
#[must_use]
pub fn parse_log(text: &str) -> RunLog {
    let mut r = RunLog::default();
    let mut prev_d0_stamp: Option<u64> = None;
    let mut prev_d0_cpu: Option<u64> = None;
    for line in text.lines() {
        if let Some(i) = line.find("hv: platform: ") {
            r.verdict = Some(line[i + 14..].trim().to_string());
        }
        if let Some(i) = line.find("tlb policy: ") {
            r.policy = Some(line[i + 12..].trim().to_string());
        }
        if line.contains("hv: all domains ended, powering off") {
            r.powered_off = true;
        }
        if line.contains("dom0: RESULT PASS") {
            r.passed = true;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.contains("dom0: destroy ") || line.contains("hv: counters:") {
            r.full_flushes_elsewhere += full_flushes_in(&words);
        }
        if !line.contains("(d0) ") {
            continue;
        }
        let stamp = l0_stamp(line);
        let cpu = cpu_stamp_us(line);
        if let Some(b) = parse_build_line(line) {
            let since = |now: Option<u64>, before: Option<u64>| match (now, before) {
                (Some(now), Some(before)) => Some(now - before.min(now)),
                _ => None,
            };
            r.builds.push(Build {
                line: b,
                l0_traps: since(stamp, prev_d0_stamp),
                cpu_us: since(cpu, prev_d0_cpu),
            });
        }
        prev_d0_stamp = stamp;
        prev_d0_cpu = cpu;
    }
    r
}

/// One cell of the matrix: a build of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The run it came from.
    pub spec: RunSpec,
    /// The build.
    pub build: BuildLine,
    /// Traps to L0 during the build (rig only).
    pub l0_traps: Option<u64>,
    /// L0 QEMU's CPU time during the build, in microseconds.
    pub cpu_us: Option<u64>,
}

impl Cell {
    /// Microseconds per page.
    #[must_use]
    pub fn us_per_page(&self) -> f64 {
        self.build.build_us as f64 / self.build.pages.max(1) as f64
    }

    /// Full stage-2 flushes (VMALLS12E1IS, VMALLS12E1, ALLE1IS) in the build.
    #[must_use]
    pub fn full_flushes(&self) -> u64 {
        self.build
            .tlbi
            .map_or(0, |t| FULL_FLUSH_KINDS.iter().map(|&i| t[i]).sum())
    }

    /// `RIPAS2E1IS 7, VMALLE1IS 3` (non-zero kinds), `none`, or `n/a`.
    #[must_use]
    pub fn tlbi_text(&self) -> String {
        let Some(t) = self.build.tlbi else {
            return "n/a".into();
        };
        let parts: Vec<String> = TLBI_KINDS
            .iter()
            .zip(t)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.1} us")
    }
}

/// Cells ordered for the table: platform, workload, policy, variant, rep.
#[must_use]
pub fn sorted(cells: &[Cell]) -> Vec<&Cell> {
    let mut v: Vec<&Cell> = cells.iter().collect();
    v.sort_by_key(|c| {
        (
            c.spec.workload == Workload::Realistic,
            c.spec.platform,
            c.spec.workload,
            c.spec.policy,
            c.build.variant != "single",
            c.spec.rep,
        )
    });
    v
}

/// The markdown table of all cells.
#[must_use]
pub fn markdown_table(cells: &[Cell]) -> String {
    let mut s = String::new();
    s.push_str("| platform | policy | remove | workload | pages | build time | per page | L0 QEMU CPU | TLBIs (by kind) | traps to L0 | traps/page |\n");
    s.push_str("|---|---|---|---|---:|---:|---:|---:|---|---:|---:|\n");
    for c in sorted(cells) {
        let w = match c.spec.workload {
            Workload::Pages(_) => "pages".to_string(),
            Workload::Realistic => "realistic (Debian Image + initrd, 128 MiB)".into(),
        };
        let w = if c.spec.rep > 0 {
            format!("{w}, run {}", c.spec.rep + 1)
        } else {
            w
        };
        let remove = if c.build.variant == "single" {
            "per page"
        } else {
            "batch"
        };
        let (traps, per) = match c.l0_traps {
            Some(t) => (
                t.to_string(),
                format!("{:.2}", t as f64 / c.build.pages.max(1) as f64),
            ),
            None => ("n/a".into(), "n/a".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {remove} | {w} | {} | {} | {} | {} | {} | {traps} | {per} |",
            c.spec.platform.label(),
            c.spec.policy.label(),
            c.build.pages,
            fmt_us(c.build.build_us as f64),
            fmt_us(c.us_per_page()),
            c.cpu_us.map_or("n/a".into(), |u| fmt_us(u as f64)),
            c.tlbi_text(),
        );
    }
    s
}

/// One acceptance claim checked against the data.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The claim.
    pub claim: String,
    /// Whether the data supports it (`None`: the cells it needs are missing).
    pub pass: Option<bool>,
    /// The numbers.
    pub detail: String,
    /// Shown for comparison only: not one of the issue's acceptance claims (its result
    /// does not decide the run's exit status).
    pub info: bool,
}

impl Check {
    /// True when this is an acceptance claim the data contradicts.
    #[must_use]
    pub fn failed(&self) -> bool {
        !self.info && self.pass == Some(false)
    }
}

fn find<'a>(
    cells: &'a [Cell],
    platform: Platform,
    policy: Policy,
    realistic: bool,
    variant: &str,
) -> Vec<&'a Cell> {
    cells
        .iter()
        .filter(|c| {
            c.spec.platform == platform
                && c.spec.policy == policy
                && (c.spec.workload == Workload::Realistic) == realistic
                && c.build.variant == variant
        })
        .collect()
}

/// The fastest of repeated cells (the least disturbed by other load on the machine).
fn best<'a>(v: &[&'a Cell]) -> Option<&'a Cell> {
    v.iter().copied().min_by_key(|c| c.build.build_us)
}

/// The issue's acceptance claims about the matrix.
#[must_use]
pub fn checks(cells: &[Cell]) -> Vec<Check> {
    let n48 = Platform::Nested { ipa_limit: 48 };
    let n52 = Platform::Nested { ipa_limit: 52 };
    let mut out = Vec::new();

    // 1. Realistic build on the optimized path: IPA 52 <= 1.05 x IPA 48, in L0 QEMU's CPU
    // time (little disturbed by other load) and in wall time (the fastest of the runs).
    type Measure = (&'static str, fn(&Cell) -> Option<u64>);
    let measures: [Measure; 2] = [
        ("L0 QEMU CPU time, least of the runs", |c| c.cpu_us),
        ("wall time (d0's counter), fastest of the runs", |c| {
            Some(c.build.build_us)
        }),
    ];
    for variant in ["batch", "single"] {
        for (what, get) in measures {
            let least = |p| {
                find(cells, p, Policy::Auto, true, variant)
                    .iter()
                    .filter_map(|c| get(c))
                    .min()
            };
            let runs = |p| {
                find(cells, p, Policy::Auto, true, variant)
                    .iter()
                    .filter_map(|c| get(c).map(|v| fmt_us(v as f64)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            // The optimized path is the batch remove; the per-page remove is shown
            // next to it for comparison (5 traps to L0 per page, see the per-trap cost).
            let claim = if variant == "batch" {
                format!(
                    "optimized path (batch remove), realistic build: IPA limit 52 <= 1.05 x IPA limit 48 ({what})"
                )
            } else {
                format!(
                    "for comparison, targeted with per-page remove, realistic build: IPA limit 52 vs 1.05 x IPA limit 48 ({what})"
                )
            };
            // What the builds did at each limit: traps to L0 and the L0 CPU time per trap
            // (the builds are trap-bound in the rig, so this says whether a difference
            // comes from more work or from dearer traps).
            let per_trap = |p| {
                let v: Vec<(u64, u64)> = find(cells, p, Policy::Auto, true, variant)
                    .iter()
                    .filter_map(|c| Some((c.l0_traps?, c.cpu_us?)))
                    .collect();
                let traps = v.iter().map(|t| t.0).min()?;
                let us = v
                    .iter()
                    .map(|(t, c)| *c as f64 / (*t).max(1) as f64)
                    .fold(f64::INFINITY, f64::min);
                Some(format!("{traps} traps, {us:.1} us CPU per trap"))
            };
            out.push(match (least(n48), least(n52)) {
                (Some(a), Some(b)) => {
                    let r = b as f64 / a.max(1) as f64;
                    let traps = match (per_trap(n52), per_trap(n48)) {
                        (Some(x), Some(y)) => format!("; 52: {x}, 48: {y} (least of the runs)"),
                        _ => String::new(),
                    };
                    Check {
                        info: variant == "single",
                        claim,
                        pass: Some(r <= 1.05),
                        detail: format!(
                            "52: {} (runs: {}), 48: {} (runs: {}): ratio {r:.3}{traps}",
                            fmt_us(b as f64),
                            runs(n52),
                            fmt_us(a as f64),
                            runs(n48)
                        ),
                    }
                }
                _ => Check {
                    info: false,
                    claim,
                    pass: None,
                    detail: "cells missing".into(),
                },
            });
        }
    }

    // 2. Per page, xen-compat >= 100 x the optimized path in the nested columns.
    for p in [n48, n52] {
        for variant in ["single", "batch"] {
            let xc = best(&find(cells, p, Policy::XenCompat, false, variant));
            let opt: Vec<&Cell> = find(cells, p, Policy::Auto, false, variant);
            // Compare with the optimized cell of the largest page count (its per-page cost).
            let opt = opt.iter().copied().max_by_key(|c| c.build.pages);
            let claim = format!(
                "{}: per page, xen-compat ({variant} remove) >= 100 x optimized ({variant} remove)",
                p.label()
            );
            out.push(match (xc, opt) {
                (Some(x), Some(o)) => {
                    let r = x.us_per_page() / o.us_per_page().max(1e-9);
                    Check {
                        info: false,
                        claim,
                        pass: Some(r >= 100.0),
                        detail: format!(
                            "xen-compat {} per page ({} pages), optimized {} per page ({} pages): {r:.0}x",
                            fmt_us(x.us_per_page()),
                            x.build.pages,
                            fmt_us(o.us_per_page()),
                            o.build.pages
                        ),
                    }
                }
                _ => Check {
                    info: false,
                    claim,
                    pass: None,
                    detail: "cells missing".into(),
                },
            });
        }
    }

    // 3. The optimized path executes no full stage-2 flush.
    let opt: Vec<&Cell> = cells
        .iter()
        .filter(|c| c.spec.policy == Policy::Auto)
        .collect();
    let full: u64 = opt.iter().map(|c| c.full_flushes()).sum();
    let unknown = opt.iter().filter(|c| c.build.tlbi.is_none()).count();
    out.push(Check {
        info: false,
        claim: "optimized path: 0 VMALLS12E1* and 0 ALLE1* in every build".into(),
        pass: if opt.is_empty() || unknown > 0 {
            None
        } else {
            Some(full == 0)
        },
        detail: format!(
            "{} optimized builds, {full} full flushes, {unknown} without counters",
            opt.len()
        ),
    });

    // 4. Bare metal: the optimized path is no slower than xen-compat. Judged at
    // the largest page count both ran (at a handful of pages the fixed costs of
    // a build dominate and the two differ by noise), on the least of the runs,
    // in L0 QEMU's CPU time and in wall time; smaller counts are listed.
    for variant in ["single", "batch"] {
        for (what, get) in measures {
            let xc = find(cells, Platform::Bare, Policy::XenCompat, false, variant);
            let opt = find(cells, Platform::Bare, Policy::Auto, false, variant);
            let least = |v: &[&Cell], pages: u64| {
                v.iter()
                    .filter(|c| c.build.pages == pages)
                    .filter_map(|c| get(c))
                    .min()
            };
            let mut counts: Vec<u64> = xc.iter().map(|c| c.build.pages).collect();
            counts.sort_unstable_by(|a, b| b.cmp(a));
            counts.dedup();
            let pairs: Vec<(u64, u64, u64)> = counts
                .iter()
                .filter_map(|&n| Some((n, least(&opt, n)?, least(&xc, n)?)))
                .collect();
            let claim = format!(
                "bare metal: optimized ({variant} remove) no slower than xen-compat, largest page count ({what})"
            );
            let detail: Vec<String> = pairs
                .iter()
                .map(|(n, o, x)| {
                    format!(
                        "{n} pages: optimized {}, xen-compat {}",
                        fmt_us(*o as f64),
                        fmt_us(*x as f64)
                    )
                })
                .collect();
            out.push(Check {
                info: false,
                claim,
                pass: pairs.first().map(|(_, o, x)| o <= x),
                detail: if detail.is_empty() {
                    "cells missing".into()
                } else {
                    detail.join("; ")
                },
            });
        }
    }
    out
}

/// The checks as a markdown list.
#[must_use]
pub fn checks_markdown(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let mark = match (c.info, c.pass) {
            (true, Some(true)) => "INFO (within)",
            (true, Some(false)) => "INFO (above)",
            (_, Some(true)) => "PASS",
            (_, Some(false)) => "FAIL",
            (_, None) => "NOT CHECKED",
        };
        let _ = writeln!(s, "- **{mark}** {}: {}", c.claim, c.detail);
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An SVG plot: time per page (log scale) of every page-scaling cell, grouped
/// by platform, and the realistic build times.
#[must_use]
pub fn svg_plot(cells: &[Cell]) -> String {
    let scaling: Vec<&Cell> = sorted(cells)
        .into_iter()
        .filter(|c| matches!(c.spec.workload, Workload::Pages(_)))
        .collect();
    let realistic: Vec<&Cell> = sorted(cells)
        .into_iter()
        .filter(|c| c.spec.workload == Workload::Realistic)
        .collect();
    let bar_w = 22.0;
    let gap = 6.0;
    let left = 70.0;
    let top = 50.0;
    let h = 300.0;
    let n = scaling.len() + realistic.len();
    let width = left + (n as f64) * (bar_w + gap) + 60.0 + 40.0;
    let height = top + h + 190.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">domU build: time per page (log scale; bars labelled with pages), hv at EL2 vs vEL2</text>"#
    );
    // Log axis from 1 us to 100 s per page.
    let (lo, hi) = (0.0_f64, 8.0_f64);
    let y = |us: f64| top + h - (us.max(1.0).log10() - lo) / (hi - lo) * h;
    for e in 0..=8 {
        let yy = y(10f64.powi(e));
        let label = fmt_us(10f64.powi(e));
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.0}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{label}</text>"##,
            width - 20.0,
            left - 4.0,
            yy + 4.0
        );
    }
    let color = |c: &Cell| match (c.spec.policy, c.build.variant.as_str()) {
        (Policy::XenCompat, "single") => "#c0392b",
        (Policy::XenCompat, _) => "#e6a19a",
        (Policy::Auto, "single") => "#1f618d",
        (Policy::Auto, _) => "#85c1e9",
    };
    let mut x = left + gap;
    let mut last_platform = None;
    for c in &scaling {
        if last_platform != Some(c.spec.platform) {
            let _ = writeln!(
                s,
                r#"<text x="{x:.0}" y="{:.0}" font-size="12">{}</text>"#,
                top + h + 120.0,
                esc(&c.spec.platform.label())
            );
            last_platform = Some(c.spec.platform);
        }
        let v = c.us_per_page();
        let yy = y(v);
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{yy:.1}" width="{bar_w}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
            top + h - yy,
            color(c),
            esc(&format!(
                "{} {} {} remove, {} pages: {} per page",
                c.spec.platform.label(),
                c.spec.policy.label(),
                c.build.variant,
                c.build.pages,
                fmt_us(v)
            ))
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="end">{} p</text>"#,
            x + bar_w / 2.0 + 4.0,
            top + h + 6.0,
            c.build.pages
        );
        x += bar_w + gap;
    }
    // Realistic builds: a second group on the same per-page axis.
    if !realistic.is_empty() {
        x += 20.0;
        let _ = writeln!(
            s,
            r#"<text x="{x:.0}" y="{:.0}" font-size="12">realistic (Debian Image), per page</text>"#,
            top + h + 120.0
        );
        for c in &realistic {
            let v = c.us_per_page();
            let yy = y(v);
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{yy:.1}" width="{bar_w}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
                top + h - yy,
                color(c),
                esc(&format!(
                    "realistic {} {} remove, {} pages: {} total, {} per page",
                    c.spec.platform.label(),
                    c.build.variant,
                    c.build.pages,
                    fmt_us(c.build.build_us as f64),
                    fmt_us(v)
                ))
            );
            let _ = writeln!(
                s,
                r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="end">{}</text>"#,
                x + bar_w / 2.0 + 4.0,
                top + h + 6.0,
                esc(&c.spec.platform.key())
            );
            x += bar_w + gap;
        }
    }
    // Legend.
    let ly = top + h + 145.0;
    for (i, (label, col)) in [
        ("xen-compat, per-page remove", "#c0392b"),
        ("xen-compat, batch remove", "#e6a19a"),
        ("targeted (tlb=auto), per-page remove", "#1f618d"),
        ("targeted (tlb=auto), batch remove", "#85c1e9"),
    ]
    .iter()
    .enumerate()
    {
        let lx = left + (i as f64) * 230.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.0}" y="{ly:.0}" width="12" height="12" fill="{col}"/><text x="{:.0}" y="{:.0}">{label}</text>"#,
            lx + 16.0,
            ly + 10.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Today's date (UTC) as `YYYY-MM-DD`, from seconds since the Unix epoch
/// (the civil-from-days algorithm).
#[must_use]
pub fn date_utc(unix_secs: u64) -> String {
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RIG_LOG: &str = "\
[    0.239572 L0=700] hv: platform: nested under KVM (SMCCC hyp UID = KVM; ID reg read 347x local (trapped))
[    0.326750 L0=760] hv: tlb policy: Targeted { has_range: true, nested: true } (tlb=Auto)
[    2.256223 L0=830] (d0) dom0: RAM 0x40000000+0x10000000, scratch 0x400a3000+0xcce7000, CNTFRQ 1000000000 Hz, domU RAM 128 MiB
[    2.268681 L0=837] hv: d1: created by domctl, VMID 2
[    8.118245 L0=51039] (d0) dom0: variant=single pages=12406 build_ticks=5795589107 build_us=5795589 tlbi: IPAS2E1IS=0 RIPAS2E1IS=0 VMALLE1IS=0 VMALLE1=0 VMALLS12E1IS=0 VMALLS12E1=0 ALLE1IS=0 IC_IALLU=0 total=0 p2m_ops=12406 plans=12432 exits=12437 hypercalls=12437
[    8.155929 L0=51045] (d0) dom0: d1 built: kernel at 0x40000000 (48832448 bytes)
[    8.231096 L0=51064] (d0) dom0: destroy variant=single domid=1 destroy_ticks=10271845 destroy_us=10271 tlbi: IPAS2E1IS=0 RIPAS2E1IS=0 VMALLE1IS=0 VMALLE1=0 VMALLS12E1IS=0 VMALLS12E1=0 ALLE1IS=0 IC_IALLU=0 total=0 p2m_ops=0 plans=0 exits=2 hypercalls=2
[    8.243693 L0=51075] hv: d2: created by domctl, VMID 3
[    9.341605 L0=63804] (d0) dom0: variant=batch pages=12406 build_ticks=1046803150 build_us=1046803 tlbi: IPAS2E1IS=0 RIPAS2E1IS=7 VMALLE1IS=3 VMALLE1=0 VMALLS12E1IS=0 VMALLS12E1=0 ALLE1IS=0 IC_IALLU=0 total=10 p2m_ops=12406 plans=52 exits=56 hypercalls=56
[    9.378168 L0=63808] (d0) dom0: variant=batch d2 shut down with code 0: PASS
[    9.456192 L0=63827] (d0) dom0: RESULT PASS
[    9.513749 L0=63837] hv: counters: IPAS2E1IS=0 RIPAS2E1IS=1 VMALLE1IS=1 VMALLE1=0 VMALLS12E1IS=2 VMALLS12E1=0 ALLE1IS=0 IC_IALLU=0 p2m_ops=0 plans=1 guest_exits=6 hypercalls=6
[    9.6 L0=63840] hv: all domains ended, powering off
";

    #[test]
    fn parses_a_rig_log() {
        let r = parse_log(RIG_LOG);
        assert!(r
            .verdict
            .as_deref()
            .unwrap()
            .starts_with("nested under KVM ("));
        assert!(r.policy.as_deref().unwrap().contains("nested: true"));
        assert!(r.passed && r.powered_off);
        assert_eq!(r.builds.len(), 2);
        let (s, t) = (&r.builds[0].line, &r.builds[0].l0_traps);
        assert_eq!(r.builds[0].cpu_us, None);
        assert_eq!(
            (s.variant.as_str(), s.pages, s.build_us),
            ("single", 12406, 5_795_589)
        );
        assert_eq!(s.tlbi, Some([0; 8]));
        assert_eq!(
            (s.p2m_ops, s.plans, s.exits, s.hypercalls),
            (12406, 12432, 12437, 12437)
        );
        // From the RAM line (830) to the result line (51039): the hv line between does not count.
        assert_eq!(*t, Some(51039 - 830));
        let (b, t) = (&r.builds[1].line, &r.builds[1].l0_traps);
        assert_eq!(b.variant, "batch");
        assert_eq!(b.tlbi, Some([0, 7, 3, 0, 0, 0, 0, 0]));
        assert_eq!(*t, Some(63804 - 51064));
        // The power-off counters carry 2 VMALLS12E1IS.
        assert_eq!(r.full_flushes_elsewhere, 2);
    }

    #[test]
    fn parses_a_bare_log_and_refused_counters() {
        let r = parse_log(
            "hv: platform: bare metal (SMCCC hyp UID not supported)\n\
             (d0) dom0: variant=single pages=5 build_ticks=1 build_us=84 tlbi: unavailable(-1) \n\
             (d0) dom0: variant=batch pages=x build_us=84\n",
        );
        assert_eq!(
            r.verdict.as_deref(),
            Some("bare metal (SMCCC hyp UID not supported)")
        );
        assert_eq!(r.builds.len(), 1);
        assert_eq!(r.builds[0].line.tlbi, None);
        assert_eq!(r.builds[0].l0_traps, None);
        assert!(!r.passed);
    }

    #[test]
    fn cpu_stamped_log() {
        let log = "    1.500000| [    2.256223 L0=830] (d0) dom0: RAM 0x40000000+0x10000000\n\
                   \x20   9.000000| [    2.268681 L0=837] hv: d1: created by domctl, VMID 2\n\
                   \x20  11.250000| [    8.118245 L0=51039] (d0) dom0: variant=batch pages=4 build_us=10 tlbi: IPAS2E1IS=0 RIPAS2E1IS=1 VMALLE1IS=1 VMALLE1=0 VMALLS12E1IS=0 VMALLS12E1=0 ALLE1IS=0 IC_IALLU=0 total=2\n";
        let r = parse_log(log);
        assert_eq!(r.builds.len(), 1);
        assert_eq!(r.builds[0].l0_traps, Some(51039 - 830));
        assert_eq!(r.builds[0].cpu_us, Some(9_750_000));
        assert_eq!(cpu_stamp_us("   12.345678| x"), Some(12_345_678));
        assert_eq!(cpu_stamp_us("[    8.118245 L0=5] a| b"), None);
        assert_eq!(l0_stamp("   12.345678| [    8.1 L0=7] x"), Some(7));
    }

    #[test]
    fn stamps() {
        assert_eq!(l0_stamp("[    8.118245 L0=51039] (d0) x"), Some(51039));
        assert_eq!(l0_stamp("[    8.118245] (d0) x L0=5"), None);
        assert_eq!(l0_stamp("(d0) x"), None);
    }

    fn cell(
        platform: Platform,
        policy: Policy,
        w: Workload,
        variant: &str,
        pages: u64,
        us: u64,
    ) -> Cell {
        Cell {
            spec: RunSpec {
                platform,
                policy,
                workload: w,
                rep: 0,
            },
            build: BuildLine {
                variant: variant.into(),
                pages,
                build_us: us,
                tlbi: Some([1, 0, 1, 0, 0, 0, 0, 0]),
                ..BuildLine::default()
            },
            l0_traps: None,
            cpu_us: Some(us / 2),
        }
    }

    #[test]
    fn acceptance_checks() {
        let n48 = Platform::Nested { ipa_limit: 48 };
        let n52 = Platform::Nested { ipa_limit: 52 };
        let mut cells = Vec::new();
        for v in ["single", "batch"] {
            cells.push(cell(
                n48,
                Policy::Auto,
                Workload::Realistic,
                v,
                12000,
                1_000_000,
            ));
            cells.push(cell(
                n52,
                Policy::Auto,
                Workload::Realistic,
                v,
                12000,
                1_040_000,
            ));
            for p in [n48, n52] {
                cells.push(cell(
                    p,
                    Policy::Auto,
                    Workload::Pages(4096),
                    v,
                    4096,
                    409_600,
                ));
                cells.push(cell(
                    p,
                    Policy::XenCompat,
                    Workload::Pages(24),
                    v,
                    24,
                    24 * 2_600_000,
                ));
            }
            cells.push(cell(
                Platform::Bare,
                Policy::Auto,
                Workload::Pages(4096),
                v,
                4096,
                40_000,
            ));
            cells.push(cell(
                Platform::Bare,
                Policy::XenCompat,
                Workload::Pages(4096),
                v,
                4096,
                41_000,
            ));
        }
        let c = checks(&cells);
        assert!(c.iter().all(|c| c.pass == Some(true)), "{c:#?}");
        assert!(c.iter().all(|c| !c.failed()));
        // A slow IPA-52 realistic build (per-page remove) fails its check.
        cells[1].build.build_us = 1_100_000;
        // A full flush on the optimized path fails its check.
        cells[2].build.tlbi = Some([0, 0, 0, 0, 1, 0, 0, 0]);
        let c = checks(&cells);
        // Checks 0..4: batch (CPU, wall), single (CPU, wall); only the single wall time grew.
        assert_eq!(c[0].pass, Some(true), "{c:#?}");
        assert_eq!(c[2].pass, Some(true), "{c:#?}");
        assert_eq!(c[3].pass, Some(false), "{c:#?}");
        // ... which is the per-page comparison, not an acceptance claim.
        assert!(c[3].info && !c[3].failed() && !c[0].info);
        assert!(c
            .iter()
            .any(|x| x.claim.contains("0 VMALLS12E1") && x.pass == Some(false)));
        let md = checks_markdown(&c);
        assert!(md.contains("**FAIL**") && md.contains("**PASS**"));
        // Missing cells are reported as not checked.
        assert!(checks(&[]).iter().all(|c| c.pass.is_none()));
    }

    #[test]
    fn table_and_plot() {
        let mut c = cell(
            Platform::Nested { ipa_limit: 48 },
            Policy::XenCompat,
            Workload::Pages(24),
            "single",
            24,
            62_400_000,
        );
        c.build.tlbi = Some([0, 0, 0, 0, 24, 0, 0, 0]);
        c.l0_traps = Some(480);
        let md = markdown_table(&[c.clone()]);
        assert!(
            md.contains("| nested KVM, IPA limit 48 | xen-compat | per page | pages | 24 | 62.40 s | 2.60 s | 31.20 s | VMALLS12E1IS 24 | 480 | 20.00 |"),
            "{md}"
        );
        let svg = svg_plot(&[c]);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("2.60 s per page"));
    }

    #[test]
    fn plan_and_args() {
        let p = plan(&Sizes::FULL);
        let keys: Vec<String> = p.iter().map(RunSpec::key).collect();
        assert!(
            keys.contains(&"nested52-xen-compat-p5".to_string()),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"nested48-auto-realistic-r1".to_string()),
            "{keys:?}"
        );
        let uniq: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(uniq.len(), keys.len());
        let r = p
            .iter()
            .find(|s| s.workload == Workload::Realistic)
            .unwrap();
        assert_eq!(
            r.dom0_args(),
            "dom0 mem=256M variant=both domu-mem=128M noboot"
        );
        let s = RunSpec {
            platform: Platform::Bare,
            policy: Policy::Auto,
            workload: Workload::Pages(8192),
            rep: 0,
        };
        assert_eq!(
            s.dom0_args(),
            "dom0 mem=32M variant=both domu-mem=32M pages=8192 noboot"
        );
        assert_eq!(s.hv_cmdline(), "loglvl=info tlb=auto");
    }

    #[test]
    fn dates() {
        assert_eq!(date_utc(0), "1970-01-01");
        assert_eq!(date_utc(951_782_400), "2000-02-29");
        assert_eq!(date_utc(1_795_219_200), "2026-11-21");
    }
}
