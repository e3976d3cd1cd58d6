//! Where things are and how they get built: the repository, the cargo target
//! directory (`$CARGO_TARGET_DIR` if set, else `<repo>/target`), the runner's
//! build directory (`<target>/hvrun`), cargo, llvm-objcopy, dtc and QEMU.

use crate::dts::{self, ChosenEdit};
use crate::qemu;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The bare-metal target hv and the payloads are built for.
pub const TARGET: &str = "aarch64-unknown-none";
/// The guest payload binaries under `tests-nested/payloads`.
pub const PAYLOADS: [&str; 2] = ["guest-hello", "guest-fault"];

/// The directories the runner works with.
#[derive(Clone, Debug)]
pub struct Paths {
    /// Repository root.
    pub repo: PathBuf,
    /// Cargo's target directory.
    pub target: PathBuf,
    /// The runner's build directory: flat binaries, DTBs, serial logs.
    pub out: PathBuf,
}

impl Paths {
    /// Finds the repository (this crate's parent) and the target directory.
    pub fn discover() -> Self {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let cwd = std::env::current_dir().unwrap_or_else(|_| repo.clone());
        let target = target_dir(
            std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
            &cwd,
            &repo,
        );
        let out = target.join("hvrun");
        Self { repo, target, out }
    }

    /// The ELF cargo produces for `bin` in release mode for [`TARGET`].
    pub fn elf(&self, bin: &str) -> PathBuf {
        self.target.join(TARGET).join("release").join(bin)
    }

    /// The flat binary the runner makes from it.
    pub fn flat(&self, bin: &str) -> PathBuf {
        self.out.join(format!("{bin}.bin"))
    }
}

/// `$CARGO_TARGET_DIR` (relative to `cwd` when relative), else `<repo>/target`.
pub fn target_dir(env: Option<PathBuf>, cwd: &Path, repo: &Path) -> PathBuf {
    match env {
        Some(p) if p.as_os_str().is_empty() => repo.join("target"),
        Some(p) if p.is_absolute() => p,
        Some(p) => cwd.join(p),
        None => repo.join("target"),
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn output(cmd: &mut Command, what: &str) -> Result<String, String> {
    let o = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if !o.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The cargo that runs us (`$CARGO`), else `cargo` on the PATH.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Finds llvm-objcopy: rustup's llvm-tools component of the pinned
/// toolchain, else `llvm-objcopy` on the PATH.
///
/// # Errors
/// A message saying how to install it.
pub fn objcopy(paths: &Paths) -> Result<PathBuf, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = output(
        Command::new(&rustc)
            .arg("--print")
            .arg("sysroot")
            .current_dir(&paths.repo),
        "rustc --print sysroot",
    )?;
    let vv = output(
        Command::new(&rustc).arg("-vV").current_dir(&paths.repo),
        "rustc -vV",
    )?;
    let host = vv
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or("x86_64-unknown-linux-gnu")
        .trim()
        .to_string();
    let candidate = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-objcopy");
    if candidate.is_file() {
        return Ok(candidate);
    }
    if Command::new("llvm-objcopy")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(PathBuf::from("llvm-objcopy"));
    }
    Err(format!(
        "llvm-objcopy not found at {} nor on the PATH: run `rustup component add llvm-tools` (ci/setup.sh does)",
        candidate.display()
    ))
}

/// Checks that QEMU and dtc can be started.
///
/// # Errors
/// A message naming the missing tool and `ci/setup.sh`.
pub fn check_tools() -> Result<(), String> {
    let q = qemu::qemu_binary();
    for (tool, arg) in [(q.as_str(), "--version"), ("dtc", "--version")] {
        let ok = Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err(format!(
                "`{tool}` is missing: run `bash ci/setup.sh` (installs qemu-system-arm from bookworm-backports and device-tree-compiler)"
            ));
        }
    }
    Ok(())
}

