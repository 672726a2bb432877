//! The static aarch64 build: `scripts/build-aarch64 --smoke` builds shim, probe and the helper
//! for aarch64-unknown-linux-musl, and runs the aarch64 shim under qemu-user with an aarch64
//! child. This test runs that script (slow: a cross build) and checks the ELF headers itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use husk_tests::{require_root, run};

const EM_AARCH64: u16 = 183;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (e_machine, the p_type of every program header) of a 64-bit little-endian ELF file.
fn elf_header(path: &Path) -> (u16, Vec<u32>) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&data[..4], b"\x7fELF", "{}: not an ELF file", path.display());
    assert_eq!(data[4], 2, "{}: not a 64-bit ELF", path.display());
    assert_eq!(data[5], 1, "{}: not little-endian", path.display());
    let u16_at = |o: usize| u16::from_le_bytes(data[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap());
    let machine = u16_at(18);
    let phoff = u64_at(32) as usize;
    let phentsize = u16_at(54) as usize;
    let phnum = u16_at(56) as usize;
    let types = (0..phnum).map(|i| u32_at(phoff + i * phentsize)).collect();
    (machine, types)
}

#[test]
fn a_static_aarch64_shim_runs_an_aarch64_child_under_qemu_and_returns_its_status() {
    if !require_root("a_static_aarch64_shim_runs_an_aarch64_child_under_qemu_and_returns_its_status") {
        return;
    }
    let mut cmd = Command::new(root().join("scripts/build-aarch64"));
    cmd.arg("--smoke");
    // A cross build of the workspace's release profile: a generous liveness bound.
    let out = run(cmd, Duration::from_secs(1800));
    let stdout = out.stdout_text();
    assert_eq!(
        out.code,
        Some(0),
        "scripts/build-aarch64 --smoke failed:\n{stdout}\n{}",
        out.stderr
    );
    for line in [
        "smoke: shim -- target/aarch64-unknown-linux-musl/release/husk-helper exit 7 -> 7",
        "smoke: shim --remap-exit 7=3 -- target/aarch64-unknown-linux-musl/release/husk-helper exit 7 -> 3",
        "smoke: shim -- /nonexistent -> 127",
        "smoke: ok",
    ] {
        assert!(stdout.lines().any(|l| l == line), "missing {line:?} in:\n{stdout}");
    }

    // The script's own check, repeated from the ELF headers: aarch64, no interpreter, not dynamic.
    let dir = root().join("target/aarch64-unknown-linux-musl/release");
    for name in ["shim", "probe", "husk-helper"] {
        let (machine, types) = elf_header(&dir.join(name));
        assert_eq!(machine, EM_AARCH64, "{name}: e_machine");
        assert!(!types.is_empty(), "{name}: no program headers");
        assert!(
            !types.contains(&PT_INTERP) && !types.contains(&PT_DYNAMIC),
            "{name}: not static, program headers {types:?}"
        );
    }
    // And the x86_64 build is not mistaken for one.
    let (machine, _) = elf_header(&husk_tests::shim());
    assert_ne!(machine, EM_AARCH64);
}
