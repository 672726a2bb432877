//! Test support: where the static binaries are, how to run the shim as PID 1 in a fresh PID
//! namespace, and how to read what happened from outside.
//!
//! The binaries under test are the release musl builds (`scripts/test` builds them first), the
//! same files users put in their images.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let on_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!on_ci, "{test}: needs root, and CI=true forbids skipping");
    eprintln!("SKIP {test}: needs root (run the tests as root to include it)");
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

/// A shim started in a new PID namespace, with its host pid found.
pub struct Pid1 {
    pub unshare: Child,
    /// The shim's pid as seen from the test (outside the namespace).
    pub pid: i32,
}

impl Pid1 {
    /// Starts `shim ARGS` as PID 1 with stdout and stderr piped.
    pub fn start(shim_args: &[&str]) -> Pid1 {
        Self::start_with(pid1_command(shim_args))
    }

    pub fn start_with(mut cmd: Command) -> Pid1 {
        let unshare = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn unshare");
        let parent = unshare.id() as i32;
        let pid = wait_for(Duration::from_secs(10), || children_of(parent).into_iter().next())
            .expect("the shim did not appear under unshare");
        Pid1 { unshare, pid }
    }

    pub fn signal(&self, sig: i32) {
        send(self.pid, sig);
    }

    /// Waits for the whole run to end; returns (exit status, stdout, stderr).
    pub fn finish(self, limit: Duration) -> Outcome {
        finish(self.unshare, limit)
    }
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

/// Waits for `child` to exit within `limit` (a generous liveness bound, not a timing claim),
/// killing it and failing if it does not.
pub fn finish(mut child: Child, limit: Duration) -> Outcome {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        code: status.code(),
        signal: status.signal(),
        stdout: reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// Runs a command to completion with a liveness bound.
pub fn run(mut cmd: Command, limit: Duration) -> Outcome {
    finish(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
        limit,
    )
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
