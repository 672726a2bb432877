//! The diagnostics socket and probe, end to end: the real static `shim` as PID 1 of a fresh PID
//! namespace running `husk-app`, queried by the real static `probe` (and by an outside varlink
//! client), from outside the namespace unless a test says otherwise.
//!
//! Every bound here is a liveness limit (how long to wait before calling it hung), never a
//! timing claim.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use husk_tests::{bin, pid1_command, require_root, run, scratch, send, status, wait_for, Outcome, Pid1, Running};
use serde_json::Value;

const LIVENESS: Duration = Duration::from_secs(30);
const SIGHUP: i32 = 1;
const SIGUSR1: i32 = 10;
const SIGUSR2: i32 = 12;
const SIGTERM: i32 = 15;
/// The uid the app runs as in most tests (the shim's `--user`, so the app is pid 2).
const APP_UID: u32 = 1234;

/// A running shim (its output collected as it comes) and its diagnostics socket.
struct Shim {
    pid1: Option<Running>,
    socket: String,
}

/// A socket path of this test's own.
fn socket_path(name: &str) -> String {
    scratch(name).join("diag.sock").to_string_lossy().into_owned()
}

/// A free TCP port on 127.0.0.1 (the app binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Shim {
    /// `shim --diag-socket SOCKET SHIM_ARGS -- APP...`, waiting for the app's "ready" and the socket.
    fn start(socket: &str, shim_args: &[&str], app: &[&str], env: &[(&str, &str)]) -> Shim {
        let mut args = vec!["--diag-socket", socket];
        args.extend_from_slice(shim_args);
        args.push("--");
        let app_path = bin("husk-app").to_string_lossy().into_owned();
        let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        full.extend(
            app.iter()
                .map(|a| if *a == "APP" { app_path.clone() } else { a.to_string() }),
        );
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let mut cmd = pid1_command(&refs);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let shim = Shim {
            pid1: Some(Pid1::start_with(cmd)),
            socket: socket.to_string(),
        };
        shim.wait_output("ready");
        if !socket.is_empty() && socket != "off" {
            wait_for(LIVENESS, || (probe(socket, &["info"]).code == Some(0)).then_some(()))
                .unwrap_or_else(|| panic!("the socket never answered; stderr: {}", shim.stderr()));
        }
        shim
    }

    fn pid(&self) -> i32 {
        self.pid1.as_ref().unwrap().pid
    }

    fn stdout(&self) -> String {
        self.pid1.as_ref().unwrap().stdout()
    }

    fn stderr(&self) -> String {
        self.pid1.as_ref().unwrap().stderr()
    }

    fn wait_output(&self, text: &str) {
        wait_for(LIVENESS, || self.stdout().contains(text).then_some(())).unwrap_or_else(|| {
            panic!(
                "the app never printed {text:?}; stdout: {} stderr: {}",
                self.stdout(),
                self.stderr()
            )
        });
    }

    /// Signals are still forwarded: a USR1 sent to the shim reaches the app.
    fn assert_forwards(&self) {
        let before = self.stdout().matches("got 10").count();
        send(self.pid(), SIGUSR1);
        wait_for(LIVENESS, || {
            (self.stdout().matches("got 10").count() > before).then_some(())
        })
        .expect("SIGUSR1 was not forwarded to the app");
    }

    /// Zombies are still reaped: on HUP the app leaves an orphan that exits, and the shim's
    /// reaped counter goes up.
    fn assert_reaps(&self) {
        let reaped = |s: &Shim| probe_json(&s.socket, &["status"])["reaped"].as_i64().unwrap();
        let before = reaped(self);
        send(self.pid(), SIGHUP);
        wait_for(LIVENESS, || (reaped(self) > before).then_some(())).expect("the orphan was not reaped");
    }

    fn rss_kib(&self) -> u64 {
        status(self.pid())
            .get("VmRSS")
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS of the shim")
    }

    /// Stops the shim with SIGTERM and returns how it ended.
    fn stop(mut self) -> Outcome {
        let pid1 = self.pid1.take().unwrap();
        send(pid1.pid, SIGTERM);
        pid1.finish(LIVENESS)
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if let Some(pid1) = self.pid1.take() {
            let pid = pid1.pid;
            // Dropping kills unshare, whose --kill-child SIGKILLs the shim; wait until it is
            // really gone, so the next step does not talk to a dying shim.
            drop(pid1);
            let gone = wait_for(LIVENESS, || {
                husk_tests::stat(pid).map_or(Some(()), |(state, _)| (state == 'Z').then_some(()))
            });
            if gone.is_none() && !std::thread::panicking() {
                panic!("the shim (pid {pid}) outlived its unshare");
            }
        }
    }
}

