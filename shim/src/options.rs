//! The option table and the three sources that can set an option: the command line, `SHIM_*`
//! environment variables and the JSON config file.
//!
//! This layer is pure and only knows the *shape* of each option (a value, an on/off flag or a
//! repeatable list). What a value means is decided in `config`. Every source produces a
//! [`Settings`] map; [`Settings::overlay`] applies them in the documented precedence
//! (command line > environment > file > defaults).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;

/// How an option takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `--name VALUE`, `--name=VALUE`; JSON string (or number, for durations and numbers).
    Value,
    /// `--name` turns it on; JSON boolean; `SHIM_NAME=0/false/off/no` turns it off.
    Flag,
    /// Repeatable; each value may also hold a comma-separated list; JSON array of strings.
    List,
}

/// One line of the option table.
pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
    pub metavar: &'static str,
    pub help: &'static str,
}

macro_rules! spec {
    ($name:literal, $kind:ident, $metavar:literal, $help:literal) => {
        Spec {
            name: $name,
            kind: Kind::$kind,
            metavar: $metavar,
            help: $help,
        }
    };
}

/// Every option the shim knows, in the order `--help` lists them.
pub const SPECS: &[Spec] = &[
    spec!(
        "config",
        Value,
        "PATH",
        "read options from a JSON file (command line and environment win)"
    ),
    spec!(
        "check",
        Flag,
        "",
        "validate everything, print the effective plan as JSON, run nothing"
    ),
    // Init behaviour.
    spec!(
        "signal-target",
        Value,
        "child|group",
        "forward signals to the main child or its process group [child]"
    ),
    spec!(
        "map-signal",
        List,
        "FROM=TO",
        "rewrite a forwarded signal; TO=0 drops it"
    ),
    spec!(
        "grace",
        Value,
        "DURATION",
        "time leftover processes get between SIGTERM and SIGKILL [3s]"
    ),
    spec!(
        "remap-exit",
        List,
        "FROM=TO",
        "rewrite the final exit status, e.g. 143=0"
    ),
    spec!(
        "subreaper",
        Value,
        "auto|on|off",
        "become a child subreaper when not PID 1 [auto]"
    ),
    spec!(
        "pdeathsig",
        Value,
        "SIGNAL",
        "signal the shim gets (and forwards) when its parent dies"
    ),
    spec!(
        "termination-log",
        Value,
        "PATH",
        "where to write why the app ended [/dev/termination-log if present]"
    ),
    spec!("log-level", Value, "LEVEL", "error, warn, info, debug or trace [warn]"),
    spec!(
        "log-format",
        Value,
        "text|json",
        "format of the shim's log lines on stderr [text]"
    ),
    spec!(
        "hold-on-failure",
        Value,
        "DURATION",
        "keep PID 1 and diagnostics up this long after the app fails [0]"
    ),
    // Confinement of the child.
    spec!(
        "user",
        Value,
        "USER[:GROUP]",
        "run the app as this user (names from /etc/passwd, or numbers)"
    ),
    spec!("groups", List, "G,...", "supplementary groups [from /etc/group]"),
    spec!(
        "cap-keep",
        List,
        "CAP,...",
        "capabilities the app keeps (all others are dropped); all keeps the runtime's set"
    ),
    spec!("no-new-privs", Flag, "", "set no_new_privs for the app [on]"),
    spec!(
        "allow-new-privs",
        Flag,
        "",
        "do not set no_new_privs (only without seccomp and Landlock)"
    ),
    spec!("rlimit", List, "NAME=SOFT[:HARD]", "set a resource limit for the app"),
    spec!("umask", Value, "MODE", "file mode creation mask for the app"),
    spec!("fs-ro", List, "PATH", "Landlock: read-only access beneath PATH"),
    spec!("fs-rx", List, "PATH", "Landlock: read and execute access beneath PATH"),
    spec!("fs-rw", List, "PATH", "Landlock: read-write access beneath PATH"),
    spec!("tcp-bind", List, "PORT", "Landlock: allow binding this TCP port"),
    spec!(
        "tcp-connect",
        List,
        "PORT",
        "Landlock: allow connecting to this TCP port"
    ),
    spec!(
        "landlock-scope",
        List,
        "SCOPE,...",
        "abstract-unix, signal or none [both, when Landlock is on]"
    ),
    spec!("landlock", Value, "MODE", "best-effort, enforce or off [best-effort]"),
    spec!(
        "seccomp",
        Value,
        "default|off|PATH",
        "seccomp filter for the app [default]"
    ),
    spec!(
        "seccomp-action",
        Value,
        "errno|kill|log",
        "what a denied system call gets [errno]"
    ),
    // Diagnostics.
    spec!(
        "diag-socket",
        Value,
        "PATH|@NAME|off",
        "diagnostics socket [/dev/shm/husk.sock]"
    ),
    spec!("diag-allow-uid", List, "UID", "also serve peers with this uid"),
    spec!(
        "diag-allow-app",
        Flag,
        "",
        "also serve peers from the app's own process tree"
    ),
    spec!(
        "diag-env-allow",
        List,
        "NAME",
        "show this environment variable's value in env output"
    ),
    spec!("health-tcp", List, "NAME=HOST:PORT", "a named TCP-connect health check"),
    spec!("health-http", List, "NAME=URL", "a named HTTP GET health check"),
];

