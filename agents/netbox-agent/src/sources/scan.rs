//! Network scan of the configured IPv4 networks: host discovery by TCP
//! connect probes on a port list and ICMP echo, reverse DNS, MAC addresses
//! from the kernel's neighbour table (`/proc/net/arp`, on-link hosts only).
//!
//! Safety rules: only addresses inside `cidrs` and outside `exclude` are ever
//! probed (nothing else, ever; the default config has no network); every
//! probe (one TCP SYN or one ICMP echo) takes a token from one rate limiter
//! (`rate_pps`), and at most `concurrency` probes are in flight.
//!
//! ICMP: an unprivileged ICMP socket (`SOCK_DGRAM`/`IPPROTO_ICMP`, allowed
//! when the process's group is in `net.ipv4.ping_group_range`), else a raw
//! socket (needs `CAP_NET_RAW`), else ICMP is skipped; which one was used is
//! reported (`IcmpMode`) and shown in `/health`. A host is up when a TCP port
//! answers (accepted *or* refused: both mean a live stack) or it answers the
//! echo.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::Semaphore;

use crate::config::{Net4, ScanConfig};
use crate::model::{normalize_mac, Host, Iface, IpSpec, Source};

/// How ICMP echo was sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "detail")]
pub enum IcmpMode {
    /// `SOCK_DGRAM` ICMP socket (no privilege).
    Unprivileged,
    /// Raw socket (`CAP_NET_RAW`).
    Raw,
    /// Not used: disabled in the config.
    Disabled,
    /// Not possible here, with why.
    Unavailable(String),
}

impl std::fmt::Display for IcmpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IcmpMode::Unprivileged => f.write_str("ICMP via an unprivileged ICMP socket"),
            IcmpMode::Raw => f.write_str("ICMP via a raw socket (CAP_NET_RAW)"),
            IcmpMode::Disabled => f.write_str("ICMP disabled (sources.network_scan.icmp = false); TCP probes only"),
            IcmpMode::Unavailable(why) => write!(f, "ICMP unavailable ({why}); TCP probes only. Allow it with sysctl net.ipv4.ping_group_range covering the agent's group, or grant CAP_NET_RAW"),
        }
    }
}

/// One host found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Address.
    pub ip: Ipv4Addr,
    /// Prefix length of the configured network it is in.
    pub prefix: u8,
    /// TCP ports that accepted a connection.
    pub open: Vec<u16>,
    /// Answered ICMP echo.
    pub icmp: bool,
    /// Reverse DNS name.
    pub name: Option<String>,
    /// MAC from the neighbour table.
    pub mac: Option<String>,
}

/// What one scan did.
#[derive(Debug, Clone)]
pub struct ScanReport {
    /// Hosts up.
    pub found: Vec<Found>,
    /// Addresses probed.
    pub targets: usize,
    /// Probe packets sent (TCP SYNs + ICMP echoes).
    pub packets: u64,
    /// Wall time.
    pub took: Duration,
    /// ICMP mode used.
    pub icmp: IcmpMode,
    /// Of `took`, the time spent on reverse DNS.
    pub rdns: Duration,
}

