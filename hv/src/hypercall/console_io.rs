//! `console_io` (18): guest text to hv's console ([`crate::xen::console`]
//! keeps the per-domain line and the sink), after Xen's `do_console_io` and
//! `guest_console_write` (xen/drivers/char/console.c). `CONSOLEIO_read`
//! takes serial input from dom0's ring ([`crate::console`]).

use memops::TableMem;
use pv_tlb::Ipa;

use super::{low32, unknown_command, Action, CallerView, Ctx, Reply};
use crate::arch::PhysMem;
use crate::guest::{GuestHandle, GuestMemory};
use crate::xen::abi::{consoleio, nr};
use crate::xen::console::CHUNK;
use crate::xen::console::{ConsoleLine, ConsoleSink};
use crate::xen::Errno;

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
    let raw = ctx.me().is_ok_and(|d| crate::console::is_console_reader(d));
    match ctx.caller_view() {
        Ok(mut v) => console_io_as(op, &mut v, raw),
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
    console_io_as(op, ctx, false)
}

/// [`console_io`]; `raw`: the caller reads hv's serial input
/// ([`crate::console::is_console_reader`]), so its writes go out raw and
/// unbuffered (Xen's hardware-domain path of `guest_console_write`), after
/// any partial line it left in hv's line buffer.
pub fn console_io_as<M: PhysMem + TableMem>(
    op: ConsoleIo,
    ctx: &mut CallerView<'_, M>,
    raw: bool,
) -> Reply {
    let CallerView {
        domid,
        privileged,
        mem,
        line,
        sink,
        ..
    } = ctx;
    let mut me = Caller {
        domid: *domid,
        privileged: *privileged,
        mem,
        line,
        sink: &mut **sink,
    };
    caller_io(op, &mut me, raw)
}

/// What `console_io` needs of its caller (a [`CallerView`]'s part).
pub struct Caller<'c, 'm, M: PhysMem + TableMem> {
    /// The calling domain.
    pub domid: u16,
    /// It is privileged (may read the serial input).
    pub privileged: bool,
    /// Its memory, through its stage 1.
    pub mem: &'c mut GuestMemory<'m, M>,
    /// Its partial console line.
    pub line: &'c mut ConsoleLine,
    /// Where console lines go.
    pub sink: &'c mut dyn ConsoleSink,
}

/// [`console_io_as`] on a [`Caller`].
pub fn caller_io<M: PhysMem + TableMem>(
    op: ConsoleIo,
    ctx: &mut Caller<'_, '_, M>,
    raw: bool,
) -> Reply {
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
                if raw {
                    if !ctx.line.is_empty() {
                        ctx.line.flush(ctx.domid, ctx.sink);
                    }
                    let text = alloc::string::String::from_utf8_lossy(&chunk[..n]);
                    ctx.sink.guest_raw(ctx.domid, &text);
                } else {
                    ctx.line.push(ctx.domid, &chunk[..n], ctx.sink);
                }
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
        ConsoleIo::Read { count, buf } => {
            // Xen's xsm_console_io: reading the serial input is the
            // control domain's (XSM_PRIV); hv lets every domain write.
            if !ctx.privileged {
                crate::glog!(
                    ctx.domid,
                    Debug,
                    "d{}: console_io read: not a privileged domain (-EPERM)",
                    ctx.domid
                );
                return Reply::ret(Err(Errno::EPERM));
            }
            let r = crate::console::CONSOLE
                .lock()
                .rx
                .read_to_guest(count, buf.ipa(), ctx.mem);
            if let Err(e) = r {
                crate::glog!(
                    ctx.domid,
                    Debug,
                    "d{}: console_io read of {count} bytes at {:#x}: {e:?}",
                    ctx.domid,
                    buf.ipa().0
                );
            }
            Reply::ret(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::fake::FakeMem;
    use memops::S2Attrs;

    struct NoLines;
    impl ConsoleSink for NoLines {
        fn guest_line(&mut self, _: u16, _: &str) {}
    }

    const B: u64 = 0x4000_0000;

    /// `f` as d0 (`privileged` or not) with RAM at [`B`], its lines to `sink`.
    fn with_caller<R>(
        privileged: bool,
        sink: &mut dyn ConsoleSink,
        f: impl FnOnce(&mut Caller<'_, '_, FakeMem>) -> R,
    ) -> R {
        let (mut mem, s2) = crate::testutil::stage2_with(&[(B, 0x8010_0000, 0x1000, S2Attrs::RAM)]);
        let mut line = ConsoleLine::default();
        let mut gm = GuestMemory::new(&s2, &mut mem);
        f(&mut Caller {
            domid: 0,
            privileged,
            mem: &mut gm,
            line: &mut line,
            sink,
        })
    }

    fn read(privileged: bool, count: u32, at: u64) -> (u64, [u8; 8]) {
        with_caller(privileged, &mut NoLines, |v| {
            let op = ConsoleIo::decode([u64::from(consoleio::READ), u64::from(count), at, 0, 0])
                .unwrap();
            let r = caller_io(op, v, false).ret;
            let mut b = [0u8; 8];
            let _ = v.mem.copy_from_guest(Ipa(B), &mut b);
            (r, b)
        })
    }

    #[derive(Default)]
    struct Rec(alloc::vec::Vec<alloc::string::String>);
    impl ConsoleSink for Rec {
        fn guest_line(&mut self, d: u16, l: &str) {
            self.0.push(std::format!("line d{d} {l}"));
        }
        fn guest_raw(&mut self, d: u16, t: &str) {
            self.0.push(std::format!("raw d{d} {t}"));
        }
    }

    /// The serial-input reader's writes go out raw (prompt without newline,
    /// escapes kept), after the partial line it had buffered before.
    #[test]
    fn console_reader_writes_raw_after_its_buffered_line() {
        let mut sink = Rec::default();
        with_caller(true, &mut sink, |v| {
            v.mem
                .copy_to_guest(Ipa(B), b"early\n[ 1]\x1b[6n/ # ")
                .unwrap();
            let w = |n: u32, at: u64| ConsoleIo::Write {
                count: n,
                buf: GuestHandle::new(at),
            };
            assert_eq!(caller_io(w(10, B), v, false).ret, 0);
            assert_eq!(caller_io(w(8, B + 10), v, true).ret, 0);
        });
        assert_eq!(
            sink.0,
            ["line d0 early", "line d0 [ 1]", "raw d0 \x1b[6n/ # "]
        );
    }

    /// The only test that touches hv's global console state.
    #[test]
    fn consoleio_read_is_the_control_domains_and_takes_dom0s_ring() {
        {
            let mut c = crate::console::CONSOLE.lock();
            for &b in b"typed" {
                assert!(c.rx.push(b));
            }
        }
        assert_eq!(read(false, 8, B).0, Errno::EPERM.to_x0(), "domU: -EPERM");
        assert_eq!(read(true, 8, B + 0x1000).0, Errno::EFAULT.to_x0());
        assert_eq!(read(true, 0x8000_0000, B).0, Errno::E2BIG.to_x0());
        assert_eq!(read(true, 0, B).0, 0);
        let (n, b) = read(true, 8, B);
        assert_eq!(n, 5);
        assert_eq!(&b[..5], b"typed");
        assert_eq!(read(true, 8, B).0, 0, "consumed");
    }
}
