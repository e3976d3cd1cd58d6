//! `hvrun hostile` and `hvrun soak` (issue 9, deliverable 5).
//!
//! `hostile`: hv under bare QEMU with `guest-hostile` as d1 (named negative
//! tests, then a seeded random phase that prints every call before making
//! it) next to `guest-responder` as d2, which must keep answering (a
//! heartbeat with a timed `xen_version` every ~200 ms) until d1 is gone.
//! hv must not panic, every d1 test must pass, d2 must see d1 go and power
//! off, hv's warnings for d1 must stay rate-limited, and hv must power off.
//!
//! `soak`: dom0-builder as d0 runs `destroy-loop=<rounds>` (create, populate,
//! an interdomain event channel, destroy) and checks that free pool pages,
//! hv's free frames, VMIDs, domains, event channels and hv's free heap
//! return to their start values (`HVOP_get_resources`).

use crate::domu;
use crate::markers::Expectations;
use crate::qemu::{self, End, Outcome};
use crate::toolchain::{self, Paths};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Usage of both commands.
pub const USAGE: &str = "\
usage: hvrun hostile [--seed N] [--calls N] [--random-only] [--smp N] [--timeout SECS] [--no-build]
       hvrun soak [--rounds N] [--flood N] [--smp N] [--timeout SECS] [--no-build]

hostile: guest-hostile as d1 (vcpus=2; named tests, then N random calls
  from seed N, each printed before it is made: rerun with the same --seed to
  reproduce), guest-responder as d2 (must stay responsive until d1 is gone).
  --random-only skips the named tests (long campaigns: --calls 100000).
  Defaults: --seed 1 --calls 2000 --smp 2 --timeout 600.
soak: dom0-builder's destroy-loop=N (default 1000): frames, VMIDs, domains,
  event channels and hv's heap back to their start values; then createdomain
  with bad flags (-EINVAL) and create-flood=N (default 3000, 0: skip): up to N
  empty domains at once until hv refuses, all destroyed, resources back.
  --timeout 900.";

/// Most hv warning lines about d1 a run may show (hv rate-limits guest-triggered logs).
pub const MAX_D1_WARNINGS: usize = 200;
/// Slowest `xen_version` d2 may see while d1 attacks (no hypercall holds a
/// machine-wide lock for long; generous for TCG on a loaded host).
pub const MAX_D2_CALL_US: u64 = 1_000_000;
/// Longest gap between d2's ~200 ms heartbeats.
pub const MAX_D2_GAP_MS: u64 = 3_000;

/// `(xen_version us, gap ms)` from a d2 line `... slow: xen_version <us> us, gap <ms> ms`.
#[must_use]
pub fn slow_line(line: &str) -> Option<(u64, u64)> {
    let (_, rest) = line.split_once("slow: xen_version ")?;
    let (us, rest) = rest.split_once(" us, gap ")?;
    let ms = rest.split_once(" ms")?.0;
    Some((us.parse().ok()?, ms.parse().ok()?))
}

/// `(max gap ms, max xen_version us)` from d2's last line.
#[must_use]
pub fn responder_maxima(line: &str) -> Option<(u64, u64)> {
    let num = |key: &str| -> Option<u64> {
        let at = line.find(key)? + key.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((num("max gap ")?, num("max xen_version ")?))
}

/// Parsed options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Random-phase seed.
    pub seed: u64,
    /// Random-phase calls.
    pub calls: u64,
    /// Soak rounds.
    pub rounds: u32,
    /// Soak: empty domains created at once after the rounds (0: none).
    pub flood: u32,
    /// QEMU CPUs.
    pub smp: u32,
    /// QEMU timeout.
    pub timeout: Duration,
    /// Use the images built last time.
    pub no_build: bool,
    /// hostile: skip the named tests (a long seeded random campaign).
    pub random_only: bool,
}

