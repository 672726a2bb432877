//! The socket itself: binding (path or abstract), the stale-socket rule, permissions, and
//! clean-up when the shim exits.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use super::Address;

pub struct Listener {
    socket: UnixListener,
    /// The path and the inode we created, removed again on drop if still ours.
    owned_path: Option<(PathBuf, u64)>,
}

impl Listener {
    /// Binds the address. A path socket gets mode 0660, or 0666 when `open_to_all` (another
    /// uid was allowed; the peer-credential check is then the gate).
    pub fn bind(address: &Address, open_to_all: bool) -> Result<Listener, String> {
        let socket = match address {
            Address::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .map_err(|e| format!("abstract socket @{name}: {e}"))?;
                UnixListener::bind_addr(&addr).map_err(|e| match e.kind() {
                    io::ErrorKind::AddrInUse => format!("@{name} is already served by another process"),
                    _ => format!("cannot bind @{name}: {}", crate::describe_io(&e)),
                })?
            }
            Address::Path(path) => {
                remove_stale(path)?;
                // The socket file is created by bind with 0777 & ~umask: a tight umask for the
                // moment of the bind means it is never reachable with a wider mode. The shim is
                // single-threaded here, so the process-wide umask affects nothing else.
                let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
                let bound = UnixListener::bind(path);
                nix::sys::stat::umask(old);
                let socket =
                    bound.map_err(|e| format!("cannot bind {}: {}", path.display(), crate::describe_io(&e)))?;
                let mode = if open_to_all { 0o666 } else { 0o660 };
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("chmod {}: {}", path.display(), crate::describe_io(&e)))?;
                let ino = std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0);
                return finish(socket, Some((path.clone(), ino)));
            }
        };
        finish(socket, None)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// One pending connection, non-blocking; `None` when the backlog is empty.
    pub fn accept(&self) -> io::Result<Option<UnixStream>> {
        match self.socket.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                Ok(Some(stream))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EINTR)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn finish(socket: UnixListener, owned_path: Option<(PathBuf, u64)>) -> Result<Listener, String> {
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("socket: {}", crate::describe_io(&e)))?;
    Ok(Listener { socket, owned_path })
}

/// A socket file nobody listens on is left over from an earlier run: remove it. A live one
/// belongs to another shim (the caller warns and goes without); a file that is not a socket
/// is not ours to delete.
fn remove_stale(path: &std::path::Path) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is not a socket; not replacing it",
            path.display()
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(format!("{} is already served by another process", path.display())),
        Err(_) => {
            tracing::info!("diagnostics: removing the stale socket {}", path.display());
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove the stale {}: {}", path.display(), crate::describe_io(&e)))
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((path, ino)) = &self.owned_path {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
