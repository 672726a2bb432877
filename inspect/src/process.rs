//! Per-process views: the process table, threads, descriptors, limits, mounts, environment,
//! and security state.

use std::collections::{HashMap, HashSet};
use std::io;

use husk_proto::{CapSet, EnvVar, Fd, KernelFeatures, Limit, Mount, Process, Security, Thread, CMDLINE_CAP};

use crate::{read_capped, read_line, read_text, sys, PidFiles, MAX_FILE};

/// The fields of `/proc/PID/stat` that inspection uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub utime: u64,
    pub stime: u64,
    pub threads: i64,
    pub starttime: u64,
    pub rss_pages: i64,
}

/// Parses `/proc/PID/stat`. The command name sits in parentheses and may itself contain spaces
/// and parentheses, so the fields after it are found from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text.get(..open)?.trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    let f: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<i64>().ok());
    Some(Stat {
        pid,
        comm,
        state: f.first()?.chars().next()?,
        ppid: num(1)? as i32,
        utime: num(11).unwrap_or(0).max(0) as u64,
        stime: num(12).unwrap_or(0).max(0) as u64,
        threads: num(17).unwrap_or(0),
        starttime: num(19).unwrap_or(0).max(0) as u64,
        rss_pages: num(21).unwrap_or(0),
    })
}

/// `Key:\tvalue` lines of `/proc/PID/status`.
pub fn parse_status(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn numbers(value: Option<&&str>) -> Vec<i64> {
    value
        .map(|v| v.split_ascii_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// Boot time in seconds since the epoch (`btime` in /proc/stat).
pub fn boot_time() -> i64 {
    read_text("/proc/stat")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
}

fn cpu_seconds(stat: &Stat, ticks: u64) -> f64 {
    (stat.utime + stat.stime) as f64 / ticks as f64
}

/// A cmdline's NUL-separated arguments joined by spaces.
fn command_line(text: &str) -> String {
    text.trim_end_matches('\0').replace('\0', " ")
}

/// The effective uid and gid from `/proc/PID/status` (the second of each id line), -1 when absent.
pub fn effective_ids(status: &str) -> (i64, i64) {
    let effective = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_ascii_whitespace().nth(1)?.parse::<u32>().ok())
            .map_or(-1, i64::from)
    };
    (effective("Uid"), effective("Gid"))
}

/// The whole process table (processes that vanish during the scan are left out).
pub fn list_processes() -> Vec<Process> {
    let ticks = sys::clock_ticks();
    let page = sys::page_size() as i64;
    let boot = boot_time();
    let mut files = PidFiles::new();
    crate::pids()
        .into_iter()
        .filter_map(|pid| {
            let stat = parse_stat(&files.read(pid, "stat", MAX_FILE).ok()?)?;
            let (uid, gid) = files
                .read(pid, "status", MAX_FILE)
                .map(|status| effective_ids(&status))
                .unwrap_or((-1, -1));
            let cmdline = files
                .read(pid, "cmdline", CMDLINE_CAP)
                .map(|text| command_line(&text))
                .unwrap_or_default();
            Some(Process {
                pid: pid as i64,
                ppid: stat.ppid as i64,
                uid,
                gid,
                state: stat.state.to_string(),
                cmdline,
                threads: stat.threads,
                rss_bytes: stat.rss_pages.max(0) * page,
                cpu_seconds: cpu_seconds(&stat, ticks),
                start_time: boot + (stat.starttime / ticks) as i64,
                in_app: false,
                comm: stat.comm,
            })
        })
        .collect()
}

/// The pids of `root` and all its descendants within `processes` (pid, ppid pairs). Linear in
/// the table: the shim marks the app's tree on PID 1's own thread.
pub fn tree(processes: &[(i32, i32)], root: i32) -> HashSet<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for &(pid, ppid) in processes {
        children.entry(ppid).or_default().push(pid);
    }
    let mut found = HashSet::from([root]);
    let mut unvisited = vec![root];
    while let Some(parent) = unvisited.pop() {
        for &child in children.get(&parent).into_iter().flatten() {
            // A table read over time can hold a reused pid whose ppid points back down the tree.
            if found.insert(child) {
                unvisited.push(child);
            }
        }
    }
    found
}

/// Whether `pid` is `root` or descends from it, walking the ppid chain in /proc.
pub fn descends_from(pid: i32, root: i32) -> bool {
    let mut cur = pid;
    for _ in 0..4096 {
        if cur == root {
            return true;
        }
        if cur <= 1 {
            return false;
        }
        match read_text(format!("/proc/{cur}/stat")).ok().and_then(|t| parse_stat(&t)) {
            Some(stat) => cur = stat.ppid,
            None => return false,
        }
    }
    false
}

/// The uid owning a process (effective uid), None when it is gone.
pub fn process_uid(pid: i32) -> Option<i64> {
    let (uid, _) = effective_ids(&read_text(format!("/proc/{pid}/status")).ok()?);
    (uid >= 0).then_some(uid)
}

