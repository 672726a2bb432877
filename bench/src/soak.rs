//! `husk-bench soak [--minutes N]`: the shim as PID 1 of a fresh PID namespace (with its own
//! /proc, as in a container) under mixed load for N minutes, looking for leaks rather than
//! speed. The load is moderate on purpose (the machine may be shared):
//! - orphans: the app is a wrapper (`husk-helper soak-app`) that keeps starting short-lived
//!   generations of itself, each leaving orphans for PID 1 to reap, ~100 a second;
//! - signals: ~50 a second to PID 1, each forwarded to the app, which acknowledges it before the
//!   next is sent (so the kernel never merges two and every count must match);
//! - diagnostics: ~20 requests a second through every method, one in ten from a client that
//!   hangs up mid-request.
//!
//! The shim's RSS, descriptors and CPU time are printed at the start, every minute and at the
//! end. The soak fails (exit 1) if the shim ended early, its descriptors grew, its RSS grew by
//! more than `RSS_GROWTH_KB`, or the counters disagree: processes reaped against orphans made,
//! signals forwarded (the shim's Status) against signals sent and acknowledged, and any failed
//! diagnostics request. Signals from outside the soak (a shared machine) are reported as stray
//! and allowed for, not counted as the shim's fault.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use husk_proto::Status;
use serde_json::json;

use crate::load::{self, Clients, Outcome};
use crate::pid1::{self, Pid1};
use crate::procfs::{cpu_seconds, fd_count, state, status_field};
use crate::Settings;

const ORPHANS_PER_SECOND: u64 = 100;
const SIGNALS_PER_SECOND: u32 = 50;
const DIAG_PER_SECOND: u32 = 20;
/// Growth of the shim's resident memory allowed over the run: allocator slack for the largest
/// reply built so far, not a leak.
const RSS_GROWTH_KB: u64 = 512;
/// Signals the load sends, by the names the shim's Status counts them under. Standard signals
/// only: real-time numbers are named differently by glibc (this program) and musl (the shim).
const SIGNALS: [(i32, &str); 4] = [
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGWINCH, "SIGWINCH"),
    (libc::SIGALRM, "SIGALRM"),
];

/// The shim's footprint at one moment.
struct Sample {
    rss_kb: u64,
    fds: usize,
    cpu_s: f64,
}

fn sample(pid: i32) -> Sample {
    Sample {
        rss_kb: status_field(pid, "status", "VmRSS"),
        fds: fd_count(pid),
        cpu_s: cpu_seconds(pid),
    }
}

/// What the app has said on its stdout so far.
#[derive(Default)]
struct AppReport {
    orphans: AtomicU64,
    /// The final orphan count, once the app has stopped making them.
    stopped: Mutex<Option<u64>>,
}

/// Reads the app's lines: orphan counts into `report`, signal acknowledgements into `acks`.
fn read_app(run: &mut Pid1) -> (Arc<AppReport>, mpsc::Receiver<i32>) {
    let report = Arc::new(AppReport::default());
    let (tx, acks) = mpsc::channel();
    let out = run.stdout.take().expect("the app's stdout is captured");
    let shared = report.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let (word, n) = line.split_once(' ').unwrap_or((&line, ""));
            let Ok(n) = n.parse::<u64>() else { continue };
            match word {
                "orphans" => shared.orphans.store(n, Ordering::Relaxed),
                "stopped" => *shared.stopped.lock().unwrap() = Some(n),
                "sig" => {
                    let _ = tx.send(n as i32);
                }
                _ => {}
            }
        }
    });
    (report, acks)
}

/// Signals sent to PID 1 and acknowledged by the app, by name.
#[derive(Default)]
struct SignalCounts {
    sent: BTreeMap<&'static str, u64>,
    lost: u64,
    /// Signals the app acknowledged that the soak did not send, by number: on a shared machine
    /// another process may signal the shim or the app (seen once: two SIGUSR1 and a SIGTERM).
    /// They are reported, and allowed for when the shim's counters are compared.
    stray: BTreeMap<i32, u64>,
}

fn name_of(sig: i32) -> String {
    SIGNALS
        .iter()
        .chain(&[
            (libc::SIGHUP, "SIGHUP"),
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGINT, "SIGINT"),
        ])
        .find(|(n, _)| *n == sig)
        .map_or_else(|| format!("signal {sig}"), |(_, name)| name.to_string())
}

