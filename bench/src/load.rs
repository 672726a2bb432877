//! Clients of husk's diagnostics socket, run as threads of the benchmark process: a hammer (many
//! clients asking as fast as the shim answers) for the latency-under-load measurement, and a
//! paced mix of well- and ill-behaved clients for the soak test. Every request uses a new
//! connection, as `probe` does, with `probe`'s own client code.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use husk_probe::client::{self, CallError};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The result of one well-behaved request.
pub enum Outcome {
    Served(Value),
    /// The shim answered with a varlink error, or the conversation broke down.
    Failed(String),
    /// Nothing listens at the address (not up yet, or gone).
    Unreachable,
}

/// One request on a connection of its own.
pub fn ask(socket: &str, method: &str, parameters: Value) -> Outcome {
    match client::connect(socket, TIMEOUT).and_then(|mut s| client::call(&mut s, method, parameters, TIMEOUT)) {
        Ok(v) => Outcome::Served(v),
        Err(CallError::Unreachable(_)) => Outcome::Unreachable,
        Err(CallError::Server { name, parameters }) => Outcome::Failed(format!("{method}: {name} {parameters}")),
        Err(CallError::Protocol(why)) => Outcome::Failed(format!("{method}: {why}")),
    }
}

/// Counts so far.
#[derive(Clone, Copy, Default)]
pub struct Tally {
    pub served: u64,
    pub errors: u64,
    /// Ill-behaved clients that hung up mid-request (soak only).
    pub aborted: u64,
}

#[derive(Default)]
struct Counters {
    served: AtomicU64,
    errors: AtomicU64,
    aborted: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Served(_) => {
                self.served.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed(why) => {
                eprintln!("husk-bench: diagnostics request failed: {why}");
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            // Not an answer either way: each kind of client decides what it means.
            Outcome::Unreachable => {}
        }
    }
}

/// Client threads running until `stop`.
pub struct Clients {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
}

/// What the hammer asks, in turn: the cheapest method and the most expensive common one.
const HAMMER_METHODS: [&str; 2] = ["io.husk.Diag.Status", "io.husk.Diag.ListProcesses"];

/// What the soak's clients ask, in turn: every read-only method that needs no health check,
/// about PID 1 (the shim itself) where a pid is needed.
const SOAK_METHODS: [(&str, bool); 14] = [
    ("org.varlink.service.GetInfo", false),
    ("io.husk.Diag.GetInfo", false),
    ("io.husk.Diag.Status", false),
    ("io.husk.Diag.ListProcesses", false),
    ("io.husk.Diag.ListSockets", false),
    ("io.husk.Diag.NetConfig", false),
    ("io.husk.Diag.Cgroup", false),
    ("io.husk.Diag.LastExit", false),
    ("io.husk.Diag.ListThreads", true),
    ("io.husk.Diag.ListFds", true),
    ("io.husk.Diag.Limits", true),
    ("io.husk.Diag.Mounts", true),
    ("io.husk.Diag.Environ", true),
    ("io.husk.Diag.Security", true),
];

impl Clients {
    /// `n` clients asking Status and ListProcesses in turn, each as fast as it is answered.
    /// The shim serves at most 32 connections at once; the others wait in its listen backlog,
    /// which is part of the load.
    pub fn hammer(socket: &Path, n: usize) -> Clients {
        Clients::start(socket, n, |socket, counters, stop| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let outcome = ask(socket, HAMMER_METHODS[i % HAMMER_METHODS.len()], json!({}));
                if matches!(outcome, Outcome::Unreachable) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                counters.count(&outcome);
                i += 1;
            }
        })
    }

    /// One client making `per_second` requests a second through every method; every tenth
    /// connection misbehaves instead: it hangs up halfway through writing its request, or
    /// right after writing a whole one without reading the reply.
    pub fn soak_mix(socket: &Path, per_second: u32) -> Clients {
        let interval = Duration::from_secs(1) / per_second.max(1);
        Clients::start(socket, 1, move |socket, counters, stop| {
            let mut next = Instant::now();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (method, with_pid) = SOAK_METHODS[i % SOAK_METHODS.len()];
                let parameters = if with_pid { json!({"pid": 1}) } else { json!({}) };
                if i % 10 == 9 {
                    hang_up(socket, method, &parameters, i % 20 == 9);
                    counters.aborted.fetch_add(1, Ordering::Relaxed);
                } else {
                    let outcome = ask(socket, method, parameters);
                    if matches!(outcome, Outcome::Unreachable) {
                        // The shim is always up during the soak: not reaching it is a failure.
                        counters.count(&Outcome::Failed(format!("{method}: cannot connect")));
                    } else {
                        counters.count(&outcome);
                    }
                }
                i += 1;
                next = (next + interval).max(Instant::now());
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    }

    fn start<F>(socket: &Path, n: usize, client: F) -> Clients
    where
        F: Fn(&str, &Counters, &AtomicBool) + Clone + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let threads = (0..n)
            .map(|_| {
                let (socket, counters, stop, client) = (
                    socket.display().to_string(),
                    counters.clone(),
                    stop.clone(),
                    client.clone(),
                );
                std::thread::spawn(move || client(&socket, &counters, &stop))
            })
            .collect();
        Clients {
            stop,
            counters,
            threads,
        }
    }

    pub fn tally(&self) -> Tally {
        Tally {
            served: self.counters.served.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
            aborted: self.counters.aborted.load(Ordering::Relaxed),
        }
    }

    /// Stops every client after its current request and returns the final counts.
    pub fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.tally()
    }
}

/// A client that hangs up mid-request: with `partial`, after half of the request's bytes;
/// otherwise after the whole request, before reading the reply.
fn hang_up(socket: &str, method: &str, parameters: &Value, partial: bool) {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return;
    };
    let request = husk_proto::encode(&husk_proto::Call::new(method, parameters.clone()));
    let end = if partial { request.len() / 2 } else { request.len() };
    let _ = stream.write_all(&request[..end]);
}
