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
