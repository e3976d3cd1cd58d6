//! The control domain's program: parse the DTB, build domUs per variant,
//! run the checks the command line asks for, report.

use core::fmt::Write;

use dom0_builder::abi::{self, errno, DomainInfo, PhysInfo};
use dom0_builder::args::{Config, Variant};
use dom0_builder::blob::Blob;
use dom0_builder::fdt::{self, BootInfo, Fdt, Region};
use dom0_builder::fdtw::{self, DomuDtb};
use dom0_builder::image::ImageHeader;
use dom0_builder::layout::{self, PageList, Scratch, Src, PAGE};
use dom0_builder::{report, FOREIGN_WINDOW_GFN, FOREIGN_WINDOW_PAGES};
use guest_rt::hypercall::console_write;
use guest_rt::line::LineBuf;
use guest_rt::{println, xen};

use crate::hc;

/// A failed step: what, and the value hv returned.
#[derive(Clone, Copy, Debug)]
struct Fail {
    step: &'static str,
    rc: i64,
}

fn fail(step: &'static str, rc: i64) -> Fail {
    Fail { step, rc }
}

/// Prints one line of any length as a single console_io call.
fn line(f: impl FnOnce(&mut LineBuf<fn(&[u8]), 512>) -> core::fmt::Result) {
    let sink: fn(&[u8]) = |b| {
        let _ = console_write(b);
    };
    let mut lb = LineBuf::<fn(&[u8]), 512>::new(sink);
    let _ = f(&mut lb);
    let _ = lb.write_str("\n");
}

/// Arrays in the control domain's RAM that hv reads and writes by handle.
struct Arrays {
    gfns: &'static mut [u64],
    idxs: &'static mut [u64],
    errs: &'static mut [i32],
    dtb: &'static mut [u8],
}

/// Largest array the builder passes in one call (besides the 1M test).
const ARRAY_MAX: usize = 8192;
/// DTB buffer.
const DTB_MAX: usize = 16 << 10;

struct Ctx {
    cfg: Config<'static>,
    freq: u64,
    scratch: Scratch,
    a: Arrays,
    kernel: Option<&'static [u8]>,
    initrd: Option<&'static [u8]>,
    failures: u32,
}

impl Ctx {
    fn check(&mut self, name: &str, ok: bool, got: i64, want: i64) {
        if ok {
            println!("dom0: negative: {}: PASS (got {})", name, got);
        } else {
            self.failures += 1;
            println!(
                "dom0: negative: {}: FAIL (got {}, expect {})",
                name, got, want
            );
        }
    }

    fn report_fail(&mut self, what: &str, f: Fail) {
        self.failures += 1;
        println!("dom0: FAIL {}: {} returned {}", what, f.step, f.rc);
    }
}

fn create_domain(mem: u64) -> Result<u16, Fail> {
    let mut d = abi::domctl_createdomain(&abi::CreateDomain::xl_default(1));
    let rc = hc::domctl(&mut d);
    if rc != 0 {
        return Err(fail("domctl createdomain", rc));
    }
    let domid = abi::domctl_domain(&d);
    let rc = hc::domctl(&mut abi::domctl_max_vcpus(domid, 1));
    if rc != 0 {
        return Err(fail("domctl max_vcpus", rc));
    }
    let rc = hc::domctl(&mut abi::domctl_max_mem(domid, mem / 1024));
    if rc != 0 {
        return Err(fail("domctl max_mem", rc));
    }
    Ok(domid)
}

fn destroy_domain(domid: u16) -> i64 {
    loop {
        let rc = hc::domctl(&mut abi::domctl(abi::XEN_DOMCTL_DESTROYDOMAIN, domid));
        // libxc's xc_domain_destroy retries while Xen answers -EAGAIN.
        if rc != -errno::EAGAIN {
            return rc;
        }
        let _ = hc::yield_now();
    }
}

fn domain_info(domid: u16) -> Result<DomainInfo, i64> {
    let mut d = abi::domctl(abi::XEN_DOMCTL_GETDOMAININFO, domid);
    let rc = hc::domctl(&mut d);
    if rc != 0 {
        return Err(rc);
    }
    Ok(DomainInfo::decode(&d))
}

fn physinfo() -> Result<PhysInfo, i64> {
    let mut s = abi::sysctl_physinfo();
    let rc = hc::sysctl(&mut s);
    if rc != 0 {
        return Err(rc);
    }
    Ok(PhysInfo::decode(&s))
}

/// `populate_physmap` of `gfns` (extent order `order`) for `domid`: the
/// number of extents hv populated, or its error.
fn populate_call(a: &mut Arrays, n: usize, order: u32, domid: u16) -> i64 {
    let mut r = abi::memory_reservation(a.gfns.as_ptr() as u64, n as u64, order, domid);
    // SAFETY: extent_start names `a.gfns`, live scratch of at least `n`
    // entries that no reference uses during the call.
    unsafe { hc::memory_op(abi::XENMEM_POPULATE_PHYSMAP, &mut r) }
}

/// Populate `count` single pages from `gfn` (order 0, any partial success resumed).
fn populate_pages(a: &mut Arrays, domid: u16, gfn: u64, count: u64) -> Result<(), Fail> {
    let chunk = a.gfns.len() as u64;
    let mut done = 0;
    while done < count {
        let n = (count - done).min(chunk);
        for (i, g) in a.gfns.iter_mut().take(n as usize).enumerate() {
            *g = gfn + done + i as u64;
        }
        let rc = populate_call(a, n as usize, 0, domid);
        if rc <= 0 {
            return Err(fail("populate_physmap order 0", rc));
        }
        done += (rc as u64).min(n);
    }
    Ok(())
}

/// Populate `mem` bytes of RAM at GUEST_RAM0_BASE: 2 MiB extents where they
/// fit, single pages for the rest and for every extent hv did not give.
fn populate(a: &mut Arrays, domid: u16, mem: u64) -> Result<(), Fail> {
    let ((g2, n2), (g0, n0)) = layout::ram_extents(abi::guest::RAM0_BASE, mem);
    let per = layout::SUPERPAGE / PAGE;
    let mut done = 0u64;
    while done < n2 {
        let n = (n2 - done).min(a.gfns.len() as u64);
        for (i, g) in a.gfns.iter_mut().take(n as usize).enumerate() {
            *g = g2 + (done + i as u64) * per;
        }
        let rc = populate_call(a, n as usize, 9, domid);
        if rc <= 0 {
            break;
        }
        done += (rc as u64).min(n);
    }
    for j in done..n2 {
        populate_pages(a, domid, g2 + j * per, per)?;
    }
    populate_pages(a, domid, g0, n0)
}

