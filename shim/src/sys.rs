//! The few raw system calls that nix does not wrap the way PID 1 needs them. Every `unsafe`
//! block of the init half lives here or in `spawn`'s child path.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A signal set with every signal 1..=64 in it. The C library's `sigfillset` leaves out the
/// real-time signals it reserves for itself (32–34 on musl); PID 1 must hold those too, or one
/// sent from outside would kill it.
pub fn full_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: sigset_t is at least 8 bytes on every Linux target (the kernel's sigset is 64
    // bits); writing the first 8 bytes stays in bounds and sets signals 1..=64.
    unsafe { std::ptr::write_unaligned((&mut set as *mut libc::sigset_t).cast::<u64>(), u64::MAX) };
    set
}

/// The kernel's sigset size, which `rt_sigprocmask` and `signalfd4` require exactly.
const KERNEL_SIGSET_BYTES: usize = 8;

/// Blocks every signal and returns the mask the process had before, so the child can get it back.
pub fn block_all_signals() -> io::Result<libc::sigset_t> {
    let all = full_sigset();
    // SAFETY: as in full_sigset, the zeroed sigset_t is a valid empty set for the kernel to fill.
    let mut old: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: both pointers are to live sigset_t values of at least KERNEL_SIGSET_BYTES bytes;
    // the raw call avoids the C library filtering its reserved signals out of `all`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const _,
            &mut old as *mut _,
            KERNEL_SIGSET_BYTES,
        )
    };
    if rc == 0 {
        Ok(old)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the signal mask. Async-signal-safe: used in the child between fork and exec.
pub fn set_signal_mask(mask: &libc::sigset_t) -> Result<(), i32> {
    // SAFETY: `mask` points to a live sigset_t; the old-mask pointer is null (not wanted).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            mask as *const _,
            std::ptr::null_mut::<libc::sigset_t>(),
            KERNEL_SIGSET_BYTES,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// A non-blocking, close-on-exec signalfd for every signal (all must already be blocked).
pub fn signalfd_all() -> io::Result<OwnedFd> {
    let all = full_sigset();
    // SAFETY: -1 asks for a new descriptor; `all` is a live sigset_t of the kernel's size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &all as *const _,
            KERNEL_SIGSET_BYTES,
            libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Reads one pending signal from a signalfd, `None` when none is pending.
pub fn read_signal(fd: &OwnedFd) -> io::Result<Option<libc::signalfd_siginfo>> {
    // SAFETY: signalfd_siginfo is plain integers; all-zero is a valid value.
    let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
    let size = mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: the buffer is a live, writable signalfd_siginfo of exactly `size` bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
        if n == size as isize {
            return Ok(Some(info));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ if n >= 0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read from signalfd")),
            _ => return Err(e),
        }
    }
}

/// A pidfd for `pid`, or `None` when the kernel has none (before 5.3) or the process is gone.
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `kill(2)` with a raw signal number (nix's `Signal` cannot name real-time signals).
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill takes two integers and has no memory effects in this process.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Closes every descriptor from 3 up except those in `keep`: what the shim inherited belongs
/// to the child now, and PID 1 should not pin it for the container's whole life.
pub fn close_inherited(keep: &[i32]) {
    let mut keep: Vec<i32> = keep.iter().copied().filter(|&fd| fd >= 3).collect();
    keep.sort_unstable();
    let mut first = 3;
    for fd in keep {
        if fd > first {
            close_range(first, fd - 1);
        }
        first = fd + 1;
    }
    close_range(first, i32::MAX);
}

fn close_range(first: i32, last: i32) {
    // SAFETY: close_range only closes descriptors; the caller keeps every descriptor the shim
    // owns out of [first, last], so no owner is left holding a closed number.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    if rc != 0 {
        // Kernels before 5.9: close what /proc lists (hygiene, not safety, so best effort).
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        let fds: Vec<i32> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        for fd in fds.into_iter().filter(|fd| (first..=last).contains(fd)) {
            // SAFETY: as above; the listing's own descriptor is already closed, so closing
            // its stale number fails harmlessly with EBADF.
            unsafe { libc::close(fd) };
        }
    }
}

/// Points fds 0 and 1 at /dev/null: after the spawn the shim reads nothing and writes nothing
/// but logs (on stderr), and it should not keep the app's stdin or stdout pipe open.
pub fn release_stdin_stdout() {
    let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") else {
        return;
    };
    for fd in [0, 1] {
        // SAFETY: dup2 onto 0 and 1 replaces the standard descriptors, which no Rust owner
        // holds (std's stdin/stdout use the raw numbers and stay valid).
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}

/// `PR_SET_PDEATHSIG` with any signal number (nix's takes only the classic signals).
pub fn set_parent_death_signal(signal: i32) -> io::Result<()> {
    // SAFETY: prctl with an option and one integer argument; no pointers are passed.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the process has any child, running, stopped or exited but not yet reaped.
pub fn has_children() -> bool {
    // SAFETY: siginfo_t is plain data; all-zero is valid for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { mem::zeroed() };
    // SAFETY: waitid with WNOHANG|WNOWAIT only inspects children (it reaps nothing) and
    // writes into the live `info`.
    let rc = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WSTOPPED | libc::WCONTINUED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    !(rc == -1 && errno() == libc::ECHILD)
}

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
