//! `husk-report`: a small static program the confinement tests run as the app. It reports from
//! inside what the shim did to it, one `key=value` line per item on stdout, and the tests assert
//! on that report. Results of attempted operations are `ok` or the errno's name (`EPERM`).
//!
//! usage: husk-report ITEM... where ITEM is one of
//!   ids                      uid=, euid=, gid=, egid=, groups= (comma-separated, sorted)
//!   status                   the Cap*, NoNewPrivs and Seccomp lines of /proc/self/status
//!   rlimit NAME              rlimit.NAME=SOFT:HARD (`unlimited` for RLIM_INFINITY)
//!   umask                    umask=0022
//!   marker PATH              create PATH (proves the app ran); marker=ok|ERRNO
//!   write PATH               write.PATH=ok|ERRNO (create and write a file)
//!   bind PORT                bind.PORT: bind a TCP socket to 0.0.0.0:PORT
//!   connect PORT             connect.PORT: connect a TCP socket to 127.0.0.1:PORT
//!   abstract NAME            abstract.NAME: connect to the abstract unix socket @NAME
//!   signal PID               signal.PID: kill(PID, 0)
//!   syscall NAME             syscall.NAME: make the call with harmless arguments; NAME is one of
//!                            mount, umount, ptrace, kexec_load, bpf, unshare-user, setns, keyctl,
//!                            add_key, process_vm_readv, process_vm_writev, clone-newuser, getpid,
//!                            x32 (getpid through the x32 ABI), reboot, swapon
//!   exec PATH ARG...         replace this process with PATH ARG... (the rest of the line)
//! Items run in order; a denied call under a killing seccomp filter ends the report there.

#![no_main]

use std::ffi::CString;
use std::io::Write;

/// No Rust runtime start-up, so the report shows exactly what the shim handed over.
// Only the C runtime calls this, with its own argc/argv.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
#[no_mangle]
pub extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    let args: Vec<String> = (1..argc.max(0) as usize)
        // SAFETY: the C runtime passes argc valid, NUL-terminated strings.
        .map(|i| {
            unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) }
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    run(&args);
    0
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn result(rc: i64) -> String {
    if rc < 0 {
        format!("{:?}", nix::errno::Errno::from_raw(errno()))
    } else {
        "ok".into()
    }
}

fn usage() -> ! {
    eprintln!("husk-report: bad usage (see the source's header)");
    std::process::exit(2)
}

fn run(args: &[String]) {
    let mut i = 0;
    let next = |i: &mut usize| -> String {
        *i += 1;
        args.get(*i - 1).cloned().unwrap_or_else(|| usage())
    };
    while i < args.len() {
        match next(&mut i).as_str() {
            "ids" => ids(),
            "status" => {
                let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                for line in status
                    .lines()
                    .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs") || l.starts_with("Seccomp:"))
                {
                    if let Some((k, v)) = line.split_once(':') {
                        say(format!("{k}={}", v.trim()));
                    }
                }
            }
            "rlimit" => {
                let name = next(&mut i);
                rlimit(&name);
            }
            "umask" => {
                // SAFETY: umask only swaps the process's mask; it is put back at once.
                let old = unsafe { libc::umask(0o22) };
                // SAFETY: as above.
                unsafe { libc::umask(old) };
                say(format!("umask={old:04o}"));
            }
            "marker" => {
                let path = next(&mut i);
                say(format!("marker={}", io_result(std::fs::write(&path, b"ran\n"))));
            }
            "write" => {
                let path = next(&mut i);
                say(format!("write.{path}={}", io_result(std::fs::write(&path, b"x"))));
            }
            "bind" => {
                let port = next(&mut i);
                say(format!("bind.{port}={}", tcp(&port, true)));
            }
            "connect" => {
                let port = next(&mut i);
                say(format!("connect.{port}={}", tcp(&port, false)));
            }
            "abstract" => {
                let name = next(&mut i);
                say(format!("abstract.{name}={}", abstract_connect(&name)));
            }
            "signal" => {
                let pid = next(&mut i);
                let n: i32 = pid.parse().unwrap_or_else(|_| usage());
                // SAFETY: signal 0 only checks whether a signal could be sent.
                let rc = unsafe { libc::kill(n, 0) };
                say(format!("signal.{pid}={}", result(rc as i64)));
            }
            "syscall" => {
                let name = next(&mut i);
                let r = syscall(&name);
                say(format!("syscall.{name}={r}"));
            }
            "exec" => {
                let rest: Vec<CString> = args[i..].iter().map(|a| CString::new(a.as_str()).unwrap()).collect();
                if rest.is_empty() {
                    usage();
                }
                let mut ptrs: Vec<*const libc::c_char> = rest.iter().map(|a| a.as_ptr()).collect();
                ptrs.push(std::ptr::null());
                // SAFETY: path and argv are live NUL-terminated strings in a NULL-terminated array.
                unsafe { libc::execv(rest[0].as_ptr(), ptrs.as_ptr()) };
                say(format!("exec={}", result(-1)));
                return;
            }
            _ => usage(),
        }
    }
}

fn io_result(r: std::io::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => format!("{:?}", nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))),
    }
}

