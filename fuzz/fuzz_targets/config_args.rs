//! The command line and the `SHIM_*` environment, merged and resolved as at start-up. The
//! input is NUL-separated: the first byte says how many items are arguments, the rest are
//! environment entries (`KEY=VALUE`). Arguments may be any bytes, as on a real command line.

#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use husk_shim::config::{self, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let items: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    let (args, env) = items.split_at(usize::from(count).min(items.len()));
    let args: Vec<OsString> = args.iter().map(|a| OsString::from_vec(a.to_vec())).collect();
    let env: Vec<(OsString, OsString)> = env
        .iter()
        .map(|entry| {
            let (key, value) = match entry.iter().position(|&b| b == b'=') {
                Some(i) => (&entry[..i], &entry[i + 1..]),
                None => (*entry, &b""[..]),
            };
            (OsString::from_vec(key.to_vec()), OsString::from_vec(value.to_vec()))
        })
        .collect();
    // `--config` / SHIM_CONFIG make load() open a file; that parser has its own target.
    let names_config = |s: &OsString| s.as_bytes().windows(6).any(|w| w.eq_ignore_ascii_case(b"config"));
    if args.iter().any(names_config) || env.iter().any(|(key, _)| names_config(key)) {
        return;
    }
    if let Ok(Request::Run(config)) = config::load(&args, &env) {
        husk_fuzz::assert_init_round_trips(&config);
    }
});