/// Parses `args` (after the command).
///
/// # Errors
/// A message for an unknown option or a bad value.
pub fn parse(soak: bool, args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        seed: 1,
        calls: 2000,
        rounds: 1000,
        flood: 3000,
        smp: 2,
        timeout: Duration::from_secs(if soak { 900 } else { 600 }),
        no_build: false,
        random_only: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name} wants a number, got `{v}`"))
        };
        match a.as_str() {
            "--seed" if !soak => o.seed = num("--seed")?,
            "--calls" if !soak => o.calls = num("--calls")?,
            "--rounds" if soak => {
                o.rounds = u32::try_from(num("--rounds")?)
                    .ok()
                    .filter(|&r| r > 0)
                    .ok_or("--rounds wants 1..=4294967295")?;
            }
            "--flood" if soak => {
                o.flood = u32::try_from(num("--flood")?)
                    .ok()
                    .filter(|&n| n <= 8192)
                    .ok_or("--flood wants 0..=8192")?;
            }
            "--smp" => {
                o.smp = u32::try_from(num("--smp")?)
                    .ok()
                    .filter(|n| (1..=8).contains(n))
                    .ok_or("--smp wants 1..=8")?;
            }
            "--timeout" => {
                let s = num("--timeout")?;
                if s == 0 {
                    return Err("--timeout wants seconds > 0".into());
                }
                o.timeout = Duration::from_secs(s);
            }
            "--no-build" => o.no_build = true,
            "--random-only" if !soak => o.random_only = true,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(o)
}

/// `hvrun hostile ...` / `hvrun soak ...` (`args[0]` is the command).
///
/// # Errors
/// A message when the run could not be set up or a check failed.
pub fn main(paths: &Paths, args: &[String]) -> Result<(), String> {
    let soak = args.first().map(String::as_str) == Some("soak");
    let rest = args.get(1..).unwrap_or(&[]);
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let o = parse(soak, rest)?;
    toolchain::check_tools()?;
    if !o.no_build {
        toolchain::build(paths)?;
        if soak {
            domu::build_dom0(paths)?;
        } else {
            build_hostile(paths)?;
        }
    }
    if soak {
        run_soak(paths, &o)
    } else {
        run_hostile(paths, &o)
    }
}

fn run_cmd(cmd: &mut Command, what: &str) -> Result<(), String> {
    let s = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if s.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({s})"))
    }
}

/// Builds guest-hostile's two binaries and their flat images.
///
/// # Errors
/// A message naming the step that failed.
pub fn build_hostile(paths: &Paths) -> Result<(), String> {
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
                "guest-hostile",
            ]),
        "cargo build -p guest-hostile",
    )?;
    let objcopy = toolchain::objcopy(paths)?;
    for bin in ["guest-hostile", "guest-responder"] {
        run_cmd(
            Command::new(&objcopy)
                .args(["-O", "binary"])
                .arg(paths.elf(bin))
                .arg(paths.flat(bin)),
            &format!("llvm-objcopy {bin}"),
        )?;
    }
    Ok(())
}

fn file_len(p: &Path) -> Result<u64, String> {
    std::fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| format!("cannot read {}: {e} (build first)", p.display()))
}

fn common_never(e: Expectations) -> Expectations {
    e.never("panicked at")
        .never("hv: ERROR: panic on CPU")
        .never("hv: ERROR: unexpected * exception at EL2")
        .never("hv: ERROR: stack overflow on CPU")
        .never("scheduled but not parked")
}

/// The hostile run's markers.
#[must_use]
pub fn hostile_expectations(smp: u32) -> Expectations {
    let cpus: Vec<Vec<String>> = (0..smp)
        .map(|n| vec![format!("hv: CPU{n} online")])
        .collect();
    let mut chains = cpus;
    chains.push(vec![
        "(d1) guest-hostile: seed * calls *".into(),
        "(d1) == random phase".into(),
        "(d1) guest-hostile: done: * passed, 0 failed".into(),
        "hv: d1 ended (poweroff)".into(),
    ]);
    chains.push(vec![
        "(d2) responder: up, watching d1".into(),
        "(d2) responder: d1 gone after * beats*".into(),
        "hv: d2 ended (poweroff)".into(),
    ]);
    common_never(
        Expectations::new()
            .then(crate::scenario::BANNER)
            .then_all(chains)
            .then(crate::scenario::ALL_ENDED),
    )
    .never("(d1) guest panic:")
    .never("(d1) guest-rt: unexpected exception")
    .never("(d2) guest-rt: unexpected exception")
}

