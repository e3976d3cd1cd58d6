//! `console_io`: guest text to hv's console, one `(d<N>) <text>` line at a time.
//!
//! As Xen's `guest_console_write` (xen/drivers/char/console.c), the buffer is
//! copied in chunks of at most 128 bytes through the checked accessor and
//! kept per domain until a newline (or a full line). Unlike Xen, which strips
//! non-printable bytes, hv escapes them as `\xNN` so a log shows what came.

use memops::TableMem;

use super::abi::consoleio;
use super::{Action, ConsoleIo, HypercallCtx, Outcome};
use crate::arch::PhysMem;
use pv_tlb::Ipa;

/// Longest line hv prints for a guest before breaking it (long enough for
/// the machine-parsable report lines of the test payloads).
pub const LINE_MAX: usize = 1024;
/// Bytes copied from the guest per step.
const CHUNK: usize = 128;

/// Where complete guest console lines go.
pub trait ConsoleSink {
    /// Print one line of domain `domid` (without the newline); hv's console
    /// shows it as `(d<domid>) <line>`.
    fn guest_line(&mut self, domid: u16, line: &str);

    /// Print one of hv's own status lines (`hv: <text>` on the console);
    /// the default sends it to the `log` backend at info level.
    fn hv_line(&mut self, args: core::fmt::Arguments<'_>) {
        log::info!("{args}");
    }
}

/// The console sink hv uses on the target: guest lines go out raw through
/// the logger's console (`(d<N>) <text>`), hv's lines through `log`.
pub struct LogConsole;

impl ConsoleSink for LogConsole {
    fn guest_line(&mut self, domid: u16, line: &str) {
        crate::logger::print(format_args!("(d{domid}) {line}\n"));
    }
}

/// A domain's partial console line.
pub struct ConsoleLine {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Default for ConsoleLine {
    fn default() -> Self {
        Self {
            buf: [0; LINE_MAX],
            len: 0,
        }
    }
}

impl ConsoleLine {
    /// Append guest bytes, handing each complete line to `sink`.
    pub fn push(&mut self, domid: u16, bytes: &[u8], sink: &mut dyn ConsoleSink) {
        for &b in bytes {
            match b {
                b'\n' => self.flush(domid, sink),
                b'\r' => {}
                0x20..=0x7e => self.put(domid, &[b], sink),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let esc = [
                        b'\\',
                        b'x',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 0xf)],
                    ];
                    self.put(domid, &esc, sink);
                }
            }
        }
    }

    fn put(&mut self, domid: u16, s: &[u8], sink: &mut dyn ConsoleSink) {
        if self.len + s.len() > LINE_MAX {
            self.flush(domid, sink);
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    /// Hand the partial line (if any) to `sink`.
    pub fn flush(&mut self, domid: u16, sink: &mut dyn ConsoleSink) {
        // Only printable ASCII is ever stored, so this is valid UTF-8.
        let text = core::str::from_utf8(&self.buf[..self.len]).unwrap_or("");
        sink.guest_line(domid, text);
        self.len = 0;
    }

    /// True if no partial line is buffered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Bytes of one `CONSOLEIO_write` handled per invocation: the rest is a
/// continuation (x1 = bytes left, x2 = buffer advanced), as Xen's
/// `guest_console_write` does when `hypercall_preempt_check()` fires. One
/// chunk: a 1 MiB write used to hold hv's lock for seconds (issue 9 finding 7).
pub const WRITE_BUDGET: u64 = CHUNK as u64;

/// Handle `console_io`.
///
/// A write copies at most [`WRITE_BUDGET`] bytes, then returns a
/// continuation for the rest ([`Action::Continuation`]: `CONSOLEIO_write`,
/// count left, buffer advanced). `-EFAULT` if the buffer is not readable
/// guest memory (whatever was copied before the fault has been printed, as in
/// Xen).
pub fn console_io<M: PhysMem + TableMem>(op: ConsoleIo, ctx: &mut HypercallCtx<'_, M>) -> Outcome {
    match op {
        ConsoleIo::Write { count, buf } => {
            let total = u64::from(count);
            let now = total.min(WRITE_BUDGET);
            let mut left = now;
            let mut ipa = buf.ipa();
            let mut chunk = [0u8; CHUNK];
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                if let Err(e) = ctx.mem.copy_from_guest(ipa, &mut chunk[..n]) {
                    crate::glog!(ctx.domid, Debug, "d{}: console_io write: {e}", ctx.domid);
                    return Outcome::ret(Err(e.errno()));
                }
                ctx.line.push(ctx.domid, &chunk[..n], ctx.sink);
                left -= n as u64;
                ipa = Ipa(ipa.0.wrapping_add(n as u64));
            }
            if total > now {
                return Outcome {
                    ret: 0,
                    action: Action::Continuation {
                        args: [
                            u64::from(consoleio::WRITE),
                            total - now,
                            buf.ipa().0.wrapping_add(now),
                        ],
                        block: false,
                    },
                };
            }
            Outcome::ret(Ok(0))
        }
        // hv has no console input for guests: no characters.
        ConsoleIo::Read { .. } => Outcome::ret(Ok(0)),
    }
}
