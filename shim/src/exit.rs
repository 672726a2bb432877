//! How the app ended, the one place that turns it into an exit status, and the termination log.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::signals::Sig;

/// How the main child ended (or never started).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppExit {
    Exited(u8),
    Signaled {
        signal: Sig,
        core_dumped: bool,
    },
    /// The command was not found (127) or could not be executed (126).
    ExecFailed {
        status: u8,
        reason: String,
    },
    /// The shim failed before the app ran: a policy step in the child, say (125).
    NotStarted {
        reason: String,
    },
}

/// Exit status when the shim itself fails before the app runs.
pub const SHIM_FAILED: u8 = 125;
pub const NOT_EXECUTABLE: u8 = 126;
pub const NOT_FOUND: u8 = 127;

impl AppExit {
    /// The shell's convention: the code, 128+N for signal N, 126/127 for exec failures.
    pub fn status(&self) -> u8 {
        match self {
            AppExit::Exited(code) => *code,
            AppExit::Signaled { signal, .. } => (128 + signal.number()).clamp(0, 255) as u8,
            AppExit::ExecFailed { status, .. } => *status,
            AppExit::NotStarted { .. } => SHIM_FAILED,
        }
    }

    /// Whether `--hold-on-failure` applies.
    pub fn is_failure(&self) -> bool {
        !matches!(self, AppExit::Exited(0))
    }

    /// One plain line for people and for Kubernetes' termination message.
    pub fn describe(&self) -> String {
        match self {
            AppExit::Exited(code) => format!("exited with code {code}"),
            AppExit::Signaled { signal, core_dumped } => {
                format!(
                    "killed by signal {signal}{} (exit status {})",
                    if *core_dumped { " (core dumped)" } else { "" },
                    self.status()
                )
            }
            AppExit::ExecFailed { status, reason } => {
                format!("exec failed: {reason} (exit status {status})")
            }
            AppExit::NotStarted { reason } => {
                format!("not started: {reason} (exit status {SHIM_FAILED})")
            }
        }
    }

    pub fn from_wait(status: nix::sys::wait::WaitStatus) -> Option<AppExit> {
        use nix::sys::wait::WaitStatus;
        match status {
            WaitStatus::Exited(_, code) => Some(AppExit::Exited(code as u8)),
            WaitStatus::Signaled(_, signal, core_dumped) => {
                Sig::new(signal as i32).map(|signal| AppExit::Signaled { signal, core_dumped })
            }
            _ => None,
        }
    }
}

/// Kubernetes reads at most 4 KiB of the termination message.
const TERMINATION_LOG_LIMIT: usize = 4096;
const KUBERNETES_TERMINATION_LOG: &str = "/dev/termination-log";

/// The termination log. Opened ahead, before the shim confines itself (after which it may open
/// files for reading only), and written once the app's end is known.
pub struct TerminationLog {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl TerminationLog {
    /// The file to write, if any: the one asked for, else Kubernetes' default when it exists.
    pub fn find(explicit: Option<&Path>) -> Option<TerminationLog> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => Path::new(KUBERNETES_TERMINATION_LOG)
                .exists()
                .then(|| PathBuf::from(KUBERNETES_TERMINATION_LOG))?,
        };
        Some(TerminationLog { path, file: None })
    }

    /// Opens (creates) the file now, leaving what it holds until [`Self::write`]. Failure is a
    /// warning; `write` then tries once more by path.
    pub fn open_ahead(&mut self) {
        match std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
        {
            Ok(file) => self.file = Some(file),
            Err(e) => tracing::warn!("termination log: cannot open {}: {e}", self.path.display()),
        }
    }

    /// Writes one line saying how the app ended. Failure is logged, never fatal: PID 1 carries
    /// on.
    pub fn write(&mut self, exit: &AppExit) {
        use std::os::unix::fs::FileExt;
        let mut line = exit.describe();
        line.truncate(TERMINATION_LOG_LIMIT - 1);
        line.push('\n');
        let result = match &self.file {
            Some(file) => file.set_len(0).and_then(|()| file.write_all_at(line.as_bytes(), 0)),
            None => std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&self.path)
                .and_then(|mut f| f.write_all(line.as_bytes())),
        };
        if let Err(e) = result {
            tracing::warn!("termination log: cannot write {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_shell() {
        assert_eq!(AppExit::Exited(3).status(), 3);
        assert_eq!(
            AppExit::Signaled {
                signal: Sig::TERM,
                core_dumped: false
            }
            .status(),
            143
        );
        assert_eq!(
            AppExit::Signaled {
                signal: Sig::KILL,
                core_dumped: false
            }
            .status(),
            137
        );
        assert_eq!(
            AppExit::ExecFailed {
                status: NOT_FOUND,
                reason: String::new()
            }
            .status(),
            127
        );
        assert_eq!(AppExit::NotStarted { reason: String::new() }.status(), 125);
    }

    #[test]
    fn descriptions() {
        let segv = AppExit::Signaled {
            signal: Sig::parse("SEGV").unwrap(),
            core_dumped: true,
        };
        assert_eq!(
            segv.describe(),
            "killed by signal SIGSEGV (core dumped) (exit status 139)"
        );
        assert_eq!(AppExit::Exited(0).describe(), "exited with code 0");
        assert!(!AppExit::Exited(0).is_failure());
        assert!(segv.is_failure());
    }
}
