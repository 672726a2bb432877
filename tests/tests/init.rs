//! The init half of the shim, observed from outside: the real static `shim` runs as PID 1 of a
//! fresh PID namespace (or as a plain child, for the subreaper path) with `husk-helper` as the
//! app, and the tests read exit codes, /proc and what the helper printed.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use husk_tests::*;

const LIMIT: Duration = Duration::from_secs(60);

fn helper_path() -> String {
    helper().display().to_string()
}

/// `shim [args] husk-helper [helper args]` as PID 1, to completion.
fn pid1_run(shim_args: &[&str], helper_args: &[&str]) -> Outcome {
    let h = helper_path();
    let mut args: Vec<&str> = shim_args.to_vec();
    args.push(&h);
    args.extend_from_slice(helper_args);
    let mut cmd = pid1_command(&args);
    cmd.stdin(std::process::Stdio::null());
    run(cmd, LIMIT)
}

fn pid1_start(shim_args: &[&str], helper_args: &[&str]) -> Running {
    let h = helper_path();
    let mut args: Vec<&str> = shim_args.to_vec();
    args.push(&h);
    args.extend_from_slice(helper_args);
    Pid1::start(&args)
}

fn zombie_children(pid: i32) -> usize {
    children_of(pid)
        .into_iter()
        .filter(|&c| stat(c).is_some_and(|(state, _)| state == 'Z'))
        .count()
}

fn rtmin() -> i32 {
    // The helper is a musl program: its SIGRTMIN is musl's, which the test (glibc) may not share.
    35
}

#[test]
fn a_thousand_double_forked_orphans_are_all_reaped() {
    if !require_root("orphans") {
        return;
    }
    let shim = pid1_start(&[], &["orphans", "1000"]);
    shim.wait_line("created 1000", 1);
    let settled = wait_for(Duration::from_secs(30), || {
        (zombie_children(shim.pid) == 0).then_some(())
    });
    assert!(
        settled.is_some(),
        "{} zombies remain under the shim",
        zombie_children(shim.pid)
    );
    // Only the app itself is left as the shim's child.
    assert_eq!(children_of(shim.pid).len(), 1);
    shim.signal(libc::SIGTERM);
    assert_eq!(shim.finish(LIMIT).code, Some(143));
}

#[test]
fn orphans_are_reaped_as_a_subreaper() {
    let shim = Running::start(&[&helper_path(), "orphans", "200"]);
    shim.wait_line("created 200", 1);
    let settled = wait_for(Duration::from_secs(30), || {
        (zombie_children(shim.pid) == 0).then_some(())
    });
    assert!(
        settled.is_some(),
        "{} zombies remain under the shim",
        zombie_children(shim.pid)
    );
    assert_eq!(
        children_of(shim.pid).len(),
        1,
        "the orphans were not reparented to the shim and reaped"
    );
    shim.signal(libc::SIGTERM);
    let out = shim.finish(LIMIT);
    assert_eq!(out.code, Some(143));
    assert!(
        out.stderr.contains("not running as PID 1"),
        "auto subreaper warns once: {}",
        out.stderr
    );
}

#[test]
fn the_main_childs_code_wins_when_fifty_siblings_exit_in_the_same_instant() {
    if !require_root("exit storm") {
        return;
    }
    for round in 0..10 {
        let out = pid1_run(&[], &["storm", "50", "7"]);
        assert_eq!(out.code, Some(7), "round {round}: {}", out.stderr);
    }
}

/// Sends each signal to the shim and waits until the helper has reported it, so that no two
/// standard signals are ever pending at once (they would coalesce in the kernel).
fn send_and_expect(shim: &Running, sig: i32, expect: &[String]) {
    shim.signal(sig);
    for line in expect {
        shim.wait_line(line, 1);
    }
    let state = stat(shim.pid).map(|(s, _)| s);
    assert_ne!(state, Some('T'), "the shim itself was stopped by signal {sig}");
}