/// Map `count` foreign pages (`domu_gfn(k)`) of `domid` at the window
/// `FOREIGN_WINDOW_GFN + first + k`, in chunks of `chunk`; every errs[] must be 0.
fn map_foreign(
    a: &mut Arrays,
    domid: u16,
    first: u64,
    count: u64,
    chunk: usize,
    domu_gfn: impl Fn(u64) -> u64,
) -> Result<(), Fail> {
    map_foreign_at(a, domid, count, chunk, domu_gfn, |k| {
        FOREIGN_WINDOW_GFN + first + k
    })
}

/// Map `count` foreign pages (`domu_gfn(k)`) of `domid` at the gfns
/// `win(k)`, in chunks of at most `chunk` that end on a 2 MiB boundary of
/// the window where one is in reach (`layout::chunk_len`), so that every
/// 2 MiB aligned run goes to hv in one call (hv maps it as one stage-2
/// block); every errs[] must be 0.
fn map_foreign_at(
    a: &mut Arrays,
    domid: u16,
    count: u64,
    chunk: usize,
    domu_gfn: impl Fn(u64) -> u64,
    win: impl Fn(u64) -> u64,
) -> Result<(), Fail> {
    let chunk = chunk.min(a.gfns.len()).min(u16::MAX as usize) as u64;
    let mut k = 0;
    while k < count {
        let n = layout::chunk_len(k, count, chunk, &win);
        for i in 0..n as usize {
            a.idxs[i] = domu_gfn(k + i as u64);
            a.gfns[i] = win(k + i as u64);
            a.errs[i] = 1;
        }
        let mut arg = abi::add_to_physmap_batch(
            abi::DOMID_SELF,
            abi::XENMAPSPACE_GMFN_FOREIGN,
            n as u16,
            domid,
            a.idxs.as_ptr() as u64,
            a.gfns.as_ptr() as u64,
            a.errs.as_mut_ptr() as u64,
        );
        // SAFETY: idxs, gpfns and errs name the live scratch arrays, each of
        // at least `n` entries, unused by any reference during the call.
        let rc = unsafe { hc::memory_op(abi::XENMEM_ADD_TO_PHYSMAP_BATCH, &mut arg) };
        if rc != 0 {
            return Err(fail("add_to_physmap_batch", rc));
        }
        if let Some(e) = a.errs[..n as usize].iter().find(|e| **e != 0) {
            return Err(fail("add_to_physmap_batch errs[]", i64::from(*e)));
        }
        k += n;
    }
    Ok(())
}

fn remove_single(gpfn: u64) -> i64 {
    let mut arg = abi::remove_from_physmap(abi::DOMID_SELF, gpfn);
    // SAFETY: xen_remove_from_physmap carries no handle.
    unsafe { hc::memory_op(abi::XENMEM_REMOVE_FROM_PHYSMAP, &mut arg) }
}

/// `remove_from_physmap_batch` of the first `n` entries of `gfns`.
///
/// # Safety
/// `gfns` and `errs` hold at least `n` entries (or `gfns_addr` is a
/// deliberately bad handle).
unsafe fn remove_batch_raw(gfns_addr: u64, errs_addr: u64, n: u32) -> i64 {
    let mut arg = abi::remove_from_physmap_batch(abi::DOMID_SELF, n, gfns_addr, errs_addr);
    // SAFETY: forwarded to the caller's guarantee.
    unsafe { hc::memory_op(abi::XENMEM_REMOVE_FROM_PHYSMAP_BATCH, &mut arg) }
}

/// Unmap window pages `first..first + count` with `v`.
fn unmap(a: &mut Arrays, v: Variant, first: u64, count: u64, chunk: u32) -> Result<(), Fail> {
    unmap_at(a, v, count, chunk, |k| FOREIGN_WINDOW_GFN + first + k)
}

/// Unmap the window gfns `win(0..count)` with `v` (batches cut as in
/// [`map_foreign_at`], so that hv can remove a 2 MiB block whole).
fn unmap_at(
    a: &mut Arrays,
    v: Variant,
    count: u64,
    chunk: u32,
    win: impl Fn(u64) -> u64,
) -> Result<(), Fail> {
    match v {
        Variant::Single => {
            for k in 0..count {
                let rc = remove_single(win(k));
                if rc != 0 {
                    return Err(fail("remove_from_physmap", rc));
                }
            }
            Ok(())
        }
        Variant::Batch => {
            let chunk = (chunk as u64).min(a.gfns.len() as u64);
            let mut k = 0;
            while k < count {
                let n = layout::chunk_len(k, count, chunk, &win);
                for i in 0..n as usize {
                    a.gfns[i] = win(k + i as u64);
                    a.errs[i] = 1;
                }
                // SAFETY: both arrays are live scratch of at least `n` entries.
                let rc = unsafe {
                    remove_batch_raw(a.gfns.as_ptr() as u64, a.errs.as_mut_ptr() as u64, n as u32)
                };
                if rc != 0 {
                    return Err(fail("remove_from_physmap_batch", rc));
                }
                if let Some(e) = a.errs[..n as usize].iter().find(|e| **e != 0) {
                    return Err(fail("remove_from_physmap_batch errs[]", i64::from(*e)));
                }
                k += n;
            }
            Ok(())
        }
    }
}

/// A built (not yet running) domU.
struct Built {
    domid: u16,
    pages: u64,
}

