//! The effective configuration: the three sources merged in precedence order and every init
//! value parsed into its type. Nothing here touches the system beyond reading the config file.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::options::{self, Settings};
use crate::signals::Sig;

/// Where forwarded signals go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalTarget {
    Child,
    Group,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subreaper {
    Auto,
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How the shim behaves as PID 1 (SPEC.md, "Init behaviour").
#[derive(Clone, Debug, PartialEq)]
pub struct Init {
    pub signal_target: SignalTarget,
    /// `FROM → Some(TO)` rewrites, `FROM → None` drops.
    pub map_signal: Vec<(Sig, Option<Sig>)>,
    pub grace: Duration,
    pub remap_exit: Vec<(u8, u8)>,
    pub subreaper: Subreaper,
    pub pdeathsig: Option<Sig>,
    /// Given explicitly; otherwise `/dev/termination-log` is used when it exists.
    pub termination_log: Option<PathBuf>,
    pub hold_on_failure: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Log {
    pub level: tracing::Level,
    pub format: LogFormat,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub command: Vec<OsString>,
    pub check: bool,
    pub init: Init,
    pub log: Log,
    /// Everything the sources set, for the policy and diagnostics layers to read their keys.
    pub settings: Settings,
}

/// What the command line asked for.
pub enum Request {
    Run(Box<Config>),
    Help,
    Version,
}

/// A configuration error: which option (or source) and why.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl From<options::SourceError> for ConfigError {
    fn from(e: options::SourceError) -> Self {
        ConfigError(e.to_string())
    }
}

fn option_error(name: &str, message: impl fmt::Display) -> ConfigError {
    ConfigError(format!("--{name}: {message}"))
}

/// Reads all three sources and resolves them.
pub fn load(args: &[OsString], env: &[(OsString, OsString)]) -> Result<Request, ConfigError> {
    let cli = options::from_args(args)?;
    if cli.help {
        return Ok(Request::Help);
    }
    if cli.version {
        return Ok(Request::Version);
    }
    let environment = options::from_env(env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())))?;
    let file = match cli.value("config").or(environment.value("config")) {
        Some(path) => read_file(path)?,
        None => Settings::default(),
    };
    let merged = file.overlay(environment).overlay(cli);
    resolve(merged).map(|c| Request::Run(Box::new(c)))
}

fn read_file(path: &str) -> Result<Settings, ConfigError> {
    use std::io::Read;
    let source = format!("config {path:?}");
    let file = std::fs::File::open(path).map_err(|e| ConfigError(format!("{source}: cannot open: {e}")))?;
    let mut text = String::new();
    file.take(options::MAX_CONFIG_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| ConfigError(format!("{source}: cannot read: {e}")))?;
    if text.len() > options::MAX_CONFIG_BYTES {
        return Err(ConfigError(format!(
            "{source}: larger than {} bytes",
            options::MAX_CONFIG_BYTES
        )));
    }
    Ok(options::from_json(&source, &text)?)
}

