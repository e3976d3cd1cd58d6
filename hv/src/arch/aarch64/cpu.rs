//! The real [`Arch`] and [`PhysMem`] implementations.

use super::head::hv_guest_enter;
use super::percpu;
use super::sysreg::{isb, read_sysreg, write_sysreg};
use super::{psci, ExitRecord};
use crate::arch::{
    Arch, El1Reg, El1Shadow, El1Sysregs, ExitVector, GuestGprs, PhysMem, RawExit, Stage2Regs,
};
use crate::bootinfo::{FixedVec, PsciConduit, MAX_MEMORY};
use crate::mm::tlbi::{ipas2_operand, range_steps, RangeStep};
use crate::mm::MemRange;
use memops::TableMem;
use pv_tlb::inval::InvalidationSet;
use pv_tlb::{PhysAddr, TlbOp, Vmid, PAGE_SIZE};

/// `HCR_EL2` while hv runs and while guests run (hv keeps TGE = 0 throughout,
/// so `TLBI *E1*` at EL2 always target the EL1&0 regime of the current VMID).
pub const HCR_GUEST: u64 = (1 << 0)   // VM: stage-2 translation
    | (1 << 1)                        // SWIO: set/way invalidate -> clean+invalidate
    | (1 << 2)                        // PTW: protected table walk
    | (1 << 3)                        // FMO: FIQs to EL2
    | (1 << 4)                        // IMO: IRQs to EL2
    | (1 << 5)                        // AMO: SErrors to EL2
    | (1 << 9)                        // FB: broadcast TLB/IC maintenance
    | (1 << 10)                       // BSU = inner shareable
    | (1 << 13)                       // TWI: trap WFI
    | (1 << 14)                       // TWE: trap WFE (a yield: Linux waits for another vCPU's lock/IPI on WFE; as Xen's default vwfi=trap); cleared while nobody waits for the pCPU (Arch::set_wfe_trap)
    | (1 << 18)                       // TID3: trap ID register reads (crate::idregs)
    | (1 << 19)                       // TSC: trap SMC
    | (1 << 20)                       // TIDCP: trap IMPDEF sysregs
    | (1 << 21)                       // TACR: trap ACTLR_EL1
    | (1 << 22)                       // TSW: trap set/way cache maintenance
    | (1 << 31)                       // RW: EL1 is AArch64
    | (1 << 34)                       // E2H: VHE (set at boot, kept)
    | (1 << 40)                       // APK: pointer-auth key registers not trapped
    | (1 << 41); // API: pointer-auth instructions not trapped

/// `VTTBR_EL2.BADDR` (bits 47:1; bit 0 is CnP).
const BADDR_MASK: u64 = 0x0000_ffff_ffff_fffe;

/// One physical CPU's view of the hardware.
pub struct Cpu {
    index: usize,
    conduit: Option<PsciConduit>,
    parange: u8,
    vmid16: bool,
    tlbirange: bool,
    ttl: bool,
    loaded: bool,
    /// What this pCPU's EL1 registers hold ([`El1Shadow`]): `vcpu_load`
    /// skips a register that already holds the value (vCPUs of one domain
    /// mostly share `CNTKCTL_EL1`, and its EL12 write traps to L0 nested).
    hw: El1Shadow,
    /// `HCR_EL2.TWE` as last written ([`HCR_GUEST`] sets it at boot).
    wfe_trap: bool,
}

/// `HCR_EL2.TWE`.
const HCR_TWE: u64 = 1 << 14;

