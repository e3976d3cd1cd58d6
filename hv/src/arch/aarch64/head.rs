//! Assembly: the arm64 Image header, the primary and secondary entry points,
//! the MMU switch-on, the EL2 vector table and the guest entry/exit path.

use super::percpu::PerCpu;
use super::{ExitRecord, STACK_SIZE};

use crate::arch::{FpState, GuestGprs};
use core::mem::offset_of;

// The Image header follows Linux's Documentation/arch/arm64/booting.rst:
// code0/code1, text_offset, image_size, flags, res2..res4, magic, res5.
// image_size = the whole image (bss and the boot stack included, from the
// linker script). flags = 0b1010: little-endian (bit 0 = 0), 4K pages
// (bits 2:1 = 01), and bit 3 = 1: the 2 MiB aligned base may be anywhere in
// physical memory, because hv applies its own relocations at entry (it is a
// position-independent executable linked at 0, see linker.ld). text_offset
// is 0, as in Xen's and Linux's (since 5.8) headers.
//
// As Linux's and Xen's Images, it is also a PE/COFF (PE32+) EFI application:
// code0 is "MZ" (an instruction without effect), res5 the offset of the PE
// header, which follows the Image header at once (GRUB's xen_boot reads it
// there). One section covers all of hv after 4 KiB of headers, file offsets
// equal RVAs (FileAlignment = SectionAlignment = 4 KiB: GRUB's xen_boot
// hands LoadImage its buffer's unaligned start, so a larger alignment breaks
// it), no .reloc (hv relocates itself). The EFI entry point is
// `hv_efi_entry` (efi.rs), which moves hv to a 64 KiB-aligned copy.
core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    .long   0xfa405a4d                  // code0: "MZ"; ccmp x18, #0, #0xd, pl (no effect)
    b       hv_primary_entry            // code1
    .quad   0                           // text_offset (as Xen and Linux since 5.8)
    .quad   __image_size                // image_size (from the linker script)
    .quad   0xa                         // flags
    .quad   0                           // res2
    .quad   0                           // res3
    .quad   0                           // res4
    .byte   0x41, 0x52, 0x4d, 0x64      // magic "ARM\x64"
    .long   hv_pe_header - _start       // res5: PE header offset (e_lfanew)
    .balign 8
hv_pe_header:
    .ascii  "PE\0\0"
    .short  0xaa64                      // Machine: ARM64
    .short  1                           // NumberOfSections
    .long   0                           // TimeDateStamp
    .long   0                           // PointerToSymbolTable
    .long   0                           // NumberOfSymbols
    .short  hv_pe_sections - hv_pe_opt  // SizeOfOptionalHeader
    .short  0x206                       // EXECUTABLE_IMAGE | LINE_NUMS_STRIPPED | DEBUG_STRIPPED
hv_pe_opt:
    .short  0x20b                       // PE32+
    .byte   0x02, 0x14                  // linker version
    .long   __pe_text_size              // SizeOfCode
    .long   0                           // SizeOfInitializedData
    .long   0                           // SizeOfUninitializedData
    .long   __efi_entry_rva             // AddressOfEntryPoint
    .long   __pe_text_rva               // BaseOfCode
    .quad   0                           // ImageBase
    .long   0x1000                      // SectionAlignment
    .long   0x1000                      // FileAlignment
    .short  0, 0                        // OS version
    .short  0, 0                        // image version
    .short  0, 0                        // subsystem version
    .long   0                           // Win32VersionValue
    .long   __image_size                // SizeOfImage
    .long   __pe_text_rva               // SizeOfHeaders
    .long   0                           // CheckSum
    .short  10                          // Subsystem: EFI application
    .short  0                           // DllCharacteristics
    .quad   0, 0, 0, 0                  // stack/heap reserve/commit
    .long   0                           // LoaderFlags
    .long   6                           // NumberOfRvaAndSizes
    .quad   0, 0, 0, 0, 0, 0            // data directories: none (no .reloc)
