//! The first line of an HTTP response, read from the app by a health check: the app (or
//! whatever answers on its port) writes these bytes.

#![no_main]

use husk_inspect::check::parse_status_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if parse_status_line(data).is_some() {
        let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
        assert!(
            line.trim_ascii_start().starts_with(b"HTTP/"),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
});
