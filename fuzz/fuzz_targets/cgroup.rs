//! `/proc/PID/cgroup` (first byte even) and the flat-keyed files of a cgroup such as
//! memory.events and cpu.stat (odd). The membership paths come from the process's cgroup
//! namespace; joined under the cgroup mount they must stay under it.

#![no_main]

use husk_inspect::cgroup::{parse_flat_keyed, parse_membership, under};
use libfuzzer_sys::fuzz_target;

const MOUNT: &str = "/sys/fs/cgroup";

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(bytes);
    if which & 1 == 0 {
        let (v2, v1) = parse_membership(&text);
        for path in v2.iter().chain(v1.values()) {
            if let Some(dir) = under(MOUNT, path) {
                assert!(dir.starts_with(MOUNT), "{path:?} joined as {dir:?}");
                assert!(!dir.split('/').any(|c| c == ".."), "{path:?} joined as {dir:?}");
            }
        }
    } else {
        for key in parse_flat_keyed(&text).keys() {
            assert!(!key.contains(['\n', ' ']), "{key:?}");
        }
    }
});