impl Cpu {
    /// Per-CPU EL2 state hv needs before running guests: guest `HCR_EL2`,
    /// timers, `VPIDR_EL2`, the GIC system-register interface.
    ///
    /// # Safety
    /// Once per CPU at boot, at EL2 with `E2H = 1`, before any guest runs here.
    pub unsafe fn init_el2() {
        let midr = read_sysreg!("midr_el1");
        let pfr0 = read_sysreg!("id_aa64pfr0_el1");
        // SAFETY (each write below): EL2 configuration registers that only
        // affect guests (EL1&0); no guest runs yet on this CPU and hv keeps
        // TGE = 0, so its own EL2&0 execution is unaffected.
        // SAFETY: see above.
        unsafe { write_sysreg!("hcr_el2", HCR_GUEST) };
        // SAFETY: see above.
        unsafe { write_sysreg!("vpidr_el2", midr) };
        // SAFETY: see above.
        unsafe { write_sysreg!("cntvoff_el2", 0) };
        // CNTHCTL_EL2 (E2H = 1 layout): EL1PCTEN = 1 (guests read the
        // physical counter), EL1PCEN = 0 (physical timer accesses trap).
        // SAFETY: see above.
        unsafe { write_sysreg!("cnthctl_el2", 1u64 << 10) };
        // SAFETY: see above.
        unsafe { write_sysreg!("vttbr_el2", 0) };
        // MDSCR_EL1 (reset value UNKNOWN): no EL1 debug exceptions, no
        // single-step. Guests never reach it (TDA below), so it stays 0.
        // SAFETY: see above (EL1 debug control; hv's EL2 is unaffected, TDE = 0).
        unsafe { write_sysreg!("mdscr_el1", 0) };
        // HCRX_EL2 (FEAT_HCX, ID_AA64MMFR1_EL1.HCX): with FEAT_MOPS the
        // guest's CPY*/SET* instructions are UNDEFINED unless MSCEn = 1 (Arm
        // ARM, HCRX_EL2.MSCEn); Linux patches memcpy/memset to them once it
        // sees ID_AA64ISAR2_EL1.MOPS, so they must work (KVM sets MSCEn for
        // guests with MOPS too). MCE2 = 0: MOPS exceptions go to the guest.
        let mmfr1 = read_sysreg!("id_aa64mmfr1_el1");
        if (mmfr1 >> 40) & 0xf != 0 {
            let isar2 = read_sysreg!("S3_0_C0_C6_2"); // ID_AA64ISAR2_EL1
            let mscen = if (isar2 >> 16) & 0xf != 0 {
                1u64 << 11
            } else {
                0
            };
            // SAFETY: see above (HCRX_EL2 = S3_4_C1_C2_2 only affects EL1&0).
            unsafe { write_sysreg!("S3_4_C1_C2_2", mscen) };
        }
        // MDCR_EL2: guest accesses to the debug registers (TDA, TDOSA,
        // TDRA) and the PMU (TPM, TPMCR) trap to EL2, as Xen's init_traps
        // sets them, plus SPE/trace-filter controls where present. hv neither
        // switches these registers between vCPUs nor offers a PMU, so
        // untrapped they were a channel between domains on one pCPU (issue 9
        // finding 8); trapped, portable code answers RAZ/WI or undef
        // (crate::trap::debug_pmu_answer). HPMN keeps its reset value.
        let mdcr =
            crate::trap::mdcr_el2_guest(read_sysreg!("mdcr_el2"), read_sysreg!("id_aa64dfr0_el1"));
        // SAFETY: see above (MDCR_EL2 traps and routing only concern EL1&0;
        // TDE stays 0, so debug exceptions of EL1&0 are not routed to hv).
        unsafe { write_sysreg!("mdcr_el2", mdcr) };
        if (pfr0 >> 24) & 0xf != 0 {
            // ICC_SRE_EL2: SRE | DFB | DIB | Enable (EL1 may use the system interface).
            // SAFETY: see above; the GIC CPU interface is a system-register one (PFR0.GIC).
            unsafe { write_sysreg!("S3_4_C12_C9_5", 0xfu64) };
        }
        isb(); // the new EL2 controls apply from here on
    }

    /// This CPU's [`Arch`] handle.
    #[must_use]
    pub fn new(index: usize, conduit: Option<PsciConduit>) -> Self {
        // ID registers are read once (they trap to L0 when hv runs nested,
        // and hv assumes symmetric CPUs).
        static IDS: spin::Once<[u64; 4]> = spin::Once::new();
        let [mmfr0, mmfr1, mmfr2, isar0] = *IDS.call_once(|| {
            [
                read_sysreg!("id_aa64mmfr0_el1"),
                read_sysreg!("id_aa64mmfr1_el1"),
                read_sysreg!("id_aa64mmfr2_el1"),
                read_sysreg!("id_aa64isar0_el1"),
            ]
        });
        Self {
            index,
            conduit,
            parange: (mmfr0 & 0xf) as u8,
            vmid16: (mmfr1 >> 4) & 0xf == 2,
            tlbirange: (isar0 >> 56) & 0xf == 2,
            ttl: (mmfr2 >> 48) & 0xf != 0,
            loaded: false,
            hw: El1Shadow::new(),
            wfe_trap: true,
        }
    }

    /// True if the CPU has FEAT_TLBIRANGE (range TLBIs are executed as such).
    #[must_use]
    pub fn has_tlbi_range(&self) -> bool {
        self.tlbirange
    }

    /// Run `f` with `vmid` in `VTTBR_EL2.VMID`, switching temporarily if it is
    /// not the current one: VMID-scoped TLBIs use the VMID current when they execute.
    fn with_vmid(&mut self, vmid: Vmid, f: impl FnOnce()) {
        let cur = read_sysreg!("vttbr_el2");
        let shift = 48;
        let want = (cur & !(0xffff << shift)) | (u64::from(vmid.0) << shift);
        if want == cur {
            f();
            return;
        }
        // SAFETY: hv runs at EL2 with TGE = 0 and no guest executing on this
        // CPU; VTTBR_EL2 only affects EL1&0 translation and TLBI scoping.
        unsafe { write_sysreg!("vttbr_el2", want) };
        isb(); // the TLBI below must see the new VMID (context synchronisation)
        f();
        // SAFETY: as above; restores the loaded vCPU's VTTBR.
        unsafe { write_sysreg!("vttbr_el2", cur) };
        isb(); // later EL1&0 accesses (and TLBIs) see the restored VMID
    }

    fn vtcr_fixup(&self, vtcr: u64) -> u64 {
        let ps = u64::from(self.parange.min(5));
        let mut v = (vtcr & !(0b111 << 16)) | (ps << 16); // PS: the CPU's PA size (max 48 bits)
        if self.vmid16 {
            v |= 1 << 19; // VS: 16-bit VMIDs
        }
        v
    }
}

