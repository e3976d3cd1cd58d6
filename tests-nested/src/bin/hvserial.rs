//! Host tool: talks to a QEMU serial port exported as a unix socket
//! (`-chardev socket,id=ser0,path=SOCK,server=on,wait=on -serial chardev:ser0`), copies every
//! byte the guest writes to stdout, and plays a small script of input steps against it.
//!
//! `hvserial SOCKET [STEP...]`, each STEP one of
//! * `expect=TEXT`: wait until TEXT appears in the output received since the previous match
//!   (the default timeout is 120 s; `timeout=SECS` changes it for the following steps);
//! * `send=TEXT`: write TEXT to the guest (escapes: `\n`, `\r`, `\\`, `\xNN`, e.g. `\x01` is
//!   Ctrl-A). Bytes are written one at a time 20 ms apart, as a person types: a UART's receive
//!   FIFO is small and a burst can overrun it;
//! * `sleep=MS`.
//!
//! It connects (retrying for 60 s while QEMU starts), and after the last step keeps copying
//! until QEMU closes the socket (QEMU exited). Progress lines go to stderr as
//! `hvserial: ...`. Exit status: 0 when every step passed and QEMU closed the socket, 1 when an
//! `expect` timed out or the socket closed first (`hvserial: FAIL ...` names the step), 2 on
//! usage errors.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Expect(Vec<u8>),
    Send(Vec<u8>),
    Sleep(u64),
    Timeout(u64),
}

/// Decodes `\n`, `\r`, `\t`, `\\` and `\xNN`; any other backslash stays as it is.
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b[i + 1] {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = s
                    .get(i + 2..i + 4)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad \\x escape in {s:?}"))?;
                out.push(hex);
                i += 4;
                continue;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
        i += 2;
    }
    Ok(out)
}

fn parse_step(a: &str) -> Result<Step, String> {
    let (k, v) = a
        .split_once('=')
        .ok_or_else(|| format!("step {a:?}: expected KEY=VALUE"))?;
    let num = || {
        v.parse::<u64>()
            .map_err(|_| format!("step {a:?}: not a number"))
    };
    match k {
        "expect" if !v.is_empty() => Ok(Step::Expect(unescape(v)?)),
        "send" => Ok(Step::Send(unescape(v)?)),
        "sleep" => Ok(Step::Sleep(num()?)),
        "timeout" => Ok(Step::Timeout(num()?)),
        _ => Err(format!(
            "step {a:?}: unknown (expect=, send=, sleep=, timeout=)"
        )),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn connect(path: &str) -> Result<UnixStream, String> {
    let t0 = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if t0.elapsed() > Duration::from_secs(60) => {
                return Err(format!("cannot connect to {path}: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((sock, rest)) = args.split_first() else {
        eprintln!("usage: hvserial SOCKET [expect=TEXT|send=TEXT|sleep=MS|timeout=SECS]...");
        return ExitCode::from(2);
    };
    let steps = match rest
        .iter()
        .map(|a| parse_step(a))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hvserial: {e}");
            return ExitCode::from(2);
        }
    };
    let mut stream = match connect(sock) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hvserial: FAIL {e}");
            return ExitCode::from(1);
        }
    };
    let mut reader = match stream.try_clone() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hvserial: FAIL {e}");
            return ExitCode::from(1);
        }
    };
    // The reader thread copies the guest's output to stdout and hands it to the script.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let copier = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut out = std::io::stdout();
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                    let _ = tx.send(buf[..n].to_vec());
                }
            }
        }
    });
    let t0 = Instant::now();
    let mut seen: Vec<u8> = Vec::new();
    let mut timeout = 120;
    let mut closed = false;
    for step in &steps {
        match step {
            Step::Timeout(s) => timeout = *s,
            Step::Sleep(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            Step::Send(bytes) => {
                for b in bytes {
                    if stream.write_all(&[*b]).is_err() {
                        eprintln!("hvserial: FAIL the socket closed while sending");
                        return ExitCode::from(1);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                eprintln!(
                    "hvserial: sent {:?} at {:.1} s",
                    String::from_utf8_lossy(bytes),
                    t0.elapsed().as_secs_f64()
                );
            }
            Step::Expect(text) => {
                let deadline = Instant::now() + Duration::from_secs(timeout);
                loop {
                    if let Some(p) = find(&seen, text) {
                        seen.drain(..p + text.len());
                        eprintln!(
                            "hvserial: saw {:?} at {:.1} s",
                            String::from_utf8_lossy(text),
                            t0.elapsed().as_secs_f64()
                        );
                        break;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if closed || left.is_zero() {
                        eprintln!(
                            "hvserial: FAIL {:?} not seen ({})",
                            String::from_utf8_lossy(text),
                            if closed {
                                "QEMU closed the serial port".to_string()
                            } else {
                                format!("{timeout} s")
                            }
                        );
                        return ExitCode::from(1);
                    }
                    match rx.recv_timeout(left) {
                        Ok(chunk) => seen.extend_from_slice(&chunk),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
                    }
                }
            }
        }
    }
    let _ = copier.join();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"a\x01\x01\x01h\n").unwrap(), b"a\x01\x01\x01h\n");
        assert_eq!(unescape(r"\\x\r\q").unwrap(), b"\\x\r\\q");
        assert!(unescape(r"\xZZ").is_err());
    }

    #[test]
    fn steps() {
        assert_eq!(
            parse_step("expect=a=b").unwrap(),
            Step::Expect(b"a=b".to_vec())
        );
        assert_eq!(parse_step("sleep=5").unwrap(), Step::Sleep(5));
        assert!(parse_step("expect=").is_err());
        assert!(parse_step("bogus=1").is_err());
        assert!(parse_step("sleep=x").is_err());
    }

    #[test]
    fn finds() {
        assert_eq!(find(b"xxhello", b"hello"), Some(2));
        assert_eq!(find(b"hel", b"hello"), None);
    }
}