/// Parses every init and logging value of the merged settings.
pub fn resolve(settings: Settings) -> Result<Config, ConfigError> {
    let choice = |name: &str, default: &str| settings.value(name).unwrap_or(default).to_ascii_lowercase();

    let signal_target = match choice("signal-target", "child").as_str() {
        "child" => SignalTarget::Child,
        "group" => SignalTarget::Group,
        other => {
            return Err(option_error(
                "signal-target",
                format!("expected child or group, got {other:?}"),
            ))
        }
    };
    let subreaper = match choice("subreaper", "auto").as_str() {
        "auto" => Subreaper::Auto,
        "on" | "true" | "1" | "yes" => Subreaper::On,
        "off" | "false" | "0" | "no" => Subreaper::Off,
        other => {
            return Err(option_error(
                "subreaper",
                format!("expected auto, on or off, got {other:?}"),
            ))
        }
    };
    let level = match choice("log-level", "warn").as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "info" => tracing::Level::INFO,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        other => {
            return Err(option_error(
                "log-level",
                format!("expected error, warn, info, debug or trace, got {other:?}"),
            ))
        }
    };
    let format = match choice("log-format", "text").as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(option_error(
                "log-format",
                format!("expected text or json, got {other:?}"),
            ))
        }
    };

    let mut map_signal = Vec::new();
    for rule in settings.list("map-signal") {
        let (from, to) = rule
            .split_once('=')
            .ok_or_else(|| option_error("map-signal", format!("expected FROM=TO, got {rule:?}")))?;
        let from = Sig::parse(from).map_err(|e| option_error("map-signal", e))?;
        if from == Sig::CHLD {
            return Err(option_error(
                "map-signal",
                "SIGCHLD is never forwarded, so it cannot be mapped",
            ));
        }
        let to = match to.trim() {
            "0" => None,
            to => Some(Sig::parse(to).map_err(|e| option_error("map-signal", e))?),
        };
        map_signal.push((from, to));
    }

    let mut remap_exit = Vec::new();
    for rule in settings.list("remap-exit") {
        let status = |text: &str| {
            text.trim()
                .parse::<u8>()
                .map_err(|_| option_error("remap-exit", format!("{text:?} is not an exit status (0-255)")))
        };
        let (from, to) = rule
            .split_once('=')
            .ok_or_else(|| option_error("remap-exit", format!("expected FROM=TO, got {rule:?}")))?;
        remap_exit.push((status(from)?, status(to)?));
    }

    let duration = |name: &str, default: Duration| match settings.value(name) {
        Some(text) => parse_duration(text).map_err(|e| option_error(name, e)),
        None => Ok(default),
    };
    let pdeathsig = match settings.value("pdeathsig") {
        Some(text) => Some(Sig::parse(text).map_err(|e| option_error("pdeathsig", e))?),
        None => None,
    };
    let termination_log = match settings.value("termination-log") {
        Some("") => return Err(option_error("termination-log", "empty path")),
        Some(path) => Some(PathBuf::from(path)),
        None => None,
    };

    let init = Init {
        signal_target,
        map_signal,
        grace: duration("grace", Duration::from_secs(3))?,
        remap_exit,
        subreaper,
        pdeathsig,
        termination_log,
        hold_on_failure: duration("hold-on-failure", Duration::ZERO)?,
    };
    Ok(Config {
        command: settings.command.clone().unwrap_or_default(),
        check: settings.flag("check").unwrap_or(false),
        init,
        log: Log { level, format },
        settings,
    })
}

/// Parses `500ms`, `3s`, `2m`, `1h`, `1.5s`, or a plain number of seconds, at most a year. The
/// arithmetic is decimal, not floating point, so that what [`format_duration`] prints reads back
/// as the same milliseconds (`28283458255ms` times 0.001 is 28283458.254999... seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_nanos: u128 = match unit.trim() {
        "ms" => 1_000_000,
        "" | "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        other => {
            return Err(format!(
                "unknown unit {other:?} in duration {text:?} (use ms, s, m or h)"
            ))
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(format!("invalid duration {text:?} (e.g. 500ms, 3s, 2m)"));
    }
    let too_long = || format!("duration {text:?} is too long");
    // Both parts are ASCII digits here: parsing fails only on overflow. The number is counted in
    // billionths of the unit; digits past the ninth are below a nanosecond of a second.
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_long())?
    };
    let places = fraction.len().min(9);
    let fraction: u128 = if places == 0 {
        0
    } else {
        fraction[..places].parse().map_err(|_| too_long())?
    };
    let billionths = whole
        .checked_mul(NANOS_PER_SEC)
        .and_then(|w| w.checked_add(fraction * 10u128.pow(9 - places as u32)))
        .ok_or_else(too_long)?;
    let nanos = billionths.checked_mul(unit_nanos).ok_or_else(too_long)? / NANOS_PER_SEC;
    if nanos > 365 * 86400 * NANOS_PER_SEC {
        return Err(too_long());
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// The inverse of [`parse_duration`], for `--check` output that can be fed back as a config.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn level_name(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warn",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    }
}