fn forwarded_signals() -> Vec<i32> {
    vec![
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGWINCH,
        libc::SIGABRT,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        rtmin() + 3,
    ]
}

#[test]
fn every_signal_reaches_the_child_exactly_once() {
    if !require_root("signals") {
        return;
    }
    let shim = pid1_start(&[], &["signals", "12"]);
    shim.wait_line("ready", 1);
    for sig in forwarded_signals() {
        send_and_expect(&shim, sig, &[format!("got {sig}")]);
    }
    shim.signal(libc::SIGUSR2);
    let out = shim.finish(LIMIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = out.stdout_text();
    for sig in forwarded_signals().into_iter().chain([libc::SIGUSR2]) {
        let n = text.lines().filter(|l| *l == format!("got {sig}")).count();
        assert_eq!(n, 1, "signal {sig} arrived {n} times:\n{text}");
    }
}

#[test]
fn group_target_reaches_a_grandchild_in_the_group() {
    if !require_root("signal group") {
        return;
    }
    let shim = pid1_start(&["--signal-target", "group"], &["signals", "12", "group"]);
    shim.wait_line("ready", 1);
    for sig in [libc::SIGHUP, libc::SIGUSR1, libc::SIGWINCH, rtmin() + 2] {
        send_and_expect(&shim, sig, &[format!("got {sig}"), format!("grandchild got {sig}")]);
    }
    shim.signal(libc::SIGUSR2);
    let out = shim.finish(LIMIT);
    assert_eq!(out.code, Some(0));
    assert!(out.stdout_text().contains("grandchild got 12"));
}

#[test]
fn map_signal_rewrites_and_drops() {
    if !require_root("map-signal") {
        return;
    }
    let shim = pid1_start(
        &["--map-signal", "TERM=QUIT", "--map-signal", "HUP=0"],
        &["signals", "12"],
    );
    shim.wait_line("ready", 1);
    send_and_expect(&shim, libc::SIGTERM, &[format!("got {}", libc::SIGQUIT)]);
    // HUP is dropped. A real-time signal sent after it is dequeued after any standard signal,
    // so by the time the helper reports it, a forwarded HUP would have been reported first.
    shim.signal(libc::SIGHUP);
    send_and_expect(&shim, rtmin() + 1, &[format!("got {}", rtmin() + 1)]);
    shim.signal(libc::SIGUSR2);
    let out = shim.finish(LIMIT);
    let text = out.stdout_text();
    assert!(
        !text.contains(&format!("got {}\n", libc::SIGTERM)),
        "TERM was not rewritten:\n{text}"
    );
    assert!(
        !text.contains(&format!("got {}\n", libc::SIGHUP)),
        "HUP was not dropped:\n{text}"
    );
}

#[test]
fn tstp_ttin_ttou_never_stop_pid1() {
    if !require_root("tstp") {
        return;
    }
    let shim = pid1_start(&[], &["sleep"]);
    wait_for(Duration::from_secs(10), || {
        (children_of(shim.pid).len() == 1).then_some(())
    })
    .unwrap();
    let app = children_of(shim.pid)[0];
    for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        shim.signal(sig);
        // The app (default disposition) stops; PID 1 must not.
        wait_for(Duration::from_secs(10), || {
            (stat(app).map(|s| s.0) == Some('T')).then_some(())
        })
        .expect("the app was not stopped by the forwarded signal");
        assert_ne!(stat(shim.pid).map(|s| s.0), Some('T'));
        shim.signal(libc::SIGCONT);
        wait_for(Duration::from_secs(10), || {
            (stat(app).map(|s| s.0) != Some('T')).then_some(())
        })
        .expect("SIGCONT was not forwarded");
    }
    shim.signal(libc::SIGTERM);
    assert_eq!(shim.finish(LIMIT).code, Some(143));
}

/// Starts the shim (not under unshare, so nothing sits between the test and the shim) with
/// SIGUSR1 blocked and SIGHUP and SIGPIPE ignored.
fn with_odd_signal_state(cmd: &mut Command) {
    // SAFETY: runs in the forked child before exec; only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            Ok(())
        });
    }
}

