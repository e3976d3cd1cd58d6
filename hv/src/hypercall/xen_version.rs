//! `xen_version` (hypercall 17), after Xen's `do_xen_version` (xen/common/kernel.c).

use memops::TableMem;

use super::{low32, unknown_command, CallerView, Ctx, Reply};
use crate::arch::PhysMem;
use crate::guest::{GuestHandle, GuestMemError, GuestType};
use crate::xen::abi::{nr, xenfeat, xenver, XenVarbuf};
use crate::xen::Errno;
use pv_tlb::PAGE_SIZE;

/// A `xen_version` sub-command with its argument.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum XenVersion {
    /// `XENVER_version`: returns `major << 16 | minor`.
    Version,
    /// `XENVER_extraversion`: `char[16]` out.
    ExtraVersion(GuestHandle<[u8; xenver::EXTRAVERSION_LEN]>),
    /// `XENVER_compile_info`: `struct xen_compile_info` out.
    CompileInfo(GuestHandle<[u8; xenver::COMPILE_INFO_LEN]>),
    /// `XENVER_capabilities`: `char[1024]` out.
    Capabilities(GuestHandle<[u8; xenver::CAPABILITIES_LEN]>),
    /// `XENVER_changeset`: `char[64]` out.
    Changeset(GuestHandle<[u8; xenver::CHANGESET_LEN]>),
    /// `XENVER_platform_parameters`: `struct xen_platform_parameters` out.
    PlatformParameters(GuestHandle<u64>),
    /// `XENVER_get_features`: `struct xen_feature_info` in/out.
    GetFeatures(GuestHandle<u64>),
    /// `XENVER_pagesize`: the argument must be NULL.
    PageSize {
        /// The raw argument (non-NULL is `-EINVAL`).
        arg: u64,
    },
    /// `XENVER_guest_handle`: `xen_domain_handle_t` out.
    GuestHandle(GuestHandle<[u8; xenver::DOMAIN_HANDLE_LEN]>),
    /// `XENVER_commandline`: `char[1024]` out.
    Commandline(GuestHandle<[u8; xenver::COMMANDLINE_LEN]>),
    /// `XENVER_build_id`, `XENVER_extraversion2`, `XENVER_capabilities2`,
    /// `XENVER_changeset2`, `XENVER_commandline2`: a `struct xen_varbuf`
    /// in/out (NULL: the length is asked for).
    VarBuf {
        /// Which one (`xenver::BUILD_ID` ..= `xenver::COMMANDLINE2`).
        cmd: u32,
        /// The raw argument (a VA of the caller, or NULL).
        arg: u64,
    },
}

impl XenVersion {
    /// `do_xen_version(int cmd, void *arg)`; `None` for an unknown command.
    #[must_use]
    pub fn decode(args: [u64; 5]) -> Option<Self> {
        let a = args[1];
        Some(match low32(args[0]) {
            xenver::VERSION => XenVersion::Version,
            xenver::EXTRAVERSION => XenVersion::ExtraVersion(GuestHandle::new(a)),
            xenver::COMPILE_INFO => XenVersion::CompileInfo(GuestHandle::new(a)),
            xenver::CAPABILITIES => XenVersion::Capabilities(GuestHandle::new(a)),
            xenver::CHANGESET => XenVersion::Changeset(GuestHandle::new(a)),
            xenver::PLATFORM_PARAMETERS => XenVersion::PlatformParameters(GuestHandle::new(a)),
            xenver::GET_FEATURES => XenVersion::GetFeatures(GuestHandle::new(a)),
            xenver::PAGESIZE => XenVersion::PageSize { arg: a },
            xenver::GUEST_HANDLE => XenVersion::GuestHandle(GuestHandle::new(a)),
            xenver::COMMANDLINE => XenVersion::Commandline(GuestHandle::new(a)),
            c @ xenver::BUILD_ID..=xenver::COMMANDLINE2 => XenVersion::VarBuf { cmd: c, arg: a },
            _ => return None,
        })
    }
}

/// `xen_version(cmd, arg)`.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    let Some(op) = XenVersion::decode(a) else {
        return unknown_command(ctx.caller, nr::XEN_VERSION, a[0]);
    };
    Reply::ret(ctx.caller_view().and_then(|mut v| xen_version(op, &mut v)))
}