/// The addresses a config allows: inside a `cidrs` entry, outside every
/// `exclude` entry. Sorted, de-duplicated.
pub fn targets(cfg: &ScanConfig) -> Result<Vec<(Ipv4Addr, u8)>, String> {
    let nets: Vec<Net4> = cfg
        .cidrs
        .iter()
        .map(|c| Net4::parse(c))
        .collect::<Result<_, _>>()?;
    let ex: Vec<Net4> = cfg
        .exclude
        .iter()
        .map(|c| Net4::parse(c))
        .collect::<Result<_, _>>()?;
    let mut out: BTreeMap<Ipv4Addr, u8> = BTreeMap::new();
    for n in nets {
        for ip in n.hosts() {
            if !ex.iter().any(|e| e.contains(ip)) {
                out.entry(ip).or_insert(n.len);
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// A token bucket of one: probes leave at most `rate` per second.
struct Pacer {
    gap: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(rate: u32) -> Self {
        Self {
            gap: Duration::from_secs_f64(1.0 / f64::from(rate.max(1))),
            next: Mutex::new(Instant::now()),
        }
    }

    async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.gap;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let word = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum = sum.wrapping_add(u32::from(word));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![8u8, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"netbox-agent-scan");
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// Opens the ICMP socket: unprivileged first, then raw.
fn icmp_socket() -> (Option<(tokio::net::UdpSocket, bool)>, IcmpMode) {
    let open = |ty: Type| -> std::io::Result<tokio::net::UdpSocket> {
        let s = Socket::new(Domain::IPV4, ty, Some(Protocol::ICMPV4))?;
        s.set_nonblocking(true)?;
        // A datagram socket of any protocol speaks send_to/recv_from.
        let std: std::net::UdpSocket = s.into();
        tokio::net::UdpSocket::from_std(std)
    };
    match open(Type::DGRAM) {
        Ok(s) => (Some((s, false)), IcmpMode::Unprivileged),
        Err(e1) => match open(Type::RAW) {
            Ok(s) => (Some((s, true)), IcmpMode::Raw),
            Err(e2) => (
                None,
                IcmpMode::Unavailable(format!("unprivileged ICMP socket: {e1}; raw socket: {e2}")),
            ),
        },
    }
}

/// The kernel's neighbour table: IPv4 → MAC (complete entries only).
pub fn neighbours(text: &str) -> BTreeMap<Ipv4Addr, String> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let ip: Ipv4Addr = f.first()?.parse().ok()?;
            let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
            if flags & 0x2 == 0 {
                return None;
            }
            Some((ip, normalize_mac(f.get(3)?)?))
        })
        .collect()
}

/// Runs the scan.
pub async fn scan(cfg: &ScanConfig) -> Result<ScanReport, String> {
    let started = Instant::now();
    let list = targets(cfg)?;
    let pacer = Arc::new(Pacer::new(cfg.rate_pps));
    let sem = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let packets = Arc::new(AtomicU64::new(0));
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let allowed: Arc<BTreeSet<Ipv4Addr>> = Arc::new(list.iter().map(|(ip, _)| *ip).collect());

    // ICMP: one socket, one receiver task marking replies.
    let (sock, mode) = if cfg.icmp {
        icmp_socket()
    } else {
        (None, IcmpMode::Disabled)
    };
    let replied: Arc<Mutex<BTreeSet<Ipv4Addr>>> = Arc::default();
    let sock = sock.map(|(s, raw)| (Arc::new(s), raw));
    let ident: u16 = (std::process::id() & 0xffff) as u16;
    let receiver = sock.as_ref().map(|(s, raw)| {
        let (s, raw, replied) = (Arc::clone(s), *raw, Arc::clone(&replied));
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = s.recv_from(&mut buf).await else {
                    continue;
                };
                let pkt = &buf[..n];
                let icmp = if raw {
                    let ihl = usize::from(pkt.first().copied().unwrap_or(0x45) & 0x0f) * 4;
                    pkt.get(ihl..).unwrap_or(&[])
                } else {
                    pkt
                };
                // Echo reply (type 0). Raw sockets see every ICMP packet:
                // also check our identifier there.
                if icmp.first() == Some(&0)
                    && (!raw || icmp.get(4..6) == Some(&ident.to_be_bytes()))
                {
                    if let IpAddr::V4(ip) = from.ip() {
                        replied
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(ip);
                    }
                }
            }
        })
    });

    let mut tasks = tokio::task::JoinSet::new();
    for (seq, (ip, prefix)) in list.iter().copied().enumerate() {
        let (pacer, sem, packets, allowed) = (
            Arc::clone(&pacer),
            Arc::clone(&sem),
            Arc::clone(&packets),
            Arc::clone(&allowed),
        );
        let ports = cfg.tcp_ports.clone();
        let sock = sock.as_ref().map(|(s, _)| Arc::clone(s));
        tasks.spawn(async move {
            // Defence in depth: never touch an address the config does not allow.
            if !allowed.contains(&ip) {
                return (ip, prefix, Vec::new());
            }
            let mut open = Vec::new();
            let mut alive = false;
            if let Some(s) = &sock {
                let _permit = sem.acquire().await;
                pacer.wait().await;
                packets.fetch_add(1, Ordering::Relaxed);
                let _ = s
                    .send_to(
                        &echo_request(ident, seq as u16),
                        SocketAddr::V4(SocketAddrV4::new(ip, 0)),
                    )
                    .await;
            }
            for port in ports {
                let _permit = sem.acquire().await;
                pacer.wait().await;
                packets.fetch_add(1, Ordering::Relaxed);
                let addr = SocketAddr::V4(SocketAddrV4::new(ip, port));
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(_)) => open.push(port),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => alive = true,
                    _ => {}
                }
            }
            if alive && open.is_empty() {
                open.push(0); // marker: up, nothing open
            }
            (ip, prefix, open)
        });
    }
    let mut up: BTreeMap<Ipv4Addr, (u8, Vec<u16>)> = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok((ip, prefix, open)) = r {
            if !open.is_empty() {
                up.insert(ip, (prefix, open.into_iter().filter(|p| *p != 0).collect()));
            }
        }
    }
    if let Some(r) = receiver {
        // Late echo replies: wait one probe timeout, then stop listening.
        tokio::time::sleep(timeout.min(Duration::from_millis(500))).await;
        r.abort();
    }
    let icmp_up = replied
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for ip in icmp_up.iter().filter(|ip| allowed.contains(ip)) {
        let prefix = list.iter().find(|(x, _)| x == ip).map_or(32, |(_, p)| *p);
        up.entry(*ip).or_insert((prefix, Vec::new()));
    }
    let arp = neighbours(&std::fs::read_to_string("/proc/net/arp").unwrap_or_default());
    // Reverse DNS, `concurrency` lookups at a time.
    let rdns_started = Instant::now();
    let mut names: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    if cfg.reverse_dns {
        let mut lookups = tokio::task::JoinSet::new();
        for ip in up.keys().copied() {
            let sem = Arc::clone(&sem);
            lookups.spawn(async move {
                let _permit = sem.acquire().await;
                (ip, reverse(ip).await)
            });
        }
        while let Some(r) = lookups.join_next().await {
            if let Ok((ip, Some(n))) = r {
                names.insert(ip, n);
            }
        }
    }
    let rdns = rdns_started.elapsed();
    let mut found = Vec::new();
    for (ip, (prefix, open)) in up {
        let name = names.remove(&ip);
        found.push(Found {
            ip,
            prefix,
            open,
            icmp: icmp_up.contains(&ip),
            name,
            mac: arp.get(&ip).cloned(),
        });
    }
    Ok(ScanReport {
        found,
        targets: list.len(),
        packets: packets.load(Ordering::Relaxed),
        took: started.elapsed(),
        icmp: mode,
        rdns,
    })
}

