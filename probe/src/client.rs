//! The varlink client: one connection, one call, one reply, all within the deadline.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use husk_proto::{encode, Call, Decoder, Reply, MAX_REPLY};
use serde_json::Value;

pub enum CallError {
    /// The socket could not be reached (exit 3).
    Unreachable(String),
    /// The shim answered with a varlink error (exit 4).
    Server { name: String, parameters: Value },
    /// The conversation broke down (exit 4).
    Protocol(String),
}

pub fn connect(address: &str, timeout: Duration) -> Result<UnixStream, CallError> {
    let stream = if let Some(name) = address.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(|e| CallError::Unreachable(format!("{address}: {e}")))?;
        UnixStream::connect_addr(&addr)
    } else {
        UnixStream::connect(address)
    }
    .map_err(|e| CallError::Unreachable(format!("{address}: {e}")))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    Ok(stream)
}

pub fn call(stream: &mut UnixStream, method: &str, parameters: Value, timeout: Duration) -> Result<Value, CallError> {
    let deadline = Instant::now() + timeout;
    let protocol = |what: &str, e: std::io::Error| CallError::Protocol(format!("{what}: {e}"));
    // A refused peer may find the connection closed before its request is written; the
    // shim's reply is still waiting to be read, so a failed write is not the end.
    let write_error = stream.write_all(&encode(&Call::new(method, parameters))).err();
    let mut decoder = Decoder::new(MAX_REPLY);
    let mut buf = vec![0u8; 64 * 1024];
    let message = loop {
        match decoder.next_message() {
            Ok(Some(m)) => break m,
            Ok(None) => {}
            Err(_) => return Err(CallError::Protocol(format!("reply larger than {MAX_REPLY} bytes"))),
        }
        if Instant::now() >= deadline {
            return Err(CallError::Protocol("timed out waiting for the reply".into()));
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                return Err(match write_error {
                    Some(e) => protocol("sending the request", e),
                    None => CallError::Protocol("the shim closed the connection without a reply".into()),
                })
            }
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(CallError::Protocol("timed out waiting for the reply".into()))
            }
            Err(e) => return Err(protocol("reading the reply", e)),
        }
    };
    let reply: Reply =
        serde_json::from_slice(&message).map_err(|e| CallError::Protocol(format!("malformed reply: {e}")))?;
    match reply.error {
        Some(name) => Err(CallError::Server {
            name,
            parameters: reply.parameters.unwrap_or(Value::Null),
        }),
        None => Ok(reply.parameters.unwrap_or(Value::Object(Default::default()))),
    }
}
