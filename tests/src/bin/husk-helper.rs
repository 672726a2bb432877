//! `husk-helper`: a small static program the tests run as the app under the shim, where a shell
//! would hide the behaviour under test. Each subcommand does one thing and reports on stdout.
//!
//! usage: husk-helper COMMAND [ARGS]
//!   exit CODE                 exit with CODE
//!   kill-self SIG             die from signal SIG (default disposition)
//!   print TEXT                write TEXT to stdout and exit 0
//!   status                    print this process's SigBlk and SigIgn lines and exit
//!   signals EXIT_SIG [group]  print "got N" for each signal received until EXIT_SIG arrives;
//!                             with `group`, a grandchild in the same group prints "grandchild got N"
//!   orphans N                 leave N double-forked orphans for the shim to reap, print
//!                             "created N", then wait for a signal
//!   storm N CODE              N orphans and this process all exit at the same instant; exit CODE
//!   leftover MS MARKER [setsid|ignore]
//!                             start a grandchild that, on SIGTERM, spends MS ms cleaning up and then
//!                             creates MARKER (or ignores SIGTERM entirely); print "pid N" and
//!                             "parent N" (this process); exit 0
//!   describe [sleep]          print "pid N", "cwd PATH", "listen_pid VALUE", "fds 0,1,2",
//!                             "pgid N" and "foreground yes|no|no-tty"; then exit, or wait for a signal
//!   sleep                     wait for a signal, doing nothing
//!   orphans-exit N            leave N double-forked orphans, print "created N", exit 0
//!   latency                   print "ready", then for every SIGUSR1 the CLOCK_MONOTONIC time it
//!                             arrived in nanoseconds, one per line; exit 0 on SIGTERM
//!   serve PORT CODE [MS MARKER]
//!                             a small server app: answer every connection to 0.0.0.0:PORT with
//!                             `HTTP/1.0 200 OK`; with MS and MARKER, first start a leftover grandchild
//!                             as `leftover` does; print "ready"; on SIGUSR1 close the listener (the
//!                             health check target goes away) and print "closed"; on SIGTERM print
//!                             "term" and exit CODE
//!
//! The exhaustion and fault subcommands below end in one loop: they print "ready", then
//! "got N" for every signal; SIGHUP leaves an orphan that exits at once (for the shim to reap)
//! and prints "orphaned" once it is the shim's, SIGTERM exits CODE, and SIGUSR1 / SIGUSR2 do what the subcommand says.
//!   loop CODE                 only the loop
//!   fd-hog CODE SOCKET        USR1: open /dev/null until open fails, print "opened N ERRNO", then
//!                             free 40 and hold 40 idle connections to the unix socket SOCKET,
//!                             print "connected M"; ask for Status on one of them, print
//!                             "refused" when refused; USR2: close all of it, print "released"
//!   fork-bomb CODE            USR1: start a fork bomb (every process forks until fork fails, at
//!                             most 2^10 processes), print "saturated" once a fork failed;
//!                             USR2: let every bomber exit, print "bombers N" once all are gone
//!   mem-hog CODE MIB          USR1: an orphan allocates and touches MIB MiB, then prints
//!                             "hog survived"; USR2: this process does, then prints "app survived"
//!   shm-fill CODE DIR         USR1: fill DIR with files until the file system is out of space
//!                             and inodes, print "full BYTES FILES"; USR2: remove them, print "emptied"
//!   reexec CODE N             block every signal, print "start", exec itself N times, then loop
//!   regroup CODE              start a grandchild in a process group of its own that prints
//!                             "grandchild got N" (SIGTERM ends it); USR1: join the grandchild's
//!                             group, print "pgid N"; USR2: become a session leader, print "sid N"
//!   crowd CODE N MS|never DIR leave N orphans that create DIR/started-PID and, on SIGTERM, spend
//!                             MS ms cleaning up and then create DIR/done-PID (never: ignore
//!                             SIGTERM); print "crowd N"; exit CODE
//!   client SOCKET partial|flood
//!                             connect to SOCKET; send half a request (partial) or 300 pipelined
//!                             ListProcesses requests, never reading (flood); print "sent"; wait
//!   sleepers N                start N children that wait for a signal, print "ready N", then wait
//!                             for a signal (the diagnostics benchmark's crowded namespace)
//!   soak-app RATE             the soak test's app, a wrapper that keeps starting short-lived
//!                             generations of itself (`orphans-exit 10`) so that about RATE orphans
//!                             a second reach PID 1, printing "orphans TOTAL" after each; prints
//!                             "sig N" for every signal it receives; on SIGHUP stops starting
//!                             generations and prints "stopped TOTAL"; exits 0 on the first SIGTERM
//!                             after that (before it, SIGTERM is acknowledged like any other
//!                             signal, so that a stray one cannot end an hour's run)

