//! The `shim` binary: only the C entry point; everything else is in the library.
//!
//! No Rust runtime start-up (`no_main`): Rust's would set SIGPIPE to ignored before `main`,
//! and the app must inherit exactly the signal dispositions the shim was started with.

#![no_main]

use std::ffi::OsString;

/// The C entry point. argv is read here because std only captures it itself on glibc.
// Only the C runtime calls this, with its own argc and argv.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
#[no_mangle]
pub extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    use std::os::unix::ffi::OsStringExt;
    let args = (0..argc.max(0) as usize)
        .map(|i| {
            // SAFETY: the C runtime passes argc valid, NUL-terminated strings in argv.
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
            OsString::from_vec(arg.to_bytes().to_vec())
        })
        .collect::<Vec<_>>();
    i32::from(husk_shim::run(args))
}