/// Sends `sig` to PID 1 and waits for the app to acknowledge it.
fn send_signal(init: i32, (sig, name): (i32, &'static str), acks: &mpsc::Receiver<i32>, counts: &mut SignalCounts) {
    pid1::kill(init, sig);
    *counts.sent.entry(name).or_insert(0) += 1;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match acks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(got) if got == sig => return,
            Ok(other) => {
                eprintln!("soak: the app acknowledged {} (not sent by the soak)", name_of(other));
                *counts.stray.entry(other).or_insert(0) += 1;
            }
            Err(_) => {
                eprintln!("soak: {name} sent to PID 1 did not reach the app within 5 s");
                counts.lost += 1;
                return;
            }
        }
    }
}

fn status(socket: &str) -> Option<Status> {
    match load::ask(socket, "io.husk.Diag.Status", json!({})) {
        Outcome::Served(v) => serde_json::from_value(v).ok(),
        _ => None,
    }
}

fn alive(pid: i32) -> bool {
    state(pid).is_some_and(|s| s != 'Z')
}

fn line(elapsed: Duration, s: &Sample, status: Option<&Status>, orphans: u64, sent: u64, diag: load::Tally) -> String {
    let (reaped, forwarded) = status.map_or((-1, -1), |st| (st.reaped, st.signals_forwarded.values().sum()));
    format!(
        "soak: {:>6.1} min  rss {} kB  fds {}  cpu {:.2} s  orphans {orphans}  reaped {reaped}  \
         signals sent {sent} forwarded {forwarded}  diag served {} errors {} aborted {}",
        elapsed.as_secs_f64() / 60.0,
        s.rss_kb,
        s.fds,
        s.cpu_s,
        diag.served,
        diag.errors,
        diag.aborted
    )
}

