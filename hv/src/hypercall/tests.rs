//! Handler tests over a small world (moved from xen/domu.rs with the handlers).

use super::*;
use crate::arch::fake::{FakeArch, FakeMachine, FakeMem};
use crate::domain::runstate_switch;
use crate::domain::GUEST_RAM0_BASE;
use crate::testutil::{self, Lines};
use crate::xen::console_ring as ring;
use crate::xen::domu::{
    hvm_param, runstate, ticks_to_ns, vcpuop, vmasst, CONSOLE_GFN, GUEST_MAGIC_BASE,
};
use crate::xen::evtchn::RecordingIrqSink;
use crate::xen::grant;
use alloc::string::String;
use memops::physmap::P2mKind;
use multicall::MULTICALL_BUDGET;

const B: u64 = GUEST_RAM0_BASE;

/// The hypercalls these tests make, as the guest's registers.
#[derive(Clone, Copy, Debug)]
enum Hypercall {
    ConsoleIo(console_io::ConsoleIo),
    EventChannelOp { cmd: u32, arg: u64 },
    GrantTableOp { cmd: u32, arg: u64, count: u32 },
    VcpuOp { cmd: u32, vcpu: u32, arg: u64 },
    HvmOp { cmd: u32, arg: u64 },
    VmAssist { cmd: u32, ty: u32 },
    Multicall { list: u64, nr: u32 },
}

impl Hypercall {
    fn call(self) -> Call {
        let c = |nr, a: [u64; 3]| Call {
            nr,
            args: [a[0], a[1], a[2], 0, 0],
        };
        match self {
            Hypercall::ConsoleIo(console_io::ConsoleIo::Write { count, buf }) => {
                c(nr::CONSOLE_IO, [0, u64::from(count), buf.ipa().0])
            }
            Hypercall::ConsoleIo(console_io::ConsoleIo::Read { count, buf }) => {
                c(nr::CONSOLE_IO, [1, u64::from(count), buf.ipa().0])
            }
            Hypercall::EventChannelOp { cmd, arg } => {
                c(nr::EVENT_CHANNEL_OP, [u64::from(cmd), arg, 0])
            }
            Hypercall::GrantTableOp { cmd, arg, count } => {
                c(nr::GRANT_TABLE_OP, [u64::from(cmd), arg, u64::from(count)])
            }
            Hypercall::VcpuOp { cmd, vcpu, arg } => {
                c(nr::VCPU_OP, [u64::from(cmd), u64::from(vcpu), arg])
            }
            Hypercall::HvmOp { cmd, arg } => c(nr::HVM_OP, [u64::from(cmd), arg, 0]),
            Hypercall::VmAssist { cmd, ty } => c(nr::VM_ASSIST, [u64::from(cmd), u64::from(ty), 0]),
            Hypercall::Multicall { list, nr: n } => c(nr::MULTICALL, [list, u64::from(n), 0]),
        }
    }
}

struct World {
    world: crate::world::World<FakeMem>,
    arch: FakeArch,
    lines: Lines,
    irq: RecordingIrqSink,
}

impl World {
    fn new() -> Self {
        let lines = Lines::default();
        let policy = pv_tlb::Policy::XenCompat;
        let mut world = testutil::world(0x400_0000, 0x3000, policy, Box::new(lines.clone()), 2);
        for id in [1, 2] {
            testutil::push_domain(&mut world, id, 4 << 20, 2);
        }
        Self {
            world,
            arch: FakeArch::new(0, FakeMachine::new_shared()),
            lines,
            irq: RecordingIrqSink::default(),
        }
    }

