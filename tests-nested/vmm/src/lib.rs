//! The nested rig's VMM, portable parts: command line, guest memory layout, the DTB handed
//! to the guest hypervisor, arm64 Image header parsing, the emulated PL011 and the
//! timestamped serial log. The KVM part (`main.rs`, aarch64 Linux only) drives these.

pub mod cpio;

use std::fmt;
use std::time::Instant;

/// Guest RAM base (QEMU virt's and Xen's GUEST_RAM0_BASE).
pub const RAM_BASE: u64 = 0x4000_0000;
/// GICv3 distributor base (QEMU virt layout).
pub const GICD_BASE: u64 = 0x0800_0000;
/// GICv3 distributor size.
pub const GICD_SIZE: u64 = 0x1_0000;
/// GICv3 redistributor region base (QEMU virt layout).
pub const GICR_BASE: u64 = 0x080a_0000;
/// Size of one vCPU's redistributor (RD + SGI frames).
pub const GICR_STRIDE: u64 = 0x2_0000;
/// The emulated PL011 (QEMU virt's address, so the same payload runs on both).
pub const UART_BASE: u64 = 0x0900_0000;
/// Size of the PL011's MMIO window.
pub const UART_SIZE: u64 = 0x1000;
/// The exit-counter device: a 64-bit read at offset 0 returns the sum of KVM's `exits` stat
/// over all vCPUs, at offset 8 the calling vCPU's (each read is itself one exit). Lets a
/// guest hypervisor count its traps to L0 around a piece of work.
pub const EXITS_BASE: u64 = 0x0b00_0000;
/// Size of the exit-counter window.
pub const EXITS_SIZE: u64 = 0x1000;
/// 2 MiB, the arm64 Image and module alignment.
pub const ALIGN_2M: u64 = 0x20_0000;

/// An error of the VMM, printed before exiting non-zero.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Shorthand for building an [`Error`].
pub fn err<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error(msg.into()))
}

/// What kind of boot module a file is (Xen's `multiboot,*` binding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    /// `multiboot,kernel`: a guest kernel; hv makes one domain per kernel module.
    Kernel,
    /// `multiboot,ramdisk`: the initrd of the preceding kernel.
    Ramdisk,
}

/// One boot module given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleSpec {
    /// Kernel or ramdisk.
    pub kind: ModuleKind,
    /// Host path of the file.
    pub path: String,
    /// The module's `bootargs` property, if any.
    pub bootargs: Option<String>,
}

/// The VMM's configuration (from its command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The guest hypervisor's arm64 Image (hv or a probe payload).
    pub kernel: String,
    /// Boot modules in command-line order.
    pub modules: Vec<ModuleSpec>,
    /// `/chosen/bootargs` for the guest hypervisor.
    pub cmdline: String,
    /// Number of vCPUs.
    pub cpus: u32,
    /// Guest RAM size in MiB.
    pub mem_mib: u64,
    /// IPA size of the VM in bits (0: the host's limit).
    pub ipa_bits: u32,
    /// Kill the VM after this many seconds (exit status 3).
    pub timeout_s: u64,
    /// Write the generated DTB here too (for inspection).
    pub dump_dtb: Option<String>,
    /// Stamp each serial line with the traps to L0 so far (see [`Stamp::line_exits`]).
    pub exit_stamps: bool,
}

/// Usage text.
pub const USAGE: &str =
    "usage: vmm --kernel IMAGE [--module PATH [--module-args STR]] [--ramdisk PATH]
           [--cmdline STR] [--cpus N] [--mem-mib N] [--ipa-bits N] [--timeout SECS]
           [--dump-dtb PATH] [--exit-stamps]
--exit-stamps prefixes each serial line with `L0=<n>`: KVM exits of all vCPUs, not counting
the console's own MMIO exits, when the line's first byte was written.
Runs IMAGE as a guest hypervisor at vEL2 (KVM_ARM_VCPU_HAS_EL2). Exit status: 0 after PSCI
SYSTEM_OFF or SYSTEM_RESET, 2 on a usage error, 3 on timeout, 1 on any other failure.";

