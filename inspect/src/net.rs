//! Sockets (with their owning processes) and network configuration, from /proc/net and /sys.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use husk_proto::{Interface, NetConfig, Route, Socket};

use crate::process::socket_inode;
use crate::{read_line, read_text};

const TCP_STATES: [&str; 12] = [
    "UNKNOWN",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
];

/// `0100007F:1F90` (IPv4) or 32 hex digits + port (IPv6), as the kernel prints them: each
/// 32-bit word in the machine's byte order.
pub fn parse_address(text: &str) -> Option<String> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word =
        |i: usize| -> Option<[u8; 4]> { Some(u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?.to_ne_bytes()) };
    match ip.len() {
        8 => Some(format!("{}:{port}", Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(format!("[{}]:{port}", Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Parses /proc/net/{tcp,tcp6,udp,udp6}.
pub fn parse_inet(proto: &str, text: &str) -> Vec<Socket> {
    let udp = proto.starts_with("udp");
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let st = usize::from_str_radix(f.get(3)?, 16).ok()?;
            let state = match (udp, st) {
                (true, 7) => "UNCONN",
                _ => TCP_STATES.get(st).copied().unwrap_or("UNKNOWN"),
            };
            Some(Socket {
                proto: proto.to_string(),
                state: state.to_string(),
                local: parse_address(f.get(1)?)?,
                remote: parse_address(f.get(2)?)?,
                uid: f.get(7).and_then(|u| u.parse().ok()),
                inode: f.get(9)?.parse().ok()?,
                pid: None,
                comm: None,
            })
        })
        .collect()
}

/// Parses /proc/net/unix: `Num RefCount Protocol Flags Type St Inode [Path]`.
pub fn parse_unix(text: &str) -> Vec<Socket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let kind = match *f.get(4)? {
                "0001" => "stream",
                "0002" => "dgram",
                "0005" => "seqpacket",
                _ => "other",
            };
            let state = if flags & 0x10000 != 0 {
                "LISTEN"
            } else if *f.get(5)? == "03" {
                "CONNECTED"
            } else {
                "UNCONN"
            };
            Some(Socket {
                proto: "unix".into(),
                state: format!("{state} {kind}"),
                local: f.get(7..).map(|p| p.join(" ")).unwrap_or_default(),
                remote: String::new(),
                inode: f.get(6)?.parse().ok()?,
                uid: None,
                pid: None,
                comm: None,
            })
        })
        .collect()
}

/// Socket inode → (pid, comm) for every socket descriptor of the processes `visible` accepts.
pub fn socket_owners(visible: &dyn Fn(i32) -> bool) -> HashMap<u64, (i32, String)> {
    let mut owners = HashMap::new();
    for pid in crate::pids() {
        if !visible(pid) {
            continue;
        }
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let comm = read_line(format!("/proc/{pid}/comm")).unwrap_or_default();
        for entry in dir.flatten() {
            if let Some(inode) = std::fs::read_link(entry.path())
                .ok()
                .and_then(|t| socket_inode(&t.to_string_lossy()))
            {
                owners.entry(inode).or_insert_with(|| (pid, comm.clone()));
            }
        }
    }
    owners
}

/// Every TCP, UDP and unix socket of this network namespace, with the owning process when
/// `visible` lets its descriptors be read.
pub fn sockets(visible: &dyn Fn(i32) -> bool) -> Vec<Socket> {
    let mut all = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        if let Ok(text) = read_text(format!("/proc/net/{proto}")) {
            all.extend(parse_inet(proto, &text));
        }
    }
    if let Ok(text) = read_text("/proc/net/unix") {
        all.extend(parse_unix(&text));
    }
    let owners = socket_owners(visible);
    for s in &mut all {
        if let Some((pid, comm)) = owners.get(&(s.inode as u64)) {
            s.pid = Some(*pid as i64);
            s.comm = Some(comm.clone());
        }
    }
    all
}

fn prefix_len(mask: u32) -> u32 {
    mask.count_ones()
}

/// Parses /proc/net/route (IPv4).
pub fn parse_route(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let hex = |i: usize| u32::from_str_radix(f.get(i)?, 16).ok();
            let dest = Ipv4Addr::from(hex(1)?.to_ne_bytes());
            let gw = Ipv4Addr::from(hex(2)?.to_ne_bytes());
            Some(Route {
                family: "inet".into(),
                destination: format!("{dest}/{}", prefix_len(hex(7)?)),
                gateway: gw.to_string(),
                interface: f.first()?.to_string(),
                metric: f.get(6)?.parse().ok()?,
            })
        })
        .collect()
}

