//! Seccomp filters as classic BPF laid out as a binary search over system call numbers.
//!
//! Why not seccompiler's output for the built-in filters: it tests the call number against each
//! rule in turn, and when a filter is attached the kernel runs it once for every system call
//! number to find those whose verdict is constant (seccomp's action cache). Attaching therefore
//! costs calls × rules: about 400 µs on the benchmark VM for the shim's allowlist and as much
//! for the app's default profile, on every start. A binary search makes each run about
//! 2·log2(rules) instructions long. seccompiler still compiles `--seccomp PATH` files, and the
//! built-in filters are checked against their rules by an interpreter in the tests.

use std::collections::BTreeMap;

pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;

/// x32 calls on x86_64 carry this bit in their number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data`: nr, arch, then the six 64-bit arguments.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const ARGS_OFFSET: u32 = 16;
/// The kernel refuses longer programs (BPF_MAXINSNS).
pub const MAX_INSTRUCTIONS: usize = 4096;

/// A test of one argument's low 32 bits. Every argument the built-in filters look at is an
/// `int` or flags that fit in 32 bits (clone flags, prctl options, open flags, a family, a
/// personality); both architectures are little-endian, so the low word comes first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgTest {
    /// Some bit of the mask is set.
    AnyBit(u32),
    /// Every bit of the mask is set.
    AllBits(u32),
    /// The value is one of these.
    OneOf(Vec<u32>),
}

impl ArgTest {
    pub fn holds(&self, value: u32) -> bool {
        match self {
            ArgTest::AnyBit(mask) => value & mask != 0,
            ArgTest::AllBits(mask) => value & mask == *mask,
            ArgTest::OneOf(values) => values.contains(&value),
        }
    }
}

/// What a call gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Return(u32),
    /// `then` when the test of argument `arg` holds, else `otherwise`.
    Check {
        arg: u8,
        test: ArgTest,
        then: u32,
        otherwise: u32,
    },
}

/// A whole filter: the architecture it accepts (any other is killed), what x32 calls get (x86_64
/// only), the calls with their own action, and what every other call gets.
pub struct Filter {
    pub audit_arch: u32,
    pub x32: Option<u32>,
    pub calls: BTreeMap<u32, Action>,
    pub default: u32,
}

impl Filter {
    pub fn compile(&self) -> Result<Vec<libc::sock_filter>, String> {
        let mut code = Code::default();
        let rest = code.label();
        code.prefix(self.audit_arch, self.x32, rest);
        code.place(rest);
        let entries: Vec<(u32, Target)> = self
            .calls
            .iter()
            .map(|(&nr, action)| (nr, code.action(action)))
            .collect();
        code.search(&entries, self.default);
        code.finish()
    }

    /// The verdict for a call, straight from the rules: what the compiled program must return.
    pub fn verdict(&self, arch: u32, nr: u32, args: &[u64; 6]) -> u32 {
        if arch != self.audit_arch {
            return RET_KILL_PROCESS;
        }
        if let (Some(action), true) = (self.x32, nr >= X32_SYSCALL_BIT) {
            return action;
        }
        match self.calls.get(&nr) {
            None => self.default,
            Some(Action::Return(r)) => *r,
            Some(Action::Check {
                arg,
                test,
                then,
                otherwise,
            }) => {
                if test.holds(args[usize::from(*arg)] as u32) {
                    *then
                } else {
                    *otherwise
                }
            }
        }
    }
}

/// The architecture check and, when `x32` is given, the x32 check, ending with the call number
/// loaded and control passing to `next`. Also the head of programs whose body seccompiler
/// compiled (its jumps are relative, so what follows may be prepended).
pub fn prefix(audit_arch: u32, x32: Option<u32>) -> Result<Vec<libc::sock_filter>, String> {
    let mut code = Code::default();
    let next = code.label();
    code.prefix(audit_arch, x32, next);
    // The returns go first here: what follows the prefix is the body.
    code.place_returns();
    code.place(next);
    code.resolve()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Label(usize);

/// Where a call goes: straight to a verdict, or to the block that checks its argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Return(u32),
    Block(Label),
}

enum Insn {
    Stmt(u16, u32),
    /// A conditional jump to the label when true; falls through when false.
    Branch(u16, u32, Label),
    Jump(Label),
    Place(Label),
}

