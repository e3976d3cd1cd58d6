//! What hv learns from the device tree at boot.
//!
//! [`BootInfo::parse`] runs before the heap exists (with the MMU still off on
//! the boot CPU), so everything is kept in fixed-capacity arrays
//! ([`FixedVec`]) and strings borrow the DTB. It never panics on a malformed
//! DTB: the `fdt` crate's panicking conveniences (`chosen()`, `memory()`,
//! `cpus()`, `bootargs()`) are avoided and `reg` cells are decoded here.
//!
//! Boot modules follow Xen 4.20's binding (docs/misc/arm/device-tree/booting.txt,
//! xen/common/device-tree/bootfdt.c `early_scan_node`, `process_multiboot_node`,
//! `process_chosen_node`, `boot_fdt_cmdline`; xen/common/device-tree/bootinfo.c
//! `add_boot_module`, `boot_module_find_by_kind`): module nodes under `/chosen`
//! (`/chosen/module@ADDR`, or one level deeper as U-Boot scripts write
//! `/chosen/modules/module@0`) with `compatible = "multiboot,kernel"` /
//! `"multiboot,ramdisk"` / `"multiboot,module"` (or the Xen 4.4 names),
//! `reg = <addr size>` in the parent's cells and an optional `bootargs`.
//!
//! **dom0** ([`BootInfo::dom0`], Xen's rule): the first kernel module that is not
//! inside a `xen,domain` node is dom0's kernel; dom0's initrd is the first
//! such ramdisk module (or `/chosen` `linux,initrd-start`/`-end`, which Xen reads
//! first); dom0's command line is `/chosen/xen,dom0-bootargs`, else the kernel
//! module's non-empty `bootargs`, else `/chosen/bootargs` (xen/arch/arm/domain_build.c
//! `write_properties`). hv's own command line ([`BootInfo::cmdline`]) is
//! `xen,xen-bootargs`, else `bootargs` when `xen,dom0-bootargs` or dom0's module
//! `bootargs` exist (`boot_fdt_cmdline`); **hv extension**: else hv still reads
//! `/chosen/bootargs` for its own words ([`CmdlineFrom::SharedBootargs`]; Xen
//! would give it only to dom0, GRUB's `xen_hypervisor` writes hv's words there).
//!
//! **hv extension, module domains** ([`BootInfo::module_domains`]): every further
//! kernel module outside `xen,domain` nodes (Xen ignores them) is one more
//! unprivileged domain, with the ramdisk module that directly follows it. The
//! boot flow builds exactly these (`start::System::add_boot_domains`); hv's
//! old rule (the module whose bootargs hold the word `dom0` is d0) is gone.
//!
//! Xen's dom0less domains (`/chosen/domU*` nodes with `compatible = "xen,domain"`,
//! `memory` in KiB, `cpus`, and their own `multiboot,kernel` /
//! `multiboot,ramdisk` children, docs/misc/arm/device-tree/booting.txt
//! "Dom0less") are read into [`BootInfo::domus`].
//!
//! The `fdt` crate (0.1.5) mis-parses `FDT_NOP` tokens between properties,
//! which libfdt leaves behind when firmware (QEMU among them) edits a DTB in
//! place: [`strip_nops`] compacts the structure block first (the boot code
//! does that on the real DTB), and [`BootInfo::parse`] refuses a blob that
//! still has NOPs or a malformed token stream instead of reading garbage.

use crate::mm::MemRange;
use fdt::node::FdtNode;
use fdt::Fdt;
use pv_tlb::PhysAddr;

/// Maximum RAM ranges kept (more are ignored and counted).
pub const MAX_MEMORY: usize = 8;
/// Maximum reserved ranges (`/memreserve/` plus `/reserved-memory`); more is an error.
pub const MAX_RESERVED: usize = 16;
/// Maximum boot modules; more is an error.
pub const MAX_MODULES: usize = 8;
/// Maximum dom0less domains (`/chosen/domU*`); more is an error.
pub const MAX_DOMUS: usize = 4;
/// Maximum GICv3 redistributor regions.
pub const MAX_REDIST: usize = 4;

/// A vector with a fixed capacity `N` that lives on the stack.
#[derive(Clone, Copy, Debug)]
pub struct FixedVec<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> Default for FixedVec<T, N> {
    fn default() -> Self {
        Self {
            items: [T::default(); N],
            len: 0,
        }
    }
}

impl<T: Copy + Default, const N: usize> FixedVec<T, N> {
    /// Append `item`; gives it back if the vector is full.
    ///
    /// # Errors
    /// `Err(item)` when the vector already holds `N` items.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
                Ok(())
            }
            None => Err(item),
        }
    }
    /// The items pushed so far.
    #[must_use]
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }
    /// Number of items.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }
    /// True if empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Copy + Default + PartialEq, const N: usize> PartialEq for FixedVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// How PSCI calls reach the firmware (`/psci` `method`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PsciConduit {
    /// `HVC #0` (hv runs nested: the host hypervisor implements PSCI).
    Hvc,
    /// `SMC #0` (EL3 firmware implements PSCI).
    Smc,
}

/// What kind of boot module a `/chosen/module@` node is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ModuleKind {
    /// `multiboot,kernel` (also Xen's legacy `xen,linux-zimage`).
    #[default]
    Kernel,
    /// `multiboot,ramdisk` (also Xen's legacy `xen,linux-initrd`).
    Ramdisk,
    /// Only the generic `multiboot,module`, after the first two such
    /// modules (which are taken as the kernel and the ramdisk, as Xen does).
    Module,
}

/// One boot module, in Xen's `/chosen/module@ADDR` binding.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct BootModule<'a> {
    /// Physical address of the first byte.
    pub pa: PhysAddr,
    /// Size in bytes.
    pub size: u64,
    /// What the module is.
    pub kind: ModuleKind,
    /// The module's own `bootargs`, if any.
    pub bootargs: Option<&'a str>,
}

/// dom0's boot modules and command line, found by Xen's rule (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Dom0Boot<'a> {
    /// The first kernel module outside `xen,domain` nodes.
    pub kernel: BootModule<'a>,
    /// The first ramdisk outside `xen,domain` nodes (`/chosen`
    /// `linux,initrd-start`/`-end` first, as Xen reads `/chosen` before its children).
    pub ramdisk: Option<BootModule<'a>>,
    /// dom0's command line: `xen,dom0-bootargs`, else the kernel module's
    /// non-empty `bootargs`, else `/chosen/bootargs` (Xen's `write_properties`).
    pub bootargs: Option<&'a str>,
}

/// One domain built from `/chosen` modules ([`BootInfo::module_domains`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ModuleDomain<'a> {
    /// Its kernel.
    pub kernel: BootModule<'a>,
    /// Its initrd.
    pub ramdisk: Option<BootModule<'a>>,
    /// Its command line.
    pub bootargs: Option<&'a str>,
    /// dom0 (Xen's rule), else an hv-extension domain.
    pub dom0: bool,
}

/// Where hv's command line ([`BootInfo::cmdline`]) came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum CmdlineFrom {
    /// No command line for hv.
    #[default]
    Absent,
    /// `/chosen/xen,xen-bootargs`.
    XenBootargs,
    /// `/chosen/bootargs`, Xen's rule (dom0 has its own command line).
    Bootargs,
    /// hv extension: `/chosen/bootargs`, which Xen would give to dom0 only
    /// (no `xen,xen-bootargs`, `xen,dom0-bootargs` or dom0 module `bootargs`).
    SharedBootargs,
}

/// A dom0less domain: a `/chosen` child with `compatible = "xen,domain"`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DomUNode<'a> {
    /// The node's name (e.g. `domU1`).
    pub name: &'a str,
    /// `memory`: RAM in KiB (Xen reads a 64-bit value), if given.
    pub memory_kib: Option<u64>,
    /// `cpus`: number of vCPUs (default 1).
    pub cpus: u32,
    /// Its `multiboot,kernel` child (with the kernel's `bootargs`).
    pub kernel: BootModule<'a>,
    /// Its `multiboot,ramdisk` child, if any.
    pub ramdisk: Option<BootModule<'a>>,
}

/// The GICv3 found in the DTB (`arm,gic-v3`).
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub struct GicV3Info {
    /// Distributor (`GICD`) registers.
    pub dist: MemRange,
    /// Redistributor (`GICR`) regions.
    pub redist: FixedVec<MemRange, MAX_REDIST>,
}

/// The architected timer's interrupts (`arm,armv8-timer`), as GIC INTIDs.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TimerInfo {
    /// Secure EL1 physical timer.
    pub sec_phys: u32,
    /// Non-secure EL1 physical timer.
    pub phys: u32,
    /// EL1 virtual timer.
    pub virt: u32,
    /// EL2 physical timer.
    pub hyp_phys: u32,
    /// EL2 virtual timer (FEAT_VHE), if listed.
    pub hyp_virt: Option<u32>,
}

/// Where the console's name came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ConsoleFrom {
    /// Nothing named one: the first `arm,pl011`, if any.
    #[default]
    FirstPl011,
    /// `dtuart=` in hv's command line.
    Dtuart,
    /// `/chosen/stdout-path`.
    StdoutPath,
}

