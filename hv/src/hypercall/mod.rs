//! The hypercall layer: ONE entry, [`handle`], for every Xen hypercall a
//! guest makes (`HVC #0xEA1`, number in x16, arguments in x0..x4), with ONE
//! context, [`Ctx`]: the calling vCPU, its stage 1 (always walked: guest
//! handles are guest virtual addresses, [`GuestVa`]), the [`World`], the
//! arch hooks (TLB plans) and the effects collected for the run loop
//! ([`Effects`]: upcalls to inject, vCPUs to start). Every handler answers a
//! [`Reply`]: x0 and what the run loop does next ([`Action`]); the run loop
//! (`start.rs`) turns it into its next step in one place.
//!
//! [`handle`] holds the one `match` over hypercall numbers in hv; each
//! family lives in its own file and decodes its sub-commands there:
//! [`console_io`], [`xen_version`], [`sched_op`], [`memory_op`],
//! [`grant_table_op`], [`event_channel_op`], [`vcpu_op`], [`hvm_op`],
//! [`vm_assist`], [`multicall`] (which re-enters [`handle`] per entry),
//! [`sysctl`], [`domctl`] (split by subject), [`platform_op`] and hv's own
//! [`hv_op`]. [`virq`] raises global VIRQs from hv itself (`VIRQ_DOM_EXC`,
//! `VIRQ_CONSOLE`); [`host`] holds the machine facts the privileged calls
//! report (CPUs, hv's command line, the RAM bound), recorded at boot.
//!
//! Guest values are checked and answered with Xen's errno; nothing here
//! panics on guest input.

pub mod console_io;
pub mod domctl;
pub mod event_channel_op;
pub mod grant_table_op;
pub mod host;
pub mod hv_op;
pub mod hvm_op;
pub mod memory_op;
pub mod multicall;
pub mod platform_op;
pub mod sched_op;
pub mod sysctl;
pub mod vcpu_op;
pub mod virq;
pub mod vm_assist;
pub mod xen_version;

#[cfg(test)]
mod grant_tests;
#[cfg(test)]
mod privif_tests;
#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use memops::{MemType, Stage2View, TableMem};
use pv_tlb::{Ipa, PhysAddr};

use crate::arch::{Arch, PhysMem};
use crate::domain::{DomId, Domain};
use crate::guest::GuestMemory;
use crate::vcpu::Vcpu;
use crate::world::World;
use crate::xen::abi::nr;
use crate::xen::console::{ConsoleLine, ConsoleSink};
use crate::xen::evtchn::{self, RecordingIrqSink};
use crate::xen::s1walk::Stage1;
use crate::xen::{Errno, ShutdownReason};

pub use crate::guest::GuestVa;

/// A guest's hypercall: its number (x16) and x0..x4.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Call {
    /// `__HYPERVISOR_*` (x16).
    pub nr: u64,
    /// x0..x4.
    pub args: [u64; 5],
}

/// What the run loop does after a hypercall returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Resume the vCPU.
    Continue,
    /// Let other vCPUs run first, then resume.
    Yield,
    /// `SCHEDOP_block`: sleep until an event (or another interrupt) is
    /// pending for the vCPU (xen/common/sched/core.c `vcpu_block_enable_events`).
    Block,
    /// The domain asked to shut down: end it.
    Shutdown(ShutdownReason),
    /// Preempted (Xen's `hypercall_create_continuation` on Arm): x0..x2
    /// become `args`, the PC goes back onto the `HVC` (x16 unchanged: the
    /// same hypercall is re-issued where it stopped), and the vCPU yields
    /// first (blocks, with `block`), so no call holds hv's locks for long.
    Continuation {
        /// The re-issued call's x0, x1, x2.
        args: [u64; 3],
        /// Block (`SCHEDOP_block` inside a multicall) rather than yield.
        block: bool,
    },
}

