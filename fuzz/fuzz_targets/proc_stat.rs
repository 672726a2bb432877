//! `/proc/PID/stat`, which the shim's shutdown scan and the diagnostics process list read for
//! every process. Its command name is chosen by the process itself, so a hostile app controls
//! the text between the parentheses.

#![no_main]

use husk_inspect::process::{parse_stat, Stat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(stat) = parse_stat(&text) {
        let printed = print(&stat);
        assert_eq!(parse_stat(&printed), Some(stat), "reprinted as {printed:?}");
    }
});

/// The line the kernel would print for these fields (the others zero).
fn print(s: &Stat) -> String {
    let mut fields = vec!["0".to_string(); 22];
    fields[0] = s.state.to_string();
    fields[1] = s.ppid.to_string();
    fields[11] = s.utime.to_string();
    fields[12] = s.stime.to_string();
    fields[17] = s.threads.to_string();
    fields[19] = s.starttime.to_string();
    fields[21] = s.rss_pages.to_string();
    format!("{} ({}) {}", s.pid, s.comm, fields.join(" "))
}