pub fn threads(pid: i32) -> io::Result<Vec<Thread>> {
    let ticks = sys::clock_ticks();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(stat) = read_text(format!("/proc/{pid}/task/{tid}/stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        {
            out.push(Thread {
                tid: tid as i64,
                comm: stat.comm.clone(),
                state: stat.state.to_string(),
                cpu_seconds: cpu_seconds(&stat, ticks),
            });
        }
    }
    out.sort_by_key(|t| t.tid);
    Ok(out)
}

/// `socket:[12345]` → 12345.
pub fn socket_inode(target: &str) -> Option<u64> {
    target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

pub fn fds(pid: i32) -> io::Result<Vec<Fd>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse::<i64>().ok()) else {
            continue;
        };
        let target = std::fs::read_link(entry.path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(Fd {
            fd,
            socket_inode: socket_inode(&target).map(|i| i as i64),
            target,
        });
    }
    out.sort_by_key(|f| f.fd);
    Ok(out)
}

/// Parses `/proc/PID/limits`, whose columns are aligned with spaces and whose names contain
/// spaces: the name is everything before the first numeric-or-"unlimited" column.
pub fn parse_limits(text: &str) -> Vec<Limit> {
    let value = |s: &str| -> Option<Option<i64>> {
        if s == "unlimited" {
            Some(None)
        } else {
            s.parse::<i64>().ok().map(Some)
        }
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            let at = words.iter().position(|w| value(w).is_some())?;
            let soft = value(words.get(at)?)?;
            let hard = value(words.get(at + 1)?)?;
            Some(Limit {
                name: words.get(..at)?.join(" "),
                soft,
                hard,
                unit: words.get(at + 2).copied().unwrap_or("").to_string(),
            })
        })
        .collect()
}

