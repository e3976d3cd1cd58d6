//! The contract between hv's portable logic and the CPU.
//!
//! Everything that needs `asm!`, a system-register access or a raw pointer to
//! physical memory sits behind the [`Arch`] and [`PhysMem`] traits. Two
//! implementations exist:
//! - `aarch64` (only on `aarch64-unknown-none`): the real one;
//! - `fake` (host tests): records every call and is deliberately hostile
//!   (2 list registers, a 2-bit VMID space, scripted guest exits).
//!
//! Portable code *decides* (which TLB plan, which exit handler, which vCPU)
//! and calls these hooks to *do*.

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod aarch64;
#[cfg(any(test, feature = "fake-arch"))]
pub mod fake;

use pv_tlb::{PhysAddr, TlbOp};

/// Which vector a guest exit came through.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExitVector {
    /// Synchronous exception from a lower EL (ESR_EL2 describes it).
    Sync,
    /// Physical IRQ taken while the guest ran.
    Irq,
    /// Physical FIQ taken while the guest ran.
    Fiq,
    /// SError taken while the guest ran.
    SError,
}

/// Raw register values captured at a guest exit; decoded by `trap::ExitReason::decode`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RawExit {
    /// The vector taken.
    pub vector: ExitVector,
    /// `ESR_EL2` at the exit.
    pub esr: u64,
    /// `FAR_EL2` at the exit.
    pub far: u64,
    /// `HPFAR_EL2` at the exit, for a synchronous instruction or data abort
    /// from the guest (ESR EC 0x20/0x24); 0 for every other exit (the
    /// aarch64 exit path reads it only then: nested, each read traps to L0).
    pub hpfar: u64,
}

/// A vCPU's general-purpose state: what the trap path saves and restores on
/// every exit. Layout is shared with the assembly in `arch/aarch64/head.rs`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct GuestGprs {
    /// x0..x30.
    pub x: [u64; 31],
    /// The guest's return address (`ELR_EL2`).
    pub pc: u64,
    /// The guest's PSTATE (`SPSR_EL2`).
    pub pstate: u64,
    /// `SP_EL0`.
    pub sp_el0: u64,
}

/// EL1 system registers of a vCPU that hv keeps on the CPU between
/// [`Arch::vcpu_load`] and [`Arch::vcpu_put`] (deferred save/restore, as KVM does on VHE).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
#[repr(usize)]
#[allow(missing_docs)]
pub enum El1Reg {
    SctlrEl1,
    Ttbr0El1,
    Ttbr1El1,
    TcrEl1,
    MairEl1,
    AmairEl1,
    VbarEl1,
    ElrEl1,
    SpsrEl1,
    EsrEl1,
    FarEl1,
    SpEl1,
    ContextidrEl1,
    TpidrEl1,
    TpidrEl0,
    TpidrroEl0,
    CpacrEl1,
    Afsr0El1,
    Afsr1El1,
    ParEl1,
    CntkctlEl1,
    CntvCtlEl0,
    CntvCvalEl0,
    MdscrEl1,
}

impl El1Reg {
    /// Number of registers in [`El1Sysregs`].
    pub const COUNT: usize = El1Reg::MdscrEl1 as usize + 1;

    /// Every register, in [`El1Sysregs`] order.
    pub const ALL: [El1Reg; El1Reg::COUNT] = [
        El1Reg::SctlrEl1,
        El1Reg::Ttbr0El1,
        El1Reg::Ttbr1El1,
        El1Reg::TcrEl1,
        El1Reg::MairEl1,
        El1Reg::AmairEl1,
        El1Reg::VbarEl1,
        El1Reg::ElrEl1,
        El1Reg::SpsrEl1,
        El1Reg::EsrEl1,
        El1Reg::FarEl1,
        El1Reg::SpEl1,
        El1Reg::ContextidrEl1,
        El1Reg::TpidrEl1,
        El1Reg::TpidrEl0,
        El1Reg::TpidrroEl0,
        El1Reg::CpacrEl1,
        El1Reg::Afsr0El1,
        El1Reg::Afsr1El1,
        El1Reg::ParEl1,
        El1Reg::CntkctlEl1,
        El1Reg::CntvCtlEl0,
        El1Reg::CntvCvalEl0,
        El1Reg::MdscrEl1,
    ];
}

