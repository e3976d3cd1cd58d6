//! The hardware domain (issue 11): Xen's rule over the boot modules, its
//! direct-mapped RAM, its DTB derived from the host's, the passthrough
//! mapping, and the machine ending with it. Fake arch and memory.

use super::*;
use crate::arch::fake::{FakeArch, FakeMachine, FakeMem, SharedMachine, Step};
use crate::bootinfo::{BootInfo, ModuleKind};
use crate::domain::build::{domains_from_modules, page_runs, pick_evtchn_ppi};
use crate::domain::{alloc_direct, place_modules};
use crate::mm::MemRange;
use crate::testutil::{Lines, HOST_RAM as POOL_BASE, POOL_FRAMES};
use alloc::vec;
use fdt::Fdt;
use memops::{FrameTable, MemType};
use pv_tlb::Ipa;

/// The Xen 4.20 peer's DTB (QEMU virt, -smp 2 -m 2G, modules at 0x50000000
/// and 0x58000000; tests-nested/xen/README.md), compacted by dtc.
const PEER: &[u8] = include_bytes!("../../tests/fixtures/xen-peer.dtb");

const KERNEL_AT: u64 = 0x8380_0000;
const INITRD_AT: u64 = 0x8390_0000;

fn system(lines: &Lines) -> System<FakeMem> {
    crate::testutil::system(Policy::XenCompat, Box::new(lines.clone()), 8)
}

/// An arm64 `Image` (text_offset 0, image_size 0x10000) of 0x2000 bytes
/// whose byte i is `i as u8` after the header.
fn image() -> Vec<u8> {
    let mut k: Vec<u8> = (0..0x2000u32).map(|i| i as u8).collect();
    k[..64].fill(0);
    k[16..24].copy_from_slice(&0x1_0000u64.to_le_bytes());
    // Little-endian, 4 KiB pages, placement independent (Linux's 0xa).
    k[24..32].copy_from_slice(&0xau64.to_le_bytes());
    k[56..60].copy_from_slice(&crate::domain::ARM64_IMAGE_MAGIC.to_le_bytes());
    k
}

/// The peer's boot information with its modules moved into the fake RAM
/// (a small Image and a 0x3000-byte initrd), bootargs as the DTB says.
fn peer_domains<'a>(info: &BootInfo<'a>, sys: &System<FakeMem>) -> Vec<ModuleDomain<'a>> {
    let d = info.module_domains().next().expect("a dom0 module");
    assert!(d.dom0 && d.ramdisk.is_some());
    let k = image();
    sys.with_mem(|m, _| {
        write_host(m, KERNEL_AT, &k);
        write_host(m, INITRD_AT, &[0x5a; 0x3000]);
    });
    vec![ModuleDomain {
        kernel: BootModule {
            pa: PhysAddr(KERNEL_AT),
            size: k.len() as u64,
            ..d.kernel
        },
        ramdisk: d.ramdisk.map(|r| BootModule {
            pa: PhysAddr(INITRD_AT),
            size: 0x3000,
            ..r
        }),
        ..d
    }]
}

fn write_host(m: &mut FakeMem, pa: u64, bytes: &[u8]) {
    for (i, c) in bytes.chunks(4096).enumerate() {
        m.write(PhysAddr(pa + i as u64 * 4096), c);
    }
}

