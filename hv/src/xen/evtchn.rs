//! 2-level event channels (`event_channel_op`, hypercall 32) and their
//! delivery through the shared-info page and the per-vCPU `vcpu_info`.
//!
//! Sources (layouts and semantics, checked against, never copied):
//! - Xen `xen/include/public/event_channel.h` (`EVTCHNOP_*`, argument structs,
//!   `EVTCHNSTAT_*`), `xen/include/public/xen.h` (`struct vcpu_info`,
//!   `struct shared_info`, `VIRQ_*`), `xen/include/public/arch-arm.h`
//!   (`XEN_LEGACY_MAX_VCPUS` = 1, empty `arch_vcpu_info`, `xen_ulong_t` = u64,
//!   `GUEST_EVTCHN_PPI` = 31);
//! - Xen `xen/common/event_2l.c` (set_pending / unmask order of bit updates),
//!   `xen/common/event_channel.c` (port life cycle, errnos);
//! - Linux `drivers/xen/events/events_2l.c` (what the guest does with the
//!   bits: it clears `evtchn_upcall_pending`, then walks `evtchn_pending_sel`,
//!   then `pending & ~mask`), `drivers/xen/events/events_base.c`
//!   (bind_virq / bind_interdomain / close / unmask calls), and
//!   `arch/arm/xen/enlighten.c` (the upcall is the per-CPU PPI from the DT).
//!
//! Layout on arm64: `vcpu_info` = { u8 upcall_pending @0, u8 upcall_mask @1,
//! u64 pending_sel @8, vcpu_time_info @16 } (48 bytes); `shared_info` =
//! { vcpu_info\[1\] @0, u64 evtchn_pending\[64\] @48, u64 evtchn_mask\[64\] @560,
//! wc_version @1072, wc_sec @1076, wc_nsec @1080 }.
//!
//! Delivery (as `evtchn_2l_set_pending`): set the port's pending bit; if it
//! was clear and the port is not masked, set the word's bit in the target
//! vCPU's `evtchn_pending_sel`; if that was clear, set `evtchn_upcall_pending`;
//! if that was clear, inject the upcall PPI on the vCPU ([`IrqSink`]). All bit
//! updates are atomic ([`PhysMem::fetch_or_u64`]) because the guest clears
//! them concurrently on other pCPUs.

use alloc::vec::Vec;

use pv_tlb::PhysAddr;

use super::evtchn_fifo::{self, Fifo};
use super::Errno;
use crate::arch::PhysMem;
use crate::xen::abi::virq;

/// The event-channel upcall PPI (`GUEST_EVTCHN_PPI`, public/arch-arm.h): INTID 31.
pub const GUEST_EVTCHN_PPI: u32 = 31;

/// `EVTCHNOP_*` (public/event_channel.h).
pub mod op {
    #![allow(missing_docs)]
    pub const BIND_INTERDOMAIN: u32 = 0;
    pub const BIND_VIRQ: u32 = 1;
    pub const BIND_PIRQ: u32 = 2;
    pub const CLOSE: u32 = 3;
    pub const SEND: u32 = 4;
    pub const STATUS: u32 = 5;
    pub const ALLOC_UNBOUND: u32 = 6;
    pub const BIND_IPI: u32 = 7;
    pub const BIND_VCPU: u32 = 8;
    pub const UNMASK: u32 = 9;
    pub const RESET: u32 = 10;
    pub const INIT_CONTROL: u32 = 11;
    pub const EXPAND_ARRAY: u32 = 12;
    pub const SET_PRIORITY: u32 = 13;
}

/// `EVTCHNSTAT_*` (public/event_channel.h).
pub mod stat {
    #![allow(missing_docs)]
    pub const CLOSED: u32 = 0;
    pub const UNBOUND: u32 = 1;
    pub const INTERDOMAIN: u32 = 2;
    pub const PIRQ: u32 = 3;
    pub const VIRQ: u32 = 4;
    pub const IPI: u32 = 5;
}

/// `NR_VIRQS` (public/xen.h): VIRQ numbers are below this.
pub const NR_VIRQS: u32 = 24;
/// `DOMID_SELF` (public/xen.h).
pub const DOMID_SELF: u16 = 0x7ff0;
/// `DOMID_XEN` (public/xen.h): hv's own end of a channel (the console).
pub const DOMID_XEN: u16 = 0x7ff2;

/// Byte offsets in the shared-info page and `vcpu_info` (arm64, see the module doc).
pub mod layout {
    /// `vcpu_info.evtchn_upcall_pending` (u8; bit 0 of the first u64 word).
    pub const VI_UPCALL_PENDING: u64 = 0;
    /// `vcpu_info.evtchn_pending_sel` (u64).
    pub const VI_PENDING_SEL: u64 = 8;
    /// `sizeof(struct vcpu_info)` on arm64.
    pub const VCPU_INFO_SIZE: u64 = 48;
    /// `shared_info.evtchn_pending[]`.
    pub const SI_PENDING: u64 = 48;
    /// `shared_info.evtchn_mask[]`.
    pub const SI_MASK: u64 = 48 + 512;
    /// Ports of the 2-level ABI on a 64-bit guest (64 words of 64 bits).
    pub const NR_2L_PORTS: u32 = 64 * 64;
}

/// Ports hv gives a domain (port 0 is never handed out, as in Xen).
pub const MAX_PORTS: u32 = 1024;

/// Where the upcall interrupt goes (h9's vGIC; a recording fake in tests).
pub trait IrqSink {
    /// Make [`GUEST_EVTCHN_PPI`] pending on vCPU `vcpu` of domain `domid`
    /// (and kick the pCPU it runs on, if any).
    fn upcall(&mut self, domid: u16, vcpu: u32);
}

/// An [`IrqSink`] that records every upcall (host tests, and the run loop
/// until the vGIC can take them).
#[derive(Default, Debug)]
pub struct RecordingIrqSink {
    /// `(domid, vcpu)` in order.
    pub upcalls: Vec<(u16, u32)>,
}