#![no_main]

use std::io::Write;
use std::time::Duration;

/// No Rust runtime start-up: it would set SIGPIPE to ignored before `status` could report the
/// dispositions the shim handed over.
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
    run(args);
    0
}

fn run(args: Vec<String>) {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    match arg(0) {
        "exit" => std::process::exit(arg(1).parse().unwrap_or_else(|_| usage())),
        "kill-self" => kill_self(arg(1).parse().unwrap_or_else(|_| usage())),
        "print" => {
            let mut out = std::io::stdout().lock();
            out.write_all(arg(1).as_bytes()).unwrap();
            out.flush().unwrap();
        }
        "status" => {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            for line in status
                .lines()
                .filter(|l| l.starts_with("SigBlk") || l.starts_with("SigIgn"))
            {
                println!("{line}");
            }
        }
        "signals" => signals(
            arg(1).parse().unwrap_or_else(|_| usage()),
            args.get(2).is_some_and(|a| a == "group"),
        ),
        "orphans" => orphans(arg(1).parse().unwrap_or_else(|_| usage())),
        "storm" => storm(
            arg(1).parse().unwrap_or_else(|_| usage()),
            arg(2).parse().unwrap_or_else(|_| usage()),
        ),
        "leftover" => leftover(
            arg(1).parse().unwrap_or_else(|_| usage()),
            arg(2),
            args.get(3).map(String::as_str),
        ),
        "orphans-exit" => {
            let n = arg(1).parse().unwrap_or_else(|_| usage());
            for _ in 0..n {
                // SAFETY: the orphan exits at once.
                double_fork(|| unsafe { libc::_exit(0) });
            }
            say(&format!("created {n}"));
        }
        "latency" => latency(),
        "serve" => serve(
            arg(1).parse().unwrap_or_else(|_| usage()),
            arg(2).parse().unwrap_or_else(|_| usage()),
            args.get(3).map(|ms| (ms.parse().unwrap_or_else(|_| usage()), arg(4))),
        ),
        "describe" => {
            describe();
            if args.get(1).is_some_and(|a| a == "sleep") {
                loop {
                    // SAFETY: pause has no preconditions.
                    unsafe { libc::pause() };
                }
            }
        }
        "sleepers" => sleepers(arg(1).parse().unwrap_or_else(|_| usage())),
        "soak-app" => soak_app(arg(1).parse().unwrap_or_else(|_| usage())),
        "sleep" => loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        },
        "loop" => signal_loop(code(&args), |_| {}),
        "fd-hog" => fd_hog(code(&args), arg(2)),
        "fork-bomb" => fork_bomb(code(&args)),
        "mem-hog" => {
            let mib = arg(2).parse().unwrap_or_else(|_| usage());
            signal_loop(code(&args), |sig| match sig {
                // SAFETY: the orphan only allocates, prints and exits.
                libc::SIGUSR1 => double_fork(|| {
                    hog(mib);
                    say("hog survived");
                    unsafe { libc::_exit(0) }
                }),
                libc::SIGUSR2 => {
                    hog(mib);
                    say("app survived");
                }
                _ => {}
            })
        }
        "shm-fill" => shm_fill(code(&args), arg(2)),
        "reexec" => reexec(&args),
        "regroup" => regroup(code(&args)),
        "client" => client(arg(1), arg(2)),
        "crowd" => {
            let n: usize = arg(2).parse().unwrap_or_else(|_| usage());
            // None: never; SIGTERM stays blocked.
            let ms: Option<u64> = (arg(3) != "never").then(|| arg(3).parse().unwrap_or_else(|_| usage()));
            let dir = std::path::PathBuf::from(arg(4));
            // Blocked before the forks, so that no orphan can die of a SIGTERM that comes
            // before it is ready for it (the shutdown may start as soon as this process exits).
            let set = block(&[libc::SIGTERM]);
            for _ in 0..n {
                double_fork(|| {
                    let _ = std::fs::write(dir.join(format!("started-{}", std::process::id())), b"");
                    let Some(ms) = ms else {
                        loop {
                            // SAFETY: pause has no preconditions.
                            unsafe { libc::pause() };
                        }
                    };
                    next_signal(&set);
                    std::thread::sleep(Duration::from_millis(ms));
                    let _ = std::fs::write(dir.join(format!("done-{}", std::process::id())), b"");
                    // SAFETY: ends the orphan without running the app's exit handlers.
                    unsafe { libc::_exit(0) }
                });
            }
            say(&format!("crowd {n}"));
            std::process::exit(code(&args))
        }
        _ => usage(),
    }
}

