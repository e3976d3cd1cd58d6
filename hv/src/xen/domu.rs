//! What a Linux domU needs from "Xen" beyond the basic calls: the per-domain
//! state (shared-info page, event channels, grant table, HVM params, the PV
//! console ring, per-vCPU runstate areas) and the handlers of
//! `event_channel_op` (32), `grant_table_op` (20), `vcpu_op` (24),
//! `hvm_op` (34), `vm_assist` (21) and `multicall` (13).
//!
//! These calls need more than the caller's view (an interdomain send touches
//! another domain; the console drains into hv's sink), so the run loop hands
//! them to [`system_call`] with every domain, like `memory_op`.
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
use memops::{FrameTable, MemType, Physmap, S2Attrs, Stage2View, TableMem};
use pv_tlb::{Ipa, PhysAddr, PAGE_SIZE};

use super::console::{ConsoleLine, ConsoleSink};
use super::evtchn::{self, EventDomains, EvtchnCtx, Evtchns, HvPort, IrqSink, SendEffect};
use super::grant::{self, GrantTable};
use super::{Action, Errno, Hypercall, HypercallCtx, Outcome};
use crate::arch::PhysMem;
use crate::domain::Domain;
use crate::guest::GuestMemory;

/// `GUEST_MAGIC_BASE` (public/arch-arm.h): hv's magic pages (console ring first).
pub const GUEST_MAGIC_BASE: u64 = 0x3900_0000;
/// The console ring's gfn (`HVM_PARAM_CONSOLE_PFN`).
pub const CONSOLE_GFN: u64 = GUEST_MAGIC_BASE >> 12;

/// Pool frames [`DomainXen::setup`] takes: shared info, console ring, grant frames.
pub const XEN_FRAMES: u64 = 2 + grant::MAX_GRANT_FRAMES as u64;

/// `HVM_PARAM_*` (public/hvm/params.h).
pub mod hvm_param {
    #![allow(missing_docs)]
    pub const CALLBACK_IRQ: u32 = 0;
    pub const STORE_PFN: u32 = 1;
    pub const STORE_EVTCHN: u32 = 2;
    pub const CONSOLE_PFN: u32 = 17;
    pub const CONSOLE_EVTCHN: u32 = 18;
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
            frames: Vec::new(),
            pinned: Vec::new(),
        }
    }
}

impl DomainXen {
    /// Set up what a guest booted by hv gets: a zeroed shared-info page,
    /// [`grant::MAX_GRANT_FRAMES`] grant frames, the console ring mapped at
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
        let (si, ring) = (frames[0], frames[1]);
        // A fresh mapping of a never-mapped gfn: nothing to invalidate.
        if let Err(e) = physmap.insert(mem, CONSOLE_GFN, ring, 1, P2mKind::SharedInfo, S2Attrs::RAM)
        {
            for f in frames {
                let _ = pool.put(f);
            }
            return Err(e);
        }
        let mut evtchn = Evtchns::new(vcpus, Some(si));
        let port = evtchn
            .alloc(evtchn::PortState::Hv(HvPort::Console), 0)
            .unwrap_or(0);
        let mut params = [0u64; hvm_param::NR as usize];
        params[hvm_param::CONSOLE_PFN as usize] = CONSOLE_GFN;
        params[hvm_param::CONSOLE_EVTCHN as usize] = u64::from(port);
        Ok(Self {
            evtchn,
            grant: GrantTable::new(frames[2..].to_vec()),
            params,
            console_ring: Some(ring),
            runstate: alloc::vec![Runstate::default(); vcpus.max(1) as usize],
            runstate_update_flag: false,
            console_bytes: 0,
            frames,
            pinned: Vec::new(),
        })
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

/// The domains as event channels see them.
struct Doms<'a>(&'a mut [Domain]);

impl EventDomains for Doms<'_> {
    fn events(&mut self, d: u16) -> Option<&mut Evtchns> {
        self.0
            .iter_mut()
            .find(|x| x.id == d)
            .map(|x| &mut x.xen.evtchn)
    }
}

/// A domain has left `domains` for good (it is being torn down): its event
/// channels' peers go back to unbound (Xen's `evtchn_destroy`).
pub fn domain_destroyed(domains: &mut [Domain], gone: &Domain) {
    evtchn::domain_destroyed(&mut Doms(domains), gone.id, &gone.xen.evtchn);
}

/// Everything [`system_call`] may touch.
pub struct SysCtx<'a, M: PhysMem + TableMem> {
    /// The calling domain.
    pub caller: u16,
    /// The calling vCPU.
    pub vcpu: u32,
    /// Its stage 1: guest handles are virtual addresses ([`super::s1walk`]).
    pub s1: Option<super::s1walk::Stage1>,
    /// Every live domain.
    pub domains: &'a mut [Domain],
    /// Host memory.
    pub mem: &'a mut M,
    /// The guest page pool (page references of areas hv keeps).
    pub pool: &'a mut FrameTable,
    /// Console output.
    pub sink: &'a mut dyn ConsoleSink,
    /// Upcall injection.
    pub irq: &'a mut dyn IrqSink,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl<M: PhysMem + TableMem> SysCtx<'_, M> {
    fn me(&mut self) -> Result<&mut Domain, Errno> {
        let c = self.caller;
        self.domains
            .iter_mut()
            .find(|d| d.id == c)
            .ok_or(Errno::ESRCH)
    }

    fn view(&mut self) -> Result<Stage2View, Errno> {
        Ok(self.me()?.stage2().view())
    }

    fn privileged(&mut self) -> bool {
        self.me().is_ok_and(|d| d.privileged)
    }

    fn read<const N: usize>(&mut self, ipa: u64) -> Result<[u8; N], Errno> {
        let v = self.view()?;
        let mut b = [0u8; N];
        GuestMemory::from_view(v, self.mem)
            .with_stage1(self.s1)
            .copy_from_guest(Ipa(ipa), &mut b)
            .map_err(|e| e.errno())?;
        Ok(b)
    }

    fn write(&mut self, ipa: u64, b: &[u8]) -> Result<(), Errno> {
        let v = self.view()?;
        GuestMemory::from_view(v, self.mem)
            .with_stage1(self.s1)
            .copy_to_guest(Ipa(ipa), b)
            .map_err(|e| e.errno())
    }

    /// The caller's writable RAM page behind `ipa` (host address, offset kept).
    fn translate_rw(&mut self, ipa: u64) -> Result<PhysAddr, Errno> {
        let v = self.view()?;
        match v.lookup(&*self.mem, Ipa(ipa)) {
            Some((pa, a)) if a.read && a.write && a.mem == MemType::NormalWb => Ok(pa),
            _ => Err(Errno::EFAULT),
        }
    }

    fn self_or(&mut self, dom: u16) -> Result<u16, Errno> {
        if dom == evtchn::DOMID_SELF || dom == self.caller {
            Ok(self.caller)
        } else if self.privileged() {
            Ok(dom)
        } else {
            Err(Errno::EPERM)
        }
    }
}

/// Handle the domU calls of this module; `None` for any other hypercall.
pub fn system_call<M: PhysMem + TableMem>(
    call: &Hypercall,
    ctx: &mut SysCtx<'_, M>,
) -> Option<Outcome> {
    Some(match *call {
        Hypercall::EventChannelOp { cmd, arg } => Outcome::ret(event_channel_op(cmd, arg, ctx)),
        Hypercall::GrantTableOp { cmd, arg, count } => {
            Outcome::ret(grant_table_op(cmd, arg, count, ctx))
        }
        Hypercall::VcpuOp { cmd, vcpu, arg } => Outcome::ret(vcpu_op(cmd, vcpu, arg, ctx)),
        Hypercall::HvmOp { cmd, arg } => Outcome::ret(hvm_op(cmd, arg, ctx)),
        Hypercall::VmAssist { cmd, ty } => Outcome::ret(vm_assist(cmd, ty, ctx)),
        Hypercall::Multicall { list, nr } => multicall(list, nr, ctx),
        _ => return None,
    })
}

