//! `/etc/passwd` and `/etc/group` of the image, read to resolve `--user` and `--groups`. The
//! first byte picks the file.

#![no_main]

use husk_shim::policy::user::{parse_group, parse_passwd};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(bytes);
    let lines = text.lines().count();
    // Every entry comes from its own line, has a name that is not a comment, and no id is -1
    // (the kernel's "no id").
    let valid_name = |name: &str| !name.is_empty() && !name.starts_with('#');
    if which & 1 == 0 {
        let entries = parse_passwd(&text);
        assert!(entries.len() <= lines);
        for e in entries {
            assert!(valid_name(&e.name), "{e:?}");
            assert!(e.uid != u32::MAX && e.gid != u32::MAX, "{e:?}");
        }
    } else {
        let entries = parse_group(&text);
        assert!(entries.len() <= lines);
        for e in entries {
            assert!(valid_name(&e.name), "{e:?}");
            assert!(e.gid != u32::MAX, "{e:?}");
            assert!(e.members.iter().all(|m| !m.is_empty() && !m.contains(',')), "{e:?}");
        }
    }
});