/// The answer to one hypercall: x0 and what happens next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Reply {
    /// The value for x0 (a negative errno on failure).
    pub ret: u64,
    /// What the run loop does next.
    pub action: Action,
}

impl Reply {
    /// x0 from a handler's result, and continue.
    #[must_use]
    pub fn ret(r: Result<u64, Errno>) -> Self {
        Reply {
            ret: r.unwrap_or_else(Errno::to_x0),
            action: Action::Continue,
        }
    }

    /// x0 = 0 and `action`.
    #[must_use]
    pub const fn then(action: Action) -> Self {
        Reply { ret: 0, action }
    }
}

/// What a hypercall leaves for the run loop to do once the world's lock is
/// released.
#[derive(Default)]
pub struct Effects {
    /// Event upcalls to inject (`(domid, vcpu)`, Xen's `evtchn_2l_set_pending`).
    pub upcalls: RecordingIrqSink,
    /// vCPUs to queue (`unpausedomain`).
    pub start: Vec<Box<Vcpu>>,
    /// Domains that began to run (`unpausedomain`): added to the live count.
    pub domains_started: usize,
    /// A domain was paused (`pausedomain`) or told to shut down
    /// (`SCHEDOP_remote_shutdown`): the run loop takes its vCPUs off the
    /// scheduler before this vCPU resumes.
    pub deschedule: bool,
}

/// Everything a hypercall may touch.
pub struct Ctx<'a, M: PhysMem + TableMem> {
    /// The calling domain.
    pub caller: DomId,
    /// The calling vCPU.
    pub vcpu: u32,
    /// Its stage 1 (guest handles are virtual addresses, walked in software).
    pub s1: Stage1,
    /// Everything global.
    pub world: &'a mut World<M>,
    /// This pCPU (TLB plans are executed here).
    pub arch: &'a mut dyn Arch,
    /// Collected for the run loop.
    pub fx: Effects,
}

/// The calling domain's own part of the world, borrowed from a [`Ctx`] for
/// the calls that need nothing else (console_io, xen_version, sched_op, hv_op).
pub struct CallerView<'a, M: PhysMem + TableMem> {
    /// The calling domain's id.
    pub domid: u16,
    /// The domain is privileged (a control domain).
    pub privileged: bool,
    /// The caller is direct-mapped (IPA == PA; [`direct_mapped`]).
    pub direct_mapped: bool,
    /// The domain's handle (`xen_domain_handle_t`, a UUID).
    pub handle: [u8; 16],
    /// The calling domain's memory, through the caller's stage 1.
    pub mem: GuestMemory<'a, M>,
    /// The domain's partial console line.
    pub line: &'a mut ConsoleLine,
    /// Where complete console lines go.
    pub sink: &'a mut dyn ConsoleSink,
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

/// Xen's C prototypes take `int`/`unsigned int` commands; on Arm the upper
/// half of the register is dropped (C conversion), so hv does the same.
const fn low32(v: u64) -> u32 {
    v as u32
}

impl<'a, M: PhysMem + TableMem> Ctx<'a, M> {
    /// A context for vCPU `vcpu` of `caller` with stage 1 `s1`.
    pub fn new(
        caller: DomId,
        vcpu: u32,
        s1: Stage1,
        world: &'a mut World<M>,
        arch: &'a mut dyn Arch,
    ) -> Self {
        Self {
            caller,
            vcpu,
            s1,
            world,
            arch,
            fx: Effects::default(),
        }
    }

    /// The calling domain.
    ///
    /// # Errors
    /// `-ESRCH` if it is gone ([`handle`] checks it first).
    pub fn me(&mut self) -> Result<&mut Domain, Errno> {
        let c = self.caller;
        self.world.entry(c).ok_or(Errno::ESRCH)
    }

    fn view_s2(&mut self) -> Result<Stage2View, Errno> {
        Ok(self.me()?.stage2().view())
    }

    /// The caller is a control domain.
    pub fn privileged(&mut self) -> bool {
        self.me().is_ok_and(|d| d.privileged)
    }