/// The console device asked for ([`BootInfo::console`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ConsoleChoice<'a> {
    /// Where the name came from.
    pub from: ConsoleFrom,
    /// The path or alias named (without `:options`); "" for
    /// [`ConsoleFrom::FirstPl011`].
    pub name: &'a str,
    /// The named node exists and is an enabled PL011, which became the
    /// console (else hv fell back to the first PL011).
    pub found: bool,
}

/// The value of the last `key=` word of `cmdline` (as Xen's string_param).
fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .rev()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Why the DTB could not be used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BootInfoError {
    /// The blob is not a flattened device tree (bad magic or truncated).
    NotADtb,
    /// No `device_type = "memory"` node with a usable `reg`.
    NoMemory,
    /// A node's `reg` could not be decoded.
    BadReg(&'static str),
    /// The structure block still holds `FDT_NOP` tokens: call [`strip_nops`] first.
    HasNops,
    /// More entries than hv has room for, where dropping some would be unsafe.
    TooMany {
        /// What overflowed.
        what: &'static str,
        /// The capacity.
        capacity: usize,
    },
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootInfoError::NotADtb => write!(f, "not a flattened device tree"),
            BootInfoError::NoMemory => write!(f, "no memory node"),
            BootInfoError::HasNops => write!(f, "FDT_NOP tokens left in the DTB"),
            BootInfoError::BadReg(what) => write!(f, "cannot decode reg of {what}"),
            BootInfoError::TooMany { what, capacity } => {
                write!(f, "more than {capacity} {what}")
            }
        }
    }
}

/// Everything hv needs from the DTB.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo<'a> {
    /// Size of the DTB blob in bytes (`totalsize`).
    pub dtb_size: usize,
    /// RAM ranges (`device_type = "memory"`).
    pub memory: FixedVec<MemRange, MAX_MEMORY>,
    /// RAM ranges that did not fit in [`BootInfo::memory`] (ignored).
    pub memory_ignored: usize,
    /// `/memreserve/` entries and `/reserved-memory` children with a `reg`.
    pub reserved: FixedVec<MemRange, MAX_RESERVED>,
    /// The PL011 console, found as Xen finds it: `dtuart=` in hv's command
    /// line (a path or an alias, `:options` ignored), else `/chosen`
    /// `stdout-path`; else (nothing named, or not found) the first `arm,pl011`.
    pub uart: Option<MemRange>,
    /// Which device was asked for as the console and whether it was used.
    pub console: ConsoleChoice<'a>,
    /// The GICv3.
    pub gic: Option<GicV3Info>,
    /// The architected timer.
    pub timer: Option<TimerInfo>,
    /// The PSCI conduit.
    pub psci: Option<PsciConduit>,
    /// The CPUs (`/cpus/cpu@*` `reg` = MPIDR affinity), in DTB order: as
    /// many as the DTB has (no fixed limit; read from the DTB on demand).
    pub cpus: CpuList<'a>,
    /// hv's command line (see the module docs and [`BootInfo::cmdline_from`]), else "".
    pub cmdline: &'a str,
    /// Where [`BootInfo::cmdline`] came from.
    pub cmdline_from: CmdlineFrom,
    /// Boot modules outside `xen,domain` nodes, in DTB order (Xen drops a
    /// second module of the same kind at the same address; so does hv).
    pub modules: FixedVec<BootModule<'a>, MAX_MODULES>,
    /// dom0, by Xen's rule (`None`: no kernel module outside `xen,domain` nodes).
    pub dom0: Option<Dom0Boot<'a>>,
    /// Dom0less domains, in DTB order (their modules are not in [`BootInfo::modules`]).
    pub domus: FixedVec<DomUNode<'a>, MAX_DOMUS>,
    /// The root node's raw `compatible` (NUL-separated), for `nested-detect`'s DT hints.
    pub root_compatible: &'a [u8],
    /// A `/hypervisor` node exists (Xen's guest binding).
    pub hypervisor_node: bool,
}

// Structure-block tokens (Devicetree Specification v0.4, 5.4.1); the guest
// DTB writer (`domain::dtb`) uses the same ones.
pub(crate) const FDT_BEGIN_NODE: u32 = 1;
pub(crate) const FDT_END_NODE: u32 = 2;
pub(crate) const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
pub(crate) const FDT_END: u32 = 9;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The token at `at` (before `end`) and its length including its payload.
fn token_at(dtb: &[u8], at: usize, end: usize) -> Result<(u32, usize), BootInfoError> {
    let bad = BootInfoError::NotADtb;
    let tok = be32(dtb, at).filter(|_| at < end).ok_or(bad)?;
    let len = match tok {
        FDT_BEGIN_NODE => {
            let name = dtb.get(at + 4..end).ok_or(bad)?;
            let n = name.iter().position(|&c| c == 0).ok_or(bad)?;
            4 + (n + 1).next_multiple_of(4)
        }
        FDT_END_NODE | FDT_NOP | FDT_END => 4,
        FDT_PROP => 12 + (be32(dtb, at + 4).ok_or(bad)? as usize).next_multiple_of(4),
        _ => return Err(bad),
    };
    if at.checked_add(len).is_none_or(|e| e > end) {
        return Err(bad);
    }
    Ok((tok, len))
}

/// Walk the structure block's tokens, calling `f(is_nop)` for each one;
/// checks the framing of the token stream (not the nesting). Returns the
/// block's offset.
fn scan_tokens(dtb: &[u8], mut f: impl FnMut(bool)) -> Result<usize, BootInfoError> {
    let bad = BootInfoError::NotADtb;
    let off = be32(dtb, 8).ok_or(bad)? as usize;
    let size = be32(dtb, 36).ok_or(bad)? as usize;
    let end = off
        .checked_add(size)
        .filter(|&e| e <= dtb.len())
        .ok_or(bad)?;
    let mut at = off;
    loop {
        let (tok, len) = token_at(dtb, at, end)?;
        f(tok == FDT_NOP);
        at += len;
        if tok == FDT_END {
            return Ok(off);
        }
    }
}

/// Deepest node nesting hv accepts (the QEMU and firmware DTBs it boots on
/// nest 4 levels; the `fdt` crate and [`walk`] recurse per level).
const MAX_DEPTH: usize = 32;

/// Check everything the `fdt` crate takes for granted, so that none of its
/// lookups can panic on a malformed blob (it `expect`s well-formed input):
/// the header's blocks lie inside `totalsize` (itself inside the blob), the
/// memory-reservation list ends inside the blob, the structure block is one
/// root node with properly nested nodes (properties before children, at
/// most [`MAX_DEPTH`] deep) followed by `FDT_END`, every node name is a
/// NUL-terminated UTF-8 string, and every property's name offset names a
/// NUL-terminated UTF-8 string inside the strings block. `FDT_NOP`s are
/// allowed anywhere a token may be (the caller rejects them separately).
fn validate(dtb: &[u8]) -> Result<(), BootInfoError> {
    let bad = BootInfoError::NotADtb;
    let hdr = |i: usize| be32(dtb, 4 * i).map(|v| v as usize).ok_or(bad);
    let total = hdr(1)?;
    let (off_struct, off_strings, off_rsv) = (hdr(2)?, hdr(3)?, hdr(4)?);
    let (size_strings, size_struct) = (hdr(8)?, hdr(9)?);
    if total > dtb.len() || total < 40 {
        return Err(bad);
    }
    let within = |off: usize, size: usize| off.checked_add(size).is_some_and(|e| e <= total);
    if !within(off_struct, size_struct) || !within(off_strings, size_strings) {
        return Err(bad);
    }
    // Memory reservations: 16-byte entries up to an all-zero one.
    let mut at = off_rsv;
    loop {
        if !within(at, 16) {
            return Err(bad);
        }
        if dtb[at..at + 16].iter().all(|&b| b == 0) {
            break;
        }
        at += 16;
    }
    let strings = &dtb[off_strings..off_strings + size_strings];
    let cstr_ok = |b: &[u8]| {
        b.iter()
            .position(|&c| c == 0)
            .is_some_and(|n| core::str::from_utf8(&b[..n]).is_ok())
    };
    let end = off_struct + size_struct;
    let mut at = off_struct;
    // Depth of open nodes; whether the innermost one has had a child yet.
    let mut depth = 0usize;
    let mut had_child = [false; MAX_DEPTH + 1];
    let mut seen_root = false;
    loop {
        let (tok, len) = token_at(dtb, at, end)?;
        match tok {
            FDT_BEGIN_NODE => {
                if (depth == 0 && seen_root) || depth == MAX_DEPTH || !cstr_ok(&dtb[at + 4..end]) {
                    return Err(bad);
                }
                had_child[depth] = true;
                depth += 1;
                had_child[depth] = false;
                seen_root = true;
            }
            FDT_END_NODE => depth = depth.checked_sub(1).ok_or(bad)?,
            FDT_PROP => {
                let nameoff = be32(dtb, at + 8).ok_or(bad)? as usize;
                if depth == 0 || had_child[depth] || !cstr_ok(strings.get(nameoff..).ok_or(bad)?) {
                    return Err(bad);
                }
            }
            FDT_END => {
                return if depth == 0 && seen_root {
                    Ok(())
                } else {
                    Err(bad)
                };
            }
            _ => {} // FDT_NOP
        }
        at += len;
    }
}