fn probe_cmd(socket: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("probe"));
    cmd.args(["--socket", socket]).args(args);
    cmd
}

fn probe(socket: &str, args: &[&str]) -> Outcome {
    run(probe_cmd(socket, args), LIVENESS)
}

/// `probe --socket S -o json ARGS` run as `uid` (via setpriv), or as root.
fn probe_as(uid: Option<u32>, socket: &str, args: &[&str]) -> Outcome {
    let Some(uid) = uid else {
        return probe(socket, args);
    };
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={uid}"),
        &format!("--regid={uid}"),
        "--clear-groups",
        "--",
    ])
    .arg(bin("probe"))
    .args(["--socket", socket])
    .args(args);
    run(cmd, LIVENESS)
}

fn probe_json(socket: &str, args: &[&str]) -> Value {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    let out = probe(socket, &full);
    assert_eq!(out.code, Some(0), "probe {args:?}: {}", out.stderr);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("probe {args:?}: not JSON: {e}"))
}

/// The shim options that run the app as uid and gid APP_UID.
fn app_user() -> String {
    format!("{APP_UID}:{APP_UID}")
}

/// `husk-app ARGS`.
fn app_argv(args: &[&str]) -> Vec<String> {
    std::iter::once("APP")
        .chain(args.iter().copied())
        .map(String::from)
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn probe_answers_every_question_about_the_app() {
    if !require_root("probe_answers_every_question_about_the_app") {
        return;
    }
    let socket = socket_path("answers");
    let port = free_port();
    let port_s = port.to_string();
    let app = app_argv(&["listen", &port_s, "child"]);
    let user = app_user();
    let shim = Shim::start(
        &socket,
        &[
            "--user",
            &user,
            "--diag-env-allow",
            "VISIBLE",
            "--hold-on-failure",
            "60s",
        ],
        &strs(&app),
        &[("VISIBLE", "shown"), ("SECRET_TOKEN", "hunter2")],
    );

    // ps: the app (pid 2, child of the shim) and its child, with their uid, marked as the app's.
    let ps = probe_json(&socket, &["ps"]);
    let procs = ps["processes"].as_array().unwrap();
    let app_proc = procs.iter().find(|p| p["pid"] == 2).expect("the app in ps");
    assert_eq!(app_proc["ppid"], 1);
    assert_eq!(app_proc["uid"], APP_UID);
    assert_eq!(app_proc["in_app"], true);
    assert!(app_proc["cmdline"].as_str().unwrap().contains("husk-app"));
    let child = procs.iter().find(|p| p["ppid"] == 2).expect("the app's child in ps");
    assert_eq!(child["uid"], APP_UID);
    assert_eq!(child["in_app"], true);
    let shim_proc = procs.iter().find(|p| p["pid"] == 1).unwrap();
    assert_eq!(
        (shim_proc["uid"].as_i64(), shim_proc["in_app"].as_bool()),
        (Some(0), Some(false))
    );
    let table = probe(&socket, &["ps"]);
    assert_eq!(table.code, Some(0));
    assert!(table.stdout_text().lines().next().unwrap().starts_with("PID"));
    let threads = probe_json(&socket, &["ps", "--threads"]);
    let app_threads = threads["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == 2)
        .unwrap();
    assert_eq!(app_threads["thread_list"][0]["tid"], 2);
    for cmd in [
        &["net"][..],
        &["mounts"],
        &["limits"],
        &["fds", "2"],
        &["info"],
        &["cgroup"],
    ] {
        let out = probe(&socket, cmd);
        assert_eq!(out.code, Some(0), "{cmd:?}: {}", out.stderr);
        assert!(
            !out.stdout.is_empty() && out.stderr.is_empty(),
            "{cmd:?}: {}",
            out.stderr
        );
    }

    // ports: the app's listening TCP port with the app's pid.
    let ports = probe_json(&socket, &["ports"]);
    let listen = ports["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["local"] == format!("127.0.0.1:{port}") && s["state"] == "LISTEN")
        .expect("the app's port");
    assert_eq!(listen["pid"], 2);
    assert_eq!(listen["proto"], "tcp");
    let table = probe(&socket, &["ports"]).stdout_text();
    assert!(
        table
            .lines()
            .any(|l| l.contains(&format!("127.0.0.1:{port}")) && l.contains(" 2 ")),
        "{table}"
    );

    // status: the child, uptime and counters.
    shim.assert_forwards();
    shim.assert_reaps();
    let st = probe_json(&socket, &["status"]);
    assert_eq!(st["shim_pid"], 1);
    assert_eq!(st["mode"], "pid1");
    assert_eq!(st["child"]["pid"], 2);
    assert_eq!(st["child"]["state"], "running");
    assert!(st["child"]["argv"].to_string().contains("husk-app"));
    assert!(st["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert!(st["signals_forwarded"]["SIGUSR1"].as_i64().unwrap() >= 1);
    assert!(st["reaped"].as_i64().unwrap() >= 1);
    assert_eq!(probe(&socket, &["status"]).code, Some(0));

    // security: uids, capability sets, no_new_privs, seccomp and (for the app) the policy.
    let sec = probe_json(&socket, &["security", "2"]);
    assert_eq!(sec["uids"], serde_json::json!([APP_UID, APP_UID, APP_UID, APP_UID]));
    // The default policy: every capability set empty, no_new_privs, the seccomp filter.
    assert_eq!(sec["cap_effective"]["names"], serde_json::json!([]));
    assert_eq!(sec["cap_bounding"]["names"], serde_json::json!([]), "{sec}");
    assert_eq!(sec["no_new_privs"], true);
    assert_eq!(sec["seccomp"], "filter");
    // And the policy the shim applied, as `--check` shows it.
    assert_eq!(
        sec["policy"]["user"],
        format!("{APP_UID}:{APP_UID}"),
        "the app's policy: {sec}"
    );
    assert_eq!(sec["policy"]["seccomp"], "default");
    assert_eq!(sec["policy"]["cap-keep"], serde_json::json!([]));
    assert_eq!(sec["policy"]["no-new-privs"], true);
    // The shim's own confinement after the spawn: three capabilities, no_new_privs, its allowlist.
    let shim_sec = probe_json(&socket, &["security", "1"]);
    assert_eq!(
        shim_sec["cap_effective"]["names"],
        serde_json::json!(["CAP_DAC_READ_SEARCH", "CAP_KILL", "CAP_SYS_PTRACE"]),
        "{shim_sec}"
    );
    assert_eq!(shim_sec["cap_permitted"]["names"], shim_sec["cap_effective"]["names"]);
    assert_eq!(shim_sec["no_new_privs"], true);
    assert_eq!(shim_sec["seccomp"], "filter");
    assert_eq!(shim_sec["policy"]["self"], true);
    assert_eq!(shim_sec["policy"]["seccomp"], "allowlist");
    assert!(probe(&socket, &["security"]).stdout_text().contains("CapEff"));

    // cgroup, net, mounts, limits, info, fds answer.
    let cg = probe_json(&socket, &["cgroup"]);
    assert!(["v1", "v2", "none"].contains(&cg["version"].as_str().unwrap()));
    assert_eq!(probe(&socket, &["cgroup"]).code, Some(0));
    let net = probe_json(&socket, &["net"]);
    assert!(net["interfaces"].as_array().unwrap().iter().any(|i| i["name"] == "lo"));
    assert!(net["routes"].is_array());
    let mounts = probe_json(&socket, &["mounts"]);
    assert!(mounts["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["mountpoint"] == "/proc"));
    let limits = probe_json(&socket, &["limits", "2"]);
    assert!(limits["limits"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["name"] == "Max open files"));
    let info = probe_json(&socket, &["info"]);
    assert_eq!(info["socket"], socket.as_str());
    assert_eq!(info["interface_version"], "1");
    let fds = probe_json(&socket, &["fds", "2"]);
    assert!(fds["fds"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["socket_inode"].is_i64()));
    assert_eq!(
        probe(&socket, &["fds", "99999"]).code,
        Some(4),
        "no such process is a server error"
    );

    // env: names listed, values redacted unless allowed.
    let env = probe_json(&socket, &["env"]);
    let vars = env["variables"].as_array().unwrap();
    let var = |n: &str| {
        vars.iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("{n} in env"))
    };
    assert_eq!(var("VISIBLE")["value"], "shown");
    assert!(var("SECRET_TOKEN")["value"].is_null());
    let table = probe(&socket, &["env"]).stdout_text();
    assert!(
        table.contains("SECRET_TOKEN=<redacted>") && !table.contains("hunter2"),
        "{table}"
    );

    // last-exit: running, then how it ended (the hold keeps the socket up after the failure).
    assert_eq!(probe_json(&socket, &["last-exit"])["exited"], false);
    send(shim.pid(), SIGUSR2); // the app exits 3
    wait_for(LIVENESS, || {
        (probe_json(&socket, &["last-exit"])["exited"] == true).then_some(())
    })
    .expect("last-exit never reported the exit");
    let last = probe(&socket, &["last-exit"]);
    assert_eq!((last.code, last.stdout_text().trim()), (Some(0), "exited with code 3"));
    assert_eq!(probe_json(&socket, &["status"])["last_exit"], "exited with code 3");
    let out = shim.stop();
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(!std::path::Path::new(&socket).exists(), "the socket is removed on exit");
}

/// The outside client: the `varlink` package from PyPI (tests/requirements.txt).
#[test]
fn an_outside_varlink_client_is_served() {
    if !require_root("an_outside_varlink_client_is_served") {
        return;
    }
    let has_varlink = Command::new("python3")
        .args(["-c", "import varlink"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_varlink {
        let on_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !on_ci,
            "the python `varlink` package is missing: pip install -r tests/requirements.txt"
        );
        eprintln!("SKIP an_outside_varlink_client_is_served: pip install -r tests/requirements.txt");
        return;
    }
    let socket = socket_path("varlink");
    let _shim = Shim::start(&socket, &[], &["APP", "child"], &[]);
    let script = r#"
import json, sys, varlink
client = varlink.Client(address="unix:" + sys.argv[1])
interfaces = client.get_interfaces()
iface = client.get_interface("io.husk.Diag")
with client.open("io.husk.Diag") as diag:
    procs = diag.ListProcesses()["processes"]
    status = diag.Status()
print(json.dumps({"info": client.info, "interfaces": interfaces, "name": iface.name,
                  "pids": [p["pid"] for p in procs], "child": status["child"]["pid"]}))
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script, &socket]);
    let out = run(cmd, LIVENESS);
    assert_eq!(out.code, Some(0), "python varlink client: {}", out.stderr);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["info"]["product"], "shim");
    assert!(v["interfaces"]
        .as_array()
        .unwrap()
        .contains(&Value::from("io.husk.Diag")));
    assert_eq!(v["name"], "io.husk.Diag");
    let pids = v["pids"].as_array().unwrap();
    assert!(pids.contains(&Value::from(1)) && pids.contains(&Value::from(2)) && pids.len() >= 3);
    assert_eq!(v["child"], 2);

    // The varlink command-line tool too.
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "varlink.cli", "info", &format!("unix:{socket}")]);
    let out = run(cmd, LIVENESS);
    assert_eq!(out.code, Some(0), "varlink.cli info: {}", out.stderr);
    assert!(out.stdout_text().contains("io.husk.Diag"));
}

#[test]
fn access_follows_the_peer_uid_and_the_app_tree() {
    if !require_root("access_follows_the_peer_uid_and_the_app_tree") {
        return;
    }
    let socket = socket_path("access");
    let app_uid = APP_UID.to_string();
    let app = app_argv(&["child"]);
    let user = app_user();
    let shim = Shim::start(
        &socket,
        &["--user", &user, "--diag-allow-uid", &app_uid],
        &strs(&app),
        &[],
    );
    let mode = std::fs::metadata(&socket).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(
        mode.unwrap(),
        0o666,
        "another uid was allowed: the peer check is the gate"
    );

    // A disallowed uid is refused with PermissionDenied naming it; probe exits 4.
    let refused = probe_as(Some(1600), &socket, &["status"]);
    assert_eq!(refused.code, Some(4), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("permission denied for uid 1600"),
        "{}",
        refused.stderr
    );

    // An outside process with the app's uid is served, but only with what that uid may read.
    let served = probe_as(Some(APP_UID), &socket, &["status"]);
    assert_eq!(served.code, Some(0), "{}", served.stderr);
    assert_eq!(probe_as(Some(APP_UID), &socket, &["env", "2"]).code, Some(0));
    let shim_env = probe_as(Some(APP_UID), &socket, &["env", "1"]);
    assert_eq!(
        shim_env.code,
        Some(4),
        "the shim's environment belongs to root: {}",
        shim_env.stderr
    );
    assert_eq!(probe_as(Some(APP_UID), &socket, &["fds", "1"]).code, Some(4));
    drop(shim);

    // A process spawned by the app is refused, even as root; --diag-allow-app lets it in.
    for (extra, expected) in [(None, "4"), (Some("--diag-allow-app"), "0")] {
        let dir = scratch(&format!("inapp-{}", expected));
        let socket = dir.join("diag.sock").to_string_lossy().into_owned();
        let result = dir.join("result").to_string_lossy().into_owned();
        let probe_path = bin("probe").to_string_lossy().into_owned();
        let args: Vec<&str> = extra.into_iter().collect();
        let shim = Shim::start(
            &socket,
            &args,
            &["APP", "probe-as-app", &probe_path, &socket, &result],
            &[],
        );
        let code = wait_for(LIVENESS, || std::fs::read_to_string(&result).ok()).unwrap();
        assert_eq!(code, expected, "probe run by the app with {extra:?}");
        drop(shim);
    }
}

/// One raw exchange: send `bytes`, half-close, read whatever comes back until EOF.
fn raw_exchange(socket: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(LIVENESS)).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    reply
}

fn list_processes_raw(socket: &str) -> bool {
    let reply = raw_exchange(socket, b"{\"method\":\"io.husk.Diag.ListProcesses\"}\0");
    reply.last() == Some(&0)
        && serde_json::from_slice::<Value>(&reply[..reply.len() - 1])
            .is_ok_and(|v| v["parameters"]["processes"].as_array().is_some_and(|p| !p.is_empty()))
}

#[test]
fn abusive_clients_do_not_hurt_pid1() {
    if !require_root("abusive_clients_do_not_hurt_pid1") {
        return;
    }
    let socket = socket_path("abuse");
    let shim = Shim::start(&socket, &[], &["APP", "child"], &[]);
    shim.assert_forwards();
    shim.assert_reaps();
    let rss_before = shim.rss_kib();

    // 1000 malformed messages: bad JSON, wrong types, unknown methods, bad parameters, missing NUL.
    let bad: [&[u8]; 8] = [
        b"{\0",
        b"\xff\xfe\x00",
        b"{\"method\": 5}\0",
        b"[1,2,3]\0",
        b"{\"method\":\"io.husk.Diag.Nope\"}\0",
        b"{\"method\":\"io.husk.Diag.ListFds\",\"parameters\":{\"pid\":\"x\"}}\0",
        b"{\"method\":\"no.such.Interface\"}\0",
        b"{\"method\":\"io.husk.Diag.Status\"}",
    ];
    for i in 0..1000 {
        let reply = raw_exchange(&socket, bad[i % bad.len()]);
        if i % bad.len() >= 2 && i % bad.len() <= 6 {
            let text = String::from_utf8_lossy(&reply);
            assert!(
                text.contains("\"error\""),
                "message {i}: a varlink error expected, got {text:?}"
            );
        }
    }
    // Well-formed requests on one connection after a bad one still get answers.
    let reply = raw_exchange(
        &socket,
        b"{\"method\":\"io.husk.Diag.Nope\"}\0{\"method\":\"io.husk.Diag.LastExit\"}\0",
    );
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("MethodNotFound") && text.contains("\"exited\":false"),
        "{text}"
    );
    shim.assert_forwards();
    shim.assert_reaps();

    // Clients that hang up before reading their reply: the shim's failed write must not turn
    // into a SIGPIPE forwarded to the app.
    for _ in 0..50 {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(b"{\"method\":\"io.husk.Diag.ListProcesses\"}\0").unwrap();
        drop(s);
    }
    shim.assert_forwards();
    assert!(!shim.stdout().contains("got 13"), "SIGPIPE reached the app");

    // 10 MiB without a NUL: the shim hangs up long before.
    let mut s = UnixStream::connect(&socket).unwrap();
    s.set_write_timeout(Some(LIVENESS)).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < 10 * 1024 * 1024 {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 10 * 1024 * 1024, "the shim read 10 MiB without a NUL");
    drop(s);
    shim.assert_forwards();
    shim.assert_reaps();

    // 200 connections that send nothing: PID 1 carries on, and a request still gets its answer.
    let idle: Vec<UnixStream> = (0..200).map(|_| UnixStream::connect(&socket).unwrap()).collect();
    shim.assert_forwards();
    send(shim.pid(), SIGHUP);
    let answered = probe(&socket, &["--timeout", "60s", "status"]);
    assert_eq!(
        answered.code,
        Some(0),
        "a request behind 200 idle connections: {}",
        answered.stderr
    );
    drop(idle);
    shim.assert_reaps();

    // 200 concurrent clients calling ListProcesses in a loop: every one is answered.
    let failures = Arc::new(Mutex::new(0));
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let socket = socket.clone();
            let failures = Arc::clone(&failures);
            std::thread::spawn(move || {
                for _ in 0..3 {
                    if !list_processes_raw(&socket) {
                        *failures.lock().unwrap() += 1;
                    }
                }
            })
        })
        .collect();
    shim.assert_forwards();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*failures.lock().unwrap(), 0, "some ListProcesses calls got no answer");
    shim.assert_forwards();
    shim.assert_reaps();

    let rss_after = shim.rss_kib();
    assert!(
        rss_after < rss_before + 32 * 1024,
        "the shim's RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    let out = shim.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn health_reflects_the_configured_checks() {
    if !require_root("health_reflects_the_configured_checks") {
        return;
    }
    let socket = socket_path("health");
    let (tcp, http, closed) = (free_port(), free_port(), free_port());
    let tcp_check = format!("db=127.0.0.1:{tcp}");
    let http_check = format!("web=http://127.0.0.1:{http}/healthz");
    let (tcp_s, http_s) = (tcp.to_string(), http.to_string());
    let shim = Shim::start(
        &socket,
        &["--health-tcp", &tcp_check, "--health-http", &http_check],
        &["APP", "listen", &tcp_s, "http", &http_s],
        &[],
    );
    let healthy = probe(&socket, &["health"]);
    assert_eq!(healthy.code, Some(0), "{}{}", healthy.stdout_text(), healthy.stderr);
    assert!(healthy.stdout_text().contains("healthy"));
    assert_eq!(probe(&socket, &["health", "--docker"]).code, Some(0));
    let json = probe_json(&socket, &["health"]);
    assert_eq!(json["checks"].as_array().unwrap().len(), 2);
    drop(shim);

    // The same checks from the config file's "health" array, with expect and timeout.
    let dir = scratch("health-file");
    let config = dir.join("shim.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"health": [{{"name": "web", "http": "http://127.0.0.1:{http}/healthz", "expect": 200, "timeout": "1s"}},
                          {{"name": "db", "tcp": "127.0.0.1:{tcp}", "timeout": "2s"}}]}}"#
        ),
    )
    .unwrap();
    let socket = dir.join("diag.sock").to_string_lossy().into_owned();
    let config = config.to_string_lossy().into_owned();
    let shim = Shim::start(
        &socket,
        &["--config", &config],
        &["APP", "listen", &tcp_s, "http", &http_s],
        &[],
    );
    let json = probe_json(&socket, &["health"]);
    let names: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "db"]);
    assert_eq!(probe(&socket, &["health"]).code, Some(0));
    drop(shim);

    // A failing check makes the container unhealthy (1), with --docker too.
    let socket = socket_path("unhealthy");
    let bad = format!("gone=127.0.0.1:{closed}");
    let shim = Shim::start(&socket, &["--health-tcp", &bad], &["APP"], &[]);
    let out = probe(&socket, &["health"]);
    assert_eq!(out.code, Some(1), "{}", out.stdout_text());
    assert!(out.stdout_text().contains("FAIL"));
    assert_eq!(probe(&socket, &["health", "--docker"]).code, Some(1));
    drop(shim);

    // No shim: unreachable is 3, and 1 for Docker (which reserves 2).
    assert_eq!(probe(&socket, &["health"]).code, Some(3));
    assert_eq!(probe(&socket, &["health", "--docker"]).code, Some(1));
}

