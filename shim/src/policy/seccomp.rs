//! seccomp: the built-in `default` profile or a seccompiler JSON file, compiled to BPF before
//! fork. The child installs the finished program with one `seccomp(2)` call.
//!
//! The default profile is laid out by [`super::bpf`] as a binary search (cheap to attach); a
//! file is compiled by seccompiler. Both start with the same prefix: a call from a foreign
//! architecture kills the process, and an x32 call (number with bit 0x40000000) gets the deny
//! action (a file's own actions cannot name x32 calls, so there it is killed). With the default
//! profile `clone3` gets ENOSYS so that C libraries fall back to `clone`, whose flags can be
//! checked.

use std::collections::BTreeMap;
use std::io::Read;

use seccompiler::{BpfProgram, TargetArch};

use super::bpf::{self, Action, ArgTest, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_LOG};
use serde_json::{json, Value};

/// A seccomp profile file larger than this is refused before parsing.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// The architecture the filters are built for: the one the shim runs on.
#[cfg(target_arch = "x86_64")]
pub const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
pub const ARCH: TargetArch = TargetArch::aarch64;
/// `AUDIT_ARCH_*` of [`ARCH`], as `seccomp_data.arch` carries it.
#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH: u32 = 0xC000_00B7;
/// Only x86_64 has x32 calls to refuse.
const HAS_X32: bool = cfg!(target_arch = "x86_64");

/// Calls the libc crate has no number for on every target. From 424 on, numbers are the same on
/// every architecture.
const SYS_STATMOUNT: libc::c_long = 457;
const SYS_LISTMOUNT: libc::c_long = 458;
const SYS_LSM_SET_SELF_ATTR: libc::c_long = 460;
#[cfg(target_arch = "x86_64")]
const SYS_KEXEC_FILE_LOAD: libc::c_long = libc::SYS_kexec_file_load;
#[cfg(target_arch = "aarch64")]
const SYS_KEXEC_FILE_LOAD: libc::c_long = 294;

/// What Docker's default profile denies to a container with no added capabilities (the calls
/// that exist on every architecture husk builds for; [`DEFAULT_DENIED_X86_64`] has the rest),
/// plus ptrace, process_vm_readv and process_vm_writev. Calls that Docker's list only lacks because they are newer than it, and that are harmless (fchmodat2, futex_wait,
/// futex_wake, futex_requeue, map_shadow_stack, cachestat, mseal, uretprobe,
/// lsm_get_self_attr, lsm_list_modules) stay allowed: C libraries fall back only on ENOSYS, so
/// denying them with EPERM would break ordinary programs. docs/confinement.md lists the same.
pub const DEFAULT_DENIED: &[(&str, libc::c_long)] = &[
    ("acct", libc::SYS_acct),
    ("add_key", libc::SYS_add_key),
    ("bpf", libc::SYS_bpf),
    ("clock_settime", libc::SYS_clock_settime),
    ("delete_module", libc::SYS_delete_module),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("finit_module", libc::SYS_finit_module),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fsopen", libc::SYS_fsopen),
    ("fspick", libc::SYS_fspick),
    ("get_mempolicy", libc::SYS_get_mempolicy),
    ("init_module", libc::SYS_init_module),
    ("kcmp", libc::SYS_kcmp),
    ("kexec_file_load", SYS_KEXEC_FILE_LOAD),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("listmount", SYS_LISTMOUNT),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("lsm_set_self_attr", SYS_LSM_SET_SELF_ATTR),
    ("mbind", libc::SYS_mbind),
    ("migrate_pages", libc::SYS_migrate_pages),
    ("mount", libc::SYS_mount),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("move_mount", libc::SYS_move_mount),
    ("move_pages", libc::SYS_move_pages),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("open_tree", libc::SYS_open_tree),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("pivot_root", libc::SYS_pivot_root),
    ("process_madvise", libc::SYS_process_madvise),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("ptrace", libc::SYS_ptrace),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("reboot", libc::SYS_reboot),
    ("request_key", libc::SYS_request_key),
    ("set_mempolicy", libc::SYS_set_mempolicy),
    ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
    ("setdomainname", libc::SYS_setdomainname),
    ("sethostname", libc::SYS_sethostname),
    ("setns", libc::SYS_setns),
    ("settimeofday", libc::SYS_settimeofday),
    ("statmount", SYS_STATMOUNT),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("syslog", libc::SYS_syslog),
    ("umount2", libc::SYS_umount2),
    ("unshare", libc::SYS_unshare),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("vhangup", libc::SYS_vhangup),
];

