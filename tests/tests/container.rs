//! The product in a real container engine: images built `FROM scratch` from the static binaries
//! (and the final stage of Dockerfile.example, verbatim), run with `docker run --read-only
//! --cap-drop ALL --user 65532`, inspected with `docker exec`, `docker stop`, HEALTHCHECK and
//! `docker inspect`.
//!
//! Every image and container is named after the test process and the test, and removed by a
//! Drop guard, so a failed assertion leaves nothing behind. The tests need root and a reachable
//! Docker Engine: off CI they skip with a printed reason when either is missing; with CI=true
//! they fail instead.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use husk_tests::{bin, children_of, require_root, run, scratch, stat, status, wait_for, Outcome};

/// A liveness bound for anything Docker does (builds, starts, stops, health transitions).
const LIVENESS: Duration = Duration::from_secs(90);

const EXAMPLE_BEGIN: &str = "# husk-test: final stage begins";
const EXAMPLE_END: &str = "# husk-test: final stage ends";

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True when the test may go on: root, and a Docker Engine that answers `docker info`.
fn docker_ready(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    let why = match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Ok(out) if out.status.success() => return true,
        Ok(out) => format!("`docker info` failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
        Err(e) => format!("cannot run `docker`: {e}"),
    };
    assert!(
        !on_ci(),
        "{test}: the Docker Engine is unreachable ({why}), and CI=true forbids skipping"
    );
    eprintln!("SKIP {test}: the Docker Engine is unreachable ({why})");
    false
}

/// `docker ARGS` to completion, with a liveness bound.
fn docker(args: &[&str]) -> Outcome {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    run(cmd, LIVENESS)
}

/// `docker ARGS`, which must succeed; returns its stdout.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert_eq!(
        out.code,
        Some(0),
        "docker {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        out.stdout_text(),
        out.stderr
    );
    out.stdout_text()
}

/// A name no other test run uses: Docker names are global to the engine.
fn unique(test: &str) -> String {
    format!("husk-test-{}-{test}", std::process::id())
}

/// A locally built image, removed when dropped.
struct Image {
    tag: String,
}

impl Image {
    /// Builds `dockerfile` in a fresh context holding `files` (name in the context, source).
    fn build(test: &str, dockerfile: &str, files: &[(&str, PathBuf)], build_args: &[&str]) -> Image {
        let context = scratch(&format!("{test}-context"));
        for (name, source) in files {
            std::fs::copy(source, context.join(name))
                .unwrap_or_else(|e| panic!("copy {} into the build context: {e}", source.display()));
        }
        std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
        let image = Image { tag: unique(test) };
        // Tests build in parallel and remove their images when done. With the build cache, one
        // build can pick up an intermediate image that another test is deleting ("failed to get
        // digest"), so builds use no cache and run one at a time.
        static BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = BUILDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut args = vec!["build", "--quiet", "--no-cache", "--tag", &image.tag];
        for arg in build_args {
            args.extend(["--build-arg", arg]);
        }
        let context_arg = context.to_str().unwrap();
        args.push(context_arg);
        let out = docker(&args);
        let _ = std::fs::remove_dir_all(&context);
        assert_eq!(
            out.code,
            Some(0),
            "docker build failed for\n{dockerfile}\nstderr:\n{}",
            out.stderr
        );
        image
    }

    /// The test image: the static binaries at the root of an otherwise empty file system (no
    /// shell, no libc, no /etc), and no entrypoint, so each test names its own command line.
    fn binaries(test: &str) -> Image {
        let names = ["shim", "probe", "husk-helper", "husk-report"];
        let files: Vec<(&str, PathBuf)> = names.iter().map(|n| (*n, bin(n))).collect();
        Image::build(
            test,
            "FROM scratch\nCOPY shim probe husk-helper husk-report /\n",
            &files,
            &[],
        )
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "--force", &self.tag]).output();
    }
}

/// A container, removed (with its anonymous volumes) when dropped.
struct Container {
    name: String,
}