    /// A context for vCPU `vcpu` of `caller` (MMU off).
    fn ctx(&mut self, caller: u16, vcpu: u32) -> Ctx<'_, FakeMem> {
        Ctx::new(
            caller,
            vcpu,
            Stage1::default(),
            &mut self.world,
            &mut self.arch,
        )
    }

    fn put(&mut self, d: usize, ipa: u64, b: &[u8]) {
        self.world.domains[d]
            .guest_memory(&mut self.world.mem)
            .copy_to_guest(Ipa(ipa), b)
            .unwrap();
    }

    fn get<const N: usize>(&mut self, d: usize, ipa: u64) -> [u8; N] {
        let mut b = [0u8; N];
        self.world.domains[d]
            .guest_memory(&mut self.world.mem)
            .copy_from_guest(Ipa(ipa), &mut b)
            .unwrap();
        b
    }

    fn call(&mut self, caller: u16, vcpu: u32, c: Hypercall) -> Reply {
        self.raw(caller, vcpu, c.call())
    }

    fn raw(&mut self, caller: u16, vcpu: u32, c: Call) -> Reply {
        let mut ctx = self.ctx(caller, vcpu);
        let r = handle(c, &mut ctx);
        let up = core::mem::take(&mut ctx.fx.upcalls.upcalls);
        self.irq.upcalls.extend(up);
        r
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
        w.lines.all(),
        [
            "(d1) hello hvc0",
            "hv: d1: PV console ring in use (event channel 1)"
        ]
    );
    assert_eq!(le32(&w.get::<4>(0, rpa + ring::OUT_CONS), 0), 11);
    assert_eq!(w.world.domains[0].xen.console_bytes, 11);
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
        w.world.domains[0].xen.runstate[0].area,
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
    assert_eq!(
        (le32(&q, 4), le32(&q, 8), le16(&q, 12)),
        (1, grant::DEFAULT_MAX_GRANT_FRAMES, 0),
        "INITIAL_NR_GRANT_FRAMES in use, Xen's default maximum"
    );
    w.put(0, B + 0x600, &2u32.to_le_bytes());
    let sv = Hypercall::GrantTableOp {
        cmd: grant::op::SET_VERSION,
        arg: B + 0x600,
        count: 1,
    };
    assert_eq!(
        w.call(1, 0, sv).ret,
        Errno::ENOSYS.to_x0(),
        "Xen on Arm: max_version 1"
    );
    assert_eq!(le32(&w.get::<4>(0, B + 0x600), 0), 1, "v1 stays");

    // vm_assist: only the runstate update flag.
    let va = |ty| Hypercall::VmAssist { cmd: 0, ty };
    assert_eq!(w.call(1, 0, va(vmasst::TYPE_RUNSTATE_UPDATE_FLAG)).ret, 0);
    assert!(w.world.domains[0].xen.runstate_update_flag);
    assert_eq!(w.call(1, 0, va(2)).ret, Errno::EINVAL.to_x0());

    // FIFO event channels are offered (Xen 4.20): init_control on vCPU 0
    // with its control block at B + 0x3000 answers 0 and link_bits 17.
    let mut ic = [0u8; 24];
    ic[0..8].copy_from_slice(&((B + 0x3000) >> 12).to_le_bytes());
    w.put(0, B + 0x600, &ic);
    let ic = Hypercall::EventChannelOp {
        cmd: evtchn::op::INIT_CONTROL,
        arg: B + 0x600,
    };
    assert_eq!(w.call(1, 0, ic).ret, 0);
    assert_eq!(w.get::<24>(0, B + 0x600)[16], 17);
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
    list[64 + 16..64 + 24].copy_from_slice(&u64::from(evtchn::op::BIND_INTERDOMAIN).to_le_bytes());
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
        &mut w.world.domains[0],
        1,
        runstate::RUNNING,
        100,
        off,
        &mut w.world.mem,
    );
    runstate_switch(
        &mut w.world.domains[0],
        1,
        runstate::RUNNABLE,
        350,
        off,
        &mut w.world.mem,
    );
    runstate_switch(
        &mut w.world.domains[0],
        1,
        runstate::RUNNING,
        1000,
        off,
        &mut w.world.mem,
    );
    let b = w.get::<48>(0, B + 0x2000);
    assert_eq!(le32(&b, 0), runstate::RUNNING);
    assert_eq!(le64(&b, 8), 1000, "entry time, update flag cleared");
    assert_eq!(le64(&b, 16), 250, "time running");
    assert_eq!(le64(&b, 24), 650, "time runnable");
    assert_eq!(le64(&b, 40), 100, "offline until first run");
    // vCPU 0 has no area: nothing written anywhere, no panic.
    runstate_switch(
        &mut w.world.domains[0],
        0,
        runstate::RUNNING,
        5,
        off,
        &mut w.world.mem,
    );
    runstate_switch(
        &mut w.world.domains[0],
        9,
        runstate::RUNNING,
        5,
        off,
        &mut w.world.mem,
    );
    assert_eq!(ticks_to_ns(62_500_000, 62_500_000), 1_000_000_000);
    assert_eq!(ticks_to_ns(5, 0), 0);
}

