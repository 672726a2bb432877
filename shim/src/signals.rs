//! Signal numbers with names, real-time signals included (nix's `Signal` has no room for them).

use std::fmt;

/// A signal number the kernel accepts (1..=64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sig(i32);

/// Standard signal names, without the `SIG` prefix, by number.
const NAMES: &[(i32, &str)] = &[
    (libc::SIGHUP, "HUP"),
    (libc::SIGINT, "INT"),
    (libc::SIGQUIT, "QUIT"),
    (libc::SIGILL, "ILL"),
    (libc::SIGTRAP, "TRAP"),
    (libc::SIGABRT, "ABRT"),
    (libc::SIGBUS, "BUS"),
    (libc::SIGFPE, "FPE"),
    (libc::SIGKILL, "KILL"),
    (libc::SIGUSR1, "USR1"),
    (libc::SIGSEGV, "SEGV"),
    (libc::SIGUSR2, "USR2"),
    (libc::SIGPIPE, "PIPE"),
    (libc::SIGALRM, "ALRM"),
    (libc::SIGTERM, "TERM"),
    (libc::SIGSTKFLT, "STKFLT"),
    (libc::SIGCHLD, "CHLD"),
    (libc::SIGCONT, "CONT"),
    (libc::SIGSTOP, "STOP"),
    (libc::SIGTSTP, "TSTP"),
    (libc::SIGTTIN, "TTIN"),
    (libc::SIGTTOU, "TTOU"),
    (libc::SIGURG, "URG"),
    (libc::SIGXCPU, "XCPU"),
    (libc::SIGXFSZ, "XFSZ"),
    (libc::SIGVTALRM, "VTALRM"),
    (libc::SIGPROF, "PROF"),
    (libc::SIGWINCH, "WINCH"),
    (libc::SIGIO, "IO"),
    (libc::SIGPWR, "PWR"),
    (libc::SIGSYS, "SYS"),
];

/// The kernel's highest signal number.
pub const MAX: i32 = 64;

fn rtmin() -> i32 {
    libc::SIGRTMIN()
}

impl Sig {
    pub const INT: Sig = Sig(libc::SIGINT);
    pub const QUIT: Sig = Sig(libc::SIGQUIT);
    pub const TERM: Sig = Sig(libc::SIGTERM);
    pub const KILL: Sig = Sig(libc::SIGKILL);
    pub const CHLD: Sig = Sig(libc::SIGCHLD);
    pub const PIPE: Sig = Sig(libc::SIGPIPE);

    pub fn new(number: i32) -> Option<Sig> {
        (1..=MAX).contains(&number).then_some(Sig(number))
    }

    pub fn number(self) -> i32 {
        self.0
    }

    /// Signals that the kernel raises itself when the process faults. Sent by another process
    /// they are ordinary requests and are forwarded; raised by a fault in the shim they never
    /// reach the signalfd (the kernel forces them).
    pub fn is_fault(self) -> bool {
        matches!(
            self.0,
            libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP | libc::SIGSYS
        )
    }

    /// Parses `TERM`, `SIGTERM`, `sigterm`, `15`, `RTMIN+2`, `SIGRTMAX-1`.
    pub fn parse(text: &str) -> Result<Sig, String> {
        let trimmed = text.trim();
        if let Ok(n) = trimmed.parse::<i32>() {
            return Sig::new(n).ok_or_else(|| format!("signal number {n} is out of range 1..={MAX}"));
        }
        let upper = trimmed.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some(&(n, _)) = NAMES.iter().find(|(_, known)| *known == name) {
            return Ok(Sig(n));
        }
        if let Some(sig) = name.parse().ok().and_then(Sig::new) {
            return Ok(sig);
        }
        let realtime = |rest: &str, base: i32, sign: i32| -> Option<Sig> {
            // The offset is a small unsigned number: parsed as i32, `RTMIN+2147483647` overflowed
            // the sum (found by fuzzing), and a sign of its own (`RTMAX--3`) never meant anything.
            let offset: i32 = if rest.is_empty() {
                0
            } else {
                rest.strip_prefix(if sign > 0 { '+' } else { '-' })?
                    .parse::<u8>()
                    .ok()?
                    .into()
            };
            let n = base + sign * offset;
            (rtmin()..=MAX).contains(&n).then_some(Sig(n))
        };
        let parsed = if let Some(rest) = name.strip_prefix("RTMIN") {
            realtime(rest, rtmin(), 1)
        } else if let Some(rest) = name.strip_prefix("RTMAX") {
            realtime(rest, MAX, -1)
        } else {
            None
        };
        parsed.ok_or_else(|| format!("unknown signal {trimmed:?}"))
    }

    /// `SIGTERM`, `SIGRTMIN+2`; numbers below SIGRTMIN that have no name (those the C library
    /// keeps for itself) print as `SIG33`.
    pub fn name(self) -> String {
        match NAMES.iter().find(|(n, _)| *n == self.0) {
            Some((_, name)) => format!("SIG{name}"),
            None if self.0 >= rtmin() => match self.0 - rtmin() {
                0 => "SIGRTMIN".to_string(),
                k => format!("SIGRTMIN+{k}"),
            },
            None => format!("SIG{}", self.0),
        }
    }
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime() {
        assert_eq!(Sig::parse("term"), Ok(Sig::TERM));
        assert_eq!(Sig::parse("SIGQUIT"), Ok(Sig::QUIT));
        assert_eq!(Sig::parse("9"), Ok(Sig::KILL));
        assert_eq!(Sig::parse("RTMIN+2").unwrap().number(), libc::SIGRTMIN() + 2);
        assert_eq!(Sig::parse("SIGRTMAX-1").unwrap().number(), 63);
        assert_eq!(Sig::parse("RTMIN+2").unwrap().name(), "SIGRTMIN+2");
        assert!(Sig::parse("0").is_err());
        assert!(Sig::parse("65").is_err());
        assert!(Sig::parse("BOGUS").is_err());
        assert!(Sig::parse("RTMAX+1").is_err());
    }

    /// Found by the `scalars` fuzz target: the offset overflowed the sum.
    #[test]
    fn huge_realtime_offsets_are_refused() {
        assert!(Sig::parse("RTMIN+2147483647").is_err());
        assert!(Sig::parse("RTMAX--2147483648").is_err());
        assert!(Sig::parse("RTMAX--3").is_err());
    }

    #[test]
    fn every_named_signal_round_trips() {
        for n in 1..=MAX {
            let sig = Sig::new(n).unwrap();
            assert_eq!(Sig::parse(&sig.name()), Ok(sig));
        }
    }
}
