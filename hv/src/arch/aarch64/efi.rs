//! hv started as a UEFI application (the PE/COFF header in `head.rs`, as
//! Linux's and Xen's arm64 Images carry): by the firmware directly
//! (`\EFI\BOOT\BOOTAA64.EFI`) or by GRUB's `xen_hypervisor` (GRUB 2.12 starts
//! the hypervisor with `LoadImage`/`StartImage` after installing its DTB,
//! with the `/chosen/module@` nodes of `xen_module`, as the DTB
//! configuration table).
//!
//! `hv_efi_entry` (asm) calls [`hv_efi_main`] on the firmware's stack, MMU
//! and caches on (UEFI 2.10, 2.3.6 AArch64 platforms: identity-mapped). It
//! finds the DTB in the configuration tables, exits boot services, and
//! returns the DTB's address. The firmware may place hv at any 4 KiB
//! boundary (the PE section alignment GRUB's `xen_boot` can cope with), but
//! hv's stack guard needs 64 KiB: so, before exiting boot services, hv
//! copies its file to a 64 KiB-aligned `AllocatePages` block (as Linux's EFI
//! stub moves its kernel). The asm then cleans that copy and the DTB to
//! the point of coherency, turns the MMU and D-cache off (as Xen's
//! `efi_xen_start` does) and enters the copy's normal boot path
//! (`hv_primary_entry`, which relocates hv) with x0 = the DTB. Where the firmware offers only
//! ACPI, hv says so on the firmware console and returns `EFI_UNSUPPORTED`.
//!
//! This code runs **before hv is relocated**, and hv's image is read-only
//! then (edk2 maps a loaded image so): it must not write to hv's statics and
//! must not use any absolute address stored in hv's data (no `dyn`, no
//! formatting, no tables of pointers): only PC-relative addresses (code,
//! string and GUID constants), the stack, and firmware memory (the memory
//! map buffer comes from `AllocatePool`).

/// `EFI_SUCCESS`.
const SUCCESS: usize = 0;
/// `EFI_BUFFER_TOO_SMALL`.
const BUFFER_TOO_SMALL: usize = (1 << 63) | 5;

/// `EFI_DTB_TABLE_GUID` b1b621d5-f19c-41a5-830b-d9152c69aae0, in memory order.
const DTB_GUID: [u8; 16] = [
    0xd5, 0x21, 0xb6, 0xb1, 0x9c, 0xf1, 0xa5, 0x41, 0x83, 0x0b, 0xd9, 0x15, 0x2c, 0x69, 0xaa, 0xe0,
];
/// `EFI_ACPI_20_TABLE_GUID` 8868e871-e4f1-11d3-bc22-0080c73c8881.
const ACPI20_GUID: [u8; 16] = [
    0x71, 0xe8, 0x68, 0x88, 0xf1, 0xe4, 0xd3, 0x11, 0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81,
];
/// `ACPI_TABLE_GUID` (ACPI 1.0) eb9d2d30-2d88-11d3-9a16-0090273fc14d.
const ACPI10_GUID: [u8; 16] = [
    0x30, 0x2d, 0x9d, 0xeb, 0x88, 0x2d, 0xd3, 0x11, 0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d,
];

// Byte offsets in the UEFI tables (UEFI 2.10, 4.3 and 4.4; 64-bit).
const ST_CON_OUT: usize = 64;
const ST_BOOT_SERVICES: usize = 96;
const ST_N_TABLES: usize = 104;
const ST_TABLES: usize = 112;
const BS_GET_MEMORY_MAP: usize = 56;
const BS_EXIT_BOOT_SERVICES: usize = 232;
const CON_OUTPUT_STRING: usize = 8;

const BS_ALLOCATE_PAGES: usize = 40;
const BS_ALLOCATE_POOL: usize = 64;
/// `AllocateAnyPages`.
const ALLOCATE_ANY_PAGES: u32 = 0;
/// `EfiLoaderData`.
const LOADER_DATA: u32 = 2;