/// Docker's denied calls that only x86_64 has (numbers where the libc crate has none: calls
/// removed from Linux long ago).
#[cfg(target_arch = "x86_64")]
pub const DEFAULT_DENIED_X86_64: &[(&str, libc::c_long)] = &[
    ("_sysctl", libc::SYS__sysctl),
    ("afs_syscall", libc::SYS_afs_syscall),
    ("create_module", 174),
    ("get_kernel_syms", 177),
    ("getpmsg", libc::SYS_getpmsg),
    ("ioperm", libc::SYS_ioperm),
    ("iopl", libc::SYS_iopl),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("putpmsg", libc::SYS_putpmsg),
    ("query_module", 178),
    ("security", libc::SYS_security),
    ("sysfs", libc::SYS_sysfs),
    ("tuxcall", libc::SYS_tuxcall),
    ("uselib", libc::SYS_uselib),
    ("ustat", libc::SYS_ustat),
    ("vserver", libc::SYS_vserver),
];
#[cfg(not(target_arch = "x86_64"))]
pub const DEFAULT_DENIED_X86_64: &[(&str, libc::c_long)] = &[];

/// Namespace flags that `clone` may not carry: Docker's mask 0x7E020000 (CLONE_NEWNS,
/// CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET).
const CLONE_NAMESPACE_FLAGS: u32 = 0x7E02_0000;
/// The only `personality` values Docker allows (PER_LINUX, PER_LINUX32, UNAME26 variants, query).
const PERSONALITY_ALLOWED: &[u32] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];
const AF_VSOCK: u32 = 40;

/// What a denied call gets with the built-in profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyAction {
    Errno,
    Kill,
    Log,
}

impl DenyAction {
    pub fn parse(text: &str) -> Result<DenyAction, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "errno" => Ok(DenyAction::Errno),
            "kill" => Ok(DenyAction::Kill),
            "log" => Ok(DenyAction::Log),
            other => Err(format!("expected errno, kill or log, got {other:?}")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DenyAction::Errno => "errno",
            DenyAction::Kill => "kill",
            DenyAction::Log => "log",
        }
    }

    fn ret(self) -> u32 {
        match self {
            DenyAction::Errno => RET_ERRNO | libc::EPERM as u32,
            DenyAction::Kill => RET_KILL_PROCESS,
            DenyAction::Log => RET_LOG,
        }
    }
}

/// Which profile, as the user asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Profile {
    Default(DenyAction),
    File(String),
}

/// A compiled program, ready for `seccomp(SECCOMP_SET_MODE_FILTER)`.
pub struct Seccomp {
    pub profile: Profile,
    pub program: Vec<libc::sock_filter>,
}

impl Seccomp {
    pub fn describe(&self) -> (Value, Value) {
        match &self.profile {
            Profile::Default(action) => (json!("default"), json!(action.name())),
            Profile::File(path) => (json!(path), Value::Null),
        }
    }
}

pub fn compile(profile: Profile) -> Result<Seccomp, String> {
    let program = match &profile {
        Profile::Default(action) => default_filter(*action)
            .compile()
            .map_err(|e| format!("cannot compile the default profile: {e}"))?,
        Profile::File(path) => {
            let body = load_file(path)?;
            // The file's own actions apply; an x32 call it could not have named is killed.
            let mut program = bpf::prefix(AUDIT_ARCH, HAS_X32.then_some(RET_KILL_PROCESS))?;
            program.extend(body.iter().map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            }));
            program
        }
    };
    if program.len() > bpf::MAX_INSTRUCTIONS {
        return Err(format!(
            "the compiled filter has {} instructions, more than the kernel's {}",
            program.len(),
            bpf::MAX_INSTRUCTIONS
        ));
    }
    Ok(Seccomp { profile, program })
}

