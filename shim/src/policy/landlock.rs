//! Landlock: `--fs-ro/--fs-rx/--fs-rw`, `--tcp-bind/--tcp-connect`, `--landlock-scope`. The
//! ruleset is built in the parent (paths opened, rules added) through the landlock crate; the
//! child only calls `landlock_restrict_self` on the finished ruleset descriptor.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope, ABI,
};
use serde_json::{json, Value};

/// The newest ABI whose rights the shim knows how to ask for (the landlock crate's newest).
const NEWEST_KNOWN: ABI = ABI::V9;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    BestEffort,
    Enforce,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::BestEffort => "best-effort",
            Mode::Enforce => "enforce",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKind {
    Ro,
    Rx,
    Rw,
}

impl FsKind {
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ro => "ro",
            FsKind::Rx => "rx",
            FsKind::Rw => "rw",
        }
    }

    fn access(self, abi: ABI) -> BitFlags<AccessFs> {
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        let wanted = match self {
            FsKind::Ro => read,
            FsKind::Rx => read | AccessFs::Execute,
            FsKind::Rw => AccessFs::from_all(NEWEST_KNOWN) & !BitFlags::from(AccessFs::Execute),
        };
        wanted & AccessFs::from_all(abi)
    }
}

/// What was asked for, parsed but not yet touching the system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub fs: Vec<(FsKind, PathBuf)>,
    pub bind: Vec<u16>,
    pub connect: Vec<u16>,
    pub scopes: Vec<ScopeName>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeName {
    AbstractUnix,
    Signal,
}

impl ScopeName {
    pub fn name(self) -> &'static str {
        match self {
            ScopeName::AbstractUnix => "abstract-unix",
            ScopeName::Signal => "signal",
        }
    }

    fn flag(self) -> Scope {
        match self {
            ScopeName::AbstractUnix => Scope::AbstractUnixSocket,
            ScopeName::Signal => Scope::Signal,
        }
    }
}

/// `abstract-unix,signal` or `none`; `None` when the option was not given.
pub fn parse_scopes(list: &[String]) -> Result<Vec<ScopeName>, String> {
    let names: Vec<String> = list
        .iter()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Err("empty scope list (use none, abstract-unix or signal)".into());
    }
    if names.iter().any(|n| n == "none") {
        if names.len() > 1 {
            return Err("\"none\" cannot be combined with other scopes".into());
        }
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for n in names {
        let scope = match n.as_str() {
            "abstract-unix" => ScopeName::AbstractUnix,
            "signal" => ScopeName::Signal,
            other => return Err(format!("unknown scope {other:?} (abstract-unix, signal or none)")),
        };
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    Ok(out)
}

pub fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not a TCP port (1-65535)")),
        Ok(p) => Ok(p),
    }
}

impl Request {
    pub fn restricts_fs(&self) -> bool {
        !self.fs.is_empty()
    }

    pub fn restricts_tcp(&self) -> bool {
        !self.bind.is_empty() || !self.connect.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        !self.restricts_fs() && !self.restricts_tcp() && self.scopes.is_empty()
    }

    /// Every right this request asks the kernel to enforce, as `kind:name` strings, paired with
    /// the ABI that introduced it.
    fn requested(&self) -> Vec<(String, ABI)> {
        let mut out = Vec::new();
        if self.restricts_fs() {
            for right in AccessFs::from_all(NEWEST_KNOWN).iter() {
                out.push((format!("fs:{}", kebab(&format!("{right:?}"))), introduced_fs(right)));
            }
        }
        if self.restricts_tcp() {
            out.push(("tcp:bind".into(), ABI::V4));
            out.push(("tcp:connect".into(), ABI::V4));
        }
        for scope in &self.scopes {
            out.push((format!("scope:{}", scope.name()), ABI::V6));
        }
        out
    }
}

fn introduced_fs(right: AccessFs) -> ABI {
    [
        ABI::V1,
        ABI::V2,
        ABI::V3,
        ABI::V4,
        ABI::V5,
        ABI::V6,
        ABI::V7,
        ABI::V8,
        ABI::V9,
    ]
    .into_iter()
    .find(|abi| AccessFs::from_all(*abi).contains(right))
    .unwrap_or(NEWEST_KNOWN)
}

fn kebab(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The rights of `request` that a kernel with `abi` (0: no Landlock) would not enforce.
pub fn not_enforced(request: &Request, abi: i32) -> Vec<String> {
    let abi_enum = ABI::from(abi);
    request
        .requested()
        .into_iter()
        .filter(|(_, introduced)| abi <= 0 || *introduced > abi_enum)
        .map(|(name, _)| name)
        .collect()
}

/// The running kernel's Landlock ABI version, 0 when it has none (or it is disabled).
pub fn kernel_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag, the call only
    // returns a number; it reads and writes no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        0
    } else {
        v as i32
    }
}

/// A prepared Landlock domain.
pub struct Landlock {
    pub mode: Mode,
    pub abi: i32,
    pub request: Request,
    /// Files granted read+execute automatically: the command and its interpreter.
    pub automatic: Vec<PathBuf>,
    pub not_enforced: Vec<String>,
    /// None when the kernel enforces nothing of the request (best-effort only).
    pub ruleset: Option<OwnedFd>,
}