/// Steps 1-4 of the toolstack for one variant; prints the build line.
fn build(c: &mut Ctx, v: Variant) -> Result<Built, (Option<u16>, Fail)> {
    let kernel = c
        .kernel
        .ok_or((None, fail("no `kernel` in the images blob", -errno::ENOENT)))?;
    let hdr = ImageHeader::parse(kernel).map_err(|e| {
        println!("dom0: kernel: {}", e);
        (None, fail("Image header", -errno::EINVAL))
    })?;
    let mem = c.cfg.domu_mem;
    let ram = Region {
        base: abi::guest::RAM0_BASE,
        size: mem,
    };
    let initrd = c.initrd.unwrap_or(&[]);
    let initrd_len = initrd.len() as u64;

    let _ = hc::reset_counters();
    let t0 = hc::ticks();
    let domid = create_domain(mem).map_err(|f| (None, f))?;
    let with = |f: Fail| (Some(domid), f);
    populate(&mut c.a, domid, mem).map_err(with)?;

    // The DTB's size does not depend on the addresses in it: measure, place, write.
    let mut dtb = DomuDtb {
        ram_base: ram.base,
        ram_size: ram.size,
        bootargs: c.cfg.domu_args,
        initrd: (initrd_len > 0).then_some((0, initrd_len)),
        xen_node: c.cfg.xen_node,
    };
    let dtb_len = fdtw::write_domu_dtb(c.a.dtb, &dtb)
        .map_err(|_| with(fail("domU DTB", -errno::ENOMEM)))? as u64;
    let p = layout::place(ram, &hdr, initrd_len, dtb_len).map_err(|e| {
        println!("dom0: layout: {}", e);
        with(fail("placing the images", -errno::ENOMEM))
    })?;
    dtb.initrd = p.initrd.map(|s| (s, s + initrd_len));
    let dtb_len = fdtw::write_domu_dtb(c.a.dtb, &dtb)
        .map_err(|_| with(fail("domU DTB", -errno::ENOMEM)))? as u64;
    let pl = PageList::new(
        ram,
        &p,
        kernel.len() as u64,
        initrd_len,
        dtb_len,
        c.cfg.min_pages,
    );
    let pages = pl.total_pages();
    if pages > FOREIGN_WINDOW_PAGES {
        return Err(with(fail(
            "pages exceed the foreign window",
            -errno::ENOMEM,
        )));
    }

    let page_gfn = |k: u64| pl.page(k).map_or(0, |(g, _, _)| g);
    // Each domU page at the window gfn of its offset in the domU's RAM: the
    // window keeps the domU's 2 MiB alignment, so each 2 MiB extent of it
    // (populate_physmap order 9: contiguous, aligned frames) is one 2 MiB
    // block in d0's stage-2 (one L1 shadow fault instead of 512 nested).
    let ram_gfn = ram.base / PAGE;
    if mem / PAGE > FOREIGN_WINDOW_PAGES {
        return Err(with(fail(
            "domU RAM exceeds the foreign window",
            -errno::ENOMEM,
        )));
    }
    let win = |k: u64| FOREIGN_WINDOW_GFN + page_gfn(k).wrapping_sub(ram_gfn);
    // What is mapped: the written pages' 2 MiB extents, whole.
    let ml = layout::MapList::new(ram, &pl);
    let map_gfn = |j: u64| ml.gfn(j);
    let map_win = |j: u64| FOREIGN_WINDOW_GFN + ml.gfn(j).wrapping_sub(ram_gfn);
    map_foreign_at(
        &mut c.a,
        domid,
        ml.total_pages(),
        c.cfg.map_chunk as usize,
        map_gfn,
        map_win,
    )
    .map_err(with)?;
    let dtb_bytes: &[u8] = c.a.dtb.get(..dtb_len as usize).unwrap_or(&[]);
    for k in 0..pages {
        let Some((_, src, off)) = pl.page(k) else {
            break;
        };
        let data = match src {
            Src::Kernel => kernel,
            Src::Initrd => initrd,
            Src::Dtb => dtb_bytes,
            Src::Zero => &[],
        };
        // SAFETY: window page k was just mapped (every errs[] was 0) and is
        // no Rust object.
        unsafe { hc::write_page(win(k), data, off) };
    }
    if c.cfg.verify {
        let bad = (0..pages)
            .filter(|&k| {
                let Some((_, src, off)) = pl.page(k) else {
                    return true;
                };
                let data = match src {
                    Src::Kernel => kernel,
                    Src::Initrd => initrd,
                    Src::Dtb => dtb_bytes,
                    Src::Zero => &[],
                };
                // SAFETY: window page k is mapped (above) and no Rust object.
                !unsafe { hc::page_matches(win(k), data, off) }
            })
            .count();
        if bad != 0 {
            return Err(with(fail(
                "verify: pages differ from their source",
                bad as i64,
            )));
        }
        println!("dom0: verify: {} pages match their source", pages);
    }
    unmap_at(&mut c.a, v, ml.total_pages(), c.cfg.unmap_chunk, map_win).map_err(with)?;

    let ctx = abi::vcpu_boot_context(p.kernel, p.dtb);
    let rc = hc::setvcpucontext(domid, 0, &ctx);
    if rc != 0 {
        return Err(with(fail("domctl setvcpucontext", rc)));
    }
    let ticks = hc::ticks().wrapping_sub(t0);
    let counters = hc::counters();
    // Pages mapped (and removed): the written ones and the rest of their
    // mostly written 2 MiB extents.
    let mapped = ml.total_pages();
    line(|w| report::write_build_line(w, v.name(), mapped, ticks, c.freq, counters));
    println!(
        "dom0: d{} built: kernel at {:#x} ({} bytes), initrd at {:#x} ({} bytes), dtb at {:#x} ({} bytes)",
        domid,
        p.kernel,
        kernel.len(),
        p.initrd.unwrap_or(0),
        initrd_len,
        p.dtb,
        dtb_len
    );
    Ok(Built {
        domid,
        pages: mapped,
    })
}

/// Unpause and wait (yielding) until the domU shuts down; its SHUTDOWN_* code.
fn run_domu(c: &Ctx, domid: u16) -> Result<u8, Fail> {
    let rc = hc::domctl(&mut abi::domctl(abi::XEN_DOMCTL_UNPAUSEDOMAIN, domid));
    if rc != 0 {
        return Err(fail("domctl unpausedomain", rc));
    }
    let t0 = hc::ticks();
    let limit = c.freq.saturating_mul(c.cfg.timeout_ms) / 1000;
    loop {
        let info = domain_info(domid).map_err(|rc| fail("domctl getdomaininfo", rc))?;
        if info.domain != domid {
            return Err(fail(
                "getdomaininfo answered for another domain",
                i64::from(info.domain),
            ));
        }
        if let Some(code) = info.shutdown_code() {
            return Ok(code);
        }
        if hc::ticks().wrapping_sub(t0) > limit {
            return Err(fail(
                "waiting for the domU to shut down (timeout)",
                -errno::EBUSY,
            ));
        }
        let _ = hc::yield_now();
    }
}

fn destroy_and_report(c: &mut Ctx, label: &str, domid: u16) {
    let _ = hc::reset_counters();
    let t0 = hc::ticks();
    let rc = destroy_domain(domid);
    let ticks = hc::ticks().wrapping_sub(t0);
    let counters = hc::counters();
    if rc != 0 {
        c.report_fail("destroy", fail("domctl destroydomain", rc));
        return;
    }
    let freq = c.freq;
    line(|w| {
        write!(
            w,
            "dom0: destroy variant={} domid={} destroy_ticks={} destroy_us={} ",
            label,
            domid,
            ticks,
            report::ticks_to_us(ticks, freq)
        )?;
        report::write_counters(w, counters)
    });
    match domain_info(domid) {
        Err(rc) if rc == -errno::ESRCH => {}
        other => {
            c.failures += 1;
            println!(
                "dom0: FAIL d{} still visible after destroy: {:?}",
                domid,
                other.map(|i| i.flags)
            );
        }
    }
}

