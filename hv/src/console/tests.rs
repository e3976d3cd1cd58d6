//! Console input: the switch, dom0's ring and `CONSOLEIO_read`, domU rings,
//! debug keys.

use super::*;
use crate::arch::fake::FakeMem;
use crate::domain::{Domain, VmidAllocator, GUEST_RAM0_BASE};
use crate::xen::console_ring as ring;
use crate::xen::domu::DomainXen;
use alloc::string::String;
use alloc::vec;
use memops::FrameTable;
use pv_tlb::PhysAddr;

const B: u64 = GUEST_RAM0_BASE;

/// Assert that the console output `o` contains each of `parts`.
#[track_caller]
fn assert_has(o: &str, parts: &[&str]) {
    for p in parts {
        assert!(o.contains(p), "{p:?} missing from: {o}");
    }
}

fn events(bytes: &[u8]) -> Vec<Rx> {
    let mut s = Switch::default();
    let mut out = Vec::new();
    for &c in bytes {
        s.rx(c, &mut |e| out.push(e));
    }
    out
}

#[test]
fn three_ctrl_a_switch_fewer_are_handed_on() {
    use Rx::{Byte, Switch as Sw};
    assert_eq!(events(b"ls"), [Byte(b'l'), Byte(b's')]);
    assert_eq!(events(b"\x01\x01\x01"), [Sw]);
    // One or two CTRL-a then another byte: the CTRL-a's go first (Xen's serial_rx).
    assert_eq!(events(b"\x01x"), [Byte(1), Byte(b'x')]);
    assert_eq!(events(b"\x01\x01x"), [Byte(1), Byte(1), Byte(b'x')]);
    // Four: a switch, then one pending, given on with the next byte.
    assert_eq!(events(b"\x01\x01\x01\x01q"), [Sw, Byte(1), Byte(b'q')]);
    // Six: two switches.
    assert_eq!(events(&[1; 6]), [Sw, Sw]);
    // Two, then nothing: still pending (nothing emitted).
    assert_eq!(events(b"a\x01\x01"), [Byte(b'a')]);
}

#[test]
fn focus_rotates_dom0_domus_hv() {
    let c = [0, 1, 3];
    let mut f = Focus::Dom(0);
    let mut seen = vec![f];
    for _ in 0..4 {
        f = next_focus(f, &c);
        seen.push(f);
    }
    assert_eq!(
        seen,
        [
            Focus::Dom(0),
            Focus::Dom(1),
            Focus::Dom(3),
            Focus::Hv,
            Focus::Dom(0)
        ]
    );
    // No dom0: hv -> the first domU.
    assert_eq!(next_focus(Focus::Hv, &[2, 5]), Focus::Dom(2));
    // A focus domain that went away: the next one after its id.
    assert_eq!(next_focus(Focus::Dom(3), &[2, 5]), Focus::Dom(5));
    // No candidates at all: hv keeps it.
    assert_eq!(next_focus(Focus::Hv, &[]), Focus::Hv);
    assert_eq!(next_focus(Focus::Dom(4), &[]), Focus::Hv);
    assert_eq!(std::format!("{}", Focus::Dom(0)), "DOM0");
    assert_eq!(std::format!("{}", Focus::Hv), "hv");
}

/// A small machine: d0 (privileged, VIRQ_CONSOLE bound on vCPU 0), d1 and d2
/// with console rings; `ring0` says whether d0 gets hv's Xen state.
struct Machine {
    mem: FakeMem,
    pool: FrameTable,
    domains: Vec<Domain>,
    out: String,
    up: RecordingIrqSink,
}

impl Machine {
    fn new(ids: &[u16]) -> Self {
        let mut mem = FakeMem::new(0x8000_0000, 0x400_0000);
        let mut pool = FrameTable::new(PhysAddr(0x8000_0000), 0x3000);
        let mut vmids = VmidAllocator::new(4);
        let mut domains = Vec::new();
        for &id in ids {
            let mut d = Domain::create(id, 4 << 20, 40, &mut vmids, &mut mem, &mut pool).unwrap();
            d.xen = DomainXen::setup(id, 2, d.physmap_mut(), &mut mem, &mut pool).unwrap();
            if id == 0 {
                d.privileged = true;
                d.xen.evtchn.bind_virq(VIRQ_CONSOLE, 0).unwrap();
            }
            domains.push(d);
        }
        Self {
            mem,
            pool,
            domains,
            out: String::new(),
            up: RecordingIrqSink::default(),
        }
    }