impl IrqSink for RecordingIrqSink {
    fn upcall(&mut self, domid: u16, vcpu: u32) {
        self.upcalls.push((domid, vcpu));
    }
}

/// hv's own channel ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HvPort {
    /// The PV console ring (`HVM_PARAM_CONSOLE_EVTCHN`).
    Console,
}

/// What a port is bound to.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum PortState {
    /// Not in use.
    #[default]
    Free,
    /// Allocated, waiting for `remote` to bind to it.
    Unbound {
        /// The domain allowed to bind.
        remote: u16,
    },
    /// Connected to a port of another (or the same) domain.
    Interdomain {
        /// The other domain.
        remote: u16,
        /// Its port.
        port: u32,
    },
    /// A virtual IRQ.
    Virq(u32),
    /// An IPI channel.
    Ipi,
    /// Connected to hv itself.
    Hv(HvPort),
}

/// One port.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Port {
    /// Binding.
    pub state: PortState,
    /// The vCPU that gets its upcall.
    pub vcpu: u32,
}

/// Where a vCPU's `vcpu_info` is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VcpuInfoLoc {
    /// Not registered: vCPU 0 uses slot 0 of the shared-info page, others have none.
    Default,
    /// Registered with `VCPUOP_register_vcpu_info` (host address, pinned).
    At(PhysAddr),
}

/// The event-channel state of one domain.
#[derive(Debug)]
pub struct Evtchns {
    ports: Vec<Port>,
    vcpu_info: Vec<VcpuInfoLoc>,
    shared_info: Option<PhysAddr>,
    /// The FIFO ABI's state once the domain switched (`init_control`);
    /// `None`: 2-level.
    fifo: Option<Fifo>,
}

/// What happens after an `EVTCHNOP_send`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SendEffect {
    /// Delivered (or nothing to do).
    Done,
    /// The guest notified one of hv's ends.
    Hv(HvPort),
}

impl Evtchns {
    /// A table for `vcpus` vCPUs with the shared-info page at `shared_info` (host frame).
    #[must_use]
    pub fn new(vcpus: u32, shared_info: Option<PhysAddr>) -> Self {
        Self {
            ports: alloc::vec![Port::default(); 1],
            vcpu_info: alloc::vec![VcpuInfoLoc::Default; vcpus.max(1) as usize],
            shared_info,
            fifo: None,
        }
    }

    /// The shared-info frame.
    #[must_use]
    pub fn shared_info(&self) -> Option<PhysAddr> {
        self.shared_info
    }

    /// Number of vCPUs.
    #[must_use]
    pub fn vcpus(&self) -> u32 {
        self.vcpu_info.len() as u32
    }

    /// The state of `port`, if it exists and is in use.
    #[must_use]
    pub fn port(&self, port: u32) -> Option<Port> {
        self.ports
            .get(port as usize)
            .copied()
            .filter(|p| p.state != PortState::Free)
    }

    fn port_mut(&mut self, port: u32) -> Result<&mut Port, Errno> {
        match self.ports.get_mut(port as usize) {
            Some(p) if port != 0 && p.state != PortState::Free => Ok(p),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Allocate the lowest free port for `state` on `vcpu`.
    ///
    /// # Errors
    /// `-ENOSPC` when every port ([`MAX_PORTS`]) is in use, `-ENOMEM` if
    /// hv's heap cannot hold another.
    pub fn alloc(&mut self, state: PortState, vcpu: u32) -> Result<u32, Errno> {
        let free = self
            .ports
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, p)| p.state == PortState::Free)
            .map(|(i, _)| i);
        let i = match free {
            Some(i) => i,
            None if (self.ports.len() as u32) < MAX_PORTS => {
                // Bounded by MAX_PORTS per domain; a full heap is -ENOMEM, never an abort.
                self.ports.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
                self.ports.push(Port::default());
                self.ports.len() - 1
            }
            None => return Err(Errno::ENOSPC),
        };
        self.ports[i] = Port { state, vcpu };
        if let Some(f) = &mut self.fifo {
            f.port_bound(i as u32);
        }
        Ok(i as u32)
    }

    /// The host address of `vcpu`'s `vcpu_info`, if it has one.
    #[must_use]
    pub fn vcpu_info_pa(&self, vcpu: u32) -> Option<PhysAddr> {
        match self.vcpu_info.get(vcpu as usize)? {
            VcpuInfoLoc::At(pa) => Some(*pa),
            VcpuInfoLoc::Default if vcpu == 0 => self.shared_info,
            VcpuInfoLoc::Default => None,
        }
    }

    /// Whether `vcpu` has moved its `vcpu_info` with `VCPUOP_register_vcpu_info`.
    #[must_use]
    pub fn vcpu_info_registered(&self, vcpu: u32) -> bool {
        matches!(self.vcpu_info.get(vcpu as usize), Some(VcpuInfoLoc::At(_)))
    }

    /// `VCPUOP_register_vcpu_info` (after the caller translated and checked the
    /// address): place `vcpu`'s `vcpu_info` at `pa`, copy the current one
    /// there, mark every selector bit pending and raise an upcall, as Xen does
    /// so that nothing pending is lost in the move (xen/common/domain.c).
    ///
    /// # Errors
    /// `-ENOENT` for a vCPU that does not exist; `-EBUSY` if already registered;
    /// `-ENXIO` if the area would cross a page or is not 8-byte aligned (Xen's
    /// `map_guest_area`).
    pub fn register_vcpu_info<M: PhysMem + ?Sized>(
        &mut self,
        domid: u16,
        vcpu: u32,
        pa: PhysAddr,
        mem: &mut M,
        irq: &mut dyn IrqSink,
    ) -> Result<(), Errno> {
        let slot = self
            .vcpu_info
            .get(vcpu as usize)
            .copied()
            .ok_or(Errno::ENOENT)?;
        if slot != VcpuInfoLoc::Default {
            return Err(Errno::EBUSY);
        }
        if pa.page_offset() + layout::VCPU_INFO_SIZE > pv_tlb::PAGE_SIZE || !pa.is_aligned(8) {
            return Err(Errno::ENXIO);
        }
        let mut cur = [0u8; layout::VCPU_INFO_SIZE as usize];
        if let Some(old) = self.vcpu_info_pa(vcpu) {
            mem.read(old, &mut cur);
        }
        mem.write(pa, &cur);
        self.vcpu_info[vcpu as usize] = VcpuInfoLoc::At(pa);
        mem.fetch_or_u64(PhysAddr(pa.0 + layout::VI_PENDING_SEL), !0);
        self.mark_upcall(domid, vcpu, mem, irq);
        Ok(())
    }

