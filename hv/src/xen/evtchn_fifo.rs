//! FIFO event channels (`EVTCHNOP_init_control` / `expand_array` /
//! `set_priority`): the per-domain state and the queue protocol hv shares
//! with the guest. [`super::evtchn::Evtchns`] owns a [`Fifo`] once the
//! domain switched (its first `init_control`) and routes `set_pending` and
//! `unmask` here, as Xen's `evtchn_port_ops` switch does.
//!
//! Sources (layouts and semantics, checked against, never copied): Xen
//! `xen/include/public/event_channel.h` (`struct evtchn_init_control`,
//! `evtchn_expand_array`, `evtchn_set_priority`,
//! `struct evtchn_fifo_control_block`, `EVTCHN_FIFO_*`), Xen
//! `xen/common/event_fifo.c` (the link protocol and its retry bound, the
//! switch from 2-level with `setup_ports`, the re-raise when an array page
//! arrives), Linux `drivers/xen/events/events_fifo.c` (the guest side: it
//! consumes with `xchg(ready, 0)`, reads `HEAD[q]` when its local head is 0,
//! clears LINKED|LINK with a cmpxchg loop, unmasks with a cmpxchg loop that
//! waits while BUSY is set, then `EVTCHNOP_unmask` if the event is pending).
//!
//! Layout: an event word is a little-endian u32 = PENDING (31) | MASKED (30)
//! | LINKED (29) | BUSY (28) | LINK (bits 0-16, the next port in the
//! queue). Event array page `i` holds the words of ports `1024 i ..
//! 1024 i + 1023`. A control block (72 bytes, 8-aligned, in one page) =
//! { u32 ready @0 (one bit per priority), u32 rsvd, u32 head\[16\] @8 }.
//!
//! hv runs every event-channel operation of a domain under the world lock,
//! so Xen's per-queue spinlocks (and its `lastq` retry loop) have no
//! counterpart: only the guest runs concurrently, and only on guest memory,
//! which is touched with atomics ([`PhysMem::fetch_or_u64`],
//! [`PhysMem::fetch_and_u64`], [`PhysMem::compare_exchange_u32`]).

use alloc::vec::Vec;

use pv_tlb::{PhysAddr, PAGE_SIZE};

use super::Errno;
use crate::arch::PhysMem;

/// `EVTCHN_FIFO_PRIORITY_DEFAULT`.
pub const PRIORITY_DEFAULT: u8 = 7;
/// `EVTCHN_FIFO_PRIORITY_MIN` (the lowest priority, the largest number).
pub const PRIORITY_MIN: u32 = 15;
/// `EVTCHN_FIFO_MAX_QUEUES`.
pub const MAX_QUEUES: usize = PRIORITY_MIN as usize + 1;
/// `EVTCHN_FIFO_PENDING`.
pub const PENDING: u32 = 31;
/// `EVTCHN_FIFO_MASKED`.
pub const MASKED: u32 = 30;
/// `EVTCHN_FIFO_LINKED`.
pub const LINKED: u32 = 29;
/// `EVTCHN_FIFO_BUSY`.
pub const BUSY: u32 = 28;
/// `EVTCHN_FIFO_LINK_BITS` (returned in `init_control.link_bits`).
pub const LINK_BITS: u8 = 17;
/// `EVTCHN_FIFO_LINK_MASK`.
pub const LINK_MASK: u32 = (1 << LINK_BITS) - 1;
/// `EVTCHN_FIFO_NR_CHANNELS`.
pub const NR_CHANNELS: u32 = 1 << LINK_BITS;
/// Event words per array page (`PAGE_SIZE / sizeof(event_word_t)`).
pub const WORDS_PER_PAGE: u32 = (PAGE_SIZE / 4) as u32;
/// `EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES`.
pub const MAX_EVENT_ARRAY_PAGES: usize = (NR_CHANNELS / WORDS_PER_PAGE) as usize;
/// `sizeof(struct evtchn_fifo_control_block)`.
pub const CONTROL_BLOCK_SIZE: u64 = 8 + 4 * MAX_QUEUES as u64;
/// `control_block.head[0]`.
const CB_HEAD: u64 = 8;
/// Xen's bound on link attempts once the tail word is BUSY
/// (`evtchn_fifo_set_link`: the guest may make at most 4 changes).
const LINK_TRIES: u32 = 4;

/// hv's side of one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FifoPort {
    /// Its queue (0 highest .. 15 lowest).
    priority: u8,
    /// The queue it was last linked on (`fifo_lastq`): vCPU and priority.
    last_vcpu: u32,
    last_priority: u8,
    /// Raised while its event array page was missing (`evtchn->pending`).
    pending: bool,
}

impl Default for FifoPort {
    fn default() -> Self {
        Self {
            priority: PRIORITY_DEFAULT,
            last_vcpu: 0,
            last_priority: 0,
            pending: false,
        }
    }
}

