//! The other per-process tables the diagnostics socket serves: `/proc/PID/limits` (first byte
//! even) and `/proc/PID/environ` with redaction (odd).

#![no_main]

use husk_inspect::process::{parse_environ, parse_limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        let text = String::from_utf8_lossy(bytes);
        let limits = parse_limits(&text);
        assert!(limits.len() <= text.lines().count());
    } else {
        // Names of even length are shown; every other value must be redacted.
        let show = |name: &str| name.len() % 2 == 0;
        for var in parse_environ(bytes, &show) {
            assert!(!var.name.contains('='), "{var:?}");
            assert_eq!(var.value.is_some(), show(&var.name), "{var:?}");
        }
    }
});