/// A vCPU's FP/SIMD state. The real arch layer saves it at every guest exit
/// (hv's own code uses SIMD registers) and moves it in and out of
/// [`El1Sysregs`] in [`Arch::vcpu_load`] / [`Arch::vcpu_put`]; the fake ignores it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct FpState {
    /// V0..V31.
    pub v: [u128; 32],
    /// `FPSR`.
    pub fpsr: u64,
    /// `FPCR`.
    pub fpcr: u64,
}

/// Saved EL1 system-register state of a vCPU, indexed by [`El1Reg`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct El1Sysregs {
    /// Values indexed by `El1Reg as usize`.
    pub regs: [u64; El1Reg::COUNT],
    /// FP/SIMD registers (saved and restored with the EL1 state).
    pub fp: FpState,
    /// Pointer-authentication keys (APIA, APIB, APDA, APDB, APGA; Lo then Hi),
    /// switched by the real arch layer when the CPU has FEAT_PAuth.
    pub pauth_keys: [u64; 10],
}

impl Default for El1Sysregs {
    fn default() -> Self {
        let mut regs = [0; El1Reg::COUNT];
        // SCTLR_EL1 reset value with the RES1 bits set and the MMU off.
        regs[El1Reg::SctlrEl1 as usize] = 0x30d0_0800;
        Self {
            regs,
            fp: FpState::default(),
            pauth_keys: [0; 10],
        }
    }
}

impl El1Sysregs {
    /// Value of `reg`.
    #[must_use]
    pub fn get(&self, reg: El1Reg) -> u64 {
        self.regs[reg as usize]
    }
    /// Set `reg` to `val`.
    pub fn set(&mut self, reg: El1Reg, val: u64) {
        self.regs[reg as usize] = val;
    }
}

/// What a pCPU's EL1 registers hold, as far as the arch layer knows: each
/// entry is exact as of the last read (`vcpu_put`) or write (`vcpu_load`,
/// `write_el1`) of that register. `vcpu_load` uses it to skip writing a
/// register that already holds the value: nested under KVM some EL1 writes
/// trap to L0 (`CNTKCTL_EL12`, the `*_EL02` timer registers).
#[derive(Clone, Copy, Debug, Default)]
pub struct El1Shadow {
    hw: [u64; El1Reg::COUNT],
    known: u32,
}

const _: () = assert!(El1Reg::COUNT <= 32); // `known` is a bit per register

impl El1Shadow {
    /// Nothing known (a pCPU that has not loaded a vCPU yet).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            hw: [0; El1Reg::COUNT],
            known: 0,
        }
    }

    /// `reg` now holds `val` (just read or written).
    pub fn note(&mut self, reg: El1Reg, val: u64) {
        self.hw[reg as usize] = val;
        self.known |= 1 << (reg as u32);
    }

    /// Whether loading `val` into `reg` needs a write; if so, the caller
    /// writes it and the shadow records it.
    pub fn needs_write(&mut self, reg: El1Reg, val: u64) -> bool {
        let bit = 1u32 << (reg as u32);
        if self.known & bit != 0 && self.hw[reg as usize] == val {
            return false;
        }
        self.note(reg, val);
        true
    }

    /// Forget everything (the registers changed behind the shadow's back).
    pub fn forget(&mut self) {
        self.known = 0;
    }
}

/// What the CPU needs to translate a domain's IPAs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stage2Regs {
    /// `VTTBR_EL2`: VMID in bits [63:48] (or [55:48]) and the root table address.
    pub vttbr: u64,
    /// `VTCR_EL2`.
    pub vtcr: u64,
}

/// The per-pCPU hooks portable code calls. One value exists per physical CPU.
pub trait Arch {
    /// Index of this physical CPU (0 = boot CPU).
    fn cpu_index(&self) -> usize;

    /// Make `sysregs`, `stage2` and `vmpidr` current on this CPU for a vCPU
    /// that is about to run here. Called only when another context had the CPU
    /// (lazy switching: a vCPU that comes back after idle is not reloaded).
    fn vcpu_load(&mut self, sysregs: &El1Sysregs, stage2: Stage2Regs, vmpidr: u64);

