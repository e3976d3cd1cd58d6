//! Distributor and redistributor register emulation (GICv3 architecture
//! specification, IHI 0069, chapter 12 "GIC memory-mapped registers").
//!
//! Register set: what Linux's `drivers/irqchip/irq-gic-v3.c` touches at boot
//! and at run time. `GICD_CTLR`/`TYPER`/`IIDR`/`PIDR2`, `IGROUPR`,
//! `IS/ICENABLER`, `IS/ICPENDR`, `IS/ICACTIVER`, `IPRIORITYR`, `ICFGR`,
//! `IROUTER`; `GICR_CTLR`/`IIDR`/`TYPER`/`WAKER`/`PIDR2` and the SGI_base
//! frame's banked copies for SGIs and PPIs. Everything else reads as zero and
//! ignores writes with a rate-limited warning.
//!
//! Access checks (Xen's `vgic-v3.c` `bad_width`, KVM's `check_region`): an
//! access that is not naturally aligned, or whose width the register does not
//! support (bit registers, `ICFGR`, `CTLR`, ... 32-bit only; `IPRIORITYR`
//! 8/32-bit; `IROUTER` and `GICR_TYPER` 32/64-bit), is not emulated: the
//! caller injects a data abort, as Xen does. Every index into the state is
//! derived from an aligned offset and bounds-checked.

use super::{warn_unknown, Vgic, VgicLayout, VgicState, GICR_STRIDE, PRIO_MASK};

/// A guest load or store to emulate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MmioAccess {
    /// A store.
    pub write: bool,
    /// Access size in bytes (1, 2, 4 or 8).
    pub size: u8,
    /// The value stored (writes only).
    pub value: u64,
}

/// An access the vGIC refuses (unaligned, or a width the register does not
/// have): the guest gets a data abort (Xen's `bad_width`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BadAccess;

/// The outcome of an emulated access: the value read (0 for writes), or
/// [`BadAccess`].
pub type MmioResult = Result<u64, BadAccess>;

/// True if `ipa` lies in the distributor or redistributor range of a vGIC
/// at [`VgicLayout::GUEST`] (any other layout: [`Vgic::in_range`]).
#[must_use]
pub fn in_range(ipa: u64) -> bool {
    let l = VgicLayout::GUEST;
    l.in_gicd(ipa) || l.in_gicr(ipa, super::MAX_VCPUS)
}

/// `GICD_CTLR` bits (single security state: `DS` = 1).
mod ctlr {
    pub const GRP0: u32 = 1 << 0;
    pub const GRP1: u32 = 1 << 1;
    pub const ARE: u32 = 1 << 4;
    pub const DS: u32 = 1 << 6;
}

/// `GICD_IIDR` / `GICR_IIDR`: implementer 0x43b (Arm's JEP106 code, as KVM's
/// emulation reports), product 0x68 ('h'), revision 0.
const IIDR: u32 = 0x6800_043b;
/// `PIDR2.ArchRev` = 3 (GICv3) in bits [7:4]; JEDEC bit [3].
const PIDR2: u32 = 0x3b;
/// `CIDR0..3` (the component id every CoreSight-style block carries).
const CIDR: [u32; 4] = [0x0d, 0xf0, 0x05, 0xb1];

/// Register offsets shared by the distributor and the SGI_base frame.
mod off {
    pub const IGROUPR: u64 = 0x0080;
    pub const ISENABLER: u64 = 0x0100;
    pub const ICENABLER: u64 = 0x0180;
    pub const ISPENDR: u64 = 0x0200;
    pub const ICPENDR: u64 = 0x0280;
    pub const ISACTIVER: u64 = 0x0300;
    pub const ICACTIVER: u64 = 0x0380;
    pub const IPRIORITYR: u64 = 0x0400;
    pub const ICFGR: u64 = 0x0c00;
    pub const IGRPMODR: u64 = 0x0d00;
    pub const NSACR: u64 = 0x0e00;
    pub const IROUTER: u64 = 0x6000;
    pub const PIDR2: u64 = 0xffe8;
    pub const CIDR0: u64 = 0xfff0;
}

/// What a guest write to a hardware interrupt's bit does to the physical SPI.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PhysOp {
    Enable,
    Disable,
    SetPending,
    ClearPending,
    Deactivate,
}