impl Container {
    /// `docker run --detach --name NAME OPTIONS IMAGE COMMAND...`.
    fn run(test: &str, options: &[&str], image: &Image, command: &[&str]) -> Container {
        let container = Container { name: unique(test) };
        let mut args = vec!["run", "--detach", "--name", &container.name];
        args.extend(options);
        args.push(&image.tag);
        args.extend(command);
        let out = docker(&args);
        assert_eq!(
            out.code,
            Some(0),
            "docker {args:?} failed:\n{}\nlogs:\n{}",
            out.stderr,
            container.logs()
        );
        container
    }

    /// The app's stdout followed by the shim's and the app's stderr.
    fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        format!("{}{}", out.stdout_text(), out.stderr)
    }

    fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, &self.name])
            .trim()
            .to_string()
    }

    /// `docker exec NAME COMMAND...` to completion.
    fn exec(&self, command: &[&str]) -> Outcome {
        let mut args = vec!["exec", &self.name];
        args.extend(command);
        docker(&args)
    }

    /// Waits until the logs have a line equal to `line`.
    fn wait_line(&self, line: &str) {
        let found = wait_for(LIVENESS, || {
            let logs = self.logs();
            logs.lines().any(|l| l == line).then_some(())
        });
        assert!(found.is_some(), "waited for {line:?}; logs:\n{}", self.logs());
    }

    /// Waits until `docker inspect` shows `value` for `format`.
    fn wait_inspect(&self, format: &str, value: &str) {
        let found = wait_for(LIVENESS, || {
            let now = self.inspect(format);
            (now == value).then_some(())
        });
        assert!(
            found.is_some(),
            "waited for {format} = {value}, it is {}; logs:\n{}",
            self.inspect(format),
            self.logs()
        );
    }

    /// The host pid of the container's PID 1.
    fn host_pid(&self) -> i32 {
        let pid: i32 = self.inspect("{{.State.Pid}}").parse().unwrap();
        assert!(pid > 0, "the container is not running; logs:\n{}", self.logs());
        pid
    }

    fn exit_code(&self) -> i32 {
        self.inspect("{{.State.ExitCode}}").parse().unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.name])
            .output();
    }
}

/// A host directory the container's uid 65532 can write to (for a bind mount).
fn shared_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last field of NSpid: the pid as the container sees it.
fn pid_in_container(host_pid: i32) -> Option<i32> {
    status(host_pid).get("NSpid")?.split_whitespace().last()?.parse().ok()
}

/// The only child of `parent` (the app under the shim), once there is exactly one.
fn only_child(parent: i32) -> i32 {
    wait_for(LIVENESS, || match children_of(parent)[..] {
        [child] => Some(child),
        _ => None,
    })
    .unwrap_or_else(|| panic!("the shim has children {:?}", children_of(parent)))
}

// ---- Dockerfile.example -------------------------------------------------------------------

fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile.example");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Instructions of a Dockerfile fragment: comments dropped, continuation lines joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// The example's global ARG lines and its final stage, verbatim, after checking that the stage
/// has the shape the tests can build: `FROM ${BASE}`, files only from the `binaries` stage, the
/// shim as ENTRYPOINT ending in `-- /app`, and the probe as HEALTHCHECK.
fn example_parts() -> (String, String) {
    let text = example();
    let begin = text
        .find(EXAMPLE_BEGIN)
        .unwrap_or_else(|| panic!("Dockerfile.example lost its marker {EXAMPLE_BEGIN:?}"));
    let end = text
        .find(EXAMPLE_END)
        .unwrap_or_else(|| panic!("Dockerfile.example lost its marker {EXAMPLE_END:?}"));
    assert!(begin < end, "the markers are out of order");
    let final_stage = text[begin..end + EXAMPLE_END.len()].to_string();
    assert!(
        instructions(&text[end..]).is_empty(),
        "instructions after {EXAMPLE_END:?} would not be built by the tests"
    );

    let head: Vec<String> = instructions(&text[..begin])
        .into_iter()
        .take_while(|i| !i.starts_with("FROM "))
        .collect();
    assert!(
        head.iter().all(|i| i.starts_with("ARG ")),
        "only ARG may come before the first FROM: {head:?}"
    );
    assert!(
        head.iter()
            .any(|i| i == "ARG BASE=gcr.io/distroless/static-debian12:nonroot"),
        "the base image must be chosen by ARG BASE (default distroless static nonroot): {head:?}"
    );

    let stage = instructions(&final_stage);
    assert_eq!(
        stage[0], "FROM ${BASE}",
        "the final stage must start with FROM ${{BASE}}"
    );
    assert_eq!(
        stage.iter().filter(|i| i.starts_with("FROM ")).count(),
        1,
        "the final stage must be one stage"
    );
    for i in &stage {
        if i.starts_with("COPY ") || i.starts_with("ADD ") {
            assert!(
                i.starts_with("COPY --from=binaries "),
                "the final stage may take files only from the `binaries` stage: {i}"
            );
        }
        assert!(
            !i.starts_with("RUN "),
            "the final stage cannot RUN anything (no shell): {i}"
        );
    }
    let entrypoint = stage
        .iter()
        .find_map(|i| i.strip_prefix("ENTRYPOINT "))
        .expect("the final stage has an ENTRYPOINT");
    let entrypoint: Vec<String> =
        serde_json::from_str(entrypoint).unwrap_or_else(|e| panic!("ENTRYPOINT must be exec form (a JSON array): {e}"));
    assert_eq!(entrypoint.first().map(String::as_str), Some("/shim"));
    assert_eq!(
        entrypoint[entrypoint.len() - 2..],
        ["--".to_string(), "/app".to_string()],
        "the ENTRYPOINT ends with `-- /app`"
    );
    let healthcheck = stage
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK "))
        .expect("the final stage has a HEALTHCHECK");
    assert!(
        healthcheck.ends_with(r#"CMD ["/probe", "health", "--docker"]"#),
        "{healthcheck}"
    );
    (head.join("\n"), final_stage)
}

/// The Dockerfile the tests build: the example's ARGs, a `binaries` stage taking the static
/// binaries from the build context (husk-helper as the app), and the example's final stage.
fn example_dockerfile() -> String {
    let (args, final_stage) = example_parts();
    format!(
        "{args}\n\
         FROM scratch AS binaries\n\
         COPY shim probe /\n\
         COPY husk-helper /app\n\
         {final_stage}\n"
    )
}

#[test]
fn the_example_final_stage_has_the_shape_the_tests_build() {
    let dockerfile = example_dockerfile();
    assert!(dockerfile.contains("FROM scratch AS binaries"));
    // The policy in the example's ENTRYPOINT is one the shim accepts.
    let (_, stage) = example_parts();
    let entrypoint: Vec<String> = instructions(&stage)
        .iter()
        .find_map(|i| serde_json::from_str(i.strip_prefix("ENTRYPOINT ")?).ok())
        .unwrap();
    if !require_root("the_example_final_stage_has_the_shape_the_tests_build") {
        return;
    }
    // --check resolves the policy on this machine: /tmp exists here as it does under
    // `--tmpfs /tmp`; the command is the helper standing in for /app.
    let options = &entrypoint[1..entrypoint.len() - 2];
    let mut cmd = Command::new(bin("shim"));
    cmd.arg("--check").args(options).arg("--").arg(bin("husk-helper"));
    let out = run(cmd, LIVENESS);
    assert_eq!(out.code, Some(0), "shim --check {options:?}: {}", out.stderr);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["tcp-bind"], serde_json::json!([8080]), "{plan}");
}