#[test]
fn add_to_physmap_maps_shared_info_and_grant_frames() {
    let mut w = World::new();
    // struct xen_add_to_physmap: domid @0, size @2, space @4, idx @8, gpfn @16.
    let atp = |w: &mut World, space: u32, idx: u64, gpfn: u64| -> u64 {
        let mut b = [0u8; 24];
        b[0..2].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
        b[4..8].copy_from_slice(&space.to_le_bytes());
        b[8..16].copy_from_slice(&idx.to_le_bytes());
        b[16..24].copy_from_slice(&gpfn.to_le_bytes());
        w.put(0, B + 0x100, &b);
        memop(w, 1, 7, B + 0x100)
    };
    // Linux maps shared info over one of its RAM pages, grant frame 0 at the DT region.
    let si_gfn = (B + 0x5000) >> 12;
    assert_eq!(atp(&mut w, 0, 0, si_gfn), 0);
    let gnt_gfn = grant::GUEST_GNTTAB_BASE >> 12;
    assert_eq!(atp(&mut w, 1, 0, gnt_gfn), 0);
    let max = grant::DEFAULT_MAX_GRANT_FRAMES;
    assert_eq!(
        atp(&mut w, 1, u64::from(max), gnt_gfn + u64::from(max)),
        Errno::EINVAL.to_x0()
    );
    assert_eq!(w.world.domains[0].xen.grant.query_size(), (1, max));
    // The guest's writes land in hv's frames.
    w.put(0, B + 0x5000 + evtchn::layout::SI_MASK, &[0xff]);
    w.put(0, grant::GUEST_GNTTAB_BASE + 8, &[0x42]);
    let si = w.world.domains[0].xen.shared_info().unwrap();
    let g0 = w.world.domains[0].xen.grant.frame(0).unwrap();
    let mut b = [0u8; 1];
    w.world
        .mem
        .read(PhysAddr(si.0 + evtchn::layout::SI_MASK), &mut b);
    assert_eq!(b, [0xff]);
    w.world.mem.read(PhysAddr(g0.0 + 8), &mut b);
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
    assert!(
        w.lines.all().contains(&"(d1) one".into()),
        "{:?}",
        w.lines.all()
    );
    assert!(
        w.lines.all().contains(&"(d1) two".into()),
        "{:?}",
        w.lines.all()
    );
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
        w.lines.all().iter().filter(|l| **l == line).count(),
        1,
        "{:?}",
        w.lines.all()
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
    use crate::guest::GuestHandle;
    use console_io::{ConsoleIo, WRITE_BUDGET};
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
    })
    .call();
    let mut pieces = 0u64;
    loop {
        let out = w.raw(1, 0, call);
        pieces += 1;
        assert_eq!(out.ret, 0);
        match out.action {
            Action::Continuation { args, block } => {
                assert!(!block);
                assert_eq!(args[0], 0, "CONSOLEIO_write");
                assert_eq!(args[1], len - pieces * WRITE_BUDGET, "count left");
                assert_eq!(args[2], base + pieces * WRITE_BUDGET, "buffer advanced");
                call = Call {
                    nr: nr::CONSOLE_IO,
                    args: [args[0], args[1], args[2], 0, 0],
                };
            }
            Action::Continue => break,
            a => panic!("{a:?}"),
        }
    }
    assert_eq!(pieces, len / WRITE_BUDGET);
    let all = w.lines.all();
    let printed: Vec<&String> = all.iter().filter(|l| l.starts_with("(d1) line ")).collect();
    assert_eq!(printed.len(), n as usize - 1, "every complete line");
    assert_eq!(*printed[0], "(d1) line 0000000");
    assert_eq!(
        *printed[printed.len() - 1],
        std::format!("(d1) line {:07}", n - 2)
    );
}

