//! The raw sizes and offsets hv's handlers still use agree with the shared
//! Xen ABI structs (`memops::xen_abi`, re-exported as `hv::xen::abi`), until
//! every handler decodes through them (issue 10). An integration test, so
//! that the lowest layer (`xen::abi`) does not import its users.
#![allow(missing_docs)]

use hv::xen::abi::*;
use hv::xen::{domu, evtchn};

#[test]
fn hv_sizes_and_offsets_are_the_shared_structs() {
    assert_eq!(evtchn::layout::VI_UPCALL_PENDING, layout::VI_UPCALL_PENDING);
    assert_eq!(evtchn::layout::VI_PENDING_SEL, layout::VI_PENDING_SEL);
    assert_eq!(evtchn::layout::VCPU_INFO_SIZE, layout::VCPU_INFO_SIZE);
    assert_eq!(evtchn::layout::SI_PENDING, layout::SI_PENDING);
    assert_eq!(evtchn::layout::SI_MASK, layout::SI_MASK);
    assert_eq!(
        hv::hypercall::multicall::MULTICALL_ENTRY_LEN,
        MulticallEntry::SIZE as u64
    );
    assert_eq!(domu::runstate::SIZE, VcpuRunstateInfo::SIZE);
    assert_eq!(domu::runstate::UPDATE, XEN_RUNSTATE_UPDATE);
    assert_eq!(evtchn::DOMID_SELF, memops::xen::DOMID_SELF);
}

#[test]
fn runstate_encoding_is_vcpu_runstate_info() {
    let r = domu::Runstate {
        area: None,
        phys: false,
        state: domu::runstate::BLOCKED,
        entry: 0x1234_5678_9abc,
        time: [1, 2, 3, 4],
    };
    let shared = VcpuRunstateInfo {
        state: domu::runstate::BLOCKED as i32,
        state_entry_time: 0x1234_5678_9abc | XEN_RUNSTATE_UPDATE,
        time: [1, 2, 3, 4],
    };
    assert_eq!(r.encode(XEN_RUNSTATE_UPDATE), shared.to_bytes());
}

#[test]
fn hv_op_structs_are_the_shared_ones() {
    use hv::xen::hvop;
    assert_eq!(hvop::HV_COUNTERS_LEN, HvCounters::SIZE);
    assert_eq!(hvop::HV_RESOURCES_LEN, HvResources::SIZE);
    let r = hvop::Resources {
        pool_free: 1,
        pool_total: 2,
        hv_frames_free: 3,
        vmids_in_use: 4,
        domains: 5,
        evtchns_in_use: 6,
        heap_free: 7,
        pool_used: u64::MAX,
    };
    let shared = HvResources {
        pool_free: 1,
        pool_total: 2,
        hv_frames_free: 3,
        vmids_in_use: 4,
        domains: 5,
        evtchns_in_use: 6,
        heap_free: 7,
        pool_used: u64::MAX,
    };
    assert_eq!(r.to_bytes(), shared.to_bytes());
}
