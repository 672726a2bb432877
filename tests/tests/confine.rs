//! Confinement of the app (issue 3), end to end: the real static shim runs as PID 1 of a fresh
//! PID namespace, `husk-report` runs as the app and reports what it sees from inside, and the
//! tests assert on that report. Nothing here confines the test process itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use husk_tests::{bin, children_of, pid1_command, require_root, run, shim, status, wait_for, Outcome, Pid1};

const LIMIT: Duration = Duration::from_secs(60);

fn report_bin() -> String {
    bin("husk-report").display().to_string()
}

/// `shim ARGS -- husk-report ITEMS` as PID 1.
fn confined(shim_args: &[&str], items: &[&str]) -> Outcome {
    let report = report_bin();
    let mut args: Vec<&str> = shim_args.to_vec();
    args.push("--");
    args.push(&report);
    args.extend_from_slice(items);
    run(pid1_command(&args), LIMIT)
}

fn parse(out: &Outcome) -> HashMap<String, String> {
    out.stdout_text()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// As [`confined`], in a new network namespace too (only loopback, down), so ports are free
/// whatever the host runs.
fn confined_netns(shim_args: &[&str], items: &[&str]) -> Outcome {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(shim())
        .args(shim_args)
        .arg("--")
        .arg(report_bin())
        .args(items);
    run(cmd, LIMIT)
}

fn netns_report(shim_args: &[&str], items: &[&str]) -> HashMap<String, String> {
    let out = confined_netns(shim_args, items);
    assert_eq!(out.code, Some(0), "shim {shim_args:?} failed: {}", out.stderr);
    parse(&out)
}

/// Runs and expects the app to have run to completion (exit 0); returns its report.
fn report(shim_args: &[&str], items: &[&str]) -> HashMap<String, String> {
    let out = confined(shim_args, items);
    assert_eq!(out.code, Some(0), "shim {shim_args:?} failed: {}", out.stderr);
    parse(&out)
}

fn get<'a>(r: &'a HashMap<String, String>, key: &str) -> &'a str {
    r.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {key} in the report {r:?}"))
}