/// Which bit-per-interrupt register.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

impl Vgic {
    /// Emulate a guest access at `ipa` by vCPU `vcpu`. `None` if `ipa` is not
    /// in the vGIC's ranges (its [`VgicLayout`]); else the value a read
    /// returns (0 for writes), or [`BadAccess`] for an unaligned access or a
    /// width the register lacks.
    #[must_use]
    pub fn mmio(&self, vcpu: u32, ipa: u64, acc: MmioAccess) -> Option<MmioResult> {
        let mut s = self.state.lock();
        let l = s.layout;
        let in_gicd = l.in_gicd(ipa);
        if !in_gicd && !l.in_gicr(ipa, s.cpus.len() as u32) {
            return None;
        }
        if !matches!(acc.size, 1 | 2 | 4 | 8) || !ipa.is_multiple_of(u64::from(acc.size)) {
            return Some(Err(BadAccess));
        }
        if in_gicd {
            return Some(s.dist(vcpu as usize, ipa - l.gicd, acc));
        }
        let rel = ipa - l.gicr;
        let cpu = (rel / GICR_STRIDE) as usize;
        let off = rel % GICR_STRIDE;
        if cpu >= s.cpus.len() {
            // No redistributor there (the previous one says Last).
            return Some(Ok(0));
        }
        Some(if off < 0x1_0000 {
            s.rd_base(cpu, off, acc)
        } else {
            s.sgi_base(cpu, off - 0x1_0000, acc)
        })
    }
}

/// Byte-array registers (`IPRIORITYR`, `ITARGETSR`, `[CS]PENDSGIR`): 8- or
/// 32-bit accesses (Xen: `DABT_BYTE`/`DABT_WORD`).
fn prio_width(size: u8) -> Result<(), BadAccess> {
    if matches!(size, 1 | 4) {
        Ok(())
    } else {
        Err(BadAccess)
    }
}

/// Extract `size` bytes at byte `shift` of a 64-bit register value.
fn sub(v: u64, off: u64, size: u8) -> u64 {
    let shift = (off & 7) * 8;
    let mask = if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    };
    (v >> shift) & mask
}

