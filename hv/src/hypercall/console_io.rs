//! `console_io` (18): guest text to hv's console ([`crate::xen::console`]
//! keeps the per-domain line and the sink), after Xen's `do_console_io` and
//! `guest_console_write` (xen/drivers/char/console.c).

use memops::TableMem;
use pv_tlb::Ipa;

use super::{low32, unknown_command, Action, CallerView, Ctx, Reply};
use crate::arch::PhysMem;
use crate::guest::GuestHandle;
use crate::xen::abi::{consoleio, nr};
use crate::xen::console::CHUNK;

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

impl ConsoleIo {
    /// `do_console_io(unsigned int cmd, unsigned int count, char *buffer)`;
    /// `None` for an unknown command.
    #[must_use]
    pub fn decode(a: [u64; 5]) -> Option<Self> {
        let count = low32(a[1]);
        let buf = GuestHandle::new(a[2]);
        match low32(a[0]) {
            consoleio::WRITE => Some(ConsoleIo::Write { count, buf }),
            consoleio::READ => Some(ConsoleIo::Read { count, buf }),
            _ => None,
        }
    }
}

/// `console_io(cmd, count, buffer)`.
pub fn call<M: PhysMem + TableMem>(a: [u64; 5], ctx: &mut Ctx<'_, M>) -> Reply {
    let Some(op) = ConsoleIo::decode(a) else {
        return unknown_command(ctx.caller, nr::CONSOLE_IO, a[0]);
    };
    match ctx.caller_view() {
        Ok(mut v) => console_io(op, &mut v),
        Err(e) => Reply::ret(Err(e)),
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
pub fn console_io<M: PhysMem + TableMem>(op: ConsoleIo, ctx: &mut CallerView<'_, M>) -> Reply {
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
                    return Reply::ret(Err(e.errno()));
                }
                ctx.line.push(ctx.domid, &chunk[..n], ctx.sink);
                left -= n as u64;
                ipa = Ipa(ipa.0.wrapping_add(n as u64));
            }
            if total > now {
                return Reply {
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
            Reply::ret(Ok(0))
        }
        // hv has no console input for guests: no characters.
        ConsoleIo::Read { .. } => Reply::ret(Ok(0)),
    }
}
