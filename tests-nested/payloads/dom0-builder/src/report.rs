//! The lines the runner parses.

use core::fmt::{self, Write};

use crate::abi::{HvCounters, TLBI_KINDS};

/// Ticks to microseconds at `freq` Hz (0 when the frequency is unknown).
#[must_use]
pub fn ticks_to_us(ticks: u64, freq: u64) -> u64 {
    if freq == 0 {
        return 0;
    }
    (u128::from(ticks) * 1_000_000 / u128::from(freq)) as u64
}

/// `tlbi: IPAS2E1IS=.. ... IC_IALLU=.. total=.. p2m_ops=.. plans=.. exits=.. hypercalls=..`,
/// or `tlbi: unavailable(<errno>)`.
///
/// # Errors
/// Only those of `w`.
pub fn write_counters(w: &mut impl Write, c: Result<HvCounters, i64>) -> fmt::Result {
    match c {
        Ok(c) => {
            w.write_str("tlbi:")?;
            for (name, n) in TLBI_KINDS.iter().zip(c.tlbi.iter()) {
                write!(w, " {name}={n}")?;
            }
            write!(
                w,
                " total={} p2m_ops={} plans={} exits={} hypercalls={}",
                c.tlbi_total(),
                c.p2m_ops,
                c.plans,
                c.guest_exits,
                c.hypercalls
            )
        }
        Err(e) => write!(w, "tlbi: unavailable({e})"),
    }
}

/// One build line: `variant=<v> pages=<n> build_ticks=<t> build_us=<us> tlbi: ...`.
///
/// # Errors
/// Only those of `w`.
pub fn write_build_line(
    w: &mut impl Write,
    variant: &str,
    pages: u64,
    ticks: u64,
    freq: u64,
    c: Result<HvCounters, i64>,
) -> fmt::Result {
    write!(
        w,
        "dom0: variant={variant} pages={pages} build_ticks={ticks} build_us={} ",
        ticks_to_us(ticks, freq)
    )?;
    write_counters(w, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_line_is_parsable() {
        let mut c = HvCounters::default();
        c.tlbi[1] = 2;
        c.tlbi[2] = 1;
        c.tlbi[7] = 5;
        c.plans = 1;
        let mut s = String::new();
        write_build_line(&mut s, "batch", 21, 62_500, 62_500_000, Ok(c)).unwrap();
        assert_eq!(
            s,
            "dom0: variant=batch pages=21 build_ticks=62500 build_us=1000 tlbi: IPAS2E1IS=0 \
             RIPAS2E1IS=2 VMALLE1IS=1 VMALLE1=0 VMALLS12E1IS=0 VMALLS12E1=0 ALLE1IS=0 \
             IC_IALLU=5 total=3 p2m_ops=0 plans=1 exits=0 hypercalls=0"
        );
        let mut s = String::new();
        write_counters(&mut s, Err(-38)).unwrap();
        assert_eq!(s, "tlbi: unavailable(-38)");
    }

    #[test]
    fn microseconds() {
        assert_eq!(ticks_to_us(1_000_000_000, 1_000_000_000), 1_000_000);
        // No overflow in the intermediate product.
        assert_eq!(ticks_to_us(u64::MAX, 1_000_000), u64::MAX);
        assert_eq!(ticks_to_us(3, 62_500_000), 0);
        assert_eq!(ticks_to_us(5, 0), 0);
    }
}