/// The exit code the loop subcommands take as their first argument.
fn code(args: &[String]) -> i32 {
    args.get(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| usage())
}

fn usage() -> ! {
    eprintln!("husk-helper: bad usage (see the source's header)");
    std::process::exit(2)
}

/// Prints one line. When nobody reads stdout any more (the test is gone), exit: with SIGPIPE
/// blocked, reporting the SIGPIPE each failed write raises would loop forever.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(3);
    }
}

fn kill_self(sig: i32) -> ! {
    // SAFETY: resetting a disposition and raising a signal on ourselves.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    std::process::exit(99)
}

/// Every signal a process can catch, except SIGCHLD (the group grandchild would report it)
/// and the ones the C library reserves for itself.
fn catchable() -> Vec<i32> {
    (1..=64)
        .filter(|&s| ![libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD].contains(&s))
        .filter(|&s| s < 32 || s >= libc::SIGRTMIN())
        .collect()
}

fn block(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: building and installing a signal mask for this process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn next_signal(set: &libc::sigset_t) -> i32 {
    loop {
        // SAFETY: waits for a signal from a set that is blocked in this thread.
        let sig = unsafe { libc::sigwaitinfo(set, std::ptr::null_mut()) };
        if sig > 0 {
            return sig;
        }
    }
}

fn signals(exit_sig: i32, group: bool) {
    let set = block(&catchable());
    if group {
        let (read_end, write_end) = pipe();
        // SAFETY: single-threaded; the child only prints and waits for signals.
        match unsafe { libc::fork() } {
            0 => {
                drop(read_end);
                drop(write_end);
                loop {
                    let sig = next_signal(&set);
                    say(&format!("grandchild got {sig}"));
                    if sig == exit_sig {
                        std::process::exit(0);
                    }
                }
            }
            _ => {
                drop(write_end);
                drop(read_end);
            }
        }
    }
    say("ready");
    loop {
        let sig = next_signal(&set);
        say(&format!("got {sig}"));
        if sig == exit_sig {
            if group {
                // Let the grandchild report the exit signal too before the shim shuts down.
                // SAFETY: waiting for any child.
                unsafe { libc::wait(std::ptr::null_mut()) };
            }
            std::process::exit(0);
        }
    }
}

struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor this wrapper owns.
        unsafe { libc::close(self.0) };
    }
}

fn pipe() -> (Fd, Fd) {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (Fd(fds[0]), Fd(fds[1]))
}

