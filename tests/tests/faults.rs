//! Fault injection (issue 7, part 3): the real static `shim` as PID 1 of a fresh PID namespace
//! while its diagnostics clients die, half-close or stop reading, its socket file is deleted or
//! replaced, and its app is stopped, re-execs itself or changes its process group and session.
//! Each test checks from outside that nothing leaks (the shim's descriptor count comes back to
//! its baseline), nothing hangs, and the shim's own counters (diagnostics `Status`) stay exact.
//!
//! Every bound on time is a liveness limit (how long to wait before calling it hung), never a
//! timing claim.

use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use husk_tests::*;

const LIMIT: Duration = Duration::from_secs(60);
const LIST_PROCESSES: &[u8] = b"{\"method\":\"io.husk.Diag.ListProcesses\"}\0";

/// The helper's signal loop (`husk-helper loop CODE`) under a watched shim.
fn watched_loop(socket: &str, code: &str) -> Watched {
    Watched::start(helper_pid1_command(socket, &[], &["loop", code]), socket)
}

/// The shim's descriptors once forwarding, reaping and a request have each happened once.
fn baseline_fds(w: &Watched) -> usize {
    w.assert_forwards(libc::SIGWINCH);
    w.assert_reaps();
    w.idle_fds()
}

fn assert_counters(w: &Watched, forwarded: &[(&str, i64)], reaped: i64) {
    let st = w.status();
    for (name, count) in forwarded {
        assert_eq!(st["signals_forwarded"][name], *count, "{name}: {st}");
    }
    assert_eq!(st["reaped"], reaped, "{st}");
    assert!(
        st["signals_forwarded"].get("SIGPIPE").is_none(),
        "a client's hang-up became a forwarded SIGPIPE: {st}"
    );
}

fn stop(w: Watched) -> Outcome {
    w.shim.signal(libc::SIGTERM);
    w.shim.finish(LIMIT)
}

/// `husk-helper client SOCKET MODE`, running once it printed "sent"; killed when dropped.
struct Client(std::process::Child);

impl Client {
    fn start(socket: &str, mode: &str) -> Client {
        let mut child = Command::new(helper())
            .args(["client", socket, mode])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a client");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "sent\n", "the client could not send");
        Client(child)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn clients_killed_mid_request_or_mid_reply_leak_nothing() {
    if !require_root("clients_killed_mid_request_or_mid_reply_leak_nothing") {
        return;
    }
    let socket = scratch_socket("killed");
    let w = watched_loop(&socket, "3");
    let fds = baseline_fds(&w);
    let rss = w.rss_kib();

    for round in 0..3 {
        // Ten clients stopped half-way through a request, ten with 300 requests queued whose
        // replies they never read: the shim holds each (its stream and the peer's pidfd)...
        let clients: Vec<Client> = ["partial", "flood"]
            .iter()
            .flat_map(|mode| (0..10).map(move |_| *mode))
            .map(|mode| Client::start(&socket, mode))
            .collect();
        // (A request answered after them means every one was accepted.)
        w.status();
        assert!(
            w.fds() >= fds + clients.len(),
            "round {round}: the shim holds {} descriptors, {fds} before",
            w.fds()
        );
        w.assert_forwards(libc::SIGWINCH);
        // ...until they are killed.
        drop(clients);
        w.wait_fds(fds);
        w.assert_reaps();
    }
    assert_counters(&w, &[("SIGWINCH", 4)], 4);
    assert!(!w.shim.stdout().contains("got 13"), "SIGPIPE reached the app");
    w.assert_rss_bounded(rss);
    let out = stop(w);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
}

/// Reads until EOF or an error; `None` if the shim left the connection hanging.
fn read_until_closed(s: &mut UnixStream) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return None,
            // Reset: closed with our requests unread.
            Err(_) => return Some(got),
        }
    }
}

#[test]
fn half_closed_sockets_get_their_reply_or_are_dropped() {
    if !require_root("half_closed_sockets_get_their_reply_or_are_dropped") {
        return;
    }
    use std::net::Shutdown;
    let socket = scratch_socket("half");
    let w = watched_loop(&socket, "4");
    let fds = baseline_fds(&w);

    // A request, then no more writing: the reply comes, then EOF.
    let mut s = UnixStream::connect(&socket).unwrap();
    s.write_all(LIST_PROCESSES).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let reply = read_until_closed(&mut s).expect("the shim kept a finished connection open");
    assert_eq!(reply.last(), Some(&0), "{}", String::from_utf8_lossy(&reply));
    assert!(
        serde_json::from_slice::<serde_json::Value>(&reply[..reply.len() - 1]).unwrap()["parameters"]["processes"]
            .is_array()
    );
    drop(s);
    w.wait_fds(fds);

    // Each of these leaves its end open: the shim must notice by itself and let go.
    let mut kept = Vec::new();
    // Half a request, then no more writing: nothing to answer.
    let mut s = UnixStream::connect(&socket).unwrap();
    s.write_all(&LIST_PROCESSES[..10]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_until_closed(&mut s),
        Some(Vec::new()),
        "an incomplete request got an answer"
    );
    kept.push(s);
    // Will not read: the reply has nowhere to go (EPIPE, not a SIGPIPE for the app).
    let s = UnixStream::connect(&socket).unwrap();
    s.shutdown(Shutdown::Read).unwrap();
    (&s).write_all(LIST_PROCESSES).unwrap();
    kept.push(s);
    // Neither reads nor writes.
    let s = UnixStream::connect(&socket).unwrap();
    s.shutdown(Shutdown::Both).unwrap();
    kept.push(s);
    w.wait_fds(fds);
    w.assert_forwards(libc::SIGWINCH);
    w.assert_reaps();
    drop(kept);

    assert_counters(&w, &[("SIGWINCH", 2)], 2);
    assert!(!w.shim.stdout().contains("got 13"), "SIGPIPE reached the app");
    let out = stop(w);
    assert_eq!(out.code, Some(4), "{}", out.stderr);
}