/// Check that `dtb` is a well-formed, NOP-free flattened device tree that the
/// `fdt` crate can walk without panicking (what [`BootInfo::parse`] checks
/// first; `crate::hostdt` reads the host DTB after the same check).
///
/// # Errors
/// [`BootInfoError::NotADtb`] or [`BootInfoError::HasNops`].
pub fn check_dtb(dtb: &[u8]) -> Result<(), BootInfoError> {
    let mut nops = 0;
    scan_tokens(dtb, |nop| nops += usize::from(nop))?;
    if nops != 0 {
        return Err(BootInfoError::HasNops);
    }
    validate(dtb)
}

/// The most bytes of a DTB hv reads (Linux's booting.rst: "must not exceed
/// 2 megabytes"; Xen's `MAX_FDT_SIZE`).
pub const MAX_DTB_BYTES: u32 = 2 << 20;

/// The `totalsize` to use for a DTB whose 40-byte header is `hdr`: its own
/// when it is at most [`MAX_DTB_BYTES`], else the end of the last block the
/// header names (memory reservations, structure, strings), rounded up to 8,
/// if that fits. QEMU's `-dtb` loader (`load_device_tree`, then
/// `fdt_open_into`) grows a file's totalsize to twice its size plus 20000
/// bytes, so a DTB saved with QEMU's 1 MiB `dumpdtb` padding arrives with a
/// totalsize above 2 MiB although its blocks use a few KiB; such a blob used
/// to be refused before any console was known (hv printed nothing at all).
/// `None`: not a DTB header, or blocks that pass the limit.
#[must_use]
pub fn usable_totalsize(hdr: &[u8]) -> Option<u32> {
    let word = |i: usize| be32(hdr, 4 * i);
    if word(0)? != 0xd00d_feed {
        return None;
    }
    let total = word(1)?;
    if (40..=MAX_DTB_BYTES).contains(&total) {
        return Some(total);
    }
    let (off_struct, off_strings, off_rsv) = (word(2)?, word(3)?, word(4)?);
    let (size_strings, size_struct) = (word(8)?, word(9)?);
    // The reservation list is at least its terminating 16-byte entry; a
    // longer list before the structure block is covered by the others' ends.
    let used = [
        off_struct.checked_add(size_struct)?,
        off_strings.checked_add(size_strings)?,
        off_rsv.checked_add(16)?,
        40,
    ]
    .into_iter()
    .max()?
    .checked_next_multiple_of(8)?;
    (used <= total && used <= MAX_DTB_BYTES).then_some(used)
}

/// Remove every `FDT_NOP` token from the DTB's structure block in place
/// (shrinking `size_dt_struct`); returns how many were removed.
///
/// # Errors
/// [`BootInfoError::NotADtb`] if the header or the token stream is malformed
/// (nothing is changed then).
pub fn strip_nops(dtb: &mut [u8]) -> Result<usize, BootInfoError> {
    let off = scan_tokens(dtb, |_| {})?; // validates everything the loop below reads
    let (mut at, mut write, mut removed) = (off, off, 0);
    loop {
        let (tok, len) = token_at(dtb, at, dtb.len())?;
        if tok == FDT_NOP {
            removed += 1;
        } else {
            dtb.copy_within(at..at + len, write);
            write += len;
        }
        at += len;
        if tok == FDT_END {
            break;
        }
    }
    let size = u32::try_from(write - off).map_err(|_| BootInfoError::NotADtb)?;
    dtb[36..40].copy_from_slice(&size.to_be_bytes());
    Ok(removed)
}

/// Decode one `reg` cell group (1 or 2 big-endian 32-bit cells).
fn cells(bytes: &[u8]) -> Option<u64> {
    match bytes.len() {
        0 => Some(0),
        4 => Some(u64::from(u32::from_be_bytes(bytes.try_into().ok()?))),
        8 => Some(u64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

/// `#address-cells` / `#size-cells` a node gives its children (defaults 2 and 1).
#[derive(Clone, Copy, Debug)]
struct Cells {
    address: usize,
    size: usize,
}

const ROOT_DEFAULT_CELLS: Cells = Cells {
    address: 2,
    size: 1,
};

/// The cells `node` gives its children: its own `#address-cells` /
/// `#size-cells`, else those it inherited (`inherited`), as Linux's
/// `of_n_addr_cells` and Xen's `dt_n_addr_cells` walk up the tree.
fn child_cells(node: FdtNode<'_, '_>, inherited: Cells) -> Cells {
    let get = |name, default| {
        node.property(name)
            .and_then(|p| p.value.try_into().ok())
            .map_or(default, |b: [u8; 4]| u32::from_be_bytes(b) as usize)
    };
    Cells {
        address: get("#address-cells", inherited.address),
        size: get("#size-cells", inherited.size),
    }
}

/// All `(base, size)` pairs of `node`'s `reg`, decoded with its parent's `cells`.
fn regs<'a>(
    node: FdtNode<'_, 'a>,
    cells_of_parent: Cells,
    what: &'static str,
) -> Result<impl Iterator<Item = Result<MemRange, BootInfoError>> + 'a, BootInfoError> {
    let (ac, sc) = (cells_of_parent.address, cells_of_parent.size);
    if ac > 2 || sc > 2 || ac == 0 {
        return Err(BootInfoError::BadReg(what));
    }
    let value = node.property("reg").map_or(&[][..], |p| p.value);
    let stride = (ac + sc) * 4;
    if !value.len().is_multiple_of(stride) {
        return Err(BootInfoError::BadReg(what));
    }
    Ok(value.chunks_exact(stride).map(move |c| {
        let (a, s) = c.split_at(ac * 4);
        match (cells(a), cells(s)) {
            (Some(base), Some(size)) => Ok(MemRange::new(base, size)),
            _ => Err(BootInfoError::BadReg(what)),
        }
    }))
}

fn first_reg(
    node: FdtNode<'_, '_>,
    cells_of_parent: Cells,
    what: &'static str,
) -> Result<MemRange, BootInfoError> {
    regs(node, cells_of_parent, what)?
        .next()
        .unwrap_or(Err(BootInfoError::BadReg(what)))
}

/// Depth-first walk calling `f(node, cells of its parent)`; depth-limited so a
/// hostile DTB cannot exhaust the boot stack.
fn walk<'b, 'a>(
    node: FdtNode<'b, 'a>,
    parent: Cells,
    depth: usize,
    f: &mut dyn FnMut(FdtNode<'b, 'a>, Cells) -> Result<(), BootInfoError>,
) -> Result<(), BootInfoError> {
    f(node, parent)?;
    if depth < 16 {
        let mine = child_cells(node, parent);
        for c in node.children() {
            walk(c, mine, depth + 1, f)?;
        }
    }
    Ok(())
}

/// A string property without its trailing NUL (empty properties give "").
fn str_prop<'a>(node: FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
    let v = node.property(name)?.value;
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    core::str::from_utf8(v).ok()
}

fn has_compatible(node: FdtNode<'_, '_>, c: &str) -> bool {
    node.compatible().is_some_and(|cs| cs.all().any(|x| x == c))
}

fn is_disabled(node: FdtNode<'_, '_>) -> bool {
    matches!(str_prop(node, "status"), Some(s) if s != "okay" && s != "ok")
}

/// The enabled `/cpus` children with `device_type = "cpu"` and a `reg`:
/// their MPIDR affinity values (or the error of an undecodable `reg`).
fn cpu_mpidrs<'f>(fdt: &'f Fdt<'_>) -> impl Iterator<Item = Result<u64, BootInfoError>> + 'f {
    fdt.find_node("/cpus")
        .into_iter()
        .flat_map(|cpus| cpus.children())
        .filter(|cpu| str_prop(*cpu, "device_type") == Some("cpu") && !is_disabled(*cpu))
        .filter_map(|cpu| cpu.property("reg"))
        .map(|reg| cells(reg.value).ok_or(BootInfoError::BadReg("cpu")))
}

/// The DTB's CPUs: a count and their MPIDRs read back from the DTB, so that
/// [`BootInfo`] stays a small fixed-size value however many CPUs there are.
#[derive(Clone, Copy, Debug)]
pub struct CpuList<'a> {
    dtb: &'a [u8],
    count: usize,
}

impl CpuList<'_> {
    /// Number of CPUs.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }
    /// True if the DTB lists no CPU.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Their MPIDR affinity values, in DTB order ([`BootInfo::parse`] checked
    /// every `reg`, so none is skipped).
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        // CPU i is found by walking /cpus again (the iterator cannot own the
        // parsed tree its nodes borrow): quadratic, but a DTB walk of a few
        // hundred nodes once at boot. The blob parsed once already, so an
        // error here cannot happen and would only end the iteration.
        (0..self.count).map_while(|i| {
            let fdt = Fdt::new(self.dtb).ok()?;
            let m = cpu_mpidrs(&fdt).nth(i)?.ok();
            m
        })
    }
}

impl PartialEq for CpuList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.iter().eq(other.iter())
    }
}

