//! Memory domctls: max_mem.

use pv_tlb::PAGE_SIZE;

use super::{get, with_domu, Answer, DOMCTL_SIZE, U};
use crate::domain::DomId;
use crate::world::World;

/// `XEN_DOMCTL_max_mem`: the domain's reservation (KiB).
pub fn max_mem<M>(sh: &mut World<M>, buf: &[u8; DOMCTL_SIZE], domain: DomId) -> Answer {
    with_domu(sh, domain, |d| {
        let kb = get::<8>(buf, U);
        d.physmap_mut().set_max_pages(kb / (PAGE_SIZE / 1024));
        Answer::ok(false)
    })
}