#[test]
fn the_child_gets_the_signal_mask_and_dispositions_the_shim_started_with() {
    // What a process started in this state sees, without the shim in between...
    let mut direct = Command::new(helper());
    direct.arg("status");
    with_odd_signal_state(&mut direct);
    let expected = run(direct, LIMIT).stdout_text();
    assert!(
        expected.contains("SigBlk:\t0000000000000200"),
        "USR1 blocked: {expected}"
    );
    assert!(
        expected.contains("SigIgn:\t00000000") && expected.contains("1001\n"),
        "HUP, PIPE ignored: {expected}"
    );
    // ...is exactly what the app sees through the shim.
    let mut cmd = Command::new(shim());
    cmd.args(["--subreaper", "off", &helper_path(), "status"]);
    with_odd_signal_state(&mut cmd);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout_text(), expected);

    let mut plain = Command::new(shim());
    plain.args(["--subreaper", "off", &helper_path(), "status"]);
    let plain = run(plain, LIMIT).stdout_text();
    assert!(plain.contains("SigBlk:\t0000000000000000"), "{plain}");
    assert!(
        !plain.contains("SigIgn:\t0000000000001000"),
        "the shim must not leave SIGPIPE ignored: {plain}"
    );
}

#[test]
fn a_signal_sent_before_the_child_exists_is_delivered_once_it_does() {
    let dir = scratch("early-signal");
    let fifo = dir.join("config.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // The shim blocks opening the FIFO (its config) before it can spawn anything. USR1 is
    // blocked in its original mask, so the child inherits it blocked and cannot die of it before
    // the helper starts waiting for it.
    let mut cmd = Command::new(shim());
    cmd.env("SHIM_CONFIG", &fifo)
        .args(["--subreaper", "off", &helper_path(), "signals", "12"]);
    with_odd_signal_state(&mut cmd);
    let shim = Running::spawn(cmd, false);
    wait_for(Duration::from_secs(10), || {
        (status(shim.pid).get("SigBlk").map(String::as_str) == Some("fffffffffffbfeff")).then_some(())
    })
    .expect("the shim did not block its signals");
    shim.signal(libc::SIGUSR1);
    std::fs::write(&fifo, b"{}").unwrap();
    shim.wait_line(&format!("got {}", libc::SIGUSR1), 1);
    shim.signal(libc::SIGUSR2);
    assert_eq!(shim.finish(LIMIT).code, Some(0));
}

#[test]
fn exit_codes_follow_the_shell() {
    if !require_root("exit codes") {
        return;
    }
    assert_eq!(pid1_run(&[], &["exit", "3"]).code, Some(3));
    assert_eq!(pid1_run(&[], &["kill-self", "15"]).code, Some(143));
    assert_eq!(pid1_run(&[], &["kill-self", "9"]).code, Some(137));
    assert_eq!(pid1_run(&["--remap-exit", "143=0"], &["kill-self", "15"]).code, Some(0));

    let missing = run(pid1_command(&["/no/such/program"]), LIMIT);
    assert_eq!(missing.code, Some(127));
    assert!(
        missing
            .stderr
            .contains("shim: error: exec: /no/such/program: No such file or directory"),
        "{}",
        missing.stderr
    );
    let not_in_path = run(pid1_command(&["no-such-program-anywhere"]), LIMIT);
    assert_eq!(not_in_path.code, Some(127));
    assert!(
        not_in_path.stderr.contains("command not found"),
        "{}",
        not_in_path.stderr
    );

    let dir = scratch("exit-codes");
    let plain_file = dir.join("not-executable");
    std::fs::write(&plain_file, b"data").unwrap();
    std::fs::set_permissions(&plain_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = run(pid1_command(&[plain_file.to_str().unwrap()]), LIMIT);
    assert_eq!(refused.code, Some(126), "{}", refused.stderr);
    // Executable bits but not a program the kernel can run.
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, b"\x7fELF garbage").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bad_exec = run(pid1_command(&[garbage.to_str().unwrap()]), LIMIT);
    assert_eq!(bad_exec.code, Some(126), "{}", bad_exec.stderr);
    assert!(
        bad_exec.stderr.contains("shim: error: exec failed:"),
        "{}",
        bad_exec.stderr
    );
    assert_eq!(
        run(pid1_command(&["--remap-exit", "127=0", "/no/such/program"]), LIMIT).code,
        Some(0)
    );
}

#[test]
fn bad_options_and_configs_exit_125_with_a_message() {
    let dir = scratch("bad-config");
    let bad_json = dir.join("bad.json");
    std::fs::write(&bad_json, b"{\"grace\": ").unwrap();
    let unknown_key = dir.join("unknown.json");
    std::fs::write(&unknown_key, br#"{"gracee": "1s"}"#).unwrap();
    let marker = dir.join("ran");
    let touch = ["print", "x"];
    // (arguments, environment, what the error must name)
    type Case<'a> = (Vec<String>, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--bogus".into()], vec![], "unknown option \"--bogus\""),
        (vec!["--grace".into(), "soon".into()], vec![], "--grace"),
        (vec!["--signal-target".into(), "pgrp".into()], vec![], "--signal-target"),
        (
            vec!["--map-signal".into(), "TERM=NOPE".into()],
            vec![],
            "unknown signal",
        ),
        (vec!["--remap-exit".into(), "1=999".into()], vec![], "--remap-exit"),
        (vec!["--log-format".into(), "xml".into()], vec![], "--log-format"),
        (
            vec!["--config".into(), bad_json.display().to_string()],
            vec![],
            "invalid JSON",
        ),
        (
            vec!["--config".into(), unknown_key.display().to_string()],
            vec![],
            "unknown key \"gracee\"",
        ),
        (
            vec!["--config".into(), dir.join("absent.json").display().to_string()],
            vec![],
            "cannot open",
        ),
        (vec![], vec![("SHIM_GRACE", "forever".into())], "--grace"),
        (
            vec![],
            vec![("SHIM_GRACEE", "1s".into())],
            "SHIM_GRACEE is not a shim option",
        ),
    ];
    for (args, env, needle) in cases {
        let mut cmd = Command::new(shim());
        cmd.args(&args)
            .arg(helper())
            .args(touch)
            .envs(env.iter().map(|(k, v)| (k, v)));
        let out = run(cmd, LIMIT);
        assert_eq!(out.code, Some(125), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("shim: error:") && out.stderr.contains(needle),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{args:?}: the app ran");
    }
    assert!(!marker.exists());
}

#[test]
fn precedence_is_command_line_then_environment_then_file() {
    let dir = scratch("precedence");
    let file = dir.join("config.json");
    std::fs::write(
        &file,
        br#"{"grace": "9s", "log-level": "info", "signal-target": "group", "command": ["/bin/true"]}"#,
    )
    .unwrap();
    let mut cmd = Command::new(shim());
    cmd.env("SHIM_CONFIG", &file)
        .env("SHIM_GRACE", "5s")
        .env("SHIM_LOG_LEVEL", "debug")
        .args(["--check", "--log-level", "error"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["grace"], "5s");
    assert_eq!(plan["log-level"], "error");
    assert_eq!(plan["signal-target"], "group");
    assert_eq!(plan["command"], serde_json::json!(["/bin/true"]));
}

#[test]
fn check_prints_the_plan_as_json_and_runs_nothing() {
    let out = run(
        {
            let mut c = Command::new(shim());
            c.args([
                "--check",
                "--grace",
                "500ms",
                "--map-signal",
                "TERM=QUIT",
                "--",
                &helper_path(),
                "print",
                "RAN",
            ]);
            c
        },
        LIMIT,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--check output is JSON");
    assert_eq!(plan["grace"], "500ms");
    assert_eq!(plan["map-signal"], serde_json::json!(["SIGTERM=SIGQUIT"]));
    assert_eq!(plan["command"][1], "print");
    assert!(!out.stdout_text().contains("RAN\n") && !out.stdout_text().ends_with("RAN"));
}

#[test]
fn the_grace_period_lets_a_leftover_finish_its_cleanup() {
    if !require_root("grace") {
        return;
    }
    let dir = scratch("grace-ok");
    let marker = dir.join("cleaned");
    let out = pid1_run(&["--grace", "2s"], &["leftover", "500", marker.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(marker.exists(), "the leftover's TERM handler did not get to finish");
}

#[test]
fn grace_zero_kills_leftovers_at_once() {
    if !require_root("grace 0") {
        return;
    }
    let dir = scratch("grace-zero");
    let marker = dir.join("cleaned");
    let out = pid1_run(&["--grace", "0"], &["leftover", "500", marker.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !marker.exists(),
        "with --grace 0 the leftover must not get time to clean up"
    );
}

#[test]
fn the_shim_exits_as_soon_as_leftovers_are_gone() {
    if !require_root("grace no fixed wait") {
        return;
    }
    let dir = scratch("grace-early");
    let marker = dir.join("cleaned");
    // A one-hour grace period: finishing within the liveness bound proves there is no fixed wait.
    let out = pid1_run(&["--grace", "1h"], &["leftover", "100", marker.to_str().unwrap()]);
    assert_eq!(out.code, Some(0));
    assert!(marker.exists());
}

/// A process that joined the namespace from outside, as `docker exec` or `kubectl exec` does, is
/// not the shim's child (its parent is outside), yet it is a leftover: it gets SIGTERM and its
/// grace period, not the kernel's SIGKILL when PID 1 exits.
#[test]
fn a_process_that_joined_the_namespace_from_outside_is_a_leftover_too() {
    if !require_root("a joined process is a leftover") {
        return;
    }
    let shim = pid1_start(&["--grace", "20s", "--log-level", "info"], &["sleep"]);
    let mut joined = Command::new("nsenter")
        .args(["--target", &shim.pid.to_string(), "--pid", "--mount", "--"])
        .args([helper_path().as_str(), "sleep"])
        .spawn()
        .expect("spawn nsenter");
    let nsenter = joined.id() as i32;
    let inside = wait_for(LIMIT, || {
        let child = children_of(nsenter).into_iter().next()?;
        let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).ok()?;
        (comm.trim() == "husk-helper").then_some(child)
    })
    .expect("the joined helper did not start");
    assert_eq!(
        status(inside)["PPid"],
        nsenter.to_string(),
        "its parent is outside the namespace"
    );

    shim.signal(libc::SIGTERM);
    let out = shim.finish(LIMIT);
    assert_eq!(out.code, Some(128 + libc::SIGTERM), "{}", out.stderr);
    assert!(out.stderr.contains("shutdown: 1 leftover processes"), "{}", out.stderr);
    // nsenter passes on how its child died: SIGTERM from the shim, not SIGKILL from the kernel.
    use std::os::unix::process::ExitStatusExt;
    let joined_status = joined.wait().expect("wait for nsenter");
    assert_eq!(joined_status.signal(), Some(libc::SIGTERM), "{joined_status:?}");
}

fn leftover_pid(out: &str) -> i32 {
    out.lines()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.parse().ok())
        .expect("the helper printed the leftover's pid")
}

#[test]
fn as_a_subreaper_a_leftover_that_ignores_term_is_killed_after_the_grace_period() {
    let dir = scratch("grace-ignore");
    let marker = dir.join("never");
    let mut cmd = Command::new(shim());
    cmd.args([
        "--grace",
        "1s",
        &helper_path(),
        "leftover",
        "0",
        marker.to_str().unwrap(),
        "ignore",
    ]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let pid = leftover_pid(&out.stdout_text());
    assert!(
        stat(pid).is_none(),
        "the leftover {pid} survived the shim: {:?}",
        stat(pid)
    );
    assert!(out.stderr.contains("SIGKILL") || out.stderr.is_empty() || out.stderr.contains("subreaper"));
}

#[test]
fn as_a_subreaper_leftovers_that_left_the_session_get_term_too() {
    let dir = scratch("grace-setsid");
    let marker = dir.join("cleaned");
    let mut cmd = Command::new(shim());
    cmd.args([
        "--grace",
        "30s",
        &helper_path(),
        "leftover",
        "200",
        marker.to_str().unwrap(),
        "setsid",
    ]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        marker.exists(),
        "the setsid leftover did not get SIGTERM and its grace period"
    );
    assert!(stat(leftover_pid(&out.stdout_text())).is_none());
}

#[test]
fn subreaper_off_is_respected() {
    let dir = scratch("subreaper-off");
    let marker = dir.join("unused");
    for (setting, expect_shim_parent) in [("off", false), ("auto", true)] {
        let mut cmd = Command::new(shim());
        cmd.env("SHIM_SUBREAPER", setting).args([
            "--grace",
            "30s",
            &helper_path(),
            "leftover",
            "0",
            marker.to_str().unwrap(),
            "ignore",
        ]);
        let shim = Running::spawn(cmd, false);
        let number = |prefix: &str| {
            wait_for(Duration::from_secs(20), || {
                shim.stdout()
                    .lines()
                    .find_map(|l| l.strip_prefix(prefix))
                    .and_then(|p| p.parse::<i32>().ok())
            })
            .unwrap_or_else(|| panic!("the helper did not print {prefix:?}"))
        };
        let (pid, helper) = (number("pid "), number("parent "));
        // Wait until the helper (its first parent) has exited and the leftover was reparented.
        let parent = wait_for(Duration::from_secs(20), || {
            let (_, ppid) = stat(pid)?;
            (ppid != helper && ppid != 0).then_some(ppid)
        });
        let is_shim = parent == Some(shim.pid);
        send(pid, libc::SIGKILL);
        let out = shim.finish(LIMIT);
        assert_eq!(
            is_shim, expect_shim_parent,
            "SHIM_SUBREAPER={setting}: leftover parent {parent:?}, shim {}",
            out.stderr
        );
        assert_eq!(
            out.stderr.contains("not running as PID 1"),
            setting == "auto",
            "{}",
            out.stderr
        );
    }
}

#[test]
fn shim_runs_ls_like_a_shell_would() {
    if !require_root("ls") {
        return;
    }
    let through_shim = run(pid1_command(&["ls", "-l", "/usr"]), LIMIT);
    let direct = run(
        {
            let mut c = Command::new("ls");
            c.args(["-l", "/usr"]);
            c
        },
        LIMIT,
    );
    assert_eq!(through_shim.code, Some(0), "{}", through_shim.stderr);
    assert_eq!(through_shim.stdout, direct.stdout);
}

#[test]
fn at_trace_level_stdout_is_exactly_the_childs_output() {
    if !require_root("stdout") {
        return;
    }
    let payload = "line one\n\tno newline at the end ✓";
    let out = pid1_run(&["--log-level", "trace"], &["print", payload]);
    assert_eq!(out.code, Some(0));
    assert_eq!(out.stdout, payload.as_bytes());
    assert!(
        out.stderr.contains("shim: info:") || out.stderr.contains("shim: debug:"),
        "logs go to stderr: {}",
        out.stderr
    );

    let json = pid1_run(&["--log-level", "debug", "--log-format", "json"], &["print", payload]);
    assert_eq!(json.stdout, payload.as_bytes());
    for line in json.stderr.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
    }
    assert!(!json.stderr.is_empty());
}

#[test]
fn an_idle_shim_makes_no_context_switches() {
    if !require_root("idle") {
        return;
    }
    // A socket of its own: the other tests' shims, starting in parallel with the default
    // /dev/shm/husk.sock, would connect to this one's to see whether it is stale, and wake it.
    let socket = scratch_socket("idle");
    let shim = pid1_start(&["--diag-socket", &socket], &["sleep"]);
    wait_for(Duration::from_secs(10), || {
        (children_of(shim.pid).len() == 1).then_some(())
    })
    .unwrap();
    let switches = || {
        let s = status(shim.pid);
        let n = |k: &str| s.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        n("voluntary_ctxt_switches") + n("nonvoluntary_ctxt_switches")
    };
    // Let start-up settle: the shim is asleep once its state is S and the count holds still.
    std::thread::sleep(Duration::from_millis(300));
    let before = switches();
    std::thread::sleep(Duration::from_secs(2));
    let after = switches();
    assert_eq!(before, after, "the idle shim woke up {} times in 2 s", after - before);
    shim.signal(libc::SIGTERM);
    assert_eq!(shim.finish(LIMIT).code, Some(143));
}

#[test]
fn termination_log_says_how_the_app_ended() {
    if !require_root("termination log") {
        return;
    }
    let dir = scratch("termination-log");
    let log = dir.join("termination-log");
    let log_arg = log.display().to_string();
    pid1_run(&["--termination-log", &log_arg], &["kill-self", "11"]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("killed by signal SIGSEGV") && text.ends_with("(exit status 139)\n"),
        "{text}"
    );
    pid1_run(&["--termination-log", &log_arg], &["exit", "4"]);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "exited with code 4\n");
    run(pid1_command(&["--termination-log", &log_arg, "/no/such/app"]), LIMIT);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("exec failed: /no/such/app") && text.ends_with("(exit status 127)\n"),
        "{text}"
    );
}

#[test]
fn pdeathsig_is_forwarded_when_the_parent_dies() {
    let dir = scratch("pdeathsig");
    let out_file = dir.join("out");
    // A parent that starts the shim in the background and then waits, so that killing the parent
    // leaves the shim running with its parent gone.
    let script = format!(
        "{} --subreaper off --pdeathsig TERM {} signals 15 > {} 2>&1 & wait",
        shim().display(),
        helper_path(),
        out_file.display()
    );
    let mut parent = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    let shim_pid = wait_for(Duration::from_secs(10), || {
        children_of(parent.id() as i32).into_iter().next()
    })
    .unwrap();
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&out_file).ok().filter(|t| t.contains("ready"))
    })
    .expect("helper ready");
    parent.kill().unwrap();
    parent.wait().unwrap();
    let got = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&out_file).ok().filter(|t| t.contains("got 15"))
    });
    assert!(
        got.is_some(),
        "the parent's death did not reach the app: {:?}",
        std::fs::read_to_string(&out_file)
    );
    wait_for(Duration::from_secs(20), || {
        stat(shim_pid).is_none_or(|(s, _)| s == 'Z').then_some(())
    })
    .expect("the shim exited");
}