fn event_channel_op<M: PhysMem + TableMem>(
    cmd: u32,
    arg: u64,
    ctx: &mut SysCtx<'_, M>,
) -> Result<u64, Errno> {
    use evtchn::op;
    let caller = ctx.caller;
    match cmd {
        op::ALLOC_UNBOUND => {
            let b = ctx.read::<8>(arg)?;
            let dom = ctx.self_or(le16(&b, 0))?;
            let port = evtchn::alloc_unbound(&mut Doms(ctx.domains), caller, dom, le16(&b, 2))?;
            ctx.write(arg + 4, &port.to_le_bytes())?;
            Ok(0)
        }
        op::BIND_INTERDOMAIN => {
            let b = ctx.read::<12>(arg)?;
            let port =
                evtchn::bind_interdomain(&mut Doms(ctx.domains), caller, le16(&b, 0), le32(&b, 4))?;
            ctx.write(arg + 8, &port.to_le_bytes())?;
            Ok(0)
        }
        op::BIND_VIRQ => {
            let b = ctx.read::<12>(arg)?;
            let port = ctx.me()?.xen.evtchn.bind_virq(le32(&b, 0), le32(&b, 4))?;
            ctx.write(arg + 8, &port.to_le_bytes())?;
            Ok(0)
        }
        op::BIND_IPI => {
            let b = ctx.read::<8>(arg)?;
            let vcpu = le32(&b, 0);
            let e = &mut ctx.me()?.xen.evtchn;
            if vcpu >= e.vcpus() {
                return Err(Errno::ENOENT);
            }
            let port = e.alloc(evtchn::PortState::Ipi, vcpu)?;
            ctx.write(arg + 4, &port.to_le_bytes())?;
            Ok(0)
        }
        op::CLOSE => {
            let b = ctx.read::<4>(arg)?;
            let port = le32(&b, 0);
            if ctx.me()?.xen.evtchn.port(port).map(|p| p.state)
                == Some(evtchn::PortState::Hv(HvPort::Console))
            {
                // hv's console end stays; Linux never closes it.
                return Err(Errno::EINVAL);
            }
            evtchn::close(&mut Doms(ctx.domains), caller, port)?;
            Ok(0)
        }
        op::SEND => {
            let b = ctx.read::<4>(arg)?;
            let mut ectx = EvtchnCtx {
                caller,
                mem: &mut *ctx.mem,
                irq: &mut *ctx.irq,
            };
            match evtchn::send(&mut Doms(ctx.domains), &mut ectx, le32(&b, 0))? {
                SendEffect::Done => {}
                SendEffect::Hv(HvPort::Console) => {
                    let d = ctx
                        .domains
                        .iter_mut()
                        .find(|d| d.id == caller)
                        .ok_or(Errno::ESRCH)?;
                    let (xen, line) = (&mut d.xen, &mut d.console);
                    xen.console_notified(caller, ctx.mem, line, ctx.sink, ctx.irq);
                }
            }
            Ok(0)
        }
        op::STATUS => {
            let b = ctx.read::<8>(arg)?;
            let dom = ctx.self_or(le16(&b, 0))?;
            let s = evtchn::status(&mut Doms(ctx.domains), dom, le32(&b, 4))?;
            let mut out = [0u8; 16];
            out[0..4].copy_from_slice(&s.status.to_le_bytes());
            out[4..8].copy_from_slice(&s.vcpu.to_le_bytes());
            if s.status == evtchn::stat::UNBOUND || s.status == evtchn::stat::INTERDOMAIN {
                out[8..10].copy_from_slice(&(s.u0 as u16).to_le_bytes());
            } else {
                out[8..12].copy_from_slice(&s.u0.to_le_bytes());
            }
            out[12..16].copy_from_slice(&s.u1.to_le_bytes());
            ctx.write(arg + 8, &out)?;
            Ok(0)
        }
        op::BIND_VCPU => {
            let b = ctx.read::<8>(arg)?;
            ctx.me()?.xen.evtchn.bind_vcpu(le32(&b, 0), le32(&b, 4))?;
            Ok(0)
        }
        op::UNMASK => {
            let b = ctx.read::<4>(arg)?;
            let d = ctx
                .domains
                .iter()
                .find(|d| d.id == caller)
                .ok_or(Errno::ESRCH)?;
            d.xen.evtchn.unmask(caller, le32(&b, 0), ctx.mem, ctx.irq)?;
            Ok(0)
        }
        // FIFO event channels are not offered: Linux falls back to 2-level
        // (drivers/xen/events/events_fifo.c: init_control failing).
        _ => Err(Errno::ENOSYS),
    }
}