    /// The caller's memory, addressed by guest VA (through its stage 1).
    ///
    /// # Errors
    /// `-ESRCH` if the caller is gone.
    pub fn guest(&mut self) -> Result<GuestMemory<'_, M>, Errno> {
        let v = self.view_s2()?;
        Ok(GuestMemory::from_view(v, &mut self.world.mem).with_stage1(Some(self.s1)))
    }

    /// Copy `N` bytes in from the caller's `va`.
    ///
    /// # Errors
    /// `-EFAULT` for an address that is not readable guest RAM.
    pub fn read<const N: usize>(&mut self, va: GuestVa) -> Result<[u8; N], Errno> {
        let mut b = [0u8; N];
        self.copy_in(va, &mut b)?;
        Ok(b)
    }

    /// Copy `buf.len()` bytes in from the caller's `va`.
    ///
    /// # Errors
    /// `-EFAULT` for an address that is not readable guest RAM.
    pub fn copy_in(&mut self, va: GuestVa, buf: &mut [u8]) -> Result<(), Errno> {
        self.guest()?
            .copy_from_guest(Ipa(va.0), buf)
            .map_err(|e| e.errno())
    }

    /// Copy `b` out to the caller's `va`.
    ///
    /// # Errors
    /// `-EFAULT` for an address that is not writable guest RAM (nothing written).
    pub fn write(&mut self, va: GuestVa, b: &[u8]) -> Result<(), Errno> {
        self.guest()?
            .copy_to_guest(Ipa(va.0), b)
            .map_err(|e| e.errno())
    }

    /// The caller's writable RAM page behind guest *physical* `ipa` (host
    /// address, offset kept): gfns in structs are IPAs.
    fn translate_rw(&mut self, ipa: u64) -> Result<PhysAddr, Errno> {
        let v = self.view_s2()?;
        match v.lookup(&self.world.mem, Ipa(ipa)) {
            Some((pa, a)) if a.read && a.write && a.mem == MemType::NormalWb => Ok(pa),
            _ => Err(Errno::EFAULT),
        }
    }

    /// Xen's `map_guest_page` / `map_guest_area`: the caller's writable RAM
    /// at guest physical `ipa` (else `-EINVAL`), its page pinned for the
    /// domain's lifetime (hv writes there from then on), then `f` with the
    /// caller's domain, the host address (offset kept), hv's RAM and the
    /// effects. If the pin cannot be taken or `f` fails, nothing is kept.
    fn with_pinned_page<R>(
        &mut self,
        ipa: u64,
        f: impl FnOnce(&mut Domain, PhysAddr, &mut M, &mut Effects) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        let pa = self.translate_rw(ipa).map_err(|_| Errno::EINVAL)?;
        let frame = PhysAddr(pa.0 & !(pv_tlb::PAGE_SIZE - 1));
        let caller = self.caller;
        let World {
            mem, domains, pool, ..
        } = &mut *self.world;
        let d = domains
            .iter_mut()
            .find(|d| d.id == caller)
            .ok_or(Errno::ESRCH)?;
        d.xen.pin(caller, frame, pool)?;
        f(d, pa, mem, &mut self.fx).inspect_err(|_| d.xen.unpin(frame, pool))
    }

    /// `dom` as the caller names it: itself (`DOMID_SELF` or its id), or any
    /// other domain for a control domain (else `-EPERM`).
    fn self_or(&mut self, dom: u16) -> Result<u16, Errno> {
        if dom == evtchn::DOMID_SELF || dom == self.caller {
            Ok(self.caller)
        } else if self.privileged() {
            Ok(dom)
        } else {
            Err(Errno::EPERM)
        }
    }

    /// The caller's own part of the world.
    ///
    /// # Errors
    /// `-ESRCH` if the caller is gone.
    pub fn caller_view(&mut self) -> Result<CallerView<'_, M>, Errno> {
        let caller = self.caller;
        let s1 = self.s1;
        let World {
            mem, domains, sink, ..
        } = &mut *self.world;
        let d = domains
            .iter_mut()
            .find(|d| d.id == caller)
            .ok_or(Errno::ESRCH)?;
        let (privileged, handle) = (d.privileged, d.handle);
        let direct = direct_mapped(d);
        let (stage2, line) = d.hypercall_parts();
        Ok(CallerView {
            domid: caller,
            privileged,
            direct_mapped: direct,
            handle,
            mem: GuestMemory::new(stage2, mem).with_stage1(Some(s1)),
            line,
            sink: sink.as_mut(),
        })
    }
}

