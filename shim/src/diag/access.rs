//! Who is calling, and what they may see (SPEC.md, "Access").
//!
//! The peer's uid comes from SO_PEERCRED. Whether the peer belongs to the app's process tree
//! is decided on a pidfd (SO_PEERPIDFD, Linux 6.5+; pidfd_open of the SO_PEERCRED pid before
//! that): the pid is read back from the pidfd after the ppid walk, so a peer that exited and
//! whose pid was reused during the check is not mistaken for another process.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use super::DiagConfig;

/// SO_PEERPIDFD on every architecture husk builds for (x86_64, aarch64).
const SO_PEERPIDFD: libc::c_int = 77;

#[derive(Debug)]
pub struct Peer {
    pub uid: u32,
    /// The peer's pid in the shim's PID namespace, when visible.
    pub pid: Option<i32>,
    /// Sees everything the shim sees (uid 0 or the shim's own uid).
    pub privileged: bool,
    /// Why the peer is refused, if it is.
    pub refused: Option<String>,
    /// Held so the peer's pid stays meaningful while the connection lives.
    _pidfd: Option<OwnedFd>,
}

impl Peer {
    /// Whether this peer may read details of a process owned by `owner`.
    pub fn may_read(&self, owner: Option<i64>) -> bool {
        self.privileged || owner == Some(i64::from(self.uid))
    }
}

fn peer_pidfd(stream: &UnixStream, pid: i32) -> Option<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` and `len` are live locals of the sizes passed; the kernel writes at most
    // `len` bytes into `fd`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 && fd >= 0 {
        // SAFETY: the kernel just created this descriptor for us; nothing else owns it.
        return Some(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    if pid > 0 {
        crate::sys::pidfd_open(pid)
    } else {
        None
    }
}

/// The pid a pidfd refers to in our PID namespace: `Some(0)` when the process is outside it,
/// `None` when it has exited.
fn pidfd_pid(pidfd: &OwnedFd) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
    let pid: i32 = text.lines().find_map(|l| l.strip_prefix("Pid:"))?.trim().parse().ok()?;
    (pid >= 0).then_some(pid)
}

/// Identifies a new peer and decides whether it is served.
pub fn identify(stream: &UnixStream, config: &DiagConfig, shim_uid: u32, app: i32) -> Peer {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let Ok(cred) = getsockopt(stream, PeerCredentials) else {
        return Peer {
            uid: u32::MAX,
            pid: None,
            privileged: false,
            refused: Some("peer credentials unavailable".into()),
            _pidfd: None,
        };
    };
    let uid = cred.uid();
    let privileged = uid == 0 || uid == shim_uid;
    let allowed = privileged || config.allow_uids.contains(&uid);
    let pidfd = peer_pidfd(stream, cred.pid());
    let pid = pidfd.as_ref().map_or(Some(cred.pid()).filter(|&p| p > 0), |fd| {
        pidfd_pid(fd).filter(|&p| p > 0)
    });
    let mut refused = None;
    if !allowed {
        refused = Some(format!("uid {uid} is not allowed (--diag-allow-uid)"));
    } else if !config.allow_app && app > 0 {
        if let Some(p) = pid {
            let in_tree = husk_inspect::process::descends_from(p, app);
            // Re-read through the pidfd: if the peer died (and its pid could have been reused
            // during the walk) the answer is about another process, so refuse.
            let still = match &pidfd {
                Some(fd) => pidfd_pid(fd) == Some(p),
                None => true,
            };
            if in_tree || !still {
                refused = Some("the peer belongs to the app's process tree (--diag-allow-app)".into());
            }
        } else if pidfd.as_ref().is_some_and(|fd| pidfd_pid(fd).is_none()) {
            refused = Some("the peer exited before it could be identified".into());
        }
    }
    if let Some(reason) = &refused {
        tracing::info!("diagnostics: refusing a peer with uid {uid}: {reason}");
    }
    Peer {
        uid,
        pid,
        privileged,
        refused,
        _pidfd: pidfd,
    }
}