/// A directory under the build's tmp dir (not /tmp, which may be mounted nosuid), readable and
/// traversable by any user.
fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("confine-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o755);
    dir
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn user_and_supplementary_groups() {
    if !require_root("user_and_supplementary_groups") {
        return;
    }
    let r = report(&["--user", "65534:65534", "--groups", "65534,100"], &["ids"]);
    assert_eq!(get(&r, "uid"), "65534");
    assert_eq!(get(&r, "euid"), "65534");
    assert_eq!(get(&r, "gid"), "65534");
    assert_eq!(get(&r, "egid"), "65534");
    assert_eq!(get(&r, "groups"), "100,65534");
    // Without --groups a numeric user that /etc/passwd lacks gets no supplementary groups at
    // all (root's are never inherited).
    let r = report(&["--user", "4242:4242"], &["ids"]);
    assert_eq!(
        (get(&r, "uid"), get(&r, "gid"), get(&r, "groups")),
        ("4242", "4242", "")
    );
}

/// The shim as PID 1 of a PID and mount namespace whose /etc/passwd and /etc/group are
/// bind-mounted test files (the shim reads the image's files directly, no NSS).
fn with_test_accounts(dir: &Path, shim_args: &[&str], items: &[&str]) -> Outcome {
    let passwd = dir.join("passwd");
    let group = dir.join("group");
    std::fs::write(
        &passwd,
        "root:x:0:0::/root:/sbin/nologin\nappuser:x:4321:4322::/home/app:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(
        &group,
        "root:x:0:\nappgroup:x:4322:\ndevs:x:4400:someone,appuser\nothers:x:4500:someone\n",
    )
    .unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c"])
        .arg("mount --bind \"$1\" /etc/passwd && mount --bind \"$2\" /etc/group && shift 2 && exec \"$@\"")
        .arg("sh")
        .arg(&passwd)
        .arg(&group)
        .arg(shim())
        .args(shim_args)
        .arg("--")
        .arg(report_bin())
        .args(items);
    run(cmd, LIMIT)
}

#[test]
fn user_names_come_from_the_images_passwd_and_group() {
    if !require_root("user_names_come_from_the_images_passwd_and_group") {
        return;
    }
    let dir = workdir("accounts");
    let out = with_test_accounts(&dir, &["--user", "appuser"], &["ids"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let r = parse(&out);
    assert_eq!(get(&r, "uid"), "4321");
    assert_eq!(get(&r, "gid"), "4322");
    assert_eq!(get(&r, "groups"), "4400", "member of devs only");
    let out = with_test_accounts(&dir, &["--user", "appuser:others", "--groups", "devs,others"], &["ids"]);
    let r = parse(&out);
    assert_eq!((get(&r, "gid"), get(&r, "groups")), ("4500", "4400,4500"));

    let marker = dir.join("ran");
    let out = with_test_accounts(&dir, &["--user", "bob"], &["marker", marker.to_str().unwrap()]);
    assert_eq!(out.code, Some(125), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("shim: error: --user: unknown user \"bob\" (not in /etc/passwd)"),
        "{}",
        out.stderr
    );
    assert!(!marker.exists(), "the app ran although its user is unknown");
}

#[test]
fn default_policy_drops_every_capability_and_sets_nnp_and_seccomp() {
    if !require_root("default_policy_drops_every_capability_and_sets_nnp_and_seccomp") {
        return;
    }
    let r = report(&[], &["ids", "status"]);
    assert_eq!(get(&r, "uid"), "0", "the user is unchanged by default");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(get(&r, set), "0000000000000000", "{set}");
    }
    assert_eq!(get(&r, "NoNewPrivs"), "1");
    assert_eq!(get(&r, "Seccomp"), "2");
}

/// After the spawn the shim confines itself: it keeps CAP_KILL, CAP_DAC_READ_SEARCH and
/// CAP_SYS_PTRACE (signalling and /proc reads), sets no_new_privs and installs its own seccomp
/// allowlist, with or without the diagnostics socket; the app, spawned before, inherits none of it.
#[test]
fn the_shim_confines_itself_after_the_spawn_and_the_app_inherits_none_of_it() {
    if !require_root("the_shim_confines_itself_after_the_spawn_and_the_app_inherits_none_of_it") {
        return;
    }
    let unconfined_app = ["--seccomp", "off", "--cap-keep", "all", "--allow-new-privs"];
    for diag in ["off", "@husk-test-self-confinement"] {
        let helper = bin("husk-helper").display().to_string();
        let mut args = vec!["--diag-socket", diag];
        args.extend(unconfined_app);
        args.extend([helper.as_str(), "sleep"]);
        let shim = Pid1::start(&args);
        let app = wait_for(Duration::from_secs(10), || children_of(shim.pid).first().copied()).expect("the app runs");
        // The shim confines itself just after the spawn: wait for that, not for a time.
        let own = wait_for(Duration::from_secs(10), || {
            let s = status(shim.pid);
            (s.get("Seccomp").map(String::as_str) == Some("2")).then_some(s)
        })
        .unwrap_or_else(|| {
            panic!(
                "diag {diag}: the shim never installed its allowlist: {:?}",
                status(shim.pid)
            )
        });
        // CAP_DAC_READ_SEARCH (2), CAP_KILL (5), CAP_SYS_PTRACE (19). The bounding set stays: it
        // only limits an exec, and the shim can no longer exec.
        for set in ["CapPrm", "CapEff"] {
            assert_eq!(own[set], "0000000000080024", "diag {diag}: the shim's {set}");
        }
        assert_eq!(own["CapInh"], "0000000000000000");
        assert_eq!(own["CapAmb"], "0000000000000000");
        assert_eq!(own["NoNewPrivs"], "1");
        assert_eq!(own["Seccomp_filters"], "1");
        let app_status = status(app);
        assert_eq!(app_status["Seccomp"], "0", "diag {diag}: the app inherited a filter");
        assert_eq!(app_status["NoNewPrivs"], "0");
        assert_eq!(app_status["CapBnd"], status(std::process::id() as i32)["CapBnd"]);
        // Confined, the shim still forwards and reaps: TERM reaches the app, which dies of it.
        husk_tests::send(shim.pid, libc::SIGTERM);
        let out = shim.finish(Duration::from_secs(10));
        assert_eq!(out.code, Some(143), "diag {diag}: {}", out.stderr);
        assert!(!out.stderr.contains("self-confinement"), "diag {diag}: {}", out.stderr);
    }
}

#[test]
fn kept_capability_is_usable_by_a_non_root_user() {
    if !require_root("kept_capability_is_usable_by_a_non_root_user") {
        return;
    }
    let items = ["ids", "status", "bind", "80"];
    let run_in_netns = |shim_args: &[&str]| netns_report(shim_args, &items);
    let r = run_in_netns(&["--cap-keep", "NET_BIND_SERVICE", "--user", "65534:65534"]);
    assert_eq!(get(&r, "uid"), "65534");
    assert_eq!(get(&r, "bind.80"), "ok");
    let bit = format!("{:016x}", 1u64 << 10); // CAP_NET_BIND_SERVICE
    for set in ["CapEff", "CapPrm", "CapAmb", "CapBnd", "CapInh"] {
        assert_eq!(get(&r, set), bit, "{set}");
    }
    // The same user without the capability cannot.
    let r = run_in_netns(&["--user", "65534:65534"]);
    assert_eq!(get(&r, "bind.80"), "EACCES");
    assert_eq!(get(&r, "CapEff"), "0000000000000000");
}

#[test]
fn landlock_filesystem_rules() {
    if !require_root("landlock_filesystem_rules") {
        return;
    }
    let dir = workdir("fs");
    let allowed = dir.join("x");
    let other = dir.join("y");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let inside = allowed.join("f");
    let outside = other.join("f");
    let r = report(
        &["--fs-ro", "/", "--fs-rw", allowed.to_str().unwrap()],
        &["write", inside.to_str().unwrap(), "write", outside.to_str().unwrap()],
    );
    assert_eq!(get(&r, &format!("write.{}", inside.display())), "ok");
    assert_eq!(get(&r, &format!("write.{}", outside.display())), "EACCES");
    assert!(inside.exists() && !outside.exists());
    // Control: without Landlock the same write works.
    let r = report(&[], &["write", outside.to_str().unwrap()]);
    assert_eq!(get(&r, &format!("write.{}", outside.display())), "ok");
}

#[test]
fn landlock_tcp_rules() {
    if !require_root("landlock_tcp_rules") {
        return;
    }
    let items = ["connect", "8080", "connect", "9090", "bind", "7070"];
    let r = netns_report(&["--tcp-connect", "8080"], &items);
    assert_eq!(get(&r, "connect.9090"), "EACCES");
    assert_ne!(
        get(&r, "connect.8080"),
        "EACCES",
        "the allowed port reaches the network stack"
    );
    assert_eq!(get(&r, "bind.7070"), "EACCES", "TCP restriction covers bind too");
    let r = netns_report(&["--tcp-connect", "8080", "--tcp-bind", "7070"], &items);
    assert_eq!(get(&r, "bind.7070"), "ok");
    // Control: without Landlock nothing is EACCES.
    let r = netns_report(&[], &items);
    assert_ne!(get(&r, "connect.9090"), "EACCES");
}

#[test]
fn landlock_scopes_abstract_sockets_and_signals() {
    if !require_root("landlock_scopes_abstract_sockets_and_signals") {
        return;
    }
    use std::os::linux::net::SocketAddrExt;
    let name = format!("husk-confine-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    // Created outside the app's domain, by the test process (which is not confined).
    let _listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    let key = format!("abstract.{name}");

    let r = report(
        &["--landlock-scope", "abstract-unix"],
        &["abstract", &name, "signal", "1"],
    );
    assert_eq!(get(&r, &key), "EPERM");
    assert_eq!(get(&r, "signal.1"), "ok", "only the abstract-unix scope was asked for");

    let r = report(&["--landlock-scope", "signal"], &["abstract", &name, "signal", "1"]);
    assert_eq!(get(&r, &key), "ok");
    assert_eq!(
        get(&r, "signal.1"),
        "EPERM",
        "the shim (PID 1) is outside the app's domain"
    );

    // Both scopes apply by default once any Landlock rule is given.
    let r = report(&["--tcp-connect", "8080"], &["abstract", &name, "signal", "1"]);
    assert_eq!((get(&r, &key), get(&r, "signal.1")), ("EPERM", "EPERM"));

    let r = report(&[], &["abstract", &name]);
    assert_eq!(get(&r, &key), "ok", "control: no Landlock, no scope");
}

/// A seccomp profile for an outer shim that makes the Landlock calls fail with ENOSYS, so the
/// inner shim sees a kernel without Landlock. Only the inner shim and its app are affected.
fn no_landlock_profile(dir: &Path) -> PathBuf {
    let path = dir.join("no-landlock.json");
    std::fs::write(
        &path,
        r#"{"app": {"mismatch_action": "allow", "match_action": {"errno": 38}, "filter": [
            {"syscall": "landlock_create_ruleset"}, {"syscall": "landlock_add_rule"},
            {"syscall": "landlock_restrict_self"}]}}"#,
    )
    .unwrap();
    path
}

