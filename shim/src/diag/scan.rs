//! The process table for `ListProcesses`, read on a helper thread. With thousands of processes a
//! scan of /proc takes a few hundred milliseconds (three files per process), which PID 1's loop
//! must not spend: signals would wait that long to be forwarded. At most one scan runs; every
//! `ListProcesses` that arrives while it runs is answered with its result, and later ones start
//! the next. Should no thread start, the scan runs on the loop as before.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use husk_inspect::process;
use husk_proto::Process;

pub struct Scanner {
    running: bool,
    /// How many scans have finished; a request waits for a number above the one it saw.
    finished: u64,
    last: Arc<Vec<Process>>,
    tx: Sender<Vec<Process>>,
    rx: Receiver<Vec<Process>>,
    wake_read: OwnedFd,
    wake_write: Arc<OwnedFd>,
}

impl Scanner {
    pub fn new() -> std::io::Result<Scanner> {
        use nix::fcntl::OFlag;
        let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let (tx, rx) = channel();
        Ok(Scanner {
            running: false,
            finished: 0,
            last: Arc::new(Vec::new()),
            tx,
            rx,
            wake_read: r,
            wake_write: Arc::new(w),
        })
    }

    /// Readable when a scan has finished.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_read.as_fd()
    }

    /// Starts a scan unless one runs; returns the number of scans finished so far, which the
    /// request waits to see exceeded.
    pub fn start(&mut self) -> u64 {
        if self.running {
            // The running scan started before this request; its answer is as good as any
            // /proc scan (none is atomic), so wait for that one.
            return self.finished;
        }
        let tx = self.tx.clone();
        let wake = Arc::clone(&self.wake_write);
        let spawned = std::thread::Builder::new()
            .name("scan".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = tx.send(process::list_processes());
                let _ = nix::unistd::write(&*wake, &[1]);
            });
        match spawned {
            Ok(_) => {
                self.running = true;
                self.finished
            }
            Err(e) => {
                tracing::debug!("diagnostics: cannot start a scan thread ({e}); scanning on the loop");
                self.finish(process::list_processes());
                self.finished - 1
            }
        }
    }

    /// Takes in a finished scan.
    pub fn collect(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.wake_read, &mut buf), Ok(n) if n > 0) {}
        while let Ok(processes) = self.rx.try_recv() {
            self.running = false;
            self.finish(processes);
        }
    }

    fn finish(&mut self, processes: Vec<Process>) {
        self.finished += 1;
        self.last = Arc::new(processes);
    }

    /// The table, once a scan later than `seen` has finished.
    pub fn result_after(&self, seen: u64) -> Option<Arc<Vec<Process>>> {
        (self.finished > seen).then(|| Arc::clone(&self.last))
    }
}
