//! The varlink messages of husk's diagnostics socket, shared by `shim` (the server) and `probe`
//! (the client): framing, calls and replies, the typed results of every `io.husk.Diag` method,
//! the error names, and the interface description. Nothing here touches the system.

use std::collections::BTreeMap;

pub use serde;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const INTERFACE: &str = "io.husk.Diag";
pub const INTERFACE_VERSION: &str = "1";
/// The largest message either side accepts, NUL included. A request is a few hundred bytes;
/// a reply listing thousands of processes stays well under this.
pub const MAX_REQUEST: usize = 64 * 1024;
pub const MAX_REPLY: usize = 16 * 1024 * 1024;
/// Longest command line ListProcesses returns per process.
pub const CMDLINE_CAP: usize = 512;

/// Qualified varlink error names.
pub mod errors {
    pub const NO_SUCH_PROCESS: &str = "io.husk.Diag.NoSuchProcess";
    pub const PERMISSION_DENIED: &str = "io.husk.Diag.PermissionDenied";
    pub const NO_SUCH_CHECK: &str = "io.husk.Diag.NoSuchCheck";
    pub const UNAVAILABLE: &str = "io.husk.Diag.Unavailable";
    pub const METHOD_NOT_FOUND: &str = "org.varlink.service.MethodNotFound";
    pub const METHOD_NOT_IMPLEMENTED: &str = "org.varlink.service.MethodNotImplemented";
    pub const INTERFACE_NOT_FOUND: &str = "org.varlink.service.InterfaceNotFound";
    pub const INVALID_PARAMETER: &str = "org.varlink.service.InvalidParameter";
}

// ---------------------------------------------------------------------------------------------
// Framing

/// One message on the wire: compact JSON followed by a NUL byte.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing plain structs and serde_json::Value cannot fail (no non-string map keys).
    let mut bytes = serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(0);
    bytes
}

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// More than the cap arrived without a NUL.
    TooLarge,
}

/// Splits a byte stream into NUL-terminated messages, holding at most `cap` bytes.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    cap: usize,
}

impl Decoder {
    pub fn new(cap: usize) -> Decoder {
        Decoder { buf: Vec::new(), cap }
    }

    /// How many more bytes may be pushed before the cap is reached.
    pub fn room(&self) -> usize {
        self.cap.saturating_sub(self.buf.len())
    }