/// The default profile as rules: Docker's denied calls, clone with namespace flags, personality
/// outside Docker's values and AF_VSOCK sockets get the deny action; clone3 gets ENOSYS.
pub fn default_filter(action: DenyAction) -> bpf::Filter {
    let deny = action.ret();
    let mut calls: BTreeMap<u32, Action> = DEFAULT_DENIED
        .iter()
        .chain(DEFAULT_DENIED_X86_64)
        .map(|&(_, nr)| (nr as u32, Action::Return(deny)))
        .collect();
    calls.insert(
        libc::SYS_clone as u32,
        Action::Check {
            arg: 0,
            test: ArgTest::AnyBit(CLONE_NAMESPACE_FLAGS),
            then: deny,
            otherwise: RET_ALLOW,
        },
    );
    calls.insert(libc::SYS_clone3 as u32, Action::Return(RET_ERRNO | libc::ENOSYS as u32));
    calls.insert(
        libc::SYS_personality as u32,
        Action::Check {
            arg: 0,
            test: ArgTest::OneOf(PERSONALITY_ALLOWED.to_vec()),
            then: RET_ALLOW,
            otherwise: deny,
        },
    );
    calls.insert(
        libc::SYS_socket as u32,
        Action::Check {
            arg: 0,
            test: ArgTest::OneOf(vec![AF_VSOCK]),
            then: deny,
            otherwise: RET_ALLOW,
        },
    );
    bpf::Filter {
        audit_arch: AUDIT_ARCH,
        x32: HAS_X32.then_some(deny),
        calls,
        default: RET_ALLOW,
    }
}

/// Reads a seccompiler JSON file: one filter (any name), or several of which `app` is used.
fn load_file(path: &str) -> Result<BpfProgram, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {path:?}: {}", crate::describe_io(&e)))?;
    let mut text = Vec::new();
    file.take(MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read {path:?}: {}", crate::describe_io(&e)))?;
    if text.len() as u64 > MAX_PROFILE_BYTES {
        return Err(format!("{path:?} is larger than {MAX_PROFILE_BYTES} bytes"));
    }
    parse_profile(path, &text)
}

