//! The marker lists of the runs: what hv's serial log must show (DESIGN.md,
//! "Serial markers") and what it must never show.

use crate::markers::Expectations;

/// hv's banner.
pub const BANNER: &str = "hv: hv * booting at EL2 (VHE)";
/// hv's last line before PSCI SYSTEM_OFF.
pub const ALL_ENDED: &str = "hv: all domains ended, powering off";

/// The line guest-fault prints before its faulting load.
pub const FAULT_GUEST_LINE: &str = "guest-fault: reading IPA 0x10000000 outside guest RAM";
/// hv's log of the fault (guest-fault is the first module, so d0 by Xen's rule), with
/// ESR/FAR/HPFAR decoded (start.rs logs it as an error: "d0v0: stage-2 data abort at IPA
/// <ipa> (...), ESR .., FAR .., HPFAR ..").
pub const FAULT_HV_LOG: &str = "hv: *d0v0: stage-2 data abort at IPA *10000000*ESR*FAR*HPFAR";
/// hv's end of d0: the reason names the stage-2 fault and the faulting IPA
/// (hv's `EndReason::Stage2Fault` prints "stage-2 fault at IPA <ipa>").
pub const FAULT_HV_LINE: &str = "hv: d0 ended (stage-2 fault at IPA *10000000";

fn cpus(smp: u32) -> Vec<Vec<String>> {
    (0..smp)
        .map(|n| vec![format!("hv: CPU{n} online")])
        .collect()
}

fn ended(d: u32) -> String {
    format!("hv: d{d} ended (")
}

/// guest-hello's lines as domain `d`.
fn hello_chain(d: u32) -> Vec<String> {
    vec![
        format!("(d{d}) hello from guest-hello"),
        format!("(d{d}) xen_version = *.*"),
        format!("(d{d}) guest-hello: all checks passed"),
        ended(d),
    ]
}

/// hv's panic line (arch/aarch64: "hv: ERROR: panic on CPU<n>: panicked at ...", then a reset).
pub const HV_PANIC: &str = "hv: ERROR: panic on CPU";
/// A Linux guest's panic, as hv prefixes its console lines: "(d1) Kernel panic - not syncing: ...".
/// (with or without the kernel's `[ time]` stamp).
pub const GUEST_KERNEL_PANIC: &str = "(d*Kernel panic - not syncing";

fn common_never(e: Expectations) -> Expectations {
    e.never_because(HV_PANIC, "hv panicked")
        .never_because("panicked at", "a Rust panic (hv or a test guest)")
        // hv's own EL2 exception report (arch/aarch64/boot.rs), then it halts.
        .never_because(
            "hv: ERROR: unexpected * exception at EL2",
            "hv took an unexpected exception at EL2",
        )
        .never_because("hv: ERROR: stack overflow on CPU", "hv overflowed a stack")
        .never_because("guest panic:", "a test guest panicked")
        .never_because(
            "guest-rt: unexpected exception",
            "a test guest took an unexpected exception",
        )
        .never_because(GUEST_KERNEL_PANIC, "the guest kernel panicked")
        .never_because("domain not built", "hv could not build a domain")
        // A domain that resets or crashes where every domain should power off.
        .never_because(
            "hv: d* ended (reboot)",
            "a domain rebooted where a power-off was expected",
        )
        .never_because(
            "hv: d* ended (PSCI SYSTEM_RESET)",
            "a domain rebooted (PSCI SYSTEM_RESET) where a power-off was expected",
        )
        .never_because("hv: d* ended (crash)", "a domain reported a crash")
        .never_because("hv: d* ended (watchdog)", "a domain's watchdog fired")
}

/// What a domain that must power off may not end with (besides [`common_never`]).
fn clean_end(e: Expectations) -> Expectations {
    e.never_because(
        "hv: d* ended (stage-2 fault",
        "hv ended a domain for accessing memory outside its RAM (stage-2 fault)",
    )
    .never_because(
        "hv: d* ended (unhandled exit",
        "hv ended a domain for an exit it cannot handle",
    )
}

