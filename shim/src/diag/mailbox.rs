//! Results of work done on helper threads (health checks, process-table scans), with a pipe that
//! wakes PID 1's epoll loop when one arrives, so that slow work never runs on the loop itself.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

pub struct Mailbox<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    wake_read: OwnedFd,
    wake_write: Arc<OwnedFd>,
}

impl<T: Send + 'static> Mailbox<T> {
    pub fn new() -> std::io::Result<Mailbox<T>> {
        use nix::fcntl::OFlag;
        let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let (tx, rx) = channel();
        Ok(Mailbox {
            tx,
            rx,
            wake_read: r,
            wake_write: Arc::new(w),
        })
    }

    /// Readable when a result has arrived.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_read.as_fd()
    }

    /// Runs `job` on a helper thread called `name`; its result arrives here.
    pub fn spawn(&self, name: &str, job: impl FnOnce() -> T + Send + 'static) -> std::io::Result<()> {
        let tx = self.tx.clone();
        let wake = Arc::clone(&self.wake_write);
        std::thread::Builder::new()
            .name(name.into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = tx.send(job());
                let _ = nix::unistd::write(&*wake, &[1]);
            })
            .map(drop)
    }

    /// The results that have arrived since the last call.
    pub fn take(&self) -> Vec<T> {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.wake_read, &mut buf), Ok(n) if n > 0) {}
        self.rx.try_iter().collect()
    }
}
