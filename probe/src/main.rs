//! `probe`: asks the shim's diagnostics socket what is going on in a container that has no
//! shell, no ps, no curl. Without a reachable socket it answers what /proc alone can tell
//! (standalone) and says so on stderr.
//!
//! Exit codes: 0 ok/healthy, 1 unhealthy or the check failed, 2 usage error, 3 the shim could
//! not be reached, 4 protocol or server error. `health --docker` maps every failure to 1.

mod render;
mod standalone;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use husk_probe::client::{self, CallError};
use serde_json::{json, Value};

const OK: u8 = 0;
const FAILED: u8 = 1;
const USAGE: u8 = 2;
const UNREACHABLE: u8 = 3;
const SERVER_ERROR: u8 = 4;

const DEFAULT_SOCKET: &str = "/dev/shm/husk.sock";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

const USAGE_TEXT: &str = "usage: probe [--socket ADDR] [-o table|json] [--timeout DURATION] COMMAND [ARGS]

Commands (answered by the shim's diagnostics socket):
  info                     shim version, kernel features, socket address
  status                   the shim, the app, counters of signals forwarded and processes reaped
  ps [--threads]           every process (the app's tree is marked)
  fds PID                  open descriptors of a process
  ports                    TCP and UDP sockets with their processes
  net                      interfaces, addresses, routes, resolv.conf, /etc/hosts
  env [PID]                environment variable names (values redacted unless allowed)
  mounts [PID]             mount table
  limits [PID]             resource limits
  cgroup                   memory, CPU and pids accounting
  security [PID]           uids, capabilities, no_new_privs, seccomp, the applied policy
  last-exit                how the app ended
  health [--docker]        the app runs and every configured check passes
Checks run by probe itself, with the caller's own network reach:
  tcp HOST:PORT            connect
  http URL [--expect CODE] GET, healthy on CODE (default: any 2xx or 3xx)
  dns NAME                 resolve a name

ps, fds, ports, net, env, mounts, limits, cgroup and security are answered from /proc
(standalone) when no shim is reachable. ADDR is a path or @NAME (abstract); default
/dev/shm/husk.sock, or $PROBE_SOCKET.
Exit codes: 0 ok, 1 unhealthy/check failed, 2 usage, 3 shim unreachable, 4 protocol or server error.
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, PartialEq, Eq)]
struct Cli {
    socket: String,
    output: Output,
    timeout: Duration,
    command: String,
    args: Vec<String>,
}

fn parse_duration(text: &str) -> Option<Duration> {
    let (num, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0 && secs < 86400.0).then(|| Duration::from_secs_f64(secs))
}

