//! Starting the main child: fork, the child's ordered steps, exec.
//!
//! The child's side runs between fork and exec and makes system calls only: everything it
//! uses was built by `Plan::prepare`. A failing step is reported to the parent through a
//! close-on-exec pipe as a (step, errno) pair; a successful exec closes the pipe, which the
//! parent sees as end-of-file. So the parent knows, before it supervises anything, whether the
//! app is running, and why not if it is not.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::unistd::{ForkResult, Pid};

use crate::exit::{self, AppExit};
use crate::plan::Plan;
use crate::sys;

/// The child's steps, in the order it takes them. A failure names its step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    ProcessGroup = 1,
    Foreground,
    SignalMask,
    Rlimits,
    Umask,
    BoundingSet,
    KeepCaps,
    Groups,
    SetGid,
    SetUid,
    Capabilities,
    Ambient,
    NoNewPrivs,
    Landlock,
    Seccomp,
    Exec,
}

impl Step {
    const ALL: [Step; 16] = [
        Step::ProcessGroup,
        Step::Foreground,
        Step::SignalMask,
        Step::Rlimits,
        Step::Umask,
        Step::BoundingSet,
        Step::KeepCaps,
        Step::Groups,
        Step::SetGid,
        Step::SetUid,
        Step::Capabilities,
        Step::Ambient,
        Step::NoNewPrivs,
        Step::Landlock,
        Step::Seccomp,
        Step::Exec,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::ProcessGroup => "setpgid",
            Step::Foreground => "tcsetpgrp",
            Step::Rlimits => "rlimit",
            Step::Umask => "umask",
            Step::BoundingSet => "capabilities: bounding set",
            Step::KeepCaps => "capabilities: keep-caps",
            Step::Groups => "user: setgroups",
            Step::SetGid => "user: setresgid",
            Step::SetUid => "user: setresuid",
            Step::Capabilities => "capabilities: capset",
            Step::Ambient => "capabilities: ambient",
            Step::NoNewPrivs => "no_new_privs",
            Step::Landlock => "landlock: restrict_self",
            Step::Seccomp => "seccomp: install filter",
            Step::SignalMask => "signal mask",
            Step::Exec => "exec",
        }
    }

    fn from_code(code: u32) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as u32 == code)
    }
}

/// A failed step of the child's path and the errno it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildFailure {
    pub step: Step,
    pub errno: i32,
}

impl ChildFailure {
    pub fn new(step: Step, errno: i32) -> Self {
        ChildFailure { step, errno }
    }

    fn encode(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&(self.step as u32).to_ne_bytes());
        out[4..].copy_from_slice(&self.errno.to_ne_bytes());
        out
    }

    fn decode(bytes: [u8; 8]) -> Option<Self> {
        let step = Step::from_code(u32::from_ne_bytes(bytes[..4].try_into().ok()?))?;
        Some(ChildFailure {
            step,
            errno: i32::from_ne_bytes(bytes[4..].try_into().ok()?),
        })
    }

    /// The status the child exits with: a shell's 127/126 for exec, 125 for the shim's own steps.
    fn status(self) -> u8 {
        match (self.step, self.errno) {
            (Step::Exec, libc::ENOENT) => exit::NOT_FOUND,
            (Step::Exec, _) => exit::NOT_EXECUTABLE,
            _ => exit::SHIM_FAILED,
        }
    }
}

/// The fork or the status pipe failed: nothing was started.
#[derive(Debug)]
pub struct SpawnError(String);

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub enum Spawned {
    Running(Pid),
    /// The child could not become the app; it has already been reaped.
    Failed(AppExit),
}