pub fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// The value one source gave an option.
#[derive(Clone, Debug, PartialEq)]
pub enum Setting {
    Value(String),
    Flag(bool),
    List(Vec<String>),
}

/// A health check as written in the config file's `"health"` array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEntry {
    pub name: String,
    pub tcp: Option<String>,
    pub http: Option<String>,
    pub expect: Option<u16>,
    pub timeout: Option<String>,
}

/// What one source (or all of them merged) set. Options absent from the map take defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    pub options: BTreeMap<&'static str, Setting>,
    /// The command, when this source gave one.
    pub command: Option<Vec<OsString>>,
    /// `"health"` entries from the file.
    pub health: Vec<HealthEntry>,
    /// `--help` / `--version` were asked for (command line only).
    pub help: bool,
    pub version: bool,
}

/// A problem in one source, named by where it was found.
#[derive(Debug, PartialEq, Eq)]
pub struct SourceError {
    pub source: String,
    pub message: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

impl std::error::Error for SourceError {}

fn err(source: &str, message: impl Into<String>) -> SourceError {
    SourceError {
        source: source.to_string(),
        message: message.into(),
    }
}

impl Settings {
    /// Layers `higher` over `self`: every option `higher` sets replaces this one's (lists too,
    /// so a command-line list is not appended to the file's).
    pub fn overlay(mut self, higher: Settings) -> Settings {
        self.options.extend(higher.options);
        if higher.command.is_some() {
            self.command = higher.command;
        }
        if !higher.health.is_empty() {
            self.health = higher.health;
        }
        self.help |= higher.help;
        self.version |= higher.version;
        self
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        match self.options.get(name) {
            Some(Setting::Value(v)) => Some(v),
            _ => None,
        }
    }

    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.options.get(name) {
            Some(Setting::Flag(on)) => Some(*on),
            _ => None,
        }
    }

    pub fn list(&self, name: &str) -> &[String] {
        match self.options.get(name) {
            Some(Setting::List(items)) => items,
            _ => &[],
        }
    }

    fn push_list(&mut self, name: &'static str, raw: &str) {
        let items = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from);
        match self.options.entry(name).or_insert_with(|| Setting::List(Vec::new())) {
            Setting::List(list) => list.extend(items),
            other => *other = Setting::List(items.collect()),
        }
    }
}

