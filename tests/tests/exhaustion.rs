//! Resource exhaustion (issue 7, part 2): the real static `shim` as PID 1 of a fresh PID
//! namespace while `husk-helper`, its app, runs out of descriptors, processes, memory and
//! /dev/shm space. Each test checks from outside that the shim keeps reaping, forwarding and
//! answering on its diagnostics socket, that its own descriptors and memory stay bounded, and
//! that it exits with the app's code.
//!
//! Every bound on time is a liveness limit (how long to wait before calling it hung), never a
//! timing claim.

use std::process::Command;
use std::time::Duration;

use husk_tests::*;

const LIMIT: Duration = Duration::from_secs(60);

/// `shim --diag-socket SOCKET SHIM_ARGS -- husk-helper HELPER_ARGS` as PID 1, watched.
fn watched(socket: &str, shim_args: &[&str], helper_args: &[&str]) -> Watched {
    Watched::start(helper_pid1_command(socket, shim_args, helper_args), socket)
}

/// The shim's descriptors and RSS while nothing unusual happens: taken after one full round of
/// forwarding, reaping and a diagnostics request, so that everything the shim allocates
/// lazily exists already.
fn baseline(w: &Watched) -> (usize, u64) {
    w.assert_forwards(libc::SIGWINCH);
    w.assert_reaps();
    (w.idle_fds(), w.rss_kib())
}

/// PID 1 still does its job: forwards, reaps, answers, and holds no more than it did.
fn assert_still_serving(w: &Watched, (fds, rss): (usize, u64)) {
    w.assert_forwards(libc::SIGWINCH);
    w.assert_reaps();
    assert_eq!(w.status()["child"]["state"], "running");
    w.wait_fds(fds);
    w.assert_rss_bounded(rss);
}

fn stop(w: Watched) -> Outcome {
    w.shim.signal(libc::SIGTERM);
    w.shim.finish(LIMIT)
}

#[test]
fn the_app_running_out_of_descriptors_does_not_reach_the_shim() {
    if !require_root("the_app_running_out_of_descriptors_does_not_reach_the_shim") {
        return;
    }
    let socket = scratch_socket("fd-hog");
    let w = watched(&socket, &["--rlimit", "nofile=256"], &["fd-hog", "7", &socket]);
    let base = baseline(&w);

    // The app opens descriptors until EMFILE, then holds 40 idle connections to the socket
    // (refused app peers learn so only once they send something).
    w.shim.signal(libc::SIGUSR1);
    let opened = w.shim.wait_prefix("opened ");
    assert!(
        opened.ends_with(" EMFILE"),
        "the app stopped opening for another reason: {opened}"
    );
    w.shim.wait_line("connected 40", 1);
    w.shim.wait_line("refused", 1);
    // Each connection costs the shim its stream and the peer's pidfd, for at most 32 of them.
    assert!(
        w.fds() <= base.0 + 2 * 32,
        "the shim holds {} descriptors for 40 idle clients ({} before)",
        w.fds(),
        base.0
    );
    // An outside client is served all the same (an idle app connection makes room for it).
    assert_eq!(w.status()["child"]["state"], "running");
    w.assert_forwards(libc::SIGWINCH);
    w.assert_reaps();

    w.shim.signal(libc::SIGUSR2);
    w.shim.wait_line("released", 1);
    assert_still_serving(&w, base);
    let st = w.status();
    for (name, count) in [("SIGUSR1", 1), ("SIGUSR2", 1), ("SIGWINCH", 3), ("SIGHUP", 3)] {
        assert_eq!(st["signals_forwarded"][name], count, "{name}: {st}");
    }
    assert_eq!(st["reaped"], 3, "{st}");
    let out = stop(w);
    assert_eq!(out.code, Some(7), "{}", out.stderr);
}

/// The uid the fork bomb runs as: one no other test uses, so that RLIMIT_NPROC (which counts
/// every process of the uid on the machine) counts the bomb alone.
const BOMB_UID: &str = "47474:47474";
const BOMB_NPROC: usize = 64;