/// Advice for known failure lines of a serial log: what the user can change.
pub fn hints<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |h: String| {
        if !out.contains(&h) {
            out.push(h);
        }
    };
    for l in lines {
        if l.contains("domain not built") && l.contains("RAM is") {
            add(
                "the domain's RAM is too small for its kernel (and initrd): give it more with \
                 `--mem SIZE` after its `--kernel`/`--module` (e.g. `--mem 256M`)"
                    .into(),
            );
        } else if l.contains("domain not built") {
            add(format!("hv could not build a domain: {}", l.trim()));
        }
        if l.contains("Kernel panic - not syncing: VFS: Unable to mount root fs") {
            add(
                "the guest kernel found no root filesystem: give it an initramfs with \
                 `--initrd FILE` (and `rdinit=/init` in `--cmdline`)"
                    .into(),
            );
        } else if l.contains("Kernel panic - not syncing") {
            add(format!("the guest kernel panicked: {}", l.trim()));
        }
        if l.contains("cannot set up guest memory") || l.contains("Cannot allocate memory") {
            add("QEMU could not allocate the machine's memory: lower `--qemu-mem`".into());
        }
        if l.contains("out of memory") && l.starts_with("hv:") {
            add(
                "hv ran out of memory for the domains: raise `--qemu-mem` (QEMU's RAM) or \
                 lower `--mem`"
                    .into(),
            );
        }
    }
    out
}

/// hv's line when it runs its embedded demo guest (no boot module given).
pub const EMBEDDED: &str = "hv: no boot modules: running the embedded demo guest (*";

/// The demo: the embedded guest-hello as d1 (the default), or `modules` arbitrary kernels
/// of which only hv's own lines are checked (each domain ends; hv numbers
/// them, e.g. d0 for a control domain). `extra` markers must appear in order,
/// interleaved freely with the rest.
pub fn demo(smp: u32, default_guest: bool, modules: u32, extra: &[String]) -> Expectations {
    let mut chains = cpus(smp);
    if default_guest {
        // No module is given: hv must fall back to the guest embedded in its image.
        let mut chain = vec![EMBEDDED.to_string()];
        chain.extend(hello_chain(1));
        chains.push(chain);
    } else {
        chains.push((0..modules).map(|_| "hv: d* ended (".to_string()).collect());
    }
    chains.push(extra.to_vec());
    let e = Expectations::new()
        .then(BANNER)
        .then_all(chains)
        .then(ALL_ENDED);
    let e = clean_end(common_never(e));
    if default_guest {
        e.never("(d1) FAIL")
    } else {
        e
    }
}

/// The smoke test: guest-fault as d0 (the first kernel module, Xen's rule; ended by its
/// stage-2 fault, nothing printed after it), guest-hello as d1 (all checks pass), then
/// power-off.
pub fn smoke(smp: u32) -> Expectations {
    let mut chains = cpus(smp);
    chains.push(vec![
        format!("(d0) {FAULT_GUEST_LINE}"),
        FAULT_HV_LOG.to_string(),
        FAULT_HV_LINE.to_string(),
    ]);
    chains.push(hello_chain(1));
    common_never(
        Expectations::new()
            .then(BANNER)
            .then_all(chains)
            .then(ALL_ENDED),
    )
    .never("(d0) guest-fault: ERROR")
    .never("hv: d0 ended (poweroff")
    .never("(d1) FAIL")
}

/// A Linux kernel as a dom0less domU (`hvrun linux`): hv's banner and CPUs, `extra` markers
/// (e.g. the project's initramfs's `HV-LINUX-MARKER`), d1's clean power-off and hv's. A
/// kernel panic, a reboot or crash, and hv's own panic each fail the run, named as such.
pub fn linux(smp: u32, extra: &[String]) -> Expectations {
    let mut chains = cpus(smp);
    chains.push(vec![ended(1)]);
    chains.push(extra.to_vec());
    clean_end(common_never(
        Expectations::new()
            .then(BANNER)
            .then_all(chains)
            .then(ALL_ENDED),
    ))
}