async fn reverse(ip: Ipv4Addr) -> Option<String> {
    let lookup = tokio::task::spawn_blocking(move || dns_lookup::lookup_addr(&IpAddr::V4(ip)).ok());
    match tokio::time::timeout(Duration::from_secs(1), lookup).await {
        Ok(Ok(Some(name))) if name != ip.to_string() => Some(name),
        _ => None,
    }
}

/// The hosts a scan found, as desired state.
pub fn hosts(report: &ScanReport) -> Vec<Host> {
    report
        .found
        .iter()
        .map(|f| {
            let key = match &f.mac {
                Some(m) => format!("scan:mac:{m}"),
                None => format!("scan:ip:{}", f.ip),
            };
            let name = f.name.clone().unwrap_or_else(|| f.ip.to_string());
            let mut h = Host::device(Source::NetworkScan, key, name.clone());
            h.description = if f.open.is_empty() {
                "found by netbox-agent's network scan".into()
            } else {
                format!(
                    "found by netbox-agent's network scan; open TCP ports: {}",
                    f.open
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let address = format!("{}/{}", f.ip, f.prefix);
            h.interfaces.push(Iface {
                name: "eth0".into(),
                mac: f.mac.clone(),
                kind: "other".into(),
                ips: vec![IpSpec {
                    address: address.clone(),
                    dns_name: f.name.clone().unwrap_or_default(),
                }],
            });
            h.primary_ip4 = Some(address);
            h
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cidrs: &[&str], exclude: &[&str], ports: Vec<u16>) -> ScanConfig {
        ScanConfig {
            enabled: true,
            cidrs: cidrs.iter().map(|s| (*s).to_string()).collect(),
            exclude: exclude.iter().map(|s| (*s).to_string()).collect(),
            tcp_ports: ports,
            icmp: false,
            rate_pps: 2000,
            concurrency: 64,
            timeout_ms: 500,
            reverse_dns: false,
            ..ScanConfig::default()
        }
    }

    #[test]
    fn only_configured_addresses_are_targets() {
        let t = targets(&cfg(
            &["127.0.0.0/29"],
            &["127.0.0.2", "127.0.0.4/31"],
            vec![22],
        ))
        .unwrap();
        let ips: Vec<String> = t.iter().map(|(ip, _)| ip.to_string()).collect();
        assert_eq!(ips, ["127.0.0.1", "127.0.0.3", "127.0.0.6"]);
        assert!(t.iter().all(|(_, p)| *p == 29));
    }

    #[tokio::test]
    async fn icmp_mode_is_reported_and_finds_loopback_when_available() {
        let mut c = cfg(&["127.0.0.1/32"], &[], Vec::new());
        c.icmp = true;
        let r = scan(&c).await.unwrap();
        assert_eq!(r.packets, 1, "one echo, no TCP probe");
        match r.icmp {
            IcmpMode::Unprivileged | IcmpMode::Raw => {
                assert_eq!(r.found.len(), 1, "{:?}", r.icmp);
                assert!(r.found[0].icmp);
            }
            IcmpMode::Unavailable(ref why) => assert!(!why.is_empty() && r.found.is_empty()),
            IcmpMode::Disabled => panic!("icmp was enabled"),
        }
    }

    #[test]
    fn arp_table() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n10.0.0.1         0x1         0x2         bc:24:11:aa:bb:cc     *        eth0\n10.0.0.2         0x1         0x0         00:00:00:00:00:00     *        eth0\n";
        let n = neighbours(t);
        assert_eq!(n.len(), 1);
        assert_eq!(n[&"10.0.0.1".parse().unwrap()], "BC:24:11:AA:BB:CC");
    }

    #[test]
    fn echo_checksum_verifies() {
        let p = echo_request(0x1234, 7);
        assert_eq!(checksum(&p), 0);
    }

    #[tokio::test]
    async fn finds_a_listener_on_loopback_and_counts_packets() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let r = scan(&cfg(&["127.0.0.1/32"], &[], vec![port]))
            .await
            .unwrap();
        assert_eq!(r.targets, 1);
        assert_eq!(r.packets, 1);
        assert_eq!(r.found.len(), 1);
        assert_eq!(r.found[0].open, vec![port]);
        let h = hosts(&r);
        assert_eq!(h[0].key, "scan:ip:127.0.0.1");
        assert_eq!(h[0].primary_ip4.as_deref(), Some("127.0.0.1/32"));
        // Excluded: nothing probed at all.
        let r = scan(&cfg(&["127.0.0.1/32"], &["127.0.0.1"], vec![port]))
            .await
            .unwrap();
        assert_eq!((r.targets, r.packets, r.found.len()), (0, 0, 0));
    }
}