impl Config {
    /// The resolved init and logging options as config-file keys.
    pub fn init_json(&self) -> Map<String, Value> {
        let init = &self.init;
        let map_signal: Vec<String> = init
            .map_signal
            .iter()
            .map(|(from, to)| format!("{}={}", from.name(), to.map_or("0".to_string(), |s| s.name())))
            .collect();
        let remap_exit: Vec<String> = init.remap_exit.iter().map(|(f, t)| format!("{f}={t}")).collect();
        let value = json!({
            "signal-target": match init.signal_target { SignalTarget::Child => "child", SignalTarget::Group => "group" },
            "map-signal": map_signal,
            "grace": format_duration(init.grace),
            "remap-exit": remap_exit,
            "subreaper": match init.subreaper { Subreaper::Auto => "auto", Subreaper::On => "on", Subreaper::Off => "off" },
            "pdeathsig": init.pdeathsig.map(|s| s.name()),
            "termination-log": init.termination_log.as_ref().map(|p| p.display().to_string()),
            "log-level": level_name(self.log.level),
            "log-format": match self.log.format { LogFormat::Text => "text", LogFormat::Json => "json" },
            "hold-on-failure": format_duration(init.hold_on_failure),
        });
        match value {
            Value::Object(map) => map,
            _ => unreachable!("json! of an object literal is an object"),
        }
    }
}

/// The final exit status after `--remap-exit` (the first matching rule wins).
pub fn remap_exit(rules: &[(u8, u8)], status: u8) -> u8 {
    rules
        .iter()
        .find(|(from, _)| *from == status)
        .map_or(status, |(_, to)| *to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_args(list: &[&str]) -> Result<Config, ConfigError> {
        let args: Vec<OsString> = list.iter().map(OsString::from).collect();
        match load(&args, &[])? {
            Request::Run(c) => Ok(*c),
            _ => panic!("expected a run request"),
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e300").is_err());
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(3)), "3s");
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration(".25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("0.0000000019s"), Ok(Duration::from_nanos(1)));
        assert_eq!(
            parse_duration("365d").map_err(|e| e.contains("unknown unit")),
            Err(true)
        );
        for bad in [".", "1.2.3", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("8761h").is_err());
        assert!(parse_duration("99999999999999999999999999999999999999999").is_err());
    }

    /// Found by the config_json fuzz target: a duration printed in milliseconds read back one
    /// millisecond short (floating point), so `--check` output fed back as a config changed.
    #[test]
    fn printed_durations_read_back_the_same() {
        let d = parse_duration("28283458.25555555555").unwrap();
        assert_eq!(format_duration(d), "28283458255ms");
        assert_eq!(parse_duration("28283458255ms").unwrap().as_millis(), d.as_millis());
        for ms in [1u64, 999, 1001, 28_283_458_255, 31_535_999_999] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{ms} ms");
        }
    }

    #[test]
    fn defaults() {
        let c = load_args(&["true"]).unwrap();
        assert_eq!(c.init.signal_target, SignalTarget::Child);
        assert_eq!(c.init.grace, Duration::from_secs(3));
        assert_eq!(c.log.level, tracing::Level::WARN);
        assert_eq!(c.command, vec![OsString::from("true")]);
    }

    #[test]
    fn map_signal_and_remap_exit() {
        let c = load_args(&["--map-signal", "TERM=QUIT,INT=0", "--remap-exit", "143=0", "x"]).unwrap();
        assert_eq!(c.init.map_signal, vec![(Sig::TERM, Some(Sig::QUIT)), (Sig::INT, None)]);
        assert_eq!(remap_exit(&c.init.remap_exit, 143), 0);
        assert_eq!(remap_exit(&c.init.remap_exit, 1), 1);
        assert!(load_args(&["--map-signal", "TERM", "x"]).is_err());
        assert!(load_args(&["--map-signal", "CHLD=TERM", "x"]).is_err());
        assert!(load_args(&["--remap-exit", "300=0", "x"]).is_err());
    }

    #[test]
    fn bad_values_name_the_option() {
        for (args, needle) in [
            (&["--signal-target", "pgrp", "x"][..], "--signal-target"),
            (&["--grace", "soon", "x"], "--grace"),
            (&["--log-level", "loud", "x"], "--log-level"),
            (&["--pdeathsig", "NOPE", "x"], "--pdeathsig"),
            (&["--subreaper", "maybe", "x"], "--subreaper"),
        ] {
            let e = load_args(args).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