pub fn spawn(plan: &mut Plan) -> Result<Spawned, SpawnError> {
    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SpawnError(format!("spawn: cannot create the status pipe: {}", e.desc())))?;
    // SAFETY: the shim is single-threaded here (no thread has been started), so the child
    // inherits a consistent address space; its side (`child_path`) only makes system calls.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(SpawnError(format!("spawn: fork: {}", e.desc()))),
        Ok(ForkResult::Child) => {
            drop(report_read);
            let failure = child_path(plan);
            let bytes = failure.encode();
            // SAFETY: writes 8 bytes from a live stack array to the pipe; the result does not
            // matter because the child exits next either way.
            unsafe { libc::write(report_write.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
            // SAFETY: _exit ends the child without running the parent's atexit handlers or
            // flushing its copied stdio buffers.
            unsafe { libc::_exit(failure.status() as i32) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(report_write);
            // Also from the parent, so that a group signal sent right after the spawn cannot
            // miss the child; EACCES after the child's exec is fine.
            let _ = nix::unistd::setpgid(child, child);
            match read_report(&report_read) {
                Ok(None) => Ok(Spawned::Running(child)),
                Ok(Some(failure)) => {
                    wait_for(child);
                    Ok(Spawned::Failed(describe_failure(plan, failure)))
                }
                Err(e) => {
                    // We cannot tell whether exec happened; supervising is the safe choice.
                    tracing::warn!("spawn: cannot read the child's status pipe: {e}");
                    Ok(Spawned::Running(child))
                }
            }
        }
    }
}

/// The child's side, in the documented order. Returns only on failure (exec does not return).
fn child_path(plan: &mut Plan) -> ChildFailure {
    // SAFETY: setpgid(0, 0) puts the calling process in a new group of its own.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        return ChildFailure::new(Step::ProcessGroup, sys::errno());
    }
    if plan.foreground_tty {
        // Every signal is still blocked, so SIGTTOU cannot stop a background caller here. A
        // terminal we cannot take over is not worth refusing to start the app for.
        // SAFETY: tcsetpgrp on fd 0 with our own (new) process group id.
        unsafe { libc::tcsetpgrp(0, libc::getpgrp()) };
    }
    // getpid and the signal mask come before the policy, so that the seccomp filter, installed
    // last, only has to allow execve (and write/_exit to report a failed exec). The child
    // installs no signal handlers, so a signal arriving from here on meets the dispositions the
    // app would have anyway.
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    plan.exec.fill_listen_pid(pid);
    if let Err(errno) = sys::set_signal_mask(&plan.original_mask) {
        return ChildFailure::new(Step::SignalMask, errno);
    }
    if let Err(failure) = plan.policy.apply_in_child() {
        return failure;
    }
    // SAFETY: path, argv and envp are NUL-terminated strings in NULL-terminated arrays built
    // by Plan::prepare, all alive for this call; execve returns only on failure.
    unsafe { libc::execve(plan.exec.path.as_ptr(), plan.exec.argv(), plan.exec.envp()) };
    ChildFailure::new(Step::Exec, sys::errno())
}

fn read_report(fd: &OwnedFd) -> io::Result<Option<ChildFailure>> {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        match nix::unistd::read(fd, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    match filled {
        0 => Ok(None),
        8 => Ok(ChildFailure::decode(buf)),
        _ => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "partial report")),
    }
}

fn wait_for(child: Pid) {
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
    }
}

fn describe_failure(plan: &Plan, failure: ChildFailure) -> AppExit {
    let cause = nix::errno::Errno::from_raw(failure.errno).desc();
    match failure.step {
        Step::Exec => AppExit::ExecFailed {
            status: failure.status(),
            reason: format!("{}: {cause}", plan.exec.path.to_string_lossy()),
        },
        step => AppExit::NotStarted {
            reason: format!("{}: {cause}", step.name()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_report_round_trips() {
        for step in Step::ALL {
            let f = ChildFailure::new(step, libc::EPERM);
            assert_eq!(ChildFailure::decode(f.encode()), Some(f));
        }
        assert_eq!(ChildFailure::decode([0; 8]), None);
    }

    #[test]
    fn exec_statuses() {
        assert_eq!(ChildFailure::new(Step::Exec, libc::ENOENT).status(), 127);
        assert_eq!(ChildFailure::new(Step::Exec, libc::EACCES).status(), 126);
        assert_eq!(ChildFailure::new(Step::SetUid, libc::EPERM).status(), 125);
    }
}
