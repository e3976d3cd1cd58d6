//! The portable half of `guest-hostile` (host unit-tested): the seeded
//! generator of the random phase, its pools of hostile values, the rules
//! that keep a random call from ending the guest itself (each one printed),
//! and reading `hostile-seed=` / `hostile-calls=` from the DTB hv passes.
//!
//! Xen's ABI numbers used here come from xen/include/public (xen.h,
//! sched.h, memory.h, event_channel.h, grant_table.h, vcpu.h) and Arm's
//! PSCI (DEN0022) and GICv3 (IHI0069) specifications.
#![cfg_attr(not(test), no_std)]

/// Guest RAM base (Xen's `GUEST_RAM0_BASE`).
pub const RAM_BASE: u64 = 0x4000_0000;
/// The guest's RAM as hv's runner gives it (16 MiB, the default).
pub const RAM_SIZE: u64 = 16 << 20;
/// The sacrificial region: pages of our RAM the image never uses (it is
/// linked at 0x4008_0000 and is far smaller than 7 MiB; hv's DTB sits near
/// the top of RAM). Hostile calls may unmap, share or scribble over them.
pub const SAC_BASE: u64 = 0x4080_0000;
/// Size of the sacrificial region.
pub const SAC_SIZE: u64 = 4 << 20;
/// The start of the sacrificial region the guest itself writes (scratch
/// structs): random gfns never name it, so no random call unmaps it.
pub const SCRATCH_KEEP: u64 = 0x1_0000;
/// An IPA below RAM that is neither RAM nor one of Xen's guest MMIO ranges.
pub const OUTSIDE_RAM: u64 = 0x1000_0000;
/// Above our 16 MiB of RAM: where hv's DTB and hv itself live in host
/// physical space (0x4000_0000 + 128 MiB on QEMU virt), unmapped for us.
pub const HV_ADDR: u64 = 0x4800_0000;
/// The vGIC distributor (`GUEST_GICV3_GICD_BASE`), 64 KiB.
pub const GICD: u64 = 0x0300_1000;
/// Size of the distributor frame.
pub const GICD_SIZE: u64 = 0x1_0000;
/// The first redistributor (`GUEST_GICV3_GICR0_BASE`), 128 KiB per vCPU.
pub const GICR: u64 = 0x0302_0000;
/// The redistributor region hv emulates (`GUEST_GICV3_GICR0_SIZE`).
pub const GICR_SIZE: u64 = 0x0100_0000;
/// `GUEST_MAGIC_BASE`: the PV console ring's page.
pub const MAGIC: u64 = 0x3900_0000;

/// Hypercall numbers hv implements (Xen's `__HYPERVISOR_*`, hv_op 49).
pub const IMPLEMENTED: [u64; 14] = [7, 12, 13, 17, 18, 20, 21, 24, 29, 32, 34, 35, 36, 49];