macro_rules! el1_regs {
    ($m:ident) => {
        $m!(SctlrEl1, "S3_5_C1_C0_0"); // SCTLR_EL12
        $m!(CpacrEl1, "S3_5_C1_C0_2"); // CPACR_EL12
        $m!(Ttbr0El1, "S3_5_C2_C0_0"); // TTBR0_EL12
        $m!(Ttbr1El1, "S3_5_C2_C0_1"); // TTBR1_EL12
        $m!(TcrEl1, "S3_5_C2_C0_2"); // TCR_EL12
        $m!(SpsrEl1, "S3_5_C4_C0_0"); // SPSR_EL12
        $m!(ElrEl1, "S3_5_C4_C0_1"); // ELR_EL12
        $m!(Afsr0El1, "S3_5_C5_C1_0"); // AFSR0_EL12
        $m!(Afsr1El1, "S3_5_C5_C1_1"); // AFSR1_EL12
        $m!(EsrEl1, "S3_5_C5_C2_0"); // ESR_EL12
        $m!(FarEl1, "S3_5_C6_C0_0"); // FAR_EL12
        $m!(MairEl1, "S3_5_C10_C2_0"); // MAIR_EL12
        $m!(AmairEl1, "S3_5_C10_C3_0"); // AMAIR_EL12
        $m!(VbarEl1, "S3_5_C12_C0_0"); // VBAR_EL12
        $m!(ContextidrEl1, "S3_5_C13_C0_1"); // CONTEXTIDR_EL12
        $m!(CntkctlEl1, "S3_5_C14_C1_0"); // CNTKCTL_EL12
        $m!(CntvCtlEl0, "S3_5_C14_C3_1"); // CNTV_CTL_EL02
        $m!(CntvCvalEl0, "S3_5_C14_C3_2"); // CNTV_CVAL_EL02
                                           // Not redirected by E2H: the EL1/EL0 names reach the guest's copy.
        $m!(SpEl1, "sp_el1");
        $m!(TpidrEl1, "tpidr_el1");
        $m!(TpidrEl0, "tpidr_el0");
        $m!(TpidrroEl0, "tpidrro_el0");
        $m!(ParEl1, "par_el1");
        $m!(MdscrEl1, "mdscr_el1");
    };
}

fn read_el1_reg(reg: El1Reg) -> u64 {
    macro_rules! arm {
        ($r:ident, $n:tt) => {
            if reg == El1Reg::$r {
                return read_sysreg!($n);
            }
        };
    }
    el1_regs!(arm);
    unreachable!("every El1Reg is listed in el1_regs!")
}

/// # Safety
/// Only with a vCPU loaded (these are the guest's registers).
unsafe fn write_el1_reg(reg: El1Reg, val: u64) {
    macro_rules! arm {
        ($r:ident, $n:tt) => {
            if reg == El1Reg::$r {
                // SAFETY: with E2H = 1 these encodings reach the guest's EL1
                // state, which does not affect hv's EL2&0 regime.
                unsafe { write_sysreg!($n, val) };
                return;
            }
        };
    }
    el1_regs!(arm);
}

/// Move the pointer-authentication keys (FEAT_PAuth): `$m!(index, encoding)`.
/// E2H does not redirect them; hv itself does not use pointer authentication.
macro_rules! pauth_keys {
    ($m:ident) => {
        $m!(0, "S3_0_C2_C1_0"); // APIAKeyLo_EL1
        $m!(1, "S3_0_C2_C1_1"); // APIAKeyHi_EL1
        $m!(2, "S3_0_C2_C1_2"); // APIBKeyLo_EL1
        $m!(3, "S3_0_C2_C1_3"); // APIBKeyHi_EL1
        $m!(4, "S3_0_C2_C2_0"); // APDAKeyLo_EL1
        $m!(5, "S3_0_C2_C2_1"); // APDAKeyHi_EL1
        $m!(6, "S3_0_C2_C2_2"); // APDBKeyLo_EL1
        $m!(7, "S3_0_C2_C2_3"); // APDBKeyHi_EL1
        $m!(8, "S3_0_C2_C3_0"); // APGAKeyLo_EL1
        $m!(9, "S3_0_C2_C3_1"); // APGAKeyHi_EL1
    };
}

/// FEAT_PAuth is implemented (ID_AA64ISAR1_EL1.{APA,API,GPA,GPI} or
/// ID_AA64ISAR2_EL1.{APA3,GPA3} non-zero), read once.
fn has_pauth() -> bool {
    static PAUTH: spin::Once<bool> = spin::Once::new();
    *PAUTH.call_once(|| {
        let isar1 = read_sysreg!("id_aa64isar1_el1");
        let isar2 = read_sysreg!("S3_0_C0_C6_2"); // ID_AA64ISAR2_EL1
        (isar1 >> 4) & 0xff != 0          // APA, API
            || (isar1 >> 24) & 0xff != 0  // GPA, GPI
            || (isar2 >> 8) & 0xf != 0    // GPA3
            || (isar2 >> 12) & 0xf != 0 // APA3
    })
}

