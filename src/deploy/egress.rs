//! The probe guard: a connection the host opens to a container leaves
//! through the bridge the container's NIC is on, or not at all.
//!
//! Why: when a bridge disappears (an `ifdown`, a network reload), the
//! kernel routes the container's address by the host's other routes — the
//! default route — so an unguarded probe of `10.213.7.124:3001` goes out of
//! the uplink to whatever network answers there. A socket bound to the
//! bridge (`SO_BINDTODEVICE`) can only use that device: binding to a bridge
//! that is gone fails with `ENODEV` before a packet is sent, and a bound
//! connection whose bridge vanishes stays on the dead device.
//!
//! Invariants:
//! - a probe that should be bound is never retried unbound: a guard
//!   failure is a [`GuardError`] naming the bridge and the address;
//! - the only unbound connections are to loopback addresses (they cannot
//!   leave the host) and to deployments with no bridge on record
//!   ([`Via::Unrecorded`]: an adopted container without a `net0` bridge).
//!
//! Binding needs `CAP_NET_RAW` on kernels before 5.7; 1ldd runs as root and
//! keeps it (`daemon::caps`). Newer kernels allow it to any process.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

use super::net::is_bridge_name;

/// Which interface connections to a container must leave through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Via {
    /// The container's bridge (`net0`'s `bridge=`): sockets are bound to it.
    Bridge(String),
    /// No bridge on record: sockets are not bound (as before the guard).
    Unrecorded,
}

impl Via {
    /// From a recorded bridge name; empty means not recorded.
    pub fn recorded(bridge: &str) -> Self {
        if bridge.is_empty() {
            Self::Unrecorded
        } else {
            Self::Bridge(bridge.to_string())
        }
    }

    /// The device a socket to `ip` is bound to: none for loopback (it
    /// cannot leave the host) or when no bridge is recorded.
    pub fn device_for(&self, ip: IpAddr) -> Option<&str> {
        match self {
            Self::Bridge(b) if !ip.is_loopback() => Some(b),
            _ => None,
        }
    }
}

/// Why the guard refused a connection. Every message ends by saying that
/// nothing was sent another way.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The bridge does not exist (any more).
    #[error("bridge {bridge} is gone (ENODEV); not probing {ip} over another interface")]
    BridgeGone {
        /// The bridge.
        bridge: String,
        /// The container's address.
        ip: IpAddr,
    },
    /// The kernel refused the binding (a kernel before 5.7 without
    /// `CAP_NET_RAW`).
    #[error(
        "may not bind the probe of {ip} to bridge {bridge} (EPERM: 1ldd needs CAP_NET_RAW; \
         run it as root as the packaged unit does); not probing {ip} over another interface"
    )]
    NotPermitted {
        /// The bridge.
        bridge: String,
        /// The container's address.
        ip: IpAddr,
    },
    /// The recorded bridge is not a Linux interface name.
    #[error(
        "'{bridge}' is not a bridge name; not probing {ip} over another interface \
         (fix the deployment's bridge with `1ldctl apply`)"
    )]
    BadName {
        /// The recorded bridge, control characters removed.
        bridge: String,
        /// The container's address.
        ip: IpAddr,
    },
    /// Any other failure to create or bind the socket.
    #[error("cannot bind the probe of {ip} to bridge {bridge}: {source}; not probing {ip} over another interface")]
    Bind {
        /// The bridge.
        bridge: String,
        /// The container's address.
        ip: IpAddr,
        /// What the kernel said.
        source: io::Error,
    },
}

impl GuardError {
    fn of(bridge: &str, ip: IpAddr, e: io::Error) -> Self {
        let bridge = bridge.to_string();
        match e.raw_os_error() {
            Some(libc::ENODEV) => Self::BridgeGone { bridge, ip },
            Some(libc::EPERM | libc::EACCES) => Self::NotPermitted { bridge, ip },
            _ => Self::Bind {
                bridge,
                ip,
                source: e,
            },
        }
    }
}

/// A connection to a container that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The guard refused: nothing was sent.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// The target is not an IP address and port (probes never resolve
    /// names): nothing was sent.
    #[error("probe target {0} is not an IP address and port")]
    Target(String),
    /// No socket (file descriptors exhausted, …): nothing was sent.
    #[error("cannot open a socket for {addr}: {source}")]
    Socket {
        /// Where to.
        addr: SocketAddr,
        /// What the kernel said.
        source: io::Error,
    },
    /// The connection itself failed (refused, unreachable, …) on the right
    /// interface.
    #[error("connect {addr}: {source}")]
    Connect {
        /// Where to.
        addr: SocketAddr,
        /// What the kernel said.
        source: io::Error,
    },
}

/// Checks that connections to `ip` over `via` can be bound: `Ok(None)`
/// when they are not bound at all, `Ok(Some(ifindex))` with the bridge's
/// current index, or why not. Cheap (one `ioctl`); the binding itself is
/// what guarantees the route, this gives the clear answer up front.
pub fn check(via: &Via, ip: IpAddr) -> Result<Option<u32>, GuardError> {
    let Some(bridge) = via.device_for(ip) else {
        return Ok(None);
    };
    if !is_bridge_name(bridge) {
        return Err(bad_name(bridge, ip));
    }
    nix::net::if_::if_nametoindex(bridge)
        .map(Some)
        .map_err(|e| GuardError::of(bridge, ip, io::Error::from(e)))
}

fn bad_name(bridge: &str, ip: IpAddr) -> GuardError {
    GuardError::BadName {
        bridge: bridge
            .chars()
            .filter(|c| !c.is_control())
            .take(32)
            .collect(),
        ip,
    }
}

/// A TCP socket for `addr`, bound to the bridge `via` names (or unbound,
/// see [`Via::device_for`]).
pub fn socket(addr: SocketAddr, via: &Via) -> Result<TcpSocket, ConnectError> {
    let ip = addr.ip();
    let sock = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|source| ConnectError::Socket { addr, source })?;
    if let Some(bridge) = via.device_for(ip) {
        if !is_bridge_name(bridge) {
            return Err(bad_name(bridge, ip).into());
        }
        sock.bind_device(Some(bridge.as_bytes()))
            .map_err(|e| GuardError::of(bridge, ip, e))?;
    }
    Ok(sock)
}

/// Connects to `addr` through `via`. A failure while the bridge is gone is
/// reported as [`GuardError::BridgeGone`], whatever the kernel said first.
pub async fn connect(addr: SocketAddr, via: &Via) -> Result<TcpStream, ConnectError> {
    let sock = socket(addr, via)?;
    match sock.connect(addr).await {
        Ok(s) => Ok(s),
        Err(source) => {
            // The bridge may have gone between the binding and the answer.
            check(via, addr.ip())?;
            Err(ConnectError::Connect { addr, source })
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