/// A program under construction, with symbolic jump targets resolved by [`Code::finish`].
#[derive(Default)]
struct Code {
    insns: Vec<Insn>,
    labels: usize,
    /// One shared `ret` per distinct value, placed at the end.
    rets: BTreeMap<u32, Label>,
    /// Argument checks, placed at the end too.
    blocks: Vec<(Label, u8, ArgTest, u32, u32)>,
}

impl Code {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    fn place(&mut self, label: Label) {
        self.insns.push(Insn::Place(label));
    }

    fn ret(&mut self, value: u32) -> Label {
        if let Some(&label) = self.rets.get(&value) {
            return label;
        }
        let label = self.label();
        self.rets.insert(value, label);
        label
    }

    fn action(&mut self, action: &Action) -> Target {
        match action {
            Action::Return(value) => Target::Return(*value),
            Action::Check {
                arg,
                test,
                then,
                otherwise,
            } => {
                let label = self.label();
                self.blocks.push((label, *arg, test.clone(), *then, *otherwise));
                Target::Block(label)
            }
        }
    }

    fn prefix(&mut self, audit_arch: u32, x32: Option<u32>, next: Label) {
        use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_W};
        let native = self.label();
        let kill = self.ret(RET_KILL_PROCESS);
        self.insns
            .push(Insn::Stmt((BPF_LD | BPF_W | BPF_ABS) as u16, ARCH_OFFSET));
        self.insns
            .push(Insn::Branch((BPF_JMP | BPF_JEQ | BPF_K) as u16, audit_arch, native));
        self.insns.push(Insn::Jump(kill));
        self.place(native);
        self.insns
            .push(Insn::Stmt((BPF_LD | BPF_W | BPF_ABS) as u16, NR_OFFSET));
        if let Some(action) = x32 {
            let x32 = self.ret(action);
            self.insns
                .push(Insn::Branch((BPF_JMP | BPF_JGE | BPF_K) as u16, X32_SYSCALL_BIT, x32));
        }
        self.insns.push(Insn::Jump(next));
    }

    /// Binary search over `entries` (sorted by number; the number is loaded), going to each
    /// entry's target, or returning `default` for any other number. Each run of equality tests
    /// carries its own copies of the verdicts it returns, so that its jumps stay short.
    fn search(&mut self, entries: &[(u32, Target)], default: u32) {
        use libc::{BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_RET};
        // Below this size a run of equality tests is as short as more halving.
        if entries.len() <= 4 {
            let mut local: Vec<(u32, Label)> = Vec::new();
            for &(nr, target) in entries {
                let label = match target {
                    Target::Block(label) => label,
                    Target::Return(value) => match local.iter().find(|(v, _)| *v == value) {
                        Some(&(_, label)) => label,
                        None => {
                            let label = self.label();
                            local.push((value, label));
                            label
                        }
                    },
                };
                self.insns
                    .push(Insn::Branch((BPF_JMP | BPF_JEQ | BPF_K) as u16, nr, label));
            }
            self.insns.push(Insn::Stmt((BPF_RET | BPF_K) as u16, default));
            for (value, label) in local {
                self.place(label);
                self.insns.push(Insn::Stmt((BPF_RET | BPF_K) as u16, value));
            }
            return;
        }
        let (low, high) = entries.split_at(entries.len() / 2);
        let upper = self.label();
        self.insns
            .push(Insn::Branch((BPF_JMP | BPF_JGE | BPF_K) as u16, high[0].0, upper));
        self.search(low, default);
        self.place(upper);
        self.search(high, default);
    }

    fn finish(mut self) -> Result<Vec<libc::sock_filter>, String> {
        use libc::{BPF_ABS, BPF_ALU, BPF_AND, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_W};
        let jeq = (BPF_JMP | BPF_JEQ | BPF_K) as u16;
        for (label, arg, test, then, otherwise) in std::mem::take(&mut self.blocks) {
            let (then, otherwise) = (self.ret(then), self.ret(otherwise));
            self.place(label);
            let offset = ARGS_OFFSET + 8 * u32::from(arg);
            self.insns.push(Insn::Stmt((BPF_LD | BPF_W | BPF_ABS) as u16, offset));
            match test {
                ArgTest::AnyBit(mask) => self
                    .insns
                    .push(Insn::Branch((BPF_JMP | BPF_JSET | BPF_K) as u16, mask, then)),
                ArgTest::AllBits(mask) => {
                    self.insns.push(Insn::Stmt((BPF_ALU | BPF_AND | BPF_K) as u16, mask));
                    self.insns.push(Insn::Branch(jeq, mask, then));
                }
                ArgTest::OneOf(values) => {
                    for value in values {
                        self.insns.push(Insn::Branch(jeq, value, then));
                    }
                }
            }
            self.insns.push(Insn::Jump(otherwise));
        }
        self.place_returns();
        self.resolve()
    }

    fn place_returns(&mut self) {
        use libc::{BPF_K, BPF_RET};
        for (value, label) in std::mem::take(&mut self.rets) {
            self.place(label);
            self.insns.push(Insn::Stmt((BPF_RET | BPF_K) as u16, value));
        }
    }

    /// Lays the program out. A branch is one conditional jump when its target is within the
    /// 8-bit offset, else `jcond k, 0, 1; ja target`; which branches need the long form is found
    /// by growing them until the layout settles (each growth only lengthens others' jumps).
    fn resolve(self) -> Result<Vec<libc::sock_filter>, String> {
        use libc::{BPF_JA, BPF_JMP};
        let mut long = vec![false; self.insns.len()];
        let at = loop {
            let mut at = vec![usize::MAX; self.labels];
            let mut starts = Vec::with_capacity(self.insns.len());
            let mut pc = 0;
            for (i, insn) in self.insns.iter().enumerate() {
                starts.push(pc);
                pc += match insn {
                    Insn::Place(label) => {
                        at[label.0] = pc;
                        0
                    }
                    Insn::Branch(..) if long[i] => 2,
                    _ => 1,
                };
            }
            if pc > MAX_INSTRUCTIONS {
                return Err(format!(
                    "the filter has {pc} instructions, more than the kernel's {MAX_INSTRUCTIONS}"
                ));
            }
            let mut grew = false;
            for (i, insn) in self.insns.iter().enumerate() {
                if let (Insn::Branch(_, _, label), false) = (insn, long[i]) {
                    if at[label.0].saturating_sub(starts[i] + 1) > usize::from(u8::MAX) {
                        long[i] = true;
                        grew = true;
                    }
                }
            }
            if !grew {
                break at;
            }
        };
        let insn = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
        // The offset from the instruction after `from` to `label`; targets always lie ahead.
        let offset = |from: usize, label: Label| -> Result<usize, String> {
            let target = at[label.0];
            if target == usize::MAX || target <= from {
                return Err("internal error: a jump to an unplaced or earlier label".into());
            }
            Ok(target - from - 1)
        };
        let mut out = Vec::with_capacity(at.len());
        for (i, item) in self.insns.iter().enumerate() {
            match *item {
                Insn::Stmt(code, k) => out.push(insn(code, 0, 0, k)),
                Insn::Branch(code, k, label) if long[i] => {
                    out.push(insn(code, 0, 1, k));
                    let ja = offset(out.len(), label)? as u32;
                    out.push(insn((BPF_JMP | BPF_JA) as u16, 0, 0, ja));
                }
                Insn::Branch(code, k, label) => {
                    let jt = offset(out.len(), label)? as u8;
                    out.push(insn(code, jt, 0, k));
                }
                Insn::Jump(label) => {
                    let ja = offset(out.len(), label)? as u32;
                    out.push(insn((BPF_JMP | BPF_JA) as u16, 0, 0, ja));
                }
                Insn::Place(_) => {}
            }
        }
        Ok(out)
    }
}

