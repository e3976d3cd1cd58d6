//! The privileged interfaces (issue 11 item 5) over a small world with a
//! privileged d0 (2 vCPUs) and a toolstack-built domU d1: xen_version,
//! sysctl, getdomaininfo, global VIRQs, memory_op reservations, privcmd
//! buffers in user memory, and the dom0 start-up sequence of Xen 4.20's trace
//! (/work/shared/xen-toolstack-trace.md §2.1 and §3) replayed.

use super::*;
use crate::arch::fake::{FakeArch, FakeMachine, FakeMem};
use crate::domain::GUEST_RAM0_BASE;
use crate::testutil::{self, Lines};
use crate::xen::abi::{
    cpupool_op, domctl_cmd, physcap, sysctl_cmd, virq, XenDomctl, XenDomctlGetdomaininfo,
    XenSysctl, XenSysctlCpupoolOp, XenSysctlCputopoinfo, XenSysctlGetdomaininfolist,
    XenSysctlNumainfo, XenSysctlPhysinfo, XenSysctlReadconsole, XenSysctlSchedId,
    XEN_DOMCTL_INTERFACE_VERSION, XEN_SYSCTL_INTERFACE_VERSION,
};
use alloc::string::String;

const B: u64 = GUEST_RAM0_BASE;
/// Where the tests put a call's struct (in d0's RAM, MMU off).
const ARG: u64 = B + 0x1000;
/// An output buffer.
const BUF: u64 = B + 0x4000;

struct W {
    world: crate::world::World<FakeMem>,
    arch: FakeArch,
    irq: Vec<(u16, u32)>,
    s1: Stage1,
}

impl W {
    /// d0: privileged, 2 vCPUs, 8 MiB; d1: a toolstack-built domU, 1 vCPU.
    fn new() -> Self {
        let policy = pv_tlb::Policy::XenCompat;
        let mut world = testutil::world(0x800_0000, 0x8000, policy, Box::new(Lines::default()), 4);
        for (id, vcpus, ram) in [(0u16, 2u32, 8u64 << 20), (1, 1, 4 << 20)] {
            let d = testutil::push_domain(&mut world, id, ram, vcpus);
            d.max_vcpus = vcpus;
            d.privileged = id == 0;
            d.from_domctl = id == 1;
            // As createdomain leaves it: paused once until its first unpause.
            d.pause_count = u32::from(id == 1);
        }
        Self {
            world,
            arch: FakeArch::new(0, FakeMachine::new_shared()),
            irq: Vec::new(),
            s1: Stage1::default(),
        }
    }

    fn idx(&self, d: u16) -> usize {
        testutil::dom_index(&self.world, d)
    }

    fn put(&mut self, d: u16, ipa: u64, b: &[u8]) {
        testutil::guest_put(&mut self.world, d, ipa, b);
    }

    fn get(&mut self, d: u16, ipa: u64, n: usize) -> Vec<u8> {
        let i = self.idx(d);
        let mut b = alloc::vec![0u8; n];
        self.world.domains[i]
            .guest_memory(&mut self.world.mem)
            .copy_from_guest(Ipa(ipa), &mut b)
            .unwrap();
        b
    }

    fn raw(&mut self, caller: u16, vcpu: u32, nr: u64, args: [u64; 5]) -> Reply {
        let mut ctx = Ctx::new(caller, vcpu, self.s1, &mut self.world, &mut self.arch);
        let r = handle(Call { nr, args }, &mut ctx);
        let up = core::mem::take(&mut ctx.fx.upcalls.upcalls);
        self.irq.extend(up);
        r
    }

    /// A call's x0 as a signed value (errno negative).
    fn call(&mut self, caller: u16, nr: u64, args: [u64; 3]) -> i64 {
        self.raw(caller, 0, nr, [args[0], args[1], args[2], 0, 0])
            .ret as i64
    }

    fn sysctl_as(&mut self, caller: u16, cmd: u32, member: &[u8]) -> (i64, XenSysctl) {
        let mut op = XenSysctl {
            cmd,
            interface_version: XEN_SYSCTL_INTERFACE_VERSION,
            ..XenSysctl::default()
        };
        op.u[..member.len()].copy_from_slice(member);
        let at = if caller == 0 { ARG } else { B + 0x1000 };
        self.put(caller, at, &op.to_bytes());
        let r = self.call(caller, nr::SYSCTL, [at, 0, 0]);
        let back = self.get(caller, at, XenSysctl::SIZE);
        (
            r,
            XenSysctl::from_bytes(back.as_slice().try_into().unwrap()),
        )
    }

    fn sysctl(&mut self, cmd: u32, member: &[u8]) -> (i64, XenSysctl) {
        self.sysctl_as(0, cmd, member)
    }

    fn domctl(&mut self, cmd: u32, dom: u16) -> (i64, XenDomctl) {
        let op = XenDomctl::new(cmd, dom);
        self.put(0, ARG, &op.to_bytes());
        let r = self.call(0, nr::DOMCTL, [ARG, 0, 0]);
        let back = self.get(0, ARG, XenDomctl::SIZE);
        (
            r,
            XenDomctl::from_bytes(back.as_slice().try_into().unwrap()),
        )
    }

    fn evtchn(&mut self, caller: u16, cmd: u32, s: &[u8]) -> (i64, Vec<u8>) {
        let at = B + 0x2000;
        self.put(caller, at, s);
        let r = self.call(caller, nr::EVENT_CHANNEL_OP, [u64::from(cmd), at, 0]);
        (r, self.get(caller, at, s.len()))
    }
    /// `EVTCHNOP_bind_virq(virq, vcpu)` by `caller`: the result and the port.
    fn bind_virq(&mut self, caller: u16, virq: u32, vcpu: u32) -> (i64, u32) {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&virq.to_le_bytes());
        b[4..8].copy_from_slice(&vcpu.to_le_bytes());
        let (r, out) = self.evtchn(caller, evtchn::op::BIND_VIRQ, &b);
        (r, u32::from_le_bytes(out[8..12].try_into().unwrap()))
    }
    /// Whether `port` is pending in `domid`'s shared info
    /// (`evtchn_pending[]` at offset 48).
    fn pending(&self, domid: u16, port: u32) -> bool {
        let si = self.world.domains[self.idx(domid)]
            .xen
            .evtchn
            .shared_info()
            .unwrap();
        let mut pend = [0u8; 8];
        self.world
            .mem
            .read(PhysAddr(si.0 + 48 + u64::from(port / 64) * 8), &mut pend);
        u64::from_le_bytes(pend) & (1 << (port % 64)) != 0
    }
    /// `EVTCHNOP_bind_vcpu(port, vcpu)` by dom0: the result.
    fn bind_vcpu(&mut self, port: u32, vcpu: u32) -> i64 {
        let mut b = [0u8; 8];
        b[0..4].copy_from_slice(&port.to_le_bytes());
        b[4..8].copy_from_slice(&vcpu.to_le_bytes());
        self.evtchn(0, evtchn::op::BIND_VCPU, &b).0
    }
}

fn e(x: Errno) -> i64 {
    -(x as i64)
}