    fn input(&mut self, con: &mut Console, bytes: &[u8]) {
        let info = keys::WorldInfo {
            pool: &self.pool,
            policy: pv_tlb::Policy::XenCompat,
            vmids_in_use: self.domains.len(),
            heap_free: 1 << 20,
            deferred: pv_tlb::DeferredStats::default(),
        };
        let mut w = Input {
            mem: &mut self.mem,
            domains: &mut self.domains,
            info,
            runq: None,
            out: &mut self.out,
        };
        con.input(bytes, &mut w, &mut self.up);
    }

    fn ring_in(&self, d: usize) -> (u32, u32, Vec<u8>) {
        let r = self.domains[d].xen.console_ring.unwrap();
        let rd = |off: u64| {
            let mut b = [0u8; 4];
            self.mem.read(PhysAddr(r.0 + off), &mut b);
            u32::from_le_bytes(b)
        };
        let (cons, prod) = (rd(ring::IN_CONS), rd(ring::IN_PROD));
        let mut data = vec![0u8; prod.wrapping_sub(cons) as usize];
        for (i, b) in data.iter_mut().enumerate() {
            let at = cons.wrapping_add(i as u32) & (ring::IN_SIZE - 1);
            let mut x = [0u8; 1];
            self.mem
                .read(PhysAddr(r.0 + ring::IN + u64::from(at)), &mut x);
            *b = x[0];
        }
        (cons, prod, data)
    }

    fn take_out(&mut self) -> String {
        core::mem::take(&mut self.out)
    }

    /// `port` of domain index `d` is pending in its shared info.
    fn pending(&self, d: usize, port: u32) -> bool {
        let si = self.domains[d].xen.shared_info().unwrap();
        let mut b = [0u8; 8];
        self.mem
            .read(PhysAddr(si.0 + 48 + u64::from(port / 64) * 8), &mut b);
        u64::from_le_bytes(b) & (1 << (port % 64)) != 0
    }
}

const SWITCH_LINE: &str = "(type 'CTRL-a' three times to switch input)";

#[test]
fn input_goes_to_dom0_then_each_domu_then_hv() {
    let mut m = Machine::new(&[0, 1, 2]);
    let mut con = Console::default();
    let mut out = String::new();
    con.endboot(&m.domains, &mut out);
    assert_eq!(
        out,
        std::format!("hv: *** Serial input to DOM0 {SWITCH_LINE}\n")
    );
    // dom0: the serial ring, VIRQ_CONSOLE raised on vCPU 0.
    m.input(&mut con, b"ls\r");
    assert_eq!(con.rx.len(), 3);
    assert_eq!(m.up.upcalls, [(0, 0)]);
    let virq = virq_console_port(&m.domains[0]).unwrap();
    assert!(m.pending(0, virq));
    assert_eq!(m.ring_in(0).1, 0, "dom0's own ring is not used");
    // Switch to d1; bytes go into its ring's in[] and its console port is notified.
    m.up.upcalls.clear();
    m.input(&mut con, b"\x01\x01\x01echo hi\r");
    assert_eq!(
        m.take_out(),
        std::format!("hv: *** Serial input to DOM1 {SWITCH_LINE}\n")
    );
    assert_eq!(m.ring_in(1), (0, 8, b"echo hi\r".to_vec()));
    assert_eq!(m.up.upcalls, [(1, 0)]);
    let p1 = m.domains[1].xen.evtchn.hv_port(HvPort::Console).unwrap();
    assert!(m.pending(1, p1));
    assert_eq!(con.rx.len(), 3, "dom0's ring unchanged");
    // d2, then hv: debug keys.
    m.input(&mut con, b"\x01\x01\x01x\x01\x01\x01");
    assert_eq!(m.ring_in(2).2, b"x");
    let o = m.take_out();
    assert_has(&o, &["Serial input to DOM2"]);
    assert!(
        o.ends_with(&std::format!("hv: *** Serial input to hv {SWITCH_LINE}\n")),
        "{o}"
    );
    m.input(&mut con, b"h");
    let o = m.take_out();
    assert!(
        o.starts_with("hv: 'h' pressed -> showing installed handlers\n"),
        "{o}"
    );
    for k in keys::KEYS {
        assert!(
            o.contains(&std::format!("key '{}'", char::from(k.key))),
            "{o}"
        );
    }
    m.input(&mut con, b"q");
    let o = m.take_out();
    assert_has(
        &o,
        &[
            "hv:  d0: privileged, RAM 4 MiB (1024 pages), vCPUs",
            "hv:  d2: RAM 4 MiB",
        ],
    );
    assert_eq!(m.ring_in(2).2, b"x", "keys go to hv, not a domain");
    // And round to dom0 again.
    m.input(&mut con, b"\x01\x01\x01y");
    assert!(m.take_out().contains("Serial input to DOM0"));
    assert_eq!(con.rx.len(), 4);
    assert_eq!(con.stats.switches, 4);
    assert_eq!(con.stats.keys, 2);
    assert_eq!(con.stats.to_dom0, 4);
    assert_eq!(con.stats.to_rings, 9);
}

