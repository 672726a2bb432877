//! The little the init half needs from /proc: which processes exist and who their parents are.
//! Parsing is shared with the diagnostics layer (`husk_inspect`).

use std::collections::HashMap;

/// One line of the process table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
}

/// Parses `/proc/PID/stat` with the diagnostics layer's parser, keeping the three fields
/// shutdown needs.
pub fn parse_stat(text: &str) -> Option<Proc> {
    husk_inspect::process::parse_stat(text).map(|s| Proc {
        pid: s.pid,
        ppid: s.ppid,
        state: s.state,
    })
}

/// Every process /proc lists; `None` when /proc cannot be read (out of descriptors, say),
/// which is not an empty table: shutdown would take it for "nothing left" and stop waiting.
fn all_processes() -> Option<Vec<Proc>> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(text) => all.extend(parse_stat(&text)),
            // Exited since the listing.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {}
            Err(_) => return None,
        }
    }
    Some(all)
}

/// Whether /proc lists any process but `own`; `None` when /proc cannot be read. It stops at the
/// first one, so an empty namespace costs one directory read.
pub fn any_process_but(own: i32) -> Option<bool> {
    for entry in std::fs::read_dir("/proc").ok()? {
        let name = entry.ok()?.file_name();
        if name
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
            .is_some_and(|pid| pid != own)
        {
            return Some(true);
        }
    }
    Some(false)
}

/// Exited but not yet reaped: waiting for a parent's wait, not for a signal.
fn has_exited(p: &Proc) -> bool {
    matches!(p.state, 'Z' | 'X' | 'x')
}

/// Every process in /proc that has not exited; `None` when /proc cannot be read.
pub fn live_processes() -> Option<Vec<Proc>> {
    Some(all_processes()?.into_iter().filter(|p| !has_exited(p)).collect())
}

/// Live descendants of `root` (children, their children, ...), whatever group or session they
/// moved to; `None` when /proc cannot be read.
pub fn live_descendants(root: i32) -> Option<Vec<i32>> {
    let all = all_processes()?;
    let mut children: HashMap<i32, Vec<&Proc>> = HashMap::new();
    for p in &all {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(parent) = stack.pop() {
        for child in children.get(&parent).into_iter().flatten() {
            stack.push(child.pid);
            if !has_exited(child) {
                found.push(child.pid);
            }
        }
    }
    Some(found)
}

/// Whether /proc belongs to the shim's own PID namespace (as PID 1, `/proc/self` is then `1`).
/// A /proc mounted for another namespace would list processes the shim must not wait for.
pub fn proc_is_own_namespace() -> bool {
    std::fs::read_link("/proc/self").is_ok_and(|target| target.as_os_str() == std::process::id().to_string().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_awkward_names() {
        let p = parse_stat("42 (a) b (c)) S 7 42 42 0 -1").unwrap();
        assert_eq!(
            p,
            Proc {
                pid: 42,
                ppid: 7,
                state: 'S'
            }
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) Z"), None);
    }

    #[test]
    fn this_process_is_a_descendant_of_its_parent() {
        let me = std::process::id() as i32;
        let parent = nix::unistd::getppid().as_raw();
        assert!(live_descendants(parent).unwrap().contains(&me));
        assert!(live_processes().unwrap().iter().any(|p| p.pid == me));
    }
}