#[test]
fn landlock_enforce_refuses_what_the_kernel_cannot_enforce() {
    if !require_root("landlock_enforce_refuses_what_the_kernel_cannot_enforce") {
        return;
    }
    let dir = workdir("enforce");
    // On this kernel TCP rules and scopes are enforceable: enforce starts the app.
    let r = report(
        &["--landlock", "enforce", "--tcp-connect", "8080"],
        &["connect", "9090"],
    );
    assert_eq!(get(&r, "connect.9090"), "EACCES");

    let profile = no_landlock_profile(&dir);
    let marker = dir.join("ran");
    let inner = |mode: &str| {
        let report = report_bin();
        let shim_path = shim().display().to_string();
        let args = [
            "--seccomp",
            profile.to_str().unwrap(),
            "--cap-keep",
            "all",
            "--",
            &shim_path,
            "--landlock",
            mode,
            "--tcp-connect",
            "8080",
            "--",
            &report,
            "marker",
            marker.to_str().unwrap(),
        ];
        run(pid1_command(&args), LIMIT)
    };
    let out = inner("enforce");
    assert_eq!(out.code, Some(125), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("shim: error: landlock: enforce: this kernel has no Landlock"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("tcp:connect"), "{}", out.stderr);
    assert!(!marker.exists(), "the app ran although enforce could not be honoured");

    // best-effort starts it and says what is not enforced.
    let out = inner("best-effort");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(marker.exists());
    assert!(
        out.stderr.contains("does not enforce") && out.stderr.contains("tcp:bind"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_step_that_fails_in_the_child_stops_the_start() {
    if !require_root("a_step_that_fails_in_the_child_stops_the_start") {
        return;
    }
    // The outer shim's profile makes landlock_restrict_self fail with EPERM, so the inner shim
    // prepares its ruleset normally and its child fails at that step, after fork.
    let dir = workdir("child-step");
    let profile = dir.join("no-restrict-self.json");
    std::fs::write(
        &profile,
        r#"{"app": {"mismatch_action": "allow", "match_action": {"errno": 1},
                    "filter": [{"syscall": "landlock_restrict_self"}]}}"#,
    )
    .unwrap();
    let marker = dir.join("ran");
    let report = report_bin();
    let shim_path = shim().display().to_string();
    let args = [
        "--seccomp",
        profile.to_str().unwrap(),
        "--cap-keep",
        "all",
        "--",
        &shim_path,
        "--subreaper",
        "off",
        "--tcp-connect",
        "8080",
        "--",
        &report,
        "marker",
        marker.to_str().unwrap(),
    ];
    let out = run(pid1_command(&args), LIMIT);
    assert_eq!(out.code, Some(125), "{}", out.stderr);
    assert!(
        out.stderr.contains("landlock: restrict_self: Operation not permitted"),
        "{}",
        out.stderr
    );
    assert!(!marker.exists(), "the app ran unconfined");
}

#[test]
fn check_reports_what_best_effort_would_not_enforce() {
    if !require_root("check_reports_what_best_effort_would_not_enforce") {
        return;
    }
    let dir = workdir("check-no-landlock");
    let profile = no_landlock_profile(&dir);
    let shim_path = shim().display().to_string();
    let args = [
        "--seccomp",
        profile.to_str().unwrap(),
        "--cap-keep",
        "all",
        "--",
        &shim_path,
        "--check",
        "--tcp-bind",
        "80",
        "--",
        "/bin/true",
    ];
    let out = run(pid1_command(&args), LIMIT);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["landlock"]["abi"], 0);
    assert_eq!(v["landlock"]["enforced"], false);
    assert_eq!(
        v["landlock"]["not-enforced"],
        serde_json::json!(["tcp:bind", "tcp:connect", "scope:abstract-unix", "scope:signal"])
    );
}

#[test]
fn check_shows_the_effective_policy() {
    if !require_root("check_shows_the_effective_policy") {
        return;
    }
    let out = run(
        {
            let mut c = Command::new(shim());
            c.args([
                "--check",
                "--user",
                "65534:65534",
                "--cap-keep",
                "net_bind_service",
                "--rlimit",
                "nofile=64",
                "--rlimit",
                "core=0:unlimited",
                "--tcp-connect",
                "8080",
                "--umask",
                "27",
                "--",
                "/bin/true",
            ]);
            c
        },
        LIMIT,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["user"], "65534:65534");
    assert_eq!(v["groups"], serde_json::json!([]));
    assert_eq!(v["cap-keep"], serde_json::json!(["CAP_NET_BIND_SERVICE"]));
    assert_eq!(v["rlimit"]["nofile"], serde_json::json!({"soft": 64, "hard": 64}));
    assert_eq!(v["rlimit"]["core"], serde_json::json!({"soft": 0, "hard": "unlimited"}));
    assert_eq!(v["umask"], "0027");
    assert_eq!(v["no-new-privs"], true);
    assert_eq!(v["seccomp"], "default");
    assert_eq!(v["seccomp-action"], "errno");
    assert_eq!(v["tcp-connect"], serde_json::json!([8080]));
    assert_eq!(v["landlock-scope"], serde_json::json!(["abstract-unix", "signal"]));
    assert_eq!(v["landlock"]["mode"], "best-effort");
    assert!(v["landlock"]["abi"].as_i64().unwrap() >= 0);
    assert!(v["landlock"]["not-enforced"].is_array());
}

const DENIED_BY_DEFAULT: &[&str] = &[
    "mount",
    "umount",
    "ptrace",
    "kexec_load",
    "bpf",
    "unshare-user",
    "clone-newuser",
    "setns",
    "keyctl",
    "add_key",
    "process_vm_readv",
    "process_vm_writev",
    "reboot",
    "swapon",
    "x32",
];

fn syscall_items(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| ["syscall".to_string(), n.to_string()])
        .collect()
}