impl Landlock {
    pub fn ruleset_fd(&self) -> Option<i32> {
        self.ruleset.as_ref().map(|fd| fd.as_raw_fd())
    }

    pub fn describe(&self) -> Value {
        let mut rules: Vec<Value> = self
            .request
            .fs
            .iter()
            .map(|(kind, path)| json!({"path": path.display().to_string(), "access": kind.name()}))
            .collect();
        for path in &self.automatic {
            rules.push(json!({"path": path.display().to_string(), "access": "rx", "automatic": true}));
        }
        json!({
            "mode": self.mode.name(),
            "abi": self.abi,
            "enforced": self.ruleset.is_some(),
            "rules": rules,
            "tcp-bind": self.request.bind,
            "tcp-connect": self.request.connect,
            "scopes": self.request.scopes.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "not-enforced": self.not_enforced,
        })
    }
}

pub fn prepare(mode: Mode, request: Request, executable: &Path) -> Result<Landlock, String> {
    let abi = kernel_abi();
    let not_enforced = not_enforced(&request, abi);
    if mode == Mode::Enforce && !not_enforced.is_empty() {
        let kernel = if abi <= 0 {
            "this kernel has no Landlock (or it is disabled), so it".to_string()
        } else {
            format!("this kernel (Landlock ABI {abi})")
        };
        return Err(format!(
            "enforce: {kernel} cannot enforce {}; use --landlock best-effort to start anyway",
            not_enforced.join(", ")
        ));
    }
    let mut automatic = Vec::new();
    if request.restricts_fs() {
        automatic.push(executable.to_path_buf());
        for interp in interpreters(executable)? {
            if !automatic.contains(&interp) {
                automatic.push(interp);
            }
        }
    }
    // Open every path first, so a missing one is reported even when the kernel has no Landlock.
    let mut opened = Vec::new();
    for (kind, path) in &request.fs {
        opened.push((open_path(path)?, *kind));
    }
    let mut auto_fds = Vec::new();
    for path in &automatic {
        auto_fds.push(open_path(path)?);
    }
    if !not_enforced.is_empty() {
        tracing::warn!(
            "landlock: best-effort: the running kernel (Landlock ABI {abi}) does not enforce {}",
            not_enforced.join(", ")
        );
    }
    let abi_enum = ABI::from(abi);
    let net = if request.restricts_tcp() {
        AccessNet::from_all(abi_enum)
    } else {
        BitFlags::empty()
    };
    let scopes: BitFlags<Scope> =
        request.scopes.iter().fold(BitFlags::empty(), |acc, s| acc | s.flag()) & Scope::from_all(abi_enum);
    let fs = if request.restricts_fs() {
        AccessFs::from_all(abi_enum)
    } else {
        BitFlags::empty()
    };
    let ruleset = if abi <= 0 || (fs.is_empty() && net.is_empty() && scopes.is_empty()) {
        None
    } else {
        // With rights handled and a supported ABI, the crate always creates a descriptor.
        let fd = build(abi_enum, fs, net, scopes, &request, opened, auto_fds)
            .map_err(|e| format!("cannot build the ruleset: {e}"))?;
        Some(fd.ok_or("cannot build the ruleset: the kernel gave no descriptor")?)
    };
    Ok(Landlock {
        mode,
        abi,
        request,
        automatic,
        not_enforced,
        ruleset,
    })
}

fn build(
    abi: ABI,
    fs: BitFlags<AccessFs>,
    net: BitFlags<AccessNet>,
    scopes: BitFlags<Scope>,
    request: &Request,
    opened: Vec<(OwnedFd, FsKind)>,
    auto_fds: Vec<OwnedFd>,
) -> Result<Option<OwnedFd>, landlock::RulesetError> {
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::BestEffort);
    if !fs.is_empty() {
        ruleset = ruleset.handle_access(fs)?;
    }
    if !net.is_empty() {
        ruleset = ruleset.handle_access(net)?;
    }
    if !scopes.is_empty() {
        ruleset = ruleset.scope(scopes)?;
    }
    let mut created = ruleset.create()?;
    for (fd, kind) in opened {
        let access = fit_to_file(&fd, kind.access(abi), abi);
        created = created.add_rule(PathBeneath::new(fd, access))?;
    }
    for fd in auto_fds {
        let access = fit_to_file(&fd, AccessFs::ReadFile | AccessFs::Execute, abi);
        created = created.add_rule(PathBeneath::new(fd, access))?;
    }
    if !net.is_empty() {
        for &port in &request.bind {
            created = created.add_rule(NetPort::new(port, AccessNet::BindTcp))?;
        }
        for &port in &request.connect {
            created = created.add_rule(NetPort::new(port, AccessNet::ConnectTcp))?;
        }
    }
    Ok(created.into())
}

/// A rule on a file (not a directory) may only carry file rights.
fn fit_to_file(fd: &OwnedFd, access: BitFlags<AccessFs>, abi: ABI) -> BitFlags<AccessFs> {
    let is_dir = nix::sys::stat::fstat(fd)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .unwrap_or(false);
    if is_dir {
        access
    } else {
        access & AccessFs::from_file(abi)
    }
}