    /// Save the loaded vCPU's EL1 state into `sysregs` because another context takes the CPU.
    fn vcpu_put(&mut self, sysregs: &mut El1Sysregs);

    /// Read an EL1 register of the loaded vCPU (only between load and put).
    fn read_el1(&self, reg: El1Reg) -> u64;

    /// Write an EL1 register of the loaded vCPU (only between load and put).
    fn write_el1(&mut self, reg: El1Reg, val: u64);

    /// Run the loaded vCPU with `gprs` until its next exit; `gprs` holds the
    /// guest's state at that exit when this returns.
    fn run_vcpu(&mut self, gprs: &mut GuestGprs) -> RawExit;

    /// Execute one TLB maintenance operation or barrier exactly as named.
    fn tlb_op(&mut self, op: TlbOp);

    /// Clean and invalidate the data cache, to the point of coherency, for
    /// host RAM `[pa, pa + len)` through hv's own mapping of it (Xen's
    /// `clean_and_invalidate_dcache_va_range`, what `XEN_DOMCTL_cacheflush`
    /// does for a domain's pages: what the toolstack wrote through its
    /// cacheable mapping reaches memory before the guest reads it with its
    /// MMU and caches off). Complete when this returns. Callers pass guest
    /// pool frames (RAM hv maps); maintenance changes no data.
    fn dcache_clean_inval(&mut self, pa: PhysAddr, len: u64);

    /// The virtual counter (`CNTVCT_EL0`, with hv's own offset of 0).
    fn counter(&self) -> u64;

    /// The counter frequency in Hz (`CNTFRQ_EL0`).
    fn counter_frequency(&self) -> u64;

    /// VMID width this CPU supports (8 or 16; the fake says 2).
    fn vmid_bits(&self) -> u8;

    /// Stage-2 input size hv uses: PARange capped at 48 bits.
    fn ipa_bits(&self) -> u8;

    /// Power the machine off (PSCI SYSTEM_OFF through the DTB's conduit).
    fn system_off(&mut self) -> !;

    /// Translate virtual address `va` of the loaded vCPU to an IPA through
    /// its stage-1 tables (`AT S1E1R` / `AT S1E1W` on the EL1&0 regime; the
    /// guest's `PAR_EL1` is preserved); `None` if stage 1 (or stage 2 on the
    /// table walk) faults. With the guest's MMU off this is the identity.
    /// Xen's Arm hypercall ABI passes guest buffers as virtual addresses:
    /// translate each page separately.
    fn guest_va_to_ipa(&mut self, va: u64, write: bool) -> Option<u64>;

    /// The host CPU's ID register op0 3, op1 0, CRn 0, CRm `crm`, op2 `op2`
    /// (`crm` 1..=7: what `MRS` reads at EL2; hv assumes symmetric CPUs and
    /// may read them once); 0 outside that space. Guests never see it raw:
    /// `crate::idregs` sanitises it.
    fn host_id_reg(&self, crm: u8, op2: u8) -> u64;

    // ---- GICv3 virtual CPU interface (ICH_*_EL2) for the loaded vCPU ----

    /// `ICH_VTR_EL2` (ListRegs in [4:0] = number of list registers - 1,
    /// PRIbits in [31:29]). The fake reports 2 list registers.
    fn ich_vtr(&self) -> u64;
    /// Read `ICH_LR<n>_EL2`.
    fn ich_read_lr(&mut self, n: usize) -> u64;
    /// Write `ICH_LR<n>_EL2`.
    fn ich_write_lr(&mut self, n: usize, val: u64);
    /// Write `ICH_HCR_EL2`.
    fn ich_write_hcr(&mut self, val: u64);
    /// Read `ICH_ELRSR_EL2` (bit n set: LR n holds no interrupt).
    fn ich_elrsr(&mut self) -> u64;
    /// Read `ICH_MISR_EL2` (why a maintenance interrupt is asserted).
    fn ich_misr(&mut self) -> u64;
    /// Read `ICH_VMCR_EL2`.
    fn ich_read_vmcr(&mut self) -> u64;
    /// Write `ICH_VMCR_EL2`.
    fn ich_write_vmcr(&mut self, val: u64);
    /// Read `ICH_AP0R<n>_EL2` (`group1` false) or `ICH_AP1R<n>_EL2`.
    fn ich_read_apr(&mut self, group1: bool, n: usize) -> u64;
    /// Write `ICH_AP0R<n>_EL2` / `ICH_AP1R<n>_EL2`.
    fn ich_write_apr(&mut self, group1: bool, n: usize, val: u64);

