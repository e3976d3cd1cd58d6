//! dom0's device tree derived from the host's (`hv::hostdt::derive`): any host
//! blob and any decisions must give an error or a well-formed tree hv itself
//! reads back, with a consistent passthrough plan; never a panic.
//! Input: 8 bytes of decisions, then the host DTB. Seeds: QEMU virt DTBs.
#![no_main]

use hv::bootinfo::{check_dtb, strip_nops, BootInfo};
use hv::hostdt::{derive, Dom0DtSpec, ExtRegions, EXT_REGION_MIN};
use hv::mm::MemRange;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((d, host)) = data.split_first_chunk::<8>() else {
        return;
    };
    let mut host = host.to_vec();
    // The boot path hands hostdt a NOP-free blob.
    let _ = strip_nops(&mut host);
    let bank = MemRange::new(
        0x4000_0000 + (u64::from(d[0]) << 21),
        (u64::from(d[1]) + 1) << 21,
    );
    let memory = [bank];
    let gnttab = MemRange::new(u64::from(d[2]) << 24, u64::from(d[3]) << 12);
    let spec = Dom0DtSpec {
        hv_devices: &["/pl011@9000000", "/soc/serial@1000"],
        hv_mmio: &[MemRange::new(0x904_0000, 0x1000)],
        memory: &memory,
        vcpus: u32::from(d[4]),
        gnttab,
        ext_regions: match d[5] % 3 {
            0 => ExtRegions::Off,
            1 => ExtRegions::UnusedHostRam,
            _ => ExtRegions::Holes {
                ipa_bits: u32::from(d[5] / 3 % 49) + 16,
            },
        },
        evtchn_ppi: u32::from(d[6] % 40),
        bootargs: (d[7] & 1 != 0).then_some("console=hvc0"),
        initrd: (d[7] & 2 != 0).then_some(MemRange::new(bank.base.0, 0x1000)),
        hide_pci: d[7] & 4 != 0,
    };
    let Ok(out) = derive(&host, &spec) else {
        return;
    };
    check_dtb(&out.dtb).expect("hostdt wrote a malformed DTB");
    let ext = &out.plan.ext_regions;
    for w in ext.windows(2) {
        assert!(
            w[0].end() <= w[1].base.0,
            "extended regions overlap or are unsorted"
        );
    }
    for r in ext {
        assert!(r.base.0 % (2 << 20) == 0 && r.size % (2 << 20) == 0);
        assert!(r.size >= EXT_REGION_MIN);
        if spec.ext_regions == ExtRegions::UnusedHostRam {
            assert!(!r.overlaps(&bank) && !r.overlaps(&gnttab));
        }
    }
    for s in out.plan.spis() {
        assert!((32..1020).contains(&s.intid), "not an SPI: {s:?}");
    }
    for dev in &out.plan.devices {
        assert!(!spec.hv_devices.contains(&dev.path.as_str()));
        assert!(!dev.mmio.is_empty() || !dev.spis.is_empty());
    }
    // A host tree hv boots from gives a dom0 tree hv reads back (nodes copied
    // from a host tree hv would refuse may stay unreadable, as they were).
    if BootInfo::parse(&host).is_err() {
        return;
    }
    let info = BootInfo::parse(&out.dtb).expect("hv cannot read back dom0's DTB");
    // dom0's banks, then (Xen's second memory node) the reserved-memory regions.
    let (banks, resv) = info.memory.as_slice().split_at(1.min(info.memory.len()));
    assert_eq!(banks, memory, "dom0's memory is its banks");
    for r in resv {
        assert!(
            out.plan.devices.iter().any(|d| d.ram && d.mmio.contains(r)),
            "memory {r:?} that is neither dom0's nor reserved"
        );
    }
    assert_eq!(info.cpus.len(), spec.vcpus as usize);
    assert!(info.hypervisor_node);
});
