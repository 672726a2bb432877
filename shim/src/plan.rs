//! The plan: everything the child needs, prepared in the parent before fork. Between fork and
//! exec the child may only make system calls (no allocation, no file reading, no locks), so the
//! command is resolved, argv and envp are built, and the confinement policy is compiled here.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::exit::{self, AppExit};
use crate::policy::{self, Policy};

/// Used when the environment has no PATH, as a shell would.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why the plan could not be made.
#[derive(Debug)]
pub enum PlanError {
    /// The command could not be resolved: 127 or 126, as a shell would say.
    Command(AppExit),
    /// Anything else: the shim exits 125.
    Invalid(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Command(AppExit::ExecFailed { reason, .. }) => write!(f, "exec: {reason}"),
            PlanError::Command(other) => write!(f, "exec: {}", other.describe()),
            PlanError::Invalid(message) => f.write_str(message),
        }
    }
}

impl From<policy::PolicyError> for PlanError {
    fn from(e: policy::PolicyError) -> Self {
        PlanError::Invalid(e.to_string())
    }
}

/// argv and envp as the C arrays execve takes, built before fork.
pub struct Exec {
    pub path: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// `LISTEN_PID=` followed by room for the digits, when the shim's own pid was in
    /// `LISTEN_PID` (socket activation): the child writes its pid here before exec.
    listen_pid: Option<Box<[u8; LISTEN_PID_BYTES]>>,
}

const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";
const LISTEN_PID_BYTES: usize = 32;

impl Exec {
    fn new(path: &Path, argv: &[OsString], env: Vec<(OsString, OsString)>, own_pid: u32) -> Result<Exec, PlanError> {
        let cstring = |bytes: Vec<u8>, what: &str| {
            CString::new(bytes).map_err(|_| PlanError::Invalid(format!("exec: {what} contains a NUL byte")))
        };
        let path = cstring(path.as_os_str().as_bytes().to_vec(), "the command path")?;
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| cstring(a.as_bytes().to_vec(), "an argument"))
            .collect::<Result<_, _>>()?;
        let mut listen_pid = None;
        let mut envp = Vec::new();
        for (key, value) in env {
            if key == "LISTEN_PID" && value.as_bytes() == own_pid.to_string().as_bytes() {
                let mut slot = Box::new([0u8; LISTEN_PID_BYTES]);
                slot[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
                listen_pid = Some(slot);
                continue;
            }
            let mut entry = key.into_vec();
            entry.push(b'=');
            entry.extend(value.into_vec());
            envp.push(cstring(entry, "an environment variable")?);
        }
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<_> = envp.iter().map(|e| e.as_ptr()).collect();
        if let Some(slot) = &listen_pid {
            envp_ptrs.push(slot.as_ptr().cast());
        }
        envp_ptrs.push(std::ptr::null());
        Ok(Exec {
            path,
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
            listen_pid,
        })
    }

    pub fn argv(&self) -> *const *const libc::c_char {
        self.argv_ptrs.as_ptr()
    }

    pub fn envp(&self) -> *const *const libc::c_char {
        self.envp_ptrs.as_ptr()
    }

    /// Writes the child's pid into the reserved `LISTEN_PID=` entry. No allocation: safe to
    /// call between fork and exec.
    pub fn fill_listen_pid(&mut self, pid: i32) {
        let Some(slot) = self.listen_pid.as_mut() else {
            return;
        };
        let mut digits = [0u8; 12];
        let mut n = pid.unsigned_abs();
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let start = LISTEN_PID_PREFIX.len();
        for i in 0..len {
            slot[start + i] = digits[len - 1 - i];
        }
        slot[start + len] = 0;
    }
}

pub struct Plan {
    pub config: Config,
    pub exec: Exec,
    pub policy: Policy,
    /// The signal mask the shim was started with; the child gets it back before exec.
    pub original_mask: libc::sigset_t,
    /// stdin is the shim's controlling terminal: the child's group becomes its foreground group.
    pub foreground_tty: bool,
}

impl Plan {
    pub fn prepare(config: Config, original_mask: libc::sigset_t) -> Result<Plan, PlanError> {
        let Some(program) = config.command.first() else {
            return Err(PlanError::Invalid(
                "no command given (usage: shim [OPTIONS] [--] COMMAND [ARG...])".into(),
            ));
        };
        let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let search_path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
        let path = resolve_command(program, search_path.as_deref()).map_err(PlanError::Command)?;
        let policy = policy::prepare(&config, &path)?;
        let exec = Exec::new(&path, &config.command, env, std::process::id())?;
        Ok(Plan {
            config,
            exec,
            policy,
            original_mask,
            foreground_tty: stdin_is_controlling_tty(),
        })
    }

