//! What a Linux domU needs from "Xen" beyond the basic calls: the per-domain
//! state (shared-info page, event channels, grant table, HVM params, the PV
//! console ring, per-vCPU runstate areas). The calls that use it
//! (`event_channel_op`, `grant_table_op`, `vcpu_op`, `hvm_op`, `vm_assist`)
//! are in [`crate::hypercall`].
//!
//! Checked against (never copied): Linux `arch/arm/xen/enlighten.c`
//! (`xen_guest_init`: add_to_physmap of shared info, vcpu_info registration,
//! grant frames; `xen_starting_cpu`), `drivers/xen/time.c`
//! (`xen_setup_runstate_info` BUG()s unless register_runstate_memory_area
//! succeeds; vm_assist runstate_update_flag), `drivers/tty/hvc/hvc_xen.c`
//! (`xen_hvm_console_init`: HVM_PARAM_CONSOLE_EVTCHN and _PFN must both be
//! non-zero), `drivers/xen/xenbus/xenbus_probe.c` (HVM_PARAM_STORE_PFN = 0
//! means no xenstore: xenbus stays off); Xen public headers `vcpu.h`
//! (`VCPUOP_*`, `struct vcpu_register_vcpu_info` {u64 mfn @0, u32 offset @8,
//! u32 rsvd @12}, `struct vcpu_runstate_info` {int state @0, u64
//! state_entry_time @8, u64 time\[4\] @16}), `hvm/params.h` (`HVM_PARAM_*`),
//! `hvm/hvm_op.h` (`struct xen_hvm_param` {u16 domid @0, u32 index @4, u64
//! value @8}), `xen.h` (`VMASST_*`, `struct multicall_entry` {u64 op, i64
//! result, u64 args\[6\]} = 64 bytes on arm64), `arch-arm.h`
//! (`GUEST_MAGIC_BASE` 0x39000000; libxl's console page is magic pfn 0).

use alloc::vec::Vec;

use memops::physmap::P2mKind;
use memops::{FrameTable, Physmap, S2Attrs, TableMem};
use pv_tlb::PhysAddr;

use super::console::{ConsoleLine, ConsoleSink};
use super::evtchn::{self, Evtchns, HvPort, IrqSink};
use super::grant::{self, GrantTable};
use super::Errno;
use crate::arch::PhysMem;

/// `GUEST_MAGIC_BASE` (public/arch-arm.h): hv's magic pages (console ring first).
pub const GUEST_MAGIC_BASE: u64 = 0x3900_0000;
/// The console ring's gfn (`HVM_PARAM_CONSOLE_PFN`).
pub const CONSOLE_GFN: u64 = GUEST_MAGIC_BASE >> 12;

/// Pool frames [`DomainXen::setup`] takes: shared info, console ring, the
/// grant table's initial frames (it grows later: [`DomainXen::grow_grant`]).
pub const XEN_FRAMES: u64 = 2 + grant::INITIAL_NR_GRANT_FRAMES as u64;

/// `HVM_PARAM_*` (public/hvm/params.h).
pub mod hvm_param {
    #![allow(missing_docs)]
    pub const CALLBACK_IRQ: u32 = 0;
    pub const STORE_PFN: u32 = 1;
    pub const STORE_EVTCHN: u32 = 2;
    pub const CONSOLE_PFN: u32 = 17;
    pub const CONSOLE_EVTCHN: u32 = 18;
    pub const MONITOR_RING_PFN: u32 = 28;
    /// `HVM_NR_PARAMS`.
    pub const NR: u32 = 39;
}

/// `HVMOP_set_param` / `HVMOP_get_param` (public/hvm/hvm_op.h).
pub mod hvmop {
    #![allow(missing_docs)]
    pub const SET_PARAM: u32 = 0;
    pub const GET_PARAM: u32 = 1;
}