/// hv's side of one vCPU: its control block and the tails of its queues.
#[derive(Clone, Copy, Debug, Default)]
struct FifoVcpu {
    control: Option<PhysAddr>,
    tail: [u32; MAX_QUEUES],
}

/// A domain's FIFO state (Xen's `evtchn_fifo_domain` + the vCPUs' `evtchn_fifo_vcpu`).
#[derive(Debug)]
pub struct Fifo {
    vcpus: Vec<FifoVcpu>,
    pages: Vec<PhysAddr>,
    ports: Vec<FifoPort>,
}

/// The u64 holding the bit `bit` of the u32 at `pa` (4-aligned), and its mask
/// (as Linux's `BM()`/`EVTCHN_FIFO_BIT()`: hv's bit atomics are on u64).
fn bit_of(pa: PhysAddr, bit: u32) -> (PhysAddr, u64) {
    let shift = if pa.0 & 4 != 0 { 32 } else { 0 };
    (PhysAddr(pa.0 & !7), 1u64 << (bit + shift))
}

fn test_and_set<M: PhysMem + ?Sized>(mem: &mut M, pa: PhysAddr, bit: u32) -> bool {
    let (w, m) = bit_of(pa, bit);
    mem.fetch_or_u64(w, m) & m != 0
}

fn clear<M: PhysMem + ?Sized>(mem: &mut M, pa: PhysAddr, bit: u32) {
    let (w, m) = bit_of(pa, bit);
    mem.fetch_and_u64(w, !m);
}

fn load<M: PhysMem + ?Sized>(mem: &M, pa: PhysAddr) -> u32 {
    let mut b = [0u8; 4];
    mem.read(pa, &mut b);
    u32::from_le_bytes(b)
}

fn test<M: PhysMem + ?Sized>(mem: &M, pa: PhysAddr, bit: u32) -> bool {
    load(mem, pa) & (1 << bit) != 0
}

/// Xen's `try_set_link`: `Ok(false)` if the word is not LINKED (the guest
/// consumed it), `Ok(true)` once LINK = `link` (BUSY cleared), `Err(())` if
/// the guest changed the word meanwhile (`w` then holds what it found).
fn try_set_link<M: PhysMem + ?Sized>(
    mem: &mut M,
    word: PhysAddr,
    w: &mut u32,
    link: u32,
) -> Result<bool, ()> {
    if *w & (1 << LINKED) == 0 {
        return Ok(false);
    }
    let old = *w;
    let new = (old & !((1 << BUSY) | LINK_MASK)) | link;
    *w = mem.compare_exchange_u32(word, old, new);
    if *w == old {
        Ok(true)
    } else {
        Err(())
    }
}

/// Xen's `evtchn_fifo_set_link`: set LINK of the tail word iff it is still
/// LINKED. The guest may only set/clear MASKED, clear PENDING and clear
/// LINKED on a linked word; BUSY stops it unmasking, so after one failed try
/// at most [`LINK_TRIES`] more are needed. Returns whether it linked.
fn set_link<M: PhysMem + ?Sized>(mem: &mut M, word: PhysAddr, link: u32) -> bool {
    let mut w = load(mem, word);
    if let Ok(r) = try_set_link(mem, word, &mut w, link) {
        return r;
    }
    test_and_set(mem, word, BUSY);
    w = load(mem, word);
    for _ in 0..LINK_TRIES {
        if let Ok(r) = try_set_link(mem, word, &mut w, link) {
            if !r {
                clear(mem, word, BUSY);
            }
            return r;
        }
    }
    // Xen: "port not linked" warning; the event is treated as linked.
    clear(mem, word, BUSY);
    true
}

impl Fifo {
    /// Empty state (no control block, no array page) for `vcpus` vCPUs and
    /// ports below `nr_ports`.
    ///
    /// # Errors
    /// `-ENOMEM` if hv's heap cannot hold it.
    pub fn new(vcpus: u32, nr_ports: u32) -> Result<Self, Errno> {
        let mut v = Vec::new();
        let mut p = Vec::new();
        let mut pages = Vec::new();
        v.try_reserve_exact(vcpus as usize)
            .and_then(|()| p.try_reserve_exact(nr_ports as usize))
            .and_then(|()| pages.try_reserve_exact(1))
            .map_err(|_| Errno::ENOMEM)?;
        v.resize(vcpus as usize, FifoVcpu::default());
        p.resize(nr_ports as usize, FifoPort::default());
        Ok(Self {
            vcpus: v,
            pages,
            ports: p,
        })
    }

    /// `vcpu`'s control block (host address), if registered.
    #[must_use]
    pub fn control(&self, vcpu: u32) -> Option<PhysAddr> {
        self.vcpus.get(vcpu as usize).and_then(|v| v.control)
    }

