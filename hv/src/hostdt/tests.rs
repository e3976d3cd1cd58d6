use super::*;
use crate::bootinfo::BootInfo;
use std::string::ToString;

/// QEMU 10.0.2's own DTB for `-M virt,virtualization=on,gic-version=3 -cpu max
/// -smp 2 -m 1G` (hv/tests/fixtures/README.md says how it was dumped).
const VIRT: &[u8] = include_bytes!("../../tests/fixtures/qemu-virt-gicv3-smp2.dtb");
/// `dtc -I dtb -O dts` of what [`derive`] makes of [`VIRT`] with [`spec`];
/// regenerate with `HV_REGEN_EXPECTED=1 cargo test -p hv hostdt`.
const EXPECTED_DTS: &str = "src/hostdt/testdata/qemu-virt-dom0.dts";

const DOM0_RAM: [MemRange; 1] = [MemRange::new(0x4800_0000, 0x2000_0000)];
const GNTTAB: MemRange = MemRange::new(0x4008_0000, 0x4_0000);

fn spec() -> Dom0DtSpec<'static> {
    Dom0DtSpec {
        hv_devices: &["/pl011@9000000"],
        hv_mmio: &[],
        memory: &DOM0_RAM,
        vcpus: 2,
        gnttab: GNTTAB,
        ext_regions: ExtRegions::UnusedHostRam,
        evtchn_ppi: 16,
        bootargs: Some("console=hvc0 earlycon=xen root=/dev/vda"),
        initrd: Some(MemRange::new(0x6700_0000, 0x80_0000)),
        hide_pci: true,
    }
}