/// Parses the command line (without argv[0]). Parsing stops at `--` or at the first argument
/// that is not an option; everything after it is the command.
pub fn from_args(args: &[OsString]) -> Result<Settings, SourceError> {
    let mut settings = Settings::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            break;
        }
        match bytes {
            b"-h" | b"--help" => {
                settings.help = true;
                continue;
            }
            b"-V" | b"--version" => {
                settings.version = true;
                continue;
            }
            _ => {}
        }
        if !bytes.starts_with(b"-") || bytes == b"-" {
            settings.command = Some(std::iter::once(arg).chain(rest).cloned().collect());
            return Ok(settings);
        }
        let text = arg
            .to_str()
            .ok_or_else(|| err("command line", format!("option {arg:?} is not valid UTF-8")))?;
        let Some(body) = text.strip_prefix("--") else {
            return Err(err("command line", format!("unknown option {text:?} (see --help)")));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        let spec =
            spec(name).ok_or_else(|| err("command line", format!("unknown option \"--{name}\" (see --help)")))?;
        match spec.kind {
            Kind::Flag => {
                let on = match inline {
                    None => true,
                    Some(v) => parse_bool(v)
                        .ok_or_else(|| err("command line", format!("--{name}: expected true or false, got {v:?}")))?,
                };
                settings.options.insert(spec.name, Setting::Flag(on));
            }
            Kind::Value | Kind::List => {
                let value = match inline {
                    Some(v) => v.to_string(),
                    None => {
                        let next = rest
                            .next()
                            .ok_or_else(|| err("command line", format!("--{name} needs a value ({})", spec.metavar)))?;
                        next.to_str()
                            .ok_or_else(|| err("command line", format!("--{name}: value {next:?} is not valid UTF-8")))?
                            .to_string()
                    }
                };
                if spec.kind == Kind::List {
                    settings.push_list(spec.name, &value);
                } else {
                    settings.options.insert(spec.name, Setting::Value(value));
                }
            }
        }
    }
    let command: Vec<OsString> = rest.cloned().collect();
    if !command.is_empty() {
        settings.command = Some(command);
    }
    Ok(settings)
}

/// The environment variable that sets an option: `SHIM_` + upper case, `-` → `_`.
pub fn env_name(option: &str) -> String {
    format!("SHIM_{}", option.to_ascii_uppercase().replace('-', "_"))
}

/// Reads `SHIM_*` variables. Lists are comma-separated; flags take 1/0, true/false, on/off,
/// yes/no. A `SHIM_*` variable that names no option is an error, so a typo cannot silently
/// leave a policy unapplied.
pub fn from_env<'a>(vars: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>) -> Result<Settings, SourceError> {
    let mut settings = Settings::default();
    for (key, value) in vars {
        let Some(key) = key.to_str() else { continue };
        if !key.starts_with("SHIM_") || is_kubernetes_service_link(key) {
            continue;
        }
        let spec = SPECS
            .iter()
            .find(|s| env_name(s.name) == key)
            .ok_or_else(|| err("environment", format!("{key} is not a shim option (see --help)")))?;
        let value = value
            .to_str()
            .ok_or_else(|| err("environment", format!("{key}: value is not valid UTF-8")))?;
        match spec.kind {
            Kind::Flag => {
                let on = parse_bool(value).ok_or_else(|| {
                    err(
                        "environment",
                        format!("{key}: expected 1/0, true/false, on/off, got {value:?}"),
                    )
                })?;
                settings.options.insert(spec.name, Setting::Flag(on));
            }
            Kind::Value => {
                settings.options.insert(spec.name, Setting::Value(value.to_string()));
            }
            Kind::List => settings.push_list(spec.name, value),
        }
    }
    Ok(settings)
}

/// Kubernetes injects `<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT...` for every service in the
/// namespace; a service named `shim` must not stop every pod beside it from starting.
fn is_kubernetes_service_link(key: &str) -> bool {
    key.starts_with("SHIM_SERVICE_HOST")
        || key.starts_with("SHIM_SERVICE_PORT")
        || key == "SHIM_PORT"
        || key.starts_with("SHIM_PORT_")
}

/// The largest config file the shim reads; anything bigger is a mistake, not a config.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Parses the JSON config file's text. `source` names the file in errors.
pub fn from_json(source: &str, text: &str) -> Result<Settings, SourceError> {
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| err(source, format!("invalid JSON: {e}")))?;
    let serde_json::Value::Object(map) = doc else {
        return Err(err(source, "expected a JSON object at the top level"));
    };
    let mut settings = Settings::default();
    for (key, value) in map {
        if key == "command" {
            settings.command = Some(
                json_strings(source, &key, &value)?
                    .into_iter()
                    .map(OsString::from)
                    .collect(),
            );
            continue;
        }
        if key == "health" {
            settings.health = json_health(source, &value)?;
            continue;
        }
        let spec = spec(&key).ok_or_else(|| err(source, format!("unknown key {key:?}")))?;
        if spec.name == "config" {
            return Err(err(source, "\"config\" cannot be set from a config file"));
        }
        let setting = match spec.kind {
            Kind::Flag => match value {
                serde_json::Value::Bool(on) => Setting::Flag(on),
                other => return Err(err(source, format!("{key:?}: expected true or false, got {other}"))),
            },
            Kind::Value => match value {
                serde_json::Value::String(s) => Setting::Value(s),
                serde_json::Value::Number(n) => Setting::Value(n.to_string()),
                other => return Err(err(source, format!("{key:?}: expected a string, got {other}"))),
            },
            Kind::List => match &value {
                serde_json::Value::String(s) => Setting::List(
                    s.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                ),
                _ => Setting::List(json_strings(source, &key, &value)?),
            },
        };
        settings.options.insert(spec.name, setting);
    }
    Ok(settings)
}