/// Domain `d` is direct-mapped (IPA == PA): what `XENFEAT_direct_mapped`
/// announces. Xen direct-maps the hardware domain (dom0,
/// `is_domain_direct_mapped`); in hv helper "dom0"'s builder does it. Until
/// `Domain` carries its own `direct_mapped` flag this is keyed on
/// `privileged` (hv's dom0 is the privileged domain): the one line to change
/// when the flag exists.
#[must_use]
pub fn direct_mapped(d: &Domain) -> bool {
    d.privileged
}

/// hv's system time (ns since the counter's zero), what runstates are kept in.
fn now_ns<M: PhysMem + TableMem>(ctx: &Ctx<'_, M>) -> u64 {
    crate::xen::domu::ticks_to_ns(ctx.arch.counter(), ctx.arch.counter_frequency())
}

/// A hypercall number hv does not implement (`-ENOSYS`), for the log line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Unimplemented {
    /// x16.
    pub nr: u64,
    /// The sub-command (x0), if the number is known but the command is not.
    pub cmd: Option<u64>,
}

impl fmt::Display for Unimplemented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = crate::xen::abi::hypercall_name(self.nr);
        match (self.cmd, name) {
            (None, Some(name)) => write!(f, "hypercall {} ({name}) not implemented", self.nr),
            (None, None) => write!(f, "unknown hypercall {}", self.nr),
            (Some(cmd), name) => write!(
                f,
                "hypercall {} ({}) command {cmd} not implemented",
                self.nr,
                name.unwrap_or("?")
            ),
        }
    }
}

/// `-ENOSYS` for an unknown sub-command `cmd` of hypercall `nr` (logged).
fn unknown_command(caller: DomId, nr: u64, cmd: u64) -> Reply {
    log::debug!(
        "d{caller}: {}: -ENOSYS",
        Unimplemented { nr, cmd: Some(cmd) }
    );
    Reply::ret(Err(Errno::ENOSYS))
}

/// Handle hypercall `call` for the vCPU of `ctx`: THE dispatch point of hv.
///
/// A caller whose domain is no longer in the world (it cannot run: a vCPU is
/// loaded only while its domain exists, so this is hv's own inconsistency)
/// gets `-ESRCH` and nothing else happens; its vCPU is dropped at its next
/// scheduling point (the load fails).
pub fn handle<M: PhysMem + TableMem>(call: Call, ctx: &mut Ctx<'_, M>) -> Reply {
    if ctx.me().is_err() {
        log::error!(
            "d{}v{}: hypercall {} from a domain hv no longer has: -ESRCH",
            ctx.caller,
            ctx.vcpu,
            call.nr
        );
        return Reply::ret(Err(Errno::ESRCH));
    }
    let a = call.args;
    match call.nr {
        nr::CONSOLE_IO => console_io::call(a, ctx),
        nr::XEN_VERSION => xen_version::call(a, ctx),
        nr::SCHED_OP => sched_op::call(a, ctx),
        nr::MEMORY_OP => memory_op::call(a, ctx),
        nr::GRANT_TABLE_OP => grant_table_op::call(a, ctx),
        nr::EVENT_CHANNEL_OP => event_channel_op::call(a, ctx),
        nr::VCPU_OP => vcpu_op::call(a, ctx),
        nr::HVM_OP => hvm_op::call(a, ctx),
        nr::VM_ASSIST => vm_assist::call(a, ctx),
        nr::MULTICALL => multicall::call(a, ctx),
        nr::SYSCTL => sysctl::call(a, ctx),
        nr::PLATFORM_OP => platform_op::call(a, ctx),
        nr::DOMCTL => domctl::call(a, ctx),
        hv_op::HYPERVISOR_HV_OP => hv_op::call(a, ctx),
        nr => {
            log::debug!(
                "d{}: {}: -ENOSYS",
                ctx.caller,
                Unimplemented { nr, cmd: None }
            );
            Reply::ret(Err(Errno::ENOSYS))
        }
    }
}

