//! A seccompiler JSON profile (`--seccomp FILE`), compiled to BPF as the shim does before fork.
//! Whatever compiles must be a program the kernel can run: not empty, every jump inside the
//! program, and the last instruction a return.

#![no_main]

use husk_shim::policy::seccomp::parse_profile;
use libfuzzer_sys::fuzz_target;

// Classic BPF instruction classes and the one unconditional jump (linux/bpf_common.h).
const BPF_CLASS_MASK: u16 = 0x07;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_OP_MASK: u16 = 0xf0;
const BPF_JA: u16 = 0x00;

fuzz_target!(|data: &[u8]| {
    let Ok(program) = parse_profile("fuzz", data) else {
        return;
    };
    let last = program.last().expect("a compiled profile is not empty");
    assert_eq!(
        last.code & BPF_CLASS_MASK,
        BPF_RET,
        "the program does not end with a return"
    );
    for (i, insn) in program.iter().enumerate() {
        if insn.code & BPF_CLASS_MASK != BPF_JMP {
            continue;
        }
        let next = i + 1;
        let targets = if insn.code & BPF_OP_MASK == BPF_JA {
            vec![next + insn.k as usize]
        } else {
            vec![next + usize::from(insn.jt), next + usize::from(insn.jf)]
        };
        assert!(
            targets.iter().all(|&t| t < program.len()),
            "instruction {i} jumps out of the program"
        );
    }
});
