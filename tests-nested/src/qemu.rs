//! QEMU command lines and a supervised run: a timeout that kills, the serial
//! log teed to a file (and the terminal), markers checked as lines arrive.

use crate::markers::{Expectations, Matcher};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The QEMU binary (override with `$QEMU`).
pub fn qemu_binary() -> String {
    std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-aarch64".into())
}

/// The machine: QEMU virt with EL2 and a GICv3, as hv expects.
pub const MACHINE: &str = "virt,virtualization=on,gic-version=3";
/// Guest-physical memory given to the machine.
pub const MEMORY: &str = "1G";
/// End of RAM for [`MEMORY`] (RAM starts at 0x4000_0000 on virt).
pub const RAM_END: u64 = crate::image::RAM_BASE + (1 << 30);

/// `-M ... -cpu max -smp N -m 1G`, with `dumpdtb=` when `dump_to` is given.
pub fn machine_args(smp: u32, dump_to: Option<&Path>) -> Vec<String> {
    machine_args_mem(smp, MEMORY, dump_to)
}

/// [`machine_args`] with QEMU's memory size `mem` (`-m`, e.g. `2G`).
pub fn machine_args_mem(smp: u32, mem: &str, dump_to: Option<&Path>) -> Vec<String> {
    let machine = match dump_to {
        Some(p) => format!("{MACHINE},dumpdtb={}", escape_opt(&p.display().to_string())),
        None => MACHINE.to_string(),
    };
    vec![
        "-M".into(),
        machine,
        "-cpu".into(),
        "max".into(),
        "-smp".into(),
        smp.to_string(),
        "-m".into(),
        mem.into(),
        // No default NIC: its option ROM (efi-virtio.rom) is in a package hv's runs do not need.
        "-nic".into(),
        "none".into(),
    ]
}

/// Parses a memory size as QEMU's `-m` and hvrun's `--mem` take it: a number with an
/// optional `K`, `M` (the default unit, as QEMU's) or `G` suffix; returns bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last()? {
        (i, 'k' | 'K') => (t.get(..i)?, 10),
        (i, 'm' | 'M') => (t.get(..i)?, 20),
        (i, 'g' | 'G') => (t.get(..i)?, 30),
        _ => (t, 20),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Makes `cmd`'s child die (SIGKILL) when the thread that spawned it, i.e. this runner,
