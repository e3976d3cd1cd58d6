//! hv's boot arguments: `HvOptions::parse` (`/chosen/xen,xen-bootargs`), the
//! per-module `mem=` / `vcpus=` / `dom0` words, and the guest DTB hv writes
//! with a module's bootargs (it must be a DTB the `fdt` crate reads back,
//! with the same `/chosen/bootargs`).
#![no_main]

use hv::domain::dtb::GuestDtb;
use hv::options::HvOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let mut warnings = 0usize;
    let opts = HvOptions::parse(&s, |w| {
        // Every warning names a word of the command line.
        let text = std::format!("{w}");
        assert!(!text.is_empty());
        warnings += 1;
    });
    assert!(warnings <= s.split_ascii_whitespace().count());
    let _ = opts.nested.as_override();
    let _ = opts.tlb.as_pv_tlb();
    let _ = opts.tlb_policy(None);
    let mem = hv::domain::build::parse_mem(&s);
    let vcpus = hv::domain::build::parse_vcpus(&s);
    // What dom0less / module domains would be built with.
    let ram = mem.unwrap_or(16 << 20);
    let dtb = GuestDtb {
        ram_base: hv::domain::GUEST_RAM0_BASE,
        ram_size: ram,
        bootargs: Some(&s),
        initrd: None,
        vcpus: vcpus.unwrap_or(1).clamp(1, hv::vgic::MAX_VCPUS),
    }
    .build();
    let fdt = fdt::Fdt::new(&dtb).expect("hv wrote a DTB fdt cannot read");
    if !s.contains('\0') {
        assert_eq!(fdt.chosen().bootargs(), Some(&*s), "bootargs round trip");
    }
});
