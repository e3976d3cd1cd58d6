//! KVM on aarch64 Linux: a VM whose vCPUs start at vEL2 (KVM_ARM_VCPU_HAS_EL2) with an
//! in-kernel vGICv3, the guest hypervisor and its modules loaded, and a PL011 emulated on
//! MMIO exits. Steps follow Documentation/virt/kvm/api.rst and devices/arm-vgic-v3.rst.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
    kvm_userspace_memory_region, kvm_vcpu_init, KVM_ARM_VCPU_HAS_EL2, KVM_ARM_VCPU_POWER_OFF,
    KVM_ARM_VCPU_PSCI_0_2, KVM_DEV_ARM_VGIC_CTRL_INIT, KVM_DEV_ARM_VGIC_GRP_ADDR,
    KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_REG_ARM64, KVM_REG_ARM_CORE, KVM_REG_SIZE_U64,
    KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
    KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};
use vmm::{build_dtb, layout, Config, Error, Pl011, Stamp, GICD_BASE, GICR_BASE, RAM_BASE};

// include/uapi/linux/kvm.h (Linux 6.16+): not in kvm-bindings 0.14.
const KVM_CAP_ARM_EL2: u64 = 240;
const KVM_CAP_ARM_EL2_E2H0: u64 = 241;

fn kerr(what: &str) -> impl Fn(kvm_ioctls::Error) -> Error + '_ {
    move |e| Error(format!("{what}: {e}"))
}

/// Anonymous host memory backing guest RAM.
struct GuestRam {
    ptr: *mut u8,
    size: usize,
}

// SAFETY: the mapping lives as long as the process (never unmapped) and the VMM only writes
// it before the vCPUs start; the guest's own accesses are not Rust accesses.
unsafe impl Send for GuestRam {}
// SAFETY: as above.
unsafe impl Sync for GuestRam {}

impl GuestRam {
    fn new(size: usize) -> Result<Self, Error> {
        // SAFETY: an anonymous private mapping at an address the kernel picks aliases nothing.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error(format!(
                "mmap {size} bytes: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(GuestRam {
            ptr: p.cast(),
            size,
        })
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), Error> {
        let off = gpa.checked_sub(RAM_BASE).map(|o| o as usize);
        match off {
            Some(o) if o.checked_add(data.len()).is_some_and(|e| e <= self.size) => {
                // SAFETY: o + len <= size (checked above), so the pointer stays inside the mapping.
                let dst = unsafe { self.ptr.add(o) };
                // SAFETY: [dst, dst + len) is inside the live mapping, which no vCPU runs on yet
                // and which cannot overlap `data` (a Rust allocation).
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
                Ok(())
            }
            _ => Err(Error(format!(
                "write of {} bytes at {gpa:#x} is outside RAM",
                data.len()
            ))),
        }
    }
}

/// KVM_REG_ARM_CORE id of the 64-bit field at byte `off` of `struct kvm_regs`.
fn core_reg(off: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | u64::from(KVM_REG_ARM_CORE) | (off / 4) as u64
}
// struct kvm_regs starts with struct user_pt_regs { u64 regs[31]; u64 sp; u64 pc; u64 pstate; }.
const REG_X0: usize = 0;
const REG_PC: usize = 32 * 8;
const REG_PSTATE: usize = 33 * 8;

/// KVM_GET_STATS_FD = _IO(KVMIO, 0xce) (include/uapi/linux/kvm.h).
const KVM_GET_STATS_FD: libc::c_ulong = 0xae00 | 0xce;

