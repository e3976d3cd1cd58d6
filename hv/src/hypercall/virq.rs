//! Global VIRQs raised by hv itself: `VIRQ_DOM_EXC` when a domain shuts
//! down, dies or is destroyed (Xen's `send_global_virq(VIRQ_DOM_EXC)` in
//! xen/common/domain.c `__domain_finalise_shutdown`, `domain_kill`,
//! `complete_domain_destroy`), which xenstored binds to notice `@releaseDomain`.
//!
//! A global VIRQ goes to its handler domain: Xen's `get_global_virq_handler`
//! is the hardware domain unless the toolstack set another
//! (`XEN_DOMCTL_set_virq_handler`, which hv does not offer); hv's is the
//! first privileged domain. It is raised on the port the handler bound
//! (on vCPU 0, [`crate::xen::evtchn::Evtchns::bind_virq`]) and delivered to
//! the vCPU that port was moved to. No port bound: nothing happens, as in Xen.

use crate::arch::PhysMem;
use crate::domain::{DomId, Domain};
use crate::xen::abi::virq;
use crate::xen::evtchn::{IrqSink, RecordingIrqSink};

/// The domain that receives global VIRQs: the privileged domain with the
/// lowest domid (hv's dom0), if any.
#[must_use]
pub fn global_virq_handler(domains: &[Domain]) -> Option<DomId> {
    domains
        .iter()
        .filter(|d| d.privileged && d.ending.is_none())
        .map(|d| d.id)
        .min()
}

/// Raise global VIRQ `v` on its handler domain; the upcalls it needs go to
/// `irq`. Returns the handler's port, if one was bound.
pub fn send_global_virq<M: PhysMem + ?Sized>(
    domains: &mut [Domain],
    mem: &mut M,
    v: u32,
    irq: &mut dyn IrqSink,
) -> Option<u32> {
    debug_assert!(virq::is_global(v));
    let id = global_virq_handler(domains)?;
    let d = domains.iter_mut().find(|d| d.id == id)?;
    let port = d.xen.evtchn.virq_port(v, 0)?;
    d.xen.evtchn.set_pending(id, port, mem, irq);
    Some(port)
}

/// Global VIRQ `v` from outside a hypercall (the run loop; hv's console
/// input for `VIRQ_CONSOLE`): raised on its handler and the upcall injected
/// at once. Returns the handler's port, if one was bound.
pub fn raise_global<M: PhysMem + ?Sized>(
    domains: &mut [Domain],
    mem: &mut M,
    v: u32,
) -> Option<u32> {
    let mut irq = RecordingIrqSink::default();
    let port = send_global_virq(domains, mem, v, &mut irq)?;
    crate::world::deliver_upcalls(domains, &irq.upcalls);
    Some(port)
}

/// `VIRQ_DOM_EXC` after a domain ended (the run loop's `drop_vcpu`).
pub fn dom_exc<M: PhysMem + ?Sized>(domains: &mut [Domain], mem: &mut M) {
    let _ = raise_global(domains, mem, virq::DOM_EXC);
}
