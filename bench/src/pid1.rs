//! Running a command as PID 1 of a fresh PID namespace, with as little in between as possible:
//! fork, `unshare(CLONE_NEWPID)` in the child, fork again (the grandchild is PID 1), exec.
//! The middle process only waits and passes the exit status on; it costs the same for every
//! init, so it cancels out of every comparison.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};
use std::time::{Duration, Instant};

pub struct Pid1 {
    /// The middle process, a child of the benchmark: wait for it to know the run ended.
    pub outer: i32,
    /// The init's pid as the benchmark sees it.
    pub init: i32,
    /// The app's stdout, when captured.
    pub stdout: Option<File>,
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
    (fds[0], fds[1])
}

/// Starts `argv` as PID 1 of a new PID namespace. With `capture`, the app's stdout is a pipe
/// the caller reads.
pub fn start(argv: &[String], capture: bool) -> Pid1 {
    spawn(argv, capture, false)
}

/// Like `start`, and the new namespace also gets a mount namespace with its own /proc, as in a
/// container: what the shim's diagnostics read from /proc is then the namespace's processes,
/// not the whole host's.
pub fn start_with_proc(argv: &[String], capture: bool) -> Pid1 {
    spawn(argv, capture, true)
}

fn spawn(argv: &[String], capture: bool, own_proc: bool) -> Pid1 {
    let args: Vec<CString> = argv.iter().map(|a| CString::new(a.as_str()).unwrap()).collect();
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let (report_read, report_write) = pipe();
    let out = capture.then(pipe);
    // SAFETY: the child side only makes system calls on data built before the fork.
    let outer = unsafe { libc::fork() };
    assert!(outer >= 0, "fork");
    if outer == 0 {
        // SAFETY: between fork and exec: unshare, fork, mount, dup2, execv, write, waitpid,
        // _exit only, on strings built before the fork.
        unsafe {
            // If the benchmark dies (a failed assertion), the run goes with it rather than
            // leaving the middle process waiting on a PID 1 that waits on its app for ever.
            die_with_parent();
            let flags = libc::CLONE_NEWPID | if own_proc { libc::CLONE_NEWNS } else { 0 };
            if libc::unshare(flags) != 0 {
                libc::_exit(120);
            }
            let init = libc::fork();
            if init < 0 {
                // Report nothing: the benchmark's read of the pid fails, rather than getting -1
                // and later signalling every process on the machine with kill(-1, …).
                libc::_exit(122);
            }
            if init == 0 {
                die_with_parent();
                // proc shows the PID namespace of whoever mounts it: PID 1 itself, here. The
                // mount stays private to the new mount namespace.
                if own_proc
                    && (libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                        || libc::mount(
                            c"proc".as_ptr(),
                            c"/proc".as_ptr(),
                            c"proc".as_ptr(),
                            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            std::ptr::null(),
                        ) != 0)
                {
                    libc::_exit(121);
                }
                if let Some((_, w)) = out {
                    libc::dup2(w, 1);
                }
                libc::execv(ptrs[0], ptrs.as_ptr());
                libc::_exit(127);
            }
            libc::write(report_write, (&init as *const i32).cast(), 4);
            exit_as(init);
        }
    }
    // SAFETY: closing our copies of the write ends; the children keep theirs.
    unsafe { libc::close(report_write) };
    if let Some((_, w)) = out {
        unsafe { libc::close(w) };
    }
    let mut pid = [0u8; 4];
    // SAFETY: report_read is ours; wrapping it in a File closes it when done.
    let mut report = unsafe { File::from_raw_fd(report_read) };
    report.read_exact(&mut pid).expect("read the init's pid");
    Pid1 {
        outer,
        init: i32::from_ne_bytes(pid),
        // SAFETY: the read end is ours alone from here on.
        stdout: out.map(|(r, _)| unsafe { File::from_raw_fd(r) }),
    }
}

/// For a middle process: waits for `child` and exits with its status, 128 + the signal when it
/// was killed, as a shell would. Only system calls, so it is safe between fork and exec.
fn exit_as(child: libc::pid_t) -> ! {
    let mut status = 0;
    // SAFETY: waitpid writes one int; _exit ends the process without running any Rust code.
    unsafe {
        libc::waitpid(child, &mut status, 0);
        libc::_exit(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        })
    }
}

/// SIGKILL for the calling process when its parent exits (kept across exec). Async-signal-safe:
/// one system call.
fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and reads no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}

/// Runs `argv` inside `init`'s PID and mount namespaces, output to /dev/null, and returns its
/// exit status. A process that only joined the mount namespace sees the namespace's /proc but
/// is not in it, so it has no /proc/self there (procps' ps refuses to run then); this one is
/// forked after setns, so it is. One fork more than a plain spawn, the same for every command.
pub fn run_inside(init: i32, argv: &[String]) -> i32 {
    use std::os::fd::AsRawFd;
    let args: Vec<CString> = argv.iter().map(|a| CString::new(a.as_str()).unwrap()).collect();
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let open = |path: String| File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let pid_ns = open(format!("/proc/{init}/ns/pid"));
    let mnt_ns = open(format!("/proc/{init}/ns/mnt"));
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("open /dev/null");
    let (pid_ns, mnt_ns, null) = (pid_ns.as_raw_fd(), mnt_ns.as_raw_fd(), null.as_raw_fd());
    // SAFETY: the child side only makes system calls (setns, fork, dup2, execv, waitpid, _exit)
    // on descriptors and strings that outlive it.
    let outer = unsafe { libc::fork() };
    assert!(outer >= 0, "fork");
    if outer == 0 {
        unsafe {
            if libc::setns(pid_ns, libc::CLONE_NEWPID) != 0 || libc::setns(mnt_ns, libc::CLONE_NEWNS) != 0 {
                libc::_exit(120);
            }
            let child = libc::fork();
            if child < 0 {
                libc::_exit(122);
            }
            if child == 0 {
                libc::dup2(null, 1);
                libc::dup2(null, 2);
                libc::execv(ptrs[0], ptrs.as_ptr());
                libc::_exit(127);
            }
            exit_as(child);
        }
    }
    wait(outer)
}

/// Runs `argv` as PID 1 without capturing anything and returns how long it took, from before
/// the fork until the middle process was reaped.
pub fn time_run(args: &[CString]) -> Duration {
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let start = Instant::now();
    // SAFETY: as in `start`, the child side only makes system calls.
    let outer = unsafe { libc::fork() };
    if outer == 0 {
        unsafe {
            libc::unshare(libc::CLONE_NEWPID);
            let init = libc::fork();
            if init < 0 {
                libc::_exit(122);
            }
            if init == 0 {
                libc::execv(ptrs[0], ptrs.as_ptr());
                libc::_exit(127);
            }
            exit_as(init);
        }
    }
    let status = wait(outer);
    let took = start.elapsed();
    assert_eq!(status, 0, "{:?} failed", args);
    took
}

/// Waits for the middle process; returns the init's exit status.
pub fn wait(outer: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(outer, &mut status, 0) };
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

pub fn kill(pid: i32, sig: i32) {
    // 0 and negative numbers name process groups or everything: never what is meant here.
    assert!(pid > 0, "refusing to send signal {sig} to pid {pid}");
    // SAFETY: kill takes two integers.
    unsafe { libc::kill(pid, sig) };
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock the app stamps received signals with.
pub fn monotonic_ns() -> u128 {
    // SAFETY: clock_gettime writes one timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}