    /// The effective plan as one JSON object with the config file's keys, for `--check`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = self.config.init_json();
        self.policy.describe(&mut map);
        // Options no layer has resolved yet appear as given, so every config key is present.
        for spec in crate::options::SPECS {
            if spec.name == "config" || spec.name == "check" || map.contains_key(spec.name) {
                continue;
            }
            let value = match self.config.settings.options.get(spec.name) {
                Some(crate::options::Setting::Value(v)) => serde_json::Value::from(v.clone()),
                Some(crate::options::Setting::Flag(on)) => serde_json::Value::from(*on),
                Some(crate::options::Setting::List(items)) => serde_json::Value::from(items.clone()),
                None => serde_json::Value::Null,
            };
            map.insert(spec.name.into(), value);
        }
        map.insert(
            "command".into(),
            self.config
                .command
                .iter()
                .map(|a| serde_json::Value::from(a.to_string_lossy().into_owned()))
                .collect(),
        );
        map.insert(
            "executable".into(),
            serde_json::Value::from(self.exec.path.to_string_lossy().into_owned()),
        );
        serde_json::Value::Object(map)
    }
}

fn stdin_is_controlling_tty() -> bool {
    use nix::sys::termios::tcgetsid;
    use nix::unistd::{getsid, isatty};
    use std::os::fd::BorrowedFd;
    // SAFETY: fd 0 is only borrowed for these two calls; if it is closed they fail with EBADF.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    isatty(stdin).unwrap_or(false) && matches!((tcgetsid(stdin), getsid(None)), (Ok(a), Ok(b)) if a == b)
}

/// Finds the program as execvp would: a name with a slash is used as is, otherwise each PATH
/// entry is tried. Not found is 127; found but not executable (a directory, no x bit) is 126.
pub fn resolve_command(program: &OsStr, search_path: Option<&OsStr>) -> Result<PathBuf, AppExit> {
    let not_found = |what: String| AppExit::ExecFailed {
        status: exit::NOT_FOUND,
        reason: what,
    };
    let not_executable = |what: String| AppExit::ExecFailed {
        status: exit::NOT_EXECUTABLE,
        reason: what,
    };
    if program.is_empty() {
        return Err(not_found("empty command name".into()));
    }
    let check = |candidate: &Path| -> Result<(), AppExit> {
        let meta = std::fs::metadata(candidate)
            .map_err(|e| not_found(format!("{}: {}", candidate.display(), crate::describe_io(&e))))?;
        if meta.is_dir() {
            return Err(not_executable(format!("{}: is a directory", candidate.display())));
        }
        if meta.permissions().mode() & 0o111 == 0
            || nix::unistd::access(candidate, nix::unistd::AccessFlags::X_OK).is_err()
        {
            return Err(not_executable(format!(
                "{}: permission denied (not executable)",
                candidate.display()
            )));
        }
        Ok(())
    };
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return check(&path).map(|()| path);
    }
    let search_path = search_path.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut first_refusal = None;
    for dir in search_path.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(program);
        match check(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(
                refusal @ AppExit::ExecFailed {
                    status: exit::NOT_EXECUTABLE,
                    ..
                },
            ) => {
                first_refusal.get_or_insert(refusal);
            }
            Err(_) => {}
        }
    }
    Err(first_refusal.unwrap_or_else(|| not_found(format!("{}: command not found in PATH", program.to_string_lossy()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_execvp() {
        let found = resolve_command(OsStr::new("sh"), Some(OsStr::new("/nonexistent:/bin"))).unwrap();
        assert_eq!(found, PathBuf::from("/bin/sh"));
        let missing = resolve_command(OsStr::new("no-such-program-husk"), Some(OsStr::new("/bin"))).unwrap_err();
        assert_eq!(missing.status(), exit::NOT_FOUND);
        let dir = resolve_command(OsStr::new("/tmp"), None).unwrap_err();
        assert_eq!(dir.status(), exit::NOT_EXECUTABLE);
        let absent = resolve_command(OsStr::new("/no/such/file"), None).unwrap_err();
        assert_eq!(absent.status(), exit::NOT_FOUND);
    }

    #[test]
    fn listen_pid_is_rewritten_in_place() {
        let env = vec![
            (OsString::from("LISTEN_PID"), OsString::from("77")),
            (OsString::from("A"), OsString::from("b")),
        ];
        let mut exec = Exec::new(Path::new("/bin/true"), &[OsString::from("true")], env, 77).unwrap();
        exec.fill_listen_pid(12345);
        let slot = exec.listen_pid.as_ref().unwrap();
        let text = std::ffi::CStr::from_bytes_until_nul(&slot[..]).unwrap();
        assert_eq!(text.to_str().unwrap(), "LISTEN_PID=12345");
        assert_eq!(exec.envp_ptrs.len(), 3);
    }
}