    fn mark_upcall<M: PhysMem + ?Sized>(
        &self,
        domid: u16,
        vcpu: u32,
        mem: &mut M,
        irq: &mut dyn IrqSink,
    ) {
        let Some(vi) = self.vcpu_info_pa(vcpu) else {
            return;
        };
        let old = mem.fetch_or_u64(PhysAddr(vi.0 + layout::VI_UPCALL_PENDING), 1);
        if old & 0xff == 0 {
            irq.upcall(domid, vcpu);
        }
    }

    /// True if `vcpu`'s `evtchn_upcall_pending` is set (the run loop keeps the
    /// upcall PPI asserted while it is, as Xen's `vcpu_update_evtchn_irq`).
    #[must_use]
    pub fn upcall_pending<M: PhysMem + ?Sized>(&self, vcpu: u32, mem: &M) -> bool {
        let Some(vi) = self.vcpu_info_pa(vcpu) else {
            return false;
        };
        let mut b = [0u8; 1];
        mem.read(PhysAddr(vi.0 + layout::VI_UPCALL_PENDING), &mut b);
        b[0] != 0
    }

    /// Raise `port`: Xen's `evtchn_2l_set_pending` (see the module doc), or
    /// `evtchn_fifo_set_pending` once the domain uses the FIFO ABI.
    pub fn set_pending<M: PhysMem + ?Sized>(
        &mut self,
        domid: u16,
        port: u32,
        mem: &mut M,
        irq: &mut dyn IrqSink,
    ) {
        if let Some(f) = &mut self.fifo {
            let Some(p) = self.ports.get(port as usize).copied() else {
                return;
            };
            if p.state != PortState::Free && f.set_pending(port, p.vcpu, mem) {
                self.mark_upcall(domid, p.vcpu, mem, irq);
            }
            return;
        }
        let (Some(si), Some(p)) = (self.shared_info, self.port(port)) else {
            return;
        };
        let word = u64::from(port / 64);
        let bit = 1u64 << (port % 64);
        let old = mem.fetch_or_u64(PhysAddr(si.0 + layout::SI_PENDING + word * 8), bit);
        if old & bit != 0 {
            return;
        }
        if self.masked(port, mem) {
            return;
        }
        let Some(vi) = self.vcpu_info_pa(p.vcpu) else {
            return;
        };
        let sel = mem.fetch_or_u64(PhysAddr(vi.0 + layout::VI_PENDING_SEL), 1 << word);
        if sel & (1 << word) == 0 {
            self.mark_upcall(domid, p.vcpu, mem, irq);
        }
    }

    fn masked<M: PhysMem + ?Sized>(&self, port: u32, mem: &M) -> bool {
        let Some(si) = self.shared_info else {
            return true;
        };
        let mut b = [0u8; 8];
        mem.read(
            PhysAddr(si.0 + layout::SI_MASK + u64::from(port / 64) * 8),
            &mut b,
        );
        u64::from_le_bytes(b) & (1 << (port % 64)) != 0
    }

    /// `EVTCHNOP_unmask` (Xen's `evtchn_2l_unmask`): clear the mask bit; if
    /// the port is pending, deliver it now.
    ///
    /// # Errors
    /// `-EINVAL` for a port out of range.
    pub fn unmask<M: PhysMem + ?Sized>(
        &mut self,
        domid: u16,
        port: u32,
        mem: &mut M,
        irq: &mut dyn IrqSink,
    ) -> Result<(), Errno> {
        if port >= (self.ports.len() as u32) {
            return Err(Errno::EINVAL);
        }
        if let Some(f) = &self.fifo {
            // Xen's `evtchn_fifo_unmask`: clear MASKED, relink if pending.
            if f.unmask(port, mem) {
                self.set_pending(domid, port, mem, irq);
            }
            return Ok(());
        }
        let Some(si) = self.shared_info else {
            return Ok(());
        };
        let word = u64::from(port / 64);
        let bit = 1u64 << (port % 64);
        let old = mem.fetch_and_u64(PhysAddr(si.0 + layout::SI_MASK + word * 8), !bit);
        if old & bit == 0 {
            return Ok(());
        }
        let mut b = [0u8; 8];
        mem.read(PhysAddr(si.0 + layout::SI_PENDING + word * 8), &mut b);
        if u64::from_le_bytes(b) & bit == 0 {
            return Ok(());
        }
        let vcpu = self.ports[port as usize].vcpu;
        let Some(vi) = self.vcpu_info_pa(vcpu) else {
            return Ok(());
        };
        let sel = mem.fetch_or_u64(PhysAddr(vi.0 + layout::VI_PENDING_SEL), 1 << word);
        if sel & (1 << word) == 0 {
            self.mark_upcall(domid, vcpu, mem, irq);
        }
        Ok(())
    }

    /// The FIFO state, if the domain switched to the FIFO ABI.
    #[must_use]
    pub fn fifo(&self) -> Option<&Fifo> {
        self.fifo.as_ref()
    }

    /// Whether `vcpu` registered a FIFO control block (Xen's
    /// `map_control_block` refuses a second one with `-EINVAL`).
    #[must_use]
    pub fn fifo_control_registered(&self, vcpu: u32) -> bool {
        self.fifo
            .as_ref()
            .is_some_and(|f| f.control(vcpu).is_some())
    }

