//! The shim confines itself once the app runs. From then on PID 1 only signals and reaps, reads
//! /proc, serves the diagnostics socket and runs the configured health checks, so it keeps the
//! three capabilities those need, sets no_new_privs and installs a seccomp allowlist of the calls
//! it makes. A bug in the diagnostics server then cannot become anything else: no exec, no
//! fork, no ptrace, no mount, no opening files for writing, no change of identity or
//! capabilities, no new privileges.
//!
//! Unlike the app's policy this fails open, with a warning: the app is already running and PID 1
//! must not exit early. Where the kernel (or an emulator) lacks seccomp the shim runs without it,
//! and `probe security 1` shows what actually took effect.
//!
//! A call outside the allowlist fails with EPERM rather than killing the shim: killing PID 1
//! would kill the container, while an EPERM is logged by the code that made the call.

use std::collections::BTreeMap;

use caps::{CapSet, Capability, CapsHashSet};
use seccompiler::BpfProgram;
use serde_json::{json, Value};

use crate::policy::bpf::{self, Action, ArgTest, RET_ALLOW, RET_ERRNO};
use crate::policy::seccomp::AUDIT_ARCH;

/// What the shim still needs capabilities for after the spawn:
/// - `CAP_KILL`: forwarding signals to, and shutting down, processes of any uid;
/// - `CAP_DAC_READ_SEARCH` and `CAP_SYS_PTRACE`: reading /proc/<pid>/fd, environ and the like
///   of processes of another uid (the directory permissions and the kernel's ptrace access check
///   on those files). The seccomp allowlist has no `ptrace` or `process_vm_*` call, so
///   `CAP_SYS_PTRACE` serves /proc reads only.
const KEPT: [Capability; 3] = [
    Capability::CAP_KILL,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_SYS_PTRACE,
];

