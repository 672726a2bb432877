//! The read-only diagnostics server (SPEC.md, "The diagnostics socket").
//!
//! It lives inside the supervise loop: the listener and every connection are registered in
//! the supervisor's one epoll (tokens in [1, 2^32)), and `Supervisor::wait` hands their events
//! here after it has handled signals and reaping. Everything is non-blocking and bounded, so
//! a client can cost the loop a little CPU but can never hold it: a request is at most
//! `MAX_REQUEST` bytes, at most `MAX_CONNECTIONS` are open at once (when all are in use a new
//! client replaces the longest idle one, or waits in the listen backlog), each has `REQUEST_TIMEOUT` to send a request and read the reply, and a
//! reply is at most `MAX_REPLY_BYTES`. Health checks, which may resolve names and wait for
//! the network, run on short-lived helper threads and report back through a pipe.
//!
//! Phase rule: this runs after the spawn, so nothing here returns an error to `main` or
//! panics; failures are logged and the shim (and the app) carry on.

mod access;
mod conn;
mod health;
mod listener;
mod mailbox;
mod methods;
mod scan;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollFlags};
use serde_json::Value;

use crate::config::Config;
use crate::exit::AppExit;
use crate::supervise::Stats;

pub use health::CheckSpec;

/// Tokens in the supervisor's epoll that belong to this module.
pub const TOKEN_FIRST: u64 = 1;
pub const TOKEN_END: u64 = 1 << 32;
const LISTENER_TOKEN: u64 = 1;
const HEALTH_TOKEN: u64 = 2;
const SCAN_TOKEN: u64 = 3;
const CONN_TOKEN_BASE: u64 = 16;

const MAX_CONNECTIONS: usize = 32;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection idle this long may be closed to make room for a new client (a younger one may
/// have its request in flight, not yet read).
const EVICT_AFTER: Duration = Duration::from_secs(1);
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_SOCKET: &str = "/dev/shm/husk.sock";

/// Where the socket lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Path(PathBuf),
    /// A Linux abstract socket name (without the leading NUL / `@`).
    Abstract(String),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Path(p) => write!(f, "{}", p.display()),
            Address::Abstract(name) => write!(f, "@{name}"),
        }
    }
}

/// The diagnostics options, resolved and validated before the spawn.
#[derive(Clone, Debug)]
pub struct DiagConfig {
    pub address: Address,
    pub allow_uids: Vec<u32>,
    pub allow_app: bool,
    pub env_allow: Vec<String>,
    pub checks: Vec<CheckSpec>,
}

impl DiagConfig {
    /// `None` with `--diag-socket off`. Errors name the option.
    pub fn from_config(config: &Config) -> Result<Option<DiagConfig>, String> {
        let s = &config.settings;
        let checks = health::specs(s)?;
        let raw = s.value("diag-socket").unwrap_or(DEFAULT_SOCKET);
        let address = match raw {
            "off" | "none" | "" => return Ok(None),
            name if name.starts_with('@') => {
                let name = &name[1..];
                if name.is_empty() || name.len() > 100 {
                    return Err(format!("--diag-socket: abstract name {raw:?} must have 1 to 100 bytes"));
                }
                Address::Abstract(name.to_string())
            }
            path => {
                // Absolute now: the shim moves to / after the spawn.
                let path = std::path::absolute(path).map_err(|e| format!("--diag-socket {path:?}: {e}"))?;
                if path.as_os_str().len() > 107 {
                    return Err(format!(
                        "--diag-socket: {path:?} is longer than a unix socket path may be"
                    ));
                }
                Address::Path(path)
            }
        };
        let allow_uids = s
            .list("diag-allow-uid")
            .iter()
            .map(|u| {
                u.parse::<u32>()
                    .map_err(|_| format!("--diag-allow-uid: expected a numeric uid, got {u:?}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(DiagConfig {
            address,
            allow_uids,
            allow_app: s.flag("diag-allow-app").unwrap_or(false),
            env_allow: s.list("diag-env-allow").to_vec(),
            checks,
        }))
    }
}

/// What the server reports about the app that is fixed at spawn time.
pub struct AppInfo {
    pub argv: Vec<String>,
    /// The confinement policy as the policy layer describes it.
    pub policy: Value,
    /// "pid1", "subreaper" or "plain".
    pub mode: &'static str,
}

/// The supervisor's state, lent to the server for one event.
pub struct View<'a> {
    pub child: i32,
    pub stats: &'a Stats,
    pub app_exit: Option<&'a AppExit>,
}

pub struct Server {
    listener: listener::Listener,
    conns: Vec<Option<conn::Conn>>,
    accepting: bool,
    /// After an accept error (out of descriptors, say) the listener rests until then, rather
    /// than waking the loop again at once.
    paused_until: Option<Instant>,
    config: DiagConfig,
    app: AppInfo,
    /// How the shim confined itself, known only once the server has started.
    shim_policy: Value,
    work: Work,
    shim_uid: u32,
}