fn json_strings(source: &str, key: &str, value: &serde_json::Value) -> Result<Vec<String>, SourceError> {
    let serde_json::Value::Array(items) = value else {
        return Err(err(
            source,
            format!("{key:?}: expected an array of strings, got {value}"),
        ));
    };
    items
        .iter()
        .map(|item| match item {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            other => Err(err(
                source,
                format!("{key:?}: expected strings in the array, got {other}"),
            )),
        })
        .collect()
}

fn json_health(source: &str, value: &serde_json::Value) -> Result<Vec<HealthEntry>, SourceError> {
    let serde_json::Value::Array(items) = value else {
        return Err(err(source, "\"health\": expected an array of checks"));
    };
    let mut checks = Vec::new();
    for item in items {
        let serde_json::Value::Object(fields) = item else {
            return Err(err(source, format!("\"health\": expected an object, got {item}")));
        };
        let mut entry = HealthEntry {
            name: String::new(),
            tcp: None,
            http: None,
            expect: None,
            timeout: None,
        };
        for (key, v) in fields {
            let text = || match v {
                serde_json::Value::String(s) => Ok(s.clone()),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                other => Err(err(source, format!("\"health\".{key}: expected a string, got {other}"))),
            };
            match key.as_str() {
                "name" => entry.name = text()?,
                "tcp" => entry.tcp = Some(text()?),
                "http" => entry.http = Some(text()?),
                "timeout" => entry.timeout = Some(text()?),
                "expect" => {
                    entry.expect = Some(
                        v.as_u64()
                            .and_then(|n| u16::try_from(n).ok())
                            .filter(|n| (100..=599).contains(n))
                            .ok_or_else(|| {
                                err(source, format!("\"health\".expect: expected an HTTP status, got {v}"))
                            })?,
                    )
                }
                other => return Err(err(source, format!("\"health\": unknown key {other:?}"))),
            }
        }
        if entry.name.is_empty() {
            return Err(err(source, "\"health\": every check needs a \"name\""));
        }
        if entry.tcp.is_some() == entry.http.is_some() {
            return Err(err(
                source,
                format!("\"health\" {:?}: give exactly one of \"tcp\" or \"http\"", entry.name),
            ));
        }
        checks.push(entry);
    }
    Ok(checks)
}

pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// The `--help` text.
pub fn help_text() -> String {
    let mut out = String::from(
        "shim: a small PID 1 for distroless images\n\n\
         usage: shim [OPTIONS] [--] COMMAND [ARG...]\n\n\
         Option parsing stops at `--` or at the first argument that is not an option.\n\
         Every option can also be set as SHIM_<NAME> in the environment or as a key in the\n\
         --config file; precedence: command line > environment > file > defaults.\n\n\
         options:\n",
    );
    for spec in SPECS {
        let left = match spec.kind {
            Kind::Flag => format!("--{}", spec.name),
            _ => format!("--{} {}", spec.name, spec.metavar),
        };
        out.push_str(&format!("  {left:<36} {}\n", spec.help));
    }
    out.push_str(&format!(
        "  {:<36} {}\n  {:<36} {}\n",
        "-h, --help", "print this help", "-V, --version", "print the version"
    ));
    out.push_str(
        "\nexit status: the app's own; 128+N when it was killed by signal N; 127 command not found;\n\
         126 command not executable; 125 the shim failed before the app ran.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn parsing_stops_at_first_non_option() {
        let s = from_args(&args(&["--grace", "1s", "ls", "-l", "--grace"])).unwrap();
        assert_eq!(s.value("grace"), Some("1s"));
        assert_eq!(s.command, Some(args(&["ls", "-l", "--grace"])));
    }

    #[test]
    fn parsing_stops_at_double_dash() {
        let s = from_args(&args(&["--check", "--", "--grace"])).unwrap();
        assert_eq!(s.flag("check"), Some(true));
        assert_eq!(s.command, Some(args(&["--grace"])));
    }

    #[test]
    fn lists_repeat_and_split_on_commas() {
        let s = from_args(&args(&["--map-signal=TERM=QUIT", "--map-signal", "INT=0,HUP=USR1"])).unwrap();
        assert_eq!(s.list("map-signal"), ["TERM=QUIT", "INT=0", "HUP=USR1"]);
    }

    #[test]
    fn unknown_and_incomplete_options_are_errors() {
        assert!(from_args(&args(&["--nope"])).unwrap_err().message.contains("--nope"));
        assert!(from_args(&args(&["--grace"]))
            .unwrap_err()
            .message
            .contains("needs a value"));
        assert!(from_args(&args(&["-x"])).is_err());
    }

    #[test]
    fn environment_is_parsed_by_value() {
        let vars = [
            (OsStr::new("SHIM_DIAG_ALLOW_APP"), OsStr::new("0")),
            (OsStr::new("SHIM_SUBREAPER"), OsStr::new("off")),
            (OsStr::new("PATH"), OsStr::new("/bin")),
        ];
        let s = from_env(vars).unwrap();
        assert_eq!(s.flag("diag-allow-app"), Some(false));
        assert_eq!(s.value("subreaper"), Some("off"));
        let typo = [(OsStr::new("SHIM_GRACEE"), OsStr::new("1s"))];
        assert!(from_env(typo).is_err());
        let service_links = [
            (OsStr::new("SHIM_SERVICE_HOST"), OsStr::new("10.0.0.1")),
            (OsStr::new("SHIM_PORT"), OsStr::new("tcp://10.0.0.1:80")),
            (OsStr::new("SHIM_PORT_80_TCP_ADDR"), OsStr::new("10.0.0.1")),
        ];
        assert_eq!(from_env(service_links).unwrap(), Settings::default());
    }

    #[test]
    fn file_rejects_unknown_keys_and_wrong_types() {
        assert!(from_json("f", r#"{"gracee": "1s"}"#)
            .unwrap_err()
            .message
            .contains("unknown key"));
        assert!(from_json("f", r#"{"check": "yes"}"#).is_err());
        assert!(from_json("f", r#"[1]"#).is_err());
        let s = from_json(
            "f",
            r#"{"grace": 2, "cap-keep": ["NET_BIND_SERVICE"], "command": ["app", "-x"]}"#,
        )
        .unwrap();
        assert_eq!(s.value("grace"), Some("2"));
        assert_eq!(s.list("cap-keep"), ["NET_BIND_SERVICE"]);
        assert_eq!(s.command, Some(args(&["app", "-x"])));
    }

    #[test]
    fn file_health_checks() {
        let s = from_json(
            "f",
            r#"{"health": [{"name": "web", "http": "http://127.0.0.1:8080/healthz", "expect": 200, "timeout": "1s"},
                           {"name": "db", "tcp": "db:5432", "timeout": "2s"}]}"#,
        )
        .unwrap();
        assert_eq!(s.health.len(), 2);
        assert_eq!(s.health[0].expect, Some(200));
        assert!(from_json("f", r#"{"health": [{"name": "x"}]}"#).is_err());
        assert!(from_json("f", r#"{"health": [{"name": "x", "tcp": "a:1", "bogus": 1}]}"#).is_err());
    }

    #[test]
    fn precedence_is_cli_over_env_over_file() {
        let file = from_json("f", r#"{"grace": "9s", "log-level": "info", "command": ["a"]}"#).unwrap();
        let env = from_env([(OsStr::new("SHIM_GRACE"), OsStr::new("5s"))]).unwrap();
        let cli = from_args(&args(&["--log-level", "debug"])).unwrap();
        let merged = file.overlay(env).overlay(cli);
        assert_eq!(merged.value("grace"), Some("5s"));
        assert_eq!(merged.value("log-level"), Some("debug"));
        assert_eq!(merged.command, Some(args(&["a"])));
    }
}
