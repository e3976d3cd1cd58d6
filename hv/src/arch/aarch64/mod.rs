//! The real arch layer (aarch64-unknown-none only).
//!
//! # Boot and arch layer
//!
//! **Image.** `head.rs` starts with a 64-byte arm64 Image header (Linux's
//! `Documentation/arch/arm64/booting.rst`): `text_offset = 0`,
//! `image_size` from the linker script (bss and the boot stack included),
//! flags = 4 KiB pages, little-endian, base anywhere (bit 3). hv is a
//! position-independent executable linked at 0 (`linker.ld`, `--pie` from
//! `build.rs`): the first instructions apply its `R_AARCH64_RELATIVE`
//! relocations for the address it runs at (any 64 KiB-aligned address), so
//! QEMU `-kernel`, U-Boot `booti` or any loader that honours the header can
//! place it. It is also a PE/COFF EFI application (`efi.rs`: started by
//! UEFI firmware or GRUB's `xen_hypervisor`). Build: `cargo build -p hv --release --target aarch64-unknown-none`,
//! then `llvm-objcopy -O binary target/aarch64-unknown-none/release/hv hv.bin`.
//!
//! **What runs when (boot CPU).** `hv_primary_entry` (asm, MMU off): mask
//! interrupts, apply the relocations, check the EL (entered at EL1, hv prints
//! that it must be started at EL2 and powers off), `hv_el2_early` (set
//! `HCR_EL2.E2H` if `ID_AA64MMFR1_EL1.VH != 0`, untrap FP/SIMD, `SCTLR_EL2`
//! with the MMU off, `VBAR_EL2`), zero `.bss`, take CPU0's stack and call
//! `boot::hv_boot_primary(dtb, vh)` (Rust, still MMU off, no atomics used):
//! strip the `FDT_NOP` tokens QEMU leaves in the DTB and parse it
//! ([`crate::bootinfo`]); without FEAT_VHE print
//! "hv requires FEAT_VHE" on the DTB's PL011 and power off with PSCI
//! SYSTEM_OFF (hv only supports `E2H = 1`: under KVM's NV2 that is the only
//! mode a guest hypervisor gets); build the identity map and switch the MMU on
//! (`hv_mmu_enable`). Then: console + logger, the banner
//! `hv: hv <version> booting at EL2 (VHE)`, the command line
//! ([`crate::options`]), the frame allocator ([`crate::mm::frame`]) over RAM
//! minus the image, the DTB, reserved ranges, boot modules and its own
//! bitmaps, a heap of [`HEAP_PAGES`] frames (`linked_list_allocator`, the
//! global allocator), the nesting verdict (`nested.rs` gathers
//! `nested-detect`'s evidence at EL2: the SMCCC hypervisor UID through SMC,
//! ID-register fingerprints, DT hints, an ID-register-read timing probe;
//! printed as `hv: platform: <verdict> (<reasons>)` and published with
//! [`crate::options::set_boot_facts`]), `TPIDR_EL2` → per-CPU data, [`cpu::Cpu::init_el2`]
//! (`HCR_EL2` for guests, timers, `VPIDR_EL2`, `ICC_SRE_EL2`), "hv: CPU0
//! online", then PSCI CPU_ON of every other DTB CPU in turn (each waited for,
//! so the "online" lines come in order) and finally portable code
//! (`hv::start`).
//!
//! **Secondary CPUs.** One per enabled DTB CPU, no fixed limit.
//! `hv_secondary_entry` (x0 = the CPU's `percpu::PerCpu` entry): the same
//! `hv_el2_early`, the boot CPU's MMU registers from `mmu::HV_MMU_CONFIG`
//! (written with the MMU off, so readable before this CPU's MMU is on), then
//! (MMU on) the stack top from its entry, then `hv_boot_secondary`:
//! `TPIDR_EL2`, `init_el2`, `hv: CPU<n> online`, portable code.
//!
//! **Memory map.** EL2&0 regime (`E2H = 1`, `TGE = 0`), `TTBR0_EL2`, 4 KiB
//! granule, 48-bit VA, identity map: every DTB RAM range Normal WB inner
//! shareable (EL2 RWX, EL0 no access); the PL011 and the GICv3 distributor and
//! redistributors Device-nGnRE, execute-never. Tables come from a static pool
//! in `.bss`. Image layout: `.text.head` (header) at offset 0, `.text`,
//! `.rodata`, `.rela.dyn`, `.data`, `.bss`, then the boot CPU's [`STACK_SIZE`]
//! bytes of stack; the other CPUs' stacks are placed in free RAM at boot
//! (`boot.rs`). The lowest page of each stack is left unmapped as a guard
//! ([`GUARD_SIZE`]): a stack overflow faults, and the fault vector moves to a
//! small emergency stack to report it.
//!
//! **Why E2H = 1.** With VHE the EL1 register names at EL2 reach EL2's own
//! registers and the guest's EL1 state is reached through the `*_EL12` /
//! `*_EL02` encodings (`cpu.rs`); `TCR_EL2` has the EL1 layout. `HCR_EL2.TGE`
//! stays 0 all the time, so `TLBI *E1*` at EL2 target the guest regime of the
//! VMID in `VTTBR_EL2`.
//!
//! **Exceptions.** `VBAR_EL2` = `hv_vectors`. Exceptions from EL2 itself save
//! a full [`head::TrapFrame`] and print ESR/ELR/FAR, then park that CPU.
//! Exceptions from EL1/EL0 are guest exits: `hv_guest_exit` saves the
//! guest's x0..x30, PC, PSTATE, SP_EL0 and FP/SIMD registers, restores hv's
//! callee-saved registers and returns from `hv_guest_enter` (i.e. from
//! [`crate::arch::Arch::run_vcpu`]) with ESR/FAR/HPFAR and the vector.
//!
//! **Guest state.** [`cpu::Cpu`] implements [`crate::arch::Arch`]: `vcpu_load` /
//! `vcpu_put` move the EL1 registers through the `*_EL12`/`*_EL02` encodings
//! (SP_EL1, TPIDR*, PAR_EL1, MDSCR_EL1 directly: E2H does not redirect them),
//! set `VTCR_EL2` (PS from PARange capped at 48 bits, VS with 16-bit VMIDs),
//! `VTTBR_EL2` and `VMPIDR_EL2`, switch the pointer-authentication keys
//! (FEAT_PAuth; `HCR_EL2.{API,APK}` let guests use them untrapped), and move
//! the vCPU's FP/SIMD registers
//! ([`crate::arch::FpState`]) into the per-CPU save area that the exit path
//! fills and the entry path reloads. `HCR_EL2` is set once per CPU
//! ([`cpu::HCR_GUEST`]). `tlb_op` executes exactly the named operation,
//! switching `VTTBR_EL2.VMID` around VMID-scoped TLBIs when needed;
//! `RIPAS2E1IS` operands come from [`crate::mm::tlbi`] (exact SCALE/NUM
//! pieces, single-page `IPAS2E1IS` for the rest, per-page fallback without
//! FEAT_TLBIRANGE). [`cpu::HostMem`] implements `PhysMem` and
//! `memops::TableMem` over the identity map (every write to host RAM is
//! cleaned to the point of coherency and its I-cache lines invalidated, so a
//! guest with its MMU off sees it); `TableMem::invalidate_now_for(root, set)`
//! executes the operations the portable [`crate::tlb::Stage2Tlb`] plans for
//! it (the VMID that root was last loaded with, hv's policy from `tlb=` and
//! the nesting verdict; a root never loaded needs no TLBI), counted in
//! `hv::tlb::STATS`: the arch layer never plans. `vcpu_load` notes the
//! stage-2 there (lock-free after its first load) and `free_table` forgets a
//! root as its stage-2 is torn down. The root-less `invalidate_now` falls
//! back to a counted `TLBI ALLE1IS`.
//!
//! **ID registers.** `HCR_EL2.TID3` traps guest reads of the ID space;
//! `Arch::host_id_reg` reads the host's values once and [`crate::idregs`]
//! hides every feature whose EL1 state hv does not switch (SVE/SME, MTE,
//! FEAT_S1PIE/S1POE, TCR2_EL1, AMU, MPAM, SPE/TRBE, PMU, ...); SVE/SME use
//! traps (CPTR_EL2) and gets an undefined instruction.
//!
//! **Debug and PMU registers** are trapped (`MDCR_EL2.TDRA/TDOSA/TDA/TPM/TPMCR`, set in
//! [`cpu::Cpu::init_el2`] from [`crate::trap::mdcr_el2_guest`]) and answered as Xen does
//! ([`crate::trap::debug_pmu_answer`]: RAZ/WI or undef); they are never switched because no
//! guest reaches them.

