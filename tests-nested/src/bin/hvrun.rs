//! `hvrun`: builds hv and its guest payloads, boots them under QEMU and checks
//! hv's serial markers. Run `hvrun help` for usage.

use std::path::Path;
use std::process::ExitCode;
use tests_nested::cli::{self, Action, ModuleArg, Options};
use tests_nested::dts::{ChosenEdit, Module};
use tests_nested::image::{self, ImageHeader};
use tests_nested::markers::Expectations;
use tests_nested::qemu::{self, End};
use tests_nested::scenario;
use tests_nested::toolchain::{self, Paths};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("domu") {
        // The issue-3 acceptance run (tests_nested::domu has its own options).
        return match tests_nested::domu::main(&Paths::discover(), &args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hvrun: FAIL: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if matches!(args.first().map(String::as_str), Some("hostile" | "soak")) {
        // Issue 9: the negative-test guest and the create/destroy soak (tests_nested::hostile).
        return match tests_nested::hostile::main(&Paths::discover(), &args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hvrun: FAIL: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = match cli::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hvrun: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let paths = Paths::discover();
    let result = match opts.action {
        Action::Help => {
            println!("{}", cli::USAGE);
            Ok(())
        }
        Action::Build => toolchain::build(&paths),
        Action::Demo | Action::Smoke => run(&paths, &opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hvrun: FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a kernel image and checks its arm64 Image header.
fn image(path: &Path, what: &str) -> Result<(ImageHeader, u64), String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {what} {}: {e} (did `hvrun build` succeed?)",
            path.display()
        )
    })?;
    let h = ImageHeader::parse(&bytes).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    Ok((h, bytes.len() as u64))
}

/// A payload built by `hvrun build`, with no module bootargs.
fn built(paths: &Paths, bin: &str) -> ModuleArg {
    ModuleArg {
        path: paths.flat(bin),
        bootargs: None,
    }
}

fn run(paths: &Paths, o: &Options) -> Result<(), String> {
    toolchain::check_tools()?;
    if !o.no_build {
        toolchain::build(paths)?;
    }
    let hv = paths.flat("hv");
    let (hv_header, hv_len) = image(&hv, "hv image").map_err(|e| {
        format!("{e}\n(hv must carry the 64-byte arm64 Image header so that QEMU's -kernel boots it at EL2)")
    })?;
    image::check_kernel_fits(&hv_header, hv_len)?;

    let (name, kernels, exp): (String, Vec<ModuleArg>, Expectations) = match o.action {
        Action::Smoke => (
            format!("smoke-smp{}", o.smp),
            vec![built(paths, "guest-fault"), built(paths, "guest-hello")],
            scenario::smoke(o.smp),
        ),
        _ if o.modules.is_empty() => (
            format!("demo-smp{}", o.smp),
            // No module: hv runs the guest-hello embedded in its image.
            Vec::new(),
            scenario::demo(o.smp, true, 1, &o.expect),
        ),
        _ => (
            format!("demo-smp{}-custom", o.smp),
            o.modules.clone(),
            scenario::demo(
                o.smp,
                false,
                u32::try_from(o.modules.len()).unwrap_or(u32::MAX),
                &o.expect,
            ),
        ),
    };
    let mut sizes = Vec::new();
    for (i, k) in kernels.iter().enumerate() {
        let (_, len) = image(&k.path, &format!("module {}", i + 1))?;
        sizes.push(len);
    }
    let addrs = image::place_modules(&sizes, qemu::RAM_END)?;
    let edit = ChosenEdit {
        modules: addrs
            .iter()
            .zip(&sizes)
            .zip(&kernels)
            .map(|((&addr, &size), k)| Module {
                addr,
                size,
                bootargs: k.bootargs.clone(),
            })
            .collect(),
        xen_bootargs: Some(o.bootargs.clone()),
    };
    let dtb = toolchain::prepare_dtb(paths, o.smp, &edit, &name)?;
    let mods: Vec<(&Path, u64)> = kernels
        .iter()
        .map(|k| k.path.as_path())
        .zip(addrs.iter().copied())
        .collect();
    for (i, ((k, a), m)) in mods.iter().zip(&kernels).enumerate() {
        let args = m
            .bootargs
            .as_ref()
            .map(|b| format!(", bootargs \"{b}\""))
            .unwrap_or_default();
        eprintln!("hvrun: module {} at {a:#x}: {}{args}", i + 1, k.display());
    }
    let args = qemu::run_args(o.smp, &hv, &dtb, &mods);
    let program = qemu::qemu_binary();
    let log = paths.out.join(format!("{name}.log"));
    eprintln!("hvrun: {} {}", program, args.join(" "));
    eprintln!(
        "hvrun: serial log: {} (timeout {}s)",
        log.display(),
        o.timeout.as_secs()
    );
    let out = qemu::supervise(&program, &args, &log, exp, o.timeout, true)
        .map_err(|e| format!("{name}: {e}"))?;
    let failures = out.failures();
    let (seen, total) = out.matcher.progress();
    let how = match &out.end {
        End::Exited(s) => format!("QEMU exited with {s}"),
        End::TimedOut(t) => format!("killed after {}s", t.as_secs()),
        End::Stopped => "stopped after a forbidden line".into(),
    };
    if failures.is_empty() {
        eprintln!(
            "hvrun: PASS {name}: {seen}/{total} markers, {how}, {:.1}s",
            out.elapsed.as_secs_f64()
        );
        return Ok(());
    }
    eprintln!(
        "hvrun: ---- last {} lines of {} ----",
        out.tail(50).len(),
        log.display()
    );
    for l in out.tail(50) {
        eprintln!("{l}");
    }
    eprintln!("hvrun: ---- end of log ----");
    for s in &out.stderr {
        eprintln!("hvrun: qemu stderr: {s}");
    }
    for f in &failures {
        eprintln!("hvrun: {name}: {f}");
    }
    Err(format!(
        "{name}: {} problem(s), {seen}/{total} markers seen, {how}, {:.1}s",
        failures.len(),
        out.elapsed.as_secs_f64()
    ))
}