fn open_path(path: &Path) -> Result<OwnedFd, String> {
    use nix::fcntl::{open, OFlag};
    open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()).map_err(|e| {
        format!(
            "cannot open {:?} for the ruleset: {}",
            path.display().to_string(),
            e.desc()
        )
    })
}

/// The programs the kernel runs to start `executable`: the ELF interpreter (PT_INTERP) of a
/// dynamic executable, or the `#!` interpreter of a script (and that one's ELF interpreter).
pub fn interpreters(executable: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut current = executable.to_path_buf();
    for _ in 0..2 {
        let next = match read_interpreter(&current) {
            Ok(next) => next,
            Err(e) => return Err(format!("cannot read {:?}: {e}", current.display().to_string())),
        };
        match next {
            Some(p) => {
                out.push(p.clone());
                current = p;
            }
            None => break,
        }
    }
    Ok(out)
}

fn read_interpreter(path: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut file = File::open(path)?;
    let mut head = [0u8; 256];
    let n = read_up_to(&mut file, &mut head)?;
    let head = &head[..n];
    if head.starts_with(b"#!") {
        let line = head[2..].split(|&b| b == b'\n').next().unwrap_or(&[]);
        let text = String::from_utf8_lossy(line);
        return Ok(text.split_whitespace().next().map(PathBuf::from));
    }
    Ok(elf_interpreter(&mut file, head)?.map(PathBuf::from))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// PT_INTERP of a 64-bit little-endian ELF file, from its program headers.
pub fn elf_interpreter<R: Read + Seek>(file: &mut R, head: &[u8]) -> std::io::Result<Option<String>> {
    const PT_INTERP: u32 = 3;
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return Ok(None);
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let phoff = u64_at(head, 0x20);
    let phentsize = u16_at(head, 0x36) as usize;
    let phnum = u16_at(head, 0x38) as usize;
    if phentsize < 56 || phnum == 0 || phnum * phentsize > 64 * 1024 {
        return Ok(None);
    }
    let mut table = vec![0u8; phnum * phentsize];
    file.seek(SeekFrom::Start(phoff))?;
    file.read_exact(&mut table)?;
    for entry in table.chunks_exact(phentsize) {
        if u32_at(entry, 0) == PT_INTERP {
            let offset = u64_at(entry, 8);
            let size = (u64_at(entry, 32) as usize).min(4096);
            let mut name = vec![0u8; size];
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut name)?;
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            return Ok(Some(String::from_utf8_lossy(&name[..end]).into_owned()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_ports() {
        assert_eq!(parse_scopes(&["none".into()]), Ok(vec![]));
        assert_eq!(
            parse_scopes(&["signal".into(), "abstract-unix".into()]),
            Ok(vec![ScopeName::Signal, ScopeName::AbstractUnix])
        );
        assert!(parse_scopes(&["none".into(), "signal".into()]).is_err());
        assert!(parse_scopes(&["ipc".into()]).is_err());
        assert_eq!(parse_port("8080"), Ok(8080));
        for bad in ["0", "65536", "http", "-1", ""] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn not_enforced_follows_the_abi() {
        let req = Request {
            fs: vec![(FsKind::Ro, "/".into())],
            bind: vec![],
            connect: vec![80],
            scopes: vec![ScopeName::AbstractUnix, ScopeName::Signal],
        };
        let none = not_enforced(&req, 0);
        assert!(none.contains(&"fs:read-file".to_string()));
        assert!(none.contains(&"scope:signal".to_string()));
        let v3 = not_enforced(&req, 3);
        assert!(!v3.contains(&"fs:truncate".to_string()));
        assert!(v3.contains(&"fs:ioctl-dev".to_string()));
        assert!(v3.contains(&"tcp:connect".to_string()));
        let v7 = not_enforced(&req, 7);
        assert_eq!(v7, vec!["fs:resolve-unix".to_string()]);
        let net_only = Request {
            connect: vec![80],
            ..Default::default()
        };
        assert!(not_enforced(&net_only, 4).is_empty());
        assert_eq!(
            not_enforced(&net_only, 3),
            vec!["tcp:bind".to_string(), "tcp:connect".to_string()]
        );
    }

    #[test]
    fn finds_the_elf_interpreter() {
        // /bin/sh on the build machine is dynamic (glibc); the test binary itself may be either.
        let interp = interpreters(Path::new("/bin/sh")).unwrap();
        assert!(
            interp.first().is_some_and(|p| p.to_string_lossy().contains("ld-")),
            "{interp:?}"
        );
        let dir = std::env::temp_dir().join(format!("husk-interp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("s");
        std::fs::write(&script, "#!/bin/sh -e\necho hi\n").unwrap();
        let chain = interpreters(&script).unwrap();
        assert_eq!(chain[0], PathBuf::from("/bin/sh"));
        assert_eq!(chain.len(), 2);
        let not_elf = dir.join("n");
        std::fs::write(&not_elf, "plain").unwrap();
        assert!(interpreters(&not_elf).unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