    /// Register `vcpu`'s control block at `pa` (Xen's `map_control_block`).
    ///
    /// # Errors
    /// `-EINVAL` if it already has one, `-ENOENT` for a missing vCPU.
    pub fn set_control(&mut self, vcpu: u32, pa: PhysAddr) -> Result<(), Errno> {
        let v = self.vcpus.get_mut(vcpu as usize).ok_or(Errno::ENOENT)?;
        if v.control.is_some() {
            return Err(Errno::EINVAL);
        }
        v.control = Some(pa);
        Ok(())
    }

    /// Event array pages added so far.
    #[must_use]
    pub fn nr_pages(&self) -> usize {
        self.pages.len()
    }

    /// Ports with an event word (`num_evtchns`).
    #[must_use]
    pub fn num_evtchns(&self) -> u32 {
        self.pages.len() as u32 * WORDS_PER_PAGE
    }

    /// Append array page `pa` (page-aligned host address).
    ///
    /// # Errors
    /// `-ENOSPC` past [`MAX_EVENT_ARRAY_PAGES`], `-ENOMEM` if hv's heap is full.
    pub fn add_page(&mut self, pa: PhysAddr) -> Result<(), Errno> {
        if self.pages.len() >= MAX_EVENT_ARRAY_PAGES {
            return Err(Errno::ENOSPC);
        }
        self.pages.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
        self.pages.push(pa);
        Ok(())
    }

    /// The host address of `port`'s event word, if its page was added.
    #[must_use]
    pub fn word(&self, port: u32) -> Option<PhysAddr> {
        let page = self.pages.get((port / WORDS_PER_PAGE) as usize)?;
        Some(PhysAddr(page.0 + u64::from(port % WORDS_PER_PAGE) * 4))
    }

    /// A port was (re)bound (Xen's `evtchn_fifo_init`): default priority, no
    /// saved event.
    pub fn port_bound(&mut self, port: u32) {
        if let Some(p) = self.ports.get_mut(port as usize) {
            p.priority = PRIORITY_DEFAULT;
            p.pending = false;
        }
    }

    /// Remember that `port` was pending before the switch (Xen's `setup_ports`).
    pub fn carry_pending(&mut self, port: u32) {
        if let Some(p) = self.ports.get_mut(port as usize) {
            p.pending = true;
        }
    }

    /// Take the saved event of `port` (re-raised when its page arrives).
    pub fn take_saved(&mut self, port: u32) -> bool {
        self.ports
            .get_mut(port as usize)
            .is_some_and(|p| core::mem::take(&mut p.pending))
    }

    /// `port`'s priority.
    #[must_use]
    pub fn priority(&self, port: u32) -> Option<u8> {
        self.ports.get(port as usize).map(|p| p.priority)
    }

    /// Xen's `evtchn_fifo_set_priority`: only future events use the new queue.
    ///
    /// # Errors
    /// `-EINVAL` for a priority above [`PRIORITY_MIN`] or a port hv has no slot for.
    pub fn set_priority(&mut self, port: u32, priority: u32) -> Result<(), Errno> {
        if priority > PRIORITY_MIN {
            return Err(Errno::EINVAL);
        }
        let p = self.ports.get_mut(port as usize).ok_or(Errno::EINVAL)?;
        p.priority = priority as u8;
        Ok(())
    }

    /// Xen's `evtchn_fifo_set_pending` for `port` notifying `vcpu`: set
    /// PENDING; if unmasked and not yet LINKED, link it at the tail of its
    /// queue (or make it the queue's HEAD); if the queue was empty, set its
    /// READY bit. Returns true when `vcpu` must get an upcall (the READY bit
    /// was clear), as `vcpu_mark_events_pending`.
    pub fn set_pending<M: PhysMem + ?Sized>(&mut self, port: u32, vcpu: u32, mem: &mut M) -> bool {
        let Some(fp) = self.ports.get(port as usize).copied() else {
            return false;
        };
        let Some(word) = self.word(port) else {
            // No event word yet: keep it for when the page is added.
            self.ports[port as usize].pending = true;
            return false;
        };
        let (v, prio) = (vcpu as usize, usize::from(fp.priority).min(MAX_QUEUES - 1));
        let Some(cb) = self.vcpus.get(v).and_then(|x| x.control) else {
            // Xen: "has no FIFO event channel control block": dropped (the
            // guest must not unmask before it registered one).
            return false;
        };
        test_and_set(mem, word, PENDING);
        let mut linked = true;
        if !test(mem, word, MASKED) && !test_and_set(mem, word, LINKED) {
            // It was the tail of its old queue: that queue is empty now.
            let (ov, op) = (fp.last_vcpu as usize, usize::from(fp.last_priority));
            if let Some(t) = self.vcpus.get_mut(ov).and_then(|x| x.tail.get_mut(op)) {
                if *t == port {
                    *t = 0;
                }
            }
            let p = &mut self.ports[port as usize];
            p.last_vcpu = vcpu;
            p.last_priority = prio as u8;
            linked = false;
            let tail = self.vcpus[v].tail[prio];
            // `tail != port`: never link a word to itself (a loop in the guest).
            if tail != 0 && tail != port {
                if let Some(tw) = self.word(tail) {
                    linked = set_link(mem, tw, port);
                }
            }
            if !linked {
                mem.write(
                    PhysAddr(cb.0 + CB_HEAD + 4 * prio as u64),
                    &port.to_le_bytes(),
                );
            }
            self.vcpus[v].tail[prio] = port;
        }
        // `ready` is the low half of the control block's first u64 (8-aligned).
        !linked && mem.fetch_or_u64(cb, 1 << prio) & (1 << prio) == 0
    }