#[test]
fn xen_version_varbufs_and_privileged_strings() {
    let mut w = W::new();
    // Length requests (NULL), then the strings without NUL.
    let ev = xen_version::EXTRAVERSION;
    assert_eq!(w.call(0, nr::XEN_VERSION, [11, 0, 0]), ev.len() as i64);
    w.put(0, ARG, &64u32.to_le_bytes());
    assert_eq!(w.call(0, nr::XEN_VERSION, [11, ARG, 0]), ev.len() as i64);
    assert_eq!(w.get(0, ARG + 4, ev.len()), ev.as_bytes());
    let caps = xen_version::CAPABILITIES;
    assert_eq!(w.call(0, nr::XEN_VERSION, [12, ARG, 0]), caps.len() as i64);
    assert_eq!(w.get(0, ARG + 4, caps.len()), caps.as_bytes());
    assert_eq!(
        w.call(0, nr::XEN_VERSION, [13, ARG, 0]),
        xen_version::CHANGESET.len() as i64
    );
    // Too small a buffer: -ENOBUFS, nothing written past the header.
    w.put(0, ARG, &2u32.to_le_bytes());
    w.put(0, ARG + 4, &[0xee; 8]);
    assert_eq!(w.call(0, nr::XEN_VERSION, [12, ARG, 0]), e(Errno::ENOBUFS));
    assert_eq!(w.get(0, ARG + 4, 8), [0xee; 8]);
    // A header outside RAM: -EFAULT.
    assert_eq!(
        w.call(0, nr::XEN_VERSION, [11, 0x10_0000_0000, 0]),
        e(Errno::EFAULT)
    );
    // build_id: hv has none (-ENODATA as Xen without one); a domU is refused first.
    assert_eq!(w.call(0, nr::XEN_VERSION, [10, 0, 0]), e(Errno::ENODATA));
    assert_eq!(w.call(1, nr::XEN_VERSION, [10, 0, 0]), e(Errno::EPERM));
    // commandline2: the control domain's only (host facts: unset in tests, empty).
    assert_eq!(
        w.call(0, nr::XEN_VERSION, [14, 0, 0]),
        host::host_facts().cmdline.len() as i64
    );
    assert_eq!(w.call(1, nr::XEN_VERSION, [14, 0, 0]), e(Errno::EPERM));
    // extraversion2 is for everyone.
    assert_eq!(
        w.call(1, nr::XEN_VERSION, [11, 0, 0]),
        ev.len() as i64,
        "XSM_HOOK"
    );
    // XENVER_commandline: char[1024] for dom0, "<denied>" for a domU.
    w.put(0, BUF, &[0xee; 1100]);
    assert_eq!(w.call(0, nr::XEN_VERSION, [9, BUF, 0]), 0);
    let cl = w.get(0, BUF, 1025);
    assert_eq!(cl[1024], 0xee, "exactly 1024 bytes");
    assert_eq!(cl[host::host_facts().cmdline.len()], 0, "NUL terminated");
    w.put(1, B + 0x3000, &[0xee; 16]);
    assert_eq!(w.call(1, nr::XEN_VERSION, [9, B + 0x3000, 0]), 0);
    assert_eq!(&w.get(1, B + 0x3000, 10), b"<denied>\0\xee");
    // XENVER_version, pagesize as the trace (0x40014, 0x1000).
    assert_eq!(w.call(0, nr::XEN_VERSION, [0, 0, 0]), 0x40014);
    assert_eq!(w.call(0, nr::XEN_VERSION, [7, 0, 0]), 0x1000);
}

#[test]
fn get_features_dom0_is_direct_mapped_domu_unchanged() {
    let mut w = W::new();
    w.put(0, ARG, &[0; 8]);
    assert_eq!(w.call(0, nr::XEN_VERSION, [6, ARG, 0]), 0);
    let f = u32::from_le_bytes(w.get(0, ARG + 4, 4).try_into().unwrap());
    use crate::xen::abi::xenfeat as x;
    assert_ne!(f & (1 << x::DOM0), 0);
    assert_ne!(f & (1 << x::DIRECT_MAPPED), 0);
    assert_eq!(f & (1 << x::NOT_DIRECT_MAPPED), 0);
    w.put(1, B + 0x3000, &[0; 8]);
    assert_eq!(w.call(1, nr::XEN_VERSION, [6, B + 0x3000, 0]), 0);
    let g = u32::from_le_bytes(w.get(1, B + 0x3004, 4).try_into().unwrap());
    assert_eq!(g & (1 << x::DOM0), 0);
    assert_eq!(g & (1 << x::DIRECT_MAPPED), 0);
    assert_ne!(g & (1 << x::NOT_DIRECT_MAPPED), 0);
    // Submap 1 does not exist.
    w.put(0, ARG, &1u32.to_le_bytes());
    assert_eq!(w.call(0, nr::XEN_VERSION, [6, ARG, 0]), e(Errno::EINVAL));
}

#[test]
fn sysctl_checks_version_then_privilege() {
    let mut w = W::new();
    let mut op = XenSysctl {
        cmd: sysctl_cmd::PHYSINFO,
        interface_version: 0x14,
        ..XenSysctl::default()
    };
    w.put(0, ARG, &op.to_bytes());
    assert_eq!(w.call(0, nr::SYSCTL, [ARG, 0, 0]), e(Errno::EACCES));
    op.interface_version = XEN_SYSCTL_INTERFACE_VERSION;
    w.put(1, B + 0x1000, &op.to_bytes());
    assert_eq!(w.call(1, nr::SYSCTL, [B + 0x1000, 0, 0]), e(Errno::EPERM));
    assert_eq!(
        w.call(0, nr::SYSCTL, [0x10_0000_0000, 0, 0]),
        e(Errno::EFAULT)
    );
    // perfc_op (xenperf): -ENOSYS as Xen without CONFIG_PERF_COUNTERS;
    // the struct is not written back.
    let (r, back) = w.sysctl(sysctl_cmd::PERFC_OP, &[0xab; 8]);
    assert_eq!(r, e(Errno::ENOSYS));
    assert_eq!(&back.u[..8], &[0xab; 8]);
}

#[test]
fn physinfo_sched_id_and_topology() {
    let mut w = W::new();
    let (r, back) = w.sysctl(sysctl_cmd::PHYSINFO, &[0xff; 112]);
    assert_eq!(r, 0);
    let p: XenSysctlPhysinfo = back.member();
    let n = host::host_facts().nr_cpus.max(1);
    assert_eq!(p.threads_per_core, 1);
    assert_eq!(p.cores_per_socket, 1);
    assert_eq!(p.nr_cpus, n);
    assert_eq!(p.max_cpu_id, n - 1);
    assert_eq!((p.nr_nodes, p.max_node_id), (1, 0));
    let khz = (w.arch.counter_frequency() + 500) / 1000;
    assert_eq!(u64::from(p.cpu_khz), khz);
    assert_eq!(
        p.capabilities,
        physcap::HVM | physcap::HAP | physcap::GNTTAB_V1
    );
    assert_eq!(p.arch_capabilities & physcap::ARM_SVE_MASK, 0, "no SVE");
    assert_eq!(p.total_pages, w.world.pool.total_frames());
    assert_eq!(p.free_pages, w.world.pool.free_frames());
    assert!(p.free_pages < p.total_pages, "the domains hold pages");
    assert_eq!((p.scrub_pages, p.outstanding_pages), (0, 0));
    assert_eq!(p.hw_cap, [0; 8], "the union's input is not echoed");

    let (r, back) = w.sysctl(sysctl_cmd::SCHED_ID, &[]);
    assert_eq!(r, 0);
    let s: XenSysctlSchedId = back.member();
    assert_eq!(s.sched_id, 6, "XEN_SCHEDULER_CREDIT2");

    // cputopoinfo: NULL handle = count; then entries (core/socket/node 0).
    let q = XenSysctlCputopoinfo {
        num_cpus: 0,
        cputopo: 0,
    };
    let (r, back) = w.sysctl(sysctl_cmd::CPUTOPOINFO, &q.to_bytes());
    assert_eq!(r, 0);
    assert_eq!(back.member::<XenSysctlCputopoinfo>().num_cpus, n);
    w.put(0, BUF, &[0xee; 64]);
    let q = XenSysctlCputopoinfo {
        num_cpus: 4,
        cputopo: BUF,
    };
    let (r, back) = w.sysctl(sysctl_cmd::CPUTOPOINFO, &q.to_bytes());
    assert_eq!(r, 0);
    assert_eq!(back.member::<XenSysctlCputopoinfo>().num_cpus, n);
    let t = w.get(0, BUF, 12 * n as usize + 1);
    assert!(t[..12 * n as usize].iter().all(|b| *b == 0));
    assert_eq!(t[12 * n as usize], 0xee);

    // numainfo: one node with the pool, distance 20.
    let q = XenSysctlNumainfo {
        num_nodes: 0,
        meminfo: 0,
        distance: 0,
    };
    let (r, back) = w.sysctl(sysctl_cmd::NUMAINFO, &q.to_bytes());
    assert_eq!((r, back.member::<XenSysctlNumainfo>().num_nodes), (0, 1));
    let q = XenSysctlNumainfo {
        num_nodes: 2,
        meminfo: BUF,
        distance: BUF + 0x100,
    };
    let (r, back) = w.sysctl(sysctl_cmd::NUMAINFO, &q.to_bytes());
    assert_eq!((r, back.member::<XenSysctlNumainfo>().num_nodes), (0, 1));
    let m = w.get(0, BUF, 16);
    assert_eq!(
        u64::from_le_bytes(m[..8].try_into().unwrap()),
        w.world.pool.total_frames() * 4096
    );
    assert_eq!(w.get(0, BUF + 0x100, 4), 20u32.to_le_bytes());
}