#[test]
fn a_peer_that_reads_nothing_is_dropped_while_others_are_served() {
    if !require_root("a_peer_that_reads_nothing_is_dropped_while_others_are_served") {
        return;
    }
    let socket = scratch_socket("stalled");
    let w = watched_loop(&socket, "5");
    let fds = baseline_fds(&w);
    let rss = w.rss_kib();

    // 2000 requests whose replies (megabytes in all) nobody reads: the socket buffer fills up
    // and the shim's reply waits.
    let mut stalled = UnixStream::connect(&socket).unwrap();
    stalled.write_all(&LIST_PROCESSES.repeat(2000)).unwrap();
    w.status();
    assert!(w.fds() > fds, "the stalled client was not accepted");

    // Meanwhile PID 1 forwards, reaps and answers everyone else.
    for _ in 0..3 {
        w.assert_forwards(libc::SIGWINCH);
        w.assert_reaps();
    }

    // The shim drops the stalled peer by itself (its request timeout), while the peer still
    // holds its end; the peer then sees the end of the stream, not a hang.
    w.wait_fds(fds);
    let got = read_until_closed(&mut stalled).expect("the dropped peer's read hung");
    let replies = got.iter().filter(|&&b| b == 0).count();
    assert!(
        (1..2000).contains(&replies),
        "{replies} of 2000 replies went to a peer that read nothing"
    );
    assert_counters(&w, &[("SIGWINCH", 4)], 4);
    w.assert_rss_bounded(rss);
    let out = stop(w);
    assert_eq!(out.code, Some(5), "{}", out.stderr);
}

fn inode(path: &str) -> Option<u64> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

#[test]
fn the_socket_file_deleted_or_replaced_while_running() {
    if !require_root("the_socket_file_deleted_or_replaced_while_running") {
        return;
    }
    let socket = scratch_socket("deleted");
    let w = watched_loop(&socket, "6");
    let fds = baseline_fds(&w);
    let app = w.app();

    // Deleted: diagnostics are out of reach (probe says so), PID 1 carries on.
    std::fs::remove_file(&socket).unwrap();
    assert_eq!(probe(&socket, &["status"]).code, Some(3));
    w.assert_forwards(libc::SIGWINCH);
    w.shim.signal(libc::SIGHUP);
    w.shim.wait_line("orphaned", 2);
    wait_for(LIMIT, || (children_of(w.shim.pid) == vec![app]).then_some(())).expect("the orphan was not reaped");
    assert_eq!(w.fds(), fds, "the shim's descriptors");

    // Replaced by another program's socket: clients reach that one, and the shim, on its way
    // out, leaves it alone.
    let other = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let replacement = inode(&socket);
    let _client = UnixStream::connect(&socket).unwrap();
    other.set_nonblocking(true).unwrap();
    assert!(other.accept().is_ok(), "the replacement is not the one answering");
    w.assert_forwards(libc::SIGWINCH);
    let Watched { shim, .. } = w;
    shim.signal(libc::SIGTERM);
    let out = shim.finish(LIMIT);
    assert_eq!(out.code, Some(6), "{}", out.stderr);
    assert_eq!(
        inode(&socket),
        replacement,
        "the shim removed a socket that was not its own"
    );
    drop(other);

    // Replaced by a regular file: left alone too.
    let socket = scratch_socket("replaced");
    let w = watched_loop(&socket, "6");
    std::fs::remove_file(&socket).unwrap();
    std::fs::write(&socket, "not a socket\n").unwrap();
    let out = stop(w);
    assert_eq!(out.code, Some(6), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "not a socket\n");
}