/// Every call the shim makes after the spawn, found by running the whole test suite with a
/// logging filter and reading the kernel's audit records, then checked against the code paths:
/// the epoll loop, signalfd, reaping, /proc reads, the socket server, the allocator, std's
/// threads (health checks) and musl's resolver (health checks by host name).
const ALLOWED: &[(&str, libc::c_long)] = &[
    // Descriptors and files (/proc, the termination log opened ahead, the socket file on exit).
    // `openat` is allowed separately, for reading only.
    ("read", libc::SYS_read),
    ("readv", libc::SYS_readv),
    ("pread64", libc::SYS_pread64),
    ("write", libc::SYS_write),
    ("writev", libc::SYS_writev),
    ("pwrite64", libc::SYS_pwrite64),
    ("ftruncate", libc::SYS_ftruncate),
    ("close", libc::SYS_close),
    ("lseek", libc::SYS_lseek),
    ("fstat", libc::SYS_fstat),
    ("newfstatat", libc::SYS_newfstatat),
    ("statx", libc::SYS_statx),
    ("statfs", libc::SYS_statfs),
    ("fstatfs", libc::SYS_fstatfs),
    ("getdents64", libc::SYS_getdents64),
    ("readlinkat", libc::SYS_readlinkat),
    ("faccessat", libc::SYS_faccessat),
    ("faccessat2", libc::SYS_faccessat2),
    ("fcntl", libc::SYS_fcntl),
    ("ioctl", libc::SYS_ioctl),
    ("unlinkat", libc::SYS_unlinkat),
    ("pipe2", libc::SYS_pipe2),
    // The event loop, signals and children.
    ("epoll_pwait", libc::SYS_epoll_pwait),
    ("epoll_pwait2", libc::SYS_epoll_pwait2),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("ppoll", libc::SYS_ppoll),
    ("pselect6", libc::SYS_pselect6),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("rt_sigtimedwait", libc::SYS_rt_sigtimedwait),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("restart_syscall", libc::SYS_restart_syscall),
    ("wait4", libc::SYS_wait4),
    ("waitid", libc::SYS_waitid),
    ("kill", libc::SYS_kill),
    ("tgkill", libc::SYS_tgkill),
    ("tkill", libc::SYS_tkill),
    ("pidfd_open", libc::SYS_pidfd_open),
    ("pidfd_send_signal", libc::SYS_pidfd_send_signal),
    // The diagnostics socket and the health checks (TCP, HTTP, DNS over UDP).
    ("socket", libc::SYS_socket),
    ("connect", libc::SYS_connect),
    ("accept4", libc::SYS_accept4),
    ("accept", libc::SYS_accept),
    ("recvfrom", libc::SYS_recvfrom),
    ("recvmsg", libc::SYS_recvmsg),
    ("recvmmsg", libc::SYS_recvmmsg),
    ("sendto", libc::SYS_sendto),
    ("sendmsg", libc::SYS_sendmsg),
    ("sendmmsg", libc::SYS_sendmmsg),
    ("shutdown", libc::SYS_shutdown),
    ("getsockopt", libc::SYS_getsockopt),
    ("setsockopt", libc::SYS_setsockopt),
    ("getsockname", libc::SYS_getsockname),
    ("getpeername", libc::SYS_getpeername),
    ("bind", libc::SYS_bind),
    // Memory.
    ("brk", libc::SYS_brk),
    ("mmap", libc::SYS_mmap),
    ("munmap", libc::SYS_munmap),
    ("mremap", libc::SYS_mremap),
    ("mprotect", libc::SYS_mprotect),
    ("madvise", libc::SYS_madvise),
    // Threads (health checks) and time.
    ("futex", libc::SYS_futex),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("rseq", libc::SYS_rseq),
    ("membarrier", libc::SYS_membarrier),
    ("sched_yield", libc::SYS_sched_yield),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_getres", libc::SYS_clock_getres),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("nanosleep", libc::SYS_nanosleep),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("getrandom", libc::SYS_getrandom),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    // Identity and limits, read for the diagnostics.
    ("getpid", libc::SYS_getpid),
    ("gettid", libc::SYS_gettid),
    ("getppid", libc::SYS_getppid),
    ("getuid", libc::SYS_getuid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getegid", libc::SYS_getegid),
    ("getgroups", libc::SYS_getgroups),
    ("getresuid", libc::SYS_getresuid),
    ("getresgid", libc::SYS_getresgid),
    ("capget", libc::SYS_capget),
    ("prlimit64", libc::SYS_prlimit64),
    ("getrusage", libc::SYS_getrusage),
    ("uname", libc::SYS_uname),
    ("sysinfo", libc::SYS_sysinfo),
    // Asking the kernel for its Landlock ABI (GetInfo): creates nothing with the version flag,
    // and a ruleset could only restrict the shim further.
    ("landlock_create_ruleset", libc::SYS_landlock_create_ruleset),
];

/// Calls that only x86_64 has (aarch64 has only the *at and p* forms, listed above).
#[cfg(target_arch = "x86_64")]
const ALLOWED_X86_64: &[(&str, libc::c_long)] = &[
    ("stat", libc::SYS_stat),
    ("lstat", libc::SYS_lstat),
    ("access", libc::SYS_access),
    ("readlink", libc::SYS_readlink),
    ("unlink", libc::SYS_unlink),
    ("poll", libc::SYS_poll),
    ("select", libc::SYS_select),
    ("epoll_wait", libc::SYS_epoll_wait),
    ("pipe", libc::SYS_pipe),
    ("arch_prctl", libc::SYS_arch_prctl),
    ("time", libc::SYS_time),
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_X86_64: &[(&str, libc::c_long)] = &[];

/// `prctl` options the shim or std may use after the spawn: naming a thread and reading state.
const PRCTL_ALLOWED: &[u32] = &[
    libc::PR_SET_NAME as u32,
    libc::PR_GET_NAME as u32,
    libc::PR_GET_CHILD_SUBREAPER as u32,
    libc::PR_GET_NO_NEW_PRIVS as u32,
    libc::PR_GET_SECCOMP as u32,
    libc::PR_CAPBSET_READ as u32,
    libc::PR_GET_DUMPABLE as u32,
];

/// Open flags that would let the shim change a file.
const OPEN_WRITE_FLAGS: u32 = (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND) as u32;

/// What took effect, for the log and for `probe security 1`.
#[derive(Debug, Default)]
pub struct SelfConfinement {
    capabilities: Option<Vec<String>>,
    no_new_privs: bool,
    seccomp_calls: Option<usize>,
}

impl SelfConfinement {
    pub fn describe(&self) -> Value {
        json!({
            "self": true,
            "capabilities": self.capabilities,
            "no-new-privs": self.no_new_privs,
            "seccomp": if self.seccomp_calls.is_some() { json!("allowlist") } else { Value::Null },
            "seccomp-calls-allowed": self.seccomp_calls,
            "seccomp-action": if self.seccomp_calls.is_some() { json!("errno") } else { Value::Null },
        })
    }
}

/// Confines the calling process (single-threaded at this point; the filter is synchronised to
/// every thread anyway). Each step that fails is logged and skipped.
pub fn confine() -> SelfConfinement {
    let mut done = SelfConfinement::default();
    match drop_capabilities() {
        Ok(kept) => done.capabilities = Some(kept),
        Err(e) => tracing::warn!("self-confinement: capabilities: {e}; the shim keeps its own"),
    }
    match nix::sys::prctl::set_no_new_privs() {
        Ok(()) => done.no_new_privs = true,
        Err(e) => tracing::warn!("self-confinement: prctl(PR_SET_NO_NEW_PRIVS): {}", e.desc()),
    }
    // seccomp(2) without CAP_SYS_ADMIN requires no_new_privs.
    if done.no_new_privs {
        match install_allowlist() {
            Ok(calls) => done.seccomp_calls = Some(calls),
            Err(e) => tracing::warn!("self-confinement: seccomp: {e}; the shim runs without its allowlist"),
        }
    }
    tracing::debug!("self-confinement: {}", done.describe());
    done
}

/// Keeps [`KEPT`] (those of them the shim has) in the permitted and effective sets and empties
/// the inheritable and ambient sets; returns the names kept.
///
/// The bounding set is left as it is. It only limits what an exec can gain, and the shim can no
/// longer exec (the allowlist has no `execve`) nor gain privileges (no_new_privs); emptying it
/// would take one credential change per capability, about 80 system calls on PID 1's start-up
/// path for no effect.
fn drop_capabilities() -> Result<Vec<String>, String> {
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| format!("cannot read: {e}"))?;
    let kept: CapsHashSet = KEPT.iter().copied().filter(|c| permitted.contains(c)).collect();
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("ambient set: {e}"))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| format!("inheritable set: {e}"))?;
    // Effective first: it must stay a subset of permitted at every step.
    caps::set(None, CapSet::Effective, &kept).map_err(|e| format!("effective set: {e}"))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(|e| format!("permitted set: {e}"))?;
    let mut names: Vec<String> = kept.iter().map(|c| c.to_string()).collect();
    names.sort();
    Ok(names)
}

