//! Editing the device-tree source that `dtc -O dts` prints for QEMU's virt DTB:
//! reading the root's cell sizes and adding Xen-style boot modules and
//! hv's command line to `/chosen`.
//!
//! The binding is Xen's (docs/misc/arm/device-tree/booting.txt): one node
//! `module@<addr>` per module under `/chosen`, with
//! `compatible = "multiboot,kernel", "multiboot,module"` for a kernel,
//! `reg = <addr size>` in the root's `#address-cells`/`#size-cells`, an
//! optional `bootargs`, and hv's own command line in `xen,xen-bootargs`.

use std::fmt::{self, Write as _};

/// A boot module to describe under `/chosen`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Load address in guest-physical (host) memory.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// The module's own command line (`bootargs`), if any.
    pub bootargs: Option<String>,
}

/// A dom0less domain (Xen's `xen,domain` binding, docs/misc/arm/device-tree/booting.txt):
/// hv's per-domain settings are properties of the node (`memory` in KiB, `cpus`), the
/// guest's command line is the kernel module's `bootargs` and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomU {
    /// Node name under `/chosen` (`domU1`, ...).
    pub name: String,
    /// `memory`: RAM in KiB (hv's default when absent).
    pub memory_kib: Option<u64>,
    /// `cpus`: vCPUs.
    pub cpus: u32,
    /// The kernel (`multiboot,kernel`), with the guest's command line.
    pub kernel: Module,
    /// The initrd (`multiboot,ramdisk`): address and size.
    pub ramdisk: Option<(u64, u64)>,
}

/// What to add to `/chosen`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChosenEdit {
    /// Kernel modules, in the order hv should turn them into d1, d2, ...
    pub modules: Vec<Module>,
    /// hv's command line (`xen,xen-bootargs`); replaces any existing one.
    pub xen_bootargs: Option<String>,
    /// dom0less domains (built by hv after the modules' domains, in this order).
    pub domus: Vec<DomU>,
}

/// Why the DTS could not be edited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtsError {
    /// No `/ { ... };` root node was found.
    NoRoot,
    /// Braces do not balance (line number, 1-based).
    Unbalanced(usize),
    /// A root `#address-cells`/`#size-cells` value could not be parsed.
    BadCells(String),
    /// A value does not fit the number of cells available.
    DoesNotFit {
        /// The value.
        value: u64,
        /// The cell count.
        cells: u32,
    },
    /// `/chosen` already has a node with this name.
    DuplicateNode(String),
}

impl fmt::Display for DtsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRoot => write!(f, "no root node `/ {{ ... }};` in the DTS"),
            Self::Unbalanced(l) => write!(f, "unbalanced braces at DTS line {l}"),
            Self::BadCells(s) => write!(f, "cannot parse root cell size from `{s}`"),
            Self::DoesNotFit { value, cells } => {
                write!(f, "{value:#x} does not fit in {cells} cell(s)")
            }
            Self::DuplicateNode(n) => write!(f, "/chosen already has a node `{n}`"),
        }
    }
}

impl std::error::Error for DtsError {}

/// One source line with the brace depth at its start.
struct Line<'a> {
    text: &'a str,
    depth: usize,
}

/// Splits the DTS into lines annotated with their starting depth, checking
/// that braces balance (braces inside strings do not count).
fn annotate(dts: &str) -> Result<Vec<Line<'_>>, DtsError> {
    let mut depth: usize = 0;
    let mut out = Vec::new();
    let mut in_str = false;
    for (n, text) in dts.lines().enumerate() {
        out.push(Line { text, depth });
        let mut escaped = false;
        for c in text.chars() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_str => escaped = true,
                '"' => in_str = !in_str,
                '{' if !in_str => depth += 1,
                '}' if !in_str => {
                    depth = depth.checked_sub(1).ok_or(DtsError::Unbalanced(n + 1))?
                }
                _ => {}
            }
        }
    }
    if depth != 0 || in_str {
        return Err(DtsError::Unbalanced(dts.lines().count()));
    }
    Ok(out)
}