#[test]
fn the_example_image_runs_and_its_healthcheck_goes_healthy_then_unhealthy() {
    let test = "the_example_image_runs_and_its_healthcheck_goes_healthy_then_unhealthy";
    if !docker_ready(test) {
        return;
    }
    let files = [
        ("shim", bin("shim")),
        ("probe", bin("probe")),
        ("husk-helper", bin("husk-helper")),
    ];
    let image = Image::build("example", &example_dockerfile(), &files, &["BASE=scratch"]);
    let config = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{json .Config.Healthcheck.Test}}",
        &image.tag,
    ]);
    assert_eq!(config.trim(), r#"65532:65532 ["CMD","/probe","health","--docker"]"#);

    // The options override the HEALTHCHECK's timing only, to keep the test short. The words
    // after the image are appended to the ENTRYPOINT: `/app serve 8080 0`.
    let c = Container::run(
        "example",
        &[
            "--read-only",
            "--tmpfs",
            "/tmp:rw,mode=1777",
            "--cap-drop",
            "ALL",
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
            "--health-timeout",
            "10s",
            "--health-start-period",
            "1s",
        ],
        &image,
        &["serve", "8080", "0"],
    );
    c.wait_line("ready");
    c.wait_inspect("{{.State.Health.Status}}", "healthy");

    // SIGUSR1 reaches the app through the shim; the app closes its listener and keeps running.
    docker_ok(&["kill", "--signal", "USR1", &c.name]);
    c.wait_line("closed");
    c.wait_inspect("{{.State.Health.Status}}", "unhealthy");
    assert_eq!(c.inspect("{{.State.Running}}"), "true");
    let probe = c.exec(&["/probe", "health", "--docker"]);
    assert_eq!(probe.code, Some(1), "{}{}", probe.stdout_text(), probe.stderr);

    docker_ok(&["stop", "--time", "30", &c.name]);
    assert_eq!(c.exit_code(), 0, "logs:\n{}", c.logs());
}

// ---- the binaries image ---------------------------------------------------------------------

#[test]
fn read_only_without_caps_as_65532_the_shim_is_pid_1_and_probe_answers() {
    let test = "read_only_without_caps_as_65532_the_shim_is_pid_1_and_probe_answers";
    if !docker_ready(test) {
        return;
    }
    let image = Image::binaries("pid1");
    let c = Container::run(
        "pid1",
        &["--read-only", "--cap-drop", "ALL", "--user", "65532"],
        &image,
        &["/shim", "--", "/husk-helper", "serve", "8080", "0"],
    );
    c.wait_line("ready");

    // From the host: the container's PID 1 is the shim, and the app is its child, as 65532.
    let shim = c.host_pid();
    assert_eq!(pid_in_container(shim), Some(1));
    assert!(cmdline(shim).starts_with("/shim "), "{}", cmdline(shim));
    let app = only_child(shim);
    assert_eq!(cmdline(app), "/husk-helper serve 8080 0");
    assert_eq!(stat(app).map(|(_, ppid)| ppid), Some(shim));
    assert!(status(app)["Uid"].starts_with("65532\t"), "{:?}", status(app)["Uid"]);

    // From inside, through the diagnostics socket.
    let ps = c.exec(&["/probe", "ps"]);
    assert_eq!(ps.code, Some(0), "probe ps: {}", ps.stderr);
    let ps = ps.stdout_text();
    assert!(ps.contains("/shim --"), "{ps}");
    assert!(ps.contains("/husk-helper serve 8080 0"), "{ps}");
    let ports = c.exec(&["/probe", "ports"]);
    assert_eq!(ports.code, Some(0), "probe ports: {}", ports.stderr);
    let ports = ports.stdout_text();
    assert!(
        ports.lines().any(|l| l.contains(":8080") && l.contains("husk-helper")),
        "{ports}"
    );

    // There is no shell to exec into.
    let sh = c.exec(&["/bin/sh", "-c", "true"]);
    // Docker reports the failed exec (status 126 or 127) on stdout or stderr, by version.
    let said = format!("{}{}", sh.stdout_text(), sh.stderr);
    assert!(matches!(sh.code, Some(126 | 127)), "the image has a shell: {said}");
    assert!(said.contains("/bin/sh") && said.contains("no such file"), "{said}");
}