/// The host's ID registers op0 3, op1 0, CRn 0, CRm 1..=7 (op2 0..=7, index
/// `(CRm - 1) * 8 + op2`), read once: unallocated encodings in this space
/// read as zero (Arm ARM, the reserved ID register space), and each read
/// traps to L0 when hv runs nested.
fn host_id_regs() -> &'static [u64; 56] {
    static IDS: spin::Once<[u64; 56]> = spin::Once::new();
    IDS.call_once(|| {
        [
            read_sysreg!("S3_0_C0_C1_0"),
            read_sysreg!("S3_0_C0_C1_1"),
            read_sysreg!("S3_0_C0_C1_2"),
            read_sysreg!("S3_0_C0_C1_3"),
            read_sysreg!("S3_0_C0_C1_4"),
            read_sysreg!("S3_0_C0_C1_5"),
            read_sysreg!("S3_0_C0_C1_6"),
            read_sysreg!("S3_0_C0_C1_7"),
            read_sysreg!("S3_0_C0_C2_0"),
            read_sysreg!("S3_0_C0_C2_1"),
            read_sysreg!("S3_0_C0_C2_2"),
            read_sysreg!("S3_0_C0_C2_3"),
            read_sysreg!("S3_0_C0_C2_4"),
            read_sysreg!("S3_0_C0_C2_5"),
            read_sysreg!("S3_0_C0_C2_6"),
            read_sysreg!("S3_0_C0_C2_7"),
            read_sysreg!("S3_0_C0_C3_0"),
            read_sysreg!("S3_0_C0_C3_1"),
            read_sysreg!("S3_0_C0_C3_2"),
            read_sysreg!("S3_0_C0_C3_3"),
            read_sysreg!("S3_0_C0_C3_4"),
            read_sysreg!("S3_0_C0_C3_5"),
            read_sysreg!("S3_0_C0_C3_6"),
            read_sysreg!("S3_0_C0_C3_7"),
            read_sysreg!("S3_0_C0_C4_0"),
            read_sysreg!("S3_0_C0_C4_1"),
            read_sysreg!("S3_0_C0_C4_2"),
            read_sysreg!("S3_0_C0_C4_3"),
            read_sysreg!("S3_0_C0_C4_4"),
            read_sysreg!("S3_0_C0_C4_5"),
            read_sysreg!("S3_0_C0_C4_6"),
            read_sysreg!("S3_0_C0_C4_7"),
            read_sysreg!("S3_0_C0_C5_0"),
            read_sysreg!("S3_0_C0_C5_1"),
            read_sysreg!("S3_0_C0_C5_2"),
            read_sysreg!("S3_0_C0_C5_3"),
            read_sysreg!("S3_0_C0_C5_4"),
            read_sysreg!("S3_0_C0_C5_5"),
            read_sysreg!("S3_0_C0_C5_6"),
            read_sysreg!("S3_0_C0_C5_7"),
            read_sysreg!("S3_0_C0_C6_0"),
            read_sysreg!("S3_0_C0_C6_1"),
            read_sysreg!("S3_0_C0_C6_2"),
            read_sysreg!("S3_0_C0_C6_3"),
            read_sysreg!("S3_0_C0_C6_4"),
            read_sysreg!("S3_0_C0_C6_5"),
            read_sysreg!("S3_0_C0_C6_6"),
            read_sysreg!("S3_0_C0_C6_7"),
            read_sysreg!("S3_0_C0_C7_0"),
            read_sysreg!("S3_0_C0_C7_1"),
            read_sysreg!("S3_0_C0_C7_2"),
            read_sysreg!("S3_0_C0_C7_3"),
            read_sysreg!("S3_0_C0_C7_4"),
            read_sysreg!("S3_0_C0_C7_5"),
            read_sysreg!("S3_0_C0_C7_6"),
            read_sysreg!("S3_0_C0_C7_7"),
        ]
    })
}

/// The registers a vCPU switch saves and restores: every [`El1Reg`] but
/// `MdscrEl1`: MDCR_EL2.TDA traps every guest access to it
/// (answered RAZ/WI, crate::trap), so no guest can see or change the
/// register; init_el2 clears it once. Switching it cost two traps to L0
/// per vCPU switch when nested.
fn switched_el1() -> impl Iterator<Item = El1Reg> {
    El1Reg::ALL.into_iter().filter(|r| *r != El1Reg::MdscrEl1)
}

macro_rules! tlbi {
    ($op:literal) => {
        // SAFETY: TLB maintenance only drops cached translations; hv's own
        // EL2&0 entries are not EL1&0 entries and are unaffected.
        unsafe { core::arch::asm!(concat!("tlbi ", $op), options(nostack, preserves_flags)) }
    };
    ($op:literal, $x:expr) => {
        // SAFETY: as above.
        unsafe { core::arch::asm!(concat!("tlbi ", $op, ", {0}"), in(reg) $x, options(nostack, preserves_flags)) }
    };
}

impl Arch for Cpu {
    fn cpu_index(&self) -> usize {
        self.index
    }

    fn vcpu_load(&mut self, sysregs: &El1Sysregs, stage2: Stage2Regs, vmpidr: u64) {
        for r in switched_el1() {
            let v = sysregs.get(r);
            if self.hw.needs_write(r, v) {
                // SAFETY: the vCPU is being loaded: these registers now hold its state.
                unsafe { write_el1_reg(r, v) };
            }
        }
        let vtcr = self.vtcr_fixup(stage2.vtcr);
        // SAFETY: stage-2 and VMPIDR registers only affect EL1&0, where no
        // code runs until run_vcpu; stage2 comes from memops' tables.
        unsafe { write_sysreg!("vtcr_el2", vtcr) };
        // SAFETY: as above.
        unsafe { write_sysreg!("vttbr_el2", stage2.vttbr) };
        // SAFETY: as above.
        unsafe { write_sysreg!("vmpidr_el2", vmpidr) };
        isb(); // new stage-2 context before TLBIs or the guest use it
        if let Some(s2) = crate::tlb::stage2() {
            // Lock-free unless this stage-2 was never loaded before.
            s2.vmids.loaded(
                Vmid((stage2.vttbr >> 48) as u16),
                PhysAddr(stage2.vttbr & BADDR_MASK),
            );
        }
        // SAFETY: TPIDR_EL2 points at this CPU's PerCpu; only this CPU uses its fp.
        unsafe { (*percpu::this()).fp = sysregs.fp };
        if has_pauth() {
            macro_rules! load {
                ($i:literal, $n:tt) => {
                    // SAFETY: the guest's pointer-authentication keys; hv's own
                    // code does not use pointer authentication.
                    unsafe { write_sysreg!($n, sysregs.pauth_keys[$i]) };
                };
            }
            pauth_keys!(load);
        }
        self.loaded = true;
    }