#[test]
fn seccomp_default_denies_with_eperm() {
    if !require_root("seccomp_default_denies_with_eperm") {
        return;
    }
    let mut names = DENIED_BY_DEFAULT.to_vec();
    names.push("getpid");
    let items = syscall_items(&names);
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    // All capabilities kept, so EPERM can only come from the filter.
    let r = report(&["--cap-keep", "all"], &items);
    for name in DENIED_BY_DEFAULT {
        assert_eq!(get(&r, &format!("syscall.{name}")), "EPERM", "{name}");
    }
    assert_eq!(get(&r, "syscall.getpid"), "ok");
    // Control: the same calls without the filter fail (or not) for other reasons.
    let r = report(&["--cap-keep", "all", "--seccomp", "off"], &items);
    for name in ["mount", "ptrace", "bpf", "unshare-user", "keyctl", "setns"] {
        assert_ne!(get(&r, &format!("syscall.{name}")), "EPERM", "{name} without seccomp");
    }
}

#[test]
fn seccomp_kill_action_kills_the_app_with_sigsys() {
    if !require_root("seccomp_kill_action_kills_the_app_with_sigsys") {
        return;
    }
    for call in ["mount", "ptrace", "x32"] {
        let out = confined(&["--seccomp-action", "kill"], &["syscall", "getpid", "syscall", call]);
        assert_eq!(out.code, Some(159), "{call}: {}", out.stderr);
        let r = parse(&out);
        assert_eq!(get(&r, "syscall.getpid"), "ok");
        assert!(
            !r.contains_key(&format!("syscall.{call}")),
            "{call} returned instead of killing"
        );
    }
    // log: the call goes through (and is logged by the kernel).
    let r = report(
        &["--seccomp-action", "log", "--cap-keep", "all"],
        &["syscall", "mount", "status"],
    );
    assert_eq!(get(&r, "syscall.mount"), "ENOENT");
    assert_eq!(get(&r, "Seccomp"), "2");
}

