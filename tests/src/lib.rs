//! Test support: where the static binaries are, how to run the shim as PID 1 in a fresh PID
//! namespace, and how to read what happened from outside.
//!
//! The binaries under test are the release musl builds (`scripts/test` builds them first), the
//! same files users put in their images.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// Path of a static binary built by `cargo build --release --target x86_64-unknown-linux-musl`.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("HUSK_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join(TARGET)
            .join("release")
    });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the static binaries first with `cargo build --release --target {TARGET}` \
         (or run scripts/test)",
        path.display()
    );
    path
}

pub fn shim() -> PathBuf {
    bin("shim")
}

pub fn helper() -> PathBuf {
    bin("husk-helper")
}

/// True when the test may go on. Privileged tests call this first: off CI a non-root run skips
/// with a printed reason; on CI (`CI=true`) a skip would hide a regression, so it fails.
pub fn require_root(test: &str) -> bool {
    require(
        test,
        nix::unistd::geteuid().is_root(),
        "needs root (run the tests as root to include it)",
    )
}

/// True when `available`; otherwise the test skips saying `why`, or fails on CI (`CI=true`).
pub fn require(test: &str, available: bool, why: &str) -> bool {
    if available {
        return true;
    }
    let on_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!on_ci, "{test}: {why}, and CI=true forbids skipping");
    eprintln!("SKIP {test}: {why}");
    false
}

/// `unshare --pid --fork --mount-proc SHIM ARGS...`: the shim as PID 1 of a new PID namespace.
pub fn pid1_command(shim_args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(shim())
        .args(shim_args);
    cmd
}

/// `shim --diag-socket SOCKET SHIM_ARGS -- husk-helper HELPER_ARGS` as PID 1.
pub fn helper_pid1_command(socket: &str, shim_args: &[&str], helper_args: &[&str]) -> Command {
    let h = helper().display().to_string();
    let mut args = vec!["--diag-socket", socket];
    args.extend_from_slice(shim_args);
    args.extend(["--", h.as_str()]);
    args.extend_from_slice(helper_args);
    pid1_command(&args)
}

/// A socket path in a fresh scratch directory of its own.
pub fn scratch_socket(name: &str) -> String {
    scratch(name).join("diag.sock").to_string_lossy().into_owned()
}

/// A running shim whose stdout and stderr are collected as they arrive, so a test can wait
/// for a line the app printed while it still runs.
pub struct Running {
    pub process: Child,
    /// The shim's pid as seen from the test (outside any namespace).
    pub pid: i32,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// The shim as PID 1 of a new PID namespace (`Pid1::start`), or as a plain child (`Running::start`).
pub struct Pid1;

impl Pid1 {
    /// Starts `shim ARGS` as PID 1 with stdout and stderr collected.
    pub fn start(shim_args: &[&str]) -> Running {
        Running::spawn(pid1_command(shim_args), true)
    }

    /// Starts a prepared `unshare ... shim ...` command (see `pid1_command`).
    pub fn start_with(cmd: Command) -> Running {
        Running::spawn(cmd, true)
    }
}

impl Running {
    /// Starts `shim ARGS` as a plain child of the test (the subreaper path).
    pub fn start(shim_args: &[&str]) -> Running {
        let mut cmd = Command::new(shim());
        cmd.args(shim_args);
        Running::spawn(cmd, false)
    }

