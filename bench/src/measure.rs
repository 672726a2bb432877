//! The measurements. Each returns raw samples per init; `report` turns them into medians and
//! ratios.

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// Signal forwarding latency: USR1 to PID 1 until the app has it, in microseconds, all inits
/// running side by side and taking turns. Returns the samples and how many signals were lost.
pub fn latency(inits: &[Init], settings: &Settings) -> Vec<(Samples, usize)> {
    let app = vec![settings.helper(), "latency".into()];
    let count = settings.rounds(400, 20);
    let mut running = Vec::new();
    for init in inits {
        let mut run = pid1::start(&init.argv(&app), true);
        let (tx, rx) = mpsc::channel::<String>();
        let out = run.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).ok().as_deref(),
            Some("ready"),
            "{}: app not ready",
            init.name
        );
        running.push((init, run, rx));
    }
    let mut results: Vec<(Samples, usize)> = inits
        .iter()
        .map(|i| {
            (
                Samples {
                    name: i.name,
                    values: Vec::new(),
                },
                0,
            )
        })
        .collect();
    for round in 0..count {
        for k in 0..running.len() {
            let i = (round + k) % running.len();
            let (_, run, rx) = &running[i];
            std::thread::sleep(Duration::from_millis(2));
            let sent = pid1::monotonic_ns();
            pid1::kill(run.init, libc::SIGUSR1);
            match rx
                .recv_timeout(Duration::from_secs(1))
                .ok()
                .and_then(|l| l.parse::<u128>().ok())
            {
                Some(at) => results[i].0.values.push(at.saturating_sub(sent) as f64 / 1e3),
                None => results[i].1 += 1,
            }
        }
    }
    for (_, run, _) in &running {
        pid1::kill(run.init, libc::SIGTERM);
        pid1::wait(run.outer);
    }
    results
}

/// Shutdown: SIGTERM to PID 1 until it has exited, with an app that exits at once on TERM.
/// Milliseconds.
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
            let mut run = pid1::start(&inits[i].argv(&app), true);
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