fn hw_env(info: &BootInfo<'_>) -> HwEnv<'static> {
    let g = info.gic.unwrap();
    HwEnv {
        host_dtb: PEER,
        uart: info.uart,
        hv_image: MemRange::new(0x4020_0000, 0x7_0000),
        gic: Some(crate::vgic::VgicLayout {
            gicd: g.dist.base.0,
            gicr: g.redist.as_slice()[0].base.0,
        }),
        timer_ppis: [29, 30, 27, 26, 28],
        ncpus: 2,
    }
}

#[test]
fn direct_allocation_takes_aligned_runs_and_gives_everything_back_on_failure() {
    let mut pool = FrameTable::new(PhysAddr(POOL_BASE), POOL_FRAMES);
    // 16 MiB: one naturally aligned 16 MiB run (Xen's largest order first).
    let b = alloc_direct(&mut pool, 0, 16 << 20).unwrap();
    assert_eq!(b, [(POOL_BASE, 16 << 20)]);
    assert_eq!(pool.frame(PhysAddr(POOL_BASE)).unwrap().owner, Some(0));
    // 24 MiB from what is left (32 MiB at +16 MiB): 16 then 8, merged.
    let b = alloc_direct(&mut pool, 1, 24 << 20).unwrap();
    assert_eq!(b, [(POOL_BASE + (16 << 20), 24 << 20)]);
    // 10 MiB with 8 free: nothing taken.
    let free = pool.free_frames();
    assert!(matches!(
        alloc_direct(&mut pool, 2, 10 << 20),
        Err(DomainError::OutOfMemory { .. })
    ));
    assert_eq!(pool.free_frames(), free);
    // Not a multiple of 2 MiB.
    assert!(matches!(
        alloc_direct(&mut pool, 2, 3 << 20),
        Err(DomainError::BadRamSize { .. })
    ));
    // A fragmented pool gives several banks, sorted.
    let mut pool = FrameTable::new(PhysAddr(POOL_BASE), 0x1000); // 16 MiB
    let hole = pool.alloc(9, 9).unwrap(); // the first 2 MiB
    assert_eq!(hole, PhysAddr(POOL_BASE));
    let mid = pool.alloc(9, 9).unwrap(); // the next 2 MiB, to free later
    let b = alloc_direct(&mut pool, 0, 12 << 20).unwrap();
    assert_eq!(b, [(POOL_BASE + (4 << 20), 12 << 20)]);
    pool.put(hole).unwrap();
    for i in 0..512 {
        pool.put(PhysAddr(mid.0 + i * 4096)).unwrap();
    }
    let mut pool2 = pool.clone();
    // 2 MiB + 2 MiB left in two runs that meet: one bank.
    let b = alloc_direct(&mut pool2, 3, 2 << 20).unwrap();
    assert_eq!(b.len(), 1);
}

#[test]
fn modules_are_placed_as_xens_place_modules() {
    // The peer's log: BANK[0] 0x60000000-0x80000000, zImage 0x60000000-0x62e91fc0,
    // DTB at 0x68000000, initrd at 0x68200000.
    assert_eq!(
        place_modules(
            (0x6000_0000, 512 << 20),
            (0x6000_0000, 0x62e9_1fc0),
            0x9b_37ec,
            0x1d17
        ),
        Some((0x6800_0000, 0x6820_0000))
    );
    // A small bank: at its top, above the kernel.
    assert_eq!(
        place_modules(
            (0x8000_0000, 16 << 20),
            (0x8000_0000, 0x8001_0000),
            0x3000,
            0x2000
        ),
        Some((0x80c0_0000, 0x80e0_0000))
    );
    // Below the kernel when only that fits.
    assert_eq!(
        place_modules((0x8000_0000, 8 << 20), (0x8040_0000, 0x8070_0000), 0, 0x100),
        Some((0x8020_0000, 0x8040_0000))
    );
    // Nowhere.
    assert_eq!(
        place_modules(
            (0x8000_0000, 4 << 20),
            (0x8000_0000, 0x8030_0000),
            0x10_0000,
            0x100
        ),
        None
    );
}

#[test]
fn xens_rule_makes_the_first_kernel_module_dom0() {
    let m = |pa: u64, kind, bootargs| BootModule {
        pa: PhysAddr(pa),
        size: 0x1000,
        kind,
        bootargs,
    };
    let mods = [
        m(0x1000, ModuleKind::Ramdisk, None),
        m(0x2000, ModuleKind::Kernel, Some("console=hvc0")),
        m(0x3000, ModuleKind::Kernel, Some("dom0 mem=2M")),
        m(0x4000, ModuleKind::Ramdisk, None),
    ];
    let d = domains_from_modules(&mods);
    assert_eq!(d.len(), 2);
    assert!(d[0].dom0 && d[0].kernel.pa == PhysAddr(0x2000));
    assert_eq!(d[0].ramdisk.map(|r| r.pa), Some(PhysAddr(0x1000)));
    assert!(!d[1].dom0 && d[1].kernel.pa == PhysAddr(0x3000));
    assert_eq!(d[1].ramdisk.map(|r| r.pa), Some(PhysAddr(0x4000)));
    // The peer's DTB: BootInfo's rule and this one agree.
    let info = BootInfo::parse(PEER).unwrap();
    let from_info: Vec<_> = info.module_domains().collect();
    assert_eq!(domains_from_modules(info.modules())[0], from_info[0]);
    assert_eq!(
        from_info[0].bootargs,
        Some("console=hvc0 earlycon=xenboot rdinit=/init ")
    );
}

#[test]
fn event_channel_ppi_is_xens_first_free_one() {
    assert_eq!(pick_evtchn_ppi(&[29, 30, 27, 26, 28]), Some(16));
    let all: Vec<u32> = (16..32).filter(|p| *p != 31).collect();
    assert_eq!(pick_evtchn_ppi(&all), Some(31));
    let all: Vec<u32> = (16..32).collect();
    assert_eq!(pick_evtchn_ppi(&all), None);
}

#[test]
fn passthrough_pages_are_merged_once() {
    let r = |b, s| MemRange::new(b, s);
    assert_eq!(
        page_runs(
            [
                r(0xa00_0200, 0x200),
                r(0xa00_0000, 0x200),
                r(0xa00_0400, 0x200),
                r(0x901_0000, 0x1000),
                r(0x903_0000, 0x1000),
                r(0, 0),
            ]
            .into_iter()
        ),
        [
            (0x901_0000, 0x901_1000),
            (0x903_0000, 0x903_1000),
            (0xa00_0000, 0xa00_1000)
        ]
    );
}

/// d0 from the peer's DTB: RAM 1:1, the kernel at bank 0, the DTB and initrd
/// where Xen puts them, the DTB derived from the host's (bootargs unchanged,
/// memory = the banks, /hypervisor with PPI 16), devices mapped 1:1 as
/// Device-nGnRE, hv's UART and the GIC left unmapped.
#[test]
fn dom0_is_built_from_the_peers_boot_information() {
    let lines = Lines::default();
    let sys = system(&lines);
    let info = BootInfo::parse(PEER).unwrap();
    let doms = peer_domains(&info, &sys);
    let opts = HvOptions::parse("dom0_mem=16M dom0_max_vcpus=2", |w| panic!("{w}"));
    let r = sys.add_boot_domains(&doms, &opts, Some(&hw_env(&info)));
    assert_eq!(r, [Ok(0)], "{:?}", lines.0.lock());
    let all = lines.0.lock().clone();
    assert!(
        all.iter()
            .any(|l| l == "hv: d0: RAM bank 0x80000000-0x81000000 (16 MiB), direct-mapped"),
        "{all:?}"
    );
    assert!(all.iter().any(|l| l.starts_with(
        "hv: d0: 16 MiB RAM, 2 vCPU(s), VMID 1, kernel entry 0x80000000, DTB 0x80c00000, vGIC at GICD 0x8000000 GICR 0x80a0000, event channel PPI 16"
    )), "{all:?}");
    let mut sh = sys.shared.lock();
    let World { mem, domains, .. } = &mut *sh;
    let d = &domains[0];
    assert!(d.privileged && d.is_direct() && d.xen.upcall_ppi == 16);
    assert_eq!(d.xen.console_ring, None, "dom0 has no console ring");
    assert_eq!(d.vgic.layout().gicd, 0x0800_0000);
    assert!(d.vgic.contains(0x080a_0000) && !d.vgic.contains(crate::vgic::GICD_BASE));
    let s2 = d.stage2();
    // RAM: IPA == PA, normal memory.
    for ipa in [0x8000_0000u64, 0x80ff_f000] {
        let (pa, a) = s2.lookup(mem, Ipa(ipa)).unwrap();
        assert_eq!((pa.0, a.mem), (ipa, MemType::NormalWb));
    }
    assert!(s2.lookup(mem, Ipa(0x8100_0000)).is_none(), "past the bank");
    // Devices 1:1 (virtio-mmio, PL031, PL061, fw-cfg, flash), Device-nGnRE.
    for ipa in [
        0x0a00_0000u64,
        0x0a00_3e00,
        0x0901_0000,
        0x0903_0000,
        0x0902_0000,
        0,
    ] {
        let (pa, a) = s2
            .lookup(mem, Ipa(ipa))
            .unwrap_or_else(|| panic!("{ipa:#x}"));
        assert_eq!(pa.0, ipa);
        assert_eq!(a.mem, MemType::DeviceNgnre);
        assert!(!a.exec);
    }
    // hv's UART, the GIC (emulated), the ITS and PCIe (hidden): not mapped.
    for ipa in [
        0x0900_0000u64,
        0x0800_0000,
        0x080a_0000,
        0x0808_0000,
        0x1000_0000,
    ] {
        assert!(s2.lookup(mem, Ipa(ipa)).is_none(), "{ipa:#x} mapped");
    }
    // The kernel at bank 0 + text_offset, the initrd where the DTB says.
    let gm = d.guest_memory(mem);
    let mut k = vec![0u8; 0x2000];
    gm.copy_from_guest(Ipa(0x8000_0000), &mut k).unwrap();
    assert_eq!(k, image());
    let mut dtb = vec![0u8; 0x4000];
    gm.copy_from_guest(Ipa(0x80c0_0000), &mut dtb).unwrap();
    let mut rd = vec![0u8; 0x3000];
    gm.copy_from_guest(Ipa(0x80e0_0000), &mut rd).unwrap();
    assert!(rd.iter().all(|&b| b == 0x5a));
    let fdt = Fdt::new(&dtb).unwrap();
    let chosen = fdt.find_node("/chosen").unwrap();
    let prop = |n: &str| chosen.property(n).unwrap().value;
    assert_eq!(
        prop("bootargs"),
        b"console=hvc0 earlycon=xenboot rdinit=/init \0"
    );
    assert_eq!(prop("linux,initrd-start"), 0x80e0_0000u64.to_be_bytes());
    assert_eq!(prop("linux,initrd-end"), 0x80e0_3000u64.to_be_bytes());
    let memory = fdt.find_node("/memory@80000000").unwrap();
    let reg = memory.property("reg").unwrap().value;
    assert_eq!(reg[..8], 0x8000_0000u64.to_be_bytes());
    assert_eq!(reg[8..16], (16u64 << 20).to_be_bytes());
    let hyp = fdt.find_node("/hypervisor").unwrap();
    let irq = hyp.property("interrupts").unwrap().value;
    assert_eq!(irq[..8], [0, 0, 0, 1, 0, 0, 0, 0], "PPI 16 (PPI number 0)");
    // Its grant table may grow over the whole region the DT names, no further
    // (Xen's gnttab_dom0_frames(): min(64, hv's image)).
    let greg = hyp.property("reg").unwrap().value;
    let gsize = u64::from_be_bytes(greg[8..16].try_into().unwrap());
    assert_eq!(gsize, 64 * 4096);
    assert_eq!(d.xen.grant.query_size(), (1, 64));
    assert!(
        fdt.find_node("/pl011@9000000").is_none(),
        "hv's UART hidden"
    );
    assert_eq!(fdt.cpus().count(), 2);
}

/// A dom0 kernel that cannot sit anywhere in RAM (hv's bare payloads: an
/// Image header with flags 0x2, or none) stays in Xen's guest layout,
/// privileged, with hv's module words.
#[test]
fn a_bare_payload_as_dom0_keeps_the_guest_layout() {
    let info = BootInfo::parse(PEER).unwrap();
    let mut doms = peer_domains(&info, &system(&Lines::default()));
    doms[0].bootargs = Some("dom0 mem=2M");
    // The payloads' header: an Image with flags 0x2 (text_offset 0x80000,
    // not placement independent); then no Image at all.
    for patch in [(24, [2u8, 0, 0, 0]), (56, [0; 4])] {
        let lines = Lines::default();
        let sys = system(&lines);
        let _ = peer_domains(&info, &sys);
        sys.with_mem(|m, _| m.write(PhysAddr(KERNEL_AT + patch.0), &patch.1));
        let r = sys.add_boot_domains(&doms, &HvOptions::default(), Some(&hw_env(&info)));
        assert_eq!(r, [Ok(0)]);
        let sh = sys.shared.lock();
        assert!(!sh.domains[0].is_direct() && sh.domains[0].privileged);
        assert_eq!(sh.domains[0].ram_bytes(), 2 << 20);
        assert_eq!(
            sh.domains[0].banks(),
            [(crate::domain::GUEST_RAM0_BASE, 2 << 20)]
        );
    }
}

/// dom0's poweroff ends hv: with only d0, "all domains ended"; with a domU
/// still running, the machine ends too (Xen's `hwdom_shutdown`).
#[test]
fn dom0_ending_ends_the_machine() {
    for with_domu in [false, true] {
        let lines = Lines::default();
        let sys = system(&lines);
        let info = BootInfo::parse(PEER).unwrap();
        let doms = peer_domains(&info, &sys);
        let opts = HvOptions::parse("dom0_mem=16M dom0_max_vcpus=1", |w| panic!("{w}"));
        assert_eq!(
            sys.add_boot_domains(&doms, &opts, Some(&hw_env(&info))),
            [Ok(0)]
        );
        let machine: SharedMachine = FakeMachine::new_shared();
        if with_domu {
            let k = vec![0u8; 0x1000];
            let id = sys
                .add_domain(
                    DomainSpec::domu(2 << 20),
                    BootImage {
                        size: 0x1000,
                        read: &mut |_m: &FakeMem, off, buf: &mut [u8]| {
                            buf.copy_from_slice(&k[off as usize..off as usize + buf.len()]);
                        },
                    },
                    None,
                )
                .unwrap();
            assert_eq!(id, 1);
            // d1 (VMID 2) yields (SCHEDOP_yield) again and again.
            machine
                .lock()
                .script(2, 0, (0..8).map(|_| Step::hypercall(29, &[0, 0])));
        }
        // d0 (VMID 1): PSCI SYSTEM_OFF.
        machine
            .lock()
            .script(1, 0, [Step::smc(&[u64::from(crate::psci::SYSTEM_OFF)])]);
        let mut arch = FakeArch::new(0, machine.clone());
        assert_eq!(sys.run_cpu(&mut arch), CpuExit::PowerOff);
        let all = lines.0.lock().clone();
        assert!(
            all.iter().any(|l| l == "hv: d0 ended (PSCI SYSTEM_OFF)"),
            "{all:?}"
        );
        let last = all.last().unwrap();
        if with_domu {
            assert!(
                all.iter().any(|l| l.starts_with(
                    "hv: hardware domain d0 ended (PSCI SYSTEM_OFF): ending the machine with 1 domain(s) still running"
                )),
                "{all:?}"
            );
            assert_eq!(last, "hv: powering off");
        } else {
            assert_eq!(last, "hv: all domains ended, powering off");
        }
    }
}