impl<'a> BootInfo<'a> {
    /// Parse the flattened device tree `dtb`.
    ///
    /// # Errors
    /// [`BootInfoError::NotADtb`] for a blob that is not an FDT,
    /// [`BootInfoError::NoMemory`] without RAM, [`BootInfoError::BadReg`] for a
    /// `reg` hv needs but cannot decode, [`BootInfoError::TooMany`] when reserved
    /// ranges or boot modules exceed hv's fixed capacity.
    pub fn parse(dtb: &'a [u8]) -> Result<BootInfo<'a>, BootInfoError> {
        check_dtb(dtb)?;
        let fdt = Fdt::new(dtb).map_err(|_| BootInfoError::NotADtb)?;
        let mut info = BootInfo {
            dtb_size: fdt.total_size(),
            memory: FixedVec::default(),
            memory_ignored: 0,
            reserved: FixedVec::default(),
            uart: None,
            console: ConsoleChoice::default(),
            gic: None,
            timer: None,
            psci: None,
            cpus: CpuList { dtb, count: 0 },
            cmdline: "",
            cmdline_from: CmdlineFrom::Absent,
            modules: FixedVec::default(),
            dom0: None,
            domus: FixedVec::default(),
            root_compatible: &[],
            hypervisor_node: fdt.find_node("/hypervisor").is_some(),
        };
        let too_many = |what, capacity| BootInfoError::TooMany { what, capacity };
        let root = fdt.find_node("/").ok_or(BootInfoError::NotADtb)?;
        let root_cells = child_cells(root, ROOT_DEFAULT_CELLS);
        info.root_compatible = root.property("compatible").map_or(&[][..], |p| p.value);

        for r in fdt.memory_reservations() {
            let r = MemRange::new(r.address() as u64, r.size() as u64);
            info.reserved
                .push(r)
                .map_err(|_| too_many("reserved ranges", MAX_RESERVED))?;
        }

        if let Some(rm) = fdt.find_node("/reserved-memory") {
            let rm_cells = child_cells(rm, root_cells);
            for child in rm.children() {
                if is_disabled(child) || child.property("reg").is_none() {
                    continue; // dynamically placed (size/alloc-ranges): nothing claimed yet
                }
                for r in regs(child, rm_cells, "reserved-memory")? {
                    info.reserved
                        .push(r?)
                        .map_err(|_| too_many("reserved ranges", MAX_RESERVED))?;
                }
            }
        }

        for mpidr in cpu_mpidrs(&fdt) {
            mpidr?;
            info.cpus.count += 1;
        }

        if let Some(psci) = fdt.find_node("/psci") {
            info.psci = match str_prop(psci, "method") {
                Some("hvc") => Some(PsciConduit::Hvc),
                Some("smc") => Some(PsciConduit::Smc),
                _ => None,
            };
        }

        let chosen = fdt.find_node("/chosen");
        if let Some(chosen) = chosen {
            let chosen_cells = child_cells(chosen, root_cells);
            // Xen reads /chosen's linux,initrd-* before its module children.
            let mut initrd = initrd_props(chosen, &mut info)?;
            let mut kind_guess = 0;
            for m in chosen.children() {
                if has_compatible(m, "xen,domain") {
                    let d = domu_node(m, chosen_cells)?;
                    info.domus
                        .push(d)
                        .map_err(|_| too_many("dom0less domains", MAX_DOMUS))?;
                    continue;
                }
                if module_kind(m, &mut kind_guess.clone()).is_some() {
                    add_module(&mut info, m, chosen_cells, &mut kind_guess)?;
                    continue;
                }
                // Xen (early_scan_node): modules up to depth 3, e.g. U-Boot's
                // /chosen/modules/module@0, in their parent's cells.
                let cells_here = child_cells(m, chosen_cells);
                for mm in m.children() {
                    if module_kind(mm, &mut kind_guess.clone()).is_some() {
                        add_module(&mut info, mm, cells_here, &mut kind_guess)?;
                    }
                }
            }
            let first = |kind| info.modules().iter().find(|m| m.kind == kind).copied();
            if let Some(kernel) = first(ModuleKind::Kernel) {
                if initrd.is_none() {
                    initrd = first(ModuleKind::Ramdisk);
                }
                let module_args = kernel.bootargs.filter(|a| !a.is_empty());
                let dom0_args = str_prop(chosen, "xen,dom0-bootargs");
                info.dom0 = Some(Dom0Boot {
                    kernel,
                    ramdisk: initrd,
                    bootargs: dom0_args
                        .or(module_args)
                        .or_else(|| str_prop(chosen, "bootargs")),
                });
            }
            // Xen's boot_fdt_cmdline, then hv's extension.
            let dom0_has_own = str_prop(chosen, "xen,dom0-bootargs").is_some()
                || info
                    .dom0
                    .is_some_and(|d| d.kernel.bootargs.is_some_and(|a| !a.is_empty()));
            (info.cmdline, info.cmdline_from) = match (
                str_prop(chosen, "xen,xen-bootargs"),
                str_prop(chosen, "bootargs"),
            ) {
                (Some(x), _) => (x, CmdlineFrom::XenBootargs),
                (None, Some(b)) if dom0_has_own => (b, CmdlineFrom::Bootargs),
                (None, Some(b)) => (b, CmdlineFrom::SharedBootargs),
                (None, None) => ("", CmdlineFrom::Absent),
            };
            // Xen (drivers/char/dt-uart.c): dtuart=path-or-alias[:options],
            // else stdout-path in the same form.
            let named = match cmdline_value(info.cmdline, "dtuart") {
                Some(v) => Some((ConsoleFrom::Dtuart, v)),
                None => str_prop(chosen, "stdout-path").map(|v| (ConsoleFrom::StdoutPath, v)),
            };
            if let Some((from, v)) = named {
                let name = v.split(':').next().unwrap_or(v);
                info.console = ConsoleChoice {
                    from,
                    name,
                    found: false,
                };
            }
        }

        // The named console node, identified by where its `reg` lies in the
        // blob (names are not unique); a path starting with '/' is a path,
        // anything else an alias (fdt's find_node resolves /aliases).
        let name = info.console.name;
        let console_reg = if name.starts_with('/') {
            fdt.find_node(name)
        } else if name.is_empty() {
            None
        } else {
            fdt.aliases().and_then(|a| a.resolve_node(name))
        }
        .filter(|n| has_compatible(*n, "arm,pl011") && !is_disabled(*n))
        .and_then(|n| n.property("reg"))
        .map(|p| p.value.as_ptr());
        let mut first_pl011 = None;
        walk(root, ROOT_DEFAULT_CELLS, 0, &mut |node, cells_of_parent| {
            if is_disabled(node) {
                return Ok(());
            }
            if str_prop(node, "device_type") == Some("memory") {
                for r in regs(node, cells_of_parent, "memory")? {
                    let r = r?;
                    if r.size != 0 && info.memory.push(r).is_err() {
                        info.memory_ignored += 1;
                    }
                }
            } else if has_compatible(node, "arm,pl011") {
                let r = first_reg(node, cells_of_parent, "pl011")?;
                let reg = node.property("reg").map(|p| p.value.as_ptr());
                if reg.is_some() && reg == console_reg {
                    info.uart = Some(r);
                    info.console.found = true;
                } else if first_pl011.is_none() {
                    first_pl011 = Some(r);
                }
            } else if info.gic.is_none() && has_compatible(node, "arm,gic-v3") {
                let nredist = node
                    .property("#redistributor-regions")
                    .and_then(|p| p.as_usize())
                    .unwrap_or(1);
                let mut gic = GicV3Info::default();
                let mut it = regs(node, cells_of_parent, "gic-v3")?;
                gic.dist = it.next().unwrap_or(Err(BootInfoError::BadReg("gic-v3")))?;
                for r in it.take(nredist) {
                    gic.redist
                        .push(r?)
                        .map_err(|_| too_many("GICv3 redistributor regions", MAX_REDIST))?;
                }
                info.gic = Some(gic);
            } else if info.timer.is_none() && has_compatible(node, "arm,armv8-timer") {
                info.timer = timer_info(node);
            }
            Ok(())
        })?;
        if info.memory.is_empty() {
            return Err(BootInfoError::NoMemory);
        }
        if info.uart.is_none() {
            info.uart = first_pl011;
        }
        Ok(info)
    }

    /// The boot modules.
    #[must_use]
    pub fn modules(&self) -> &[BootModule<'a>] {
        self.modules.as_slice()
    }

    /// dom0 by Xen's rule.
    #[must_use]
    pub fn dom0(&self) -> Option<Dom0Boot<'a>> {
        self.dom0
    }

    /// The domains the `/chosen` modules (outside `xen,domain` nodes) stand for:
    /// dom0 first (Xen's rule), then, as an hv extension, one unprivileged domain
    /// per further kernel module with the ramdisk module right after it (not
    /// dom0's) and its own `bootargs`.
    pub fn module_domains(&self) -> impl Iterator<Item = ModuleDomain<'a>> + '_ {
        let dom0 = self.dom0;
        let mods = self.modules();
        let extra = mods
            .iter()
            .enumerate()
            .filter(|(_, m)| m.kind == ModuleKind::Kernel)
            .skip(1)
            .map(move |(i, m)| ModuleDomain {
                kernel: *m,
                ramdisk: mods
                    .get(i + 1)
                    .filter(|r| r.kind == ModuleKind::Ramdisk)
                    .filter(|r| dom0.and_then(|d| d.ramdisk) != Some(**r))
                    .copied(),
                bootargs: m.bootargs,
                dom0: false,
            });
        dom0.map(|d| ModuleDomain {
            kernel: d.kernel,
            ramdisk: d.ramdisk,
            bootargs: d.bootargs,
            dom0: true,
        })
        .into_iter()
        .chain(extra)
    }

    /// The dom0less domains.
    #[must_use]
    pub fn domus(&self) -> &[DomUNode<'a>] {
        self.domus.as_slice()
    }

