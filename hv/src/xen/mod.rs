//! Xen's hypercall ABI on Arm: decoding and dispatch.
//!
//! A guest calls `HVC #0xEA1` with the hypercall number in x16 and arguments
//! in x0..x4; the result goes back in x0 (negative Xen errno on failure).
//! [`Hypercall::decode`] turns the raw registers into a typed call (or a
//! [`DecodeError`]); [`dispatch`] runs its handler against a
//! [`HypercallCtx`] (the calling domain's view of the world) and says what
//! the run loop must do next ([`Action`]).
//!
//! Every handler checks guest values and answers with an errno; nothing here
//! panics on guest input.

pub mod abi;
pub mod console;
pub mod console_ring;
pub mod domu;
pub mod errno;
pub mod evtchn;
pub mod grant;
pub mod hvop;
pub mod memory;
pub mod s1walk;
pub mod sched;
pub mod version;

use core::fmt;

use memops::TableMem;

use crate::arch::PhysMem;
use crate::guest::{GuestHandle, GuestMemory};
use abi::{consoleio, nr, schedop, xenver, XEN_HYPERCALL_TAG};
pub use console::{ConsoleLine, ConsoleSink};
pub use errno::Errno;
pub use sched::ShutdownReason;

/// A `console_io` sub-command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConsoleIo {
    /// `CONSOLEIO_write`: `count` bytes at `buf`.
    Write {
        /// Number of bytes.
        count: u32,
        /// The guest buffer.
        buf: GuestHandle<u8>,
    },
    /// `CONSOLEIO_read`: up to `count` bytes into `buf`.
    Read {
        /// Capacity of the buffer.
        count: u32,
        /// The guest buffer.
        buf: GuestHandle<u8>,
    },
}

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

/// A `sched_op` sub-command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SchedOp {
    /// `SCHEDOP_yield`.
    Yield,
    /// `SCHEDOP_block` (until an event is pending for the vCPU).
    Block,
    /// `SCHEDOP_shutdown`: `struct sched_shutdown { unsigned int reason; }` at the handle.
    Shutdown(GuestHandle<u32>),
}

/// A decoded Xen hypercall.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Hypercall {
    /// `__HYPERVISOR_console_io` (18).
    ConsoleIo(ConsoleIo),
    /// `__HYPERVISOR_xen_version` (17).
    XenVersion(XenVersion),
    /// `__HYPERVISOR_sched_op` (29).
    SchedOp(SchedOp),
    /// hv's own `hv_op` (49, see [`hvop`]).
    HvOp {
        /// Sub-op (x0).
        op: u32,
        /// Argument handle (x1).
        arg: GuestHandle<[u8; hvop::HV_COUNTERS_LEN]>,
    },
    /// `__HYPERVISOR_domctl` (36): `struct xen_domctl` at `arg` (control domain only).
    Domctl {
        /// Guest handle of the `struct xen_domctl`.
        arg: u64,
    },
    /// `__HYPERVISOR_sysctl` (35): `struct xen_sysctl` at `arg` (control domain only).
    Sysctl {
        /// Guest handle of the `struct xen_sysctl`.
        arg: u64,
    },
    /// `__HYPERVISOR_event_channel_op` (32): `EVTCHNOP_*` and its struct ([`evtchn`], [`domu`]).
    EventChannelOp {
        /// `EVTCHNOP_*`.
        cmd: u32,
        /// Guest handle of the command's struct.
        arg: u64,
    },
    /// `__HYPERVISOR_grant_table_op` (20): `GNTTABOP_*`, `count` structs at `arg` ([`grant`]).
    GrantTableOp {
        /// `GNTTABOP_*`.
        cmd: u32,
        /// Guest handle of the first struct.
        arg: u64,
        /// Number of structs.
        count: u32,
    },
    /// `__HYPERVISOR_vcpu_op` (24): `VCPUOP_*` on vCPU `vcpu` ([`domu`]).
    VcpuOp {
        /// `VCPUOP_*`.
        cmd: u32,
        /// Target vCPU.
        vcpu: u32,
        /// Guest handle of the command's struct.
        arg: u64,
    },
    /// `__HYPERVISOR_hvm_op` (34): `HVMOP_get_param` / `set_param` ([`domu`]).
    HvmOp {
        /// `HVMOP_*`.
        cmd: u32,
        /// Guest handle of `struct xen_hvm_param`.
        arg: u64,
    },
    /// `__HYPERVISOR_vm_assist` (21).
    VmAssist {
        /// `VMASST_CMD_*`.
        cmd: u32,
        /// `VMASST_TYPE_*`.
        ty: u32,
    },
    /// `__HYPERVISOR_multicall` (13): `nr` entries of `struct multicall_entry` at `list`.
    Multicall {
        /// Guest handle of the entry array.
        list: u64,
        /// Number of entries.
        nr: u32,
    },
    /// `__HYPERVISOR_memory_op` (12): `cmd` and its argument, decoded by [`memory`].
    MemoryOp {
        /// `XENMEM_*` command (Xen's `unsigned long cmd`: low bits command, high bits continuation).
        cmd: u64,
        /// Guest handle of the command's argument.
        arg: u64,
    },
}