#[test]
fn with_a_terminal_the_app_is_the_foreground_process_group() {
    let command = format!("{} --subreaper off {} describe", shim().display(), helper_path());
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &command, "/dev/null"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout_text().contains("foreground yes"), "{}", out.stdout_text());
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn inherited_descriptors_and_listen_pid_go_to_the_app_and_the_shim_lets_go() {
    let dir = scratch("hygiene");
    // fd 3 is inherited by the shim, as a socket-activation manager would pass a socket;
    // LISTEN_PID names the shim (exec keeps sh's pid).
    let script = format!(
        "cd {} && exec 3</etc/hostname && LISTEN_PID=$$ exec {} --subreaper off --diag-socket off {} describe sleep",
        dir.display(),
        shim().display(),
        helper_path()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    let shim_run = Running::spawn(cmd, false);
    shim_run.wait_line("foreground no-tty", 1);
    let report = shim_run.stdout();
    let app_pid = field(&report, "pid");
    assert_eq!(
        field(&report, "listen_pid"),
        app_pid,
        "LISTEN_PID must name the app: {report}"
    );
    assert!(
        field(&report, "fds").split(',').any(|fd| fd == "3"),
        "the inherited fd 3 must reach the app: {report}"
    );
    assert_eq!(
        std::path::Path::new(field(&report, "cwd")),
        dir.as_path(),
        "the app starts where the shim started"
    );

    // The shim itself keeps none of it: not fd 3, not the app's stdout, not its directory. It
    // lets go right after the spawn, which may be a moment after the app printed its report.
    let fd_target = |fd: &str| std::fs::read_link(format!("/proc/{}/fd/{fd}", shim_run.pid)).ok();
    let cwd = || std::fs::read_link(format!("/proc/{}/cwd", shim_run.pid)).ok();
    wait_for(Duration::from_secs(20), || (cwd() == Some("/".into())).then_some(()))
        .expect("the shim did not move to / after the spawn");
    assert!(
        fd_target("3").is_none_or(|t| !t.ends_with("hostname")),
        "the shim still holds fd 3: {:?}",
        fd_target("3")
    );
    assert_eq!(fd_target("1"), Some("/dev/null".into()));
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/cwd", shim_run.pid)).unwrap(),
        std::path::PathBuf::from("/")
    );
    let open: Vec<_> = std::fs::read_dir(format!("/proc/{}/fd", shim_run.pid))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        open.len() <= 5,
        "the shim holds more than stdio, signalfd and epoll: {open:?}"
    );
    shim_run.signal(libc::SIGTERM);
    assert_eq!(shim_run.finish(LIMIT).code, Some(143));
}

