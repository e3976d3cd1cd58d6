//! `hvrun domu`: the issue-3 acceptance run. hv boots the control-domain
//! payload (`dom0-builder`) as d0 with an images blob (DESIGN.md, "Images
//! blob") as its ramdisk; d0 builds domUs through Xen's domctl/memory_op
//! path, prints one line per build and destroy with hv's counters, runs the
//! bad-input checks, the destroy loop and, last, the stale-TLB read (which
//! must end d0 with a stage-2 fault). This module builds the blob and the
//! DTB, runs QEMU (bare, `-smp 2` by default) once per [`RunSpec`], parses
//! the `(d0) dom0: ...` lines and asserts the counts ([`check`]).
//!
//! Workloads: `small` (guest-hello, booted: it must pass its checks) and
//! `realistic` (Debian's arm64 kernel Image, fetched and SHA-256 checked by
//! `tests-nested/rig/fetch-l1.sh`, plus a generated 1 MiB initrd, built into
//! a 128 MiB domU without booting it, as `xl create` copies them).

use crate::markers::Expectations;
use crate::qemu::{self, End};
use crate::toolchain::{self, Paths};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// hv's TLB policies compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tlb {
    /// `tlb=targeted`.
    Targeted,
    /// `tlb=xen-compat`.
    XenCompat,
}

impl Tlb {
    /// The `tlb=` value.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Tlb::Targeted => "targeted",
            Tlb::XenCompat => "xen-compat",
        }
    }
}

/// What d0 copies into the domU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Workload {
    /// guest-hello (booted).
    Small,
    /// Debian's Image + 1 MiB initrd into 128 MiB (not booted).
    Realistic,
}

impl Workload {
    /// Its name in output.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Workload::Small => "small",
            Workload::Realistic => "realistic",
        }
    }
}

/// One QEMU run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// Log and DTB name.
    pub name: &'static str,
    /// hv's policy.
    pub tlb: Tlb,
    /// The images.
    pub workload: Workload,
    /// d0's bootargs (dom0-builder's command line).
    pub dom0_args: &'static str,
    /// d0 runs the bad-input checks.
    pub negative: bool,
    /// d0 runs this many create/destroy rounds.
    pub destroy_loop: u32,
    /// d0 foreign-maps until hv's heap answers -ENOMEM.
    pub heap_exhaust: bool,
    /// The stale-TLB variant d0 runs last (`single` or `batch`).
    pub stale: &'static str,
}

/// The four runs of the acceptance test.
#[must_use]
pub fn runs() -> Vec<RunSpec> {
    vec![
        RunSpec {
            name: "domu-targeted-small",
            tlb: Tlb::Targeted,
            workload: Workload::Small,
            dom0_args: "dom0 mem=64M variant=both domu-mem=16M negative-tests destroy-loop=100 heap-exhaust stale-test=single",
            negative: true,
            destroy_loop: 100,
            heap_exhaust: true,
            stale: "single",
        },
        RunSpec {
            name: "domu-targeted-realistic",
            tlb: Tlb::Targeted,
            workload: Workload::Realistic,
            dom0_args: "dom0 mem=256M variant=both domu-mem=128M noboot stale-test=batch",
            negative: false,
            destroy_loop: 0,
            heap_exhaust: false,
            stale: "batch",
        },
        RunSpec {
            name: "domu-xen-compat-small",
            tlb: Tlb::XenCompat,
            workload: Workload::Small,
            dom0_args: "dom0 mem=64M variant=both domu-mem=16M stale-test=batch",
            negative: false,
            destroy_loop: 0,
            heap_exhaust: false,
            stale: "batch",
        },
        RunSpec {
            name: "domu-xen-compat-realistic",
            tlb: Tlb::XenCompat,
            workload: Workload::Realistic,
            dom0_args: "dom0 mem=256M variant=both domu-mem=128M noboot stale-test=single",
            negative: false,
            destroy_loop: 0,
            heap_exhaust: false,
            stale: "single",
        },
    ]
}

/// The images blob (DESIGN.md): `"HVIMG001"`, `u32 count`, `u32 reserved`,
/// `count` entries `{ name[16], u64 offset, u64 size }`, images 4 KiB aligned.
///
/// # Errors
/// A name longer than 15 bytes.
pub fn images_blob(images: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
    const ALIGN: usize = 4096;
    let header = 16 + 32 * images.len();
    let mut at = header.div_ceil(ALIGN) * ALIGN;
    let mut table = Vec::new();
    for (name, data) in images {
        if name.len() > 15 {
            return Err(format!("image name `{name}` longer than 15 bytes"));
        }
        table.push((name, at, data));
        at = (at + data.len()).div_ceil(ALIGN) * ALIGN;
    }
    let mut b = vec![0u8; at];
    b[..8].copy_from_slice(b"HVIMG001");
    b[8..12].copy_from_slice(&(images.len() as u32).to_le_bytes());
    for (i, (name, off, data)) in table.iter().enumerate() {
        let e = 16 + 32 * i;
        b[e..e + name.len()].copy_from_slice(name.as_bytes());
        b[e + 16..e + 24].copy_from_slice(&(*off as u64).to_le_bytes());
        b[e + 24..e + 32].copy_from_slice(&(data.len() as u64).to_le_bytes());
        b[*off..*off + data.len()].copy_from_slice(data);
    }
    Ok(b)
}

