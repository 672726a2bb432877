//! Confinement of the app (SPEC.md, "Confinement of the child").
//!
//! Two halves. [`prepare`] runs in the parent before fork: it parses and checks every value,
//! reads /etc/passwd and /etc/group, opens the Landlock paths and builds the ruleset, compiles
//! the seccomp program and lays out every array the child will hand to the kernel. Anything
//! wrong there is a [`PolicyError`] and the app is never started (fail closed).
//!
//! [`Policy::apply_in_child`] runs between fork and exec. It makes raw system calls only (no
//! allocation, no file reading, no locks, no logging), in this order:
//!
//! 1. rlimits, while the child still has CAP_SYS_RESOURCE to raise a hard limit;
//! 2. umask;
//! 3. bounding set: drop every capability not kept (needs CAP_SETPCAP, still held);
//! 4. keep-caps: so the permitted set survives the uid change that follows;
//! 5. setgroups, setresgid, setresuid (need CAP_SETGID/CAP_SETUID, still effective);
//! 6. capset: permitted = effective = inheritable = the kept set (keep-caps kept them permitted);
//! 7. ambient: clear, then raise each kept capability, so a non-root app keeps it across exec;
//! 8. no_new_privs: from here exec can never add privileges (setuid bits, file capabilities);
//! 9. Landlock restrict_self (needs no_new_privs, or CAP_SYS_ADMIN);
//! 10. seccomp, last, so the filter does not have to allow the calls above; then exec.

pub mod bpf;
pub mod caps;
pub mod landlock;
pub mod rlimit;
pub mod seccomp;
pub mod user;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::spawn::{ChildFailure, Step};
use crate::sys;

pub use self::caps::{CapKeep, CapPlan};
pub use self::landlock::Landlock;
pub use self::rlimit::Rlimit;
pub use self::seccomp::Seccomp;

/// A policy that cannot be applied: the step (usually the option) and the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub step: String,
    pub cause: String,
}

impl PolicyError {
    fn option(name: &str, cause: impl Into<String>) -> Self {
        PolicyError {
            step: format!("--{name}"),
            cause: cause.into(),
        }
    }

    fn step(step: &str, cause: impl Into<String>) -> Self {
        PolicyError {
            step: step.into(),
            cause: cause.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.cause)
    }
}

impl std::error::Error for PolicyError {}

/// capset(2)'s header and data, laid out as `<linux/capability.h>` has them (version 3).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct rlimit64` for prlimit64(2).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct RawRlimit {
    cur: u64,
    max: u64,
}

/// Everything the child applies, prepared before fork.
pub struct Policy {
    rlimits: Vec<Rlimit>,
    raw_rlimits: Vec<(i32, RawRlimit)>,
    umask: Option<libc::mode_t>,
    caps: CapPlan,
    /// The bounding set can be reduced (the shim holds CAP_SETPCAP).
    bounding_settable: bool,
    cap_data: [CapData; 2],
    kept_caps: Vec<u32>,
    /// uid, gid.
    ids: Option<(u32, u32)>,
    groups: Option<Vec<libc::gid_t>>,
    no_new_privs: bool,
    landlock: Option<Landlock>,
    seccomp: Option<Seccomp>,
}

fn confinement_value<'a>(config: &'a Config, name: &str) -> Option<&'a str> {
    config.settings.value(name)
}

fn given(config: &Config, name: &str) -> bool {
    config.settings.options.contains_key(name)
}

