//! `xen_version` (hypercall 17), after Xen's `do_xen_version` (xen/common/kernel.c).

use memops::TableMem;

use super::{low32, unknown_command, CallerView, Ctx, Reply};
use crate::arch::PhysMem;
use crate::guest::{GuestHandle, GuestMemError, GuestType};
use crate::xen::abi::{nr, xenfeat, xenver};
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
/// `XENVER_extraversion`.
pub const EXTRAVERSION: &str = "-hv";
/// `XENVER_capabilities`: what Xen on arm64 reports.
pub const CAPABILITIES: &str = "xen-3.0-aarch64 ";

/// `XENVER_get_features` submap 0 for a domain.
///
/// What Xen on Arm reports to a translated (auto-translated physmap, not
/// direct-mapped) domain and a Linux domU relies on: writable page tables,
/// auto-translated physmap, SMCCC, not direct-mapped; plus `dom0` for a
/// privileged domain. Xen's `memory_op_vnode_supported` and
/// `runstate_phys_area` are left out because hv does not implement the calls
/// they announce.
#[must_use]
pub const fn features_submap0(privileged: bool) -> u32 {
    let mut f = (1 << xenfeat::WRITABLE_PAGE_TABLES)
        | (1 << xenfeat::AUTO_TRANSLATED_PHYSMAP)
        | (1 << xenfeat::ARM_SMCCC_SUPPORTED)
        | (1 << xenfeat::NOT_DIRECT_MAPPED);
    if privileged {
        f |= 1 << xenfeat::DOM0;
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
        XenVersion::Changeset(h) => put(
            ctx,
            "changeset",
            h,
            &cstr(concat!("hv ", env!("CARGO_PKG_VERSION"))),
        ),
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
            let submap = features_submap0(ctx.privileged);
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
        // Xen's XSM default denies the command line to every guest but the
        // privileged ones; hv gives no guest its command line.
        XenVersion::Commandline(h) => put(
            ctx,
            "commandline",
            h,
            &cstr::<{ xenver::COMMANDLINE_LEN }>("<denied>"),
        ),
    }
}