/// Index of the root node's opening line (`/ {`).
fn root_open(lines: &[Line<'_>]) -> Option<usize> {
    lines
        .iter()
        .position(|l| l.depth == 0 && l.text.trim_start().starts_with("/ {"))
}

/// Index of the line that closes the node opened at `open`.
fn closing(lines: &[Line<'_>], open: usize) -> Option<usize> {
    let d = lines.get(open)?.depth;
    lines
        .iter()
        .enumerate()
        .skip(open + 1)
        .find(|(_, l)| l.depth == d + 1 && l.text.trim() == "};")
        .map(|(i, _)| i)
}

/// Parses a single-cell property value such as `<0x02>` or `<2>`.
fn parse_cell(value: &str) -> Option<u32> {
    let v = value.trim().strip_prefix('<')?.strip_suffix('>')?.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The root node's `#address-cells` and `#size-cells` (defaults 2 and 1 per
/// the devicetree specification when absent).
///
/// # Errors
/// [`DtsError::NoRoot`], [`DtsError::Unbalanced`], or [`DtsError::BadCells`]
/// when a value is not a single cell.
pub fn root_cells(dts: &str) -> Result<(u32, u32), DtsError> {
    let lines = annotate(dts)?;
    let open = root_open(&lines).ok_or(DtsError::NoRoot)?;
    let close = closing(&lines, open).ok_or(DtsError::NoRoot)?;
    let (mut ac, mut sc) = (2, 1);
    for l in lines.get(open + 1..close).unwrap_or_default() {
        if l.depth != 1 {
            continue;
        }
        let t = l.text.trim();
        for (name, slot) in [("#address-cells", &mut ac), ("#size-cells", &mut sc)] {
            if let Some(rest) = t.strip_prefix(name) {
                let value = rest
                    .trim_start()
                    .strip_prefix('=')
                    .and_then(|v| v.trim().strip_suffix(';'))
                    .ok_or_else(|| DtsError::BadCells(t.to_string()))?;
                *slot = parse_cell(value).ok_or_else(|| DtsError::BadCells(t.to_string()))?;
            }
        }
    }
    Ok((ac, sc))
}

/// Splits `value` into `cells` big-endian 32-bit cells, as a DTS `<...>` body.
///
/// # Errors
/// [`DtsError::DoesNotFit`] when the value needs more cells (or `cells` is 0 or above 2).
pub fn cells(value: u64, cells: u32) -> Result<String, DtsError> {
    let fits = match cells {
        1 => value <= u64::from(u32::MAX),
        2 => true,
        _ => false,
    };
    if !fits {
        return Err(DtsError::DoesNotFit { value, cells });
    }
    Ok(if cells == 1 {
        format!("{value:#x}")
    } else {
        format!("{:#x} {:#x}", value >> 32, value & 0xffff_ffff)
    })
}

/// Quotes a string for a DTS property value.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Returns `dts` with `edit` applied to `/chosen` (created if missing).
///
/// # Errors
/// Any [`DtsError`]: no root, unbalanced braces, bad cell sizes, a module
/// address or size that does not fit the root's cells, or a `module@<addr>`
/// node that already exists.
pub fn add_to_chosen(dts: &str, edit: &ChosenEdit) -> Result<String, DtsError> {
    let (ac, sc) = root_cells(dts)?;
    let lines = annotate(dts)?;
    let open = root_open(&lines).ok_or(DtsError::NoRoot)?;
    let root_close = closing(&lines, open).ok_or(DtsError::NoRoot)?;
    let chosen = (open + 1..root_close).find(|&i| {
        lines
            .get(i)
            .is_some_and(|l| l.depth == 1 && l.text.trim() == "chosen {")
    });

    // Body lines (indented for depth 2) to add inside /chosen.
    let mut body = String::new();
    if let Some(args) = &edit.xen_bootargs {
        let _ = writeln!(body, "\t\txen,xen-bootargs = {};", quote(args));
    }
    for m in &edit.modules {
        let name = format!("module@{:x}", m.addr);
        if let Some(c) = chosen {
            let end = closing(&lines, c).unwrap_or(root_close);
            let exists = lines
                .get(c + 1..end)
                .unwrap_or_default()
                .iter()
                .any(|l| l.depth == 2 && l.text.trim() == format!("{name} {{"));
            if exists {
                return Err(DtsError::DuplicateNode(name));
            }
        }
        let _ = writeln!(body, "\n\t\t{name} {{");
        let _ = writeln!(
            body,
            "\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";"
        );
        let _ = writeln!(
            body,
            "\t\t\treg = <{} {}>;",
            cells(m.addr, ac)?,
            cells(m.size, sc)?
        );
        if let Some(args) = &m.bootargs {
            let _ = writeln!(body, "\t\t\tbootargs = {};", quote(args));
        }
        let _ = writeln!(body, "\t\t}};");
    }
    for d in &edit.domus {
        // The node's own cells: two each, so any address and size fit.
        let _ = writeln!(body, "\n\t\t{} {{", d.name);
        let _ = writeln!(body, "\t\t\tcompatible = \"xen,domain\";");
        let _ = writeln!(body, "\t\t\t#address-cells = <0x2>;");
        let _ = writeln!(body, "\t\t\t#size-cells = <0x2>;");
        if let Some(kib) = d.memory_kib {
            let _ = writeln!(body, "\t\t\tmemory = <{}>;", cells(kib, 2)?);
        }
        let _ = writeln!(body, "\t\t\tcpus = <{:#x}>;", d.cpus);
        let k = &d.kernel;
        let _ = writeln!(body, "\t\t\tmodule@{:x} {{", k.addr);
        let _ = writeln!(
            body,
            "\t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";"
        );
        let _ = writeln!(
            body,
            "\t\t\t\treg = <{} {}>;",
            cells(k.addr, 2)?,
            cells(k.size, 2)?
        );
        if let Some(args) = &k.bootargs {
            let _ = writeln!(body, "\t\t\t\tbootargs = {};", quote(args));
        }
        let _ = writeln!(body, "\t\t\t}};");
        if let Some((addr, size)) = d.ramdisk {
            let _ = writeln!(body, "\t\t\tmodule@{addr:x} {{");
            let _ = writeln!(
                body,
                "\t\t\t\tcompatible = \"multiboot,ramdisk\", \"multiboot,module\";"
            );
            let _ = writeln!(
                body,
                "\t\t\t\treg = <{} {}>;",
                cells(addr, 2)?,
                cells(size, 2)?
            );
            let _ = writeln!(body, "\t\t\t}};");
        }
        let _ = writeln!(body, "\t\t}};");
    }

    let mut out = String::with_capacity(dts.len() + body.len() + 64);
    match chosen {
        Some(c) => {
            let end = closing(&lines, c).ok_or(DtsError::Unbalanced(c + 1))?;
            for (i, l) in lines.iter().enumerate() {
                let replaced = edit.xen_bootargs.is_some()
                    && i > c
                    && i < end
                    && l.depth == 2
                    && l.text.trim_start().starts_with("xen,xen-bootargs");
                if i == end {
                    out.push_str(&body);
                }
                if !replaced {
                    out.push_str(l.text);
                    out.push('\n');
                }
            }
        }
        None => {
            for (i, l) in lines.iter().enumerate() {
                if i == root_close {
                    out.push_str("\n\tchosen {\n");
                    out.push_str(&body);
                    out.push_str("\t};\n");
                }
                out.push_str(l.text);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape `dtc -I dtb -O dts` prints for QEMU's virt machine (trimmed).
    const VIRT: &str = "/dts-v1/;

/ {
\tinterrupt-parent = <0x8003>;
\tmodel = \"linux,dummy-virt\";
\t#size-cells = <0x02>;
\t#address-cells = <0x02>;
\tcompatible = \"linux,dummy-virt\";

\tpl011@9000000 {
\t\treg = <0x00 0x9000000 0x00 0x1000>;
\t\tcompatible = \"arm,pl011\", \"arm,primecell\";
\t};

\tplatform-bus@c000000 {
\t\t#address-cells = <0x01>;
\t\t#size-cells = <0x01>;
\t\tcompatible = \"qemu,platform\", \"simple-bus\";
\t};

\tchosen {
\t\tstdout-path = \"/pl011@9000000\";
\t\tkaslr-seed = <0x478bd6d9 0xd857fc70>;
\t};
};
";

    fn module(addr: u64, size: u64) -> Module {
        Module {
            addr,
            size,
            bootargs: None,
        }
    }

    #[test]
    fn root_cells_come_from_the_root_not_children() {
        assert_eq!(root_cells(VIRT), Ok((2, 2)));
        let small = VIRT
            .replace("#size-cells = <0x02>", "#size-cells = <1>")
            .replace("#address-cells = <0x02>", "#address-cells = <0x1>");
        assert_eq!(root_cells(&small), Ok((1, 1)));
    }

    #[test]
    fn missing_cells_use_spec_defaults_and_garbage_is_an_error() {
        let none = VIRT
            .replace("\t#size-cells = <0x02>;\n", "")
            .replace("\t#address-cells = <0x02>;\n", "");
        assert_eq!(root_cells(&none), Ok((2, 1)));
        let bad = VIRT.replace("#size-cells = <0x02>", "#size-cells = <0x02 0x1>");
        assert!(matches!(root_cells(&bad), Err(DtsError::BadCells(_))));
    }

    #[test]
    fn modules_and_bootargs_land_inside_chosen_in_order() {
        let edit = ChosenEdit {
            modules: vec![
                module(0x4c00_0000, 0x31e7),
                Module {
                    addr: 0x4c20_0000,
                    size: 0x2000,
                    bootargs: Some("console=hvc0 x=\"y\"".into()),
                },
            ],
            xen_bootargs: Some("loglvl=info".into()),
            domus: vec![],
        };
        let out = add_to_chosen(VIRT, &edit).unwrap();
        let chosen = out.find("\tchosen {").unwrap();
        let chosen_end = chosen + out[chosen..].find("\n\t};").unwrap();
        let body = &out[chosen..chosen_end];
        assert!(body.contains("stdout-path = \"/pl011@9000000\";"));
        assert!(body.contains("\t\txen,xen-bootargs = \"loglvl=info\";"));
        let m1 = body.find("module@4c000000 {").unwrap();
        let m2 = body.find("module@4c200000 {").unwrap();
        assert!(m1 < m2, "modules keep their order");
        assert!(body.contains("reg = <0x0 0x4c000000 0x0 0x31e7>;"));
        assert!(body.contains("reg = <0x0 0x4c200000 0x0 0x2000>;"));
        assert!(body.contains("bootargs = \"console=hvc0 x=\\\"y\\\"\";"));
        assert_eq!(
            body.matches("compatible = \"multiboot,kernel\", \"multiboot,module\";")
                .count(),
            2
        );
        // Still one balanced tree with the root's other nodes intact.
        assert_eq!(root_cells(&out), Ok((2, 2)));
        assert!(out.contains("platform-bus@c000000 {"));
        assert!(out.trim_end().ends_with("};"));
    }

    #[test]
    fn existing_xen_bootargs_are_replaced_not_duplicated() {
        let with = VIRT.replace(
            "\t\tkaslr-seed",
            "\t\txen,xen-bootargs = \"loglvl=debug\";\n\t\tkaslr-seed",
        );
        let edit = ChosenEdit {
            modules: vec![],
            xen_bootargs: Some("loglvl=warn".into()),
            domus: vec![],
        };
        let out = add_to_chosen(&with, &edit).unwrap();
        assert_eq!(out.matches("xen,xen-bootargs").count(), 1);
        assert!(out.contains("xen,xen-bootargs = \"loglvl=warn\";"));
    }

    #[test]
    fn chosen_is_created_when_missing() {
        let start = VIRT.find("\n\tchosen {").unwrap();
        let end = start + VIRT[start..].find("\t};\n").unwrap() + 4;
        let without = format!("{}{}", &VIRT[..start], &VIRT[end..]);
        assert!(!without.contains("chosen"));
        let out = add_to_chosen(
            &without,
            &ChosenEdit {
                modules: vec![module(0x4c00_0000, 0x100)],
                xen_bootargs: None,
                domus: vec![],
            },
        )
        .unwrap();
        assert!(out.contains("\tchosen {\n"));
        assert!(out.contains("module@4c000000 {"));
        assert_eq!(root_cells(&out), Ok((2, 2)));
    }

    #[test]
    fn one_cell_roots_refuse_values_that_do_not_fit() {
        let small = VIRT
            .replace("#size-cells = <0x02>", "#size-cells = <0x01>")
            .replace("#address-cells = <0x02>", "#address-cells = <0x01>");
        let ok = add_to_chosen(
            &small,
            &ChosenEdit {
                modules: vec![module(0x4c00_0000, 0x10)],
                xen_bootargs: None,
                domus: vec![],
            },
        )
        .unwrap();
        assert!(ok.contains("reg = <0x4c000000 0x10>;"));
        let err = add_to_chosen(
            &small,
            &ChosenEdit {
                modules: vec![module(0x1_0000_0000, 0x10)],
                xen_bootargs: None,
                domus: vec![],
            },
        );
        assert_eq!(
            err,
            Err(DtsError::DoesNotFit {
                value: 0x1_0000_0000,
                cells: 1
            })
        );
    }

    #[test]
    fn duplicate_module_nodes_and_broken_sources_are_errors() {
        let once = add_to_chosen(
            VIRT,
            &ChosenEdit {
                modules: vec![module(0x4c00_0000, 0x10)],
                xen_bootargs: None,
                domus: vec![],
            },
        )
        .unwrap();
        let twice = add_to_chosen(
            &once,
            &ChosenEdit {
                modules: vec![module(0x4c00_0000, 0x10)],
                xen_bootargs: None,
                domus: vec![],
            },
        );
        assert_eq!(
            twice,
            Err(DtsError::DuplicateNode("module@4c000000".into()))
        );
        assert!(matches!(
            add_to_chosen("/ {\n\tchosen {\n};\n", &ChosenEdit::default()),
            Err(DtsError::Unbalanced(_))
        ));
        assert_eq!(
            add_to_chosen("/dts-v1/;\n", &ChosenEdit::default()),
            Err(DtsError::NoRoot)
        );
    }

    #[test]
    fn dom0less_domains_carry_memory_cpus_and_a_clean_command_line() {
        let edit = ChosenEdit {
            modules: vec![],
            xen_bootargs: Some("loglvl=info".into()),
            domus: vec![DomU {
                name: "domU1".into(),
                memory_kib: Some(512 * 1024),
                cpus: 2,
                kernel: Module {
                    addr: 0x4c00_0000,
                    size: 0x2a0_0000,
                    bootargs: Some("console=hvc0 rdinit=/init".into()),
                },
                ramdisk: Some((0x4ec0_0000, 0x1234)),
            }],
        };
        let out = add_to_chosen(VIRT, &edit).unwrap();
        let d = out.find("\t\tdomU1 {").unwrap();
        let body = &out[d..d + out[d..].find("\n\t\t};").unwrap()];
        assert!(body.contains("compatible = \"xen,domain\";"));
        assert!(body.contains("memory = <0x0 0x80000>;"));
        assert!(body.contains("cpus = <0x2>;"));
        assert!(body.contains("reg = <0x0 0x4c000000 0x0 0x2a00000>;"));
        assert!(body.contains("bootargs = \"console=hvc0 rdinit=/init\";"));
        assert!(body.contains("compatible = \"multiboot,ramdisk\", \"multiboot,module\";"));
        assert!(body.contains("reg = <0x0 0x4ec00000 0x0 0x1234>;"));
        assert_eq!(root_cells(&out), Ok((2, 2)));
    }

    #[test]
    fn braces_in_strings_do_not_count() {
        let tricky = VIRT.replace(
            "model = \"linux,dummy-virt\"",
            "model = \"weird { name \\\" }\"",
        );
        assert_eq!(root_cells(&tricky), Ok((2, 2)));
        assert!(add_to_chosen(&tricky, &ChosenEdit::default()).is_ok());
    }
}
