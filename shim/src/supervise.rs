//! The supervise loop: forward signals, reap every child, notice when the app ends.
//!
//! Phase rule: from here on the app is running, and PID 1 dying would kill the container
//! with it. Nothing in this module returns an error or panics; failures are logged and the
//! loop carries on.
//!
//! All signals are blocked (since the first line of `main`) and read from one signalfd, so
//! the shim has no signal handlers, signals that arrived before the child existed are still
//! pending and get forwarded on the first wake-up, and TSTP/TTIN/TTOU can never stop PID 1.
//! The loop sleeps in `epoll_wait` with no timeout: idle means no system calls at all.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::config::{Init, SignalTarget};
use crate::exit::AppExit;
use crate::signals::Sig;
use crate::sys;

const SIGNALFD_TOKEN: u64 = 0;
/// Tokens at and above this are pidfds of processes being waited for during shutdown.
const PIDFD_TOKEN_BASE: u64 = 1 << 32;
/// How many descriptors `watch` leaves free when there are more leftovers than it may open.
const FD_RESERVE: usize = 8;
/// How many diagnostics events one wake-up handles before the loop looks at signals again: one,
/// so that a signal waits for at most one request (another epoll_wait costs a microsecond).
const DIAG_EVENTS_PER_WAKE: usize = 1;

/// What the shim counts, for logs and the diagnostics socket.
#[derive(Debug)]
pub struct Stats {
    /// When the shim started (for uptime).
    pub started: Instant,
    pub started_at: SystemTime,
    pub reaped: u64,
    pub forwarded: BTreeMap<Sig, u64>,
}

/// Something the loop woke up for, after the loop's own bookkeeping (reaping) is done.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// A signal other than SIGCHLD, with whether another process sent it (si_code <= 0).
    Signal {
        sig: Sig,
        from_process: bool,
    },
    /// SIGCHLD: children were reaped.
    Reaped,
    /// A watched pidfd became readable: that process has exited.
    ProcessExited,
    Timeout,
}

pub struct Supervisor {
    epoll: Epoll,
    signals: OwnedFd,
    child: Pid,
    target: SignalTarget,
    map: Vec<(Sig, Option<Sig>)>,
    watched: BTreeMap<i32, OwnedFd>,
    pub stats: Stats,
    pub app_exit: Option<AppExit>,
    /// The diagnostics server, whose descriptors use tokens in [diag::TOKEN_FIRST, diag::TOKEN_END).
    diag: Option<crate::diag::Server>,
    /// Which ready diagnostics event goes first on the next wake-up.
    diag_turn: usize,
}

