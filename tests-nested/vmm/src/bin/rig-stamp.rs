//! Host tool: runs a command (the rig's L0 QEMU), copies its output lines to stdout and
//! prefixes each with the CPU time the command's whole process tree has used so far
//! (`vmm::cpu_stamp`: `   12.345678| line`). The CPU time between two lines measures the
//! work between them and is much less disturbed by other load on the machine than wall time.
//!
//! `rig-stamp -- PROGRAM ARGS...`; stdout and stderr of the command are merged (line by line);
//! the exit status is the command's.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;

/// CPU nanoseconds used by `root` and all its descendants (Linux /proc: the first field of
/// each thread's `schedstat`; parents from each process's `stat`).
fn tree_cpu_ns(root: u32) -> u64 {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| vmm::stat_ppid(&s))
            {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut total = 0;
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in rd.flatten() {
                let path = t.path().join("schedstat");
                total += std::fs::read_to_string(path)
                    .ok()
                    .and_then(|s| vmm::schedstat_ns(&s))
                    .unwrap_or(0);
            }
        }
        if let Some(c) = children.get(&p) {
            todo.extend(c);
        }
    }
    total
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(("--", cmd)) = args.split_first().map(|(a, r)| (a.as_str(), r)) else {
        eprintln!("usage: rig-stamp -- PROGRAM ARGS...");
        return ExitCode::from(2);
    };
    let Some((prog, rest)) = cmd.split_first() else {
        eprintln!("usage: rig-stamp -- PROGRAM ARGS...");
        return ExitCode::from(2);
    };
    let mut child = match Command::new(prog)
        .args(rest)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rig-stamp: cannot start {prog}: {e}");
            return ExitCode::from(2);
        }
    };
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut pumps = Vec::new();
    let readers: Vec<Box<dyn std::io::Read + Send>> = vec![
        Box::new(child.stdout.take().expect("piped stdout")),
        Box::new(child.stderr.take().expect("piped stderr")),
    ];
    for r in readers {
        let tx = tx.clone();
        pumps.push(std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            loop {
                let mut buf = Vec::new();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(buf).is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    }
    drop(tx);
    let out = std::io::stdout();
    for line in rx {
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        let mut o = out.lock();
        let _ = writeln!(o, "{}", vmm::cpu_stamp(tree_cpu_ns(pid), text));
        let _ = o.flush();
    }
    for p in pumps {
        let _ = p.join();
    }
    match child.wait() {
        Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(_) => ExitCode::from(1),
    }
}
