//! hv's serial console input: who gets the bytes typed on hv's UART.
//!
//! After Xen 4.20's `xen/drivers/char/console.c` (`serial_rx`,
//! `__serial_rx`, `console_switch_input`, `serial_rx_ring`, `do_console_io`
//! `CONSOLEIO_read`) and `xen/common/keyhandler.c` (debug keys):
//!
//! - **Input focus** ([`Focus`]): dom0 (domain 0), each other domain with a
//!   PV console ring hv serves (`xencons_interface`, dom0less and module
//!   domains; in domid order), or hv itself. Three `CTRL-a` in a row
//!   ([`SWITCH_CODE`]) move the focus on: dom0 -> each domU -> hv -> dom0 ...
//!   (Xen's `console_switch_input` with `domid_find_with_input_allowed`),
//!   printing Xen's line with hv's prefix:
//!   `hv: *** Serial input to DOM0 (type 'CTRL-a' three times to switch input)`.
//!   Fewer than three `CTRL-a` followed by another byte are handed on to the
//!   focus first, as Xen's `serial_rx` does. The focus starts at dom0 if it
//!   exists, else the first domU, else hv ([`Console::endboot`], Xen's
//!   `console_endboot`).
//! - **dom0** gets its bytes through Xen's 128-byte `serial_rx_ring`
//!   ([`SerialRx`]): read with `CONSOLEIO_read` (`hypercall/console_io.rs`,
//!   [`SerialRx::read_to_guest`]), announced with `VIRQ_CONSOLE` on the port
//!   dom0 bound it to (Linux's `hvc_xen.c` for the initial domain binds it on
//!   vCPU 0). A full ring drops the byte (counted) and still raises the VIRQ
//!   ("prevents receive path from getting stuck", Xen's comment).
//! - **A domU** gets its bytes in its console ring's `in[]`
//!   ([`crate::xen::console_ring::feed`]), then its console event channel is
//!   notified, as `xenconsoled` does for a PV console; what does not fit is
//!   dropped and counted (hv never blocks on a guest).
//! - **hv** takes them as debug keys ([`keys`]).
//! - **Output of the reader.** A privileged domain bound to `VIRQ_CONSOLE`
//!   ([`is_console_reader`]: Linux's hvc0 as the initial domain) has its
//!   `console_io` writes printed raw and unbuffered, as Xen's
//!   `guest_console_write` does for the hardware domain (prompts, echo and
//!   terminal escapes must reach the terminal); hv's own lines start a fresh
//!   line after such output. Every other domain keeps `(d<N>) <line>`.
//! - **Fallback.** A UART node without a GIC SPI (or no GICv3) gets no
//!   input: hv warns `console: the UART's DTB node has no GIC SPI` and runs
//!   on; output is unaffected.
//!
//! The UART's receive interrupt (an SPI found in the DTB, [`uart_spi`]) is
//! routed to hv's boot CPU; the run loop calls [`serial_irq`] when it is
//! acknowledged. Lock order: the world (`shared`) before [`CONSOLE`]; the
//! logger's console lock is a leaf.

pub mod keys;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use memops::TableMem;
use pv_tlb::Ipa;

use crate::arch::PhysMem;
use crate::domain::{DomId, Domain};
use crate::guest::GuestMemory;
use crate::xen::evtchn::{HvPort, RecordingIrqSink};
use crate::xen::Errno;

/// `CTRL-a`: Xen's default `conswitch=a` (`switch_code = 'a' - 'a' + 1`).
pub const SWITCH_CODE: u8 = 0x01;
/// `SERIAL_RX_SIZE` of Xen's console.c: dom0's input ring.
pub const SERIAL_RX_SIZE: usize = 128;
/// `VIRQ_CONSOLE` (xen/include/public/xen.h): "(DOM0) Bytes received on emergency console".
pub const VIRQ_CONSOLE: u32 = 2;

