//! hv's `log` backend and console.
//!
//! Every line goes out as `hv: <msg>`; warnings and errors as `hv: WARN: <msg>`
//! and `hv: ERROR: <msg>`. The console sink (the PL011 on the target) is
//! registered once at boot with [`init`]; one `spin::Mutex` serialises whole
//! lines between CPUs. [`print`] writes raw text (guest console output) under
//! the same lock.

use core::fmt::{self, Write};
use log::{Level, LevelFilter, Log, Metadata, Record};
use spin::Mutex;

/// Where console bytes go (and, for debug keys, come from).
pub trait ConsoleSink: Sync {
    /// Write `bytes` (the sink turns `\n` into what the device needs).
    fn write_bytes(&self, bytes: &[u8]);
    /// One received byte, if the device has one (polled; never blocks).
    fn read_byte(&self) -> Option<u8> {
        None
    }
}

static CONSOLE: Mutex<Option<&'static dyn ConsoleSink>> = Mutex::new(None);
static LOGGER: Logger = Logger;

struct Logger;

/// The console, and whether what goes there is also kept in hv's console
/// ring ([`crate::conring`], read by `XEN_SYSCTL_readconsole` / `xl dmesg`).
struct SinkWriter<'s>(&'s dyn ConsoleSink, bool);

impl Write for SinkWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.1 {
            crate::conring::puts(s.as_bytes());
        }
        self.0.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Format one log line (with its trailing newline) into `w`.
///
/// # Errors
/// Whatever `w` returns.
pub fn write_line(w: &mut impl Write, level: Level, args: fmt::Arguments<'_>) -> fmt::Result {
    let tag = match level {
        Level::Error => "ERROR: ",
        Level::Warn => "WARN: ",
        _ => "",
    };
    w.write_fmt(format_args!("hv: {tag}{args}\n"))
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let guard = CONSOLE.lock();
        if let Some(sink) = *guard {
            if take_raw_midline() {
                sink.write_bytes(b"\n"); // after dom0's raw partial line (a prompt)
            }
            let _ = write_line(&mut SinkWriter(sink, true), record.level(), *record.args());
        }
    }

    fn flush(&self) {}
}

/// The last raw guest output (dom0's console, `xen::console::LogConsole::guest_raw`)
/// left the console's line open (a prompt).
static RAW_MIDLINE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Raw guest output just ended mid-line (`true`) or at a line end.
pub fn set_raw_midline(open: bool) {
    RAW_MIDLINE.store(open, core::sync::atomic::Ordering::Relaxed);
}

/// True (and reset) if raw guest output left the console mid-line: hv's
/// console lines print a newline first so they start a line of their own.
pub fn take_raw_midline() -> bool {
    RAW_MIDLINE.swap(false, core::sync::atomic::Ordering::Relaxed)
}

/// Register `sink` as the console and install the logger at `level`.
/// Called once by the boot CPU; later calls only replace the sink and level.
pub fn init(sink: &'static dyn ConsoleSink, level: LevelFilter) {
    *CONSOLE.lock() = Some(sink);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Change the maximum log level.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// Write raw text to the console (no prefix), atomically with respect to
/// log lines, and keep it in the console ring.
pub fn print(args: fmt::Arguments<'_>) {
    print_to(args, true);
}

/// [`print`] without the console ring: the hardware domain's own output, as
/// Xen's `guest_console_write` sends dom0's text to the serial only (dom0's
/// `xl dmesg` would otherwise read back, print and read again what it prints).
pub fn print_serial_only(args: fmt::Arguments<'_>) {
    print_to(args, false);
}

fn print_to(args: fmt::Arguments<'_>, ring: bool) {
    let guard = CONSOLE.lock();
    if let Some(sink) = *guard {
        let _ = SinkWriter(sink, ring).write_fmt(args);
    }
}

/// A byte typed on the console, if any (for debug keys; polled, never
/// blocks, and gives up if another CPU is printing).
#[must_use]
pub fn poll_input() -> Option<u8> {
    let guard = CONSOLE.try_lock()?;
    guard.and_then(|sink| sink.read_byte())
}

/// Write to the console from a panic or fault handler: like [`print`], but
/// gives up after a bounded spin instead of deadlocking on a lock whose holder died.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    for _ in 0..1_000_000 {
        if let Some(guard) = CONSOLE.try_lock() {
            if let Some(sink) = *guard {
                let _ = SinkWriter(sink, true).write_fmt(args);
            }
            return;
        }
        core::hint::spin_loop();
    }
    // The lock stayed taken (its holder died mid-line): the report is lost
    // rather than racing another CPU's writes.
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::sync::Mutex as StdMutex;
    use std::vec::Vec;

    fn line(level: Level, args: fmt::Arguments<'_>) -> String {
        let mut s = String::new();
        write_line(&mut s, level, args).unwrap();
        s
    }

    #[test]
    fn line_format() {
        assert_eq!(
            line(Level::Info, format_args!("CPU{} online", 1)),
            "hv: CPU1 online\n"
        );
        assert_eq!(line(Level::Debug, format_args!("x")), "hv: x\n");
        assert_eq!(line(Level::Warn, format_args!("odd")), "hv: WARN: odd\n");
        assert_eq!(line(Level::Error, format_args!("bad")), "hv: ERROR: bad\n");
    }

    struct Capture(StdMutex<Vec<u8>>);
    impl ConsoleSink for Capture {
        fn write_bytes(&self, bytes: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(bytes);
        }
        fn read_byte(&self) -> Option<u8> {
            // Echo-free scripted input: the last byte written, once.
            self.0.lock().unwrap().pop().filter(|b| *b == b'T')
        }
    }

    #[test]
    fn logger_filters_by_level_and_prints_raw() {
        let cap: &'static Capture =
            std::boxed::Box::leak(std::boxed::Box::new(Capture(StdMutex::new(Vec::new()))));
        init(cap, LevelFilter::Warn);
        log::info!("hidden");
        log::warn!("shown {}", 1);
        print(format_args!("(d1) hello\n"));
        set_level(LevelFilter::Debug);
        log::debug!("now shown");
        let out = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out, "hv: WARN: shown 1\n(d1) hello\nhv: now shown\n");
        assert_eq!(poll_input(), None, "last byte is a newline, not input");
        print(format_args!("T"));
        assert_eq!(poll_input(), Some(b'T'));
        assert_eq!(poll_input(), None);
    }
}
