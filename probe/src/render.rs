//! Tables for people. Each command's reply is read back into its typed message and laid out in
//! aligned columns; `-o json` bypasses all of this.

use husk_proto::{
    Cgroup, Checks, Environ, Fds, Info, LastExit, Limits, Mounts, NetConfig, Processes, Security, Sockets, Status,
};
use serde_json::Value;

/// Aligned columns; the last column is not padded.
pub fn columns(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".to_string(), |x| x.to_string())
}

fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

fn pairs(rows: Vec<(&str, String)>) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.into_iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
}

fn parse<T: for<'de> husk_proto::serde::Deserialize<'de> + Default>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

pub fn healthy(v: &Value) -> bool {
    let c: Checks = parse(v);
    c.app_running && c.checks.iter().all(|c| c.ok == Some(true))
}

pub fn table(command: &str, v: &Value) -> String {
    match command {
        "info" => {
            let i: Info = parse(v);
            pairs(vec![
                ("shim", i.shim_version),
                ("interface", format!("io.husk.Diag {}", i.interface_version)),
                ("kernel", i.kernel.release),
                ("landlock abi", opt(&i.kernel.landlock_abi)),
                ("seccomp", i.kernel.seccomp.to_string()),
                ("cgroup", i.kernel.cgroup),
                ("socket", i.socket),
            ])
        }
        "status" => {
            let s: Status = parse(v);
            let mut rows = vec![
                ("shim pid", s.shim_pid.to_string()),
                ("mode", s.mode),
                ("uptime", format!("{:.0}s", s.uptime_seconds)),
            ];
            if let Some(c) = &s.child {
                rows.push(("app pid", c.pid.to_string()));
                rows.push(("app state", c.state.clone()));
                rows.push(("app command", c.argv.join(" ")));
                rows.push(("app started", format!("{} (unix time)", c.started_at)));
            }
            rows.push(("reaped", s.reaped.to_string()));
            let fwd: Vec<String> = s.signals_forwarded.iter().map(|(k, n)| format!("{k}={n}")).collect();
            rows.push(("forwarded", if fwd.is_empty() { "none".into() } else { fwd.join(" ") }));
            rows.push(("last exit", s.last_exit.unwrap_or_else(|| "-".into())));
            pairs(rows)
        }
        "ps" => {
            let p: Processes = parse(v);
            let mut rows = Vec::new();
            for (proc_, raw) in p
                .processes
                .iter()
                .zip(v.get("processes").and_then(Value::as_array).into_iter().flatten())
            {
                rows.push(vec![
                    proc_.pid.to_string(),
                    proc_.ppid.to_string(),
                    proc_.uid.to_string(),
                    proc_.gid.to_string(),
                    proc_.state.clone(),
                    proc_.threads.to_string(),
                    bytes(proc_.rss_bytes),
                    format!("{:.2}", proc_.cpu_seconds),
                    if proc_.in_app { "*" } else { "" }.into(),
                    if proc_.cmdline.is_empty() {
                        format!("[{}]", proc_.comm)
                    } else {
                        proc_.cmdline.clone()
                    },
                ]);
                for t in raw.get("thread_list").and_then(Value::as_array).into_iter().flatten() {
                    let field = |k: &str| {
                        t.get(k)
                            .map(|x| x.as_str().map_or(x.to_string(), String::from))
                            .unwrap_or_default()
                    };
                    rows.push(vec![
                        format!("  {}", field("tid")),
                        String::new(),
                        String::new(),
                        String::new(),
                        field("state"),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                        format!("  {}", field("comm")),
                    ]);
                }
            }
            columns(
                &["PID", "PPID", "UID", "GID", "S", "THR", "RSS", "CPU", "APP", "COMMAND"],
                &rows,
            )
        }
        "fds" => {
            let f: Fds = parse(v);
            let rows: Vec<Vec<String>> = f.fds.iter().map(|d| vec![d.fd.to_string(), d.target.clone()]).collect();
            columns(&["FD", "TARGET"], &rows)
        }
        "ports" => {
            let s: Sockets = parse(v);
            let rows: Vec<Vec<String>> = s
                .sockets
                .iter()
                .filter(|s| s.proto != "unix")
                .map(|s| {
                    vec![
                        s.proto.clone(),
                        s.state.clone(),
                        s.local.clone(),
                        s.remote.clone(),
                        opt(&s.pid),
                        opt(&s.comm),
                    ]
                })
                .collect();
            columns(&["PROTO", "STATE", "LOCAL", "REMOTE", "PID", "PROCESS"], &rows)
        }
        "net" => {
            let n: NetConfig = parse(v);
            let mut out = format!("hostname: {}\n\n", n.hostname);
            let rows: Vec<Vec<String>> = n
                .interfaces
                .iter()
                .map(|i| {
                    vec![
                        i.name.clone(),
                        i.state.clone(),
                        opt(&i.mtu),
                        i.mac.clone(),
                        i.addresses.join(" "),
                    ]
                })
                .collect();
            out += &columns(&["INTERFACE", "STATE", "MTU", "MAC", "ADDRESSES"], &rows);
            let rows: Vec<Vec<String>> = n
                .routes
                .iter()
                .map(|r| {
                    vec![
                        r.destination.clone(),
                        r.gateway.clone(),
                        r.interface.clone(),
                        r.metric.to_string(),
                    ]
                })
                .collect();
            out += "\n";
            out += &columns(&["DESTINATION", "GATEWAY", "INTERFACE", "METRIC"], &rows);
            out += &format!(
                "\n/etc/resolv.conf:\n{}",
                n.resolv_conf.unwrap_or_else(|| "(missing)\n".into())
            );
            out += &format!("\n/etc/hosts:\n{}", n.hosts.unwrap_or_else(|| "(missing)\n".into()));
            out
        }
        "env" => {
            let e: Environ = parse(v);
            e.variables
                .iter()
                .map(|var| format!("{}={}\n", var.name, var.value.as_deref().unwrap_or("<redacted>")))
                .collect()
        }
        "mounts" => {
            let m: Mounts = parse(v);
            let rows: Vec<Vec<String>> = m
                .mounts
                .iter()
                .map(|m| {
                    vec![
                        m.mountpoint.clone(),
                        m.fstype.clone(),
                        m.source.clone(),
                        m.options.clone(),
                    ]
                })
                .collect();
            columns(&["MOUNTPOINT", "TYPE", "SOURCE", "OPTIONS"], &rows)
        }
        "limits" => {
            let l: Limits = parse(v);
            let lim = |x: &Option<i64>| x.map_or("unlimited".to_string(), |n| n.to_string());
            let rows: Vec<Vec<String>> = l
                .limits
                .iter()
                .map(|l| vec![l.name.clone(), lim(&l.soft), lim(&l.hard), l.unit.clone()])
                .collect();
            columns(&["LIMIT", "SOFT", "HARD", "UNIT"], &rows)
        }
        "cgroup" => {
            let c: Cgroup = parse(v);
            let map = |m: &std::collections::BTreeMap<String, i64>| {
                m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
            };
            pairs(vec![
                ("version", c.version),
                ("path", c.path),
                ("memory.current", c.memory_current.map_or("-".into(), bytes)),
                ("memory.max", opt(&c.memory_max)),
                ("memory.peak", c.memory_peak.map_or("-".into(), bytes)),
                ("memory.events", map(&c.memory_events)),
                ("cpu.max", opt(&c.cpu_max)),
                ("cpu.stat", map(&c.cpu_stat)),
                ("pids.current", opt(&c.pids_current)),
                ("pids.max", opt(&c.pids_max)),
            ])
        }
        "security" => {
            let s: Security = parse(v);
            let ids = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(" ");
            let caps = |c: &husk_proto::CapSet| {
                if c.names.is_empty() {
                    "none".to_string()
                } else {
                    c.names.join(",")
                }
            };
            let mut rows = vec![
                ("pid", s.pid.to_string()),
                ("uid (r e s fs)", ids(&s.uids)),
                ("gid (r e s fs)", ids(&s.gids)),
                ("groups", ids(&s.groups)),
                ("CapEff", caps(&s.cap_effective)),
                ("CapPrm", caps(&s.cap_permitted)),
                ("CapInh", caps(&s.cap_inheritable)),
                ("CapAmb", caps(&s.cap_ambient)),
                ("CapBnd", caps(&s.cap_bounding)),
                ("NoNewPrivs", s.no_new_privs.to_string()),
                (
                    "Seccomp",
                    format!(
                        "{}{}",
                        s.seccomp,
                        s.seccomp_filters.map_or(String::new(), |n| format!(" ({n} filters)"))
                    ),
                ),
            ];
            if let Some(policy) = &s.policy {
                rows.push(("policy", serde_json::to_string(policy).unwrap_or_default()));
            }
            pairs(rows)
        }
        "last-exit" => {
            let l: LastExit = parse(v);
            match l.description {
                Some(d) if l.exited => format!("{d}\n"),
                _ => "the app is still running\n".into(),
            }
        }
        "health" => {
            let c: Checks = parse(v);
            let mut out = format!("app: {}\n", if c.app_running { "running" } else { "not running" });
            let rows: Vec<Vec<String>> = c
                .checks
                .iter()
                .map(|k| {
                    vec![
                        k.name.clone(),
                        k.kind.clone(),
                        k.target.clone(),
                        match k.ok {
                            Some(true) => "ok".into(),
                            Some(false) => "FAIL".into(),
                            None => "?".into(),
                        },
                        k.detail.clone(),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                out += &columns(&["CHECK", "KIND", "TARGET", "RESULT", "DETAIL"], &rows);
            }
            out += if healthy(v) { "healthy\n" } else { "unhealthy\n" };
            out
        }
        _ => format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = columns(
            &["A", "LONG"],
            &[vec!["xyz".into(), "1".into()], vec!["a".into(), "22".into()]],
        );
        assert_eq!(t, "A    LONG\nxyz  1\na    22\n");
    }

    #[test]
    fn health_needs_the_app_and_every_check() {
        let ok = serde_json::json!({"app_running": true, "checks": [{"name": "a", "kind": "tcp", "target": "x:1", "ok": true, "detail": "", "age_ms": 1}]});
        assert!(healthy(&ok));
        let bad = serde_json::json!({"app_running": true, "checks": [{"name": "a", "kind": "tcp", "target": "x:1", "ok": false, "detail": "", "age_ms": 1}]});
        assert!(!healthy(&bad));
        assert!(!healthy(&serde_json::json!({"app_running": false, "checks": []})));
        assert!(!healthy(&serde_json::json!("garbage")));
    }

    #[test]
    fn garbage_renders_without_panicking() {
        for cmd in [
            "info",
            "status",
            "ps",
            "fds",
            "ports",
            "net",
            "env",
            "mounts",
            "limits",
            "cgroup",
            "security",
            "last-exit",
            "health",
        ] {
            let _ = table(cmd, &serde_json::json!({"processes": 3}));
        }
    }
}
