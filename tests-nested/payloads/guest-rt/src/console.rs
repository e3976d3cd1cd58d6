//! Console output through `console_io(CONSOLEIO_write)`, one hypercall per line.

use crate::hypercall;
use crate::line::LineBuf;
use core::fmt::{self, Write};

/// Writes formatted text to the console, one `console_io` call per line.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let mut lb = LineBuf::<_, 160>::new(|bytes: &[u8]| {
        let _ = hypercall::console_write(bytes);
    });
    // LineBuf's write_str never fails; a Display impl error just truncates.
    let _ = lb.write_fmt(args);
}

/// Prints to the Xen console (no newline added).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the Xen console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