    /// Every module of the dom0less domains (kernels and ramdisks), for the
    /// frame allocator to keep out of its pool.
    pub fn domu_modules(&self) -> impl Iterator<Item = BootModule<'a>> + '_ {
        self.domus()
            .iter()
            .flat_map(|d| core::iter::once(d.kernel).chain(d.ramdisk))
    }
}

/// The kind of module `m` is, if it is one (Xen's `process_multiboot_node`):
/// a specific compatible, else the generic `multiboot,module` /
/// `xen,multiboot-module` guessed as the kernel, then the ramdisk, then a plain
/// module (`kind_guess` counts the guesses). hv also takes a node with only a
/// specific compatible, which Xen's scan (on the generic one) would skip.
fn module_kind(m: FdtNode<'_, '_>, kind_guess: &mut u32) -> Option<ModuleKind> {
    if has_compatible(m, "multiboot,kernel") || has_compatible(m, "xen,linux-zimage") {
        Some(ModuleKind::Kernel)
    } else if has_compatible(m, "multiboot,ramdisk") || has_compatible(m, "xen,linux-initrd") {
        Some(ModuleKind::Ramdisk)
    } else if has_compatible(m, "multiboot,module") || has_compatible(m, "xen,multiboot-module") {
        *kind_guess += 1;
        Some(match *kind_guess {
            1 => ModuleKind::Kernel,
            2 => ModuleKind::Ramdisk,
            _ => ModuleKind::Module,
        })
    } else {
        None
    }
}

/// Add module node `m` (a `module_kind`) to `info.modules`, unless Xen's
/// `add_boot_module` would drop it as a duplicate (same kind and address).
fn add_module<'a>(
    info: &mut BootInfo<'a>,
    m: FdtNode<'_, 'a>,
    cells_of_parent: Cells,
    kind_guess: &mut u32,
) -> Result<(), BootInfoError> {
    let Some(kind) = module_kind(m, kind_guess) else {
        return Ok(());
    };
    let r = first_reg(m, cells_of_parent, "boot module")?;
    if info
        .modules()
        .iter()
        .any(|x| x.kind == kind && x.pa == r.base)
    {
        return Ok(());
    }
    info.modules
        .push(BootModule {
            pa: r.base,
            size: r.size,
            kind,
            bootargs: str_prop(m, "bootargs"),
        })
        .map_err(|_| BootInfoError::TooMany {
            what: "boot modules",
            capacity: MAX_MODULES,
        })
}

/// `/chosen` `linux,initrd-start` / `linux,initrd-end` (one or two cells each)
/// as a ramdisk, as Xen's `process_chosen_node` reads them; also kept in
/// `info.modules` (the frame allocator must not hand its pages out).
fn initrd_props<'a>(
    chosen: FdtNode<'_, 'a>,
    info: &mut BootInfo<'a>,
) -> Result<Option<BootModule<'a>>, BootInfoError> {
    let Some(start) = chosen.property("linux,initrd-start") else {
        return Ok(None);
    };
    let bad = BootInfoError::BadReg("linux,initrd-start/end");
    let start = cells(start.value)
        .filter(|_| start.value.len() >= 4)
        .ok_or(bad)?;
    let end = chosen
        .property("linux,initrd-end")
        .and_then(|p| cells(p.value).filter(|_| p.value.len() >= 4))
        .ok_or(bad)?;
    if start >= end {
        return Err(bad);
    }
    let m = BootModule {
        pa: PhysAddr(start),
        size: end - start,
        kind: ModuleKind::Ramdisk,
        bootargs: None,
    };
    info.modules.push(m).map_err(|_| BootInfoError::TooMany {
        what: "boot modules",
        capacity: MAX_MODULES,
    })?;
    Ok(Some(m))
}

/// Read one `/chosen/domU*` node (Xen's dom0less binding): `memory` (KiB,
/// one or two cells), `cpus`, and its module children in the node's own cells.
fn domu_node<'a>(node: FdtNode<'_, 'a>, inherited: Cells) -> Result<DomUNode<'a>, BootInfoError> {
    let cells_here = child_cells(node, inherited);
    let memory_kib = match node.property("memory") {
        Some(p) => Some(cells(p.value).ok_or(BootInfoError::BadReg("domU memory"))?),
        None => None,
    };
    let cpus = match node.property("cpus") {
        Some(p) => match cells(p.value) {
            Some(n) if (1..=u64::from(u32::MAX)).contains(&n) => n as u32,
            _ => return Err(BootInfoError::BadReg("domU cpus")),
        },
        None => 1,
    };
    let mut d = DomUNode {
        name: node.name,
        memory_kib,
        cpus,
        ..DomUNode::default()
    };
    let mut kernel = None;
    for m in node.children() {
        let kind = if has_compatible(m, "multiboot,kernel") {
            ModuleKind::Kernel
        } else if has_compatible(m, "multiboot,ramdisk") {
            ModuleKind::Ramdisk
        } else {
            continue;
        };
        let r = first_reg(m, cells_here, "domU module")?;
        let bm = BootModule {
            pa: r.base,
            size: r.size,
            kind,
            bootargs: str_prop(m, "bootargs"),
        };
        match kind {
            ModuleKind::Kernel if kernel.is_none() => kernel = Some(bm),
            ModuleKind::Ramdisk if d.ramdisk.is_none() => d.ramdisk = Some(bm),
            _ => {}
        }
    }
    d.kernel = kernel.ok_or(BootInfoError::BadReg("domU without a multiboot,kernel"))?;
    Ok(d)
}