/// The markers of the project's initramfs (tests-nested/linux/init.sh) for `vcpus` vCPUs.
pub fn linux_initramfs_markers(vcpus: u32) -> Vec<String> {
    vec![
        "hv: d1: PV console ring in use".into(),
        "(d1) HV-LINUX-MARKER".into(),
        format!("(d1) HV-LINUX-NPROC={vcpus}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markers::Matcher;

    /// A log in the shape DESIGN.md describes, for -smp 2.
    fn smoke_log() -> Vec<&'static str> {
        vec![
            "hv: hv 0.1.0 booting at EL2 (VHE)",
            "hv: CPU0 online",
            "(d0) guest-fault: reading IPA 0x10000000 outside guest RAM",
            "hv: CPU1 online",
            "(d1) hello from guest-hello",
            "hv: ERROR: d0v0: stage-2 data abort at IPA 0x0000000010000000 (translation fault level 1, read, 8 bytes via x8), ESR 0x93c08007, FAR 0x10000000, HPFAR 0x100000, pc 0x40080a10, ending d0",
            "hv: d0 ended (stage-2 fault at IPA 0x0000000010000000)",
            "(d1) xen_version = 4.20",
            "(d1) PASS unknown hypercall -> -ENOSYS",
            "(d1) guest-hello: all checks passed",
            "hv: d1 ended (poweroff)",
            "hv: all domains ended, powering off",
        ]
    }

    #[test]
    fn smoke_accepts_a_good_log() {
        let mut m = Matcher::new(smoke(2));
        smoke_log().into_iter().for_each(|l| m.feed(l));
        assert!(m.complete(), "waiting for {:?}", m.waiting_for());
        assert!(m.violations().is_empty());
    }

    #[test]
    fn smoke_rejects_output_after_the_fault_and_a_failed_check() {
        let mut log = smoke_log();
        log.insert(
            6,
            "(d0) guest-fault: ERROR still running after the load (read 0x0)",
        );
        log.insert(9, "(d1) FAIL console_io bad buffer -> -EFAULT");
        let mut m = Matcher::new(smoke(2));
        log.into_iter().for_each(|l| m.feed(l));
        assert_eq!(m.violations().len(), 2);
    }

    #[test]
    fn hv_crashes_are_forbidden() {
        for crash in [
            "hv: ERROR: panic on CPU1: panicked at hv/src/start.rs:10:5:",
            "hv: ERROR: unexpected synchronous exception at EL2 on CPU0: ESR_EL2=0x96000045",
            "hv: ERROR: stack overflow on CPU1 (guard page hit at 0x40123000)",
        ] {
            let mut m = Matcher::new(smoke(1));
            m.feed(crash);
            assert!(!m.violations().is_empty(), "{crash}");
        }
    }

    #[test]
    fn smoke_needs_every_cpu() {
        let mut m = Matcher::new(smoke(2));
        smoke_log()
            .into_iter()
            .filter(|l| !l.contains("CPU1"))
            .for_each(|l| m.feed(l));
        assert!(!m.complete());
    }

    #[test]
    fn demo_with_the_default_guest_checks_its_lines() {
        let mut m = Matcher::new(demo(1, true, 1, &[]));
        for l in [
            "hv: hv 0.1.0 booting at EL2 (VHE)",
            "hv: CPU0 online",
            "hv: no boot modules: running the embedded demo guest (12871 bytes)",
            "(d1) hello from guest-hello",
            "(d1) xen_version = 4.20",
            "hv: d1 ended (poweroff)",
            "hv: all domains ended, powering off",
        ] {
            m.feed(l);
        }
        assert!(!m.complete(), "all checks passed is required");
        let mut m = Matcher::new(demo(1, true, 1, &[]));
        for l in [
            "hv: hv 0.1.0 booting at EL2 (VHE)",
            "hv: CPU0 online",
            "(d1) hello from guest-hello",
            "(d1) xen_version = 4.20",
            "(d1) guest-hello: all checks passed",
            "hv: d1 ended (poweroff)",
            "hv: all domains ended, powering off",
        ] {
            m.feed(l);
        }
        assert!(!m.complete(), "the embedded-guest line is required");
        let extra = vec!["(d1) built*".to_string(), "(d0) done".to_string()];
        let mut m = Matcher::new(demo(1, false, 2, &extra));
        for l in [
            "hv: hv 0.1.0 booting at EL2 (VHE)",
            "hv: CPU0 online",
            "(d0) building d1",
            "(d1) built in 3 ms",
            "hv: d1 ended (crash)",
            "(d0) done",
        ] {
            m.feed(l);
        }
        assert!(!m.complete(), "two domains must end");
        m.feed("hv: d0 ended (poweroff)");
        m.feed("hv: all domains ended, powering off");
        assert!(m.complete());
    }
}