/// The Xen version hv reports (`XENVER_version`): 4.20, the interface Linux expects.
pub const XEN_MAJOR: u32 = 4;
/// See [`XEN_MAJOR`].
pub const XEN_MINOR: u32 = 20;
/// `XENVER_extraversion`: `xl info` prints `xen_version : 4.20-hv-<hv's
/// version>` and Linux `Xen version: 4.20-hv-...`, so a user sees it is hv.
pub const EXTRAVERSION: &str = concat!("-hv-", env!("CARGO_PKG_VERSION"));
const _: () = assert!(EXTRAVERSION.len() < xenver::EXTRAVERSION_LEN);
/// `XENVER_capabilities`: what Xen on arm64 reports, without Xen's
/// `xen-3.0-armv7l ` (hv runs no AArch32 guest).
pub const CAPABILITIES: &str = "xen-3.0-aarch64 ";
/// `XENVER_changeset`.
pub const CHANGESET: &str = concat!("hv ", env!("CARGO_PKG_VERSION"));
/// Xen's `xen_deny()`: what a guest denied a string gets.
pub const DENIED: &str = "<denied>";
/// `xenver_varbuf_op`'s limit on a string (`KB(64)`; above it `-E2BIG`).
const VARBUF_MAX: usize = 64 * 1024;

/// `XENVER_get_features` submap 0 for a domain, as Xen's `do_xen_version`
/// (xen/common/kernel.c) builds it on Arm for a translated domain:
/// writable page tables, auto-translated physmap, SMCCC, runstate_phys_area
/// (hv implements `VCPUOP_register_runstate_phys_area`), `dom0` for the
/// privileged (hardware) domain, and `direct_mapped` for a direct-mapped
/// domain (IPA == PA, dom0) else `not_direct_mapped`.
/// Xen's `memory_op_vnode_supported` is left out: hv has no
/// `XENMEM_get_vnumainfo` (-ENOSYS), so announcing it would be false.
#[must_use]
pub const fn features_submap0(privileged: bool, direct_mapped: bool) -> u32 {
    let mut f = (1 << xenfeat::WRITABLE_PAGE_TABLES)
        | (1 << xenfeat::AUTO_TRANSLATED_PHYSMAP)
        | (1 << xenfeat::ARM_SMCCC_SUPPORTED)
        | (1 << xenfeat::RUNSTATE_PHYS_AREA);
    if privileged {
        f |= 1 << xenfeat::DOM0;
    }
    if direct_mapped {
        f |= 1 << xenfeat::DIRECT_MAPPED;
    } else {
        f |= 1 << xenfeat::NOT_DIRECT_MAPPED;
    }
    f
}

/// A NUL-padded `char[N]` holding `s` (truncated to leave a NUL).
fn cstr<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let n = s.len().min(N.saturating_sub(1));
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

fn put<M: PhysMem + TableMem, T: GuestType>(
    ctx: &mut CallerView<'_, M>,
    what: &str,
    h: GuestHandle<T>,
    v: &T,
) -> Result<u64, Errno> {
    ctx.mem.write(h, v).map_err(|e: GuestMemError| {
        crate::glog!(ctx.domid, Debug, "d{}: xen_version {what}: {e}", ctx.domid);
        e.errno()
    })?;
    Ok(0)
}