impl VgicState {
    fn dist(&mut self, cpu: usize, off: u64, acc: MmioAccess) -> MmioResult {
        let w = acc.write;
        let v = acc.value;
        let sz = acc.size;
        // Registers with a single 32-bit width (Xen's `vgic_reg32_check_access`).
        let word = |r: u64| if sz == 4 { Ok(r) } else { Err(BadAccess) };
        let bit_reg = |o: u64, base: u64| (base..base + 0x80).contains(&o);
        match off {
            0x0000 => {
                word(0)?;
                if w {
                    self.grp0 = v as u32 & ctlr::GRP0 != 0;
                    self.grp1 = v as u32 & ctlr::GRP1 != 0;
                    self.kick_all();
                    return Ok(0);
                }
                let mut r = ctlr::ARE | ctlr::DS;
                if self.grp0 {
                    r |= ctlr::GRP0;
                }
                if self.grp1 {
                    r |= ctlr::GRP1;
                }
                Ok(u64::from(r))
            }
            // TYPER: ITLinesNumber, CPUNumber (ignored with ARE), IDbits = 9
            // (INTIDs below 1024), No1N (1-of-N SPI routing not supported).
            // Read-only: writes are ignored (Xen's `write_ignore_32`).
            0x0004 if w => word(0),
            0x0004 => word(u64::from(self.nr_irqs().div_ceil(32) - 1) | (9 << 19) | (1 << 25)),
            0x0008 if w => word(0),
            0x0008 => word(u64::from(IIDR)),
            // TYPER2, STATUSR: zero.
            0x000c | 0x0010 => word(0),
            o if bit_reg(o, off::IGROUPR) => {
                self.bits_dist(cpu, BitReg::Group, o - off::IGROUPR, acc)
            }
            o if bit_reg(o, off::ISENABLER) => {
                self.bits_dist(cpu, BitReg::SetEnable, o - off::ISENABLER, acc)
            }
            o if bit_reg(o, off::ICENABLER) => {
                self.bits_dist(cpu, BitReg::ClearEnable, o - off::ICENABLER, acc)
            }
            o if bit_reg(o, off::ISPENDR) => {
                self.bits_dist(cpu, BitReg::SetPending, o - off::ISPENDR, acc)
            }
            o if bit_reg(o, off::ICPENDR) => {
                self.bits_dist(cpu, BitReg::ClearPending, o - off::ICPENDR, acc)
            }
            o if bit_reg(o, off::ISACTIVER) => {
                self.bits_dist(cpu, BitReg::SetActive, o - off::ISACTIVER, acc)
            }
            o if bit_reg(o, off::ICACTIVER) => {
                self.bits_dist(cpu, BitReg::ClearActive, o - off::ICACTIVER, acc)
            }
            o if (off::IPRIORITYR..off::IPRIORITYR + 0x400).contains(&o) => {
                let first = (o - off::IPRIORITYR) as u32;
                // With ARE, INTIDs 0..31 are RAZ/WI here (banked in the redistributor).
                if first < 32 {
                    return prio_width(sz).map(|()| 0);
                }
                self.priorities(cpu, first, acc)
            }
            // ITARGETSR: RAZ/WI with affinity routing (byte or word, as IPRIORITYR).
            0x0800..=0x0bff => prio_width(sz).map(|()| 0),
            o if (off::ICFGR..off::ICFGR + 0x100).contains(&o) => {
                word(0)?;
                let first = ((o - off::ICFGR) * 4) as u32;
                if first < 32 {
                    return Ok(0); // banked in the redistributor
                }
                Ok(self.config(cpu, first, acc))
            }
            // IGRPMODR, NSACR: RAZ/WI (single security state).
            o if bit_reg(o, off::IGRPMODR) || (off::NSACR..off::NSACR + 0x100).contains(&o) => {
                word(0)
            }
            // SGIR, CPENDSGIR, SPENDSGIR: RAZ/WI with affinity routing.
            0x0f00 => word(0),
            0x0f10..=0x0f2f => prio_width(sz).map(|()| 0),
            o if (off::IROUTER..off::IROUTER + 0x2000).contains(&o) => {
                // 64-bit registers, 32- or 64-bit accesses (Xen's
                // `vgic_reg64_check_access`); aligned by the caller.
                if !matches!(sz, 4 | 8) {
                    return Err(BadAccess);
                }
                let idx = (o - off::IROUTER) / 8;
                // SGIs/PPIs and SPIs beyond the implemented ones: RAZ/WI.
                let Some(n) = idx
                    .checked_sub(32)
                    .map(|n| n as usize)
                    .filter(|&n| n < self.routes.len())
                else {
                    return Ok(0);
                };
                let cur = self.routes[n];
                if w {
                    // Aff3 [39:32], IRM [31], Aff2.Aff1.Aff0 [23:0].
                    let mask: u64 = 0xff_8000_0000 | 0xff_ffff;
                    let new = if sz == 8 {
                        v
                    } else if o & 4 == 0 {
                        (cur & !0xffff_ffff) | (v & 0xffff_ffff)
                    } else {
                        (cur & 0xffff_ffff) | (v << 32)
                    };
                    self.routes[n] = new & mask;
                    self.kick_all();
                    return Ok(0);
                }
                Ok(sub(cur, o, sz))
            }
            off::PIDR2 if !w => word(u64::from(PIDR2)),
            o if (off::CIDR0..off::CIDR0 + 16).contains(&o) && !w => {
                word(u64::from(CIDR[((o - off::CIDR0) / 4) as usize & 3]))
            }
            o => {
                warn_unknown(self.domid, "GICD", o, w);
                Ok(0)
            }
        }
    }

