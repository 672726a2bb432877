//! The process table for `ListProcesses`, read on a helper thread. With thousands of processes a
//! scan of /proc takes a few hundred milliseconds (three files per process), which PID 1's loop
//! must not spend: signals would wait that long to be forwarded. At most one scan runs; every
//! `ListProcesses` that arrives while it runs is answered with its result, and later ones start
//! the next. Should no thread start, the scan runs on the loop as before.

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use husk_inspect::process;
use husk_proto::Process;

use super::mailbox::Mailbox;

pub struct Scanner {
    running: bool,
    /// How many scans have finished; a request waits for a number above the one it saw.
    finished: u64,
    last: Arc<Vec<Process>>,
    mailbox: Mailbox<Vec<Process>>,
}

impl Scanner {
    pub fn new() -> std::io::Result<Scanner> {
        Ok(Scanner {
            running: false,
            finished: 0,
            last: Arc::new(Vec::new()),
            mailbox: Mailbox::new()?,
        })
    }

    /// Readable when a scan has finished.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.mailbox.wake_fd()
    }

    /// Starts a scan unless one runs; returns the number of scans finished so far, which the
    /// request waits to see exceeded.
    pub fn start(&mut self) -> u64 {
        if self.running {
            // The running scan started before this request; its answer is as good as any
            // /proc scan (none is atomic), so wait for that one.
            return self.finished;
        }
        match self.mailbox.spawn("scan", process::list_processes) {
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
        for processes in self.mailbox.take() {
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