/// Problems found in a finished hostile run's log beyond its markers.
#[must_use]
pub fn hostile_check(lines: &[String]) -> Vec<String> {
    let mut p = Vec::new();
    for l in lines.iter().filter(|l| l.starts_with("(d1) FAIL ")) {
        p.push(format!("d1: {}", &l[5..]));
    }
    let warns = lines
        .iter()
        .filter(|l| l.starts_with("hv: WARN: d1") || l.starts_with("hv: WARN: d1v"))
        .count();
    if warns > MAX_D1_WARNINGS {
        p.push(format!(
            "hv printed {warns} warnings about d1 (more than {MAX_D1_WARNINGS}: guest-triggered logs must be rate-limited)"
        ));
    }
    match lines
        .iter()
        .find(|l| l.starts_with("(d2) responder: d1 gone") && !l.contains("never seen"))
    {
        None => p.push("d2 never saw d1 alive and then gone".into()),
        Some(l) => match responder_maxima(l) {
            Some((gap, call)) if gap <= MAX_D2_GAP_MS && call <= MAX_D2_CALL_US => {}
            Some((gap, call)) => p.push(format!(
                "d2 was starved while d1 ran: max heartbeat gap {gap} ms (limit {MAX_D2_GAP_MS}), slowest xen_version {call} us (limit {MAX_D2_CALL_US})"
            )),
            None => p.push(format!("cannot read d2's maxima from `{l}`")),
        },
    }
    // d2's "slow:" lines as they happen (the run may not reach d2's last line).
    if let Some(l) = lines.iter().find(|l| {
        l.starts_with("(d2) responder: beat ")
            && l.contains(": slow: ")
            && slow_line(l).is_some_and(|(call, gap)| call > MAX_D2_CALL_US || gap > MAX_D2_GAP_MS)
    }) {
        p.push(format!("d2 was starved while d1 ran: {l}"));
    }
    for l in lines
        .iter()
        .filter(|l| l.starts_with("(d2) responder: FAIL"))
    {
        p.push(format!("d2: {}", &l[5..]));
    }
    if let Some(l) = lines
        .iter()
        .find(|l| l.starts_with("(d2) responder: d1 gone") && !l.contains("map failures 0"))
    {
        p.push(format!(
            "d2 could not map pages of its own while d1 ran (hv's frames are not bounded per domain): {l}"
        ));
    }
    p
}

fn report(name: &str, log: &Path, out: &Outcome, mut problems: Vec<String>) -> Result<(), String> {
    problems.extend(out.failures());
    let (seen, total) = out.matcher.progress();
    if problems.is_empty() {
        eprintln!(
            "hvrun: PASS {name}: {seen}/{total} markers, {:.1}s (log {})",
            out.elapsed.as_secs_f64(),
            log.display()
        );
        return Ok(());
    }
    eprintln!("hvrun: ---- last 40 lines of {} ----", log.display());
    for l in out.tail(40) {
        eprintln!("{l}");
    }
    eprintln!("hvrun: ---- end ----");
    for w in out.matcher.waiting_for() {
        eprintln!("hvrun: {name}: still waiting for {w}");
    }
    for pr in &problems {
        eprintln!("hvrun: {name}: {pr}");
    }
    Err(format!(
        "{name}: {} problem(s), {seen}/{total} markers, {:.1}s",
        problems.len(),
        out.elapsed.as_secs_f64()
    ))
}

