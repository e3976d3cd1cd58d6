//! The nested rig's VMM binary. See the crate library for the portable parts.

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
mod kvm;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cfg = match vmm::Config::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vmm: {e}\n{}", vmm::USAGE);
            return ExitCode::from(2);
        }
    };
    run(cfg)
}

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
fn run(cfg: vmm::Config) -> ExitCode {
    match kvm::run(&cfg) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            println!("VMM: error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
fn run(cfg: vmm::Config) -> ExitCode {
    // Off-target the VMM can still lay out memory and write the DTB (useful for checking it).
    let go = || -> Result<(), vmm::Error> {
        let kernel =
            std::fs::read(&cfg.kernel).map_err(|e| vmm::Error(format!("{}: {e}", cfg.kernel)))?;
        let sizes = cfg
            .modules
            .iter()
            .map(|m| std::fs::metadata(&m.path).map(|md| md.len()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| vmm::Error(format!("module: {e}")))?;
        let mem = cfg.mem_mib << 20;
        let l = vmm::layout(mem, &kernel, &sizes)?;
        let dtb = vmm::build_dtb(&cfg, &l, mem)?;
        if let Some(p) = &cfg.dump_dtb {
            std::fs::write(p, &dtb).map_err(|e| vmm::Error(format!("{p}: {e}")))?;
        }
        println!("VMM: layout {l:x?}; KVM needs aarch64 Linux");
        Ok(())
    };
    match go() {
        Ok(()) => ExitCode::from(1),
        Err(e) => {
            println!("VMM: error: {e}");
            ExitCode::from(1)
        }
    }
}
