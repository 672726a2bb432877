//! The small values of options, from the command line, `SHIM_*` variables or the config file:
//! the first byte picks the parser, the rest is the text. Each parser's accepted values are
//! checked against their own printed form, so "parses" also means "means what it prints".

#![no_main]

use husk_inspect::check::parse_http_url;
use husk_shim::config::{format_duration, parse_duration};
use husk_shim::options::parse_bool;
use husk_shim::policy::caps::{parse_cap, parse_keep, CapKeep};
use husk_shim::policy::landlock::{parse_port, parse_scopes};
use husk_shim::policy::rlimit::{self, UNLIMITED};
use husk_shim::policy::seccomp::DenyAction;
use husk_shim::policy::user::parse_id;
use husk_shim::signals::Sig;
use libfuzzer_sys::fuzz_target;

const PARSERS: u8 = 11;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    // Options arrive as UTF-8 (the shim refuses anything else before these parsers).
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let list = || text.split(',').map(String::from).collect::<Vec<_>>();
    match which % PARSERS {
        0 => duration(text),
        1 => signal(text),
        2 => {
            if let Ok(cap) = parse_cap(text) {
                assert_eq!(parse_cap(&cap.to_string()), Ok(cap));
            }
        }
        3 => {
            if let Ok(CapKeep::Only(caps)) = parse_keep(&list()) {
                assert!(caps.windows(2).all(|w| w[0].index() < w[1].index()), "{caps:?}");
            }
        }
        4 => rlimit(text),
        5 => {
            if let Ok(mask) = rlimit::parse_umask(text) {
                assert!(mask <= 0o777);
                assert_eq!(rlimit::parse_umask(&format!("{mask:o}")), Ok(mask));
            }
        }
        6 => {
            if let Some(id) = parse_id(text) {
                assert_ne!(id, u32::MAX);
                assert_eq!(parse_id(&id.to_string()), Some(id));
            }
        }
        7 => {
            if let Ok(port) = parse_port(text) {
                assert_ne!(port, 0);
            }
        }
        8 => {
            if let Ok(scopes) = parse_scopes(&list()) {
                assert!(
                    scopes.iter().enumerate().all(|(i, s)| !scopes[..i].contains(s)),
                    "{scopes:?}"
                );
            }
        }
        9 => {
            if let Ok(action) = DenyAction::parse(text) {
                assert_eq!(DenyAction::parse(action.name()), Ok(action));
            }
            let _ = parse_bool(text);
        }
        _ => {
            if let Ok((target, _host, path)) = parse_http_url(text) {
                assert!(path.starts_with('/'), "{path:?}");
                assert!(target.contains(':'), "{target:?}");
            }
        }
    }
});

fn duration(text: &str) {
    let Ok(d) = parse_duration(text) else {
        return;
    };
    assert!(d.as_secs() <= 365 * 86400, "{d:?}");
    let printed = format_duration(d);
    let again = parse_duration(&printed).unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
    assert_eq!(again.as_millis(), d.as_millis(), "{text:?} prints as {printed:?}");
}

fn signal(text: &str) {
    let Ok(sig) = Sig::parse(text) else {
        return;
    };
    assert!(Sig::new(sig.number()).is_some(), "{sig:?}");
    assert_eq!(Sig::parse(&sig.name()), Ok(sig), "{text:?} prints as {}", sig.name());
}

fn rlimit(text: &str) {
    let Ok(limit) = rlimit::parse(text) else {
        return;
    };
    assert!(limit.soft <= limit.hard, "{limit:?}");
    let value = |v: u64| {
        if v == UNLIMITED {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    let printed = format!("{}={}:{}", limit.name, value(limit.soft), value(limit.hard));
    assert_eq!(rlimit::parse(&printed), Ok(limit));
}