fn run_hostile(paths: &Paths, o: &Options) -> Result<(), String> {
    let hv = paths.flat("hv");
    // Xen's rule makes the first kernel module dom0 (issue 11): guest-hello
    // takes that place so that guest-hostile stays the unprivileged d1.
    let d0 = paths.flat("guest-hello");
    let d1 = paths.flat("guest-hostile");
    let d2 = paths.flat("guest-responder");
    let sizes = [file_len(&d1)?, file_len(&d2)?, file_len(&d0)?];
    let addrs = crate::image::place_modules(&sizes, qemu::RAM_END)?;
    let name = format!("hostile-seed{}", o.seed);
    let edit = crate::dts::ChosenEdit {
        modules: vec![
            crate::dts::Module {
                addr: addrs[2],
                size: sizes[2],
                bootargs: None,
            },
            crate::dts::Module {
                addr: addrs[0],
                size: sizes[0],
                bootargs: Some(format!(
                    "vcpus=2 hostile-seed={} hostile-calls={}{}",
                    o.seed,
                    o.calls,
                    if o.random_only {
                        " hostile-named=0"
                    } else {
                        ""
                    }
                )),
            },
            crate::dts::Module {
                addr: addrs[1],
                size: sizes[1],
                bootargs: Some(format!("responder-max-s={}", o.timeout.as_secs())),
            },
        ],
        xen_bootargs: Some("loglvl=info".into()),
        domus: Vec::new(),
    };
    let dtb = toolchain::prepare_dtb(paths, o.smp, &edit, &name)?;
    let loads: Vec<(&Path, u64)> = vec![
        (d1.as_path(), addrs[0]),
        (d2.as_path(), addrs[1]),
        (d0.as_path(), addrs[2]),
    ];
    let args = qemu::run_args(o.smp, &hv, &dtb, &loads);
    let log = paths.out.join(format!("{name}.log"));
    eprintln!(
        "hvrun: {name}: guest-hostile (d1, seed {}, {} random calls) + guest-responder (d2), -smp {}, log {}",
        o.seed,
        o.calls,
        o.smp,
        log.display()
    );
    let out = qemu::supervise(
        &qemu::qemu_binary(),
        &args,
        &log,
        hostile_expectations(o.smp),
        o.timeout,
        false,
    )
    .map_err(|e| format!("{name}: {e}"))?;
    let d1_pass = out
        .lines
        .iter()
        .filter(|l| l.starts_with("(d1) PASS "))
        .count();
    if let Some(l) = out
        .lines
        .iter()
        .find(|l| l.starts_with("(d2) responder: d1 gone"))
    {
        eprintln!("hvrun: {name}: {l}");
    }
    eprintln!("hvrun: {name}: d1 passed {d1_pass} named tests");
    if matches!(out.end, End::TimedOut(_)) {
        if let Some(l) = out.lines.iter().rev().find(|l| l.starts_with("(d1) R ")) {
            eprintln!("hvrun: {name}: d1's last random call: {l}");
        }
    }
    let problems = hostile_check(&out.lines);
    report(&name, &log, &out, problems)
}

/// The soak's markers (`flood` > 0: the create-flood's too).
#[must_use]
pub fn soak_expectations(rounds: u32, flood: u32) -> Expectations {
    let done = format!("(d0) dom0: destroy-loop n={rounds} done={rounds} *");
    let mut e = Expectations::new()
        .then(crate::scenario::BANNER)
        .then(&done)
        .then("(d0) dom0: destroy-loop free_pages before=* PASS");
    for f in [
        "pool_free",
        "hv_frames_free",
        "vmids_in_use",
        "domains",
        "evtchns_in_use",
        "heap_free",
    ] {
        e = e.then(&format!(
            "(d0) dom0: destroy-loop {f} back to its start value after {rounds} rounds *: PASS"
        ));
    }
    e = e.then("(d0) dom0: destroy-loop dom0's end of a destroyed domU's event channel reads unbound*: PASS*");
    if flood > 0 {
        e = e
            .then("(d0) dom0: negative: createdomain flags 0xffffffff -> -EINVAL: PASS*")
            .then("(d0) dom0: negative: create-flood: *: PASS*")
            .then("(d0) dom0: negative: create-flood again: *: PASS*");
        for f in [
            "pool_free",
            "hv_frames_free",
            "vmids_in_use",
            "domains",
            "evtchns_in_use",
            "heap_free",
        ] {
            e = e.then(&format!(
                "(d0) dom0: create-flood {f} back to its start value *: PASS"
            ));
        }
    }
    common_never(
        e.then("(d0) dom0: RESULT PASS")
            .then(crate::scenario::ALL_ENDED),
    )
    .never("(d0) dom0: FAIL")
    .never("(d0) dom0: destroy-loop FAIL")
}

