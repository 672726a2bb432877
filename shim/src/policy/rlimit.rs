//! `--rlimit NAME=SOFT[:HARD]`.

pub const UNLIMITED: u64 = u64::MAX;

/// The names `--rlimit` accepts and their resources (as in prlimit(1), without `RLIMIT_`).
pub const RESOURCES: &[(&str, i32)] = &[
    ("as", libc::RLIMIT_AS as i32),
    ("core", libc::RLIMIT_CORE as i32),
    ("cpu", libc::RLIMIT_CPU as i32),
    ("data", libc::RLIMIT_DATA as i32),
    ("fsize", libc::RLIMIT_FSIZE as i32),
    ("locks", libc::RLIMIT_LOCKS as i32),
    ("memlock", libc::RLIMIT_MEMLOCK as i32),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as i32),
    ("nice", libc::RLIMIT_NICE as i32),
    ("nofile", libc::RLIMIT_NOFILE as i32),
    ("nproc", libc::RLIMIT_NPROC as i32),
    ("rss", libc::RLIMIT_RSS as i32),
    ("rtprio", libc::RLIMIT_RTPRIO as i32),
    ("rttime", libc::RLIMIT_RTTIME as i32),
    ("sigpending", libc::RLIMIT_SIGPENDING as i32),
    ("stack", libc::RLIMIT_STACK as i32),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    pub name: &'static str,
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

fn parse_value(text: &str, rule: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("unlimited") || text.eq_ignore_ascii_case("infinity") {
        return Ok(UNLIMITED);
    }
    match text.parse::<u64>() {
        Ok(v) if v != UNLIMITED => Ok(v),
        _ => Err(format!("{rule:?}: {text:?} is not a number or \"unlimited\"")),
    }
}

pub fn parse(rule: &str) -> Result<Rlimit, String> {
    let (name, values) = rule
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=SOFT[:HARD], got {rule:?}"))?;
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("rlimit_").unwrap_or(&name);
    let &(name, resource) = RESOURCES.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        let known: Vec<&str> = RESOURCES.iter().map(|(n, _)| *n).collect();
        format!("unknown resource {name:?} (one of {})", known.join(", "))
    })?;
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (parse_value(s, rule)?, parse_value(h, rule)?),
        None => {
            let v = parse_value(values, rule)?;
            (v, v)
        }
    };
    if soft > hard {
        return Err(format!("{rule:?}: the soft limit is above the hard limit"));
    }
    Ok(Rlimit {
        name,
        resource,
        soft,
        hard,
    })
}

pub fn parse_all(rules: &[String]) -> Result<Vec<Rlimit>, String> {
    let mut out: Vec<Rlimit> = Vec::new();
    for rule in rules {
        let limit = parse(rule)?;
        if out.iter().any(|l| l.resource == limit.resource) {
            return Err(format!("{} is given twice", limit.name));
        }
        out.push(limit);
    }
    Ok(out)
}

pub fn parse_umask(text: &str) -> Result<libc::mode_t, String> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!("{text:?} is not an octal mode (e.g. 027)"));
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| format!("{text:?} is not an octal mode"))?;
    if mode > 0o777 {
        return Err(format!("{text:?} is above 0777"));
    }
    Ok(mode as libc::mode_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let l = parse("nofile=64").unwrap();
        assert_eq!((l.name, l.soft, l.hard), ("nofile", 64, 64));
        assert_eq!(l.resource, libc::RLIMIT_NOFILE as i32);
        let l = parse("CORE=0:unlimited").unwrap();
        assert_eq!((l.soft, l.hard), (0, UNLIMITED));
        let l = parse("RLIMIT_NPROC = 10 : 20").unwrap();
        assert_eq!((l.name, l.soft, l.hard), ("nproc", 10, 20));
        for bad in [
            "nofile",
            "nofiles=1",
            "nofile=abc",
            "nofile=-1",
            "nofile=10:5",
            "nofile=1:2:3",
            "=5",
            "nofile=",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse_all(&["nofile=1".into(), "NOFILE=2".into()])
            .unwrap_err()
            .contains("twice"));
        assert_eq!(RESOURCES.len(), 16);
    }

    #[test]
    fn umasks() {
        assert_eq!(parse_umask("022"), Ok(0o22));
        assert_eq!(parse_umask("0077"), Ok(0o77));
        assert_eq!(parse_umask("0o027"), Ok(0o27));
        for bad in ["", "8", "0999", "01777", "abc", "-1", "07777"] {
            assert!(parse_umask(bad).is_err(), "{bad}");
        }
    }
}
