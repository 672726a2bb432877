//! Answers from /proc when no shim is reachable: the same messages the shim would send, built
//! by the same `husk-inspect` code, with what probe's own uid can read. Environment values are
//! always redacted here (no --diag-env-allow to consult).

use husk_inspect::{cgroup, net, process};
use husk_proto::{Environ, Fds, Limits, Mounts, Processes, Sockets, Threads};
use serde_json::Value;

/// Without a PID: PID 1 (in a container, the app when no shim runs).
fn pid(params: &Value, default: i32) -> i32 {
    params.get("pid").and_then(Value::as_i64).map_or(default, |p| p as i32)
}

fn io(pid: i32, e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!("no such process: {pid}"),
        _ => format!("process {pid}: {e}"),
    }
}

pub fn answer(method: &str, params: &Value) -> Result<Value, String> {
    let to = |v: Result<Value, serde_json::Error>| v.map_err(|e| e.to_string());
    let p = pid(params, 1);
    match method {
        "ListProcesses" => to(serde_json::to_value(Processes {
            processes: process::list_processes(),
        })),
        "ListThreads" => to(serde_json::to_value(Threads {
            threads: process::threads(p).map_err(|e| io(p, e))?,
        })),
        "ListFds" => to(serde_json::to_value(Fds {
            fds: process::fds(p).map_err(|e| io(p, e))?,
        })),
        "ListSockets" => to(serde_json::to_value(Sockets {
            sockets: net::sockets(&|_| true),
        })),
        "NetConfig" => to(serde_json::to_value(net::net_config())),
        "Environ" => to(serde_json::to_value(Environ {
            variables: process::environ(p, &|_| false).map_err(|e| io(p, e))?,
        })),
        "Mounts" => to(serde_json::to_value(Mounts {
            mounts: process::mounts(p).map_err(|e| io(p, e))?,
        })),
        "Limits" => to(serde_json::to_value(Limits {
            limits: process::limits(p).map_err(|e| io(p, e))?,
        })),
        "Cgroup" => to(serde_json::to_value(cgroup::cgroup(p))),
        "Security" => to(serde_json::to_value(process::security(p).map_err(|e| io(p, e))?)),
        other => Err(format!("{other} needs the shim")),
    }
}