/// Builds and installs the allowlist; returns how many calls it allows.
fn install_allowlist() -> Result<usize, String> {
    let filter = allowlist();
    let program: BpfProgram = filter
        .compile()?
        .iter()
        .map(|i| seccompiler::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    seccompiler::apply_filter_all_threads(&program).map_err(|e| e.to_string())?;
    Ok(filter.calls.len())
}

/// The filter: the calls in [`ALLOWED`], `clone` for threads only (never a new process),
/// `prctl` for [`PRCTL_ALLOWED`] and `openat` for reading; everything else gets EPERM.
pub fn allowlist() -> bpf::Filter {
    let refuse = RET_ERRNO | libc::EPERM as u32;
    let mut calls: BTreeMap<u32, Action> = ALLOWED
        .iter()
        .chain(ALLOWED_X86_64)
        .map(|&(_, nr)| (nr as u32, Action::Return(RET_ALLOW)))
        .collect();
    calls.insert(
        libc::SYS_clone as u32,
        Action::Check {
            arg: 0,
            test: ArgTest::AllBits(libc::CLONE_THREAD as u32),
            then: RET_ALLOW,
            otherwise: refuse,
        },
    );
    calls.insert(
        libc::SYS_prctl as u32,
        Action::Check {
            arg: 0,
            test: ArgTest::OneOf(PRCTL_ALLOWED.to_vec()),
            then: RET_ALLOW,
            otherwise: refuse,
        },
    );
    // Files open for reading only (/proc, resolv.conf): none of the write, create, truncate or
    // append flags. The flags are openat's third argument and open's second.
    let read_only = |flags_arg: u8| Action::Check {
        arg: flags_arg,
        test: ArgTest::AnyBit(OPEN_WRITE_FLAGS),
        then: refuse,
        otherwise: RET_ALLOW,
    };
    calls.insert(libc::SYS_openat as u32, read_only(2));
    #[cfg(target_arch = "x86_64")]
    calls.insert(libc::SYS_open as u32, read_only(1));
    bpf::Filter {
        audit_arch: AUDIT_ARCH,
        // x32 numbers are in no list, so they get EPERM like every other unlisted call.
        x32: None,
        calls,
        default: refuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_compiles_and_has_no_duplicates() {
        let program = allowlist().compile().expect("compiles");
        assert!(program.len() < 4096, "{} instructions", program.len());
        // Every call number gets what the rules say (the layout is checked in policy::bpf).
        let filter = allowlist();
        for nr in 0..1024 {
            for flags in [
                0,
                libc::O_WRONLY as u64,
                libc::CLONE_THREAD as u64,
                libc::PR_SET_NAME as u64,
            ] {
                let args = [flags, 0, flags, 0, 0, 0];
                assert_eq!(
                    bpf::run(&program, AUDIT_ARCH, nr, &args),
                    filter.verdict(AUDIT_ARCH, nr, &args),
                    "call {nr}"
                );
            }
        }
        let mut numbers: Vec<libc::c_long> = ALLOWED.iter().chain(ALLOWED_X86_64).map(|&(_, nr)| nr).collect();
        numbers.sort_unstable();
        let before = numbers.len();
        numbers.dedup();
        assert_eq!(numbers.len(), before, "a call is listed twice");
    }

    /// Installs the allowlist in a forked child (never in the test process) and reports, as the
    /// child's exit status, the first expectation that failed.
    #[test]
    fn the_allowlist_refuses_forbidden_calls_and_allows_the_rest() {
        let program = allowlist().compile().expect("compiles");
        let prog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: the child makes raw system calls only (no allocation, no locks: the test
        // harness is multi-threaded) and leaves with _exit; `prog` points into `program`, which
        // outlives the child's use of it.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            unsafe {
                let eperm = |r: libc::c_long| r == -1 && *libc::__errno_location() == libc::EPERM;
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0
                {
                    libc::_exit(10);
                }
                // Starting a program, a new process, tracing, mounting, changing capabilities.
                // /bin/false: should the exec pass, the child exits 1 and the test fails.
                let bin = c"/bin/false".as_ptr();
                let argv = [bin, null];
                if !eperm(libc::syscall(libc::SYS_execve, bin, argv.as_ptr(), [null].as_ptr())) {
                    libc::_exit(11);
                }
                if !eperm(libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0)) {
                    libc::_exit(12);
                }
                if !eperm(libc::syscall(libc::SYS_ptrace, libc::PTRACE_ATTACH, 1, 0, 0)) {
                    libc::_exit(13);
                }
                if !eperm(libc::syscall(libc::SYS_mount, null, null, null, 0, null)) {
                    libc::_exit(14);
                }
                if !eperm(libc::syscall(libc::SYS_prctl, libc::PR_SET_DUMPABLE, 1, 0, 0, 0)) {
                    libc::_exit(15);
                }
                // Opening a file to write, create or truncate it.
                let file = c"/proc/self/comm".as_ptr();
                let flags = libc::O_WRONLY | libc::O_CLOEXEC;
                if !eperm(libc::syscall(libc::SYS_openat, libc::AT_FDCWD, file, flags, 0)) {
                    libc::_exit(17);
                }
                if !eperm(libc::syscall(libc::SYS_openat, libc::AT_FDCWD, file, libc::O_RDWR, 0)) {
                    libc::_exit(18);
                }
                // What the shim does keep doing: reading files, its identity, signalling.
                if libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    file,
                    libc::O_RDONLY | libc::O_CLOEXEC,
                    0,
                ) < 0
                {
                    libc::_exit(19);
                }
                if libc::syscall(libc::SYS_getpid) <= 0 || libc::syscall(libc::SYS_kill, libc::getpid(), 0) != 0 {
                    libc::_exit(16);
                }
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above; `status` is a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status), "the child was killed: status {status:#x}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "10: not installed; 11-15, 17, 18: a forbidden call passed; 16, 19: an allowed call failed"
        );
    }

    #[test]
    fn allowlist_has_no_call_that_starts_programs_or_reaches_other_processes() {
        let forbidden = [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_clone3,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_mount,
            libc::SYS_setuid,
            libc::SYS_capset,
            libc::SYS_chmod,
            libc::SYS_seccomp,
        ];
        for nr in forbidden {
            assert!(
                !ALLOWED.iter().chain(ALLOWED_X86_64).any(|&(_, n)| n == nr),
                "syscall {nr} must not be allowed"
            );
        }
    }
}