    // ---- hv's own physical interrupts ----

    /// Acknowledge hv's highest-priority pending physical interrupt
    /// (`ICC_IAR1_EL1`); `None` when nothing is pending (INTID 1023).
    fn irq_ack(&mut self) -> Option<u32>;
    /// End one of hv's own physical interrupts from [`Arch::irq_ack`]:
    /// priority drop and deactivation (`ICC_EOIR1_EL1` then `ICC_DIR_EL1`:
    /// hv runs with `ICC_CTLR_EL1.EOImode` = 1).
    fn irq_eoi(&mut self, intid: u32);
    /// Priority drop only (`ICC_EOIR1_EL1`) of a physical SPI routed to a
    /// guest ([`crate::irq`]): it stays active until the guest deactivates
    /// the virtual interrupt its list register links to it (HW = 1).
    fn irq_drop_priority(&mut self, intid: u32);
    /// Send hv's kick SGI to pCPU `cpu` (it leaves its guest or its idle wait).
    fn kick(&mut self, cpu: usize);
    /// Arm hv's EL2 timer ([`irq::HYP_TIMER`]) for `deadline` (in [`Arch::counter`]
    /// ticks), or disarm it with `None`.
    fn set_hv_timer(&mut self, deadline: Option<u64>);
    /// Trap the guest's WFE (`HCR_EL2.TWE`) from the next guest entry on
    /// this pCPU, or let it execute. Off when nobody waits for the pCPU:
    /// a trapped WFE only yields, and nested each trap is a round trip to L0.
    fn set_wfe_trap(&mut self, trap: bool);
    /// Wait (WFI) until a physical interrupt is pending for this pCPU (it is
    /// not taken: the caller acknowledges it with [`Arch::irq_ack`]).
    fn wait_for_interrupt(&mut self);
}

/// Physical INTIDs hv uses for itself.
pub mod irq {
    /// hv's kick between pCPUs (SGI 0).
    pub const KICK_SGI: u32 = 0;
    /// The GIC virtual CPU interface maintenance interrupt (PPI 25).
    pub const MAINTENANCE: u32 = 25;
    /// hv's EL2 timer: the EL2 *virtual* timer (`CNTHV_*_EL2`, FEAT_VHE,
    /// PPI 28, SBSA's and QEMU virt's INTID): time slices and blocked vCPUs'
    /// deadlines. Not the EL2 physical timer (`CNTHP_*_EL2`, PPI 26): under
    /// KVM (hv at vEL2) that one runs on the EL1 physical timer offset by
    /// `CNTPOFF_EL2`, which the nested rig's L0 (QEMU TCG without EL3) does
    /// not apply: between a deadline and deadline + offset it asserted while
    /// hv ran and not while L1 handled the exit, an IRQ exit per hv
    /// instruction (results/2026-12-06-nested-boot).
    pub const HYP_TIMER: u32 = 28;
    /// The EL1 virtual timer (PPI 27): the loaded vCPU's timer fired.
    pub const VTIMER: u32 = 27;
}

/// Where host frames come from (hv's frame allocator, or a fake): hv
/// carves the guest page pool (`memops::FrameTable`) out of it at boot.
pub trait FrameSource {
    /// `count` contiguous frames whose first frame number is a multiple of
    /// `align_pages`, not zeroed; `None` when no such run is free.
    fn alloc_frames(&mut self, count: u64, align_pages: u64) -> Option<PhysAddr>;
    /// Give back `count` frames from [`FrameSource::alloc_frames`].
    fn free_frames(&mut self, pa: PhysAddr, count: u64);
}