/// `memory_op(cmd, arg)` of `caller` in a World (xen-compat flushes).
fn memop(w: &mut World, caller: u16, cmd: u64, arg: u64) -> u64 {
    use memory_op::{memory_op, MemoryOpResult};
    match memory_op(cmd, arg, &mut w.ctx(caller, 0)) {
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
    let frame = w.world.domains[0].physmap().lookup(gfn).unwrap().pa;
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
    assert_eq!(
        w.world.pool.frame(frame).unwrap().refs,
        2,
        "allocation + pin"
    );
    // d1 gives the page back.
    assert_eq!(reservation(&mut w, 0, 1, 1, gfn), 1, "one extent released");
    assert!(w.world.domains[0].physmap().lookup(gfn).is_none());
    let f = w.world.pool.frame(frame).unwrap();
    assert_eq!((f.owner, f.refs), (Some(1), 1), "still d1's: pinned");
    // d2 populates a page (room for one more): never d1's pinned frame.
    let pm2 = w.world.domains[1].physmap_mut();
    pm2.set_max_pages(pm2.max_pages() + 1);
    let gfn2 = (B + (8 << 20)) >> 12;
    assert_eq!(reservation(&mut w, 1, 2, 6, gfn2), 1);
    let pa2 = w.world.domains[1].physmap().lookup(gfn2).unwrap().pa;
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
    w.world.mem.read(PhysAddr(frame.0 + 0x40), &mut b);
    assert_eq!(b, [1], "the upcall went to d1's pinned page");
    // Teardown gives the pin back: the frame is free again.
    let mut xen = core::mem::take(&mut w.world.domains[0].xen);
    xen.release(&mut w.world.pool);
    assert_eq!(w.world.pool.frame(frame).unwrap().refs, 0);
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
    assert!(w.world.domains[0].xen.pinned().is_empty());
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
    assert!(w.world.domains[0].xen.pinned().is_empty());
    // A failed registration (vCPU already registered: -EBUSY) takes no pin.
    vi[0..8].copy_from_slice(&((B + 0x7000) >> 12).to_le_bytes());
    w.put(0, B + 0x100, &vi);
    assert_eq!(w.call(1, 0, reg).ret, 0);
    vi[0..8].copy_from_slice(&((B + 0x8000) >> 12).to_le_bytes());
    w.put(0, B + 0x100, &vi);
    assert_eq!(w.call(1, 0, reg).ret, Errno::EBUSY.to_x0());
    assert_eq!(w.world.domains[0].xen.pinned().len(), 1);
    let f = w.world.domains[0]
        .physmap()
        .lookup((B + 0x8000) >> 12)
        .unwrap()
        .pa;
    assert_eq!(w.world.pool.frame(f).unwrap().refs, 1);
}

/// Issue 9 finding 10: `decrease_reservation` of the console ring's gfn
/// succeeded and unmapped hv's ring. It is an hv special page, not the
/// domain's RAM: no extent is released, the ring stays mapped and owned,
/// and hv still drains it.
#[test]
fn decrease_reservation_of_the_console_ring_is_refused() {
    let mut w = World::new();
    let ring = w.world.domains[0].xen.console_ring.unwrap();
    assert_eq!(
        reservation(&mut w, 0, 1, 1, CONSOLE_GFN),
        0,
        "no extent released"
    );
    let e = w.world.domains[0].physmap().lookup(CONSOLE_GFN).unwrap();
    assert_eq!((e.pa, e.kind), (ring, P2mKind::SharedInfo));
    let f = w.world.pool.frame(ring).unwrap();
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
    let frame = w.world.domains[0].physmap().lookup(gfn).unwrap().pa;
    w.put(0, B + 0x400, &(B + 0x9000).to_le_bytes());
    let rs = Hypercall::VcpuOp {
        cmd: vcpuop::REGISTER_RUNSTATE_PHYS_AREA,
        vcpu: 0,
        arg: B + 0x400,
    };
    assert_eq!(w.call(1, 0, rs).ret, 0);
    assert_eq!(reservation(&mut w, 0, 1, 1, gfn), 1);
    assert_eq!(
        w.world.pool.frame(frame).unwrap().refs,
        0,
        "given back: free"
    );
    let pm2 = w.world.domains[1].physmap_mut();
    pm2.set_max_pages(pm2.max_pages() + 1);
    let gfn2 = (B + (8 << 20)) >> 12;
    assert_eq!(reservation(&mut w, 1, 2, 6, gfn2), 1);
    assert_eq!(
        w.world.domains[1].physmap().lookup(gfn2).unwrap().pa,
        frame,
        "reused"
    );
    let off = crate::xen::s1walk::Stage1::default();
    for (st, t) in [(runstate::RUNNING, 10), (runstate::RUNNABLE, 20)] {
        runstate_switch(&mut w.world.domains[0], 0, st, t, off, &mut w.world.mem);
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
    let before = w.world.domains[0].physmap().mapped();
    let (mut ok, mut enomem) = (0, 0);
    for i in 0..3000u64 {
        let gpfn = 0x10_0000 + i * 0x1000; // new level-3 tables each time
        let mut b = [0u8; 24];
        b[0..2].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
        b[4..8].copy_from_slice(&((i % 2) as u32).to_le_bytes()); // shared_info, grant_table
        b[16..24].copy_from_slice(&gpfn.to_le_bytes());
        w.put(0, B + 0x100, &b);
        let mapped = w.world.domains[0].physmap().mapped();
        match memop(&mut w, 1, 7, B + 0x100) {
            0 => ok += 1,
            r if r == Errno::ENOMEM.to_x0() => {
                enomem += 1;
                // Refused before anything changed: the page stays where it was.
                assert_eq!(w.world.domains[0].physmap().mapped(), mapped);
            }
            r => panic!("mapping {i}: {r:#x}"),
        }
        let pm = w.world.domains[0].physmap();
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
    let pm2 = w.world.domains[1].physmap_mut();
    pm2.set_max_pages(pm2.max_pages() + 1);
    assert_eq!(reservation(&mut w, 1, 2, 6, (B + (8 << 20)) >> 12), 1);
}

/// Unknown hypercall numbers and unknown sub-commands answer -ENOSYS (moved
/// from xen/mod.rs's decode tests, now through [`handle`]).
#[test]
fn unknown_numbers_and_commands_answer_enosys() {
    let mut w = World::new();
    let enosys = Errno::ENOSYS.to_x0();
    for nr in [11, 43, 99, 0xffff_ffff_ffff_ffff, 26, 31] {
        let r = w.raw(1, 0, Call { nr, args: [0; 5] });
        assert_eq!(r, Reply::ret(Err(Errno::ENOSYS)), "hypercall {nr}");
    }
    for (nr, cmd) in [(18, 2), (17, 15), (17, 0x1_0000_0000 + 99), (29, 3)] {
        let r = w.raw(
            1,
            0,
            Call {
                nr,
                args: [cmd, 0, 0, 0, 0],
            },
        );
        assert_eq!(r.ret, enosys, "hypercall {nr} command {cmd}");
    }
}

/// Issue 10: a caller whose domain hv no longer has is answered one way,
/// -ESRCH with nothing else done, whatever the call (before: domctl and
/// sysctl returned with x0 untouched, the caller-view calls ended the
/// "domain" with a made-up EC 0x16, the domU calls answered -ESRCH).
#[test]
fn a_caller_hv_no_longer_has_gets_esrch_from_every_call() {
    let mut w = World::new();
    let before = w.world.pool.free_frames();
    for nr in [12, 13, 17, 18, 20, 21, 24, 29, 32, 34, 35, 36, 49, 99] {
        let r = w.raw(
            9,
            0,
            Call {
                nr,
                args: [0, B, B, 1, 0],
            },
        );
        assert_eq!(r, Reply::ret(Err(Errno::ESRCH)), "hypercall {nr}");
    }
    assert_eq!(w.world.pool.free_frames(), before);
    assert!(w.lines.all().is_empty());
}

/// Issue 10: a multicall may carry memory_op entries (Xen's do_multicall
/// runs any hypercall; Linux batches memory_op). Here XENMEM_add_to_physmap
/// of the shared-info page, then xen_version, in one multicall: the page is
/// mapped at the gfn asked for and both results are stored (before: the
/// memory_op entry answered -ENOSYS).
#[test]
fn multicall_runs_memory_op_entries() {
    let mut w = World::new();
    let gfn = (B + 0x5000) >> 12;
    let mut atp = [0u8; 24];
    atp[0..2].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
    atp[16..24].copy_from_slice(&gfn.to_le_bytes()); // space 0 = shared_info, idx 0
    w.put(0, B + 0x100, &atp);
    let mut list = [0u8; 128];
    list[0..8].copy_from_slice(&nr::MEMORY_OP.to_le_bytes());
    list[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    list[16..24].copy_from_slice(&7u64.to_le_bytes()); // XENMEM_add_to_physmap
    list[24..32].copy_from_slice(&(B + 0x100).to_le_bytes());
    list[64..72].copy_from_slice(&nr::XEN_VERSION.to_le_bytes());
    w.put(0, B + 0x1000, &list);
    let r = w.call(
        1,
        0,
        Hypercall::Multicall {
            list: B + 0x1000,
            nr: 2,
        },
    );
    assert_eq!(r, Reply::ret(Ok(0)));
    let out = w.get::<128>(0, B + 0x1000);
    assert_eq!(le64(&out, 8), 0, "memory_op entry result");
    assert_eq!(
        le64(&out, 64 + 8),
        (4 << 16) | 20,
        "xen_version entry result"
    );
    let si = w.world.domains[0].xen.shared_info().unwrap();
    let d = &w.world.domains[0];
    let (pa, _) = d
        .stage2()
        .lookup(&w.world.mem, pv_tlb::Ipa(gfn << 12))
        .expect("shared info mapped by the multicall");
    assert_eq!(pa, si);
}
