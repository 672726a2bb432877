//! The reply to `ListProcesses`, built on a helper thread. With thousands of processes a scan of
//! /proc takes about a hundred milliseconds (three files per process) and its JSON another
//! twenty, which PID 1's loop must not spend: signals would wait that long to be forwarded. The
//! thread reads the table, marks the app's tree and encodes the reply; the loop only copies the
//! bytes out. At most one scan runs; every `ListProcesses` that arrives while it runs is
//! answered with its result, and later ones start the next. Should no thread start, the scan
//! runs on the loop.

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use husk_inspect::process;
use husk_proto::{Processes, Reply};

use super::conn::encode_bounded;
use super::mailbox::Mailbox;

pub struct Scanner {
    running: bool,
    /// How many scans have finished; a request waits for a number above the one it saw.
    finished: u64,
    /// The last scan's encoded reply.
    last: Arc<Vec<u8>>,
    mailbox: Mailbox<Vec<u8>>,
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

    /// Starts a scan unless one runs, marking the tree of `app` (the app's pid while it runs);
    /// returns the number of scans finished so far, which the request waits to see exceeded.
    pub fn start(&mut self, app: Option<i32>) -> u64 {
        if self.running {
            // The running scan started before this request; its answer is as good as any
            // /proc scan (none is atomic), so wait for that one.
            return self.finished;
        }
        match self.mailbox.spawn("scan", move || encoded_table(app)) {
            Ok(_) => {
                self.running = true;
                self.finished
            }
            Err(e) => {
                tracing::debug!("diagnostics: cannot start a scan thread ({e}); scanning on the loop");
                self.finish(encoded_table(app));
                self.finished - 1
            }
        }
    }

    /// Takes in a finished scan.
    pub fn collect(&mut self) {
        for reply in self.mailbox.take() {
            self.running = false;
            self.finish(reply);
        }
    }

    fn finish(&mut self, reply: Vec<u8>) {
        self.finished += 1;
        self.last = Arc::new(reply);
    }

    /// The encoded reply, once a scan later than `seen` has finished.
    pub fn result_after(&self, seen: u64) -> Option<Arc<Vec<u8>>> {
        (self.finished > seen).then(|| Arc::clone(&self.last))
    }
}

/// The process table with the app's tree marked, encoded as the `ListProcesses` reply.
fn encoded_table(app: Option<i32>) -> Vec<u8> {
    let mut processes = process::list_processes();
    if let Some(app) = app {
        let pairs: Vec<(i32, i32)> = processes.iter().map(|p| (p.pid as i32, p.ppid as i32)).collect();
        let tree = process::tree(&pairs, app);
        for p in &mut processes {
            p.in_app = tree.contains(&(p.pid as i32));
        }
    }
    encode_bounded(&Reply::ok(&Processes { processes }))
}