#[test]
fn docker_stop_ends_through_the_apps_term_handling_and_leftovers_get_their_grace() {
    let test = "docker_stop_ends_through_the_apps_term_handling_and_leftovers_get_their_grace";
    if !docker_ready(test) {
        return;
    }
    let out = shared_dir("stop");
    let image = Image::binaries("stop");
    let mount = format!("{}:/out", out.display());
    // The app starts a grandchild that needs 500 ms to clean up after SIGTERM; it is still
    // there when the app exits, so the shim gives it the grace period.
    let c = Container::run(
        "stop",
        &[
            "--read-only",
            "--cap-drop",
            "ALL",
            "--user",
            "65532",
            "--volume",
            &mount,
        ],
        &image,
        &[
            "/shim",
            "--grace",
            "20s",
            "--",
            "/husk-helper",
            "serve",
            "8080",
            "7",
            "500",
            "/out/cleaned",
        ],
    );
    c.wait_line("ready");
    // Docker sends SIGTERM to PID 1 and would SIGKILL after 60 s: exit status 7 (not 137)
    // shows the app's own TERM handling ended the container.
    docker_ok(&["stop", "--time", "60", &c.name]);
    assert_eq!(c.exit_code(), 7, "logs:\n{}", c.logs());
    assert!(c.logs().lines().any(|l| l == "term"), "{}", c.logs());
    let marker = std::fs::read_to_string(out.join("cleaned"))
        .unwrap_or_else(|e| panic!("the leftover did not clean up ({e}); logs:\n{}", c.logs()));
    assert_eq!(marker, "cleaned up\n");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn confinement_holds_inside_docker_on_top_of_its_own_profile() {
    let test = "confinement_holds_inside_docker_on_top_of_its_own_profile";
    if !docker_ready(test) {
        return;
    }
    let image = Image::binaries("confine");
    // Root in the container with Docker's default capabilities and seccomp profile: what the
    // report shows beyond that is the shim's doing.
    let c = Container::run(
        "confine",
        &[
            "--read-only",
            "--tmpfs",
            "/tmp:rw,mode=1777",
            "--tmpfs",
            "/scratch:rw,mode=1777",
        ],
        &image,
        &[
            "/shim",
            "--fs-ro",
            "/",
            "--fs-rw",
            "/tmp",
            "--fs-rx",
            "/husk-helper",
            "--tcp-bind",
            "8080",
            "--",
            "/husk-report",
            "ids",
            "status",
            "write",
            "/tmp/allowed",
            "write",
            "/scratch/denied",
            "bind",
            "8080",
            "bind",
            "8081",
            "syscall",
            "ptrace",
            "syscall",
            "getpid",
            "marker",
            "/tmp/done",
            "exec",
            "/husk-helper",
            "sleep",
        ],
    );
    c.wait_line("marker=ok");
    let logs = c.logs();
    let report: std::collections::HashMap<&str, &str> = logs.lines().filter_map(|l| l.split_once('=')).collect();
    let expect = [
        ("uid", "0"),
        // Docker's default set, emptied by the shim, bounding set included.
        ("CapEff", "0000000000000000"),
        ("CapPrm", "0000000000000000"),
        ("CapBnd", "0000000000000000"),
        ("CapAmb", "0000000000000000"),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
        // Landlock: writable only beneath /tmp, though /scratch is a writable tmpfs.
        ("write./tmp/allowed", "ok"),
        ("write./scratch/denied", "EACCES"),
        ("bind.8080", "ok"),
        ("bind.8081", "EACCES"),
        // Docker's profile allows ptrace on this kernel; the shim's built-in profile does not.
        ("syscall.ptrace", "EPERM"),
        ("syscall.getpid", "ok"),
    ];
    for (key, value) in expect {
        assert_eq!(report.get(key).copied(), Some(value), "{key}; report:\n{logs}");
    }

    // Two seccomp filters on the app (Docker's and the app profile), two on the shim (Docker's
    // and its own allowlist, installed after the spawn so the app does not inherit it).
    let shim = c.host_pid();
    let app = only_child(shim);
    wait_for(LIVENESS, || (cmdline(app) == "/husk-helper sleep").then_some(())).expect("the report execs the helper");
    assert_eq!(status(shim)["Seccomp_filters"], "2");
    assert_eq!(status(app)["Seccomp_filters"], "2");
}

/// Every process in the PID namespace of `pid` whose state is Z.
fn zombies_in_namespace_of(pid: i32) -> Vec<i32> {
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|n| n == ns))
        .filter(|&p| stat(p).is_some_and(|(state, _)| state == 'Z'))
        .collect()
}