/// Where typed bytes go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Focus {
    /// hv's debug keys.
    Hv,
    /// A domain: dom0 through `CONSOLEIO_read`, others through their ring.
    Dom(DomId),
}

impl core::fmt::Display for Focus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Focus::Hv => write!(f, "hv"),
            Focus::Dom(d) => write!(f, "DOM{d}"),
        }
    }
}

/// What one received byte means ([`Switch::rx`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rx {
    /// Give this byte to the focus.
    Byte(u8),
    /// Third `CTRL-a` in a row: move the focus on.
    Switch,
}

/// Xen's `serial_rx`: counts `CTRL-a`s; three in a row switch, fewer are
/// given to the focus before the next byte.
#[derive(Clone, Copy, Default, Debug)]
pub struct Switch {
    count: u8,
}

impl Switch {
    /// Feed one byte; `out` gets what it means, in order.
    pub fn rx(&mut self, c: u8, out: &mut impl FnMut(Rx)) {
        if c == SWITCH_CODE {
            self.count += 1;
            if self.count == 3 {
                self.count = 0;
                out(Rx::Switch);
            }
            return;
        }
        for _ in 0..self.count {
            out(Rx::Byte(SWITCH_CODE));
        }
        self.count = 0;
        out(Rx::Byte(c));
    }
}

/// The domains that may take console input, in the switch's order: dom0
/// (domain 0) first, then every other domain with a console ring hv serves,
/// by domid; domains that are ending are skipped.
#[must_use]
pub fn candidates(domains: &[Domain]) -> Vec<DomId> {
    let mut ids: Vec<DomId> = domains
        .iter()
        .filter(|d| d.ending.is_none() && (d.id == 0 || d.xen.console_ring.is_some()))
        .map(|d| d.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// The focus after `now` (Xen's `console_switch_input`): hv -> the first
/// candidate; a domain -> the next candidate with a larger domid, else hv.
#[must_use]
pub fn next_focus(now: Focus, candidates: &[DomId]) -> Focus {
    let next = match now {
        Focus::Hv => candidates.first().copied(),
        Focus::Dom(d) => candidates.iter().copied().find(|&c| c > d),
    };
    next.map_or(Focus::Hv, Focus::Dom)
}

/// Xen's `serial_rx_ring`: bytes for dom0 until it reads them.
pub struct SerialRx {
    buf: [u8; SERIAL_RX_SIZE],
    cons: usize,
    prod: usize,
}

impl Default for SerialRx {
    fn default() -> Self {
        Self {
            buf: [0; SERIAL_RX_SIZE],
            cons: 0,
            prod: 0,
        }
    }
}

impl SerialRx {
    /// Bytes waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        self.prod.wrapping_sub(self.cons)
    }

    /// Nothing waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queue `c`; false (dropped) if the ring is full.
    pub fn push(&mut self, c: u8) -> bool {
        if self.len() == SERIAL_RX_SIZE {
            return false;
        }
        self.buf[self.prod % SERIAL_RX_SIZE] = c;
        self.prod = self.prod.wrapping_add(1);
        true
    }

    /// `CONSOLEIO_read`: copy up to `count` waiting bytes to the guest at
    /// `buf` (one or two pieces, as the ring wraps) and consume them;
    /// returns the number copied. Xen's rules: a count that is negative as a
    /// C `int` is `-E2BIG`; a piece the guest cannot take is `-EFAULT` (the
    /// pieces copied before it stay consumed, that piece and the rest stay).
    ///
    /// # Errors
    /// `-E2BIG`, `-EFAULT` as above.
    pub fn read_to_guest<M: PhysMem + TableMem>(
        &mut self,
        count: u32,
        buf: Ipa,
        mem: &mut GuestMemory<'_, M>,
    ) -> Result<u64, Errno> {
        if count > i32::MAX as u32 {
            return Err(Errno::E2BIG);
        }
        let count = count as usize;
        let mut done = 0usize;
        while !self.is_empty() && done < count {
            let idx = self.cons % SERIAL_RX_SIZE;
            let len = self.len().min(SERIAL_RX_SIZE - idx).min(count - done);
            let at = Ipa(buf.0.wrapping_add(done as u64));
            mem.copy_to_guest(at, &self.buf[idx..idx + len])
                .map_err(|e| e.errno())?;
            done += len;
            self.cons = self.cons.wrapping_add(len);
        }
        Ok(done as u64)
    }
}

/// Console input counters (printed by the `p` debug key).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct InputStats {
    /// Bytes received from the UART.
    pub rx_bytes: u64,
    /// Bytes given to dom0's ring.
    pub to_dom0: u64,
    /// Bytes given to domUs' console rings.
    pub to_rings: u64,
    /// Bytes dropped: dom0's ring full.
    pub dropped_dom0: u64,
    /// Bytes dropped: a domU's ring full (or its ring gone).
    pub dropped_ring: u64,
    /// Bytes dropped: the focus domain is gone.
    pub dropped_gone: u64,
    /// Debug keys handled.
    pub keys: u64,
    /// Focus switches.
    pub switches: u64,
}

