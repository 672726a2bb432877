//! TCP-connect and HTTP GET checks, used by the shim's named health checks (on a helper
//! thread) and by `probe tcp` / `probe http` (in probe's own network namespace). Plain
//! blocking std networking with timeouts; name resolution is the C library's (musl reads
//! /etc/hosts and /etc/resolv.conf itself).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Resolves `HOST:PORT` (IPv6 literals in brackets).
pub fn resolve(target: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {target:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("cannot resolve {target:?}: no addresses"));
    }
    Ok(addrs)
}

/// Connects to the first address of `target` that answers within `timeout`.
pub fn connect(target: &str, timeout: Duration) -> Result<(TcpStream, SocketAddr), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no address tried");
    for addr in resolve(target)? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last = "timed out".into();
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(format!("cannot connect to {target}: {last}"))
}

/// TCP connect check: Ok names the address that answered.
pub fn tcp(target: &str, timeout: Duration) -> Result<String, String> {
    connect(target, timeout).map(|(_, addr)| format!("connected to {addr}"))
}

/// `http://HOST[:PORT][/PATH]` → (host:port, host header, path).
pub fn parse_http_url(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains(['\r', '\n', ' ']) {
        return Err(format!("{url:?}: not a valid http URL"));
    }
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    let target = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((target, authority.to_string(), path.to_string()))
}

/// The status code of an HTTP response's first line.
pub fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_ascii_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    words.next()?.parse().ok()
}

/// HTTP GET check: healthy when the status equals `expect`, or is 2xx/3xx when none is given.
pub fn http(url: &str, expect: Option<u16>, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let (target, host, path) = parse_http_url(url)?;
    let (mut stream, _) = connect(&target, timeout)?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let _ = stream.set_read_timeout(Some(left));
    let _ = stream.set_write_timeout(Some(left));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: husk-probe\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{url}: sending the request: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.contains(&b'\n') && head.len() < 4096 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("{url}: reading the response: {e}")),
        }
    }
    let code = parse_status_line(&head).ok_or_else(|| format!("{url}: not an HTTP response"))?;
    let ok = match expect {
        Some(want) => code == want,
        None => (200..400).contains(&code),
    };
    if ok {
        Ok(format!("HTTP {code}"))
    } else {
        Err(format!(
            "HTTP {code}, expected {}",
            expect.map_or("2xx or 3xx".to_string(), |c| c.to_string())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/healthz").unwrap(),
            ("127.0.0.1:8080".into(), "127.0.0.1:8080".into(), "/healthz".into())
        );
        assert_eq!(parse_http_url("http://web").unwrap().0, "web:80");
        assert_eq!(parse_http_url("http://[::1]/x").unwrap().0, "[::1]:80");
        assert!(parse_http_url("https://x/").is_err());
        assert!(parse_http_url("http://x/a b").is_err());
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"SSH-2.0\r\n"), None);
        assert_eq!(parse_status_line(b"\xff\xfe"), None);
    }

    #[test]
    fn local_checks() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        assert!(tcp(&addr, Duration::from_secs(2)).is_ok());
        let server = std::thread::spawn(move || {
            drop(listener.accept().unwrap()); // the TCP check's connection
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.0 503 Busy\r\n\r\n").unwrap();
        });
        let e = http(&format!("http://{addr}/"), None, Duration::from_secs(2)).unwrap_err();
        assert!(e.contains("503"), "{e}");
        server.join().unwrap();
    }
}