    fn vcpu_put(&mut self, sysregs: &mut El1Sysregs) {
        for r in switched_el1() {
            let v = read_el1_reg(r);
            sysregs.set(r, v);
            self.hw.note(r, v);
        }
        // SAFETY: as in vcpu_load.
        sysregs.fp = unsafe { (*percpu::this()).fp };
        if has_pauth() {
            macro_rules! save {
                ($i:literal, $n:tt) => {
                    sysregs.pauth_keys[$i] = read_sysreg!($n);
                };
            }
            pauth_keys!(save);
        }
        self.loaded = false;
    }

    fn read_el1(&self, reg: El1Reg) -> u64 {
        read_el1_reg(reg)
    }

    fn write_el1(&mut self, reg: El1Reg, val: u64) {
        if !self.loaded {
            log::error!("write_el1({reg:?}) with no vCPU loaded: ignored");
            return;
        }
        // SAFETY: a vCPU is loaded (checked above).
        unsafe { write_el1_reg(reg, val) };
        self.hw.note(reg, val);
    }

    fn run_vcpu(&mut self, gprs: &mut GuestGprs) -> RawExit {
        let mut exit = ExitRecord::default();
        // SAFETY: a vCPU is loaded (VTTBR/VTCR/EL1 state set by vcpu_load);
        // hv_guest_enter saves hv's callee-saved state, erets to the guest,
        // and returns here after the guest's next exception to EL2 with
        // `gprs` and `exit` filled in (both live for the whole call).
        unsafe { hv_guest_enter(gprs, &mut exit) };
        let vector = match exit.vector {
            0 => ExitVector::Sync,
            1 => ExitVector::Irq,
            2 => ExitVector::Fiq,
            _ => ExitVector::SError,
        };
        RawExit {
            vector,
            esr: exit.esr,
            far: exit.far,
            hpfar: exit.hpfar,
        }
    }

    fn dcache_clean_inval(&mut self, pa: PhysAddr, len: u64) {
        // XEN_DOMCTL_cacheflush: clean + invalidate, as Xen's
        // clean_and_invalidate_dcache_va_range (the caller passes guest pool frames).
        dcache_range(pa.raw(), len, true);
    }

    fn tlb_op(&mut self, op: TlbOp) {
        match op {
            // Order page-table stores before the TLBIs that follow.
            TlbOp::DsbIshst => {
                // SAFETY: a barrier only orders memory accesses.
                unsafe { core::arch::asm!("dsb ishst", options(nostack)) }
            }
            // Wait for broadcast TLB maintenance to complete.
            TlbOp::DsbIsh => {
                // SAFETY: a barrier only orders memory accesses.
                unsafe { core::arch::asm!("dsb ish", options(nostack)) }
            }
            // Wait for local TLB maintenance to complete.
            TlbOp::DsbNsh => {
                // SAFETY: a barrier only orders memory accesses.
                unsafe { core::arch::asm!("dsb nsh", options(nostack)) }
            }
            // Resynchronise this PE's context.
            TlbOp::Isb => isb(),
            TlbOp::Ipas2e1is { vmid, ipa, ttl } => {
                let x = ipas2_operand(ipa, ttl, self.ttl);
                self.with_vmid(vmid, || tlbi!("ipas2e1is", x));
            }
            TlbOp::Ripas2e1is {
                vmid,
                base,
                pages,
                ttl,
            } => {
                let (range, feat_ttl) = (self.tlbirange, self.ttl);
                self.with_vmid(vmid, || {
                    if !range {
                        // No FEAT_TLBIRANGE: the same pages one by one.
                        for p in 0..pages {
                            let x = ipas2_operand(
                                pv_tlb::Ipa(base.raw() + p * PAGE_SIZE),
                                ttl,
                                feat_ttl,
                            );
                            tlbi!("ipas2e1is", x);
                        }
                        return;
                    }
                    for step in range_steps(base, pages, ttl, feat_ttl) {
                        match step {
                            // TLBI RIPAS2E1IS = SYS #4, C8, C0, #2 (spelled out: the
                            // base target has no FEAT_TLBIRANGE mnemonics).
                            // SAFETY: as for the other TLBIs.
                            RangeStep::Range { xt, .. } => unsafe {
                                core::arch::asm!("sys #4, c8, c0, #2, {0}", in(reg) xt,
                                    options(nostack, preserves_flags));
                            },
                            RangeStep::Single { xt, .. } => tlbi!("ipas2e1is", xt),
                        }
                    }
                });
            }
            TlbOp::Vmalle1is { vmid } => self.with_vmid(vmid, || tlbi!("vmalle1is")),
            TlbOp::Vmalle1 { vmid } => self.with_vmid(vmid, || tlbi!("vmalle1")),
            TlbOp::Vmalls12e1is { vmid } => self.with_vmid(vmid, || tlbi!("vmalls12e1is")),
            TlbOp::Vmalls12e1 { vmid } => self.with_vmid(vmid, || tlbi!("vmalls12e1")),
            TlbOp::Alle1is => tlbi!("alle1is"),
            // SAFETY: invalidating the instruction cache only costs refetches.
            TlbOp::IcIallu => unsafe { core::arch::asm!("ic iallu", options(nostack)) },
        }
    }