/// hv's console input state.
#[derive(Default)]
pub struct Console {
    /// The `CTRL-a` counter.
    pub switch: Switch,
    /// The focus; `None` until [`Console::endboot`] or the first byte.
    pub focus: Option<Focus>,
    /// dom0's ring.
    pub rx: SerialRx,
    /// Counters.
    pub stats: InputStats,
}

/// hv's one console (the UART); the world's lock is taken before it.
pub static CONSOLE: spin::Mutex<Console> = spin::Mutex::new(Console {
    switch: Switch { count: 0 },
    focus: None,
    rx: SerialRx {
        buf: [0; SERIAL_RX_SIZE],
        cons: 0,
        prod: 0,
    },
    stats: InputStats {
        rx_bytes: 0,
        to_dom0: 0,
        to_rings: 0,
        dropped_dom0: 0,
        dropped_ring: 0,
        dropped_gone: 0,
        keys: 0,
        switches: 0,
    },
});

/// Print Xen's switch line for `focus` to `out`.
fn announce(focus: Focus, out: &mut dyn core::fmt::Write) {
    let _ = writeln!(
        out,
        "hv: *** Serial input to {focus} (type 'CTRL-{}' three times to switch input)",
        char::from(SWITCH_CODE - 1 + b'a')
    );
}

impl Console {
    /// Boot is over (Xen's `console_endboot`): the focus goes to dom0 if it
    /// exists, else the first domU with a console ring, else hv; announced.
    pub fn endboot(&mut self, domains: &[Domain], out: &mut dyn core::fmt::Write) {
        let f = candidates(domains)
            .first()
            .map_or(Focus::Hv, |&d| Focus::Dom(d));
        self.focus = Some(f);
        announce(f, out);
    }

    /// Handle bytes received on the UART: switch, give them to the focus,
    /// or run debug keys. Event upcalls to inject are added to `upcalls`
    /// (the caller delivers them, [`crate::world::deliver_upcalls`]).
    pub fn input<M: PhysMem + TableMem>(
        &mut self,
        bytes: &[u8],
        w: &mut Input<'_, M>,
        upcalls: &mut RecordingIrqSink,
    ) {
        if self.focus.is_none() {
            self.endboot(w.domains, w.out);
        }
        self.stats.rx_bytes += bytes.len() as u64;
        let mut events: Vec<Rx> = Vec::new();
        for &c in bytes {
            self.switch.rx(c, &mut |e| events.push(e));
        }
        // Consecutive bytes for one domain go in one piece (one notification).
        let mut pending: Vec<u8> = Vec::new();
        for e in events {
            let focus = self.focus.unwrap_or(Focus::Hv);
            match (e, focus) {
                (Rx::Byte(c), Focus::Dom(_)) => pending.push(c),
                (Rx::Byte(c), Focus::Hv) => {
                    self.stats.keys += 1;
                    keys::handle(c, self, w);
                }
                (Rx::Switch, _) => {
                    self.deliver(focus, &pending, w, upcalls);
                    pending.clear();
                    let next = next_focus(focus, &candidates(w.domains));
                    self.focus = Some(next);
                    self.stats.switches += 1;
                    announce(next, w.out);
                }
            }
        }
        if let Some(f) = self.focus {
            self.deliver(f, &pending, w, upcalls);
        }
    }

