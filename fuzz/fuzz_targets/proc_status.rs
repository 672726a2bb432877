//! `/proc/PID/status` into the security view (ids, capability sets, no_new_privs, seccomp) and
//! into the effective ids of the process list.

#![no_main]

use husk_inspect::process::{effective_ids, parse_security, parse_status};
use husk_proto::CapSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (key, value) in parse_status(&text) {
        assert_eq!(key, key.trim());
        assert_eq!(value, value.trim());
    }
    let security = parse_security(1, &text);
    for set in [
        &security.cap_inheritable,
        &security.cap_permitted,
        &security.cap_effective,
        &security.cap_bounding,
        &security.cap_ambient,
    ] {
        check_cap_set(set);
    }
    assert!(["disabled", "strict", "filter", "unknown"].contains(&security.seccomp.as_str()));
    let (uid, gid) = effective_ids(&text);
    assert!(uid >= -1 && gid >= -1, "{uid} {gid}");
});

/// One name per bit of the mask (a mask that is not hex counts as none).
fn check_cap_set(set: &CapSet) {
    let mask = u64::from_str_radix(&set.hex, 16).unwrap_or(0);
    assert_eq!(set.names.len(), mask.count_ones() as usize, "{set:?}");
}
