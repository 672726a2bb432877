//! seccomp: the built-in `default` profile or a seccompiler JSON file, compiled to BPF before
//! fork. The child installs the finished program with one `seccomp(2)` call.
//!
//! Every program starts with a prefix of our own, ahead of seccompiler's output (its jumps are
//! relative, so prepending is safe): a call from a foreign architecture kills the process, an
//! x32 call (number with bit 0x40000000) gets the deny action, and with the default profile
//! `clone3` gets ENOSYS so that C libraries fall back to `clone`, whose flags can be checked.

use std::collections::BTreeMap;
use std::io::Read;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use serde_json::{json, Value};

/// A seccomp profile file larger than this is refused before parsing.
const MAX_PROFILE_BYTES: u64 = 1 << 20;
/// The kernel refuses longer programs (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;

/// The architecture the filters are built for: the one the shim runs on.
#[cfg(target_arch = "x86_64")]
pub const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
pub const ARCH: TargetArch = TargetArch::aarch64;
/// `AUDIT_ARCH_*` of [`ARCH`], as `seccomp_data.arch` carries it.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_LOG: u32 = 0x7ffc_0000;

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

/// Namespace flags that `clone` may not carry (Docker's mask 0x7E020000).
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];
/// The only `personality` values Docker allows (PER_LINUX, PER_LINUX32, UNAME26 variants, query).
const PERSONALITY_ALLOWED: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];
const AF_VSOCK: u64 = 40;

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

    fn seccompiler(self) -> SeccompAction {
        match self {
            DenyAction::Errno => SeccompAction::Errno(libc::EPERM as u32),
            DenyAction::Kill => SeccompAction::KillProcess,
            DenyAction::Log => SeccompAction::Log,
        }
    }

    fn ret(self) -> u32 {
        match self {
            DenyAction::Errno => SECCOMP_RET_ERRNO | libc::EPERM as u32,
            DenyAction::Kill => SECCOMP_RET_KILL_PROCESS,
            DenyAction::Log => SECCOMP_RET_LOG,
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
        Profile::Default(action) => {
            let body: BpfProgram = default_filter(*action)?
                .try_into()
                .map_err(|e| format!("cannot compile the default profile: {e}"))?;
            let mut program = prefix(action.ret(), true);
            program.extend(body.iter().map(to_libc));
            program
        }
        Profile::File(path) => {
            let body = load_file(path)?;
            // The file's own actions apply; an x32 call it could not have named is killed.
            let mut program = prefix(SECCOMP_RET_KILL_PROCESS, false);
            program.extend(body.iter().map(to_libc));
            program
        }
    };
    if program.len() > MAX_INSTRUCTIONS {
        return Err(format!(
            "the compiled filter has {} instructions, more than the kernel's {MAX_INSTRUCTIONS}",
            program.len()
        ));
    }
    Ok(Seccomp { profile, program })
}

fn default_filter(action: DenyAction) -> Result<SeccompFilter, String> {
    let cond = |op: SeccompCmpOp, len: SeccompCmpArgLen, value: u64| {
        SeccompCondition::new(0, len, op, value).map_err(|e| e.to_string())
    };
    let rule = |conditions: Vec<SeccompCondition>| SeccompRule::new(conditions).map_err(|e| e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DEFAULT_DENIED
        .iter()
        .chain(DEFAULT_DENIED_X86_64)
        .map(|&(_, nr)| (i64::from(nr), Vec::new()))
        .collect();
    // clone: denied when any namespace flag is set (one rule per flag: rules are alternatives).
    let mut clone_rules = Vec::new();
    for &flag in CLONE_NAMESPACE_FLAGS {
        clone_rules.push(rule(vec![cond(
            SeccompCmpOp::MaskedEq(flag),
            SeccompCmpArgLen::Qword,
            flag,
        )?])?);
    }
    rules.insert(i64::from(libc::SYS_clone), clone_rules);
    // personality: denied unless the argument is one of Docker's allowed values.
    let mut not_allowed = Vec::new();
    for &value in PERSONALITY_ALLOWED {
        not_allowed.push(cond(SeccompCmpOp::Ne, SeccompCmpArgLen::Dword, value)?);
    }
    rules.insert(i64::from(libc::SYS_personality), vec![rule(not_allowed)?]);
    // socket: AF_VSOCK is denied.
    rules.insert(
        i64::from(libc::SYS_socket),
        vec![rule(vec![cond(SeccompCmpOp::Eq, SeccompCmpArgLen::Dword, AF_VSOCK)?])?],
    );
    SeccompFilter::new(rules, SeccompAction::Allow, action.seccompiler(), ARCH)
        .map_err(|e| format!("cannot build the default profile: {e}"))
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

fn to_libc(insn: &seccompiler::sock_filter) -> libc::sock_filter {
    libc::sock_filter {
        code: insn.code,
        jt: insn.jt,
        jf: insn.jf,
        k: insn.k,
    }
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Architecture check, x32 check and (for the default profile) clone3 → ENOSYS.
fn prefix(x32_action: u32, clone3_enosys: bool) -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let arch_offset = 4; // offsetof(struct seccomp_data, arch)
    let nr_offset = 0; // offsetof(struct seccomp_data, nr)
    let mut p = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, arch_offset),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD | BPF_W | BPF_ABS, nr_offset),
        // x32 numbers exist only on x86_64; elsewhere no call has them, so the check is moot.
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET | BPF_K, x32_action),
    ];
    if clone3_enosys {
        p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_clone3 as u32, 0, 1));
        p.push(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_compiles_for_every_action() {
        for action in [DenyAction::Errno, DenyAction::Kill, DenyAction::Log] {
            let s = compile(Profile::Default(action)).unwrap();
            assert!(s.program.len() > DEFAULT_DENIED.len());
            assert!(s.program.len() <= MAX_INSTRUCTIONS);
            assert_eq!(s.program[5].k, action.ret());
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
