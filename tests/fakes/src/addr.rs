//! The network rule: a fake listens only on loopback or on a sandbox
//! bridge's host address, and never connects anywhere.
//!
//! Sandbox bridges use `10.213.<n>.0/24` with the host side on `.1` (the
//! default node `10.213.7.1`, private test nodes other `<n>`); the default
//! node's subnet is read from `$PVE_SANDBOX_ROOT/etc/sandbox.conf`
//! (`subnet: a.b.c.0/24`, default root `/var/lib/pve-sandbox`), so a node
//! configured on another subnet is allowed too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::Error;

/// Default sandbox state root.
pub const DEFAULT_SANDBOX_ROOT: &str = "/var/lib/pve-sandbox";
/// Default sandbox subnet.
pub const DEFAULT_SUBNET: &str = "10.213.7.0/24";

/// The sandbox state root (`$PVE_SANDBOX_ROOT` or the default).
pub fn sandbox_root() -> PathBuf {
    std::env::var_os("PVE_SANDBOX_ROOT")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_SANDBOX_ROOT), PathBuf::from)
}

/// The host side of the node's bridge: `.1` of the `subnet:` in
/// `<root>/etc/sandbox.conf` (default `10.213.7.0/24`). `None` when the
/// setting is not a `/24` IPv4 subnet.
pub fn sandbox_host_addr(root: &Path) -> Option<Ipv4Addr> {
    let conf = std::fs::read_to_string(root.join("etc/sandbox.conf")).unwrap_or_default();
    let subnet = conf
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "subnet")
        .map_or(DEFAULT_SUBNET, |(_, v)| v.trim());
    let (net, len) = subnet.split_once('/')?;
    if len != "24" {
        return None;
    }
    let [a, b, c, _] = net.parse::<Ipv4Addr>().ok()?.octets();
    Some(Ipv4Addr::new(a, b, c, 1))
}

/// Whether `ip` is a sandbox bridge's host address (`10.213.<n>.1`).
pub fn is_sandbox_bridge_host(ip: Ipv4Addr) -> bool {
    let [a, b, _, d] = ip.octets();
    a == 10 && b == 213 && d == 1
}

/// Checks the network rule for a listen address.
pub fn check_listen(addr: SocketAddr) -> Result<(), Error> {
    let refuse = |reason: &str| {
        Err(Error::AddrNotAllowed {
            addr,
            reason: reason.to_string(),
        })
    };
    match addr.ip() {
        ip if ip.is_loopback() => Ok(()),
        IpAddr::V4(ip) if is_sandbox_bridge_host(ip) => Ok(()),
        IpAddr::V4(ip) if sandbox_host_addr(&sandbox_root()) == Some(ip) => Ok(()),
        ip if ip.is_unspecified() => refuse(
            "a wildcard address would expose the fake on every interface; use 127.0.0.1 or the sandbox bridge's host address (e.g. 10.213.7.1)",
        ),
        _ => refuse(
            "fakes listen only on loopback or on a sandbox bridge's host address (10.213.<n>.1, or the subnet in sandbox.conf)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule() {
        let ok = |s: &str| check_listen(s.parse().unwrap()).is_ok();
        assert!(ok("127.0.0.1:8000"));
        assert!(ok("[::1]:8000"));
        assert!(ok("10.213.7.1:8000"));
        assert!(ok("10.213.42.1:3000"));
        assert!(!ok("0.0.0.0:8000"));
        assert!(!ok("[::]:8000"));
        assert!(!ok("10.213.7.5:8000"));
        assert!(!ok("192.168.1.10:8000"));
    }

    #[test]
    fn host_addr_from_conf() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            sandbox_host_addr(dir.path()),
            Some(Ipv4Addr::new(10, 213, 7, 1))
        );
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/sandbox.conf"),
            "node: pve\nbridge: vmbr7\nsubnet: 10.1.2.0/24\n",
        )
        .unwrap();
        assert_eq!(
            sandbox_host_addr(dir.path()),
            Some(Ipv4Addr::new(10, 1, 2, 1))
        );
    }
}