/// A deterministic pseudo-random initrd of `len` bytes (xorshift64).
#[must_use]
pub fn generated_initrd(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// `key=value` words of a line (the `tlbi:` word is skipped).
#[must_use]
pub fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One `dom0: variant=..` build line or `dom0: destroy variant=..` line.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Counts {
    /// `single` or `batch`.
    pub variant: String,
    /// Pages copied (build lines).
    pub pages: u64,
    /// Build or destroy time in microseconds (guest CNTVCT).
    pub us: u64,
    /// TLBIs by kind, plus `total`, `plans`, `p2m_ops`, ...
    pub c: BTreeMap<String, u64>,
}

impl Counts {
    fn parse(line: &str, time_key: &str) -> Option<Counts> {
        let f = fields(line);
        let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
        let c: BTreeMap<String, u64> = f
            .iter()
            .filter(|(k, _)| {
                k.chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
                    || matches!(
                        k.as_str(),
                        "total" | "plans" | "p2m_ops" | "exits" | "hypercalls"
                    )
            })
            .filter_map(|(k, v)| Some((k.clone(), v.parse().ok()?)))
            .collect();
        c.get("total")?;
        Some(Counts {
            variant: f.get("variant")?.clone(),
            pages: num("pages").unwrap_or(0),
            us: num(time_key)?,
            c,
        })
    }

    /// A counter (0 if absent).
    #[must_use]
    pub fn get(&self, k: &str) -> u64 {
        self.c.get(k).copied().unwrap_or(0)
    }

    /// `VMALLS12E1IS + VMALLS12E1 + ALLE1IS`: flushes of a whole VMID or more.
    #[must_use]
    pub fn full(&self) -> u64 {
        pv_tlb::TlbOpKind::ALL
            .iter()
            .filter(|k| k.is_full_stage2())
            .map(|k| self.get(k.mnemonic()))
            .sum()
    }
}

/// What one run's log says.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Build lines, in order.
    pub builds: Vec<Counts>,
    /// Destroy lines, in order.
    pub destroys: Vec<Counts>,
    /// Every problem found.
    pub problems: Vec<String>,
    /// Checks that passed (one line each).
    pub passed: Vec<String>,
}

/// The `(d0) ` console lines of d0 without the prefix.
fn d0(lines: &[String]) -> impl Iterator<Item = &str> {
    lines.iter().filter_map(|l| l.strip_prefix("(d0) "))
}