fn cells(v: &[u8]) -> Vec<u32> {
    v.chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn pairs(v: &[u8]) -> Vec<(u64, u64)> {
    // The root's cells are 2 + 2 in QEMU virt.
    cells(v)
        .chunks_exact(4)
        .map(|c| {
            (
                (u64::from(c[0]) << 32) | u64::from(c[1]),
                (u64::from(c[2]) << 32) | u64::from(c[3]),
            )
        })
        .collect()
}

fn dtc_dts(dtb: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("hv-hostdt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dom0.dtb");
    std::fs::write(&path, dtb).unwrap();
    let out = std::process::Command::new("dtc")
        .args(["-q", "-I", "dtb", "-O", "dts"])
        .arg(&path)
        .output()
        .expect("dtc (device-tree-compiler, installed by ci/setup.sh) must be on PATH");
    assert!(out.status.success(), "dtc rejected dom0's DTB: {out:?}");
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn qemu_virt_dom0_tree_matches_the_expected_dts() {
    let d = derive(VIRT, &spec()).unwrap();
    let dts = dtc_dts(&d.dtb);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(EXPECTED_DTS);
    if std::env::var_os("HV_REGEN_EXPECTED").is_some() {
        std::fs::write(&path, &dts).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert!(
        dts == want,
        "dom0's tree differs from {EXPECTED_DTS} (HV_REGEN_EXPECTED=1 regenerates it):\n{dts}"
    );
}

#[test]
fn qemu_virt_devices_are_passed_through_with_their_spis() {
    let d = derive(VIRT, &spec()).unwrap();
    let plan = &d.plan;
    let dev = |p: &str| plan.devices.iter().find(|d| d.path == p);
    // All 32 virtio-mmio transports, SPIs 0x10.. edge rising (INTID 48..).
    for i in 0..32u64 {
        let p = format!("/virtio_mmio@{:x}", 0xa00_0000 + i * 0x200);
        let v = dev(&p).unwrap_or_else(|| panic!("{p} not passed through"));
        assert_eq!(v.mmio, [MemRange::new(0xa00_0000 + i * 0x200, 0x200)]);
        assert_eq!(
            v.spis,
            [Spi {
                intid: 48 + i as u32,
                flags: 1
            }]
        );
        assert!(!v.ram);
    }
    let rtc = dev("/pl031@9010000").unwrap();
    assert_eq!(rtc.mmio, [MemRange::new(0x901_0000, 0x1000)]);
    assert_eq!(
        rtc.spis,
        [Spi {
            intid: 34,
            flags: 4
        }]
    );
    let gpio = dev("/pl061@9030000").unwrap();
    assert_eq!(gpio.mmio, [MemRange::new(0x903_0000, 0x1000)]);
    assert_eq!(
        gpio.spis,
        [Spi {
            intid: 39,
            flags: 4
        }]
    );
    assert_eq!(
        dev("/flash@0").unwrap().mmio,
        [
            MemRange::new(0, 0x400_0000),
            MemRange::new(0x400_0000, 0x400_0000)
        ]
    );
    assert_eq!(
        dev("/fw-cfg@9020000").unwrap().mmio,
        [MemRange::new(0x902_0000, 0x18)]
    );
    // Nothing hv keeps, and no SPI twice.
    assert!(dev("/pl011@9000000").is_none());
    let spis: Vec<u32> = plan.spis().map(|s| s.intid).collect();
    let mut uniq = spis.clone();
    uniq.dedup();
    assert_eq!(spis, uniq);
    assert!(!spis.contains(&33), "hv's UART's SPI is not dom0's");
    assert!(spis.iter().all(|&i| (32..1020).contains(&i)));
    assert_eq!(plan.devices.len(), 32 + 4);
    // What dom0 does not get, and why.
    let why = |p: &str| plan.removed.iter().find(|r| r.path == p).map(|r| r.why);
    assert_eq!(why("/pl011@9000000"), Some(Why::UsedByHv));
    assert_eq!(why("/pcie@10000000"), Some(Why::HiddenPci));
    assert_eq!(why("/intc@8000000/its@8080000"), Some(Why::HiddenIts));
    assert_eq!(why("/intc@8000000"), Some(Why::Replaced));
    assert_eq!(why("/timer"), Some(Why::Replaced));
    assert_eq!(why("/pmu"), Some(Why::Skipped));
    assert_eq!(why("/psci"), Some(Why::Skipped));
    assert_eq!(why("/cpus"), Some(Why::Skipped));
    assert_eq!(why("/memory@40000000"), Some(Why::Skipped));
    // hv's UART named by its registers, as BootInfo::uart gives them: the same tree.
    let mut s = spec();
    s.hv_devices = &[];
    static UART: [MemRange; 1] = [MemRange::new(0x900_0000, 0x1000)];
    s.hv_mmio = &UART;
    assert_eq!(derive(VIRT, &s).unwrap(), derive(VIRT, &spec()).unwrap());
    // With hide_pci off the host bridge is passed through (Xen's behaviour).
    let mut s = spec();
    s.hide_pci = false;
    let d = derive(VIRT, &s).unwrap();
    let pcie = d
        .plan
        .devices
        .iter()
        .find(|d| d.path == "/pcie@10000000")
        .unwrap();
    assert_eq!(pcie.mmio, [MemRange::new(0x40_1000_0000, 0x1000_0000)]);
}

#[test]
fn qemu_virt_dom0_tree_is_what_linux_reads() {
    let d = derive(VIRT, &spec()).unwrap();
    let fdt = Fdt::new(&d.dtb).expect("dom0's DTB parses");
    // hv's own boot parser reads it too (a memory node, no NOPs, well nested).
    let b = BootInfo::parse(&d.dtb).unwrap();
    assert_eq!(b.memory.as_slice(), DOM0_RAM);
    assert_eq!(b.uart, None, "no PL011 left for dom0");
    assert_eq!(b.psci, Some(crate::bootinfo::PsciConduit::Hvc));
    assert!(b.hypervisor_node);
    let gic_dist = b.gic.unwrap().dist;
    assert_eq!(gic_dist, MemRange::new(0x800_0000, 0x1_0000));
    assert_eq!(
        b.gic.unwrap().redist.as_slice(),
        [MemRange::new(0x80a_0000, 0xf6_0000)]
    );
    assert_eq!(b.cpus.iter().collect::<Vec<_>>(), [0, 1]);
    let root = fdt.find_node("/").unwrap();
    // Only one memory node: dom0's banks.
    let mems: Vec<_> = root
        .children()
        .filter(|n| str_prop(*n, "device_type") == Some("memory"))
        .collect();
    assert_eq!(mems.len(), 1);
    assert_eq!(mems[0].name, "memory@48000000");
    // No PL011, no PCIe, no ITS anywhere.
    let mut all = Vec::new();
    let mut stack = alloc::vec![root];
    while let Some(n) = stack.pop() {
        all.push(n);
        stack.extend(n.children());
    }
    for c in [
        "arm,pl011",
        "pci-host-ecam-generic",
        "arm,gic-v3-its",
        "arm,armv8-pmuv3",
    ] {
        assert!(
            !all.iter().any(|n| compatible(*n, c)),
            "{c} left in dom0's tree"
        );
    }
    for c in ["virtio,mmio", "arm,pl031", "arm,pl061", "qemu,fw-cfg-mmio"] {
        assert!(all.iter().any(|n| compatible(*n, c)), "{c} missing");
    }

    // arch/arm/xen/enlighten.c fdt_find_hyper_node: depth 1, named exactly
    // "hypervisor", compatible "xen,xen-<version>" (longer than prefix + 3).
    let hyp: Vec<_> = root.children().filter(|n| n.name == "hypervisor").collect();
    assert_eq!(hyp.len(), 1);
    let hyp = hyp[0];
    let compat = prop(hyp, "compatible").unwrap();
    assert!(compat.starts_with(b"xen,xen-4.20\0"));
    assert!("xen,xen-".len() + 3 < compat.len());
    // xen_dt_guest_init: of_find_compatible_node(.., "xen,xen").
    assert!(compatible(hyp, "xen,xen"));
    let regs = pairs(prop(hyp, "reg").unwrap());
    // reg[0]: the grant table (GRANT_TABLE_INDEX).
    assert_eq!(regs[0], (GNTTAB.base.0, GNTTAB.size));
    // reg[1..]: extended regions (arch_xen_unpopulated_init): sorted, no
    // overlap, 2 MiB aligned, >= 64 MiB, outside dom0's RAM and the grant
    // table, inside host RAM (Xen's choice without an IOMMU).
    let ext = &regs[1..];
    assert_eq!(
        ext,
        [
            (0x4020_0000, 0x4800_0000 - 0x4020_0000),
            (0x6800_0000, 0x1800_0000)
        ]
    );
    for w in ext.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0);
    }
    for &(s, l) in ext {
        let r = MemRange::new(s, l);
        assert!(s % SZ_2M == 0 && l % SZ_2M == 0 && l >= EXT_REGION_MIN);
        assert!(!r.overlaps(&DOM0_RAM[0]) && !r.overlaps(&GNTTAB));
        assert!(s >= 0x4000_0000 && r.end() <= 0x8000_0000);
    }
    assert_eq!(
        d.plan.ext_regions,
        ext.iter()
            .map(|&(s, l)| MemRange::new(s, l))
            .collect::<Vec<_>>()
    );
    // interrupts[0] through interrupt-parent: the event-channel PPI (INTID 16),
    // active-low level, every CPU.
    assert_eq!(cells(prop(hyp, "interrupts").unwrap()), [1, 0, 0xf08]);
    let gic_ph = u32_prop(hyp, "interrupt-parent").unwrap();
    let gic = fdt.find_phandle(gic_ph).unwrap();
    assert_eq!(gic.name, "interrupt-controller");
    assert!(prop(gic, "interrupt-controller").is_some());
    assert_eq!(u32_prop(gic, "#interrupt-cells"), Some(3));
    assert!(compatible(gic, "arm,gic-v3"));
    assert_eq!(
        u32_prop(root, "interrupt-parent"),
        Some(gic_ph),
        "the root's interrupt-parent still names the GIC"
    );
    // The timer: the host's EL1 PPIs (13, 14, 11), active-low level.
    let timer = root.children().find(|n| n.name == "timer").unwrap();
    assert_eq!(
        cells(prop(timer, "interrupts").unwrap()),
        [1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08]
    );
    // PSCI through hv.
    let psci = root.children().find(|n| n.name == "psci").unwrap();
    assert_eq!(str_prop(psci, "method"), Some("hvc"));
    assert!(compatible(psci, "arm,psci-1.0"));
    // /chosen: dom0's command line and initrd, no stdout-path, QEMU's seeds kept.
    let chosen = fdt.find_node("/chosen").unwrap();
    assert_eq!(
        str_prop(chosen, "bootargs"),
        Some("console=hvc0 earlycon=xen root=/dev/vda")
    );
    assert!(prop(chosen, "stdout-path").is_none());
    assert!(prop(chosen, "rng-seed").is_some());
    assert_eq!(
        prop(chosen, "linux,initrd-start").map(read_cells),
        Some(Some(0x6700_0000))
    );
    assert_eq!(
        prop(chosen, "linux,initrd-end").map(read_cells),
        Some(Some(0x6780_0000))
    );
    // Every passed-through device's SPI is on the GIC, INTID as in the host.
    let rtc = fdt.find_node("/pl031@9010000").unwrap();
    assert_eq!(cells(prop(rtc, "interrupts").unwrap()), [0, 2, 4]);
}

#[test]
fn vcpus_get_xens_affinities() {
    assert_eq!(vcpu_affinity(0), 0);
    assert_eq!(vcpu_affinity(15), 15);
    assert_eq!(vcpu_affinity(16), 0x100);
    assert_eq!(vcpu_affinity(127), 0x70f);
    let mut s = spec();
    s.vcpus = 20;
    let d = derive(VIRT, &s).unwrap();
    let fdt = Fdt::new(&d.dtb).unwrap();
    let regs: Vec<u32> = fdt
        .find_node("/cpus")
        .unwrap()
        .children()
        .map(|c| u32_prop(c, "reg").unwrap())
        .collect();
    assert_eq!(regs.len(), 20);
    assert_eq!(regs[16..], [0x100, 0x101, 0x102, 0x103]);
    let cpu = fdt.find_node("/cpus/cpu@103").unwrap();
    assert!(
        compatible(cpu, "arm,cortex-a57"),
        "the host CPU's compatible"
    );
    assert_eq!(str_prop(cpu, "enable-method"), Some("psci"));
}

#[test]
fn extended_regions_as_holes_of_the_ipa_space() {
    let mut s = spec();
    s.ext_regions = ExtRegions::Holes { ipa_bits: 40 };
    let d = derive(VIRT, &s).unwrap();
    let ext = &d.plan.ext_regions;
    // Below 1 TiB, QEMU virt's tree addresses: flash, GIC, devices, RAM, PCIe
    // (ECAM at 256 GiB + 256 MiB, MMIO windows low and at 512 GiB).
    assert!(!ext.is_empty());
    let used = [
        MemRange::new(0, 0x800_0000),                  // flash
        MemRange::new(0x800_0000, 0x1_0000),           // GICD
        MemRange::new(0x80a_0000, 0xf6_0000),          // GICR
        MemRange::new(0x900_0000, 0x1000),             // pl011 (hv's, still not free)
        MemRange::new(0x1000_0000, 0x2eff_0000),       // PCIe MMIO window
        MemRange::new(0x4000_0000, 0x4000_0000),       // RAM
        MemRange::new(0x40_1000_0000, 0x1000_0000),    // ECAM
        MemRange::new(0x80_0000_0000, 0x80_0000_0000), // PCIe high MMIO
    ];
    for r in ext {
        assert!(r.end() <= 1 << 40);
        assert!(r.base.0 % SZ_2M == 0 && r.size >= EXT_REGION_MIN);
        for u in &used {
            assert!(!r.overlaps(u), "{r:?} overlaps {u:?}");
        }
    }
    // The gap between RAM and the ECAM is the biggest below 256 GiB.
    assert!(ext.contains(&MemRange::new(0x8000_0000, 0x40_1000_0000 - 0x8000_0000)));
    // Off: only the grant table in reg.
    s.ext_regions = ExtRegions::Off;
    let d = derive(VIRT, &s).unwrap();
    let fdt = Fdt::new(&d.dtb).unwrap();
    let hyp = fdt.find_node("/hypervisor").unwrap();
    assert_eq!(
        pairs(prop(hyp, "reg").unwrap()),
        [(GNTTAB.base.0, GNTTAB.size)]
    );
}

#[test]
fn unusable_decisions_and_hosts_are_errors() {
    let bad = |f: &dyn Fn(&mut Dom0DtSpec<'static>)| {
        let mut s = spec();
        f(&mut s);
        derive(VIRT, &s).unwrap_err()
    };
    // The timer's virtual PPI, an SPI, an SGI.
    for ppi in [27, 32, 15] {
        assert_eq!(
            bad(&|s| s.evtchn_ppi = ppi),
            HostDtError::BadSpec("event-channel PPI")
        );
    }
    assert_eq!(bad(&|s| s.vcpus = 0), HostDtError::BadSpec("dom0 vCPUs"));
    assert_eq!(bad(&|s| s.vcpus = 129), HostDtError::BadSpec("dom0 vCPUs"));
    assert_eq!(
        bad(&|s| s.memory = &[]),
        HostDtError::BadSpec("dom0 memory banks")
    );
    static OVERLAP: [MemRange; 2] = [
        MemRange::new(0x4800_0000, 0x100_0000),
        MemRange::new(0x4880_0000, 0x100_0000),
    ];
    assert_eq!(
        bad(&|s| s.memory = &OVERLAP),
        HostDtError::BadSpec("dom0 memory banks")
    );
    assert_eq!(
        bad(&|s| s.gnttab = MemRange::new(0x4000_0000, 0)),
        HostDtError::BadSpec("grant-table region")
    );
    assert_eq!(
        derive(&VIRT[..200], &spec()).unwrap_err(),
        HostDtError::Dtb(BootInfoError::NotADtb)
    );
    // A tree without a GIC or a timer.
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.prop_u32s("#address-cells", &[2]);
    w.prop_u32s("#size-cells", &[2]);
    w.end_node();
    assert_eq!(
        derive(&w.finish(), &spec()).unwrap_err(),
        HostDtError::NoGic
    );
    // Two root nodes named `reserved-memory` (the first a memory node, the
    // second with unreadable cells): which one `/reserved-memory` finds would
    // differ between the host tree and dom0's, which drops memory nodes.
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.prop_u32s("#address-cells", &[2]);
    w.prop_u32s("#size-cells", &[2]);
    w.begin_node("reserved-memory");
    w.prop_str("device_type", "memory");
    w.prop_u32s("reg", &[0, 0x4000_0000, 0, 0x4000_0000]);
    w.end_node();
    w.begin_node("reserved-memory");
    w.prop_u32s("#size-cells", &[0x802]);
    w.end_node();
    w.end_node();
    assert_eq!(
        derive(&w.finish(), &spec()).unwrap_err(),
        HostDtError::DuplicateNode
    );
}

/// A host tree with what QEMU virt lacks: a bus with `ranges`, hv's UART on
/// it, `/reserved-memory`, a disabled device, `xen,passthrough`, an
/// interrupt on another controller, a PPI user, an IOMMU, a second GIC, a
/// host `/hypervisor`, a bus without `ranges`, and boot modules in /chosen.
fn synthetic_host() -> Vec<u8> {
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.prop_u32s("#address-cells", &[2]);
    w.prop_u32s("#size-cells", &[2]);
    w.prop_u32s("interrupt-parent", &[1]);
    w.begin_node("memory@40000000");
    w.prop_str("device_type", "memory");
    w.prop_u32s("reg", &[0, 0x4000_0000, 0, 0x4000_0000]);
    w.end_node();
    w.begin_node("reserved-memory");
    w.prop_u32s("#address-cells", &[2]);
    w.prop_u32s("#size-cells", &[2]);
    w.prop("ranges", &[]);
    w.begin_node("fw@7f000000");
    w.prop_u32s("reg", &[0, 0x7f00_0000, 0, 0x10_0000]);
    w.end_node();
    w.end_node();
    w.begin_node("gic@8000000");
    w.prop("compatible", b"arm,gic-v3\0");
    w.prop("interrupt-controller", &[]);
    w.prop_u32s("#interrupt-cells", &[3]);
    w.prop_u32s("phandle", &[1]);
    w.prop_u32s(
        "reg",
        &[0, 0x800_0000, 0, 0x1_0000, 0, 0x80a_0000, 0, 0x10_0000],
    );
    w.end_node();
    w.begin_node("gic@9000000");
    w.prop("compatible", b"arm,gic-v3\0");
    w.prop("interrupt-controller", &[]);
    w.prop_u32s("phandle", &[2]);
    w.prop_u32s("reg", &[0, 0x900_0000, 0, 0x1_0000]);
    w.end_node();
    w.begin_node("timer");
    w.prop("compatible", b"arm,armv8-timer\0");
    w.prop_u32s("interrupts", &[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]);
    w.end_node();
    w.begin_node("cpus");
    w.prop_u32s("#address-cells", &[1]);
    w.prop_u32s("#size-cells", &[0]);
    w.begin_node("cpu@0");
    w.prop_str("device_type", "cpu");
    w.prop("compatible", b"arm,cortex-a72\0");
    w.prop_u32s("reg", &[0]);
    w.end_node();
    w.end_node();
    w.begin_node("soc");
    w.prop("compatible", b"simple-bus\0");
    w.prop_u32s("#address-cells", &[1]);
    w.prop_u32s("#size-cells", &[1]);
    // soc address 0 is CPU address 0x1_0000_0000.
    w.prop_u32s("ranges", &[0, 1, 0, 0x1000_0000]);
    w.begin_node("serial@1000");
    w.prop("compatible", b"arm,pl011\0");
    w.prop_u32s("reg", &[0x1000, 0x1000]);
    w.prop_u32s("interrupts", &[0, 5, 4]);
    w.end_node();
    w.begin_node("eth@2000");
    w.prop_str("status", "disabled");
    w.prop_u32s("reg", &[0x2000, 0x100]);
    w.prop_u32s("interrupts", &[0, 6, 4]);
    w.prop("xen,passthrough", &[]);
    w.end_node();
    w.begin_node("gpio@3000");
    w.prop_u32s("reg", &[0x3000, 0x100]);
    w.prop("interrupt-controller", &[]);
    w.prop_u32s("#interrupt-cells", &[2]);
    w.prop_u32s("phandle", &[3]);
    w.prop_u32s("interrupts", &[0, 7, 4]);
    w.end_node();
    w.begin_node("button@4000");
    w.prop_u32s("reg", &[0x4000, 0x10]);
    w.prop_u32s("interrupt-parent", &[3]);
    w.prop_u32s("interrupts", &[5, 1]);
    w.end_node();
    w.begin_node("iommu@5000");
    w.prop_u32s("reg", &[0x5000, 0x1000]);
    w.prop_u32s("#iommu-cells", &[1]);
    w.end_node();
    w.begin_node("i2c@6000");
    w.prop_u32s("#address-cells", &[1]);
    w.prop_u32s("#size-cells", &[0]);
    w.prop_u32s("reg", &[0x6000, 0x100]);
    w.begin_node("rtc@68");
    w.prop_u32s("reg", &[0x68]);
    w.prop_u32s("interrupts", &[0, 9, 4]);
    w.end_node();
    w.end_node();
    w.end_node();
    w.begin_node("pmu-like");
    w.prop_u32s("interrupts", &[1, 7, 4]);
    w.end_node();
    w.begin_node("hypervisor");
    w.prop("compatible", b"xen,xen-4.19\0xen,xen\0");
    w.end_node();
    w.begin_node("chosen");
    w.prop_str("xen,xen-bootargs", "loglvl=all");
    w.prop_str("xen,dom0-bootargs", "console=hvc0");
    w.prop_str("stdout-path", "/soc/serial@1000");
    w.begin_node("module@48000000");
    w.prop("compatible", b"multiboot,kernel\0multiboot,module\0");
    w.prop_u32s("reg", &[0, 0x4800_0000, 0, 0x1000]);
    w.end_node();
    w.end_node();
    w.end_node();
    w.finish()
}

#[test]
fn xens_node_rules_on_a_synthetic_host() {
    let host = synthetic_host();
    let s = Dom0DtSpec {
        hv_devices: &[],
        // hv's UART named by its registers (BootInfo::uart), behind /soc's ranges.
        hv_mmio: &[MemRange::new(0x1_0000_1000, 0x1000)],
        memory: &DOM0_RAM,
        vcpus: 1,
        gnttab: GNTTAB,
        ext_regions: ExtRegions::UnusedHostRam,
        evtchn_ppi: 31,
        bootargs: Some("console=hvc0"),
        initrd: None,
        hide_pci: true,
    };
    let d = derive(&host, &s).unwrap();
    let why = |p: &str| d.plan.removed.iter().find(|r| r.path == p).map(|r| r.why);
    assert_eq!(why("/soc/serial@1000"), Some(Why::UsedByHv));
    assert_eq!(why("/gic@9000000"), Some(Why::SecondaryGic));
    assert_eq!(why("/soc/iommu@5000"), Some(Why::Iommu));
    assert_eq!(why("/pmu-like"), Some(Why::UsesPpi));
    // Xen's skip list: `xen,xen`.
    assert_eq!(why("/hypervisor"), Some(Why::Skipped));
    assert_eq!(why("/chosen/module@48000000"), Some(Why::Skipped));
    let dev = |p: &str| d.plan.devices.iter().find(|d| d.path == p).cloned();
    // Translated through /soc's ranges; a disabled device is mapped as Xen does.
    let eth = dev("/soc/eth@2000").unwrap();
    assert_eq!(eth.mmio, [MemRange::new(0x1_0000_2000, 0x100)]);
    assert_eq!(
        eth.spis,
        [Spi {
            intid: 38,
            flags: 4
        }]
    );
    // An interrupt on the GPIO controller is not an SPI to route.
    let button = dev("/soc/button@4000").unwrap();
    assert_eq!(button.mmio, [MemRange::new(0x1_0000_4000, 0x10)]);
    assert!(button.spis.is_empty());
    // An I2C address is not MMIO; the device's SPI is still dom0's.
    let rtc = dev("/soc/i2c@6000/rtc@68").unwrap();
    assert!(rtc.mmio.is_empty());
    assert_eq!(
        rtc.spis,
        [Spi {
            intid: 41,
            flags: 4
        }]
    );
    // Reserved memory: RAM mapped 1:1, and a second memory node for it.
    let fw = dev("/reserved-memory/fw@7f000000").unwrap();
    assert!(fw.ram);
    assert_eq!(fw.mmio, [MemRange::new(0x7f00_0000, 0x10_0000)]);
    // The extended regions avoid it.
    assert!(d.plan.ext_regions.iter().all(|r| !r.overlaps(&fw.mmio[0])));
    let fdt = Fdt::new(&d.dtb).unwrap();
    let root = fdt.find_node("/").unwrap();
    let mems: Vec<_> = root
        .children()
        .filter(|n| str_prop(*n, "device_type") == Some("memory"))
        .map(|n| (n.name, pairs(prop(n, "reg").unwrap())))
        .collect();
    assert_eq!(
        mems,
        [
            ("memory@48000000", alloc::vec![(0x4800_0000, 0x2000_0000)]),
            ("memory@7f000000", alloc::vec![(0x7f00_0000, 0x10_0000)]),
        ]
    );
    // status kept (last), xen,passthrough dropped.
    let eth = fdt.find_node("/soc/eth@2000").unwrap();
    assert_eq!(str_prop(eth, "status"), Some("disabled"));
    assert!(prop(eth, "xen,passthrough").is_none());
    assert_eq!(eth.properties().last().unwrap().name, "status");
    // One hypervisor node, hv's; the GIC node at the first GIC's registers.
    let hyps: Vec<_> = root.children().filter(|n| n.name == "hypervisor").collect();
    assert_eq!(hyps.len(), 1);
    assert!(prop(hyps[0], "compatible")
        .unwrap()
        .starts_with(b"xen,xen-4.20"));
    assert_eq!(cells(prop(hyps[0], "interrupts").unwrap()), [1, 15, 0xf08]);
    let gic = fdt.find_node("/interrupt-controller").unwrap();
    assert_eq!(
        pairs(prop(gic, "reg").unwrap()),
        [(0x800_0000, 0x1_0000), (0x80a_0000, 0x10_0000)]
    );
    // /chosen: dom0's bootargs only.
    let chosen = fdt.find_node("/chosen").unwrap();
    let names: Vec<&str> = chosen.properties().map(|p| p.name).collect();
    assert_eq!(names, ["bootargs"]);
    assert!(
        chosen.children().next().is_none(),
        "boot modules are not dom0's"
    );
    assert_eq!(
        derive(
            &host,
            &Dom0DtSpec {
                evtchn_ppi: 27,
                ..s
            }
        )
        .unwrap_err(),
        HostDtError::BadSpec("event-channel PPI")
    );
    let _ = HostDtError::NoTimer.to_string();
}

/// With one root address cell, a region above 4 GiB cannot be written:
/// decisions that need one are refused, extended regions that would need one
/// are left out (Xen's `dt_child_set_range` would truncate them).
#[test]
fn one_cell_roots_get_no_truncated_addresses() {
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.prop_u32s("#address-cells", &[1]);
    w.prop_u32s("#size-cells", &[1]);
    w.prop_u32s("interrupt-parent", &[1]);
    w.begin_node("memory@40000000");
    w.prop_str("device_type", "memory");
    w.prop_u32s("reg", &[0x4000_0000, 0x4000_0000]);
    w.end_node();
    w.begin_node("gic@8000000");
    w.prop("compatible", b"arm,gic-v3\0");
    w.prop("interrupt-controller", &[]);
    w.prop_u32s("phandle", &[1]);
    w.prop_u32s("reg", &[0x800_0000, 0x1_0000, 0x80a_0000, 0x10_0000]);
    w.end_node();
    w.begin_node("timer");
    w.prop("compatible", b"arm,armv8-timer\0");
    w.prop_u32s("interrupts", &[1, 13, 4, 1, 14, 4, 1, 11, 4]);
    w.end_node();
    w.begin_node("cpus");
    w.begin_node("cpu@0");
    w.prop_str("device_type", "cpu");
    w.prop("compatible", b"arm,cortex-a53\0");
    w.end_node();
    w.end_node();
    w.end_node();
    let host = w.finish();
    let mut s = spec();
    s.ext_regions = ExtRegions::Holes { ipa_bits: 40 };
    let d = derive(&host, &s).unwrap();
    assert!(!d.plan.ext_regions.is_empty());
    assert!(d.plan.ext_regions.iter().all(|r| r.end() <= 1 << 32));
    let fdt = Fdt::new(&d.dtb).unwrap();
    let reg = cells(prop(fdt.find_node("/hypervisor").unwrap(), "reg").unwrap());
    assert_eq!(reg.len(), 2 * (1 + d.plan.ext_regions.len()));
    static HIGH: [MemRange; 1] = [MemRange::new(0x1_0000_0000, 0x1000_0000)];
    s.memory = &HIGH;
    assert_eq!(
        derive(&host, &s).unwrap_err(),
        HostDtError::BadSpec("dom0 memory banks")
    );
}