impl Config {
    /// Parses the arguments after the program name.
    ///
    /// # Errors
    /// Unknown flags, missing values, non-numeric numbers, a missing `--kernel`.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Config, Error> {
        let mut it = args.into_iter();
        let mut kernel = None;
        let mut c = Config {
            kernel: String::new(),
            modules: Vec::new(),
            cmdline: String::new(),
            cpus: 1,
            mem_mib: 512,
            ipa_bits: 40,
            timeout_s: 600,
            dump_dtb: None,
            exit_stamps: false,
        };
        fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, Error> {
            let v = v.ok_or_else(|| Error(format!("{flag} needs a value")))?;
            v.parse()
                .map_err(|_| Error(format!("{flag}: bad number {v:?}")))
        }
        while let Some(a) = it.next() {
            match a.as_str() {
                "--kernel" => {
                    kernel = Some(it.next().ok_or(Error("--kernel needs a path".into()))?)
                }
                "--module" | "--ramdisk" => {
                    let path = it
                        .next()
                        .ok_or_else(|| Error(format!("{a} needs a path")))?;
                    let kind = if a == "--module" {
                        ModuleKind::Kernel
                    } else {
                        ModuleKind::Ramdisk
                    };
                    c.modules.push(ModuleSpec {
                        kind,
                        path,
                        bootargs: None,
                    });
                }
                "--module-args" => {
                    let s = it
                        .next()
                        .ok_or(Error("--module-args needs a value".into()))?;
                    match c.modules.last_mut() {
                        Some(m) => m.bootargs = Some(s),
                        None => return err("--module-args must follow a --module"),
                    }
                }
                "--cmdline" => {
                    c.cmdline = it.next().ok_or(Error("--cmdline needs a value".into()))?
                }
                "--cpus" => c.cpus = num(&a, it.next())?,
                "--mem-mib" => c.mem_mib = num(&a, it.next())?,
                "--ipa-bits" => c.ipa_bits = num(&a, it.next())?,
                "--timeout" => c.timeout_s = num(&a, it.next())?,
                "--dump-dtb" => c.dump_dtb = it.next(),
                "--exit-stamps" => c.exit_stamps = true,
                _ => return err(format!("unknown argument {a:?}")),
            }
        }
        c.kernel = kernel.ok_or(Error("--kernel is required".into()))?;
        if c.cpus == 0 || c.cpus > 8 {
            return err("--cpus must be 1..=8");
        }
        if c.mem_mib < 16 || c.mem_mib > 3 * 1024 {
            return err("--mem-mib must be 16..=3072");
        }
        if c.ipa_bits != 0 && !(32..=52).contains(&c.ipa_bits) {
            return err("--ipa-bits must be 0 (host limit) or 32..=52");
        }
        Ok(c)
    }
}

/// The arm64 Image header fields a loader needs (Linux Documentation/arch/arm64/booting.rst).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset from a 2 MiB aligned base at which the image must be placed.
    pub text_offset: u64,
    /// Bytes the image occupies from its start, bss included.
    pub image_size: u64,
}

/// Parses an arm64 Image header; `None` when the magic "ARM\x64" at 0x38 is missing
/// (then the file is a raw binary loaded at the RAM base).
pub fn parse_image_header(img: &[u8]) -> Option<ImageHeader> {
    let hdr = img.get(..64)?;
    if hdr[0x38..0x3c] != *b"ARM\x64" {
        return None;
    }
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&hdr[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let (text_offset, image_size) = (u64_at(8), u64_at(16));
    // booting.rst: image_size = 0 means a pre-3.17 kernel with text_offset 0x80000.
    if image_size == 0 {
        return Some(ImageHeader {
            text_offset: 0x8_0000,
            image_size: img.len() as u64,
        });
    }
    Some(ImageHeader {
        text_offset,
        image_size: image_size.max(img.len() as u64),
    })
}

/// Where everything goes in guest RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Load address and entry point of the guest hypervisor.
    pub kernel_addr: u64,
    /// (address, size) of each module, in order.
    pub modules: Vec<(u64, u64)>,
    /// Address of the DTB (x0 at entry).
    pub dtb_addr: u64,
}