    /// Give `bytes` to domain focus `f` (nothing for hv or no bytes).
    fn deliver<M: PhysMem + TableMem>(
        &mut self,
        f: Focus,
        bytes: &[u8],
        w: &mut Input<'_, M>,
        upcalls: &mut RecordingIrqSink,
    ) {
        let Focus::Dom(id) = f else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        let Some(d) = w
            .domains
            .iter_mut()
            .find(|d| d.id == id && d.ending.is_none())
        else {
            self.stats.dropped_gone += bytes.len() as u64;
            return;
        };
        if id == 0 {
            // Xen's __serial_rx for the hardware domain.
            for &c in bytes {
                if self.rx.push(c) {
                    self.stats.to_dom0 += 1;
                } else {
                    self.stats.dropped_dom0 += 1;
                }
            }
            if let Some(port) = virq_console_port(d) {
                d.xen.evtchn.set_pending(id, port, w.mem, upcalls);
            }
            return;
        }
        let (Some(ring), Some(port)) = (d.xen.console_ring, d.xen.evtchn.hv_port(HvPort::Console))
        else {
            self.stats.dropped_ring += bytes.len() as u64;
            return;
        };
        let n = crate::xen::console_ring::feed(ring, w.mem, bytes);
        self.stats.to_rings += n as u64;
        self.stats.dropped_ring += (bytes.len() - n) as u64;
        // As xenconsoled: notify even when nothing fitted, so a guest that
        // missed an earlier notification drains its ring.
        d.xen.evtchn.set_pending(id, port, w.mem, upcalls);
    }
}

/// The port `VIRQ_CONSOLE` is bound to in `d` (a global VIRQ: bound on
/// vCPU 0, as Linux's `hvc_xen.c` does for the initial domain; after helper
/// privif's change `virq_port` finds a global VIRQ wherever it was moved).
#[must_use]
pub fn virq_console_port(d: &Domain) -> Option<u32> {
    d.xen.evtchn.virq_port(VIRQ_CONSOLE, 0)
}

/// `d` reads hv's serial input: privileged and bound to `VIRQ_CONSOLE`
/// (Linux's `hvc_xen.c` as the initial domain). Its `console_io` output goes
/// out raw and unbuffered, as Xen's `guest_console_write` does for the
/// hardware domain ("Use direct console output as it could be
/// interactive"): prompts, echo and terminal escapes reach the terminal.
/// Every other domain keeps hv's `(d<N>) ` lines.
#[must_use]
pub fn is_console_reader(d: &Domain) -> bool {
    d.privileged && virq_console_port(d).is_some()
}

/// What console input may touch: the world's domains and memory, the
/// scheduler (for the run-queue key), where to print.
pub struct Input<'a, M> {
    /// Host memory (console rings, shared info).
    pub mem: &'a mut M,
    /// The domains.
    pub domains: &'a mut [Domain],
    /// The world, read-only parts the debug keys print.
    pub info: keys::WorldInfo<'a>,
    /// The scheduler, if the caller can lend it (lock order: after the world).
    pub runq: Option<&'a spin::Mutex<crate::sched::RunQueues>>,
    /// Where hv's lines go.
    pub out: &'a mut dyn core::fmt::Write,
}