/// Builds hv and the payloads for [`TARGET`] in release mode and writes flat
/// binaries (`llvm-objcopy -O binary`) to the build directory.
///
/// # Errors
/// A message naming the step that failed.
pub fn build(paths: &Paths) -> Result<(), String> {
    std::fs::create_dir_all(&paths.out)
        .map_err(|e| format!("cannot create {}: {e}", paths.out.display()))?;
    let r = build_images(paths);
    if r.is_err() {
        // A failed build must not leave older images behind for `--no-build`.
        for bin in std::iter::once("hv").chain(PAYLOADS) {
            let _ = std::fs::remove_file(paths.flat(bin));
        }
    }
    r
}

/// Moves `new` over `dest` unless `dest` already has the same bytes (then `new` is
/// removed and `dest`, with its modification time, is kept). Returns whether `dest`
/// changed. hv's build embeds guest-hello's flat Image and rebuilds when its time
/// changes: an unchanged image must keep its time, or every run rebuilds hv.
///
/// # Errors
/// When the files cannot be read, renamed or removed.
pub fn replace_if_changed(new: &Path, dest: &Path) -> std::io::Result<bool> {
    let fresh = std::fs::read(new)?;
    if std::fs::read(dest).is_ok_and(|old| old == fresh) {
        std::fs::remove_file(new)?;
        return Ok(false);
    }
    std::fs::rename(new, dest)?;
    Ok(true)
}

fn build_images(paths: &Paths) -> Result<(), String> {
    // Payloads first: hv embeds guest-hello's flat Image as its demo default
    // (HV_DEFAULT_GUEST, read by hv/build.rs), so it runs a guest even when
    // started with no boot module.
    let mut cmd = Command::new(cargo());
    cmd.current_dir(&paths.repo)
        .env("CARGO_TARGET_DIR", &paths.target)
        .args(["build", "--release", "--target", TARGET]);
    for p in PAYLOADS {
        cmd.args(["-p", p]);
    }
    eprintln!("hvrun: building {} for {TARGET}", PAYLOADS.join(", "));
    run(&mut cmd, "cargo build (payloads)")?;
    let objcopy = objcopy(paths)?;
    let flatten = |bin: &str| -> Result<(), String> {
        let elf = paths.elf(bin);
        let flat = paths.flat(bin);
        let tmp = flat.with_extension("bin.new");
        run(
            Command::new(&objcopy)
                .arg("-O")
                .arg("binary")
                .arg(&elf)
                .arg(&tmp),
            &format!("llvm-objcopy {}", elf.display()),
        )?;
        replace_if_changed(&tmp, &flat)
            .map_err(|e| format!("cannot write {}: {e}", flat.display()))?;
        eprintln!("hvrun: {} -> {}", elf.display(), flat.display());
        Ok(())
    };
    for bin in PAYLOADS {
        flatten(bin)?;
    }
    let demo = paths.flat("guest-hello");
    let mut cmd = Command::new(cargo());
    cmd.current_dir(&paths.repo)
        .env("CARGO_TARGET_DIR", &paths.target)
        .env("HV_DEFAULT_GUEST", &demo)
        .args(["build", "--release", "--target", TARGET, "-p", "hv"]);
    eprintln!(
        "hvrun: building hv for {TARGET} (embedded demo guest: {})",
        demo.display()
    );
    run(&mut cmd, "cargo build (hv)")?;
    flatten("hv")
}

/// Dumps QEMU's DTB for `smp` CPUs, adds `edit` to `/chosen` and compiles the
/// result to `<out>/<name>.dtb` (keeping the `.dts` files next to it).
///
/// # Errors
/// A message naming the step that failed.
pub fn prepare_dtb(
    paths: &Paths,
    smp: u32,
    edit: &ChosenEdit,
    name: &str,
) -> Result<PathBuf, String> {
    prepare_dtb_mem(paths, smp, qemu::MEMORY, edit, name)
}