/// `VCPUOP_*` (public/vcpu.h).
pub mod vcpuop {
    #![allow(missing_docs)]
    pub const IS_UP: u32 = 3;
    pub const GET_RUNSTATE_INFO: u32 = 4;
    pub const REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
    pub const REGISTER_VCPU_INFO: u32 = 10;
    pub const REGISTER_RUNSTATE_PHYS_AREA: u32 = 14;
}

/// `VMASST_*` (public/xen.h).
pub mod vmasst {
    #![allow(missing_docs)]
    pub const CMD_ENABLE: u32 = 0;
    pub const CMD_DISABLE: u32 = 1;
    pub const TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;
}

/// `RUNSTATE_*` (public/vcpu.h).
pub mod runstate {
    #![allow(missing_docs)]
    pub const RUNNING: u32 = 0;
    pub const RUNNABLE: u32 = 1;
    pub const BLOCKED: u32 = 2;
    pub const OFFLINE: u32 = 3;
    /// `XEN_RUNSTATE_UPDATE`: bit 63 of `state_entry_time` while hv writes.
    pub const UPDATE: u64 = 1 << 63;
    /// `sizeof(struct vcpu_runstate_info)`.
    pub const SIZE: usize = 48;
}

/// Where a vCPU's runstate area is and what it says (a vCPU starts offline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runstate {
    /// The guest address given to `VCPUOP_register_runstate_memory_area` (a
    /// guest *virtual* address on Arm), or a guest physical one with `phys`.
    pub area: Option<u64>,
    /// The area is a guest physical address (`register_runstate_phys_area`).
    pub phys: bool,
    /// Current `RUNSTATE_*`.
    pub state: u32,
    /// When it was entered (ns).
    pub entry: u64,
    /// Time spent in each state (ns).
    pub time: [u64; 4],
}

impl Default for Runstate {
    fn default() -> Self {
        Self {
            area: None,
            phys: false,
            state: runstate::OFFLINE,
            entry: 0,
            time: [0; 4],
        }
    }
}

impl Runstate {
    /// Switch to `state` at `now` (ns), accounting the time spent in the old one.
    pub fn switch(&mut self, state: u32, now: u64) {
        if let Some(t) = self.time.get_mut(self.state as usize) {
            *t = t.wrapping_add(now.saturating_sub(self.entry));
        }
        self.state = state;
        self.entry = now;
    }

    /// `struct vcpu_runstate_info` bytes (with `flag` or-ed into state_entry_time).
    #[must_use]
    pub fn encode(&self, flag: u64) -> [u8; runstate::SIZE] {
        let mut b = [0u8; runstate::SIZE];
        b[0..4].copy_from_slice(&self.state.to_le_bytes());
        b[8..16].copy_from_slice(&(self.entry | flag).to_le_bytes());
        for (i, t) in self.time.iter().enumerate() {
            b[16 + i * 8..24 + i * 8].copy_from_slice(&t.to_le_bytes());
        }
        b
    }
}

/// The Xen-interface state of one domain.
#[derive(Debug)]
pub struct DomainXen {
    /// Event channels (and the shared-info page they live in).
    pub evtchn: Evtchns,
    /// The grant table.
    pub grant: GrantTable,
    /// `HVM_PARAM_*` values.
    pub params: [u64; hvm_param::NR as usize],
    /// The PV console ring page (host frame), mapped at [`CONSOLE_GFN`].
    pub console_ring: Option<PhysAddr>,
    /// Per-vCPU runstate.
    pub runstate: Vec<Runstate>,
    /// `VMASST_TYPE_runstate_update_flag` enabled.
    pub runstate_update_flag: bool,
    /// Bytes drained from the console ring so far.
    pub console_bytes: u64,
    /// The event-channel upcall PPI (INTID): Xen's `GUEST_EVTCHN_PPI` for a
    /// domU, the PPI chosen for the hardware domain (Xen's
    /// `vgic_allocate_ppi` in domain_build.c `evtchn_allocate`), as its DTB says.
    pub upcall_ppi: u32,
    /// Every hv-owned frame of the domain (released at teardown).
    frames: Vec<PhysAddr>,
    /// Guest RAM frames hv keeps a host address of (registered `vcpu_info`
    /// areas), each with one extra page reference (Xen's `map_guest_area`
    /// takes one with `get_page_from_gfn`): a `decrease_reservation` of the
    /// gfn only drops the allocation reference, so the frame cannot go back to
    /// the pool, nor to another domain, while hv may still write to it. Put
    /// at teardown ([`DomainXen::release`]).
    pinned: Vec<PhysAddr>,
}