pub mod boot;
pub mod cpu;
pub mod efi;
pub mod gic;
pub mod head;
pub mod mmu;
pub mod nested;
pub mod percpu;
pub mod pl011;
pub mod psci;
pub mod sysreg;

pub use cpu::{Cpu, HostMem};

use crate::bootinfo::BootInfo;
use crate::options::HvOptions;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use linked_list_allocator::Heap;

/// Bytes of stack per CPU (`linker.ld` has the same value).
pub const STACK_SIZE: usize = 0x1_0000;
/// The unmapped guard page at the bottom of each CPU's stack.
pub const GUARD_SIZE: usize = 0x1000;
/// The fewest frames given to the heap at boot (16 MiB); it takes
/// [`crate::mm::heap::boot_pages`] of RAM (physmaps keep one record per
/// mapped gfn, so the heap grows with the guest RAM the machine can hold).
pub const HEAP_PAGES: usize = crate::mm::heap::MIN_BOOT_PAGES;

/// hv's heap: a first-fit list allocator behind a spin lock.
pub struct HvHeap(spin::Mutex<Heap>);

impl HvHeap {
    /// Lock the heap (boot code initialises it through this).
    pub fn lock(&self) -> spin::MutexGuard<'_, Heap> {
        self.0.lock()
    }
}