/// Room for the firmware's memory map (QEMU's edk2 has ~100 descriptors of 48 bytes).
const MAP_BYTES: usize = 64 << 10;

type GetMemoryMap =
    extern "efiapi" fn(*mut usize, *mut u8, *mut usize, *mut usize, *mut u32) -> usize;
type ExitBootServices = extern "efiapi" fn(usize, usize) -> usize;
type AllocatePool = extern "efiapi" fn(u32, usize, *mut *mut u8) -> usize;
type AllocatePages = extern "efiapi" fn(u32, u32, usize, *mut u64) -> usize;

extern "C" {
    /// First byte of hv's image (linker script).
    static __image_start: u8;
    /// End of hv's file contents (linker script); bss and stacks follow.
    static __image_file_end: u8;
    /// End of hv's image (linker script).
    static __image_end: u8;
}
type OutputString = extern "efiapi" fn(usize, *const u16) -> usize;

/// Read the 64-bit word at `base + off`.
///
/// # Safety
/// `base + off` is a readable, 8-byte aligned word of a firmware table.
unsafe fn word(base: usize, off: usize) -> usize {
    // SAFETY: per the contract.
    unsafe { ((base + off) as *const usize).read() }
}

/// Print `msg` (ASCII) on the firmware's console (`ConOut`), with CR LF.
///
/// # Safety
/// `systab` is the system table UEFI passed; boot services are active.
unsafe fn say(systab: usize, msg: &str) {
    // SAFETY: the system table's ConOut pointer (boot services active).
    let con = unsafe { word(systab, ST_CON_OUT) };
    if con == 0 {
        return;
    }
    // SAFETY: EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL.OutputString is its second member.
    let f = unsafe { word(con, CON_OUTPUT_STRING) };
    if f == 0 {
        return;
    }
    // SAFETY: a firmware function pointer of the OutputString type.
    let f: OutputString = unsafe { core::mem::transmute(f) };
    let mut buf = [0u16; 256];
    for (slot, b) in buf.iter_mut().zip(msg.bytes().chain(*b"\r\n")).take(255) {
        *slot = u16::from(b);
    }
    f(con, buf.as_ptr());
}

