//! nested-detect against evidence captured by the rig's probe payload
//! (tests-nested/rig/capture-fixtures.sh) on bare QEMU and in the nested rig, plus edge cases.

use nested_detect::*;

/// Parses the probe payload's `PROBE:` lines into Evidence.
fn parse(text: &str) -> Evidence {
    let mut e = Evidence::default();
    let mut compatible = Vec::new();
    let mut hyp_node = false;
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let kv = |line: &str, key: &str| -> Option<String> {
        line.split_whitespace().find_map(|w| {
            w.strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .map(String::from)
        })
    };
    for line in text.lines().filter_map(|l| l.strip_prefix("PROBE: ")) {
        if let Some((k, v)) = line.split_once('=') {
            match k {
                "MIDR_EL1" => e.midr = hex(v),
                "ID_AA64MMFR0_EL1" => e.mmfr0 = hex(v),
                "ID_AA64MMFR1_EL1" => e.mmfr1 = hex(v),
                "ID_AA64MMFR2_EL1" => e.mmfr2 = hex(v),
                "ID_AA64MMFR4_EL1" => e.mmfr4 = hex(v),
                // The payload prints the property's NULs as ','; the fixtures hold a single
                // string ("linux,dummy-virt"), so take it as it is.
                "dt: compatible" => compatible = v.as_bytes().to_vec(),
                "dt: hypervisor-node" => hyp_node = v == "1",
                _ => {}
            }
        }
        if line.starts_with("SMC 0x8600ff01") {
            let r = |k: &str| hex(&kv(line, k).unwrap());
            e.smccc_hyp_uid = uid_from_smccc(r("x0"), r("x1"), r("x2"), r("x3"));
        }
        if line.starts_with("timing ") {
            let n = |k: &str| kv(line, k).unwrap().parse::<u64>().unwrap();
            e.timing = Some(Timing {
                trapped_ns_per_op: n("idreg_ns"),
                local_ns_per_op: n("local_ns"),
            });
        }
    }
    e.dt = DtHints::from_root(&compatible, hyp_node);
    e
}

const BARE_MAX: &str = include_str!("fixtures/bare-qemu-max.txt");
const BARE_LPA2_OFF: &str = include_str!("fixtures/bare-qemu-max-lpa2-off.txt");
const RIG_48: &str = include_str!("fixtures/rig-ipa48-smp1.txt");
const RIG_52: &str = include_str!("fixtures/rig-ipa52-smp1.txt");
const RIG_48_SMP2: &str = include_str!("fixtures/rig-ipa48-smp2.txt");

#[test]
fn fixtures_parse_completely() {
    for f in [BARE_MAX, BARE_LPA2_OFF, RIG_48, RIG_52, RIG_48_SMP2] {
        let e = parse(f);
        assert_ne!(e.midr, 0);
        assert_ne!(e.mmfr0, 0);
        assert!(e.timing.is_some());
        assert!(
            e.dt.virtual_platform,
            "QEMU virt and the rig VMM both say linux,dummy-virt"
        );
    }
}

#[test]
fn bare_qemu_is_bare_metal() {
    for f in [BARE_MAX, BARE_LPA2_OFF] {
        let e = parse(f);
        assert_eq!(
            e.smccc_hyp_uid, None,
            "EL3 (QEMU's PSCI) answers NOT_SUPPORTED"
        );
        let d = decide(&e, Override::Auto);
        assert_eq!(d.verdict, Verdict::BareMetal, "{d}");
        assert!(d.has(Reason::SmcccUidNone));
        assert!(d.reasons().any(|r| matches!(r, Reason::NotTrapped(_))));
        assert!(!d.has(Reason::KvmMmfr4) && !d.has(Reason::KvmMmfr2));
        assert!(!d.has(Reason::Conflict));
        assert!(d.to_string().starts_with("bare metal ("), "{d}");
        println!("{d}");
    }
}

#[test]
fn rig_is_nested_under_kvm() {
    for f in [RIG_48, RIG_52, RIG_48_SMP2] {
        let e = parse(f);
        assert_eq!(
            e.smccc_hyp_uid,
            Some(KVM_UID),
            "L0 KVM answers the UID query from vEL2"
        );
        assert!(e.kvm_mmfr4() && e.kvm_mmfr2() && e.parange_48());
        let d = decide(&e, Override::Auto);
        assert_eq!(d.verdict, Verdict::NestedKvm, "{d}");
        for r in [
            Reason::SmcccUidKvm,
            Reason::KvmMmfr4,
            Reason::KvmMmfr2,
            Reason::ParangeCapped,
        ] {
            assert!(d.has(r), "{r} missing from {d}");
        }
        assert!(d.reasons().any(|r| matches!(r, Reason::Trapped(_))));
        assert!(!d.has(Reason::Conflict), "{d}");
        assert!(d
            .to_string()
            .starts_with("nested under KVM (SMCCC hyp UID = KVM; ID reg read "));
        println!("{d}");
    }
}