/// Check one run's serial log against the acceptance rules.
#[must_use]
pub fn check(spec: &RunSpec, lines: &[String]) -> Report {
    let mut r = Report::default();
    let ok = |r: &mut Report, cond: bool, what: String| {
        if cond {
            r.passed.push(what);
        } else {
            r.problems.push(what);
        }
    };
    for l in d0(lines) {
        if l.starts_with("dom0: destroy variant=") {
            if let Some(c) = Counts::parse(l, "destroy_us") {
                r.destroys.push(c);
            }
        } else if l.starts_with("dom0: variant=") && l.contains(" pages=") {
            if let Some(c) = Counts::parse(l, "build_us") {
                r.builds.push(c);
            }
        }
    }
    let variants = ["single", "batch"];
    for v in variants {
        let Some(b) = r.builds.iter().find(|b| b.variant == v).cloned() else {
            r.problems.push(format!("no build line for variant={v}"));
            continue;
        };
        let total = b.get("total");
        let what = |rule: &str| {
            format!(
                "{} {} {v}: {rule} (pages={} total={total} VMALLS12E1IS={} ALLE1IS={})",
                spec.workload.name(),
                spec.tlb.name(),
                b.pages,
                b.get("VMALLS12E1IS"),
                b.get("ALLE1IS")
            )
        };
        ok(&mut r, b.pages > 0, what("pages copied"));
        match (spec.tlb, v) {
            (Tlb::Targeted, "batch") => {
                let limit = b.pages / 512 + 16;
                ok(
                    &mut r,
                    b.get("VMALLS12E1IS") + b.get("VMALLS12E1") == 0 && b.get("ALLE1IS") == 0,
                    what("0 VMALLS12E1* and 0 ALLE1* during the build"),
                );
                ok(
                    &mut r,
                    total <= limit,
                    what(&format!("at most pages/512 + 16 = {limit} TLBIs")),
                );
            }
            (Tlb::Targeted, _) => {
                ok(
                    &mut r,
                    total <= 64,
                    what("unbatched removes coalesced: at most 64 TLBIs"),
                );
            }
            (Tlb::XenCompat, "single") => {
                ok(
                    &mut r,
                    b.get("VMALLS12E1IS") == b.pages,
                    what("exactly one VMALLS12E1IS per removed page"),
                );
            }
            (Tlb::XenCompat, _) => {}
        }
    }
    let destroys = r.destroys.clone();
    for d in &destroys {
        let line = format!(
            "destroy after {} {}: at most one full flush (full={})",
            d.variant,
            spec.tlb.name(),
            d.full()
        );
        ok(&mut r, d.full() <= 1, line);
    }
    if r.destroys.len() < 2 {
        r.problems
            .push(format!("{} destroy lines (want 2)", r.destroys.len()));
    }
    if spec.workload == Workload::Small {
        for v in variants {
            let booted = d0(lines).any(|l| {
                l.starts_with(&format!("dom0: variant={v} d"))
                    && l.contains("shut down with code 0: PASS")
            });
            ok(
                &mut r,
                booted,
                format!("small domU ({v}) booted, passed its checks and powered off"),
            );
        }
        let hello = lines
            .iter()
            .filter(|l| l.contains(") guest-hello: all checks passed"))
            .count();
        ok(
            &mut r,
            hello >= 2,
            format!("guest-hello's checks passed in {hello} domUs (want 2)"),
        );
    }
    if spec.negative {
        let pass = d0(lines)
            .filter(|l| l.starts_with("dom0: negative: ") && l.contains(": PASS"))
            .count();
        let fail = d0(lines)
            .filter(|l| l.starts_with("dom0: negative: ") && l.contains(": FAIL"))
            .count();
        ok(
            &mut r,
            pass >= 6 && fail == 0,
            format!("negative tests: {pass} PASS, {fail} FAIL"),
        );
    }
    if spec.destroy_loop > 0 {
        let free = d0(lines).any(|l| {
            l.starts_with("dom0: destroy-loop free_pages before=") && l.ends_with(": PASS")
        });
        ok(
            &mut r,
            free,
            "destroy loop: free pages back to their start count".into(),
        );
        let flushes = d0(lines)
            .any(|l| l.starts_with("dom0: destroy-loop full flushes") && l.ends_with(": PASS"));
        ok(
            &mut r,
            flushes,
            "destroy loop: at most one full flush per domain".into(),
        );
        // hv: "d<N> destroyed (<k> VMIDs in use)"; the loop's destroys are the
        // last `destroy_loop` of them before its summary line.
        let end = lines
            .iter()
            .position(|l| l.contains("dom0: destroy-loop n="))
            .unwrap_or(lines.len());
        let vmids: Vec<&str> = lines[..end]
            .iter()
            .filter_map(|l| {
                let l = l.strip_prefix("hv: d")?;
                let (_, rest) = l.split_once(" destroyed (")?;
                rest.split_whitespace().next()
            })
            .collect();
        let n = spec.destroy_loop as usize;
        let tail = &vmids[vmids.len().saturating_sub(n)..];
        let same = tail.len() == n && tail.windows(2).all(|w| w[0] == w[1]);
        ok(
            &mut r,
            same,
            format!(
                "destroy loop: VMIDs in use back to their start count after each of {n} destroys ({:?}..{:?})",
                tail.first(),
                tail.last()
            ),
        );
    }
    if spec.heap_exhaust {
        let enomem = d0(lines).any(|l| {
            l.starts_with("dom0: negative: heap exhaustion -> -ENOMEM, hv keeps running: PASS")
        });
        let mapped = d0(lines)
            .find_map(|l| l.strip_prefix("dom0: heap-exhaust: "))
            .unwrap_or("no heap-exhaust line");
        ok(
            &mut r,
            enomem,
            format!(
                "heap exhaustion by foreign maps: -ENOMEM, unmapped, a domU built again ({mapped})"
            ),
        );
    }
    let announced = d0(lines)
        .position(|l| l.starts_with(&format!("dom0: stale-test={}: reading IPA", spec.stale)));
    let faulted = lines
        .iter()
        .position(|l| l.starts_with("hv: d0 ended (stage-2 fault at IPA"));
    let stale = lines
        .iter()
        .any(|l| l.contains("dom0: STALE READ SUCCEEDED"));
    ok(
        &mut r,
        announced.is_some() && faulted.is_some() && !stale,
        format!(
            "stale-TLB test ({}, {}): the read after remove + console line faults",
            spec.stale,
            spec.tlb.name()
        ),
    );
    let fails: Vec<&str> = d0(lines)
        .filter(|l| l.starts_with("dom0: FAIL") || l.starts_with("dom0: RESULT FAIL"))
        .collect();
    for f in fails {
        r.problems.push(format!("d0 reported: {f}"));
    }
    r
}