/// Byte access to host physical memory (RAM only). hv reaches guest memory
/// only through `guest::GuestMemory`, which translates IPAs through the
/// domain's stage-2 tables first and then calls this.
pub trait PhysMem {
    /// Copy `buf.len()` bytes from `pa` into `buf`. `pa..pa+len` must lie in
    /// one RAM frame owned by hv or a domain; callers split at page bounds.
    fn read(&self, pa: PhysAddr, buf: &mut [u8]);
    /// Copy `buf` to `pa` (same rules as [`PhysMem::read`]).
    fn write(&mut self, pa: PhysAddr, buf: &[u8]);
    /// Zero one 4 KiB frame.
    fn zero_frame(&mut self, pa: PhysAddr);
    /// Atomically OR `mask` into the aligned little-endian u64 at `pa` (RAM a
    /// guest may update concurrently, e.g. Xen's shared-info event bitmaps);
    /// returns the old value. The default is a plain read-modify-write (for
    /// single-threaded fakes); hv's arch overrides it with an atomic.
    fn fetch_or_u64(&mut self, pa: PhysAddr, mask: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read(pa, &mut b);
        let old = u64::from_le_bytes(b);
        self.write(pa, &(old | mask).to_le_bytes());
        old
    }
    /// Clean (`clean`) and/or invalidate (`inval`) the data cache lines of
    /// `pa..pa + len` (RAM of one frame) to the point of coherency, for a
    /// guest's non-coherent DMA (`GNTTABOP_cache_flush`). The default does
    /// nothing (fakes have no caches); hv's arch cleans and invalidates
    /// by VA.
    fn dcache_maint(&mut self, pa: PhysAddr, len: usize, clean: bool, inval: bool) {
        let _ = (pa, len, clean, inval);
    }
    /// Atomically AND `mask` into the aligned u64 at `pa`; returns the old value
    /// (see [`PhysMem::fetch_or_u64`]).
    fn fetch_and_u64(&mut self, pa: PhysAddr, mask: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read(pa, &mut b);
        let old = u64::from_le_bytes(b);
        self.write(pa, &(old & mask).to_le_bytes());
        old
    }
    /// Atomically replace the aligned little-endian u32 at `pa` by `new` if
    /// it still holds `current` (RAM a guest updates concurrently: FIFO
    /// event words); returns the value found, which equals `current` exactly
    /// when the exchange happened. An address that is not 4-byte aligned RAM
    /// changes nothing and returns a value other than `current`. The default
    /// is a plain read-compare-write (single-threaded fakes); hv's arch
    /// overrides it with an atomic.
    fn compare_exchange_u32(&mut self, pa: PhysAddr, current: u32, new: u32) -> u32 {
        let mut b = [0u8; 4];
        self.read(pa, &mut b);
        let found = u32::from_le_bytes(b);
        if found == current {
            self.write(pa, &new.to_le_bytes());
        }
        found
    }
}

#[cfg(test)]
mod shadow_tests {
    use super::*;

    /// Issue 14 item 2: a vCPU switch between vCPUs with equal EL1 values
    /// writes none of them again (each write traps to L0 when nested), and
    /// a value changed by `write_el1` or a guest (seen at put) is written.
    #[test]
    fn load_writes_only_what_the_pcpu_does_not_hold() {
        let mut sh = El1Shadow::new();
        let a = El1Sysregs::default();
        let writes = |sh: &mut El1Shadow, regs: &El1Sysregs| {
            (0..El1Reg::COUNT)
                .filter(|&i| {
                    let r = El1Reg::ALL[i];
                    sh.needs_write(r, regs.get(r))
                })
                .count()
        };
        // Nothing known: every register is written.
        assert_eq!(writes(&mut sh, &a), El1Reg::COUNT);
        // The guest ran and changed CNTV_CVAL; put reads everything back.
        let mut put = a;
        put.set(El1Reg::CntvCvalEl0, 1234);
        for r in El1Reg::ALL {
            sh.note(r, put.get(r));
        }
        // Loading a vCPU equal to `a` rewrites only CNTV_CVAL.
        assert_eq!(writes(&mut sh, &a), 1);
        // Loading the same again: nothing.
        assert_eq!(writes(&mut sh, &a), 0);
        // write_el1 notes its value: loading `a` restores that register.
        sh.note(El1Reg::CntkctlEl1, 7);
        assert_eq!(writes(&mut sh, &a), 1);
        // After forget, everything is written again.
        sh.forget();
        assert_eq!(writes(&mut sh, &a), El1Reg::COUNT);
    }
}
