//! The cgroup of a process: memory, CPU and pids accounting (v2; v1 where present).

use std::collections::BTreeMap;

use husk_proto::Cgroup;

use crate::{read_line, read_text};

const ROOT: &str = "/sys/fs/cgroup";

/// `KEY VALUE` lines (memory.events, cpu.stat).
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, i64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// (v2 path, v1 controller → path) from `/proc/PID/cgroup`.
pub fn parse_membership(text: &str) -> (Option<String>, BTreeMap<String, String>) {
    let mut v2 = None;
    let mut v1 = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else {
            for c in controllers.split(',') {
                v1.insert(c.to_string(), path.to_string());
            }
        }
    }
    (v2, v1)
}

/// Joins a cgroup path under the mount, refusing `..` (the path comes from /proc, but a
/// process in another cgroup namespace may see odd ones). Public for the fuzz targets.
pub fn under(base: &str, path: &str) -> Option<String> {
    if path.split('/').any(|p| p == "..") {
        return None;
    }
    Some(
        format!("{base}/{}", path.trim_start_matches('/'))
            .trim_end_matches('/')
            .to_string(),
    )
}

pub fn cgroup(pid: i32) -> Cgroup {
    let membership = read_text(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let (v2, v1) = parse_membership(&membership);
    let num = |p: String| read_line(p).and_then(|v| v.parse::<i64>().ok());
    if std::path::Path::new(&format!("{ROOT}/cgroup.controllers")).exists() {
        let path = v2.unwrap_or_else(|| "/".into());
        let Some(dir) = under(ROOT, &path) else {
            return Cgroup {
                version: "v2".into(),
                path,
                ..Cgroup::default()
            };
        };
        return Cgroup {
            version: "v2".into(),
            memory_current: num(format!("{dir}/memory.current")),
            memory_max: read_line(format!("{dir}/memory.max")),
            memory_peak: num(format!("{dir}/memory.peak")),
            memory_events: read_text(format!("{dir}/memory.events"))
                .map(|t| parse_flat_keyed(&t))
                .unwrap_or_default(),
            cpu_max: read_line(format!("{dir}/cpu.max")),
            cpu_stat: read_text(format!("{dir}/cpu.stat"))
                .map(|t| parse_flat_keyed(&t))
                .unwrap_or_default(),
            pids_current: num(format!("{dir}/pids.current")),
            pids_max: read_line(format!("{dir}/pids.max")),
            path,
        };
    }
    if v1.is_empty() {
        return Cgroup {
            version: "none".into(),
            ..Cgroup::default()
        };
    }
    let dir = |controller: &str| {
        v1.get(controller)
            .and_then(|p| under(&format!("{ROOT}/{controller}"), p))
    };
    let mem = dir("memory");
    let cpu = dir("cpu").or_else(|| dir("cpu,cpuacct"));
    let pids = dir("pids");
    let file = |d: &Option<String>, f: &str| d.as_ref().map(|d| format!("{d}/{f}"));
    Cgroup {
        version: "v1".into(),
        path: v1.get("memory").cloned().unwrap_or_default(),
        memory_current: file(&mem, "memory.usage_in_bytes").and_then(num),
        memory_max: file(&mem, "memory.limit_in_bytes").and_then(read_line),
        memory_peak: file(&mem, "memory.max_usage_in_bytes").and_then(num),
        memory_events: file(&mem, "memory.oom_control")
            .and_then(|p| read_text(p).ok())
            .map(|t| parse_flat_keyed(&t))
            .unwrap_or_default(),
        cpu_max: match (
            file(&cpu, "cpu.cfs_quota_us").and_then(read_line),
            file(&cpu, "cpu.cfs_period_us").and_then(read_line),
        ) {
            (Some(q), Some(p)) => Some(format!("{} {p}", if q == "-1" { "max" } else { &q })),
            _ => None,
        },
        cpu_stat: file(&cpu, "cpu.stat")
            .and_then(|p| read_text(p).ok())
            .map(|t| parse_flat_keyed(&t))
            .unwrap_or_default(),
        pids_current: file(&pids, "pids.current").and_then(num),
        pids_max: file(&pids, "pids.max").and_then(read_line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership() {
        let (v2, v1) = parse_membership("12:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/system.slice/x\nbad\n");
        assert_eq!(v2.as_deref(), Some("/system.slice/x"));
        assert_eq!(v1.get("cpuacct").map(String::as_str), Some("/docker/abc"));
        assert_eq!(under(ROOT, "/a/../b"), None);
        assert_eq!(under(ROOT, "/").unwrap(), ROOT);
    }

    #[test]
    fn keyed() {
        let m = parse_flat_keyed("low 0\noom 2\noom_kill 1\nweird\nx y\n");
        assert_eq!(m.get("oom_kill"), Some(&1));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn own_cgroup_reads() {
        let c = cgroup(std::process::id() as i32);
        assert!(["v1", "v2", "none"].contains(&c.version.as_str()));
    }
}
