//! The methods of `org.varlink.service` and `io.husk.Diag`. Read-only by construction: each
//! reads /proc, /sys or the supervisor's counters and returns a typed result.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use husk_inspect::{cgroup, net, process};
use husk_proto::{
    errors, Call, Checks, ChildStatus, Environ, Fds, Info, LastExit, Limits, Mounts, NameParam, PidParam, Reply,
    ServiceInfo, Sockets, Status, Threads,
};
use serde_json::{json, Value};

use super::access::Peer;
use super::Work;
use super::{Address, AppInfo, DiagConfig, View};

pub struct Ctx<'a> {
    pub config: &'a DiagConfig,
    pub app: &'a AppInfo,
    pub shim_policy: &'a Value,
    pub view: &'a View<'a>,
    pub address: &'a Address,
}

impl Ctx<'_> {
    /// The main child's pid while it runs.
    fn app_pid(&self) -> Option<i32> {
        (self.view.child > 0 && self.view.app_exit.is_none()).then_some(self.view.child)
    }
}

/// A call parked until health checks or a process-table scan finish.
pub enum Pending {
    Checks,
    RunCheck(String),
    /// ListProcesses, waiting for a scan to finish after the count of scans it saw.
    Processes(u64),
}

/// A reply ready to go out: built on the loop, or encoded already on a helper thread.
pub enum Answer {
    Reply(Reply),
    Encoded(Arc<Vec<u8>>),
}

pub enum Outcome {
    Answer(Answer),
    Wait(Pending),
}

fn error(name: &str, parameters: Value) -> Outcome {
    Outcome::Answer(Answer::Reply(Reply::error(name, parameters)))
}

fn ok<T: serde::Serialize>(result: &T) -> Outcome {
    Outcome::Answer(Answer::Reply(Reply::ok(result)))
}

fn invalid(parameter: &str) -> Outcome {
    error(errors::INVALID_PARAMETER, json!({ "parameter": parameter }))
}

fn params<T: serde::de::DeserializeOwned + Default>(call: &Call) -> Result<T, Outcome> {
    match &call.parameters {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            // serde names the offending field in its message; varlink wants the field name.
            let msg = e.to_string();
            let field = msg.split('`').nth(1).unwrap_or("parameters").to_string();
            invalid(&field)
        }),
    }
}

/// The pid a per-process method is about: the one given, else the app's main child.
fn target(call: &Call, ctx: &Ctx, required: bool) -> Result<i32, Outcome> {
    let p: PidParam = params(call)?;
    match p.pid {
        Some(pid) if pid > 0 && pid <= i64::from(i32::MAX) => Ok(pid as i32),
        Some(_) => Err(invalid("pid")),
        None if required => Err(invalid("pid")),
        None => ctx
            .app_pid()
            .ok_or_else(|| error(errors::NO_SUCH_PROCESS, json!({"pid": ctx.view.child}))),
    }
}

/// Maps a /proc read failure to a varlink error.
fn proc_error(pid: i32, peer: &Peer, e: &std::io::Error) -> Outcome {
    match e.kind() {
        std::io::ErrorKind::NotFound => error(errors::NO_SUCH_PROCESS, json!({ "pid": pid })),
        std::io::ErrorKind::PermissionDenied => error(
            errors::PERMISSION_DENIED,
            json!({"uid": peer.uid, "reason": format!("cannot read process {pid}")}),
        ),
        _ => error(errors::UNAVAILABLE, json!({"reason": format!("process {pid}: {e}")})),
    }
}