    fn counter(&self) -> u64 {
        isb(); // do not read the counter early (out of order)
        read_sysreg!("cntvct_el0")
    }

    fn counter_frequency(&self) -> u64 {
        read_sysreg!("cntfrq_el0")
    }

    fn vmid_bits(&self) -> u8 {
        if self.vmid16 {
            16
        } else {
            8
        }
    }

    fn ipa_bits(&self) -> u8 {
        match self.parange {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            _ => 48,
        }
    }

    fn system_off(&mut self) -> ! {
        psci::system_off(self.conduit)
    }

    fn guest_va_to_ipa(&mut self, va: u64, write: bool) -> Option<u64> {
        if !self.loaded {
            return None;
        }
        let saved = read_sysreg!("par_el1");
        if write {
            // SAFETY: AT only performs a stage-1 translation of the loaded
            // guest's EL1&0 regime (HCR_EL2.TGE = 0) and writes PAR_EL1,
            // which is restored below.
            unsafe {
                core::arch::asm!("at s1e1w, {0}", in(reg) va, options(nostack, preserves_flags))
            };
        } else {
            // SAFETY: as above.
            unsafe {
                core::arch::asm!("at s1e1r, {0}", in(reg) va, options(nostack, preserves_flags))
            };
        }
        isb(); // the AT result is in PAR_EL1 before it is read
        let par = read_sysreg!("par_el1");
        // SAFETY: restores the guest's own PAR_EL1 value.
        unsafe { write_sysreg!("par_el1", saved) };
        if par & 1 != 0 {
            return None; // PAR_EL1.F: the translation faulted
        }
        Some((par & 0x000f_ffff_ffff_f000) | (va & 0xfff))
    }

    fn host_id_reg(&self, crm: u8, op2: u8) -> u64 {
        if !(1..=7).contains(&crm) || op2 > 7 {
            return 0;
        }
        host_id_regs()[usize::from(crm - 1) * 8 + usize::from(op2)]
    }

    fn ich_vtr(&self) -> u64 {
        super::gic::vtr()
    }

    fn ich_read_lr(&mut self, n: usize) -> u64 {
        super::gic::read_lr(n)
    }

    fn ich_write_lr(&mut self, n: usize, val: u64) {
        super::gic::write_lr(n, val);
    }

    fn ich_write_hcr(&mut self, val: u64) {
        super::gic::write_hcr(val);
        isb(); // the virtual interface's new control applies before the guest runs
    }

    fn ich_elrsr(&mut self) -> u64 {
        isb(); // the guest's last LR updates are visible to the read
        super::gic::elrsr()
    }

    fn ich_misr(&mut self) -> u64 {
        super::gic::misr()
    }

    fn ich_read_vmcr(&mut self) -> u64 {
        super::gic::read_vmcr()
    }

    fn ich_write_vmcr(&mut self, val: u64) {
        super::gic::write_vmcr(val);
    }

    fn ich_read_apr(&mut self, group1: bool, n: usize) -> u64 {
        super::gic::read_apr(group1, n)
    }

    fn ich_write_apr(&mut self, group1: bool, n: usize, val: u64) {
        super::gic::write_apr(group1, n, val);
    }

    fn irq_ack(&mut self) -> Option<u32> {
        super::gic::ack()
    }

    fn irq_eoi(&mut self, intid: u32) {
        super::gic::eoi(intid);
    }

    fn irq_drop_priority(&mut self, intid: u32) {
        super::gic::drop_priority(intid);
    }

    fn kick(&mut self, cpu: usize) {
        super::gic::kick(cpu);
    }

    fn set_hv_timer(&mut self, deadline: Option<u64>) {
        super::gic::set_hyp_timer(deadline);
    }

    fn wait_for_interrupt(&mut self) {
        super::gic::wfi();
    }

    fn set_wfe_trap(&mut self, trap: bool) {
        if trap == self.wfe_trap {
            return;
        }
        self.wfe_trap = trap;
        let hcr = if trap {
            HCR_GUEST
        } else {
            HCR_GUEST & !HCR_TWE
        };
        // SAFETY: only TWE changes (TGE = 0 and E2H = 1 are kept, so hv's
        // own EL2&0 execution is unaffected); TWE governs WFE executed at
        // EL1/EL0, and no guest runs on this pCPU while hv executes. A
        // direct write to a System register takes effect after the next
        // context synchronization event (Arm ARM, "Synchronization
        // requirements for AArch64 System registers"): the ERET into the
        // guest is one.
        unsafe { write_sysreg!("hcr_el2", hcr) };
    }
}