// SAFETY: allocation and deallocation go through linked_list_allocator's
// first-fit list under one lock; a failed allocation returns null.
unsafe impl GlobalAlloc for HvHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with `layout`.
            unsafe { self.0.lock().deallocate(p, layout) };
        }
    }
}

#[global_allocator]
static HEAP: HvHeap = HvHeap(spin::Mutex::new(Heap::empty()));

/// What the guest-exit path stores for `run_vcpu` (layout used by `head.rs`).
#[repr(C)]
#[derive(Default, Debug)]
pub struct ExitRecord {
    /// 0 sync, 1 IRQ, 2 FIQ, 3 SError.
    pub vector: u64,
    /// `ESR_EL2`.
    pub esr: u64,
    /// `FAR_EL2`.
    pub far: u64,
    /// `HPFAR_EL2`.
    pub hpfar: u64,
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::logger::emergency_print(format_args!(
        "hv: ERROR: panic on CPU{}: {info}\n",
        percpu::index()
    ));
    // Like Xen's panic() (xen/drivers/char/console.c: "Reboot in five seconds...", then
    // machine_restart()): reset the machine instead of spinning, so a run under QEMU
    // `-no-reboot` ends at once. Only when the DTB named a PSCI conduit; else park.
    if let Some(c) = boot::boot_info().and_then(|i| i.psci) {
        crate::logger::emergency_print(format_args!(
            "hv: panic: resetting the machine (PSCI SYSTEM_RESET)\n"
        ));
        psci::call(c, crate::psci::SYSTEM_RESET, 0, 0, 0);
    }
    // SAFETY: parking masks interrupts and waits forever.
    unsafe { head::hv_park() }
}

/// Hand the boot CPU to portable code.
fn enter_primary(
    cpu: Cpu,
    mem: HostMem,
    info: &'static BootInfo<'static>,
    options: &HvOptions,
) -> ! {
    let domains: alloc::vec::Vec<_> = info.module_domains().collect();
    let hw = boot::hw_env(info);
    crate::start::run_primary_boot(cpu, mem, &domains, info.domus(), options, Some(&hw))
}

/// Hand a secondary CPU to portable code.
fn enter_secondary(cpu: Cpu) -> ! {
    crate::start::run_secondary(cpu)
}
