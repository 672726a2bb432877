//! `/proc/net/*` tables, dispatched by the first byte: tcp, tcp6, udp, udp6, unix, route,
//! ipv6_route and dev. Every address the parsers print must be one a client can parse back.

#![no_main]

use std::net::{IpAddr, SocketAddr};

use husk_inspect::net::{parse_dev, parse_inet, parse_ipv6_route, parse_route, parse_unix};
use husk_proto::Route;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(bytes);
    match which % 8 {
        n @ 0..=3 => {
            let proto = ["tcp", "tcp6", "udp", "udp6"][usize::from(n)];
            for socket in parse_inet(proto, &text) {
                assert!(socket.local.parse::<SocketAddr>().is_ok(), "{socket:?}");
                assert!(socket.remote.parse::<SocketAddr>().is_ok(), "{socket:?}");
            }
        }
        4 => {
            for socket in parse_unix(&text) {
                assert!(socket.state.starts_with(['L', 'C', 'U']), "{socket:?}");
            }
        }
        5 => parse_route(&text).iter().for_each(check_route),
        6 => parse_ipv6_route(&text).iter().for_each(check_route),
        _ => {
            for name in parse_dev(&text) {
                assert!(!name.is_empty() && !name.contains(':'), "{name:?}");
            }
        }
    }
});

/// `ADDRESS/PREFIX` and a gateway address.
fn check_route(route: &Route) {
    let (address, prefix) = route.destination.rsplit_once('/').expect("a destination has a prefix");
    assert!(address.parse::<IpAddr>().is_ok(), "{route:?}");
    assert!(prefix.parse::<u8>().is_ok(), "{route:?}");
    assert!(route.gateway.parse::<IpAddr>().is_ok(), "{route:?}");
}
