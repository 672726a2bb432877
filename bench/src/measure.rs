//! The measurements. Each returns raw samples per init; `report` turns them into medians and
//! ratios.

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::load::{self, Clients, Outcome, Tally};
use crate::pid1::{self, Pid1};
use crate::procfs::{children, state, status_field};
use crate::{Init, Settings};

/// Samples of one init for one metric.
pub struct Samples {
    pub name: &'static str,
    pub values: Vec<f64>,
}

/// A 4 KB `true` with no libc at all: the floor every init's start-up is measured against.
pub fn build_true_static(work_dir: &Path) -> PathBuf {
    let source = work_dir.join("true.S");
    let binary = work_dir.join("true-static");
    std::fs::write(
        &source,
        ".globl _start\n_start:\n  mov $60, %eax\n  xor %edi, %edi\n  syscall\n",
    )
    .unwrap();
    let status = std::process::Command::new("cc")
        .args(["-nostdlib", "-static", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("run cc to build true-static");
    assert!(status.success(), "building true-static failed");
    binary
}

fn cstrings(argv: &[String]) -> Vec<CString> {
    argv.iter().map(|a| CString::new(a.as_str()).unwrap()).collect()
}

/// Start-up: `INIT -- true-static` against bare `true-static`, as PID 1, interleaved. The first
/// samples list is the bare baseline ("none").
pub fn startup(inits: &[Init], true_static: &Path, settings: &Settings) -> Vec<Samples> {
    let app = vec![true_static.display().to_string()];
    let mut variants: Vec<(&'static str, Vec<CString>)> = vec![("none", cstrings(&app))];
    variants.extend(inits.iter().map(|i| (i.name, cstrings(&i.argv(&app)))));
    let rounds = settings.rounds(2000, 30);
    let mut samples: Vec<Samples> = variants
        .iter()
        .map(|(name, _)| Samples {
            name,
            values: Vec::new(),
        })
        .collect();
    // Warm the page cache and the binaries' first-exec costs.
    for (_, argv) in &variants {
        pid1::time_run(argv);
    }
    for round in 0..rounds {
        // Rotate the order so no init always runs right after the same neighbour.
        for k in 0..variants.len() {
            let i = (round + k) % variants.len();
            let took = pid1::time_run(&variants[i].1);
            samples[i].values.push(took.as_secs_f64() * 1e6);
        }
    }
    samples
}

/// Idle footprint of PID 1 wrapping a sleeping app: (VmRSS kB, RssAnon kB, Pss kB, context
/// switches over the window). All inits idle side by side through the same window.
pub struct Idle {
    pub name: &'static str,
    pub rss_kb: u64,
    pub anon_kb: u64,
    pub pss_kb: u64,
    pub switches: u64,
    pub window: Duration,
}

fn switches(pid: i32) -> u64 {
    status_field(pid, "status", "voluntary_ctxt_switches") + status_field(pid, "status", "nonvoluntary_ctxt_switches")
}

pub fn idle(inits: &[Init], settings: &Settings) -> Vec<Idle> {
    let app = vec![settings.helper(), "sleep".into()];
    let running: Vec<(&Init, Pid1)> = inits.iter().map(|i| (i, pid1::start(&i.argv(&app), false))).collect();
    std::thread::sleep(Duration::from_millis(500));
    let window = Duration::from_secs(if settings.quick { 1 } else { 10 });
    let before: Vec<u64> = running.iter().map(|(_, p)| switches(p.init)).collect();
    std::thread::sleep(window);
    let result = running
        .iter()
        .zip(before)
        .map(|((init, p), before)| Idle {
            name: init.name,
            rss_kb: status_field(p.init, "status", "VmRSS"),
            anon_kb: status_field(p.init, "status", "RssAnon"),
            pss_kb: status_field(p.init, "smaps_rollup", "Pss"),
            switches: switches(p.init) - before,
            window,
        })
        .collect();
    for (_, p) in &running {
        pid1::kill(p.init, libc::SIGKILL);
        pid1::wait(p.outer);
    }
    result
}

/// Reaping: the app leaves N orphans while the init is stopped, so N zombies are ready at
/// once; then the init is continued and timed until it has reaped them all and exited (the
/// app exits right after making them). Samples are milliseconds.
pub fn reaping(inits: &[Init], settings: &Settings) -> (usize, Vec<Samples>) {
    let n = settings.rounds(20_000, 500);
    let rounds = settings.rounds(3, 1);
    let app = vec![settings.helper(), "orphans-exit".into(), n.to_string()];
    let mut samples: Vec<Samples> = inits
        .iter()
        .map(|i| Samples {
            name: i.name,
            values: Vec::new(),
        })
        .collect();
    for _ in 0..rounds {
        for (i, init) in inits.iter().enumerate() {
            let mut run = pid1::start(&init.argv(&app), true);
            // Wait until the init has started the app, then freeze the init. (Not "exactly one
            // child": the app's first orphans may already have joined it and a poll can miss
            // every moment with exactly one. Those few are reaped before the clock starts.)
            wait_until(|| !children(run.init).is_empty() || state(run.init).is_none_or(|s| s == 'Z'));
            pid1::kill(run.init, libc::SIGSTOP);
            let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
            let created = lines.next().and_then(|l| l.ok()).unwrap_or_default();
            assert_eq!(created, format!("created {n}"), "{}: the app did not finish", init.name);
            // Every orphan and the app itself are zombies of the stopped init now.
            wait_until(|| children(run.init).iter().all(|&c| state(c) == Some('Z')));
            let start = Instant::now();
            pid1::kill(run.init, libc::SIGCONT);
            pid1::wait(run.outer);
            samples[i].values.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    (n, samples)
}

/// An app under an init that prints when each SIGUSR1 reached it.
struct LatencyApp<'a> {
    init: &'a Init,
    run: Pid1,
    lines: mpsc::Receiver<String>,
}

/// `start` is `pid1::start`, or `pid1::start_with_proc` when what the shim reads from /proc
/// matters.
fn start_latency_apps<'a>(
    inits: &'a [Init],
    settings: &Settings,
    start: fn(&[String], bool) -> Pid1,
) -> Vec<LatencyApp<'a>> {
    let app = vec![settings.helper(), "latency".into()];
    let mut running = Vec::new();
    for init in inits {
        let mut run = start(&init.argv(&app), true);
        let (tx, lines) = mpsc::channel::<String>();
        let out = run.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        assert_eq!(
            lines.recv_timeout(Duration::from_secs(10)).ok().as_deref(),
            Some("ready"),
            "{}: app not ready",
            init.name
        );
        running.push(LatencyApp { init, run, lines });
    }
    running
}

/// `count` rounds of one USR1 to each init in turn; the samples (µs) and the signals lost.
fn measure_latency(running: &[LatencyApp], count: usize) -> Vec<(Samples, usize)> {
    let mut results: Vec<(Samples, usize)> = running
        .iter()
        .map(|a| {
            (
                Samples {
                    name: a.init.name,
                    values: Vec::new(),
                },
                0,
            )
        })
        .collect();
    for round in 0..count {
        for k in 0..running.len() {
            let i = (round + k) % running.len();
            let app = &running[i];
            std::thread::sleep(Duration::from_millis(2));
            let sent = pid1::monotonic_ns();
            pid1::kill(app.run.init, libc::SIGUSR1);
            match app
                .lines
                .recv_timeout(Duration::from_secs(1))
                .ok()
                .and_then(|l| l.parse::<u128>().ok())
            {
                Some(at) => results[i].0.values.push(at.saturating_sub(sent) as f64 / 1e3),
                None => results[i].1 += 1,
            }
        }
    }
    results
}

fn stop_latency_apps(running: Vec<LatencyApp>) {
    for app in &running {
        pid1::kill(app.run.init, libc::SIGTERM);
        pid1::wait(app.run.outer);
    }
}

/// Signal forwarding latency: USR1 to PID 1 until the app has it, in microseconds, all inits
/// running side by side and taking turns. Returns the samples and how many signals were lost.
pub fn latency(inits: &[Init], settings: &Settings) -> Vec<(Samples, usize)> {
    let running = start_latency_apps(inits, settings, pid1::start);
    let results = measure_latency(&running, settings.rounds(400, 20));
    stop_latency_apps(running);
    results
}

/// Signal forwarding latency of husk while `clients` clients hammer its diagnostics socket.
pub struct UnderLoad {
    pub clients: usize,
    pub latency: Samples,
    pub lost: usize,
    /// Requests answered (and failed) while the signals were being timed.
    pub load: Tally,
    pub window: Duration,
}

/// As `latency`, for husk alone, with `clients` threads of this process asking its socket for
/// Status and ListProcesses as fast as it answers. The clients compete with everything else
/// for the machine's CPUs, as they would in a container. The namespace has its own /proc, as a
/// container has, so ListProcesses lists the namespace's few processes, not the host's.
pub fn latency_under_load(husk: &Init, socket: &Path, clients: usize, settings: &Settings) -> UnderLoad {
    let running = start_latency_apps(std::slice::from_ref(husk), settings, pid1::start_with_proc);
    let hammer = Clients::hammer(socket, clients);
    wait_until(|| hammer.tally().served >= clients as u64);
    let before = hammer.tally();
    let started = Instant::now();
    let (latency, lost) = measure_latency(&running, settings.rounds(400, 20))
        .pop()
        .expect("one init measured");
    let window = started.elapsed();
    let after = hammer.stop();
    stop_latency_apps(running);
    UnderLoad {
        clients,
        latency,
        lost,
        load: Tally {
            served: after.served - before.served,
            errors: after.errors - before.errors,
            aborted: 0,
        },
        window,
    }
}

/// `probe ps` against husk with a given number of processes in its PID namespace, in
/// milliseconds: the whole `probe ps` invocation (table to /dev/null), the varlink
/// ListProcesses call alone from this process, `probe ps` with no shim to ask (standalone,
/// reading the namespace's /proc itself), and procps' `ps` printing the same columns.
pub struct PsTimes {
    pub processes: usize,
    pub probe: Vec<f64>,
    pub call: Vec<f64>,
    pub standalone: Vec<f64>,
    pub procps: Vec<f64>,
}

/// procps' `ps` with probe's columns: pid, ppid, effective ids, state, threads, RSS, CPU time,
/// command line.
const PROCPS_ARGV: [&str; 4] = ["/usr/bin/ps", "-e", "-o", "pid,ppid,euid,egid,s,nlwp,rss,time,args"];

pub fn probe_ps(husk: &Init, socket: &Path, settings: &Settings) -> Vec<PsTimes> {
    [(10, settings.rounds(200, 5)), (2000, settings.rounds(50, 3))]
        .into_iter()
        .map(|(n, rounds)| probe_ps_with(n, rounds, husk, socket, settings))
        .collect()
}

fn probe_ps_with(processes: usize, rounds: usize, husk: &Init, socket: &Path, settings: &Settings) -> PsTimes {
    // The shim and the app are two of the namespace's processes; the app's children the rest.
    let app = vec![settings.helper(), "sleepers".into(), (processes - 2).to_string()];
    let mut run = pid1::start_with_proc(&husk.argv(&app), true);
    let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
    assert!(lines
        .next()
        .and_then(|l| l.ok())
        .is_some_and(|l| l.starts_with("ready")));
    let socket_text = socket.display().to_string();
    let list = || match load::ask(&socket_text, "io.husk.Diag.ListProcesses", serde_json::json!({})) {
        Outcome::Served(v) => v["processes"].as_array().map_or(0, Vec::len),
        _ => 0,
    };
    wait_until(|| list() == processes);

    // Every command runs inside the namespace (see `pid1::run_inside`), so that they differ
    // only in where the answer comes from: the standalone probe and procps' ps read the
    // namespace's own /proc.
    let time_command = |argv: &[&str]| {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let start = Instant::now();
        let status = pid1::run_inside(run.init, &argv);
        assert_eq!(status, 0, "{argv:?} failed");
        start.elapsed().as_secs_f64() * 1e3
    };
    let probe = settings.bin_dir.join("probe").display().to_string();
    let no_shim = settings.work_dir.join("no-shim.sock").display().to_string();
    let mut times = PsTimes {
        processes,
        probe: Vec::new(),
        call: Vec::new(),
        standalone: Vec::new(),
        procps: Vec::new(),
    };
    for _ in 0..rounds {
        times
            .probe
            .push(time_command(&[&probe, "--socket", &socket_text, "ps"]));
        let start = Instant::now();
        assert_eq!(list(), processes, "ListProcesses lists the namespace's processes");
        times.call.push(start.elapsed().as_secs_f64() * 1e3);
        times
            .standalone
            .push(time_command(&[&probe, "--socket", &no_shim, "ps"]));
        times.procps.push(time_command(&PROCPS_ARGV));
    }
    pid1::kill(run.init, libc::SIGTERM);
    pid1::wait(run.outer);
    times
}

/// Shutdown: SIGTERM to PID 1 until it has exited, with an app that exits at once on TERM.
/// Milliseconds. The namespace has its own /proc, as a container has: that is where the shim
/// looks for leftovers.
pub fn shutdown(inits: &[Init], settings: &Settings) -> Vec<Samples> {
    let app = vec![settings.helper(), "signals".into(), libc::SIGTERM.to_string()];
    let rounds = settings.rounds(200, 5);
    let mut samples: Vec<Samples> = inits
        .iter()
        .map(|i| Samples {
            name: i.name,
            values: Vec::new(),
        })
        .collect();
    for round in 0..rounds {
        for k in 0..inits.len() {
            let i = (round + k) % inits.len();
            let mut run = pid1::start_with_proc(&inits[i].argv(&app), true);
            let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
            assert_eq!(lines.next().and_then(|l| l.ok()).as_deref(), Some("ready"));
            std::thread::sleep(Duration::from_millis(5));
            let start = Instant::now();
            pid1::kill(run.init, libc::SIGTERM);
            pid1::wait(run.outer);
            samples[i].values.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    samples
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "benchmark step did not complete in 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