#[test]
fn cpupool_enumeration_ends_with_enoent() {
    let mut w = W::new();
    let info = |pool: u32, nr_bits: u32| XenSysctlCpupoolOp {
        op: cpupool_op::INFO,
        cpupool_id: pool,
        cpumap: crate::xen::abi::XenctlBitmap {
            bitmap: BUF,
            nr_bits,
        },
        ..XenSysctlCpupoolOp::default()
    };
    w.put(0, BUF, &[0xee; 16]);
    let (r, back) = w.sysctl(sysctl_cmd::CPUPOOL_OP, &info(0, 64).to_bytes());
    assert_eq!(r, 0);
    let p: XenSysctlCpupoolOp = back.member();
    assert_eq!((p.cpupool_id, p.sched_id, p.n_dom), (0, 6, 2));
    let n = host::host_facts().nr_cpus.max(1);
    let map = w.get(0, BUF, 9);
    assert_eq!(
        u64::from_le_bytes(map[..8].try_into().unwrap()),
        (1 << n) - 1
    );
    assert_eq!(map[8], 0xee, "nr_bits 64: 8 bytes");
    // xen-init-dom0 then asks for pool 1: -ENOENT ends the enumeration.
    let (r, _) = w.sysctl(sysctl_cmd::CPUPOOL_OP, &info(1, 64).to_bytes());
    assert_eq!(r, e(Errno::ENOENT));
    // FREEINFO (xl info): no free CPUs.
    w.put(0, BUF, &[0xee; 16]);
    let mut f = info(0, 16);
    f.op = cpupool_op::FREEINFO;
    assert_eq!(w.sysctl(sysctl_cmd::CPUPOOL_OP, &f.to_bytes()).0, 0);
    assert_eq!(w.get(0, BUF, 3), [0, 0, 0xee]);
    // A huge nr_bits is written in pieces up to the end of RAM, then -EFAULT.
    let big = info(0, u32::MAX);
    assert_eq!(
        w.sysctl(sysctl_cmd::CPUPOOL_OP, &big.to_bytes()).0,
        e(Errno::EFAULT)
    );
    let mut c = info(0, 8);
    c.op = cpupool_op::CREATE;
    assert_eq!(
        w.sysctl(sysctl_cmd::CPUPOOL_OP, &c.to_bytes()).0,
        e(Errno::ENOSYS)
    );
}

fn list(w: &mut W, first: u16, max: u32) -> (i64, Vec<XenDomctlGetdomaininfo>) {
    let (r, back) = domaininfolist(w, first, max);
    let n = back.member::<XenSysctlGetdomaininfolist>().num_domains as usize;
    let raw = w.get(0, BUF, n * 120);
    let v = raw
        .chunks(120)
        .map(|c| XenDomctlGetdomaininfo::from_bytes(c.try_into().unwrap()))
        .collect();
    (r, v)
}

#[test]
fn getdomaininfolist_and_getdomaininfo_as_xl_list_reads_them() {
    let mut w = W::new();
    // d0 running on vCPU 0, vCPU 1 blocked; d1 paused, never ran.
    {
        use crate::xen::domu::runstate;
        let d0 = w.idx(0);
        let rs = &mut w.world.domains[d0].xen.runstate;
        // Running since counter 0 (the fake counter runs at 1 GHz: ns).
        rs[0].state = runstate::RUNNING;
        rs[0].entry = 0;
        rs[0].time[0] = 1000;
        rs[1].state = runstate::BLOCKED;
        rs[1].time[0] = 234;
    }
    for _ in 0..50 {
        w.arch.wait_for_interrupt(); // 1 ms of fake time each
    }
    let (r, all) = list(&mut w, 0, 1024);
    assert_eq!(r, 0);
    assert_eq!(all.iter().map(|i| i.domain).collect::<Vec<_>>(), [0, 1]);
    let d0 = all[0];
    use super::domctl::dominf;
    assert_eq!(
        d0.flags & 0xffff,
        dominf::RUNNING | dominf::HVM_GUEST | dominf::HAP
    );
    assert_eq!(d0.flags >> 16, 0xffff, "SHUTDOWN_CODE_INVALID, as Xen");
    assert_eq!(d0.nr_online_vcpus, 2);
    assert_eq!(d0.max_vcpu_id, 1);
    assert_eq!(
        d0.cpu_time,
        50_000_000 + 1234,
        "time running so far, the current stretch included (vcpu_runstate_get)"
    );
    assert_eq!(d0.tot_pages, w.world.domains[0].physmap().tot_pages());
    assert_eq!(d0.max_pages, w.world.domains[0].physmap().max_pages());
    assert_eq!(d0.gpaddr_bits, 40);
    assert_eq!(
        d0.shared_info_frame,
        w.world.domains[0].xen.evtchn.shared_info().unwrap().0 >> 12
    );
    let d1 = all[1];
    assert_eq!(
        d1.flags & 0xffff,
        dominf::PAUSED | dominf::HVM_GUEST | dominf::HAP
    );
    assert_eq!(d1.nr_online_vcpus, 0);
    // first_domain / max_domains (xenconsoled: first 1; xl create: first = new).
    let (_, from1) = list(&mut w, 1, 32751);
    assert_eq!(from1.iter().map(|i| i.domain).collect::<Vec<_>>(), [1]);
    let (_, one) = list(&mut w, 0, 1);
    assert_eq!(one.len(), 1);
    let (_, none) = list(&mut w, 2, 1024);
    assert!(none.is_empty());
    // A bad buffer: -EFAULT.
    let l = XenSysctlGetdomaininfolist {
        first_domain: 0,
        max_domains: 4,
        buffer: 0x10_0000_0000,
        num_domains: 0,
    };
    assert_eq!(
        w.sysctl(sysctl_cmd::GETDOMAININFOLIST, &l.to_bytes()).0,
        e(Errno::EFAULT)
    );
    // XEN_DOMCTL_getdomaininfo(dom=0): xen-init-dom0's five calls.
    let (r, back) = w.domctl(domctl_cmd::GETDOMAININFO, 0);
    assert_eq!(r, 0);
    assert_eq!(back.member::<XenDomctlGetdomaininfo>(), d0);
    assert_eq!(w.domctl(domctl_cmd::GETDOMAININFO, 9).0, e(Errno::ESRCH));
    // A domU that shut down (crash): shutdown flag with the code, not dying.
    let i1 = w.idx(1);
    w.world.domains[i1].ending = Some(crate::domain::EndReason::Shutdown(
        crate::xen::ShutdownReason::Crash,
    ));
    let (_, back) = w.domctl(domctl_cmd::GETDOMAININFO, 1);
    let f = back.member::<XenDomctlGetdomaininfo>().flags;
    assert_eq!(f & (dominf::SHUTDOWN | dominf::DYING), dominf::SHUTDOWN);
    assert_eq!((f >> 16) & 0xff, 3, "SHUTDOWN_crash");
    // Unknown domctls: -ENOSYS.
    assert_eq!(w.domctl(77, 0).0, e(Errno::ENOSYS));
    // set_llc_colors (every xl create, 0 colours): -EOPNOTSUPP as Xen
    // without colouring, which libxl accepts; -ESRCH for no domain.
    assert_eq!(
        w.domctl(domctl_cmd::SET_LLC_COLORS, 1).0,
        e(Errno::EOPNOTSUPP)
    );
    assert_eq!(w.domctl(domctl_cmd::SET_LLC_COLORS, 9).0, e(Errno::ESRCH));
    // The interface version is checked first.
    let mut op = XenDomctl::new(domctl_cmd::GETDOMAININFO, 0);
    op.interface_version = XEN_DOMCTL_INTERFACE_VERSION - 1;
    w.put(0, ARG, &op.to_bytes());
    assert_eq!(w.call(0, nr::DOMCTL, [ARG, 0, 0]), e(Errno::EACCES));
}

