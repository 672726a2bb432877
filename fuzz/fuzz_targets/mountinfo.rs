//! `/proc/PID/mountinfo`, whose paths the kernel escapes as octal (`\040` for a space). Any
//! mount that parses, printed back with the kernel's escapes, must parse to the same mount.

#![no_main]

use husk_inspect::process::parse_mountinfo;
use husk_proto::Mount;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let Some(mount) = parse_mountinfo(line).pop() else {
            continue;
        };
        // A bare "-" where a field belongs is taken for the separator: such a line has no
        // kernel form to print.
        if line.split(' ').nth(2) == Some("-") || mount.root == "-" || mount.mountpoint == "-" {
            continue;
        }
        let printed = print(&mount);
        assert_eq!(
            parse_mountinfo(&printed),
            vec![mount],
            "{line:?} reprinted as {printed:?}"
        );
    }
});

/// The kernel's line for this mount (`show_mountinfo`): when the options field is itself a
/// "-", the parser took it for the separator, and so it stays.
fn print(m: &Mount) -> String {
    let options = if m.options == "-" {
        "- ".to_string()
    } else {
        format!("{} - ", m.options)
    };
    format!(
        "{} {} 0:0 {} {} {options}{} {} rw",
        m.id,
        m.parent,
        escape(&m.root),
        escape(&m.mountpoint),
        m.fstype,
        escape(&m.source)
    )
}

/// What the kernel's `seq_escape` does for mountinfo fields.
fn escape(field: &str) -> String {
    field
        .chars()
        .map(|c| match c {
            ' ' | '\t' | '\n' | '\\' => format!("\\{:03o}", c as u32),
            c => c.to_string(),
        })
        .collect()
}