/// Decode the timer's `interrupts` (3-cell GIC specifiers: type, number, flags).
fn timer_info(node: FdtNode<'_, '_>) -> Option<TimerInfo> {
    let v = node.property("interrupts")?.value;
    let mut ids = v.chunks_exact(12).map(|c| {
        let ty = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        let num = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
        // GIC binding: type 0 = SPI (INTID 32 + n), 1 = PPI (INTID 16 + n).
        // An interrupt number past the INTID space makes the whole node unusable.
        num.checked_add(if ty == 1 { 16 } else { 32 })
    });
    Some(TimerInfo {
        sec_phys: ids.next()??,
        phys: ids.next()??,
        virt: ids.next()??,
        hyp_phys: ids.next()??,
        hyp_virt: ids.next().flatten(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIRT: &[u8] = include_bytes!("../tests/fixtures/qemu-virt-gicv3-smp2.dtb");
    const MODULES: &[u8] = include_bytes!("../tests/fixtures/qemu-virt-gicv3-smp2-modules.dtb");

    /// QEMU's `-dtb` loader grows a file's totalsize to twice its size plus
    /// 20000 bytes: a DTB saved with `dumpdtb`'s 1 MiB padding arrives with a
    /// totalsize above 2 MiB. hv used to park silently on it (issue 11).
    #[test]
    fn a_dtb_grown_past_2_mib_by_qemu_is_shrunk_to_its_blocks() {
        let peer: &[u8] = include_bytes!("../tests/fixtures/xen-peer.dtb");
        let grown = 2 * (1 << 20) + 20000;
        let mut blob = alloc::vec![0u8; grown];
        blob[..peer.len()].copy_from_slice(peer);
        blob[4..8].copy_from_slice(&(grown as u32).to_be_bytes());
        let size = usable_totalsize(&blob[..40]).unwrap();
        assert!(
            size as usize <= peer.len().next_multiple_of(8) && size.is_multiple_of(8),
            "{size}"
        );
        let blob = &mut blob[..size as usize];
        blob[4..8].copy_from_slice(&size.to_be_bytes());
        strip_nops(blob).unwrap();
        let b = BootInfo::parse(blob).unwrap();
        assert!(b.dom0().is_some());
        // A totalsize within the limit is kept; a bad magic or blocks past
        // the limit are refused.
        assert_eq!(usable_totalsize(&peer[..40]), Some(peer.len() as u32));
        let mut bad = peer[..40].to_vec();
        bad[0] = 0;
        assert_eq!(usable_totalsize(&bad), None);
        let mut far = peer[..40].to_vec();
        far[4..8].copy_from_slice(&(grown as u32).to_be_bytes());
        far[12..16].copy_from_slice(&(MAX_DTB_BYTES).to_be_bytes()); // strings at 2 MiB
        assert_eq!(usable_totalsize(&far), None);
        assert_eq!(usable_totalsize(&peer[..6]), None);
    }

    #[test]
    fn qemu_virt_dtb() {
        let b = BootInfo::parse(VIRT).unwrap();
        assert_eq!(b.dtb_size, VIRT.len());
        assert_eq!(
            b.memory.as_slice(),
            [MemRange::new(0x4000_0000, 0x4000_0000)]
        );
        assert_eq!(b.memory_ignored, 0);
        assert!(b.reserved.is_empty());
        assert_eq!(b.uart, Some(MemRange::new(0x0900_0000, 0x1000)));
        let gic = b.gic.unwrap();
        assert_eq!(gic.dist, MemRange::new(0x0800_0000, 0x1_0000));
        assert_eq!(
            gic.redist.as_slice(),
            [MemRange::new(0x080a_0000, 0xf6_0000)]
        );
        assert_eq!(
            b.timer,
            Some(TimerInfo {
                sec_phys: 29,
                phys: 30,
                virt: 27,
                hyp_phys: 26,
                hyp_virt: Some(28)
            })
        );
        assert_eq!(b.psci, Some(PsciConduit::Smc));
        assert_eq!(b.cpus.iter().collect::<alloc::vec::Vec<_>>(), [0, 1]);
        assert_eq!(b.cmdline, "");
        assert!(b.modules().is_empty());
        assert_eq!(b.root_compatible, b"linux,dummy-virt\0");
        assert!(!b.hypervisor_node);
    }

    #[test]
    fn modules_bootargs_and_reservations() {
        let b = BootInfo::parse(MODULES).unwrap();
        assert_eq!(
            b.cmdline,
            "loglvl=debug tlb=targeted nested=off console=dtuart"
        );
        assert_eq!(
            b.modules(),
            [
                BootModule {
                    pa: PhysAddr(0x4700_0000),
                    size: 0x1_0000,
                    kind: ModuleKind::Kernel,
                    bootargs: Some("console=hvc0 hello"),
                },
                BootModule {
                    pa: PhysAddr(0x4710_0000),
                    size: 0x2000,
                    kind: ModuleKind::Ramdisk,
                    bootargs: None,
                },
                // Only "multiboot,module": Xen's guess makes the first such
                // module a kernel.
                BootModule {
                    pa: PhysAddr(0x4720_0000),
                    size: 0x3000,
                    kind: ModuleKind::Kernel,
                    bootargs: None,
                },
            ]
        );
        // /memreserve/ first, then /reserved-memory children with a reg.
        assert_eq!(
            b.reserved.as_slice(),
            [
                MemRange::new(0x7f00_0000, 0x1_0000),
                MemRange::new(0x7e00_0000, 0x20_0000),
            ]
        );
        assert_eq!(b.uart, Some(MemRange::new(0x0900_0000, 0x1000)));
    }

    const AS_LOADED: &[u8] =
        include_bytes!("../tests/fixtures/qemu-virt-gicv3-smp2-modules-as-loaded.dtb");

    #[test]
    fn nops_left_by_qemu_are_refused_then_stripped() {
        assert_eq!(
            BootInfo::parse(AS_LOADED).unwrap_err(),
            BootInfoError::HasNops
        );
        let mut blob = AS_LOADED.to_vec();
        let removed = strip_nops(&mut blob).unwrap();
        assert_eq!(removed, 54, "QEMU 10.0.2 leaves 54 NOP tokens in this DTB");
        assert_eq!(strip_nops(&mut blob).unwrap(), 0);
        let b = BootInfo::parse(&blob).unwrap();
        assert_eq!(b.cpus.iter().collect::<alloc::vec::Vec<_>>(), [0, 1]);
        assert_eq!(
            b.cmdline,
            "loglvl=debug tlb=targeted nested=off console=dtuart"
        );
        assert_eq!(b.modules().len(), 3);
        assert_eq!(b.psci, Some(PsciConduit::Smc));
        // A clean DTB is left alone.
        let mut clean = VIRT.to_vec();
        assert_eq!(strip_nops(&mut clean).unwrap(), 0);
        assert_eq!(clean, VIRT);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(
            BootInfo::parse(&[0u8; 64]).unwrap_err(),
            BootInfoError::NotADtb
        );
        assert_eq!(
            BootInfo::parse(&VIRT[..100]).unwrap_err(),
            BootInfoError::NotADtb
        );
        // Every truncation of a valid header must fail cleanly.
        for len in 0..64 {
            assert!(BootInfo::parse(&VIRT[..len]).is_err());
        }
    }

    /// Offsets of the structure block's `FDT_PROP` tokens (a NOP-free DTB).
    fn prop_tokens(dtb: &[u8]) -> alloc::vec::Vec<usize> {
        let mut at = be32(dtb, 8).unwrap() as usize;
        let end = at + be32(dtb, 36).unwrap() as usize;
        let mut out = alloc::vec::Vec::new();
        loop {
            let (tok, len) = token_at(dtb, at, end).unwrap();
            if tok == FDT_PROP {
                out.push(at);
            }
            if tok == FDT_END {
                return out;
            }
            at += len;
        }
    }

    // Found by the bootinfo fuzz target (hv/fuzz): the `fdt` crate panics on
    // property names it cannot read; hv must reject such a blob first.
    #[test]
    fn malformed_property_names_are_an_error_not_a_panic() {
        let strings = be32(VIRT, 12).unwrap() as usize;
        let size_strings = be32(VIRT, 32).unwrap();
        for at in prop_tokens(VIRT) {
            // A name offset past the strings block.
            let mut b = VIRT.to_vec();
            b[at + 8..at + 12].copy_from_slice(&size_strings.to_be_bytes());
            assert_eq!(BootInfo::parse(&b).unwrap_err(), BootInfoError::NotADtb);
            // A name that is not UTF-8.
            let mut b = VIRT.to_vec();
            let nameoff = be32(VIRT, at + 8).unwrap() as usize;
            b[strings + nameoff] = 0xff;
            assert_eq!(BootInfo::parse(&b).unwrap_err(), BootInfoError::NotADtb);
        }
        // The strings block's last NUL gone: the last name runs off its end.
        let mut b = VIRT.to_vec();
        b[strings + size_strings as usize - 1] = b'x';
        assert_eq!(BootInfo::parse(&b).unwrap_err(), BootInfoError::NotADtb);
    }

    #[test]
    fn malformed_structure_is_an_error_not_a_panic() {
        let off = be32(VIRT, 8).unwrap() as usize;
        let size = be32(VIRT, 36).unwrap() as usize;
        // FDT_END right after the root's BEGIN_NODE: an unclosed root.
        let mut b = VIRT.to_vec();
        let first = prop_tokens(VIRT)[0];
        b[first..first + 4].copy_from_slice(&FDT_END.to_be_bytes());
        assert_eq!(BootInfo::parse(&b).unwrap_err(), BootInfoError::NotADtb);
        // FDT_END in place of the root's END_NODE (the root never closes).
        let mut b = VIRT.to_vec();
        let last_end = off + size - 8;
        assert_eq!(be32(&b, last_end), Some(FDT_END_NODE));
        b[last_end..last_end + 4].copy_from_slice(&FDT_END.to_be_bytes());
        assert_eq!(BootInfo::parse(&b).unwrap_err(), BootInfoError::NotADtb);
        // A memory-reservation list that never ends inside the blob.
        let mut b = VIRT.to_vec();
        let rsv = be32(VIRT, 16).unwrap() as usize;
        b[rsv..off].fill(0xff);
        b[16..20].copy_from_slice(&(off as u32).to_be_bytes());
        assert!(BootInfo::parse(&b).is_err());
        // A structure block past totalsize.
        let mut b = VIRT.to_vec();
        let past = be32(VIRT, 4).unwrap() - off as u32 + 4;
        b[36..40].copy_from_slice(&past.to_be_bytes());
        assert_eq!(BootInfo::parse(&b).unwrap_err(), BootInfoError::NotADtb);
        // Nodes nested deeper than hv walks: rejected, no stack overflow.
        let mut w = crate::domain::dtb::FdtWriter::new();
        w.begin_node("");
        for _ in 0..MAX_DEPTH {
            w.begin_node("n");
        }
        for _ in 0..=MAX_DEPTH {
            w.end_node();
        }
        assert_eq!(
            BootInfo::parse(&w.finish()).unwrap_err(),
            BootInfoError::NotADtb
        );
    }

    // Found by the bootinfo fuzz target: `16 + num` overflowed on a timer
    // interrupt number near u32::MAX.
    #[test]
    fn timer_interrupt_numbers_past_the_intid_space_are_ignored() {
        let mut w = crate::domain::dtb::FdtWriter::new();
        w.begin_node("");
        w.prop_u32s("#address-cells", &[2]);
        w.prop_u32s("#size-cells", &[2]);
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_u32s("reg", &[0, 0x4000_0000, 0, 0x1000_0000]);
        w.end_node();
        w.begin_node("timer");
        w.prop("compatible", b"arm,armv8-timer\0");
        w.prop_u32s(
            "interrupts",
            &[1, 13, 4, 1, 14, 4, 1, u32::MAX, 4, 0, u32::MAX - 16, 4],
        );
        w.end_node();
        w.end_node();
        let dtb = w.finish();
        let info = BootInfo::parse(&dtb).unwrap();
        assert_eq!(info.timer, None);
    }

    #[test]
    fn fixed_vec_capacity() {
        let mut v: FixedVec<u64, 2> = FixedVec::default();
        assert!(v.push(1).is_ok());
        assert!(v.push(2).is_ok());
        assert_eq!(v.push(3), Err(3));
        assert_eq!(v.as_slice(), [1, 2]);
    }

    #[test]
    fn dom0less_domu_nodes() {
        use crate::domain::dtb::FdtWriter;
        let build = |broken: bool| {
            let mut w = FdtWriter::new();
            w.begin_node("");
            w.prop_u32s("#address-cells", &[2]);
            w.prop_u32s("#size-cells", &[2]);
            w.begin_node("memory@40000000");
            w.prop_str("device_type", "memory");
            w.prop_u32s("reg", &[0, 0x4000_0000, 0, 0x4000_0000]);
            w.end_node();
            w.begin_node("chosen");
            w.begin_node("domU1");
            w.prop_str("compatible", "xen,domain");
            w.prop_u32s("#address-cells", &[1]);
            w.prop_u32s("#size-cells", &[1]);
            w.prop_u32s("memory", &[0, 0x4_0000]);
            w.prop_u32s("cpus", &[2]);
            w.begin_node("module@4a000000");
            w.prop("compatible", b"multiboot,kernel\0multiboot,module\0");
            w.prop_u32s("reg", &[0x4a00_0000, 0x30_0000]);
            w.prop_str("bootargs", "console=hvc0 rdinit=/init");
            w.end_node();
            w.begin_node("module@4b000000");
            w.prop("compatible", b"multiboot,ramdisk\0multiboot,module\0");
            w.prop_u32s("reg", &[0x4b00_0000, 0x2000]);
            w.end_node();
            w.end_node();
            w.begin_node("domU2");
            w.prop_str("compatible", "xen,domain");
            if !broken {
                w.begin_node("module@4c000000");
                w.prop("compatible", b"multiboot,kernel\0multiboot,module\0");
                w.prop_u32s("reg", &[0, 0x4c00_0000, 0, 0x1000]);
                w.end_node();
            }
            w.end_node();
            w.end_node();
            w.end_node();
            w.finish()
        };
        let blob = build(false);
        let b = BootInfo::parse(&blob).unwrap();
        assert!(b.modules().is_empty(), "domU modules are not dom0 modules");
        let d = b.domus();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "domU1");
        assert_eq!(d[0].memory_kib, Some(256 * 1024));
        assert_eq!(d[0].cpus, 2);
        assert_eq!(
            d[0].kernel,
            BootModule {
                pa: PhysAddr(0x4a00_0000),
                size: 0x30_0000,
                kind: ModuleKind::Kernel,
                bootargs: Some("console=hvc0 rdinit=/init"),
            }
        );
        assert_eq!(
            d[0].ramdisk.map(|r| (r.pa, r.size)),
            Some((PhysAddr(0x4b00_0000), 0x2000))
        );
        // domU2 inherits /chosen's cells (the root's 2 + 2 here), no memory, 1 vCPU.
        assert_eq!((d[1].memory_kib, d[1].cpus), (None, 1));
        assert_eq!(d[1].kernel.pa, PhysAddr(0x4c00_0000));
        assert_eq!(d[1].ramdisk, None);
        assert_eq!(b.domu_modules().count(), 3);
        // A domain without a kernel is an error, not a silent skip.
        let blob = build(true);
        assert_eq!(
            BootInfo::parse(&blob).err(),
            Some(BootInfoError::BadReg("domU without a multiboot,kernel"))
        );
    }

    /// A DTB with `n` CPUs numbered as QEMU virt does with GICv3 (Aff0 =
    /// i % 16, Aff1 = i / 16), CPU `disabled` with `status = "disabled"`.
    fn many_cpus(n: u32, disabled: u32) -> alloc::vec::Vec<u8> {
        use crate::domain::dtb::FdtWriter;
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32s("#address-cells", &[2]);
        w.prop_u32s("#size-cells", &[2]);
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_u32s("reg", &[0, 0x4000_0000, 0, 0x4000_0000]);
        w.end_node();
        w.begin_node("cpus");
        w.prop_u32s("#address-cells", &[1]);
        w.prop_u32s("#size-cells", &[0]);
        for i in 0..n {
            let mpidr = ((i / 16) << 8) | (i % 16);
            w.begin_node(&alloc::format!("cpu@{mpidr:x}"));
            w.prop_str("device_type", "cpu");
            w.prop_u32s("reg", &[mpidr]);
            if i == disabled {
                w.prop_str("status", "disabled");
            }
            w.end_node();
        }
        w.end_node();
        w.end_node();
        w.finish()
    }

    #[test]
    fn every_dtb_cpu_is_kept() {
        // More CPUs than the old fixed limit (8), across two affinity levels.
        let blob = many_cpus(40, 3);
        let b = BootInfo::parse(&blob).unwrap();
        assert_eq!(b.cpus.len(), 39);
        let got: alloc::vec::Vec<u64> = b.cpus.iter().collect();
        let want: alloc::vec::Vec<u64> = (0..40u64)
            .filter(|&i| i != 3)
            .map(|i| ((i / 16) << 8) | (i % 16))
            .collect();
        assert_eq!(got, want);
        let blob = many_cpus(512, 1000);
        assert_eq!(BootInfo::parse(&blob).unwrap().cpus.iter().count(), 512);
    }

    /// Two PL011s with the same node name under different buses (so only
    /// their `reg` tells them apart), aliases serial0/serial1, and the given
    /// `stdout-path` and command line.
    fn two_uarts(stdout: Option<&str>, cmdline: Option<&str>) -> alloc::vec::Vec<u8> {
        use crate::domain::dtb::FdtWriter;
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32s("#address-cells", &[2]);
        w.prop_u32s("#size-cells", &[2]);
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_u32s("reg", &[0, 0x4000_0000, 0, 0x4000_0000]);
        w.end_node();
        for (bus, base) in [("bus1", 0x0900_0000u32), ("bus2", 0x0904_0000)] {
            w.begin_node(bus);
            w.prop_u32s("#address-cells", &[1]);
            w.prop_u32s("#size-cells", &[1]);
            w.begin_node("pl011@1000");
            w.prop("compatible", b"arm,pl011\0arm,primecell\0");
            w.prop_u32s("reg", &[base, 0x1000]);
            w.end_node();
            w.end_node();
        }
        w.begin_node("aliases");
        w.prop_str("serial0", "/bus1/pl011@1000");
        w.prop_str("serial1", "/bus2/pl011@1000");
        w.end_node();
        w.begin_node("chosen");
        if let Some(s) = stdout {
            w.prop_str("stdout-path", s);
        }
        if let Some(c) = cmdline {
            w.prop_str("xen,xen-bootargs", c);
        }
        w.end_node();
        w.end_node();
        w.finish()
    }

    #[test]
    fn console_found_as_xen_finds_it() {
        const FIRST: u64 = 0x0900_0000;
        const SECOND: u64 = 0x0904_0000;
        let pick = |stdout, cmdline| {
            let blob = two_uarts(stdout, cmdline);
            let b = BootInfo::parse(&blob).unwrap();
            let c = b.console;
            (
                b.uart.map(|u| u.base.raw()),
                c.from,
                alloc::string::String::from(c.name),
                c.found,
            )
        };
        use ConsoleFrom::*;
        // Nothing named: the first PL011.
        assert_eq!(
            pick(None, None),
            (Some(FIRST), FirstPl011, "".into(), false)
        );
        // stdout-path as a full path (with options) to the second of two
        // same-named nodes: its reg, not the first node of that name.
        assert_eq!(
            pick(Some("/bus2/pl011@1000:115200n8"), None),
            (Some(SECOND), StdoutPath, "/bus2/pl011@1000".into(), true)
        );
        // stdout-path as an alias.
        assert_eq!(
            pick(Some("serial1"), None),
            (Some(SECOND), StdoutPath, "serial1".into(), true)
        );
        // dtuart= wins over stdout-path, as an alias or a path; the last one counts.
        assert_eq!(
            pick(Some("serial1"), Some("loglvl=info dtuart=serial0")),
            (Some(FIRST), Dtuart, "serial0".into(), true)
        );
        assert_eq!(
            pick(
                Some("serial0"),
                Some("dtuart=serial0 dtuart=/bus2/pl011@1000:115200n8")
            ),
            (Some(SECOND), Dtuart, "/bus2/pl011@1000".into(), true)
        );
        // A name that matches nothing: hv falls back to the first PL011 and says so.
        assert_eq!(
            pick(Some("serial1"), Some("dtuart=serial7")),
            (Some(FIRST), Dtuart, "serial7".into(), false)
        );
        assert_eq!(
            pick(Some("/nowhere"), None),
            (Some(FIRST), StdoutPath, "/nowhere".into(), false)
        );
    }

    /// GRUB's `xen_module` writes `compatible = "multiboot,module"` only:
    /// as Xen, the first such module is the kernel, the second the ramdisk.
    #[test]
    fn generic_modules_are_kernel_then_ramdisk_as_grub_writes_them() {
        use crate::domain::dtb::FdtWriter;
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32s("#address-cells", &[2]);
        w.prop_u32s("#size-cells", &[2]);
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_u32s("reg", &[0, 0x4000_0000, 0, 0x4000_0000]);
        w.end_node();
        w.begin_node("chosen");
        w.prop_str("xen,xen-bootargs", "loglvl=info");
        for (i, a) in [0x7c00_0000u32, 0x7d00_0000, 0x7e00_0000]
            .iter()
            .enumerate()
        {
            w.begin_node(&alloc::format!("module@{a:x}"));
            w.prop("compatible", b"multiboot,module\0");
            w.prop_u32s("reg", &[0, *a, 0, 0x1000]);
            if i == 0 {
                w.prop_str("bootargs", "console=hvc0");
            }
            w.end_node();
        }
        w.end_node();
        w.end_node();
        let blob = w.finish();
        let b = BootInfo::parse(&blob).unwrap();
        let kinds: alloc::vec::Vec<_> = b.modules().iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [ModuleKind::Kernel, ModuleKind::Ramdisk, ModuleKind::Module]
        );
        assert_eq!(b.modules()[0].bootargs, Some("console=hvc0"));
    }
    /// `/chosen` with the given string properties and modules
    /// `(name, compatible, addr, bootargs)` (one level deeper when the name
    /// has a '/': `modules/module@0`).
    fn chosen_dtb(
        props: &[(&str, &str)],
        mods: &[(&str, &[u8], u32, Option<&str>)],
    ) -> alloc::vec::Vec<u8> {
        use crate::domain::dtb::FdtWriter;
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.prop_u32s("#address-cells", &[2]);
        w.prop_u32s("#size-cells", &[2]);
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_u32s("reg", &[0, 0x4000_0000, 0, 0x4000_0000]);
        w.end_node();
        w.begin_node("chosen");
        w.prop_u32s("#address-cells", &[1]);
        w.prop_u32s("#size-cells", &[1]);
        for (k, v) in props {
            if k.starts_with("linux,initrd") {
                w.prop_u64(k, v.parse().unwrap());
            } else {
                w.prop_str(k, v);
            }
        }
        let mut open_sub: Option<&str> = None;
        for (name, compat, addr, args) in mods {
            let (sub, leaf) = match name.split_once('/') {
                Some((a, b)) => (Some(a), b),
                None => (None, *name),
            };
            if open_sub != sub {
                if open_sub.is_some() {
                    w.end_node();
                }
                if let Some(s) = sub {
                    w.begin_node(s);
                }
                open_sub = sub;
            }
            w.begin_node(leaf);
            w.prop("compatible", compat);
            w.prop_u32s("reg", &[*addr, 0x1000]);
            if let Some(a) = args {
                w.prop_str("bootargs", a);
            }
            w.end_node();
        }
        w.finish()
    }

    const KERNEL: &[u8] = b"multiboot,kernel\0multiboot,module\0";
    const RAMDISK: &[u8] = b"multiboot,ramdisk\0multiboot,module\0";

    /// Xen's rule: the first kernel module is dom0's, the first ramdisk its
    /// initrd; the `dom0` word of hv's old rule does not move it.
    #[test]
    fn dom0_is_the_first_kernel_module_as_xen_finds_it() {
        let blob = chosen_dtb(
            &[
                (
                    "xen,xen-bootargs",
                    "console=dtuart dtuart=serial0 dom0_mem=512M,max:512M",
                ),
                ("bootargs", "console=hvc0 root=/dev/vda"),
            ],
            &[
                ("module@48000000", KERNEL, 0x4800_0000, None),
                (
                    "module@49000000",
                    KERNEL,
                    0x4900_0000,
                    Some("dom0 console=hvc0"),
                ),
                ("module@4a000000", RAMDISK, 0x4a00_0000, None),
            ],
        );
        let b = BootInfo::parse(&blob).unwrap();
        let d = b.dom0().unwrap();
        assert_eq!(d.kernel.pa, PhysAddr(0x4800_0000));
        // Xen's first ramdisk, even though it follows the second kernel.
        assert_eq!(d.ramdisk.map(|r| r.pa), Some(PhysAddr(0x4a00_0000)));
        // xen,xen-bootargs is hv's; without xen,dom0-bootargs or module
        // bootargs, /chosen/bootargs is dom0's.
        assert_eq!(d.bootargs, Some("console=hvc0 root=/dev/vda"));
        assert_eq!(
            (b.cmdline, b.cmdline_from),
            (
                "console=dtuart dtuart=serial0 dom0_mem=512M,max:512M",
                CmdlineFrom::XenBootargs
            )
        );
        let doms: alloc::vec::Vec<_> = b.module_domains().collect();
        assert_eq!(doms.len(), 2);
        assert!(doms[0].dom0 && !doms[1].dom0);
        assert_eq!(doms[1].kernel.pa, PhysAddr(0x4900_0000));
        assert_eq!(doms[1].ramdisk, None, "dom0's ramdisk is not shared");
        assert_eq!(doms[1].bootargs, Some("dom0 console=hvc0"));
        // The runners' layout (the `dom0` module first).
        let blob = chosen_dtb(
            &[("xen,xen-bootargs", "loglvl=info")],
            &[
                ("module@48000000", KERNEL, 0x4800_0000, Some("dom0 x")),
                ("module@4a000000", RAMDISK, 0x4a00_0000, None),
                ("module@4c000000", KERNEL, 0x4c00_0000, Some("y")),
                ("module@4d000000", RAMDISK, 0x4d00_0000, None),
            ],
        );
        let b = BootInfo::parse(&blob).unwrap();
        let doms: alloc::vec::Vec<_> = b.module_domains().collect();
        assert_eq!(doms[0].bootargs, Some("dom0 x"));
        assert_eq!(doms[0].ramdisk.map(|r| r.pa), Some(PhysAddr(0x4a00_0000)));
        assert_eq!(doms[1].ramdisk.map(|r| r.pa), Some(PhysAddr(0x4d00_0000)));
        // No module at all: no dom0, nothing to disagree about.
        let blob = chosen_dtb(&[], &[]);
        let b = BootInfo::parse(&blob).unwrap();
        assert_eq!((b.dom0(), b.module_domains().count()), (None, 0));
    }

    /// docs/misc/arm/device-tree/booting.txt "Command lines", case by case.
    #[test]
    fn command_lines_for_hv_and_dom0_follow_xens_table() {
        use CmdlineFrom::*;
        let case = |props: &[(&str, &str)], module_args: Option<&str>| {
            let blob = chosen_dtb(
                props,
                &[("module@48000000", KERNEL, 0x4800_0000, module_args)],
            );
            let b = BootInfo::parse(&blob).unwrap();
            let d = b.dom0().unwrap().bootargs.map(alloc::string::String::from);
            (alloc::string::String::from(b.cmdline), b.cmdline_from, d)
        };
        let s = |x: &str| alloc::string::String::from(x);
        // All three: each its own.
        assert_eq!(
            case(
                &[
                    ("xen,xen-bootargs", "X"),
                    ("xen,dom0-bootargs", "D"),
                    ("bootargs", "B")
                ],
                Some("M")
            ),
            (s("X"), XenBootargs, Some(s("D")))
        );
        // No xen,xen-bootargs but xen,dom0-bootargs: bootargs is hv's.
        assert_eq!(
            case(&[("bootargs", "B"), ("xen,dom0-bootargs", "D")], None),
            (s("B"), Bootargs, Some(s("D")))
        );
        // A kernel module with bootargs: the top-level bootargs is hv's.
        assert_eq!(
            case(&[("bootargs", "B")], Some("M")),
            (s("B"), Bootargs, Some(s("M")))
        );
        // xen,xen-bootargs and no xen,dom0-bootargs: bootargs is dom0's (an
        // empty module bootargs does not count, as Xen's `cmdline[0]` test).
        assert_eq!(
            case(&[("xen,xen-bootargs", "X"), ("bootargs", "B")], Some("")),
            (s("X"), XenBootargs, Some(s("B")))
        );
        // xen,dom0-bootargs wins over the module's bootargs.
        assert_eq!(
            case(
                &[("xen,xen-bootargs", "X"), ("xen,dom0-bootargs", "D")],
                Some("M")
            ),
            (s("X"), XenBootargs, Some(s("D")))
        );
        // No Xen property: bootargs is dom0's; hv extension: hv reads it too.
        assert_eq!(
            case(&[("bootargs", "B")], None),
            (s("B"), SharedBootargs, Some(s("B")))
        );
        assert_eq!(case(&[], None), (s(""), CmdlineFrom::Absent, None));
    }

    /// U-Boot scripts put modules one level deeper (`/chosen/modules/module@0`,
    /// in that node's cells); Xen scans down to depth 3 (`early_scan_node`).
    /// /chosen's linux,initrd-start/-end is dom0's initrd before any module.
    #[test]
    fn nested_modules_initrd_properties_and_duplicates() {
        let blob = chosen_dtb(
            &[("xen,dom0-bootargs", "console=hvc0")],
            &[
                (
                    "modules/module@0",
                    b"xen,linux-zimage\0xen,multiboot-module\0",
                    0x4800_0000,
                    None,
                ),
                (
                    "modules/module@1",
                    b"xen,linux-initrd\0xen,multiboot-module\0",
                    0x4900_0000,
                    None,
                ),
                // The same kernel again: dropped, as Xen's add_boot_module does.
                ("module@48000000", KERNEL, 0x4800_0000, None),
            ],
        );
        let b = BootInfo::parse(&blob).unwrap();
        let d = b.dom0().unwrap();
        assert_eq!(d.kernel.pa, PhysAddr(0x4800_0000));
        assert_eq!(d.ramdisk.map(|r| r.pa), Some(PhysAddr(0x4900_0000)));
        assert_eq!(b.modules().len(), 2);
        assert_eq!(b.module_domains().count(), 1);
        let blob = chosen_dtb(
            &[
                ("linux,initrd-start", "1275068416"), // 0x4c000000
                ("linux,initrd-end", "1275072512"),
            ],
            &[
                ("module@48000000", KERNEL, 0x4800_0000, None),
                ("module@49000000", RAMDISK, 0x4900_0000, None),
            ],
        );
        let b = BootInfo::parse(&blob).unwrap();
        assert_eq!(
            b.dom0().unwrap().ramdisk.map(|r| (r.pa, r.size)),
            Some((PhysAddr(0x4c00_0000), 0x1000))
        );
        // Kept out of the frame allocator's pool with the other modules.
        assert_eq!(b.modules().len(), 3);
        let blob = chosen_dtb(
            &[("linux,initrd-start", "4096"), ("linux,initrd-end", "4096")],
            &[],
        );
        assert_eq!(
            BootInfo::parse(&blob).err(),
            Some(BootInfoError::BadReg("linux,initrd-start/end"))
        );
    }
}