/// Why a guest `HVC` is not a call hv handles.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DecodeError {
    /// The immediate is not `0xEA1`: not a Xen hypercall. The run loop
    /// injects an undefined-instruction exception (as Xen's `do_trap_hypercall`).
    NotXen {
        /// The immediate used.
        imm16: u16,
    },
    /// A hypercall number Xen does not define, or one hv does not implement.
    UnknownHypercall {
        /// x16.
        nr: u64,
    },
    /// A sub-command hv does not implement.
    UnknownCommand {
        /// x16.
        nr: u64,
        /// The sub-command (x0).
        cmd: u64,
    },
}

impl DecodeError {
    /// The errno the guest gets in x0, or `None` when it gets an exception instead.
    #[must_use]
    pub const fn errno(self) -> Option<Errno> {
        match self {
            DecodeError::NotXen { .. } => None,
            DecodeError::UnknownHypercall { .. } | DecodeError::UnknownCommand { .. } => {
                Some(Errno::ENOSYS)
            }
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::NotXen { imm16 } => write!(f, "HVC #{imm16:#x} is not a Xen hypercall"),
            DecodeError::UnknownHypercall { nr } => match abi::hypercall_name(nr) {
                Some(name) => write!(f, "hypercall {nr} ({name}) not implemented"),
                None => write!(f, "unknown hypercall {nr}"),
            },
            DecodeError::UnknownCommand { nr, cmd } => {
                write!(
                    f,
                    "hypercall {nr} ({}) command {cmd} not implemented",
                    abi::hypercall_name(nr).unwrap_or("?")
                )
            }
        }
    }
}

/// Xen's C prototypes take `int`/`unsigned int` commands; on Arm the upper
/// half of the register is dropped (C conversion), so hv does the same.
const fn low32(v: u64) -> u32 {
    v as u32
}