/// Handle `xen_version`.
///
/// # Errors
/// `-EFAULT` for an output handle outside writable guest RAM; `-EINVAL` for
/// a non-NULL `XENVER_pagesize` argument or a feature submap other than 0.
pub fn xen_version<M: PhysMem + TableMem>(
    op: XenVersion,
    ctx: &mut CallerView<'_, M>,
) -> Result<u64, Errno> {
    match op {
        XenVersion::Version => Ok(u64::from((XEN_MAJOR << 16) | XEN_MINOR)),
        XenVersion::ExtraVersion(h) => put(ctx, "extraversion", h, &cstr(EXTRAVERSION)),
        XenVersion::CompileInfo(h) => {
            // struct xen_compile_info { compiler[64]; compile_by[16]; compile_domain[32]; compile_date[32]; }
            let mut info = [0u8; xenver::COMPILE_INFO_LEN];
            info[..64].copy_from_slice(&cstr::<64>("rustc"));
            info[64..80].copy_from_slice(&cstr::<16>("hv"));
            info[80..112].copy_from_slice(&cstr::<32>("hv"));
            info[112..144].copy_from_slice(&cstr::<32>(""));
            put(ctx, "compile_info", h, &info)
        }
        XenVersion::Capabilities(h) => put(ctx, "capabilities", h, &cstr(CAPABILITIES)),
        XenVersion::Changeset(h) => put(ctx, "changeset", h, &cstr(CHANGESET)),
        // virt_start: 0 for every guest on Arm.
        XenVersion::PlatformParameters(h) => put(ctx, "platform_parameters", h, &0u64),
        XenVersion::GetFeatures(h) => {
            // struct xen_feature_info { uint32_t submap_idx; uint32_t submap; }
            let raw = ctx.mem.read(h).map_err(|e| {
                crate::glog!(
                    ctx.domid,
                    Debug,
                    "d{}: xen_version get_features: {e}",
                    ctx.domid
                );
                e.errno()
            })?;
            let idx = raw as u32;
            if idx != 0 {
                crate::glog!(
                    ctx.domid,
                    Debug,
                    "d{}: xen_version get_features: submap {idx} does not exist",
                    ctx.domid
                );
                return Err(Errno::EINVAL);
            }
            let submap = features_submap0(ctx.privileged, ctx.direct_mapped);
            put(
                ctx,
                "get_features",
                h,
                &(u64::from(idx) | (u64::from(submap) << 32)),
            )
        }
        XenVersion::PageSize { arg } => {
            if arg != 0 {
                crate::glog!(
                    ctx.domid,
                    Debug,
                    "d{}: xen_version pagesize: non-NULL argument {arg:#x}",
                    ctx.domid
                );
                return Err(Errno::EINVAL);
            }
            Ok(PAGE_SIZE)
        }
        XenVersion::GuestHandle(h) => {
            let handle = ctx.handle;
            put(ctx, "guest_handle", h, &handle)
        }
        // Xen's XSM default (xsm/dummy.h `xsm_xen_version`: XSM_PRIV)
        // gives the command line to the control domain only; others get
        // `<denied>` (its NUL included), as Xen copies `xen_deny()`.
        XenVersion::Commandline(h) => {
            if ctx.privileged {
                let line = cstr::<{ xenver::COMMANDLINE_LEN }>(super::host::host_facts().cmdline);
                put(ctx, "commandline", h, &line)
            } else {
                let mut d = [0u8; 9];
                d[..8].copy_from_slice(DENIED.as_bytes());
                ctx.mem
                    .copy_to_guest(h.ipa(), &d)
                    .map_err(|e| e.errno())
                    .map(|()| 0)
            }
        }
        XenVersion::VarBuf { cmd, arg } => varbuf(ctx, cmd, arg),
    }
}

/// `xenver_varbuf_op` (xen/common/kernel.c) behind XSM's default: build_id
/// and commandline2 for the control domain only (`-EPERM`), the others for
/// every guest. A NULL `arg` asks for the length; else the string (no NUL)
/// goes after the `len` header if `len` is large enough (`-ENOBUFS`), and
/// the call returns its length. hv has no build id: `-ENODATA`, as Xen
/// built without one (`xen_build_id`).
fn varbuf<M: PhysMem + TableMem>(
    ctx: &mut CallerView<'_, M>,
    cmd: u32,
    arg: u64,
) -> Result<u64, Errno> {
    let privileged_only = matches!(cmd, xenver::BUILD_ID | xenver::COMMANDLINE2);
    if privileged_only && !ctx.privileged {
        crate::glog!(
            ctx.domid,
            Debug,
            "d{}: xen_version {cmd}: -EPERM",
            ctx.domid
        );
        return Err(Errno::EPERM);
    }
    let s: &str = match cmd {
        xenver::EXTRAVERSION2 => EXTRAVERSION,
        xenver::CAPABILITIES2 => CAPABILITIES,
        xenver::CHANGESET2 => CHANGESET,
        xenver::COMMANDLINE2 => super::host::host_facts().cmdline,
        _ => {
            crate::glog!(
                ctx.domid,
                Debug,
                "d{}: xen_version build_id: hv has none: -ENODATA",
                ctx.domid
            );
            return Err(Errno::ENODATA);
        }
    };
    let sz = s.len();
    if sz > VARBUF_MAX {
        return Err(Errno::E2BIG);
    }
    if arg == 0 {
        return Ok(sz as u64);
    }
    let hdr: [u8; XenVarbuf::SIZE] = ctx
        .mem
        .read(GuestHandle::new(arg))
        .map_err(|e: GuestMemError| e.errno())?;
    let len = XenVarbuf::from_bytes(&hdr).len as usize;
    if sz > len {
        crate::glog!(
            ctx.domid,
            Debug,
            "d{}: xen_version {cmd}: {sz} bytes into {len}: -ENOBUFS",
            ctx.domid
        );
        return Err(Errno::ENOBUFS);
    }
    ctx.mem
        .copy_to_guest(
            pv_tlb::Ipa(arg.wrapping_add(XenVarbuf::SIZE as u64)),
            s.as_bytes(),
        )
        .map_err(|e| e.errno())?;
    Ok(sz as u64)
}
