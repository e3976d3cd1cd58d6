//! The control domain's command line (`/chosen/bootargs` of its DTB).
//!
//! Words, separated by spaces (see the crate documentation for the table):
//! `dom0`, `variant=single|batch|both|none`, `domu-mem=<n>[K|M|G]`,
//! `pages=<n>`, `map-chunk=<n>`, `unmap-chunk=<n>`, `noboot`, `xen-node`,
//! `timeout-ms=<n>`, `verify`, `negative-tests`, `heap-exhaust`, `stale-test=single|batch`,
//! `destroy-loop=<n>`, `create-flood=<n>`, `foreign-domid=<n>`, and `--` after which everything is the domU's
//! bootargs. `mem=` is hv's (the control domain's own RAM) and ignored here.

/// How the builder unmaps the domU pages from its own physmap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Variant {
    /// One `XENMEM_remove_from_physmap` per page (Xen's toolstack via Linux
    /// privcmd: the seed's path).
    Single,
    /// `XENMEM_remove_from_physmap_batch` (hv, 63) in chunks.
    Batch,
}

impl Variant {
    /// The word used on the command line and in output.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Variant::Single => "single",
            Variant::Batch => "batch",
        }
    }

    fn parse(v: &str) -> Option<Self> {
        match v {
            "single" => Some(Variant::Single),
            "batch" => Some(Variant::Batch),
            _ => None,
        }
    }
}

/// A word the builder could not use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ArgError<'a> {
    /// The whole word.
    pub word: &'a str,
    /// What is wrong with it.
    pub why: &'static str,
}

/// The run the command line selects.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Config<'a> {
    /// Build with per-page removes.
    pub single: bool,
    /// Build with batched removes (after `single` when both are set).
    pub batch: bool,
    /// domU RAM in bytes.
    pub domu_mem: u64,
    /// Map and write at least this many pages (extra ones are zero-filled RAM).
    pub min_pages: u64,
    /// Pages per `add_to_physmap_batch` (its `size` is a u16).
    pub map_chunk: u16,
    /// Pages per `remove_from_physmap_batch`.
    pub unmap_chunk: u32,
    /// Unpause each built domU and wait for it to shut down.
    pub boot: bool,
    /// Put Xen's `/hypervisor` node in the domU DTB.
    pub xen_node: bool,
    /// How long to wait for a domU to shut down.
    pub timeout_ms: u64,
    /// Read every written page back through the window before unmapping it
    /// and compare it with its source (not timed separately: adds to build time).
    pub verify: bool,
    /// Run the bad-input checks.
    pub negative_tests: bool,
    /// Foreign-map one page until hv's heap says -ENOMEM, then unmap and
    /// build again (a guest must not crash hv by exhausting its heap).
    pub heap_exhaust: bool,
    /// Run the stale-TLB read after removing a foreign page (ends the run).
    pub stale_test: Option<Variant>,
    /// Create and destroy this many domUs.
    pub destroy_loop: u32,
    /// Create up to this many empty domains at once (until hv refuses),
    /// then destroy them all: hv must answer an errno, never panic.
    pub create_flood: u32,
    /// Run the negative and stale-TLB checks against this existing domain
    /// (e.g. a boot-module domU) instead of a 2 MiB domU of their own.
    pub foreign_domid: Option<u16>,
    /// The domU's `/chosen/bootargs`.
    pub domu_args: &'a str,
}

impl Default for Config<'_> {
    fn default() -> Self {
        Self {
            single: true,
            batch: true,
            domu_mem: 16 << 20,
            min_pages: 0,
            map_chunk: 1024,
            unmap_chunk: 8192,
            boot: true,
            xen_node: false,
            timeout_ms: 60_000,
            verify: false,
            negative_tests: false,
            heap_exhaust: false,
            stale_test: None,
            destroy_loop: 0,
            create_flood: 0,
            foreign_domid: None,
            domu_args: "",
        }
    }
}