/// The UART's receive interrupt (INTID; 0 = none).
static UART_IRQ: AtomicU32 = AtomicU32::new(0);

/// Record the UART's receive interrupt (the arch layer routed it to hv).
pub fn set_uart_irq(intid: u32) {
    UART_IRQ.store(intid, Ordering::Relaxed);
}

/// Is `intid` the UART's receive interrupt?
#[must_use]
pub fn is_uart_irq(intid: u32) -> bool {
    intid >= 32 && UART_IRQ.load(Ordering::Relaxed) == intid
}

/// Writes hv's console lines through the logger (raw, whatever the log level).
pub struct LogOut;

impl core::fmt::Write for LogOut {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // hv's line starts on a line of its own after a raw partial line
        // (a shell prompt of dom0's).
        if crate::logger::take_raw_midline() {
            crate::logger::print(format_args!("\n"));
        }
        crate::logger::print(format_args!("{s}"));
        Ok(())
    }
}

/// Most bytes taken from the UART per interrupt (the rest re-raises it).
pub const RX_BATCH: usize = 256;

/// The UART's receive interrupt arrived: read what it holds (through the
/// logger's console, [`crate::logger::poll_input`]) and hand it to
/// [`CONSOLE`], then deliver the event upcalls it raised.
pub fn serial_irq<M: PhysMem + TableMem>(
    world: &mut crate::world::World<M>,
    runq: Option<&spin::Mutex<crate::sched::RunQueues>>,
) {
    let mut bytes = [0u8; RX_BATCH];
    let mut n = 0;
    while n < RX_BATCH {
        match crate::logger::poll_input() {
            Some(b) => {
                bytes[n] = b;
                n += 1;
            }
            None => break,
        }
    }
    if n == 0 {
        return;
    }
    let mut up = RecordingIrqSink::default();
    {
        let crate::world::World {
            mem,
            domains,
            pool,
            flush,
            vmids,
            heap_free,
            ..
        } = world;
        let info = keys::WorldInfo {
            pool,
            policy: flush.policy(),
            vmids_in_use: vmids.in_use(),
            heap_free: (*heap_free)(),
            deferred: flush.stats(),
        };
        let mut out = LogOut;
        let mut input = Input {
            mem,
            domains,
            info,
            runq,
            out: &mut out,
        };
        CONSOLE.lock().input(&bytes[..n], &mut input, &mut up);
    }
    crate::world::deliver_upcalls(&world.domains, &up.upcalls);
}

/// Boot is over: pick and announce the first focus ([`Console::endboot`]).
pub fn endboot(domains: &[Domain]) {
    CONSOLE.lock().endboot(domains, &mut LogOut);
}

/// The GIC SPI of the `arm,pl011` node whose first `reg` starts at `base`,
/// as `(INTID, level-triggered)`: its `interrupts` property read as GIC
/// 3-cell specifiers (type 0 = SPI, INTID = 32 + number; flags 4/8 level).
/// `None` if the node has none, or it is not an SPI.
#[must_use]
pub fn uart_spi(dtb: &[u8], base: u64) -> Option<(u32, bool)> {
    let fdt = fdt::Fdt::new(dtb).ok()?;
    let node = fdt.all_nodes().find(|n| {
        n.compatible()
            .is_some_and(|c| c.all().any(|s| s == "arm,pl011"))
            && n.reg()
                .and_then(|mut r| r.next())
                .is_some_and(|r| r.starting_address as u64 == base)
    })?;
    let v = node.property("interrupts")?.value;
    let c = v.get(..12)?;
    let cell = |i: usize| u32::from_be_bytes([c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3]]);
    if v.len() % 12 != 0 || cell(0) != 0 {
        return None;
    }
    let intid = cell(1).checked_add(32).filter(|&i| i < 1020)?;
    Some((intid, cell(2) & 0xc != 0))
}

#[cfg(test)]
mod tests;