/// Parses /proc/net/ipv6_route: `DEST DESTLEN SRC SRCLEN NEXTHOP METRIC REF USE FLAGS IFACE`.
pub fn parse_ipv6_route(text: &str) -> Vec<Route> {
    let addr = |s: &str| -> Option<Ipv6Addr> {
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(Ipv6Addr::from(bytes))
    };
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            Some(Route {
                family: "inet6".into(),
                destination: format!("{}/{}", addr(f.first()?)?, u8::from_str_radix(f.get(1)?, 16).ok()?),
                gateway: addr(f.get(4)?)?.to_string(),
                interface: f.get(9)?.to_string(),
                metric: i64::from_str_radix(f.get(5)?, 16).ok()?,
            })
        })
        .collect()
}

/// Interface names from /proc/net/dev (`  eth0: 123 ...`).
pub fn parse_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| Some(l.split_once(':')?.0.trim().to_string()))
        .filter(|n| !n.is_empty())
        .collect()
}

pub fn net_config() -> NetConfig {
    let names = read_text("/proc/net/dev").map(|t| parse_dev(&t)).unwrap_or_default();
    let addresses = crate::sys::interface_addresses();
    let interfaces = names
        .into_iter()
        .map(|name| {
            let sys = |file: &str| read_line(format!("/sys/class/net/{name}/{file}"));
            Interface {
                mtu: sys("mtu").and_then(|m| m.parse().ok()),
                state: sys("operstate").unwrap_or_default(),
                mac: sys("address").unwrap_or_default(),
                addresses: addresses
                    .iter()
                    .filter(|(n, _)| *n == name)
                    .map(|(_, a)| a.clone())
                    .collect(),
                name,
            }
        })
        .collect();
    let mut routes = read_text("/proc/net/route")
        .map(|t| parse_route(&t))
        .unwrap_or_default();
    routes.extend(
        read_text("/proc/net/ipv6_route")
            .map(|t| parse_ipv6_route(&t))
            .unwrap_or_default(),
    );
    NetConfig {
        hostname: read_line("/proc/sys/kernel/hostname").unwrap_or_default(),
        interfaces,
        routes,
        resolv_conf: read_text("/etc/resolv.conf").ok(),
        hosts: read_text("/etc/hosts").ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_address("0100007F:1F90").unwrap(), "127.0.0.1:8080");
        assert_eq!(
            parse_address("00000000000000000000000001000000:0050").unwrap(),
            "[::1]:80"
        );
        assert_eq!(parse_address("zz:1"), None);
        assert_eq!(parse_address("0100007F"), None);
        assert_eq!(parse_address("é0000000:1"), None);
    }

    #[test]
    fn tcp_table() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0 100 0 0 10 0\n\
           garbage\n";
        let s = parse_inet("tcp", text);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].state.as_str(), s[0].local.as_str(), s[0].inode, s[0].uid),
            ("LISTEN", "127.0.0.1:8080", 12345, Some(1000))
        );
        let u = parse_inet("udp", "h\n 1: 00000000:0035 00000000:0000 07 0:0 0:0 0 0 0 77\n");
        assert_eq!(u[0].state, "UNCONN");
    }

    #[test]
    fn unix_table() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
                    0000000000000000: 00000002 00000000 00010000 0001 01 2001 /dev/shm/husk.sock\n\
                    0000000000000000: 00000003 00000000 00000000 0001 03 2002\n";
        let s = parse_unix(text);
        assert_eq!(s[0].state, "LISTEN stream");
        assert_eq!(s[0].local, "/dev/shm/husk.sock");
        assert_eq!(s[1].state, "CONNECTED stream");
    }

    #[test]
    fn routes() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                  eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        let r = parse_route(v4);
        assert_eq!(r[0].destination, "0.0.0.0/0");
        assert_eq!(r[0].gateway, "192.168.0.1");
        assert_eq!(r[1].destination, "192.168.0.0/24");
        let v6 = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\nshort\n";
        let r = parse_ipv6_route(v6);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].destination, "fe80::/64");
        assert_eq!(r[0].metric, 256);
    }

    #[test]
    fn dev_names() {
        let text = "Inter-|   Receive\n face |bytes\n    lo: 1 2 3\n  eth0: 4 5 6\n";
        assert_eq!(parse_dev(text), vec!["lo", "eth0"]);
    }
}
