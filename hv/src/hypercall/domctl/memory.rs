//! Memory domctls: `max_mem` (11), `set_address_size` (35),
//! `get/set_paging_mempool_size` (85/86), `cacheflush` (71).

use memops::{P2mKind, TableMem};
use pv_tlb::PAGE_SIZE;

use super::{with_domu, Answer};
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

/// `XEN_DOMCTL_cacheflush`, checked as Arm's `arch_do_domctl`
/// (xen/arch/arm/domctl.c): more than 2^`MAX_ORDER` pfns or a range that
/// wraps is -EINVAL; then every gfn of the range that maps RAM (own or
/// foreign, Xen's `p2m_is_any_ram`) is a page to clean to the PoC, holes
/// are skipped (`p2m_cache_flush_range`); 0 for any existing domain.
///
/// Deviation, reported: hv's arch contract has no data-cache clean yet, so
/// the pages are found but not cleaned (harmless under QEMU TCG, which
/// models no caches; needed on hardware for a guest that starts with its
/// MMU and caches off).
pub fn cacheflush<M: TableMem>(sh: &mut World<M>, op: &XenDomctl) -> Answer {
    let c: XenDomctlCacheflush = op.member();
    if c.nr_pfns > CACHEFLUSH_MAX_PFNS {
        log::debug!("d{}: cacheflush of {} pfns: -EINVAL", op.domain, c.nr_pfns);
        return Answer::err(Errno::EINVAL);
    }
    let Some(end) = c.start_pfn.checked_add(c.nr_pfns) else {
        log::debug!("d{}: cacheflush range wraps: -EINVAL", op.domain);
        return Answer::err(Errno::EINVAL);
    };
    let Some(d) = sh.domain(op.domain) else {
        return Answer::err(Errno::ESRCH);
    };
    let pm = d.physmap();
    let pages = (c.start_pfn..end)
        .filter(|&g| {
            pm.lookup(g)
                .is_some_and(|e| matches!(e.kind, P2mKind::Ram | P2mKind::Foreign { .. }))
        })
        .count();
    log::trace!(
        "d{}: cacheflush {:#x}+{}: {pages} RAM pages (no cache clean in hv's arch contract yet)",
        op.domain,
        c.start_pfn,
        c.nr_pfns
    );
    Answer::ok(false)
}