#[cfg(test)]
mod decode_tests {
    //! Sub-command decoding per family and the answer to unknown numbers
    //! (moved from xen/mod.rs's `Hypercall::decode` tests).
    use super::console_io::ConsoleIo;
    use super::sched_op::SchedOp;
    use super::xen_version::XenVersion;
    use super::Unimplemented;
    use crate::guest::GuestHandle;

    #[test]
    fn decode_known_calls() {
        let a = |x0: u64, x1: u64, x2: u64| [x0, x1, x2, 0, 0];
        assert_eq!(
            ConsoleIo::decode(a(0, 5, 0x4000_0100)),
            Some(ConsoleIo::Write {
                count: 5,
                buf: GuestHandle::new(0x4000_0100)
            })
        );
        assert_eq!(
            ConsoleIo::decode(a(1, 5, 0x4000_0100)),
            Some(ConsoleIo::Read {
                count: 5,
                buf: GuestHandle::new(0x4000_0100)
            })
        );
        assert_eq!(XenVersion::decode(a(0, 0, 0)), Some(XenVersion::Version));
        // Xen takes `int cmd`: the upper half of x0 is ignored.
        assert_eq!(
            XenVersion::decode(a(0xffff_ffff_0000_0006, 0x4000_0000, 0)),
            Some(XenVersion::GetFeatures(GuestHandle::new(0x4000_0000)))
        );
        assert_eq!(
            XenVersion::decode(a(7, 0, 0)),
            Some(XenVersion::PageSize { arg: 0 })
        );
        assert_eq!(SchedOp::decode(a(0, 0, 0)), Some(SchedOp::Yield));
        assert_eq!(
            SchedOp::decode(a(2, 0x4000_0800, 0)),
            Some(SchedOp::Shutdown(GuestHandle::new(0x4000_0800)))
        );
        // Unknown sub-commands: None (the family answers -ENOSYS).
        assert_eq!(ConsoleIo::decode(a(2, 0, 0)), None);
        assert_eq!(
            XenVersion::decode(a(10, 0x4000_0000, 0)),
            Some(XenVersion::VarBuf {
                cmd: 10,
                arg: 0x4000_0000
            })
        );
        assert_eq!(XenVersion::decode(a(15, 0, 0)), None);
        assert_eq!(XenVersion::decode(a(0x1_0000_0000 + 99, 0, 0)), None);
        assert_eq!(SchedOp::decode(a(3, 0, 0)), None);
    }

    #[test]
    fn unimplemented_names() {
        assert_eq!(
            std::format!("{}", Unimplemented { nr: 26, cmd: None }),
            "hypercall 26 (mmuext_op) not implemented"
        );
        assert_eq!(
            std::format!("{}", Unimplemented { nr: 99, cmd: None }),
            "unknown hypercall 99"
        );
        assert_eq!(
            std::format!(
                "{}",
                Unimplemented {
                    nr: 18,
                    cmd: Some(2)
                }
            ),
            "hypercall 18 (console_io) command 2 not implemented"
        );
    }
}