/// Called by `hv_efi_entry` (hv not relocated): find the DTB, copy hv to a
/// 64 KiB-aligned block (its address in `*copy`), exit boot services, and
/// return the DTB's address; 0 if hv cannot go on (it has said why on the
/// firmware console, and returns `EFI_UNSUPPORTED` to it).
///
/// # Safety
/// Called once by `hv_efi_entry` with UEFI's `ImageHandle` and
/// `SystemTable`, and `copy` writable.
#[no_mangle]
unsafe extern "C" fn hv_efi_main(image: usize, systab: usize, copy: *mut u64) -> u64 {
    // SAFETY: UEFI's system table (its layout: UEFI 2.10, 4.3).
    let n = unsafe { word(systab, ST_N_TABLES) };
    // SAFETY: as above.
    let tables = unsafe { word(systab, ST_TABLES) };
    let (mut dtb, mut acpi) = (0usize, false);
    for i in 0..n {
        let e = tables + i * 24;
        // SAFETY: EFI_CONFIGURATION_TABLE entries are {EFI_GUID, VOID*}, 24 bytes.
        let guid: [u8; 16] = unsafe { (e as *const [u8; 16]).read() };
        if guid == DTB_GUID {
            // SAFETY: as above.
            dtb = unsafe { word(e, 16) };
        } else if guid == ACPI20_GUID || guid == ACPI10_GUID {
            acpi = true;
        }
    }
    if dtb == 0 {
        let msg = if acpi {
            "hv: ERROR: the firmware offers only ACPI (no device tree in the UEFI configuration tables); hv needs a DTB (QEMU: -M virt,acpi=off); stopping"
        } else {
            "hv: ERROR: no device tree in the UEFI configuration tables; stopping"
        };
        // SAFETY: boot services are still active.
        unsafe { say(systab, msg) };
        return 0;
    }
    // SAFETY: boot services are active; this is the firmware's table.
    unsafe { say(systab, "hv: UEFI: device tree found, exiting boot services") };
    // SAFETY: the system table's BootServices pointer.
    let bs = unsafe { word(systab, ST_BOOT_SERVICES) };
    // SAFETY (the reads and transmutes below): EFI_BOOT_SERVICES members (UEFI
    // 2.10, 4.4) are firmware function pointers of these types.
    // SAFETY: see above.
    let w = unsafe { word(bs, BS_GET_MEMORY_MAP) };
    // SAFETY: see above.
    let get_map = unsafe { core::mem::transmute::<usize, GetMemoryMap>(w) };
    // SAFETY: see above.
    let w = unsafe { word(bs, BS_EXIT_BOOT_SERVICES) };
    // SAFETY: see above.
    let exit_bs = unsafe { core::mem::transmute::<usize, ExitBootServices>(w) };
    // SAFETY: see above.
    let w = unsafe { word(bs, BS_ALLOCATE_POOL) };
    // SAFETY: see above.
    let alloc = unsafe { core::mem::transmute::<usize, AllocatePool>(w) };
    // SAFETY: see above.
    let w = unsafe { word(bs, BS_ALLOCATE_PAGES) };
    // SAFETY: see above.
    let pages = unsafe { core::mem::transmute::<usize, AllocatePages>(w) };
    let mut map: *mut u8 = core::ptr::null_mut();
    if alloc(LOADER_DATA, MAP_BYTES, &mut map) != SUCCESS || map.is_null() {
        // SAFETY: boot services are active.
        unsafe { say(systab, "hv: ERROR: UEFI AllocatePool failed; stopping") };
        return 0;
    }
    // The copy: the whole image's size, 64 KiB aligned (STACK_SIZE).
    let start = core::ptr::addr_of!(__image_start) as usize;
    let file = core::ptr::addr_of!(__image_file_end) as usize - start;
    let size = core::ptr::addr_of!(__image_end) as usize - start;
    let align = super::STACK_SIZE;
    let mut block = 0u64;
    if pages(
        ALLOCATE_ANY_PAGES,
        LOADER_DATA,
        (size + align) >> 12,
        &mut block,
    ) != SUCCESS
    {
        // SAFETY: boot services are active.
        unsafe { say(systab, "hv: ERROR: UEFI AllocatePages failed; stopping") };
        return 0;
    }
    let dst = (block as usize).next_multiple_of(align);
    // SAFETY: [start, start + file) is hv's loaded file (readable);
    // [dst, dst + size) lies in the block just allocated for it.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, dst as *mut u8, file) };
    // SAFETY: `copy` is the caller's slot.
    unsafe { copy.write(dst as u64) };
    let mut map: *mut u8 = core::ptr::null_mut();
    if alloc(LOADER_DATA, MAP_BYTES, &mut map) != SUCCESS || map.is_null() {
        // SAFETY: boot services are active.
        unsafe { say(systab, "hv: ERROR: UEFI AllocatePool failed; stopping") };
        return 0;
    }
    // ExitBootServices wants the key of the current map; a map that changed
    // in between (an event) makes it fail once: get the map again and retry.
    for _ in 0..2 {
        let (mut size, mut key, mut desc, mut ver) = (MAP_BYTES, 0usize, 0usize, 0u32);
        let st = get_map(&mut size, map, &mut key, &mut desc, &mut ver);
        if st == BUFFER_TOO_SMALL || st != SUCCESS {
            // SAFETY: boot services still active (the call failed).
            unsafe { say(systab, "hv: ERROR: UEFI GetMemoryMap failed; stopping") };
            return 0;
        }
        if exit_bs(image, key) == SUCCESS {
            return dtb as u64;
        }
    }
    // After a failed ExitBootServices only GetMemoryMap/ExitBootServices may
    // be called (UEFI 2.10, 7.4): nothing can be printed.
    0
}