#[test]
fn probe_runs_tcp_http_and_dns_checks_itself() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n");
        }
    });
    let nowhere = "/nonexistent/probe.sock";
    assert_eq!(probe(nowhere, &["tcp", &addr]).code, Some(0));
    assert_eq!(
        probe(nowhere, &["tcp", &format!("127.0.0.1:{}", free_port())]).code,
        Some(1)
    );
    let url = format!("http://{addr}/healthz");
    assert_eq!(probe(nowhere, &["http", &url]).code, Some(0));
    assert_eq!(probe(nowhere, &["http", &url, "--expect", "200"]).code, Some(0));
    assert_eq!(probe(nowhere, &["http", &url, "--expect", "404"]).code, Some(1));
    assert_eq!(
        probe(nowhere, &["http", &format!("http://127.0.0.1:{}/", free_port())]).code,
        Some(1)
    );
    let dns = probe(nowhere, &["dns", "localhost"]);
    assert_eq!(dns.code, Some(0), "{}", dns.stderr);
    assert!(dns.stdout_text().contains("127.0.0.1") || dns.stdout_text().contains("::1"));
    assert_eq!(probe(nowhere, &["dns", "no-such-host.invalid"]).code, Some(1));
    // Usage errors are 2.
    assert_eq!(probe(nowhere, &["tcp"]).code, Some(2));
    assert_eq!(probe(nowhere, &["http", "ftp://x/"]).code, Some(2));
    assert_eq!(probe(nowhere, &["frobnicate"]).code, Some(2));
    assert_eq!(probe(nowhere, &["-o", "yaml", "ps"]).code, Some(2));
}