pub fn limits(pid: i32) -> io::Result<Vec<Limit>> {
    Ok(parse_limits(&read_text(format!("/proc/{pid}/limits"))?))
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let n = (bytes[i + 1] - b'0') as u32 * 64 + (bytes[i + 2] - b'0') as u32 * 8 + (bytes[i + 3] - b'0') as u32;
            out.push(n as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/PID/mountinfo`:
/// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let dash = f.iter().position(|w| *w == "-")?;
            Some(Mount {
                id: f.first()?.parse().ok()?,
                parent: f.get(1)?.parse().ok()?,
                root: unescape(f.get(3)?),
                mountpoint: unescape(f.get(4)?),
                options: f.get(5)?.to_string(),
                fstype: f.get(dash + 1)?.to_string(),
                source: unescape(f.get(dash + 2)?),
            })
        })
        .collect()
}

pub fn mounts(pid: i32) -> io::Result<Vec<Mount>> {
    Ok(parse_mountinfo(&read_text(format!("/proc/{pid}/mountinfo"))?))
}

/// Parses a NUL-separated environment block; values are kept only for names `show` accepts.
pub fn parse_environ(bytes: &[u8], show: &dyn Fn(&str) -> bool) -> Vec<EnvVar> {
    bytes
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (name, value) = text.split_once('=').unwrap_or((&text, ""));
            EnvVar {
                name: name.to_string(),
                value: show(name).then(|| value.to_string()),
            }
        })
        .collect()
}

pub fn environ(pid: i32, show: &dyn Fn(&str) -> bool) -> io::Result<Vec<EnvVar>> {
    Ok(parse_environ(
        &read_capped(format!("/proc/{pid}/environ"), MAX_FILE)?,
        show,
    ))
}

pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A capability mask as printed in /proc (hex) and as names.
pub fn cap_set(hex: &str) -> CapSet {
    let mask = u64::from_str_radix(hex.trim(), 16).unwrap_or(0);
    let names = (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| {
            CAPABILITIES
                .get(bit)
                .map_or_else(|| format!("CAP_{bit}"), |n| n.to_string())
        })
        .collect();
    CapSet {
        hex: hex.trim().to_string(),
        names,
    }
}

pub fn parse_security(pid: i32, status: &str) -> Security {
    let f = parse_status(status);
    let cap = |k: &str| cap_set(f.get(k).copied().unwrap_or("0"));
    Security {
        pid: pid as i64,
        uids: numbers(f.get("Uid")),
        gids: numbers(f.get("Gid")),
        groups: numbers(f.get("Groups")),
        cap_inheritable: cap("CapInh"),
        cap_permitted: cap("CapPrm"),
        cap_effective: cap("CapEff"),
        cap_bounding: cap("CapBnd"),
        cap_ambient: cap("CapAmb"),
        no_new_privs: f.get("NoNewPrivs").is_some_and(|v| *v == "1"),
        seccomp: match f.get("Seccomp").copied() {
            Some("1") => "strict",
            Some("2") => "filter",
            Some(_) => "disabled",
            None => "unknown",
        }
        .to_string(),
        seccomp_filters: f.get("Seccomp_filters").and_then(|v| v.parse().ok()),
        policy: None,
    }
}

pub fn security(pid: i32) -> io::Result<Security> {
    Ok(parse_security(pid, &read_text(format!("/proc/{pid}/status"))?))
}

pub fn kernel_features() -> KernelFeatures {
    let status = read_text("/proc/self/status").unwrap_or_default();
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else if std::path::Path::new("/sys/fs/cgroup/memory").exists() {
        "v1"
    } else {
        "none"
    };
    KernelFeatures {
        release: read_line("/proc/sys/kernel/osrelease").unwrap_or_default(),
        landlock_abi: sys::landlock_abi(),
        seccomp: parse_status(&status).contains_key("Seccomp"),
        cgroup: cgroup.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_names() {
        let s = parse_stat("42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 12 3 0 0 20 0 2 0 555 1000 33 x").unwrap();
        assert_eq!((s.pid, s.comm.as_str(), s.state, s.ppid), (42, "a) b (c)", 'S', 7));
        assert_eq!(
            (s.utime, s.stime, s.threads, s.starttime, s.rss_pages),
            (12, 3, 2, 555, 33)
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat(") 1 ("), None);
        assert_eq!(parse_stat("1 (x) Z"), None);
    }

    #[test]
    fn effective_ids_are_the_second_of_each_line() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t5\t6\t6\t6\nUidx:\t9\n";
        assert_eq!(effective_ids(status), (0, 6));
        assert_eq!(effective_ids("Uid:\t1\nGid:\tx y\n"), (-1, -1));
        assert_eq!(effective_ids("Uid:\t1\t-5\nGid:\t1\t4294967296\n"), (-1, -1));
        assert_eq!(effective_ids(""), (-1, -1));
    }

    #[test]
    fn the_tree_of_a_root() {
        // 1 ─ 2 ─ 3 ─ 5, and 4 under 1; 6 and 7 point at each other (pids reused mid-scan).
        let pairs = [(1, 0), (2, 1), (3, 2), (4, 1), (5, 3), (6, 7), (7, 6)];
        let sorted = |set: HashSet<i32>| {
            let mut v: Vec<i32> = set.into_iter().collect();
            v.sort_unstable();
            v
        };
        assert_eq!(sorted(tree(&pairs, 2)), vec![2, 3, 5]);
        assert_eq!(sorted(tree(&pairs, 1)), vec![1, 2, 3, 4, 5]);
        assert_eq!(sorted(tree(&pairs, 6)), vec![6, 7]);
        assert_eq!(sorted(tree(&pairs, 99)), vec![99]);
    }

    #[test]
    fn limits_table() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n\
                    Max realtime timeout      unlimited            unlimited            us        \n\
                    nonsense\n";
        let l = parse_limits(text);
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].name, "Max open files");
        assert_eq!((l[1].soft, l[1].hard), (Some(1024), Some(524288)));
        assert_eq!(l[0].soft, None);
        assert_eq!(l[0].unit, "seconds");
    }

    #[test]
    fn mountinfo_lines() {
        let text = "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    bad line\n\
                    37 36 0:5 / /proc rw - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mountpoint, "/mnt two");
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[1].source, "proc");
        assert!(parse_mountinfo("\\\\\\ - \\0").is_empty());
        assert_eq!(unescape("a\\04"), "a\\04");
    }

    #[test]
    fn environ_redaction() {
        let vars = parse_environ(b"PATH=/bin\0SECRET=hunter2\0ODD\0\0", &|n| n == "PATH");
        assert_eq!(vars.len(), 3);
        assert_eq!(vars[0].value.as_deref(), Some("/bin"));
        assert_eq!(vars[1].value, None);
        assert_eq!(vars[2].name, "ODD");
    }

    #[test]
    fn security_from_status() {
        let status = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t5\t5\t5\t5\nGroups:\t5 6\n\
                      CapInh:\t0000000000000000\nCapPrm:\t0000000000000400\nCapEff:\t0000000000000400\n\
                      CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n\
                      Seccomp_filters:\t1\n";
        let s = parse_security(9, status);
        assert_eq!(s.uids, vec![1000; 4]);
        assert_eq!(s.groups, vec![5, 6]);
        assert_eq!(s.cap_effective.names, vec!["CAP_NET_BIND_SERVICE"]);
        assert_eq!(s.cap_bounding.names.len(), 41);
        assert!(s.no_new_privs);
        assert_eq!(s.seccomp, "filter");
        assert_eq!(s.seccomp_filters, Some(1));
        let junk = parse_security(1, "\u{0}\u{1}:::\nCapEff:\tzz\n");
        assert!(junk.cap_effective.names.is_empty());
    }

    #[test]
    fn this_process_is_listed() {
        let me = std::process::id() as i64;
        let all = list_processes();
        let p = all.iter().find(|p| p.pid == me).expect("self listed");
        assert!(p.threads >= 1);
        assert!(p.start_time > 0);
        assert!(descends_from(me as i32, std::os::unix::process::parent_id() as i32));
        let pairs: Vec<(i32, i32)> = all.iter().map(|p| (p.pid as i32, p.ppid as i32)).collect();
        assert!(tree(&pairs, std::os::unix::process::parent_id() as i32).contains(&(me as i32)));
        assert!(!fds(me as i32).unwrap().is_empty());
        assert!(!limits(me as i32).unwrap().is_empty());
        assert!(!mounts(me as i32).unwrap().is_empty());
    }
}