#[test]
fn seccomp_profile_file() {
    if !require_root("seccomp_profile_file") {
        return;
    }
    let dir = workdir("profile");
    let profile = dir.join("deny-getpid.json");
    std::fs::write(
        &profile,
        r#"{"main": {"mismatch_action": "allow", "match_action": {"errno": 1}, "filter": [{"syscall": "getpid"}]}}"#,
    )
    .unwrap();
    let r = report(
        &["--seccomp", profile.to_str().unwrap()],
        &["syscall", "getpid", "syscall", "ptrace", "status"],
    );
    assert_eq!(get(&r, "syscall.getpid"), "EPERM");
    assert_eq!(
        get(&r, "syscall.ptrace"),
        "ESRCH",
        "the file replaces the default profile"
    );
    assert_eq!(get(&r, "Seccomp"), "2");
    // Several filters: the one named app is used.
    let several = dir.join("several.json");
    std::fs::write(
        &several,
        r#"{"other": {"mismatch_action": "allow", "match_action": {"errno": 1}, "filter": [{"syscall": "uname"}]},
            "app": {"mismatch_action": "allow", "match_action": {"errno": 13}, "filter": [{"syscall": "getpid"}]}}"#,
    )
    .unwrap();
    let r = report(&["--seccomp", several.to_str().unwrap()], &["syscall", "getpid"]);
    assert_eq!(
        get(&r, "syscall.getpid"),
        "EACCES",
        "the app filter's own errno applies"
    );
}