/// Runs the soak; returns the process exit code (0 passed, 1 failed).
pub fn run(settings: &Settings, minutes: f64) -> i32 {
    let socket_path = settings.work_dir.join("soak.sock");
    let socket = socket_path.display().to_string();
    let shim = settings.bin_dir.join("shim").display().to_string();
    // The shim as a user runs it: default policy for the app, diagnostics on.
    let argv = vec![
        shim,
        "--diag-socket".into(),
        socket.clone(),
        "--".into(),
        settings.helper(),
        "soak-app".into(),
        ORPHANS_PER_SECOND.to_string(),
    ];
    let duration = Duration::from_secs_f64(minutes * 60.0);
    println!(
        "soak: {minutes} min; ~{ORPHANS_PER_SECOND} orphans/s, ~{SIGNALS_PER_SECOND} signals/s, \
         ~{DIAG_PER_SECOND} diagnostics requests/s; {}",
        argv.join(" ")
    );
    let mut run = pid1::start_with_proc(&argv, true);
    let init = run.init;
    let (app, acks) = read_app(&mut run);
    let up = Instant::now();
    while status(&socket).is_none_or(|s| s.child.is_none()) {
        if up.elapsed() > Duration::from_secs(10) || !alive(init) {
            eprintln!("soak: the shim did not come up");
            pid1::kill(init, libc::SIGKILL);
            pid1::wait(run.outer);
            return 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Warm up: every method once, so whatever the shim sets up on first use is in the baseline.
    let warm = Clients::soak_mix(&socket_path, 1000);
    std::thread::sleep(Duration::from_millis(100));
    warm.stop();
    std::thread::sleep(Duration::from_secs(1));
    let start = sample(init);
    let warm_orphans = app.orphans.load(Ordering::Relaxed);
    println!(
        "{}",
        line(
            Duration::ZERO,
            &start,
            status(&socket).as_ref(),
            warm_orphans,
            0,
            load::Tally::default()
        )
    );

    let started = Instant::now();
    let clients = Clients::soak_mix(&socket_path, DIAG_PER_SECOND);
    let mut shim_died = false;
    let mut counts = SignalCounts::default();
    let mut next_report = started + Duration::from_secs(60);
    let mut round = 0usize;
    while started.elapsed() < duration {
        send_signal(init, SIGNALS[round % SIGNALS.len()], &acks, &mut counts);
        round += 1;
        std::thread::sleep(Duration::from_secs(1) / SIGNALS_PER_SECOND);
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(60);
            if !alive(init) {
                shim_died = true;
                break;
            }
            let sent = counts.sent.values().sum();
            let st = status(&socket);
            let orphans = app.orphans.load(Ordering::Relaxed);
            println!(
                "{}",
                line(
                    started.elapsed(),
                    &sample(init),
                    st.as_ref(),
                    orphans,
                    sent,
                    clients.tally()
                )
            );
        }
    }
    let diag = clients.stop();
    let elapsed = started.elapsed();

    let mut failures = Vec::new();
    if shim_died || !alive(init) {
        let code = pid1::wait(run.outer);
        failures.push(format!("the shim ended early, exit status {code}"));
        return report_verdict(&failures);
    }
    // Stop the orphans (SIGHUP, counted like any other signal), wait until the shim has reaped
    // the last of them, and let the last connections close before the final sample.
    send_signal(init, (libc::SIGHUP, "SIGHUP"), &acks, &mut counts);
    let deadline = Instant::now() + Duration::from_secs(10);
    let orphans = loop {
        if let Some(n) = *app.stopped.lock().unwrap() {
            break Some(n);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let orphans = orphans.unwrap_or_else(|| {
        failures.push("the app did not report its final orphan count".into());
        app.orphans.load(Ordering::Relaxed)
    });
    let mut last = status(&socket);
    while last.as_ref().is_some_and(|s| (s.reaped as u64) < orphans) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        last = status(&socket);
    }
    std::thread::sleep(Duration::from_secs(2));
    let end = sample(init);
    let last = status(&socket);
    let sent: u64 = counts.sent.values().sum();
    println!("{}", line(elapsed, &end, last.as_ref(), orphans, sent, diag));

    match &last {
        None => failures.push("the final Status request failed".into()),
        Some(st) => {
            if st.reaped as u64 != orphans {
                failures.push(format!("reaped {} but the app made {orphans} orphans", st.reaped));
            }
            // Every signal sent must have been forwarded; a stray one may have been forwarded
            // too (sent to the shim) or not (sent to the app directly).
            let stray_named = |name: &str| -> u64 {
                counts
                    .stray
                    .iter()
                    .filter(|(sig, _)| name_of(**sig) == name)
                    .map(|(_, n)| n)
                    .sum()
            };
            for (name, &n) in &st.signals_forwarded {
                let (sent, stray) = (counts.sent.get(name.as_str()).copied().unwrap_or(0), stray_named(name));
                if !(sent..=sent + stray).contains(&(n as u64)) {
                    failures.push(format!("{name}: sent {sent} (and {stray} stray), forwarded {n}"));
                }
            }
            for (name, &n) in &counts.sent {
                if !st.signals_forwarded.contains_key(*name) {
                    failures.push(format!("{name}: sent {n}, never forwarded"));
                }
            }
        }
    }
    if counts.lost > 0 {
        failures.push(format!("{} signals did not reach the app", counts.lost));
    }
    if diag.errors > 0 {
        failures.push(format!("{} diagnostics requests failed", diag.errors));
    }
    if end.fds > start.fds {
        failures.push(format!("descriptors grew from {} to {}", start.fds, end.fds));
    }
    if end.rss_kb > start.rss_kb + RSS_GROWTH_KB {
        failures.push(format!(
            "RSS grew from {} kB to {} kB (more than {RSS_GROWTH_KB} kB)",
            start.rss_kb, end.rss_kb
        ));
    }

    // The app exits 0 on SIGTERM; so must the shim.
    pid1::kill(init, libc::SIGTERM);
    let code = pid1::wait(run.outer);
    if code != 0 {
        failures.push(format!("the shim exited with status {code} after SIGTERM"));
    }

    println!("\n| | start | end |\n|---|---:|---:|");
    println!("| VmRSS kB | {} | {} |", start.rss_kb, end.rss_kb);
    println!("| open descriptors | {} | {} |", start.fds, end.fds);
    println!(
        "| CPU time, s (user + system) | {:.2} | {:.2} |",
        start.cpu_s, end.cpu_s
    );
    println!("\nduration {:.1} min", elapsed.as_secs_f64() / 60.0);
    println!(
        "orphans made {orphans}, reaped {}",
        last.as_ref().map_or(-1, |s| s.reaped)
    );
    for (name, n) in &counts.sent {
        let forwarded = last.as_ref().and_then(|s| s.signals_forwarded.get(*name).copied());
        println!("{name}: sent {n}, forwarded {}", forwarded.unwrap_or(0));
    }
    println!("signals lost: {}", counts.lost);
    for (sig, n) in &counts.stray {
        println!(
            "stray (not sent by the soak, acknowledged by the app): {} × {n}",
            name_of(*sig)
        );
    }
    println!(
        "diagnostics: {} served, {} errors, {} clients hung up mid-request",
        diag.served, diag.errors, diag.aborted
    );
    report_verdict(&failures)
}

fn report_verdict(failures: &[String]) -> i32 {
    if failures.is_empty() {
        println!("verdict: PASS");
        0
    } else {
        for f in failures {
            println!("verdict: FAIL: {f}");
        }
        1
    }
}
