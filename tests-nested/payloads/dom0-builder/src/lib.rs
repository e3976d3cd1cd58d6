//! The control-domain (dom0 role) payload of hv: the portable parts.
//!
//! The payload binary (`src/main.rs`, built for `aarch64-unknown-none`) runs
//! as hv's domain 0 and builds domUs the way Xen's toolstack (`xl create`
//! through libxl/libxenguest and Linux privcmd) does, with Xen's ABI:
//!
//! 1. `domctl` createdomain (1), max_vcpus (15), max_mem (11);
//!    `memory_op(XENMEM_populate_physmap)` of the domU's RAM at
//!    `GUEST_RAM0_BASE` in order-9 (2 MiB) extents where they fit, order 0
//!    for the rest and for any extent hv could not give (partial success);
//! 2. maps every domU page it must write, and the rest of each 2 MiB extent
//!    of the domU's RAM at least half of which it writes (`layout::MapList`),
//!    into its own physmap with
//!    `XENMEM_add_to_physmap_batch` (`XENMAPSPACE_gmfn_foreign`) in chunks of
//!    at most `map-chunk` pages ending on 2 MiB boundaries, each domU page at
//!    [`FOREIGN_WINDOW_GFN`] + its offset in the domU's RAM (IPA 4 GiB up,
//!    just above Xen's guest RAM bank 0 and below bank 1: free in every
//!    domain's physmap; the window keeps the domU's 2 MiB alignment, so hv
//!    maps each extent as one 2 MiB stage-2 block), and copies the kernel Image (at RAM base +
//!    text_offset), the initrd and a DTB it writes (placement of
//!    `xg_dom_arm.c`) into them;
//! 3. unmaps them: variant `single` with one `XENMEM_remove_from_physmap` per
//!    page (what Linux's privcmd does for the toolstack, the seed's path),
//!    variant `batch` with hv's `XENMEM_remove_from_physmap_batch` (63) in
//!    chunks of `unmap-chunk`, checking every `errs[]` entry;
//! 4. `domctl` setvcpucontext (PC = kernel entry, x0 = DTB, EL1h with DAIF
//!    masked, MMU off) and, unless `noboot`, unpausedomain; it then yields
//!    (`SCHEDOP_yield`) and polls getdomaininfo (5) until the domU has shut
//!    down, and destroys it (destroydomain, 2).
//!
//! Per variant it prints one machine-parsable line (the runner asserts on it):
//!
//! ```text
//! dom0: variant=batch pages=21 build_ticks=1234 build_us=1234 tlbi: IPAS2E1IS=0 RIPAS2E1IS=1 VMALLE1IS=1 VMALLE1=0 VMALLS12E1IS=0 VMALLS12E1=0 ALLE1IS=0 IC_IALLU=0 total=2 p2m_ops=.. plans=.. exits=.. hypercalls=..
//! ```
//!
//! `pages` = domU pages mapped (those written, and the rest of their mostly
//! written 2 MiB extents) and removed again; `build_*` = createdomain through
//! setvcpucontext, in CNTVCT ticks and microseconds (CNTFRQ); the counters are
//! hv's (`hv_op` 49, `HVOP_reset_counters` before the build,
//! `HVOP_get_counters` after setvcpucontext), `total` = every TLBI kind
//! (`IC_IALLU` is not a TLBI and not in the total). The destroy of each domU
//! prints `dom0: destroy variant=.. ` with the counters of the destroy alone.
//! When hv_op is refused the line says `tlbi: unavailable(<errno>)`.
//!
//! # Command line (`/chosen/bootargs` of the control domain)
//!
//! | word | meaning |
//! |---|---|
//! | `dom0` | makes hv treat the module as the control domain |
//! | `mem=<n>M` | hv's: the control domain's own RAM (ignored here) |
//! | `variant=single\|batch\|both\|none` | build variants to run (default `both`, single first) |
//! | `domu-mem=<n>[K\|M\|G]` | domU RAM, whole MiB (default 16M) |
//! | `pages=<n>` | write at least n pages: extra domU RAM pages are zero-filled (benchmark size knob) |
//! | `map-chunk=<n>` | pages per add_to_physmap_batch (default 1024, max 65535) |
//! | `unmap-chunk=<n>` | pages per remove_from_physmap_batch (default 8192) |
//! | `noboot` | build and destroy without running the domU (the realistic Linux workload) |
//! | `xen-node` | add Xen's `/hypervisor` node to the domU DTB |
//! | `timeout-ms=<n>` | how long to wait for a domU to shut down (default 60000) |
//! | `verify` | read every written page back before unmapping and compare it with its source (`dom0: verify: <n> pages match`); the time adds to build_us |
//! | `negative-tests` | bad-input checks, one `dom0: negative: <name>: PASS\|FAIL` line each |
//! | `heap-exhaust` | foreign-map one page of a 2 MiB domU at successive window gfns until hv answers -ENOMEM (`dom0: heap-exhaust: mapped=<n> first_error=<rc>`), unmap them all, build a domU again; `dom0: negative: heap exhaustion -> -ENOMEM, hv keeps running: PASS\|FAIL` |
//! | `stale-test=single\|batch` | after removing a foreign page, read it: hv must end d0 with a stage-2 fault; `dom0: STALE READ SUCCEEDED` otherwise. Runs last |
//! | `destroy-loop=<n>` | the soak: one warm-up and n rounds of create, populate, an interdomain event channel to d0, destroy; free pages (XEN_SYSCTL_physinfo) and `HVOP_get_resources` (frames, VMIDs, domains, event channels, heap) back at their start values; d0's end of each channel unbound after the destroy |
//! | `create-flood=<n>` | createdomain with flags 0xffffffff must get -EINVAL; then twice up to n empty domains at once until hv refuses (an errno, never a panic), all destroyed; after the second, resources back where the first left them |
//! | `foreign-domid=<n>` | negative and stale tests use existing domain n (RAM at GUEST_RAM0_BASE, e.g. a boot-module domU) instead of creating a 2 MiB domU; it is not destroyed. It must still exist when the checks run (a boot-module guest that already shut down gives -ESRCH): a development aid for hv trees without domctl |
//! | `-- <args>` | everything after ` -- ` is the domU's `/chosen/bootargs` |
//!
//! The images come from the control domain's initrd, an "images blob"
//! (DESIGN.md): `kernel` (required for the variants) and `initrd` (optional).
//! The run ends with `dom0: RESULT PASS` or `dom0: RESULT FAIL (<n> failures)`
//! and `SCHEDOP_shutdown(poweroff)`.
//!
//! `run-qemu.sh` (next to this crate's Cargo.toml) builds hv and the payloads,
//! writes the images blob and DTB, and runs one configuration under QEMU.
//!
//! The control domain runs with its MMU off: data accesses are Device-nGnRnE,
//! so every access is naturally aligned (the target has `+strict-align`) and
//! copies go a u64 at a time between 8-byte aligned addresses.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod abi;
pub mod args;
pub mod blob;
pub mod fdt;
pub mod fdtw;
pub mod image;
pub mod layout;
pub mod report;

/// First gfn of the control domain's window for foreign mappings: IPA 4 GiB
/// (`GUEST_RAM0_BASE + GUEST_RAM0_SIZE`), up to 1M pages below
/// `GUEST_RAM1_BASE` (8 GiB).
pub const FOREIGN_WINDOW_GFN: u64 = 0x1_0000_0000 >> 12;
/// Pages in the foreign-mapping window.
pub const FOREIGN_WINDOW_PAGES: u64 = 0x1_0000_0000 >> 12;
