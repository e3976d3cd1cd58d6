//! Memory domctls: max_mem.

use pv_tlb::PAGE_SIZE;

use super::{with_domu, Answer};
use crate::world::World;
use crate::xen::abi::{XenDomctl, XenDomctlMaxMem};

/// `XEN_DOMCTL_max_mem`: the domain's reservation (KiB).
pub fn max_mem<M>(sh: &mut World<M>, op: &XenDomctl) -> Answer {
    let m: XenDomctlMaxMem = op.member();
    with_domu(sh, op.domain, |d| {
        d.physmap_mut()
            .set_max_pages(m.max_memkb / (PAGE_SIZE / 1024));
        Answer::ok(false)
    })
}