/// Forks a child that forks `grandchild` and exits at once, so the grandchild is orphaned;
/// waits for the middle child.
fn double_fork(grandchild: impl FnOnce()) {
    // SAFETY: single-threaded; the children run plain code and exit.
    unsafe {
        match libc::fork() {
            0 => {
                if libc::fork() == 0 {
                    grandchild();
                }
                libc::_exit(0);
            }
            pid if pid > 0 => {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            _ => panic!("fork failed"),
        }
    }
}

fn orphans(n: usize) {
    for _ in 0..n {
        // SAFETY: the orphan exits at once.
        double_fork(|| unsafe { libc::_exit(0) });
    }
    say(&format!("created {n}"));
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

fn storm(n: usize, code: i32) {
    let (read_end, write_end) = pipe();
    let gate = read_end.0;
    for _ in 0..n {
        double_fork(|| {
            let mut byte = [0u8; 1];
            // SAFETY: blocks until the gate's write end closes, then exits with everyone else.
            unsafe {
                libc::read(gate, byte.as_mut_ptr().cast(), 1);
                libc::_exit(0);
            }
        });
    }
    drop(read_end);
    say("ready");
    drop(write_end);
    std::process::exit(code);
}

/// Accepts connections on a thread of its own and answers each with a fixed HTTP 200; the main
/// thread waits for signals (blocked before the thread starts, so only it receives them).
fn serve(port: u16, code: i32, leftover_of: Option<(u64, &str)>) {
    use std::os::fd::AsRawFd;
    if let Some((cleanup_ms, marker)) = leftover_of {
        leftover(cleanup_ms, marker, None);
    }
    let set = block(&[libc::SIGUSR1, libc::SIGTERM]);
    let listener = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| {
        eprintln!("husk-helper: bind 0.0.0.0:{port}: {e}");
        std::process::exit(3)
    });
    let fd = listener.as_raw_fd();
    std::thread::spawn(move || {
        // Ends when the listener is shut down: accept then fails.
        while let Ok((mut conn, _)) = listener.accept() {
            // Read the request first: closing with unread data would reset the connection
            // before the client reads the answer.
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = std::io::Read::read(&mut conn, &mut [0u8; 1024]);
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        }
    });
    say("ready");
    loop {
        match next_signal(&set) {
            libc::SIGUSR1 => {
                // SAFETY: shuts down the listening socket the accept thread owns; its accept
                // returns an error and the thread drops (closes) it.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                say("closed");
            }
            _ => {
                say("term");
                std::process::exit(code);
            }
        }
    }
}

fn leftover(cleanup_ms: u64, marker: &str, mode: Option<&str>) {
    let (read_end, write_end) = pipe();
    // SAFETY: single-threaded fork; the grandchild only waits, sleeps and writes a file.
    match unsafe { libc::fork() } {
        0 => {
            drop(read_end);
            if mode == Some("setsid") {
                // SAFETY: leaves the app's session and process group.
                unsafe { libc::setsid() };
            }
            if mode == Some("ignore") {
                // SAFETY: ignoring SIGTERM in this process.
                unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            }
            let set = block(&[libc::SIGTERM]);
            say(&format!("pid {}", std::process::id()));
            // SAFETY: getppid has no preconditions.
            say(&format!("parent {}", unsafe { libc::getppid() }));
            drop(write_end);
            if mode == Some("ignore") {
                loop {
                    // SAFETY: pause has no preconditions.
                    unsafe { libc::pause() };
                }
            }
            next_signal(&set);
            std::thread::sleep(Duration::from_millis(cleanup_ms));
            std::fs::write(marker, b"cleaned up\n").unwrap();
            std::process::exit(0);
        }
        _ => {
            drop(write_end);
            let mut byte = [0u8; 1];
            // SAFETY: waits until the grandchild closed its end (it is ready).
            unsafe { libc::read(read_end.0, byte.as_mut_ptr().cast(), 1) };
        }
    }
}

fn monotonic_ns() -> u128 {
    // SAFETY: clock_gettime writes one timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn latency() {
    let set = block(&[libc::SIGUSR1, libc::SIGTERM]);
    say("ready");
    loop {
        let sig = next_signal(&set);
        let at = monotonic_ns();
        if sig == libc::SIGTERM {
            std::process::exit(0);
        }
        say(&at.to_string());
    }
}

fn describe() {
    say(&format!("pid {}", std::process::id()));
    say(&format!(
        "cwd {}",
        std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    ));
    say(&format!(
        "listen_pid {}",
        std::env::var("LISTEN_PID").unwrap_or_default()
    ));
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    // The listing's own descriptor is the highest one and is closed by now.
    fds.retain(|&fd| std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok());
    say(&format!(
        "fds {}",
        fds.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(",")
    ));
    // SAFETY: getpgrp and tcgetpgrp take no pointers.
    let (pgid, foreground) = unsafe { (libc::getpgrp(), libc::tcgetpgrp(0)) };
    say(&format!("pgid {pgid}"));
    let fg = if foreground < 0 {
        "no-tty"
    } else if foreground == pgid {
        "yes"
    } else {
        "no"
    };
    say(&format!("foreground {fg}"));
}

/// The loop the exhaustion and fault subcommands end in (see the header).
fn signal_loop(code: i32, mut action: impl FnMut(i32)) -> ! {
    let set = block(&catchable());
    say("ready");
    loop {
        let sig = next_signal(&set);
        say(&format!("got {sig}"));
        match sig {
            libc::SIGTERM => std::process::exit(code),
            libc::SIGHUP => {
                // SAFETY: the orphan exits at once.
                double_fork(|| unsafe { libc::_exit(0) });
                say("orphaned");
            }
            _ => action(sig),
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn fd_hog(code: i32, socket: &str) {
    let mut held: Vec<Fd> = Vec::new();
    let mut conns: Vec<std::os::unix::net::UnixStream> = Vec::new();
    signal_loop(code, |sig| match sig {
        libc::SIGUSR1 => {
            let fail = loop {
                // SAFETY: opens a descriptor this process owns (through `Fd`).
                let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
                if fd < 0 {
                    break errno();
                }
                held.push(Fd(fd));
            };
            say(&format!(
                "opened {} {}",
                held.len(),
                if fail == libc::EMFILE { "EMFILE" } else { "other" }
            ));
            held.truncate(held.len().saturating_sub(40));
            conns.extend((0..40).map_while(|_| std::os::unix::net::UnixStream::connect(socket).ok()));
            say(&format!("connected {}", conns.len()));
            // A process of the app's own tree is refused, with a reason, however it came.
            if let Some(first) = conns.first_mut() {
                let mut reply = Vec::new();
                let _ = first.set_read_timeout(Some(Duration::from_secs(30)));
                let _ = first.write_all(b"{\"method\":\"io.husk.Diag.Status\"}\0");
                let _ = std::io::Read::read_to_end(first, &mut reply);
                let refused = String::from_utf8_lossy(&reply).contains("io.husk.Diag.PermissionDenied");
                say(if refused { "refused" } else { "not refused" });
            }
        }
        libc::SIGUSR2 => {
            held.clear();
            conns.clear();
            say("released");
        }
        _ => {}
    })
}

/// At most 2^BOMB_DEPTH processes even if nothing stopped the bomb.
const BOMB_DEPTH: u32 = 10;

fn fork_bomb(code: i32) {
    // While the bomb runs: the gate's write end (closing it lets every bomber exit), the report
    // pipe's read end, and how many reports were read so far.
    let mut bomb: Option<(Fd, Fd, usize)> = None;
    signal_loop(code, |sig| match sig {
        libc::SIGUSR1 if bomb.is_none() => {
            let (gate_r, gate_w) = pipe();
            let (report_r, report_w) = pipe();
            let (gate, report, gate_w_raw) = (gate_r.0, report_w.0, gate_w.0);
            // The first bomber is an orphan of the shim, like every bomber once its parent exits.
            double_fork(|| {
                // SAFETY: closes this copy of the gate's write end, so that the bombers see EOF
                // once the app closes its own.
                unsafe { libc::close(gate_w_raw) };
                bomber(gate, report)
            });
            drop((gate_r, report_w));
            // Each bomber reports once: F when a fork failed, D when it did all its forks.
            let mut reports = 0;
            let mut byte = [0u8; 1];
            while read_byte(&report_r, &mut byte) {
                reports += 1;
                if byte[0] == b'F' {
                    break;
                }
            }
            say(if byte[0] == b'F' { "saturated" } else { "unbounded" });
            bomb = Some((gate_w, report_r, reports));
        }
        libc::SIGUSR2 => {
            if let Some((gate_w, report_r, mut reports)) = bomb.take() {
                drop(gate_w);
                // EOF once every bomber (each holds the report pipe) has exited.
                let mut byte = [0u8; 1];
                while read_byte(&report_r, &mut byte) {
                    reports += 1;
                }
                say(&format!("bombers {reports}"));
            }
        }
        _ => {}
    })
}

fn read_byte(fd: &Fd, byte: &mut [u8; 1]) -> bool {
    // SAFETY: reads one byte into a live buffer from a descriptor this process owns.
    unsafe { libc::read(fd.0, byte.as_mut_ptr().cast(), 1) == 1 }
}

fn bomber(gate: i32, report: i32) -> ! {
    let mut remaining = BOMB_DEPTH;
    let mut failed = false;
    while remaining > 0 {
        remaining -= 1;
        // SAFETY: single-threaded; parent and child both carry on with this loop.
        if unsafe { libc::fork() } < 0 {
            failed = true;
            break;
        }
    }
    let mut byte = [0u8; 1];
    // SAFETY: one byte written to and read from descriptors inherited from the app.
    unsafe {
        libc::write(report, if failed { b"F" } else { b"D" }.as_ptr().cast(), 1);
        libc::read(gate, byte.as_mut_ptr().cast(), 1);
        libc::_exit(0)
    }
}

/// Allocates `mib` MiB and writes to every page, so that all of it is really charged.
fn hog(mib: usize) {
    let mut chunks = Vec::new();
    for _ in 0..mib {
        chunks.push(vec![1u8; 1 << 20]);
    }
    std::hint::black_box(&chunks);
}

/// At most this many files, whatever the file system holds.
const FILL_FILES: usize = 10_000;

fn shm_fill(code: i32, dir: &str) {
    let dir = std::path::PathBuf::from(dir);
    let mut files = Vec::new();
    signal_loop(code, |sig| match sig {
        libc::SIGUSR1 => {
            // Data first (64 KiB files until a write fails), then empty files until no inode is
            // left.
            let block = vec![0u8; 64 * 1024];
            let mut bytes = 0;
            for empty in [false, true] {
                while files.len() < FILL_FILES {
                    let path = dir.join(format!("fill-{}", files.len()));
                    let Ok(mut file) = std::fs::File::create(&path) else {
                        break;
                    };
                    files.push(path);
                    if !empty {
                        match file.write(&block) {
                            Ok(n) if n == block.len() => bytes += n,
                            Ok(n) => {
                                bytes += n;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
            say(&format!("full {bytes} {}", files.len()));
        }
        libc::SIGUSR2 => {
            for path in files.drain(..) {
                let _ = std::fs::remove_file(path);
            }
            say("emptied");
        }
        _ => {}
    })
}

/// `reexec CODE N [again]`: the first run blocks every signal (the mask survives exec, so a
/// signal sent during the execs waits for the loop) and prints "start".
fn reexec(args: &[String]) {
    let left: u32 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or_else(|| usage());
    if args.get(3).map(String::as_str) != Some("again") {
        block(&catchable());
        say("start");
    }
    if left == 0 {
        signal_loop(code(args), |_| {});
    }
    let next = [
        "husk-helper".to_string(),
        "reexec".to_string(),
        args[1].clone(),
        (left - 1).to_string(),
        "again".to_string(),
    ];
    let next: Vec<std::ffi::CString> = next
        .iter()
        .map(|a| std::ffi::CString::new(a.as_str()).unwrap())
        .collect();
    let mut argv: Vec<*const libc::c_char> = next.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: argv is a NULL-terminated array of C strings that outlive the call. Not
    // std's Command::exec, which would reset the signal mask.
    unsafe { libc::execv(c"/proc/self/exe".as_ptr(), argv.as_ptr()) };
    eprintln!("husk-helper: exec: {}", std::io::Error::last_os_error());
    std::process::exit(4)
}

fn regroup(code: i32) {
    let set = block(&catchable());
    // SAFETY: single-threaded fork; the grandchild only moves to its own group and reports.
    let grandchild = unsafe { libc::fork() };
    if grandchild == 0 {
        // SAFETY: setpgid on this process.
        unsafe { libc::setpgid(0, 0) };
        loop {
            let sig = next_signal(&set);
            say(&format!("grandchild got {sig}"));
            if sig == libc::SIGTERM {
                std::process::exit(0);
            }
        }
    }
    // Also from this side, so the group exists before anything below joins it.
    // SAFETY: setpgid on our own child.
    unsafe { libc::setpgid(grandchild, grandchild) };
    signal_loop(code, |sig| match sig {
        libc::SIGUSR1 => {
            // SAFETY: joins the grandchild's group, in this process's session.
            if unsafe { libc::setpgid(0, grandchild) } != 0 {
                say(&format!("setpgid failed {}", errno()));
            }
            // SAFETY: getpgrp has no preconditions.
            say(&format!("pgid {}", unsafe { libc::getpgrp() }));
        }
        libc::SIGUSR2 => {
            // SAFETY: setsid on this process (no longer a group leader after USR1).
            if unsafe { libc::setsid() } < 0 {
                say(&format!("setsid failed {}", errno()));
            }
            // SAFETY: getsid has no preconditions.
            say(&format!("sid {}", unsafe { libc::getsid(0) }));
        }
        _ => {}
    })
}

fn client(socket: &str, mode: &str) {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap_or_else(|e| {
        eprintln!("husk-helper: connect {socket}: {e}");
        std::process::exit(3)
    });
    let request = b"{\"method\":\"io.husk.Diag.ListProcesses\"}\0";
    let bytes = match mode {
        "partial" => request[..request.len() / 2].to_vec(),
        "flood" => request.repeat(300),
        _ => usage(),
    };
    stream.write_all(&bytes).unwrap();
    say("sent");
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

fn sleepers(n: usize) {
    for _ in 0..n {
        // SAFETY: single-threaded; the child only waits for a signal.
        match unsafe { libc::fork() } {
            0 => loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            },
            pid if pid > 0 => {}
            _ => panic!("fork failed"),
        }
    }
    say(&format!("ready {n}"));
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

/// Orphans per generation: a generation is one fork and exec, so the orphans come in small
/// batches rather than one process per orphan.
const SOAK_BATCH: u64 = 10;

fn soak_app(rate: u64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    // Blocked before the generations thread starts, so that every signal waits for the main
    // thread's sigwaitinfo (the generations themselves start with an empty mask).
    let set = block(&catchable());
    let stop = Arc::new(AtomicBool::new(false));
    let generations = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let interval = Duration::from_secs_f64(SOAK_BATCH as f64 / rate.max(1) as f64);
            let mut total = 0u64;
            let mut next = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                // /proc/self/exe: the binary this process started from, even if it has been
                // rebuilt on disk since (the soak runs for an hour).
                let out = std::process::Command::new("/proc/self/exe")
                    .args(["orphans-exit", &SOAK_BATCH.to_string()])
                    .stderr(std::process::Stdio::inherit())
                    .output();
                match out {
                    Ok(o) if o.stdout == format!("created {SOAK_BATCH}\n").as_bytes() => {
                        total += SOAK_BATCH;
                        say(&format!("orphans {total}"));
                    }
                    other => eprintln!("husk-helper: soak-app: a generation failed: {other:?}"),
                }
                next = (next + interval).max(std::time::Instant::now());
                std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
            }
            total
        })
    };
    acknowledge_until(&set, libc::SIGHUP);
    stop.store(true, Ordering::Relaxed);
    let total = generations.join().unwrap_or(0);
    say(&format!("stopped {total}"));
    acknowledge_until(&set, libc::SIGTERM);
    std::process::exit(0);
}

/// Prints "sig N" for every signal until `last` has arrived.
fn acknowledge_until(set: &libc::sigset_t, last: i32) {
    loop {
        let sig = next_signal(set);
        say(&format!("sig {sig}"));
        if sig == last {
            return;
        }
    }
}