#[test]
fn the_console_reader_is_a_privileged_domain_bound_to_virq_console() {
    let mut m = Machine::new(&[0, 1]);
    assert!(is_console_reader(&m.domains[0]));
    assert!(!is_console_reader(&m.domains[1]));
    // Bound but unprivileged, or privileged without the VIRQ: no.
    m.domains[1].xen.evtchn.bind_virq(VIRQ_CONSOLE, 0).unwrap();
    assert!(!is_console_reader(&m.domains[1]));
    let mut m = Machine::new(&[0]);
    let p = virq_console_port(&m.domains[0]).unwrap();
    m.domains[0].xen.evtchn.free(p).unwrap();
    assert!(!is_console_reader(&m.domains[0]));
}

#[test]
fn first_focus_without_dom0_is_the_first_domu_and_hv_without_domains() {
    let m = Machine::new(&[3, 1]);
    let mut con = Console::default();
    let mut out = String::new();
    con.endboot(&m.domains, &mut out);
    assert_eq!(con.focus, Some(Focus::Dom(1)));
    let mut con = Console::default();
    con.endboot(&[], &mut out);
    assert_eq!(con.focus, Some(Focus::Hv));
    assert!(out.ends_with(&std::format!("Serial input to hv {SWITCH_LINE}\n")));
}

#[test]
fn focus_set_lazily_when_endboot_was_not_called() {
    let mut m = Machine::new(&[1]);
    let mut con = Console::default();
    m.input(&mut con, b"a");
    assert!(m.take_out().contains("Serial input to DOM1"));
    assert_eq!(m.ring_in(0).2, b"a");
}

#[test]
fn full_rings_drop_and_count_never_block() {
    let mut m = Machine::new(&[0, 1]);
    let mut con = Console::default();
    let mut out = String::new();
    con.endboot(&m.domains, &mut out);
    // dom0's ring holds 128; the rest is dropped but the VIRQ is raised.
    m.input(&mut con, &[b'a'; 200]);
    assert_eq!(con.rx.len(), SERIAL_RX_SIZE);
    assert_eq!(con.stats.dropped_dom0, 200 - SERIAL_RX_SIZE as u64);
    assert_eq!(m.up.upcalls, [(0, 0)]);
    // A domU ring holds 1024.
    m.input(&mut con, b"\x01\x01\x01");
    m.input(&mut con, &[b'b'; 1100]);
    assert_eq!(m.ring_in(1).1, ring::IN_SIZE);
    assert_eq!(con.stats.dropped_ring, 1100 - u64::from(ring::IN_SIZE));
    // Full: nothing fits, nothing blocks, the port stays pending for the guest.
    assert_eq!(m.up.upcalls, [(0, 0), (1, 0)]);
    m.input(&mut con, b"c");
    assert_eq!(con.stats.dropped_ring, 1100 - u64::from(ring::IN_SIZE) + 1);
    let p1 = m.domains[1].xen.evtchn.hv_port(HvPort::Console).unwrap();
    assert!(m.pending(1, p1));
}