    fn rd_base(&mut self, cpu: usize, off: u64, acc: MmioAccess) -> MmioResult {
        let w = acc.write;
        let sz = acc.size;
        let word = |r: u64| if sz == 4 { Ok(r) } else { Err(BadAccess) };
        match off {
            // CTLR: no LPIs (EnableLPIs RAZ/WI), RWP = 0: writes take effect at once.
            0x0000 => word(0),
            0x0004 if w => word(0),
            0x0004 => word(u64::from(IIDR)),
            // TYPER (64-bit, 32/64-bit accesses, read-only): Affinity [63:32]
            // = the vCPU's Aff1.Aff0, Processor_Number [23:8] = its index,
            // Last [4] on the final redistributor.
            0x0008 | 0x000c => {
                if !matches!(sz, 4 | 8) {
                    return Err(BadAccess);
                }
                if w {
                    return Ok(0);
                }
                let c = cpu as u64;
                let aff = (c & 0xff) | (((c >> 8) & 0xff) << 8);
                let last = u64::from(cpu + 1 == self.cpus.len()) << 4;
                let typer = (aff << 32) | ((c & 0xffff) << 8) | last;
                Ok(sub(typer, off, sz))
            }
            // STATUSR.
            0x0010 => word(0),
            // WAKER: ProcessorSleep [1]; ChildrenAsleep [2] follows it at once.
            0x0014 => {
                word(0)?;
                let Some(c) = self.cpus.get_mut(cpu) else {
                    return Ok(0);
                };
                if w {
                    c.sleep = acc.value & 2 != 0;
                    return Ok(0);
                }
                let s = u64::from(c.sleep);
                Ok((s << 1) | (s << 2))
            }
            // PROPBASER, PENDBASER (no LPIs): RAZ/WI, 32/64-bit.
            0x0070..=0x007f if matches!(sz, 4 | 8) => Ok(0),
            0x0070..=0x007f => Err(BadAccess),
            off::PIDR2 if !w => word(u64::from(PIDR2)),
            o if (off::CIDR0..off::CIDR0 + 16).contains(&o) && !w => {
                word(u64::from(CIDR[((o - off::CIDR0) / 4) as usize & 3]))
            }
            o => {
                warn_unknown(self.domid, "GICR RD_base", o, w);
                Ok(0)
            }
        }
    }

    fn sgi_base(&mut self, cpu: usize, off: u64, acc: MmioAccess) -> MmioResult {
        let w = acc.write;
        let sz = acc.size;
        let word = |r: u64| if sz == 4 { Ok(r) } else { Err(BadAccess) };
        let bits = |r| Some(r);
        let reg = match off {
            off::IGROUPR => bits(BitReg::Group),
            off::ISENABLER => bits(BitReg::SetEnable),
            off::ICENABLER => bits(BitReg::ClearEnable),
            off::ISPENDR => bits(BitReg::SetPending),
            off::ICPENDR => bits(BitReg::ClearPending),
            off::ISACTIVER => bits(BitReg::SetActive),
            off::ICACTIVER => bits(BitReg::ClearActive),
            _ => None,
        };
        if let Some(r) = reg {
            word(0)?;
            return Ok(self.bits_reg(cpu, r, 0, acc));
        }
        match off {
            o if (off::IPRIORITYR..off::IPRIORITYR + 0x20).contains(&o) => {
                self.priorities(cpu, (o - off::IPRIORITYR) as u32, acc)
            }
            // ICFGR0: SGIs are edge-triggered, read-only.
            o if o == off::ICFGR && !w => word(0xaaaa_aaaa),
            o if o == off::ICFGR => word(0),
            o if o == off::ICFGR + 4 => {
                word(0)?;
                Ok(self.config(cpu, 16, acc))
            }
            // IGRPMODR0, NSACR: RAZ/WI (single security state).
            off::IGRPMODR | off::NSACR => word(0),
            o => {
                warn_unknown(self.domid, "GICR SGI_base", o, w);
                Ok(0)
            }
        }
    }

    /// A distributor bit-per-interrupt register at byte offset `rel` (32-bit
    /// accesses, aligned by the caller); the first 32 INTIDs are RAZ/WI here
    /// (banked in the redistributor with ARE), INTIDs beyond the vGIC's RAZ/WI.
    fn bits_dist(&mut self, cpu: usize, r: BitReg, rel: u64, acc: MmioAccess) -> MmioResult {
        if acc.size != 4 || !rel.is_multiple_of(4) {
            return Err(BadAccess);
        }
        let first = (rel * 8) as u32;
        if !(32..self.nr_irqs()).contains(&first) {
            return Ok(0);
        }
        Ok(self.bits_reg(cpu, r, first, acc))
    }