    /// `EVTCHNOP_init_control` (Xen's `evtchn_fifo_init_control`, after the
    /// caller translated and pinned the page): register `vcpu`'s control
    /// block at `pa` (host address). The domain's first one switches it to
    /// the FIFO ABI: every port bound so far keeps the default priority and
    /// its 2-level pending bit is carried over, raised again once its event
    /// array page is added (Xen's `setup_ports`).
    ///
    /// # Errors
    /// `-ENOENT` for a missing vCPU; `-EINVAL` for a block that crosses its
    /// page or is not 8-byte aligned, or a vCPU that already has one;
    /// `-ENOMEM` if hv's heap cannot hold the state (nothing changed).
    pub fn init_control<M: PhysMem + ?Sized>(
        &mut self,
        vcpu: u32,
        pa: PhysAddr,
        mem: &M,
    ) -> Result<(), Errno> {
        if vcpu >= self.vcpus() {
            return Err(Errno::ENOENT);
        }
        if pa.page_offset() > pv_tlb::PAGE_SIZE - evtchn_fifo::CONTROL_BLOCK_SIZE
            || !pa.is_aligned(8)
        {
            return Err(Errno::EINVAL);
        }
        if let Some(f) = &mut self.fifo {
            return f.set_control(vcpu, pa);
        }
        let mut f = Fifo::new(self.vcpus(), MAX_PORTS)?;
        f.set_control(vcpu, pa)?;
        let prev = (self.ports.len() as u32).min(layout::NR_2L_PORTS);
        if let Some(si) = self.shared_info {
            for port in 1..prev {
                let mut b = [0u8; 8];
                mem.read(
                    PhysAddr(si.0 + layout::SI_PENDING + u64::from(port / 64) * 8),
                    &mut b,
                );
                if u64::from_le_bytes(b) & (1 << (port % 64)) != 0 {
                    f.carry_pending(port);
                }
            }
        }
        self.fifo = Some(f);
        Ok(())
    }

    /// `EVTCHNOP_expand_array` (Xen's `add_page_to_event_array`, after the
    /// caller translated and pinned the page): add the event array page at
    /// `pa` (host frame) and raise every port of it that was raised while it
    /// was missing.
    ///
    /// # Errors
    /// `-EOPNOTSUPP` for a domain still on 2-level; `-ENOSPC` past
    /// `EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES`; `-ENOMEM`.
    pub fn expand_array<M: PhysMem + ?Sized>(
        &mut self,
        domid: u16,
        pa: PhysAddr,
        mem: &mut M,
        irq: &mut dyn IrqSink,
    ) -> Result<(), Errno> {
        let f = self.fifo.as_mut().ok_or(Errno::EOPNOTSUPP)?;
        let first = f.num_evtchns();
        f.add_page(pa)?;
        let end = f.num_evtchns().min(self.ports.len() as u32);
        for port in first..end {
            let saved = self.fifo.as_mut().is_some_and(|f| f.take_saved(port));
            if saved {
                self.set_pending(domid, port, mem, irq);
            }
        }
        Ok(())
    }

    /// Whether `expand_array` could take another page (else `-EOPNOTSUPP`
    /// / `-ENOSPC`, checked before the page is mapped, as Xen).
    ///
    /// # Errors
    /// As [`Evtchns::expand_array`].
    pub fn can_expand(&self) -> Result<(), Errno> {
        let f = self.fifo.as_ref().ok_or(Errno::EOPNOTSUPP)?;
        if f.nr_pages() >= evtchn_fifo::MAX_EVENT_ARRAY_PAGES {
            return Err(Errno::ENOSPC);
        }
        Ok(())
    }

    /// `EVTCHNOP_set_priority` (Xen's `evtchn_set_priority`).
    ///
    /// # Errors
    /// `-EINVAL` for a port out of range or a priority above 15; `-ENOSYS`
    /// for a domain on 2-level (it has no priorities).
    pub fn set_priority(&mut self, port: u32, priority: u32) -> Result<(), Errno> {
        if port >= self.ports.len() as u32 {
            return Err(Errno::EINVAL);
        }
        self.fifo
            .as_mut()
            .ok_or(Errno::ENOSYS)?
            .set_priority(port, priority)
    }

    /// `EVTCHNOP_bind_virq`: a new port for `virq` on `vcpu` (Xen's
    /// `evtchn_bind_virq`). A global VIRQ ([`virq::is_global`]: all but
    /// timer, debug, xenoprof, xenpmu) is bound on vCPU 0 only and once per
    /// domain, wherever [`Evtchns::bind_vcpu`] moved it since.
    ///
    /// # Errors
    /// `-EINVAL` for a VIRQ number out of range or a global VIRQ on a vCPU
    /// other than 0; `-ENOENT` for a missing vCPU; `-EEXIST` if the VIRQ is
    /// bound (on that vCPU; anywhere for a global one); `-ENOSPC`.
    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> Result<u32, Errno> {
        if virq >= NR_VIRQS {
            return Err(Errno::EINVAL);
        }
        if virq::is_global(virq) && vcpu != 0 {
            return Err(Errno::EINVAL);
        }
        if vcpu >= self.vcpus() {
            return Err(Errno::ENOENT);
        }
        if self.virq_port(virq, vcpu).is_some() {
            return Err(Errno::EEXIST);
        }
        self.alloc(PortState::Virq(virq), vcpu)
    }

    /// The port bound to `virq` on `vcpu`, if any (to raise a VIRQ). A
    /// global VIRQ has one port per domain: it is found whatever `vcpu`
    /// (Xen keeps it in vCPU 0's `virq_to_evtchn` and delivers it to the
    /// port's notify vCPU).
    #[must_use]
    pub fn virq_port(&self, virq: u32, vcpu: u32) -> Option<u32> {
        let global = virq::is_global(virq);
        self.ports
            .iter()
            .position(|p| p.state == PortState::Virq(virq) && (global || p.vcpu == vcpu))
            .map(|i| i as u32)
    }