impl Default for DomainXen {
    fn default() -> Self {
        Self {
            evtchn: Evtchns::new(1, None),
            grant: GrantTable::default(),
            params: [0; hvm_param::NR as usize],
            console_ring: None,
            runstate: alloc::vec![Runstate::default()],
            runstate_update_flag: false,
            console_bytes: 0,
            upcall_ppi: evtchn::GUEST_EVTCHN_PPI,
            frames: Vec::new(),
            pinned: Vec::new(),
        }
    }
}

impl DomainXen {
    /// Set up what a guest booted by hv gets: a zeroed shared-info page,
    /// a grant table of [`grant::INITIAL_NR_GRANT_FRAMES`] that may grow to
    /// [`grant::DEFAULT_MAX_GRANT_FRAMES`], the console ring mapped at
    /// [`CONSOLE_GFN`] with an event channel whose other end is hv, and the
    /// HVM params naming them (store PFN and event channel stay 0: no xenstore).
    /// Frames come from `pool` owned by `domid`.
    ///
    /// # Errors
    /// `memops::Error` if the pool is empty or the ring cannot be mapped
    /// (everything taken is given back).
    pub fn setup<M: PhysMem + TableMem>(
        domid: u16,
        vcpus: u32,
        physmap: &mut Physmap,
        mem: &mut M,
        pool: &mut FrameTable,
    ) -> Result<Self, memops::Error> {
        let max = grant::DEFAULT_MAX_GRANT_FRAMES;
        Self::setup_with(domid, vcpus, physmap, mem, pool, true, max)
    }

    /// What the hardware domain gets ([`DomainXen::setup`] without the
    /// console ring: Xen gives dom0 no `HVM_PARAM_CONSOLE_*`, its console is
    /// `console_io`), with `upcall_ppi` as its event-channel PPI and a grant
    /// table that may grow to `max_grant` frames (Xen's
    /// `gnttab_dom0_frames()`: the size of the region its DTB names).
    /// Nothing is mapped in its physmap (its IPA space is the host's layout;
    /// Linux maps shared info and grant frames where it chooses).
    ///
    /// # Errors
    /// `memops::Error` if the pool is empty (everything taken is given back).
    #[allow(clippy::too_many_arguments)]
    pub fn setup_hwdom<M: PhysMem + TableMem>(
        domid: u16,
        vcpus: u32,
        physmap: &mut Physmap,
        mem: &mut M,
        pool: &mut FrameTable,
        upcall_ppi: u32,
        max_grant: u32,
    ) -> Result<Self, memops::Error> {
        let mut x = Self::setup_with(domid, vcpus, physmap, mem, pool, false, max_grant)?;
        x.upcall_ppi = upcall_ppi;
        Ok(x)
    }