#[test]
fn each_strong_signal_alone_suffices_in_the_rig() {
    let e = parse(RIG_48);
    // Without the UID answer: timing + fingerprints still say KVM.
    let no_uid = Evidence {
        smccc_hyp_uid: None,
        ..e
    };
    assert_eq!(decide(&no_uid, Override::Auto).verdict, Verdict::NestedKvm);
    // Without UID and timing: the two KVM fingerprints alone.
    let regs_only = Evidence {
        timing: None,
        ..no_uid
    };
    assert_eq!(
        decide(&regs_only, Override::Auto).verdict,
        Verdict::NestedKvm
    );
    // Without UID and fingerprints (a future KVM that stops filtering): timing says nested.
    let timing_only = Evidence {
        mmfr4: 0,
        mmfr2: parse(BARE_MAX).mmfr2,
        ..no_uid
    };
    let d = decide(&timing_only, Override::Auto);
    assert_eq!(d.verdict, Verdict::NestedUnknown, "{d}");
    // Nothing left but PARange: bare metal.
    let parange_only = Evidence {
        timing: None,
        ..timing_only
    };
    assert_eq!(
        decide(&parange_only, Override::Auto).verdict,
        Verdict::BareMetal
    );
}

#[test]
fn conflicting_evidence() {
    let rig = parse(RIG_48);
    let bare = parse(BARE_MAX);
    // KVM UID but untrapped ID registers: the UID wins, the conflict is reported.
    let e = Evidence {
        timing: bare.timing,
        ..rig
    };
    let d = decide(&e, Override::Auto);
    assert_eq!(d.verdict, Verdict::NestedKvm);
    assert!(d.has(Reason::Conflict), "{d}");
    // KVM fingerprints on a machine whose ID register reads are local: timing wins.
    let e = Evidence {
        smccc_hyp_uid: None,
        timing: bare.timing,
        ..rig
    };
    let d = decide(&e, Override::Auto);
    assert_eq!(d.verdict, Verdict::BareMetal, "{d}");
    assert!(d.has(Reason::Conflict));
    // A UID that is not KVM's (e.g. another L0) with KVM-looking registers.
    let other = [0x1234_5678, 1, 2, 3];
    let e = Evidence {
        smccc_hyp_uid: Some(other),
        ..rig
    };
    let d = decide(&e, Override::Auto);
    assert_eq!(d.verdict, Verdict::NestedUnknown);
    assert!(d.has(Reason::SmcccUidOther(other)));
    // KVM's UID on registers that do not look like KVM's filtering.
    let e = Evidence {
        smccc_hyp_uid: Some(KVM_UID),
        ..bare
    };
    let d = decide(&e, Override::Auto);
    assert_eq!(d.verdict, Verdict::NestedKvm);
    assert!(d.has(Reason::Conflict));
}

#[test]
fn dt_hypervisor_node() {
    let bare = Evidence {
        timing: None,
        ..parse(BARE_MAX)
    };
    let with_node = Evidence {
        dt: DtHints {
            hypervisor_node: true,
            ..bare.dt
        },
        ..bare
    };
    let d = decide(&with_node, Override::Auto);
    assert_eq!(d.verdict, Verdict::NestedUnknown);
    assert!(d.has(Reason::DtHypervisorNode));
    // Timing that shows no trapping outweighs the node.
    let timed = Evidence {
        timing: parse(BARE_MAX).timing,
        ..with_node
    };
    let d = decide(&timed, Override::Auto);
    assert_eq!(d.verdict, Verdict::BareMetal);
    assert!(d.has(Reason::Conflict));
    assert!(DtHints::from_root(b"xen,xenvm-4.20\0xen,xenvm\0", false).virtual_platform);
    assert!(!DtHints::from_root(b"arm,juno-r2\0arm,juno\0", false).virtual_platform);
}

#[test]
fn overrides() {
    let rig = parse(RIG_52);
    let bare = parse(BARE_LPA2_OFF);
    let d = decide(&rig, Override::Off);
    assert_eq!(d.verdict, Verdict::BareMetal);
    assert!(d.has(Reason::ForcedOff) && d.has(Reason::SmcccUidKvm));
    assert_eq!(decide(&rig, Override::On).verdict, Verdict::NestedKvm);
    assert_eq!(decide(&rig, Override::Auto).verdict, Verdict::NestedKvm);
    let d = decide(&bare, Override::On);
    assert_eq!(d.verdict, Verdict::NestedUnknown);
    assert!(d.has(Reason::ForcedOn));
    assert_eq!(decide(&bare, Override::Off).verdict, Verdict::BareMetal);
    assert!(!decide(&bare, Override::Auto).has(Reason::ForcedOff));
}

