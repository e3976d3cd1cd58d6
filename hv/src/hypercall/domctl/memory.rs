//! Memory domctls: `max_mem` (11), `set_address_size` (35),
//! `get/set_paging_mempool_size` (85/86), `cacheflush` (71).

use memops::{P2mKind, TableMem};
use pv_tlb::{PhysAddr, PAGE_SIZE};

use super::{with_domu, Answer};
use crate::arch::PhysMem;
use crate::hypercall::Ctx;
use crate::world::World;
use crate::xen::abi::{
    XenDomctl, XenDomctlAddressSize, XenDomctlCacheflush, XenDomctlMaxMem, XenDomctlPagingMempool,
};
use crate::xen::Errno;

/// `XEN_DOMCTL_max_mem`: the domain's reservation (KiB).
pub fn max_mem<M>(sh: &mut World<M>, op: &XenDomctl) -> Answer {
    let m: XenDomctlMaxMem = op.member();
    with_domu(sh, op.domain, |d| {
        d.physmap_mut()
            .set_max_pages(m.max_memkb / (PAGE_SIZE / 1024));
        Answer::ok(false)
    })
}

/// `XEN_DOMCTL_set_address_size`, as Xen's arm64 `set_address_size`
/// (xen/arch/arm/arm64/domctl.c): 64 keeps the domain AArch64, but only
/// while it has no memory (`switch_mode`: -EBUSY once `tot_pages` != 0);
/// any other size is -EINVAL. Xen accepts 32 on CPUs with AArch32 EL1; hv
/// runs AArch64 guests only, so 32 is -EINVAL here (as Xen on a CPU
/// without AArch32 EL1).
pub fn set_address_size<M>(sh: &mut World<M>, op: &XenDomctl) -> Answer {
    let a: XenDomctlAddressSize = op.member();
    with_domu(sh, op.domain, |d| match a.size {
        64 if d.physmap().tot_pages() != 0 => {
            log::debug!("d{}: set_address_size 64 with memory: -EBUSY", d.id);
            Answer::err(Errno::EBUSY)
        }
        64 => Answer::ok(false),
        n => {
            log::debug!(
                "d{}: set_address_size {n}: hv runs AArch64 guests only",
                d.id
            );
            Answer::err(Errno::EINVAL)
        }
    })
}

/// `XEN_DOMCTL_set_paging_mempool_size`, as Arm's
/// `arch_set_paging_mempool_size` (xen/arch/arm/mmu/p2m.c): a byte count
/// that is not a page multiple is -EINVAL. hv's stage-2 tables come from
/// its shared table pool, so the size is recorded (and read back by
/// `get_paging_mempool_size`) but reserves nothing; the call never needs a
/// continuation.
pub fn set_paging_mempool_size<M>(sh: &mut World<M>, op: &XenDomctl) -> Answer {
    let p: XenDomctlPagingMempool = op.member();
    if !p.size.is_multiple_of(PAGE_SIZE) {
        log::debug!(
            "d{}: set_paging_mempool_size {:#x}: not page-sized",
            op.domain,
            p.size
        );
        return Answer::err(Errno::EINVAL);
    }
    with_domu(sh, op.domain, |d| {
        d.ctl.paging_mempool = p.size;
        Answer::ok(false)
    })
}

/// `XEN_DOMCTL_get_paging_mempool_size`: what was set (struct copied back).
pub fn get_paging_mempool_size<M>(sh: &mut World<M>, op: &mut XenDomctl) -> Answer {
    let mut size = 0;
    let a = with_domu(sh, op.domain, |d| {
        size = d.ctl.paging_mempool;
        Answer::ok(true)
    });
    if a.copy_back {
        op.set_member(&XenDomctlPagingMempool { size });
    }
    a
}

/// Xen's `MAX_ORDER` (xen/common/page_alloc.c default, 20): the largest
/// `cacheflush` range, in pages.
pub const CACHEFLUSH_MAX_PFNS: u64 = 1 << 20;

/// `XEN_DOMCTL_cacheflush`, as Arm's `arch_do_domctl`
/// (xen/arch/arm/domctl.c): more than 2^`MAX_ORDER` pfns or a range that
/// wraps is -EINVAL; then every gfn of the range that maps RAM (own or
/// foreign, Xen's `p2m_is_any_ram`) has its frame cleaned and invalidated to
/// the point of coherency through hv's mapping ([`crate::arch::Arch::dcache_clean_inval`],
/// contiguous frames in one call), holes skipped (`p2m_cache_flush_range`);
/// 0 for any existing domain. Xen needs no continuation here (its loop
/// retries `-ERESTART` in place), nor does hv.
///
/// First the caller's coalescing window closes (DESIGN "When TLB
/// invalidations run"): libxl unmaps what it loaded with single
/// `XENMEM_remove_from_physmap` calls, then issues this domctl; their TLB
/// invalidation is complete and their pages released before it returns.
/// (The run loop also closes the window at the domctl's exit; doing it here
/// makes the guarantee the domctl's own, however it is reached.)
pub fn cacheflush<M: PhysMem + TableMem>(ctx: &mut Ctx<'_, M>, op: &XenDomctl) -> Answer {
    let c: XenDomctlCacheflush = op.member();
    if c.nr_pfns > CACHEFLUSH_MAX_PFNS {
        log::debug!("d{}: cacheflush of {} pfns: -EINVAL", op.domain, c.nr_pfns);
        return Answer::err(Errno::EINVAL);
    }
    let Some(end) = c.start_pfn.checked_add(c.nr_pfns) else {
        log::debug!("d{}: cacheflush range wraps: -EINVAL", op.domain);
        return Answer::err(Errno::EINVAL);
    };
    if ctx.world.domain(op.domain).is_none() {
        log::debug!("cacheflush: no domain d{}: -ESRCH", op.domain);
        return Answer::err(Errno::ESRCH);
    }
    let caller = ctx.caller;
    if ctx.world.close_window(&mut *ctx.arch, caller) {
        crate::counters::WindowClose::Domctl.count();
    }
    let Some(d) = ctx.world.domain(op.domain) else {
        return Answer::err(Errno::ESRCH);
    };
    // Runs of contiguous frames: (first byte, bytes).
    let mut run: Option<(PhysAddr, u64)> = None;
    let mut pages = 0u64;
    let arch = &mut *ctx.arch;
    for (_, e) in d.physmap().entries_in(c.start_pfn, end) {
        if !matches!(e.kind, P2mKind::Ram | P2mKind::Foreign { .. }) {
            continue;
        }
        pages += 1;
        run = match run {
            Some((pa, len)) if pa.0 + len == e.pa.0 => Some((pa, len + PAGE_SIZE)),
            Some((pa, len)) => {
                arch.dcache_clean_inval(pa, len);
                Some((e.pa, PAGE_SIZE))
            }
            None => Some((e.pa, PAGE_SIZE)),
        };
    }
    if let Some((pa, len)) = run {
        arch.dcache_clean_inval(pa, len);
    }
    log::trace!(
        "d{}: cacheflush {:#x}+{}: {pages} RAM pages cleaned",
        op.domain,
        c.start_pfn,
        c.nr_pfns
    );
    Answer::ok(false)
}
