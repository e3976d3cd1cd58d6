//! The host DTB as hv reads it at boot (`bootinfo::BootInfo::parse`, after
//! `strip_nops` as the boot path does), and everything derived from it:
//! modules, dom0less nodes and their domain specs, the command line.
//! Seeds: the QEMU `virt` DTBs of hv/tests/fixtures plus dom0less variants.
#![no_main]

use hv::bootinfo::{strip_nops, BootInfo, BootInfoError};
use libfuzzer_sys::fuzz_target;

fn check(info: &BootInfo<'_>, len: usize) {
    assert!(info.dtb_size <= len, "dtb_size beyond the blob");
    assert!(!info.memory.is_empty(), "parse succeeded without RAM");
    for m in info.modules() {
        let _ = m.bootargs.map(hv::domain::build::parse_mem);
        let _ = m.bootargs.map(hv::domain::build::parse_vcpus);
    }
    for d in info.domus() {
        let spec = hv::domain::build::dom0less_spec(d);
        assert!(spec.dtb && !spec.privileged);
    }
    // Xen's dom0 is the first kernel module, and the first module domain.
    let doms: std::vec::Vec<_> = info.module_domains().collect();
    match info.dom0() {
        Some(d) => {
            assert!(info.modules().contains(&d.kernel));
            assert!(d.ramdisk.is_none_or(|r| info.modules().contains(&r)));
            assert!(doms[0].dom0 && doms[0].kernel == d.kernel);
        }
        None => assert!(doms.is_empty()),
    }
    assert!(doms.iter().skip(1).all(|m| !m.dom0));
    assert!(doms.len() <= info.modules().len());
    let n = info.domu_modules().count();
    assert!(n <= 2 * info.domus().len());
    let _ = hv::options::HvOptions::parse(info.cmdline, |_| {});
    let _ = std::format!("{info:?}");
}

fuzz_target!(|data: &[u8]| {
    match BootInfo::parse(data) {
        Ok(info) => check(&info, data.len()),
        Err(e) => {
            let _ = std::format!("{e}");
        }
    }
    // The boot path: strip NOPs in place, then parse.
    let mut copy = data.to_vec();
    match strip_nops(&mut copy) {
        Ok(_) => {
            if let Ok(info) = BootInfo::parse(&copy) {
                check(&info, copy.len());
            }
        }
        Err(e) => {
            assert_eq!(e, BootInfoError::NotADtb);
            assert_eq!(copy, data, "strip_nops changed a blob it rejected");
        }
    }
});
