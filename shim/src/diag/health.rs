//! Named health checks from the shim's configuration (never from a request): TCP connect and
//! HTTP GET. A check runs on a short-lived helper thread (name resolution and connecting
//! block), at most one run per check at a time, and its result is reused for `FRESH`, so
//! however often clients ask, each check runs at most once per `FRESH`.

use std::collections::{HashMap, HashSet};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use super::mailbox::Mailbox;
use crate::options::Settings;

const FRESH: Duration = Duration::from_secs(2);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Checks are for liveness: a longer timeout would keep clients waiting past their deadline.
const MAX_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Tcp(String),
    Http { url: String, expect: Option<u16> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSpec {
    pub name: String,
    pub kind: Kind,
    pub timeout: Duration,
}

impl CheckSpec {
    fn run(&self) -> Result<String, String> {
        match &self.kind {
            Kind::Tcp(target) => husk_inspect::check::tcp(target, self.timeout),
            Kind::Http { url, expect } => husk_inspect::check::http(url, *expect, self.timeout),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Tcp(_) => "tcp",
            Kind::Http { .. } => "http",
        }
    }

    pub fn target(&self) -> &str {
        match &self.kind {
            Kind::Tcp(t) => t,
            Kind::Http { url, .. } => url,
        }
    }
}

/// `--health-tcp NAME=HOST:PORT`, `--health-http NAME=URL` and the file's `"health"` array.
pub fn specs(settings: &Settings) -> Result<Vec<CheckSpec>, String> {
    let mut out: Vec<CheckSpec> = Vec::new();
    let split = |option: &str, raw: &str| -> Result<(String, String), String> {
        match raw.split_once('=') {
            Some((n, t)) if !n.is_empty() && !t.is_empty() => Ok((n.to_string(), t.to_string())),
            _ => Err(format!("--{option}: expected NAME=TARGET, got {raw:?}")),
        }
    };
    for raw in settings.list("health-tcp") {
        let (name, target) = split("health-tcp", raw)?;
        check_tcp_target("health-tcp", &target)?;
        out.push(CheckSpec {
            name,
            kind: Kind::Tcp(target),
            timeout: DEFAULT_TIMEOUT,
        });
    }
    for raw in settings.list("health-http") {
        let (name, url) = split("health-http", raw)?;
        husk_inspect::check::parse_http_url(&url).map_err(|e| format!("--health-http: {e}"))?;
        out.push(CheckSpec {
            name,
            kind: Kind::Http { url, expect: None },
            timeout: DEFAULT_TIMEOUT,
        });
    }
    for entry in &settings.health {
        let timeout = match &entry.timeout {
            Some(t) => {
                crate::config::parse_duration(t).map_err(|e| format!("\"health\" {:?}: timeout: {e}", entry.name))?
            }
            None => DEFAULT_TIMEOUT,
        };
        let kind = match (&entry.tcp, &entry.http) {
            (Some(t), None) => {
                check_tcp_target("health", t)?;
                Kind::Tcp(t.clone())
            }
            (None, Some(u)) => {
                husk_inspect::check::parse_http_url(u).map_err(|e| format!("\"health\": {e}"))?;
                Kind::Http {
                    url: u.clone(),
                    expect: entry.expect,
                }
            }
            _ => {
                return Err(format!(
                    "\"health\" {:?}: give exactly one of \"tcp\" or \"http\"",
                    entry.name
                ))
            }
        };
        out.push(CheckSpec {
            name: entry.name.clone(),
            kind,
            timeout,
        });
    }
    for spec in &mut out {
        if spec.timeout.is_zero() || spec.timeout > MAX_TIMEOUT {
            tracing::warn!("health check {:?}: timeout limited to {MAX_TIMEOUT:?}", spec.name);
            spec.timeout = spec.timeout.clamp(Duration::from_millis(100), MAX_TIMEOUT);
        }
    }
    let mut seen = HashSet::new();
    if let Some(dup) = out.iter().find(|s| !seen.insert(s.name.clone())) {
        return Err(format!("health check {:?} is defined twice", dup.name));
    }
    Ok(out)
}

fn check_tcp_target(option: &str, target: &str) -> Result<(), String> {
    match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("--{option}: expected HOST:PORT, got {target:?}")),
    }
}

struct Done {
    result: Result<String, String>,
    at: Instant,
}

pub struct Health {
    specs: Vec<CheckSpec>,
    results: HashMap<String, Done>,
    running: HashSet<String>,
    mailbox: Mailbox<(String, Result<String, String>)>,
}

impl Health {
    pub fn new(specs: Vec<CheckSpec>) -> std::io::Result<Health> {
        Ok(Health {
            specs,
            results: HashMap::new(),
            running: HashSet::new(),
            mailbox: Mailbox::new()?,
        })
    }

    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.mailbox.wake_fd()
    }

    pub fn names(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.name.clone()).collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.specs.iter().any(|s| s.name == name)
    }

    /// Starts the check unless it has a fresh result or is running already.
    pub fn ensure(&mut self, name: &str) {
        if self.running.contains(name) || self.results.get(name).is_some_and(|d| d.at.elapsed() < FRESH) {
            return;
        }
        let Some(spec) = self.specs.iter().find(|s| s.name == name).cloned() else {
            return;
        };
        match self.mailbox.spawn("health", move || (spec.name.clone(), spec.run())) {
            Ok(_) => {
                self.running.insert(name.to_string());
            }
            Err(e) => {
                self.results.insert(
                    name.to_string(),
                    Done {
                        result: Err(format!("cannot start the check: {e}")),
                        at: Instant::now(),
                    },
                );
            }
        }
    }

    pub fn busy(&self, name: &str) -> bool {
        self.running.contains(name)
    }

    /// Takes in the results of finished checks.
    pub fn collect(&mut self) {
        for (name, result) in self.mailbox.take() {
            self.running.remove(&name);
            self.results.insert(
                name,
                Done {
                    result,
                    at: Instant::now(),
                },
            );
        }
    }

    pub fn report(&self, name: &str) -> husk_proto::Check {
        let spec = self.specs.iter().find(|s| s.name == name);
        let done = self.results.get(name);
        husk_proto::Check {
            name: name.to_string(),
            kind: spec.map_or("", |s| s.kind_name()).to_string(),
            target: spec.map_or("", |s| s.target()).to_string(),
            ok: done.map(|d| d.result.is_ok()),
            detail: match done.map(|d| &d.result) {
                Some(Ok(s)) | Some(Err(s)) => s.clone(),
                None => "not run yet".into(),
            },
            age_ms: done.map(|d| d.at.elapsed().as_millis() as i64),
        }
    }
}