#[test]
fn threshold_edges() {
    let base = Evidence::default();
    let at = |t, l| Evidence {
        timing: Some(Timing {
            trapped_ns_per_op: t,
            local_ns_per_op: l,
        }),
        ..base
    };
    assert_eq!(
        decide(&at(32 * 10, 10), Override::Auto).verdict,
        Verdict::NestedUnknown
    );
    assert_eq!(
        decide(&at(32 * 10 - 1, 10), Override::Auto).verdict,
        Verdict::BareMetal
    );
    // A zero local cost (coarse counter) does not divide by zero.
    assert_eq!(
        decide(&at(100, 0), Override::Auto).verdict,
        Verdict::NestedUnknown
    );
    assert_eq!(
        decide(&at(0, 0), Override::Auto).verdict,
        Verdict::BareMetal
    );
}

/// hv's own boot lines (`hv: platform: <decision>` and `hv: nested-detect evidence:
/// <evidence>`), captured by `hvmatrix smoke` on bare QEMU and in the rig: the evidence line
/// parses, and deciding it again on the host gives exactly the line hv printed.
fn hv_fixture(text: &str) -> (Decision, String) {
    let platform = text
        .lines()
        .find_map(|l| l.strip_prefix("hv: platform: "))
        .expect("platform line");
    let evidence = text
        .lines()
        .find(|l| l.starts_with("hv: nested-detect evidence: "))
        .expect("evidence line");
    let e = Evidence::parse_line(evidence).expect("evidence parses");
    let ov = if platform.contains("(nested=on;") {
        Override::On
    } else if platform.contains("(nested=off;") {
        Override::Off
    } else {
        Override::Auto
    };
    let d = decide(&e, ov);
    assert_eq!(d.to_string(), platform, "hv's printed verdict differs");
    (d, platform.to_string())
}

const HV_BARE: &str = include_str!("fixtures/hv-bare-qemu-max.txt");
const HV_BARE_ON: &str = include_str!("fixtures/hv-bare-qemu-max-nested-on.txt");
const HV_RIG_48: &str = include_str!("fixtures/hv-rig-ipa48-smp1.txt");
const HV_RIG_48_SMP2: &str = include_str!("fixtures/hv-rig-ipa48-smp2.txt");
const HV_RIG_48_OFF: &str = include_str!("fixtures/hv-rig-ipa48-nested-off.txt");
const HV_RIG_52: &str = include_str!("fixtures/hv-rig-ipa52-smp1.txt");

#[test]
fn hv_boot_lines_from_both_platforms() {
    let (d, _) = hv_fixture(HV_BARE);
    assert_eq!(d.verdict, Verdict::BareMetal);
    assert!(d.has(Reason::SmcccUidNone) && !d.has(Reason::Conflict));
    for f in [HV_RIG_48, HV_RIG_48_SMP2, HV_RIG_52] {
        let (d, _) = hv_fixture(f);
        assert_eq!(d.verdict, Verdict::NestedKvm, "{d}");
        assert!(d.has(Reason::SmcccUidKvm) && d.has(Reason::KvmMmfr4) && d.has(Reason::KvmMmfr2));
        assert!(!d.has(Reason::Conflict), "{d}");
    }
    // hv asked SMCCC_VERSION first in the rig (KVM: 1.1) and QEMU's EL3 PSCI said NOT_SUPPORTED.
    let ev = |t: &str| {
        Evidence::parse_line(t.lines().find(|l| l.contains("evidence:")).unwrap()).unwrap()
    };
    assert_eq!(ev(HV_RIG_48).smccc_version, Some(SMCCC_VERSION_1_1));
    assert_eq!(ev(HV_BARE).smccc_version, None);
    // The probe payload and hv see the same ID registers on each platform.
    assert_eq!(ev(HV_RIG_48).mmfr2, parse(RIG_48).mmfr2);
    assert_eq!(ev(HV_RIG_48).mmfr4, parse(RIG_48).mmfr4);
    assert_eq!(ev(HV_BARE).mmfr0, parse(BARE_MAX).mmfr0);
    // At IPA limit 52 KVM still caps the guest hypervisor's PARange at 48 bits, but its
    // ID_AA64MMFR0_EL1 differs from the 48 setting (TGRAN4 = 52-bit capable, LPA2).
    assert_eq!(ev(HV_RIG_52).mmfr0, parse(RIG_52).mmfr0);
    assert_ne!(ev(HV_RIG_52).mmfr0, ev(HV_RIG_48).mmfr0);
    assert!(ev(HV_RIG_52).parange_48());
}

#[test]
fn hv_boot_lines_with_overrides() {
    let (d, line) = hv_fixture(HV_BARE_ON);
    assert_eq!(d.verdict, Verdict::NestedUnknown);
    assert!(line.starts_with("nested under an unknown hypervisor (nested=on; "));
    let (d, line) = hv_fixture(HV_RIG_48_OFF);
    assert_eq!(d.verdict, Verdict::BareMetal);
    assert!(line.starts_with("bare metal (nested=off; SMCCC hyp UID = KVM; "));
}