#[test]
fn listen_pid_naming_another_process_is_left_alone() {
    let mut cmd = Command::new(shim());
    cmd.env("LISTEN_PID", "1")
        .args(["--subreaper", "off", &helper_path(), "describe"]);
    let out = run(cmd, LIMIT);
    assert_eq!(field(&out.stdout_text(), "listen_pid"), "1");
}

#[test]
fn hold_on_failure_keeps_pid1_up_until_term_or_the_hold_ends() {
    if !require_root("hold-on-failure") {
        return;
    }
    // A failed app with a long hold: PID 1 stays up until SIGTERM, then exits with the app's status.
    let held = pid1_start(&["--hold-on-failure", "1h"], &["exit", "3"]);
    let holding = wait_for(Duration::from_secs(20), || {
        held.stderr().contains("holding").then_some(())
    });
    assert!(holding.is_some(), "no hold: {}", held.stderr());
    assert!(
        stat(held.pid).is_some_and(|(s, _)| s != 'Z'),
        "PID 1 must still be up during the hold"
    );
    held.signal(libc::SIGTERM);
    assert_eq!(held.finish(LIMIT).code, Some(3));
    // A short hold ends by itself.
    assert_eq!(pid1_run(&["--hold-on-failure", "300ms"], &["exit", "4"]).code, Some(4));
    // Success is not held.
    let ok = pid1_run(&["--hold-on-failure", "1h"], &["exit", "0"]);
    assert_eq!(ok.code, Some(0));
    assert!(!ok.stderr.contains("holding"));
}

#[test]
fn a_sigpipe_from_the_shims_own_log_write_is_not_forwarded() {
    // The shim's stderr is a pipe whose reader is gone: its next log line raises SIGPIPE in the
    // shim itself, which must not reach the app as if someone had sent it.
    let mut cmd = Command::new(shim());
    cmd.args([
        "--subreaper",
        "off",
        "--log-level",
        "debug",
        &helper_path(),
        "signals",
        "12",
    ]);
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let pid = child.id() as i32;
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    use std::io::BufRead;
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    for _ in 0..3 {
        send(pid, libc::SIGUSR1);
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, format!("got {}\n", libc::SIGUSR1), "the app got something else");
    }
    send(pid, libc::SIGUSR2);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, format!("got {}\n", libc::SIGUSR2));
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
