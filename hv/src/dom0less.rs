//! dom0less: domains described in the boot DTB the way Xen reads them
//! (`/chosen/domU*` with `compatible = "xen,domain"`, `memory` in KiB, `cpus`,
//! and `multiboot,kernel` / `multiboot,ramdisk` children; Xen's
//! docs/misc/arm/device-tree/booting.txt "Dom0less" and
//! xen/arch/arm/dom0less-build.c), built by hv at boot after the module
//! domains. Each gets a Linux-ready DTB (`/hypervisor`, `/cpus`, GICv3,
//! timer, PSCI; see [`crate::domain::dtb`]) and the Xen domU interfaces.

use memops::TableMem;
use pv_tlb::PhysAddr;

use crate::arch::PhysMem;
use crate::bootinfo::DomUNode;
use crate::domain::{DomId, DomainError, DEFAULT_RAM_BYTES};
use crate::start::{read_host, BootImage, DomainSpec, System};

/// What a dom0less node asks for, as a [`DomainSpec`]: `memory` KiB (16 MiB
/// when absent), `cpus` vCPUs, the kernel module's bootargs, a DTB.
#[must_use]
pub fn spec<'a>(d: &DomUNode<'a>) -> DomainSpec<'a> {
    DomainSpec {
        ram_bytes: d
            .memory_kib
            .and_then(|k| k.checked_mul(1024))
            .unwrap_or(DEFAULT_RAM_BYTES),
        privileged: false,
        bootargs: d.kernel.bootargs,
        dtb: true,
        vcpus: d.cpus,
    }
}

/// Build every dom0less domain; failures are logged and skipped.
/// Returns the ids of the domains built.
pub fn add_domus<M: PhysMem + TableMem + Send>(
    system: &System<M>,
    domus: &[DomUNode<'_>],
) -> alloc::vec::Vec<Result<DomId, DomainError>> {
    let mut out = alloc::vec::Vec::new();
    for d in domus {
        let kbase = d.kernel.pa;
        let mut read_kernel =
            |mem: &M, off: u64, buf: &mut [u8]| read_host(mem, PhysAddr(kbase.0 + off), buf);
        let rbase = d.ramdisk.map_or(PhysAddr(0), |r| r.pa);
        let mut read_rd =
            |mem: &M, off: u64, buf: &mut [u8]| read_host(mem, PhysAddr(rbase.0 + off), buf);
        let r = system.add_domain(
            spec(d),
            BootImage {
                size: d.kernel.size,
                read: &mut read_kernel,
            },
            d.ramdisk.map(|r| BootImage {
                size: r.size,
                read: &mut read_rd,
            }),
        );
        match r {
            Ok(id) => log::info!(
                "dom0less {}: d{id}, {} vCPU(s), {} KiB",
                d.name,
                d.cpus,
                d.memory_kib.unwrap_or(DEFAULT_RAM_BYTES >> 10)
            ),
            Err(e) => log::error!("dom0less {}: domain not built: {e}", d.name),
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::fake::FakeMem;
    use crate::bootinfo::{BootModule, ModuleKind};
    use crate::domain::GUEST_RAM0_BASE;
    use crate::xen::ConsoleSink;
    use alloc::boxed::Box;
    use memops::FrameTable;
    use pv_tlb::{Ipa, Policy};

    struct Quiet;
    impl ConsoleSink for Quiet {
        fn guest_line(&mut self, _domid: u16, _line: &str) {}
        fn hv_line(&mut self, _args: core::fmt::Arguments<'_>) {}
    }

    #[test]
    fn domu_nodes_become_linux_ready_domains() {
        let mut mem = FakeMem::new(0x8000_0000, 0x400_0000);
        // The "kernel" and "ramdisk" modules in host RAM above the pool.
        let kpa = PhysAddr(0x8300_0000);
        let rpa = PhysAddr(0x8310_0000);
        mem.write(kpa, &[0x11; 64]);
        mem.write(rpa, b"initramfs");
        let sys = System::new(
            mem,
            FrameTable::new(PhysAddr(0x8000_0000), 0x3000),
            Policy::XenCompat,
            Box::new(Quiet),
            2,
            40,
        );
        let node = DomUNode {
            name: "domU1",
            memory_kib: Some(8 << 10),
            cpus: 2,
            kernel: BootModule {
                pa: kpa,
                size: 64,
                kind: ModuleKind::Kernel,
                bootargs: Some("console=hvc0 rdinit=/init"),
            },
            ramdisk: Some(BootModule {
                pa: rpa,
                size: 9,
                kind: ModuleKind::Ramdisk,
                bootargs: None,
            }),
        };
        let mut no_kernel_room = node;
        no_kernel_room.memory_kib = Some(1);
        let ids = add_domus(&sys, &[node, no_kernel_room]);
        assert_eq!(ids[0], Ok(1));
        assert!(ids[1].is_err(), "1 KiB of RAM is refused: {:?}", ids[1]);
        assert_eq!(sys.live_domains(), 1);
        let dtb_ipa = GUEST_RAM0_BASE + (8 << 20) - (2 << 20);
        sys.with_guest_memory(1, |gm| {
            let mut k = [0u8; 64];
            gm.copy_from_guest(Ipa(GUEST_RAM0_BASE), &mut k).unwrap();
            assert_eq!(k, [0x11; 64], "kernel at the RAM base (raw image)");
            let mut blob = alloc::vec![0u8; 4096];
            gm.copy_from_guest(Ipa(dtb_ipa), &mut blob).unwrap();
            let fdt = fdt::Fdt::new(&blob).unwrap();
            assert_eq!(fdt.cpus().count(), 2, "cpus = <2>");
            assert_eq!(fdt.chosen().bootargs(), Some("console=hvc0 rdinit=/init"));
            assert!(fdt.find_node("/hypervisor").is_some());
            let mem: alloc::vec::Vec<_> = fdt.memory().regions().map(|r| r.size).collect();
            assert_eq!(mem, [Some(8 << 20)], "memory is in KiB");
            let s = fdt
                .find_node("/chosen")
                .and_then(|c| c.property("linux,initrd-start"))
                .and_then(|p| p.as_usize())
                .unwrap();
            let mut rd = [0u8; 9];
            gm.copy_from_guest(Ipa(s as u64), &mut rd).unwrap();
            assert_eq!(&rd, b"initramfs");
            // The PV console ring page is mapped (zeroed) at GUEST_MAGIC_BASE.
            let mut ring = [0xffu8; 16];
            gm.copy_from_guest(Ipa(crate::xen::domu::GUEST_MAGIC_BASE + 3072), &mut ring)
                .unwrap();
            assert_eq!(ring, [0; 16]);
        })
        .unwrap();
    }

    #[test]
    fn spec_reads_kib_and_defaults() {
        let mut n = DomUNode::default();
        assert_eq!(spec(&n).ram_bytes, DEFAULT_RAM_BYTES);
        n.memory_kib = Some(u64::MAX);
        assert_eq!(spec(&n).ram_bytes, DEFAULT_RAM_BYTES, "overflow: default");
        n.memory_kib = Some(262_144);
        n.cpus = 2;
        let s = spec(&n);
        assert_eq!(
            (s.ram_bytes, s.vcpus, s.dtb, s.privileged),
            (256 << 20, 2, true, false)
        );
    }
}