#[test]
fn input_for_a_domain_that_ended_is_dropped() {
    let mut m = Machine::new(&[1, 2]);
    let mut con = Console::default();
    let mut out = String::new();
    con.endboot(&m.domains, &mut out);
    m.domains[0].ending = Some(crate::domain::EndReason::PsciSystemOff);
    m.input(&mut con, b"zz");
    assert_eq!(con.stats.dropped_gone, 2);
    assert_eq!(m.ring_in(0).1, 0);
    // The switch skips it: d1 -> d2.
    m.input(&mut con, b"\x01\x01\x01");
    assert_eq!(con.focus, Some(Focus::Dom(2)));
}

/// d0 with a 2-page RAM buffer at B, a read-only page at B + 0x2000,
/// nothing mapped at B + 0x3000.
fn with_guest(f: impl FnOnce(&mut GuestMemory<'_, FakeMem>)) {
    use memops::S2Attrs;
    let (mut mem, s2) = crate::testutil::stage2_with(&[
        (B, 0x8010_0000, 0x2000, S2Attrs::RAM),
        (B + 0x2000, 0x8020_0000, 0x1000, S2Attrs::RAM_RO),
    ]);
    let mut gm = GuestMemory::new(&s2, &mut mem);
    f(&mut gm);
}

fn rx_with(bytes: &[u8]) -> SerialRx {
    let mut rx = SerialRx::default();
    for &b in bytes {
        assert!(rx.push(b));
    }
    rx
}

#[test]
fn consoleio_read_bounds() {
    with_guest(|gm| {
        let mut rx = rx_with(b"hello");
        // count 0: nothing copied, nothing consumed.
        assert_eq!(rx.read_to_guest(0, Ipa(B), gm), Ok(0));
        assert_eq!(rx.len(), 5);
        // A count negative as a C int (Xen: -E2BIG), nothing consumed.
        assert_eq!(rx.read_to_guest(0x8000_0000, Ipa(B), gm), Err(Errno::E2BIG));
        assert_eq!(rx.read_to_guest(u32::MAX, Ipa(B), gm), Err(Errno::E2BIG));
        assert_eq!(rx.len(), 5);
        // Bad buffers: unmapped, read-only, crossing into unmapped: -EFAULT,
        // nothing consumed.
        assert_eq!(rx.read_to_guest(5, Ipa(B + 0x3000), gm), Err(Errno::EFAULT));
        assert_eq!(rx.read_to_guest(5, Ipa(B + 0x2000), gm), Err(Errno::EFAULT));
        assert_eq!(rx.read_to_guest(5, Ipa(B + 0x1ffe), gm), Err(Errno::EFAULT));
        assert_eq!(
            rx.read_to_guest(5, Ipa(u64::MAX - 1), gm),
            Err(Errno::EFAULT)
        );
        assert_eq!(rx.len(), 5);
        // Part of it, then a large count takes what is there (i32::MAX is allowed).
        assert_eq!(rx.read_to_guest(2, Ipa(B), gm), Ok(2));
        assert_eq!(rx.read_to_guest(i32::MAX as u32, Ipa(B + 2), gm), Ok(3));
        let mut b = [0u8; 5];
        gm.copy_from_guest(Ipa(B), &mut b).unwrap();
        assert_eq!(&b, b"hello");
        assert!(rx.is_empty());
        assert_eq!(rx.read_to_guest(64, Ipa(B), gm), Ok(0), "nothing waiting");
        // Across a page boundary of the guest buffer.
        rx.push(b'X');
        rx.push(b'Y');
        assert_eq!(rx.read_to_guest(2, Ipa(B + 0xfff), gm), Ok(2));
        let mut b = [0u8; 2];
        gm.copy_from_guest(Ipa(B + 0xfff), &mut b).unwrap();
        assert_eq!(&b, b"XY");
    });
}

#[test]
fn consoleio_read_wraps_in_two_pieces_and_a_fault_keeps_the_rest() {
    with_guest(|gm| {
        let mut rx = SerialRx::default();
        // Move the indexes near the end of the ring.
        for _ in 0..120 {
            rx.push(b'.');
        }
        assert_eq!(rx.read_to_guest(120, Ipa(B), gm), Ok(120));
        let data: Vec<u8> = (0..20u8).map(|i| b'a' + i).collect();
        for &c in &data {
            assert!(rx.push(c));
        }
        assert_eq!(rx.read_to_guest(100, Ipa(B + 0x100), gm), Ok(20));
        let mut b = [0u8; 20];
        gm.copy_from_guest(Ipa(B + 0x100), &mut b).unwrap();
        assert_eq!(b.as_slice(), data.as_slice());
        // Wrapped data, buffer whose second piece faults: the first piece
        // (8 bytes up to the ring's end) is consumed, the rest stays.
        for _ in 0..108 {
            rx.push(b'-');
        }
        assert_eq!(rx.read_to_guest(108, Ipa(B), gm), Ok(108));
        for &c in b"0123456789abcdef" {
            rx.push(c);
        }
        assert_eq!(
            rx.read_to_guest(16, Ipa(B + 0x1ff8), gm),
            Err(Errno::EFAULT)
        );
        assert_eq!(rx.len(), 8, "the first piece went");
        let mut b = [0u8; 8];
        gm.copy_from_guest(Ipa(B + 0x1ff8), &mut b).unwrap();
        assert_eq!(&b, b"01234567");
        assert_eq!(rx.read_to_guest(16, Ipa(B), gm), Ok(8));
    });
}

#[test]
fn serial_ring_holds_128_and_drops_the_rest() {
    let mut rx = SerialRx::default();
    for i in 0..SERIAL_RX_SIZE {
        assert!(rx.push(i as u8));
    }
    assert!(!rx.push(0xff));
    assert_eq!(rx.len(), SERIAL_RX_SIZE);
}

#[test]
fn uart_spi_from_qemu_virt_dtb() {
    let dtb = include_bytes!("../../tests/fixtures/qemu-virt-gicv3-smp2.dtb");
    // QEMU virt: pl011@9000000, interrupts = <GIC_SPI 1 IRQ_TYPE_LEVEL_HIGH>.
    assert_eq!(uart_spi(dtb, 0x0900_0000), Some((33, true)));
    assert_eq!(uart_spi(dtb, 0x0900_1000), None, "no UART there");
    assert_eq!(uart_spi(b"not a dtb", 0x0900_0000), None);
}

#[test]
fn unknown_and_newline_keys() {
    let mut m = Machine::new(&[]);
    let mut con = Console::default();
    m.input(&mut con, b"\r\nZ");
    let o = m.take_out();
    assert_has(
        &o,
        &[
            "Serial input to hv",
            "hv: key 'Z' (0x5a) has no handler ('h' lists them)",
        ],
    );
    assert_eq!(o.lines().count(), 2, "{o}");
    m.input(&mut con, b"*");
    let o = m.take_out();
    assert_has(
        &o,
        &[
            "memory info",
            "hv's counters",
            "domain info",
            "run queues",
            "tlb policy: XenCompat",
            "hv:  tlbi: IPAS2E1IS=",
            "hv:  window_closes: hypercall=",
            " at_window_close=",
        ],
    );
}

proptest::proptest! {
    /// Any byte stream: every run of CTRL-a gives run/3 switches, the
    /// remainder is handed on only if another byte follows; every other
    /// byte comes out once, in order.
    #[test]
    fn switch_machine_loses_and_invents_nothing(bytes in proptest::collection::vec(
        proptest::prop_oneof![proptest::strategy::Just(SWITCH_CODE), proptest::num::u8::ANY],
        0..200,
    )) {
        let ev = events(&bytes);
        let mut want = Vec::new();
        let mut run = 0usize;
        for &c in &bytes {
            if c == SWITCH_CODE {
                run += 1;
                if run == 3 {
                    want.push(Rx::Switch);
                    run = 0;
                }
            } else {
                want.extend(core::iter::repeat_n(Rx::Byte(SWITCH_CODE), run));
                run = 0;
                want.push(Rx::Byte(c));
            }
        }
        proptest::prop_assert_eq!(ev, want);
    }
}