fn grant_table_op<M: PhysMem + TableMem>(
    cmd: u32,
    arg: u64,
    count: u32,
    ctx: &mut SysCtx<'_, M>,
) -> Result<u64, Errno> {
    use grant::op;
    match cmd {
        op::QUERY_SIZE | op::SETUP_TABLE if count > 16 => Err(Errno::EINVAL),
        op::QUERY_SIZE => {
            for i in 0..u64::from(count) {
                let at = arg + i * grant::QUERY_SIZE_LEN as u64;
                let b = ctx.read::<{ grant::QUERY_SIZE_LEN }>(at)?;
                let mut out = [0u8; 12];
                match ctx.self_or(le16(&b, 0)) {
                    Ok(d) if d == ctx.caller => {
                        let (n, max) = ctx.me()?.xen.grant.query_size();
                        out[0..4].copy_from_slice(&n.to_le_bytes());
                        out[4..8].copy_from_slice(&max.to_le_bytes());
                        out[8..10].copy_from_slice(&grant::GNTST_OKAY.to_le_bytes());
                    }
                    _ => out[8..10].copy_from_slice(&grant::GNTST_BAD_DOMAIN.to_le_bytes()),
                }
                ctx.write(at + 4, &out)?;
            }
            Ok(0)
        }
        op::SETUP_TABLE => {
            for i in 0..u64::from(count) {
                let at = arg + i * grant::SETUP_TABLE_LEN as u64;
                let b = ctx.read::<{ grant::SETUP_TABLE_LEN }>(at)?;
                let list = le64(&b, 16);
                let status = match ctx.self_or(le16(&b, 0)) {
                    Ok(d) if d == ctx.caller => {
                        match ctx.me()?.xen.grant.setup_table(le32(&b, 4)) {
                            Ok(gfns) => {
                                for (j, g) in gfns.iter().enumerate() {
                                    ctx.write(list + j as u64 * 8, &g.to_le_bytes())?;
                                }
                                grant::GNTST_OKAY
                            }
                            Err(s) => s,
                        }
                    }
                    _ => grant::GNTST_BAD_DOMAIN,
                };
                ctx.write(at + 8, &status.to_le_bytes())?;
            }
            Ok(0)
        }
        op::SET_VERSION => {
            if count != 1 {
                return Err(Errno::EINVAL);
            }
            let b = ctx.read::<4>(arg)?;
            let r = ctx.me()?.xen.grant.set_version(le32(&b, 0));
            // The version in use goes back either way.
            ctx.write(arg, &1u32.to_le_bytes())?;
            r.map(|()| 0)
        }
        op::GET_VERSION => {
            if count != 1 {
                return Err(Errno::EINVAL);
            }
            let b = ctx.read::<8>(arg)?;
            ctx.self_or(le16(&b, 0))?;
            ctx.write(arg + 4, &1u32.to_le_bytes())?;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

fn vcpu_op<M: PhysMem + TableMem>(
    cmd: u32,
    vcpu: u32,
    arg: u64,
    ctx: &mut SysCtx<'_, M>,
) -> Result<u64, Errno> {
    let caller = ctx.caller;
    if vcpu >= ctx.me()?.xen.evtchn.vcpus() {
        return Err(Errno::ENOENT);
    }
    match cmd {
        vcpuop::REGISTER_VCPU_INFO => {
            // Xen 4.20's order (common/domain.c, common_vcpu_op and
            // map_guest_area): copy in (-EFAULT); an offset that leaves the
            // gfn (-EINVAL); already registered (-EBUSY); an area that crosses
            // its page or is not xen_ulong_t aligned (-ENXIO); a gfn that is
            // not the caller's RAM (-EINVAL, get_page_from_gfn failing).
            let b = ctx.read::<16>(arg)?;
            let (gfn, off) = (le64(&b, 0), u64::from(le32(&b, 8)));
            if off >= PAGE_SIZE {
                return Err(Errno::EINVAL);
            }
            let ipa = gfn
                .checked_mul(PAGE_SIZE)
                .and_then(|a| a.checked_add(off))
                .ok_or(Errno::EINVAL)?;
            if ctx.me()?.xen.evtchn.vcpu_info_registered(vcpu) {
                return Err(Errno::EBUSY);
            }
            if off + evtchn::layout::VCPU_INFO_SIZE > PAGE_SIZE || off % 8 != 0 {
                return Err(Errno::ENXIO);
            }
            let pa = ctx.translate_rw(ipa).map_err(|_| Errno::EINVAL)?;
            let frame = PhysAddr(pa.0 & !(PAGE_SIZE - 1));
            let d = ctx
                .domains
                .iter_mut()
                .find(|d| d.id == caller)
                .ok_or(Errno::ESRCH)?;
            // hv keeps writing to `pa` for the domain's lifetime: pin the
            // page first (Xen's map_guest_area), give the pin back on failure.
            d.xen.pin(caller, frame, ctx.pool)?;
            if let Err(e) = d
                .xen
                .evtchn
                .register_vcpu_info(caller, vcpu, pa, ctx.mem, ctx.irq)
            {
                d.xen.unpin(frame, ctx.pool);
                return Err(e);
            }
            Ok(0)
        }
        vcpuop::REGISTER_RUNSTATE_MEMORY_AREA | vcpuop::REGISTER_RUNSTATE_PHYS_AREA => {
            let b = ctx.read::<8>(arg)?;
            let addr = le64(&b, 0);
            let phys = cmd == vcpuop::REGISTER_RUNSTATE_PHYS_AREA;
            crate::glog!(
                caller,
                Debug,
                "d{caller}v{vcpu}: runstate area at {addr:#x} (physical: {phys})"
            );
            let rs = ctx
                .me()?
                .xen
                .runstate
                .get_mut(vcpu as usize)
                .ok_or(Errno::ENOENT)?;
            rs.area = (addr != 0).then_some(addr);
            rs.phys = phys;
            let (enc, area) = (rs.encode(0), rs.area);
            // A physical area is written at once; a virtual one (Linux's
            // per-CPU variable) at the vCPU's next switch, through its stage 1.
            if let (true, Some(a)) = (phys, area) {
                ctx.write(a, &enc)?;
            }
            Ok(0)
        }
        // Arm Xen's do_arm_vcpu_op allows only the registrations.
        _ => Err(Errno::EINVAL),
    }
}

fn hvm_op<M: PhysMem + TableMem>(
    cmd: u32,
    arg: u64,
    ctx: &mut SysCtx<'_, M>,
) -> Result<u64, Errno> {
    match cmd {
        hvmop::GET_PARAM | hvmop::SET_PARAM => {
            let b = ctx.read::<16>(arg)?;
            let d = ctx.self_or(le16(&b, 0))?;
            let index = le32(&b, 4);
            if index >= hvm_param::NR {
                return Err(Errno::EINVAL);
            }
            if cmd == hvmop::SET_PARAM {
                // Only a control domain sets parameters (of any domain).
                if !ctx.privileged() {
                    return Err(Errno::EPERM);
                }
                let dom = ctx
                    .domains
                    .iter_mut()
                    .find(|x| x.id == d)
                    .ok_or(Errno::ESRCH)?;
                dom.xen.params[index as usize] = le64(&b, 8);
                return Ok(0);
            }
            let v = ctx
                .domains
                .iter()
                .find(|x| x.id == d)
                .ok_or(Errno::ESRCH)?
                .xen
                .params[index as usize];
            ctx.write(arg + 8, &v.to_le_bytes())?;
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

fn vm_assist<M: PhysMem + TableMem>(
    cmd: u32,
    ty: u32,
    ctx: &mut SysCtx<'_, M>,
) -> Result<u64, Errno> {
    // Arm Xen's VM_ASSIST_VALID: only the runstate update flag.
    if ty != vmasst::TYPE_RUNSTATE_UPDATE_FLAG {
        return Err(Errno::EINVAL);
    }
    let on = match cmd {
        vmasst::CMD_ENABLE => true,
        vmasst::CMD_DISABLE => false,
        _ => return Err(Errno::ENOSYS),
    };
    ctx.me()?.xen.runstate_update_flag = on;
    Ok(0)
}

/// Entries of a multicall run per invocation; more continue in a
/// continuation (Xen preempts a multicall whenever `hypercall_preempt_check()`
/// fires, xen/common/multicall.c).
pub const MULTICALL_BUDGET: u64 = 64;
/// `sizeof(struct multicall_entry)` on arm64.
pub const MULTICALL_ENTRY_LEN: u64 = 64;

/// `multicall(call_list, nr_calls)`: run each entry and store its result, as
/// Xen's `do_multicall`. Entries reach the handlers of this module and the
/// caller-view ones (console_io, xen_version, sched_op, hv_op); memory_op,
/// domctl, sysctl and nested multicalls answer `-ENOSYS` / `-EINVAL` in their
/// result slot. After [`MULTICALL_BUDGET`] entries, after a `SCHEDOP_yield` or
/// `SCHEDOP_block` entry (Xen: the schedule softirq makes
/// `hypercall_preempt_check()` true) the rest of the list continues in a
/// continuation (x0 = the next entry, x1 = entries left), so later entries
/// still run; an entry that itself continues (a long console write) gets its
/// updated arguments written back into its entry, which runs again first. A
/// shutdown stops the list.
fn multicall<M: PhysMem + TableMem>(list: u64, nr: u32, ctx: &mut SysCtx<'_, M>) -> Outcome {
    let nr = u64::from(nr);
    let cont = |from: u64, block: bool| Outcome {
        ret: 0,
        action: Action::Continuation {
            args: [list.wrapping_add(from * MULTICALL_ENTRY_LEN), nr - from, 0],
            block,
        },
    };
    for i in 0..nr {
        if i == MULTICALL_BUDGET {
            return cont(i, false);
        }
        let at = list.wrapping_add(i * MULTICALL_ENTRY_LEN);
        let b = match ctx.read::<64>(at) {
            Ok(b) => b,
            Err(e) => return Outcome::ret(Err(e)),
        };
        let mut args = [0u64; 5];
        for (j, a) in args.iter_mut().enumerate() {
            *a = le64(&b, 16 + j * 8);
        }
        let out = match Hypercall::decode(super::abi::XEN_HYPERCALL_TAG, le64(&b, 0), &args) {
            Ok(Hypercall::Multicall { .. }) => Outcome::ret(Err(Errno::EINVAL)),
            Ok(
                Hypercall::MemoryOp { .. } | Hypercall::Domctl { .. } | Hypercall::Sysctl { .. },
            ) => Outcome::ret(Err(Errno::ENOSYS)),
            Ok(call) => match system_call(&call, ctx) {
                Some(o) => o,
                None => caller_view_call(&call, ctx),
            },
            Err(e) => Outcome::ret(Err(e.errno().unwrap_or(Errno::ENOSYS))),
        };
        if let Action::Continuation { args: sub, block } = out.action {
            // The entry continues: its updated arguments go back into the
            // entry (Xen copies the sub-call's continuation into the list),
            // and the multicall resumes at it.
            let mut raw = [0u8; 24];
            for (j, a) in sub.iter().enumerate() {
                raw[j * 8..j * 8 + 8].copy_from_slice(&a.to_le_bytes());
            }
            if let Err(e) = ctx.write(at + 16, &raw) {
                return Outcome::ret(Err(e));
            }
            return cont(i, block);
        }
        if let Err(e) = ctx.write(at + 8, &out.ret.to_le_bytes()) {
            return Outcome::ret(Err(e));
        }
        match out.action {
            Action::Continue => {}
            Action::Yield | Action::Block if i + 1 == nr => {
                return Outcome {
                    ret: 0,
                    action: out.action,
                }
            }
            Action::Yield => return cont(i + 1, false),
            Action::Block => return cont(i + 1, true),
            Action::Shutdown(_) | Action::Continuation { .. } => {
                return Outcome {
                    ret: 0,
                    action: out.action,
                }
            }
        }
    }
    Outcome::ret(Ok(0))
}

fn caller_view_call<M: PhysMem + TableMem>(call: &Hypercall, ctx: &mut SysCtx<'_, M>) -> Outcome {
    let caller = ctx.caller;
    let Some(d) = ctx.domains.iter_mut().find(|d| d.id == caller) else {
        return Outcome::ret(Err(Errno::ESRCH));
    };
    let (privileged, handle) = (d.privileged, d.handle);
    let (stage2, line) = d.hypercall_parts();
    let mut hctx = HypercallCtx {
        domid: caller,
        privileged,
        handle,
        mem: GuestMemory::new(stage2, ctx.mem).with_stage1(ctx.s1),
        line,
        sink: ctx.sink,
    };
    super::dispatch(call, &mut hctx)
}

/// Write vCPU `vcpu`'s runstate into its registered area after it changed
/// (for the run loop at each switch): a physical area directly, a virtual one
/// through the vCPU's stage 1 `s1` (its registers, loaded or saved). With
/// `VMASST_TYPE_runstate_update_flag`, `XEN_RUNSTATE_UPDATE` is set in
/// `state_entry_time` around the update (public/vcpu.h).
pub fn publish_runstate<M: PhysMem + TableMem>(
    d: &Domain,
    vcpu: u32,
    s1: Option<super::s1walk::Stage1>,
    mem: &mut M,
) {
    let flag_on = d.xen.runstate_update_flag;
    let Some(rs) = d.xen.runstate.get(vcpu as usize).copied() else {
        return;
    };
    let Some(area) = rs.area else {
        return;
    };
    let mut gm = d
        .guest_memory(mem)
        .with_stage1(if rs.phys { None } else { s1 });
    let flag = if flag_on { runstate::UPDATE } else { 0 };
    if flag_on {
        let _ = gm.copy_to_guest(Ipa(area + 8), &(rs.entry | flag).to_le_bytes());
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
    }
    let _ = gm.copy_to_guest(Ipa(area), &rs.encode(flag));
    if flag_on {
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        let _ = gm.copy_to_guest(Ipa(area + 8), &rs.entry.to_le_bytes());
    }
}

/// A vCPU switch: vCPU `vcpu` of `d` enters `state` (`RUNSTATE_*`) at
/// `now_ns`; its registered runstate area, if any, is rewritten through its
/// stage 1 `s1` (Xen's `update_runstate_area` at each context switch).
pub fn runstate_switch<M: PhysMem + TableMem>(
    d: &mut Domain,
    vcpu: u32,
    state: u32,
    now_ns: u64,
    s1: super::s1walk::Stage1,
    mem: &mut M,
) {
    let Some(rs) = d.xen.runstate.get_mut(vcpu as usize) else {
        return;
    };
    rs.switch(state, now_ns);
    if rs.area.is_some() {
        publish_runstate(d, vcpu, Some(s1), mem);
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

/// Inject the event-channel upcall PPI ([`evtchn::GUEST_EVTCHN_PPI`]) for
/// each `(domid, vcpu)` recorded during a call, through the domain's vGIC.
pub fn deliver_upcalls(domains: &[Domain], upcalls: &[(u16, u32)]) {
    for &(d, v) in upcalls {
        if let Some(dom) = domains.iter().find(|x| x.id == d) {
            if let Err(e) = dom.vgic.inject(v, evtchn::GUEST_EVTCHN_PPI) {
                crate::glog!(d, Debug, "d{d}v{v}: event upcall not injected: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::fake::FakeMem;
    use crate::domain::{VmidAllocator, GUEST_RAM0_BASE};
    use crate::xen::console_ring as ring;
    use crate::xen::evtchn::RecordingIrqSink;
    use alloc::string::String;

    #[derive(Default)]
    struct Lines(Vec<String>);
    impl ConsoleSink for Lines {
        fn guest_line(&mut self, domid: u16, line: &str) {
            self.0.push(std::format!("(d{domid}) {line}"));
        }
        fn hv_line(&mut self, args: core::fmt::Arguments<'_>) {
            self.0.push(std::format!("hv: {args}"));
        }
    }

    const B: u64 = GUEST_RAM0_BASE;

    struct World {
        mem: FakeMem,
        pool: FrameTable,
        domains: Vec<Domain>,
        lines: Lines,
        irq: RecordingIrqSink,
    }

    impl World {
        fn new() -> Self {
            let mut mem = FakeMem::new(0x8000_0000, 0x400_0000);
            let mut pool = FrameTable::new(PhysAddr(0x8000_0000), 0x3000);
            let mut vmids = VmidAllocator::new(2);
            let mut domains = Vec::new();
            for id in [1, 2] {
                let mut d =
                    Domain::create(id, 4 << 20, 40, &mut vmids, &mut mem, &mut pool).unwrap();
                d.xen = DomainXen::setup(id, 2, d.physmap_mut(), &mut mem, &mut pool).unwrap();
                domains.push(d);
            }
            Self {
                mem,
                pool,
                domains,
                lines: Lines::default(),
                irq: RecordingIrqSink::default(),
            }
        }

        fn put(&mut self, d: usize, ipa: u64, b: &[u8]) {
            self.domains[d]
                .guest_memory(&mut self.mem)
                .copy_to_guest(Ipa(ipa), b)
                .unwrap();
        }

        fn get<const N: usize>(&mut self, d: usize, ipa: u64) -> [u8; N] {
            let mut b = [0u8; N];
            self.domains[d]
                .guest_memory(&mut self.mem)
                .copy_from_guest(Ipa(ipa), &mut b)
                .unwrap();
            b
        }

        fn call(&mut self, caller: u16, vcpu: u32, c: Hypercall) -> Outcome {
            let mut ctx = SysCtx {
                caller,
                vcpu,
                s1: None,
                domains: &mut self.domains,
                mem: &mut self.mem,
                pool: &mut self.pool,
                sink: &mut self.lines,
                irq: &mut self.irq,
            };
            system_call(&c, &mut ctx).expect("a domU call")
        }
    }

    fn param(w: &mut World, index: u32) -> Result<u64, u64> {
        let mut s = [0u8; 16];
        s[0..2].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
        s[4..8].copy_from_slice(&index.to_le_bytes());
        w.put(0, B + 0x100, &s);
        let r = w
            .call(
                1,
                0,
                Hypercall::HvmOp {
                    cmd: 1,
                    arg: B + 0x100,
                },
            )
            .ret;
        if r != 0 {
            return Err(r);
        }
        Ok(le64(&w.get::<16>(0, B + 0x100), 8))
    }

    #[test]
    fn linux_boot_calls_through_system_call() {
        let mut w = World::new();
        // HVM params: the console page and channel; no xenstore.
        assert_eq!(param(&mut w, hvm_param::CONSOLE_PFN), Ok(CONSOLE_GFN));
        assert_eq!(param(&mut w, hvm_param::CONSOLE_EVTCHN), Ok(1));
        assert_eq!(param(&mut w, hvm_param::STORE_PFN), Ok(0));
        assert_eq!(param(&mut w, hvm_param::STORE_EVTCHN), Ok(0));
        assert_eq!(param(&mut w, hvm_param::NR), Err(Errno::EINVAL.to_x0()));
        assert_eq!(param(&mut w, hvm_param::CONSOLE_PFN), Ok(CONSOLE_GFN));
        let set = w.call(
            1,
            0,
            Hypercall::HvmOp {
                cmd: 0,
                arg: B + 0x100,
            },
        );
        assert_eq!(set.ret, Errno::EPERM.to_x0(), "a domU sets no params");

        // The console: the guest fills `out`, bumps out_prod, notifies port 1.
        let rpa = GUEST_MAGIC_BASE;
        w.put(0, rpa + ring::OUT, b"hello hvc0\n");
        w.put(0, rpa + ring::OUT_PROD, &11u32.to_le_bytes());
        w.put(0, B + 0x200, &1u32.to_le_bytes());
        let send = Hypercall::EventChannelOp {
            cmd: evtchn::op::SEND,
            arg: B + 0x200,
        };
        assert_eq!(w.call(1, 0, send).ret, 0);
        assert_eq!(
            w.lines.0,
            [
                "(d1) hello hvc0",
                "hv: d1: PV console ring in use (event channel 1)"
            ]
        );
        assert_eq!(le32(&w.get::<4>(0, rpa + ring::OUT_CONS), 0), 11);
        assert_eq!(w.domains[0].xen.console_bytes, 11);
        // hv's notification back: port 1 pending, upcall on vCPU 0 (shared-info slot).
        assert_eq!(w.irq.upcalls, [(1, 0)]);

        // vcpu_info of vCPU 1 registered at a RAM page; a missing vCPU is -ENOENT.
        let mut r = [0u8; 16];
        r[0..8].copy_from_slice(&((B + 0x3000) >> 12).to_le_bytes());
        r[8..12].copy_from_slice(&0x40u32.to_le_bytes());
        w.put(0, B + 0x300, &r);
        let reg = |vcpu| Hypercall::VcpuOp {
            cmd: vcpuop::REGISTER_VCPU_INFO,
            vcpu,
            arg: B + 0x300,
        };
        assert_eq!(w.call(1, 1, reg(1)).ret, 0);
        assert_eq!(w.irq.upcalls.last(), Some(&(1, 1)));
        assert_eq!(
            le64(&w.get::<16>(0, B + 0x3040), 8),
            !0,
            "all selectors pending"
        );
        assert_eq!(w.call(1, 1, reg(1)).ret, Errno::EBUSY.to_x0(), "twice");
        assert_eq!(w.call(1, 0, reg(2)).ret, Errno::ENOENT.to_x0());
        // Runstate area (a VA on Arm): accepted, kept for the switches.
        w.put(0, B + 0x400, &0xffff_8000_1234_0000u64.to_le_bytes());
        let rs = Hypercall::VcpuOp {
            cmd: vcpuop::REGISTER_RUNSTATE_MEMORY_AREA,
            vcpu: 0,
            arg: B + 0x400,
        };
        assert_eq!(w.call(1, 0, rs).ret, 0);
        assert_eq!(
            w.domains[0].xen.runstate[0].area,
            Some(0xffff_8000_1234_0000)
        );
        let other = Hypercall::VcpuOp {
            cmd: vcpuop::IS_UP,
            vcpu: 0,
            arg: 0,
        };
        assert_eq!(w.call(1, 0, other).ret, Errno::EINVAL.to_x0());

        // Grant table: query_size and set_version (v1 only).
        let mut q = [0u8; 16];
        q[0..2].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
        w.put(0, B + 0x500, &q);
        let qs = Hypercall::GrantTableOp {
            cmd: grant::op::QUERY_SIZE,
            arg: B + 0x500,
            count: 1,
        };
        assert_eq!(w.call(1, 0, qs).ret, 0);
        let q = w.get::<16>(0, B + 0x500);
        assert_eq!((le32(&q, 4), le32(&q, 8), le16(&q, 12)), (0, 4, 0));
        w.put(0, B + 0x600, &2u32.to_le_bytes());
        let sv = Hypercall::GrantTableOp {
            cmd: grant::op::SET_VERSION,
            arg: B + 0x600,
            count: 1,
        };
        assert_eq!(w.call(1, 0, sv).ret, Errno::EOPNOTSUPP.to_x0());
        assert_eq!(le32(&w.get::<4>(0, B + 0x600), 0), 1, "v1 stays");

        // vm_assist: only the runstate update flag.
        let va = |ty| Hypercall::VmAssist { cmd: 0, ty };
        assert_eq!(w.call(1, 0, va(vmasst::TYPE_RUNSTATE_UPDATE_FLAG)).ret, 0);
        assert!(w.domains[0].xen.runstate_update_flag);
        assert_eq!(w.call(1, 0, va(2)).ret, Errno::EINVAL.to_x0());

        // FIFO event channels are not offered.
        let ic = Hypercall::EventChannelOp {
            cmd: evtchn::op::INIT_CONTROL,
            arg: B,
        };
        assert_eq!(w.call(1, 0, ic).ret, Errno::ENOSYS.to_x0());
    }

    #[test]
    fn interdomain_status_and_multicall() {
        let mut w = World::new();
        // d2 offers a port to d1 (alloc_unbound), d1 binds it.
        let mut a = [0u8; 8];
        a[0..2].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
        a[2..4].copy_from_slice(&1u16.to_le_bytes());
        w.put(1, B + 0x100, &a);
        let au = Hypercall::EventChannelOp {
            cmd: evtchn::op::ALLOC_UNBOUND,
            arg: B + 0x100,
        };
        assert_eq!(w.call(2, 0, au).ret, 0);
        let p2 = le32(&w.get::<8>(1, B + 0x100), 4);
        assert_eq!(p2, 2, "port 1 is d2's console");
        // d1 binds via a multicall: [xen_version(VERSION), bind_interdomain, bogus].
        let mut bi = [0u8; 12];
        bi[0..2].copy_from_slice(&2u16.to_le_bytes());
        bi[4..8].copy_from_slice(&p2.to_le_bytes());
        w.put(0, B + 0x200, &bi);
        let mut list = [0u8; 3 * 64];
        list[0..8].copy_from_slice(&17u64.to_le_bytes());
        list[64..72].copy_from_slice(&32u64.to_le_bytes());
        list[64 + 16..64 + 24]
            .copy_from_slice(&u64::from(evtchn::op::BIND_INTERDOMAIN).to_le_bytes());
        list[64 + 24..64 + 32].copy_from_slice(&(B + 0x200).to_le_bytes());
        list[128..136].copy_from_slice(&13u64.to_le_bytes()); // a nested multicall
        w.put(0, B + 0x1000, &list);
        let mc = Hypercall::Multicall {
            list: B + 0x1000,
            nr: 3,
        };
        assert_eq!(w.call(1, 0, mc).ret, 0);
        let out = w.get::<192>(0, B + 0x1000);
        assert_eq!(le64(&out, 8), (4 << 16) | 20, "xen_version result");
        assert_eq!(le64(&out, 64 + 8), 0, "bind_interdomain result");
        assert_eq!(
            le64(&out, 128 + 8),
            Errno::EINVAL.to_x0(),
            "nested multicall"
        );
        let p1 = le32(&w.get::<12>(0, B + 0x200), 8);
        // EVTCHNOP_status from d2's side: interdomain to d1's port.
        let mut st = [0u8; 24];
        st[0..2].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
        st[4..8].copy_from_slice(&p2.to_le_bytes());
        w.put(1, B + 0x300, &st);
        let sc = Hypercall::EventChannelOp {
            cmd: evtchn::op::STATUS,
            arg: B + 0x300,
        };
        assert_eq!(w.call(2, 0, sc).ret, 0);
        let mut st = w.get::<24>(1, B + 0x300);
        assert_eq!(le32(&st, 8), evtchn::stat::INTERDOMAIN);
        assert_eq!((le16(&st, 16), le32(&st, 20)), (1, p1));
        // d1 sends: d2 gets the upcall on vCPU 0; the guest's bits are set.
        w.put(0, B + 0x400, &p1.to_le_bytes());
        let send = Hypercall::EventChannelOp {
            cmd: evtchn::op::SEND,
            arg: B + 0x400,
        };
        assert_eq!(w.call(1, 0, send).ret, 0);
        assert_eq!(w.irq.upcalls, [(2, 0)]);
        // An unprivileged domain cannot ask about another domain.
        st[0..2].copy_from_slice(&1u16.to_le_bytes());
        w.put(1, B + 0x300, &st);
        assert_eq!(w.call(2, 0, sc).ret, Errno::EPERM.to_x0());
        // Closing the console channel is refused; closing p1 frees it.
        w.put(0, B + 0x500, &1u32.to_le_bytes());
        let cl = |arg| Hypercall::EventChannelOp {
            cmd: evtchn::op::CLOSE,
            arg,
        };
        assert_eq!(w.call(1, 0, cl(B + 0x500)).ret, Errno::EINVAL.to_x0());
        assert_eq!(w.call(1, 0, cl(B + 0x400)).ret, 0);
        // Unknown hypercalls are not ours.
        let mut ctx = SysCtx {
            caller: 1,
            vcpu: 0,
            s1: None,
            domains: &mut w.domains,
            mem: &mut w.mem,
            pool: &mut w.pool,
            sink: &mut w.lines,
            irq: &mut w.irq,
        };
        assert!(system_call(
            &Hypercall::XenVersion(super::super::XenVersion::Version),
            &mut ctx
        )
        .is_none());
    }

    #[test]
    fn runstate_kept_current_at_switches() {
        let mut w = World::new();
        // A runstate area at a (MMU-off: identity) guest address of vCPU 1.
        w.put(0, B + 0x400, &(B + 0x2000).to_le_bytes());
        let rs = Hypercall::VcpuOp {
            cmd: vcpuop::REGISTER_RUNSTATE_MEMORY_AREA,
            vcpu: 1,
            arg: B + 0x400,
        };
        assert_eq!(w.call(1, 1, rs).ret, 0);
        let va = Hypercall::VmAssist {
            cmd: vmasst::CMD_ENABLE,
            ty: vmasst::TYPE_RUNSTATE_UPDATE_FLAG,
        };
        assert_eq!(w.call(1, 1, va).ret, 0);
        let off = crate::xen::s1walk::Stage1::default();
        runstate_switch(
            &mut w.domains[0],
            1,
            runstate::RUNNING,
            100,
            off,
            &mut w.mem,
        );
        runstate_switch(
            &mut w.domains[0],
            1,
            runstate::RUNNABLE,
            350,
            off,
            &mut w.mem,
        );
        runstate_switch(
            &mut w.domains[0],
            1,
            runstate::RUNNING,
            1000,
            off,
            &mut w.mem,
        );
        let b = w.get::<48>(0, B + 0x2000);
        assert_eq!(le32(&b, 0), runstate::RUNNING);
        assert_eq!(le64(&b, 8), 1000, "entry time, update flag cleared");
        assert_eq!(le64(&b, 16), 250, "time running");
        assert_eq!(le64(&b, 24), 650, "time runnable");
        assert_eq!(le64(&b, 40), 100, "offline until first run");
        // vCPU 0 has no area: nothing written anywhere, no panic.
        runstate_switch(&mut w.domains[0], 0, runstate::RUNNING, 5, off, &mut w.mem);
        runstate_switch(&mut w.domains[0], 9, runstate::RUNNING, 5, off, &mut w.mem);
        assert_eq!(ticks_to_ns(62_500_000, 62_500_000), 1_000_000_000);
        assert_eq!(ticks_to_ns(5, 0), 0);
    }

    #[test]
    fn add_to_physmap_maps_shared_info_and_grant_frames() {
        use crate::arch::fake::{FakeArch, FakeMachine};
        use crate::xen::memory::{memory_op, MemoryOpCtx, MemoryOpResult};
        let mut w = World::new();
        let mut arch = FakeArch::new(0, FakeMachine::new_shared());
        let mut flush = pv_tlb::DeferredFlush::new(pv_tlb::Policy::XenCompat);
        // struct xen_add_to_physmap: domid @0, size @2, space @4, idx @8, gpfn @16.
        let mut atp = |w: &mut World, space: u32, idx: u64, gpfn: u64| -> u64 {
            let mut b = [0u8; 24];
            b[0..2].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
            b[4..8].copy_from_slice(&space.to_le_bytes());
            b[8..16].copy_from_slice(&idx.to_le_bytes());
            b[16..24].copy_from_slice(&gpfn.to_le_bytes());
            w.put(0, B + 0x100, &b);
            let mut ctx = MemoryOpCtx {
                caller: 1,
                s1: None,
                mem: &mut w.mem,
                domains: &mut w.domains,
                pool: &mut w.pool,
                flush: &mut flush,
                arch: &mut arch,
                heap_free: || usize::MAX,
            };
            match memory_op(7, B + 0x100, &mut ctx) {
                MemoryOpResult::Done(r) => r,
                MemoryOpResult::Continue { .. } => panic!("add_to_physmap continued"),
            }
        };
        // Linux maps shared info over one of its RAM pages, grant frame 0 at the DT region.
        let si_gfn = (B + 0x5000) >> 12;
        assert_eq!(atp(&mut w, 0, 0, si_gfn), 0);
        let gnt_gfn = grant::GUEST_GNTTAB_BASE >> 12;
        assert_eq!(atp(&mut w, 1, 0, gnt_gfn), 0);
        assert_eq!(atp(&mut w, 1, 4, gnt_gfn + 4), Errno::EINVAL.to_x0());
        assert_eq!(w.domains[0].xen.grant.query_size(), (1, 4));
        // The guest's writes land in hv's frames.
        w.put(0, B + 0x5000 + evtchn::layout::SI_MASK, &[0xff]);
        w.put(0, grant::GUEST_GNTTAB_BASE + 8, &[0x42]);
        let si = w.domains[0].xen.shared_info().unwrap();
        let g0 = w.domains[0].xen.grant.frame(0).unwrap();
        let mut b = [0u8; 1];
        w.mem.read(PhysAddr(si.0 + evtchn::layout::SI_MASK), &mut b);
        assert_eq!(b, [0xff]);
        w.mem.read(PhysAddr(g0.0 + 8), &mut b);
        assert_eq!(b, [0x42]);
    }

    /// One multicall entry: hypercall `op` with `args`.
    fn entry(op: u64, args: &[u64]) -> [u8; 64] {
        let mut e = [0u8; 64];
        e[0..8].copy_from_slice(&op.to_le_bytes());
        e[8..16].copy_from_slice(&0xdead_u64.to_le_bytes()); // result slot
        for (j, a) in args.iter().enumerate() {
            e[16 + 8 * j..24 + 8 * j].copy_from_slice(&a.to_le_bytes());
        }
        e
    }

    /// Run d1's multicall of `entries` at `B + 0x1000` as the run loop does:
    /// each continuation is re-issued with its x0/x1. Returns the actions.
    fn run_multicall(w: &mut World, entries: &[[u8; 64]]) -> Vec<Action> {
        let list = B + 0x1000;
        for (i, e) in entries.iter().enumerate() {
            w.put(0, list + 64 * i as u64, e);
        }
        let mut call = Hypercall::Multicall {
            list,
            nr: entries.len() as u32,
        };
        let mut actions = Vec::new();
        for _ in 0..1000 {
            let out = w.call(1, 0, call);
            actions.push(out.action);
            match out.action {
                Action::Continuation { args, .. } => {
                    assert_eq!(out.ret, 0);
                    call = Hypercall::Multicall {
                        list: args[0],
                        nr: args[1] as u32,
                    };
                }
                _ => return actions,
            }
        }
        panic!("multicall never finished");
    }

    /// Issue 9 finding 10: a multicall stopped at a `SCHEDOP_yield`/`_block`
    /// entry and never ran the later ones. As Xen, the yield/block happens
    /// and the rest of the list continues in a continuation.
    #[test]
    fn multicall_runs_entries_after_yield_and_block() {
        let mut w = World::new();
        w.put(0, B + 0x800, b"one\ntwo\n");
        let entries = [
            entry(29, &[0]),               // SCHEDOP_yield
            entry(18, &[0, 4, B + 0x800]), // console_io write "one\n"
            entry(29, &[1]),               // SCHEDOP_block
            entry(18, &[0, 4, B + 0x804]), // "two\n"
            entry(17, &[0]),               // xen_version
        ];
        let actions = run_multicall(&mut w, &entries);
        let list = B + 0x1000;
        assert_eq!(
            actions,
            [
                Action::Continuation {
                    args: [list + 64, 4, 0],
                    block: false
                },
                Action::Continuation {
                    args: [list + 3 * 64, 2, 0],
                    block: true
                },
                Action::Continue,
            ]
        );
        assert!(w.lines.0.contains(&"(d1) one".into()), "{:?}", w.lines.0);
        assert!(w.lines.0.contains(&"(d1) two".into()), "{:?}", w.lines.0);
        let out = w.get::<320>(0, list);
        for i in 0..4 {
            assert_eq!(le64(&out, 64 * i + 8), 0, "entry {i} result");
        }
        assert_eq!(le64(&out, 4 * 64 + 8), (4 << 16) | 20, "xen_version ran");
        // A yield as the last entry is just a yield.
        assert_eq!(run_multicall(&mut w, &[entry(29, &[0])]), [Action::Yield]);
    }

    /// A long list is not refused (Xen has no limit) nor run in one go: it
    /// continues every MULTICALL_BUDGET entries and every entry gets its result.
    #[test]
    fn long_multicall_continues_in_pieces() {
        let mut w = World::new();
        let n = 3 * MULTICALL_BUDGET as usize + 5;
        let entries = vec![entry(17, &[0]); n];
        let actions = run_multicall(&mut w, &entries);
        assert_eq!(actions.len(), 4);
        let list = B + 0x1000;
        for i in 0..n as u64 {
            let r = w.get::<8>(0, list + 64 * i + 8);
            assert_eq!(u64::from_le_bytes(r), (4 << 16) | 20, "entry {i}");
        }
    }

    /// A console write inside a multicall that needs a continuation: its
    /// entry is rewritten (count left, buffer advanced) and runs again first.
    #[test]
    fn multicall_entry_continuation_is_written_back() {
        let mut w = World::new();
        let text: Vec<u8> = (0..300).map(|i| b'a' + (i % 26) as u8).collect();
        w.put(0, B + 0x2000, &text);
        w.put(0, B + 0x2000 + 300, b"\n");
        let entries = [entry(18, &[0, 301, B + 0x2000]), entry(17, &[0])];
        let actions = run_multicall(&mut w, &entries);
        assert_eq!(actions.len(), 3, "{actions:?}");
        let line = std::format!("(d1) {}", String::from_utf8(text).unwrap());
        assert_eq!(
            w.lines.0.iter().filter(|l| **l == line).count(),
            1,
            "{:?}",
            w.lines.0
        );
        let out = w.get::<128>(0, B + 0x1000);
        assert_eq!(le64(&out, 8), 0);
        assert_eq!(le64(&out, 64 + 8), (4 << 16) | 20);
    }

    /// Issue 9 finding 7: a 1 MiB console write ran in one hypercall under
    /// hv's lock. It is now handled WRITE_BUDGET bytes at a time, each piece
    /// a continuation with the count and buffer advanced, and prints every byte.
    #[test]
    fn big_console_write_is_split_into_continuations() {
        use crate::xen::console::WRITE_BUDGET;
        use crate::xen::{ConsoleIo, GuestHandle};
        let mut w = World::new();
        let len: u64 = 1 << 20;
        // d1 has 4 MiB of RAM at B: put 1 MiB of text lines at B + 1 MiB.
        let base = B + (1 << 20);
        let mut text = Vec::with_capacity(len as usize);
        let mut n = 0u32;
        while (text.len() as u64) < len {
            text.extend_from_slice(std::format!("line {n:07}\n").as_bytes());
            n += 1;
        }
        text.truncate(len as usize);
        w.put(0, base, &text);
        let mut call = Hypercall::ConsoleIo(ConsoleIo::Write {
            count: len as u32,
            buf: GuestHandle::new(base),
        });
        let mut pieces = 0u64;
        loop {
            let mut ctx = SysCtx {
                caller: 1,
                vcpu: 0,
                s1: None,
                domains: &mut w.domains,
                mem: &mut w.mem,
                pool: &mut w.pool,
                sink: &mut w.lines,
                irq: &mut w.irq,
            };
            let out = caller_view_call(&call, &mut ctx);
            pieces += 1;
            assert_eq!(out.ret, 0);
            match out.action {
                Action::Continuation { args, block } => {
                    assert!(!block);
                    assert_eq!(args[0], 0, "CONSOLEIO_write");
                    assert_eq!(args[1], len - pieces * WRITE_BUDGET, "count left");
                    assert_eq!(args[2], base + pieces * WRITE_BUDGET, "buffer advanced");
                    call =
                        Hypercall::decode(0xea1, 18, &[args[0], args[1], args[2], 0, 0]).unwrap();
                }
                Action::Continue => break,
                a => panic!("{a:?}"),
            }
        }
        assert_eq!(pieces, len / WRITE_BUDGET);
        let printed: Vec<&String> = w
            .lines
            .0
            .iter()
            .filter(|l| l.starts_with("(d1) line "))
            .collect();
        assert_eq!(printed.len(), n as usize - 1, "every complete line");
        assert_eq!(*printed[0], "(d1) line 0000000");
        assert_eq!(
            *printed[printed.len() - 1],
            std::format!("(d1) line {:07}", n - 2)
        );
    }

    /// `memory_op(cmd, arg)` of `caller` in a World (xen-compat flushes).
    fn memop(w: &mut World, caller: u16, cmd: u64, arg: u64) -> u64 {
        use crate::arch::fake::{FakeArch, FakeMachine};
        use crate::xen::memory::{memory_op, MemoryOpCtx, MemoryOpResult};
        let mut arch = FakeArch::new(0, FakeMachine::new_shared());
        let mut flush = pv_tlb::DeferredFlush::new(pv_tlb::Policy::XenCompat);
        let mut ctx = MemoryOpCtx {
            caller,
            s1: None,
            mem: &mut w.mem,
            domains: &mut w.domains,
            pool: &mut w.pool,
            flush: &mut flush,
            arch: &mut arch,
            heap_free: || usize::MAX,
        };
        match memory_op(cmd, arg, &mut ctx) {
            MemoryOpResult::Done(r) => r,
            MemoryOpResult::Continue { .. } => panic!("continued"),
        }
    }

    /// `XENMEM_populate_physmap` / `_decrease_reservation` of one 4 KiB
    /// extent at `gfn` by domain `caller` (index `d` in the World), the
    /// structs at `B + 0x300`.
    fn reservation(w: &mut World, d: usize, caller: u16, cmd: u64, gfn: u64) -> u64 {
        let mut r = [0u8; 32];
        r[0..8].copy_from_slice(&(B + 0x340).to_le_bytes());
        r[8..16].copy_from_slice(&1u64.to_le_bytes());
        r[24..26].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
        w.put(d, B + 0x300, &r);
        w.put(d, B + 0x340, &gfn.to_le_bytes());
        memop(w, caller, cmd, B + 0x300)
    }

    /// Issue 9 finding 2: hv kept the host address of a registered
    /// `vcpu_info` without a page reference. After `decrease_reservation` of
    /// that gfn the frame went back to the pool and to another domain's
    /// populate, and every event for the vCPU set bits in that domain's
    /// page. The page is now pinned (Xen's `map_guest_area`): it stays the
    /// registering domain's until teardown, and the other domain's new page
    /// stays zero.
    #[test]
    fn vcpu_info_page_is_pinned_across_decrease_reservation() {
        let mut w = World::new();
        let gfn = (B + 0x7000) >> 12;
        let frame = w.domains[0].physmap().lookup(gfn).unwrap().pa;
        // VCPUOP_register_vcpu_info for vCPU 1 at gfn, offset 0x40.
        let mut vi = [0u8; 16];
        vi[0..8].copy_from_slice(&gfn.to_le_bytes());
        vi[8..12].copy_from_slice(&0x40u32.to_le_bytes());
        w.put(0, B + 0x100, &vi);
        let reg = Hypercall::VcpuOp {
            cmd: vcpuop::REGISTER_VCPU_INFO,
            vcpu: 1,
            arg: B + 0x100,
        };
        assert_eq!(w.call(1, 0, reg).ret, 0);
        assert_eq!(w.pool.frame(frame).unwrap().refs, 2, "allocation + pin");
        // d1 gives the page back.
        assert_eq!(reservation(&mut w, 0, 1, 1, gfn), 1, "one extent released");
        assert!(w.domains[0].physmap().lookup(gfn).is_none());
        let f = w.pool.frame(frame).unwrap();
        assert_eq!((f.owner, f.refs), (Some(1), 1), "still d1's: pinned");
        // d2 populates a page (room for one more): never d1's pinned frame.
        let pm2 = w.domains[1].physmap_mut();
        pm2.set_max_pages(pm2.max_pages() + 1);
        let gfn2 = (B + (8 << 20)) >> 12;
        assert_eq!(reservation(&mut w, 1, 2, 6, gfn2), 1);
        let pa2 = w.domains[1].physmap().lookup(gfn2).unwrap().pa;
        assert_ne!(pa2, frame);
        // d1 sends itself IPIs on vCPU 1: delivery writes d1's vcpu_info.
        w.put(0, B + 0x180, &1u32.to_le_bytes());
        let bind = Hypercall::EventChannelOp {
            cmd: evtchn::op::BIND_IPI,
            arg: B + 0x180,
        };
        assert_eq!(w.call(1, 0, bind).ret, 0);
        let port = le32(&w.get::<8>(0, B + 0x180), 4);
        w.put(0, B + 0x1c0, &port.to_le_bytes());
        for _ in 0..3 {
            let send = Hypercall::EventChannelOp {
                cmd: evtchn::op::SEND,
                arg: B + 0x1c0,
            };
            assert_eq!(w.call(1, 0, send).ret, 0);
        }
        let page = w.get::<4096>(1, B + (8 << 20));
        assert!(page.iter().all(|&b| b == 0), "d2's new page untouched");
        let mut b = [0u8; 1];
        w.mem.read(PhysAddr(frame.0 + 0x40), &mut b);
        assert_eq!(b, [1], "the upcall went to d1's pinned page");
        // Teardown gives the pin back: the frame is free again.
        let mut xen = core::mem::take(&mut w.domains[0].xen);
        xen.release(&mut w.pool);
        assert_eq!(w.pool.frame(frame).unwrap().refs, 0);
    }

    /// Xen 4.20's answers for a bad `VCPUOP_register_vcpu_info`
    /// (common_vcpu_op + map_guest_area): an offset past the page -EINVAL, a
    /// misaligned or page-crossing area -ENXIO (checked before the gfn, so
    /// even for a gfn that is not RAM), a gfn that is not RAM -EINVAL.
    #[test]
    fn vcpu_info_errnos_follow_xen() {
        let mut w = World::new();
        let reg = Hypercall::VcpuOp {
            cmd: vcpuop::REGISTER_VCPU_INFO,
            vcpu: 0,
            arg: B + 0x100,
        };
        let try_at = |w: &mut World, gfn: u64, off: u32| {
            let mut vi = [0u8; 16];
            vi[0..8].copy_from_slice(&gfn.to_le_bytes());
            vi[8..12].copy_from_slice(&off.to_le_bytes());
            w.put(0, B + 0x100, &vi);
            w.call(1, 0, reg).ret
        };
        let ram = (B + 0x7000) >> 12;
        assert_eq!(try_at(&mut w, ram, 0x1000), Errno::EINVAL.to_x0());
        assert_eq!(try_at(&mut w, ram, 4), Errno::ENXIO.to_x0(), "misaligned");
        assert_eq!(try_at(&mut w, ram, 0xfe0), Errno::ENXIO.to_x0(), "crosses");
        assert_eq!(try_at(&mut w, 0x3001, 4), Errno::ENXIO.to_x0());
        assert_eq!(try_at(&mut w, 0x3001, 0), Errno::EINVAL.to_x0(), "GIC");
        assert!(w.domains[0].xen.pinned().is_empty());
        assert_eq!(try_at(&mut w, ram, 0x40), 0);
        assert_eq!(try_at(&mut w, ram, 0x80), Errno::EBUSY.to_x0());
    }

    /// A vcpu_info area must be in the caller's own RAM: not in a page it
    /// does not own (no page reference is taken on another's frame).
    #[test]
    fn vcpu_info_refused_outside_own_ram() {
        let mut w = World::new();
        // Not mapped at all.
        let mut vi = [0u8; 16];
        vi[0..8].copy_from_slice(&((B + (64 << 20)) >> 12).to_le_bytes());
        w.put(0, B + 0x100, &vi);
        let reg = Hypercall::VcpuOp {
            cmd: vcpuop::REGISTER_VCPU_INFO,
            vcpu: 0,
            arg: B + 0x100,
        };
        assert_eq!(
            w.call(1, 0, reg).ret,
            Errno::EINVAL.to_x0(),
            "not RAM: Xen's -EINVAL"
        );
        assert!(w.domains[0].xen.pinned().is_empty());
        // A failed registration (vCPU already registered: -EBUSY) takes no pin.
        vi[0..8].copy_from_slice(&((B + 0x7000) >> 12).to_le_bytes());
        w.put(0, B + 0x100, &vi);
        assert_eq!(w.call(1, 0, reg).ret, 0);
        vi[0..8].copy_from_slice(&((B + 0x8000) >> 12).to_le_bytes());
        w.put(0, B + 0x100, &vi);
        assert_eq!(w.call(1, 0, reg).ret, Errno::EBUSY.to_x0());
        assert_eq!(w.domains[0].xen.pinned().len(), 1);
        let f = w.domains[0]
            .physmap()
            .lookup((B + 0x8000) >> 12)
            .unwrap()
            .pa;
        assert_eq!(w.pool.frame(f).unwrap().refs, 1);
    }

    /// Issue 9 finding 10: `decrease_reservation` of the console ring's gfn
    /// succeeded and unmapped hv's ring. It is an hv special page, not the
    /// domain's RAM: no extent is released, the ring stays mapped and owned,
    /// and hv still drains it.
    #[test]
    fn decrease_reservation_of_the_console_ring_is_refused() {
        let mut w = World::new();
        let ring = w.domains[0].xen.console_ring.unwrap();
        assert_eq!(
            reservation(&mut w, 0, 1, 1, CONSOLE_GFN),
            0,
            "no extent released"
        );
        let e = w.domains[0].physmap().lookup(CONSOLE_GFN).unwrap();
        assert_eq!((e.pa, e.kind), (ring, P2mKind::SharedInfo));
        let f = w.pool.frame(ring).unwrap();
        assert_eq!((f.owner, f.refs), (Some(1), 1));
    }

    /// Event channels are bounded per domain (MAX_PORTS): a domain that uses
    /// all of its ports gets -ENOSPC; another domain still binds.
    #[test]
    fn event_channel_bound_is_per_domain() {
        let mut w = World::new();
        w.put(0, B + 0x180, &0u32.to_le_bytes());
        let bind = Hypercall::EventChannelOp {
            cmd: evtchn::op::BIND_IPI,
            arg: B + 0x180,
        };
        let mut ok = 0;
        let last = loop {
            let r = w.call(1, 0, bind).ret;
            if r != 0 {
                break r;
            }
            ok += 1;
            assert!(ok < 10_000, "unbounded");
        };
        assert_eq!(last, Errno::ENOSPC.to_x0());
        assert_eq!(ok, evtchn::MAX_PORTS - 2, "ports 0 and 1 (console) taken");
        w.put(1, B + 0x180, &0u32.to_le_bytes());
        assert_eq!(w.call(2, 0, bind).ret, 0, "d2 unaffected");
    }

    /// The runstate area is not kept as a host address: after
    /// `decrease_reservation` of its gfn and another domain's populate (which
    /// gets the freed frame), runstate updates write nothing there.
    #[test]
    fn runstate_area_given_back_is_not_written() {
        let mut w = World::new();
        let gfn = (B + 0x9000) >> 12;
        let frame = w.domains[0].physmap().lookup(gfn).unwrap().pa;
        w.put(0, B + 0x400, &(B + 0x9000).to_le_bytes());
        let rs = Hypercall::VcpuOp {
            cmd: vcpuop::REGISTER_RUNSTATE_PHYS_AREA,
            vcpu: 0,
            arg: B + 0x400,
        };
        assert_eq!(w.call(1, 0, rs).ret, 0);
        assert_eq!(reservation(&mut w, 0, 1, 1, gfn), 1);
        assert_eq!(w.pool.frame(frame).unwrap().refs, 0, "given back: free");
        let pm2 = w.domains[1].physmap_mut();
        pm2.set_max_pages(pm2.max_pages() + 1);
        let gfn2 = (B + (8 << 20)) >> 12;
        assert_eq!(reservation(&mut w, 1, 2, 6, gfn2), 1);
        assert_eq!(
            w.domains[1].physmap().lookup(gfn2).unwrap().pa,
            frame,
            "reused"
        );
        let off = crate::xen::s1walk::Stage1::default();
        for (st, t) in [(runstate::RUNNING, 10), (runstate::RUNNABLE, 20)] {
            runstate_switch(&mut w.domains[0], 0, st, t, off, &mut w.mem);
        }
        let page = w.get::<4096>(1, B + (8 << 20));
        assert!(page.iter().all(|&b| b == 0), "d2's page untouched");
    }

    /// Issue 9 finding 6 through hv: a domU mapping its shared-info page and
    /// grant frames at thousands of gfns grew its records and stage-2 tables
    /// without bound (hv's table memory and heap for everyone). Each special
    /// page now has one gfn (the last one asked for), and the stage-2 tables
    /// new regions need come out of the domain's own budget: when it is spent
    /// the call answers -ENOMEM with nothing changed, and another domain
    /// still maps and populates.
    #[test]
    fn special_pages_mapped_at_many_gfns_stay_bounded() {
        let mut w = World::new();
        let before = w.domains[0].physmap().mapped();
        let (mut ok, mut enomem) = (0, 0);
        for i in 0..3000u64 {
            let gpfn = 0x10_0000 + i * 0x1000; // new level-3 tables each time
            let mut b = [0u8; 24];
            b[0..2].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
            b[4..8].copy_from_slice(&((i % 2) as u32).to_le_bytes()); // shared_info, grant_table
            b[16..24].copy_from_slice(&gpfn.to_le_bytes());
            w.put(0, B + 0x100, &b);
            let mapped = w.domains[0].physmap().mapped();
            match memop(&mut w, 1, 7, B + 0x100) {
                0 => ok += 1,
                r if r == Errno::ENOMEM.to_x0() => {
                    enomem += 1;
                    // Refused before anything changed: the page stays where it was.
                    assert_eq!(w.domains[0].physmap().mapped(), mapped);
                }
                r => panic!("mapping {i}: {r:#x}"),
            }
            let pm = w.domains[0].physmap();
            assert!(
                pm.mapped() <= before + 2,
                "one gfn each for shared info and grant frame 0"
            );
            assert!(pm.table_frames() <= pm.limits().table_frames);
        }
        assert!(ok > 100 && enomem > 0, "{ok} mapped, {enomem} -ENOMEM");
        // d2 is unaffected.
        let mut b = [0u8; 24];
        b[0..2].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
        b[16..24].copy_from_slice(&0x10_0000u64.to_le_bytes());
        w.put(1, B + 0x100, &b);
        assert_eq!(memop(&mut w, 2, 7, B + 0x100), 0);
        let pm2 = w.domains[1].physmap_mut();
        pm2.set_max_pages(pm2.max_pages() + 1);
        assert_eq!(reservation(&mut w, 1, 2, 6, (B + (8 << 20)) >> 12), 1);
    }
}