pub fn parse_profile(path: &str, text: &[u8]) -> Result<BpfProgram, String> {
    let mut filters =
        seccompiler::compile_from_json(text, ARCH).map_err(|e| format!("{path:?} does not compile: {e}"))?;
    if filters.len() == 1 {
        return Ok(filters.into_values().next().unwrap_or_default());
    }
    if let Some(app) = filters.remove("app") {
        return Ok(app);
    }
    let mut names: Vec<String> = filters.into_keys().collect();
    names.sort();
    Err(format!(
        "{path:?} holds {} filters ({}) and none is named \"app\"",
        names.len(),
        names.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_does_what_docker_does_for_every_action() {
        let nr = |n: libc::c_long| n as u32;
        let args = |a0: u64| [a0, 0, 0, 0, 0, 0];
        for action in [DenyAction::Errno, DenyAction::Kill, DenyAction::Log] {
            let program = compile(Profile::Default(action)).unwrap().program;
            let deny = action.ret();
            let run = |n: u32, a: [u64; 6]| bpf::run(&program, AUDIT_ARCH, n, &a);
            assert_eq!(run(nr(libc::SYS_ptrace), args(0)), deny);
            assert_eq!(run(nr(libc::SYS_mount), args(0)), deny);
            assert_eq!(run(nr(libc::SYS_getpid), args(0)), RET_ALLOW);
            assert_eq!(run(nr(libc::SYS_execve), args(0)), RET_ALLOW);
            let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
            assert_eq!(run(nr(libc::SYS_clone), args(thread)), RET_ALLOW);
            assert_eq!(run(nr(libc::SYS_clone), args(libc::SIGCHLD as u64)), RET_ALLOW);
            assert_eq!(run(nr(libc::SYS_clone), args(libc::CLONE_NEWUSER as u64)), deny);
            assert_eq!(run(nr(libc::SYS_clone), args(libc::CLONE_NEWNET as u64 | thread)), deny);
            assert_eq!(run(nr(libc::SYS_clone3), args(0)), RET_ERRNO | libc::ENOSYS as u32);
            assert_eq!(run(nr(libc::SYS_personality), args(0)), RET_ALLOW);
            assert_eq!(run(nr(libc::SYS_personality), args(0xffff_ffff)), RET_ALLOW);
            assert_eq!(run(nr(libc::SYS_personality), args(0x0040_0000)), deny);
            assert_eq!(run(nr(libc::SYS_socket), args(libc::AF_VSOCK as u64)), deny);
            assert_eq!(run(nr(libc::SYS_socket), args(libc::AF_INET as u64)), RET_ALLOW);
            assert_eq!(
                bpf::run(&program, AUDIT_ARCH ^ 1, nr(libc::SYS_getpid), &args(0)),
                RET_KILL_PROCESS
            );
            if HAS_X32 {
                assert_eq!(run(0x4000_0000 | nr(libc::SYS_getpid), args(0)), deny);
            }
            // And every other number, as the rules say.
            let filter = default_filter(action);
            for n in 0..1024 {
                assert_eq!(run(n, args(0)), filter.verdict(AUDIT_ARCH, n, &args(0)), "call {n}");
            }
        }
    }

    #[test]
    fn deny_list_has_the_calls_the_issue_names_and_no_duplicates() {
        let names: Vec<&str> = DEFAULT_DENIED.iter().map(|(n, _)| *n).collect();
        for must in [
            "mount",
            "ptrace",
            "kexec_load",
            "bpf",
            "unshare",
            "keyctl",
            "process_vm_readv",
            "process_vm_writev",
        ] {
            assert!(names.contains(&must), "{must}");
        }
        let mut numbers: Vec<libc::c_long> = DEFAULT_DENIED
            .iter()
            .chain(DEFAULT_DENIED_X86_64)
            .map(|(_, nr)| *nr)
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), DEFAULT_DENIED.len() + DEFAULT_DENIED_X86_64.len());
        assert_eq!(
            DEFAULT_DENIED.iter().find(|(n, _)| *n == "mount").unwrap().1,
            libc::SYS_mount
        );
        assert_eq!(
            DEFAULT_DENIED.iter().find(|(n, _)| *n == "ptrace").unwrap().1,
            libc::SYS_ptrace
        );
        assert_eq!(
            DEFAULT_DENIED.iter().find(|(n, _)| *n == "keyctl").unwrap().1,
            libc::SYS_keyctl
        );
    }

    #[test]
    fn actions_parse() {
        assert_eq!(DenyAction::parse("KILL"), Ok(DenyAction::Kill));
        assert!(DenyAction::parse("trap").is_err());
    }

    #[test]
    fn profile_files() {
        let one = br#"{"whatever": {"mismatch_action": "allow", "match_action": {"errno": 1},
                       "filter": [{"syscall": "getpid"}]}}"#;
        assert!(!parse_profile("p", one).unwrap().is_empty());
        let two = br#"{"a": {"mismatch_action": "allow", "match_action": "kill_process", "filter": []},
                       "app": {"mismatch_action": "allow", "match_action": "log", "filter": [{"syscall": "getpid"}]}}"#;
        assert!(parse_profile("p", two).is_ok());
        let no_app = br#"{"a": {"mismatch_action": "allow", "match_action": "kill_process", "filter": []},
                          "b": {"mismatch_action": "allow", "match_action": "log", "filter": []}}"#;
        assert!(parse_profile("p", no_app)
            .unwrap_err()
            .contains("none is named \"app\""));
        assert!(parse_profile("p", b"{not json")
            .unwrap_err()
            .contains("does not compile"));
        let bad_call =
            br#"{"app": {"mismatch_action": "allow", "match_action": "log", "filter": [{"syscall": "no_such_call"}]}}"#;
        assert!(parse_profile("p", bad_call).is_err());
    }
}