/// Parses, checks and prepares the whole policy. Runs in the parent, before fork.
pub fn prepare(config: &Config, executable: &Path) -> Result<Policy, PolicyError> {
    let settings = &config.settings;

    // Pure parsing first: a typo is reported before anything touches the system.
    let keep = caps::parse_keep(settings.list("cap-keep")).map_err(|e| PolicyError::option("cap-keep", e))?;
    let rlimits = rlimit::parse_all(settings.list("rlimit")).map_err(|e| PolicyError::option("rlimit", e))?;
    let umask = confinement_value(config, "umask")
        .map(rlimit::parse_umask)
        .transpose()
        .map_err(|e| PolicyError::option("umask", e))?;

    let no_new_privs = match (
        settings.flag("no-new-privs"),
        settings.flag("allow-new-privs").unwrap_or(false),
    ) {
        (Some(true), true) => {
            return Err(PolicyError::option(
                "allow-new-privs",
                "contradicts --no-new-privs (give one of them)",
            ))
        }
        (Some(false), _) | (_, true) => false,
        (_, false) => true,
    };

    let (landlock_mode, request, landlock_on) = landlock_request(config)?;
    let profile = seccomp_profile(config)?;

    // Now the parts that read the system.
    let caps_plan = CapPlan::prepare(keep).map_err(|e| PolicyError::option("cap-keep", e))?;
    if !no_new_privs && (profile.is_some() || landlock_on) && !caps_plan.keeps(::caps::Capability::CAP_SYS_ADMIN) {
        let what = match (profile.is_some(), landlock_on) {
            (true, true) => "seccomp and Landlock",
            (true, false) => "seccomp",
            _ => "Landlock",
        };
        return Err(PolicyError::option(
            "allow-new-privs",
            format!(
                "{what} cannot be applied without no_new_privs unless the app keeps CAP_SYS_ADMIN \
                 (add --seccomp off and drop the Landlock options, or --cap-keep SYS_ADMIN)"
            ),
        ));
    }
    for limit in &rlimits {
        check_rlimit(limit).map_err(|e| PolicyError::option("rlimit", e))?;
    }

    let groups_list = given(config, "groups").then(|| settings.list("groups"));
    let identity = user::resolve(
        confinement_value(config, "user"),
        groups_list,
        &mut user::Databases::system(),
    )
    .map_err(|(option, e)| PolicyError::option(option, e))?;
    if identity.ids.is_some() || identity.groups.is_some() {
        let can_setid = ::caps::has_cap(None, ::caps::CapSet::Effective, ::caps::Capability::CAP_SETUID)
            .unwrap_or(false)
            && ::caps::has_cap(None, ::caps::CapSet::Effective, ::caps::Capability::CAP_SETGID).unwrap_or(false);
        if !can_setid {
            return Err(PolicyError::option(
                if identity.ids.is_some() { "user" } else { "groups" },
                "the shim lacks CAP_SETUID/CAP_SETGID, so it cannot change the app's user or groups",
            ));
        }
    }

    let bounding_settable =
        ::caps::has_cap(None, ::caps::CapSet::Effective, ::caps::Capability::CAP_SETPCAP).unwrap_or(false);
    if !caps_plan.bounding_drop.is_empty() && !bounding_settable {
        let bounding = ::caps::read(None, ::caps::CapSet::Bounding).unwrap_or_default();
        let extra = bounding
            .iter()
            .filter(|c| caps_plan.bounding_drop.contains(&u32::from(c.index())))
            .count();
        if extra > 0 {
            if !no_new_privs {
                return Err(PolicyError::step(
                    "capabilities",
                    "the shim lacks CAP_SETPCAP, so it cannot empty the bounding set, and without \
                     no_new_privs the app could regain those capabilities through exec",
                ));
            }
            tracing::warn!(
                "capabilities: the shim lacks CAP_SETPCAP, so the app's bounding set keeps {extra} \
                 capabilities (harmless under no_new_privs: exec cannot grant them; give the shim \
                 CAP_SETPCAP to empty it)"
            );
        }
    }

    let landlock = match landlock_mode {
        Some(mode) if landlock_on => {
            Some(landlock::prepare(mode, request, executable).map_err(|e| PolicyError::step("landlock", e))?)
        }
        _ => None,
    };
    let seccomp = profile
        .map(seccomp::compile)
        .transpose()
        .map_err(|e| PolicyError::step("seccomp", e))?;

    let mask = caps_plan.mask;
    let low = mask as u32;
    let high = (mask >> 32) as u32;
    let cap_data = [
        CapData {
            effective: low,
            permitted: low,
            inheritable: low,
        },
        CapData {
            effective: high,
            permitted: high,
            inheritable: high,
        },
    ];
    let kept_caps = caps_plan.kept_indices().collect();
    let raw_rlimits = rlimits
        .iter()
        .map(|l| {
            (
                l.resource,
                RawRlimit {
                    cur: l.soft,
                    max: l.hard,
                },
            )
        })
        .collect();
    Ok(Policy {
        rlimits,
        raw_rlimits,
        umask,
        caps: caps_plan,
        bounding_settable,
        cap_data,
        kept_caps,
        ids: identity.ids,
        groups: identity.groups,
        no_new_privs,
        landlock,
        seccomp,
    })
}

