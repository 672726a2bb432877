//! The markdown report: medians, tails and the ratio of husk to each peer.

use std::fmt::Write;

use crate::measure::{Idle, PsTimes, Samples, UnderLoad};
use crate::{Init, Settings};

pub struct Report {
    quick: bool,
    sections: Vec<String>,
    headline: Vec<(String, String)>,
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// husk's figure over the peer's: below 1 means husk is smaller or faster.
fn ratio(husk: f64, peer: f64) -> String {
    if peer > 0.0 && husk.is_finite() && peer.is_finite() {
        format!("{:.2}", husk / peer)
    } else {
        "–".into()
    }
}

impl Report {
    pub fn new(quick: bool) -> Report {
        Report {
            quick,
            sections: Vec::new(),
            headline: Vec::new(),
        }
    }

    /// A table of one number per init with the husk/peer ratio column.
    fn table(&mut self, title: &str, unit: &str, rows: &[(&str, f64)], decimals: usize) {
        let husk = rows.iter().find(|(n, _)| *n == "husk").map_or(f64::NAN, |r| r.1);
        let mut out = format!("### {title}\n\n| init | {unit} | husk ÷ init |\n|---|---:|---:|\n");
        for (name, value) in rows {
            let _ = writeln!(
                out,
                "| {name} | {value:.decimals$} | {} |",
                if *name == "husk" {
                    "1.00".into()
                } else {
                    ratio(husk, *value)
                }
            );
        }
        self.sections.push(out);
        let peers: Vec<String> = rows
            .iter()
            .filter(|(n, _)| *n != "husk")
            .map(|(n, v)| format!("{n} {}", ratio(husk, *v)))
            .collect();
        self.headline.push((
            format!("{title} ({unit})"),
            format!("{husk:.decimals$} (husk ÷ peer: {})", peers.join(", ")),
        ));
    }

    pub fn sizes(&mut self, inits: &[Init], settings: &Settings) {
        let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len() as f64).unwrap_or(f64::NAN);
        let rows: Vec<(&str, f64)> = inits
            .iter()
            .filter_map(|i| i.binary.as_ref().map(|b| (i.name, size(b))))
            .collect();
        self.table("Binary size", "bytes", &rows, 0);
        let probe = settings.bin_dir.join("probe");
        if let Some(last) = self.sections.last_mut() {
            let _ = writeln!(last, "\n`probe` (the client, not in PID 1's memory): {} bytes. dumb-init is dynamically linked; the others are static.", size(&probe));
        }
    }

    pub fn startup(&mut self, samples: Vec<Samples>) {
        let base = samples
            .iter()
            .find(|s| s.name == "none")
            .map_or(f64::NAN, |s| median(&s.values));
        let added = |s: &Samples| median(&s.values) - base;
        // The policy variant is reported, but the table compares like with like.
        let rows: Vec<(&str, f64)> = samples
            .iter()
            .filter(|s| s.name != "none" && s.name != "husk+policy")
            .map(|s| (s.name, added(s)))
            .collect();
        self.table(
            "Start-up added over a bare static `true`, as PID 1 (median)",
            "µs",
            &rows,
            0,
        );
        let Some(last) = self.sections.last_mut() else { return };
        if let Some(policy) = samples.iter().find(|s| s.name == "husk+policy") {
            let _ = writeln!(
                last,
                "\nhusk with its default policy (capabilities dropped, no_new_privs, seccomp default) and a \
                 Landlock ruleset (`--fs-ro / --fs-rw /tmp`): {:.0} µs added.",
                added(policy)
            );
        }
        let rounds = samples[0].values.len();
        let _ = writeln!(
            last,
            "\nBare `true-static` as PID 1: median {base:.0} µs over {rounds} rounds; raw medians:"
        );
        for s in &samples {
            let _ = writeln!(
                last,
                "- {}: {:.0} µs (p99 {:.0})",
                s.name,
                median(&s.values),
                percentile(&s.values, 99.0)
            );
        }
    }