/// Data-cache maintenance by VA over `[start, start + len)` of RAM hv
/// identity-maps as Normal memory: `DC CIVAC` (clean + invalidate) when
/// `invalidate`, else `DC CVAC` (clean), line by line (`CTR_EL0.DminLine`),
/// between two `DSB SY` (Xen's clean_and_invalidate_dcache_va_range /
/// clean_dcache_va_range do the same).
fn dcache_range(start: u64, len: u64, invalidate: bool) {
    if len == 0 {
        return;
    }
    // CTR_EL0.DminLine: log2 of the smallest data-cache line, in words.
    let line = 4u64 << ((read_sysreg!("ctr_el0") >> 16) & 0xf);
    let end = start.saturating_add(len);
    let mut a = start & !(line - 1);
    // SAFETY: a barrier only orders memory accesses.
    // hv's own earlier stores to the range are issued before the maintenance,
    // so their lines are the ones written back.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
    while a < end {
        if invalidate {
            // SAFETY: DC CIVAC by VA of identity-mapped RAM (the callers pass
            // RAM frames); clean+invalidate writes dirty lines back to the
            // point of coherency and changes no data (Arm ARM D7.5.9, data
            // cache maintenance instructions).
            unsafe {
                core::arch::asm!("dc civac, {0}", in(reg) a, options(nostack, preserves_flags))
            };
        } else {
            // SAFETY: as above; DC CVAC only cleans.
            unsafe {
                core::arch::asm!("dc cvac, {0}", in(reg) a, options(nostack, preserves_flags))
            };
        }
        a += line;
    }
    // SAFETY: a barrier only orders memory accesses.
    // DC maintenance completes only at a DSB: the lines are in memory before
    // the hypercall returns and the guest (or its device) is told to go.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// hv's access to host RAM through the identity map.
#[derive(Clone, Copy)]
pub struct HostMem {
    ram: FixedVec<MemRange, MAX_MEMORY>,
}

impl HostMem {
    /// Access to the RAM ranges `ram` (all identity-mapped Normal WB).
    #[must_use]
    pub fn new(ram: FixedVec<MemRange, MAX_MEMORY>) -> Self {
        Self { ram }
    }

    fn check(&self, pa: PhysAddr, len: usize) -> bool {
        let r = MemRange::new(pa.raw(), len as u64);
        let ok =
            self.ram.as_slice().iter().any(|m| {
                r.base.raw() >= m.base.raw() && r.end() <= m.end() && r.end() >= r.base.raw()
            });
        if !ok {
            log::error!("PhysMem access outside RAM: {pa} + {len:#x} (ignored)");
        }
        ok
    }
}

/// Make `[pa, pa + len)` (just written through hv's cacheable mapping)
/// visible to a guest that reads it with its MMU off (non-cacheable) and to
/// its instruction fetches: clean the data cache to the point of coherency
/// and invalidate the instruction cache for those lines, as Xen does when it
/// loads a kernel (`copy_to_guest_phys_flush_dcache`) and KVM when it maps a
/// page without FEAT_S2FWB.
fn sync_for_guest(pa: u64, len: usize) {
    if len == 0 {
        return;
    }
    let ctr = read_sysreg!("ctr_el0");
    let dline = 4u64 << ((ctr >> 16) & 0xf);
    let iline = 4u64 << (ctr & 0xf);
    let end = pa + len as u64;
    let mut a = pa & !(dline - 1);
    while a < end {
        // SAFETY: cache maintenance by VA of identity-mapped RAM; it changes no data.
        unsafe { core::arch::asm!("dc cvac, {0}", in(reg) a, options(nostack, preserves_flags)) };
        a += dline;
    }
    // SAFETY: a barrier only orders memory accesses.
    // The cleans complete before the I-cache invalidation and before the guest runs.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
    if (ctr >> 29) & 1 == 0 {
        // CTR_EL0.DIC = 0: instruction-cache invalidation is required for coherence.
        let mut a = pa & !(iline - 1);
        while a < end {
            // SAFETY: as above (instruction cache, by VA).
            unsafe {
                core::arch::asm!("ic ivau, {0}", in(reg) a, options(nostack, preserves_flags))
            };
            a += iline;
        }
        // SAFETY: a barrier only orders memory accesses.
        // The invalidations complete before the guest fetches from these lines.
        unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
    }
}

impl PhysMem for HostMem {
    fn read(&self, pa: PhysAddr, buf: &mut [u8]) {
        if self.check(pa, buf.len()) {
            // SAFETY: the range lies in RAM (checked), which hv identity-maps
            // as Normal memory for its whole lifetime.
            unsafe {
                core::ptr::copy_nonoverlapping(pa.raw() as *const u8, buf.as_mut_ptr(), buf.len())
            };
        } else {
            buf.fill(0);
        }
    }

    fn write(&mut self, pa: PhysAddr, buf: &[u8]) {
        if self.check(pa, buf.len()) {
            // SAFETY: as in read; callers only pass frames hv or a domain owns.
            unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), pa.raw() as *mut u8, buf.len()) };
            sync_for_guest(pa.raw(), buf.len());
        }
    }

    fn fetch_or_u64(&mut self, pa: PhysAddr, mask: u64) -> u64 {
        if pa.is_aligned(8) && self.check(pa, 8) {
            // SAFETY: an aligned doubleword of RAM (checked), identity-mapped as
            // Normal cacheable memory; the guest maps it cacheable too, so the
            // atomic is coherent with its own atomics (Arm ARM B2.2, single-copy
            // atomicity of aligned accesses).
            let a = unsafe { core::sync::atomic::AtomicU64::from_ptr(pa.raw() as *mut u64) };
            a.fetch_or(mask, core::sync::atomic::Ordering::SeqCst)
        } else {
            0
        }
    }

    fn fetch_and_u64(&mut self, pa: PhysAddr, mask: u64) -> u64 {
        if pa.is_aligned(8) && self.check(pa, 8) {
            // SAFETY: as in fetch_or_u64.
            let a = unsafe { core::sync::atomic::AtomicU64::from_ptr(pa.raw() as *mut u64) };
            a.fetch_and(mask, core::sync::atomic::Ordering::SeqCst)
        } else {
            0
        }
    }

    fn compare_exchange_u32(&mut self, pa: PhysAddr, current: u32, new: u32) -> u32 {
        if pa.is_aligned(4) && self.check(pa, 4) {
            // SAFETY: an aligned word of RAM (checked), identity-mapped as
            // Normal cacheable memory that the guest maps cacheable too; an
            // aligned 32-bit compare-and-swap is single-copy atomic and
            // coherent with the guest's own exclusives / LSE atomics on it
            // (Arm ARM B2.2.1 single-copy atomicity, B2.9 exclusive monitors).
            let a = unsafe { core::sync::atomic::AtomicU32::from_ptr(pa.raw() as *mut u32) };
            match a.compare_exchange(
                current,
                new,
                core::sync::atomic::Ordering::SeqCst,
                core::sync::atomic::Ordering::SeqCst,
            ) {
                Ok(v) | Err(v) => v,
            }
        } else {
            !current
        }
    }

    fn dcache_maint(&mut self, pa: PhysAddr, len: usize, clean: bool, inval: bool) {
        if len == 0 || !(clean || inval) || !self.check(pa, len) {
            return;
        }
        // An invalidation is done as clean + invalidate: a line the range
        // shares with other data (partial lines at either end) must not lose
        // that data, and a clean line is unchanged.
        dcache_range(pa.raw(), len as u64, inval);
    }

    fn zero_frame(&mut self, pa: PhysAddr) {
        if pa.is_aligned(PAGE_SIZE) && self.check(pa, PAGE_SIZE as usize) {
            // SAFETY: one whole RAM frame, identity-mapped (checked above).
            unsafe { core::ptr::write_bytes(pa.raw() as *mut u8, 0, PAGE_SIZE as usize) };
            sync_for_guest(pa.raw(), PAGE_SIZE as usize);
        }
    }
}