    /// 32 interrupts from `first` (a multiple of 32).
    fn bits_reg(&mut self, cpu: usize, r: BitReg, first: u32, acc: MmioAccess) -> u64 {
        let mut out = 0u64;
        let mut notify = alloc::vec::Vec::new();
        // Physical distributor operations for hardware interrupts, made
        // after the loop (Xen's vgic_enable_irqs, KVM's vgic_hw_irq_*).
        let mut phys: alloc::vec::Vec<(u32, PhysOp)> = alloc::vec::Vec::new();
        for i in 0..32u32 {
            let intid = first + i;
            let target = if intid < 32 {
                cpu
            } else {
                self.spi_target(intid)
            };
            let Ok(irq) = self.irq_mut(cpu, intid) else {
                continue;
            };
            if acc.write {
                if (acc.value >> i) & 1 == 0 && r != BitReg::Group {
                    continue;
                }
                let before = *irq;
                match r {
                    BitReg::Group => irq.group1 = (acc.value >> i) & 1 == 1,
                    BitReg::SetEnable => irq.enabled = true,
                    BitReg::ClearEnable => irq.enabled = false,
                    // A hardware interrupt is made pending at its source:
                    // it then arrives (and is acknowledged) as any other.
                    BitReg::SetPending if irq.hw => phys.push((intid, PhysOp::SetPending)),
                    BitReg::SetPending => irq.pending = true,
                    BitReg::ClearPending => irq.pending = false,
                    BitReg::SetActive => irq.active = true,
                    BitReg::ClearActive => irq.active = false,
                }
                if irq.hw {
                    match r {
                        BitReg::SetEnable if !before.enabled => {
                            phys.push((intid, PhysOp::Enable));
                        }
                        BitReg::ClearEnable if before.enabled => {
                            phys.push((intid, PhysOp::Disable));
                        }
                        BitReg::ClearPending => {
                            phys.push((intid, PhysOp::ClearPending));
                            // The physical SPI hv acknowledged for this
                            // pending state would stay active for ever.
                            if before.pending && !irq.active {
                                phys.push((intid, PhysOp::Deactivate));
                            }
                        }
                        BitReg::ClearActive if before.active && !irq.pending => {
                            phys.push((intid, PhysOp::Deactivate));
                        }
                        _ => {}
                    }
                }
                if *irq != before {
                    notify.push(target);
                }
            } else {
                let bit = match r {
                    BitReg::Group => irq.group1,
                    BitReg::SetEnable | BitReg::ClearEnable => irq.enabled,
                    BitReg::SetPending | BitReg::ClearPending => irq.pending_now(),
                    BitReg::SetActive | BitReg::ClearActive => irq.active,
                };
                out |= u64::from(bit) << i;
            }
        }
        notify.dedup();
        for t in notify {
            self.notify(t);
        }
        if let Some(hw) = self.hw.as_ref().filter(|_| !phys.is_empty()) {
            let d = hw.dist();
            for (intid, op) in phys {
                match op {
                    PhysOp::Enable => d.spi_enable(intid),
                    PhysOp::Disable => d.spi_disable(intid),
                    PhysOp::SetPending => d.spi_set_pending(intid, true),
                    PhysOp::ClearPending => d.spi_set_pending(intid, false),
                    PhysOp::Deactivate => d.spi_deactivate(intid),
                }
            }
        }
        out
    }

    /// `IPRIORITYR` bytes from INTID `first` (byte or word accesses).
    fn priorities(&mut self, cpu: usize, first: u32, acc: MmioAccess) -> MmioResult {
        prio_width(acc.size)?;
        let mut out = 0u64;
        for b in 0..u32::from(acc.size) {
            let Ok(irq) = self.irq_mut(cpu, first + b) else {
                continue;
            };
            if acc.write {
                irq.priority = ((acc.value >> (8 * b)) as u8) & PRIO_MASK;
            } else {
                out |= u64::from(irq.priority) << (8 * b);
            }
        }
        Ok(out)
    }

    /// `ICFGR` word covering 16 INTIDs from `first`: bit 2n+1 = edge-triggered.
    fn config(&mut self, cpu: usize, first: u32, acc: MmioAccess) -> u64 {
        let mut out = 0u64;
        for i in 0..16u32 {
            let Ok(irq) = self.irq_mut(cpu, first + i) else {
                continue;
            };
            if acc.write {
                irq.level = (acc.value >> (2 * i + 1)) & 1 == 0;
            } else {
                out |= u64::from(!irq.level) << (2 * i + 1);
            }
        }
        out
    }

    fn kick_all(&self) {
        for c in 0..self.cpus.len() {
            self.notify(c);
        }
    }
}
