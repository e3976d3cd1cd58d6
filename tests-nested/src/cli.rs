//! `hvrun`'s command line.

use std::path::PathBuf;
use std::time::Duration;

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Build hv and the payloads, make flat binaries.
    Build,
    /// Run hv with guest-hello (or the given modules) and show its output.
    Demo,
    /// Run the smoke test: guest-fault as d0 (the first module), guest-hello as d1.
    Smoke,
    /// Boot a Linux kernel (Debian's by default) as a dom0less domU.
    Linux,
    /// Print usage.
    Help,
}

/// Parsed options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The subcommand.
    pub action: Action,
    /// CPUs given to QEMU.
    pub smp: u32,
    /// QEMU's memory (`-m`), normalised to `<n>G` or `<n>M`.
    pub qemu_mem: String,
    /// Kernel modules for the demo (empty: the built guest-hello).
    pub modules: Vec<ModuleArg>,
    /// The `linux` command's domain.
    pub linux: LinuxArgs,
    /// Extra markers for the demo, matched in order alongside hv's own.
    pub expect: Vec<String>,
    /// hv's command line (`/chosen/xen,xen-bootargs`).
    pub bootargs: String,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Skip `hvrun build` before running.
    pub no_build: bool,
}

/// A `--module` with the options that follow it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ModuleArg {
    /// The kernel Image.
    pub path: PathBuf,
    /// The guest's command line (the module's `bootargs`); the word `dom0` marks the
    /// control domain (see [`ModuleArg::is_dom0`]).
    pub bootargs: Option<String>,
    /// The domain's RAM in bytes (`--mem`).
    pub mem: Option<u64>,
    /// The domain's vCPUs (`--vcpus`).
    pub vcpus: Option<u32>,
    /// Its initrd (`--initrd`).
    pub initrd: Option<PathBuf>,
}

impl ModuleArg {
    /// Whether `--module-args` mark this module as the control domain (d0; hv's rule is
    /// Xen's, the first module: the mark turns its `--mem`/`--vcpus` into hv's
    /// `dom0_mem=`/`dom0_max_vcpus=`).
    pub fn is_dom0(&self) -> bool {
        self.bootargs
            .as_deref()
            .is_some_and(|a| a.split_whitespace().any(|w| w == "dom0"))
    }

    /// Whether hv's per-domain settings were given (then it is described as a dom0less domain).
    pub fn has_domain_settings(&self) -> bool {
        self.mem.is_some() || self.vcpus.is_some() || self.initrd.is_some()
    }
}

/// The `linux` command's domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxArgs {
    /// The kernel Image (None: Debian's, fetched by tests-nested/linux/build.sh).
    pub kernel: Option<PathBuf>,
    /// The initrd (None with no `--kernel`: the project's initramfs).
    pub initrd: Option<PathBuf>,
    /// The guest's command line.
    pub cmdline: String,
    /// The domain's RAM in bytes.
    pub mem: u64,
    /// The domain's vCPUs.
    pub vcpus: u32,
}

/// hv's default command line for runs.
pub const DEFAULT_BOOTARGS: &str = "loglvl=info";
/// CPUs for the demo when `--smp` is not given (shows secondary bring-up).
pub const DEMO_SMP: u32 = 2;
/// Default QEMU timeout.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// Default QEMU timeout of `linux` (a kernel under TCG on a loaded machine).
pub const LINUX_TIMEOUT_SECS: u64 = 600;
/// The most CPUs (and a domain's vCPUs) a run may ask for.
pub const MAX_SMP: u32 = 8;
/// QEMU's memory when `--qemu-mem` is not given.
pub const DEFAULT_QEMU_MEM: &str = "1G";
/// Smallest `--qemu-mem`: hv below the DTB, modules from RAM base + 192 MiB.
pub const MIN_QEMU_MEM: u64 = 256 << 20;
/// The `linux` domain's RAM when `--mem` is not given.
pub const LINUX_MEM: u64 = 256 << 20;
/// The `linux` guest's command line when `--cmdline` is not given: the PV console,
/// early output through console_io, the initramfs's /init, reboot (so the run ends) on panic.
pub const LINUX_CMDLINE: &str = "console=hvc0 earlycon=xenboot rdinit=/init panic=-1 loglevel=7";

/// Usage text.
pub const USAGE: &str = "\
usage: hvrun <command> [options]