/// xorshift64* (Vigna): tiny, deterministic, good enough to pick cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (0 is mapped to a fixed non-zero state).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n` > 0; 0 gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A hostile argument: small integers, edge values, bad and odd
    /// pointers (outside RAM, MMIO, hv's addresses, unaligned, our
    /// sacrificial pages), or plain random bits.
    pub fn hostile(&mut self) -> u64 {
        match self.below(18) {
            // Struct-shaped words, so calls get past their first checks:
            // DOMID_SELF (and its reserved neighbours) with a small port in
            // the upper half; small domids/ports packed in 16-bit fields; a
            // gfn of the sacrificial region (past the scratch the guest
            // writes); the console ring's gfn.
            14 => (0x7ff0 + self.below(6)) | (self.below(8) << 32),
            15 => self.below(4) | (self.below(16) << 16) | (self.below(16) << 32),
            16 => (SAC_BASE + SCRATCH_KEEP) / 4096 + self.below((SAC_SIZE - SCRATCH_KEEP) / 4096),
            17 => MAGIC >> 12,
            0 => self.below(8),
            1 => self.below(70),
            2 => u64::MAX - self.below(4),
            3 => u64::from(u32::MAX) - self.below(4),
            4 => 1 << self.below(64),
            5 => OUTSIDE_RAM + self.below(0x1000),
            6 => GICD + self.below(GICD_SIZE),
            7 => GICR + self.below(0x4_0000),
            8 => MAGIC + self.below(0x2000),
            9 => HV_ADDR + self.below(0x10_0000),
            10 | 11 => SAC_BASE + self.below(SAC_SIZE),
            12 => RAM_BASE + RAM_SIZE - self.below(64),
            _ => self.next_u64(),
        }
    }

    /// A sub-command: mostly the small numbers Xen assigns, sometimes anything.
    pub fn cmd(&mut self) -> u64 {
        match self.below(8) {
            0 => self.hostile(),
            1 => self.below(64) | (self.below(1 << 20) << 6),
            _ => self.below(40),
        }
    }

    /// A hypercall number: mostly one hv implements, else any of 0..=64.
    pub fn nr(&mut self) -> u64 {
        if self.below(10) < 7 {
            IMPLEMENTED[self.below(IMPLEMENTED.len() as u64) as usize]
        } else {
            self.below(65)
        }
    }
}

/// True if `a` is an address inside our own RAM.
#[must_use]
pub fn in_own_ram(a: u64) -> bool {
    (RAM_BASE..RAM_BASE + RAM_SIZE).contains(&a)
}

/// Why a random call was changed before it was made (printed with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tame {
    /// Left as drawn.
    AsDrawn,
    /// `sched_op` block/shutdown/poll/remote_shutdown/shutdown_code/watchdog
    /// would end or park this guest: made `SCHEDOP_yield`.
    SchedToYield,
    /// A `multicall` list in our own RAM holds garbage entries that may
    /// shut us down: the list is moved outside RAM (the named multicall
    /// tests cover real lists).
    MulticallListOut,
    /// `console_io` of our own RAM: at most 256 bytes (a megabyte of
    /// garbage would only flood the log; the named tests cover the limits).
    ConsoleClamped,
    /// `vcpu_op` on vCPU 0 with `VCPUOP_down` (2): no.
    VcpuDownToOther,
}

/// Make a drawn call safe for the guest itself (never for hv: every value
/// that reaches hv is still hostile). Returns what was changed.
pub fn tame(nr: u64, a: &mut [u64; 5]) -> Tame {
    let low = |v: u64| v & 0xffff_ffff;
    match nr {
        29 if (1..=6).contains(&low(a[0])) => {
            a[0] = 0;
            Tame::SchedToYield
        }
        13 if in_own_ram(a[0]) || in_own_ram(a[0].wrapping_add(64 * low(a[1]))) => {
            a[0] = OUTSIDE_RAM;
            Tame::MulticallListOut
        }
        18 if low(a[0]) == 0 && in_own_ram(a[2]) && low(a[1]) > 256 => {
            a[1] = 256;
            Tame::ConsoleClamped
        }
        24 if low(a[0]) == 2 && low(a[1]) == 0 => {
            a[1] = 1;
            Tame::VcpuDownToOther
        }
        _ => Tame::AsDrawn,
    }
}

