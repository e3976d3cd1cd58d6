//! L1 tool (static aarch64 musl, in the rig's initramfs): stamps the serial output of a VMM
//! that has no exit counter of its own (QEMU in L1) with KVM's exit count, as the rig VMM's
//! `--exit-stamps` does: reads lines on stdin and writes `[   12.345678 L0=<n>] line`, where
//! n is KVM's `exits` minus `mmio_exit_user` summed over every VM (debugfs
//! `/sys/kernel/debug/kvm/`, read when the line has arrived). The console's own MMIO exits
//! (one per character on a PL011) go to the VMM in user space and are thus not counted, as
//! with the rig VMM. The count lags the line by the pipe's latency (the guest keeps running
//! meanwhile): take differences over long pieces of work only. At the end of its input it
//! prints `RIG: kvm-stamp exits=<n> mmio_exit_user=<m> l0=<n-m>`, the last counts it saw
//! (a thread reads them every 20 ms: debugfs sums only the VMs that still exist, so the
//! counts vanish when the VMM exits).

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmm::Stamp;

fn read_stat(dir: &str, name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("{dir}/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/sys/kernel/debug/kvm".into());
    let stamp = Stamp(Instant::now());
    // The largest counts seen (the VM's counts only grow while it exists).
    let last = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let seen = |last: &[AtomicU64; 2], exits: u64, mmio: u64| {
        last[0].fetch_max(exits, Ordering::Relaxed);
        last[1].fetch_max(mmio, Ordering::Relaxed);
    };
    {
        let (last, dir) = (last.clone(), dir.clone());
        std::thread::spawn(move || loop {
            let exits = read_stat(&dir, "exits").unwrap_or(0);
            let mmio = read_stat(&dir, "mmio_exit_user").unwrap_or(0);
            seen(&last, exits, mmio);
            std::thread::sleep(Duration::from_millis(20));
        });
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    let mut input = stdin.lock();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\n', '\r']);
        let exits = read_stat(&dir, "exits").unwrap_or(0);
        let mmio = read_stat(&dir, "mmio_exit_user").unwrap_or(0);
        seen(&last, exits, mmio);
        let _ = writeln!(
            out,
            "{}",
            stamp.line_exits(text, exits.saturating_sub(mmio))
        );
        let _ = out.flush();
    }
    let (e, m) = (
        last[0].load(Ordering::Relaxed),
        last[1].load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "RIG: kvm-stamp exits={e} mmio_exit_user={m} l0={}",
        e.saturating_sub(m)
    );
}
