//! `shim`: the PID 1 of a distroless image. [`run`] reads as the checklist of start-up steps
//! in their real order; each step lives in its own module. The binary (`main.rs`) is only the
//! C entry point; the library exists so that the parsers can be fuzzed and tested on their own.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod config;
mod confine_self;
mod diag;
mod exit;
mod logging;
pub mod options;
mod plan;
pub mod policy;
mod procs;
mod shutdown;
pub mod signals;
mod spawn;
mod supervise;
mod sys;

use std::ffi::OsString;
use std::io::Write;
use std::time::Instant;

use config::{Config, Request, Subreaper};
use exit::AppExit;
use plan::{Plan, PlanError};
use spawn::Spawned;

/// Runs the shim with its command line; returns the exit status.
pub fn run(args: Vec<OsString>) -> u8 {
    let started = Instant::now();
    // First of all: from now on every signal waits in the queue until the child exists.
    let original_mask = match sys::block_all_signals() {
        Ok(mask) => mask,
        Err(e) => return fatal(&format!("signals: cannot block signals: {}", describe_io(&e))),
    };
    let parent_at_start = nix::unistd::getppid();

    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let config = match config::load(args.get(1..).unwrap_or_default(), &env) {
        Ok(Request::Run(config)) => *config,
        Ok(Request::Help) => return print_stdout(&options::help_text()),
        Ok(Request::Version) => return print_stdout(&format!("shim {}\n", env!("CARGO_PKG_VERSION"))),
        Err(e) => return fatal(&format!("config: {e}")),
    };
    logging::init(config.log);

    let remap = config.init.remap_exit.clone();
    let final_status = move |status: u8| config::remap_exit(&remap, status);

    let diag_config = match diag::DiagConfig::from_config(&config) {
        Ok(d) => d,
        Err(message) => return final_status(fatal(&message)),
    };
    let check = config.check;
    let mut termination_log = exit::TerminationLog::find(config.init.termination_log.as_deref());
    let mut plan = match Plan::prepare(config, original_mask) {
        Ok(plan) => plan,
        Err(PlanError::Command(exit)) => {
            tracing::error!("{}", PlanError::Command(exit.clone()));
            if !check {
                record_exit(termination_log.as_mut(), &exit);
            }
            return final_status(exit.status());
        }
        Err(PlanError::Invalid(message)) => return final_status(fatal(&message)),
    };
    if check {
        let json = serde_json::to_string_pretty(&plan.to_json()).unwrap_or_default();
        return print_stdout(&format!("{json}\n"));
    }

    if let Err(message) = become_init(&plan.config, parent_at_start) {
        return final_status(fatal(&message));
    }
    // Created before the spawn so that a failure here stops everything with 125, not after
    // the app has started.
    let mut sup = match supervise::Supervisor::new(&plan.config.init, started) {
        Ok(sup) => sup,
        Err(e) => {
            return final_status(fatal(&format!(
                "supervise: cannot set up signalfd and epoll: {}",
                describe_io(&e)
            )))
        }
    };

    // What the diagnostics socket reports about the app, taken before the plan is consumed.
    let mut policy_description = serde_json::Map::new();
    plan.policy.describe(&mut policy_description);
    let argv: Vec<String> = plan
        .config
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();

    let spawned = spawn::spawn(&mut plan);
    // Phase rule: from here on the app may be running. PID 1 must not bail out; it logs and
    // carries on, and it returns the app's status.
    let Plan {
        config, exec, policy, ..
    } = plan;
    drop((exec, policy));
    let child = match spawned {
        Ok(Spawned::Running(pid)) => pid,
        Ok(Spawned::Failed(exit)) => {
            tracing::error!("{}", exit.describe());
            record_exit(termination_log.as_mut(), &exit);
            return final_status(exit.status());
        }
        Err(e) => return final_status(fatal(&e.to_string())),
    };
    sup.set_child(child);
    after_spawn_hygiene(&sup);
    // After the clean-up of inherited descriptors, which would close the server's. A socket
    // that cannot be created is a warning: the app runs without diagnostics.
    let server = diag_config.and_then(|diag_config| {
        let app = diag::AppInfo {
            argv,
            policy: serde_json::Value::Object(policy_description),
            mode: init_mode(),
        };
        diag::Server::start(diag_config, app)
    });
    // Last, once the socket exists and the termination log is open: binding a socket and
    // opening a file for writing are among the things the shim gives up.
    if let Some(log) = termination_log.as_mut() {
        log.open_ahead();
    }
    let confinement = confine_self::confine();
    if let Some(mut server) = server {
        server.set_shim_policy(confinement.describe());
        sup.attach_diag(server);
    }

    let app_exit = sup.run_until_app_exits();
    record_exit(termination_log.as_mut(), &app_exit);
    shutdown::drain(&mut sup, config.init.grace);
    if app_exit.is_failure() && !config.init.hold_on_failure.is_zero() {
        shutdown::hold(&mut sup, config.init.hold_on_failure);
    }
    tracing::debug!(
        "exiting with status {} ({} processes reaped)",
        final_status(app_exit.status()),
        sup.stats.reaped
    );
    final_status(app_exit.status())
}