fn ids() {
    let uid = nix::unistd::getuid();
    let euid = nix::unistd::geteuid();
    let gid = nix::unistd::getgid();
    let egid = nix::unistd::getegid();
    let mut groups: Vec<u32> = nix::unistd::getgroups()
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    groups.sort_unstable();
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    say(format!("uid={uid}"));
    say(format!("euid={euid}"));
    say(format!("gid={gid}"));
    say(format!("egid={egid}"));
    say(format!("groups={}", groups.join(",")));
}

fn rlimit(name: &str) {
    let resource = match name {
        "nofile" => libc::RLIMIT_NOFILE,
        "core" => libc::RLIMIT_CORE,
        "nproc" => libc::RLIMIT_NPROC,
        "stack" => libc::RLIMIT_STACK,
        "fsize" => libc::RLIMIT_FSIZE,
        "as" => libc::RLIMIT_AS,
        _ => usage(),
    };
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live rlimit the call writes into.
    let rc = unsafe { libc::getrlimit(resource, &mut lim) };
    let show = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    if rc == 0 {
        say(format!("rlimit.{name}={}:{}", show(lim.rlim_cur), show(lim.rlim_max)));
    } else {
        say(format!("rlimit.{name}={}", result(-1)));
    }
}

fn tcp(port: &str, bind: bool) -> String {
    let port: u16 = port.parse().unwrap_or_else(|_| usage());
    // SAFETY: socket takes three integers and returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return result(-1);
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: if bind {
                0
            } else {
                u32::from_be_bytes([127, 0, 0, 1]).to_be()
            },
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let ptr = &addr as *const libc::sockaddr_in as *const libc::sockaddr;
    // SAFETY: `ptr` points to a live sockaddr_in of `len` bytes for the duration of the call.
    let rc = unsafe {
        if bind {
            libc::bind(fd, ptr, len)
        } else {
            libc::connect(fd, ptr, len)
        }
    };
    let r = result(rc as i64);
    // SAFETY: closes the descriptor this function opened.
    unsafe { libc::close(fd) };
    r
}

fn abstract_connect(name: &str) -> String {
    // SAFETY: socket takes three integers and returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return result(-1);
    }
    // SAFETY: sockaddr_un is plain bytes; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = name.as_bytes();
    let n = bytes.len().min(addr.sun_path.len() - 1);
    for (dst, src) in addr.sun_path[1..=n].iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + n) as libc::socklen_t;
    // SAFETY: `addr` is a live sockaddr_un and `len` covers the family and the abstract name.
    let rc = unsafe { libc::connect(fd, &addr as *const libc::sockaddr_un as *const libc::sockaddr, len) };
    let r = result(rc as i64);
    // SAFETY: closes the descriptor this function opened.
    unsafe { libc::close(fd) };
    r
}

/// Each call with arguments that do nothing harmful if the call is allowed.
fn syscall(name: &str) -> String {
    let null = std::ptr::null::<libc::c_void>();
    let missing = c"/nonexistent-husk-report".as_ptr();
    // SAFETY (for every call below): the arguments are integers, null pointers, or pointers to
    // static NUL-terminated strings; none refers to memory that could be written.
    let rc = unsafe {
        match name {
            "mount" => libc::syscall(libc::SYS_mount, c"none".as_ptr(), missing, c"tmpfs".as_ptr(), 0, null),
            "umount" => libc::syscall(libc::SYS_umount2, missing, 0),
            "ptrace" => libc::syscall(libc::SYS_ptrace, libc::PTRACE_PEEKUSER, 0, 0, 0),
            "kexec_load" => libc::syscall(libc::SYS_kexec_load, 0, 0, null, 0xdead_0000u64),
            "bpf" => libc::syscall(libc::SYS_bpf, 9999, null, 0),
            "unshare-user" => libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER),
            "setns" => libc::syscall(libc::SYS_setns, -1, 0),
            "keyctl" => libc::syscall(libc::SYS_keyctl, 9999, 0, 0, 0, 0),
            "add_key" => libc::syscall(libc::SYS_add_key, null, null, null, 0, 0),
            "process_vm_readv" => libc::syscall(libc::SYS_process_vm_readv, 0, null, 0, null, 0, 0),
            "process_vm_writev" => libc::syscall(libc::SYS_process_vm_writev, 0, null, 0, null, 0, 0),
            "clone-newuser" => {
                // A child that exits at once if the call is allowed.
                let pid = libc::syscall(libc::SYS_clone, libc::CLONE_NEWUSER | libc::SIGCHLD, 0, 0, 0, 0);
                if pid == 0 {
                    libc::_exit(0);
                }
                if pid > 0 {
                    libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
                }
                pid
            }
            "getpid" => libc::syscall(libc::SYS_getpid),
            "x32" => libc::syscall(0x4000_0000 + libc::SYS_getpid),
            "reboot" => libc::syscall(libc::SYS_reboot, 0, 0, 0, null),
            "swapon" => libc::syscall(libc::SYS_swapon, missing, 0),
            _ => usage(),
        }
    };
    result(rc)
}