#[test]
fn readconsole_reads_hvs_log_incrementally_and_clears() {
    let mut w = W::new();
    crate::conring::puts(b"hv: readconsole-test line\n");
    let rc = |clear: u8, incremental: u8, index: u32, count: u32| XenSysctlReadconsole {
        clear,
        incremental,
        index,
        buffer: BUF,
        count,
        ..XenSysctlReadconsole::default()
    };
    // `xl dmesg`: the whole ring (other tests write to it too).
    let (r, back) = w.sysctl(sysctl_cmd::READCONSOLE, &rc(0, 0, 0, 0x3000).to_bytes());
    assert_eq!(r, 0);
    let out: XenSysctlReadconsole = back.member();
    assert!(out.count > 0 && out.count <= 0x3000);
    let text = w.get(0, BUF, out.count as usize);
    assert!(
        text.windows(20).any(|x| x == b"readconsole-test lin") || out.count == 0x3000,
        "hv's line is in the ring"
    );
    // Incremental from the end index: only what was written since.
    crate::conring::puts(b"after\n");
    let (_, back) = w.sysctl(
        sysctl_cmd::READCONSOLE,
        &rc(0, 1, out.index, 0x3000).to_bytes(),
    );
    let next: XenSysctlReadconsole = back.member();
    let tail = w.get(0, BUF, next.count as usize);
    assert!(tail.ends_with(b"after\n") || tail.windows(6).any(|x| x == b"after\n"));
    assert!(next.index.wrapping_sub(out.index) >= 6);
    // count 0: nothing copied, index unchanged semantics (oldest).
    let (r, back) = w.sysctl(sysctl_cmd::READCONSOLE, &rc(0, 0, 0, 0).to_bytes());
    assert_eq!((r, back.member::<XenSysctlReadconsole>().count), (0, 0));
    // A bad buffer: -EFAULT.
    let mut bad = rc(0, 0, 0, 16);
    bad.buffer = 0x10_0000_0000;
    assert_eq!(
        w.sysctl(sysctl_cmd::READCONSOLE, &bad.to_bytes()).0,
        e(Errno::EFAULT)
    );
}

#[test]
fn dom_exc_is_bound_by_dom0_moved_and_raised_when_a_domain_goes() {
    let mut w = W::new();
    // Make dom0's vCPU 0 deliverable: its shared-info slot unmasked.
    assert_eq!(
        w.bind_virq(0, virq::DOM_EXC, 1).0,
        e(Errno::EINVAL),
        "global VIRQ on vCPU 1"
    );
    let (r, port) = w.bind_virq(0, virq::DOM_EXC, 0);
    assert_eq!(r, 0);
    // xenstored: bind_vcpu(port, 0) succeeds on a global VIRQ.
    assert_eq!(w.bind_vcpu(port, 0), 0);
    // Status: VIRQ 3 on vCPU 0.
    let mut st = [0u8; 24];
    st[0..2].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
    st[4..8].copy_from_slice(&port.to_le_bytes());
    let (r, s) = w.evtchn(0, evtchn::op::STATUS, &st);
    assert_eq!(r, 0);
    assert_eq!(
        u32::from_le_bytes(s[8..12].try_into().unwrap()),
        4,
        "EVTCHNSTAT_virq"
    );
    assert_eq!(u32::from_le_bytes(s[16..20].try_into().unwrap()), 3);
    // destroydomain of d1: VIRQ_DOM_EXC pending on dom0, upcall on vCPU 0.
    w.irq.clear();
    assert_eq!(w.domctl(domctl_cmd::DESTROYDOMAIN, 1).0, 0);
    assert!(w.world.domain(1).is_none());
    assert!(w.pending(0, port));
    assert_eq!(w.irq, [(0, 0)]);
    // The handler is the privileged domain; a domain without a bound port gets nothing.
    assert_eq!(super::virq::global_virq_handler(&w.world.domains), Some(0));
    w.irq.clear();
    let before = w.world.domains.len();
    super::virq::dom_exc(&mut w.world.domains, &mut w.world.mem);
    assert_eq!(w.world.domains.len(), before);
}

