//! `husk-app`: the small static app the diagnostics tests run under the shim.
//!
//! usage: husk-app [listen PORT] [child] [connect PATH] [http PORT] ...
//!   listen PORT    listen on 127.0.0.1:PORT (TCP) and keep the socket open
//!   http PORT      listen on 127.0.0.1:PORT and answer every request `HTTP/1.0 200 OK`
//!   child          start a child (`husk-app sleep`) that stays in the app's tree
//!   probe-as-app PROBE SOCKET OUT
//!                  run PROBE --socket SOCKET status from inside the app's tree; write its exit
//!                  code to OUT
//!   sleep          nothing more
//! Then it prints "ready" and waits for signals: each one is written as "got N" on stdout;
//! SIGTERM exits 0, SIGUSR2 exits 3, SIGHUP leaves an orphan that exits at once (for the
//! shim to reap).

#![no_main]

use std::io::{Read, Write};
use std::net::TcpListener;

/// No Rust runtime start-up: the app sees the signal dispositions the shim handed over.
// Only the C runtime calls this, with its own argc/argv.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
#[no_mangle]
pub extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    let args: Vec<String> = (0..argc.max(0) as usize)
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

fn run(args: &[String]) {
    // Before any thread exists, so that every thread has the reported signals blocked.
    let set = block_signals();
    let me = args.first().cloned().unwrap_or_default();
    let mut keep = Vec::new();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "listen" => {
                i += 1;
                keep.push(TcpListener::bind(("127.0.0.1", args[i].parse::<u16>().unwrap())).unwrap());
            }
            "http" => {
                i += 1;
                let l = TcpListener::bind(("127.0.0.1", args[i].parse::<u16>().unwrap())).unwrap();
                std::thread::spawn(move || {
                    for s in l.incoming().flatten() {
                        let mut s = s;
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    }
                });
            }
            "child" => {
                // Never waited for: it stays in the tree for the process list to show.
                #[allow(clippy::zombie_processes)]
                std::process::Command::new(&me).arg("sleep").spawn().unwrap();
            }
            "probe-as-app" => {
                let (probe, socket, out) = (&args[i + 1], &args[i + 2], &args[i + 3]);
                i += 3;
                // `status` needs the shim (no standalone answer); retry while the socket is not
                // there yet (exit 3), since the app may start before the shim creates it.
                let mut code = -1;
                for _ in 0..400 {
                    code = std::process::Command::new(probe)
                        .args(["--socket", socket, "status"])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .unwrap()
                        .code()
                        .unwrap_or(-1);
                    if code != 3 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                std::fs::write(out, format!("{code}")).unwrap();
            }
            "sleep" => {}
            other => panic!("husk-app: unknown argument {other:?}"),
        }
        i += 1;
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    wait_for_signals(&set);
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live sigset_t; the calls only write into it and the thread's mask.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in [
            libc::SIGTERM,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGPIPE,
        ] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

/// Takes the blocked signals one by one with sigwait.
fn wait_for_signals(set: &libc::sigset_t) {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` and `sig` are live locals.
        if unsafe { libc::sigwait(set, &mut sig) } != 0 {
            continue;
        }
        println!("got {sig}");
        let _ = std::io::stdout().flush();
        match sig {
            libc::SIGHUP => leave_orphan(),
            libc::SIGTERM => std::process::exit(0),
            libc::SIGUSR2 => std::process::exit(3),
            _ => {}
        }
    }
}

/// Double fork: the middle process exits at once, so the grandchild is re-parented to the shim
/// and becomes its zombie to reap when it exits a moment later.
fn leave_orphan() {
    // SAFETY: the children call only async-signal-safe functions (fork, usleep, _exit).
    unsafe {
        let middle = libc::fork();
        if middle == 0 {
            if libc::fork() == 0 {
                libc::usleep(50_000);
            }
            libc::_exit(0);
        }
        if middle > 0 {
            libc::waitpid(middle, std::ptr::null_mut(), 0);
        }
    }
}
