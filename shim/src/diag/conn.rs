//! One client connection: reading requests up to the size cap, one reply in flight at a time
//! (a client that does not read its replies is not read from either), and the deadline.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use husk_proto::{encode, errors, Call, Decoder, FrameError, Reply, MAX_REQUEST};
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use serde_json::json;

use super::access::Peer;
use super::methods::{self, Answer, Ctx, Outcome, Pending};
use super::Work;
use super::MAX_REPLY_BYTES;

/// How much one wake-up reads from one client before giving others their turn.
const READ_CHUNK: usize = 16 * 1024;

pub struct Conn {
    stream: UnixStream,
    peer: Peer,
    pub deadline: Instant,
    /// When the last reply went out (or the connection was accepted).
    pub last_active: Instant,
    decoder: Decoder,
    out: Vec<u8>,
    out_pos: usize,
    close_after: bool,
    eof: bool,
    waiting: Option<(Pending, bool)>,
    registered: EpollFlags,
}

impl Conn {
    pub fn new(stream: UnixStream, peer: Peer, deadline: Instant) -> Conn {
        Conn {
            stream,
            peer,
            deadline,
            last_active: Instant::now(),
            decoder: Decoder::new(MAX_REQUEST),
            out: Vec::new(),
            out_pos: 0,
            close_after: false,
            eof: false,
            waiting: None,
            registered: EpollFlags::EPOLLIN,
        }
    }

    pub fn register(&self, epoll: &Epoll, token: u64) -> nix::Result<()> {
        epoll.add(self.stream.as_fd(), EpollEvent::new(self.registered, token))
    }

    pub fn deregister(&self, epoll: &Epoll) {
        let _ = epoll.delete(self.stream.as_fd());
    }

    /// Between requests: nothing half-read, nothing to send, nothing pending.
    pub fn is_idle(&self) -> bool {
        self.decoder.is_empty() && self.out.is_empty() && self.waiting.is_none() && !self.close_after
    }

    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    fn wanted(&self) -> EpollFlags {
        if !self.out.is_empty() {
            EpollFlags::EPOLLOUT
        } else if self.waiting.is_some() {
            EpollFlags::empty()
        } else {
            EpollFlags::EPOLLIN
        }
    }

    pub fn update_interest(&mut self, epoll: &Epoll, token: u64) {
        let wanted = self.wanted();
        if wanted != self.registered {
            let mut event = EpollEvent::new(wanted, token);
            if epoll.modify(self.stream.as_fd(), &mut event).is_ok() {
                self.registered = wanted;
            }
        }
    }

    /// Makes progress; false when the connection should be closed.
    pub fn on_event(&mut self, events: EpollFlags, ctx: &Ctx, work: &mut Work, timeout: Duration) -> bool {
        if events.contains(EpollFlags::EPOLLERR) {
            return false;
        }
        // A parked call whose peer has hung up: nobody will read the reply, and the hang-up,
        // which epoll reports whatever the interest, would wake the loop until the call ends.
        if self.waiting.is_some() && events.contains(EpollFlags::EPOLLHUP) {
            return false;
        }
        loop {
            if !self.out.is_empty() {
                match self.flush() {
                    Ok(true) => {
                        self.last_active = Instant::now();
                        self.deadline = self.last_active + timeout;
                        if self.close_after {
                            return false;
                        }
                    }
                    Ok(false) => return true,
                    Err(_) => return false,
                }
            }
            if let Some((pending, oneway)) = &self.waiting {
                match methods::resume(pending, ctx, work) {
                    Some(answer) => {
                        let oneway = *oneway;
                        self.waiting = None;
                        if !oneway {
                            self.send(answer);
                        }
                        continue;
                    }
                    None => return true,
                }
            }
            let message = match self.decoder.next_message() {
                Ok(Some(m)) => m,
                Err(FrameError::TooLarge) => {
                    tracing::debug!("diagnostics: dropping a client whose request exceeds {MAX_REQUEST} bytes");
                    return false;
                }
                Ok(None) if self.eof => return false,
                Ok(None) => match self.fill() {
                    Ok(true) => continue,
                    Ok(false) => return true,
                    Err(_) => return false,
                },
            };
            self.decoder.shrink();
            self.handle(&message, ctx, work);
        }
    }

    /// Reads what is available (bounded); true when something new arrived or EOF was seen.
    fn fill(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < READ_CHUNK && self.decoder.room() > 0 {
            let want = buf.len().min(self.decoder.room());
            match self.stream.read(&mut buf[..want]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(true);
                }
                Ok(n) => {
                    self.decoder.push(&buf[..n]);
                    total += n;
                    if buf[..n].contains(&0) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(total > 0 || self.decoder.room() == 0)
    }

    /// Writes queued output; true when all of it is out.
    fn flush(&mut self) -> io::Result<bool> {
        use nix::sys::socket::{send, MsgFlags};
        use std::os::fd::AsRawFd;
        while self.out_pos < self.out.len() {
            // MSG_NOSIGNAL: a client that hung up must not raise SIGPIPE, which PID 1 holds
            // in its signalfd and would forward to the app like any other signal.
            match send(
                self.stream.as_raw_fd(),
                &self.out[self.out_pos..],
                MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(nix::errno::Errno::EAGAIN) => return Ok(false),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        // Give the memory back: an idle connection holds no reply.
        self.out = Vec::new();
        self.out_pos = 0;
        Ok(true)
    }

    fn queue(&mut self, reply: &Reply) {
        self.out = encode_bounded(reply);
        self.out_pos = 0;
    }

    fn send(&mut self, answer: Answer) {
        match answer {
            Answer::Reply(reply) => self.queue(&reply),
            Answer::Encoded(bytes) => {
                self.out = bytes.as_ref().clone();
                self.out_pos = 0;
            }
        }
    }

    fn handle(&mut self, message: &[u8], ctx: &Ctx, work: &mut Work) {
        // A refused peer learns why on its first message, whatever it sent, and nothing else.
        if let Some(reason) = &self.peer.refused {
            self.queue(&Reply::error(
                errors::PERMISSION_DENIED,
                json!({"uid": self.peer.uid, "reason": reason}),
            ));
            self.close_after = true;
            return;
        }
        let call: Call = match serde_json::from_slice(message) {
            Ok(call) => call,
            Err(e) => {
                let is_json = serde_json::from_slice::<serde_json::Value>(message).is_ok();
                self.queue(&Reply::error(
                    errors::INVALID_PARAMETER,
                    json!({"parameter": if is_json { "method" } else { "message" }}),
                ));
                // Not even JSON: not a varlink client; answer once and hang up.
                self.close_after = !is_json;
                tracing::debug!("diagnostics: malformed request: {e}");
                return;
            }
        };
        match methods::call(&call, ctx, &self.peer, work) {
            Outcome::Answer(_) if call.oneway => {}
            Outcome::Answer(answer) => self.send(answer),
            Outcome::Wait(pending) => self.waiting = Some((pending, call.oneway)),
        }
    }
}

/// A reply as sent (NUL-terminated JSON), or an error in its place when it would exceed
/// `MAX_REPLY_BYTES`.
pub fn encode_bounded(reply: &Reply) -> Vec<u8> {
    let bytes = encode(reply);
    if bytes.len() <= MAX_REPLY_BYTES {
        return bytes;
    }
    encode(&Reply::error(
        errors::UNAVAILABLE,
        json!({"reason": format!("the reply would exceed {MAX_REPLY_BYTES} bytes")}),
    ))
}