    /// The port of hv's end `which`, if allocated.
    #[must_use]
    pub fn hv_port(&self, which: HvPort) -> Option<u32> {
        self.ports
            .iter()
            .position(|p| p.state == PortState::Hv(which))
            .map(|i| i as u32)
    }

    /// `EVTCHNOP_bind_vcpu`: deliver `port` to `vcpu` from now on.
    ///
    /// # Errors
    /// `-ENOENT` for a missing vCPU; `-EINVAL` for a free port or a per-vCPU VIRQ.
    pub fn bind_vcpu(&mut self, port: u32, vcpu: u32) -> Result<(), Errno> {
        if vcpu >= self.vcpus() {
            return Err(Errno::ENOENT);
        }
        let p = self.port_mut(port)?;
        match p.state {
            // Only global VIRQs may move (Xen's `evtchn_bind_vcpu`).
            PortState::Virq(v) if !virq::is_global(v) => Err(Errno::EINVAL),
            _ => {
                p.vcpu = vcpu;
                Ok(())
            }
        }
    }

    /// Free `port` locally (the other end, if any, is the caller's business).
    /// Returns what it was bound to.
    ///
    /// # Errors
    /// `-EINVAL` for a free or out-of-range port.
    pub fn free(&mut self, port: u32) -> Result<PortState, Errno> {
        let p = self.port_mut(port)?;
        let was = p.state;
        *p = Port::default();
        Ok(was)
    }

    /// Set the state of an existing port (for the interdomain handshake).
    fn set_state(&mut self, port: u32, state: PortState) {
        if let Some(p) = self.ports.get_mut(port as usize) {
            p.state = state;
        }
    }
}

/// Finds a domain's event channels (the run loop's domain list; a map in tests).
pub trait EventDomains {
    /// Domain `d`'s table.
    fn events(&mut self, d: u16) -> Option<&mut Evtchns>;
}

/// Everything an event-channel operation needs besides its argument.
pub struct EvtchnCtx<'a, M: PhysMem + ?Sized> {
    /// The calling domain.
    pub caller: u16,
    /// Host memory (shared-info and vcpu_info pages).
    pub mem: &'a mut M,
    /// Upcall injection.
    pub irq: &'a mut dyn IrqSink,
}

fn resolve(caller: u16, d: u16) -> u16 {
    if d == DOMID_SELF {
        caller
    } else {
        d
    }
}

/// `EVTCHNOP_alloc_unbound` for `dom` (DOMID_SELF or the caller; other
/// domains only for a privileged caller, checked by the caller) allowing
/// `remote` to bind.
///
/// # Errors
/// `-ESRCH` for an unknown domain; `-ENOSPC`.
pub fn alloc_unbound<W: EventDomains + ?Sized>(
    w: &mut W,
    caller: u16,
    dom: u16,
    remote: u16,
) -> Result<u32, Errno> {
    let d = resolve(caller, dom);
    let remote = resolve(caller, remote);
    w.events(d)
        .ok_or(Errno::ESRCH)?
        .alloc(PortState::Unbound { remote }, 0)
}

/// `EVTCHNOP_bind_interdomain`: connect a new local port of `caller` to
/// `remote_port` of `remote_dom`, which must be unbound for the caller.
///
/// # Errors
/// `-ESRCH` unknown domain; `-EINVAL` if the remote port is not unbound for
/// the caller; `-ENOSPC`.
pub fn bind_interdomain<W: EventDomains + ?Sized>(
    w: &mut W,
    caller: u16,
    remote_dom: u16,
    remote_port: u32,
) -> Result<u32, Errno> {
    let rd = resolve(caller, remote_dom);
    let rp = w
        .events(rd)
        .ok_or(Errno::ESRCH)?
        .port(remote_port)
        .ok_or(Errno::EINVAL)?;
    if rp.state != (PortState::Unbound { remote: caller }) {
        return Err(Errno::EINVAL);
    }
    let local = w.events(caller).ok_or(Errno::ESRCH)?.alloc(
        PortState::Interdomain {
            remote: rd,
            port: remote_port,
        },
        0,
    )?;
    if let Some(r) = w.events(rd) {
        r.set_state(
            remote_port,
            PortState::Interdomain {
                remote: caller,
                port: local,
            },
        );
    }
    Ok(local)
}

/// `EVTCHNOP_close`: free the port; an interdomain peer goes back to unbound
/// (as Xen's `evtchn_close`).
///
/// # Errors
/// `-EINVAL` for a free port; `-ESRCH` for an unknown caller.
pub fn close<W: EventDomains + ?Sized>(w: &mut W, caller: u16, port: u32) -> Result<(), Errno> {
    let was = w.events(caller).ok_or(Errno::ESRCH)?.free(port)?;
    if let PortState::Interdomain { remote, port: rp } = was {
        if let Some(r) = w.events(remote) {
            if r.port(rp)
                == Some(Port {
                    state: PortState::Interdomain {
                        remote: caller,
                        port,
                    },
                    vcpu: r.port(rp).map_or(0, |p| p.vcpu),
                })
            {
                r.set_state(rp, PortState::Unbound { remote: caller });
            }
        }
    }
    Ok(())
}