/// The value of `key=<decimal or 0x hex>` in a DTB's bytes (the module's
/// `/chosen/bootargs` is stored as a plain string in the structure block),
/// or `None`.
#[must_use]
pub fn find_arg(dtb: &[u8], key: &str) -> Option<u64> {
    let k = key.as_bytes();
    let at = dtb
        .windows(k.len() + 1)
        .position(|w| w.get(..k.len()) == Some(k) && w.get(k.len()) == Some(&b'='))?;
    let rest = dtb.get(at + k.len() + 1..)?;
    let end = rest
        .iter()
        .position(|&b| b == b' ' || b == 0)
        .unwrap_or(rest.len());
    let s = core::str::from_utf8(rest.get(..end)?).ok()?;
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// vCPUs the guest DTB describes: `cpu@<n>` nodes under `/cpus` (their
/// names are plain strings in the structure block; hv keeps its own
/// `vcpus=` out of the guest's bootargs, as Xen does).
#[must_use]
pub fn count_cpus(dtb: &[u8]) -> u64 {
    dtb.windows(5)
        .filter(|w| w.starts_with(b"cpu@") && w[4].is_ascii_hexdigit())
        .count() as u64
}

/// `struct multicall_entry` on arm64: `op`, `result`, `args[6]`, all u64.
pub const MULTICALL_ENTRY: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_per_seed_and_covers_ranges() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(Rng::new(43).next_u64(), xs[0]);
        let mut r = Rng::new(1);
        let mut seen = [false; 65];
        for _ in 0..10_000 {
            let n = r.nr();
            assert!(n <= 64);
            seen[n as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "every number 0..=64 drawn");
        assert!(IMPLEMENTED.iter().all(|&n| seen[n as usize]));
        assert!(Rng::new(0).next_u64() != 0);
        let mut r = Rng::new(9);
        let (mut gfns, mut selfs) = (0, 0);
        for _ in 0..10_000 {
            let v = r.hostile();
            if (SAC_BASE >> 12..(SAC_BASE + SAC_SIZE) >> 12).contains(&v) {
                assert!(
                    v >= (SAC_BASE + SCRATCH_KEEP) >> 12,
                    "never the scratch pages"
                );
                gfns += 1;
            }
            selfs += u32::from(v & 0xfff8 == 0x7ff0 && v >> 16 & 0xffff == 0);
        }
        assert!(gfns > 100 && selfs > 100, "{gfns} {selfs}");
    }

    #[test]
    fn taming_keeps_the_guest_alive_and_says_so() {
        let mut a = [2, SAC_BASE, 0, 0, 0];
        assert_eq!(tame(29, &mut a), Tame::SchedToYield);
        assert_eq!(a[0], 0);
        let mut a = [0x1_0000_0000, 0, 0, 0, 0];
        assert_eq!(
            tame(29, &mut a),
            Tame::AsDrawn,
            "only the low 32 bits count"
        );
        let mut a = [SAC_BASE, 3, 0, 0, 0];
        assert_eq!(tame(13, &mut a), Tame::MulticallListOut);
        assert_eq!(a[0], OUTSIDE_RAM);
        let mut a = [0, 1 << 20, SAC_BASE, 0, 0];
        assert_eq!(tame(18, &mut a), Tame::ConsoleClamped);
        assert_eq!(a[1], 256);
        let mut a = [0, 16, OUTSIDE_RAM, 0, 0];
        assert_eq!(tame(18, &mut a), Tame::AsDrawn);
        let mut a = [2, 0, 0, 0, 0];
        assert_eq!(tame(24, &mut a), Tame::VcpuDownToOther);
        let mut a = [7, 0, 0, 0, 0];
        assert_eq!(tame(17, &mut a), Tame::AsDrawn);
    }

    #[test]
    fn args_are_read_from_the_dtb_bytes() {
        let mut dtb = vec![0xd0, 0x0d, 0xfe, 0xed, 0, 0];
        dtb.extend_from_slice(b"hostile hostile-seed=0x2a hostile-calls=500\0more");
        assert_eq!(find_arg(&dtb, "hostile-seed"), Some(42));
        assert_eq!(find_arg(&dtb, "hostile-calls"), Some(500));
        assert_eq!(find_arg(&dtb, "hostile-x"), None);
        assert_eq!(find_arg(b"hostile-seed=zz", "hostile-seed"), None);
        assert_eq!(find_arg(b"hostile-seed=", "hostile-seed"), None);
        assert_eq!(count_cpus(b"\0cpus\0\0cpu@0\0\0\0cpu@1\0\0cpu-map\0"), 2);
        assert_eq!(count_cpus(b"no cpus here"), 0);
    }
}