#[test]
fn probe_without_a_shim_answers_from_proc_or_exits_3() {
    let nowhere = "/nonexistent/probe.sock";
    for cmd in [&["status"][..], &["info"], &["last-exit"], &["health"]] {
        let out = probe(nowhere, cmd);
        assert_eq!(out.code, Some(3), "{cmd:?}: {}", out.stderr);
    }
    let ps = probe(nowhere, &["ps"]);
    assert_eq!(ps.code, Some(0), "{}", ps.stderr);
    assert!(ps.stderr.contains("standalone"), "{}", ps.stderr);
    assert!(ps.stdout_text().starts_with("PID"));
    let me = std::process::id().to_string();
    assert!(ps
        .stdout_text()
        .lines()
        .any(|l| l.split_whitespace().next() == Some(me.as_str())));
    let json = probe(nowhere, &["-o", "json", "limits", &me]);
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    assert!(serde_json::from_slice::<Value>(&json.stdout).unwrap()["limits"].is_array());
    for cmd in [
        &["ports"][..],
        &["net"],
        &["mounts", &me],
        &["cgroup"],
        &["security", &me],
        &["fds", &me],
        &["env", &me],
    ] {
        let out = probe(nowhere, cmd);
        assert_eq!(out.code, Some(0), "{cmd:?}: {}", out.stderr);
        assert!(out.stderr.contains("standalone"));
    }
    let env = probe(nowhere, &["env", &me]).stdout_text();
    assert!(
        env.contains("=<redacted>") && !env.contains("PATH=/"),
        "standalone env is redacted"
    );
}