/// `--landlock`, `--fs-*`, `--tcp-*`, `--landlock-scope`: the mode (None: off), the request,
/// and whether Landlock is on (asked for, not off, and not empty).
fn landlock_request(config: &Config) -> Result<(Option<landlock::Mode>, landlock::Request, bool), PolicyError> {
    let settings = &config.settings;
    let landlock_mode = match confinement_value(config, "landlock").map(|v| v.trim().to_ascii_lowercase()) {
        None => Some(landlock::Mode::BestEffort),
        Some(v) => match v.as_str() {
            "best-effort" | "besteffort" => Some(landlock::Mode::BestEffort),
            "enforce" => Some(landlock::Mode::Enforce),
            "off" => None,
            other => {
                return Err(PolicyError::option(
                    "landlock",
                    format!("expected best-effort, enforce or off, got {other:?}"),
                ))
            }
        },
    };
    let mut request = landlock::Request::default();
    for (name, kind) in [
        ("fs-ro", landlock::FsKind::Ro),
        ("fs-rx", landlock::FsKind::Rx),
        ("fs-rw", landlock::FsKind::Rw),
    ] {
        if given(config, name) && settings.list(name).is_empty() {
            return Err(PolicyError::option(name, "empty path"));
        }
        for path in settings.list(name) {
            if path.trim().is_empty() {
                return Err(PolicyError::option(name, "empty path"));
            }
            request.fs.push((kind, PathBuf::from(path)));
        }
    }
    for name in ["tcp-bind", "tcp-connect"] {
        if given(config, name) && settings.list(name).is_empty() {
            return Err(PolicyError::option(name, "empty port list"));
        }
    }
    for port in settings.list("tcp-bind") {
        request
            .bind
            .push(landlock::parse_port(port).map_err(|e| PolicyError::option("tcp-bind", e))?);
    }
    for port in settings.list("tcp-connect") {
        request
            .connect
            .push(landlock::parse_port(port).map_err(|e| PolicyError::option("tcp-connect", e))?);
    }
    let scope_given = given(config, "landlock-scope");
    if scope_given {
        request.scopes = landlock::parse_scopes(settings.list("landlock-scope"))
            .map_err(|e| PolicyError::option("landlock-scope", e))?;
    }
    let landlock_asked = request.restricts_fs() || request.restricts_tcp() || scope_given;
    if landlock_mode.is_none() && landlock_asked {
        let which = ["fs-ro", "fs-rx", "fs-rw", "tcp-bind", "tcp-connect", "landlock-scope"]
            .into_iter()
            .filter(|n| given(config, n))
            .map(|n| format!("--{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(PolicyError::option(
            "landlock",
            format!("off contradicts {which}, which need Landlock"),
        ));
    }
    if landlock_asked && !scope_given {
        request.scopes = vec![landlock::ScopeName::AbstractUnix, landlock::ScopeName::Signal];
    }
    let landlock_on = landlock_mode.is_some() && !request.is_empty();
    if given(config, "landlock") && landlock_mode == Some(landlock::Mode::Enforce) && !landlock_asked {
        return Err(PolicyError::option(
            "landlock",
            "enforce asks for nothing: add --fs-*, --tcp-* or --landlock-scope rules",
        ));
    }

    Ok((landlock_mode, request, landlock_on))
}

/// `--seccomp` and `--seccomp-action`: the profile, None for off.
fn seccomp_profile(config: &Config) -> Result<Option<seccomp::Profile>, PolicyError> {
    let seccomp_choice = confinement_value(config, "seccomp")
        .unwrap_or("default")
        .trim()
        .to_string();
    let action_given = confinement_value(config, "seccomp-action");
    let action = action_given
        .map(seccomp::DenyAction::parse)
        .transpose()
        .map_err(|e| PolicyError::option("seccomp-action", e))?
        .unwrap_or(seccomp::DenyAction::Errno);
    Ok(match seccomp_choice.as_str() {
        "" => return Err(PolicyError::option("seccomp", "empty value (default, off or a PATH)")),
        "off" => {
            if action_given.is_some() {
                return Err(PolicyError::option(
                    "seccomp-action",
                    "has no effect with --seccomp off",
                ));
            }
            None
        }
        "default" => Some(seccomp::Profile::Default(action)),
        path => {
            if action_given.is_some() {
                return Err(PolicyError::option(
                    "seccomp-action",
                    "does not apply to a profile file (its own actions apply)",
                ));
            }
            Some(seccomp::Profile::File(path.to_string()))
        }
    })
}