/// dies for any reason (killed, Ctrl-C, a panic): Linux's parent-death signal.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    extern "C" {
        fn prctl(option: i32, ...) -> i32;
        fn getppid() -> i32;
        fn getpid() -> i32;
    }
    const PR_SET_PDEATHSIG: i32 = 1;
    const SIGKILL: u64 = 9;
    // SAFETY: getpid has no preconditions; it is called in the parent.
    let parent = unsafe { getpid() };
    let in_child = move || -> io::Result<()> {
        // SAFETY: prctl(2) with PR_SET_PDEATHSIG and a signal number only sets a flag of
        // the calling (child) process; it is async-signal-safe (runs between fork and exec).
        if unsafe { prctl(PR_SET_PDEATHSIG, SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The parent died before prctl took effect: the signal will never come.
        // SAFETY: getppid(2) has no preconditions and is async-signal-safe.
        if unsafe { getppid() } != parent {
            return Err(io::Error::other("hvrun exited while starting QEMU"));
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec and only makes the two
    // async-signal-safe system calls above: it allocates nothing and takes no locks.
    unsafe { cmd.pre_exec(in_child) }
}

/// Runs `cmd` (a script that starts QEMU itself, e.g. the nested rig's run.sh) in its own
/// process group, stdin from /dev/null, and waits for it. A watchdog `sh` holds the read end
/// of a pipe whose write end only this process has: when this process exits in any way
/// (killed, Ctrl-C) or the run returns, the pipe closes and the watchdog SIGKILLs the whole
/// group, so no QEMU of the run outlives it. (A parent-death signal would only reach the
/// script, not its QEMU.)
///
/// # Errors
/// When the command or the watchdog cannot be started.
pub fn status_in_group(cmd: &mut Command) -> io::Result<ExitStatus> {
    cmd.process_group(0).stdin(Stdio::null());
    let mut child = cmd.spawn()?;
    let pgid = child.id().to_string();
    let dog = Command::new("sh")
        .args([
            "-c",
            "trap '' INT TERM HUP; read _ || true; kill -s KILL -- -\"$0\" 2>/dev/null; exit 0",
            &pgid,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut dog = match dog {
        Ok(d) => d,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let st = child.wait();
    // Closing the pipe lets the watchdog kill whatever the script left in its group.
    drop(dog.stdin.take());
    let _ = dog.wait();
    st
}

/// QEMU option values double their commas.
pub fn escape_opt(s: &str) -> String {
    s.replace(',', ",,")
}

/// `-device loader,file=<path>,addr=<addr>,force-raw=on`.
pub fn loader_arg(path: &Path, addr: u64) -> String {
    format!(
        "loader,file={},addr={addr:#x},force-raw=on",
        escape_opt(&path.display().to_string())
    )
}

/// The full command line for a run of `kernel` with `dtb` and raw modules.
pub fn run_args(smp: u32, kernel: &Path, dtb: &Path, modules: &[(&Path, u64)]) -> Vec<String> {
    run_args_mem(smp, MEMORY, kernel, dtb, modules)
}

/// [`run_args`] with QEMU's memory size `mem`.
pub fn run_args_mem(
    smp: u32,
    mem: &str,
    kernel: &Path,
    dtb: &Path,
    modules: &[(&Path, u64)],
) -> Vec<String> {
    let mut a = machine_args_mem(smp, mem, None);
    a.extend([
        "-nographic".into(),
        // A reset (or a triple fault in hv) ends the run instead of looping.
        "-no-reboot".into(),
        "-kernel".into(),
        kernel.display().to_string(),
        "-dtb".into(),
        dtb.display().to_string(),
    ]);
    for (path, addr) in modules {
        a.push("-device".into());
        a.push(loader_arg(path, *addr));
    }
    a
}

/// How a supervised run ended.
#[derive(Debug)]
pub enum End {
    /// QEMU exited by itself.
    Exited(ExitStatus),
    /// The timeout expired and QEMU was killed.
    TimedOut(Duration),
    /// A forbidden line appeared and QEMU was killed shortly after.
    Stopped,
}

/// The result of a supervised run.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub end: End,
    /// Serial output, one entry per line (`\r` stripped).
    pub lines: Vec<String>,
    /// Lines QEMU wrote to stderr.
    pub stderr: Vec<String>,
    /// The markers' state after the last line.
    pub matcher: Matcher,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Outcome {
    /// Why the run failed; empty when it passed (all markers seen, no
    /// forbidden line, QEMU exited by itself with status 0).
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        match &self.end {
            End::Exited(s) if s.success() => {}
            End::Exited(s) => f.push(format!("QEMU exited with {s} (expected status 0)")),
            End::TimedOut(t) => f.push(format!(
                "timed out after {}s: QEMU was killed (hv did not power off)",
                t.as_secs()
            )),
            // The forbidden line itself is reported below, with its cause.
            End::Stopped if !self.matcher.violations().is_empty() => {}
            End::Stopped => f.push("stopped early after a forbidden line".into()),
        }
        for (pat, line) in self.matcher.violations() {
            match self.matcher.expectations().why(pat) {
                Some(why) => f.push(format!("{why}: {line}")),
                None => f.push(format!("forbidden marker {pat} appeared: {line}")),
            }
        }
        if !self.matcher.complete() {
            let (seen, total) = self.matcher.progress();
            for p in self.matcher.waiting_for() {
                f.push(format!(
                    "missing marker {p} ({seen} of {total} markers seen)"
                ));
            }
        }
        f
    }

    /// The last `n` serial lines.
    pub fn tail(&self, n: usize) -> &[String] {
        let start = self.lines.len().saturating_sub(n);
        self.lines.get(start..).unwrap_or_default()
    }
}

enum Msg {
    Out(String),
    Err(String),
    Eof,
}

fn pump(r: impl Read, tx: mpsc::Sender<Msg>, wrap: fn(String) -> Msg) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let s = String::from_utf8_lossy(&buf);
                let s = s.trim_end_matches(['\n', '\r']).replace('\r', "");
                if tx.send(wrap(s)).is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.send(Msg::Eof);
}

/// Runs `program args`, tees its serial output to `log` (and to stdout when
/// `echo`), checks `exp` line by line, and kills it after `timeout` or soon
/// after a forbidden line.
///
/// # Errors
/// When QEMU cannot be started or the log cannot be written.
pub fn supervise(
    program: &str,
    args: &[String],
    log: &Path,
    exp: Expectations,
    timeout: Duration,
    echo: bool,
) -> io::Result<Outcome> {
    let start = Instant::now();
    let mut logf = File::create(log)?;
    writeln!(logf, "# {} {}", program, args.join(" "))?;
    let mut cmd = Command::new(program);
    die_with_parent(&mut cmd);
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
    let (tx, rx) = mpsc::channel();
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        pumps.push(thread::spawn(move || pump(out, tx, Msg::Out)));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        pumps.push(thread::spawn(move || pump(err, tx, Msg::Err)));
    }
    drop(tx);

    let mut matcher = Matcher::new(exp);
    let mut lines = Vec::new();
    let mut stderr = Vec::new();
    let mut deadline = start + timeout;
    let mut stopped = false;
    let mut open = pumps.len();
    let mut stdout = io::stdout();
    while open > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(Msg::Out(l)) => {
                if echo {
                    let _ = writeln!(stdout, "{l}");
                }
                writeln!(logf, "{l}")?;
                let before = matcher.violations().len();
                matcher.feed(&l);
                if matcher.violations().len() > before && !stopped {
                    // Keep two more seconds of output for context, then stop.
                    stopped = true;
                    deadline = deadline.min(Instant::now() + Duration::from_secs(2));
                }
                lines.push(l);
            }
            Ok(Msg::Err(l)) => {
                eprintln!("qemu stderr: {l}");
                writeln!(logf, "[qemu stderr] {l}")?;
                stderr.push(l);
            }
            Ok(Msg::Eof) => open -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }

    let end = if open == 0 {
        // Both pipes closed: QEMU is exiting; give it a moment to be reaped.
        let grace = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = child.try_wait()? {
                break if stopped {
                    End::Stopped
                } else {
                    End::Exited(s)
                };
            }
            if Instant::now() >= grace {
                let _ = child.kill();
                let _ = child.wait();
                break End::TimedOut(timeout);
            }
            thread::sleep(Duration::from_millis(20));
        }
    } else {
        match child.try_wait()? {
            Some(s) if !stopped => End::Exited(s),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                if stopped {
                    End::Stopped
                } else {
                    End::TimedOut(timeout)
                }
            }
        }
    };
    for p in pumps {
        let _ = p.join();
    }
    // Lines that arrived after the loop stopped still belong in the log.
    while let Ok(m) = rx.try_recv() {
        match m {
            Msg::Out(l) => {
                writeln!(logf, "{l}")?;
                matcher.feed(&l);
                lines.push(l);
            }
            Msg::Err(l) => {
                writeln!(logf, "[qemu stderr] {l}")?;
                stderr.push(l);
            }
            Msg::Eof => {}
        }
    }
    logf.flush()?;
    Ok(Outcome {
        end,
        lines,
        stderr,
        matcher,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn run_line_has_machine_kernel_dtb_and_loaders() {
        let a = run_args(
            2,
            Path::new("/b/hv.bin"),
            Path::new("/b/smoke.dtb"),
            &[
                (Path::new("/b/guest-fault.bin"), 0x4c00_0000),
                (Path::new("/b/guest-hello.bin"), 0x4c20_0000),
            ],
        );
        let line = a.join(" ");
        assert!(line.starts_with(
            "-M virt,virtualization=on,gic-version=3 -cpu max -smp 2 -m 1G -nic none -nographic"
        ));
        assert!(line.contains("-kernel /b/hv.bin -dtb /b/smoke.dtb"));
        assert!(line.ends_with(
            "-device loader,file=/b/guest-fault.bin,addr=0x4c000000,force-raw=on \
             -device loader,file=/b/guest-hello.bin,addr=0x4c200000,force-raw=on"
        ));
    }

    #[test]
    fn dumpdtb_rides_on_the_machine_option_with_commas_escaped() {
        let a = machine_args(1, Some(&PathBuf::from("/tmp/a,b.dtb")));
        assert_eq!(
            a[1],
            "virt,virtualization=on,gic-version=3,dumpdtb=/tmp/a,,b.dtb"
        );
        assert_eq!(a[5], "1");
    }

    fn sh(script: &str, exp: Expectations, timeout: Duration) -> Outcome {
        let dir = std::env::temp_dir().join(format!("hvrun-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{}.log", script.len()));
        supervise(
            "sh",
            &["-c".to_string(), script.to_string()],
            &log,
            exp,
            timeout,
            false,
        )
        .unwrap()
    }

    #[test]
    fn a_clean_exit_with_all_markers_passes() {
        let o = sh(
            "printf 'boot\\r\\nhello\\nbye\\n'; echo noise >&2",
            Expectations::new().then("boot").then("bye"),
            Duration::from_secs(20),
        );
        assert!(o.failures().is_empty(), "{:?}", o.failures());
        assert_eq!(o.lines, vec!["boot", "hello", "bye"]);
        assert_eq!(o.stderr, vec!["noise"]);
    }

    #[test]
    fn nonzero_exit_and_missing_markers_fail() {
        let o = sh(
            "echo boot; exit 3",
            Expectations::new().then("boot").then("bye"),
            Duration::from_secs(20),
        );
        let f = o.failures();
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].contains("exit status: 3"));
        assert!(f[1].contains("missing marker `bye` (1 of 2"));
    }

    #[test]
    fn a_hang_is_killed_at_the_timeout() {
        let t0 = Instant::now();
        let o = sh(
            "echo boot; exec sleep 30",
            Expectations::new().then("boot"),
            Duration::from_millis(500),
        );
        assert!(matches!(o.end, End::TimedOut(_)));
        assert!(t0.elapsed() < Duration::from_secs(15));
        assert_eq!(o.tail(50), ["boot"]);
    }

    /// A fake QEMU that prints hv-like output and exits 0, checked against `exp`: the
    /// failures the run reports.
    fn verdict(lines: &[&str], exp: Expectations) -> Vec<String> {
        let script: String = lines
            .iter()
            .map(|l| format!("echo '{l}'; "))
            .chain(["exit 0".to_string()])
            .collect();
        sh(&script, exp, Duration::from_secs(20)).failures()
    }

    const LINUX_OK: [&str; 7] = [
        "hv: hv 0.1.0 booting at EL2 (VHE)",
        "hv: CPU0 online",
        "hv: d1: PV console ring in use (event channel 1)",
        "(d1) HV-LINUX-MARKER up after 1.2 s on 7.2.12",
        "(d1) HV-LINUX-NPROC=1",
        "hv: d1 ended (PSCI SYSTEM_OFF)",
        "hv: all domains ended, powering off",
    ];

    fn linux_exp() -> Expectations {
        crate::scenario::linux(1, &crate::scenario::linux_initramfs_markers(1))
    }

    #[test]
    fn verdict_a_clean_linux_run_passes() {
        assert_eq!(verdict(&LINUX_OK, linux_exp()), Vec::<String>::new());
    }

    #[test]
    fn verdict_a_guest_kernel_panic_fails_and_is_named() {
        // What Debian's kernel prints with no initramfs; with panic=-1 it then reboots,
        // which hv reports as the domain's end and powers off: QEMU exits 0.
        let f = verdict(
            &[
                LINUX_OK[0],
                LINUX_OK[1],
                "(d1) [    3.310521] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
                "hv: d1 ended (reboot)",
                "hv: all domains ended, powering off",
            ],
            linux_exp(),
        );
        assert!(
            f.iter()
                .any(|x| x
                    .starts_with("the guest kernel panicked: (d1) [    3.310521] Kernel panic")),
            "{f:?}"
        );
        assert!(
            f.iter().any(|x| x.starts_with("a domain rebooted")),
            "{f:?}"
        );
    }

    #[test]
    fn verdict_a_reboot_where_a_power_off_was_expected_fails() {
        let mut log = LINUX_OK.to_vec();
        log[5] = "hv: d1 ended (reboot)";
        let f = verdict(&log, linux_exp());
        assert_eq!(
            f,
            ["a domain rebooted where a power-off was expected: hv: d1 ended (reboot)"]
        );
        log[5] = "hv: d1 ended (PSCI SYSTEM_RESET)";
        let f = verdict(&log, crate::scenario::demo(1, false, 1, &[]));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("a domain rebooted (PSCI SYSTEM_RESET)"),
            "{f:?}"
        );
    }

    #[test]
    fn verdict_an_hv_panic_fails_and_is_named() {
        // hv's panic handler prints its line and resets the machine: QEMU -no-reboot exits 0.
        let f = verdict(
            &[
                LINUX_OK[0],
                LINUX_OK[1],
                "hv: ERROR: panic on CPU0: panicked at hv/src/start.rs:10:5:",
                "hv: panic: resetting the machine (PSCI SYSTEM_RESET)",
            ],
            linux_exp(),
        );
        assert!(
            f.iter()
                .any(|x| x.starts_with("hv panicked: hv: ERROR: panic on CPU0")),
            "{f:?}"
        );
        assert!(f.iter().any(|x| x.starts_with("missing marker")), "{f:?}");
    }

    #[test]
    fn hints_name_the_option_to_change() {
        let h = crate::scenario::hints([
            "hv: ERROR: module at 0x4c000000: domain not built: kernel needs 0x2500000 bytes from the RAM base, RAM is 0x1000000",
            "(d1) Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
        ]);
        assert!(h.iter().any(|x| x.contains("--mem SIZE")), "{h:?}");
        assert!(h.iter().any(|x| x.contains("--initrd FILE")), "{h:?}");
        assert!(crate::scenario::hints(LINUX_OK).is_empty());
    }

    #[test]
    fn a_group_run_leaves_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("hvrun-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        // The script leaves a background process behind, as a script whose QEMU outlives it.
        let st = status_in_group(Command::new("sh").args([
            "-c",
            &format!("sleep 300 & echo $! > {}", pidfile.display()),
        ]))
        .unwrap();
        assert!(st.success());
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
        let t0 = Instant::now();
        // Gone (or a zombie of the reaper) once the watchdog has run.
        while proc_dir.exists()
            && !std::fs::read_to_string(proc_dir.join("stat"))
                .unwrap_or_default()
                .contains(") Z")
        {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the script's child survived"
            );
            thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_forbidden_line_stops_the_run_early() {
        let t0 = Instant::now();
        let o = sh(
            "echo boot; echo 'panicked at x'; exec sleep 30",
            Expectations::new().then("boot").never("panicked at"),
            Duration::from_secs(25),
        );
        assert!(matches!(o.end, End::Stopped));
        assert!(t0.elapsed() < Duration::from_secs(15));
        assert!(o.failures().iter().any(|f| f.contains("panicked at x")));
    }
}
