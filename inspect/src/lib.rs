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