/// The serial markers of a run (order) and what must never appear.
fn expectations(spec: &RunSpec) -> Expectations {
    Expectations::new()
        .then(crate::scenario::BANNER)
        .then(&format!(
            "(d0) dom0: stale-test={}: reading IPA",
            spec.stale
        ))
        .then("hv: d0 ended (stage-2 fault at IPA")
        .then(crate::scenario::ALL_ENDED)
        .never("panicked at")
        .never("hv: ERROR: panic on CPU")
        .never("hv: ERROR: unexpected * exception at EL2")
        .never("hv: ERROR: stack overflow on CPU")
        .never("STALE READ SUCCEEDED")
}

/// A table row per build and destroy line.
#[must_use]
pub fn table_rows(spec: &RunSpec, r: &Report) -> Vec<String> {
    let kinds = [
        "IPAS2E1IS",
        "RIPAS2E1IS",
        "VMALLE1IS",
        "VMALLS12E1IS",
        "ALLE1IS",
    ];
    let mut rows = Vec::new();
    for (what, list) in [("build", &r.builds), ("destroy", &r.destroys)] {
        for c in list {
            let mut s = format!(
                "| {} | {} | {} | {} | {} | {:.1} ms |",
                spec.workload.name(),
                spec.tlb.name(),
                c.variant,
                what,
                if what == "build" {
                    c.pages.to_string()
                } else {
                    "-".into()
                },
                c.us as f64 / 1000.0
            );
            for k in kinds {
                let _ = write!(s, " {} |", c.get(k));
            }
            let _ = write!(s, " {} | {} |", c.get("total"), c.get("plans"));
            rows.push(s);
        }
    }
    rows
}

/// Header of [`table_rows`].
pub const TABLE_HEADER: &str = "| workload | tlb= | unmap | phase | pages | time (guest CNTVCT) | IPAS2E1IS | RIPAS2E1IS | VMALLE1IS | VMALLS12E1IS | ALLE1IS | TLBIs total | plans |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|";

/// `hvrun domu` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomuOptions {
    /// CPUs.
    pub smp: u32,
    /// Per-run QEMU timeout.
    pub timeout: Duration,
    /// Use the last build.
    pub no_build: bool,
    /// Only runs whose name contains this.
    pub only: Option<String>,
    /// The kernel Image of the realistic workload (default: fetch-l1.sh's).
    pub image: Option<PathBuf>,
}

/// Usage of `hvrun domu`.
pub const USAGE: &str = "\
usage: hvrun domu [--smp N] [--timeout SECS] [--no-build] [--only NAME] [--image PATH]

Builds hv, guest-hello and dom0-builder, then runs hv under QEMU four times
(tlb=targeted and tlb=xen-compat, each with the small and the realistic
workload); d0 builds domUs through domctl/memory_op and prints hv's counters;
the run asserts the TLB invalidation counts (README) and prints a table of them.
--only NAME runs only the runs whose name contains NAME (e.g. `small`);
--image PATH uses PATH as the realistic kernel instead of Debian's Image
fetched by tests-nested/rig/fetch-l1.sh. Default: --smp 2 --timeout 600.";

/// Parse `hvrun domu` arguments (after `domu`).
///
/// # Errors
/// A message for an unknown option or a bad value.
pub fn parse_args(args: &[String]) -> Result<DomuOptions, String> {
    let mut o = DomuOptions {
        smp: 2,
        timeout: Duration::from_secs(600),
        no_build: false,
        only: None,
        image: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |n: &str| it.next().cloned().ok_or(format!("{n} needs a value"));
        match a.as_str() {
            "--smp" => {
                o.smp = value("--smp")?
                    .parse()
                    .ok()
                    .filter(|n| (1..=8).contains(n))
                    .ok_or("--smp wants 1..=8")?;
            }
            "--timeout" => {
                o.timeout = Duration::from_secs(
                    value("--timeout")?
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or("--timeout wants seconds > 0")?,
                );
            }
            "--no-build" => o.no_build = true,
            "--only" => o.only = Some(value("--only")?),
            "--image" => o.image = Some(PathBuf::from(value("--image")?)),
            other => return Err(format!("unknown option `{other}`\n\n{USAGE}")),
        }
    }
    Ok(o)
}