/// [`prepare_dtb`] for a machine with `mem` of RAM (QEMU's `-m`).
///
/// # Errors
/// A message naming the step that failed.
pub fn prepare_dtb_mem(
    paths: &Paths,
    smp: u32,
    mem: &str,
    edit: &ChosenEdit,
    name: &str,
) -> Result<PathBuf, String> {
    let tag = if mem == qemu::MEMORY {
        String::new()
    } else {
        format!("-m{mem}")
    };
    let base_dtb = paths.out.join(format!("qemu-virt-smp{smp}{tag}.dtb"));
    let base_dts = paths.out.join(format!("qemu-virt-smp{smp}{tag}.dts"));
    let dts_path = paths.out.join(format!("{name}.dts"));
    let dtb_path = paths.out.join(format!("{name}.dtb"));
    let mut dump = Command::new(qemu::qemu_binary());
    qemu::die_with_parent(&mut dump);
    output(
        dump.args(qemu::machine_args_mem(smp, mem, Some(&base_dtb))),
        "qemu dumpdtb",
    )?;
    run(
        Command::new("dtc")
            .args(["-q", "-I", "dtb", "-O", "dts", "-o"])
            .arg(&base_dts)
            .arg(&base_dtb),
        "dtc (decompile QEMU's DTB)",
    )?;
    let src = std::fs::read_to_string(&base_dts)
        .map_err(|e| format!("cannot read {}: {e}", base_dts.display()))?;
    let edited =
        dts::add_to_chosen(&src, edit).map_err(|e| format!("{}: {e}", base_dts.display()))?;
    std::fs::write(&dts_path, edited)
        .map_err(|e| format!("cannot write {}: {e}", dts_path.display()))?;
    run(
        Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtb_path)
            .arg(&dts_path),
        "dtc (compile the edited DTS)",
    )?;
    Ok(dtb_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_image_keeps_its_file_and_time() {
        let dir = std::env::temp_dir().join(format!("hvrun-replace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (new, dest) = (dir.join("a.bin.new"), dir.join("a.bin"));
        std::fs::write(&dest, b"image").unwrap();
        let old_time = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        std::fs::File::options()
            .write(true)
            .open(&dest)
            .unwrap()
            .set_modified(old_time)
            .unwrap();
        std::fs::write(&new, b"image").unwrap();
        assert!(!replace_if_changed(&new, &dest).unwrap());
        assert!(!new.exists());
        let meta = std::fs::metadata(&dest).unwrap();
        assert_eq!(meta.modified().unwrap(), old_time, "the time must not move");
        std::fs::write(&new, b"image 2").unwrap();
        assert!(replace_if_changed(&new, &dest).unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), b"image 2");
        std::fs::write(&new, b"x").unwrap();
        std::fs::remove_file(&dest).unwrap();
        assert!(replace_if_changed(&new, &dest).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn target_dir_honours_cargo_target_dir() {
        let repo = Path::new("/r");
        let cwd = Path::new("/w");
        assert_eq!(target_dir(None, cwd, repo), PathBuf::from("/r/target"));
        assert_eq!(
            target_dir(Some("/t".into()), cwd, repo),
            PathBuf::from("/t")
        );
        assert_eq!(
            target_dir(Some("rel".into()), cwd, repo),
            PathBuf::from("/w/rel")
        );
        assert_eq!(
            target_dir(Some("".into()), cwd, repo),
            PathBuf::from("/r/target")
        );
    }

    #[test]
    fn paths_name_release_elves_and_flat_binaries() {
        let p = Paths {
            repo: "/r".into(),
            target: "/t".into(),
            out: "/t/hvrun".into(),
        };
        assert_eq!(
            p.elf("hv"),
            PathBuf::from("/t/aarch64-unknown-none/release/hv")
        );
        assert_eq!(
            p.flat("guest-hello"),
            PathBuf::from("/t/hvrun/guest-hello.bin")
        );
    }
}