    pub fn idle(&mut self, idle: Vec<Idle>) {
        let window = idle.first().map_or(0, |i| i.window.as_secs());
        let mut out = format!(
            "### Idle footprint of PID 1 wrapping a sleeping app\n\n| init | VmRSS kB | RssAnon kB | Pss kB | context switches in {window} s |\n|---|---:|---:|---:|---:|\n"
        );
        for i in &idle {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                i.name, i.rss_kb, i.anon_kb, i.pss_kb, i.switches
            );
        }
        self.sections.push(out);
        let rows: Vec<(&str, f64)> = idle.iter().map(|i| (i.name, i.pss_kb as f64)).collect();
        let husk = rows.iter().find(|r| r.0 == "husk").map_or(f64::NAN, |r| r.1);
        let peers: Vec<String> = rows
            .iter()
            .filter(|r| r.0 != "husk")
            .map(|(n, v)| format!("{n} {}", ratio(husk, *v)))
            .collect();
        self.headline.push((
            "Idle Pss (kB)".into(),
            format!("{husk:.0} (husk ÷ peer: {})", peers.join(", ")),
        ));
        let wakes = idle.iter().find(|i| i.name == "husk").map_or(0, |i| i.switches);
        self.headline
            .push((format!("Idle wake-ups in {window} s"), wakes.to_string()));
    }

    pub fn reaping(&mut self, (n, samples): (usize, Vec<Samples>)) {
        let rows: Vec<(&str, f64)> = samples.iter().map(|s| (s.name, median(&s.values))).collect();
        self.table(
            &format!("Draining {n} ready zombies until the init has exited (median)"),
            "ms",
            &rows,
            1,
        );
        if let Some(last) = self.sections.last_mut() {
            for (name, ms) in &rows {
                let _ = writeln!(last, "- {name}: {:.0} zombies reaped per second", n as f64 / (ms / 1e3));
            }
        }
    }

    pub fn latency(&mut self, results: &[(Samples, usize)]) {
        let mut out = String::from("### Signal forwarding latency, idle (SIGUSR1 to PID 1 until the app has it)\n\n| init | median µs | p99 µs | lost | husk ÷ init (median) |\n|---|---:|---:|---:|---:|\n");
        let husk = results
            .iter()
            .find(|(s, _)| s.name == "husk")
            .map_or(f64::NAN, |(s, _)| median(&s.values));
        for (s, lost) in results {
            let m = median(&s.values);
            let _ = writeln!(
                out,
                "| {} | {m:.0} | {:.0} | {lost} | {} |",
                s.name,
                percentile(&s.values, 99.0),
                ratio(husk, m)
            );
        }
        self.sections.push(out);
        let peers: Vec<String> = results
            .iter()
            .filter(|(s, _)| s.name != "husk")
            .map(|(s, _)| format!("{} {}", s.name, ratio(husk, median(&s.values))))
            .collect();
        self.headline.push((
            "Signal latency, median (µs)".into(),
            format!("{husk:.0} (husk ÷ peer: {})", peers.join(", ")),
        ));
    }

    /// husk idle and under load, with the peers' idle figures (from `latency`) for reference.
    pub fn latency_under_load(&mut self, idle: &[(Samples, usize)], loaded: UnderLoad) {
        let per_second = loaded.load.served as f64 / loaded.window.as_secs_f64();
        let mut out = format!(
            "### Signal forwarding latency while {} clients hammer husk's diagnostics socket\n\n\
             Each client is a thread of the benchmark asking Status and ListProcesses in turn, a new \
             connection per request, as fast as it is answered (the shim serves 32 connections at once; \
             the rest wait in its backlog). The namespace has its own /proc, as a container has. \
             **The peers have no diagnostics socket**: their rows are the idle run above, for reference.\n\n\
             | init | load | median µs | p99 µs | lost |\n|---|---|---:|---:|---:|\n",
            loaded.clients
        );
        let row = |out: &mut String, name: &str, load: &str, s: &Samples, lost: usize| {
            let _ = writeln!(
                out,
                "| {name} | {load} | {:.0} | {:.0} | {lost} |",
                median(&s.values),
                percentile(&s.values, 99.0)
            );
        };
        if let Some((s, lost)) = idle.iter().find(|(s, _)| s.name == "husk") {
            row(&mut out, "husk", "idle", s, *lost);
        }
        row(
            &mut out,
            "husk",
            &format!(
                "{} clients: {} requests served ({per_second:.0}/s), {} failed",
                loaded.clients, loaded.load.served, loaded.load.errors
            ),
            &loaded.latency,
            loaded.lost,
        );
        for (s, lost) in idle.iter().filter(|(s, _)| s.name != "husk") {
            row(&mut out, s.name, "idle (no socket)", s, *lost);
        }
        self.sections.push(out);
        self.headline.push((
            format!(
                "Signal latency under {} diagnostics clients, median (µs)",
                loaded.clients
            ),
            format!(
                "{:.0} (p99 {:.0}; {per_second:.0} requests/s served)",
                median(&loaded.latency.values),
                percentile(&loaded.latency.values, 99.0)
            ),
        ));
    }

    pub fn probe_ps(&mut self, times: Vec<PsTimes>) {
        let mut out = String::from(
            "### `probe ps` round trip, and procps' `ps`\n\n\
             The namespace has its own /proc and holds the shim, the app and the app's sleeping children. \
             `probe ps`: the whole invocation, table output to /dev/null. ListProcesses: the varlink call \
             alone, from the benchmark. Standalone: `probe ps` with no shim to ask, reading the namespace's \
             /proc itself. procps: `ps -e -o pid,ppid,euid,egid,s,nlwp,rss,time,args` (probe's columns) \
             in the same namespace, the tool a debug container would bring.\n\n\
             | processes | probe ps median ms | p99 ms | ListProcesses median ms | p99 ms | standalone median ms | p99 ms | procps ps median ms | p99 ms | probe ps ÷ procps |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for t in &times {
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                t.processes,
                median(&t.probe),
                percentile(&t.probe, 99.0),
                median(&t.call),
                percentile(&t.call, 99.0),
                median(&t.standalone),
                percentile(&t.standalone, 99.0),
                median(&t.procps),
                percentile(&t.procps, 99.0),
                median(&t.probe) / median(&t.procps)
            );
        }
        self.sections.push(out);
        for t in &times {
            self.headline.push((
                format!("`probe ps` with {} processes, median (ms)", t.processes),
                format!(
                    "{:.2} (standalone: {:.2}; procps ps: {:.2}, probe ÷ procps {:.2})",
                    median(&t.probe),
                    median(&t.standalone),
                    median(&t.procps),
                    median(&t.probe) / median(&t.procps)
                ),
            ));
        }
    }

    pub fn shutdown(&mut self, samples: Vec<Samples>) {
        let rows: Vec<(&str, f64)> = samples.iter().map(|s| (s.name, median(&s.values))).collect();
        self.table(
            "SIGTERM to PID 1 until it has exited, app exits at once (median)",
            "ms",
            &rows,
            2,
        );
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.quick {
            out.push_str("> Quick smoke run (`--quick`): few rounds; the figures only show the harness works.\n\n");
        }
        out.push_str("## Headline\n\n| metric | husk |\n|---|---|\n");
        for (metric, value) in &self.headline {
            let _ = writeln!(out, "| {metric} | {value} |");
        }
        out.push('\n');
        for section in &self.sections {
            out.push_str(section);
            out.push('\n');
        }
        out
    }
}
