//! The PL011 UART (console only: transmit, polled).

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