hv_pe_sections:
    .ascii  ".text\0\0\0"
    .long   __pe_text_vsize             // VirtualSize (bss and the boot stack included)
    .long   __pe_text_rva               // VirtualAddress
    .long   __pe_text_size              // SizeOfRawData
    .long   __pe_text_rva               // PointerToRawData
    .long   0, 0                        // PointerToRelocations, PointerToLinenumbers
    .short  0, 0                        // NumberOfRelocations, NumberOfLinenumbers
    .long   0xe0000060                  // CODE | INITIALIZED_DATA | MEM_EXECUTE | READ | WRITE

    .text
    .balign 8
hv_primary_entry:
    msr     daifset, #0xf
    mov     x19, x0                     // DTB physical address (booting.rst: x0)
    bl      hv_relocate
    mov     x21, #0                     // 0: EL2 boot, 1: entered at EL1 (report and stop)
    mrs     x1, CurrentEL
    cmp     x1, #(2 << 2)
    b.eq    3f
    cmp     x1, #(1 << 2)
    b.ne    hv_park                     // EL3 (or EL0): nothing sane to do
    mov     x21, #1
    mov     x1, #(3 << 20)              // CPACR_EL1.FPEN: Rust code uses FP/SIMD registers
    msr     cpacr_el1, x1
    isb
    b       4f
3:  bl      hv_el2_early
    mov     x20, x0                     // ID_AA64MMFR1_EL1.VH
4:  adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       1b
2:  adrp    x1, __stacks_start
    add     x1, x1, :lo12:__stacks_start
    mov     x2, #{stack_size}
    add     x1, x1, x2
    mov     sp, x1
    mov     x0, x19
    cbnz    x21, 5f
    mov     x1, x20
    mov     x2, x22
    bl      hv_boot_primary
    b       hv_park
5:  bl      hv_boot_wrong_el
    b       hv_park

    // Relocate: hv is linked at 0, so the load address is the offset to add
    // to every R_AARCH64_RELATIVE target and addend. With the MMU off
    // (booting.rst) every access is to memory as it is; the entries and their
    // targets are 8-byte aligned (Device memory needs it). Returns in x22 the
    // number of relocations of another type, which the linker must not
    // produce (boot.rs reports them). Clobbers x1..x6; uses no stack.
hv_relocate:
    adr     x1, _start
    tst     x1, #({stack_size} - 1)
    b.ne    hv_park                     // the stack guard check needs STACK_SIZE alignment
    adrp    x2, __rela_start
    add     x2, x2, :lo12:__rela_start
    adrp    x3, __rela_end
    add     x3, x3, :lo12:__rela_end
    mov     x22, #0
6:  cmp     x2, x3
    b.hs    7f
    ldp     x4, x5, [x2], #16           // r_offset, r_info
    ldr     x6, [x2], #8                // r_addend
    cmp     x5, #1027                   // R_AARCH64_RELATIVE, symbol 0
    b.eq    8f
    add     x22, x22, #1
    b       6b
8:  add     x6, x6, x1
    str     x6, [x4, x1]
    b       6b
7:  ret

    // UEFI entry (PE AddressOfEntryPoint): x0 = ImageHandle, x1 =
    // SystemTable, MMU and caches on (identity map), on the firmware's stack.
    // hv is not relocated yet, and cannot be here: the firmware maps hv's
    // image read-only (edk2's image protection). hv_efi_main needs no
    // relocation (efi.rs); hv relocates itself once the MMU is off.
    .global hv_efi_entry
