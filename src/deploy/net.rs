//! Bridges and addresses: which bridges the host has, and a container's
//! IPv4 lease.
//!
//! Invariant: pure helpers plus one directory read; no commands run here.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::pve::parse::pvesh::CtInterface;

/// Whether `s` can be a Linux bridge name (`[A-Za-z0-9_.-]`, 1–15 bytes).
pub fn is_bridge_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The Linux bridges under `sys_class_net` (devices with a `bridge/` dir), sorted.
pub fn bridges(sys_class_net: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sys_class_net) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("bridge").is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}

/// The container's IPv4 address on `eth0` (else on any non-loopback
/// interface), if it has one.
pub fn ipv4_of(interfaces: &[CtInterface]) -> Option<Ipv4Addr> {
    let v4 = |i: &CtInterface| {
        i.addresses.iter().find_map(|a| match a.addr {
            IpAddr::V4(v) if !v.is_loopback() && !v.is_link_local() => Some(v),
            _ => None,
        })
    };
    interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .and_then(v4)
        .or_else(|| interfaces.iter().filter(|i| i.name != "lo").find_map(v4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::parse::pvesh::IfAddr;

    #[test]
    fn bridge_names_and_lease() {
        assert!(is_bridge_name("vmbr0"));
        assert!(!is_bridge_name("vmbr0;reboot") && !is_bridge_name("../x") && !is_bridge_name(""));
        let ifs = vec![
            CtInterface {
                name: "lo".into(),
                hwaddr: None,
                addresses: vec![IfAddr {
                    addr: "127.0.0.1".parse().unwrap(),
                    prefix: 8,
                }],
            },
            CtInterface {
                name: "eth0".into(),
                hwaddr: None,
                addresses: vec![IfAddr {
                    addr: "10.0.0.7".parse().unwrap(),
                    prefix: 24,
                }],
            },
        ];
        assert_eq!(ipv4_of(&ifs), Some(Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!(ipv4_of(&ifs[..1]), None);
    }
}