/// Subreaper and parent-death signal: the shim's own relation to the processes around it.
fn become_init(config: &Config, parent_at_start: nix::unistd::Pid) -> Result<(), String> {
    let pid1 = std::process::id() == 1;
    let subreaper = match config.init.subreaper {
        Subreaper::Off => false,
        Subreaper::On => true,
        Subreaper::Auto => {
            if !pid1 {
                tracing::warn!(
                    "not running as PID 1: becoming a child subreaper so orphans are still reaped \
                     (run the shim as the container's ENTRYPOINT, or --subreaper off to silence this)"
                );
            }
            !pid1
        }
    };
    if subreaper {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| format!("subreaper: prctl(PR_SET_CHILD_SUBREAPER): {}", e.desc()))?;
    }
    if let Some(sig) = config.init.pdeathsig {
        sys::set_parent_death_signal(sig.number()).map_err(|e| format!("pdeathsig: prctl: {}", describe_io(&e)))?;
        // The parent may have died before the prctl took effect: then act as if the signal had
        // arrived. It is blocked, so it waits in the queue and is forwarded once the child runs.
        if nix::unistd::getppid() != parent_at_start {
            tracing::warn!("pdeathsig: the parent exited before the shim started watching it; raising {sig}");
            let _ = sys::kill(std::process::id() as i32, sig.number());
        }
    }
    Ok(())
}

/// How the shim relates to the processes around it, for the diagnostics socket.
fn init_mode() -> &'static str {
    if std::process::id() == 1 {
        "pid1"
    } else if nix::sys::prctl::get_child_subreaper().unwrap_or(false) {
        "subreaper"
    } else {
        "plain"
    }
}

/// What PID 1 lets go of once the child runs: inherited descriptors (the child has them),
/// stdin and stdout (the app's), and its working directory (so it pins no mount).
fn after_spawn_hygiene(sup: &supervise::Supervisor) {
    sys::close_inherited(&sup.own_fds());
    sys::release_stdin_stdout();
    if let Err(e) = std::env::set_current_dir("/") {
        tracing::debug!("chdir /: {}", describe_io(&e));
    }
}

fn record_exit(termination_log: Option<&mut exit::TerminationLog>, exit: &AppExit) {
    if let Some(log) = termination_log {
        log.write(exit);
    }
}

/// Prints the one line a person reads when the shim cannot start the app; returns 125.
fn fatal(message: &str) -> u8 {
    let _ = writeln!(std::io::stderr(), "shim: error: {message}");
    exit::SHIM_FAILED
}

fn print_stdout(text: &str) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => fatal(&format!("stdout: {}", describe_io(&e))),
    }
}

/// An I/O error's cause without Rust's "(os error N)" suffix, as in
/// `cannot open "/data": No such file or directory`.
pub fn describe_io(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}