#[test]
fn a_fork_bomb_bounded_by_rlimit_nproc_is_reaped_to_the_last_process() {
    if !require_root("a_fork_bomb_bounded_by_rlimit_nproc_is_reaped_to_the_last_process") {
        return;
    }
    let socket = scratch_socket("fork-bomb");
    let nproc = format!("nproc={BOMB_NPROC}");
    let w = watched(&socket, &["--user", BOMB_UID, "--rlimit", &nproc], &["fork-bomb", "9"]);
    let base = baseline(&w);
    let reaped_before = w.reaped();

    w.shim.signal(libc::SIGUSR1);
    w.shim.wait_line("saturated", 1);
    // Every process the bomb could make exists (the limit, not the bomb, stopped it), and PID 1
    // answers with the whole crowd listed.
    let ps = probe_json(&w.socket, &["ps"]);
    let bombers = ps["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["uid"] == 47474 && p["pid"] != 2)
        .count();
    assert!(
        (BOMB_NPROC / 2..BOMB_NPROC).contains(&bombers),
        "{bombers} bombers under nproc={BOMB_NPROC}"
    );
    w.assert_forwards(libc::SIGWINCH);

    // All bombers exit at once; every one is an orphan of PID 1 by then, so the shim reaps each
    // exactly once.
    w.shim.signal(libc::SIGUSR2);
    let count: i64 = w.shim.wait_prefix("bombers ").parse().unwrap();
    assert!(count >= bombers as i64, "{count} bombers reported, {bombers} seen");
    let reaped = wait_for(LIMIT, || Some(w.reaped()).filter(|&n| n >= reaped_before + count));
    assert_eq!(reaped, Some(reaped_before + count), "the shim's reaped counter");
    assert_eq!(children_of(w.shim.pid), vec![w.app()], "no zombie is left under PID 1");
    assert_still_serving(&w, base);
    let out = stop(w);
    assert_eq!(out.code, Some(9), "{}", out.stderr);
}

/// Where the kernel counts OOM kills for a cgroup.
fn oom_kills(cg: &Cgroup) -> u64 {
    let file = if cg.v2 { "memory.events" } else { "memory.oom_control" };
    cg.read(file)
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_app_killed_by_the_oom_killer_in_its_memory_cgroup() {
    if !require_root("the_app_killed_by_the_oom_killer_in_its_memory_cgroup") {
        return;
    }
    let cg = Cgroup::new("memory", "oom");
    let test = "the_app_killed_by_the_oom_killer_in_its_memory_cgroup";
    if !require(test, cg.is_some(), "no memory cgroup controller to put the app in") {
        return;
    }
    let cg = cg.unwrap();
    // 64 MiB, swap included where the kernel accounts for it.
    let limit = (64u64 << 20).to_string();
    if cg.v2 {
        cg.write("memory.max", &limit);
        cg.write("memory.swap.max", "0");
    } else {
        cg.write("memory.limit_in_bytes", &limit);
        if cg.dir.join("memory.memsw.limit_in_bytes").exists() {
            cg.write("memory.memsw.limit_in_bytes", &limit);
        }
    }
    let socket = scratch_socket("oom");
    let w = watched(&socket, &[], &["mem-hog", "5", "256"]);
    // Only the app (and what it starts) is limited; the shim stays outside.
    cg.add(w.app());
    let base = baseline(&w);
    let reaped_before = w.reaped();

    // An orphan of the app allocates 256 MiB: the OOM killer takes it, and PID 1 reaps it.
    w.shim.signal(libc::SIGUSR1);
    wait_for(LIMIT, || (oom_kills(&cg) >= 1).then_some(())).expect("the OOM killer never ran");
    let reaped = wait_for(LIMIT, || Some(w.reaped()).filter(|&n| n > reaped_before));
    assert_eq!(reaped, Some(reaped_before + 1), "the killed orphan is reaped once");
    assert!(!w.shim.stdout().contains("hog survived"), "the limit did not apply");
    assert_still_serving(&w, base);

    // Then the app itself: killed by SIGKILL, the shim exits 128+9.
    w.shim.signal(libc::SIGUSR2);
    let out = w.shim.finish(LIMIT);
    assert_eq!(out.code, Some(137), "{}", out.stderr);
    assert!(oom_kills(&cg) >= 2);
    assert!(!out.stdout_text().contains("app survived"));
}

/// `unshare ... sh -c 'mount a small tmpfs on /dev/shm; PREPARE; exec shim ARGS'`: the shim as
/// PID 1 with a /dev/shm of its own namespace (the host's is left alone).
fn with_small_shm(options: &str, prepare: &str, shim_args: &[&str]) -> Command {
    let script = format!("mount -t tmpfs -o {options} husk-test-shm /dev/shm && {prepare} exec \"$0\" \"$@\"");
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", &script])
        .arg(shim())
        .args(shim_args);
    cmd
}

#[test]
fn a_full_dev_shm_does_not_silence_the_default_socket() {
    if !require_root("a_full_dev_shm_does_not_silence_the_default_socket") {
        return;
    }
    let h = helper().display().to_string();
    // The default socket, /dev/shm/husk.sock, on a 256 KiB /dev/shm the app fills up.
    let cmd = with_small_shm("size=256k,nr_inodes=64", "", &["--", &h, "shm-fill", "6", "/dev/shm"]);
    let shim = Pid1::start_with(cmd);
    let socket = format!("/proc/{}/root/dev/shm/husk.sock", shim.pid);
    let w = Watched::attach(shim, &socket);
    let base = baseline(&w);

    w.shim.signal(libc::SIGUSR1);
    let full = w.shim.wait_prefix("full ");
    let files: usize = full.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(files > 1, "{full}");
    let more = std::fs::File::create(format!("/proc/{}/root/dev/shm/more", w.shim.pid));
    assert_eq!(
        more.map_err(|e| e.raw_os_error()).err(),
        Some(Some(libc::ENOSPC)),
        "/dev/shm is full"
    );
    assert_still_serving(&w, base);
    w.shim.signal(libc::SIGUSR2);
    w.shim.wait_line("emptied", 1);
    let out = stop(w);
    assert_eq!(out.code, Some(6), "{}", out.stderr);

    // Full before the shim starts: no inode for the socket. The shim says why and runs the app
    // without diagnostics.
    let fill = "i=0; while touch /dev/shm/f$i 2>/dev/null; do i=$((i+1)); done;";
    let mut cmd = with_small_shm("size=64k,nr_inodes=8", fill, &["--", &h, "exit", "4"]);
    cmd.stdin(std::process::Stdio::null());
    let out = run(cmd, LIMIT);
    assert_eq!(out.code, Some(4), "{}", out.stderr);
    assert!(
        out.stderr.contains("/dev/shm/husk.sock") && out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
}

/// Leftovers waiting for their SIGTERM, blocked before the app printed anything: the `crowd`
/// helper's orphans, more of them than the shim may open descriptors.
const CROWD: usize = 100;

/// `prlimit --nofile=48 SHIM_COMMAND`: the shim (and its app) may hold 48 descriptors.
fn with_48_fds(cmd: Command) -> Command {
    let mut wrapped = Command::new("prlimit");
    wrapped
        .arg("--nofile=48:48")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    wrapped
}

/// `--grace GRACE ... husk-helper crowd 3 CROWD CLEANUP DIR`.
fn crowd_args(grace: &str, cleanup: &str, dir: &std::path::Path) -> Vec<String> {
    let h = helper().display().to_string();
    let crowd = CROWD.to_string();
    let dir = dir.display().to_string();
    let args = [
        "--grace",
        grace,
        "--diag-socket",
        "off",
        "--",
        &h,
        "crowd",
        "3",
        &crowd,
        cleanup,
        &dir,
    ];
    args.iter().map(|a| a.to_string()).collect()
}

/// The pids of the crowd's orphans that reached `stage` ("started", "done").
fn crowd_reached(dir: &std::path::Path, stage: &str) -> Vec<i32> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(&format!("{stage}-"))?.parse().ok())
        .collect()
}

/// `shim ARGS` as a plain child limited to 48 descriptors, to completion. No pipes: the
/// leftovers would hold them, and waiting for their end would wait for the leftovers rather
/// than for the shim.
fn subreaper_with_48_fds(args: &[String]) -> Option<i32> {
    use std::process::Stdio;
    let mut cmd = with_48_fds(Command::new(shim()));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    finish(cmd.spawn().unwrap(), LIMIT).code
}

#[test]
fn more_leftovers_than_the_shim_has_descriptors_still_get_their_grace_period() {
    if !require_root("more_leftovers_than_the_shim_has_descriptors_still_get_their_grace_period") {
        return;
    }
    // As PID 1: shutdown watches leftovers through pidfds and lists them through /proc; with
    // more leftovers than descriptors, both must still work, and the shim must not take "cannot
    // read /proc" for "nothing left" (exiting would SIGKILL the namespace mid-cleanup).
    let dir = scratch("crowd-pid1");
    let args = crowd_args("30s", "300", &dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = with_48_fds(pid1_command(&args));
    cmd.stdin(std::process::Stdio::null());
    let out = run(cmd, LIMIT);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert_eq!(
        crowd_reached(&dir, "done").len(),
        CROWD,
        "leftovers killed before the end of their cleanup: {}",
        out.stderr
    );

    // As a subreaper, exiting early would leave them running with no one to wait for them.
    let dir = scratch("crowd-subreaper");
    assert_eq!(subreaper_with_48_fds(&crowd_args("30s", "300", &dir)), Some(3));
    assert_eq!(
        crowd_reached(&dir, "done").len(),
        CROWD,
        "the shim exited before its leftovers"
    );

    // And leftovers that ignore SIGTERM are all found and killed when the grace period ends.
    let dir = scratch("crowd-ignore");
    assert_eq!(subreaper_with_48_fds(&crowd_args("1s", "never", &dir)), Some(3));
    let started = crowd_reached(&dir, "started");
    assert!(!started.is_empty());
    let alive: Vec<i32> = started
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|(state, _)| state != 'Z'))
        .collect();
    assert_eq!(alive, Vec::<i32>::new(), "leftovers outlived the shim");
}