/// A classic BPF interpreter for the instructions above, for tests: runs `program` on a
/// `seccomp_data` and returns its verdict.
#[cfg(test)]
pub fn run(program: &[libc::sock_filter], arch: u32, nr: u32, args: &[u64; 6]) -> u32 {
    use libc::{BPF_ALU, BPF_AND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let word = |offset: u32| -> u32 {
        match offset {
            NR_OFFSET => nr,
            ARCH_OFFSET => arch,
            o if o >= ARGS_OFFSET && (o - ARGS_OFFSET).is_multiple_of(4) => {
                let i = ((o - ARGS_OFFSET) / 8) as usize;
                let high = (o - ARGS_OFFSET) % 8 == 4;
                (if high { args[i] >> 32 } else { args[i] }) as u32
            }
            o => panic!("load from offset {o}"),
        }
    };
    let (mut pc, mut a) = (0usize, 0u32);
    loop {
        let i = program[pc];
        let code = u32::from(i.code);
        pc += 1;
        match code {
            c if c == BPF_LD | BPF_W | libc::BPF_ABS => a = word(i.k),
            c if c == BPF_ALU | BPF_AND | BPF_K => a &= i.k,
            c if c == BPF_RET | BPF_K => return i.k,
            c if c == BPF_JMP | BPF_JA => pc += i.k as usize,
            c if c & 0x07 == BPF_JMP => {
                let taken = match c & 0xf0 {
                    op if op == BPF_JEQ => a == i.k,
                    op if op == BPF_JGE => a >= i.k,
                    op if op == BPF_JSET => a & i.k != 0,
                    op => panic!("jump op {op:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            c => panic!("instruction {c:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARCH: u32 = 0xC000_003E;

    fn sample() -> Filter {
        let mut calls = BTreeMap::new();
        for nr in (0..300).step_by(3) {
            calls.insert(nr, Action::Return(RET_ALLOW));
        }
        calls.insert(
            56,
            Action::Check {
                arg: 0,
                test: ArgTest::AllBits(0x10000),
                then: RET_ALLOW,
                otherwise: RET_ERRNO | 1,
            },
        );
        calls.insert(
            157,
            Action::Check {
                arg: 1,
                test: ArgTest::OneOf(vec![15, 16, 37]),
                then: RET_ALLOW,
                otherwise: RET_ERRNO | 1,
            },
        );
        calls.insert(
            41,
            Action::Check {
                arg: 0,
                test: ArgTest::AnyBit(0x7E02_0000),
                then: RET_ERRNO | 1,
                otherwise: RET_ALLOW,
            },
        );
        Filter {
            audit_arch: ARCH,
            x32: Some(RET_KILL_PROCESS),
            calls,
            default: RET_ERRNO | 1,
        }
    }

    #[test]
    fn the_program_returns_what_the_rules_say_for_every_call_and_argument() {
        let filter = sample();
        let program = filter.compile().unwrap();
        let args_cases: [[u64; 6]; 5] = [
            [0; 6],
            [0x10000, 15, 0, 0, 0, 0],
            [0x7E02_0000 | 0x10000, 37, 0, 0, 0, 0],
            [u64::MAX, 16, u64::MAX, 0, 0, 0],
            [0x0001_0000_0000, 0x0001_0000_000F, 0, 0, 0, 0],
        ];
        for nr in (0..600).chain([X32_SYSCALL_BIT, X32_SYSCALL_BIT + 56, u32::MAX]) {
            for args in &args_cases {
                for arch in [ARCH, 0xC000_00B7] {
                    assert_eq!(
                        run(&program, arch, nr, args),
                        filter.verdict(arch, nr, args),
                        "nr {nr}, args {args:x?}, arch {arch:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_run_is_logarithmic_in_the_number_of_rules() {
        let filter = sample();
        let program = filter.compile().unwrap();
        // Count executed instructions by running with a step budget.
        let steps = |nr: u32| {
            let (mut pc, mut n) = (0usize, 0);
            let mut a = 0u32;
            loop {
                let i = program[pc];
                n += 1;
                pc += 1;
                let code = u32::from(i.code);
                if code == libc::BPF_RET | libc::BPF_K {
                    return n;
                }
                if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                    a = if i.k == ARCH_OFFSET { ARCH } else { nr };
                } else if code == libc::BPF_JMP | libc::BPF_JA {
                    pc += i.k as usize;
                } else if code & 0x07 == libc::BPF_JMP {
                    let taken = if code & 0xf0 == libc::BPF_JEQ {
                        a == i.k
                    } else {
                        a >= i.k
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
            }
        };
        let longest = (0..600)
            .filter(|n| ![56, 157, 41].contains(n))
            .map(steps)
            .max()
            .unwrap();
        // 100 rules: seccompiler-style chains would run up to ~200 instructions.
        assert!(longest <= 30, "longest run {longest} instructions");
    }

    #[test]
    fn prefix_loads_the_number_after_checking_the_architecture() {
        let mut program = prefix(ARCH, Some(RET_ERRNO | 1)).unwrap();
        program.push(libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        });
        assert_eq!(run(&program, ARCH, 3, &[0; 6]), RET_ALLOW);
        assert_eq!(run(&program, 0xC000_00B7, 3, &[0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(&program, ARCH, X32_SYSCALL_BIT | 3, &[0; 6]), RET_ERRNO | 1);
    }
}
