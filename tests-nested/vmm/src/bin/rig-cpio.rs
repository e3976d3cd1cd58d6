//! Host tool: writes the rig's L1 initramfs (newc cpio).
//!
//! `rig-cpio OUT SPEC...` where SPEC is `dir:PATH`, `file:PATH=HOSTFILE[:MODE]` (octal, default
//! 755), `sym:PATH=TARGET` or `cdev:PATH=MAJOR,MINOR`. Paths are archive paths without a
//! leading slash; parents must come first.

use std::process::ExitCode;
use vmm::cpio::{newc, Entry};

fn parse(spec: &str) -> Result<Entry, String> {
    let (kind, rest) = spec.split_once(':').ok_or(format!("bad spec {spec:?}"))?;
    let kv = || rest.split_once('=').ok_or(format!("bad spec {spec:?}"));
    Ok(match kind {
        "dir" => Entry::Dir(rest.into(), 0o755),
        "file" => {
            let (p, src) = kv()?;
            let (src, mode) = match src.rsplit_once(':') {
                Some((s, m)) if m.chars().all(|c| c.is_digit(8)) && !m.is_empty() => {
                    (s, u32::from_str_radix(m, 8).map_err(|e| e.to_string())?)
                }
                _ => (src, 0o755),
            };
            let data = std::fs::read(src).map_err(|e| format!("{src}: {e}"))?;
            Entry::File(p.into(), mode, data)
        }
        "sym" => {
            let (p, t) = kv()?;
            Entry::Symlink(p.into(), t.into())
        }
        "cdev" => {
            let (p, d) = kv()?;
            let (ma, mi) = d.split_once(',').ok_or(format!("bad device {d:?}"))?;
            let n = |s: &str| s.parse::<u32>().map_err(|e| format!("{s}: {e}"));
            Entry::CharDev(p.into(), n(ma)?, n(mi)?)
        }
        _ => return Err(format!("unknown kind in {spec:?}")),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, specs)) = args.split_first() else {
        eprintln!("usage: rig-cpio OUT dir:P | file:P=SRC[:MODE] | sym:P=T | cdev:P=MAJ,MIN ...");
        return ExitCode::from(2);
    };
    let entries = match specs
        .iter()
        .map(|s| parse(s))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("rig-cpio: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::write(out, newc(&entries)) {
        eprintln!("rig-cpio: {out}: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
