//! `hvmatrix`: the domU-creation timing matrix (issue 4). Builds hv, the
//! control-domain payload and the images blobs, boots hv on bare QEMU and in
//! the nested rig (L1 KVM IPA limit 48 and 52) under xen-compat and the
//! optimized path, and writes `matrix.md` (table, acceptance checks, commands)
//! and `matrix.svg` into `tests-nested/results/<date>/`. Run `hvmatrix --help`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime};
use tests_nested::markers::Expectations;
use tests_nested::matrix::{self, Cell, Platform, RunSpec, Sizes, Workload};
use tests_nested::qemu;
use tests_nested::scenario;
use tests_nested::{domu, image, toolchain};

const USAGE: &str = "\
usage: hvmatrix [--quick] [--only TEXT]... [--out DIR] [--report-only] [--dry-run]
       hvmatrix smoke
  smoke          the nested smoke test (CI): first hv in the rig with Debian's QEMU
                 11.1 as L1's VMM (-accel kvm, the bare-QEMU DTB; HVMATRIX_SMOKE_ONLY_QEMU=1
                 stops after it), then hv at vEL2 in the rig (IPA limit 48)
                 says \"nested under KVM\" with its evidence, picks the targeted
                 nested policy with tlb=auto, d0 builds a 16 MiB domU with the
                 batch remove, the domU (guest-hello) runs, all power off; then hv
                 on bare QEMU says \"bare metal\" and does the same
  (default)      the full matrix (30-40 minutes on a shared 2-core machine), results in
                 tests-nested/results/<UTC date>/ (matrix.md, matrix.svg, logs/)
  --quick        small page counts, one run per cell (checks the tooling, ~8 min)
  --only TEXT    run only the runs whose key contains TEXT (repeatable), e.g.
                 --only nested48 --only bare-auto; keys: <platform>-<tlb>-<workload>
  --out DIR      results directory
  --report-only  do not run: re-read DIR/logs/*.log and rewrite the report
  --dry-run      print the runs and their commands, run nothing";

struct Opts {
    smoke: bool,
    sizes: Sizes,
    only: Vec<String>,
    out: Option<PathBuf>,
    report_only: bool,
    dry_run: bool,
    quick: bool,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        smoke: false,
        sizes: Sizes::FULL,
        only: Vec::new(),
        out: None,
        report_only: false,
        dry_run: false,
        quick: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "smoke" => o.smoke = true,
            "--quick" => {
                o.sizes = Sizes::QUICK;
                o.quick = true;
            }
            "--only" => o.only.push(it.next().ok_or("--only needs a value")?),
            "--out" => o.out = Some(PathBuf::from(it.next().ok_or("--out needs a directory")?)),
            "--report-only" => o.report_only = true,
            "--dry-run" => o.dry_run = true,
            "-h" | "--help" | "help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("hvmatrix: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("hvmatrix: FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn cmd_text(program: &str, args: &[String]) -> String {
    std::iter::once(program.to_string())
        .chain(args.iter().map(|a| sh_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command to completion; its stdout.
fn output(cmd: &mut Command, what: &str) -> Result<String, String> {
    let o = cmd
        .output()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Everything the runs need, built once.
struct Inputs {
    hv: PathBuf,
    dom0: PathBuf,
    hello_blob: PathBuf,
    real_blob: PathBuf,
    l1_image: PathBuf,
    work: PathBuf,
    /// `rig-stamp`: runs QEMU and stamps its lines with QEMU's CPU time.
    stamp: PathBuf,
}

fn prepare(paths: &toolchain::Paths) -> Result<Inputs, String> {
    let t = Instant::now();
    toolchain::build(paths)?;
    // The control-domain payload (flat Image) next to hvrun's (h7's `hvrun domu` helper).
    domu::build_dom0(paths)?;
    let dom0 = paths.flat("dom0-builder");
    // The L1 kernel (Debian's arm64 Image: also the realistic domU kernel) and busybox.
    let rig = paths.repo.join("tests-nested/rig");
    let env = output(
        Command::new("bash")
            .arg(rig.join("fetch-l1.sh"))
            .stderr(std::process::Stdio::inherit()),
        "tests-nested/rig/fetch-l1.sh",
    )?;
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| PathBuf::from(v.trim().trim_matches('\'').trim_matches('"')))
            .ok_or_else(|| format!("fetch-l1.sh did not print {k}="))
    };
    let (l1_image, busybox) = (var("L1_IMAGE")?, var("BUSYBOX")?);
    // The VMM, rig-cpio and rig-stamp (run.sh builds the VMM again; cached).
    output(
        Command::new("bash").arg(rig.join("build-vmm.sh")),
        "tests-nested/rig/build-vmm.sh",
    )?;
    let work = paths.target.join("hvmatrix");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    // A small initrd: busybox and the rig's init script in a newc cpio.
    let initrd = work.join("initrd.cpio");
    output(
        Command::new(paths.target.join("release/rig-cpio"))
            .arg(&initrd)
            .args([
                "dir:bin",
                "dir:dev",
                "dir:proc",
                "dir:sys",
                "cdev:dev/console=5,1",
            ])
            .arg(format!("file:bin/busybox={}", busybox.display()))
            .arg("sym:bin/sh=busybox")
            .arg(format!("file:init={}", rig.join("init.sh").display())),
        "rig-cpio (realistic initrd)",
    )?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let hello_blob = work.join("images-hello.blob");
    let blob = domu::images_blob(&[("kernel", &read(&paths.flat("guest-hello"))?)])?;
    std::fs::write(&hello_blob, blob).map_err(|e| format!("{}: {e}", hello_blob.display()))?;
    let real_blob = work.join("images-realistic.blob");
    let blob = domu::images_blob(&[("kernel", &read(&l1_image)?), ("initrd", &read(&initrd)?)])?;
    std::fs::write(&real_blob, blob).map_err(|e| format!("{}: {e}", real_blob.display()))?;
    eprintln!(
        "hvmatrix: inputs ready in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    Ok(Inputs {
        hv: paths.flat("hv"),
        dom0,
        hello_blob,
        real_blob,
        l1_image,
        work,
        stamp: paths.target.join("release/rig-stamp"),
    })
}

fn blob_for<'a>(inp: &'a Inputs, s: &RunSpec) -> &'a Path {
    match s.workload {
        Workload::Pages(_) => &inp.hello_blob,
        Workload::Realistic => &inp.real_blob,
    }
}

/// Seconds a run may take before it is killed.
fn timeout_for(s: &RunSpec) -> u64 {
    match (s.platform, s.policy, s.workload) {
        (Platform::Nested { ipa_limit: 52 }, matrix::Policy::XenCompat, Workload::Pages(n)) => {
            300 + n * 2 * 120
        }
        (Platform::Nested { .. }, matrix::Policy::XenCompat, Workload::Pages(n)) => {
            300 + n * 2 * 15
        }
        _ => 900,
    }
}

fn rig_command(repo: &Path, inp: &Inputs, s: &RunSpec, log: &Path) -> (String, Vec<String>) {
    let Platform::Nested { ipa_limit } = s.platform else {
        unreachable!("rig_command is for nested runs");
    };
    let args: Vec<String> = vec![
        repo.join("tests-nested/rig/run.sh").display().to_string(),
        "--guest".into(),
        inp.hv.display().to_string(),
        "--module".into(),
        inp.dom0.display().to_string(),
        "--module-args".into(),
        s.dom0_args(),
        "--ramdisk".into(),
        blob_for(inp, s).display().to_string(),
        "--cmdline".into(),
        s.hv_cmdline(),
        "--ipa-limit".into(),
        ipa_limit.to_string(),
        "--vm-mem".into(),
        "768".into(),
        "--timeout".into(),
        timeout_for(s).to_string(),
        "--exit-stamps".into(),
        "--cpu-stamps".into(),
        "--quiet".into(),
        "--log".into(),
        log.display().to_string(),
        "--expect".into(),
        "dom0: RESULT PASS".into(),
    ];
    ("bash".into(), args)
}

/// hv on bare QEMU: QEMU's virt DTB with d0 (dom0-builder) and its ramdisk under /chosen.
fn bare_command(
    paths: &toolchain::Paths,
    inp: &Inputs,
    blob: &Path,
    dom0_args: &str,
    hv_cmdline: &str,
    name: &str,
) -> Result<(String, Vec<String>), String> {
    let sizes = [file_len(&inp.dom0)?, file_len(blob)?];
    let addrs = image::place_modules(&sizes, qemu::RAM_END)?;
    // QEMU's virt DTB with d0 and its ramdisk under /chosen (h7's `hvrun domu` helper).
    let dtb = domu::dom0_dtb(
        paths,
        name,
        1,
        dom0_args,
        hv_cmdline,
        [(addrs[0], sizes[0]), (addrs[1], sizes[1])],
    )?;
    let mods = [(inp.dom0.as_path(), addrs[0]), (blob, addrs[1])];
    // QEMU under rig-stamp: every line carries QEMU's CPU time.
    let mut args = vec!["--".to_string(), qemu::qemu_binary()];
    args.extend(qemu::run_args(1, &inp.hv, &dtb, &mods));
    Ok((inp.stamp.display().to_string(), args))
}

fn file_len(p: &Path) -> Result<u64, String> {
    std::fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", p.display()))
}

fn bare_expectations() -> Expectations {
    Expectations::new()
        .then(scenario::BANNER)
        .then("(d0) dom0: RESULT PASS")
        .then(scenario::ALL_ENDED)
        .never("panicked at")
        .never("hv: ERROR: panic on CPU")
        .never("(d0) dom0: RESULT FAIL")
}

/// One run; returns its log text (the log is written to `log`).
fn run_one(
    paths: &toolchain::Paths,
    inp: &Inputs,
    s: &RunSpec,
    log: &Path,
    commands: &mut Vec<String>,
) -> Result<String, String> {
    match s.platform {
        Platform::Nested { .. } => {
            let (prog, args) = rig_command(&paths.repo, inp, s, log);
            commands.push(cmd_text(&prog, &args));
            // Its own process group, killed with hvmatrix (qemu::status_in_group).
            let st = qemu::status_in_group(
                Command::new(&prog)
                    .args(&args)
                    .env("CARGO_TARGET_DIR", &paths.target),
            )
            .map_err(|e| format!("cannot start run.sh: {e}"))?;
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if !st.success() {
                return Err(format!(
                    "{}: run.sh failed ({st}); log {}",
                    s.key(),
                    log.display()
                ));
            }
            Ok(text)
        }
        Platform::Bare => {
            let (prog, args) = bare_command(
                paths,
                inp,
                blob_for(inp, s),
                &s.dom0_args(),
                &s.hv_cmdline(),
                &s.key(),
            )?;
            commands.push(cmd_text(&prog, &args));
            let out = qemu::supervise(
                &prog,
                &args,
                log,
                bare_expectations(),
                Duration::from_secs(timeout_for(s)),
                false,
            )
            .map_err(|e| format!("{}: {e}", s.key()))?;
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let f = out.failures();
            if !f.is_empty() {
                return Err(format!(
                    "{}: {}; log {}",
                    s.key(),
                    f.join("; "),
                    log.display()
                ));
            }
            Ok(text)
        }
    }
}

fn cells_of(s: &RunSpec, text: &str) -> Vec<Cell> {
    matrix::parse_log(text)
        .builds
        .into_iter()
        .map(|b| Cell {
            spec: *s,
            build: b.line,
            l0_traps: b.l0_traps,
            cpu_us: b.cpu_us,
        })
        .collect()
}

fn tool_versions(paths: &toolchain::Paths) -> String {
    let first = |c: &mut Command| {
        c.output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let git =
        first(
            Command::new("git")
                .current_dir(&paths.repo)
                .args(["rev-parse", "--short", "HEAD"]),
        );
    let dirty = first(Command::new("git").current_dir(&paths.repo).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]));
    format!(
        "commit {git}{}; {}; {}; {} cores",
        if dirty.is_empty() {
            ""
        } else {
            " (with uncommitted changes)"
        },
        first(Command::new(qemu::qemu_binary()).arg("--version")),
        first(Command::new("rustc").arg("--version")),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct Report<'a> {
    dir: &'a Path,
    date: String,
    invocation: String,
    versions: String,
    notes: Vec<String>,
}

fn write_report(r: &Report, cells: &[Cell], commands: &[String]) -> Result<bool, String> {
    let checks = matrix::checks(cells);
    let mut md = String::new();
    md.push_str(&format!("# domU-creation timing matrix, {}\n\n", r.date));
    md.push_str(&format!(
        "Produced by `{}` (from the repository root). {}.\n\n",
        r.invocation, r.versions
    ));
    md.push_str(
        "Each run boots hv with dom0-builder as the control domain (d0, `variant=both noboot`): d0 builds \
         the domU twice, first unmapping its foreign mappings with one `XENMEM_remove_from_physmap` per \
         page, then with `XENMEM_remove_from_physmap_batch`. Build time = createdomain .. setvcpucontext \
         (d0's CNTVCT). TLBIs = hv's counters (hv_op 49) over the build. Traps to L0 = KVM exits during \
         the build (rig VMM `--exit-stamps`; console output excluded). L0 QEMU CPU = CPU time the \
         outermost QEMU process used over the same span (`rig-stamp`; unlike wall time it is hardly \
         changed by other load on the machine). `targeted (tlb=auto)`: hv chose \
         its policy from the nesting verdict. Bare metal = hv directly on QEMU TCG `-cpu max` (no L1; \
         the IPA limit does not apply). See tests-nested/rig/README.md.\n\n",
    );
    md.push_str("## Table\n\n");
    md.push_str(&matrix::markdown_table(cells));
    md.push_str("\n![plot](matrix.svg)\n\n## Acceptance checks\n\n");
    md.push_str(&matrix::checks_markdown(&checks));
    if !r.notes.is_empty() {
        md.push_str("\n## Runs\n\n");
        for n in &r.notes {
            md.push_str(&format!("- {n}\n"));
        }
    }
    md.push_str("\n## Commands (one per run, as executed; logs in logs/)\n\n```sh\n");
    for c in commands {
        md.push_str(c);
        md.push('\n');
    }
    md.push_str("```\n");
    let w = |name: &str, text: &str| {
        let p = r.dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    w("matrix.md", &md)?;
    w("matrix.svg", &matrix::svg_plot(cells))?;
    Ok(!checks.iter().any(matrix::Check::failed))
}

fn run(o: &Opts) -> Result<bool, String> {
    let paths = toolchain::Paths::discover();
    if o.smoke {
        return smoke(&paths).map(|()| true);
    }
    let date = matrix::date_utc(now_unix());
    let dir = o
        .out
        .clone()
        .unwrap_or_else(|| paths.repo.join("tests-nested/results").join(&date));
    let logs = dir.join("logs");
    let mut specs: Vec<RunSpec> = matrix::plan(&o.sizes)
        .into_iter()
        .filter(|s| o.only.is_empty() || o.only.iter().any(|t| s.key().contains(t.as_str())))
        .collect();
    if specs.is_empty() {
        return Err("no run matches --only".into());
    }
    let mut invocation = String::from("cargo run -p tests-nested --bin hvmatrix --");
    if o.quick {
        invocation.push_str(" --quick");
    }
    for t in &o.only {
        invocation.push_str(&format!(" --only {}", sh_quote(t)));
    }
    let mut report = Report {
        dir: &dir,
        date,
        invocation,
        versions: tool_versions(&paths),
        notes: Vec::new(),
    };
    let mut cells = Vec::new();
    let mut commands = Vec::new();
    if o.report_only {
        let cmds = std::fs::read_to_string(logs.join("commands.txt")).unwrap_or_default();
        commands.extend(cmds.lines().map(String::from));
        specs.retain(|s| logs.join(format!("{}.log", s.key())).exists());
        for s in &specs {
            let text = std::fs::read_to_string(logs.join(format!("{}.log", s.key())))
                .map_err(|e| format!("{e}"))?;
            cells.extend(cells_of(s, &text));
        }
        return write_report(&report, &cells, &commands);
    }
    if o.dry_run {
        for s in &specs {
            println!(
                "{}: hv `{}`, d0 `{}`",
                s.key(),
                s.hv_cmdline(),
                s.dom0_args()
            );
        }
        return Ok(true);
    }
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let inp = prepare(&paths)?;
    eprintln!(
        "hvmatrix: {} runs; realistic kernel {}; results in {}",
        specs.len(),
        inp.l1_image.display(),
        dir.display()
    );
    let t0 = Instant::now();
    let mut failed = 0;
    for (i, s) in specs.iter().enumerate() {
        let log = logs.join(format!("{}.log", s.key()));
        let t = Instant::now();
        let load = loadavg();
        eprintln!(
            "hvmatrix: [{}/{}] {} (hv `{}`, d0 `{}`), load {load}",
            i + 1,
            specs.len(),
            s.key(),
            s.hv_cmdline(),
            s.dom0_args()
        );
        match run_one(&paths, &inp, s, &log, &mut commands) {
            Ok(text) => {
                let new = cells_of(s, &text);
                let r = matrix::parse_log(&text);
                for c in &new {
                    eprintln!(
                        "hvmatrix:   {} {} pages: {:.1} ms, {:.1} us/page, TLBIs {}, L0 traps {}",
                        c.build.variant,
                        c.build.pages,
                        c.build.build_us as f64 / 1e3,
                        c.us_per_page(),
                        c.tlbi_text(),
                        c.l0_traps.map_or("n/a".into(), |t| t.to_string())
                    );
                }
                report.notes.push(format!(
                    "`{}`: {:.0} s wall, load average before {load}; verdict: {}; policy: {}",
                    s.key(),
                    t.elapsed().as_secs_f64(),
                    r.verdict.as_deref().unwrap_or("?"),
                    r.policy.as_deref().unwrap_or("?"),
                ));
                cells.extend(new);
            }
            Err(e) => {
                failed += 1;
                eprintln!("hvmatrix:   FAILED: {e}");
                report.notes.push(format!("`{}`: FAILED: {e}", s.key()));
            }
        }
        std::fs::write(logs.join("commands.txt"), commands.join("\n") + "\n")
            .map_err(|e| format!("{e}"))?;
        write_report(&report, &cells, &commands)?;
    }
    let ok = write_report(&report, &cells, &commands)?;
    eprintln!(
        "hvmatrix: {} runs in {:.0} s, {failed} failed; report {}",
        specs.len(),
        t0.elapsed().as_secs_f64(),
        dir.join("matrix.md").display()
    );
    for c in matrix::checks(&cells) {
        eprintln!(
            "hvmatrix: {} {}: {}",
            match (c.info, c.pass) {
                (true, _) => "INFO",
                (_, Some(true)) => "PASS",
                (_, Some(false)) => "FAIL",
                (_, None) => "NOT CHECKED",
            },
            c.claim,
            c.detail
        );
    }
    Ok(ok && failed == 0)
}

/// The control domain's words for the smoke: one 16 MiB domU built with the
/// batch remove, booted (guest-hello) and destroyed.
const SMOKE_DOM0: &str = "dom0 variant=batch domu-mem=16M";

/// Markers both smoke runs must show, in order.
const SMOKE_COMMON: [&str; 5] = [
    "(d0) dom0: variant=batch pages=",
    "(d1) guest-hello: all checks passed",
    "(d0) dom0: variant=batch d1 shut down with code 0: PASS",
    "(d0) dom0: RESULT PASS",
    "hv: all domains ended, powering off",
];

/// Checks the smoke run's build line: a 16 MiB domU built with some TLB
/// maintenance but no full stage-2 flush.
fn smoke_build_ok(what: &str, text: &str) -> Result<(), String> {
    let r = matrix::parse_log(text);
    let [matrix::Build {
        line: b,
        l0_traps: traps,
        cpu_us,
    }] = r.builds.as_slice()
    else {
        return Err(format!(
            "{what}: expected one build line, found {}",
            r.builds.len()
        ));
    };
    let c = Cell {
        spec: RunSpec {
            platform: Platform::Bare,
            policy: matrix::Policy::Auto,
            workload: Workload::Pages(b.pages),
            rep: 0,
        },
        build: b.clone(),
        l0_traps: *traps,
        cpu_us: *cpu_us,
    };
    let tlbi = b
        .tlbi
        .ok_or(format!("{what}: hv_op counters unavailable"))?;
    if c.full_flushes() != 0 || tlbi.iter().take(7).sum::<u64>() == 0 {
        return Err(format!(
            "{what}: the optimized path must flush by IPA without full flushes; TLBIs: {}",
            c.tlbi_text()
        ));
    }
    eprintln!(
        "hvmatrix smoke: {what}: {} pages in {:.1} ms, TLBIs {}, traps to L0 {}; verdict: {}",
        b.pages,
        b.build_us as f64 / 1e3,
        c.tlbi_text(),
        traps.map_or("n/a".into(), |t| t.to_string()),
        r.verdict.as_deref().unwrap_or("?")
    );
    Ok(())
}

fn smoke(paths: &toolchain::Paths) -> Result<(), String> {
    let inp = prepare(paths)?;
    let dir = inp.work.join("smoke");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // 0. The rig with the L1 VMM users run (QEMU -accel kvm in L1), same DTB as bare QEMU.
    smoke_rig_qemu(paths, &inp, &dir, 1, "auto")?;
    if std::env::var_os("HVMATRIX_SMOKE_ONLY_QEMU").is_some() {
        return Ok(());
    }

    // 1. The rig, IPA limit 48, one vCPU: nested under KVM, targeted nested policy.
    smoke_rig(paths, &inp, &dir, 1, "auto")?;
    // 2. Bare QEMU: bare metal.
    smoke_bare(paths, &inp, &dir, "auto")?;
    // 3. The rig with two CPUs in L1 and two vCPUs for hv.
    smoke_rig(paths, &inp, &dir, 2, "auto")?;
    // 4. The overrides, end to end: nested=on on bare QEMU, nested=off in the rig.
    smoke_bare(paths, &inp, &dir, "on")?;
    smoke_rig(paths, &inp, &dir, 1, "off")
}

/// hv's verdict and policy lines for a smoke run (`nested=` word, nested platform or not).
fn verdict_markers(nested_word: &str, in_rig: bool) -> [&'static str; 2] {
    match (nested_word, in_rig) {
        ("off", true) => [
            "hv: platform: bare metal (nested=off; SMCCC hyp UID = KVM; ID reg read ",
            "hv: tlb policy: Targeted { has_range: true, nested: false } (tlb=Auto)",
        ],
        (_, true) => [
            "hv: platform: nested under KVM (SMCCC hyp UID = KVM; ID reg read ",
            "hv: tlb policy: Targeted { has_range: true, nested: true } (tlb=Auto)",
        ],
        ("on", false) => [
            "hv: platform: nested under an unknown hypervisor (nested=on; SMCCC hyp UID not supported; ID reg read ",
            "hv: tlb policy: Targeted { has_range: true, nested: true } (tlb=Auto)",
        ],
        (_, false) => [
            "hv: platform: bare metal (SMCCC hyp UID not supported; ID reg read ",
            "hv: tlb policy: Targeted { has_range: true, nested: false } (tlb=Auto)",
        ],
    }
}

/// The smoke on bare QEMU with `nested=<nested_word>`.
fn smoke_bare(
    paths: &toolchain::Paths,
    inp: &Inputs,
    dir: &Path,
    nested_word: &str,
) -> Result<(), String> {
    let t = Instant::now();
    let name = format!("smoke-bare-nested-{nested_word}");
    let (prog, qargs) = bare_command(
        paths,
        inp,
        &inp.hello_blob,
        SMOKE_DOM0,
        &format!("loglvl=info tlb=auto nested={nested_word}"),
        &name,
    )?;
    let [verdict, policy] = verdict_markers(nested_word, false);
    let mut exp = Expectations::new()
        .then(scenario::BANNER)
        .then(&format!("{verdict}*x local (not trapped)*"))
        .then("hv: nested-detect evidence: hyp-uid=none ")
        .then(policy);
    for m in SMOKE_COMMON {
        exp = exp.then(m);
    }
    let exp = exp
        .never("panicked at")
        .never("hv: ERROR: panic on CPU")
        .never("(d0) dom0: RESULT FAIL");
    let log = dir.join(format!("{name}.log"));
    eprintln!("hvmatrix smoke: {}", cmd_text(&prog, &qargs));
    let out = qemu::supervise(&prog, &qargs, &log, exp, Duration::from_secs(180), false)
        .map_err(|e| format!("bare smoke: {e}"))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for l in text
        .lines()
        .filter(|l| l.contains("hv: platform:") || l.contains("nested-detect evidence"))
    {
        eprintln!("hvmatrix smoke: bare: {}", l.trim());
    }
    let f = out.failures();
    if !f.is_empty() {
        for l in out.tail(30) {
            eprintln!("{l}");
        }
        return Err(format!(
            "bare smoke (nested={nested_word}): {}; log {}",
            f.join("; "),
            log.display()
        ));
    }
    smoke_build_ok(&format!("bare QEMU, nested={nested_word}"), &text)?;
    eprintln!(
        "hvmatrix smoke: bare (nested={nested_word}) PASS in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The smoke in the rig at IPA limit 48 with `smp` L0 CPUs, VM vCPUs and hv CPUs, and
/// `nested=<nested_word>` on hv's command line.
fn smoke_rig(
    paths: &toolchain::Paths,
    inp: &Inputs,
    dir: &Path,
    smp: u32,
    nested_word: &str,
) -> Result<(), String> {
    let t = Instant::now();
    let log = dir.join(format!("smoke-rig48-smp{smp}-nested-{nested_word}.log"));
    let [verdict, policy] = verdict_markers(nested_word, true);
    let mut args: Vec<String> = [
        paths
            .repo
            .join("tests-nested/rig/run.sh")
            .display()
            .to_string(),
        "--guest".into(),
        inp.hv.display().to_string(),
        "--module".into(),
        inp.dom0.display().to_string(),
        "--module-args".into(),
        SMOKE_DOM0.into(),
        "--ramdisk".into(),
        inp.hello_blob.display().to_string(),
        "--cmdline".into(),
        format!("loglvl=info tlb=auto nested={nested_word}"),
        "--ipa-limit".into(),
        "48".into(),
        "--smp".into(),
        smp.to_string(),
        "--vm-cpus".into(),
        smp.to_string(),
        "--timeout".into(),
        "400".into(),
        "--exit-stamps".into(),
        "--quiet".into(),
        "--log".into(),
        log.display().to_string(),
    ]
    .into();
    for m in [
        "IPA Size Limit: 48 bits",
        "VMM: vCPU0 PSTATE 0x3c9 (EL2)",
        verdict,
        "hv: nested-detect evidence: hyp-uid=b66fb428-e911c52e-564bcaa9-743a004d ",
        policy,
        "hv: d1: created by domctl",
        if smp > 1 {
            "hv: CPU1 online"
        } else {
            "hv: CPU0 online"
        },
        ": PSCI SYSTEM_OFF (type 1",
    ]
    .iter()
    .chain(SMOKE_COMMON.iter())
    {
        args.push("--expect".into());
        args.push((*m).into());
    }
    eprintln!("hvmatrix smoke: {}", cmd_text("bash", &args));
    let st = qemu::status_in_group(
        Command::new("bash")
            .args(&args)
            .env("CARGO_TARGET_DIR", &paths.target),
    )
    .map_err(|e| format!("cannot start run.sh: {e}"))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for l in text.lines().filter(|l| {
        l.contains("hv: platform:")
            || l.contains("nested-detect evidence")
            || l.contains("tlb policy")
    }) {
        eprintln!("hvmatrix smoke: rig: {}", l.trim());
    }
    if !st.success() {
        return Err(format!(
            "nested smoke ({smp} CPU(s), nested={nested_word}) failed ({st}); log {}",
            log.display()
        ));
    }
    smoke_build_ok(
        &format!("rig, IPA limit 48, {smp} CPU(s), nested={nested_word}"),
        &text,
    )?;
    eprintln!(
        "hvmatrix smoke: rig ({smp} CPU(s), nested={nested_word}) PASS in {:.0} s",
        t.elapsed().as_secs_f64()
    );

    Ok(())
}

/// The smoke in the rig with the L1 VMM users run: Debian's qemu-system-aarch64
/// (`-accel kvm -M virt,virtualization=on`, `run.sh --l1-vmm qemu`) booting hv with the
/// same DTB (QEMU's virt DTB with d0 and its ramdisk under /chosen), modules and command
/// line as on bare QEMU. IPA limit 48, `smp` L0 CPUs and vCPUs.
fn smoke_rig_qemu(
    paths: &toolchain::Paths,
    inp: &Inputs,
    dir: &Path,
    smp: u32,
    nested_word: &str,
) -> Result<(), String> {
    let t = Instant::now();
    let name = format!("smoke-qemu48-smp{smp}-nested-{nested_word}");
    let log = dir.join(format!("{name}.log"));
    let [verdict, policy] = verdict_markers(nested_word, true);
    let sizes = [file_len(&inp.dom0)?, file_len(&inp.hello_blob)?];
    let addrs = image::place_modules(&sizes, qemu::RAM_END)?;
    let dtb = domu::dom0_dtb(
        paths,
        &name,
        smp,
        SMOKE_DOM0,
        &format!("loglvl=info tlb=auto nested={nested_word}"),
        [(addrs[0], sizes[0]), (addrs[1], sizes[1])],
    )?;
    let mut args: Vec<String> = [
        paths
            .repo
            .join("tests-nested/rig/run.sh")
            .display()
            .to_string(),
        "--l1-vmm".into(),
        "qemu".into(),
        "--guest".into(),
        inp.hv.display().to_string(),
        "--dtb".into(),
        dtb.display().to_string(),
        "--load".into(),
        format!("{}@{:#x}", inp.dom0.display(), addrs[0]),
        "--load".into(),
        format!("{}@{:#x}", inp.hello_blob.display(), addrs[1]),
        "--vm-mem".into(),
        ((qemu::RAM_END - image::RAM_BASE) >> 20).to_string(),
        "--ipa-limit".into(),
        "48".into(),
        "--smp".into(),
        smp.to_string(),
        "--vm-cpus".into(),
        smp.to_string(),
        "--timeout".into(),
        "400".into(),
        "--exit-stamps".into(),
        "--quiet".into(),
        "--log".into(),
        log.display().to_string(),
    ]
    .into();
    for m in [
        "IPA Size Limit: 48 bits",
        "RIG: vmm vmm: timeout -s KILL 400 /usr/bin/qemu-system-aarch64 -accel kvm",
        verdict,
        "hv: nested-detect evidence: hyp-uid=b66fb428-e911c52e-564bcaa9-743a004d ",
        policy,
        "hv: d1: created by domctl",
        if smp > 1 {
            "hv: CPU1 online"
        } else {
            "hv: CPU0 online"
        },
    ]
    .iter()
    .chain(SMOKE_COMMON.iter())
    {
        args.push("--expect".into());
        args.push((*m).into());
    }
    eprintln!("hvmatrix smoke: {}", cmd_text("bash", &args));
    let st = qemu::status_in_group(
        Command::new("bash")
            .args(&args)
            .env("CARGO_TARGET_DIR", &paths.target),
    )
    .map_err(|e| format!("cannot start run.sh: {e}"))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for l in text.lines().filter(|l| {
        l.contains("hv: platform:")
            || l.contains("nested-detect evidence")
            || l.contains("tlb policy")
            || l.contains("RIG: kvm vmm")
    }) {
        eprintln!("hvmatrix smoke: rig (QEMU in L1): {}", l.trim());
    }
    if !st.success() {
        return Err(format!(
            "nested smoke, QEMU in L1 ({smp} CPU(s), nested={nested_word}) failed ({st}); log {}",
            log.display()
        ));
    }
    smoke_build_ok(
        &format!("rig (QEMU in L1), IPA limit 48, {smp} CPU(s), nested={nested_word}"),
        &text,
    )?;
    eprintln!(
        "hvmatrix smoke: rig, QEMU in L1 ({smp} CPU(s), nested={nested_word}) PASS in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
