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
        _ => usage(),
    }
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
