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
    /// Run the smoke test: guest-fault as d1, guest-hello as d2.
    Smoke,
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
    /// Kernel modules for the demo (empty: the built guest-hello).
    pub modules: Vec<ModuleArg>,
    /// Extra markers for the demo, matched in order alongside hv's own.
    pub expect: Vec<String>,
    /// hv's command line (`/chosen/xen,xen-bootargs`).
    pub bootargs: String,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Skip `hvrun build` before running.
    pub no_build: bool,
}

/// A `--module` with its optional `--module-args`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleArg {
    /// The kernel Image.
    pub path: PathBuf,
    /// The module node's `bootargs` (hv reads e.g. `dom0`, `mem=`).
    pub bootargs: Option<String>,
}

/// hv's default command line for runs.
pub const DEFAULT_BOOTARGS: &str = "loglvl=info";
/// CPUs for the demo when `--smp` is not given (shows secondary bring-up).
pub const DEMO_SMP: u32 = 2;
/// Default QEMU timeout.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// The most CPUs a run may ask for.
pub const MAX_SMP: u32 = 8;

/// Usage text.
pub const USAGE: &str = "\
usage: hvrun <command> [options]

commands:
  build                 build hv and the guest payloads for aarch64-unknown-none
                        and write flat binaries to <target>/hvrun/
  demo                  build, then boot hv under QEMU with guest-hello as d1
                        (or the --module kernels) and check hv's serial markers
  smoke                 build, then boot hv with guest-fault as d1 and
                        guest-hello as d2 and check the markers (CI runs this)
  domu                  issue 3: d0 (dom0-builder) builds domUs under
                        tlb=targeted and tlb=xen-compat and the TLBI counts
                        are asserted (own options: `hvrun domu --help`)

options (demo, smoke):
  --smp N               CPUs (1..=8; demo default 2, smoke requires it)
  --module PATH         demo only: a kernel Image to boot instead of
                        guest-hello (repeat for more domains, in order)
  --module-args STR     demo only: bootargs of the module node for the
                        preceding --module (e.g. \"dom0\")
  --expect GLOB         demo only: a serial marker that must appear (repeat;
                        matched in order; `*` matches any text)
  --bootargs STR        hv's command line (default \"loglvl=info\"), e.g.
                        \"loglvl=debug tlb=targeted\"
  --timeout SECS        kill QEMU after SECS seconds (default 120)
  --no-build            use what `hvrun build` made last time

$CARGO_TARGET_DIR is honoured (default <repo>/target); $QEMU overrides
qemu-system-aarch64. Modules are loaded from 0x4c000000 upward, 2 MiB aligned.";

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
        Some("help" | "-h" | "--help") | None => Action::Help,
        Some(other) => return Err(format!("unknown command `{other}`")),
    };
    let mut o = Options {
        action,
        smp: DEMO_SMP,
        modules: Vec::new(),
        expect: Vec::new(),
        bootargs: DEFAULT_BOOTARGS.into(),
        timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        no_build: false,
    };
    let mut smp_given = false;
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--smp" => {
                let v = value("--smp")?;
                o.smp = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_SMP).contains(n))
                    .ok_or_else(|| format!("--smp wants 1..={MAX_SMP}, got `{v}`"))?;
                smp_given = true;
            }
            "--module" => o.modules.push(ModuleArg {
                path: PathBuf::from(value("--module")?),
                bootargs: None,
            }),
            "--module-args" => {
                let v = value("--module-args")?;
                let m = o
                    .modules
                    .last_mut()
                    .ok_or("--module-args must follow a --module")?;
                m.bootargs = Some(v);
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
    if o.action != Action::Demo && (!o.modules.is_empty() || !o.expect.is_empty()) {
        return Err("--module and --expect are only for demo".into());
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
                    bootargs: Some("dom0".into())
                },
                ModuleArg {
                    path: "b.bin".into(),
                    bootargs: None
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
    }
}