hv_efi_entry:
    stp     x29, x30, [sp, #-32]!
    mov     x29, sp
    stp     x19, x20, [sp, #16]
    sub     sp, sp, #16
    mov     x2, sp                      // where hv_efi_main puts the copy's address
    bl      hv_efi_main                 // the DTB, boot services exited; 0: give up
    ldr     x20, [sp]
    add     sp, sp, #16
    cbnz    x0, 1f
    ldp     x19, x20, [sp, #16]
    ldp     x29, x30, [sp], #32
    mov     x0, #3                      // EFI_UNSUPPORTED
    orr     x0, x0, #(1 << 63)
    ret
1:  msr     daifset, #0xf               // the firmware is gone: this CPU is hv's
    mov     x19, x0
    // Clean hv's copy (written through the cache) and the DTB to the point
    // of coherency: hv reads and writes both with the MMU and caches off
    // next, and invalidates its image's lines when it turns its MMU on.
    adrp    x0, __image_start
    add     x0, x0, :lo12:__image_start
    adrp    x1, __image_end
    add     x1, x1, :lo12:__image_end
    sub     x1, x1, x0
    mov     x0, x20
    add     x1, x1, x20
    bl      hv_dcache_clean_inval
    ldr     w1, [x19, #4]               // DTB totalsize (big-endian)
    rev     w1, w1
    mov     x0, x19
    add     x1, x0, x1
    bl      hv_dcache_clean_inval
    ic      iallu                       // no stale instructions once fetches are uncached
    dsb     sy                          // maintenance complete before the MMU goes off
    isb
    // hv_primary_entry in the copy.
    adrp    x4, hv_primary_entry
    add     x4, x4, :lo12:hv_primary_entry
    adrp    x5, _start
    add     x5, x5, :lo12:_start
    sub     x4, x4, x5
    add     x20, x20, x4
    // MMU and D-cache off at the current EL, as Xen's efi_xen_start (the map
    // is the identity, so execution goes on at the same addresses).
    mrs     x0, CurrentEL
    cmp     x0, #(2 << 2)
    b.ne    2f
    mrs     x0, sctlr_el2
    bic     x0, x0, #1                  // M
    bic     x0, x0, #(1 << 2)           // C
    msr     sctlr_el2, x0
    isb
    b       3f
2:  mrs     x0, sctlr_el1
    bic     x0, x0, #1
    bic     x0, x0, #(1 << 2)
    msr     sctlr_el1, x0
    isb
3:  mov     x0, x19                     // booting.rst: x0 = DTB, x1..x3 = 0
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    br      x20

    // Clean and invalidate the D-cache over [x0, x1) to the point of
    // coherency. Clobbers x0, x2..x4.
hv_dcache_clean_inval:
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4
    mov     x2, #4
    lsl     x2, x2, x3                  // D-cache line size in bytes
    sub     x4, x2, #1
    bic     x0, x0, x4
1:  dc      civac, x0
    add     x0, x0, x2
    cmp     x0, x1
    b.lo    1b
    dsb     sy                          // the cleaning is complete
    ret

    // Secondary CPUs arrive here from PSCI CPU_ON with the MMU off and
    // x0 = context_id = this CPU's PerCpu entry (boot.rs). The entry is read
    // only once the MMU is on (the boot CPU wrote it through its caches).
    .global hv_secondary_entry
hv_secondary_entry:
    msr     daifset, #0xf
    mov     x19, x0
    bl      hv_el2_early
    adrp    x1, {mmu_config}
    add     x1, x1, :lo12:{mmu_config}
    ldp     x2, x3, [x1]
    ldp     x4, x5, [x1, #16]
    msr     mair_el2, x2
    msr     tcr_el2, x3
    msr     ttbr0_el2, x4
    isb                                 // translation registers in place before the flush
    tlbi    alle2                       // nothing stale from firmware for the EL2&0 regime
    dsb     nsh                         // ... completed on this PE
    isb
    msr     sctlr_el2, x5
    isb                                 // MMU on for what follows
    ldr     x1, [x19, #{pc_stack_top}]
    mov     sp, x1
    mov     x0, x19
    bl      hv_boot_secondary
    b       hv_park

    // Per-CPU EL2 set-up that must precede any Rust code: HCR_EL2.E2H (VHE)
    // if the CPU has FEAT_VHE, FP/SIMD untrapped, SCTLR_EL2 with the MMU off,
    // and VBAR_EL2. Returns ID_AA64MMFR1_EL1.VH in x0. Clobbers x1.
hv_el2_early:
    mrs     x0, ID_AA64MMFR1_EL1
    ubfx    x0, x0, #8, #4
    cbz     x0, 1f
    mov     x1, #(1 << 31)              // HCR_EL2.RW: EL1 is AArch64
    orr     x1, x1, #(1 << 34)          // HCR_EL2.E2H: VHE, before the MMU
    msr     hcr_el2, x1
    isb                                 // E2H changes the layout of CPTR/SCTLR/TCR_EL2
    mov     x1, #(3 << 20)              // CPTR_EL2 (CPACR layout): FPEN = 0b11
    msr     cptr_el2, x1
    b       2f
1:  mov     x1, #0x33ff                 // CPTR_EL2 (E2H = 0 layout): RES1, TFP = 0
    msr     cptr_el2, x1
2:  movz    x1, #0x0830
    movk    x1, #0x30c5, lsl #16        // SCTLR_EL2: RES1 bits, MMU and caches off, LE
    msr     sctlr_el2, x1
    adrp    x1, hv_vectors
    add     x1, x1, :lo12:hv_vectors
    msr     vbar_el2, x1
    msr     tpidr_el2, xzr              // no per-CPU data yet (reset value is UNKNOWN)
    isb
    ret

    // hv_mmu_enable(cfg: *const [u64; 4] = [mair, tcr, ttbr0, sctlr], inv_start, inv_end)
    .global hv_mmu_enable
hv_mmu_enable:
    // hv wrote its image (bss, stacks, page tables) with the D-cache off:
    // drop any stale line over it so the cached view matches memory.
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4
    mov     x4, #4
    lsl     x4, x4, x3                  // D-cache line size in bytes
    sub     x5, x4, #1
    bic     x1, x1, x5
1:  dc      ivac, x1
    add     x1, x1, x4
    cmp     x1, x2
    b.lo    1b
    dsb     sy                          // invalidation complete before the MMU uses the tables
    ldp     x2, x3, [x0]
    ldp     x4, x5, [x0, #16]
    msr     mair_el2, x2
    msr     tcr_el2, x3
    msr     ttbr0_el2, x4
    isb                                 // translation registers in place before the flush
    tlbi    alle2                       // nothing stale from firmware for the EL2&0 regime
    dsb     nsh                         // ... completed on this PE
    isb
    msr     sctlr_el2, x5
    isb                                 // MMU on for what follows
    ret

    .global hv_park
hv_park:
    msr     daifset, #0xf
1:  wfe
    b       1b

    // ---- Exception vectors -------------------------------------------------
    // Current EL (hv's own faults): build a TrapFrame and report.
    // If the frame would land in the stack's guard page (a stack overflow),
    // switch to the emergency stack first. SP_EL0 is free scratch while hv
    // runs (the guest's value lives in GuestGprs).
    .macro  HV_FAULT kind
    .balign 0x80
    msr     sp_el0, x0
    mov     x0, sp
    sub     x0, x0, #{frame_size}
    and     x0, x0, #({stack_size} - 1)
    cmp     x0, #{guard}
    b.hs    1f
    adrp    x0, __emergency_stack_top
    add     x0, x0, :lo12:__emergency_stack_top
    mov     sp, x0
1:  mrs     x0, sp_el0
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp]
    mov     x1, #\kind
    b       hv_el2_fault
    .endm
    // Lower EL (guest exits): save the guest and return from hv_guest_enter.
    .macro  HV_EXIT kind
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\kind
    b       hv_guest_exit
    .endm

    .balign 0x800
    .global hv_vectors
hv_vectors:
    HV_FAULT 0      // current EL, SP_EL0: sync
    HV_FAULT 1      //   irq
    HV_FAULT 2      //   fiq
    HV_FAULT 3      //   serror
    HV_FAULT 0      // current EL, SP_ELx: sync
    HV_FAULT 1
    HV_FAULT 2
    HV_FAULT 3
    HV_EXIT 0       // lower EL, AArch64: sync
    HV_EXIT 1       //   irq
    HV_EXIT 2       //   fiq
    HV_EXIT 3       //   serror
    HV_EXIT 0       // lower EL, AArch32
    HV_EXIT 1
    HV_EXIT 2
    HV_EXIT 3

hv_el2_fault:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    add     x2, sp, #{frame_size}
    stp     x30, x2, [sp, #240]         // x30, sp before the exception
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [sp, #256]
    mrs     x2, esr_el2
    mrs     x3, far_el2
    stp     x2, x3, [sp, #272]
    mov     x0, sp
    bl      hv_el2_exception            // never returns
    b       hv_park

    // hv_guest_enter(gprs: *mut GuestGprs, exit: *mut ExitRecord)
    .global hv_guest_enter
hv_guest_enter:
    sub     sp, sp, #160
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x2, tpidr_el2
    str     x0, [x2, #{pc_gprs}]
    str     x1, [x2, #{pc_exit}]
    add     x3, x2, #{pc_fp}            // the loaded vCPU's FP/SIMD state
    ldp     q0, q1, [x3, #0]
    ldp     q2, q3, [x3, #32]
    ldp     q4, q5, [x3, #64]
    ldp     q6, q7, [x3, #96]
    ldp     q8, q9, [x3, #128]
    ldp     q10, q11, [x3, #160]
    ldp     q12, q13, [x3, #192]
    ldp     q14, q15, [x3, #224]
    ldp     q16, q17, [x3, #256]
    ldp     q18, q19, [x3, #288]
    ldp     q20, q21, [x3, #320]
    ldp     q22, q23, [x3, #352]
    ldp     q24, q25, [x3, #384]
    ldp     q26, q27, [x3, #416]
    ldp     q28, q29, [x3, #448]
    ldp     q30, q31, [x3, #480]
    add     x3, x3, #512
    ldp     x4, x5, [x3]                // fpsr, fpcr
    msr     fpsr, x4
    msr     fpcr, x5
    ldp     x2, x3, [x0, #{g_pc}]
    msr     elr_el2, x2
    msr     spsr_el2, x3
    ldr     x2, [x0, #{g_sp_el0}]
    msr     sp_el0, x2
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret
    dsb     nsh                         // no speculation past the eret
    isb

hv_guest_exit:
    // sp = hv's stack as hv_guest_enter left it, guest x0/x1 pushed on it.
    mrs     x0, tpidr_el2
    ldr     x0, [x0, #{pc_gprs}]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #0]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [x0, #{g_pc}]
    mrs     x2, sp_el0
    str     x2, [x0, #{g_sp_el0}]
    mrs     x5, tpidr_el2
    ldr     x0, [x5, #{pc_exit}]
    mrs     x2, esr_el2
    mrs     x3, far_el2
    // HPFAR_EL2 only for a synchronous instruction/data abort from the guest
    // (EC 0x20/0x24), the only exits that use it: nested under KVM (FEAT_NV2)
    // ESR/FAR/ELR/SPSR_EL2 are redirected to registers but an HPFAR_EL2 read
    // traps to L0 (a second trap on every hypercall before).
    mov     x4, xzr
    cbnz    x1, 2f                      // IRQ/FIQ/SError: ESR is not this exit's
    ubfx    x6, x2, #26, #6             // ESR_EL2.EC
    cmp     x6, #0x20
    b.eq    1f
    cmp     x6, #0x24
    b.ne    2f
1:  mrs     x4, hpfar_el2
2:  stp     x1, x2, [x0, #0]            // vector, esr
    stp     x3, x4, [x0, #16]           // far, hpfar
    add     x3, x5, #{pc_fp}
    stp     q0, q1, [x3, #0]
    stp     q2, q3, [x3, #32]
    stp     q4, q5, [x3, #64]
    stp     q6, q7, [x3, #96]
    stp     q8, q9, [x3, #128]
    stp     q10, q11, [x3, #160]
    stp     q12, q13, [x3, #192]
    stp     q14, q15, [x3, #224]
    stp     q16, q17, [x3, #256]
    stp     q18, q19, [x3, #288]
    stp     q20, q21, [x3, #320]
    stp     q22, q23, [x3, #352]
    stp     q24, q25, [x3, #384]
    stp     q26, q27, [x3, #416]
    stp     q28, q29, [x3, #448]
    stp     q30, q31, [x3, #480]
    mrs     x4, fpsr
    mrs     x5, fpcr
    add     x3, x3, #512
    stp     x4, x5, [x3]                // fpsr, fpcr
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #160
    ret
"#,
    stack_size = const STACK_SIZE,
    guard = const super::GUARD_SIZE,
    frame_size = const core::mem::size_of::<TrapFrame>(),
    mmu_config = sym super::mmu::HV_MMU_CONFIG,
    pc_gprs = const offset_of!(PerCpu, gprs),
    pc_exit = const offset_of!(PerCpu, exit),
    pc_fp = const offset_of!(PerCpu, fp),
    pc_stack_top = const offset_of!(PerCpu, stack_top),
    g_pc = const offset_of!(GuestGprs, pc),
    g_sp_el0 = const offset_of!(GuestGprs, sp_el0),
);

// The assembly above hard-codes these layouts.
const _: () = {
    assert!(offset_of!(GuestGprs, x) == 0);
    assert!(offset_of!(GuestGprs, pstate) == offset_of!(GuestGprs, pc) + 8);
    assert!(offset_of!(FpState, fpsr) == 512);
    assert!(offset_of!(FpState, fpcr) == 520);
    assert!(offset_of!(ExitRecord, vector) == 0);
    assert!(offset_of!(ExitRecord, esr) == 8);
    assert!(offset_of!(ExitRecord, far) == 16);
    assert!(offset_of!(ExitRecord, hpfar) == 24);
    assert!(offset_of!(PerCpu, fp) % 16 == 0);
    assert!(core::mem::size_of::<TrapFrame>() == 288);
};

/// What `hv_el2_fault` saves for an exception hv takes at EL2 itself.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// x0..x30.
    pub x: [u64; 31],
    /// `SP` before the exception.
    pub sp: u64,
    /// `ELR_EL2`.
    pub elr: u64,
    /// `SPSR_EL2`.
    pub spsr: u64,
    /// `ESR_EL2`.
    pub esr: u64,
    /// `FAR_EL2`.
    pub far: u64,
}

extern "C" {
    /// Turn the EL2 MMU on with `cfg = [mair, tcr, ttbr0, sctlr]` after
    /// invalidating the data cache over `[inv_start, inv_end)`.
    pub fn hv_mmu_enable(cfg: *const [u64; 4], inv_start: usize, inv_end: usize);
    /// Run the guest described by `gprs` until its next exception to EL2.
    pub fn hv_guest_enter(gprs: *mut GuestGprs, exit: *mut ExitRecord);
    /// Entry point for secondary CPUs (PSCI CPU_ON).
    pub fn hv_secondary_entry();
    /// Mask all interrupts and wait forever.
    pub fn hv_park() -> !;
    /// First byte of hv's image (linker script).
    pub static __image_start: u8;
    /// One past hv's image, stacks included (linker script).
    pub static __image_end: u8;
    /// The boot CPU's stack, [`STACK_SIZE`] bytes (linker script).
    pub static __stacks_start: u8;
}
