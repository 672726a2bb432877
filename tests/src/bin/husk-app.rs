//! `husk-app`: the small static app the diagnostics tests run under the shim.
//!
//! usage: husk-app [listen PORT] [child] [connect PATH] [http PORT] ...
//!   listen PORT    listen on 127.0.0.1:PORT (TCP) and keep the socket open
//!   http PORT      listen on 127.0.0.1:PORT and answer every request `HTTP/1.0 200 OK`
//!   child          start a child (`husk-app sleep`) that stays in the app's tree
//!   probe-as-app PROBE SOCKET OUT
//!                  run PROBE --socket SOCKET ps from inside the app's tree; write its exit
//!                  code to OUT
//!   sleep          nothing more
//! Then it prints "ready" and waits for signals: each one is written as "got N" on stdout;
//! SIGTERM exits 0 (after the other signals have been reported), SIGUSR2 exits 3.

#![no_main]

use std::io::{Read, Write};
use std::net::TcpListener;

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
                std::process::Command::new(&me).arg("sleep").spawn().unwrap();
            }
            "probe-as-app" => {
                let (probe, socket, out) = (&args[i + 1], &args[i + 2], &args[i + 3]);
                i += 3;
                let status = std::process::Command::new(probe)
                    .args(["--socket", socket, "ps"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap();
                std::fs::write(out, format!("{}", status.code().unwrap_or(-1))).unwrap();
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
        for sig in [libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2, libc::SIGHUP, libc::SIGINT] {
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
            libc::SIGTERM => std::process::exit(0),
            libc::SIGUSR2 => std::process::exit(3),
            _ => {}
        }
    }
}