#[test]
fn a_stopped_app_is_neither_reaped_nor_given_up_on() {
    if !require_root("a_stopped_app_is_neither_reaped_nor_given_up_on") {
        return;
    }
    let socket = scratch_socket("stopped");
    let w = watched_loop(&socket, "5");
    let fds = baseline_fds(&w);
    let app = w.app();
    let state = |pid: i32| stat(pid).map(|(s, _)| s);

    for round in 1..=5 {
        send(app, libc::SIGSTOP);
        wait_for(LIMIT, || (state(app) == Some('T')).then_some(())).expect("the app did not stop");
        // Stopped: a forwarded signal waits in the app's queue, the shim does not take the stop
        // for an exit, and it keeps answering.
        w.shim.signal(libc::SIGWINCH);
        let st = w.status();
        assert_eq!(st["child"]["state"], "running", "round {round}: {st}");
        assert_eq!(st["reaped"], 1, "round {round}: a stop is not an exit");
        assert_ne!(state(w.shim.pid), Some('T'), "PID 1 stopped");
        // SIGCONT sent to the shim is forwarded, resumes the app, and the queued signal arrives.
        w.shim.signal(libc::SIGCONT);
        w.shim.wait_line("got 18", round);
        w.shim.wait_line("got 28", round + 1);
    }
    // A SIGTERM forwarded to a stopped app is delivered once it continues.
    send(app, libc::SIGSTOP);
    wait_for(LIMIT, || (state(app) == Some('T')).then_some(())).expect("the app did not stop");
    w.shim.signal(libc::SIGTERM);
    w.wait_fds(fds);
    assert_counters(&w, &[("SIGWINCH", 6), ("SIGCONT", 5), ("SIGTERM", 1)], 1);
    send(app, libc::SIGCONT);
    let out = w.shim.finish(LIMIT);
    assert_eq!(out.code, Some(5), "{}", out.stderr);
}

#[test]
fn an_app_that_execs_itself_300_times_stays_the_app() {
    if !require_root("an_app_that_execs_itself_300_times_stays_the_app") {
        return;
    }
    let socket = scratch_socket("reexec");
    let shim = Pid1::start_with(helper_pid1_command(&socket, &[], &["reexec", "6", "300"]));
    shim.wait_line("start", 1);
    let app = wait_for(LIMIT, || children_of(shim.pid).first().copied()).unwrap();
    // Sent while the app is busy exec'ing: blocked across every exec, taken by the last one.
    shim.signal(libc::SIGUSR1);
    shim.signal(libc::SIGWINCH);
    let w = Watched::attach(shim, &socket);
    w.shim.wait_line("got 10", 1);
    w.shim.wait_line("got 28", 1);
    assert_eq!(w.app(), app, "the app's pid stays the same through exec");
    let cmdline = std::fs::read(format!("/proc/{app}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("reexec\u{0}6\u{0}0\u{0}again"),
        "{cmdline:?}"
    );
    // Exec is not an exit: nothing reaped, the app still running, forwarding goes on.
    assert_counters(&w, &[("SIGUSR1", 1), ("SIGWINCH", 1)], 0);
    assert_eq!(w.status()["child"]["pid"], 2);
    let fds = baseline_fds(&w);
    assert_counters(&w, &[("SIGUSR1", 1), ("SIGWINCH", 2)], 1);
    w.wait_fds(fds);
    let out = stop(w);
    assert_eq!(out.code, Some(6), "{}", out.stderr);
    let lines = out.stdout_text();
    assert_eq!(lines.matches("got 10").count(), 1, "{lines}");
    assert_eq!(lines.matches("start").count(), 1, "{lines}");
}

#[test]
fn an_app_that_changes_its_process_group_and_session_still_gets_its_signals() {
    if !require_root("an_app_that_changes_its_process_group_and_session_still_gets_its_signals") {
        return;
    }
    for target in ["child", "group"] {
        let socket = scratch_socket(&format!("regroup-{target}"));
        let w = Watched::start(
            helper_pid1_command(&socket, &["--signal-target", target], &["regroup", "8"]),
            &socket,
        );
        let app = w.app();
        let grandchild = wait_for(LIMIT, || children_of(app).first().copied()).unwrap();
        let pgid = |pid: i32| {
            nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
                .unwrap()
                .as_raw()
        };
        let sid = |pid: i32| {
            nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid)))
                .unwrap()
                .as_raw()
        };
        let fds = baseline_fds(&w);

        // The app joins its grandchild's process group...
        w.shim.signal(libc::SIGUSR1);
        w.shim.wait_prefix("pgid ");
        assert_eq!(pgid(app), grandchild, "{target}");
        w.assert_forwards(libc::SIGWINCH);
        // ...then starts a session of its own.
        w.shim.signal(libc::SIGUSR2);
        w.shim.wait_prefix("sid ");
        assert_eq!((sid(app), pgid(app)), (app, app), "{target}");
        w.assert_forwards(libc::SIGWINCH);
        w.assert_reaps();
        w.wait_fds(fds);
        assert_counters(&w, &[("SIGWINCH", 3), ("SIGUSR1", 1), ("SIGUSR2", 1), ("SIGHUP", 2)], 2);

        // The grandchild, left in a group and session of neither, still gets the shutdown's
        // SIGTERM; the shim exits with the app's code.
        let out = stop(w);
        assert_eq!(out.code, Some(8), "{target}: {}", out.stderr);
        assert!(
            out.stdout_text().contains("grandchild got 15"),
            "{target}: {}",
            out.stdout_text()
        );
    }
}