#[test]
fn rlimits_and_umask_are_what_the_app_sees() {
    if !require_root("rlimits_and_umask_are_what_the_app_sees") {
        return;
    }
    let r = report(
        &["--rlimit", "nofile=64", "--rlimit", "core=0:1024", "--umask", "027"],
        &["rlimit", "nofile", "rlimit", "core", "umask"],
    );
    assert_eq!(get(&r, "rlimit.nofile"), "64:64");
    assert_eq!(get(&r, "rlimit.core"), "0:1024");
    assert_eq!(get(&r, "umask"), "0027");
}

#[test]
fn a_setuid_root_binary_does_not_gain_privileges() {
    if !require_root("a_setuid_root_binary_does_not_gain_privileges") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = workdir("suid");
    let suid = dir.join("suid-report");
    std::fs::copy(bin("husk-report"), &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let suid = suid.to_str().unwrap();
    let r = report(&["--user", "65534:65534"], &["exec", suid, "ids", "status"]);
    assert_eq!(get(&r, "euid"), "65534", "no_new_privs ignores the setuid bit");
    assert_eq!(get(&r, "CapEff"), "0000000000000000");
    // Control: with no_new_privs off the bit does work, so the test above proves something.
    let r = report(
        &["--user", "65534:65534", "--allow-new-privs", "--seccomp", "off"],
        &["exec", suid, "ids", "status"],
    );
    assert_eq!(get(&r, "euid"), "0");
    assert_eq!(get(&r, "NoNewPrivs"), "0");
    assert_eq!(get(&r, "CapEff"), "0000000000000000", "the bounding set is still empty");
}

#[test]
fn malformed_or_contradictory_policies_never_start_the_app() {
    if !require_root("malformed_or_contradictory_policies_never_start_the_app") {
        return;
    }
    let dir = workdir("table");
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{not json").unwrap();
    let unknown_call = dir.join("unknown-call.json");
    std::fs::write(
        &unknown_call,
        r#"{"app": {"mismatch_action": "allow", "match_action": "log", "filter": [{"syscall": "no_such_call"}]}}"#,
    )
    .unwrap();
    let no_app = dir.join("no-app.json");
    std::fs::write(
        &no_app,
        r#"{"a": {"mismatch_action": "allow", "match_action": "log", "filter": []},
            "b": {"mismatch_action": "allow", "match_action": "log", "filter": []}}"#,
    )
    .unwrap();
    let (broken, unknown_call, no_app) = (
        broken.to_str().unwrap(),
        unknown_call.to_str().unwrap(),
        no_app.to_str().unwrap(),
    );
    let cases: &[(&[&str], &str)] = &[
        (&["--user", "bob"], "--user: unknown user \"bob\""),
        (
            &["--user", "65534:nosuchgroup"],
            "--user: unknown group \"nosuchgroup\"",
        ),
        (&["--user", "-5"], "--user: \"-5\" is not a valid uid"),
        (&["--user", "4294967295:0"], "not a valid uid"),
        (&["--user", ":0"], "--user: empty user name"),
        (&["--user", "4242"], "give it as --user 4242:GID"),
        (&["--groups", "nosuchgroup"], "--groups: unknown group \"nosuchgroup\""),
        (
            &["--user", "65534:65534", "--groups", "65534,bogus"],
            "--groups: unknown group \"bogus\"",
        ),
        (
            &["--cap-keep", "NET_BIND"],
            "--cap-keep: unknown capability \"NET_BIND\"",
        ),
        (&["--cap-keep", "CAP_FLY"], "unknown capability \"CAP_FLY\""),
        (&["--cap-keep", "all,CHOWN"], "--cap-keep: \"all\" cannot be combined"),
        (
            &["--no-new-privs", "--allow-new-privs"],
            "--allow-new-privs: contradicts --no-new-privs",
        ),
        (
            &["--allow-new-privs"],
            "--allow-new-privs: seccomp cannot be applied without no_new_privs",
        ),
        (
            &["--allow-new-privs", "--seccomp", "off", "--fs-ro", "/"],
            "--allow-new-privs: Landlock cannot be applied",
        ),
        (&["--rlimit", "nofile"], "--rlimit: expected NAME=SOFT[:HARD]"),
        (&["--rlimit", "nofiles=5"], "--rlimit: unknown resource \"nofiles\""),
        (&["--rlimit", "nofile=abc"], "\"abc\" is not a number"),
        (&["--rlimit", "nofile=10:5"], "the soft limit is above the hard limit"),
        (
            &["--rlimit", "nofile=unlimited:64"],
            "the soft limit is above the hard limit",
        ),
        (
            &["--rlimit", "nofile=1", "--rlimit", "NOFILE=2"],
            "--rlimit: nofile is given twice",
        ),
        (&["--umask", "999"], "--umask: \"999\" is not an octal mode"),
        (&["--umask", "01777"], "--umask"),
        (
            &["--fs-ro", "/nonexistent-husk"],
            "landlock: cannot open \"/nonexistent-husk\" for the ruleset: No such file or directory",
        ),
        (&["--fs-rw", ""], "--fs-rw: empty path"),
        (
            &["--fs-ro", "/", "--landlock", "off"],
            "--landlock: off contradicts --fs-ro",
        ),
        (
            &["--landlock-scope", "signal", "--landlock", "off"],
            "off contradicts --landlock-scope",
        ),
        (&["--tcp-bind", "0"], "--tcp-bind: \"0\" is not a TCP port"),
        (&["--tcp-connect", ""], "--tcp-connect: empty port list"),
        (
            &["--tcp-connect", "70000"],
            "--tcp-connect: \"70000\" is not a TCP port",
        ),
        (&["--tcp-connect", "http"], "--tcp-connect: \"http\" is not a TCP port"),
        (&["--landlock-scope", "ipc"], "--landlock-scope: unknown scope \"ipc\""),
        (&["--landlock-scope", "none,signal"], "\"none\" cannot be combined"),
        (
            &["--landlock", "sometimes"],
            "--landlock: expected best-effort, enforce or off",
        ),
        (&["--landlock", "enforce"], "--landlock: enforce asks for nothing"),
        (
            &["--seccomp-action", "trap"],
            "--seccomp-action: expected errno, kill or log",
        ),
        (
            &["--seccomp", "off", "--seccomp-action", "kill"],
            "--seccomp-action: has no effect with --seccomp off",
        ),
        (
            &["--seccomp", "/nonexistent-husk.json"],
            "seccomp: cannot open \"/nonexistent-husk.json\"",
        ),
        (&["--seccomp", broken], "does not compile"),
        (&["--seccomp", unknown_call], "does not compile"),
        (&["--seccomp", no_app], "none is named \"app\""),
        (
            &["--seccomp", unknown_call, "--seccomp-action", "kill"],
            "does not apply to a profile file",
        ),
        (&["--seccomp", ""], "--seccomp: empty value"),
    ];
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (i, (args, needle)) in cases.iter().enumerate() {
        let marker = dir.join(format!("ran-{i}"));
        let out = confined(args, &["marker", marker.to_str().unwrap()]);
        let ok = out.code == Some(125)
            && out.stderr.contains("shim: error: ")
            && out.stderr.contains(needle)
            && !marker.exists()
            && out.stdout.is_empty();
        if !ok {
            failures.push(format!(
                "{args:?}: exit {:?}, app ran: {}, stderr: {}",
                out.code,
                marker.exists(),
                out.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn a_non_root_shim_still_confines_what_it_can_and_refuses_the_rest() {
    if !require_root("a_non_root_shim_still_confines_what_it_can_and_refuses_the_rest") {
        return;
    }
    // The shim itself started as uid 65534 with no capabilities (a non-root container).
    let as_nobody = |shim_args: &[&str], items: &[&str]| {
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child", "setpriv"])
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(shim())
            .args(shim_args)
            .arg("--")
            .arg(report_bin())
            .args(items);
        run(cmd, LIMIT)
    };
    let out = as_nobody(&[], &["ids", "status"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let r = parse(&out);
    assert_eq!(get(&r, "uid"), "65534");
    assert_eq!(get(&r, "CapEff"), "0000000000000000");
    assert_eq!(get(&r, "NoNewPrivs"), "1");
    assert_eq!(get(&r, "Seccomp"), "2");
    assert!(out.stderr.contains("lacks CAP_SETPCAP"), "{}", out.stderr);

    let dir = workdir("nobody");
    set_mode(&dir, 0o777); // so that the app, as 65534, could create its marker
    for (args, needle) in [
        (
            &["--allow-new-privs", "--seccomp", "off"][..],
            "cannot empty the bounding set",
        ),
        (&["--user", "1000:1000"], "--user: the shim lacks CAP_SETUID/CAP_SETGID"),
        (&["--cap-keep", "NET_BIND_SERVICE"], "not in the shim's permitted set"),
    ] {
        let marker = dir.join("ran");
        let out = as_nobody(args, &["marker", marker.to_str().unwrap()]);
        assert_eq!(out.code, Some(125), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        assert!(!marker.exists());
    }
    // Control: an acceptable policy does run the app, which can create the marker.
    let marker = dir.join("ran");
    let out = as_nobody(&[], &["marker", marker.to_str().unwrap()]);
    assert_eq!((out.code, marker.exists()), (Some(0), true), "{}", out.stderr);
}