/// What the server hands to helper threads, so that slow work never runs on PID 1's loop:
/// health checks and process-table scans.
pub struct Work {
    pub health: health::Health,
    pub scan: scan::Scanner,
}

impl Server {
    /// Creates the socket. On failure logs a warning and returns `None`: the app runs anyway.
    pub fn start(config: DiagConfig, app: AppInfo) -> Option<Server> {
        let shim_uid = nix::unistd::geteuid().as_raw();
        let open_to_all = config.allow_uids.iter().any(|&u| u != shim_uid && u != 0);
        let listener = match listener::Listener::bind(&config.address, open_to_all) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("diagnostics: {e}; running without the diagnostics socket");
                return None;
            }
        };
        let work = health::Health::new(config.checks.clone()).and_then(|health| {
            Ok(Work {
                health,
                scan: scan::Scanner::new()?,
            })
        });
        let work = match work {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(
                    "diagnostics: cannot create a pipe for helper threads: {}; running without the diagnostics socket",
                    crate::describe_io(&e)
                );
                return None;
            }
        };
        tracing::info!("diagnostics: listening on {}", config.address);
        Some(Server {
            listener,
            conns: Vec::new(),
            accepting: true,
            paused_until: None,
            config,
            app,
            shim_policy: Value::Null,
            work,
            shim_uid,
        })
    }

    /// What `Security` reports as the shim's own policy.
    pub fn set_shim_policy(&mut self, policy: Value) {
        self.shim_policy = policy;
    }

    /// Registers the listener and the health pipe.
    pub fn register(&self, epoll: &Epoll) -> std::io::Result<()> {
        use nix::sys::epoll::EpollEvent;
        epoll.add(self.listener.fd(), EpollEvent::new(EpollFlags::EPOLLIN, LISTENER_TOKEN))?;
        epoll.add(
            self.work.health.wake_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, HEALTH_TOKEN),
        )?;
        epoll.add(
            self.work.scan.wake_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, SCAN_TOKEN),
        )?;
        Ok(())
    }

    /// The earliest connection deadline: the loop sleeps no longer than this.
    pub fn next_deadline(&self) -> Option<Instant> {
        let deadlines = self.conns.iter().flatten().map(|c| c.deadline);
        // While full, also wake when an idle connection becomes evictable, to accept again.
        let evictable = self
            .conns
            .iter()
            .flatten()
            .filter(|c| !self.accepting && c.is_idle())
            .map(|c| c.last_active + EVICT_AFTER);
        deadlines.chain(evictable).chain(self.paused_until).min()
    }

    /// Handles one epoll event for a token in [TOKEN_FIRST, TOKEN_END).
    pub fn handle(&mut self, token: u64, events: EpollFlags, epoll: &Epoll, view: &View) {
        match token {
            LISTENER_TOKEN => self.accept(epoll, if view.app_exit.is_none() { view.child } else { 0 }),
            HEALTH_TOKEN => {
                self.work.health.collect();
                self.resume_waiting(epoll, view);
            }
            SCAN_TOKEN => {
                self.work.scan.collect();
                self.resume_waiting(epoll, view);
            }
            t if t >= CONN_TOKEN_BASE => {
                let slot = (t - CONN_TOKEN_BASE) as usize;
                self.drive(slot, events, epoll, view);
            }
            _ => {}
        }
    }

    /// Drops every connection whose deadline has passed.
    pub fn expire(&mut self, epoll: &Epoll) {
        let now = Instant::now();
        for slot in 0..self.conns.len() {
            if self.conns[slot].as_ref().is_some_and(|c| c.deadline <= now) {
                tracing::debug!("diagnostics: dropping a connection that timed out");
                self.close(slot, epoll);
            }
        }
        if !self.accepting
            && self
                .conns
                .iter()
                .flatten()
                .any(|c| c.is_idle() && c.last_active + EVICT_AFTER <= now)
        {
            // Clients may be waiting in the backlog behind idle connections.
            self.set_accepting(true, epoll);
        }
    }

    fn accept(&mut self, epoll: &Epoll, app: i32) {
        loop {
            if self.live() >= MAX_CONNECTIONS && !self.evict_idle(epoll) {
                // Every slot is busy with a request: leave the rest in the listen backlog
                // until one frees up.
                self.set_accepting(false, epoll);
                return;
            }
            let stream = match self.listener.accept() {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(
                        "diagnostics: accept: {}; pausing for {ACCEPT_PAUSE:?}",
                        crate::describe_io(&e)
                    );
                    self.set_accepting(false, epoll);
                    self.paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            };
            let peer = access::identify(&stream, &self.config, self.shim_uid, app);
            tracing::debug!("diagnostics: connection from uid {} (pid {:?})", peer.uid, peer.pid);
            let slot = match self.conns.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            let conn = conn::Conn::new(stream, peer, Instant::now() + REQUEST_TIMEOUT);
            if let Err(e) = conn.register(epoll, CONN_TOKEN_BASE + slot as u64) {
                tracing::warn!("diagnostics: epoll: {}", e.desc());
                continue;
            }
            self.conns[slot] = Some(conn);
        }
    }

    /// Makes room for a new client by closing the connection that has been idle longest
    /// (sent nothing since its last reply), so that clients holding connections open without
    /// asking anything cannot lock out one that asks. False when every connection is busy.
    fn evict_idle(&mut self, epoll: &Epoll) -> bool {
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_ref()
                    .filter(|c| c.is_idle() && c.last_active.elapsed() >= EVICT_AFTER)
                    .map(|c| (c.last_active, i))
            })
            .min();
        match oldest {
            Some((_, slot)) => {
                tracing::debug!("diagnostics: all {MAX_CONNECTIONS} connections in use; closing the longest idle one");
                self.close(slot, epoll);
                true
            }
            None => false,
        }
    }

    fn live(&self) -> usize {
        self.conns.iter().flatten().count()
    }

    fn set_accepting(&mut self, on: bool, epoll: &Epoll) {
        if self.accepting == on {
            return;
        }
        let flags = if on { EpollFlags::EPOLLIN } else { EpollFlags::empty() };
        let mut event = nix::sys::epoll::EpollEvent::new(flags, LISTENER_TOKEN);
        if epoll.modify(self.listener.fd(), &mut event).is_ok() {
            self.accepting = on;
        }
    }

    fn close(&mut self, slot: usize, epoll: &Epoll) {
        if let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) {
            conn.deregister(epoll);
        }
        while self.conns.last().is_some_and(Option::is_none) {
            self.conns.pop();
        }
        if self.conns.is_empty() {
            self.conns = Vec::new();
        }
        if self.paused_until.is_none() {
            self.set_accepting(true, epoll);
        }
    }

    fn drive(&mut self, slot: usize, events: EpollFlags, epoll: &Epoll, view: &View) {
        let Some(mut conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let ctx = methods::Ctx {
            config: &self.config,
            app: &self.app,
            shim_policy: &self.shim_policy,
            view,
            address: &self.config.address,
        };
        let keep = conn.on_event(events, &ctx, &mut self.work, REQUEST_TIMEOUT);
        self.conns[slot] = Some(conn);
        if !keep {
            self.close(slot, epoll);
        } else if let Some(c) = self.conns[slot].as_mut() {
            c.update_interest(epoll, CONN_TOKEN_BASE + slot as u64);
        }
    }

    /// Connections parked on health checks get their replies once the checks are done.
    fn resume_waiting(&mut self, epoll: &Epoll, view: &View) {
        for slot in 0..self.conns.len() {
            if self.conns[slot].as_ref().is_some_and(|c| c.is_waiting()) {
                self.drive(slot, EpollFlags::empty(), epoll, view);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn diag(args: &[&str]) -> Result<Option<DiagConfig>, String> {
        let mut all: Vec<OsString> = args.iter().map(OsString::from).collect();
        all.extend(["--", "true"].map(OsString::from));
        let settings = crate::options::from_args(&all).unwrap();
        DiagConfig::from_config(&crate::config::resolve(settings).unwrap())
    }

    #[test]
    fn socket_addresses() {
        assert_eq!(
            diag(&[]).unwrap().unwrap().address,
            Address::Path(DEFAULT_SOCKET.into())
        );
        assert_eq!(
            diag(&["--diag-socket", "@husk"]).unwrap().unwrap().address,
            Address::Abstract("husk".into())
        );
        assert!(diag(&["--diag-socket", "off"]).unwrap().is_none());
        assert!(diag(&["--diag-socket", "@"]).is_err());
        assert!(diag(&["--diag-socket", &format!("/{}", "x".repeat(200))]).is_err());
        match diag(&["--diag-socket", "rel.sock"]).unwrap().unwrap().address {
            Address::Path(p) => assert!(p.is_absolute()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn access_and_checks() {
        let d = diag(&[
            "--diag-allow-uid",
            "1000,1001",
            "--diag-allow-app",
            "--diag-env-allow",
            "PATH",
            "--health-tcp",
            "db=db:5432",
            "--health-http",
            "web=http://127.0.0.1:8080/healthz",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(d.allow_uids, vec![1000, 1001]);
        assert!(d.allow_app);
        assert_eq!(d.env_allow, vec!["PATH"]);
        assert_eq!(d.checks.len(), 2);
        assert!(diag(&["--diag-allow-uid", "nobody"]).is_err());
        assert!(diag(&["--health-tcp", "db"]).is_err());
        assert!(diag(&["--health-tcp", "db=db"]).is_err());
        assert!(diag(&["--health-http", "web=https://x/"]).is_err());
        assert!(diag(&["--health-tcp", "a=x:1", "--health-tcp", "a=y:2"]).is_err());
    }
}