/// `<n>[K|M|G]` in bytes.
#[must_use]
pub fn parse_size(v: &str) -> Option<u64> {
    let (num, shift) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

impl<'a> Config<'a> {
    /// Parse `bootargs`; words it does not know are passed to `unknown` and
    /// skipped.
    ///
    /// # Errors
    /// The first word whose value is unusable.
    pub fn parse(
        bootargs: &'a str,
        mut unknown: impl FnMut(&'a str),
    ) -> Result<Self, ArgError<'a>> {
        let mut c = Config::default();
        let (ours, domu) = match bootargs.find(" -- ") {
            Some(i) => (&bootargs[..i], bootargs[i + 4..].trim()),
            None => match bootargs.strip_suffix(" --") {
                Some(o) => (o, ""),
                None => (bootargs, ""),
            },
        };
        c.domu_args = domu;
        for word in ours.split_ascii_whitespace() {
            let (k, v) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word, None),
            };
            let bad = |why| ArgError { word, why };
            let num = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok());
            match (k, v) {
                ("dom0", None) | ("mem", Some(_)) => {}
                ("variant", Some(v)) => {
                    (c.single, c.batch) = match v {
                        "single" => (true, false),
                        "batch" => (false, true),
                        "both" => (true, true),
                        "none" => (false, false),
                        _ => return Err(bad("expected single|batch|both|none")),
                    }
                }
                ("domu-mem", v) => {
                    let m = v.and_then(parse_size).ok_or(bad("expected <n>[K|M|G]"))?;
                    if m < (1 << 20) || m % (1 << 20) != 0 || m > crate::abi::guest::RAM0_SIZE {
                        return Err(bad("domU RAM must be whole MiB, 1M..3G"));
                    }
                    c.domu_mem = m;
                }
                ("pages", v) => c.min_pages = num(v).ok_or(bad("expected a number"))?,
                ("map-chunk", v) => {
                    c.map_chunk = num(v)
                        .and_then(|n| u16::try_from(n).ok())
                        .filter(|n| *n > 0)
                        .ok_or(bad("expected 1..65535"))?;
                }
                ("unmap-chunk", v) => {
                    c.unmap_chunk = num(v)
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n > 0 && *n <= 1 << 20)
                        .ok_or(bad("expected 1..1048576"))?;
                }
                ("timeout-ms", v) => c.timeout_ms = num(v).ok_or(bad("expected a number"))?,
                ("noboot", None) => c.boot = false,
                ("xen-node", None) => c.xen_node = true,
                ("negative-tests", None) => c.negative_tests = true,
                ("heap-exhaust", None) => c.heap_exhaust = true,
                ("verify", None) => c.verify = true,
                ("stale-test", v) => {
                    c.stale_test = Some(
                        v.and_then(Variant::parse)
                            .ok_or(bad("expected single|batch"))?,
                    );
                }
                ("destroy-loop", v) => {
                    c.destroy_loop = num(v)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or(bad("expected a number"))?;
                }
                ("create-flood", v) => {
                    c.create_flood = num(v)
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n <= 8192)
                        .ok_or(bad("expected 0..8192"))?;
                }
                ("foreign-domid", v) => {
                    c.foreign_domid = Some(
                        num(v)
                            .and_then(|n| u16::try_from(n).ok())
                            .filter(|n| *n != 0 && *n < 0x7ff0)
                            .ok_or(bad("expected a domid 1..0x7fef"))?,
                    );
                }
                _ => unknown(word),
            }
        }
        Ok(c)
    }

    /// The build variants to run, in order.
    pub fn variants(&self) -> impl Iterator<Item = Variant> {
        let s = self.single.then_some(Variant::Single);
        let b = self.batch.then_some(Variant::Batch);
        s.into_iter().chain(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (Config<'_>, Vec<&str>) {
        let mut u = Vec::new();
        let c = Config::parse(s, |w| u.push(w)).unwrap();
        (c, u)
    }

    #[test]
    fn defaults_build_both_and_boot() {
        let (c, u) = parse("dom0 mem=128M");
        assert_eq!(c, Config::default());
        assert!(u.is_empty());
        assert_eq!(
            c.variants().collect::<Vec<_>>(),
            vec![Variant::Single, Variant::Batch]
        );
    }

    #[test]
    fn all_words() {
        let (c, u) = parse(
            "dom0 variant=batch domu-mem=128M pages=40 map-chunk=512 unmap-chunk=100 noboot \
             xen-node timeout-ms=5 negative-tests stale-test=single destroy-loop=100 foo \
             foreign-domid=1 verify heap-exhaust \
             -- console=hvc0 earlycon=xenboot root=/dev/ram0",
        );
        assert_eq!(u, vec!["foo"]);
        assert_eq!(c.variants().collect::<Vec<_>>(), vec![Variant::Batch]);
        assert_eq!(c.domu_mem, 128 << 20);
        assert_eq!((c.min_pages, c.map_chunk, c.unmap_chunk), (40, 512, 100));
        assert!(!c.boot && c.xen_node && c.negative_tests);
        assert_eq!(c.timeout_ms, 5);
        assert_eq!(c.stale_test, Some(Variant::Single));
        assert_eq!(c.destroy_loop, 100);
        assert_eq!(parse("create-flood=3000").0.create_flood, 3000);
        assert!(Config::parse("create-flood=9000", |_| {}).is_err());
        assert_eq!(c.foreign_domid, Some(1));
        assert!(c.verify);
        assert!(c.heap_exhaust);
        assert_eq!(c.domu_args, "console=hvc0 earlycon=xenboot root=/dev/ram0");
        let (c, _) = parse("variant=none --");
        assert_eq!(c.variants().count(), 0);
        assert_eq!(c.domu_args, "");
    }

    #[test]
    fn bad_values_name_the_word() {
        for w in [
            "variant=some",
            "domu-mem=12Q",
            "domu-mem=1536K",
            "domu-mem=4G",
            "map-chunk=70000",
            "map-chunk=0",
            "unmap-chunk=0",
            "stale-test",
            "stale-test=maybe",
            "destroy-loop=-1",
            "pages",
            "foreign-domid=0",
            "foreign-domid=32752",
        ] {
            let e = Config::parse(w, |_| {}).unwrap_err();
            assert_eq!(e.word, w);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("K"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("99999999999999G"), None);
    }
}
