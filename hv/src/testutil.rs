//! Test-only helpers shared by several modules' tests: a console sink that
//! records every line, fake host RAM with a stage-2 map, and a fake-arch
//! [`System`] with domains built from in-memory images.

use crate::arch::fake::FakeMem;
use crate::domain::build::{BootImage, DomainSpec};
use crate::domain::{DomId, Domain, DomainError};
use crate::start::System;
use crate::world::World;
use crate::xen::domu::DomainXen;
use crate::xen::ConsoleSink;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use memops::{FrameTable, S2Attrs, Stage2};
use pv_tlb::{Ipa, PhysAddr, Policy};
use spin::Mutex;

/// Every line given to the console: a guest's as `(dN) line`, hv's own as
/// `hv: line`. Clones share the record.
#[derive(Clone, Default)]
pub(crate) struct Lines(pub(crate) Arc<Mutex<Vec<String>>>);

impl ConsoleSink for Lines {
    fn guest_line(&mut self, domid: u16, line: &str) {
        self.0.lock().push(std::format!("(d{domid}) {line}"));
    }
    fn hv_line(&mut self, args: core::fmt::Arguments<'_>) {
        self.0.lock().push(std::format!("hv: {args}"));
    }
}

impl Lines {
    /// The lines so far.
    pub(crate) fn all(&self) -> Vec<String> {
        self.0.lock().clone()
    }
    /// Whether some line is exactly `s`.
    pub(crate) fn has(&self, s: &str) -> bool {
        self.0.lock().iter().any(|l| l == s)
    }
}

/// Fake host RAM (16 MiB at 0x8000_0000) and a 40-bit stage-2 table with
/// each `(ipa, pa, len, attrs)` mapped.
pub(crate) fn stage2_with(maps: &[(u64, u64, u64, S2Attrs)]) -> (FakeMem, Stage2) {
    let mut mem = FakeMem::new(0x8000_0000, 0x100_0000);
    let mut s2 = Stage2::new(&mut mem, 40).unwrap();
    for &(ipa, pa, len, attrs) in maps {
        s2.map(&mut mem, Ipa(ipa), PhysAddr(pa), len, attrs)
            .unwrap();
    }
    (mem, s2)
}

/// A world on `ram` bytes of fake host RAM at 0x8000_0000 whose first
/// `frames` frames are the guest page pool, 40-bit IPAs, no heap bound.
pub(crate) fn world(
    ram: u64,
    frames: u64,
    policy: Policy,
    sink: Box<dyn ConsoleSink + Send>,
    vmid_bits: u8,
) -> World<FakeMem> {
    let mem = FakeMem::new(0x8000_0000, ram);
    let pool = FrameTable::new(PhysAddr(0x8000_0000), frames);
    let mut world = World::new(mem, pool, policy, sink, vmid_bits, 40);
    world.heap_free = || usize::MAX;
    world
}

/// Domain `id` with `ram` bytes of RAM and the Xen state of a guest booted
/// by hv for `vcpus` vCPUs, added to `world`.
pub(crate) fn push_domain(
    world: &mut World<FakeMem>,
    id: DomId,
    ram: u64,
    vcpus: u32,
) -> &mut Domain {
    let w = world;
    let mut d = Domain::create(id, ram, 40, &mut w.vmids, &mut w.mem, &mut w.pool).unwrap();
    d.xen = DomainXen::setup(id, vcpus, d.physmap_mut(), &mut w.mem, &mut w.pool).unwrap();
    w.domains.push(d);
    w.domains.last_mut().unwrap()
}

/// Where domain `d` is in `world`'s list.
pub(crate) fn dom_index(world: &World<FakeMem>, d: DomId) -> usize {
    world.domains.iter().position(|x| x.id == d).unwrap()
}

/// Write `b` at `ipa` of domain `d` of `world` (through its stage 2).
pub(crate) fn guest_put(world: &mut World<FakeMem>, d: DomId, ipa: u64, b: &[u8]) {
    let i = dom_index(world, d);
    world.domains[i]
        .guest_memory(&mut world.mem)
        .copy_to_guest(Ipa(ipa), b)
        .unwrap();
}

/// Host RAM base of [`system`]'s fake machine.
pub(crate) const HOST_RAM: u64 = 0x8000_0000;
/// Frames of [`system`]'s guest page pool (48 MiB at [`HOST_RAM`]); table
/// frames come from the fake RAM's top.
pub(crate) const POOL_FRAMES: u64 = 0x3000;

/// A fake-arch system: 64 MiB of fake RAM at [`HOST_RAM`], the bottom
/// [`POOL_FRAMES`] for guest pages, `vmid_bits`-bit VMIDs, 40-bit IPAs.
pub(crate) fn system(
    policy: Policy,
    sink: Box<dyn ConsoleSink + Send>,
    vmid_bits: u8,
) -> System<FakeMem> {
    let mem = FakeMem::new(HOST_RAM, 0x400_0000);
    let pool = FrameTable::new(PhysAddr(HOST_RAM), POOL_FRAMES);
    System::new(mem, pool, policy, sink, vmid_bits, 40)
}

/// Build a domain from `spec` whose kernel is `image` (read from memory).
pub(crate) fn add_image(
    sys: &System<FakeMem>,
    spec: DomainSpec<'_>,
    image: &[u8],
) -> Result<DomId, DomainError> {
    sys.add_domain(
        spec,
        BootImage {
            size: image.len() as u64,
            read: &mut |_m: &FakeMem, off, buf: &mut [u8]| {
                buf.copy_from_slice(&image[off as usize..off as usize + buf.len()]);
            },
        },
        None,
    )
}