/// Largest DTB the layout reserves room for.
pub const DTB_MAX: u64 = 0x10_0000;

/// Places the kernel at RAM base + text_offset, the modules after it (2 MiB aligned) and the
/// DTB in the last 2 MiB of RAM.
///
/// # Errors
/// When the pieces do not fit in `mem_size` bytes.
pub fn layout(mem_size: u64, kernel: &[u8], module_sizes: &[u64]) -> Result<Layout, Error> {
    let (off, size) = match parse_image_header(kernel) {
        Some(h) => (h.text_offset, h.image_size),
        None => (0, kernel.len() as u64),
    };
    let kernel_addr = RAM_BASE + off;
    let dtb_addr = RAM_BASE + mem_size - ALIGN_2M;
    let mut next = align_up(kernel_addr + size, ALIGN_2M);
    let mut modules = Vec::new();
    for &s in module_sizes {
        modules.push((next, s));
        next = align_up(next + s, ALIGN_2M);
    }
    if next > dtb_addr {
        return err(format!(
            "kernel and modules need {} MiB, more than the {} MiB of RAM (minus 2 MiB for the DTB)",
            (next - RAM_BASE) >> 20,
            mem_size >> 20
        ));
    }
    Ok(Layout {
        kernel_addr,
        modules,
        dtb_addr,
    })
}

/// Rounds `v` up to a multiple of the power of two `a`.
pub fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

const PHANDLE_GIC: u32 = 1;
const PHANDLE_CLK: u32 = 2;
// GIC interrupt specifier: <type number flags>; type 0 = SPI, 1 = PPI; flags 4 = level high.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const IRQ_LEVEL_HI: u32 = 4;

fn fdt_err(e: vm_fdt::Error) -> Error {
    Error(format!("dtb: {e}"))
}

/// Builds the DTB the guest hypervisor boots from.
///
/// # Errors
/// Only if vm-fdt rejects a node or property (a bug).
pub fn build_dtb(c: &Config, l: &Layout, mem_size: u64) -> Result<Vec<u8>, Error> {
    build_dtb_inner(c, l, mem_size).map_err(fdt_err)
}