/// Per-process details that need ptrace-level access (descriptors, environment): only for
/// the peer's own processes unless it is privileged.
fn guard(pid: i32, peer: &Peer) -> Result<(), Outcome> {
    let owner = process::process_uid(pid);
    if owner.is_none() {
        return Err(error(errors::NO_SUCH_PROCESS, json!({ "pid": pid })));
    }
    if !peer.may_read(owner) {
        return Err(error(
            errors::PERMISSION_DENIED,
            json!({"uid": peer.uid, "reason": format!("process {pid} belongs to another user")}),
        ));
    }
    Ok(())
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub fn call(call: &Call, ctx: &Ctx, peer: &Peer, work: &mut Work) -> Outcome {
    let method = call.method.as_str();
    let Some((interface, name)) = method.rsplit_once('.') else {
        return error(errors::INTERFACE_NOT_FOUND, json!({"interface": method}));
    };
    match interface {
        "org.varlink.service" => service(name, call),
        husk_proto::INTERFACE => match diag(name, call, ctx, peer, work) {
            Ok(outcome) | Err(outcome) => outcome,
        },
        _ => error(errors::INTERFACE_NOT_FOUND, json!({"interface": interface})),
    }
}

fn service(name: &str, call: &Call) -> Outcome {
    match name {
        "GetInfo" => ok(&ServiceInfo {
            vendor: "husk".into(),
            product: "shim".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            url: "https://varlink.org".into(),
            interfaces: vec!["org.varlink.service".into(), husk_proto::INTERFACE.into()],
        }),
        "GetInterfaceDescription" => {
            let p: husk_proto::InterfaceParam = match params(call) {
                Ok(p) => p,
                Err(e) => return e,
            };
            match p.interface.as_str() {
                husk_proto::INTERFACE => ok(&json!({"description": husk_proto::DESCRIPTION})),
                "org.varlink.service" => ok(&json!({"description": husk_proto::SERVICE_DESCRIPTION})),
                other => error(errors::INTERFACE_NOT_FOUND, json!({"interface": other})),
            }
        }
        _ => error(errors::METHOD_NOT_FOUND, json!({"method": call.method})),
    }
}

fn diag(name: &str, call: &Call, ctx: &Ctx, peer: &Peer, work: &mut Work) -> Result<Outcome, Outcome> {
    let v = ctx.view;
    Ok(match name {
        "GetInfo" => ok(&Info {
            shim_version: env!("CARGO_PKG_VERSION").into(),
            interface_version: husk_proto::INTERFACE_VERSION.into(),
            kernel: process::kernel_features(),
            socket: ctx.address.to_string(),
        }),
        "Status" => {
            let running = v.app_exit.is_none();
            ok(&Status {
                shim_pid: i64::from(std::process::id()),
                mode: ctx.app.mode.into(),
                uptime_seconds: v.stats.started.elapsed().as_secs_f64(),
                child: (v.child > 0).then(|| ChildStatus {
                    pid: i64::from(v.child),
                    argv: ctx.app.argv.clone(),
                    started_at: unix_seconds(v.stats.started_at),
                    state: if running { "running" } else { "exited" }.into(),
                }),
                signals_forwarded: v
                    .stats
                    .forwarded
                    .iter()
                    .map(|(sig, n)| (sig.to_string(), *n as i64))
                    .collect(),
                reaped: v.stats.reaped as i64,
                last_exit: v.app_exit.map(|e| e.describe()),
            })
        }
        "ListProcesses" => {
            let pending = Pending::Processes(work.scan.start(ctx.app_pid()));
            match resume(&pending, ctx, work) {
                Some(answer) => Outcome::Answer(answer),
                None => Outcome::Wait(pending),
            }
        }
        "ListThreads" => {
            let pid = target(call, ctx, true)?;
            match process::threads(pid) {
                Ok(threads) => ok(&Threads { threads }),
                Err(e) => proc_error(pid, peer, &e),
            }
        }
        "ListFds" => {
            let pid = target(call, ctx, true)?;
            guard(pid, peer)?;
            match process::fds(pid) {
                Ok(fds) => ok(&Fds { fds }),
                Err(e) => proc_error(pid, peer, &e),
            }
        }
        "Limits" => {
            let pid = target(call, ctx, false)?;
            match process::limits(pid) {
                Ok(limits) => ok(&Limits { limits }),
                Err(e) => proc_error(pid, peer, &e),
            }
        }
        "Mounts" => {
            let pid = target(call, ctx, false)?;
            match process::mounts(pid) {
                Ok(mounts) => ok(&Mounts { mounts }),
                Err(e) => proc_error(pid, peer, &e),
            }
        }
        "Environ" => {
            let pid = target(call, ctx, false)?;
            guard(pid, peer)?;
            let allow = &ctx.config.env_allow;
            match process::environ(pid, &|n| allow.iter().any(|a| a == n)) {
                Ok(variables) => ok(&Environ { variables }),
                Err(e) => proc_error(pid, peer, &e),
            }
        }
        "ListSockets" => {
            let sockets = net::sockets(&|pid| peer.may_read(process::process_uid(pid)));
            ok(&Sockets { sockets })
        }
        "NetConfig" => ok(&net::net_config()),
        "Cgroup" => {
            let pid = ctx.app_pid().unwrap_or(std::process::id() as i32);
            ok(&cgroup::cgroup(pid))
        }
        "Security" => {
            let pid = target(call, ctx, false)?;
            match process::security(pid) {
                Ok(mut s) => {
                    if Some(pid) == ctx.app_pid() {
                        s.policy = Some(ctx.app.policy.clone());
                    } else if pid == std::process::id() as i32 {
                        s.policy = Some(ctx.shim_policy.clone());
                    }
                    ok(&s)
                }
                Err(e) => proc_error(pid, peer, &e),
            }
        }
        "Checks" => {
            for name in work.health.names() {
                work.health.ensure(&name);
            }
            match resume(&Pending::Checks, ctx, work) {
                Some(answer) => Outcome::Answer(answer),
                None => Outcome::Wait(Pending::Checks),
            }
        }
        "RunCheck" => {
            let p: NameParam = params(call)?;
            if !work.health.has(&p.name) {
                return Ok(error(errors::NO_SUCH_CHECK, json!({"name": p.name})));
            }
            work.health.ensure(&p.name);
            let pending = Pending::RunCheck(p.name);
            match resume(&pending, ctx, work) {
                Some(answer) => Outcome::Answer(answer),
                None => Outcome::Wait(pending),
            }
        }
        "LastExit" => ok(&LastExit {
            exited: v.app_exit.is_some(),
            description: v.app_exit.map(|e| e.describe()),
            status: v.app_exit.map(|e| i64::from(e.status())),
        }),
        _ => error(errors::METHOD_NOT_FOUND, json!({"method": call.method})),
    })
}

/// The answer to a parked call once none of its checks is running or its scan has finished,
/// `None` until then.
pub fn resume(pending: &Pending, ctx: &Ctx, work: &Work) -> Option<Answer> {
    let health = &work.health;
    match pending {
        // Built and encoded on the scan's thread, the app's tree marked.
        Pending::Processes(seen) => work.scan.result_after(*seen).map(Answer::Encoded),
        Pending::Checks => {
            let names = health.names();
            if names.iter().any(|n| health.busy(n)) {
                return None;
            }
            Some(Answer::Reply(Reply::ok(&Checks {
                app_running: ctx.app_pid().is_some(),
                checks: names.iter().map(|n| health.report(n)).collect(),
            })))
        }
        Pending::RunCheck(name) => {
            (!health.busy(name)).then(|| Answer::Reply(Reply::ok(&json!({ "check": health.report(name) }))))
        }
    }
}