fn run_variant(c: &mut Ctx, v: Variant) {
    match build(c, v) {
        Ok(b) => {
            if c.cfg.boot {
                match run_domu(c, b.domid) {
                    Ok(code) => {
                        let ok = u32::from(code) == xen::SHUTDOWN_POWEROFF;
                        println!(
                            "dom0: variant={} d{} shut down with code {}: {}",
                            v.name(),
                            b.domid,
                            code,
                            if ok { "PASS" } else { "FAIL" }
                        );
                        if !ok {
                            c.failures += 1;
                        }
                    }
                    Err(f) => c.report_fail("running the domU", f),
                }
            }
            let _ = b.pages;
            destroy_and_report(c, v.name(), b.domid);
        }
        Err((domid, f)) => {
            c.report_fail(v.name(), f);
            if let Some(d) = domid {
                let _ = destroy_domain(d);
            }
        }
    }
}

/// A 2 MiB domU with RAM only, for the checks (or the existing domain of
/// `foreign-domid=`).
fn check_domu(c: &mut Ctx) -> Result<u16, Fail> {
    if let Some(d) = c.cfg.foreign_domid {
        return Ok(d);
    }
    small_domu(c)
}

/// Gives back a domain from [`check_domu`] (destroys it unless it was borrowed).
fn release_check_domu(c: &Ctx, d: u16) -> i64 {
    if c.cfg.foreign_domid == Some(d) {
        0
    } else {
        destroy_domain(d)
    }
}

/// A 2 MiB domU with RAM only.
fn small_domu(c: &mut Ctx) -> Result<u16, Fail> {
    let d = create_domain(2 << 20)?;
    if let Err(f) = populate(&mut c.a, d, 2 << 20) {
        let _ = destroy_domain(d);
        return Err(f);
    }
    Ok(d)
}

/// An IPA outside guest RAM and outside Xen's guest MMIO map.
const OUTSIDE_RAM: u64 = 0x1000_0000;
/// A gfn far above any IPA size.
const HUGE_GFN: u64 = 1 << 52;

/// The checks that need no domU.
fn negative_tests_self(c: &mut Ctx) {
    let rc = remove_single(HUGE_GFN);
    c.check(
        "remove_from_physmap gpfn outside the domain -> -EINVAL",
        rc == -errno::EINVAL,
        rc,
        -errno::EINVAL,
    );

    // SAFETY: the argument lies outside guest RAM: no Rust object.
    let rc = unsafe {
        hc::raw(
            abi::HYPERVISOR_MEMORY_OP,
            abi::XENMEM_REMOVE_FROM_PHYSMAP,
            OUTSIDE_RAM,
        )
    };
    c.check(
        "memory_op argument outside guest RAM -> -EFAULT",
        rc == -errno::EFAULT,
        rc,
        -errno::EFAULT,
    );
    // SAFETY: the gpfns handle lies outside guest RAM; errs is live scratch.
    let rc = unsafe { remove_batch_raw(OUTSIDE_RAM, c.a.errs.as_mut_ptr() as u64, 4) };
    c.check(
        "remove batch gpfns handle outside guest RAM -> -EFAULT",
        rc == -errno::EFAULT,
        rc,
        -errno::EFAULT,
    );
    // SAFETY: the domctl handle lies outside guest RAM.
    let rc = unsafe { hc::raw(abi::HYPERVISOR_DOMCTL, OUTSIDE_RAM, 0) };
    c.check(
        "domctl handle outside guest RAM -> -EFAULT",
        rc == -errno::EFAULT,
        rc,
        -errno::EFAULT,
    );

    let rc = domain_info(0x7000).err().unwrap_or(0);
    c.check(
        "getdomaininfo of a missing domain -> -ESRCH",
        rc == -errno::ESRCH,
        rc,
        -errno::ESRCH,
    );
    let rc = hc::hv_op_plain(0x7777);
    c.check(
        "hv_op unknown sub-op -> -ENOSYS",
        rc == -errno::ENOSYS,
        rc,
        -errno::ENOSYS,
    );
}

fn negative_tests(c: &mut Ctx) {
    negative_tests_self(c);
    let d = match check_domu(c) {
        Ok(d) => d,
        Err(f) => return c.report_fail("negative-tests setup", f),
    };
    let ram_gfn = abi::guest::RAM0_BASE / PAGE;
    let window = FOREIGN_WINDOW_GFN;

    // One foreign map to a gpfn outside the caller's IPA space.
    c.a.idxs[0] = ram_gfn;
    c.a.gfns[0] = HUGE_GFN;
    c.a.errs[0] = 1;
    let mut arg = abi::add_to_physmap_batch(
        abi::DOMID_SELF,
        abi::XENMAPSPACE_GMFN_FOREIGN,
        1,
        d,
        c.a.idxs.as_ptr() as u64,
        c.a.gfns.as_ptr() as u64,
        c.a.errs.as_mut_ptr() as u64,
    );
    // SAFETY: the handles name live scratch arrays of at least one entry.
    let rc = unsafe { hc::memory_op(abi::XENMEM_ADD_TO_PHYSMAP_BATCH, &mut arg) };
    let e = i64::from(c.a.errs[0]);
    c.check(
        "foreign map to a gpfn outside the domain -> errs[0] -EINVAL",
        rc == 0 && e == -errno::EINVAL,
        e,
        -errno::EINVAL,
    );

    // A foreign map of a gfn the domU has no RAM at.
    c.a.idxs[0] = 0x10;
    c.a.gfns[0] = window;
    c.a.errs[0] = 1;
    let mut arg = abi::add_to_physmap_batch(
        abi::DOMID_SELF,
        abi::XENMAPSPACE_GMFN_FOREIGN,
        1,
        d,
        c.a.idxs.as_ptr() as u64,
        c.a.gfns.as_ptr() as u64,
        c.a.errs.as_mut_ptr() as u64,
    );
    // SAFETY: as above.
    let rc = unsafe { hc::memory_op(abi::XENMEM_ADD_TO_PHYSMAP_BATCH, &mut arg) };
    let e = i64::from(c.a.errs[0]);
    c.check(
        "foreign map of a gfn without RAM -> errs[0] -EINVAL",
        rc == 0 && e == -errno::EINVAL,
        e,
        -errno::EINVAL,
    );

    c.a.gfns[0] = HUGE_GFN;
    let rc = populate_call(&mut c.a, 1, 0, d);
    c.check(
        "populate_physmap outside the domain -> 0 extents",
        rc == 0,
        rc,
        0,
    );

    // A remove batch with an unmapped page in the middle.
    match map_foreign(&mut c.a, d, 0, 4, 4, |k| ram_gfn + k) {
        Err(f) => c.report_fail("negative-tests map", f),
        Ok(()) => {
            let list = [window, window + 1, window + 100, window + 2, window + 3];
            let want = [0, 0, -errno::ENOENT, 0, 0];
            let mut got = [1i64; 5];
            let mut rcs = [0i64; 2];
            for (pass, rc_slot) in rcs.iter_mut().enumerate() {
                c.a.gfns[..5].copy_from_slice(&list);
                c.a.errs[..5].fill(1);
                // SAFETY: both arrays are live scratch of at least 5 entries.
                *rc_slot = unsafe {
                    remove_batch_raw(c.a.gfns.as_ptr() as u64, c.a.errs.as_mut_ptr() as u64, 5)
                };
                if pass == 0 {
                    for (g, e) in got.iter_mut().zip(c.a.errs.iter()) {
                        *g = i64::from(*e);
                    }
                }
            }
            let ok = rcs[0] == 0 && got == want;
            println!("dom0: negative: batch errs = {:?} (rc {})", got, rcs[0]);
            c.check(
                "remove batch with an unmapped page -> errs[] -ENOENT, rest removed",
                ok,
                rcs[0],
                0,
            );
            let again_all_enoent = rcs[1] == 0
                && c.a.errs[..5]
                    .iter()
                    .all(|e| i64::from(*e) == -errno::ENOENT);
            c.check(
                "the same batch again -> every entry -ENOENT (they were removed)",
                again_all_enoent,
                rcs[1],
                0,
            );
        }
    }

    million_batch(c, d);

    let rc = release_check_domu(c, d);
    if rc != 0 {
        c.report_fail("negative-tests teardown", fail("domctl destroydomain", rc));
    }
}