fn build_dtb_inner(c: &Config, l: &Layout, mem_size: u64) -> Result<Vec<u8>, vm_fdt::Error> {
    let mut f = vm_fdt::FdtWriter::new()?;
    let root = f.begin_node("")?;
    f.property_string("compatible", "linux,dummy-virt")?;
    f.property_string("model", "hv nested rig VMM (KVM guest hypervisor)")?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_u32("interrupt-parent", PHANDLE_GIC)?;

    let chosen = f.begin_node("chosen")?;
    f.property_string("bootargs", &c.cmdline)?;
    f.property_string("stdout-path", &format!("/pl011@{UART_BASE:x}"))?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    for (m, &(addr, size)) in c.modules.iter().zip(&l.modules) {
        let n = f.begin_node(&format!("module@{addr:x}"))?;
        let kind = match m.kind {
            ModuleKind::Kernel => "multiboot,kernel",
            ModuleKind::Ramdisk => "multiboot,ramdisk",
        };
        f.property_string_list("compatible", vec![kind.into(), "multiboot,module".into()])?;
        f.property_array_u64("reg", &[addr, size])?;
        if let Some(b) = &m.bootargs {
            f.property_string("bootargs", b)?;
        }
        f.end_node(n)?;
    }
    f.end_node(chosen)?;

    let mem = f.begin_node(&format!("memory@{RAM_BASE:x}"))?;
    f.property_string("device_type", "memory")?;
    f.property_array_u64("reg", &[RAM_BASE, mem_size])?;
    f.end_node(mem)?;

    let cpus = f.begin_node("cpus")?;
    f.property_u32("#address-cells", 1)?;
    f.property_u32("#size-cells", 0)?;
    for i in 0..c.cpus {
        // KVM's default MPIDR for vCPU i (< 16) has Aff0 = i.
        let n = f.begin_node(&format!("cpu@{i}"))?;
        f.property_string("device_type", "cpu")?;
        f.property_string("compatible", "arm,arm-v8")?;
        f.property_string("enable-method", "psci")?;
        f.property_u32("reg", i)?;
        f.end_node(n)?;
    }
    f.end_node(cpus)?;

    let psci = f.begin_node("psci")?;
    f.property_string_list(
        "compatible",
        vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
    )?;
    // From vEL2, SMC reaches L0 KVM (HCR_EL2.TSC clear in the guest hypervisor's view).
    f.property_string("method", "smc")?;
    f.end_node(psci)?;

    let gic = f.begin_node(&format!("intc@{GICD_BASE:x}"))?;
    f.property_string("compatible", "arm,gic-v3")?;
    f.property_u32("#interrupt-cells", 3)?;
    f.property_null("interrupt-controller")?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_null("ranges")?;
    f.property_u32("#redistributor-regions", 1)?;
    f.property_array_u64(
        "reg",
        &[
            GICD_BASE,
            GICD_SIZE,
            GICR_BASE,
            GICR_STRIDE * u64::from(c.cpus),
        ],
    )?;
    // The vGIC maintenance interrupt (PPI 9), used by a hypervisor that runs guests.
    f.property_array_u32("interrupts", &[GIC_PPI, 9, IRQ_LEVEL_HI])?;
    f.property_u32("phandle", PHANDLE_GIC)?;
    f.end_node(gic)?;

    let timer = f.begin_node("timer")?;
    f.property_string("compatible", "arm,armv8-timer")?;
    f.property_null("always-on")?;
    // Binding order: secure phys (13), non-secure phys (14), virt (11), hyp phys (10),
    // hyp virt (12, the EL2 virtual timer of FEAT_VHE).
    let mut irqs = Vec::new();
    for ppi in [13, 14, 11, 10, 12] {
        irqs.extend_from_slice(&[GIC_PPI, ppi, IRQ_LEVEL_HI]);
    }
    f.property_array_u32("interrupts", &irqs)?;
    f.end_node(timer)?;

    let clk = f.begin_node("apb-pclk")?;
    f.property_string("compatible", "fixed-clock")?;
    f.property_u32("#clock-cells", 0)?;
    f.property_u32("clock-frequency", 24_000_000)?;
    f.property_string("clock-output-names", "clk24mhz")?;
    f.property_u32("phandle", PHANDLE_CLK)?;
    f.end_node(clk)?;

    let uart = f.begin_node(&format!("pl011@{UART_BASE:x}"))?;
    f.property_string_list(
        "compatible",
        vec!["arm,pl011".into(), "arm,primecell".into()],
    )?;
    f.property_array_u64("reg", &[UART_BASE, UART_SIZE])?;
    f.property_array_u32("interrupts", &[GIC_SPI, 1, IRQ_LEVEL_HI])?;
    f.property_array_u32("clocks", &[PHANDLE_CLK, PHANDLE_CLK])?;
    f.property_string_list("clock-names", vec!["uartclk".into(), "apb_pclk".into()])?;
    f.end_node(uart)?;

    let exits = f.begin_node(&format!("exit-counter@{EXITS_BASE:x}"))?;
    f.property_string("compatible", "hv-rig,kvm-exit-counter")?;
    f.property_array_u64("reg", &[EXITS_BASE, EXITS_SIZE])?;
    f.end_node(exits)?;

    f.end_node(root)?;
    f.finish()
}

/// An output-only PL011: enough for hv's driver, Linux's earlycon and the probe payload.
/// Writes to DR are printed, FR always says "TX empty, RX empty", the control registers
/// read back what was written, the PrimeCell ID registers read as a PL011's.
#[derive(Debug, Default)]
pub struct Pl011 {
    regs: [u32; 0x40 / 4 + 1],
    /// Bytes written to DR since the last complete line.
    pub line: Vec<u8>,
}

const PL011_ID: [(u64, u32); 8] = [
    (0xfe0, 0x11),
    (0xfe4, 0x10),
    (0xfe8, 0x14),
    (0xfec, 0x00),
    (0xff0, 0x0d),
    (0xff4, 0xf0),
    (0xff8, 0x05),
    (0xffc, 0xb1),
];