fn run_soak(paths: &Paths, o: &Options) -> Result<(), String> {
    let hv = paths.flat("hv");
    let dom0 = paths.flat("dom0-builder");
    // dom0-builder wants an images blob as its ramdisk; give it guest-hello.
    let hello = std::fs::read(paths.flat("guest-hello"))
        .map_err(|e| format!("cannot read guest-hello: {e}"))?;
    let blob_bytes = domu::images_blob(&[("kernel", &hello)])?;
    let blob = paths.out.join("soak-images.bin");
    std::fs::write(&blob, &blob_bytes)
        .map_err(|e| format!("cannot write {}: {e}", blob.display()))?;
    let sizes = [file_len(&dom0)?, blob_bytes.len() as u64];
    let addrs = crate::image::place_modules(&sizes, qemu::RAM_END)?;
    let name = format!("soak-{}", o.rounds);
    let mut args0 = format!("dom0 mem=64M variant=none destroy-loop={}", o.rounds);
    if o.flood > 0 {
        args0.push_str(&format!(" create-flood={}", o.flood));
    }
    let dtb = domu::dom0_dtb(
        paths,
        &name,
        o.smp,
        &args0,
        "loglvl=info",
        [(addrs[0], sizes[0]), (addrs[1], sizes[1])],
    )?;
    let loads: Vec<(&Path, u64)> = vec![(dom0.as_path(), addrs[0]), (blob.as_path(), addrs[1])];
    let args = qemu::run_args(o.smp, &hv, &dtb, &loads);
    let log = paths.out.join(format!("{name}.log"));
    eprintln!("hvrun: {name}: d0 `{args0}`, log {}", log.display());
    let out = qemu::supervise(
        &qemu::qemu_binary(),
        &args,
        &log,
        soak_expectations(o.rounds, o.flood),
        o.timeout,
        false,
    )
    .map_err(|e| format!("{name}: {e}"))?;
    for l in out
        .lines
        .iter()
        .filter(|l| l.starts_with("(d0) dom0: destroy-loop resources"))
    {
        eprintln!("hvrun: {name}: {l}");
    }
    let fails: Vec<String> = out
        .lines
        .iter()
        .filter(|l| {
            (l.starts_with("(d0) dom0: destroy-loop")
                || l.starts_with("(d0) dom0: create-flood")
                || l.starts_with("(d0) dom0: negative:"))
                && l.contains(": FAIL")
        })
        .cloned()
        .collect();
    report(&name, &log, &out, fails)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markers::Matcher;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_string()).collect()
    }

    #[test]
    fn options() {
        let o = parse(false, &s(&["--seed", "7", "--calls", "10", "--no-build"])).unwrap();
        assert!(!o.random_only);
        assert!(parse(false, &s(&["--random-only"])).unwrap().random_only);
        assert!(parse(true, &s(&["--random-only"])).is_err());
        assert_eq!((o.seed, o.calls, o.no_build, o.smp), (7, 10, true, 2));
        assert!(parse(false, &s(&["--rounds", "3"])).is_err());
        assert_eq!(parse(true, &s(&["--rounds", "100"])).unwrap().rounds, 100);
        assert!(parse(true, &s(&["--rounds", "0"])).is_err());
        assert!(parse(true, &s(&["--seed", "1"])).is_err());
        assert!(parse(true, &s(&["--timeout", "0"])).is_err());
        assert!(parse(true, &s(&["--smp"])).is_err());
    }

    fn good_hostile_log() -> Vec<String> {
        s(&[
            "hv: hv 0.1.0 booting at EL2 (VHE)",
            "hv: CPU0 online",
            "hv: CPU1 online",
            "(d1) guest-hostile: seed 1 calls 10 vcpus 2",
            "(d2) responder: up, watching d1",
            "(d1) PASS hypercall 12: handle outside RAM (got -14)",
            "(d1) == random phase",
            "(d1) guest-hostile: done: 120 passed, 0 failed",
            "hv: d1 ended (poweroff)",
            "(d2) responder: d1 gone after 40 beats, max gap 300 ms, max xen_version 90 us, map failures 0",
            "hv: d2 ended (poweroff)",
            "hv: all domains ended, powering off",
        ])
    }

    #[test]
    fn hostile_markers_and_checks() {
        let log = good_hostile_log();
        let mut m = Matcher::new(hostile_expectations(2));
        log.iter().for_each(|l| m.feed(l));
        assert!(m.complete(), "{:?}", m.waiting_for());
        assert!(m.violations().is_empty());
        assert!(hostile_check(&log).is_empty());

        let mut bad = log.clone();
        bad.insert(
            6,
            "(d1) FAIL unaligned 4-byte read at GICD+265 -> data abort (got 0)".into(),
        );
        bad[7] = "(d1) guest-hostile: done: 119 passed, 1 failed".into();
        let mut m = Matcher::new(hostile_expectations(2));
        bad.iter().for_each(|l| m.feed(l));
        assert!(!m.complete());
        assert_eq!(hostile_check(&bad).len(), 1);

        let mut panic = log.clone();
        panic.insert(
            7,
            "hv: ERROR: panic on CPU0: panicked at hv/src/vgic/mod.rs:355:28:".into(),
        );
        let mut m = Matcher::new(hostile_expectations(2));
        panic.iter().for_each(|l| m.feed(l));
        assert!(!m.violations().is_empty());

        let mut warns = log.clone();
        for _ in 0..=MAX_D1_WARNINGS {
            warns.insert(6, "hv: WARN: d1v0: trapped ACTLR_EL1 at pc 0x40080000: injecting undefined instruction".into());
        }
        assert_eq!(hostile_check(&warns).len(), 1);

        assert_eq!(
            responder_maxima(
                "(d2) responder: d1 gone after 40 beats, max gap 300 ms, max xen_version 90 us"
            ),
            Some((300, 90))
        );
        let mut slow = log.clone();
        slow[9] =
            "(d2) responder: d1 gone after 40 beats, max gap 300 ms, max xen_version 7000000 us, map failures 0"
                .into();
        assert_eq!(hostile_check(&slow).len(), 1);

        let mut starved = log.clone();
        starved[9] = "(d2) responder: d1 gone after 40 beats, max gap 300 ms, max xen_version 90 us, map failures 3".into();
        assert_eq!(hostile_check(&starved).len(), 1);

        assert_eq!(
            slow_line("(d2) responder: beat 2: slow: xen_version 43 us, gap 6630 ms"),
            Some((43, 6630))
        );
        let mut starved_early = log.clone();
        starved_early.insert(
            7,
            "(d2) responder: beat 2: slow: xen_version 43 us, gap 6630 ms".into(),
        );
        assert_eq!(hostile_check(&starved_early).len(), 1);
        let mut slow_ok = log.clone();
        slow_ok.insert(
            7,
            "(d2) responder: beat 2: slow: xen_version 150000 us, gap 1200 ms".into(),
        );
        assert!(hostile_check(&slow_ok).is_empty());

        let mut never = log.clone();
        never[9] = "(d2) responder: d1 gone after 1 beats, max gap 0 ms, max xen_version 1 us, map failures 0 (d1 was never seen)".into();
        assert_eq!(hostile_check(&never).len(), 1);
    }

    #[test]
    fn soak_markers() {
        let mut log = s(&[
            "hv: hv 0.1.0 booting at EL2 (VHE)",
            "(d0) dom0: destroy-loop n=5 done=5 domids=2..6 tlbi: total=0",
            "(d0) dom0: destroy-loop free_pages before=10 after=10 (total 20): PASS",
        ]);
        for f in [
            "pool_free",
            "hv_frames_free",
            "vmids_in_use",
            "domains",
            "evtchns_in_use",
            "heap_free",
        ] {
            log.push(format!(
                "(d0) dom0: destroy-loop {f} back to its start value after 5 rounds (before 1, after 1): PASS"
            ));
        }
        log.push("(d0) dom0: destroy-loop dom0's end of a destroyed domU's event channel reads unbound (Xen's evtchn_destroy): PASS (0 of 5 rounds not; last EVTCHNOP_status 1)".into());
        log.push("(d0) dom0: RESULT PASS".into());
        log.push("hv: all domains ended, powering off".into());
        let mut m = Matcher::new(soak_expectations(5, 0));
        log.iter().for_each(|l| m.feed(l));
        assert!(m.complete(), "{:?}", m.waiting_for());
        let mut m = Matcher::new(soak_expectations(5, 10));
        log.iter().for_each(|l| m.feed(l));
        assert!(!m.complete(), "the flood's lines are required");
        let mut bad = log.clone();
        bad[5] = "(d0) dom0: destroy-loop domains back to its start value after 5 rounds (before 1, after 2): FAIL".into();
        let mut m = Matcher::new(soak_expectations(5, 0));
        bad.iter().for_each(|l| m.feed(l));
        assert!(!m.complete());
    }
}