/// 1,000,000 entries: 16 mapped pages, then unmapped gpfns. hv must finish
/// it (with continuations) and fill every errs[] entry.
fn million_batch(c: &mut Ctx, d: u16) {
    const N: usize = 1_000_000;
    const MAPPED: usize = 16;
    let (Some(ga), Some(ea)) = (
        c.scratch.alloc(8 * N as u64, 8),
        c.scratch.alloc(4 * N as u64, 8),
    ) else {
        c.failures += 1;
        println!("dom0: negative: 1,000,000-entry batch: FAIL (not enough scratch RAM: give dom0 mem= 12 MiB more)");
        return;
    };
    // SAFETY: fresh, aligned scratch allocations, used only here.
    let gfns: &'static mut [u64] = unsafe { hc::scratch(ga, N) };
    // SAFETY: as above.
    let errs: &'static mut [i32] = unsafe { hc::scratch(ea, N) };
    if let Err(f) = map_foreign(&mut c.a, d, 0, MAPPED as u64, MAPPED, |k| {
        abi::guest::RAM0_BASE / PAGE + k
    }) {
        return c.report_fail("1M batch map", f);
    }
    for (i, g) in gfns.iter_mut().enumerate() {
        *g = if i < MAPPED {
            FOREIGN_WINDOW_GFN + i as u64
        } else {
            FOREIGN_WINDOW_GFN + MAPPED as u64 + (i % 4096) as u64
        };
    }
    errs.fill(1);
    let _ = hc::reset_counters();
    let t0 = hc::ticks();
    // SAFETY: both arrays hold N entries of live scratch.
    let rc = unsafe { remove_batch_raw(gfns.as_ptr() as u64, errs.as_mut_ptr() as u64, N as u32) };
    let ticks = hc::ticks().wrapping_sub(t0);
    let counters = hc::counters();
    let mapped_ok = errs[..MAPPED].iter().all(|e| *e == 0);
    let bad = errs[MAPPED..]
        .iter()
        .filter(|e| i64::from(**e) != -errno::ENOENT)
        .count();
    let freq = c.freq;
    line(|w| {
        write!(
            w,
            "dom0: negative: 1,000,000-entry batch rc={} first16_ok={} other_not_enoent={} us={} ",
            rc,
            mapped_ok,
            bad,
            report::ticks_to_us(ticks, freq)
        )?;
        report::write_counters(w, counters)
    });
    c.check(
        "1,000,000-entry remove batch completes, every errs[] filled",
        rc == 0 && mapped_ok && bad == 0,
        rc,
        0,
    );
}

/// `EVTCHNOP_alloc_unbound` in `d` for dom0 (done by dom0 on `d`'s behalf),
/// then dom0's `EVTCHNOP_bind_interdomain` to it: dom0's port.
fn evtchn_pair(d: u16) -> Result<u32, Fail> {
    let mut b = abi::Buf::<24>::zeroed();
    b.0[0..2].copy_from_slice(&d.to_le_bytes());
    b.0[2..4].copy_from_slice(&0u16.to_le_bytes());
    let rc = hc::evtchn_op(abi::EVTCHNOP_ALLOC_UNBOUND, &mut b);
    if rc != 0 {
        return Err(fail("EVTCHNOP_alloc_unbound", rc));
    }
    let remote_port = u32::from_le_bytes([b.0[4], b.0[5], b.0[6], b.0[7]]);
    let mut b = abi::Buf::<24>::zeroed();
    b.0[0..2].copy_from_slice(&d.to_le_bytes());
    b.0[4..8].copy_from_slice(&remote_port.to_le_bytes());
    let rc = hc::evtchn_op(abi::EVTCHNOP_BIND_INTERDOMAIN, &mut b);
    if rc != 0 {
        return Err(fail("EVTCHNOP_bind_interdomain", rc));
    }
    Ok(u32::from_le_bytes([b.0[8], b.0[9], b.0[10], b.0[11]]))
}

/// `EVTCHNOP_status` of dom0's own `port`: the `EVTCHNSTAT_*` value.
fn evtchn_status(port: u32) -> Result<u32, i64> {
    let mut b = abi::Buf::<24>::zeroed();
    b.0[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes()); // DOMID_SELF
    b.0[4..8].copy_from_slice(&port.to_le_bytes());
    let rc = hc::evtchn_op(abi::EVTCHNOP_STATUS, &mut b);
    if rc != 0 {
        return Err(rc);
    }
    Ok(u32::from_le_bytes([b.0[8], b.0[9], b.0[10], b.0[11]]))
}

fn evtchn_close(port: u32) -> i64 {
    let mut b = abi::Buf::<24>::zeroed();
    b.0[0..4].copy_from_slice(&port.to_le_bytes());
    hc::evtchn_op(abi::EVTCHNOP_CLOSE, &mut b)
}

/// What one soak round saw beyond success.
#[derive(Default)]
struct RoundSeen {
    /// dom0's end of the destroyed domU's channel did not read unbound.
    port_not_unbound: bool,
    /// What `EVTCHNOP_status` answered for it (status, or the errno).
    status: i64,
}