impl Pl011 {
    /// A register read at `off` from the UART base.
    pub fn read(&self, off: u64) -> u32 {
        match off {
            0x18 => 0x90,            // FR: TXFE | RXFE, never busy, never full.
            0x00 | 0x3c | 0x40 => 0, // DR (no input), RIS, MIS
            o if o < 0x40 => self.regs[(o / 4) as usize],
            o => PL011_ID
                .iter()
                .find(|(a, _)| *a == o)
                .map_or(0, |(_, v)| *v),
        }
    }

    /// A register write at `off`; returns the completed line when a '\n' is written to DR.
    pub fn write(&mut self, off: u64, val: u32) -> Option<String> {
        match off {
            0x00 => {
                let b = val as u8;
                match b {
                    b'\r' => None,
                    b'\n' => {
                        let s = String::from_utf8_lossy(&self.line).into_owned();
                        self.line.clear();
                        Some(s)
                    }
                    _ => {
                        self.line.push(b);
                        None
                    }
                }
            }
            o if o < 0x40 && o != 0x18 => {
                self.regs[(o / 4) as usize] = val;
                None
            }
            _ => None,
        }
    }
}

/// One statistic read from a KVM binary stats fd (Documentation/virt/kvm/api.rst,
/// KVM_GET_STATS_FD).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Its name, e.g. `exits`.
    pub name: String,
    /// Its first value.
    pub value: u64,
}

