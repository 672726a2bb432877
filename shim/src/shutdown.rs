//! Shutdown after the app has exited: give leftover processes a grace period, then kill them.
//!
//! As PID 1, "leftover" means every other process in the PID namespace; as a subreaper, every
//! descendant of the shim, found through the ppid chain in /proc so that processes which left
//! the app's process group or session are included. The shim waits on pidfds (it is not the
//! parent of most leftovers), so it exits as soon as the last one is gone, with no fixed wait.

use std::time::{Duration, Instant};

use crate::procs;
use crate::signals::Sig;
use crate::supervise::{Supervisor, Wake};
use crate::sys;

/// How long the shim waits, after SIGKILL, for leftovers to disappear before it exits anyway
/// (a process stuck in uninterruptible sleep cannot die until its I/O finishes).
const AFTER_KILL: Duration = Duration::from_secs(2);
/// Re-check interval during shutdown when the kernel offers no pidfds (before Linux 5.3).
const POLL_WITHOUT_PIDFD: Duration = Duration::from_millis(20);

/// Which processes the shim is responsible for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// PID 1 with its own /proc: every process listed there.
    Namespace,
    /// PID 1 without a usable /proc: `kill(-1, 0)` tells whether anything remains.
    NamespaceBlind,
    /// Not PID 1: the shim's descendants.
    Descendants,
}

impl Scope {
    fn detect() -> Scope {
        if std::process::id() != 1 {
            Scope::Descendants
        } else if procs::proc_is_own_namespace() {
            Scope::Namespace
        } else {
            Scope::NamespaceBlind
        }
    }

    /// The live (non-zombie) processes in scope; `None` when they cannot be listed but some
    /// exist (no /proc, or no descriptor left to read it with).
    fn remaining(self) -> Option<Vec<i32>> {
        // The common case, an app that left nothing behind, costs one system call instead of a
        // walk over /proc.
        if !self.anything_left() {
            return Some(Vec::new());
        }
        let own = std::process::id() as i32;
        match self {
            Scope::Namespace => {
                procs::live_processes().map(|all| all.into_iter().map(|p| p.pid).filter(|&pid| pid != own).collect())
            }
            Scope::Descendants => procs::live_descendants(own),
            // Something is left (anything_left said so), but /proc cannot say what.
            Scope::NamespaceBlind => None,
        }
    }

    /// A cheap first check. As PID 1 the namespace's /proc lists every other process in it, at
    /// a cost that follows the namespace's size; `kill(-1, 0)` reaches the same processes but
    /// walks every process on the host to find them (0.46 ms on a host running 2,000). As a
    /// subreaper, every descendant is either a child or below one, so no children means no
    /// descendants.
    fn anything_left(self) -> bool {
        match self {
            Scope::Namespace => {
                procs::any_process_but(std::process::id() as i32).unwrap_or_else(any_process_signallable)
            }
            Scope::NamespaceBlind => any_process_signallable(),
            Scope::Descendants => sys::has_children(),
        }
    }

    fn signal_all(self, sig: Sig, pids: Option<&[i32]>) {
        match (self, pids) {
            (Scope::Namespace | Scope::NamespaceBlind, _) => {
                // From PID 1, -1 means every process in the namespace but the shim itself.
                if let Err(e) = sys::kill(-1, sig.number()) {
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        tracing::warn!("shutdown: sending {sig} to all processes: {}", crate::describe_io(&e));
                    }
                }
            }
            (Scope::Descendants, Some(pids)) => {
                for &pid in pids {
                    // ESRCH: it exited between the scan and now.
                    let _ = sys::kill(pid, sig.number());
                }
            }
            (Scope::Descendants, None) => {}
        }
    }
}

/// From PID 1: whether a signal could reach any other process in the namespace.
fn any_process_signallable() -> bool {
    !matches!(sys::kill(-1, 0), Err(e) if e.raw_os_error() == Some(libc::ESRCH))
}