commands:
  build                 build hv and the guest payloads for aarch64-unknown-none
                        and write flat binaries to <target>/hvrun/
  demo                  build, then boot hv under QEMU with guest-hello as d1
                        (or the --module kernels) and check hv's serial markers
  smoke                 build, then boot hv with guest-fault as d0 and
                        guest-hello as d1 and check the markers (CI runs this)
  linux                 boot a Linux kernel as a dom0less domU: Debian's arm64
                        kernel with a small initramfs (fetched and checked on
                        first use), or yours with --kernel/--initrd
  domu                  a control domain (dom0-builder) builds domUs under
                        tlb=targeted and tlb=xen-compat and the TLB
                        invalidation counts are checked (`hvrun domu --help`)
  hostile               guest-hostile (negative tests, seeded random calls) as
                        d1 next to guest-responder as d2 (`hvrun hostile --help`)
  soak                  dom0-builder creates and destroys domUs; hv's frames,
                        VMIDs, event channels, heap must come back (`--help`)

options (demo, smoke, linux):
  --smp N               QEMU's CPUs (1..=8; default 2)
  --qemu-mem SIZE       QEMU's memory, e.g. 2G (default 1G; K/M/G, M if none)
  --bootargs STR        hv's command line (default \"loglvl=info\"), e.g.
                        \"loglvl=debug tlb=targeted\"
  --expect GLOB         demo, linux: a serial line that must appear (repeat;
                        matched in order; `*` matches any text)
  --timeout SECS        kill QEMU after SECS seconds (default 120; linux 600)
  --no-build            use what `hvrun build` made last time