/// Parses a KVM binary stats file (header, descriptors, data) into its single-valued
/// statistics.
///
/// # Errors
/// A truncated or inconsistent file.
pub fn parse_kvm_stats(buf: &[u8]) -> Result<Vec<Stat>, Error> {
    let u32_at = |o: usize| -> Result<u32, Error> {
        let b = buf.get(o..o + 4).ok_or(Error("stats: truncated".into()))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    // struct kvm_stats_header { flags, name_size, num_desc, id_offset, desc_offset, data_offset }
    let name_size = u32_at(4)? as usize;
    let num_desc = u32_at(8)? as usize;
    let desc_offset = u32_at(16)? as usize;
    let data_offset = u32_at(20)? as usize;
    // struct kvm_stats_desc { u32 flags; s16 exponent; u16 size; u32 offset; u32 bucket_size; char name[name_size]; }
    let desc_len = 16 + name_size;
    let mut out = Vec::new();
    for i in 0..num_desc {
        let d = desc_offset + i * desc_len;
        let size = u32_at(d + 4)? >> 16;
        let offset = u32_at(d + 8)? as usize;
        let name_bytes = buf
            .get(d + 16..d + desc_len)
            .ok_or(Error("stats: truncated".into()))?;
        let end = name_bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(name_bytes.len());
        let name = String::from_utf8_lossy(&name_bytes[..end]).into_owned();
        if size != 1 {
            continue; // histograms
        }
        let v = data_offset + offset;
        let b = buf.get(v..v + 8).ok_or(Error("stats: truncated".into()))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        out.push(Stat {
            name,
            value: u64::from_le_bytes(a),
        });
    }
    Ok(out)
}

/// Prefixes serial lines with seconds since the VMM started.
#[derive(Debug)]
pub struct Stamp(pub Instant);

impl Stamp {
    /// Formats one serial line as `[   12.345678] text`.
    pub fn line(&self, text: &str) -> String {
        let t = self.0.elapsed();
        format!("[{:5}.{:06}] {}", t.as_secs(), t.subsec_micros(), text)
    }

    /// Formats one serial line with the number of traps to L0 (KVM exits) counted when
    /// the line began, as `[   12.345678 L0=1234] text`. A runner takes the difference of
    /// two lines' counts to count the traps of the work between them.
    pub fn line_exits(&self, text: &str, l0_exits: u64) -> String {
        let t = self.0.elapsed();
        format!(
            "[{:5}.{:06} L0={l0_exits}] {text}",
            t.as_secs(),
            t.subsec_micros()
        )
    }
}

/// Prefixes a line with CPU seconds (`rig-stamp`): `   12.345678| text`.
pub fn cpu_stamp(cpu_ns: u64, text: &str) -> String {
    format!(
        "{:5}.{:06}| {text}",
        cpu_ns / 1_000_000_000,
        cpu_ns % 1_000_000_000 / 1000
    )
}

/// The CPU time (ns, microsecond resolution) of a line written by [`cpu_stamp`].
pub fn parse_cpu_stamp(line: &str) -> Option<u64> {
    let (head, _) = line.split_once("| ")?;
    let (s, us) = head.trim_start().split_once('.')?;
    if us.len() != 6 {
        return None;
    }
    Some(s.parse::<u64>().ok()? * 1_000_000_000 + us.parse::<u64>().ok()? * 1000)
}

/// The parent pid in a `/proc/<pid>/stat` line (the field after the parenthesised command
/// name, which may itself contain spaces and parentheses).
pub fn stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Nanoseconds on CPU from a `/proc/<pid>/task/<tid>/schedstat` line (its first field).
pub fn schedstat_ns(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

/// Parses the `L0=<n>` count of a line written by [`Stamp::line_exits`].
pub fn parse_l0_stamp(line: &str) -> Option<u64> {
    let rest = line.strip_prefix('[')?;
    let (head, _) = rest.split_once(']')?;
    head.split_whitespace()
        .find_map(|w| w.strip_prefix("L0="))
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_flags_and_modules() {
        let c = Config::parse(args(&[
            "--kernel",
            "hv.bin",
            "--module",
            "a",
            "--module-args",
            "console=hvc0",
            "--ramdisk",
            "r",
            "--cpus",
            "2",
            "--ipa-bits",
            "48",
            "--cmdline",
            "tlb=auto",
        ]))
        .unwrap();
        assert_eq!(c.kernel, "hv.bin");
        assert_eq!(c.cpus, 2);
        assert_eq!(c.ipa_bits, 48);
        assert_eq!(c.modules.len(), 2);
        assert_eq!(c.modules[0].bootargs.as_deref(), Some("console=hvc0"));
        assert_eq!(c.modules[1].kind, ModuleKind::Ramdisk);
        assert!(!c.exit_stamps);
        let c = Config::parse(args(&["--kernel", "k", "--exit-stamps"])).unwrap();
        assert!(c.exit_stamps);
        assert!(Config::parse(args(&["--cpus", "2"])).is_err());
        assert!(Config::parse(args(&["--kernel", "k", "--cpus", "x"])).is_err());
        assert!(Config::parse(args(&["--kernel", "k", "--ipa-bits", "60"])).is_err());
        assert!(Config::parse(args(&["--kernel", "k", "--module-args", "x"])).is_err());
    }

    fn image(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[8..16].copy_from_slice(&text_offset.to_le_bytes());
        v[16..24].copy_from_slice(&image_size.to_le_bytes());
        v[0x38..0x3c].copy_from_slice(b"ARM\x64");
        v
    }

    #[test]
    fn image_header_and_layout() {
        let k = image(0x8_0000, 0x30_0000, 4096);
        assert_eq!(
            parse_image_header(&k),
            Some(ImageHeader {
                text_offset: 0x8_0000,
                image_size: 0x30_0000
            })
        );
        assert_eq!(parse_image_header(&[0u8; 100]), None);
        assert_eq!(
            parse_image_header(&image(0x1234, 0, 200))
                .unwrap()
                .text_offset,
            0x8_0000
        );
        let l = layout(64 << 20, &k, &[0x1000, 0x30_0001]).unwrap();
        assert_eq!(l.kernel_addr, RAM_BASE + 0x8_0000);
        // Kernel ends at 0x4038_0000 -> first module at 0x4040_0000.
        assert_eq!(
            l.modules,
            vec![(0x4040_0000, 0x1000), (0x4060_0000, 0x30_0001)]
        );
        assert_eq!(l.dtb_addr, RAM_BASE + (62 << 20));
        assert!(layout(16 << 20, &k, &[15 << 20]).is_err());
        // A raw binary loads at the RAM base.
        assert_eq!(
            layout(16 << 20, &[0u8; 10], &[]).unwrap().kernel_addr,
            RAM_BASE
        );
    }

    #[test]
    fn pl011_lines_and_registers() {
        let mut u = Pl011::default();
        assert_eq!(u.read(0x18) & (1 << 5), 0, "TXFF must read clear");
        for b in b"hi\r" {
            assert_eq!(u.write(0, u32::from(*b)), None);
        }
        assert_eq!(u.write(0, u32::from(b'\n')).as_deref(), Some("hi"));
        u.write(0x30, 0x301);
        assert_eq!(u.read(0x30), 0x301);
        assert_eq!(u.read(0xfe0), 0x11);
        assert_eq!(u.read(0xffc), 0xb1);
        assert_eq!(u.read(0x800), 0);
    }

    #[test]
    fn dtb_has_the_nodes_hv_needs() {
        let c = Config::parse(args(&[
            "--kernel",
            "k",
            "--module",
            "d1",
            "--module-args",
            "x=1",
            "--cpus",
            "2",
            "--cmdline",
            "tlb=auto",
        ]))
        .unwrap();
        let l = layout(512 << 20, &image(0x8_0000, 0x10_0000, 4096), &[0x1000]).unwrap();
        let dtb = build_dtb(&c, &l, 512 << 20).unwrap();
        assert_eq!(&dtb[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
        // The strings the guest hypervisor looks for are present.
        let has = |s: &[u8]| dtb.windows(s.len()).any(|w| w == s);
        for s in [
            &b"multiboot,kernel\0multiboot,module\0"[..],
            b"module@40200000",
            b"arm,gic-v3",
            b"arm,pl011",
            b"tlb=auto",
            b"x=1",
            b"smc",
            b"cpu@1",
            b"arm,armv8-timer",
            b"hv-rig,kvm-exit-counter",
        ] {
            assert!(has(s), "missing {:?}", String::from_utf8_lossy(s));
        }
        assert!(!has(b"cpu@2"));
    }

    #[test]
    fn kvm_stats_parse() {
        // Header, two descriptors (name_size 8): "exits" (1 value), "hist" (2 values).
        let mut b = Vec::new();
        for v in [0u32, 8, 2, 24, 24, 24 + 2 * 24] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let desc = |b: &mut Vec<u8>, size: u16, off: u32, name: &[u8]| {
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&0i16.to_le_bytes());
            b.extend_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            let mut n = [0u8; 8];
            n[..name.len()].copy_from_slice(name);
            b.extend_from_slice(&n);
        };
        desc(&mut b, 1, 0, b"exits");
        desc(&mut b, 2, 8, b"hist");
        for v in [12345u64, 1, 2] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let s = parse_kvm_stats(&b).unwrap();
        assert_eq!(
            s,
            vec![Stat {
                name: "exits".into(),
                value: 12345
            }]
        );
        assert!(parse_kvm_stats(&b[..50]).is_err());
    }

    #[test]
    fn cpu_stamps_and_proc_fields() {
        let l = cpu_stamp(12_345_678_901, "[    1.000000 L0=5] x");
        assert_eq!(l, "   12.345678| [    1.000000 L0=5] x");
        assert_eq!(parse_cpu_stamp(&l), Some(12_345_678_000));
        assert_eq!(parse_cpu_stamp("[    1.000000 L0=5] x| y"), None);
        assert_eq!(parse_cpu_stamp("12.3| x"), None);
        assert_eq!(
            stat_ppid("4242 (qemu (x) y) S 4200 4242 17 0 -1 4194560"),
            Some(4200)
        );
        assert_eq!(stat_ppid("garbage"), None);
        assert_eq!(schedstat_ns("123456789 1000 7\n"), Some(123_456_789));
        assert_eq!(schedstat_ns(""), None);
    }

    #[test]
    fn stamp_format() {
        let s = Stamp(Instant::now()).line("x");
        assert!(s.starts_with("[    0.") && s.ends_with("] x"), "{s}");
        assert_eq!(parse_l0_stamp(&s), None);
        let s = Stamp(Instant::now()).line_exits("(d0) a ] L0=9", 4321);
        assert!(
            s.starts_with("[    0.") && s.ends_with(" L0=4321] (d0) a ] L0=9"),
            "{s}"
        );
        assert_eq!(parse_l0_stamp(&s), Some(4321));
        assert_eq!(parse_l0_stamp("[    1.000000 L0=x] t"), None);
    }
}