/// Terminates leftovers: SIGTERM, up to `grace` for them to exit, SIGKILL for the rest.
/// Returns once none remains (or, after SIGKILL, after a bounded wait).
pub fn drain(sup: &mut Supervisor, grace: Duration) {
    let scope = Scope::detect();
    // Some(empty): nothing is left. None: something is, but it cannot be listed.
    let first = scope.remaining();
    if first.as_ref().is_some_and(|pids| pids.is_empty()) {
        return;
    }
    let count = first.as_ref().map_or("some".to_string(), |p| p.len().to_string());
    if grace.is_zero() {
        tracing::info!("shutdown: {count} leftover processes; --grace 0: sending SIGKILL");
        scope.signal_all(Sig::KILL, first.as_deref());
        wait_until_gone(sup, scope, Instant::now() + AFTER_KILL, false);
        return;
    }
    tracing::info!("shutdown: {count} leftover processes; sending SIGTERM, SIGKILL in {grace:?}");
    scope.signal_all(Sig::TERM, first.as_deref());
    if wait_until_gone(sup, scope, Instant::now() + grace, true) {
        return;
    }
    let last = scope.remaining();
    if last.as_ref().is_some_and(|p| p.is_empty()) {
        return;
    }
    tracing::warn!(
        "shutdown: grace period over; sending SIGKILL to {} processes",
        last.as_ref()
            .map_or("the remaining".to_string(), |p| p.len().to_string())
    );
    scope.signal_all(Sig::KILL, last.as_deref());
    if !wait_until_gone(sup, scope, Instant::now() + AFTER_KILL, false) {
        tracing::warn!("shutdown: processes remain after SIGKILL (uninterruptible sleep?); exiting anyway");
    }
}

/// Waits until nothing in scope remains (true) or the deadline passes (false). With
/// `interruptible`, a TERM, INT or QUIT sent to the shim ends the wait early (false): whoever
/// asked the container to stop does not want the full grace period any more.
fn wait_until_gone(sup: &mut Supervisor, scope: Scope, deadline: Instant, interruptible: bool) -> bool {
    // As PID 1 everything left dies with the shim, so a SIGKILL'd namespace needs no waiting.
    if !interruptible && scope != Scope::Descendants {
        return true;
    }
    loop {
        // List first, then reap: a process listed as gone may be a zombie child of ours by
        // now, and the reap that follows collects it. (A pidfd reports an exit slightly before
        // the zombie becomes reapable, so reaping first could miss it.)
        let remaining = scope.remaining();
        sup.reap();
        let poll_deadline = match &remaining {
            Some(pids) if pids.is_empty() => return true,
            Some(pids) if sup.watch(pids) => deadline,
            _ => deadline.min(Instant::now() + POLL_WITHOUT_PIDFD),
        };
        for wake in sup.wait(Some(poll_deadline)) {
            match wake {
                Wake::Signal { sig, .. } if interruptible && [Sig::TERM, Sig::INT, Sig::QUIT].contains(&sig) => {
                    tracing::info!("shutdown: {sig} received during the grace period; not waiting any longer");
                    return false;
                }
                Wake::Signal { sig, .. } => tracing::debug!("shutdown: ignoring {sig}"),
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            return scope.remaining().is_some_and(|p| p.is_empty());
        }
    }
}

/// `--hold-on-failure`: keep PID 1 (and the diagnostics socket) up after a failed app so a
/// person can look around, until the hold ends or a TERM/INT/QUIT arrives.
pub fn hold(sup: &mut Supervisor, duration: Duration) {
    tracing::warn!(
        "the app failed; holding for {duration:?} (--hold-on-failure) so it can be inspected; SIGTERM ends the hold"
    );
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        for wake in sup.wait(Some(deadline)) {
            if let Wake::Signal { sig, .. } = wake {
                if [Sig::TERM, Sig::INT, Sig::QUIT].contains(&sig) {
                    tracing::info!("hold: {sig} received; exiting");
                    return;
                }
            }
        }
    }
}