    /// Appends received bytes (at most `room()` of them are kept).
    pub fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.room());
        self.buf.extend_from_slice(&bytes[..n]);
    }

    /// The next complete message without its NUL, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        match self.buf.iter().position(|&b| b == 0) {
            Some(end) => {
                let rest = self.buf.split_off(end + 1);
                let mut message = std::mem::replace(&mut self.buf, rest);
                message.pop();
                Ok(Some(message))
            }
            None if self.buf.len() >= self.cap => Err(FrameError::TooLarge),
            None => Ok(None),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Releases the buffer's memory once it is empty (an idle connection keeps nothing).
    pub fn shrink(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Calls and replies

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Call {
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub oneway: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub more: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub upgrade: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Call {
    pub fn new(method: &str, parameters: Value) -> Call {
        Call {
            method: method.to_string(),
            parameters: Some(parameters),
            oneway: false,
            more: false,
            upgrade: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok<T: Serialize>(result: &T) -> Reply {
        Reply {
            parameters: Some(serde_json::to_value(result).unwrap_or(Value::Null)),
            continues: None,
            error: None,
        }
    }

    pub fn error(name: &str, parameters: Value) -> Reply {
        Reply {
            parameters: Some(parameters),
            continues: None,
            error: Some(name.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// Parameters of methods that take an optional pid (the app's main child when absent).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PidParam {
    #[serde(default)]
    pub pid: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NameParam {
    pub name: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InterfaceParam {
    pub interface: String,
}

// ---------------------------------------------------------------------------------------------
// Results

/// `org.varlink.service.GetInfo`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceInfo {
    pub vendor: String,
    pub product: String,
    pub version: String,
    pub url: String,
    pub interfaces: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KernelFeatures {
    pub release: String,
    /// None: Landlock is not available.
    pub landlock_abi: Option<i64>,
    /// "disabled", "strict" or "filter" support as seen in /proc/self/status.
    pub seccomp: bool,
    /// "v2", "v1", "hybrid" or "none".
    pub cgroup: String,
}

/// `io.husk.Diag.GetInfo`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Info {
    pub shim_version: String,
    pub interface_version: String,
    pub kernel: KernelFeatures,
    pub socket: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChildStatus {
    pub pid: i64,
    pub argv: Vec<String>,
    /// Seconds since the epoch.
    pub started_at: i64,
    /// "running" or "exited".
    pub state: String,
}

/// `io.husk.Diag.Status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub shim_pid: i64,
    /// "pid1", "subreaper" or "plain".
    pub mode: String,
    pub uptime_seconds: f64,
    pub child: Option<ChildStatus>,
    pub signals_forwarded: BTreeMap<String, i64>,
    pub reaped: i64,
    pub last_exit: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Process {
    pub pid: i64,
    pub ppid: i64,
    pub uid: i64,
    pub gid: i64,
    pub state: String,
    pub comm: String,
    pub cmdline: String,
    pub threads: i64,
    pub rss_bytes: i64,
    pub cpu_seconds: f64,
    /// Seconds since the epoch.
    pub start_time: i64,
    pub in_app: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Thread {
    pub tid: i64,
    pub comm: String,
    pub state: String,
    pub cpu_seconds: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fd {
    pub fd: i64,
    pub target: String,
    pub socket_inode: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limit {
    pub name: String,
    /// None: unlimited.
    pub soft: Option<i64>,
    pub hard: Option<i64>,
    pub unit: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mount {
    pub id: i64,
    pub parent: i64,
    pub root: String,
    pub mountpoint: String,
    pub options: String,
    pub fstype: String,
    pub source: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    /// None when redacted.
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Socket {
    /// tcp, tcp6, udp, udp6 or unix.
    pub proto: String,
    /// LISTEN, ESTABLISHED, ... (unix: the socket type and state).
    pub state: String,
    pub local: String,
    pub remote: String,
    pub inode: i64,
    pub uid: Option<i64>,
    pub pid: Option<i64>,
    pub comm: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mtu: Option<i64>,
    pub state: String,
    pub mac: String,
    pub addresses: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Route {
    pub family: String,
    pub destination: String,
    pub gateway: String,
    pub interface: String,
    pub metric: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetConfig {
    pub hostname: String,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    pub resolv_conf: Option<String>,
    pub hosts: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cgroup {
    /// "v2", "v1" or "none".
    pub version: String,
    pub path: String,
    pub memory_current: Option<i64>,
    /// A number of bytes or "max".
    pub memory_max: Option<String>,
    pub memory_peak: Option<i64>,
    pub memory_events: BTreeMap<String, i64>,
    /// "QUOTA PERIOD", e.g. "max 100000".
    pub cpu_max: Option<String>,
    pub cpu_stat: BTreeMap<String, i64>,
    pub pids_current: Option<i64>,
    pub pids_max: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CapSet {
    pub hex: String,
    pub names: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Security {
    pub pid: i64,
    /// Real, effective, saved, filesystem.
    pub uids: Vec<i64>,
    pub gids: Vec<i64>,
    pub groups: Vec<i64>,
    pub cap_inheritable: CapSet,
    pub cap_permitted: CapSet,
    pub cap_effective: CapSet,
    pub cap_bounding: CapSet,
    pub cap_ambient: CapSet,
    pub no_new_privs: bool,
    /// "disabled", "strict" or "filter".
    pub seccomp: String,
    pub seccomp_filters: Option<i64>,
    /// For the app's main child: the policy the shim applied.
    pub policy: Option<Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    /// "tcp" or "http".
    pub kind: String,
    pub target: String,
    /// None: not run yet.
    pub ok: Option<bool>,
    pub detail: String,
    /// Milliseconds since the result was obtained.
    pub age_ms: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checks {
    pub app_running: bool,
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastExit {
    /// False while the app runs.
    pub exited: bool,
    pub description: Option<String>,
    pub status: Option<i64>,
}

/// Wrappers for methods that return lists: varlink replies are objects.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Processes {
    pub processes: Vec<Process>,
}
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Threads {
    pub threads: Vec<Thread>,
}
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fds {
    pub fds: Vec<Fd>,
}
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limits {
    pub limits: Vec<Limit>,
}
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mounts {
    pub mounts: Vec<Mount>,
}
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Environ {
    pub variables: Vec<EnvVar>,
}
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sockets {
    pub sockets: Vec<Socket>,
}

/// The interface description returned by `GetInterfaceDescription("io.husk.Diag")`.
pub const DESCRIPTION: &str = r#"# husk diagnostics: a read-only view of the container, served by its PID 1.
# No method changes anything, sends a signal, starts a process or connects to an address
# named by the caller.
interface io.husk.Diag

type KernelFeatures (
  release: string,
  landlock_abi: ?int,
  seccomp: bool,
  cgroup: string
)

type ChildStatus (
  pid: int,
  argv: []string,
  started_at: int,
  state: string
)

type Process (
  pid: int,
  ppid: int,
  uid: int,
  gid: int,
  state: string,
  comm: string,
  cmdline: string,
  threads: int,
  rss_bytes: int,
  cpu_seconds: float,
  start_time: int,
  in_app: bool
)

type Thread (tid: int, comm: string, state: string, cpu_seconds: float)

type Fd (fd: int, target: string, socket_inode: ?int)

type Limit (name: string, soft: ?int, hard: ?int, unit: string)

type Mount (
  id: int,
  parent: int,
  root: string,
  mountpoint: string,
  options: string,
  fstype: string,
  source: string
)

type EnvVar (name: string, value: ?string)

type Socket (
  proto: string,
  state: string,
  local: string,
  remote: string,
  inode: int,
  uid: ?int,
  pid: ?int,
  comm: ?string
)

type Interface (name: string, mtu: ?int, state: string, mac: string, addresses: []string)

type Route (family: string, destination: string, gateway: string, interface: string, metric: int)

type CapSet (hex: string, names: []string)

type Check (name: string, kind: string, target: string, ok: ?bool, detail: string, age_ms: ?int)

# Shim version, interface version, kernel features and the socket address.
method GetInfo() -> (
  shim_version: string,
  interface_version: string,
  kernel: KernelFeatures,
  socket: string
)

# The shim and its main child, with counters.
method Status() -> (
  shim_pid: int,
  mode: string,
  uptime_seconds: float,
  child: ?ChildStatus,
  signals_forwarded: [string]int,
  reaped: int,
  last_exit: ?string
)

method ListProcesses() -> (processes: []Process)

method ListThreads(pid: int) -> (threads: []Thread)

method ListFds(pid: int) -> (fds: []Fd)

# Without pid: the app's main child.
method Limits(pid: ?int) -> (limits: []Limit)

method Mounts(pid: ?int) -> (mounts: []Mount)

# Values are null unless the shim was told to show them (--diag-env-allow).
method Environ(pid: ?int) -> (variables: []EnvVar)

method ListSockets() -> (sockets: []Socket)

method NetConfig() -> (
  hostname: string,
  interfaces: []Interface,
  routes: []Route,
  resolv_conf: ?string,
  hosts: ?string
)

method Cgroup() -> (
  version: string,
  path: string,
  memory_current: ?int,
  memory_max: ?string,
  memory_peak: ?int,
  memory_events: [string]int,
  cpu_max: ?string,
  cpu_stat: [string]int,
  pids_current: ?int,
  pids_max: ?string
)

method Security(pid: ?int) -> (
  pid: int,
  uids: []int,
  gids: []int,
  groups: []int,
  cap_inheritable: CapSet,
  cap_permitted: CapSet,
  cap_effective: CapSet,
  cap_bounding: CapSet,
  cap_ambient: CapSet,
  no_new_privs: bool,
  seccomp: string,
  seccomp_filters: ?int,
  policy: ?object
)

# The configured health checks with their latest (cached) results.
method Checks() -> (app_running: bool, checks: []Check)

# Runs one configured check now (or returns a result younger than the rate limit).
method RunCheck(name: string) -> (check: Check)

# How the main child ended, as written to the termination log.
method LastExit() -> (exited: bool, description: ?string, status: ?int)

error NoSuchProcess (pid: int)
error NoSuchCheck (name: string)
error PermissionDenied (uid: int, reason: string)
error Unavailable (reason: string)
"#;

/// The standard `org.varlink.service` interface.
pub const SERVICE_DESCRIPTION: &str = r#"# The Varlink Service Interface is provided by every varlink service.
interface org.varlink.service

method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

method GetInterfaceDescription(interface: string) -> (description: string)

error InterfaceNotFound (interface: string)
error MethodNotFound (method: string)
error MethodNotImplemented (method: string)
error InvalidParameter (parameter: string)
error PermissionDenied ()
error ExpectedMore ()
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_on_nul_and_keep_the_rest() {
        let mut d = Decoder::new(64);
        d.push(b"{\"a\":1}\0{\"b\"");
        assert_eq!(d.next_message().unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(d.next_message().unwrap(), None);
        d.push(b":2}\0");
        assert_eq!(d.next_message().unwrap().unwrap(), b"{\"b\":2}");
        assert!(d.is_empty());
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut d = Decoder::new(8);
        d.push(&[b'x'; 100]);
        assert_eq!(d.room(), 0);
        assert_eq!(d.next_message(), Err(FrameError::TooLarge));
    }

    #[test]
    fn calls_round_trip() {
        let call = Call::new("io.husk.Diag.ListFds", serde_json::json!({"pid": 1}));
        let bytes = encode(&call);
        assert_eq!(bytes.last(), Some(&0));
        let back: Call = serde_json::from_slice(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(back, call);
        let minimal: Call = serde_json::from_str(r#"{"method":"x.Y"}"#).unwrap();
        assert_eq!(minimal.parameters, None);
    }

    /// Every method and type the server returns is declared in the description.
    #[test]
    fn description_declares_every_method() {
        for m in [
            "GetInfo",
            "Status",
            "ListProcesses",
            "ListThreads",
            "ListFds",
            "Limits",
            "Mounts",
            "Environ",
            "ListSockets",
            "NetConfig",
            "Cgroup",
            "Security",
            "Checks",
            "RunCheck",
            "LastExit",
        ] {
            assert!(DESCRIPTION.contains(&format!("method {m}(")), "{m}");
        }
        assert!(DESCRIPTION.contains("interface io.husk.Diag\n"));
    }

    /// Field names of the typed results match the description (a drift check).
    #[test]
    fn result_fields_match_the_description() {
        let process = serde_json::to_value(Process::default()).unwrap();
        let block = DESCRIPTION
            .split("type Process (")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap();
        for key in process.as_object().unwrap().keys() {
            assert!(block.contains(&format!("{key}:")), "Process.{key}");
        }
        let status = serde_json::to_value(Status::default()).unwrap();
        let block = DESCRIPTION
            .split("method Status() -> (")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap();
        for key in status.as_object().unwrap().keys() {
            assert!(block.contains(&format!("{key}:")), "Status.{key}");
        }
    }
}

#[cfg(test)]
mod chunking {
    use super::*;

    /// However the stream is cut, the same messages come out.
    #[test]
    fn any_chunking_yields_the_same_messages() {
        let stream: Vec<u8> = [&b"{\"method\":\"a.B\"}\0"[..], b"\0", b"{\"x\":[1,2]}\0", b"tail"].concat();
        for size in 1..stream.len() {
            let mut d = Decoder::new(MAX_REQUEST);
            let mut out = Vec::new();
            for chunk in stream.chunks(size) {
                d.push(chunk);
                while let Ok(Some(m)) = d.next_message() {
                    out.push(m);
                }
            }
            assert_eq!(
                out,
                vec![b"{\"method\":\"a.B\"}".to_vec(), Vec::new(), b"{\"x\":[1,2]}".to_vec()]
            );
            assert!(!d.is_empty());
        }
    }
}