fn run_cmd(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Build dom0-builder and its flat image `Paths::flat("dom0-builder")`
/// (hv and the other payloads come from `toolchain::build`).
///
/// # Errors
/// A message naming the step that failed.
pub fn build_dom0(paths: &Paths) -> Result<(), String> {
    run_cmd(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&paths.repo)
            .env("CARGO_TARGET_DIR", &paths.target)
            .args([
                "build",
                "--release",
                "--target",
                toolchain::TARGET,
                "-p",
                "dom0-builder",
            ]),
        "cargo build -p dom0-builder",
    )?;
    let objcopy = toolchain::objcopy(paths)?;
    run_cmd(
        Command::new(objcopy)
            .args(["-O", "binary"])
            .arg(paths.elf("dom0-builder"))
            .arg(paths.flat("dom0-builder")),
        "llvm-objcopy dom0-builder",
    )?;
    Ok(())
}

/// Debian's Image through fetch-l1.sh (cached, SHA-256 checked).
fn debian_image(paths: &Paths) -> Result<PathBuf, String> {
    let script = paths.repo.join("tests-nested/rig/fetch-l1.sh");
    // Its progress (apt's download lines) goes to the terminal: a first run downloads ~13 MB.
    let out = run_cmd(
        Command::new("bash")
            .arg(&script)
            .stderr(std::process::Stdio::inherit()),
        "tests-nested/rig/fetch-l1.sh",
    )?;
    out.lines()
        .find_map(|l| l.strip_prefix("L1_IMAGE="))
        .map(PathBuf::from)
        .ok_or_else(|| format!("{}: no L1_IMAGE= line", script.display()))
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
}

/// The DTB of a control-domain run, `<out>/<name>.dtb`: QEMU's own DTB with
/// d0's module (`multiboot,kernel`, `dom0_args` as its bootargs) at
/// `mods[0]` = (address, size) and the images blob as the
/// `multiboot,ramdisk` module right after it at `mods[1]`, and hv's command
/// line `xen_bootargs`. (h8's timing matrix uses it too.)
///
/// # Errors
/// A message naming the step that failed (QEMU dumpdtb, dtc).
pub fn dom0_dtb(
    paths: &Paths,
    name: &str,
    smp: u32,
    dom0_args: &str,
    xen_bootargs: &str,
    mods: [(u64, u64); 2],
) -> Result<PathBuf, String> {
    let edit = crate::dts::ChosenEdit {
        modules: vec![
            crate::dts::Module {
                addr: mods[0].0,
                size: mods[0].1,
                bootargs: Some(dom0_args.into()),
            },
            crate::dts::Module {
                addr: mods[1].0,
                size: mods[1].1,
                bootargs: None,
            },
        ],
        xen_bootargs: Some(xen_bootargs.into()),
        domus: Vec::new(),
    };
    toolchain::prepare_dtb(paths, smp, &edit, name)?;
    // prepare_dtb marks every module a kernel: make the second one the ramdisk.
    let dts_path = paths.out.join(format!("{name}.dts"));
    let dts = std::fs::read_to_string(&dts_path)
        .map_err(|e| format!("cannot read {}: {e}", dts_path.display()))?;
    let edited = ramdisk_compatible(&dts, mods[1].0).ok_or_else(|| {
        format!(
            "{}: no kernel module node at {:#x}",
            dts_path.display(),
            mods[1].0
        )
    })?;
    std::fs::write(&dts_path, edited)
        .map_err(|e| format!("cannot write {}: {e}", dts_path.display()))?;
    let out = paths.out.join(format!("{name}.dtb"));
    run_cmd(
        Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&out)
            .arg(&dts_path),
        "dtc (ramdisk module)",
    )?;
    Ok(out)
}

/// `dts` with the `module@<addr>` node's compatible turned from
/// `"multiboot,kernel", "multiboot,module"` into
/// `"multiboot,ramdisk", "multiboot,module"`; `None` if there is no such node.
#[must_use]
pub fn ramdisk_compatible(dts: &str, addr: u64) -> Option<String> {
    let node = format!("module@{addr:x} {{");
    let at = dts.find(&node)?;
    let kernel = "\"multiboot,kernel\", \"multiboot,module\"";
    let end = dts[at..].find('}').map_or(dts.len(), |e| at + e);
    let rel = dts[at..end].find(kernel)?;
    let mut edited = dts.to_string();
    edited.replace_range(
        at + rel..at + rel + kernel.len(),
        "\"multiboot,ramdisk\", \"multiboot,module\"",
    );
    Some(edited)
}