/// A hard limit above the current one needs CAP_SYS_RESOURCE: refuse now rather than in the child.
fn check_rlimit(limit: &Rlimit) -> Result<(), String> {
    let mut current = RawRlimit { cur: 0, max: 0 };
    // SAFETY: prlimit64 on our own pid (0) with no new limit only writes the current one into
    // `current`, a live RawRlimit with the kernel's layout.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            limit.resource,
            std::ptr::null::<RawRlimit>(),
            &mut current as *mut RawRlimit,
        )
    };
    if rc != 0 {
        return Err(format!("cannot read the current {} limit", limit.name));
    }
    let can_raise =
        ::caps::has_cap(None, ::caps::CapSet::Effective, ::caps::Capability::CAP_SYS_RESOURCE).unwrap_or(false);
    if limit.hard > current.max && !can_raise {
        return Err(format!(
            "{}: the hard limit {} is above the current {} and the shim lacks CAP_SYS_RESOURCE",
            limit.name,
            show_limit(limit.hard),
            show_limit(current.max)
        ));
    }
    Ok(())
}

fn show_limit(v: u64) -> String {
    if v == rlimit::UNLIMITED {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

fn limit_json(v: u64) -> Value {
    if v == rlimit::UNLIMITED {
        json!("unlimited")
    } else {
        json!(v)
    }
}

/// Turns a raw system call's return value into the step's failure.
fn check(step: Step, rc: libc::c_long) -> Result<(), ChildFailure> {
    if rc < 0 {
        Err(ChildFailure::new(step, sys::errno()))
    } else {
        Ok(())
    }
}

impl Policy {
    /// The child's steps, in the order the module documentation gives and explains. System
    /// calls only: everything used here was built by [`prepare`].
    pub fn apply_in_child(&self) -> Result<(), ChildFailure> {
        for (resource, limit) in &self.raw_rlimits {
            // SAFETY: prlimit64 on the calling process (pid 0); `limit` is a live RawRlimit with
            // the kernel's layout, read during the call; the old-limit pointer is null.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_prlimit64,
                    0,
                    *resource,
                    limit as *const RawRlimit,
                    std::ptr::null_mut::<RawRlimit>(),
                )
            };
            check(Step::Rlimits, rc)?;
        }
        if let Some(mask) = self.umask {
            // SAFETY: umask only sets the process's file creation mask; it cannot fail.
            unsafe { libc::umask(mask) };
        }
        let drop_caps = matches!(self.caps.keep, CapKeep::Only(_));
        if drop_caps && self.bounding_settable {
            for &cap in &self.caps.bounding_drop {
                // SAFETY: PR_CAPBSET_READ takes a capability number and reads no memory.
                let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
                check(Step::BoundingSet, present as libc::c_long)?;
                if present == 1 {
                    // SAFETY: PR_CAPBSET_DROP takes a capability number and reads no memory.
                    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
                    check(Step::BoundingSet, rc as libc::c_long)?;
                }
            }
        }
        if drop_caps && self.ids.is_some() {
            // SAFETY: PR_SET_KEEPCAPS takes an integer flag and reads no memory; exec resets it.
            let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1 as libc::c_ulong, 0, 0, 0) };
            check(Step::KeepCaps, rc as libc::c_long)?;
        }
        if let Some(groups) = &self.groups {
            // SAFETY: `groups` is a live Vec of gid_t built before fork; the kernel copies
            // `len` entries from it. The raw call avoids the C library's cross-thread setxid
            // machinery, which takes locks.
            let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
            check(Step::Groups, rc)?;
        }
        if let Some((uid, gid)) = self.ids {
            // SAFETY: setresgid takes three integers and touches no memory of ours.
            check(Step::SetGid, unsafe {
                libc::syscall(libc::SYS_setresgid, gid, gid, gid)
            })?;
            // SAFETY: setresuid takes three integers and touches no memory of ours.
            check(Step::SetUid, unsafe {
                libc::syscall(libc::SYS_setresuid, uid, uid, uid)
            })?;
        }
        if drop_caps {
            let mut header = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            // SAFETY: `header` is a live version-3 header on the stack and `cap_data` two
            // live CapData entries, as capset(2) requires for version 3; the kernel only reads
            // the data (it may write the preferred version into the header, which is ours).
            let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, self.cap_data.as_ptr()) };
            check(Step::Capabilities, rc)?;
            // SAFETY: PR_CAP_AMBIENT with CLEAR_ALL takes only integers.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                    0,
                    0,
                    0,
                )
            };
            check(Step::Ambient, rc as libc::c_long)?;
            for &cap in &self.kept_caps {
                // SAFETY: PR_CAP_AMBIENT with RAISE takes a capability number and reads no memory.
                let rc = unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    )
                };
                check(Step::Ambient, rc as libc::c_long)?;
            }
        }
        if self.no_new_privs {
            // SAFETY: PR_SET_NO_NEW_PRIVS takes an integer flag and reads no memory.
            let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
            check(Step::NoNewPrivs, rc as libc::c_long)?;
        }
        if let Some(fd) = self.landlock.as_ref().and_then(Landlock::ruleset_fd) {
            // SAFETY: `fd` is the ruleset descriptor the parent built and still owns (it is
            // closed only after the spawn); restrict_self takes it and a flags integer.
            let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0 as libc::c_uint) };
            check(Step::Landlock, rc)?;
        }
        if let Some(seccomp) = &self.seccomp {
            let prog = libc::sock_fprog {
                len: seccomp.program.len() as libc::c_ushort,
                filter: seccomp.program.as_ptr() as *mut libc::sock_filter,
            };
            // SAFETY: `prog` points into `seccomp.program`, a live Vec built before fork, for
            // exactly its length (checked ≤ 4096 then); the kernel copies the program before
            // returning and keeps no pointer into it.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0 as libc::c_uint,
                    &prog as *const libc::sock_fprog,
                )
            };
            check(Step::Seccomp, rc)?;
        }
        Ok(())
    }

    /// The resolved policy under the config file's keys, for `--check` and the diagnostics
    /// socket ("the policy the shim applied").
    pub fn describe(&self, map: &mut Map<String, Value>) {
        map.insert(
            "user".into(),
            self.ids.map_or(Value::Null, |(u, g)| json!(format!("{u}:{g}"))),
        );
        map.insert("groups".into(), self.groups.as_ref().map_or(Value::Null, |g| json!(g)));
        map.insert("cap-keep".into(), json!(self.caps.names()));
        map.insert("no-new-privs".into(), json!(self.no_new_privs));
        map.insert("allow-new-privs".into(), json!(!self.no_new_privs));
        let mut limits = Map::new();
        for l in &self.rlimits {
            limits.insert(
                l.name.into(),
                json!({"soft": limit_json(l.soft), "hard": limit_json(l.hard)}),
            );
        }
        map.insert("rlimit".into(), Value::Object(limits));
        map.insert(
            "umask".into(),
            self.umask.map_or(Value::Null, |m| json!(format!("{m:04o}"))),
        );
        let paths = |kind: landlock::FsKind| -> Value {
            let list: Vec<String> = self
                .landlock
                .iter()
                .flat_map(|l| l.request.fs.iter())
                .filter(|(k, _)| *k == kind)
                .map(|(_, p)| p.display().to_string())
                .collect();
            json!(list)
        };
        map.insert("fs-ro".into(), paths(landlock::FsKind::Ro));
        map.insert("fs-rx".into(), paths(landlock::FsKind::Rx));
        map.insert("fs-rw".into(), paths(landlock::FsKind::Rw));
        let ll = self.landlock.as_ref();
        map.insert(
            "tcp-bind".into(),
            json!(ll.map(|l| l.request.bind.clone()).unwrap_or_default()),
        );
        map.insert(
            "tcp-connect".into(),
            json!(ll.map(|l| l.request.connect.clone()).unwrap_or_default()),
        );
        map.insert(
            "landlock-scope".into(),
            json!(ll
                .map(|l| l.request.scopes.iter().map(|s| s.name()).collect::<Vec<_>>())
                .unwrap_or_default()),
        );
        map.insert(
            "landlock".into(),
            match ll {
                Some(l) => l.describe(),
                None => json!({"mode": "off", "abi": landlock::kernel_abi(), "enforced": false, "not-enforced": []}),
            },
        );
        let (profile, action) = match &self.seccomp {
            Some(s) => s.describe(),
            None => (json!("off"), Value::Null),
        };
        map.insert("seccomp".into(), profile);
        map.insert("seccomp-action".into(), action);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn prepare_args(args: &[&str]) -> Result<Policy, PolicyError> {
        let mut list: Vec<OsString> = args.iter().map(OsString::from).collect();
        list.push("--".into());
        list.push("/bin/true".into());
        let config = match crate::config::load(&list, &[]).expect("the options themselves parse") {
            crate::config::Request::Run(c) => *c,
            _ => panic!("expected a run request"),
        };
        prepare(&config, Path::new("/bin/true"))
    }

    #[test]
    fn defaults_follow_the_spec() {
        let policy = prepare_args(&[]).unwrap();
        assert!(policy.no_new_privs);
        assert_eq!(policy.caps.keep, CapKeep::Only(vec![]));
        assert!(policy.landlock.is_none(), "Landlock only when a rule asks for it");
        assert!(matches!(
            policy.seccomp.as_ref().map(|s| &s.profile),
            Some(seccomp::Profile::Default(seccomp::DenyAction::Errno))
        ));
        assert_eq!(policy.ids, None);
        assert_eq!(policy.groups, None);
        let mut map = Map::new();
        policy.describe(&mut map);
        for key in [
            "user",
            "groups",
            "cap-keep",
            "no-new-privs",
            "allow-new-privs",
            "rlimit",
            "umask",
            "fs-ro",
            "fs-rx",
            "fs-rw",
            "tcp-bind",
            "tcp-connect",
            "landlock-scope",
            "landlock",
            "seccomp",
            "seccomp-action",
        ] {
            assert!(map.contains_key(key), "{key}");
        }
        assert_eq!(map["seccomp"], "default");
        assert_eq!(map["landlock"]["mode"], "off");
    }

    #[test]
    fn incoherent_or_malformed_policies_are_refused_before_fork() {
        for (args, needle) in [
            (
                &["--no-new-privs", "--allow-new-privs"][..],
                "--allow-new-privs: contradicts",
            ),
            (&["--allow-new-privs"], "--allow-new-privs: seccomp cannot be applied"),
            (
                &["--allow-new-privs", "--seccomp", "off", "--tcp-bind", "80"],
                "Landlock cannot",
            ),
            (&["--cap-keep", "all,KILL"], "--cap-keep"),
            (&["--cap-keep", "NOPE"], "unknown capability"),
            (&["--rlimit", "stack=2:1"], "--rlimit"),
            (&["--umask", "8"], "--umask"),
            (
                &["--tcp-bind", "80", "--landlock", "off"],
                "--landlock: off contradicts --tcp-bind",
            ),
            (&["--landlock", "enforce"], "asks for nothing"),
            (&["--landlock-scope", "abstract"], "unknown scope"),
            (&["--seccomp", "off", "--seccomp-action", "log"], "--seccomp-action"),
            (
                &["--seccomp", "/nonexistent/p.json", "--seccomp-action", "log"],
                "--seccomp-action",
            ),
            (&["--seccomp", "/nonexistent/p.json"], "seccomp: cannot open"),
            (
                &["--fs-rx", "/nonexistent-husk"],
                "landlock: cannot open \"/nonexistent-husk\"",
            ),
        ] {
            let e = prepare_args(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} was accepted"));
            assert!(e.to_string().contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn coherent_combinations_are_accepted() {
        let p = prepare_args(&["--allow-new-privs", "--seccomp", "off"]).unwrap();
        assert!(!p.no_new_privs);
        let p = prepare_args(&["--no-new-privs=false", "--seccomp", "off"]).unwrap();
        assert!(!p.no_new_privs);
        let p = prepare_args(&["--landlock-scope", "none"]).unwrap();
        assert!(p.landlock.is_none(), "nothing to restrict");
        let p = prepare_args(&["--seccomp-action", "kill", "--rlimit", "core=0", "--umask", "077"]).unwrap();
        assert_eq!(p.umask, Some(0o77));
        assert_eq!(p.rlimits.len(), 1);
    }
}
