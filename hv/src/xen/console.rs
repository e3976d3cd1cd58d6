//! `console_io`: guest text to hv's console, one `(d<N>) <text>` line at a time.
//!
//! As Xen's `guest_console_write` (xen/drivers/char/console.c), the buffer is
//! copied in chunks of at most 128 bytes through the checked accessor and
//! kept per domain until a newline (or a full line). Unlike Xen, which strips
//! non-printable bytes, hv escapes them as `\xNN` so a log shows what came.

/// Longest line hv prints for a guest before breaking it (long enough for
/// the machine-parsable report lines of the test payloads).
pub const LINE_MAX: usize = 1024;
/// Bytes copied from the guest per step.
pub const CHUNK: usize = 128;

/// Where complete guest console lines go.
pub trait ConsoleSink {
    /// Print one line of domain `domid` (without the newline); hv's console
    /// shows it as `(d<domid>) <line>`.
    fn guest_line(&mut self, domid: u16, line: &str);

    /// Raw output of a domain that reads hv's serial input
    /// ([`crate::console::is_console_reader`]), printed as it comes (no
    /// prefix, no line buffering, as Xen for the hardware domain). The
    /// default hands it on as a line (test sinks).
    fn guest_raw(&mut self, domid: u16, text: &str) {
        self.guest_line(domid, text);
    }

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
        if crate::logger::take_raw_midline() {
            crate::logger::print(format_args!("\n"));
        }
        if domid == 0 {
            // The hardware domain's text goes to the serial only, as Xen's
            // guest_console_write (dom0's `xl dmesg` would read back what it prints).
            crate::logger::print_serial_only(format_args!("(d{domid}) {line}\n"));
        } else {
            crate::logger::print(format_args!("(d{domid}) {line}\n"));
        }
    }

    fn guest_raw(&mut self, _domid: u16, text: &str) {
        if text.is_empty() {
            return;
        }
        // The serial-input reader is the hardware domain: its text goes to
        // the serial only, as Xen's guest_console_write (dom0's `xl dmesg`
        // would read back what it prints).
        crate::logger::print_serial_only(format_args!("{text}"));
        crate::logger::set_raw_midline(!text.ends_with('\n'));
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
