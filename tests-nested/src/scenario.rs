//! The marker lists of the runs: what hv's serial log must show (DESIGN.md,
//! "Serial markers") and what it must never show.

use crate::markers::Expectations;

/// hv's banner.
pub const BANNER: &str = "hv: hv * booting at EL2 (VHE)";
/// hv's last line before PSCI SYSTEM_OFF.
pub const ALL_ENDED: &str = "hv: all domains ended, powering off";

/// The line guest-fault prints before its faulting load.
pub const FAULT_GUEST_LINE: &str = "guest-fault: reading IPA 0x10000000 outside guest RAM";
/// hv's log of the fault, with ESR/FAR/HPFAR decoded (start.rs logs it as an
/// error: "d1v0: stage-2 data abort at IPA <ipa> (...), ESR .., FAR .., HPFAR ..").
pub const FAULT_HV_LOG: &str = "hv: *d1v0: stage-2 data abort at IPA *10000000*ESR*FAR*HPFAR";
/// hv's end of d1: the reason names the stage-2 fault and the faulting IPA
/// (hv's `EndReason::Stage2Fault` prints "stage-2 fault at IPA <ipa>").
pub const FAULT_HV_LINE: &str = "hv: d1 ended (stage-2 fault at IPA *10000000";

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

fn common_never(e: Expectations) -> Expectations {
    // hv's panic handler prints "hv: ERROR: panic on CPU<n>: panicked at ..." and parks.
    e.never("panicked at")
        .never("hv: ERROR: panic on CPU")
        // hv's own EL2 exception report (arch/aarch64/boot.rs), then it halts.
        .never("hv: ERROR: unexpected * exception at EL2")
        .never("hv: ERROR: stack overflow on CPU")
        .never("guest panic:")
        .never("guest-rt: unexpected exception")
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
    let e = common_never(e);
    if default_guest {
        e.never("(d1) FAIL")
    } else {
        e
    }
}

/// The smoke test: guest-fault as d1 (ended by its stage-2 fault, nothing
/// printed after it), guest-hello as d2 (all checks pass), then power-off.
pub fn smoke(smp: u32) -> Expectations {
    let mut chains = cpus(smp);
    chains.push(vec![
        format!("(d1) {FAULT_GUEST_LINE}"),
        FAULT_HV_LOG.to_string(),
        FAULT_HV_LINE.to_string(),
    ]);
    chains.push(hello_chain(2));
    common_never(
        Expectations::new()
            .then(BANNER)
            .then_all(chains)
            .then(ALL_ENDED),
    )
    .never("(d1) guest-fault: ERROR")
    .never("hv: d1 ended (poweroff")
    .never("(d2) FAIL")
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
            "(d1) guest-fault: reading IPA 0x10000000 outside guest RAM",
            "hv: CPU1 online",
            "(d2) hello from guest-hello",
            "hv: ERROR: d1v0: stage-2 data abort at IPA 0x0000000010000000 (translation fault level 1, read, 8 bytes via x8), ESR 0x93c08007, FAR 0x10000000, HPFAR 0x100000, pc 0x40080a10, ending d1",
            "hv: d1 ended (stage-2 fault at IPA 0x0000000010000000)",
            "(d2) xen_version = 4.20",
            "(d2) PASS unknown hypercall -> -ENOSYS",
            "(d2) guest-hello: all checks passed",
            "hv: d2 ended (poweroff)",
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
            "(d1) guest-fault: ERROR still running after the load (read 0x0)",
        );
        log.insert(9, "(d2) FAIL console_io bad buffer -> -EFAULT");
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