#[test]
fn socket_address_rules() {
    if !require_root("socket_address_rules") {
        return;
    }
    // A stale socket file (nobody listening) is replaced; mode 0660 by default.
    let socket = socket_path("stale");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(std::path::Path::new(&socket).exists());
    let first = Shim::start(&socket, &[], &["APP"], &[]);
    let mode = std::fs::metadata(&socket).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.unwrap(), 0o660);

    // Idle means idle: once the clients are gone, no timer is left behind (the shim is not
    // woken at all while nothing happens).
    assert_eq!(probe(&socket, &["ps", "--threads"]).code, Some(0));
    let switches = |pid: i32| {
        let st = status(pid);
        let n = |k: &str| st.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap();
        n("voluntary_ctxt_switches") + n("nonvoluntary_ctxt_switches")
    };
    std::thread::sleep(Duration::from_millis(200));
    let before = switches(first.pid());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(switches(first.pid()), before, "the idle shim woke up");

    // A live one is left alone: the second shim warns and its app runs without diagnostics.
    let second = Shim::start(&socket, &[], &["APP"], &[]);
    wait_for(LIVENESS, || second.stderr().contains("already served").then_some(()))
        .unwrap_or_else(|| panic!("no warning: {}", second.stderr()));
    assert_eq!(probe_json(&socket, &["status"])["shim_pid"], 1);
    let out = second.stop();
    assert_eq!(out.code, Some(0));
    assert!(
        std::path::Path::new(&socket).exists(),
        "the second shim must not remove the first one's socket"
    );
    assert_eq!(probe(&socket, &["status"]).code, Some(0));
    drop(first);

    // Abstract sockets are opt-in and work with probe's @NAME.
    let name = format!("@husk-test-{}", std::process::id());
    let shim = Shim::start(&name, &[], &["APP"], &[]);
    assert_eq!(probe_json(&name, &["status"])["child"]["pid"], 2);
    drop(shim);

    // off: no socket, the app runs all the same.
    let shim = Shim::start("off", &[], &["APP"], &[]);
    shim.assert_forwards();
    let out = shim.stop();
    assert_eq!(out.code, Some(0));

    // An invalid diagnostics option stops everything before the app runs (125).
    let mut cmd = pid1_command(&["--diag-allow-uid", "nobody", "--", "true"]);
    cmd.stdin(Stdio::null());
    let out = run(cmd, LIVENESS);
    assert_eq!(out.code, Some(125), "{}", out.stderr);
}