    /// Xen's `evtchn_fifo_unmask` first half: clear MASKED; true if the event
    /// is pending (the caller re-raises it on its vCPU).
    pub fn unmask<M: PhysMem + ?Sized>(&self, port: u32, mem: &mut M) -> bool {
        let Some(word) = self.word(port) else {
            return false;
        };
        clear(mem, word, MASKED);
        test(mem, word, PENDING)
    }

    /// The event word of `port` (0 without one): for tests and debugging.
    #[must_use]
    pub fn peek<M: PhysMem + ?Sized>(&self, port: u32, mem: &M) -> u32 {
        self.word(port).map_or(0, |w| load(mem, w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::fake::FakeMem;
    use crate::xen::evtchn::{layout, Evtchns, PortState, RecordingIrqSink, MAX_PORTS};
    use alloc::boxed::Box;
    use alloc::vec;

    const SI: PhysAddr = PhysAddr(0x8000_0000);
    /// vCPU 0's and vCPU 1's control blocks (two pages, offsets 0 and 0x100).
    const CB0: PhysAddr = PhysAddr(0x8000_1000);
    const CB1: PhysAddr = PhysAddr(0x8000_2100);
    /// Event array pages.
    const ARR0: PhysAddr = PhysAddr(0x8000_3000);
    const ARR1: PhysAddr = PhysAddr(0x8000_4000);

    fn mem() -> FakeMem {
        let mut m = FakeMem::new(0x8000_0000, 0x10_0000);
        for i in 0..8 {
            m.zero_frame(PhysAddr(0x8000_0000 + i * 0x1000));
        }
        m
    }

    /// Linux's `init_array_page`: every event masked before the page is given.
    fn masked_page(m: &mut FakeMem, page: PhysAddr) {
        for i in 0..u64::from(WORDS_PER_PAGE) {
            m.write(PhysAddr(page.0 + 4 * i), &(1u32 << MASKED).to_le_bytes());
        }
    }

    fn rd(m: &FakeMem, pa: PhysAddr) -> u32 {
        load(m, pa)
    }

    /// Linux's consumer (events_fifo.c `__evtchn_fifo_handle_events` /
    /// `consume_one_event` / `clear_linked`, and the handler's
    /// `clear_pending`) for one vCPU; `head` is its per-CPU local HEADs.
    struct Guest {
        cb: PhysAddr,
        head: [u32; MAX_QUEUES],
    }

    impl Guest {
        fn new(cb: PhysAddr) -> Self {
            Self {
                cb,
                head: [0; MAX_QUEUES],
            }
        }

        fn word(e: &Evtchns, port: u32) -> PhysAddr {
            e.fifo().unwrap().word(port).unwrap()
        }

        fn xchg_ready(&self, m: &mut FakeMem) -> u32 {
            let r = rd(m, self.cb);
            m.write(self.cb, &0u32.to_le_bytes());
            r
        }

        /// Clear LINKED|LINK of `port` (Linux's `clear_linked`); its old LINK.
        fn clear_linked(m: &mut FakeMem, w: PhysAddr) -> u32 {
            let old = rd(m, w);
            m.write(w, &(old & !((1 << LINKED) | LINK_MASK)).to_le_bytes());
            old & LINK_MASK
        }

        /// Handle every ready event; the ports handled, in order.
        fn consume(&mut self, e: &Evtchns, m: &mut FakeMem) -> Vec<u32> {
            let mut out = Vec::new();
            // The upcall handler clears evtchn_upcall_pending first (vCPU 0's
            // vcpu_info is slot 0 of the shared info; the others have none here).
            if self.cb == CB0 {
                m.write(SI, &[0u8]);
            }
            let mut ready = self.xchg_ready(m);
            let mut guard = 0;
            while ready != 0 {
                guard += 1;
                assert!(guard < 10_000, "the guest's queue walk does not end");
                let q = ready.trailing_zeros() as usize;
                let mut head = self.head[q];
                if head == 0 {
                    head = rd(m, PhysAddr(self.cb.0 + CB_HEAD + 4 * q as u64));
                }
                let port = head;
                let w = Self::word(e, port);
                let next = Self::clear_linked(m, w);
                if next == 0 {
                    ready &= !(1 << q);
                }
                let v = rd(m, w);
                if v & (1 << PENDING) != 0 && v & (1 << MASKED) == 0 {
                    out.push(port);
                    m.write(w, &(v & !(1 << PENDING)).to_le_bytes());
                }
                self.head[q] = next;
                ready |= self.xchg_ready(m);
            }
            out
        }
    }

    /// Linux's unmask of `port` (`clear_masked`, then `EVTCHNOP_unmask` if pending).
    fn guest_unmask(e: &mut Evtchns, m: &mut FakeMem, irq: &mut RecordingIrqSink, port: u32) {
        let w = Guest::word(e, port);
        let v = rd(m, w);
        m.write(w, &(v & !(1 << MASKED)).to_le_bytes());
        if v & (1 << PENDING) != 0 {
            e.unmask(1, port, m, irq).unwrap();
        }
    }

    /// A FIFO domain d1 with 2 vCPUs, vCPU 0's control block and one array
    /// page, and `n` IPI ports on vCPU 0, unmasked.
    fn fifo_domain(n: u32) -> (Evtchns, FakeMem, RecordingIrqSink, Vec<u32>) {
        let mut m = mem();
        let mut irq = RecordingIrqSink::default();
        let mut e = Evtchns::new(2, Some(SI));
        e.init_control(0, CB0, &m).unwrap();
        masked_page(&mut m, ARR0);
        e.expand_array(1, ARR0, &mut m, &mut irq).unwrap();
        let mut ports = Vec::new();
        for _ in 0..n {
            let p = e.alloc(PortState::Ipi, 0).unwrap();
            guest_unmask(&mut e, &mut m, &mut irq, p);
            ports.push(p);
        }
        assert!(irq.upcalls.is_empty());
        (e, m, irq, ports)
    }

    #[test]
    fn init_control_arguments() {
        let m = mem();
        let mut e = Evtchns::new(2, Some(SI));
        assert_eq!(e.init_control(2, CB0, &m), Err(Errno::ENOENT), "no vCPU 2");
        assert_eq!(
            e.init_control(0, PhysAddr(CB0.0 + PAGE_SIZE - CONTROL_BLOCK_SIZE + 8), &m),
            Err(Errno::EINVAL),
            "crosses the page"
        );
        assert_eq!(
            e.init_control(0, PhysAddr(CB0.0 + 4), &m),
            Err(Errno::EINVAL),
            "not 8-aligned"
        );
        assert!(e.fifo().is_none(), "failures leave the domain on 2-level");
        // The last offset that fits is fine.
        e.init_control(
            1,
            PhysAddr(CB1.0 - 0x100 + PAGE_SIZE - CONTROL_BLOCK_SIZE),
            &m,
        )
        .unwrap();
        assert!(e.fifo().is_some());
        assert!(e.fifo_control_registered(1));
        assert!(!e.fifo_control_registered(0));
        assert_eq!(e.init_control(1, CB1, &m), Err(Errno::EINVAL), "twice");
        e.init_control(0, CB0, &m).unwrap();
        assert_eq!(e.fifo().unwrap().num_evtchns(), 0, "no array page yet");
    }

    #[test]
    fn expand_array_and_its_limit() {
        let mut m = mem();
        let mut irq = RecordingIrqSink::default();
        let mut e = Evtchns::new(1, Some(SI));
        assert_eq!(e.can_expand(), Err(Errno::EOPNOTSUPP));
        assert_eq!(
            e.expand_array(1, ARR0, &mut m, &mut irq),
            Err(Errno::EOPNOTSUPP),
            "2-level domain"
        );
        assert_eq!(e.set_priority(1, 3), Err(Errno::EINVAL), "no such port");
        e.alloc(PortState::Ipi, 0).unwrap();
        assert_eq!(
            e.set_priority(1, 3),
            Err(Errno::ENOSYS),
            "2-level: no priorities"
        );
        e.init_control(0, CB0, &m).unwrap();
        for i in 0..MAX_EVENT_ARRAY_PAGES {
            assert_eq!(e.can_expand(), Ok(()));
            e.expand_array(
                1,
                PhysAddr(ARR0.0 + 0x1000 * (i as u64 % 2)),
                &mut m,
                &mut irq,
            )
            .unwrap();
        }
        assert_eq!(e.can_expand(), Err(Errno::ENOSPC));
        assert_eq!(
            e.expand_array(1, ARR0, &mut m, &mut irq),
            Err(Errno::ENOSPC)
        );
        assert_eq!(e.fifo().unwrap().num_evtchns(), NR_CHANNELS);
        assert_eq!(
            e.fifo().unwrap().word(NR_CHANNELS - 1),
            Some(PhysAddr(ARR1.0 + 4092))
        );
        assert_eq!(e.fifo().unwrap().word(NR_CHANNELS), None);
    }

    #[test]
    fn send_links_in_order_and_the_guest_consumes() {
        let (mut e, mut m, mut irq, ports) = fifo_domain(3);
        let [a, b, c] = ports[..] else { panic!() };
        for p in [a, b, c] {
            e.set_pending(1, p, &mut m, &mut irq);
        }
        // One upcall: the queue went from empty to non-empty once.
        assert_eq!(irq.upcalls, [(1, 0)]);
        assert_eq!(rd(&m, CB0), 1 << PRIORITY_DEFAULT, "READY of queue 7");
        let head = PhysAddr(CB0.0 + CB_HEAD + 4 * u64::from(PRIORITY_DEFAULT));
        assert_eq!(rd(&m, head), a);
        let f = e.fifo().unwrap();
        let linked = (1 << PENDING) | (1 << LINKED);
        assert_eq!(f.peek(a, &m), linked | b);
        assert_eq!(f.peek(b, &m), linked | c);
        assert_eq!(f.peek(c, &m), linked);
        // Raising a linked event again changes nothing.
        e.set_pending(1, b, &mut m, &mut irq);
        assert_eq!(e.fifo().unwrap().peek(b, &m), linked | c);
        assert_eq!(irq.upcalls.len(), 1);
        let mut g = Guest::new(CB0);
        assert_eq!(g.consume(&e, &mut m), [a, b, c]);
        // Empty again: the next event is a new HEAD and a new upcall.
        e.set_pending(1, c, &mut m, &mut irq);
        e.set_pending(1, a, &mut m, &mut irq);
        assert_eq!(irq.upcalls.len(), 2);
        assert_eq!(rd(&m, head), c);
        assert_eq!(g.consume(&e, &mut m), [c, a]);
        assert_eq!(rd(&m, CB0), 0);
    }

    #[test]
    fn priorities_use_their_own_queues() {
        let (mut e, mut m, mut irq, ports) = fifo_domain(3);
        let [a, b, c] = ports[..] else { panic!() };
        assert_eq!(e.set_priority(a, 16), Err(Errno::EINVAL));
        assert_eq!(e.set_priority(MAX_PORTS + 1, 1), Err(Errno::EINVAL));
        e.set_priority(a, PRIORITY_MIN).unwrap();
        e.set_priority(c, 0).unwrap();
        for p in [a, b, c] {
            e.set_pending(1, p, &mut m, &mut irq);
        }
        // Each queue became ready; one upcall (evtchn_upcall_pending was set once).
        assert_eq!(rd(&m, CB0), (1 << 15) | (1 << 7) | 1);
        assert_eq!(irq.upcalls, [(1, 0)]);
        // The guest handles the highest priority (lowest number) first.
        assert_eq!(Guest::new(CB0).consume(&e, &mut m), [c, b, a]);
        // A rebound port is back at the default priority.
        e.free(c).unwrap();
        assert_eq!(e.alloc(PortState::Ipi, 0), Ok(c));
        assert_eq!(e.fifo().unwrap().priority(c), Some(PRIORITY_DEFAULT));
    }

    #[test]
    fn masked_events_wait_for_unmask() {
        let (mut e, mut m, mut irq, ports) = fifo_domain(2);
        let [a, b] = ports[..] else { panic!() };
        // The guest masks a (Linux's mask: set MASKED).
        let wa = Guest::word(&e, a);
        m.write(wa, &(rd(&m, wa) | (1 << MASKED)).to_le_bytes());
        e.set_pending(1, a, &mut m, &mut irq);
        assert_eq!(
            rd(&m, wa),
            (1 << PENDING) | (1 << MASKED),
            "pending, not linked"
        );
        assert!(irq.upcalls.is_empty());
        e.set_pending(1, b, &mut m, &mut irq);
        assert_eq!(irq.upcalls, [(1, 0)]);
        // Unmask: linked behind b; no new upcall (the queue was not empty).
        guest_unmask(&mut e, &mut m, &mut irq, a);
        assert_eq!(irq.upcalls.len(), 1);
        assert_eq!(Guest::new(CB0).consume(&e, &mut m), [b, a]);
        // Unmasking a port without a word or out of range.
        assert_eq!(e.unmask(1, MAX_PORTS, &mut m, &mut irq), Err(Errno::EINVAL));
    }

    #[test]
    fn events_follow_their_vcpu_and_need_its_control_block() {
        let (mut e, mut m, mut irq, ports) = fifo_domain(1);
        let a = ports[0];
        e.bind_vcpu(a, 1).unwrap();
        // vCPU 1 has no control block yet: Xen drops the event.
        e.set_pending(1, a, &mut m, &mut irq);
        assert_eq!(e.fifo().unwrap().peek(a, &m), 0);
        assert!(irq.upcalls.is_empty());
        e.init_control(1, CB1, &m).unwrap();
        e.set_pending(1, a, &mut m, &mut irq);
        assert_eq!(rd(&m, CB1), 1 << PRIORITY_DEFAULT);
        assert_eq!(rd(&m, CB0), 0);
        // vCPU 1 has no vcpu_info registered: no upcall can be marked (it
        // gets one when it registers, as for 2-level).
        assert!(irq.upcalls.is_empty());
        assert_eq!(Guest::new(CB1).consume(&e, &mut m), [a]);
    }

    #[test]
    fn events_without_an_array_page_wait_for_it() {
        let mut m = mem();
        let mut irq = RecordingIrqSink::default();
        let mut e = Evtchns::new(1, Some(SI));
        e.init_control(0, CB0, &m).unwrap();
        let p = e.alloc(PortState::Ipi, 0).unwrap();
        e.set_pending(1, p, &mut m, &mut irq);
        assert!(irq.upcalls.is_empty());
        // Linux gives the page with every event masked; the saved event
        // is raised (pending, masked, not linked) and shows on unmask.
        masked_page(&mut m, ARR0);
        e.expand_array(1, ARR0, &mut m, &mut irq).unwrap();
        assert_eq!(
            e.fifo().unwrap().peek(p, &m),
            (1 << PENDING) | (1 << MASKED)
        );
        guest_unmask(&mut e, &mut m, &mut irq, p);
        assert_eq!(irq.upcalls, [(1, 0)]);
        assert_eq!(Guest::new(CB0).consume(&e, &mut m), [p]);
    }

    #[test]
    fn two_level_ports_are_carried_over() {
        let mut m = mem();
        let mut irq = RecordingIrqSink::default();
        let mut e = Evtchns::new(1, Some(SI));
        let a = e.alloc(PortState::Ipi, 0).unwrap();
        let b = e.alloc(PortState::Virq(0), 0).unwrap();
        let c = e.alloc(PortState::Unbound { remote: 0 }, 0).unwrap();
        e.set_pending(1, b, &mut m, &mut irq);
        assert_eq!(irq.upcalls, [(1, 0)], "2-level delivery");
        let mut w = [0u8; 8];
        m.read(PhysAddr(SI.0 + layout::SI_PENDING), &mut w);
        assert_eq!(u64::from_le_bytes(w), 1 << b);
        m.write(SI, &[0u8; 16]);
        irq.upcalls.clear();
        e.init_control(0, CB0, &m).unwrap();
        // The ports stay bound, at the default priority.
        assert_eq!(e.port(a).unwrap().state, PortState::Ipi);
        assert_eq!(e.fifo().unwrap().priority(c), Some(PRIORITY_DEFAULT));
        // b's event comes back once its page is there (Linux leaves b
        // unmasked after re-binding it; here the page arrives unmasked).
        e.expand_array(1, ARR0, &mut m, &mut irq).unwrap();
        assert_eq!(irq.upcalls, [(1, 0)]);
        assert_eq!(Guest::new(CB0).consume(&e, &mut m), [b]);
        // New ports after the switch are numbered on.
        assert_eq!(e.alloc(PortState::Ipi, 0), Ok(c + 1));
    }

    /// A [`FakeMem`] on which "the guest" runs `race` just before each of
    /// hv's compare-and-swaps, as another pCPU would.
    struct RacyMem {
        m: FakeMem,
        race: Box<dyn FnMut(&mut FakeMem)>,
        cas: u32,
    }

    impl PhysMem for RacyMem {
        fn read(&self, pa: PhysAddr, buf: &mut [u8]) {
            self.m.read(pa, buf);
        }
        fn write(&mut self, pa: PhysAddr, buf: &[u8]) {
            self.m.write(pa, buf);
        }
        fn zero_frame(&mut self, pa: PhysAddr) {
            self.m.zero_frame(pa);
        }
        fn compare_exchange_u32(&mut self, pa: PhysAddr, current: u32, new: u32) -> u32 {
            self.cas += 1;
            (self.race)(&mut self.m);
            self.m.compare_exchange_u32(pa, current, new)
        }
    }

    /// The guest consumes the tail while hv links behind it: hv's CAS
    /// fails, it finds the tail unlinked, makes the new event the HEAD and
    /// raises READY again (the guest's `xchg(ready)` took it).
    #[test]
    fn guest_unlinks_the_tail_during_the_link() {
        let (mut e, m, mut irq, ports) = fifo_domain(2);
        let [a, b] = ports[..] else { panic!() };
        let mut m = RacyMem {
            m,
            race: Box::new(|_| {}),
            cas: 0,
        };
        e.set_pending(1, a, &mut m, &mut irq);
        let wa = Guest::word(&e, a);
        let mut g = Guest::new(CB0);
        // The guest starts consuming: clears upcall_pending, takes READY ...
        m.m.write(SI, &[0u8]);
        assert_eq!(g.xchg_ready(&mut m.m), 1 << PRIORITY_DEFAULT);
        // ... and clears a's LINKED just before hv's CAS.
        let mut once = true;
        m.race = Box::new(move |m: &mut FakeMem| {
            if core::mem::take(&mut once) {
                assert_eq!(Guest::clear_linked(m, wa), 0);
            }
        });
        e.set_pending(1, b, &mut m, &mut irq);
        assert_eq!(m.cas, 1, "not linked: no further tries");
        assert_eq!(rd(&m.m, wa), 1 << PENDING, "a: unlinked, BUSY cleared");
        let head = PhysAddr(CB0.0 + CB_HEAD + 4 * u64::from(PRIORITY_DEFAULT));
        assert_eq!(rd(&m.m, head), b);
        assert_eq!(rd(&m.m, CB0), 1 << PRIORITY_DEFAULT, "READY again");
        assert_eq!(irq.upcalls, [(1, 0), (1, 0)]);
        // The guest (its local head is 0 after a) reads the new HEAD.
        assert_eq!(g.consume(&e, &mut m.m), [b]);
    }

    /// The guest changes the tail word (masks/unmasks, clears PENDING) while
    /// it stays LINKED: hv retries, holding BUSY, and links.
    #[test]
    fn guest_changes_the_tail_word_and_hv_retries() {
        let (mut e, m, mut irq, ports) = fifo_domain(2);
        let [a, b] = ports[..] else { panic!() };
        let mut m = RacyMem {
            m,
            race: Box::new(|_| {}),
            cas: 0,
        };
        e.set_pending(1, a, &mut m, &mut irq);
        let wa = Guest::word(&e, a);
        let mut n = 0;
        m.race = Box::new(move |m: &mut FakeMem| {
            n += 1;
            if n <= 2 {
                let v = rd(m, wa);
                m.write(wa, &(v ^ (1 << MASKED)).to_le_bytes());
            }
        });
        e.set_pending(1, b, &mut m, &mut irq);
        assert_eq!(m.cas, 3);
        assert_eq!(
            rd(&m.m, wa),
            (1 << PENDING) | (1 << LINKED) | b,
            "linked, BUSY cleared"
        );
        assert_eq!(irq.upcalls, [(1, 0)]);
        assert_eq!(Guest::new(CB0).consume(&e, &mut m.m), [a, b]);
    }

    /// A hostile guest flips its tail word before every CAS: hv gives up
    /// after Xen's bound (1 + 4 tries), clears BUSY and goes on.
    #[test]
    fn a_hostile_guest_cannot_make_hv_spin() {
        let (mut e, m, mut irq, ports) = fifo_domain(2);
        let [a, b] = ports[..] else { panic!() };
        let mut m = RacyMem {
            m,
            race: Box::new(|_| {}),
            cas: 0,
        };
        e.set_pending(1, a, &mut m, &mut irq);
        let wa = Guest::word(&e, a);
        m.race = Box::new(move |m: &mut FakeMem| {
            let v = rd(m, wa);
            m.write(wa, &(v ^ (1 << MASKED)).to_le_bytes());
        });
        e.set_pending(1, b, &mut m, &mut irq);
        assert_eq!(m.cas, 1 + LINK_TRIES);
        assert_eq!(rd(&m.m, wa) & (1 << BUSY), 0);
        // A guest that writes garbage everywhere: nothing panics, every
        // LINK stays below 2^17 and every walk ends.
        for i in 0..u64::from(WORDS_PER_PAGE) {
            m.m.write(PhysAddr(ARR0.0 + 4 * i), &u32::MAX.to_le_bytes());
        }
        m.m.write(CB0, &[0xff; CONTROL_BLOCK_SIZE as usize]);
        m.race = Box::new(|_| {});
        for p in [a, b, 0, MAX_PORTS - 1, MAX_PORTS, u32::MAX] {
            e.set_pending(1, p, &mut m, &mut irq);
            let _ = e.unmask(1, p, &mut m, &mut irq);
        }
    }

    #[test]
    fn bit_addressing_matches_linux() {
        // A word at an odd 4-byte slot is the high half of its u64.
        assert_eq!(bit_of(PhysAddr(0x1004), 31), (PhysAddr(0x1000), 1 << 63));
        assert_eq!(bit_of(PhysAddr(0x1008), 28), (PhysAddr(0x1008), 1 << 28));
        let f = Fifo::new(1, 4).unwrap();
        assert_eq!(f.word(0), None);
        let _ = vec![0u8; 0];
    }
}