    fn setup_with<M: PhysMem + TableMem>(
        domid: u16,
        vcpus: u32,
        physmap: &mut Physmap,
        mem: &mut M,
        pool: &mut FrameTable,
        ring: bool,
        max_grant: u32,
    ) -> Result<Self, memops::Error> {
        let mut frames = Vec::new();
        let n = XEN_FRAMES as usize;
        for _ in 0..n {
            match pool.alloc(domid, 0) {
                Ok(pa) => {
                    mem.zero_frame(pa);
                    frames.push(pa);
                }
                Err(e) => {
                    for f in frames {
                        let _ = pool.put(f);
                    }
                    return Err(e);
                }
            }
        }
        let si = frames[0];
        let evtchn = Evtchns::new(vcpus, Some(si));
        let params = [0u64; hvm_param::NR as usize];
        let mut x = Self {
            evtchn,
            grant: GrantTable::new(
                frames[2..].to_vec(),
                max_grant.max(grant::INITIAL_NR_GRANT_FRAMES),
            ),
            params,
            console_ring: None,
            runstate: alloc::vec![Runstate::default(); vcpus.max(1) as usize],
            runstate_update_flag: false,
            console_bytes: 0,
            upcall_ppi: evtchn::GUEST_EVTCHN_PPI,
            frames,
            pinned: Vec::new(),
        };
        if ring {
            if let Err(e) = x.attach_hv_console(physmap, mem) {
                for f in x.frames {
                    let _ = pool.put(f);
                }
                return Err(e);
            }
        }
        Ok(x)
    }

    /// What a domain created by `XEN_DOMCTL_createdomain` gets
    /// ([`DomainXen::setup`] without the console ring for now): Xen's
    /// toolstack gives it a console of its own (xenconsoled's ring at
    /// `GUEST_MAGIC_BASE`, `HVM_PARAM_CONSOLE_*`, ports from
    /// `EVTCHNOP_alloc_unbound` numbered from 1 as on Xen); a domain
    /// unpaused without one gets hv's console then
    /// ([`DomainXen::attach_hv_console`]). Its grant table may grow to
    /// `max_grant` frames (`createdomain`'s `max_grant_frames`).
    ///
    /// # Errors
    /// `memops::Error` if the pool is empty (everything taken is given back).
    pub fn setup_toolstack<M: PhysMem + TableMem>(
        domid: u16,
        vcpus: u32,
        physmap: &mut Physmap,
        mem: &mut M,
        pool: &mut FrameTable,
        max_grant: u32,
    ) -> Result<Self, memops::Error> {
        Self::setup_with(domid, vcpus, physmap, mem, pool, false, max_grant)
    }

    /// hv's PV console: its ring frame mapped at [`CONSOLE_GFN`], an event
    /// channel whose other end is hv, `HVM_PARAM_CONSOLE_PFN/EVTCHN` set.
    /// Done once; for a domain that has not run (no TLB entry can exist for
    /// the fresh mapping, nothing to invalidate).
    ///
    /// # Errors
    /// `memops::Error` if [`CONSOLE_GFN`] cannot be mapped (e.g. already is).
    pub fn attach_hv_console<M: TableMem>(
        &mut self,
        physmap: &mut Physmap,
        mem: &mut M,
    ) -> Result<(), memops::Error> {
        if self.console_ring.is_some() {
            return Ok(());
        }
        let ring = self.frames[1];
        physmap.insert(mem, CONSOLE_GFN, ring, 1, P2mKind::SharedInfo, S2Attrs::RAM)?;
        let port = self
            .evtchn
            .alloc(evtchn::PortState::Hv(HvPort::Console), 0)
            .unwrap_or(0);
        self.params[hvm_param::CONSOLE_PFN as usize] = CONSOLE_GFN;
        self.params[hvm_param::CONSOLE_EVTCHN as usize] = u64::from(port);
        self.console_ring = Some(ring);
        Ok(())
    }

    /// Xen's `gnttab_grow_table`: the grant table grows to `n` frames, new
    /// ones zeroed pool frames owned by `domid` (hv-owned like the table's
    /// first: released at teardown). All or nothing.
    ///
    /// # Errors
    /// `-EINVAL` past the table's maximum, `-ENOMEM` if the pool or hv's
    /// heap cannot hold them (nothing changed).
    pub fn grow_grant<M: PhysMem + ?Sized>(
        &mut self,
        domid: u16,
        n: u32,
        pool: &mut FrameTable,
        mem: &mut M,
    ) -> Result<(), Errno> {
        if n > self.grant.max_frames() {
            return Err(Errno::EINVAL);
        }
        let more = n.saturating_sub(self.grant.nr_frames()) as usize;
        if more == 0 {
            return Ok(());
        }
        let mut new: Vec<PhysAddr> = Vec::new();
        if new.try_reserve(more).is_err()
            || self.frames.try_reserve(more).is_err()
            || !self.grant.reserve(more)
        {
            return Err(Errno::ENOMEM);
        }
        for _ in 0..more {
            match pool.alloc(domid, 0) {
                Ok(pa) => {
                    mem.zero_frame(pa);
                    new.push(pa);
                }
                Err(_) => {
                    for f in new {
                        let _ = pool.put(f);
                    }
                    return Err(Errno::ENOMEM);
                }
            }
        }
        self.frames.extend_from_slice(&new);
        self.grant.add_frames(&new);
        Ok(())
    }

