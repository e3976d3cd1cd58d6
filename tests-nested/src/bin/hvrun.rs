//! `hvrun`: builds hv and its guest payloads, boots them under QEMU and checks
//! hv's serial markers. Run `hvrun help` for usage.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use tests_nested::cli::{self, Action, ModuleArg, Options};
use tests_nested::dts::{ChosenEdit, DomU, Module};
use tests_nested::image::{self, ImageHeader};
use tests_nested::markers::Expectations;
use tests_nested::qemu::{self, End};
use tests_nested::scenario;
use tests_nested::toolchain::{self, Paths};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("domu") {
        // The domU-building acceptance run (tests_nested::domu has its own options).
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
        Action::Demo | Action::Smoke | Action::Linux => run(&paths, &opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hvrun: FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a kernel image and checks its arm64 Image header. `built` says whether hvrun made
/// the file (a missing one then points at the build, else at the path the user gave).
fn image(path: &Path, what: &str, built: bool) -> Result<(ImageHeader, u64), String> {
    let bytes = std::fs::read(path).map_err(|e| {
        let hint = if built {
            "did `hvrun build` succeed?"
        } else {
            "check the path"
        };
        format!("cannot read {what} {}: {e} ({hint})", path.display())
    })?;
    let h = ImageHeader::parse(&bytes).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    Ok((h, bytes.len() as u64))
}

/// The size of a file the user named (an initrd).
fn file_len(path: &Path, what: &str) -> Result<u64, String> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|e| {
        format!(
            "cannot read {what} {}: {e} (check the path)",
            path.display()
        )
    })
}

/// A payload built by `hvrun build`, with no module bootargs.
fn built(paths: &Paths, bin: &str) -> ModuleArg {
    ModuleArg {
        path: paths.flat(bin),
        ..ModuleArg::default()
    }
}

/// Debian's kernel and the project's initramfs, from tests-nested/linux/build.sh (which
/// fetches, checks and caches them; its progress goes to the terminal).
fn project_linux(paths: &Paths) -> Result<(PathBuf, PathBuf), String> {
    let script = paths.repo.join("tests-nested/linux/build.sh");
    eprintln!(
        "hvrun: fetching Debian's arm64 kernel (first run: ~13 MB) and building the initramfs ({})",
        script.display()
    );
    let out = Command::new("bash")
        .arg(&script)
        .env("CARGO_TARGET_DIR", &paths.target)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .map(PathBuf::from)
            .ok_or_else(|| format!("{} printed no {k}", script.display()))
    };
    Ok((get("LINUX_IMAGE")?, get("LINUX_INITRD")?))
}

/// One domain of a run: its kernel and initrd files, and how it is described to hv.
struct Dom {
    arg: ModuleArg,
    /// Described as a dom0less `xen,domain` node (else a `/chosen/module@` kernel).
    dom0less: bool,
    /// The file was made by hvrun (errors point at the build).
    built: bool,
}