/// Run one spec; returns its report (problems included) or a setup error.
fn run_one(paths: &Paths, o: &DomuOptions, spec: &RunSpec, blob: &Path) -> Result<Report, String> {
    let hv = paths.flat("hv");
    let dom0 = paths.flat("dom0-builder");
    let sizes = [read(&dom0)?.len() as u64, read(blob)?.len() as u64];
    let addrs = crate::image::place_modules(&sizes, qemu::RAM_END)?;
    let mods = [(addrs[0], sizes[0]), (addrs[1], sizes[1])];
    let dtb = dom0_dtb(
        paths,
        spec.name,
        o.smp,
        spec.dom0_args,
        &format!("loglvl=info tlb={}", spec.tlb.name()),
        mods,
    )?;
    let loads: Vec<(&Path, u64)> = vec![(dom0.as_path(), addrs[0]), (blob, addrs[1])];
    let args = qemu::run_args(o.smp, &hv, &dtb, &loads);
    let log = paths.out.join(format!("{}.log", spec.name));
    eprintln!(
        "hvrun: {}: tlb={} workload={} d0 `{}` (log {})",
        spec.name,
        spec.tlb.name(),
        spec.workload.name(),
        spec.dom0_args,
        log.display()
    );
    let out = qemu::supervise(
        &qemu::qemu_binary(),
        &args,
        &log,
        expectations(spec),
        o.timeout,
        false,
    )
    .map_err(|e| format!("{}: {e}", spec.name))?;
    let mut r = check(spec, &out.lines);
    for f in out.failures() {
        r.problems.push(format!("run: {f}"));
    }
    if let End::TimedOut(_) = out.end {
        for l in out.tail(30) {
            eprintln!("hvrun:   | {l}");
        }
    }
    eprintln!(
        "hvrun: {}: {:.1}s wall, {} checks passed, {} problems",
        spec.name,
        out.elapsed.as_secs_f64(),
        r.passed.len(),
        r.problems.len()
    );
    Ok(r)
}