/// Opens the binary stats file of a vCPU.
fn stats_fd(v: &VcpuFd) -> Result<std::fs::File, Error> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd (or -1).
    let fd = unsafe { libc::ioctl(v.as_raw_fd(), KVM_GET_STATS_FD as _) };
    if fd < 0 {
        return Err(Error(format!(
            "KVM_GET_STATS_FD: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Reads all single-valued stats of one vCPU.
fn read_stats(f: &std::fs::File) -> Vec<vmm::Stat> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 * 1024];
    match f.read_at(&mut buf, 0) {
        Ok(n) => vmm::parse_kvm_stats(&buf[..n]).unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

fn stat(stats: &[vmm::Stat], name: &str) -> u64 {
    stats.iter().find(|s| s.name == name).map_or(0, |s| s.value)
}

struct Shared {
    stats: Vec<std::fs::File>,
    uart: Mutex<Pl011>,
    stamp: Stamp,
    unknown_mmio: AtomicU64,
    done: AtomicBool,
    /// `--exit-stamps`: lines carry the traps to L0 counted when they began.
    exit_stamps: bool,
    /// MMIO exits the emulated UART handled (the console's own traps).
    console_exits: AtomicU64,
    /// Traps to L0 (minus console exits) when the line being written began.
    line_start_exits: AtomicU64,
}

fn out(sh: &Shared, text: &str) {
    if sh.exit_stamps {
        let n = sh.line_start_exits.load(Ordering::SeqCst);
        println!("{}", sh.stamp.line_exits(text, n));
    } else {
        println!("{}", sh.stamp.line(text));
    }
}

/// KVM exits of all vCPUs, not counting the console's own MMIO exits.
fn l0_exits(sh: &Shared) -> u64 {
    let all: u64 = sh.stats.iter().map(|f| stat(&read_stats(f), "exits")).sum();
    all.saturating_sub(sh.console_exits.load(Ordering::SeqCst))
}

/// Builds and runs the VM; returns the process exit status.
pub fn run(c: &Config) -> Result<u8, Error> {
    let stamp = Stamp(Instant::now());
    let mut sh = Shared {
        stats: Vec::new(),
        uart: Mutex::new(Pl011::default()),
        stamp,
        unknown_mmio: 0.into(),
        done: AtomicBool::new(false),
        exit_stamps: c.exit_stamps,
        console_exits: 0.into(),
        line_start_exits: 0.into(),
    };
    let kvm = Kvm::new().map_err(kerr("open /dev/kvm"))?;
    let limit = kvm.get_host_ipa_limit();
    let el2 = kvm.check_extension_raw(KVM_CAP_ARM_EL2);
    let e2h0 = kvm.check_extension_raw(KVM_CAP_ARM_EL2_E2H0);
    let ipa = if c.ipa_bits == 0 {
        limit as u32
    } else {
        c.ipa_bits
    };
    out(&sh, &format!(
        "VMM: KVM api {} IPA limit {limit} EL2 {el2} EL2_E2H0 {e2h0}; VM IPA {ipa} bits, {} vCPUs, {} MiB",
        kvm.get_api_version(), c.cpus, c.mem_mib));
    if el2 <= 0 {
        return Err(Error(
            "KVM_CAP_ARM_EL2 missing: boot L1 with kvm-arm.mode=nested".into(),
        ));
    }
    if ipa as i32 > limit {
        return Err(Error(format!(
            "IPA {ipa} bits above the host limit {limit}"
        )));
    }
    // KVM_VM_TYPE_ARM_IPA_SIZE(bits): the low 8 bits of the machine type.
    let vm = kvm
        .create_vm_with_type(u64::from(ipa))
        .map_err(kerr("KVM_CREATE_VM"))?;

    let mem_size = c.mem_mib << 20;
    let ram = GuestRam::new(mem_size as usize)?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: RAM_BASE,
        memory_size: mem_size,
        userspace_addr: ram.ptr as u64,
    };
    // SAFETY: the region is a live anonymous mapping of exactly memory_size bytes that is
    // never unmapped while the VM exists.
    unsafe { vm.set_user_memory_region(region) }.map_err(kerr("KVM_SET_USER_MEMORY_REGION"))?;

    // Load the guest hypervisor, the modules and the DTB.
    let read = |p: &str| std::fs::read(p).map_err(|e| Error(format!("{p}: {e}")));
    let kernel = read(&c.kernel)?;
    let mods = c
        .modules
        .iter()
        .map(|m| read(&m.path))
        .collect::<Result<Vec<_>, _>>()?;
    let sizes: Vec<u64> = mods.iter().map(|m| m.len() as u64).collect();
    let l = layout(mem_size, &kernel, &sizes)?;
    ram.write(l.kernel_addr, &kernel)?;
    for (m, &(addr, _)) in mods.iter().zip(&l.modules) {
        ram.write(addr, m)?;
    }
    let dtb = build_dtb(c, &l, mem_size)?;
    if dtb.len() as u64 > vmm::DTB_MAX {
        return Err(Error("DTB too large".into()));
    }
    ram.write(l.dtb_addr, &dtb)?;
    if let Some(p) = &c.dump_dtb {
        std::fs::write(p, &dtb).map_err(|e| Error(format!("{p}: {e}")))?;
    }
    out(
        &sh,
        &format!(
            "VMM: kernel at {:#x}, dtb at {:#x}, modules {:x?}",
            l.kernel_addr, l.dtb_addr, l.modules
        ),
    );

    // In-kernel vGICv3: an NV vCPU without one fails KVM_RUN with EAGAIN.
    let mut gicdev = kvm_create_device {
        type_: kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
        fd: 0,
        flags: 0,
    };
    let gic = vm
        .create_device(&mut gicdev)
        .map_err(kerr("KVM_CREATE_DEVICE vGICv3"))?;
    for (attr, addr) in [
        (KVM_VGIC_V3_ADDR_TYPE_DIST, GICD_BASE),
        (KVM_VGIC_V3_ADDR_TYPE_REDIST, GICR_BASE),
    ] {
        let a = kvm_device_attr {
            group: KVM_DEV_ARM_VGIC_GRP_ADDR,
            attr: u64::from(attr),
            addr: &addr as *const u64 as u64,
            flags: 0,
        };
        gic.set_device_attr(&a).map_err(kerr("vGIC address"))?;
    }

    let mut kvi = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi)
        .map_err(kerr("KVM_ARM_PREFERRED_TARGET"))?;
    kvi.features[0] |= (1 << KVM_ARM_VCPU_PSCI_0_2) | (1 << KVM_ARM_VCPU_HAS_EL2);
    let mut vcpus = Vec::new();
    for i in 0..c.cpus {
        let v = vm
            .create_vcpu(u64::from(i))
            .map_err(kerr("KVM_CREATE_VCPU"))?;
        let mut k = kvi;
        if i > 0 {
            // Secondaries wait for PSCI CPU_ON (handled in the kernel).
            k.features[0] |= 1 << KVM_ARM_VCPU_POWER_OFF;
        }
        v.vcpu_init(&k)
            .map_err(kerr("KVM_ARM_VCPU_INIT (HAS_EL2)"))?;
        vcpus.push(v);
    }
    for v in &vcpus {
        sh.stats.push(stats_fd(v)?);
    }
    let sh = Arc::new(sh);
    let init = kvm_device_attr {
        group: KVM_DEV_ARM_VGIC_GRP_CTRL,
        attr: u64::from(KVM_DEV_ARM_VGIC_CTRL_INIT),
        addr: 0,
        flags: 0,
    };
    gic.set_device_attr(&init).map_err(kerr("vGIC CTRL_INIT"))?;

    let boot = &vcpus[0];
    boot.set_one_reg(core_reg(REG_PC), &l.kernel_addr.to_le_bytes())
        .map_err(kerr("set PC"))?;
    boot.set_one_reg(core_reg(REG_X0), &l.dtb_addr.to_le_bytes())
        .map_err(kerr("set x0"))?;
    let mut ps = [0u8; 8];
    boot.get_one_reg(core_reg(REG_PSTATE), &mut ps)
        .map_err(kerr("get PSTATE"))?;
    out(
        &sh,
        &format!(
            "VMM: vCPU0 PSTATE {:#x} (EL{}); entering guest hypervisor",
            u64::from_le_bytes(ps),
            (u64::from_le_bytes(ps) >> 2) & 3
        ),
    );

    // Watchdog.
    let (tx, rx) = std::sync::mpsc::channel::<u8>();
    {
        let tx = tx.clone();
        let t = c.timeout_s;
        let sh = sh.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(t));
            out(&sh, &format!("VMM: timeout after {t} s"));
            let _ = tx.send(3);
        });
    }
    for (i, v) in vcpus.into_iter().enumerate() {
        let tx = tx.clone();
        let sh = sh.clone();
        std::thread::spawn(move || {
            let code = vcpu_loop(i, v, &sh);
            let _ = tx.send(code);
        });
    }
    let code = rx.recv().unwrap_or(1);
    sh.done.store(true, Ordering::SeqCst);
    for (i, f) in sh.stats.iter().enumerate() {
        let s = read_stats(f);
        let pick = [
            "exits",
            "hvc_exit_stat",
            "wfe_exit_stat",
            "wfi_exit_stat",
            "mmio_exit_user",
            "mmio_exit_kernel",
            "signal_exits",
            "halt_wakeup",
        ];
        let line: Vec<String> = pick
            .iter()
            .map(|n| format!("{n}={}", stat(&s, n)))
            .collect();
        out(&sh, &format!("VMM: vCPU{i} KVM stats: {}", line.join(" ")));
    }
    let pending = std::mem::take(&mut sh.uart.lock().map_err(|_| Error("uart lock".into()))?.line);
    if !pending.is_empty() {
        out(&sh, &String::from_utf8_lossy(&pending));
    }
    // Keep `vm`, `gic` and `ram` alive until here; the process exits right after.
    drop((gic, vm, ram));
    Ok(code)
}