/// Stage-2 tables in host RAM, reached through hv's identity map with
/// volatile 64-bit accesses (single-copy atomic for aligned doublewords).
impl TableMem for HostMem {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        let pa = crate::mm::frame::frames().lock().alloc(1, 1)?;
        self.zero_frame(pa);
        Some(pa)
    }

    fn free_table(&mut self, pa: PhysAddr) {
        if let Some(s2) = crate::tlb::stage2() {
            s2.vmids.table_freed(pa); // a root going away: its stage-2 is gone
        }
        crate::mm::frame::frames().lock().free(pa, 1);
    }

    fn read_entry(&self, table: PhysAddr, index: usize) -> u64 {
        let at = table.raw() + 8 * (index as u64 & 511);
        if index >= 512 || !table.is_aligned(PAGE_SIZE) || !self.check(table, PAGE_SIZE as usize) {
            log::error!("read_entry({table}, {index}): not a table slot");
            return 0;
        }
        // SAFETY: an aligned doubleword inside a RAM frame (checked above),
        // identity-mapped Normal memory; table frames belong to memops.
        unsafe { (at as *const u64).read_volatile() }
    }

    fn write_entry(&mut self, table: PhysAddr, index: usize, value: u64) {
        let at = table.raw() + 8 * (index as u64 & 511);
        if index >= 512 || !table.is_aligned(PAGE_SIZE) || !self.check(table, PAGE_SIZE as usize) {
            log::error!("write_entry({table}, {index}): not a table slot");
            return;
        }
        // SAFETY: as in read_entry; a single 64-bit store, so a walker sees
        // the old or the new descriptor, never a mix.
        unsafe { (at as *mut u64).write_volatile(value) };
        // SAFETY: a barrier only orders memory accesses.
        // Make the descriptor visible to the inner-shareable table walkers
        // before anything later (a TLBI or a guest entry) depends on it.
        unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
    }

    fn invalidate_now(&mut self, set: &InvalidationSet) {
        if set.is_empty() {
            return;
        }
        // Without the stage-2's root the VMID is unknown: flush every VMID's
        // EL1&0 entries (counted like every other TLB operation).
        log::debug!("invalidate_now without a root: ALLE1IS");
        let ops = [TlbOp::DsbIshst, TlbOp::Alle1is, TlbOp::DsbIsh, TlbOp::Isb];
        crate::tlb::execute_ops(&ops, &mut Cpu::new(percpu::index(), None));
    }

    fn invalidate_now_for(&mut self, root: PhysAddr, set: &InvalidationSet) {
        if set.is_empty() {
            return;
        }
        let mut cpu = Cpu::new(percpu::index(), None);
        match crate::tlb::stage2() {
            // The portable layer plans (VMID and policy); this only executes.
            Some(s2) => s2.invalidate_for(root, set, &mut cpu),
            None => self.invalidate_now(set),
        }
    }
}