#[cfg(test)]
mod view_tests {
    //! The caller-view calls (xen_version, console_io) on a bare
    //! [`CallerView`] (moved from xen/mod.rs).
    use super::*;
    use crate::arch::fake::FakeMem;
    use crate::guest::GuestHandle;
    use crate::xen::console::ConsoleLine;
    use crate::xen::console::LINE_MAX;
    use crate::xen::ConsoleSink;
    use crate::xen::Errno;
    use alloc::string::String;
    use alloc::vec::Vec;
    use memops::S2Attrs;
    use pv_tlb::Ipa;

    #[derive(Default)]
    struct Lines(Vec<String>);
    impl ConsoleSink for Lines {
        fn guest_line(&mut self, domid: u16, line: &str) {
            self.0.push(std::format!("(d{domid}) {line}"));
        }
    }

    const B: u64 = 0x4000_0000;

    fn with_ctx(privileged: bool, f: impl FnOnce(&mut CallerView<'_, FakeMem>)) -> Lines {
        let (mut mem, s2) = crate::testutil::stage2_with(&[
            (B, 0x8010_0000, 0x2000, S2Attrs::RAM),
            (B + 0x2000, 0x8020_0000, 0x1000, S2Attrs::RAM_RO),
        ]);
        let mut line = ConsoleLine::default();
        let mut sink = Lines::default();
        let mut ctx = CallerView {
            domid: 3,
            privileged,
            direct_mapped: privileged,
            handle: [9; 16],
            mem: GuestMemory::new(&s2, &mut mem),
            line: &mut line,
            sink: &mut sink,
        };
        f(&mut ctx);
        sink
    }

    /// Issue a call as a guest does: re-issued while it answers with a
    /// continuation (x0..x2 replaced); the final x0.
    fn call(ctx: &mut CallerView<'_, FakeMem>, nr: u64, mut args: [u64; 5]) -> u64 {
        loop {
            let out = match nr {
                17 => Reply::ret(xen_version::xen_version(
                    xen_version::XenVersion::decode(args).unwrap(),
                    ctx,
                )),
                18 => console_io::console_io(console_io::ConsoleIo::decode(args).unwrap(), ctx),
                _ => unreachable!("only xen_version and console_io here"),
            };
            match out.action {
                Action::Continuation {
                    args: a,
                    block: false,
                } => args[..3].copy_from_slice(&a),
                _ => return out.ret,
            }
        }
    }

    #[test]
    fn xen_version_layouts() {
        with_ctx(false, |ctx| {
            assert_eq!(call(ctx, 17, [1, B, 0, 0, 0]), 0);
            let mut ev = [0xffu8; 16];
            ctx.mem.copy_from_guest(Ipa(B), &mut ev).unwrap();
            let n = xen_version::EXTRAVERSION.len();
            assert!(xen_version::EXTRAVERSION.starts_with("-hv-"));
            assert_eq!(&ev[..n], xen_version::EXTRAVERSION.as_bytes());
            assert!(ev[n..].iter().all(|b| *b == 0), "NUL padded");
            // get_features: submap_idx in, submap out (second u32).
            ctx.mem.copy_to_guest(Ipa(B + 0x100), &[0; 8]).unwrap();
            assert_eq!(call(ctx, 17, [6, B + 0x100, 0, 0, 0]), 0);
            let fi: u64 = ctx.mem.read(GuestHandle::new(B + 0x100)).unwrap();
            assert_eq!(fi & 0xffff_ffff, 0);
            let submap = (fi >> 32) as u32;
            // Xen/Arm's set for a translated domU (xen/common/kernel.c),
            // without memory_op_vnode_supported (13): writable page tables,
            // auto-translated, SMCCC, not direct-mapped, runstate_phys_area.
            assert_eq!(
                submap,
                (1 << 0) | (1 << 2) | (1 << 14) | (1 << 16) | (1 << 18)
            );
            assert_eq!(submap & (1 << 11), 0, "not dom0");
            // A read-only output page is -EFAULT, and stays untouched.
            assert_eq!(
                call(ctx, 17, [3, B + 0x2000, 0, 0, 0]),
                Errno::EFAULT.to_x0()
            );
            // capabilities: char[1024] across a page boundary.
            assert_eq!(call(ctx, 17, [3, B + 0xf00, 0, 0, 0]), 0);
            let mut cap = [0u8; 1024];
            ctx.mem.copy_from_guest(Ipa(B + 0xf00), &mut cap).unwrap();
            assert!(cap.starts_with(b"xen-3.0-aarch64 \0"));
            // guest_handle is the domain's handle; compile_info is 144 bytes.
            ctx.mem.copy_to_guest(Ipa(B + 0x400), &[0xee; 200]).unwrap();
            assert_eq!(call(ctx, 17, [2, B + 0x400, 0, 0, 0]), 0);
            let mut ci = [0u8; 145];
            ctx.mem.copy_from_guest(Ipa(B + 0x400), &mut ci).unwrap();
            assert!(ci.starts_with(b"rustc\0"));
            assert_eq!(&ci[64..67], b"hv\0");
            assert_eq!(ci[144], 0xee, "nothing written past the struct");
            assert_eq!(call(ctx, 17, [8, B + 0x600, 0, 0, 0]), 0);
            let h: [u8; 16] = ctx.mem.read(GuestHandle::new(B + 0x600)).unwrap();
            assert_eq!(h, [9; 16]);
            assert_eq!(call(ctx, 17, [9, B + 0x600, 0, 0, 0]), 0);
            let cl: [u8; 9] = ctx.mem.read(GuestHandle::new(B + 0x600)).unwrap();
            assert_eq!(&cl, b"<denied>\0");
        });
        with_ctx(true, |ctx| {
            ctx.mem.copy_to_guest(Ipa(B), &[0; 8]).unwrap();
            assert_eq!(call(ctx, 17, [6, B, 0, 0, 0]), 0);
            let fi: u64 = ctx.mem.read(GuestHandle::new(B)).unwrap();
            assert_ne!(
                (fi >> 32) & (1 << 11),
                0,
                "dom0 feature for a privileged domain"
            );
            // The trace's dom0 got 0x66805 from Xen 4.20: hv's is that
            // without memory_op_vnode_supported (bit 13, no get_vnumainfo).
            assert_eq!(fi >> 32, 0x66805 & !(1 << 13));
        });
    }

    #[test]
    fn console_lines_escape_and_break() {
        let long = [b'a'; 2500];
        let sink = with_ctx(false, |ctx| {
            ctx.mem
                .copy_to_guest(Ipa(B), b"tab\there\r\nnext\n")
                .unwrap();
            assert_eq!(call(ctx, 18, [0, 15, B, 0, 0]), 0);
            ctx.mem.copy_to_guest(Ipa(B + 0x100), &long).unwrap();
            assert_eq!(call(ctx, 18, [0, 2500, B + 0x100, 0, 0]), 0);
            // A buffer running off the end of RAM: the readable part prints, then -EFAULT.
            ctx.mem
                .copy_to_guest(Ipa(B + 0x1ff0), b"0123456789abcdef")
                .unwrap();
            assert_eq!(call(ctx, 18, [0, 0x20, B + 0x1ff0, 0, 0]), 0);
            assert_eq!(
                call(ctx, 18, [0, 0x20, B + 0x3ff0, 0, 0]),
                Errno::EFAULT.to_x0()
            );
            assert!(!ctx.line.is_empty());
        });
        assert_eq!(sink.0[0], "(d3) tab\\x09here");
        assert_eq!(sink.0[1], "(d3) next");
        assert_eq!(sink.0[2], std::format!("(d3) {}", "a".repeat(LINE_MAX)));
        assert_eq!(sink.0[3], std::format!("(d3) {}", "a".repeat(LINE_MAX)));
        assert_eq!(
            sink.0.len(),
            4,
            "452 a's and the rest stay buffered until a newline"
        );
    }
}