fn run(paths: &Paths, o: &Options) -> Result<(), String> {
    toolchain::check_tools()?;
    if !o.no_build {
        toolchain::build(paths)?;
    }
    let hv = paths.flat("hv");
    let (hv_header, hv_len) = image(&hv, "hv image", true).map_err(|e| {
        format!("{e}\n(hv must carry the 64-byte arm64 Image header so that QEMU's -kernel boots it at EL2)")
    })?;
    image::check_kernel_fits(&hv_header, hv_len)?;

    let mut xen_bootargs = o.bootargs.clone();
    let (name, doms, exp): (String, Vec<Dom>, Expectations) = match o.action {
        Action::Smoke => (
            format!("smoke-smp{}", o.smp),
            ["guest-fault", "guest-hello"]
                .iter()
                .map(|b| Dom {
                    arg: built(paths, b),
                    dom0less: false,
                    built: true,
                })
                .collect(),
            scenario::smoke(o.smp),
        ),
        Action::Linux => {
            let l = &o.linux;
            let (kernel, initrd, mut extra) = match &l.kernel {
                Some(k) => (k.clone(), l.initrd.clone(), Vec::new()),
                None => {
                    let (k, i) = project_linux(paths)?;
                    let markers = if l.initrd.is_none() {
                        scenario::linux_initramfs_markers(l.vcpus)
                    } else {
                        Vec::new()
                    };
                    (k, Some(l.initrd.clone().unwrap_or(i)), markers)
                }
            };
            extra.extend(o.expect.iter().cloned());
            (
                format!("linux-smp{}-vcpus{}", o.smp, l.vcpus),
                vec![Dom {
                    arg: ModuleArg {
                        path: kernel,
                        bootargs: Some(l.cmdline.clone()),
                        mem: Some(l.mem),
                        vcpus: Some(l.vcpus),
                        initrd,
                    },
                    dom0less: true,
                    built: false,
                }],
                scenario::linux(o.smp, &extra),
            )
        }
        _ if o.modules.is_empty() => (
            format!("demo-smp{}", o.smp),
            // No module: hv runs the guest-hello embedded in its image.
            Vec::new(),
            scenario::demo(o.smp, true, 1, &o.expect),
        ),
        _ => {
            // hv's per-domain settings never go into a guest's command line: a domain
            // with --mem/--vcpus/--initrd is a dom0less `xen,domain` node (then all
            // non-control domains are, to keep their order); the control domain's are
            // Xen's dom0_mem=/dom0_max_vcpus= on hv's command line.
            let any = o
                .modules
                .iter()
                .any(|m| !m.is_dom0() && m.has_domain_settings());
            for m in o.modules.iter().filter(|m| m.is_dom0()) {
                if let Some(b) = m.mem {
                    xen_bootargs.push_str(&format!(" dom0_mem={}K", b >> 10));
                }
                if let Some(v) = m.vcpus {
                    xen_bootargs.push_str(&format!(" dom0_max_vcpus={v}"));
                }
                if m.initrd.is_some() {
                    return Err("--initrd is not supported for the control domain".into());
                }
            }
            (
                format!("demo-smp{}-custom", o.smp),
                o.modules
                    .iter()
                    .map(|m| Dom {
                        arg: m.clone(),
                        dom0less: any && !m.is_dom0(),
                        built: false,
                    })
                    .collect(),
                scenario::demo(
                    o.smp,
                    false,
                    u32::try_from(o.modules.len()).unwrap_or(u32::MAX),
                    &o.expect,
                ),
            )
        }
    };
    // Files to load, in order: each domain's kernel, then its initrd.
    let mut files: Vec<(PathBuf, u64)> = Vec::new();
    for (i, d) in doms.iter().enumerate() {
        let (_, len) = image(&d.arg.path, &format!("kernel {}", i + 1), d.built)?;
        files.push((d.arg.path.clone(), len));
        if let Some(r) = &d.arg.initrd {
            files.push((r.clone(), file_len(r, &format!("initrd {}", i + 1))?));
        }
    }
    let qemu_mem_bytes = qemu::parse_size(&o.qemu_mem).unwrap_or(1 << 30);
    let sizes: Vec<u64> = files.iter().map(|f| f.1).collect();
    let addrs = image::place_modules(&sizes, image::RAM_BASE + qemu_mem_bytes)
        .map_err(|e| format!("{e}: give QEMU more memory with --qemu-mem"))?;
    let mut edit = ChosenEdit {
        modules: Vec::new(),
        xen_bootargs: Some(xen_bootargs),
        domus: Vec::new(),
    };
    let mut at = addrs.iter().zip(&sizes);
    for d in &doms {
        let (&addr, &size) = at.next().ok_or("module placement")?;
        let kernel = Module {
            addr,
            size,
            bootargs: d.arg.bootargs.clone(),
        };
        let ramdisk = match d.arg.initrd {
            Some(_) => at.next().map(|(&a, &s)| (a, s)),
            None => None,
        };
        if d.dom0less {
            edit.domus.push(DomU {
                name: format!("domU{}", edit.domus.len() + 1),
                memory_kib: d.arg.mem.map(|b| b >> 10),
                cpus: d.arg.vcpus.unwrap_or(1),
                kernel,
                ramdisk,
            });
        } else {
            edit.modules.push(kernel);
        }
    }
    let dtb = toolchain::prepare_dtb_mem(paths, o.smp, &o.qemu_mem, &edit, &name)?;
    let mods: Vec<(&Path, u64)> = files
        .iter()
        .map(|f| f.0.as_path())
        .zip(addrs.iter().copied())
        .collect();
    for (k, a) in &mods {
        eprintln!("hvrun: loading {} at {a:#x}", k.display());
    }
    for m in &edit.modules {
        let args = m
            .bootargs
            .as_ref()
            .map(|b| format!(", command line \"{b}\""))
            .unwrap_or_default();
        eprintln!("hvrun: module at {:#x}{args}", m.addr);
    }
    for d in &edit.domus {
        eprintln!(
            "hvrun: {}: {} MiB, {} vCPU(s), kernel at {:#x}{}{}",
            d.name,
            d.memory_kib.map_or(16, |k| k >> 10),
            d.cpus,
            d.kernel.addr,
            d.ramdisk
                .map(|(a, _)| format!(", initrd at {a:#x}"))
                .unwrap_or_default(),
            d.kernel
                .bootargs
                .as_deref()
                .map(|b| format!(", command line \"{b}\""))
                .unwrap_or_default()
        );
    }
    let args = qemu::run_args_mem(o.smp, &o.qemu_mem, &hv, &dtb, &mods);
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
        End::Stopped => "stopped after a failure line".into(),
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
    let lines = out.lines.iter().chain(&out.stderr).map(String::as_str);
    for h in scenario::hints(lines) {
        eprintln!("hvrun: hint: {h}");
    }
    Err(format!(
        "{name}: {}, {seen}/{total} markers seen, {how}, {:.1}s",
        failures.first().map_or("failed", String::as_str),
        out.elapsed.as_secs_f64()
    ))
}
