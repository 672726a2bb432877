//! The JSON config file (`--config`), as the shim reads it: UTF-8 text, the option table, then
//! every init and logging value resolved.

#![no_main]

use husk_shim::{config, options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The shim reads the file with read_to_string: anything else is refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(settings) = options::from_json("fuzz", text) else {
        return;
    };
    if let Ok(config) = config::resolve(settings) {
        husk_fuzz::assert_init_round_trips(&config);
    }
});
