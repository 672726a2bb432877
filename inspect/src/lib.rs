//! Reads /proc and /sys into the diagnostics messages of `husk-proto`. Used by the shim's
//! diagnostics server and by `probe` when no shim is reachable (standalone mode).
//!
//! Every parser takes text and returns what it could make of it: arbitrary bytes never panic,
//! malformed lines are skipped. Reading is bounded: no file is read past `MAX_FILE`.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod cgroup;
pub mod check;
pub mod net;
pub mod process;
pub mod sys;

use std::borrow::Cow;
use std::io::{self, Read};
use std::path::Path;

/// The most any single /proc or /sys file is read (mountinfo of a busy host fits easily).
pub const MAX_FILE: usize = 1024 * 1024;

/// Reads at most `cap` bytes of a file.
pub fn read_capped(path: impl AsRef<Path>, cap: usize) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(cap as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads a text file (lossily, bounded by `MAX_FILE`).
pub fn read_text(path: impl AsRef<Path>) -> io::Result<String> {
    read_capped(path, MAX_FILE).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Reads the small files of many processes through one buffer and one path string. A scan of the
/// process table opens three files per process; with a fresh buffer for each, growing from
/// nothing, the reads and allocations cost more than the kernel's work of producing the text.
pub struct PidFiles {
    path: String,
    buf: Vec<u8>,
}

impl Default for PidFiles {
    fn default() -> PidFiles {
        PidFiles::new()
    }
}

impl PidFiles {
    pub fn new() -> PidFiles {
        PidFiles {
            path: String::with_capacity(32),
            // Holds a whole `status` (about 1.5 KiB) in one read.
            buf: Vec::with_capacity(4096),
        }
    }

    /// `/proc/PID/FILE` as text (lossily), at most `cap` bytes; borrowed until the next read.
    pub fn read(&mut self, pid: i32, file: &str, cap: usize) -> io::Result<Cow<'_, str>> {
        use std::fmt::Write;
        self.path.clear();
        // Writing to a String cannot fail.
        let _ = write!(self.path, "/proc/{pid}/{file}");
        self.buf.clear();
        std::fs::File::open(&self.path)?
            .take(cap as u64)
            .read_to_end(&mut self.buf)?;
        Ok(String::from_utf8_lossy(&self.buf))
    }
}

/// The first line of a small file, trimmed.
pub fn read_line(path: impl AsRef<Path>) -> Option<String> {
    read_capped(path, 4096).ok().map(|b| {
        String::from_utf8_lossy(&b)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    })
}

/// Every numeric entry of /proc, sorted.
pub fn pids() -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    /// A small deterministic generator: the parsers see the same garbage on every run.
    fn garbage(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let alphabet = b" \t\n:()/-\\0123456789abcdefABCDEF[]=\0\xff";
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x & 7 == 0 {
                    (x >> 8) as u8
                } else {
                    alphabet[(x >> 16) as usize % alphabet.len()]
                }
            })
            .collect()
    }

    /// Every parser takes arbitrary bytes without panicking.
    #[test]
    fn parsers_survive_garbage() {
        for seed in 0..2000u64 {
            let bytes = garbage(seed, (seed % 300) as usize);
            let text = String::from_utf8_lossy(&bytes);
            let _ = crate::process::parse_stat(&text);
            let _ = crate::process::parse_status(&text);
            let _ = crate::process::parse_limits(&text);
            let _ = crate::process::parse_mountinfo(&text);
            let _ = crate::process::parse_environ(&bytes, &|_| true);
            let _ = crate::process::parse_security(1, &text);
            let _ = crate::process::cap_set(&text);
            let _ = crate::process::socket_inode(&text);
            let _ = crate::net::parse_address(&text);
            let _ = crate::net::parse_inet("tcp", &text);
            let _ = crate::net::parse_inet("udp6", &text);
            let _ = crate::net::parse_unix(&text);
            let _ = crate::net::parse_route(&text);
            let _ = crate::net::parse_ipv6_route(&text);
            let _ = crate::net::parse_dev(&text);
            let _ = crate::cgroup::parse_flat_keyed(&text);
            let _ = crate::cgroup::parse_membership(&text);
            let _ = crate::check::parse_status_line(&bytes);
            let _ = crate::check::parse_http_url(&text);
        }
    }
}