/// Runs one vCPU until the VM ends; returns the exit status the process should have.
fn vcpu_loop(i: usize, mut v: VcpuFd, sh: &Shared) -> u8 {
    loop {
        if sh.done.load(Ordering::SeqCst) {
            return 0;
        }
        match v.run() {
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                let mut b = [0u8; 4];
                let n = data.len().min(4);
                b[..n].copy_from_slice(&data[..n]);
                let val = u32::from_le_bytes(b);
                if (vmm::UART_BASE..vmm::UART_BASE + vmm::UART_SIZE).contains(&addr) {
                    sh.console_exits.fetch_add(1, Ordering::SeqCst);
                    let line = sh.uart.lock().ok().and_then(|mut u| {
                        // The first byte of a line: note the traps to L0 so far.
                        if sh.exit_stamps && u.line.is_empty() && addr == vmm::UART_BASE {
                            sh.line_start_exits.store(l0_exits(sh), Ordering::SeqCst);
                        }
                        u.write(addr - vmm::UART_BASE, val)
                    });
                    if let Some(l) = line {
                        out(sh, &l);
                    }
                } else {
                    unknown_mmio(sh, i, "write", addr);
                }
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                let val = if (vmm::UART_BASE..vmm::UART_BASE + vmm::UART_SIZE).contains(&addr) {
                    sh.console_exits.fetch_add(1, Ordering::SeqCst);
                    u64::from(
                        sh.uart
                            .lock()
                            .map(|u| u.read(addr - vmm::UART_BASE))
                            .unwrap_or(0),
                    )
                } else if addr == vmm::EXITS_BASE {
                    sh.stats.iter().map(|f| stat(&read_stats(f), "exits")).sum()
                } else if addr == vmm::EXITS_BASE + 8 {
                    sh.stats.get(i).map_or(0, |f| stat(&read_stats(f), "exits"))
                } else {
                    unknown_mmio(sh, i, "read", addr);
                    0
                };
                let b = val.to_le_bytes();
                let n = data.len().min(8);
                data[..n].copy_from_slice(&b[..n]);
            }
            Ok(VcpuExit::SystemEvent(t, d)) => {
                let (what, code) = match t {
                    KVM_SYSTEM_EVENT_SHUTDOWN => ("PSCI SYSTEM_OFF", 0),
                    KVM_SYSTEM_EVENT_RESET => ("PSCI SYSTEM_RESET", 0),
                    KVM_SYSTEM_EVENT_CRASH => ("crash", 1),
                    _ => ("unknown system event", 1),
                };
                out(sh, &format!("VMM: vCPU{i}: {what} (type {t}, data {d:x?})"));
                return code;
            }
            Ok(VcpuExit::Hlt) | Ok(VcpuExit::Shutdown) => {
                out(sh, &format!("VMM: vCPU{i}: shutdown"));
                return 0;
            }
            Ok(other) => {
                out(sh, &format!("VMM: vCPU{i}: unexpected exit {other:?}"));
                dump(&v, sh, i);
                return 1;
            }
            Err(e) if e.errno() == libc::ENOSYS => {
                out(
                    sh,
                    &format!(
                        "VMM: vCPU{i}: KVM_RUN: ENOSYS: MMIO by an instruction without a valid \
                     syndrome (ISV = 0, e.g. ldp/stp or writeback); use plain ldr/str"
                    ),
                );
                dump(&v, sh, i);
                return 1;
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                if e.errno() == libc::EAGAIN {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(e) => {
                out(sh, &format!("VMM: vCPU{i}: KVM_RUN failed: {e}"));
                dump(&v, sh, i);
                return 1;
            }
        }
    }
}

fn unknown_mmio(sh: &Shared, i: usize, what: &str, addr: u64) {
    let n = sh.unknown_mmio.fetch_add(1, Ordering::Relaxed);
    if n < 16 {
        out(
            sh,
            &format!("VMM: vCPU{i}: unbacked MMIO {what} at {addr:#x} (RAZ/WI)"),
        );
    }
}

fn dump(v: &VcpuFd, sh: &Shared, i: usize) {
    let mut b = [0u8; 8];
    let mut get = |off| {
        v.get_one_reg(core_reg(off), &mut b)
            .map(|_| u64::from_le_bytes(b))
            .unwrap_or(u64::MAX)
    };
    let (pc, ps) = (get(REG_PC), get(REG_PSTATE));
    out(sh, &format!("VMM: vCPU{i}: pc {pc:#x} pstate {ps:#x}"));
}