impl Supervisor {
    /// Sets up the signalfd and epoll, before the spawn, so that failing here starts nothing.
    pub fn new(init: &Init, started: Instant) -> std::io::Result<Supervisor> {
        let signals = sys::signalfd_all()?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&signals, EpollEvent::new(EpollFlags::EPOLLIN, SIGNALFD_TOKEN))?;
        Ok(Supervisor {
            epoll,
            signals,
            child: Pid::from_raw(0),
            target: init.signal_target,
            map: init.map_signal.clone(),
            watched: BTreeMap::new(),
            stats: Stats {
                started,
                started_at: SystemTime::now(),
                reaped: 0,
                forwarded: BTreeMap::new(),
            },
            app_exit: None,
            diag: None,
            diag_turn: 0,
        })
    }

    /// Records the main child once it runs; until then forwarding has nowhere to go, and
    /// signals simply stay queued in the signalfd.
    pub fn set_child(&mut self, child: Pid) {
        self.child = child;
        self.stats.started_at = SystemTime::now();
    }

    /// Serves diagnostics from this loop from now on. Must come after the post-spawn clean-up
    /// of inherited descriptors (which would close the server's).
    pub fn attach_diag(&mut self, server: crate::diag::Server) {
        match server.register(&self.epoll) {
            Ok(()) => self.diag = Some(server),
            Err(e) => tracing::warn!(
                "diagnostics: epoll: {}; running without the diagnostics socket",
                crate::describe_io(&e)
            ),
        }
    }

    /// The descriptors the loop owns, which the post-spawn clean-up must leave open.
    pub fn own_fds(&self) -> Vec<i32> {
        use std::os::fd::AsRawFd;
        let mut fds = vec![self.epoll.0.as_raw_fd(), self.signals.as_raw_fd()];
        fds.extend(self.watched.values().map(|fd| fd.as_raw_fd()));
        fds
    }

    /// Runs until the main child has exited, forwarding every signal on the way.
    pub fn run_until_app_exits(&mut self) -> AppExit {
        // Pending signals (sent before the child existed) and children that already exited
        // are handled on the first pass without sleeping.
        self.reap();
        loop {
            if let Some(exit) = self.app_exit.clone() {
                return exit;
            }
            for wake in self.wait(None) {
                // Once the app has been reaped its pid may be reused: forward nothing more.
                if let (Wake::Signal { sig, from_process }, None) = (wake, &self.app_exit) {
                    self.forward(sig, from_process);
                }
            }
        }
    }

    /// Sleeps until something happens (or `deadline`), reaps, and reports what happened.
    /// Diagnostics events are handled here too, after reaping and only on a wake with no
    /// signal to forward, and produce no wake; an open diagnostics connection's deadline shortens the sleep (with none open,
    /// an idle shim still makes no system calls).
    pub fn wait(&mut self, deadline: Option<Instant>) -> Vec<Wake> {
        let mut events = [EpollEvent::empty(); 16];
        let diag_deadline = self.diag.as_ref().and_then(|d| d.next_deadline());
        let sleep_until = match (deadline, diag_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = match sleep_until {
            None => EpollTimeout::NONE,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                // Round up so the deadline is not missed by a sub-millisecond early wake-up.
                let ms = left
                    .as_millis()
                    .saturating_add(u128::from(left.subsec_nanos() % 1_000_000 != 0));
                EpollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(EpollTimeout::NONE)
            }
        };
        let ready = match self.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => {
                tracing::error!("supervise: epoll_wait: {}", e.desc());
                // Do not spin on a persistent error; a short pause keeps PID 1 alive and responsive.
                std::thread::sleep(Duration::from_millis(100));
                0
            }
        };
        let mut wakes = Vec::new();
        if ready == 0 && deadline.is_some_and(|at| Instant::now() >= at) {
            wakes.push(Wake::Timeout);
        }
        // Signals and exits first: no client can make them wait for its request.
        for event in &events[..ready] {
            match event.data() {
                SIGNALFD_TOKEN => self.drain_signals(&mut wakes),
                token if token >= PIDFD_TOKEN_BASE => {
                    let pid = (token - PIDFD_TOKEN_BASE) as i32;
                    if let Some(fd) = self.watched.remove(&pid) {
                        let _ = self.epoll.delete(fd.as_fd());
                    }
                    wakes.push(Wake::ProcessExited);
                }
                _ => {}
            }
        }
        // Signals to forward go back to the caller before any client is served: its events
        // stay ready (epoll is level-triggered) and are handled on the next wait, which then
        // returns at once.
        if wakes.iter().any(|w| matches!(w, Wake::Signal { .. })) {
            return wakes;
        }
        if let Some(server) = self.diag.as_mut() {
            let view = crate::diag::View {
                child: self.child.as_raw(),
                stats: &self.stats,
                app_exit: self.app_exit.as_ref(),
            };
            // One client event per wake-up: the rest stay ready (epoll is level-triggered)
            // and come back after the next look at the signalfd, so a crowd of clients costs
            // signal forwarding at most one request's worth of delay.
            // Taken in turns, so that a ready event that stays ready cannot starve the others
            // (epoll returns level-triggered events in the same order while they stay ready).
            let diag_events: Vec<&EpollEvent> = events[..ready]
                .iter()
                .filter(|e| (crate::diag::TOKEN_FIRST..crate::diag::TOKEN_END).contains(&e.data()))
                .collect();
            self.diag_turn = self.diag_turn.wrapping_add(1);
            let start = self.diag_turn % diag_events.len().max(1);
            let turn = diag_events
                .iter()
                .cycle()
                .skip(start)
                .take(diag_events.len().min(DIAG_EVENTS_PER_WAKE));
            for event in turn {
                server.handle(event.data(), event.events(), &self.epoll, &view);
            }
            if diag_deadline.is_some_and(|at| Instant::now() >= at) {
                server.expire(&self.epoll);
            }
        }
        wakes
    }

    fn drain_signals(&mut self, wakes: &mut Vec<Wake>) {
        loop {
            match sys::read_signal(&self.signals) {
                Ok(Some(info)) => {
                    let Some(sig) = Sig::new(info.ssi_signo as i32) else {
                        continue;
                    };
                    if sig == Sig::CHLD {
                        self.reap();
                        if !wakes.contains(&Wake::Reaped) {
                            wakes.push(Wake::Reaped);
                        }
                    } else if sig == Sig::PIPE && info.ssi_pid == std::process::id() {
                        // The shim's own write to a closed pipe (its stderr, a client that
                        // hung up): the kernel's answer to the shim, not a request for the app.
                        // Not logged: with stderr closed, logging it would raise it again.
                    } else {
                        wakes.push(Wake::Signal {
                            sig,
                            from_process: info.ssi_code <= 0,
                        });
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!("supervise: reading the signalfd: {e}");
                    return;
                }
            }
        }
    }

    /// Reaps every child that has exited. SIGCHLD coalesces, so one wake-up may stand for
    /// many exits: the loop runs until nothing is left, and the main child's status is kept
    /// whichever turn it comes in.
    pub fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("supervise: waitpid: {}", e.desc());
                    return;
                }
                Ok(status) => {
                    self.stats.reaped += 1;
                    if status.pid() == Some(self.child) && self.app_exit.is_none() {
                        if let Some(exit) = AppExit::from_wait(status) {
                            tracing::info!("app (pid {}) {}", self.child, exit.describe());
                            self.app_exit = Some(exit);
                        }
                    } else {
                        tracing::trace!("reaped {status:?}");
                    }
                }
            }
        }
    }

    /// Forwards one signal to the app, after `--map-signal`.
    fn forward(&mut self, sig: Sig, from_process: bool) {
        if sig.is_fault() && !from_process {
            // Raised by the kernel for the shim itself: not a request to pass on.
            tracing::warn!("supervise: ignoring {sig} raised by the kernel");
            return;
        }
        let sent = match self.map.iter().find(|(from, _)| *from == sig) {
            Some((_, None)) => {
                tracing::debug!("dropping {sig} (--map-signal {}=0)", sig.name());
                return;
            }
            Some((_, Some(to))) => *to,
            None => sig,
        };
        let (pid, mut whom) = match self.target {
            SignalTarget::Child => (self.child.as_raw(), "child"),
            SignalTarget::Group => (-self.child.as_raw(), "process group"),
        };
        let mut result = sys::kill(pid, sent.number());
        // The app may have left the group it started in (setpgid, setsid), and no process is
        // left in it: the group is gone but the app is not, and the signal is still for it.
        if pid < 0 && matches!(&result, Err(e) if e.raw_os_error() == Some(libc::ESRCH)) {
            whom = "child (its process group is empty)";
            result = sys::kill(self.child.as_raw(), sent.number());
        }
        match result {
            Ok(()) => {
                tracing::debug!("forwarded {sent} to {whom} {}", self.child);
                *self.stats.forwarded.entry(sent).or_insert(0) += 1;
            }
            Err(e) => tracing::warn!(
                "supervise: forwarding {sent} to {whom} {}: {}",
                self.child,
                crate::describe_io(&e)
            ),
        }
    }

    /// Watches these processes' pidfds so their exit wakes `wait` even when they are not our
    /// children. Returns false when the kernel offers no pidfds (the caller must poll).
    pub fn watch(&mut self, pids: &[i32]) -> bool {
        self.watched.retain(|pid, _| pids.contains(pid));
        let mut complete = true;
        for &pid in pids {
            if self.watched.contains_key(&pid) {
                continue;
            }
            match sys::pidfd_open(pid) {
                Some(fd) => {
                    if self
                        .epoll
                        .add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, PIDFD_TOKEN_BASE + pid as u64))
                        .is_ok()
                    {
                        self.watched.insert(pid, fd);
                    } else {
                        complete = false;
                    }
                }
                // More leftovers than descriptors: give a few back, so that the /proc scan
                // that tells shutdown what is left (and the diagnostics socket) still gets one;
                // the caller polls for the processes not watched.
                None if matches!(Errno::last(), Errno::EMFILE | Errno::ENFILE) => {
                    let give_back: Vec<i32> = self.watched.keys().rev().take(FD_RESERVE).copied().collect();
                    for pid in give_back {
                        // Closing the pidfd also takes it out of the epoll set.
                        self.watched.remove(&pid);
                    }
                    return false;
                }
                // Gone already (ESRCH) is fine; any other failure means we cannot rely on pidfds.
                None => complete &= Errno::last() == Errno::ESRCH,
            }
        }
        complete
    }
}