impl Hypercall {
    /// Decode a guest `HVC #imm16` with x16 = `x16` and x0..x4 = `args`.
    ///
    /// # Errors
    /// [`DecodeError::NotXen`] for another immediate; [`DecodeError::UnknownHypercall`]
    /// and [`DecodeError::UnknownCommand`] (both `-ENOSYS`) for what hv does not implement.
    pub fn decode(imm16: u16, x16: u64, args: &[u64; 5]) -> Result<Hypercall, DecodeError> {
        if imm16 != XEN_HYPERCALL_TAG {
            return Err(DecodeError::NotXen { imm16 });
        }
        let unknown_cmd = DecodeError::UnknownCommand {
            nr: x16,
            cmd: args[0],
        };
        Ok(match x16 {
            nr::CONSOLE_IO => {
                // do_console_io(unsigned int cmd, unsigned int count, char *buffer)
                let count = low32(args[1]);
                let buf = GuestHandle::new(args[2]);
                Hypercall::ConsoleIo(match low32(args[0]) {
                    consoleio::WRITE => ConsoleIo::Write { count, buf },
                    consoleio::READ => ConsoleIo::Read { count, buf },
                    _ => return Err(unknown_cmd),
                })
            }
            nr::XEN_VERSION => {
                // do_xen_version(int cmd, void *arg)
                let a = args[1];
                Hypercall::XenVersion(match low32(args[0]) {
                    xenver::VERSION => XenVersion::Version,
                    xenver::EXTRAVERSION => XenVersion::ExtraVersion(GuestHandle::new(a)),
                    xenver::COMPILE_INFO => XenVersion::CompileInfo(GuestHandle::new(a)),
                    xenver::CAPABILITIES => XenVersion::Capabilities(GuestHandle::new(a)),
                    xenver::CHANGESET => XenVersion::Changeset(GuestHandle::new(a)),
                    xenver::PLATFORM_PARAMETERS => {
                        XenVersion::PlatformParameters(GuestHandle::new(a))
                    }
                    xenver::GET_FEATURES => XenVersion::GetFeatures(GuestHandle::new(a)),
                    xenver::PAGESIZE => XenVersion::PageSize { arg: a },
                    xenver::GUEST_HANDLE => XenVersion::GuestHandle(GuestHandle::new(a)),
                    xenver::COMMANDLINE => XenVersion::Commandline(GuestHandle::new(a)),
                    _ => return Err(unknown_cmd),
                })
            }
            nr::SCHED_OP => {
                // do_sched_op(int cmd, void *arg)
                Hypercall::SchedOp(match low32(args[0]) {
                    schedop::YIELD => SchedOp::Yield,
                    schedop::BLOCK => SchedOp::Block,
                    schedop::SHUTDOWN => SchedOp::Shutdown(GuestHandle::new(args[1])),
                    _ => return Err(unknown_cmd),
                })
            }
            nr::EVENT_CHANNEL_OP => Hypercall::EventChannelOp {
                cmd: low32(args[0]),
                arg: args[1],
            },
            nr::GRANT_TABLE_OP => Hypercall::GrantTableOp {
                cmd: low32(args[0]),
                arg: args[1],
                count: low32(args[2]),
            },
            nr::VCPU_OP => Hypercall::VcpuOp {
                cmd: low32(args[0]),
                vcpu: low32(args[1]),
                arg: args[2],
            },
            nr::HVM_OP => Hypercall::HvmOp {
                cmd: low32(args[0]),
                arg: args[1],
            },
            nr::VM_ASSIST => Hypercall::VmAssist {
                cmd: low32(args[0]),
                ty: low32(args[1]),
            },
            nr::MULTICALL => Hypercall::Multicall {
                list: args[0],
                nr: low32(args[1]),
            },
            nr::MEMORY_OP => Hypercall::MemoryOp {
                cmd: args[0],
                arg: args[1],
            },
            nr::DOMCTL => Hypercall::Domctl { arg: args[0] },
            nr::SYSCTL => Hypercall::Sysctl { arg: args[0] },
            hvop::HYPERVISOR_HV_OP => Hypercall::HvOp {
                op: low32(args[0]),
                arg: GuestHandle::new(args[1]),
            },
            nr => return Err(DecodeError::UnknownHypercall { nr }),
        })
    }
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

/// The result of one hypercall: x0 and what happens next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Outcome {
    /// The value for x0 (a negative errno on failure).
    pub ret: u64,
    /// What the run loop does next.
    pub action: Action,
}

impl Outcome {
    /// x0 from a handler's result, and continue.
    #[must_use]
    pub fn ret(r: Result<u64, Errno>) -> Self {
        Outcome {
            ret: r.unwrap_or_else(Errno::to_x0),
            action: Action::Continue,
        }
    }
}