/// One create/destroy round: a 2 MiB domU (createdomain, max_mem,
/// populate), an interdomain event channel to dom0, destroydomain; then
/// dom0's end must read `EVTCHNSTAT_unbound` (Xen's `evtchn_destroy`
/// closes the dead domain's ports, which turns the peer's back to unbound)
/// and dom0 closes it.
fn soak_round(c: &mut Ctx) -> Result<(u16, RoundSeen), Fail> {
    let d = small_domu(c)?;
    let port = match evtchn_pair(d) {
        Ok(p) => p,
        Err(f) => {
            let _ = destroy_domain(d);
            return Err(f);
        }
    };
    let rc = destroy_domain(d);
    if rc != 0 {
        return Err(fail("domctl destroydomain", rc));
    }
    let mut seen = RoundSeen::default();
    match evtchn_status(port) {
        Ok(abi::EVTCHNSTAT_UNBOUND) => seen.status = i64::from(abi::EVTCHNSTAT_UNBOUND),
        Ok(st) => {
            seen.port_not_unbound = true;
            seen.status = i64::from(st);
        }
        Err(rc) => {
            seen.port_not_unbound = true;
            seen.status = rc;
        }
    }
    let rc = evtchn_close(port);
    if rc != 0 {
        return Err(fail("EVTCHNOP_close of dom0's port", rc));
    }
    Ok((d, seen))
}

fn write_resources(w: &mut impl Write, r: &abi::HvResources) -> core::fmt::Result {
    for (name, v) in r.balance() {
        write!(w, "{}={} ", name, v)?;
    }
    write!(w, "pool_used={}", r.pool_used)
}

/// The create/destroy soak (`destroy-loop=<n>`): one warm-up round, then
/// `n` rounds. After them, free pool pages (`XEN_SYSCTL_physinfo`) and
/// everything `HVOP_get_resources` reports (free pool and hv frames, VMIDs,
/// domains, event channels, hv's free heap bytes) must be back at their
/// values before the `n` rounds. The warm-up lets hv's long-lived tables
/// (the domain list, the flush gatherer) reach their capacity once: what
/// still moves after that grows per round, without bound.
fn destroy_loop(c: &mut Ctx, n: u32) {
    let cold = hc::resources();
    let warm = soak_round(c);
    if let Err(f) = warm {
        c.report_fail("destroy-loop warm-up", f);
    }
    let before = physinfo();
    let res_before = hc::resources();
    let _ = hc::reset_counters();
    let mut first = None;
    let mut last = 0;
    let mut done = 0u32;
    let mut not_unbound = 0u32;
    let mut last_status = 0i64;
    for i in 0..n {
        match soak_round(c) {
            Ok((d, seen)) => {
                first.get_or_insert(d);
                last = d;
                done += 1;
                not_unbound += u32::from(seen.port_not_unbound);
                last_status = seen.status;
            }
            Err(f) => {
                c.report_fail("destroy-loop", f);
                break;
            }
        }
        if (i + 1) % 100 == 0 && i + 1 < n {
            if let Ok(r) = hc::resources() {
                line(|w| {
                    write!(w, "dom0: destroy-loop round {}: ", i + 1)?;
                    write_resources(w, &r)
                });
            }
        }
    }
    let counters = hc::counters();
    let after = physinfo();
    let res_after = hc::resources();
    line(|w| {
        write!(
            w,
            "dom0: destroy-loop n={} done={} domids={}..{} ",
            n,
            done,
            first.unwrap_or(0),
            last
        )?;
        report::write_counters(w, counters)
    });
    match (before, after) {
        (Ok(b), Ok(a)) => {
            let ok = a.free_pages == b.free_pages && done == n;
            println!(
                "dom0: destroy-loop free_pages before={} after={} (total {}): {}",
                b.free_pages,
                a.free_pages,
                b.total_pages,
                if ok { "PASS" } else { "FAIL" }
            );
            if !ok {
                c.failures += 1;
            }
        }
        (b, a) => {
            c.failures += 1;
            println!(
                "dom0: destroy-loop FAIL: sysctl physinfo unavailable (before {:?}, after {:?})",
                b.err(),
                a.err()
            );
        }
    }
    match (cold, res_before, res_after) {
        (Ok(cold), Ok(b), Ok(a)) => {
            line(|w| {
                w.write_str("dom0: destroy-loop resources cold: ")?;
                write_resources(w, &cold)
            });
            line(|w| {
                w.write_str("dom0: destroy-loop resources before: ")?;
                write_resources(w, &b)
            });
            line(|w| {
                w.write_str("dom0: destroy-loop resources after: ")?;
                write_resources(w, &a)
            });
            for ((name, vb), (_, va)) in b.balance().into_iter().zip(a.balance()) {
                let ok = vb == va && done == n;
                println!(
                    "dom0: destroy-loop {} back to its start value after {} rounds (before {}, after {}): {}",
                    name,
                    done,
                    vb,
                    va,
                    if ok { "PASS" } else { "FAIL" }
                );
                if !ok {
                    c.failures += 1;
                }
            }
        }
        (cold, b, a) => {
            c.failures += 1;
            println!(
                "dom0: destroy-loop FAIL: hv_op get_resources unavailable ({:?} {:?} {:?})",
                cold.err(),
                b.err(),
                a.err()
            );
        }
    }
    let ok = not_unbound == 0 && done == n;
    println!(
        "dom0: destroy-loop dom0's end of a destroyed domU's event channel reads unbound (Xen's evtchn_destroy): {} ({} of {} rounds not; last EVTCHNOP_status {})",
        if ok { "PASS" } else { "FAIL" },
        not_unbound,
        done,
        last_status
    );
    if !ok {
        c.failures += 1;
    }
    if let Ok(k) = counters {
        let ok = k.full_flushes() <= u64::from(done);
        println!(
            "dom0: destroy-loop full flushes {} for {} domains (at most one each): {}",
            k.full_flushes(),
            done,
            if ok { "PASS" } else { "FAIL" }
        );
        if !ok {
            c.failures += 1;
        }
    }
}

