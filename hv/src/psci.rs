//! PSCI for guests (Arm DEN0022 "Power State Coordination Interface", v1.1),
//! over `HVC #0` or a trapped `SMC #0`: decoded here into a [`PsciCall`]; the
//! run loop carries out the ones that change vCPUs or domains.
//!
//! Function ids: SMC32 (`0x8400_00xx`) and, for the calls taking addresses or
//! MPIDRs, SMC64 (`0xc400_00xx`). hv implements VERSION (1.1), FEATURES,
//! CPU_ON, CPU_OFF, AFFINITY_INFO, SYSTEM_OFF, SYSTEM_RESET; everything else
//! returns `NOT_SUPPORTED`.

/// `PSCI_VERSION`.
pub const VERSION: u32 = 0x8400_0000;
/// `CPU_SUSPEND` (SMC32; hv does not implement it).
pub const CPU_SUSPEND: u32 = 0x8400_0001;
/// `CPU_OFF`.
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON` (SMC32).
pub const CPU_ON_32: u32 = 0x8400_0003;
/// `CPU_ON` (SMC64).
pub const CPU_ON_64: u32 = 0xc400_0003;
/// `AFFINITY_INFO` (SMC32).
pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
/// `AFFINITY_INFO` (SMC64).
pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
/// `SYSTEM_OFF`.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// `SYSTEM_RESET`.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// `PSCI_FEATURES`.
pub const FEATURES: u32 = 0x8400_000a;

/// Version 1.1 (major << 16 | minor).
pub const V1_1: u64 = 0x0001_0001;

/// PSCI return codes.
pub mod ret {
    /// `SUCCESS`.
    pub const SUCCESS: u64 = 0;
    /// `NOT_SUPPORTED` (-1).
    pub const NOT_SUPPORTED: u64 = (-1i64) as u64;
    /// `INVALID_PARAMETERS` (-2).
    pub const INVALID_PARAMETERS: u64 = (-2i64) as u64;
    /// `ALREADY_ON` (-4).
    pub const ALREADY_ON: u64 = (-4i64) as u64;
    /// `AFFINITY_INFO`: ON.
    pub const AFF_ON: u64 = 0;
    /// `AFFINITY_INFO`: OFF.
    pub const AFF_OFF: u64 = 1;
}

/// A decoded guest PSCI call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PsciCall {
    /// Answer in x0 and resume (VERSION, FEATURES, unknown ids).
    Return(u64),
    /// Start vCPU `target` (its index, from the MPIDR) at `entry` with x0 = `context`.
    CpuOn {
        /// vCPU index.
        target: u32,
        /// Entry point (IPA, MMU off).
        entry: u64,
        /// `context_id`, the new vCPU's x0.
        context: u64,
    },
    /// Stop the calling vCPU.
    CpuOff,
    /// Is vCPU `target` on?
    AffinityInfo {
        /// vCPU index.
        target: u32,
    },
    /// Power the domain off.
    SystemOff,
    /// Reset the domain (hv ends it).
    SystemReset,
}

/// The vCPU index an MPIDR names (hv's vCPUs: Aff0 = index & 0xff, Aff1 =
/// index >> 8, Aff2 = Aff3 = 0); `None` for any other affinity value.
#[must_use]
pub fn mpidr_to_vcpu(mpidr: u64) -> Option<u32> {
    if mpidr & !0xffff != 0 {
        return None;
    }
    Some((mpidr & 0xff) as u32 | (((mpidr >> 8) & 0xff) as u32) << 8)
}

/// Decode the call in `x[0..4]` (function id in w0).
#[must_use]
pub fn decode(x: &[u64; 4]) -> PsciCall {
    let fid = x[0] as u32;
    // SMC32 calls take 32-bit arguments (upper halves ignored, DEN0028).
    let arg = |i: usize| {
        if fid & 0x4000_0000 == 0 {
            x[i] & 0xffff_ffff
        } else {
            x[i]
        }
    };
    match fid {
        VERSION => PsciCall::Return(V1_1),
        CPU_OFF => PsciCall::CpuOff,
        SYSTEM_OFF => PsciCall::SystemOff,
        SYSTEM_RESET => PsciCall::SystemReset,
        CPU_ON_32 | CPU_ON_64 => match mpidr_to_vcpu(arg(1)) {
            Some(target) => PsciCall::CpuOn {
                target,
                entry: arg(2),
                context: arg(3),
            },
            None => PsciCall::Return(ret::INVALID_PARAMETERS),
        },
        AFFINITY_INFO_32 | AFFINITY_INFO_64 => {
            // Only lowest_affinity_level 0 is meaningful for hv's flat vCPUs.
            if arg(2) != 0 {
                return PsciCall::Return(ret::INVALID_PARAMETERS);
            }
            match mpidr_to_vcpu(arg(1)) {
                Some(target) => PsciCall::AffinityInfo { target },
                None => PsciCall::Return(ret::INVALID_PARAMETERS),
            }
        }
        FEATURES => {
            let q = x[1] as u32;
            let known = matches!(
                q,
                VERSION
                    | CPU_OFF
                    | CPU_ON_32
                    | CPU_ON_64
                    | AFFINITY_INFO_32
                    | AFFINITY_INFO_64
                    | SYSTEM_OFF
                    | SYSTEM_RESET
                    | FEATURES
            );
            PsciCall::Return(if known {
                ret::SUCCESS
            } else {
                ret::NOT_SUPPORTED
            })
        }
        _ => PsciCall::Return(ret::NOT_SUPPORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_calls() {
        assert_eq!(
            decode(&[u64::from(VERSION), 0, 0, 0]),
            PsciCall::Return(V1_1)
        );
        assert_eq!(
            decode(&[u64::from(CPU_ON_64), 1, 0x4008_0000, 7]),
            PsciCall::CpuOn {
                target: 1,
                entry: 0x4008_0000,
                context: 7
            }
        );
        assert_eq!(
            decode(&[
                u64::from(CPU_ON_32),
                0xffff_ffff_0000_0102,
                0x1_4008_0000,
                0
            ]),
            PsciCall::CpuOn {
                target: 0x102,
                entry: 0x4008_0000,
                context: 0
            },
            "SMC32 arguments are 32 bits"
        );
        assert_eq!(
            decode(&[u64::from(CPU_ON_64), 1 << 16, 0, 0]),
            PsciCall::Return(ret::INVALID_PARAMETERS),
            "Aff2 is never a vCPU"
        );
        assert_eq!(
            decode(&[u64::from(AFFINITY_INFO_64), 3, 0, 0]),
            PsciCall::AffinityInfo { target: 3 }
        );
        assert_eq!(
            decode(&[u64::from(AFFINITY_INFO_64), 3, 1, 0]),
            PsciCall::Return(ret::INVALID_PARAMETERS)
        );
        assert_eq!(
            decode(&[u64::from(FEATURES), u64::from(CPU_ON_64), 0, 0]),
            PsciCall::Return(ret::SUCCESS)
        );
        assert_eq!(
            decode(&[u64::from(FEATURES), u64::from(CPU_SUSPEND), 0, 0]),
            PsciCall::Return(ret::NOT_SUPPORTED)
        );
        assert_eq!(
            decode(&[0xc400_0012, 0, 0, 0]),
            PsciCall::Return(ret::NOT_SUPPORTED)
        );
        assert_eq!(decode(&[u64::from(CPU_OFF), 0, 0, 0]), PsciCall::CpuOff);
        assert_eq!(
            decode(&[u64::from(SYSTEM_OFF), 0, 0, 0]),
            PsciCall::SystemOff
        );
    }
}