/// The calling domain's view of the world during one hypercall.
pub struct HypercallCtx<'a, M: PhysMem + TableMem> {
    /// The calling domain's id.
    pub domid: u16,
    /// The domain is privileged (a control domain).
    pub privileged: bool,
    /// The domain's handle (`xen_domain_handle_t`, a UUID).
    pub handle: [u8; 16],
    /// The calling domain's memory.
    pub mem: GuestMemory<'a, M>,
    /// The domain's partial console line.
    pub line: &'a mut ConsoleLine,
    /// Where complete console lines go.
    pub sink: &'a mut dyn ConsoleSink,
}

/// Run the handler of `call` for the calling domain.
///
/// `memory_op`, `domctl` and `sysctl` need the whole system rather than the
/// caller's view: the run loop handles them (`memory::memory_op`,
/// `start::System`'s domctl); given here, they answer `-ENOSYS`.
pub fn dispatch<M: PhysMem + TableMem>(call: &Hypercall, ctx: &mut HypercallCtx<'_, M>) -> Outcome {
    match *call {
        Hypercall::ConsoleIo(op) => console::console_io(op, ctx),
        Hypercall::XenVersion(op) => Outcome::ret(version::xen_version(op, ctx)),
        Hypercall::SchedOp(op) => sched::sched_op(op, ctx),
        Hypercall::HvOp { op, arg } => Outcome::ret(hvop::hv_op(op, arg, ctx)),
        Hypercall::MemoryOp { .. }
        | Hypercall::Domctl { .. }
        | Hypercall::Sysctl { .. }
        | Hypercall::EventChannelOp { .. }
        | Hypercall::GrantTableOp { .. }
        | Hypercall::VcpuOp { .. }
        | Hypercall::HvmOp { .. }
        | Hypercall::VmAssist { .. }
        | Hypercall::Multicall { .. } => Outcome::ret(Err(Errno::ENOSYS)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn decode_known_calls() {
        let a = |x0: u64, x1: u64, x2: u64| [x0, x1, x2, 0, 0];
        assert_eq!(
            Hypercall::decode(0xea1, 18, &a(0, 5, 0x4000_0100)),
            Ok(Hypercall::ConsoleIo(ConsoleIo::Write {
                count: 5,
                buf: GuestHandle::new(0x4000_0100)
            }))
        );
        assert_eq!(
            Hypercall::decode(0xea1, 18, &a(1, 5, 0x4000_0100)),
            Ok(Hypercall::ConsoleIo(ConsoleIo::Read {
                count: 5,
                buf: GuestHandle::new(0x4000_0100)
            }))
        );
        assert_eq!(
            Hypercall::decode(0xea1, 17, &a(0, 0, 0)),
            Ok(Hypercall::XenVersion(XenVersion::Version))
        );
        // Xen takes `int cmd`: the upper half of x0 is ignored.
        assert_eq!(
            Hypercall::decode(0xea1, 17, &a(0xffff_ffff_0000_0006, 0x4000_0000, 0)),
            Ok(Hypercall::XenVersion(XenVersion::GetFeatures(
                GuestHandle::new(0x4000_0000)
            )))
        );
        assert_eq!(
            Hypercall::decode(0xea1, 17, &a(7, 0, 0)),
            Ok(Hypercall::XenVersion(XenVersion::PageSize { arg: 0 }))
        );
        assert_eq!(
            Hypercall::decode(0xea1, 29, &a(0, 0, 0)),
            Ok(Hypercall::SchedOp(SchedOp::Yield))
        );
        assert_eq!(
            Hypercall::decode(0xea1, 29, &a(2, 0x4000_0800, 0)),
            Ok(Hypercall::SchedOp(SchedOp::Shutdown(GuestHandle::new(
                0x4000_0800
            ))))
        );
        assert_eq!(
            Hypercall::decode(0xea1, 12, &a(6, 0x4000_0000, 0)),
            Ok(Hypercall::MemoryOp {
                cmd: 6,
                arg: 0x4000_0000
            })
        );
    }

    #[test]
    fn decode_errors() {
        let z = [0u64; 5];
        // Wrong immediate: not Xen, whatever x16 says; no errno (an exception instead).
        let e = Hypercall::decode(0, 17, &z).unwrap_err();
        assert_eq!(e, DecodeError::NotXen { imm16: 0 });
        assert_eq!(e.errno(), None);
        assert_eq!(
            Hypercall::decode(0xea0, 18, &z),
            Err(DecodeError::NotXen { imm16: 0xea0 })
        );
        // Unknown and unimplemented numbers: -ENOSYS.
        for nr in [11, 43, 99, 0xffff_ffff_ffff_ffff, 26, 31] {
            let e = Hypercall::decode(0xea1, nr, &z).unwrap_err();
            assert_eq!(e, DecodeError::UnknownHypercall { nr });
            assert_eq!(e.errno(), Some(Errno::ENOSYS));
        }
        assert_eq!(
            std::format!("{}", DecodeError::UnknownHypercall { nr: 26 }),
            "hypercall 26 (mmuext_op) not implemented"
        );
        assert_eq!(
            std::format!("{}", DecodeError::UnknownHypercall { nr: 99 }),
            "unknown hypercall 99"
        );
        // Unknown sub-commands: -ENOSYS as Xen's handlers answer.
        for (nr, cmd) in [(18, 2), (17, 10), (17, 0x1_0000_0000 + 99), (29, 3)] {
            let e = Hypercall::decode(0xea1, nr, &[cmd, 0, 0, 0, 0]).unwrap_err();
            assert_eq!(e, DecodeError::UnknownCommand { nr, cmd });
            assert_eq!(e.errno(), Some(Errno::ENOSYS));
        }
    }
}

#[cfg(test)]
mod handler_tests {
    use super::*;
    use crate::arch::fake::FakeMem;
    use crate::xen::console::LINE_MAX;
    use alloc::string::String;
    use alloc::vec::Vec;
    use memops::{S2Attrs, Stage2};
    use pv_tlb::{Ipa, PhysAddr};

    #[derive(Default)]
    struct Lines(Vec<String>);
    impl ConsoleSink for Lines {
        fn guest_line(&mut self, domid: u16, line: &str) {
            self.0.push(std::format!("(d{domid}) {line}"));
        }
    }

    const B: u64 = 0x4000_0000;

    fn with_ctx(privileged: bool, f: impl FnOnce(&mut HypercallCtx<'_, FakeMem>)) -> Lines {
        let mut mem = FakeMem::new(0x8000_0000, 0x100_0000);
        let mut s2 = Stage2::new(&mut mem, 40).unwrap();
        s2.map(
            &mut mem,
            Ipa(B),
            PhysAddr(0x8010_0000),
            0x2000,
            S2Attrs::RAM,
        )
        .unwrap();
        s2.map(
            &mut mem,
            Ipa(B + 0x2000),
            PhysAddr(0x8020_0000),
            0x1000,
            S2Attrs::RAM_RO,
        )
        .unwrap();
        let mut line = ConsoleLine::default();
        let mut sink = Lines::default();
        let mut ctx = HypercallCtx {
            domid: 3,
            privileged,
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
    fn call(ctx: &mut HypercallCtx<'_, FakeMem>, nr: u64, mut args: [u64; 5]) -> u64 {
        loop {
            let out = dispatch(&Hypercall::decode(0xea1, nr, &args).unwrap(), ctx);
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
            assert_eq!(&ev[..4], b"-hv\0");
            assert!(ev[4..].iter().all(|b| *b == 0), "NUL padded");
            // get_features: submap_idx in, submap out (second u32).
            ctx.mem.copy_to_guest(Ipa(B + 0x100), &[0; 8]).unwrap();
            assert_eq!(call(ctx, 17, [6, B + 0x100, 0, 0, 0]), 0);
            let fi: u64 = ctx.mem.read(GuestHandle::new(B + 0x100)).unwrap();
            assert_eq!(fi & 0xffff_ffff, 0);
            let submap = (fi >> 32) as u32;
            assert_eq!(submap, (1 << 0) | (1 << 2) | (1 << 14) | (1 << 16));
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