/// privcmd (Linux drivers/xen/privcmd.c -> arch/arm64/xen/hypercall.S
/// `privcmd_call`): dom0's user space (libxencall) issues hypercalls through
/// the kernel with its buffers at *user* VAs, translated through TTBR0 (ASID
/// in TTBR0[63:48], top-byte-ignore on for user pointers). PSTATE.PAN may be
/// set during the HVC: Xen translates with `AT S1E1R/W`, which PAN does not
/// affect (Armv8.1), so the EL1 permissions count (AP\[2\]), not the EL0
/// ones (AP\[1\]) nor PAN — hv's walk does the same.
#[test]
fn privcmd_buffers_at_user_vas_go_through_ttbr0() {
    let mut w = W::new();
    let (l0, l1, l2, l3) = (B + 0x10_0000, B + 0x10_1000, B + 0x10_2000, B + 0x10_3000);
    let va: u64 = 0x0000_ffff_a000_0000;
    let desc =
        |w: &mut W, table: u64, idx: u64, d: u64| w.put(0, table + idx * 8, &d.to_le_bytes());
    desc(&mut w, l0, (va >> 39) & 511, l1 | 3);
    desc(&mut w, l1, (va >> 30) & 511, l2 | 3);
    desc(&mut w, l2, (va >> 21) & 511, l3 | 3);
    const AF: u64 = 1 << 10;
    const AP_USER_RW: u64 = 1 << 6; // AP[2:1] = 01
    const AP_USER_RO: u64 = 3 << 6; // AP[2:1] = 11
    let i3 = (va >> 12) & 511;
    // Two user RW pages at non-contiguous IPAs, then a user read-only page.
    desc(&mut w, l3, i3, (B + 0x20_0000) | 3 | AF | AP_USER_RW);
    desc(&mut w, l3, i3 + 1, (B + 0x30_0000) | 3 | AF | AP_USER_RW);
    desc(&mut w, l3, i3 + 2, (B + 0x40_0000) | 3 | AF | AP_USER_RO);
    // TCR: T0SZ = T1SZ = 16, TG0 = 4K, TG1 = 4K, TBI0.
    let tcr = 16 | (16 << 16) | (2 << 30) | (1 << 37);
    w.s1 = Stage1 {
        sctlr: 1,
        tcr,
        ttbr0: (0x42 << 48) | l0,
        ttbr1: 0,
    };
    // The struct xen_sysctl straddles the two pages (libxencall's buffers
    // are page-aligned, but a struct inside one need not be).
    let user = va + 0xf80;
    let op = XenSysctl {
        cmd: sysctl_cmd::PHYSINFO,
        interface_version: XEN_SYSCTL_INTERFACE_VERSION,
        ..XenSysctl::default()
    }
    .to_bytes();
    w.put(0, B + 0x20_0f80, &op[..0x80]);
    w.put(0, B + 0x30_0000, &op[0x80..]);
    for ptr in [user, (0x5a << 56) | user] {
        assert_eq!(w.call(0, nr::SYSCTL, [ptr, 0, 0]), 0, "{ptr:#x}");
        let mut back = w.get(0, B + 0x20_0f80, 0x80);
        back.extend(w.get(0, B + 0x30_0000, XenSysctl::SIZE - 0x80));
        let p: XenSysctlPhysinfo =
            XenSysctl::from_bytes(back.as_slice().try_into().unwrap()).member();
        assert_eq!(p.total_pages, w.world.pool.total_frames());
        assert_eq!(p.threads_per_core, 1);
    }
    // Output into the user read-only page: -EFAULT (as AT S1E1W faults).
    let l = XenSysctlGetdomaininfolist {
        first_domain: 0,
        max_domains: 8,
        buffer: va + 0x2000,
        num_domains: 0,
    };
    let mut op = XenSysctl {
        cmd: sysctl_cmd::GETDOMAININFOLIST,
        interface_version: XEN_SYSCTL_INTERFACE_VERSION,
        ..XenSysctl::default()
    };
    op.set_member(&l);
    w.put(0, B + 0x20_0000, &op.to_bytes());
    assert_eq!(w.call(0, nr::SYSCTL, [va, 0, 0]), e(Errno::EFAULT));
    // The same into the second RW page works.
    let mut l2b = l;
    l2b.buffer = va + 0x1000;
    op.set_member(&l2b);
    w.put(0, B + 0x20_0000, &op.to_bytes());
    assert_eq!(w.call(0, nr::SYSCTL, [va, 0, 0]), 0);
    let first = w.get(0, B + 0x30_0000, 120);
    assert_eq!(
        XenDomctlGetdomaininfo::from_bytes(first.as_slice().try_into().unwrap()).domain,
        0
    );
    // An unmapped user VA and a kernel VA with no TTBR1 tables: -EFAULT.
    assert_eq!(w.call(0, nr::SYSCTL, [va + 0x3000, 0, 0]), e(Errno::EFAULT));
    assert_eq!(
        w.call(0, nr::SYSCTL, [0xffff_8000_0000_0000, 0, 0]),
        e(Errno::EFAULT)
    );
    // A non-canonical user VA (bits 55:48 set without TBI meaning): -EFAULT.
    assert_eq!(
        w.call(0, nr::SYSCTL, [0x00ff_0000_0000_0000 | user, 0, 0]),
        e(Errno::EFAULT)
    );
}

/// What Xen 4.20 answered a call in the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Xen {
    /// Success (x0 >= 0).
    Ok,
    /// This errno.
    Err(Errno),
}