fn parse_cli(args: &[String]) -> Result<Cli, String> {
    let mut cli = Cli {
        socket: std::env::var("PROBE_SOCKET").unwrap_or_else(|_| DEFAULT_SOCKET.into()),
        output: Output::Table,
        timeout: DEFAULT_TIMEOUT,
        command: String::new(),
        args: Vec::new(),
    };
    let mut i = 0;
    let value = |i: usize, name: &str| args.get(i + 1).cloned().ok_or_else(|| format!("{name} needs a value"));
    while i < args.len() {
        let arg = args[i].as_str();
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg, None),
        };
        let take = |i: &mut usize| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => {
                    let v = value(*i, name)?;
                    *i += 1;
                    Ok(v)
                }
            }
        };
        match name {
            "--socket" | "-s" => cli.socket = take(&mut i)?,
            "-o" | "--output" => {
                cli.output = match take(&mut i)?.as_str() {
                    "table" => Output::Table,
                    "json" => Output::Json,
                    other => return Err(format!("-o: expected table or json, got {other:?}")),
                }
            }
            "--timeout" => {
                let t = take(&mut i)?;
                cli.timeout = parse_duration(&t).ok_or_else(|| format!("--timeout: not a duration: {t:?}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            _ if arg.starts_with('-') && cli.command.is_empty() => return Err(format!("unknown option {arg:?}")),
            _ => {
                cli.command = arg.to_string();
                cli.args = args[i + 1..].to_vec();
                return Ok(cli);
            }
        }
        i += 1;
    }
    Err("no command given".into())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--version") {
        println!("probe {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let cli = match parse_cli(&args) {
        Ok(cli) => cli,
        Err(message) if message.is_empty() => {
            print!("{USAGE_TEXT}");
            return ExitCode::SUCCESS;
        }
        Err(message) => return usage(&message),
    };
    ExitCode::from(run(&cli))
}

fn usage(message: &str) -> ExitCode {
    eprintln!("probe: {message}\n{USAGE_TEXT}");
    ExitCode::from(USAGE)
}

/// What a command needs from the shim.
struct Request {
    method: &'static str,
    params: Value,
    /// Answerable from /proc when the socket is unreachable.
    standalone: bool,
}

fn pid_arg(args: &[String], required: bool) -> Result<Option<i64>, String> {
    match args.first() {
        Some(p) => p
            .parse::<i64>()
            .ok()
            .filter(|&p| p > 0)
            .map(Some)
            .ok_or_else(|| format!("not a pid: {p:?}")),
        None if required => Err("a PID is required".into()),
        None => Ok(None),
    }
}

fn no_more(args: &[String], allowed: usize) -> Result<(), String> {
    match args.get(allowed) {
        Some(extra) => Err(format!("unexpected argument {extra:?}")),
        None => Ok(()),
    }
}

fn request(cli: &Cli) -> Result<Request, String> {
    let a = &cli.args;
    let simple = |method, standalone| Request {
        method,
        params: json!({}),
        standalone,
    };
    let with_pid = |method, required: bool| -> Result<Request, String> {
        no_more(a, 1)?;
        let pid = pid_arg(a, required)?;
        Ok(Request {
            method,
            params: pid.map_or(json!({}), |p| json!({ "pid": p })),
            standalone: true,
        })
    };
    Ok(match cli.command.as_str() {
        "info" => (no_more(a, 0).map(|_| simple("GetInfo", false)))?,
        "status" => (no_more(a, 0).map(|_| simple("Status", false)))?,
        "ps" => {
            if a.iter().any(|x| x != "--threads") {
                return Err(format!("ps: unexpected argument {:?}", a[0]));
            }
            simple("ListProcesses", true)
        }
        "fds" => with_pid("ListFds", true)?,
        "ports" => (no_more(a, 0).map(|_| simple("ListSockets", true)))?,
        "net" => (no_more(a, 0).map(|_| simple("NetConfig", true)))?,
        "env" => with_pid("Environ", false)?,
        "mounts" => with_pid("Mounts", false)?,
        "limits" => with_pid("Limits", false)?,
        "cgroup" => (no_more(a, 0).map(|_| simple("Cgroup", true)))?,
        "security" => with_pid("Security", false)?,
        "last-exit" => (no_more(a, 0).map(|_| simple("LastExit", false)))?,
        "health" => {
            if a.iter().any(|x| x != "--docker") {
                return Err(format!("health: unexpected argument {:?}", a[0]));
            }
            simple("Checks", false)
        }
        other => return Err(format!("unknown command {other:?}")),
    })
}

fn run(cli: &Cli) -> u8 {
    match cli.command.as_str() {
        "tcp" | "http" | "dns" => return local_check(cli),
        _ => {}
    }
    let req = match request(cli) {
        Ok(r) => r,
        Err(message) => {
            eprintln!("probe: {message}\n{USAGE_TEXT}");
            return USAGE;
        }
    };
    let docker = cli.command == "health" && cli.args.iter().any(|a| a == "--docker");
    let fail = |code: u8| if docker { FAILED } else { code };
    let method = format!("{}.{}", husk_proto::INTERFACE, req.method);
    let result = client::connect(&cli.socket, cli.timeout)
        .and_then(|mut stream| client::call(&mut stream, &method, req.params.clone(), cli.timeout));
    let mut result = match result {
        Ok(v) => v,
        Err(CallError::Unreachable(why)) if req.standalone => {
            eprintln!("probe: the shim is not reachable ({why}); answering from /proc (standalone)");
            match standalone::answer(req.method, &req.params) {
                Ok(v) => v,
                Err(message) => {
                    eprintln!("probe: {message}");
                    return SERVER_ERROR;
                }
            }
        }
        Err(CallError::Unreachable(why)) => {
            eprintln!("probe: cannot reach the shim: {why}");
            return fail(UNREACHABLE);
        }
        Err(CallError::Server { name, parameters }) => {
            eprintln!("probe: {}", describe_error(&name, &parameters));
            return fail(SERVER_ERROR);
        }
        Err(CallError::Protocol(message)) => {
            eprintln!("probe: protocol error: {message}");
            return fail(SERVER_ERROR);
        }
    };
    if cli.command == "ps" && cli.args.iter().any(|a| a == "--threads") {
        add_threads(cli, &mut result);
    }
    let status = if cli.command == "health" {
        if render::healthy(&result) {
            OK
        } else {
            FAILED
        }
    } else {
        OK
    };
    let text = match cli.output {
        Output::Json => format!("{}\n", serde_json::to_string_pretty(&result).unwrap_or_default()),
        Output::Table => render::table(&cli.command, &result),
    };
    let mut out = std::io::stdout().lock();
    if out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_err() {
        return fail(SERVER_ERROR);
    }
    status
}

/// `ps --threads`: each process gets its thread list (from the shim, or /proc when standalone).
fn add_threads(cli: &Cli, result: &mut Value) {
    let Some(list) = result.get_mut("processes").and_then(Value::as_array_mut) else {
        return;
    };
    for p in list {
        let Some(pid) = p.get("pid").and_then(Value::as_i64) else {
            continue;
        };
        let params = json!({ "pid": pid });
        let threads = client::connect(&cli.socket, cli.timeout)
            .and_then(|mut s| client::call(&mut s, "io.husk.Diag.ListThreads", params.clone(), cli.timeout))
            .ok()
            .or_else(|| standalone::answer("ListThreads", &params).ok())
            .and_then(|v| v.get("threads").cloned())
            .unwrap_or(Value::Array(Vec::new()));
        if let Some(obj) = p.as_object_mut() {
            obj.insert("thread_list".into(), threads);
        }
    }
}

fn describe_error(name: &str, parameters: &Value) -> String {
    let field = |k: &str| parameters.get(k).map(|v| v.to_string()).unwrap_or_default();
    match name {
        husk_proto::errors::PERMISSION_DENIED => {
            format!(
                "permission denied for uid {}: {}",
                field("uid"),
                parameters.get("reason").and_then(Value::as_str).unwrap_or("")
            )
        }
        husk_proto::errors::NO_SUCH_PROCESS => format!("no such process: {}", field("pid")),
        husk_proto::errors::NO_SUCH_CHECK => format!("no such health check: {}", field("name")),
        _ => format!("the shim answered {name} {parameters}"),
    }
}

/// `tcp`, `http`, `dns`: run here, with probe's own network reach.
fn local_check(cli: &Cli) -> u8 {
    let a = &cli.args;
    let result: Result<(Value, String), String> = match (cli.command.as_str(), a.as_slice()) {
        ("tcp", [target]) => husk_inspect::check::tcp(target, cli.timeout)
            .map(|d| (json!({"target": target, "ok": true, "detail": d}), d))
            .map_err(|e| e.to_string()),
        ("http", [url, rest @ ..]) => {
            let expect = match rest {
                [] => None,
                [flag, code] if flag == "--expect" => match code.parse::<u16>() {
                    Ok(c) => Some(c),
                    Err(_) => {
                        eprintln!("probe: --expect: not an HTTP status: {code:?}");
                        return USAGE;
                    }
                },
                _ => {
                    eprintln!("probe: usage: http URL [--expect CODE]");
                    return USAGE;
                }
            };
            if let Err(e) = husk_inspect::check::parse_http_url(url) {
                eprintln!("probe: {e}");
                return USAGE;
            }
            husk_inspect::check::http(url, expect, cli.timeout)
                .map(|d| (json!({"url": url, "ok": true, "detail": d}), d))
        }
        ("dns", [name]) => {
            let lookup = if name.contains(':') && !name.starts_with('[') {
                format!("[{name}]:0")
            } else {
                format!("{name}:0")
            };
            husk_inspect::check::resolve(&lookup).map(|addrs| {
                let mut ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                ips.dedup();
                let text = ips.join("\n");
                (json!({"name": name, "ok": true, "addresses": ips}), text)
            })
        }
        (cmd, _) => {
            eprintln!("probe: {cmd}: wrong arguments\n{USAGE_TEXT}");
            return USAGE;
        }
    };
    match result {
        Ok((json, text)) => {
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default()),
                Output::Table => println!("{text}"),
            }
            OK
        }
        Err(e) => {
            match cli.output {
                Output::Json => println!("{}", json!({"ok": false, "detail": e})),
                Output::Table => eprintln!("probe: {e}"),
            }
            FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn command_lines() {
        let cli = parse_cli(&s(&["--socket", "@x", "-o", "json", "--timeout=2s", "fds", "7"])).unwrap();
        assert_eq!(cli.socket, "@x");
        assert_eq!(cli.output, Output::Json);
        assert_eq!(cli.timeout, Duration::from_secs(2));
        assert_eq!((cli.command.as_str(), cli.args.clone()), ("fds", s(&["7"])));
        assert!(parse_cli(&s(&["-o", "yaml", "ps"])).is_err());
        assert!(parse_cli(&s(&["--bogus", "ps"])).is_err());
        assert!(parse_cli(&s(&[])).is_err());
        assert!(request(&parse_cli(&s(&["fds"])).unwrap()).is_err());
        assert!(request(&parse_cli(&s(&["env", "x"])).unwrap()).is_err());
        assert!(request(&parse_cli(&s(&["frobnicate"])).unwrap()).is_err());
        assert!(!request(&parse_cli(&s(&["status"])).unwrap()).unwrap().standalone);
        assert!(request(&parse_cli(&s(&["ps"])).unwrap()).unwrap().standalone);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("0"), None);
    }
}