/// Xen's `evtchn_destroy` (called from `domain_kill`): every port of the
/// domain `gone_id` is closed, so each interdomain peer in another domain goes
/// back to unbound for `gone_id`, exactly as an `EVTCHNOP_close` would leave it.
/// `gone` is the table of the domain being torn down (already out of `w`).
/// Without this a peer keeps naming a port that no longer exists, and would
/// reach whatever domain is next given the same domid.
pub fn domain_destroyed<W: EventDomains + ?Sized>(w: &mut W, gone_id: u16, gone: &Evtchns) {
    for (port, p) in gone.ports.iter().enumerate() {
        let PortState::Interdomain { remote, port: rp } = p.state else {
            continue;
        };
        let Ok(port) = u32::try_from(port) else {
            continue;
        };
        if remote == gone_id {
            continue; // a loopback channel dies with the domain
        }
        if let Some(r) = w.events(remote) {
            let bound_to_us = r.port(rp).map(|q| q.state)
                == Some(PortState::Interdomain {
                    remote: gone_id,
                    port,
                });
            if bound_to_us {
                r.set_state(rp, PortState::Unbound { remote: gone_id });
            }
        }
    }
}

/// `EVTCHNOP_send`: raise the other end of `port`.
///
/// # Errors
/// `-EINVAL` for a free port or one that cannot be sent on (unbound, VIRQ).
pub fn send<W: EventDomains + ?Sized, M: PhysMem + ?Sized>(
    w: &mut W,
    ctx: &mut EvtchnCtx<'_, M>,
    port: u32,
) -> Result<SendEffect, Errno> {
    let caller = ctx.caller;
    let p = w
        .events(caller)
        .ok_or(Errno::ESRCH)?
        .port(port)
        .ok_or(Errno::EINVAL)?;
    match p.state {
        PortState::Interdomain { remote, port: rp } => {
            if let Some(r) = w.events(remote) {
                r.set_pending(remote, rp, ctx.mem, ctx.irq);
            }
            Ok(SendEffect::Done)
        }
        PortState::Ipi => {
            if let Some(me) = w.events(caller) {
                me.set_pending(caller, port, ctx.mem, ctx.irq);
            }
            Ok(SendEffect::Done)
        }
        PortState::Hv(h) => Ok(SendEffect::Hv(h)),
        // Xen: sending on an unbound port is allowed and does nothing.
        PortState::Unbound { .. } => Ok(SendEffect::Done),
        PortState::Virq(_) | PortState::Free => Err(Errno::EINVAL),
    }
}

/// The `union u` of `struct evtchn_status` plus `status` and `vcpu`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Status {
    /// `EVTCHNSTAT_*`.
    pub status: u32,
    /// Notified vCPU.
    pub vcpu: u32,
    /// First union word (domid, pirq or virq).
    pub u0: u32,
    /// Second union word (interdomain port).
    pub u1: u32,
}

