//! The PL011 UART: hv's console. Transmit is polled; receive raises the
//! UART's SPI (routed to hv's boot CPU by [`start_input`]), whose handler
//! reads the FIFO through [`ConsoleSink::read_byte`] ([`crate::console`]).

use crate::logger::ConsoleSink;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

register_bitfields![u32,
    /// Flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// Control register.
    CR [
        /// UART enable.
        UARTEN OFFSET(0) NUMBITS(1) [],
        /// Transmit enable.
        TXE OFFSET(8) NUMBITS(1) [],
        /// Receive enable.
        RXE OFFSET(9) NUMBITS(1) []
    ]
];

register_structs! {
    /// PL011 registers (ARM PrimeCell UART TRM, DDI 0183).
    pub Pl011Regs {
        (0x00 => dr: ReadWrite<u32>),
        (0x04 => rsr: ReadWrite<u32>),
        (0x08 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _reserved1),
        (0x24 => ibrd: ReadWrite<u32>),
        (0x28 => fbrd: ReadWrite<u32>),
        (0x2c => lcr_h: ReadWrite<u32>),
        (0x30 => cr: ReadWrite<u32, CR::Register>),
        (0x34 => ifls: ReadWrite<u32>),
        (0x38 => imsc: ReadWrite<u32>),
        (0x3c => _reserved2),
        (0x44 => icr: WriteOnly<u32>),
        (0x48 => @END),
    }
}

/// `RXIM`/`RXIC` and `RTIM`/`RTIC` in `UARTIMSC` / `UARTICR`.
const IRQ_RX: u32 = 1 << 4;
const IRQ_RT: u32 = 1 << 6;

/// A PL011 whose registers are mapped (identity) as Device memory.
pub struct Pl011 {
    regs: &'static Pl011Regs,
}

impl Pl011 {
    /// The PL011 at `base`. hv keeps the firmware's baud-rate setting.
    ///
    /// # Safety
    /// `base` must be a PL011's register block, mapped as Device memory (or
    /// the MMU off), and nothing else may program it concurrently except
    /// through this type's polled transmit.
    #[must_use]
    pub unsafe fn new(base: u64) -> Self {
        // SAFETY: per the contract `base` is a live, suitably aligned PL011
        // register block that stays mapped for hv's lifetime.
        let regs = unsafe { &*(base as *const Pl011Regs) };
        Self { regs }
    }

    /// Raise the interrupt when a byte arrives: receive (`RXIM`, bit 4) and
    /// receive timeout (`RTIM`, bit 6) in `UARTIMSC` (PL011 TRM 3.3.10);
    /// the rest stay masked. A receive interrupt already raised stays (bytes
    /// typed during boot are read at once; QEMU would not raise it again).
    pub fn enable_rx_interrupt(&self) {
        self.regs.icr.set(IRQ_RT);
        self.regs.imsc.set(IRQ_RX | IRQ_RT);
    }

    fn put(&self, b: u8) {
        while self.regs.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs.dr.set(u32::from(b));
    }
}

impl ConsoleSink for Pl011 {
    fn write_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
    }

    fn read_byte(&self) -> Option<u8> {
        if self.regs.fr.is_set(FR::RXFE) {
            // Drained. The receive interrupt deasserts by itself once the
            // FIFO is below its trigger level (PL011 TRM, UARTRXINTR); it is never
            // cleared through UARTICR here, as Linux's pl011_int never does:
            // a byte arriving between this RXFE read and an ICR write would
            // lose its interrupt, and QEMU's model raises RX only when the
            // FIFO fills to the trigger level, so every later byte would
            // too (serial input dead until reset: seen as the console test's
            // flake). The receive timeout is cleared (it would not re-raise
            // RX and is idle once the FIFO is empty).
            self.regs.icr.set(IRQ_RT);
            None
        } else {
            Some((self.regs.dr.get() & 0xff) as u8)
        }
    }
}

// SAFETY: the register block is MMIO; concurrent `put`s from several CPUs are
// serialised by the logger's lock (and the early no-VHE path runs on one CPU).
unsafe impl Sync for Pl011 {}
// SAFETY: a `Pl011` is only an address of MMIO registers.
unsafe impl Send for Pl011 {}

/// Serial input (issue 11): route the UART's receive SPI (from its DTB node,
/// [`crate::console::uart_spi`]) to hv on this CPU and unmask the UART's
/// receive interrupts. Boot CPU, after the GIC is set up. Without an SPI (no
/// `interrupts` in the node, or no GICv3) there is no serial input: hv says
/// so and runs on (output is unaffected).
pub fn start_input(info: &crate::bootinfo::BootInfo<'_>, dtb: &[u8], uart: Option<&Pl011>) {
    let (Some(u), Some(r)) = (uart, info.uart) else {
        return;
    };
    let Some((intid, level)) = crate::console::uart_spi(dtb, r.base.raw()) else {
        log::warn!("console: the UART's DTB node has no GIC SPI: no serial input");
        return;
    };
    if info.gic.is_none() {
        log::warn!("console: no GICv3: no serial input");
        return;
    }
    super::gic::enable_spi_to_self(info, intid, level);
    crate::console::set_uart_irq(intid);
    u.enable_rx_interrupt();
    log::info!(
        "console: serial input on INTID {intid} ({}-triggered), to CPU0",
        if level { "level" } else { "edge" }
    );
}