    /// The shared-info frame (`XENMAPSPACE_shared_info`).
    #[must_use]
    pub fn shared_info(&self) -> Option<PhysAddr> {
        self.evtchn.shared_info()
    }

    /// Give the hv-owned frames back (after the domain's stage-2 mappings of
    /// them were invalidated).
    pub fn release(&mut self, pool: &mut FrameTable) {
        for f in self.frames.drain(..).chain(self.pinned.drain(..)) {
            let _ = pool.put(f);
        }
    }

    /// Guest frames pinned by a page reference ([`DomainXen::pinned`]'s doc).
    #[must_use]
    pub fn pinned(&self) -> &[PhysAddr] {
        &self.pinned
    }

    /// Take a page reference on `frame`, which must be a pool frame owned by
    /// `domid` (Xen's `get_page(page, d)`: a foreign or hv-internal page is
    /// refused), and remember it until teardown.
    ///
    /// # Errors
    /// `-EINVAL` if `frame` is not `domid`'s, `-ENOMEM` if the record cannot
    /// be allocated (nothing changed).
    pub fn pin(&mut self, domid: u16, frame: PhysAddr, pool: &mut FrameTable) -> Result<(), Errno> {
        if pool.frame(frame).and_then(|f| f.owner) != Some(domid) {
            return Err(Errno::EINVAL);
        }
        self.pinned.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
        pool.get(frame).map_err(|_| Errno::EINVAL)?;
        self.pinned.push(frame);
        Ok(())
    }

    /// Undo the last [`DomainXen::pin`] of `frame` (its use failed).
    pub fn unpin(&mut self, frame: PhysAddr, pool: &mut FrameTable) {
        if let Some(i) = self.pinned.iter().rposition(|&f| f == frame) {
            self.pinned.remove(i);
            let _ = pool.put(frame);
        }
    }

    /// Drain the console ring (the guest notified its console channel) and
    /// tell the guest the space is free again.
    /// The first bytes through the ring are announced on hv's console
    /// (`d<N>: PV console ring in use (event channel <port>)`).
    pub fn console_notified<M: PhysMem + ?Sized>(
        &mut self,
        domid: u16,
        mem: &mut M,
        line: &mut ConsoleLine,
        sink: &mut dyn ConsoleSink,
        irq: &mut dyn IrqSink,
    ) {
        if let Some(ring) = self.console_ring {
            let n = super::console_ring::drain(ring, mem, domid, line, sink);
            if self.console_bytes == 0 && n != 0 {
                sink.hv_line(format_args!(
                    "d{domid}: PV console ring in use (event channel {})",
                    self.evtchn.hv_port(HvPort::Console).unwrap_or(0)
                ));
            }
            self.console_bytes += u64::from(n);
            if let Some(p) = self.evtchn.hv_port(HvPort::Console) {
                self.evtchn.set_pending(domid, p, mem, irq);
            }
        }
    }
}

/// `counter` ticks at `freq` Hz as nanoseconds (Xen's system time, `NOW()`).
#[must_use]
pub fn ticks_to_ns(counter: u64, freq: u64) -> u64 {
    if freq == 0 {
        return 0;
    }
    (u128::from(counter) * 1_000_000_000 / u128::from(freq)) as u64
}