/// `create-flood=<n>`: createdomain with unknown flags must be refused
/// (Xen's `sanitise_domain_config`: -EINVAL); then up to `n` empty domains
/// at once (Xen allows up to DOMID_FIRST_RESERVED, each costing memory:
/// hv must answer an errno when it cannot hold more, never panic), all
/// destroyed; hv's resources must be back where they were.
fn create_flood(c: &mut Ctx, n: u32) {
    let cold = hc::resources();
    let mut cfg = abi::CreateDomain::xl_default(1);
    cfg.flags = u32::MAX;
    let mut d = abi::domctl_createdomain(&cfg);
    let rc = hc::domctl(&mut d);
    if rc == 0 {
        let _ = destroy_domain(abi::domctl_domain(&d));
    }
    c.check(
        "createdomain flags 0xffffffff -> -EINVAL",
        rc == -errno::EINVAL,
        rc,
        -errno::EINVAL,
    );
    // Twice: the first flood may leave hv's tables at a larger capacity
    // (printed); the second must give back everything it took.
    flood_once(c, n, 1);
    let before = hc::resources();
    flood_once(c, n, 2);
    match (cold, before, hc::resources()) {
        (Ok(cold), Ok(b), Ok(a)) => {
            println!(
                "dom0: create-flood: heap_free {} before the first flood, {} after it (capacity kept: {} bytes)",
                cold.heap_free,
                b.heap_free,
                cold.heap_free.saturating_sub(b.heap_free)
            );
            for ((name, vb), (_, va)) in b.balance().into_iter().zip(a.balance()) {
                let ok = vb == va;
                println!(
                    "dom0: create-flood {} back to its start value (before {}, after {}): {}",
                    name,
                    vb,
                    va,
                    if ok { "PASS" } else { "FAIL" }
                );
                if !ok {
                    c.failures += 1;
                }
            }
        }
        (x, b, a) => {
            c.failures += 1;
            println!(
                "dom0: create-flood FAIL: hv_op get_resources unavailable ({:?} {:?} {:?})",
                x.err(),
                b.err(),
                a.err()
            );
        }
    }
}

/// One flood: up to `n` empty domains at once, then all destroyed.
fn flood_once(c: &mut Ctx, n: u32, pass: u32) {
    let n = (n as usize).min(c.a.gfns.len());
    let mut made = 0usize;
    let mut refused = 0i64;
    for i in 0..n {
        let mut d = abi::domctl_createdomain(&abi::CreateDomain::xl_default(1));
        let rc = hc::domctl(&mut d);
        if rc != 0 {
            refused = rc;
            break;
        }
        c.a.gfns[i] = u64::from(abi::domctl_domain(&d));
        made += 1;
    }
    let mut bad = 0u32;
    for i in 0..made {
        if destroy_domain(c.a.gfns[i] as u16) != 0 {
            bad += 1;
        }
    }
    println!(
        "dom0: create-flood pass {}: {} of {} domains created, then {}; {} destroys failed",
        pass, made, n, refused, bad
    );
    c.check(
        if pass == 1 {
            "create-flood: hv creates them all or refuses with an errno; every one is destroyed"
        } else {
            "create-flood again: hv creates them all or refuses with an errno; every one is destroyed"
        },
        (made == n || (-4095..0).contains(&refused)) && bad == 0,
        refused,
        0,
    );
}

/// Map one page of a check domU at successive window gfns until hv answers
/// -ENOMEM (its heap is at its reserve: every mapping is a record in hv's
/// heap) or the window is full; then unmap them all and build a domU again:
/// a guest must not be able to crash hv by exhausting its heap.
fn heap_exhaust(c: &mut Ctx) {
    let d = match small_domu(c) {
        Ok(d) => d,
        Err(f) => return c.report_fail("heap-exhaust setup", f),
    };
    let ram_gfn = abi::guest::RAM0_BASE / PAGE;
    let chunk = c.a.gfns.len() as u64;
    let mut mapped = 0u64;
    let mut first_error = 0i64;
    'outer: while mapped < FOREIGN_WINDOW_PAGES {
        let n = (FOREIGN_WINDOW_PAGES - mapped)
            .min(chunk)
            .min(u16::MAX as u64);
        for i in 0..n as usize {
            c.a.idxs[i] = ram_gfn;
            c.a.gfns[i] = FOREIGN_WINDOW_GFN + mapped + i as u64;
            c.a.errs[i] = 1;
        }
        let mut arg = abi::add_to_physmap_batch(
            abi::DOMID_SELF,
            abi::XENMAPSPACE_GMFN_FOREIGN,
            n as u16,
            d,
            c.a.idxs.as_ptr() as u64,
            c.a.gfns.as_ptr() as u64,
            c.a.errs.as_mut_ptr() as u64,
        );
        // SAFETY: idxs, gpfns and errs are live scratch arrays of at least n entries.
        let rc = unsafe { hc::memory_op(abi::XENMEM_ADD_TO_PHYSMAP_BATCH, &mut arg) };
        if rc != 0 {
            first_error = rc;
            break;
        }
        for i in 0..n as usize {
            if c.a.errs[i] != 0 {
                first_error = i64::from(c.a.errs[i]);
                mapped += i as u64;
                // Later entries must fail too or have been mapped: unmap them
                // individually below (remove errs ignored past `mapped`).
                let extra = c.a.errs[i..n as usize].iter().filter(|e| **e == 0).count();
                if extra != 0 {
                    println!(
                        "dom0: heap-exhaust: {} entries mapped after the first error",
                        extra
                    );
                }
                break 'outer;
            }
        }
        mapped += n;
    }
    println!(
        "dom0: heap-exhaust: mapped={} first_error={}",
        mapped, first_error
    );
    let unmapped = unmap(&mut c.a, Variant::Batch, 0, mapped, chunk as u32);
    let rebuilt = match small_domu(c) {
        Ok(d2) => destroy_domain(d2) == 0,
        Err(_) => false,
    };
    c.check(
        "heap exhaustion -> -ENOMEM, hv keeps running",
        first_error == -errno::ENOMEM && unmapped.is_ok() && rebuilt,
        first_error,
        -errno::ENOMEM,
    );
    if let Err(f) = unmapped {
        c.report_fail("heap-exhaust unmap", f);
    }
    let rc = destroy_domain(d);
    if rc != 0 {
        c.report_fail("heap-exhaust teardown", fail("domctl destroydomain", rc));
    }
}

/// Map one domU page, touch it, remove it with `v`, read it again: the read
/// must fault (hv ends this domain); printing after it means a stale TLB.
fn stale_test(c: &mut Ctx, v: Variant) {
    let d = match check_domu(c) {
        Ok(d) => d,
        Err(f) => return c.report_fail("stale-test setup", f),
    };
    let gfn = FOREIGN_WINDOW_GFN;
    if let Err(f) = map_foreign(&mut c.a, d, 0, 1, 1, |_| abi::guest::RAM0_BASE / PAGE) {
        return c.report_fail("stale-test map", f);
    }
    let pattern = [0x5au8; 8];
    // SAFETY: the window page was just mapped and is no Rust object.
    unsafe { hc::write_page(gfn, &pattern, 0) };
    // SAFETY: as above; this read fills the TLB with the translation.
    let before = unsafe { hc::read_page_word(gfn) };
    if before != 0x5a5a_5a5a_5a5a_5a5a {
        c.failures += 1;
        println!("dom0: FAIL stale-test: mapped page reads {:#x}", before);
    }
    if let Err(f) = unmap(&mut c.a, v, 0, 1, 1) {
        return c.report_fail("stale-test unmap", f);
    }
    println!(
        "dom0: stale-test={}: reading IPA {:#x} after its removal; hv must end d0 with a stage-2 fault",
        v.name(),
        gfn << 12
    );
    // SAFETY: the page is no Rust object; the expected outcome is a
    // stage-2 fault that ends this domain.
    let after = unsafe { hc::read_page_word(gfn) };
    c.failures += 1;
    println!(
        "dom0: STALE READ SUCCEEDED ({}): read {:#x} from a removed foreign page",
        v.name(),
        after
    );
}