options (linux):
  --kernel PATH         an arm64 Linux Image (default: Debian's)
  --initrd PATH         its initramfs (default with no --kernel: the project's)
  --cmdline STR         the guest kernel's command line (default
                        \"console=hvc0 earlycon=xenboot rdinit=/init panic=-1 loglevel=7\")
  --mem SIZE            the domain's RAM (default 256M)
  --vcpus N             the domain's vCPUs (default 1)

options (demo):
  --module PATH         a kernel Image to boot instead of guest-hello (repeat
                        for more domains); the options below apply to the
                        --module before them
  --module-args STR     its command line; the first module is the control
                        domain d0 (Xen's rule): the word `dom0` in its args
                        turns its --mem/--vcpus into dom0_mem=/dom0_max_vcpus=
  --mem SIZE            its domain's RAM (default 16M)
  --vcpus N             its domain's vCPUs (default 1)
  --initrd PATH         its initrd

A run passes when hv's markers appear in order and QEMU exits by itself with
status 0 after every domain powered off. It fails, naming the cause, when a
guest kernel panics, a domain reboots or crashes, or hv panics.
$CARGO_TARGET_DIR is honoured (default <repo>/target); $QEMU overrides
qemu-system-aarch64. Modules are loaded from 0x4c000000 upward, 2 MiB aligned.";

fn size_arg(name: &str, v: &str) -> Result<u64, String> {
    crate::qemu::parse_size(v)
        .filter(|&b| b >= 1 << 20 && b % 4096 == 0)
        .ok_or_else(|| {
            format!("{name} wants a size of at least 1M with a K, M or G suffix, got `{v}`")
        })
}

fn count_arg(name: &str, v: &str) -> Result<u32, String> {
    v.parse()
        .ok()
        .filter(|n| (1..=MAX_SMP).contains(n))
        .ok_or_else(|| format!("{name} wants 1..={MAX_SMP}, got `{v}`"))
}

/// Parses arguments (without the program name).
///
/// # Errors
/// A message for an unknown command or option, a missing or bad value.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut it = args.iter();
    let action = match it.next().map(String::as_str) {
        Some("build") => Action::Build,
        Some("demo") => Action::Demo,
        Some("smoke") => Action::Smoke,
        Some("linux") => Action::Linux,
        Some("help" | "-h" | "--help") | None => Action::Help,
        Some(other) => return Err(format!("unknown command `{other}`")),
    };
    let mut o = Options {
        action: action.clone(),
        smp: DEMO_SMP,
        qemu_mem: DEFAULT_QEMU_MEM.into(),
        modules: Vec::new(),
        linux: LinuxArgs {
            kernel: None,
            initrd: None,
            cmdline: LINUX_CMDLINE.into(),
            mem: LINUX_MEM,
            vcpus: 1,
        },
        expect: Vec::new(),
        bootargs: DEFAULT_BOOTARGS.into(),
        timeout: Duration::from_secs(if action == Action::Linux {
            LINUX_TIMEOUT_SECS
        } else {
            DEFAULT_TIMEOUT_SECS
        }),
        no_build: false,
    };
    let linux = action == Action::Linux;
    let mut smp_given = false;
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let only_linux = |name: &str| -> Result<(), String> {
            if linux {
                Ok(())
            } else {
                Err(format!("{name} is an option of `hvrun linux`"))
            }
        };
        let last_module = |m: &mut Vec<ModuleArg>, name: &str| -> Result<usize, String> {
            m.len()
                .checked_sub(1)
                .ok_or_else(|| format!("{name} must follow a --module (or use `hvrun linux`)"))
        };
        match a.as_str() {
            "--smp" => {
                o.smp = count_arg("--smp", &value("--smp")?)?;
                smp_given = true;
            }
            "--qemu-mem" => {
                let v = value("--qemu-mem")?;
                let b = size_arg("--qemu-mem", &v)?;
                if b < MIN_QEMU_MEM || b % (1 << 20) != 0 {
                    return Err(format!(
                        "--qemu-mem wants whole MiB, at least {}M, got `{v}`",
                        MIN_QEMU_MEM >> 20
                    ));
                }
                o.qemu_mem = if b % (1 << 30) == 0 {
                    format!("{}G", b >> 30)
                } else {
                    format!("{}M", b >> 20)
                };
            }
            "--kernel" => {
                only_linux("--kernel")?;
                o.linux.kernel = Some(PathBuf::from(value("--kernel")?));
            }
            "--cmdline" => {
                only_linux("--cmdline")?;
                o.linux.cmdline = value("--cmdline")?;
            }
            "--module" => o.modules.push(ModuleArg {
                path: PathBuf::from(value("--module")?),
                ..ModuleArg::default()
            }),
            "--module-args" => {
                let v = value("--module-args")?;
                let i = last_module(&mut o.modules, "--module-args")?;
                if let Some(m) = o.modules.get_mut(i) {
                    m.bootargs = Some(v);
                }
            }
            "--mem" => {
                let b = size_arg("--mem", &value("--mem")?)?;
                if linux {
                    o.linux.mem = b;
                } else {
                    let i = last_module(&mut o.modules, "--mem")?;
                    if let Some(m) = o.modules.get_mut(i) {
                        m.mem = Some(b);
                    }
                }
            }
            "--vcpus" => {
                let n = count_arg("--vcpus", &value("--vcpus")?)?;
                if linux {
                    o.linux.vcpus = n;
                } else {
                    let i = last_module(&mut o.modules, "--vcpus")?;
                    if let Some(m) = o.modules.get_mut(i) {
                        m.vcpus = Some(n);
                    }
                }
            }
            "--initrd" => {
                let p = PathBuf::from(value("--initrd")?);
                if linux {
                    o.linux.initrd = Some(p);
                } else {
                    let i = last_module(&mut o.modules, "--initrd")?;
                    if let Some(m) = o.modules.get_mut(i) {
                        m.initrd = Some(p);
                    }
                }
            }
            "--expect" => o.expect.push(value("--expect")?),
            "--bootargs" => o.bootargs = value("--bootargs")?,
            "--timeout" => {
                let v = value("--timeout")?;
                let s: u64 = v
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("--timeout wants seconds > 0, got `{v}`"))?;
                o.timeout = Duration::from_secs(s);
            }
            "--no-build" => o.no_build = true,
            "-h" | "--help" => o.action = Action::Help,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if o.action == Action::Smoke && !smp_given {
        return Err("smoke needs --smp N".into());
    }
    if o.action == Action::Linux && !o.modules.is_empty() {
        return Err("`hvrun linux` takes --kernel, not --module".into());
    }
    if !matches!(o.action, Action::Demo | Action::Linux | Action::Help)
        && (!o.modules.is_empty() || !o.expect.is_empty())
    {
        return Err("--module and --expect are only for demo (and --expect for linux)".into());
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Options, String> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn demo_defaults() {
        let o = p("demo").unwrap();
        assert_eq!(o.action, Action::Demo);
        assert_eq!(o.smp, DEMO_SMP);
        assert!(o.modules.is_empty());
        assert_eq!(o.bootargs, "loglvl=info");
        assert!(!o.no_build);
    }

    #[test]
    fn options_are_read() {
        let o = p("demo --smp 2 --module a.bin --module-args dom0 --module b.bin --bootargs loglvl=debug --timeout 9 --no-build --expect x*y").unwrap();
        assert_eq!(o.smp, 2);
        assert_eq!(
            o.modules,
            vec![
                ModuleArg {
                    path: "a.bin".into(),
                    bootargs: Some("dom0".into()),
                    ..ModuleArg::default()
                },
                ModuleArg {
                    path: "b.bin".into(),
                    ..ModuleArg::default()
                }
            ]
        );
        assert_eq!(o.expect, vec!["x*y".to_string()]);
        assert_eq!(o.bootargs, "loglvl=debug");
        assert_eq!(o.timeout, Duration::from_secs(9));
        assert!(o.no_build);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(p("smoke").unwrap_err().contains("--smp"));
        assert!(p("smoke --smp 0").is_err());
        assert!(p("smoke --smp 9").is_err());
        assert!(p("smoke --smp 1 --module x").is_err());
        assert!(p("smoke --smp 1 --expect x").is_err());
        assert!(p("demo --module-args dom0").unwrap_err().contains("follow"));
        assert!(p("demo --timeout 0").is_err());
        assert!(p("demo --smp").unwrap_err().contains("needs a value"));
        assert!(p("demo --frob").is_err());
        assert!(p("frob").is_err());
        assert_eq!(p("").unwrap().action, Action::Help);
        assert_eq!(p("smoke --smp 2").unwrap().smp, 2);
        assert!(p("demo --mem 64M")
            .unwrap_err()
            .contains("follow a --module"));
        assert!(p("demo --kernel x").unwrap_err().contains("hvrun linux"));
        assert!(p("linux --module x").is_err());
        assert!(p("linux --mem 12Q").unwrap_err().contains("size"));
        assert!(p("linux --mem 100K").is_err());
        assert!(p("linux --vcpus 0").is_err());
        assert!(p("demo --qemu-mem 128M").unwrap_err().contains("at least"));
    }

    #[test]
    fn linux_takes_kernel_initrd_memory_and_cpus() {
        let o = p("linux --kernel Image --initrd cpio --mem 512M --vcpus 2 --smp 2 --qemu-mem 2G")
            .unwrap();
        assert_eq!(o.action, Action::Linux);
        assert_eq!(o.linux.kernel, Some("Image".into()));
        assert_eq!(o.linux.initrd, Some("cpio".into()));
        assert_eq!(o.linux.mem, 512 << 20);
        assert_eq!(o.linux.vcpus, 2);
        assert_eq!(o.smp, 2);
        assert_eq!(o.qemu_mem, "2G");
        assert_eq!(p("demo --qemu-mem 1536").unwrap().qemu_mem, "1536M");
        assert_eq!(o.linux.cmdline, LINUX_CMDLINE);
        assert_eq!(o.timeout, Duration::from_secs(LINUX_TIMEOUT_SECS));
        let d = p("linux").unwrap();
        assert_eq!(
            (d.linux.kernel, d.linux.mem, d.linux.vcpus),
            (None, LINUX_MEM, 1)
        );
        assert_eq!(d.qemu_mem, DEFAULT_QEMU_MEM);
    }

    #[test]
    fn demo_module_settings_apply_to_the_module_before_them() {
        let o = p("demo --module a --mem 64M --module-args dom0 --module b --vcpus 2 --initrd r")
            .unwrap();
        assert_eq!(o.modules[0].mem, Some(64 << 20));
        assert!(o.modules[0].is_dom0());
        assert_eq!(o.modules[1].vcpus, Some(2));
        assert_eq!(o.modules[1].initrd, Some("r".into()));
        assert!(!o.modules[1].is_dom0());
        assert!(o.modules[1].has_domain_settings());
    }

    #[test]
    fn help_has_no_project_internal_words() {
        for w in ["issue", "TODO", "XXX"] {
            assert!(!USAGE.contains(w), "{w}");
        }
        for opt in [
            "--kernel",
            "--initrd",
            "--mem",
            "--vcpus",
            "--qemu-mem",
            "--cmdline",
        ] {
            assert!(USAGE.contains(opt), "{opt}");
        }
    }
}