/// `hvrun domu`.
///
/// # Errors
/// A message when a run could not be set up or any check failed.
pub fn main(paths: &Paths, args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let o = parse_args(args)?;
    toolchain::check_tools()?;
    if !o.no_build {
        toolchain::build(paths)?;
        build_dom0(paths)?;
    }
    let specs: Vec<RunSpec> = runs()
        .into_iter()
        .filter(|s| o.only.as_ref().is_none_or(|n| s.name.contains(n.as_str())))
        .collect();
    let mut blobs: BTreeMap<&str, PathBuf> = BTreeMap::new();
    for w in [Workload::Small, Workload::Realistic] {
        if !specs.iter().any(|s| s.workload == w) {
            continue;
        }
        let blob = match w {
            Workload::Small => images_blob(&[("kernel", &read(&paths.flat("guest-hello"))?)])?,
            Workload::Realistic => {
                let image = match &o.image {
                    Some(p) => p.clone(),
                    None => debian_image(paths)?,
                };
                eprintln!("hvrun: realistic kernel: {}", image.display());
                let initrd = generated_initrd(1 << 20);
                images_blob(&[("kernel", &read(&image)?), ("initrd", &initrd)])?
            }
        };
        let p = paths.out.join(format!("images-{}.blob", w.name()));
        std::fs::write(&p, blob).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        blobs.insert(w.name(), p);
    }
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut passed = 0usize;
    for spec in &specs {
        let blob = &blobs[spec.workload.name()];
        let r = run_one(paths, &o, spec, blob)?;
        for p in &r.passed {
            eprintln!("hvrun:   PASS {p}");
        }
        for p in &r.problems {
            eprintln!("hvrun:   FAIL {}: {p}", spec.name);
            problems.push(format!("{}: {p}", spec.name));
        }
        passed += r.passed.len();
        rows.extend(table_rows(spec, &r));
    }
    let mut table = String::from(TABLE_HEADER);
    for r in &rows {
        table.push('\n');
        table.push_str(r);
    }
    println!("{table}");
    let summary = paths.out.join("domu-summary.md");
    let _ = std::fs::write(&summary, format!("{table}\n"));
    eprintln!("hvrun: table written to {}", summary.display());
    if problems.is_empty() {
        eprintln!(
            "hvrun: PASS domu: {} runs, {passed} checks passed",
            specs.len()
        );
        Ok(())
    } else {
        Err(format!(
            "domu: {} problem(s), {passed} checks passed:\n  {}",
            problems.len(),
            problems.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tlb: Tlb, w: Workload) -> RunSpec {
        runs()
            .into_iter()
            .find(|s| s.tlb == tlb && s.workload == w)
            .unwrap()
    }

    fn build(v: &str, pages: u64, counts: &str) -> String {
        format!(
            "(d0) dom0: variant={v} pages={pages} build_ticks=10 build_us=1000 tlbi: {counts} total={} p2m_ops=1 plans=1 exits=1 hypercalls=1",
            counts
                .split_whitespace()
                .filter(|w| !w.starts_with("IC_IALLU"))
                .map(|w| w.split_once('=').unwrap().1.parse::<u64>().unwrap())
                .sum::<u64>()
        )
    }

    fn destroy(v: &str, full: u64) -> String {
        format!("(d0) dom0: destroy variant={v} domid=1 destroy_ticks=1 destroy_us=5 tlbi: IPAS2E1IS=0 RIPAS2E1IS=0 VMALLE1IS=0 VMALLE1=0 VMALLS12E1IS={full} VMALLS12E1=0 ALLE1IS=0 IC_IALLU=0 total={full} p2m_ops=0 plans=1 exits=1 hypercalls=1")
    }

    fn stale(v: &str) -> Vec<String> {
        vec![
            format!("(d0) dom0: stale-test={v}: reading IPA 0x100000000 after its removal; hv must end d0 with a stage-2 fault"),
            "hv: d0 ended (stage-2 fault at IPA 0x0000000100000000)".into(),
        ]
    }

    fn good_realistic_targeted() -> Vec<String> {
        let mut l = vec![
            build(
                "single",
                12180,
                "IPAS2E1IS=0 RIPAS2E1IS=3 VMALLE1IS=2 VMALLS12E1IS=1",
            ),
            destroy("single", 0),
            build("batch", 12180, "IPAS2E1IS=0 RIPAS2E1IS=20 VMALLE1IS=2"),
            destroy("batch", 1),
        ];
        l.extend(stale("batch"));
        l
    }

    #[test]
    fn a_good_log_passes_and_each_broken_rule_is_caught() {
        let s = spec(Tlb::Targeted, Workload::Realistic);
        let r = check(&s, &good_realistic_targeted());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.builds.len(), 2);
        assert_eq!(r.builds[0].pages, 12180);
        assert_eq!(r.builds[1].get("RIPAS2E1IS"), 20);
        // A full flush in the batch build.
        let mut l = good_realistic_targeted();
        l[2] = build("batch", 12180, "RIPAS2E1IS=2 VMALLE1IS=1 VMALLS12E1IS=1");
        assert_eq!(check(&s, &l).problems.len(), 1);
        // Too many TLBIs: 12180/512 + 16 = 39.
        l[2] = build("batch", 12180, "IPAS2E1IS=38 VMALLE1IS=2");
        assert_eq!(check(&s, &l).problems.len(), 1);
        // Unbatched, not coalesced.
        l = good_realistic_targeted();
        l[0] = build("single", 12180, "IPAS2E1IS=12180 VMALLE1IS=12180");
        assert_eq!(check(&s, &l).problems.len(), 1);
        // One flush per page on destroy.
        l = good_realistic_targeted();
        l[1] = destroy("single", 32768);
        assert_eq!(check(&s, &l).problems.len(), 1);
        // The stale read succeeded (and d0 did not fault).
        l = good_realistic_targeted();
        l.pop();
        l.push("(d0) dom0: STALE READ SUCCEEDED (batch): read 0x5a5a5a5a5a5a5a5a from a removed foreign page".into());
        assert_eq!(check(&s, &l).problems.len(), 1);
        // A missing build line.
        l = good_realistic_targeted();
        l.remove(0);
        assert!(!check(&s, &l).problems.is_empty());
    }

    #[test]
    fn xen_compat_needs_one_full_flush_per_page() {
        let s = spec(Tlb::XenCompat, Workload::Realistic);
        let mut l = vec![
            build("single", 100, "VMALLS12E1IS=100"),
            destroy("single", 1),
            build("batch", 100, "VMALLS12E1IS=1"),
            destroy("batch", 1),
        ];
        l.extend(stale("single"));
        assert!(check(&s, &l).problems.is_empty());
        l[0] = build("single", 100, "VMALLS12E1IS=99");
        assert_eq!(check(&s, &l).problems.len(), 1);
    }

    #[test]
    fn small_runs_need_booted_domus_negative_tests_and_the_destroy_loop() {
        let s = spec(Tlb::Targeted, Workload::Small);
        let mut l = vec![
            build("single", 21, "RIPAS2E1IS=1 VMALLE1IS=1"),
            "(d1) guest-hello: all checks passed".into(),
            "(d0) dom0: variant=single d1 shut down with code 0: PASS".into(),
            destroy("single", 1),
            build("batch", 21, "RIPAS2E1IS=1 VMALLE1IS=1"),
            "(d2) guest-hello: all checks passed".into(),
            "(d0) dom0: variant=batch d2 shut down with code 0: PASS".into(),
            destroy("batch", 1),
        ];
        for i in 0..6 {
            l.push(format!("(d0) dom0: negative: check {i}: PASS (got -1)"));
        }
        for i in 0..100 {
            l.push(format!("hv: d{} destroyed (1 VMIDs in use)", 10 + i));
        }
        l.push("(d0) dom0: destroy-loop n=100 done=100 domids=Some(10)..109 tlbi: total=0".into());
        l.push("(d0) dom0: destroy-loop free_pages before=5 after=5 (total 9): PASS".into());
        l.push(
            "(d0) dom0: destroy-loop full flushes 0 for 100 domains (at most one each): PASS"
                .into(),
        );
        l.push("(d0) dom0: heap-exhaust: mapped=190000 first_error=-12".into());
        l.push(
            "(d0) dom0: negative: heap exhaustion -> -ENOMEM, hv keeps running: PASS (got -12)"
                .into(),
        );
        l.extend(stale("single"));
        let r = check(&s, &l);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let mut bad = l.clone();
        bad[50] = "hv: d50 destroyed (2 VMIDs in use)".into();
        assert_eq!(check(&s, &bad).problems.len(), 1);
        let mut bad = l.clone();
        bad[2] = "(d0) dom0: variant=single d1 shut down with code 3: FAIL".into();
        assert_eq!(check(&s, &bad).problems.len(), 1);
        let mut bad = l.clone();
        bad[8] = "(d0) dom0: negative: check 0: FAIL (got 0, want -1)".into();
        assert_eq!(check(&s, &bad).problems.len(), 1);
        let mut bad = l.clone();
        bad.push("(d0) dom0: FAIL destroy: domctl destroydomain returned -3".into());
        assert_eq!(check(&s, &bad).problems.len(), 1);
        let bad: Vec<String> = l
            .iter()
            .filter(|x| !x.contains("heap exhaustion"))
            .cloned()
            .collect();
        assert_eq!(check(&s, &bad).problems.len(), 1);
    }

    #[test]
    fn blob_layout_follows_design_md() {
        let b = images_blob(&[("kernel", &[1, 2, 3]), ("initrd", &[9; 5000])]).unwrap();
        assert_eq!(&b[..8], b"HVIMG001");
        assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 2);
        assert_eq!(&b[16..22], b"kernel");
        assert_eq!(b[22], 0);
        let off = |i: usize| {
            u64::from_le_bytes(b[16 + 32 * i + 16..16 + 32 * i + 24].try_into().unwrap())
        };
        let size = |i: usize| {
            u64::from_le_bytes(b[16 + 32 * i + 24..16 + 32 * i + 32].try_into().unwrap())
        };
        assert_eq!((off(0), size(0)), (4096, 3));
        assert_eq!((off(1), size(1)), (8192, 5000));
        assert_eq!(&b[4096..4099], &[1, 2, 3]);
        assert_eq!(b.len(), 8192 + 8192);
        assert!(images_blob(&[("a-very-long-name", &[])]).is_err());
        let i = generated_initrd(1 << 20);
        assert_eq!(i.len(), 1 << 20);
        assert_eq!(i, generated_initrd(1 << 20));
        assert_ne!(i[..8], i[8..16]);
    }

    #[test]
    fn the_blob_module_becomes_a_ramdisk() {
        let k = "compatible = \"multiboot,kernel\", \"multiboot,module\";";
        let dts = format!(
            "chosen {{\n module@4c000000 {{\n {k}\n }};\n module@4c200000 {{\n {k}\n }};\n}};"
        );
        let e = ramdisk_compatible(&dts, 0x4c20_0000).unwrap();
        assert_eq!(e.matches("multiboot,ramdisk").count(), 1);
        assert!(e.find("multiboot,ramdisk").unwrap() > e.find("module@4c200000").unwrap());
        assert_eq!(e.matches("multiboot,kernel").count(), 1);
        assert!(ramdisk_compatible(&dts, 0x5000_0000).is_none());
    }

    #[test]
    fn options() {
        let p = |s: &str| parse_args(&s.split_whitespace().map(String::from).collect::<Vec<_>>());
        let o = p("").unwrap();
        assert_eq!((o.smp, o.timeout.as_secs(), o.no_build), (2, 600, false));
        let o = p("--smp 1 --timeout 9 --no-build --only small --image /x").unwrap();
        assert_eq!(o.smp, 1);
        assert_eq!(o.only.as_deref(), Some("small"));
        assert_eq!(o.image, Some(PathBuf::from("/x")));
        assert!(p("--smp 0").is_err());
        assert!(p("--frob").is_err());
        assert_eq!(runs().len(), 4);
    }
}
