//! `husk-bench`: husk against tini, dumb-init and catatonit, side by side in one run.
//!
//! Every init runs the same way in the same run, interleaved round by round, so that whatever
//! else the machine is doing weighs on all of them alike. Figures are medians (and p99 where
//! tails matter) with the ratio of husk to each peer. Each init runs as PID 1 of a fresh PID
//! namespace, as it does in a container. Needs root.
//!
//! usage: husk-bench [--quick] [--report PATH]
//!        husk-bench soak [--minutes N]
//!   --quick   a smoke run (few rounds) so the harness cannot rot; its figures mean little
//!   --report  also write the markdown report to PATH
//!   soak      the soak test (see soak.rs) for N minutes, default 60; not a benchmark

mod load;
mod measure;
mod pid1;
mod procfs;
mod report;
mod soak;

use std::path::{Path, PathBuf};

use report::Report;

/// One init under test: how to put it in front of a command.
#[derive(Clone)]
pub struct Init {
    pub name: &'static str,
    /// argv before the app's own argv; empty for "no init".
    pub prefix: Vec<String>,
    /// The file whose size is reported.
    pub binary: Option<PathBuf>,
}

impl Init {
    pub fn argv(&self, app: &[String]) -> Vec<String> {
        self.prefix.iter().chain(app).cloned().collect()
    }
}

pub struct Settings {
    pub quick: bool,
    pub bin_dir: PathBuf,
    pub work_dir: PathBuf,
}

impl Settings {
    pub fn rounds(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    pub fn helper(&self) -> String {
        self.bin_dir.join("husk-helper").display().to_string()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let report_path = args
        .iter()
        .position(|a| a == "--report")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("husk-bench: needs root (each init runs as PID 1 of a new PID namespace)");
        std::process::exit(2);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = root.join("target/x86_64-unknown-linux-musl/release");
    let work_dir = root.join("target/bench");
    std::fs::create_dir_all(&work_dir).expect("create target/bench");
    let settings = Settings {
        quick,
        bin_dir,
        work_dir,
    };

    let shim = settings.bin_dir.join("shim");
    for needed in [
        shim.clone(),
        settings.bin_dir.join("husk-helper"),
        settings.bin_dir.join("probe"),
    ] {
        if !needed.exists() {
            eprintln!(
                "husk-bench: {} is missing; run scripts/bench (it builds the static binaries)",
                needed.display()
            );
            std::process::exit(2);
        }
    }
    if args.first().is_some_and(|a| a == "soak") {
        let minutes = match args.iter().position(|a| a == "--minutes").map(|i| args.get(i + 1)) {
            None => 60.0,
            Some(n) => n
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|n| *n > 0.0)
                .unwrap_or_else(|| {
                    eprintln!("husk-bench: soak: --minutes needs a positive number");
                    std::process::exit(2)
                }),
        };
        std::process::exit(soak::run(&settings, minutes));
    }
    let true_static = measure::build_true_static(&settings.work_dir);

    // Like for like with the peers, which confine nothing: husk with its policy switched off.
    // The diagnostics socket stays on (it is on by default), at a path of the benchmark's own.
    let socket_path = settings.work_dir.join("husk.sock");
    let socket = socket_path.display().to_string();
    let husk = Init {
        name: "husk",
        prefix: [shim.display().to_string(), "--diag-socket".into(), socket.clone()]
            .into_iter()
            .chain(["--cap-keep", "all", "--allow-new-privs", "--seccomp", "off", "--"].map(String::from))
            .collect(),
        binary: Some(shim.clone()),
    };
    // What a hardened image runs: the default policy (all capabilities dropped, no_new_privs,
    // the default seccomp filter) plus a Landlock ruleset.
    let husk_policy = Init {
        name: "husk+policy",
        prefix: [shim.display().to_string(), "--diag-socket".into(), socket]
            .into_iter()
            .chain(["--log-level", "error", "--fs-ro", "/", "--fs-rw", "/tmp", "--"].map(String::from))
            .collect(),
        binary: None,
    };
    let mut inits = vec![husk];
    for (name, path, sep) in [
        ("tini", "/usr/bin/tini-static", true),
        ("catatonit", "/usr/bin/catatonit", true),
        ("dumb-init", "/usr/bin/dumb-init", false),
    ] {
        if Path::new(path).exists() {
            let mut prefix = vec![path.to_string()];
            if sep {
                prefix.push("--".into());
            }
            inits.push(Init {
                name,
                prefix,
                binary: Some(PathBuf::from(path)),
            });
        } else {
            eprintln!("husk-bench: {path} not found, leaving {name} out (scripts/bench installs it)");
        }
    }

    let mut report = Report::new(quick);
    report.sizes(&inits, &settings);
    eprintln!("start-up...");
    let with_policy: Vec<Init> = inits.iter().cloned().chain([husk_policy]).collect();
    report.startup(measure::startup(&with_policy, &true_static, &settings));
    eprintln!("idle footprint...");
    report.idle(measure::idle(&inits, &settings));
    eprintln!("zombie reaping...");
    report.reaping(measure::reaping(&inits, &settings));
    eprintln!("signal forwarding latency...");
    let idle_latency = measure::latency(&inits, &settings);
    // Items that only husk has: its diagnostics socket.
    let husk = &inits[0];
    report.latency(&idle_latency);
    eprintln!("signal forwarding latency under diagnostics load...");
    let loaded = measure::latency_under_load(husk, &socket_path, 50, &settings);
    report.latency_under_load(&idle_latency, loaded);
    eprintln!("shutdown...");
    report.shutdown(measure::shutdown(&inits, &settings));
    eprintln!("probe ps...");
    report.probe_ps(measure::probe_ps(husk, &socket_path, &settings));

    let text = report.render();
    print!("{text}");
    if let Some(path) = report_path {
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}