#[test]
fn zombies_left_by_docker_exec_sessions_are_reaped() {
    let test = "zombies_left_by_docker_exec_sessions_are_reaped";
    if !docker_ready(test) {
        return;
    }
    let image = Image::binaries("zombies");
    let c = Container::run(
        "zombies",
        &["--read-only", "--cap-drop", "ALL", "--user", "65532"],
        &image,
        &["/shim", "--", "/husk-helper", "sleep"],
    );
    let shim = c.host_pid();
    let app = only_child(shim);
    // Each exec session leaves 20 orphans that exit at once; outside any subreaper in the
    // container they are reparented to its PID 1, which alone can reap them.
    for _ in 0..3 {
        let out = c.exec(&["/husk-helper", "orphans-exit", "20"]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert_eq!(out.stdout_text(), "created 20\n");
    }
    let clean = wait_for(LIVENESS, || {
        (zombies_in_namespace_of(shim).is_empty() && children_of(shim) == [app]).then_some(())
    });
    assert!(
        clean.is_some(),
        "zombies {:?}, children of the shim {:?}",
        zombies_in_namespace_of(shim),
        children_of(shim)
    );
    assert_eq!(c.inspect("{{.State.Running}}"), "true");
}

#[test]
fn a_crashing_app_leaves_its_reason_for_probe_last_exit_and_the_termination_log() {
    let test = "a_crashing_app_leaves_its_reason_for_probe_last_exit_and_the_termination_log";
    if !docker_ready(test) {
        return;
    }
    let dir = shared_dir("crash");
    let image = Image::binaries("crash");
    let mount = format!("{}:/log", dir.display());
    let c = Container::run(
        "crash",
        &[
            "--read-only",
            "--cap-drop",
            "ALL",
            "--user",
            "65532",
            "--volume",
            &mount,
        ],
        &image,
        &[
            "/shim",
            "--hold-on-failure",
            "5m",
            "--termination-log",
            "/log/termination-log",
            "--",
            "/husk-helper",
            "kill-self",
            "11",
        ],
    );
    let log = wait_for(LIVENESS, || {
        std::fs::read_to_string(dir.join("termination-log"))
            .ok()
            .filter(|t| !t.is_empty())
    })
    .unwrap_or_else(|| panic!("no termination log; logs:\n{}", c.logs()));
    assert!(log.contains("SIGSEGV") && log.contains("139"), "{log}");

    // Held: the container is still up for a person to look.
    assert_eq!(c.inspect("{{.State.Running}}"), "true");
    let last = c.exec(&["/probe", "last-exit"]);
    assert_eq!(last.code, Some(0), "probe last-exit: {}", last.stderr);
    assert!(last.stdout_text().contains("SIGSEGV"), "{}", last.stdout_text());

    // SIGTERM (docker stop) ends the hold at once; the exit status is the app's.
    docker_ok(&["stop", "--time", "60", &c.name]);
    assert_eq!(c.exit_code(), 139, "logs:\n{}", c.logs());
    let _ = std::fs::remove_dir_all(&dir);
}