/// `EVTCHNOP_status` of `port` of domain `d`.
///
/// # Errors
/// `-ESRCH` unknown domain; `-EINVAL` for a port out of range.
pub fn status<W: EventDomains + ?Sized>(w: &mut W, d: u16, port: u32) -> Result<Status, Errno> {
    let t = w.events(d).ok_or(Errno::ESRCH)?;
    if port >= MAX_PORTS {
        return Err(Errno::EINVAL);
    }
    let p = t.port(port).unwrap_or_default();
    let (status, u0, u1) = match p.state {
        PortState::Free => (stat::CLOSED, 0, 0),
        PortState::Unbound { remote } => (stat::UNBOUND, u32::from(remote), 0),
        PortState::Interdomain { remote, port } => (stat::INTERDOMAIN, u32::from(remote), port),
        PortState::Virq(v) => (stat::VIRQ, v, 0),
        PortState::Ipi => (stat::IPI, 0, 0),
        PortState::Hv(_) => (stat::INTERDOMAIN, u32::from(DOMID_XEN), 0),
    };
    Ok(Status {
        status,
        vcpu: p.vcpu,
        u0,
        u1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::fake::FakeMem;
    use alloc::collections::BTreeMap;

    struct World(BTreeMap<u16, Evtchns>);
    impl EventDomains for World {
        fn events(&mut self, d: u16) -> Option<&mut Evtchns> {
            self.0.get_mut(&d)
        }
    }

    const SI1: PhysAddr = PhysAddr(0x8000_0000);
    const SI2: PhysAddr = PhysAddr(0x8000_1000);
    const VI1: PhysAddr = PhysAddr(0x8000_2040);

    fn word(mem: &FakeMem, pa: u64) -> u64 {
        let mut b = [0u8; 8];
        mem.read(PhysAddr(pa), &mut b);
        u64::from_le_bytes(b)
    }

    fn setup() -> (World, FakeMem) {
        let mut w = World(BTreeMap::new());
        w.0.insert(1, Evtchns::new(2, Some(SI1)));
        w.0.insert(2, Evtchns::new(1, Some(SI2)));
        let mut mem = FakeMem::new(0x8000_0000, 0x10_0000);
        for f in [SI1, SI2, PhysAddr(0x8000_2000)] {
            mem.zero_frame(f);
        }
        (w, mem)
    }

    #[test]
    fn interdomain_send_sets_bits_and_injects_once() {
        let (mut w, mut mem) = setup();
        let mut irq = RecordingIrqSink::default();
        // d2 offers a port to d1; d1 binds it.
        let p2 = alloc_unbound(&mut w, 2, DOMID_SELF, 1).unwrap();
        assert_eq!(p2, 1, "port 0 is never handed out");
        assert_eq!(
            bind_interdomain(&mut w, 1, 3, p2),
            Err(Errno::ESRCH),
            "unknown domain"
        );
        let p1 = bind_interdomain(&mut w, 1, 2, p2).unwrap();
        assert_eq!(
            bind_interdomain(&mut w, 1, 2, p2),
            Err(Errno::EINVAL),
            "already bound"
        );
        assert_eq!(
            status(&mut w, 2, p2).unwrap(),
            Status {
                status: stat::INTERDOMAIN,
                vcpu: 0,
                u0: 1,
                u1: p1
            }
        );
        let mut ctx = EvtchnCtx {
            caller: 1,
            mem: &mut mem,
            irq: &mut irq,
        };
        assert_eq!(send(&mut w, &mut ctx, p1), Ok(SendEffect::Done));
        // d2's pending bit, selector bit 0, upcall_pending (vCPU 0 in shared info).
        assert_eq!(word(&mem, SI2.0 + layout::SI_PENDING), 1 << p2);
        assert_eq!(word(&mem, SI2.0 + layout::VI_PENDING_SEL), 1);
        assert_eq!(word(&mem, SI2.0) & 0xff, 1);
        assert_eq!(irq.upcalls, [(2, 0)]);
        // Sending again while pending: no second upcall.
        let mut ctx = EvtchnCtx {
            caller: 1,
            mem: &mut mem,
            irq: &mut irq,
        };
        send(&mut w, &mut ctx, p1).unwrap();
        assert_eq!(irq.upcalls.len(), 1);
        // The guest clears upcall_pending, the selector and the bit; a new send injects again.
        mem.write(SI2, &[0u8; 16]);
        mem.write(PhysAddr(SI2.0 + layout::SI_PENDING), &[0u8; 8]);
        let mut ctx = EvtchnCtx {
            caller: 1,
            mem: &mut mem,
            irq: &mut irq,
        };
        send(&mut w, &mut ctx, p1).unwrap();
        assert_eq!(irq.upcalls, [(2, 0), (2, 0)]);
        // Close on d1: d2's end becomes unbound for d1 again; d1's port is free.
        close(&mut w, 1, p1).unwrap();
        assert_eq!(status(&mut w, 2, p2).unwrap().status, stat::UNBOUND);
        assert_eq!(status(&mut w, 1, p1).unwrap().status, stat::CLOSED);
        assert_eq!(close(&mut w, 1, p1), Err(Errno::EINVAL));
        let mut ctx = EvtchnCtx {
            caller: 1,
            mem: &mut mem,
            irq: &mut irq,
        };
        assert_eq!(send(&mut w, &mut ctx, p1), Err(Errno::EINVAL));
        // Port reuse: the freed port is handed out again.
        assert_eq!(alloc_unbound(&mut w, 1, DOMID_SELF, 2), Ok(p1));
    }

    #[test]
    fn destroying_a_domain_unbinds_its_peers() {
        let (mut w, _mem) = setup();
        // d2 offers two ports to d1; d1 binds both; d1 also has a loopback channel.
        let a2 = alloc_unbound(&mut w, 2, DOMID_SELF, 1).unwrap();
        let b2 = alloc_unbound(&mut w, 2, DOMID_SELF, 1).unwrap();
        bind_interdomain(&mut w, 1, 2, a2).unwrap();
        bind_interdomain(&mut w, 1, 2, b2).unwrap();
        let l1 = alloc_unbound(&mut w, 1, DOMID_SELF, 1).unwrap();
        bind_interdomain(&mut w, 1, 1, l1).unwrap();
        let gone = w.0.remove(&1).unwrap();
        domain_destroyed(&mut w, 1, &gone);
        let st = status(&mut w, 2, a2).unwrap();
        assert_eq!(
            (st.status, st.u0),
            (stat::UNBOUND, 1),
            "peer back to unbound for d1"
        );
        assert_eq!(status(&mut w, 2, b2).unwrap().status, stat::UNBOUND);
        // A new domain with the same id cannot reach d2 through the stale port.
        w.0.insert(1, Evtchns::new(1, Some(SI1)));
        let mut mem = FakeMem::new(0x8000_0000, 0x10_0000);
        mem.zero_frame(SI1);
        mem.zero_frame(SI2);
        let mut irq = RecordingIrqSink::default();
        let mut ctx = EvtchnCtx {
            caller: 2,
            mem: &mut mem,
            irq: &mut irq,
        };
        assert_eq!(send(&mut w, &mut ctx, a2), Ok(SendEffect::Done));
        assert!(irq.upcalls.is_empty(), "nothing reaches the new d1");
    }

    #[test]
    fn masked_port_stays_quiet_until_unmask() {
        let (mut w, mut mem) = setup();
        let mut irq = RecordingIrqSink::default();
        let d1 = w.events(1).unwrap();
        let port = d1.alloc(PortState::Ipi, 1).unwrap();
        // Mask it (guest sets the mask bit), register vCPU 1's vcpu_info.
        mem.write(
            PhysAddr(SI1.0 + layout::SI_MASK),
            &(1u64 << port).to_le_bytes(),
        );
        let d1 = w.0.get_mut(&1).unwrap();
        d1.register_vcpu_info(1, 1, VI1, &mut mem, &mut irq)
            .unwrap();
        // Registration marks everything pending and raises one upcall.
        assert_eq!(word(&mem, VI1.0 + layout::VI_PENDING_SEL), !0);
        assert_eq!(irq.upcalls, [(1, 1)]);
        assert_eq!(
            d1.register_vcpu_info(1, 1, VI1, &mut mem, &mut irq),
            Err(Errno::EBUSY),
            "twice"
        );
        assert_eq!(
            d1.register_vcpu_info(1, 5, VI1, &mut mem, &mut irq),
            Err(Errno::ENOENT)
        );
        assert_eq!(
            d1.register_vcpu_info(1, 0, PhysAddr(0x8000_2fe0), &mut mem, &mut irq),
            Err(Errno::ENXIO),
            "crosses a page"
        );
        // The guest handles the spurious upcall.
        mem.write(VI1, &[0u8; 16]);
        irq.upcalls.clear();
        d1.set_pending(1, port, &mut mem, &mut irq);
        assert_eq!(word(&mem, SI1.0 + layout::SI_PENDING), 1 << port);
        assert_eq!(word(&mem, VI1.0 + layout::VI_PENDING_SEL), 0, "masked");
        assert!(irq.upcalls.is_empty());
        assert!(!d1.upcall_pending(1, &mem));
        d1.unmask(1, port, &mut mem, &mut irq).unwrap();
        assert_eq!(word(&mem, SI1.0 + layout::SI_MASK), 0);
        assert_eq!(word(&mem, VI1.0 + layout::VI_PENDING_SEL), 1);
        assert_eq!(irq.upcalls, [(1, 1)], "delivered to the port's vCPU");
        assert!(d1.upcall_pending(1, &mem));
        // Unmasking an unmasked port does nothing more.
        d1.unmask(1, port, &mut mem, &mut irq).unwrap();
        assert_eq!(irq.upcalls.len(), 1);
        assert_eq!(
            d1.unmask(1, MAX_PORTS + 5, &mut mem, &mut irq),
            Err(Errno::EINVAL)
        );
    }

    /// Global VIRQs (VIRQ_DOM_EXC 3, VIRQ_CONSOLE 2) as Xen's
    /// `evtchn_bind_virq` / `evtchn_bind_vcpu`: vCPU 0 only, once per
    /// domain, movable; the trace's xenstored binds DOM_EXC then moves it.
    #[test]
    fn global_virqs_bind_on_vcpu0_and_move() {
        let (mut w, mut mem) = setup();
        let mut irq = RecordingIrqSink::default();
        let d1 = w.events(1).unwrap();
        assert_eq!(d1.bind_virq(virq::DOM_EXC, 1), Err(Errno::EINVAL));
        let p = d1.bind_virq(virq::DOM_EXC, 0).unwrap();
        assert_eq!(d1.bind_virq(virq::DOM_EXC, 0), Err(Errno::EEXIST));
        d1.bind_vcpu(p, 1).unwrap();
        assert_eq!(d1.port(p).unwrap().vcpu, 1);
        assert_eq!(
            d1.bind_virq(virq::DOM_EXC, 0),
            Err(Errno::EEXIST),
            "still bound, though moved"
        );
        assert_eq!(d1.virq_port(virq::DOM_EXC, 0), Some(p));
        assert_eq!(d1.virq_port(virq::DOM_EXC, 1), Some(p));
        // Raised on the vCPU it moved to.
        d1.register_vcpu_info(1, 1, VI1, &mut mem, &mut irq)
            .unwrap();
        mem.write(VI1, &[0u8; 16]);
        irq.upcalls.clear();
        d1.set_pending(1, p, &mut mem, &mut irq);
        assert_eq!(irq.upcalls, [(1, 1)]);
        // The console VIRQ too (dom0's hvc0 binds it on vCPU 0 and re-binds it there).
        let c = d1.bind_virq(virq::CONSOLE, 0).unwrap();
        assert_eq!(d1.bind_vcpu(c, 0), Ok(()));
        // Per-vCPU VIRQs stay where they were bound.
        let t = d1.bind_virq(virq::TIMER, 1).unwrap();
        assert_eq!(d1.bind_vcpu(t, 0), Err(Errno::EINVAL));
        assert_eq!(d1.virq_port(virq::TIMER, 0), None);
    }

    #[test]
    fn virq_binding_and_vcpu_moves() {
        let (mut w, mut mem) = setup();
        let mut irq = RecordingIrqSink::default();
        let d1 = w.events(1).unwrap();
        let t = d1.bind_virq(0, 1).unwrap();
        assert_eq!(d1.bind_virq(0, 1), Err(Errno::EEXIST));
        assert_eq!(d1.bind_virq(0, 2), Err(Errno::ENOENT));
        assert_eq!(d1.bind_virq(NR_VIRQS, 0), Err(Errno::EINVAL));
        let t0 = d1.bind_virq(0, 0).unwrap();
        assert_ne!(t, t0);
        assert_eq!(d1.virq_port(0, 1), Some(t));
        assert_eq!(d1.bind_vcpu(t, 0), Err(Errno::EINVAL), "per-vCPU VIRQ");
        // vCPU 1 has no vcpu_info yet: nothing can be delivered, no upcall.
        d1.set_pending(1, t, &mut mem, &mut irq);
        assert!(irq.upcalls.is_empty());
        // An IPI port moved to vCPU 1 after it registered.
        let ipi = d1.alloc(PortState::Ipi, 0).unwrap();
        d1.bind_vcpu(ipi, 1).unwrap();
        d1.register_vcpu_info(1, 1, VI1, &mut mem, &mut irq)
            .unwrap();
        mem.write(VI1, &[0u8; 16]);
        irq.upcalls.clear();
        let mut ctx = EvtchnCtx {
            caller: 1,
            mem: &mut mem,
            irq: &mut irq,
        };
        assert_eq!(send(&mut w, &mut ctx, ipi), Ok(SendEffect::Done));
        assert_eq!(irq.upcalls, [(1, 1)]);
        let s = status(&mut w, 1, ipi).unwrap();
        assert_eq!((s.status, s.vcpu), (stat::IPI, 1));
        assert_eq!(status(&mut w, 1, t0).unwrap().u0, 0);
        // Sending on a VIRQ port is refused; an hv port reports itself.
        let mut ctx = EvtchnCtx {
            caller: 1,
            mem: &mut mem,
            irq: &mut irq,
        };
        assert_eq!(send(&mut w, &mut ctx, t0), Err(Errno::EINVAL));
        let c = w
            .events(1)
            .unwrap()
            .alloc(PortState::Hv(HvPort::Console), 0)
            .unwrap();
        let mut ctx = EvtchnCtx {
            caller: 1,
            mem: &mut mem,
            irq: &mut irq,
        };
        assert_eq!(
            send(&mut w, &mut ctx, c),
            Ok(SendEffect::Hv(HvPort::Console))
        );
        assert_eq!(w.events(1).unwrap().hv_port(HvPort::Console), Some(c));
    }

    #[test]
    fn ports_run_out_cleanly() {
        let mut e = Evtchns::new(1, None);
        for i in 1..MAX_PORTS {
            assert_eq!(e.alloc(PortState::Ipi, 0), Ok(i));
        }
        assert_eq!(e.alloc(PortState::Ipi, 0), Err(Errno::ENOSPC));
        e.free(7).unwrap();
        assert_eq!(e.alloc(PortState::Ipi, 0), Ok(7));
    }
}