/// Reads hv's DTB (x0 at entry) and returns what the builder needs.
fn boot_info() -> Option<BootInfo<'static>> {
    let x0 = guest_rt::boot_x0();
    let in_ram = |a: u64| {
        (abi::guest::RAM0_BASE..abi::guest::RAM0_BASE + abi::guest::RAM0_SIZE).contains(&a)
    };
    if !in_ram(x0) || !x0.is_multiple_of(8) {
        println!("dom0: FAIL no DTB in x0 ({:#x})", x0);
        return None;
    }
    // SAFETY: hv's contract (DESIGN.md): x0 is the IPA of a DTB it placed in
    // this domain's RAM; its 40-byte header is read first to learn its size.
    let hdr = unsafe { hc::boot_bytes(x0, 40) };
    let total = match fdt::total_size(hdr) {
        Ok(t) => u64::from(t),
        Err(e) => {
            println!("dom0: FAIL DTB at {:#x}: {}", x0, e);
            return None;
        }
    };
    if total < 40 || !in_ram(x0 + total - 1) {
        println!("dom0: FAIL DTB at {:#x} claims {} bytes", x0, total);
        return None;
    }
    // SAFETY: as above, now for the size the header states (checked to lie in RAM).
    let blob = unsafe { hc::boot_bytes(x0, total) };
    match Fdt::parse(blob).and_then(|f| BootInfo::from_fdt(&f)) {
        Ok(i) => Some(i),
        Err(e) => {
            println!("dom0: FAIL DTB: {}", e);
            None
        }
    }
}

/// Entry point called by guest-rt's `_start`.
#[no_mangle]
extern "C" fn guest_main() {
    println!("dom0: dom0-builder (hv control domain payload) starting");
    let Some(info) = boot_info() else {
        println!("dom0: RESULT FAIL (no boot information)");
        return;
    };
    let Some(ram) = info.memory[0] else {
        println!("dom0: RESULT FAIL (no /memory in the DTB)");
        return;
    };
    let cfg = match Config::parse(info.bootargs, |w| {
        println!("dom0: ignoring unknown word `{}`", w)
    }) {
        Ok(c) => c,
        Err(e) => {
            println!("dom0: RESULT FAIL (bad word `{}`: {})", e.word, e.why);
            return;
        }
    };
    println!("dom0: bootargs `{}`", info.bootargs);

    let x0 = guest_rt::boot_x0();
    // SAFETY: the DTB was validated by boot_info; its size is in its header.
    let dtb_size = fdt::total_size(unsafe { hc::boot_bytes(x0, 40) }).map_or(0, u64::from);
    let mut reserved = [
        Region {
            base: ram.base,
            size: hc::image_end().saturating_sub(ram.base),
        },
        Region {
            base: x0,
            size: dtb_size,
        },
        Region { base: 0, size: 0 },
    ];
    let (mut kernel, mut initrd) = (None, None);
    if let Some(r) = info.initrd {
        if r.base >= ram.base && r.end() <= ram.end() {
            reserved[2] = r;
            // SAFETY: hv copied the ramdisk module to this RAM range and named
            // it in /chosen (checked to lie inside /memory); nothing writes it.
            let bytes = unsafe { hc::boot_bytes(r.base, r.size) };
            match Blob::parse(bytes) {
                Ok(b) => {
                    kernel = b.get("kernel");
                    initrd = b.get("initrd");
                    println!(
                        "dom0: images blob: {} entries, kernel {} bytes, initrd {} bytes",
                        b.count(),
                        kernel.map_or(0, |k| k.len()),
                        initrd.map_or(0, |k| k.len())
                    );
                }
                Err(e) => println!("dom0: {}", e),
            }
        } else {
            println!(
                "dom0: initrd {:#x}+{:#x} outside /memory, ignored",
                r.base, r.size
            );
        }
    }
    let Some(free) = layout::largest_free(ram, &reserved) else {
        println!("dom0: RESULT FAIL (no free RAM for scratch arrays)");
        return;
    };
    let mut scratch = Scratch::new(free);
    let (Some(g), Some(i), Some(e), Some(t)) = (
        scratch.alloc(8 * ARRAY_MAX as u64, PAGE),
        scratch.alloc(8 * ARRAY_MAX as u64, PAGE),
        scratch.alloc(4 * ARRAY_MAX as u64, PAGE),
        scratch.alloc(DTB_MAX as u64, PAGE),
    ) else {
        println!(
            "dom0: RESULT FAIL (scratch RAM too small: {} bytes)",
            free.size
        );
        return;
    };
    // SAFETY (each of the four): distinct, aligned allocations from free
    // RAM (outside the image, its DTB and initrd), never freed, each used
    // only through the slice made here.
    let a = Arrays {
        // SAFETY: see above.
        gfns: unsafe { hc::scratch(g, ARRAY_MAX) },
        // SAFETY: see above.
        idxs: unsafe { hc::scratch(i, ARRAY_MAX) },
        // SAFETY: see above.
        errs: unsafe { hc::scratch(e, ARRAY_MAX) },
        // SAFETY: see above.
        dtb: unsafe { hc::scratch(t, DTB_MAX) },
    };
    let mut c = Ctx {
        cfg,
        freq: hc::freq(),
        scratch,
        a,
        kernel,
        initrd,
        failures: 0,
    };
    println!(
        "dom0: RAM {:#x}+{:#x}, scratch {:#x}+{:#x}, CNTFRQ {} Hz, domU RAM {} MiB",
        ram.base,
        ram.size,
        free.base,
        free.size,
        c.freq,
        c.cfg.domu_mem >> 20
    );

    let cfg = c.cfg;
    for v in cfg.variants() {
        run_variant(&mut c, v);
    }
    if c.cfg.negative_tests {
        negative_tests(&mut c);
    }
    if c.cfg.destroy_loop > 0 {
        let n = c.cfg.destroy_loop;
        destroy_loop(&mut c, n);
    }
    if c.cfg.create_flood > 0 {
        let n = c.cfg.create_flood;
        create_flood(&mut c, n);
    }
    if c.cfg.heap_exhaust {
        heap_exhaust(&mut c);
    }
    if let Some(v) = c.cfg.stale_test {
        stale_test(&mut c, v);
    }
    if c.failures == 0 {
        println!("dom0: RESULT PASS");
    } else {
        println!("dom0: RESULT FAIL ({} failures)", c.failures);
    }
}