/// The replay's record: every call, what Xen answered, what hv answered.
#[derive(Default)]
struct Replay {
    rows: Vec<(String, Xen, i64, Option<&'static str>)>,
}

impl Replay {
    /// Check `got` against Xen's answer; `deviation` names a documented
    /// difference (hv's errno and why), which then must be exactly that.
    fn check(
        &mut self,
        label: &str,
        got: i64,
        xen: Xen,
        deviation: Option<(Errno, &'static str)>,
    ) -> i64 {
        match (deviation, xen) {
            (Some((e, _)), _) => assert_eq!(got, -(e as i64), "{label}: the documented deviation"),
            (None, Xen::Ok) => assert!(got >= 0, "{label}: Xen succeeded, hv answered {got}"),
            (None, Xen::Err(e)) => assert_eq!(got, -(e as i64), "{label}: Xen's errno"),
        }
        self.rows
            .push((String::from(label), xen, got, deviation.map(|d| d.1)));
        got
    }
    /// [`Replay::check`] of a call Xen answers with success, no deviation.
    fn ok(&mut self, label: &str, got: i64) -> i64 {
        self.check(label, got, Xen::Ok, None)
    }
}

fn xatp(w: &mut W, space: u32, idx: u64, gpfn: u64) -> i64 {
    let mut s = [0u8; 24];
    s[0..2].copy_from_slice(&evtchn::DOMID_SELF.to_le_bytes());
    s[4..8].copy_from_slice(&space.to_le_bytes());
    s[8..16].copy_from_slice(&idx.to_le_bytes());
    s[16..24].copy_from_slice(&gpfn.to_le_bytes());
    w.put(0, ARG, &s);
    w.call(0, nr::MEMORY_OP, [7, ARG, 0])
}

fn gnttab(w: &mut W, cmd: u32, s: &[u8]) -> i64 {
    w.put(0, ARG, s);
    w.call(0, nr::GRANT_TABLE_OP, [u64::from(cmd), ARG, 1])
}

fn settime(w: &mut W) -> i64 {
    let mut op = [0u8; 136];
    op[0..4].copy_from_slice(&62u32.to_le_bytes());
    op[4..8].copy_from_slice(&0x0300_0001u32.to_le_bytes());
    op[8..16].copy_from_slice(&1_764_900_000u64.to_le_bytes());
    op[16..20].copy_from_slice(&5u32.to_le_bytes());
    op[24..32].copy_from_slice(&2_000_000_000u64.to_le_bytes());
    w.put(0, ARG, &op);
    w.call(0, nr::PLATFORM_OP, [ARG, 0, 0])
}

fn xenver_varbuf(w: &mut W, cmd: u64) -> i64 {
    // libxencall's varbuf_op: length first (NULL), then the buffer.
    let n = w.call(0, nr::XEN_VERSION, [cmd, 0, 0]);
    if n < 0 {
        return n;
    }
    w.put(0, BUF, &(n as u32).to_le_bytes());
    w.call(0, nr::XEN_VERSION, [cmd, BUF, 0])
}

fn sysctl_ret(w: &mut W, cmd: u32, m: &[u8]) -> i64 {
    w.sysctl(cmd, m).0
}

/// `XEN_SYSCTL_getdomaininfolist` of at most `max` domains from `first`,
/// into [`BUF`]: (ret, the sysctl written back).
fn domaininfolist(w: &mut W, first: u16, max: u32) -> (i64, XenSysctl) {
    let l = XenSysctlGetdomaininfolist {
        first_domain: first,
        max_domains: max,
        buffer: BUF,
        num_domains: 0,
    };
    w.sysctl(sysctl_cmd::GETDOMAININFOLIST, &l.to_bytes())
}

fn one_memop_multicall(w: &mut W, cmd: u64) -> (i64, i64) {
    let mut e = [0u8; 64];
    e[0..8].copy_from_slice(&nr::MEMORY_OP.to_le_bytes());
    e[16..24].copy_from_slice(&cmd.to_le_bytes());
    e[24..32].copy_from_slice(&0u64.to_le_bytes());
    w.put(0, ARG, &e);
    let r = w.call(0, nr::MULTICALL, [ARG, 1, 0]);
    let res = i64::from_le_bytes(w.get(0, ARG + 8, 8).try_into().unwrap());
    (r, res)
}

/// Issue 11 item 5, test 7: the hypercalls Debian's dom0 kernel and Xen's
/// daemons made on Xen 4.20 at start-up (the trace's §2.1, dom0 boot, and
/// §3, toolstack start, with their counts; console_io and PSCI are other
/// helpers'), replayed against hv with the arguments the trace shows. Every
/// call Xen answered with success must succeed on hv, every error must be
/// Xen's errno, except the documented deviations listed at the end.
#[test]
fn dom0_start_up_sequence_of_the_xen_trace() {
    use crate::xen::domu::{hvm_param, vcpuop, vmasst};
    let mut w = W::new();
    let mut r = Replay::default();
    let self_ = evtchn::DOMID_SELF.to_le_bytes();

    // --- §2.1 dom0 kernel boot ---
    w.put(0, ARG, &[0; 8]);
    let got = w.call(0, nr::XEN_VERSION, [6, ARG, 0]);
    r.ok("XENVER_get_features", got);
    let si_gfn = (B + 0x60_0000) >> 12;
    r.ok(
        "XENMEM_add_to_physmap shared_info",
        xatp(&mut w, 0, 0, si_gfn),
    );
    let mut q = [0u8; 16];
    q[0..2].copy_from_slice(&self_);
    let got = gnttab(&mut w, 6, &q);
    r.ok("GNTTABOP_query_size", got);
    let got = gnttab(&mut w, 8, &1u32.to_le_bytes());
    r.ok("GNTTABOP_set_version 1", got);
    for _ in 0..3 {
        let got = gnttab(&mut w, 6, &q);
        r.ok("GNTTABOP_query_size", got);
    }
    // The grant frame goes at a gfn outside dom0's RAM, in the DT
    // hypervisor node's first range (Xen: 0x40200 with dom0 at 0x60000000;
    // here dom0's RAM is at 0x40000000, so a gfn past it).
    let gnt_gfn = 0x9_0200;
    r.ok(
        "XENMEM_add_to_physmap grant_table",
        xatp(&mut w, 1, 0, gnt_gfn),
    );
    for vcpu in 0..2u32 {
        let mut ic = [0u8; 16];
        ic[0..8].copy_from_slice(&((B + 0x70_0000 + u64::from(vcpu) * 0x1000) >> 12).to_le_bytes());
        ic[12..16].copy_from_slice(&vcpu.to_le_bytes());
        w.put(0, ARG, &ic);
        let got = w.call(0, nr::EVENT_CHANNEL_OP, [11, ARG, 0]);
        r.ok("EVTCHNOP_init_control", got);
        if vcpu == 0 {
            // Linux's first bind (evtchn_fifo_setup) gives the first array page.
            w.put(0, ARG, &((B + 0x72_0000) >> 12).to_le_bytes());
            let got = w.call(0, nr::EVENT_CHANNEL_OP, [12, ARG, 0]);
            r.ok("EVTCHNOP_expand_array", got);
            r.ok("XENPF_settime64", settime(&mut w));
        }
        let mut vi = [0u8; 16];
        vi[0..8].copy_from_slice(&((B + 0x50_0000 + u64::from(vcpu) * 0x1000) >> 12).to_le_bytes());
        vi[8..12].copy_from_slice(&1792u32.to_le_bytes());
        w.put(0, ARG, &vi);
        let got = w
            .raw(
                0,
                vcpu,
                nr::VCPU_OP,
                [
                    u64::from(vcpuop::REGISTER_VCPU_INFO),
                    u64::from(vcpu),
                    ARG,
                    0,
                    0,
                ],
            )
            .ret as i64;
        r.ok("VCPUOP_register_vcpu_info", got);
    }
    let mut hp = [0u8; 16];
    hp[0..2].copy_from_slice(&self_);
    hp[4..8].copy_from_slice(&hvm_param::STORE_EVTCHN.to_le_bytes());
    w.put(0, ARG, &hp);
    let got = w.call(0, nr::HVM_OP, [1, ARG, 0]);
    r.ok("HVMOP_get_param STORE_EVTCHN", got);
    assert_eq!(
        w.get(0, ARG + 8, 8),
        [0; 8],
        "dom0 has no store channel yet (xenbus allocates one)"
    );
    let mut au = [0u8; 8];
    au[0..2].copy_from_slice(&self_);
    au[2..4].copy_from_slice(&self_);
    let (got, out) = w.evtchn(0, evtchn::op::ALLOC_UNBOUND, &au);
    r.ok("EVTCHNOP_alloc_unbound self/self", got);
    let store_port = u32::from_le_bytes(out[4..8].try_into().unwrap());
    let got = w.bind_vcpu(store_port, 1);
    r.ok("EVTCHNOP_bind_vcpu store->1", got);
    // Linux's probe (arch/arm/xen/mm.c xen_mm_init): one zeroed struct.
    let got = gnttab(&mut w, 12, &[0u8; 24]);
    r.ok("GNTTABOP_cache_flush (probe)", got);
    w.put(0, ARG, &self_);
    let got = w.call(0, nr::MEMORY_OP, [3, ARG, 0]);
    r.ok("XENMEM_current_reservation", got);
    assert_eq!(got as u64, w.world.domains[0].physmap().tot_pages());
    r.ok("XENPF_settime64", settime(&mut w));
    for (label, cmd) in [
        ("PHYSDEVOP_pci_device_add", 25u64),
        ("PHYSDEVOP_manage_pci_add", 15),
        ("PHYSDEVOP_manage_pci_add", 15),
    ] {
        let got = w.call(0, nr::PHYSDEV_OP, [cmd, ARG, 0]);
        r.check(label, got, Xen::Err(Errno::ENOSYS), None);
    }
    let (got, con_port) = w.bind_virq(0, virq::CONSOLE, 0);
    r.ok("EVTCHNOP_bind_virq VIRQ_CONSOLE", got);
    r.ok("XENPF_settime64", settime(&mut w));
    let got = w.call(
        0,
        nr::VM_ASSIST,
        [
            u64::from(vmasst::CMD_ENABLE),
            u64::from(vmasst::TYPE_RUNSTATE_UPDATE_FLAG),
            0,
        ],
    );
    r.ok("VMASST runstate_update_flag", got);
    for vcpu in 0..2u64 {
        w.put(
            0,
            ARG,
            &(0xffff_0000_1000_0000u64 + vcpu * 0x100).to_le_bytes(),
        );
        let got = w.call(
            0,
            nr::VCPU_OP,
            [u64::from(vcpuop::REGISTER_RUNSTATE_MEMORY_AREA), vcpu, ARG],
        );
        r.ok("VCPUOP_register_runstate_memory_area", got);
    }
    let got = w.bind_vcpu(con_port, 0);
    r.ok("EVTCHNOP_bind_vcpu console->0", got);

    // --- §3 toolstack start ---
    // xenstored: dom0's store port, VIRQ_DOM_EXC, notifications.
    let mut bi = [0u8; 12];
    bi[0..2].copy_from_slice(&0u16.to_le_bytes());
    bi[4..8].copy_from_slice(&store_port.to_le_bytes());
    let (got, out) = w.evtchn(0, evtchn::op::BIND_INTERDOMAIN, &bi);
    r.ok("EVTCHNOP_bind_interdomain remote 0", got);
    let xs_port = u32::from_le_bytes(out[8..12].try_into().unwrap());
    let (got, exc_port) = w.bind_virq(0, virq::DOM_EXC, 0);
    r.ok("EVTCHNOP_bind_virq VIRQ_DOM_EXC", got);
    for (port, vcpu) in [(xs_port, 1u32), (exc_port, 0)] {
        let got = w.bind_vcpu(port, vcpu);
        r.ok("EVTCHNOP_bind_vcpu (xenstored)", got);
    }
    for _ in 0..97 {
        let got = w.evtchn(0, evtchn::op::SEND, &xs_port.to_le_bytes()).0;
        r.ok("EVTCHNOP_send (xenstored)", got);
    }
    for _ in 0..2 {
        let got = w.evtchn(0, evtchn::op::UNMASK, &exc_port.to_le_bytes()).0;
        r.ok("EVTCHNOP_unmask", got);
    }
    // xen-init-dom0.
    for _ in 0..5 {
        let got = w.domctl(domctl_cmd::GETDOMAININFO, 0).0;
        r.ok("XEN_DOMCTL_getdomaininfo dom0", got);
    }
    r.ok(
        "XEN_SYSCTL_physinfo",
        sysctl_ret(&mut w, sysctl_cmd::PHYSINFO, &[]),
    );
    for (pool, xen) in [(0u32, Xen::Ok), (1, Xen::Err(Errno::ENOENT))] {
        let p = XenSysctlCpupoolOp {
            op: cpupool_op::INFO,
            cpupool_id: pool,
            cpumap: crate::xen::abi::XenctlBitmap {
                bitmap: BUF,
                nr_bits: 8,
            },
            ..XenSysctlCpupoolOp::default()
        };
        let got = sysctl_ret(&mut w, sysctl_cmd::CPUPOOL_OP, &p.to_bytes());
        r.check("XEN_SYSCTL_cpupool_op INFO", got, xen, None);
    }
    for _ in 0..4 {
        let got = w.call(0, nr::XSM_OP, [ARG, 0, 0]);
        r.check(
            "xsm_op FLASK_SID_TO_CONTEXT",
            got,
            Xen::Err(Errno::ENOSYS),
            None,
        );
    }
    // xenconsoled.
    for _ in 0..3 {
        let got = domaininfolist(&mut w, 1, 32751).0;
        r.ok("XEN_SYSCTL_getdomaininfolist first 1", got);
    }
    // xenperf.
    let got = sysctl_ret(&mut w, sysctl_cmd::PERFC_OP, &[]);
    r.check("XEN_SYSCTL_perfc_op", got, Xen::Err(Errno::ENOSYS), None);
    // xl list / xl info: the 14 xen_version calls, physinfo, the sharing
    // multicalls, sched_id, FREEINFO, getdomaininfolist.
    let no_build_id = Some((
        Errno::ENODATA,
        "hv has no build id (Xen without one answers the same; xl prints no build_id)",
    ));
    for _ in 0..2 {
        r.ok("XENVER_version", w.call(0, nr::XEN_VERSION, [0, 0, 0]));
        r.ok("XENVER_extraversion2", xenver_varbuf(&mut w, 11));
        w.put(0, BUF, &[0u8; 144]);
        r.ok(
            "XENVER_compile_info",
            w.call(0, nr::XEN_VERSION, [2, BUF, 0]),
        );
        r.ok("XENVER_capabilities2", xenver_varbuf(&mut w, 12));
        r.ok("XENVER_changeset2", xenver_varbuf(&mut w, 13));
        r.ok(
            "XENVER_platform_parameters",
            w.call(0, nr::XEN_VERSION, [5, BUF, 0]),
        );
        r.ok("XENVER_pagesize", w.call(0, nr::XEN_VERSION, [7, 0, 0]));
        r.ok("XENVER_commandline2", xenver_varbuf(&mut w, 14));
        // build_id: Xen answers the length (0x14), then the 20 bytes.
        let got = w.call(0, nr::XEN_VERSION, [10, 0, 0]);
        r.check("XENVER_build_id (length)", got, Xen::Ok, no_build_id);
        r.ok(
            "XEN_SYSCTL_physinfo (xl)",
            sysctl_ret(&mut w, sysctl_cmd::PHYSINFO, &[]),
        );
        for cmd in [18u64, 19] {
            let (got, res) = one_memop_multicall(&mut w, cmd);
            r.ok("multicall [XENMEM_get_sharing_*]", got);
            assert_eq!(res, 0, "Arm: memsharing not working yet, 0");
        }
    }
    r.ok(
        "XEN_SYSCTL_sched_id",
        sysctl_ret(&mut w, sysctl_cmd::SCHED_ID, &[]),
    );
    let f = XenSysctlCpupoolOp {
        op: cpupool_op::FREEINFO,
        cpumap: crate::xen::abi::XenctlBitmap {
            bitmap: BUF,
            nr_bits: 8,
        },
        ..XenSysctlCpupoolOp::default()
    };
    let got = sysctl_ret(&mut w, sysctl_cmd::CPUPOOL_OP, &f.to_bytes());
    r.ok("XEN_SYSCTL_cpupool_op FREEINFO", got);
    for first in [0u16, 1] {
        let (got, back) = domaininfolist(&mut w, first, 1024);
        r.ok("XEN_SYSCTL_getdomaininfolist (xl list)", got);
        if first == 0 {
            let n = back.member::<XenSysctlGetdomaininfolist>().num_domains;
            assert_eq!(n, 2, "Domain-0 and d1");
            let d0 = XenDomctlGetdomaininfo::from_bytes(
                w.get(0, BUF, 120).as_slice().try_into().unwrap(),
            );
            assert_eq!(d0.domain, 0);
        }
    }

    // The report, and the deviations: exactly these.
    let deviations: alloc::collections::BTreeSet<&str> = r
        .rows
        .iter()
        .filter_map(|x| x.3.map(|_| x.0.as_str()))
        .collect();
    for (label, xen, got, why) in &r.rows {
        std::println!(
            "{label:45} Xen {xen:?}  hv {got}{}",
            why.map_or(String::new(), |w| std::format!("  ({w})"))
        );
    }
    assert_eq!(
        deviations.into_iter().collect::<Vec<_>>(),
        ["XENVER_build_id (length)"]
    );
    assert_eq!(r.rows.len(), 176, "calls replayed");
}

/// hv's console input raises `VIRQ_CONSOLE` on dom0 (helper "console"):
/// [`super::virq::raise_global`] finds the port dom0's hvc0 bound, sets it
/// pending and injects the upcall; without a bound port nothing happens.
#[test]
fn virq_console_is_raised_on_dom0s_port() {
    let mut w = W::new();
    assert_eq!(
        super::virq::raise_global(&mut w.world.domains, &mut w.world.mem, virq::CONSOLE),
        None,
        "not bound yet"
    );
    let (r, port) = w.bind_virq(0, virq::CONSOLE, 0);
    assert_eq!(r, 0);
    assert_eq!(
        super::virq::raise_global(&mut w.world.domains, &mut w.world.mem, virq::CONSOLE),
        Some(port)
    );
    assert!(w.pending(0, port));
    // A domU binding VIRQ_CONSOLE is not the handler: dom0 still is.
    let (r, _) = w.bind_virq(1, virq::CONSOLE, 0);
    assert_eq!(r, 0);
    assert_eq!(super::virq::global_virq_handler(&w.world.domains), Some(0));
}

mod xl_create;

/// `SCHEDOP_remote_shutdown` (`xl shutdown -F`, `xl reboot -F`), as Xen's
/// `do_sched_op`: -EFAULT, -ESRCH, -EPERM (XSM dummy: control domain only),
/// then the target is shut down with the reason (getdomaininfo `shutdown`,
/// code in bits 31:16) and xenstored's `VIRQ_DOM_EXC` raised for a domain
/// with no vCPU to stop; the caller itself shuts down at once.
#[test]
fn remote_shutdown_as_xen() {
    use super::domctl::dominf;
    use crate::xen::abi::schedop;
    let mut w = W::new();
    let (_, port) = w.bind_virq(0, virq::DOM_EXC, 0);
    let rs = |w: &mut W, caller: u16, dom: u16, reason: u32| {
        let at = if caller == 0 { ARG } else { B + 0x1000 };
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&dom.to_le_bytes());
        b[4..8].copy_from_slice(&reason.to_le_bytes());
        w.put(caller, at, &b);
        w.raw(
            caller,
            0,
            nr::SCHED_OP,
            [u64::from(schedop::REMOTE_SHUTDOWN), at, 0, 0, 0],
        )
    };
    let ret = |r: Reply| r.ret as i64;
    let bad = w.raw(
        0,
        0,
        nr::SCHED_OP,
        [u64::from(schedop::REMOTE_SHUTDOWN), 0x10, 0, 0, 0],
    );
    assert_eq!(ret(bad), e(Errno::EFAULT));
    assert_eq!(ret(rs(&mut w, 0, 9, 0)), e(Errno::ESRCH));
    assert_eq!(ret(rs(&mut w, 1, 0, 0)), e(Errno::EPERM), "a domU may not");
    assert_eq!(ret(rs(&mut w, 1, 1, 0)), e(Errno::EPERM), "not even itself");
    assert_eq!(
        ret(rs(&mut w, 0, 1, 99)),
        e(Errno::EINVAL),
        "unknown reason"
    );
    let flags = |w: &mut W| {
        let now = 0;
        super::domctl::domain::domaininfo(&w.world.domains[w.idx(1)], now).flags
    };
    assert_eq!(flags(&mut w) & dominf::SHUTDOWN, 0);
    w.irq.clear();
    let r = rs(&mut w, 0, 1, 1); // SHUTDOWN_reboot
    assert_eq!((ret(r), r.action), (0, Action::Continue));
    let f = flags(&mut w);
    assert_ne!(f & dominf::SHUTDOWN, 0);
    assert_eq!(f >> dominf::SHUTDOWNSHIFT, 1, "SHUTDOWN_reboot");
    assert!(w.pending(0, port), "VIRQ_DOM_EXC for xenstored");
    assert_eq!(w.irq, [(0, 0)]);
    assert_eq!(ret(rs(&mut w, 0, 1, 0)), 0, "already shut down: 0");
    assert_eq!(flags(&mut w) >> dominf::SHUTDOWNSHIFT, 1, "code kept");
    let me = rs(&mut w, 0, 0, 0);
    assert_eq!(
        me.action,
        Action::Shutdown(crate::xen::ShutdownReason::Poweroff),
        "the caller itself"
    );
}

/// `EVTCHNOP_init_control` / `expand_array` / `set_priority` through the
/// hypercall path (Xen 4.20's errnos and order), a 2-level port carried
/// over, and the pages pinned.
#[test]
fn fifo_event_channels_through_the_hypercall() {
    use crate::xen::evtchn_fifo as fifo;
    let mut w = W::new();
    let init = |gfn: u64, off: u32, vcpu: u32| {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&gfn.to_le_bytes());
        b[8..12].copy_from_slice(&off.to_le_bytes());
        b[12..16].copy_from_slice(&vcpu.to_le_bytes());
        b
    };
    let cb_gfn = (B + 0x10_000) >> 12;
    let arr_gfn = (B + 0x11_000) >> 12;
    // A 2-level port with an event pending before the switch.
    let (r, exc) = w.bind_virq(0, virq::DOM_EXC, 0);
    assert_eq!(r, 0);
    let mut ectx_irq = crate::xen::evtchn::RecordingIrqSink::default();
    let i0 = w.idx(0);
    w.world.domains[i0]
        .xen
        .evtchn
        .set_pending(0, exc, &mut w.world.mem, &mut ectx_irq);
    assert!(w.pending(0, exc));
    // expand_array and set_priority before the switch.
    let (r, _) = w.evtchn(0, evtchn::op::EXPAND_ARRAY, &arr_gfn.to_le_bytes());
    assert_eq!(r, e(Errno::EOPNOTSUPP));
    let mut sp = [0u8; 8];
    sp[0..4].copy_from_slice(&exc.to_le_bytes());
    sp[4..8].copy_from_slice(&3u32.to_le_bytes());
    assert_eq!(
        w.evtchn(0, evtchn::op::SET_PRIORITY, &sp).0,
        e(Errno::ENOSYS)
    );
    // Hostile init_control arguments.
    for (args, want) in [
        (init(cb_gfn, 0, 2), Errno::ENOENT),
        (init(cb_gfn, 0, u32::MAX), Errno::ENOENT),
        (init(cb_gfn, 4096 - 64, 0), Errno::EINVAL),
        (init(cb_gfn, u32::MAX, 0), Errno::EINVAL),
        (init(cb_gfn, 4, 0), Errno::EINVAL),
        (init(u64::MAX, 0, 0), Errno::EINVAL),
        (init(0, 0, 0), Errno::EINVAL),
        (init(1 << 40, 0, 0), Errno::EINVAL),
    ] {
        let (r, out) = w.evtchn(0, evtchn::op::INIT_CONTROL, &args);
        assert_eq!(r, e(want), "{args:?}");
        assert_eq!(out[16], 0, "link_bits only on success");
    }
    assert!(w.world.domains[i0].xen.evtchn.fifo().is_none());
    assert!(w.world.domains[i0].xen.pinned().is_empty());
    // A bad struct address.
    assert_eq!(
        w.call(0, nr::EVENT_CHANNEL_OP, [11, 0xdead_0000_0000, 0]),
        e(Errno::EFAULT)
    );
    // The switch.
    let (r, out) = w.evtchn(0, evtchn::op::INIT_CONTROL, &init(cb_gfn, 0x100, 0));
    assert_eq!(r, 0);
    assert_eq!(out[16], fifo::LINK_BITS);
    assert_eq!(
        &out[..16],
        &init(cb_gfn, 0x100, 0)[..16],
        "inputs unchanged"
    );
    let (r, _) = w.evtchn(0, evtchn::op::INIT_CONTROL, &init(cb_gfn, 0, 0));
    assert_eq!(r, e(Errno::EINVAL), "vCPU 0 has one");
    let (r, _) = w.evtchn(0, evtchn::op::INIT_CONTROL, &init(cb_gfn, 0x200, 1));
    assert_eq!(r, 0, "vCPU 1 (same page, another offset)");
    assert_eq!(w.world.domains[i0].xen.pinned().len(), 2);
    assert_eq!(w.evtchn(0, evtchn::op::SET_PRIORITY, &sp).0, 0);
    sp[4..8].copy_from_slice(&16u32.to_le_bytes());
    assert_eq!(
        w.evtchn(0, evtchn::op::SET_PRIORITY, &sp).0,
        e(Errno::EINVAL)
    );
    sp[0..4].copy_from_slice(&5000u32.to_le_bytes());
    assert_eq!(
        w.evtchn(0, evtchn::op::SET_PRIORITY, &sp).0,
        e(Errno::EINVAL)
    );
    // The array page: the carried-over event is linked on queue 3 of vCPU 0.
    assert_eq!(
        w.evtchn(0, evtchn::op::EXPAND_ARRAY, &0u64.to_le_bytes()).0,
        e(Errno::EINVAL),
        "not RAM"
    );
    w.put(0, arr_gfn << 12, &[0u8; 4096]);
    w.put(0, cb_gfn << 12, &[0u8; 4096]);
    // The guest handled the 2-level upcall (evtchn_upcall_pending cleared).
    let si = w.world.domains[i0].xen.evtchn.shared_info().unwrap();
    w.world.mem.write(si, &[0u8]);
    w.irq.clear();
    assert_eq!(
        w.evtchn(0, evtchn::op::EXPAND_ARRAY, &arr_gfn.to_le_bytes())
            .0,
        0
    );
    let word = w.get(0, (arr_gfn << 12) + 4 * u64::from(exc), 4);
    let word = u32::from_le_bytes(word.try_into().unwrap());
    assert_eq!(word, (1 << fifo::PENDING) | (1 << fifo::LINKED));
    let cb = w.get(0, (cb_gfn << 12) + 0x100, fifo::CONTROL_BLOCK_SIZE as usize);
    assert_eq!(cb[0], 1 << 3, "READY of queue 3");
    assert_eq!(
        u32::from_le_bytes(cb[8 + 12..8 + 16].try_into().unwrap()),
        exc
    );
    assert_eq!(w.irq, [(0, 0)]);
    // A guest on FIFO unmasks through the hypercall: nothing new (linked).
    assert_eq!(w.evtchn(0, evtchn::op::UNMASK, &exc.to_le_bytes()).0, 0);
    assert_eq!(w.irq.len(), 1);
    // d1 stays on 2-level.
    assert!(w.world.domains[w.idx(1)].xen.evtchn.fifo().is_none());
}