    /// Spawns `cmd`; with `under_unshare` the shim is the child of the spawned unshare.
    pub fn spawn(mut cmd: Command, under_unshare: bool) -> Running {
        let mut process = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the shim");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(process.stdout.take().unwrap(), stdout.clone()),
            collect(process.stderr.take().unwrap(), stderr.clone()),
        ];
        let pid = if under_unshare {
            let parent = process.id() as i32;
            wait_for(Duration::from_secs(10), || children_of(parent).into_iter().next())
                .expect("the shim did not appear under unshare")
        } else {
            process.id() as i32
        };
        Running {
            process,
            pid,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn signal(&self, sig: i32) {
        send(self.pid, sig);
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until stdout has `count` lines equal to `line` (a liveness bound of 20 s).
    pub fn wait_line(&self, line: &str, count: usize) {
        let found = wait_for(Duration::from_secs(20), || {
            (self.stdout().lines().filter(|l| *l == line).count() >= count).then_some(())
        });
        assert!(
            found.is_some(),
            "waited for {count}x {line:?} on stdout; got:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
    }

    /// Waits for a stdout line starting with `prefix` (a liveness bound of 20 s); returns the rest
    /// of the first such line.
    pub fn wait_prefix(&self, prefix: &str) -> String {
        wait_for(Duration::from_secs(20), || {
            self.stdout()
                .lines()
                .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
        })
        .unwrap_or_else(|| {
            panic!(
                "waited for a line starting {prefix:?} on stdout; got:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }

    /// Waits for the run to end within `limit` (a liveness bound, not a timing claim).
    pub fn finish(mut self, limit: Duration) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.process.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.process.kill();
                let _ = self.process.wait();
                panic!("the run did not finish within {limit:?}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Outcome {
            code: status.code(),
            signal: status.signal(),
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed assertion must not leave a shim (and its namespace) behind.
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

fn collect(mut from: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

fn raw_kill(pid: i32, sig: i32) -> nix::Result<()> {
    // SAFETY: kill takes two integers; used for real-time signals nix cannot name.
    nix::errno::Errno::result(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Sends any signal number (real-time included) to `pid`.
pub fn send(pid: i32, sig: i32) {
    raw_kill(pid, sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Outcome {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Waits for an already spawned child (stdout/stderr piped or not) with a liveness bound.
pub fn finish(mut child: Child, limit: Duration) -> Outcome {
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(collect(out, stdout.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(collect(err, stderr.clone()));
    }
    let pid = child.id() as i32;
    Running {
        process: child,
        pid,
        stdout,
        stderr,
        readers,
    }
    .finish(limit)
}

/// Runs a command to completion with a liveness bound.
pub fn run(cmd: Command, limit: Duration) -> Outcome {
    Running::spawn(cmd, false).finish(limit)
}

/// Polls `f` every 10 ms until it returns Some or `limit` passes (a liveness bound).
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `/proc/PID/stat` fields we need: (state, ppid).
pub fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, tail) = text.rsplit_once(')')?;
    let mut fields = tail.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Every process whose parent is `parent`, from the test's view of /proc.
pub fn children_of(parent: i32) -> Vec<i32> {
    let mut kids: Vec<i32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| stat(pid).is_some_and(|(_, ppid)| ppid == parent))
                .collect()
        })
        .unwrap_or_default();
    kids.sort_unstable();
    kids
}

/// `/proc/PID/status` as a map of field → value.
pub fn status(pid: i32) -> HashMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.to_string(), v.trim().to_string())))
        .collect()
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("husk-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How many descriptors `pid` has open.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .count()
}

/// `pid`'s resident set size in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    status(pid)
        .get("VmRSS")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

/// `probe --socket SOCKET ARGS` to completion.
pub fn probe(socket: &str, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(bin("probe"));
    cmd.args(["--socket", socket]).args(args);
    run(cmd, Duration::from_secs(30))
}

/// `probe --socket SOCKET -o json ARGS`, which must succeed.
pub fn probe_json(socket: &str, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    let out = probe(socket, &full);
    assert_eq!(out.code, Some(0), "probe {args:?}: {}", out.stderr);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("probe {args:?}: not JSON: {e}"))
}

/// The shim as PID 1 with a diagnostics socket, watched from outside while its app misbehaves:
/// its descriptors and memory from /proc, its counters from the socket.
pub struct Watched {
    pub shim: Running,
    pub socket: String,
}

impl Watched {
    /// Starts `cmd` (a `pid1_command` whose shim serves `socket`) and waits until the app printed
    /// "ready" and the socket answers.
    pub fn start(cmd: Command, socket: &str) -> Watched {
        Watched::attach(Pid1::start_with(cmd), socket)
    }

    /// Watches a shim already started, once its app printed "ready" and `socket` answers.
    pub fn attach(shim: Running, socket: &str) -> Watched {
        shim.wait_line("ready", 1);
        wait_for(Duration::from_secs(30), || {
            (probe(socket, &["info"]).code == Some(0)).then_some(())
        })
        .unwrap_or_else(|| panic!("the socket never answered; stderr: {}", shim.stderr()));
        Watched {
            shim,
            socket: socket.to_string(),
        }
    }

    /// The app: the shim's only child when the test starts looking.
    pub fn app(&self) -> i32 {
        let kids = children_of(self.shim.pid);
        assert_eq!(kids.len(), 1, "expected the app as the shim's only child: {kids:?}");
        kids[0]
    }

    pub fn fds(&self) -> usize {
        fd_count(self.shim.pid)
    }

    /// The shim's descriptor count once no client connection is open any more (a client that
    /// just got its answer may not have been closed yet): the listener is then its only socket.
    pub fn idle_fds(&self) -> usize {
        let sockets = || {
            std::fs::read_dir(format!("/proc/{}/fd", self.shim.pid))
                .map(|d| {
                    d.flatten()
                        .filter(|e| {
                            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                        })
                        .count()
                })
                .unwrap_or(0)
        };
        wait_for(Duration::from_secs(30), || (sockets() == 1).then_some(()))
            .expect("the shim kept a client connection open");
        self.fds()
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.shim.pid)
    }

    /// The shim's RSS is at most a little (8 MiB) above `before_kib`: whatever the app or the
    /// clients made it allocate was given back.
    pub fn assert_rss_bounded(&self, before_kib: u64) {
        let now = self.rss_kib();
        assert!(
            now <= before_kib + 8 * 1024,
            "the shim's RSS grew from {before_kib} KiB to {now} KiB"
        );
    }

    /// The diagnostics `Status`.
    pub fn status(&self) -> serde_json::Value {
        probe_json(&self.socket, &["status"])
    }

    /// How many times the shim forwarded `name` (`SIGUSR1`), by its own count.
    pub fn forwarded(&self, name: &str) -> i64 {
        self.status()["signals_forwarded"][name].as_i64().unwrap_or(0)
    }

    /// How many processes the shim reaped, by its own count.
    pub fn reaped(&self) -> i64 {
        self.status()["reaped"].as_i64().expect("reaped in Status")
    }

    /// Sends `sig` to the shim and waits until the app printed `got SIG` once more.
    pub fn assert_forwards(&self, sig: i32) {
        let line = format!("got {sig}");
        let before = self.shim.stdout().lines().filter(|l| *l == line).count();
        self.shim.signal(sig);
        self.shim.wait_line(&line, before + 1);
    }

    /// Sends SIGHUP (the app leaves an orphan that exits at once) and waits until the shim's
    /// reaped counter went up by exactly one.
    pub fn assert_reaps(&self) {
        let before = self.reaped();
        self.shim.signal(libc::SIGHUP);
        let after = wait_for(Duration::from_secs(30), || Some(self.reaped()).filter(|&n| n > before))
            .expect("the orphan was not reaped");
        assert_eq!(after, before + 1, "one orphan, one reap");
    }

    /// Waits until the shim holds `fds` descriptors again (a liveness bound of 30 s).
    pub fn wait_fds(&self, fds: usize) {
        let settled = wait_for(Duration::from_secs(30), || (self.fds() == fds).then_some(()));
        assert!(
            settled.is_some(),
            "the shim holds {} descriptors, {fds} before: {:?}",
            self.fds(),
            std::fs::read_dir(format!("/proc/{}/fd", self.shim.pid)).map(|d| d
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .collect::<Vec<_>>())
        );
    }
}

/// A cgroup of the test's own below the one the test runs in (cgroup v1 `CONTROLLER`
/// hierarchy, or the v2 unified one where it has that controller), removed with every process
/// in it when dropped.
pub struct Cgroup {
    pub dir: PathBuf,
    pub v2: bool,
}

impl Cgroup {
    /// `None` when the machine offers no such controller.
    pub fn new(controller: &str, name: &str) -> Option<Cgroup> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let (root, within, v2) = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let root = Path::new("/sys/fs/cgroup").join(controller);
            if controllers.split(',').any(|c| c == controller) && root.is_dir() {
                return Some((root, path.to_string(), false));
            }
            let unified = Path::new("/sys/fs/cgroup");
            let has = std::fs::read_to_string(unified.join("cgroup.subtree_control")).ok()?;
            (controllers.is_empty() && has.split_whitespace().any(|c| c == controller))
                .then(|| (unified.to_path_buf(), String::new(), true))
        })?;
        let dir = root
            .join(within.trim_start_matches('/'))
            .join(format!("husk-test-{}-{name}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some(Cgroup { dir, v2 })
    }

    pub fn write(&self, file: &str, value: &str) {
        std::fs::write(self.dir.join(file), value)
            .unwrap_or_else(|e| panic!("write {value:?} to {}/{file}: {e}", self.dir.display()));
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    /// Moves `pid` (and its future children) into this cgroup.
    pub fn add(&self, pid: i32) {
        self.write("cgroup.procs", &pid.to_string());
    }

    fn procs(&self) -> Vec<i32> {
        self.read("cgroup.procs")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = wait_for(Duration::from_secs(10), || {
            let procs = self.procs();
            for &pid in &procs {
                let _ = raw_kill(pid, libc::SIGKILL);
            }
            procs.is_empty().then_some(())
        });
        let _ = wait_for(Duration::from_secs(10), || std::fs::remove_dir(&self.dir).ok());
    }
}
